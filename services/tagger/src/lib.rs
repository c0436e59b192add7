//! `decnet tagger`: one unfiltered durable consumer on `EVENTS`, shared by every replica;
//! source events become tags in SQLite or PostgreSQL, and what the commit created is
//! announced on `TTP` (`ttp.tagged`, `ttp.rule.fired.<technique>`, `ttp.rule.suppressed`) and
//! `attacker.observed`, through the outbox (EVENTS.md §6).
//!
//! Rules come from the `RULES` stream, where the rule-store master publishes every definition
//! and state (a swarm), or from a rules directory with states from the stream (a single host);
//! either way the tagger takes no event before its rule set is loaded (see [`feed`]).
//!
//! Delivery rules: a message is acked only after its transaction commits, so a crash causes a
//! redelivery, and deterministic tag ids with insert-or-ignore make that silent; announcements
//! are staged in the same transaction and published after it, so a crash between the two
//! loses nothing; a message that can never be processed goes to `decnet.dlq.tagger`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use decnet_bus::{ConsumerSpec, RunnerConfig, connect, ensure_consumer, ensure_streams, outbox};
use decnet_ops::{Health, Ops, Readiness};
use decnet_storage::{Database, Options};
use decnet_ttp::RuleIndex;
use decnet_ttp::ratelimit::RateLimiter;
use tokio::sync::{Notify, watch};

mod announce;
pub mod feed;
mod handler;
mod metrics;
mod quarantine;

pub use handler::{MAX_BODY_BYTES, Tagger};
pub use metrics::TaggerMetrics;

/// The service's own name: its outbox rows, its DLQ subject, its consumer.
pub const SERVICE: &str = "tagger";

/// How a tagger runs.
#[derive(Debug, Clone)]
pub struct TaggerConfig {
    /// `nats://…`.
    pub nats_url: String,
    /// `sqlite://PATH` or `postgres://…`.
    pub database_url: String,
    /// A rules directory, loaded and validated at start; `None` follows the RULES stream.
    pub rules_dir: Option<PathBuf>,
    /// Messages per fetch (and per transaction).
    pub batch: usize,
    /// How long a fetch waits for messages.
    pub fetch_wait: Duration,
    /// Nak delays by delivery count.
    pub nak_delays: Vec<Duration>,
    /// How long to wait for NATS at start.
    pub connect_patience: Duration,
}

impl TaggerConfig {
    /// The defaults of EVENTS.md §2 for the given endpoints.
    pub fn new(nats_url: &str, database_url: &str, rules_dir: Option<PathBuf>) -> TaggerConfig {
        let runner = RunnerConfig::new(SERVICE, SERVICE);
        TaggerConfig {
            nats_url: nats_url.to_owned(),
            database_url: database_url.to_owned(),
            rules_dir,
            batch: runner.batch,
            fetch_wait: runner.fetch_wait,
            nak_delays: runner.nak_delays,
            connect_patience: Duration::from_secs(30),
        }
    }
}

/// Why the tagger could not run.
#[derive(Debug, thiserror::Error)]
pub enum TaggerError {
    /// The rules directory does not load.
    #[error("rules in {dir}: {detail}")]
    Rules {
        /// The directory.
        dir: String,
        /// Every problem, one per line.
        detail: String,
    },
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Storage(#[from] decnet_storage::StorageError),
    /// NATS could not be reached or set up.
    #[error("NATS: {0}")]
    Bus(#[from] decnet_bus::BusError),
}

/// The tagger's consumer (EVENTS.md §2.2).
pub fn consumer_spec() -> ConsumerSpec {
    ConsumerSpec {
        stream: "EVENTS",
        durable: SERVICE.to_owned(),
        filter: None,
        ack_wait: Duration::from_secs(30),
        max_deliver: None,
        max_ack_pending: 10_000,
    }
}

/// Load and compile the rules directory, refusing it on any error.
pub fn load_rules(dir: &std::path::Path) -> Result<RuleIndex, TaggerError> {
    match decnet_ttp::load_dir(dir) {
        Ok(loaded) => Ok(RuleIndex::new(&loaded.pack)),
        Err(decnet_ttp::pack::LoadError::Invalid(errors)) => Err(TaggerError::Rules {
            dir: dir.display().to_string(),
            detail: errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        }),
        Err(e) => Err(TaggerError::Rules {
            dir: dir.display().to_string(),
            detail: e.to_string(),
        }),
    }
}

/// The RULES stream's consumer filter and the rule set a tagger starts from.
fn initial_rules(config: &TaggerConfig) -> Result<(feed::RuleSet, feed::Definitions), TaggerError> {
    match &config.rules_dir {
        Some(dir) => Ok((
            feed::RuleSet::from_directory(load_rules(dir)?),
            feed::Definitions::Directory,
        )),
        None => Ok((feed::RuleSet::from_stream(), feed::Definitions::Stream)),
    }
}

/// [`run_with`] with health and metrics that nobody serves.
pub async fn run(
    config: &TaggerConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), TaggerError> {
    run_with(config, &Ops::new(), shutdown).await
}

/// Run until `shutdown` turns true: set up streams and the consumer, load the rule set, publish
/// what a previous run left in the outbox, then consume; on shutdown finish the batch in hand
/// and publish. Readiness and metrics go to `ops` (ready once the rule feed has delivered
/// every retained message, the consumer is set up and the outbox left by a previous run is
/// published; degraded while the outbox lags, EVENTS.md §2.2, §2.4).
pub async fn run_with(
    config: &TaggerConfig,
    ops: &Ops,
    shutdown: watch::Receiver<bool>,
) -> Result<(), TaggerError> {
    let health = ops.health(SERVICE);
    let metrics = TaggerMetrics::default();
    ops.register(|r| metrics.register(r));
    let result = serve(config, ops, &health, metrics, shutdown).await;
    health.stopped(&result);
    result
}

async fn serve(
    config: &TaggerConfig,
    ops: &Ops,
    health: &Arc<Health>,
    metrics: TaggerMetrics,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), TaggerError> {
    let (rules, source) = initial_rules(config)?;
    let db = Database::connect(&config.database_url, &Options::default()).await?;
    let client = connect(&config.nats_url, "decnet-tagger", config.connect_patience).await?;
    let js = jetstream::new(client);
    ensure_streams(&js, &["EVENTS", "TTP", "RULES", "DLQ"]).await?;
    let consumer = ensure_consumer(&js, &consumer_spec()).await?;
    let feed = feed::RuleFeed::start(js.clone(), rules, metrics.clone());
    if source == feed::Definitions::Stream {
        tracing::info!("loading the rule set from the RULES stream");
    }
    tokio::select! {
        () = feed.ready(source) => {}
        () = async {
            // The guard `wait_for` returns is not `Send`; drop it before the branch awaits.
            let _ = shutdown.wait_for(|stop| *stop).await;
        } => {
            db.close().await;
            return Ok(());
        }
    }
    let index = feed.index();
    tracing::info!(
        rules = index.load().rules().count(),
        backend = db.backend(),
        "tagger started"
    );

    // What a crash left staged goes out before any new work (EVENTS.md §2.4).
    outbox::drain(&db, &js, SERVICE, outbox::PIPELINED).await;
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

    let mut tagger = Tagger {
        rules: index,
        limiter: RateLimiter::default(),
        db: db.clone(),
        published,
        metrics,
        bodies: quarantine::BodyReader::new(js.clone()),
    };
    let runner = RunnerConfig {
        batch: config.batch,
        fetch_wait: config.fetch_wait,
        nak_delays: config.nak_delays.clone(),
        ..RunnerConfig::new(SERVICE, SERVICE)
    };
    let result = decnet_bus::run(&js, &consumer, &mut tagger, &runner, shutdown).await;
    let _ = publisher.await;
    outbox::drain(&db, &js, SERVICE, outbox::PIPELINED).await;
    db.close().await;
    result.map_err(TaggerError::from)
}
