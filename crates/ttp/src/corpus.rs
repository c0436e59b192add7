//! Labelled corpora and the per-rule precision/recall score of `decnet rules test`.
//!
//! A corpus is a directory of JSONL files; each row is one evaluation event with the rule ids
//! a competent analyst expects to fire on it. Every row is evaluated by the whole pack (every
//! rule enabled, no ceilings, floor applied, no rate limit) and each rule is scored on the
//! rows of its own kinds. Rules are data, so they are tested as data: one runner, a named case
//! per row.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::anchor::ATTACKER_NAMESPACE;
use crate::engine::RuleIndex;
use crate::event::EvalEvent;
use crate::kind::SourceKind;
use crate::rule::{RuleDef, is_rule_id};

/// Rows a rule needs on each side before its figures mean anything.
pub const MIN_ROWS_EACH_SIDE: usize = 10;
/// Recall every rule must reach.
pub const RECALL_TARGET: f64 = 0.90;

/// One labelled row.
#[derive(Debug, Clone)]
pub struct CorpusRow {
    /// Kind of the event.
    pub source_kind: SourceKind,
    /// The event's fields.
    pub payload: Map<String, Value>,
    /// Every rule expected to fire; empty for a negative.
    pub expected_rule_ids: Vec<String>,
    /// Unique label; also the event's source id.
    pub label: String,
    /// Where the row lives, for messages.
    pub file: PathBuf,
    /// Line in that file, from 1.
    pub line: usize,
}

impl CorpusRow {
    /// The evaluation event of this row, anchored on `UUIDv5(A, "corpus:<label>")`.
    pub fn event(&self) -> EvalEvent {
        let mut event = EvalEvent::new(self.source_kind, self.label.clone(), self.payload.clone());
        let anchor = Uuid::new_v5(
            &ATTACKER_NAMESPACE,
            format!("corpus:{}", self.label).as_bytes(),
        );
        if self.source_kind == SourceKind::Identity {
            event.identity_uuid = Some(anchor);
        } else {
            event.attacker_uuid = Some(anchor);
        }
        event
    }
}

/// A corpus that could not be read.
#[derive(Debug)]
pub enum CorpusError {
    /// A file or the directory could not be read.
    Io {
        /// What.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Rows are malformed; each message names file and line.
    Invalid(Vec<String>),
}

impl fmt::Display for CorpusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorpusError::Io { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            CorpusError::Invalid(errors) => write!(f, "invalid corpus ({} errors)", errors.len()),
        }
    }
}

impl std::error::Error for CorpusError {}

/// Read every `*.jsonl` file of a directory (sorted by name).
pub fn load_corpus(dir: &Path) -> Result<Vec<CorpusRow>, CorpusError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CorpusError::Io { path, source }
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl") && p.is_file())
        .collect();
    files.sort();
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut labels = HashSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(io(&file))?;
        for (i, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let at = format!("{}:{}", file.display(), i + 1);
            match parse_row(trimmed, &file, i + 1) {
                Ok(row) if !labels.insert(row.label.clone()) => {
                    errors.push(format!("{at}: label {:?} is used twice", row.label))
                }
                Ok(row) => rows.push(row),
                Err(e) => errors.push(format!("{at}: {e}")),
            }
        }
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(CorpusError::Invalid(errors))
    }
}

fn parse_row(line: &str, file: &Path, line_no: usize) -> Result<CorpusRow, String> {
    const KEYS: [&str; 4] = ["source_kind", "payload", "expected_rule_ids", "label"];
    let value: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(obj) = value else {
        return Err("expected a JSON object".into());
    };
    if let Some(k) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!("{k}: unknown key"));
    }
    let kind = obj
        .get("source_kind")
        .and_then(Value::as_str)
        .ok_or("source_kind: expected a string")?;
    let source_kind: SourceKind = kind.parse().map_err(|e| format!("source_kind: {e}"))?;
    let Some(Value::Object(payload)) = obj.get("payload") else {
        return Err("payload: expected an object".into());
    };
    let label = obj
        .get("label")
        .and_then(Value::as_str)
        .filter(|l| !l.is_empty())
        .ok_or("label: expected a non-empty string")?;
    let list = obj
        .get("expected_rule_ids")
        .and_then(Value::as_array)
        .ok_or("expected_rule_ids: expected a list")?;
    let mut expected = Vec::new();
    for (i, id) in list.iter().enumerate() {
        match id.as_str() {
            Some(id) if is_rule_id(id) => expected.push(id.to_owned()),
            _ => {
                return Err(format!(
                    "expected_rule_ids[{i}]: expected a rule id like \"R0001\""
                ));
            }
        }
    }
    Ok(CorpusRow {
        source_kind,
        payload: payload.clone(),
        expected_rule_ids: expected,
        label: label.to_owned(),
        file: file.to_path_buf(),
        line: line_no,
    })
}

/// Confidence band of a rule, by its highest base confidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Band {
    /// Base ≥ 0.85: precision target 0.95.
    H,
    /// 0.60 ≤ base < 0.85: precision target 0.80.
    M,
}

impl Band {
    /// The band of a rule.
    pub fn of(rule: &RuleDef) -> Band {
        if rule.top_confidence() >= 0.85 {
            Band::H
        } else {
            Band::M
        }
    }

    /// The precision the band must reach.
    pub fn precision_target(self) -> f64 {
        match self {
            Band::H => 0.95,
            Band::M => 0.80,
        }
    }
}

/// The figures of one rule.
#[derive(Debug, Clone, Serialize)]
pub struct RuleScore {
    /// The rule.
    pub rule_id: String,
    /// Its band.
    pub band: Band,
    /// Rows of the rule's kinds.
    pub rows: usize,
    /// Rows that list the rule.
    pub positives: usize,
    /// Rows of its kinds that do not.
    pub negatives: usize,
    /// Fired and expected.
    pub tp: usize,
    /// Fired, not expected.
    pub fp: usize,
    /// Expected, not fired.
    #[serde(rename = "fn")]
    pub fn_: usize,
    /// TP / (TP + FP); `None` when nothing fired.
    pub precision: Option<f64>,
    /// TP / (TP + FN); `None` without positives.
    pub recall: Option<f64>,
    /// The band's precision target.
    pub precision_target: f64,
    /// The recall target.
    pub recall_target: f64,
    /// Targets met and enough rows on each side.
    pub pass: bool,
    /// Labels of false-positive rows.
    pub fp_labels: Vec<String>,
    /// Labels of false-negative rows.
    pub fn_labels: Vec<String>,
}

/// The outcome of a corpus run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// One entry per scored rule, in rule order.
    pub rules: Vec<RuleScore>,
    /// Expected ids the pack does not hold.
    pub not_scored: Vec<String>,
}

impl Report {
    /// Whether every scored rule passed.
    pub fn passed(&self) -> bool {
        self.rules.iter().all(|r| r.pass)
    }
}

/// Evaluate every row with the whole index and score the rules in `selected` (all when empty).
pub fn score(
    index: &RuleIndex,
    rows: &[CorpusRow],
    selected: &BTreeSet<String>,
    now: DateTime<Utc>,
) -> Report {
    let fired: Vec<BTreeSet<String>> = rows
        .iter()
        .map(|row| {
            index
                .evaluate(&row.event(), now)
                .tags
                .into_iter()
                .map(|t| t.rule_id.to_string())
                .collect()
        })
        .collect();
    let mut scores = Vec::new();
    let held: BTreeSet<&str> = index.rules().map(|(r, _)| r.rule_id.as_str()).collect();
    for (rule, _) in index.rules() {
        if !selected.is_empty() && !selected.contains(&rule.rule_id) {
            continue;
        }
        scores.push(score_rule(rule, rows, &fired));
    }
    let not_scored: BTreeMap<&str, ()> = rows
        .iter()
        .flat_map(|r| r.expected_rule_ids.iter())
        .filter(|id| !held.contains(id.as_str()))
        .map(|id| (id.as_str(), ()))
        .collect();
    Report {
        rules: scores,
        not_scored: not_scored.into_keys().map(str::to_owned).collect(),
    }
}

fn score_rule(rule: &RuleDef, rows: &[CorpusRow], fired: &[BTreeSet<String>]) -> RuleScore {
    let band = Band::of(rule);
    let mut s = RuleScore {
        rule_id: rule.rule_id.clone(),
        band,
        rows: 0,
        positives: 0,
        negatives: 0,
        tp: 0,
        fp: 0,
        fn_: 0,
        precision: None,
        recall: None,
        precision_target: band.precision_target(),
        recall_target: RECALL_TARGET,
        pass: false,
        fp_labels: Vec::new(),
        fn_labels: Vec::new(),
    };
    for (row, fired) in rows.iter().zip(fired) {
        if !rule.applies_to.contains(&row.source_kind) {
            continue;
        }
        s.rows += 1;
        let expected = row.expected_rule_ids.contains(&rule.rule_id);
        let hit = fired.contains(&rule.rule_id);
        if expected {
            s.positives += 1
        } else {
            s.negatives += 1
        }
        match (expected, hit) {
            (true, true) => s.tp += 1,
            (false, true) => {
                s.fp += 1;
                s.fp_labels.push(row.label.clone())
            }
            (true, false) => {
                s.fn_ += 1;
                s.fn_labels.push(row.label.clone())
            }
            (false, false) => {}
        }
    }
    s.precision = ratio(s.tp, s.tp + s.fp);
    s.recall = ratio(s.tp, s.tp + s.fn_);
    s.pass = s.positives >= MIN_ROWS_EACH_SIDE
        && s.negatives >= MIN_ROWS_EACH_SIDE
        && s.precision.is_some_and(|p| p >= s.precision_target)
        && s.recall.is_some_and(|r| r >= s.recall_target);
    s
}

fn ratio(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}
