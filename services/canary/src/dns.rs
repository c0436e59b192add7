//! The DNS channel (CANARY.md §12): an authoritative UDP server for `<slug>.<zone>`, for the
//! artifacts that call back only by resolving a name (an SSH key's host, a database dump's
//! replication source).
//!
//! A query whose name, lower-cased, is one non-empty label followed by the zone is answered
//! NOERROR with the AA flag (and, for type A, `192.0.2.1` with TTL 60) whether or not the label
//! is a live slug, so the answer tells a prober nothing; a live DNS token's hit is recorded.
//! Other names get NXDOMAIN; a malformed packet gets no answer. Matching ignores case, since
//! resolvers may randomise it, and the question is echoed exactly as asked.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::beacon::Beacon;

/// The address every matching type-A query gets (TEST-NET-1).
pub const ANSWER_A: [u8; 4] = [192, 0, 2, 1];
/// The answer's TTL, seconds.
pub const ANSWER_TTL: u32 = 60;
/// The most compression pointers followed in one name.
const MAX_HOPS: usize = 10;

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
const NOERROR: u8 = 0;
const NXDOMAIN: u8 = 3;

/// One question of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The labels as asked, case kept.
    pub labels: Vec<Vec<u8>>,
    /// QTYPE.
    pub qtype: u16,
    /// QCLASS.
    pub qclass: u16,
}

impl Question {
    /// The name, lower-cased, without the trailing dot.
    pub fn name(&self) -> String {
        self.labels
            .iter()
            .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// A parsed query: its id, flags and first question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Transaction id.
    pub id: u16,
    /// Recursion desired, echoed.
    pub rd: bool,
    /// The first question.
    pub question: Question,
}

/// Parse a query; `None` for anything malformed (including responses and non-QUERY opcodes).
pub fn parse(packet: &[u8]) -> Option<Query> {
    if packet.len() < 12 {
        return None;
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    let flags = u16::from_be_bytes([packet[2], packet[3]]);
    let is_response = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    let qdcount = u16::from_be_bytes([packet[4], packet[5]]);
    if is_response || opcode != 0 || qdcount == 0 {
        return None;
    }
    let (labels, end) = read_name(packet, 12)?;
    let tail = packet.get(end..end + 4)?;
    Some(Query {
        id,
        rd: flags & 0x0100 != 0,
        question: Question {
            labels,
            qtype: u16::from_be_bytes([tail[0], tail[1]]),
            qclass: u16::from_be_bytes([tail[2], tail[3]]),
        },
    })
}

/// Read a (possibly compressed) name at `at`; returns its labels and where the name ends in
/// the packet (after the first pointer, or the root label).
fn read_name(packet: &[u8], mut at: usize) -> Option<(Vec<Vec<u8>>, usize)> {
    let mut labels = Vec::new();
    let mut end = None;
    let mut hops = 0;
    let mut total = 0;
    loop {
        let len = *packet.get(at)? as usize;
        match len {
            0 => {
                return Some((labels, end.unwrap_or(at + 1)));
            }
            l if l & 0xc0 == 0xc0 => {
                hops += 1;
                if hops > MAX_HOPS {
                    return None;
                }
                let low = *packet.get(at + 1)? as usize;
                end.get_or_insert(at + 2);
                at = ((l & 0x3f) << 8) | low;
            }
            l if l & 0xc0 != 0 => return None,
            l => {
                let label = packet.get(at + 1..at + 1 + l)?;
                total += l + 1;
                if total > 255 {
                    return None;
                }
                labels.push(label.to_vec());
                at += 1 + l;
            }
        }
    }
}

/// The answer to `query` for a zone: NOERROR (with an A record for type A) for one label under
/// the zone, NXDOMAIN otherwise.
pub fn answer(query: &Query, zone: &str) -> (Vec<u8>, Option<String>) {
    let name = query.question.name();
    let suffix = format!(".{}", zone.trim_end_matches('.').to_ascii_lowercase());
    let label = name
        .strip_suffix(&suffix)
        .filter(|l| !l.is_empty() && !l.contains('.'))
        .map(str::to_owned);
    let rcode = if label.is_some() { NOERROR } else { NXDOMAIN };
    let with_a =
        label.is_some() && query.question.qtype == TYPE_A && query.question.qclass == CLASS_IN;
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&query.id.to_be_bytes());
    // QR, opcode QUERY, AA, RD echoed, RA unset.
    let flags: u16 = 0x8000 | 0x0400 | if query.rd { 0x0100 } else { 0 } | u16::from(rcode);
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&u16::from(with_a).to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    for l in &query.question.labels {
        out.push(l.len() as u8);
        out.extend_from_slice(l);
    }
    out.push(0);
    out.extend_from_slice(&query.question.qtype.to_be_bytes());
    out.extend_from_slice(&query.question.qclass.to_be_bytes());
    if with_a {
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ANSWER_TTL.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ANSWER_A);
    }
    (out, label)
}

/// Serve `zone` on `socket` until `shutdown` turns true.
pub async fn serve(
    socket: UdpSocket,
    zone: String,
    beacon: Arc<Beacon>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (len, from): (usize, SocketAddr) = tokio::select! {
            got = socket.recv_from(&mut buf) => match got {
                Ok(g) => g,
                Err(e) => {
                    tracing::debug!(error = %e, "a DNS receive failed");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let Some(query) = parse(&buf[..len]) else {
            continue;
        };
        let (reply, label) = answer(&query, &zone);
        if let Some(label) = label {
            let qname = query.question.name();
            if let Err(e) = beacon.handle_dns(&label, &qname, from.ip()).await {
                tracing::warn!(error = %e, "recording a DNS hit failed");
            }
        }
        if let Err(e) = socket.send_to(&reply, from).await {
            tracing::debug!(error = %e, "a DNS reply failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            p.push(l.len() as u8);
            p.extend_from_slice(l.as_bytes());
        }
        p.push(0);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&1u16.to_be_bytes());
        p
    }

    #[test]
    fn one_label_under_the_zone_gets_an_authoritative_a_record() {
        let q = parse(&query("AbCdEf.Canary.Example", TYPE_A)).unwrap();
        let (reply, label) = answer(&q, "canary.example");
        assert_eq!(label.as_deref(), Some("abcdef"));
        assert_eq!(
            &reply[..4],
            &[0x12, 0x34, 0x85, 0x00],
            "QR, AA, RD, NOERROR"
        );
        assert_eq!(&reply[6..8], &[0, 1], "one answer");
        assert_eq!(&reply[reply.len() - 4..], &ANSWER_A);
        // The question is echoed with its case.
        assert!(reply.windows(6).any(|w| w == b"AbCdEf"));
    }

    #[test]
    fn other_names_are_nxdomain_and_garbage_is_ignored() {
        for name in ["canary.example", "a.b.canary.example", "other.example"] {
            let (reply, label) = answer(&parse(&query(name, TYPE_A)).unwrap(), "canary.example");
            assert_eq!(label, None, "{name}");
            assert_eq!(reply[3] & 0x0f, NXDOMAIN, "{name}");
        }
        let (reply, _) = answer(
            &parse(&query("x.canary.example", 16)).unwrap(),
            "canary.example",
        );
        assert_eq!(
            (&reply[6..8], reply[3] & 0x0f),
            (&[0u8, 0][..], NOERROR),
            "TXT: no answer, no error"
        );
        assert_eq!(parse(&[0u8; 5]), None);
        // A pointer loop.
        let mut looped = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(parse(&looped), None);
        // A response is not a query.
        let mut response = query("x.canary.example", TYPE_A);
        response[2] |= 0x80;
        assert_eq!(parse(&response), None);
    }
}
