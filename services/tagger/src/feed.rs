//! The rule feed: the tagger's live rule set, read from the `RULES` stream (EVENTS.md §4.15).
//!
//! At start an ordered consumer delivers the last message of every `ttp.rule.>` subject; the
//! tagger compiles them into one index before it takes its first event. After that each
//! message changes one rule: the new index shares every other rule's compiled form and is
//! swapped in atomically, so an evaluation finishes on the snapshot it started with and never
//! sees a rule half replaced. With `--rules-dir` the definitions come from the directory and
//! the feed carries only `ttp.rule.state.>`.
//!
//! [`RuleSet`] is the bookkeeping without the bus, so its rules are tested on their own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_nats::jetstream;
use chrono::Utc;
use decnet_proto::payload::rules::{RuleReloaded, RuleStateKind, RuleStateMessage};
use decnet_ttp::catalogue::Catalogue;
use decnet_ttp::rule::RuleDef;
use decnet_ttp::state::{RuleMode, StateTable};
use decnet_ttp::{Pack, RuleIndex};
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::metrics::TaggerMetrics;

/// Where a tagger's rule definitions come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Definitions {
    /// The RULES stream (a swarm with a rule-store master).
    Stream,
    /// A rules directory loaded at start; the stream carries only states.
    Directory,
}

impl Definitions {
    /// The feed's filter subject.
    pub fn filter(self) -> &'static str {
        match self {
            Definitions::Stream => "ttp.rule.>",
            Definitions::Directory => "ttp.rule.state.>",
        }
    }
}

/// What one message did to the rule set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A definition was compiled in (new or replaced).
    Definition(String),
    /// A rule was evicted (tombstone).
    Deletion(String),
    /// A rule's state changed.
    State(String),
    /// Nothing changed: a repeat, an older message, or a definition while the directory rules.
    None,
}

/// A message the feed could not use; the rule set is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{subject}: {detail}")]
pub struct Refused {
    /// The message's subject.
    pub subject: String,
    /// Why.
    pub detail: String,
}

/// The tagger's rule definitions and states, and the index compiled from them.
#[derive(Debug)]
pub struct RuleSet {
    source: Definitions,
    /// The hash of each definition in the index, so a republished one costs nothing.
    ///
    /// Messages apply in stream order, which is the store's commit order (its outbox
    /// publishes one message at a time), so no sequence or clock is compared here: a store
    /// whose database was rebuilt starts its sequence again, and a clock may step back.
    known: BTreeMap<String, Option<String>>,
    states: StateTable,
    index: Arc<RuleIndex>,
}

impl RuleSet {
    /// Definitions from the stream: empty until the feed delivers them.
    pub fn from_stream() -> RuleSet {
        RuleSet {
            source: Definitions::Stream,
            known: BTreeMap::new(),
            states: StateTable::default(),
            index: Arc::new(RuleIndex::new(&Pack::default())),
        }
    }

    /// Definitions from a directory's compiled index; the stream adds states.
    pub fn from_directory(index: RuleIndex) -> RuleSet {
        RuleSet {
            source: Definitions::Directory,
            index: Arc::new(index),
            ..RuleSet::from_stream()
        }
    }

    /// The current index.
    pub fn index(&self) -> &Arc<RuleIndex> {
        &self.index
    }

    /// How many rule definitions the index holds.
    pub fn len(&self) -> usize {
        self.index.rules().count()
    }

    /// Whether the index holds no rule.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Apply a batch of retained messages at start with one compilation instead of one per
    /// rule; returns what each message did, in order.
    pub fn load(&mut self, messages: &[(String, Vec<u8>)]) -> Vec<Result<Change, Refused>> {
        let mut defs: BTreeMap<String, RuleDef> = self
            .index
            .rules()
            .map(|(def, _)| (def.rule_id.clone(), def.clone()))
            .collect();
        let outcomes = messages
            .iter()
            .map(|(subject, body)| self.record(subject, body, &mut defs))
            .collect();
        self.index = Arc::new(RuleIndex::with_states(
            &Pack::from_rules(defs.into_values().collect()),
            &self.states,
        ));
        outcomes
    }

    /// Apply one live message, recompiling only the rule it names.
    pub fn apply(&mut self, subject: &str, body: &[u8]) -> Result<Change, Refused> {
        let mut defs = BTreeMap::new();
        let change = self.record(subject, body, &mut defs)?;
        let next = match &change {
            Change::Definition(id) => match defs.remove(id) {
                Some(def) => self.index.with_rule(def).restate(&self.states),
                None => return Ok(change),
            },
            Change::Deletion(id) => self.index.without_rule(id),
            Change::State(_) => self.index.restate(&self.states),
            Change::None => return Ok(change),
        };
        self.index = Arc::new(next);
        Ok(change)
    }

    /// Update the bookkeeping for one message; a compiled definition goes into `defs`.
    fn record(
        &mut self,
        subject: &str,
        body: &[u8],
        defs: &mut BTreeMap<String, RuleDef>,
    ) -> Result<Change, Refused> {
        let refuse = |detail: String| Refused {
            subject: subject.to_owned(),
            detail,
        };
        if let Some(rule_id) = subject.strip_prefix("ttp.rule.state.") {
            let msg: RuleStateMessage = serde_json::from_slice(body)
                .map_err(|e| refuse(format!("not a rule state: {e}")))?;
            if msg.rule_id != rule_id {
                return Err(refuse(format!(
                    "names rule {} on the subject of {rule_id}",
                    msg.rule_id
                )));
            }
            let mode = match (msg.state, msg.confidence_max) {
                (RuleStateKind::Enabled, _) => RuleMode::Enabled,
                (RuleStateKind::Disabled, _) => RuleMode::Disabled,
                (RuleStateKind::Clipped, Some(confidence_max)) => {
                    RuleMode::Clipped { confidence_max }
                }
                (RuleStateKind::Clipped, None) => {
                    return Err(refuse("clipped without confidence_max".to_owned()));
                }
            };
            self.states.set(rule_id, mode);
            return Ok(Change::State(rule_id.to_owned()));
        }
        let Some(rule_id) = subject.strip_prefix("ttp.rule.reloaded.") else {
            return Err(refuse("not a RULES subject".to_owned()));
        };
        if self.source == Definitions::Directory {
            return Ok(Change::None);
        }
        let msg: RuleReloaded = serde_json::from_slice(body)
            .map_err(|e| refuse(format!("not a rule definition: {e}")))?;
        if msg.rule_id != rule_id {
            return Err(refuse(format!(
                "names rule {} on the subject of {rule_id}",
                msg.rule_id
            )));
        }
        if msg.deleted == Some(true) {
            if self.known.remove(rule_id).is_none() && defs.remove(rule_id).is_none() {
                return Ok(Change::None);
            }
            defs.remove(rule_id);
            return Ok(Change::Deletion(rule_id.to_owned()));
        }
        let sha256 = msg.sha256.as_ref().map(|s| s.as_str().to_owned());
        if sha256.is_some() && self.known.get(rule_id) == Some(&sha256) {
            // The same definition again (a republish after a stream repair).
            return Ok(Change::None);
        }
        let Some(source) = msg.source.as_deref() else {
            return Err(refuse("a definition without source".to_owned()));
        };
        // Reviews do not matter here: the store warned the author when it accepted the rule.
        let def = decnet_ttp::source::parse_source(
            rule_id,
            source,
            Catalogue::bundled(),
            Utc::now().date_naive(),
        )
        .map_err(|diag| {
            let errors: Vec<String> = diag.errors.iter().map(ToString::to_string).collect();
            refuse(format!("does not compile here: {}", errors.join("; ")))
        })?;
        self.known.insert(rule_id.to_owned(), sha256);
        defs.insert(rule_id.to_owned(), def);
        Ok(Change::Definition(rule_id.to_owned()))
    }
}

/// Where the feed stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedStatus {
    /// Every retained message was delivered and applied.
    pub caught_up: bool,
    /// Changes applied since start (the initial load counts as one).
    pub applied: u64,
    /// Rule definitions in the live index.
    pub rules: usize,
    /// Rule definitions the retained messages held at start.
    pub retained_rules: usize,
}

/// How long the feed of a brand-new system must be quiet before its first rules count as the
/// rule set: the store publishes its first pack one rule at a time.
const FIRST_PACK_QUIET: Duration = Duration::from_millis(250);

/// A running feed: the live index and its status.
#[derive(Debug, Clone)]
pub struct RuleFeed {
    index: Arc<ArcSwap<RuleIndex>>,
    status: watch::Receiver<FeedStatus>,
}

impl RuleFeed {
    /// The live index; evaluations take a snapshot with `load_full`.
    pub fn index(&self) -> Arc<ArcSwap<RuleIndex>> {
        Arc::clone(&self.index)
    }

    /// The feed's status, updated after every applied change.
    pub fn status(&self) -> watch::Receiver<FeedStatus> {
        self.status.clone()
    }

    /// Wait until the retained messages are applied and, for definitions from the stream, at
    /// least one rule is known: a tagger without rules would ack events it never tagged. On a
    /// brand-new system (nothing retained yet) the store's first pack arrives rule by rule, so
    /// the feed must then also have been quiet for a moment, lest the tagger start on a
    /// fraction of the pack.
    pub async fn ready(&self, source: Definitions) {
        let mut status = self.status.clone();
        let fresh = match status
            .wait_for(|s| s.caught_up && (source == Definitions::Directory || s.rules > 0))
            .await
        {
            Ok(s) => source == Definitions::Stream && s.retained_rules == 0,
            Err(_) => return,
        };
        if fresh {
            while let Ok(Ok(())) = tokio::time::timeout(FIRST_PACK_QUIET, status.changed()).await {}
        }
    }

    /// Start following `RULES`; the feed runs until the process ends, recreating its consumer
    /// after a failure and applying the retained messages again (repeats change nothing).
    pub fn start(js: jetstream::Context, mut set: RuleSet, metrics: TaggerMetrics) -> RuleFeed {
        let index = Arc::new(ArcSwap::new(Arc::clone(set.index())));
        let (tx, status) = watch::channel(FeedStatus::default());
        let live = Arc::clone(&index);
        tokio::spawn(async move {
            loop {
                if let Err(e) = follow(&js, &mut set, &live, &tx, &metrics).await {
                    tracing::warn!(error = %e, "the rule feed failed; resubscribing in 1 s");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        RuleFeed { index, status }
    }
}

async fn follow(
    js: &jetstream::Context,
    set: &mut RuleSet,
    live: &ArcSwap<RuleIndex>,
    status: &watch::Sender<FeedStatus>,
    metrics: &TaggerMetrics,
) -> Result<(), String> {
    let stream = js
        .get_stream("RULES")
        .await
        .map_err(|e| format!("reading the RULES stream: {e}"))?;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: set.source.filter().to_owned(),
            deliver_policy: jetstream::consumer::DeliverPolicy::LastPerSubject,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("creating the rule feed: {e}"))?;
    let mut pending = consumer.cached_info().num_pending;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("reading the rule feed: {e}"))?;
    let publish = |set: &RuleSet, status: &watch::Sender<FeedStatus>| {
        live.store(Arc::clone(set.index()));
        status.send_modify(|s| {
            s.caught_up = true;
            s.applied += 1;
            s.rules = set.len();
        });
    };
    let count = |outcome: &Result<Change, Refused>| match outcome {
        Ok(Change::Definition(_)) => {
            TaggerMetrics::count(&metrics.rule_changes, "kind", "definition")
        }
        Ok(Change::Deletion(_)) => TaggerMetrics::count(&metrics.rule_changes, "kind", "deletion"),
        Ok(Change::State(_)) => TaggerMetrics::count(&metrics.rule_changes, "kind", "state"),
        Ok(Change::None) => {}
        Err(refused) => {
            tracing::warn!(error = %refused, "rule message refused; the previous version stays live");
            metrics.rules_refused.inc();
        }
    };

    // The retained messages first, compiled once.
    let mut retained = Vec::new();
    while pending > 0 {
        let Some(message) = messages.next().await else {
            return Err("the rule feed ended during the initial load".to_owned());
        };
        let message = message.map_err(|e| format!("reading the rule feed: {e}"))?;
        pending = message.info().map(|i| i.pending).unwrap_or(0);
        retained.push((message.subject.to_string(), message.payload.to_vec()));
    }
    for outcome in set.load(&retained) {
        count(&outcome);
    }
    let retained_rules = set.len();
    status.send_modify(|s| s.retained_rules = retained_rules);
    tracing::info!(
        rules = set.len(),
        messages = retained.len(),
        "rule set loaded from RULES"
    );
    publish(set, status);

    // A reloaded rule runs on its own regex; once the feed has been quiet for a while its kind
    // is recompiled off the async threads and swapped in, if nothing changed meanwhile.
    let mut compact_at: Option<tokio::time::Instant> = None;
    let mut compaction: Option<(Arc<RuleIndex>, tokio::task::JoinHandle<RuleIndex>)> = None;
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { break };
                let message = message.map_err(|e| format!("reading the rule feed: {e}"))?;
                let outcome = set.apply(&message.subject, &message.payload);
                count(&outcome);
                if let Ok(change) = &outcome
                    && *change != Change::None
                {
                    tracing::info!(change = ?change, rules = set.len(), "rule set changed");
                    publish(set, status);
                    if !set.index().is_compact() {
                        compact_at = Some(tokio::time::Instant::now() + COMPACT_AFTER);
                    }
                }
            }
            () = sleep_until(compact_at), if compact_at.is_some() && compaction.is_none() => {
                compact_at = None;
                let base = Arc::clone(set.index());
                let work = Arc::clone(&base);
                compaction = Some((base, tokio::task::spawn_blocking(move || work.compacted())));
            }
            done = async { (&mut compaction.as_mut().expect("guarded").1).await }, if compaction.is_some() => {
                let (base, _) = compaction.take().expect("guarded");
                match done {
                    Ok(compacted) if Arc::ptr_eq(&base, set.index()) => {
                        set.index = Arc::new(compacted);
                        live.store(Arc::clone(set.index()));
                        tracing::debug!(rules = set.len(), "rule index compacted");
                    }
                    // Changed meanwhile: the next quiet moment compacts the newer index.
                    _ => {
                        if !set.index().is_compact() {
                            compact_at = Some(tokio::time::Instant::now() + COMPACT_AFTER);
                        }
                    }
                }
            }
        }
    }
    Err("the rule feed ended".to_owned())
}

/// How long the feed waits after its last change before recompiling reloaded rules into
/// their kinds' sets (EVENTS.md §4.15: the swap itself never waits for this).
const COMPACT_AFTER: Duration = Duration::from_secs(1);

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn definition(rule_id: &str, text: &str) -> (String, Vec<u8>) {
        let sha = decnet_ttp::source::sha256_hex(text);
        let body = json!({"rule_id": rule_id, "rule_version": 1, "sha256": sha,
            "attack_release": "enterprise-v18.1", "source": text, "seq": 1});
        (
            format!("ttp.rule.reloaded.{rule_id}"),
            serde_json::to_vec(&body).unwrap(),
        )
    }

    fn state(rule_id: &str, state: &str, ceiling: Option<f64>) -> (String, Vec<u8>) {
        let body = json!({"rule_id": rule_id, "state": state, "confidence_max": ceiling,
            "expires_at": null, "reason": "test", "set_by": "t", "set_at": "2026-12-04T10:00:00Z",
            "auto_revert": false});
        (
            format!("ttp.rule.state.{rule_id}"),
            serde_json::to_vec(&body).unwrap(),
        )
    }

    fn r0015() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../rules/ttp/R0015.yaml"
        ))
        .unwrap()
    }

    #[test]
    fn a_state_that_arrives_before_its_rule_applies_when_the_rule_does() {
        let mut set = RuleSet::from_stream();
        let (subject, body) = state("R0015", "disabled", None);
        assert_eq!(
            set.apply(&subject, &body),
            Ok(Change::State("R0015".into()))
        );
        let (subject, body) = definition("R0015", &r0015());
        assert_eq!(
            set.apply(&subject, &body),
            Ok(Change::Definition("R0015".into()))
        );
        assert_eq!(set.index().get("R0015").unwrap().1, RuleMode::Disabled);
        // The same definition again changes nothing.
        assert_eq!(set.apply(&subject, &body), Ok(Change::None));
    }

    #[test]
    fn a_definition_that_does_not_compile_leaves_the_previous_one() {
        let mut set = RuleSet::from_stream();
        let (subject, body) = definition("R0015", &r0015());
        set.load(&[(subject, body)]);
        let broken = r0015().replace("confidence: 0.85", "confidence: 1.85");
        let (subject, body) = definition("R0015", &broken);
        let refused = set.apply(&subject, &body).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "ttp.rule.reloaded.R0015: does not compile here: \
             R0015.yaml:11:55: emits[0].confidence: 1.85 is outside [0, 1]"
        );
        let (def, _) = set.index().get("R0015").unwrap();
        assert_eq!(def.emits[0].confidence, 0.85);
    }

    #[test]
    fn a_tombstone_evicts_and_a_directory_ignores_definitions() {
        let mut set = RuleSet::from_stream();
        let (subject, body) = definition("R0015", &r0015());
        set.load(&[(subject.clone(), body.clone())]);
        let tombstone =
            serde_json::to_vec(&json!({"rule_id": "R0015", "deleted": true, "seq": 2})).unwrap();
        assert_eq!(
            set.apply(&subject, &tombstone),
            Ok(Change::Deletion("R0015".into()))
        );
        assert!(set.is_empty());
        assert_eq!(set.apply(&subject, &tombstone), Ok(Change::None));

        let mut dir = RuleSet::from_directory(RuleIndex::new(&Pack::default()));
        assert_eq!(dir.apply(&subject, &body), Ok(Change::None));
        assert!(dir.is_empty());
    }
}
