//! The public routes (API.md §10, §11): liveness, readiness of the database, NATS and the
//! ATT&CK catalogue, Prometheus metrics, and the OpenAPI document.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use decnet_ttp::catalogue::Catalogue;

use crate::Shared;
use crate::model::Status;

pub(crate) async fn healthz() -> Response {
    crate::model::json(&Status {
        status: "ok".to_owned(),
        checks: None,
    })
}

pub(crate) async fn readyz(State(state): State<Shared>) -> Response {
    let mut checks = BTreeMap::new();
    // An indexed lookup of a uuid nobody has: it proves a connection answers, at no cost.
    let database = match state.db.attacker_known(uuid::Uuid::nil()).await {
        Ok(_) => "ok".to_owned(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: the database did not answer");
            "error: the database did not answer".to_owned()
        }
    };
    checks.insert("database".to_owned(), database);
    let nats = match &state.nats {
        Some(c) if c.connection_state() == async_nats::connection::State::Connected => {
            "ok".to_owned()
        }
        Some(_) => "error: not connected".to_owned(),
        None => "error: no client".to_owned(),
    };
    checks.insert("nats".to_owned(), nats);
    let catalogue = Catalogue::bundled();
    checks.insert(
        "catalogue".to_owned(),
        if catalogue.tactics().is_empty() {
            "error: empty".to_owned()
        } else {
            "ok".to_owned()
        },
    );
    let ready = checks.values().all(|v| v == "ok");
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Status {
        status: if ready { "ready" } else { "unready" }.to_owned(),
        checks: Some(checks),
    };
    let mut response = crate::model::json(&body);
    *response.status_mut() = status;
    response
}

pub(crate) async fn metrics(State(state): State<Shared>) -> Response {
    state.metrics.refresh_process();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.ops.metrics(),
    )
        .into_response()
}

pub(crate) async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::document_text(),
    )
        .into_response()
}
