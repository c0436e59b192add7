//! `attacker.*` payloads (EVENTS.md §4.1–§4.4).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::wire::{Decky, Hex64, Ip};

/// `attacker.session.ended`: one sensor session, with what the attacker did in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionEnded {
    /// The sensor's id for the session (at most 128 characters); null when it has none.
    #[schemars(required, transform = crate::wire::nullable, length(max = 128))]
    pub session_id: Option<String>,
    /// Anchor supplied by the producer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attacker_uuid: Option<Uuid>,
    /// Source address; required unless `attacker_uuid` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attacker_ip: Option<Ip>,
    /// Decoy that saw the session.
    pub decky_id: Decky,
    /// `ssh`, `telnet`, `http`, `smtp`, … (at most 32 characters).
    #[schemars(length(max = 32))]
    pub service: String,
    /// First packet of the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// End of the session.
    pub ended_at: DateTime<Utc>,
    /// Seconds.
    #[schemars(range(min = 0.0))]
    pub duration_s: f64,
    /// Shell commands in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<Command>,
    /// Login attempts in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth_attempts: Vec<AuthAttempt>,
    /// HTTP requests in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_requests: Vec<HttpRequest>,
    /// DECNET's transcript pointer; ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_path: Option<String>,
    /// Behavioural signals, each sent only by sensors that observe it.
    #[serde(flatten)]
    pub behaviour: SessionBehaviour,
}

/// The behavioural fields of a session, read by the `session` rules (RULES.md §7.5).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionBehaviour {
    /// Typical seconds between the session's repeated outbound connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub beacon_interval_s: Option<f64>,
    /// Spread of those intervals, in percent of the interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub beacon_jitter_pct: Option<f64>,
    /// Bytes the attacker sent out through the decoy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
    /// Outbound requests in the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_count: Option<u64>,
    /// Host those requests went to (at most 255 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub target_host: Option<String>,
    /// Database rows returned to the attacker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_read: Option<u64>,
    /// Database bytes returned to the attacker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_read: Option<u64>,
    /// Paths of files the attacker read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files_read: Vec<String>,
    /// Container-escape markers, e.g. `privileged:true`, `bind:/var/run/docker.sock`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub docker_signals: Vec<String>,
    /// Image of a container the attacker started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_image: Option<String>,
    /// The attacker answered LLMNR/NBT-NS queries it did not own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llmnr_poisoned: Option<bool>,
    /// Such poisoned answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llmnr_poison_count: Option<u64>,
    /// A name the attacker answered for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poisoned_query: Option<String>,
    /// Host that received the poisoned answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub victim_host: Option<String>,
    /// File requested over TFTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tftp_filename: Option<String>,
    /// Device the TFTP file was fetched from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_host: Option<String>,
}

/// One shell command of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Command {
    /// Stable id (at most 160 characters); DECNET sends `<session_id>#<i>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 160))]
    pub id: Option<String>,
    /// The command line as typed, at most 16 KiB (`text` is accepted as an alias).
    #[serde(alias = "text")]
    #[schemars(length(max = 16384))]
    pub command_text: String,
    /// When it ran.
    pub ts: DateTime<Utc>,
    /// Repeats the session's decoy (DECNET compatibility).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decky: Option<String>,
    /// Repeats the session's service (DECNET compatibility).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Shell user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Shell user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Client address seen by the shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pwd: Option<String>,
}

/// What the decoy answered to a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthResult {
    /// Accepted.
    Success,
    /// Refused (consumers read any other value as this).
    Failure,
}

/// One login attempt of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuthAttempt {
    /// As submitted (at most 256 characters).
    #[schemars(length(max = 256))]
    pub username: String,
    /// As submitted, may be empty: a tagging input only, never logged, never evidence.
    #[schemars(length(max = 256))]
    pub password: String,
    /// What the decoy answered.
    pub result: AuthResult,
    /// When.
    pub ts: DateTime<Utc>,
    /// Defaults to the session's `service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `password`, `keyboard-interactive`, `publickey`, `plain`, `login`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// One HTTP request of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HttpRequest {
    /// Stable id if the sensor has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Request method (at most 16 characters).
    #[schemars(length(max = 16))]
    pub method: String,
    /// Request target exactly as received, not percent-decoded (at most 8 KiB).
    #[schemars(length(max = 8192))]
    pub raw_url: String,
    /// `User-Agent` header (at most 1 KiB); null when absent.
    #[schemars(required, transform = crate::wire::nullable, length(max = 1024))]
    pub user_agent: Option<String>,
    /// Lower-cased header names to values, at most 64 entries and 8 KiB in all.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// When.
    pub ts: DateTime<Utc>,
    /// Status the decoy returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i64>,
}

/// `attacker.observed`: an attacker seen for the first time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Observed {
    /// Address first seen.
    pub attacker_ip: Ip,
    /// Set when the producer knows it (the tagger always sets it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attacker_uuid: Option<Uuid>,
    /// Decoy of the first sighting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decky: Option<Decky>,
    /// Service of the first sighting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// What caught it: a sensor event name, or the subject that made the tagger create the row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Time of the first sighting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<DateTime<Utc>>,
}

/// The strongest verdict across providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Known bad.
    Malicious,
    /// Some bad signal.
    Suspicious,
    /// Known good.
    Benign,
    /// Nothing known.
    Unknown,
}

/// Per-provider normalised scores in [0, 1].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProviderScores {
    /// AbuseIPDB.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub abuseipdb: Option<f64>,
    /// GreyNoise.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub greynoise: Option<f64>,
    /// Feodo Tracker.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub feodo: Option<f64>,
    /// ThreatFox.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub threatfox: Option<f64>,
}

/// `attacker.intel.enriched`: the verdicts the intel service committed for one attacker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IntelEnriched {
    /// Anchor.
    pub attacker_uuid: Uuid,
    /// Address looked up.
    pub attacker_ip: Ip,
    /// The `attacker_intel` row id; the tagger uses `attacker_uuid` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intel_id: Option<Uuid>,
    /// Strongest verdict across providers.
    #[schemars(required, transform = crate::wire::nullable)]
    pub aggregate_verdict: Option<Verdict>,
    /// Providers configured for this lookup.
    pub providers: Vec<String>,
    /// AbuseIPDB confidence of abuse, 0–100.
    #[schemars(required, transform = crate::wire::nullable, range(min = 0, max = 100))]
    pub abuseipdb_score: Option<i64>,
    /// Sorted union of report category ids.
    pub abuseipdb_categories: Vec<i64>,
    /// Lower-cased GreyNoise classification.
    #[schemars(required, transform = crate::wire::nullable)]
    pub greynoise_classification: Option<String>,
    /// Actor name.
    #[schemars(required, transform = crate::wire::nullable)]
    pub greynoise_name: Option<String>,
    /// Tag names (empty on the community API).
    pub greynoise_tags: Vec<String>,
    /// GreyNoise saw the address scanning the internet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greynoise_noise: Option<bool>,
    /// The address belongs to a common business service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greynoise_riot: Option<bool>,
    /// On the Feodo Tracker botnet C2 blocklist.
    #[schemars(required, transform = crate::wire::nullable)]
    pub feodo_listed: Option<bool>,
    /// The list's `malware` value.
    #[schemars(required, transform = crate::wire::nullable)]
    pub feodo_malware_family: Option<String>,
    /// ThreatFox has IOCs for the address.
    #[schemars(required, transform = crate::wire::nullable)]
    pub threatfox_listed: Option<bool>,
    /// Sorted distinct `threat_type`.
    pub threatfox_threat_types: Vec<String>,
    /// Sorted distinct `ioc_type`.
    pub threatfox_ioc_types: Vec<String>,
    /// Sorted distinct family names.
    pub threatfox_malware_families: Vec<String>,
    /// Provider to score in [0, 1] or null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores: Option<ProviderScores>,
    /// Max of the non-null `scores`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub aggregate_score: Option<f64>,
    /// Providers that answered in this lookup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers_ok: Vec<String>,
    /// Providers that failed in this lookup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers_failed: Vec<String>,
    /// Providers skipped in this lookup (quota, not configured).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers_skipped: Vec<String>,
    /// Digest of the whole verdict (16 hex), used for the msg id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict_digest: Option<String>,
    /// Cache time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enriched_at: Option<DateTime<Utc>>,
    /// End of validity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// `attacker.fingerprinted`: what an active prober or sniffer learnt about an attacker's
/// host. Which fields are present depends on `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Fingerprinted {
    /// Probed address.
    pub attacker_ip: Ip,
    /// Anchor if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attacker_uuid: Option<Uuid>,
    /// `jarm`, `hassh`, `hassh_server`, `tcpfp`, `tls_certificate` (`tls_cert` accepted),
    /// `icmp_error`, `icmp6_error`, `ipv6_leak`.
    pub kind: String,
    /// Probed port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// When.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<DateTime<Utc>>,
    /// 62-character JARM (kind `jarm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jarm_hash: Option<String>,
    /// HASSH of the probed SSH server, 32 hex (kinds `hassh`, `hassh_server`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hassh_server: Option<String>,
    /// The SSH server's banner (kinds `hassh`, `hassh_server`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_banner: Option<String>,
    /// TCP stack fingerprint (kind `tcpfp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcpfp_hash: Option<String>,
    /// Initial TTL (kind `tcpfp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
    /// Maximum segment size (kind `tcpfp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mss: Option<i64>,
    /// Certificate subject CN (kind `tls_certificate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_cn: Option<String>,
    /// Certificate SHA-256 (kind `tls_certificate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_sha256: Option<Hex64>,
    /// The certificate signs itself (kind `tls_certificate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_signed: Option<bool>,
    /// Error-leak matrix (kinds `icmp_error`, `icmp6_error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_matrix: Option<String>,
    /// Error-leak fingerprint hash (kinds `icmp_error`, `icmp6_error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_fp_hash: Option<String>,
    /// Error details (kinds `icmp_error`, `icmp6_error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<serde_json::Map<String, serde_json::Value>>,
    /// Leaked link-local address (kind `ipv6_leak`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// Interface-id kind (kind `ipv6_leak`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iid_kind: Option<String>,
    /// OUI of the leaked MAC (kind `ipv6_leak`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_oui: Option<String>,
    /// How it leaked (kind `ipv6_leak`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<String>,
    /// Interface it leaked on (kind `ipv6_leak`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_iface: Option<String>,
}
