//! `decnet canary`: the canary beacon (CANARY.md). Planted artifacts phone home to it; it
//! answers every request like a boring nginx, records each hit on a live token, accepts a
//! browser fingerprint only when it is genuine, derives the signals the canary rules read and
//! publishes `canary.<token>.triggered` and `canary.<token>.revoked` through its outbox.

pub mod beacon;
pub mod chunks;
pub mod control;
pub mod dns;
pub mod fingerprint;
pub mod generators;
pub mod geo;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod net;
pub mod response;
pub mod scanner;
pub mod service;
pub mod signals;
pub mod spool;
pub mod token;

/// The service's own name: its outbox rows, its DLQ subject.
pub const SERVICE: &str = "canary";

pub use service::{CanaryConfig, CanaryError, run_with};
