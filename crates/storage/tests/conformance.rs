//! The storage conformance suite for tags, attackers, identities and the outbox: every test
//! runs on SQLite and on PostgreSQL (rules and canary tables have their own files).
//!
//! PostgreSQL tests use `DECNET_TEST_DATABASE_URL` (CI sets it to the local server) and a
//! fresh database per test, dropped afterwards. Without the variable they say they were
//! skipped; under `CI=true` a missing variable is a failure, so CI never passes silently.

mod common;

use common::{on_both, session_tags, t};

use decnet_storage::{
    AttackerSighting, Batch, Database, IdentityChange, Options, OutboxMessage, Scope, WriteOutcome,
};
use uuid::Uuid;

fn announce_new(outcome: &WriteOutcome) -> Vec<OutboxMessage> {
    if outcome.new_tags.is_empty() {
        return Vec::new();
    }
    vec![OutboxMessage {
        subject: "ttp.tagged".into(),
        msg_id: format!("tagged:{}", outcome.new_tags[0]),
        headers: [("decnet-schema-version".to_owned(), "1".to_owned())].into(),
        body: serde_json::to_vec(&outcome.new_tags).unwrap(),
    }]
}

#[tokio::test]
async fn a_replayed_batch_writes_nothing_and_announces_nothing() {
    on_both(|db| async move {
        let (attackers, tags) = session_tags("sess-1", "203.0.113.7");
        assert!(
            tags.len() >= 4,
            "the session yields real tags: {}",
            tags.len()
        );
        let first = db
            .write_tags("tagger", &attackers, &tags, announce_new)
            .await
            .unwrap();
        assert_eq!(
            first.new_tags,
            tags.iter().map(|t| t.uuid).collect::<Vec<_>>()
        );
        assert_eq!(first.new_attackers, vec![attackers[0].uuid]);
        let stored = db.tags().await.unwrap();
        let again = db
            .write_tags("tagger", &attackers, &tags, announce_new)
            .await
            .unwrap();
        assert_eq!(again, WriteOutcome::default());
        assert_eq!(db.tags().await.unwrap(), stored, "{}", db.backend());
        assert_eq!(db.tag_count().await.unwrap(), tags.len() as i64);
        assert_eq!(db.pending_count("tagger").await.unwrap(), 1);
    })
    .await;
}

#[tokio::test]
async fn stored_tags_read_back_as_written() {
    on_both(|db| async move {
        let (attackers, tags) = session_tags("sess-2", "198.51.100.9");
        db.write_tags("tagger", &attackers, &tags, |_| Vec::new())
            .await
            .unwrap();
        let stored = db.tags().await.unwrap();
        let mut want = tags.clone();
        want.sort_by_key(|t| t.uuid.to_string());
        assert_eq!(stored.len(), want.len());
        for (s, t) in stored.iter().zip(&want) {
            assert_eq!(s.uuid, t.uuid);
            assert_eq!(s.source_kind, t.source_kind.as_str());
            assert_eq!(s.source_id, &*t.source_id);
            assert_eq!(s.attacker_uuid, t.attacker_uuid);
            assert_eq!(s.session_id.as_deref(), t.session_id.as_deref());
            assert_eq!(s.decky_id.as_deref(), Some("decoy-01"));
            assert_eq!(s.technique_id, &*t.technique_id);
            assert_eq!(s.sub_technique_id.as_deref(), t.sub_technique_id.as_deref());
            assert_eq!(s.confidence, t.confidence);
            assert_eq!(s.rule_id, &*t.rule_id);
            assert_eq!(s.evidence, serde_json::to_value(&t.evidence).unwrap());
            assert_eq!(s.mitre_url, &*t.mitre_url);
            assert_eq!(s.created_at, t.created_at);
        }
    })
    .await;
}

#[tokio::test]
async fn the_outbox_holds_each_services_messages_apart() {
    on_both(|db| async move {
        let (attackers, tags) = session_tags("sess-3", "203.0.113.8");
        db.write_tags("tagger", &attackers, &tags, announce_new)
            .await
            .unwrap();
        let other = OutboxMessage {
            subject: "canary.x.revoked".into(),
            msg_id: "revoked:x".into(),
            headers: Default::default(),
            body: b"{}".to_vec(),
        };
        db.write_tags("canary", &[], &[], |_| vec![other.clone()])
            .await
            .unwrap();
        let mine = db.pending("tagger", 10).await.unwrap();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].message.subject, "ttp.tagged");
        assert_eq!(
            mine[0].message.headers.get("decnet-schema-version"),
            Some(&"1".to_owned())
        );
        db.record_publish_failure(mine[0].id, "no responders")
            .await
            .unwrap();
        assert_eq!(db.pending("tagger", 10).await.unwrap()[0].attempts, 1);
        db.delete_published("tagger", &[mine[0].id]).await.unwrap();
        assert_eq!(db.pending_count("tagger").await.unwrap(), 0);
        // Another service's rows are neither read nor deleted by this one.
        db.delete_published("tagger", &[mine[0].id + 1])
            .await
            .unwrap();
        assert_eq!(db.pending("canary", 10).await.unwrap()[0].message, other);
    })
    .await;
}

#[tokio::test]
async fn attackers_keep_their_first_and_last_sighting() {
    on_both(|db| async move {
        let uuid = Uuid::new_v4();
        let seen = |minute, ip: Option<&str>| AttackerSighting {
            uuid,
            ip: ip.map(str::to_owned),
            seen_at: t(minute),
        };
        let first = db
            .write_tags("tagger", &[seen(20, None)], &[], |_| Vec::new())
            .await
            .unwrap();
        // Known by uuid only: nothing for intel to look up yet.
        assert_eq!(first.new_attackers, Vec::<Uuid>::new());
        // A late, out-of-order replay and a later sighting with the address, which makes
        // the attacker new to intel.
        let later = db
            .write_tags(
                "tagger",
                &[seen(10, None), seen(30, Some("203.0.113.9"))],
                &[],
                |_| Vec::new(),
            )
            .await
            .unwrap();
        assert_eq!(later.new_attackers, vec![uuid]);
        assert_eq!(
            db.attacker(uuid).await.unwrap(),
            Some((Some("203.0.113.9".to_owned()), t(10), t(30)))
        );
    })
    .await;
}

#[tokio::test]
async fn rows_the_schema_refuses_are_permanent_errors_and_roll_back() {
    on_both(|db| async move {
        let (attackers, tags) = session_tags("sess-4", "203.0.113.10");
        let mut bad = tags[0].clone();
        bad.uuid = Uuid::new_v4();
        bad.confidence = 0.2;
        let batch = [tags[1].clone(), bad];
        let err = db
            .write_tags("tagger", &attackers, &batch, announce_new)
            .await
            .unwrap_err();
        assert!(!err.is_transient(), "{err}");
        // Nothing of the batch stayed: not the good tag, not the attacker, not the message.
        assert_eq!(db.tag_count().await.unwrap(), 0);
        assert_eq!(db.attacker(attackers[0].uuid).await.unwrap(), None);
        assert_eq!(db.pending_count("tagger").await.unwrap(), 0);
    })
    .await;
}

#[tokio::test]
async fn rollups_count_per_technique_within_a_scope() {
    on_both(|db| async move {
        let (a1, tags1) = session_tags("sess-5", "203.0.113.11");
        let (a2, tags2) = session_tags("sess-6", "203.0.113.12");
        db.write_tags("tagger", &a1, &tags1, |_| Vec::new())
            .await
            .unwrap();
        db.write_tags("tagger", &a2, &tags2, |_| Vec::new())
            .await
            .unwrap();
        let fleet = db.rollup(&Scope::Fleet).await.unwrap();
        let one = db.rollup(&Scope::Attacker(a1[0].uuid)).await.unwrap();
        let session = db.rollup(&Scope::Session("sess-5".into())).await.unwrap();
        assert_eq!(one, session);
        let ids: Vec<(&str, Option<&str>, i64)> = one
            .iter()
            .map(|r| {
                (
                    r.technique_id.as_str(),
                    r.sub_technique_id.as_deref(),
                    r.tag_count,
                )
            })
            .collect();
        assert_eq!(
            ids,
            vec![
                ("T1003", Some("T1003.008"), 1),
                ("T1033", None, 1),
                ("T1082", None, 1),
                ("T1110", None, 1),
                ("T1110", Some("T1110.001"), 1),
            ]
        );
        let discovery = fleet.iter().find(|r| r.technique_id == "T1082").unwrap();
        assert_eq!(discovery.tag_count, 2);
        assert_eq!(discovery.rule_ids, vec!["R0018".to_owned()]);
        assert_eq!(discovery.first_seen, t(6));
        assert_eq!(
            db.rollup(&Scope::Identity(Uuid::new_v4())).await.unwrap(),
            vec![]
        );
    })
    .await;
}

#[tokio::test]
async fn many_services_migrating_a_fresh_database_at_once_is_safe() {
    on_both(|db| async move {
        let runs: Vec<_> = (0..4)
            .map(|_| {
                let db = db.clone();
                tokio::spawn(async move { db.migrate().await })
            })
            .collect();
        for run in runs {
            run.await.unwrap().unwrap();
        }
        assert_eq!(db.tag_count().await.unwrap(), 0);
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_server_is_a_transient_error() {
    let options = Options {
        max_connections: 1,
        acquire_timeout: std::time::Duration::from_millis(500),
    };
    let err = Database::connect("postgres://postgres@127.0.0.1:1/test", &options)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let err = Database::connect("mysql://x", &options).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsupported database URL \"mysql://x\": expected sqlite://PATH or postgres://…"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn a_database_from_a_newer_binary_stops_start_up_naming_the_version() {
    on_both(|db| async move {
        match &db {
            Database::Sqlite(pool) => sqlx::query(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
                 VALUES (9999, 'from the future', 1, X'00', 0)",
            )
            .execute(pool)
            .await
            .map(|_| ())
            .unwrap(),
            Database::Postgres(pool) => sqlx::query(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
                 VALUES (9999, 'from the future', true, '\\x00'::bytea, 0)",
            )
            .execute(pool)
            .await
            .map(|_| ())
            .unwrap(),
        };
        let err = db.migrate().await.unwrap_err();
        assert!(err.to_string().contains("9999"), "{err}");
        assert!(!err.is_transient());
    })
    .await;
}

#[tokio::test]
async fn identity_bookkeeping_follows_merges_and_tags_take_the_attackers_identity() {
    on_both(|db| async move {
        let (attackers, tags) = session_tags("sess-id", "203.0.113.7");
        let member = attackers[0].uuid;
        let stranger = Uuid::from_u128(0x5157);
        let (winner, loser) = (Uuid::from_u128(0x1d01), Uuid::from_u128(0x1d02));
        let campaign = Uuid::from_u128(0xca01);

        // The loser forms first with both attackers (one never seen: a uuid-only row).
        let formed = [IdentityChange::Join {
            identity: loser,
            attackers: vec![member, stranger],
        }];
        let none = |_: &WriteOutcome| Vec::new();
        let batch = Batch {
            identity: &formed,
            sightings: &[],
            tags: &[],
        };
        db.write_batch("tagger", &batch, none).await.unwrap();
        assert_eq!(db.attacker_identity(member).await.unwrap(), Some(loser));
        assert_eq!(db.attacker_identity(stranger).await.unwrap(), Some(loser));
        let (ip, _, _) = db.attacker(stranger).await.unwrap().unwrap();
        assert_eq!(ip, None, "a member known only by uuid has no address");

        // Tags written after the join take the identity; the first sighting with an address
        // of a uuid-only member makes it new to intel.
        let outcome = db
            .write_tags("tagger", &attackers, &tags, none)
            .await
            .unwrap();
        assert_eq!(outcome.identities.get(&member), Some(&loser));
        assert_eq!(outcome.new_attackers, vec![member]);
        let stored = db.tags().await.unwrap();
        assert_eq!(stored.len(), tags.len());
        assert!(stored.iter().all(|t| t.identity_uuid == Some(loser)));

        // The merge moves attackers, not tags; a late link to the loser lands on the winner.
        let later = [
            IdentityChange::Merge { winner, loser },
            IdentityChange::Join {
                identity: loser,
                attackers: vec![Uuid::from_u128(0x5158)],
            },
            IdentityChange::Campaign {
                identity: winner,
                campaign,
            },
        ];
        let batch = Batch {
            identity: &later,
            sightings: &[],
            tags: &[],
        };
        db.write_batch("tagger", &batch, none).await.unwrap();
        assert_eq!(db.attacker_identity(member).await.unwrap(), Some(winner));
        assert_eq!(
            db.attacker_identity(Uuid::from_u128(0x5158)).await.unwrap(),
            Some(winner)
        );
        let row = db.identity(loser).await.unwrap().unwrap();
        assert_eq!(row.merged_into, Some(winner));
        let row = db.identity(winner).await.unwrap().unwrap();
        assert_eq!((row.merged_into, row.campaign_uuid), (None, Some(campaign)));
        assert!(
            db.tags()
                .await
                .unwrap()
                .iter()
                .all(|t| t.identity_uuid == Some(loser)),
            "later merges never rewrite tags"
        );
        // Merging an identity into itself (after following merges) changes nothing.
        let selfish = [IdentityChange::Merge {
            winner: loser,
            loser: winner,
        }];
        let batch = Batch {
            identity: &selfish,
            sightings: &[],
            tags: &[],
        };
        db.write_batch("tagger", &batch, none).await.unwrap();
        assert_eq!(
            db.identity(winner).await.unwrap().unwrap().merged_into,
            None
        );
    })
    .await;
}
