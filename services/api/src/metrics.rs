//! The API's Prometheus metrics (API.md §10): requests by method, route template and status,
//! latency by route, authentication failures by reason, owner timeouts by owner, and the
//! process's memory, descriptors and start time, read from `/proc` at each scrape.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

fn latency() -> Histogram {
    // 0.5 ms to 4 s: the target is a p95 under 10 ms, an owner may take up to 2 s.
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0,
    ])
}

/// The API's metrics, registered once per process.
#[derive(Debug, Clone)]
pub struct ApiMetrics {
    requests: Family<Labels, Counter>,
    duration: Family<Labels, Histogram, fn() -> Histogram>,
    auth_failures: Family<Labels, Counter>,
    owner_timeouts: Family<Labels, Counter>,
    resident: Gauge,
    open_fds: Gauge,
    start_time: Gauge,
}

impl Default for ApiMetrics {
    fn default() -> ApiMetrics {
        ApiMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency),
            auth_failures: Family::default(),
            owner_timeouts: Family::default(),
            resident: Gauge::default(),
            open_fds: Gauge::default(),
            start_time: Gauge::default(),
        }
    }
}

impl ApiMetrics {
    /// Register every metric in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "decnet_api_requests",
            "HTTP requests by method, route template and status",
            self.requests.clone(),
        );
        registry.register(
            "decnet_api_request_duration_seconds",
            "Time to answer a request, by route template",
            self.duration.clone(),
        );
        registry.register(
            "decnet_api_auth_failures",
            "Refused tokens by reason",
            self.auth_failures.clone(),
        );
        registry.register(
            "decnet_api_owner_timeouts",
            "Control requests whose owner did not answer in time, by owner",
            self.owner_timeouts.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory",
            self.resident.clone(),
        );
        registry.register(
            "process_open_fds",
            "Open file descriptors",
            self.open_fds.clone(),
        );
        registry.register(
            "process_start_time_seconds",
            "Start time since the Unix epoch",
            self.start_time.clone(),
        );
        self.start_time.set(chrono::Utc::now().timestamp());
    }

    /// One answered request.
    pub fn request(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&vec![
                ("method", method.to_owned()),
                ("route", route.to_owned()),
                ("status", status.to_string()),
            ])
            .inc();
        self.duration
            .get_or_create(&vec![("route", route.to_owned())])
            .observe(took.as_secs_f64());
    }

    /// One refused token.
    pub fn auth_failure(&self, reason: &str) {
        self.auth_failures
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
    }

    /// One owner that did not answer.
    pub fn owner_timeout(&self, owner: &str) {
        self.owner_timeouts
            .get_or_create(&vec![("owner", owner.to_owned())])
            .inc();
    }

    /// Refresh the process gauges before a scrape.
    pub fn refresh_process(&self) {
        if let Ok(status) = std::fs::read_to_string("/proc/self/status")
            && let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        {
            self.resident.set(kib * 1024);
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(dir.count() as i64);
        }
    }
}
