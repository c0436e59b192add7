//! Lifters: the code predicates behind rules a regex cannot express.
//!
//! A regex can find text; it cannot count failed logins, compare two domains, decode a base64
//! run or look a provider's category up in a table. A rule binds to one of the lifters here
//! with `match: {kind: lifter:<name>, <parameters…>}`. Each lifter declares the kinds it
//! accepts and its parameters (with the spec's defaults), validates them at load, and at run
//! time is a pure function of (parameters, tables, payload) returning no-fire or a
//! [`Decision`]: which emits to write, a multiplier per emit and evidence extras.
//!
//! Payload fields that are absent mean no-fire. A field of the wrong type is a [`Misfit`]: the
//! rule writes nothing for that event and the engine logs one warning naming the rule and the
//! field; other rules of the same event are unaffected.

use std::fmt;

use serde_json::{Map, Value};

use crate::event::EvalEvent;
use crate::evidence::EvidenceKey;
use crate::fanout::{read_bool, read_int};
use crate::kind::SourceKind;
use crate::rule::Emit;

mod behavioral;
mod canary;
mod credential;
mod email;
mod intel;
mod network;
pub mod params;
pub mod tables;

pub use params::Params;
pub use tables::Tables;

/// What a firing lifter asks the engine to write.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// Evidence the matcher produced, shared by every tag of the decision.
    pub extras: Vec<(EvidenceKey, serde_json::Value)>,
    /// The emits to write; `None` writes every emit of the rule at multiplier 1.
    pub picks: Option<Vec<Pick>>,
}

impl Decision {
    /// Fire every emit, with these extras.
    pub fn all(extras: Vec<(EvidenceKey, serde_json::Value)>) -> Decision {
        Decision {
            extras,
            picks: None,
        }
    }
}

/// One selected emit of a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    /// Position in the rule's `emits`.
    pub emit: usize,
    /// Applied to the emit's base confidence, in [0, 1].
    pub multiplier: f64,
    /// Evidence of this tag only (intel tags list only the signals that chose their technique).
    pub extras: Vec<(EvidenceKey, serde_json::Value)>,
}

/// A payload field of the wrong type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misfit {
    /// The field.
    pub field: String,
    /// What the lifter needs there.
    pub expected: &'static str,
}

impl fmt::Display for Misfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: expected {}", self.field, self.expected)
    }
}

/// What a lifter returns for one event.
pub type Outcome = Result<Option<Decision>, Misfit>;

/// A built lifter, parameters and tables bound.
pub trait Lift: Send + Sync + fmt::Debug {
    /// Decide on one event of a kind the lifter accepts.
    fn lift(&self, event: &EvalEvent) -> Outcome;
}

/// A lifter's entry in the registry: its name, the kinds it accepts and how to build it.
pub struct Spec {
    /// `credential_auth_brute_generic`.
    pub name: &'static str,
    /// Kinds it can evaluate.
    pub kinds: &'static [SourceKind],
    /// Read and check the parameters; `None` when they are invalid (the errors are in `p`).
    pub build: fn(&mut Params<'_>) -> Option<Box<dyn Lift>>,
}

/// Every lifter of the pack (RULES.md §7.0).
pub fn registry() -> impl Iterator<Item = &'static Spec> {
    [
        credential::SPECS,
        behavioral::SPECS,
        email::SPECS,
        canary::SPECS,
        intel::SPECS,
        network::SPECS,
    ]
    .into_iter()
    .flatten()
}

/// The registry entry of a lifter name.
pub fn find(name: &str) -> Option<&'static Spec> {
    registry().find(|s| s.name == name)
}

/// The emits a table's technique id selects: the emit whose technique[.sub] id is exactly
/// `id`; when there is none and `id` is a parent technique, every emit of that technique
/// (RULES.md §8.1: Feodo's T1071 selects emit T1071.001).
pub fn select(emits: &[Emit], id: &str) -> Vec<usize> {
    if let Some(i) = emits.iter().position(|e| e.attack_id() == id) {
        return vec![i];
    }
    if id.contains('.') {
        return Vec::new();
    }
    emits
        .iter()
        .enumerate()
        .filter(|(_, e)| e.technique_id == id)
        .map(|(i, _)| i)
        .collect()
}

/// Typed, lenient reads of an event payload (EVENTS.md §1.3): integers may come as decimal
/// strings, booleans as `0`/`1`. Absent and null are `None`; any other type is a [`Misfit`].
#[derive(Clone, Copy)]
pub(crate) struct Fields<'a>(pub &'a Map<String, Value>);

impl<'a> Fields<'a> {
    fn present(&self, field: &str) -> Option<&'a Value> {
        self.0.get(field).filter(|v| !v.is_null())
    }

    fn misfit(field: &str, expected: &'static str) -> Misfit {
        Misfit {
            field: field.to_owned(),
            expected,
        }
    }

    pub(crate) fn int(&self, field: &str) -> Result<Option<i64>, Misfit> {
        self.present(field)
            .map(|v| read_int(v).ok_or_else(|| Self::misfit(field, "an integer")))
            .transpose()
    }

    pub(crate) fn num(&self, field: &str) -> Result<Option<f64>, Misfit> {
        self.present(field)
            .map(|v| match v {
                Value::Number(n) => n.as_f64().ok_or_else(|| Self::misfit(field, "a number")),
                Value::String(s) => s
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| Self::misfit(field, "a number")),
                _ => Err(Self::misfit(field, "a number")),
            })
            .transpose()
    }

    pub(crate) fn bool(&self, field: &str) -> Result<Option<bool>, Misfit> {
        self.present(field)
            .map(|v| read_bool(v).ok_or_else(|| Self::misfit(field, "a boolean")))
            .transpose()
    }

    pub(crate) fn str(&self, field: &str) -> Result<Option<&'a str>, Misfit> {
        self.present(field)
            .map(|v| v.as_str().ok_or_else(|| Self::misfit(field, "a string")))
            .transpose()
    }

    pub(crate) fn strs(&self, field: &str) -> Result<Vec<&'a str>, Misfit> {
        match self.present(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .filter(|v| !v.is_null())
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| Self::misfit(field, "a list of strings"))
                })
                .collect(),
            Some(_) => Err(Self::misfit(field, "a list of strings")),
        }
    }

    pub(crate) fn ints(&self, field: &str) -> Result<Vec<i64>, Misfit> {
        match self.present(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| read_int(v).ok_or_else(|| Self::misfit(field, "a list of integers")))
                .collect(),
            Some(_) => Err(Self::misfit(field, "a list of integers")),
        }
    }
}

/// The payload of an event, for reading.
pub(crate) fn fields(event: &EvalEvent) -> Fields<'_> {
    Fields(&event.payload)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn emit(tech: &str, sub: Option<&str>) -> Emit {
        Emit {
            tactic: "TA0011".into(),
            technique_id: tech.into(),
            sub_technique_id: sub.map(str::to_owned),
            confidence: 0.85,
        }
    }

    #[test]
    fn a_parent_id_selects_its_sub_technique_emits_only_without_an_exact_one() {
        let emits = [emit("T1071", Some("T1071.001")), emit("T1588", None)];
        assert_eq!(select(&emits, "T1071"), vec![0]);
        assert_eq!(select(&emits, "T1071.001"), vec![0]);
        assert_eq!(select(&emits, "T1588"), vec![1]);
        assert_eq!(select(&emits, "T1588.001"), Vec::<usize>::new());
        let both = [emit("T1071", None), emit("T1071", Some("T1071.001"))];
        assert_eq!(select(&both, "T1071"), vec![0]);
    }

    #[test]
    fn reads_are_lenient_but_typed() {
        let p =
            json!({"n": "12", "b": 1, "s": "x", "l": ["a", null, "b"], "bad": {"x": 1}, "z": null});
        let f = Fields(p.as_object().unwrap());
        assert_eq!(f.int("n"), Ok(Some(12)));
        assert_eq!(f.bool("b"), Ok(Some(true)));
        assert_eq!(f.str("s"), Ok(Some("x")));
        assert_eq!(f.strs("l"), Ok(vec!["a", "b"]));
        assert_eq!(f.int("z"), Ok(None));
        assert_eq!(f.int("absent"), Ok(None));
        assert_eq!(
            f.int("bad").unwrap_err().to_string(),
            "bad: expected an integer"
        );
        assert_eq!(
            f.strs("s").unwrap_err().to_string(),
            "s: expected a list of strings"
        );
    }

    #[test]
    fn every_lifter_name_is_unique_and_claims_a_kind() {
        let names: Vec<&str> = registry().map(|s| s.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        assert!(registry().all(|s| !s.kinds.is_empty()));
    }
}
