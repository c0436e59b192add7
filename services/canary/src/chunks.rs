//! Reassembling chunked fingerprints in bounded memory (CANARY.md §9).
//!
//! A set is keyed by (token, client address, `s`). Parts are held until all `n` arrived, the
//! set's first chunk is older than the timeout, its parts disagree, or it is the oldest set
//! when the bounds (1024 sets, 8 MiB of parts) would be passed. Each way out yields exactly one
//! outcome for the beacon to record; a set's context `C` (what the first chunk's request
//! looked like) travels with it.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::fingerprint::{MAX_D_CHARS, State};

/// The most parts in one set.
pub const MAX_PARTS: usize = 16;
/// The most sets held at once.
pub const MAX_SETS: usize = 1024;
/// The most bytes of parts held at once.
pub const MAX_BYTES: usize = 8 << 20;

/// Which set a chunk belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SetKey {
    /// The token.
    pub token: Uuid,
    /// The client address.
    pub client: IpAddr,
    /// The script's set id.
    pub sid: String,
}

/// One chunk as the request carried it.
#[derive(Debug, Clone, Copy)]
pub struct Chunk<'a> {
    /// `i`.
    pub index: usize,
    /// `n`.
    pub total: usize,
    /// `k`.
    pub nonce: Option<&'a str>,
    /// `d`.
    pub part: &'a str,
}

/// A set that left the buffer: its context, what became of it and its counts.
#[derive(Debug)]
pub struct Finished<C> {
    /// The first chunk's context.
    pub context: C,
    /// The reassembled text for a complete set; `None` otherwise.
    pub joined: Option<String>,
    /// `k` of the set (every chunk carries the same one).
    pub nonce: Option<String>,
    /// `None` for a complete set (validation decides); otherwise why it ended.
    pub ended: Option<State>,
    /// Distinct parts received.
    pub received: usize,
    /// `n`.
    pub total: usize,
}

struct Set<C> {
    context: C,
    total: usize,
    nonce: Option<String>,
    parts: Vec<Option<String>>,
    received: usize,
    bytes: usize,
    first_at: Instant,
    /// Position in the age order.
    seq: u64,
}

/// The open sets.
pub struct Reassembly<C> {
    sets: HashMap<SetKey, Set<C>>,
    /// Age order: seq → key, oldest first.
    age: BTreeMap<u64, SetKey>,
    next_seq: u64,
    bytes: usize,
    timeout: Duration,
    max_sets: usize,
    max_bytes: usize,
}

impl<C> Reassembly<C> {
    /// Sets time out `timeout` after their first chunk.
    pub fn new(timeout: Duration) -> Reassembly<C> {
        Reassembly::with_bounds(timeout, MAX_SETS, MAX_BYTES)
    }

    /// With explicit bounds (tests).
    pub fn with_bounds(timeout: Duration, max_sets: usize, max_bytes: usize) -> Reassembly<C> {
        Reassembly {
            sets: HashMap::new(),
            age: BTreeMap::new(),
            next_seq: 0,
            bytes: 0,
            timeout,
            max_sets: max_sets.max(1),
            max_bytes,
        }
    }

    /// Add a chunk; returns every set that finished because of it: this one (complete or
    /// inconsistent) and any evicted to make room.
    pub fn add(
        &mut self,
        key: &SetKey,
        chunk: Chunk<'_>,
        context: C,
        now: Instant,
    ) -> Vec<Finished<C>> {
        let key = key.clone();
        let mut done = Vec::new();
        let shape_ok = (1..=MAX_PARTS).contains(&chunk.total)
            && chunk.index < chunk.total
            && chunk.part.len() <= MAX_D_CHARS;
        if let Some(set) = self.sets.get(&key) {
            let agrees = set.total == chunk.total && set.nonce.as_deref() == chunk.nonce;
            if !shape_ok || !agrees {
                let set = self.remove(&key).expect("present");
                done.push(finish(set, Some(State::ChunkInconsistent)));
                return done;
            }
        } else {
            if !shape_ok {
                done.push(Finished {
                    context,
                    joined: None,
                    nonce: chunk.nonce.map(str::to_owned),
                    ended: Some(State::ChunkInconsistent),
                    received: 1,
                    total: chunk.total,
                });
                return done;
            }
            while self.sets.len() >= self.max_sets {
                done.extend(self.evict_oldest());
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            self.age.insert(seq, key.clone());
            self.sets.insert(
                key.clone(),
                Set {
                    context,
                    total: chunk.total,
                    nonce: chunk.nonce.map(str::to_owned),
                    parts: vec![None; chunk.total],
                    received: 0,
                    bytes: 0,
                    first_at: now,
                    seq,
                },
            );
        }
        let set = self.sets.get_mut(&key).expect("inserted or present");
        if set.parts[chunk.index].is_none() {
            set.parts[chunk.index] = Some(chunk.part.to_owned());
            set.received += 1;
            set.bytes += chunk.part.len();
            self.bytes += chunk.part.len();
        }
        if set.received == set.total {
            let set = self.remove(&key).expect("present");
            done.push(finish(set, None));
            return done;
        }
        while self.bytes > self.max_bytes {
            match self.evict_oldest() {
                Some(evicted) => done.push(evicted),
                None => break,
            }
        }
        done
    }

    /// Every set whose first chunk is at least the timeout old.
    pub fn expire(&mut self, now: Instant) -> Vec<Finished<C>> {
        let timeout = self.timeout;
        let due: Vec<SetKey> = self
            .age
            .values()
            .filter(|k| {
                self.sets
                    .get(*k)
                    .is_some_and(|s| now.saturating_duration_since(s.first_at) >= timeout)
            })
            .cloned()
            .collect();
        due.iter()
            .filter_map(|k| self.remove(k))
            .map(|set| finish(set, Some(State::ChunkTimeout)))
            .collect()
    }

    /// Sets held.
    pub fn len(&self) -> usize {
        self.sets.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Bytes of parts held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn remove(&mut self, key: &SetKey) -> Option<Set<C>> {
        let set = self.sets.remove(key)?;
        self.age.remove(&set.seq);
        self.bytes -= set.bytes;
        Some(set)
    }

    fn evict_oldest(&mut self) -> Option<Finished<C>> {
        let (_, key) = self.age.pop_first()?;
        let set = self.sets.remove(&key)?;
        self.bytes -= set.bytes;
        Some(finish(set, Some(State::ChunkEvicted)))
    }
}

fn finish<C>(set: Set<C>, ended: Option<State>) -> Finished<C> {
    let joined = ended
        .is_none()
        .then(|| set.parts.iter().flatten().map(String::as_str).collect());
    Finished {
        context: set.context,
        joined,
        nonce: set.nonce,
        ended,
        received: set.received,
        total: set.total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sid: &str) -> SetKey {
        SetKey {
            token: Uuid::nil(),
            client: "198.51.100.7".parse().unwrap(),
            sid: sid.into(),
        }
    }

    fn chunk(index: usize, total: usize, part: &str) -> Chunk<'_> {
        Chunk {
            index,
            total,
            nonce: Some("k"),
            part,
        }
    }

    #[test]
    fn parts_out_of_order_join_in_index_order_once() {
        let mut r = Reassembly::new(Duration::from_secs(30));
        let t = Instant::now();
        assert!(r.add(&key("a"), chunk(2, 3, "C"), "ctx", t).is_empty());
        assert!(r.add(&key("a"), chunk(0, 3, "A"), "ctx", t).is_empty());
        // A duplicate index is ignored.
        assert!(r.add(&key("a"), chunk(0, 3, "X"), "ctx", t).is_empty());
        let done = r.add(&key("a"), chunk(1, 3, "B"), "ctx", t);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].joined.as_deref(), Some("ABC"));
        assert_eq!(
            (done[0].ended, done[0].received, done[0].total),
            (None, 3, 3)
        );
        assert!(r.is_empty() && r.bytes() == 0);
    }

    #[test]
    fn an_incomplete_set_times_out_and_a_disagreeing_one_ends() {
        let mut r = Reassembly::new(Duration::from_secs(30));
        let t = Instant::now();
        r.add(&key("a"), chunk(0, 3, "A"), 1, t);
        r.add(&key("a"), chunk(1, 3, "B"), 1, t);
        assert!(r.expire(t + Duration::from_secs(29)).is_empty());
        let out = r.expire(t + Duration::from_secs(30));
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].ended, out[0].received, out[0].total),
            (Some(State::ChunkTimeout), 2, 3)
        );

        r.add(&key("b"), chunk(0, 3, "A"), 2, t);
        let out = r.add(&key("b"), chunk(1, 4, "B"), 2, t);
        assert_eq!(out[0].ended, Some(State::ChunkInconsistent));
        let out = r.add(&key("c"), chunk(0, 17, "A"), 3, t);
        assert_eq!(out[0].ended, Some(State::ChunkInconsistent));
        assert!(r.is_empty());
    }

    #[test]
    fn a_flood_of_sets_stays_within_the_bounds() {
        let mut r = Reassembly::new(Duration::from_secs(30));
        let t = Instant::now();
        let part = "x".repeat(MAX_D_CHARS);
        let mut evicted = 0;
        for i in 0..5000 {
            let out = r.add(&key(&format!("s{i}")), chunk(0, 16, &part), i, t);
            evicted += out
                .iter()
                .filter(|f| f.ended == Some(State::ChunkEvicted))
                .count();
            assert!(r.len() <= MAX_SETS && r.bytes() <= MAX_BYTES);
        }
        assert_eq!(
            evicted + r.len(),
            5000,
            "every set left exactly once or is still held"
        );
    }
}
