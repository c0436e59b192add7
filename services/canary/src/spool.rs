//! The spool (CANARY.md §4): while the database cannot be reached, every hit under `/c/` is
//! appended to `<data>/canary/spool.jsonl` and fsync'd before the GIF goes out, then replayed
//! in order once the database answers again. A hit is never dropped for an outage.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::beacon::{Beacon, Hit};

/// The spool file of one beacon.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    /// Appends and the hand-over to a replay are serialised.
    lock: Mutex<()>,
}

impl Spool {
    /// A spool at `path` (its directory is created on the first append).
    pub fn new(path: impl Into<PathBuf>) -> Spool {
        Spool {
            path: path.into(),
            lock: Mutex::new(()),
        }
    }

    /// Where the spool lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append a hit and make it durable.
    pub fn append(&self, hit: &Hit) -> std::io::Result<()> {
        let line = serde_json::to_string(hit).map_err(std::io::Error::other)?;
        let _held = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(line.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_data()
    }

    /// Hits waiting.
    pub fn pending(&self) -> usize {
        let _held = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        // Checked every second: an empty or absent spool (the usual case) costs one stat.
        if std::fs::metadata(&self.path).map_or(true, |m| m.len() == 0) {
            return 0;
        }
        std::fs::read_to_string(&self.path)
            .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count())
            .unwrap_or(0)
    }

    /// Replay the spool through `beacon` in order; returns how many hits were handled. A
    /// database error stops the replay and puts what is left back, in order, ahead of hits
    /// spooled meanwhile. A line that no longer parses is logged and dropped: it can never be
    /// replayed.
    pub async fn replay(&self, beacon: &Beacon) -> std::io::Result<usize> {
        let taken = self.path.with_extension("jsonl.replaying");
        let text = {
            let _held = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            // A replay interrupted by a crash left its file; it goes first.
            let mut text = std::fs::read_to_string(&taken).unwrap_or_default();
            match std::fs::read_to_string(&self.path) {
                Ok(more) => text.push_str(&more),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            if text.trim().is_empty() {
                return Ok(0);
            }
            std::fs::write(&taken, &text)?;
            let _ = std::fs::remove_file(&self.path);
            text
        };
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut done = 0;
        for (i, line) in lines.iter().enumerate() {
            let hit: Hit = match serde_json::from_str(line) {
                Ok(hit) => hit,
                Err(e) => {
                    tracing::warn!(error = %e, "a spooled hit does not parse; dropped");
                    done += 1;
                    continue;
                }
            };
            match beacon.handle(hit).await {
                Ok(()) => {}
                // Stored by an earlier, interrupted replay.
                Err(decnet_storage::StorageError::Constraint(_)) => {}
                Err(e) => {
                    tracing::warn!(error = %e, left = lines.len() - i, "replaying the spool stopped; the database is still away");
                    let _held = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
                    let mut rest: String = lines[i..].iter().map(|l| format!("{l}\n")).collect();
                    rest.push_str(&std::fs::read_to_string(&self.path).unwrap_or_default());
                    let tmp = self.path.with_extension("jsonl.tmp");
                    std::fs::write(&tmp, rest)?;
                    std::fs::rename(&tmp, &self.path)?;
                    let _ = std::fs::remove_file(&taken);
                    return Ok(done);
                }
            }
            done += 1;
        }
        let _ = std::fs::remove_file(&taken);
        Ok(done)
    }
}
