//! The decoy's metrics. No label carries an address, a username or a password (SMTP.md §3).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::auth::Mechanism;

type Labels = Vec<(&'static str, &'static str)>;

#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics {
    /// Connections by `outcome`: `served`, `refused` (over a connection limit).
    pub(crate) connections: Family<Labels, Counter>,
    /// Messages stored, by `truncated`.
    pub(crate) stored: Family<Labels, Counter>,
    /// AUTH attempts by `mechanism` and `result`.
    pub(crate) auth_attempts: Family<Labels, Counter>,
    /// Messages the disk refused (each was answered 452).
    pub(crate) store_failures: Counter,
    /// TLS handshakes that failed.
    pub(crate) tls_failures: Counter,
    /// Events published, by `subject`.
    pub(crate) published: Family<Labels, Counter>,
    /// Jobs waiting to be published.
    pub(crate) jobs_pending: Gauge,
    /// Job files that could not be read back (set aside as `.bad`).
    pub(crate) bad_jobs: Counter,
}

impl Metrics {
    pub(crate) fn messages(&self, truncated: bool) {
        let t = if truncated { "true" } else { "false" };
        self.stored.get_or_create(&vec![("truncated", t)]).inc();
    }

    pub(crate) fn auth(&self, mechanism: Mechanism, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.auth_attempts
            .get_or_create(&vec![("mechanism", mechanism.method()), ("result", result)])
            .inc();
    }

    pub(crate) fn connection(&self, outcome: &'static str) {
        self.connections
            .get_or_create(&vec![("outcome", outcome)])
            .inc();
    }

    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "decnet_smtp_connections",
            "SMTP connections, by outcome",
            self.connections.clone(),
        );
        registry.register(
            "decnet_smtp_messages_stored",
            "Messages stored in the quarantine, by truncation",
            self.stored.clone(),
        );
        registry.register(
            "decnet_smtp_auth_attempts",
            "AUTH attempts, by mechanism and result",
            self.auth_attempts.clone(),
        );
        registry.register(
            "decnet_smtp_store_failures",
            "Messages the quarantine could not store (answered 452)",
            self.store_failures.clone(),
        );
        registry.register(
            "decnet_smtp_tls_failures",
            "TLS handshakes that failed",
            self.tls_failures.clone(),
        );
        registry.register(
            "decnet_smtp_published",
            "Events published, by subject",
            self.published.clone(),
        );
        registry.register(
            "decnet_smtp_jobs_pending",
            "Spooled jobs waiting to be published",
            self.jobs_pending.clone(),
        );
        registry.register(
            "decnet_smtp_bad_jobs",
            "Job files that could not be read back and were set aside",
            self.bad_jobs.clone(),
        );
    }
}
