//! Rule definitions: the rules directory compared with `ttp_rule`, each accepted change
//! stored with the store's next sequence and staged for `ttp.rule.reloaded.<rule_id>` in the
//! same transaction (RULES.md §2).
//!
//! The directory is the author's truth and the table the store's memory of what it published.
//! A file is looked at as it is now, never as an event said it was: its resolved source
//! (the text with the data tables it reads) is hashed, and only a hash that differs from the
//! stored one is a change. A file that no longer validates, or breaks the version discipline,
//! leaves the stored definition live and is reported with its file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use decnet_proto::payload::rules::RuleReloaded;
use decnet_proto::subject;
use decnet_storage::{Database, NewRule, OutboxMessage, StorageError, StoredRule};
use decnet_ttp::catalogue::Catalogue;
use decnet_ttp::pack::rule_file_stem;
use decnet_ttp::rule::RuleError;
use decnet_ttp::source::{self, SourceError, SourcedRule};
use decnet_ttp::yaml::Pos;

use crate::SERVICE;
use crate::metrics::RulestoreMetrics;
use crate::watcher::Change;

/// What looking at one rule file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The file holds what the store holds: nothing to publish.
    Unchanged,
    /// A new definition was stored with this sequence.
    Stored(i64),
    /// The rule was deleted (a tombstone with this sequence).
    Deleted(i64),
    /// The file was refused; the stored definition stays live.
    Refused(Vec<RuleError>),
}

/// The definitions side of the store.
#[derive(Debug)]
pub struct Definitions {
    dir: PathBuf,
    db: Database,
    updated_by: String,
    catalogue: &'static Catalogue,
    /// `ttp_rule` as last written: tombstones included.
    stored: BTreeMap<String, StoredRule>,
    metrics: RulestoreMetrics,
}

impl Definitions {
    /// The definitions of `dir`, as `rulestore/<instance>` writing to `db`.
    pub async fn open(
        dir: &Path,
        db: Database,
        instance: &str,
        metrics: RulestoreMetrics,
    ) -> Result<Definitions, StorageError> {
        let stored = db
            .rule_definitions()
            .await?
            .into_iter()
            .map(|r| (r.rule_id.clone(), r))
            .collect();
        Ok(Definitions {
            dir: dir.to_path_buf(),
            db,
            updated_by: format!("{SERVICE}/{instance}"),
            catalogue: Catalogue::bundled(),
            stored,
            metrics,
        })
    }

    /// The stored definitions, tombstones included.
    pub fn stored(&self) -> impl Iterator<Item = &StoredRule> {
        self.stored.values()
    }

    /// Whether a live (not deleted) definition of `rule_id` is stored.
    pub fn is_live(&self, rule_id: &str) -> bool {
        self.stored.get(rule_id).is_some_and(|r| !r.deleted)
    }

    /// Validate the whole directory and bring the table in line with it, as the master does
    /// at start: any invalid file (or a version-discipline refusal) refuses the pack, and
    /// nothing is stored.
    pub async fn load_all(&mut self, now: DateTime<Utc>) -> Result<Vec<Outcome>, LoadFailure> {
        let names = self.rule_files().map_err(LoadFailure::Io)?;
        let mut loaded = Vec::new();
        let mut errors = Vec::new();
        for name in &names {
            match self.read(name, now) {
                Ok(rule) => {
                    errors.extend(self.discipline(&rule));
                    loaded.push(rule);
                }
                Err(SourceError::Invalid(diag)) => errors.extend(diag.errors),
                Err(SourceError::Io(e)) => {
                    return Err(LoadFailure::Io(std::io::Error::new(
                        e.kind(),
                        format!("{}: {e}", self.dir.join(name).display()),
                    )));
                }
            }
        }
        if loaded.is_empty() && errors.is_empty() {
            errors.push(RuleError {
                file: self.dir.display().to_string(),
                pos: Pos::default(),
                path: String::new(),
                message: "no rule files (R0001.yaml …) in this directory".to_owned(),
            });
        }
        if !errors.is_empty() {
            return Err(LoadFailure::Invalid(errors));
        }
        let mut outcomes = Vec::new();
        let on_disk: BTreeSet<String> = loaded.iter().map(|r| r.def.rule_id.clone()).collect();
        for rule in loaded {
            outcomes.push(self.store(rule, now).await.map_err(LoadFailure::Storage)?);
        }
        let gone: Vec<String> = self
            .stored
            .values()
            .filter(|r| !r.deleted && !on_disk.contains(&r.rule_id))
            .map(|r| r.rule_id.clone())
            .collect();
        for rule_id in gone {
            outcomes.push(
                self.delete(&rule_id, now)
                    .await
                    .map_err(LoadFailure::Storage)?,
            );
        }
        Ok(outcomes)
    }

    /// Compare one rule's file with the stored definition and store what changed.
    pub async fn reconcile(
        &mut self,
        rule_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Outcome, StorageError> {
        let name = format!("{rule_id}.yaml");
        match self.read(&name, now) {
            Ok(rule) => {
                let refused = self.discipline(&rule);
                if refused.is_empty() {
                    self.store(rule, now).await
                } else {
                    Ok(self.refuse(refused))
                }
            }
            Err(SourceError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                self.delete(rule_id, now).await
            }
            Err(SourceError::Io(e)) => Ok(self.refuse(vec![RuleError {
                file: name,
                pos: Pos::default(),
                path: String::new(),
                message: format!("cannot read the file: {e}"),
            }])),
            Err(SourceError::Invalid(diag)) => Ok(self.refuse(diag.errors)),
        }
    }

    /// Compare every rule file, and every stored rule without one, with the table.
    pub async fn reconcile_all(
        &mut self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, Outcome)>, StorageError> {
        let mut ids: BTreeSet<String> = match self.rule_files() {
            Ok(names) => names
                .iter()
                .filter_map(|n| rule_file_stem(n).map(str::to_owned))
                .collect(),
            Err(e) => {
                // A directory that cannot be listed right now (moved, permissions) deletes
                // nothing: the next event or rescan looks again.
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot list the rules directory; keeping every stored rule");
                return Ok(Vec::new());
            }
        };
        ids.extend(
            self.stored
                .values()
                .filter(|r| !r.deleted)
                .map(|r| r.rule_id.clone()),
        );
        let mut outcomes = Vec::new();
        for id in ids {
            let outcome = self.reconcile(&id, now).await?;
            outcomes.push((id, outcome));
        }
        Ok(outcomes)
    }

    /// Apply a settled burst of the watcher: the named rules, or everything when a table
    /// changed or events were lost; what each rule's comparison did, by rule id.
    pub async fn apply(
        &mut self,
        burst: &BTreeSet<Change>,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, Outcome)>, StorageError> {
        if burst.iter().any(|c| !matches!(c, Change::Rule(_))) {
            return self.reconcile_all(now).await;
        }
        let mut outcomes = Vec::new();
        for change in burst {
            if let Change::Rule(id) = change {
                let outcome = self.reconcile(id, now).await?;
                outcomes.push((id.clone(), outcome));
            }
        }
        Ok(outcomes)
    }

    fn rule_files(&self) -> std::io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if rule_file_stem(&name).is_some() && entry.file_type()?.is_file() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn read(&self, name: &str, now: DateTime<Utc>) -> Result<SourcedRule, SourceError> {
        source::load_file(&self.dir, name, self.catalogue, now.date_naive())
    }

    /// The version discipline of RULES.md §2 against the stored definition (a tombstone's
    /// last definition included, so a restored file cannot go back a version).
    fn discipline(&self, rule: &SourcedRule) -> Vec<RuleError> {
        let Some(stored) = self.stored.get(&rule.def.rule_id) else {
            return Vec::new();
        };
        if stored.sha256 == rule.sha256 {
            return Vec::new();
        }
        let at = version_pos(&rule.source);
        let error = |message: String| RuleError {
            file: rule.source_path.clone(),
            pos: at,
            path: "rule_version".to_owned(),
            message,
        };
        if rule.def.rule_version < stored.rule_version {
            return vec![error(format!(
                "{} is lower than the stored version {}; a rule version is never lowered",
                rule.def.rule_version, stored.rule_version
            ))];
        }
        if rule.def.rule_version > stored.rule_version {
            return Vec::new();
        }
        // The stored text validated when it was stored; if it no longer does (a newer
        // catalogue), there is nothing to compare with and the new text decides.
        let Ok(old) = source::parse_source(
            &stored.rule_id,
            &stored.source,
            self.catalogue,
            stored.updated_at.date_naive(),
        ) else {
            return Vec::new();
        };
        let changed = source::core_changes((&old, &stored.source), (&rule.def, &rule.source));
        if changed.is_empty() {
            Vec::new()
        } else {
            vec![error(format!(
                "{} changed but rule_version is still {}; bump it (old tags keep their version)",
                changed.join(", "),
                stored.rule_version
            ))]
        }
    }

    fn refuse(&self, errors: Vec<RuleError>) -> Outcome {
        for e in &errors {
            tracing::warn!(error = %e, "rule file refused; the last good version stays live");
        }
        self.metrics.refused.inc();
        Outcome::Refused(errors)
    }

    async fn store(
        &mut self,
        rule: SourcedRule,
        now: DateTime<Utc>,
    ) -> Result<Outcome, StorageError> {
        let id = rule.def.rule_id.clone();
        if self
            .stored
            .get(&id)
            .is_some_and(|s| !s.deleted && s.sha256 == rule.sha256)
        {
            return Ok(Outcome::Unchanged);
        }
        for w in &rule.warnings {
            tracing::warn!(warning = %w, "rule file warning");
        }
        let new = NewRule {
            rule_id: &id,
            rule_version: rule.def.rule_version,
            sha256: &rule.sha256,
            source: &rule.source,
            source_path: &rule.source_path,
            attack_release: &rule.def.attack_release,
        };
        let stored = self
            .db
            .store_rule(SERVICE, &new, &self.updated_by, now, reloaded_message)
            .await?;
        tracing::info!(rule_id = %id, rule_version = stored.rule_version, seq = stored.seq, sha256 = %stored.sha256, "rule stored");
        self.metrics
            .changes
            .get_or_create(&vec![("change", "stored")])
            .inc();
        let seq = stored.seq;
        self.stored.insert(id, stored);
        Ok(Outcome::Stored(seq))
    }

    async fn delete(&mut self, rule_id: &str, now: DateTime<Utc>) -> Result<Outcome, StorageError> {
        if !self.is_live(rule_id) {
            return Ok(Outcome::Unchanged);
        }
        let Some(stored) = self
            .db
            .tombstone_rule(SERVICE, rule_id, &self.updated_by, now, reloaded_message)
            .await?
        else {
            return Ok(Outcome::Unchanged);
        };
        tracing::info!(rule_id, seq = stored.seq, "rule deleted");
        self.metrics
            .changes
            .get_or_create(&vec![("change", "deleted")])
            .inc();
        let seq = stored.seq;
        self.stored.insert(rule_id.to_owned(), stored);
        Ok(Outcome::Deleted(seq))
    }
}

/// Why the pack did not load at start.
#[derive(Debug, thiserror::Error)]
pub enum LoadFailure {
    /// The directory or a file could not be read.
    #[error("{0}")]
    Io(std::io::Error),
    /// Files are invalid or break the version discipline; every problem, located.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<RuleError>),
    /// The table could not be written.
    #[error("database: {0}")]
    Storage(StorageError),
}

/// Where `rule_version:` sits in a rule text, for refusals that concern it.
fn version_pos(source: &str) -> Pos {
    source
        .lines()
        .enumerate()
        .find_map(|(i, line)| {
            line.strip_prefix("rule_version:").map(|rest| Pos {
                line: i + 1,
                col: "rule_version:".len() + 1 + (rest.len() - rest.trim_start().len()),
            })
        })
        .unwrap_or_default()
}

/// The message of a stored row: its definition, or a tombstone.
pub fn reloaded_body(row: &StoredRule) -> RuleReloaded {
    if row.deleted {
        RuleReloaded {
            rule_id: row.rule_id.clone(),
            rule_version: None,
            sha256: None,
            attack_release: None,
            source: None,
            source_path: Some(row.source_path.clone()),
            updated_at: Some(row.updated_at),
            seq: Some(row.seq),
            deleted: Some(true),
        }
    } else {
        RuleReloaded {
            rule_id: row.rule_id.clone(),
            rule_version: Some(row.rule_version),
            sha256: Some(row.sha256.as_str().into()),
            attack_release: Some(row.attack_release.clone()),
            source: Some(row.source.clone()),
            source_path: Some(row.source_path.clone()),
            updated_at: Some(row.updated_at),
            seq: Some(row.seq),
            deleted: None,
        }
    }
}

/// The msg id of a stored change: named by its sequence, never by content, so a revert to an
/// earlier text is published again (EVENTS.md §4.15).
pub fn reloaded_msg_id(row: &StoredRule) -> String {
    format!("ttp.rule.reloaded:{}:{}", row.rule_id, row.seq)
}

/// The outbox message announcing a stored row.
pub fn reloaded_message(row: &StoredRule) -> OutboxMessage {
    let subject = subject::rule_reloaded(&row.rule_id)
        .unwrap_or_else(|_| format!("ttp.rule.reloaded.{}", row.rule_id));
    decnet_bus::outbox::message(subject, reloaded_msg_id(row), &reloaded_body(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_points_at_the_version_value() {
        let pos = version_pos("rule_id: R0001\nrule_version:  3\n");
        assert_eq!((pos.line, pos.col), (2, 16));
    }
}
