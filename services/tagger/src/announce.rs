//! What the tagger publishes after a commit (EVENTS.md §4.12–§4.14, §5.4, §6): built from
//! what the transaction actually created, so a replay announces nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use decnet_bus::outbox::message;
use decnet_proto::payload::attacker::Observed;
use decnet_proto::payload::ttp::{
    self as wire, EvaluatedState, RuleFired, SuppressedReason, Tagged, TaggedRow,
};
use decnet_proto::subject;
use decnet_proto::wire::{Decky, Ip};
use decnet_storage::{OutboxMessage, WriteOutcome};
use decnet_ttp::engine::{SuppressReason, Suppressed};
use decnet_ttp::state::RuleMode;
use decnet_ttp::tag::CONFIDENCE_FLOOR;
use decnet_ttp::{RuleIndex, Tag};
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

/// First 32 hex digits of SHA-256 over sorted uuids joined by `\n` (EVENTS.md §6.2).
fn digest(uuids: &[Uuid]) -> String {
    let mut sorted: Vec<String> = uuids.iter().map(Uuid::to_string).collect();
    sorted.sort();
    let hash = Sha256::digest(sorted.join("\n").as_bytes());
    hash.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The identities the store resolved: a tag without one of its own takes its attacker's
/// (RULES.md §5.1), and so does the message's announcement.
struct Identities<'a>(&'a HashMap<Uuid, Uuid>);

impl Identities<'_> {
    fn of(&self, identity: Option<Uuid>, attacker: Option<Uuid>) -> Option<Uuid> {
        identity.or_else(|| attacker.and_then(|a| self.0.get(&a).copied()))
    }
}

/// The outbox of one committed batch.
pub(crate) fn announce(
    results: &[&MessageResults],
    outcome: &WriteOutcome,
    index: &RuleIndex,
    now: DateTime<Utc>,
) -> Vec<OutboxMessage> {
    let now = decnet_storage::micros(now);
    let ids = Identities(&outcome.identities);
    let new: HashSet<Uuid> = outcome.new_tags.iter().copied().collect();
    let mut out = Vec::new();
    for r in results {
        let fresh: Vec<&Tag> = r.tags.iter().filter(|t| new.contains(&t.uuid)).collect();
        if !fresh.is_empty() {
            out.push(tagged(r, &fresh, &ids, now));
            out.extend(fired(r, &fresh, &ids, now));
        }
        out.extend(suppressed(r, &ids, index));
    }
    // An attacker that got its address is announced so intel enriches it — unless only a
    // sensor's own `attacker.observed` saw it, which intel reads already (EVENTS.md §5.4).
    let seen_by_source = |a: &Uuid| {
        results
            .iter()
            .filter(|r| r.subject != "attacker.observed")
            .find_map(|r| {
                r.sighted
                    .iter()
                    .find(|(u, _)| u == a)
                    .and_then(|(_, ip)| ip.as_ref().map(|ip| (r, ip)))
            })
    };
    for attacker in &outcome.new_attackers {
        let Some((r, ip)) = seen_by_source(attacker) else {
            continue;
        };
        // EVENTS.md §4.2: the address, where it was first seen and what made the row.
        let body = Observed {
            attacker_ip: Ip::from(ip.as_str()),
            attacker_uuid: Some(*attacker),
            decky: r.decky_id.as_deref().map(Decky::from),
            service: None,
            event_type: Some(r.subject.clone()),
            first_seen: Some(now),
        };
        out.push(message(
            "attacker.observed".into(),
            format!("attacker.observed:{attacker}"),
            &body,
        ));
    }
    out
}

fn tagged(
    r: &MessageResults,
    fresh: &[&Tag],
    ids: &Identities<'_>,
    now: DateTime<Utc>,
) -> OutboxMessage {
    let uuids: Vec<Uuid> = fresh.iter().map(|t| t.uuid).collect();
    let techniques: BTreeSet<&str> = fresh.iter().map(|t| &*t.technique_id).collect();
    let subs: BTreeSet<&str> = fresh
        .iter()
        .filter_map(|t| t.sub_technique_id.as_deref())
        .collect();
    let body = Tagged {
        attacker_uuid: r.attacker_uuid,
        identity_uuid: ids.of(r.identity_uuid, r.attacker_uuid),
        session_id: r.session_id.clone(),
        decky_id: r.decky_id.as_deref().map(Decky::from),
        source_subject: r.subject.clone(),
        tag_uuids: uuids.clone(),
        techniques_added: techniques.into_iter().map(str::to_owned).collect(),
        sub_techniques_added: subs.into_iter().map(str::to_owned).collect(),
        tags: fresh
            .iter()
            .map(|t| TaggedRow {
                uuid: t.uuid,
                rule_id: t.rule_id.to_string(),
                rule_version: t.rule_version,
                tactic: t.tactic.to_string(),
                technique_id: t.technique_id.to_string(),
                sub_technique_id: t.sub_technique_id.as_deref().map(str::to_owned),
                confidence: t.confidence,
                source_kind: t.source_kind.as_str().to_owned(),
                source_id: t.source_id.to_string(),
                attacker_uuid: t.attacker_uuid,
                identity_uuid: ids.of(t.identity_uuid, t.attacker_uuid),
            })
            .collect(),
        tagged_at: now,
    };
    message(
        "ttp.tagged".into(),
        format!("ttp.tagged:{}", digest(&uuids)),
        &body,
    )
}

fn fired(
    r: &MessageResults,
    fresh: &[&Tag],
    ids: &Identities<'_>,
    now: DateTime<Utc>,
) -> Vec<OutboxMessage> {
    let techniques: BTreeSet<&str> = fresh.iter().map(|t| &*t.technique_id).collect();
    techniques
        .into_iter()
        .filter_map(|technique| {
            // The catalogue only admits parent ids, so a refusal here is a bug upstream;
            // it costs this one announcement, never a mangled subject.
            let subject = subject::rule_fired(technique)
                .inspect_err(|e| tracing::error!(error = %e, "not announcing a technique"))
                .ok()?;
            let of: Vec<&&Tag> = fresh
                .iter()
                .filter(|t| &*t.technique_id == technique)
                .collect();
            let uuids: Vec<Uuid> = of.iter().map(|t| t.uuid).collect();
            let sorted = |f: &dyn Fn(&Tag) -> Option<&str>| -> Vec<String> {
                let set: BTreeSet<&str> = of.iter().filter_map(|t| f(t)).collect();
                set.into_iter().map(str::to_owned).collect()
            };
            let body = RuleFired {
                technique_id: technique.to_owned(),
                sub_technique_ids: sorted(&|t| t.sub_technique_id.as_deref()),
                tactics: sorted(&|t| Some(&*t.tactic)),
                rule_ids: sorted(&|t| Some(&*t.rule_id)),
                tag_uuids: uuids.clone(),
                confidence_max: of.iter().map(|t| t.confidence).fold(0.0, f64::max),
                attacker_uuid: r.attacker_uuid,
                identity_uuid: ids.of(r.identity_uuid, r.attacker_uuid),
                session_id: r.session_id.clone(),
                decky_id: r.decky_id.as_deref().map(Decky::from),
                tagged_at: now,
            };
            Some(message(
                subject,
                format!("ttp.rule.fired:{technique}:{}", digest(&uuids)),
                &body,
            ))
        })
        .collect()
}

fn suppressed(r: &MessageResults, ids: &Identities<'_>, index: &RuleIndex) -> Vec<OutboxMessage> {
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
            let technique_ids: BTreeSet<&str> = list
                .iter()
                .map(|s| {
                    s.tag
                        .sub_technique_id
                        .as_deref()
                        .unwrap_or(&s.tag.technique_id)
                })
                .collect();
            let limit = index.get(&rule_id).map(|(r, _)| r.rate_limit_per_minute);
            let rate_limited = reason == SuppressReason::RateLimited;
            let body = wire::Suppressed {
                rule_id: rule_id.clone(),
                rule_version: first.tag.rule_version,
                reason: match reason {
                    SuppressReason::BelowFloor => SuppressedReason::BelowFloor,
                    SuppressReason::RateLimited => SuppressedReason::RateLimited,
                },
                count: list.len() as u64,
                attacker_uuid: first.tag.attacker_uuid,
                identity_uuid: ids.of(first.tag.identity_uuid, first.tag.attacker_uuid),
                source_kind: first.tag.source_kind.as_str().to_owned(),
                source_id: first.tag.source_id.to_string(),
                technique_ids: technique_ids.into_iter().map(str::to_owned).collect(),
                confidence_max: list.iter().map(|s| s.tag.confidence).fold(0.0, f64::max),
                floor: (!rate_limited).then_some(CONFIDENCE_FLOOR),
                limit_per_minute: if rate_limited { limit } else { None },
                window_start: if rate_limited {
                    r.rate_window.map(decnet_storage::micros)
                } else {
                    None
                },
                state: match first.mode {
                    RuleMode::Clipped { .. } => EvaluatedState::Clipped,
                    _ => EvaluatedState::Enabled,
                },
            };
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
