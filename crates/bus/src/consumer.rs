//! Durable pull consumers: created or found, then checked field by field against what the
//! server kept, because a 2.9 server silently drops fields it does not know.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};

use crate::BusError;

/// A durable pull consumer as a service wants it (EVENTS.md §2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSpec {
    /// Stream it reads.
    pub stream: &'static str,
    /// Durable name, shared by every replica of the service.
    pub durable: String,
    /// One filter subject, or none for the whole stream (several filters need 2.10).
    pub filter: Option<String>,
    /// Redelivery after this long without an ack.
    pub ack_wait: Duration,
    /// Deliveries before the server gives up; `None` for unlimited.
    pub max_deliver: Option<i64>,
    /// Messages delivered and not yet acked, across replicas.
    pub max_ack_pending: i64,
}

impl ConsumerSpec {
    fn config(&self) -> consumer::pull::Config {
        consumer::pull::Config {
            durable_name: Some(self.durable.clone()),
            ack_policy: consumer::AckPolicy::Explicit,
            deliver_policy: consumer::DeliverPolicy::All,
            ack_wait: self.ack_wait,
            max_deliver: self.max_deliver.unwrap_or(-1),
            max_ack_pending: self.max_ack_pending,
            filter_subject: self.filter.clone().unwrap_or_default(),
            ..Default::default()
        }
    }
}

/// Create the consumer, or take the existing one, and check the server kept what we asked.
pub async fn ensure_consumer(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
) -> Result<consumer::PullConsumer, BusError> {
    let stream = js
        .get_stream(spec.stream)
        .await
        .map_err(|e| BusError::nats(&format!("reading stream {}", spec.stream), e))?;
    let mut consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(&spec.durable, spec.config())
        .await
        .map_err(|e| BusError::nats(&format!("creating consumer {}", spec.durable), e))?;
    let info = consumer
        .info()
        .await
        .map_err(|e| BusError::nats(&format!("reading consumer {}", spec.durable), e))?;
    let got = &info.config;
    let want = spec.config();
    let mismatch = |field: &'static str, want: String, got: String| BusError::ConsumerMismatch {
        consumer: spec.durable.clone(),
        field,
        want,
        got,
    };
    if got.ack_wait != want.ack_wait {
        return Err(mismatch(
            "ack_wait",
            format!("{:?}", want.ack_wait),
            format!("{:?}", got.ack_wait),
        ));
    }
    if got.max_deliver != want.max_deliver {
        return Err(mismatch(
            "max_deliver",
            want.max_deliver.to_string(),
            got.max_deliver.to_string(),
        ));
    }
    if got.max_ack_pending != want.max_ack_pending {
        return Err(mismatch(
            "max_ack_pending",
            want.max_ack_pending.to_string(),
            got.max_ack_pending.to_string(),
        ));
    }
    if got.filter_subject != want.filter_subject {
        return Err(mismatch(
            "filter_subject",
            format!("{:?}", want.filter_subject),
            format!("{:?}", got.filter_subject),
        ));
    }
    if got.ack_policy != consumer::AckPolicy::Explicit {
        return Err(mismatch(
            "ack_policy",
            "explicit".into(),
            format!("{:?}", got.ack_policy),
        ));
    }
    Ok(consumer)
}
