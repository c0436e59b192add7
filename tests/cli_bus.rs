//! `decnet publish` and `decnet tail` against a private nats-server.

use std::io::Write;
use std::process::{Command, Stdio};

use decnet_test_support::NatsServer;
use serde_json::Value;

fn decnet(args: &[&str], stdin: &str) -> std::process::Output {
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

#[test]
fn published_messages_are_stored_once_and_tailed_from_the_stream() {
    let server = NatsServer::start().unwrap();
    let url = server.url();
    let lines = concat!(
        r#"{"subject":"attacker.session.ended","payload":{"session_id":"a","attacker_ip":"203.0.113.7","decky_id":"decoy-01","service":"ssh","ended_at":"2026-12-04T10:00:00Z","duration_s":1}}"#,
        "\n",
        r#"{"source_kind":"command","source_id":"c1","attacker_ip":"203.0.113.7","payload":{"command_text":"id"}}"#,
        "\n",
        "not json\n",
        r#"{"subject":"weather.report","payload":{}}"#,
        "\n",
        r#"{"subject":"attacker.observed","payload":{"attacker_ip":"203.0.113.8"},"msg_id":"attacker.observed:203.0.113.8"}"#,
        "\n",
    );
    let out = decnet(&["publish", "--nats-url", &url], lines);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("line 3: invalid JSON: expected ident at line 1 column 2, skipped"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 4: subject \"weather.report\" belongs to no stream, skipped"),
        "{stderr}"
    );
    assert!(stderr.ends_with("decnet publish: 2 stored, 0 already stored, 2 invalid, 1 tagging events left for decnet tag\n"), "{stderr}");
    // The same input again stores nothing.
    let again = decnet(&["publish", "--nats-url", &url], lines);
    assert!(String::from_utf8_lossy(&again.stderr).contains("0 stored, 2 already stored"));

    let tail = decnet(
        &[
            "tail",
            "--nats-url",
            &url,
            "--json",
            "--from-seq",
            "1",
            "--count",
            "2",
            "attacker.>",
        ],
        "",
    );
    assert!(
        tail.status.success(),
        "{}",
        String::from_utf8_lossy(&tail.stderr)
    );
    let shown: Vec<Value> = String::from_utf8_lossy(&tail.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let subjects: Vec<&str> = shown
        .iter()
        .map(|m| m["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        vec!["attacker.session.ended", "attacker.observed"]
    );
    assert_eq!(
        shown[1]["headers"]["Nats-Msg-Id"],
        "attacker.observed:203.0.113.8"
    );
    assert_eq!(shown[0]["body"]["session_id"], "a");
    assert_eq!(shown[0]["stream"], "EVENTS");
}
