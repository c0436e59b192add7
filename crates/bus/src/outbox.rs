//! Publishing a service's outbox (EVENTS.md §2.4): staged messages go out in order, each
//! acknowledged by the server before its row is deleted. A failed publish leaves the row for
//! the next pass; the msg id makes a repeat harmless.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use decnet_ops::{Health, Readiness};
use decnet_storage::{Database, OutboxMessage};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Notify, watch};

/// A JSON payload as an outbox message with the headers every decnet message carries
/// (EVENTS.md §1.1).
pub fn message(subject: String, msg_id: String, body: &impl serde::Serialize) -> OutboxMessage {
    let mut headers = std::collections::BTreeMap::new();
    headers.insert(
        decnet_proto::header::SCHEMA_VERSION.to_owned(),
        decnet_proto::SCHEMA_VERSION.to_string(),
    );
    OutboxMessage {
        subject,
        msg_id,
        headers,
        body: serde_json::to_vec(body).expect("payload types serialise"),
    }
}

/// Messages in flight per pass for a high-volume service (the tagger): one round trip per
/// message would cap it at the outbox's pace.
pub const PIPELINED: usize = 256;

/// One message in flight: a publish whose acknowledgement is lost cannot be overtaken by a
/// later message of the same subject. For the rule store, whose `RULES` stream keeps only the
/// last message per subject, an overtaken message would leave an older definition retained.
pub const IN_ORDER: usize = 1;

/// Publish every staged message of `service`, at most `window` in flight at a time; returns
/// whether none is left (false when a publish or the database failed: the rest waits for the
/// next pass).
pub async fn drain(db: &Database, js: &jetstream::Context, service: &str, window: usize) -> bool {
    loop {
        let pending = match db.pending(service, window.max(1) as i64).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "reading the outbox failed");
                return false;
            }
        };
        if pending.is_empty() {
            return true;
        }
        // Every publish of the pass is sent, then the acknowledgements are awaited.
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
        // Awaited together: each acknowledgement's timeout starts when it is awaited, so
        // waiting on them one by one after the server died with a pass in flight cost the
        // timeout once per message (256 × 5 s), and the outbox stalled for twenty minutes.
        let (rows, acks): (Vec<_>, Vec<_>) = acks.into_iter().unzip();
        let results =
            futures_util::future::join_all(acks.into_iter().map(IntoFuture::into_future)).await;
        for (p, result) in rows.into_iter().zip(results) {
            match result {
                Ok(_) => sent.push(p.id),
                Err(e) => {
                    tracing::warn!(subject = %p.message.subject, error = %e, "publishing from the outbox failed; will retry");
                    let _ = db.record_publish_failure(p.id, &e.to_string()).await;
                    failed = true;
                }
            }
        }
        if let Err(e) = db.delete_published(service, &sent).await {
            tracing::warn!(error = %e, "deleting published outbox rows failed; they will be published again, harmlessly");
            return false;
        }
        if failed {
            return false;
        }
    }
}

/// What the publish loop needs.
pub struct Publisher {
    /// Where the rows are staged.
    pub db: Database,
    /// Where they go.
    pub js: jetstream::Context,
    /// The rows of this service only.
    pub service: &'static str,
    /// Messages in flight per pass: [`PIPELINED`] or [`IN_ORDER`].
    pub window: usize,
    /// Degraded while the outbox lags.
    pub health: Arc<Health>,
    /// `decnet_outbox_pending{service}`.
    pub pending: Gauge,
}

/// The outbox lags when its oldest row waits longer than this (EVENTS.md §2.4).
const LAG_LIMIT: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

impl Publisher {
    /// Export the backlog and say whether the outbox lags.
    async fn check(&self) {
        match self.db.outbox_backlog(self.service).await {
            Ok((n, oldest)) => {
                self.pending.set(n);
                let age = oldest.map(|t| chrono::Utc::now() - t);
                self.health.set(match age {
                    Some(age) if age > LAG_LIMIT => Readiness::Degraded(format!(
                        "outbox: {n} messages unpublished, the oldest for {} s",
                        age.num_seconds()
                    )),
                    _ => Readiness::Ready,
                });
            }
            Err(e) => self
                .health
                .set(Readiness::Degraded(format!("database: {e}"))),
        }
    }
}

/// Publish after every commit, and every second in case a wake-up was missed or a publish
/// failed; check the backlog at most once a second; stop when `shutdown` turns true.
pub async fn publish_loop(
    publisher: Publisher,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut checked = tokio::time::Instant::now();
    publisher.check().await;
    loop {
        drain(
            &publisher.db,
            &publisher.js,
            publisher.service,
            publisher.window,
        )
        .await;
        if checked.elapsed() >= Duration::from_secs(1) {
            publisher.check().await;
            checked = tokio::time::Instant::now();
        }
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
