//! The rule catalogue with live state, and rule-state changes through the rule store
//! (API.md §7).
//!
//! Definitions are read from `ttp_rule` and parsed with the tagging core for their name,
//! kinds, matcher and emits; a parse costs regex compilation, so results are cached by the
//! definition's sha256. A state change is checked here with the rule store's own validation
//! (so a bad request is a 422 even when the store is down, in the store's exact words), then
//! sent on `decnet.rulestore.state.set|clear`; the answer is what the store committed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawPathParams, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use decnet_bus::control::RequestError;
use decnet_proto::control::{
    RULESTORE_STATE_CLEAR, RULESTORE_STATE_SET, StateClearRequest, StateSetRequest,
};
use decnet_storage::{StoredRule, StoredRuleState};
use decnet_ttp::catalogue::Catalogue;
use decnet_ttp::rule::{Matcher, RuleDef};
use serde_json::Value;

use crate::Shared;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::model::{EmitRow, RuleRow, RuleState, RuleStateBody, Ts};
use crate::params::{self, Query};
use crate::ttp::{db_error, path_param};

type Answer = Result<Response, ApiError>;

/// Parsed definitions by sha256 of their resolved source.
#[derive(Debug, Default)]
pub(crate) struct RuleCache(Mutex<HashMap<String, Option<Arc<RuleDef>>>>);

impl RuleCache {
    /// The parsed definition, or `None` when this build cannot compile it (it is then listed
    /// with what the table alone says).
    fn get(&self, rule: &StoredRule) -> Option<Arc<RuleDef>> {
        let mut cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .entry(rule.sha256.clone())
            .or_insert_with(|| {
                decnet_ttp::source::parse_source(
                    &rule.rule_id,
                    &rule.source,
                    Catalogue::bundled(),
                    chrono::Utc::now().date_naive(),
                )
                .map_err(|d| {
                    tracing::warn!(
                        rule_id = rule.rule_id,
                        errors = d.errors.len(),
                        "stored rule does not parse"
                    )
                })
                .ok()
                .map(Arc::new)
            })
            .clone()
    }
}

fn row(state: &Shared, rule: &StoredRule, live: Option<&StoredRuleState>) -> RuleRow {
    let def = state.rule_cache.get(rule);
    let def = def.as_deref();
    RuleRow {
        rule_id: rule.rule_id.clone(),
        rule_version: rule.rule_version,
        name: def.map(|d| d.name.clone()).unwrap_or_default(),
        description: def.map(|d| d.description.clone()).unwrap_or_default(),
        attack_release: rule.attack_release.clone(),
        applies_to: def
            .map(|d| d.applies_to.iter().map(|k| k.as_str().to_owned()).collect())
            .unwrap_or_default(),
        match_kind: def
            .map(|d| match &d.matcher {
                Matcher::Regex(_) => "regex".to_owned(),
                Matcher::Lifter(l) => format!("lifter:{}", l.name),
            })
            .unwrap_or_default(),
        emits: def
            .map(|d| {
                d.emits
                    .iter()
                    .map(|e| EmitRow {
                        tactic: e.tactic.clone(),
                        technique_id: e.technique_id.clone(),
                        sub_technique_id: e.sub_technique_id.clone(),
                        confidence: e.confidence,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        source_path: rule.source_path.clone(),
        sha256: rule.sha256.clone(),
        updated_at: Ts(rule.updated_at),
        state: live.map_or_else(|| "enabled".to_owned(), |s| s.state.clone()),
        confidence_max: live.and_then(|s| s.confidence_max),
        expires_at: live.and_then(|s| s.expires_at).map(Ts),
        reason: live.and_then(|s| s.reason.clone()),
        set_by: live.map(|s| s.set_by.clone()),
        set_at: live.map(|s| Ts(s.set_at)),
    }
}

pub(crate) async fn list(State(state): State<Shared>, RawQuery(raw): RawQuery) -> Answer {
    let q = Query::parse(raw.as_deref(), &["state", "applies_to", "technique_id"])?;
    let wanted_state = q.one_of("state", &["enabled", "disabled", "clipped"])?;
    let kinds: Vec<&str> = decnet_ttp::SourceKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    let applies_to = q.one_of("applies_to", &kinds)?;
    let technique = q
        .get("technique_id")
        .map(|t| params::technique("technique_id", t).map(|_| t.to_owned()))
        .transpose()?;
    let defs = state
        .db
        .rule_definitions()
        .await
        .map_err(|e| db_error(&e))?;
    let states = state.db.rule_states().await.map_err(|e| db_error(&e))?;
    let states: HashMap<&str, &StoredRuleState> =
        states.iter().map(|s| (s.rule_id.as_str(), s)).collect();
    let rows: Vec<RuleRow> = defs
        .iter()
        .filter(|d| !d.deleted)
        .map(|d| row(&state, d, states.get(d.rule_id.as_str()).copied()))
        .filter(|r| wanted_state.as_ref().is_none_or(|s| &r.state == s))
        .filter(|r| applies_to.as_ref().is_none_or(|k| r.applies_to.contains(k)))
        .filter(|r| {
            technique.as_ref().is_none_or(|t| {
                r.emits
                    .iter()
                    .any(|e| &e.technique_id == t || e.sub_technique_id.as_ref() == Some(t))
            })
        })
        .collect();
    Ok(crate::model::json(&rows))
}

/// The stored, live definition of `rule_id`, or 404 in the rule store's words.
async fn known(state: &Shared, rule_id: &str) -> Result<StoredRule, ApiError> {
    let unknown = || ApiError::NotFound(format!("unknown rule '{rule_id}'"));
    if !decnet_proto::subject::is_rule_id(rule_id) {
        return Err(unknown());
    }
    match state
        .db
        .rule_definition(rule_id)
        .await
        .map_err(|e| db_error(&e))?
    {
        Some(rule) if !rule.deleted => Ok(rule),
        _ => Err(unknown()),
    }
}

pub(crate) async fn one(State(state): State<Shared>, path: RawPathParams) -> Answer {
    let rule = known(&state, path_param(&path, "rule_id")).await?;
    let live = state
        .db
        .rule_state(&rule.rule_id)
        .await
        .map_err(|e| db_error(&e))?;
    Ok(crate::model::json(&row(&state, &rule, live.as_ref())))
}

/// The body of a state request: JSON syntax (400), then shape (422 naming the field).
fn body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<RuleStateBody, ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
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
    let Value::Object(fields) = &value else {
        return Err(ApiError::unprocessable(
            None,
            "request body must be a JSON object",
        ));
    };
    // Field by field, so a refusal names its field as a JSON pointer.
    const KNOWN: [&str; 4] = ["state", "confidence_max", "expires_at", "reason"];
    if let Some(extra) = fields.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::unprocessable(
            Some(extra),
            format!("unknown field '{extra}'"),
        ));
    }
    if !fields.contains_key("state") {
        return Err(ApiError::unprocessable(
            Some("state"),
            "missing field 'state'",
        ));
    }
    for (name, v) in fields {
        let ok = match name.as_str() {
            "confidence_max" => v.is_number() || v.is_null(),
            _ => v.is_string() || (v.is_null() && name != "state"),
        };
        if !ok {
            let want = if name == "confidence_max" {
                "a number"
            } else {
                "a string"
            };
            return Err(ApiError::unprocessable(
                Some(name),
                format!("{name} must be {want}"),
            ));
        }
    }
    serde_json::from_value(value).map_err(|e| ApiError::internal("decoding a checked body", &e))
}

/// The field a rule store refusal is about, from its (API.md §7) words.
fn field_of(message: &str) -> Option<&'static str> {
    ["confidence_max", "expires_at", "reason", "state"]
        .into_iter()
        .find(|f| message.contains(f) && !(message.starts_with("state '") && *f == "state"))
        .or(message.starts_with("state ").then_some("state"))
}

pub(crate) async fn set_state(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    path: RawPathParams,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Answer {
    let rule = known(&state, path_param(&path, "rule_id")).await?;
    let b = body(&headers, raw)?;
    let request = StateSetRequest {
        rule_id: rule.rule_id.clone(),
        state: b.state,
        confidence_max: b.confidence_max,
        expires_at: b.expires_at,
        reason: b.reason,
        set_by: caller.sub.clone(),
    };
    decnet_rulestore::states::validate(&request, |_| true, chrono::Utc::now()).map_err(|r| {
        if r.code == 404 {
            ApiError::NotFound(r.message)
        } else {
            ApiError::unprocessable(field_of(&r.message), r.message)
        }
    })?;
    owner(&state, RULESTORE_STATE_SET, &request).await
}

pub(crate) async fn clear_state(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    path: RawPathParams,
) -> Answer {
    let rule = known(&state, path_param(&path, "rule_id")).await?;
    let request = StateClearRequest {
        rule_id: rule.rule_id,
        set_by: caller.sub,
    };
    owner(&state, RULESTORE_STATE_CLEAR, &request).await
}

/// Ask the rule store and answer with what it committed.
async fn owner(state: &Shared, subject: &str, request: &impl serde::Serialize) -> Answer {
    let reply =
        decnet_bus::control::request(&state.nats_url, subject, request, state.owner_timeout)
            .await
            .map_err(|e| match e {
                RequestError::Unavailable { .. } | RequestError::Unreachable { .. } => {
                    tracing::warn!(error = %e, subject, "rule store did not answer");
                    state.metrics.owner_timeout("rulestore");
                    ApiError::Unavailable("rule store unavailable".to_owned())
                }
                RequestError::Refused { code, message } => match code.as_str() {
                    "404" => ApiError::NotFound(message),
                    "422" | "409" => ApiError::unprocessable(field_of(&message), message),
                    "503" => ApiError::Unavailable(message),
                    _ => ApiError::internal("rule store refusal", &message),
                },
                RequestError::NotJson(detail) => ApiError::internal("rule store reply", &detail),
            })?;
    let committed: RuleState =
        serde_json::from_value(reply).map_err(|e| ApiError::internal("rule store reply", &e))?;
    Ok(crate::model::json(&committed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_their_field() {
        let cases = [
            (
                "state must be one of enabled, disabled, clipped",
                Some("state"),
            ),
            (
                "confidence_max must be within [0, 1]",
                Some("confidence_max"),
            ),
            (
                "state 'clipped' requires confidence_max",
                Some("confidence_max"),
            ),
            ("state 'disabled' requires a reason", Some("reason")),
            ("reason must be at most 500 characters", Some("reason")),
            (
                "expires_at must be a future RFC 3339 time",
                Some("expires_at"),
            ),
        ];
        for (message, want) in cases {
            assert_eq!(field_of(message), want, "{message}");
        }
    }
}
