//! Every lifter rule of the shipped pack, live: the payload our own producer sends
//! (EVENTS.md §4) goes through the same fan-out as the tagger, and the rule's tags come out
//! with the exact techniques and confidences of RULES.md §7; a near miss gives nothing; rule
//! state modulates each rule (disabled, clipped, expired and reverted).

use std::path::Path;
use std::sync::LazyLock;

use chrono::{TimeZone, Utc};
use decnet_ttp::fanout::from_message;
use decnet_ttp::pack::load_dir;
use decnet_ttp::rule::Matcher;
use decnet_ttp::state::{RuleMode, RuleState, StateTable};
use decnet_ttp::{EvalEvent, Pack, RuleIndex, SourceKind, SuppressReason, Tag};
use serde_json::{Map, Value, json};

static PACK: LazyLock<Pack> = LazyLock::new(|| {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/ttp");
    load_dir(&dir).unwrap_or_else(|e| panic!("{e}")).pack
});

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0).unwrap()
}

fn merge(mut base: Value, extra: Value) -> Value {
    let obj = base.as_object_mut().unwrap();
    let Value::Object(extra) = extra else {
        panic!("extra fields must be an object");
    };
    obj.extend(extra);
    base
}

// ---- producer payloads (EVENTS.md §4) ----

fn session(extra: Value) -> (String, Value) {
    let base = json!({"session_id": "sess-77", "attacker_ip": "203.0.113.7", "decky_id": "decoy-01",
        "service": "ssh", "started_at": "2026-12-04T11:50:00Z", "ended_at": "2026-12-04T11:59:00Z",
        "duration_s": 540.0, "commands": []});
    ("attacker.session.ended".into(), merge(base, extra))
}

/// Login attempts as an SSH decoy reports them: `fails` failures on `user` with distinct
/// passwords, then an optional success.
fn logins(user: &str, fails: usize, success: Option<(&str, &str)>) -> (String, Value) {
    let mut attempts: Vec<Value> = (0..fails)
        .map(|i| {
            json!({"username": user, "password": format!("guess{i}"), "result": "failure",
            "ts": format!("2026-12-04T11:51:{i:02}Z"), "method": "password"})
        })
        .collect();
    if let Some((u, p)) = success {
        attempts.push(json!({"username": u, "password": p, "result": "success",
            "ts": "2026-12-04T11:52:30Z", "method": "password"}));
    }
    session(json!({"auth_attempts": attempts}))
}

fn http(raw_url: &str) -> (String, Value) {
    session(
        json!({"service": "http", "http_requests": [{"method": "GET", "raw_url": raw_url,
        "user_agent": "python-requests/2.31.0", "headers": {"host": "decoy.example", "accept": "*/*"},
        "ts": "2026-12-04T11:55:00Z", "status": 404}]}),
    )
}

/// An `email.received` as our SMTP decoy sends it, for a clean message: same domains, DKIM
/// signed, SPF pass, one recipient, no attachment.
fn email(extra: Value) -> (String, Value) {
    let base = json!({"source_id": "decoy-01-20261204T115500Z-7f3a.eml", "attacker_ip": "198.51.100.23",
        "decky_id": "decoy-01", "service": "smtp_relay", "subject": "Quarterly report",
        "from_domain": "corp.example", "mail_from_domain": "corp.example", "return_path_domain": "corp.example",
        "rcpt_count": 1, "rcpt_domains": ["partner.example"], "x_mailer": "Microsoft Outlook 16.0",
        "dkim_signed": true, "spf_pass": true, "dkim_signature_present": true, "auth_results_present": true,
        "urls": [], "attachment_count": 0, "attachment_sha256s": [], "attachment_extensions": [],
        "body_base64_bytes": 0, "attachment_macros": false, "attachment_password_protected": false,
        "html_smuggling": false, "stored_as": "decoy-01-20261204T115500Z-7f3a.eml",
        "body_sha256": "3b5d5c3712955042212316173ccf37be800e1e2a1ec4d8b0fe3cbd9a9d1b2e1f",
        "received_at": "2026-12-04T11:55:00Z", "helo": "mail.corp.example", "authenticated": false});
    ("email.received".into(), merge(base, extra))
}

fn canary(token_kind: &str, channel: &str, fingerprint: Option<Value>) -> (String, Value) {
    let mut body = json!({"token_id": "0b7c6f3e-2a51-4c1d-9e7a-5b1f3d2c4a10",
        "trigger_id": "5d2e8f41-7c3a-4b6e-9a1d-2f4c6b8e0a13", "decky_name": "decoy-01",
        "request_path": "/c/Zk3pQ/logo.gif", "dns_qname": null, "src_ip": "203.0.113.50",
        "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0",
        "occurred_at": "2026-12-04T11:58:00Z", "token_kind": token_kind, "channel": channel,
        "method": "GET", "hit_kind": "fingerprint", "suspected_scanner": false,
        "fingerprint_state": if fingerprint.is_some() { "valid" } else { "none" }});
    if let Some(fp) = fingerprint {
        body["fingerprint"] = fp;
    }
    (
        "canary.0b7c6f3e-2a51-4c1d-9e7a-5b1f3d2c4a10.triggered".into(),
        body,
    )
}

/// A fingerprint block of an ordinary desktop browser, with `extra` signals.
fn fingerprint(extra: Value) -> (String, Value) {
    let base = json!({"navigator_webdriver": false, "automation_tool": null, "webrtc_geo_mismatch": false,
        "webrtc_mismatch_basis": "country", "tz_mismatch_zones": 0, "lang_country_mismatch": false,
        "platform_ua_inconsistent": false, "ua_webgl_mismatch": false, "ua_signature": "chrome/124 windows",
        "fingerprint_id": "a3f1c9e27b4d6f80a3f1c9e27b4d6f80a3f1c9e27b4d6f80a3f1c9e27b4d6f80",
        "browser_timezone": "Europe/Berlin", "browser_language": "de-DE", "navigator_platform": "Win32",
        "webgl_renderer": "ANGLE (NVIDIA GeForce RTX 3060 Direct3D11)", "source_country": "DE",
        "webrtc_address_count": 1});
    canary("web_bug", "http", Some(merge(base, extra)))
}

fn intel(extra: Value) -> (String, Value) {
    let base = json!({"attacker_uuid": "6dd21fc3-121b-5123-aaa0-18e21dfe5b91", "attacker_ip": "203.0.113.7",
        "intel_id": "8c1e4b2a-9d3f-4e6a-b7c5-1a2b3c4d5e6f", "aggregate_verdict": "malicious",
        "providers": ["abuseipdb", "greynoise", "feodo", "threatfox"],
        "abuseipdb_score": null, "abuseipdb_categories": [], "greynoise_classification": null,
        "greynoise_name": null, "greynoise_tags": [], "greynoise_noise": null, "greynoise_riot": null,
        "feodo_listed": null, "feodo_malware_family": null, "threatfox_listed": null,
        "threatfox_threat_types": [], "threatfox_ioc_types": [], "threatfox_malware_families": [],
        "enriched_at": "2026-12-04T11:00:00Z"});
    ("attacker.intel.enriched".into(), merge(base, extra))
}

fn fingerprinted(extra: Value) -> (String, Value) {
    let base = json!({"attacker_ip": "203.0.113.7", "observed_at": "2026-12-04T11:40:00Z"});
    ("attacker.fingerprinted".into(), merge(base, extra))
}

const FP001: &str = "07d14d16d21d21d07c42d41d00041d24a458a375eef0c576d23a7bab9a9fb1";
const WALLET: &str = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4";

/// One lifter rule: a payload that fires it, one that must not, and the tags it writes.
struct Case {
    rule: &'static str,
    fire: (String, Value),
    quiet: (String, Value),
    /// (technique or sub-technique id, confidence), in emit order.
    want: &'static [(&'static str, f64)],
    /// The email body the tagger reads from the quarantine for this message, if any.
    body: Option<&'static str>,
}

fn case(
    rule: &'static str,
    fire: (String, Value),
    quiet: (String, Value),
    want: &'static [(&'static str, f64)],
) -> Case {
    Case {
        rule,
        fire,
        quiet,
        want,
        body: None,
    }
}

fn cases() -> Vec<Case> {
    let command = |text: &str| {
        session(json!({"commands": [{"command_text": text, "ts": "2026-12-04T11:53:00Z"}]}))
    };
    let mut bec = case(
        "R0047",
        email(json!({"subject": "URGENT: wire transfer needed today"})),
        email(json!({"subject": "Lunch on Friday?"})),
        &[("T1566.003", 0.85)],
    );
    bec.body = Some("Hi, I need you to send the payment before noon. Keep this confidential.");
    vec![
        case(
            "R0001",
            logins("root", 6, None),
            logins("root", 4, None),
            &[("T1110", 0.85)],
        ),
        case(
            "R0002",
            logins("admin", 6, None),
            logins("admin", 3, Some(("admin", "x"))),
            &[("T1110.001", 0.85)],
        ),
        case(
            "R0003",
            (
                "identity.formed".into(),
                json!({"identity_uuid": "1f0e4c2b-3a5d-4e6f-8a9b-0c1d2e3f4a5b",
                "observation_uuids": ["6dd21fc3-121b-5123-aaa0-18e21dfe5b91"],
                "shared_password_hash": "9c1185a5c5e9fc54612808977ee8f548b2258d31", "account_count": 4}),
            ),
            (
                "identity.formed".into(),
                json!({"identity_uuid": "1f0e4c2b-3a5d-4e6f-8a9b-0c1d2e3f4a5b",
                "observation_uuids": [], "shared_password_hash": "9c1185a5c5e9fc54612808977ee8f548b2258d31",
                "account_count": 2}),
            ),
            &[("T1110.003", 0.90)],
        ),
        case(
            "R0004",
            (
                "credential.reuse.detected".into(),
                json!({"id": "reuse-42", "secret_kind": "password", "target_count": 3, "attacker_uuids": [],
                "attacker_ips": ["203.0.113.7"], "deckies": ["decoy-01", "decoy-02"], "services": ["ssh", "ftp"],
                "credential_hash": "e3b98a4da31a127d4bde6e43033f66ba274cab0eb7eb1c70ec41402bf6273dd8"}),
            ),
            (
                "credential.reuse.detected".into(),
                json!({"id": "reuse-43", "secret_kind": "password", "target_count": 1, "attacker_uuids": [],
                "attacker_ips": ["203.0.113.7"], "deckies": ["decoy-01"], "services": ["ssh"],
                "credential_hash": "e3b98a4da31a127d4bde6e43033f66ba274cab0eb7eb1c70ec41402bf6273dd8"}),
            ),
            &[("T1110.004", 0.90)],
        ),
        case(
            "R0005",
            logins("root", 6, Some(("root", "S3cure!2024"))),
            logins("root", 2, Some(("root", "S3cure!2024"))),
            &[("T1078", 0.70)],
        ),
        case(
            "R0006",
            logins("pi", 0, Some(("pi", "raspberry"))),
            logins("root", 0, Some(("root", "Root"))),
            &[("T1078.001", 0.90)],
        ),
        case(
            "R0030",
            fingerprinted(json!({"kind": "jarm", "port": 50050, "jarm_hash": FP001})),
            fingerprinted(json!({"kind": "jarm", "port": 443, "jarm_hash": FP001})),
            &[("T1071", 0.85)],
        ),
        case(
            "R0031",
            session(json!({"beacon_interval_s": 60.0, "beacon_jitter_pct": 4.5})),
            session(json!({"beacon_interval_s": 60.0, "beacon_jitter_pct": 40.0})),
            &[("T1071", 0.80), ("T1029", 0.85)],
        ),
        case(
            "R0033",
            command(&format!(
                "redis-cli -h 127.0.0.1 set README \"All data backed up. Send 0.01 BTC to {WALLET} to recover it\""
            )),
            command(
                "redis-cli -h 127.0.0.1 set README \"All data backed up. Send 0.01 BTC to recover it\"",
            ),
            &[("T1486", 0.90)],
        ),
        case(
            "R0034",
            session(
                json!({"bytes_out": 5_242_880, "request_count": 12, "target_host": "paste.example"}),
            ),
            session(
                json!({"bytes_out": 20_000, "request_count": 12, "target_host": "paste.example"}),
            ),
            &[("T1567", 0.85)],
        ),
        case(
            "R0035",
            session(json!({"service": "mysql", "rows_read": 250_000, "bytes_read": 1_000_000})),
            session(json!({"service": "mysql", "rows_read": 20, "bytes_read": 4_000})),
            &[("T1213", 0.85)],
        ),
        case(
            "R0036",
            http("/.env"),
            http("/index.html"),
            &[("T1552.001", 0.90)],
        ),
        case(
            "R0037",
            http("/api/v1/namespaces/kube-system/secrets"),
            http("/api/v1/namespaces/default/pods"),
            &[("T1552.007", 0.95)],
        ),
        case(
            "R0038",
            session(
                json!({"docker_signals": ["bind:/var/run/docker.sock"], "container_image": "alpine:3.19"}),
            ),
            session(json!({"docker_signals": ["bind:/home:/h"], "container_image": "alpine:3.19"})),
            &[("T1611", 0.95)],
        ),
        case(
            "R0039",
            session(
                json!({"llmnr_poisoned": true, "llmnr_poison_count": 3, "poisoned_query": "wpad",
                "victim_host": "ws-114"}),
            ),
            session(json!({"llmnr_poisoned": false, "llmnr_poison_count": 0})),
            &[("T1557.001", 0.90)],
        ),
        case(
            "R0040",
            session(
                json!({"service": "tftp", "tftp_filename": "core-rtr1-confg", "source_host": "rtr1"}),
            ),
            session(json!({"service": "tftp", "tftp_filename": "backup.txt"})),
            &[("T1602.002", 0.90)],
        ),
        case(
            "R0041",
            email(json!({"rcpt_count": 40, "mail_from_domain": "bulk-sender.example"})),
            email(json!({"rcpt_count": 40})),
            &[("T1496", 0.85), ("T1586.002", 0.85)],
        ),
        case(
            "R0042",
            email(
                json!({"body_simhash": "9f3c2a1b4d5e6f70", "campaign_message_count": 6,
                "campaign_rcpt_count": 30, "campaign_window_h": 24}),
            ),
            email(
                json!({"body_simhash": "9f3c2a1b4d5e6f70", "campaign_message_count": 1,
                "campaign_rcpt_count": 300, "campaign_window_h": 24}),
            ),
            &[("T1566", 0.85)],
        ),
        case(
            "R0043",
            email(json!({"x_mailer": "Leaf PHPMailer 2.7 (leafmailer.pw)"})),
            email(json!({"x_mailer": "PHPMailer 6.8.1 (https://github.com/PHPMailer/PHPMailer)"})),
            &[("T1566", 0.90), ("T1588.001", 0.85)],
        ),
        case(
            "R0044",
            email(json!({"urls": ["https://xn--pple-43d.com/signin?session=4f2a"]})),
            email(json!({"urls": ["https://apple.example/xn--pple"]})),
            &[("T1036.005", 0.90), ("T1566.002", 0.90)],
        ),
        case(
            "R0045",
            email(json!({"return_path_domain": "bounce.other.example"})),
            email(json!({})),
            &[("T1036", 0.85)],
        ),
        case(
            "R0046",
            email(
                json!({"attachment_count": 1, "attachment_extensions": [".iso"],
                "attachment_sha256s": ["4a44dc15364204a80fe80e9039455cc1608281820fe2b24f1e5233ade6af1dd5"]}),
            ),
            email(
                json!({"attachment_count": 1, "attachment_extensions": [".pdf"],
                "attachment_sha256s": ["4a44dc15364204a80fe80e9039455cc1608281820fe2b24f1e5233ade6af1dd5"]}),
            ),
            &[("T1204.002", 0.90), ("T1566.001", 0.90)],
        ),
        bec,
        case(
            "R0048",
            email(json!({"body_base64_bytes": 6_000})),
            email(json!({"body_base64_bytes": 120})),
            &[("T1071.003", 0.85), ("T1027", 0.90)],
        ),
        case(
            "R0049",
            fingerprint(json!({"navigator_webdriver": true})),
            fingerprint(json!({})),
            &[("T1059", 0.85)],
        ),
        case(
            "R0050",
            fingerprint(json!({"automation_tool": "playwright"})),
            fingerprint(json!({"automation_tool": "phantomjs"})),
            &[("T1059", 0.85), ("T1588.002", 0.85)],
        ),
        case(
            "R0051",
            fingerprint(json!({"webrtc_geo_mismatch": true, "webrtc_address_count": 2})),
            fingerprint(json!({"webrtc_geo_mismatch": null})),
            &[("T1090", 0.85)],
        ),
        // The geo signals need a GeoIP database; the documented payload carries them.
        case(
            "R0052",
            fingerprint(json!({"tz_mismatch_zones": 7, "source_country": "US"})),
            fingerprint(json!({"tz_mismatch_zones": 1})),
            &[("T1090", 0.70)],
        ),
        case(
            "R0053",
            fingerprint(
                json!({"platform_ua_inconsistent": true, "navigator_platform": "Linux x86_64"}),
            ),
            fingerprint(json!({})),
            &[("T1036", 0.80)],
        ),
        case(
            "R0054",
            intel(json!({"abuseipdb_score": 95, "abuseipdb_categories": [18, 22]})),
            intel(json!({"abuseipdb_score": 95, "abuseipdb_categories": [3, 4]})),
            &[("T1110", 0.665)],
        ),
        case(
            "R0055",
            intel(
                json!({"greynoise_classification": "malicious", "greynoise_tags": ["Cobalt Strike"]}),
            ),
            intel(json!({"greynoise_classification": "scanner", "greynoise_riot": true})),
            &[("T1071", 0.70), ("T1588", 0.70)],
        ),
        case(
            "R0056",
            intel(json!({"feodo_listed": true, "feodo_malware_family": "Dridex"})),
            intel(json!({"feodo_listed": false})),
            &[("T1071.001", 0.85), ("T1588.001", 0.85)],
        ),
        case(
            "R0057",
            intel(
                json!({"threatfox_listed": true, "threatfox_threat_types": ["payload_delivery", "cc_skimming"],
                "threatfox_ioc_types": ["ip:port"], "threatfox_malware_families": ["win.magecart"]}),
            ),
            intel(json!({"threatfox_listed": true, "threatfox_threat_types": ["phishing"]})),
            &[("T1588.001", 0.80), ("T1105", 0.75), ("T1056", 0.70)],
        ),
        case(
            "R0059",
            fingerprinted(
                json!({"kind": "ipv6_leak", "addr": "fe80::5054:ff:fe12:3456", "iid_kind": "eui64",
                "mac_oui": "52:54:00", "vector": "ndp_ns", "on_iface": "eth0"}),
            ),
            fingerprinted(json!({"kind": "ipv6_leak", "addr": "2001:db8::5", "vector": "ndp_ns"})),
            &[("T1090", 0.85)],
        ),
        // R0060 needs an operator integration (a passive AWS key); its documented trigger.
        case(
            "R0060",
            canary("aws_key", "external", None),
            canary("honeydoc", "http", None),
            &[("T1552.001", 0.90)],
        ),
        case(
            "R0061",
            canary("honeydoc", "http", None),
            canary("env_file", "http", None),
            &[("T1005", 0.90)],
        ),
        case(
            "R0062",
            canary("env_file", "http", None),
            canary("aws_key", "external", None),
            &[("T1005", 0.70)],
        ),
    ]
}

/// The events of a message, with the email body added as the tagger adds it from the
/// quarantine.
fn events(message: &(String, Value), body: Option<&str>) -> Vec<EvalEvent> {
    let mut events = from_message(&message.0, &message.1)
        .unwrap_or_else(|e| panic!("{}: {e}", message.0))
        .events;
    if let Some(body) = body {
        for event in events.iter_mut().filter(|e| e.kind == SourceKind::Email) {
            event.payload.insert("body_text".into(), Value::from(body));
        }
    }
    events
}

fn run(index: &RuleIndex, message: &(String, Value), body: Option<&str>) -> Vec<Tag> {
    let mut tags = Vec::new();
    for event in events(message, body) {
        let out = index.evaluate(&event, now());
        assert_eq!(out.lifter_errors, vec![], "{}", message.0);
        tags.extend(out.tags);
    }
    tags
}

fn of_rule<'a>(tags: &'a [Tag], rule: &str) -> Vec<&'a Tag> {
    tags.iter().filter(|t| &*t.rule_id == rule).collect()
}

fn summary(tags: &[&Tag]) -> Vec<(String, f64)> {
    tags.iter()
        .map(|t| {
            let id = t.sub_technique_id.as_deref().unwrap_or(&t.technique_id);
            (id.to_owned(), t.confidence)
        })
        .collect()
}

fn want(case: &Case) -> Vec<(String, f64)> {
    case.want.iter().map(|(id, c)| ((*id).into(), *c)).collect()
}

#[test]
fn every_lifter_rule_is_covered_here() {
    let lifter_rules: Vec<&str> = PACK
        .rules()
        .iter()
        .filter(|r| matches!(r.matcher, Matcher::Lifter(_)))
        .map(|r| r.rule_id.as_str())
        .collect();
    let covered: Vec<&str> = cases().iter().map(|c| c.rule).collect();
    assert_eq!(lifter_rules, covered);
    assert_eq!(lifter_rules.len(), 37);
}

#[test]
fn every_lifter_rule_fires_live_on_its_producers_payload() {
    let index = RuleIndex::new(&PACK);
    for case in cases() {
        let tags = run(&index, &case.fire, case.body);
        assert_eq!(
            summary(&of_rule(&tags, case.rule)),
            want(&case),
            "{} on {}",
            case.rule,
            case.fire.0
        );
        let quiet = run(&index, &case.quiet, case.body);
        assert_eq!(
            summary(&of_rule(&quiet, case.rule)),
            vec![],
            "{} must not fire on its near miss",
            case.rule
        );
    }
}

#[test]
fn state_modulates_every_lifter_rule() {
    let index = RuleIndex::new(&PACK);
    for case in cases() {
        let mut states = StateTable::default();
        let set = |states: &mut StateTable, mode: RuleMode| {
            states.set(case.rule, mode);
            index.restate(states)
        };

        let disabled = set(&mut states, RuleMode::Disabled);
        let mut suppressed = 0;
        let mut tags = Vec::new();
        for event in events(&case.fire, case.body) {
            let out = disabled.evaluate(&event, now());
            suppressed += out
                .suppressed
                .iter()
                .filter(|s| &*s.tag.rule_id == case.rule)
                .count();
            tags.extend(out.tags);
        }
        assert!(
            of_rule(&tags, case.rule).is_empty(),
            "{} disabled",
            case.rule
        );
        assert_eq!(suppressed, 0, "a disabled rule is not evaluated at all");

        let clipped = set(
            &mut states,
            RuleMode::Clipped {
                confidence_max: 0.5,
            },
        );
        let capped: Vec<(String, f64)> = want(&case)
            .into_iter()
            .map(|(id, c)| (id, c.min(0.5)))
            .collect();
        let tags = run(&clipped, &case.fire, case.body);
        assert_eq!(
            summary(&of_rule(&tags, case.rule)),
            capped,
            "{} clipped",
            case.rule
        );

        let shadow = set(
            &mut states,
            RuleMode::Clipped {
                confidence_max: 0.2,
            },
        );
        let mut below = Vec::new();
        for event in events(&case.fire, case.body) {
            let out = shadow.evaluate(&event, now());
            assert!(of_rule(&out.tags, case.rule).is_empty());
            below.extend(
                out.suppressed
                    .into_iter()
                    .filter(|s| &*s.tag.rule_id == case.rule)
                    .map(|s| s.reason),
            );
        }
        assert_eq!(below.len(), case.want.len(), "{} shadow-run", case.rule);
        assert!(below.iter().all(|r| *r == SuppressReason::BelowFloor));

        // A disable with an expiry silences the rule until the rule store's timer reverts
        // it; taggers never read `expires_at`, they apply the published revert.
        let until: RuleState = serde_json::from_value(json!({"rule_id": case.rule, "state": "disabled",
            "expires_at": "2026-12-04T11:00:00Z", "reason": "noisy during an exercise", "set_by": "ops",
            "set_at": "2026-12-04T07:00:00Z", "auto_revert": false}))
        .unwrap();
        states.apply(&until);
        let tags = run(&index.restate(&states), &case.fire, case.body);
        assert!(
            of_rule(&tags, case.rule).is_empty(),
            "{} until reverted",
            case.rule
        );
        let revert: RuleState =
            serde_json::from_value(json!({"rule_id": case.rule, "state": "enabled",
            "confidence_max": null, "expires_at": null, "reason": null, "set_by": "decnet:expiry",
            "set_at": "2026-12-04T11:00:00Z", "auto_revert": true}))
            .unwrap();
        states.apply(&revert);
        let tags = run(&index.restate(&states), &case.fire, case.body);
        assert_eq!(
            summary(&of_rule(&tags, case.rule)),
            want(&case),
            "{} after the revert",
            case.rule
        );
    }
}

#[test]
fn evidence_explains_without_secrets() {
    let index = RuleIndex::new(&PACK);
    let evidence = |message: &(String, Value), rule: &str| -> Vec<Value> {
        of_rule(&run(&index, message, None), rule)
            .iter()
            .map(|t| serde_json::to_value(&t.evidence).unwrap())
            .collect()
    };
    assert_eq!(
        evidence(&logins("pi", 0, Some(("pi", "raspberry"))), "R0006"),
        vec![json!({"username": "pi", "service": "ssh", "default_pair_id": "D05"})]
    );
    assert_eq!(
        evidence(
            &email(json!({"urls": ["https://user:pw@XN--pple-43d.com:8443/signin?session=4f2a"]})),
            "R0044"
        )[0]["matched_url_host"],
        json!("xn--pple-43d.com")
    );
    // Each intel tag lists only the signals that chose its technique.
    let tags = evidence(
        &intel(json!({"abuseipdb_score": 85, "abuseipdb_categories": [14, 18, 22, 3]})),
        "R0054",
    );
    let lists: Vec<(Value, Value)> = tags
        .iter()
        .map(|e| (e["abuseipdb_categories"].clone(), e["multiplier"].clone()))
        .collect();
    assert_eq!(
        lists,
        vec![
            (json!([18, 22]), json!(0.85)),
            (json!([14]), json!(0.85)),
            (json!([14]), json!(0.85)),
        ]
    );
    let greynoise = evidence(
        &intel(
            json!({"greynoise_classification": "malicious", "greynoise_noise": true,
            "greynoise_tags": ["SSH Bruteforcer"], "greynoise_name": "unknown"}),
        ),
        "R0055",
    );
    assert_eq!(
        greynoise,
        vec![
            json!({"provider": "greynoise", "intel_id": "8c1e4b2a-9d3f-4e6a-b7c5-1a2b3c4d5e6f",
                "verdict_hash": greynoise[0]["verdict_hash"], "greynoise_classification": "malicious",
                "greynoise_name": "unknown", "greynoise_tags": [], "greynoise_noise": true, "multiplier": 1.0}),
            json!({"provider": "greynoise", "intel_id": "8c1e4b2a-9d3f-4e6a-b7c5-1a2b3c4d5e6f",
                "verdict_hash": greynoise[0]["verdict_hash"], "greynoise_classification": "malicious",
                "greynoise_name": "unknown", "greynoise_tags": [], "multiplier": 0.5}),
            json!({"provider": "greynoise", "intel_id": "8c1e4b2a-9d3f-4e6a-b7c5-1a2b3c4d5e6f",
                "verdict_hash": greynoise[0]["verdict_hash"], "greynoise_classification": "malicious",
                "greynoise_name": "unknown", "greynoise_tags": ["ssh_bruteforcer"], "multiplier": 1.0}),
        ]
    );
    let ransom = evidence(
        &session(
            json!({"commands": [{"command_text": format!("echo 'Send 0.1 BTC to {WALLET} to decrypt' > /READ_ME.txt"),
            "ts": "2026-12-04T11:53:00Z"}]}),
        ),
        "R0033",
    );
    assert_eq!(
        ransom[0]["matched_tokens"],
        json!(["btc", "decrypt", WALLET])
    );
}

#[test]
fn the_intel_worked_examples_of_the_spec_hold() {
    let index = RuleIndex::new(&PACK);
    let confidences = |extra: Value, rule: &str| -> (Vec<(String, f64)>, Vec<f64>) {
        let mut tags = Vec::new();
        let mut suppressed = Vec::new();
        for event in events(&intel(extra), None) {
            let out = index.evaluate(&event, now());
            tags.extend(out.tags);
            suppressed.extend(
                out.suppressed
                    .into_iter()
                    .filter(|s| &*s.tag.rule_id == rule)
                    .map(|s| s.tag.confidence),
            );
        }
        (summary(&of_rule(&tags, rule)), suppressed)
    };
    let pairs = |v: &[(&str, f64)]| -> Vec<(String, f64)> {
        v.iter().map(|(a, b)| ((*a).to_owned(), *b)).collect()
    };
    assert_eq!(
        confidences(
            json!({"abuseipdb_score": 79, "abuseipdb_categories": [11]}),
            "R0054"
        )
        .0,
        pairs(&[("T1496", 0.474)])
    );
    assert_eq!(
        confidences(
            json!({"abuseipdb_score": 30, "abuseipdb_categories": [18]}),
            "R0054"
        ),
        (vec![], vec![0.21])
    );
    assert_eq!(
        confidences(json!({"greynoise_classification": "scanner"}), "R0055").0,
        pairs(&[("T1595.002", 0.70)])
    );
    assert_eq!(
        confidences(
            json!({"greynoise_classification": "unknown", "greynoise_noise": true}),
            "R0055"
        )
        .0,
        pairs(&[("T1595", 0.70)])
    );
    assert_eq!(
        confidences(
            json!({"greynoise_classification": "unknown", "greynoise_noise": true, "greynoise_riot": true}),
            "R0055"
        )
        .0,
        vec![]
    );
    assert_eq!(
        confidences(json!({"greynoise_classification": "malicious"}), "R0055").0,
        pairs(&[("T1071", 0.35)])
    );
    assert_eq!(
        confidences(json!({"greynoise_classification": "benign"}), "R0055").0,
        vec![]
    );
}

#[test]
fn sender_masquerade_co_fires_with_relay_abuse_and_bec() {
    let index = RuleIndex::new(&PACK);
    let rules = |message: &(String, Value), body: Option<&str>| -> Vec<String> {
        let mut ids: Vec<String> = run(&index, message, body)
            .iter()
            .map(|t| t.rule_id.to_string())
            .collect();
        ids.dedup();
        ids
    };
    // The same From/envelope mismatch that makes a relay abuse makes a masquerade.
    let relay = email(json!({"rcpt_count": 60, "mail_from_domain": "mailer.bulk.example"}));
    assert_eq!(rules(&relay, None), vec!["R0041", "R0045"]);
    // BEC mail from a look-alike domain without a DKIM signature.
    let bec = email(
        json!({"subject": "Invoice payment - urgent", "from_domain": "c0rp.example",
        "return_path_domain": "c0rp.example", "mail_from_domain": "c0rp.example",
        "dkim_signed": false, "dkim_signature_present": false}),
    );
    assert_eq!(
        rules(
            &bec,
            Some("Please transfer the amount today and keep it confidential.")
        ),
        vec!["R0045", "R0047"]
    );
}

#[test]
fn a_misfit_field_costs_only_its_own_rule() {
    let index = RuleIndex::new(&PACK);
    // `fail_count` of the wrong type: R0001 decides nothing, R0002 still fires.
    let mut payload = Map::new();
    payload.insert("service".into(), json!("ssh"));
    payload.insert("username".into(), json!("root"));
    payload.insert("fail_count".into(), json!({"n": 7}));
    payload.insert("password_count".into(), json!(7));
    payload.insert("result".into(), json!("failure"));
    let mut event = EvalEvent::new(SourceKind::AuthAttempt, "sess-9#auth", payload);
    event.attacker_uuid = Some(uuid::Uuid::nil());
    let out = index.evaluate(&event, now());
    let fired: Vec<&str> = out.tags.iter().map(|t| &*t.rule_id).collect();
    assert_eq!(fired, vec!["R0002"]);
    assert_eq!(out.lifter_errors.len(), 1);
    assert_eq!(&*out.lifter_errors[0].rule_id, "R0001");
    assert_eq!(
        out.lifter_errors[0].detail,
        "fail_count: expected an integer"
    );
    // The sequential reference agrees.
    assert_eq!(index.evaluate_sequential(&event, now()), out);
}

#[test]
fn every_source_kind_is_claimed_by_the_pack() {
    let index = RuleIndex::new(&PACK);
    for kind in SourceKind::ALL {
        assert!(index.covers(kind), "no rule evaluates {kind}");
    }
}

#[test]
fn one_rule_is_replaced_while_evaluations_finish_on_their_snapshot() {
    let before = RuleIndex::new(&PACK);
    let mut states = StateTable::default();
    states.set(
        "R0002",
        RuleMode::Clipped {
            confidence_max: 0.6,
        },
    );
    let before = before.restate(&states);
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/ttp/R0001.yaml"),
    )
    .unwrap()
    .replace("fail_threshold: 5", "fail_threshold: 10");
    let catalogue = decnet_ttp::catalogue::Catalogue::bundled();
    let tables = decnet_ttp::lifter::Tables::default();
    let (stricter, _) = decnet_ttp::rule::parse_rule(
        "R0001.yaml",
        "R0001",
        &text,
        catalogue,
        &tables,
        now().date_naive(),
    )
    .unwrap();
    let after = before.with_rule(stricter);
    let message = logins("root", 6, None);
    let ids = |index: &RuleIndex| -> Vec<(String, f64)> {
        run(index, &message, None)
            .iter()
            .map(|t| (t.rule_id.to_string(), t.confidence))
            .collect()
    };
    // The old snapshot still holds the old rule; the new one only the stricter threshold.
    // The state of the other rule (R0002 clipped) carries over.
    assert_eq!(
        ids(&before),
        vec![("R0001".into(), 0.85), ("R0002".into(), 0.6)]
    );
    assert_eq!(ids(&after), vec![("R0002".into(), 0.6)]);
    let gone = after.without_rule("R0002");
    assert!(gone.get("R0002").is_none());
    assert_eq!(ids(&gone), vec![]);
    assert_eq!(after.rules().count(), before.rules().count());
}

#[test]
fn a_field_of_the_wrong_type_reads_as_absent() {
    let index = RuleIndex::new(&PACK);
    let fired = |message: &(String, Value)| -> (Vec<String>, Vec<String>) {
        let mut rules = Vec::new();
        let mut notes = Vec::new();
        for event in events(message, None) {
            let out = index.evaluate(&event, now());
            rules.extend(out.tags.iter().map(|t| t.rule_id.to_string()));
            notes.extend(
                out.lifter_errors
                    .iter()
                    .map(|e| format!("{} {}", e.rule_id, e.detail)),
            );
        }
        rules.dedup();
        (rules, notes)
    };
    // "A or B": B still fires when A is unreadable.
    assert_eq!(
        fired(&session(json!({"bytes_out": "lots", "request_count": 80}))),
        (
            vec!["R0034".to_owned()],
            vec!["R0034 bytes_out: expected an integer".to_owned()]
        )
    );
    // A trigger whose kind is unreadable is still a canary that fired: the catch-all claims it.
    let mut odd = canary("honeydoc", "http", None);
    odd.1["token_kind"] = json!(5);
    assert_eq!(fired(&odd).0, vec!["R0062".to_owned()]);
    // An unreadable evidence-only field costs nothing but its own key.
    let leak = fingerprinted(json!({"kind": "ipv6_leak", "addr": "fe80::1", "iid_kind": 5}));
    let event = events(&leak, None).remove(0);
    let out = index.evaluate(&event, now());
    assert_eq!(out.lifter_errors.len(), 1);
    let tags = out.tags;
    assert_eq!(tags.len(), 1);
    assert_eq!(
        tags[0]
            .evidence
            .get(decnet_ttp::evidence::EvidenceKey::IidKind),
        Some(&json!("unknown"))
    );
}

#[test]
fn review_findings_stay_fixed() {
    let index = RuleIndex::new(&PACK);
    // A fractional AbuseIPDB score is a score.
    let tags = run(
        &index,
        &intel(json!({"abuseipdb_score": 87.5, "abuseipdb_categories": [18]})),
        None,
    );
    assert_eq!(
        summary(&of_rule(&tags, "R0054")),
        vec![("T1110".to_owned(), 0.6125)]
    );
    // The envelope is not a header: a From/envelope mismatch names the From header only.
    let tags = run(
        &index,
        &email(json!({"mail_from_domain": "bulk.example"})),
        None,
    );
    assert_eq!(
        of_rule(&tags, "R0045")[0]
            .evidence
            .get(decnet_ttp::evidence::EvidenceKey::MatchedHeaders),
        Some(&json!(["From"]))
    );
    // No SPF verdict without an SPF answer.
    let tags = run(
        &index,
        &email(json!({"auth_results_present": true, "spf_pass": null})),
        None,
    );
    assert!(of_rule(&tags, "R0045").is_empty());
    // A punycode host followed by a path parameter reports the host alone.
    let tags = run(
        &index,
        &email(json!({"urls": ["https://xn--pple-43d.com;jsessionid=SECRET123"]})),
        None,
    );
    assert_eq!(
        of_rule(&tags, "R0044")[0]
            .evidence
            .get(decnet_ttp::evidence::EvidenceKey::MatchedUrlHost),
        Some(&json!("xn--pple-43d.com"))
    );
}
