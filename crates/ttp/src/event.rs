//! Evaluation events: the one input shape the engine understands.
//!
//! Whatever arrived on the bus (a session, an email, a canary hit…), the engine sees events of
//! one [`SourceKind`] with a source id, anchors and a flat JSON payload of the fields rules
//! read. HTTP requests gain the derived fields of RULES.md §1 here, once, before any rule runs.

use std::sync::Arc;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::kind::SourceKind;

/// Field values longer than this are evaluated on their first this-many bytes.
pub const MAX_HAYSTACK_BYTES: usize = 65_536;

/// One unit of evaluation. Its ids are shared with every tag it yields.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalEvent {
    /// What the event is.
    pub kind: SourceKind,
    /// Its id within the kind; part of every tag id.
    pub source_id: Arc<str>,
    /// The attacker anchor.
    pub attacker_uuid: Option<Uuid>,
    /// The identity anchor.
    pub identity_uuid: Option<Uuid>,
    /// The sensor session.
    pub session_id: Option<Arc<str>>,
    /// The decoy.
    pub decky_id: Option<Arc<str>>,
    /// The event's own time (for rate-limit windows); `None` means receive time.
    pub ts: Option<DateTime<Utc>>,
    /// The fields rules read.
    pub payload: Map<String, Value>,
}

impl EvalEvent {
    /// A new event; HTTP requests get their derived fields.
    pub fn new(
        kind: SourceKind,
        source_id: impl Into<Arc<str>>,
        mut payload: Map<String, Value>,
    ) -> EvalEvent {
        if kind == SourceKind::HttpRequest {
            derive_http_fields(&mut payload);
        }
        EvalEvent {
            kind,
            source_id: source_id.into(),
            attacker_uuid: None,
            identity_uuid: None,
            session_id: None,
            decky_id: None,
            ts: None,
            payload,
        }
    }

    /// A string field, cut to [`MAX_HAYSTACK_BYTES`] at a character boundary.
    pub fn haystack(&self, field: &str) -> Option<&str> {
        let text = self.payload.get(field)?.as_str()?;
        if text.len() <= MAX_HAYSTACK_BYTES {
            return Some(text);
        }
        let mut end = MAX_HAYSTACK_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Some(&text[..end])
    }
}

/// Add `url_decoded`, `request_path`, `request_line` and `header_text` to an HTTP payload.
pub fn derive_http_fields(payload: &mut Map<String, Value>) {
    let raw_url = payload
        .get("raw_url")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let method = payload
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(raw) = &raw_url {
        payload.insert("url_decoded".into(), Value::from(percent_decode_once(raw)));
        payload.insert("request_path".into(), Value::from(request_path(raw)));
        if let Some(method) = &method {
            payload.insert(
                "request_line".into(),
                Value::from(format!("{method} {raw}")),
            );
        }
    }
    if let Some(Value::Object(headers)) = payload.get("headers") {
        let text = header_text(headers);
        payload.insert("header_text".into(), Value::from(text));
    }
}

/// Percent-decode once; invalid escapes and invalid UTF-8 are kept as they were.
pub fn percent_decode_once(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The path of a request target: scheme and authority dropped for absolute-form targets,
/// cut at `?` or `#`.
pub fn request_path(raw: &str) -> &str {
    let without_authority = match raw.find("://") {
        Some(i)
            if raw[..i]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
                && i > 0 =>
        {
            let after = &raw[i + 3..];
            match after.find('/') {
                Some(slash) => &after[slash..],
                None => "/",
            }
        }
        _ => raw,
    };
    without_authority
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
}

/// `Name: value` lines, without credentials-bearing headers.
fn header_text(headers: &Map<String, Value>) -> String {
    const HIDDEN: [&str; 3] = ["cookie", "authorization", "proxy-authorization"];
    let mut lines = Vec::new();
    for (name, value) in headers {
        if HIDDEN.contains(&name.to_ascii_lowercase().as_str()) {
            continue;
        }
        if let Some(value) = value.as_str() {
            lines.push(format!("{name}: {value}"));
        }
    }
    lines.join("\n")
}

/// Read an RFC 3339 timestamp; a value without an offset is UTC.
pub fn parse_ts(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"))
        .ok()?;
    Some(naive.and_utc())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn http_fields_are_derived() {
        let payload = json!({"method": "GET", "raw_url": "http://victim.example:8080/a/%2e%2e/b?q=%24%7Bjndi%7D#frag",
            "headers": {"host": "victim.example", "cookie": "secret=1", "x-api-version": "${jndi:ldap://x}"}});
        let event = EvalEvent::new(
            SourceKind::HttpRequest,
            "r1",
            payload.as_object().unwrap().clone(),
        );
        let p = &event.payload;
        assert_eq!(
            p["url_decoded"],
            json!("http://victim.example:8080/a/../b?q=${jndi}#frag")
        );
        assert_eq!(p["request_path"], json!("/a/%2e%2e/b"));
        assert_eq!(
            p["request_line"],
            json!("GET http://victim.example:8080/a/%2e%2e/b?q=%24%7Bjndi%7D#frag")
        );
        assert_eq!(
            p["header_text"],
            json!("host: victim.example\nx-api-version: ${jndi:ldap://x}")
        );
    }

    #[test]
    fn invalid_escapes_are_kept() {
        assert_eq!(percent_decode_once("/a%zz%2"), "/a%zz%2");
        assert_eq!(percent_decode_once("%252e"), "%2e");
        assert_eq!(percent_decode_once("%"), "%");
    }

    #[test]
    fn origin_form_paths_are_cut_at_query() {
        assert_eq!(request_path("/x?y=1"), "/x");
        assert_eq!(request_path("/dl?file=..%2f..%2f"), "/dl");
        assert_eq!(request_path("https://h.example"), "/");
        assert_eq!(request_path("*"), "*");
    }

    #[test]
    fn long_fields_are_cut_at_a_char_boundary() {
        let text = format!("{}é", "a".repeat(MAX_HAYSTACK_BYTES - 1));
        let event = EvalEvent::new(
            SourceKind::Command,
            "c",
            json!({"command_text": text}).as_object().unwrap().clone(),
        );
        assert_eq!(
            event.haystack("command_text").unwrap().len(),
            MAX_HAYSTACK_BYTES - 1
        );
    }

    #[test]
    fn timestamps_without_offset_are_utc() {
        let a = parse_ts("2026-12-03T10:00:00Z").unwrap();
        let b = parse_ts("2026-12-03T10:00:00").unwrap();
        let c = parse_ts("2026-12-03T11:00:00+01:00").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(parse_ts("yesterday"), None);
    }
}
