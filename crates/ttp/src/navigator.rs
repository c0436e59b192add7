//! ATT&CK Navigator layers (format 4.5) of what a rule pack can detect.
//!
//! One technique entry per (technique or sub-technique, tactic) the pack emits, scored by the
//! highest base confidence among the rules that emit it, with the rules named in the comment
//! and metadata. The layer is meant to be opened in the Navigator as-is.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::catalogue::Catalogue;
use crate::rule::RuleDef;

/// Build a coverage layer for `rules` (typically a whole pack).
pub fn coverage_layer<'a>(
    rules: impl IntoIterator<Item = &'a RuleDef>,
    catalogue: &Catalogue,
) -> Value {
    // (technique, tactic shortname) → (best confidence, rule ids)
    let mut cells: BTreeMap<(String, String), (f64, Vec<String>)> = BTreeMap::new();
    for rule in rules {
        for emit in &rule.emits {
            let Some(tactic) = catalogue.tactic(&emit.tactic) else {
                continue;
            };
            let cell = cells
                .entry((emit.attack_id().to_owned(), tactic.shortname.clone()))
                .or_default();
            cell.0 = cell.0.max(emit.confidence);
            if !cell.1.contains(&rule.rule_id) {
                cell.1.push(rule.rule_id.clone());
            }
        }
    }
    let techniques: Vec<Value> = cells
        .into_iter()
        .map(|((technique, tactic), (confidence, rules))| {
            json!({
                "techniqueID": technique,
                "tactic": tactic,
                "score": (confidence * 100.0).round(),
                "comment": format!("rules: {}", rules.join(", ")),
                "enabled": true,
                "metadata": [{"name": "rules", "value": rules.join(", ")}],
                "showSubtechniques": true,
            })
        })
        .collect();
    let major = catalogue
        .release()
        .rsplit('v')
        .next()
        .unwrap_or("18")
        .split('.')
        .next()
        .unwrap_or("18")
        .to_owned();
    json!({
        "name": "decnet rule pack coverage",
        "versions": {"attack": major, "navigator": "5.1.0", "layer": "4.5"},
        "domain": "enterprise-attack",
        "description": format!("Techniques the decnet rule pack can tag ({}); score = highest base confidence × 100. {}", catalogue.release(), catalogue.attribution()),
        "sorting": 3,
        "layout": {"layout": "side", "showID": true, "showName": true},
        "hideDisabled": false,
        "techniques": techniques,
        "gradient": {"colors": ["#ffe766", "#ff6666"], "minValue": 60, "maxValue": 100},
        "legendItems": [],
        "showTacticRowBackground": false,
        "selectTechniquesAcrossTactics": true,
        "selectSubtechniquesWithParent": false,
    })
}
