//! The JSON objects the API answers with (API.md §5–§7), and the time form they share.
//!
//! Each derives its JSON Schema, from which the OpenAPI document is built, so the document
//! describes exactly what the handlers serialise.

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat, Utc};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// A time as the API writes it: RFC 3339 UTC with milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ts(pub DateTime<Utc>);

impl Serialize for Ts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

impl<'de> Deserialize<'de> for Ts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Ts, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| Ts(t.with_timezone(&Utc)))
            .map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Ts {
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "format": "date-time"})
    }
}

/// Tags of one technique, sub-technique and tactic within a scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TechniqueRow {
    /// Parent id, `T1110`.
    pub technique_id: String,
    /// From the catalogue.
    pub technique_name: String,
    /// `T1110.003`.
    pub sub_technique_id: Option<String>,
    /// "Parent: Sub".
    pub sub_technique_name: Option<String>,
    /// `TA0006`.
    pub tactic: String,
    /// `credential-access`.
    pub tactic_shortname: String,
    /// "Credential Access".
    pub tactic_name: String,
    /// Release the tags were written against.
    pub attack_release: String,
    /// Tags.
    pub count: i64,
    /// Distinct attackers among them.
    pub attacker_count: i64,
    /// Earliest tag.
    pub first_seen: Ts,
    /// Latest tag.
    pub last_seen: Ts,
    /// Highest confidence.
    pub confidence_max: f64,
    /// Of the sub-technique when present, else of the technique.
    pub mitre_url: Option<String>,
}

/// [`TechniqueRow`] of a campaign, with the identities it spans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CampaignTechniqueRow {
    /// The row.
    #[serde(flatten)]
    pub row: TechniqueRow,
    /// Distinct identities among the tags.
    pub identity_count: i64,
}

/// One tag with its evidence and the catalogue's names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TagRow {
    /// Id.
    pub uuid: Uuid,
    /// Kind of the evaluation event.
    pub source_kind: String,
    /// Id of the evaluation event.
    pub source_id: String,
    /// Attacker anchor.
    pub attacker_uuid: Option<Uuid>,
    /// Identity anchor.
    pub identity_uuid: Option<Uuid>,
    /// Sensor session.
    pub session_id: Option<String>,
    /// Decoy.
    pub decky_id: Option<String>,
    /// Tactic id.
    pub tactic: String,
    /// Parent technique.
    pub technique_id: String,
    /// Sub-technique.
    pub sub_technique_id: Option<String>,
    /// In [0.3, 1].
    pub confidence: f64,
    /// The rule.
    pub rule_id: String,
    /// Its version.
    pub rule_version: i32,
    /// Typed evidence (RULES.md §6).
    pub evidence: serde_json::Map<String, Value>,
    /// ATT&CK release.
    pub attack_release: String,
    /// Technique page.
    pub mitre_url: String,
    /// Tagger clock at evaluation.
    pub created_at: Ts,
    /// From the catalogue.
    pub technique_name: Option<String>,
    /// From the catalogue.
    pub sub_technique_name: Option<String>,
    /// From the catalogue.
    pub tactic_name: Option<String>,
}

/// An intrusion set the catalogue records as using a technique.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GroupRef {
    /// `G0016`.
    pub group_id: String,
    /// Its name.
    pub name: String,
    /// Other names.
    pub aliases: Vec<String>,
    /// Its page.
    pub mitre_url: String,
}

/// A technique a rule emits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EmitRow {
    /// Tactic id.
    pub tactic: String,
    /// Parent technique.
    pub technique_id: String,
    /// Sub-technique.
    pub sub_technique_id: Option<String>,
    /// Base confidence.
    pub confidence: f64,
}

/// A rule's definition and live operational state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RuleRow {
    /// `R0001`.
    pub rule_id: String,
    /// Its version.
    pub rule_version: u32,
    /// From the YAML.
    pub name: String,
    /// From the YAML.
    pub description: String,
    /// From the YAML.
    pub attack_release: String,
    /// Source kinds.
    pub applies_to: Vec<String>,
    /// `regex` or `lifter:<name>`.
    pub match_kind: String,
    /// What it emits.
    pub emits: Vec<EmitRow>,
    /// Relative to the rules directory.
    pub source_path: String,
    /// Of the resolved source.
    pub sha256: String,
    /// When the store accepted this definition.
    pub updated_at: Ts,
    /// `enabled`, `disabled` or `clipped`.
    pub state: String,
    /// Ceiling of `clipped`.
    pub confidence_max: Option<f64>,
    /// When the state reverts.
    pub expires_at: Option<Ts>,
    /// Operator note.
    pub reason: Option<String>,
    /// Who set the state.
    pub set_by: Option<String>,
    /// When.
    pub set_at: Option<Ts>,
}

/// A rule's operational state as the rule store committed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RuleState {
    /// The rule.
    pub rule_id: String,
    /// `enabled`, `disabled` or `clipped`.
    pub state: String,
    /// Ceiling of `clipped`.
    pub confidence_max: Option<f64>,
    /// When the state reverts.
    pub expires_at: Option<Ts>,
    /// Operator note.
    pub reason: Option<String>,
    /// The token's subject.
    pub set_by: String,
    /// The commit time at the rule store.
    pub set_at: Ts,
}

/// `POST /ttp/rules/{rule_id}/state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleStateBody {
    /// `enabled`, `disabled` or `clipped`.
    pub state: String,
    /// Required with `clipped`, refused otherwise; within [0, 1].
    #[serde(default)]
    pub confidence_max: Option<f64>,
    /// RFC 3339, in the future.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Required with `disabled` and `clipped`; at most 500 characters.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `/healthz` and `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Status {
    /// `ok`, `ready` or `unready`.
    pub status: String,
    /// `/readyz` only: each check, `ok` or `error: <reason>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<std::collections::BTreeMap<String, String>>,
}

/// A 200 answer with a JSON body (axum's `Json` needs a feature the workspace leaves off;
/// this is the one place bodies are written).
pub(crate) fn json<T: Serialize>(value: &T) -> axum::response::Response {
    use axum::response::IntoResponse;
    match serde_json::to_vec(value) {
        Ok(body) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(e) => crate::error::ApiError::internal("serialising an answer", &e).into_response(),
    }
}
