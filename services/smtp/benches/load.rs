//! Loopback load on the SMTP decoy: connections per second and peak memory, beside a bare
//! tokio server that speaks just enough SMTP for the same client script, in the same run.
//!
//! `cargo bench -p decnet-smtp --bench load` (release). Phases, each with 32 concurrent
//! clients from 127.0.0.1 (the per-address limit is raised for the run):
//! 1. baseline: greeting, EHLO, QUIT against the bare server;
//! 2. decoy, the same session;
//! 3. decoy, a whole transaction with a 2 KiB message per connection: every message is
//!    fsync'd twice (the `.eml` and its job) before the 250, so this phase measures the disk.
//!
//! NATS is left out: jobs wait in the spool, which is what the SMTP side does anyway. Peak
//! RSS is the whole bench process (clients and servers), read after each phase.

#![allow(
    clippy::disallowed_macros,
    reason = "the report on stdout is this program's product"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use decnet_ops::Ops;
use decnet_smtp::{Mode, SmtpConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const CLIENTS: usize = 32;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn bare_server(listener: TcpListener) {
    loop {
        let Ok((s, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let (r, mut w) = s.into_split();
            let mut lines = BufReader::new(r).lines();
            let _ = w.write_all(b"220 bare ESMTP\r\n").await;
            while let Ok(Some(line)) = lines.next_line().await {
                let reply: &[u8] = if line.starts_with("EHLO") {
                    b"250-bare\r\n250 PIPELINING\r\n"
                } else if line == "QUIT" {
                    let _ = w.write_all(b"221 Bye\r\n").await;
                    return;
                } else {
                    b"250 Ok\r\n"
                };
                let _ = w.write_all(reply).await;
            }
        });
    }
}

/// Read one reply (all lines); false when the server closed.
async fn reply(lines: &mut tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>) -> bool {
    while let Ok(Some(line)) = lines.next_line().await {
        if line.as_bytes().get(3) != Some(&b'-') {
            return true;
        }
    }
    false
}

async fn session(addr: SocketAddr, message: Option<&[u8]>) {
    let (r, mut w) = TcpStream::connect(addr).await.unwrap().into_split();
    let mut lines = BufReader::new(r).lines();
    assert!(reply(&mut lines).await);
    w.write_all(b"EHLO bench.example\r\n").await.unwrap();
    assert!(reply(&mut lines).await);
    if let Some(message) = message {
        for cmd in [
            &b"MAIL FROM:<bench@sender.example.com>\r\n"[..],
            b"RCPT TO:<sink@target.example.com>\r\n",
            b"DATA\r\n",
        ] {
            w.write_all(cmd).await.unwrap();
            assert!(reply(&mut lines).await);
        }
        w.write_all(message).await.unwrap();
        w.write_all(b".\r\n").await.unwrap();
        assert!(reply(&mut lines).await);
    }
    w.write_all(b"QUIT\r\n").await.unwrap();
    assert!(reply(&mut lines).await);
}

struct Run {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

async fn load(addr: SocketAddr, sessions: usize, message: Option<Arc<Vec<u8>>>) -> Run {
    let started = Instant::now();
    let per_client = sessions / CLIENTS;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let message = message.clone();
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let t = Instant::now();
                session(addr, message.as_deref().map(Vec::as_slice)).await;
                times.push(t.elapsed());
            }
            times
        }));
    }
    let mut times = Vec::new();
    for t in tasks {
        times.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    times.sort();
    Run {
        per_second: times.len() as f64 / elapsed.as_secs_f64(),
        p50: times[times.len() / 2],
        p99: times[times.len() * 99 / 100],
    }
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn print(name: &str, run: &Run, baseline: f64) {
    println!(
        "{name:<42} {:>9.0} conn/s  ratio {:>5.2}  p50 {:>7.3} ms  p99 {:>7.3} ms  peak RSS {:>6.1} MiB",
        run.per_second,
        run.per_second / baseline,
        run.p50.as_secs_f64() * 1e3,
        run.p99.as_secs_f64() * 1e3,
        peak_rss_mib()
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let bare = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bare_addr = bare.local_addr().unwrap();
        tokio::spawn(bare_server(bare));

        let tmp = tempfile::tempdir().unwrap();
        let mut config = SmtpConfig::new("bench-01", &format!("nats://{}", free_addr()));
        config.mode = Mode::Relay;
        config.listen = vec![free_addr()];
        config.quarantine_dir = tmp.path().to_path_buf();
        config.rcpt_greylist_rate = 0.0;
        config.end_of_data_pause = (Duration::ZERO, Duration::ZERO);
        config.limits.connections_per_client = 512;
        let addr = config.listen[0];
        let ops = Ops::new();
        let (_stop, shutdown) = watch::channel(false);
        {
            let (config, ops) = (config.clone(), Arc::clone(&ops));
            tokio::spawn(async move { decnet_smtp::run_with(&config, &ops, shutdown).await });
        }
        while TcpStream::connect(addr).await.is_err() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        println!("rss at start: {:.1} MiB", peak_rss_mib());
        // Warm up both.
        load(bare_addr, 640, None).await;
        load(addr, 640, None).await;
        let base = load(bare_addr, 32_000, None).await;
        print("baseline: bare server, EHLO + QUIT", &base, base.per_second);
        let decoy = load(addr, 32_000, None).await;
        print("decoy: EHLO + QUIT", &decoy, base.per_second);
        let mut message = b"From: bench@sender.example.com\r\nSubject: bench\r\n\r\n".to_vec();
        while message.len() < 2048 {
            message.extend_from_slice(b"The quick brown fox jumps over the lazy dog again.\r\n");
        }
        let stored = load(addr, 3_200, Some(Arc::new(message))).await;
        print(
            "decoy: whole transaction, 2 KiB message",
            &stored,
            base.per_second,
        );
    });
}
