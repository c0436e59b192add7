//! `attacker.intel.enriched`: one `intel` event per provider block, named by a hash of that
//! provider's verdict so a changed verdict is a new source and a replay is not.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{Fanout, FanoutError, opt_str, read_bool, read_int, require_anchor};
use crate::event::{EvalEvent, parse_ts};
use crate::kind::SourceKind;

const PROVIDERS: [(&str, &str); 4] = [
    ("abuseipdb", "abuseipdb_score"),
    ("greynoise", "greynoise_classification"),
    ("feodo", "feodo_listed"),
    ("threatfox", "threatfox_listed"),
];

pub(super) fn intel_enriched(p: &Map<String, Value>) -> Result<Fanout, FanoutError> {
    let attacker = require_anchor(p, "attacker_ip")?;
    let intel_id = opt_str(p, "intel_id").map_or_else(|| attacker.to_string(), str::to_owned);
    let providers_ok: Option<Vec<&str>> = p
        .get("providers_ok")
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(Value::as_str).collect());
    let mut out = Fanout::default();
    for (provider, key_field) in PROVIDERS {
        let present = match &providers_ok {
            Some(ok) => ok.contains(&provider),
            None => p.get(key_field).is_some_and(|v| !v.is_null()),
        };
        if !present {
            continue;
        }
        let hash = verdict_hash(provider, p);
        let mut payload = p.clone();
        payload.insert("provider".into(), json!(provider));
        payload.insert("intel_id".into(), json!(intel_id));
        payload.insert("verdict_hash".into(), json!(hash));
        let mut event = EvalEvent::new(
            SourceKind::Intel,
            format!("{intel_id}:{provider}:{hash}"),
            payload,
        );
        event.attacker_uuid = Some(attacker);
        event.ts = opt_str(p, "enriched_at").and_then(parse_ts);
        out.events.push(event);
    }
    Ok(out)
}

/// GreyNoise tag normalisation: lowercase, spaces and hyphens to `_`, other punctuation
/// dropped (`SSH Bruteforcer` → `ssh_bruteforcer`).
pub fn normalise_tag(tag: &str) -> String {
    tag.chars()
        .filter_map(|c| match c {
            ' ' | '-' => Some('_'),
            c if c.is_alphanumeric() || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// First 16 hex digits of SHA-256 over the canonical JSON of one provider's verdict.
pub fn verdict_hash(provider: &str, p: &Map<String, Value>) -> String {
    let list = |key: &str, normalise: bool| -> Value {
        let mut items: Vec<Value> = p
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if normalise {
            items = items
                .iter()
                .filter_map(Value::as_str)
                .map(|s| Value::from(normalise_tag(s)))
                .collect();
        }
        // Numbers in numeric order ([9, 13], not [13, 9]), strings in text order.
        items.sort_by(|a, b| match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            _ => a.to_string().cmp(&b.to_string()),
        });
        items.dedup();
        Value::Array(items)
    };
    let field = |key: &str| p.get(key).cloned().unwrap_or(Value::Null);
    let verdict = match provider {
        "abuseipdb" => json!({
            "score_decile": p.get("abuseipdb_score").and_then(read_int).map(|s| s.div_euclid(10)),
            "categories": list("abuseipdb_categories", false),
        }),
        "greynoise" => json!({
            "classification": p.get("greynoise_classification").and_then(Value::as_str).map(str::to_lowercase),
            "tags": list("greynoise_tags", true),
            "noise": p.get("greynoise_noise").and_then(read_bool),
            "riot": p.get("greynoise_riot").and_then(read_bool),
        }),
        "feodo" => {
            json!({"listed": p.get("feodo_listed").and_then(read_bool), "malware_family": field("feodo_malware_family")})
        }
        _ => json!({
            "threat_types": list("threatfox_threat_types", false),
            "malware_families": list("threatfox_malware_families", false),
            "ioc_types": list("threatfox_ioc_types", false),
        }),
    };
    let canonical: Map<String, Value> = verdict
        .as_object()
        .expect("built as an object")
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let text = serde_json::to_string(&canonical).expect("JSON values serialise");
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}
