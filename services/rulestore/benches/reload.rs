//! How long a rule change takes to reach the taggers, against a bare JetStream round trip
//! measured in the same run on the same server.
//!
//! `cargo bench -p decnet-rulestore --bench reload [-- EDITS]` (default 200) starts a private
//! nats-server, the rule store in this process on a copy of the shipped pack (SQLite in a
//! temporary directory) and three tagger rule feeds following RULES. Then, one change at a
//! time (each waits for every replica, then 20 ms, so the watcher's settle window never
//! merges two):
//!
//! 1. save → swap: EDITS saves of `R0015.yaml` (write a temporary, rename it over the rule)
//!    that change only its description; from just after the rename until each feed's live
//!    index holds the new description.
//! 2. disable → effect: EDITS state requests on `R0016`, alternating
//!    `decnet.rulestore.state.set` (disabled) and `decnet.rulestore.state.clear`; from just
//!    before the request until each feed's index shows the new mode.
//! 3. baseline: EDITS publishes on a `BENCH` stream kept like RULES (one message per subject)
//!    and read by an ordered consumer like the feed's; from just before the publish until the
//!    consumer has the message.
//!
//! A core subscription on the rule's subject marks when the store's message is on the bus,
//! which splits each latency into the store's part and the feeds' part, and one index rebuild
//! with the edited rule is timed on its own (no bus, nothing else running): a feed's share of a
//! save. It prints p50/p95/p99/max, the ratios to the baseline and the targets (save p95 <
//! 50 ms, disable p95 < 20 ms) as PASS or MISS; a miss is reported, never a failure.

#![allow(
    clippy::disallowed_macros,
    reason = "the report on stdout is this program's product"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_nats::jetstream;
use bytes::Bytes;
use decnet_proto::control::{RULESTORE_STATE_CLEAR, RULESTORE_STATE_SET};
use decnet_proto::payload::rules::{RuleReloaded, RuleStateKind, RuleStateMessage};
use decnet_tagger::feed::{FeedStatus, RuleFeed};
use decnet_ttp::RuleIndex;
use decnet_ttp::state::RuleMode;
use futures_util::StreamExt;
use futures_util::future::join_all;
use serde_json::json;
use tokio::sync::watch;

/// Tagger replicas following RULES.
const FEEDS: usize = 3;
/// The rule whose file is edited.
const EDITED: &str = "R0015";
/// The rule disabled and re-enabled.
const TOGGLED: &str = "R0016";
/// Between two changes: longer than the watcher's 10 ms settle window.
const PAUSE: Duration = Duration::from_millis(20);
/// How long one change may take before the bench gives up.
const PATIENCE: Duration = Duration::from_secs(10);
const SAVE_TARGET_MS: f64 = 50.0;
const DISABLE_TARGET_MS: f64 = 20.0;

/// One tagger's feed, with a status receiver kept across changes.
struct Replica {
    status: watch::Receiver<FeedStatus>,
    index: Arc<ArcSwap<RuleIndex>>,
    _feed: RuleFeed,
}

impl Replica {
    fn new(feed: RuleFeed) -> Replica {
        Replica {
            status: feed.status(),
            index: feed.index(),
            _feed: feed,
        }
    }

    /// The moment `check` holds for the live index, re-checked after each applied change.
    /// The feed swaps the index before it updates its status, so no change is missed.
    async fn until(&mut self, check: &impl Fn(&RuleIndex) -> bool) -> Instant {
        loop {
            if check(&self.index.load()) {
                return Instant::now();
            }
            self.status.changed().await.expect("the feed runs");
        }
    }
}

/// When each replica's index satisfies `check`.
async fn all_until(replicas: &mut [Replica], check: impl Fn(&RuleIndex) -> bool) -> Vec<Instant> {
    join_all(replicas.iter_mut().map(|r| r.until(&check))).await
}

/// When the store's definition of `EDITED` carrying `marker` passes on the bus.
async fn reload_on_bus(probe: &mut async_nats::Subscriber, marker: &str) -> Instant {
    while let Some(message) = probe.next().await {
        let reloaded: RuleReloaded = serde_json::from_slice(&message.payload).unwrap();
        if reloaded.source.is_some_and(|s| s.contains(marker)) {
            return Instant::now();
        }
    }
    panic!("the probe subscription ended");
}

/// When a state message of `TOGGLED` in `kind` passes on the bus.
async fn state_on_bus(probe: &mut async_nats::Subscriber, kind: RuleStateKind) -> Instant {
    while let Some(message) = probe.next().await {
        let state: RuleStateMessage = serde_json::from_slice(&message.payload).unwrap();
        if state.state == kind {
            return Instant::now();
        }
    }
    panic!("the probe subscription ended");
}

/// The rule text with `marker` put in front of its single-quoted description.
fn with_description(text: &str, marker: &str) -> String {
    let edited: String = text
        .lines()
        .map(|line| match line.strip_prefix("description: '") {
            Some(rest) => format!("description: '{marker}{rest}\n"),
            None => format!("{line}\n"),
        })
        .collect();
    assert!(
        edited.contains(marker),
        "{EDITED}.yaml has no single-quoted description line"
    );
    edited
}

/// Latencies of one measurement.
#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// The nearest-rank percentile, in milliseconds.
    fn pct(&self, p: f64) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e3
    }

    fn row(&self, label: &str) {
        println!(
            "  {label:<44}{:>8.2}{:>8.2}{:>8.2}{:>8.2}",
            self.pct(50.0),
            self.pct(95.0),
            self.pct(99.0),
            self.pct(100.0)
        );
    }
}

/// One stage's figures: the store's message on the bus, each replica, every replica.
struct Stage {
    bus: Samples,
    replicas: Vec<Samples>,
    every: Samples,
    fan_out: Samples,
}

impl Stage {
    fn new() -> Stage {
        Stage {
            bus: Samples::default(),
            replicas: (0..FEEDS).map(|_| Samples::default()).collect(),
            every: Samples::default(),
            fan_out: Samples::default(),
        }
    }

    fn record(&mut self, start: Instant, bus: Instant, seen: &[Instant]) {
        self.bus.push(bus - start);
        for (samples, at) in self.replicas.iter_mut().zip(seen) {
            samples.push(*at - start);
        }
        let last = *seen.iter().max().expect("at least one replica");
        self.every.push(last - start);
        self.fan_out.push(last.saturating_duration_since(bus));
    }

    fn rows(&self) {
        self.bus.row("store's message on the bus");
        for (i, samples) in self.replicas.iter().enumerate() {
            samples.row(&format!("in replica {}", i + 1));
        }
        self.fan_out.row("bus → every replica");
        self.every.row("in every replica");
    }
}

async fn save_to_swap(
    swarm: &common::Swarm,
    replicas: &mut [Replica],
    probe: &mut async_nats::Subscriber,
    n: usize,
) -> Stage {
    let original = replicas[0]
        .index
        .load()
        .get(EDITED)
        .expect("the pack has the edited rule")
        .0
        .description
        .clone();
    let text = swarm.read(EDITED);
    let mut stage = Stage::new();
    for i in 0..n {
        let marker = format!("bench edit {i}: ");
        let edited = with_description(&text, &marker);
        let want = format!("{marker}{original}");
        let check = |index: &RuleIndex| {
            index
                .get(EDITED)
                .is_some_and(|(def, _)| def.description == want)
        };
        swarm.save(EDITED, &edited);
        let start = Instant::now();
        let (bus, seen) = tokio::time::timeout(PATIENCE, async {
            tokio::join!(reload_on_bus(probe, &marker), all_until(replicas, check))
        })
        .await
        .unwrap_or_else(|_| panic!("edit {i} did not reach every replica in {PATIENCE:?}"));
        stage.record(start, bus, &seen);
        tokio::time::sleep(PAUSE).await;
    }
    stage
}

async fn disable_to_effect(
    swarm: &common::Swarm,
    replicas: &mut [Replica],
    probe: &mut async_nats::Subscriber,
    n: usize,
) -> (Stage, Samples) {
    let mut stage = Stage::new();
    let mut replies = Samples::default();
    for i in 0..n {
        let (subject, body, kind, mode) = if i % 2 == 0 {
            (
                RULESTORE_STATE_SET,
                json!({"rule_id": TOGGLED, "state": "disabled", "reason": "bench", "set_by": "bench"}),
                RuleStateKind::Disabled,
                RuleMode::Disabled,
            )
        } else {
            (
                RULESTORE_STATE_CLEAR,
                json!({"rule_id": TOGGLED, "set_by": "bench"}),
                RuleStateKind::Enabled,
                RuleMode::Enabled,
            )
        };
        let check = |index: &RuleIndex| index.get(TOGGLED).is_some_and(|(_, m)| m == mode);
        let start = Instant::now();
        let ((replied, reply), bus, seen) = tokio::time::timeout(PATIENCE, async {
            tokio::join!(
                async {
                    let reply = swarm.request(subject, body).await;
                    (Instant::now(), reply)
                },
                state_on_bus(probe, kind),
                all_until(replicas, check)
            )
        })
        .await
        .unwrap_or_else(|_| {
            panic!("state request {i} did not reach every replica in {PATIENCE:?}")
        });
        if let Err((code, message)) = reply {
            panic!("state request {i} refused: {code} {message}");
        }
        replies.push(replied - start);
        stage.record(start, bus, &seen);
        tokio::time::sleep(PAUSE).await;
    }
    (stage, replies)
}

/// Bare JetStream: publish (as the store's outbox does, with a msg id, awaiting the ack) on a
/// stream kept like RULES, read by an ordered consumer like the feed's.
async fn baseline(js: &jetstream::Context, n: usize, body: Bytes) -> Samples {
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: "BENCH".into(),
            subjects: vec!["bench.rules.>".into()],
            storage: jetstream::stream::StorageType::File,
            max_messages_per_subject: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: "bench.rules.>".into(),
            deliver_policy: jetstream::consumer::DeliverPolicy::LastPerSubject,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let headers = BTreeMap::new();
    let mut samples = Samples::default();
    for i in 0..n {
        let msg_id = format!("bench-{i}");
        let start = Instant::now();
        let (published, received) = tokio::time::timeout(PATIENCE, async {
            tokio::join!(
                decnet_bus::publish(js, "bench.rules.R0015", &msg_id, &headers, body.clone()),
                async {
                    messages
                        .next()
                        .await
                        .expect("the bench consumer runs")
                        .unwrap();
                    Instant::now()
                }
            )
        })
        .await
        .unwrap_or_else(|_| panic!("bench message {i} not received in {PATIENCE:?}"));
        published.unwrap();
        samples.push(received - start);
        tokio::time::sleep(PAUSE).await;
    }
    samples
}

/// What one feed's swap costs without the bus: the index rebuilt with the edited rule, as
/// `RuleSet::apply` does for a definition (on one thread, while nothing else runs here).
fn rebuild(replica: &Replica, n: usize) -> Samples {
    let index = replica.index.load_full();
    let def = index
        .get(EDITED)
        .expect("the pack has the edited rule")
        .0
        .clone();
    let mut samples = Samples::default();
    for _ in 0..n {
        let start = Instant::now();
        std::hint::black_box(index.with_rule(def.clone()));
        samples.push(start.elapsed());
    }
    samples
}

fn target(label: &str, p95: f64, target: f64) {
    let verdict = if p95 < target { "PASS" } else { "MISS" };
    println!("  {label:<44}{p95:>8.2} ms   target < {target:.0} ms   {verdict}");
}

// One worker per core, as a tagger runs: a feed validates the changed rule on a worker (the
// "index rebuild" row is the swap itself) and recompiles its kind's set on a blocking thread.
#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    assert!(n > 0, "EDITS must be at least 1");

    let swarm = common::Swarm::new().await;
    let store = swarm.store().await;
    let mut replicas = Vec::new();
    for _ in 0..FEEDS {
        replicas.push(Replica::new(swarm.feed().await));
    }
    // The probes have their own connection, so they do not queue behind the feeds' traffic.
    let probe_client = async_nats::connect(swarm.nats.url()).await.unwrap();
    let mut reload_probe = probe_client
        .subscribe(format!("ttp.rule.reloaded.{EDITED}"))
        .await
        .unwrap();
    let mut state_probe = probe_client
        .subscribe(format!("ttp.rule.state.{TOGGLED}"))
        .await
        .unwrap();
    probe_client.flush().await.unwrap();

    let body = Bytes::from(swarm.read(EDITED));
    let bare = baseline(&swarm.js, n, body).await;
    let save = save_to_swap(&swarm, &mut replicas, &mut reload_probe, n).await;
    let (disable, replies) = disable_to_effect(&swarm, &mut replicas, &mut state_probe, n).await;
    store.stop().await;
    let rebuilt = rebuild(&replicas[0], n);

    println!(
        "rule change → tagger replicas: {n} of each, {FEEDS} feeds, store and feeds in one \
         process, one private nats-server"
    );
    println!(
        "  {:<44}{:>8}{:>8}{:>8}{:>8}",
        "latency (ms)", "p50", "p95", "p99", "max"
    );
    println!("baseline: JetStream publish → ordered consumer");
    bare.row("received");
    println!("save → swap ({EDITED}.yaml description, temporary + rename)");
    save.rows();
    rebuilt.row("one index rebuild (with_rule), no bus");
    println!("disable → effect ({TOGGLED} disabled / cleared by request)");
    replies.row("reply received");
    disable.rows();

    let base = bare.pct(95.0);
    let save_p95 = save.every.pct(95.0);
    let disable_p95 = disable.every.pct(95.0);
    println!("ratios to the baseline (p95, every replica)");
    println!("  {:<44}{:>8.1}", "save / baseline", save_p95 / base);
    println!("  {:<44}{:>8.1}", "disable / baseline", disable_p95 / base);
    println!("targets (informational)");
    target("save p95, every replica", save_p95, SAVE_TARGET_MS);
    target("disable p95, every replica", disable_p95, DISABLE_TARGET_MS);
}
