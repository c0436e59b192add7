//! The RULES stream's payloads (EVENTS.md §4.15, §4.16): the last message of each subject is
//! the rule's current definition or state.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::wire::Hex64;

/// `ttp.rule.reloaded.<rule_id>`: a rule's current definition, or its tombstone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RuleReloaded {
    /// Equals the subject token.
    pub rule_id: String,
    /// Required unless deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_version: Option<u32>,
    /// SHA-256 of `source`; required unless deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Hex64>,
    /// e.g. `enterprise-v18.1`; required unless deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attack_release: Option<String>,
    /// The rule YAML with the data tables it references resolved (at most 512 KiB);
    /// required unless deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 524288))]
    pub source: Option<String>,
    /// File path relative to the rules directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_path: Option<String>,
    /// When the rule store accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    /// The rule store's sequence for this change; names the msg id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    /// `true` is a tombstone: evict the rule named by the subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<bool>,
}

/// An operational rule state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleStateKind {
    /// Evaluated as written.
    Enabled,
    /// Not evaluated.
    Disabled,
    /// Evaluated with a confidence ceiling.
    Clipped,
}

/// `ttp.rule.state.<rule_id>`: always the whole state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RuleStateMessage {
    /// The rule.
    pub rule_id: String,
    /// Its state.
    pub state: RuleStateKind,
    /// Ceiling for `clipped`, else null.
    #[schemars(required, transform = crate::wire::nullable, range(min = 0.0, max = 1.0))]
    pub confidence_max: Option<f64>,
    /// End of this state; afterwards the rule is `enabled` with no ceiling.
    #[schemars(required, transform = crate::wire::nullable)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Operator note (at most 500 characters); present for `disabled` and `clipped`.
    #[schemars(required, transform = crate::wire::nullable, length(max = 500))]
    pub reason: Option<String>,
    /// The API's JWT `sub`, the CLI's `--as NAME`, or `decnet:expiry` for a revert.
    pub set_by: String,
    /// Commit time at the rule store.
    pub set_at: DateTime<Utc>,
    /// `true` when the store reverted an expired state.
    pub auto_revert: bool,
}
