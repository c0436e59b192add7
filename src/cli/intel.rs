//! `decnet intel`: the enrich worker (INTEL.md), and its configuration under `decnet up`.
//!
//! Every option is a flag with its `DECNET_INTEL_*` variable (INTEL.md §7). Provider keys
//! are read only from `DECNET_ABUSEIPDB_API_KEY`, `DECNET_GREYNOISE_API_KEY` and
//! `DECNET_THREATFOX_API_KEY` or the files their `_FILE` variants name, never from a flag, so
//! none shows in a process list. `decnet up` reads the same variables; without an AbuseIPDB
//! key it runs the providers that need none (GreyNoise Community, Feodo, ThreatFox).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, FromArgMatches};
use decnet_intel::{
    IntelConfig, Provider, Secret, parse_duration, parse_providers, parse_time_of_day,
};
use decnet_ops::Ops;
use tokio::sync::watch;

use super::EXIT_UNUSABLE;
use super::service::{Service, Shared, run_services};
use super::tag::report;

/// The intel service's own options.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct IntelOptions {
    /// Enabled providers, comma-separated: abuseipdb, greynoise, feodo, threatfox.
    #[arg(
        long,
        env = "DECNET_INTEL_PROVIDERS",
        default_value = "greynoise,abuseipdb,feodo,threatfox"
    )]
    providers: String,
    /// `false`: consume and acknowledge, never call a provider.
    #[arg(long, env = "DECNET_INTEL_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    enabled: bool,
    /// How long a row answers every sighting without a request.
    #[arg(long, env = "DECNET_INTEL_TTL", default_value = "24h")]
    ttl: String,
    /// How often the refresh timer runs.
    #[arg(long, env = "DECNET_INTEL_POLL_INTERVAL", default_value = "60s")]
    poll_interval: String,
    /// Attackers seen within this window are refreshed when their row expires.
    #[arg(long, env = "DECNET_INTEL_REFRESH_WINDOW", default_value = "7d")]
    refresh_window: String,
    /// Start of the quota day, HH:MM UTC.
    #[arg(long, env = "DECNET_INTEL_QUOTA_DAY_START", default_value = "00:00")]
    quota_day_start: String,
    /// `User-Agent` of every provider request (default decnet-intel/<version>).
    #[arg(long, env = "DECNET_INTEL_USER_AGENT")]
    user_agent: Option<String>,
    /// AbuseIPDB's base URL.
    #[arg(
        long,
        env = "DECNET_INTEL_ABUSEIPDB_URL",
        default_value = "https://api.abuseipdb.com"
    )]
    abuseipdb_url: String,
    /// GreyNoise's base URL.
    #[arg(
        long,
        env = "DECNET_INTEL_GREYNOISE_URL",
        default_value = "https://api.greynoise.io"
    )]
    greynoise_url: String,
    /// Feodo Tracker's base URL.
    #[arg(
        long,
        env = "DECNET_INTEL_FEODO_URL",
        default_value = "https://feodotracker.abuse.ch"
    )]
    feodo_url: String,
    /// ThreatFox's base URL.
    #[arg(
        long,
        env = "DECNET_INTEL_THREATFOX_URL",
        default_value = "https://threatfox-api.abuse.ch"
    )]
    threatfox_url: String,
    /// AbuseIPDB requests per quota day, shared by every replica.
    #[arg(
        long,
        env = "DECNET_INTEL_ABUSEIPDB_DAILY_QUOTA",
        default_value_t = 1000
    )]
    abuseipdb_daily_quota: i64,
    /// GreyNoise requests per quota day (unset: no cap).
    #[arg(long, env = "DECNET_INTEL_GREYNOISE_DAILY_QUOTA")]
    greynoise_daily_quota: Option<i64>,
    /// ThreatFox requests per quota day (unset: no cap).
    #[arg(long, env = "DECNET_INTEL_THREATFOX_DAILY_QUOTA")]
    threatfox_daily_quota: Option<i64>,
    /// Least time between two AbuseIPDB requests in this process.
    #[arg(
        long,
        env = "DECNET_INTEL_ABUSEIPDB_MIN_INTERVAL",
        default_value = "500ms"
    )]
    abuseipdb_min_interval: String,
    /// Least time between two GreyNoise requests in this process.
    #[arg(
        long,
        env = "DECNET_INTEL_GREYNOISE_MIN_INTERVAL",
        default_value = "1500ms"
    )]
    greynoise_min_interval: String,
    /// Least time between two ThreatFox requests in this process.
    #[arg(
        long,
        env = "DECNET_INTEL_THREATFOX_MIN_INTERVAL",
        default_value = "500ms"
    )]
    threatfox_min_interval: String,
    /// Age at which the Feodo blocklist is downloaded again.
    #[arg(long, env = "DECNET_INTEL_FEODO_REFRESH", default_value = "3600s")]
    feodo_refresh: String,
    /// AbuseIPDB, GreyNoise and ThreatFox requests in flight at once, each.
    #[arg(long, env = "DECNET_INTEL_CONCURRENCY", default_value_t = 4)]
    concurrency: usize,
}

/// `decnet intel`.
#[derive(Debug, clap::Args)]
pub(crate) struct IntelArgs {
    #[command(flatten)]
    shared: Shared,
    #[command(flatten)]
    options: IntelOptions,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    #[arg(
        long,
        env = "DECNET_INTEL_OPS_LISTEN",
        default_value = "127.0.0.1:9103"
    )]
    ops_listen: SocketAddr,
}

fn duration(flag: &str, text: &str) -> Result<std::time::Duration, String> {
    parse_duration(text).map_err(|e| format!("--{flag}: {e}"))
}

/// The service configuration, or a message naming what is wrong.
pub(crate) fn config(shared: &Shared, o: &IntelOptions) -> Result<IntelConfig, String> {
    let mut c = IntelConfig::new(&shared.nats_url, &shared.database_url());
    c.providers = parse_providers(&o.providers).map_err(|e| format!("--providers: {e}"))?;
    c.enabled = o.enabled;
    c.ttl = duration("ttl", &o.ttl)?;
    c.poll_interval = duration("poll-interval", &o.poll_interval)?;
    c.refresh_window = duration("refresh-window", &o.refresh_window)?;
    c.quota_day_start =
        parse_time_of_day(&o.quota_day_start).map_err(|e| format!("--quota-day-start: {e}"))?;
    if let Some(ua) = &o.user_agent {
        c.user_agent.clone_from(ua);
    }
    c.abuseipdb.url.clone_from(&o.abuseipdb_url);
    c.greynoise.url.clone_from(&o.greynoise_url);
    c.feodo.url.clone_from(&o.feodo_url);
    c.threatfox.url.clone_from(&o.threatfox_url);
    c.abuseipdb.daily_quota = Some(o.abuseipdb_daily_quota);
    c.greynoise.daily_quota = o.greynoise_daily_quota;
    c.threatfox.daily_quota = o.threatfox_daily_quota;
    c.abuseipdb.min_interval = duration("abuseipdb-min-interval", &o.abuseipdb_min_interval)?;
    c.greynoise.min_interval = duration("greynoise-min-interval", &o.greynoise_min_interval)?;
    c.threatfox.min_interval = duration("threatfox-min-interval", &o.threatfox_min_interval)?;
    c.feodo.min_interval = duration("feodo-refresh", &o.feodo_refresh)?;
    for p in [
        Provider::AbuseIpdb,
        Provider::GreyNoise,
        Provider::ThreatFox,
    ] {
        c.settings_mut(p).concurrency = o.concurrency.max(1);
    }
    let key = |var: &str| Secret::from_env(var).map_err(|e| e.to_string());
    c.abuseipdb.key = key("DECNET_ABUSEIPDB_API_KEY")?;
    c.greynoise.key = key("DECNET_GREYNOISE_API_KEY")?;
    c.threatfox.key = key("DECNET_THREATFOX_API_KEY")?;
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

/// For `decnet up`: the configuration from the `DECNET_INTEL_*` variables alone.
pub(crate) fn up_config(shared: &Shared) -> Result<IntelConfig, String> {
    let command = IntelOptions::augment_args(clap::Command::new("intel").no_binary_name(true));
    let matches = command
        .try_get_matches_from(Vec::<String>::new())
        .map_err(|e| e.to_string())?;
    let options = IntelOptions::from_arg_matches(&matches).map_err(|e| e.to_string())?;
    config(shared, &options)
}

pub(crate) fn run(args: &IntelArgs) -> ExitCode {
    let config = match config(&args.shared, &args.options) {
        Ok(c) => c,
        Err(e) => {
            report(&format!("decnet intel: {e}"));
            return ExitCode::from(EXIT_UNUSABLE);
        }
    };
    run_services(
        args.ops_listen,
        "--ops-listen, DECNET_INTEL_OPS_LISTEN",
        |ops, shutdown| vec![service(config, ops, shutdown)],
    )
}

/// The service as `run_services` runs it, here or under `decnet up`.
pub(crate) fn service<'a>(
    config: IntelConfig,
    ops: Arc<Ops>,
    shutdown: watch::Receiver<bool>,
) -> Service<'a> {
    (
        "intel",
        Box::pin(async move {
            decnet_intel::run_with(&config, &ops, shutdown)
                .await
                .map_err(|e| e.to_string())
        }),
    )
}
