//! Credential and identity lifters (RULES.md §7.1): brute force, guessing, spraying,
//! stuffing, valid and default accounts.
//!
//! They read the per-session login aggregate of EVENTS.md §5.3 (`auth_attempt`), the
//! clusterer's identities and the credential-reuse records. The one secret they ever see is
//! the password of a successful login, which R0006 compares and never copies.

use serde_json::Value;

use super::{Decision, Fields, Lift, Misfits, Params, Spec, fields};
use crate::event::EvalEvent;
use crate::evidence::EvidenceKey;
use crate::kind::SourceKind;
use crate::yaml;

pub(super) const SPECS: &[Spec] = &[
    Spec {
        name: "credential_auth_brute_generic",
        kinds: &[SourceKind::AuthAttempt],
        build: |p| {
            let min = p.int("fail_threshold", 5, 1, 1_000_000);
            Some(Box::new(AtLeast {
                field: "fail_count",
                min,
                non_empty: None,
            }))
        },
    },
    Spec {
        name: "credential_password_guessing",
        kinds: &[SourceKind::AuthAttempt],
        build: |p| {
            let min = p.int("pw_threshold", 5, 1, 1_000_000);
            Some(Box::new(AtLeast {
                field: "password_count",
                min,
                non_empty: Some("username"),
            }))
        },
    },
    Spec {
        name: "identity_password_spraying",
        kinds: &[SourceKind::Identity],
        build: |p| {
            let min = p.int("account_threshold", 3, 1, 1_000_000);
            Some(Box::new(AtLeast {
                field: "account_count",
                min,
                non_empty: Some("shared_password_hash"),
            }))
        },
    },
    Spec {
        name: "credential_reuse",
        kinds: &[SourceKind::Credential],
        build: |p| {
            let min = p.int("min_targets", 2, 1, 1_000_000);
            Some(Box::new(AtLeast {
                field: "target_count",
                min,
                non_empty: Some("credential_hash"),
            }))
        },
    },
    Spec {
        name: "credential_valid_account_use",
        kinds: &[SourceKind::AuthAttempt],
        build: |p| {
            let require_prior_brute = p.bool("require_prior_brute", true);
            Some(Box::new(ValidAccount {
                require_prior_brute,
            }))
        },
    },
    Spec {
        name: "credential_default_credentials",
        kinds: &[SourceKind::AuthAttempt],
        build: |p| default_credentials(p).map(|l| Box::new(l) as Box<dyn Lift>),
    },
];

/// Fires when an integer field reaches a threshold (and, optionally, a string field is
/// non-empty): the shape of R0001–R0004.
#[derive(Debug)]
struct AtLeast {
    field: &'static str,
    min: i64,
    non_empty: Option<&'static str>,
}

impl Lift for AtLeast {
    fn lift(&self, event: &EvalEvent, misfits: &Misfits) -> Option<Decision> {
        let f = fields(event, misfits);
        if let Some(key) = self.non_empty
            && f.str(key).is_none_or(|s| s.trim().is_empty())
        {
            return None;
        }
        let fired = f.int(self.field).is_some_and(|n| n >= self.min);
        fired.then(Decision::default)
    }
}

fn succeeded(f: Fields<'_>) -> bool {
    f.str("result") == Some("success")
}

/// R0005: a successful login, after brute force when so configured.
#[derive(Debug)]
struct ValidAccount {
    require_prior_brute: bool,
}

impl Lift for ValidAccount {
    fn lift(&self, event: &EvalEvent, misfits: &Misfits) -> Option<Decision> {
        let f = fields(event, misfits);
        if !succeeded(f) {
            return None;
        }
        let brute = f.bool("prior_brute").unwrap_or(false);
        (brute || !self.require_prior_brute).then(Decision::default)
    }
}

/// One default username/password pair of R0006.
#[derive(Debug)]
struct Pair {
    id: String,
    username: String,
    password: String,
}

/// R0006: a successful login with a listed default pair, compared exactly.
#[derive(Debug)]
struct DefaultCredentials {
    pairs: Vec<Pair>,
}

const DEFAULT_PAIRS: [(&str, &str, &str); 5] = [
    ("D01", "root", "root"),
    ("D02", "admin", "admin"),
    ("D03", "admin", "password"),
    ("D04", "root", ""),
    ("D05", "pi", "raspberry"),
];

fn default_credentials(p: &mut Params<'_>) -> Option<DefaultCredentials> {
    let Some(node) = p.node("pairs") else {
        let pairs = DEFAULT_PAIRS
            .iter()
            .map(|(id, u, pw)| Pair {
                id: (*id).into(),
                username: (*u).into(),
                password: (*pw).into(),
            })
            .collect();
        return Some(DefaultCredentials { pairs });
    };
    let yaml::Value::Seq(items) = &node.value else {
        p.error(
            node.pos,
            "pairs",
            "expected a list of {id, username, password}",
        );
        return None;
    };
    if items.is_empty() {
        p.error(node.pos, "pairs", "must not be empty");
        return None;
    }
    let mut pairs: Vec<Pair> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("pairs[{i}]");
        let yaml::Value::Map(entries) = &item.value else {
            p.error(item.pos, &path, "expected {id, username, password}");
            continue;
        };
        let get = |key: &str| -> Option<String> {
            entries
                .iter()
                .find(|(k, _)| k.as_scalar() == Some(key))
                .and_then(|(_, v)| match &v.value {
                    // An unquoted empty value is YAML null; a password may be the empty
                    // string only when written as "".
                    yaml::Value::Scalar(s, quoted) if *quoted || !yaml::is_null(s) => {
                        Some(s.clone())
                    }
                    _ => None,
                })
        };
        let (id, username, password) = (get("id"), get("username"), get("password"));
        for (k, _) in entries {
            let name = k.as_scalar().unwrap_or_default();
            if !["id", "username", "password"].contains(&name) {
                p.error(k.pos, &format!("{path}.{name}"), "unknown key");
            }
        }
        let (Some(id), Some(username), Some(password)) = (id, username, password) else {
            p.error(
                item.pos,
                &path,
                "needs id, username and password (an empty password is written \"\")",
            );
            continue;
        };
        if pairs.iter().any(|q| q.id == id) {
            p.error(
                item.pos,
                &format!("{path}.id"),
                format!("{id} is listed twice"),
            );
            continue;
        }
        pairs.push(Pair {
            id,
            username,
            password,
        });
    }
    Some(DefaultCredentials { pairs })
}

impl Lift for DefaultCredentials {
    fn lift(&self, event: &EvalEvent, misfits: &Misfits) -> Option<Decision> {
        let f = fields(event, misfits);
        if !succeeded(f) {
            return None;
        }
        let (Some(username), Some(password)) = (f.str("username"), f.str("password")) else {
            return None;
        };
        let pair = self
            .pairs
            .iter()
            .find(|p| p.username == username && p.password == password);
        pair.map(|pair| {
            Decision::all(vec![(
                EvidenceKey::DefaultPairId,
                Value::from(pair.id.as_str()),
            )])
        })
    }
}
