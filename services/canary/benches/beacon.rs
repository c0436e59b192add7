//! Beacon throughput and latency on loopback, against a minimal hyper server in the same run.
//!
//! `cargo bench -p decnet-canary --bench beacon [-- REQUESTS]` (default 200,000; clients from
//! `DECNET_BENCH_CLIENTS`, default 8) starts a private nats-server and the canary service in
//! this process (SQLite in a temporary directory), mints 500 tokens, then drives three
//! servers with the same keep-alive clients, each sending one request at a time and reading
//! the whole answer before the next:
//!
//! 1. baseline: a hyper HTTP/1 server on loopback answering every request with a fixed
//!    43-byte body and doing nothing else;
//! 2. unknown slugs: `GET /c/<random slug>`, the slug lookup and the GIF, nothing recorded;
//! 3. live slugs: `GET /c/<slug>` over the 500 tokens round-robin, every request a recorded
//!    hit. All come from 127.0.0.1, so past 120 hits per token in a minute the flood guard
//!    folds them into the latest row's `repeat_count` (an update instead of an insert); the
//!    report says how many of each there were.
//!
//! It prints requests/s, the ratio to the baseline, p50/p99 latency, the hits the beacon had
//! to spool (any would mean recording failed and the figures measure the spool) and the
//! process's peak resident memory.

#![allow(
    clippy::disallowed_macros,
    reason = "the report on stdout is this program's product"
)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use decnet_canary::CanaryConfig;
use decnet_ops::Ops;
use decnet_storage::{Database, Options};
use decnet_test_support::{NatsServer, free_port};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use uuid::Uuid;

const TOKENS: usize = 500;
const WARM_UP: usize = 2_000;
const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn request(addr: SocketAddr, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: {USER_AGENT}\r\nAccept: */*\r\n\r\n"
    )
    .into_bytes()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Send one request and read its whole answer; `buf` carries nothing over between calls.
async fn exchange(stream: &mut TcpStream, req: &[u8], buf: &mut Vec<u8>) {
    stream.write_all(req).await.expect("sending a request");
    buf.clear();
    let mut chunk = [0u8; 4096];
    let split = loop {
        if let Some(at) = find(buf, b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk).await.expect("reading an answer");
        assert!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..split]).expect("an ASCII head");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let len: usize = head
        .split("\r\n")
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .expect("a Content-Length");
    while buf.len() < split + 4 + len {
        let n = stream.read(&mut chunk).await.expect("reading a body");
        assert!(n > 0, "the server closed the connection inside a body");
        buf.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(buf.len(), split + 4 + len, "bytes past the answer");
}

/// What one load run measured.
struct Run {
    took: Duration,
    /// Latency of every request, in microseconds, sorted.
    latencies: Vec<u32>,
    /// When each request completed, in microseconds from the start, sorted.
    completed: Vec<u32>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.took.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> f64 {
        let at = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len());
        f64::from(self.latencies[at - 1]) / 1000.0
    }

    /// Requests/s over the first `k` requests to complete, and over the rest.
    fn split(&self, k: usize) -> (f64, f64) {
        let k = k.clamp(1, self.completed.len() - 1);
        let at = f64::from(self.completed[k - 1]) / 1e6;
        let rest = (self.completed.len() - k) as f64;
        (k as f64 / at, rest / (self.took.as_secs_f64() - at))
    }
}

/// `requests` requests from `clients` keep-alive connections; client `c` sends
/// `targets[(c + clients * i) % targets.len()]` as its `i`-th request.
async fn drive(
    addr: SocketAddr,
    targets: Arc<Vec<Vec<u8>>>,
    requests: usize,
    clients: usize,
) -> Run {
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let targets = Arc::clone(&targets);
            let quota = requests / clients + usize::from(c < requests % clients);
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.expect("connecting");
                stream.set_nodelay(true).expect("TCP_NODELAY");
                let mut buf = Vec::with_capacity(1024);
                let micros = |d: Duration| u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
                let mut latencies = Vec::with_capacity(quota);
                let mut completed = Vec::with_capacity(quota);
                for i in 0..quota {
                    let req = &targets[(c + clients * i) % targets.len()];
                    let sent = Instant::now();
                    exchange(&mut stream, req, &mut buf).await;
                    latencies.push(micros(sent.elapsed()));
                    completed.push(micros(start.elapsed()));
                }
                (latencies, completed)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(requests);
    let mut completed = Vec::with_capacity(requests);
    for h in handles {
        let (l, c) = h.await.expect("a client");
        latencies.extend(l);
        completed.extend(c);
    }
    let took = start.elapsed();
    latencies.sort_unstable();
    completed.sort_unstable();
    Run {
        took,
        latencies,
        completed,
    }
}

/// The baseline: hyper's HTTP/1 server answering a fixed 43-byte body, no routing, no work.
async fn baseline_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                        &decnet_canary::response::GIF,
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn mint(client: &async_nats::Client, addr: SocketAddr) -> (Uuid, String) {
    let body = json!({"generator": "honeydoc", "decky_name": "decoy-01", "created_by": "bench"});
    let reply = client
        .request(
            "decnet.canary.token.mint",
            serde_json::to_vec(&body).expect("JSON").into(),
        )
        .await
        .expect("minting");
    let minted: Value = serde_json::from_slice(&reply.payload).expect("a mint answer");
    let uuid = minted["token"]["uuid"]
        .as_str()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("minting: {minted}"));
    let url = minted["token"]["beacon_url"]
        .as_str()
        .expect("a beacon URL");
    let path = url
        .split_once(&addr.to_string())
        .expect("the beacon base")
        .1
        .to_owned();
    (uuid, path)
}

fn spooled(ops: &Ops) -> u64 {
    ops.metrics()
        .lines()
        .find_map(|l| l.strip_prefix("decnet_canary_spooled_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn report(name: &str, run: &Run, baseline: Option<&Run>) {
    let ratio = baseline.map_or(String::new(), |b| {
        format!("  ratio to baseline {:.2}", run.rate() / b.rate())
    });
    println!(
        "{name:<28} {:>8.0} req/s ({:>6.2} s)  p50 {:>6.3} ms  p99 {:>6.3} ms{ratio}",
        run.rate(),
        run.took.as_secs_f64(),
        run.percentile(0.50),
        run.percentile(0.99),
    );
}

#[tokio::main]
async fn main() {
    let requests: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let clients: usize = std::env::var("DECNET_BENCH_CLIENTS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(8)
        .max(1);

    let nats = NatsServer::start().expect("a nats-server");
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", tmp.path().join("bench.db").display());
    let mut config = CanaryConfig::new(&nats.url(), &url, tmp.path());
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("an address");
    config.http_listen = addr;
    config.http_base = format!("http://{addr}");
    config.fingerprint_secret = Some("bench-secret".to_owned());
    let ops = Ops::new();
    let (stop, shutdown) = watch::channel(false);
    let service = {
        let ops = Arc::clone(&ops);
        tokio::spawn(async move { decnet_canary::run_with(&config, &ops, shutdown).await })
    };
    let ready = Instant::now();
    while !ops.readiness().0 {
        assert!(
            !service.is_finished() && ready.elapsed() < Duration::from_secs(30),
            "the canary did not start: {}",
            ops.readiness().1
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let client = async_nats::connect(nats.url()).await.expect("NATS");
    let mut tokens = Vec::with_capacity(TOKENS);
    for _ in 0..TOKENS {
        tokens.push(mint(&client, addr).await);
    }
    let db = Database::connect(&url, &Options::default())
        .await
        .expect("the database");

    let unknown: Vec<Vec<u8>> = (0..TOKENS)
        .map(|_| {
            let slug = decnet_canary::token::new_slug().expect("a slug");
            request(addr, &format!("/c/{slug}"))
        })
        .collect();
    let unknown = Arc::new(unknown);
    let live = Arc::new(
        tokens
            .iter()
            .map(|(_, path)| request(addr, path))
            .collect::<Vec<_>>(),
    );
    let base_addr = baseline_server().await;
    let base_targets = Arc::new(
        unknown
            .iter()
            .map(|r| {
                let text =
                    String::from_utf8_lossy(r).replace(&addr.to_string(), &base_addr.to_string());
                text.into_bytes()
            })
            .collect::<Vec<_>>(),
    );

    println!(
        "{requests} requests per run from {clients} keep-alive clients on loopback, one in flight each; {TOKENS} live tokens"
    );
    drive(base_addr, Arc::clone(&base_targets), WARM_UP, clients).await;
    drive(addr, Arc::clone(&unknown), WARM_UP, clients).await;

    let base = drive(base_addr, base_targets, requests, clients).await;
    report("baseline (hyper, 43 bytes)", &base, None);
    let looked_up = drive(addr, unknown, requests, clients).await;
    report("beacon, unknown slugs", &looked_up, Some(&base));
    let recorded = drive(addr, live, requests, clients).await;
    report("beacon, live slugs", &recorded, Some(&base));

    let mut rows = 0;
    let mut repeats = 0;
    for (uuid, _) in &tokens {
        let mut before = None;
        loop {
            let page = db
                .canary_triggers(*uuid, 1000, before)
                .await
                .expect("reading triggers");
            let Some(last) = page.last() else { break };
            before = Some((last.occurred_at, last.uuid));
            rows += page.len();
            repeats += page.iter().map(|r| r.repeat_count).sum::<i64>();
        }
    }
    println!(
        "  live hits recorded: {rows} trigger rows inserted, {repeats} folded into repeat_count by the flood guard"
    );
    if rows > 0 && rows < requests {
        // Round-robin over the tokens, the first hits are the inserts and the rest repeats.
        let (first, rest) = recorded.split(rows);
        println!(
            "  first {rows} hits (inserts) {first:.0} req/s, the other {} (repeats) {rest:.0} req/s",
            requests - rows
        );
    }
    println!("  hits spooled (recording failed): {}", spooled(&ops));
    println!("peak RSS of the process  {:.0} MiB", peak_rss_mib());

    let _ = stop.send(true);
    service
        .await
        .expect("the service task")
        .expect("the service stopped cleanly");
}
