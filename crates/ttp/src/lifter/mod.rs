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

use std::cell::RefCell;
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

/// The fields of the wrong type a lifter met while deciding on one event. Such a field
/// counts as absent (RULES.md §1), so "A or B" still fires on B; the engine logs one warning
/// per field naming the rule, and the caller counts them.
#[derive(Debug, Default)]
pub struct Misfits(RefCell<Vec<Misfit>>);

impl Misfits {
    fn record(&self, field: &str, expected: &'static str) {
        let mut list = self.0.borrow_mut();
        if !list.iter().any(|m| m.field == field) {
            list.push(Misfit {
                field: field.to_owned(),
                expected,
            });
        }
    }

    /// What was recorded, in the order met.
    pub fn take(&self) -> Vec<Misfit> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}

/// A built lifter, parameters and tables bound.
pub trait Lift: Send + Sync + fmt::Debug {
    /// Decide on one event of a kind the lifter accepts; fields of the wrong type are read as
    /// absent and noted in `misfits`.
    fn lift(&self, event: &EvalEvent, misfits: &Misfits) -> Option<Decision>;

    /// Whether the lifter reads a field that producers leave off the bus and the tagger
    /// fetches only when some rule needs it (`body_text`, read from the quarantine).
    fn reads_fetched(&self, field: &str) -> bool {
        let _ = field;
        false
    }
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
/// strings, booleans as `0`/`1` or `"true"`. Absent and null are `None`; a value of any other
/// type is `None` too, and noted as a [`Misfit`].
#[derive(Clone, Copy)]
pub(crate) struct Fields<'a> {
    payload: &'a Map<String, Value>,
    misfits: &'a Misfits,
}

impl<'a> Fields<'a> {
    fn present(&self, field: &str) -> Option<&'a Value> {
        self.payload.get(field).filter(|v| !v.is_null())
    }

    fn read<T>(
        &self,
        field: &str,
        expected: &'static str,
        convert: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Option<T> {
        let value = self.present(field)?;
        let read = convert(value);
        if read.is_none() {
            self.misfits.record(field, expected);
        }
        read
    }

    pub(crate) fn int(&self, field: &str) -> Option<i64> {
        self.read(field, "an integer", read_int)
    }

    pub(crate) fn num(&self, field: &str) -> Option<f64> {
        self.read(field, "a number", |v| match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        })
    }

    pub(crate) fn bool(&self, field: &str) -> Option<bool> {
        self.read(field, "a boolean", read_bool)
    }

    pub(crate) fn str(&self, field: &str) -> Option<&'a str> {
        self.read(field, "a string", Value::as_str)
    }

    /// The strings of a list; items of another type are skipped (and noted).
    pub(crate) fn strs(&self, field: &str) -> Vec<&'a str> {
        self.list(field, "a list of strings", Value::as_str)
    }

    /// The integers of a list; items of another type are skipped (and noted).
    pub(crate) fn ints(&self, field: &str) -> Vec<i64> {
        self.list(field, "a list of integers", read_int)
    }

    fn list<T>(
        &self,
        field: &str,
        expected: &'static str,
        item: impl Fn(&'a Value) -> Option<T>,
    ) -> Vec<T> {
        match self.present(field) {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                let read: Vec<T> = items
                    .iter()
                    .filter(|v| !v.is_null())
                    .filter_map(&item)
                    .collect();
                if read.len() != items.iter().filter(|v| !v.is_null()).count() {
                    self.misfits.record(field, expected);
                }
                read
            }
            Some(_) => {
                self.misfits.record(field, expected);
                Vec::new()
            }
        }
    }
}

/// The payload of an event, for reading.
pub(crate) fn fields<'a>(event: &'a EvalEvent, misfits: &'a Misfits) -> Fields<'a> {
    Fields {
        payload: &event.payload,
        misfits,
    }
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
    fn reads_are_lenient_and_misfits_read_as_absent() {
        let p = json!({"n": "12", "b": 1, "s": "x", "l": ["a", null, "b", 5], "bad": {"x": 1}, "z": null});
        let misfits = Misfits::default();
        let f = Fields {
            payload: p.as_object().unwrap(),
            misfits: &misfits,
        };
        assert_eq!(f.int("n"), Some(12));
        assert_eq!(f.bool("b"), Some(true));
        assert_eq!(f.str("s"), Some("x"));
        assert_eq!(f.int("z"), None);
        assert_eq!(f.int("absent"), None);
        assert!(misfits.take().is_empty());
        assert_eq!(f.strs("l"), vec!["a", "b"]);
        assert_eq!(f.int("bad"), None);
        assert_eq!(f.strs("s"), Vec::<&str>::new());
        let noted: Vec<String> = misfits.take().iter().map(ToString::to_string).collect();
        assert_eq!(
            noted,
            vec![
                "l: expected a list of strings",
                "bad: expected an integer",
                "s: expected a list of strings"
            ]
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
