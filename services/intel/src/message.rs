//! What an `attacker.observed` delivery says (EVENTS.md §4.2): the attacker and its address.
//! Only `attacker_ip` is required; an unreadable optional field is treated as absent, as
//! every consumer reads (EVENTS.md §1.3). A body that cannot be read is poison.

use decnet_bus::Poison;
use decnet_ttp::anchor::{attacker_uuid_for_ip, canonical_ip};
use serde_json::Value;
use uuid::Uuid;

/// Bodies above this are poison (`too_large`, EVENTS.md §1.3).
const MAX_BODY: usize = 1 << 20;

/// The attacker a delivery names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observed {
    /// The producer's anchor, else the UUIDv5 of the address (EVENTS.md §5.1).
    pub(crate) attacker_uuid: Uuid,
    /// The address, canonical.
    pub(crate) ip: String,
}

fn poison(code: &'static str, detail: impl Into<String>) -> Poison {
    Poison {
        code,
        detail: detail.into(),
    }
}

/// Read a delivery; `schema_version` is its `decnet-schema-version` header.
pub(crate) fn decode(
    subject: &str,
    body: &[u8],
    schema_version: Option<&str>,
) -> Result<Observed, Poison> {
    if let Some(v) = schema_version {
        let known = v
            .trim()
            .parse::<u32>()
            .is_ok_and(|v| v <= decnet_proto::SCHEMA_VERSION);
        if !known {
            return Err(poison(
                "unsupported_schema_version",
                format!("decnet-schema-version {v:?}"),
            ));
        }
    }
    if body.len() > MAX_BODY {
        return Err(poison("too_large", format!("{} bytes", body.len())));
    }
    let text = std::str::from_utf8(body).map_err(|_| poison("decode_error", "not UTF-8"))?;
    let v: Value =
        serde_json::from_str(text).map_err(|e| poison("decode_error", format!("not JSON: {e}")))?;
    if !v.is_object() {
        return Err(poison("decode_error", "not a JSON object"));
    }
    let v = decnet_ttp::fanout::unwrap_envelope(subject, &v);
    let ip = match v.get("attacker_ip") {
        Some(Value::String(s)) => s,
        None | Some(Value::Null) => return Err(poison("schema_error", "attacker_ip: required")),
        Some(_) => return Err(poison("schema_error", "attacker_ip: expected string")),
    };
    let ip =
        canonical_ip(ip).ok_or_else(|| poison("schema_error", "attacker_ip: not an address"))?;
    let given = v
        .get("attacker_uuid")
        .and_then(Value::as_str)
        .and_then(|u| Uuid::parse_str(u).ok());
    let Some(attacker_uuid) = given.or_else(|| attacker_uuid_for_ip(&ip)) else {
        return Err(poison("no_anchor", "attacker_ip: no anchor"));
    };
    Ok(Observed { attacker_uuid, ip })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBJECT: &str = "attacker.observed";

    #[test]
    fn the_anchor_is_the_producers_or_derived_from_the_address() {
        let o = decode(
            SUBJECT,
            br#"{"attacker_ip":"203.0.113.7","service":"ssh"}"#,
            None,
        )
        .unwrap();
        assert_eq!(o.ip, "203.0.113.7");
        assert_eq!(
            o.attacker_uuid.to_string(),
            "6dd21fc3-121b-5123-aaa0-18e21dfe5b91"
        );
        let given = r#"{"attacker_ip":"::ffff:203.0.113.7",
            "attacker_uuid":"00000000-0000-0000-0000-000000000001","first_seen":"garbage"}"#;
        let o = decode(SUBJECT, given.as_bytes(), Some("1")).unwrap();
        assert_eq!(
            (o.ip.as_str(), o.attacker_uuid),
            ("203.0.113.7", Uuid::from_u128(1))
        );
        let wrapped =
            r#"{"v":1,"topic":"attacker.observed","payload":{"attacker_ip":"2001:DB8::1"}}"#;
        assert_eq!(
            decode(SUBJECT, wrapped.as_bytes(), None).unwrap().ip,
            "2001:db8::1"
        );
    }

    #[test]
    fn unreadable_bodies_are_poison_with_a_reason() {
        let reason = |body: &[u8], v: Option<&str>| {
            let p = decode(SUBJECT, body, v).unwrap_err();
            format!("{}: {}", p.code, p.detail)
        };
        assert_eq!(reason(b"\xff", None), "decode_error: not UTF-8");
        assert_eq!(reason(b"[1]", None), "decode_error: not a JSON object");
        assert_eq!(reason(b"{}", None), "schema_error: attacker_ip: required");
        assert_eq!(
            reason(br#"{"attacker_ip":7}"#, None),
            "schema_error: attacker_ip: expected string"
        );
        assert_eq!(
            reason(br#"{"attacker_ip":"Unknown"}"#, None),
            "schema_error: attacker_ip: not an address"
        );
        assert_eq!(
            reason(br#"{"attacker_ip":"203.0.113.7"}"#, Some("9")),
            "unsupported_schema_version: decnet-schema-version \"9\""
        );
        assert!(reason(b"{", None).starts_with("decode_error: not JSON"));
    }
}
