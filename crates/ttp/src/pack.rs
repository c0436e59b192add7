//! Loading a rule pack from a directory.
//!
//! Only files named `R\d{4}.yaml` are rules; editor temporaries, dotfiles, `.yml` files and
//! the `data/` folder are not. Every file is validated on its own (see [`crate::rule`]), then
//! the pack as a whole: rule ids are unique because file names are, and every file must carry
//! the bundled ATT&CK release. The loader reports every problem of every file before failing.

use std::fmt;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use crate::catalogue::Catalogue;
use crate::lifter::Tables;
use crate::rule::{self, RuleDef, RuleError, is_rule_id};
use crate::yaml::Pos;

/// A validated set of rule definitions, sorted by rule id.
#[derive(Debug, Clone, Default)]
pub struct Pack {
    rules: Vec<RuleDef>,
}

impl Pack {
    /// Build a pack from definitions (sorted by id here).
    pub fn from_rules(mut rules: Vec<RuleDef>) -> Pack {
        rules.sort_by(|a, b| a.rule_id.cmp(&b.rule_id));
        Pack { rules }
    }

    /// The definitions in rule-id order.
    pub fn rules(&self) -> &[RuleDef] {
        &self.rules
    }

    /// A definition by id.
    pub fn get(&self, rule_id: &str) -> Option<&RuleDef> {
        self.rules.iter().find(|r| r.rule_id == rule_id)
    }
}

/// The outcome of loading a directory that did not load.
#[derive(Debug)]
pub enum LoadError {
    /// The directory or a file could not be read.
    Io {
        /// What could not be read.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// One or more rule files are invalid.
    Invalid(Vec<RuleError>),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            LoadError::Invalid(errors) => {
                write!(
                    f,
                    "invalid rule pack ({} error{})",
                    errors.len(),
                    plural(errors.len())
                )
            }
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Io { source, .. } => Some(source),
            LoadError::Invalid(_) => None,
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A loaded pack with the warnings its files raised.
#[derive(Debug)]
pub struct Loaded {
    /// The pack.
    pub pack: Pack,
    /// Non-fatal findings (overdue reviews).
    pub warnings: Vec<RuleError>,
}

/// Whether a file name is a rule file name; returns the rule id.
pub fn rule_file_stem(name: &str) -> Option<&str> {
    name.strip_suffix(".yaml").filter(|stem| is_rule_id(stem))
}

/// Load and validate every rule file of `dir` against the bundled catalogue.
pub fn load_dir(dir: &Path) -> Result<Loaded, LoadError> {
    load_dir_with(dir, Catalogue::bundled(), chrono::Utc::now().date_naive())
}

/// [`load_dir`] with an explicit catalogue and date (tests).
pub fn load_dir_with(
    dir: &Path,
    catalogue: &Catalogue,
    today: NaiveDate,
) -> Result<Loaded, LoadError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LoadError::Io { path, source }
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if rule_file_stem(&name).is_some() && entry.path().is_file() {
            files.push(name);
        }
    }
    files.sort();

    let tables = Tables::in_dir(dir.join("data"));
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for name in &files {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let stem = rule_file_stem(name).expect("filtered above");
        match rule::parse_rule(name, stem, &text, catalogue, &tables, today) {
            Ok((rule, mut warned)) => {
                rules.push(rule);
                warnings.append(&mut warned);
            }
            Err(diag) => {
                errors.extend(diag.errors);
                warnings.extend(diag.warnings);
            }
        }
    }
    if rules.is_empty() && errors.is_empty() {
        errors.push(RuleError {
            file: dir.display().to_string(),
            pos: Pos::default(),
            path: String::new(),
            message: "no rule files (R0001.yaml …) in this directory".to_owned(),
        });
    }
    if errors.is_empty() {
        Ok(Loaded {
            pack: Pack::from_rules(rules),
            warnings,
        })
    } else {
        Err(LoadError::Invalid(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rule_file_names_are_read() {
        assert_eq!(rule_file_stem("R0015.yaml"), Some("R0015"));
        for name in [
            "R0015.yml",
            ".R0015.yaml.swp",
            "R015.yaml",
            "r0015.yaml",
            "R0015.yaml~",
            "notes.yaml",
        ] {
            assert_eq!(rule_file_stem(name), None, "{name}");
        }
    }
}
