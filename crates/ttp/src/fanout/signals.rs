//! The single-event subjects: fingerprints, emails, canary triggers, credential reuse and
//! identities. Each maps one message to its events with its own source-id rule.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{
    Fanout, FanoutError, opt_str, opt_uuid, pick, read_bool, read_int, req_str, require_anchor,
};
use crate::anchor::attacker_uuid_for_ip;
use crate::event::{EvalEvent, parse_ts};
use crate::kind::SourceKind;

pub(super) fn fingerprinted(p: &Map<String, Value>) -> Result<Fanout, FanoutError> {
    let attacker = require_anchor(p, "attacker_ip")?;
    let kind = req_str(p, "kind")?;
    let mut out = Fanout::default();
    let observed = opt_str(p, "observed_at").and_then(parse_ts);
    let event = match kind {
        "jarm" | "hassh" | "hassh_server" => {
            let value_key = if kind == "jarm" {
                "jarm_hash"
            } else {
                "hassh_server"
            };
            let value = req_str(p, value_key)?.to_ascii_lowercase();
            let port = p.get("port").and_then(read_int);
            let source_id = format!("{attacker}:{kind}:{}:{value}", port.unwrap_or(0));
            let mut payload = Map::new();
            payload.insert("fingerprint_type".into(), json!(kind));
            payload.insert("value".into(), json!(value));
            payload.insert("port".into(), json!(port));
            EvalEvent::new(SourceKind::Fingerprint, source_id, payload)
        }
        "ipv6_leak" => {
            let addr = req_str(p, "addr")?;
            let mut payload = pick(
                p,
                &[
                    "addr",
                    "mac_oui",
                    "iid_kind",
                    "vector",
                    "on_iface",
                    "attacker_ip",
                    "observed_at",
                ],
            );
            let v4 = opt_str(p, "attacker_v4").or_else(|| opt_str(p, "attacker_ip"));
            if let Some(v4) = v4 {
                payload.insert("attacker_v4".into(), json!(v4));
            }
            EvalEvent::new(
                SourceKind::Ipv6Leak,
                format!("{attacker}:ipv6:{addr}"),
                payload,
            )
        }
        _ => return Ok(out),
    };
    let mut event = event;
    event.attacker_uuid = Some(attacker);
    event.ts = observed;
    out.events.push(event);
    Ok(out)
}

// ---- email.received ----

pub(super) fn email_received(p: &Map<String, Value>) -> Result<Fanout, FanoutError> {
    let attacker = require_anchor(p, "attacker_ip")?;
    let decky = req_str(p, "decky_id")?;
    let source_id = match opt_str(p, "source_id").filter(|s| !s.is_empty()) {
        Some(id) => id.to_owned(),
        None => format!("{decky}:{}", req_str(p, "stored_as")?),
    };
    let mut payload = p.clone();
    if !payload.contains_key("dkim_signature_present") {
        let signed = p.get("dkim_signed").and_then(read_bool).unwrap_or(false);
        payload.insert("dkim_signature_present".into(), json!(signed));
    }
    if payload.get("body_simhash").and_then(Value::as_str) == Some("") {
        payload.remove("body_simhash");
    }
    let mut event = EvalEvent::new(SourceKind::Email, source_id, payload);
    event.attacker_uuid = Some(attacker);
    event.decky_id = Some(Arc::from(decky));
    event.ts = opt_str(p, "received_at").and_then(parse_ts);
    Ok(Fanout {
        events: vec![event],
        ..Fanout::default()
    })
}

// ---- canary.<token>.triggered ----

pub(super) fn canary_triggered(p: &Map<String, Value>) -> Result<Fanout, FanoutError> {
    let channel = opt_str(p, "channel").unwrap_or("http");
    let scanner = p
        .get("suspected_scanner")
        .and_then(read_bool)
        .unwrap_or(false);
    if !matches!(channel, "http" | "external") || scanner {
        return Ok(Fanout::default());
    }
    let attacker = require_anchor(p, "src_ip")?;
    let trigger_id = req_str(p, "trigger_id")?;
    let mut payload = pick(p, &["token_id", "token_kind", "trigger_id", "src_ip"]);
    payload.insert("channel".into(), json!(channel));
    let ts = opt_str(p, "occurred_at").and_then(parse_ts);
    let decky: Option<Arc<str>> = opt_str(p, "decky_name").map(Arc::from);
    let mut out = Fanout::default();
    let mut push = |kind, payload| {
        let mut event = EvalEvent::new(kind, trigger_id, payload);
        event.attacker_uuid = Some(attacker);
        event.decky_id.clone_from(&decky);
        event.ts = ts;
        out.events.push(event);
    };
    push(SourceKind::Canary, payload);
    if let Some(Value::Object(block)) = p.get("fingerprint") {
        push(SourceKind::CanaryFingerprint, block.clone());
    }
    Ok(out)
}

// ---- credential.reuse.detected ----

pub(super) fn credential_reuse(p: &Map<String, Value>) -> Result<Fanout, FanoutError> {
    let id = req_str(p, "id")?;
    let mut attackers: Vec<Uuid> = Vec::new();
    for (i, v) in p
        .get("attacker_uuids")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let uuid = v.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
            FanoutError::schema(&format!("attacker_uuids[{i}]"), "expected a uuid")
        })?;
        if !attackers.contains(&uuid) {
            attackers.push(uuid);
        }
    }
    for ip in p
        .get("attacker_ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if let Some(uuid) = attacker_uuid_for_ip(ip).filter(|u| !attackers.contains(u)) {
            attackers.push(uuid);
        }
    }
    let mut payload = pick(
        p,
        &[
            "credential_hash",
            "secret_kind",
            "target_count",
            "attacker_count",
            "deckies",
            "services",
        ],
    );
    payload
        .entry("attacker_count")
        .or_insert_with(|| json!(attackers.len()));
    let events = attackers
        .into_iter()
        .map(|attacker| {
            let mut event = EvalEvent::new(
                SourceKind::Credential,
                format!("{id}:{attacker}"),
                payload.clone(),
            );
            event.attacker_uuid = Some(attacker);
            event
        })
        .collect();
    Ok(Fanout {
        events,
        ..Fanout::default()
    })
}

// ---- identity.formed / identity.merged ----

pub(super) fn identity(p: &Map<String, Value>) -> Result<Fanout, FanoutError> {
    let identity = match opt_uuid(p, "identity_uuid")? {
        Some(id) => id,
        None => opt_uuid(p, "winner_uuid")?
            .ok_or_else(|| FanoutError::schema("identity_uuid", "missing required field"))?,
    };
    let hash = opt_str(p, "shared_password_hash").filter(|h| !h.is_empty());
    let source_id = match hash {
        Some(h) => format!("{identity}:{h}"),
        None => identity.to_string(),
    };
    let payload = pick(
        p,
        &["shared_password_hash", "account_count", "observation_uuids"],
    );
    let mut event = EvalEvent::new(SourceKind::Identity, source_id, payload);
    event.identity_uuid = Some(identity);
    Ok(Fanout {
        events: vec![event],
        ..Fanout::default()
    })
}
