//! Loopback load on the API over a million tags, on SQLite and on PostgreSQL: the by-identity
//! rollup and the tag-detail page at a fixed open-loop rate, with two baselines measured in
//! the same run — `/healthz` (the HTTP floor) and an authenticated by-session rollup of an
//! unknown session (HTTP, token check and one empty indexed query).
//!
//! `cargo bench -p decnet-api --bench load`; `DECNET_BENCH_TAGS` (default 1,000,000),
//! `DECNET_BENCH_RATE` (requests/s, default 200), `DECNET_BENCH_SECS` (per endpoint, default
//! 15). PostgreSQL runs when `DECNET_TEST_DATABASE_URL` is set, in a fresh database.
//!
//! Tags are generated in SQL (a recursive CTE, `generate_series`): 1,000 identities of ten
//! attackers each, 16 (technique, sub-technique, tactic) combinations, one tag a second.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use decnet_api::auth::{Role, issue};
use decnet_api::{AppState, Secret, Verifier};
use decnet_ops::Ops;
use decnet_storage::{Database, Options};
use decnet_test_support::FreshPostgres;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

const IDENTITIES: u64 = 1000;
const ATTACKERS: u64 = 10_000;
/// (technique, sub-technique or '', tactic).
const COMBOS: [(&str, &str, &str); 16] = [
    ("T1110", "T1110.001", "TA0006"),
    ("T1110", "T1110.003", "TA0006"),
    ("T1110", "", "TA0006"),
    ("T1078", "", "TA0001"),
    ("T1078", "", "TA0003"),
    ("T1059", "T1059.004", "TA0002"),
    ("T1082", "", "TA0007"),
    ("T1033", "", "TA0007"),
    ("T1003", "T1003.008", "TA0006"),
    ("T1105", "", "TA0011"),
    ("T1046", "", "TA0007"),
    ("T1021", "T1021.004", "TA0008"),
    ("T1083", "", "TA0007"),
    ("T1057", "", "TA0007"),
    ("T1070", "T1070.003", "TA0005"),
    ("T1496", "", "TA0040"),
];

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn combos_sql() -> String {
    COMBOS
        .iter()
        .enumerate()
        .map(|(i, (t, s, a))| format!("({i}, '{t}', '{s}', '{a}')"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn seed_sqlite(db: &Database, tags: u64) {
    let Database::Sqlite(pool) = db else {
        unreachable!()
    };
    let base = 1_790_000_000;
    sqlx::query(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {IDENTITIES}) \
         INSERT INTO identity SELECT printf('11111111-0000-4000-8000-%012x', i), NULL, NULL, \
         '2026-12-01T00:00:00.000000Z', '2026-12-01T00:00:00.000000Z' FROM n"
    ))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {ATTACKERS}) \
         INSERT INTO attacker SELECT printf('33333333-0000-4000-8000-%012x', i), NULL, \
         printf('11111111-0000-4000-8000-%012x', i / 10), \
         '2026-12-01T00:00:00.000000Z', '2026-12-01T00:00:00.000000Z' FROM n"
    ))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {tags}), \
         c(k, t, s, a) AS (VALUES {}) \
         INSERT INTO ttp_tag SELECT printf('44444444-0000-4000-8000-%012x', i), 'command', \
         printf('ev-%d', i), printf('33333333-0000-4000-8000-%012x', i % {ATTACKERS}), \
         printf('11111111-0000-4000-8000-%012x', (i % {ATTACKERS}) / 10), printf('s-%d', i / 50), \
         'decoy-01', c.a, c.t, nullif(c.s, ''), 0.8, printf('R%04d', 1 + c.k), 1, \
         '{{\"command\": \"uname -a\"}}', 'enterprise-v18.1', \
         'https://attack.mitre.org/techniques/' || c.t, \
         strftime('%Y-%m-%dT%H:%M:%S', {base} + i, 'unixepoch') || '.000000Z' \
         FROM n JOIN c ON c.k = (i / {ATTACKERS}) % 16",
        combos_sql()
    ))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(pool).await.unwrap();
}

async fn seed_postgres(db: &Database, tags: u64) {
    let Database::Postgres(pool) = db else {
        unreachable!()
    };
    let id = |prefix: &str, expr: &str| {
        format!("('{prefix}-0000-4000-8000-' || lpad(to_hex({expr}), 12, '0'))::uuid")
    };
    sqlx::query(&format!(
        "INSERT INTO identity SELECT {}, NULL, NULL, now(), now() \
         FROM generate_series(0, {}) i",
        id("11111111", "i"),
        IDENTITIES - 1
    ))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(&format!(
        "INSERT INTO attacker SELECT {}, NULL, {}, now(), now() FROM generate_series(0, {}) i",
        id("33333333", "i"),
        id("11111111", "i / 10"),
        ATTACKERS - 1
    ))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(&format!(
        "WITH c(k, t, s, a) AS (VALUES {}) \
         INSERT INTO ttp_tag SELECT {}, 'command', 'ev-' || i, {}, {}, 's-' || (i / 50), \
         'decoy-01', c.a, c.t, nullif(c.s, ''), 0.8, 'R' || lpad((1 + c.k)::text, 4, '0'), 1, \
         '{{\"command\": \"uname -a\"}}'::jsonb, 'enterprise-v18.1', \
         'https://attack.mitre.org/techniques/' || c.t, \
         to_timestamp(1790000000 + i) FROM generate_series(0, {}) i \
         JOIN c ON c.k = (i / {ATTACKERS}) % 16",
        combos_sql(),
        id("44444444", "i"),
        id("33333333", &format!("i % {ATTACKERS}")),
        id("11111111", &format!("(i % {ATTACKERS}) / 10")),
        tags - 1
    ))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(pool).await.unwrap();
}

type Pool = Arc<Mutex<Vec<SendRequest<Empty<Bytes>>>>>;

/// How an endpoint's request paths are drawn.
type PathFn = Box<dyn FnMut(&mut XorShift) -> String>;

/// The report is the bench's product: one line per measurement on a locked stdout.
fn report(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

async fn connection(port: u16) -> SendRequest<Empty<Bytes>> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream.set_nodelay(true).unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// One GET on a pooled keep-alive connection: its latency, or `None` for a non-200.
async fn get(pool: Pool, port: u16, path: String, token: Arc<str>) -> Option<Duration> {
    let popped = pool.lock().unwrap().pop();
    let mut send = match popped {
        Some(s) => s,
        None => connection(port).await,
    };
    let request = hyper::Request::get(path)
        .header("host", "127.0.0.1")
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::new())
        .unwrap();
    let started = Instant::now();
    let response = send.send_request(request).await.ok()?;
    let ok = response.status() == 200;
    response.into_body().collect().await.ok()?;
    let took = started.elapsed();
    pool.lock().unwrap().push(send);
    ok.then_some(took)
}

/// A small deterministic generator: the same identities in every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Open-loop load: `rate` requests a second for `secs`, each sent on schedule whether or not
/// earlier ones have answered.
async fn load(
    port: u16,
    token: &Arc<str>,
    rate: u64,
    secs: u64,
    mut path: impl FnMut(&mut XorShift) -> String,
) -> (Vec<Duration>, usize, f64) {
    let pool: Pool = Arc::new(Mutex::new(Vec::new()));
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..rate * secs {
        tick.tick().await;
        let p = path(&mut rng);
        tasks.push(tokio::spawn(get(
            Arc::clone(&pool),
            port,
            p,
            Arc::clone(token),
        )));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut errors = 0;
    for t in tasks {
        match t.await.unwrap() {
            Some(d) => latencies.push(d),
            None => errors += 1,
        }
    }
    let rps = (latencies.len() + errors) as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    (latencies, errors, rps)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

async fn bench(backend: &str, db: Database, rate: u64, secs: u64) {
    let secret = Secret::new(b"a load bench key of at least 32 bytes".to_vec(), "bench").unwrap();
    let token: Arc<str> = issue(
        &secret,
        "bench",
        Role::Viewer,
        chrono::Utc::now().timestamp(),
        3600,
        None,
    )
    .into();
    let state = AppState::new(
        db,
        Verifier::new(secret, None),
        "nats://127.0.0.1:1",
        None,
        Ops::new(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server =
        tokio::spawn(async move { axum::serve(listener, decnet_api::routes::router(state)).await });
    let identity =
        |rng: &mut XorShift| format!("11111111-0000-4000-8000-{:012x}", rng.next() % IDENTITIES);
    let cases: Vec<(&str, PathFn)> = vec![
        ("baseline /healthz", Box::new(|_| "/healthz".to_owned())),
        (
            "baseline by-session (unknown)",
            Box::new(|_| "/api/v1/ttp/by-session/nobody".to_owned()),
        ),
        (
            "by-identity rollup",
            Box::new(move |rng| format!("/api/v1/ttp/by-identity/{}", identity(rng))),
        ),
        (
            "tag detail by-identity",
            Box::new(move |rng| {
                let (t, _, _) = COMBOS[(rng.next() % 16) as usize];
                format!("/api/v1/ttp/tags/by-identity/{}/{t}", identity(rng))
            }),
        ),
    ];
    for (name, path) in cases {
        let (lat, errors, rps) = load(port, &token, rate, secs, path).await;
        report(&format!(
            "{backend:<8} {name:<30} n={:<6} errors={errors:<3} {rps:>7.1} req/s  p50 {:>7.2} ms  p95 {:>7.2} ms  p99 {:>7.2} ms",
            lat.len(),
            pct(&lat, 0.50),
            pct(&lat, 0.95),
            pct(&lat, 0.99),
        ));
    }
    server.abort();
}

fn main() {
    let tags = env_u64("DECNET_BENCH_TAGS", 1_000_000);
    let rate = env_u64("DECNET_BENCH_RATE", 200);
    let secs = env_u64("DECNET_BENCH_SECS", 15);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let db = Database::connect(&url, &Options::default()).await.unwrap();
        let seeding = Instant::now();
        seed_sqlite(&db, tags).await;
        report(&format!(
            "sqlite: {tags} tags seeded in {:.1} s",
            seeding.elapsed().as_secs_f64()
        ));
        bench("sqlite", db, rate, secs).await;

        let Some(pg) = FreshPostgres::create("the PostgreSQL half of the load bench").await else {
            return;
        };
        let db = Database::connect(&pg.url, &Options::default())
            .await
            .unwrap();
        let seeding = Instant::now();
        seed_postgres(&db, tags).await;
        report(&format!(
            "postgres: {tags} tags seeded in {:.1} s",
            seeding.elapsed().as_secs_f64()
        ));
        bench("postgres", db.clone(), rate, secs).await;
        db.close().await;
        pg.remove().await;
    });
}
