//! How the intel service runs (INTEL.md §7): which providers, where they are, their keys,
//! limits and quotas, and the timers.
//!
//! Keys live in [`Secret`], whose `Debug` and `Display` never show them, and are read only
//! from the environment or from files the environment names, never from flags. The
//! constructor tests use, [`IntelConfig::local`], points every provider at one base URL and
//! refuses any whose host is not loopback, and the service checks that again at start, so a
//! test can never reach a real provider.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveTime;

use crate::clock::{Clock, SystemClock};

/// One threat-intel provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    /// AbuseIPDB `check`.
    AbuseIpdb,
    /// GreyNoise Community.
    GreyNoise,
    /// Feodo Tracker's botnet C2 blocklist.
    Feodo,
    /// ThreatFox `search_ioc`.
    ThreatFox,
}

impl Provider {
    /// Every provider, in the order the spec lists them.
    pub const ALL: [Provider; 4] = [
        Provider::AbuseIpdb,
        Provider::GreyNoise,
        Provider::Feodo,
        Provider::ThreatFox,
    ];

    /// The name in configuration, columns, metrics and events.
    pub fn name(self) -> &'static str {
        match self {
            Provider::AbuseIpdb => "abuseipdb",
            Provider::GreyNoise => "greynoise",
            Provider::Feodo => "feodo",
            Provider::ThreatFox => "threatfox",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Provider {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Provider, ConfigError> {
        Provider::ALL
            .into_iter()
            .find(|p| p.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| ConfigError::UnknownProvider(s.trim().to_owned()))
    }
}

/// A provider key: shown as `***` by `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a key.
    pub fn new(key: impl Into<String>) -> Secret {
        Secret(key.into())
    }

    /// The key itself, for the one header that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The key from `VAR`, else from the file `VAR_FILE` names (trailing newline dropped);
    /// `None` when neither is set or the value is empty.
    pub fn from_env(var: &str) -> Result<Option<Secret>, ConfigError> {
        if let Some(v) = std::env::var(var).ok().filter(|v| !v.trim().is_empty()) {
            return Ok(Some(Secret(v.trim().to_owned())));
        }
        let file_var = format!("{var}_FILE");
        let Some(path) = std::env::var_os(&file_var).filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::KeyFile {
            variable: file_var,
            error: e.to_string(),
        })?;
        let key = text.trim();
        Ok((!key.is_empty()).then(|| Secret(key.to_owned())))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// One provider's endpoint, key and limits (INTEL.md §2–§3).
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// Base URL, without the request path.
    pub url: String,
    /// API key; AbuseIPDB is disabled without one, the others send none.
    pub key: Option<Secret>,
    /// Requests in flight at once, in this process.
    pub concurrency: usize,
    /// Least time between two requests' starts, in this process (Feodo: between feed
    /// downloads).
    pub min_interval: Duration,
    /// Requests per quota day, shared through the database; `None` for no cap.
    pub daily_quota: Option<i64>,
}

impl ProviderSettings {
    fn new(url: &str, concurrency: usize, min_interval_ms: u64, quota: Option<i64>) -> Self {
        ProviderSettings {
            url: url.to_owned(),
            key: None,
            concurrency,
            min_interval: Duration::from_millis(min_interval_ms),
            daily_quota: quota,
        }
    }
}

/// How the intel service runs.
#[derive(Debug, Clone)]
pub struct IntelConfig {
    /// `nats://…`.
    pub nats_url: String,
    /// `sqlite://PATH` or `postgres://…`.
    pub database_url: String,
    /// `false`: consume and ack, never call out.
    pub enabled: bool,
    /// Providers asked, as configured (AbuseIPDB drops out at start without a key).
    pub providers: Vec<Provider>,
    /// AbuseIPDB.
    pub abuseipdb: ProviderSettings,
    /// GreyNoise Community.
    pub greynoise: ProviderSettings,
    /// Feodo Tracker.
    pub feodo: ProviderSettings,
    /// ThreatFox.
    pub threatfox: ProviderSettings,
    /// How long a row answers every lookup without a request (24 h).
    pub ttl: Duration,
    /// How often the refresh timer runs (60 s).
    pub poll_interval: Duration,
    /// Attackers seen this recently are refreshed when their row expires (7 d).
    pub refresh_window: Duration,
    /// Attackers the timer refreshes per run, besides the retries that are due (50).
    pub refresh_batch: i64,
    /// Start of the quota day, UTC (00:00).
    pub quota_day_start: NaiveTime,
    /// `User-Agent` of every request.
    pub user_agent: String,
    /// Timeout of one provider request (10 s).
    pub request_timeout: Duration,
    /// Timeout of the Feodo feed download (20 s).
    pub feed_timeout: Duration,
    /// When every provider failed, the row is retried after this (15 min).
    pub failure_retry: Duration,
    /// The pause after a 429 without a usable `Retry-After` (60 s).
    pub default_pause: Duration,
    /// Deliveries per fetch; their lookups run together.
    pub batch: usize,
    /// How long a fetch waits for messages.
    pub fetch_wait: Duration,
    /// Nak delays by delivery count for transient failures.
    pub nak_delays: Vec<Duration>,
    /// How long to wait for NATS at start.
    pub connect_patience: Duration,
    /// Where time comes from; tests advance a manual clock.
    pub clock: Arc<dyn Clock>,
    /// Set by [`IntelConfig::local`]: every provider URL must stay on loopback.
    loopback_only: bool,
}

/// Why the configuration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `DECNET_INTEL_PROVIDERS` names a provider that does not exist.
    #[error("unknown intel provider {0:?} (known: abuseipdb, greynoise, feodo, threatfox)")]
    UnknownProvider(String),
    /// A key file could not be read.
    #[error("{variable}: cannot read the key file: {error}")]
    KeyFile {
        /// The `_FILE` variable.
        variable: String,
        /// Why.
        error: String,
    },
    /// A provider URL is not `http://` or `https://` with a host.
    #[error("{provider} URL {url:?} is not an http(s) URL with a host")]
    Url {
        /// The provider.
        provider: Provider,
        /// The URL.
        url: String,
    },
    /// A test configuration points a provider away from loopback.
    #[error("{provider} URL {url:?} is not on loopback; test configurations never leave it")]
    NotLoopback {
        /// The provider.
        provider: Provider,
        /// The URL.
        url: String,
    },
    /// A duration could not be read.
    #[error("{0:?} is not a duration (e.g. 500ms, 60s, 15m, 24h, 7d)")]
    Duration(String),
    /// A time of day could not be read.
    #[error("{0:?} is not a time of day (HH:MM, UTC)")]
    TimeOfDay(String),
}

impl IntelConfig {
    /// The defaults of INTEL.md §2–§3 and §7, against the public endpoints.
    pub fn new(nats_url: &str, database_url: &str) -> IntelConfig {
        let runner = decnet_bus::RunnerConfig::new(crate::SERVICE, crate::SERVICE);
        IntelConfig {
            nats_url: nats_url.to_owned(),
            database_url: database_url.to_owned(),
            enabled: true,
            providers: vec![
                Provider::GreyNoise,
                Provider::AbuseIpdb,
                Provider::Feodo,
                Provider::ThreatFox,
            ],
            abuseipdb: ProviderSettings::new("https://api.abuseipdb.com", 4, 500, Some(1000)),
            greynoise: ProviderSettings::new("https://api.greynoise.io", 4, 1500, None),
            feodo: ProviderSettings::new("https://feodotracker.abuse.ch", 1, 3_600_000, None),
            threatfox: ProviderSettings::new("https://threatfox-api.abuse.ch", 4, 500, None),
            ttl: Duration::from_secs(24 * 3600),
            poll_interval: Duration::from_secs(60),
            refresh_window: Duration::from_secs(7 * 24 * 3600),
            refresh_batch: 50,
            quota_day_start: NaiveTime::MIN,
            user_agent: format!("decnet-intel/{}", env!("CARGO_PKG_VERSION")),
            request_timeout: Duration::from_secs(10),
            feed_timeout: Duration::from_secs(20),
            failure_retry: Duration::from_secs(15 * 60),
            default_pause: Duration::from_secs(60),
            batch: 64,
            fetch_wait: runner.fetch_wait,
            nak_delays: runner.nak_delays,
            connect_patience: Duration::from_secs(30),
            clock: Arc::new(SystemClock),
            loopback_only: false,
        }
    }

    /// The defaults with every provider at `base_url` (one mock standing in for all of
    /// them), for tests: refused unless its host is loopback.
    pub fn local(
        nats_url: &str,
        database_url: &str,
        base_url: &str,
    ) -> Result<IntelConfig, ConfigError> {
        let mut config = IntelConfig::new(nats_url, database_url);
        config.loopback_only = true;
        for p in Provider::ALL {
            config.settings_mut(p).url = base_url.to_owned();
        }
        config.validate()?;
        Ok(config)
    }

    /// One provider's settings.
    pub fn settings(&self, p: Provider) -> &ProviderSettings {
        match p {
            Provider::AbuseIpdb => &self.abuseipdb,
            Provider::GreyNoise => &self.greynoise,
            Provider::Feodo => &self.feodo,
            Provider::ThreatFox => &self.threatfox,
        }
    }

    /// One provider's settings, to change.
    pub fn settings_mut(&mut self, p: Provider) -> &mut ProviderSettings {
        match p {
            Provider::AbuseIpdb => &mut self.abuseipdb,
            Provider::GreyNoise => &mut self.greynoise,
            Provider::Feodo => &mut self.feodo,
            Provider::ThreatFox => &mut self.threatfox,
        }
    }

    /// Check every provider URL (and, for a test configuration, that it is on loopback).
    pub fn validate(&self) -> Result<(), ConfigError> {
        for p in Provider::ALL {
            let url = &self.settings(p).url;
            let host = url_host(url).ok_or_else(|| ConfigError::Url {
                provider: p,
                url: url.clone(),
            })?;
            if self.loopback_only && !is_loopback_host(&host) {
                return Err(ConfigError::NotLoopback {
                    provider: p,
                    url: url.clone(),
                });
            }
        }
        Ok(())
    }

    /// The providers asked: those configured, less AbuseIPDB without a key.
    pub fn active_providers(&self) -> Vec<Provider> {
        let mut out: Vec<Provider> = Vec::new();
        for &p in &self.providers {
            if p == Provider::AbuseIpdb && self.abuseipdb.key.is_none() {
                continue;
            }
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out.sort();
        out
    }
}

/// The host of an `http://` or `https://` URL, brackets removed from an IPv6 literal.
fn url_host(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return None;
    }
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| host.to_owned())
}

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The providers of a comma-separated list; an unknown name is an error naming it.
pub fn parse_providers(list: &str) -> Result<Vec<Provider>, ConfigError> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(Provider::from_str)
        .collect()
}

/// A duration such as `500ms`, `60s`, `15m`, `24h` or `7d` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, ConfigError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| ConfigError::Duration(text.to_owned()))?;
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(ConfigError::Duration(text.to_owned())),
    };
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(|| ConfigError::Duration(text.to_owned()))
}

/// A UTC time of day, `HH:MM`.
pub fn parse_time_of_day(text: &str) -> Result<NaiveTime, ConfigError> {
    NaiveTime::parse_from_str(text.trim(), "%H:%M")
        .map_err(|_| ConfigError::TimeOfDay(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_configuration_never_leaves_loopback() {
        assert!(IntelConfig::local("nats://x", "sqlite://x", "http://127.0.0.1:9").is_ok());
        assert!(IntelConfig::local("nats://x", "sqlite://x", "http://[::1]:9").is_ok());
        assert!(IntelConfig::local("nats://x", "sqlite://x", "http://localhost:9").is_ok());
        let e =
            IntelConfig::local("nats://x", "sqlite://x", "https://api.abuseipdb.com").unwrap_err();
        assert_eq!(
            e.to_string(),
            "abuseipdb URL \"https://api.abuseipdb.com\" is not on loopback; test \
             configurations never leave it"
        );
        let mut c = IntelConfig::local("nats://x", "sqlite://x", "http://127.0.0.1:9").unwrap();
        c.threatfox.url = "http://192.0.2.1".into();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::NotLoopback {
                provider: Provider::ThreatFox,
                ..
            })
        ));
    }

    #[test]
    fn keys_never_show_in_debug_output() {
        let mut c = IntelConfig::new("nats://x", "sqlite://x");
        c.abuseipdb.key = Some(Secret::new("k3y-never-shown"));
        let shown = format!("{c:?} {}", c.abuseipdb.key.as_ref().unwrap());
        assert!(!shown.contains("k3y-never-shown"), "{shown}");
        assert!(shown.contains("Secret(***)"));
    }

    #[test]
    fn providers_durations_and_times_parse_or_say_what_is_wrong() {
        assert_eq!(
            parse_providers("greynoise, FEODO").unwrap(),
            vec![Provider::GreyNoise, Provider::Feodo]
        );
        assert_eq!(
            parse_providers("greynoise,shodan").unwrap_err().to_string(),
            "unknown intel provider \"shodan\" (known: abuseipdb, greynoise, feodo, threatfox)"
        );
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("60").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("soon").is_err());
        assert_eq!(
            parse_time_of_day("06:30").unwrap(),
            NaiveTime::from_hms_opt(6, 30, 0).unwrap()
        );
        assert_eq!(
            parse_time_of_day("25:00").unwrap_err().to_string(),
            "\"25:00\" is not a time of day (HH:MM, UTC)"
        );
    }

    #[test]
    fn abuseipdb_drops_out_without_a_key() {
        let mut c = IntelConfig::new("nats://x", "sqlite://x");
        assert_eq!(
            c.active_providers(),
            vec![Provider::GreyNoise, Provider::Feodo, Provider::ThreatFox]
        );
        c.abuseipdb.key = Some(Secret::new("k"));
        assert_eq!(c.active_providers(), Provider::ALL.to_vec());
    }
}
