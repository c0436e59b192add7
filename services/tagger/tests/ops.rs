//! The tagger's ops listener: `/readyz` turns ready once the consumer is set up, `/metrics`
//! counts what was settled, and the process-level `/readyz` reports the tagger stopped after
//! a shutdown.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use decnet_ops::Ops;
use decnet_tagger::{TaggerConfig, run_with};
use decnet_test_support::{NatsServer, free_port};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// A plain HTTP/1.1 GET: status code and body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (status, body.to_owned())
}

#[tokio::test]
async fn readiness_and_metrics_follow_the_work() {
    let server = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("decnet.db").display());
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/ttp");
    // The default 1 s fetch: shorter pull requests can deliver a message twice on a loaded
    // machine, and the counts below are exact.
    let config = TaggerConfig::new(&server.url(), &url, Some(rules));

    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let ops = Ops::new();
    let listener = decnet_ops::bind(addr).await.unwrap();
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(decnet_ops::serve(
        listener,
        std::sync::Arc::clone(&ops),
        shutdown.clone(),
    ));
    assert_eq!(get(addr, "/healthz").await, (200, "ok\n".into()));
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(
        (status, body.as_str()),
        (503, ""),
        "no service has started yet"
    );

    let task = {
        let ops = std::sync::Arc::clone(&ops);
        tokio::spawn(async move { run_with(&config, &ops, shutdown).await })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while get(addr, "/readyz").await != (200, "tagger: ready\n".into()) {
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let client = decnet_bus::connect(&server.url(), "test", Duration::from_secs(5))
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let session = json!({"session_id": "s1", "attacker_ip": "203.0.113.7", "decky_id": "decoy-01",
        "service": "ssh", "ended_at": "2026-12-04T10:01:00Z", "duration_s": 60.0,
        "commands": [{"command_text": "cat /etc/shadow", "ts": "2026-12-04T10:00:00Z"}]});
    for (subject, id, body) in [
        (
            "attacker.session.ended",
            "s1",
            Bytes::from(session.to_string()),
        ),
        (
            "attacker.session.ended",
            "bad",
            Bytes::from_static(b"not json"),
        ),
        ("smtp.probe.relayed", "r1", Bytes::from_static(b"{}")),
    ] {
        decnet_bus::publish(&js, subject, id, &BTreeMap::new(), body)
            .await
            .unwrap();
    }
    // Processed: the session, the skipped notice, and the tagger's own `attacker.observed`
    // for the new attacker, which comes back through EVENTS.
    let want = [
        "decnet_tagger_messages_total{outcome=\"processed\"} 3",
        "decnet_tagger_messages_total{outcome=\"dead_lettered\"} 1",
        "decnet_tagger_dead_letters_total{reason=\"decode_error\"} 1",
        "decnet_tagger_skipped_total{pattern=\"smtp.probe.relayed\"} 1",
        "decnet_outbox_pending{service=\"tagger\"} 0",
    ];
    loop {
        let (status, text) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        if want.iter().all(|w| text.contains(w)) && !text.contains("tags_written_total 0") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics never showed the work:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(
        ops.readiness(),
        (false, "tagger: stopped: shut down\n".into())
    );
}
