//! `attacker.session.ended`: one `session` event, then its commands, HTTP requests and the
//! login-attempt aggregate, each inheriting the session's anchors.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::auth::auth_aggregate;
use super::{Fanout, FanoutError, items, opt_str, pick, req_str, require_anchor};
use crate::anchor::canonical_ip;
use crate::event::{EvalEvent, parse_ts};
use crate::kind::SourceKind;

pub(super) fn session_ended(p: &Map<String, Value>) -> Result<Fanout, FanoutError> {
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
