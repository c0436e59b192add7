//! probe-relay's metrics, registered in the process's ops registry. Labels carry outcomes
//! and reasons only: never an address, a host or a message name.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Counters the handler updates.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Terminal outcomes this instance wrote, by `outcome` and `reason` (`none` for `sent`).
    pub outcomes: Family<Labels, Counter>,
    /// Sessions that failed transiently and were scheduled again.
    pub retried: Counter,
}

impl Metrics {
    /// Register every metric.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "decnet_probe_relay_outcomes",
            "Probe outcomes written, by outcome and reason",
            self.outcomes.clone(),
        );
        registry.register(
            "decnet_probe_relay_retries",
            "Sessions that failed transiently and were scheduled again",
            self.retried.clone(),
        );
    }

    /// Count one terminal outcome.
    pub fn outcome(&self, outcome: &str, reason: Option<&str>) {
        self.outcomes
            .get_or_create(&vec![
                ("outcome", outcome.to_owned()),
                ("reason", reason.unwrap_or("none").to_owned()),
            ])
            .inc();
    }
}
