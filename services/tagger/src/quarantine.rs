//! `body_text` for the email rules that read it (EVENTS.md §5.2, RULES.md §1): the message
//! text never travels in `email.received`, so the tagger reads the `QUARANTINE` object the
//! event names, only when an active rule needs it, and keeps the text for that one
//! evaluation.

use async_nats::jetstream::{self, object_store::ObjectStore};
use decnet_bus::{BusError, quarantine};
use serde_json::Value;

/// Largest message read: the decoy keeps at most 10 MiB, and a little more is tolerated for
/// other producers' framing.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Reads message text from the bucket, opening it on first use (the decoy creates it; a
/// tagger may start first).
pub(crate) struct BodyReader {
    js: jetstream::Context,
    bucket: Option<ObjectStore>,
}

impl BodyReader {
    pub(crate) fn new(js: jetstream::Context) -> BodyReader {
        BodyReader { js, bucket: None }
    }

    /// The text of the message an `email.received` body names, or None when it names none,
    /// already carries `body_text`, or no such object exists (then rules that need the text
    /// see it absent, as with any producer that has no bucket). A bus failure is an error:
    /// the message is retried rather than evaluated without its text.
    pub(crate) async fn body_text(&mut self, body: &Value) -> Result<Option<String>, BusError> {
        if body.get("body_text").is_some() {
            return Ok(None);
        }
        let (Some(decky), Some(stored_as)) = (
            body.get("decky_id").and_then(Value::as_str),
            body.get("stored_as").and_then(Value::as_str),
        ) else {
            return Ok(None);
        };
        if self.bucket.is_none() {
            self.bucket = quarantine::open_bucket(&self.js).await?;
        }
        let Some(bucket) = &self.bucket else {
            return Ok(None);
        };
        let name = quarantine::object_name(decky, stored_as);
        let Some(bytes) = quarantine::get(bucket, &name, MAX_MESSAGE).await? else {
            return Ok(None);
        };
        Ok(
            tokio::task::spawn_blocking(move || decnet_mail::body_text(&bytes))
                .await
                .unwrap_or(None),
        )
    }
}
