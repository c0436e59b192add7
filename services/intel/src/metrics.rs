//! The intel service's metrics, registered in the process's ops registry. Labels carry the
//! provider and an outcome class only: never an address, a key or an error text.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

fn wait_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Counters the lookups update.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Requests by `provider` and `outcome` (`ok`, `error`, `timeout`, `rate_limited`), and
    /// lookups that did not send one (`skipped_quota`, `skipped_paused`).
    pub requests: Family<Labels, Counter>,
    /// Seconds a request waited for its provider's limiter, by `provider`.
    pub limiter_wait: Family<Labels, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            requests: Family::default(),
            limiter_wait: Family::new_with_constructor(wait_histogram),
        }
    }
}

impl Metrics {
    /// Register every metric.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "decnet_intel_requests",
            "Provider requests by provider and outcome",
            self.requests.clone(),
        );
        registry.register(
            "decnet_intel_limiter_wait_seconds",
            "Time a provider request waited for its limiter",
            self.limiter_wait.clone(),
        );
    }

    /// Count one request outcome.
    pub(crate) fn request(&self, provider: &str, outcome: &'static str) {
        self.requests
            .get_or_create(&vec![
                ("provider", provider.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
    }

    /// Record one limiter wait.
    pub(crate) fn waited(&self, provider: &str, seconds: f64) {
        self.limiter_wait
            .get_or_create(&vec![("provider", provider.to_owned())])
            .observe(seconds);
    }
}
