//! The streams of EVENTS.md §2.1, as data: every service creates them from this one set of
//! definitions (the bus crate turns them into JetStream configurations).

use std::time::Duration;

use crate::subject::matches;

/// One stream's definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamDef {
    /// `EVENTS`.
    pub name: &'static str,
    /// Subjects it stores.
    pub subjects: &'static [&'static str],
    /// A work queue (each message taken once) rather than limits.
    pub work_queue: bool,
    /// Oldest message kept; zero for none.
    pub max_age: Duration,
    /// Size bound; -1 for none.
    pub max_bytes: i64,
    /// Messages kept per subject; -1 for no bound.
    pub max_msgs_per_subject: i64,
}

const GIB: i64 = 1 << 30;
const DAYS_7: Duration = Duration::from_secs(7 * 86_400);
const DAYS_30: Duration = Duration::from_secs(30 * 86_400);

/// Every stream of the bus.
pub const STREAMS: [StreamDef; 5] = [
    StreamDef {
        name: "EVENTS",
        subjects: &[
            "attacker.>",
            "email.>",
            "canary.>",
            "credential.>",
            "identity.>",
            "smtp.probe.relayed",
        ],
        work_queue: false,
        max_age: DAYS_7,
        max_bytes: 10 * GIB,
        max_msgs_per_subject: -1,
    },
    StreamDef {
        name: "TTP",
        subjects: &["ttp.tagged", "ttp.rule.fired.>", "ttp.rule.suppressed"],
        work_queue: false,
        max_age: DAYS_30,
        max_bytes: 5 * GIB,
        max_msgs_per_subject: -1,
    },
    StreamDef {
        name: "RULES",
        subjects: &["ttp.rule.reloaded.>", "ttp.rule.state.>"],
        work_queue: false,
        max_age: Duration::ZERO,
        max_bytes: -1,
        max_msgs_per_subject: 1,
    },
    StreamDef {
        name: "PROBES",
        subjects: &["smtp.probe.pending"],
        work_queue: true,
        max_age: DAYS_7,
        max_bytes: 2 * GIB,
        max_msgs_per_subject: -1,
    },
    StreamDef {
        name: "DLQ",
        subjects: &["decnet.dlq.>"],
        work_queue: false,
        max_age: DAYS_30,
        max_bytes: GIB,
        max_msgs_per_subject: -1,
    },
];

/// Duplicates of a `Nats-Msg-Id` within this window are dropped by the server.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);

/// The definition of a stream by name.
pub fn stream_def(name: &str) -> Option<&'static StreamDef> {
    STREAMS.iter().find(|s| s.name == name)
}

/// The stream that stores `subject`, if any.
pub fn stream_for_subject(subject: &str) -> Option<&'static StreamDef> {
    STREAMS
        .iter()
        .find(|s| s.subjects.iter().any(|p| matches(p, subject)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_find_their_stream() {
        let name = |s| stream_for_subject(s).map(|d| d.name);
        assert_eq!(name("attacker.session.ended"), Some("EVENTS"));
        assert_eq!(name("canary.5d1c.triggered"), Some("EVENTS"));
        assert_eq!(name("ttp.rule.fired.T1110"), Some("TTP"));
        assert_eq!(name("ttp.rule.fired"), None);
        assert_eq!(name("ttp.rule.state.R0042"), Some("RULES"));
        assert_eq!(name("smtp.probe.pending"), Some("PROBES"));
        assert_eq!(name("smtp.probe.relayed"), Some("EVENTS"));
        assert_eq!(name("decnet.dlq.tagger"), Some("DLQ"));
        assert_eq!(name("weather.report"), None);
    }

    #[test]
    fn stream_subjects_do_not_overlap() {
        for a in &STREAMS {
            for b in &STREAMS {
                if a.name == b.name {
                    continue;
                }
                for s in a.subjects {
                    let probe = s.replace(['>', '*'], "x");
                    assert!(
                        !b.subjects.iter().any(|p| matches(p, &probe)),
                        "{s} of {} is also in {}",
                        a.name,
                        b.name
                    );
                }
            }
        }
    }
}
