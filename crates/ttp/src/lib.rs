//! The tagging core of decnet: attacker activity in, MITRE ATT&CK tags out.
//!
//! A pure library — no network, no database — shared by the tagger service, the offline
//! `decnet tag` and `decnet rules` tools and the API. The flow is:
//!
//! 1. [`pack::load_dir`] reads and validates YAML rule files against the bundled ATT&CK
//!    [`catalogue`], reporting every problem with file, line, column and field path.
//! 2. [`engine::RuleIndex`] compiles the pack into an immutable index by source kind, with
//!    one `RegexSet` per matched field, and evaluates [`event::EvalEvent`]s into [`tag::Tag`]s;
//!    rules a regex cannot express run a [`lifter`] instead.
//! 3. [`fanout`] turns bus messages and offline input lines into evaluation events, the same
//!    way everywhere, so a replay yields the same tag ids.
//!
//! Evidence is typed ([`evidence`]): secrets, bodies and full URLs have no key to live under.

pub mod anchor;
pub mod catalogue;
pub mod corpus;
pub mod engine;
pub mod event;
pub mod evidence;
pub mod fanout;
pub mod kind;
pub mod lifter;
pub mod navigator;
pub mod pack;
pub mod pattern;
pub mod ratelimit;
pub mod rule;
pub mod source;
pub mod state;
pub mod tag;
pub mod validate;
pub mod yaml;

pub use engine::{Evaluation, RuleIndex, SuppressReason, Suppressed};
pub use event::EvalEvent;
pub use kind::SourceKind;
pub use pack::{Pack, load_dir};
pub use tag::Tag;
