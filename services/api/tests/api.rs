//! The API against real SQLite (and PostgreSQL when `DECNET_TEST_DATABASE_URL` is set), a
//! real nats-server and an in-process rule store: the authorisation matrix of every
//! operation, the rule-state round trip and the Navigator export.

mod common;

use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use decnet_api::auth::{Role, issue, sign};
use decnet_api::routes::{Access, Kind, operations, router};
use decnet_api::{AppState, Secret, Verifier};
use decnet_ops::Ops;
use decnet_storage::{Database, Options};
use decnet_test_support::NatsServer;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use common::{Store, seed};

const KEY: &[u8] = b"an api test key of at least thirty-two bytes";

fn secret() -> Secret {
    Secret::new(KEY.to_vec(), "test").unwrap()
}

fn token(sub: &str, role: Role) -> String {
    issue(
        &secret(),
        sub,
        role,
        chrono::Utc::now().timestamp(),
        3600,
        None,
    )
}

async fn sqlite(dir: &Path) -> (Database, String) {
    let url = format!("sqlite://{}", dir.join("api.db").display());
    (
        Database::connect(&url, &Options::default()).await.unwrap(),
        url,
    )
}

fn app(db: Database, nats_url: &str) -> Router {
    let state = AppState::new(
        db,
        Verifier::new(secret(), None),
        nats_url,
        None,
        Ops::new(),
    );
    router(state)
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = bearer {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, value)
}

/// The operation's path with a well-formed value in each parameter.
fn concrete(path: &str, params: &[decnet_api::routes::Param]) -> String {
    let mut out = path.to_owned();
    for p in params {
        let v = match p.kind {
            Kind::Uuid => "6d3c1c2e-6f0b-4c9a-9a39-0a3d2f1e4b5c",
            Kind::Technique => "T1110",
            Kind::Session => "session-1",
            _ => "R0001",
        };
        out = out.replace(&format!("{{{}}}", p.name), v);
    }
    out
}

#[tokio::test]
async fn every_operation_refuses_missing_bad_and_underprivileged_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = sqlite(dir.path()).await;
    let app = app(db, "nats://127.0.0.1:1");
    let now = chrono::Utc::now().timestamp();
    let expired = issue(&secret(), "ana", Role::Admin, now - 7200, 3600, None);
    let other_key = Secret::new(vec![9; 32], "other").unwrap();
    let forged = issue(&other_key, "ana", Role::Admin, now, 3600, None);
    let body =
        URL_SAFE_NO_PAD.encode(json!({"sub": "ana", "role": "admin", "exp": now + 60}).to_string());
    let none = format!("{}.{body}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#));
    let hs384 = format!(
        "{}.{body}.AAAA",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"HS384"}"#)
    );
    let root = sign(
        &secret(),
        &json!({"sub": "ana", "role": "root", "exp": now + 60}),
    );
    let mut checked = 0;
    for op in operations() {
        let Access::Role(needed) = op.access else {
            continue;
        };
        let uri = concrete(op.path, &op.params);
        let (status, headers, body) = call(&app, op.method.clone(), &uri, None, None).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{} without a token",
            op.id
        );
        assert_eq!(
            headers[header::WWW_AUTHENTICATE],
            r#"Bearer realm="decnet""#,
            "{}",
            op.id
        );
        assert_eq!(body["error"], "unauthorized");
        for (what, bad) in [
            ("expired", &expired),
            ("forged", &forged),
            ("alg none", &none),
            ("alg HS384", &hs384),
            ("unknown role", &root),
        ] {
            let (status, headers, _) = call(&app, op.method.clone(), &uri, Some(bad), None).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{} with an {what} token",
                op.id
            );
            assert_eq!(
                headers[header::WWW_AUTHENTICATE],
                r#"Bearer realm="decnet", error="invalid_token""#
            );
        }
        if needed == Role::Admin {
            let viewer = token("vic", Role::Viewer);
            let (status, _, body) = call(&app, op.method.clone(), &uri, Some(&viewer), None).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{} as a viewer", op.id);
            assert_eq!(body["error"], "forbidden");
        } else {
            let viewer = token("vic", Role::Viewer);
            let (status, _, _) = call(&app, op.method.clone(), &uri, Some(&viewer), None).await;
            assert!(
                status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                "{} as a viewer: {status}",
                op.id
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 23, "every protected operation");
    for public in ["/healthz", "/metrics", "/api/v1/openapi.json"] {
        let (status, _, _) = call(&app, Method::GET, public, None, None).await;
        assert_eq!(status, StatusCode::OK, "{public}");
    }
}

#[tokio::test]
async fn unknown_paths_methods_and_parameters_get_the_error_body() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = sqlite(dir.path()).await;
    let app = app(db, "nats://127.0.0.1:1");
    let viewer = token("vic", Role::Viewer);
    let (status, _, body) = call(&app, Method::GET, "/api/v1/nothing", None, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, headers, body) = call(
        &app,
        Method::PUT,
        "/api/v1/ttp/techniques",
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"], "method_not_allowed");
    assert_eq!(headers[header::ALLOW], "GET,HEAD");
    let cases = [
        ("/api/v1/ttp/by-attacker/not-a-uuid", 400, "/attacker_uuid"),
        ("/api/v1/ttp/tags/by-session/s/T111", 400, "/technique_id"),
        (
            "/api/v1/ttp/tags/by-session/s/T1110?limit=1001",
            400,
            "/limit",
        ),
        ("/api/v1/ttp/techniques?since=yesterday", 400, "/since"),
        ("/api/v1/ttp/techniques?colour=red", 400, "/colour"),
        ("/api/v1/ttp/export/navigator?release=v18", 400, "/release"),
    ];
    for (uri, code, field) in cases {
        let (status, _, body) = call(&app, Method::GET, uri, Some(&viewer), None).await;
        assert_eq!(status.as_u16(), code, "{uri}");
        assert_eq!(body["field"], field, "{uri}");
    }
    let (_, _, body) = call(
        &app,
        Method::GET,
        "/api/v1/ttp/tags/by-session/s/T1110?limit=0",
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(body["message"], "limit must be between 1 and 1000");
    let unknown = [
        "/api/v1/ttp/by-attacker/6d3c1c2e-6f0b-4c9a-9a39-0a3d2f1e4b5c",
        "/api/v1/ttp/by-identity/6d3c1c2e-6f0b-4c9a-9a39-0a3d2f1e4b5c",
        "/api/v1/ttp/by-campaign/6d3c1c2e-6f0b-4c9a-9a39-0a3d2f1e4b5c",
        "/api/v1/ttp/rules/R9999",
        "/api/v1/ttp/rules/nonsense",
        "/api/v1/ttp/techniques/T0000/groups",
        "/api/v1/ttp/tags/by-campaign/x/T1110",
    ];
    for uri in unknown {
        let (status, _, _) = call(&app, Method::GET, uri, Some(&viewer), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
    }
    let (status, _, body) = call(
        &app,
        Method::GET,
        "/api/v1/ttp/by-session/nobody",
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, json!([])));
}

#[tokio::test]
async fn rollups_pages_and_navigator_layers_of_a_real_tag_set() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = sqlite(dir.path()).await;
    seed(&db).await;
    let app = app(db, "nats://127.0.0.1:1");
    let viewer = token("vic", Role::Viewer);
    let id = "11111111-1111-4111-8111-111111111111";
    let (status, _, rows) = call(
        &app,
        Method::GET,
        &format!("/api/v1/ttp/by-identity/{id}"),
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let got: Vec<(String, Option<String>, String, i64)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["technique_id"].as_str().unwrap().to_owned(),
                r["sub_technique_id"].as_str().map(str::to_owned),
                r["tactic"].as_str().unwrap().to_owned(),
                r["count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("T1078".into(), None, "TA0003".into(), 1),
            ("T1078".into(), None, "TA0001".into(), 1),
            ("T1110".into(), None, "TA0006".into(), 1),
            ("T1110".into(), Some("T1110.001".into()), "TA0006".into(), 2),
        ],
        "the merged identity's attacker folds into the winner; two tactics give two rows"
    );
    assert_eq!(rows[3]["tactic_shortname"], "credential-access");
    assert_eq!(rows[3]["first_seen"], "2026-12-02T00:00:01.000Z");

    let page = "/api/v1/ttp/tags/by-attacker/33333333-3333-4333-8333-333333333333/T1110";
    let (_, headers, first) = call(
        &app,
        Method::GET,
        &format!("{page}?limit=1"),
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(first.as_array().unwrap().len(), 1);
    assert_eq!(first[0]["source_id"], "b", "newest first");
    let cursor = headers["x-next-cursor"].to_str().unwrap().to_owned();
    let (_, headers, second) = call(
        &app,
        Method::GET,
        &format!("{page}?limit=1&cursor={cursor}"),
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(second[0]["source_id"], "a");
    assert!(!headers.contains_key("x-next-cursor"), "the last page");

    let (_, headers, layers) = call(
        &app,
        Method::GET,
        &format!("/api/v1/ttp/export/navigator/identity/{id}"),
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(
        headers[header::CONTENT_DISPOSITION],
        "attachment; filename=\"decnet-navigator-identity-11111111.json\""
    );
    let layers = layers.as_array().unwrap();
    assert_eq!(layers.len(), 1, "one release");
    check_layer(&layers[0]);
    let entries: Vec<(String, String, Option<i64>, Option<&str>)> = layers[0]["techniques"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["techniqueID"].as_str().unwrap().to_owned(),
                t["tactic"].as_str().unwrap().to_owned(),
                t["score"].as_i64(),
                t["comment"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        vec![
            (
                "T1078".into(),
                "initial-access".into(),
                Some(1),
                Some("rules: R0004")
            ),
            (
                "T1078".into(),
                "persistence".into(),
                Some(1),
                Some("rules: R0004")
            ),
            (
                "T1110".into(),
                "credential-access".into(),
                Some(1),
                Some("rules: R0003")
            ),
            (
                "T1110.001".into(),
                "credential-access".into(),
                Some(2),
                Some("rules: R0001, R0002")
            ),
        ]
    );
    assert_eq!(layers[0]["techniques"][2]["showSubtechniques"], true);
    assert_eq!(layers[0]["gradient"]["maxValue"], 2);
}

#[tokio::test]
async fn an_empty_store_exports_one_valid_empty_layer() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = sqlite(dir.path()).await;
    let app = app(db, "nats://127.0.0.1:1");
    let viewer = token("vic", Role::Viewer);
    let (status, _, layers) = call(
        &app,
        Method::GET,
        "/api/v1/ttp/export/navigator",
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let layers = layers.as_array().unwrap();
    assert_eq!(layers.len(), 1);
    check_layer(&layers[0]);
    assert_eq!(layers[0]["techniques"], json!([]));
    assert_eq!(layers[0]["gradient"]["maxValue"], 1);
    let (_, _, one) = call(
        &app,
        Method::GET,
        "/api/v1/ttp/export/navigator?release=enterprise-v17.0",
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(one["versions"]["attack"], "17");
    check_layer(&one);
}

/// The layer 4.5 field rules a Navigator applies when it loads a file.
fn check_layer(layer: &Value) {
    let catalogue = decnet_ttp::catalogue::Catalogue::bundled();
    let shortnames: Vec<&str> = catalogue
        .tactics()
        .iter()
        .map(|t| t.shortname.as_str())
        .collect();
    assert!(layer["name"].is_string());
    assert_eq!(layer["versions"]["layer"], "4.5");
    assert_eq!(layer["versions"]["navigator"], "5.1.0");
    assert!(
        layer["versions"]["attack"]
            .as_str()
            .unwrap()
            .parse::<u32>()
            .is_ok()
    );
    assert_eq!(layer["domain"], "enterprise-attack");
    assert!(layer["description"].is_string());
    assert!([0, 1, 2, 3].contains(&layer["sorting"].as_i64().unwrap()));
    assert_eq!(layer["layout"]["layout"], "side");
    assert!(
        ["annotated", "all", "none"]
            .contains(&layer["layout"]["expandedSubtechniques"].as_str().unwrap())
    );
    assert_eq!(layer["hideDisabled"], false);
    assert_eq!(layer["gradient"]["colors"].as_array().unwrap().len(), 3);
    assert!(layer["gradient"]["maxValue"].as_i64().unwrap() >= 1);
    assert!(layer["legendItems"].is_array());
    let meta: Vec<&str> = layer["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(meta, ["scope", "attack_release", "generated_at"]);
    let mut seen = std::collections::HashSet::new();
    let mut previous: Option<(String, String)> = None;
    for t in layer["techniques"].as_array().unwrap() {
        let id = t["techniqueID"].as_str().unwrap();
        let tactic = t["tactic"].as_str().unwrap();
        assert!(decnet_api::params::technique("t", id).is_ok(), "{id}");
        assert!(shortnames.contains(&tactic), "{tactic}");
        assert!(
            seen.insert((id.to_owned(), tactic.to_owned())),
            "{id} {tactic} twice"
        );
        assert_eq!(t["enabled"], true);
        if let Some(score) = t.get("score") {
            assert!(score.is_number());
            for m in t["metadata"].as_array().unwrap() {
                assert!(m["name"].is_string() && m["value"].is_string());
            }
        } else {
            assert_eq!(
                t["showSubtechniques"], true,
                "an unscored entry is a parent"
            );
        }
        let key = (id.to_owned(), tactic.to_owned());
        assert!(previous.as_ref().is_none_or(|p| p < &key), "sorted");
        previous = Some(key);
    }
}

#[tokio::test]
async fn rule_state_round_trips_through_the_rule_store() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (db, url) = sqlite(dir.path()).await;
    let store = Store::start(&nats.url(), &url, dir.path()).await;
    let app = app(db, &nats.url());
    let admin = token("ana@soc", Role::Admin);
    let viewer = token("vic", Role::Viewer);
    let (status, _, rules) =
        call(&app, Method::GET, "/api/v1/ttp/rules", Some(&viewer), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(rules.as_array().unwrap().len() > 10);
    assert_eq!(rules[0]["rule_id"], "R0001");
    assert_eq!(rules[0]["state"], "enabled");
    assert!(rules[0]["name"].as_str().is_some_and(|n| !n.is_empty()));

    let state = "/api/v1/ttp/rules/R0001/state";
    let refusals = [
        (
            json!({"state": "off"}),
            422,
            "state must be one of enabled, disabled, clipped",
        ),
        (
            json!({"state": "disabled"}),
            422,
            "state 'disabled' requires a reason",
        ),
        (
            json!({"state": "clipped", "reason": "x"}),
            422,
            "state 'clipped' requires confidence_max",
        ),
        (
            json!({"state": "clipped", "confidence_max": 2, "reason": "x"}),
            422,
            "confidence_max must be within [0, 1]",
        ),
        (
            json!({"state": "enabled", "confidence_max": 0.5}),
            422,
            "confidence_max is only allowed with state 'clipped'",
        ),
        (
            json!({"state": "disabled", "reason": "x", "expires_at": "2001-01-01T00:00:00Z"}),
            422,
            "expires_at must be a future RFC 3339 time",
        ),
        (
            json!({"state": "disabled", "reason": "x".repeat(501)}),
            422,
            "reason must be at most 500 characters",
        ),
        (
            json!({"state": "disabled", "colour": 1}),
            422,
            "unknown field 'colour'",
        ),
    ];
    for (body, code, message) in refusals {
        let (status, _, answer) =
            call(&app, Method::POST, state, Some(&admin), Some(body.clone())).await;
        assert_eq!(
            (status.as_u16(), answer["message"].as_str()),
            (code, Some(message)),
            "{body}"
        );
    }
    let malformed = Request::builder()
        .method(Method::POST)
        .uri(state)
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"state\": "))
        .unwrap();
    let resp = app.clone().oneshot(malformed).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"], "malformed_json");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("at line 1 column"),
        "{body}"
    );
    let (status, _, body) = call(
        &app,
        Method::POST,
        "/api/v1/ttp/rules/R9999/state",
        Some(&admin),
        Some(json!({"state": "enabled"})),
    )
    .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown rule 'R9999'"))
    );

    let (status, _, set) = call(
        &app,
        Method::POST,
        state,
        Some(&admin),
        Some(json!({"state": "disabled", "reason": "noisy on the lab"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(
        (set["state"].as_str(), set["set_by"].as_str()),
        (Some("disabled"), Some("ana@soc"))
    );
    let (_, _, rule) = call(
        &app,
        Method::GET,
        "/api/v1/ttp/rules/R0001",
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(rule["state"], "disabled");
    assert_eq!(rule["set_by"], "ana@soc");
    assert_eq!(rule["reason"], "noisy on the lab");
    assert_eq!(rule["set_at"], set["set_at"]);
    let (_, _, disabled) = call(
        &app,
        Method::GET,
        "/api/v1/ttp/rules?state=disabled",
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(disabled.as_array().unwrap().len(), 1);

    // The state survives a restart of the rule store and of the API (API.md §13.3).
    store.stop().await;
    drop(app);
    let store = Store::start(&nats.url(), &url, dir.path()).await;
    let (db, _) = sqlite(dir.path()).await;
    let app = self::app(db, &nats.url());
    let (_, _, rule) = call(
        &app,
        Method::GET,
        "/api/v1/ttp/rules/R0001",
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(
        (&rule["state"], &rule["set_by"], &rule["set_at"]),
        (&json!("disabled"), &json!("ana@soc"), &set["set_at"])
    );

    let (status, _, cleared) = call(&app, Method::DELETE, state, Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{cleared}");
    assert_eq!(
        (cleared["state"].as_str(), cleared["set_by"].as_str()),
        (Some("enabled"), Some("ana@soc"))
    );
    let (_, _, rule) = call(
        &app,
        Method::GET,
        "/api/v1/ttp/rules/R0001",
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(rule["state"], "enabled");
    assert_eq!(rule["confidence_max"], Value::Null);

    store.stop().await;
    let started = std::time::Instant::now();
    let (status, _, body) = call(
        &app,
        Method::POST,
        state,
        Some(&admin),
        Some(json!({"state": "disabled", "reason": "x"})),
    )
    .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("rule store unavailable")
        )
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let (_, _, rule) = call(
        &app,
        Method::GET,
        "/api/v1/ttp/rules/R0001",
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(rule["state"], "enabled", "nothing changed");
}
