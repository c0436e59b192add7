//! The SMTP decoy and probe-relay as an operator runs them, two processes sharing nothing but
//! NATS: a spammer's first probe through the open relay arrives at the upstream (a sink in
//! this test), the second does not, and the decoy never learns where mail went.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use decnet_test_support::{NatsServer, free_port};
use serde_json::Value;
use tempfile::TempDir;

/// One message the sink accepted: envelope and data.
#[derive(Debug, Clone)]
struct Received {
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
}

/// A minimal upstream that accepts everything, one connection at a time.
fn sink() -> (u16, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind(("127.0.0.1", free_port())).unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&got);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let keep = Arc::clone(&keep);
            std::thread::spawn(move || converse(stream, &keep));
        }
    });
    (port, got)
}

fn converse(stream: TcpStream, keep: &Mutex<Vec<Received>>) {
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut say = |line: &str| {
        let _ = w.write_all(format!("{line}\r\n").as_bytes());
    };
    say("220 sink.example ESMTP");
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    while r.read_line(&mut line).unwrap_or(0) > 0 {
        let cmd = line.trim_end().to_owned();
        line.clear();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            say("250-sink.example");
            say("250 8BITMIME");
        } else if upper.starts_with("MAIL FROM:") {
            from = cmd[10..].trim_matches(['<', '>', ' ']).to_owned();
            say("250 2.1.0 Ok");
        } else if upper.starts_with("RCPT TO:") {
            to.push(cmd[8..].trim_matches(['<', '>', ' ']).to_owned());
            say("250 2.1.5 Ok");
        } else if upper == "DATA" {
            say("354 go ahead");
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                if r.read_until(b'\n', &mut l).unwrap_or(0) == 0 {
                    return;
                }
                if l == b".\r\n" {
                    break;
                }
                // Undo the client's dot-stuffing.
                data.extend_from_slice(
                    l.strip_prefix(b".")
                        .filter(|_| l.starts_with(b".."))
                        .unwrap_or(&l),
                );
            }
            keep.lock().unwrap().push(Received {
                from: std::mem::take(&mut from),
                to: std::mem::take(&mut to),
                data,
            });
            say("250 2.0.0 queued");
        } else if upper == "QUIT" {
            say("221 bye");
            return;
        } else {
            say("250 Ok");
        }
    }
}

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[String], env: &[(&str, &str)]) -> Service {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_decnet"));
    cmd.args(args)
        .env_remove("DECNET_DATABASE_URL")
        .env_remove("DECNET_PROBE_RELAY_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Service(cmd.spawn().unwrap())
}

fn ready(port: u16, what: &str) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = write!(
                s,
                "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            );
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            if answer.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} not ready within 60 s");
}

fn send(port: u16, from: &str, to: &str, message: &str) -> String {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut reply = || {
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        l.trim_end().to_owned()
    };
    assert!(reply().starts_with("220 "));
    for cmd in [
        "HELO spammer".to_owned(),
        format!("MAIL FROM:<{from}>"),
        format!("RCPT TO:<{to}>"),
        "DATA".to_owned(),
    ] {
        write!(w, "{cmd}\r\n").unwrap();
        let answer = reply();
        assert!(
            answer.starts_with('2') || answer.starts_with('3'),
            "{cmd}: {answer}"
        );
    }
    write!(w, "{message}.\r\n").unwrap();
    let queued = reply();
    assert!(queued.starts_with("250 2.0.0 Ok: queued as "), "{queued}");
    write!(w, "QUIT\r\n").unwrap();
    queued
}

#[test]
fn the_first_probe_arrives_upstream_and_the_second_does_not() {
    let nats = NatsServer::start().unwrap();
    let tmp = TempDir::new().unwrap();
    let (sink_port, received) = sink();
    let config = tmp.path().join("probe-relay.toml");
    std::fs::write(
        &config,
        format!(
            "[defaults]\nprobe_limit = 1\n\n[decky.decoy-01]\nhost = \"127.0.0.1\"\nport = {sink_port}\ntls = \"none\"\nretry_schedule = [\"200ms\"]\n"
        ),
    )
    .unwrap();
    let (smtp, smtp_ops, relay_ops) = (free_port(), free_port(), free_port());
    let s = |v: &str| v.to_owned();
    let _decoy = start(
        &[
            s("smtp"),
            s("--decky-id"),
            s("decoy-01"),
            s("--mode"),
            s("relay"),
            s("--listen"),
            format!("127.0.0.1:{smtp}"),
            s("--quarantine-dir"),
            tmp.path().join("quarantine").display().to_string(),
            s("--ops-listen"),
            format!("127.0.0.1:{smtp_ops}"),
            s("--nats-url"),
            nats.url(),
        ],
        &[("DECNET_SMTP_RCPT_GREYLIST_RATE", "0")],
    );
    let _relay = start(
        &[
            s("probe-relay"),
            s("--config"),
            config.display().to_string(),
            s("--database-url"),
            format!("sqlite://{}", tmp.path().join("decnet.db").display()),
            s("--ops-listen"),
            format!("127.0.0.1:{relay_ops}"),
            s("--nats-url"),
            nats.url(),
        ],
        &[],
    );
    ready(smtp_ops, "decnet smtp");
    ready(relay_ops, "decnet probe-relay");

    let probe = "From: spammer@bulk.example.com\r\nSubject: relay test 1\r\n\r\n..it works\r\n";
    send(
        smtp,
        "spammer@bulk.example.com",
        "inbox@spammer.example.org",
        probe,
    );
    let started = Instant::now();
    while received.lock().unwrap().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the probe never arrived"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    send(
        smtp,
        "spammer@bulk.example.com",
        "victims@campaign.example.org",
        "From: spammer@bulk.example.com\r\nSubject: the campaign\r\n\r\nbuy now\r\n",
    );
    // Both outcomes are published; only the first went upstream.
    let client = decnet_bus_messages(&nats);
    let started = Instant::now();
    let outcomes = loop {
        let o = client();
        if o.len() == 2 {
            break o;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "outcomes: {o:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].from, "spammer@bulk.example.com");
    assert_eq!(got[0].to, ["inbox@spammer.example.org"]);
    assert_eq!(
        String::from_utf8_lossy(&got[0].data),
        probe.replace("..it", ".it")
    );
    let summary: Vec<(String, Option<String>, Option<i64>)> = outcomes
        .iter()
        .map(|o| {
            (
                o["outcome"].as_str().unwrap().to_owned(),
                o["reason"].as_str().map(str::to_owned),
                o["slot"].as_i64(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("sent".to_owned(), None, Some(1)),
            ("skipped".to_owned(), Some("limit_reached".to_owned()), None),
        ]
    );
    assert_eq!(outcomes[0]["upstream_host"], "127.0.0.1");
    assert_eq!(outcomes[0]["attacker_ip"], "127.0.0.1");
}

/// A reader of `smtp.probe.relayed` bodies on EVENTS, in stream order.
fn decnet_bus_messages(nats: &NatsServer) -> impl Fn() -> Vec<Value> + '_ {
    move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
            let Ok(mut stream) = js.get_stream("EVENTS").await else {
                return Vec::new();
            };
            let state = stream.info().await.unwrap().state.clone();
            let mut out = Vec::new();
            if state.messages == 0 {
                return out;
            }
            for seq in state.first_sequence..=state.last_sequence {
                if let Ok(m) = stream.get_raw_message(seq).await
                    && m.subject.as_str() == "smtp.probe.relayed"
                {
                    out.push(serde_json::from_slice(&m.payload).unwrap());
                }
            }
            out
        })
    }
}
