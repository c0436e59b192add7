//! `decnet canary` and its token commands as an operator runs them: mint writes the artifact
//! with its mode and prints the token, and the other commands see and change it.

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use decnet_test_support::{NatsServer, free_port};
use serde_json::Value;
use tempfile::TempDir;

fn decnet(args: &[&str], data: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_decnet"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("USER", "operator")
        .output()
        .unwrap()
}

fn remote(args: &[&str], nats: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_decnet"))
        .args(args)
        .args(["--nats-url", nats])
        .env("USER", "operator")
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn canary(nats: &str, data: &std::path::Path, beacon: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_decnet"))
        .args(["canary", "--nats-url", nats, "--data-dir"])
        .arg(data)
        .args(["--http-listen", &format!("127.0.0.1:{beacon}")])
        .args(["--http-base", &format!("http://127.0.0.1:{beacon}")])
        .args(["--ops-listen", &format!("127.0.0.1:{}", free_port())])
        .env("DECNET_CANARY_FINGERPRINT_SECRET", "cli-secret")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn operators_mint_place_list_and_revoke_tokens() {
    let server = NatsServer::start().unwrap();
    let nats = server.url();
    let tmp = TempDir::new().unwrap();
    let data = tmp.path().join("data");
    let out_dir = tmp.path().join("artifacts");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut service = canary(&nats, &data, free_port());

    let mint_args = [
        "canary",
        "mint",
        "--generator",
        "env_file",
        "--decky",
        "web-01",
        "--out",
        out_dir.to_str().unwrap(),
    ];
    let mut minted = None;
    for _ in 0..100 {
        let out = remote(&mint_args, &nats);
        if out.status.code() != Some(3) {
            minted = Some(out);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let minted = minted.expect("the canary service answers");
    let err = String::from_utf8_lossy(&minted.stderr).into_owned();
    let token = json(&minted);
    assert_eq!(token["generator"], "env_file");
    assert_eq!(
        token["created_by"].as_str().unwrap().split('@').next(),
        Some("operator")
    );
    assert!(token.get("fingerprint_nonce").is_none() && token.get("slug").is_none());
    let file = out_dir.join(".env");
    assert!(err.contains(&format!("wrote {}", file.display())), "{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    let beacon = token["beacon_url"].as_str().unwrap();
    assert!(
        text.contains(&format!("WEBHOOK_NOTIFY_URL={beacon}/webhook")),
        "{text}"
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let id = token["uuid"].as_str().unwrap().to_owned();

    let listed = json(&decnet(&["canary", "list", "--decky", "web-01"], &data));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["uuid"], id.as_str());

    let failed = json(&remote(
        &["canary", "placement", &id, "--error", "read-only fs"],
        &nats,
    ));
    assert_eq!(
        (failed["state"].as_str(), failed["last_error"].as_str()),
        (Some("failed"), Some("read-only fs"))
    );
    let again = remote(&["canary", "placement", &id, "--ok"], &nats);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&again.stderr),
        "decnet canary placement: placement can only be reported for a planted token (status 422)\n"
    );

    let revoked = json(&remote(
        &[
            "canary", "revoke", &id, "--reason", "retired", "--as", "alice",
        ],
        &nats,
    ));
    assert_eq!(revoked["state"], "revoked");
    assert_eq!(revoked["revoked_by"], "alice");
    let got = json(&decnet(&["canary", "get", &id], &data));
    assert_eq!(got["revoke_reason"], "retired");
    let triggers = json(&decnet(&["canary", "triggers", &id], &data));
    assert_eq!(triggers, Value::Array(Vec::new()));

    let unknown = remote(
        &["canary", "mint", "--generator", "nope", "--decky", "web-01"],
        &nats,
    );
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&unknown.stderr),
        "decnet canary mint: unknown generator 'nope' (status 422)\n"
    );
    let generators = json(
        &Command::new(env!("CARGO_BIN_EXE_decnet"))
            .args(["canary", "generators"])
            .output()
            .unwrap(),
    );
    assert_eq!(generators.as_array().unwrap().len(), 10);

    service.kill().unwrap();
    service.wait().unwrap();
}
