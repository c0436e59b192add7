//! `/readyz` follows NATS (API.md §13.6): 200 while connected, 503 naming NATS once the server
//! stops, 200 again when it returns; `/healthz` answers throughout.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use decnet_api::routes::router;
use decnet_api::{AppState, Secret, Verifier};
use decnet_ops::Ops;
use decnet_storage::{Database, Options};
use decnet_test_support::NatsServer;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, Value) {
    let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

async fn wait_for(app: &axum::Router, want: StatusCode) -> Value {
    for _ in 0..400 {
        let (status, body) = get(app, "/readyz").await;
        if status == want {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("/readyz never answered {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_503_when_nats_stops_and_200_when_it_returns() {
    let mut nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("api.db").display());
    let db = Database::connect(&url, &Options::default()).await.unwrap();
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(nats.url())
        .await
        .unwrap();
    let secret = Secret::new(b"a readiness test key of at least 32 bytes".to_vec(), "t").unwrap();
    let state = AppState::new(
        db,
        Verifier::new(secret, None),
        &nats.url(),
        Some(client),
        Ops::new(),
    );
    let app = router(state);

    let ready = wait_for(&app, StatusCode::OK).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["database"], "ok");
    assert_eq!(ready["checks"]["catalogue"], "ok");

    nats.kill();
    let unready = wait_for(&app, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(unready["status"], "unready");
    assert_eq!(unready["checks"]["nats"], "error: not connected");
    assert_eq!(unready["checks"]["database"], "ok");
    assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK);

    nats.restart().unwrap();
    let back = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let (status, body) = get(&app, "/readyz").await;
            if status == StatusCode::OK {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("ready again once NATS returns");
    assert_eq!(back["checks"]["nats"], "ok");
}
