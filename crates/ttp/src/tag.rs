//! Tags: one ATT&CK technique attributed to one attacker activity by one rule.
//!
//! A tag's id is a UUIDv5 of what the tag is *about* — source kind, source id, rule, rule
//! version and technique — and nothing else, so replaying an event maps to the same row and
//! inserts ignore duplicates. The key format is shared with the Python implementation and
//! must never gain a field.

use std::sync::{Arc, LazyLock};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use sha1::{Digest, Sha1};
use uuid::Uuid;

use crate::evidence::Evidence;
use crate::kind::SourceKind;

/// Tags below this confidence are not written (`below_floor`); exactly the floor is written.
pub const CONFIDENCE_FLOOR: f64 = 0.3;

/// `UUIDv5(NAMESPACE_URL, "decnet:ttp_tag:v1")`.
pub static TAG_NAMESPACE: LazyLock<Uuid> =
    LazyLock::new(|| Uuid::new_v5(&Uuid::NAMESPACE_URL, b"decnet:ttp_tag:v1"));

/// The deterministic id of a tag.
pub fn tag_id(
    kind: SourceKind,
    source_id: &str,
    rule_id: &str,
    rule_version: u32,
    technique_id: &str,
    sub_technique_id: Option<&str>,
) -> Uuid {
    // Built by hand rather than with `format!`: this runs once per tag on the hot path.
    let sub = sub_technique_id.unwrap_or_default();
    let mut digits = [0u8; 10];
    let version = decimal(rule_version, &mut digits);
    let parts = [
        kind.as_str(),
        source_id,
        rule_id,
        version,
        technique_id,
        sub,
    ];
    // Keys of ordinary ids fit on the stack; a long source id spills to the heap.
    let mut stack = [0u8; 160];
    let mut heap = Vec::new();
    let len = parts.iter().map(|p| p.len() + 1).sum::<usize>() - 1;
    let key: &mut [u8] = if len <= stack.len() {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap
    };
    let mut at = 0;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key[at] = b'|';
            at += 1;
        }
        key[at..at + part.len()].copy_from_slice(part.as_bytes());
        at += part.len();
    }
    uuid_v5(&TAG_NAMESPACE, key)
}

/// RFC 9562 UUIDv5, with a SHA-1 that uses the CPU's SHA extensions where it has them: a
/// tag id is computed for every tag, and the portable SHA-1 of the `uuid` crate was a tenth
/// of the whole evaluation (engine bench, perf).
pub fn uuid_v5(namespace: &Uuid, name: &[u8]) -> Uuid {
    let mut hasher = Sha1::new();
    hasher.update(namespace.as_bytes());
    hasher.update(name);
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes).into_uuid()
}

/// `n` in decimal, written into `buf`.
fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &str {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[at..]).expect("ASCII digits")
}

/// Round to four decimals, half away from zero.
pub fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// One tag, as stored and published. The strings that come from the rule are shared with
/// the compiled index rather than copied per tag.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tag {
    /// Deterministic id ([`tag_id`]).
    pub uuid: Uuid,
    /// Kind of the evaluation event.
    pub source_kind: SourceKind,
    /// Id of the evaluation event.
    pub source_id: Arc<str>,
    /// The attacker; null for identity tags.
    pub attacker_uuid: Option<Uuid>,
    /// The identity, when known.
    pub identity_uuid: Option<Uuid>,
    /// The sensor session.
    pub session_id: Option<Arc<str>>,
    /// The decoy.
    pub decky_id: Option<Arc<str>>,
    /// `TA0007`.
    pub tactic: Arc<str>,
    /// Parent technique.
    pub technique_id: Arc<str>,
    /// Sub-technique, when the emit names one.
    pub sub_technique_id: Option<Arc<str>>,
    /// Final confidence in [0.3, 1].
    pub confidence: f64,
    /// The rule that fired.
    pub rule_id: Arc<str>,
    /// Its version.
    pub rule_version: u32,
    /// Why, in the closed key set of the source kind; shared by the tags of one firing.
    pub evidence: Arc<Evidence>,
    /// The ATT&CK release of the pack.
    pub attack_release: Arc<str>,
    /// The technique's (or sub-technique's) page.
    pub mitre_url: Arc<str>,
    /// Evaluation time, microsecond precision.
    #[serde(serialize_with = "rfc3339_micros")]
    pub created_at: DateTime<Utc>,
}

fn rfc3339_micros<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_matches_the_spec() {
        assert_eq!(
            TAG_NAMESPACE.to_string(),
            "1ca31f08-5522-5aae-8371-fe81f0e39de3"
        );
    }

    #[test]
    fn golden_tag_ids() {
        let plain = tag_id(SourceKind::Command, "cmd_42", "R0014", 2, "T1083", None);
        assert_eq!(plain.to_string(), "9aa491e5-f03b-5d8f-9eb5-161becedcdd6");
        let sub = tag_id(
            SourceKind::Command,
            "cmd_42",
            "R0015",
            1,
            "T1548",
            Some("T1548.001"),
        );
        assert_eq!(sub.to_string(), "4fd57b14-c135-544c-97d9-4fabc1051584");
    }

    #[test]
    fn the_fast_v5_is_the_standard_v5() {
        for name in ["", "command|cmd_42|R0014|2|T1083|", &"x".repeat(300)] {
            assert_eq!(
                uuid_v5(&TAG_NAMESPACE, name.as_bytes()),
                Uuid::new_v5(&TAG_NAMESPACE, name.as_bytes())
            );
        }
    }

    #[test]
    fn versions_are_plain_decimal() {
        let mut buf = [0u8; 10];
        assert_eq!(decimal(0, &mut buf), "0");
        assert_eq!(decimal(1, &mut buf), "1");
        assert_eq!(decimal(u32::MAX, &mut buf), "4294967295");
    }

    #[test]
    fn rounding_is_half_away_from_zero_at_four_places() {
        assert_eq!(round4(0.7 * 0.95), 0.665);
        assert_eq!(round4(0.95 * 0.7), 0.665);
        assert_eq!(round4(0.3), 0.3);
    }
}
