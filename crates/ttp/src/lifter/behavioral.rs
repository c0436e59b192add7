//! Behavioural lifters (RULES.md §7.5): what a session did rather than what it typed.
//!
//! Beaconing, exfiltration volume, mass database reads, container escapes, LLMNR poisoning
//! and TFTP configuration pulls come from sensors that observe them; a session without the
//! field simply does not fire. Credential files and Kubernetes tokens are read from the
//! session's `files_read` and from HTTP request paths alike; ransom notes from commands.

use aho_corasick::{AhoCorasick, MatchKind};
use regex::Regex;
use serde_json::Value;

use super::{Decision, Lift, Misfits, Params, Spec, fields};
use crate::event::{EvalEvent, percent_decode_once};
use crate::evidence::EvidenceKey;
use crate::kind::SourceKind;

const MIB: i64 = 1 << 20;

pub(super) const SPECS: &[Spec] = &[
    Spec {
        name: "behavioral_beaconing",
        kinds: &[SourceKind::Session],
        build: |p| {
            let min_interval_s = p.num("min_interval_s", 10.0, 0.0, 86_400.0);
            let max_jitter_pct = p.num("max_jitter_pct", 15.0, 0.0, 100.0);
            Some(Box::new(Beaconing {
                min_interval_s,
                max_jitter_pct,
            }))
        },
    },
    Spec {
        name: "behavioral_exfil_over_web",
        kinds: &[SourceKind::Session],
        build: |p| {
            let bytes = p.int("min_bytes_out", MIB, 1, i64::MAX);
            let requests = p.int("min_requests", 50, 1, i64::MAX);
            Some(Box::new(EitherAtLeast([
                ("bytes_out", bytes),
                ("request_count", requests),
            ])))
        },
    },
    Spec {
        name: "behavioral_db_mass_read",
        kinds: &[SourceKind::Session],
        build: |p| {
            let rows = p.int("min_rows", 10_000, 1, i64::MAX);
            let bytes = p.int("min_bytes", 5 * MIB, 1, i64::MAX);
            Some(Box::new(EitherAtLeast([
                ("rows_read", rows),
                ("bytes_read", bytes),
            ])))
        },
    },
    Spec {
        name: "behavioral_ransom_note",
        kinds: &[SourceKind::Command],
        build: |p| ransom_note(p).map(|l| Box::new(l) as Box<dyn Lift>),
    },
    Spec {
        name: "behavioral_credentials_in_files",
        kinds: &[SourceKind::Session, SourceKind::HttpRequest],
        build: |p| {
            let paths = p.regexes(
                "paths",
                &[
                    r"/\.env$",
                    r"/\.git/config$",
                    r"/\.aws/credentials$",
                    r"/\.ssh/id_(?:rsa|ecdsa|ed25519)$",
                    r"wp-config\.php(?:\.bak)?$",
                ],
            );
            Some(Box::new(PathRead::new(paths)))
        },
    },
    Spec {
        name: "behavioral_k8s_sa_token",
        kinds: &[SourceKind::Session, SourceKind::HttpRequest],
        build: |p| {
            let paths = p.regexes(
                "paths",
                &[
                    r"/api/v1/namespaces/([^/?#]+)/secrets",
                    r"/var/run/secrets/kubernetes\.io/serviceaccount",
                ],
            );
            Some(Box::new(PathRead::new(paths)))
        },
    },
    Spec {
        name: "behavioral_docker_escape",
        kinds: &[SourceKind::Session],
        build: |p| {
            let signals = p.strings(
                "signals",
                &[
                    "privileged:true",
                    "bind:/:/",
                    "bind:/etc",
                    "bind:/var/run/docker.sock",
                ],
                &[],
            );
            Some(Box::new(DockerEscape { signals }))
        },
    },
    Spec {
        name: "behavioral_llmnr_poisoning",
        kinds: &[SourceKind::Session],
        build: |_| Some(Box::new(LlmnrPoisoning)),
    },
    Spec {
        name: "behavioral_tftp_router_config",
        kinds: &[SourceKind::Session],
        build: |p| {
            let patterns = p.regexes(
                "filename_patterns",
                &[r"-confg$", r"\.cfg$", r"startup-config", r"running-config"],
            );
            Some(Box::new(TftpConfig { patterns }))
        },
    },
];

/// R0031: regular outbound connections with little spread.
#[derive(Debug)]
struct Beaconing {
    min_interval_s: f64,
    max_jitter_pct: f64,
}

impl Lift for Beaconing {
    fn lift(&self, event: &EvalEvent, misfits: &Misfits) -> Option<Decision> {
        let f = fields(event, misfits);
        let (Some(interval), Some(jitter)) =
            (f.num("beacon_interval_s"), f.num("beacon_jitter_pct"))
        else {
            return None;
        };
        let fired =
            interval >= self.min_interval_s && (0.0..=self.max_jitter_pct).contains(&jitter);
        fired.then(Decision::default)
    }
}

/// Fires when either of two integer fields reaches its threshold (R0034, R0035).
#[derive(Debug)]
struct EitherAtLeast([(&'static str, i64); 2]);

impl Lift for EitherAtLeast {
    fn lift(&self, event: &EvalEvent, misfits: &Misfits) -> Option<Decision> {
        let f = fields(event, misfits);
        for (field, min) in self.0 {
            if f.int(field).is_some_and(|n| n >= min) {
                return Some(Decision::default());
            }
        }
        None
    }
}

/// R0033: a payment demand next to a cryptocurrency address.
#[derive(Debug)]
struct RansomNote {
    /// The payment keywords, ASCII case-insensitive. An automaton rather than a `(?i)` regex:
    /// this runs on every command, and a case-insensitive regex alternation spends thousands
    /// of instructions per command verifying prefilter candidates (callgrind, engine bench).
    keywords: AhoCorasick,
    words: Vec<String>,
    address: Regex,
    require_address: bool,
}

/// Bitcoin (base58 from 1 or 3, or bech32 `bc1…`) and Monero (95 base58 characters from 4)
/// addresses, each a whole word.
const WALLET_PATTERN: &str = r"(?-u:\b)(?:[13][1-9A-HJ-NP-Za-km-z]{25,34}|(?i:bc1[ac-hj-np-z02-9]{11,71})|4[1-9A-HJ-NP-Za-km-z]{94})(?-u:\b)";

fn ransom_note(p: &mut Params<'_>) -> Option<RansomNote> {
    let words = p.strings(
        "payment_keywords",
        &["bitcoin", "btc", "monero", "ransom", "decrypt"],
        &[],
    );
    let require_address = p.bool("require_address", true);
    let keywords = AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostLongest)
        .build(&words)
        .ok()?;
    let address = Regex::new(WALLET_PATTERN).expect("valid wallet pattern");
    Some(RansomNote {
        keywords,
        words: words.iter().map(|w| w.to_lowercase()).collect(),
        address,
        require_address,
    })
}

impl Lift for RansomNote {
    fn lift(&self, event: &EvalEvent, misfits: &Misfits) -> Option<Decision> {
        let text = fields(event, misfits).str("command_text")?;
        let mut tokens: Vec<String> = Vec::new();
        let bytes = text.as_bytes();
        let is_word = |i: usize| {
            bytes
                .get(i)
                .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
        };
        for m in self.keywords.find_iter(text) {
            // Whole words only: `btc` in `btcpay` or `decrypt` in `decryption` is not a demand.
            if (m.start() > 0 && is_word(m.start() - 1)) || is_word(m.end()) {
                continue;
            }
            let word = &self.words[m.pattern().as_usize()];
            if !tokens.contains(word) {
                tokens.push(word.clone());
            }
        }
        if tokens.is_empty() {
            return None;
        }
        match self.address.find(text) {
            Some(address) => tokens.push(address.as_str().to_owned()),
            None if self.require_address => return None,
            None => {}
        }
        let tokens = tokens.into_iter().map(Value::from).collect();
        Some(Decision::all(vec![(
            EvidenceKey::MatchedTokens,
            Value::Array(tokens),
        )]))
    }
}

/// R0036, R0037: a sensitive path among the files a session read, or an HTTP request for one.
/// The first pattern with a capture group names the Kubernetes namespace.
#[derive(Debug)]
struct PathRead {
    paths: Vec<Regex>,
    /// All of `paths` at once: most paths match none, and one scan says so. `None` when the
    /// combined pattern is too large; each pattern is then tried on its own.
    any: Option<Regex>,
}

impl PathRead {
    fn new(paths: Vec<Regex>) -> PathRead {
        let alternatives: Vec<String> = paths
            .iter()
            .map(|re| format!("(?:{})", re.as_str()))
            .collect();
        let any = regex::RegexBuilder::new(&alternatives.join("|"))
            .size_limit(1 << 22)
            .build()
            .ok();
        PathRead { paths, any }
    }

    fn first_match(&self, path: &str) -> Option<Option<String>> {
        // Decoded once, and only when there is something to decode (`/%2eenv`).
        let decoded = path.contains('%').then(|| percent_decode_once(path));
        if let Some(any) = &self.any
            && !any.is_match(path)
            && !decoded.as_deref().is_some_and(|d| any.is_match(d))
        {
            return None;
        }
        for re in &self.paths {
            // The cheap test first: captures need the slower engines, and most paths match
            // nothing.
            let hay = if re.is_match(path) {
                path
            } else if let Some(decoded) = decoded.as_deref().filter(|d| re.is_match(d)) {
                decoded
            } else {
                continue;
            };
            let namespace = re
                .captures(hay)
                .and_then(|caps| caps.get(1).map(|m| m.as_str().to_owned()));
            return Some(namespace);
        }
        None
    }
}

impl Lift for PathRead {
    fn lift(&self, event: &EvalEvent, misfits: &Misfits) -> Option<Decision> {
        let f = fields(event, misfits);
        let candidates: Vec<&str> = match event.kind {
            SourceKind::HttpRequest => f.str("request_path").into_iter().collect(),
            _ => f.strs("files_read"),
        };
        for path in candidates {
            if let Some(namespace) = self.first_match(path) {
                let mut extras = vec![(EvidenceKey::MatchedPath, Value::from(path))];
                if let Some(ns) = namespace {
                    extras.push((EvidenceKey::Namespace, Value::from(ns)));
                }
                return Some(Decision::all(extras));
            }
        }
        None
    }
}

/// R0038: a container-escape marker; the first listed signal present is reported.
#[derive(Debug)]
struct DockerEscape {
    signals: Vec<String>,
}

impl Lift for DockerEscape {
    fn lift(&self, event: &EvalEvent, misfits: &Misfits) -> Option<Decision> {
        let seen = fields(event, misfits).strs("docker_signals");
        // A bind marker is `bind:<host path>[:<container path>]`; what makes it an escape is
        // the host side, so `bind:/:/` matches `-v /:/host` (`bind:/:/host`) and
        // `bind:/etc` matches `bind:/etc:/mnt/etc`, while `bind:/etcd` matches neither.
        let present = |signal: &str| seen.iter().any(|s| same_marker(s, signal));
        let matched = self.signals.iter().find(|s| present(s));
        matched.map(|s| Decision::all(vec![(EvidenceKey::MatchedSignal, Value::from(s.as_str()))]))
    }
}

/// Whether a reported marker is the listed signal: equal, or for `bind:` markers the same
/// host path.
fn same_marker(seen: &str, signal: &str) -> bool {
    match (seen.strip_prefix("bind:"), signal.strip_prefix("bind:")) {
        (Some(a), Some(b)) => bind_host(a) == bind_host(b),
        _ => seen == signal,
    }
}

fn bind_host(spec: &str) -> &str {
    // `/:/host` → `/`; `/var/run/docker.sock` → itself; `/etc:/mnt/etc:ro` → `/etc`.
    spec.split(':').next().unwrap_or_default()
}

/// R0039: the attacker answered name queries it did not own.
#[derive(Debug)]
struct LlmnrPoisoning;

impl Lift for LlmnrPoisoning {
    fn lift(&self, event: &EvalEvent, misfits: &Misfits) -> Option<Decision> {
        let f = fields(event, misfits);
        let flagged = f.bool("llmnr_poisoned").unwrap_or(false);
        let counted = f.int("llmnr_poison_count").is_some_and(|n| n >= 1);
        (flagged || counted).then(Decision::default)
    }
}

/// R0040: a router configuration fetched over TFTP.
#[derive(Debug)]
struct TftpConfig {
    patterns: Vec<Regex>,
}

impl Lift for TftpConfig {
    fn lift(&self, event: &EvalEvent, misfits: &Misfits) -> Option<Decision> {
        let name = fields(event, misfits).str("tftp_filename")?;
        let fired = self.patterns.iter().any(|re| re.is_match(name));
        fired.then(Decision::default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_markers_compare_by_host_path() {
        assert!(same_marker("bind:/:/host", "bind:/:/"));
        assert!(same_marker("bind:/etc:/mnt/etc:ro", "bind:/etc"));
        assert!(same_marker(
            "bind:/var/run/docker.sock",
            "bind:/var/run/docker.sock"
        ));
        assert!(!same_marker("bind:/etcd:/data", "bind:/etc"));
        assert!(!same_marker("bind:/home:/h", "bind:/:/"));
        assert!(same_marker("privileged:true", "privileged:true"));
        assert!(!same_marker("privileged:false", "privileged:true"));
    }

    #[test]
    fn wallets_are_whole_words() {
        let re = Regex::new(WALLET_PATTERN).unwrap();
        assert!(re.is_match("send to bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4 now"));
        assert!(re.is_match("1BoatSLRHtKNngkdXEeobR76b53LETtpyT"));
        assert!(!re.is_match("x1BoatSLRHtKNngkdXEeobR76b53LETtpyT"));
        assert!(!re.is_match("1short"));
    }
}
