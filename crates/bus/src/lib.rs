//! NATS JetStream plumbing every service shares (EVENTS.md §2): connecting, the stream
//! definitions and their idempotent creation, durable pull consumers whose configuration is
//! checked against what the server kept, the consumer runner (ack after commit, nak with a
//! growing delay, dead letters for poison), publishing with `Nats-Msg-Id`, and publishing a
//! service's outbox after its commits.
//!
//! The client is built without the `server_2_10`+ features of `async-nats`: the oldest server
//! we support is 2.9, and the compiler then refuses any API that needs a newer one.

mod connect;
mod consumer;
pub mod control;
pub mod outbox;
mod publish;
pub mod quarantine;
mod runner;
mod streams;

pub use connect::connect;
pub use consumer::{ConsumerSpec, ensure_consumer};
pub use decnet_proto::{DUPLICATE_WINDOW, STREAMS, StreamDef, stream_def, stream_for_subject};
pub use publish::publish;
pub use runner::{Delivery, Handler, Outcome, Poison, RunnerConfig, run};
pub use streams::ensure_streams;

/// A bus operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The server could not be reached or answered with an error.
    #[error("{0}")]
    Nats(String),
    /// A consumer the server returned differs from the one requested (a 2.9 server drops
    /// fields it does not know).
    #[error("consumer {consumer}: the server keeps {field} = {got}, not the requested {want}")]
    ConsumerMismatch {
        /// The consumer.
        consumer: String,
        /// The field that differs.
        field: &'static str,
        /// What was asked for.
        want: String,
        /// What the server holds.
        got: String,
    },
}

impl BusError {
    pub(crate) fn nats(context: &str, e: impl std::fmt::Display) -> BusError {
        BusError::Nats(format!("{context}: {e}"))
    }
}
