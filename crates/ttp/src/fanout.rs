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

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::anchor::{attacker_uuid_for_ip, canonical_ip};
use crate::event::{EvalEvent, parse_ts};
use crate::kind::SourceKind;

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

// ---- attacker.session.ended ----

fn session_ended(p: &Map<String, Value>) -> Result<Fanout, FanoutError> {
    let attacker = require_anchor(p, "attacker_ip")?;
    let decky = req_str(p, "decky_id")?;
    let service = req_str(p, "service")?;
    let ended_at = req_str(p, "ended_at")?;
    let session_id = match p.get("session_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()).filter(|s| !s.is_empty()),
        Some(_) => return Err(FanoutError::schema("session_id", "expected string or null")),
    };
    let s = match session_id {
        Some(id) => id.to_owned(),
        None => {
            let who = opt_str(p, "attacker_ip")
                .and_then(canonical_ip)
                .unwrap_or_else(|| attacker.to_string());
            format!("{who}@{ended_at}")
        }
    };
    let mut out = Fanout::default();
    let commands = items(p, "commands", &mut out)?;
    let requests = items(p, "http_requests", &mut out)?;
    let attempts = items(p, "auth_attempts", &mut out)?;
    let ts = parse_ts(ended_at);
    let inherit = |mut event: EvalEvent| {
        event.attacker_uuid = Some(attacker);
        event.session_id = session_id.map(Arc::from);
        event.decky_id = Some(Arc::from(decky));
        event.ts = event.ts.or(ts);
        event
    };

    let mut session: Map<String, Value> = p
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "commands" | "http_requests" | "auth_attempts"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    session.insert("command_count".into(), json!(commands.len()));
    session.insert("auth_attempt_count".into(), json!(attempts.len()));
    session.insert("http_request_count".into(), json!(requests.len()));
    out.events.push(inherit(EvalEvent::new(
        SourceKind::Session,
        s.clone(),
        session,
    )));

    for (i, item) in commands.iter().enumerate() {
        match command_event(item, i, &s, service, decky)? {
            Some(event) => out.events.push(inherit(event)),
            None => out.skipped_items += 1,
        }
    }
    for (i, item) in requests.iter().enumerate() {
        match http_event(item, i, &s)? {
            Some(event) => out.events.push(inherit(event)),
            None => out.skipped_items += 1,
        }
    }
    if !attempts.is_empty() {
        let (aggregate, skipped) = auth_aggregate(attempts, service);
        out.skipped_items += skipped;
        if let Some(payload) = aggregate {
            out.events.push(inherit(EvalEvent::new(
                SourceKind::AuthAttempt,
                format!("{s}#auth"),
                payload,
            )));
        }
    }
    Ok(out)
}

fn item_id(item: &Map<String, Value>) -> Option<&str> {
    opt_str(item, "id").filter(|id| !id.is_empty())
}

fn command_event(
    item: &Value,
    i: usize,
    s: &str,
    service: &str,
    decky: &str,
) -> Result<Option<EvalEvent>, FanoutError> {
    let Some(item) = item.as_object() else {
        return Ok(None);
    };
    let text = match item
        .get("command_text")
        .filter(|v| !v.is_null())
        .or_else(|| item.get("text"))
    {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(t)) if t.is_empty() => return Ok(None),
        Some(Value::String(t)) => t,
        Some(_) => {
            return Err(FanoutError::schema(
                &format!("commands[{i}].command_text"),
                "expected string",
            ));
        }
    };
    let source_id = item_id(item).map_or_else(|| format!("{s}#{i}"), str::to_owned);
    let mut payload = pick(item, &["ts", "uid", "user", "src", "pwd"]);
    payload.insert("command_text".into(), Value::from(text.as_str()));
    payload.insert(
        "service".into(),
        Value::from(opt_str(item, "service").unwrap_or(service)),
    );
    payload.insert("decky_id".into(), Value::from(decky));
    let mut event = EvalEvent::new(SourceKind::Command, source_id, payload);
    event.ts = opt_str(item, "ts").and_then(parse_ts);
    Ok(Some(event))
}

fn http_event(item: &Value, i: usize, s: &str) -> Result<Option<EvalEvent>, FanoutError> {
    let Some(item) = item.as_object() else {
        return Ok(None);
    };
    match item.get("raw_url") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(_)) => {}
        Some(_) => {
            return Err(FanoutError::schema(
                &format!("http_requests[{i}].raw_url"),
                "expected string",
            ));
        }
    }
    let source_id = item_id(item).map_or_else(|| format!("{s}#req:{i}"), str::to_owned);
    let payload = pick(
        item,
        &["method", "raw_url", "user_agent", "headers", "ts", "status"],
    );
    let mut event = EvalEvent::new(SourceKind::HttpRequest, source_id, payload);
    event.ts = opt_str(item, "ts").and_then(parse_ts);
    Ok(Some(event))
}

/// The per-session aggregate of login attempts (EVENTS.md §5.3). Returns the payload (none
/// when no attempt was usable) and the number of attempts skipped.
fn auth_aggregate(
    attempts: &[Value],
    session_service: &str,
) -> (Option<Map<String, Value>>, usize) {
    struct Attempt<'a> {
        username: &'a str,
        password: &'a str,
        success: bool,
        service: &'a str,
        ts: Option<chrono::DateTime<chrono::Utc>>,
        ts_text: Option<&'a str>,
    }
    let mut list: Vec<Attempt<'_>> = Vec::new();
    for item in attempts {
        let Some(item) = item.as_object() else {
            continue;
        };
        let Some(username) = opt_str(item, "username") else {
            continue;
        };
        list.push(Attempt {
            username,
            password: opt_str(item, "password").unwrap_or_default(),
            success: opt_str(item, "result") == Some("success"),
            service: opt_str(item, "service").unwrap_or(session_service),
            ts: opt_str(item, "ts").and_then(parse_ts),
            ts_text: opt_str(item, "ts"),
        });
    }
    let skipped = attempts.len() - list.len();
    if list.is_empty() {
        return (None, skipped);
    }
    if list.iter().all(|a| a.ts.is_some()) {
        list.sort_by_key(|a| a.ts);
    }

    let mut usernames: Vec<&str> = Vec::new();
    let mut passwords_by_user: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut all_passwords: Vec<&str> = Vec::new();
    let mut services: Vec<(&str, usize)> = Vec::new();
    for a in &list {
        if !usernames.contains(&a.username) {
            usernames.push(a.username);
            passwords_by_user.push((a.username, Vec::new()));
        }
        let entry = passwords_by_user
            .iter_mut()
            .find(|(u, _)| *u == a.username)
            .expect("pushed above");
        if !entry.1.contains(&a.password) {
            entry.1.push(a.password);
        }
        if !all_passwords.contains(&a.password) {
            all_passwords.push(a.password);
        }
        match services.iter_mut().find(|(s, _)| *s == a.service) {
            Some(slot) => slot.1 += 1,
            None => services.push((a.service, 1)),
        }
    }
    let top = services.iter().map(|(_, n)| *n).max().unwrap_or(0);
    let tied: Vec<&str> = services
        .iter()
        .filter(|(_, n)| *n == top)
        .map(|(s, _)| *s)
        .collect();
    let service = if tied.len() == 1 {
        tied[0]
    } else if tied.contains(&session_service) {
        session_service
    } else {
        tied[0]
    };

    let first_success = list.iter().position(|a| a.success);
    let success_count = list.iter().filter(|a| a.success).count();
    let username = match first_success {
        Some(i) => list[i].username,
        // The most distinct passwords; the first user tried wins a tie.
        None => {
            passwords_by_user
                .iter()
                .fold((usernames[0], 0), |best, (u, pw)| {
                    if pw.len() > best.1 {
                        (u, pw.len())
                    } else {
                        best
                    }
                })
                .0
        }
    };
    let count_for = |user: &str| {
        passwords_by_user
            .iter()
            .find(|(u, _)| *u == user)
            .map_or(0, |(_, p)| p.len())
    };
    let first_ts = list.first().and_then(|a| a.ts);
    let last_ts = list.last().and_then(|a| a.ts);
    let window_s = match (first_ts, last_ts) {
        (Some(a), Some(b)) => Some((b - a).num_milliseconds() as f64 / 1000.0),
        _ => None,
    };
    let fails_before = first_success.map(|i| list[..i].iter().filter(|a| !a.success).count());
    let mut agg = Map::new();
    agg.insert("service".into(), json!(service));
    agg.insert("attempt_count".into(), json!(list.len()));
    agg.insert("fail_count".into(), json!(list.len() - success_count));
    agg.insert("success_count".into(), json!(success_count));
    agg.insert(
        "result".into(),
        json!(if success_count > 0 {
            "success"
        } else {
            "failure"
        }),
    );
    agg.insert("success".into(), json!(success_count > 0));
    agg.insert("username".into(), json!(username));
    if let Some(i) = first_success {
        agg.insert("password".into(), json!(list[i].password));
    }
    agg.insert("password_count".into(), json!(count_for(username)));
    agg.insert(
        "max_password_count".into(),
        json!(
            passwords_by_user
                .iter()
                .map(|(_, p)| p.len())
                .max()
                .unwrap_or(0)
        ),
    );
    agg.insert("distinct_usernames".into(), json!(usernames.len()));
    agg.insert("distinct_passwords".into(), json!(all_passwords.len()));
    agg.insert(
        "usernames".into(),
        json!(usernames.iter().take(32).collect::<Vec<_>>()),
    );
    agg.insert("fails_before_success".into(), json!(fails_before));
    agg.insert(
        "prior_brute".into(),
        json!(fails_before.is_some_and(|n| n >= PRIOR_BRUTE_THRESHOLD)),
    );
    agg.insert(
        "first_ts".into(),
        json!(list.first().and_then(|a| a.ts_text)),
    );
    agg.insert("last_ts".into(), json!(list.last().and_then(|a| a.ts_text)));
    agg.insert("window_s".into(), json!(window_s));
    (Some(agg), skipped)
}

/// Failures before a success that make it a success after brute force.
pub const PRIOR_BRUTE_THRESHOLD: usize = 5;

// ---- attacker.intel.enriched ----

const PROVIDERS: [(&str, &str); 4] = [
    ("abuseipdb", "abuseipdb_score"),
    ("greynoise", "greynoise_classification"),
    ("feodo", "feodo_listed"),
    ("threatfox", "threatfox_listed"),
];

fn intel_enriched(p: &Map<String, Value>) -> Result<Fanout, FanoutError> {
    let attacker = require_anchor(p, "attacker_ip")?;
    let intel_id = opt_str(p, "intel_id").map_or_else(|| attacker.to_string(), str::to_owned);
    let providers_ok: Option<Vec<&str>> = p
        .get("providers_ok")
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(Value::as_str).collect());
    let mut out = Fanout::default();
    for (provider, key_field) in PROVIDERS {
        let present = match &providers_ok {
            Some(ok) => ok.contains(&provider),
            None => p.get(key_field).is_some_and(|v| !v.is_null()),
        };
        if !present {
            continue;
        }
        let hash = verdict_hash(provider, p);
        let mut payload = p.clone();
        payload.insert("provider".into(), json!(provider));
        payload.insert("intel_id".into(), json!(intel_id));
        payload.insert("verdict_hash".into(), json!(hash));
        let mut event = EvalEvent::new(
            SourceKind::Intel,
            format!("{intel_id}:{provider}:{hash}"),
            payload,
        );
        event.attacker_uuid = Some(attacker);
        event.ts = opt_str(p, "enriched_at").and_then(parse_ts);
        out.events.push(event);
    }
    Ok(out)
}

/// GreyNoise tag normalisation: lowercase, spaces and hyphens to `_`, other punctuation
/// dropped (`SSH Bruteforcer` → `ssh_bruteforcer`).
pub fn normalise_tag(tag: &str) -> String {
    tag.chars()
        .filter_map(|c| match c {
            ' ' | '-' => Some('_'),
            c if c.is_alphanumeric() || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// First 16 hex digits of SHA-256 over the canonical JSON of one provider's verdict.
pub fn verdict_hash(provider: &str, p: &Map<String, Value>) -> String {
    let list = |key: &str, normalise: bool| -> Value {
        let mut items: Vec<Value> = p
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if normalise {
            items = items
                .iter()
                .filter_map(Value::as_str)
                .map(|s| Value::from(normalise_tag(s)))
                .collect();
        }
        items.sort_by_key(|v| v.to_string());
        items.dedup();
        Value::Array(items)
    };
    let field = |key: &str| p.get(key).cloned().unwrap_or(Value::Null);
    let verdict = match provider {
        "abuseipdb" => json!({
            "score_decile": p.get("abuseipdb_score").and_then(read_int).map(|s| s.div_euclid(10)),
            "categories": list("abuseipdb_categories", false),
        }),
        "greynoise" => json!({
            "classification": p.get("greynoise_classification").and_then(Value::as_str).map(str::to_lowercase),
            "tags": list("greynoise_tags", true),
            "noise": p.get("greynoise_noise").and_then(read_bool),
            "riot": p.get("greynoise_riot").and_then(read_bool),
        }),
        "feodo" => {
            json!({"listed": p.get("feodo_listed").and_then(read_bool), "malware_family": field("feodo_malware_family")})
        }
        _ => json!({
            "threat_types": list("threatfox_threat_types", false),
            "malware_families": list("threatfox_malware_families", false),
            "ioc_types": list("threatfox_ioc_types", false),
        }),
    };
    let canonical: Map<String, Value> = verdict
        .as_object()
        .expect("built as an object")
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let text = serde_json::to_string(&canonical).expect("JSON values serialise");
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

// ---- attacker.fingerprinted ----

fn fingerprinted(p: &Map<String, Value>) -> Result<Fanout, FanoutError> {
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

fn email_received(p: &Map<String, Value>) -> Result<Fanout, FanoutError> {
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

fn canary_triggered(p: &Map<String, Value>) -> Result<Fanout, FanoutError> {
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

fn credential_reuse(p: &Map<String, Value>) -> Result<Fanout, FanoutError> {
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

fn identity(p: &Map<String, Value>) -> Result<Fanout, FanoutError> {
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
