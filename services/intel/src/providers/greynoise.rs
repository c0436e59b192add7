//! GreyNoise Community (INTEL.md §2): a classification, whether the address scans the
//! internet (`noise`) or belongs to a common business service (`riot`). A 404 is an answer:
//! GreyNoise has not seen the address.

use decnet_storage::GreyNoiseIntel;
use serde_json::Value;

use super::{Answer, Columns, json_body, raw_text};
use crate::config::Secret;
use crate::http::Request;

/// The request for `ip`; the `key` header only when a key is configured.
pub(crate) fn request<'a>(base: &str, ip: &str, key: Option<&'a Secret>) -> Request<'a> {
    Request {
        method: http::Method::GET,
        url: format!("{}/v3/community/{ip}", base.trim_end_matches('/')),
        headers: key.map(|k| ("key", k.expose())).into_iter().collect(),
        json_body: None,
        timeout: std::time::Duration::ZERO,
        limit: 1 << 20,
    }
}

/// The columns of a community answer.
pub(crate) fn parse(status: u16, body: &[u8]) -> Result<Answer, String> {
    let not_seen = status == 404;
    if !not_seen && !(200..300).contains(&status) {
        return Err(format!("HTTP {status}"));
    }
    // A 404 body says only that the address was not seen; an unreadable one changes nothing.
    let v = match json_body(body) {
        Ok(v) => v,
        Err(_) if not_seen => Value::Object(Default::default()),
        Err(e) => return Err(e),
    };
    if !v.is_object() {
        return Err("the answer is not an object".to_owned());
    }
    let flag = |k: &str| v.get(k).and_then(Value::as_bool);
    let columns = if not_seen {
        GreyNoiseIntel {
            classification: Some("unknown".to_owned()),
            name: None,
            tags: Vec::new(),
            noise: Some(flag("noise").unwrap_or(false)),
            riot: Some(flag("riot").unwrap_or(false)),
        }
    } else {
        GreyNoiseIntel {
            classification: Some(
                v.get("classification")
                    .and_then(Value::as_str)
                    .map_or_else(|| "unknown".to_owned(), str::to_lowercase),
            ),
            name: v.get("name").and_then(Value::as_str).map(str::to_owned),
            tags: Vec::new(),
            noise: flag("noise"),
            riot: flag("riot"),
        }
    };
    Ok(Answer {
        columns: Columns::GreyNoise(columns),
        raw: raw_text(&v),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn columns(a: Answer) -> GreyNoiseIntel {
        match a.columns {
            Columns::GreyNoise(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_seen_address_keeps_its_lower_cased_classification() {
        let body = json!({"ip": "203.0.113.7", "noise": true, "riot": false,
            "classification": "Malicious", "name": "unknown",
            "link": "https://viz.greynoise.io/ip/203.0.113.7", "last_seen": "2026-12-03",
            "message": "Success"});
        let a = parse(200, body.to_string().as_bytes()).unwrap();
        assert_eq!(a.raw, body.to_string());
        assert_eq!(
            columns(a),
            GreyNoiseIntel {
                classification: Some("malicious".into()),
                name: Some("unknown".into()),
                tags: vec![],
                noise: Some(true),
                riot: Some(false),
            }
        );
    }

    #[test]
    fn not_seen_is_unknown() {
        let body = json!({"ip": "203.0.113.7", "noise": false, "riot": false,
            "message": "IP not observed scanning the internet or contained in RIOT data set."});
        let c = columns(parse(404, body.to_string().as_bytes()).unwrap());
        assert_eq!(c.classification.as_deref(), Some("unknown"));
        assert_eq!((c.noise, c.riot, c.name), (Some(false), Some(false), None));
        let c = columns(parse(404, b"").unwrap());
        assert_eq!(c.classification.as_deref(), Some("unknown"));
    }

    #[test]
    fn errors_fail() {
        assert_eq!(parse(500, b"oops").unwrap_err(), "HTTP 500");
        assert_eq!(parse(200, b"not json").unwrap_err(), "malformed JSON");
        assert_eq!(
            parse(200, b"[]").unwrap_err(),
            "the answer is not an object"
        );
    }
}
