//! The outbox (EVENTS.md §2.4): messages staged in the same transaction as the rows they
//! announce, published after the commit, deleted once the server acknowledged them. A
//! service reads and deletes only its own rows, so services sharing one database never
//! publish or wait on each other's messages.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::time::{from_text, to_text};
use crate::{Database, StorageError};

/// A message to publish after the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// Subject.
    pub subject: String,
    /// `Nats-Msg-Id`, so a republish after a crash is dropped by the server.
    pub msg_id: String,
    /// Other headers.
    pub headers: BTreeMap<String, String>,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// A staged message read back for publishing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMessage {
    /// Row id; publish order within the service.
    pub id: i64,
    /// The message.
    pub message: OutboxMessage,
    /// Failed publish attempts so far.
    pub attempts: i32,
    /// When it was staged.
    pub created_at: DateTime<Utc>,
}

pub(crate) async fn stage_sqlite(
    tx: &mut sqlx::SqliteConnection,
    service: &str,
    messages: &[OutboxMessage],
    now: DateTime<Utc>,
) -> Result<(), StorageError> {
    for chunk in messages.chunks(500) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO bus_outbox (service, subject, msg_id, headers, body, created_at) ",
        );
        q.push_values(chunk, |mut row, m| {
            row.push_bind(service.to_owned())
                .push_bind(m.subject.clone())
                .push_bind(m.msg_id.clone())
                .push_bind(headers_json(&m.headers))
                .push_bind(m.body.clone())
                .push_bind(to_text(now));
        });
        q.build().execute(&mut *tx).await?;
    }
    Ok(())
}

pub(crate) async fn stage_postgres(
    tx: &mut sqlx::PgConnection,
    service: &str,
    messages: &[OutboxMessage],
    now: DateTime<Utc>,
) -> Result<(), StorageError> {
    for chunk in messages.chunks(500) {
        let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(
            "INSERT INTO bus_outbox (service, subject, msg_id, headers, body, created_at) ",
        );
        q.push_values(chunk, |mut row, m| {
            row.push_bind(service.to_owned())
                .push_bind(m.subject.clone())
                .push_bind(m.msg_id.clone())
                .push_bind(sqlx::types::Json(m.headers.clone()))
                .push_bind(m.body.clone())
                .push_bind(now);
        });
        q.build().execute(&mut *tx).await?;
    }
    Ok(())
}

fn headers_json(headers: &BTreeMap<String, String>) -> String {
    serde_json::to_string(headers).expect("string maps serialise")
}

fn headers_from(text: &str) -> Result<BTreeMap<String, String>, StorageError> {
    serde_json::from_str(text).map_err(|_| StorageError::Corrupt {
        column: "bus_outbox.headers",
        value: text.to_owned(),
    })
}

impl Database {
    /// Up to `limit` staged messages of `service`, oldest first.
    pub async fn pending(
        &self,
        service: &str,
        limit: i64,
    ) -> Result<Vec<PendingMessage>, StorageError> {
        let rows = match self {
            Database::Sqlite(pool) => {
                sqlx::query(
                    "SELECT id, subject, msg_id, headers, body, attempts, created_at FROM bus_outbox
                     WHERE service = ? ORDER BY id LIMIT ?",
                )
                .bind(service)
                .bind(limit)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(|r| {
                    Ok(PendingMessage {
                        id: r.get("id"),
                        message: OutboxMessage {
                            subject: r.get("subject"),
                            msg_id: r.get("msg_id"),
                            headers: headers_from(r.get("headers"))?,
                            body: r.get("body"),
                        },
                        attempts: r.get("attempts"),
                        created_at: from_text("bus_outbox.created_at", r.get("created_at"))?,
                    })
                })
                .collect::<Result<Vec<_>, StorageError>>()?
            }
            Database::Postgres(pool) => sqlx::query(
                "SELECT id, subject, msg_id, headers::text AS headers, body, attempts, created_at FROM bus_outbox
                 WHERE service = $1 ORDER BY id LIMIT $2",
            )
            .bind(service)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|r| {
                Ok(PendingMessage {
                    id: r.get("id"),
                    message: OutboxMessage {
                        subject: r.get("subject"),
                        msg_id: r.get("msg_id"),
                        headers: headers_from(r.get("headers"))?,
                        body: r.get("body"),
                    },
                    attempts: r.get("attempts"),
                    created_at: r.get("created_at"),
                })
            })
            .collect::<Result<Vec<_>, StorageError>>()?,
        };
        Ok(rows)
    }

    /// Remove messages the server acknowledged.
    pub async fn delete_published(&self, service: &str, ids: &[i64]) -> Result<(), StorageError> {
        // One statement per chunk: a row at a time would make the outbox the bottleneck.
        for chunk in ids.chunks(500) {
            let list = chunk
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            match self {
                Database::Sqlite(pool) => {
                    sqlx::query(&format!(
                        "DELETE FROM bus_outbox WHERE service = ? AND id IN ({list})"
                    ))
                    .bind(service)
                    .execute(pool)
                    .await?;
                }
                Database::Postgres(pool) => {
                    sqlx::query(&format!(
                        "DELETE FROM bus_outbox WHERE service = $1 AND id IN ({list})"
                    ))
                    .bind(service)
                    .execute(pool)
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// Count a failed publish of one message.
    pub async fn record_publish_failure(&self, id: i64, error: &str) -> Result<(), StorageError> {
        match self {
            Database::Sqlite(pool) => {
                sqlx::query(
                    "UPDATE bus_outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                )
                .bind(error)
                .bind(id)
                .execute(pool)
                .await?;
            }
            Database::Postgres(pool) => {
                sqlx::query(
                    "UPDATE bus_outbox SET attempts = attempts + 1, last_error = $1 WHERE id = $2",
                )
                .bind(error)
                .bind(id)
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    /// Staged messages of `service` not yet published.
    pub async fn pending_count(&self, service: &str) -> Result<i64, StorageError> {
        let n = match self {
            Database::Sqlite(pool) => {
                sqlx::query("SELECT COUNT(*) AS n FROM bus_outbox WHERE service = ?")
                    .bind(service)
                    .fetch_one(pool)
                    .await?
                    .get("n")
            }
            Database::Postgres(pool) => {
                sqlx::query("SELECT COUNT(*) AS n FROM bus_outbox WHERE service = $1")
                    .bind(service)
                    .fetch_one(pool)
                    .await?
                    .get("n")
            }
        };
        Ok(n)
    }

    /// How many of `service`'s staged messages wait, and when the oldest was staged (it
    /// drives `/readyz`: degraded while that is over a minute ago, EVENTS.md §2.4).
    pub async fn outbox_backlog(
        &self,
        service: &str,
    ) -> Result<(i64, Option<DateTime<Utc>>), StorageError> {
        const SQL: &str =
            "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM bus_outbox WHERE service = ";
        match self {
            Database::Sqlite(pool) => {
                let row = sqlx::query(&format!("{SQL}?"))
                    .bind(service)
                    .fetch_one(pool)
                    .await?;
                let oldest: Option<String> = row.get("oldest");
                let oldest = oldest
                    .map(|t| from_text("bus_outbox.created_at", &t))
                    .transpose()?;
                Ok((row.get("n"), oldest))
            }
            Database::Postgres(pool) => {
                let row = sqlx::query(&format!("{SQL}$1"))
                    .bind(service)
                    .fetch_one(pool)
                    .await?;
                Ok((row.get("n"), row.get("oldest")))
            }
        }
    }
}
