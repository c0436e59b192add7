//! The tag, rule and canary store: one API over SQLite (the embedded default, a file under the data
//! directory) and PostgreSQL (a swarm), with the same migrations and the same conformance
//! suite on both (STORAGE.md).
//!
//! Writes are batched transactions that also stage the messages to publish after the commit
//! (the outbox, EVENTS.md §2.4), so a crash between commit and publish loses nothing. Errors
//! say whether they are transient (database down, busy, a pool timeout — retry later, never
//! terminate the message) or permanent (a row the schema refuses — a poison message).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::error::ErrorKind;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

mod api;
mod canary;
mod identity;
mod intel;
mod outbox;
mod probe_relay;
mod rules;
mod tags;
mod time;

pub use api::{TagCursor, TagFilter, TagScope, TechniqueCount, TokenFilter};
pub use canary::{CanaryTokenRow, CanaryTriggerRow, HitRecord, NewCanaryToken, NewCanaryTrigger};
pub use identity::{IdentityChange, IdentityRow};
pub use intel::{
    AbuseIpdbIntel, DueAttacker, FeodoIntel, GreyNoiseIntel, IntelRow, IntelScores,
    ProviderFailure, ProviderRecord, ThreatFoxIntel,
};
pub use outbox::{OutboxMessage, PendingMessage};
pub use probe_relay::{
    NewProbeClaim, PROBE_TERMINAL, ProbeClaim, ProbeFinish, ProbeRelayRow, ProbeRetry,
};
pub use rules::{NewRule, StoredRule, StoredRuleState};
pub use tags::{AttackerSighting, Batch, Scope, StoredTag, TechniqueRollup, WriteOutcome};
pub use time::micros;

/// A connected, migrated store.
#[derive(Debug, Clone)]
pub enum Database {
    /// The embedded default.
    Sqlite(SqlitePool),
    /// A shared server.
    Postgres(PgPool),
}

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database URL is not one we understand.
    #[error("unsupported database URL {0:?}: expected sqlite://PATH or postgres://…")]
    Url(String),
    /// Applying migrations failed (including a database newer than this binary).
    #[error("migrating the database failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("{0}")]
    Query(#[source] sqlx::Error),
    /// The schema refused a row: a CHECK, foreign key, unique or not-null constraint (or a
    /// value outside a column's range). Permanent: the same row is refused on every retry.
    #[error("the schema refused the row: {0}")]
    Constraint(String),
    /// A stored value could not be read back.
    #[error("stored {column} is unreadable: {value:?}")]
    Corrupt {
        /// The column.
        column: &'static str,
        /// What it held.
        value: String,
    },
}

impl From<sqlx::Error> for StorageError {
    /// Constraint failures get their own variant so callers can tell "the row is wrong" from
    /// "the query failed" without knowing either backend's error codes.
    fn from(e: sqlx::Error) -> StorageError {
        if let sqlx::Error::Database(db) = &e
            && matches!(
                db.kind(),
                ErrorKind::CheckViolation
                    | ErrorKind::ForeignKeyViolation
                    | ErrorKind::UniqueViolation
                    | ErrorKind::NotNullViolation
            )
        {
            return StorageError::Constraint(db.message().to_owned());
        }
        StorageError::Query(e)
    }
}

impl StorageError {
    /// Whether retrying later can succeed: the database is down, busy, locked or slow, as
    /// opposed to a row it will never accept.
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::Query(e) => is_transient(e),
            StorageError::Migrate(sqlx::migrate::MigrateError::Execute(e)) => is_transient(e),
            _ => false,
        }
    }
}

fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLITE_BUSY and SQLITE_LOCKED, with their extended codes (primary & 0xff).
                return code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6));
            }
            // PostgreSQL SQLSTATE: connection exceptions, out of resources, operator
            // intervention (shutdown, crash recovery), serialization failure, deadlock.
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57")
                || code == "40001"
                || code == "40P01"
        }
        _ => false,
    }
}

/// Connection settings beyond the URL.
#[derive(Debug, Clone)]
pub struct Options {
    /// Largest number of pooled connections.
    pub max_connections: u32,
    /// How long to wait for a connection before the call fails (transiently).
    pub acquire_timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

impl Database {
    /// Connect to `url` (`sqlite://PATH`, created if missing, or `postgres://…`) and apply
    /// pending migrations.
    pub async fn connect(url: &str, options: &Options) -> Result<Database, StorageError> {
        let db = if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            // sqlx locks nothing on SQLite, and services sharing one file (`decnet up`, or
            // separate processes) start together: a lock file beside the database lets one
            // at a time switch it to WAL and migrate, across processes and within one.
            if let Some(dir) = Path::new(path)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StorageError::Query(sqlx::Error::Io(e)))?;
            }
            let lock = migration_lock(Path::new(path)).await?;
            let opened = match sqlite_pool(Path::new(path), options).await {
                Ok(pool) => Database::Sqlite(pool),
                Err(e) => {
                    drop(lock);
                    return Err(e);
                }
            };
            let migrated = opened.migrate().await;
            drop(lock);
            migrated?;
            return Ok(opened);
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let connect = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connect)
                .await?;
            Database::Postgres(pool)
        } else {
            return Err(StorageError::Url(url.to_owned()));
        };
        db.migrate().await?;
        Ok(db)
    }

    /// Apply pending migrations (PostgreSQL: sqlx takes an advisory lock, so several processes
    /// may do so at once; SQLite: [`Database::connect`] holds a lock file around it); a
    /// database that holds a migration this binary does not know is an error naming its
    /// version.
    pub async fn migrate(&self) -> Result<(), StorageError> {
        match self {
            Database::Sqlite(pool) => sqlx::migrate!("migrations/sqlite").run(pool).await?,
            Database::Postgres(pool) => sqlx::migrate!("migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "sqlite",
            Database::Postgres(_) => "postgres",
        }
    }

    /// Close every pooled connection.
    pub async fn close(&self) {
        match self {
            Database::Sqlite(pool) => pool.close().await,
            Database::Postgres(pool) => pool.close().await,
        }
    }
}

/// An exclusive lock on `<database>.migrate-lock`, held until the file is dropped.
async fn migration_lock(path: &Path) -> Result<std::fs::File, StorageError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".migrate-lock");
    let lock_path = std::path::PathBuf::from(name);
    let io = |e: std::io::Error| StorageError::Query(sqlx::Error::Io(e));
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(|e| io(std::io::Error::other(e)))?
    .map_err(io)
}

async fn sqlite_pool(path: &Path, options: &Options) -> Result<SqlitePool, StorageError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::Query(sqlx::Error::Io(e)))?;
    }
    // STORAGE.md §2: WAL, a 5 s busy timeout and foreign keys on every connection.
    let connect = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true);
    Ok(SqlitePoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(options.acquire_timeout)
        .connect_with(connect)
        .await?)
}
