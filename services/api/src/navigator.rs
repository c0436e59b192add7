//! ATT&CK Navigator layers (format 4.5) of observed tags (API.md §8): one layer per ATT&CK
//! release in a scope, one entry per (technique or sub-technique, tactic), scored by tag count.
//!
//! The rule pack's coverage layer (`decnet_ttp::navigator`) scores what the pack *can* detect;
//! this one scores what was seen, so it is built from the rollup rows instead. A
//! sub-technique whose parent has no entry under the same tactic gets an unscored parent entry
//! with `showSubtechniques`, so the annotation is visible when the layer opens.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use decnet_storage::TechniqueCount;
use decnet_ttp::catalogue::Catalogue;
use schemars::{Schema, SchemaGenerator, json_schema};
use serde_json::{Value, json};

/// The major version of a release, `18` for `enterprise-v18.1`.
pub fn attack_major(release: &str) -> String {
    release
        .strip_prefix("enterprise-v")
        .and_then(|r| r.split('.').next())
        .unwrap_or("18")
        .to_owned()
}

/// Who a layer is about: its name and its file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerScope {
    /// Every tag.
    Fleet,
    /// One identity (its first eight hex digits name it).
    Identity(uuid::Uuid),
}

impl LayerScope {
    fn label(&self) -> String {
        match self {
            LayerScope::Fleet => "fleet".to_owned(),
            LayerScope::Identity(u) => format!("identity {}", &u.simple().to_string()[..8]),
        }
    }

    /// `decnet-navigator-<fleet|identity-<uuid8>>.json`.
    pub fn file_name(&self) -> String {
        match self {
            LayerScope::Fleet => "decnet-navigator-fleet.json".to_owned(),
            LayerScope::Identity(u) => {
                format!(
                    "decnet-navigator-identity-{}.json",
                    &u.simple().to_string()[..8]
                )
            }
        }
    }
}

#[derive(Default)]
struct Cell {
    score: i64,
    attackers: i64,
    confidence_max: f64,
    last_seen: Option<DateTime<Utc>>,
    rules: std::collections::BTreeSet<String>,
}

/// The layers of `rows`, newest release first; with no rows, one empty layer for the
/// catalogue's release.
pub fn layers(
    rows: &[TechniqueCount],
    scope: &LayerScope,
    catalogue: &Catalogue,
    now: DateTime<Utc>,
) -> Vec<Value> {
    let mut by_release: BTreeMap<String, Vec<&TechniqueCount>> = BTreeMap::new();
    for r in rows {
        by_release
            .entry(r.attack_release.clone())
            .or_default()
            .push(r);
    }
    if by_release.is_empty() {
        by_release.insert(catalogue.release().to_owned(), Vec::new());
    }
    let mut releases: Vec<_> = by_release.into_iter().collect();
    // Newest first by (major, minor), not by text: v9 sorts before v18 as text.
    releases.sort_by_key(|(r, _)| std::cmp::Reverse(release_key(r)));
    releases
        .into_iter()
        .map(|(release, rows)| layer(&release, &rows, scope, catalogue, now))
        .collect()
}

fn release_key(release: &str) -> (u32, u32) {
    let rest = release.strip_prefix("enterprise-v").unwrap_or_default();
    let (major, minor) = rest.split_once('.').unwrap_or((rest, "0"));
    (major.parse().unwrap_or(0), minor.parse().unwrap_or(0))
}

/// One layer of one release.
pub fn layer(
    release: &str,
    rows: &[&TechniqueCount],
    scope: &LayerScope,
    catalogue: &Catalogue,
    now: DateTime<Utc>,
) -> Value {
    let mut cells: BTreeMap<(String, String), Cell> = BTreeMap::new();
    let mut tags = 0;
    for r in rows {
        let Some(tactic) = catalogue.tactic(&r.tactic) else {
            continue;
        };
        tags += r.count;
        let id = r
            .sub_technique_id
            .clone()
            .unwrap_or_else(|| r.technique_id.clone());
        let cell = cells.entry((id, tactic.shortname.clone())).or_default();
        cell.score += r.count;
        cell.attackers += r.attacker_count;
        cell.confidence_max = cell.confidence_max.max(r.confidence_max);
        cell.last_seen = cell.last_seen.max(Some(r.last_seen));
        cell.rules.extend(r.rule_ids.iter().cloned());
    }
    // Parents of sub-technique entries, under the same tactic.
    let parents: Vec<(String, String)> = cells
        .keys()
        .filter_map(|(id, tactic)| {
            id.split_once('.')
                .map(|(p, _)| (p.to_owned(), tactic.clone()))
        })
        .collect();
    let mut techniques: Vec<Value> = Vec::new();
    let mut with_subs = std::collections::BTreeSet::new();
    for key in parents {
        with_subs.insert(key);
    }
    let mut keys: Vec<(String, String)> = cells.keys().cloned().collect();
    for key in &with_subs {
        if !cells.contains_key(key) {
            keys.push(key.clone());
        }
    }
    keys.sort();
    for key in keys {
        let show = with_subs.contains(&key);
        let entry = match cells.get(&key) {
            Some(cell) => scored(&key, cell, show),
            None => json!({
                "techniqueID": key.0,
                "tactic": key.1,
                "enabled": true,
                "showSubtechniques": true,
            }),
        };
        techniques.push(entry);
    }
    let max = cells.values().map(|c| c.score).max().unwrap_or(0).max(1);
    let generated = now.to_rfc3339_opts(SecondsFormat::Millis, true);
    let label = scope.label();
    json!({
        "name": format!("decnet {label} — ATT&CK {release}"),
        "versions": {"attack": attack_major(release), "navigator": "5.1.0", "layer": "4.5"},
        "domain": "enterprise-attack",
        "description": format!("decnet {label}: {tags} tags written against {release}, generated {generated}. {}", catalogue.attribution()),
        "sorting": 3,
        "layout": {"layout": "side", "showID": true, "showName": true, "expandedSubtechniques": "annotated"},
        "hideDisabled": false,
        "techniques": techniques,
        "gradient": {"colors": ["#ffffff", "#ff9e80", "#d50000"], "minValue": 0, "maxValue": max},
        "legendItems": [],
        "metadata": [
            {"name": "scope", "value": label},
            {"name": "attack_release", "value": release},
            {"name": "generated_at", "value": generated},
        ],
    })
}

fn scored(key: &(String, String), cell: &Cell, show: bool) -> Value {
    let rules: Vec<&str> = cell.rules.iter().map(String::as_str).collect();
    let last = cell
        .last_seen
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default();
    let mut entry = json!({
        "techniqueID": key.0,
        "tactic": key.1,
        "score": cell.score,
        "comment": format!("rules: {}", rules.join(", ")),
        "enabled": true,
        "metadata": [
            {"name": "attackers", "value": cell.attackers.to_string()},
            {"name": "confidence_max", "value": format!("{:.2}", cell.confidence_max)},
            {"name": "last_seen", "value": last},
        ],
    });
    if show {
        entry["showSubtechniques"] = Value::Bool(true);
    }
    entry
}

/// The schema of a layer (the 4.5 fields this API writes) or of an array of them.
pub fn layers_schema(_: &mut SchemaGenerator) -> Schema {
    let meta = json!({"type": "array", "items": {
        "type": "object", "required": ["name", "value"],
        "properties": {"name": {"type": "string"}, "value": {"type": "string"}},
    }});
    let technique = json!({
        "type": "object",
        "required": ["techniqueID", "tactic", "enabled"],
        "properties": {
            "techniqueID": {"type": "string", "pattern": "^T[0-9]{4}(\\.[0-9]{3})?$"},
            "tactic": {"type": "string"},
            "score": {"type": "number"},
            "comment": {"type": "string"},
            "enabled": {"type": "boolean"},
            "metadata": meta,
            "showSubtechniques": {"type": "boolean"},
        },
    });
    let layer = json!({
        "type": "object",
        "required": ["name", "versions", "domain", "techniques"],
        "properties": {
            "name": {"type": "string"},
            "versions": {
                "type": "object",
                "required": ["attack", "navigator", "layer"],
                "properties": {
                    "attack": {"type": "string"},
                    "navigator": {"type": "string"},
                    "layer": {"const": "4.5"},
                },
            },
            "domain": {"const": "enterprise-attack"},
            "description": {"type": "string"},
            "sorting": {"enum": [0, 1, 2, 3]},
            "layout": {"type": "object"},
            "hideDisabled": {"type": "boolean"},
            "techniques": {"type": "array", "items": technique},
            "gradient": {"type": "object"},
            "legendItems": {"type": "array"},
            "metadata": meta,
        },
    });
    json_schema!({"oneOf": [layer.clone(), {"type": "array", "items": layer}]})
}
