//! Intel and the real tagger with the shipped rule pack (issue 8): an attacker whose mock
//! verdicts are AbuseIPDB category 18 at score 95 and ThreatFox `botnet_cc` gets exactly the
//! intel tags of RULES.md §8 — R0054 T1110 at 0.70 × 0.95 = 0.665, R0057 T1071 and
//! T1588.001 at 0.80 × 1.0 — and nothing from GreyNoise (not seen) or Feodo (not listed).
//! Refreshes with the same verdict add no tag, whether the stream drops the repeated msg id
//! or a score drift within the decile gets a new message through; a changed verdict does.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use decnet_intel::clock::ManualClock;
use decnet_ops::Ops;
use decnet_storage::StoredTag;
use decnet_tagger::TaggerConfig;
use support::mock::{abuse, fox};
use support::{Reply, World, until, uuid_of};
use tokio::sync::watch;

const A: &str = "203.0.113.7";

fn summary(tags: &[StoredTag]) -> BTreeSet<String> {
    tags.iter()
        .map(|t| {
            let technique = t.sub_technique_id.as_deref().unwrap_or(&t.technique_id);
            format!("{} {}/{technique}@{}", t.rule_id, t.tactic, t.confidence)
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Wait until the tagger has settled every message on EVENTS.
async fn tagger_caught_up(world: &World) {
    let stream = world.js.get_stream("EVENTS").await.unwrap();
    until("the tagger to catch up", async || {
        let info = stream.consumer_info("tagger").await.ok()?;
        (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abuseipdb_18_at_95_and_threatfox_botnet_cc_give_exactly_the_spec_tags_once() {
    let world = World::new().await;
    world
        .mock
        .set("abuseipdb", A, Reply::Json(200, abuse(A, 95, &[&[18]])));
    let c2 = format!("{A}:443");
    world
        .mock
        .set("threatfox", A, Reply::Json(200, fox(&[(&c2, "botnet_cc")])));
    // The tagger stamps attackers with the real time; the intel clock starts there too, so
    // the refresh window (7 days of `last_seen`) holds wherever the test runs.
    let clock = ManualClock::new(Utc::now());
    let mut config = world.config();
    config.clock = Arc::new(clock.clone());

    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/ttp");
    let tagger_config = TaggerConfig::new(&world.nats.url(), &world.database_url, Some(rules));
    let ops = Ops::new();
    let (stop, shutdown) = watch::channel(false);
    let tagger = {
        let ops = Arc::clone(&ops);
        tokio::spawn(async move { decnet_tagger::run_with(&tagger_config, &ops, shutdown).await })
    };
    until("the tagger", async || ops.readiness().0.then_some(())).await;
    let intel = world.start(config).await;

    world.observe(A, 0).await;
    let tags = until("three intel tags", async || {
        let tags = world.db.tags().await.unwrap();
        (tags.len() >= 3).then_some(tags)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tags_after_first = world.db.tags().await.unwrap();
    assert_eq!(tags_after_first.len(), tags.len());
    assert_eq!(
        summary(&tags_after_first),
        set(&[
            "R0054 TA0006/T1110@0.665",
            "R0057 TA0011/T1071@0.8",
            "R0057 TA0042/T1588.001@0.8",
        ])
    );
    let row = world.row_when(A, |r| r.verdict_digest.is_some()).await;
    for t in &tags_after_first {
        assert_eq!(t.attacker_uuid, Some(uuid_of(A)));
        assert!(
            t.source_id.starts_with(&format!("{}:", row.uuid)),
            "{}",
            t.source_id
        );
    }

    // Pass 2, a day later, same verdicts: same digest, so the stream drops the message.
    clock.advance(TimeDelta::hours(25));
    let second = world.row_when(A, |r| r.cached_at != row.cached_at).await;
    assert_eq!(second.verdict_digest, row.verdict_digest);
    tokio::time::sleep(Duration::from_millis(300)).await;
    tagger_caught_up(&world).await;
    assert_eq!(world.enriched().await.len(), 1);
    assert_eq!(world.db.tags().await.unwrap(), tags_after_first);

    // Pass 3: the score drifts within its decile. The digest changes, the message gets
    // through, and the tagger's per-provider source ids do not: still no new tag.
    world
        .mock
        .set("abuseipdb", A, Reply::Json(200, abuse(A, 97, &[&[18]])));
    clock.advance(TimeDelta::hours(25));
    let third = world.row_when(A, |r| r.cached_at != second.cached_at).await;
    assert_ne!(third.verdict_digest, row.verdict_digest);
    until("the third pass's message", async || {
        (world.enriched().await.len() == 2).then_some(())
    })
    .await;
    tagger_caught_up(&world).await;
    assert_eq!(world.db.tags().await.unwrap(), tags_after_first);

    // Pass 4, the control: a changed ThreatFox verdict is a new source with new tags.
    world.mock.set(
        "threatfox",
        A,
        Reply::Json(200, fox(&[(&c2, "botnet_cc"), (A, "payload_delivery")])),
    );
    clock.advance(TimeDelta::hours(25));
    until("the changed verdict's tags", async || {
        let tags = world.db.tags().await.unwrap();
        (tags.len() >= 6).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = world.db.tags().await.unwrap();
    let new: Vec<StoredTag> = all
        .iter()
        .filter(|t| !tags_after_first.contains(t))
        .cloned()
        .collect();
    assert_eq!(
        summary(&new),
        set(&[
            "R0057 TA0011/T1071@0.8",
            "R0057 TA0011/T1105@0.75",
            "R0057 TA0042/T1588.001@0.8",
        ])
    );
    assert_eq!(all.len(), 6);

    intel.stop().await;
    let _ = stop.send(true);
    tagger.await.unwrap().unwrap();
}
