//! The streams of EVENTS.md §2.1, and their idempotent creation: a stream that exists is
//! updated, never narrowed (subjects the server already holds are kept).

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::BusError;

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

/// NATS subject matching: `*` one token, `>` one or more trailing tokens.
fn matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for p in pattern.split('.') {
        match (p, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (p, Some(s)) if p == s => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

fn config(def: &StreamDef, subjects: Vec<String>) -> stream::Config {
    stream::Config {
        name: def.name.to_owned(),
        subjects,
        retention: if def.work_queue {
            stream::RetentionPolicy::WorkQueue
        } else {
            stream::RetentionPolicy::Limits
        },
        storage: stream::StorageType::File,
        max_age: def.max_age,
        max_bytes: def.max_bytes,
        max_messages_per_subject: def.max_msgs_per_subject,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    }
}

/// Create or update the named streams. Subjects an existing stream holds beyond ours are
/// kept, so two versions of a service never take subjects from each other.
pub async fn ensure_streams(js: &jetstream::Context, names: &[&str]) -> Result<(), BusError> {
    for name in names {
        let def =
            stream_def(name).ok_or_else(|| BusError::Nats(format!("no stream is named {name}")))?;
        let ours: Vec<String> = def.subjects.iter().map(|s| (*s).to_owned()).collect();
        match js.get_stream(def.name).await {
            Ok(mut existing) => {
                let info = existing
                    .info()
                    .await
                    .map_err(|e| BusError::nats(&format!("reading stream {name}"), e))?;
                let mut subjects = info.config.subjects.clone();
                for s in &ours {
                    if !subjects.contains(s) {
                        subjects.push(s.clone());
                    }
                }
                let wanted = config(def, subjects);
                if differs(&info.config, &wanted) {
                    js.update_stream(wanted)
                        .await
                        .map_err(|e| BusError::nats(&format!("updating stream {name}"), e))?;
                }
            }
            Err(e)
                if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                js.create_stream(config(def, ours))
                    .await
                    .map_err(|e| BusError::nats(&format!("creating stream {name}"), e))?;
            }
            Err(e) => return Err(BusError::nats(&format!("reading stream {name}"), e)),
        }
    }
    Ok(())
}

fn differs(have: &stream::Config, want: &stream::Config) -> bool {
    have.subjects != want.subjects
        || have.max_age != want.max_age
        || have.max_bytes != want.max_bytes
        || have.max_messages_per_subject != want.max_messages_per_subject
        || have.duplicate_window != want.duplicate_window
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
