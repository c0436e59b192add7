//! `smtp.probe.*` payloads (EVENTS.md §4.10, §4.11).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::wire::{Decky, Hex64, Ip};

/// `smtp.probe.pending`: a message the relay-mode decoy accepted, waiting for probe-relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProbePending {
    /// Decoy name (DECNET's field, still required).
    pub decky: Decky,
    /// The same value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decky_id: Option<Decky>,
    /// SMTP client.
    pub attacker_ip: Ip,
    /// Quarantine file name.
    pub stored_as: String,
    /// Envelope sender as given (may be empty).
    pub mail_from: String,
    /// Accepted recipients joined by `,` (DECNET's field, still required).
    pub rcpt_to: String,
    /// The same recipients as an array.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rcpt_list: Vec<String>,
    /// Stored size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    /// SHA-256 of the stored message; probe-relay checks the object against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_sha256: Option<Hex64>,
    /// End of DATA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<DateTime<Utc>>,
}

/// What became of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProbeOutcome {
    /// The upstream accepted it.
    Sent,
    /// The upstream refused it, or every retry failed.
    Failed,
    /// Not sent: over the limit or no upstream.
    Skipped,
    /// Interrupted after the final dot: it may or may not have arrived.
    Unknown,
}

/// The transport security used towards the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamTls {
    /// Upgraded with STARTTLS.
    Starttls,
    /// TLS from the first byte.
    Implicit,
    /// Plain text.
    None,
}

/// `smtp.probe.relayed`: the outcome of one pending probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProbeRelayed {
    /// Decoy.
    pub decky_id: Decky,
    /// SMTP client.
    pub attacker_ip: Ip,
    /// Its anchor.
    pub attacker_uuid: Uuid,
    /// Which message.
    pub stored_as: String,
    /// What became of it.
    pub outcome: ProbeOutcome,
    /// e.g. `limit_reached`, `no_upstream`, `upstream_rejected`, `retries_exhausted`.
    #[schemars(required, transform = crate::wire::nullable)]
    pub reason: Option<String>,
    /// Which of the first N probes this was; null when skipped.
    #[schemars(required, transform = crate::wire::nullable)]
    pub slot: Option<i64>,
    /// N in force.
    pub probe_limit: i64,
    /// SMTP sessions opened for this message.
    pub attempts: i64,
    /// Where it went.
    #[schemars(required, transform = crate::wire::nullable)]
    pub upstream_host: Option<String>,
    /// Port it went to.
    #[schemars(required, transform = crate::wire::nullable)]
    pub upstream_port: Option<i64>,
    /// What was used.
    #[schemars(required, transform = crate::wire::nullable)]
    pub tls: Option<UpstreamTls>,
    /// Last reply code from upstream.
    #[schemars(required, transform = crate::wire::nullable)]
    pub smtp_code: Option<i64>,
    /// Last reply text (at most 256 characters).
    #[schemars(required, transform = crate::wire::nullable, length(max = 256))]
    pub smtp_reply: Option<String>,
    /// Recipients offered.
    pub rcpt_count: i64,
    /// When.
    pub finished_at: DateTime<Utc>,
}
