//! Anchors: which attacker (or identity) a tag belongs to.
//!
//! An event that names an attacker only by address gets a deterministic attacker uuid, the
//! UUIDv5 of the canonical address under one fixed namespace, so every service and every
//! replay derives the same anchor and no event is dropped for want of one.

use std::net::IpAddr;
use std::sync::LazyLock;

use uuid::Uuid;

/// `UUIDv5(NAMESPACE_URL, "decnet:attacker:v1")`: the namespace of IP-derived attacker uuids.
pub static ATTACKER_NAMESPACE: LazyLock<Uuid> =
    LazyLock::new(|| Uuid::new_v5(&Uuid::NAMESPACE_URL, b"decnet:attacker:v1"));

/// The canonical text of an address: dotted quad, RFC 5952 IPv6, IPv4-mapped IPv6 as IPv4,
/// any zone suffix (`%eth0`) removed. `None` when the text is not an address.
pub fn canonical_ip(text: &str) -> Option<String> {
    let bare = text.trim().split('%').next().unwrap_or_default();
    let bare = bare
        .strip_prefix('[')
        .and_then(|b| b.strip_suffix(']'))
        .unwrap_or(bare);
    let ip: IpAddr = bare.parse().ok()?;
    Some(match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    })
}

/// The attacker uuid derived from an address, or `None` when the text is not one.
pub fn attacker_uuid_for_ip(text: &str) -> Option<Uuid> {
    canonical_ip(text).map(|ip| Uuid::new_v5(&ATTACKER_NAMESPACE, ip.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_matches_the_spec() {
        assert_eq!(
            ATTACKER_NAMESPACE.to_string(),
            "514143f9-5948-5482-aa1a-5b7c8cc4f628"
        );
    }

    #[test]
    fn golden_attacker_uuids() {
        let cases = [
            ("203.0.113.7", "6dd21fc3-121b-5123-aaa0-18e21dfe5b91"),
            ("2001:db8::1", "8b93dc54-50f0-5b96-b580-413ec4f58e5d"),
            ("::ffff:203.0.113.7", "6dd21fc3-121b-5123-aaa0-18e21dfe5b91"),
            (
                "2001:DB8:0:0:0:0:0:1",
                "8b93dc54-50f0-5b96-b580-413ec4f58e5d",
            ),
            ("2001:db8::1%eth0", "8b93dc54-50f0-5b96-b580-413ec4f58e5d"),
        ];
        for (ip, want) in cases {
            assert_eq!(attacker_uuid_for_ip(ip).unwrap().to_string(), want, "{ip}");
        }
    }

    #[test]
    fn non_addresses_have_no_anchor() {
        assert_eq!(attacker_uuid_for_ip("Unknown"), None);
        assert_eq!(attacker_uuid_for_ip(""), None);
    }
}
