//! probe-relay end to end (SMTP.md §10, items 6–10): a private nats-server, SQLite (and
//! PostgreSQL for the limit when `DECNET_TEST_DATABASE_URL` is set), real SMTP over loopback
//! to a scripted sink.

mod support;

use std::time::Duration;

use decnet_probe_relay::ProbeRelayConfig;
use decnet_proto::payload::smtp::{ProbeOutcome, ProbeRelayed, UpstreamTls};
use decnet_test_support::FreshPostgres;
use support::sink::{DataEnd, Script, Sink};
use support::{Message, World, mail, plain_config};

const A: &str = "203.0.113.7";
const B: &str = "198.51.100.9";

fn anchor(ip: &str) -> uuid::Uuid {
    decnet_ttp::anchor::attacker_uuid_for_ip(ip).unwrap()
}

/// What a sent probe's announcement holds, but for its time.
fn sent(
    stored_as: &str,
    ip: &str,
    slot: i64,
    limit: i64,
    port: u16,
    attempts: i64,
) -> ProbeRelayed {
    ProbeRelayed {
        decky_id: "decoy-01".into(),
        attacker_ip: ip.into(),
        attacker_uuid: anchor(ip),
        stored_as: stored_as.to_owned(),
        outcome: ProbeOutcome::Sent,
        reason: None,
        slot: Some(slot),
        probe_limit: limit,
        attempts,
        upstream_host: Some("127.0.0.1".into()),
        upstream_port: Some(i64::from(port)),
        tls: Some(UpstreamTls::None),
        smtp_code: Some(250),
        smtp_reply: Some("2.0.0 Ok: queued as SINK1".into()),
        rcpt_count: 1,
        finished_at: chrono::DateTime::UNIX_EPOCH,
    }
}

fn skipped(stored_as: &str, ip: &str, reason: &str, limit: i64, port: u16) -> ProbeRelayed {
    ProbeRelayed {
        outcome: ProbeOutcome::Skipped,
        reason: Some(reason.to_owned()),
        slot: None,
        attempts: 0,
        smtp_code: None,
        smtp_reply: None,
        ..sent(stored_as, ip, 0, limit, port, 0)
    }
}

/// The announcements with their times cleared, for comparison.
fn timeless(mut got: Vec<ProbeRelayed>) -> Vec<ProbeRelayed> {
    for r in &mut got {
        assert!(r.finished_at > chrono::Utc::now() - chrono::TimeDelta::minutes(5));
        r.finished_at = chrono::DateTime::UNIX_EPOCH;
    }
    got
}

/// SMTP.md §10 item 6, and a restart keeping the count.
async fn the_limit(world: World) {
    let sink = Sink::start(Script::default()).await;
    let config = plain_config(sink.port(), "probe_limit = 2");
    let relay = world.relay(world.config(&config), "relay-a").await;
    let bodies: Vec<Vec<u8>> = (0..6).map(mail).collect();
    let offers = [
        ("a1.eml", A),
        ("a2.eml", A),
        ("a3.eml", A),
        ("b1.eml", B),
        ("b2.eml", B),
    ];
    for (i, (name, ip)) in offers.iter().enumerate() {
        world.offer(&Message::new(name, ip, &bodies[i])).await;
    }
    let port = sink.port();
    assert_eq!(
        timeless(world.relayed(5).await),
        vec![
            sent("a1.eml", A, 1, 2, port, 1),
            sent("a2.eml", A, 2, 2, port, 1),
            skipped("a3.eml", A, "limit_reached", 2, port),
            sent("b1.eml", B, 1, 2, port, 1),
            sent("b2.eml", B, 2, 2, port, 1),
        ]
    );
    let received = sink.received();
    assert_eq!(received.len(), 4);
    let mut bodies_received: Vec<_> = received.iter().map(|r| r.data.clone()).collect();
    bodies_received.sort();
    let mut want = vec![
        bodies[0].clone(),
        bodies[1].clone(),
        bodies[3].clone(),
        bodies[4].clone(),
    ];
    want.sort();
    assert_eq!(bodies_received, want);
    assert!(
        received
            .iter()
            .all(|r| r.helo == "decoy-01" && r.mail_from == "spammer@bad.example")
    );
    assert!(received.iter().all(|r| r.rcpt == ["probe@inbox.example"]));

    // A restart (a new instance, the same database) keeps the count.
    relay.stop().await;
    let relay = world.relay(world.config(&config), "relay-b").await;
    world.offer(&Message::new("a4.eml", A, &bodies[5])).await;
    let after = timeless(world.relayed(6).await);
    assert_eq!(after[3], skipped("a4.eml", A, "limit_reached", 2, port));
    assert_eq!(sink.received().len(), 4);
    relay.stop().await;
}

#[tokio::test]
async fn probe_limit_two_skips_the_third_message_of_an_address_and_survives_a_restart() {
    the_limit(World::new().await).await;
}

#[tokio::test]
async fn probe_limit_two_on_postgres() {
    let Some(pg) = FreshPostgres::create("probe-relay's limit on PostgreSQL").await else {
        return;
    };
    let world = World::with_database(tempfile::tempdir().unwrap(), pg.url.clone()).await;
    let db = world.db.clone();
    the_limit(world).await;
    db.close().await;
    pg.remove().await;
}

/// SMTP.md §10 item 7: two instances, the same message delivered three times at once.
#[tokio::test]
async fn two_instances_and_forced_redeliveries_send_a_message_once_and_never_more_than_n() {
    let world = World::new().await;
    let sink = Sink::start(Script {
        data_delay: Duration::from_millis(300),
        ..Script::default()
    })
    .await;
    let config = plain_config(sink.port(), "probe_limit = 2");
    let one = world.relay(world.config(&config), "relay-a").await;
    let two = world.relay(world.config(&config), "relay-b").await;

    let body = mail(1);
    let message = Message::new("same.eml", A, &body);
    world.offer(&message).await;
    for copy in ["copy-1", "copy-2"] {
        world.publish_pending(&message.pending(), copy).await;
    }
    // The first claim of that message is made before the others are offered, so it holds
    // the first slot.
    world.row_when("same.eml", |_| true).await;
    // Five more from the same address: one of them gets the second slot.
    let bodies: Vec<Vec<u8>> = (10..15).map(mail).collect();
    let names: Vec<String> = (0..5).map(|i| format!("more{i}.eml")).collect();
    for (name, body) in names.iter().zip(&bodies) {
        world.offer(&Message::new(name, A, body)).await;
    }

    let got = world.relayed(6).await;
    let sent: Vec<_> = got
        .iter()
        .filter(|r| r.outcome == ProbeOutcome::Sent)
        .collect();
    assert_eq!(sent.len(), 2, "{got:#?}");
    assert!(
        sent.iter()
            .any(|r| r.stored_as == "same.eml" && r.attempts == 1 && r.slot == Some(1))
    );
    let slots: Vec<_> = sent.iter().map(|r| r.slot).collect();
    assert!(
        slots.contains(&Some(1)) && slots.contains(&Some(2)),
        "{slots:?}"
    );
    assert_eq!(
        got.iter()
            .filter(|r| r.reason.as_deref() == Some("limit_reached"))
            .count(),
        4
    );
    let received = sink.received();
    assert_eq!(received.len(), 2, "the sink got each sent message once");
    assert_eq!(received.iter().filter(|r| r.data == body).count(), 1);
    assert_eq!(world.db.probe_relays("decoy-01").await.unwrap().len(), 6);
    one.stop().await;
    two.stop().await;
}

/// SMTP.md §10 item 8.
#[tokio::test]
async fn a_451_then_250_takes_two_attempts_and_is_sent() {
    let world = World::new().await;
    let sink = Sink::start(Script {
        data_ends: [DataEnd::Reply(451, "4.3.0 try again later")].into(),
        ..Script::default()
    })
    .await;
    let relay = world
        .relay(world.config(&plain_config(sink.port(), "")), "relay-a")
        .await;
    let body = mail(1);
    world.offer(&Message::new("m1.eml", A, &body)).await;
    let got = timeless(world.relayed(1).await);
    assert_eq!(got, vec![sent("m1.eml", A, 1, 1, sink.port(), 2)]);
    let received = sink.received();
    assert_eq!(received.len(), 2);
    assert_eq!(
        received[0].end,
        DataEnd::Reply(451, "4.3.0 try again later")
    );
    assert_eq!(received[0].data, received[1].data);
    relay.stop().await;
}

#[tokio::test]
async fn a_550_fails_without_a_retry() {
    let world = World::new().await;
    let sink = Sink::start(Script {
        data_ends: [DataEnd::Reply(550, "5.7.1 relaying denied")].into(),
        ..Script::default()
    })
    .await;
    let relay = world
        .relay(world.config(&plain_config(sink.port(), "")), "relay-a")
        .await;
    world.offer(&Message::new("m1.eml", A, &mail(1))).await;
    let got = timeless(world.relayed(1).await);
    let want = ProbeRelayed {
        outcome: ProbeOutcome::Failed,
        reason: Some("upstream_rejected".into()),
        smtp_code: Some(550),
        smtp_reply: Some("5.7.1 relaying denied".into()),
        ..sent("m1.eml", A, 1, 1, sink.port(), 1)
    };
    assert_eq!(got, vec![want]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        sink.received().len(),
        1,
        "no retry after a permanent refusal"
    );
    relay.stop().await;
}

#[tokio::test]
async fn all_recipients_refused_is_upstream_rejected() {
    let world = World::new().await;
    let sink = Sink::start(Script {
        rcpt_reply: Some((554, "5.7.1 relay access denied")),
        ..Script::default()
    })
    .await;
    let relay = world
        .relay(world.config(&plain_config(sink.port(), "")), "relay-a")
        .await;
    world.offer(&Message::new("m1.eml", A, &mail(1))).await;
    let got = world.relayed(1).await;
    assert_eq!(
        (got[0].outcome, got[0].reason.as_deref()),
        (ProbeOutcome::Failed, Some("upstream_rejected"))
    );
    assert_eq!(got[0].smtp_code, Some(554));
    assert!(sink.received().is_empty());
    relay.stop().await;
}

#[tokio::test]
async fn an_upstream_that_is_down_then_back_gets_the_message() {
    let world = World::new().await;
    let port = decnet_test_support::free_port();
    let relay = world
        .relay(world.config(&plain_config(port, "")), "relay-a")
        .await;
    let body = mail(1);
    world.offer(&Message::new("m1.eml", A, &body)).await;
    // Refused connections are transient: the row waits for its next attempt.
    let waiting = world
        .row_when("m1.eml", |r| {
            r.status == "claimed" && r.attempts >= 2 && r.lease_owner.is_none()
        })
        .await;
    assert_eq!(waiting.lease_owner, None);
    assert!(world.relayed_now().await.is_empty());

    let sink = Sink::start_on(port, Script::default()).await;
    let got = world.relayed(1).await;
    assert_eq!(got[0].outcome, ProbeOutcome::Sent);
    assert!(got[0].attempts >= 3, "{got:?}");
    assert_eq!(sink.received().len(), 1);
    assert_eq!(sink.received()[0].data, body);
    relay.stop().await;
}

#[tokio::test]
async fn retries_stop_at_max_attempts() {
    let world = World::new().await;
    let port = decnet_test_support::free_port();
    let relay = world
        .relay(
            world.config(&plain_config(port, "max_attempts = 3")),
            "relay-a",
        )
        .await;
    world.offer(&Message::new("m1.eml", A, &mail(1))).await;
    let got = world.relayed(1).await;
    assert_eq!(
        (got[0].outcome, got[0].reason.as_deref()),
        (ProbeOutcome::Failed, Some("retries_exhausted"))
    );
    assert_eq!((got[0].attempts, got[0].smtp_code), (3, None));
    relay.stop().await;
}

/// SMTP.md §10 item 7, second half: the connection ends after the final dot.
#[tokio::test]
async fn a_connection_dropped_after_the_final_dot_is_unknown_and_never_resent() {
    let world = World::new().await;
    let sink = Sink::start(Script {
        data_ends: [DataEnd::Drop].into(),
        ..Script::default()
    })
    .await;
    let relay = world
        .relay(world.config(&plain_config(sink.port(), "")), "relay-a")
        .await;
    world.offer(&Message::new("m1.eml", A, &mail(1))).await;
    let got = timeless(world.relayed(1).await);
    let want = ProbeRelayed {
        outcome: ProbeOutcome::Unknown,
        reason: Some("interrupted_after_data".into()),
        smtp_code: None,
        smtp_reply: None,
        ..sent("m1.eml", A, 1, 1, sink.port(), 1)
    };
    assert_eq!(got, vec![want]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(sink.received().len(), 1);
    assert_eq!(sink.log.lock().unwrap().connections, 1, "nothing resent");
    relay.stop().await;
}

#[tokio::test]
async fn an_instance_killed_after_the_final_dot_leaves_unknown_and_nothing_is_resent() {
    let world = World::new().await;
    let sink = Sink::start(Script {
        data_ends: [DataEnd::Stall].into(),
        ..Script::default()
    })
    .await;
    // The stall outlasts nothing but the kill: a long reply timeout.
    let text = plain_config(sink.port(), "").replace("timeout_s = 2", "timeout_s = 30");
    let short_lease = |instance: &str| {
        let mut c = ProbeRelayConfig::new(
            &world.nats.url(),
            &world.database_url,
            world.config(&text),
            instance,
        );
        c.fetch_wait = Duration::from_millis(200);
        c.nak_delays = vec![Duration::from_millis(200)];
        c.lease = Duration::from_secs(2);
        c
    };
    let doomed = world.relay_with(short_lease("relay-a")).await;
    let body = mail(1);
    let message = Message::new("m1.eml", A, &body);
    world.offer(&message).await;
    world.row_when("m1.eml", |r| r.status == "in_flight").await;
    while sink.received().is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    doomed.kill();

    // Another instance gets the message again (JetStream would, after the ack wait).
    let other = world.relay_with(short_lease("relay-b")).await;
    world
        .publish_pending(&message.pending(), "redelivered")
        .await;
    let got = world.relayed(1).await;
    assert_eq!(
        (got[0].outcome, got[0].reason.as_deref()),
        (ProbeOutcome::Unknown, Some("interrupted_after_data"))
    );
    assert_eq!(got[0].attempts, 1);
    assert_eq!(sink.received().len(), 1, "nothing resent");
    assert_eq!(sink.log.lock().unwrap().connections, 1);
    other.stop().await;
}

/// SMTP.md §10 item 9.
#[tokio::test]
async fn starttls_is_used_when_offered_and_credentials_go_over_it() {
    let world = World::new().await;
    let sink = Sink::start(Script {
        starttls: true,
        auth: Some(("relayuser".into(), "s3cr3t-upstream-pw".into())),
        ..Script::default()
    })
    .await;
    let dir = world.dir.path();
    std::fs::write(dir.join("pw"), "s3cr3t-upstream-pw\n").unwrap();
    let ca = decnet_test_support::tls_fixture_dir().join("ca.pem");
    let config = format!(
        "[decky.decoy-01]\nhost = \"localhost\"\nport = {}\nca_file = \"{}\"\nusername = \"relayuser\"\n\
         password_file = \"pw\"\nhelo_name = \"relay.example\"\nretry_schedule = [\"200ms\"]\n",
        sink.port(),
        ca.display()
    );
    let relay = world.relay(world.config(&config), "relay-a").await;
    world.offer(&Message::new("m1.eml", A, &mail(1))).await;
    let got = world.relayed(1).await;
    assert_eq!(
        (got[0].outcome, got[0].tls),
        (ProbeOutcome::Sent, Some(UpstreamTls::Starttls))
    );
    assert_eq!(got[0].upstream_host.as_deref(), Some("localhost"));
    let received = sink.received();
    assert!(received[0].tls);
    assert_eq!(received[0].helo, "relay.example");
    assert_eq!(received[0].auth_user.as_deref(), Some("relayuser"));
    let auth = sink.log.lock().unwrap().auth.clone();
    assert_eq!(
        auth,
        vec![(
            "PLAIN".into(),
            "relayuser".into(),
            "s3cr3t-upstream-pw".into(),
            true
        )]
    );
    assert!(
        sink.commands()
            .iter()
            .all(|(tls, c)| *tls || !c.starts_with("AUTH"))
    );
    relay.stop().await;
}

#[tokio::test]
async fn implicit_tls_works_against_a_tls_sink() {
    let world = World::new().await;
    let sink = Sink::start(Script {
        implicit_tls: true,
        ..Script::default()
    })
    .await;
    let ca = decnet_test_support::tls_fixture_dir().join("ca.pem");
    let config = format!(
        "[defaults]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"implicit\"\nca_file = \"{}\"\n",
        sink.port(),
        ca.display()
    );
    let relay = world.relay(world.config(&config), "relay-a").await;
    world.offer(&Message::new("m1.eml", A, &mail(1))).await;
    let got = world.relayed(1).await;
    assert_eq!(
        (got[0].outcome, got[0].tls),
        (ProbeOutcome::Sent, Some(UpstreamTls::Implicit))
    );
    assert!(sink.received()[0].tls);
    relay.stop().await;
}

#[tokio::test]
async fn a_certificate_that_does_not_verify_is_a_tls_error() {
    let world = World::new().await;
    let sink = Sink::start(Script {
        implicit_tls: true,
        ..Script::default()
    })
    .await;
    // No ca_file: the test chain's root is not trusted.
    let config = format!(
        "[defaults]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"implicit\"\n",
        sink.port()
    );
    let relay = world.relay(world.config(&config), "relay-a").await;
    world.offer(&Message::new("m1.eml", A, &mail(1))).await;
    let got = world.relayed(1).await;
    assert_eq!(
        (got[0].outcome, got[0].reason.as_deref()),
        (ProbeOutcome::Failed, Some("tls_error"))
    );
    assert!(sink.received().is_empty());
    relay.stop().await;
}

#[tokio::test]
async fn credentials_never_go_in_clear_text() {
    let world = World::new().await;
    let sink = Sink::start(Script {
        auth: Some(("relayuser".into(), "pw".into())),
        ..Script::default()
    })
    .await;
    let dir = world.dir.path();
    std::fs::write(dir.join("pw"), "pw").unwrap();
    let config = format!(
        "[defaults]\nhost = \"127.0.0.1\"\nport = {}\nrequire_tls = false\nusername = \"relayuser\"\npassword_file = \"pw\"\n",
        sink.port()
    );
    let relay = world.relay(world.config(&config), "relay-a").await;
    world.offer(&Message::new("m1.eml", A, &mail(1))).await;
    let got = world.relayed(1).await;
    assert_eq!(
        (got[0].outcome, got[0].reason.as_deref()),
        (ProbeOutcome::Failed, Some("starttls_unavailable"))
    );
    let commands = sink.commands();
    assert!(
        !commands
            .iter()
            .any(|(_, c)| c.starts_with("AUTH") || c.starts_with("MAIL")),
        "{commands:?}"
    );
    assert!(sink.log.lock().unwrap().auth.is_empty());
    relay.stop().await;
}

#[tokio::test]
async fn require_tls_refuses_a_server_without_starttls() {
    let world = World::new().await;
    let sink = Sink::start(Script::default()).await;
    let config = format!("[defaults]\nhost = \"127.0.0.1\"\nport = {}\n", sink.port());
    let relay = world.relay(world.config(&config), "relay-a").await;
    world.offer(&Message::new("m1.eml", A, &mail(1))).await;
    let got = world.relayed(1).await;
    assert_eq!(
        (got[0].outcome, got[0].reason.as_deref()),
        (ProbeOutcome::Failed, Some("starttls_unavailable"))
    );
    assert_eq!((got[0].tls, got[0].attempts), (Some(UpstreamTls::None), 1));
    assert!(sink.received().is_empty());
    relay.stop().await;
}

#[tokio::test]
async fn a_missing_from_is_added_and_nothing_else_changes() {
    let world = World::new().await;
    let sink = Sink::start(Script::default()).await;
    let relay = world
        .relay(
            world.config(&plain_config(sink.port(), "probe_limit = 5")),
            "relay-a",
        )
        .await;
    // Bare LF line ends, a line that starts with a dot, a lone dot, eight-bit bytes, and a
    // From: that is in the body, not the header block.
    let without = b"Subject: hi\nTo: probe@inbox.example\nX-Mailer: spam 1.0\n\n.hidden\n.\nFrom: body\n\xe9t\xe9\n";
    let with = b"Subject: hi\r\nFROM: Real <real@bad.example>\r\n\r\n..two dots\r\nend";
    world.offer(&Message::new("m1.eml", A, without)).await;
    world.offer(&Message::new("m2.eml", A, with)).await;
    world.relayed(2).await;
    let mut got: Vec<Vec<u8>> = sink.received().into_iter().map(|r| r.data).collect();
    got.sort();
    let mut added = b"From: spammer@bad.example\r\n".to_vec();
    added.extend_from_slice(
        b"Subject: hi\r\nTo: probe@inbox.example\r\nX-Mailer: spam 1.0\r\n\r\n.hidden\r\n.\r\nFrom: body\r\n\xe9t\xe9\r\n",
    );
    // A message whose last line had no line end gets one: SMTP cannot carry it otherwise.
    let mut ended = with.to_vec();
    ended.extend_from_slice(b"\r\n");
    let mut want = vec![added, ended];
    want.sort();
    assert_eq!(got, want);
    relay.stop().await;
}

/// SMTP.md §10 item 10, for probe-relay: the upstream password.
#[tokio::test]
async fn the_upstream_password_never_appears_in_logs_errors_rows_or_bus_messages() {
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let sink_logs = std::sync::Arc::clone(&logs);
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || LogWriter(std::sync::Arc::clone(&sink_logs)))
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    const PASSWORD: &str = "Pa55-never-log-me";
    let world = World::new().await;
    let sink = Sink::start(Script {
        starttls: true,
        auth: Some(("relayuser".into(), "a-different-password".into())),
        ..Script::default()
    })
    .await;
    std::fs::write(world.dir.path().join("upstream.pw"), PASSWORD).unwrap();
    let ca = decnet_test_support::tls_fixture_dir().join("ca.pem");
    let config = format!(
        "[defaults]\nhost = \"localhost\"\nport = {}\nca_file = \"{}\"\nusername = \"relayuser\"\n\
         password_file = \"upstream.pw\"\n",
        sink.port(),
        ca.display()
    );
    let relay_config = world.config(&config);
    assert!(!format!("{relay_config:?}").contains(PASSWORD));
    let relay = world.relay(relay_config, "relay-a").await;
    world.offer(&Message::new("m1.eml", A, &mail(1))).await;
    let got = world.relayed(1).await;
    assert_eq!(
        (got[0].outcome, got[0].reason.as_deref()),
        (ProbeOutcome::Failed, Some("auth_failed"))
    );
    assert_eq!(
        sink.log.lock().unwrap().auth[0].2,
        PASSWORD,
        "the password did reach upstream"
    );
    relay.stop().await;

    let mut everything = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    for (stream, subject) in [("EVENTS", ">"), ("DLQ", ">")] {
        for (headers, body) in world.messages(stream, subject).await {
            everything.push_str(&headers);
            everything.push_str(&String::from_utf8_lossy(&body));
        }
    }
    everything.push_str(&format!(
        "{:?}",
        world.db.probe_relays("decoy-01").await.unwrap()
    ));
    for p in world.db.pending("probe-relay", 100).await.unwrap() {
        everything.push_str(&String::from_utf8_lossy(&p.message.body));
    }
    assert!(
        everything.contains("probe-relay started"),
        "the logs were captured"
    );
    assert!(!everything.contains(PASSWORD), "the password leaked");
    let encoded = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("\0relayuser\0{PASSWORD}"),
    );
    assert!(!everything.contains(&encoded), "the AUTH line leaked");
}

struct LogWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn ineligible_messages_are_skipped_without_a_slot_and_poison_goes_to_the_dlq() {
    let world = World::new().await;
    let sink = Sink::start(Script::default()).await;
    let config = plain_config(sink.port(), "max_recipients = 2");
    let relay = world.relay(world.config(&config), "relay-a").await;
    let body = mail(1);

    let mut tampered = Message::new("tampered.eml", A, &body).pending();
    tampered["body_sha256"] = serde_json::json!("0".repeat(64));
    let store = decnet_bus::quarantine::ensure_bucket(&world.js)
        .await
        .unwrap();
    decnet_bus::quarantine::put(&store, "decoy-01/tampered.eml", &body)
        .await
        .unwrap();
    world.publish_pending(&tampered, "tampered").await;
    world
        .publish_pending(&Message::new("absent.eml", A, &body).pending(), "absent")
        .await;
    let crowd = ["a@x.example", "b@x.example", "c@x.example"];
    world
        .offer(&Message {
            rcpt: &crowd,
            ..Message::new("crowd.eml", A, &body)
        })
        .await;
    world
        .offer(&Message {
            rcpt: &[],
            ..Message::new("nobody.eml", A, &body)
        })
        .await;
    world
        .publish_raw(bytes::Bytes::from_static(b"{not json"), "poison")
        .await;
    world.offer(&Message::new("ok.eml", A, &body)).await;

    let got = world.relayed(5).await;
    let outcome = |name: &str| {
        let r = got.iter().find(|r| r.stored_as == name).unwrap();
        (r.outcome, r.reason.clone(), r.slot)
    };
    let skip = |reason: &str| (ProbeOutcome::Skipped, Some(reason.to_owned()), None);
    assert_eq!(outcome("tampered.eml"), skip("integrity_mismatch"));
    assert_eq!(outcome("absent.eml"), skip("message_unavailable"));
    assert_eq!(outcome("crowd.eml"), skip("too_many_recipients"));
    assert_eq!(outcome("nobody.eml"), skip("no_recipients"));
    assert_eq!(
        outcome("ok.eml"),
        (ProbeOutcome::Sent, None, Some(1)),
        "the skips took no slot"
    );

    let dead = world.messages("DLQ", "decnet.dlq.probe-relay").await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].1, b"{not json");
    assert!(dead[0].0.contains("decode_error"), "{}", dead[0].0);
    relay.stop().await;
}

#[tokio::test]
async fn a_decoy_without_an_upstream_is_skipped() {
    let world = World::new().await;
    let relay = world
        .relay(world.config("[defaults]\nprobe_limit = 3\n"), "relay-a")
        .await;
    world.offer(&Message::new("m1.eml", A, &mail(1))).await;
    let got = timeless(world.relayed(1).await);
    let want = ProbeRelayed {
        upstream_host: None,
        upstream_port: None,
        tls: None,
        ..skipped("m1.eml", A, "no_upstream", 3, 1)
    };
    assert_eq!(got, vec![want]);
    let metrics = relay.ops.metrics();
    assert!(
        metrics.contains(
            "decnet_probe_relay_outcomes_total{outcome=\"skipped\",reason=\"no_upstream\"} 1"
        ),
        "{metrics}"
    );
    relay.stop().await;
}
