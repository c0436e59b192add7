//! `decnet api`: the analyst's window on tags, rules and the ATT&CK catalogue (API.md).
//!
//! The API reads the shared database directly and never writes it: a rule-state change goes
//! to the rule store over its control subject (EVENTS.md §7) and is answered with what the
//! store committed, so a `200` means the owner wrote it. Every route is declared once in
//! [`routes`], which builds both the axum router and the OpenAPI document, so the two cannot
//! drift apart. Authentication, errors, parameters, metrics and the Navigator export each
//! live in their own module.

pub mod auth;
pub mod canary;
pub mod error;
mod health;
pub mod metrics;
pub mod model;
pub mod navigator;
pub mod openapi;
pub mod params;
pub mod routes;
mod rules;
mod ttp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use decnet_ops::{Ops, Readiness};
use decnet_storage::{Database, Options};
use tokio::sync::watch;

pub use auth::{Caller, Role, Secret, Verifier};
pub use error::{ApiError, ErrorBody};

/// The service's name in logs and readiness.
pub const SERVICE: &str = "api";

/// How the API runs.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Where it listens (`DECNET_API_LISTEN`).
    pub listen: SocketAddr,
    /// `nats://…`, for the control subjects and readiness.
    pub nats_url: String,
    /// `sqlite://PATH` or `postgres://…`.
    pub database_url: String,
    /// The token check.
    pub verifier: Verifier,
    /// How long an owner has to answer a control request (EVENTS.md §7: 2 s).
    pub owner_timeout: Duration,
    /// Where canary callbacks are reached, for admins' token views.
    pub canary: canary::CanaryView,
}

impl ApiConfig {
    /// The defaults for the given endpoints and key.
    pub fn new(listen: SocketAddr, nats_url: &str, database_url: &str, verifier: Verifier) -> Self {
        ApiConfig {
            listen,
            nats_url: nats_url.to_owned(),
            database_url: database_url.to_owned(),
            verifier,
            owner_timeout: decnet_proto::control::REPLY_TIMEOUT,
            canary: canary::CanaryView::default(),
        }
    }
}

/// Why the API could not run.
#[derive(Debug, thiserror::Error)]
pub enum ApiRunError {
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Storage(#[from] decnet_storage::StorageError),
    /// The listener could not be bound or failed.
    #[error("listening on {listen}: {detail}")]
    Listen {
        /// The address.
        listen: SocketAddr,
        /// Why.
        detail: String,
    },
}

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The shared store, read only.
    pub db: Database,
    /// The token check.
    pub verifier: Verifier,
    /// For control requests (a connection per request, as the CLI's).
    pub nats_url: String,
    /// The connection readiness watches.
    pub nats: Option<async_nats::Client>,
    /// How long an owner has to answer.
    pub owner_timeout: Duration,
    /// Request, auth and owner counters.
    pub metrics: metrics::ApiMetrics,
    /// The process's metrics registry, rendered by `/metrics`.
    pub ops: Arc<Ops>,
    /// Where canary callbacks are reached.
    pub canary: canary::CanaryView,
    /// Parsed rule definitions, by sha256.
    pub(crate) rule_cache: rules::RuleCache,
}

/// The shared state of a running API.
pub type Shared = Arc<AppState>;

impl AppState {
    /// State over an open database, registering the API's metrics in `ops`.
    pub fn new(
        db: Database,
        verifier: Verifier,
        nats_url: &str,
        nats: Option<async_nats::Client>,
        ops: Arc<Ops>,
    ) -> Shared {
        let metrics = metrics::ApiMetrics::default();
        ops.register(|r| metrics.register(r));
        Arc::new(AppState {
            db,
            verifier,
            nats_url: nats_url.to_owned(),
            nats,
            owner_timeout: decnet_proto::control::REPLY_TIMEOUT,
            metrics,
            ops,
            canary: canary::CanaryView::default(),
            rule_cache: rules::RuleCache::default(),
        })
    }
}

/// Run until `shutdown` turns true. Ready once the database is migrated and the listener is
/// bound; `/readyz` goes on reporting the database and NATS as they come and go.
pub async fn run_with(
    config: &ApiConfig,
    ops: &Arc<Ops>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ApiRunError> {
    let health = ops.health(SERVICE);
    let db = Database::connect(&config.database_url, &Options::default()).await?;
    // Connecting in the background: the API serves reads while NATS is down, and readiness
    // says so.
    let nats = async_nats::ConnectOptions::new()
        .name("decnet-api")
        .retry_on_initial_connect()
        .connect(&config.nats_url)
        .await
        .ok();
    let mut state = AppState::new(
        db,
        config.verifier.clone(),
        &config.nats_url,
        nats,
        Arc::clone(ops),
    );
    let unshared = Arc::get_mut(&mut state).expect("the state is not shared yet");
    unshared.owner_timeout = config.owner_timeout;
    unshared.canary = config.canary.clone();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| ApiRunError::Listen {
            listen: config.listen,
            detail: e.to_string(),
        })?;
    tracing::info!(listen = %config.listen, "api listening");
    health.set(Readiness::Ready);
    let served = axum::serve(listener, routes::router(state))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await;
    health.set(Readiness::Stopped("shut down".into()));
    served.map_err(|e| ApiRunError::Listen {
        listen: config.listen,
        detail: e.to_string(),
    })
}
