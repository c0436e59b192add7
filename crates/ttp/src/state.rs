//! Operational rule state: enabled, disabled, or clipped to a confidence ceiling.
//!
//! State is kept apart from the definition so an operator can silence or cap a noisy rule in
//! seconds without a deploy. It is keyed by rule id only, so a new rule version inherits it.
//! The engine never reads `expires_at`: the rule store reverts expired state and publishes
//! the revert, and the published state is the whole truth.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What an operator made of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RuleMode {
    /// The default: the rule runs with its own confidences.
    #[default]
    Enabled,
    /// The rule does not run at all.
    Disabled,
    /// The rule runs; each tag's confidence is capped at `confidence_max`.
    Clipped {
        /// The ceiling in [0, 1]; below the 0.3 floor every fire is suppressed.
        confidence_max: f64,
    },
}

impl RuleMode {
    /// Whether the rule is evaluated at all.
    pub fn is_active(self) -> bool {
        !matches!(self, RuleMode::Disabled)
    }

    /// Apply the ceiling: never raises a confidence.
    pub fn cap(self, confidence: f64) -> f64 {
        match self {
            RuleMode::Clipped { confidence_max } => confidence.min(confidence_max),
            _ => confidence,
        }
    }

    /// `enabled`, `disabled` or `clipped`.
    pub fn name(self) -> &'static str {
        match self {
            RuleMode::Enabled => "enabled",
            RuleMode::Disabled => "disabled",
            RuleMode::Clipped { .. } => "clipped",
        }
    }
}

/// One rule's state as the rule store publishes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    /// The rule.
    pub rule_id: String,
    /// The mode, flattened as `state` and `confidence_max`.
    #[serde(flatten)]
    pub mode: RuleMode,
    /// When the rule store reverts the state; informational for taggers.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Why the operator changed it.
    #[serde(default)]
    pub reason: Option<String>,
    /// Who changed it.
    #[serde(default)]
    pub set_by: Option<String>,
    /// When.
    #[serde(default)]
    pub set_at: Option<DateTime<Utc>>,
}

/// The mode of every rule that has one; rules without an entry are enabled.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateTable {
    modes: HashMap<String, RuleMode>,
}

impl StateTable {
    /// The mode of a rule.
    pub fn mode(&self, rule_id: &str) -> RuleMode {
        self.modes.get(rule_id).copied().unwrap_or_default()
    }

    /// Apply a published state (`ttp.rule.state.<rule_id>`): the published state is the
    /// whole truth, so an expiry revert (`enabled`, `auto_revert`) simply enables the rule.
    pub fn apply(&mut self, state: &RuleState) {
        self.set(&state.rule_id, state.mode);
    }

    /// Set a rule's mode; `Enabled` removes the entry.
    pub fn set(&mut self, rule_id: &str, mode: RuleMode) {
        match mode {
            RuleMode::Enabled => self.modes.remove(rule_id),
            other => self.modes.insert(rule_id.to_owned(), other),
        };
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ceiling_never_raises() {
        let clip = RuleMode::Clipped {
            confidence_max: 0.5,
        };
        assert_eq!(clip.cap(0.9), 0.5);
        assert_eq!(clip.cap(0.4), 0.4);
        assert_eq!(RuleMode::Enabled.cap(0.9), 0.9);
    }

    #[test]
    fn published_state_reads_as_the_wire_shape() {
        let msg = json!({"rule_id": "R0016", "state": "clipped", "confidence_max": 0.4,
            "expires_at": null, "reason": "noisy", "set_by": "ops", "set_at": "2026-12-03T10:00:00Z",
            "auto_revert": false});
        let state: RuleState = serde_json::from_value(msg).unwrap();
        assert_eq!(
            state.mode,
            RuleMode::Clipped {
                confidence_max: 0.4
            }
        );
        let disabled: RuleState =
            serde_json::from_value(json!({"rule_id": "R0016", "state": "disabled"})).unwrap();
        assert!(!disabled.mode.is_active());
    }

    #[test]
    fn table_defaults_to_enabled() {
        let mut table = StateTable::default();
        assert_eq!(table.mode("R0010"), RuleMode::Enabled);
        table.set("R0010", RuleMode::Disabled);
        assert_eq!(table.mode("R0010"), RuleMode::Disabled);
        table.set("R0010", RuleMode::Enabled);
        assert_eq!(table, StateTable::default());
    }
}
