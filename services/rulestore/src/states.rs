//! Operational rule state (RULES.md §3): validating a request, committing it with its
//! `ttp.rule.state.<rule_id>` message in one transaction, and reverting what expired.
//!
//! The messages of a refused request are the API's (API.md §7), word for word, because the
//! API passes the store's answer on rather than keeping a second copy of these rules.

use chrono::{DateTime, Utc};
use decnet_proto::control::{StateClearRequest, StateSetRequest};
use decnet_proto::payload::rules::{RuleStateKind, RuleStateMessage};
use decnet_proto::subject;
use decnet_storage::{Database, OutboxMessage, StorageError, StoredRuleState};

use crate::SERVICE;

/// `set_by` of a revert done by the expiry timer.
pub const EXPIRY_SETTER: &str = "decnet:expiry";
/// The longest `reason`, in characters.
pub const MAX_REASON_CHARS: usize = 500;

pub use decnet_bus::control::Refusal;

/// 404 for a rule the store does not hold (or an id not shaped like one).
pub fn unknown_rule(rule_id: &str) -> Refusal {
    Refusal::new(404, format!("unknown rule '{rule_id}'"))
}

fn storage(e: &StorageError) -> Refusal {
    tracing::warn!(error = %e, "a rule state could not be committed");
    Refusal::new(503, "rule store database unavailable; nothing changed")
}

/// A state request that passed every check, ready to commit.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidState {
    /// The rule.
    pub rule_id: String,
    /// Its new state.
    pub state: RuleStateKind,
    /// The ceiling of `clipped`.
    pub confidence_max: Option<f64>,
    /// When the timer reverts it.
    pub expires_at: Option<DateTime<Utc>>,
    /// The operator's note.
    pub reason: Option<String>,
    /// Who asked.
    pub set_by: String,
}

/// Check a set request in the order of API.md §7; `known` says whether the rule exists.
pub fn validate(
    req: &StateSetRequest,
    known: impl Fn(&str) -> bool,
    now: DateTime<Utc>,
) -> Result<ValidState, Refusal> {
    if !decnet_proto::subject::is_rule_id(&req.rule_id) || !known(&req.rule_id) {
        return Err(unknown_rule(&req.rule_id));
    }
    let unprocessable = |m: &str| Err(Refusal::new(422, m));
    let state = match req.state.as_str() {
        "enabled" => RuleStateKind::Enabled,
        "disabled" => RuleStateKind::Disabled,
        "clipped" => RuleStateKind::Clipped,
        _ => return unprocessable("state must be one of enabled, disabled, clipped"),
    };
    match (state, req.confidence_max) {
        (_, Some(c)) if !(c.is_finite() && (0.0..=1.0).contains(&c)) => {
            return unprocessable("confidence_max must be within [0, 1]");
        }
        (RuleStateKind::Clipped, None) => {
            return unprocessable("state 'clipped' requires confidence_max");
        }
        (RuleStateKind::Enabled | RuleStateKind::Disabled, Some(_)) => {
            return unprocessable("confidence_max is only allowed with state 'clipped'");
        }
        _ => {}
    }
    let expires_at = match &req.expires_at {
        None => None,
        Some(text) => match DateTime::parse_from_rfc3339(text) {
            Ok(t) if t.with_timezone(&Utc) > now => {
                Some(decnet_storage::micros(t.with_timezone(&Utc)))
            }
            _ => return unprocessable("expires_at must be a future RFC 3339 time"),
        },
    };
    let reason = req
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    if reason.is_none() && state != RuleStateKind::Enabled {
        return Err(Refusal::new(
            422,
            format!("state '{}' requires a reason", req.state),
        ));
    }
    if reason.is_some_and(|r| r.chars().count() > MAX_REASON_CHARS) {
        return unprocessable("reason must be at most 500 characters");
    }
    let set_by = req.set_by.trim();
    if set_by.is_empty() {
        return unprocessable("set_by must not be empty");
    }
    Ok(ValidState {
        rule_id: req.rule_id.clone(),
        state,
        confidence_max: req.confidence_max,
        expires_at,
        reason: reason.map(str::to_owned),
        set_by: set_by.to_owned(),
    })
}

/// Commit a validated state and stage its message; returns the committed state.
pub async fn set(
    db: &Database,
    valid: ValidState,
    now: DateTime<Utc>,
) -> Result<RuleStateMessage, Refusal> {
    let committed = RuleStateMessage {
        rule_id: valid.rule_id,
        state: valid.state,
        confidence_max: valid.confidence_max,
        expires_at: valid.expires_at,
        reason: valid.reason,
        set_by: valid.set_by,
        set_at: decnet_storage::micros(now),
        auto_revert: false,
    };
    let row = StoredRuleState {
        rule_id: committed.rule_id.clone(),
        state: state_name(committed.state).to_owned(),
        confidence_max: committed.confidence_max,
        expires_at: committed.expires_at,
        reason: committed.reason.clone(),
        set_by: committed.set_by.clone(),
        set_at: committed.set_at,
    };
    db.set_rule_state(SERVICE, &row, state_message(&committed))
        .await
        .map_err(|e| storage(&e))?;
    tracing::info!(rule_id = %committed.rule_id, state = state_name(committed.state), set_by = %committed.set_by, "rule state set");
    Ok(committed)
}

/// Return a rule to the default state (no row), publishing that whether or not a row existed:
/// the published state is the whole truth.
pub async fn clear(
    db: &Database,
    req: &StateClearRequest,
    known: impl Fn(&str) -> bool,
    now: DateTime<Utc>,
) -> Result<RuleStateMessage, Refusal> {
    if !decnet_proto::subject::is_rule_id(&req.rule_id) || !known(&req.rule_id) {
        return Err(unknown_rule(&req.rule_id));
    }
    let set_by = req.set_by.trim();
    if set_by.is_empty() {
        return Err(Refusal::new(422, "set_by must not be empty"));
    }
    let cleared = default_state(&req.rule_id, set_by, now, false);
    db.clear_rule_state(SERVICE, &req.rule_id, state_message(&cleared))
        .await
        .map_err(|e| storage(&e))?;
    tracing::info!(rule_id = %cleared.rule_id, set_by = %cleared.set_by, "rule state cleared");
    Ok(cleared)
}

/// Revert every state whose `expires_at` has passed, each with an `auto_revert` message;
/// returns the reverted rule ids. A state replaced since it was read is left alone.
pub async fn expire_due(db: &Database, now: DateTime<Utc>) -> Result<Vec<String>, StorageError> {
    let mut reverted = Vec::new();
    for row in db.expired_rule_states(now).await? {
        let revert = default_state(&row.rule_id, EXPIRY_SETTER, now, true);
        if db
            .expire_rule_state(SERVICE, &row, state_message(&revert))
            .await?
        {
            tracing::info!(rule_id = %row.rule_id, expired_at = ?row.expires_at, "rule state expired; reverted to enabled");
            reverted.push(row.rule_id);
        }
    }
    Ok(reverted)
}

/// `enabled` with no ceiling, expiry or reason.
fn default_state(
    rule_id: &str,
    set_by: &str,
    now: DateTime<Utc>,
    auto_revert: bool,
) -> RuleStateMessage {
    RuleStateMessage {
        rule_id: rule_id.to_owned(),
        state: RuleStateKind::Enabled,
        confidence_max: None,
        expires_at: None,
        reason: None,
        set_by: set_by.to_owned(),
        set_at: decnet_storage::micros(now),
        auto_revert,
    }
}

/// A stored row as the message that announced it (for republishing at start).
pub fn row_message(row: &StoredRuleState) -> RuleStateMessage {
    RuleStateMessage {
        rule_id: row.rule_id.clone(),
        state: match row.state.as_str() {
            "disabled" => RuleStateKind::Disabled,
            "clipped" => RuleStateKind::Clipped,
            _ => RuleStateKind::Enabled,
        },
        confidence_max: row.confidence_max,
        expires_at: row.expires_at,
        reason: row.reason.clone(),
        set_by: row.set_by.clone(),
        set_at: row.set_at,
        auto_revert: false,
    }
}

fn state_name(state: RuleStateKind) -> &'static str {
    match state {
        RuleStateKind::Enabled => "enabled",
        RuleStateKind::Disabled => "disabled",
        RuleStateKind::Clipped => "clipped",
    }
}

/// The msg id of a state change: the rule and the commit time, so each change is distinct and
/// a republish of the same change is dropped.
pub fn state_msg_id(state: &RuleStateMessage) -> String {
    format!(
        "ttp.rule.state:{}:{}",
        state.rule_id,
        state.set_at.timestamp_micros()
    )
}

/// The outbox message of a committed state.
pub fn state_message(state: &RuleStateMessage) -> OutboxMessage {
    let subject = subject::rule_state(&state.rule_id)
        .unwrap_or_else(|_| format!("ttp.rule.state.{}", state.rule_id));
    decnet_bus::outbox::message(subject, state_msg_id(state), state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(state: &str) -> StateSetRequest {
        StateSetRequest {
            rule_id: "R0016".into(),
            state: state.into(),
            confidence_max: None,
            expires_at: None,
            reason: Some("noisy on the lab".into()),
            set_by: "alice".into(),
        }
    }

    fn refused(r: &StateSetRequest) -> (u16, String) {
        let e = validate(r, |id| id == "R0016", Utc::now()).unwrap_err();
        (e.code, e.message)
    }

    #[test]
    fn every_refusal_names_what_was_wrong() {
        let unprocessable = |m: &str| (422, m.to_owned());
        assert_eq!(
            refused(&StateSetRequest {
                rule_id: "R9999".into(),
                ..req("disabled")
            }),
            (404, "unknown rule 'R9999'".into())
        );
        assert_eq!(
            refused(&StateSetRequest {
                rule_id: "bogus".into(),
                ..req("disabled")
            }),
            (404, "unknown rule 'bogus'".into())
        );
        assert_eq!(
            refused(&req("paused")),
            unprocessable("state must be one of enabled, disabled, clipped")
        );
        for bad in [1.5, -0.1, f64::NAN] {
            assert_eq!(
                refused(&StateSetRequest {
                    confidence_max: Some(bad),
                    ..req("clipped")
                }),
                unprocessable("confidence_max must be within [0, 1]")
            );
        }
        assert_eq!(
            refused(&req("clipped")),
            unprocessable("state 'clipped' requires confidence_max")
        );
        assert_eq!(
            refused(&StateSetRequest {
                confidence_max: Some(0.5),
                ..req("disabled")
            }),
            unprocessable("confidence_max is only allowed with state 'clipped'")
        );
        for when in ["2001-01-01T00:00:00Z", "tomorrow"] {
            assert_eq!(
                refused(&StateSetRequest {
                    expires_at: Some(when.into()),
                    ..req("disabled")
                }),
                unprocessable("expires_at must be a future RFC 3339 time")
            );
        }
        assert_eq!(
            refused(&StateSetRequest {
                reason: None,
                ..req("disabled")
            }),
            unprocessable("state 'disabled' requires a reason")
        );
        assert_eq!(
            refused(&StateSetRequest {
                reason: Some("x".repeat(501)),
                ..req("disabled")
            }),
            unprocessable("reason must be at most 500 characters")
        );
        assert_eq!(
            refused(&StateSetRequest {
                set_by: " ".into(),
                ..req("disabled")
            }),
            unprocessable("set_by must not be empty")
        );
    }

    #[test]
    fn a_valid_clip_keeps_its_ceiling_and_expiry() {
        let now = Utc::now();
        let later = (now + chrono::TimeDelta::hours(4)).to_rfc3339();
        let valid = validate(
            &StateSetRequest {
                confidence_max: Some(0.5),
                expires_at: Some(later),
                ..req("clipped")
            },
            |_| true,
            now,
        )
        .unwrap();
        assert_eq!(valid.state, RuleStateKind::Clipped);
        assert_eq!(valid.confidence_max, Some(0.5));
        assert!(valid.expires_at.unwrap() > now);
        let enabled = validate(
            &StateSetRequest {
                reason: None,
                ..req("enabled")
            },
            |_| true,
            now,
        );
        assert!(enabled.is_ok());
    }
}
