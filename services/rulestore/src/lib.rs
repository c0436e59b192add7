//! `decnet rulestore`: the rule-store master. It owns the rules directory and the operators'
//! rule states, keeps both in `ttp_rule` and `ttp_rule_state`, and publishes every change on
//! the `RULES` stream, which keeps the last message of each subject, so a tagger booting at
//! any time reads the current rule set from the stream alone (RULES.md §2–3, EVENTS.md §4.15).
//!
//! Delivery: each change is written with its message in one transaction (the outbox) and
//! published after the commit, so a crash between the two loses nothing; a state request is
//! answered only after its commit. One task owns the directory, the requests and the expiry
//! timer, so a state request never races a reload of the rule it names.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::service::ServiceExt;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use decnet_bus::{connect, ensure_streams, outbox};
use decnet_ops::{Health, Ops, Readiness};
use decnet_proto::control::{
    QUEUE_GROUP, RULESTORE_SERVICE, RULESTORE_STATE_CLEAR, RULESTORE_STATE_SET, StateClearRequest,
    StateSetRequest,
};
use decnet_proto::header;
use decnet_storage::{Database, Options, OutboxMessage};
use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::{Notify, watch};

pub use decnet_clock as clock;
pub mod definitions;
mod metrics;
pub mod states;
pub mod watcher;

pub use clock::{Clock, ManualClock, SystemClock};
pub use definitions::{Definitions, LoadFailure, Outcome};
pub use metrics::RulestoreMetrics;
pub use states::Refusal;

/// The service's own name: its outbox rows, its DLQ subject.
pub const SERVICE: &str = "rulestore";

/// How the rule store runs.
#[derive(Debug, Clone)]
pub struct RulestoreConfig {
    /// `nats://…`.
    pub nats_url: String,
    /// `sqlite://PATH` or `postgres://…`.
    pub database_url: String,
    /// The rules directory it owns.
    pub rules_dir: PathBuf,
    /// How long a burst of file events must be quiet before the files are read.
    pub settle: Duration,
    /// How long to wait for NATS at start.
    pub connect_patience: Duration,
    /// Names this instance in `updated_by` (`rulestore/<instance>`).
    pub instance: String,
    /// The clock of `set_at` and of expiry.
    pub clock: Arc<dyn Clock>,
}

impl RulestoreConfig {
    /// The defaults for the given endpoints and directory.
    pub fn new(nats_url: &str, database_url: &str, rules_dir: PathBuf) -> RulestoreConfig {
        RulestoreConfig {
            nats_url: nats_url.to_owned(),
            database_url: database_url.to_owned(),
            rules_dir,
            settle: Duration::from_millis(10),
            connect_patience: Duration::from_secs(30),
            instance: instance_name(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// `<host>-<pid>`: distinct per process, readable in `updated_by`.
fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Why the rule store could not run.
#[derive(Debug, thiserror::Error)]
pub enum RulestoreError {
    /// The rules directory does not load; every problem, one per line.
    #[error("rules in {dir}:\n{failure}")]
    Rules {
        /// The directory.
        dir: String,
        /// What is wrong.
        failure: LoadFailure,
    },
    /// The directory cannot be watched.
    #[error("watching {dir}: {detail}")]
    Watch {
        /// The directory.
        dir: String,
        /// Why.
        detail: String,
    },
    /// The database could not be opened, migrated or read.
    #[error("database: {0}")]
    Storage(#[from] decnet_storage::StorageError),
    /// NATS could not be reached or set up.
    #[error("NATS: {0}")]
    Bus(#[from] decnet_bus::BusError),
}

/// Run until `shutdown` turns true; health and metrics go to `ops`. The store is ready once
/// the pack is validated and stored, expired states are reverted, what a previous run left in
/// the outbox is published and the control endpoints answer.
pub async fn run_with(
    config: &RulestoreConfig,
    ops: &Ops,
    shutdown: watch::Receiver<bool>,
) -> Result<(), RulestoreError> {
    let health = ops.health(SERVICE);
    let metrics = RulestoreMetrics::default();
    ops.register(|r| metrics.register(r));
    let pending = ops.outbox_pending(SERVICE);
    let result = serve(config, &health, metrics, pending, shutdown).await;
    health.stopped(&result);
    result
}

async fn serve(
    config: &RulestoreConfig,
    health: &Arc<Health>,
    metrics: RulestoreMetrics,
    pending: prometheus_client::metrics::gauge::Gauge,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), RulestoreError> {
    let dir = config.rules_dir.display().to_string();
    let clock = Arc::clone(&config.clock);
    let db = Database::connect(&config.database_url, &Options::default()).await?;
    // Watching starts before the first read, so an edit made while the pack loads is seen.
    let mut watcher =
        watcher::DirWatcher::start(&config.rules_dir, config.settle).map_err(|e| {
            RulestoreError::Watch {
                dir: dir.clone(),
                detail: e.to_string(),
            }
        })?;
    let mut defs = Definitions::open(
        &config.rules_dir,
        db.clone(),
        &config.instance,
        metrics.clone(),
    )
    .await?;
    defs.load_all(clock.now())
        .await
        .map_err(|failure| RulestoreError::Rules {
            dir: dir.clone(),
            failure,
        })?;
    // States that expired while the store was down are reverted before anything is served.
    let reverted = states::expire_due(&db, clock.now()).await?;
    metrics.expired.inc_by(reverted.len() as u64);

    let client = connect(
        &config.nats_url,
        "decnet-rulestore",
        config.connect_patience,
    )
    .await?;
    let js = jetstream::new(client.clone());
    ensure_streams(&js, &["RULES", "DLQ"]).await?;
    outbox::drain(&db, &js, SERVICE, outbox::IN_ORDER).await;
    repair_stream(&js, &db, &defs).await;

    let service = client
        .service_builder()
        .description("decnet rule store: operational rule state")
        .queue_group(QUEUE_GROUP)
        .start(RULESTORE_SERVICE, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| decnet_bus::BusError::Nats(format!("starting the service API: {e}")))?;
    let endpoint = |subject: &'static str| {
        let service = &service;
        async move {
            service
                .endpoint(subject)
                .await
                .map_err(|e| decnet_bus::BusError::Nats(format!("serving {subject}: {e}")))
        }
    };
    let mut set_requests = endpoint(RULESTORE_STATE_SET).await?;
    let mut clear_requests = endpoint(RULESTORE_STATE_CLEAR).await?;

    let published = Arc::new(Notify::new());
    // The endpoints' subscriptions reach the server before the store calls itself ready, so a
    // request sent on readiness finds a responder.
    client.flush().await.map_err(|e| {
        decnet_bus::BusError::Nats(format!("subscribing the control endpoints: {e}"))
    })?;
    // The publisher reports the outbox's health from its first pass, so it starts only once
    // the store is ready: before, it could call the service ready while its endpoints were
    // not yet subscribed (a request on readiness met no responder).
    health.set(Readiness::Ready);
    let publisher = tokio::spawn(outbox::publish_loop(
        outbox::Publisher {
            db: db.clone(),
            js: js.clone(),
            service: SERVICE,
            window: outbox::IN_ORDER,
            health: Arc::clone(health),
            pending,
        },
        Arc::clone(&published),
        shutdown.clone(),
    ));
    tracing::info!(
        rules = defs.stored().filter(|r| !r.deleted).count(),
        dir = %dir,
        backend = db.backend(),
        "rule store started"
    );

    let mut watching = true;
    loop {
        let next_expiry = match db.next_rule_expiry().await {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(error = %e, "reading the next rule expiry failed; retrying in 1 s");
                Some(clock.now() + chrono::TimeDelta::seconds(1))
            }
        };
        let expiry = async {
            match next_expiry {
                Some(at) => clock.sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.changed() => break,
            burst = watcher.next(), if watching => {
                let Some(burst) = burst else {
                    // State requests and expiry still work; only edits are no longer seen.
                    tracing::error!(dir = %dir, "the directory watch stopped; edits are no longer picked up");
                    health.set(Readiness::Degraded(format!("the watch on {dir} stopped")));
                    watching = false;
                    continue;
                };
                apply_burst(&mut defs, &burst, clock.now()).await;
                published.notify_one();
            }
            Some(request) = set_requests.next() => {
                let reply = set_state(&db, &defs, &request.message.payload, clock.now()).await;
                respond(&metrics, "set", &request, reply).await;
                published.notify_one();
            }
            Some(request) = clear_requests.next() => {
                let reply = clear_state(&db, &defs, &request.message.payload, clock.now()).await;
                respond(&metrics, "clear", &request, reply).await;
                published.notify_one();
            }
            () = expiry => {
                match states::expire_due(&db, clock.now()).await {
                    Ok(reverted) => {
                        metrics.expired.inc_by(reverted.len() as u64);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reverting expired rule states failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                published.notify_one();
            }
        }
    }
    let _ = service.stop().await;
    let _ = publisher.await;
    outbox::drain(&db, &js, SERVICE, outbox::IN_ORDER).await;
    db.close().await;
    Ok(())
}

/// Apply one settled burst of directory events. A database failure leaves the files as they
/// are; the burst is retried until it lands, because an edit the store never stored would
/// never reach the taggers.
async fn apply_burst(
    defs: &mut Definitions,
    burst: &std::collections::BTreeSet<watcher::Change>,
    now: DateTime<Utc>,
) {
    let mut delay = Duration::from_millis(100);
    while let Err(e) = defs.apply(burst, now).await {
        tracing::warn!(error = %e, retry_in = ?delay, "storing a rule change failed; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

async fn set_state(
    db: &Database,
    defs: &Definitions,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Bytes, Refusal> {
    let req: StateSetRequest = decnet_bus::control::decode(body)?;
    let valid = states::validate(&req, |id| defs.is_live(id), now)?;
    let committed = states::set(db, valid, now).await?;
    Ok(to_json(&committed))
}

async fn clear_state(
    db: &Database,
    defs: &Definitions,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Bytes, Refusal> {
    let req: StateClearRequest = decnet_bus::control::decode(body)?;
    let cleared = states::clear(db, &req, |id| defs.is_live(id), now).await?;
    Ok(to_json(&cleared))
}

fn to_json(value: &impl Serialize) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("payload types serialise"))
}

async fn respond(
    metrics: &RulestoreMetrics,
    endpoint: &'static str,
    request: &async_nats::service::Request,
    reply: Result<Bytes, Refusal>,
) {
    let outcome = match &reply {
        Ok(_) => "ok",
        Err(r) => match r.code {
            400 => "400",
            404 => "404",
            409 => "409",
            422 => "422",
            _ => "503",
        },
    };
    metrics
        .requests
        .get_or_create(&vec![("endpoint", endpoint), ("outcome", outcome)])
        .inc();
    if let Err(e) = decnet_bus::control::respond(request, reply).await {
        tracing::warn!(endpoint, error = %e, "replying to a state request failed");
    }
}

/// Make the stream hold what the table holds: a stream that lost its messages (recreated, or
/// a NATS server without its store) would otherwise boot taggers without rules. A message is
/// published again when the stream's last message of its subject carries another msg id.
async fn repair_stream(js: &jetstream::Context, db: &Database, defs: &Definitions) {
    let Ok(stream) = js.get_stream("RULES").await else {
        tracing::warn!("cannot read the RULES stream; skipping the repair check");
        return;
    };
    let mut wanted: Vec<OutboxMessage> = defs.stored().map(definitions::reloaded_message).collect();
    match db.rule_states().await {
        Ok(rows) => wanted.extend(
            rows.iter()
                .map(|row| states::state_message(&states::row_message(row))),
        ),
        Err(e) => tracing::warn!(error = %e, "reading rule states for the repair check failed"),
    }
    let mut repaired = 0;
    for m in wanted {
        let held = stream
            .get_last_raw_message_by_subject(&m.subject)
            .await
            .ok()
            .and_then(|msg| {
                msg.headers
                    .get(header::MSG_ID)
                    .map(|v| v.as_str().to_owned())
            });
        if held.as_deref() == Some(m.msg_id.as_str()) {
            continue;
        }
        match decnet_bus::publish(js, &m.subject, &m.msg_id, &m.headers, Bytes::from(m.body)).await
        {
            Ok(_) => repaired += 1,
            Err(e) => {
                tracing::warn!(subject = %m.subject, error = %e, "republishing a rule message failed")
            }
        }
    }
    if repaired > 0 {
        tracing::info!(repaired, "RULES stream repaired from the store");
    }
}
