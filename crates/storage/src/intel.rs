//! `attacker_intel` and `intel_quota`: the intel service's one row per attacker with every
//! provider's last answer, and the per-provider daily request counters (INTEL.md §3–§4,
//! STORAGE.md §4.6–§4.7).
//!
//! A row is written whole: the service merges a lookup into the row it read and hands the
//! result here, which upserts it by `attacker_uuid` (the row's own `uuid` survives every
//! refresh) and stages the announcement built from what was committed, in the same
//! transaction. The quota counter is taken in one statement that refuses to pass the quota,
//! so replicas and restarts share one count without a lock.
//!
//! Both backends go through one column list: values are bound as [`Arg`]s, typed per backend
//! at the last moment, and rows are read through [`Get`], so the two can never disagree on
//! which column holds what.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::outbox::{OutboxMessage, stage_postgres, stage_sqlite};
use crate::time::{from_text, micros, to_text};
use crate::{Database, StorageError};

/// AbuseIPDB's columns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AbuseIpdbIntel {
    /// `abuseConfidenceScore`, 0–100.
    pub score: Option<i32>,
    /// Sorted union of the report categories.
    pub categories: Vec<i64>,
    /// `totalReports`.
    pub total_reports: Option<i32>,
    /// `isTor`.
    pub is_tor: Option<bool>,
}

/// GreyNoise's columns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GreyNoiseIntel {
    /// Lower-cased classification; `unknown` when not seen.
    pub classification: Option<String>,
    /// Actor name.
    pub name: Option<String>,
    /// Tags (empty on the community API).
    pub tags: Vec<String>,
    /// Seen scanning the internet.
    pub noise: Option<bool>,
    /// A common business service.
    pub riot: Option<bool>,
}

/// Feodo Tracker's columns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeodoIntel {
    /// On the blocklist.
    pub listed: Option<bool>,
    /// The entry's `malware`.
    pub malware_family: Option<String>,
    /// The entry's `first_seen`.
    pub first_seen: Option<DateTime<Utc>>,
}

/// ThreatFox's columns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThreatFoxIntel {
    /// IOCs exist for the address.
    pub listed: Option<bool>,
    /// Sorted distinct `threat_type`.
    pub threat_types: Vec<String>,
    /// Sorted distinct `ioc_type`.
    pub ioc_types: Vec<String>,
    /// Sorted distinct family names.
    pub malware_families: Vec<String>,
    /// Highest `confidence_level`, 0–100.
    pub confidence_max: Option<i32>,
}

/// What every provider has besides its verdict columns.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderRecord {
    /// The provider's JSON as text, at most 64 KiB.
    pub raw: String,
    /// When it last answered.
    pub queried_at: Option<DateTime<Utc>>,
    /// When it may be asked again after a quota skip or a 429 pause.
    pub retry_at: Option<DateTime<Utc>>,
}

impl Default for ProviderRecord {
    fn default() -> ProviderRecord {
        ProviderRecord {
            raw: "{}".to_owned(),
            queried_at: None,
            retry_at: None,
        }
    }
}

/// A provider that failed in the last lookup, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderFailure {
    /// `abuseipdb`, `greynoise`, `feodo` or `threatfox`.
    pub provider: String,
    /// What went wrong, never a key or a response body.
    pub error: String,
}

/// Per-provider normalised scores in [0, 1].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IntelScores {
    /// AbuseIPDB.
    pub abuseipdb: Option<f64>,
    /// GreyNoise.
    pub greynoise: Option<f64>,
    /// Feodo Tracker.
    pub feodo: Option<f64>,
    /// ThreatFox.
    pub threatfox: Option<f64>,
}

/// One `attacker_intel` row.
#[derive(Debug, Clone, PartialEq)]
pub struct IntelRow {
    /// Row id, kept across refreshes; published as `intel_id`.
    pub uuid: Uuid,
    /// The attacker (one row each).
    pub attacker_uuid: Uuid,
    /// Its address, canonical.
    pub attacker_ip: String,
    /// AbuseIPDB's verdict.
    pub abuseipdb: AbuseIpdbIntel,
    /// AbuseIPDB's raw answer and times.
    pub abuseipdb_record: ProviderRecord,
    /// GreyNoise's verdict.
    pub greynoise: GreyNoiseIntel,
    /// GreyNoise's raw answer and times.
    pub greynoise_record: ProviderRecord,
    /// Feodo Tracker's verdict.
    pub feodo: FeodoIntel,
    /// Feodo Tracker's raw entry and times.
    pub feodo_record: ProviderRecord,
    /// ThreatFox's verdict.
    pub threatfox: ThreatFoxIntel,
    /// ThreatFox's raw answer and times.
    pub threatfox_record: ProviderRecord,
    /// Normalised scores.
    pub scores: IntelScores,
    /// `malicious`, `suspicious`, `benign` or `unknown`.
    pub aggregate_verdict: Option<String>,
    /// Largest non-null score.
    pub aggregate_score: Option<f64>,
    /// 16 hex; `None` until a provider has answered.
    pub verdict_digest: Option<String>,
    /// Providers that answered in the last lookup.
    pub providers_ok: Vec<String>,
    /// Providers that failed in the last lookup.
    pub providers_failed: Vec<ProviderFailure>,
    /// Providers skipped in the last lookup (quota, pause).
    pub providers_skipped: Vec<String>,
    /// When a provider last answered a full lookup.
    pub cached_at: Option<DateTime<Utc>>,
    /// End of validity.
    pub expires_at: Option<DateTime<Utc>>,
    /// Earliest pending retry.
    pub retry_at: Option<DateTime<Utc>>,
    /// Why the last lookup fell short (`not_public`, …).
    pub last_error: Option<String>,
}

impl IntelRow {
    /// An empty row for an attacker: no provider has answered.
    pub fn new(uuid: Uuid, attacker_uuid: Uuid, attacker_ip: &str) -> IntelRow {
        IntelRow {
            uuid,
            attacker_uuid,
            attacker_ip: attacker_ip.to_owned(),
            abuseipdb: AbuseIpdbIntel::default(),
            abuseipdb_record: ProviderRecord::default(),
            greynoise: GreyNoiseIntel::default(),
            greynoise_record: ProviderRecord::default(),
            feodo: FeodoIntel::default(),
            feodo_record: ProviderRecord::default(),
            threatfox: ThreatFoxIntel::default(),
            threatfox_record: ProviderRecord::default(),
            scores: IntelScores::default(),
            aggregate_verdict: None,
            aggregate_score: None,
            verdict_digest: None,
            providers_ok: Vec::new(),
            providers_failed: Vec::new(),
            providers_skipped: Vec::new(),
            cached_at: None,
            expires_at: None,
            retry_at: None,
            last_error: None,
        }
    }
}

/// An attacker the refresh timer should look up again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueAttacker {
    /// The attacker.
    pub attacker_uuid: Uuid,
    /// Its address.
    pub attacker_ip: String,
}

/// A value bound to a column, typed per backend when the query is built.
enum Arg {
    Text(Option<String>),
    Int(Option<i32>),
    Bool(Option<bool>),
    Real(Option<f64>),
    Json(String),
    Time(Option<DateTime<Utc>>),
    Uuid(Uuid),
}

/// Every column but the key, in binding order; JSON columns are the ones PostgreSQL casts.
const COLUMNS: [(&str, bool); 44] = [
    ("uuid", false),
    ("attacker_uuid", false),
    ("attacker_ip", false),
    ("abuseipdb_score", false),
    ("abuseipdb_categories", true),
    ("abuseipdb_total_reports", false),
    ("abuseipdb_is_tor", false),
    ("abuseipdb_raw", true),
    ("abuseipdb_queried_at", false),
    ("abuseipdb_retry_at", false),
    ("greynoise_classification", false),
    ("greynoise_name", false),
    ("greynoise_tags", true),
    ("greynoise_noise", false),
    ("greynoise_riot", false),
    ("greynoise_raw", true),
    ("greynoise_queried_at", false),
    ("greynoise_retry_at", false),
    ("feodo_listed", false),
    ("feodo_malware_family", false),
    ("feodo_first_seen", false),
    ("feodo_raw", true),
    ("feodo_queried_at", false),
    ("feodo_retry_at", false),
    ("threatfox_listed", false),
    ("threatfox_threat_types", true),
    ("threatfox_ioc_types", true),
    ("threatfox_malware_families", true),
    ("threatfox_confidence_max", false),
    ("threatfox_raw", true),
    ("threatfox_queried_at", false),
    ("threatfox_retry_at", false),
    ("scores", true),
    ("aggregate_verdict", false),
    ("aggregate_score", false),
    ("verdict_digest", false),
    ("providers_ok", true),
    ("providers_failed", true),
    ("providers_skipped", true),
    ("cached_at", false),
    ("expires_at", false),
    ("retry_at", false),
    ("last_error", false),
    ("schema_version", false),
];

fn list<T: Clone + Into<Value>>(items: &[T]) -> String {
    Value::from(items.to_vec()).to_string()
}

fn scores_json(s: &IntelScores) -> String {
    json!({
        "abuseipdb": s.abuseipdb,
        "greynoise": s.greynoise,
        "feodo": s.feodo,
        "threatfox": s.threatfox,
    })
    .to_string()
}

fn failures_json(failures: &[ProviderFailure]) -> String {
    Value::Array(
        failures
            .iter()
            .map(|f| json!({"provider": f.provider, "error": f.error}))
            .collect(),
    )
    .to_string()
}

/// The row's values in the order of [`COLUMNS`].
fn args(r: &IntelRow) -> Vec<Arg> {
    use Arg::{Bool, Int, Json, Real, Text, Time};
    let (a, g, f, t) = (&r.abuseipdb, &r.greynoise, &r.feodo, &r.threatfox);
    let mut out = vec![
        Arg::Uuid(r.uuid),
        Arg::Uuid(r.attacker_uuid),
        Text(Some(r.attacker_ip.clone())),
        Int(a.score),
        Json(list(&a.categories)),
        Int(a.total_reports),
        Bool(a.is_tor),
    ];
    let record = |out: &mut Vec<Arg>, p: &ProviderRecord| {
        out.extend([Json(p.raw.clone()), Time(p.queried_at), Time(p.retry_at)]);
    };
    record(&mut out, &r.abuseipdb_record);
    out.extend([
        Text(g.classification.clone()),
        Text(g.name.clone()),
        Json(list(&g.tags)),
        Bool(g.noise),
        Bool(g.riot),
    ]);
    record(&mut out, &r.greynoise_record);
    out.extend([
        Bool(f.listed),
        Text(f.malware_family.clone()),
        Time(f.first_seen),
    ]);
    record(&mut out, &r.feodo_record);
    out.extend([
        Bool(t.listed),
        Json(list(&t.threat_types)),
        Json(list(&t.ioc_types)),
        Json(list(&t.malware_families)),
        Int(t.confidence_max),
    ]);
    record(&mut out, &r.threatfox_record);
    out.extend([
        Json(scores_json(&r.scores)),
        Text(r.aggregate_verdict.clone()),
        Real(r.aggregate_score),
        Text(r.verdict_digest.clone()),
        Json(list(&r.providers_ok)),
        Json(failures_json(&r.providers_failed)),
        Json(list(&r.providers_skipped)),
        Time(r.cached_at),
        Time(r.expires_at),
        Time(r.retry_at),
        Text(r.last_error.clone()),
        Int(Some(1)),
    ]);
    out
}

fn written() -> impl Iterator<Item = (&'static str, bool)> {
    COLUMNS.into_iter()
}

/// The select list; PostgreSQL hands JSONB back as text so both backends parse one form.
fn select_list(pg: bool) -> String {
    written()
        .map(|(c, is_json)| {
            if pg && is_json {
                format!("{c}::text AS {c}")
            } else {
                c.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `INSERT … ON CONFLICT (attacker_uuid) DO UPDATE … RETURNING …` for one backend. The
/// update leaves `uuid` alone, so a row keeps its id whoever refreshed it.
fn upsert_sql(pg: bool) -> String {
    let names: Vec<&str> = written().map(|(c, _)| c).collect();
    let values: Vec<String> = written()
        .enumerate()
        .map(|(i, (_, is_json))| match (pg, is_json) {
            (true, true) => format!("${}::jsonb", i + 1),
            (true, false) => format!("${}", i + 1),
            (false, _) => format!("?{}", i + 1),
        })
        .collect();
    let updates: Vec<String> = names
        .iter()
        .filter(|c| !matches!(**c, "uuid" | "attacker_uuid"))
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO attacker_intel ({}) VALUES ({}) ON CONFLICT (attacker_uuid) DO UPDATE SET {} \
         RETURNING {}",
        names.join(", "),
        values.join(", "),
        updates.join(", "),
        select_list(pg)
    )
}

/// Reading one column, whichever backend the row came from.
trait Get {
    fn text(&self, c: &'static str) -> Result<Option<String>, StorageError>;
    fn int(&self, c: &'static str) -> Result<Option<i32>, StorageError>;
    fn boolean(&self, c: &'static str) -> Result<Option<bool>, StorageError>;
    fn real(&self, c: &'static str) -> Result<Option<f64>, StorageError>;
    fn time(&self, c: &'static str) -> Result<Option<DateTime<Utc>>, StorageError>;
    fn uuid(&self, c: &'static str) -> Result<Uuid, StorageError>;
}

impl Get for SqliteRow {
    fn text(&self, c: &'static str) -> Result<Option<String>, StorageError> {
        Ok(self.try_get(c)?)
    }
    fn int(&self, c: &'static str) -> Result<Option<i32>, StorageError> {
        Ok(self.try_get(c)?)
    }
    fn boolean(&self, c: &'static str) -> Result<Option<bool>, StorageError> {
        Ok(self.try_get(c)?)
    }
    fn real(&self, c: &'static str) -> Result<Option<f64>, StorageError> {
        Ok(self.try_get(c)?)
    }
    fn time(&self, c: &'static str) -> Result<Option<DateTime<Utc>>, StorageError> {
        let text: Option<String> = self.try_get(c)?;
        text.map(|t| from_text(c, &t)).transpose()
    }
    fn uuid(&self, c: &'static str) -> Result<Uuid, StorageError> {
        let text: String = self.try_get(c)?;
        text.parse().map_err(|_| corrupt(c, &text))
    }
}

impl Get for PgRow {
    fn text(&self, c: &'static str) -> Result<Option<String>, StorageError> {
        Ok(self.try_get(c)?)
    }
    fn int(&self, c: &'static str) -> Result<Option<i32>, StorageError> {
        Ok(self.try_get(c)?)
    }
    fn boolean(&self, c: &'static str) -> Result<Option<bool>, StorageError> {
        Ok(self.try_get(c)?)
    }
    fn real(&self, c: &'static str) -> Result<Option<f64>, StorageError> {
        Ok(self.try_get(c)?)
    }
    fn time(&self, c: &'static str) -> Result<Option<DateTime<Utc>>, StorageError> {
        Ok(self.try_get(c)?)
    }
    fn uuid(&self, c: &'static str) -> Result<Uuid, StorageError> {
        Ok(self.try_get(c)?)
    }
}

fn corrupt(column: &'static str, value: &str) -> StorageError {
    StorageError::Corrupt {
        column,
        value: value.to_owned(),
    }
}

fn json_of(r: &impl Get, c: &'static str) -> Result<Value, StorageError> {
    let text = r.text(c)?.unwrap_or_default();
    serde_json::from_str(&text).map_err(|_| corrupt(c, &text))
}

fn items(r: &impl Get, c: &'static str) -> Result<Vec<Value>, StorageError> {
    match json_of(r, c)? {
        Value::Array(items) => Ok(items),
        other => Err(corrupt(c, &other.to_string())),
    }
}

fn ints(r: &impl Get, c: &'static str) -> Result<Vec<i64>, StorageError> {
    Ok(items(r, c)?.iter().filter_map(Value::as_i64).collect())
}

fn strings(r: &impl Get, c: &'static str) -> Result<Vec<String>, StorageError> {
    Ok(items(r, c)?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect())
}

fn record(r: &impl Get, p: &'static [&'static str; 3]) -> Result<ProviderRecord, StorageError> {
    // Re-serialised, so both backends hand back one compact form: JSONB keeps its own.
    Ok(ProviderRecord {
        raw: json_of(r, p[0])?.to_string(),
        queried_at: r.time(p[1])?,
        retry_at: r.time(p[2])?,
    })
}

fn read_scores(r: &impl Get) -> Result<IntelScores, StorageError> {
    let v = json_of(r, "scores")?;
    let get = |k: &str| v.get(k).and_then(Value::as_f64);
    Ok(IntelScores {
        abuseipdb: get("abuseipdb"),
        greynoise: get("greynoise"),
        feodo: get("feodo"),
        threatfox: get("threatfox"),
    })
}

fn read_failures(r: &impl Get) -> Result<Vec<ProviderFailure>, StorageError> {
    let v = items(r, "providers_failed")?;
    Ok(v.iter()
        .map(|f| ProviderFailure {
            provider: f["provider"].as_str().unwrap_or_default().to_owned(),
            error: f["error"].as_str().unwrap_or_default().to_owned(),
        })
        .collect())
}

fn read_row(r: &impl Get) -> Result<IntelRow, StorageError> {
    Ok(IntelRow {
        uuid: r.uuid("uuid")?,
        attacker_uuid: r.uuid("attacker_uuid")?,
        attacker_ip: r.text("attacker_ip")?.unwrap_or_default(),
        abuseipdb: AbuseIpdbIntel {
            score: r.int("abuseipdb_score")?,
            categories: ints(r, "abuseipdb_categories")?,
            total_reports: r.int("abuseipdb_total_reports")?,
            is_tor: r.boolean("abuseipdb_is_tor")?,
        },
        abuseipdb_record: record(
            r,
            &[
                "abuseipdb_raw",
                "abuseipdb_queried_at",
                "abuseipdb_retry_at",
            ],
        )?,
        greynoise: GreyNoiseIntel {
            classification: r.text("greynoise_classification")?,
            name: r.text("greynoise_name")?,
            tags: strings(r, "greynoise_tags")?,
            noise: r.boolean("greynoise_noise")?,
            riot: r.boolean("greynoise_riot")?,
        },
        greynoise_record: record(
            r,
            &[
                "greynoise_raw",
                "greynoise_queried_at",
                "greynoise_retry_at",
            ],
        )?,
        feodo: FeodoIntel {
            listed: r.boolean("feodo_listed")?,
            malware_family: r.text("feodo_malware_family")?,
            first_seen: r.time("feodo_first_seen")?,
        },
        feodo_record: record(r, &["feodo_raw", "feodo_queried_at", "feodo_retry_at"])?,
        threatfox: ThreatFoxIntel {
            listed: r.boolean("threatfox_listed")?,
            threat_types: strings(r, "threatfox_threat_types")?,
            ioc_types: strings(r, "threatfox_ioc_types")?,
            malware_families: strings(r, "threatfox_malware_families")?,
            confidence_max: r.int("threatfox_confidence_max")?,
        },
        threatfox_record: record(
            r,
            &[
                "threatfox_raw",
                "threatfox_queried_at",
                "threatfox_retry_at",
            ],
        )?,
        scores: read_scores(r)?,
        aggregate_verdict: r.text("aggregate_verdict")?,
        aggregate_score: r.real("aggregate_score")?,
        verdict_digest: r.text("verdict_digest")?,
        providers_ok: strings(r, "providers_ok")?,
        providers_failed: read_failures(r)?,
        providers_skipped: strings(r, "providers_skipped")?,
        cached_at: r.time("cached_at")?,
        expires_at: r.time("expires_at")?,
        retry_at: r.time("retry_at")?,
        last_error: r.text("last_error")?,
    })
}

fn bind_sqlite<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    args: Vec<Arg>,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    for a in args {
        q = match a {
            Arg::Text(v) => q.bind(v),
            Arg::Int(v) => q.bind(v),
            Arg::Bool(v) => q.bind(v),
            Arg::Real(v) => q.bind(v),
            Arg::Json(v) => q.bind(v),
            Arg::Time(v) => q.bind(v.map(to_text)),
            Arg::Uuid(v) => q.bind(v.to_string()),
        };
    }
    q
}

fn bind_pg<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    args: Vec<Arg>,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    for a in args {
        q = match a {
            Arg::Text(v) => q.bind(v),
            Arg::Int(v) => q.bind(v),
            Arg::Bool(v) => q.bind(v),
            Arg::Real(v) => q.bind(v),
            Arg::Json(v) => q.bind(v),
            Arg::Time(v) => q.bind(v.map(micros)),
            Arg::Uuid(v) => q.bind(v),
        };
    }
    q
}

fn check(row: &IntelRow) -> Result<(), StorageError> {
    const LIMIT: usize = 64 * 1024;
    let records = [
        &row.abuseipdb_record,
        &row.greynoise_record,
        &row.feodo_record,
        &row.threatfox_record,
    ];
    if let Some(big) = records.iter().find(|r| r.raw.len() > LIMIT) {
        return Err(StorageError::Constraint(format!(
            "a raw provider answer of {} bytes exceeds 64 KiB",
            big.raw.len()
        )));
    }
    if records
        .iter()
        .any(|r| serde_json::from_str::<Value>(&r.raw).is_err())
    {
        return Err(StorageError::Constraint(
            "a raw provider answer is not JSON".to_owned(),
        ));
    }
    Ok(())
}

impl Database {
    /// The row of one attacker, if intel ever wrote one.
    pub async fn attacker_intel(
        &self,
        attacker_uuid: Uuid,
    ) -> Result<Option<IntelRow>, StorageError> {
        match self {
            Database::Sqlite(pool) => sqlx::query(&format!(
                "SELECT {} FROM attacker_intel WHERE attacker_uuid = ?",
                select_list(false)
            ))
            .bind(attacker_uuid.to_string())
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(read_row)
            .transpose(),
            Database::Postgres(pool) => sqlx::query(&format!(
                "SELECT {} FROM attacker_intel WHERE attacker_uuid = $1",
                select_list(true)
            ))
            .bind(attacker_uuid)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(read_row)
            .transpose(),
        }
    }

    /// Upsert `row` by its attacker in one write transaction and stage `announce(&stored)`
    /// under `service` when it returns a message. `stored` is the row as committed: its
    /// `uuid` is the one the first writer chose, whoever writes later.
    pub async fn save_intel(
        &self,
        service: &str,
        row: &IntelRow,
        announce: impl FnOnce(&IntelRow) -> Option<OutboxMessage> + Send,
    ) -> Result<IntelRow, StorageError> {
        check(row)?;
        match self {
            Database::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let sql = upsert_sql(false);
                let stored = bind_sqlite(sqlx::query(&sql), args(row))
                    .fetch_one(&mut *tx)
                    .await?;
                let stored = read_row(&stored)?;
                if let Some(m) = announce(&stored) {
                    stage_sqlite(&mut tx, service, &[m], Utc::now()).await?;
                }
                tx.commit().await?;
                Ok(stored)
            }
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let sql = upsert_sql(true);
                let stored = bind_pg(sqlx::query(&sql), args(row))
                    .fetch_one(&mut *tx)
                    .await?;
                let stored = read_row(&stored)?;
                if let Some(m) = announce(&stored) {
                    stage_postgres(&mut tx, service, &[m], Utc::now()).await?;
                }
                tx.commit().await?;
                Ok(stored)
            }
        }
    }

    /// Count one request to `provider` on quota day `day`, unless `quota` requests were
    /// counted already: `true` when the request may go out. One statement, so concurrent
    /// callers (replicas) can never pass the quota together; a quota of 0 or less refuses
    /// without writing.
    pub async fn take_intel_quota(
        &self,
        provider: &str,
        day: NaiveDate,
        quota: i64,
    ) -> Result<bool, StorageError> {
        if quota <= 0 {
            return Ok(false);
        }
        let sql = |p: [&str; 3]| {
            format!(
                "INSERT INTO intel_quota (provider, day_utc, used) VALUES ({}, {}, 1) \
                 ON CONFLICT (provider, day_utc) DO UPDATE SET used = intel_quota.used + 1 \
                 WHERE intel_quota.used < {} RETURNING used",
                p[0], p[1], p[2]
            )
        };
        let quota = i32::try_from(quota).unwrap_or(i32::MAX);
        let taken = match self {
            Database::Sqlite(pool) => sqlx::query(&sql(["?1", "?2", "?3"]))
                .bind(provider)
                .bind(day)
                .bind(quota)
                .fetch_optional(pool)
                .await?
                .is_some(),
            Database::Postgres(pool) => sqlx::query(&sql(["$1", "$2", "$3"]))
                .bind(provider)
                .bind(day)
                .bind(quota)
                .fetch_optional(pool)
                .await?
                .is_some(),
        };
        Ok(taken)
    }

    /// Requests counted for `provider` on quota day `day`.
    pub async fn intel_quota_used(
        &self,
        provider: &str,
        day: NaiveDate,
    ) -> Result<i64, StorageError> {
        let used: Option<i32> = match self {
            Database::Sqlite(pool) => {
                sqlx::query_scalar(
                    "SELECT used FROM intel_quota WHERE provider = ? AND day_utc = ?",
                )
                .bind(provider)
                .bind(day)
                .fetch_optional(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_scalar(
                    "SELECT used FROM intel_quota WHERE provider = $1 AND day_utc = $2",
                )
                .bind(provider)
                .bind(day)
                .fetch_optional(pool)
                .await?
            }
        };
        Ok(i64::from(used.unwrap_or(0)))
    }

    /// Attackers seen at or after `seen_since` whose intel row is missing or expired at
    /// `now`, most recently seen first, at most `limit`. Rows that never got an expiry
    /// (`not_public`, or no provider answered yet) are left to their `retry_at`.
    pub async fn intel_stale(
        &self,
        now: DateTime<Utc>,
        seen_since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DueAttacker>, StorageError> {
        let sql = |p: [&str; 3]| {
            format!(
                "SELECT a.uuid AS attacker_uuid, a.ip AS attacker_ip FROM attacker a \
                 LEFT JOIN attacker_intel i ON i.attacker_uuid = a.uuid \
                 WHERE a.ip IS NOT NULL AND a.last_seen >= {} \
                 AND (i.uuid IS NULL OR (i.expires_at IS NOT NULL AND i.expires_at <= {})) \
                 ORDER BY a.last_seen DESC LIMIT {}",
                p[0], p[1], p[2]
            )
        };
        self.due(
            sql(["?1", "?2", "?3"]),
            sql(["$1", "$2", "$3"]),
            &[seen_since, now],
            limit,
        )
        .await
    }

    /// Rows whose `retry_at` has passed at `now`, earliest first, at most `limit`.
    pub async fn intel_retries_due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DueAttacker>, StorageError> {
        let sql = |p: [&str; 2]| {
            format!(
                "SELECT attacker_uuid, attacker_ip FROM attacker_intel \
                 WHERE retry_at IS NOT NULL AND retry_at <= {} ORDER BY retry_at LIMIT {}",
                p[0], p[1]
            )
        };
        self.due(sql(["?1", "?2"]), sql(["$1", "$2"]), &[now], limit)
            .await
    }

    async fn due(
        &self,
        sqlite: String,
        pg: String,
        times: &[DateTime<Utc>],
        limit: i64,
    ) -> Result<Vec<DueAttacker>, StorageError> {
        match self {
            Database::Sqlite(pool) => {
                let mut q = sqlx::query(&sqlite);
                for t in times {
                    q = q.bind(to_text(*t));
                }
                let rows = q.bind(limit).fetch_all(pool).await?;
                rows.iter()
                    .map(|r| {
                        Ok(DueAttacker {
                            attacker_uuid: Get::uuid(r, "attacker_uuid")?,
                            attacker_ip: r.try_get("attacker_ip")?,
                        })
                    })
                    .collect()
            }
            Database::Postgres(pool) => {
                let mut q = sqlx::query(&pg);
                for t in times {
                    q = q.bind(micros(*t));
                }
                let rows = q.bind(limit).fetch_all(pool).await?;
                rows.iter()
                    .map(|r| {
                        Ok(DueAttacker {
                            attacker_uuid: r.try_get("attacker_uuid")?,
                            attacker_ip: r.try_get("attacker_ip")?,
                        })
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bound_value_has_its_column() {
        let row = IntelRow::new(Uuid::nil(), Uuid::nil(), "203.0.113.7");
        assert_eq!(args(&row).len(), written().count());
        let sql = upsert_sql(true);
        assert!(sql.contains("$5::jsonb"), "{sql}");
        assert!(!sql.contains("uuid = excluded.uuid"), "{sql}");
    }

    #[test]
    fn oversized_or_invalid_raw_answers_are_refused() {
        let mut row = IntelRow::new(Uuid::nil(), Uuid::nil(), "203.0.113.7");
        assert!(check(&row).is_ok());
        row.feodo_record.raw = format!("\"{}\"", "x".repeat(64 * 1024));
        assert!(matches!(check(&row), Err(StorageError::Constraint(_))));
        row.feodo_record.raw = "{".to_owned();
        assert!(matches!(check(&row), Err(StorageError::Constraint(_))));
    }
}
