//! A decoy in the test's process on a free loopback port, and a scripted SMTP client that
//! reads replies line by line, so each test pins the exact words a client sees.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use decnet_ops::Ops;
use decnet_smtp::{Mode, SmtpConfig};
use decnet_test_support::free_port;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;

/// A running decoy.
pub struct Decoy {
    pub addr: SocketAddr,
    pub config: SmtpConfig,
    pub ops: Arc<Ops>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<Result<(), decnet_smtp::SmtpError>>>,
}

/// A test configuration: relay or harvester, NATS at `nats_url` (a closed port when the test
/// does not publish), the quarantine under `dir`, no pause before 250.
pub fn config(mode: Mode, nats_url: &str, dir: &Path) -> SmtpConfig {
    let mut c = SmtpConfig::new("decoy-01", nats_url);
    c.hostname = "mail.example.net".into();
    c.banner = decnet_smtp::default_banner("mail.example.net");
    c.mode = mode;
    c.listen = vec![SocketAddr::from(([127, 0, 0, 1], free_port()))];
    c.quarantine_dir = dir.to_path_buf();
    c.rcpt_greylist_rate = 0.0;
    c.end_of_data_pause = (Duration::ZERO, Duration::ZERO);
    c
}

/// A NATS URL nobody answers.
pub fn no_nats() -> String {
    format!("nats://127.0.0.1:{}", free_port())
}

impl Decoy {
    pub async fn start(config: SmtpConfig) -> Decoy {
        let ops = Ops::new();
        let (stop, shutdown) = watch::channel(false);
        let addr = config.listen[0];
        let task = {
            let (config, ops) = (config.clone(), Arc::clone(&ops));
            tokio::spawn(async move { decnet_smtp::run_with(&config, &ops, shutdown).await })
        };
        for _ in 0..200 {
            if TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Decoy {
            addr,
            config,
            ops,
            stop,
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }

    /// Wait until `/readyz` of the decoy says ready.
    pub async fn ready(&self) {
        for _ in 0..500 {
            if self.ops.readiness().0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("not ready: {}", self.ops.readiness().1);
    }

    pub fn quarantine(&self) -> PathBuf {
        self.config.quarantine_dir.join(&self.config.decky_id)
    }

    /// The stored messages' names, sorted.
    pub fn stored(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.quarantine())
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }
}

/// A scripted client.
pub struct Client {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let (r, w) = TcpStream::connect(addr).await.unwrap().into_split();
        Client {
            read: BufReader::new(r),
            write: w,
        }
    }

    /// Send raw bytes.
    pub async fn raw(&mut self, bytes: &[u8]) {
        self.write.write_all(bytes).await.unwrap();
    }

    /// Send one command line (CRLF added).
    pub async fn send(&mut self, line: &str) {
        self.raw(format!("{line}\r\n").as_bytes()).await;
    }

    /// One reply, all its lines, line ends removed; empty when the server closed.
    pub async fn reply(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.read.read_line(&mut line))
                .await
                .expect("a reply within 10 s")
                .unwrap_or(0);
            if n == 0 {
                return lines;
            }
            assert!(line.ends_with("\r\n"), "replies end in CRLF: {line:?}");
            let line = line.trim_end_matches("\r\n").to_owned();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines;
            }
        }
    }

    /// The one-line reply to a command.
    pub async fn say(&mut self, line: &str) -> String {
        self.send(line).await;
        self.line().await
    }

    /// The next one-line reply.
    pub async fn line(&mut self) -> String {
        let mut r = self.reply().await;
        assert!(r.len() <= 1, "one line expected: {r:?}");
        r.pop().unwrap_or_default()
    }

    /// Whether the server closed the connection (nothing more to read).
    pub async fn closed(&mut self) -> bool {
        let mut rest = String::new();
        matches!(
            tokio::time::timeout(Duration::from_secs(10), self.read.read_line(&mut rest)).await,
            Ok(Ok(0) | Err(_))
        )
    }
}

/// `queued as <id>` → the id.
pub fn queue_id_of(reply: &str) -> String {
    reply
        .strip_prefix("250 2.0.0 Ok: queued as ")
        .unwrap_or_else(|| panic!("not a queued reply: {reply}"))
        .to_owned()
}

/// Postfix's queue-id alphabet, 12 characters.
pub fn is_queue_id(id: &str) -> bool {
    id.len() == 12
        && id
            .bytes()
            .all(|b| b"BCDFGHJKLMNPQRSTVWXYZ23456789".contains(&b))
}

/// Every message stored on `subject` so far, as (msg id, body), in stream order. Read by
/// sequence, not through a consumer: a consumer on the `PROBES` work queue would take the
/// work it looks at.
pub async fn bus_messages(
    js: &async_nats::jetstream::Context,
    stream: &str,
    subject: &str,
) -> Vec<(String, serde_json::Value)> {
    let Ok(mut stream) = js.get_stream(stream).await else {
        return Vec::new();
    };
    let state = stream.info().await.unwrap().state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return out;
    }
    for seq in state.first_sequence..=state.last_sequence {
        let Ok(m) = stream.get_raw_message(seq).await else {
            continue;
        };
        if m.subject.as_str() != subject {
            continue;
        }
        let id = m
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        out.push((id, serde_json::from_slice(&m.payload).unwrap()));
    }
    out
}

/// Poll until `f` gives something, at most `secs` seconds.
pub async fn until<T>(what: &str, secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let started = std::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "{what}: not within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Send one message through a whole transaction; returns the queue id.
pub async fn send_message(addr: SocketAddr, from: &str, to: &[&str], message: &[u8]) -> String {
    let mut c = Client::connect(addr).await;
    c.line().await;
    c.send("EHLO sender.example.org").await;
    c.reply().await;
    assert_eq!(c.say(&format!("MAIL FROM:<{from}>")).await, "250 2.1.0 Ok");
    for rcpt in to {
        assert_eq!(c.say(&format!("RCPT TO:<{rcpt}>")).await, "250 2.1.5 Ok");
    }
    assert_eq!(c.say("DATA").await, "354 End data with <CR><LF>.<CR><LF>");
    let mut stuffed = Vec::new();
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            stuffed.push(b'.');
        }
        stuffed.extend_from_slice(line);
    }
    if !stuffed.ends_with(b"\n") {
        stuffed.extend_from_slice(b"\r\n");
    }
    stuffed.extend_from_slice(b".\r\n");
    c.raw(&stuffed).await;
    let id = queue_id_of(&c.line().await);
    assert_eq!(c.say("QUIT").await, "221 2.0.0 Bye");
    id
}
