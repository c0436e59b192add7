//! Network lifters: C2 server fingerprints (R0030, RULES.md §7.4) and leaked IPv6 link-local
//! addresses (R0059, §7.9).

use std::net::Ipv6Addr;

use serde_json::Value;

use super::tables::{Table, TableReader};
use super::{Decision, Lift, Misfits, Params, Pick, Spec, fields};
use crate::event::EvalEvent;
use crate::evidence::EvidenceKey;
use crate::kind::SourceKind;

pub(super) const SPECS: &[Spec] = &[
    Spec {
        name: "c2_fingerprint",
        kinds: &[SourceKind::Fingerprint],
        build: |p| {
            let table = p.table("catalogue", "")?;
            c2_catalogue(p, &table).map(|l| Box::new(l) as Box<dyn Lift>)
        },
    },
    Spec {
        name: "ipv6_link_local_leak",
        kinds: &[SourceKind::Ipv6Leak],
        build: |_| Some(Box::new(LinkLocalLeak)),
    },
];

/// One catalogue entry.
#[derive(Debug)]
struct Fingerprint {
    id: String,
    kind: String,
    value: String,
    framework: String,
    active: bool,
    ports: Option<Vec<i64>>,
    emits: Vec<usize>,
}

/// R0030: a probe result equal to an active catalogue entry.
#[derive(Debug)]
struct C2Catalogue {
    entries: Vec<Fingerprint>,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_snake(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn c2_catalogue(p: &mut Params<'_>, table: &Table) -> Option<C2Catalogue> {
    const KEYS: &[&str] = &[
        "id",
        "type",
        "value",
        "framework",
        "status",
        "ports",
        "techniques",
        "reference",
        "added",
        "notes",
    ];
    const REQUIRED: &[&str] = &["id", "type", "value", "framework", "status", "techniques"];
    let mut r = TableReader::new(table);
    let mut entries: Vec<Fingerprint> = Vec::new();
    let list = match &table.root {
        None => {
            r.error(Default::default(), "", "the table is empty");
            None
        }
        Some(root) => r
            .map(root, "", &["entries"], &["entries"])
            .and_then(|top| {
                top.into_iter()
                    .find(|(k, _)| *k == "entries")
                    .map(|(_, v)| v)
            })
            .and_then(|node| match &node.value {
                // HASSH entries start empty: `entries: []` is a valid table.
                crate::yaml::Value::Scalar(s, false) if crate::yaml::is_null(s) => Some(&[][..]),
                _ => r.seq(node, "entries"),
            }),
    };
    for (i, node) in list.unwrap_or_default().iter().enumerate() {
        let path = format!("entries[{i}]");
        let Some(f) = r.map(node, &path, KEYS, REQUIRED) else {
            continue;
        };
        let get = |k: &str| f.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        let at = |k: &str| format!("{path}.{k}");
        let id = get("id").and_then(|n| r.string(n, &at("id")));
        let kind = get("type").and_then(|n| r.string(n, &at("type")));
        let value = get("value").and_then(|n| r.string(n, &at("value")));
        let framework = get("framework").and_then(|n| r.string(n, &at("framework")));
        let status = get("status").and_then(|n| r.string(n, &at("status")));
        let techniques = get("techniques").and_then(|n| r.strings(n, &at("techniques")));
        let (Some(id), Some(kind), Some(value), Some(framework), Some(status), Some(techniques)) =
            (id, kind, value, framework, status, techniques)
        else {
            continue;
        };
        let pos_of = |k: &str| get(k).map_or(node.pos, |n| n.pos);
        let before = r.errors.len();
        if !(id.len() == 5 && id.starts_with("FP") && id[2..].bytes().all(|b| b.is_ascii_digit())) {
            r.error(
                pos_of("id"),
                &at("id"),
                format!("{id:?} is not of the form FP followed by three digits"),
            );
        } else if entries.iter().any(|e| e.id == id) {
            r.error(pos_of("id"), &at("id"), format!("{id} is listed twice"));
        }
        match kind.as_str() {
            "jarm" if !is_hex(&value, 62) => r.error(
                pos_of("value"),
                &at("value"),
                "a JARM is 62 lowercase hex digits",
            ),
            "jarm" if value.bytes().all(|b| b == b'0') => r.error(
                pos_of("value"),
                &at("value"),
                "the all-zero JARM means no TLS answer; it identifies nothing",
            ),
            "hassh" | "hassh_server" if !is_hex(&value, 32) => r.error(
                pos_of("value"),
                &at("value"),
                "a HASSH is 32 lowercase hex digits",
            ),
            "jarm" | "hassh" | "hassh_server" => {}
            other => r.error(
                pos_of("type"),
                &at("type"),
                format!("{other:?} is not jarm, hassh or hassh_server"),
            ),
        }
        if !is_snake(&framework) {
            r.error(
                pos_of("framework"),
                &at("framework"),
                format!("{framework:?} is not a snake_case name"),
            );
        }
        let active = match status.as_str() {
            "active" => true,
            "candidate" => false,
            other => {
                r.error(
                    pos_of("status"),
                    &at("status"),
                    format!("{other:?} is not active or candidate"),
                );
                false
            }
        };
        let ports = match get("ports") {
            None => None,
            Some(n) => {
                let items = r.seq(n, &at("ports")).unwrap_or_default();
                let mut ports = Vec::new();
                for (j, item) in items.iter().enumerate() {
                    if let Some(port) = r.int(item, &format!("{}[{j}]", at("ports")), 1, 65_535) {
                        ports.push(port);
                    }
                }
                if items.is_empty() {
                    r.error(
                        n.pos,
                        &at("ports"),
                        "must not be empty (leave the key out for any port)",
                    );
                }
                Some(ports)
            }
        };
        let emits = r.emits(
            p.emits(),
            &techniques,
            &at("techniques"),
            pos_of("techniques"),
        );
        let (Some(emits), true) = (emits, r.errors.len() == before) else {
            continue;
        };
        entries.push(Fingerprint {
            id,
            kind,
            value,
            framework,
            active,
            ports,
            emits,
        });
    }
    let errors = std::mem::take(&mut r.errors);
    let ok = errors.is_empty();
    for e in errors {
        p.table_error(e);
    }
    ok.then_some(C2Catalogue { entries })
}

impl Lift for C2Catalogue {
    fn lift(&self, event: &EvalEvent, misfits: &Misfits) -> Option<Decision> {
        let f = fields(event, misfits);
        let (Some(kind), Some(value)) = (f.str("fingerprint_type"), f.str("value")) else {
            return None;
        };
        let value = value.trim().to_ascii_lowercase();
        let port = f.int("port");
        let entry = self.entries.iter().find(|e| {
            e.active
                && e.kind == kind
                && e.value == value
                && e.ports
                    .as_ref()
                    .is_none_or(|ports| port.is_some_and(|p| ports.contains(&p)))
        });
        entry.map(|e| Decision {
            extras: vec![
                (
                    EvidenceKey::MatchedFramework,
                    Value::from(e.framework.as_str()),
                ),
                (EvidenceKey::MatchedSignature, Value::from(e.id.as_str())),
            ],
            picks: Some(
                e.emits
                    .iter()
                    .map(|&emit| Pick {
                        emit,
                        multiplier: 1.0,
                        extras: Vec::new(),
                    })
                    .collect(),
            ),
        })
    }
}

/// R0059: the attacker's own link-local address leaked to the decoy.
#[derive(Debug)]
struct LinkLocalLeak;

/// Parse an IPv6 address as sensors write it: optional brackets, optional `%zone`.
fn parse_v6(text: &str) -> Option<Ipv6Addr> {
    let bare = text.trim();
    let bare = bare
        .strip_prefix('[')
        .and_then(|b| b.strip_suffix(']'))
        .unwrap_or(bare);
    let bare = bare.split('%').next().unwrap_or_default();
    bare.parse().ok()
}

fn is_link_local(addr: Ipv6Addr) -> bool {
    addr.segments()[0] & 0xffc0 == 0xfe80
}

impl Lift for LinkLocalLeak {
    fn lift(&self, event: &EvalEvent, misfits: &Misfits) -> Option<Decision> {
        let f = fields(event, misfits);
        let text = f.str("addr").or(f.str("attacker_ip"))?;
        if !parse_v6(text).is_some_and(is_link_local) {
            return None;
        }
        let mut extras = Vec::new();
        if f.str("iid_kind").is_none() {
            extras.push((EvidenceKey::IidKind, Value::from("unknown")));
        }
        if f.str("addr").is_none() {
            extras.push((EvidenceKey::Addr, Value::from(text)));
        }
        Some(Decision::all(extras))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_is_fe80_slash_10() {
        for yes in ["fe80::1", "FE80::aa:bb%eth0", "[febf::1]", "fe90::5"] {
            assert!(parse_v6(yes).is_some_and(is_link_local), "{yes}");
        }
        for no in [
            "fec0::1",
            "fe7f::1",
            "fd00::1",
            "2001:db8:fe80::1",
            "::ffff:169.254.1.1",
            "x",
        ] {
            assert!(!parse_v6(no).is_some_and(is_link_local), "{no}");
        }
    }
}
