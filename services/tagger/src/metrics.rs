//! The tagger's metrics, registered in the process's ops registry.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Counters and gauges the handler and the outbox publisher update.
#[derive(Debug, Clone, Default)]
pub struct TaggerMetrics {
    /// Messages settled, by outcome: `processed` (skipped ones included), `dead_lettered`,
    /// `retried`.
    pub messages: Family<Labels, Counter>,
    /// Known non-source subjects acked without work, by allow-list pattern (EVENTS.md §2.2).
    pub skipped: Family<Labels, Counter>,
    /// Poison messages, by DLQ reason code.
    pub dead_letters: Family<Labels, Counter>,
    /// Tag rows inserted (replays insert none).
    pub tags_written: Counter,
    /// Rule changes applied from the RULES stream, by kind: `definition`, `deletion`, `state`.
    pub rule_changes: Family<Labels, Counter>,
    /// Rule definitions from the stream that did not compile here (kept the previous one).
    pub rules_refused: Counter,
}

impl TaggerMetrics {
    /// Register every metric.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "decnet_tagger_messages",
            "Messages the tagger settled, by outcome",
            self.messages.clone(),
        );
        registry.register(
            "decnet_tagger_skipped",
            "Known non-source subjects acked without work, by allow-list pattern",
            self.skipped.clone(),
        );
        registry.register(
            "decnet_tagger_dead_letters",
            "Messages dead-lettered, by reason",
            self.dead_letters.clone(),
        );
        registry.register(
            "decnet_tagger_tags_written",
            "Tag rows inserted",
            self.tags_written.clone(),
        );
        registry.register(
            "decnet_tagger_rule_changes",
            "Rule changes applied from the RULES stream, by kind",
            self.rule_changes.clone(),
        );
        registry.register(
            "decnet_tagger_rules_refused",
            "Rule definitions from the RULES stream that did not compile; the previous version stayed live",
            self.rules_refused.clone(),
        );
    }

    pub(crate) fn count(family: &Family<Labels, Counter>, key: &'static str, value: &str) {
        family.get_or_create(&vec![(key, value.to_owned())]).inc();
    }
}
