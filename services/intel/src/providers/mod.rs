//! The four providers: what each is asked and how its native answer becomes the normalised
//! columns of INTEL.md §2. Requests and parsing are pure, so each provider's answers are
//! tested as data; sending, limits and quotas are the lookup's (`crate::lookup`).

pub(crate) mod abuseipdb;
pub(crate) mod feodo;
pub(crate) mod greynoise;
pub(crate) mod threatfox;

use decnet_storage::{AbuseIpdbIntel, FeodoIntel, GreyNoiseIntel, ThreatFoxIntel};
use serde_json::{Value, json};

/// Raw columns hold at most this much JSON text (STORAGE.md §4.6).
pub(crate) const RAW_LIMIT: usize = 64 * 1024;

/// A provider's verdict columns.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Columns {
    AbuseIpdb(AbuseIpdbIntel),
    GreyNoise(GreyNoiseIntel),
    Feodo(FeodoIntel),
    ThreatFox(ThreatFoxIntel),
}

/// A provider's answer: its columns and the JSON it sent, as the raw column keeps it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    pub(crate) columns: Columns,
    pub(crate) raw: String,
}

/// The body as JSON; the error never quotes it.
pub(crate) fn json_body(body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(body).map_err(|_| "malformed JSON".to_owned())
}

/// The raw column's text: the answer itself when it fits in 64 KiB, else the answer without
/// its largest list (AbuseIPDB's reports, ThreatFox's IOCs), else a note of its size. A JSON
/// text cut at a byte count would no longer be JSON.
pub(crate) fn raw_text(v: &Value) -> String {
    let text = v.to_string();
    if text.len() <= RAW_LIMIT {
        return text;
    }
    let mut slim = v.clone();
    for list in ["reports", "data"] {
        if let Some(obj) = slim.get_mut("data").and_then(Value::as_object_mut)
            && let Some(Value::Array(items)) = obj.get(list)
        {
            let n = items.len();
            obj.remove(list);
            obj.insert(format!("{list}_omitted"), json!(n));
        } else if let Some(obj) = slim.as_object_mut()
            && let Some(Value::Array(items)) = obj.get(list)
        {
            let n = items.len();
            obj.remove(list);
            obj.insert(format!("{list}_omitted"), json!(n));
        }
    }
    let slim = slim.to_string();
    if slim.len() <= RAW_LIMIT {
        return slim;
    }
    json!({"truncated": true, "bytes": text.len()}).to_string()
}

/// Sorted, without repeats.
pub(crate) fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort();
    items.dedup();
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_answers_over_64_kib_lose_their_lists_and_stay_json() {
        let small = json!({"data": {"abuseConfidenceScore": 3}});
        assert_eq!(raw_text(&small), small.to_string());
        let reports: Vec<Value> = (0..2000)
            .map(|i| json!({"comment": "x".repeat(40), "categories": [i % 23]}))
            .collect();
        let big = json!({"data": {"abuseConfidenceScore": 90, "reports": reports}});
        let kept: Value = serde_json::from_str(&raw_text(&big)).unwrap();
        assert_eq!(
            kept,
            json!({"data": {"abuseConfidenceScore": 90, "reports_omitted": 2000}})
        );
        let blob = json!({"x": "y".repeat(70_000)});
        assert_eq!(
            raw_text(&blob),
            json!({"truncated": true, "bytes": 70_008}).to_string()
        );
    }
}
