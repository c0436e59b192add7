//! `decnet probe-relay`: delivers the first few probe messages per attacker and decoy through
//! the operator's upstream SMTP server (SMTP.md §9).
//!
//! Upstream servers, accounts and passwords live only in the configuration file this takes
//! (`--config`, `DECNET_PROBE_RELAY_CONFIG`) and the environment or files it names; no flag
//! carries a password, so none shows in a process list.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use decnet_ops::Ops;
use decnet_probe_relay::{ProbeRelayConfig, RelayConfig};
use tokio::sync::watch;

use super::EXIT_UNUSABLE;
use super::service::{Service, Shared, run_services};
use super::tag::report;

/// The variable that names the configuration file; `decnet up` skips probe-relay without it.
pub(crate) const CONFIG_VAR: &str = "DECNET_PROBE_RELAY_CONFIG";

/// `decnet probe-relay`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProbeRelayArgs {
    #[command(flatten)]
    shared: Shared,
    /// The upstream configuration (TOML: `[defaults]` and `[decky.<id>]` tables).
    #[arg(long, env = "DECNET_PROBE_RELAY_CONFIG")]
    config: PathBuf,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    #[arg(
        long,
        env = "DECNET_PROBE_RELAY_OPS_LISTEN",
        default_value = "127.0.0.1:9106"
    )]
    ops_listen: SocketAddr,
    /// This instance's name in the database's leases (default: random); unique per process.
    #[arg(long, env = "DECNET_PROBE_RELAY_INSTANCE_ID")]
    instance_id: Option<String>,
}

/// A fresh instance name: two processes must never share one, or each would take the
/// other's leases for its own.
fn random_instance() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// The service configuration from the file at `path`, or a message naming what is wrong.
pub(crate) fn config(
    shared: &Shared,
    path: &Path,
    instance_id: Option<&str>,
) -> Result<ProbeRelayConfig, String> {
    let relay = RelayConfig::load(path).map_err(|e| e.to_string())?;
    let instance = instance_id.map_or_else(random_instance, str::to_owned);
    Ok(ProbeRelayConfig::new(
        &shared.nats_url,
        &shared.database_url(),
        relay,
        &instance,
    ))
}

/// For `decnet up`: the configuration when `DECNET_PROBE_RELAY_CONFIG` names a file, `None`
/// (said in one WARN naming the variable) when it is unset.
pub(crate) fn up_config(shared: &Shared) -> Result<Option<ProbeRelayConfig>, String> {
    match std::env::var_os(CONFIG_VAR).filter(|v| !v.is_empty()) {
        Some(path) => config(shared, Path::new(&path), None).map(Some),
        None => {
            tracing::warn!("{CONFIG_VAR} is not set: probe-relay does not run");
            Ok(None)
        }
    }
}

pub(crate) fn run(args: &ProbeRelayArgs) -> ExitCode {
    let config = match config(&args.shared, &args.config, args.instance_id.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            report(&format!("decnet probe-relay: {e}"));
            return ExitCode::from(EXIT_UNUSABLE);
        }
    };
    run_services(
        args.ops_listen,
        "--ops-listen, DECNET_PROBE_RELAY_OPS_LISTEN",
        |ops, shutdown| vec![service(config, ops, shutdown)],
    )
}

/// The service as `run_services` runs it, here or under `decnet up`.
pub(crate) fn service<'a>(
    config: ProbeRelayConfig,
    ops: Arc<Ops>,
    shutdown: watch::Receiver<bool>,
) -> Service<'a> {
    (
        "probe-relay",
        Box::pin(async move {
            decnet_probe_relay::run_with(&config, &ops, shutdown)
                .await
                .map_err(|e| e.to_string())
        }),
    )
}
