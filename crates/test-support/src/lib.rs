//! A private `nats-server` for a test: JetStream on, a free loopback port, a temporary store
//! that lives as long as the handle. Tests that stop, restart or cut off NATS use this rather
//! than the machine's shared server, and leave nothing behind: dropping the handle kills the
//! process and removes the store.

mod postgres;
mod proxy;

pub use postgres::FreshPostgres;
pub use proxy::TcpProxy;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the server binary is looked for, in order; `DECNET_NATS_SERVER` overrides.
const CANDIDATES: [&str; 3] = [
    "/usr/sbin/nats-server",
    "/usr/bin/nats-server",
    "/usr/local/bin/nats-server",
];

/// The server configuration every test server starts with (see `spawn`).
const JETSTREAM_CONFIG: &str = "jetstream {\n  max_file_store: 1099511627776\n}\n";

/// A running `nats-server` owned by one test.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
    binary: PathBuf,
    /// Extra server configuration (`max_payload: 2097152`), written to a file in the store.
    config: Option<String>,
}

/// Why a server could not be started.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// The `nats-server` binary to run.
pub fn nats_server_binary() -> Result<PathBuf, StartError> {
    if let Some(path) = std::env::var_os("DECNET_NATS_SERVER") {
        return Ok(PathBuf::from(path));
    }
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            StartError(format!(
                "nats-server not found (looked in {}; set DECNET_NATS_SERVER)",
                CANDIDATES.join(", ")
            ))
        })
}

/// Copy a directory tree (a rule pack with its data tables) into `to`, creating it.
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Ports handed to tests are drawn from below Linux's ephemeral range (32768–60999 by
/// default). A port the kernel picked for `bind(":0")` comes from that range, and so does the
/// local port of every outgoing connection: under a busy parallel test run another process's
/// connection to NATS or PostgreSQL could take the port between this call and the server's
/// bind (seen once in CI as a `decnet up` that never became ready).
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A loopback port nothing listens on right now, outside the ephemeral range.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let span = u64::from(TEST_PORTS.end - TEST_PORTS.start);
    for _ in 0..1000 {
        // Each RandomState carries fresh keys: a random draw without a dependency.
        let draw = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let port = TEST_PORTS.start + (draw % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {TEST_PORTS:?} after 1000 draws")
}

impl NatsServer {
    /// Start a server with JetStream and wait until it accepts connections.
    pub fn start() -> Result<NatsServer, StartError> {
        NatsServer::start_with_config(None)
    }

    /// Start a server with extra configuration lines, e.g. `max_payload: 2097152` to test
    /// bodies over the 1 MiB default.
    pub fn start_with_config(config: Option<&str>) -> Result<NatsServer, StartError> {
        let store = tempfile::tempdir().map_err(|e| StartError(format!("temp store: {e}")))?;
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            store,
            binary: nats_server_binary()?,
            config: config.map(str::to_owned),
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), StartError> {
        let mut command = Command::new(&self.binary);
        // JetStream reserves every stream's byte limit against its file store, which
        // defaults to 75% of the disk's free space when the server starts: the streams'
        // 18 GiB of limits then fail with "insufficient storage resources" on a disk with
        // less than 24 GiB free, as a CI machine with two build trees can be. Tests store
        // kilobytes; the limit is set far above any disk so the reservation always fits.
        let mut config = JETSTREAM_CONFIG.to_owned();
        if let Some(extra) = &self.config {
            config.push_str(extra);
            config.push('\n');
        }
        let file = self.store.path().join("server.conf");
        std::fs::write(&file, config)
            .map_err(|e| StartError(format!("{}: {e}", file.display())))?;
        command.arg("-c").arg(file);
        let child = command
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| StartError(format!("{}: {e}", self.binary.display())))?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(10))
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), StartError> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(StartError(format!(
                    "nats-server exited at start ({status}) on port {}",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(StartError(format!(
            "nats-server did not listen on {} within {limit:?}",
            self.port
        )))
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory.
    pub fn store(&self) -> &Path {
        self.store.path()
    }

    /// Kill the server at once (SIGKILL): what a crash looks like to clients.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start the server again on the same port and store, after [`NatsServer::kill`].
    pub fn restart(&mut self) -> Result<(), StartError> {
        self.kill();
        self.spawn()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A certificate chain for TLS tests, valid until 2126: `localhost.pem` (names `localhost` and
/// `127.0.0.1`) with its key `localhost.key`, signed by `ca.pem` (whose key was thrown away).
pub fn tls_fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_starts_restarts_and_cleans_up() {
        let mut server = NatsServer::start().unwrap();
        let port = server.port();
        assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
        server.kill();
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
        server.restart().unwrap();
        assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
        let store = server.store().to_path_buf();
        drop(server);
        assert!(!store.exists(), "the store is removed with the handle");
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
