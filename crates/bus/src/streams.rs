//! Idempotent creation of the streams defined in `decnet-proto` (EVENTS.md §2.1): a stream
//! that exists is updated, never narrowed (subjects the server already holds are kept).

use async_nats::jetstream::{self, stream};
use decnet_proto::{DUPLICATE_WINDOW, StreamDef, stream_def};

use crate::BusError;

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
