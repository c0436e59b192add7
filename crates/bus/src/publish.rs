//! Publishing with `Nats-Msg-Id` and awaiting the server's acknowledgement, so a publish
//! retried after a crash is dropped as a duplicate instead of stored twice.

use std::collections::BTreeMap;

use async_nats::HeaderMap;
use async_nats::jetstream;
use bytes::Bytes;

use crate::BusError;

/// Publish one message and wait until JetStream stored it; `true` when the server had it
/// already (a duplicate within the window).
pub async fn publish(
    js: &jetstream::Context,
    subject: &str,
    msg_id: &str,
    headers: &BTreeMap<String, String>,
    body: Bytes,
) -> Result<bool, BusError> {
    let mut map = HeaderMap::new();
    map.insert("Nats-Msg-Id", msg_id);
    for (name, value) in headers {
        map.insert(name.as_str(), value.as_str());
    }
    let ack = js
        .publish_with_headers(subject.to_owned(), map, body)
        .await
        .map_err(|e| BusError::nats(&format!("publishing {subject}"), e))?
        .await
        .map_err(|e| BusError::nats(&format!("publishing {subject}"), e))?;
    Ok(ack.duplicate)
}
