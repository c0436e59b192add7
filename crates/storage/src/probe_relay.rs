//! `probe_relay`: probe-relay's record of every message a relay-mode decoy announced, and the
//! slot each took among the first N per (decoy, attacker address) (SMTP.md §9.3–§9.4).
//!
//! The limit lives in the unique keys, not in memory: a claim counts the slotted rows of its
//! (decoy, address) and inserts the next slot, and a concurrent claim that took the same slot
//! makes the insert fail, so the claim rolls back and counts again. One row per
//! (decoy, stored_as) makes a redelivery find the row its first delivery wrote. SQLite takes
//! the write lock up front (`BEGIN IMMEDIATE`); PostgreSQL locks the existing row with
//! `SELECT … FOR UPDATE`. Every change of owner or state is a compare-and-set on what the
//! caller last saw, and every terminal transition stages its `smtp.probe.relayed` message in
//! the same transaction.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::Row;
use sqlx::error::ErrorKind;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::outbox::{OutboxMessage, stage_postgres, stage_sqlite};
use crate::time::{from_text, micros, to_text};
use crate::{Database, StorageError};

/// Statuses no transition leaves (SMTP.md §9.4).
pub const PROBE_TERMINAL: [&str; 4] = ["sent", "failed", "unknown", "skipped"];

/// How often a claim may lose its slot to a concurrent claim before it gives up (SMTP.md
/// §9.3, step 5); the caller then retries later, as after any transient failure.
const CLAIM_TRIES: usize = 5;

const COLUMNS: &str = "id, decky_id, attacker_ip, stored_as, slot, status, reason, attempts, \
     next_attempt_at, lease_owner, lease_until, upstream_host, upstream_port, tls, smtp_code, \
     smtp_reply, rcpt_count, created_at, updated_at, finished_at";

/// One probe_relay row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRelayRow {
    /// Id.
    pub id: Uuid,
    /// The decoy that took the message.
    pub decky_id: String,
    /// The SMTP client that sent it, canonical.
    pub attacker_ip: String,
    /// The quarantine name of the message.
    pub stored_as: String,
    /// Which of the first N it is; `None` for skipped rows.
    pub slot: Option<i32>,
    /// `claimed`, `in_flight`, `sent`, `failed`, `unknown` or `skipped`.
    pub status: String,
    /// Why it ended as it did (`limit_reached`, `upstream_rejected`, …).
    pub reason: Option<String>,
    /// SMTP sessions started for it.
    pub attempts: i32,
    /// When a transient failure lets the next session start.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The instance that holds (or last held) the lease.
    pub lease_owner: Option<String>,
    /// Until when nobody else may send it.
    pub lease_until: Option<DateTime<Utc>>,
    /// Upstream server in force.
    pub upstream_host: Option<String>,
    /// Its port.
    pub upstream_port: Option<i32>,
    /// `starttls`, `implicit` or `none`: configured at the claim, what was used once known.
    pub tls: Option<String>,
    /// The last reply code from upstream.
    pub smtp_code: Option<i32>,
    /// The last reply text, at most 256 characters.
    pub smtp_reply: Option<String>,
    /// Recipients offered upstream.
    pub rcpt_count: i32,
    /// When the first delivery claimed it.
    pub created_at: DateTime<Utc>,
    /// The last change.
    pub updated_at: DateTime<Utc>,
    /// When it became terminal.
    pub finished_at: Option<DateTime<Utc>>,
}

impl ProbeRelayRow {
    /// Whether no transition leaves this status.
    pub fn is_terminal(&self) -> bool {
        PROBE_TERMINAL.contains(&self.status.as_str())
    }
}

/// A delivery of `smtp.probe.pending` asking for its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewProbeClaim<'a> {
    /// Id of the row, when this claim creates it.
    pub id: Uuid,
    /// Decoy.
    pub decky_id: &'a str,
    /// Canonical attacker address.
    pub attacker_ip: &'a str,
    /// Quarantine name.
    pub stored_as: &'a str,
    /// This instance: the lease owner.
    pub owner: &'a str,
    /// The clock of this claim.
    pub now: DateTime<Utc>,
    /// How long the lease lasts.
    pub lease: TimeDelta,
    /// N: slots per (decoy, address).
    pub probe_limit: i64,
    /// Why the message is not eligible (SMTP.md §9.2), checked before the slot; `None`
    /// takes a slot if one is free.
    pub skip: Option<&'a str>,
    /// Upstream host in force.
    pub upstream_host: Option<&'a str>,
    /// Its port.
    pub upstream_port: Option<i32>,
    /// Configured transport security.
    pub tls: Option<&'a str>,
    /// Recipients that would be offered.
    pub rcpt_count: i32,
}

/// What a claim found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeClaim {
    /// This instance holds the slot until `lease_until`: open a session.
    Claimed(ProbeRelayRow),
    /// Another session holds the lease, or the message waits for its next attempt: ask
    /// again after `retry_in`.
    Busy {
        /// The row as it stands.
        row: ProbeRelayRow,
        /// Until the lease lapses.
        retry_in: TimeDelta,
    },
    /// The message has its outcome.
    Finished {
        /// The terminal row.
        row: ProbeRelayRow,
        /// Whether this claim made it terminal (and staged its announcement), rather than
        /// finding it so: a redelivery of a finished message changes nothing.
        changed: bool,
    },
}

/// A session's end that leaves the message for another attempt (SMTP.md §9.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeRetry<'a> {
    /// The row.
    pub id: Uuid,
    /// The lease holder that ran the session.
    pub owner: &'a str,
    /// Now.
    pub now: DateTime<Utc>,
    /// When the next session may start: the lease is released until then.
    pub retry_at: DateTime<Utc>,
    /// The reply that ended the session, if any (the previous one is kept otherwise).
    pub smtp_code: Option<i32>,
    /// Its text.
    pub smtp_reply: Option<&'a str>,
    /// The transport security used, when a connection got that far.
    pub tls: Option<&'a str>,
}

/// A session's terminal end: `sent`, `failed` or `unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeFinish<'a> {
    /// The row.
    pub id: Uuid,
    /// The lease holder that ran the session.
    pub owner: &'a str,
    /// Now.
    pub now: DateTime<Utc>,
    /// `sent`, `failed` or `unknown`.
    pub status: &'a str,
    /// Why (`upstream_rejected`, `retries_exhausted`, …); `None` for `sent`.
    pub reason: Option<&'a str>,
    /// The last reply, if the session got one (the previous one is kept otherwise).
    pub smtp_code: Option<i32>,
    /// Its text.
    pub smtp_reply: Option<&'a str>,
    /// The transport security used, when a connection got that far.
    pub tls: Option<&'a str>,
}

/// What the claim does with a row it found.
enum Step {
    /// Terminal already: nothing to do.
    Done,
    /// Leased (or waiting for its next attempt) until then.
    Wait(TimeDelta),
    /// A claimed row whose lease lapsed: take it over.
    TakeOver,
    /// An in-flight row whose lease lapsed: the connection ended after the data was handed
    /// over, and nobody knows whether upstream took it.
    Interrupt,
}

fn step(row: &ProbeRelayRow, now: DateTime<Utc>) -> Step {
    if row.is_terminal() {
        return Step::Done;
    }
    if let Some(until) = row.lease_until.filter(|u| *u > now) {
        return Step::Wait(until - now);
    }
    if row.status == "in_flight" {
        Step::Interrupt
    } else {
        Step::TakeOver
    }
}

/// The status and slot a new row takes: skipped with its reason, skipped because the slots
/// are gone, or claimed with the next slot.
fn new_row_state(
    skip: Option<&str>,
    taken: i64,
    limit: i64,
) -> (&'static str, Option<i64>, Option<&str>) {
    match skip {
        Some(reason) => ("skipped", None, Some(reason)),
        None if taken >= limit => ("skipped", None, Some("limit_reached")),
        None => ("claimed", Some(taken + 1), None),
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.kind() == ErrorKind::UniqueViolation)
}

/// Transient, so the message is offered again later rather than dead-lettered.
fn contended(c: &NewProbeClaim<'_>) -> StorageError {
    StorageError::Query(sqlx::Error::Protocol(format!(
        "probe_relay claim for {}/{} lost its slot to concurrent claims {CLAIM_TRIES} times",
        c.decky_id, c.stored_as
    )))
}

fn corrupt(column: &'static str, value: &str) -> StorageError {
    StorageError::Corrupt {
        column,
        value: value.to_owned(),
    }
}

fn sqlite_time(r: &SqliteRow, column: &'static str) -> Result<Option<DateTime<Utc>>, StorageError> {
    let text: Option<String> = r.try_get(column)?;
    text.map(|t| from_text(column, &t)).transpose()
}

fn sqlite_row(r: &SqliteRow) -> Result<ProbeRelayRow, StorageError> {
    let id: String = r.try_get("id")?;
    Ok(ProbeRelayRow {
        id: id.parse().map_err(|_| corrupt("probe_relay.id", &id))?,
        decky_id: r.try_get("decky_id")?,
        attacker_ip: r.try_get("attacker_ip")?,
        stored_as: r.try_get("stored_as")?,
        slot: r.try_get("slot")?,
        status: r.try_get("status")?,
        reason: r.try_get("reason")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: sqlite_time(r, "next_attempt_at")?,
        lease_owner: r.try_get("lease_owner")?,
        lease_until: sqlite_time(r, "lease_until")?,
        upstream_host: r.try_get("upstream_host")?,
        upstream_port: r.try_get("upstream_port")?,
        tls: r.try_get("tls")?,
        smtp_code: r.try_get("smtp_code")?,
        smtp_reply: r.try_get("smtp_reply")?,
        rcpt_count: r.try_get("rcpt_count")?,
        created_at: sqlite_time(r, "created_at")?.expect("NOT NULL"),
        updated_at: sqlite_time(r, "updated_at")?.expect("NOT NULL"),
        finished_at: sqlite_time(r, "finished_at")?,
    })
}

fn pg_row(r: &PgRow) -> Result<ProbeRelayRow, StorageError> {
    Ok(ProbeRelayRow {
        id: r.try_get("id")?,
        decky_id: r.try_get("decky_id")?,
        attacker_ip: r.try_get("attacker_ip")?,
        stored_as: r.try_get("stored_as")?,
        slot: r.try_get("slot")?,
        status: r.try_get("status")?,
        reason: r.try_get("reason")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        lease_owner: r.try_get("lease_owner")?,
        lease_until: r.try_get("lease_until")?,
        upstream_host: r.try_get("upstream_host")?,
        upstream_port: r.try_get("upstream_port")?,
        tls: r.try_get("tls")?,
        smtp_code: r.try_get("smtp_code")?,
        smtp_reply: r.try_get("smtp_reply")?,
        rcpt_count: r.try_get("rcpt_count")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

/// The reply text as the column keeps it: at most 256 characters.
fn reply_text(reply: Option<&str>) -> Option<String> {
    reply.map(|r| r.chars().take(256).collect())
}

fn check_finish(f: &ProbeFinish<'_>) -> Result<(), StorageError> {
    if matches!(f.status, "sent" | "failed" | "unknown") {
        Ok(())
    } else {
        Err(StorageError::Constraint(format!(
            "a session cannot end a probe as {:?}",
            f.status
        )))
    }
}

impl Database {
    /// Claim a delivered message (SMTP.md §9.3), in one write transaction. A message seen
    /// before keeps its row: terminal ⇒ [`ProbeClaim::Finished`] unchanged; leased (or waiting
    /// for its next attempt) ⇒ [`ProbeClaim::Busy`]; claimed with a lapsed lease ⇒ taken over
    /// by a compare-and-set on `lease_until`; in flight with a lapsed lease ⇒ `unknown`
    /// (`interrupted_after_data`). A new message is skipped with `skip` when given, else takes
    /// slot 1 + the slotted rows of its (decoy, address), or is skipped as `limit_reached`
    /// past `probe_limit`. A claim that starts a session counts an attempt. Every transition
    /// to a terminal status stages `announce(&row)` under `service` before the commit.
    pub async fn claim_probe(
        &self,
        service: &str,
        claim: &NewProbeClaim<'_>,
        announce: impl Fn(&ProbeRelayRow) -> OutboxMessage + Send + Sync,
    ) -> Result<ProbeClaim, StorageError> {
        for _ in 0..CLAIM_TRIES {
            let tried = match self {
                Database::Sqlite(pool) => claim_sqlite(pool, service, claim, &announce).await?,
                Database::Postgres(pool) => claim_pg(pool, service, claim, &announce).await?,
            };
            if let Some(outcome) = tried {
                return Ok(outcome);
            }
        }
        Err(contended(claim))
    }

    /// Move a claimed row to `in_flight` just before the message is sent, renewing the lease
    /// from `now`; `None` when `owner` no longer holds it (nothing may be sent then).
    pub async fn probe_in_flight(
        &self,
        id: Uuid,
        owner: &str,
        now: DateTime<Utc>,
        lease: TimeDelta,
    ) -> Result<Option<ProbeRelayRow>, StorageError> {
        let sql = |p: [&str; 4]| {
            format!(
                "UPDATE probe_relay SET status = 'in_flight', lease_until = {}, updated_at = {} \
                 WHERE id = {} AND status = 'claimed' AND lease_owner = {} RETURNING {COLUMNS}",
                p[0], p[1], p[2], p[3]
            )
        };
        match self {
            Database::Sqlite(pool) => sqlx::query(&sql(["?", "?", "?", "?"]))
                .bind(to_text(now + lease))
                .bind(to_text(now))
                .bind(id.to_string())
                .bind(owner)
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(sqlite_row)
                .transpose(),
            Database::Postgres(pool) => sqlx::query(&sql(["$1", "$2", "$3", "$4"]))
                .bind(micros(now + lease))
                .bind(micros(now))
                .bind(id)
                .bind(owner)
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(pg_row)
                .transpose(),
        }
    }

    /// A transient failure: back to `claimed`, the lease released until `retry_at` (which is
    /// also `next_attempt_at`), so any instance may take it over then. `None` when `owner`
    /// no longer holds the row.
    pub async fn retry_probe(
        &self,
        retry: &ProbeRetry<'_>,
    ) -> Result<Option<ProbeRelayRow>, StorageError> {
        let r = retry;
        let sql = |p: [&str; 7]| {
            format!(
                "UPDATE probe_relay SET status = 'claimed', lease_owner = NULL, \
                 lease_until = {0}, next_attempt_at = {0}, smtp_code = COALESCE({1}, smtp_code), \
                 smtp_reply = COALESCE({2}, smtp_reply), tls = COALESCE({3}, tls), \
                 updated_at = {4} WHERE id = {5} AND status IN ('claimed', 'in_flight') \
                 AND lease_owner = {6} RETURNING {COLUMNS}",
                p[0], p[1], p[2], p[3], p[4], p[5], p[6]
            )
        };
        match self {
            Database::Sqlite(pool) => sqlx::query(&sql(["?1", "?2", "?3", "?4", "?5", "?6", "?7"]))
                .bind(to_text(r.retry_at))
                .bind(r.smtp_code)
                .bind(reply_text(r.smtp_reply))
                .bind(r.tls)
                .bind(to_text(r.now))
                .bind(r.id.to_string())
                .bind(r.owner)
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(sqlite_row)
                .transpose(),
            Database::Postgres(pool) => {
                sqlx::query(&sql(["$1", "$2", "$3", "$4", "$5", "$6", "$7"]))
                    .bind(micros(r.retry_at))
                    .bind(r.smtp_code)
                    .bind(reply_text(r.smtp_reply))
                    .bind(r.tls)
                    .bind(micros(r.now))
                    .bind(r.id)
                    .bind(r.owner)
                    .fetch_optional(pool)
                    .await?
                    .as_ref()
                    .map(pg_row)
                    .transpose()
            }
        }
    }

    /// A session's terminal end (`sent`, `failed`, `unknown`) from `claimed` or `in_flight`,
    /// with `announce(&row)` staged under `service` in the same transaction. `None`, with
    /// nothing written, when `owner` no longer holds the row.
    pub async fn finish_probe(
        &self,
        service: &str,
        finish: &ProbeFinish<'_>,
        announce: impl FnOnce(&ProbeRelayRow) -> OutboxMessage + Send,
    ) -> Result<Option<ProbeRelayRow>, StorageError> {
        check_finish(finish)?;
        let f = finish;
        let sql = |p: [&str; 1]| {
            format!(
                "UPDATE probe_relay SET status = {p0}1, reason = {p0}2, lease_until = NULL, \
                 next_attempt_at = NULL, smtp_code = COALESCE({p0}3, smtp_code), \
                 smtp_reply = COALESCE({p0}4, smtp_reply), tls = COALESCE({p0}5, tls), \
                 finished_at = {p0}6, updated_at = {p0}6 WHERE id = {p0}7 \
                 AND status IN ('claimed', 'in_flight') AND lease_owner = {p0}8 \
                 RETURNING {COLUMNS}",
                p0 = p[0]
            )
        };
        match self {
            Database::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let row = sqlx::query(&sql(["?"]))
                    .bind(f.status)
                    .bind(f.reason)
                    .bind(f.smtp_code)
                    .bind(reply_text(f.smtp_reply))
                    .bind(f.tls)
                    .bind(to_text(f.now))
                    .bind(f.id.to_string())
                    .bind(f.owner)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(row) = row.as_ref().map(sqlite_row).transpose()? else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                stage_sqlite(&mut tx, service, &[announce(&row)], Utc::now()).await?;
                tx.commit().await?;
                Ok(Some(row))
            }
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let row = sqlx::query(&sql(["$"]))
                    .bind(f.status)
                    .bind(f.reason)
                    .bind(f.smtp_code)
                    .bind(reply_text(f.smtp_reply))
                    .bind(f.tls)
                    .bind(micros(f.now))
                    .bind(f.id)
                    .bind(f.owner)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(row) = row.as_ref().map(pg_row).transpose()? else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                stage_postgres(&mut tx, service, &[announce(&row)], Utc::now()).await?;
                tx.commit().await?;
                Ok(Some(row))
            }
        }
    }

    /// The row of one message, if it was ever claimed.
    pub async fn probe_relay(
        &self,
        decky_id: &str,
        stored_as: &str,
    ) -> Result<Option<ProbeRelayRow>, StorageError> {
        match self {
            Database::Sqlite(pool) => sqlx::query(&format!(
                "SELECT {COLUMNS} FROM probe_relay WHERE decky_id = ? AND stored_as = ?"
            ))
            .bind(decky_id)
            .bind(stored_as)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(sqlite_row)
            .transpose(),
            Database::Postgres(pool) => sqlx::query(&format!(
                "SELECT {COLUMNS} FROM probe_relay WHERE decky_id = $1 AND stored_as = $2"
            ))
            .bind(decky_id)
            .bind(stored_as)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(pg_row)
            .transpose(),
        }
    }

    /// Every row of one decoy, oldest first.
    pub async fn probe_relays(&self, decky_id: &str) -> Result<Vec<ProbeRelayRow>, StorageError> {
        match self {
            Database::Sqlite(pool) => sqlx::query(&format!(
                "SELECT {COLUMNS} FROM probe_relay WHERE decky_id = ? ORDER BY created_at, id"
            ))
            .bind(decky_id)
            .fetch_all(pool)
            .await?
            .iter()
            .map(sqlite_row)
            .collect(),
            Database::Postgres(pool) => sqlx::query(&format!(
                "SELECT {COLUMNS} FROM probe_relay WHERE decky_id = $1 ORDER BY created_at, id"
            ))
            .bind(decky_id)
            .fetch_all(pool)
            .await?
            .iter()
            .map(pg_row)
            .collect(),
        }
    }
}

/// One claim transaction on SQLite; `None` when a concurrent claim won a race and the claim
/// must be tried again.
async fn claim_sqlite(
    pool: &sqlx::SqlitePool,
    service: &str,
    c: &NewProbeClaim<'_>,
    announce: &(impl Fn(&ProbeRelayRow) -> OutboxMessage + Sync),
) -> Result<Option<ProbeClaim>, StorageError> {
    // The write lock from the first statement: the count and the insert see no other claim.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let found = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM probe_relay WHERE decky_id = ? AND stored_as = ?"
    ))
    .bind(c.decky_id)
    .bind(c.stored_as)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(found) = found {
        let row = sqlite_row(&found)?;
        let outcome = match step(&row, c.now) {
            Step::Done => ProbeClaim::Finished {
                row,
                changed: false,
            },
            Step::Wait(retry_in) => ProbeClaim::Busy { row, retry_in },
            Step::TakeOver => {
                let taken = sqlx::query(&format!(
                    "UPDATE probe_relay SET lease_owner = ?, lease_until = ?, \
                     attempts = attempts + 1, next_attempt_at = NULL, updated_at = ? \
                     WHERE id = ? AND status = 'claimed' AND lease_until IS ? \
                     RETURNING {COLUMNS}"
                ))
                .bind(c.owner)
                .bind(to_text(c.now + c.lease))
                .bind(to_text(c.now))
                .bind(row.id.to_string())
                .bind(row.lease_until.map(to_text))
                .fetch_optional(&mut *tx)
                .await?;
                match taken {
                    Some(r) => ProbeClaim::Claimed(sqlite_row(&r)?),
                    None => {
                        tx.rollback().await?;
                        return Ok(None);
                    }
                }
            }
            Step::Interrupt => {
                let ended = sqlx::query(&format!(
                    "UPDATE probe_relay SET status = 'unknown', reason = 'interrupted_after_data', \
                     lease_until = NULL, next_attempt_at = NULL, finished_at = ?, updated_at = ? \
                     WHERE id = ? AND status = 'in_flight' AND lease_until IS ? \
                     RETURNING {COLUMNS}"
                ))
                .bind(to_text(c.now))
                .bind(to_text(c.now))
                .bind(row.id.to_string())
                .bind(row.lease_until.map(to_text))
                .fetch_optional(&mut *tx)
                .await?;
                let Some(ended) = ended else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                let row = sqlite_row(&ended)?;
                stage_sqlite(&mut tx, service, &[announce(&row)], Utc::now()).await?;
                ProbeClaim::Finished { row, changed: true }
            }
        };
        tx.commit().await?;
        return Ok(Some(outcome));
    }

    let taken: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM probe_relay WHERE decky_id = ? AND attacker_ip = ? \
         AND slot IS NOT NULL",
    )
    .bind(c.decky_id)
    .bind(c.attacker_ip)
    .fetch_one(&mut *tx)
    .await?;
    let (status, slot, reason) = new_row_state(c.skip, taken, c.probe_limit);
    let claimed = status == "claimed";
    let inserted = sqlx::query(&format!(
        "INSERT INTO probe_relay (id, decky_id, attacker_ip, stored_as, slot, status, reason, \
         attempts, lease_owner, lease_until, upstream_host, upstream_port, tls, rcpt_count, \
         created_at, updated_at, finished_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (decky_id, stored_as) DO NOTHING RETURNING {COLUMNS}"
    ))
    .bind(c.id.to_string())
    .bind(c.decky_id)
    .bind(c.attacker_ip)
    .bind(c.stored_as)
    .bind(slot)
    .bind(status)
    .bind(reason)
    .bind(i32::from(claimed))
    .bind(claimed.then_some(c.owner))
    .bind(claimed.then(|| to_text(c.now + c.lease)))
    .bind(c.upstream_host)
    .bind(c.upstream_port)
    .bind(c.tls)
    .bind(c.rcpt_count)
    .bind(to_text(c.now))
    .bind(to_text(c.now))
    .bind((!claimed).then(|| to_text(c.now)))
    .fetch_optional(&mut *tx)
    .await;
    let row = match inserted {
        Ok(Some(r)) => sqlite_row(&r)?,
        // The message's row, or its slot, appeared since the lookup: count again.
        Ok(None) => {
            tx.rollback().await?;
            return Ok(None);
        }
        Err(e) if is_unique_violation(&e) => {
            tx.rollback().await?;
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let outcome = if claimed {
        ProbeClaim::Claimed(row)
    } else {
        stage_sqlite(&mut tx, service, &[announce(&row)], Utc::now()).await?;
        ProbeClaim::Finished { row, changed: true }
    };
    tx.commit().await?;
    Ok(Some(outcome))
}

/// One claim transaction on PostgreSQL; `None` when a concurrent claim won a race (its
/// insert of the same message or of the same slot committed first) and the claim must be
/// tried again.
async fn claim_pg(
    pool: &sqlx::PgPool,
    service: &str,
    c: &NewProbeClaim<'_>,
    announce: &(impl Fn(&ProbeRelayRow) -> OutboxMessage + Sync),
) -> Result<Option<ProbeClaim>, StorageError> {
    let mut tx = pool.begin().await?;
    // The row lock is held to the commit: a second delivery of the same message waits here
    // and then sees what the first one did.
    let found = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM probe_relay WHERE decky_id = $1 AND stored_as = $2 FOR UPDATE"
    ))
    .bind(c.decky_id)
    .bind(c.stored_as)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(found) = found {
        let row = pg_row(&found)?;
        let outcome = match step(&row, c.now) {
            Step::Done => ProbeClaim::Finished {
                row,
                changed: false,
            },
            Step::Wait(retry_in) => ProbeClaim::Busy { row, retry_in },
            Step::TakeOver => {
                let taken = sqlx::query(&format!(
                    "UPDATE probe_relay SET lease_owner = $1, lease_until = $2, \
                     attempts = attempts + 1, next_attempt_at = NULL, updated_at = $3 \
                     WHERE id = $4 AND status = 'claimed' \
                     AND lease_until IS NOT DISTINCT FROM $5 RETURNING {COLUMNS}"
                ))
                .bind(c.owner)
                .bind(micros(c.now + c.lease))
                .bind(micros(c.now))
                .bind(row.id)
                .bind(row.lease_until)
                .fetch_optional(&mut *tx)
                .await?;
                match taken {
                    Some(r) => ProbeClaim::Claimed(pg_row(&r)?),
                    None => {
                        tx.rollback().await?;
                        return Ok(None);
                    }
                }
            }
            Step::Interrupt => {
                let ended = sqlx::query(&format!(
                    "UPDATE probe_relay SET status = 'unknown', reason = 'interrupted_after_data', \
                     lease_until = NULL, next_attempt_at = NULL, finished_at = $1, \
                     updated_at = $1 WHERE id = $2 AND status = 'in_flight' \
                     AND lease_until IS NOT DISTINCT FROM $3 RETURNING {COLUMNS}"
                ))
                .bind(micros(c.now))
                .bind(row.id)
                .bind(row.lease_until)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(ended) = ended else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                let row = pg_row(&ended)?;
                stage_postgres(&mut tx, service, &[announce(&row)], Utc::now()).await?;
                ProbeClaim::Finished { row, changed: true }
            }
        };
        tx.commit().await?;
        return Ok(Some(outcome));
    }

    // READ COMMITTED: a concurrent claim's uncommitted slot is not counted, but its insert
    // holds the unique key, so the insert below waits for it and then fails.
    let taken: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM probe_relay WHERE decky_id = $1 AND attacker_ip = $2 \
         AND slot IS NOT NULL",
    )
    .bind(c.decky_id)
    .bind(c.attacker_ip)
    .fetch_one(&mut *tx)
    .await?;
    let (status, slot, reason) = new_row_state(c.skip, taken, c.probe_limit);
    let claimed = status == "claimed";
    let inserted = sqlx::query(&format!(
        "INSERT INTO probe_relay (id, decky_id, attacker_ip, stored_as, slot, status, reason, \
         attempts, lease_owner, lease_until, upstream_host, upstream_port, tls, rcpt_count, \
         created_at, updated_at, finished_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15, $16) \
         ON CONFLICT (decky_id, stored_as) DO NOTHING RETURNING {COLUMNS}"
    ))
    .bind(c.id)
    .bind(c.decky_id)
    .bind(c.attacker_ip)
    .bind(c.stored_as)
    .bind(slot.map(|s| s as i32))
    .bind(status)
    .bind(reason)
    .bind(i32::from(claimed))
    .bind(claimed.then_some(c.owner))
    .bind(claimed.then(|| micros(c.now + c.lease)))
    .bind(c.upstream_host)
    .bind(c.upstream_port)
    .bind(c.tls)
    .bind(c.rcpt_count)
    .bind(micros(c.now))
    .bind((!claimed).then(|| micros(c.now)))
    .fetch_optional(&mut *tx)
    .await;
    let row = match inserted {
        Ok(Some(r)) => pg_row(&r)?,
        Ok(None) => {
            tx.rollback().await?;
            return Ok(None);
        }
        Err(e) if is_unique_violation(&e) => {
            tx.rollback().await?;
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let outcome = if claimed {
        ProbeClaim::Claimed(row)
    } else {
        stage_postgres(&mut tx, service, &[announce(&row)], Utc::now()).await?;
        ProbeClaim::Finished { row, changed: true }
    };
    tx.commit().await?;
    Ok(Some(outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_row_takes_the_next_slot_until_the_limit() {
        assert_eq!(new_row_state(None, 0, 2), ("claimed", Some(1), None));
        assert_eq!(new_row_state(None, 1, 2), ("claimed", Some(2), None));
        assert_eq!(
            new_row_state(None, 2, 2),
            ("skipped", None, Some("limit_reached"))
        );
        assert_eq!(
            new_row_state(Some("too_large"), 0, 2),
            ("skipped", None, Some("too_large"))
        );
    }

    #[test]
    fn only_sessions_end_probes() {
        let finish = |status| ProbeFinish {
            id: Uuid::nil(),
            owner: "a",
            now: Utc::now(),
            status,
            reason: None,
            smtp_code: None,
            smtp_reply: None,
            tls: None,
        };
        assert!(check_finish(&finish("sent")).is_ok());
        assert!(check_finish(&finish("skipped")).is_err());
        assert!(check_finish(&finish("claimed")).is_err());
    }

    #[test]
    fn reply_text_is_cut_to_the_column() {
        assert_eq!(
            reply_text(Some(&"é".repeat(300))).unwrap().chars().count(),
            256
        );
        assert_eq!(reply_text(None), None);
    }
}
