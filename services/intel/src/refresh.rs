//! The refresh timer (INTEL.md §1, §3): every poll interval, on the service's clock, it
//! re-queues every attacker whose `retry_at` has passed (a lookup cut short by a quota, a
//! pause or a failure) and up to a batch of recently seen attackers whose row is missing or
//! expired, most recently seen first. The first run is at start, so a restart past a quota
//! reset completes the skipped lookups at once.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::TimeDelta;
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::lookup::Enricher;

/// Retries taken per run; the rest wait for the next run.
const RETRIES_PER_RUN: i64 = 1000;

/// Lookups of one run in progress at once.
const LOOKUPS_AT_ONCE: usize = 16;

/// Run until `shutdown` turns true.
pub(crate) async fn run(enricher: Arc<Enricher>, mut shutdown: watch::Receiver<bool>) {
    let clock = Arc::clone(&enricher.config.clock);
    let every = TimeDelta::from_std(enricher.config.poll_interval).unwrap_or(TimeDelta::MAX);
    loop {
        if *shutdown.borrow() {
            return;
        }
        tick(&enricher).await;
        let next = clock.now() + every;
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            () = clock.sleep_until(next) => {}
        }
    }
}

/// One run of the timer.
pub(crate) async fn tick(e: &Enricher) {
    let now = e.config.clock.now();
    let window = TimeDelta::from_std(e.config.refresh_window).unwrap_or(TimeDelta::MAX);
    let found = async {
        let mut due = e.db.intel_retries_due(now, RETRIES_PER_RUN).await?;
        due.extend(
            e.db.intel_stale(now, now - window, e.config.refresh_batch)
                .await?,
        );
        Ok::<_, decnet_storage::StorageError>(due)
    };
    let due = match found.await {
        Ok(due) => due,
        Err(error) => {
            tracing::warn!(%error, "the refresh timer could not read the due lookups");
            return;
        }
    };
    let mut seen = HashSet::new();
    let due: Vec<_> = due
        .into_iter()
        .filter(|d| seen.insert(d.attacker_uuid))
        .collect();
    if due.is_empty() {
        return;
    }
    tracing::debug!(lookups = due.len(), "refresh timer run");
    // Bounded, so a thousand due retries do not queue a thousand lookups on the pool at once;
    // the limiters pace the requests anyway.
    let lookups = due
        .into_iter()
        .map(|d| async move { e.enrich(d.attacker_uuid, &d.attacker_ip).await });
    let mut results = futures_util::stream::iter(lookups).buffer_unordered(LOOKUPS_AT_ONCE);
    let mut failed = Vec::new();
    while let Some(result) = results.next().await {
        if let Err(error) = result {
            failed.push(error);
        }
    }
    if let Some(error) = failed.first() {
        tracing::warn!(failed = failed.len(), %error, "refresh lookups failed; they are retried on the next run");
    }
}
