//! The tagger's work on a batch (EVENTS.md §6.1): build the evaluation events of each
//! message, evaluate them on the current index, write every surviving tag of the batch in
//! one transaction with the messages that announce them, and settle each message.
//!
//! A message that can never be processed is poison (dead-lettered with its reason) and never
//! holds back the others. A transient database failure naks the whole batch; a row the
//! database refuses for good is found by writing the batch's messages one by one, so only the
//! message that carries it is dead-lettered.

use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use decnet_bus::{Delivery, Handler, Outcome, Poison};
use decnet_storage::{AttackerSighting, Batch, Database, IdentityChange, StorageError};
use decnet_ttp::anchor::{attacker_uuid_for_ip, canonical_ip};
use decnet_ttp::engine::SuppressReason;
use decnet_ttp::fanout::{self, FanoutError};
use decnet_ttp::ratelimit::RateLimiter;
use decnet_ttp::{EvalEvent, RuleIndex, SourceKind, Tag};
use serde_json::Value;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::announce::{MessageResults, announce};
use crate::metrics::TaggerMetrics;
use crate::quarantine::BodyReader;

/// Bodies over this size are poison (EVENTS.md §1.3).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The tagger's batch handler.
pub struct Tagger {
    /// The live rule set; each batch evaluates and announces on one snapshot, so a reload
    /// lands between batches, never inside one.
    pub(crate) rules: Arc<ArcSwap<RuleIndex>>,
    pub(crate) limiter: RateLimiter,
    pub(crate) db: Database,
    /// Woken after each commit so the outbox publisher sends at once.
    pub(crate) published: Arc<Notify>,
    /// What the ops listener exports.
    pub(crate) metrics: TaggerMetrics,
    /// Message text for the email rules that read it.
    pub(crate) bodies: BodyReader,
}

/// One message ready to write.
struct Prepared {
    results: MessageResults,
    sightings: Vec<AttackerSighting>,
    identity: Option<IdentityChange>,
}

fn poison(code: &'static str, detail: impl Into<String>) -> Outcome {
    Outcome::Poison(Poison {
        code,
        detail: detail.into(),
    })
}

/// The DLQ code of a fan-out error (EVENTS.md §2.5).
fn fanout_code(e: &FanoutError) -> &'static str {
    match e.reason {
        "unsupported_subject" => "unknown_subject",
        "not_an_object" => "schema_error",
        other => other,
    }
}

impl Tagger {
    fn prepare(
        &mut self,
        index: &Arc<RuleIndex>,
        d: &Delivery,
        body_text: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Option<Prepared>, Outcome> {
        if d.payload().len() > MAX_BODY_BYTES {
            return Err(poison(
                "too_large",
                format!("{} bytes, over {MAX_BODY_BYTES}", d.payload().len()),
            ));
        }
        if let Some(pattern) = skipped(d.subject()) {
            TaggerMetrics::count(&self.metrics.skipped, "pattern", pattern);
            return Ok(None);
        }
        let mut body: Value = serde_json::from_slice(d.payload())
            .map_err(|e| poison("decode_error", format!("invalid JSON: {e}")))?;
        if let (Some(text), Some(object)) = (body_text, body.as_object_mut()) {
            object.insert("body_text".to_owned(), Value::String(text));
        }
        let fanout = fanout::from_message(d.subject(), &body)
            .map_err(|e| poison(fanout_code(&e), e.detail))?;
        if d.subject() == "attacker.observed" {
            return observed(d, &body, now);
        }
        let identity = identity_change(d.subject(), &body)?;
        if fanout.events.is_empty() && identity.is_none() {
            return Ok(None);
        }
        let limit_of = |id: &str| {
            index
                .get(id)
                .map_or(u32::MAX, |(r, _)| r.rate_limit_per_minute)
        };
        let mode_of = |id: &str| index.get(id).map(|(_, m)| m).unwrap_or_default();
        let first = fanout.events.first();
        let mut results = MessageResults {
            subject: d.subject().to_owned(),
            upstream_id: d.msg_id().map_or_else(
                || format!("{}:{}", d.stream(), d.stream_seq()),
                str::to_owned,
            ),
            attacker_uuid: first.and_then(|e| e.attacker_uuid),
            identity_uuid: first.and_then(|e| e.identity_uuid),
            session_id: first.and_then(|e| e.session_id.as_deref().map(str::to_owned)),
            decky_id: first.and_then(|e| e.decky_id.as_deref().map(str::to_owned)),
            tags: Vec::new(),
            suppressed: Vec::new(),
            rate_window: None,
            sighted: Vec::new(),
        };
        let mut sightings: Vec<AttackerSighting> = Vec::new();
        let ip = body_ip(&body);
        for event in &fanout.events {
            let mut eval = index.evaluate(event, now);
            let at = event.ts.unwrap_or(now);
            self.limiter.apply(&mut eval, at, limit_of, mode_of);
            if results.rate_window.is_none()
                && eval
                    .suppressed
                    .iter()
                    .any(|s| s.reason == SuppressReason::RateLimited)
            {
                results.rate_window = Some(RateLimiter::window_start(at));
            }
            results.tags.extend(eval.tags);
            results.suppressed.extend(eval.suppressed);
            if let Some(s) = sighting(event, ip.as_deref(), now)
                && !sightings.iter().any(|x| x.uuid == s.uuid)
            {
                sightings.push(s);
            }
        }
        results.sighted = sightings.iter().map(|s| (s.uuid, s.ip.clone())).collect();
        Ok(Some(Prepared {
            results,
            sightings,
            identity,
        }))
    }

    async fn write(
        &self,
        index: &RuleIndex,
        batch: &[&Prepared],
        now: DateTime<Utc>,
    ) -> Result<(), StorageError> {
        // Every sighting goes down: the store keeps each attacker's earliest and latest.
        let sightings: Vec<AttackerSighting> = batch
            .iter()
            .flat_map(|p| p.sightings.iter().cloned())
            .collect();
        let tags: Vec<&Tag> = batch.iter().flat_map(|p| &p.results.tags).collect();
        // The store applies the batch's identity decisions before its tags, so a tag of a
        // message just ahead of an `identity.formed` in the same batch may already carry the
        // identity; tag ids do not depend on it, so replays stay silent either way.
        let identity: Vec<IdentityChange> =
            batch.iter().filter_map(|p| p.identity.clone()).collect();
        let results: Vec<&MessageResults> = batch.iter().map(|p| &p.results).collect();
        let batch = Batch {
            identity: &identity,
            sightings: &sightings,
            tags: &tags,
        };
        let outcome = self
            .db
            .write_batch("tagger", &batch, |outcome| {
                announce(&results, outcome, index, now)
            })
            .await?;
        self.metrics
            .tags_written
            .inc_by(outcome.new_tags.len() as u64);
        self.published.notify_one();
        Ok(())
    }
}

/// `attacker.observed` evaluates no rule; it only records the attacker (EVENTS.md §5.2).
fn observed(d: &Delivery, body: &Value, now: DateTime<Utc>) -> Result<Option<Prepared>, Outcome> {
    let obj = fanout::unwrap_envelope(d.subject(), body);
    let ip = obj
        .get("attacker_ip")
        .and_then(Value::as_str)
        .and_then(canonical_ip);
    let given = match obj.get("attacker_uuid") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            s.parse::<Uuid>()
                .map_err(|_| poison("schema_error", "attacker_uuid: expected a uuid"))?,
        ),
        Some(_) => return Err(poison("schema_error", "attacker_uuid: expected a uuid")),
    };
    let Some(uuid) = given.or_else(|| ip.as_deref().and_then(attacker_uuid_for_ip)) else {
        return Err(poison(
            "no_anchor",
            "no attacker_uuid, no parsable address and no identity",
        ));
    };
    let seen_at = obj
        .get("first_seen")
        .and_then(Value::as_str)
        .and_then(decnet_ttp::event::parse_ts)
        .unwrap_or(now);
    let ip = ip.filter(|ip| attacker_uuid_for_ip(ip) == Some(uuid));
    let results = MessageResults {
        subject: d.subject().to_owned(),
        upstream_id: d.msg_id().map_or_else(
            || format!("{}:{}", d.stream(), d.stream_seq()),
            str::to_owned,
        ),
        attacker_uuid: Some(uuid),
        identity_uuid: None,
        session_id: None,
        decky_id: None,
        tags: Vec::new(),
        suppressed: Vec::new(),
        rate_window: None,
        sighted: vec![(uuid, ip.clone())],
    };
    Ok(Some(Prepared {
        results,
        sightings: vec![AttackerSighting { uuid, ip, seen_at }],
        identity: None,
    }))
}

/// The clusterer decision an identity subject carries (EVENTS.md §4.9, §5.4).
fn identity_change(subject: &str, body: &Value) -> Result<Option<IdentityChange>, Outcome> {
    let obj = fanout::unwrap_envelope(subject, body);
    let uuid = |field: &str| -> Result<Uuid, Outcome> {
        obj.get(field)
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| poison("schema_error", format!("{field}: expected a uuid")))
    };
    Ok(Some(match subject {
        "identity.formed" => {
            let members = match obj.get("observation_uuids") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(items)) => items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
                            poison(
                                "schema_error",
                                format!("observation_uuids[{i}]: expected a uuid"),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => {
                    return Err(poison(
                        "schema_error",
                        "observation_uuids: expected an array",
                    ));
                }
            };
            IdentityChange::Join {
                identity: uuid("identity_uuid")?,
                attackers: members,
            }
        }
        "identity.observation.linked" => IdentityChange::Join {
            identity: uuid("identity_uuid")?,
            attackers: vec![uuid("observation_uuid")?],
        },
        "identity.merged" => {
            let (winner, loser) = (uuid("winner_uuid")?, uuid("loser_uuid")?);
            if winner == loser {
                return Err(poison(
                    "schema_error",
                    "loser_uuid: equals winner_uuid (an identity cannot merge into itself)",
                ));
            }
            IdentityChange::Merge { winner, loser }
        }
        "identity.campaign.assigned" => IdentityChange::Campaign {
            identity: uuid("identity_uuid")?,
            campaign: uuid("campaign_uuid")?,
        },
        _ => return Ok(None),
    }))
}

/// The allow-list pattern of a known EVENTS subject that is not a source event (EVENTS.md
/// §2.2): acked and counted, never dead-lettered. Everything else a source subject does not
/// claim is `unknown_subject`.
fn skipped(subject: &str) -> Option<&'static str> {
    const SOURCES: [&str; 4] = [
        "attacker.session.ended",
        "attacker.observed",
        "attacker.intel.enriched",
        "attacker.fingerprinted",
    ];
    const SKIPPED: [&str; 4] = [
        "canary.*.revoked",
        "canary.*.placed",
        "smtp.probe.relayed",
        "attacker.>",
    ];
    if SOURCES.contains(&subject) {
        return None;
    }
    SKIPPED
        .into_iter()
        .find(|p| decnet_proto::subject::matches(p, subject))
}

/// The address a message names its attacker by.
fn body_ip(body: &Value) -> Option<String> {
    let obj = fanout::unwrap_envelope("", body);
    ["attacker_ip", "src_ip"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_str).and_then(canonical_ip))
}

fn sighting(event: &EvalEvent, ip: Option<&str>, now: DateTime<Utc>) -> Option<AttackerSighting> {
    let uuid = event.attacker_uuid?;
    // The address is recorded only when it is the one the anchor was derived from.
    let ip = ip
        .filter(|ip| attacker_uuid_for_ip(ip) == Some(uuid))
        .map(str::to_owned);
    Some(AttackerSighting {
        uuid,
        ip,
        seen_at: event.ts.unwrap_or(now),
    })
}

impl Handler for Tagger {
    async fn handle(&mut self, batch: &[Delivery]) -> Vec<Outcome> {
        let outcomes = self.settle(batch).await;
        for outcome in &outcomes {
            let (name, reason) = match outcome {
                Outcome::Done => ("processed", None),
                Outcome::Transient(_) => ("retried", None),
                Outcome::Poison(p) => ("dead_lettered", Some(p.code)),
            };
            TaggerMetrics::count(&self.metrics.messages, "outcome", name);
            if let Some(code) = reason {
                TaggerMetrics::count(&self.metrics.dead_letters, "reason", code);
            }
        }
        outcomes
    }
}

impl Tagger {
    async fn settle(&mut self, batch: &[Delivery]) -> Vec<Outcome> {
        let now = Utc::now();
        let mut outcomes = vec![Outcome::Done; batch.len()];
        let index = self.rules.load_full();
        let mut work: Vec<(usize, Prepared)> = Vec::new();
        let wants_text = index.needs_field(SourceKind::Email, "body_text");
        for (i, d) in batch.iter().enumerate() {
            let mut text = None;
            if wants_text && d.subject() == "email.received" && d.payload().len() <= MAX_BODY_BYTES
            {
                let body: Value = serde_json::from_slice(d.payload()).unwrap_or(Value::Null);
                match self.bodies.body_text(&body).await {
                    Ok(t) => text = t,
                    Err(e) => {
                        outcomes[i] = Outcome::Transient(e.to_string());
                        continue;
                    }
                }
            }
            match self.prepare(&index, d, text, now) {
                Ok(Some(p)) => work.push((i, p)),
                Ok(None) => {}
                Err(outcome) => outcomes[i] = outcome,
            }
        }
        if work.is_empty() {
            return outcomes;
        }
        let all: Vec<&Prepared> = work.iter().map(|(_, p)| p).collect();
        match self.write(&index, &all, now).await {
            Ok(()) => {}
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, messages = work.len(), "database unavailable; the batch will be redelivered");
                for (i, _) in &work {
                    outcomes[*i] = Outcome::Transient(e.to_string());
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "a row was refused; writing the batch message by message");
                for (i, p) in &work {
                    outcomes[*i] = match self.write(&index, &[p], now).await {
                        Ok(()) => Outcome::Done,
                        Err(e) if e.is_transient() => Outcome::Transient(e.to_string()),
                        Err(e) => poison("constraint_violation", e.to_string()),
                    };
                }
            }
        }
        outcomes
    }
}
