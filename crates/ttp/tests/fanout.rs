//! From bus messages to evaluation events: kinds, source ids, anchors and the errors that
//! dead-letter a message (EVENTS.md §5).

use decnet_ttp::SourceKind;
use decnet_ttp::fanout::{from_message, from_tagging_event, verdict_hash};
use serde_json::{Value, json};

const IP_UUID: &str = "6dd21fc3-121b-5123-aaa0-18e21dfe5b91";

fn kinds_and_ids(subject: &str, body: &Value) -> Vec<(SourceKind, String)> {
    let fanout = from_message(subject, body).unwrap();
    fanout
        .events
        .into_iter()
        .map(|e| (e.kind, e.source_id.to_string()))
        .collect()
}

fn session(extra: &Value) -> Value {
    let mut base = json!({"session_id": "sess-1", "attacker_ip": "203.0.113.7", "decky_id": "decoy-01",
        "service": "ssh", "ended_at": "2026-12-03T10:00:00Z", "duration_s": 12.5});
    base.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    base
}

#[test]
fn a_session_yields_session_then_commands_then_requests_then_auth() {
    let body = session(&json!({
        "commands": [{"command_text": "uname -a", "ts": "2026-12-03T09:59:00Z"}, "junk", {"text": "id", "id": "sess-1#7"}, {"command_text": ""}],
        "http_requests": [{"method": "GET", "raw_url": "/x", "user_agent": null}],
        "auth_attempts": [{"username": "root", "password": "x", "result": "failure", "ts": "2026-12-03T09:58:00Z"}],
    }));
    let fanout = from_message("attacker.session.ended", &body).unwrap();
    let ids: Vec<(SourceKind, &str)> = fanout
        .events
        .iter()
        .map(|e| (e.kind, &*e.source_id))
        .collect();
    assert_eq!(
        ids,
        vec![
            (SourceKind::Session, "sess-1"),
            (SourceKind::Command, "sess-1#0"),
            (SourceKind::Command, "sess-1#7"),
            (SourceKind::HttpRequest, "sess-1#req:0"),
            (SourceKind::AuthAttempt, "sess-1#auth"),
        ]
    );
    assert_eq!(fanout.skipped_items, 2);
    for event in &fanout.events {
        assert_eq!(event.attacker_uuid.unwrap().to_string(), IP_UUID);
        assert_eq!(event.decky_id.as_deref(), Some("decoy-01"));
        assert_eq!(event.session_id.as_deref(), Some("sess-1"));
    }
    assert_eq!(fanout.events[0].payload["command_count"], json!(4));
    assert_eq!(fanout.events[1].payload["service"], json!("ssh"));
    assert_eq!(fanout.events[3].payload["request_path"], json!("/x"));
}

#[test]
fn a_session_without_id_is_named_by_address_and_end_time() {
    let body = session(&json!({"session_id": null, "commands": [{"command_text": "w"}]}));
    let ids = kinds_and_ids("attacker.session.ended", &body);
    assert_eq!(ids[1].1, "203.0.113.7@2026-12-03T10:00:00Z#0");
}

#[test]
fn the_auth_aggregate_follows_the_spec() {
    let attempts: Vec<Value> = (0..6)
        .map(|i| json!({"username": "root", "password": format!("pw{i}"), "result": "failure", "ts": format!("2026-12-03T09:00:0{i}Z")}))
        .chain([
            json!({"username": "admin", "password": "admin", "result": "success", "ts": "2026-12-03T09:00:09Z"}),
            json!({"username": "pi", "password": "raspberry", "result": "failure", "ts": "2026-12-03T09:00:08Z"}),
        ])
        .collect();
    let fanout = from_message(
        "attacker.session.ended",
        &session(&json!({"auth_attempts": attempts})),
    )
    .unwrap();
    let agg = &fanout.events.last().unwrap().payload;
    assert_eq!(agg["attempt_count"], json!(8));
    assert_eq!(agg["fail_count"], json!(7));
    assert_eq!(agg["result"], json!("success"));
    assert_eq!(agg["username"], json!("admin"));
    assert_eq!(agg["password"], json!("admin"));
    assert_eq!(agg["password_count"], json!(1));
    assert_eq!(agg["max_password_count"], json!(6));
    assert_eq!(agg["fails_before_success"], json!(7));
    assert_eq!(agg["prior_brute"], json!(true));
    assert_eq!(agg["usernames"], json!(["root", "pi", "admin"]));
    assert_eq!(agg["window_s"], json!(9.0));
}

#[test]
fn errors_name_the_field_and_the_reason() {
    let cases = [
        (
            session(&json!({"commands": [{}, {}, {}, {"command_text": 7}]})),
            "schema_error: commands[3].command_text: expected string",
        ),
        (
            session(&json!({"attacker_ip": "Unknown"})),
            "no_anchor: no attacker_uuid, no parsable address and no identity",
        ),
        (
            session(&json!({"session_id": "a|b"})),
            "invalid_source_id: source id \"a|b\" is empty or holds '|' or a control character",
        ),
        (
            json!({"attacker_ip": "203.0.113.7"}),
            "schema_error: decky_id: missing required field",
        ),
        (
            json!([1, 2]),
            "not_an_object: the body is not a JSON object",
        ),
    ];
    for (body, want) in cases {
        let err = from_message("attacker.session.ended", &body).unwrap_err();
        assert_eq!(err.to_string(), want);
    }
    let err = from_message("ttp.tagged", &json!({})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsupported_subject: subject \"ttp.tagged\" is not a source event"
    );
}

#[test]
fn the_decnet_envelope_is_unwrapped() {
    let body = json!({"v": 1, "id": "e1", "topic": "x", "type": "jarm", "ts": "2026-12-03T10:00:00Z",
        "payload": {"attacker_ip": "203.0.113.7", "jarm_hash": "07D14D16D21D21D07C42D41D00041D24A458A375EEF0C576D23A7BAB9A9FB1", "port": 50050}});
    let ids = kinds_and_ids("attacker.fingerprinted", &body);
    assert_eq!(
        ids,
        vec![(
            SourceKind::Fingerprint,
            format!(
                "{IP_UUID}:jarm:50050:07d14d16d21d21d07c42d41d00041d24a458a375eef0c576d23a7bab9a9fb1"
            )
        )]
    );
}

#[test]
fn intel_yields_one_event_per_present_provider() {
    let body = json!({"attacker_uuid": IP_UUID, "attacker_ip": "203.0.113.7", "intel_id": "11111111-1111-5111-8111-111111111111",
        "aggregate_verdict": "malicious", "abuseipdb_score": 95, "abuseipdb_categories": [22, 18],
        "greynoise_classification": null, "feodo_listed": null, "threatfox_listed": false, "threatfox_threat_types": []});
    let ids = kinds_and_ids("attacker.intel.enriched", &body.clone());
    let providers: Vec<&str> = ids
        .iter()
        .map(|(_, id)| id.split(':').nth(1).unwrap())
        .collect();
    assert_eq!(providers, vec!["abuseipdb", "threatfox"]);
    // A score drift inside the same decile is the same verdict; the next decile is not.
    let mut drift = body.as_object().unwrap().clone();
    drift.insert("abuseipdb_score".into(), json!(91));
    assert_eq!(
        verdict_hash("abuseipdb", body.as_object().unwrap()),
        verdict_hash("abuseipdb", &drift)
    );
    drift.insert("abuseipdb_score".into(), json!(89));
    assert_ne!(
        verdict_hash("abuseipdb", body.as_object().unwrap()),
        verdict_hash("abuseipdb", &drift)
    );
}

#[test]
fn verdict_hashes_sort_numbers_numerically() {
    // sha256('{"categories":[9,13],"score_decile":9}')[..16]: the canonical JSON of RULES.md
    // §8.1, lists sorted by value.
    for categories in [json!([9, 13]), json!([13, 9]), json!([13, 9, 13])] {
        let body = json!({"abuseipdb_score": 95, "abuseipdb_categories": categories});
        assert_eq!(
            verdict_hash("abuseipdb", body.as_object().unwrap()),
            "6a140424f02d4d75"
        );
    }
}

#[test]
fn canary_hits_from_resolvers_and_scanners_evaluate_nothing() {
    let hit = |channel: &str, scanner: bool, fp: bool| {
        let mut body = json!({"token_id": "t", "trigger_id": "trig-1", "decky_name": "decoy-01", "src_ip": "203.0.113.7",
            "channel": channel, "suspected_scanner": scanner, "token_kind": "honeydoc"});
        if fp {
            body["fingerprint"] =
                json!({"navigator_webdriver": true, "ua_signature": "chrome/124 linux"});
        }
        kinds_and_ids("canary.t.triggered", &body)
            .into_iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        hit("http", false, true),
        vec![SourceKind::Canary, SourceKind::CanaryFingerprint]
    );
    assert_eq!(hit("external", false, false), vec![SourceKind::Canary]);
    assert!(hit("dns", false, false).is_empty());
    assert!(hit("http", true, true).is_empty());
}

#[test]
fn credential_reuse_fans_out_per_attacker() {
    let body = json!({"id": "reuse-9", "secret_kind": "password", "target_count": 3, "credential_hash": "abc",
        "attacker_uuids": [IP_UUID], "attacker_ips": ["203.0.113.7", "2001:db8::1"], "deckies": [], "services": []});
    let fanout = from_message("credential.reuse.detected", &body).unwrap();
    let ids: Vec<&str> = fanout.events.iter().map(|e| &*e.source_id).collect();
    assert_eq!(
        ids,
        vec![
            format!("reuse-9:{IP_UUID}"),
            "reuse-9:8b93dc54-50f0-5b96-b580-413ec4f58e5d".to_owned()
        ]
    );
    assert_eq!(fanout.events[0].payload["attacker_count"], json!(2));
}

#[test]
fn identity_events_anchor_on_the_identity_only() {
    let body = json!({"identity_uuid": "22222222-2222-5222-8222-222222222222", "observation_uuids": [IP_UUID],
        "shared_password_hash": "h1", "account_count": 4});
    let fanout = from_message("identity.formed", &body).unwrap();
    let event = &fanout.events[0];
    assert_eq!(&*event.source_id, "22222222-2222-5222-8222-222222222222:h1");
    assert_eq!(event.attacker_uuid, None);
    assert!(event.identity_uuid.is_some());
}

#[test]
fn tagging_event_lines_are_validated() {
    let ok = json!({"source_kind": "command", "source_id": "x1", "attacker_ip": "203.0.113.7", "payload": {"command_text": "id"}});
    let event = from_tagging_event(ok.as_object().unwrap()).unwrap();
    assert_eq!(event.attacker_uuid.unwrap().to_string(), IP_UUID);
    let cases = [
        (
            json!({"source_kind": "shell", "source_id": "x", "attacker_ip": "203.0.113.7", "payload": {}}),
            "schema_error: source_kind: unknown source kind \"shell\"",
        ),
        (
            json!({"source_kind": "command", "source_id": "x", "payload": {}}),
            "no_anchor: no attacker_uuid, no parsable address and no identity",
        ),
        (
            json!({"source_kind": "command", "source_id": "x", "attacker_ip": "203.0.113.7"}),
            "schema_error: payload: expected an object",
        ),
        (
            json!({"source_kind": "command", "source_id": "x", "attacker_ip": "203.0.113.7", "payload": {}, "extra": 1}),
            "schema_error: extra: unknown key",
        ),
    ];
    for (line, want) in cases {
        assert_eq!(
            from_tagging_event(line.as_object().unwrap())
                .unwrap_err()
                .to_string(),
            want
        );
    }
}
