//! The bus plumbing against a real, private nats-server (2.9 on CI): streams, consumers and
//! the runner's settling of every outcome, across a server restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use decnet_bus::{
    BusError, ConsumerSpec, Delivery, Handler, Outcome, Poison, RunnerConfig, connect,
    ensure_consumer, ensure_streams, publish, run,
};
use decnet_test_support::NatsServer;
use futures_util::StreamExt;
use tokio::sync::watch;

async fn jetstream_of(server: &NatsServer) -> jetstream::Context {
    let client = connect(&server.url(), "decnet-bus-test", Duration::from_secs(5))
        .await
        .unwrap();
    jetstream::new(client)
}

fn spec() -> ConsumerSpec {
    ConsumerSpec {
        stream: "EVENTS",
        durable: "tagger".into(),
        filter: None,
        ack_wait: Duration::from_secs(30),
        max_deliver: None,
        max_ack_pending: 10_000,
    }
}

#[tokio::test]
async fn streams_are_created_once_and_never_narrowed() {
    let server = NatsServer::start().unwrap();
    let js = jetstream_of(&server).await;
    // Someone else's subject on EVENTS must survive our start-up.
    js.create_stream(jetstream::stream::Config {
        name: "EVENTS".into(),
        subjects: vec!["custom.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    for _ in 0..2 {
        ensure_streams(&js, &["EVENTS", "TTP", "DLQ"])
            .await
            .unwrap();
    }
    let mut events = js.get_stream("EVENTS").await.unwrap();
    let subjects = events.info().await.unwrap().config.subjects.clone();
    assert_eq!(
        subjects,
        vec![
            "custom.>",
            "attacker.>",
            "email.>",
            "canary.>",
            "credential.>",
            "identity.>",
            "smtp.probe.relayed"
        ]
    );
    let mut dlq = js.get_stream("DLQ").await.unwrap();
    let config = dlq.info().await.unwrap().config.clone();
    assert_eq!(config.max_age, Duration::from_secs(30 * 86_400));
    assert_eq!(config.duplicate_window, Duration::from_secs(600));
    let err = ensure_streams(&js, &["NOPE"]).await.unwrap_err();
    assert_eq!(err.to_string(), "no stream is named NOPE");
}

#[tokio::test]
async fn a_consumer_the_server_keeps_differently_is_refused_by_name_and_field() {
    let server = NatsServer::start().unwrap();
    let js = jetstream_of(&server).await;
    ensure_streams(&js, &["EVENTS"]).await.unwrap();
    ensure_consumer(&js, &spec()).await.unwrap();
    ensure_consumer(&js, &spec()).await.unwrap();
    let changed = ConsumerSpec {
        ack_wait: Duration::from_secs(5),
        ..spec()
    };
    match ensure_consumer(&js, &changed).await {
        Err(BusError::ConsumerMismatch {
            consumer, field, ..
        }) => {
            assert_eq!((consumer.as_str(), field), ("tagger", "ack_wait"));
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

/// Handles `ok-*` once, fails `flaky-*` on its first delivery, refuses `poison-*`.
#[derive(Clone, Default)]
struct Scripted {
    seen: Arc<Mutex<HashMap<String, u32>>>,
}

impl Handler for Scripted {
    async fn handle(&mut self, batch: &[Delivery]) -> Vec<Outcome> {
        let mut seen = self.seen.lock().unwrap();
        batch
            .iter()
            .map(|d| {
                let body = String::from_utf8_lossy(d.payload()).into_owned();
                let n = seen.entry(body.clone()).or_default();
                *n += 1;
                if body.starts_with("poison") {
                    Outcome::Poison(Poison {
                        code: "schema_error",
                        detail: format!("{body}: expected an object\r\n"),
                    })
                } else if body.starts_with("flaky") && d.deliveries() == 1 {
                    Outcome::Transient("database is locked".into())
                } else {
                    Outcome::Done
                }
            })
            .collect()
    }
}

async fn publish_bodies(js: &jetstream::Context, prefix: &str, n: usize) {
    for i in 0..n {
        publish(
            js,
            "attacker.session.ended",
            &format!("{prefix}-{i}"),
            &BTreeMap::new(),
            Bytes::from(format!("{prefix}-{i}")),
        )
        .await
        .unwrap();
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn config() -> RunnerConfig {
    RunnerConfig {
        batch: 16,
        // The runner's default. With 200 ms pull requests expired while a loaded server was
        // still delivering: a message came twice in one batch (once with a stale delivery
        // count) or 5 s late, and the exact counts below failed about one run in four.
        fetch_wait: Duration::from_secs(1),
        nak_delays: vec![Duration::from_millis(200)],
        ..RunnerConfig::new("tagger", "tagger")
    }
}

#[tokio::test]
async fn every_outcome_is_settled_and_poison_never_stalls_the_rest() {
    let server = NatsServer::start().unwrap();
    let js = jetstream_of(&server).await;
    ensure_streams(&js, &["EVENTS", "DLQ"]).await.unwrap();
    // Should a delivery ever be lost on a loaded machine, it comes back after ack_wait; 30 s
    // would outlast this test's patience, 8 s keeps such a redelivery inside it.
    let spec = ConsumerSpec {
        ack_wait: Duration::from_secs(8),
        ..spec()
    };
    let consumer = ensure_consumer(&js, &spec).await.unwrap();
    // Poison first, so good messages sit behind it.
    publish_bodies(&js, "poison", 5).await;
    publish_bodies(&js, "ok", 40).await;
    publish_bodies(&js, "flaky", 5).await;
    // A replayed publish is dropped by the server (same msg id).
    publish_bodies(&js, "ok", 3).await;

    let handler = Scripted::default();
    let (stop, shutdown) = watch::channel(false);
    let task = {
        let (js, consumer, mut handler) = (js.clone(), consumer.clone(), handler.clone());
        tokio::spawn(async move { run(&js, &consumer, &mut handler, &config(), shutdown).await })
    };
    let seen = Arc::clone(&handler.seen);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let flaky: Vec<Option<u32>> = {
            let seen = seen.lock().unwrap();
            (0..5)
                .map(|i| seen.get(&format!("flaky-{i}")).copied())
                .collect()
        };
        if flaky.iter().all(|n| *n == Some(2)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: every flaky message came back once; handled {flaky:?} times"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut consumer = consumer;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let info = consumer.info().await.unwrap().clone();
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "consumer not drained"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();

    let seen = handler.seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        50,
        "each message once, the duplicate publishes dropped"
    );
    assert!((0..40).all(|i| seen[&format!("ok-{i}")] == 1));
    assert!(
        (0..5).all(|i| seen[&format!("poison-{i}")] == 1),
        "poison is terminated, not retried"
    );

    // The dead letters: the original bodies, with the reason and where they came from.
    let dlq = js.get_stream("DLQ").await.unwrap();
    let letters = dlq
        .create_consumer(jetstream::consumer::pull::Config::default())
        .await
        .unwrap();
    let mut messages = letters.fetch().max_messages(10).messages().await.unwrap();
    let mut bodies = Vec::new();
    while let Some(m) = messages.next().await {
        let m = m.unwrap();
        let headers = m.headers.clone().unwrap();
        let get = |k: &str| headers.get(k).map(|v| v.as_str().to_owned());
        let body = String::from_utf8_lossy(&m.payload).into_owned();
        assert_eq!(m.subject.as_str(), "decnet.dlq.tagger");
        assert_eq!(
            get("decnet-dlq-reason"),
            Some(format!("schema_error: {body}: expected an object"))
        );
        assert_eq!(
            get("decnet-dlq-subject").as_deref(),
            Some("attacker.session.ended")
        );
        assert_eq!(get("decnet-dlq-stream").as_deref(), Some("EVENTS"));
        assert_eq!(get("decnet-dlq-consumer").as_deref(), Some("tagger"));
        assert_eq!(get("decnet-dlq-msg-id"), Some(body.clone()));
        let seq = get("decnet-dlq-seq").unwrap();
        assert_eq!(get("Nats-Msg-Id"), Some(format!("dlq:EVENTS:{seq}")));
        bodies.push(body);
        m.ack().await.unwrap();
    }
    bodies.sort();
    assert_eq!(
        bodies,
        (0..5).map(|i| format!("poison-{i}")).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn the_runner_waits_out_a_server_restart() {
    let mut server = NatsServer::start().unwrap();
    let js = jetstream_of(&server).await;
    ensure_streams(&js, &["EVENTS", "DLQ"]).await.unwrap();
    let consumer = ensure_consumer(&js, &spec()).await.unwrap();
    publish_bodies(&js, "before", 10).await;
    let handler = Scripted::default();
    let (stop, shutdown) = watch::channel(false);
    let task = {
        let (js, consumer, mut handler) = (js.clone(), consumer.clone(), handler.clone());
        tokio::spawn(async move { run(&js, &consumer, &mut handler, &config(), shutdown).await })
    };
    let seen = Arc::clone(&handler.seen);
    wait_until("the first messages", || seen.lock().unwrap().len() == 10).await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart().unwrap();
    // The client reconnects by itself; publishing waits for it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut published = 0;
    while published < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "could not publish after the restart"
        );
        let body = format!("after-{published}");
        match publish(
            &js,
            "attacker.session.ended",
            &body,
            &BTreeMap::new(),
            Bytes::from(body.clone()),
        )
        .await
        {
            Ok(_) => published += 1,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    wait_until("the messages published after the restart", || {
        seen.lock().unwrap().len() == 20
    })
    .await;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_quarantine_bucket_is_created_once_and_holds_messages_by_decoy_and_name() {
    use decnet_bus::quarantine;
    let server = NatsServer::start().unwrap();
    let js = jetstream_of(&server).await;
    assert!(quarantine::open_bucket(&js).await.unwrap().is_none());
    // Two decoys starting at once both get the one bucket.
    let (a, b) = tokio::join!(
        quarantine::ensure_bucket(&js),
        quarantine::ensure_bucket(&js)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let name = quarantine::object_name("decoy-01", "2026-12-04T08:00:00Z_0123456789ab_BCD.eml");
    assert_eq!(name, "decoy-01/2026-12-04T08:00:00Z_0123456789ab_BCD.eml");
    let message = b"From: a@b\r\n\r\nhello\r\n".repeat(20_000);
    quarantine::put(&a, &name, &message).await.unwrap();
    // A spool retry puts the same bytes again.
    quarantine::put(&a, &name, &message).await.unwrap();
    let back = quarantine::get(&b, &name, message.len()).await.unwrap();
    assert_eq!(back.as_deref(), Some(&message[..]));
    let err = quarantine::get(&b, &name, 100).await.unwrap_err();
    assert!(
        err.to_string().contains("larger than the 100 bytes"),
        "{err}"
    );
    assert_eq!(
        quarantine::get(&b, "decoy-01/none.eml", 10).await.unwrap(),
        None
    );
    let info = js
        .get_stream("OBJ_QUARANTINE")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .config
        .clone();
    assert_eq!(info.max_age, quarantine::MAX_AGE);
}
