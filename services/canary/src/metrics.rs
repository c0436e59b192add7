//! The canary service's metrics, registered in the process's ops registry. No label ever
//! carries a slug (CANARY.md §2).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

/// Counters the beacon updates.
#[derive(Debug, Clone, Default)]
pub struct CanaryMetrics {
    /// Hits on live tokens by `outcome`: `recorded`, `repeat` (folded by the flood guard).
    pub hits: Family<Labels, Counter>,
    /// Recorded fingerprint submissions by `state` (`valid`, `invalid_nonce`, …).
    pub fingerprints: Family<Labels, Counter>,
    /// Tokens revoked after a valid fingerprint.
    pub revoked: Counter,
    /// Hits written to the spool while the database was away.
    pub spooled: Counter,
    /// Hits whose row the store refused (a bug if ever non-zero: the beacon shapes rows to fit).
    pub refused: Counter,
    /// Hits waiting in the spool.
    pub spool_pending: Gauge,
}

impl CanaryMetrics {
    /// Register every metric.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "decnet_canary_hits",
            "Hits on live tokens, by outcome",
            self.hits.clone(),
        );
        registry.register(
            "decnet_canary_fingerprints",
            "Recorded fingerprint submissions, by validation state",
            self.fingerprints.clone(),
        );
        registry.register(
            "decnet_canary_revoked",
            "Tokens revoked after a valid fingerprint",
            self.revoked.clone(),
        );
        registry.register(
            "decnet_canary_spooled",
            "Hits spooled while the database was away",
            self.spooled.clone(),
        );
        registry.register(
            "decnet_canary_refused",
            "Hits whose row the store refused",
            self.refused.clone(),
        );
        registry.register(
            "decnet_canary_spool_pending",
            "Hits waiting in the spool",
            self.spool_pending.clone(),
        );
    }
}
