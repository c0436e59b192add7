//! Canary tokens through the API and a real canary service (API.md §9, §13.5): mint answers
//! 201 with the artifact, a hit on the beacon shows as a trigger, a revoke stops the beacon
//! recording, admins alone see the callback, and no answer carries the nonce or bare slug.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use decnet_api::auth::{Role, issue};
use decnet_api::canary::CanaryView;
use decnet_api::routes::router;
use decnet_api::{AppState, Secret, Verifier};
use decnet_canary::CanaryConfig;
use decnet_ops::Ops;
use decnet_storage::{Database, Options};
use decnet_test_support::{NatsServer, free_port};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tower::ServiceExt;

async fn call(
    app: &axum::Router,
    method: Method,
    uri: &str,
    token: &str,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_owned()));
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    for secret_key in ["\"slug\"", "\"slug_key\"", "fingerprint_nonce", "\"nonce\""] {
        assert!(
            !text.contains(secret_key),
            "{uri} leaks {secret_key}: {text}"
        );
    }
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A browser-looking GET on the beacon; the status line.
async fn hit(beacon_url: &str) -> String {
    let rest = beacon_url.strip_prefix("http://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) \
         Firefox/128.0\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mint_hit_and_revoke_through_the_api() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("api.db").display());
    let mut config = CanaryConfig::new(&nats.url(), &url, dir.path());
    let beacon: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    config.http_listen = beacon;
    config.http_base = format!("http://{beacon}");
    config.dns_listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let ops = Ops::new();
    let (stop, shutdown) = watch::channel(false);
    let service = {
        let ops = Arc::clone(&ops);
        tokio::spawn(async move { decnet_canary::run_with(&config, &ops, shutdown).await })
    };
    for _ in 0..400 {
        if ops.readiness().0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(ops.readiness().0, "{}", ops.readiness().1);

    let db = Database::connect(&url, &Options::default()).await.unwrap();
    let secret = Secret::new(b"a canary test key of at least 32 bytes".to_vec(), "t").unwrap();
    let now = chrono::Utc::now().timestamp();
    let admin = issue(&secret, "ana@soc", Role::Admin, now, 3600, None);
    let viewer = issue(&secret, "vic", Role::Viewer, now, 3600, None);
    let mut state = AppState::new(
        db,
        Verifier::new(secret, None),
        &nats.url(),
        None,
        Ops::new(),
    );
    Arc::get_mut(&mut state).unwrap().canary = CanaryView {
        http_base: Some(format!("http://{beacon}")),
        dns_zone: None,
    };
    let app = router(state);
    let tokens = "/api/v1/canary/tokens";

    let (status, generators) = call(
        &app,
        Method::GET,
        "/api/v1/canary/generators",
        &viewer,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        generators
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "env_file")
    );

    let refusals = [
        (
            r#"{"generator": "nope", "decky_name": "decoy-01"}"#,
            422,
            "unknown generator 'nope'",
        ),
        (
            r#"{"generator": "env_file", "decky_name": "Decoy"}"#,
            422,
            "decky_name must match [a-z0-9][a-z0-9-]{0,62}",
        ),
        (
            r#"{"generator": "env_file"}"#,
            422,
            "missing field 'decky_name'",
        ),
        (
            r#"{"generator": "env_file", "decky_name": "d", "colour": 1}"#,
            422,
            "unknown field 'colour'",
        ),
        (
            r#"{"generator": "env_file", "decky_name": "d", "placement_path": "../x"}"#,
            422,
            "placement_path must be absolute, without NUL, CR, LF or '..'",
        ),
        (
            r#"{"generator": 5, "decky_name": "d"}"#,
            422,
            "generator must be a string",
        ),
    ];
    for (body, code, message) in refusals {
        let (status, answer) = call(&app, Method::POST, tokens, &admin, Some(body)).await;
        assert_eq!(
            (status.as_u16(), answer["message"].as_str()),
            (code, Some(message)),
            "{body}"
        );
    }
    let (status, answer) = call(&app, Method::POST, tokens, &admin, Some("{\"generator\":")).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("malformed_json"))
    );

    let (status, minted) = call(
        &app,
        Method::POST,
        tokens,
        &admin,
        Some(r#"{"generator": "env_file", "decky_name": "decoy-01", "memo": "lab"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    assert_eq!(minted["token"]["created_by"], "ana@soc");
    assert!(
        !minted["artifact"]["content_b64"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    let id = minted["token"]["uuid"].as_str().unwrap().to_owned();
    let beacon_url = minted["token"]["beacon_url"].as_str().unwrap().to_owned();

    let (_, list) = call(&app, Method::GET, tokens, &viewer, None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(
        list[0].get("beacon_url").is_none(),
        "viewers do not see the callback"
    );
    let (_, one) = call(&app, Method::GET, &format!("{tokens}/{id}"), &admin, None).await;
    assert_eq!(one["beacon_url"], beacon_url.as_str(), "admins do");
    let (_, artifact) = call(
        &app,
        Method::GET,
        &format!("{tokens}/{id}/artifact"),
        &admin,
        None,
    )
    .await;
    assert_eq!(
        artifact["content_b64"], minted["artifact"]["content_b64"],
        "deterministic"
    );

    assert!(hit(&beacon_url).await.starts_with("HTTP/1.1 200"));
    let triggers = format!("{tokens}/{id}/triggers");
    let mut seen = Value::Null;
    for _ in 0..200 {
        seen = call(&app, Method::GET, &triggers, &viewer, None).await.1;
        if seen.as_array().is_some_and(|t| !t.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(seen.as_array().unwrap().len(), 1, "{seen}");
    assert_eq!(seen[0]["channel"], "http");

    let revoke = format!("{tokens}/{id}?reason=done");
    let (status, revoked) = call(&app, Method::DELETE, &revoke, &admin, None).await;
    assert_eq!(
        (status, revoked["state"].as_str()),
        (StatusCode::OK, Some("revoked"))
    );
    assert_eq!(revoked["revoked_by"], "ana@soc");
    let (status, again) = call(&app, Method::DELETE, &revoke, &admin, None).await;
    assert_eq!(
        (status, again["revoked_at"].clone()),
        (StatusCode::OK, revoked["revoked_at"].clone())
    );
    hit(&beacon_url).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, after) = call(&app, Method::GET, &triggers, &viewer, None).await;
    assert_eq!(
        after.as_array().unwrap().len(),
        1,
        "a revoked token records nothing"
    );
    let (status, placed) = call(
        &app,
        Method::POST,
        &format!("{tokens}/{id}/placement"),
        &admin,
        Some(r#"{"ok": false, "error": "disk full"}"#),
    )
    .await;
    assert_eq!(
        (status, placed["message"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("placement can only be reported for a planted token")
        )
    );
    let (status, _) = call(
        &app,
        Method::GET,
        &format!("{tokens}/00000000-0000-4000-8000-000000000000"),
        &viewer,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let _ = stop.send(true);
    service.await.unwrap().unwrap();
    let (status, body) = call(
        &app,
        Method::POST,
        tokens,
        &admin,
        Some(r#"{"generator": "env_file", "decky_name": "decoy-01"}"#),
    )
    .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("canary service unavailable")
        )
    );
}
