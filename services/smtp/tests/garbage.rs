//! Garbage on the SMTP port (issue 7): binary noise, lines that never end, a client that
//! pipelines a million commands without reading, a 50 MB message. The decoy answers each as
//! Postfix would, keeps its memory bounded, and still serves the next client normally.

mod common;

use std::io::Write;

use std::time::Duration;

use common::{Client, Decoy, config, no_nats};
use decnet_smtp::Mode;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Peak resident memory of this process (the decoy and its clients), in MiB.
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024
}

/// A small seeded generator: the same noise on every run.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

async fn still_serves(decoy: &Decoy) {
    let mut c = decoy.client().await;
    assert_eq!(
        c.line().await,
        "220 mail.example.net ESMTP Postfix (Debian/GNU)"
    );
    assert_eq!(c.say("HELO ok").await, "250 mail.example.net");
    assert_eq!(c.say("QUIT").await, "221 2.0.0 Bye");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_noise_and_endless_lines_are_refused_and_forgotten() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(Mode::Relay, &no_nats(), tmp.path());
    cfg.limits.connections_per_client = 64;
    let decoy = Decoy::start(cfg).await;
    let mut noise = Noise(0x5eed_1234_abcd_0001);
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..200u64 {
        let size = 1 + (noise.next() % (256 * 1024)) as usize;
        let mut bytes = noise.bytes(size);
        if i % 4 == 0 {
            // A line that never ends.
            bytes.retain(|&b| b != b'\n');
        }
        let addr = decoy.addr;
        clients.spawn(async move {
            let Ok(mut s) = TcpStream::connect(addr).await else {
                return (0, false);
            };
            let (r, mut w) = s.split();
            let write = async {
                let _ = w.write_all(&bytes).await;
                let _ = w.shutdown().await;
            };
            let read = async {
                let mut lines = BufReader::new(r).lines();
                let mut n = 0;
                let mut closed_with_421 = false;
                while let Ok(Ok(Some(line))) =
                    tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await
                {
                    assert!(
                        line.len() >= 4 && line.as_bytes()[..3].iter().all(u8::is_ascii_digit),
                        "a reply line: {line:?}"
                    );
                    closed_with_421 |= line.starts_with("421 ");
                    n += 1;
                }
                (n, closed_with_421)
            };
            let ((), got) = tokio::join!(write, read);
            got
        });
    }
    let mut too_many = 0;
    while let Some(r) = clients.join_next().await {
        let (replies, closed) = r.unwrap();
        assert!(replies >= 1, "at least the greeting");
        too_many += usize::from(closed);
    }
    // Noise with line ends makes errors; twenty of them end a connection.
    assert!(too_many > 50, "{too_many} connections ended with 421");
    still_serves(&decoy).await;
    // Nothing was stored from noise.
    assert!(decoy.stored().is_empty());
    let peak = peak_rss_mib();
    let _ = writeln!(
        std::io::stderr().lock(),
        "peak RSS after 200 noisy clients: {peak} MiB"
    );
    assert!(peak < 256, "peak RSS {peak} MiB");
    decoy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_pipelined_commands_are_answered_in_order_without_buffering_them() {
    let tmp = tempfile::tempdir().unwrap();
    let decoy = Decoy::start(config(Mode::Relay, &no_nats(), tmp.path())).await;
    let (r, mut w) = TcpStream::connect(decoy.addr).await.unwrap().into_split();
    const N: usize = 1_000_000;
    let writer = tokio::spawn(async move {
        let chunk = b"NOOP\r\n".repeat(10_000);
        for _ in 0..N / 10_000 {
            w.write_all(&chunk).await.unwrap();
        }
        w.write_all(b"QUIT\r\n").await.unwrap();
        w
    });
    let mut lines = BufReader::new(r).lines();
    assert_eq!(
        lines.next_line().await.unwrap().unwrap(),
        "220 mail.example.net ESMTP Postfix (Debian/GNU)"
    );
    let mut oks = 0;
    let last = loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("replies keep coming")
            .unwrap()
            .unwrap();
        if line == "250 2.0.0 Ok" {
            oks += 1;
        } else {
            break line;
        }
    };
    assert_eq!(oks, N);
    assert_eq!(last, "221 2.0.0 Bye");
    drop(writer.await.unwrap());
    let peak = peak_rss_mib();
    let _ = writeln!(
        std::io::stderr().lock(),
        "peak RSS after a million pipelined commands: {peak} MiB"
    );
    assert!(peak < 256, "peak RSS {peak} MiB");
    still_serves(&decoy).await;
    decoy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_megabytes_of_data_keep_ten_mebibytes_and_say_so() {
    let tmp = tempfile::tempdir().unwrap();
    let decoy = Decoy::start(config(Mode::Relay, &no_nats(), tmp.path())).await;
    let mut c = Client::connect(decoy.addr).await;
    c.line().await;
    c.say("HELO big").await;
    c.say("MAIL FROM:<big@sender.example.com>").await;
    c.say("RCPT TO:<v@target.example.com>").await;
    assert_eq!(c.say("DATA").await, "354 End data with <CR><LF>.<CR><LF>");
    let line = format!("{}\r\n", "z".repeat(998));
    let chunk = line.repeat(1000);
    for _ in 0..50 {
        c.raw(chunk.as_bytes()).await;
    }
    c.send(".").await;
    assert!(c.line().await.starts_with("250 2.0.0 Ok: queued as "));
    let stored = decoy.stored();
    let kept = std::fs::metadata(decoy.quarantine().join(&stored[0]))
        .unwrap()
        .len();
    assert_eq!(kept, 10_485_760);
    let peak = peak_rss_mib();
    let _ = writeln!(
        std::io::stderr().lock(),
        "peak RSS after a 50 MB message: {peak} MiB"
    );
    assert!(peak < 256, "peak RSS {peak} MiB");
    still_serves(&decoy).await;
    decoy.stop().await;
}
