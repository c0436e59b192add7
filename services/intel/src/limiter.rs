//! A provider's limiter (INTEL.md §3): at most N requests in flight and a least interval
//! between their starts, in this process, plus the pause a 429 imposes. A lookup waits its
//! turn rather than calling early; a paused provider is skipped, not waited for, since the
//! pause can last longer than the delivery's ack wait.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// One provider's limits.
#[derive(Debug)]
pub(crate) struct Limiter {
    permits: Semaphore,
    interval: Duration,
    /// When the next request may start.
    next: tokio::sync::Mutex<Option<Instant>>,
    /// The end of a 429 pause, on the service's clock.
    paused_until: Mutex<Option<DateTime<Utc>>>,
}

impl Limiter {
    pub(crate) fn new(concurrency: usize, interval: Duration) -> Limiter {
        Limiter {
            permits: Semaphore::new(concurrency.max(1)),
            interval,
            next: tokio::sync::Mutex::new(None),
            paused_until: Mutex::new(None),
        }
    }

    /// Wait for a slot: a permit, then this request's place in the spacing. Returns the
    /// permit (held for the request) and how long the wait was.
    pub(crate) async fn acquire(&self) -> (SemaphorePermit<'_>, Duration) {
        let start = Instant::now();
        let permit = self.permits.acquire().await.expect("never closed");
        let at = {
            let mut next = self.next.lock().await;
            let at = next.map_or(Instant::now(), |n| n.max(Instant::now()));
            *next = Some(at + self.interval);
            at
        };
        tokio::time::sleep_until(at).await;
        (permit, start.elapsed())
    }

    /// The end of the current pause, if `now` is inside one.
    pub(crate) fn paused(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .filter(|until| *until > now)
    }

    /// Pause until `until` (a later pause already set is kept).
    pub(crate) fn pause(&self, until: DateTime<Utc>) {
        let mut paused = self
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }
}

/// The end of a 429 pause: `Retry-After` in seconds or as an HTTP date, else `default`.
pub(crate) fn pause_end(
    retry_after: Option<&str>,
    now: DateTime<Utc>,
    default: Duration,
) -> DateTime<Utc> {
    let fallback = now + chrono::TimeDelta::from_std(default).unwrap_or_default();
    let Some(value) = retry_after.map(str::trim) else {
        return fallback;
    };
    if let Ok(secs) = value.parse::<i64>() {
        return now + chrono::TimeDelta::seconds(secs.clamp(0, 86_400));
    }
    DateTime::parse_from_rfc2822(value)
        .map(|t| t.with_timezone(&Utc).max(now))
        .unwrap_or(fallback)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_are_spaced_by_the_interval_and_bounded_in_flight() {
        let limiter = Limiter::new(2, Duration::from_millis(500));
        let t0 = Instant::now();
        let (a, _) = limiter.acquire().await;
        let (b, waited) = limiter.acquire().await;
        assert_eq!(waited, Duration::from_millis(500));
        // Both permits are held: the third waits for one to be released.
        let third = tokio::time::timeout(Duration::from_secs(10), limiter.acquire()).await;
        assert!(third.is_err());
        drop(a);
        let (_c, _) = limiter.acquire().await;
        assert!(t0.elapsed() >= Duration::from_millis(1000));
        drop(b);
    }

    #[test]
    fn a_pause_ends_when_retry_after_says() {
        let now = Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap();
        let minute = Duration::from_secs(60);
        assert_eq!(
            pause_end(Some("2"), now, minute),
            now + chrono::TimeDelta::seconds(2)
        );
        assert_eq!(
            pause_end(Some("Fri, 04 Dec 2026 10:05:00 GMT"), now, minute),
            now + chrono::TimeDelta::minutes(5)
        );
        assert_eq!(
            pause_end(None, now, minute),
            now + chrono::TimeDelta::seconds(60)
        );
        assert_eq!(
            pause_end(Some("soon"), now, minute),
            now + chrono::TimeDelta::seconds(60)
        );
        let limiter = Limiter::new(1, Duration::ZERO);
        limiter.pause(now + chrono::TimeDelta::seconds(2));
        assert_eq!(
            limiter.paused(now),
            Some(now + chrono::TimeDelta::seconds(2))
        );
        assert_eq!(limiter.paused(now + chrono::TimeDelta::seconds(2)), None);
    }
}
