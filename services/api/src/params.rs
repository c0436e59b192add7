//! Path and query parameters (API.md §3 `400 invalid_request`): parsed by hand so each
//! refusal names the parameter and the value, and unknown parameters are refused rather than
//! silently ignored (a misspelt filter would otherwise widen the answer).

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use decnet_storage::TagCursor;
use uuid::Uuid;

use crate::error::ApiError;

/// A query string, checked against the parameters an endpoint takes.
#[derive(Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    /// Parse `raw` (without the `?`) and refuse names outside `allowed` and repeated names.
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Query, ApiError> {
        let mut map = HashMap::new();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            if !allowed.contains(&k.as_ref()) {
                return Err(ApiError::invalid(
                    &k,
                    format!("unknown query parameter '{k}'"),
                ));
            }
            if map.insert(k.to_string(), v.into_owned()).is_some() {
                return Err(ApiError::invalid(
                    &k,
                    format!("query parameter '{k}' is repeated"),
                ));
            }
        }
        Ok(Query(map))
    }

    /// The raw value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// An RFC 3339 time.
    pub fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.get(name)
            .map(|v| {
                DateTime::parse_from_rfc3339(v)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| {
                        ApiError::invalid(
                            name,
                            format!("{name} must be an RFC 3339 time, not {v:?}"),
                        )
                    })
            })
            .transpose()
    }

    /// `limit` within `1..=max`, `default` when absent.
    pub fn limit(&self, default: i64, max: i64) -> Result<i64, ApiError> {
        let Some(v) = self.get("limit") else {
            return Ok(default);
        };
        match v.parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid(
                "limit",
                format!("limit must be between 1 and {max}"),
            )),
        }
    }

    /// `release`, shaped `enterprise-v<major>.<minor>`.
    pub fn release(&self) -> Result<Option<String>, ApiError> {
        self.get("release")
            .map(|v| {
                if is_release(v) {
                    Ok(v.to_owned())
                } else {
                    Err(ApiError::invalid(
                        "release",
                        format!("release must look like enterprise-v18.1, not {v:?}"),
                    ))
                }
            })
            .transpose()
    }

    /// The tag cursor of a previous page.
    pub fn cursor(&self) -> Result<Option<TagCursor>, ApiError> {
        self.get("cursor")
            .map(|v| {
                decode_cursor(v)
                    .ok_or_else(|| ApiError::invalid("cursor", "cursor is not one this API issued"))
            })
            .transpose()
    }

    /// One of `allowed`.
    pub fn one_of(&self, name: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
        self.get(name)
            .map(|v| {
                if allowed.contains(&v) {
                    Ok(v.to_owned())
                } else {
                    Err(ApiError::invalid(
                        name,
                        format!("{name} must be one of {}, not {v:?}", allowed.join(", ")),
                    ))
                }
            })
            .transpose()
    }
}

/// `enterprise-v<major>.<minor>`.
pub fn is_release(v: &str) -> bool {
    let Some(rest) = v.strip_prefix("enterprise-v") else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit());
    rest.split_once('.')
        .is_some_and(|(major, minor)| digits(major) && digits(minor))
}

/// A path uuid.
pub fn uuid(name: &str, v: &str) -> Result<Uuid, ApiError> {
    // Only the hyphenated form: one spelling per resource keeps caches and logs consistent.
    if v.len() != 36 {
        return Err(ApiError::invalid(
            name,
            format!("{name} must be a uuid, not {v:?}"),
        ));
    }
    v.parse()
        .map_err(|_| ApiError::invalid(name, format!("{name} must be a uuid, not {v:?}")))
}

/// `T####` or `T####.###`: the parent and, when given, the sub-technique.
pub fn technique(name: &str, v: &str) -> Result<(String, Option<String>), ApiError> {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let parent_ok = |p: &str| p.strip_prefix('T').is_some_and(|d| digits(d, 4));
    match v.split_once('.') {
        None if parent_ok(v) => Ok((v.to_owned(), None)),
        Some((p, s)) if parent_ok(p) && digits(s, 3) => Ok((p.to_owned(), Some(v.to_owned()))),
        _ => Err(ApiError::invalid(
            name,
            format!("{name} must look like T1110 or T1110.003, not {v:?}"),
        )),
    }
}

/// A session id: 1–128 characters.
pub fn session(v: &str) -> Result<String, ApiError> {
    let n = v.chars().count();
    if (1..=128).contains(&n) {
        Ok(v.to_owned())
    } else {
        Err(ApiError::invalid(
            "session_id",
            "session_id must be 1 to 128 characters",
        ))
    }
}

/// The opaque form of a cursor: base64url of `<created_at micros>.<uuid>`.
pub fn encode_cursor(c: &TagCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}.{}", c.created_at.timestamp_micros(), c.uuid))
}

fn decode_cursor(v: &str) -> Option<TagCursor> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(v).ok()?).ok()?;
    let (micros, uuid) = text.split_once('.')?;
    Some(TagCursor {
        created_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
        uuid: uuid.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_with_their_names() {
        let q = Query::parse(Some("limit=0"), &["limit"]).unwrap();
        assert_eq!(
            q.limit(200, 1000).unwrap_err().to_string(),
            "limit must be between 1 and 1000"
        );
        let q = Query::parse(Some("limit=1000"), &["limit"]).unwrap();
        assert_eq!(q.limit(200, 1000).unwrap(), 1000);
        assert_eq!(
            Query::parse(Some("colour=red"), &["limit"])
                .unwrap_err()
                .to_string(),
            "unknown query parameter 'colour'"
        );
        assert_eq!(technique("t", "T1110.003").unwrap().0, "T1110");
        assert!(technique("t", "T111").is_err());
        assert!(technique("t", "T1110.03").is_err());
        assert!(is_release("enterprise-v18.1"));
        assert!(!is_release("enterprise-v18"));
        assert!(uuid("u", "not-a-uuid").is_err());
        let c = TagCursor {
            created_at: DateTime::from_timestamp_micros(1_796_000_000_123_456).unwrap(),
            uuid: Uuid::nil(),
        };
        let q = Query::parse(Some(&format!("cursor={}", encode_cursor(&c))), &["cursor"]).unwrap();
        assert_eq!(q.cursor().unwrap(), Some(c));
    }
}
