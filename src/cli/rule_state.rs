//! `decnet rules disable|clip|enable`: an operator's rule state, changed through the rule
//! store's control subjects (EVENTS.md §7), so the answer is what the store committed.
//!
//! The store checks every request itself and words the refusal; this command only shapes the
//! request and prints the answer: the committed state as JSON on stdout, or the store's
//! message on stderr.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use decnet_bus::control::RequestError;
use decnet_proto::control::{
    REPLY_TIMEOUT, RULESTORE_STATE_CLEAR, RULESTORE_STATE_SET, StateClearRequest, StateSetRequest,
};

use super::EXIT_UNUSABLE;
use super::tag::report;

/// Exit status when the rule store refused the request.
const EXIT_REFUSED: u8 = 1;
/// Exit status when no rule store answered.
const EXIT_UNAVAILABLE: u8 = 3;

/// Options of every state command.
#[derive(Debug, clap::Args)]
pub(crate) struct StateTarget {
    /// The rule (`R0016`).
    rule: String,
    /// Who makes the change (recorded as `set_by`); default `<os user>@<host>`.
    #[arg(long = "as", value_name = "NAME")]
    set_by: Option<String>,
    /// NATS server the rule store answers on.
    #[arg(long, env = "DECNET_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
}

/// How long a state lasts.
#[derive(Debug, clap::Args)]
pub(crate) struct Lifetime {
    /// Why (required; at most 500 characters).
    #[arg(long)]
    reason: Option<String>,
    /// Revert to enabled after this long: `90s`, `30m`, `4h`, `2d`, `1h30m`.
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration, conflicts_with = "until")]
    for_: Option<Duration>,
    /// Revert to enabled at this RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
}

/// `decnet rules disable`.
#[derive(Debug, clap::Args)]
pub(crate) struct DisableArgs {
    #[command(flatten)]
    target: StateTarget,
    #[command(flatten)]
    lifetime: Lifetime,
}

/// `decnet rules clip`.
#[derive(Debug, clap::Args)]
pub(crate) struct ClipArgs {
    #[command(flatten)]
    target: StateTarget,
    /// The confidence ceiling in [0, 1]; below 0.3 every fire is suppressed (a shadow run).
    #[arg(long, visible_alias = "max", value_name = "C")]
    ceiling: Option<f64>,
    #[command(flatten)]
    lifetime: Lifetime,
}

/// `decnet rules enable`.
#[derive(Debug, clap::Args)]
pub(crate) struct EnableArgs {
    #[command(flatten)]
    target: StateTarget,
}

/// `90s`, `30m`, `4h`, `2d`, `1h30m`: a number and a unit, repeated.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("'{text}' is not a duration like 90s, 30m, 4h, 2d or 1h30m");
    let mut total = 0u64;
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

fn expires_at(lifetime: &Lifetime, now: DateTime<Utc>) -> Option<String> {
    match (&lifetime.for_, &lifetime.until) {
        (Some(d), _) => chrono::TimeDelta::from_std(*d)
            .ok()
            .map(|d| (now + d).to_rfc3339()),
        (None, until) => until.clone(),
    }
}

pub(crate) fn disable(args: &DisableArgs) -> ExitCode {
    let request = StateSetRequest {
        rule_id: args.target.rule.clone(),
        state: "disabled".to_owned(),
        confidence_max: None,
        expires_at: expires_at(&args.lifetime, Utc::now()),
        reason: args.lifetime.reason.clone(),
        set_by: args.target.set_by.clone().unwrap_or_else(super::os_actor),
    };
    send("disable", &args.target, RULESTORE_STATE_SET, &request)
}

pub(crate) fn clip(args: &ClipArgs) -> ExitCode {
    let request = StateSetRequest {
        rule_id: args.target.rule.clone(),
        state: "clipped".to_owned(),
        confidence_max: args.ceiling,
        expires_at: expires_at(&args.lifetime, Utc::now()),
        reason: args.lifetime.reason.clone(),
        set_by: args.target.set_by.clone().unwrap_or_else(super::os_actor),
    };
    send("clip", &args.target, RULESTORE_STATE_SET, &request)
}

pub(crate) fn enable(args: &EnableArgs) -> ExitCode {
    let request = StateClearRequest {
        rule_id: args.target.rule.clone(),
        set_by: args.target.set_by.clone().unwrap_or_else(super::os_actor),
    };
    send("enable", &args.target, RULESTORE_STATE_CLEAR, &request)
}

/// Send one request and print the answer.
fn send(
    verb: &str,
    target: &StateTarget,
    subject: &'static str,
    body: &impl serde::Serialize,
) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    let answer = runtime.block_on(decnet_bus::control::request(
        &target.nats_url,
        subject,
        body,
        REPLY_TIMEOUT,
    ));
    match answer {
        Ok(state) => {
            let mut out = std::io::stdout().lock();
            let text = serde_json::to_string_pretty(&state).expect("JSON prints");
            match writeln!(out, "{text}") {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::from(EXIT_UNUSABLE),
            }
        }
        Err(e) => {
            let (message, code) = match &e {
                RequestError::Unavailable { .. } => {
                    (format!("rule store unavailable: {e}"), EXIT_UNAVAILABLE)
                }
                RequestError::Unreachable { .. } => (e.to_string(), EXIT_UNAVAILABLE),
                RequestError::Refused { code, .. } if code == "503" => {
                    (e.to_string(), EXIT_UNAVAILABLE)
                }
                RequestError::Refused { .. } => (e.to_string(), EXIT_REFUSED),
                RequestError::NotJson(_) => (e.to_string(), EXIT_UNUSABLE),
            };
            report(&format!("decnet rules {verb}: {message}"));
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_operators_write_them() {
        assert_eq!(parse_duration("4h"), Ok(Duration::from_secs(4 * 3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        for bad in ["", "4", "h", "4x", "0s", "-1h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
