//! Addresses: CIDR lists, and the client address behind trusted proxies (CANARY.md §4).

use std::net::IpAddr;

/// One `addr/prefix` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parse `198.51.100.0/24`, `2001:db8::/32`, or a bare address (a block of one).
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{text}' is not an address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{text}': the prefix must be 0–{max}"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` lies in the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// An address in its plain form: `::ffff:198.51.100.7` is `198.51.100.7`.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A comma-separated CIDR list.
pub fn parse_list(text: &str) -> Result<Vec<Cidr>, String> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(Cidr::parse)
        .collect()
}

/// The client address: the peer, unless the peer is a trusted proxy, in which case the
/// right-most `X-Forwarded-For` (or `Forwarded: for=`) entry that is not itself trusted.
pub fn client_address(
    peer: IpAddr,
    forwarded_for: Option<&str>,
    forwarded: Option<&str>,
    trusted: &[Cidr],
) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut chain: Vec<IpAddr> = Vec::new();
    if let Some(xff) = forwarded_for {
        chain.extend(xff.split(',').filter_map(|s| parse_hop(s.trim())));
    } else if let Some(fwd) = forwarded {
        chain.extend(
            fwd.split([',', ';'])
                .filter_map(|part| {
                    part.trim()
                        .strip_prefix("for=")
                        .or_else(|| part.trim().strip_prefix("For="))
                })
                .filter_map(|v| parse_hop(v.trim_matches('"'))),
        );
    }
    chain
        .into_iter()
        .rev()
        .map(canonical)
        .find(|ip| !is_trusted(*ip))
        .unwrap_or(peer)
}

/// One hop: an address, maybe bracketed or with a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    let hop = hop
        .strip_prefix('[')
        .map_or(hop, |h| h.split(']').next().unwrap_or(h));
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    hop.rsplit_once(':').and_then(|(a, _)| a.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_contain_what_they_should() {
        let c = Cidr::parse("198.51.100.0/24").unwrap();
        assert!(c.contains("198.51.100.7".parse().unwrap()));
        assert!(c.contains("::ffff:198.51.100.7".parse().unwrap()));
        assert!(!c.contains("198.51.101.7".parse().unwrap()));
        assert!(
            Cidr::parse("2001:db8::/32")
                .unwrap()
                .contains("2001:db8::1".parse().unwrap())
        );
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("203.0.113.9".parse().unwrap())
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err() && Cidr::parse("nope").is_err());
    }

    #[test]
    fn forwarded_headers_count_only_from_a_trusted_peer() {
        let trusted = parse_list("10.0.0.0/8").unwrap();
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "203.0.113.5".parse().unwrap();
        let xff = Some("198.51.100.9, 10.9.9.9");
        assert_eq!(
            client_address(peer, xff, None, &trusted),
            "198.51.100.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_address(stranger, xff, None, &trusted), stranger);
        assert_eq!(client_address(peer, xff, None, &[]), peer);
        assert_eq!(
            client_address(
                peer,
                None,
                Some("for=\"[2001:db8::7]:443\";proto=https"),
                &trusted
            ),
            "2001:db8::7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_address(peer, Some("garbage"), None, &trusted), peer);
    }
}
