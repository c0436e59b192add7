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
use chrono::{DateTime, Utc};
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

#[derive(Debug, Clone)]
struct Known {
    seq: Option<i64>,
    sha256: Option<String>,
}

/// The tagger's rule definitions and states, and the index compiled from them.
#[derive(Debug)]
pub struct RuleSet {
    source: Definitions,
    /// The definitions in the index, with the store sequence and hash that named them.
    known: BTreeMap<String, Known>,
    /// Deleted rule ids with the tombstone's sequence, so an older definition is not revived.
    deleted: BTreeMap<String, Option<i64>>,
    states: StateTable,
    state_times: BTreeMap<String, DateTime<Utc>>,
    index: Arc<RuleIndex>,
}

impl RuleSet {
    /// Definitions from the stream: empty until the feed delivers them.
    pub fn from_stream() -> RuleSet {
        RuleSet {
            source: Definitions::Stream,
            known: BTreeMap::new(),
            deleted: BTreeMap::new(),
            states: StateTable::default(),
            state_times: BTreeMap::new(),
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
            if self
                .state_times
                .get(rule_id)
                .is_some_and(|t| msg.set_at < *t)
            {
                return Ok(Change::None);
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
            self.state_times.insert(rule_id.to_owned(), msg.set_at);
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
        let newest_seq = self
            .known
            .get(rule_id)
            .and_then(|k| k.seq)
            .or_else(|| self.deleted.get(rule_id).copied().flatten());
        if let (Some(seq), Some(newest)) = (msg.seq, newest_seq)
            && seq <= newest
        {
            return Ok(Change::None);
        }
        if msg.deleted == Some(true) {
            self.known.remove(rule_id);
            self.deleted.insert(rule_id.to_owned(), msg.seq);
            defs.remove(rule_id);
            return Ok(Change::Deletion(rule_id.to_owned()));
        }
        let sha256 = msg.sha256.as_ref().map(|s| s.as_str().to_owned());
        if sha256.is_some() && self.known.get(rule_id).is_some_and(|k| k.sha256 == sha256) {
            // The same definition again (a republish after a stream repair).
            if let Some(k) = self.known.get_mut(rule_id) {
                k.seq = msg.seq.or(k.seq);
            }
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
        self.deleted.remove(rule_id);
        self.known.insert(
            rule_id.to_owned(),
            Known {
                seq: msg.seq,
                sha256,
            },
        );
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
}

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
    /// least one rule is known (a tagger without rules would ack events it never tagged).
    pub async fn ready(&self, source: Definitions) {
        let mut status = self.status.clone();
        let _ = status
            .wait_for(|s| s.caught_up && (source == Definitions::Directory || s.rules > 0))
            .await;
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
    tracing::info!(
        rules = set.len(),
        messages = retained.len(),
        "rule set loaded from RULES"
    );
    publish(set, status);

    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| format!("reading the rule feed: {e}"))?;
        let outcome = set.apply(&message.subject, &message.payload);
        count(&outcome);
        if let Ok(change) = &outcome
            && *change != Change::None
        {
            tracing::info!(change = ?change, rules = set.len(), "rule set changed");
            publish(set, status);
        }
    }
    Err("the rule feed ended".to_owned())
}
