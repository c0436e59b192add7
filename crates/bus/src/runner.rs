//! The consumer runner: fetch a batch, hand it to the service, settle every message by its
//! outcome (EVENTS.md §2.3).
//!
//! - done (its transaction committed): ack, waiting for the server's confirmation;
//! - transient (database down, busy, upstream unreachable): nak with a delay that grows with
//!   the delivery count, never a plain nak, never a crash;
//! - poison (undecodable, invalid, refused for good): copied to `decnet.dlq.<service>` with
//!   the reason, and terminated only once the copy is stored, so nothing is lost.
//!
//! Shutdown stops fetching; a batch already fetched is handled and settled first.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::BusError;
use crate::publish::publish;

/// One delivered message.
#[derive(Debug)]
pub struct Delivery {
    message: jetstream::Message,
    /// The nak delay the handler chose for a transient outcome, instead of the back-off by
    /// delivery count.
    retry_after: Mutex<Option<Duration>>,
}

impl Delivery {
    /// The subject it was published on.
    pub fn subject(&self) -> &str {
        self.message.subject.as_str()
    }

    /// The body.
    pub fn payload(&self) -> &[u8] {
        &self.message.payload
    }

    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.message
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str())
    }

    /// The publisher's `Nats-Msg-Id`.
    pub fn msg_id(&self) -> Option<&str> {
        self.header("Nats-Msg-Id")
    }

    /// Position in its stream.
    pub fn stream_seq(&self) -> u64 {
        self.message.info().map_or(0, |i| i.stream_sequence)
    }

    /// The stream it lives in.
    pub fn stream(&self) -> &str {
        self.message.info().map_or("", |i| i.stream)
    }

    /// How many times it has been delivered, this time included.
    pub fn deliveries(&self) -> i64 {
        self.message.info().map_or(1, |i| i.delivered)
    }

    /// Have a [`Outcome::Transient`] outcome of this delivery nak with `delay` rather than
    /// the back-off by delivery count: for a handler that knows when a retry can succeed
    /// (a lease that lapses then, a retry schedule of its own).
    pub fn retry_after(&self, delay: Duration) {
        *self
            .retry_after
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(delay);
    }

    /// Tell the server the message is still being worked on, restarting its ack wait: for
    /// work that can outlast it.
    pub async fn in_progress(&self) -> Result<(), BusError> {
        self.message
            .ack_with(AckKind::Progress)
            .await
            .map_err(|e| BusError::nats("sending in-progress", e))
    }

    fn nak_delay(&self, config: &RunnerConfig) -> Duration {
        let chosen = *self
            .retry_after
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        chosen.unwrap_or_else(|| config.nak_delay(self.deliveries()))
    }
}

/// Why a message can never be processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison {
    /// `decode_error`, `schema_error`, `no_anchor`, `unknown_subject`, … (EVENTS.md §2.5).
    pub code: &'static str,
    /// What was wrong and where.
    pub detail: String,
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Processed, committed (or deliberately skipped): ack.
    Done,
    /// Try again later: nak with the back-off delay.
    Transient(String),
    /// Never processable: dead-letter, then terminate.
    Poison(Poison),
}

/// A service's work on a batch of deliveries.
pub trait Handler: Send {
    /// One outcome per delivery, in order.
    fn handle(&mut self, batch: &[Delivery]) -> impl Future<Output = Vec<Outcome>> + Send;
}

/// How a runner fetches and settles.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Service name: the DLQ subject is `decnet.dlq.<service>`.
    pub service: String,
    /// Consumer name, for the dead-letter headers.
    pub consumer: String,
    /// Messages per fetch.
    pub batch: usize,
    /// How long a fetch waits for messages.
    pub fetch_wait: Duration,
    /// Nak delay by delivery count (1st, 2nd, …); the last one repeats.
    pub nak_delays: Vec<Duration>,
}

impl RunnerConfig {
    /// The defaults of EVENTS.md §2.3: batches of 256, nak after 1, 2, 5, 10, 30, 60 s.
    pub fn new(service: &str, consumer: &str) -> RunnerConfig {
        RunnerConfig {
            service: service.to_owned(),
            consumer: consumer.to_owned(),
            batch: 256,
            fetch_wait: Duration::from_secs(1),
            nak_delays: [1, 2, 5, 10, 30, 60]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
        }
    }

    fn nak_delay(&self, deliveries: i64) -> Duration {
        let i = usize::try_from(deliveries.max(1) - 1).unwrap_or(usize::MAX);
        self.nak_delays
            .get(i)
            .or(self.nak_delays.last())
            .copied()
            .unwrap_or(Duration::from_secs(1))
    }
}

/// Run until `shutdown` turns true. Fetch errors (a server restarting) are waited out.
pub async fn run<H: Handler>(
    js: &jetstream::Context,
    consumer: &PullConsumer,
    handler: &mut H,
    config: &RunnerConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), BusError> {
    let mut backoff = Duration::from_millis(100);
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let fetched = tokio::select! {
            batch = fetch(consumer, config) => batch,
            _ = shutdown.changed() => return Ok(()),
        };
        let batch = match fetched {
            Ok(batch) => {
                backoff = Duration::from_millis(100);
                batch
            }
            Err(e) => {
                tracing::warn!(consumer = %config.consumer, error = %e, "fetch failed; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if batch.is_empty() {
            continue;
        }
        let mut outcomes = handler.handle(&batch).await;
        // A handler that returns too few outcomes must not lose messages: the rest retry.
        outcomes.resize(
            batch.len(),
            Outcome::Transient("the handler gave no outcome".into()),
        );
        // One by one, in delivery order: settling concurrently (join_all over double acks)
        // lost redeliveries under load in the bus and tagger fault tests, so this stays
        // sequential until that is understood.
        for (delivery, outcome) in batch.iter().zip(outcomes) {
            settle(js, config, delivery, outcome).await;
        }
    }
}

async fn fetch(consumer: &PullConsumer, config: &RunnerConfig) -> Result<Vec<Delivery>, BusError> {
    let mut messages = consumer
        .fetch()
        .max_messages(config.batch)
        .expires(config.fetch_wait)
        .messages()
        .await
        .map_err(|e| BusError::nats("fetching", e))?;
    let mut batch = Vec::new();
    while let Some(message) = messages.next().await {
        match message {
            Ok(message) => batch.push(Delivery {
                message,
                retry_after: Mutex::new(None),
            }),
            Err(e) => {
                // What was delivered so far is handled; the rest comes with the next fetch.
                tracing::debug!(error = %e, "fetch ended early");
                break;
            }
        }
    }
    Ok(batch)
}

async fn settle(js: &jetstream::Context, config: &RunnerConfig, d: &Delivery, outcome: Outcome) {
    let result = match outcome {
        Outcome::Done => d.message.double_ack().await,
        Outcome::Transient(why) => {
            let delay = d.nak_delay(config);
            tracing::warn!(subject = d.subject(), seq = d.stream_seq(), deliveries = d.deliveries(),
                reason = %why, "transient failure; redelivery in {delay:?}");
            d.message.ack_with(AckKind::Nak(Some(delay))).await
        }
        Outcome::Poison(poison) => match dead_letter(js, config, d, &poison).await {
            Ok(()) => {
                tracing::warn!(subject = d.subject(), seq = d.stream_seq(), code = poison.code,
                    detail = %poison.detail, "message dead-lettered");
                d.message.ack_with(AckKind::Term).await
            }
            Err(e) => {
                // Not terminated: the message stays until its copy is safe.
                tracing::warn!(error = %e, "dead-letter publish failed; the message will come back");
                let delay = config.nak_delay(d.deliveries());
                d.message.ack_with(AckKind::Nak(Some(delay))).await
            }
        },
    };
    if let Err(e) = result {
        // An ack that does not arrive means a redelivery, which deterministic ids make
        // harmless.
        tracing::warn!(subject = d.subject(), seq = d.stream_seq(), error = %e, "settling a message failed");
    }
}

/// Header values are one line, without the trailing blanks the protocol would drop anyway.
fn header_value(text: &str, max: usize) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim_end()
        .to_owned();
    if line.len() <= max {
        return line;
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line[..end].to_owned()
}

async fn dead_letter(
    js: &jetstream::Context,
    config: &RunnerConfig,
    d: &Delivery,
    poison: &Poison,
) -> Result<(), BusError> {
    let mut headers = BTreeMap::new();
    let reason = format!("{}: {}", poison.code, poison.detail);
    headers.insert("decnet-dlq-reason".to_owned(), header_value(&reason, 1024));
    headers.insert("decnet-dlq-subject".to_owned(), d.subject().to_owned());
    headers.insert("decnet-dlq-stream".to_owned(), d.stream().to_owned());
    headers.insert("decnet-dlq-seq".to_owned(), d.stream_seq().to_string());
    headers.insert("decnet-dlq-consumer".to_owned(), config.consumer.clone());
    headers.insert(
        "decnet-dlq-deliveries".to_owned(),
        d.deliveries().to_string(),
    );
    if let Some(id) = d.msg_id() {
        headers.insert("decnet-dlq-msg-id".to_owned(), header_value(id, 256));
    }
    headers.insert(
        "decnet-dlq-at".to_owned(),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    );
    let msg_id = format!("dlq:{}:{}", d.stream(), d.stream_seq());
    publish(
        js,
        &format!("decnet.dlq.{}", config.service),
        &msg_id,
        &headers,
        d.message.payload.clone(),
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nak_delays_grow_then_repeat() {
        let config = RunnerConfig::new("tagger", "tagger");
        let secs: Vec<u64> = (1..=8).map(|n| config.nak_delay(n).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 5, 10, 30, 60, 60, 60]);
        assert_eq!(config.nak_delay(0).as_secs(), 1);
    }

    #[test]
    fn header_values_are_one_bounded_line() {
        assert_eq!(header_value("a\r\nb", 10), "a  b");
        assert_eq!(header_value(&"é".repeat(600), 1024).len(), 1024);
    }
}
