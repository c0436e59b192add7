//! The beacon listener (CANARY.md §3–§4): an axum router behind hyper's HTTP/1 server, set to
//! write header names in nginx's case. It faces attackers, so it has one route family, answers
//! like a default nginx, and never reveals what it is.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use chrono::Utc;
use http::{HeaderMap, Method, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::beacon::{Beacon, Hit, Query, percent_decode};
use crate::net::{Cidr, client_address};
use crate::response::{self, Persistence};
use crate::scanner::Scanners;
use crate::spool::Spool;

/// The longest request line answered with the GIF; longer ones get `414` (CANARY.md §4).
pub const MAX_REQUEST_LINE: usize = 16 * 1024;
const MAX_USER_AGENT: usize = 1024;
const MAX_PATH: usize = 2048;
const MAX_HEADERS_JSON: usize = 16 * 1024;
/// Headers accepted in one request (their total size is bounded by hyper's buffer).
const MAX_HEADERS: usize = 1000;

/// What the handler needs.
pub struct App {
    /// Records hits.
    pub beacon: Arc<Beacon>,
    /// Where hits go while the database is away.
    pub spool: Arc<Spool>,
    /// Peers allowed to name the client in `X-Forwarded-For`.
    pub trusted_proxies: Vec<Cidr>,
    /// Link previews and mail scanners.
    pub scanners: Scanners,
    /// When recording last failed (ms since the epoch): for a second after a failure, hits go
    /// straight to the spool instead of each waiting for the database.
    pub last_failure_ms: std::sync::atomic::AtomicI64,
}

/// How long after a failed write hits skip the database.
const OUTAGE_SKIP_MS: i64 = 1000;

/// The socket peer of a request.
#[derive(Debug, Clone, Copy)]
struct Peer(IpAddr);

/// The beacon's router: everything goes to one handler.
pub fn router(app: Arc<App>) -> Router {
    Router::new().fallback(handle).with_state(app)
}

/// Serve `router` on `listener` until `shutdown` turns true.
pub async fn serve(listener: TcpListener, router: Router, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a beacon connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let router = router.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(Peer(peer_ip(peer)));
                    let router = router.clone();
                    async move {
                        let response = router.oneshot(req.map(Body::new)).await;
                        Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
                    }
                });
            // nginx takes any number of headers within its buffers; hyper's default of 100
            // would answer a 431 of its own, unlike nginx.
            let served = hyper::server::conn::http1::Builder::new()
                .title_case_headers(true)
                .max_headers(MAX_HEADERS)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "a beacon connection ended badly");
            }
        });
    }
}

fn peer_ip(addr: SocketAddr) -> IpAddr {
    crate::net::canonical(addr.ip())
}

/// What the client asked for: `close`, or HTTP/1.0 without `keep-alive`, closes.
fn persistence(version: http::Version, headers: &HeaderMap) -> Persistence {
    let has = |token: &str| {
        headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    let close = has("close") || (version == http::Version::HTTP_10 && !has("keep-alive"));
    if close {
        Persistence::Close
    } else {
        Persistence::KeepAlive
    }
}

async fn handle(State(app): State<Arc<App>>, req: Request) -> axum::response::Response {
    let (parts, _body) = req.into_parts();
    let conn = persistence(parts.version, &parts.headers);
    let head = parts.method == Method::HEAD;
    let reply = |r: http::Response<response::Body>| r.map(Body::new);
    // The request target as sent: an absolute-form target counts its scheme and authority.
    let uri_len = parts.uri.to_string().len();
    if parts.method.as_str().len() + uri_len + " HTTP/1.1".len() + 1 > MAX_REQUEST_LINE {
        return reply(response::error(StatusCode::URI_TOO_LONG, head, conn));
    }
    let path = parts.uri.path();
    let Some(rest) = path.strip_prefix("/c/") else {
        return reply(response::error(StatusCode::NOT_FOUND, head, conn));
    };
    if !matches!(parts.method, Method::GET | Method::HEAD) {
        return reply(response::error(StatusCode::METHOD_NOT_ALLOWED, false, conn));
    }
    let peer = parts
        .extensions
        .get::<Peer>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |p| p.0);
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let src_ip = client_address(
        peer,
        header("x-forwarded-for").as_deref(),
        header("forwarded").as_deref(),
        &app.trusted_proxies,
    );
    let user_agent = header("user-agent").map(|ua| truncate(&ua, MAX_USER_AGENT));
    let scanner_reason = app
        .scanners
        .reason(head, user_agent.as_deref(), header, src_ip);
    let slug = percent_decode(rest.split('/').next().unwrap_or_default());
    let hit = Hit {
        id: uuid::Uuid::new_v4(),
        slug,
        method: parts.method.as_str().to_owned(),
        src_ip,
        peer_ip: peer,
        user_agent,
        request_path: truncate(path, MAX_PATH),
        headers: headers_json(&parts.headers),
        occurred_at: Utc::now(),
        query: Query::parse(parts.uri.query()),
        scanner_reason,
    };
    // Recorded before the answer goes out; an outage spools the hit, and the answer is the
    // same GIF whatever happened.
    let now_ms = hit.occurred_at.timestamp_millis();
    let failed_at = app
        .last_failure_ms
        .load(std::sync::atomic::Ordering::Relaxed);
    let recorded = if now_ms - failed_at < OUTAGE_SKIP_MS {
        Err("the database failed less than a second ago".to_owned())
    } else {
        app.beacon
            .handle(hit.clone())
            .await
            .map_err(|e| e.to_string())
    };
    if let Err(e) = recorded {
        app.last_failure_ms
            .fetch_max(now_ms, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(error = %e, "recording a hit failed; spooled");
        app.beacon.metrics.spooled.inc();
        if let Err(e) = app.spool.append(&hit) {
            tracing::error!(error = %e, spool = %app.spool.path().display(), "spooling a hit failed; it is lost");
        }
    }
    reply(response::gif(head, conn))
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Headers with lower-cased names, values as text, cut to fit 16 KiB of JSON; the query
/// string never appears here.
fn headers_json(headers: &HeaderMap) -> Map<String, Value> {
    let mut out = Map::new();
    let mut size = 2;
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        // What the entry costs once serialised, escapes included (a `"` doubles), plus the
        // separators PostgreSQL's JSONB text adds (`": "`, `", "`): the stored column's limit
        // is on that text, and a header full of quotes must not push a row past it.
        let escaped = |s: &str| serde_json::to_string(s).map_or(s.len() * 6, |j| j.len());
        let cost = escaped(name.as_str()) + escaped(&value) + 4;
        if size + cost > MAX_HEADERS_JSON {
            break;
        }
        size += cost;
        match out.get_mut(name.as_str()) {
            Some(Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(&value);
            }
            _ => {
                out.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    out
}
