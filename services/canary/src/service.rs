//! Running the canary service: the beacon listener, the chunk-timeout and spool timers, the
//! outbox publisher and the control endpoints, until shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use decnet_bus::{connect, ensure_streams, outbox};
use decnet_ops::{Ops, Readiness};
use decnet_storage::{Database, Options};
use tokio::sync::{Notify, watch};

use crate::SERVICE;
use crate::beacon::Beacon;
use crate::http::{App, router, serve};
use crate::net::{Cidr, parse_list};
use crate::scanner::Scanners;
use crate::spool::Spool;

/// How the canary service runs (CANARY.md §14).
#[derive(Debug, Clone)]
pub struct CanaryConfig {
    /// `nats://…`.
    pub nats_url: String,
    /// `sqlite://PATH` or `postgres://…`.
    pub database_url: String,
    /// The beacon listener (faces attackers).
    pub http_listen: SocketAddr,
    /// Base of beacon URLs written into artifacts.
    pub http_base: String,
    /// Peers allowed to set `X-Forwarded-For`.
    pub trusted_proxies: Vec<Cidr>,
    /// The HMAC key of fingerprint nonces; fingerprint generators refuse to mint without it.
    pub fingerprint_secret: Option<String>,
    /// Zone of the DNS channel, if any; the channel is off without one.
    pub dns_zone: Option<String>,
    /// The DNS channel's UDP listener.
    pub dns_listen: SocketAddr,
    /// Extra scanner User-Agent regexes, one per line.
    pub scanner_user_agents: Option<String>,
    /// Operator scanner ranges, `name=cidr,…`.
    pub scanner_cidrs: Option<String>,
    /// A MaxMind-format country database for the geo signals; they are null without one.
    pub geoip_db: Option<PathBuf>,
    /// How long a chunk set may take.
    pub chunk_timeout: Duration,
    /// The spool file used while the database is away.
    pub spool: PathBuf,
    /// How long to wait for NATS at start.
    pub connect_patience: Duration,
}

impl CanaryConfig {
    /// The defaults of CANARY.md §14 for the given endpoints and data directory.
    pub fn new(nats_url: &str, database_url: &str, data_dir: &std::path::Path) -> CanaryConfig {
        CanaryConfig {
            nats_url: nats_url.to_owned(),
            database_url: database_url.to_owned(),
            http_listen: SocketAddr::from(([0, 0, 0, 0], 8088)),
            http_base: "http://localhost:8088".to_owned(),
            trusted_proxies: Vec::new(),
            fingerprint_secret: None,
            dns_zone: None,
            dns_listen: SocketAddr::from(([0, 0, 0, 0], 5353)),
            scanner_user_agents: None,
            scanner_cidrs: None,
            geoip_db: None,
            chunk_timeout: Duration::from_secs(30),
            spool: data_dir.join("canary").join("spool.jsonl"),
            connect_patience: Duration::from_secs(30),
        }
    }

    /// Parse `DECNET_CANARY_TRUSTED_PROXIES`.
    pub fn with_trusted_proxies(mut self, list: &str) -> Result<CanaryConfig, String> {
        self.trusted_proxies = parse_list(list)?;
        Ok(self)
    }
}

/// Why the canary service could not run.
#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    /// A setting is unusable.
    #[error("{0}")]
    Config(String),
    /// The beacon listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Storage(#[from] decnet_storage::StorageError),
    /// NATS could not be reached or set up.
    #[error("NATS: {0}")]
    Bus(#[from] decnet_bus::BusError),
}

/// Run until `shutdown` turns true; health and metrics go to `ops`. Ready once the beacon
/// listens, the outbox a previous run left is published and the control endpoints answer.
pub async fn run_with(
    config: &CanaryConfig,
    ops: &Ops,
    shutdown: watch::Receiver<bool>,
) -> Result<(), CanaryError> {
    let health = ops.health(SERVICE);
    let result = serve_all(config, ops, &health, shutdown).await;
    health.stopped(&result);
    result
}

async fn serve_all(
    config: &CanaryConfig,
    ops: &Ops,
    health: &Arc<decnet_ops::Health>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), CanaryError> {
    let scanners = Scanners::new(
        config.scanner_user_agents.as_deref(),
        config.scanner_cidrs.as_deref(),
    )
    .map_err(CanaryError::Config)?;
    // A hit waits for the database at most a second before it goes to the spool: the beacon
    // must stay as quick as nginx while the database is away.
    let options = Options {
        acquire_timeout: Duration::from_secs(1),
        ..Options::default()
    };
    let db = Database::connect(&config.database_url, &options).await?;
    let client = connect(&config.nats_url, "decnet-canary", config.connect_patience).await?;
    let js = jetstream::new(client.clone());
    ensure_streams(&js, &["EVENTS", "DLQ"]).await?;
    outbox::drain(&db, &js, SERVICE, outbox::PIPELINED).await;

    let geo = match &config.geoip_db {
        Some(path) => {
            let geo = crate::geo::Geo::open(path).map_err(CanaryError::Config)?;
            tracing::info!(
                database = geo.database_type(),
                "GeoIP country database loaded"
            );
            Some(geo)
        }
        None => None,
    };
    let published = Arc::new(Notify::new());
    let beacon = Arc::new(Beacon::new(
        db.clone(),
        config.chunk_timeout,
        geo,
        Arc::clone(&published),
    ));
    ops.register(|r| beacon.metrics.register(r));
    let spool = Arc::new(Spool::new(&config.spool));
    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .map_err(|source| CanaryError::Listen {
            addr: config.http_listen,
            source,
        })?;
    let app = Arc::new(App {
        beacon: Arc::clone(&beacon),
        spool: Arc::clone(&spool),
        trusted_proxies: config.trusted_proxies.clone(),
        scanners,
        last_failure_ms: std::sync::atomic::AtomicI64::new(i64::MIN / 2),
    });
    let server = tokio::spawn(serve(listener, router(app), shutdown.clone()));
    let dns = match &config.dns_zone {
        Some(zone) => {
            let socket = tokio::net::UdpSocket::bind(config.dns_listen)
                .await
                .map_err(|source| CanaryError::Listen {
                    addr: config.dns_listen,
                    source,
                })?;
            tracing::info!(listen = %config.dns_listen, zone, "DNS channel started");
            Some(tokio::spawn(crate::dns::serve(
                socket,
                zone.clone(),
                Arc::clone(&beacon),
                shutdown.clone(),
            )))
        }
        None => None,
    };
    let control =
        crate::control::start(&client, db.clone(), config.clone(), Arc::clone(&published))
            .await
            .map_err(|e| {
                decnet_bus::BusError::Nats(format!("starting the control endpoints: {e}"))
            })?;
    client.flush().await.map_err(|e| {
        decnet_bus::BusError::Nats(format!("subscribing the control endpoints: {e}"))
    })?;
    // The publisher reports the outbox's health from its first pass, so it starts only once
    // the service is ready: before, it could call it ready while its endpoints were
    // not yet subscribed (a request on readiness met no responder).
    health.set(Readiness::Ready);
    let publisher = tokio::spawn(outbox::publish_loop(
        outbox::Publisher {
            db: db.clone(),
            js: js.clone(),
            service: SERVICE,
            window: outbox::PIPELINED,
            health: Arc::clone(health),
            pending: ops.outbox_pending(SERVICE),
        },
        Arc::clone(&published),
        shutdown.clone(),
    ));
    tracing::info!(listen = %config.http_listen, backend = db.backend(), "canary beacon started");

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tick.tick() => {
                if let Err(e) = beacon.expire_chunks().await {
                    tracing::warn!(error = %e, "recording timed-out chunk sets failed; retrying");
                }
                let pending = spool.pending();
                beacon.metrics.spool_pending.set(pending as i64);
                if pending > 0 {
                    match spool.replay(&beacon).await {
                        Ok(n) if n > 0 => tracing::info!(replayed = n, "spooled hits recorded"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "replaying the spool failed"),
                    }
                }
                published.notify_one();
            }
        }
    }
    control.abort();
    let _ = server.await;
    if let Some(dns) = dns {
        let _ = dns.await;
    }
    let _ = publisher.await;
    outbox::drain(&db, &js, SERVICE, outbox::PIPELINED).await;
    db.close().await;
    Ok(())
}
