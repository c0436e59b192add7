//! The fingerprint pages (CANARY.md §6, §13): an asset directory in HTML and a network
//! diagram in SVG, each ending with the collector script of `fingerprint.js`.
//!
//! The script is obfuscated deterministically per slug, with nothing but string work: the
//! beacon URL, nonce and mint uuid are XORed with an xorshift32 keystream seeded from
//! SHA-256 of the slug and embedded as number arrays that the script decodes at run time, and
//! every script-local identifier (`Q_…`) gets a name drawn from the slug. There is no
//! self-defending transform, which breaks in SVG documents.

use std::collections::HashMap;
use std::fmt::Write as _;

use uuid::Uuid;

use super::{derive, derived_time, epoch, hex, xml_escape};

const SCRIPT: &str = include_str!("fingerprint.js");

/// One xorshift32 step, as `Q_dec` of the script does it.
fn xorshift(mut s: u32) -> u32 {
    s ^= s << 13;
    s ^= s >> 17;
    s ^= s << 5;
    s
}

/// `Q_dec(<seed>,[<bytes>])`: `text`'s UTF-8 XORed with the keystream of `seed`.
fn encoded(seed: u32, text: &str) -> String {
    let mut state = seed;
    let bytes: Vec<String> = text
        .bytes()
        .map(|b| {
            state = xorshift(state);
            (b ^ state.to_le_bytes()[0]).to_string()
        })
        .collect();
    format!("Q_dec({seed},[{}])", bytes.join(","))
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$'
}

/// Rename every identifier starting with `Q_` to `_0x<hex>` drawn from the slug.
fn rename(js: &str, slug: &str) -> String {
    let mut names: HashMap<String, String> = HashMap::new();
    let mut taken: Vec<String> = Vec::new();
    let mut out = String::with_capacity(js.len());
    let mut rest = js;
    let mut prev_ident = false;
    while let Some(c) = rest.chars().next() {
        if !prev_ident && rest.starts_with("Q_") {
            let end = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
            let (name, tail) = rest.split_at(end);
            let new = names.entry(name.to_owned()).or_insert_with(|| {
                let digest = hex(&derive(slug, &format!("fp-name:{name}")));
                let mut len = 4;
                while taken.iter().any(|t| t == &digest[..len]) {
                    len += 1;
                }
                taken.push(digest[..len].to_owned());
                format!("_0x{}", &digest[..len])
            });
            out.push_str(new);
            rest = tail;
            prev_ident = true;
            continue;
        }
        out.push(c);
        prev_ident = is_ident(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The collector script of one token, ready to embed.
pub(super) fn script(slug: &str, beacon: &str, mint: Uuid, nonce: &str) -> String {
    let key = derive(slug, "fp-keystream");
    let seed = |i: usize| {
        let s = u32::from_be_bytes([key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]]);
        if s == 0 { 0x9e37_79b9 } else { s }
    };
    let mut js = String::with_capacity(SCRIPT.len());
    for line in SCRIPT.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        js.push_str(line);
        js.push('\n');
    }
    let js = js
        .replace("@@BEACON@@", &encoded(seed(0), beacon))
        .replace("@@NONCE@@", &encoded(seed(1), nonce))
        .replace("@@MINT@@", &encoded(seed(2), &mint.to_string()));
    rename(&js, slug)
}

/// The fixed pool of hosts the pages pick from: name, address, role, OS, owner.
const HOSTS: [(&str, &str, &str, &str, &str); 16] = [
    (
        "dc01",
        "10.20.0.10",
        "Domain controller",
        "Windows Server 2019",
        "IT Infrastructure",
    ),
    (
        "dc02",
        "10.20.0.11",
        "Domain controller",
        "Windows Server 2019",
        "IT Infrastructure",
    ),
    (
        "vpn-gw01",
        "10.20.1.1",
        "VPN gateway",
        "pfSense 2.7",
        "Network Ops",
    ),
    (
        "vcenter01",
        "10.20.2.10",
        "vCenter Server",
        "VCSA 8.0",
        "IT Infrastructure",
    ),
    (
        "fs01",
        "10.20.3.12",
        "File server",
        "Windows Server 2016",
        "IT Infrastructure",
    ),
    (
        "jenkins01",
        "10.20.4.21",
        "CI server",
        "Ubuntu 22.04",
        "DevOps",
    ),
    (
        "gitlab01",
        "10.20.4.30",
        "Source control",
        "Ubuntu 22.04",
        "DevOps",
    ),
    (
        "wiki01",
        "10.20.4.50",
        "Confluence",
        "Ubuntu 20.04",
        "IT Infrastructure",
    ),
    (
        "mail01",
        "10.20.5.25",
        "Exchange",
        "Windows Server 2019",
        "Messaging",
    ),
    (
        "k8s-cp01",
        "10.20.6.10",
        "Kubernetes control plane",
        "Ubuntu 22.04",
        "Platform",
    ),
    (
        "mon01",
        "10.20.7.40",
        "Zabbix",
        "Rocky Linux 9",
        "Network Ops",
    ),
    (
        "db-prod01",
        "10.20.8.15",
        "PostgreSQL primary",
        "Debian 12",
        "DBA",
    ),
    (
        "db-prod02",
        "10.20.8.16",
        "PostgreSQL replica",
        "Debian 12",
        "DBA",
    ),
    (
        "backup01",
        "10.20.9.5",
        "Backup server",
        "Windows Server 2022",
        "IT Infrastructure",
    ),
    (
        "hr-app01",
        "10.20.10.8",
        "HR portal",
        "RHEL 8",
        "Business Apps",
    ),
    (
        "erp-db01",
        "10.20.10.20",
        "ERP database",
        "Windows Server 2022",
        "DBA",
    ),
];

/// 5 to 8 hosts of the pool, chosen from the slug, in pool order.
fn hosts(slug: &str) -> Vec<usize> {
    let d = derive(slug, "fp-hosts");
    let count = 5 + usize::from(d[0] % 4);
    let mut order: Vec<usize> = (0..HOSTS.len()).collect();
    for i in (1..order.len()).rev() {
        let j = usize::from(d[1 + i]) % (i + 1);
        order.swap(i, j);
    }
    let mut chosen = order[..count].to_vec();
    chosen.sort_unstable();
    chosen
}

pub(super) fn html(slug: &str, beacon: &str, mint: Uuid, nonce: &str) -> String {
    let chosen = hosts(slug);
    let d = derive(slug, "fp-page");
    let synced = derived_time(slug, "fp-last-sync", epoch(), 30);
    let mut out = String::from(
        "<!DOCTYPE html>\n\
         <html lang=\"en\">\n\
         <head>\n\
         <meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Internal Asset Directory</title>\n\
         <style>\n\
         body { font-family: \"Segoe UI\", Arial, sans-serif; margin: 32px; color: #1d2733; background: #f6f8fa; }\n\
         h1 { font-size: 22px; margin-bottom: 4px; }\n\
         .sync { color: #5b6673; font-size: 13px; margin-top: 0; }\n\
         table { border-collapse: collapse; background: #fff; min-width: 720px; }\n\
         th, td { border: 1px solid #d0d7de; padding: 6px 12px; text-align: left; font-size: 14px; }\n\
         th { background: #eaeef2; }\n\
         td.ok { color: #1a7f37; }\n\
         td.maint { color: #9a6700; }\n\
         footer { margin-top: 24px; color: #8c959f; font-size: 12px; }\n\
         </style>\n\
         </head>\n\
         <body>\n\
         <h1>Internal Asset Directory</h1>\n",
    );
    let _ = writeln!(
        out,
        "<p class=\"sync\">Last sync: {} UTC from the CMDB export ({} assets in this view)</p>",
        synced.format("%Y-%m-%d %H:%M"),
        chosen.len()
    );
    out.push_str(
        "<table>\n\
         <thead><tr><th>Hostname</th><th>Address</th><th>Role</th><th>OS</th><th>Owner</th><th>Status</th></tr></thead>\n\
         <tbody>\n",
    );
    for (n, &i) in chosen.iter().enumerate() {
        let (name, ip, role, os, owner) = HOSTS[i];
        let (class, status) = if d[n].is_multiple_of(7) {
            ("maint", "maintenance")
        } else {
            ("ok", "online")
        };
        let _ = writeln!(
            out,
            "<tr><td>{name}.corp.internal</td><td>{ip}</td><td>{role}</td><td>{os}</td><td>{owner}</td><td class=\"{class}\">{status}</td></tr>"
        );
    }
    let _ = writeln!(
        out,
        "</tbody>\n\
         </table>\n\
         <footer>AssetDirectory {}.{}.{} \u{b7} build {} \u{b7} internal use only</footer>\n\
         <script>\n{}</script>\n\
         </body>\n\
         </html>",
        3 + d[8] % 2,
        d[9] % 10,
        d[10] % 20,
        &hex(&d[11..15])[..7],
        script(slug, beacon, mint, nonce)
    );
    out
}

pub(super) fn svg(slug: &str, beacon: &str, mint: Uuid, nonce: &str) -> String {
    let chosen = hosts(slug);
    let d = derive(slug, "fp-diagram");
    let revised = derived_time(slug, "fp-diagram-rev", epoch(), 60);
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n\
         <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"360\" viewBox=\"0 0 600 360\" \
         font-family=\"Arial, Helvetica, sans-serif\">\n\
         <title>HQ network topology</title>\n\
         <rect width=\"600\" height=\"360\" fill=\"#ffffff\"/>\n\
         <text x=\"20\" y=\"28\" font-size=\"16\" font-weight=\"bold\" fill=\"#1f4e79\">HQ network topology</text>\n",
    );
    let _ = writeln!(
        out,
        "<text x=\"20\" y=\"46\" font-size=\"10\" fill=\"#666666\">rev {} \u{b7} {} \u{b7} Network Ops</text>",
        1 + d[0] % 9,
        revised.format("%Y-%m-%d")
    );
    out.push_str(
        "<g stroke=\"#555555\" stroke-width=\"1.5\">\n\
         <line x1=\"300\" y1=\"90\" x2=\"300\" y2=\"120\"/>\n\
         <line x1=\"300\" y1=\"154\" x2=\"300\" y2=\"190\"/>\n",
    );
    let centres = [80u32, 227, 373, 520];
    for cx in centres {
        let _ = writeln!(out, "<line x1=\"300\" y1=\"224\" x2=\"{cx}\" y2=\"280\"/>");
    }
    out.push_str(
        "</g>\n\
         <ellipse cx=\"300\" cy=\"70\" rx=\"64\" ry=\"20\" fill=\"#eef3f8\" stroke=\"#7a8ca0\"/>\n\
         <text x=\"300\" y=\"74\" font-size=\"11\" text-anchor=\"middle\">Internet</text>\n\
         <rect x=\"230\" y=\"120\" width=\"140\" height=\"34\" rx=\"4\" fill=\"#fbe3d6\" stroke=\"#c0504d\"/>\n\
         <text x=\"300\" y=\"141\" font-size=\"11\" text-anchor=\"middle\">fw01 \u{b7} edge firewall</text>\n\
         <rect x=\"220\" y=\"190\" width=\"160\" height=\"34\" rx=\"4\" fill=\"#e2efda\" stroke=\"#70ad47\"/>\n\
         <text x=\"300\" y=\"211\" font-size=\"11\" text-anchor=\"middle\">core-sw01 \u{b7} 10.20.0.1</text>\n",
    );
    for (&cx, &i) in centres.iter().zip(&chosen) {
        let (name, ip, role, _, _) = HOSTS[i];
        let _ = writeln!(
            out,
            "<rect x=\"{}\" y=\"280\" width=\"130\" height=\"50\" rx=\"4\" fill=\"#dde6f0\" stroke=\"#1f4e79\"/>\n\
             <text x=\"{cx}\" y=\"298\" font-size=\"11\" font-weight=\"bold\" text-anchor=\"middle\">{name}</text>\n\
             <text x=\"{cx}\" y=\"311\" font-size=\"9\" text-anchor=\"middle\">{ip}</text>\n\
             <text x=\"{cx}\" y=\"323\" font-size=\"9\" fill=\"#555555\" text-anchor=\"middle\">{}</text>",
            cx - 65,
            xml_escape(role)
        );
    }
    let _ = writeln!(
        out,
        "<script><![CDATA[\n{}]]></script>\n</svg>",
        script(slug, beacon, mint, nonce)
    );
    out
}
