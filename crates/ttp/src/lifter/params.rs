//! Lifter parameters as written under `match:`, read with located errors.
//!
//! A lifter asks for each parameter by name, type, range and default; whatever the rule file
//! holds under `match` besides `kind` must be asked for, or it is reported as an unknown key.
//! A bad value is recorded and the default stands in, so one pass reports every problem.

use regex::Regex;

use super::tables::{Table, Tables};
use crate::rule::{Emit, RuleError};
use crate::yaml::{self, Node, Pos, Value};

/// The parameters of one lifter-bound rule while it is validated.
pub struct Params<'a> {
    file: &'a str,
    match_pos: Pos,
    entries: Vec<(&'a str, Pos, &'a Node)>,
    asked: Vec<&'static str>,
    emits: &'a [Emit],
    tables: &'a Tables,
    errors: Vec<RuleError>,
}

impl<'a> Params<'a> {
    /// Parameters from the `match` mapping's entries other than `kind`.
    pub fn new(
        file: &'a str,
        match_pos: Pos,
        entries: Vec<(&'a str, Pos, &'a Node)>,
        emits: &'a [Emit],
        tables: &'a Tables,
    ) -> Params<'a> {
        Params {
            file,
            match_pos,
            entries,
            asked: Vec::new(),
            emits,
            tables,
            errors: Vec::new(),
        }
    }

    /// The rule's emits, for lifters that select among them.
    pub fn emits(&self) -> &'a [Emit] {
        self.emits
    }

    /// Record a problem at `pos`, under `match.<path>`.
    pub fn error(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        self.errors.push(RuleError {
            file: self.file.to_owned(),
            pos,
            path: format!("match.{path}"),
            message: message.into(),
        });
    }

    /// Record a problem located in a data table.
    pub fn table_error(&mut self, error: RuleError) {
        self.errors.push(error);
    }

    /// The node of a parameter, if written.
    pub fn node(&mut self, name: &'static str) -> Option<&'a Node> {
        self.asked.push(name);
        self.entries
            .iter()
            .find(|(k, _, _)| *k == name)
            .map(|(_, _, n)| *n)
    }

    /// An integer parameter in `min..=max`.
    pub fn int(&mut self, name: &'static str, default: i64, min: i64, max: i64) -> i64 {
        let Some(node) = self.node(name) else {
            return default;
        };
        match scalar(node).and_then(|s| s.parse::<i64>().ok()) {
            Some(n) if (min..=max).contains(&n) => n,
            Some(n) => {
                self.error(node.pos, name, format!("{n} is out of range {min}..={max}"));
                default
            }
            None => {
                let found = describe(node);
                self.error(
                    node.pos,
                    name,
                    format!("expected an integer, found {found}"),
                );
                default
            }
        }
    }

    /// A number parameter in `[min, max]`.
    pub fn num(&mut self, name: &'static str, default: f64, min: f64, max: f64) -> f64 {
        let Some(node) = self.node(name) else {
            return default;
        };
        match scalar(node).and_then(|s| s.parse::<f64>().ok()) {
            Some(n) if (min..=max).contains(&n) => n,
            Some(n) => {
                self.error(node.pos, name, format!("{n} is outside [{min}, {max}]"));
                default
            }
            None => {
                let found = describe(node);
                self.error(node.pos, name, format!("expected a number, found {found}"));
                default
            }
        }
    }

    /// A boolean parameter.
    pub fn bool(&mut self, name: &'static str, default: bool) -> bool {
        let Some(node) = self.node(name) else {
            return default;
        };
        match scalar(node) {
            Some("true") => true,
            Some("false") => false,
            _ => {
                let found = describe(node);
                self.error(
                    node.pos,
                    name,
                    format!("expected true or false, found {found}"),
                );
                default
            }
        }
    }

    /// A non-empty string parameter.
    pub fn string(&mut self, name: &'static str, default: &str) -> String {
        let Some(node) = self.node(name) else {
            return default.to_owned();
        };
        match node.as_scalar().map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => s.to_owned(),
            None => {
                let found = describe(node);
                self.error(
                    node.pos,
                    name,
                    format!("expected a non-empty string, found {found}"),
                );
                default.to_owned()
            }
        }
    }

    /// Where the `match` mapping starts, for errors about the mapping as a whole.
    pub fn match_pos(&self) -> Pos {
        self.match_pos
    }

    /// A non-empty list of strings; each must be one of `allowed` when that is not empty.
    pub fn strings(
        &mut self,
        name: &'static str,
        default: &[&str],
        allowed: &[&str],
    ) -> Vec<String> {
        let owned = || default.iter().map(|s| (*s).to_owned()).collect();
        let Some(node) = self.node(name) else {
            return owned();
        };
        let Value::Seq(items) = &node.value else {
            let found = node.shape();
            self.error(node.pos, name, format!("expected a list, found {found}"));
            return owned();
        };
        if items.is_empty() {
            self.error(node.pos, name, "must not be empty");
            return owned();
        }
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{name}[{i}]");
            match item.as_scalar().map(str::trim).filter(|s| !s.is_empty()) {
                Some(s) if !allowed.is_empty() && !allowed.contains(&s) => self.error(
                    item.pos,
                    &path,
                    format!("{s:?} is not one of {}", allowed.join(", ")),
                ),
                Some(s) if out.iter().any(|o: &String| o == s) => {
                    self.error(item.pos, &path, format!("{s:?} is listed twice"))
                }
                Some(s) => out.push(s.to_owned()),
                None => self.error(item.pos, &path, "expected a non-empty string"),
            }
        }
        out
    }

    /// A non-empty list of regexes (Rust syntax, compiled here).
    pub fn regexes(&mut self, name: &'static str, default: &[&str]) -> Vec<Regex> {
        let node = self.node(name);
        self.asked.pop();
        let texts = self.strings(name, default, &[]);
        let mut out = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            // The compiled-size bound of RULES.md §2 applies to lifter patterns as to rules.
            match regex::RegexBuilder::new(text).size_limit(1 << 20).build() {
                Ok(re) if re.is_match("") => {
                    let pos = item_pos(node, i, self.match_pos);
                    self.error(pos, &format!("{name}[{i}]"), "matches the empty string");
                }
                Ok(re) => out.push(re),
                Err(e) => {
                    let pos = item_pos(node, i, self.match_pos);
                    let first = e.to_string();
                    let last = first.lines().last().unwrap_or_default().trim().to_owned();
                    self.error(
                        pos,
                        &format!("{name}[{i}]"),
                        format!("invalid pattern: {last}"),
                    );
                }
            }
        }
        out
    }

    /// A required table reference (`catalogue: c2_fingerprints`, `mapping: abuseipdb`),
    /// loaded and validated; `folder` is where such tables live under `data/`.
    pub fn table(&mut self, name: &'static str, folder: &str) -> Option<Table> {
        let Some(node) = self.node(name) else {
            let pos = self.match_pos;
            self.error(pos, name, "missing required key (the data table to use)");
            return None;
        };
        let Some(table) = node.as_scalar().filter(|s| is_table_name(s)) else {
            let found = describe(node);
            self.error(
                node.pos,
                name,
                format!("expected a table name (a-z, 0-9, _), found {found}"),
            );
            return None;
        };
        let rel = if folder.is_empty() {
            format!("{table}.yaml")
        } else {
            format!("{folder}/{table}.yaml")
        };
        match self.tables.read(&rel) {
            Ok(loaded) => Some(loaded),
            Err(message) => {
                self.error(node.pos, name, message);
                None
            }
        }
    }

    /// Every problem found, unknown parameters included.
    pub fn finish(mut self) -> Vec<RuleError> {
        let unknown: Vec<(&str, Pos)> = self
            .entries
            .iter()
            .filter(|(k, _, _)| !self.asked.contains(k))
            .map(|(k, pos, _)| (*k, *pos))
            .collect();
        for (key, pos) in unknown {
            let known = self.asked.join(", ");
            let hint = if known.is_empty() {
                "this lifter takes no parameters".to_owned()
            } else {
                format!("this lifter takes {known}")
            };
            self.error(pos, key, format!("unknown key ({hint})"));
        }
        self.errors
    }
}

fn scalar(node: &Node) -> Option<&str> {
    match &node.value {
        Value::Scalar(s, false) => Some(s),
        _ => None,
    }
}

fn describe(node: &Node) -> String {
    match &node.value {
        Value::Scalar(s, _) if yaml::is_null(s) => "null".to_owned(),
        Value::Scalar(s, _) => format!("{s:?}"),
        _ => node.shape().to_owned(),
    }
}

fn item_pos(node: Option<&Node>, i: usize, fallback: Pos) -> Pos {
    match node.map(|n| &n.value) {
        Some(Value::Seq(items)) => items.get(i).map_or(fallback, |n| n.pos),
        _ => node.map_or(fallback, |n| n.pos),
    }
}

fn is_table_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}
