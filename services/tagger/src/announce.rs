//! What the tagger publishes after a commit (EVENTS.md §4.12–§4.14, §5.4, §6): built from
//! what the transaction actually created, so a replay announces nothing.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};
use decnet_storage::{OutboxMessage, WriteOutcome};
use decnet_ttp::engine::{SuppressReason, Suppressed};
use decnet_ttp::tag::CONFIDENCE_FLOOR;
use decnet_ttp::{RuleIndex, Tag};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// One upstream message's results, as the handler prepared them.
#[derive(Debug, Clone)]
pub(crate) struct MessageResults {
    /// Subject of the upstream message.
    pub(crate) subject: String,
    /// Its `Nats-Msg-Id`, or `<stream>:<seq>`.
    pub(crate) upstream_id: String,
    /// Anchors of the message (its first event's).
    pub(crate) attacker_uuid: Option<Uuid>,
    pub(crate) identity_uuid: Option<Uuid>,
    pub(crate) session_id: Option<String>,
    pub(crate) decky_id: Option<String>,
    /// Tags that survived floor and rate limit.
    pub(crate) tags: Vec<Tag>,
    /// Tags withheld.
    pub(crate) suppressed: Vec<Suppressed>,
    /// Start of the rate-limit window of the first rate-limited tag.
    pub(crate) rate_window: Option<DateTime<Utc>>,
    /// The attackers this message saw, with the address each was seen at.
    pub(crate) sighted: Vec<(Uuid, Option<String>)>,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// First 32 hex digits of SHA-256 over sorted uuids joined by `\n` (EVENTS.md §6.2).
fn digest(uuids: &[Uuid]) -> String {
    let mut sorted: Vec<String> = uuids.iter().map(Uuid::to_string).collect();
    sorted.sort();
    let hash = Sha256::digest(sorted.join("\n").as_bytes());
    hash.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn message(subject: String, msg_id: String, body: &Value) -> OutboxMessage {
    let mut headers = BTreeMap::new();
    headers.insert("decnet-schema-version".to_owned(), "1".to_owned());
    OutboxMessage {
        subject,
        msg_id,
        headers,
        body: serde_json::to_vec(body).expect("JSON values serialise"),
    }
}

/// The outbox of one committed batch.
pub(crate) fn announce(
    results: &[MessageResults],
    outcome: &WriteOutcome,
    index: &RuleIndex,
    now: DateTime<Utc>,
) -> Vec<OutboxMessage> {
    let new: HashSet<Uuid> = outcome.new_tags.iter().copied().collect();
    let mut out = Vec::new();
    for r in results {
        let fresh: Vec<&Tag> = r.tags.iter().filter(|t| new.contains(&t.uuid)).collect();
        if !fresh.is_empty() {
            out.push(tagged(r, &fresh, now));
            out.extend(fired(r, &fresh, now));
        }
        out.extend(suppressed(r, index));
    }
    // A new attacker is announced so intel enriches it — unless only a sensor's own
    // `attacker.observed` saw it, which intel reads already (EVENTS.md §5.4).
    let seen_by_source = |a: &Uuid| {
        results
            .iter()
            .filter(|r| r.subject != "attacker.observed")
            .find_map(|r| {
                r.sighted
                    .iter()
                    .find(|(u, _)| u == a)
                    .map(|(_, ip)| (r, ip))
            })
    };
    for attacker in &outcome.new_attackers {
        let Some((r, ip)) = seen_by_source(attacker) else {
            continue;
        };
        // EVENTS.md §4.2: the address, where it was first seen and what made the row.
        let body = json!({"attacker_uuid": attacker, "attacker_ip": ip, "decky": r.decky_id,
            "event_type": r.subject, "first_seen": ts(now)});
        out.push(message(
            "attacker.observed".into(),
            format!("attacker.observed:{attacker}"),
            &body,
        ));
    }
    out
}

fn anchors(r: &MessageResults) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("attacker_uuid".into(), json!(r.attacker_uuid));
    m.insert("identity_uuid".into(), json!(r.identity_uuid));
    m.insert("session_id".into(), json!(r.session_id));
    m.insert("decky_id".into(), json!(r.decky_id));
    m
}

fn tagged(r: &MessageResults, fresh: &[&Tag], now: DateTime<Utc>) -> OutboxMessage {
    let uuids: Vec<Uuid> = fresh.iter().map(|t| t.uuid).collect();
    let techniques: BTreeSet<&str> = fresh.iter().map(|t| &*t.technique_id).collect();
    let subs: BTreeSet<&str> = fresh
        .iter()
        .filter_map(|t| t.sub_technique_id.as_deref())
        .collect();
    let tags: Vec<Value> = fresh
        .iter()
        .map(|t| {
            json!({"uuid": t.uuid, "rule_id": &*t.rule_id, "rule_version": t.rule_version,
                "tactic": &*t.tactic, "technique_id": &*t.technique_id,
                "sub_technique_id": t.sub_technique_id.as_deref(), "confidence": t.confidence,
                "source_kind": t.source_kind, "source_id": &*t.source_id,
                "attacker_uuid": t.attacker_uuid, "identity_uuid": t.identity_uuid})
        })
        .collect();
    let mut body = anchors(r);
    body.insert("source_subject".into(), json!(r.subject));
    body.insert("tag_uuids".into(), json!(uuids));
    body.insert("techniques_added".into(), json!(techniques));
    body.insert("sub_techniques_added".into(), json!(subs));
    body.insert("tags".into(), Value::Array(tags));
    body.insert("tagged_at".into(), json!(ts(now)));
    message(
        "ttp.tagged".into(),
        format!("ttp.tagged:{}", digest(&uuids)),
        &Value::Object(body),
    )
}

fn fired(r: &MessageResults, fresh: &[&Tag], now: DateTime<Utc>) -> Vec<OutboxMessage> {
    let techniques: BTreeSet<&str> = fresh.iter().map(|t| &*t.technique_id).collect();
    techniques
        .into_iter()
        .map(|technique| {
            let of: Vec<&&Tag> = fresh
                .iter()
                .filter(|t| &*t.technique_id == technique)
                .collect();
            let uuids: Vec<Uuid> = of.iter().map(|t| t.uuid).collect();
            let subs: BTreeSet<&str> = of
                .iter()
                .filter_map(|t| t.sub_technique_id.as_deref())
                .collect();
            let tactics: BTreeSet<&str> = of.iter().map(|t| &*t.tactic).collect();
            let rules: BTreeSet<&str> = of.iter().map(|t| &*t.rule_id).collect();
            let max = of.iter().map(|t| t.confidence).fold(0.0, f64::max);
            let mut body = anchors(r);
            body.insert("technique_id".into(), json!(technique));
            body.insert("sub_technique_ids".into(), json!(subs));
            body.insert("tactics".into(), json!(tactics));
            body.insert("rule_ids".into(), json!(rules));
            body.insert("tag_uuids".into(), json!(uuids));
            body.insert("confidence_max".into(), json!(max));
            body.insert("tagged_at".into(), json!(ts(now)));
            message(
                format!("ttp.rule.fired.{technique}"),
                format!("ttp.rule.fired:{technique}:{}", digest(&uuids)),
                &Value::Object(body),
            )
        })
        .collect()
}

fn suppressed(r: &MessageResults, index: &RuleIndex) -> Vec<OutboxMessage> {
    let mut groups: BTreeMap<(String, SuppressReason), Vec<&Suppressed>> = BTreeMap::new();
    for s in &r.suppressed {
        groups
            .entry((s.tag.rule_id.to_string(), s.reason))
            .or_default()
            .push(s);
    }
    groups
        .into_iter()
        .map(|((rule_id, reason), list)| {
            let first = list[0];
            let ids: BTreeSet<&str> = list
                .iter()
                .map(|s| {
                    s.tag
                        .sub_technique_id
                        .as_deref()
                        .unwrap_or(&s.tag.technique_id)
                })
                .collect();
            let max = list.iter().map(|s| s.tag.confidence).fold(0.0, f64::max);
            let limit = index.get(&rule_id).map(|(r, _)| r.rate_limit_per_minute);
            let mut body = json!({"rule_id": rule_id, "rule_version": first.tag.rule_version,
                "reason": reason.as_str(), "count": list.len(),
                "attacker_uuid": first.tag.attacker_uuid, "identity_uuid": first.tag.identity_uuid,
                "source_kind": first.tag.source_kind, "source_id": &*first.tag.source_id,
                "technique_ids": ids, "confidence_max": max, "state": first.mode.name()});
            match reason {
                SuppressReason::BelowFloor => body["floor"] = json!(CONFIDENCE_FLOOR),
                SuppressReason::RateLimited => {
                    body["limit_per_minute"] = json!(limit);
                    body["window_start"] = json!(r.rate_window.map(ts));
                }
            }
            message(
                "ttp.rule.suppressed".into(),
                format!("supp:{}:{rule_id}:{}", r.upstream_id, reason.as_str()),
                &body,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_order_free() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        assert_eq!(digest(&[a, b]), digest(&[b, a]));
        assert_eq!(digest(&[a]).len(), 32);
        assert_ne!(digest(&[a]), digest(&[b]));
    }
}
