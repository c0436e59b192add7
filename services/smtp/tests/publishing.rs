//! What the decoy publishes (SMTP.md §7, §8, §10 items 2, 4, 5): every event after its
//! message is in the `QUARANTINE` bucket, exactly once whatever the restarts, with the
//! derived features, the campaign window across a restart, and logins as sessions.

mod common;

use std::path::Path;

use async_nats::jetstream;
use common::{Client, Decoy, bus_messages, config, send_message, until};
use decnet_bus::quarantine;
use decnet_smtp::Mode;
use decnet_test_support::NatsServer;
use serde_json::{Value, json};

fn corpus(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../crates/mail/tests/corpus")
            .join(name),
    )
    .unwrap()
}

async fn js_of(nats: &NatsServer) -> jetstream::Context {
    jetstream::new(async_nats::connect(nats.url()).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_message_is_in_the_bucket_before_its_events_name_it() {
    let nats = NatsServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let decoy = Decoy::start(config(Mode::Relay, &nats.url(), tmp.path())).await;
    decoy.ready().await;
    let message = corpus("return_path_mismatch.eml");
    send_message(
        decoy.addr,
        "bounce-77@Bulk-Sender.example",
        &[
            "victim@corp.example.com",
            "second@Other.example.org",
            "third@corp.example.com",
        ],
        &message,
    )
    .await;
    let js = js_of(&nats).await;
    let received = until("email.received", 10, async || {
        let m = bus_messages(&js, "EVENTS", "email.received").await;
        (!m.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(received.len(), 1);
    let (id, e) = &received[0];
    let stored_as = e["stored_as"].as_str().unwrap().to_owned();
    assert_eq!(id, &format!("email.received:decoy-01:{stored_as}"));
    assert_eq!(decoy.stored(), std::slice::from_ref(&stored_as));
    let bucket = quarantine::open_bucket(&js).await.unwrap().unwrap();
    let object = quarantine::get(&bucket, &format!("decoy-01/{stored_as}"), 1 << 20)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(object, message);
    let sha = e["body_sha256"].as_str().unwrap();
    let expected = json!({
        "source_id": stored_as,
        "attacker_ip": "127.0.0.1",
        "decky_id": "decoy-01",
        "service": "smtp_relay",
        "subject": "Account notice",
        "from_domain": "paypal.example",
        "mail_from_domain": "bulk-sender.example",
        "return_path_domain": "bulk-sender.example",
        "rcpt_count": 3,
        "rcpt_domains": ["corp.example.com", "other.example.org"],
        "x_mailer": null,
        "dkim_signed": false,
        "spf_pass": false,
        "urls": ["https://paypal.example.account-check.example/login"],
        "attachment_count": 0,
        "attachment_sha256s": [],
        "attachment_extensions": [],
        "body_simhash": e["body_simhash"],
        "body_base64_bytes": 0,
        "attachment_macros": false,
        "attachment_password_protected": false,
        "html_smuggling": false,
        "stored_as": stored_as,
        "body_sha256": sha,
        "campaign_message_count": 1,
        "campaign_rcpt_count": 3,
        "campaign_window_h": 24,
        "received_at": e["received_at"],
        "size_bytes": message.len(),
        "truncated": false,
        "helo": "sender.example.org",
        "authenticated": false,
        "dkim_signature_present": false,
        "auth_results_present": true,
    });
    assert_eq!(e, &expected);
    assert_eq!(e["body_simhash"].as_str().unwrap().len(), 16);
    let digest: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&message)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert_eq!(sha, digest);

    let pending = bus_messages(&js, "PROBES", "smtp.probe.pending").await;
    assert_eq!(pending.len(), 1);
    assert_eq!(
        pending[0].0,
        format!("smtp.probe.pending:decoy-01:{stored_as}")
    );
    assert_eq!(
        pending[0].1,
        json!({
            "decky": "decoy-01",
            "decky_id": "decoy-01",
            "attacker_ip": "127.0.0.1",
            "stored_as": stored_as,
            "mail_from": "bounce-77@Bulk-Sender.example",
            "rcpt_to": "victim@corp.example.com,second@Other.example.org,third@corp.example.com",
            "rcpt_list": ["victim@corp.example.com", "second@Other.example.org", "third@corp.example.com"],
            "size_bytes": message.len(),
            "body_sha256": digest,
            "received_at": e["received_at"],
        })
    );
    // The job is gone once everything was acknowledged.
    until("the spool empties", 5, async || {
        (std::fs::read_dir(tmp.path().join(".jobs")).unwrap().count() == 0).then_some(())
    })
    .await;
    decoy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_accepted_while_nats_was_away_is_published_once_after_a_restart() {
    let mut nats = NatsServer::start().unwrap();
    nats.kill();
    let tmp = tempfile::tempdir().unwrap();
    let relay = Decoy::start(config(Mode::Relay, &nats.url(), tmp.path())).await;
    send_message(
        relay.addr,
        "a@sender.example.com",
        &["v@target.example.com"],
        b"Subject: s\r\n\r\nbody\r\n",
    )
    .await;
    until("readiness says why", 10, async || {
        let (ready, text) = relay.ops.readiness();
        (!ready && text.contains("1 jobs waiting")).then_some(())
    })
    .await;
    // The decoy goes down with the job unpublished.
    relay.stop().await;
    nats.restart().unwrap();
    let relay = Decoy::start(config(Mode::Relay, &nats.url(), tmp.path())).await;
    relay.ready().await;
    let js = js_of(&nats).await;
    let received = bus_messages(&js, "EVENTS", "email.received").await;
    assert_eq!(received.len(), 1, "{received:?}");
    let stored_as = received[0].1["stored_as"].as_str().unwrap().to_owned();
    let bucket = quarantine::open_bucket(&js).await.unwrap().unwrap();
    assert!(
        quarantine::get(&bucket, &format!("decoy-01/{stored_as}"), 1 << 20)
            .await
            .unwrap()
            .is_some()
    );
    relay.stop().await;
    // Another start publishes nothing more.
    let relay = Decoy::start(config(Mode::Relay, &nats.url(), tmp.path())).await;
    relay.ready().await;
    assert_eq!(bus_messages(&js, "EVENTS", "email.received").await.len(), 1);
    assert_eq!(
        bus_messages(&js, "PROBES", "smtp.probe.pending")
            .await
            .len(),
        1
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_near_identical_messages_are_one_campaign_across_a_restart() {
    let nats = NatsServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let js = js_of(&nats).await;
    let body = |n: usize| {
        format!(
            "Subject: Your parcel {n}\r\nFrom: track@parcel.example.com\r\n\r\n\
             Dear customer, your parcel number {n}{n}{n} is waiting at the depot. \
             Pay the customs fee of 2 euro at https://parcel-fee.example.com/{n} within 24 hours \
             or it goes back to the sender.\r\n"
        )
        .into_bytes()
    };
    let mut decoy = Decoy::start(config(Mode::Relay, &nats.url(), tmp.path())).await;
    for n in 0..5 {
        if n == 3 {
            decoy.stop().await;
            decoy = Decoy::start(config(Mode::Relay, &nats.url(), tmp.path())).await;
        }
        let rcpts: Vec<String> = (0..6)
            .map(|i| format!("user{}@corp.example.com", n * 6 + i))
            .collect();
        let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
        send_message(decoy.addr, "x@parcel.example.com", &rcpts, &body(n)).await;
    }
    let received = until("five messages", 10, async || {
        let m = bus_messages(&js, "EVENTS", "email.received").await;
        (m.len() == 5).then_some(m)
    })
    .await;
    let counts: Vec<(i64, i64)> = received
        .iter()
        .map(|(_, e)| {
            (
                e["campaign_message_count"].as_i64().unwrap(),
                e["campaign_rcpt_count"].as_i64().unwrap(),
            )
        })
        .collect();
    // Digits become 0 and URLs <url>: the five bodies are one text to the simhash.
    assert_eq!(counts, [(1, 6), (2, 12), (3, 18), (4, 24), (5, 30)]);
    let hashes: std::collections::BTreeSet<&str> = received
        .iter()
        .map(|(_, e)| e["body_simhash"].as_str().unwrap())
        .collect();
    assert_eq!(hashes.len(), 1, "{hashes:?}");
    decoy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_login_attempt_of_a_connection_is_published_as_one_session() {
    let nats = NatsServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let decoy = Decoy::start(config(Mode::Harvester, &nats.url(), tmp.path())).await;
    decoy.ready().await;
    let mut c = Client::connect(decoy.addr).await;
    c.line().await;
    c.say("HELO scanner").await;
    c.say("AUTH PLAIN AGFkbWluAGh1bnRlcjI=").await;
    c.say("AUTH LOGIN cm9vdA==").await;
    c.say("dG9vcg==").await;
    c.say("QUIT").await;
    // A connection without AUTH publishes no session.
    let mut quiet = Client::connect(decoy.addr).await;
    quiet.line().await;
    quiet.say("QUIT").await;
    let js = js_of(&nats).await;
    let sessions = until("a session", 10, async || {
        let m = bus_messages(&js, "EVENTS", "attacker.session.ended").await;
        (!m.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(sessions.len(), 1);
    let (id, s) = &sessions[0];
    let session_id = s["session_id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(session_id).is_ok());
    assert_eq!(id, &format!("attacker.session.ended:decoy-01:{session_id}"));
    assert_eq!(s["service"], "smtp");
    assert_eq!(s["attacker_ip"], "127.0.0.1");
    assert!(s.get("commands").is_none());
    let attempts: Vec<Value> = s["auth_attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            json!([
                a["username"],
                a["password"],
                a["result"],
                a["method"],
                a["service"]
            ])
        })
        .collect();
    assert_eq!(
        attempts,
        [
            json!(["admin", "hunter2", "failure", "plain", "smtp"]),
            json!(["root", "toor", "failure", "login", "smtp"]),
        ]
    );
    decoy.stop().await;
}
