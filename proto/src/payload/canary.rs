//! `canary.<token>.*` payloads (EVENTS.md §4.6, §4.7).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::wire::{Decky, Hex64, Ip};

/// How a hit reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The HTTP beacon.
    Http,
    /// The authoritative DNS channel.
    Dns,
    /// An operator integration watching a passive token.
    External,
}

/// What kind of request the hit was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HitKind {
    /// A plain fetch.
    Beacon,
    /// The `o=1` open beacon.
    Open,
    /// A fingerprint submission.
    Fingerprint,
}

/// `canary.<token>.triggered`: one hit on a canary token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CanaryTriggered {
    /// Token (same as the subject token).
    pub token_id: Uuid,
    /// Trigger row.
    pub trigger_id: Uuid,
    /// Decoy holding the artifact.
    pub decky_name: Decky,
    /// URL path, no query.
    #[schemars(required, transform = crate::wire::nullable)]
    pub request_path: Option<String>,
    /// Lower-cased query name for DNS hits.
    #[schemars(required, transform = crate::wire::nullable)]
    pub dns_qname: Option<String>,
    /// HTTP: client address after trusted-proxy resolution; DNS: the resolver.
    pub src_ip: Ip,
    /// `User-Agent`.
    #[schemars(required, transform = crate::wire::nullable)]
    pub user_agent: Option<String>,
    /// Time of the hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<DateTime<Utc>>,
    /// What the artifact is: `aws_key`, `honeydoc`, `env_file`, `git_config`, `ssh_key`,
    /// `db_dump`, `web_bug`; an open set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_kind: Option<String>,
    /// Generator that made the artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<String>,
    /// Absent means `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    /// `GET` or `HEAD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Plain fetch, open beacon or fingerprint submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hit_kind: Option<HitKind>,
    /// `none`, `valid`, `invalid_nonce`, `invalid_shape`, `invalid_mint`, `rate_limited`,
    /// `decode_error`, `oversize`, `chunk_timeout`, `chunk_inconsistent`, `chunk_evicted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint_state: Option<String>,
    /// The hit looks like a link-preview or mail-security fetch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspected_scanner: Option<bool>,
    /// e.g. `ua:Slackbot`, `method:HEAD`, `header:sec-purpose`, `cidr:<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scanner_reason: Option<String>,
    /// Signals derived from a fingerprint that passed every validation layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<FingerprintSignals>,
}

/// How a WebRTC address was compared with the source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MismatchBasis {
    /// By GeoIP country.
    Country,
    /// By address, when no GeoIP database is set.
    Address,
}

/// The `fingerprint` block: derived signals only; the raw fingerprint never travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FingerprintSignals {
    /// The browser reported `navigator.webdriver === true`.
    pub navigator_webdriver: bool,
    /// Tool named by the automation catalogue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automation_tool: Option<String>,
    /// A public WebRTC address disagrees with the source address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webrtc_geo_mismatch: Option<bool>,
    /// Compared by country or by address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webrtc_mismatch_basis: Option<MismatchBasis>,
    /// Hours between the browser's UTC offset and the source country's nearest offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz_mismatch_zones: Option<i64>,
    /// No browser language fits the source country.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang_country_mismatch: Option<bool>,
    /// `navigator.platform` contradicts the User-Agent's operating system.
    pub platform_ua_inconsistent: bool,
    /// The WebGL renderer belongs to another OS family than the User-Agent.
    pub ua_webgl_mismatch: bool,
    /// `<browser>/<major> <os>`, or `unknown`.
    pub ua_signature: String,
    /// The fingerprint's composite hash (an identity signal, never a tag).
    pub fingerprint_id: Hex64,
    /// Browser time zone (at most 128 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub browser_timezone: Option<String>,
    /// Browser language (at most 128 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub browser_language: Option<String>,
    /// `navigator.platform` (at most 128 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub navigator_platform: Option<String>,
    /// WebGL renderer (at most 128 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub webgl_renderer: Option<String>,
    /// ISO 3166 alpha-2 of the source address, when GeoIP is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_country: Option<String>,
    /// Distinct addresses WebRTC exposed (the addresses are not sent).
    pub webrtc_address_count: i64,
}

/// Why a token was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    /// Automatically, after a valid fingerprint.
    FingerprintCollected,
    /// By an operator through the API.
    Operator,
}

/// `canary.<token>.revoked`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CanaryRevoked {
    /// The token.
    pub token_id: Uuid,
    /// Automatic or operator revoke.
    pub reason: RevokeReason,
    /// The hit that caused it; required for `fingerprint_collected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_id: Option<Uuid>,
    /// Decoy holding the artifact.
    pub decky_name: Decky,
    /// Where the artifact was planted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_path: Option<String>,
    /// JWT subject for `operator`, `system` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
    /// When.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}
