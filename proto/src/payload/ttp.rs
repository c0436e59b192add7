//! What the tagger publishes (EVENTS.md §4.12–§4.14).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::wire::Decky;

/// `ttp.tagged`: the new tags of one upstream message; never sent on a replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Tagged {
    /// Attacker anchor of the upstream message.
    #[schemars(required, transform = crate::wire::nullable)]
    pub attacker_uuid: Option<Uuid>,
    /// Identity, if known.
    #[schemars(required, transform = crate::wire::nullable)]
    pub identity_uuid: Option<Uuid>,
    /// Sensor session.
    #[schemars(required, transform = crate::wire::nullable)]
    pub session_id: Option<String>,
    /// Decoy.
    #[schemars(required, transform = crate::wire::nullable)]
    pub decky_id: Option<Decky>,
    /// Subject of the upstream message.
    pub source_subject: String,
    /// Rows this message inserted, nothing else.
    pub tag_uuids: Vec<Uuid>,
    /// Sorted distinct parent technique ids of those rows.
    pub techniques_added: Vec<String>,
    /// Sorted distinct sub-technique ids of those rows.
    pub sub_techniques_added: Vec<String>,
    /// One entry per new row.
    pub tags: Vec<TaggedRow>,
    /// Commit time.
    pub tagged_at: DateTime<Utc>,
}

/// One new row in `ttp.tagged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaggedRow {
    /// Tag id.
    pub uuid: Uuid,
    /// Rule that produced it.
    pub rule_id: String,
    /// Its version.
    pub rule_version: u32,
    /// ATT&CK tactic id.
    pub tactic: String,
    /// Parent technique id.
    pub technique_id: String,
    /// Sub-technique id.
    #[schemars(required, transform = crate::wire::nullable)]
    pub sub_technique_id: Option<String>,
    /// Final confidence.
    pub confidence: f64,
    /// Kind of the evaluation event.
    pub source_kind: String,
    /// Id of the evaluation event.
    pub source_id: String,
    /// The row's attacker (identity tags have none).
    #[schemars(required, transform = crate::wire::nullable)]
    pub attacker_uuid: Option<Uuid>,
    /// The row's identity.
    #[schemars(required, transform = crate::wire::nullable)]
    pub identity_uuid: Option<Uuid>,
}

/// `ttp.rule.fired.<technique>`: the new rows of one parent technique from one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RuleFired {
    /// Parent id, equal to the subject token.
    pub technique_id: String,
    /// Sub-techniques among these rows, sorted.
    pub sub_technique_ids: Vec<String>,
    /// Tactic ids among these rows, sorted.
    pub tactics: Vec<String>,
    /// Rules that produced them, sorted.
    pub rule_ids: Vec<String>,
    /// The new rows for this technique.
    pub tag_uuids: Vec<Uuid>,
    /// Highest confidence among them.
    pub confidence_max: f64,
    /// As in `ttp.tagged`.
    #[schemars(required, transform = crate::wire::nullable)]
    pub attacker_uuid: Option<Uuid>,
    /// As in `ttp.tagged`.
    #[schemars(required, transform = crate::wire::nullable)]
    pub identity_uuid: Option<Uuid>,
    /// As in `ttp.tagged`.
    #[schemars(required, transform = crate::wire::nullable)]
    pub session_id: Option<String>,
    /// As in `ttp.tagged`.
    #[schemars(required, transform = crate::wire::nullable)]
    pub decky_id: Option<Decky>,
    /// Commit time.
    pub tagged_at: DateTime<Utc>,
}

/// Why a fired rule wrote no tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SuppressedReason {
    /// The final confidence was under the 0.3 floor.
    BelowFloor,
    /// The rule's per-anchor budget for the minute was spent.
    RateLimited,
}

/// The state a suppressed rule was evaluated in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EvaluatedState {
    /// Enabled.
    Enabled,
    /// Clipped to a ceiling.
    Clipped,
}

/// `ttp.rule.suppressed`: one (upstream message, rule, reason) that suppressed tags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Suppressed {
    /// The rule.
    pub rule_id: String,
    /// Its version.
    pub rule_version: u32,
    /// Floor or rate limit.
    pub reason: SuppressedReason,
    /// Tags suppressed for this reason by this upstream message.
    pub count: u64,
    /// Attacker anchor of the first suppressed tag.
    #[schemars(required, transform = crate::wire::nullable)]
    pub attacker_uuid: Option<Uuid>,
    /// Identity anchor of the first suppressed tag.
    #[schemars(required, transform = crate::wire::nullable)]
    pub identity_uuid: Option<Uuid>,
    /// Kind of the first suppressed tag's event.
    pub source_kind: String,
    /// Id of the first suppressed tag's event.
    pub source_id: String,
    /// Distinct technique or sub-technique ids suppressed.
    pub technique_ids: Vec<String>,
    /// Highest computed confidence among them.
    pub confidence_max: f64,
    /// 0.3, for `below_floor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<f64>,
    /// The rule's limit, for `rate_limited`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_per_minute: Option<u32>,
    /// Start of the 60 s window, for `rate_limited`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<DateTime<Utc>>,
    /// Rule state at evaluation.
    pub state: EvaluatedState,
}
