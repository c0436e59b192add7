//! Publishing the outbox: staged messages go out in order, each acknowledged by the server
//! before its row is deleted. A failed publish leaves the row for the next pass; the msg id
//! makes a repeat harmless.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use decnet_storage::Database;
use tokio::sync::{Notify, watch};

use crate::SERVICE;

/// Publish every staged message of the tagger; returns when none is left or a publish or the
/// database fails (the rest waits for the next pass).
pub(crate) async fn drain(db: &Database, js: &jetstream::Context) -> bool {
    loop {
        let pending = match db.pending(SERVICE, 256).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "reading the outbox failed");
                return false;
            }
        };
        if pending.is_empty() {
            return true;
        }
        // Pipelined: every publish is sent, then the acknowledgements are awaited in order;
        // one round trip per message would cap the tagger at the outbox's pace.
        let mut sent = Vec::new();
        let mut failed = false;
        let mut acks = Vec::new();
        for p in &pending {
            let m = &p.message;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", m.msg_id.as_str());
            for (k, v) in &m.headers {
                headers.insert(k.as_str(), v.as_str());
            }
            match js
                .publish_with_headers(m.subject.clone(), headers, Bytes::from(m.body.clone()))
                .await
            {
                Ok(ack) => acks.push((p, ack)),
                Err(e) => {
                    tracing::warn!(subject = %m.subject, error = %e, "publishing from the outbox failed; will retry");
                    let _ = db.record_publish_failure(p.id, &e.to_string()).await;
                    failed = true;
                    break;
                }
            }
        }
        for (p, ack) in acks {
            match ack.await {
                Ok(_) => sent.push(p.id),
                Err(e) => {
                    tracing::warn!(subject = %p.message.subject, error = %e, "publishing from the outbox failed; will retry");
                    let _ = db.record_publish_failure(p.id, &e.to_string()).await;
                    failed = true;
                }
            }
        }
        if let Err(e) = db.delete_published(SERVICE, &sent).await {
            tracing::warn!(error = %e, "deleting published outbox rows failed; they will be published again, harmlessly");
            return false;
        }
        if failed {
            return false;
        }
    }
}

/// Publish after every commit, and every second in case a wake-up was missed or a publish
/// failed; stop when `shutdown` turns true.
pub(crate) async fn publish_loop(
    db: Database,
    js: jetstream::Context,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        drain(&db, &js).await;
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => {}
        }
    }
}
