//! The rule store and tagger replicas over a real nats-server: definitions and states reach
//! every replica, expire on time, survive restarts, and a replica booted late converges to
//! the one that watched every change (issue 5).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::{Swarm, rule_in, wait_for};
use decnet_rulestore::ManualClock;
use decnet_tagger::feed::RuleFeed;
use decnet_ttp::state::RuleMode;
use serde_json::{Value, json};

const SET: &str = "decnet.rulestore.state.set";
const CLEAR: &str = "decnet.rulestore.state.clear";

fn mode(feed: &RuleFeed, rule_id: &str) -> Option<RuleMode> {
    rule_in(feed, rule_id).map(|(_, m)| m)
}

/// The retained message of a RULES subject.
async fn retained(swarm: &Swarm, subject: &str) -> Option<Value> {
    let stream = swarm.js.get_stream("RULES").await.unwrap();
    let msg = stream.get_last_raw_message_by_subject(subject).await.ok()?;
    Some(serde_json::from_slice(&msg.payload).unwrap())
}

/// Every rule of a feed as comparable text: id, version, description, emits and mode.
fn snapshot(feed: &RuleFeed) -> Vec<String> {
    feed.index()
        .load()
        .rules()
        .map(|(d, m)| {
            format!(
                "{} v{} {:?} {:?} {:?}",
                d.rule_id, d.rule_version, d.description, d.emits, m
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disable_for_one_second_reaches_every_replica_and_reverts_on_time() {
    let swarm = Swarm::new().await;
    let store = swarm.store().await;
    let feeds = [swarm.feed().await, swarm.feed().await, swarm.feed().await];
    assert_eq!(mode(&feeds[0], "R0016"), Some(RuleMode::Enabled));

    let expires = Utc::now() + TimeDelta::seconds(1);
    let reply = swarm
        .request(
            SET,
            json!({"rule_id": "R0016", "state": "disabled", "reason": "noisy on the lab",
                "expires_at": expires.to_rfc3339(), "set_by": "alice"}),
        )
        .await
        .unwrap();
    assert_eq!(reply["state"], "disabled");
    assert_eq!(reply["set_by"], "alice");
    assert_eq!(reply["reason"], "noisy on the lab");
    assert_eq!(reply["auto_revert"], false);
    for feed in &feeds {
        wait_for(feed, "R0016 disabled", |i| {
            i.get("R0016").map(|(_, m)| m) == Some(RuleMode::Disabled)
        })
        .await;
    }
    for feed in &feeds {
        wait_for(feed, "R0016 enabled again", |i| {
            i.get("R0016").map(|(_, m)| m) == Some(RuleMode::Enabled)
        })
        .await;
    }
    let reverted_at = Utc::now();
    assert!(
        reverted_at < expires + TimeDelta::milliseconds(1500),
        "reverted {} ms after expiry",
        (reverted_at - expires).num_milliseconds()
    );
    let revert = retained(&swarm, "ttp.rule.state.R0016").await.unwrap();
    assert_eq!(revert["state"], "enabled");
    assert_eq!(revert["auto_revert"], true);
    assert_eq!(revert["set_by"], "decnet:expiry");
    assert_eq!(revert["confidence_max"], Value::Null);
    assert_eq!(store.metric("decnet_rulestore_expired_total"), Some(1.0));
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_follows_the_injected_clock() {
    let swarm = Swarm::new().await;
    let clock = ManualClock::new(Utc::now());
    let store = swarm.store_with(Arc::new(clock.clone())).await;
    let feed = swarm.feed().await;
    let expires = clock_now(&clock) + TimeDelta::hours(4);
    swarm
        .request(
            SET,
            json!({"rule_id": "R0017", "state": "clipped", "confidence_max": 0.5,
                "reason": "tuning", "expires_at": expires.to_rfc3339(), "set_by": "bob"}),
        )
        .await
        .unwrap();
    wait_for(&feed, "R0017 clipped", |i| {
        i.get("R0017").map(|(_, m)| m)
            == Some(RuleMode::Clipped {
                confidence_max: 0.5,
            })
    })
    .await;

    clock.advance(TimeDelta::hours(4) - TimeDelta::seconds(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(matches!(
        mode(&feed, "R0017"),
        Some(RuleMode::Clipped { .. })
    ));
    assert_eq!(store.metric("decnet_rulestore_expired_total"), Some(0.0));

    clock.advance(TimeDelta::seconds(1));
    wait_for(&feed, "R0017 enabled after four hours", |i| {
        i.get("R0017").map(|(_, m)| m) == Some(RuleMode::Enabled)
    })
    .await;
    let revert = retained(&swarm, "ttp.rule.state.R0017").await.unwrap();
    assert_eq!(revert["auto_revert"], true);
    assert_eq!(
        revert["set_at"].as_str().unwrap(),
        expires.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "the revert is stamped with the store's clock"
    );
    store.stop().await;
}

fn clock_now(clock: &ManualClock) -> chrono::DateTime<Utc> {
    use decnet_rulestore::Clock;
    clock.now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn states_and_definitions_survive_a_restart_of_the_store_and_the_taggers() {
    survive_restarts(Swarm::new().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn states_and_definitions_survive_restarts_on_postgres() {
    let Some(pg) = decnet_test_support::FreshPostgres::create("the rule store on PostgreSQL").await
    else {
        return;
    };
    survive_restarts(Swarm::with_database(Some(pg.url.clone())).await).await;
    pg.remove().await;
}

async fn survive_restarts(swarm: Swarm) {
    let store = swarm.store().await;
    swarm
        .request(
            SET,
            json!({"rule_id": "R0016", "state": "disabled", "reason": "noisy", "set_by": "alice"}),
        )
        .await
        .unwrap();
    swarm
        .request(
            SET,
            json!({"rule_id": "R0017", "state": "clipped", "confidence_max": 0.25,
                "reason": "shadow run", "set_by": "alice"}),
        )
        .await
        .unwrap();
    let edited = common::describe(&swarm.read("R0015"), "Restarted.");
    swarm.save("R0015", &edited);
    let live = swarm.feed().await;
    wait_for(&live, "the R0015 edit", |i| {
        i.get("R0015")
            .is_some_and(|(d, _)| d.description.starts_with("Restarted."))
    })
    .await;
    let before = snapshot(&live);
    store.stop().await;

    // A restarted store finds its table as it left it and publishes nothing new.
    let rules_stream = swarm.js.get_stream("RULES").await.unwrap();
    let last_seq = rules_stream.cached_info().state.last_sequence;
    let store = swarm.store().await;
    let mut rules_stream = swarm.js.get_stream("RULES").await.unwrap();
    assert_eq!(
        rules_stream.info().await.unwrap().state.last_sequence,
        last_seq,
        "a restart republishes nothing"
    );
    let restarted = swarm.feed().await;
    assert_eq!(snapshot(&restarted), before);
    assert_eq!(mode(&restarted, "R0016"), Some(RuleMode::Disabled));
    assert_eq!(
        mode(&restarted, "R0017"),
        Some(RuleMode::Clipped {
            confidence_max: 0.25
        })
    );
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tagger_started_after_twenty_edits_converges_to_one_that_saw_them_live() {
    let swarm = Swarm::new().await;
    let store = swarm.store().await;
    let live = swarm.feed().await;
    let originals: Vec<(String, String)> = ["R0010", "R0011", "R0012", "R0013", "R0014"]
        .iter()
        .map(|id| (id.to_string(), swarm.read(id)))
        .collect();
    let mut edits = 0;
    // Twelve description edits over five rules, an A → B → A revert among them.
    for round in 0..12 {
        let (id, text) = &originals[round % originals.len()];
        let text = if round == 10 {
            // R0010 back to its original text after two edits.
            text.clone()
        } else {
            common::describe(text, &format!("Round {round}."))
        };
        swarm.save(id, &text);
        edits += 1;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // A version bump with new confidences, a new rule, a deletion and a restore.
    let bumped = swarm
        .read("R0015")
        .replace("rule_version: 1", "rule_version: 2")
        .replace("confidence: 0.85", "confidence: 0.80");
    swarm.save("R0015", &bumped);
    let copy = swarm
        .read("R0016")
        .replace("rule_id: R0016", "rule_id: R0990")
        .replace("name: recursive_find", "name: recursive_find_again");
    swarm.save("R0990", &copy);
    std::fs::remove_file(swarm.dir.join("R0018.yaml")).unwrap();
    let r0019 = swarm.read("R0019");
    std::fs::remove_file(swarm.dir.join("R0019.yaml")).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    swarm.save("R0019", &r0019);
    edits += 5;
    // Three state changes.
    for body in [
        json!({"rule_id": "R0020", "state": "disabled", "reason": "noisy", "set_by": "ops"}),
        json!({"rule_id": "R0021", "state": "clipped", "confidence_max": 0.4, "reason": "tuning", "set_by": "ops"}),
    ] {
        swarm.request(SET, body).await.unwrap();
    }
    swarm
        .request(CLEAR, json!({"rule_id": "R0020", "set_by": "ops"}))
        .await
        .unwrap();
    edits += 3;
    assert_eq!(edits, 20);

    wait_for(&live, "every edit", |i| {
        i.get("R0015").is_some_and(|(d, _)| d.rule_version == 2)
            && i.get("R0990").is_some()
            && i.get("R0018").is_none()
            && i.get("R0019").is_some()
            && i.get("R0021").map(|(_, m)| m)
                == Some(RuleMode::Clipped {
                    confidence_max: 0.4,
                })
            && i.get("R0020").map(|(_, m)| m) == Some(RuleMode::Enabled)
    })
    .await;
    // The watcher may still be settling the last description edit; let it land.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late = swarm.feed().await;
    assert_eq!(snapshot(&late), snapshot(&live));
    // Reloaded rules ran on their own regexes; a quiet second later the live replica has
    // folded them back into compiled sets.
    let compacted = async {
        while !live.index().load().is_compact() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), compacted)
        .await
        .expect("the live index is compacted once the feed is quiet");
    assert!(late.index().load().is_compact(), "a boot compiles sets");
    assert_eq!(snapshot(&late), snapshot(&live));

    // And both equal the directory itself under the same states.
    let pack = decnet_ttp::load_dir(&swarm.dir).unwrap().pack;
    let mut states = decnet_ttp::state::StateTable::default();
    states.set(
        "R0021",
        RuleMode::Clipped {
            confidence_max: 0.4,
        },
    );
    let direct: Vec<String> = decnet_ttp::RuleIndex::with_states(&pack, &states)
        .rules()
        .map(|(d, m)| {
            format!(
                "{} v{} {:?} {:?} {:?}",
                d.rule_id, d.rule_version, d.description, d.emits, m
            )
        })
        .collect();
    assert_eq!(snapshot(&late), direct);
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluations_never_see_a_torn_rule_during_an_edit_storm() {
    let swarm = Swarm::new().await;
    let store = swarm.store().await;
    let feed = swarm.feed().await;
    let original = swarm.read("R0015");
    // Version v emits confidences that only version v has, so a tag whose confidence and
    // version disagree would be a rule torn between two definitions.
    let confidences = |v: u32| (0.60 + f64::from(v) * 0.001, 0.70 + f64::from(v) * 0.001);
    let version_text = |v: u32| {
        let (a, b) = confidences(v);
        original
            .replace("rule_version: 1", &format!("rule_version: {v}"))
            .replace("confidence: 0.85}", &format!("confidence: {a:.3}}}"))
            .replace("confidence: 0.95}", &format!("confidence: {b:.3}}}"))
    };
    let event = decnet_ttp::fanout::from_message(
        "attacker.session.ended",
        &json!({"session_id": "storm", "attacker_ip": "198.51.100.7", "decky_id": "decoy-01",
            "service": "ssh", "ended_at": "2026-12-04T10:01:00Z", "duration_s": 1.0,
            "commands": [{"command_text": "find / -perm -4000 2>/dev/null", "ts": "2026-12-04T10:00:00Z"}],
            "auth_attempts": []}),
    )
    .unwrap()
    .events
    .into_iter()
    .find(|e| e.kind == decnet_ttp::SourceKind::Command)
    .expect("a command event");

    let stop = Arc::new(AtomicBool::new(false));
    let evaluated = Arc::new(AtomicU64::new(0));
    let versions_seen = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let index = feed.index();
            let (stop, evaluated, seen, event) = (
                Arc::clone(&stop),
                Arc::clone(&evaluated),
                Arc::clone(&versions_seen),
                event.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let snapshot = index.load_full();
                    let eval = snapshot.evaluate(&event, Utc::now());
                    for tag in eval.tags.iter().filter(|t| &*t.rule_id == "R0015") {
                        let (a, b) = confidences(tag.rule_version);
                        let want = if tag.sub_technique_id.is_some() { b } else { a };
                        let want = if tag.rule_version == 1 {
                            if tag.sub_technique_id.is_some() {
                                0.95
                            } else {
                                0.85
                            }
                        } else {
                            (want * 1000.0).round() / 1000.0
                        };
                        assert_eq!(
                            tag.confidence, want,
                            "torn rule: version {} tagged with {}",
                            tag.rule_version, tag.confidence
                        );
                        seen.lock().unwrap().insert(tag.rule_version);
                    }
                    evaluated.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    const LAST: u32 = 60;
    for v in 2..=LAST {
        swarm.save("R0015", &version_text(v));
        // Faster than a person, slower than the settle window, so most edits land one by one.
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    wait_for(&feed, "the last version", |i| {
        i.get("R0015").is_some_and(|(d, _)| d.rule_version == LAST)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("no evaluation saw a torn rule");
    }
    let seen = versions_seen.lock().unwrap().len();
    assert!(
        evaluated.load(Ordering::Relaxed) > 100,
        "evaluations ran during the storm"
    );
    assert!(
        seen > 10,
        "the storm reached the evaluators: {seen} versions seen"
    );
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_edit_is_counted_and_every_replica_keeps_the_last_good_version() {
    let swarm = Swarm::new().await;
    let store = swarm.store().await;
    let feed = swarm.feed().await;
    let good = swarm.read("R0015");
    swarm.save(
        "R0015",
        &good.replace("confidence: 0.85", "confidence: 1.85"),
    );
    for _ in 0..200 {
        if store.metric("decnet_rulestore_refused_total") == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(store.metric("decnet_rulestore_refused_total"), Some(1.0));
    let (def, _) = rule_in(&feed, "R0015").unwrap();
    assert_eq!(def.emits[0].confidence, 0.85);
    let held = retained(&swarm, "ttp.rule.reloaded.R0015").await.unwrap();
    assert_eq!(
        held["source"].as_str().unwrap(),
        good,
        "the stream keeps the good text"
    );
    // Fixed, it goes out as usual.
    swarm.save("R0015", &common::describe(&good, "Fixed."));
    wait_for(&feed, "the fixed R0015", |i| {
        i.get("R0015")
            .is_some_and(|(d, _)| d.description.starts_with("Fixed."))
    })
    .await;
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_rule_is_evicted_everywhere_and_returns_in_its_state() {
    let swarm = Swarm::new().await;
    let store = swarm.store().await;
    let feed = swarm.feed().await;
    swarm
        .request(
            SET,
            json!({"rule_id": "R0016", "state": "disabled", "reason": "noisy", "set_by": "alice"}),
        )
        .await
        .unwrap();
    let text = swarm.read("R0016");
    std::fs::remove_file(swarm.dir.join("R0016.yaml")).unwrap();
    wait_for(&feed, "R0016 evicted", |i| i.get("R0016").is_none()).await;
    let tombstone = retained(&swarm, "ttp.rule.reloaded.R0016").await.unwrap();
    assert_eq!(tombstone["deleted"], true);
    let late = swarm.feed().await;
    assert!(
        mode(&late, "R0016").is_none(),
        "a later tagger skips it too"
    );
    // A state request for a deleted rule is refused: the rule is unknown now.
    let refused = swarm
        .request(
            SET,
            json!({"rule_id": "R0016", "state": "enabled", "set_by": "alice"}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        refused,
        ("404".to_owned(), "unknown rule 'R0016'".to_owned())
    );

    swarm.save("R0016", &text);
    for f in [&feed, &late] {
        wait_for(f, "R0016 back, still disabled", |i| {
            i.get("R0016").map(|(_, m)| m) == Some(RuleMode::Disabled)
        })
        .await;
    }
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_state_requests_are_refused_with_the_spec_words_and_change_nothing() {
    let swarm = Swarm::new().await;
    let store = swarm.store().await;
    let cases = [
        (
            json!({"rule_id": "R9999", "state": "disabled", "reason": "x", "set_by": "a"}),
            ("404", "unknown rule 'R9999'"),
        ),
        (
            json!({"rule_id": "R0016", "state": "clipped", "reason": "x", "set_by": "a"}),
            ("422", "state 'clipped' requires confidence_max"),
        ),
        (
            json!({"rule_id": "R0016", "state": "clipped", "confidence_max": 1.5, "reason": "x", "set_by": "a"}),
            ("422", "confidence_max must be within [0, 1]"),
        ),
        (
            json!({"rule_id": "R0016", "state": "disabled", "set_by": "a"}),
            ("422", "state 'disabled' requires a reason"),
        ),
        (
            json!({"rule_id": "R0016", "state": "disabled", "reason": "x", "set_by": "a", "colour": "red"}),
            ("422", "unknown field 'colour'"),
        ),
        (
            json!({"rule_id": "R0016", "state": "disabled", "reason": "x"}),
            ("422", "missing field 'set_by'"),
        ),
        (
            json!({"rule_id": "R0016", "state": 3, "reason": "x", "set_by": "a"}),
            ("422", "invalid type: integer '3', expected a string"),
        ),
    ];
    for (body, (code, message)) in cases {
        let got = swarm.request(SET, body.clone()).await.unwrap_err();
        assert_eq!(got, (code.to_owned(), message.to_owned()), "{body}");
    }
    let reply = swarm
        .client
        .request(SET.to_owned(), "{not json".into())
        .await
        .unwrap();
    let headers = reply.headers.unwrap();
    assert_eq!(
        headers.get("Nats-Service-Error-Code").unwrap().as_str(),
        "400"
    );
    assert!(
        headers
            .get("Nats-Service-Error")
            .unwrap()
            .as_str()
            .starts_with("request body is not valid JSON: key must be a string at line 1 column 2")
    );
    assert!(
        retained(&swarm, "ttp.rule.state.R0016").await.is_none(),
        "nothing was published"
    );

    // The endpoints are discoverable through the NATS service API, in queue group `q`.
    let info = swarm
        .client
        .request("$SRV.INFO.decnet-rulestore".to_owned(), "".into())
        .await
        .unwrap();
    let info: Value = serde_json::from_slice(&info.payload).unwrap();
    assert_eq!(info["name"], "decnet-rulestore");
    let mut endpoints: Vec<(String, String)> = info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["subject"].as_str().unwrap().to_owned(),
                e["queue_group"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    endpoints.sort();
    assert_eq!(
        endpoints,
        vec![
            (CLEAR.to_owned(), "q".to_owned()),
            (SET.to_owned(), "q".to_owned())
        ]
    );
    store.stop().await;
}
