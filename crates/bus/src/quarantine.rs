//! The `QUARANTINE` object store bucket (SMTP.md §6, EVENTS.md §2.1): the SMTP decoy puts
//! every stored message there as `<decky_id>/<stored_as>` before it publishes anything about
//! it, so the tagger and probe-relay read the bytes on any host without a shared disk.

use std::time::Duration;

use async_nats::jetstream::{self, object_store, stream::StorageType};
use tokio::io::AsyncReadExt;

use crate::BusError;

/// The bucket's name.
pub const BUCKET: &str = "QUARANTINE";

/// How long a message is kept: 30 days.
pub const MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The object holding one decoy's stored message.
pub fn object_name(decky_id: &str, stored_as: &str) -> String {
    format!("{decky_id}/{stored_as}")
}

/// Open the bucket, creating it when it does not exist (the decoy's start-up). Two decoys
/// starting at once both succeed: a creation that loses the race opens the winner's bucket.
pub async fn ensure_bucket(js: &jetstream::Context) -> Result<object_store::ObjectStore, BusError> {
    if let Some(store) = open_bucket(js).await? {
        return Ok(store);
    }
    let created = js
        .create_object_store(object_store::Config {
            bucket: BUCKET.to_owned(),
            description: Some("SMTP decoy quarantine: <decky_id>/<stored_as>".to_owned()),
            max_age: MAX_AGE,
            max_bytes: -1,
            storage: StorageType::File,
            num_replicas: 1,
            ..Default::default()
        })
        .await;
    match created {
        Ok(store) => Ok(store),
        Err(e) => open_bucket(js)
            .await?
            .ok_or_else(|| BusError::nats("creating object store QUARANTINE", e)),
    }
}

/// Open the bucket if it exists; `None` when no decoy has created it yet.
pub async fn open_bucket(
    js: &jetstream::Context,
) -> Result<Option<object_store::ObjectStore>, BusError> {
    let stream = format!("OBJ_{BUCKET}");
    match js.get_stream(&stream).await {
        Ok(_) => js
            .get_object_store(BUCKET)
            .await
            .map(Some)
            .map_err(|e| BusError::nats("opening object store QUARANTINE", e)),
        Err(e)
            if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            Ok(None)
        }
        Err(e) => Err(BusError::nats("opening object store QUARANTINE", e)),
    }
}

/// Store a message (again: a spool retry replaces the object with the same bytes).
pub async fn put(
    store: &object_store::ObjectStore,
    name: &str,
    mut bytes: &[u8],
) -> Result<(), BusError> {
    store
        .put(name, &mut bytes)
        .await
        .map(|_| ())
        .map_err(|e| BusError::nats(&format!("putting {BUCKET}/{name}"), e))
}

/// Read a message, at most `limit` bytes of it; `None` when there is no such object. A
/// longer object is an error: nothing reads a message bigger than it was told to expect.
pub async fn get(
    store: &object_store::ObjectStore,
    name: &str,
    limit: usize,
) -> Result<Option<Vec<u8>>, BusError> {
    let mut object = match store.get(name).await {
        Ok(o) => o,
        Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BusError::nats(&format!("reading {BUCKET}/{name}"), e)),
    };
    let mut bytes = Vec::new();
    (&mut object)
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| BusError::nats(&format!("reading {BUCKET}/{name}"), e))?;
    if bytes.len() > limit {
        return Err(BusError::Nats(format!(
            "{BUCKET}/{name} is larger than the {limit} bytes expected"
        )));
    }
    Ok(Some(bytes))
}
