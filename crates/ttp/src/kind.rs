//! The closed set of source kinds a rule may apply to.
//!
//! Every evaluation event carries exactly one kind. The set is fixed by the rule spec: a rule
//! naming another kind fails to load, and an input row of another kind is invalid. Each kind
//! has a default match field, used when a regex rule names no `field`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What an evaluation event was built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// One shell command of a session.
    Command,
    /// One HTTP request of a session.
    HttpRequest,
    /// The per-session aggregate of login attempts.
    AuthAttempt,
    /// A whole attacker session.
    Session,
    /// One message received by the SMTP decoy.
    Email,
    /// One canary-token trigger.
    Canary,
    /// The browser fingerprint carried by a canary trigger.
    CanaryFingerprint,
    /// One provider block of a threat-intel verdict.
    Intel,
    /// One attacker of a credential-reuse record.
    Credential,
    /// An identity formed or merged by the clusterer.
    Identity,
    /// A JARM or HASSH probe result.
    Fingerprint,
    /// A leaked IPv6 link-local address.
    Ipv6Leak,
}

impl SourceKind {
    /// Every kind, in declaration order (so `ALL[kind as usize] == kind`).
    pub const ALL: [SourceKind; 12] = [
        SourceKind::Command,
        SourceKind::HttpRequest,
        SourceKind::AuthAttempt,
        SourceKind::Session,
        SourceKind::Email,
        SourceKind::Canary,
        SourceKind::CanaryFingerprint,
        SourceKind::Intel,
        SourceKind::Credential,
        SourceKind::Identity,
        SourceKind::Fingerprint,
        SourceKind::Ipv6Leak,
    ];

    /// The wire name (`http_request`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Command => "command",
            SourceKind::HttpRequest => "http_request",
            SourceKind::AuthAttempt => "auth_attempt",
            SourceKind::Session => "session",
            SourceKind::Email => "email",
            SourceKind::Canary => "canary",
            SourceKind::CanaryFingerprint => "canary_fingerprint",
            SourceKind::Intel => "intel",
            SourceKind::Credential => "credential",
            SourceKind::Identity => "identity",
            SourceKind::Fingerprint => "fingerprint",
            SourceKind::Ipv6Leak => "ipv6_leak",
        }
    }

    /// The field a regex rule matches when it names none; `identity` has no default.
    pub fn default_field(self) -> Option<&'static str> {
        Some(match self {
            SourceKind::Command => "command_text",
            SourceKind::HttpRequest => "raw_url",
            SourceKind::AuthAttempt => "username",
            SourceKind::Session => "service",
            SourceKind::Email => "subject",
            SourceKind::Canary => "token_kind",
            SourceKind::CanaryFingerprint => "ua_signature",
            SourceKind::Intel => "aggregate_verdict",
            SourceKind::Credential => "secret_kind",
            SourceKind::Identity => return None,
            SourceKind::Fingerprint => "value",
            SourceKind::Ipv6Leak => "addr",
        })
    }

    /// Whether `field` is one the core can hand to a regex for this kind: a payload string
    /// field, or one derived before evaluation (HTTP).
    pub fn has_string_field(self, field: &str) -> bool {
        string_fields(self).contains(&field)
    }
}

/// String fields a regex rule may match, per kind (RULES.md §1).
fn string_fields(kind: SourceKind) -> &'static [&'static str] {
    match kind {
        SourceKind::Command => &["command_text", "service"],
        SourceKind::HttpRequest => &[
            "method",
            "raw_url",
            "user_agent",
            "url_decoded",
            "request_path",
            "request_line",
            "header_text",
        ],
        SourceKind::AuthAttempt => &["service", "username", "result"],
        SourceKind::Session => &[
            "service",
            "target_host",
            "container_image",
            "poisoned_query",
            "victim_host",
            "tftp_filename",
            "source_host",
        ],
        SourceKind::Email => &[
            "subject",
            "from_domain",
            "mail_from_domain",
            "return_path_domain",
            "x_mailer",
            "body_text",
            "body_sha256",
            "body_simhash",
        ],
        SourceKind::Canary => &["token_id", "token_kind", "trigger_id", "channel", "src_ip"],
        SourceKind::CanaryFingerprint => &["automation_tool", "ua_signature"],
        SourceKind::Intel => &[
            "provider",
            "intel_id",
            "aggregate_verdict",
            "greynoise_classification",
            "greynoise_name",
            "feodo_malware_family",
        ],
        SourceKind::Credential => &["credential_hash", "secret_kind"],
        SourceKind::Identity => &["shared_password_hash"],
        SourceKind::Fingerprint => &["fingerprint_type", "value"],
        SourceKind::Ipv6Leak => &[
            "addr",
            "mac_oui",
            "iid_kind",
            "vector",
            "on_iface",
            "attacker_v4",
            "attacker_ip",
        ],
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a name outside the closed set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown source kind {0:?}")]
pub struct UnknownKind(pub String);

impl FromStr for SourceKind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SourceKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in SourceKind::ALL {
            assert_eq!(kind.as_str().parse::<SourceKind>(), Ok(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
    }

    #[test]
    fn all_is_in_declaration_order() {
        // The engine indexes per-kind tables by `kind as usize`.
        for (i, kind) in SourceKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i);
        }
    }

    #[test]
    fn unknown_kind_is_named() {
        let err = "shell".parse::<SourceKind>().unwrap_err();
        assert_eq!(err.to_string(), "unknown source kind \"shell\"");
    }

    #[test]
    fn default_fields_follow_the_spec() {
        assert_eq!(SourceKind::Command.default_field(), Some("command_text"));
        assert_eq!(SourceKind::HttpRequest.default_field(), Some("raw_url"));
        assert_eq!(SourceKind::Identity.default_field(), None);
    }
}
