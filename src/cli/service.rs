//! `decnet tagger`, `decnet rulestore` and `decnet up`: the services, run from the command
//! line.
//!
//! Each stops cleanly on SIGTERM or Ctrl-C: fetching stops, the work in hand is finished and
//! acked, the outbox is published, then the process exits.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use decnet_ops::Ops;
use decnet_rulestore::RulestoreConfig;
use decnet_tagger::TaggerConfig;
use tokio::sync::watch;

use super::{EXIT_UNUSABLE, tag::report};

/// Options every service shares (ARCHITECTURE.md, Configuration).
#[derive(Debug, clap::Args)]
pub(crate) struct Shared {
    /// NATS server.
    #[arg(long, env = "DECNET_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub(crate) nats_url: String,
    /// Database: `sqlite://PATH` (created if missing) or `postgres://…`.
    #[arg(long, env = "DECNET_DATABASE_URL")]
    database_url: Option<String>,
    /// Where embedded state lives (the SQLite file, a child NATS server's store).
    #[arg(long, env = "DECNET_DATA_DIR", default_value = "./data")]
    pub(crate) data_dir: PathBuf,
}

impl Shared {
    pub(crate) fn database_url(&self) -> String {
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
    /// Rules directory, loaded and validated at start (a single host without a rule store);
    /// unset, the tagger loads its rules from the RULES stream and follows it.
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

/// `decnet rulestore`.
#[derive(Debug, clap::Args)]
pub(crate) struct RulestoreArgs {
    #[command(flatten)]
    shared: Shared,
    /// The rules directory the store owns and watches.
    #[arg(
        long = "rules-dir",
        env = "DECNET_RULES_DIR",
        default_value = "./rules/ttp"
    )]
    rules_dir: PathBuf,
    /// How long a burst of file events must be quiet before the files are read, in ms.
    #[arg(long, env = "DECNET_RULESTORE_SETTLE_MS", default_value_t = 10)]
    settle_ms: u64,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    #[arg(
        long,
        env = "DECNET_RULESTORE_OPS_LISTEN",
        default_value = "127.0.0.1:9102"
    )]
    ops_listen: SocketAddr,
}

/// `decnet up`.
#[derive(Debug, clap::Args)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    shared: Shared,
    /// Rules directory the in-process rule store watches; the tagger follows the store.
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
    /// The canary beacon's options.
    #[command(flatten)]
    canary: super::canary::CanaryOptions,
    /// The SMTP decoy's listeners, comma-separated.
    #[arg(
        long,
        env = "DECNET_SMTP_LISTEN",
        value_delimiter = ',',
        default_value = "0.0.0.0:2525"
    )]
    smtp_listen: Vec<SocketAddr>,
    /// The SMTP decoy's name.
    #[arg(long, env = "DECNET_SMTP_DECKY_ID", default_value = "decoy-01")]
    smtp_decky_id: String,
    /// The SMTP decoy's mode: `harvester` or `relay`.
    #[arg(long, env = "DECNET_SMTP_MODE", default_value = "harvester")]
    smtp_mode: decnet_smtp::Mode,
    /// The REST API's listener and token issuer.
    #[command(flatten)]
    api: super::api::ApiOptions,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
}

/// A watch that turns true on SIGTERM or Ctrl-C, and its sender for stopping on failure.
fn shutdown_signal() -> (Arc<watch::Sender<bool>>, watch::Receiver<bool>) {
    let (tx, rx) = watch::channel(false);
    let tx = Arc::new(tx);
    let signal = Arc::clone(&tx);
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
        let _ = signal.send(true);
    });
    (tx, rx)
}

/// A service run in this process: its name for messages and its future.
pub(crate) type Service<'a> = (
    &'static str,
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + 'a>>,
);

/// Run services with one ops listener on `ops_listen` until SIGTERM or Ctrl-C, or until one of
/// them fails, which stops the others (a tagger following a rule store that could not start
/// would wait for rules forever); `flag` names the option that set the address.
pub(crate) fn run_services<'a>(
    ops_listen: SocketAddr,
    flag: &str,
    services: impl FnOnce(Arc<Ops>, watch::Receiver<bool>) -> Vec<Service<'a>>,
) -> ExitCode {
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
        let (stop, shutdown) = shutdown_signal();
        let ops = Ops::new();
        let listener = tokio::spawn(decnet_ops::serve(
            listener,
            Arc::clone(&ops),
            shutdown.clone(),
        ));
        let mut running: Vec<_> = services(Arc::clone(&ops), shutdown)
            .into_iter()
            .map(|(name, future)| Box::pin(async move { (name, future.await) }))
            .collect();
        let mut code = ExitCode::SUCCESS;
        while !running.is_empty() {
            let ((name, result), _, rest) = futures_util::future::select_all(running).await;
            running = rest;
            if let Err(e) = result {
                report(&format!("decnet {name}: {e}"));
                code = ExitCode::from(EXIT_UNUSABLE);
                let _ = stop.send(true);
            }
        }
        listener.abort();
        code
    })
}

pub(crate) fn tagger(args: &TaggerArgs) -> ExitCode {
    let mut config = TaggerConfig::new(
        &args.shared.nats_url,
        &args.shared.database_url(),
        args.rules_dir.clone(),
    );
    config.batch = args.batch;
    run_services(
        args.ops_listen,
        "--ops-listen, DECNET_TAGGER_OPS_LISTEN",
        |ops, shutdown| vec![tagger_service(config, ops, shutdown)],
    )
}

fn tagger_service<'a>(
    config: TaggerConfig,
    ops: Arc<Ops>,
    shutdown: watch::Receiver<bool>,
) -> Service<'a> {
    (
        "tagger",
        Box::pin(async move {
            decnet_tagger::run_with(&config, &ops, shutdown)
                .await
                .map_err(|e| e.to_string())
        }),
    )
}

pub(crate) fn canary_service<'a>(
    config: decnet_canary::CanaryConfig,
    ops: Arc<Ops>,
    shutdown: watch::Receiver<bool>,
) -> Service<'a> {
    (
        "canary",
        Box::pin(async move {
            decnet_canary::run_with(&config, &ops, shutdown)
                .await
                .map_err(|e| e.to_string())
        }),
    )
}

fn rulestore_service<'a>(
    config: RulestoreConfig,
    ops: Arc<Ops>,
    shutdown: watch::Receiver<bool>,
) -> Service<'a> {
    (
        "rulestore",
        Box::pin(async move {
            decnet_rulestore::run_with(&config, &ops, shutdown)
                .await
                .map_err(|e| e.to_string())
        }),
    )
}

pub(crate) fn rulestore(args: &RulestoreArgs) -> ExitCode {
    let mut config = RulestoreConfig::new(
        &args.shared.nats_url,
        &args.shared.database_url(),
        args.rules_dir.clone(),
    );
    config.settle = Duration::from_millis(args.settle_ms);
    run_services(
        args.ops_listen,
        "--ops-listen, DECNET_RULESTORE_OPS_LISTEN",
        |ops, shutdown| vec![rulestore_service(config, ops, shutdown)],
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
    // JetStream reserves each stream's byte limit (18 GiB in all) against its file store,
    // which defaults to 75% of the disk's free space at start: on a laptop with less than
    // 24 GiB free every stream would be refused. The streams' own limits and ages bound
    // what is kept; the store limit is set so the reservation fits.
    let config = data_dir.join("nats-server.conf");
    std::fs::write(&config, "jetstream {\n  max_file_store: 1099511627776\n}\n")
        .map_err(|e| format!("{}: {e}", config.display()))?;
    let child = Command::new(binary)
        .arg("-c")
        .arg(&config)
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
    let database_url = args.shared.database_url();
    let store = RulestoreConfig::new(&args.shared.nats_url, &database_url, args.rules_dir.clone());
    let tagger = TaggerConfig::new(&args.shared.nats_url, &database_url, None);
    let canary = match args.canary.config(&args.shared) {
        Ok(c) => c,
        Err(e) => {
            report(&format!("decnet up: canary: {e}"));
            return ExitCode::from(EXIT_UNUSABLE);
        }
    };
    let mut smtp = decnet_smtp::SmtpConfig::new(&args.smtp_decky_id, &args.shared.nats_url);
    smtp.mode = args.smtp_mode;
    smtp.listen.clone_from(&args.smtp_listen);
    smtp.quarantine_dir = args.shared.data_dir.join("smtp").join("quarantine");
    if let Err(e) = smtp.validate() {
        report(&format!("decnet up: smtp: {e}"));
        return ExitCode::from(EXIT_UNUSABLE);
    }
    if canary.fingerprint_secret.is_none() {
        tracing::warn!(
            "DECNET_CANARY_FINGERPRINT_SECRET is not set: fingerprint canaries cannot be minted"
        );
    }
    let intel = match super::intel::up_config(&args.shared) {
        Ok(c) => c,
        Err(e) => {
            report(&format!("decnet up: intel: {e}"));
            return ExitCode::from(EXIT_UNUSABLE);
        }
    };
    let probe_relay = match super::probe_relay::up_config(&args.shared) {
        Ok(c) => c,
        Err(e) => {
            report(&format!("decnet up: probe-relay: {e}"));
            return ExitCode::from(EXIT_UNUSABLE);
        }
    };
    let api = match super::api::up_config(&args.shared, &args.api, &canary) {
        Ok(c) => c,
        Err(e) => {
            report(&format!("decnet up: api: {e}"));
            return ExitCode::from(EXIT_UNUSABLE);
        }
    };
    let beacon = canary.http_listen;
    report(&format!(
        "decnet up: rule store watching {}, a tagger following it, the canary beacon on {beacon} and the SMTP decoy ({}) on {}, on {}, data in {}; health and metrics on http://{}",
        args.rules_dir.display(),
        args.smtp_decky_id,
        args.smtp_listen
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        args.shared.nats_url,
        database_url,
        args.ops_listen
    ));
    let code = run_services(
        args.ops_listen,
        "--ops-listen, DECNET_UP_OPS_LISTEN",
        |ops, shutdown| {
            let mut services = vec![
                rulestore_service(store, Arc::clone(&ops), shutdown.clone()),
                tagger_service(tagger, Arc::clone(&ops), shutdown.clone()),
                canary_service(canary, Arc::clone(&ops), shutdown.clone()),
                super::smtp::smtp_service(smtp, Arc::clone(&ops), shutdown.clone()),
                super::intel::service(intel, Arc::clone(&ops), shutdown.clone()),
                super::api::service(api, Arc::clone(&ops), shutdown.clone()),
            ];
            if let Some(config) = probe_relay {
                services.push(super::probe_relay::service(config, ops, shutdown));
            }
            services
        },
    );
    if let Some(mut c) = child {
        let _ = c.kill();
        let _ = c.wait();
    }
    code
}
