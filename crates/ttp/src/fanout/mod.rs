//! From bus messages and offline input lines to evaluation events (EVENTS.md §5).
//!
//! The live tagger, `decnet tag` and replays all build events with this module, so one
//! message yields the same events, source ids and therefore tag ids everywhere. Reading is
//! lenient where the contract allows (integers as decimal strings, booleans as `0`/`1`, the
//! DECNET envelope) and strict where it must be: a missing anchor, a wrongly typed required
//! field or a source id that would corrupt the tag-id key is an error naming the field, which
//! the tagger dead-letters and `decnet tag` reports.

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::anchor::attacker_uuid_for_ip;
use crate::event::{EvalEvent, parse_ts};
use crate::kind::SourceKind;

mod auth;
mod intel;
mod session;
mod signals;

pub use auth::PRIOR_BRUTE_THRESHOLD;
use intel::intel_enriched;
pub use intel::{normalise_tag, verdict_hash};
use session::session_ended;
use signals::{canary_triggered, credential_reuse, email_received, fingerprinted, identity};

/// Arrays longer than this are read up to this many items; the rest are counted.
pub const MAX_ITEMS: usize = 10_000;

/// Why a message or line yields no events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanoutError {
    /// Machine-readable reason (`schema_error`, `no_anchor`, `invalid_source_id`, …), used as
    /// the dead-letter reason.
    pub reason: &'static str,
    /// What was wrong and where.
    pub detail: String,
}

impl FanoutError {
    fn schema(path: &str, expected: &str) -> FanoutError {
        FanoutError {
            reason: "schema_error",
            detail: format!("{path}: {expected}"),
        }
    }
}

impl fmt::Display for FanoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

impl std::error::Error for FanoutError {}

/// The events one message yields, and what was skipped on the way.
#[derive(Debug, Default, PartialEq)]
pub struct Fanout {
    /// Events in evaluation order.
    pub events: Vec<EvalEvent>,
    /// List items that were not objects or lacked their key field.
    pub skipped_items: usize,
    /// List items beyond [`MAX_ITEMS`].
    pub truncated_items: usize,
}

/// Unwrap the DECNET envelope `{v, id, topic, type, ts, payload}` when the body is exactly
/// that; for `attacker.fingerprinted` a missing `kind` is taken from `type`.
pub fn unwrap_envelope(subject: &str, body: &Value) -> Value {
    const ENVELOPE: [&str; 6] = ["v", "id", "topic", "type", "ts", "payload"];
    let Some(obj) = body.as_object() else {
        return body.clone();
    };
    let is_envelope = obj.contains_key("payload")
        && obj.keys().all(|k| ENVELOPE.contains(&k.as_str()))
        && obj["payload"].is_object();
    if !is_envelope {
        return body.clone();
    }
    let mut payload = obj["payload"].clone();
    if subject == "attacker.fingerprinted"
        && let (Some(p), Some(kind)) = (payload.as_object_mut(), obj.get("type"))
    {
        p.entry("kind").or_insert_with(|| kind.clone());
    }
    payload
}

/// Build the evaluation events of one bus message.
pub fn from_message(subject: &str, body: &Value) -> Result<Fanout, FanoutError> {
    let body = unwrap_envelope(subject, body);
    let Some(p) = body.as_object() else {
        return Err(FanoutError {
            reason: "not_an_object",
            detail: "the body is not a JSON object".into(),
        });
    };
    let fanout = match subject {
        "attacker.session.ended" => session_ended(p)?,
        "attacker.intel.enriched" => intel_enriched(p)?,
        "attacker.fingerprinted" => fingerprinted(p)?,
        "email.received" => email_received(p)?,
        "credential.reuse.detected" => credential_reuse(p)?,
        "identity.formed" | "identity.merged" => identity(p)?,
        "attacker.observed"
        | "identity.observation.linked"
        | "identity.campaign.assigned"
        | "smtp.probe.relayed" => Fanout::default(),
        s if s.starts_with("canary.") && s.ends_with(".triggered") => canary_triggered(p)?,
        s if s.starts_with("canary.") && s.ends_with(".revoked") => Fanout::default(),
        other => {
            return Err(FanoutError {
                reason: "unsupported_subject",
                detail: format!("subject {other:?} is not a source event"),
            });
        }
    };
    for event in &fanout.events {
        check_source_id(&event.source_id)?;
    }
    Ok(fanout)
}

/// Build the one event of an offline tagging-event line
/// `{source_kind, source_id, attacker_uuid?, attacker_ip?, identity_uuid?, session_id?,
/// decky_id?, payload}`.
pub fn from_tagging_event(line: &Map<String, Value>) -> Result<EvalEvent, FanoutError> {
    const KEYS: [&str; 8] = [
        "source_kind",
        "source_id",
        "attacker_uuid",
        "attacker_ip",
        "identity_uuid",
        "session_id",
        "decky_id",
        "payload",
    ];
    if let Some(unknown) = line.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(FanoutError::schema(unknown, "unknown key"));
    }
    let kind_name = req_str(line, "source_kind")?;
    let kind: SourceKind = kind_name.parse().map_err(|e: crate::kind::UnknownKind| {
        FanoutError::schema("source_kind", &e.to_string())
    })?;
    let source_id = req_str(line, "source_id")?;
    let Some(Value::Object(payload)) = line.get("payload") else {
        return Err(FanoutError::schema("payload", "expected an object"));
    };
    let mut event = EvalEvent::new(kind, source_id, payload.clone());
    event.identity_uuid = opt_uuid(line, "identity_uuid")?;
    if kind != SourceKind::Identity {
        event.attacker_uuid = anchor(line, "attacker_ip")?;
    }
    if event.attacker_uuid.is_none() && event.identity_uuid.is_none() {
        return Err(no_anchor());
    }
    event.session_id = opt_str(line, "session_id").map(Arc::from);
    event.decky_id = opt_str(line, "decky_id").map(Arc::from);
    event.ts = event_time(kind, payload);
    check_source_id(&event.source_id)?;
    Ok(event)
}

fn event_time(
    kind: SourceKind,
    payload: &Map<String, Value>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let key = match kind {
        SourceKind::Session => "ended_at",
        SourceKind::Ipv6Leak | SourceKind::Fingerprint => "observed_at",
        _ => "ts",
    };
    opt_str(payload, key).and_then(parse_ts)
}

fn check_source_id(id: &str) -> Result<(), FanoutError> {
    if id.is_empty() || id.contains('|') || id.chars().any(char::is_control) {
        return Err(FanoutError {
            reason: "invalid_source_id",
            detail: format!("source id {id:?} is empty or holds '|' or a control character"),
        });
    }
    if id.chars().count() > 256 {
        return Err(FanoutError {
            reason: "invalid_source_id",
            detail: "source id is longer than 256 characters".into(),
        });
    }
    Ok(())
}

fn no_anchor() -> FanoutError {
    FanoutError {
        reason: "no_anchor",
        detail: "no attacker_uuid, no parsable address and no identity".into(),
    }
}

// ---- lenient field readers (EVENTS.md §1.3) ----

fn opt_str<'a>(p: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    p.get(key).and_then(Value::as_str)
}

fn req_str<'a>(p: &'a Map<String, Value>, key: &str) -> Result<&'a str, FanoutError> {
    match p.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(FanoutError::schema(key, "must not be empty")),
        None | Some(Value::Null) => Err(FanoutError::schema(key, "missing required field")),
        Some(_) => Err(FanoutError::schema(key, "expected string")),
    }
}

/// An integer, also from a decimal string.
pub fn read_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A boolean, also from `0`/`1`, `"0"`/`"1"` or `"true"`/`"false"`.
pub fn read_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        Value::String(s) => match s.as_str() {
            "0" | "false" => Some(false),
            "1" | "true" => Some(true),
            _ => None,
        },
        _ => None,
    }
}

fn opt_uuid(p: &Map<String, Value>, key: &str) -> Result<Option<Uuid>, FanoutError> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| FanoutError::schema(key, "expected a uuid")),
        Some(_) => Err(FanoutError::schema(key, "expected a uuid")),
    }
}

/// The attacker anchor: `attacker_uuid`, else the uuid derived from the address field.
fn anchor(p: &Map<String, Value>, ip_key: &str) -> Result<Option<Uuid>, FanoutError> {
    if let Some(uuid) = opt_uuid(p, "attacker_uuid")? {
        return Ok(Some(uuid));
    }
    Ok(opt_str(p, ip_key).and_then(attacker_uuid_for_ip))
}

fn require_anchor(p: &Map<String, Value>, ip_key: &str) -> Result<Uuid, FanoutError> {
    anchor(p, ip_key)?.ok_or_else(no_anchor)
}

/// Copy the listed keys that are present.
fn pick(p: &Map<String, Value>, keys: &[&str]) -> Map<String, Value> {
    keys.iter()
        .filter_map(|k| p.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect()
}

fn items<'a>(
    p: &'a Map<String, Value>,
    key: &str,
    out: &mut Fanout,
) -> Result<&'a [Value], FanoutError> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(list)) => {
            out.truncated_items += list.len().saturating_sub(MAX_ITEMS);
            Ok(&list[..list.len().min(MAX_ITEMS)])
        }
        Some(_) => Err(FanoutError::schema(key, "expected array")),
    }
}
