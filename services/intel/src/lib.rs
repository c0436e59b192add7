//! `decnet intel` (INTEL.md): the enrich worker. For every attacker that appears
//! (`attacker.observed`, durable consumer `intel`), it asks the enabled threat-intel
//! providers — AbuseIPDB, GreyNoise Community, the Feodo Tracker blocklist and ThreatFox —
//! what they know, keeps one `attacker_intel` row per attacker (the 24 h cache), and
//! announces the merged verdict as `attacker.intel.enriched` through the outbox, which the
//! tagger turns into intel tags.
//!
//! It must never become a dependency: a provider that is down, slow, out of quota or not
//! configured costs its own verdict and nothing else. Quotas are counted in the database
//! (shared by replicas, kept across restarts), request rates and concurrency per process,
//! and a refresh timer redoes every lookup a quota, a 429 or an outage cut short.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use decnet_bus::{ConsumerSpec, RunnerConfig, connect, ensure_consumer, ensure_streams, outbox};
use decnet_ops::{Health, Ops, Readiness};
use decnet_storage::{Database, Options};
use tokio::sync::{Notify, watch};

pub use decnet_clock as clock;
mod config;
mod handler;
mod http;
mod limiter;
mod lookup;
mod message;
mod metrics;
mod providers;
mod refresh;
mod verdict;

pub use config::{
    ConfigError, IntelConfig, Provider, ProviderSettings, Secret, parse_duration, parse_providers,
    parse_time_of_day,
};
pub use metrics::Metrics;

/// The service's own name: its outbox rows, its DLQ subject, its consumer.
pub const SERVICE: &str = "intel";

/// Why the intel service could not run.
#[derive(Debug, thiserror::Error)]
pub enum IntelError {
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Storage(#[from] decnet_storage::StorageError),
    /// NATS could not be reached or set up.
    #[error("NATS: {0}")]
    Bus(#[from] decnet_bus::BusError),
}

/// The intel consumer (EVENTS.md §2.2).
pub fn consumer_spec() -> ConsumerSpec {
    ConsumerSpec {
        stream: "EVENTS",
        durable: SERVICE.to_owned(),
        filter: Some("attacker.observed".to_owned()),
        ack_wait: Duration::from_secs(60),
        max_deliver: None,
        max_ack_pending: 256,
    }
}

/// [`run_with`] with health and metrics that nobody serves.
pub async fn run(config: &IntelConfig, shutdown: watch::Receiver<bool>) -> Result<(), IntelError> {
    run_with(config, &Ops::new(), shutdown).await
}

/// Run until `shutdown` turns true: check the configuration, migrate, set up the streams
/// and the consumer, publish what a previous run left in the outbox, then consume and run
/// the refresh timer; on shutdown finish the lookups in hand, settle them and publish.
/// Ready once the consumer is set up and the old outbox is out; degraded while the outbox
/// lags.
pub async fn run_with(
    config: &IntelConfig,
    ops: &Ops,
    shutdown: watch::Receiver<bool>,
) -> Result<(), IntelError> {
    let health = ops.health(SERVICE);
    let metrics = Metrics::default();
    ops.register(|r| metrics.register(r));
    let result = serve(config, ops, &health, metrics, shutdown).await;
    health.stopped(&result);
    result
}

fn announce_start(config: &IntelConfig, enabled: &[Provider], backend: &str) {
    if config.providers.contains(&Provider::AbuseIpdb) && config.abuseipdb.key.is_none() {
        tracing::warn!("DECNET_ABUSEIPDB_API_KEY is not set: AbuseIPDB is not asked");
    }
    let names: Vec<&str> = enabled.iter().map(|p| p.name()).collect();
    tracing::info!(
        providers = %names.join(","),
        enabled = config.enabled,
        backend,
        "intel started"
    );
}

async fn serve(
    config: &IntelConfig,
    ops: &Ops,
    health: &Arc<Health>,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) -> Result<(), IntelError> {
    config.validate()?;
    let db = Database::connect(&config.database_url, &Options::default()).await?;
    let client = connect(&config.nats_url, "decnet-intel", config.connect_patience).await?;
    let js = jetstream::new(client);
    ensure_streams(&js, &["EVENTS", "DLQ"]).await?;
    let consumer = ensure_consumer(&js, &consumer_spec()).await?;
    // What a crash left staged goes out before any new work (EVENTS.md §2.4).
    outbox::drain(&db, &js, SERVICE, outbox::PIPELINED).await;
    let published = Arc::new(Notify::new());
    let enricher = Arc::new(lookup::Enricher::new(
        db.clone(),
        Arc::new(config.clone()),
        metrics,
        Arc::clone(&published),
    ));
    announce_start(config, &enricher.enabled, db.backend());

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
        published,
        shutdown.clone(),
    ));
    let timer = config
        .enabled
        .then(|| tokio::spawn(refresh::run(Arc::clone(&enricher), shutdown.clone())));
    let mut consumer_handler = handler::Consumer {
        enricher,
        enabled: config.enabled,
        progress_every: Duration::from_secs(10),
    };
    let runner = RunnerConfig {
        batch: config.batch.max(1),
        fetch_wait: config.fetch_wait,
        nak_delays: config.nak_delays.clone(),
        ..RunnerConfig::new(SERVICE, SERVICE)
    };
    let result = decnet_bus::run(&js, &consumer, &mut consumer_handler, &runner, shutdown).await;
    if let Some(timer) = timer {
        let _ = timer.await;
    }
    let _ = publisher.await;
    outbox::drain(&db, &js, SERVICE, outbox::PIPELINED).await;
    db.close().await;
    result.map_err(IntelError::from)
}
