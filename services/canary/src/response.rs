//! What the beacon answers (CANARY.md §3): the same 43-byte transparent GIF for every `GET`
//! under `/c/`, and nginx's own plain error pages for everything else, with exactly nginx's
//! header set. Nothing here may name the product or a library.

use http::header::{
    ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, DATE, EXPIRES, HeaderValue,
    PRAGMA, SERVER,
};
use http::{Response, StatusCode};

/// The transparent 1×1 GIF89a every beacon hit gets.
pub const GIF: [u8; 43] = [
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x01, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x01, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// The body of an answer, before the HTTP layer turns it into bytes.
pub type Body = http_body_util::Full<bytes::Bytes>;

/// Whether the client asked to close the connection; the answer says the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// `Connection: keep-alive`.
    KeepAlive,
    /// `Connection: close`.
    Close,
}

fn base(
    status: StatusCode,
    content_type: &'static str,
    len: usize,
    conn: Persistence,
) -> http::response::Builder {
    // In nginx's order, `Date` second; header names go out in nginx's case (the HTTP layer).
    let date = chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    Response::builder()
        .status(status)
        .header(SERVER, HeaderValue::from_static("nginx"))
        .header(
            DATE,
            HeaderValue::from_str(&date).expect("an HTTP date is a valid header value"),
        )
        .header(CONTENT_TYPE, HeaderValue::from_static(content_type))
        .header(CONTENT_LENGTH, HeaderValue::from(len))
        .header(
            CONNECTION,
            HeaderValue::from_static(match conn {
                Persistence::KeepAlive => "keep-alive",
                Persistence::Close => "close",
            }),
        )
}

/// The GIF, with or without its body (`HEAD`).
pub fn gif(head: bool, conn: Persistence) -> Response<Body> {
    let body = if head {
        Body::default()
    } else {
        Body::from(bytes::Bytes::from_static(&GIF))
    };
    base(StatusCode::OK, "image/gif", GIF.len(), conn)
        .header(
            CACHE_CONTROL,
            HeaderValue::from_static("no-store, no-cache, must-revalidate, max-age=0"),
        )
        .header(PRAGMA, HeaderValue::from_static("no-cache"))
        .header(
            EXPIRES,
            HeaderValue::from_static("Thu, 01 Jan 1970 00:00:01 GMT"),
        )
        .body(body)
        .expect("static headers are valid")
}

/// nginx's words for a status, which are not always the standard reason phrase.
fn nginx_reason(status: StatusCode) -> &'static str {
    match status.as_u16() {
        405 => "Not Allowed",
        414 => "Request-URI Too Large",
        _ => status.canonical_reason().unwrap_or("Error"),
    }
}

/// nginx's default error page for `status`.
pub fn nginx_page(status: StatusCode) -> String {
    let line = format!("{} {}", status.as_u16(), nginx_reason(status));
    format!(
        "<html>\r\n<head><title>{line}</title></head>\r\n<body>\r\n<center><h1>{line}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
}

/// An nginx-style error answer: 404, 405 (with `Allow: GET, HEAD`) or 414.
pub fn error(status: StatusCode, head: bool, conn: Persistence) -> Response<Body> {
    let page = nginx_page(status);
    let mut builder = base(status, "text/html", page.len(), conn);
    if status == StatusCode::METHOD_NOT_ALLOWED {
        builder = builder.header(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    let body = if head {
        Body::default()
    } else {
        Body::from(page)
    };
    builder
        .extension(hyper::ext::ReasonPhrase::from_static(
            nginx_reason(status).as_bytes(),
        ))
        .body(body)
        .expect("static headers are valid")
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    #[test]
    fn the_gif_is_the_spec_s() {
        let hex: String = GIF.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "47494638396101000100800100000000ffffff21f90401000001002c00000000010001000002024401003b"
        );
        let sha: String = Sha256::digest(GIF)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            sha,
            "c7c98f1037a58523c7c6e44b3f69b68269a275a74656c73249fe0fa0f0ab1562"
        );
    }

    #[test]
    fn error_pages_look_like_nginx() {
        assert_eq!(
            nginx_page(StatusCode::NOT_FOUND),
            "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
        );
        let r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            false,
            Persistence::KeepAlive,
        );
        assert_eq!(r.headers()["allow"], "GET, HEAD");
    }
}
