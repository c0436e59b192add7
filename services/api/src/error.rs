//! The one error type of the HTTP layer and its mapping to API.md §1 and §3: a status, an
//! `error` word from the spec's list, a message for the client and, when one field is at
//! fault, its JSON pointer.
//!
//! Internal failures (the database, a reply that is not JSON) are logged here once with their
//! cause and answered with a fixed message, so nothing about the deployment leaks to clients.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;

/// The body of every non-2xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// One of `unauthorized`, `forbidden`, `not_found`, `method_not_allowed`,
    /// `malformed_json`, `unsupported_media_type`, `invalid_request`, `unprocessable`,
    /// `payload_too_large`, `unavailable`, `internal`.
    pub error: String,
    /// What was wrong, naming the value.
    pub message: String,
    /// JSON pointer of the field at fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Why a request was not served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 401: no usable token; `presented` says whether one was sent (`error="invalid_token"`).
    #[error("{message}")]
    Unauthorized {
        /// For the client.
        message: String,
        /// Whether a token was presented.
        presented: bool,
    },
    /// 403: a viewer on an admin endpoint.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 405, with the methods the path allows.
    #[error("method not allowed")]
    MethodNotAllowed(Option<HeaderValue>),
    /// 400 `malformed_json`.
    #[error("{0}")]
    MalformedJson(String),
    /// 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 400 `invalid_request`: a path or query parameter.
    #[error("{message}")]
    InvalidRequest {
        /// For the client.
        message: String,
        /// The parameter, as a pointer (`/limit`).
        field: Option<String>,
    },
    /// 422.
    #[error("{message}")]
    Unprocessable {
        /// For the client.
        message: String,
        /// The body field.
        field: Option<String>,
    },
    /// 413.
    #[error("request body is larger than 64 KiB")]
    PayloadTooLarge,
    /// 503: an owner did not answer, or a secret is missing.
    #[error("{0}")]
    Unavailable(String),
    /// 500: logged where it happened; the client sees a fixed message.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// A 400 for a query or path parameter.
    pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::InvalidRequest {
            message: message.into(),
            field: Some(format!("/{field}")),
        }
    }

    /// A 422 naming a body field.
    pub fn unprocessable(field: Option<&str>, message: impl Into<String>) -> ApiError {
        ApiError::Unprocessable {
            message: message.into(),
            field: field.map(|f| format!("/{f}")),
        }
    }

    /// A failure the client cannot act on: logged once here with its cause.
    pub fn internal(what: &str, cause: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, what, "request failed");
        ApiError::Internal
    }

    /// The status and the spec's word for it.
    pub fn status(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized { .. } => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::InvalidRequest { .. } => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::Unprocessable { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The body the client sees.
    pub fn body(&self) -> ErrorBody {
        let field = match self {
            ApiError::InvalidRequest { field, .. } | ApiError::Unprocessable { field, .. } => {
                field.clone()
            }
            _ => None,
        };
        ErrorBody {
            error: self.status().1.to_owned(),
            message: self.to_string(),
            field,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _) = self.status();
        let body = serde_json::to_vec(&self.body()).expect("error bodies serialise");
        let mut response = (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthorized { presented, .. } => {
                let challenge = if presented {
                    r#"Bearer realm="decnet", error="invalid_token""#
                } else {
                    r#"Bearer realm="decnet""#
                };
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
            ApiError::MethodNotAllowed(Some(allow)) => {
                headers.insert(header::ALLOW, allow);
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_client_message() {
        let cases: Vec<(ApiError, u16, &str, &str)> = vec![
            (
                ApiError::invalid("limit", "limit must be between 1 and 1000"),
                400,
                "invalid_request",
                "limit must be between 1 and 1000",
            ),
            (
                ApiError::unprocessable(Some("state"), "state must be one of enabled"),
                422,
                "unprocessable",
                "state must be one of enabled",
            ),
            (ApiError::Internal, 500, "internal", "internal error"),
            (
                ApiError::PayloadTooLarge,
                413,
                "payload_too_large",
                "request body is larger than 64 KiB",
            ),
        ];
        for (e, code, word, message) in cases {
            assert_eq!(e.status().0.as_u16(), code, "{e:?}");
            let body = e.body();
            assert_eq!(
                (body.error.as_str(), body.message.as_str()),
                (word, message)
            );
        }
        assert_eq!(
            ApiError::invalid("limit", "x").body().field.as_deref(),
            Some("/limit")
        );
    }
}
