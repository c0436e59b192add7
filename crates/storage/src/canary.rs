//! `canary_token` and `canary_trigger`: the canary service's tokens and the hits on them.
//!
//! A hit is recorded only while its token is planted. The write transaction re-reads the
//! token first — SQLite holds the write lock from `BEGIN IMMEDIATE`, PostgreSQL locks the
//! row with `SELECT … FOR UPDATE` — so a hit racing a revoke lands either before it or not at
//! all. The trigger row, the token's counters, an automatic revoke and the messages that
//! announce them commit together.
//!
//! Triggers are append-only but for `repeat_count`, which the flood guard bumps on the
//! newest row of a (token, source) instead of writing a row per repeated hit.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder, Row, Sqlite};
use uuid::Uuid;

use crate::outbox::{OutboxMessage, stage_postgres, stage_sqlite};
use crate::time::{from_text, micros, to_text};
use crate::{Database, StorageError};

/// A token to mint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewCanaryToken<'a> {
    /// Id.
    pub uuid: Uuid,
    /// `http`, `dns` or `aws_passive`.
    pub kind: &'a str,
    /// The generator that made the planted artefact.
    pub generator: &'a str,
    /// The decoy it is planted on, at most 63 characters.
    pub decky_name: &'a str,
    /// Where on the decoy, an absolute path.
    pub placement_path: &'a str,
    /// The callback secret; its key is the slug lower-cased, and unique.
    pub slug: &'a str,
    /// The mint uuid of a fingerprint token.
    pub mint_uuid: Option<Uuid>,
    /// The fingerprint nonce, 16 lower-case hex digits.
    pub fingerprint_nonce: Option<&'a str>,
    /// The operator's note, at most 512 characters.
    pub memo: Option<&'a str>,
    /// Who minted it.
    pub created_by: &'a str,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// One canary_token row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryTokenRow {
    /// Id.
    pub uuid: Uuid,
    /// `http`, `dns` or `aws_passive`.
    pub kind: String,
    /// The generator that made the planted artefact.
    pub generator: String,
    /// The decoy it is planted on.
    pub decky_name: String,
    /// Where on the decoy.
    pub placement_path: String,
    /// The callback secret as minted.
    pub slug: String,
    /// The slug lower-cased: what callbacks are looked up by.
    pub slug_key: String,
    /// The mint uuid of a fingerprint token.
    pub mint_uuid: Option<Uuid>,
    /// The fingerprint nonce.
    pub fingerprint_nonce: Option<String>,
    /// `planted`, `failed` or `revoked`.
    pub state: String,
    /// The operator's note.
    pub memo: Option<String>,
    /// Who minted it.
    pub created_by: String,
    /// When, at microseconds.
    pub created_at: DateTime<Utc>,
    /// When the placement was reported done.
    pub placed_at: Option<DateTime<Utc>>,
    /// The latest hit (or repeat) counted.
    pub last_triggered_at: Option<DateTime<Utc>>,
    /// Hits counted, repeats included.
    pub trigger_count: i64,
    /// Why the placement failed.
    pub last_error: Option<String>,
    /// When it was revoked; present when revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Who revoked it (`system` for an automatic revoke).
    pub revoked_by: Option<String>,
    /// Why.
    pub revoke_reason: Option<String>,
}

/// A hit to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCanaryTrigger {
    /// Id.
    pub uuid: Uuid,
    /// The token hit, which must have a canary_token row.
    pub token_uuid: Uuid,
    /// When.
    pub occurred_at: DateTime<Utc>,
    /// `http` or `dns`.
    pub channel: String,
    /// `GET` or `HEAD`, for HTTP.
    pub method: Option<String>,
    /// The client's address as attributed.
    pub src_ip: String,
    /// The address of the connection's peer.
    pub peer_ip: String,
    /// The attacker anchor.
    pub attacker_uuid: Uuid,
    /// At most 1024 characters.
    pub user_agent: Option<String>,
    /// At most 2048 characters.
    pub request_path: Option<String>,
    /// The query name, lower-case, for DNS.
    pub dns_qname: Option<String>,
    /// Request headers, at most 16 KiB as JSON text.
    pub headers: Option<Value>,
    /// `beacon`, `open` or `fingerprint`.
    pub hit_kind: String,
    /// `none`, `valid` or why a fingerprint was refused.
    pub fingerprint_state: String,
    /// Flags on the hit.
    pub flags: Value,
    /// Whether it looks like a scanner rather than an attacker.
    pub suspected_scanner: bool,
    /// Why.
    pub scanner_reason: Option<String>,
    /// The fingerprint collected; only when `fingerprint_state` is `valid`.
    pub fingerprint: Option<Value>,
    /// Signals derived from it; only when `fingerprint_state` is `valid`.
    pub signals: Option<Value>,
}

/// One canary_trigger row.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryTriggerRow {
    /// Id.
    pub uuid: Uuid,
    /// The token hit.
    pub token_uuid: Uuid,
    /// When, at microseconds.
    pub occurred_at: DateTime<Utc>,
    /// `http` or `dns`.
    pub channel: String,
    /// `GET` or `HEAD`, for HTTP.
    pub method: Option<String>,
    /// The client's address as attributed.
    pub src_ip: String,
    /// The address of the connection's peer.
    pub peer_ip: String,
    /// The attacker anchor.
    pub attacker_uuid: Uuid,
    /// User agent.
    pub user_agent: Option<String>,
    /// Request path.
    pub request_path: Option<String>,
    /// The query name, for DNS.
    pub dns_qname: Option<String>,
    /// Request headers.
    pub headers: Option<Value>,
    /// `beacon`, `open` or `fingerprint`.
    pub hit_kind: String,
    /// `none`, `valid` or why a fingerprint was refused.
    pub fingerprint_state: String,
    /// Flags on the hit.
    pub flags: Value,
    /// Whether it looks like a scanner.
    pub suspected_scanner: bool,
    /// Why.
    pub scanner_reason: Option<String>,
    /// Repeats of this hit the flood guard counted instead of recording.
    pub repeat_count: i64,
    /// The fingerprint collected.
    pub fingerprint: Option<Value>,
    /// Signals derived from it.
    pub signals: Option<Value>,
}

/// What recording a hit did.
#[allow(
    clippy::large_enum_variant,
    reason = "returned once per hit and never collected: a box would be an allocation per hit"
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HitRecord {
    /// The row was written; the token as it is after the hit.
    Recorded {
        /// The token after the hit: counted, and revoked when the hit revoked it.
        token: CanaryTokenRow,
        /// Whether this hit revoked the token.
        revoked: bool,
    },
    /// The token is not planted (or unknown): nothing written or staged.
    NotLive,
}

const TOKEN_COLUMNS: &str = "uuid, kind, generator, decky_name, placement_path, slug, slug_key, \
     mint_uuid, fingerprint_nonce, state, memo, created_by, created_at, placed_at, \
     last_triggered_at, trigger_count, last_error, revoked_at, revoked_by, revoke_reason";

/// What a mint writes; the rest take their defaults.
const NEW_TOKEN_COLUMNS: &str = "uuid, kind, generator, decky_name, placement_path, slug, \
     slug_key, mint_uuid, fingerprint_nonce, memo, created_by, created_at";

const TRIGGER_COLUMNS: &str = "uuid, token_uuid, occurred_at, channel, method, src_ip, peer_ip, \
     attacker_uuid, user_agent, request_path, dns_qname, headers, hit_kind, fingerprint_state, \
     flags, suspected_scanner, scanner_reason, repeat_count, fingerprint, signals";

/// What a hit writes: every column but repeat_count, which starts at 0.
const NEW_TRIGGER_COLUMNS: &str = "uuid, token_uuid, occurred_at, channel, method, src_ip, \
     peer_ip, attacker_uuid, user_agent, request_path, dns_qname, headers, hit_kind, \
     fingerprint_state, flags, suspected_scanner, scanner_reason, fingerprint, signals";

/// The only state that takes hits and placement reports.
const PLANTED: &str = "planted";

/// The automatic revoke of a hit that collected a fingerprint, after the counters' SET.
const SQLITE_AUTO_REVOKE: &str = ", state = 'revoked', revoked_at = ?, revoked_by = 'system', \
     revoke_reason = 'fingerprint_collected'";
const PG_AUTO_REVOKE: &str = ", state = 'revoked', revoked_at = $1, revoked_by = 'system', \
     revoke_reason = 'fingerprint_collected'";

/// The lookup key of a slug. ASCII only, as SQLite's `lower` is: slugs are base32, and a
/// non-ASCII capital that PostgreSQL's `lower` would fold is refused by the schema there.
fn slug_key(slug: &str) -> String {
    slug.to_ascii_lowercase()
}

fn json_text(v: &Value) -> String {
    serde_json::to_string(v).expect("JSON values serialise")
}

fn read_json(column: &'static str, text: Option<&str>) -> Result<Option<Value>, StorageError> {
    text.map(|t| {
        serde_json::from_str(t).map_err(|_| StorageError::Corrupt {
            column,
            value: t.to_owned(),
        })
    })
    .transpose()
}

fn read_uuid(column: &'static str, text: Option<&str>) -> Result<Option<Uuid>, StorageError> {
    text.map(|t| {
        t.parse().map_err(|_| StorageError::Corrupt {
            column,
            value: t.to_owned(),
        })
    })
    .transpose()
}

fn read_time(
    column: &'static str,
    text: Option<&str>,
) -> Result<Option<DateTime<Utc>>, StorageError> {
    text.map(|t| from_text(column, t)).transpose()
}

fn sqlite_token(r: &SqliteRow) -> Result<CanaryTokenRow, StorageError> {
    Ok(CanaryTokenRow {
        uuid: read_uuid("canary_token.uuid", Some(r.try_get("uuid")?))?.expect("present"),
        kind: r.try_get("kind")?,
        generator: r.try_get("generator")?,
        decky_name: r.try_get("decky_name")?,
        placement_path: r.try_get("placement_path")?,
        slug: r.try_get("slug")?,
        slug_key: r.try_get("slug_key")?,
        mint_uuid: read_uuid("canary_token.mint_uuid", r.try_get("mint_uuid")?)?,
        fingerprint_nonce: r.try_get("fingerprint_nonce")?,
        state: r.try_get("state")?,
        memo: r.try_get("memo")?,
        created_by: r.try_get("created_by")?,
        created_at: from_text("canary_token.created_at", r.try_get("created_at")?)?,
        placed_at: read_time("canary_token.placed_at", r.try_get("placed_at")?)?,
        last_triggered_at: read_time(
            "canary_token.last_triggered_at",
            r.try_get("last_triggered_at")?,
        )?,
        trigger_count: r.try_get("trigger_count")?,
        last_error: r.try_get("last_error")?,
        revoked_at: read_time("canary_token.revoked_at", r.try_get("revoked_at")?)?,
        revoked_by: r.try_get("revoked_by")?,
        revoke_reason: r.try_get("revoke_reason")?,
    })
}

fn pg_token(r: &PgRow) -> Result<CanaryTokenRow, StorageError> {
    Ok(CanaryTokenRow {
        uuid: r.try_get("uuid")?,
        kind: r.try_get("kind")?,
        generator: r.try_get("generator")?,
        decky_name: r.try_get("decky_name")?,
        placement_path: r.try_get("placement_path")?,
        slug: r.try_get("slug")?,
        slug_key: r.try_get("slug_key")?,
        mint_uuid: r.try_get("mint_uuid")?,
        fingerprint_nonce: r.try_get("fingerprint_nonce")?,
        state: r.try_get("state")?,
        memo: r.try_get("memo")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        placed_at: r.try_get("placed_at")?,
        last_triggered_at: r.try_get("last_triggered_at")?,
        trigger_count: r.try_get("trigger_count")?,
        last_error: r.try_get("last_error")?,
        revoked_at: r.try_get("revoked_at")?,
        revoked_by: r.try_get("revoked_by")?,
        revoke_reason: r.try_get("revoke_reason")?,
    })
}

fn sqlite_trigger(r: &SqliteRow) -> Result<CanaryTriggerRow, StorageError> {
    Ok(CanaryTriggerRow {
        uuid: read_uuid("canary_trigger.uuid", Some(r.try_get("uuid")?))?.expect("present"),
        token_uuid: read_uuid("canary_trigger.token_uuid", Some(r.try_get("token_uuid")?))?
            .expect("present"),
        occurred_at: from_text("canary_trigger.occurred_at", r.try_get("occurred_at")?)?,
        channel: r.try_get("channel")?,
        method: r.try_get("method")?,
        src_ip: r.try_get("src_ip")?,
        peer_ip: r.try_get("peer_ip")?,
        attacker_uuid: read_uuid(
            "canary_trigger.attacker_uuid",
            Some(r.try_get("attacker_uuid")?),
        )?
        .expect("present"),
        user_agent: r.try_get("user_agent")?,
        request_path: r.try_get("request_path")?,
        dns_qname: r.try_get("dns_qname")?,
        headers: read_json("canary_trigger.headers", r.try_get("headers")?)?,
        hit_kind: r.try_get("hit_kind")?,
        fingerprint_state: r.try_get("fingerprint_state")?,
        flags: read_json("canary_trigger.flags", Some(r.try_get("flags")?))?.expect("present"),
        suspected_scanner: r.try_get("suspected_scanner")?,
        scanner_reason: r.try_get("scanner_reason")?,
        repeat_count: r.try_get("repeat_count")?,
        fingerprint: read_json("canary_trigger.fingerprint", r.try_get("fingerprint")?)?,
        signals: read_json("canary_trigger.signals", r.try_get("signals")?)?,
    })
}

fn pg_trigger(r: &PgRow) -> Result<CanaryTriggerRow, StorageError> {
    let json = |column: &str| -> Result<Option<Value>, StorageError> {
        Ok(r.try_get::<Option<Json<Value>>, _>(column)?.map(|j| j.0))
    };
    Ok(CanaryTriggerRow {
        uuid: r.try_get("uuid")?,
        token_uuid: r.try_get("token_uuid")?,
        occurred_at: r.try_get("occurred_at")?,
        channel: r.try_get("channel")?,
        method: r.try_get("method")?,
        src_ip: r.try_get("src_ip")?,
        peer_ip: r.try_get("peer_ip")?,
        attacker_uuid: r.try_get("attacker_uuid")?,
        user_agent: r.try_get("user_agent")?,
        request_path: r.try_get("request_path")?,
        dns_qname: r.try_get("dns_qname")?,
        headers: json("headers")?,
        hit_kind: r.try_get("hit_kind")?,
        fingerprint_state: r.try_get("fingerprint_state")?,
        flags: r.try_get::<Json<Value>, _>("flags")?.0,
        suspected_scanner: r.try_get("suspected_scanner")?,
        scanner_reason: r.try_get("scanner_reason")?,
        repeat_count: r.try_get("repeat_count")?,
        fingerprint: json("fingerprint")?,
        signals: json("signals")?,
    })
}

impl Database {
    /// Mint a token: state planted, no hits yet. The slug key is the slug lower-cased
    /// (computed here); a slug whose key another token has is a [`StorageError::Constraint`],
    /// as is anything else the schema refuses. Returns the stored row (times cut to
    /// microseconds).
    pub async fn insert_canary_token(
        &self,
        token: &NewCanaryToken<'_>,
    ) -> Result<CanaryTokenRow, StorageError> {
        let key = slug_key(token.slug);
        match self {
            Database::Sqlite(pool) => {
                let row = sqlx::query(&format!(
                    "INSERT INTO canary_token ({NEW_TOKEN_COLUMNS}) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {TOKEN_COLUMNS}"
                ))
                .bind(token.uuid.to_string())
                .bind(token.kind)
                .bind(token.generator)
                .bind(token.decky_name)
                .bind(token.placement_path)
                .bind(token.slug)
                .bind(&key)
                .bind(token.mint_uuid.map(|u| u.to_string()))
                .bind(token.fingerprint_nonce)
                .bind(token.memo)
                .bind(token.created_by)
                .bind(to_text(token.created_at))
                .fetch_one(pool)
                .await?;
                sqlite_token(&row)
            }
            Database::Postgres(pool) => {
                let row = sqlx::query(&format!(
                    "INSERT INTO canary_token ({NEW_TOKEN_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                     RETURNING {TOKEN_COLUMNS}"
                ))
                .bind(token.uuid)
                .bind(token.kind)
                .bind(token.generator)
                .bind(token.decky_name)
                .bind(token.placement_path)
                .bind(token.slug)
                .bind(&key)
                .bind(token.mint_uuid)
                .bind(token.fingerprint_nonce)
                .bind(token.memo)
                .bind(token.created_by)
                .bind(micros(token.created_at))
                .fetch_one(pool)
                .await?;
                pg_token(&row)
            }
        }
    }

    /// One token, in any state.
    pub async fn canary_token(&self, uuid: Uuid) -> Result<Option<CanaryTokenRow>, StorageError> {
        match self {
            Database::Sqlite(pool) => sqlx::query(&format!(
                "SELECT {TOKEN_COLUMNS} FROM canary_token WHERE uuid = ?"
            ))
            .bind(uuid.to_string())
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(sqlite_token)
            .transpose(),
            Database::Postgres(pool) => sqlx::query(&format!(
                "SELECT {TOKEN_COLUMNS} FROM canary_token WHERE uuid = $1"
            ))
            .bind(uuid)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(pg_token)
            .transpose(),
        }
    }

    /// The token whose slug key is exactly `slug_key` (the caller lower-cases a callback's
    /// slug), in any state.
    pub async fn canary_token_by_slug(
        &self,
        slug_key: &str,
    ) -> Result<Option<CanaryTokenRow>, StorageError> {
        match self {
            Database::Sqlite(pool) => sqlx::query(&format!(
                "SELECT {TOKEN_COLUMNS} FROM canary_token WHERE slug_key = ?"
            ))
            .bind(slug_key)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(sqlite_token)
            .transpose(),
            Database::Postgres(pool) => sqlx::query(&format!(
                "SELECT {TOKEN_COLUMNS} FROM canary_token WHERE slug_key = $1"
            ))
            .bind(slug_key)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(pg_token)
            .transpose(),
        }
    }

    /// Tokens, of one decoy and in one state when given, by created_at then uuid; served by
    /// the `(decky_name, state)` index when filtered.
    pub async fn canary_tokens(
        &self,
        decky_name: Option<&str>,
        state: Option<&str>,
    ) -> Result<Vec<CanaryTokenRow>, StorageError> {
        let select = format!("SELECT {TOKEN_COLUMNS} FROM canary_token");
        let order = " ORDER BY created_at, uuid";
        match self {
            Database::Sqlite(pool) => {
                let mut q = QueryBuilder::<Sqlite>::new(select);
                let mut sep = " WHERE ";
                if let Some(d) = decky_name {
                    q.push(sep).push("decky_name = ").push_bind(d);
                    sep = " AND ";
                }
                if let Some(s) = state {
                    q.push(sep).push("state = ").push_bind(s);
                }
                q.push(order);
                q.build()
                    .fetch_all(pool)
                    .await?
                    .iter()
                    .map(sqlite_token)
                    .collect()
            }
            Database::Postgres(pool) => {
                let mut q = QueryBuilder::<Postgres>::new(select);
                let mut sep = " WHERE ";
                if let Some(d) = decky_name {
                    q.push(sep).push("decky_name = ").push_bind(d);
                    sep = " AND ";
                }
                if let Some(s) = state {
                    q.push(sep).push("state = ").push_bind(s);
                }
                q.push(order);
                q.build()
                    .fetch_all(pool)
                    .await?
                    .iter()
                    .map(pg_token)
                    .collect()
            }
        }
    }

    /// Record a hit in one write transaction: re-read the token (PostgreSQL: `SELECT … FOR
    /// UPDATE`); if it is not planted return [`HitRecord::NotLive`] and write nothing.
    /// Otherwise insert the trigger, count it (trigger_count + 1, last_triggered_at =
    /// occurred_at) and, when `auto_revoke`, revoke the token (revoked_at = occurred_at,
    /// revoked_by `system`, revoke_reason `fingerprint_collected`); then stage
    /// `announce(&token_after, revoked)` (possibly nothing) under `service` and commit. A
    /// trigger the schema refuses is a [`StorageError::Constraint`], with nothing written.
    pub async fn record_canary_hit(
        &self,
        service: &str,
        trigger: &NewCanaryTrigger,
        auto_revoke: bool,
        announce: impl FnOnce(&CanaryTokenRow, bool) -> Vec<OutboxMessage> + Send,
    ) -> Result<HitRecord, StorageError> {
        let t = trigger;
        match self {
            Database::Sqlite(pool) => {
                // BEGIN IMMEDIATE: the write lock is held from the state check to the commit,
                // so no revoke slips in between.
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let state: Option<String> =
                    sqlx::query_scalar("SELECT state FROM canary_token WHERE uuid = ?")
                        .bind(t.token_uuid.to_string())
                        .fetch_optional(&mut *tx)
                        .await?;
                if state.as_deref() != Some(PLANTED) {
                    tx.rollback().await?;
                    return Ok(HitRecord::NotLive);
                }
                sqlx::query(&format!(
                    "INSERT INTO canary_trigger ({NEW_TRIGGER_COLUMNS}) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ))
                .bind(t.uuid.to_string())
                .bind(t.token_uuid.to_string())
                .bind(to_text(t.occurred_at))
                .bind(&t.channel)
                .bind(&t.method)
                .bind(&t.src_ip)
                .bind(&t.peer_ip)
                .bind(t.attacker_uuid.to_string())
                .bind(&t.user_agent)
                .bind(&t.request_path)
                .bind(&t.dns_qname)
                .bind(t.headers.as_ref().map(json_text))
                .bind(&t.hit_kind)
                .bind(&t.fingerprint_state)
                .bind(json_text(&t.flags))
                .bind(t.suspected_scanner)
                .bind(&t.scanner_reason)
                .bind(t.fingerprint.as_ref().map(json_text))
                .bind(t.signals.as_ref().map(json_text))
                .execute(&mut *tx)
                .await?;
                let revoke = if auto_revoke { SQLITE_AUTO_REVOKE } else { "" };
                let sql = format!(
                    "UPDATE canary_token SET trigger_count = trigger_count + 1, \
                     last_triggered_at = ?{revoke} WHERE uuid = ? RETURNING {TOKEN_COLUMNS}"
                );
                let mut q = sqlx::query(&sql).bind(to_text(t.occurred_at));
                if auto_revoke {
                    q = q.bind(to_text(t.occurred_at));
                }
                let row = q.bind(t.token_uuid.to_string()).fetch_one(&mut *tx).await?;
                let token = sqlite_token(&row)?;
                let messages = announce(&token, auto_revoke);
                // The outbox row's time is the wall clock: it dates the staging for the
                // backlog check, whatever clock the hit was stamped with.
                stage_sqlite(&mut tx, service, &messages, Utc::now()).await?;
                tx.commit().await?;
                Ok(HitRecord::Recorded {
                    token,
                    revoked: auto_revoke,
                })
            }
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                // The row lock is held to the commit: a concurrent revoke waits for this hit,
                // or this hit waits for the revoke and then sees it.
                let state: Option<String> =
                    sqlx::query_scalar("SELECT state FROM canary_token WHERE uuid = $1 FOR UPDATE")
                        .bind(t.token_uuid)
                        .fetch_optional(&mut *tx)
                        .await?;
                if state.as_deref() != Some(PLANTED) {
                    tx.rollback().await?;
                    return Ok(HitRecord::NotLive);
                }
                sqlx::query(&format!(
                    "INSERT INTO canary_trigger ({NEW_TRIGGER_COLUMNS}) VALUES ($1, $2, $3, $4, \
                     $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
                ))
                .bind(t.uuid)
                .bind(t.token_uuid)
                .bind(micros(t.occurred_at))
                .bind(&t.channel)
                .bind(&t.method)
                .bind(&t.src_ip)
                .bind(&t.peer_ip)
                .bind(t.attacker_uuid)
                .bind(&t.user_agent)
                .bind(&t.request_path)
                .bind(&t.dns_qname)
                .bind(t.headers.as_ref().map(Json))
                .bind(&t.hit_kind)
                .bind(&t.fingerprint_state)
                .bind(Json(&t.flags))
                .bind(t.suspected_scanner)
                .bind(&t.scanner_reason)
                .bind(t.fingerprint.as_ref().map(Json))
                .bind(t.signals.as_ref().map(Json))
                .execute(&mut *tx)
                .await?;
                let revoke = if auto_revoke { PG_AUTO_REVOKE } else { "" };
                let row = sqlx::query(&format!(
                    "UPDATE canary_token SET trigger_count = trigger_count + 1, \
                     last_triggered_at = $1{revoke} WHERE uuid = $2 RETURNING {TOKEN_COLUMNS}"
                ))
                .bind(micros(t.occurred_at))
                .bind(t.token_uuid)
                .fetch_one(&mut *tx)
                .await?;
                let token = pg_token(&row)?;
                let messages = announce(&token, auto_revoke);
                stage_postgres(&mut tx, service, &messages, Utc::now()).await?;
                tx.commit().await?;
                Ok(HitRecord::Recorded {
                    token,
                    revoked: auto_revoke,
                })
            }
        }
    }

    /// The flood guard: in one transaction, repeat_count + 1 on the newest trigger row (by
    /// occurred_at, then uuid) of (token_uuid, src_ip), and the token's trigger_count + 1 and
    /// last_triggered_at = at. Returns false, changing nothing, when there is no such row or
    /// the token is not planted.
    pub async fn repeat_canary_hit(
        &self,
        token_uuid: Uuid,
        src_ip: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StorageError> {
        match self {
            Database::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let counted = sqlx::query(
                    "UPDATE canary_token SET trigger_count = trigger_count + 1, \
                     last_triggered_at = ? WHERE uuid = ? AND state = 'planted'",
                )
                .bind(to_text(at))
                .bind(token_uuid.to_string())
                .execute(&mut *tx)
                .await?;
                if counted.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                let bumped = sqlx::query(
                    "UPDATE canary_trigger SET repeat_count = repeat_count + 1 WHERE uuid = \
                     (SELECT uuid FROM canary_trigger WHERE token_uuid = ? AND src_ip = ? \
                      ORDER BY occurred_at DESC, uuid DESC LIMIT 1)",
                )
                .bind(token_uuid.to_string())
                .bind(src_ip)
                .execute(&mut *tx)
                .await?;
                if bumped.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                tx.commit().await?;
            }
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                // The token's row lock comes first, as in record_canary_hit: the state is
                // re-checked on the row as committed, and a hit being recorded is seen.
                let counted = sqlx::query(
                    "UPDATE canary_token SET trigger_count = trigger_count + 1, \
                     last_triggered_at = $1 WHERE uuid = $2 AND state = 'planted'",
                )
                .bind(micros(at))
                .bind(token_uuid)
                .execute(&mut *tx)
                .await?;
                if counted.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                let bumped = sqlx::query(
                    "UPDATE canary_trigger SET repeat_count = repeat_count + 1 WHERE uuid = \
                     (SELECT uuid FROM canary_trigger WHERE token_uuid = $1 AND src_ip = $2 \
                      ORDER BY occurred_at DESC, uuid DESC LIMIT 1)",
                )
                .bind(token_uuid)
                .bind(src_ip)
                .execute(&mut *tx)
                .await?;
                if bumped.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                tx.commit().await?;
            }
        }
        Ok(true)
    }

    /// A placement report: `ok` sets placed_at = now (the state stays planted); otherwise the
    /// token fails (state failed, last_error = error). Only a planted token changes; from any
    /// other state nothing does. Returns the row after, None for an unknown uuid.
    pub async fn report_canary_placement(
        &self,
        uuid: Uuid,
        ok: bool,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<CanaryTokenRow>, StorageError> {
        match self {
            Database::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let changed = if ok {
                    sqlx::query(&format!(
                        "UPDATE canary_token SET placed_at = ? WHERE uuid = ? AND state = 'planted' \
                         RETURNING {TOKEN_COLUMNS}"
                    ))
                    .bind(to_text(now))
                    .bind(uuid.to_string())
                    .fetch_optional(&mut *tx)
                    .await?
                } else {
                    sqlx::query(&format!(
                        "UPDATE canary_token SET state = 'failed', last_error = ? \
                         WHERE uuid = ? AND state = 'planted' RETURNING {TOKEN_COLUMNS}"
                    ))
                    .bind(error)
                    .bind(uuid.to_string())
                    .fetch_optional(&mut *tx)
                    .await?
                };
                let row = match changed {
                    Some(row) => Some(row),
                    None => {
                        sqlx::query(&format!(
                            "SELECT {TOKEN_COLUMNS} FROM canary_token WHERE uuid = ?"
                        ))
                        .bind(uuid.to_string())
                        .fetch_optional(&mut *tx)
                        .await?
                    }
                };
                tx.commit().await?;
                row.as_ref().map(sqlite_token).transpose()
            }
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let changed = if ok {
                    sqlx::query(&format!(
                        "UPDATE canary_token SET placed_at = $1 WHERE uuid = $2 \
                         AND state = 'planted' RETURNING {TOKEN_COLUMNS}"
                    ))
                    .bind(micros(now))
                    .bind(uuid)
                    .fetch_optional(&mut *tx)
                    .await?
                } else {
                    sqlx::query(&format!(
                        "UPDATE canary_token SET state = 'failed', last_error = $1 \
                         WHERE uuid = $2 AND state = 'planted' RETURNING {TOKEN_COLUMNS}"
                    ))
                    .bind(error)
                    .bind(uuid)
                    .fetch_optional(&mut *tx)
                    .await?
                };
                let row = match changed {
                    Some(row) => Some(row),
                    None => {
                        sqlx::query(&format!(
                            "SELECT {TOKEN_COLUMNS} FROM canary_token WHERE uuid = $1"
                        ))
                        .bind(uuid)
                        .fetch_optional(&mut *tx)
                        .await?
                    }
                };
                tx.commit().await?;
                row.as_ref().map(pg_token).transpose()
            }
        }
    }

    /// An operator's revoke: a planted or failed token becomes revoked (revoked_at = now,
    /// revoked_by, revoke_reason = reason), staging `announce(&row_after)` under `service` in
    /// the same transaction. An already revoked token is left as it is, nothing staged.
    /// Returns the row and whether it changed, None for an unknown uuid.
    pub async fn revoke_canary_token(
        &self,
        service: &str,
        uuid: Uuid,
        revoked_by: &str,
        reason: &str,
        now: DateTime<Utc>,
        announce: impl FnOnce(&CanaryTokenRow) -> OutboxMessage + Send,
    ) -> Result<Option<(CanaryTokenRow, bool)>, StorageError> {
        match self {
            Database::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let changed = sqlx::query(&format!(
                    "UPDATE canary_token SET state = 'revoked', revoked_at = ?, revoked_by = ?, \
                     revoke_reason = ? WHERE uuid = ? AND state IN ('planted', 'failed') \
                     RETURNING {TOKEN_COLUMNS}"
                ))
                .bind(to_text(now))
                .bind(revoked_by)
                .bind(reason)
                .bind(uuid.to_string())
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = changed {
                    let token = sqlite_token(&row)?;
                    stage_sqlite(&mut tx, service, &[announce(&token)], Utc::now()).await?;
                    tx.commit().await?;
                    return Ok(Some((token, true)));
                }
                let row = sqlx::query(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM canary_token WHERE uuid = ?"
                ))
                .bind(uuid.to_string())
                .fetch_optional(&mut *tx)
                .await?;
                tx.rollback().await?;
                Ok(row
                    .as_ref()
                    .map(sqlite_token)
                    .transpose()?
                    .map(|t| (t, false)))
            }
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let changed = sqlx::query(&format!(
                    "UPDATE canary_token SET state = 'revoked', revoked_at = $1, revoked_by = $2, \
                     revoke_reason = $3 WHERE uuid = $4 AND state IN ('planted', 'failed') \
                     RETURNING {TOKEN_COLUMNS}"
                ))
                .bind(micros(now))
                .bind(revoked_by)
                .bind(reason)
                .bind(uuid)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = changed {
                    let token = pg_token(&row)?;
                    stage_postgres(&mut tx, service, &[announce(&token)], Utc::now()).await?;
                    tx.commit().await?;
                    return Ok(Some((token, true)));
                }
                let row = sqlx::query(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM canary_token WHERE uuid = $1"
                ))
                .bind(uuid)
                .fetch_optional(&mut *tx)
                .await?;
                tx.rollback().await?;
                Ok(row.as_ref().map(pg_token).transpose()?.map(|t| (t, false)))
            }
        }
    }

    /// A token's triggers, newest first (occurred_at, then uuid, descending), at most `limit`
    /// (none when it is not positive), and when `before` is given only those strictly older
    /// than it: pass the last row's (occurred_at, uuid) to read the next page. Served by the
    /// `(token_uuid, occurred_at)` index.
    pub async fn canary_triggers(
        &self,
        token_uuid: Uuid,
        limit: i64,
        before: Option<(DateTime<Utc>, Uuid)>,
    ) -> Result<Vec<CanaryTriggerRow>, StorageError> {
        let limit = limit.max(0);
        let order = "ORDER BY occurred_at DESC, uuid DESC";
        match self {
            Database::Sqlite(pool) => {
                let cursor = if before.is_some() {
                    "AND (occurred_at, uuid) < (?, ?)"
                } else {
                    ""
                };
                let sql = format!(
                    "SELECT {TRIGGER_COLUMNS} FROM canary_trigger WHERE token_uuid = ? {cursor} \
                     {order} LIMIT ?"
                );
                let mut q = sqlx::query(&sql).bind(token_uuid.to_string());
                if let Some((at, uuid)) = before {
                    q = q.bind(to_text(at)).bind(uuid.to_string());
                }
                q.bind(limit)
                    .fetch_all(pool)
                    .await?
                    .iter()
                    .map(sqlite_trigger)
                    .collect()
            }
            Database::Postgres(pool) => {
                let sql = match before {
                    Some(_) => format!(
                        "SELECT {TRIGGER_COLUMNS} FROM canary_trigger WHERE token_uuid = $1 \
                         AND (occurred_at, uuid) < ($3, $4) {order} LIMIT $2"
                    ),
                    None => format!(
                        "SELECT {TRIGGER_COLUMNS} FROM canary_trigger WHERE token_uuid = $1 \
                         {order} LIMIT $2"
                    ),
                };
                let mut q = sqlx::query(&sql).bind(token_uuid).bind(limit);
                if let Some((at, uuid)) = before {
                    q = q.bind(micros(at)).bind(uuid);
                }
                q.fetch_all(pool).await?.iter().map(pg_trigger).collect()
            }
        }
    }
}
