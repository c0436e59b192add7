//! Conformance of `attacker_intel` and `intel_quota` (INTEL.md §3–§4, STORAGE.md §4.6–§4.7) on
//! SQLite and on PostgreSQL: rows read back as written, the row id survives refreshes, the
//! announcement is staged with the commit, the quota statement never passes its quota even
//! under concurrent callers, and the refresh timer's two queries.
//!
//! PostgreSQL halves use `DECNET_TEST_DATABASE_URL` and a fresh database per test; without
//! the variable they say they were skipped.

mod common;

use common::on_both;

use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone, Utc};
use decnet_storage::{
    AbuseIpdbIntel, AttackerSighting, Database, DueAttacker, FeodoIntel, GreyNoiseIntel, IntelRow,
    IntelScores, OutboxMessage, ProviderFailure, ProviderRecord, StorageError, ThreatFoxIntel,
};
use uuid::Uuid;

const SERVICE: &str = "intel";

fn t(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap() + TimeDelta::minutes(minute)
}

fn attacker(n: u128) -> Uuid {
    Uuid::from_u128(0xa77a_c4e2_0000_0000_0000_0000_0000_0000 | n)
}

/// A row with every column holding something, so a column lost on one backend shows.
fn full_row(n: u128) -> IntelRow {
    let mut row = IntelRow::new(Uuid::from_u128(n), attacker(n), "203.0.113.7");
    row.abuseipdb = AbuseIpdbIntel {
        score: Some(95),
        categories: vec![18, 22],
        total_reports: Some(120),
        is_tor: Some(false),
    };
    row.abuseipdb_record = ProviderRecord {
        raw: r#"{"data":{"abuseConfidenceScore":95}}"#.to_owned(),
        queried_at: Some(t(0)),
        retry_at: None,
    };
    row.greynoise = GreyNoiseIntel {
        classification: Some("malicious".into()),
        name: Some("unknown".into()),
        tags: vec![],
        noise: Some(true),
        riot: Some(false),
    };
    row.greynoise_record = ProviderRecord {
        raw: r#"{"noise":true}"#.to_owned(),
        queried_at: Some(t(0)),
        retry_at: Some(t(90)),
    };
    row.feodo = FeodoIntel {
        listed: Some(true),
        malware_family: Some("QakBot".into()),
        first_seen: Some(t(-10_000)),
    };
    row.threatfox = ThreatFoxIntel {
        listed: Some(true),
        threat_types: vec!["botnet_cc".into()],
        ioc_types: vec!["ip:port".into()],
        malware_families: vec!["Cobalt Strike".into()],
        confidence_max: Some(75),
    };
    row.scores = IntelScores {
        abuseipdb: Some(0.95),
        greynoise: Some(1.0),
        feodo: Some(1.0),
        threatfox: Some(0.75),
    };
    row.aggregate_verdict = Some("malicious".into());
    row.aggregate_score = Some(1.0);
    row.verdict_digest = Some("0123456789abcdef".into());
    row.providers_ok = vec!["abuseipdb".into(), "feodo".into(), "threatfox".into()];
    row.providers_failed = vec![ProviderFailure {
        provider: "greynoise".into(),
        error: "timed out".into(),
    }];
    row.providers_skipped = vec![];
    row.cached_at = Some(t(0));
    row.expires_at = Some(t(24 * 60));
    row.retry_at = Some(t(90));
    row.last_error = None;
    row
}

fn announce(row: &IntelRow) -> Option<OutboxMessage> {
    Some(OutboxMessage {
        subject: "attacker.intel.enriched".into(),
        msg_id: format!(
            "attacker.intel.enriched:{}:{}",
            row.attacker_uuid,
            row.verdict_digest.as_deref().unwrap_or("-")
        ),
        headers: Default::default(),
        body: row.uuid.to_string().into_bytes(),
    })
}

async fn staged(db: &Database) -> Vec<(String, String)> {
    db.pending(SERVICE, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.message.msg_id, String::from_utf8(p.message.body).unwrap()))
        .collect()
}

#[tokio::test]
async fn an_intel_row_reads_back_as_written_and_stages_its_announcement() {
    on_both(|db| async move {
        assert_eq!(db.attacker_intel(attacker(1)).await.unwrap(), None);
        let row = full_row(1);
        let stored = db.save_intel(SERVICE, &row, announce).await.unwrap();
        assert_eq!(stored, row);
        assert_eq!(db.attacker_intel(attacker(1)).await.unwrap(), Some(row));
        assert_eq!(
            staged(&db).await,
            vec![(
                format!("attacker.intel.enriched:{}:0123456789abcdef", attacker(1)),
                Uuid::from_u128(1).to_string()
            )]
        );
        // An empty row (a `not_public` address) keeps its defaults and stages nothing.
        let mut bare = IntelRow::new(Uuid::from_u128(2), attacker(2), "10.0.0.1");
        bare.last_error = Some("not_public".into());
        let stored = db.save_intel(SERVICE, &bare, |_| None).await.unwrap();
        assert_eq!(stored, bare);
        assert_eq!(staged(&db).await.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_refresh_keeps_the_first_writers_row_id_and_announces_with_it() {
    on_both(|db| async move {
        let first = full_row(1);
        db.save_intel(SERVICE, &first, |_| None).await.unwrap();
        // Another replica chose another id for the same attacker: the stored one wins.
        let mut second = full_row(1);
        second.uuid = Uuid::from_u128(99);
        second.abuseipdb.score = Some(40);
        second.verdict_digest = Some("fedcba9876543210".into());
        let stored = db.save_intel(SERVICE, &second, announce).await.unwrap();
        assert_eq!(stored.uuid, Uuid::from_u128(1));
        assert_eq!(stored.abuseipdb.score, Some(40));
        assert_eq!(
            staged(&db).await,
            vec![(
                format!("attacker.intel.enriched:{}:fedcba9876543210", attacker(1)),
                Uuid::from_u128(1).to_string()
            )]
        );
    })
    .await;
}

#[tokio::test]
async fn rows_the_schema_refuses_are_constraint_errors_with_nothing_written() {
    on_both(|db| async move {
        let mut row = full_row(1);
        row.abuseipdb.score = Some(101);
        let e = db.save_intel(SERVICE, &row, announce).await.unwrap_err();
        assert!(matches!(e, StorageError::Constraint(_)), "{e:?}");
        assert!(!e.is_transient());
        let mut row = full_row(1);
        row.aggregate_verdict = Some("evil".into());
        let e = db.save_intel(SERVICE, &row, announce).await.unwrap_err();
        assert!(matches!(e, StorageError::Constraint(_)), "{e:?}");
        assert_eq!(db.attacker_intel(attacker(1)).await.unwrap(), None);
        assert!(staged(&db).await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn the_quota_statement_never_passes_the_quota_even_concurrently() {
    on_both(|db| async move {
        let day = NaiveDate::from_ymd_opt(2026, 12, 4).unwrap();
        let tries = (0..25).map(|_| {
            let db = db.clone();
            tokio::spawn(async move { db.take_intel_quota("abuseipdb", day, 10).await.unwrap() })
        });
        let mut granted = 0;
        for t in tries {
            granted += usize::from(t.await.unwrap());
        }
        assert_eq!(granted, 10);
        assert_eq!(db.intel_quota_used("abuseipdb", day).await.unwrap(), 10);
        // Counters are per provider and per day; a zero quota refuses without counting.
        assert!(db.take_intel_quota("greynoise", day, 10).await.unwrap());
        let next = day.succ_opt().unwrap();
        assert!(db.take_intel_quota("abuseipdb", next, 10).await.unwrap());
        assert!(!db.take_intel_quota("threatfox", day, 0).await.unwrap());
        assert_eq!(db.intel_quota_used("threatfox", day).await.unwrap(), 0);
        assert_eq!(db.intel_quota_used("abuseipdb", next).await.unwrap(), 1);
    })
    .await;
}

#[tokio::test]
async fn the_timer_finds_stale_recent_attackers_and_passed_retries() {
    on_both(|db| async move {
        // Attackers 1–4 seen at minutes 1–4; 5 seen long before the window.
        let sightings: Vec<AttackerSighting> = (1..=5)
            .map(|n| AttackerSighting {
                uuid: attacker(n),
                ip: Some(format!("203.0.113.{n}")),
                seen_at: if n == 5 { t(-30_000) } else { t(n as i64) },
            })
            .collect();
        db.write_tags("tagger", &sightings, &[], |_| Vec::new())
            .await
            .unwrap();
        // 1 is valid, 2 expired, 3 has none, 4 never got an expiry but retries at minute 30.
        let mut valid = full_row(1);
        valid.retry_at = None;
        valid.expires_at = Some(t(60));
        db.save_intel(SERVICE, &valid, |_| None).await.unwrap();
        let mut expired = full_row(2);
        expired.retry_at = None;
        expired.expires_at = Some(t(5));
        db.save_intel(SERVICE, &expired, |_| None).await.unwrap();
        let mut failing = IntelRow::new(Uuid::from_u128(4), attacker(4), "203.0.113.4");
        failing.retry_at = Some(t(30));
        db.save_intel(SERVICE, &failing, |_| None).await.unwrap();

        let due = |n: u128| DueAttacker {
            attacker_uuid: attacker(n),
            attacker_ip: format!("203.0.113.{n}"),
        };
        let stale = db.intel_stale(t(10), t(-60), 50).await.unwrap();
        assert_eq!(stale, vec![due(3), due(2)]);
        assert_eq!(
            db.intel_stale(t(10), t(-60), 1).await.unwrap(),
            vec![due(3)]
        );
        assert!(db.intel_retries_due(t(29), 50).await.unwrap().is_empty());
        assert_eq!(db.intel_retries_due(t(30), 50).await.unwrap(), vec![due(4)]);
    })
    .await;
}
