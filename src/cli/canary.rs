//! `decnet canary …`: the canary beacon, and its tokens from the command line.
//!
//! `decnet canary` (no subcommand) runs the service. `mint`, `revoke` and `placement` go
//! through the service's control subjects, so they change nothing unless the service
//! committed; `list`, `get` and `triggers` read the tables, as the REST API does; `generators`
//! lists what can be minted.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine;
use decnet_bus::control::RequestError;
use decnet_canary::CanaryConfig;
use decnet_canary::control::{MINT, REVOKE};
use decnet_proto::control::REPLY_TIMEOUT;
use serde_json::{Value, json};

use super::EXIT_UNUSABLE;
use super::service::Shared;
use super::tag::report;

/// The service's options (CANARY.md §14).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CanaryOptions {
    /// The beacon listener (faces attackers).
    #[arg(
        long,
        env = "DECNET_CANARY_HTTP_LISTEN",
        default_value = "0.0.0.0:8088"
    )]
    http_listen: SocketAddr,
    /// Base of the beacon URLs written into artifacts.
    #[arg(
        long,
        env = "DECNET_CANARY_HTTP_BASE",
        default_value = "http://localhost:8088"
    )]
    http_base: String,
    /// CIDRs allowed to set `X-Forwarded-For`, comma-separated.
    #[arg(long, env = "DECNET_CANARY_TRUSTED_PROXIES", default_value = "")]
    trusted_proxies: String,
    /// A file holding the fingerprint HMAC key (the key itself only from
    /// `DECNET_CANARY_FINGERPRINT_SECRET`, never a flag).
    #[arg(long, env = "DECNET_CANARY_FINGERPRINT_SECRET_FILE")]
    fingerprint_secret_file: Option<PathBuf>,
    /// Zone of the DNS channel (off when unset).
    #[arg(long, env = "DECNET_CANARY_DNS_ZONE")]
    dns_zone: Option<String>,
    /// The DNS channel's UDP listener.
    #[arg(long, env = "DECNET_CANARY_DNS_LISTEN", default_value = "0.0.0.0:5353")]
    dns_listen: SocketAddr,
    /// Extra scanner User-Agent regexes, one per line.
    #[arg(long, env = "DECNET_CANARY_SCANNER_UA_FILE")]
    scanner_ua_file: Option<PathBuf>,
    /// Operator scanner ranges, `name=cidr,…`.
    #[arg(long, env = "DECNET_CANARY_SCANNER_CIDRS")]
    scanner_cidrs: Option<String>,
    /// A MaxMind-format country database for the geo signals (time zone and language versus
    /// the source country, WebRTC by country).
    #[arg(long, env = "DECNET_CANARY_GEOIP_DB")]
    geoip_db: Option<PathBuf>,
    /// How long a chunked fingerprint may take, in seconds.
    #[arg(long, env = "DECNET_CANARY_CHUNK_TIMEOUT", default_value_t = 30)]
    chunk_timeout: u64,
}

impl CanaryOptions {
    /// The service configuration, or a message naming the setting that is wrong.
    pub(crate) fn config(&self, shared: &Shared) -> Result<CanaryConfig, String> {
        let mut config =
            CanaryConfig::new(&shared.nats_url, &shared.database_url(), &shared.data_dir)
                .with_trusted_proxies(&self.trusted_proxies)
                .map_err(|e| format!("DECNET_CANARY_TRUSTED_PROXIES: {e}"))?;
        config.http_listen = self.http_listen;
        config.http_base = self.http_base.trim_end_matches('/').to_owned();
        config.fingerprint_secret = match (
            &self.fingerprint_secret_file,
            std::env::var("DECNET_CANARY_FINGERPRINT_SECRET"),
        ) {
            (_, Ok(secret)) if !secret.is_empty() => Some(secret),
            (Some(file), _) => Some(
                std::fs::read_to_string(file)
                    .map_err(|e| {
                        format!(
                            "DECNET_CANARY_FINGERPRINT_SECRET_FILE {}: {e}",
                            file.display()
                        )
                    })?
                    .trim()
                    .to_owned(),
            ),
            _ => None,
        };
        config.dns_zone = self.dns_zone.clone().filter(|z| !z.is_empty());
        config.dns_listen = self.dns_listen;
        config.scanner_user_agents = match &self.scanner_ua_file {
            Some(f) => Some(
                std::fs::read_to_string(f)
                    .map_err(|e| format!("DECNET_CANARY_SCANNER_UA_FILE {}: {e}", f.display()))?,
            ),
            None => None,
        };
        config.scanner_cidrs = self.scanner_cidrs.clone();
        config.geoip_db = self.geoip_db.clone();
        config.chunk_timeout = Duration::from_secs(self.chunk_timeout.max(1));
        Ok(config)
    }
}

/// `decnet canary`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct CanaryArgs {
    #[command(subcommand)]
    command: Option<CanaryCommand>,
    #[command(flatten)]
    shared: Shared,
    #[command(flatten)]
    options: CanaryOptions,
    /// Where `/healthz`, `/readyz` and `/metrics` are served (never on the beacon listener).
    #[arg(
        long,
        env = "DECNET_CANARY_OPS_LISTEN",
        default_value = "127.0.0.1:9188"
    )]
    ops_listen: SocketAddr,
}

#[derive(Debug, clap::Subcommand)]
enum CanaryCommand {
    /// Mint a token and write its artifact; prints the token as JSON.
    Mint {
        /// Generator (`decnet canary generators` lists them).
        #[arg(long)]
        generator: String,
        /// The decoy that will hold the artifact.
        #[arg(long)]
        decky: String,
        /// Where on the decoy (default: the generator's path).
        #[arg(long)]
        path: Option<String>,
        /// Operator note.
        #[arg(long)]
        memo: Option<String>,
        /// Where to write the artifact: a file, or a directory for its own name (default: .).
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Recorded as `created_by`; default `<os user>@<host>`.
        #[arg(long = "as", value_name = "NAME")]
        created_by: Option<String>,
        /// NATS server the canary service answers on.
        #[arg(long, env = "DECNET_NATS_URL", default_value = "nats://127.0.0.1:4222")]
        nats_url: String,
    },
    /// Revoke a token: its slug stops resolving.
    Revoke {
        /// The token's uuid.
        token: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
        /// Recorded as `revoked_by`; default `<os user>@<host>`.
        #[arg(long = "as", value_name = "NAME")]
        revoked_by: Option<String>,
        /// NATS server the canary service answers on.
        #[arg(long, env = "DECNET_NATS_URL", default_value = "nats://127.0.0.1:4222")]
        nats_url: String,
    },
    /// Report whether an artifact was planted (`--ok`, or `--error TEXT` for a failure).
    Placement {
        /// The token's uuid.
        token: String,
        /// The artifact is in place.
        #[arg(long, conflicts_with = "error")]
        ok: bool,
        /// Planting failed, and why.
        #[arg(long)]
        error: Option<String>,
        /// NATS server the canary service answers on.
        #[arg(long, env = "DECNET_NATS_URL", default_value = "nats://127.0.0.1:4222")]
        nats_url: String,
    },
    /// One token (never its nonce).
    Get {
        #[command(flatten)]
        shared: Shared,
        /// The token's uuid.
        token: String,
    },
    /// List tokens (newest first).
    List {
        #[command(flatten)]
        shared: Shared,
        /// Only tokens on this decoy.
        #[arg(long)]
        decky: Option<String>,
        /// Only tokens in this state (planted, failed, revoked).
        #[arg(long)]
        state: Option<String>,
    },
    /// One token's triggers, newest first.
    Triggers {
        #[command(flatten)]
        shared: Shared,
        /// The token's uuid.
        token: String,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// The generators and what each plants.
    Generators,
}

pub(crate) fn run(args: &CanaryArgs) -> ExitCode {
    match &args.command {
        None => serve(args),
        Some(CanaryCommand::Generators) => generators(),
        Some(CanaryCommand::Mint {
            generator,
            decky,
            path,
            memo,
            out,
            created_by,
            nats_url,
        }) => {
            let body = json!({"generator": generator, "decky_name": decky, "placement_path": path,
                "memo": memo, "created_by": created_by.clone().unwrap_or_else(super::os_actor)});
            match request(nats_url, MINT, &body) {
                Ok(minted) => write_artifact(&minted, out),
                Err(code) => code,
            }
        }
        Some(CanaryCommand::Revoke {
            token,
            reason,
            revoked_by,
            nats_url,
        }) => {
            let body = json!({"token_id": token, "reason": reason,
                "revoked_by": revoked_by.clone().unwrap_or_else(super::os_actor)});
            match request(nats_url, REVOKE, &body) {
                Ok(token) => print_json(&token),
                Err(code) => code,
            }
        }
        Some(CanaryCommand::Placement {
            token,
            ok,
            error,
            nats_url,
        }) => {
            if !ok && error.is_none() {
                report("decnet canary placement: say --ok, or --error TEXT for a failed placement");
                return ExitCode::from(EXIT_UNUSABLE);
            }
            let body = json!({"token_id": token, "ok": ok, "error": error});
            match request(nats_url, decnet_canary::control::PLACEMENT, &body) {
                Ok(token) => print_json(&token),
                Err(code) => code,
            }
        }
        Some(CanaryCommand::Get { shared, token }) => {
            let Ok(token) = token.parse::<uuid::Uuid>() else {
                report(&format!("decnet canary get: '{token}' is not a token uuid"));
                return ExitCode::from(EXIT_UNUSABLE);
            };
            read_db(shared, async |db| {
                Ok(match db.canary_token(token).await? {
                    Some(r) => json!({"uuid": r.uuid, "kind": r.kind, "generator": r.generator,
                        "decky_name": r.decky_name, "placement_path": r.placement_path,
                        "state": r.state, "memo": r.memo, "created_by": r.created_by,
                        "created_at": r.created_at, "placed_at": r.placed_at,
                        "last_triggered_at": r.last_triggered_at, "trigger_count": r.trigger_count,
                        "last_error": r.last_error, "revoked_at": r.revoked_at,
                        "revoked_by": r.revoked_by, "revoke_reason": r.revoke_reason}),
                    None => Value::Null,
                })
            })
        }
        Some(CanaryCommand::List {
            shared,
            decky,
            state,
        }) => read_db(shared, async |db| {
            let rows = db.canary_tokens(decky.as_deref(), state.as_deref()).await?;
            let rows: Vec<Value> = rows
                .iter()
                .rev()
                .map(|r| {
                    json!({"uuid": r.uuid, "kind": r.kind, "generator": r.generator,
                        "decky_name": r.decky_name, "placement_path": r.placement_path, "state": r.state,
                        "created_at": r.created_at, "trigger_count": r.trigger_count,
                        "last_triggered_at": r.last_triggered_at})
                })
                .collect();
            Ok(Value::Array(rows))
        }),
        Some(CanaryCommand::Triggers {
            shared,
            token,
            limit,
        }) => {
            let Ok(token) = token.parse::<uuid::Uuid>() else {
                report(&format!(
                    "decnet canary triggers: '{token}' is not a token uuid"
                ));
                return ExitCode::from(EXIT_UNUSABLE);
            };
            read_db(shared, async |db| {
                let rows = db
                    .canary_triggers(token, (*limit).clamp(1, 500), None)
                    .await?;
                Ok(Value::Array(
                    rows.iter()
                        .map(|r| {
                            json!({"uuid": r.uuid, "occurred_at": r.occurred_at, "channel": r.channel,
                                "method": r.method, "src_ip": r.src_ip, "user_agent": r.user_agent,
                                "request_path": r.request_path, "hit_kind": r.hit_kind,
                                "fingerprint_state": r.fingerprint_state,
                                "suspected_scanner": r.suspected_scanner,
                                "scanner_reason": r.scanner_reason, "repeat_count": r.repeat_count,
                                "signals": r.signals})
                        })
                        .collect(),
                ))
            })
        }
    }
}

fn serve(args: &CanaryArgs) -> ExitCode {
    let config = match args.options.config(&args.shared) {
        Ok(c) => c,
        Err(e) => {
            report(&format!("decnet canary: {e}"));
            return ExitCode::from(EXIT_UNUSABLE);
        }
    };
    super::service::run_services(
        args.ops_listen,
        "--ops-listen, DECNET_CANARY_OPS_LISTEN",
        |ops, shutdown| vec![super::service::canary_service(config, ops, shutdown)],
    )
}

fn generators() -> ExitCode {
    let list: Vec<Value> = decnet_canary::generators::specs()
        .iter()
        .map(|s| {
            json!({"name": s.name, "kind": s.kind.as_str(), "default_path": s.default_path,
                "needs_dns_zone": s.needs_dns_zone, "needs_fingerprint_secret": s.fingerprint,
                "description": s.description})
        })
        .collect();
    print_json(&Value::Array(list))
}

fn print_json(value: &Value) -> ExitCode {
    let text = serde_json::to_string_pretty(value).expect("JSON prints");
    match writeln!(std::io::stdout().lock(), "{text}") {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(EXIT_UNUSABLE),
    }
}

/// One control request; the reply, or the exit status after saying what went wrong.
fn request(nats_url: &str, subject: &'static str, body: &Value) -> Result<Value, ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    let verb = subject.rsplit('.').next().unwrap_or(subject);
    runtime
        .block_on(decnet_bus::control::request(
            nats_url,
            subject,
            body,
            REPLY_TIMEOUT,
        ))
        .map_err(|e| {
            let (message, code) = match &e {
                RequestError::Unavailable { .. } => (format!("canary service unavailable: {e}"), 3),
                RequestError::Unreachable { .. } => (e.to_string(), 3),
                RequestError::Refused { code, .. } if code == "503" => (e.to_string(), 3),
                RequestError::Refused { .. } => (e.to_string(), 1),
                RequestError::NotJson(_) => (e.to_string(), EXIT_UNUSABLE),
            };
            report(&format!("decnet canary {verb}: {message}"));
            ExitCode::from(code)
        })
}

/// Write a minted artifact with its mode, then print the token.
fn write_artifact(minted: &Value, out: &Path) -> ExitCode {
    let artifact = &minted["artifact"];
    let name = artifact["filename"].as_str().unwrap_or("artifact");
    let target = if out.is_dir() {
        out.join(name)
    } else {
        out.to_path_buf()
    };
    let bytes = match base64::engine::general_purpose::STANDARD
        .decode(artifact["content_b64"].as_str().unwrap_or_default())
    {
        Ok(b) => b,
        Err(e) => {
            report(&format!(
                "decnet canary mint: the artifact does not decode: {e}"
            ));
            return ExitCode::from(EXIT_UNUSABLE);
        }
    };
    if let Err(e) = std::fs::write(&target, bytes) {
        report(&format!("decnet canary mint: {}: {e}", target.display()));
        return ExitCode::from(EXIT_UNUSABLE);
    }
    #[cfg(unix)]
    if let Some(mode) = artifact["mode"]
        .as_str()
        .and_then(|m| u32::from_str_radix(m, 8).ok())
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode));
    }
    report(&format!(
        "decnet canary mint: wrote {} (plant it at {} on {})",
        target.display(),
        artifact["placement_path"].as_str().unwrap_or("?"),
        minted["token"]["decky_name"].as_str().unwrap_or("?")
    ));
    print_json(&minted["token"])
}

fn read_db(
    shared: &Shared,
    query: impl AsyncFnOnce(&decnet_storage::Database) -> Result<Value, decnet_storage::StorageError>,
) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    let result = runtime.block_on(async {
        let db = decnet_storage::Database::connect(
            &shared.database_url(),
            &decnet_storage::Options::default(),
        )
        .await?;
        let value = query(&db).await;
        db.close().await;
        value
    });
    match result {
        Ok(value) => print_json(&value),
        Err(e) => {
            report(&format!("decnet canary: database: {e}"));
            ExitCode::from(EXIT_UNUSABLE)
        }
    }
}
