//! The read endpoints over tags (API.md §5, §6, §8): rollups by scope, pages of tags with
//! their evidence, the groups of a technique and the Navigator export.
//!
//! Each handler checks its parameters, then whether the named resource exists, then reads;
//! names come from the pinned catalogue, never from the database.

use axum::extract::{RawPathParams, RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use decnet_storage::{StorageError, TagCursor, TagFilter, TagScope, TechniqueCount};
use decnet_ttp::catalogue::Catalogue;

use crate::Shared;
use crate::error::ApiError;
use crate::model::{CampaignTechniqueRow, GroupRef, TagRow, TechniqueRow, Ts};
use crate::navigator::{self, LayerScope};
use crate::params::{self, Query, encode_cursor};

type Answer = Result<Response, ApiError>;

/// The value of a path parameter.
pub(crate) fn path_param<'a>(params: &'a RawPathParams, name: &str) -> &'a str {
    params
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .unwrap_or_default()
}

pub(crate) fn db_error(e: &StorageError) -> ApiError {
    if e.is_transient() {
        tracing::warn!(error = %e, "the database did not answer");
        return ApiError::Unavailable("the database is unavailable".to_owned());
    }
    ApiError::internal("database read", e)
}

fn window(q: &Query) -> Result<TagFilter, ApiError> {
    Ok(TagFilter {
        since: q.time("since")?,
        until: q.time("until")?,
        release: q.release()?,
    })
}

const WINDOW: &[&str] = &["since", "until", "release"];

fn technique_row(r: &TechniqueCount) -> TechniqueRow {
    let catalogue = Catalogue::bundled();
    let technique = catalogue.technique(&r.technique_id);
    let sub = r
        .sub_technique_id
        .as_deref()
        .and_then(|s| catalogue.technique(s));
    let tactic = catalogue.tactic(&r.tactic);
    TechniqueRow {
        technique_id: r.technique_id.clone(),
        technique_name: technique.map(|t| t.name.clone()).unwrap_or_default(),
        sub_technique_id: r.sub_technique_id.clone(),
        sub_technique_name: r
            .sub_technique_id
            .as_deref()
            .and_then(|s| catalogue.display_name(s)),
        tactic: r.tactic.clone(),
        tactic_shortname: tactic.map(|t| t.shortname.clone()).unwrap_or_default(),
        tactic_name: tactic.map(|t| t.name.clone()).unwrap_or_default(),
        attack_release: r.attack_release.clone(),
        count: r.count,
        attacker_count: r.attacker_count,
        first_seen: Ts(r.first_seen),
        last_seen: Ts(r.last_seen),
        confidence_max: r.confidence_max,
        mitre_url: sub.or(technique).map(|t| t.url.clone()),
    }
}

async fn rollup(
    state: &Shared,
    scope: &TagScope,
    q: &Query,
) -> Result<Vec<TechniqueCount>, ApiError> {
    let filter = window(q)?;
    state
        .db
        .technique_counts(scope, &filter)
        .await
        .map_err(|e| db_error(&e))
}

async fn identity_scope(state: &Shared, id: uuid::Uuid) -> Result<TagScope, ApiError> {
    let known = state
        .db
        .identity_known(id)
        .await
        .map_err(|e| db_error(&e))?;
    if !known {
        return Err(ApiError::NotFound(format!("unknown identity '{id}'")));
    }
    let family = state
        .db
        .identity_family(id)
        .await
        .map_err(|e| db_error(&e))?;
    Ok(TagScope::Identities(family))
}

async fn attacker_scope(state: &Shared, id: uuid::Uuid) -> Result<TagScope, ApiError> {
    if !state
        .db
        .attacker_known(id)
        .await
        .map_err(|e| db_error(&e))?
    {
        return Err(ApiError::NotFound(format!("unknown attacker '{id}'")));
    }
    Ok(TagScope::Attacker(id))
}

fn rows(counts: &[TechniqueCount]) -> Response {
    crate::model::json(&counts.iter().map(technique_row).collect::<Vec<_>>())
}

pub(crate) async fn fleet(State(state): State<Shared>, RawQuery(raw): RawQuery) -> Answer {
    let q = Query::parse(raw.as_deref(), WINDOW)?;
    Ok(rows(&rollup(&state, &TagScope::Fleet, &q).await?))
}

pub(crate) async fn by_identity(
    State(state): State<Shared>,
    path: RawPathParams,
    RawQuery(raw): RawQuery,
) -> Answer {
    let id = params::uuid("identity_uuid", path_param(&path, "identity_uuid"))?;
    let q = Query::parse(raw.as_deref(), WINDOW)?;
    window(&q)?;
    let scope = identity_scope(&state, id).await?;
    Ok(rows(&rollup(&state, &scope, &q).await?))
}

pub(crate) async fn by_attacker(
    State(state): State<Shared>,
    path: RawPathParams,
    RawQuery(raw): RawQuery,
) -> Answer {
    let id = params::uuid("attacker_uuid", path_param(&path, "attacker_uuid"))?;
    let q = Query::parse(raw.as_deref(), WINDOW)?;
    window(&q)?;
    let scope = attacker_scope(&state, id).await?;
    Ok(rows(&rollup(&state, &scope, &q).await?))
}

pub(crate) async fn by_session(
    State(state): State<Shared>,
    path: RawPathParams,
    RawQuery(raw): RawQuery,
) -> Answer {
    let id = params::session(path_param(&path, "session_id"))?;
    let q = Query::parse(raw.as_deref(), WINDOW)?;
    Ok(rows(&rollup(&state, &TagScope::Session(id), &q).await?))
}

pub(crate) async fn by_campaign(
    State(state): State<Shared>,
    path: RawPathParams,
    RawQuery(raw): RawQuery,
) -> Answer {
    let id = params::uuid("campaign_uuid", path_param(&path, "campaign_uuid"))?;
    let q = Query::parse(raw.as_deref(), WINDOW)?;
    window(&q)?;
    let identities = state
        .db
        .campaign_identities(id)
        .await
        .map_err(|e| db_error(&e))?;
    if identities.is_empty() {
        return Err(ApiError::NotFound(format!("unknown campaign '{id}'")));
    }
    let counts = rollup(&state, &TagScope::Identities(identities), &q).await?;
    let out: Vec<CampaignTechniqueRow> = counts
        .iter()
        .map(|c| CampaignTechniqueRow {
            row: technique_row(c),
            identity_count: c.identity_count,
        })
        .collect();
    Ok(crate::model::json(&out))
}

/// The common part of the three tag-page endpoints, once the scope is known.
async fn tag_page(state: &Shared, scope: TagScope, technique: &str, q: &Query) -> Answer {
    let (parent, mut sub) = params::technique("technique_id", technique)?;
    if let Some(s) = q.get("sub_technique_id") {
        let (p, s) = params::technique("sub_technique_id", s)?;
        if p != parent || s.is_none() || (sub.is_some() && sub != s) {
            return Err(ApiError::invalid(
                "sub_technique_id",
                format!("sub_technique_id must be a sub-technique of {parent}"),
            ));
        }
        sub = s;
    }
    let limit = q.limit(200, 1000)?;
    let after = q.cursor()?;
    // One row more than asked says whether there is a next page.
    let mut tags = state
        .db
        .tag_page(&scope, &parent, sub.as_deref(), after, limit + 1)
        .await
        .map_err(|e| db_error(&e))?;
    let next = (tags.len() as i64 > limit).then(|| {
        tags.truncate(limit as usize);
        let last = tags.last().expect("a full page");
        encode_cursor(&TagCursor {
            created_at: last.created_at,
            uuid: last.uuid,
        })
    });
    let catalogue = Catalogue::bundled();
    let out: Vec<TagRow> = tags
        .into_iter()
        .map(|t| TagRow {
            technique_name: catalogue.technique(&t.technique_id).map(|x| x.name.clone()),
            sub_technique_name: t
                .sub_technique_id
                .as_deref()
                .and_then(|s| catalogue.display_name(s)),
            tactic_name: catalogue.tactic(&t.tactic).map(|x| x.name.clone()),
            uuid: t.uuid,
            source_kind: t.source_kind,
            source_id: t.source_id,
            attacker_uuid: t.attacker_uuid,
            identity_uuid: t.identity_uuid,
            session_id: t.session_id,
            decky_id: t.decky_id,
            tactic: t.tactic,
            technique_id: t.technique_id,
            sub_technique_id: t.sub_technique_id,
            confidence: t.confidence,
            rule_id: t.rule_id,
            rule_version: t.rule_version,
            evidence: match t.evidence {
                serde_json::Value::Object(m) => m,
                _ => serde_json::Map::new(),
            },
            attack_release: t.attack_release,
            mitre_url: t.mitre_url,
            created_at: Ts(t.created_at),
        })
        .collect();
    let mut response = crate::model::json(&out);
    if let Some(cursor) = next {
        response.headers_mut().insert(
            "x-next-cursor",
            HeaderValue::from_str(&cursor).expect("base64url is a header value"),
        );
    }
    Ok(response)
}

const PAGE: &[&str] = &["sub_technique_id", "limit", "cursor"];

/// Parameters of a tag page checked before any existence lookup (API.md §3's order).
fn page_query(raw: Option<&str>, technique: &str) -> Result<Query, ApiError> {
    let q = Query::parse(raw, PAGE)?;
    params::technique("technique_id", technique)?;
    if let Some(s) = q.get("sub_technique_id") {
        params::technique("sub_technique_id", s)?;
    }
    q.limit(200, 1000)?;
    q.cursor()?;
    Ok(q)
}

pub(crate) async fn tags_by_identity(
    State(state): State<Shared>,
    path: RawPathParams,
    RawQuery(raw): RawQuery,
) -> Answer {
    let id = params::uuid("id", path_param(&path, "id"))?;
    let technique = path_param(&path, "technique_id");
    let q = page_query(raw.as_deref(), technique)?;
    let scope = identity_scope(&state, id).await?;
    tag_page(&state, scope, technique, &q).await
}

pub(crate) async fn tags_by_attacker(
    State(state): State<Shared>,
    path: RawPathParams,
    RawQuery(raw): RawQuery,
) -> Answer {
    let id = params::uuid("id", path_param(&path, "id"))?;
    let technique = path_param(&path, "technique_id");
    let q = page_query(raw.as_deref(), technique)?;
    let scope = attacker_scope(&state, id).await?;
    tag_page(&state, scope, technique, &q).await
}

pub(crate) async fn tags_by_session(
    State(state): State<Shared>,
    path: RawPathParams,
    RawQuery(raw): RawQuery,
) -> Answer {
    let id = params::session(path_param(&path, "id"))?;
    let technique = path_param(&path, "technique_id");
    let q = page_query(raw.as_deref(), technique)?;
    tag_page(&state, TagScope::Session(id), technique, &q).await
}

pub(crate) async fn groups(State(_): State<Shared>, path: RawPathParams) -> Answer {
    let id = path_param(&path, "technique_id");
    params::technique("technique_id", id)?;
    let catalogue = Catalogue::bundled();
    if catalogue.technique(id).is_none() {
        return Err(ApiError::NotFound(format!("unknown technique '{id}'")));
    }
    let mut out: Vec<GroupRef> = catalogue
        .intrusion_sets()
        .iter()
        .filter(|g| g.techniques.iter().any(|t| t == id))
        .map(|g| GroupRef {
            group_id: g.id.clone(),
            name: g.name.clone(),
            aliases: g.aliases.clone(),
            mitre_url: g.url.clone(),
        })
        .collect();
    out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    Ok(crate::model::json(&out))
}

async fn export(
    state: &Shared,
    scope: TagScope,
    layer_scope: LayerScope,
    raw: Option<&str>,
) -> Answer {
    let q = Query::parse(raw, &["release"])?;
    let release = q.release()?;
    let filter = TagFilter {
        release: release.clone(),
        ..TagFilter::default()
    };
    let counts = state
        .db
        .technique_counts(&scope, &filter)
        .await
        .map_err(|e| db_error(&e))?;
    let catalogue = Catalogue::bundled();
    let now = chrono::Utc::now();
    let body = match release {
        Some(r) => {
            let refs: Vec<&TechniqueCount> = counts.iter().collect();
            navigator::layer(&r, &refs, &layer_scope, catalogue, now)
        }
        None => serde_json::Value::Array(navigator::layers(&counts, &layer_scope, catalogue, now)),
    };
    let disposition = format!("attachment; filename=\"{}\"", layer_scope.file_name());
    let mut response = crate::model::json(&body);
    response.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).expect("an ASCII file name"),
    );
    Ok(response)
}

pub(crate) async fn navigator_fleet(
    State(state): State<Shared>,
    RawQuery(raw): RawQuery,
) -> Answer {
    export(&state, TagScope::Fleet, LayerScope::Fleet, raw.as_deref()).await
}

pub(crate) async fn navigator_identity(
    State(state): State<Shared>,
    path: RawPathParams,
    RawQuery(raw): RawQuery,
) -> Answer {
    let id = params::uuid("identity_uuid", path_param(&path, "identity_uuid"))?;
    Query::parse(raw.as_deref(), &["release"])?.release()?;
    let scope = identity_scope(&state, id).await?;
    export(&state, scope, LayerScope::Identity(id), raw.as_deref()).await
}
