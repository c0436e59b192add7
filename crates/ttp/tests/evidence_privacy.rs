//! Property: whatever an email or a canary fingerprint carries, no tag's evidence holds a
//! recipient address, body text, a full URL, decoded payload bytes, a password or a
//! fingerprint blob.
//!
//! Payloads are generated from a seeded generator (so a failure names a reproducible case),
//! with unique markers planted in every place such data can hide, and signals switched on at
//! random so that every email and canary-fingerprint rule fires many times across the run.

use std::collections::BTreeSet;
use std::path::Path;

use chrono::{TimeZone, Utc};
use decnet_ttp::pack::load_dir;
use decnet_ttp::{EvalEvent, RuleIndex, SourceKind};
use serde_json::{Map, Value, json};

const CASES: u64 = 400;

/// xorshift64*: small, fast, and the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// A marker no rule keyword, header name or catalogue id can contain.
fn marker(rng: &mut Rng, kind: &str) -> String {
    format!("zq{kind}{:012x}", rng.next() & 0xffff_ffff_ffff)
}

/// A base64 run of at least 4096 decoded bytes that spells markers, as a smuggled payload.
fn payload_run(secret: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let raw: Vec<u8> = secret.bytes().cycle().take(4200).collect();
    let mut out = String::new();
    for chunk in raw.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    while !out.len().is_multiple_of(4) {
        out.push('=');
    }
    out
}

fn email(rng: &mut Rng, planted: &mut Vec<String>) -> Map<String, Value> {
    let local = marker(rng, "rcpt");
    let body_secret = marker(rng, "body");
    let path_secret = marker(rng, "path");
    let query_secret = marker(rng, "query");
    let userinfo = marker(rng, "user");
    let password = marker(rng, "pass");
    let decoded = marker(rng, "decoded");
    let address = format!("{local}@victim{}.example", rng.below(50));
    planted.extend([
        local.clone(),
        body_secret.clone(),
        path_secret.clone(),
        query_secret.clone(),
        userinfo.clone(),
        password.clone(),
        decoded.clone(),
    ]);
    let host = rng.pick(&[
        "xn--pple-43d.com",
        "login.example",
        "XN--e1afmkfd.example",
        "cdn.example",
    ]);
    let url = format!("https://{userinfo}:x@{host}/{path_secret}?token={query_secret}");
    let run = payload_run(&decoded);
    planted.push(run[..64].to_owned());
    let keywords = rng.pick(&[
        "send",
        "transfer",
        "update banking",
        "confidential",
        "hello",
    ]);
    let mut body = format!("Dear {address}, {body_secret} {keywords} now. {url}");
    if rng.coin() {
        body.push_str(&format!("\n{run}\n"));
    }
    let from = rng.pick(&["corp.example", "c0rp.example", "bank.example"]);
    let envelope = if rng.coin() { from } else { "bulk.example" };
    let mut p = Map::new();
    let mut put = |k: &str, v: Value| {
        p.insert(k.to_owned(), v);
    };
    put("service", json!("smtp_relay"));
    put(
        "subject",
        json!(format!(
            "{} {body_secret}",
            rng.pick(&["URGENT invoice", "Wire", "Hello", "payroll update"])
        )),
    );
    put(
        "from_domain",
        json!(if rng.coin() {
            from.to_owned()
        } else {
            format!("{local}@{from}")
        }),
    );
    put("mail_from_domain", json!(envelope));
    put(
        "return_path_domain",
        json!(if rng.coin() { from } else { "bounce.example" }),
    );
    put("rcpt_count", json!(rng.below(80)));
    // A careless producer: whole addresses where only domains belong.
    put("rcpt_domains", json!([address.clone(), "partner.example"]));
    put("rcpt_to", json!([address.clone()]));
    put(
        "x_mailer",
        json!(format!(
            "{} {body_secret}",
            rng.pick(&[
                "Leaf PHPMailer 2.7",
                "gophish",
                "Outlook",
                "alexusMailer 2.0"
            ])
        )),
    );
    put("dkim_signature_present", json!(rng.coin()));
    put("auth_results_present", json!(rng.coin()));
    put("spf_pass", json!(rng.coin()));
    put(
        "urls",
        json!([url.clone(), format!("http://{host}/{path_secret}")]),
    );
    put("body_text", json!(body));
    put(
        "body_base64_bytes",
        json!(if rng.coin() { 9000 } else { 0 }),
    );
    put(
        "body_simhash",
        json!(if rng.coin() {
            "9f3c2a1b4d5e6f70"
        } else {
            "0000000000000000"
        }),
    );
    put("campaign_message_count", json!(rng.below(12)));
    put("campaign_rcpt_count", json!(rng.below(60)));
    put("campaign_window_h", json!(24));
    put(
        "attachment_extensions",
        json!([rng.pick(&[".iso", ".pdf", ".lnk", ".docm", ".img"])]),
    );
    put("attachment_macros", json!(rng.coin()));
    put("attachment_password_protected", json!(rng.coin()));
    put("html_smuggling", json!(rng.coin()));
    put("password", json!(password));
    put(
        "headers",
        json!({"Cookie": format!("s={password}"), "Authorization": format!("Basic {password}")}),
    );
    p
}

fn fingerprint(rng: &mut Rng, planted: &mut Vec<String>) -> Map<String, Value> {
    let canvas = marker(rng, "canvas");
    let font = marker(rng, "font");
    let webgl = marker(rng, "webgl");
    let ja3 = marker(rng, "ja3");
    let webrtc = marker(rng, "webrtc");
    planted.extend([
        canvas.clone(),
        font.clone(),
        webgl.clone(),
        ja3.clone(),
        webrtc.clone(),
    ]);
    let tool = rng.pick(&[
        "puppeteer",
        "playwright",
        "selenium",
        "curl_impersonate",
        "none",
    ]);
    json!({
        "navigator_webdriver": rng.coin(),
        "automation_tool": if tool == "none" { Value::Null } else { json!(tool) },
        "webrtc_geo_mismatch": rng.coin(),
        "tz_mismatch_zones": rng.below(8),
        "lang_country_mismatch": rng.coin(),
        "platform_ua_inconsistent": rng.coin(),
        "ua_webgl_mismatch": rng.coin(),
        "ua_signature": format!("chrome/124 {webgl}"),
        "canvas_data": format!("data:image/png;base64,{canvas}"),
        "audio_hash": canvas,
        "fonts": [font],
        "webgl_renderer": webgl,
        "ja3": ja3,
        "webrtc_addresses": [webrtc],
    })
    .as_object()
    .unwrap()
    .clone()
}

#[test]
fn no_evidence_ever_holds_planted_secrets() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/ttp");
    let index = RuleIndex::new(&load_dir(&dir).unwrap().pack);
    let now = Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut fired: BTreeSet<String> = BTreeSet::new();
    for case in 0..CASES {
        let mut planted = Vec::new();
        let (kind, payload) = if case % 2 == 0 {
            (SourceKind::Email, email(&mut rng, &mut planted))
        } else {
            (
                SourceKind::CanaryFingerprint,
                fingerprint(&mut rng, &mut planted),
            )
        };
        let mut event = EvalEvent::new(kind, format!("case-{case}"), payload);
        event.attacker_uuid = Some(uuid::Uuid::nil());
        let out = index.evaluate(&event, now);
        assert_eq!(out.lifter_errors, vec![], "case {case}");
        for tag in out.tags.iter().chain(out.suppressed.iter().map(|s| &s.tag)) {
            fired.insert(tag.rule_id.to_string());
            let text = serde_json::to_string(&tag.evidence).unwrap().to_lowercase();
            for secret in &planted {
                assert!(
                    !text.contains(&secret.to_lowercase()),
                    "case {case}: {} evidence {text} holds {secret}",
                    tag.rule_id
                );
            }
            assert!(!text.contains('@'), "case {case}: an address in {text}");
            assert!(!text.contains("://"), "case {case}: a URL in {text}");
        }
    }
    // The property is only worth something if every rule that reads these kinds fired.
    let expected: BTreeSet<String> = (41..=53).map(|n| format!("R00{n}")).collect();
    assert_eq!(fired, expected);
}
