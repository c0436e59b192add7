//! A real SMTP client against the decoy (issue 7): Debian's `swaks`, installed by `.ci/run`,
//! sends a message with AUTH over STARTTLS and in the clear; its transcript shows Postfix's
//! words, and the quarantine holds exactly what it sent.

mod common;

use std::io::Write;

use std::path::Path;
use std::process::Command;

use common::{Decoy, config, no_nats};
use decnet_smtp::{Mode, TlsFiles};
use decnet_test_support::tls_fixture_dir;

fn swaks() -> Option<&'static str> {
    Path::new("/usr/bin/swaks")
        .exists()
        .then_some("/usr/bin/swaks")
}

fn skip_unless_installed() -> Option<&'static str> {
    let found = swaks();
    if found.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "CI installs swaks (.ci/run); the client test cannot be skipped there"
        );
        let _ = writeln!(
            std::io::stderr().lock(),
            "swaks test skipped: /usr/bin/swaks not installed"
        );
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_relays_through_the_decoy_with_auth_over_starttls() {
    let Some(swaks) = skip_unless_installed() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(Mode::Relay, &no_nats(), tmp.path());
    cfg.tls = Some(TlsFiles {
        cert: tls_fixture_dir().join("localhost.pem"),
        key: tls_fixture_dir().join("localhost.key"),
    });
    let decoy = Decoy::start(cfg).await;
    let body = tmp.path().join("probe.eml");
    std::fs::write(
        &body,
        "From: spammer@bulk.example.com\r\nTo: me@inbox.example.org\r\nSubject: relay test\r\n\r\n.a line starting with a dot\r\nrelay works\r\n",
    )
    .unwrap();
    let server = decoy.addr.to_string();
    let data = body.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(swaks)
            .args(["--server", &server, "--ehlo", "probe.bulk.example.com"])
            .args([
                "--from",
                "spammer@bulk.example.com",
                "--to",
                "me@inbox.example.org",
            ])
            .args([
                "--tls",
                "--auth",
                "LOGIN",
                "--auth-user",
                "relay",
                "--auth-password",
                "s3cret",
            ])
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{transcript}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "<-  220 mail.example.net ESMTP Postfix (Debian/GNU)",
        "<-  250-STARTTLS",
        "<-  220 2.0.0 Ready to start TLS",
        "=== TLS started with cipher",
        // After the handshake the EHLO reply no longer offers STARTTLS.
        "<~  250-AUTH PLAIN LOGIN",
        "<~  235 2.7.0 Authentication successful",
        "<~  250 2.1.0 Ok",
        "<~  250 2.1.5 Ok",
        "<~  354 End data with <CR><LF>.<CR><LF>",
        "<~  250 2.0.0 Ok: queued as ",
        "<~  221 2.0.0 Bye",
    ] {
        assert!(transcript.contains(line), "{line:?} in\n{transcript}");
    }
    assert!(!transcript.contains("<~  250-STARTTLS"), "{transcript}");
    let stored = decoy.stored();
    assert_eq!(stored.len(), 1);
    let kept = std::fs::read(decoy.quarantine().join(&stored[0])).unwrap();
    // swaks stuffed the leading dot and the decoy took it off again; swaks always sends
    // CRLF before the final dot, so the message gains one empty line after the file's own.
    let mut sent = std::fs::read(&body).unwrap();
    sent.extend_from_slice(b"\r\n");
    assert_eq!(
        String::from_utf8_lossy(&kept),
        String::from_utf8_lossy(&sent)
    );
    decoy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_is_refused_by_the_harvester_as_by_a_closed_postfix() {
    let Some(swaks) = skip_unless_installed() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let decoy = Decoy::start(config(Mode::Harvester, &no_nats(), tmp.path())).await;
    let server = decoy.addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(swaks)
            .args(["--server", &server, "--to", "victim@corp.example.com"])
            .args([
                "--auth",
                "PLAIN",
                "--auth-user",
                "admin",
                "--auth-password",
                "admin",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        transcript.contains("<** 535 5.7.8 Error: authentication failed: authentication failure"),
        "{transcript}"
    );
    assert!(decoy.stored().is_empty());
    decoy.stop().await;
}
