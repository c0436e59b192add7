//! Rule definitions and rule states (`ttp_rule`, `ttp_rule_state`) on SQLite and on PostgreSQL.
//!
//! PostgreSQL halves use `DECNET_TEST_DATABASE_URL` (CI sets it) and a fresh database per test;
//! without the variable they say they were skipped, and under `CI=true` that is a failure.

mod common;

use common::{at_micros, fine, on_both, t};

use chrono::{DateTime, Utc};
use decnet_storage::{Database, NewRule, OutboxMessage, StorageError, StoredRule, StoredRuleState};
use serde_json::json;

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
