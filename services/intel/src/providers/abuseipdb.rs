//! AbuseIPDB `check` (INTEL.md §2): the confidence score, and the categories of the
//! individual reports, which only `verbose` returns.

use decnet_storage::AbuseIpdbIntel;
use serde_json::Value;

use super::{Answer, Columns, json_body, raw_text, sorted};
use crate::config::Secret;
use crate::http::Request;

/// The request for `ip`; the key goes in the `Key` header.
pub(crate) fn request<'a>(base: &str, ip: &str, key: &'a Secret) -> Request<'a> {
    Request {
        method: http::Method::GET,
        url: format!(
            "{}/api/v2/check?ipAddress={}&maxAgeInDays=30&verbose",
            base.trim_end_matches('/'),
            query_value(ip)
        ),
        headers: vec![("Key", key.expose())],
        json_body: None,
        timeout: std::time::Duration::ZERO,
        limit: 4 << 20,
    }
}

/// An address in a query string: IPv6 colons are legal there, only `%` and `+` would not be,
/// and a canonical address has neither.
fn query_value(ip: &str) -> String {
    ip.replace('%', "%25").replace('+', "%2B")
}

/// The columns of a `check` answer.
pub(crate) fn parse(status: u16, body: &[u8]) -> Result<Answer, String> {
    if !(200..300).contains(&status) {
        return Err(format!("HTTP {status}"));
    }
    let v = json_body(body)?;
    let data = v.get("data").ok_or("the answer has no data")?;
    let score = data
        .get("abuseConfidenceScore")
        .and_then(Value::as_i64)
        .filter(|s| (0..=100).contains(s))
        .ok_or("the answer has no abuseConfidenceScore in 0-100")?;
    let categories = data
        .get("reports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("categories").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_i64)
        .collect();
    let columns = AbuseIpdbIntel {
        score: i32::try_from(score).ok(),
        categories: sorted(categories),
        total_reports: data
            .get("totalReports")
            .and_then(Value::as_i64)
            .and_then(|n| i32::try_from(n).ok()),
        is_tor: data.get("isTor").and_then(Value::as_bool),
    };
    Ok(Answer {
        columns: Columns::AbuseIpdb(columns),
        raw: raw_text(&v),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn columns(a: Answer) -> AbuseIpdbIntel {
        match a.columns {
            Columns::AbuseIpdb(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn categories_of_every_report_are_unioned_and_sorted() {
        let body = json!({"data": {
        "ipAddress": "203.0.113.7", "isPublic": true, "abuseConfidenceScore": 95,
        "totalReports": 3, "isTor": false,
        "reports": [
            {"reportedAt": "2026-12-01T10:00:00+00:00", "categories": [22, 18]},
            {"reportedAt": "2026-12-02T10:00:00+00:00", "categories": [18, 14]},
            {"reportedAt": "2026-12-03T10:00:00+00:00", "categories": []}
        ]}});
        let c = columns(parse(200, body.to_string().as_bytes()).unwrap());
        assert_eq!(
            c,
            AbuseIpdbIntel {
                score: Some(95),
                categories: vec![14, 18, 22],
                total_reports: Some(3),
                is_tor: Some(false),
            }
        );
    }

    #[test]
    fn a_clean_address_has_no_categories() {
        let body = json!({"data": {"abuseConfidenceScore": 0, "totalReports": 0,
            "isTor": false, "reports": []}});
        let c = columns(parse(200, body.to_string().as_bytes()).unwrap());
        assert_eq!((c.score, c.categories.len()), (Some(0), 0));
    }

    #[test]
    fn errors_and_unreadable_answers_fail_without_quoting_the_body() {
        assert_eq!(parse(401, b"{\"errors\":[]}").unwrap_err(), "HTTP 401");
        assert_eq!(parse(200, b"{\"data\": [").unwrap_err(), "malformed JSON");
        assert_eq!(parse(200, b"{}").unwrap_err(), "the answer has no data");
        assert_eq!(
            parse(200, b"{\"data\":{\"abuseConfidenceScore\":250}}").unwrap_err(),
            "the answer has no abuseConfidenceScore in 0-100"
        );
    }
}
