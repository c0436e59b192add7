//! The per-rule, per-anchor flood guard.
//!
//! After the floor, tags are counted per (rule, anchor) in fixed 60-second windows keyed on
//! the event's own time. Past the rule's `rate_limit_per_minute`, further tags of that rule for
//! that anchor in that window are withheld as `rate_limited`. Counters live in memory, per
//! process; they are dropped two windows after the newest event seen, so memory follows the
//! number of active attackers, not history. This is a flood guard, not a replay guarantee.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use crate::engine::{Evaluation, SuppressReason, Suppressed};
use crate::state::RuleMode;

const WINDOW_SECS: i64 = 60;

/// Counters of the current windows.
#[derive(Debug, Default)]
pub struct RateLimiter {
    counts: HashMap<(Arc<str>, Uuid, i64), u32>,
    newest_window: i64,
}

impl RateLimiter {
    /// Apply the limit to an evaluation in place. `limit_of` gives a rule's budget per
    /// minute, `mode_of` its state (recorded on the suppression), `at` the event time.
    pub fn apply(
        &mut self,
        eval: &mut Evaluation,
        at: DateTime<Utc>,
        limit_of: impl Fn(&str) -> u32,
        mode_of: impl Fn(&str) -> RuleMode,
    ) {
        let window = at.timestamp().div_euclid(WINDOW_SECS);
        self.advance(window);
        let tags = std::mem::take(&mut eval.tags);
        for tag in tags {
            let Some(anchor) = tag.attacker_uuid.or(tag.identity_uuid) else {
                eval.tags.push(tag);
                continue;
            };
            let count = self
                .counts
                .entry((tag.rule_id.clone(), anchor, window))
                .or_default();
            *count += 1;
            if *count <= limit_of(&tag.rule_id) {
                eval.tags.push(tag);
            } else {
                let mode = mode_of(&tag.rule_id);
                eval.suppressed.push(Suppressed {
                    tag,
                    reason: SuppressReason::RateLimited,
                    mode,
                });
            }
        }
    }

    /// Start of the window holding `at`.
    pub fn window_start(at: DateTime<Utc>) -> DateTime<Utc> {
        let start = at.timestamp().div_euclid(WINDOW_SECS) * WINDOW_SECS;
        Utc.timestamp_opt(start, 0).single().unwrap_or(at)
    }

    fn advance(&mut self, window: i64) {
        if window > self.newest_window {
            self.newest_window = window;
            let keep_from = window - 2;
            self.counts.retain(|(_, _, w), _| *w >= keep_from);
        }
    }

    /// Counters currently held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether no counter is held.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}
