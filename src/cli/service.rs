//! `decnet tagger` and `decnet up`: the services, run from the command line.
//!
//! Both stop cleanly on SIGTERM or Ctrl-C: fetching stops, the batch in hand is finished and
//! acked, the outbox is published, then the process exits.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use decnet_ops::Ops;
use decnet_tagger::TaggerConfig;
use tokio::sync::watch;

use super::{EXIT_UNUSABLE, tag::report};

/// Options every service shares (ARCHITECTURE.md, Configuration).
#[derive(Debug, clap::Args)]
pub(crate) struct Shared {
    /// NATS server.
    #[arg(long, env = "DECNET_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Database: `sqlite://PATH` (created if missing) or `postgres://…`.
    #[arg(long, env = "DECNET_DATABASE_URL")]
    database_url: Option<String>,
    /// Where embedded state lives (the SQLite file, a child NATS server's store).
    #[arg(long, env = "DECNET_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
}

impl Shared {
    fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("decnet.db").display()))
    }
}

/// `decnet tagger`.
#[derive(Debug, clap::Args)]
pub(crate) struct TaggerArgs {
    #[command(flatten)]
    shared: Shared,
    /// Rules directory, loaded and validated at start. Required until the rule-store master
    /// and its RULES stream land (issue 5); the tagger then follows the stream when unset.
    #[arg(long = "rules-dir", env = "DECNET_RULES_DIR")]
    rules_dir: Option<PathBuf>,
    /// Messages per fetch and per transaction.
    #[arg(long, env = "DECNET_TAGGER_BATCH", default_value_t = 256)]
    batch: usize,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    #[arg(
        long,
        env = "DECNET_TAGGER_OPS_LISTEN",
        default_value = "127.0.0.1:9101"
    )]
    ops_listen: SocketAddr,
}

/// `decnet up`.
#[derive(Debug, clap::Args)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    shared: Shared,
    /// Rules directory for the tagger.
    #[arg(
        long = "rules-dir",
        env = "DECNET_RULES_DIR",
        default_value = "./rules/ttp"
    )]
    rules_dir: PathBuf,
    /// The nats-server binary started when no server answers at the NATS URL.
    #[arg(long, env = "DECNET_NATS_SERVER", default_value = "nats-server")]
    nats_server: PathBuf,
    /// Where `/healthz`, `/readyz` and `/metrics` of every service started are served.
    #[arg(long, env = "DECNET_UP_OPS_LISTEN", default_value = "127.0.0.1:9100")]
    ops_listen: SocketAddr,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
}

/// A watch that turns true on SIGTERM or Ctrl-C.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM can be handled");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down: finishing the work in hand");
        let _ = tx.send(true);
    });
    rx
}

/// Run the tagger with its ops listener on `ops_listen`; `flag` names the option that set
/// the address, for the error when it cannot be bound.
fn run_tagger(config: &TaggerConfig, ops_listen: SocketAddr, flag: &str) -> ExitCode {
    runtime().block_on(async {
        let listener = match decnet_ops::bind(ops_listen).await {
            Ok(l) => l,
            Err(e) => {
                report(&format!(
                    "decnet: cannot serve /healthz, /readyz and /metrics on {ops_listen} ({flag}): {e}"
                ));
                return ExitCode::from(EXIT_UNUSABLE);
            }
        };
        let shutdown = shutdown_signal();
        let ops = Ops::new();
        let listener = tokio::spawn(decnet_ops::serve(
            listener,
            Arc::clone(&ops),
            shutdown.clone(),
        ));
        let result = decnet_tagger::run_with(config, &ops, shutdown).await;
        listener.abort();
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                report(&format!("decnet tagger: {e}"));
                ExitCode::from(EXIT_UNUSABLE)
            }
        }
    })
}

pub(crate) fn tagger(args: &TaggerArgs) -> ExitCode {
    let Some(rules_dir) = &args.rules_dir else {
        report(
            "decnet tagger: --rules-dir (DECNET_RULES_DIR) is required: this build has no rule-store master to follow",
        );
        return ExitCode::from(EXIT_UNUSABLE);
    };
    let mut config = TaggerConfig::new(
        &args.shared.nats_url,
        &args.shared.database_url(),
        rules_dir.clone(),
    );
    config.batch = args.batch;
    run_tagger(
        &config,
        args.ops_listen,
        "--ops-listen, DECNET_TAGGER_OPS_LISTEN",
    )
}

/// Whether something accepts TCP connections at a `nats://host:port` URL.
fn reachable(url: &str) -> bool {
    let authority = url
        .trim_start_matches("nats://")
        .rsplit('@')
        .next()
        .unwrap_or_default();
    let authority = authority.split('/').next().unwrap_or_default();
    use std::net::ToSocketAddrs;
    authority
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
        })
}

/// A nats-server child with JetStream under the data directory, on the URL's port.
fn start_nats(binary: &Path, url: &str, data_dir: &Path) -> Result<Child, String> {
    let port = url
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse::<u16>().ok())
        .unwrap_or(4222);
    let store = data_dir.join("nats");
    std::fs::create_dir_all(&store).map_err(|e| format!("{}: {e}", store.display()))?;
    // The server's own log goes to a file beside its store, not over ours.
    let log = data_dir.join("nats-server.log");
    let child = Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(&store)
        .arg("-l")
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", binary.display()))?;
    Ok(child)
}

pub(crate) fn up(args: &UpArgs) -> ExitCode {
    if let Err(e) = std::fs::create_dir_all(&args.shared.data_dir) {
        report(&format!(
            "decnet up: {}: {e}",
            args.shared.data_dir.display()
        ));
        return ExitCode::from(EXIT_UNUSABLE);
    }
    let mut child = None;
    if !reachable(&args.shared.nats_url) {
        match start_nats(
            &args.nats_server,
            &args.shared.nats_url,
            &args.shared.data_dir,
        ) {
            Ok(c) => {
                report(&format!(
                    "decnet up: no NATS at {}; started {} with JetStream under {}",
                    args.shared.nats_url,
                    args.nats_server.display(),
                    args.shared.data_dir.join("nats").display()
                ));
                child = Some(c);
            }
            Err(e) => {
                report(&format!(
                    "decnet up: no NATS at {} and {e}",
                    args.shared.nats_url
                ));
                return ExitCode::from(EXIT_UNUSABLE);
            }
        }
    }
    let config = TaggerConfig::new(
        &args.shared.nats_url,
        &args.shared.database_url(),
        args.rules_dir.clone(),
    );
    report(&format!(
        "decnet up: tagger on {} with rules from {}, tags in {}; health and metrics on http://{}",
        args.shared.nats_url,
        args.rules_dir.display(),
        config.database_url,
        args.ops_listen
    ));
    let code = run_tagger(
        &config,
        args.ops_listen,
        "--ops-listen, DECNET_UP_OPS_LISTEN",
    );
    if let Some(mut c) = child {
        let _ = c.kill();
        let _ = c.wait();
    }
    code
}
