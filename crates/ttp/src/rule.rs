//! One rule definition in its typed, validated form, and the located errors of a file.
//!
//! A definition is what a rule author writes and reviews in git; its operational state lives
//! apart (see [`crate::state`]). Definitions are only ever built by [`crate::validate`], so a
//! `RuleDef` that exists is one whose techniques, tactics and pattern have been checked.

use std::fmt;
use std::sync::Arc;

use chrono::NaiveDate;
use regex::Regex;

use crate::evidence::EvidenceKey;
use crate::kind::SourceKind;
use crate::lifter::Lift;
use crate::yaml::Pos;

pub use crate::validate::parse_rule;

/// Default per-rule, per-anchor tag budget in a 60-second window.
pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 60;
/// The lowest base confidence a shipped rule may carry (L-band rules are not shipped).
pub const MIN_BASE_CONFIDENCE: f64 = 0.60;

/// A validated rule definition.
#[derive(Debug, Clone)]
pub struct RuleDef {
    /// `R0015`.
    pub rule_id: String,
    /// Part of every tag id; bumped when what the rule matches or emits changes.
    pub rule_version: u32,
    /// `suid_search`.
    pub name: String,
    /// One-line explanation shown to operators.
    pub description: String,
    /// The ATT&CK release the rule was written against.
    pub attack_release: String,
    /// Source kinds the rule evaluates.
    pub applies_to: Vec<SourceKind>,
    /// How the rule decides to fire.
    pub matcher: Matcher,
    /// Techniques the rule emits, in file order.
    pub emits: Vec<Emit>,
    /// Payload keys copied into evidence.
    pub evidence_fields: Vec<EvidenceKey>,
    /// Per-anchor tag budget per minute.
    pub rate_limit_per_minute: u32,
    /// Last review date.
    pub last_reviewed: Option<NaiveDate>,
    /// Next review due.
    pub next_review: Option<NaiveDate>,
}

impl RuleDef {
    /// The highest base confidence: the rule's band and precision target follow from it.
    pub fn top_confidence(&self) -> f64 {
        self.emits.iter().map(|e| e.confidence).fold(0.0, f64::max)
    }
}

/// The matcher of a rule.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// A regex over one or more string fields.
    Regex(RegexMatcher),
    /// A code predicate (`match.kind: lifter:<name>`).
    Lifter(LifterMatcher),
}

/// A built lifter with its parameters and tables bound.
#[derive(Debug, Clone)]
pub struct LifterMatcher {
    /// The registry name (`credential_auth_brute_generic`).
    pub name: String,
    /// The predicate.
    pub lifter: Arc<dyn Lift>,
}

/// A compiled regex matcher.
#[derive(Debug, Clone)]
pub struct RegexMatcher {
    /// Fields in priority order; empty means the default field of each kind.
    pub fields: Vec<String>,
    /// The pattern as written, `{{cmd}}` unexpanded.
    pub pattern: String,
    /// The compiled, expanded pattern.
    pub regex: Regex,
}

impl RegexMatcher {
    /// The fields this matcher reads for events of `kind`, in priority order.
    pub fn fields_for(&self, kind: SourceKind) -> impl Iterator<Item = &str> {
        let default = self
            .fields
            .is_empty()
            .then(|| kind.default_field())
            .flatten();
        default.into_iter().chain(
            self.fields
                .iter()
                .map(String::as_str)
                .filter(move |f| kind.has_string_field(f)),
        )
    }
}

/// One technique a rule emits.
#[derive(Debug, Clone, PartialEq)]
pub struct Emit {
    /// `TA0004`.
    pub tactic: String,
    /// The parent technique, `T1548`.
    pub technique_id: String,
    /// The sub-technique, `T1548.001`.
    pub sub_technique_id: Option<String>,
    /// Base confidence in [0.6, 1].
    pub confidence: f64,
}

impl Emit {
    /// The most specific id: the sub-technique when there is one.
    pub fn attack_id(&self) -> &str {
        self.sub_technique_id
            .as_deref()
            .unwrap_or(&self.technique_id)
    }
}

/// One validation problem, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// File name as the author knows it (`R0015.yaml`).
    pub file: String,
    /// Position in the file; line 0 when the problem concerns the whole file.
    pub pos: Pos,
    /// Field path (`emits[1].tactic`); empty for file-level problems.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.pos.line > 0 {
            write!(f, ":{}:{}", self.pos.line, self.pos.col)?;
        }
        if self.path.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for RuleError {}

/// Problems of one file, plus warnings that do not stop it loading.
#[derive(Debug, Default)]
pub struct Diagnostics {
    /// Errors: the file does not load.
    pub errors: Vec<RuleError>,
    /// Warnings: the file loads (a past `next_review`, …).
    pub warnings: Vec<RuleError>,
}

/// `R` followed by four digits.
pub fn is_rule_id(s: &str) -> bool {
    s.len() == 5 && s.starts_with('R') && s[1..].bytes().all(|b| b.is_ascii_digit())
}
