//! A rule's resolved source: the rule file's text followed by every data table it references,
//! as one text (RULES.md §2).
//!
//! The rule store publishes this text on `ttp.rule.reloaded.<rule_id>` and hashes it, so a
//! tagger that never sees the rules directory compiles exactly what the store validated, and a
//! change to a table changes the hash of every rule that reads it. The text is a YAML stream:
//! the rule is the first document, unchanged, so positions in its errors are the file's own;
//! each table follows as a document introduced by a marker line naming its path.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use chrono::NaiveDate;
use sha2::{Digest, Sha256};

use crate::catalogue::Catalogue;
use crate::lifter::Tables;
use crate::rule::{self, Diagnostics, RuleDef, RuleError};
use crate::yaml::{self, Node, Pos, Value};

/// The line that introduces a table: the marker, then the path relative to `data/`.
pub const TABLE_MARKER: &str = "--- # decnet data table: ";

/// The largest resolved source the store accepts (STORAGE.md §4.4).
pub const MAX_SOURCE_BYTES: usize = 512 * 1024;

/// A rule read from a rules directory, validated, with its resolved source.
#[derive(Debug, Clone)]
pub struct SourcedRule {
    /// The compiled definition.
    pub def: RuleDef,
    /// The file path relative to the rules directory (`R0015.yaml`).
    pub source_path: String,
    /// The rule text with the tables it read appended.
    pub source: String,
    /// Lower-case hex SHA-256 of `source`.
    pub sha256: String,
    /// Non-fatal findings (overdue review).
    pub warnings: Vec<RuleError>,
}

/// Why a rule file or a resolved source could not be used.
#[derive(Debug)]
pub enum SourceError {
    /// The file could not be read.
    Io(std::io::Error),
    /// The rule does not validate; every problem, located.
    Invalid(Diagnostics),
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::Io(e) => write!(f, "{e}"),
            SourceError::Invalid(diag) => {
                let lines: Vec<String> = diag.errors.iter().map(ToString::to_string).collect();
                f.write_str(&lines.join("\n"))
            }
        }
    }
}

impl std::error::Error for SourceError {}

/// The resolved source of a rule text and the tables it read (paths relative to `data/`).
pub fn resolve(rule_text: &str, tables: &BTreeMap<String, String>) -> String {
    let mut out =
        String::with_capacity(rule_text.len() + tables.values().map(String::len).sum::<usize>());
    out.push_str(rule_text);
    for (path, text) in tables {
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(TABLE_MARKER);
        out.push_str(path);
        out.push('\n');
        out.push_str(text);
    }
    out
}

/// Split a resolved source into the rule text and its tables.
pub fn split(source: &str) -> (&str, BTreeMap<String, String>) {
    let mut tables = BTreeMap::new();
    let mut marker = find_marker(source, 0);
    let rule_text = &source[..marker.unwrap_or(source.len())];
    while let Some(start) = marker {
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let path = source[start + TABLE_MARKER.len()..line_end]
            .trim()
            .to_owned();
        let body_start = (line_end + 1).min(source.len());
        marker = find_marker(source, body_start);
        let body = &source[body_start..marker.unwrap_or(source.len())];
        tables.insert(path, body.to_owned());
    }
    (rule_text, tables)
}

/// The byte offset of the next marker line at or after `from`.
fn find_marker(source: &str, from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        if source[at..].starts_with(TABLE_MARKER) && (at == 0 || source.as_bytes()[at - 1] == b'\n')
        {
            return Some(at);
        }
        at += source[at..].find('\n')? + 1;
    }
}

/// Lower-case hex SHA-256 of a text.
pub fn sha256_hex(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// Read and validate `<dir>/<file_name>` with the tables under `<dir>/data`, and resolve it.
///
/// `file_name` must be a rule file name (`R0015.yaml`); the caller filters names first.
pub fn load_file(
    dir: &Path,
    file_name: &str,
    catalogue: &Catalogue,
    today: NaiveDate,
) -> Result<SourcedRule, SourceError> {
    let stem = crate::pack::rule_file_stem(file_name).unwrap_or(file_name);
    let text = std::fs::read_to_string(dir.join(file_name)).map_err(SourceError::Io)?;
    // A table set per rule records exactly the tables this rule read.
    let tables = Tables::in_dir(dir.join("data"));
    let (def, warnings) = rule::parse_rule(file_name, stem, &text, catalogue, &tables, today)
        .map_err(SourceError::Invalid)?;
    let source = resolve(&text, &tables.texts());
    if source.len() > MAX_SOURCE_BYTES {
        return Err(SourceError::Invalid(single_error(
            file_name,
            format!(
                "the rule with its data tables is {} bytes; at most {MAX_SOURCE_BYTES} are accepted",
                source.len()
            ),
        )));
    }
    let sha256 = sha256_hex(&source);
    Ok(SourcedRule {
        def,
        source_path: file_name.to_owned(),
        source,
        sha256,
        warnings,
    })
}

/// Validate and compile a resolved source as published on `ttp.rule.reloaded.<rule_id>`.
pub fn parse_source(
    rule_id: &str,
    source: &str,
    catalogue: &Catalogue,
    today: NaiveDate,
) -> Result<RuleDef, Diagnostics> {
    let (text, tables) = split(source);
    let tables = Tables::in_memory(tables);
    let file = format!("{rule_id}.yaml");
    rule::parse_rule(&file, rule_id, text, catalogue, &tables, today).map(|(def, _)| def)
}

/// Which of the parts that need a `rule_version` bump (`applies_to`, `match`, `emits`) differ
/// between two definitions of a rule; empty when none does.
///
/// `applies_to` and `emits` are compared as validated values; `match` as YAML structure
/// without positions, so reformatting a pattern's quoting or indentation is not a change,
/// while a different pattern, field or lifter parameter is. A data table the match references
/// is curated data and needs no bump, so only its name is compared.
pub fn core_changes(old: (&RuleDef, &str), new: (&RuleDef, &str)) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.0.applies_to != new.0.applies_to {
        changed.push("applies_to");
    }
    let match_of = |source: &str| {
        let (text, _) = split(source);
        yaml::parse(text)
            .ok()
            .flatten()
            .and_then(|root| top_value(&root, "match"))
    };
    let same_match = match (match_of(old.1), match_of(new.1)) {
        (Some(a), Some(b)) => same_structure(&a, &b),
        _ => false,
    };
    if !same_match {
        changed.push("match");
    }
    if old.0.emits != new.0.emits {
        changed.push("emits");
    }
    changed
}

fn top_value(root: &Node, key: &str) -> Option<Node> {
    match &root.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.as_scalar() == Some(key))
            .map(|(_, v)| v.clone()),
        _ => None,
    }
}

fn same_structure(a: &Node, b: &Node) -> bool {
    match (&a.value, &b.value) {
        (Value::Scalar(x, _), Value::Scalar(y, _)) => x == y,
        (Value::Seq(xs), Value::Seq(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| same_structure(x, y))
        }
        (Value::Map(xs), Value::Map(ys)) => {
            xs.len() == ys.len()
                && xs.iter().all(|(k, v)| {
                    ys.iter()
                        .find(|(k2, _)| same_structure(k, k2))
                        .is_some_and(|(_, v2)| same_structure(v, v2))
                })
        }
        _ => false,
    }
}

fn single_error(file: &str, message: String) -> Diagnostics {
    Diagnostics {
        errors: vec![RuleError {
            file: file.to_owned(),
            pos: Pos::default(),
            path: String::new(),
            message,
        }],
        warnings: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resolved_source_splits_back_into_its_parts() {
        let tables = BTreeMap::from([
            ("intel/abuseipdb.yaml".to_owned(), "a: 1\n".to_owned()),
            ("c2_fingerprints.yaml".to_owned(), "b: 2".to_owned()),
        ]);
        let source = resolve("rule_id: R0001\n", &tables);
        assert_eq!(
            source,
            "rule_id: R0001\n--- # decnet data table: c2_fingerprints.yaml\nb: 2\n\
             --- # decnet data table: intel/abuseipdb.yaml\na: 1\n"
        );
        let (rule, back) = split(&source);
        assert_eq!(rule, "rule_id: R0001\n");
        assert_eq!(back["intel/abuseipdb.yaml"], "a: 1\n");
        assert_eq!(back["c2_fingerprints.yaml"], "b: 2\n");
        assert_eq!(split("rule_id: R0001").0, "rule_id: R0001");
    }

    #[test]
    fn a_marker_only_counts_at_the_start_of_a_line() {
        let text = "description: 'x --- # decnet data table: y'\n";
        assert_eq!(split(text), (text, BTreeMap::new()));
    }

    #[test]
    fn sha256_is_lower_hex() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
