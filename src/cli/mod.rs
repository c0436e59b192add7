//! Command-line definitions and dispatch.

mod api;
mod canary;
mod intel;
mod probe_relay;
mod publish;
mod rule_state;
mod rules;
mod schema;
mod service;
mod smtp;
mod tag;
mod tail;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// The intelligence plane of a deception network: ATT&CK tags from attacker activity.
#[derive(Debug, Parser)]
#[command(name = "decnet", version, about)]
pub(crate) struct Cli {
    /// Log format on standard error.
    #[arg(
        long,
        global = true,
        env = "DECNET_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub(crate) log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Tag JSONL events offline: tags as JSONL on stdout, a summary on stderr.
    Tag(tag::TagArgs),
    /// Validate, list, test and map the rule pack.
    #[command(subcommand)]
    Rules(rules::RulesCommand),
    /// The tagger service: source events from JetStream in, tags in the database out.
    Tagger(service::TaggerArgs),
    /// The canary beacon (no subcommand), and its tokens: mint, revoke, list, triggers.
    Canary(canary::CanaryArgs),
    /// The rule-store master: watches the rules directory, keeps rule definitions and states,
    /// publishes them on the RULES stream, answers rule-state requests.
    Rulestore(service::RulestoreArgs),
    /// The SMTP decoy: an open relay or credential harvester that keeps every message in
    /// quarantine and publishes what it saw; it never delivers mail.
    Smtp(smtp::SmtpArgs),
    /// Delivers the first few probes per attacker and decoy through the operator's upstream
    /// SMTP server, counted in the database.
    ProbeRelay(probe_relay::ProbeRelayArgs),
    /// The enrich worker: threat-intel verdicts (AbuseIPDB, GreyNoise, Feodo, ThreatFox) for
    /// every new attacker, within provider quotas, published for the intel rules.
    Intel(intel::IntelArgs),
    /// The REST API: technique rollups, tags, Navigator layers and rule state over HTTP
    /// (JWT bearer tokens; DECNET_JWT_SECRET or DECNET_JWT_SECRET_FILE is required).
    Api(api::ApiArgs),
    /// Bearer tokens for the REST API.
    #[command(subcommand)]
    Token(api::TokenCommand),
    /// Every available service in one process on embedded defaults (SQLite under the data
    /// directory, NATS at the URL or a nats-server child it starts).
    Up(service::UpArgs),
    /// Publish bus messages (JSONL, the bus-message form of `decnet tag`) to JetStream.
    Publish(publish::PublishArgs),
    /// Live view of any subject: pretty lines, or `--json` for piping.
    Tail(tail::TailArgs),
    /// Print the JSON Schema of a subject's payload.
    Schema(schema::SchemaArgs),
}

/// The rules directory option shared by the offline tools.
#[derive(Debug, clap::Args)]
pub(crate) struct RulesDir {
    /// Directory of rule files (R0001.yaml …).
    #[arg(
        long = "rules-dir",
        env = "DECNET_RULES_DIR",
        default_value = "rules/ttp"
    )]
    pub(crate) path: PathBuf,
}

pub(crate) fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DECNET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub(crate) fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Tag(args) => tag::run(&args),
        Command::Rules(command) => rules::run(command),
        Command::Tagger(args) => service::tagger(&args),
        Command::Rulestore(args) => service::rulestore(&args),
        Command::Canary(args) => canary::run(&args),
        Command::Smtp(args) => smtp::run(&args),
        Command::ProbeRelay(args) => probe_relay::run(&args),
        Command::Intel(args) => intel::run(&args),
        Command::Api(args) => api::run(&args),
        Command::Token(api::TokenCommand::Issue(args)) => api::issue(&args),
        Command::Up(args) => service::up(&args),
        Command::Publish(args) => publish::run(&args),
        Command::Tail(args) => tail::run(&args),
        Command::Schema(args) => schema::run(&args),
    }
}

/// Who a CLI change is recorded as when `--as` is not given: `<os user>@<host>`.
pub(crate) fn os_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    format!("{user}@{host}")
}

/// Exit status for arguments or inputs the command cannot use at all.
pub(crate) const EXIT_UNUSABLE: u8 = 2;
