//! The REST API's reads of `ttp_tag`, `identity` and `attacker` (API.md §5, §6): technique
//! rollups grouped by release, technique, sub-technique and tactic, and pages of tags.
//!
//! Each query is written once. A small builder renders it for the backend: placeholders are
//! `?` on SQLite and `$n` with a cast on PostgreSQL, values bound as text on both, and times
//! and uuids read back as text in the one form SQLite stores (STORAGE.md §1), so a single
//! decoder serves both. Every scope filters on an indexed anchor column; the fleet scope is a
//! scan by design. Nothing here writes.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

use crate::tags::StoredTag;
use crate::time::{from_text, to_text};
use crate::{Database, StorageError};

/// Which tags an API read covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagScope {
    /// Every tag.
    Fleet,
    /// Tags naming one of these identities, or whose attacker belongs to one of them (an
    /// identity and those merged into it: [`Database::identity_family`]).
    Identities(Vec<Uuid>),
    /// Tags anchored on this attacker (identity-only tags excluded).
    Attacker(Uuid),
    /// Tags of one sensor session.
    Session(String),
}

/// Bounds on the tags a rollup counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagFilter {
    /// `created_at >= since`.
    pub since: Option<DateTime<Utc>>,
    /// `created_at <= until`.
    pub until: Option<DateTime<Utc>>,
    /// `attack_release` equals this.
    pub release: Option<String>,
}

/// Tags of one (release, technique, sub-technique, tactic) within a scope.
#[derive(Debug, Clone, PartialEq)]
pub struct TechniqueCount {
    /// ATT&CK release the tags were written against.
    pub attack_release: String,
    /// Parent technique.
    pub technique_id: String,
    /// Sub-technique.
    pub sub_technique_id: Option<String>,
    /// Tactic id.
    pub tactic: String,
    /// Tags.
    pub count: i64,
    /// Distinct attackers among them.
    pub attacker_count: i64,
    /// Distinct identities among them.
    pub identity_count: i64,
    /// Earliest tag.
    pub first_seen: DateTime<Utc>,
    /// Latest tag.
    pub last_seen: DateTime<Utc>,
    /// Highest confidence.
    pub confidence_max: f64,
    /// Distinct rules that produced them, sorted.
    pub rule_ids: Vec<String>,
}

/// Where a page of tags starts: the last row of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagCursor {
    /// Its creation time.
    pub created_at: DateTime<Utc>,
    /// Its id.
    pub uuid: Uuid,
}

/// A value to bind: every one goes over as text, cast on PostgreSQL where the column is typed.
enum Bind {
    Text(String),
    Int(i64),
}

/// One query rendered for one backend.
struct Sql {
    pg: bool,
    text: String,
    binds: Vec<Bind>,
}

impl Sql {
    fn new(db: &Database) -> Sql {
        Sql {
            pg: matches!(db, Database::Postgres(_)),
            text: String::new(),
            binds: Vec::new(),
        }
    }

    fn push(&mut self, s: &str) -> &mut Sql {
        self.text.push_str(s);
        self
    }

    fn bind(&mut self, value: Bind, cast: &str) -> &mut Sql {
        self.binds.push(value);
        if self.pg {
            let n = self.binds.len();
            self.text.push_str(&format!("${n}{cast}"));
        } else {
            self.text.push('?');
        }
        self
    }

    fn uuid(&mut self, u: Uuid) -> &mut Sql {
        self.bind(Bind::Text(u.to_string()), "::uuid")
    }

    fn ts(&mut self, t: DateTime<Utc>) -> &mut Sql {
        self.bind(Bind::Text(to_text(t)), "::timestamptz")
    }

    fn text(&mut self, s: &str) -> &mut Sql {
        self.bind(Bind::Text(s.to_owned()), "")
    }

    fn int(&mut self, i: i64) -> &mut Sql {
        self.bind(Bind::Int(i), "")
    }

    /// A comma-separated list of uuid placeholders.
    fn uuids(&mut self, list: &[Uuid]) -> &mut Sql {
        for (i, u) in list.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.uuid(*u);
        }
        self
    }

    /// A time column or aggregate as SQLite's text form.
    fn ts_out(&self, expr: &str) -> String {
        if self.pg {
            format!("to_char(({expr}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
        } else {
            expr.to_owned()
        }
    }

    /// A uuid or JSON column as text.
    fn text_out(&self, column: &str) -> String {
        if self.pg {
            format!("{column}::text")
        } else {
            column.to_owned()
        }
    }

    /// Distinct values of a text column, comma-separated.
    fn distinct_list(&self, column: &str) -> String {
        if self.pg {
            format!("string_agg(DISTINCT {column}, ',')")
        } else {
            format!("group_concat(DISTINCT {column})")
        }
    }

    async fn fetch(&self, db: &Database) -> Result<Vec<Fetched>, StorageError> {
        match db {
            Database::Sqlite(pool) => {
                let mut q = sqlx::query(&self.text);
                for b in &self.binds {
                    q = match b {
                        Bind::Text(s) => q.bind(s.as_str()),
                        Bind::Int(i) => q.bind(*i),
                    };
                }
                Ok(q.fetch_all(pool)
                    .await?
                    .into_iter()
                    .map(Fetched::Sqlite)
                    .collect())
            }
            Database::Postgres(pool) => {
                let mut q = sqlx::query(&self.text);
                for b in &self.binds {
                    q = match b {
                        Bind::Text(s) => q.bind(s.as_str()),
                        Bind::Int(i) => q.bind(*i),
                    };
                }
                Ok(q.fetch_all(pool)
                    .await?
                    .into_iter()
                    .map(Fetched::Postgres)
                    .collect())
            }
        }
    }
}

/// A row of either backend, read by column name with the same calls.
enum Fetched {
    Sqlite(sqlx::sqlite::SqliteRow),
    Postgres(sqlx::postgres::PgRow),
}

impl Fetched {
    fn text(&self, column: &str) -> Option<String> {
        match self {
            Fetched::Sqlite(r) => r.get(column),
            Fetched::Postgres(r) => r.get(column),
        }
    }

    fn int(&self, column: &str) -> i64 {
        match self {
            Fetched::Sqlite(r) => r.get(column),
            Fetched::Postgres(r) => r.get(column),
        }
    }

    fn int32(&self, column: &str) -> i32 {
        match self {
            Fetched::Sqlite(r) => r.get(column),
            Fetched::Postgres(r) => r.get(column),
        }
    }

    fn float(&self, column: &str) -> f64 {
        match self {
            Fetched::Sqlite(r) => r.get(column),
            Fetched::Postgres(r) => r.get(column),
        }
    }

    fn required(&self, column: &'static str) -> Result<String, StorageError> {
        self.text(column).ok_or(StorageError::Corrupt {
            column,
            value: "NULL".to_owned(),
        })
    }

    fn ts(&self, column: &'static str) -> Result<DateTime<Utc>, StorageError> {
        from_text(column, &self.required(column)?)
    }

    fn uuid(&self, column: &'static str) -> Result<Option<Uuid>, StorageError> {
        self.text(column)
            .map(|t| {
                t.parse().map_err(|_| StorageError::Corrupt {
                    column,
                    value: t.clone(),
                })
            })
            .transpose()
    }
}

/// Above this many attackers an identity scope names them by subquery instead of binding
/// each (both backends cap bound parameters in the tens of thousands).
const MAX_BOUND_ATTACKERS: usize = 10_000;

/// The `WHERE` condition of a scope, appended to `sql`; `attackers` are the identities'
/// attackers ([`Database::scope_attackers`]).
fn scope_condition(sql: &mut Sql, scope: &TagScope, attackers: &[Uuid]) {
    match scope {
        TagScope::Fleet => {
            sql.push("1 = 1");
        }
        TagScope::Identities(ids) if ids.is_empty() => {
            sql.push("1 = 0");
        }
        // Two indexed arms, ttp_tag_identity and ttp_tag_attacker. The attackers are bound as
        // a list, not a subquery: PostgreSQL turns `a IN (list) OR b IN (list)` into a bitmap
        // OR of both indexes, but scans the table for an OR with a subquery (10 s instead of
        // milliseconds over a million tags, in the load bench).
        TagScope::Identities(ids) => {
            sql.push("(identity_uuid IN (").uuids(ids).push(")");
            if attackers.len() > MAX_BOUND_ATTACKERS {
                sql.push(
                    " OR attacker_uuid IN (SELECT uuid FROM attacker WHERE identity_uuid IN (",
                )
                .uuids(ids)
                .push("))");
            } else if !attackers.is_empty() {
                sql.push(" OR attacker_uuid IN (")
                    .uuids(attackers)
                    .push(")");
            }
            sql.push(")");
        }
        TagScope::Attacker(a) => {
            sql.push("attacker_uuid = ").uuid(*a);
        }
        TagScope::Session(s) => {
            sql.push("session_id = ").text(s);
        }
    }
}

fn filter_condition(sql: &mut Sql, filter: &TagFilter) {
    if let Some(t) = filter.since {
        sql.push(" AND created_at >= ").ts(t);
    }
    if let Some(t) = filter.until {
        sql.push(" AND created_at <= ").ts(t);
    }
    if let Some(r) = &filter.release {
        sql.push(" AND attack_release = ").text(r);
    }
}

const TAG_TEXT_COLUMNS: [&str; 12] = [
    "source_kind",
    "source_id",
    "session_id",
    "decky_id",
    "tactic",
    "technique_id",
    "sub_technique_id",
    "rule_id",
    "attack_release",
    "mitre_url",
    "confidence",
    "rule_version",
];

impl Database {
    /// The attackers that belong to an identity scope's identities (none for other scopes),
    /// through the `attacker (identity_uuid)` index.
    async fn scope_attackers(&self, scope: &TagScope) -> Result<Vec<Uuid>, StorageError> {
        let TagScope::Identities(ids) = scope else {
            return Ok(Vec::new());
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new(self);
        let column = sql.text_out("uuid");
        sql.push(&format!(
            "SELECT {column} AS id FROM attacker WHERE identity_uuid IN ("
        ))
        .uuids(ids)
        .push(")");
        let mut out = Vec::new();
        for row in sql.fetch(self).await? {
            out.extend(row.uuid("id")?);
        }
        Ok(out)
    }

    /// An identity and every identity merged into it, directly or through others.
    pub async fn identity_family(&self, identity: Uuid) -> Result<Vec<Uuid>, StorageError> {
        let mut family = vec![identity];
        let mut frontier = vec![identity];
        // Merges form short chains; the loop ends when a round finds nobody new, and the
        // visited set keeps a (schema-forbidden, but cheap to guard) cycle from spinning.
        while !frontier.is_empty() {
            let mut sql = Sql::new(self);
            let column = sql.text_out("identity_uuid");
            sql.push(&format!(
                "SELECT {column} AS id FROM identity WHERE merged_into IN ("
            ))
            .uuids(&frontier)
            .push(")");
            frontier.clear();
            for row in sql.fetch(self).await? {
                if let Some(id) = row.uuid("id")?
                    && !family.contains(&id)
                {
                    family.push(id);
                    frontier.push(id);
                }
            }
        }
        Ok(family)
    }

    /// Whether an identity row exists or a tag names the identity.
    pub async fn identity_known(&self, identity: Uuid) -> Result<bool, StorageError> {
        let mut sql = Sql::new(self);
        sql.push("SELECT COUNT(*) AS n FROM (SELECT 1 FROM identity WHERE identity_uuid = ")
            .uuid(identity)
            .push(" UNION ALL SELECT 1 FROM (SELECT 1 FROM ttp_tag WHERE identity_uuid = ")
            .uuid(identity)
            .push(" LIMIT 1) t) k");
        Ok(sql
            .fetch(self)
            .await?
            .first()
            .is_some_and(|r| r.int("n") > 0))
    }

    /// Whether an attacker row exists.
    pub async fn attacker_known(&self, attacker: Uuid) -> Result<bool, StorageError> {
        let mut sql = Sql::new(self);
        sql.push("SELECT COUNT(*) AS n FROM attacker WHERE uuid = ")
            .uuid(attacker);
        Ok(sql
            .fetch(self)
            .await?
            .first()
            .is_some_and(|r| r.int("n") > 0))
    }

    /// The identities of a campaign, each with those merged into it; empty when no identity
    /// names the campaign.
    pub async fn campaign_identities(&self, campaign: Uuid) -> Result<Vec<Uuid>, StorageError> {
        let mut sql = Sql::new(self);
        let column = sql.text_out("identity_uuid");
        sql.push(&format!(
            "SELECT {column} AS id FROM identity WHERE campaign_uuid = "
        ))
        .uuid(campaign)
        .push(" ORDER BY 1");
        let mut out: Vec<Uuid> = Vec::new();
        for row in sql.fetch(self).await? {
            let Some(id) = row.uuid("id")? else { continue };
            for member in self.identity_family(id).await? {
                if !out.contains(&member) {
                    out.push(member);
                }
            }
        }
        Ok(out)
    }

    /// Tags per (release, technique, sub-technique, tactic) in a scope, newest `last_seen`
    /// first, then by technique, sub-technique and tactic.
    pub async fn technique_counts(
        &self,
        scope: &TagScope,
        filter: &TagFilter,
    ) -> Result<Vec<TechniqueCount>, StorageError> {
        let attackers = self.scope_attackers(scope).await?;
        let mut sql = Sql::new(self);
        let (first, last) = (sql.ts_out("MIN(created_at)"), sql.ts_out("MAX(created_at)"));
        let rules = sql.distinct_list("rule_id");
        sql.push(&format!(
            "SELECT attack_release, technique_id, sub_technique_id, tactic, COUNT(*) AS n, \
             COUNT(DISTINCT attacker_uuid) AS attackers, COUNT(DISTINCT identity_uuid) AS identities, \
             {first} AS first_seen, {last} AS last_seen, MAX(confidence) AS confidence_max, \
             {rules} AS rule_ids FROM ttp_tag WHERE "
        ));
        scope_condition(&mut sql, scope, &attackers);
        filter_condition(&mut sql, filter);
        sql.push(
            " GROUP BY attack_release, technique_id, sub_technique_id, tactic \
             ORDER BY last_seen DESC, technique_id, coalesce(sub_technique_id, ''), tactic, \
             attack_release",
        );
        sql.fetch(self).await?.iter().map(technique_count).collect()
    }

    /// A page of tags of one technique in a scope, newest first (created_at, then uuid,
    /// descending): a sub-technique narrows to it, `after` starts below a previous page's
    /// last row, at most `limit` rows. Served by the `(anchor, technique_id, created_at)`
    /// indexes.
    pub async fn tag_page(
        &self,
        scope: &TagScope,
        technique_id: &str,
        sub_technique_id: Option<&str>,
        after: Option<TagCursor>,
        limit: i64,
    ) -> Result<Vec<StoredTag>, StorageError> {
        let attackers = self.scope_attackers(scope).await?;
        let mut sql = Sql::new(self);
        let columns = [
            format!("{} AS uuid", sql.text_out("uuid")),
            format!("{} AS attacker_uuid", sql.text_out("attacker_uuid")),
            format!("{} AS identity_uuid", sql.text_out("identity_uuid")),
            format!("{} AS evidence", sql.text_out("evidence")),
            format!("{} AS created_at", sql.ts_out("created_at")),
        ]
        .join(", ");
        sql.push(&format!(
            "SELECT {columns}, {} FROM ttp_tag WHERE ",
            TAG_TEXT_COLUMNS.join(", ")
        ));
        scope_condition(&mut sql, scope, &attackers);
        sql.push(" AND technique_id = ").text(technique_id);
        if let Some(sub) = sub_technique_id {
            sql.push(" AND sub_technique_id = ").text(sub);
        }
        if let Some(c) = after {
            // Row comparison, expanded: SQLite and PostgreSQL order the pair the same way
            // because SQLite's time text sorts as time and uuids compare as text on both.
            let uuid = sql.text_out("uuid");
            sql.push(" AND (created_at < ").ts(c.created_at);
            sql.push(" OR (created_at = ").ts(c.created_at);
            sql.push(&format!(" AND {uuid} < "))
                .text(&c.uuid.to_string())
                .push("))");
        }
        let uuid = sql.text_out("uuid");
        sql.push(&format!(" ORDER BY created_at DESC, {uuid} DESC LIMIT "))
            .int(limit.max(0));
        sql.fetch(self).await?.iter().map(stored_tag).collect()
    }
}

fn technique_count(r: &Fetched) -> Result<TechniqueCount, StorageError> {
    let rules: BTreeSet<String> = r
        .text("rule_ids")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(TechniqueCount {
        attack_release: r.required("attack_release")?,
        technique_id: r.required("technique_id")?,
        sub_technique_id: r.text("sub_technique_id"),
        tactic: r.required("tactic")?,
        count: r.int("n"),
        attacker_count: r.int("attackers"),
        identity_count: r.int("identities"),
        first_seen: r.ts("first_seen")?,
        last_seen: r.ts("last_seen")?,
        confidence_max: r.float("confidence_max"),
        rule_ids: rules.into_iter().collect(),
    })
}

fn stored_tag(r: &Fetched) -> Result<StoredTag, StorageError> {
    let evidence = r.required("evidence")?;
    let evidence: Value = serde_json::from_str(&evidence).map_err(|_| StorageError::Corrupt {
        column: "ttp_tag.evidence",
        value: evidence.clone(),
    })?;
    Ok(StoredTag {
        uuid: r.uuid("uuid")?.ok_or(StorageError::Corrupt {
            column: "ttp_tag.uuid",
            value: "NULL".to_owned(),
        })?,
        source_kind: r.required("source_kind")?,
        source_id: r.required("source_id")?,
        attacker_uuid: r.uuid("attacker_uuid")?,
        identity_uuid: r.uuid("identity_uuid")?,
        session_id: r.text("session_id"),
        decky_id: r.text("decky_id"),
        tactic: r.required("tactic")?,
        technique_id: r.required("technique_id")?,
        sub_technique_id: r.text("sub_technique_id"),
        confidence: r.float("confidence"),
        rule_id: r.required("rule_id")?,
        rule_version: r.int32("rule_version"),
        evidence,
        attack_release: r.required("attack_release")?,
        mitre_url: r.required("mitre_url")?,
        created_at: r.ts("created_at")?,
    })
}

/// Which canary tokens a list shows; every filter is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenFilter {
    /// The decoy.
    pub decky_name: Option<String>,
    /// `planted`, `failed` or `revoked`.
    pub state: Option<String>,
    /// `http`, `dns` or `aws_passive`.
    pub kind: Option<String>,
    /// The generator.
    pub generator: Option<String>,
}

impl Database {
    /// A page of canary tokens, newest first (created_at, then uuid, descending), below
    /// `after` when given. Tokens number in the hundreds, not millions: a decoy filter uses
    /// the `(decky_name, state)` index, the rest is a short scan.
    pub async fn canary_token_page(
        &self,
        filter: &TokenFilter,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> Result<Vec<crate::CanaryTokenRow>, StorageError> {
        let mut sql = Sql::new(self);
        let columns = [
            format!("{} AS uuid", sql.text_out("uuid")),
            format!("{} AS mint_uuid", sql.text_out("mint_uuid")),
            format!("{} AS created_at", sql.ts_out("created_at")),
            format!("{} AS placed_at", sql.ts_out("placed_at")),
            format!("{} AS last_triggered_at", sql.ts_out("last_triggered_at")),
            format!("{} AS revoked_at", sql.ts_out("revoked_at")),
        ]
        .join(", ");
        sql.push(&format!(
            "SELECT {columns}, kind, generator, decky_name, placement_path, slug, slug_key, \
             fingerprint_nonce, state, memo, created_by, trigger_count, last_error, revoked_by, \
             revoke_reason FROM canary_token WHERE 1 = 1"
        ));
        for (column, value) in [
            ("decky_name", &filter.decky_name),
            ("state", &filter.state),
            ("kind", &filter.kind),
            ("generator", &filter.generator),
        ] {
            if let Some(v) = value {
                sql.push(&format!(" AND {column} = ")).text(v);
            }
        }
        let uuid = sql.text_out("uuid");
        if let Some((at, id)) = after {
            sql.push(" AND (created_at < ").ts(at);
            sql.push(" OR (created_at = ").ts(at);
            sql.push(&format!(" AND {uuid} < "))
                .text(&id.to_string())
                .push("))");
        }
        sql.push(&format!(" ORDER BY created_at DESC, {uuid} DESC LIMIT "))
            .int(limit.max(0));
        sql.fetch(self).await?.iter().map(token_row).collect()
    }
}

fn optional_ts(r: &Fetched, column: &'static str) -> Result<Option<DateTime<Utc>>, StorageError> {
    r.text(column).map(|t| from_text(column, &t)).transpose()
}

fn token_row(r: &Fetched) -> Result<crate::CanaryTokenRow, StorageError> {
    Ok(crate::CanaryTokenRow {
        uuid: r.uuid("uuid")?.ok_or(StorageError::Corrupt {
            column: "canary_token.uuid",
            value: "NULL".to_owned(),
        })?,
        kind: r.required("kind")?,
        generator: r.required("generator")?,
        decky_name: r.required("decky_name")?,
        placement_path: r.required("placement_path")?,
        slug: r.required("slug")?,
        slug_key: r.required("slug_key")?,
        mint_uuid: r.uuid("mint_uuid")?,
        fingerprint_nonce: r.text("fingerprint_nonce"),
        state: r.required("state")?,
        memo: r.text("memo"),
        created_by: r.required("created_by")?,
        created_at: r.ts("created_at")?,
        placed_at: optional_ts(r, "placed_at")?,
        last_triggered_at: optional_ts(r, "last_triggered_at")?,
        trigger_count: r.int("trigger_count"),
        last_error: r.text("last_error"),
        revoked_at: optional_ts(r, "revoked_at")?,
        revoked_by: r.text("revoked_by"),
        revoke_reason: r.text("revoke_reason"),
    })
}
