//! `decnet smtp`: the SMTP decoy (SMTP.md §1). Every option has a `DECNET_SMTP_<NAME>`
//! fallback; nothing here can name an upstream server, which only probe-relay knows.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use decnet_smtp::{Mode, SmtpConfig, TlsFiles, default_banner};

use super::EXIT_UNUSABLE;
use super::service::{Service, run_services};
use super::tag::report;

/// `decnet smtp`.
#[derive(Debug, clap::Args)]
pub(crate) struct SmtpArgs {
    /// NATS server.
    #[arg(long, env = "DECNET_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Decoy name, `[a-z0-9][a-z0-9-]{0,62}`.
    #[arg(long, env = "DECNET_SMTP_DECKY_ID")]
    decky_id: String,
    /// Listeners, comma-separated (compose maps 25 and 587 onto one).
    #[arg(
        long,
        env = "DECNET_SMTP_LISTEN",
        value_delimiter = ',',
        default_value = "0.0.0.0:2525"
    )]
    listen: Vec<SocketAddr>,
    /// Root of the quarantine (`<dir>/<decky-id>/*.eml`), its job spool and campaign window.
    #[arg(
        long,
        env = "DECNET_SMTP_QUARANTINE_DIR",
        default_value = "./data/smtp/quarantine"
    )]
    quarantine_dir: PathBuf,
    /// Where `/healthz`, `/readyz` and `/metrics` are served; never an SMTP port.
    #[arg(long, env = "DECNET_SMTP_OPS_LISTEN", default_value = "127.0.0.1:9105")]
    ops_listen: SocketAddr,
    #[command(flatten)]
    options: SmtpOptions,
}

/// The decoy's behaviour.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SmtpOptions {
    /// Name in the greeting and the EHLO reply (default: the decky id).
    #[arg(long, env = "DECNET_SMTP_HOSTNAME")]
    hostname: Option<String>,
    /// `harvester` (refuses recipients and logins) or `relay` (an open relay).
    #[arg(long, env = "DECNET_SMTP_MODE", default_value = "harvester")]
    mode: Mode,
    /// Certificate chain (PEM) for STARTTLS and the implicit-TLS listeners.
    #[arg(long, env = "DECNET_SMTP_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "DECNET_SMTP_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// TLS-on-connect listeners, comma-separated (port 465 in compose).
    #[arg(long, env = "DECNET_SMTP_IMPLICIT_TLS_LISTEN", value_delimiter = ',')]
    implicit_tls_listen: Vec<SocketAddr>,
    /// The whole greeting line (default `220 <hostname> ESMTP Postfix (Debian/GNU)`).
    #[arg(long, env = "DECNET_SMTP_BANNER")]
    banner: Option<String>,
    /// Bytes of a message kept; the rest is read and dropped, and the message flagged.
    #[arg(long, env = "DECNET_SMTP_MAX_BODY_BYTES", default_value_t = 10_485_760)]
    max_body_bytes: usize,
    /// Relay mode: usernames that may log in, comma-separated; empty lets anyone in.
    #[arg(long, env = "DECNET_SMTP_AUTH_ALLOW", value_delimiter = ',')]
    auth_allow: Vec<String>,
    /// Relay mode: share of recipients first answered with a greylisting refusal.
    #[arg(long, env = "DECNET_SMTP_RCPT_GREYLIST_RATE", default_value_t = 0.08)]
    rcpt_greylist_rate: f64,
}

impl SmtpOptions {
    pub(crate) fn config(
        &self,
        decky_id: &str,
        nats_url: &str,
        listen: Vec<SocketAddr>,
        quarantine_dir: PathBuf,
    ) -> SmtpConfig {
        let mut config = SmtpConfig::new(decky_id, nats_url);
        if let Some(h) = &self.hostname {
            config.hostname.clone_from(h);
        }
        config.banner = self
            .banner
            .clone()
            .unwrap_or_else(|| default_banner(&config.hostname));
        config.mode = self.mode;
        config.listen = listen;
        config
            .implicit_tls_listen
            .clone_from(&self.implicit_tls_listen);
        config.tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        config.quarantine_dir = quarantine_dir;
        config.max_body_bytes = self.max_body_bytes;
        config.auth_allow = self
            .auth_allow
            .iter()
            .filter(|u| !u.is_empty())
            .cloned()
            .collect();
        config.rcpt_greylist_rate = self.rcpt_greylist_rate;
        config
    }
}

pub(crate) fn smtp_service<'a>(
    config: SmtpConfig,
    ops: std::sync::Arc<decnet_ops::Ops>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Service<'a> {
    (
        "smtp",
        Box::pin(async move {
            decnet_smtp::run_with(&config, &ops, shutdown)
                .await
                .map_err(|e| e.to_string())
        }),
    )
}

pub(crate) fn run(args: &SmtpArgs) -> ExitCode {
    let config = args.options.config(
        &args.decky_id,
        &args.nats_url,
        args.listen.clone(),
        args.quarantine_dir.clone(),
    );
    if let Err(e) = config.validate() {
        report(&format!("decnet smtp: {e}"));
        return ExitCode::from(EXIT_UNUSABLE);
    }
    run_services(
        args.ops_listen,
        "--ops-listen, DECNET_SMTP_OPS_LISTEN",
        |ops, shutdown| vec![smtp_service(config, ops, shutdown)],
    )
}
