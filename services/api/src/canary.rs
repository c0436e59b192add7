//! Canary token management (API.md §9): reads from `canary_token` and `canary_trigger`,
//! writes through the canary service's control subjects (`decnet.canary.token.*`), so a
//! success means the service committed.
//!
//! A request body is checked here first (shape, generator, decoy name, path, memo) so a bad
//! one is a 422 even when the service is down; what depends on the service's own
//! configuration (a DNS zone, the fingerprint secret) is its refusal, passed on. The nonce and
//! the bare slug never leave: tokens are rebuilt field by field, and the callback URL or name
//! is shown to admins only.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawPathParams, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use decnet_bus::control::RequestError;
use decnet_canary::control::{
    ARTIFACT, ArtifactRequest, ArtifactView, MINT, MintRequest, Minted, PLACEMENT,
    PlacementRequest, REVOKE, RevokeRequest, TokenView,
};
use decnet_canary::generators;
use decnet_storage::{CanaryTokenRow, CanaryTriggerRow, TokenFilter};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::Shared;
use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::model::{Ts, json};
use crate::params::{self, Query};
use crate::ttp::{db_error, path_param};

type Answer = Result<Response, ApiError>;

/// A body field: its name, its type check and the type's name for the refusal.
type Field = (&'static str, fn(&Value) -> bool, &'static str);

/// Where the canary service's callbacks are reached: what admins see of a token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CanaryView {
    /// Base of beacon URLs (`DECNET_CANARY_HTTP_BASE`).
    pub http_base: Option<String>,
    /// Zone of the DNS channel (`DECNET_CANARY_DNS_ZONE`).
    pub dns_zone: Option<String>,
}

/// A generator the canary service offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Generator {
    /// Its name.
    pub name: String,
    /// `http`, `dns` or `aws_passive`.
    pub kind: String,
    /// Where its artifact goes by default.
    pub default_path: String,
    /// Whether it needs `DECNET_CANARY_DNS_ZONE`.
    pub needs_dns_zone: bool,
    /// Whether it needs the fingerprint secret.
    pub needs_fingerprint_secret: bool,
    /// One line.
    pub description: String,
}

/// A canary token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Token {
    /// Id.
    pub uuid: Uuid,
    /// `http`, `dns` or `aws_passive`.
    pub kind: String,
    /// Generator name.
    pub generator: String,
    /// Decoy.
    pub decky_name: String,
    /// Where the artifact goes.
    pub placement_path: String,
    /// `planted`, `failed` or `revoked`.
    pub state: String,
    /// Operator note.
    pub memo: Option<String>,
    /// Who minted it.
    pub created_by: String,
    /// When.
    pub created_at: Ts,
    /// When its placement was reported.
    pub placed_at: Option<Ts>,
    /// Last recorded hit.
    pub last_triggered_at: Option<Ts>,
    /// Recorded hits.
    pub trigger_count: i64,
    /// Placement failure.
    pub last_error: Option<String>,
    /// When revoked.
    pub revoked_at: Option<Ts>,
    /// By whom.
    pub revoked_by: Option<String>,
    /// Why.
    pub revoke_reason: Option<String>,
    /// Admins: the callback URL of HTTP tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beacon_url: Option<String>,
    /// Admins: the callback name of DNS tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_name: Option<String>,
}

/// An artifact to plant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Artifact {
    /// File name.
    pub filename: String,
    /// Where it goes.
    pub placement_path: String,
    /// Octal mode, `0600`.
    pub mode: String,
    /// The modification time to give it.
    pub mtime: Ts,
    /// The bytes, base64.
    pub content_b64: String,
    /// How it calls back.
    pub notes: String,
}

/// A minted token and its artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MintedToken {
    /// The token.
    pub token: Token,
    /// Its artifact.
    pub artifact: Artifact,
}

/// A recorded hit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Trigger {
    /// Id.
    pub uuid: Uuid,
    /// The token.
    pub token_uuid: Uuid,
    /// When.
    pub occurred_at: Ts,
    /// `http` or `dns`.
    pub channel: String,
    /// HTTP hits: `GET` or `HEAD`.
    pub method: Option<String>,
    /// Client address.
    pub src_ip: String,
    /// Connection peer.
    pub peer_ip: String,
    /// HTTP hits.
    pub user_agent: Option<String>,
    /// HTTP hits: the path.
    pub request_path: Option<String>,
    /// DNS hits.
    pub dns_qname: Option<String>,
    /// `beacon`, `open` or `fingerprint`.
    pub hit_kind: String,
    /// Fingerprint validation state.
    pub fingerprint_state: String,
    /// Whether a scanner is suspected.
    pub suspected_scanner: bool,
    /// Why.
    pub scanner_reason: Option<String>,
    /// Repeats folded into this row.
    pub repeat_count: i64,
    /// HTTP hits.
    pub headers: Option<Value>,
    /// Browser signals.
    pub signals: Option<Value>,
    /// A validated fingerprint.
    pub fingerprint: Option<Value>,
}

/// `POST /canary/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MintBody {
    /// Generator name.
    pub generator: String,
    /// The decoy, `[a-z0-9][a-z0-9-]{0,62}`.
    pub decky_name: String,
    /// Absolute, no NUL, CR, LF or `..`; the generator's default when absent.
    #[serde(default)]
    pub placement_path: Option<String>,
    /// At most 512 characters.
    #[serde(default)]
    pub memo: Option<String>,
}

/// `POST /canary/tokens/{token_id}/placement`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementBody {
    /// Whether the artifact was planted.
    pub ok: bool,
    /// What went wrong.
    #[serde(default)]
    pub error: Option<String>,
}

fn token(row: &CanaryTokenRow, caller: &Caller, view: &CanaryView) -> Token {
    let admin = caller.role == Role::Admin;
    let beacon_url = (admin && row.kind == "http")
        .then(|| {
            view.http_base
                .as_deref()
                .map(|b| generators::beacon_url(b, &row.slug))
        })
        .flatten();
    let dns_name = (admin && row.kind == "dns")
        .then(|| {
            view.dns_zone
                .as_deref()
                .map(|z| format!("{}.{z}", row.slug))
        })
        .flatten();
    Token {
        uuid: row.uuid,
        kind: row.kind.clone(),
        generator: row.generator.clone(),
        decky_name: row.decky_name.clone(),
        placement_path: row.placement_path.clone(),
        state: row.state.clone(),
        memo: row.memo.clone(),
        created_by: row.created_by.clone(),
        created_at: Ts(row.created_at),
        placed_at: row.placed_at.map(Ts),
        last_triggered_at: row.last_triggered_at.map(Ts),
        trigger_count: row.trigger_count,
        last_error: row.last_error.clone(),
        revoked_at: row.revoked_at.map(Ts),
        revoked_by: row.revoked_by.clone(),
        revoke_reason: row.revoke_reason.clone(),
        beacon_url,
        dns_name,
    }
}

/// The service's view of a token, as the API shows it (to an admin: only admins write).
fn from_view(v: TokenView) -> Token {
    Token {
        uuid: v.uuid,
        kind: v.kind,
        generator: v.generator,
        decky_name: v.decky_name,
        placement_path: v.placement_path,
        state: v.state,
        memo: v.memo,
        created_by: v.created_by,
        created_at: Ts(v.created_at),
        placed_at: v.placed_at.map(Ts),
        last_triggered_at: v.last_triggered_at.map(Ts),
        trigger_count: v.trigger_count,
        last_error: v.last_error,
        revoked_at: v.revoked_at.map(Ts),
        revoked_by: v.revoked_by,
        revoke_reason: v.revoke_reason,
        beacon_url: v.beacon_url,
        dns_name: v.dns_name,
    }
}

fn artifact(a: ArtifactView) -> Artifact {
    Artifact {
        filename: a.filename,
        placement_path: a.placement_path,
        mode: a.mode,
        mtime: Ts(a.mtime),
        content_b64: a.content_b64,
        notes: a.notes,
    }
}

fn trigger(t: CanaryTriggerRow) -> Trigger {
    Trigger {
        uuid: t.uuid,
        token_uuid: t.token_uuid,
        occurred_at: Ts(t.occurred_at),
        channel: t.channel,
        method: t.method,
        src_ip: t.src_ip,
        peer_ip: t.peer_ip,
        user_agent: t.user_agent,
        request_path: t.request_path,
        dns_qname: t.dns_qname,
        hit_kind: t.hit_kind,
        fingerprint_state: t.fingerprint_state,
        suspected_scanner: t.suspected_scanner,
        scanner_reason: t.scanner_reason,
        repeat_count: t.repeat_count,
        headers: t.headers,
        signals: t.signals,
        fingerprint: t.fingerprint,
    }
}

pub(crate) async fn list_generators(State(_): State<Shared>) -> Answer {
    let list: Vec<Generator> = generators::specs()
        .iter()
        .map(|s| Generator {
            name: s.name.to_owned(),
            kind: s.kind.as_str().to_owned(),
            default_path: s.default_path.to_owned(),
            needs_dns_zone: s.needs_dns_zone,
            needs_fingerprint_secret: s.fingerprint,
            description: s.description.to_owned(),
        })
        .collect();
    Ok(json(&list))
}

/// A page cursor of (time, uuid), opaque to clients.
fn cursor(q: &Query) -> Result<Option<(chrono::DateTime<chrono::Utc>, Uuid)>, ApiError> {
    Ok(q.cursor()?.map(|c| (c.created_at, c.uuid)))
}

fn next_cursor(response: &mut Response, at: chrono::DateTime<chrono::Utc>, uuid: Uuid) {
    let c = params::encode_cursor(&decnet_storage::TagCursor {
        created_at: at,
        uuid,
    });
    response.headers_mut().insert(
        "x-next-cursor",
        HeaderValue::from_str(&c).expect("base64url is a header value"),
    );
}

pub(crate) async fn list_tokens(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Answer {
    let q = Query::parse(
        raw.as_deref(),
        &[
            "decky_name",
            "state",
            "kind",
            "generator",
            "limit",
            "cursor",
        ],
    )?;
    let filter = TokenFilter {
        decky_name: q.get("decky_name").map(str::to_owned),
        state: q.one_of("state", &["planted", "failed", "revoked"])?,
        kind: q.one_of("kind", &["http", "dns", "aws_passive"])?,
        generator: q.get("generator").map(str::to_owned),
    };
    let limit = q.limit(100, 500)?;
    let after = cursor(&q)?;
    let mut rows = state
        .db
        .canary_token_page(&filter, after, limit + 1)
        .await
        .map_err(|e| db_error(&e))?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let tokens: Vec<Token> = rows
        .iter()
        .map(|r| token(r, &caller, &state.canary))
        .collect();
    let mut response = json(&tokens);
    if more && let Some(last) = rows.last() {
        next_cursor(&mut response, last.created_at, last.uuid);
    }
    Ok(response)
}

async fn known(state: &Shared, path: &RawPathParams) -> Result<CanaryTokenRow, ApiError> {
    let id = params::uuid("token_id", path_param(path, "token_id"))?;
    state
        .db
        .canary_token(id)
        .await
        .map_err(|e| db_error(&e))?
        .ok_or_else(|| ApiError::NotFound(format!("unknown token '{id}'")))
}

pub(crate) async fn get_token(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    path: RawPathParams,
) -> Answer {
    let row = known(&state, &path).await?;
    Ok(json(&token(&row, &caller, &state.canary)))
}

pub(crate) async fn triggers(
    State(state): State<Shared>,
    path: RawPathParams,
    RawQuery(raw): RawQuery,
) -> Answer {
    let id = params::uuid("token_id", path_param(&path, "token_id"))?;
    let q = Query::parse(raw.as_deref(), &["limit", "cursor"])?;
    let limit = q.limit(100, 500)?;
    let after = cursor(&q)?;
    known(&state, &path).await?;
    let mut rows = state
        .db
        .canary_triggers(id, limit + 1, after)
        .await
        .map_err(|e| db_error(&e))?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let last = rows.last().map(|t| (t.occurred_at, t.uuid));
    let mut response = json(&rows.into_iter().map(trigger).collect::<Vec<_>>());
    if more && let Some((at, uuid)) = last {
        next_cursor(&mut response, at, uuid);
    }
    Ok(response)
}

/// A JSON object body: media type (415), syntax (400), then shape (422 naming the field).
fn object<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    fields: &[Field],
    required: &[&str],
) -> Result<T, ApiError> {
    let json_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        return Err(ApiError::UnsupportedMediaType(
            "request body must be application/json".to_owned(),
        ));
    }
    let bytes = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::InvalidRequest {
                message: "the request body could not be read".to_owned(),
                field: None,
            }
        }
    })?;
    let value: Value =
        decnet_bus::control::decode(&bytes).map_err(|r| ApiError::MalformedJson(r.message))?;
    let Value::Object(map) = &value else {
        return Err(ApiError::unprocessable(
            None,
            "request body must be a JSON object",
        ));
    };
    check_fields(map, fields, required)?;
    serde_json::from_value(value).map_err(|e| ApiError::internal("decoding a checked body", &e))
}

fn check_fields(
    map: &Map<String, Value>,
    fields: &[Field],
    required: &[&str],
) -> Result<(), ApiError> {
    for (name, v) in map {
        let Some((_, ok, want)) = fields.iter().find(|(f, _, _)| f == name) else {
            return Err(ApiError::unprocessable(
                Some(name),
                format!("unknown field '{name}'"),
            ));
        };
        if !ok(v) {
            return Err(ApiError::unprocessable(
                Some(name),
                format!("{name} must be {want}"),
            ));
        }
    }
    if let Some(missing) = required.iter().find(|r| !map.contains_key(**r)) {
        return Err(ApiError::unprocessable(
            Some(missing),
            format!("missing field '{missing}'"),
        ));
    }
    Ok(())
}

fn string(v: &Value) -> bool {
    v.is_string()
}

fn optional_string(v: &Value) -> bool {
    v.is_string() || v.is_null()
}

fn boolean(v: &Value) -> bool {
    v.is_boolean()
}

fn is_decky_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

pub(crate) async fn mint(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Answer {
    let fields: [Field; 4] = [
        ("generator", string, "a string"),
        ("decky_name", string, "a string"),
        ("placement_path", optional_string, "a string"),
        ("memo", optional_string, "a string"),
    ];
    let body: MintBody = object(&headers, raw, &fields, &["generator", "decky_name"])?;
    if generators::spec(&body.generator).is_none() {
        let message = format!("unknown generator '{}'", body.generator);
        return Err(ApiError::unprocessable(Some("generator"), message));
    }
    if !is_decky_name(&body.decky_name) {
        let message = "decky_name must match [a-z0-9][a-z0-9-]{0,62}";
        return Err(ApiError::unprocessable(Some("decky_name"), message));
    }
    if let Some(p) = &body.placement_path
        && !decnet_canary::control::is_placement_path(p)
    {
        let message = "placement_path must be absolute, without NUL, CR, LF or '..'";
        return Err(ApiError::unprocessable(Some("placement_path"), message));
    }
    if body.memo.as_ref().is_some_and(|m| m.chars().count() > 512) {
        return Err(ApiError::unprocessable(
            Some("memo"),
            "memo must be at most 512 characters",
        ));
    }
    let request = MintRequest {
        generator: body.generator,
        decky_name: body.decky_name,
        placement_path: body.placement_path,
        memo: body.memo,
        created_by: caller.sub,
    };
    let minted: Minted = owner(&state, MINT, &request).await?;
    let mut response = json(&MintedToken {
        token: from_view(minted.token),
        artifact: artifact(minted.artifact),
    });
    *response.status_mut() = StatusCode::CREATED;
    Ok(response)
}

pub(crate) async fn get_artifact(State(state): State<Shared>, path: RawPathParams) -> Answer {
    let row = known(&state, &path).await?;
    let a: ArtifactView = owner(&state, ARTIFACT, &ArtifactRequest { token_id: row.uuid }).await?;
    Ok(json(&artifact(a)))
}

pub(crate) async fn placement(
    State(state): State<Shared>,
    path: RawPathParams,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Answer {
    let row = known(&state, &path).await?;
    let fields: [Field; 2] = [
        ("ok", boolean, "a boolean"),
        ("error", optional_string, "a string"),
    ];
    let body: PlacementBody = object(&headers, raw, &fields, &["ok"])?;
    if row.state != "planted" {
        let message = "placement can only be reported for a planted token";
        return Err(ApiError::unprocessable(None, message));
    }
    let request = PlacementRequest {
        token_id: row.uuid,
        ok: body.ok,
        error: body.error,
    };
    let view: TokenView = owner(&state, PLACEMENT, &request).await?;
    Ok(json(&from_view(view)))
}

pub(crate) async fn revoke(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    path: RawPathParams,
    RawQuery(raw): RawQuery,
) -> Answer {
    params::uuid("token_id", path_param(&path, "token_id"))?;
    let q = Query::parse(raw.as_deref(), &["reason"])?;
    let row = known(&state, &path).await?;
    let request = RevokeRequest {
        token_id: row.uuid,
        revoked_by: caller.sub,
        reason: q.get("reason").map(str::to_owned),
    };
    let view: TokenView = owner(&state, REVOKE, &request).await?;
    Ok(json(&from_view(view)))
}

/// Ask the canary service and decode what it committed.
async fn owner<T: serde::de::DeserializeOwned>(
    state: &Shared,
    subject: &str,
    request: &impl Serialize,
) -> Result<T, ApiError> {
    let reply =
        decnet_bus::control::request(&state.nats_url, subject, request, state.owner_timeout)
            .await
            .map_err(|e| match e {
                RequestError::Unavailable { .. } | RequestError::Unreachable { .. } => {
                    tracing::warn!(error = %e, subject, "canary service did not answer");
                    state.metrics.owner_timeout("canary");
                    ApiError::Unavailable("canary service unavailable".to_owned())
                }
                RequestError::Refused { code, message } => match code.as_str() {
                    "404" => ApiError::NotFound(message),
                    "422" | "409" => ApiError::unprocessable(None, message),
                    "503" => ApiError::Unavailable(message),
                    _ => ApiError::internal("canary refusal", &message),
                },
                RequestError::NotJson(detail) => ApiError::internal("canary reply", &detail),
            })?;
    serde_json::from_value(reply).map_err(|e| ApiError::internal("canary reply", &e))
}
