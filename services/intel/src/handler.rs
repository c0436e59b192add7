//! The consumer's work on a batch of `attacker.observed` deliveries: decode each, look the
//! attacker up, and settle by what happened (EVENTS.md §2.3). The lookups of a batch run
//! together, each provider's limiter keeping them in line, and every delivery of the batch
//! is kept alive with `in progress` while they run, since limiter waits can outlast the
//! ack wait.

use std::sync::Arc;
use std::time::Duration;

use decnet_bus::{Delivery, Handler, Outcome, Poison};
use decnet_storage::StorageError;

use crate::lookup::Enricher;
use crate::message::decode;

/// The handler the runner drives.
pub(crate) struct Consumer {
    pub(crate) enricher: Arc<Enricher>,
    /// `false`: consume and ack, never call out (`DECNET_INTEL_ENABLED`).
    pub(crate) enabled: bool,
    pub(crate) progress_every: Duration,
}

/// A storage failure as a delivery outcome: retried when it may pass, dead-lettered when
/// the schema refuses the row for good.
pub(crate) fn storage_outcome(e: &StorageError) -> Outcome {
    if e.is_transient() {
        Outcome::Transient(format!("database: {e}"))
    } else {
        Outcome::Poison(Poison {
            code: "constraint_violation",
            detail: e.to_string(),
        })
    }
}

impl Handler for Consumer {
    async fn handle(&mut self, batch: &[Delivery]) -> Vec<Outcome> {
        let this = &*self;
        let work = futures_util::future::join_all(batch.iter().map(|d| this.one(d)));
        this.keep_alive(batch, work).await
    }
}

impl Consumer {
    async fn one(&self, d: &Delivery) -> Outcome {
        let version = d.header(decnet_proto::header::SCHEMA_VERSION);
        let observed = match decode(d.subject(), d.payload(), version) {
            Ok(o) => o,
            Err(poison) => return Outcome::Poison(poison),
        };
        if !self.enabled {
            return Outcome::Done;
        }
        match self
            .enricher
            .enrich(observed.attacker_uuid, &observed.ip)
            .await
        {
            Ok(_) => Outcome::Done,
            Err(e) => storage_outcome(&e),
        }
    }

    /// Await `work`, sending `in progress` for every delivery of the batch meanwhile.
    async fn keep_alive<T>(&self, batch: &[Delivery], work: impl Future<Output = T>) -> T {
        let every = self.progress_every;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = tick.tick() => {
                    for d in batch {
                        if let Err(e) = d.in_progress().await {
                            tracing::debug!(error = %e, "in-progress not sent");
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_database_is_retried_and_a_refused_row_is_dead_lettered() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("postgres://decnet@127.0.0.1:{port}/decnet");
        let quick = decnet_storage::Options {
            max_connections: 1,
            acquire_timeout: Duration::from_millis(200),
        };
        let away = decnet_storage::Database::connect(&url, &quick)
            .await
            .unwrap_err();
        assert!(
            matches!(storage_outcome(&away), Outcome::Transient(_)),
            "{away:?}"
        );
        let refused = StorageError::Constraint("CHECK constraint failed: abuseipdb_score".into());
        assert_eq!(
            storage_outcome(&refused),
            Outcome::Poison(Poison {
                code: "constraint_violation",
                detail: "the schema refused the row: CHECK constraint failed: abuseipdb_score"
                    .into(),
            })
        );
    }
}
