//! `decnet rulestore` and `decnet rules disable|clip|enable` as an operator runs them: the
//! committed state on stdout, the store's refusal word for word on stderr, and a clear
//! message when no store answers.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use decnet_test_support::{NatsServer, copy_dir, free_port};
use serde_json::Value;
use tempfile::TempDir;

fn decnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_decnet"))
        .args(args)
        .env_remove("DECNET_NATS_URL")
        .env("USER", "operator")
        .output()
        .unwrap()
}

fn rulestore(nats: &str, tmp: &Path, rules: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_decnet"))
        .args(["rulestore", "--nats-url", nats, "--rules-dir"])
        .arg(rules)
        .arg("--database-url")
        .arg(format!("sqlite://{}", tmp.join("decnet.db").display()))
        .args(["--ops-listen", &format!("127.0.0.1:{}", free_port())])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Run a state command once the store answers (it may still be loading the pack).
fn until_answered(args: &[&str]) -> Output {
    for _ in 0..100 {
        let out = decnet(args);
        if out.status.code() != Some(3) {
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the rule store never answered {args:?}");
}

#[test]
fn operators_change_rule_state_from_the_command_line() {
    let server = NatsServer::start().unwrap();
    let url = server.url();
    let tmp = TempDir::new().unwrap();
    let rules = tmp.path().join("rules");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/ttp"),
        &rules,
    )
    .unwrap();
    let mut store = rulestore(&url, tmp.path(), &rules);

    let out = until_answered(&[
        "rules",
        "disable",
        "R0016",
        "--reason",
        "noisy on the lab",
        "--for",
        "4h",
        "--as",
        "alice",
        "--nats-url",
        &url,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["rule_id"], "R0016");
    assert_eq!(state["state"], "disabled");
    assert_eq!(state["reason"], "noisy on the lab");
    assert_eq!(state["set_by"], "alice");
    let expires: chrono::DateTime<chrono::Utc> =
        state["expires_at"].as_str().unwrap().parse().unwrap();
    let set_at: chrono::DateTime<chrono::Utc> = state["set_at"].as_str().unwrap().parse().unwrap();
    let lasts = (expires - set_at).num_seconds();
    assert!((4 * 3600 - 5..=4 * 3600).contains(&lasts), "{lasts} s");

    let out = decnet(&[
        "rules",
        "clip",
        "R0017",
        "--ceiling",
        "0.5",
        "--reason",
        "tuning",
        "--nats-url",
        &url,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["state"], "clipped");
    assert_eq!(state["confidence_max"], 0.5);
    assert_eq!(state["expires_at"], Value::Null);
    let setter = state["set_by"].as_str().unwrap();
    assert!(setter.starts_with("operator@"), "{setter}");

    for (args, message) in [
        (
            vec!["rules", "clip", "R0017", "--reason", "x"],
            "decnet rules clip: state 'clipped' requires confidence_max (status 422)\n",
        ),
        (
            vec!["rules", "clip", "R0017", "--max", "1.5", "--reason", "x"],
            "decnet rules clip: confidence_max must be within [0, 1] (status 422)\n",
        ),
        (
            vec!["rules", "disable", "R9999", "--reason", "x"],
            "decnet rules disable: unknown rule 'R9999' (status 404)\n",
        ),
        (
            vec!["rules", "disable", "R0016"],
            "decnet rules disable: state 'disabled' requires a reason (status 422)\n",
        ),
        (
            vec![
                "rules",
                "disable",
                "R0016",
                "--reason",
                "x",
                "--until",
                "2001-01-01T00:00:00Z",
            ],
            "decnet rules disable: expires_at must be a future RFC 3339 time (status 422)\n",
        ),
    ] {
        let mut args = args.clone();
        args.extend(["--nats-url", &url]);
        let out = decnet(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&out), message, "{args:?}");
        assert!(out.stdout.is_empty());
    }

    let out = decnet(&[
        "rules",
        "enable",
        "R0016",
        "--as",
        "bob",
        "--nats-url",
        &url,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["state"], "enabled");
    assert_eq!(state["set_by"], "bob");
    assert_eq!(state["reason"], Value::Null);

    let bad = decnet(&["rules", "disable", "R0016", "--reason", "x", "--for", "4x"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("'4x' is not a duration like 90s, 30m, 4h, 2d or 1h30m"),
        "{}",
        stderr(&bad)
    );

    store.kill().unwrap();
    store.wait().unwrap();
    let out = decnet(&[
        "rules",
        "disable",
        "R0016",
        "--reason",
        "x",
        "--nats-url",
        &url,
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        stderr(&out),
        "decnet rules disable: rule store unavailable: no answer on decnet.rulestore.state.set within 2 s\n"
    );
}

#[test]
fn the_rule_store_refuses_to_start_on_an_invalid_pack_and_names_each_problem() {
    let server = NatsServer::start().unwrap();
    let tmp = TempDir::new().unwrap();
    let rules = tmp.path().join("rules");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/ttp"),
        &rules,
    )
    .unwrap();
    let r0015 = std::fs::read_to_string(rules.join("R0015.yaml")).unwrap();
    std::fs::write(
        rules.join("R0015.yaml"),
        r0015.replace("confidence: 0.85", "confidence: 1.85"),
    )
    .unwrap();
    let store = rulestore(&server.url(), tmp.path(), &rules);
    let out = store.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "decnet rulestore: rules in {}:\nR0015.yaml:11:55: emits[0].confidence: 1.85 is outside [0, 1]\n",
            rules.display()
        )
    );
}
