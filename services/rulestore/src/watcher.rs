//! Watching the rules directory (inotify through `notify`) and turning what editors do into
//! settled changes: "rule R0015 may have changed", "a data table may have changed", "look at
//! everything again".
//!
//! Editors save in several ways: in place (truncate, then write), write a temporary file and
//! rename it over the rule, or move the original to a backup and create the file anew (vim).
//! Each produces a burst of events, and some bursts pass through a moment where the file is
//! missing or empty. So events only name what to look at; the store then compares the file as
//! it is once the burst has been quiet for the settle time with what it holds, and its hash
//! comparison turns a burst into one change or none. Names that are not rule files (swap
//! files, dotfiles, backups, `.yml`) are dropped here, before anything is read.

use std::collections::BTreeSet;
use std::path::{Component, Path};
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Something in the rules directory that may differ from what the store holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// The file of this rule id was written, created, renamed or removed.
    Rule(String),
    /// A file under `data/` changed: every rule that reads a table may have changed.
    Tables,
    /// Events were lost or the directory itself moved: compare everything.
    Rescan,
}

/// The longest a burst may postpone its changes, so a file rewritten without pause is still
/// picked up.
const MAX_SETTLE_DELAY: Duration = Duration::from_millis(500);

/// A running watch on one rules directory.
#[derive(Debug)]
pub struct DirWatcher {
    // Dropping the watcher stops the inotify thread.
    _watcher: RecommendedWatcher,
    events: mpsc::UnboundedReceiver<Change>,
    settle: Duration,
    /// The burst being collected and when it began. Kept here, not in `next`, so a caller
    /// that drops `next` for another branch of a `select!` loses nothing.
    burst: BTreeSet<Change>,
    started: Option<Instant>,
}

impl DirWatcher {
    /// Watch `dir` (recursively, for `data/`); a burst of events is reported once it has been
    /// quiet for `settle`.
    pub fn start(dir: &Path, settle: Duration) -> Result<DirWatcher, notify::Error> {
        let root = dir.canonicalize().map_err(notify::Error::io)?;
        let (tx, events) = mpsc::unbounded_channel();
        let base = root.clone();
        let mut watcher = notify::recommended_watcher(
            move |event: notify::Result<notify::Event>| {
                let changes = match event {
                    Ok(event) => classify(&base, &event),
                    Err(e) => {
                        tracing::warn!(error = %e, "watching the rules directory failed; rescanning");
                        vec![Change::Rescan]
                    }
                };
                for change in changes {
                    // The receiver only goes away with the watcher.
                    let _ = tx.send(change);
                }
            },
        )?;
        watcher.watch(&root, RecursiveMode::Recursive)?;
        Ok(DirWatcher {
            _watcher: watcher,
            events,
            settle,
            burst: BTreeSet::new(),
            started: None,
        })
    }

    /// The next settled burst of changes, each once, in order (rules by id, then tables, then
    /// a rescan); `None` once the watch has stopped. Cancel-safe.
    pub async fn next(&mut self) -> Option<BTreeSet<Change>> {
        if self.burst.is_empty() {
            let first = self.events.recv().await?;
            self.burst.insert(first);
            self.started = Some(Instant::now());
        }
        let started = self.started.unwrap_or_else(Instant::now);
        loop {
            let quiet_until = Instant::now() + self.settle;
            let deadline = quiet_until.min(started + MAX_SETTLE_DELAY);
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(change)) => {
                    self.burst.insert(change);
                }
                Ok(None) | Err(_) => {
                    self.started = None;
                    return Some(std::mem::take(&mut self.burst));
                }
            }
        }
    }
}

/// What one inotify event may have changed.
fn classify(root: &Path, event: &notify::Event) -> Vec<Change> {
    if event.need_rescan() {
        return vec![Change::Rescan];
    }
    // Opening or reading a file changes nothing; the store reading a rule must not look
    // like an edit.
    if matches!(event.kind, EventKind::Access(_)) {
        return Vec::new();
    }
    event
        .paths
        .iter()
        .filter_map(|path| classify_path(root, path))
        .collect()
}

fn classify_path(root: &Path, path: &Path) -> Option<Change> {
    let Ok(rel) = path.strip_prefix(root) else {
        return Some(Change::Rescan);
    };
    let parts: Vec<&str> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    match parts.as_slice() {
        // The directory itself.
        [] => Some(Change::Rescan),
        [name] if *name == "data" => Some(Change::Tables),
        [name] => decnet_ttp::pack::rule_file_stem(name).map(|id| Change::Rule(id.to_owned())),
        ["data", .., name] if is_table_name(name) => Some(Change::Tables),
        _ => None,
    }
}

/// A data table's file name: `*.yaml`, not hidden; editor temporaries are not tables.
fn is_table_name(name: &str) -> bool {
    name.ends_with(".yaml") && !name.starts_with('.') && !name.starts_with('#')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rule_files_and_tables_count() {
        let root = Path::new("/rules");
        let at = |p: &str| classify_path(root, &root.join(p));
        assert_eq!(at("R0015.yaml"), Some(Change::Rule("R0015".into())));
        for ignored in [
            ".R0015.yaml.swp",
            "R0015.yaml~",
            "R0015.yaml.bak",
            "R0015.yml",
            "#R0015.yaml#",
            ".#R0015.yaml",
            "4913",
            "notes.txt",
            "data/.abuseipdb.yaml.swp",
            "data/intel/abuseipdb.yaml~",
        ] {
            assert_eq!(at(ignored), None, "{ignored}");
        }
        assert_eq!(at("data/intel/abuseipdb.yaml"), Some(Change::Tables));
        assert_eq!(at("data"), Some(Change::Tables));
        assert_eq!(classify_path(root, root), Some(Change::Rescan));
    }
}
