//! Conformance of `probe_relay` (SMTP.md §9.3–§9.4) on SQLite and on PostgreSQL: slots,
//! skips, the claim race, lease takeover, interrupted sends and redeliveries.
//!
//! PostgreSQL halves use `DECNET_TEST_DATABASE_URL` and a fresh database per test; without
//! the variable they say they were skipped.

mod common;

use common::on_both;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use decnet_storage::{
    Database, NewProbeClaim, OutboxMessage, ProbeClaim, ProbeFinish, ProbeRelayRow, ProbeRetry,
    StorageError,
};
use uuid::Uuid;

const SERVICE: &str = "probe-relay";

fn t(second: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap() + TimeDelta::seconds(second)
}

fn lease() -> TimeDelta {
    TimeDelta::seconds(120)
}

/// The announcement the service would stage: its msg id names the message.
fn announce(row: &ProbeRelayRow) -> OutboxMessage {
    OutboxMessage {
        subject: "smtp.probe.relayed".into(),
        msg_id: format!("smtp.probe.relayed:{}:{}", row.decky_id, row.stored_as),
        headers: [("decnet-schema-version".to_owned(), "1".to_owned())].into(),
        body: format!("{}:{:?}", row.status, row.reason).into_bytes(),
    }
}

fn claim<'a>(
    ip: &'a str,
    stored_as: &'a str,
    owner: &'a str,
    now: DateTime<Utc>,
) -> NewProbeClaim<'a> {
    NewProbeClaim {
        id: Uuid::new_v4(),
        decky_id: "decoy-01",
        attacker_ip: ip,
        stored_as,
        owner,
        now,
        lease: lease(),
        probe_limit: 2,
        skip: None,
        upstream_host: Some("smtp.example.net"),
        upstream_port: Some(25),
        tls: Some("starttls"),
        rcpt_count: 1,
    }
}

async fn run(db: &Database, c: &NewProbeClaim<'_>) -> ProbeClaim {
    db.claim_probe(SERVICE, c, announce).await.unwrap()
}

fn claimed(outcome: ProbeClaim) -> ProbeRelayRow {
    match outcome {
        ProbeClaim::Claimed(row) => row,
        other => panic!("expected a claim, got {other:?}"),
    }
}

fn finished(outcome: ProbeClaim) -> (ProbeRelayRow, bool) {
    match outcome {
        ProbeClaim::Finished { row, changed } => (row, changed),
        other => panic!("expected a finished row, got {other:?}"),
    }
}

/// The staged announcements, as `msg_id => body`.
async fn staged(db: &Database) -> Vec<(String, String)> {
    db.pending(SERVICE, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.message.msg_id, String::from_utf8(p.message.body).unwrap()))
        .collect()
}

fn finish<'a>(
    row: &ProbeRelayRow,
    owner: &'a str,
    status: &'a str,
    reason: Option<&'a str>,
    now: DateTime<Utc>,
) -> ProbeFinish<'a> {
    ProbeFinish {
        id: row.id,
        owner,
        now,
        status,
        reason,
        smtp_code: Some(250),
        smtp_reply: Some("2.0.0 Ok: queued"),
        tls: Some("starttls"),
    }
}

#[tokio::test]
async fn slots_run_one_to_n_then_the_limit_is_reached_with_a_null_slot() {
    on_both(|db| async move {
        let first = claimed(run(&db, &claim("203.0.113.7", "m1.eml", "a", t(0))).await);
        let second = claimed(run(&db, &claim("203.0.113.7", "m2.eml", "a", t(1))).await);
        assert_eq!((first.slot, second.slot), (Some(1), Some(2)));
        assert_eq!(first.status, "claimed");
        assert_eq!(first.attempts, 1, "a claim that starts a session counts it");
        assert_eq!(first.lease_owner.as_deref(), Some("a"));
        assert_eq!(first.lease_until, Some(t(0) + lease()));
        assert_eq!(first.finished_at, None);
        assert!(staged(&db).await.is_empty(), "a claim announces nothing");

        let (third, changed) = finished(run(&db, &claim("203.0.113.7", "m3.eml", "a", t(2))).await);
        assert!(changed);
        assert_eq!(third.status, "skipped");
        assert_eq!(third.reason.as_deref(), Some("limit_reached"));
        assert_eq!(third.slot, None);
        assert_eq!(third.attempts, 0);
        assert_eq!(third.lease_owner, None);
        assert_eq!(third.finished_at, Some(t(2)));
        assert_eq!(
            staged(&db).await,
            vec![(
                "smtp.probe.relayed:decoy-01:m3.eml".to_owned(),
                "skipped:Some(\"limit_reached\")".to_owned()
            )]
        );

        // The limit is per (decoy, address): another address starts at slot 1, and so does
        // the same address on another decoy.
        let other = claimed(run(&db, &claim("198.51.100.9", "m4.eml", "a", t(3))).await);
        assert_eq!(other.slot, Some(1));
        let mut elsewhere = claim("203.0.113.7", "m5.eml", "a", t(4));
        elsewhere.decky_id = "decoy-02";
        assert_eq!(claimed(run(&db, &elsewhere).await).slot, Some(1));

        // Finished slots still count: every attempt, sent or failed, uses one up.
        db.finish_probe(
            SERVICE,
            &finish(&first, "a", "failed", Some("upstream_rejected"), t(5)),
            announce,
        )
        .await
        .unwrap()
        .unwrap();
        let (late, _) = finished(run(&db, &claim("203.0.113.7", "m6.eml", "a", t(6))).await);
        assert_eq!(late.reason.as_deref(), Some("limit_reached"));
    })
    .await;
}

#[tokio::test]
async fn skipped_rows_take_no_slot() {
    on_both(|db| async move {
        for (n, reason) in ["no_upstream", "too_large", "integrity_mismatch"]
            .iter()
            .enumerate()
        {
            let stored_as = format!("skip{n}.eml");
            let mut c = claim("203.0.113.7", &stored_as, "a", t(0));
            c.skip = Some(reason);
            let (row, changed) = finished(run(&db, &c).await);
            assert!(changed);
            assert_eq!(
                (row.status.as_str(), row.reason.as_deref(), row.slot),
                ("skipped", Some(*reason), None)
            );
        }
        let first = claimed(run(&db, &claim("203.0.113.7", "m1.eml", "a", t(1))).await);
        assert_eq!(first.slot, Some(1));
        assert_eq!(staged(&db).await.len(), 3);
    })
    .await;
}

#[tokio::test]
async fn a_concurrent_claim_race_never_over_allocates() {
    on_both(|db| async move {
        // Twenty messages from one address claimed at once, by two owners: only the first
        // N = 3 get slots, each slot once.
        let names: Vec<String> = (0..20).map(|i| format!("race{i:02}.eml")).collect();
        let names = Arc::new(names);
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let db = db.clone();
                let names = Arc::clone(&names);
                tokio::spawn(async move {
                    let owner = if i % 2 == 0 { "a" } else { "b" };
                    let mut c = claim("203.0.113.7", &names[i], owner, t(0));
                    c.probe_limit = 3;
                    db.claim_probe(SERVICE, &c, announce).await
                })
            })
            .collect();
        let mut slots = BTreeSet::new();
        let mut skipped = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(ProbeClaim::Claimed(row)) => assert!(slots.insert(row.slot.unwrap())),
                Ok(ProbeClaim::Finished { row, changed: true }) => {
                    assert_eq!(row.reason.as_deref(), Some("limit_reached"));
                    skipped += 1;
                }
                Ok(other) => panic!("unexpected {other:?}"),
                // Losing the slot five times in a row is transient: the message comes back.
                Err(e) => assert!(e.is_transient(), "{e}"),
            }
        }
        assert_eq!(slots, BTreeSet::from([1, 2, 3]));
        let rows = db.probe_relays("decoy-01").await.unwrap();
        assert_eq!(rows.iter().filter(|r| r.slot.is_some()).count(), 3);
        assert_eq!(staged(&db).await.len(), skipped);

        // Two deliveries of one message at once: one claims it, the other finds it leased.
        let both: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|owner| {
                let db = db.clone();
                tokio::spawn(async move {
                    let c = claim("198.51.100.9", "twice.eml", owner, t(1));
                    db.claim_probe(SERVICE, &c, announce).await.unwrap()
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in both {
            outcomes.push(task.await.unwrap());
        }
        let claims = outcomes
            .iter()
            .filter(|o| matches!(o, ProbeClaim::Claimed(_)))
            .count();
        let busy = outcomes
            .iter()
            .filter(|o| matches!(o, ProbeClaim::Busy { retry_in, .. } if *retry_in == lease()))
            .count();
        assert_eq!((claims, busy), (1, 1), "{outcomes:?}");
    })
    .await;
}

#[tokio::test]
async fn a_lease_is_taken_over_only_after_it_lapses() {
    on_both(|db| async move {
        let mine = claimed(run(&db, &claim("203.0.113.7", "m1.eml", "a", t(0))).await);

        // While the lease runs, another instance is told how long to wait.
        match run(&db, &claim("203.0.113.7", "m1.eml", "b", t(60))).await {
            ProbeClaim::Busy { row, retry_in } => {
                assert_eq!(retry_in, TimeDelta::seconds(60));
                assert_eq!(row.lease_owner.as_deref(), Some("a"));
            }
            other => panic!("expected busy, got {other:?}"),
        }
        // At the very end of the lease it still holds.
        assert!(matches!(
            run(&db, &claim("203.0.113.7", "m1.eml", "b", t(119))).await,
            ProbeClaim::Busy { .. }
        ));

        // Lapsed: taken over, same row and slot, one more attempt.
        let theirs = claimed(run(&db, &claim("203.0.113.7", "m1.eml", "b", t(121))).await);
        assert_eq!((theirs.id, theirs.slot), (mine.id, Some(1)));
        assert_eq!(theirs.lease_owner.as_deref(), Some("b"));
        assert_eq!(theirs.lease_until, Some(t(121) + lease()));
        assert_eq!(theirs.attempts, 2);

        // The old holder can neither start sending nor end it.
        assert_eq!(
            db.probe_in_flight(mine.id, "a", t(122), lease())
                .await
                .unwrap(),
            None
        );
        let lost = db
            .finish_probe(SERVICE, &finish(&mine, "a", "sent", None, t(122)), announce)
            .await
            .unwrap();
        assert_eq!(lost, None);
        let retry = ProbeRetry {
            id: mine.id,
            owner: "a",
            now: t(122),
            retry_at: t(150),
            smtp_code: None,
            smtp_reply: None,
            tls: None,
        };
        assert_eq!(db.retry_probe(&retry).await.unwrap(), None);
        assert!(staged(&db).await.is_empty());

        // The new holder can.
        let flying = db
            .probe_in_flight(theirs.id, "b", t(123), lease())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(flying.status, "in_flight");
        assert_eq!(flying.lease_until, Some(t(123) + lease()));
    })
    .await;
}

#[tokio::test]
async fn an_in_flight_row_whose_lease_lapsed_becomes_unknown_and_is_never_resent() {
    on_both(|db| async move {
        let row = claimed(run(&db, &claim("203.0.113.7", "m1.eml", "a", t(0))).await);
        let flying = db
            .probe_in_flight(row.id, "a", t(10), lease())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            flying.lease_until,
            Some(t(130)),
            "going in flight renews the lease"
        );

        // The sender died after handing over the data. Until the lease lapses, wait.
        assert!(matches!(
            run(&db, &claim("203.0.113.7", "m1.eml", "b", t(125))).await,
            ProbeClaim::Busy { retry_in, .. } if retry_in == TimeDelta::seconds(5)
        ));
        let (ended, changed) =
            finished(run(&db, &claim("203.0.113.7", "m1.eml", "b", t(131))).await);
        assert!(changed);
        assert_eq!(ended.status, "unknown");
        assert_eq!(ended.reason.as_deref(), Some("interrupted_after_data"));
        assert_eq!(ended.slot, Some(1), "the slot stays used");
        assert_eq!(ended.finished_at, Some(t(131)));
        assert_eq!(ended.lease_until, None);
        assert_eq!(
            staged(&db).await,
            vec![(
                "smtp.probe.relayed:decoy-01:m1.eml".to_owned(),
                "unknown:Some(\"interrupted_after_data\")".to_owned()
            )]
        );
        // The late sender's own report changes nothing.
        assert_eq!(
            db.finish_probe(SERVICE, &finish(&row, "a", "sent", None, t(132)), announce)
                .await
                .unwrap(),
            None
        );
        assert_eq!(staged(&db).await.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_redelivered_terminal_row_is_a_no_op() {
    on_both(|db| async move {
        let row = claimed(run(&db, &claim("203.0.113.7", "m1.eml", "a", t(0))).await);
        db.probe_in_flight(row.id, "a", t(1), lease())
            .await
            .unwrap()
            .unwrap();
        let sent = db
            .finish_probe(SERVICE, &finish(&row, "a", "sent", None, t(2)), announce)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(sent.status, "sent");
        assert_eq!(sent.smtp_code, Some(250));
        assert_eq!(sent.smtp_reply.as_deref(), Some("2.0.0 Ok: queued"));
        assert_eq!(sent.finished_at, Some(t(2)));
        assert_eq!(staged(&db).await.len(), 1);

        for (owner, at) in [("a", t(3)), ("b", t(500))] {
            let (again, changed) =
                finished(run(&db, &claim("203.0.113.7", "m1.eml", owner, at)).await);
            assert!(!changed);
            assert_eq!(again, sent);
        }
        assert_eq!(staged(&db).await.len(), 1, "nothing is announced twice");
        assert_eq!(
            db.probe_in_flight(row.id, "a", t(4), lease())
                .await
                .unwrap(),
            None
        );
    })
    .await;
}

#[tokio::test]
async fn a_transient_failure_releases_the_lease_until_the_next_attempt() {
    on_both(|db| async move {
        let row = claimed(run(&db, &claim("203.0.113.7", "m1.eml", "a", t(0))).await);
        let retry = ProbeRetry {
            id: row.id,
            owner: "a",
            now: t(5),
            retry_at: t(35),
            smtp_code: Some(451),
            smtp_reply: Some("4.7.1 try again later"),
            tls: Some("none"),
        };
        let waiting = db.retry_probe(&retry).await.unwrap().unwrap();
        assert_eq!(waiting.status, "claimed");
        assert_eq!(waiting.lease_owner, None);
        assert_eq!(waiting.lease_until, Some(t(35)));
        assert_eq!(waiting.next_attempt_at, Some(t(35)));
        assert_eq!(waiting.smtp_code, Some(451));
        assert_eq!(waiting.tls.as_deref(), Some("none"));

        // Even the same instance waits for the next attempt.
        assert!(matches!(
            run(&db, &claim("203.0.113.7", "m1.eml", "a", t(20))).await,
            ProbeClaim::Busy { retry_in, .. } if retry_in == TimeDelta::seconds(15)
        ));
        let again = claimed(run(&db, &claim("203.0.113.7", "m1.eml", "b", t(35))).await);
        assert_eq!((again.attempts, again.slot), (2, Some(1)));
        assert_eq!(again.next_attempt_at, None);
        assert_eq!(
            again.smtp_code,
            Some(451),
            "the last reply is kept until another comes"
        );

        // A 4xx to the final dot means the data was not taken: in flight back to claimed.
        db.probe_in_flight(again.id, "b", t(36), lease())
            .await
            .unwrap()
            .unwrap();
        let retry = ProbeRetry {
            owner: "b",
            now: t(37),
            retry_at: t(157),
            smtp_code: Some(452),
            ..retry
        };
        assert_eq!(
            db.retry_probe(&retry).await.unwrap().unwrap().status,
            "claimed"
        );

        // Attempts exhausted: failed, announced once.
        let last = claimed(run(&db, &claim("203.0.113.7", "m1.eml", "a", t(157))).await);
        assert_eq!(last.attempts, 3);
        let mut end = finish(&last, "a", "failed", Some("retries_exhausted"), t(160));
        end.smtp_code = None;
        end.smtp_reply = None;
        let failed = db
            .finish_probe(SERVICE, &end, announce)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(failed.status, "failed");
        assert_eq!(failed.smtp_code, Some(452));
        assert_eq!(staged(&db).await.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn rows_the_schema_or_the_api_refuses_are_constraint_errors() {
    on_both(|db| async move {
        let long = "d".repeat(64);
        let mut c = claim("203.0.113.7", "m1.eml", "a", t(0));
        c.decky_id = &long;
        assert!(matches!(
            db.claim_probe(SERVICE, &c, announce).await,
            Err(StorageError::Constraint(_))
        ));
        let mut c = claim("203.0.113.7", "m2.eml", "a", t(0));
        c.upstream_port = Some(70_000);
        assert!(matches!(
            db.claim_probe(SERVICE, &c, announce).await,
            Err(StorageError::Constraint(_))
        ));
        let mut c = claim("203.0.113.7", "m3.eml", "a", t(0));
        c.tls = Some("ssl");
        assert!(matches!(
            db.claim_probe(SERVICE, &c, announce).await,
            Err(StorageError::Constraint(_))
        ));

        let row = claimed(run(&db, &claim("203.0.113.7", "m4.eml", "a", t(0))).await);
        let end = finish(&row, "a", "skipped", Some("no_upstream"), t(1));
        assert!(matches!(
            db.finish_probe(SERVICE, &end, announce).await,
            Err(StorageError::Constraint(_))
        ));
        assert!(
            db.probe_relay("decoy-01", "m1.eml")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            db.probe_relay("decoy-01", "m4.eml")
                .await
                .unwrap()
                .unwrap()
                .status,
            "claimed"
        );
        assert!(staged(&db).await.is_empty());
    })
    .await;
}
