//! `ttp_tag` and `attacker`: the tagger's batched write and the rollups the API reads.
//!
//! Tags are insert-only. A batch upserts the attackers its tags anchor on, inserts the tags
//! with `ON CONFLICT (uuid) DO NOTHING RETURNING uuid` — so a redelivered message writes
//! nothing and the returned ids are exactly the new rows — and stages the messages that
//! announce those rows, all in one transaction.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use decnet_ttp::Tag;
use serde_json::Value;
use sqlx::{Postgres, QueryBuilder, Row, Sqlite};
use uuid::Uuid;

use crate::identity::{self, IdentityChange};
use crate::outbox::{OutboxMessage, stage_postgres, stage_sqlite};
use crate::time::{from_text, to_text};
use crate::{Database, StorageError};

/// An attacker seen by the events of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttackerSighting {
    /// The anchor.
    pub uuid: Uuid,
    /// Its canonical address, when the event named one.
    pub ip: Option<String>,
    /// The event's time.
    pub seen_at: DateTime<Utc>,
}

/// What one transaction writes.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// Clusterer decisions, applied first.
    pub identity: &'a [IdentityChange],
    /// Attackers the batch's events saw.
    pub sightings: &'a [AttackerSighting],
    /// Tags to insert.
    pub tags: &'a [&'a Tag],
}

/// What a batch created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Tags this batch inserted (not those already stored), in batch order.
    pub new_tags: Vec<Uuid>,
    /// Attackers this batch gave an address: created with one, or known before only by
    /// uuid (an identity member). They are the ones intel has not been told about.
    pub new_attackers: Vec<Uuid>,
    /// The identity each attacker of the batch (sighted, or named by a tag) belongs to, where
    /// it has one.
    pub identities: HashMap<Uuid, Uuid>,
}

/// A tag as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTag {
    /// Id.
    pub uuid: Uuid,
    /// Kind of the evaluation event.
    pub source_kind: String,
    /// Id of the evaluation event.
    pub source_id: String,
    /// Attacker anchor.
    pub attacker_uuid: Option<Uuid>,
    /// Identity anchor.
    pub identity_uuid: Option<Uuid>,
    /// Sensor session.
    pub session_id: Option<String>,
    /// Decoy.
    pub decky_id: Option<String>,
    /// Tactic.
    pub tactic: String,
    /// Parent technique.
    pub technique_id: String,
    /// Sub-technique.
    pub sub_technique_id: Option<String>,
    /// Confidence.
    pub confidence: f64,
    /// Rule.
    pub rule_id: String,
    /// Rule version.
    pub rule_version: i32,
    /// Evidence object.
    pub evidence: Value,
    /// ATT&CK release.
    pub attack_release: String,
    /// Technique page.
    pub mitre_url: String,
    /// Tagger clock at evaluation.
    pub created_at: DateTime<Utc>,
}

/// Which tags a rollup counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every tag.
    Fleet,
    /// One attacker's.
    Attacker(Uuid),
    /// One identity's.
    Identity(Uuid),
    /// One sensor session's.
    Session(String),
}

/// Tags of one (technique, sub-technique, tactic) within a scope.
#[derive(Debug, Clone, PartialEq)]
pub struct TechniqueRollup {
    /// Parent technique.
    pub technique_id: String,
    /// Sub-technique.
    pub sub_technique_id: Option<String>,
    /// Tactic.
    pub tactic: String,
    /// Number of tags.
    pub tag_count: i64,
    /// Highest confidence.
    pub max_confidence: f64,
    /// Earliest tag.
    pub first_seen: DateTime<Utc>,
    /// Latest tag.
    pub last_seen: DateTime<Utc>,
    /// Distinct rules that produced them, sorted.
    pub rule_ids: Vec<String>,
}

const TAG_COLUMNS: &str = "uuid, source_kind, source_id, attacker_uuid, identity_uuid, session_id, decky_id, \
     tactic, technique_id, sub_technique_id, confidence, rule_id, rule_version, evidence, attack_release, \
     mitre_url, created_at";

fn evidence_text(tag: &Tag) -> String {
    serde_json::to_string(&tag.evidence).expect("evidence serialises")
}

impl Database {
    /// Write one batch in one transaction: upsert `attackers`, insert `tags` (duplicates
    /// ignored; a tag without an identity takes its attacker's), then stage what `announce`
    /// makes of the outcome in `service`'s outbox.
    /// `announce` sees only what this batch created, so replays stage nothing.
    ///
    /// Every table is written with multi-row statements: a statement per row costs a round
    /// trip (PostgreSQL) or a hand-off to the driver's worker thread (SQLite) each, and made
    /// the database the tagger's pace (tagger throughput bench).
    pub async fn write_tags(
        &self,
        service: &str,
        attackers: &[AttackerSighting],
        tags: &[Tag],
        announce: impl FnOnce(&WriteOutcome) -> Vec<OutboxMessage>,
    ) -> Result<WriteOutcome, StorageError> {
        let tags: Vec<&Tag> = tags.iter().collect();
        let batch = Batch {
            identity: &[],
            sightings: attackers,
            tags: &tags,
        };
        self.write_batch(service, &batch, announce).await
    }

    /// [`Database::write_tags`] with the batch's identity bookkeeping first (EVENTS.md §5.4),
    /// so its tags take the identity their attacker has after it.
    pub async fn write_batch(
        &self,
        service: &str,
        batch: &Batch<'_>,
        announce: impl FnOnce(&WriteOutcome) -> Vec<OutboxMessage>,
    ) -> Result<WriteOutcome, StorageError> {
        let now = Utc::now();
        let attackers = merge_sightings(batch.sightings);
        let tags = batch.tags;
        let mut unique: Vec<&Tag> = Vec::with_capacity(tags.len());
        let mut seen = HashSet::new();
        for &tag in tags {
            if seen.insert(tag.uuid) {
                unique.push(tag);
            }
        }
        let mut outcome = WriteOutcome::default();
        match self {
            Database::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                // BEGIN IMMEDIATE: wait for the write lock up front (busy timeout) instead of
                // failing on the upgrade from a read (STORAGE.md §2).
                let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
                identity::apply_sqlite(&mut tx, batch.identity, now).await?;
                let mut existing: HashSet<Uuid> = HashSet::new();
                for chunk in attackers.chunks(ROWS_PER_STATEMENT) {
                    // One read serves both: which attackers already had an address, and the
                    // identity each has after this batch's identity decisions.
                    let mut q = QueryBuilder::<Sqlite>::new(
                        "SELECT uuid, ip IS NOT NULL AS addressed, identity_uuid FROM attacker WHERE uuid IN (",
                    );
                    let mut list = q.separated(", ");
                    for a in chunk {
                        list.push_bind(a.uuid.to_string());
                    }
                    q.push(")");
                    for row in q.build().fetch_all(&mut *tx).await? {
                        let Ok(uuid) = row.get::<String, _>("uuid").parse::<Uuid>() else {
                            continue;
                        };
                        if row.get::<bool, _>("addressed") {
                            existing.insert(uuid);
                        }
                        let identity: Option<String> = row.get("identity_uuid");
                        if let Some(i) = identity.and_then(|i| i.parse().ok()) {
                            outcome.identities.insert(uuid, i);
                        }
                    }
                    let mut q = QueryBuilder::<Sqlite>::new(
                        "INSERT INTO attacker (uuid, ip, first_seen, last_seen) ",
                    );
                    q.push_values(chunk, |mut row, a| {
                        row.push_bind(a.uuid.to_string())
                            .push_bind(a.ip.clone())
                            .push_bind(to_text(a.first))
                            .push_bind(to_text(a.last));
                    });
                    q.push(
                        " ON CONFLICT (uuid) DO UPDATE SET first_seen = min(attacker.first_seen, excluded.first_seen), \
                         last_seen = max(attacker.last_seen, excluded.last_seen), ip = coalesce(attacker.ip, excluded.ip)",
                    );
                    q.build().execute(&mut *tx).await?;
                }
                let members = unresolved(&unique, &attackers);
                for chunk in members.chunks(ROWS_PER_STATEMENT) {
                    let mut q = QueryBuilder::<Sqlite>::new(
                        "SELECT uuid, identity_uuid FROM attacker WHERE identity_uuid IS NOT NULL AND uuid IN (",
                    );
                    let mut list = q.separated(", ");
                    for a in chunk {
                        list.push_bind(a.to_string());
                    }
                    q.push(")");
                    for row in q.build().fetch_all(&mut *tx).await? {
                        let a: String = row.get("uuid");
                        let i: String = row.get("identity_uuid");
                        if let (Ok(a), Ok(i)) = (a.parse(), i.parse()) {
                            outcome.identities.insert(a, i);
                        }
                    }
                }
                let identities = &outcome.identities;
                let mut created: HashSet<Uuid> = HashSet::new();
                for chunk in unique.chunks(ROWS_PER_STATEMENT) {
                    let mut q = QueryBuilder::<Sqlite>::new(format!(
                        "INSERT INTO ttp_tag ({TAG_COLUMNS}) "
                    ));
                    q.push_values(chunk, |mut row, tag| {
                        row.push_bind(tag.uuid.to_string())
                            .push_bind(tag.source_kind.as_str())
                            .push_bind(tag.source_id.to_string())
                            .push_bind(tag.attacker_uuid.map(|u| u.to_string()))
                            .push_bind(identity_of(tag, identities).map(|u| u.to_string()))
                            .push_bind(tag.session_id.as_deref().map(str::to_owned))
                            .push_bind(tag.decky_id.as_deref().map(str::to_owned))
                            .push_bind(tag.tactic.to_string())
                            .push_bind(tag.technique_id.to_string())
                            .push_bind(tag.sub_technique_id.as_deref().map(str::to_owned))
                            .push_bind(tag.confidence)
                            .push_bind(tag.rule_id.to_string())
                            .push_bind(i64::from(tag.rule_version))
                            .push_bind(evidence_text(tag))
                            .push_bind(tag.attack_release.to_string())
                            .push_bind(tag.mitre_url.to_string())
                            .push_bind(to_text(tag.created_at));
                    });
                    q.push(" ON CONFLICT (uuid) DO NOTHING RETURNING uuid");
                    for row in q.build().fetch_all(&mut *tx).await? {
                        let text: String = row.get("uuid");
                        created.extend(text.parse::<Uuid>().ok());
                    }
                }
                fill(&mut outcome, &attackers, &existing, &unique, &created);
                stage_sqlite(&mut tx, service, &announce(&outcome), now).await?;
                tx.commit().await?;
            }
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                identity::apply_postgres(&mut tx, batch.identity, now).await?;
                let mut existing: HashSet<Uuid> = HashSet::new();
                for chunk in attackers.chunks(ROWS_PER_STATEMENT) {
                    let ids: Vec<Uuid> = chunk.iter().map(|a| a.uuid).collect();
                    // One read serves both: which attackers already had an address, and the
                    // identity each has after this batch's identity decisions.
                    for row in sqlx::query(
                        "SELECT uuid, ip IS NOT NULL AS addressed, identity_uuid FROM attacker WHERE uuid = ANY($1)",
                    )
                    .bind(&ids)
                    .fetch_all(&mut *tx)
                    .await?
                    {
                        let uuid: Uuid = row.get("uuid");
                        if row.get::<bool, _>("addressed") {
                            existing.insert(uuid);
                        }
                        if let Some(i) = row.get::<Option<Uuid>, _>("identity_uuid") {
                            outcome.identities.insert(uuid, i);
                        }
                    }
                    let mut q = QueryBuilder::<Postgres>::new(
                        "INSERT INTO attacker (uuid, ip, first_seen, last_seen) ",
                    );
                    q.push_values(chunk, |mut row, a| {
                        row.push_bind(a.uuid)
                            .push_bind(a.ip.clone())
                            .push_bind(crate::time::micros(a.first))
                            .push_bind(crate::time::micros(a.last));
                    });
                    q.push(
                        " ON CONFLICT (uuid) DO UPDATE SET first_seen = least(attacker.first_seen, excluded.first_seen), \
                         last_seen = greatest(attacker.last_seen, excluded.last_seen), ip = coalesce(attacker.ip, excluded.ip)",
                    );
                    q.build().execute(&mut *tx).await?;
                }
                let members = unresolved(&unique, &attackers);
                if !members.is_empty() {
                    for row in sqlx::query(
                        "SELECT uuid, identity_uuid FROM attacker WHERE identity_uuid IS NOT NULL AND uuid = ANY($1)",
                    )
                    .bind(&members)
                    .fetch_all(&mut *tx)
                    .await?
                    {
                        outcome
                            .identities
                            .insert(row.get("uuid"), row.get("identity_uuid"));
                    }
                }
                let identities = &outcome.identities;
                let mut created: HashSet<Uuid> = HashSet::new();
                for chunk in unique.chunks(ROWS_PER_STATEMENT) {
                    let mut q = QueryBuilder::<Postgres>::new(format!(
                        "INSERT INTO ttp_tag ({TAG_COLUMNS}) "
                    ));
                    q.push_values(chunk, |mut row, tag| {
                        row.push_bind(tag.uuid)
                            .push_bind(tag.source_kind.as_str())
                            .push_bind(tag.source_id.to_string())
                            .push_bind(tag.attacker_uuid)
                            .push_bind(identity_of(tag, identities))
                            .push_bind(tag.session_id.as_deref().map(str::to_owned))
                            .push_bind(tag.decky_id.as_deref().map(str::to_owned))
                            .push_bind(tag.tactic.to_string())
                            .push_bind(tag.technique_id.to_string())
                            .push_bind(tag.sub_technique_id.as_deref().map(str::to_owned))
                            .push_bind(tag.confidence)
                            .push_bind(tag.rule_id.to_string())
                            .push_bind(tag.rule_version as i32)
                            .push_bind(sqlx::types::Json(
                                serde_json::to_value(&tag.evidence).expect("evidence serialises"),
                            ))
                            .push_bind(tag.attack_release.to_string())
                            .push_bind(tag.mitre_url.to_string())
                            .push_bind(crate::time::micros(tag.created_at));
                    });
                    q.push(" ON CONFLICT (uuid) DO NOTHING RETURNING uuid");
                    for row in q.build().fetch_all(&mut *tx).await? {
                        created.insert(row.get("uuid"));
                    }
                }
                fill(&mut outcome, &attackers, &existing, &unique, &created);
                stage_postgres(&mut tx, service, &announce(&outcome), now).await?;
                tx.commit().await?;
            }
        }
        Ok(outcome)
    }

    /// Every stored tag, by id.
    pub async fn tags(&self) -> Result<Vec<StoredTag>, StorageError> {
        match self {
            Database::Sqlite(pool) => {
                sqlx::query(&format!("SELECT {TAG_COLUMNS} FROM ttp_tag ORDER BY uuid"))
                    .fetch_all(pool)
                    .await?
                    .iter()
                    .map(sqlite_tag)
                    .collect()
            }
            Database::Postgres(pool) => sqlx::query(&format!(
                "SELECT {} FROM ttp_tag ORDER BY uuid::text",
                TAG_COLUMNS.replace("evidence", "evidence::text AS evidence")
            ))
            .fetch_all(pool)
            .await?
            .iter()
            .map(pg_tag)
            .collect(),
        }
    }

    /// Number of stored tags.
    pub async fn tag_count(&self) -> Result<i64, StorageError> {
        let n = match self {
            Database::Sqlite(pool) => sqlx::query("SELECT COUNT(*) AS n FROM ttp_tag")
                .fetch_one(pool)
                .await?
                .get("n"),
            Database::Postgres(pool) => sqlx::query("SELECT COUNT(*) AS n FROM ttp_tag")
                .fetch_one(pool)
                .await?
                .get("n"),
        };
        Ok(n)
    }

    /// An attacker's address and first and last sighting.
    pub async fn attacker(
        &self,
        uuid: Uuid,
    ) -> Result<Option<(Option<String>, DateTime<Utc>, DateTime<Utc>)>, StorageError> {
        match self {
            Database::Sqlite(pool) => {
                let row =
                    sqlx::query("SELECT ip, first_seen, last_seen FROM attacker WHERE uuid = ?")
                        .bind(uuid.to_string())
                        .fetch_optional(pool)
                        .await?;
                row.map(|r| {
                    Ok((
                        r.get("ip"),
                        from_text("attacker.first_seen", r.get("first_seen"))?,
                        from_text("attacker.last_seen", r.get("last_seen"))?,
                    ))
                })
                .transpose()
            }
            Database::Postgres(pool) => {
                let row =
                    sqlx::query("SELECT ip, first_seen, last_seen FROM attacker WHERE uuid = $1")
                        .bind(uuid)
                        .fetch_optional(pool)
                        .await?;
                Ok(row.map(|r| (r.get("ip"), r.get("first_seen"), r.get("last_seen"))))
            }
        }
    }

    /// Tags per (technique, sub-technique, tactic) within a scope, by technique id with the
    /// parent before its sub-techniques on both backends; served by the
    /// `(anchor, technique_id, created_at)` indexes.
    pub async fn rollup(&self, scope: &Scope) -> Result<Vec<TechniqueRollup>, StorageError> {
        let (filter, value): (&str, Option<String>) = match scope {
            Scope::Fleet => ("", None),
            Scope::Attacker(u) => ("attacker_uuid", Some(u.to_string())),
            Scope::Identity(u) => ("identity_uuid", Some(u.to_string())),
            Scope::Session(s) => ("session_id", Some(s.clone())),
        };
        let select = "SELECT technique_id, sub_technique_id, tactic, COUNT(*) AS n, MAX(confidence) AS c, \
                      MIN(created_at) AS first_seen, MAX(created_at) AS last_seen, rule_id FROM ttp_tag";
        let group = "GROUP BY technique_id, sub_technique_id, tactic, rule_id \
                     ORDER BY technique_id, coalesce(sub_technique_id, ''), tactic, rule_id";
        let mut rows: Vec<(TechniqueRollup, String)> = Vec::new();
        match self {
            Database::Sqlite(pool) => {
                let sql = match value {
                    Some(_) => format!("{select} WHERE {filter} = ? {group}"),
                    None => format!("{select} {group}"),
                };
                let mut q = sqlx::query(&sql);
                if let Some(v) = &value {
                    q = q.bind(v);
                }
                for r in q.fetch_all(pool).await? {
                    rows.push((
                        TechniqueRollup {
                            technique_id: r.get("technique_id"),
                            sub_technique_id: r.get("sub_technique_id"),
                            tactic: r.get("tactic"),
                            tag_count: r.get("n"),
                            max_confidence: r.get("c"),
                            first_seen: from_text("ttp_tag.created_at", r.get("first_seen"))?,
                            last_seen: from_text("ttp_tag.created_at", r.get("last_seen"))?,
                            rule_ids: Vec::new(),
                        },
                        r.get("rule_id"),
                    ));
                }
            }
            Database::Postgres(pool) => {
                let cast = if filter == "session_id" { "" } else { "::uuid" };
                let sql = match value {
                    Some(_) => format!("{select} WHERE {filter} = $1{cast} {group}"),
                    None => format!("{select} {group}"),
                };
                let mut q = sqlx::query(&sql);
                if let Some(v) = &value {
                    q = q.bind(v);
                }
                for r in q.fetch_all(pool).await? {
                    rows.push((
                        TechniqueRollup {
                            technique_id: r.get("technique_id"),
                            sub_technique_id: r.get("sub_technique_id"),
                            tactic: r.get("tactic"),
                            tag_count: r.get("n"),
                            max_confidence: r.get("c"),
                            first_seen: r.get("first_seen"),
                            last_seen: r.get("last_seen"),
                            rule_ids: Vec::new(),
                        },
                        r.get("rule_id"),
                    ));
                }
            }
        }
        Ok(merge_rules(rows))
    }
}

/// Rows per multi-row statement: well under SQLite's 32,766 and PostgreSQL's 65,535 bind
/// parameters with 17 columns.
const ROWS_PER_STATEMENT: usize = 500;

/// An attacker's sightings in one batch.
struct Seen {
    uuid: Uuid,
    ip: Option<String>,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
}

/// One row per attacker: the earliest and latest time, the first address.
fn merge_sightings(attackers: &[AttackerSighting]) -> Vec<Seen> {
    let mut out: Vec<Seen> = Vec::with_capacity(attackers.len());
    let mut at: HashMap<Uuid, usize> = HashMap::new();
    for a in attackers {
        match at.get(&a.uuid) {
            Some(&i) => {
                let m = &mut out[i];
                m.first = m.first.min(a.seen_at);
                m.last = m.last.max(a.seen_at);
                if m.ip.is_none() {
                    m.ip.clone_from(&a.ip);
                }
            }
            None => {
                at.insert(a.uuid, out.len());
                out.push(Seen {
                    uuid: a.uuid,
                    ip: a.ip.clone(),
                    first: a.seen_at,
                    last: a.seen_at,
                });
            }
        }
    }
    out
}

/// Attackers of tags that carry no identity of their own and that the batch's sightings did
/// not already look up (none when every tag's attacker was sighted, as the tagger's are).
fn unresolved(tags: &[&Tag], sighted: &[Seen]) -> Vec<Uuid> {
    let mut seen: HashSet<Uuid> = sighted.iter().map(|a| a.uuid).collect();
    tags.iter()
        .filter(|t| t.identity_uuid.is_none())
        .filter_map(|t| t.attacker_uuid)
        .filter(|a| seen.insert(*a))
        .collect()
}

/// A tag's identity: the event's, else its attacker's (RULES.md §5.1).
fn identity_of(tag: &Tag, identities: &HashMap<Uuid, Uuid>) -> Option<Uuid> {
    tag.identity_uuid
        .or_else(|| tag.attacker_uuid.and_then(|a| identities.get(&a).copied()))
}

/// The outcome in batch order: new attackers are those that had no address before the batch
/// and have one now, new tags those the insert returned.
fn fill(
    outcome: &mut WriteOutcome,
    attackers: &[Seen],
    existing: &HashSet<Uuid>,
    tags: &[&Tag],
    created: &HashSet<Uuid>,
) {
    outcome.new_attackers = attackers
        .iter()
        .filter(|a| a.ip.is_some())
        .map(|a| a.uuid)
        .filter(|u| !existing.contains(u))
        .collect();
    outcome.new_tags = tags
        .iter()
        .map(|t| t.uuid)
        .filter(|u| created.contains(u))
        .collect();
}

/// Fold the per-rule groups of one technique into one rollup.
fn merge_rules(rows: Vec<(TechniqueRollup, String)>) -> Vec<TechniqueRollup> {
    let mut out: Vec<TechniqueRollup> = Vec::new();
    for (row, rule) in rows {
        let same = |r: &TechniqueRollup| {
            r.technique_id == row.technique_id
                && r.sub_technique_id == row.sub_technique_id
                && r.tactic == row.tactic
        };
        match out.last_mut().filter(|r| same(r)) {
            Some(acc) => {
                acc.tag_count += row.tag_count;
                acc.max_confidence = acc.max_confidence.max(row.max_confidence);
                acc.first_seen = acc.first_seen.min(row.first_seen);
                acc.last_seen = acc.last_seen.max(row.last_seen);
                acc.rule_ids.push(rule);
            }
            None => {
                let mut row = row;
                row.rule_ids.push(rule);
                out.push(row);
            }
        }
    }
    out
}

fn uuid_text(column: &'static str, text: Option<String>) -> Result<Option<Uuid>, StorageError> {
    text.map(|t| {
        t.parse().map_err(|_| StorageError::Corrupt {
            column,
            value: t.clone(),
        })
    })
    .transpose()
}

fn json_text(text: &str) -> Result<Value, StorageError> {
    serde_json::from_str(text).map_err(|_| StorageError::Corrupt {
        column: "ttp_tag.evidence",
        value: text.to_owned(),
    })
}

fn sqlite_tag(r: &sqlx::sqlite::SqliteRow) -> Result<StoredTag, StorageError> {
    Ok(StoredTag {
        uuid: uuid_text("ttp_tag.uuid", Some(r.get("uuid")))?.expect("present"),
        source_kind: r.get("source_kind"),
        source_id: r.get("source_id"),
        attacker_uuid: uuid_text("ttp_tag.attacker_uuid", r.get("attacker_uuid"))?,
        identity_uuid: uuid_text("ttp_tag.identity_uuid", r.get("identity_uuid"))?,
        session_id: r.get("session_id"),
        decky_id: r.get("decky_id"),
        tactic: r.get("tactic"),
        technique_id: r.get("technique_id"),
        sub_technique_id: r.get("sub_technique_id"),
        confidence: r.get("confidence"),
        rule_id: r.get("rule_id"),
        rule_version: r.get("rule_version"),
        evidence: json_text(r.get("evidence"))?,
        attack_release: r.get("attack_release"),
        mitre_url: r.get("mitre_url"),
        created_at: from_text("ttp_tag.created_at", r.get("created_at"))?,
    })
}

fn pg_tag(r: &sqlx::postgres::PgRow) -> Result<StoredTag, StorageError> {
    Ok(StoredTag {
        uuid: r.get("uuid"),
        source_kind: r.get("source_kind"),
        source_id: r.get("source_id"),
        attacker_uuid: r.get("attacker_uuid"),
        identity_uuid: r.get("identity_uuid"),
        session_id: r.get("session_id"),
        decky_id: r.get("decky_id"),
        tactic: r.get("tactic"),
        technique_id: r.get("technique_id"),
        sub_technique_id: r.get("sub_technique_id"),
        confidence: r.get("confidence"),
        rule_id: r.get("rule_id"),
        rule_version: r.get("rule_version"),
        evidence: json_text(r.get("evidence"))?,
        attack_release: r.get("attack_release"),
        mitre_url: r.get("mitre_url"),
        created_at: r.get("created_at"),
    })
}
