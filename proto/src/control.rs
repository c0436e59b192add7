//! Control subjects (EVENTS.md §7): request/reply through the NATS service API, never stored.
//!
//! The owner of the state validates every request itself and answers either the committed
//! state or an error carried in the `Nats-Service-Error` (message) and
//! `Nats-Service-Error-Code` (an HTTP status) headers, so the CLI and the REST API pass the
//! owner's words on instead of keeping a second copy of its rules.

use serde::{Deserialize, Serialize};

/// The rule store's name in `$SRV.PING|INFO|STATS`.
pub const RULESTORE_SERVICE: &str = "decnet-rulestore";
/// Set a rule's operational state.
pub const RULESTORE_STATE_SET: &str = "decnet.rulestore.state.set";
/// Return a rule to `enabled` with no ceiling.
pub const RULESTORE_STATE_CLEAR: &str = "decnet.rulestore.state.clear";
/// The queue group every control endpoint serves in, so replicas share requests.
pub const QUEUE_GROUP: &str = "q";
/// Header of an error reply: the message.
pub const ERROR_HEADER: &str = "Nats-Service-Error";
/// Header of an error reply: an HTTP status (404, 409, 422, 503).
pub const ERROR_CODE_HEADER: &str = "Nats-Service-Error-Code";
/// How long a caller waits for a reply before it calls the owner unavailable.
pub const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `decnet.rulestore.state.set`.
///
/// `state` and `expires_at` are text so the store, not the decoder, words the error for a bad
/// value (API.md §7 gives the exact messages).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSetRequest {
    /// `R` + four digits.
    pub rule_id: String,
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
    /// Who asks: the API's JWT `sub`, or the CLI's `--as NAME`.
    pub set_by: String,
}

/// `decnet.rulestore.state.clear`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateClearRequest {
    /// `R` + four digits.
    pub rule_id: String,
    /// Who asks.
    pub set_by: String,
}
