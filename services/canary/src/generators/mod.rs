//! The artifact generators (CANARY.md §13): a token's slug (and, for fingerprint pages, its
//! mint uuid and nonce) in, the planted file's bytes out.
//!
//! Pure and deterministic: no I/O, no clock, no randomness. The same [`Input`] always yields
//! byte-identical bytes, so the API re-derives an artifact instead of storing it. Every filler
//! (passwords, hashes, hosts, dates) comes from SHA-256 of the slug.

use sha2::{Digest, Sha256};

use crate::token::TokenKind;

mod docs;
mod fingerprint;
mod text;
mod zip;

/// What a generator needs to know about one token.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The slug as stored (original case).
    pub slug: &'a str,
    /// `<DECNET_CANARY_HTTP_BASE>/c/<slug>`, trailing slash of the base removed
    /// ([`beacon_url`]).
    pub beacon_url: &'a str,
    /// The host of the beacon base ([`beacon_host`]): `ssh_key`'s comment without a zone.
    pub beacon_host: &'a str,
    /// `DECNET_CANARY_DNS_ZONE`, if any (a trailing `.` is ignored; empty means none).
    pub dns_zone: Option<&'a str>,
    /// Fingerprint generators only: the token's mint uuid (`token::mint_uuid`).
    pub mint_uuid: Option<uuid::Uuid>,
    /// Fingerprint generators only: the token's nonce (`token::fingerprint_nonce`).
    pub nonce: Option<&'a str>,
}

/// A generator's fixed facts (one row of the table of CANARY.md §13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// The generator's name, as the API takes it.
    pub name: &'static str,
    /// The callback type the slug serves.
    pub kind: TokenKind,
    /// What the artifact is; travels in `canary.<token>.triggered`.
    pub token_kind: &'static str,
    /// Where the artifact goes when the operator names no path (user `admin`).
    pub default_path: &'static str,
    /// The planted file's mode.
    pub mode: u32,
    /// The planted file's mtime is this many days before the mint.
    pub age_days: i64,
    /// Refuses to generate without a DNS zone.
    pub needs_dns_zone: bool,
    /// A fingerprint page: needs the mint uuid and the nonce (hence the fingerprint secret).
    pub fingerprint: bool,
    /// The artifact's media type.
    pub content_type: &'static str,
    /// One line for operators (`GET /canary/generators`).
    pub description: &'static str,
}

const DOCX_TYPE: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";

static SPECS: [Spec; 10] = [
    Spec {
        name: "aws_creds",
        kind: TokenKind::AwsPassive,
        token_kind: "aws_key",
        default_path: "/home/admin/.aws/credentials",
        mode: 0o600,
        age_days: 14,
        needs_dns_zone: false,
        fingerprint: false,
        content_type: "text/plain; charset=utf-8",
        description: "AWS credentials file with two key pairs; trips only through an operator integration watching the key ids",
    },
    Spec {
        name: "env_file",
        kind: TokenKind::Http,
        token_kind: "env_file",
        default_path: "/home/admin/.env",
        mode: 0o600,
        age_days: 7,
        needs_dns_zone: false,
        fingerprint: false,
        content_type: "text/plain; charset=utf-8",
        description: "application .env whose API and webhook URLs point at the beacon",
    },
    Spec {
        name: "git_config",
        kind: TokenKind::Http,
        token_kind: "git_config",
        default_path: "/home/admin/.git/config",
        mode: 0o644,
        age_days: 30,
        needs_dns_zone: false,
        fingerprint: false,
        content_type: "text/plain; charset=utf-8",
        description: "git config whose origin remote is the beacon; trips on git fetch",
    },
    Spec {
        name: "honeydoc",
        kind: TokenKind::Http,
        token_kind: "honeydoc",
        default_path: "/home/admin/Documents/quarterly_report.html",
        mode: 0o644,
        age_days: 21,
        needs_dns_zone: false,
        fingerprint: false,
        content_type: "text/html; charset=utf-8",
        description: "HTML report with a 1x1 image from the beacon; trips when opened",
    },
    Spec {
        name: "honeydoc_docx",
        kind: TokenKind::Http,
        token_kind: "honeydoc",
        default_path: "/home/admin/Documents/quarterly_report.docx",
        mode: 0o644,
        age_days: 21,
        needs_dns_zone: false,
        fingerprint: false,
        content_type: DOCX_TYPE,
        description: "Word document whose drawing links an external image at the beacon; trips when opened",
    },
    Spec {
        name: "honeydoc_pdf",
        kind: TokenKind::Http,
        token_kind: "honeydoc",
        default_path: "/home/admin/Documents/quarterly_report.pdf",
        mode: 0o644,
        age_days: 21,
        needs_dns_zone: false,
        fingerprint: false,
        content_type: "application/pdf",
        description: "one-page PDF whose open action is a URI action to the beacon (the reader may prompt)",
    },
    Spec {
        name: "ssh_key",
        kind: TokenKind::Dns,
        token_kind: "ssh_key",
        default_path: "/home/admin/.ssh/id_rsa",
        mode: 0o600,
        age_days: 60,
        needs_dns_zone: false,
        fingerprint: false,
        content_type: "text/plain; charset=utf-8",
        description: "fake OpenSSH private key for deploy@<slug>.<zone>; trips when that host is resolved",
    },
    Spec {
        name: "mysql_dump",
        kind: TokenKind::Dns,
        token_kind: "db_dump",
        default_path: "/var/backups/db_backup.sql",
        mode: 0o600,
        age_days: 7,
        needs_dns_zone: true,
        fingerprint: false,
        content_type: "application/sql",
        description: "mysqldump whose tail starts replication from <slug>.<zone>; trips when the dump is loaded",
    },
    Spec {
        name: "fingerprint_html",
        kind: TokenKind::Http,
        token_kind: "honeydoc",
        default_path: "/home/admin/Documents/asset_directory.html",
        mode: 0o644,
        age_days: 14,
        needs_dns_zone: false,
        fingerprint: true,
        content_type: "text/html; charset=utf-8",
        description: "asset directory page that reports a browser fingerprint to the beacon when opened",
    },
    Spec {
        name: "fingerprint_svg",
        kind: TokenKind::Http,
        token_kind: "honeydoc",
        default_path: "/home/admin/Documents/network_topology.svg",
        mode: 0o644,
        age_days: 30,
        needs_dns_zone: false,
        fingerprint: true,
        content_type: "image/svg+xml",
        description: "network diagram that reports a browser fingerprint to the beacon when opened as a document",
    },
];

/// Every generator, in the order of the table of CANARY.md §13.
pub fn specs() -> &'static [Spec] {
    &SPECS
}

/// The generator called `name`.
pub fn spec(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name == name)
}

/// A generated artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// The last component of the generator's default path.
    pub file_name: String,
}

/// Why a generator refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerateError {
    /// No generator has this name.
    #[error("unknown generator '{0}' (known: {known})", known = known_names())]
    UnknownGenerator(String),
    /// The generator calls back through DNS and no zone is configured.
    #[error("generator '{0}' needs DECNET_CANARY_DNS_ZONE")]
    NeedsDnsZone(&'static str),
    /// A fingerprint generator was given no mint uuid or no nonce.
    #[error("generator '{0}' needs the token's mint uuid and fingerprint nonce")]
    NeedsFingerprint(&'static str),
}

fn known_names() -> String {
    SPECS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
}

/// The beacon URL of a slug: `<http_base>/c/<slug>`, trailing slashes of the base removed.
pub fn beacon_url(http_base: &str, slug: &str) -> String {
    format!("{}/c/{slug}", http_base.trim_end_matches('/'))
}

/// The host of a beacon base URL: `canary.example.com` of `https://canary.example.com:8443/x`
/// (an IPv6 literal keeps its brackets; user info is dropped).
pub fn beacon_host(http_base: &str) -> &str {
    let rest = http_base
        .split_once("://")
        .map_or(http_base, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host_port.starts_with('[') {
        return host_port
            .find(']')
            .map_or(host_port, |end| &host_port[..=end]);
    }
    host_port.split(':').next().unwrap_or(host_port)
}

/// Generate the artifact of generator `name` for one token.
pub fn generate(name: &str, input: &Input<'_>) -> Result<Artifact, GenerateError> {
    let spec = spec(name).ok_or_else(|| GenerateError::UnknownGenerator(name.to_owned()))?;
    let zone = input
        .dns_zone
        .map(|z| z.trim_end_matches('.'))
        .filter(|z| !z.is_empty());
    if spec.needs_dns_zone && zone.is_none() {
        return Err(GenerateError::NeedsDnsZone(spec.name));
    }
    let fingerprint = match (input.mint_uuid, input.nonce) {
        (Some(mint), Some(nonce)) => Some((mint, nonce)),
        _ => None,
    };
    if spec.fingerprint && fingerprint.is_none() {
        return Err(GenerateError::NeedsFingerprint(spec.name));
    }
    let (slug, beacon) = (input.slug, input.beacon_url);
    let bytes = match (spec.name, zone, fingerprint) {
        ("aws_creds", ..) => text::aws_creds(slug).into_bytes(),
        ("env_file", ..) => text::env_file(slug, beacon).into_bytes(),
        ("git_config", ..) => text::git_config(beacon).into_bytes(),
        ("honeydoc", ..) => docs::honeydoc(slug, beacon).into_bytes(),
        ("honeydoc_docx", ..) => docs::honeydoc_docx(slug, beacon),
        ("honeydoc_pdf", ..) => docs::honeydoc_pdf(slug, beacon),
        ("ssh_key", zone, _) => {
            let host = zone.map_or_else(|| input.beacon_host.to_owned(), |z| format!("{slug}.{z}"));
            text::ssh_key(slug, &host).into_bytes()
        }
        ("mysql_dump", Some(zone), _) => text::mysql_dump(slug, zone).into_bytes(),
        ("fingerprint_html", _, Some((mint, nonce))) => {
            fingerprint::html(slug, beacon, mint, nonce).into_bytes()
        }
        ("fingerprint_svg", _, Some((mint, nonce))) => {
            fingerprint::svg(slug, beacon, mint, nonce).into_bytes()
        }
        _ => unreachable!("every generator of SPECS has a branch and its inputs were checked"),
    };
    let file_name = spec
        .default_path
        .rsplit('/')
        .next()
        .unwrap_or(spec.default_path)
        .to_owned();
    Ok(Artifact { bytes, file_name })
}

/// SHA-256 of `label:slug`: the root of every filler, one label per use.
fn derive(slug: &str, label: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label.as_bytes());
    h.update(b":");
    h.update(slug.as_bytes());
    h.finalize().into()
}

/// `len` characters of `alphabet` drawn from SHA-256 of `label#<block>:slug` blocks.
fn filler(slug: &str, label: &str, alphabet: &[u8], len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut block = 0u32;
    while out.len() < len {
        for b in derive(slug, &format!("{label}#{block}")) {
            if out.len() == len {
                break;
            }
            out.push(char::from(alphabet[usize::from(b) % alphabet.len()]));
        }
        block += 1;
    }
    out
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Escape text for XML and HTML content and attribute values.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A deterministic date-time `days_back` days (up to `span`) and some minutes before `base`,
/// drawn from the slug.
fn derived_time(
    slug: &str,
    label: &str,
    base: chrono::NaiveDateTime,
    span: u32,
) -> chrono::NaiveDateTime {
    let d = derive(slug, label);
    let days = u32::from(u16::from_be_bytes([d[0], d[1]])) % span.max(1);
    let minutes = u32::from(u16::from_be_bytes([d[2], d[3]])) % (24 * 60);
    let seconds = u32::from(d[4]) % 60;
    base - chrono::Duration::days(i64::from(days))
        - chrono::Duration::minutes(i64::from(minutes))
        - chrono::Duration::seconds(i64::from(seconds))
}

/// The fixed reference point of derived dates (artifacts must not depend on the clock).
fn epoch() -> chrono::NaiveDateTime {
    chrono::NaiveDate::from_ymd_opt(2025, 10, 3)
        .and_then(|d| d.and_hms_opt(17, 30, 0))
        .expect("a valid fixed date")
}
