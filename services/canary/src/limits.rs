//! Sliding-window limits with bounded state (CANARY.md §10): layer D of fingerprint
//! validation (30 submissions per token and address per minute) and the flood guard (120
//! recorded hits per token and address per minute).
//!
//! Every key's state is dropped once its window is empty, and the map never holds more than
//! its capacity: past it, the least recently used key goes. An evicted key only starts afresh,
//! which can make its limit more lenient; it never loses a hit, since limits only decide how a
//! hit is recorded.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The most keys a limiter keeps (CANARY.md §10).
pub const MAX_KEYS: usize = 100_000;

struct Window {
    /// Times of the most recent events, oldest first; never more than the limit.
    times: VecDeque<Instant>,
    /// Position in the recency order.
    tick: u64,
}

/// At most `limit` events per key in any `window`.
pub struct SlidingLimit<K> {
    limit: usize,
    window: Duration,
    capacity: usize,
    keys: HashMap<K, Window>,
    /// Recency order: tick → key, oldest first.
    recency: BTreeMap<u64, K>,
    next_tick: u64,
}

impl<K: Eq + Hash + Clone> SlidingLimit<K> {
    /// A limit of `limit` events per `window`, for at most `capacity` keys.
    pub fn new(limit: usize, window: Duration, capacity: usize) -> SlidingLimit<K> {
        SlidingLimit {
            limit: limit.max(1),
            window,
            capacity: capacity.max(1),
            keys: HashMap::new(),
            recency: BTreeMap::new(),
            next_tick: 0,
        }
    }

    /// Count one event for `key` at `now`, whatever its outcome; `true` when fewer than
    /// `limit` events preceded it in the window (the event is within the limit).
    pub fn hit(&mut self, key: &K, now: Instant) -> bool {
        let tick = self.next_tick;
        self.next_tick += 1;
        let window = self.window;
        let limit = self.limit;
        let entry = match self.keys.get_mut(key) {
            Some(entry) => {
                self.recency.remove(&entry.tick);
                entry
            }
            None => {
                while self.keys.len() >= self.capacity {
                    self.evict_oldest();
                }
                self.keys.entry(key.clone()).or_insert(Window {
                    times: VecDeque::new(),
                    tick,
                })
            }
        };
        entry.tick = tick;
        while entry
            .times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            entry.times.pop_front();
        }
        let within = entry.times.len() < limit;
        if entry.times.len() == limit {
            entry.times.pop_front();
        }
        entry.times.push_back(now);
        self.recency.insert(tick, key.clone());
        within
    }

    /// Drop every key whose window has emptied by `now`.
    pub fn sweep(&mut self, now: Instant) {
        let window = self.window;
        let stale: Vec<(u64, K)> = self
            .keys
            .iter()
            .filter(|(_, w)| {
                w.times
                    .back()
                    .is_none_or(|t| now.saturating_duration_since(*t) >= window)
            })
            .map(|(k, w)| (w.tick, k.clone()))
            .collect();
        for (tick, key) in stale {
            self.keys.remove(&key);
            self.recency.remove(&tick);
        }
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn evict_oldest(&mut self) {
        if let Some((_, key)) = self.recency.pop_first() {
            self.keys.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thirty_first_in_a_minute_is_over_whatever_came_before() {
        let mut d = SlidingLimit::new(30, Duration::from_secs(60), MAX_KEYS);
        let t0 = Instant::now();
        for i in 0..30 {
            assert!(d.hit(&"k", t0 + Duration::from_millis(i)), "{i}");
        }
        assert!(!d.hit(&"k", t0 + Duration::from_secs(1)));
        // Over-the-limit submissions count too: the window stays full while they go on.
        assert!(!d.hit(&"k", t0 + Duration::from_secs(59)));
        assert!(d.hit(&"other", t0 + Duration::from_secs(59)));
        // A minute after the last ones, room again.
        assert!(d.hit(&"k", t0 + Duration::from_secs(120)));
    }

    #[test]
    fn a_million_addresses_keep_the_map_bounded() {
        let mut d = SlidingLimit::new(30, Duration::from_secs(60), MAX_KEYS);
        let t0 = Instant::now();
        for i in 0..1_000_000u32 {
            d.hit(&i, t0);
            assert!(d.len() <= MAX_KEYS);
        }
        assert_eq!(d.len(), MAX_KEYS);
        d.sweep(t0 + Duration::from_secs(61));
        assert!(d.is_empty());
    }
}
