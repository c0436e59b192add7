//! The ops listener (ARCHITECTURE.md, Observability): `/healthz`, `/readyz` and Prometheus
//! `/metrics` for the services of one process — one service under `decnet tagger`, all of
//! them under `decnet up`, which is ready when each of them is.
//!
//! A service takes a [`Health`] handle and says where it stands; it registers its metrics in
//! the shared registry. The listener only reads both, so a slow scrape never holds up work.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// Where a service stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Setting up: not taking work yet.
    Starting,
    /// Taking work.
    Ready,
    /// Taking work, but something needs an operator (named).
    Degraded(String),
    /// Finished, or failed (named).
    Stopped(String),
}

/// One service's readiness, set by the service.
#[derive(Debug)]
pub struct Health {
    service: &'static str,
    state: Mutex<Readiness>,
}

impl Health {
    /// Say where the service stands now.
    pub fn set(&self, state: Readiness) {
        let mut current = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if *current != state {
            tracing::info!(service = self.service, state = ?state, "readiness changed");
            *current = state;
        }
    }

    /// Say how the service ended: `shut down`, or the error that stopped it.
    pub fn stopped<E: std::fmt::Display>(&self, result: &Result<(), E>) {
        self.set(match result {
            Ok(()) => Readiness::Stopped("shut down".into()),
            Err(e) => Readiness::Stopped(e.to_string()),
        });
    }

    /// Where it stands.
    pub fn get(&self) -> Readiness {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The health and metrics of one process's services.
#[derive(Debug, Default)]
pub struct Ops {
    registry: Mutex<Registry>,
    services: Mutex<Vec<Arc<Health>>>,
    /// `decnet_outbox_pending{service}`, shared: services run together under `decnet up`
    /// and one metric name may be registered only once.
    outbox: std::sync::OnceLock<Family<Vec<(&'static str, String)>, Gauge>>,
}

impl Ops {
    /// An empty set.
    pub fn new() -> Arc<Ops> {
        Arc::new(Ops::default())
    }

    /// A readiness handle for `service`, starting.
    pub fn health(&self, service: &'static str) -> Arc<Health> {
        let health = Arc::new(Health {
            service,
            state: Mutex::new(Readiness::Starting),
        });
        self.services
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&health));
        health
    }

    /// The `decnet_outbox_pending` gauge of `service` (EVENTS.md §2.4).
    pub fn outbox_pending(&self, service: &str) -> Gauge {
        let family = self.outbox.get_or_init(|| {
            let family = Family::default();
            self.register(|r| {
                r.register(
                    "decnet_outbox_pending",
                    "Staged messages not yet published, by service",
                    family.clone(),
                );
            });
            family
        });
        family
            .get_or_create(&vec![("service", service.to_owned())])
            .clone()
    }

    /// Register metrics in the shared registry.
    pub fn register(&self, f: impl FnOnce(&mut Registry)) {
        f(&mut self.registry.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// `/readyz`: ready when every service is; one line per service either way.
    pub fn readiness(&self) -> (bool, String) {
        let services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        let mut ready = !services.is_empty();
        let mut text = String::new();
        for h in services.iter() {
            let line = match h.get() {
                Readiness::Ready => "ready".to_owned(),
                Readiness::Starting => {
                    ready = false;
                    "starting".to_owned()
                }
                Readiness::Degraded(why) => {
                    ready = false;
                    format!("degraded: {why}")
                }
                Readiness::Stopped(why) => {
                    ready = false;
                    format!("stopped: {why}")
                }
            };
            text.push_str(&format!("{}: {line}\n", h.service));
        }
        (ready, text)
    }

    /// `/metrics` in the OpenMetrics text format.
    pub fn metrics(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .expect("writing to a String cannot fail");
        text
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(ops): State<Arc<Ops>>) -> impl IntoResponse {
    let (ready, text) = ops.readiness();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, text)
}

async fn metrics(State(ops): State<Arc<Ops>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        ops.metrics(),
    )
}

/// The listener's routes.
pub fn router(ops: Arc<Ops>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ops)
}

/// Bind `listen`; the caller learns at once whether the address is usable.
pub async fn bind(listen: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen).await
}

/// Serve until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ops: Arc<Ops>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, router(ops))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    use super::*;

    #[test]
    fn ready_only_when_every_service_is() {
        let ops = Ops::new();
        assert_eq!(ops.readiness(), (false, String::new()), "nothing runs yet");
        let tagger = ops.health("tagger");
        let intel = ops.health("intel");
        assert_eq!(
            ops.readiness(),
            (false, "tagger: starting\nintel: starting\n".into())
        );
        tagger.set(Readiness::Ready);
        intel.set(Readiness::Ready);
        assert_eq!(
            ops.readiness(),
            (true, "tagger: ready\nintel: ready\n".into())
        );
        intel.set(Readiness::Degraded("outbox: oldest row 75 s old".into()));
        assert_eq!(
            ops.readiness(),
            (
                false,
                "tagger: ready\nintel: degraded: outbox: oldest row 75 s old\n".into()
            )
        );
    }

    #[test]
    fn metrics_render_in_the_openmetrics_text_format() {
        let ops = Ops::new();
        let counter = Counter::<u64>::default();
        ops.register(|r| r.register("decnet_demo", "A demonstration", counter.clone()));
        counter.inc_by(3);
        let text = ops.metrics();
        assert!(text.contains("# TYPE decnet_demo counter\n"), "{text}");
        assert!(text.contains("decnet_demo_total 3\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
