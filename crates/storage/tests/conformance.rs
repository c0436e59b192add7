//! The storage conformance suite: every test runs on SQLite and on PostgreSQL.
//!
//! PostgreSQL tests use `DECNET_TEST_DATABASE_URL` (CI sets it to the local server) and a
//! fresh database per test, dropped afterwards. Without the variable they say they were
//! skipped; under `CI=true` a missing variable is a failure, so CI never passes silently.

mod common;

use common::{on_both, session_tags, t};

use chrono::{DateTime, Utc};
use decnet_storage::{
    AttackerSighting, Batch, CanaryTokenRow, CanaryTriggerRow, Database, HitRecord, IdentityChange,
    NewCanaryToken, NewCanaryTrigger, NewRule, Options, OutboxMessage, Scope, StorageError,
    StoredRule, StoredRuleState, WriteOutcome,
};
use serde_json::json;
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

/// A time with nanoseconds, which the store cuts to microseconds.
fn fine(minute: u32) -> DateTime<Utc> {
    t(minute) + chrono::Duration::nanoseconds(123_456_789)
}

fn at_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap()
}

fn sha(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn rule<'a>(rule_id: &'a str, rule_version: u32, sha256: &'a str) -> NewRule<'a> {
    NewRule {
        rule_id,
        rule_version,
        sha256,
        source: "id: R0001\nname: discovery commands\n",
        source_path: "discovery/R0001.yaml",
        attack_release: "v17.1",
    }
}

fn announce_rule(r: &StoredRule) -> OutboxMessage {
    OutboxMessage {
        subject: format!("ttp.rule.{}", r.rule_id),
        msg_id: format!("rule:{}:{}", r.rule_id, r.seq),
        headers: [("decnet-schema-version".to_owned(), "1".to_owned())].into(),
        body: serde_json::to_vec(&json!({"seq": r.seq, "deleted": r.deleted})).unwrap(),
    }
}

fn state_message(rule_id: &str, what: &str) -> OutboxMessage {
    OutboxMessage {
        subject: format!("ttp.rule.{rule_id}.state"),
        msg_id: format!("state:{rule_id}:{what}"),
        headers: Default::default(),
        body: what.as_bytes().to_vec(),
    }
}

fn state(rule_id: &str, state: &str, set_at: DateTime<Utc>) -> StoredRuleState {
    StoredRuleState {
        rule_id: rule_id.to_owned(),
        state: state.to_owned(),
        confidence_max: (state == "clipped").then_some(0.5),
        expires_at: None,
        reason: (state != "enabled").then(|| "noisy on the build farm".to_owned()),
        set_by: "operator:alice".to_owned(),
        set_at,
    }
}

const RS: &str = "rulestore";
const BY: &str = "rulestore/a1";

async fn store(db: &Database, rule_id: &str) -> StoredRule {
    db.store_rule(RS, &rule(rule_id, 1, &sha(1)), BY, t(1), announce_rule)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_stored_rule_reads_back_as_stored_and_stages_its_announcement() {
    on_both(|db| async move {
        let digest = sha(0xab);
        let new = rule("R0001", 3, &digest);
        let stored = db
            .store_rule(RS, &new, BY, fine(1), announce_rule)
            .await
            .unwrap();
        let want = StoredRule {
            rule_id: "R0001".into(),
            rule_version: 3,
            sha256: digest.clone(),
            source: new.source.into(),
            source_path: "discovery/R0001.yaml".into(),
            attack_release: "v17.1".into(),
            seq: 1,
            updated_at: at_micros(fine(1)),
            updated_by: BY.into(),
            deleted: false,
        };
        assert_eq!(stored, want, "{}", db.backend());
        assert_eq!(
            db.rule_definition("R0001").await.unwrap(),
            Some(want.clone())
        );
        assert_eq!(db.rule_definitions().await.unwrap(), vec![want.clone()]);
        assert_eq!(db.rule_definition("R0002").await.unwrap(), None);

        let pending = db.pending(RS, 10).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].message, announce_rule(&want));
        assert_eq!(db.pending_count("tagger").await.unwrap(), 0);
    })
    .await;
}

#[tokio::test]
async fn every_definition_change_takes_the_next_seq_tombstones_included() {
    on_both(|db| async move {
        assert_eq!(store(&db, "R0001").await.seq, 1);
        assert_eq!(store(&db, "R0002").await.seq, 2);
        let v2 = db
            .store_rule(RS, &rule("R0001", 2, &sha(2)), BY, t(2), announce_rule)
            .await
            .unwrap();
        assert_eq!(
            (v2.seq, v2.rule_version, v2.sha256.as_str()),
            (3, 2, &*sha(2))
        );

        // A tombstone keeps the last definition and takes a seq of its own.
        let live = db.rule_definition("R0002").await.unwrap().unwrap();
        let gone = db
            .tombstone_rule(RS, "R0002", "rulestore/b2", fine(3), announce_rule)
            .await
            .unwrap()
            .unwrap();
        let want = StoredRule {
            seq: 4,
            deleted: true,
            updated_at: at_micros(fine(3)),
            updated_by: "rulestore/b2".into(),
            ..live
        };
        assert_eq!(gone, want);
        assert_eq!(db.rule_definition("R0002").await.unwrap(), Some(want));

        // Storing it again revives it.
        let back = store(&db, "R0002").await;
        assert_eq!((back.seq, back.deleted), (5, false));
        let all = db.rule_definitions().await.unwrap();
        let seqs: Vec<(&str, i64, bool)> = all
            .iter()
            .map(|r| (r.rule_id.as_str(), r.seq, r.deleted))
            .collect();
        assert_eq!(seqs, vec![("R0001", 3, false), ("R0002", 5, false)]);

        // One announcement per change, in change order.
        let ids: Vec<String> = db
            .pending(RS, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.message.msg_id)
            .collect();
        assert_eq!(
            ids,
            ["R0001:1", "R0002:2", "R0001:3", "R0002:4", "R0002:5"].map(|s| format!("rule:{s}"))
        );
    })
    .await;
}

#[tokio::test]
async fn concurrent_definition_changes_never_share_a_seq() {
    on_both(|db| async move {
        let writers: Vec<_> = (1..=8)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move {
                    let id = format!("R{i:04}");
                    db.store_rule(RS, &rule(&id, 1, &sha(1)), BY, t(1), announce_rule)
                        .await
                        .map(|r| r.seq)
                })
            })
            .collect();
        let mut seqs = Vec::new();
        for w in writers {
            seqs.push(w.await.unwrap().unwrap());
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=8).collect::<Vec<i64>>(), "{}", db.backend());
    })
    .await;
}

#[tokio::test]
async fn tombstoning_an_unknown_or_deleted_rule_changes_and_stages_nothing() {
    on_both(|db| async move {
        let never = |_: &StoredRule| -> OutboxMessage { unreachable!("nothing to announce") };
        assert_eq!(
            db.tombstone_rule(RS, "R0009", BY, t(1), never)
                .await
                .unwrap(),
            None
        );
        store(&db, "R0001").await;
        db.tombstone_rule(RS, "R0001", BY, t(2), announce_rule)
            .await
            .unwrap()
            .unwrap();
        let before = db.rule_definition("R0001").await.unwrap();
        assert_eq!(
            db.tombstone_rule(RS, "R0001", BY, t(3), never)
                .await
                .unwrap(),
            None
        );
        assert_eq!(db.rule_definition("R0001").await.unwrap(), before);
        assert_eq!(db.pending_count(RS).await.unwrap(), 2);
        // No seq was used up by the refusals.
        assert_eq!(store(&db, "R0002").await.seq, 3);
    })
    .await;
}

#[tokio::test]
async fn rule_states_set_replace_and_clear() {
    on_both(|db| async move {
        store(&db, "R0001").await;
        store(&db, "R0002").await;
        let before = db.pending_count(RS).await.unwrap();
        assert_eq!(db.rule_state("R0001").await.unwrap(), None);

        let disabled = state("R0001", "disabled", fine(5));
        db.set_rule_state(RS, &disabled, state_message("R0001", "disabled"))
            .await
            .unwrap();
        let want = StoredRuleState {
            set_at: at_micros(fine(5)),
            ..disabled
        };
        assert_eq!(
            db.rule_state("R0001").await.unwrap(),
            Some(want),
            "{}",
            db.backend()
        );

        let clipped = StoredRuleState {
            confidence_max: Some(0.35),
            expires_at: Some(fine(30)),
            ..state("R0001", "clipped", fine(6))
        };
        db.set_rule_state(RS, &clipped, state_message("R0001", "clipped"))
            .await
            .unwrap();
        let want = StoredRuleState {
            expires_at: Some(at_micros(fine(30))),
            set_at: at_micros(fine(6)),
            ..clipped
        };
        assert_eq!(db.rule_state("R0001").await.unwrap(), Some(want.clone()));
        let enabled = state("R0002", "enabled", t(7));
        db.set_rule_state(RS, &enabled, state_message("R0002", "enabled"))
            .await
            .unwrap();
        assert_eq!(db.rule_states().await.unwrap(), vec![want, enabled]);

        assert!(
            db.clear_rule_state(RS, "R0001", state_message("R0001", "clear-1"))
                .await
                .unwrap()
        );
        assert_eq!(db.rule_state("R0001").await.unwrap(), None);
        // Clearing nothing is no error, and its message is staged all the same.
        assert!(
            !db.clear_rule_state(RS, "R0001", state_message("R0001", "clear-2"))
                .await
                .unwrap()
        );
        let staged: Vec<OutboxMessage> = db
            .pending(RS, 20)
            .await
            .unwrap()
            .into_iter()
            .skip(before as usize)
            .map(|p| p.message)
            .collect();
        assert_eq!(
            staged,
            vec![
                state_message("R0001", "disabled"),
                state_message("R0001", "clipped"),
                state_message("R0002", "enabled"),
                state_message("R0001", "clear-1"),
                state_message("R0001", "clear-2"),
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn states_expire_soonest_first_unless_set_again_meanwhile() {
    on_both(|db| async move {
        for id in ["R0001", "R0002", "R0003"] {
            store(&db, id).await;
        }
        assert_eq!(db.next_rule_expiry().await.unwrap(), None);
        let expiring = |id: &str, minute| StoredRuleState {
            expires_at: Some(fine(minute)),
            ..state(id, "disabled", t(1))
        };
        for s in [
            expiring("R0001", 10),
            expiring("R0002", 5),
            state("R0003", "disabled", t(1)),
        ] {
            db.set_rule_state(RS, &s, state_message(&s.rule_id, "set"))
                .await
                .unwrap();
        }
        assert_eq!(
            db.next_rule_expiry().await.unwrap(),
            Some(at_micros(fine(5)))
        );
        let ids = |states: Vec<StoredRuleState>| -> Vec<String> {
            states.into_iter().map(|s| s.rule_id).collect()
        };
        assert_eq!(
            ids(db.expired_rule_states(t(5)).await.unwrap()),
            Vec::<String>::new()
        );
        assert_eq!(ids(db.expired_rule_states(t(7)).await.unwrap()), ["R0002"]);
        // Inclusive: a state expiring exactly now has expired.
        let due = db.expired_rule_states(fine(10)).await.unwrap();
        assert_eq!(ids(due.clone()), ["R0002", "R0001"]);
        let before = db.pending_count(RS).await.unwrap();

        assert!(
            db.expire_rule_state(RS, &due[0], state_message("R0002", "expired"))
                .await
                .unwrap()
        );
        assert_eq!(db.rule_state("R0002").await.unwrap(), None);
        assert_eq!(db.pending_count(RS).await.unwrap(), before + 1);
        // Expiring it again finds nothing to expire.
        assert!(
            !db.expire_rule_state(RS, &due[0], state_message("R0002", "again"))
                .await
                .unwrap()
        );

        // R0001 is set again (same expiry, later set_at) between the read and the expiry,
        // and then with a new expiry: neither is reverted, nor is anything announced.
        let renewed = StoredRuleState {
            set_at: t(9),
            ..expiring("R0001", 10)
        };
        db.set_rule_state(RS, &renewed, state_message("R0001", "renewed"))
            .await
            .unwrap();
        assert!(
            !db.expire_rule_state(RS, &due[1], state_message("R0001", "expired"))
                .await
                .unwrap()
        );
        let extended = StoredRuleState {
            expires_at: Some(t(40)),
            ..due[1].clone()
        };
        db.set_rule_state(RS, &extended, state_message("R0001", "extended"))
            .await
            .unwrap();
        assert!(
            !db.expire_rule_state(RS, &due[1], state_message("R0001", "expired"))
                .await
                .unwrap()
        );
        assert_eq!(db.rule_state("R0001").await.unwrap(), Some(extended));
        assert_eq!(db.pending_count(RS).await.unwrap(), before + 3);
        assert_eq!(db.next_rule_expiry().await.unwrap(), Some(t(40)));
    })
    .await;
}

#[tokio::test]
async fn rule_rows_the_schema_refuses_are_constraint_errors() {
    on_both(|db| async move {
        let constraint = |r: Result<(), StorageError>| match r {
            Err(e @ StorageError::Constraint(_)) => assert!(!e.is_transient(), "{e}"),
            other => panic!("expected a constraint error, got {other:?}"),
        };
        store(&db, "R0001").await;
        let before = db.pending_count(RS).await.unwrap();

        // A state for a rule the store never held: the foreign key.
        let orphan = state("R0042", "disabled", t(1));
        constraint(
            db.set_rule_state(RS, &orphan, state_message("R0042", "x"))
                .await,
        );
        // Clipped without a ceiling; disabled without a reason; a ceiling above 1.
        let unclipped = StoredRuleState {
            confidence_max: None,
            ..state("R0001", "clipped", t(1))
        };
        let unexplained = StoredRuleState {
            reason: None,
            ..state("R0001", "disabled", t(1))
        };
        let high = StoredRuleState {
            confidence_max: Some(1.5),
            ..state("R0001", "clipped", t(1))
        };
        let unknown = state("R0001", "paused", t(1));
        for bad in [unclipped, unexplained, high, unknown] {
            constraint(
                db.set_rule_state(RS, &bad, state_message("R0001", "x"))
                    .await,
            );
        }
        assert_eq!(db.rule_states().await.unwrap(), vec![]);

        // Definitions: a malformed id, digest, version or writer.
        let digest = sha(1);
        let upper = sha(0xab).to_uppercase();
        for (new, by) in [
            (rule("R12", 1, &digest), BY),
            (rule("R0002", 1, "abc"), BY),
            (rule("R0002", 1, &upper), BY),
            (rule("R0002", 0, &digest), BY),
            (rule("R0002", u32::MAX, &digest), BY),
            (rule("R0002", 1, &digest), "operator:alice"),
            (
                NewRule {
                    source_path: "/etc/decnet/rules/R0002.yaml",
                    ..rule("R0002", 1, &digest)
                },
                BY,
            ),
        ] {
            constraint(
                db.store_rule(RS, &new, by, t(2), announce_rule)
                    .await
                    .map(|_| ()),
            );
        }
        let huge = "x".repeat(512 * 1024 + 1);
        let oversized = NewRule {
            source: &huge,
            ..rule("R0002", 1, &digest)
        };
        constraint(
            db.store_rule(RS, &oversized, BY, t(2), announce_rule)
                .await
                .map(|_| ()),
        );
        assert_eq!(db.rule_definitions().await.unwrap().len(), 1);
        // Nothing of a refused write was staged.
        assert_eq!(db.pending_count(RS).await.unwrap(), before);
    })
    .await;
}

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
