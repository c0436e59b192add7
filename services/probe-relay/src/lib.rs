//! `decnet probe-relay` (SMTP.md §9): the first N messages per (attacker address, decoy)
//! through the operator's upstream server, counted in the database, never sent twice.
//!
//! Spammers test an open relay by sending a probe to their own mailbox; a probe that never
//! arrives tells them the relay is fake. The relay-mode decoy stores each message in the
//! `QUARANTINE` bucket and publishes `smtp.probe.pending` on the work-queue stream `PROBES`;
//! this service consumes it with the durable `probe-relay` consumer, claims a slot in
//! `probe_relay` (whose unique keys are the limit, across restarts, redeliveries and
//! replicas), delivers through the upstream named in its own configuration file, and
//! announces every outcome as `smtp.probe.relayed` through the outbox.
//!
//! Delivery is at-least-once on the bus and at most once towards upstream: the row goes
//! `in_flight` before the message's bytes are written, and a session that may have handed
//! over the final dot is never retried, only recorded as `unknown`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use decnet_bus::{ConsumerSpec, RunnerConfig, connect, ensure_consumer, ensure_streams, outbox};
use decnet_ops::{Health, Ops, Readiness};
use decnet_storage::{Database, Options};
use tokio::sync::{Notify, watch};

mod config;
mod message;
mod metrics;
mod relay;
mod session;

pub use config::{ConfigError, Policy, RelayConfig, Secret, TlsMode, Upstream, parse_duration};
pub use metrics::Metrics;

/// The service's own name: its outbox rows, its DLQ subject, its consumer.
pub const SERVICE: &str = "probe-relay";

/// How probe-relay runs.
#[derive(Debug, Clone)]
pub struct ProbeRelayConfig {
    /// `nats://…`.
    pub nats_url: String,
    /// `sqlite://PATH` or `postgres://…`.
    pub database_url: String,
    /// The upstream configuration file, read.
    pub relay: Arc<RelayConfig>,
    /// This instance's name, the lease owner in `probe_relay` (unique per running process).
    pub instance_id: String,
    /// Deliveries per fetch; their sessions run together.
    pub batch: usize,
    /// How long a fetch waits for messages.
    pub fetch_wait: Duration,
    /// Nak delays by delivery count, for failures without a delay of their own (the
    /// database away).
    pub nak_delays: Vec<Duration>,
    /// How long a claim keeps other instances off a message (SMTP.md §9.3: 120 s).
    pub lease: Duration,
    /// How long a session may run before it is abandoned (SMTP.md §9.5: 120 s).
    pub session_limit: Duration,
    /// How often `in progress` is sent while sessions run (SMTP.md §9.5: 10 s).
    pub progress_every: Duration,
    /// How long to wait for NATS at start.
    pub connect_patience: Duration,
}

impl ProbeRelayConfig {
    /// The defaults of SMTP.md §9 and EVENTS.md §2.3 for the given endpoints and instance.
    pub fn new(
        nats_url: &str,
        database_url: &str,
        relay: RelayConfig,
        instance_id: &str,
    ) -> ProbeRelayConfig {
        let runner = RunnerConfig::new(SERVICE, SERVICE);
        ProbeRelayConfig {
            nats_url: nats_url.to_owned(),
            database_url: database_url.to_owned(),
            relay: Arc::new(relay),
            instance_id: instance_id.to_owned(),
            batch: 16,
            fetch_wait: runner.fetch_wait,
            nak_delays: runner.nak_delays,
            lease: Duration::from_secs(120),
            session_limit: Duration::from_secs(120),
            progress_every: Duration::from_secs(10),
            connect_patience: Duration::from_secs(30),
        }
    }
}

/// Why probe-relay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ProbeRelayError {
    /// The configuration file is unusable.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Storage(#[from] decnet_storage::StorageError),
    /// NATS could not be reached or set up.
    #[error("NATS: {0}")]
    Bus(#[from] decnet_bus::BusError),
}

/// probe-relay's consumer (EVENTS.md §2.2).
pub fn consumer_spec() -> ConsumerSpec {
    ConsumerSpec {
        stream: "PROBES",
        durable: SERVICE.to_owned(),
        filter: Some("smtp.probe.pending".to_owned()),
        ack_wait: Duration::from_secs(60),
        max_deliver: None,
        max_ack_pending: 64,
    }
}

/// [`run_with`] with health and metrics that nobody serves.
pub async fn run(
    config: &ProbeRelayConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ProbeRelayError> {
    run_with(config, &Ops::new(), shutdown).await
}

/// Run until `shutdown` turns true: migrate, set up the streams and the consumer, publish
/// what a previous run left in the outbox, then consume; on shutdown finish the batch in
/// hand (its sessions included), settle it and publish. Ready once the consumer is set up
/// and the old outbox is out; degraded while the outbox lags.
pub async fn run_with(
    config: &ProbeRelayConfig,
    ops: &Ops,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ProbeRelayError> {
    let health = ops.health(SERVICE);
    let metrics = Metrics::default();
    ops.register(|r| metrics.register(r));
    let result = serve(config, ops, &health, metrics, shutdown).await;
    health.stopped(&result);
    result
}

async fn serve(
    config: &ProbeRelayConfig,
    ops: &Ops,
    health: &Arc<Health>,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ProbeRelayError> {
    let db = Database::connect(&config.database_url, &Options::default()).await?;
    let client = connect(
        &config.nats_url,
        "decnet-probe-relay",
        config.connect_patience,
    )
    .await?;
    let js = jetstream::new(client);
    ensure_streams(&js, &["PROBES", "EVENTS", "DLQ"]).await?;
    let consumer = ensure_consumer(&js, &consumer_spec()).await?;
    // What a crash left staged goes out before any new work (EVENTS.md §2.4).
    outbox::drain(&db, &js, SERVICE, outbox::PIPELINED).await;
    let relayed = config.relay.deckies().count();
    tracing::info!(
        instance = %config.instance_id,
        deckies = relayed,
        backend = db.backend(),
        "probe-relay started"
    );

    health.set(Readiness::Ready);
    let published = Arc::new(Notify::new());
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
    let mut relay = relay::Relay {
        db: db.clone(),
        js: js.clone(),
        config: Arc::clone(&config.relay),
        instance: config.instance_id.clone(),
        timing: relay::Timing {
            lease: config.lease,
            session_limit: config.session_limit,
            progress_every: config.progress_every,
        },
        published,
        metrics,
        bucket: Mutex::new(None),
    };
    let runner = RunnerConfig {
        batch: config.batch.max(1),
        fetch_wait: config.fetch_wait,
        nak_delays: config.nak_delays.clone(),
        ..RunnerConfig::new(SERVICE, SERVICE)
    };
    let result = decnet_bus::run(&js, &consumer, &mut relay, &runner, shutdown).await;
    let _ = publisher.await;
    outbox::drain(&db, &js, SERVICE, outbox::PIPELINED).await;
    db.close().await;
    result.map_err(ProbeRelayError::from)
}
