//! From a lookup to the row and the event (INTEL.md §1 steps 4–5, §5, §6): merge what each
//! provider said into the row, derive scores, verdicts, the aggregate and the digest from the
//! merged row, and build `attacker.intel.enriched` from the committed one.
//!
//! Everything is derived from the merged row, never from this lookup alone, so a provider
//! that fails or is skipped in one pass keeps the columns an earlier pass stored and the
//! aggregate can never drop because of it.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use decnet_proto::payload::attacker::{IntelEnriched, ProviderScores, Verdict};
use decnet_storage::{IntelRow, IntelScores, OutboxMessage, ProviderFailure, ProviderRecord};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::Provider;
use crate::providers::{Answer, Columns};

/// What became of one provider in one lookup.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// It answered.
    Answered(Answer),
    /// It failed; a 429 also says until when it pauses.
    Failed {
        error: String,
        pause_until: Option<DateTime<Utc>>,
    },
    /// Not asked (quota spent, paused after a 429) until then.
    Skipped(DateTime<Utc>),
}

fn record_mut(row: &mut IntelRow, p: Provider) -> &mut ProviderRecord {
    match p {
        Provider::AbuseIpdb => &mut row.abuseipdb_record,
        Provider::GreyNoise => &mut row.greynoise_record,
        Provider::Feodo => &mut row.feodo_record,
        Provider::ThreatFox => &mut row.threatfox_record,
    }
}

/// A provider's raw answer and times in the row.
pub(crate) fn record(row: &IntelRow, p: Provider) -> &ProviderRecord {
    match p {
        Provider::AbuseIpdb => &row.abuseipdb_record,
        Provider::GreyNoise => &row.greynoise_record,
        Provider::Feodo => &row.feodo_record,
        Provider::ThreatFox => &row.threatfox_record,
    }
}

/// How a lookup is merged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Merge<'a> {
    pub(crate) now: DateTime<Utc>,
    /// Every provider asked for a missing or expired row (not only those due a retry).
    pub(crate) full: bool,
    pub(crate) ttl: TimeDelta,
    pub(crate) failure_retry: TimeDelta,
    /// The providers enabled in this process.
    pub(crate) enabled: &'a [Provider],
}

/// Merge one lookup's outcomes into `row`; `true` when a provider answered, which is when
/// the row is announced.
pub(crate) fn merge(row: &mut IntelRow, outcomes: &[(Provider, Outcome)], m: &Merge<'_>) -> bool {
    row.providers_ok.clear();
    row.providers_failed.clear();
    row.providers_skipped.clear();
    for (p, outcome) in outcomes {
        match outcome {
            Outcome::Answered(answer) => {
                apply(row, &answer.columns);
                let rec = record_mut(row, *p);
                rec.raw.clone_from(&answer.raw);
                rec.queried_at = Some(m.now);
                rec.retry_at = None;
                row.providers_ok.push(p.name().to_owned());
            }
            Outcome::Failed { error, pause_until } => {
                let rec = record_mut(row, *p);
                if let Some(until) = pause_until {
                    rec.retry_at = Some(*until);
                } else if rec.retry_at.is_some_and(|t| t <= m.now) {
                    // A retry that failed waits like a failed lookup; left in the past, the
                    // timer would ask again every run and spend the quota on it.
                    rec.retry_at = Some(m.now + m.failure_retry);
                }
                row.providers_failed.push(ProviderFailure {
                    provider: p.name().to_owned(),
                    error: error.clone(),
                });
            }
            Outcome::Skipped(until) => {
                record_mut(row, *p).retry_at = Some(*until);
                row.providers_skipped.push(p.name().to_owned());
            }
        }
    }
    let answered = !row.providers_ok.is_empty();
    let all_failed = !answered && !row.providers_failed.is_empty();
    if answered {
        derive(row);
        if m.full || row.cached_at.is_none() {
            row.cached_at = Some(m.now);
            row.expires_at = Some(m.now + m.ttl);
        }
    }
    row.last_error = row
        .providers_failed
        .iter()
        .map(|f| format!("{}: {}", f.provider, f.error))
        .reduce(|a, b| format!("{a}; {b}"));
    let failure_retry = all_failed.then(|| m.now + m.failure_retry);
    row.retry_at = m
        .enabled
        .iter()
        .filter_map(|p| record(row, *p).retry_at)
        .chain(failure_retry)
        .min();
    answered
}

fn apply(row: &mut IntelRow, columns: &Columns) {
    match columns {
        Columns::AbuseIpdb(c) => row.abuseipdb = c.clone(),
        Columns::GreyNoise(c) => row.greynoise = c.clone(),
        Columns::Feodo(c) => row.feodo = c.clone(),
        Columns::ThreatFox(c) => row.threatfox = c.clone(),
    }
}

fn rank(v: Verdict) -> u8 {
    match v {
        Verdict::Malicious => 3,
        Verdict::Suspicious => 2,
        Verdict::Benign => 1,
        Verdict::Unknown => 0,
    }
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Malicious => "malicious",
        Verdict::Suspicious => "suspicious",
        Verdict::Benign => "benign",
        Verdict::Unknown => "unknown",
    }
}

fn verdict_of(name: &str) -> Option<Verdict> {
    match name {
        "malicious" => Some(Verdict::Malicious),
        "suspicious" => Some(Verdict::Suspicious),
        "benign" => Some(Verdict::Benign),
        "unknown" => Some(Verdict::Unknown),
        _ => None,
    }
}

/// Each provider's verdict and normalised score, from the merged row (INTEL.md §2).
fn per_provider(row: &IntelRow) -> ([Option<Verdict>; 4], IntelScores) {
    let abuse = row.abuseipdb.score.map(|s| match s {
        75.. => Verdict::Malicious,
        25.. => Verdict::Suspicious,
        _ => Verdict::Benign,
    });
    let grey = row
        .greynoise
        .classification
        .as_deref()
        .map(|c| verdict_of(c).unwrap_or(Verdict::Unknown));
    let feodo = (row.feodo.listed == Some(true)).then_some(Verdict::Malicious);
    let fox = (row.threatfox.listed == Some(true)).then_some(Verdict::Malicious);
    let scores = IntelScores {
        abuseipdb: row.abuseipdb.score.map(|s| f64::from(s) / 100.0),
        greynoise: grey.and_then(|v| match v {
            Verdict::Malicious => Some(1.0),
            Verdict::Suspicious => Some(0.5),
            Verdict::Benign => Some(0.0),
            Verdict::Unknown => None,
        }),
        feodo: feodo.map(|_| 1.0),
        threatfox: fox.map(|_| {
            row.threatfox
                .confidence_max
                .map_or(1.0, |c| f64::from(c) / 100.0)
        }),
    };
    ([abuse, grey, feodo, fox], scores)
}

/// Scores, the aggregate and the digest of the merged row (§5–§6).
fn derive(row: &mut IntelRow) {
    let (verdicts, scores) = per_provider(row);
    row.scores = scores;
    row.aggregate_verdict = verdicts
        .into_iter()
        .flatten()
        .max_by_key(|v| rank(*v))
        .map(|v| verdict_name(v).to_owned());
    row.aggregate_score = [
        scores.abuseipdb,
        scores.greynoise,
        scores.feodo,
        scores.threatfox,
    ]
    .into_iter()
    .flatten()
    .reduce(f64::max);
    row.verdict_digest = Some(digest(row));
}

/// The first 16 hex characters of SHA-256 over the canonical JSON (sorted keys, no blanks)
/// of the verdict fields of §6; nulls stay in, as null.
pub(crate) fn digest(row: &IntelRow) -> String {
    let (a, g, f, t) = (&row.abuseipdb, &row.greynoise, &row.feodo, &row.threatfox);
    let fields: BTreeMap<&str, Value> = [
        ("abuseipdb_score", json!(a.score)),
        ("abuseipdb_categories", json!(a.categories)),
        ("greynoise_classification", json!(g.classification)),
        ("greynoise_name", json!(g.name)),
        ("greynoise_tags", json!(g.tags)),
        ("greynoise_noise", json!(g.noise)),
        ("greynoise_riot", json!(g.riot)),
        ("feodo_listed", json!(f.listed)),
        ("feodo_malware_family", json!(f.malware_family)),
        ("threatfox_listed", json!(t.listed)),
        ("threatfox_threat_types", json!(t.threat_types)),
        ("threatfox_ioc_types", json!(t.ioc_types)),
        ("threatfox_malware_families", json!(t.malware_families)),
    ]
    .into_iter()
    .collect();
    let text = serde_json::to_string(&fields).expect("JSON values serialise");
    Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `attacker.intel.enriched` for a committed row (EVENTS.md §4.3, INTEL.md §6).
pub(crate) fn event(row: &IntelRow, enabled: &[Provider]) -> IntelEnriched {
    let (a, g, f, t) = (&row.abuseipdb, &row.greynoise, &row.feodo, &row.threatfox);
    let s = row.scores;
    IntelEnriched {
        attacker_uuid: row.attacker_uuid,
        attacker_ip: row.attacker_ip.as_str().into(),
        intel_id: Some(row.uuid),
        aggregate_verdict: row.aggregate_verdict.as_deref().and_then(verdict_of),
        providers: enabled.iter().map(|p| p.name().to_owned()).collect(),
        abuseipdb_score: a.score.map(i64::from),
        abuseipdb_categories: a.categories.clone(),
        greynoise_classification: g.classification.clone(),
        greynoise_name: g.name.clone(),
        greynoise_tags: g.tags.clone(),
        greynoise_noise: g.noise,
        greynoise_riot: g.riot,
        feodo_listed: f.listed,
        feodo_malware_family: f.malware_family.clone(),
        threatfox_listed: t.listed,
        threatfox_threat_types: t.threat_types.clone(),
        threatfox_ioc_types: t.ioc_types.clone(),
        threatfox_malware_families: t.malware_families.clone(),
        scores: Some(ProviderScores {
            abuseipdb: s.abuseipdb,
            greynoise: s.greynoise,
            feodo: s.feodo,
            threatfox: s.threatfox,
        }),
        aggregate_score: row.aggregate_score,
        providers_ok: row.providers_ok.clone(),
        providers_failed: row
            .providers_failed
            .iter()
            .map(|f| f.provider.clone())
            .collect(),
        providers_skipped: row.providers_skipped.clone(),
        verdict_digest: row.verdict_digest.clone(),
        enriched_at: row.cached_at,
        expires_at: row.expires_at,
    }
}

/// The outbox message announcing a committed row; msg id per EVENTS.md §3.
pub(crate) fn announcement(row: &IntelRow, enabled: &[Provider]) -> OutboxMessage {
    let digest = row.verdict_digest.as_deref().unwrap_or("none");
    decnet_bus::outbox::message(
        "attacker.intel.enriched".to_owned(),
        format!("attacker.intel.enriched:{}:{digest}", row.attacker_uuid),
        &event(row, enabled),
    )
}

#[cfg(test)]
mod tests {
    use decnet_storage::{AbuseIpdbIntel, FeodoIntel, GreyNoiseIntel, ThreatFoxIntel};
    use uuid::Uuid;

    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_796_378_400, 0).unwrap()
    }

    const ALL: [Provider; 4] = Provider::ALL;

    fn merge_at(full: bool) -> Merge<'static> {
        Merge {
            now: now(),
            full,
            ttl: TimeDelta::hours(24),
            failure_retry: TimeDelta::minutes(15),
            enabled: &ALL,
        }
    }

    fn answered(columns: Columns) -> Outcome {
        Outcome::Answered(Answer {
            columns,
            raw: "{\"x\":1}".into(),
        })
    }

    fn failed() -> Outcome {
        Outcome::Failed {
            error: "timed out".into(),
            pause_until: None,
        }
    }

    fn abuse(score: i32, categories: Vec<i64>) -> Columns {
        Columns::AbuseIpdb(AbuseIpdbIntel {
            score: Some(score),
            categories,
            total_reports: Some(4),
            is_tor: Some(false),
        })
    }

    fn grey(classification: &str) -> Columns {
        Columns::GreyNoise(GreyNoiseIntel {
            classification: Some(classification.into()),
            name: None,
            tags: vec![],
            noise: Some(true),
            riot: Some(false),
        })
    }

    fn fox(listed: bool, confidence: Option<i32>) -> Columns {
        Columns::ThreatFox(ThreatFoxIntel {
            listed: Some(listed),
            threat_types: if listed {
                vec!["botnet_cc".into()]
            } else {
                vec![]
            },
            ioc_types: vec![],
            malware_families: vec![],
            confidence_max: confidence,
        })
    }

    fn fresh() -> IntelRow {
        IntelRow::new(Uuid::from_u128(1), Uuid::from_u128(2), "203.0.113.7")
    }

    #[test]
    fn scores_and_aggregate_of_mixed_answers() {
        let mut row = fresh();
        let outcomes = [
            (Provider::AbuseIpdb, answered(abuse(40, vec![14]))),
            (Provider::GreyNoise, answered(grey("benign"))),
            (
                Provider::Feodo,
                answered(Columns::Feodo(FeodoIntel {
                    listed: Some(false),
                    ..FeodoIntel::default()
                })),
            ),
            (Provider::ThreatFox, answered(fox(true, Some(60)))),
        ];
        assert!(merge(&mut row, &outcomes, &merge_at(true)));
        assert_eq!(
            row.scores,
            IntelScores {
                abuseipdb: Some(0.4),
                greynoise: Some(0.0),
                feodo: None,
                threatfox: Some(0.6),
            }
        );
        assert_eq!(row.aggregate_verdict.as_deref(), Some("malicious"));
        assert_eq!(row.aggregate_score, Some(0.6));
        assert_eq!(row.expires_at, Some(now() + TimeDelta::hours(24)));
        assert_eq!(row.retry_at, None);

        // Suspicious beats benign; an unknown GreyNoise has no score.
        let mut row = fresh();
        let outcomes = [
            (Provider::AbuseIpdb, answered(abuse(25, vec![]))),
            (Provider::GreyNoise, answered(grey("unknown"))),
            (Provider::ThreatFox, answered(fox(false, None))),
        ];
        merge(&mut row, &outcomes, &merge_at(true));
        assert_eq!(row.aggregate_verdict.as_deref(), Some("suspicious"));
        assert_eq!((row.scores.greynoise, row.scores.threatfox), (None, None));
        assert_eq!(row.aggregate_score, Some(0.25));
        // Listed without a confidence scores 1.0.
        let mut row = fresh();
        merge(
            &mut row,
            &[(Provider::ThreatFox, answered(fox(true, None)))],
            &merge_at(true),
        );
        assert_eq!(row.scores.threatfox, Some(1.0));
    }

    #[test]
    fn a_provider_failing_in_a_second_pass_keeps_its_values_and_the_aggregate() {
        let mut row = fresh();
        let first = [
            (Provider::AbuseIpdb, answered(abuse(95, vec![18, 22]))),
            (Provider::ThreatFox, answered(fox(true, Some(80)))),
        ];
        merge(&mut row, &first, &merge_at(true));
        let before = row.clone();
        let second = [
            (Provider::AbuseIpdb, failed()),
            (Provider::ThreatFox, answered(fox(true, Some(80)))),
        ];
        let mut later = merge_at(true);
        later.now = now() + TimeDelta::hours(25);
        assert!(merge(&mut row, &second, &later));
        assert_eq!(row.abuseipdb, before.abuseipdb);
        assert_eq!(row.abuseipdb_record, before.abuseipdb_record);
        assert_eq!(row.scores, before.scores);
        assert_eq!(row.aggregate_verdict, before.aggregate_verdict);
        assert_eq!(row.aggregate_score, Some(0.95));
        assert_eq!(row.verdict_digest, before.verdict_digest);
        assert_eq!(row.providers_ok, vec!["threatfox"]);
        assert_eq!(row.last_error.as_deref(), Some("abuseipdb: timed out"));
    }

    #[test]
    fn when_every_provider_fails_the_row_keeps_its_values_and_retries_in_15_minutes() {
        let mut row = fresh();
        merge(
            &mut row,
            &[(Provider::AbuseIpdb, answered(abuse(95, vec![18])))],
            &merge_at(true),
        );
        let before = row.clone();
        let mut later = merge_at(true);
        later.now = now() + TimeDelta::hours(25);
        let outcomes = [
            (Provider::AbuseIpdb, failed()),
            (Provider::GreyNoise, failed()),
        ];
        assert!(!merge(&mut row, &outcomes, &later));
        assert_eq!(row.expires_at, before.expires_at);
        assert_eq!(row.verdict_digest, before.verdict_digest);
        assert_eq!(row.retry_at, Some(later.now + TimeDelta::minutes(15)));
        assert_eq!(
            row.last_error.as_deref(),
            Some("abuseipdb: timed out; greynoise: timed out")
        );
    }

    #[test]
    fn a_skipped_provider_sets_its_retry_and_the_rows() {
        let mut row = fresh();
        let tomorrow = now() + TimeDelta::hours(14);
        let outcomes = [
            (Provider::AbuseIpdb, Outcome::Skipped(tomorrow)),
            (Provider::GreyNoise, answered(grey("malicious"))),
        ];
        assert!(merge(&mut row, &outcomes, &merge_at(true)));
        assert_eq!(row.abuseipdb_record.retry_at, Some(tomorrow));
        assert_eq!(row.retry_at, Some(tomorrow));
        assert_eq!(row.providers_skipped, vec!["abuseipdb"]);
        // The retry pass answers: its retry is cleared, the expiry stays that of the full pass.
        let mut retry = merge_at(false);
        retry.now = tomorrow;
        merge(
            &mut row,
            &[(Provider::AbuseIpdb, answered(abuse(10, vec![])))],
            &retry,
        );
        assert_eq!((row.abuseipdb_record.retry_at, row.retry_at), (None, None));
        assert_eq!(row.expires_at, Some(now() + TimeDelta::hours(24)));
        assert_eq!(row.abuseipdb_record.queried_at, Some(tomorrow));
    }

    #[test]
    fn a_retry_that_fails_waits_15_minutes_instead_of_every_timer_run() {
        let mut row = fresh();
        let reset = now() - TimeDelta::minutes(1);
        row.abuseipdb_record.retry_at = Some(reset);
        let retry = merge_at(false);
        assert!(!merge(&mut row, &[(Provider::AbuseIpdb, failed())], &retry));
        let later = now() + TimeDelta::minutes(15);
        assert_eq!(
            (row.abuseipdb_record.retry_at, row.retry_at),
            (Some(later), Some(later))
        );
    }

    #[test]
    fn the_digest_is_pinned_and_moves_with_the_verdict_only() {
        let mut row = fresh();
        // sha256 of the canonical text below, computed independently with Python's hashlib.
        assert_eq!(digest(&row), "1866fa2197a2f21c");
        row.abuseipdb_record.raw = "{\"other\":true}".into();
        row.cached_at = Some(now());
        assert_eq!(digest(&row), "1866fa2197a2f21c");
        row.abuseipdb.score = Some(95);
        assert_ne!(digest(&row), "1866fa2197a2f21c");
    }

    #[test]
    fn the_event_carries_the_committed_row() {
        let mut row = fresh();
        let outcomes = [
            (Provider::AbuseIpdb, answered(abuse(95, vec![18]))),
            (Provider::GreyNoise, failed()),
        ];
        merge(&mut row, &outcomes, &merge_at(true));
        let m = announcement(&row, &[Provider::AbuseIpdb, Provider::GreyNoise]);
        assert_eq!(
            m.msg_id,
            format!(
                "attacker.intel.enriched:{}:{}",
                row.attacker_uuid,
                row.verdict_digest.clone().unwrap()
            )
        );
        let body: Value = serde_json::from_slice(&m.body).unwrap();
        assert_eq!(body["intel_id"], json!(Uuid::from_u128(1)));
        assert_eq!(body["providers"], json!(["abuseipdb", "greynoise"]));
        assert_eq!(body["providers_ok"], json!(["abuseipdb"]));
        assert_eq!(body["providers_failed"], json!(["greynoise"]));
        assert_eq!(body["abuseipdb_categories"], json!([18]));
        assert_eq!(body["threatfox_threat_types"], json!([]));
        assert_eq!(body["feodo_listed"], Value::Null);
        assert_eq!(body["aggregate_verdict"], json!("malicious"));
        assert_eq!(body["scores"]["abuseipdb"], json!(0.95));
    }
}
