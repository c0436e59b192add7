//! What a pending message says (EVENTS.md §4.10) and the bytes that go upstream (SMTP.md
//! §9.5).
//!
//! A payload that cannot be read is poison and goes to the DLQ; everything else about it is
//! judged later, by the eligibility checks. Addresses from the payload end up on SMTP command
//! lines, so any that could break a line (a control character, a blank, an angle bracket)
//! makes the payload poison rather than reach upstream.
//!
//! Preparation changes only line ends and, when the top-level header block has none, adds a
//! `From:` line. Dot-stuffing is the SMTP client's: lettre stuffs every line that starts with
//! a dot after a CRLF, which is why bare LFs become CRLF here first.

use decnet_bus::Poison;
use decnet_proto::wire::is_decky;
use decnet_ttp::anchor::canonical_ip;
use serde_json::{Map, Value};

/// The fields of `smtp.probe.pending` that probe-relay uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    /// Decoy (`decky_id`, else the compatible `decky`).
    pub(crate) decky_id: String,
    /// The attacker's address, canonical.
    pub(crate) attacker_ip: String,
    /// Quarantine name.
    pub(crate) stored_as: String,
    /// Envelope sender as given; empty for `<>`.
    pub(crate) mail_from: String,
    /// Accepted recipients.
    pub(crate) recipients: Vec<String>,
    /// SHA-256 of the stored message, when the producer gave it.
    pub(crate) body_sha256: Option<String>,
}

fn poison(code: &'static str, detail: impl Into<String>) -> Poison {
    Poison {
        code,
        detail: detail.into(),
    }
}

/// Whether `address` can go on a `MAIL FROM:<…>` or `RCPT TO:<…>` line unchanged.
pub(crate) fn sendable(address: &str) -> bool {
    !address.is_empty()
        && address.len() <= 320
        && !address
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>')
}

fn text<'a>(p: &'a Map<String, Value>, field: &str) -> Result<&'a str, Poison> {
    match p.get(field) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(poison("schema_error", format!("{field}: required"))),
        Some(_) => Err(poison("schema_error", format!("{field}: expected string"))),
    }
}

/// The recipients: `rcpt_list` when it holds any, else `rcpt_to` split at commas.
fn recipients(p: &Map<String, Value>) -> Result<Vec<String>, Poison> {
    let listed: Vec<String> = match p.get("rcpt_list") {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    poison("schema_error", format!("rcpt_list[{i}]: expected string"))
                })
            })
            .collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    let all = if listed.is_empty() {
        text(p, "rcpt_to")?.split(',').map(str::to_owned).collect()
    } else {
        listed
    };
    let all: Vec<String> = all
        .iter()
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .collect();
    if let Some(bad) = all.iter().position(|r| !sendable(r)) {
        return Err(poison(
            "schema_error",
            format!("recipient {bad}: not an address"),
        ));
    }
    Ok(all)
}

/// A quarantine name is one path component: it names an object and, for producers without
/// the bucket, a file under the quarantine directory.
fn check_stored_as(name: &str) -> Result<(), Poison> {
    let bad = name.is_empty()
        || name.len() > 255
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control());
    if bad {
        return Err(poison(
            "schema_error",
            "stored_as: not a quarantine file name",
        ));
    }
    Ok(())
}

/// Read a pending message's body; `schema_version` is its `decnet-schema-version` header.
pub(crate) fn decode(body: &[u8], schema_version: Option<&str>) -> Result<Pending, Poison> {
    if let Some(v) = schema_version {
        let known = v
            .trim()
            .parse::<u32>()
            .is_ok_and(|v| v <= decnet_proto::SCHEMA_VERSION);
        if !known {
            return Err(poison(
                "unsupported_schema_version",
                format!("decnet-schema-version {v}"),
            ));
        }
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| poison("decode_error", format!("invalid JSON: {e}")))?;
    let value = decnet_ttp::fanout::unwrap_envelope("smtp.probe.pending", &value);
    let Some(p) = value.as_object() else {
        return Err(poison("decode_error", "the body is not a JSON object"));
    };
    let decky_id = match p.get("decky_id") {
        Some(Value::String(d)) => d.as_str(),
        _ => text(p, "decky")?,
    };
    if !is_decky(decky_id) {
        return Err(poison("schema_error", "decky_id: not a decoy name"));
    }
    let ip = text(p, "attacker_ip")?;
    let attacker_ip =
        canonical_ip(ip).ok_or_else(|| poison("no_anchor", "attacker_ip: not an address"))?;
    let stored_as = text(p, "stored_as")?;
    check_stored_as(stored_as)?;
    let mail_from = text(p, "mail_from")?.trim();
    let mail_from = mail_from
        .strip_prefix('<')
        .and_then(|m| m.strip_suffix('>'))
        .unwrap_or(mail_from);
    if !mail_from.is_empty() && !sendable(mail_from) {
        return Err(poison("schema_error", "mail_from: not an address"));
    }
    // Optional: an unreadable value counts as absent (EVENTS.md §1.3).
    let body_sha256 = p
        .get("body_sha256")
        .and_then(Value::as_str)
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase);
    Ok(Pending {
        decky_id: decky_id.to_owned(),
        attacker_ip,
        stored_as: stored_as.to_owned(),
        mail_from: mail_from.to_owned(),
        recipients: recipients(p)?,
        body_sha256,
    })
}

/// Every LF not preceded by CR becomes CRLF.
fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    let mut previous = 0u8;
    for &b in bytes {
        if b == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        previous = b;
    }
    out
}

/// Whether the top-level header block (the lines before the first empty one) has a `From:`
/// field. Continuation lines start with a blank and are never a field name.
fn has_from(message: &[u8]) -> bool {
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return false;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            continue;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = line[..colon].trim_ascii_end();
            if name.eq_ignore_ascii_case(b"from") {
                return true;
            }
        }
    }
    false
}

/// The bytes to send: CRLF line ends, and `From: <from>` first when the header block has no
/// `From:` and there is an address to put there.
///
/// lettre always writes `CRLF . CRLF` after the bytes it is given, and that first CRLF ends
/// the last line of the message (RFC 5321 §4.1.1.4). A stored message whose last line already
/// ends (the decoy keeps every line's end) would arrive with an empty line added, so that one
/// line end is left to lettre.
pub(crate) fn prepare(stored: &[u8], from: Option<&str>) -> Vec<u8> {
    let mut message = crlf(stored);
    if message.ends_with(b"\r\n") {
        message.truncate(message.len() - 2);
    }
    match from.filter(|f| !f.is_empty()) {
        Some(from) if !has_from(&message) => {
            let mut out = format!("From: {from}\r\n").into_bytes();
            out.extend_from_slice(&message);
            out
        }
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(v: &Value) -> Vec<u8> {
        serde_json::to_vec(v).unwrap()
    }

    fn pending() -> Value {
        json!({"decky": "decoy-01", "attacker_ip": "::ffff:203.0.113.7",
            "stored_as": "2026-12-04T10:00:00Z_0123456789ab_Q.eml", "mail_from": "<a@b.example>",
            "rcpt_to": "x@y.example, z@y.example", "size_bytes": "12",
            "body_sha256": "AB".repeat(32)})
    }

    #[test]
    fn a_pending_message_reads_compatibly() {
        let p = decode(&body(&pending()), None).unwrap();
        assert_eq!(p.decky_id, "decoy-01");
        assert_eq!(p.attacker_ip, "203.0.113.7");
        assert_eq!(p.mail_from, "a@b.example");
        assert_eq!(p.recipients, ["x@y.example", "z@y.example"]);
        assert_eq!(p.body_sha256, Some("ab".repeat(32)));

        let mut v = pending();
        v["rcpt_list"] = json!(["only@y.example"]);
        v["decky_id"] = json!("decoy-02");
        v["body_sha256"] = json!(12);
        v["mail_from"] = json!("");
        let p = decode(&body(&v), Some("1")).unwrap();
        assert_eq!((p.decky_id.as_str(), p.recipients.len()), ("decoy-02", 1));
        assert_eq!((p.mail_from.as_str(), p.body_sha256), ("", None));

        let envelope = json!({"v": 1, "topic": "smtp.probe.pending", "payload": pending()});
        assert_eq!(decode(&body(&envelope), None).unwrap().decky_id, "decoy-01");
    }

    #[test]
    fn unreadable_payloads_are_poison_with_the_field_named() {
        let with = |field: &str, value: Value| {
            let mut v = pending();
            if value.is_null() {
                v.as_object_mut().unwrap().remove(field);
            } else {
                v[field] = value;
            }
            decode(&body(&v), None).unwrap_err()
        };
        let cases = [
            (
                with("stored_as", Value::Null),
                "schema_error",
                "stored_as: required",
            ),
            (
                with("stored_as", json!("../../etc/passwd")),
                "schema_error",
                "stored_as: not a quarantine file name",
            ),
            (
                with("attacker_ip", json!("Unknown")),
                "no_anchor",
                "attacker_ip: not an address",
            ),
            (
                with("decky", json!("Decoy 1")),
                "schema_error",
                "decky_id: not a decoy name",
            ),
            (
                with("mail_from", json!(7)),
                "schema_error",
                "mail_from: expected string",
            ),
            (
                with("mail_from", json!("a@b>\r\nRCPT TO:<c@d")),
                "schema_error",
                "mail_from: not an address",
            ),
            (
                with("rcpt_to", json!("ok@x, bad\r\nDATA")),
                "schema_error",
                "recipient 1: not an address",
            ),
            (
                with("rcpt_list", json!(["a@b", 3])),
                "schema_error",
                "rcpt_list[1]: expected string",
            ),
        ];
        for (got, code, detail) in cases {
            assert_eq!((got.code, got.detail.as_str()), (code, detail));
        }
        assert_eq!(decode(b"{nope", None).unwrap_err().code, "decode_error");
        assert_eq!(decode(b"[1]", None).unwrap_err().code, "decode_error");
        assert_eq!(
            decode(&body(&pending()), Some("2")).unwrap_err().code,
            "unsupported_schema_version"
        );
    }

    #[test]
    fn preparation_fixes_line_ends_and_adds_only_a_missing_from() {
        let stored = b"Subject: hi\nTo: x@y\n\n.leading dot\r\nbody\n";
        assert_eq!(
            prepare(stored, Some("a@b")),
            // The last line end is lettre's to write, with the final dot.
            b"From: a@b\r\nSubject: hi\r\nTo: x@y\r\n\r\n.leading dot\r\nbody".to_vec()
        );
        let with_from = b"Subject: hi\r\nfrom : someone@else\r\n\r\nbody";
        assert_eq!(prepare(with_from, Some("a@b")), with_from.to_vec());
        // A From: in the body is not a header.
        let body_from = b"Subject: hi\r\n\r\nFrom: me\r\n";
        assert!(prepare(body_from, Some("a@b")).starts_with(b"From: a@b\r\nSubject"));
        // A folded line is not a field.
        let folded = b"Subject: hi\r\n from: x\r\n\r\n";
        assert!(prepare(folded, Some("a@b")).starts_with(b"From: a@b\r\n"));
        // Nothing to put there: left alone.
        assert_eq!(
            prepare(b"Subject: hi\r\n\r\nx", None),
            b"Subject: hi\r\n\r\nx".to_vec()
        );
        assert_eq!(prepare(b"a\r\rb", Some("")), b"a\r\rb".to_vec());
    }
}
