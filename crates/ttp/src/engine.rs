//! The compiled rule index and evaluation.
//!
//! Rules are compiled once into an immutable [`RuleIndex`]: per source kind, the rules that
//! apply to it in ascending rule id, and for every (kind, field) pair one `RegexSet` holding
//! the patterns of all regex rules that read that field. Evaluating an event costs one pass
//! per field that some rule reads, not one pass per rule; only the rules the set reports run
//! their own regex again, to capture the matched text for evidence. Lifter rules (code
//! predicates) are called in turn, each inside its own failure boundary.
//!
//! Operational state (disabled, clipped) lives beside the compiled rules, so a state change
//! swaps a small table instead of recompiling patterns. The index does no I/O and keeps no
//! counters: rate limiting happens after evaluation (see [`crate::ratelimit`]).

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use regex::{Regex, RegexSet};

use crate::catalogue::technique_url;
use crate::event::EvalEvent;
use crate::evidence::Evidence;
use crate::kind::SourceKind;
use crate::lifter::{Decision, Misfits};
use crate::pack::Pack;
use crate::rule::{Matcher, RuleDef};
use crate::state::{RuleMode, StateTable};
use crate::tag::{CONFIDENCE_FLOOR, Tag, round4, tag_id};

/// Why a tag was computed but not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressReason {
    /// Final confidence under [`CONFIDENCE_FLOOR`].
    BelowFloor,
    /// The rule exceeded its per-anchor budget in the window.
    RateLimited,
}

impl SuppressReason {
    /// `below_floor` or `rate_limited`.
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressReason::BelowFloor => "below_floor",
            SuppressReason::RateLimited => "rate_limited",
        }
    }
}

/// A tag the engine computed and then withheld.
#[derive(Debug, Clone, PartialEq)]
pub struct Suppressed {
    /// The tag as it would have been written (its computed confidence included).
    pub tag: Tag,
    /// Why it was withheld.
    pub reason: SuppressReason,
    /// The rule's mode at evaluation.
    pub mode: RuleMode,
}

/// What one event produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evaluation {
    /// Tags to write, in rule order then emit order.
    pub tags: Vec<Tag>,
    /// Tags withheld by the floor.
    pub suppressed: Vec<Suppressed>,
    /// What lifter rules met on this event: a field of the wrong type (read as absent), or a
    /// panic (the rule lost its tags for the event, nothing else did). The caller counts them
    /// (`decnet_ttp_lifter_errors_total{rule_id}`).
    pub lifter_errors: Vec<LifterError>,
}

/// A lifter rule that gave up on one event.
#[derive(Debug, Clone, PartialEq)]
pub struct LifterError {
    /// The rule.
    pub rule_id: Arc<str>,
    /// What went wrong (`fail_count: expected an integer`, or the panic message).
    pub detail: String,
}

/// Compiled size allowed for one field's set: the sum of its members' 1 MiB limits for a
/// pack of 64 rules on one field.
const SET_SIZE_LIMIT: usize = 64 << 20;
/// Lazy-DFA cache of one field's set (see [`compile_group`]).
const SET_DFA_CACHE_BYTES: usize = 64 << 20;

/// Rules of one field, matched together.
#[derive(Debug, Clone)]
struct FieldGroup {
    field: String,
    matcher: GroupMatcher,
    /// Per pattern: the rule's position in the index and the field's priority in the rule's
    /// field list (lower wins for `matched_tokens`); `None` for a pattern whose rule was
    /// replaced or removed since the set was compiled.
    members: Vec<Option<(usize, usize)>>,
}

/// How a group matches.
#[derive(Debug, Clone)]
enum GroupMatcher {
    /// A set compiled for the group: one pass over the field for all its rules.
    Set(RegexSet),
    /// One reloaded rule's own regex, until the index is compacted: a reload swaps in at the
    /// cost of validating one rule instead of recompiling its kind's whole set (50 ms for the
    /// command kind, measured with the reload bench).
    Single(Regex),
}

#[derive(Debug, Default, Clone)]
struct KindIndex {
    /// Positions of the rules applying to this kind, ascending.
    rules: Vec<usize>,
    groups: Vec<FieldGroup>,
    /// Positions of the lifter rules among them, ascending.
    lifters: Vec<usize>,
}

/// Where each rule of an index went in its successor: `moved[old] = new`, or [`GONE`] for a
/// rule removed or replaced.
const GONE: usize = usize::MAX;

impl KindIndex {
    /// This kind's index after a reload: positions moved, the patterns of a rule that left
    /// retired, and `added` (a rule new or replaced, at its new position) matched by its own
    /// regex. Every compiled set is shared.
    fn patched(
        &self,
        moved: &[usize],
        added: Option<(usize, &RuleDef)>,
        kind: SourceKind,
    ) -> KindIndex {
        let carry = |positions: &[usize]| -> Vec<usize> {
            positions
                .iter()
                .map(|p| moved[*p])
                .filter(|p| *p != GONE)
                .collect()
        };
        let mut rules = carry(&self.rules);
        let mut lifters = carry(&self.lifters);
        let mut groups: Vec<FieldGroup> = self
            .groups
            .iter()
            .map(|g| FieldGroup {
                field: g.field.clone(),
                matcher: g.matcher.clone(),
                members: g
                    .members
                    .iter()
                    .map(|m| {
                        m.map(|(p, prio)| (moved[p], prio))
                            .filter(|(p, _)| *p != GONE)
                    })
                    .collect(),
            })
            .filter(|g| g.members.iter().any(Option::is_some))
            .collect();
        if let Some((pos, def)) = added.filter(|(_, def)| def.applies_to.contains(&kind)) {
            rules.push(pos);
            rules.sort_unstable();
            match &def.matcher {
                Matcher::Lifter(_) => {
                    lifters.push(pos);
                    lifters.sort_unstable();
                }
                Matcher::Regex(m) => {
                    for (priority, field) in m.fields_for(kind).enumerate() {
                        groups.push(FieldGroup {
                            field: field.to_owned(),
                            matcher: GroupMatcher::Single(m.regex.clone()),
                            members: vec![Some((pos, priority))],
                        });
                    }
                }
            }
        }
        KindIndex {
            rules,
            groups,
            lifters,
        }
    }

    /// Whether every group is a compiled set with no retired pattern.
    fn is_compact(&self) -> bool {
        self.groups.iter().all(|g| {
            matches!(g.matcher, GroupMatcher::Set(_)) && g.members.iter().all(Option::is_some)
        })
    }
}

/// A regex rule that matched an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegexHit<'e> {
    /// Position of the rule in the index.
    rule: usize,
    /// The text the rule's regex matched, for `matched_tokens`.
    pub token: Option<&'e str>,
}

/// Why a rule fires: the regex's matched text, or a lifter's decision.
enum Hit<'a> {
    Regex(Option<&'a str>),
    Lifter(Decision),
}

/// The strings of one emit, prepared once so tags share them.
#[derive(Debug)]
struct EmitText {
    tactic: Arc<str>,
    technique_id: Arc<str>,
    sub_technique_id: Option<Arc<str>>,
    mitre_url: Arc<str>,
    confidence: f64,
}

/// A rule with its tag strings prepared.
#[derive(Debug)]
struct CompiledRule {
    def: RuleDef,
    rule_id: Arc<str>,
    attack_release: Arc<str>,
    emits: Vec<EmitText>,
}

impl CompiledRule {
    fn new(def: RuleDef) -> CompiledRule {
        let emits = def
            .emits
            .iter()
            .map(|e| EmitText {
                tactic: e.tactic.as_str().into(),
                technique_id: e.technique_id.as_str().into(),
                sub_technique_id: e.sub_technique_id.as_deref().map(Arc::from),
                mitre_url: technique_url(e.attack_id()).into(),
                confidence: e.confidence,
            })
            .collect();
        CompiledRule {
            rule_id: def.rule_id.as_str().into(),
            attack_release: def.attack_release.as_str().into(),
            emits,
            def,
        }
    }
}

/// An immutable, compiled rule index.
#[derive(Debug)]
pub struct RuleIndex {
    rules: Vec<Arc<CompiledRule>>,
    modes: Vec<RuleMode>,
    /// Indexed by `SourceKind as usize`; a reload recompiles only the kinds its rule applies
    /// to and shares the others.
    kinds: [Arc<KindIndex>; SourceKind::ALL.len()],
}

impl RuleIndex {
    /// Compile a pack with every rule enabled.
    pub fn new(pack: &Pack) -> RuleIndex {
        RuleIndex::with_states(pack, &StateTable::default())
    }

    /// Compile a pack under the given operational states.
    pub fn with_states(pack: &Pack, states: &StateTable) -> RuleIndex {
        let rules: Vec<Arc<CompiledRule>> = pack
            .rules()
            .iter()
            .cloned()
            .map(|r| Arc::new(CompiledRule::new(r)))
            .collect();
        let modes = rules.iter().map(|r| states.mode(&r.def.rule_id)).collect();
        let kinds = SourceKind::ALL.map(|kind| Arc::new(build_kind(&rules, kind)));
        RuleIndex {
            rules,
            modes,
            kinds,
        }
    }

    /// The same compiled rules under new states: no pattern is recompiled.
    pub fn restate(&self, states: &StateTable) -> RuleIndex {
        let modes = self
            .rules
            .iter()
            .map(|r| states.mode(&r.def.rule_id))
            .collect();
        RuleIndex {
            rules: self.rules.clone(),
            modes,
            kinds: self.kinds.clone(),
        }
    }

    /// The index with `def` added, or replacing the rule of the same id; every other rule's
    /// compiled form is shared, not rebuilt, and modes are kept by rule id (a rule new to the
    /// index is enabled). The new rule is matched by its own regex until [`Self::compacted`]
    /// folds it into its kind's set. An evaluation running on `self` finishes on `self`: the
    /// caller swaps the new index in atomically.
    pub fn with_rule(&self, def: RuleDef) -> RuleIndex {
        let added = Arc::new(CompiledRule::new(def));
        let mut rules: Vec<Arc<CompiledRule>> = self
            .rules
            .iter()
            .filter(|r| r.def.rule_id != added.def.rule_id)
            .cloned()
            .collect();
        rules.push(Arc::clone(&added));
        rules.sort_by(|a, b| a.def.rule_id.cmp(&b.def.rule_id));
        self.patched(rules, Some(&added.def.rule_id))
    }

    /// The index without the rule `rule_id` (a deleted rule file).
    pub fn without_rule(&self, rule_id: &str) -> RuleIndex {
        let rules = self
            .rules
            .iter()
            .filter(|r| r.def.rule_id != rule_id)
            .cloned()
            .collect();
        self.patched(rules, None)
    }

    /// The index over `rules`, where `added` names a rule new or replaced. A kind that neither
    /// held a rule that left nor takes the new one is shared as it is when no position moved.
    fn patched(&self, rules: Vec<Arc<CompiledRule>>, added: Option<&str>) -> RuleIndex {
        let modes = rules
            .iter()
            .map(|r| {
                self.get(&r.def.rule_id)
                    .map_or(RuleMode::Enabled, |(_, mode)| mode)
            })
            .collect();
        let position: HashMap<&str, usize> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.def.rule_id.as_str(), i))
            .collect();
        let moved: Vec<usize> = self
            .rules
            .iter()
            .map(|r| match position.get(r.def.rule_id.as_str()) {
                // A replaced rule's old patterns retire; its new form arrives as `added`.
                Some(_) if Some(r.def.rule_id.as_str()) == added => GONE,
                Some(p) => *p,
                None => GONE,
            })
            .collect();
        let shifted = moved
            .iter()
            .enumerate()
            .any(|(old, new)| *new != GONE && *new != old);
        let added = added.and_then(|id| position.get(id).map(|p| (*p, &rules[*p].def)));
        let kinds = SourceKind::ALL.map(|kind| {
            let old = &self.kinds[kind as usize];
            let takes_new = added.is_some_and(|(_, def)| def.applies_to.contains(&kind));
            let lost_one = old.rules.iter().any(|p| moved[*p] == GONE);
            if shifted || takes_new || lost_one {
                Arc::new(old.patched(&moved, added, kind))
            } else {
                Arc::clone(old)
            }
        });
        RuleIndex {
            rules,
            modes,
            kinds,
        }
    }

    /// Whether every kind is matched by compiled sets only (no reload since compilation).
    pub fn is_compact(&self) -> bool {
        self.kinds.iter().all(|k| k.is_compact())
    }

    /// The same rules and modes with every kind compiled afresh: reloaded rules fold back into
    /// their kind's set. Costs what compiling the pack costs; run it off the hot path.
    pub fn compacted(&self) -> RuleIndex {
        RuleIndex {
            rules: self.rules.clone(),
            modes: self.modes.clone(),
            kinds: SourceKind::ALL.map(|kind| Arc::new(build_kind(&self.rules, kind))),
        }
    }

    /// The compiled rules, in rule-id order.
    pub fn rules(&self) -> impl Iterator<Item = (&RuleDef, RuleMode)> {
        self.rules
            .iter()
            .map(|r| &r.def)
            .zip(self.modes.iter().copied())
    }

    /// One compiled rule and its mode, by id.
    pub fn get(&self, rule_id: &str) -> Option<(&RuleDef, RuleMode)> {
        let pos = self
            .rules
            .binary_search_by(|r| r.def.rule_id.as_str().cmp(rule_id))
            .ok()?;
        Some((&self.rules[pos].def, self.modes[pos]))
    }

    /// Whether a rule that runs (not disabled) on `kind` reads `field`, which the tagger
    /// fetches before evaluating only when this says so (EVENTS.md §5.2: `body_text` from
    /// the quarantine, read only when an active rule needs it).
    pub fn needs_field(&self, kind: SourceKind, field: &str) -> bool {
        self.rules().any(|(def, mode)| {
            mode != RuleMode::Disabled
                && def.applies_to.contains(&kind)
                && match &def.matcher {
                    Matcher::Regex(m) => m.fields_for(kind).any(|f| f == field),
                    Matcher::Lifter(l) => l.lifter.reads_fetched(field),
                }
        })
    }

    /// Whether some rule applies to `kind`.
    pub fn covers(&self, kind: SourceKind) -> bool {
        !self.kinds[kind as usize].rules.is_empty()
    }

    /// Evaluate one event: the `RegexSet` path.
    pub fn evaluate(&self, event: &EvalEvent, now: DateTime<Utc>) -> Evaluation {
        let hits = self.regex_hits(event);
        self.assemble(event, hits, now)
    }

    /// Evaluate one event by running every applicable regex on its own, rule by rule. Gives
    /// the same result as [`RuleIndex::evaluate`]; kept as the reference the set path is
    /// tested and benchmarked against.
    pub fn evaluate_sequential(&self, event: &EvalEvent, now: DateTime<Utc>) -> Evaluation {
        let hits = self.regex_hits_sequential(event);
        self.assemble(event, hits, now)
    }

    /// The active regex rules that match `event`, in rule order, with their matched text:
    /// one `RegexSet` pass per field, then each reported rule's own regex for the text.
    pub fn regex_hits<'e>(&self, event: &'e EvalEvent) -> Vec<RegexHit<'e>> {
        let index = &self.kinds[event.kind as usize];
        // For each matching rule, the highest-priority field that matched and its text.
        let mut fired: Vec<(usize, usize, &str)> = Vec::new();
        for group in &index.groups {
            let Some(haystack) = event.haystack(&group.field) else {
                continue;
            };
            let mut record = |member: Option<(usize, usize)>| {
                let Some((rule, priority)) = member else {
                    return;
                };
                if !self.modes[rule].is_active() {
                    return;
                }
                match fired.iter_mut().find(|(r, _, _)| *r == rule) {
                    Some(entry) if entry.1 > priority => *entry = (rule, priority, haystack),
                    Some(_) => {}
                    None => fired.push((rule, priority, haystack)),
                }
            };
            match &group.matcher {
                GroupMatcher::Set(set) => {
                    for hit in set.matches(haystack).iter() {
                        record(group.members[hit]);
                    }
                }
                GroupMatcher::Single(regex) => {
                    if regex.is_match(haystack) {
                        record(group.members[0]);
                    }
                }
            }
        }
        fired.sort_unstable_by_key(|(rule, _, _)| *rule);
        fired
            .into_iter()
            .map(|(rule, _, haystack)| RegexHit {
                rule,
                token: self
                    .regex(rule)
                    .and_then(|m| m.regex.find(haystack))
                    .map(|m| m.as_str()),
            })
            .collect()
    }

    /// [`RuleIndex::regex_hits`] the slow way: every applicable regex in turn.
    pub fn regex_hits_sequential<'e>(&self, event: &'e EvalEvent) -> Vec<RegexHit<'e>> {
        let index = &self.kinds[event.kind as usize];
        let mut hits = Vec::new();
        for &rule in &index.rules {
            let Some(matcher) = self.regex(rule).filter(|_| self.modes[rule].is_active()) else {
                continue;
            };
            let token = matcher
                .fields_for(event.kind)
                .filter_map(|field| event.haystack(field))
                .find_map(|haystack| matcher.regex.find(haystack));
            if let Some(token) = token {
                hits.push(RegexHit {
                    rule,
                    token: Some(token.as_str()),
                });
            }
        }
        hits
    }

    /// Regex hits and lifter rules, merged so tags come out in rule order.
    fn assemble(
        &self,
        event: &EvalEvent,
        hits: Vec<RegexHit<'_>>,
        now: DateTime<Utc>,
    ) -> Evaluation {
        let index = &self.kinds[event.kind as usize];
        let mut out = Evaluation {
            tags: Vec::with_capacity(hits.len()),
            ..Evaluation::default()
        };
        let mut regex = hits.into_iter().peekable();
        let mut lifters = index.lifters.iter().copied().peekable();
        loop {
            let take_regex = match (regex.peek(), lifters.peek()) {
                (None, None) => break,
                (Some(hit), Some(l)) => hit.rule < *l,
                (Some(_), None) => true,
                (None, Some(_)) => false,
            };
            if take_regex {
                let hit = regex.next().expect("peeked");
                self.fire(hit.rule, event, Hit::Regex(hit.token), now, &mut out);
            } else {
                let rule = lifters.next().expect("peeked");
                self.run_lifter(rule, event, now, &mut out);
            }
        }
        out
    }

    /// The rule id of a hit.
    pub fn hit_rule_id(&self, hit: &RegexHit<'_>) -> &str {
        &self.rules[hit.rule].def.rule_id
    }

    fn regex(&self, rule: usize) -> Option<&crate::rule::RegexMatcher> {
        match &self.rules[rule].def.matcher {
            Matcher::Regex(m) => Some(m),
            Matcher::Lifter(_) => None,
        }
    }

    /// Run one lifter rule, containing its failures to its own tags.
    fn run_lifter(&self, rule: usize, event: &EvalEvent, now: DateTime<Utc>, out: &mut Evaluation) {
        if !self.modes[rule].is_active() {
            return;
        }
        let compiled = &self.rules[rule];
        let Matcher::Lifter(matcher) = &compiled.def.matcher else {
            return;
        };
        let _span =
            tracing::trace_span!("ttp.lifter", lifter = %matcher.name, rule_id = %compiled.rule_id)
                .entered();
        let misfits = Misfits::default();
        let outcome = catch_unwind(AssertUnwindSafe(|| matcher.lifter.lift(event, &misfits)));
        for misfit in misfits.take() {
            tracing::warn!(rule_id = %compiled.rule_id, field = %misfit.field, expected = misfit.expected,
                source_kind = %event.kind, "a field has the wrong type; the rule read it as absent");
            out.lifter_errors.push(LifterError {
                rule_id: Arc::clone(&compiled.rule_id),
                detail: misfit.to_string(),
            });
        }
        match outcome {
            Ok(Some(decision)) => self.fire(rule, event, Hit::Lifter(decision), now, out),
            Ok(None) => {}
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".to_owned());
                tracing::warn!(rule_id = %compiled.rule_id, source_kind = %event.kind, "lifter panicked: {message}");
                out.lifter_errors.push(LifterError {
                    rule_id: Arc::clone(&compiled.rule_id),
                    detail: format!("panic: {message}"),
                });
            }
        }
    }

    /// Turn one firing rule into tags (or floor suppressions): every emit for a regex, the
    /// decision's picks for a lifter.
    fn fire(
        &self,
        rule: usize,
        event: &EvalEvent,
        hit: Hit<'_>,
        now: DateTime<Utc>,
        out: &mut Evaluation,
    ) {
        if event.attacker_uuid.is_none() && event.identity_uuid.is_none() {
            return;
        }
        let compiled = &self.rules[rule];
        let mut evidence =
            Evidence::from_payload(event.kind, &compiled.def.evidence_fields, &event.payload);
        match hit {
            Hit::Regex(token) => {
                if let Some(token) = token {
                    evidence.insert_tokens(event.kind, &[token]);
                }
                let shared = Arc::new(evidence.bound());
                for emit in 0..compiled.emits.len() {
                    self.emit_tag(rule, event, emit, 1.0, Arc::clone(&shared), now, out);
                }
            }
            Hit::Lifter(decision) => {
                for (key, value) in decision.extras {
                    evidence.insert(event.kind, key, value);
                }
                match decision.picks {
                    None => {
                        let shared = Arc::new(evidence.bound());
                        for emit in 0..compiled.emits.len() {
                            self.emit_tag(rule, event, emit, 1.0, Arc::clone(&shared), now, out);
                        }
                    }
                    Some(picks) => {
                        for pick in picks {
                            if pick.emit >= compiled.emits.len() {
                                continue;
                            }
                            let mut own = evidence.clone();
                            for (key, value) in pick.extras {
                                own.insert(event.kind, key, value);
                            }
                            let multiplier = pick.multiplier.clamp(0.0, 1.0);
                            self.emit_tag(
                                rule,
                                event,
                                pick.emit,
                                multiplier,
                                Arc::new(own.bound()),
                                now,
                                out,
                            );
                        }
                    }
                }
            }
        }
    }

    /// One tag of one emit, or its floor suppression.
    #[allow(
        clippy::too_many_arguments,
        reason = "one private call site shape, on the hot path"
    )]
    fn emit_tag(
        &self,
        rule: usize,
        event: &EvalEvent,
        emit: usize,
        multiplier: f64,
        evidence: Arc<Evidence>,
        now: DateTime<Utc>,
        out: &mut Evaluation,
    ) {
        let compiled = &self.rules[rule];
        let def = &compiled.def;
        let mode = self.modes[rule];
        let emit = &compiled.emits[emit];
        let confidence = mode.cap(round4(emit.confidence * multiplier));
        let tag = Tag {
            uuid: tag_id(
                event.kind,
                &event.source_id,
                &def.rule_id,
                def.rule_version,
                &emit.technique_id,
                emit.sub_technique_id.as_deref(),
            ),
            source_kind: event.kind,
            source_id: Arc::clone(&event.source_id),
            attacker_uuid: if event.kind == SourceKind::Identity {
                None
            } else {
                event.attacker_uuid
            },
            identity_uuid: event.identity_uuid,
            session_id: event.session_id.clone(),
            decky_id: event.decky_id.clone(),
            tactic: Arc::clone(&emit.tactic),
            technique_id: Arc::clone(&emit.technique_id),
            sub_technique_id: emit.sub_technique_id.clone(),
            confidence,
            rule_id: Arc::clone(&compiled.rule_id),
            rule_version: def.rule_version,
            evidence,
            attack_release: Arc::clone(&compiled.attack_release),
            mitre_url: Arc::clone(&emit.mitre_url),
            created_at: now,
        };
        if confidence < CONFIDENCE_FLOOR {
            out.suppressed.push(Suppressed {
                tag,
                reason: SuppressReason::BelowFloor,
                mode,
            });
        } else {
            out.tags.push(tag);
        }
    }
}

/// The patterns of one field while an index is being built.
#[derive(Default)]
struct PendingGroup {
    patterns: Vec<String>,
    members: Vec<(usize, usize)>,
}

/// Index the rules applying to one kind, grouping regex rules by field.
fn build_kind(rules: &[Arc<CompiledRule>], kind: SourceKind) -> KindIndex {
    let mut index = KindIndex::default();
    let mut by_field: Vec<(String, PendingGroup)> = Vec::new();
    for (pos, rule) in rules.iter().map(|r| &r.def).enumerate() {
        if !rule.applies_to.contains(&kind) {
            continue;
        }
        index.rules.push(pos);
        let matcher = match &rule.matcher {
            Matcher::Regex(matcher) => matcher,
            Matcher::Lifter(_) => {
                index.lifters.push(pos);
                continue;
            }
        };
        for (priority, field) in matcher.fields_for(kind).enumerate() {
            let slot = match by_field.iter().position(|(f, _)| f == field) {
                Some(slot) => slot,
                None => {
                    by_field.push((field.to_owned(), PendingGroup::default()));
                    by_field.len() - 1
                }
            };
            let group = &mut by_field[slot].1;
            group.patterns.push(matcher.regex.as_str().to_owned());
            group.members.push((pos, priority));
        }
    }
    for (field, PendingGroup { patterns, members }) in by_field {
        index
            .groups
            .extend(compile_group(field, &patterns, members));
    }
    index
}

/// One set for a field's patterns; one set per pattern if their combined size is refused
/// (each compiled alone under the size limit, so only the sum can fail).
fn compile_group(
    field: String,
    patterns: &[String],
    members: Vec<(usize, usize)>,
) -> Vec<FieldGroup> {
    // The lazy DFA of a set of command-position patterns needs far more than the default
    // cache: with 2 MiB it thrashes and the search falls back to the NFA, 14 times slower than
    // evaluating each rule on its own (measured with the engine bench).
    let built = regex::RegexSetBuilder::new(patterns)
        .size_limit(SET_SIZE_LIMIT)
        .dfa_size_limit(SET_DFA_CACHE_BYTES)
        .build();
    match built {
        Ok(set) => vec![FieldGroup {
            field,
            matcher: GroupMatcher::Set(set),
            members: members.into_iter().map(Some).collect(),
        }],
        Err(_) => patterns
            .iter()
            .zip(members)
            .map(|(pattern, member)| {
                let set = RegexSet::new([pattern]).expect("compiled alone at load");
                FieldGroup {
                    field: field.clone(),
                    matcher: GroupMatcher::Set(set),
                    members: vec![Some(member)],
                }
            })
            .collect(),
    }
}
