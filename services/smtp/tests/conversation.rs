//! The conversation of SMTP.md §2–§5 as a client sees it, word for word (§10 items 1–3).
//! NATS is absent here on purpose: the decoy talks SMTP and stores mail without it.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Decoy, config, is_queue_id, no_nats, queue_id_of};
use decnet_smtp::{Mode, TlsFiles};
use decnet_test_support::tls_fixture_dir;

const EHLO: [&str; 10] = [
    "250-mail.example.net",
    "250-PIPELINING",
    "250-SIZE 10485760",
    "250-VRFY",
    "250-ETRN",
    "250-AUTH PLAIN LOGIN",
    "250-ENHANCEDSTATUSCODES",
    "250-8BITMIME",
    "250 DSN",
    "",
];

#[tokio::test]
async fn greeting_ehlo_and_helo_are_postfix_s_and_starttls_needs_a_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let decoy = Decoy::start(config(Mode::Harvester, &no_nats(), tmp.path())).await;
    let mut c = decoy.client().await;
    assert_eq!(
        c.line().await,
        "220 mail.example.net ESMTP Postfix (Debian/GNU)"
    );
    c.send("EHLO client.example").await;
    assert_eq!(c.reply().await, EHLO[..9]);
    assert_eq!(c.say("HELO client.example").await, "250 mail.example.net");
    assert_eq!(c.say("EHLO").await, "501 5.5.4 Syntax: EHLO hostname");
    assert_eq!(c.say("helo").await, "501 5.5.4 Syntax: HELO hostname");
    assert_eq!(
        c.say("STARTTLS").await,
        "454 4.7.0 TLS not available due to local problem"
    );
    assert_eq!(c.say("NOOP").await, "250 2.0.0 Ok");
    assert_eq!(c.say("VRFY root").await, "252 2.0.0 Cannot VRFY user");
    assert_eq!(
        c.say("ETRN x").await,
        "502 5.5.2 Error: command not recognized"
    );
    assert_eq!(c.say("quit").await, "221 2.0.0 Bye");
    assert!(c.closed().await);
    decoy.stop().await;

    // With a certificate STARTTLS is offered, and after the upgrade no longer.
    let mut cfg = config(Mode::Harvester, &no_nats(), tmp.path());
    cfg.tls = Some(TlsFiles {
        cert: tls_fixture_dir().join("localhost.pem"),
        key: tls_fixture_dir().join("localhost.key"),
    });
    let decoy = Decoy::start(cfg).await;
    let mut c = decoy.client().await;
    c.line().await;
    c.send("EHLO client.example").await;
    let offered = c.reply().await;
    assert_eq!(offered[5], "250-STARTTLS");
    assert_eq!(offered.len(), 10);
    decoy.stop().await;
}

#[tokio::test]
async fn harvester_refuses_relaying_and_logins_and_relay_filters_recipients() {
    let tmp = tempfile::tempdir().unwrap();
    let decoy = Decoy::start(config(Mode::Harvester, &no_nats(), tmp.path())).await;
    let mut c = decoy.client().await;
    c.line().await;
    assert_eq!(
        c.say("RCPT TO:<a@b.example.com>").await,
        "503 5.5.1 Error: need MAIL command"
    );
    assert_eq!(
        c.say("AUTH PLAIN AGFkbWluAGh1bnRlcjI=").await,
        "503 5.5.1 Error: send HELO/EHLO first"
    );
    c.send("EHLO x").await;
    c.reply().await;
    assert_eq!(
        c.say("AUTH PLAIN AGFkbWluAGh1bnRlcjI=").await,
        "535 5.7.8 Error: authentication failed: authentication failure"
    );
    assert_eq!(
        c.say("MAIL FROM:<spam@sender.example.com>").await,
        "250 2.1.0 Ok"
    );
    assert_eq!(
        c.say("RCPT TO:<victim@target.example.com>").await,
        "554 5.7.1 <victim@target.example.com>: Relay access denied"
    );
    assert_eq!(c.say("DATA").await, "503 5.5.1 Error: need RCPT command");
    decoy.stop().await;

    let mut cfg = config(Mode::Relay, &no_nats(), tmp.path());
    cfg.auth_allow = vec!["relayuser".into()];
    let decoy = Decoy::start(cfg).await;
    let mut c = decoy.client().await;
    c.line().await;
    c.send("EHLO x").await;
    c.reply().await;
    // LOGIN with the username inline; not on the allow list.
    c.send("AUTH LOGIN YWRtaW4=").await;
    assert_eq!(c.line().await, "334 UGFzc3dvcmQ6");
    assert_eq!(
        c.say("cGFzcw==").await,
        "535 5.7.8 Error: authentication failed: authentication failure"
    );
    // PLAIN after an empty challenge; on the list.
    assert_eq!(c.say("AUTH PLAIN").await, "334 ");
    assert_eq!(
        c.say("AHJlbGF5dXNlcgBzM2NyZXQ=").await,
        "235 2.7.0 Authentication successful"
    );
    assert_eq!(
        c.say("AUTH LOGIN").await,
        "503 5.5.1 Error: already authenticated"
    );
    assert_eq!(c.say("MAIL FROM:<>").await, "250 2.1.0 Ok");
    assert_eq!(
        c.say("MAIL FROM:<x@y.example.com>").await,
        "503 5.5.1 Error: nested MAIL command"
    );
    assert_eq!(
        c.say("AUTH PLAIN").await,
        "503 5.5.1 Error: MAIL transaction in progress"
    );
    assert_eq!(
        c.say("RCPT TO:<not-an-address>").await,
        "501 5.1.3 Bad recipient address syntax"
    );
    assert_eq!(
        c.say("RCPT TO:").await,
        "501 5.1.3 Bad recipient address syntax"
    );
    assert_eq!(
        c.say("RCPT <a@b.example.com>").await,
        "501 5.5.4 Syntax: RCPT TO:<address>"
    );
    for tld in ["invalid", "test", "localhost", "local", "example"] {
        assert_eq!(
            c.say(&format!("RCPT TO:<a@host.{tld}>")).await,
            format!("550 5.1.2 <a@host.{tld}>: Recipient address rejected: Domain not found")
        );
    }
    assert_eq!(
        c.say("rcpt to:<ok@target.example.com>").await,
        "250 2.1.5 Ok"
    );
    decoy.stop().await;

    // Every recipient drawn for greylisting is refused once, then let through.
    let mut cfg = config(Mode::Relay, &no_nats(), tmp.path());
    cfg.rcpt_greylist_rate = 1.0;
    let decoy = Decoy::start(cfg).await;
    let mut c = decoy.client().await;
    c.line().await;
    c.say("HELO x").await;
    c.say("MAIL FROM:<a@sender.example.com>").await;
    assert_eq!(
        c.say("RCPT TO:<v@target.example.com>").await,
        "451 4.7.1 <v@target.example.com>: Recipient address rejected: Greylisted, try again later"
    );
    assert_eq!(
        c.say("RCPT TO:<v@target.example.com>").await,
        "250 2.1.5 Ok"
    );
    decoy.stop().await;
}

#[tokio::test]
async fn auth_exchanges_abort_refuse_garbage_and_count() {
    let tmp = tempfile::tempdir().unwrap();
    let decoy = Decoy::start(config(Mode::Relay, &no_nats(), tmp.path())).await;
    let mut c = decoy.client().await;
    c.line().await;
    c.say("HELO x").await;
    assert_eq!(
        c.say("AUTH CRAM-MD5").await,
        "504 5.5.4 Unrecognized authentication type"
    );
    assert_eq!(c.say("AUTH").await, "501 5.5.4 Syntax: AUTH mechanism");
    assert_eq!(c.say("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
    assert_eq!(c.say("*").await, "501 5.7.0 Authentication aborted");
    assert_eq!(
        c.say("AUTH PLAIN !!!notbase64").await,
        "501 5.5.2 Cannot decode response"
    );
    assert_eq!(c.say("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
    assert_eq!(c.say("dXNlcg==").await, "334 UGFzc3dvcmQ6");
    assert_eq!(c.say("cHc=").await, "235 2.7.0 Authentication successful");
    // RSET clears the transaction, not the login.
    assert_eq!(c.say("MAIL FROM:<a@b.example.com>").await, "250 2.1.0 Ok");
    assert_eq!(c.say("RSET").await, "250 2.0.0 Ok");
    assert_eq!(c.say("MAIL FROM:<a@b.example.com>").await, "250 2.1.0 Ok");
    decoy.stop().await;

    // The hundred-and-first AUTH ends the connection.
    let mut cfg = config(Mode::Harvester, &no_nats(), tmp.path());
    cfg.limits.errors = 1000;
    let decoy = Decoy::start(cfg).await;
    let mut c = decoy.client().await;
    c.line().await;
    c.say("HELO x").await;
    for _ in 0..100 {
        assert!(c.say("AUTH PLAIN AHUAcA==").await.starts_with("535 "));
    }
    assert_eq!(
        c.say("AUTH PLAIN AHUAcA==").await,
        "421 4.7.0 mail.example.net Error: too many errors"
    );
    assert!(c.closed().await);
    decoy.stop().await;
}

#[tokio::test]
async fn data_is_unstuffed_stored_whole_and_answered_with_a_queue_id() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(Mode::Relay, &no_nats(), tmp.path());
    cfg.end_of_data_pause = (
        std::time::Duration::from_millis(30),
        std::time::Duration::from_millis(180),
    );
    let decoy = Decoy::start(cfg).await;
    let mut c = decoy.client().await;
    c.line().await;
    c.send("EHLO x").await;
    c.reply().await;
    c.say("MAIL FROM:<a@sender.example.com> SIZE=100").await;
    c.say("RCPT TO:<v@target.example.com>").await;
    assert_eq!(c.say("DATA").await, "354 End data with <CR><LF>.<CR><LF>");
    // A stuffed dot, a bare LF line, a line that is only two dots.
    c.raw(b"Subject: test\r\n\r\n..hidden\nbare lf\r\n..\r\n.\r\n")
        .await;
    let started = std::time::Instant::now();
    let queued = c.line().await;
    let paused = started.elapsed();
    let id = queue_id_of(&queued);
    assert!(is_queue_id(&id), "{id}");
    assert!(paused >= std::time::Duration::from_millis(30), "{paused:?}");
    // The transaction is over.
    assert_eq!(c.say("DATA").await, "503 5.5.1 Error: need RCPT command");
    let stored = decoy.stored();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let name = &stored[0];
    let body = b"Subject: test\r\n\r\n.hidden\r\nbare lf\r\n.\r\n";
    let digest = sha256_hex(body);
    let shape =
        regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ_[0-9a-f]{12}_[A-Z2-9]{12}\.eml$")
            .unwrap();
    assert!(shape.is_match(name), "{name}");
    assert!(
        name.contains(&format!("_{}_{id}.eml", &digest[..12])),
        "{name}"
    );
    let path = decoy.quarantine().join(name);
    assert_eq!(std::fs::read(&path).unwrap(), body);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o640
    );
    // Its job waits in the spool for NATS.
    assert!(
        tmp.path()
            .join(".jobs")
            .join(format!("{name}.json"))
            .exists(),
        "the job is spooled"
    );
    // SIZE above the cap is refused before any data.
    c.say("MAIL FROM:<a@sender.example.com> SIZE=10485761")
        .await;
    assert_eq!(
        c.say("MAIL FROM:<a@sender.example.com> SIZE=10485761")
            .await,
        "552 5.3.4 Message size exceeds fixed limit"
    );
    decoy.stop().await;
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn past_the_cap_the_message_is_cut_flagged_and_still_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(Mode::Relay, &no_nats(), tmp.path());
    cfg.max_body_bytes = 1000;
    let decoy = Decoy::start(cfg).await;
    let mut c = decoy.client().await;
    c.line().await;
    c.say("HELO x").await;
    c.say("MAIL FROM:<a@sender.example.com>").await;
    c.say("RCPT TO:<v@target.example.com>").await;
    c.say("DATA").await;
    let line = "x".repeat(98);
    for _ in 0..50 {
        c.send(&line).await;
    }
    // One line of 200 KiB: longer than any piece, not split.
    c.send(&"y".repeat(200 * 1024)).await;
    c.send(".").await;
    assert!(c.line().await.starts_with("250 2.0.0 Ok: queued as "));
    let stored = decoy.stored();
    let kept = std::fs::read(decoy.quarantine().join(&stored[0])).unwrap();
    assert_eq!(kept.len(), 1000);
    assert_eq!(&kept[..100], format!("{line}\r\n").as_bytes());
    let job: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tmp.path().join(".jobs").join(format!("{}.json", stored[0]))).unwrap(),
    )
    .unwrap();
    assert_eq!(job["truncated"], true);
    assert_eq!(job["size_bytes"], 1000);
    decoy.stop().await;
}

#[tokio::test]
async fn limits_answer_421_and_long_lines_500() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(Mode::Harvester, &no_nats(), tmp.path());
    cfg.limits.connections_per_client = 2;
    let decoy = Decoy::start(cfg).await;
    let mut c = decoy.client().await;
    c.line().await;
    c.send(&"A".repeat(5000)).await;
    assert_eq!(c.line().await, "500 5.5.2 Error: line too long");
    assert_eq!(c.say("NOOP").await, "250 2.0.0 Ok");
    // Twenty errors and the client is dropped.
    for _ in 0..18 {
        assert_eq!(
            c.say("BOGUS").await,
            "502 5.5.2 Error: command not recognized"
        );
    }
    assert_eq!(
        c.say("BOGUS").await,
        "502 5.5.2 Error: command not recognized"
    );
    assert_eq!(
        c.line().await,
        "421 4.7.0 mail.example.net Error: too many errors"
    );
    assert!(c.closed().await);

    let mut a = decoy.client().await;
    let mut b = decoy.client().await;
    a.line().await;
    b.line().await;
    let mut third = decoy.client().await;
    assert_eq!(
        third.line().await,
        "421 4.7.0 mail.example.net Error: too many connections from 127.0.0.1"
    );
    assert!(third.closed().await);
    drop(a);
    decoy.stop().await;

    let mut cfg = config(Mode::Harvester, &no_nats(), tmp.path());
    cfg.limits.idle = std::time::Duration::from_millis(300);
    let decoy = Decoy::start(cfg).await;
    let mut c = decoy.client().await;
    c.line().await;
    assert_eq!(
        c.line().await,
        "421 4.4.2 mail.example.net Error: timeout exceeded"
    );
    assert!(c.closed().await);
    decoy.stop().await;
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let decoy = Decoy::start(config(Mode::Relay, &no_nats(), tmp.path())).await;
    let mut c = decoy.client().await;
    c.line().await;
    c.raw(b"EHLO x\r\nMAIL FROM:<a@s.example.com>\r\nRCPT TO:<b@t.example.com>\r\nRCPT TO:<c@t.example.com>\r\nDATA\r\n")
        .await;
    assert_eq!(c.reply().await.len(), 9);
    assert_eq!(c.line().await, "250 2.1.0 Ok");
    assert_eq!(c.line().await, "250 2.1.5 Ok");
    assert_eq!(c.line().await, "250 2.1.5 Ok");
    assert_eq!(c.line().await, "354 End data with <CR><LF>.<CR><LF>");
    c.raw(b"Subject: p\r\n\r\nhi\r\n.\r\nRSET\r\nQUIT\r\n")
        .await;
    assert!(c.line().await.starts_with("250 2.0.0 Ok: queued as "));
    assert_eq!(c.line().await, "250 2.0.0 Ok");
    assert_eq!(c.line().await, "221 2.0.0 Bye");
    decoy.stop().await;
}
