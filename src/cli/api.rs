//! `decnet api` (the REST API, API.md) and `decnet token issue` (a bearer token signed with
//! the API's key), plus the development key `decnet up` uses when no key is configured.
//!
//! The key is read from `DECNET_JWT_SECRET` or the file `DECNET_JWT_SECRET_FILE` names, never
//! from a flag, so it shows in no process list; `decnet api` refuses to start without one.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use decnet_api::canary::CanaryView;
use decnet_api::{ApiConfig, Role, Secret, Verifier};
use decnet_ops::Ops;
use tokio::sync::watch;

use super::EXIT_UNUSABLE;
use super::service::{Service, Shared, run_services};
use super::tag::report;

const SECRET_VAR: &str = "DECNET_JWT_SECRET";
const SECRET_FILE_VAR: &str = "DECNET_JWT_SECRET_FILE";

/// Options of the API's listener and tokens.
#[derive(Debug, clap::Args)]
pub(crate) struct ApiOptions {
    /// Where the API listens (`--listen` too, as ARCHITECTURE.md names it for `decnet api`).
    #[arg(
        long = "api-listen",
        alias = "listen",
        env = "DECNET_API_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub(crate) listen: SocketAddr,
    /// The `iss` every token must carry; unset, `iss` is not checked.
    #[arg(long = "jwt-issuer", env = "DECNET_JWT_ISSUER")]
    pub(crate) issuer: Option<String>,
}

/// `decnet api`.
#[derive(Debug, clap::Args)]
pub(crate) struct ApiArgs {
    #[command(flatten)]
    shared: Shared,
    #[command(flatten)]
    api: ApiOptions,
    /// Base of the canary beacon's URLs, shown to admins in token views.
    #[arg(
        long = "canary-http-base",
        env = "DECNET_CANARY_HTTP_BASE",
        default_value = "http://localhost:8088"
    )]
    canary_http_base: String,
    /// Zone of the canary DNS channel, shown to admins in DNS token views.
    #[arg(long = "canary-dns-zone", env = "DECNET_CANARY_DNS_ZONE")]
    canary_dns_zone: Option<String>,
}

/// `decnet token`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum TokenCommand {
    /// Print a bearer token signed with the API's key (DECNET_JWT_SECRET or
    /// DECNET_JWT_SECRET_FILE).
    Issue(IssueArgs),
}

/// `decnet token issue`.
#[derive(Debug, clap::Args)]
pub(crate) struct IssueArgs {
    /// The token's subject: recorded as `set_by` of the changes it makes.
    #[arg(long)]
    sub: String,
    /// `viewer` (reads) or `admin` (reads and state changes).
    #[arg(long, value_parser = ["viewer", "admin"])]
    role: String,
    /// How long it is valid: a number with `s`, `m`, `h` or `d` (`8h`).
    #[arg(long, default_value = "8h")]
    ttl: String,
    /// The `iss` claim (the API checks it when DECNET_JWT_ISSUER is set).
    #[arg(long, env = "DECNET_JWT_ISSUER")]
    issuer: Option<String>,
}

/// The key from the environment, `None` when neither variable is set.
fn configured_secret() -> Result<Option<Secret>, String> {
    if let Some(v) = std::env::var_os(SECRET_VAR).filter(|v| !v.is_empty()) {
        let bytes = v.into_encoded_bytes();
        return Secret::new(bytes, SECRET_VAR)
            .map(Some)
            .map_err(|e| e.to_string());
    }
    if let Some(path) = std::env::var_os(SECRET_FILE_VAR).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let trimmed = String::from_utf8(bytes.clone())
            .map(|s| s.trim_end_matches(['\n', '\r']).as_bytes().to_vec())
            .unwrap_or(bytes);
        return Secret::new(trimmed, &path.display().to_string())
            .map(Some)
            .map_err(|e| e.to_string());
    }
    Ok(None)
}

fn required_secret() -> Result<Secret, String> {
    configured_secret()?.ok_or_else(|| format!("{SECRET_VAR} or {SECRET_FILE_VAR} must be set"))
}

/// `8h`, `30m`, `2d`, `90s` in seconds.
fn parse_ttl(text: &str) -> Result<i64, String> {
    let (n, unit) = text.split_at(text.len().saturating_sub(1));
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "--ttl {text:?}: expected a number and s, m, h or d"
            ));
        }
    };
    match n.parse::<i64>() {
        Ok(n) if n > 0 => Ok(n * scale),
        _ => Err(format!(
            "--ttl {text:?}: expected a positive number and s, m, h or d"
        )),
    }
}

pub(crate) fn issue(args: &IssueArgs) -> ExitCode {
    let made = required_secret().and_then(|secret| {
        let ttl = parse_ttl(&args.ttl)?;
        let role: Role = args.role.parse()?;
        let now = chrono::Utc::now().timestamp();
        Ok(decnet_api::auth::issue(
            &secret,
            &args.sub,
            role,
            now,
            ttl,
            args.issuer.as_deref(),
        ))
    });
    match made {
        Ok(token) => {
            let _ = writeln!(std::io::stdout(), "{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            report(&format!("decnet token issue: {e}"));
            ExitCode::from(EXIT_UNUSABLE)
        }
    }
}

fn config(shared: &Shared, api: &ApiOptions, secret: Secret, canary: CanaryView) -> ApiConfig {
    let mut config = ApiConfig::new(
        api.listen,
        &shared.nats_url,
        &shared.database_url(),
        Verifier::new(secret, api.issuer.clone()),
    );
    config.canary = canary;
    config
}

pub(crate) fn run(args: &ApiArgs) -> ExitCode {
    let secret = match required_secret() {
        Ok(s) => s,
        Err(e) => {
            report(&format!("decnet api: {e}"));
            return ExitCode::from(EXIT_UNUSABLE);
        }
    };
    let canary = CanaryView {
        http_base: Some(args.canary_http_base.trim_end_matches('/').to_owned()),
        dns_zone: args.canary_dns_zone.clone().filter(|z| !z.is_empty()),
    };
    let config = config(&args.shared, &args.api, secret, canary);
    // The API serves /healthz, /readyz and /metrics on its own listener (ARCHITECTURE.md), so
    // the generic ops listener is bound to an ephemeral loopback port nobody needs to know.
    run_services(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        "an ephemeral loopback port",
        |ops, shutdown| vec![service(config, ops, shutdown)],
    )
}

/// The service as `run_services` runs it, here or under `decnet up`.
pub(crate) fn service<'a>(
    config: ApiConfig,
    ops: Arc<Ops>,
    shutdown: watch::Receiver<bool>,
) -> Service<'a> {
    (
        "api",
        Box::pin(async move {
            decnet_api::run_with(&config, &ops, shutdown)
                .await
                .map_err(|e| e.to_string())
        }),
    )
}

/// For `decnet up`: the configured key, or a development key kept at
/// `<data>/api/dev-jwt.key` (mode 0600, reused on later starts) with one admin token printed;
/// token views show the in-process canary service's callbacks.
pub(crate) fn up_config(
    shared: &Shared,
    api: &ApiOptions,
    canary: &decnet_canary::CanaryConfig,
) -> Result<ApiConfig, String> {
    let view = CanaryView {
        http_base: Some(canary.http_base.clone()),
        dns_zone: canary.dns_zone.clone(),
    };
    if let Some(secret) = configured_secret()? {
        return Ok(config(shared, api, secret, view));
    }
    let path = shared.data_dir.join("api").join("dev-jwt.key");
    let secret = dev_key(&path)?;
    let token = decnet_api::auth::issue(
        &secret,
        "decnet-up",
        Role::Admin,
        chrono::Utc::now().timestamp(),
        8 * 3600,
        api.issuer.as_deref(),
    );
    tracing::warn!(
        path = %path.display(),
        "{SECRET_VAR} is not set: the API uses a development key"
    );
    report(&format!(
        "decnet up: API on http://{} with a development key ({}); an admin token for 8 h:\n{token}",
        api.listen,
        path.display()
    ));
    Ok(config(shared, api, secret, view))
}

fn dev_key(path: &Path) -> Result<Secret, String> {
    let name = path.display().to_string();
    if let Ok(bytes) = std::fs::read(path) {
        return Secret::new(bytes, &name).map_err(|e| e.to_string());
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut key = [0u8; 32];
    getrandom_key(&mut key)?;
    let text = key.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| format!("{name}: {e}"))?;
    file.write_all(text.as_bytes())
        .map_err(|e| format!("{name}: {e}"))?;
    Secret::new(text.into_bytes(), &name).map_err(|e| e.to_string())
}

/// 32 bytes from the OS, read from `/dev/urandom` (the binary has no CSPRNG crate of its own).
fn getrandom_key(key: &mut [u8; 32]) -> Result<(), String> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(key))
        .map_err(|e| format!("reading /dev/urandom: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_read_with_their_unit() {
        assert_eq!(parse_ttl("8h"), Ok(28_800));
        assert_eq!(parse_ttl("90s"), Ok(90));
        assert_eq!(parse_ttl("2d"), Ok(172_800));
        assert!(parse_ttl("8").is_err());
        assert!(parse_ttl("-1h").is_err());
        assert!(parse_ttl("h").is_err());
    }
}
