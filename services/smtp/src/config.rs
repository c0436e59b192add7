//! How one decoy runs (SMTP.md §1, §4). The decoy has no setting for an upstream server: it
//! never delivers mail, and never sees the credentials probe-relay uses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use decnet_proto::payload::email::SmtpService;

/// Harvester or open relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Refuses every recipient and every login: a credential trap (service `smtp`).
    Harvester,
    /// Accepts recipients and logins: an open relay whose first probes probe-relay delivers
    /// (service `smtp_relay`).
    Relay,
}

impl Mode {
    /// The service name events carry.
    pub fn service(self) -> SmtpService {
        match self {
            Mode::Harvester => SmtpService::Smtp,
            Mode::Relay => SmtpService::SmtpRelay,
        }
    }

    /// The same as the `service` string of `attacker.session.ended`.
    pub fn service_name(self) -> &'static str {
        match self {
            Mode::Harvester => "smtp",
            Mode::Relay => "smtp_relay",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "harvester" => Ok(Mode::Harvester),
            "relay" => Ok(Mode::Relay),
            other => Err(format!("mode {other:?}: expected harvester or relay")),
        }
    }
}

/// A certificate chain and its key, PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Per-connection and per-process bounds (SMTP.md §4).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest command line, line end included.
    pub line: usize,
    /// Errors the client may cause before it is dropped.
    pub errors: u32,
    /// Longest wait for the client's next bytes.
    pub idle: Duration,
    /// Longest connection.
    pub lifetime: Duration,
    /// Messages per connection.
    pub messages: u32,
    /// AUTH attempts per connection.
    pub auth_attempts: u32,
    /// Connections at once.
    pub connections: usize,
    /// Connections at once from one client address.
    pub connections_per_client: usize,
    /// Recipients per message.
    pub recipients: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            line: 2048,
            errors: 20,
            idle: Duration::from_secs(300),
            lifetime: Duration::from_secs(30 * 60),
            messages: 100,
            auth_attempts: 100,
            connections: 512,
            connections_per_client: 20,
            recipients: 1000,
        }
    }
}

/// Everything `decnet smtp` is told.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// Decoy name, `[a-z0-9][a-z0-9-]{0,62}`.
    pub decky_id: String,
    /// Name in the greeting and the EHLO reply.
    pub hostname: String,
    /// Harvester or relay.
    pub mode: Mode,
    /// Plain listeners (STARTTLS offered there when TLS is configured).
    pub listen: Vec<SocketAddr>,
    /// TLS-on-connect listeners.
    pub implicit_tls_listen: Vec<SocketAddr>,
    /// Enables STARTTLS and the implicit-TLS listeners.
    pub tls: Option<TlsFiles>,
    /// The whole greeting line, without its line end.
    pub banner: String,
    /// Root of the quarantine, its job spool and its campaign window.
    pub quarantine_dir: PathBuf,
    /// Bytes of a message kept; the rest is read and dropped.
    pub max_body_bytes: usize,
    /// Relay mode: usernames that may authenticate; empty lets anyone in.
    pub auth_allow: Vec<String>,
    /// Relay mode: share of recipients first answered with a greylist refusal.
    pub rcpt_greylist_rate: f64,
    /// Random pause before the reply to the end of data, as Postfix's queue manager takes
    /// a moment (SMTP.md §2: 30–180 ms).
    pub end_of_data_pause: (Duration, Duration),
    /// Connection bounds.
    pub limits: Limits,
    /// `nats://…`.
    pub nats_url: String,
}

impl SmtpConfig {
    /// The defaults of SMTP.md §1 for one decoy.
    pub fn new(decky_id: &str, nats_url: &str) -> SmtpConfig {
        SmtpConfig {
            decky_id: decky_id.to_owned(),
            hostname: decky_id.to_owned(),
            mode: Mode::Harvester,
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 2525))],
            implicit_tls_listen: Vec::new(),
            tls: None,
            banner: default_banner(decky_id),
            quarantine_dir: PathBuf::from("./data/smtp/quarantine"),
            max_body_bytes: 10 * 1024 * 1024,
            auth_allow: Vec::new(),
            rcpt_greylist_rate: 0.08,
            end_of_data_pause: (Duration::from_millis(30), Duration::from_millis(180)),
            limits: Limits::default(),
            nats_url: nats_url.to_owned(),
        }
    }

    /// Check what cannot be typed: the decoy name's shape, the rates, the implicit-TLS
    /// listeners' need for a certificate.
    pub fn validate(&self) -> Result<(), String> {
        if !decnet_proto::wire::is_decky(&self.decky_id) {
            return Err(format!(
                "--decky-id {:?}: a decoy name is [a-z0-9][a-z0-9-]{{0,62}}",
                self.decky_id
            ));
        }
        if self.hostname.is_empty() || self.hostname.chars().any(|c| c.is_whitespace()) {
            return Err(format!(
                "--hostname {:?}: one word, as it appears in the greeting",
                self.hostname
            ));
        }
        if !(0.0..=1.0).contains(&self.rcpt_greylist_rate) {
            return Err(format!(
                "--rcpt-greylist-rate {}: a share between 0 and 1",
                self.rcpt_greylist_rate
            ));
        }
        if self.banner.contains(['\r', '\n']) || !self.banner.starts_with("220") {
            return Err(format!(
                "--banner {:?}: one line starting with 220",
                self.banner
            ));
        }
        if !self.implicit_tls_listen.is_empty() && self.tls.is_none() {
            return Err("--implicit-tls-listen needs --tls-cert and --tls-key".to_owned());
        }
        if self.listen.is_empty() && self.implicit_tls_listen.is_empty() {
            return Err("--listen: at least one address".to_owned());
        }
        Ok(())
    }

    /// The service name the decoy's events carry.
    pub fn service(&self) -> SmtpService {
        self.mode.service()
    }
}

/// Postfix's greeting on Debian.
pub fn default_banner(hostname: &str) -> String {
    format!("220 {hostname} ESMTP Postfix (Debian/GNU)")
}
