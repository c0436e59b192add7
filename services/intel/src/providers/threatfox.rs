//! ThreatFox `search_ioc` (INTEL.md §2): the IOCs recorded for the address, kept when the
//! IOC is the address itself or the address with a port.

use decnet_storage::ThreatFoxIntel;
use serde_json::{Value, json};

use super::{Answer, Columns, json_body, raw_text, sorted};
use crate::config::Secret;
use crate::http::Request;

/// The request for `ip`; the `Auth-Key` header only when a key is configured.
pub(crate) fn request<'a>(base: &str, ip: &str, key: Option<&'a Secret>) -> Request<'a> {
    let body = json!({"query": "search_ioc", "search_term": ip});
    Request {
        method: http::Method::POST,
        url: format!("{}/api/v1/", base.trim_end_matches('/')),
        headers: key.map(|k| ("Auth-Key", k.expose())).into_iter().collect(),
        json_body: Some(body.to_string().into_bytes()),
        timeout: std::time::Duration::ZERO,
        limit: 4 << 20,
    }
}

/// Whether an IOC names `ip`: the address, `address:port` or `[v6 address]:port`.
fn names(ioc: &str, ip: &str) -> bool {
    if ioc == ip {
        return true;
    }
    let rest = ioc.strip_prefix(&format!("[{ip}]:")).or_else(|| {
        ioc.strip_prefix(&format!("{ip}:"))
            .filter(|_| !ip.contains(':'))
    });
    rest.is_some_and(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
}

/// The columns of a search answer for `ip`.
pub(crate) fn parse(ip: &str, status: u16, body: &[u8]) -> Result<Answer, String> {
    if !(200..300).contains(&status) {
        return Err(format!("HTTP {status}"));
    }
    let v = json_body(body)?;
    let entries: Vec<&Value> = match v.get("query_status").and_then(Value::as_str) {
        Some("ok") => v
            .get("data")
            .and_then(Value::as_array)
            .ok_or("query_status ok without a data list")?
            .iter()
            .filter(|e| {
                e.get("ioc")
                    .and_then(Value::as_str)
                    .is_some_and(|i| names(i, ip))
            })
            .collect(),
        Some("no_result") => Vec::new(),
        Some(other) => {
            let shown: String = other.chars().take(64).collect();
            return Err(format!("query_status {shown:?}"));
        }
        None => return Err("the answer has no query_status".to_owned()),
    };
    let text = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).map(str::to_owned);
    let family = |e: &Value| text(e, "malware_printable").or_else(|| text(e, "malware"));
    let columns = ThreatFoxIntel {
        listed: Some(!entries.is_empty()),
        threat_types: sorted(
            entries
                .iter()
                .filter_map(|e| text(e, "threat_type"))
                .collect(),
        ),
        ioc_types: sorted(entries.iter().filter_map(|e| text(e, "ioc_type")).collect()),
        malware_families: sorted(entries.iter().filter_map(|e| family(e)).collect()),
        confidence_max: entries
            .iter()
            .filter_map(|e| e.get("confidence_level").and_then(Value::as_i64))
            .filter(|c| (0..=100).contains(c))
            .max()
            .and_then(|c| i32::try_from(c).ok()),
    };
    Ok(Answer {
        columns: Columns::ThreatFox(columns),
        raw: raw_text(&v),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(a: Answer) -> ThreatFoxIntel {
        match a.columns {
            Columns::ThreatFox(c) => c,
            other => panic!("{other:?}"),
        }
    }

    fn ioc(ioc: &str, threat: &str, kind: &str, printable: Option<&str>, conf: i64) -> Value {
        json!({"id": "1234", "ioc": ioc, "threat_type": threat, "ioc_type": kind,
            "malware": "win.cobalt_strike", "malware_printable": printable,
            "confidence_level": conf, "first_seen": "2026-11-30 08:00:00 UTC",
            "last_seen": null, "reporter": "abuse_ch", "tags": ["c2"]})
    }

    #[test]
    fn iocs_of_the_address_are_kept_sorted_and_distinct() {
        let body = json!({"query_status": "ok", "data": [
            ioc("203.0.113.7:443", "botnet_cc", "ip:port", Some("Cobalt Strike"), 75),
            ioc("203.0.113.7", "payload_delivery", "ip", None, 50),
            ioc("203.0.113.7:8080", "botnet_cc", "ip:port", Some("Cobalt Strike"), 100),
            ioc("203.0.113.70:443", "cc_skimming", "ip:port", Some("Magecart"), 100),
        ]});
        let c = columns(parse("203.0.113.7", 200, body.to_string().as_bytes()).unwrap());
        assert_eq!(
            c,
            ThreatFoxIntel {
                listed: Some(true),
                threat_types: vec!["botnet_cc".into(), "payload_delivery".into()],
                ioc_types: vec!["ip".into(), "ip:port".into()],
                malware_families: vec!["Cobalt Strike".into(), "win.cobalt_strike".into()],
                confidence_max: Some(100),
            }
        );
    }

    #[test]
    fn no_result_is_not_listed_and_other_statuses_fail() {
        let body = json!({"query_status": "no_result",
            "data": "Your search did not yield any results"});
        let c = columns(parse("203.0.113.7", 200, body.to_string().as_bytes()).unwrap());
        assert_eq!(
            c,
            ThreatFoxIntel {
                listed: Some(false),
                ..ThreatFoxIntel::default()
            }
        );
        let body = json!({"query_status": "illegal_search_term", "data": null});
        assert_eq!(
            parse("203.0.113.7", 200, body.to_string().as_bytes()).unwrap_err(),
            "query_status \"illegal_search_term\""
        );
        assert_eq!(parse("203.0.113.7", 401, b"").unwrap_err(), "HTTP 401");
        assert_eq!(
            parse("203.0.113.7", 200, b"{").unwrap_err(),
            "malformed JSON"
        );
    }

    #[test]
    fn an_ioc_names_the_address_alone_or_with_a_port() {
        assert!(names("203.0.113.7", "203.0.113.7"));
        assert!(names("203.0.113.7:443", "203.0.113.7"));
        assert!(!names("203.0.113.70:443", "203.0.113.7"));
        assert!(!names("203.0.113.7:", "203.0.113.7"));
        assert!(names("[2001:db8::1]:443", "2001:db8::1"));
        assert!(!names("2001:db8::1:443", "2001:db8::1"));
    }
}
