//! What the API's integration tests share: a seeded tag set and an in-process rule store.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use decnet_ops::Ops;
use decnet_storage::Database;
use tokio::sync::watch;

/// The winner of the seeded merge.
pub const WINNER: &str = "11111111-1111-4111-8111-111111111111";
/// The identity merged into it.
pub const MERGED: &str = "22222222-2222-4222-8222-222222222222";
/// The attacker of the merged identity.
pub const ATTACKER: &str = "33333333-3333-4333-8333-333333333333";

/// Tags of two identities (one merged into the other) and of one attacker, a sub-technique
/// and a technique under two tactics (SQLite).
pub async fn seed(db: &Database) {
    let Database::Sqlite(pool) = db else {
        panic!("seeded on SQLite")
    };
    let at = "'2026-12-01T00:00:00.000000Z'";
    sqlx::query(&format!(
        "INSERT INTO identity VALUES (?, NULL, NULL, {at}, {at}), (?, NULL, ?, {at}, {at})"
    ))
    .bind(WINNER)
    .bind(MERGED)
    .bind(WINNER)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(&format!(
        "INSERT INTO attacker VALUES (?, '203.0.113.7', ?, {at}, {at})"
    ))
    .bind(ATTACKER)
    .bind(MERGED)
    .execute(pool)
    .await
    .unwrap();
    let rows = [
        (
            "a",
            Some(ATTACKER),
            None,
            "TA0006",
            "T1110",
            Some("T1110.001"),
            "R0001",
            "01",
        ),
        (
            "b",
            Some(ATTACKER),
            None,
            "TA0006",
            "T1110",
            Some("T1110.001"),
            "R0002",
            "02",
        ),
        (
            "c",
            None,
            Some(WINNER),
            "TA0006",
            "T1110",
            None,
            "R0003",
            "03",
        ),
        (
            "d",
            Some(ATTACKER),
            None,
            "TA0001",
            "T1078",
            None,
            "R0004",
            "04",
        ),
        (
            "e",
            Some(ATTACKER),
            None,
            "TA0003",
            "T1078",
            None,
            "R0004",
            "05",
        ),
    ];
    for (i, (id, att, ident, tactic, tech, sub, rule, sec)) in rows.into_iter().enumerate() {
        sqlx::query(
            "INSERT INTO ttp_tag VALUES (?, 'auth_attempt', ?, ?, ?, 's1', 'decoy-01', ?, ?, ?, \
             0.8, ?, 1, '{\"username\": \"root\"}', 'enterprise-v18.1', \
             'https://attack.mitre.org/techniques/T1110', ?)",
        )
        .bind(format!("44444444-4444-4444-8444-44444444444{i}"))
        .bind(id)
        .bind(att)
        .bind(ident)
        .bind(tactic)
        .bind(tech)
        .bind(sub)
        .bind(rule)
        .bind(format!("2026-12-02T00:00:{sec}.000000Z"))
        .execute(pool)
        .await
        .unwrap();
    }
}

/// A rule store over a copy of the repository's pack, ready, and its stop handle.
pub struct Store {
    pub ops: Arc<Ops>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), decnet_rulestore::RulestoreError>>,
}

impl Store {
    /// Start one on `dir/rules` and wait until it is ready.
    pub async fn start(nats: &str, database_url: &str, dir: &Path) -> Store {
        let rules = dir.join("rules");
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/ttp");
        decnet_test_support::copy_dir(&shipped, &rules).unwrap();
        let mut config = decnet_rulestore::RulestoreConfig::new(nats, database_url, rules);
        config.connect_patience = Duration::from_secs(5);
        let ops = Ops::new();
        let (stop, shutdown) = watch::channel(false);
        let task = {
            let ops = Arc::clone(&ops);
            tokio::spawn(async move { decnet_rulestore::run_with(&config, &ops, shutdown).await })
        };
        for _ in 0..400 {
            if ops.readiness().0 {
                return Store { ops, stop, task };
            }
            assert!(
                !task.is_finished(),
                "the rule store stopped: {}",
                ops.readiness().1
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the rule store is not ready: {}", ops.readiness().1);
    }

    /// Stop it and wait.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap().unwrap();
    }
}
