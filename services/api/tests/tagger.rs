//! A rule disabled through the API changes what a real tagger emits, and deleting the state
//! brings the rule back: API → rule store → RULES stream → tagger, all real and in process.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, header};
use decnet_api::auth::{Role, issue};
use decnet_api::routes::router;
use decnet_api::{AppState, Secret, Verifier};
use decnet_ops::Ops;
use decnet_storage::{Database, Options};
use decnet_tagger::TaggerConfig;
use decnet_test_support::NatsServer;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::watch;
use tower::ServiceExt;

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

fn metric(ops: &Ops, line_start: &str) -> f64 {
    ops.metrics()
        .lines()
        .find_map(|l| {
            l.strip_prefix(line_start)
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// A session whose SUID search R0015 tags as T1548.001.
async fn publish_session(js: &async_nats::jetstream::Context, session: &str) {
    let body = json!({"session_id": session, "attacker_ip": "198.51.100.23", "decky_id": "decoy-01",
        "service": "ssh", "ended_at": "2026-12-04T10:01:00Z", "duration_s": 5.0,
        "commands": [{"command_text": "find / -perm -4000 -type f 2>/dev/null", "ts": "2026-12-04T10:00:00Z"}],
        "auth_attempts": []});
    let payload: bytes::Bytes = serde_json::to_vec(&body).unwrap().into();
    for attempt in 0.. {
        let acked = match js.publish("attacker.session.ended", payload.clone()).await {
            Ok(ack) => ack.await.map(drop).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match acked {
            Ok(()) => return,
            Err(_) if attempt < 50 => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("publishing the session failed: {e}"),
        }
    }
}

async fn call(
    app: &axum::Router,
    method: Method,
    uri: &str,
    token: &str,
    body: Option<Value>,
) -> Value {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    assert!(resp.status().is_success(), "{uri}: {}", resp.status());
    serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

/// The (sub-)technique ids of a session's rollup, through the API.
async fn session_techniques(app: &axum::Router, token: &str, session: &str) -> Vec<String> {
    let rows = call(
        app,
        Method::GET,
        &format!("/api/v1/ttp/by-session/{session}"),
        token,
        None,
    )
    .await;
    let mut ids: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["sub_technique_id"]
                .as_str()
                .or(r["technique_id"].as_str())
                .unwrap()
                .to_owned()
        })
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disable_through_the_api_stops_the_rule_in_a_tagger_and_a_delete_restores_it() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("api.db").display());
    let store = common::Store::start(&nats.url(), &url, dir.path()).await;
    let mut config = TaggerConfig::new(&nats.url(), &url, None);
    config.fetch_wait = Duration::from_millis(200);
    let ops = Ops::new();
    let (stop, shutdown) = watch::channel(false);
    let tagger = {
        let ops = Arc::clone(&ops);
        tokio::spawn(async move { decnet_tagger::run_with(&config, &ops, shutdown).await })
    };
    wait_until("the tagger to be ready", async || ops.readiness().0).await;

    let db = Database::connect(&url, &Options::default()).await.unwrap();
    let secret = Secret::new(b"a tagger test key of at least 32 bytes".to_vec(), "t").unwrap();
    let now = chrono::Utc::now().timestamp();
    let admin = issue(&secret, "ana@soc", Role::Admin, now, 3600, None);
    let app = router(AppState::new(
        db,
        Verifier::new(secret, None),
        &nats.url(),
        None,
        Ops::new(),
    ));
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());

    publish_session(&js, "enabled").await;
    wait_until("the first session's tags", async || {
        !session_techniques(&app, &admin, "enabled").await.is_empty()
    })
    .await;
    let enabled = session_techniques(&app, &admin, "enabled").await;
    assert!(enabled.contains(&"T1548.001".to_owned()), "{enabled:?}");

    let set = call(
        &app,
        Method::POST,
        "/api/v1/ttp/rules/R0015/state",
        &admin,
        Some(json!({"state": "disabled", "reason": "noisy on the lab"})),
    )
    .await;
    assert_eq!(set["set_by"], "ana@soc");
    let rule = call(&app, Method::GET, "/api/v1/ttp/rules/R0015", &admin, None).await;
    assert_eq!(
        (rule["state"].as_str(), rule["set_by"].as_str()),
        (Some("disabled"), Some("ana@soc"))
    );
    let changes = "decnet_tagger_rule_changes_total{kind=\"state\"}";
    wait_until("the disable in the tagger", async || {
        metric(&ops, changes) >= 1.0
    })
    .await;
    publish_session(&js, "disabled").await;
    wait_until("the second session's tags", async || {
        !session_techniques(&app, &admin, "disabled")
            .await
            .is_empty()
    })
    .await;
    let without: Vec<String> = enabled
        .iter()
        .filter(|t| *t != "T1548.001")
        .cloned()
        .collect();
    assert_eq!(session_techniques(&app, &admin, "disabled").await, without);

    let cleared = call(
        &app,
        Method::DELETE,
        "/api/v1/ttp/rules/R0015/state",
        &admin,
        None,
    )
    .await;
    assert_eq!(cleared["state"], "enabled");
    wait_until("the revert in the tagger", async || {
        metric(&ops, changes) >= 2.0
    })
    .await;
    publish_session(&js, "restored").await;
    wait_until("the third session's tags", async || {
        !session_techniques(&app, &admin, "restored")
            .await
            .is_empty()
    })
    .await;
    assert_eq!(session_techniques(&app, &admin, "restored").await, enabled);

    let _ = stop.send(true);
    tagger.await.unwrap().unwrap();
    store.stop().await;
}
