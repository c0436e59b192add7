//! `decnet smtp` (SMTP.md §1–§8): the decoy attackers talk to. It speaks Postfix's SMTP,
//! captures every login attempt, keeps every message in a quarantine and publishes what it
//! saw; it never delivers mail (probe-relay does that, for the first few probes, from its own
//! configuration the decoy never sees).
//!
//! The decoy has no database. A message is on disk (the `.eml` and its job, both fsync'd)
//! before the client hears 250; the publisher then puts it into the `QUARANTINE` bucket and
//! publishes its events, deleting the job only after every acknowledgement, so neither a
//! crash nor a NATS outage loses or doubles anything.

mod auth;
mod campaign;
mod config;
mod conn;
mod greylist;
mod metrics;
mod publisher;
mod quarantine;
mod queue_id;
mod reply;
mod server;
mod session;
mod spool;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use decnet_ops::Ops;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

pub use config::{Limits, Mode, SmtpConfig, TlsFiles, default_banner};

/// The service name of health, logs and the DLQ.
pub const SERVICE: &str = "smtp";

/// Why the decoy could not run.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// A setting is unusable.
    #[error("{0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The quarantine directory cannot be used.
    #[error("quarantine {path}: {source}")]
    Quarantine {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Run until `shutdown` turns true; health and metrics go to `ops`. The decoy serves SMTP as
/// soon as its listeners are bound, whether or not NATS is there: it is ready once the
/// publisher has reached NATS and emptied the spool, degraded while jobs wait.
pub async fn run_with(
    config: &SmtpConfig,
    ops: &Ops,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SmtpError> {
    let health = ops.health(SERVICE);
    let result = serve_all(config, ops, &health, shutdown).await;
    health.stopped(&result);
    result
}

async fn serve_all(
    config: &SmtpConfig,
    ops: &Ops,
    health: &Arc<decnet_ops::Health>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SmtpError> {
    config.validate().map_err(SmtpError::Config)?;
    let tls = match &config.tls {
        Some(files) => Some(server::acceptor(files).map_err(SmtpError::Config)?),
        None => None,
    };
    let unusable = |source| SmtpError::Quarantine {
        path: config.quarantine_dir.display().to_string(),
        source,
    };
    let quarantine = quarantine::Quarantine::new(&config.quarantine_dir, &config.decky_id);
    quarantine.prepare().map_err(unusable)?;
    let spool = spool::Spool::new(&config.quarantine_dir);
    spool.prepare().map_err(unusable)?;
    let window =
        campaign::Window::load(&config.quarantine_dir, chrono::Utc::now()).map_err(unusable)?;

    let mut listeners = Vec::new();
    for (addrs, implicit) in [(&config.listen, false), (&config.implicit_tls_listen, true)] {
        for &addr in addrs {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| SmtpError::Listen { addr, source })?;
            listeners.push((listener, implicit));
        }
    }
    let decoy = Arc::new(session::Decoy {
        config: config.clone(),
        tls,
        quarantine,
        spool,
        greylist: Mutex::new(greylist::Greylist::default()),
        metrics: metrics::Metrics::default(),
        jobs: Arc::new(Notify::new()),
    });
    ops.register(|r| decoy.metrics.register(r));
    tracing::info!(
        decky = config.decky_id,
        mode = config.mode.service_name(),
        listen = ?config.listen,
        implicit_tls = ?config.implicit_tls_listen,
        "SMTP decoy listening"
    );
    let publisher = tokio::spawn(publisher::run(
        Arc::clone(&decoy),
        window,
        Arc::clone(health),
        shutdown.clone(),
    ));
    let counts = Arc::new(server::Counts::default());
    let accepting: Vec<_> = listeners
        .into_iter()
        .map(|(listener, implicit)| {
            tokio::spawn(server::accept(
                Arc::clone(&decoy),
                listener,
                implicit,
                Arc::clone(&counts),
                shutdown.clone(),
            ))
        })
        .collect();
    for task in accepting {
        let _ = task.await;
    }
    let _ = publisher.await;
    Ok(())
}
