//! The route table: every operation once, with its method, path, role, parameters and
//! schemas. The router and the OpenAPI document are both built from it, so a route cannot be
//! served undocumented or documented unserved.
//!
//! Checks run in API.md §3's order: the router answers unknown paths (404) and methods (405)
//! first, then the operation's role layer authenticates (401/403), then the handler checks
//! parameters, existence, media type and body.

use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use schemars::{JsonSchema, Schema, SchemaGenerator};

use crate::auth::Role;
use crate::canary::{
    self, Artifact, Generator, MintBody, MintedToken, PlacementBody, Token, Trigger,
};
use crate::error::ApiError;
use crate::model::{
    CampaignTechniqueRow, GroupRef, RuleRow, RuleState, RuleStateBody, Status, TagRow, TechniqueRow,
};
use crate::{Shared, health, rules, ttp};

/// The largest request body (API.md §1).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token.
    Public,
    /// A viewer or admin token.
    Role(Role),
}

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum In {
    /// A path segment.
    Path,
    /// The query string.
    Query,
}

/// The shape of a parameter, for the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any string.
    Text,
    /// A hyphenated uuid.
    Uuid,
    /// RFC 3339.
    Time,
    /// An integer within the bounds.
    Int(i64, i64),
    /// `T1110` or `T1110.003`.
    Technique,
    /// `enterprise-v18.1`.
    Release,
    /// One of these.
    OneOf(&'static [&'static str]),
    /// 1–128 characters.
    Session,
}

/// One parameter.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Its name.
    pub name: &'static str,
    /// Where.
    pub location: In,
    /// Its shape.
    pub kind: Kind,
    /// What it does.
    pub description: &'static str,
}

/// A schema of a Rust type, resolved against the document's components.
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// One operation.
pub struct Operation {
    /// Its method.
    pub method: Method,
    /// Its full path template.
    pub path: &'static str,
    /// Its `operationId`.
    pub id: &'static str,
    /// Its OpenAPI tag.
    pub tag: &'static str,
    /// One line.
    pub summary: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Its parameters.
    pub params: Vec<Param>,
    /// The request body's schema.
    pub body: Option<SchemaFn>,
    /// The success status and body schema (`None`: not JSON, described by `summary`).
    pub success: (u16, Option<SchemaFn>),
    /// Whether a paginated list (the `X-Next-Cursor` header).
    pub paginated: bool,
    /// Error statuses besides 401/403, which follow from `access`.
    pub errors: &'static [u16],
    /// Its handler.
    pub handler: MethodRouter<Shared>,
}

const V: Access = Access::Role(Role::Viewer);
const A: Access = Access::Role(Role::Admin);

fn path(name: &'static str, kind: Kind, description: &'static str) -> Param {
    Param {
        name,
        location: In::Path,
        kind,
        description,
    }
}

fn query(name: &'static str, kind: Kind, description: &'static str) -> Param {
    Param {
        name,
        location: In::Query,
        kind,
        description,
    }
}

fn window() -> Vec<Param> {
    vec![
        query("since", Kind::Time, "Tags created at or after this time"),
        query("until", Kind::Time, "Tags created at or before this time"),
        query("release", Kind::Release, "Only tags of this ATT&CK release"),
    ]
}

fn with(mut a: Vec<Param>, b: Vec<Param>) -> Vec<Param> {
    a.extend(b);
    a
}

fn tag_page(scope: &'static str) -> Vec<Param> {
    let (name, kind, what) = match scope {
        "identity" => (
            "id",
            Kind::Uuid,
            "The identity (merged identities fold into it)",
        ),
        "attacker" => ("id", Kind::Uuid, "The attacker"),
        _ => ("id", Kind::Session, "The session id"),
    };
    vec![
        path(name, kind, what),
        path(
            "technique_id",
            Kind::Technique,
            "Technique or sub-technique",
        ),
        query(
            "sub_technique_id",
            Kind::Technique,
            "Narrow to this sub-technique",
        ),
        query("limit", Kind::Int(1, 1000), "Page size (default 200)"),
        query("cursor", Kind::Text, "X-Next-Cursor of the previous page"),
    ]
}

/// Every operation the API serves.
pub fn operations() -> Vec<Operation> {
    let rule_filters = vec![
        query(
            "state",
            Kind::OneOf(&["enabled", "disabled", "clipped"]),
            "Only rules in this state",
        ),
        query("applies_to", Kind::Text, "Only rules for this source kind"),
        query(
            "technique_id",
            Kind::Technique,
            "Only rules emitting this technique",
        ),
    ];
    let rule_id = || path("rule_id", Kind::Text, "`R` and four digits");
    let token_id = || path("token_id", Kind::Uuid, "The token");
    let nav = || {
        query(
            "release",
            Kind::Release,
            "Return this release's layer alone",
        )
    };
    vec![
        Operation {
            method: Method::GET,
            path: "/api/v1/ttp/techniques",
            id: "listTechniques",
            tag: "ttp",
            summary: "Technique rollup of the whole fleet",
            access: V,
            params: window(),
            body: None,
            success: (200, Some(schema::<Vec<TechniqueRow>>)),
            paginated: false,
            errors: &[400],
            handler: get(ttp::fleet),
        },
        Operation {
            method: Method::GET,
            path: "/api/v1/ttp/by-identity/{identity_uuid}",
            id: "techniquesByIdentity",
            tag: "ttp",
            summary: "Technique rollup of an identity and the identities merged into it",
            access: V,
            params: with(
                vec![path("identity_uuid", Kind::Uuid, "The identity")],
                window(),
            ),
            body: None,
            success: (200, Some(schema::<Vec<TechniqueRow>>)),
            paginated: false,
            errors: &[400, 404],
            handler: get(ttp::by_identity),
        },
        Operation {
            method: Method::GET,
            path: "/api/v1/ttp/by-attacker/{attacker_uuid}",
            id: "techniquesByAttacker",
            tag: "ttp",
            summary: "Technique rollup of one attacker",
            access: V,
            params: with(
                vec![path("attacker_uuid", Kind::Uuid, "The attacker")],
                window(),
            ),
            body: None,
            success: (200, Some(schema::<Vec<TechniqueRow>>)),
            paginated: false,
            errors: &[400, 404],
            handler: get(ttp::by_attacker),
        },
        Operation {
            method: Method::GET,
            path: "/api/v1/ttp/by-session/{session_id}",
            id: "techniquesBySession",
            tag: "ttp",
            summary: "Technique rollup of one sensor session (empty when unknown)",
            access: V,
            params: with(
                vec![path("session_id", Kind::Session, "The session")],
                window(),
            ),
            body: None,
            success: (200, Some(schema::<Vec<TechniqueRow>>)),
            paginated: false,
            errors: &[400],
            handler: get(ttp::by_session),
        },
        Operation {
            method: Method::GET,
            path: "/api/v1/ttp/by-campaign/{campaign_uuid}",
            id: "techniquesByCampaign",
            tag: "ttp",
            summary: "Technique rollup of every identity of a campaign",
            access: V,
            params: with(
                vec![path("campaign_uuid", Kind::Uuid, "The campaign")],
                window(),
            ),
            body: None,
            success: (200, Some(schema::<Vec<CampaignTechniqueRow>>)),
            paginated: false,
            errors: &[400, 404],
            handler: get(ttp::by_campaign),
        },
        Operation {
            method: Method::GET,
            path: "/api/v1/ttp/tags/by-identity/{id}/{technique_id}",
            id: "tagsByIdentity",
            tag: "ttp",
            summary: "Tags of one technique for an identity, newest first",
            access: V,
            params: tag_page("identity"),
            body: None,
            success: (200, Some(schema::<Vec<TagRow>>)),
            paginated: true,
            errors: &[400, 404],
            handler: get(ttp::tags_by_identity),
        },
        Operation {
            method: Method::GET,
            path: "/api/v1/ttp/tags/by-attacker/{id}/{technique_id}",
            id: "tagsByAttacker",
            tag: "ttp",
            summary: "Tags of one technique for an attacker, newest first",
            access: V,
            params: tag_page("attacker"),
            body: None,
            success: (200, Some(schema::<Vec<TagRow>>)),
            paginated: true,
            errors: &[400, 404],
            handler: get(ttp::tags_by_attacker),
        },
        Operation {
            method: Method::GET,
            path: "/api/v1/ttp/tags/by-session/{id}/{technique_id}",
            id: "tagsBySession",
            tag: "ttp",
            summary: "Tags of one technique for a session, newest first",
            access: V,
            params: tag_page("session"),
            body: None,
            success: (200, Some(schema::<Vec<TagRow>>)),
            paginated: true,
            errors: &[400],
            handler: get(ttp::tags_by_session),
        },
        Operation {
            method: Method::GET,
            path: "/api/v1/ttp/techniques/{technique_id}/groups",
            id: "techniqueGroups",
            tag: "ttp",
            summary: "Intrusion sets the catalogue records as using exactly this technique",
            access: V,
            params: vec![path(
                "technique_id",
                Kind::Technique,
                "Technique or sub-technique",
            )],
            body: None,
            success: (200, Some(schema::<Vec<GroupRef>>)),
            paginated: false,
            errors: &[400, 404],
            handler: get(ttp::groups),
        },
        Operation {
            method: Method::GET,
            path: "/api/v1/ttp/rules",
            id: "listRules",
            tag: "rules",
            summary: "The rule catalogue with live state",
            access: V,
            params: rule_filters,
            body: None,
            success: (200, Some(schema::<Vec<RuleRow>>)),
            paginated: false,
            errors: &[400],
            handler: get(rules::list),
        },
        Operation {
            method: Method::GET,
            path: "/api/v1/ttp/rules/{rule_id}",
            id: "getRule",
            tag: "rules",
            summary: "One rule with its live state",
            access: V,
            params: vec![rule_id()],
            body: None,
            success: (200, Some(schema::<RuleRow>)),
            paginated: false,
            errors: &[404],
            handler: get(rules::one),
        },
        Operation {
            method: Method::POST,
            path: "/api/v1/ttp/rules/{rule_id}/state",
            id: "setRuleState",
            tag: "rules",
            summary: "Enable, disable or clip a rule through the rule store",
            access: A,
            params: vec![rule_id()],
            body: Some(schema::<RuleStateBody>),
            success: (200, Some(schema::<RuleState>)),
            paginated: false,
            errors: &[400, 404, 413, 415, 422, 503],
            handler: post(rules::set_state),
        },
        Operation {
            method: Method::DELETE,
            path: "/api/v1/ttp/rules/{rule_id}/state",
            id: "clearRuleState",
            tag: "rules",
            summary: "Return a rule to enabled through the rule store",
            access: A,
            params: vec![rule_id()],
            body: None,
            success: (200, Some(schema::<RuleState>)),
            paginated: false,
            errors: &[404, 503],
            handler: delete(rules::clear_state),
        },
        Operation {
            method: Method::GET,
            path: "/api/v1/ttp/export/navigator",
            id: "navigatorFleet",
            tag: "navigator",
            summary: "ATT&CK Navigator 4.5 layers of the fleet, one per release",
            access: V,
            params: vec![nav()],
            body: None,
            success: (200, Some(crate::navigator::layers_schema)),
            paginated: false,
            errors: &[400],
            handler: get(ttp::navigator_fleet),
        },
        Operation {
            method: Method::GET,
            path: "/api/v1/ttp/export/navigator/identity/{identity_uuid}",
            id: "navigatorIdentity",
            tag: "navigator",
            summary: "ATT&CK Navigator 4.5 layers of an identity, one per release",
            access: V,
            params: vec![path("identity_uuid", Kind::Uuid, "The identity"), nav()],
            body: None,
            success: (200, Some(crate::navigator::layers_schema)),
            paginated: false,
            errors: &[400, 404],
            handler: get(ttp::navigator_identity),
        },
        Operation {
            method: Method::GET,
            path: "/api/v1/canary/generators",
            id: "listGenerators",
            tag: "canary",
            summary: "The canary generators",
            access: V,
            params: vec![],
            body: None,
            success: (200, Some(schema::<Vec<Generator>>)),
            paginated: false,
            errors: &[],
            handler: get(canary::list_generators),
        },
        Operation {
            method: Method::POST,
            path: "/api/v1/canary/tokens",
            id: "mintToken",
            tag: "canary",
            summary: "Mint a canary token and its artifact through the canary service",
            access: A,
            params: vec![],
            body: Some(schema::<MintBody>),
            success: (201, Some(schema::<MintedToken>)),
            paginated: false,
            errors: &[400, 413, 415, 422, 503],
            handler: post(canary::mint),
        },
        Operation {
            method: Method::GET,
            path: "/api/v1/canary/tokens",
            id: "listTokens",
            tag: "canary",
            summary: "Canary tokens, newest first",
            access: V,
            params: vec![
                query("decky_name", Kind::Text, "Only this decoy's tokens"),
                query(
                    "state",
                    Kind::OneOf(&["planted", "failed", "revoked"]),
                    "Only tokens in this state",
                ),
                query(
                    "kind",
                    Kind::OneOf(&["http", "dns", "aws_passive"]),
                    "Only tokens of this kind",
                ),
                query("generator", Kind::Text, "Only this generator's tokens"),
                query("limit", Kind::Int(1, 500), "Page size (default 100)"),
                query("cursor", Kind::Text, "X-Next-Cursor of the previous page"),
            ],
            body: None,
            success: (200, Some(schema::<Vec<Token>>)),
            paginated: true,
            errors: &[400],
            handler: get(canary::list_tokens),
        },
        Operation {
            method: Method::GET,
            path: "/api/v1/canary/tokens/{token_id}",
            id: "getToken",
            tag: "canary",
            summary: "One canary token",
            access: V,
            params: vec![token_id()],
            body: None,
            success: (200, Some(schema::<Token>)),
            paginated: false,
            errors: &[400, 404],
            handler: get(canary::get_token),
        },
        Operation {
            method: Method::DELETE,
            path: "/api/v1/canary/tokens/{token_id}",
            id: "revokeToken",
            tag: "canary",
            summary: "Revoke a canary token through the canary service",
            access: A,
            params: vec![token_id(), query("reason", Kind::Text, "Why")],
            body: None,
            success: (200, Some(schema::<Token>)),
            paginated: false,
            errors: &[400, 404, 503],
            handler: delete(canary::revoke),
        },
        Operation {
            method: Method::GET,
            path: "/api/v1/canary/tokens/{token_id}/artifact",
            id: "getArtifact",
            tag: "canary",
            summary: "Re-derive a token's artifact through the canary service",
            access: A,
            params: vec![token_id()],
            body: None,
            success: (200, Some(schema::<Artifact>)),
            paginated: false,
            errors: &[400, 404, 422, 503],
            handler: get(canary::get_artifact),
        },
        Operation {
            method: Method::POST,
            path: "/api/v1/canary/tokens/{token_id}/placement",
            id: "reportPlacement",
            tag: "canary",
            summary: "Report whether a token's artifact was planted",
            access: A,
            params: vec![token_id()],
            body: Some(schema::<PlacementBody>),
            success: (200, Some(schema::<Token>)),
            paginated: false,
            errors: &[400, 404, 413, 415, 422, 503],
            handler: post(canary::placement),
        },
        Operation {
            method: Method::GET,
            path: "/api/v1/canary/tokens/{token_id}/triggers",
            id: "listTriggers",
            tag: "canary",
            summary: "A token's recorded hits, newest first",
            access: V,
            params: vec![
                token_id(),
                query("limit", Kind::Int(1, 500), "Page size (default 100)"),
                query("cursor", Kind::Text, "X-Next-Cursor of the previous page"),
            ],
            body: None,
            success: (200, Some(schema::<Vec<Trigger>>)),
            paginated: true,
            errors: &[400, 404],
            handler: get(canary::triggers),
        },
        Operation {
            method: Method::GET,
            path: "/healthz",
            id: "healthz",
            tag: "ops",
            summary: "Liveness",
            access: Access::Public,
            params: vec![],
            body: None,
            success: (200, Some(schema::<Status>)),
            paginated: false,
            errors: &[],
            handler: get(health::healthz),
        },
        Operation {
            method: Method::GET,
            path: "/readyz",
            id: "readyz",
            tag: "ops",
            summary: "Readiness: database, NATS and the ATT&CK catalogue",
            access: Access::Public,
            params: vec![],
            body: None,
            success: (200, Some(schema::<Status>)),
            paginated: false,
            errors: &[503],
            handler: get(health::readyz),
        },
        Operation {
            method: Method::GET,
            path: "/metrics",
            id: "metrics",
            tag: "ops",
            summary: "Prometheus metrics (OpenMetrics text)",
            access: Access::Public,
            params: vec![],
            body: None,
            success: (200, None),
            paginated: false,
            errors: &[],
            handler: get(health::metrics),
        },
        Operation {
            method: Method::GET,
            path: "/api/v1/openapi.json",
            id: "openapi",
            tag: "ops",
            summary: "This document",
            access: Access::Public,
            params: vec![],
            body: None,
            success: (200, None),
            paginated: false,
            errors: &[],
            handler: get(health::openapi),
        },
    ]
}

/// The router over `state`: every operation of [`operations`], behind its role.
pub fn router(state: Shared) -> Router {
    let mut router: Router<Shared> = Router::new();
    for op in operations() {
        let handler = match op.access {
            Access::Public => op.handler,
            Access::Role(role) => op.handler.route_layer(middleware::from_fn_with_state(
                (state.clone(), role),
                authorize,
            )),
        };
        router = router.route(op.path, handler);
    }
    router
        .fallback(unknown_path)
        .layer(middleware::map_response(error_bodies))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn unknown_path() -> ApiError {
    ApiError::NotFound("no such path".to_owned())
}

/// axum answers some refusals itself (a wrong method with `Allow` and no body, a path
/// parameter that is not UTF-8, a body over the limit) in plain text; this gives each the
/// error body every non-2xx answer carries.
async fn error_bodies(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let error = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            ApiError::MethodNotAllowed(response.headers().get(header::ALLOW).cloned())
        }
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::NOT_FOUND => ApiError::NotFound("no such path".to_owned()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::UnsupportedMediaType("request body must be application/json".to_owned())
        }
        s if s.is_client_error() => ApiError::InvalidRequest {
            message: "the request is malformed".to_owned(),
            field: None,
        },
        _ => ApiError::Internal,
    };
    error.into_response()
}

/// The role check of an operation: the verified caller goes into the request's extensions.
async fn authorize(
    State((state, needed)): State<(Shared, Role)>,
    mut request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let now = chrono::Utc::now().timestamp();
    match state.verifier.verify_header(header, now) {
        Err(e) => {
            state.metrics.auth_failure(e.reason());
            ApiError::Unauthorized {
                message: e.to_string(),
                presented: header.is_some(),
            }
            .into_response()
        }
        Ok(caller) if caller.role < needed => {
            state.metrics.auth_failure("forbidden");
            ApiError::Forbidden(format!("this endpoint needs the {} role", needed.as_str()))
                .into_response()
        }
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
    }
}

/// Counts and times every request by its route template, never its raw path.
async fn track(State(state): State<Shared>, request: Request<Body>, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
