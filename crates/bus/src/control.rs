//! Both ends of a control request (EVENTS.md §7): the owner decoding a request body in the
//! API's words, and a caller (the CLI now, the REST API later) sending one and reading the
//! owner's answer or refusal.

use std::time::Duration;

use decnet_proto::control::{ERROR_CODE_HEADER, ERROR_HEADER};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A request the owner refused: the HTTP status the API passes on, and its words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 400, 404, 409, 422 or 503.
    pub code: u16,
    /// For the client.
    pub message: String,
}

impl Refusal {
    /// A refusal with status `code`.
    pub fn new(code: u16, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// Answer a service request: the reply body, or the refusal in the `Nats-Service-Error`
/// headers.
pub async fn respond(
    request: &async_nats::service::Request,
    reply: Result<bytes::Bytes, Refusal>,
) -> Result<(), async_nats::PublishError> {
    let reply = reply.map_err(|r| async_nats::service::error::Error {
        status: r.message,
        code: usize::from(r.code),
    });
    request.respond(reply).await
}

/// Decode a request body: malformed JSON is 400 `request body is not valid JSON: <reason> at
/// line L column C`; valid JSON of the wrong shape is 422 naming the field (`unknown field
/// 'x'`, `missing field 'y'`), as API.md words them.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| {
        if !e.is_data() {
            return Refusal {
                code: 400,
                message: format!("request body is not valid JSON: {e}"),
            };
        }
        let text = e.to_string();
        let text = text
            .rsplit_once(" at line ")
            .map_or(text.as_str(), |(head, _)| head)
            .replace('`', "'");
        // `unknown field 'x', expected one of …`: the API names only the field.
        let message = match text.split_once(", expected") {
            Some((head, _)) if head.starts_with("unknown field") => head.to_owned(),
            _ => text,
        };
        Refusal { code: 422, message }
    })
}

/// Why a control request got no answer to use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// NATS could not be reached.
    #[error("cannot reach NATS at {url}: {detail}")]
    Unreachable {
        /// The server.
        url: String,
        /// Why.
        detail: String,
    },
    /// Nobody answered in time: the owner is down.
    #[error("no answer on {subject} within {} s", .within.as_secs())]
    Unavailable {
        /// The subject asked.
        subject: String,
        /// How long the caller waited.
        within: Duration,
    },
    /// The owner refused, in its words.
    #[error("{message} (status {code})")]
    Refused {
        /// The status it gave.
        code: String,
        /// Its message.
        message: String,
    },
    /// The answer was not JSON.
    #[error("the answer is not JSON: {0}")]
    NotJson(String),
}

/// Send one request to `subject` on the server at `url` and return the owner's answer.
pub async fn request(
    url: &str,
    subject: &str,
    body: &impl Serialize,
    within: Duration,
) -> Result<Value, RequestError> {
    let client = async_nats::ConnectOptions::new()
        .name("decnet-cli")
        .connection_timeout(within)
        .request_timeout(Some(within))
        .connect(url)
        .await
        .map_err(|e| RequestError::Unreachable {
            url: url.to_owned(),
            detail: e.to_string(),
        })?;
    let payload = serde_json::to_vec(body).expect("requests serialise");
    let reply = client
        .request(subject.to_owned(), payload.into())
        .await
        .map_err(|_| RequestError::Unavailable {
            subject: subject.to_owned(),
            within,
        })?;
    if let Some(headers) = &reply.headers
        && let Some(message) = headers.get(ERROR_HEADER)
    {
        return Err(RequestError::Refused {
            code: headers
                .get(ERROR_CODE_HEADER)
                .map_or_else(|| "?".to_owned(), |c| c.as_str().to_owned()),
            message: message.as_str().to_owned(),
        });
    }
    serde_json::from_slice(&reply.payload).map_err(|e| RequestError::NotJson(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Req {
        rule_id: String,
    }

    #[test]
    fn refusals_use_the_api_words() {
        let bad = decode::<Req>(b"{oops").unwrap_err();
        assert_eq!(bad.code, 400);
        assert_eq!(
            bad.message,
            "request body is not valid JSON: key must be a string at line 1 column 2"
        );
        let extra = decode::<Req>(br#"{"rule_id": "R0001", "colour": 1}"#).unwrap_err();
        assert_eq!(
            (extra.code, extra.message.as_str()),
            (422, "unknown field 'colour'")
        );
        let missing = decode::<Req>(b"{}").unwrap_err();
        assert_eq!(
            (missing.code, missing.message.as_str()),
            (422, "missing field 'rule_id'")
        );
    }
}
