//! The expiry rules of RULES.md §3 on the store's own clock, without a bus: a state reverts
//! exactly when its time comes, to the default, as `decnet:expiry`, with `auto_revert`; a state
//! replaced before the timer ran is left alone.

mod common;

use chrono::{TimeDelta, TimeZone, Utc};
use decnet_proto::control::StateSetRequest;
use decnet_rulestore::states::{self, EXPIRY_SETTER};
use decnet_rulestore::{Definitions, RulestoreMetrics};
use decnet_storage::{Database, Options};
use serde_json::Value;

async fn store() -> (tempfile::TempDir, Database) {
    let tmp = tempfile::TempDir::new().unwrap();
    let dir = tmp.path().join("rules");
    common::copy_pack(&dir);
    let url = format!("sqlite://{}", tmp.path().join("store.db").display());
    let db = Database::connect(&url, &Options::default()).await.unwrap();
    let mut defs = Definitions::open(&dir, db.clone(), "test", RulestoreMetrics::default())
        .await
        .unwrap();
    defs.load_all(Utc::now()).await.unwrap();
    (tmp, db)
}

fn disable(rule: &str, expires: chrono::DateTime<Utc>) -> StateSetRequest {
    StateSetRequest {
        rule_id: rule.into(),
        state: "disabled".into(),
        confidence_max: None,
        expires_at: Some(expires.to_rfc3339()),
        reason: Some("noisy".into()),
        set_by: "alice".into(),
    }
}

#[tokio::test]
async fn a_state_reverts_exactly_at_its_expiry_and_a_replaced_one_is_kept() {
    let (_tmp, db) = store().await;
    let t0 = Utc.with_ymd_and_hms(2026, 12, 4, 8, 0, 0).unwrap();
    let four_hours = t0 + TimeDelta::hours(4);
    for rule in ["R0016", "R0017"] {
        let valid = states::validate(&disable(rule, four_hours), |_| true, t0).unwrap();
        states::set(&db, valid, t0).await.unwrap();
    }
    // R0017 is set again, for longer, before the first expiry.
    let later = t0 + TimeDelta::hours(8);
    let valid = states::validate(&disable("R0017", later), |_| true, t0).unwrap();
    states::set(&db, valid, t0 + TimeDelta::minutes(1))
        .await
        .unwrap();
    assert_eq!(db.next_rule_expiry().await.unwrap(), Some(four_hours));

    let early = four_hours - TimeDelta::microseconds(1);
    assert_eq!(
        states::expire_due(&db, early).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        states::expire_due(&db, four_hours).await.unwrap(),
        vec!["R0016".to_owned()]
    );
    assert!(db.rule_state("R0016").await.unwrap().is_none());
    assert_eq!(
        db.rule_state("R0017").await.unwrap().unwrap().expires_at,
        Some(later)
    );
    assert_eq!(db.next_rule_expiry().await.unwrap(), Some(later));

    let pending = db.pending("rulestore", 100).await.unwrap();
    let revert: Value = serde_json::from_slice(&pending.last().unwrap().message.body).unwrap();
    assert_eq!(
        pending.last().unwrap().message.subject,
        "ttp.rule.state.R0016"
    );
    assert_eq!(revert["state"], "enabled");
    assert_eq!(revert["confidence_max"], Value::Null);
    assert_eq!(revert["reason"], Value::Null);
    assert_eq!(revert["expires_at"], Value::Null);
    assert_eq!(revert["set_by"], EXPIRY_SETTER);
    assert_eq!(revert["auto_revert"], true);
    assert_eq!(revert["set_at"], "2026-12-04T12:00:00Z");
}
