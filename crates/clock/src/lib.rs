//! The services' clock: every calendar wait of a service (rule-state expiry, intel quota days,
//! row expiry, 429 pauses, the Feodo feed's age) reads time through [`Clock`], so tests
//! advance a [`ManualClock`] instead of sleeping (ARCHITECTURE.md, Configuration). Short waits
//! about the pace of one process (the spacing between two requests) use tokio's timer.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;

/// A source of the current time and of waits until a time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
    /// A future that completes once `now() >= deadline`.
    fn sleep_until(&self, deadline: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let wait = (deadline - Utc::now()).to_std().unwrap_or_default();
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that moves only when a test moves it; sleepers wake once it passes their
/// deadline.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
    moved: watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock {
            now: Arc::new(Mutex::new(start)),
            moved: watch::Sender::new(start),
        }
    }

    /// Move the clock forward by `by`.
    pub fn advance(&self, by: TimeDelta) {
        let now = {
            let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
            *now += by;
            *now
        };
        self.moved.send_replace(now);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let mut moved = self.moved.subscribe();
        Box::pin(async move {
            // A deadline already passed returns at once; a dropped clock never moves again,
            // so its sleepers wait for ever rather than wake early.
            if moved.wait_for(|now| *now >= deadline).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sleeper_wakes_only_once_the_clock_passes_its_deadline() {
        let start = Utc::now();
        let clock = ManualClock::new(start);
        let sleeper = tokio::spawn(clock.sleep_until(start + TimeDelta::hours(24)));
        clock.advance(TimeDelta::hours(23));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(TimeDelta::hours(1));
        tokio::time::timeout(std::time::Duration::from_secs(5), sleeper)
            .await
            .expect("woken")
            .expect("no panic");
        assert_eq!(clock.now(), start + TimeDelta::hours(24));
    }
}
