//! What the storage tests share: running a test on both backends, the shipped rule pack and
//! real tags from it.

#![allow(dead_code, reason = "each test file uses its own part of the harness")]

use std::future::Future;
use std::path::Path;
use std::sync::LazyLock;

use chrono::{DateTime, TimeZone, Utc};
use decnet_storage::{AttackerSighting, Database, Options};
use decnet_test_support::FreshPostgres;
use decnet_ttp::fanout::from_message;
use decnet_ttp::{Pack, RuleIndex, Tag, load_dir};
use serde_json::json;

/// The shipped pack, loaded once.
pub(crate) static PACK: LazyLock<Pack> = LazyLock::new(|| {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/ttp");
    load_dir(&dir).unwrap().pack
});

/// 2026-12-04 10:`minute`:00 UTC.
pub(crate) fn t(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, 10, minute, 0).unwrap()
}

/// Real tags: a session with discovery commands and a brute force, through the engine.
pub(crate) fn session_tags(session: &str, ip: &str) -> (Vec<AttackerSighting>, Vec<Tag>) {
    let attempts: Vec<_> = (0..6)
        .map(|i| {
            json!({"username": "root", "password": format!("pw{i}"), "result": "failure",
            "ts": format!("2026-12-04T10:00:0{i}Z")})
        })
        .collect();
    let body = json!({"session_id": session, "attacker_ip": ip, "decky_id": "decoy-01",
        "service": "ssh", "ended_at": "2026-12-04T10:05:00Z", "duration_s": 300.0,
        "commands": [{"command_text": "uname -a; whoami", "ts": "2026-12-04T10:01:00Z"},
                     {"command_text": "cat /etc/shadow", "ts": "2026-12-04T10:02:00Z"}],
        "auth_attempts": attempts});
    let index = RuleIndex::new(&PACK);
    let mut tags = Vec::new();
    let mut attackers = Vec::new();
    for event in from_message("attacker.session.ended", &body)
        .unwrap()
        .events
    {
        tags.extend(index.evaluate(&event, t(6)).tags);
        let sighting = AttackerSighting {
            uuid: event.attacker_uuid.unwrap(),
            ip: Some(ip.to_owned()),
            seen_at: event.ts.unwrap_or(t(5)),
        };
        if !attackers.contains(&sighting) {
            attackers.push(sighting);
        }
    }
    (attackers, tags)
}

/// Run `body` on SQLite, then on PostgreSQL when configured.
pub(crate) async fn on_both<F, Fut>(body: F)
where
    F: Fn(Database) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("decnet.db").display());
    let db = Database::connect(&url, &Options::default()).await.unwrap();
    body(db.clone()).await;
    db.close().await;

    let Some(pg) = FreshPostgres::create("the PostgreSQL half of this test").await else {
        return;
    };
    let db = Database::connect(&pg.url, &Options::default())
        .await
        .unwrap();
    let outcome = tokio::spawn(body(db.clone())).await;
    db.close().await;
    pg.remove().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
}

/// A time with nanoseconds, which the store cuts to microseconds.
pub(crate) fn fine(minute: u32) -> DateTime<Utc> {
    t(minute) + chrono::Duration::nanoseconds(123_456_789)
}

/// `t` cut to the microseconds the store keeps.
pub(crate) fn at_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap()
}
