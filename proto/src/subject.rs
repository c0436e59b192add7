//! Subject syntax (EVENTS.md §2.6): matching, and the builders of every subject with a
//! variable token, which refuse a token outside its alphabet rather than mangle it.

use std::fmt;

use uuid::Uuid;

/// A variable token outside its alphabet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    /// Which token: `technique`, `rule_id`, `service`.
    pub token: &'static str,
    /// The refused value.
    pub value: String,
    /// The alphabet it must come from.
    pub expected: &'static str,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} token {:?} is not {}",
            self.token, self.value, self.expected
        )
    }
}

impl std::error::Error for TokenError {}

/// NATS subject matching: `*` one token, `>` one or more trailing tokens.
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for p in pattern.split('.') {
        match (p, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (p, Some(s)) if p == s => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

/// The services that own a dead-letter subject (EVENTS.md §2.5).
pub const DLQ_SERVICES: [&str; 7] = [
    "rulestore",
    "tagger",
    "intel",
    "canary",
    "smtp",
    "probe-relay",
    "api",
];

/// `decnet.dlq.<service>`.
pub fn dlq(service: &str) -> Result<String, TokenError> {
    if DLQ_SERVICES.contains(&service) {
        Ok(format!("decnet.dlq.{service}"))
    } else {
        Err(TokenError {
            token: "service",
            value: service.to_owned(),
            expected: "one of rulestore, tagger, intel, canary, smtp, probe-relay, api",
        })
    }
}

/// Whether `id` is a parent technique id, `T[0-9]{4}`.
pub fn is_technique(id: &str) -> bool {
    id.len() == 5 && id.starts_with('T') && id[1..].bytes().all(|b| b.is_ascii_digit())
}

/// Whether `id` is a rule id, `R[0-9]{4}`.
pub fn is_rule_id(id: &str) -> bool {
    id.len() == 5 && id.starts_with('R') && id[1..].bytes().all(|b| b.is_ascii_digit())
}

/// `ttp.rule.fired.<technique>`; a sub-technique id (with its dot) is refused.
pub fn rule_fired(technique: &str) -> Result<String, TokenError> {
    if is_technique(technique) {
        Ok(format!("ttp.rule.fired.{technique}"))
    } else {
        Err(TokenError {
            token: "technique",
            value: technique.to_owned(),
            expected: "a parent technique id T[0-9]{4}",
        })
    }
}

fn rule_token(rule_id: &str) -> Result<&str, TokenError> {
    if is_rule_id(rule_id) {
        Ok(rule_id)
    } else {
        Err(TokenError {
            token: "rule_id",
            value: rule_id.to_owned(),
            expected: "a rule id R[0-9]{4}",
        })
    }
}

/// `ttp.rule.reloaded.<rule_id>`.
pub fn rule_reloaded(rule_id: &str) -> Result<String, TokenError> {
    Ok(format!("ttp.rule.reloaded.{}", rule_token(rule_id)?))
}

/// `ttp.rule.state.<rule_id>`.
pub fn rule_state(rule_id: &str) -> Result<String, TokenError> {
    Ok(format!("ttp.rule.state.{}", rule_token(rule_id)?))
}

/// `canary.<token>.triggered`: the token's uuid, never its slug.
pub fn canary_triggered(token: Uuid) -> String {
    format!("canary.{token}.triggered")
}

/// `canary.<token>.revoked`.
pub fn canary_revoked(token: Uuid) -> String {
    format!("canary.{token}.revoked")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_nats_does() {
        assert!(matches("canary.*.triggered", "canary.5d1c.triggered"));
        assert!(!matches("canary.*.triggered", "canary.triggered"));
        assert!(matches("ttp.rule.fired.>", "ttp.rule.fired.T1110"));
        assert!(!matches("ttp.rule.fired.>", "ttp.rule.fired"));
        assert!(matches("ttp.tagged", "ttp.tagged"));
        assert!(!matches("ttp.tagged", "ttp.tagged.more"));
    }

    #[test]
    fn builders_refuse_tokens_outside_their_alphabet() {
        assert_eq!(rule_fired("T1110").unwrap(), "ttp.rule.fired.T1110");
        assert_eq!(
            rule_fired("T1110.003").unwrap_err().to_string(),
            "technique token \"T1110.003\" is not a parent technique id T[0-9]{4}"
        );
        assert!(rule_fired("t1110").is_err());
        assert_eq!(rule_state("R0042").unwrap(), "ttp.rule.state.R0042");
        assert!(rule_reloaded("R42").is_err());
        assert!(rule_reloaded("R0042.x").is_err());
        assert_eq!(dlq("tagger").unwrap(), "decnet.dlq.tagger");
        assert!(dlq("tagger.x").is_err());
        let token: Uuid = "5d1c0000-0000-4000-8000-00000000009a".parse().unwrap();
        assert_eq!(
            canary_triggered(token),
            "canary.5d1c0000-0000-4000-8000-00000000009a.triggered"
        );
    }
}
