//! probe-relay's configuration file (SMTP.md §9.1): `[defaults]` and one `[decky.<id>]` table
//! per decoy, each key of a decoy's table replacing the default. Upstream servers, accounts
//! and senders come only from here and the environment it names, never from a bus message.
//!
//! The file is read once at start. Unknown keys are refused with the file and the key named,
//! so a typo cannot silently turn a limit off. The upstream password is read from the
//! variable or file the configuration names, kept in [`Secret`] (whose `Debug` and `Display`
//! print a placeholder) and handed only to the SMTP client's AUTH.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use decnet_proto::payload::smtp::UpstreamTls;
use lettre::transport::smtp::client::{Certificate, TlsParameters};
use serde::Deserialize;

/// A password: never printed, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(text: String) -> Secret {
        Secret(text)
    }

    /// The secret itself, for the one place that sends it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
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

/// Why the configuration cannot be used. The messages name the file and the key, never a
/// secret's value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration (an unknown key, a wrong type).
    #[error("{path}: {detail}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// What the TOML reader said, with the line.
        detail: String,
    },
    /// A value is out of range or unusable.
    #[error("{path}: [{section}] {key}: {detail}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// `defaults` or `decky.<id>`.
        section: String,
        /// The key.
        key: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// How the connection to upstream is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Upgrade with STARTTLS when the server offers it.
    Starttls,
    /// TLS from the first byte.
    Implicit,
    /// Plain text, chosen explicitly.
    None,
}

impl TlsMode {
    /// The name stored and published.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Starttls => "starttls",
            TlsMode::Implicit => "implicit",
            TlsMode::None => "none",
        }
    }

    /// The payload's form.
    pub fn wire(self) -> UpstreamTls {
        match self {
            TlsMode::Starttls => UpstreamTls::Starttls,
            TlsMode::Implicit => UpstreamTls::Implicit,
            TlsMode::None => UpstreamTls::None,
        }
    }
}

/// One table of the file, every key optional so a decoy's table can override a default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    host: Option<String>,
    port: Option<u16>,
    tls: Option<TlsMode>,
    require_tls: Option<bool>,
    tls_verify: Option<bool>,
    ca_file: Option<PathBuf>,
    username: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    sender: Option<String>,
    helo_name: Option<String>,
    probe_limit: Option<i64>,
    max_recipients: Option<i64>,
    max_bytes: Option<i64>,
    timeout_s: Option<f64>,
    max_attempts: Option<i64>,
    retry_schedule: Option<Vec<String>>,
    redirect_to: Option<String>,
    quarantine_dir: Option<PathBuf>,
}

impl Section {
    /// `self` over `base`, key by key. The password's source goes as a pair: a decoy naming
    /// its own variable or file must not also inherit the other one from the defaults.
    fn over(&self, base: &Section) -> Section {
        let own_password = self.password_env.is_some() || self.password_file.is_some();
        let (password_env, password_file) = if own_password {
            (self.password_env.clone(), self.password_file.clone())
        } else {
            (base.password_env.clone(), base.password_file.clone())
        };
        Section {
            host: self.host.clone().or_else(|| base.host.clone()),
            port: self.port.or(base.port),
            tls: self.tls.or(base.tls),
            require_tls: self.require_tls.or(base.require_tls),
            tls_verify: self.tls_verify.or(base.tls_verify),
            ca_file: self.ca_file.clone().or_else(|| base.ca_file.clone()),
            username: self.username.clone().or_else(|| base.username.clone()),
            password_env,
            password_file,
            sender: self.sender.clone().or_else(|| base.sender.clone()),
            helo_name: self.helo_name.clone().or_else(|| base.helo_name.clone()),
            probe_limit: self.probe_limit.or(base.probe_limit),
            max_recipients: self.max_recipients.or(base.max_recipients),
            max_bytes: self.max_bytes.or(base.max_bytes),
            timeout_s: self.timeout_s.or(base.timeout_s),
            max_attempts: self.max_attempts.or(base.max_attempts),
            retry_schedule: self
                .retry_schedule
                .clone()
                .or_else(|| base.retry_schedule.clone()),
            redirect_to: self
                .redirect_to
                .clone()
                .or_else(|| base.redirect_to.clone()),
            quarantine_dir: self
                .quarantine_dir
                .clone()
                .or_else(|| base.quarantine_dir.clone()),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    defaults: Section,
    #[serde(default)]
    decky: BTreeMap<String, Section>,
}

/// Where and how one decoy's probes go.
#[derive(Clone)]
pub struct Upstream {
    /// Server.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Transport security.
    pub tls: TlsMode,
    /// With STARTTLS: refuse to send when the server does not offer it.
    pub require_tls: bool,
    /// Whether the certificate and name are verified.
    pub tls_verify: bool,
    /// AUTH user; AUTH happens only with a password too.
    pub username: Option<String>,
    /// AUTH password.
    pub password: Option<Secret>,
    /// Envelope sender; the attacker's MAIL FROM when unset.
    pub sender: Option<String>,
    /// EHLO name; the decky id when unset.
    pub helo_name: Option<String>,
    /// Test mode: every probe goes to this address instead.
    pub redirect_to: Option<String>,
    /// Per connect and per reply.
    pub timeout: Duration,
    /// Sessions per message on transient failures.
    pub max_attempts: i64,
    /// Delay before each further attempt; the last one repeats.
    pub retry_schedule: Vec<Duration>,
    /// Built once: loading the system's roots per session would be slow.
    pub(crate) tls_parameters: Option<TlsParameters>,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("require_tls", &self.require_tls)
            .field("tls_verify", &self.tls_verify)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("sender", &self.sender)
            .field("helo_name", &self.helo_name)
            .field("redirect_to", &self.redirect_to)
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("retry_schedule", &self.retry_schedule)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Username and password, when both are set.
    pub(crate) fn credentials(&self) -> Option<(&str, &Secret)> {
        self.username.as_deref().zip(self.password.as_ref())
    }

    /// The delay after the `attempts`-th session failed transiently.
    pub fn retry_delay(&self, attempts: i64) -> Duration {
        let i = usize::try_from(attempts.max(1) - 1).unwrap_or(usize::MAX);
        self.retry_schedule
            .get(i)
            .or(self.retry_schedule.last())
            .copied()
            .unwrap_or(Duration::from_secs(30))
    }
}

/// The rules for one decoy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `None`: this decoy is not relayed (`no_upstream`).
    pub upstream: Option<Arc<Upstream>>,
    /// N: messages relayed per (attacker address, decoy).
    pub probe_limit: i64,
    /// More recipients are not relayed.
    pub max_recipients: i64,
    /// Larger messages are not relayed.
    pub max_bytes: i64,
    /// Where messages of producers without the `QUARANTINE` bucket are read.
    pub quarantine_dir: Option<PathBuf>,
}

/// The whole file, resolved: a policy per named decoy and one for every other decoy.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    defaults: Policy,
    deckies: BTreeMap<String, Policy>,
}

impl RelayConfig {
    /// Read and check a configuration file.
    pub fn load(path: &Path) -> Result<RelayConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        RelayConfig::parse(&text, path)
    }

    /// Check configuration text; `path` names it in errors and anchors relative file names.
    pub fn parse(text: &str, path: &Path) -> Result<RelayConfig, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            detail: e.to_string().trim_end().to_owned(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let defaults = resolve(&file.defaults, "defaults", path, base)?;
        let mut deckies = BTreeMap::new();
        for (id, section) in &file.decky {
            let name = format!("decky.{id}");
            if !decnet_proto::wire::is_decky(id) {
                return Err(invalid(
                    path,
                    &name,
                    "decky",
                    "not a decoy name ([a-z0-9][a-z0-9-]{0,62})",
                ));
            }
            let merged = section.over(&file.defaults);
            deckies.insert(id.clone(), resolve(&merged, &name, path, base)?);
        }
        Ok(RelayConfig { defaults, deckies })
    }

    /// The policy of `decky_id`.
    pub fn policy(&self, decky_id: &str) -> &Policy {
        self.deckies.get(decky_id).unwrap_or(&self.defaults)
    }

    /// The decoys with a table of their own.
    pub fn deckies(&self) -> impl Iterator<Item = &str> {
        self.deckies.keys().map(String::as_str)
    }
}

fn invalid(path: &Path, section: &str, key: &'static str, detail: &str) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_owned(),
        section: section.to_owned(),
        key,
        detail: detail.to_owned(),
    }
}

/// `"200ms"`, `"30s"`, `"2m"`, `"1h"`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(value * scale).ok()
}

/// A range-checked integer key with its default.
fn ranged(
    value: Option<i64>,
    default: i64,
    min: i64,
    at: (&Path, &str, &'static str),
) -> Result<i64, ConfigError> {
    let v = value.unwrap_or(default);
    if v < min {
        return Err(invalid(
            at.0,
            at.1,
            at.2,
            &format!("must be at least {min}"),
        ));
    }
    Ok(v)
}

fn resolve(s: &Section, name: &str, path: &Path, base: &Path) -> Result<Policy, ConfigError> {
    let policy = Policy {
        upstream: None,
        probe_limit: ranged(s.probe_limit, 1, 0, (path, name, "probe_limit"))?,
        max_recipients: ranged(s.max_recipients, 5, 1, (path, name, "max_recipients"))?,
        max_bytes: ranged(s.max_bytes, 262_144, 1, (path, name, "max_bytes"))?,
        quarantine_dir: s.quarantine_dir.as_ref().map(|d| base.join(d)),
    };
    let Some(host) = s.host.clone().filter(|h| !h.trim().is_empty()) else {
        return Ok(policy);
    };
    let upstream = upstream(s, host, name, path, base)?;
    Ok(Policy {
        upstream: Some(Arc::new(upstream)),
        ..policy
    })
}

fn upstream(
    s: &Section,
    host: String,
    name: &str,
    path: &Path,
    base: &Path,
) -> Result<Upstream, ConfigError> {
    let tls = s.tls.unwrap_or(TlsMode::Starttls);
    let port = s
        .port
        .unwrap_or(if tls == TlsMode::Implicit { 465 } else { 25 });
    if port == 0 {
        return Err(invalid(path, name, "port", "must be 1–65535"));
    }
    let timeout = s.timeout_s.unwrap_or(15.0);
    let timeout = Duration::try_from_secs_f64(timeout)
        .ok()
        .filter(|t| !t.is_zero())
        .ok_or_else(|| {
            invalid(
                path,
                name,
                "timeout_s",
                "must be a positive number of seconds",
            )
        })?;
    let schedule = s
        .retry_schedule
        .clone()
        .unwrap_or_else(|| ["30s", "2m", "10m", "30m"].map(str::to_owned).to_vec());
    if schedule.is_empty() {
        return Err(invalid(
            path,
            name,
            "retry_schedule",
            "must name at least one delay",
        ));
    }
    let retry_schedule = schedule
        .iter()
        .map(|d| {
            parse_duration(d).ok_or_else(|| {
                invalid(
                    path,
                    name,
                    "retry_schedule",
                    &format!("{d:?} is not a duration such as \"30s\", \"2m\" or \"200ms\""),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (key, address) in [("sender", &s.sender), ("redirect_to", &s.redirect_to)] {
        if let Some(a) = address
            && !crate::message::sendable(a)
        {
            return Err(invalid(path, name, key, "not an address"));
        }
    }
    let tls_verify = s.tls_verify.unwrap_or(true);
    let tls_parameters = match tls {
        TlsMode::None => None,
        _ => Some(tls_parameters(s, &host, tls_verify, name, path, base)?),
    };
    Ok(Upstream {
        host,
        port,
        tls,
        require_tls: s.require_tls.unwrap_or(true),
        tls_verify,
        username: s.username.clone(),
        password: password(s, name, path, base)?,
        sender: s.sender.clone(),
        helo_name: s.helo_name.clone(),
        redirect_to: s.redirect_to.clone(),
        timeout,
        max_attempts: ranged(s.max_attempts, 5, 1, (path, name, "max_attempts"))?,
        retry_schedule,
        tls_parameters,
    })
}

fn tls_parameters(
    s: &Section,
    host: &str,
    verify: bool,
    name: &str,
    path: &Path,
    base: &Path,
) -> Result<TlsParameters, ConfigError> {
    let mut builder = TlsParameters::builder(host.to_owned())
        .dangerous_accept_invalid_certs(!verify)
        .dangerous_accept_invalid_hostnames(!verify);
    if let Some(ca) = &s.ca_file {
        let ca = base.join(ca);
        let pem = std::fs::read(&ca)
            .map_err(|e| invalid(path, name, "ca_file", &format!("{}: {e}", ca.display())))?;
        let cert = Certificate::from_pem(&pem)
            .map_err(|e| invalid(path, name, "ca_file", &format!("{}: {e}", ca.display())))?;
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build_rustls()
        .map_err(|e| invalid(path, name, "tls", &e.to_string()))
}

/// The password from the variable or the file the section names. The errors name where it
/// was looked for, never what was found.
fn password(
    s: &Section,
    name: &str,
    path: &Path,
    base: &Path,
) -> Result<Option<Secret>, ConfigError> {
    match (&s.password_env, &s.password_file) {
        (Some(_), Some(_)) => Err(invalid(
            path,
            name,
            "password_env",
            "set password_env or password_file, not both",
        )),
        (Some(var), None) => match std::env::var(var) {
            Ok(p) if !p.is_empty() => Ok(Some(Secret(p))),
            _ => Err(invalid(
                path,
                name,
                "password_env",
                &format!("the environment variable {var} is not set"),
            )),
        },
        (None, Some(file)) => {
            let file = base.join(file);
            let text = std::fs::read_to_string(&file).map_err(|e| {
                invalid(
                    path,
                    name,
                    "password_file",
                    &format!("{}: {e}", file.display()),
                )
            })?;
            // A trailing newline is an editor's, not the password's.
            let text = text.trim_end_matches(['\r', '\n']);
            if text.is_empty() {
                return Err(invalid(
                    path,
                    name,
                    "password_file",
                    &format!("{} is empty", file.display()),
                ));
            }
            Ok(Some(Secret(text.to_owned())))
        }
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RelayConfig, ConfigError> {
        RelayConfig::parse(text, Path::new("/etc/decnet/probe-relay.toml"))
    }

    #[test]
    fn defaults_apply_and_a_decoy_table_overrides_key_by_key() {
        let config = parse(
            r#"
            [defaults]
            host = "smtp.example.net"
            probe_limit = 2

            [decky.decoy-02]
            port = 2525
            tls = "none"
            retry_schedule = ["200ms", "1s"]
            "#,
        )
        .unwrap();
        let other = config.policy("decoy-01");
        let up = other.upstream.as_ref().unwrap();
        assert_eq!(
            (up.host.as_str(), up.port, up.tls),
            ("smtp.example.net", 25, TlsMode::Starttls)
        );
        assert!(up.require_tls && up.tls_verify);
        assert_eq!(up.timeout, Duration::from_secs(15));
        assert_eq!(up.max_attempts, 5);
        assert_eq!(up.retry_delay(1), Duration::from_secs(30));
        assert_eq!(up.retry_delay(9), Duration::from_secs(1800));
        assert_eq!(
            (other.probe_limit, other.max_recipients, other.max_bytes),
            (2, 5, 262_144)
        );

        let two = config.policy("decoy-02");
        let up = two.upstream.as_ref().unwrap();
        assert_eq!(
            (up.host.as_str(), up.port, up.tls),
            ("smtp.example.net", 2525, TlsMode::None)
        );
        assert_eq!(up.retry_delay(1), Duration::from_millis(200));
        assert_eq!(up.retry_delay(5), Duration::from_secs(1));
        assert_eq!(two.probe_limit, 2);
        assert_eq!(config.deckies().collect::<Vec<_>>(), ["decoy-02"]);
    }

    #[test]
    fn implicit_tls_defaults_to_port_465_and_no_host_means_no_upstream() {
        let config = parse("[decky.d1]\nhost = \"mx\"\ntls = \"implicit\"\n").unwrap();
        assert_eq!(config.policy("d1").upstream.as_ref().unwrap().port, 465);
        assert!(config.policy("d2").upstream.is_none());
        assert!(parse("").unwrap().policy("x").upstream.is_none());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_naming_file_and_key() {
        let e = parse("[defaults]\nhots = \"mx\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/etc/decnet/probe-relay.toml: "), "{e}");
        assert!(e.contains("unknown field `hots`"), "{e}");
        let e = parse("[decky.d1]\nhost = \"mx\"\nsmtp_password = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `smtp_password`"), "{e}");
        let e = parse("[extra]\n").unwrap_err().to_string();
        assert!(e.contains("unknown field `extra`"), "{e}");
        let e = parse("[defaults]\ntls = \"ssl\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown variant `ssl`"), "{e}");

        let cases = [
            (
                "[defaults]\nhost = \"mx\"\nretry_schedule = [\"soon\"]\n",
                "[defaults] retry_schedule: \"soon\" is not a duration",
            ),
            (
                "[defaults]\nhost = \"mx\"\nretry_schedule = []\n",
                "[defaults] retry_schedule: must name at least one delay",
            ),
            (
                "[defaults]\nhost = \"mx\"\ntimeout_s = 0\n",
                "[defaults] timeout_s: must be a positive number of seconds",
            ),
            (
                "[defaults]\nmax_recipients = 0\n",
                "[defaults] max_recipients: must be at least 1",
            ),
            ("[decky.Bad]\n", "[decky.Bad] decky: not a decoy name"),
            (
                "[decky.d1]\nhost = \"mx\"\nsender = \"a b@c\"\n",
                "[decky.d1] sender: not an address",
            ),
            (
                "[decky.d1]\nhost = \"mx\"\npassword_env = \"A\"\npassword_file = \"p\"\n",
                "[decky.d1] password_env: set password_env or password_file, not both",
            ),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert_eq!(
                e.split_once(": ").unwrap().0,
                "/etc/decnet/probe-relay.toml"
            );
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn the_password_comes_from_its_file_and_never_prints() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "hunter2-sekrit\n").unwrap();
        let path = dir.path().join("relay.toml");
        let text = "[defaults]\nhost = \"mx\"\nusername = \"u\"\npassword_file = \"pw\"\n";
        let config = RelayConfig::parse(text, &path).unwrap();
        let up = config.policy("d").upstream.clone().unwrap();
        assert_eq!(up.credentials().unwrap().1.expose(), "hunter2-sekrit");
        let shown = format!("{config:?} {up:?} {}", up.password.as_ref().unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("Secret(***)"));

        let missing = "[defaults]\nhost = \"mx\"\npassword_env = \"DECNET_TEST_NO_SUCH_VAR_9\"\n";
        let e = RelayConfig::parse(missing, &path).unwrap_err().to_string();
        assert!(e.contains("DECNET_TEST_NO_SUCH_VAR_9 is not set"), "{e}");
    }

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("200ms"), Some(Duration::from_millis(200)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("30"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("3d"), None);
    }
}
