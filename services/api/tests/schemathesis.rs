//! Schemathesis (from PyPI) against the served OpenAPI document with an admin token: no
//! server error and no answer that breaks its own documented schema.
//!
//! The CLI is found as `$DECNET_SCHEMATHESIS`, on `PATH`, or in the virtualenv `.ci/run`
//! installs. Without it the test says it skipped, except under `CI=true`, where it fails: CI
//! installs it, so a missing CLI there is a broken setup, not a pass.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use decnet_api::auth::{Role, issue};
use decnet_api::routes::router;
use decnet_api::{AppState, Secret, Verifier};
use decnet_ops::Ops;
use decnet_storage::{Database, Options};
use decnet_test_support::{NatsServer, free_port};

const VENV_BIN: &str = ".cache/decnet/schemathesis-4.32.5/bin/schemathesis";

fn schemathesis() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DECNET_SCHEMATHESIS") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("schemathesis"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let venv = PathBuf::from(std::env::var_os("HOME")?).join(VENV_BIN);
        venv.is_file().then_some(venv)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let Some(cli) = schemathesis() else {
        assert!(
            std::env::var("CI").is_err(),
            "schemathesis is not installed, and CI must run this test (.ci/run installs it)"
        );
        let _ = writeln!(
            std::io::stderr().lock(),
            "skipped: schemathesis is not installed (set DECNET_SCHEMATHESIS or put it on PATH)"
        );
        return;
    };
    // A real NATS, rule store and tag set, so operations reach their logic: rule ids exist,
    // state changes commit, readiness is ready.
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("api.db").display());
    let db = Database::connect(&url, &Options::default()).await.unwrap();
    common::seed(&db).await;
    let store = common::Store::start(&nats.url(), &url, dir.path()).await;
    let secret = Secret::new(b"a schemathesis key of at least 32 bytes".to_vec(), "t").unwrap();
    let now = chrono::Utc::now().timestamp();
    let token = issue(&secret, "schemathesis", Role::Admin, now, 3600, None);
    let client = async_nats::connect(nats.url()).await.unwrap();
    let state = AppState::new(
        db,
        Verifier::new(secret, None),
        &nats.url(),
        Some(client),
        Ops::new(),
    );
    let port = free_port();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, router(state)).await });

    let work = dir.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        // Schemathesis keeps a cache in its working directory: the temporary one, not the
        // source tree.
        Command::new(cli)
            .current_dir(work)
            .arg("run")
            .arg(format!("http://127.0.0.1:{port}/api/v1/openapi.json"))
            .args(["--checks", "not_a_server_error,response_schema_conformance"])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args(["--max-examples", "25", "--workers", "1", "--seed", "1"])
            .args(["--request-timeout", "10"])
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    });
    let output = tokio::time::timeout(Duration::from_secs(600), output)
        .await
        .expect("schemathesis finishes within 10 minutes")
        .unwrap();
    server.abort();
    store.stop().await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}"
    );
}
