//! The beacon's HTTP behaviour of CANARY.md §15, each against the real service: a private
//! nats-server, SQLite, tokens minted through the control subject, requests over raw TCP so
//! the exact bytes and header names on the wire are what is checked.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use decnet_canary::CanaryConfig;
use decnet_ops::Ops;
use decnet_storage::{CanaryTriggerRow, Database, Options};
use decnet_test_support::{NatsServer, free_port};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::watch;
use uuid::Uuid;

const SECRET: &str = "test-secret";

struct Canary {
    _nats: NatsServer,
    _tmp: TempDir,
    client: async_nats::Client,
    db: Database,
    addr: SocketAddr,
    ops: Arc<Ops>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), decnet_canary::CanaryError>>,
}

impl Canary {
    async fn start(tune: impl FnOnce(&mut CanaryConfig)) -> Canary {
        Canary::start_on(None, tune).await
    }

    /// With the service on `database` (a SQLite file when `None`); `database.1` is the URL the
    /// test itself reads through.
    async fn start_on(
        database: Option<(String, String)>,
        tune: impl FnOnce(&mut CanaryConfig),
    ) -> Canary {
        let nats = NatsServer::start().unwrap();
        let tmp = TempDir::new().unwrap();
        let sqlite = format!("sqlite://{}", tmp.path().join("decnet.db").display());
        let (service_url, url) = database.unwrap_or((sqlite.clone(), sqlite));
        let mut config = CanaryConfig::new(&nats.url(), &service_url, tmp.path());
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        config.http_listen = addr;
        config.http_base = format!("http://{addr}");
        config.fingerprint_secret = Some(SECRET.to_owned());
        config.chunk_timeout = Duration::from_secs(1);
        tune(&mut config);
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
            _tmp: tmp,
            client,
            db,
            addr,
            ops,
            stop,
            task,
        }
    }

    async fn request(&self, subject: &str, body: Value) -> Result<Value, (String, String)> {
        let reply = self
            .client
            .request(
                subject.to_owned(),
                serde_json::to_vec(&body).unwrap().into(),
            )
            .await
            .unwrap();
        if let Some(h) = &reply.headers
            && let Some(m) = h.get("Nats-Service-Error")
        {
            let code = h
                .get("Nats-Service-Error-Code")
                .unwrap()
                .as_str()
                .to_owned();
            return Err((code, m.as_str().to_owned()));
        }
        Ok(serde_json::from_slice(&reply.payload).unwrap())
    }

    /// Mint a token; returns its uuid and its beacon path (`/c/<slug>`).
    async fn mint(&self, generator: &str) -> (Uuid, String) {
        let minted = self
            .request(
                "decnet.canary.token.mint",
                json!({"generator": generator, "decky_name": "decoy-01", "created_by": "test"}),
            )
            .await
            .unwrap();
        let uuid: Uuid = minted["token"]["uuid"].as_str().unwrap().parse().unwrap();
        let url = minted["token"]["beacon_url"].as_str().unwrap();
        let path = url.split_once(&self.addr.to_string()).unwrap().1.to_owned();
        (uuid, path)
    }

    async fn triggers(&self, token: Uuid) -> Vec<CanaryTriggerRow> {
        self.db.canary_triggers(token, 100, None).await.unwrap()
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap().unwrap();
    }
}

/// A raw HTTP/1.1 exchange: status line, headers in wire order and case, body.
struct Answer {
    status: String,
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

    /// Everything but the `Date` value, for byte-identity comparisons.
    fn without_date(&self) -> String {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(n, v)| {
                if n == "Date" {
                    "Date: *".to_owned()
                } else {
                    format!("{n}: {v}")
                }
            })
            .collect();
        format!(
            "{}\n{}\n{}",
            self.status,
            headers.join("\n"),
            String::from_utf8_lossy(&self.body)
        )
    }
}

fn http(addr: SocketAddr, method: &str, target: &str, extra: &[(&str, &str)]) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (n, v) in extra {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_owned();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(": ").unwrap();
            (n.to_owned(), v.to_owned())
        })
        .collect();
    Answer {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

fn get(addr: SocketAddr, target: &str) -> Answer {
    http(
        addr,
        "GET",
        target,
        &[(
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
        )],
    )
}

const GIF_HEADERS: [&str; 8] = [
    "Server",
    "Date",
    "Content-Type",
    "Content-Length",
    "Connection",
    "Cache-Control",
    "Pragma",
    "Expires",
];

fn assert_gif(a: &Answer) {
    assert_eq!(a.status, "HTTP/1.1 200 OK");
    let mut names: Vec<&str> = a.headers.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    let mut want = GIF_HEADERS.to_vec();
    want.sort_unstable();
    assert_eq!(names, want, "exactly nginx's header set");
    assert_eq!(a.header("Server"), Some("nginx"));
    assert_eq!(a.header("Content-Type"), Some("image/gif"));
    assert_eq!(a.header("Content-Length"), Some("43"));
    assert_eq!(
        a.header("Cache-Control"),
        Some("no-store, no-cache, must-revalidate, max-age=0")
    );
    assert_eq!(a.header("Pragma"), Some("no-cache"));
    assert_eq!(a.header("Expires"), Some("Thu, 01 Jan 1970 00:00:01 GMT"));
    assert_eq!(a.body, decnet_canary::response::GIF);
}

fn fingerprint(mint: Uuid, keys: &[&str]) -> String {
    let mut fp = serde_json::Map::new();
    fp.insert("mint".into(), json!(mint.to_string()));
    for k in keys {
        fp.insert((*k).into(), json!({"probe": k}));
    }
    fp.insert(
        "nav".into(),
        json!({"ua": "x", "pl": "Linux x86_64", "lg": "en-US", "wd": true}),
    );
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&Value::Object(fp)).unwrap())
}

fn slug_of(path: &str) -> &str {
    path.trim_start_matches("/c/")
}

fn nonce_of(path: &str) -> String {
    decnet_canary::token::fingerprint_nonce(SECRET, slug_of(path))
}

fn mint_of(path: &str) -> Uuid {
    decnet_canary::token::mint_uuid(slug_of(path))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_slug_answers_the_gif_records_one_row_and_publishes_once() {
    let c = Canary::start(|_| {}).await;
    let mut events = c.client.subscribe("canary.*.triggered").await.unwrap();
    c.client.flush().await.unwrap();
    let (token, path) = c.mint("honeydoc").await;
    let addr = c.addr;
    let p = path.clone();
    let answer = tokio::task::spawn_blocking(move || get(addr, &p))
        .await
        .unwrap();
    assert_gif(&answer);
    let rows = c.triggers(token).await;
    assert_eq!(rows.len(), 1, "recorded before the answer");
    assert_eq!(rows[0].request_path.as_deref(), Some(path.as_str()));
    assert_eq!(rows[0].hit_kind, "beacon");
    assert_eq!(rows[0].src_ip, "127.0.0.1");
    let stored = c.db.canary_token(token).await.unwrap().unwrap();
    assert_eq!(stored.trigger_count, 1);
    let event = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.subject.as_str(), format!("canary.{token}.triggered"));
    let body: Value = serde_json::from_slice(&event.payload).unwrap();
    assert_eq!(body["src_ip"], "127.0.0.1");
    assert_eq!(
        body["user_agent"],
        "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
    );
    assert_eq!(body["token_kind"], "honeydoc");
    assert_eq!(body["hit_kind"], "beacon");
    assert_eq!(body["suspected_scanner"], false);
    assert!(body.get("fingerprint").is_none());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_revoked_and_failed_slugs_answer_the_same_and_record_nothing() {
    let c = Canary::start(|_| {}).await;
    let (live, live_path) = c.mint("honeydoc").await;
    let (revoked, revoked_path) = c.mint("honeydoc").await;
    let (failed, failed_path) = c.mint("env_file").await;
    c.request(
        "decnet.canary.token.revoke",
        json!({"token_id": revoked, "revoked_by": "ops"}),
    )
    .await
    .unwrap();
    c.request(
        "decnet.canary.token.placement",
        json!({"token_id": failed, "ok": false, "error": "disk full"}),
    )
    .await
    .unwrap();
    let addr = c.addr;
    let answers = tokio::task::spawn_blocking(move || {
        [
            live_path.clone(),
            "/c/aaaaaaaaaaaaaaaaaaaaaaaaaa".to_owned(),
            "/c/".to_owned(),
            "/c/not a slug".replace(' ', "%20"),
            revoked_path,
            failed_path,
        ]
        .map(|p| get(addr, &p))
    })
    .await
    .unwrap();
    for a in &answers {
        assert_gif(a);
        assert_eq!(a.without_date(), answers[0].without_date());
    }
    assert_eq!(c.triggers(live).await.len(), 1);
    assert!(c.triggers(revoked).await.is_empty());
    assert!(c.triggers(failed).await.is_empty());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_paths_trip_the_token_and_keep_their_path() {
    let c = Canary::start(|_| {}).await;
    let (token, path) = c.mint("git_config").await;
    let addr = c.addr;
    let p = path.clone();
    tokio::task::spawn_blocking(move || {
        assert_gif(&get(
            addr,
            &format!("{p}/repo.git/info/refs?service=git-upload-pack"),
        ));
        assert_gif(&get(addr, &format!("{p}/webhook")));
    })
    .await
    .unwrap();
    let mut paths: Vec<String> = c
        .triggers(token)
        .await
        .into_iter()
        .filter_map(|r| r.request_path)
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        vec![
            format!("{path}/repo.git/info/refs"),
            format!("{path}/webhook")
        ]
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_paths_methods_and_long_lines_get_nginx_pages_and_nothing_names_the_product() {
    let c = Canary::start(|_| {}).await;
    let (token, path) = c.mint("honeydoc").await;
    let addr = c.addr;
    let answers = tokio::task::spawn_blocking(move || {
        let mut all = Vec::new();
        for p in [
            "/",
            "/docs",
            "/redoc",
            "/openapi.json",
            "/metrics",
            "/healthz",
            "/c",
        ] {
            let a = get(addr, p);
            assert_eq!(a.status, "HTTP/1.1 404 Not Found", "{p}");
            assert_eq!(a.header("Server"), Some("nginx"));
            assert!(
                String::from_utf8_lossy(&a.body)
                    .contains("<center><h1>404 Not Found</h1></center>")
            );
            all.push(a);
        }
        let post = http(addr, "POST", &path, &[("Content-Length", "0")]);
        assert_eq!(post.status, "HTTP/1.1 405 Not Allowed", "nginx's own words");
        assert!(String::from_utf8_lossy(&post.body).contains("<title>405 Not Allowed</title>"));
        assert_eq!(post.header("Allow"), Some("GET, HEAD"));
        all.push(post);
        let long = get(addr, &format!("{path}?d={}", "A".repeat(17 * 1024)));
        assert_eq!(long.status, "HTTP/1.1 414 Request-URI Too Large");
        all.push(long);
        let head = http(addr, "HEAD", &path, &[]);
        assert_eq!(head.status, "HTTP/1.1 200 OK");
        assert_eq!(head.header("Content-Length"), Some("43"));
        assert!(head.body.is_empty());
        all.push(head);
        all
    })
    .await
    .unwrap();
    for a in &answers {
        let text = format!(
            "{}\n{:?}\n{}",
            a.status,
            a.headers,
            String::from_utf8_lossy(&a.body)
        )
        .to_lowercase();
        for word in ["decnet", "axum", "hyper", "tokio", "rust"] {
            assert!(!text.contains(word), "{word} in {text}");
        }
        for (name, _) in &a.headers {
            let n = name.to_ascii_lowercase();
            assert!(
                !n.starts_with("x-")
                    && !["etag", "last-modified", "set-cookie"].contains(&n.as_str())
            );
            assert!(!n.starts_with("access-control"), "{n}");
        }
    }
    // Only the HEAD was recorded (as a scanner): POST, 414 and other paths never are.
    let rows = c.triggers(token).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].method.as_deref(), Some("HEAD"));
    assert!(rows[0].suspected_scanner);
    assert_eq!(rows[0].scanner_reason.as_deref(), Some("method:HEAD"));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_counts_only_from_a_trusted_proxy() {
    let trusting = Canary::start(|c| {
        c.trusted_proxies = decnet_canary::net::parse_list("127.0.0.0/8").unwrap();
    })
    .await;
    let plain = Canary::start(|_| {}).await;
    for (c, want) in [(&trusting, "203.0.113.50"), (&plain, "127.0.0.1")] {
        let (token, path) = c.mint("honeydoc").await;
        let addr = c.addr;
        tokio::task::spawn_blocking(move || {
            http(
                addr,
                "GET",
                &path,
                &[("X-Forwarded-For", "203.0.113.50, 127.0.0.9")],
            )
        })
        .await
        .unwrap();
        let rows = c.triggers(token).await;
        assert_eq!(rows[0].src_ip, want);
        assert_eq!(rows[0].peer_ip, "127.0.0.1");
    }
    trusting.stop().await;
    plain.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_fingerprint_is_kept_the_token_revoked_and_later_hits_go_dark() {
    let c = Canary::start(|_| {}).await;
    let mut revocations = c.client.subscribe("canary.*.revoked").await.unwrap();
    let mut triggered = c.client.subscribe("canary.*.triggered").await.unwrap();
    c.client.flush().await.unwrap();
    let (token, path) = c.mint("fingerprint_html").await;
    let target = format!(
        "{path}?d={}&k={}",
        fingerprint(mint_of(&path), &["scr", "tz", "cv"]),
        nonce_of(&path)
    );
    let addr = c.addr;
    let t = target.clone();
    let answers = tokio::task::spawn_blocking(move || [get(addr, &t), get(addr, &t)])
        .await
        .unwrap();
    assert_gif(&answers[0]);
    assert_eq!(answers[0].without_date(), answers[1].without_date());
    let rows = c.triggers(token).await;
    assert_eq!(
        rows.len(),
        1,
        "the second hit, on a revoked token, records nothing"
    );
    assert_eq!(rows[0].fingerprint_state, "valid");
    assert_eq!(rows[0].hit_kind, "fingerprint");
    assert_eq!(
        rows[0].fingerprint.as_ref().unwrap()["mint"],
        mint_of(&path).to_string()
    );
    assert_eq!(
        rows[0].signals.as_ref().unwrap()["navigator_webdriver"],
        true
    );
    assert_eq!(rows[0].flags["nonce_ok"], true);
    let stored = c.db.canary_token(token).await.unwrap().unwrap();
    assert_eq!(
        (
            stored.state.as_str(),
            stored.revoked_by.as_deref(),
            stored.revoke_reason.as_deref()
        ),
        ("revoked", Some("system"), Some("fingerprint_collected"))
    );
    let revoked = tokio::time::timeout(Duration::from_secs(5), revocations.next())
        .await
        .unwrap()
        .unwrap();
    let body: Value = serde_json::from_slice(&revoked.payload).unwrap();
    assert_eq!(body["reason"], "fingerprint_collected");
    assert_eq!(body["trigger_id"], rows[0].uuid.to_string());
    let event = tokio::time::timeout(Duration::from_secs(5), triggered.next())
        .await
        .unwrap()
        .unwrap();
    let body: Value = serde_json::from_slice(&event.payload).unwrap();
    assert_eq!(body["fingerprint_state"], "valid");
    assert_eq!(body["fingerprint"]["navigator_webdriver"], true);
    assert!(
        body["fingerprint"].get("mint").is_none(),
        "the raw fingerprint stays home"
    );
    let metrics = c.ops.metrics();
    for line in [
        "decnet_canary_revoked_total 1",
        "decnet_canary_fingerprints_total{state=\"valid\"} 1",
        "decnet_canary_hits_total{outcome=\"recorded\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_invalid_fingerprint_is_flagged_by_its_layer_and_dropped() {
    let c = Canary::start(|_| {}).await;
    let (token, path) = c.mint("fingerprint_html").await;
    let nonce = nonce_of(&path);
    let mint = mint_of(&path);
    let cases = [
        (
            format!("d={}&k=0000000000000000", fingerprint(mint, &["scr", "tz"])),
            "invalid_nonce",
        ),
        (
            format!(
                "d={}&k={nonce}",
                URL_SAFE_NO_PAD.encode(json!({"mint": mint.to_string(), "nav": {}}).to_string())
            ),
            "invalid_shape",
        ),
        (
            format!("d={}&k={nonce}", fingerprint(Uuid::nil(), &["scr", "tz"])),
            "invalid_mint",
        ),
        (
            format!("d={}&k={nonce}", URL_SAFE_NO_PAD.encode("not json")),
            "decode_error",
        ),
        (format!("d={}&k={nonce}", "A".repeat(9 * 1024)), "oversize"),
    ];
    let addr = c.addr;
    let targets: Vec<String> = cases.iter().map(|(q, _)| format!("{path}?{q}")).collect();
    tokio::task::spawn_blocking(move || {
        for t in &targets {
            assert_gif(&get(addr, t));
        }
    })
    .await
    .unwrap();
    let mut rows = c.triggers(token).await;
    rows.reverse();
    let states: Vec<&str> = rows.iter().map(|r| r.fingerprint_state.as_str()).collect();
    assert_eq!(states, cases.iter().map(|(_, s)| *s).collect::<Vec<_>>());
    assert!(
        rows.iter()
            .all(|r| r.fingerprint.is_none() && r.signals.is_none())
    );
    assert_eq!(
        c.db.canary_token(token).await.unwrap().unwrap().state,
        "planted"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_fingerprints_reassemble_out_of_order_and_an_incomplete_set_times_out() {
    let c = Canary::start(|_| {}).await;
    let (token, path) = c.mint("fingerprint_svg").await;
    let (late, late_path) = c.mint("fingerprint_html").await;
    let d = fingerprint(mint_of(&path), &["scr", "tz", "cv", "gl", "au"]);
    let third = d.len().div_ceil(3);
    let parts: Vec<String> = d
        .as_bytes()
        .chunks(third)
        .map(|p| String::from_utf8(p.to_vec()).unwrap())
        .collect();
    assert_eq!(parts.len(), 3);
    let nonce = nonce_of(&path);
    let late_nonce = nonce_of(&late_path);
    let addr = c.addr;
    tokio::task::spawn_blocking(move || {
        for i in [2, 0, 1] {
            let t = format!("{path}?s=ab12&i={i}&n=3&d={}&k={nonce}", parts[i]);
            assert_gif(&get(addr, &t));
        }
        for i in [0, 1] {
            assert_gif(&get(
                addr,
                &format!("{late_path}?s=zz9&i={i}&n=3&d=AAAA&k={late_nonce}"),
            ));
        }
    })
    .await
    .unwrap();
    let rows = c.triggers(token).await;
    assert_eq!(rows.len(), 1, "one row per set");
    assert_eq!(rows[0].fingerprint_state, "valid");
    assert_eq!(
        (
            rows[0].flags["chunks_received"].clone(),
            rows[0].flags["chunks_total"].clone()
        ),
        (json!(3), json!(3))
    );
    assert_eq!(
        c.db.canary_token(token).await.unwrap().unwrap().state,
        "revoked"
    );
    assert!(
        c.triggers(late).await.is_empty(),
        "nothing before the timeout"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let rows = c.triggers(late).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].fingerprint_state, "chunk_timeout");
    assert_eq!(rows[0].flags["chunks_received"], 2);
    assert!(rows[0].fingerprint.is_none());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_thirty_first_submission_in_a_minute_is_rate_limited() {
    let c = Canary::start(|_| {}).await;
    let (token, path) = c.mint("fingerprint_html").await;
    let nonce = nonce_of(&path);
    let addr = c.addr;
    tokio::task::spawn_blocking(move || {
        // Thirty invalid submissions, then a valid one.
        for _ in 0..30 {
            get(addr, &format!("{path}?d=%21%21&k={nonce}"));
        }
        let valid = fingerprint(mint_of(&path), &["scr", "tz", "cv"]);
        get(addr, &format!("{path}?d={valid}&k={nonce}"));
    })
    .await
    .unwrap();
    let rows = c.triggers(token).await;
    assert_eq!(rows.len(), 31);
    assert_eq!(rows[0].fingerprint_state, "rate_limited");
    assert!(
        rows[1..]
            .iter()
            .all(|r| r.fingerprint_state == "decode_error")
    );
    assert_eq!(
        c.db.canary_token(token).await.unwrap().unwrap().state,
        "planted"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_preview_is_recorded_as_a_scanner_and_never_revokes() {
    let c = Canary::start(|_| {}).await;
    let (token, path) = c.mint("fingerprint_html").await;
    let target = format!(
        "{path}?d={}&k={}",
        fingerprint(mint_of(&path), &["scr", "tz", "cv"]),
        nonce_of(&path)
    );
    let addr = c.addr;
    tokio::task::spawn_blocking(move || {
        http(
            addr,
            "GET",
            &target,
            &[(
                "User-Agent",
                "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            )],
        )
    })
    .await
    .unwrap();
    let rows = c.triggers(token).await;
    assert_eq!(rows.len(), 1);
    assert!(rows[0].suspected_scanner);
    assert_eq!(rows[0].scanner_reason.as_deref(), Some("ua:Slackbot"));
    assert_eq!(rows[0].fingerprint_state, "valid");
    assert_eq!(
        c.db.canary_token(token).await.unwrap().unwrap().state,
        "planted"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minting_refuses_what_it_cannot_honour() {
    let c = Canary::start(|c| c.fingerprint_secret = None).await;
    let cases = [
        (
            json!({"generator": "fingerprint_html", "decky_name": "decoy-01", "created_by": "t"}),
            ("503", "canary fingerprint secret is not configured"),
        ),
        (
            json!({"generator": "mysql_dump", "decky_name": "decoy-01", "created_by": "t"}),
            ("422", "generator 'mysql_dump' needs DECNET_CANARY_DNS_ZONE"),
        ),
        (
            json!({"generator": "nope", "decky_name": "decoy-01", "created_by": "t"}),
            ("422", "unknown generator 'nope'"),
        ),
        (
            json!({"generator": "env_file", "decky_name": "Decoy", "created_by": "t"}),
            ("422", "decky_name must match [a-z0-9][a-z0-9-]{0,62}"),
        ),
        (
            json!({"generator": "env_file", "decky_name": "decoy-01", "placement_path": "/home/../etc/x", "created_by": "t"}),
            (
                "422",
                "placement_path must be absolute, without NUL, CR, LF or a '..' component",
            ),
        ),
    ];
    for (body, (code, message)) in cases {
        let got = c
            .request("decnet.canary.token.mint", body.clone())
            .await
            .unwrap_err();
        assert_eq!(got, (code.to_owned(), message.to_owned()), "{body}");
    }
    // Other generators still mint without the secret, and never carry a nonce.
    let minted = c
        .request(
            "decnet.canary.token.mint",
            json!({"generator": "env_file", "decky_name": "decoy-01", "created_by": "t"}),
        )
        .await
        .unwrap();
    let uuid: Uuid = minted["token"]["uuid"].as_str().unwrap().parse().unwrap();
    let row = c.db.canary_token(uuid).await.unwrap().unwrap();
    assert!(row.fingerprint_nonce.is_none());
    for hidden in ["slug", "slug_key", "fingerprint_nonce", "mint_uuid"] {
        assert!(
            minted["token"].get(hidden).is_none(),
            "{hidden} is never returned"
        );
    }
    c.stop().await;
}

/// A DNS query for `name`, type A, as a resolver sends it.
fn dns_query(name: &str) -> Vec<u8> {
    let mut p = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.extend_from_slice(&[0, 0, 1, 0, 1]);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_case_dns_query_for_a_live_dns_token_matches() {
    let dns: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let c = Canary::start(|c| {
        c.dns_zone = Some("canary.example".to_owned());
        c.dns_listen = dns;
    })
    .await;
    let mut events = c.client.subscribe("canary.*.triggered").await.unwrap();
    c.client.flush().await.unwrap();
    let minted = c
        .request(
            "decnet.canary.token.mint",
            json!({"generator": "ssh_key", "decky_name": "decoy-01", "created_by": "test"}),
        )
        .await
        .unwrap();
    let token: Uuid = minted["token"]["uuid"].as_str().unwrap().parse().unwrap();
    let name = minted["token"]["dns_name"].as_str().unwrap().to_owned();
    assert!(name.ends_with(".canary.example"), "{name}");
    let slug = name.split('.').next().unwrap().to_owned();
    assert_eq!(
        slug,
        slug.to_ascii_lowercase(),
        "minted slugs are lower-case"
    );
    // A resolver using 0x20 randomisation: every other letter upper-cased.
    let mixed: String = name
        .chars()
        .enumerate()
        .map(|(i, ch)| {
            if i % 2 == 0 {
                ch.to_ascii_uppercase()
            } else {
                ch
            }
        })
        .collect();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&dns_query(&mixed), dns).await.unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let reply = &buf[..n];
    assert_eq!(&reply[..2], &[0xbe, 0xef]);
    assert_eq!(reply[2] & 0x04, 0x04, "authoritative");
    assert_eq!(reply[3] & 0x0f, 0, "NOERROR");
    assert_eq!(&reply[n - 4..], &[192, 0, 2, 1]);
    assert!(
        reply
            .windows(mixed.len().min(10))
            .any(|w| w == &mixed.as_bytes()[..mixed.len().min(10)]),
        "the question echoed as asked"
    );

    let rows = c.triggers(token).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].channel, "dns");
    assert_eq!(rows[0].dns_qname.as_deref(), Some(name.as_str()));
    assert_eq!(rows[0].method, None);
    let event = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap();
    let body: Value = serde_json::from_slice(&event.payload).unwrap();
    assert_eq!(body["channel"], "dns");
    assert_eq!(body["token_kind"], "ssh_key");
    assert_eq!(body["dns_qname"], name.as_str());

    // Outside the zone: NXDOMAIN; garbage: no answer at all.
    socket
        .send_to(&dns_query("www.example.org"), dns)
        .await
        .unwrap();
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(buf[3] & 0x0f, 3);
    assert!(n >= 12);
    socket.send_to(&[0xff; 7], dns).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buf))
            .await
            .is_err()
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_during_a_database_outage_are_spooled_and_recorded_when_it_returns() {
    let Some(pg) =
        decnet_test_support::FreshPostgres::create("the canary spool on PostgreSQL").await
    else {
        return;
    };
    let target: SocketAddr = pg.authority.rsplit('@').next().unwrap().parse().unwrap();
    let proxy = decnet_test_support::TcpProxy::start(target).unwrap();
    let proxied = pg.url.replacen(
        &target.to_string(),
        &format!("127.0.0.1:{}", proxy.port()),
        1,
    );
    let c = Canary::start_on(Some((proxied, pg.url.clone())), |_| {}).await;
    let (token, path) = c.mint("honeydoc").await;
    proxy.cut();
    let addr = c.addr;
    let p = path.clone();
    let started = std::time::Instant::now();
    let answers = tokio::task::spawn_blocking(move || {
        (0..5)
            .map(|i| get(addr, &format!("{p}/during-{i}")))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for a in &answers {
        assert_gif(a);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the beacon stays quick: {:?}",
        started.elapsed()
    );
    assert!(
        c.triggers(token).await.is_empty(),
        "nothing reached the database"
    );
    proxy.restore();
    let mut rows = Vec::new();
    for _ in 0..100 {
        rows = c.triggers(token).await;
        if rows.len() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut paths: Vec<String> = rows.iter().filter_map(|r| r.request_path.clone()).collect();
    paths.sort();
    assert_eq!(
        paths,
        (0..5)
            .map(|i| format!("{path}/during-{i}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        c.db.canary_token(token)
            .await
            .unwrap()
            .unwrap()
            .trigger_count,
        5
    );
    c.stop().await;
    pg.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_of_quotes_still_records_and_spools_nothing() {
    // Escaping doubles a quote; the stored headers must still fit the column (the fuzz run
    // found rows refused, then every client's hits spooled for a second after each).
    let c = Canary::start(|_| {}).await;
    let (token, path) = c.mint("honeydoc").await;
    let (other, other_path) = c.mint("honeydoc").await;
    let addr = c.addr;
    let quotes = "\"".repeat(9000);
    tokio::task::spawn_blocking(move || {
        assert_gif(&http(
            addr,
            "GET",
            &path,
            &[("X-Q", &quotes), ("X-Tab", "a\tb\\c")],
        ));
        assert_gif(&get(addr, &other_path));
    })
    .await
    .unwrap();
    let rows = c.triggers(token).await;
    assert_eq!(rows.len(), 1, "recorded at once");
    let stored = serde_json::to_string(rows[0].headers.as_ref().unwrap()).unwrap();
    assert!(stored.len() <= 16 * 1024, "{} bytes", stored.len());
    assert_eq!(
        c.triggers(other).await.len(),
        1,
        "the next hit is not sent to the spool"
    );
    let metrics = c.ops.metrics();
    assert!(
        metrics
            .lines()
            .any(|l| l == "decnet_canary_spooled_total 0"),
        "{metrics}"
    );
    c.stop().await;
}
