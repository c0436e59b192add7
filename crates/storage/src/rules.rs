//! `ttp_rule` and `ttp_rule_state`: the rule store's definitions and the operators' states.
//!
//! Every change to a definition (a store or a tombstone) takes the next `seq`, 1 + the
//! largest in the table, inside its write transaction, so readers can follow the changes in
//! order and tell which they have seen. That needs the writers serialised: SQLite does it
//! with `BEGIN IMMEDIATE`, PostgreSQL with a table lock ([`PG_SEQ_LOCK`]). Every write stages
//! the message that announces it in the same transaction.
//!
//! Definitions are never deleted: a tombstone keeps the last definition in the row, so the
//! foreign key from `ttp_rule_state` always has a row to point at.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use crate::outbox::{OutboxMessage, stage_postgres, stage_sqlite};
use crate::time::{from_text, micros, to_text};
use crate::{Database, StorageError};

/// A rule definition as the rule store keeps it (one row of ttp_rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRule {
    /// `R` and four digits.
    pub rule_id: String,
    /// The rule's own version, at least 1.
    pub rule_version: u32,
    /// Lowercase hex SHA-256 of the resolved source.
    pub sha256: String,
    /// The resolved source.
    pub source: String,
    /// Where the source came from, relative to the rules directory.
    pub source_path: String,
    /// The ATT&CK release the rule was written against.
    pub attack_release: String,
    /// Position of the row's latest change among all definition changes.
    pub seq: i64,
    /// When it last changed, at microseconds.
    pub updated_at: DateTime<Utc>,
    /// `rulestore/<instance-id>` of the writer.
    pub updated_by: String,
    /// A tombstone: the rule was deleted and this is its last definition.
    pub deleted: bool,
}

/// A definition to store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewRule<'a> {
    /// `R` and four digits.
    pub rule_id: &'a str,
    /// The rule's own version, at least 1.
    pub rule_version: u32,
    /// Lowercase hex SHA-256 of the resolved source.
    pub sha256: &'a str,
    /// The resolved source, at most 512 KiB.
    pub source: &'a str,
    /// Where the source came from, relative to the rules directory.
    pub source_path: &'a str,
    /// The ATT&CK release the rule was written against.
    pub attack_release: &'a str,
}

/// One row of ttp_rule_state; a rule without one is enabled with no ceiling.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRuleState {
    /// The rule, which must have a ttp_rule row.
    pub rule_id: String,
    /// `enabled`, `disabled` or `clipped`.
    pub state: String,
    /// The confidence ceiling, in [0, 1]; present exactly when clipped.
    pub confidence_max: Option<f64>,
    /// When the state lapses.
    pub expires_at: Option<DateTime<Utc>>,
    /// Why, at most 500 characters; required unless enabled.
    pub reason: Option<String>,
    /// Who set it.
    pub set_by: String,
    /// When it was set.
    pub set_at: DateTime<Utc>,
}

const RULE_COLUMNS: &str = "rule_id, rule_version, sha256, source, source_path, attack_release, seq, \
     updated_at, updated_by, deleted";

const STATE_COLUMNS: &str = "rule_id, state, confidence_max, expires_at, reason, set_by, set_at";

/// The same on both backends: a store replaces every column and revives a tombstone.
const RULE_REPLACE: &str = "ON CONFLICT (rule_id) DO UPDATE SET rule_version = excluded.rule_version, \
     sha256 = excluded.sha256, source = excluded.source, source_path = excluded.source_path, \
     attack_release = excluded.attack_release, seq = excluded.seq, updated_at = excluded.updated_at, \
     updated_by = excluded.updated_by, deleted = excluded.deleted \
     RETURNING seq";

/// The same on both backends.
const STATE_REPLACE: &str = "ON CONFLICT (rule_id) DO UPDATE SET state = excluded.state, \
     confidence_max = excluded.confidence_max, expires_at = excluded.expires_at, \
     reason = excluded.reason, set_by = excluded.set_by, set_at = excluded.set_at";

/// Taken first by every definition change on PostgreSQL: under READ COMMITTED two writers
/// would otherwise read the same largest seq and one would fail on its uniqueness. This mode
/// conflicts with itself and with row writes, but not with plain reads nor with the key-share
/// row locks of ttp_rule_state's foreign-key checks, so readers and state writes go on.
const PG_SEQ_LOCK: &str = "LOCK TABLE ttp_rule IN SHARE ROW EXCLUSIVE MODE";

/// The version as the INTEGER column holds it. Checked here rather than left to the
/// backends, which disagree: SQLite would store any u32, PostgreSQL refuses above i32.
fn stored_version(version: u32) -> Result<i32, StorageError> {
    i32::try_from(version).map_err(|_| {
        StorageError::Constraint(format!(
            "ttp_rule.rule_version {version} is above the column's range"
        ))
    })
}

fn read_version(version: i64) -> Result<u32, StorageError> {
    u32::try_from(version).map_err(|_| StorageError::Corrupt {
        column: "ttp_rule.rule_version",
        value: version.to_string(),
    })
}

fn sqlite_rule(r: &SqliteRow) -> Result<StoredRule, StorageError> {
    Ok(StoredRule {
        rule_id: r.try_get("rule_id")?,
        rule_version: read_version(r.try_get("rule_version")?)?,
        sha256: r.try_get("sha256")?,
        source: r.try_get("source")?,
        source_path: r.try_get("source_path")?,
        attack_release: r.try_get("attack_release")?,
        seq: r.try_get("seq")?,
        updated_at: from_text("ttp_rule.updated_at", r.try_get("updated_at")?)?,
        updated_by: r.try_get("updated_by")?,
        deleted: r.try_get("deleted")?,
    })
}

fn pg_rule(r: &PgRow) -> Result<StoredRule, StorageError> {
    Ok(StoredRule {
        rule_id: r.try_get("rule_id")?,
        rule_version: read_version(i64::from(r.try_get::<i32, _>("rule_version")?))?,
        sha256: r.try_get("sha256")?,
        source: r.try_get("source")?,
        source_path: r.try_get("source_path")?,
        attack_release: r.try_get("attack_release")?,
        seq: r.try_get("seq")?,
        updated_at: r.try_get("updated_at")?,
        updated_by: r.try_get("updated_by")?,
        deleted: r.try_get("deleted")?,
    })
}

fn sqlite_state(r: &SqliteRow) -> Result<StoredRuleState, StorageError> {
    let expires_at: Option<String> = r.try_get("expires_at")?;
    Ok(StoredRuleState {
        rule_id: r.try_get("rule_id")?,
        state: r.try_get("state")?,
        confidence_max: r.try_get("confidence_max")?,
        expires_at: expires_at
            .map(|t| from_text("ttp_rule_state.expires_at", &t))
            .transpose()?,
        reason: r.try_get("reason")?,
        set_by: r.try_get("set_by")?,
        set_at: from_text("ttp_rule_state.set_at", r.try_get("set_at")?)?,
    })
}

fn pg_state(r: &PgRow) -> Result<StoredRuleState, StorageError> {
    Ok(StoredRuleState {
        rule_id: r.try_get("rule_id")?,
        state: r.try_get("state")?,
        confidence_max: r.try_get("confidence_max")?,
        expires_at: r.try_get("expires_at")?,
        reason: r.try_get("reason")?,
        set_by: r.try_get("set_by")?,
        set_at: r.try_get("set_at")?,
    })
}

impl Database {
    /// Every stored definition, tombstones included, by rule id.
    pub async fn rule_definitions(&self) -> Result<Vec<StoredRule>, StorageError> {
        // Rule ids are ASCII (`R` and four digits, checked by the schema), so the order is
        // the same under any collation.
        let sql = format!("SELECT {RULE_COLUMNS} FROM ttp_rule ORDER BY rule_id");
        match self {
            Database::Sqlite(pool) => sqlx::query(&sql)
                .fetch_all(pool)
                .await?
                .iter()
                .map(sqlite_rule)
                .collect(),
            Database::Postgres(pool) => sqlx::query(&sql)
                .fetch_all(pool)
                .await?
                .iter()
                .map(pg_rule)
                .collect(),
        }
    }

    /// One stored definition (a tombstone included), if the rule id was ever stored.
    pub async fn rule_definition(&self, rule_id: &str) -> Result<Option<StoredRule>, StorageError> {
        match self {
            Database::Sqlite(pool) => sqlx::query(&format!(
                "SELECT {RULE_COLUMNS} FROM ttp_rule WHERE rule_id = ?"
            ))
            .bind(rule_id)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(sqlite_rule)
            .transpose(),
            Database::Postgres(pool) => sqlx::query(&format!(
                "SELECT {RULE_COLUMNS} FROM ttp_rule WHERE rule_id = $1"
            ))
            .bind(rule_id)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(pg_rule)
            .transpose(),
        }
    }

    /// Insert or replace the definition (deleted = false), with seq = 1 + max(seq) taken inside the
    /// write transaction; `announce(&stored)` builds the outbox message staged in the same transaction
    /// under `service`. Returns the stored row (times cut to microseconds with time::micros).
    pub async fn store_rule(
        &self,
        service: &str,
        rule: &NewRule<'_>,
        updated_by: &str,
        now: DateTime<Utc>,
        announce: impl FnOnce(&StoredRule) -> OutboxMessage + Send,
    ) -> Result<StoredRule, StorageError> {
        let version = stored_version(rule.rule_version)?;
        let mut stored = StoredRule {
            rule_id: rule.rule_id.to_owned(),
            rule_version: rule.rule_version,
            sha256: rule.sha256.to_owned(),
            source: rule.source.to_owned(),
            source_path: rule.source_path.to_owned(),
            attack_release: rule.attack_release.to_owned(),
            seq: 0,
            updated_at: micros(now),
            updated_by: updated_by.to_owned(),
            deleted: false,
        };
        match self {
            Database::Sqlite(pool) => {
                // BEGIN IMMEDIATE: wait for the write lock up front (busy timeout) instead of
                // failing on the upgrade from a read, and hold it while the seq is taken.
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                stored.seq = sqlx::query_scalar(&format!(
                    "INSERT INTO ttp_rule ({RULE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, \
                     (SELECT coalesce(max(seq), 0) + 1 FROM ttp_rule), ?, ?, 0) {RULE_REPLACE}"
                ))
                .bind(rule.rule_id)
                .bind(version)
                .bind(rule.sha256)
                .bind(rule.source)
                .bind(rule.source_path)
                .bind(rule.attack_release)
                .bind(to_text(now))
                .bind(updated_by)
                .fetch_one(&mut *tx)
                .await?;
                // The outbox row's time is the wall clock, not `now`: it dates the staging
                // for the backlog check, whatever clock the caller's change was stamped with.
                stage_sqlite(&mut tx, service, &[announce(&stored)], Utc::now()).await?;
                tx.commit().await?;
            }
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query(PG_SEQ_LOCK).execute(&mut *tx).await?;
                stored.seq = sqlx::query_scalar(&format!(
                    "INSERT INTO ttp_rule ({RULE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, \
                     (SELECT coalesce(max(seq), 0) + 1 FROM ttp_rule), $7, $8, false) {RULE_REPLACE}"
                ))
                .bind(rule.rule_id)
                .bind(version)
                .bind(rule.sha256)
                .bind(rule.source)
                .bind(rule.source_path)
                .bind(rule.attack_release)
                .bind(stored.updated_at)
                .bind(updated_by)
                .fetch_one(&mut *tx)
                .await?;
                stage_postgres(&mut tx, service, &[announce(&stored)], Utc::now()).await?;
                tx.commit().await?;
            }
        }
        Ok(stored)
    }

    /// Mark a live definition deleted (keeping its last definition in the row) with the next seq,
    /// staging `announce(&stored)`; None (and nothing staged) when there is no live row.
    pub async fn tombstone_rule(
        &self,
        service: &str,
        rule_id: &str,
        updated_by: &str,
        now: DateTime<Utc>,
        announce: impl FnOnce(&StoredRule) -> OutboxMessage + Send,
    ) -> Result<Option<StoredRule>, StorageError> {
        match self {
            Database::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let row = sqlx::query(&format!(
                    "UPDATE ttp_rule SET deleted = 1, seq = (SELECT max(seq) + 1 FROM ttp_rule), \
                     updated_at = ?, updated_by = ? WHERE rule_id = ? AND deleted = 0 \
                     RETURNING {RULE_COLUMNS}"
                ))
                .bind(to_text(now))
                .bind(updated_by)
                .bind(rule_id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                let stored = sqlite_rule(&row)?;
                stage_sqlite(&mut tx, service, &[announce(&stored)], Utc::now()).await?;
                tx.commit().await?;
                Ok(Some(stored))
            }
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query(PG_SEQ_LOCK).execute(&mut *tx).await?;
                let row = sqlx::query(&format!(
                    "UPDATE ttp_rule SET deleted = true, seq = (SELECT max(seq) + 1 FROM ttp_rule), \
                     updated_at = $1, updated_by = $2 WHERE rule_id = $3 AND NOT deleted \
                     RETURNING {RULE_COLUMNS}"
                ))
                .bind(micros(now))
                .bind(updated_by)
                .bind(rule_id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                let stored = pg_rule(&row)?;
                stage_postgres(&mut tx, service, &[announce(&stored)], Utc::now()).await?;
                tx.commit().await?;
                Ok(Some(stored))
            }
        }
    }

    /// Every state row, by rule id.
    pub async fn rule_states(&self) -> Result<Vec<StoredRuleState>, StorageError> {
        let sql = format!("SELECT {STATE_COLUMNS} FROM ttp_rule_state ORDER BY rule_id");
        match self {
            Database::Sqlite(pool) => sqlx::query(&sql)
                .fetch_all(pool)
                .await?
                .iter()
                .map(sqlite_state)
                .collect(),
            Database::Postgres(pool) => sqlx::query(&sql)
                .fetch_all(pool)
                .await?
                .iter()
                .map(pg_state)
                .collect(),
        }
    }

    /// One rule's state row; None means enabled with no ceiling.
    pub async fn rule_state(&self, rule_id: &str) -> Result<Option<StoredRuleState>, StorageError> {
        match self {
            Database::Sqlite(pool) => sqlx::query(&format!(
                "SELECT {STATE_COLUMNS} FROM ttp_rule_state WHERE rule_id = ?"
            ))
            .bind(rule_id)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(sqlite_state)
            .transpose(),
            Database::Postgres(pool) => sqlx::query(&format!(
                "SELECT {STATE_COLUMNS} FROM ttp_rule_state WHERE rule_id = $1"
            ))
            .bind(rule_id)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(pg_state)
            .transpose(),
        }
    }

    /// Insert or replace the state row, staging the message in the same transaction. A rule
    /// with no ttp_rule row, or a state the schema refuses, is a [`StorageError::Constraint`].
    pub async fn set_rule_state(
        &self,
        service: &str,
        state: &StoredRuleState,
        announce: OutboxMessage,
    ) -> Result<(), StorageError> {
        match self {
            Database::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                sqlx::query(&format!(
                    "INSERT INTO ttp_rule_state ({STATE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) {STATE_REPLACE}"
                ))
                .bind(&state.rule_id)
                .bind(&state.state)
                .bind(state.confidence_max)
                .bind(state.expires_at.map(to_text))
                .bind(&state.reason)
                .bind(&state.set_by)
                .bind(to_text(state.set_at))
                .execute(&mut *tx)
                .await?;
                stage_sqlite(&mut tx, service, &[announce], Utc::now()).await?;
                tx.commit().await?;
            }
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query(&format!(
                    "INSERT INTO ttp_rule_state ({STATE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) {STATE_REPLACE}"
                ))
                .bind(&state.rule_id)
                .bind(&state.state)
                .bind(state.confidence_max)
                .bind(state.expires_at.map(micros))
                .bind(&state.reason)
                .bind(&state.set_by)
                .bind(micros(state.set_at))
                .execute(&mut *tx)
                .await?;
                stage_postgres(&mut tx, service, &[announce], Utc::now()).await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Delete the state row (if any) and stage the message; returns whether a row was removed.
    /// The message is staged either way: a clear is published even when nothing was set, as
    /// the published state is the whole truth.
    pub async fn clear_rule_state(
        &self,
        service: &str,
        rule_id: &str,
        announce: OutboxMessage,
    ) -> Result<bool, StorageError> {
        let removed = match self {
            Database::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let done = sqlx::query("DELETE FROM ttp_rule_state WHERE rule_id = ?")
                    .bind(rule_id)
                    .execute(&mut *tx)
                    .await?;
                stage_sqlite(&mut tx, service, &[announce], Utc::now()).await?;
                tx.commit().await?;
                done.rows_affected() > 0
            }
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let done = sqlx::query("DELETE FROM ttp_rule_state WHERE rule_id = $1")
                    .bind(rule_id)
                    .execute(&mut *tx)
                    .await?;
                stage_postgres(&mut tx, service, &[announce], Utc::now()).await?;
                tx.commit().await?;
                done.rows_affected() > 0
            }
        };
        Ok(removed)
    }

    /// States whose expires_at <= now, soonest first (then by rule id); served by the
    /// partial index on expires_at.
    pub async fn expired_rule_states(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<StoredRuleState>, StorageError> {
        match self {
            Database::Sqlite(pool) => sqlx::query(&format!(
                "SELECT {STATE_COLUMNS} FROM ttp_rule_state WHERE expires_at <= ? \
                 ORDER BY expires_at, rule_id"
            ))
            .bind(to_text(now))
            .fetch_all(pool)
            .await?
            .iter()
            .map(sqlite_state)
            .collect(),
            Database::Postgres(pool) => sqlx::query(&format!(
                "SELECT {STATE_COLUMNS} FROM ttp_rule_state WHERE expires_at <= $1 \
                 ORDER BY expires_at, rule_id"
            ))
            .bind(micros(now))
            .fetch_all(pool)
            .await?
            .iter()
            .map(pg_state)
            .collect(),
        }
    }

    /// The earliest expires_at of any state row (past ones included), None when no state
    /// expires.
    pub async fn next_rule_expiry(&self) -> Result<Option<DateTime<Utc>>, StorageError> {
        // `IS NOT NULL` spelled out so both planners can answer from the partial index.
        const SQL: &str = "SELECT min(expires_at) FROM ttp_rule_state WHERE expires_at IS NOT NULL";
        match self {
            Database::Sqlite(pool) => {
                let text: Option<String> = sqlx::query_scalar(SQL).fetch_one(pool).await?;
                text.map(|t| from_text("ttp_rule_state.expires_at", &t))
                    .transpose()
            }
            Database::Postgres(pool) => Ok(sqlx::query_scalar(SQL).fetch_one(pool).await?),
        }
    }

    /// Delete `expected`'s row only if it is unchanged (same set_at and expires_at: a state set
    /// concurrently with the expiry must not be reverted), staging the message; returns whether it did.
    /// Nothing is staged when it did not.
    pub async fn expire_rule_state(
        &self,
        service: &str,
        expected: &StoredRuleState,
        announce: OutboxMessage,
    ) -> Result<bool, StorageError> {
        match self {
            Database::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                // `IS`, not `=`: it matches a missing expiry too.
                let done = sqlx::query(
                    "DELETE FROM ttp_rule_state WHERE rule_id = ? AND set_at = ? AND expires_at IS ?",
                )
                .bind(&expected.rule_id)
                .bind(to_text(expected.set_at))
                .bind(expected.expires_at.map(to_text))
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                stage_sqlite(&mut tx, service, &[announce], Utc::now()).await?;
                tx.commit().await?;
            }
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let done = sqlx::query(
                    "DELETE FROM ttp_rule_state WHERE rule_id = $1 AND set_at = $2 \
                     AND expires_at IS NOT DISTINCT FROM $3",
                )
                .bind(&expected.rule_id)
                .bind(micros(expected.set_at))
                .bind(expected.expires_at.map(micros))
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                stage_postgres(&mut tx, service, &[announce], Utc::now()).await?;
                tx.commit().await?;
            }
        }
        Ok(true)
    }
}
