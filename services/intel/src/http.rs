//! The provider client: one HTTP/1.1 exchange per request over a fresh connection, TLS
//! verified against the system's roots, redirects never followed (a 3xx is an answer like
//! any other), the whole exchange under one timeout and the body under a size cap.
//!
//! A few requests a second do not need a pool, and hyper's connection-level client keeps the
//! dependency tree to what the workspace already builds. Errors name what failed, never a
//! header value, a URL or a body: keys travel in headers, addresses in URLs.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HOST, RETRY_AFTER, USER_AGENT};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, pki_types::ServerName};

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// The URL is not `http(s)://host[:port]/…`.
    #[error("unusable URL")]
    Url,
    /// No answer within the timeout.
    #[error("timed out")]
    Timeout,
    /// The connection could not be opened.
    #[error("connecting failed: {0}")]
    Connect(std::io::Error),
    /// The TLS handshake failed (an unverifiable certificate included).
    #[error("TLS failed: {0}")]
    Tls(std::io::Error),
    /// An `https://` URL while no TLS roots could be loaded.
    #[error("no TLS roots are available")]
    NoRoots,
    /// A header value could not go on the wire (a key with a control character).
    #[error("a request header is not valid HTTP")]
    Header,
    /// The exchange failed.
    #[error("HTTP exchange failed: {0}")]
    Http(#[from] hyper::Error),
    /// The body was larger than allowed.
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    /// The body could not be read.
    #[error("reading the answer failed")]
    Body,
}

/// What came back.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub(crate) status: u16,
    /// The `Retry-After` header, as sent.
    pub(crate) retry_after: Option<String>,
    pub(crate) body: Bytes,
}

/// One request.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub(crate) method: http::Method,
    pub(crate) url: String,
    /// Extra headers: the key's among them, so this type is never logged.
    pub(crate) headers: Vec<(&'static str, &'a str)>,
    pub(crate) json_body: Option<Vec<u8>>,
    pub(crate) timeout: Duration,
    /// Largest body accepted.
    pub(crate) limit: usize,
}

/// The client every provider shares.
#[derive(Clone)]
pub(crate) struct HttpClient {
    user_agent: String,
    tls: Option<TlsConnector>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("user_agent", &self.user_agent)
            .finish_non_exhaustive()
    }
}

/// A TLS configuration trusting the system's roots; `None` when there are none.
fn tls_connector() -> Option<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return None;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Some(TlsConnector::from(Arc::new(config)))
}

impl HttpClient {
    /// A client; the system's TLS roots are loaded only when `tls` is asked for, so tests
    /// against a plain-HTTP mock need none.
    pub(crate) fn new(user_agent: &str, tls: bool) -> HttpClient {
        HttpClient {
            user_agent: user_agent.to_owned(),
            tls: if tls { tls_connector() } else { None },
        }
    }

    /// Send `req` and read the whole answer.
    pub(crate) async fn send(&self, req: Request<'_>) -> Result<Response, HttpError> {
        let uri: http::Uri = req.url.parse().map_err(|_| HttpError::Url)?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(HttpError::Url),
        };
        let host = uri.host().ok_or(HttpError::Url)?.to_owned();
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = uri.authority().ok_or(HttpError::Url)?.to_string();
        let target = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), ToString::to_string);
        if https && self.tls.is_none() {
            return Err(HttpError::NoRoots);
        }
        let request = self.build(&req, &authority, &target)?;
        let limit = req.limit;
        let exchange = async {
            let tcp = TcpStream::connect((bare.as_str(), port))
                .await
                .map_err(HttpError::Connect)?;
            let _ = tcp.set_nodelay(true);
            if https {
                let tls = self.tls.as_ref().ok_or(HttpError::NoRoots)?;
                let name = ServerName::try_from(bare.clone()).map_err(|_| HttpError::Url)?;
                let stream = tls.connect(name, tcp).await.map_err(HttpError::Tls)?;
                exchange(stream, request, limit).await
            } else {
                exchange(tcp, request, limit).await
            }
        };
        tokio::time::timeout(req.timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout)?
    }

    fn build(
        &self,
        req: &Request<'_>,
        authority: &str,
        target: &str,
    ) -> Result<http::Request<Full<Bytes>>, HttpError> {
        let mut builder = http::Request::builder()
            .method(req.method.clone())
            .uri(target)
            .header(HOST, authority)
            .header(USER_AGENT, &self.user_agent)
            .header(ACCEPT, "application/json");
        for (name, value) in &req.headers {
            builder = builder.header(*name, *value);
        }
        let body = match &req.json_body {
            Some(b) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                Bytes::from(b.clone())
            }
            None => Bytes::new(),
        };
        // The builder's error would name the header, not its value; it is dropped anyway.
        builder.body(Full::new(body)).map_err(|_| HttpError::Header)
    }
}

async fn exchange<S>(
    io: S,
    request: http::Request<Full<Bytes>>,
    limit: usize,
) -> Result<Response, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    // The connection task ends when the sender is dropped after this one exchange.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let answer = sender.send_request(request).await?;
    let status = answer.status().as_u16();
    let retry_after = answer
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = Limited::new(answer.into_body(), limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                HttpError::TooLarge(limit)
            } else {
                HttpError::Body
            }
        })?
        .to_bytes();
    Ok(Response {
        status,
        retry_after,
        body,
    })
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A one-shot server that reads a request and writes `answer` (or nothing).
    async fn server(answer: Option<&'static str>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await;
            match answer {
                Some(a) => {
                    let _ = s.write_all(a.as_bytes()).await;
                }
                None => tokio::time::sleep(Duration::from_secs(5)).await,
            }
        });
        format!("http://{addr}/x?y=1")
    }

    fn get(url: String, limit: usize) -> Request<'static> {
        Request {
            method: http::Method::GET,
            url,
            headers: vec![("Key", "s3cret")],
            json_body: None,
            timeout: Duration::from_millis(300),
            limit,
        }
    }

    #[tokio::test]
    async fn answers_are_read_whole_and_redirects_are_not_followed() {
        let client = HttpClient::new("decnet-intel/test", false);
        let url = server(Some(
            "HTTP/1.1 302 Found\r\nLocation: http://192.0.2.1/\r\nRetry-After: 7\r\n\
             Content-Length: 2\r\n\r\nok",
        ))
        .await;
        let r = client.send(get(url, 1024)).await.unwrap();
        assert_eq!((r.status, r.retry_after.as_deref()), (302, Some("7")));
        assert_eq!(&r.body[..], b"ok");
    }

    #[tokio::test]
    async fn oversized_silent_and_unreachable_answers_are_errors_that_name_no_secret() {
        let client = HttpClient::new("decnet-intel/test", false);
        let url = server(Some(
            "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n01234567890123456789",
        ))
        .await;
        let e = client.send(get(url, 10)).await.unwrap_err();
        assert_eq!(e.to_string(), "the answer is larger than 10 bytes");
        let url = server(None).await;
        let e = client.send(get(url, 10)).await.unwrap_err();
        assert_eq!(e.to_string(), "timed out");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = client
            .send(get(format!("http://127.0.0.1:{port}/"), 10))
            .await
            .unwrap_err();
        assert!(e.to_string().starts_with("connecting failed: "), "{e}");
        assert!(!e.to_string().contains("s3cret") && !e.to_string().contains("127.0.0.1"));
        let e = client
            .send(get("https://127.0.0.1:1/".into(), 10))
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "no TLS roots are available");
        let mut bad = get("http://127.0.0.1:1/".into(), 10);
        bad.headers = vec![("Key", "line\nbreak")];
        assert_eq!(
            client.send(bad).await.unwrap_err().to_string(),
            "a request header is not valid HTTP"
        );
        assert_eq!(
            client
                .send(get("ftp://example.org/".into(), 10))
                .await
                .unwrap_err()
                .to_string(),
            "unusable URL"
        );
    }
}
