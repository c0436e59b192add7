//! A fuzz run of the beacon that stops by itself (CANARY.md §3–§10): the real service on a
//! private nats-server and SQLite, at least 100,000 random and malformed requests from four
//! keep-alive clients on loopback. Every request comes from a seeded PRNG, one stream per
//! client, so a failure can be replayed: the seed is in every assertion message and
//! `DECNET_FUZZ_SEED=<seed>` reruns it (`DECNET_FUZZ_REQUESTS` raises the count).
//!
//! Checked on every answer: no status of 500 or more and no `decnet` in any header or body;
//! every `GET`/`HEAD` under `/c/` whose request line fits 16 KiB gets the GIF with nginx's
//! header set, other methods under `/c/` get 405, longer lines 414 and other paths 404.
//! Requests no server can parse (raw control bytes, broken framing, past the parser's limits)
//! go on connections of their own and must only be refused or closed. Checked afterwards: no
//! trigger row holds a fingerprint or signals unless its state is `valid`, every `valid` row
//! holds a fingerprint this run sent as valid to that token (so there are no more of them than
//! were sent), nothing of the query string or the nonce is stored, no 414 was recorded, and the
//! process's resident memory grew by less than 256 MiB over the requests. Hits the beacon sent
//! to its spool although the database never went away are counted in the summary, which goes
//! to the captured output (`--no-capture` shows it).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use decnet_canary::CanaryConfig;
use decnet_canary::response::GIF;
use decnet_ops::Ops;
use decnet_storage::{CanaryTriggerRow, Database, Options};
use decnet_test_support::{NatsServer, free_port};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use uuid::Uuid;

#[path = "fuzz/requests.rs"]
mod requests;

use requests::{Expect, Gen, Live, Req, Rng};

const SECRET: &str = "fuzz-secret";
/// The least the run sends; `DECNET_FUZZ_REQUESTS` may ask for more.
const REQUESTS: usize = 100_000;
const CLIENTS: usize = 4;
/// Tokens minted per generator.
const TOKENS_PER_GENERATOR: usize = 4;
const GENERATORS: [&str; 3] = ["fingerprint_html", "honeydoc", "env_file"];
/// How much the process's resident memory may grow over the run.
const RSS_GROWTH_BOUND_KIB: u64 = 256 * 1024;
/// hyper's own limits: past them it answers by itself, before the beacon sees the request.
const PARSER_MAX_URI: usize = 65_534;
const PARSER_MAX_HEADERS: usize = 100;
/// Any single exchange longer than this is a hang.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(20);

const GIF_HEADERS: [&str; 8] = [
    "cache-control",
    "connection",
    "content-length",
    "content-type",
    "date",
    "expires",
    "pragma",
    "server",
];

const BASE32: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
const IMPORTED: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// RFC 3986 `pchar` without `%` (escapes are drawn on their own).
const PCHAR: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@";
/// Query text that cannot start a new pair or key.
const SAFE: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$'()*,:@/?";
const TCHAR: &[u8] =
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const LOWER36: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const BROKEN_ESCAPES: [&str; 12] = [
    "%zz", "%", "%C3%28", "%g1", "%4", "%%", "%+1", "%-1", "%E2%82", "%ff", "%00", "%%41",
];
const SHAPE_KEYS: [&str; 7] = ["scr", "tz", "cv", "gl", "au", "ft", "rtc"];
const USER_AGENTS: [&str; 8] = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/126.0 Mobile Safari/537.36",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "facebookexternalhit/1.1",
    "curl/8.5.0",
    "python-requests/2.32.3",
];
/// Headers whose meaning the generator controls itself; random names never take them.
const FRAMING: [&str; 8] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "expect",
    "upgrade",
    "te",
    "trailer",
];

struct Canary {
    _nats: NatsServer,
    tmp: TempDir,
    ops: Arc<Ops>,
    client: async_nats::Client,
    db: Database,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), decnet_canary::CanaryError>>,
}

impl Canary {
    async fn start() -> Canary {
        let nats = NatsServer::start().unwrap();
        let tmp = TempDir::new().unwrap();
        let url = format!("sqlite://{}", tmp.path().join("decnet.db").display());
        let mut config = CanaryConfig::new(&nats.url(), &url, tmp.path());
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        config.http_listen = addr;
        config.http_base = format!("http://{addr}");
        config.fingerprint_secret = Some(SECRET.to_owned());
        config.chunk_timeout = Duration::from_secs(1);
        let ops = Ops::new();
        let (stop, shutdown) = watch::channel(false);
        let task = {
            let ops = Arc::clone(&ops);
            tokio::spawn(async move { decnet_canary::run_with(&config, &ops, shutdown).await })
        };
        for _ in 0..400 {
            if ops.readiness().0 {
                break;
            }
            assert!(
                !task.is_finished(),
                "the canary stopped: {}",
                ops.readiness().1
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(ops.readiness().0, "{}", ops.readiness().1);
        let client = async_nats::connect(nats.url()).await.unwrap();
        let db = Database::connect(&url, &Options::default()).await.unwrap();
        Canary {
            _nats: nats,
            tmp,
            ops,
            client,
            db,
            addr,
            stop,
            task,
        }
    }

    async fn mint(&self, generator: &str) -> Live {
        let body = json!({"generator": generator, "decky_name": "decoy-01", "created_by": "fuzz"});
        let reply = self
            .client
            .request(
                "decnet.canary.token.mint",
                serde_json::to_vec(&body).unwrap().into(),
            )
            .await
            .unwrap();
        let minted: Value = serde_json::from_slice(&reply.payload).unwrap();
        let uuid: Uuid = minted["token"]["uuid"]
            .as_str()
            .unwrap_or_else(|| panic!("minting {generator}: {minted}"))
            .parse()
            .unwrap();
        let url = minted["token"]["beacon_url"].as_str().unwrap();
        let slug = url.rsplit_once("/c/").unwrap().1.to_owned();
        let row = self.db.canary_token(uuid).await.unwrap().unwrap();
        assert_eq!(
            row.fingerprint_nonce.is_some(),
            generator.starts_with("fingerprint_")
        );
        Live {
            uuid,
            mint: decnet_canary::token::mint_uuid(&slug).to_string(),
            nonce: row.fingerprint_nonce,
            slug,
        }
    }

    /// Hits the beacon sent to its spool (it does when recording one fails).
    fn metric(&self, prefix: &str) -> u64 {
        self.ops
            .metrics()
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }

    fn spooled(&self) -> u64 {
        self.ops
            .metrics()
            .lines()
            .find_map(|l| l.strip_prefix("decnet_canary_spooled_total "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Wait until the spool has been replayed; false if it is still there after `patience`.
    async fn spool_drained(&self, patience: Duration) -> bool {
        let dir = self.tmp.path().join("canary");
        let deadline = Instant::now() + patience;
        loop {
            let waiting = ["spool.jsonl", "spool.jsonl.replaying"]
                .iter()
                .any(|f| std::fs::read_to_string(dir.join(f)).is_ok_and(|t| !t.trim().is_empty()));
            if !waiting {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every trigger row of a token, newest first.
    async fn all_triggers(&self, token: Uuid) -> Vec<CanaryTriggerRow> {
        let mut rows: Vec<CanaryTriggerRow> = Vec::new();
        loop {
            let before = rows.last().map(|r| (r.occurred_at, r.uuid));
            let page = self.db.canary_triggers(token, 1000, before).await.unwrap();
            if page.is_empty() {
                return rows;
            }
            rows.extend(page);
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap().unwrap();
    }
}

/// An answer as it came off the wire.
struct Answer {
    status: u16,
    head: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How an exchange ended.
enum Exchange {
    Answered(Answer),
    /// Closed (or reset) before a byte of an answer.
    Closed(String),
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn exchange(stream: &mut TcpStream, req: &Req) -> Result<Exchange, String> {
    if let Err(e) = stream.write_all(&req.wire).await {
        return Ok(Exchange::Closed(format!("write: {e}")));
    }
    if req.half_close {
        // An unfinished request: the server sees the end of the stream.
        let _ = stream.shutdown().await;
    }
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 8192];
    let split = loop {
        if let Some(at) = find(&buf, b"\r\n\r\n") {
            break at;
        }
        match stream.read(&mut chunk).await {
            Ok(0) if buf.is_empty() => return Ok(Exchange::Closed("EOF".into())),
            Ok(0) => return Err(format!("EOF inside an answer head: {:?}", excerpt(&buf))),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if buf.is_empty() => return Ok(Exchange::Closed(format!("read: {e}"))),
            Err(e) => return Err(format!("read inside an answer head: {e}")),
        }
    };
    let head = String::from_utf8(buf[..split].to_vec())
        .map_err(|_| format!("an answer head that is not UTF-8: {:?}", excerpt(&buf)))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("a bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (n, v) = line
            .split_once(':')
            .ok_or_else(|| format!("a bad header line {line:?}"))?;
        headers.push((n.to_owned(), v.trim().to_owned()));
    }
    let mut answer = Answer {
        status,
        head,
        headers,
        body: buf[split + 4..].to_vec(),
    };
    if answer.header("transfer-encoding").is_some() {
        return Err(format!("a chunked answer:\n{}", answer.head));
    }
    let len = if req.head || (100..200).contains(&status) || status == 204 || status == 304 {
        0
    } else {
        match answer.header("content-length") {
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| format!("a bad Content-Length:\n{}", answer.head))?,
            None => return Err(format!("an answer without a length:\n{}", answer.head)),
        }
    };
    while answer.body.len() < len {
        match stream.read(&mut chunk).await {
            Ok(0) => return Err(format!("EOF inside a body:\n{}", answer.head)),
            Ok(n) => answer.body.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read inside a body: {e}")),
        }
    }
    if answer.body.len() > len {
        return Err(format!(
            "{} bytes past the answer:\n{}",
            answer.body.len() - len,
            answer.head
        ));
    }
    Ok(Exchange::Answered(answer))
}

fn excerpt(bytes: &[u8]) -> String {
    let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(400)]).into_owned();
    if bytes.len() > 400 {
        format!("{shown}… ({} bytes)", bytes.len())
    } else {
        shown
    }
}

fn check(req: &Req, a: &Answer) -> Result<(), String> {
    if a.status >= 500 {
        return Err(format!("status {}", a.status));
    }
    let text = format!("{}\n{}", a.head, String::from_utf8_lossy(&a.body)).to_ascii_lowercase();
    if text.contains("decnet") {
        return Err("the answer names the product".into());
    }
    let nginx = || {
        if a.header("server") == Some("nginx") {
            Ok(())
        } else {
            Err(format!("status {} without Server: nginx", a.status))
        }
    };
    match req.expect {
        Expect::Gif => {
            if a.status != 200 {
                return Err(format!("status {}, not the GIF", a.status));
            }
            let mut names: Vec<String> = a
                .headers
                .iter()
                .map(|(n, _)| n.to_ascii_lowercase())
                .collect();
            names.sort_unstable();
            if names != GIF_HEADERS {
                return Err(format!("not nginx's header set: {names:?}"));
            }
            nginx()?;
            if a.header("content-type") != Some("image/gif")
                || a.header("content-length") != Some("43")
            {
                return Err("not image/gif of 43 bytes".into());
            }
            let want: &[u8] = if req.head { &[] } else { &GIF };
            if a.body != want {
                return Err(format!("a body of {} bytes, not the GIF", a.body.len()));
            }
            if !req.http10 {
                let want = if req.asked_close {
                    "close"
                } else {
                    "keep-alive"
                };
                if a.header("connection") != Some(want) {
                    return Err(format!(
                        "Connection: {:?}, not {want}",
                        a.header("connection")
                    ));
                }
            }
        }
        Expect::NotAllowed => {
            if a.status != 405 || a.header("allow") != Some("GET, HEAD") {
                return Err(format!(
                    "status {}, not 405 with Allow: GET, HEAD",
                    a.status
                ));
            }
            nginx()?;
        }
        Expect::TooLong => {
            if a.status != 414 {
                return Err(format!("status {}, not 414", a.status));
            }
            nginx()?;
        }
        Expect::NotFound => {
            if a.status != 404 {
                return Err(format!("status {}, not 404", a.status));
            }
            nginx()?;
        }
        Expect::Refused => {}
    }
    Ok(())
}

/// What one client did.
#[derive(Default)]
struct Outcome {
    sent: usize,
    /// (token, marker) of every fingerprint sent to validate.
    valid: Vec<(usize, String)>,
    /// Requests per label.
    labels: BTreeMap<&'static str, usize>,
    /// For requests only refused or closed: label and what came back.
    refused: BTreeMap<String, usize>,
    connections: usize,
    /// Exchanges retried on a new connection after the server closed a tainted one.
    retried: usize,
}

struct Ctx {
    seed: u64,
    addr: SocketAddr,
    tokens: Vec<Live>,
    /// Requests sent so far, by every client.
    done: AtomicUsize,
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(s)
}

async fn client(ctx: Arc<Ctx>, task: usize, quota: usize) -> Result<Outcome, String> {
    let mut generator = Gen {
        rng: Rng::new(ctx.seed ^ (task as u64).wrapping_mul(0x1000_0000_01b3)),
        tokens: &ctx.tokens,
        task,
        serial: 0,
        host: ctx.addr.to_string(),
    };
    let mut out = Outcome::default();
    let mut queue = VecDeque::new();
    // The keep-alive connection, and whether the last exchange may have let the server close it.
    let mut conn: Option<TcpStream> = None;
    let mut tainted = false;
    while out.sent < quota || !queue.is_empty() {
        if queue.is_empty() {
            generator.scenario(&mut queue);
        }
        let req = queue.pop_front().expect("a scenario yields requests");
        let n = out.sent;
        out.sent += 1;
        ctx.done.fetch_add(1, Ordering::Relaxed);
        *out.labels.entry(req.label).or_default() += 1;
        let fail = |what: String| {
            format!(
                "client {task}, request {n} ({}, expecting {:?}): {what}\nrequest: {:?}",
                req.label,
                req.expect,
                excerpt(&req.wire)
            )
        };
        let ended = if req.fresh {
            let mut s = connect(ctx.addr).await.map_err(&fail)?;
            out.connections += 1;
            let ended = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(&mut s, &req))
                .await
                .map_err(|_| fail("no answer and no close".into()))?
                .map_err(&fail)?;
            drop(s);
            ended
        } else {
            let mut attempt = 0;
            loop {
                if conn.is_none() {
                    conn = Some(connect(ctx.addr).await.map_err(&fail)?);
                    out.connections += 1;
                    tainted = false;
                }
                let s = conn.as_mut().expect("connected");
                let ended = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(s, &req))
                    .await
                    .map_err(|_| fail("no answer and no close".into()))?
                    .map_err(&fail)?;
                match ended {
                    Exchange::Closed(_) if tainted && attempt == 0 => {
                        // The previous exchange allowed the server to close; try afresh.
                        conn = None;
                        attempt += 1;
                        out.retried += 1;
                    }
                    ended => break ended,
                }
            }
        };
        match ended {
            Exchange::Answered(a) => {
                check(&req, &a).map_err(|e| fail(format!("{e}\nanswer:\n{}", a.head)))?;
                if req.expect == Expect::Refused {
                    *out.refused
                        .entry(format!("{}: {}", req.label, a.status))
                        .or_default() += 1;
                }
                if let Some(v) = &req.valid {
                    out.valid.push(v.clone());
                }
                if !req.fresh {
                    let close = a
                        .header("connection")
                        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
                    if close {
                        conn = None;
                    }
                    tainted = req.taints;
                }
            }
            Exchange::Closed(how) => {
                if req.expect != Expect::Refused {
                    return Err(fail(format!(
                        "the connection closed without an answer ({how})"
                    )));
                }
                *out.refused
                    .entry(format!("{}: closed", req.label))
                    .or_default() += 1;
                if !req.fresh {
                    conn = None;
                }
            }
        }
    }
    Ok(out)
}

fn vm_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(
    clippy::disallowed_macros,
    reason = "the run's seed and summary go to the test's captured output for the report"
)]
async fn a_hundred_thousand_random_and_malformed_requests_break_nothing() {
    let seed: u64 = std::env::var("DECNET_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            now.as_nanos() as u64 ^ u64::from(std::process::id())
        });
    let requests = std::env::var("DECNET_FUZZ_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(REQUESTS)
        .max(REQUESTS);
    eprintln!("fuzz seed {seed} (DECNET_FUZZ_SEED={seed} replays it), {requests} requests");
    let c = Canary::start().await;
    let mut tokens = Vec::new();
    for generator in GENERATORS {
        for _ in 0..TOKENS_PER_GENERATOR {
            tokens.push(c.mint(generator).await);
        }
    }
    let ctx = Arc::new(Ctx {
        seed,
        addr: c.addr,
        tokens,
        done: AtomicUsize::new(0),
    });
    let rss_before = vm_kib("VmRSS:");
    // Resident memory against progress, four times a second.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (ctx, sampling) = (Arc::clone(&ctx), Arc::clone(&sampling));
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                samples.push((ctx.done.load(Ordering::Relaxed), vm_kib("VmRSS:")));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            samples
        })
    };
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|task| {
            let quota = requests / CLIENTS + usize::from(task < requests % CLIENTS);
            tokio::spawn(client(Arc::clone(&ctx), task, quota))
        })
        .collect();
    let mut outcomes = Vec::new();
    for handle in clients {
        match handle.await.unwrap() {
            Ok(o) => outcomes.push(o),
            Err(e) => panic!("seed {seed}: {e}"),
        }
    }
    let took = started.elapsed();
    let rss_after = vm_kib("VmRSS:");
    sampling.store(false, Ordering::Relaxed);
    let samples = sampler.await.unwrap();
    // The most resident memory seen by each quarter of the run.
    let quarters: Vec<u64> = (1..=4)
        .map(|q| {
            samples
                .iter()
                .filter(|(done, _)| *done <= requests * q / 4)
                .map(|(_, rss)| *rss)
                .max()
                .unwrap_or(rss_before)
        })
        .collect();
    // Chunk sets left open time out (1 s, checked every second) and are recorded; hits the
    // beacon spooled are replayed.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let spooled = c.spooled();
    // The database never went away, so no hit may have needed the spool, and no row the
    // beacon shaped may have been refused by the store (a header of 9 000 quotes once was).
    assert_eq!(
        spooled, 0,
        "seed {seed}: hits spooled although the database was up"
    );
    assert_eq!(
        c.metric("decnet_canary_refused_total "),
        0,
        "seed {seed}: rows refused"
    );
    assert!(
        c.spool_drained(Duration::from_secs(60)).await,
        "seed {seed}: the spool ({spooled} hits) was not replayed within a minute"
    );

    let sent: usize = outcomes.iter().map(|o| o.sent).sum();
    assert!(sent >= requests, "seed {seed}: {sent} sent");
    let mut labels: BTreeMap<&str, usize> = BTreeMap::new();
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    let mut sent_valid: HashMap<usize, HashSet<String>> = HashMap::new();
    for o in &outcomes {
        for (l, n) in &o.labels {
            *labels.entry(l).or_default() += n;
        }
        for (l, n) in &o.refused {
            *refused.entry(l.clone()).or_default() += n;
        }
        for (t, marker) in &o.valid {
            sent_valid.entry(*t).or_default().insert(marker.clone());
        }
    }

    let mut rows_total = 0;
    let mut valid_total = 0;
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    let mut repeats = 0;
    for (i, token) in ctx.tokens.iter().enumerate() {
        let rows = c.all_triggers(token.uuid).await;
        rows_total += rows.len();
        let mut seen = HashSet::new();
        for row in &rows {
            *states.entry(row.fingerprint_state.clone()).or_default() += 1;
            repeats += row.repeat_count;
            let what = format!(
                "seed {seed}: token {i}, row {} ({})",
                row.uuid, row.fingerprint_state
            );
            if row.fingerprint_state == "valid" {
                valid_total += 1;
                let fp = row
                    .fingerprint
                    .as_ref()
                    .unwrap_or_else(|| panic!("{what}: no fingerprint"));
                assert!(row.signals.is_some(), "{what}: no signals");
                assert_eq!(fp["mint"], token.mint.as_str(), "{what}");
                let marker = fp["nav"]["ua"].as_str().unwrap_or_default();
                assert!(
                    sent_valid.get(&i).is_some_and(|m| m.contains(marker)),
                    "{what}: the fingerprint {marker:?} was not sent as valid to this token"
                );
                assert!(
                    seen.insert(marker.to_owned()),
                    "{what}: {marker} stored twice"
                );
            } else {
                assert!(
                    row.fingerprint.is_none() && row.signals.is_none(),
                    "{what}: a fingerprint or signals kept from invalid input"
                );
            }
            let path = row.request_path.as_deref().unwrap_or_default();
            assert!(
                path.starts_with("/c/") && path.len() <= 2048,
                "{what}: path {path:?}"
            );
            assert!(!path.contains('?'), "{what}: the query string is stored");
            assert!(
                !path.contains(&"z".repeat(64)),
                "{what}: a 414 was recorded"
            );
            assert!(
                row.user_agent.as_ref().is_none_or(|ua| ua.len() <= 1024),
                "{what}: a User-Agent over 1 KiB"
            );
            assert!(
                matches!(row.method.as_deref(), Some("GET" | "HEAD")),
                "{what}: method {:?}",
                row.method
            );
            let flags = row.flags.as_object().unwrap();
            assert!(
                flags.keys().all(|k| {
                    [
                        "open",
                        "nonce_ok",
                        "chunk_sid",
                        "chunks_received",
                        "chunks_total",
                    ]
                    .contains(&k.as_str())
                }),
                "{what}: flags {flags:?}"
            );
            let stored = format!("{:?} {:?} {:?}", row.headers, row.flags, row.request_path);
            for t in &ctx.tokens {
                if let Some(nonce) = &t.nonce {
                    assert!(
                        !stored.contains(nonce.as_str()),
                        "{what}: a nonce is stored"
                    );
                }
            }
        }
        let sent = sent_valid.get(&i).map_or(0, HashSet::len);
        let valid = rows
            .iter()
            .filter(|r| r.fingerprint_state == "valid")
            .count();
        assert!(
            valid <= sent,
            "seed {seed}: token {i}: {valid} valid rows, {sent} sent"
        );
    }
    assert!(
        valid_total > 0,
        "seed {seed}: no valid fingerprint was ever stored: {states:?}"
    );
    let growth = rss_after.saturating_sub(rss_before);
    assert!(
        growth < RSS_GROWTH_BOUND_KIB,
        "seed {seed}: resident memory grew by {growth} KiB ({rss_before} → {rss_after} KiB)"
    );
    let sent_valid_total: usize = sent_valid.values().map(HashSet::len).sum();
    let connections: usize = outcomes.iter().map(|o| o.connections).sum();
    let retried: usize = outcomes.iter().map(|o| o.retried).sum();
    eprintln!(
        "{sent} requests in {:.1} s ({:.0}/s) on {connections} connections ({retried} retried after a close); \
         RSS {rss_before} → {rss_after} KiB (most by each quarter of the run {quarters:?}, peak {} KiB)",
        took.as_secs_f64(),
        sent as f64 / took.as_secs_f64(),
        vm_kib("VmHWM:")
    );
    eprintln!(
        "{rows_total} trigger rows ({repeats} repeats folded), {valid_total} valid of {sent_valid_total} valid sent; states {states:?}"
    );
    eprintln!("{spooled} hits spooled although the database never went away (replayed since)");
    eprintln!("requests by kind: {labels:?}");
    eprintln!("refused or closed: {refused:?}");
    c.stop().await;
}
