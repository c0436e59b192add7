//! The rule store's metrics, registered in the process's ops registry.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

/// Counters the definitions and the control endpoints update.
#[derive(Debug, Clone, Default)]
pub struct RulestoreMetrics {
    /// Stored definition changes, by `change`: `stored`, `deleted`.
    pub changes: Family<Labels, Counter>,
    /// Rule files refused after a change (invalid, or a version-discipline breach); the last
    /// good version stayed live.
    pub refused: Counter,
    /// State requests answered, by `endpoint` (`set`, `clear`) and `outcome` (`ok` or the
    /// error status).
    pub requests: Family<Labels, Counter>,
    /// States reverted by the expiry timer.
    pub expired: Counter,
}

impl RulestoreMetrics {
    /// Register every metric.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "decnet_rulestore_changes",
            "Rule definition changes stored, by kind",
            self.changes.clone(),
        );
        registry.register(
            "decnet_rulestore_refused",
            "Rule files refused; the last good version stayed live",
            self.refused.clone(),
        );
        registry.register(
            "decnet_rulestore_state_requests",
            "Rule state requests answered, by endpoint and outcome",
            self.requests.clone(),
        );
        registry.register(
            "decnet_rulestore_expired",
            "Rule states reverted by the expiry timer",
            self.expired.clone(),
        );
    }
}
