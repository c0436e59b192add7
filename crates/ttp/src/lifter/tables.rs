//! Data tables of the pack: curated lists a lifter reads (`rules/ttp/data/…`).
//!
//! A table is YAML, validated by the lifter that uses it with errors located in the table's
//! own file (`data/c2_fingerprints.yaml:14:12: entries[2].value: …`), so a curator who edits
//! a list sees the same kind of message as a rule author. Tables are part of a rule's resolved
//! source: the text is kept so a change to a table can be detected and republished.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::rule::{Emit, RuleError};
use crate::yaml::{self, Node, Pos, Value};

/// Where tables come from: the `data/` folder of a rules directory, or memory (tests).
#[derive(Debug, Default)]
pub struct Tables {
    dir: Option<PathBuf>,
    memory: BTreeMap<String, String>,
    /// Texts read so far, by relative path: the tables the pack depends on.
    read: Mutex<BTreeMap<String, String>>,
}

/// One table, parsed.
#[derive(Debug, Clone)]
pub struct Table {
    /// `data/intel/abuseipdb.yaml`: the name errors carry.
    pub file: String,
    /// The stem (`abuseipdb`).
    pub name: String,
    /// The document; `None` for an empty file.
    pub root: Option<Node>,
}

impl Tables {
    /// Tables under `dir` (a rules directory's `data/` folder).
    pub fn in_dir(dir: impl Into<PathBuf>) -> Tables {
        Tables {
            dir: Some(dir.into()),
            ..Tables::default()
        }
    }

    /// Tables held in memory, by path relative to `data/` (`intel/abuseipdb.yaml`).
    pub fn in_memory(tables: impl IntoIterator<Item = (String, String)>) -> Tables {
        Tables {
            memory: tables.into_iter().collect(),
            ..Tables::default()
        }
    }

    /// The texts of every table read so far, by path relative to `data/`.
    pub fn texts(&self) -> BTreeMap<String, String> {
        self.read.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Read and parse `rel`; the error is a message for the rule that referenced it.
    pub fn read(&self, rel: &str) -> Result<Table, String> {
        let file = format!("data/{rel}");
        let text = match (self.memory.get(rel), &self.dir) {
            (Some(text), _) => text.clone(),
            (None, Some(dir)) => std::fs::read_to_string(dir.join(rel))
                .map_err(|e| format!("cannot read table {file}: {e}"))?,
            (None, None) => return Err(format!("table {file} does not exist")),
        };
        let root = yaml::parse(&text).map_err(|e| {
            format!(
                "table {file} is not valid YAML: {}:{}:{}: {}",
                file, e.pos.line, e.pos.col, e.message
            )
        })?;
        if let Ok(mut read) = self.read.lock() {
            read.insert(rel.to_owned(), text);
        }
        let name = rel
            .rsplit('/')
            .next()
            .unwrap_or(rel)
            .trim_end_matches(".yaml")
            .to_owned();
        Ok(Table { file, name, root })
    }
}

/// Typed reads of a table's nodes with errors located in the table file.
pub struct TableReader<'t> {
    file: &'t str,
    /// Problems found so far.
    pub errors: Vec<RuleError>,
}

impl<'t> TableReader<'t> {
    /// A reader for `table`.
    pub fn new(table: &'t Table) -> TableReader<'t> {
        TableReader {
            file: &table.file,
            errors: Vec::new(),
        }
    }

    /// Record a problem.
    pub fn error(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        self.errors.push(RuleError {
            file: self.file.to_owned(),
            pos,
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// The entries of a mapping, with unknown keys and missing required keys reported.
    pub fn map<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        known: &[&str],
        required: &[&str],
    ) -> Option<Vec<(&'n str, &'n Node)>> {
        let Value::Map(entries) = &node.value else {
            self.error(
                node.pos,
                path,
                format!("expected a mapping, found {}", node.shape()),
            );
            return None;
        };
        let mut out = Vec::new();
        for (key, value) in entries {
            let name = key.as_scalar().unwrap_or_default();
            let at = join(path, name);
            if !known.contains(&name) {
                self.error(key.pos, &at, "unknown key");
            } else if out.iter().any(|(k, _)| *k == name) {
                self.error(key.pos, &at, "duplicate key");
            } else {
                out.push((name, value));
            }
        }
        for req in required {
            if !out.iter().any(|(k, _)| k == req) {
                self.error(node.pos, &join(path, req), "missing required key");
            }
        }
        Some(out)
    }

    /// A list.
    pub fn seq<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            _ => {
                self.error(
                    node.pos,
                    path,
                    format!("expected a list, found {}", node.shape()),
                );
                None
            }
        }
    }

    /// A non-empty string.
    pub fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.value {
            Value::Scalar(s, quoted) if !s.is_empty() && (*quoted || !yaml::is_null(s)) => {
                Some(s.clone())
            }
            _ => {
                self.error(node.pos, path, "expected a non-empty string");
                None
            }
        }
    }

    /// A list of non-empty strings.
    pub fn strings(&mut self, node: &Node, path: &str) -> Option<Vec<String>> {
        let items = self.seq(node, path)?;
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            out.push(self.string(item, &format!("{path}[{i}]"))?);
        }
        Some(out)
    }

    /// Resolve an entry's technique ids to the rule's emits (see [`super::select`]); an id no
    /// emit carries is an error located here, in the table: an unmapped selection must never
    /// be a silent drop.
    pub fn emits(
        &mut self,
        emits: &[Emit],
        techniques: &[String],
        path: &str,
        pos: Pos,
    ) -> Option<Vec<usize>> {
        let mut out = Vec::new();
        for (i, id) in techniques.iter().enumerate() {
            let chosen = super::select(emits, id);
            if chosen.is_empty() {
                self.error(
                    pos,
                    &format!("{path}[{i}]"),
                    format!("{id} is not among the rule's emits"),
                );
                return None;
            }
            for c in chosen {
                if !out.contains(&c) {
                    out.push(c);
                }
            }
        }
        if out.is_empty() {
            self.error(pos, path, "must list at least one technique");
            return None;
        }
        out.sort_unstable();
        Some(out)
    }

    /// An integer in `min..=max`.
    pub fn int(&mut self, node: &Node, path: &str, min: i64, max: i64) -> Option<i64> {
        match node.as_scalar().and_then(|s| s.parse::<i64>().ok()) {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.error(
                    node.pos,
                    path,
                    format!("expected an integer in {min}..={max}"),
                );
                None
            }
        }
    }
}

/// `a.b`, or `b` at the top.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}
