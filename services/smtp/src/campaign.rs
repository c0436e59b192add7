//! The campaign window (SMTP.md §7, RULES.md §7.6, R0042): the last 24 hours of messages'
//! simhashes and recipient hashes, so a new message can say how many near-identical ones this
//! decoy saw and to how many distinct recipients. Appended to one JSON-lines file per UTC day
//! under `<quarantine-dir>/.campaign/`, so a restart reloads it.

use std::collections::{HashSet, VecDeque};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::quarantine::{hex, private_dir};

/// The trailing window, in hours.
pub(crate) const WINDOW_H: i64 = 24;

/// Messages kept at most; the oldest go first.
const MAX_ENTRIES: usize = 200_000;

/// Simhashes this close are one campaign.
const MAX_DISTANCE: u32 = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    /// The message (`stored_as`): observing it again changes nothing.
    id: String,
    at: DateTime<Utc>,
    simhash: String,
    rcpts: Vec<String>,
}

/// What the window says about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) messages: i64,
    pub(crate) recipients: i64,
}

/// The window.
#[derive(Debug)]
pub(crate) struct Window {
    dir: PathBuf,
    entries: VecDeque<(Entry, u64)>,
    ids: HashSet<String>,
}

fn file_for(dir: &Path, at: DateTime<Utc>) -> PathBuf {
    dir.join(format!("{}.jsonl", at.format("%Y-%m-%d")))
}

/// A recipient as the window keeps it: a hash, never the address.
fn recipient_hash(address: &str) -> String {
    hex(&Sha256::digest(address.to_lowercase().as_bytes()))[..16].to_owned()
}

impl Window {
    /// Reload the files of the last two UTC days; older files are deleted.
    pub(crate) fn load(quarantine_dir: &Path, now: DateTime<Utc>) -> io::Result<Window> {
        let dir = quarantine_dir.join(".campaign");
        private_dir(&dir)?;
        let keep: HashSet<PathBuf> = [now, now - Duration::hours(WINDOW_H)]
            .into_iter()
            .map(|t| file_for(&dir, t))
            .collect();
        let mut window = Window {
            dir: dir.clone(),
            entries: VecDeque::new(),
            ids: HashSet::new(),
        };
        let mut loaded = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if !keep.contains(&path) {
                let _ = fs::remove_file(&path);
                continue;
            }
            // A torn last line (a crash mid-append) is skipped, not fatal.
            let text = fs::read_to_string(&path)?;
            loaded.extend(
                text.lines()
                    .filter_map(|l| serde_json::from_str::<Entry>(l).ok()),
            );
        }
        loaded.sort_by_key(|e| e.at);
        for entry in loaded {
            if let Ok(hash) = u64::from_str_radix(&entry.simhash, 16) {
                window.insert(entry, hash);
            }
        }
        window.expire(now);
        Ok(window)
    }

    fn insert(&mut self, entry: Entry, hash: u64) {
        if self.ids.insert(entry.id.clone()) {
            self.entries.push_back((entry, hash));
        }
        while self.entries.len() > MAX_ENTRIES {
            if let Some((old, _)) = self.entries.pop_front() {
                self.ids.remove(&old.id);
            }
        }
    }

    fn expire(&mut self, now: DateTime<Utc>) {
        let oldest = now - Duration::hours(WINDOW_H);
        while self.entries.front().is_some_and(|(e, _)| e.at < oldest) {
            if let Some((old, _)) = self.entries.pop_front() {
                self.ids.remove(&old.id);
            }
        }
    }

    /// Add a message (once, whatever the retries) and count its campaign: messages in the
    /// 24 hours up to it within distance 3, this one included, and their distinct recipients.
    pub(crate) fn observe(
        &mut self,
        id: &str,
        at: DateTime<Utc>,
        simhash: u64,
        recipients: &[String],
    ) -> io::Result<Counts> {
        if !self.ids.contains(id) {
            let entry = Entry {
                id: id.to_owned(),
                at,
                simhash: format!("{simhash:016x}"),
                rcpts: recipients.iter().map(|r| recipient_hash(r)).collect(),
            };
            let mut line = serde_json::to_vec(&entry).map_err(io::Error::other)?;
            line.push(b'\n');
            let mut file = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file_for(&self.dir, at))?;
            file.write_all(&line)?;
            file.sync_data()?;
            self.insert(entry, simhash);
            self.expire(at);
        }
        let oldest = at - Duration::hours(WINDOW_H);
        let mut messages = 0;
        let mut recipients = HashSet::new();
        for (entry, hash) in &self.entries {
            if entry.at >= oldest && entry.at <= at && (hash ^ simhash).count_ones() <= MAX_DISTANCE
            {
                messages += 1;
                recipients.extend(entry.rcpts.iter().map(String::as_str));
            }
        }
        Ok(Counts {
            messages,
            recipients: recipients.len() as i64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn near_copies_count_once_each_and_survive_a_reload() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = Window::load(tmp.path(), t("2026-12-04T08:00:00Z")).unwrap();
        let base = 0xdead_beef_0000_0000_u64;
        let r =
            |n: usize| -> Vec<String> { (0..n).map(|i| format!("User{i}@x.example")).collect() };
        let c1 = w
            .observe("m1", t("2026-12-04T08:00:00Z"), base, &r(2))
            .unwrap();
        assert_eq!(
            c1,
            Counts {
                messages: 1,
                recipients: 2
            }
        );
        // Three bits away: the same campaign; sixteen bits: another one.
        let c2 = w
            .observe("m2", t("2026-12-04T08:01:00Z"), base ^ 0b111, &r(3))
            .unwrap();
        assert_eq!(
            c2,
            Counts {
                messages: 2,
                recipients: 3
            }
        );
        let far = w
            .observe("m3", t("2026-12-04T08:02:00Z"), base ^ 0xffff, &r(1))
            .unwrap();
        assert_eq!(
            far,
            Counts {
                messages: 1,
                recipients: 1
            }
        );
        // A retried job is not a new message.
        let again = w
            .observe("m2", t("2026-12-04T08:01:00Z"), base ^ 0b111, &r(3))
            .unwrap();
        assert_eq!(again, c2);
        // Addresses differing only in case are one recipient; none is written to disk.
        let text = fs::read_to_string(tmp.path().join(".campaign/2026-12-04.jsonl")).unwrap();
        assert!(!text.contains("x.example"), "{text}");

        let mut w = Window::load(tmp.path(), t("2026-12-05T07:00:00Z")).unwrap();
        let c4 = w
            .observe(
                "m4",
                t("2026-12-05T07:00:00Z"),
                base,
                &["user0@X.example".into()],
            )
            .unwrap();
        assert_eq!(
            c4,
            Counts {
                messages: 3,
                recipients: 3
            }
        );
        // A day and a minute after the first two, they have left the window.
        let c5 = w
            .observe("m5", t("2026-12-05T08:01:30Z"), base, &[])
            .unwrap();
        assert_eq!(
            c5,
            Counts {
                messages: 2,
                recipients: 1
            }
        );
    }
}
