//! Canary tokens and triggers (`canary_token`, `canary_trigger`) on SQLite and on PostgreSQL.
//!
//! PostgreSQL halves use `DECNET_TEST_DATABASE_URL` (CI sets it) and a fresh database per test;
//! without the variable they say they were skipped, and under `CI=true` that is a failure.

mod common;

use common::{at_micros, fine, on_both, t};

use chrono::{DateTime, Utc};
use decnet_storage::{
    CanaryTokenRow, CanaryTriggerRow, Database, HitRecord, NewCanaryToken, NewCanaryTrigger,
    Options, OutboxMessage, StorageError,
};
use serde_json::json;
use uuid::Uuid;

const CS: &str = "canary";
const ATTACKER: Uuid = Uuid::from_u128(0xa77a_c4e4);

/// A planted HTTP token on decoy-01 with no fingerprint parts.
fn new_token(uuid: Uuid, slug: &str) -> NewCanaryToken<'_> {
    NewCanaryToken {
        uuid,
        kind: "http",
        generator: "aws_credentials",
        decky_name: "decoy-01",
        placement_path: "/home/admin/.aws/credentials",
        slug,
        mint_uuid: None,
        fingerprint_nonce: None,
        memo: None,
        created_by: "operator:alice",
        created_at: t(1),
    }
}

async fn mint(db: &Database, n: u128, slug: &str) -> CanaryTokenRow {
    db.insert_canary_token(&new_token(Uuid::from_u128(n), slug))
        .await
        .unwrap()
}

/// A beacon hit over HTTP.
fn hit(token_uuid: Uuid, n: u128, occurred_at: DateTime<Utc>, src_ip: &str) -> NewCanaryTrigger {
    NewCanaryTrigger {
        uuid: Uuid::from_u128(0x7000 + n),
        token_uuid,
        occurred_at,
        channel: "http".into(),
        method: Some("GET".into()),
        src_ip: src_ip.into(),
        peer_ip: "10.0.0.1".into(),
        attacker_uuid: ATTACKER,
        user_agent: Some("curl/8.5.0".into()),
        request_path: Some("/c/abc".into()),
        dns_qname: None,
        headers: Some(json!({"host": "canary.example", "accept": "*/*"})),
        hit_kind: "beacon".into(),
        fingerprint_state: "none".into(),
        flags: json!({}),
        suspected_scanner: false,
        scanner_reason: None,
        fingerprint: None,
        signals: None,
    }
}

/// A fingerprint hit that validated.
fn fingerprint_hit(token_uuid: Uuid, n: u128, occurred_at: DateTime<Utc>) -> NewCanaryTrigger {
    NewCanaryTrigger {
        hit_kind: "fingerprint".into(),
        fingerprint_state: "valid".into(),
        fingerprint: Some(json!({"tz": "Europe/Berlin", "langs": ["de-DE", "en"], "cores": 8})),
        signals: Some(json!({"headless": false, "ratio": 1.5})),
        ..hit(token_uuid, n, occurred_at, "203.0.113.7")
    }
}

/// The triggered message, and a revoked one when the hit revoked the token.
fn announce_hit(token: &CanaryTokenRow, revoked: bool) -> Vec<OutboxMessage> {
    let message = |what: &str| OutboxMessage {
        subject: format!("canary.{}.{what}", token.uuid),
        msg_id: format!("{what}:{}:{}", token.uuid, token.trigger_count),
        headers: [("decnet-schema-version".to_owned(), "1".to_owned())].into(),
        body: serde_json::to_vec(&json!({"trigger_count": token.trigger_count})).unwrap(),
    };
    let mut out = vec![message("triggered")];
    if revoked {
        out.push(message("revoked"));
    }
    out
}

fn announce_revoke(token: &CanaryTokenRow) -> OutboxMessage {
    OutboxMessage {
        subject: format!("canary.{}.revoked", token.uuid),
        msg_id: format!("revoked:{}", token.uuid),
        headers: Default::default(),
        body: token.state.as_bytes().to_vec(),
    }
}

fn no_hit_announce(_: &CanaryTokenRow, _: bool) -> Vec<OutboxMessage> {
    unreachable!("nothing to announce")
}

fn no_revoke_announce(_: &CanaryTokenRow) -> OutboxMessage {
    unreachable!("nothing to announce")
}

/// The row a recorded trigger reads back as.
fn stored_trigger(new: &NewCanaryTrigger, repeat_count: i64) -> CanaryTriggerRow {
    CanaryTriggerRow {
        uuid: new.uuid,
        token_uuid: new.token_uuid,
        occurred_at: at_micros(new.occurred_at),
        channel: new.channel.clone(),
        method: new.method.clone(),
        src_ip: new.src_ip.clone(),
        peer_ip: new.peer_ip.clone(),
        attacker_uuid: new.attacker_uuid,
        user_agent: new.user_agent.clone(),
        request_path: new.request_path.clone(),
        dns_qname: new.dns_qname.clone(),
        headers: new.headers.clone(),
        hit_kind: new.hit_kind.clone(),
        fingerprint_state: new.fingerprint_state.clone(),
        flags: new.flags.clone(),
        suspected_scanner: new.suspected_scanner,
        scanner_reason: new.scanner_reason.clone(),
        repeat_count,
        fingerprint: new.fingerprint.clone(),
        signals: new.signals.clone(),
    }
}

async fn all_triggers(db: &Database, token_uuid: Uuid) -> Vec<CanaryTriggerRow> {
    db.canary_triggers(token_uuid, 100, None).await.unwrap()
}

#[tokio::test]
async fn a_minted_canary_token_reads_back_as_written() {
    on_both(|db| async move {
        let uuid = Uuid::from_u128(0xc0de_0001);
        let mint_uuid = Uuid::from_u128(0x3a11);
        let new = NewCanaryToken {
            kind: "dns",
            mint_uuid: Some(mint_uuid),
            fingerprint_nonce: Some("0123456789abcdef"),
            memo: Some("on the finance share"),
            created_at: fine(2),
            ..new_token(uuid, "MixedCaseSlug7")
        };
        let stored = db.insert_canary_token(&new).await.unwrap();
        let want = CanaryTokenRow {
            uuid,
            kind: "dns".into(),
            generator: "aws_credentials".into(),
            decky_name: "decoy-01".into(),
            placement_path: "/home/admin/.aws/credentials".into(),
            slug: "MixedCaseSlug7".into(),
            slug_key: "mixedcaseslug7".into(),
            mint_uuid: Some(mint_uuid),
            fingerprint_nonce: Some("0123456789abcdef".into()),
            state: "planted".into(),
            memo: Some("on the finance share".into()),
            created_by: "operator:alice".into(),
            created_at: at_micros(fine(2)),
            placed_at: None,
            last_triggered_at: None,
            trigger_count: 0,
            last_error: None,
            revoked_at: None,
            revoked_by: None,
            revoke_reason: None,
        };
        assert_eq!(stored, want, "{}", db.backend());
        assert_eq!(db.canary_token(uuid).await.unwrap(), Some(want.clone()));
        assert_eq!(
            db.canary_token_by_slug("mixedcaseslug7").await.unwrap(),
            Some(want.clone())
        );
        // The lookup is on the key exactly: the caller lower-cases.
        assert_eq!(
            db.canary_token_by_slug("MixedCaseSlug7").await.unwrap(),
            None
        );
        assert_eq!(
            db.canary_token(Uuid::from_u128(0xdead)).await.unwrap(),
            None
        );

        // A bare token: every optional column empty.
        let bare = mint(&db, 0xc0de_0002, "bare").await;
        assert_eq!(
            (bare.mint_uuid, &bare.fingerprint_nonce, &bare.memo),
            (None, &None, &None)
        );
        let elsewhere = db
            .insert_canary_token(&NewCanaryToken {
                decky_name: "decoy-02",
                created_at: t(0),
                ..new_token(Uuid::from_u128(0xc0de_0003), "elsewhere")
            })
            .await
            .unwrap();
        // By created_at, then uuid.
        let uuids =
            |rows: Vec<CanaryTokenRow>| -> Vec<Uuid> { rows.iter().map(|r| r.uuid).collect() };
        assert_eq!(
            uuids(db.canary_tokens(None, None).await.unwrap()),
            vec![elsewhere.uuid, bare.uuid, uuid]
        );
        assert_eq!(
            uuids(db.canary_tokens(Some("decoy-01"), None).await.unwrap()),
            vec![bare.uuid, uuid]
        );
        assert_eq!(
            uuids(
                db.canary_tokens(Some("decoy-02"), Some("planted"))
                    .await
                    .unwrap()
            ),
            vec![elsewhere.uuid]
        );
        assert_eq!(
            db.canary_tokens(None, Some("revoked")).await.unwrap(),
            vec![]
        );
    })
    .await;
}

fn constraint<T: std::fmt::Debug>(r: Result<T, StorageError>) {
    match r {
        Err(e @ StorageError::Constraint(_)) => assert!(!e.is_transient(), "{e}"),
        other => panic!("expected a constraint error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_slug_differing_only_in_case_is_refused() {
    on_both(|db| async move {
        let first = mint(&db, 1, "k7q2mzx4").await;
        constraint(
            db.insert_canary_token(&new_token(Uuid::from_u128(2), "K7Q2mzx4"))
                .await,
        );
        constraint(
            db.insert_canary_token(&new_token(Uuid::from_u128(3), "k7q2mzx4"))
                .await,
        );
        assert_eq!(db.canary_tokens(None, None).await.unwrap(), vec![first]);
    })
    .await;
}

#[tokio::test]
async fn a_recorded_hit_writes_its_row_counts_it_and_stages_its_announcement() {
    on_both(|db| async move {
        let token = mint(&db, 1, "slug1").await;
        let new = NewCanaryTrigger {
            suspected_scanner: true,
            scanner_reason: Some("known scanner range".into()),
            flags: json!({"tor_exit": true, "asn": 64500}),
            occurred_at: fine(5),
            ..hit(token.uuid, 1, t(0), "203.0.113.7")
        };
        let record = db
            .record_canary_hit(CS, &new, false, announce_hit)
            .await
            .unwrap();
        let after = CanaryTokenRow {
            trigger_count: 1,
            last_triggered_at: Some(at_micros(fine(5))),
            ..token.clone()
        };
        assert_eq!(
            record,
            HitRecord::Recorded {
                token: after.clone(),
                revoked: false
            },
            "{}",
            db.backend()
        );
        assert_eq!(
            db.canary_token(token.uuid).await.unwrap(),
            Some(after.clone())
        );
        assert_eq!(
            all_triggers(&db, token.uuid).await,
            vec![stored_trigger(&new, 0)]
        );
        let staged: Vec<OutboxMessage> = db
            .pending(CS, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.message)
            .collect();
        assert_eq!(staged, announce_hit(&after, false));

        // A DNS hit with nothing optional, announced by nothing: counted, nothing staged.
        let dns = NewCanaryTrigger {
            channel: "dns".into(),
            method: None,
            user_agent: None,
            request_path: None,
            dns_qname: Some("slug1.canary.example".into()),
            headers: None,
            ..hit(token.uuid, 2, t(6), "198.51.100.2")
        };
        let record = db
            .record_canary_hit(CS, &dns, false, |_, _| Vec::new())
            .await
            .unwrap();
        let HitRecord::Recorded { token: after, .. } = record else {
            panic!("the token is planted");
        };
        assert_eq!(
            (after.trigger_count, after.last_triggered_at),
            (2, Some(t(6)))
        );
        assert_eq!(
            all_triggers(&db, token.uuid).await,
            vec![stored_trigger(&dns, 0), stored_trigger(&new, 0)]
        );
        assert_eq!(db.pending_count(CS).await.unwrap(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_collected_fingerprint_revokes_the_token_and_later_hits_are_not_live() {
    on_both(|db| async move {
        let token = mint(&db, 1, "slug1").await;
        let new = fingerprint_hit(token.uuid, 1, fine(7));
        let record = db
            .record_canary_hit(CS, &new, true, announce_hit)
            .await
            .unwrap();
        let after = CanaryTokenRow {
            state: "revoked".into(),
            trigger_count: 1,
            last_triggered_at: Some(at_micros(fine(7))),
            revoked_at: Some(at_micros(fine(7))),
            revoked_by: Some("system".into()),
            revoke_reason: Some("fingerprint_collected".into()),
            ..token
        };
        assert_eq!(
            record,
            HitRecord::Recorded {
                token: after.clone(),
                revoked: true
            },
            "{}",
            db.backend()
        );
        assert_eq!(
            db.canary_token(after.uuid).await.unwrap(),
            Some(after.clone())
        );
        assert_eq!(
            all_triggers(&db, after.uuid).await,
            vec![stored_trigger(&new, 0)]
        );
        assert_eq!(db.pending_count(CS).await.unwrap(), 2);

        // The token is revoked now: a second hit writes and stages nothing.
        let again = db
            .record_canary_hit(
                CS,
                &fingerprint_hit(after.uuid, 2, t(8)),
                true,
                no_hit_announce,
            )
            .await
            .unwrap();
        assert_eq!(again, HitRecord::NotLive);
        assert_eq!(
            db.canary_token(after.uuid).await.unwrap(),
            Some(after.clone())
        );
        assert_eq!(all_triggers(&db, after.uuid).await.len(), 1);
        assert_eq!(db.pending_count(CS).await.unwrap(), 2);
    })
    .await;
}

#[tokio::test]
async fn hits_on_failed_revoked_or_unknown_tokens_are_not_live() {
    on_both(|db| async move {
        let failed = mint(&db, 1, "failed").await;
        db.report_canary_placement(failed.uuid, false, Some("read-only fs"), t(2))
            .await
            .unwrap();
        let revoked = mint(&db, 2, "revoked").await;
        db.revoke_canary_token(
            CS,
            revoked.uuid,
            "operator:bob",
            "rotated",
            t(2),
            announce_revoke,
        )
        .await
        .unwrap();
        let before = db.pending_count(CS).await.unwrap();
        for (n, uuid) in [
            (1, failed.uuid),
            (2, revoked.uuid),
            (3, Uuid::from_u128(0xdead)),
        ] {
            let record = db
                .record_canary_hit(
                    CS,
                    &hit(uuid, n, t(3), "203.0.113.7"),
                    false,
                    no_hit_announce,
                )
                .await
                .unwrap();
            assert_eq!(record, HitRecord::NotLive, "{}", db.backend());
            assert_eq!(all_triggers(&db, uuid).await, vec![]);
        }
        for uuid in [failed.uuid, revoked.uuid] {
            let row = db.canary_token(uuid).await.unwrap().unwrap();
            assert_eq!((row.trigger_count, row.last_triggered_at), (0, None));
        }
        assert_eq!(db.pending_count(CS).await.unwrap(), before);
    })
    .await;
}

#[tokio::test]
async fn a_repeated_hit_bumps_the_newest_row_of_its_source_and_the_counters() {
    on_both(|db| async move {
        let token = mint(&db, 1, "slug1").await;
        let (a, b) = ("203.0.113.7", "198.51.100.2");
        // Two rows from a (the newer second), a newer one from b.
        let hits = [
            hit(token.uuid, 1, t(1), a),
            hit(token.uuid, 2, t(2), a),
            hit(token.uuid, 3, t(3), b),
        ];
        for h in &hits {
            db.record_canary_hit(CS, h, false, |_, _| Vec::new())
                .await
                .unwrap();
        }
        assert!(db.repeat_canary_hit(token.uuid, a, fine(4)).await.unwrap());
        assert!(db.repeat_canary_hit(token.uuid, a, fine(5)).await.unwrap());
        assert_eq!(
            all_triggers(&db, token.uuid).await,
            vec![
                stored_trigger(&hits[2], 0),
                stored_trigger(&hits[1], 2),
                stored_trigger(&hits[0], 0),
            ],
            "{}",
            db.backend()
        );
        let row = db.canary_token(token.uuid).await.unwrap().unwrap();
        assert_eq!(
            (row.trigger_count, row.last_triggered_at),
            (5, Some(at_micros(fine(5))))
        );

        // No row of that source, or of that token: nothing changes.
        assert!(
            !db.repeat_canary_hit(token.uuid, "192.0.2.1", t(6))
                .await
                .unwrap()
        );
        assert!(
            !db.repeat_canary_hit(Uuid::from_u128(0xdead), a, t(6))
                .await
                .unwrap()
        );
        assert_eq!(
            db.canary_token(token.uuid).await.unwrap(),
            Some(row.clone())
        );

        // Nor once the token is revoked.
        let (revoked, _) = db
            .revoke_canary_token(
                CS,
                token.uuid,
                "operator:bob",
                "done",
                t(7),
                announce_revoke,
            )
            .await
            .unwrap()
            .unwrap();
        let triggers = all_triggers(&db, token.uuid).await;
        assert!(!db.repeat_canary_hit(token.uuid, a, t(8)).await.unwrap());
        assert_eq!(db.canary_token(token.uuid).await.unwrap(), Some(revoked));
        assert_eq!(all_triggers(&db, token.uuid).await, triggers);
    })
    .await;
}

#[tokio::test]
async fn placement_reports_move_only_planted_tokens() {
    on_both(|db| async move {
        let placed = mint(&db, 1, "placed").await;
        let after = db
            .report_canary_placement(placed.uuid, true, None, fine(2))
            .await
            .unwrap();
        let want = CanaryTokenRow {
            placed_at: Some(at_micros(fine(2))),
            ..placed
        };
        assert_eq!(after, Some(want.clone()), "{}", db.backend());
        assert_eq!(db.canary_token(want.uuid).await.unwrap(), Some(want));

        let failing = mint(&db, 2, "failing").await;
        let after = db
            .report_canary_placement(failing.uuid, false, Some("permission denied"), t(3))
            .await
            .unwrap();
        let failed = CanaryTokenRow {
            state: "failed".into(),
            last_error: Some("permission denied".into()),
            ..failing
        };
        assert_eq!(after, Some(failed.clone()));
        // From failed, neither a success nor another failure changes anything.
        for (ok, error) in [(true, None), (false, Some("again"))] {
            let after = db
                .report_canary_placement(failed.uuid, ok, error, t(4))
                .await
                .unwrap();
            assert_eq!(after, Some(failed.clone()));
        }

        let revoked = mint(&db, 3, "revoked").await;
        let (revoked, _) = db
            .revoke_canary_token(
                CS,
                revoked.uuid,
                "operator:bob",
                "rotated",
                t(3),
                announce_revoke,
            )
            .await
            .unwrap()
            .unwrap();
        for (ok, error) in [(true, None), (false, Some("late"))] {
            let after = db
                .report_canary_placement(revoked.uuid, ok, error, t(4))
                .await
                .unwrap();
            assert_eq!(after, Some(revoked.clone()));
        }
        assert_eq!(db.canary_token(revoked.uuid).await.unwrap(), Some(revoked));
        assert_eq!(
            db.report_canary_placement(Uuid::from_u128(0xdead), true, None, t(4))
                .await
                .unwrap(),
            None
        );
    })
    .await;
}

#[tokio::test]
async fn a_revoke_stages_one_message_and_revoking_again_changes_nothing() {
    on_both(|db| async move {
        let token = mint(&db, 1, "slug1").await;
        let (row, changed) = db
            .revoke_canary_token(
                CS,
                token.uuid,
                "operator:bob",
                "rotated",
                fine(3),
                announce_revoke,
            )
            .await
            .unwrap()
            .unwrap();
        let want = CanaryTokenRow {
            state: "revoked".into(),
            revoked_at: Some(at_micros(fine(3))),
            revoked_by: Some("operator:bob".into()),
            revoke_reason: Some("rotated".into()),
            ..token
        };
        assert_eq!((&row, changed), (&want, true), "{}", db.backend());
        assert_eq!(
            db.canary_token(want.uuid).await.unwrap(),
            Some(want.clone())
        );
        let staged = db.pending(CS, 10).await.unwrap();
        assert_eq!(staged.len(), 1);
        assert_eq!(staged[0].message, announce_revoke(&want));

        let again = db
            .revoke_canary_token(
                CS,
                want.uuid,
                "operator:carol",
                "again",
                t(4),
                no_revoke_announce,
            )
            .await
            .unwrap();
        assert_eq!(again, Some((want.clone(), false)));
        assert_eq!(db.canary_token(want.uuid).await.unwrap(), Some(want));
        assert_eq!(db.pending_count(CS).await.unwrap(), 1);

        // A failed token can be revoked; an unknown one is None with nothing staged.
        let failing = mint(&db, 2, "slug2").await;
        db.report_canary_placement(failing.uuid, false, Some("no such dir"), t(2))
            .await
            .unwrap();
        let (row, changed) = db
            .revoke_canary_token(
                CS,
                failing.uuid,
                "operator:bob",
                "cleanup",
                t(5),
                announce_revoke,
            )
            .await
            .unwrap()
            .unwrap();
        assert!(changed);
        assert_eq!(
            (
                row.state.as_str(),
                row.last_error.as_deref(),
                row.revoked_at
            ),
            ("revoked", Some("no such dir"), Some(t(5)))
        );
        assert_eq!(
            db.revoke_canary_token(
                CS,
                Uuid::from_u128(0xdead),
                "operator:bob",
                "x",
                t(5),
                no_revoke_announce
            )
            .await
            .unwrap(),
            None
        );
        assert_eq!(db.pending_count(CS).await.unwrap(), 2);
    })
    .await;
}

#[tokio::test]
async fn triggers_page_newest_first_from_a_cursor() {
    on_both(|db| async move {
        let token = mint(&db, 1, "slug1").await;
        let other = mint(&db, 2, "slug2").await;
        // Two hits share a time: the uuid orders them.
        let hits = [
            hit(token.uuid, 1, fine(1), "203.0.113.7"),
            hit(token.uuid, 2, fine(2), "203.0.113.7"),
            hit(token.uuid, 3, fine(2), "203.0.113.8"),
            hit(other.uuid, 4, fine(9), "203.0.113.7"),
        ];
        for h in &hits {
            db.record_canary_hit(CS, h, false, |_, _| Vec::new())
                .await
                .unwrap();
        }
        let first = db.canary_triggers(token.uuid, 2, None).await.unwrap();
        assert_eq!(
            first,
            vec![stored_trigger(&hits[2], 0), stored_trigger(&hits[1], 0)],
            "{}",
            db.backend()
        );
        let last = first.last().unwrap();
        let cursor = Some((last.occurred_at, last.uuid));
        let rest = db.canary_triggers(token.uuid, 2, cursor).await.unwrap();
        assert_eq!(rest, vec![stored_trigger(&hits[0], 0)]);
        let cursor = Some((rest[0].occurred_at, rest[0].uuid));
        assert_eq!(
            db.canary_triggers(token.uuid, 2, cursor).await.unwrap(),
            vec![]
        );
        assert_eq!(
            db.canary_triggers(token.uuid, 0, None).await.unwrap(),
            vec![]
        );
    })
    .await;
}

#[tokio::test]
async fn canary_rows_the_schema_refuses_are_constraint_errors_with_nothing_written() {
    on_both(|db| async move {
        let token = mint(&db, 1, "slug1").await;
        let base = |n| hit(token.uuid, n, t(2), "203.0.113.7");
        let refused = [
            // A fingerprint kept on a hit whose fingerprint did not validate, and signals.
            NewCanaryTrigger {
                fingerprint_state: "invalid_nonce".into(),
                ..fingerprint_hit(token.uuid, 1, t(2))
            },
            NewCanaryTrigger {
                signals: Some(json!({"headless": true})),
                ..base(2)
            },
            NewCanaryTrigger {
                hit_kind: "click".into(),
                ..base(3)
            },
            NewCanaryTrigger {
                fingerprint_state: "weird".into(),
                ..base(4)
            },
            NewCanaryTrigger {
                method: Some("POST".into()),
                ..base(5)
            },
            NewCanaryTrigger {
                dns_qname: Some("Slug1.Canary.Example".into()),
                ..base(6)
            },
            NewCanaryTrigger {
                user_agent: Some("x".repeat(1025)),
                ..base(7)
            },
            NewCanaryTrigger {
                headers: Some(json!({"cookie": "x".repeat(16 * 1024)})),
                ..base(8)
            },
        ];
        for bad in &refused {
            constraint(db.record_canary_hit(CS, bad, true, announce_hit).await);
        }
        assert_eq!(all_triggers(&db, token.uuid).await, vec![]);
        assert_eq!(
            db.canary_token(token.uuid).await.unwrap(),
            Some(token.clone())
        );
        assert_eq!(db.pending_count(CS).await.unwrap(), 0);

        // Tokens: a relative placement path, an unknown kind, a malformed nonce, a long
        // decoy name or memo.
        let long_name = "d".repeat(64);
        let long_memo = "m".repeat(513);
        let uuid = Uuid::from_u128(2);
        for bad in [
            NewCanaryToken {
                placement_path: "home/admin/.aws/credentials",
                ..new_token(uuid, "slug2")
            },
            NewCanaryToken {
                kind: "smtp",
                ..new_token(uuid, "slug2")
            },
            NewCanaryToken {
                fingerprint_nonce: Some("0123456789ABCDEF"),
                ..new_token(uuid, "slug2")
            },
            NewCanaryToken {
                fingerprint_nonce: Some("0123456789abcde"),
                ..new_token(uuid, "slug2")
            },
            NewCanaryToken {
                decky_name: &long_name,
                ..new_token(uuid, "slug2")
            },
            NewCanaryToken {
                memo: Some(&long_memo),
                ..new_token(uuid, "slug2")
            },
        ] {
            constraint(db.insert_canary_token(&bad).await);
        }
        assert_eq!(db.canary_tokens(None, None).await.unwrap(), vec![token]);
        // The longest decoy name and memo the schema takes.
        let fits = NewCanaryToken {
            decky_name: &long_name[1..],
            memo: Some(&long_memo[1..]),
            ..new_token(uuid, "slug2")
        };
        db.insert_canary_token(&fits).await.unwrap();
    })
    .await;
}

/// Services sharing one SQLite file start together (`decnet up`): each migrates, and none may
/// trip over another's half-applied migration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_starting_together_on_one_sqlite_file_all_migrate() {
    let tmp = tempfile::TempDir::new().unwrap();
    let url = format!("sqlite://{}", tmp.path().join("shared.db").display());
    let connects = (0..6).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { Database::connect(&url, &Options::default()).await })
    });
    let mut handles = Vec::new();
    handles.extend(connects);
    for handle in handles {
        handle.await.unwrap().expect("every service migrates");
    }
}
