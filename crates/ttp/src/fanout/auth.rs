//! The login-attempt aggregate of a session (EVENTS.md §5.3): the auth event the credential
//! rules read, built from the attempts the decoy recorded.

use serde_json::{Map, Value, json};

use super::opt_str;
use crate::event::parse_ts;

/// The per-session aggregate of login attempts (EVENTS.md §5.3). Returns the payload (none
/// when no attempt was usable) and the number of attempts skipped.
pub(super) fn auth_aggregate(
    attempts: &[Value],
    session_service: &str,
) -> (Option<Map<String, Value>>, usize) {
    struct Attempt<'a> {
        username: &'a str,
        password: &'a str,
        success: bool,
        service: &'a str,
        ts: Option<chrono::DateTime<chrono::Utc>>,
        ts_text: Option<&'a str>,
    }
    let mut list: Vec<Attempt<'_>> = Vec::new();
    for item in attempts {
        let Some(item) = item.as_object() else {
            continue;
        };
        let Some(username) = opt_str(item, "username") else {
            continue;
        };
        list.push(Attempt {
            username,
            password: opt_str(item, "password").unwrap_or_default(),
            success: opt_str(item, "result") == Some("success"),
            service: opt_str(item, "service").unwrap_or(session_service),
            ts: opt_str(item, "ts").and_then(parse_ts),
            ts_text: opt_str(item, "ts"),
        });
    }
    let skipped = attempts.len() - list.len();
    if list.is_empty() {
        return (None, skipped);
    }
    if list.iter().all(|a| a.ts.is_some()) {
        list.sort_by_key(|a| a.ts);
    }

    let mut usernames: Vec<&str> = Vec::new();
    let mut passwords_by_user: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut all_passwords: Vec<&str> = Vec::new();
    let mut services: Vec<(&str, usize)> = Vec::new();
    for a in &list {
        if !usernames.contains(&a.username) {
            usernames.push(a.username);
            passwords_by_user.push((a.username, Vec::new()));
        }
        let entry = passwords_by_user
            .iter_mut()
            .find(|(u, _)| *u == a.username)
            .expect("pushed above");
        if !entry.1.contains(&a.password) {
            entry.1.push(a.password);
        }
        if !all_passwords.contains(&a.password) {
            all_passwords.push(a.password);
        }
        match services.iter_mut().find(|(s, _)| *s == a.service) {
            Some(slot) => slot.1 += 1,
            None => services.push((a.service, 1)),
        }
    }
    let top = services.iter().map(|(_, n)| *n).max().unwrap_or(0);
    let tied: Vec<&str> = services
        .iter()
        .filter(|(_, n)| *n == top)
        .map(|(s, _)| *s)
        .collect();
    let service = if tied.len() == 1 {
        tied[0]
    } else if tied.contains(&session_service) {
        session_service
    } else {
        tied[0]
    };

    let first_success = list.iter().position(|a| a.success);
    let success_count = list.iter().filter(|a| a.success).count();
    let username = match first_success {
        Some(i) => list[i].username,
        // The most distinct passwords; the first user tried wins a tie.
        None => {
            passwords_by_user
                .iter()
                .fold((usernames[0], 0), |best, (u, pw)| {
                    if pw.len() > best.1 {
                        (u, pw.len())
                    } else {
                        best
                    }
                })
                .0
        }
    };
    let count_for = |user: &str| {
        passwords_by_user
            .iter()
            .find(|(u, _)| *u == user)
            .map_or(0, |(_, p)| p.len())
    };
    let first_ts = list.first().and_then(|a| a.ts);
    let last_ts = list.last().and_then(|a| a.ts);
    let window_s = match (first_ts, last_ts) {
        (Some(a), Some(b)) => Some((b - a).num_milliseconds() as f64 / 1000.0),
        _ => None,
    };
    let fails_before = first_success.map(|i| list[..i].iter().filter(|a| !a.success).count());
    let mut agg = Map::new();
    agg.insert("service".into(), json!(service));
    agg.insert("attempt_count".into(), json!(list.len()));
    agg.insert("fail_count".into(), json!(list.len() - success_count));
    agg.insert("success_count".into(), json!(success_count));
    agg.insert(
        "result".into(),
        json!(if success_count > 0 {
            "success"
        } else {
            "failure"
        }),
    );
    agg.insert("success".into(), json!(success_count > 0));
    agg.insert("username".into(), json!(username));
    if let Some(i) = first_success {
        agg.insert("password".into(), json!(list[i].password));
    }
    agg.insert("password_count".into(), json!(count_for(username)));
    agg.insert(
        "max_password_count".into(),
        json!(
            passwords_by_user
                .iter()
                .map(|(_, p)| p.len())
                .max()
                .unwrap_or(0)
        ),
    );
    agg.insert("distinct_usernames".into(), json!(usernames.len()));
    agg.insert("distinct_passwords".into(), json!(all_passwords.len()));
    agg.insert(
        "usernames".into(),
        json!(usernames.iter().take(32).collect::<Vec<_>>()),
    );
    agg.insert("fails_before_success".into(), json!(fails_before));
    agg.insert(
        "prior_brute".into(),
        json!(fails_before.is_some_and(|n| n >= PRIOR_BRUTE_THRESHOLD)),
    );
    agg.insert(
        "first_ts".into(),
        json!(list.first().and_then(|a| a.ts_text)),
    );
    agg.insert("last_ts".into(), json!(list.last().and_then(|a| a.ts_text)));
    agg.insert("window_s".into(), json!(window_s));
    (Some(agg), skipped)
}

/// Failures before a success that make it a success after brute force.
pub const PRIOR_BRUTE_THRESHOLD: usize = 5;
