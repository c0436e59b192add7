//! `decnet up` on a fresh data directory, as a newcomer runs it: it starts its own
//! nats-server, every service becomes ready on one ops listener, the beacon answers, and
//! SIGTERM stops it all cleanly.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use decnet_test_support::{free_port, nats_server_binary};
use tempfile::TempDir;

fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    out.push_str(&String::from_utf8_lossy(&raw));
    Some(out)
}

#[test]
fn up_starts_every_service_on_a_fresh_data_directory_and_stops_on_sigterm() {
    let tmp = TempDir::new().unwrap();
    let (ops, beacon, nats, smtp, api) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let mut up = Command::new(env!("CARGO_BIN_EXE_decnet"))
        .arg("up")
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .args(["--nats-url", &format!("nats://127.0.0.1:{nats}")])
        .arg("--nats-server")
        .arg(nats_server_binary().unwrap())
        .args(["--ops-listen", &format!("127.0.0.1:{ops}")])
        .args(["--http-listen", &format!("127.0.0.1:{beacon}")])
        .args(["--smtp-listen", &format!("127.0.0.1:{smtp}")])
        .args(["--api-listen", &format!("127.0.0.1:{api}")])
        .env_remove("DECNET_JWT_SECRET")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("DECNET_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read stderr as it comes: a pipe nobody reads fills at 64 KiB and blocks the writer.
    let mut pipe = up.stderr.take().unwrap();
    let drained = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = pipe.read_to_string(&mut err);
        err
    });
    let started = Instant::now();
    let mut ready = String::new();
    while started.elapsed() < Duration::from_secs(60) {
        if let Some(answer) = get(ops, "/readyz")
            && answer.starts_with("HTTP/1.1 200")
        {
            ready = answer;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if ready.is_empty() {
        // Say why: whatever `up` wrote, and whether it is still running.
        let exited = up.try_wait().unwrap();
        let _ = up.kill();
        let _ = up.wait();
        let err = drained.join().unwrap();
        panic!("not ready within 60 s (exited: {exited:?}); its stderr:\n{err}");
    }
    for line in [
        "rulestore: ready",
        "tagger: ready",
        "canary: ready",
        "smtp: ready",
        "intel: ready",
        "api: ready",
    ] {
        assert!(ready.contains(line), "{line} in {ready:?}");
    }
    let gif = get(beacon, "/c/aaaaaaaaaaaaaaaaaaaaaaaaaa").unwrap();
    assert!(
        gif.starts_with("HTTP/1.1 200 OK\r\nServer: nginx\r\n"),
        "{gif}"
    );

    let mut decoy = TcpStream::connect(("127.0.0.1", smtp)).unwrap();
    decoy
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // The API answers on its own listener, with the development key `up` made.
    let health = get(api, "/healthz").unwrap();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let key = tmp.path().join("data/api/dev-jwt.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let expected = b"220 decoy-01 ESMTP Postfix (Debian/GNU)\r\n";
    let mut greeting = vec![0u8; expected.len()];
    decoy.read_exact(&mut greeting).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&greeting),
        String::from_utf8_lossy(expected)
    );

    let term = Command::new("kill")
        .args(["-TERM", &up.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let mut status = None;
    for _ in 0..300 {
        if let Some(s) = up.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = status.expect("decnet up stops within 30 s of SIGTERM");
    let err = drained.join().unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(
        err.contains("started "),
        "it said it started its own nats-server: {err}"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", nats)).is_err(),
        "its nats-server child is gone"
    );
}
