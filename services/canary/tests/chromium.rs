//! A real headless Chromium (Debian's `chromium`, installed by `.ci/run`) opens the
//! fingerprint HTML canary from a local file: the beacon arrives and validates, the token is
//! revoked, and a tagger turns the event into an R0049 (navigator.webdriver) tag.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use decnet_canary::CanaryConfig;
use decnet_ops::Ops;
use decnet_storage::{Database, Options};
use decnet_tagger::TaggerConfig;
use decnet_test_support::{NatsServer, free_port};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::watch;
use uuid::Uuid;

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .map(|name| Path::new("/usr/bin").join(name))
        .find(|p| p.exists())
}

async fn until<T>(what: &str, secs: u64, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_opens_the_canary_and_the_tagger_tags_webdriver() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("CI").is_err(),
            "CI installs Debian's chromium (.ci/run); the browser test cannot be skipped there"
        );
        let _ = writeln!(
            std::io::stderr().lock(),
            "headless Chromium test skipped: no chromium in /usr/bin"
        );
        return;
    };
    let nats = NatsServer::start().unwrap();
    let tmp = TempDir::new().unwrap();
    let url = format!("sqlite://{}", tmp.path().join("decnet.db").display());
    let mut config = CanaryConfig::new(&nats.url(), &url, tmp.path());
    let port = free_port();
    config.http_listen = format!("127.0.0.1:{port}").parse().unwrap();
    config.http_base = format!("http://127.0.0.1:{port}");
    config.fingerprint_secret = Some("browser-test-secret".to_owned());
    let ops = Ops::new();
    let (stop, shutdown) = watch::channel(false);
    let canary = {
        let (ops, shutdown) = (Arc::clone(&ops), shutdown.clone());
        tokio::spawn(async move { decnet_canary::run_with(&config, &ops, shutdown).await })
    };
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/ttp");
    let tagger_config = TaggerConfig::new(&nats.url(), &url, Some(rules));
    let tagger = {
        let (ops, shutdown) = (Arc::clone(&ops), shutdown.clone());
        tokio::spawn(async move { decnet_tagger::run_with(&tagger_config, &ops, shutdown).await })
    };
    until("both services", 30, async || {
        ops.readiness().0.then_some(())
    })
    .await;

    let client = async_nats::connect(nats.url()).await.unwrap();
    let reply = client
        .request(
            "decnet.canary.token.mint",
            serde_json::to_vec(
                &json!({"generator": "fingerprint_html", "decky_name": "decoy-01",
                "created_by": "browser-test"}),
            )
            .unwrap()
            .into(),
        )
        .await
        .unwrap();
    let minted: Value = serde_json::from_slice(&reply.payload).unwrap();
    let token: Uuid = minted["token"]["uuid"].as_str().unwrap().parse().unwrap();
    let page = tmp
        .path()
        .join(minted["artifact"]["filename"].as_str().unwrap());
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(minted["artifact"]["content_b64"].as_str().unwrap())
        .unwrap();
    std::fs::write(&page, bytes).unwrap();

    let profile = tmp.path().join("profile");
    let mut browser = Command::new(browser)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
            // What automation frameworks pass: `navigator.webdriver` becomes true.
            "--enable-automation",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");

    let db = Database::connect(&url, &Options::default()).await.unwrap();
    let valid = until("a valid fingerprint from the browser", 60, async || {
        db.canary_triggers(token, 100, None)
            .await
            .unwrap()
            .into_iter()
            .find(|t| t.fingerprint_state == "valid")
    })
    .await;
    let _ = browser.kill();
    let _ = browser.wait();

    assert_eq!(valid.hit_kind, "fingerprint");
    let signals = valid.signals.clone().unwrap();
    assert_eq!(signals["navigator_webdriver"], true, "{signals}");
    let fp = valid.fingerprint.clone().unwrap();
    let objects = ["nav", "scr", "tz", "cv", "gl", "au", "ft", "rtc"]
        .iter()
        .filter(|k| fp.get(**k).is_some_and(Value::is_object))
        .count();
    assert!(objects >= 6, "the collectors ran: {fp}");
    let stored = db.canary_token(token).await.unwrap().unwrap();
    assert_eq!(stored.state, "revoked");
    assert_eq!(
        stored.revoke_reason.as_deref(),
        Some("fingerprint_collected")
    );

    let tag = until("the R0049 tag", 30, async || {
        db.tags()
            .await
            .unwrap()
            .into_iter()
            .find(|t| t.rule_id == "R0049")
    })
    .await;
    assert_eq!(tag.technique_id, "T1059");
    assert_eq!(tag.source_kind, "canary_fingerprint");

    let _ = stop.send(true);
    canary.await.unwrap().unwrap();
    tagger.await.unwrap().unwrap();
}
