//! Identity bookkeeping (EVENTS.md §5.4): the clusterers' decisions applied to `identity` and
//! `attacker.identity_uuid` inside the tagger's batch transaction, and the identity an
//! attacker's tags take (RULES.md §5.1).
//!
//! Merges are followed: a join or a merge naming an identity that was folded into another
//! lands on the one that remains, so an out-of-order `identity.observation.linked` never
//! revives a loser. Later merges move attackers, never tags.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row, SqliteConnection};
use uuid::Uuid;

use crate::time::{from_text, micros, to_text};
use crate::{Database, StorageError};

/// One clusterer decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityChange {
    /// `identity.formed` (with its `observation_uuids`) or `identity.observation.linked`:
    /// the attackers belong to the identity; unknown attackers get uuid-only rows.
    Join {
        /// The identity.
        identity: Uuid,
        /// Its members.
        attackers: Vec<Uuid>,
    },
    /// `identity.merged`: the loser is folded into the winner and its attackers move.
    Merge {
        /// The identity that remains.
        winner: Uuid,
        /// The identity folded into it.
        loser: Uuid,
    },
    /// `identity.campaign.assigned`.
    Campaign {
        /// The identity.
        identity: Uuid,
        /// Its campaign.
        campaign: Uuid,
    },
}

/// An `identity` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRow {
    /// Id.
    pub identity_uuid: Uuid,
    /// Campaign, when assigned.
    pub campaign_uuid: Option<Uuid>,
    /// The identity it was folded into.
    pub merged_into: Option<Uuid>,
    /// First recorded.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// Merge chains are short; a bound keeps a corrupt cycle from spinning.
const MAX_MERGE_HOPS: usize = 32;

/// `IdentityChange`s in one SQLite transaction.
pub(crate) async fn apply_sqlite(
    tx: &mut SqliteConnection,
    changes: &[IdentityChange],
    now: DateTime<Utc>,
) -> Result<(), StorageError> {
    let now = to_text(now);
    for change in changes {
        match change {
            IdentityChange::Join {
                identity,
                attackers,
            } => {
                let identity = final_sqlite(tx, *identity).await?;
                ensure_sqlite(tx, identity, &now).await?;
                for a in attackers {
                    sqlx::query(
                        "INSERT INTO attacker (uuid, identity_uuid, first_seen, last_seen) VALUES (?, ?, ?, ?) \
                         ON CONFLICT (uuid) DO UPDATE SET identity_uuid = excluded.identity_uuid",
                    )
                    .bind(a.to_string())
                    .bind(identity.to_string())
                    .bind(&now)
                    .bind(&now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            IdentityChange::Merge { winner, loser } => {
                let winner = final_sqlite(tx, *winner).await?;
                if winner == *loser {
                    continue;
                }
                ensure_sqlite(tx, winner, &now).await?;
                ensure_sqlite(tx, *loser, &now).await?;
                sqlx::query(
                    "UPDATE identity SET merged_into = ?, updated_at = ? \
                     WHERE identity_uuid = ? OR merged_into = ?",
                )
                .bind(winner.to_string())
                .bind(&now)
                .bind(loser.to_string())
                .bind(loser.to_string())
                .execute(&mut *tx)
                .await?;
                sqlx::query("UPDATE attacker SET identity_uuid = ? WHERE identity_uuid = ?")
                    .bind(winner.to_string())
                    .bind(loser.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
            IdentityChange::Campaign { identity, campaign } => {
                let identity = final_sqlite(tx, *identity).await?;
                sqlx::query(
                    "INSERT INTO identity (identity_uuid, campaign_uuid, created_at, updated_at) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (identity_uuid) DO UPDATE SET campaign_uuid = excluded.campaign_uuid, \
                     updated_at = excluded.updated_at",
                )
                .bind(identity.to_string())
                .bind(campaign.to_string())
                .bind(&now)
                .bind(&now)
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    Ok(())
}

async fn ensure_sqlite(
    tx: &mut SqliteConnection,
    identity: Uuid,
    now: &str,
) -> Result<(), StorageError> {
    sqlx::query(
        "INSERT INTO identity (identity_uuid, created_at, updated_at) VALUES (?, ?, ?) \
         ON CONFLICT (identity_uuid) DO UPDATE SET updated_at = excluded.updated_at",
    )
    .bind(identity.to_string())
    .bind(now)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The identity that `identity` was (transitively) merged into, or itself.
async fn final_sqlite(tx: &mut SqliteConnection, identity: Uuid) -> Result<Uuid, StorageError> {
    let mut at = identity;
    for _ in 0..MAX_MERGE_HOPS {
        let next: Option<String> =
            sqlx::query("SELECT merged_into FROM identity WHERE identity_uuid = ?")
                .bind(at.to_string())
                .fetch_optional(&mut *tx)
                .await?
                .and_then(|r| r.get("merged_into"));
        match next.and_then(|t| t.parse().ok()) {
            Some(n) if n != identity => at = n,
            _ => break,
        }
    }
    Ok(at)
}

/// `IdentityChange`s in one PostgreSQL transaction.
pub(crate) async fn apply_postgres(
    tx: &mut PgConnection,
    changes: &[IdentityChange],
    now: DateTime<Utc>,
) -> Result<(), StorageError> {
    let now = micros(now);
    for change in changes {
        match change {
            IdentityChange::Join {
                identity,
                attackers,
            } => {
                let identity = final_postgres(tx, *identity).await?;
                ensure_postgres(tx, identity, now).await?;
                sqlx::query(
                    "INSERT INTO attacker (uuid, identity_uuid, first_seen, last_seen) \
                     SELECT a, $2, $3, $3 FROM unnest($1::uuid[]) AS a \
                     ON CONFLICT (uuid) DO UPDATE SET identity_uuid = excluded.identity_uuid",
                )
                .bind(attackers)
                .bind(identity)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            IdentityChange::Merge { winner, loser } => {
                let winner = final_postgres(tx, *winner).await?;
                if winner == *loser {
                    continue;
                }
                ensure_postgres(tx, winner, now).await?;
                ensure_postgres(tx, *loser, now).await?;
                sqlx::query(
                    "UPDATE identity SET merged_into = $1, updated_at = $2 \
                     WHERE identity_uuid = $3 OR merged_into = $3",
                )
                .bind(winner)
                .bind(now)
                .bind(loser)
                .execute(&mut *tx)
                .await?;
                sqlx::query("UPDATE attacker SET identity_uuid = $1 WHERE identity_uuid = $2")
                    .bind(winner)
                    .bind(loser)
                    .execute(&mut *tx)
                    .await?;
            }
            IdentityChange::Campaign { identity, campaign } => {
                let identity = final_postgres(tx, *identity).await?;
                sqlx::query(
                    "INSERT INTO identity (identity_uuid, campaign_uuid, created_at, updated_at) VALUES ($1, $2, $3, $3) \
                     ON CONFLICT (identity_uuid) DO UPDATE SET campaign_uuid = excluded.campaign_uuid, \
                     updated_at = excluded.updated_at",
                )
                .bind(identity)
                .bind(campaign)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    Ok(())
}

async fn ensure_postgres(
    tx: &mut PgConnection,
    identity: Uuid,
    now: DateTime<Utc>,
) -> Result<(), StorageError> {
    sqlx::query(
        "INSERT INTO identity (identity_uuid, created_at, updated_at) VALUES ($1, $2, $2) \
         ON CONFLICT (identity_uuid) DO UPDATE SET updated_at = excluded.updated_at",
    )
    .bind(identity)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn final_postgres(tx: &mut PgConnection, identity: Uuid) -> Result<Uuid, StorageError> {
    let mut at = identity;
    for _ in 0..MAX_MERGE_HOPS {
        let next: Option<Uuid> =
            sqlx::query("SELECT merged_into FROM identity WHERE identity_uuid = $1")
                .bind(at)
                .fetch_optional(&mut *tx)
                .await?
                .and_then(|r| r.get("merged_into"));
        match next {
            Some(n) if n != identity => at = n,
            _ => break,
        }
    }
    Ok(at)
}

impl Database {
    /// One identity row.
    pub async fn identity(&self, identity: Uuid) -> Result<Option<IdentityRow>, StorageError> {
        const SQL: &str = "SELECT identity_uuid, campaign_uuid, merged_into, created_at, updated_at \
                           FROM identity WHERE identity_uuid = ";
        match self {
            Database::Sqlite(pool) => {
                let Some(r) = sqlx::query(&format!("{SQL}?"))
                    .bind(identity.to_string())
                    .fetch_optional(pool)
                    .await?
                else {
                    return Ok(None);
                };
                let uuid = |column: &'static str, v: Option<String>| {
                    v.map(|t| {
                        t.parse::<Uuid>().map_err(|_| StorageError::Corrupt {
                            column,
                            value: t.clone(),
                        })
                    })
                    .transpose()
                };
                Ok(Some(IdentityRow {
                    identity_uuid: identity,
                    campaign_uuid: uuid("identity.campaign_uuid", r.get("campaign_uuid"))?,
                    merged_into: uuid("identity.merged_into", r.get("merged_into"))?,
                    created_at: from_text("identity.created_at", r.get("created_at"))?,
                    updated_at: from_text("identity.updated_at", r.get("updated_at"))?,
                }))
            }
            Database::Postgres(pool) => Ok(sqlx::query(&format!("{SQL}$1"))
                .bind(identity)
                .fetch_optional(pool)
                .await?
                .map(|r| IdentityRow {
                    identity_uuid: identity,
                    campaign_uuid: r.get("campaign_uuid"),
                    merged_into: r.get("merged_into"),
                    created_at: r.get("created_at"),
                    updated_at: r.get("updated_at"),
                })),
        }
    }

    /// The identity an attacker belongs to now.
    pub async fn attacker_identity(&self, attacker: Uuid) -> Result<Option<Uuid>, StorageError> {
        match self {
            Database::Sqlite(pool) => {
                let text: Option<String> =
                    sqlx::query("SELECT identity_uuid FROM attacker WHERE uuid = ?")
                        .bind(attacker.to_string())
                        .fetch_optional(pool)
                        .await?
                        .and_then(|r| r.get("identity_uuid"));
                text.map(|t| {
                    t.parse().map_err(|_| StorageError::Corrupt {
                        column: "attacker.identity_uuid",
                        value: t.clone(),
                    })
                })
                .transpose()
            }
            Database::Postgres(pool) => Ok(sqlx::query(
                "SELECT identity_uuid FROM attacker WHERE uuid = $1",
            )
            .bind(attacker)
            .fetch_optional(pool)
            .await?
            .and_then(|r| r.get("identity_uuid"))),
        }
    }
}
