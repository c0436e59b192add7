//! The validator that builds a [`RuleDef`] from a rule file.
//!
//! It walks the marked YAML tree of [`crate::yaml`] and collects every problem with its file,
//! line, column and field path before giving up, so an author fixes a file in one pass.
//! Pattern compilation is part of validation: a rule that loads is a rule that can run.

use chrono::NaiveDate;
use regex::Regex;

use crate::catalogue::Catalogue;
use crate::evidence::{EvidenceKey, Origin};
use crate::kind::SourceKind;
use crate::lifter::{self, Params, Tables};
use crate::pattern::{self, CMD_MACRO};
use crate::rule::{
    DEFAULT_RATE_LIMIT_PER_MINUTE, Diagnostics, Emit, LifterMatcher, MIN_BASE_CONFIDENCE, Matcher,
    RegexMatcher, RuleDef, RuleError, is_rule_id,
};
use crate::yaml::{self, Node, Pos, Value};

/// Parse and validate one rule file.
///
/// `file` names the file in messages, `stem` is the file name without `.yaml` (the rule id it
/// must carry), `tables` holds the data tables lifters may reference and `today` decides
/// whether a review is overdue.
pub fn parse_rule(
    file: &str,
    stem: &str,
    text: &str,
    catalogue: &Catalogue,
    tables: &Tables,
    today: NaiveDate,
) -> Result<(RuleDef, Vec<RuleError>), Diagnostics> {
    let mut v = Validator {
        file,
        catalogue,
        tables,
        diag: Diagnostics::default(),
    };
    let root = match yaml::parse(text) {
        Ok(Some(root)) => root,
        Ok(None) => {
            v.error(Pos::default(), "", "the file is empty");
            return Err(v.diag);
        }
        Err(e) => {
            v.error(e.pos, "", format!("invalid YAML: {}", e.message));
            return Err(v.diag);
        }
    };
    match v.rule(&root, stem, today) {
        Some(rule) if v.diag.errors.is_empty() => Ok((rule, v.diag.warnings)),
        _ => Err(v.diag),
    }
}

const TOP_KEYS: &[&str] = &[
    "rule_id",
    "rule_version",
    "name",
    "description",
    "attack_release",
    "applies_to",
    "match",
    "emits",
    "evidence_fields",
    "rate_limit_per_minute",
    "last_reviewed",
    "next_review",
];
const REQUIRED_KEYS: &[&str] = &[
    "rule_id",
    "rule_version",
    "name",
    "description",
    "attack_release",
    "applies_to",
    "match",
    "emits",
    "evidence_fields",
];
const EMIT_KEYS: &[&str] = &["tactic", "technique_id", "sub_technique_id", "confidence"];
const REGEX_MATCH_KEYS: &[&str] = &["field", "pattern"];

struct Validator<'a> {
    file: &'a str,
    catalogue: &'a Catalogue,
    tables: &'a Tables,
    diag: Diagnostics,
}

/// A mapping's entries by key, after the unknown-key and duplicate checks.
struct Fields<'n> {
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, v)| *v)
    }
}

impl Validator<'_> {
    fn error(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        let e = RuleError {
            file: self.file.to_owned(),
            pos,
            path: path.to_owned(),
            message: message.into(),
        };
        self.diag.errors.push(e);
    }

    fn warn(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        let e = RuleError {
            file: self.file.to_owned(),
            pos,
            path: path.to_owned(),
            message: message.into(),
        };
        self.diag.warnings.push(e);
    }

    /// Check a mapping's keys: unknown and duplicate keys are errors, required ones must be
    /// present. `path` is the mapping's own path (`match`), empty at the top.
    fn fields<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        known: &[&str],
        required: &[&str],
    ) -> Option<Fields<'n>> {
        let Value::Map(entries) = &node.value else {
            let what = if path.is_empty() {
                "the rule"
            } else {
                "expected a mapping"
            };
            let msg = if path.is_empty() {
                format!("{what} must be a mapping, found {}", node.shape())
            } else {
                format!("{what}, found {}", node.shape())
            };
            self.error(node.pos, path, msg);
            return None;
        };
        let mut fields = Fields {
            entries: Vec::new(),
        };
        let mut unknown = Vec::new();
        for (key, value) in entries {
            let Some(name) = key.as_scalar() else {
                self.error(key.pos, path, "keys must be plain names");
                continue;
            };
            if !known.contains(&name) {
                unknown.push((name, key.pos));
            } else if fields.get(name).is_some() {
                self.error(key.pos, &join(path, name), "duplicate key");
            } else {
                fields.entries.push((name, key, value));
            }
        }
        // A misspelt required key is reported once, as the unknown key it is, with the
        // name it probably meant.
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|k| fields.get(k).is_none())
            .collect();
        let mut explained = Vec::new();
        for (name, pos) in unknown {
            match missing.iter().find(|m| is_near(name, m)) {
                Some(meant) => {
                    explained.push(*meant);
                    self.error(
                        pos,
                        &join(path, name),
                        format!("unknown key (did you mean {meant}?)"),
                    );
                }
                None => self.error(pos, &join(path, name), "unknown key"),
            }
        }
        let first_key = entries.first().map_or(node.pos, |(k, _)| k.pos);
        for name in missing.into_iter().filter(|m| !explained.contains(m)) {
            self.error(first_key, &join(path, name), "missing required key");
        }
        Some(fields)
    }

    fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.value {
            Value::Scalar(s, quoted) if *quoted || !yaml::is_null(s) => Some(s.clone()),
            _ => {
                self.error(
                    node.pos,
                    path,
                    format!("expected a string, found {}", node.shape()),
                );
                None
            }
        }
    }

    fn number(&mut self, node: &Node, path: &str) -> Option<f64> {
        let parsed = match &node.value {
            Value::Scalar(s, false) => s.parse::<f64>().ok().filter(|n| n.is_finite()),
            _ => None,
        };
        if parsed.is_none() {
            self.error(
                node.pos,
                path,
                format!("expected a number, found {}", describe(node)),
            );
        }
        parsed
    }

    fn integer(&mut self, node: &Node, path: &str, min: u64, max: u64) -> Option<u64> {
        let parsed = match &node.value {
            Value::Scalar(s, false) => s.parse::<u64>().ok(),
            _ => None,
        };
        match parsed {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) => {
                self.error(node.pos, path, format!("{n} is out of range {min}..={max}"));
                None
            }
            None => {
                self.error(
                    node.pos,
                    path,
                    format!("expected an integer, found {}", describe(node)),
                );
                None
            }
        }
    }

    fn list<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
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

    fn date(&mut self, node: &Node, path: &str) -> Option<NaiveDate> {
        let text = self.string(node, path)?;
        let parsed = NaiveDate::parse_from_str(&text, "%Y-%m-%d").ok();
        if parsed.is_none() {
            self.error(
                node.pos,
                path,
                format!("{text:?} is not an ISO date (YYYY-MM-DD)"),
            );
        }
        parsed
    }

    fn rule(&mut self, root: &Node, stem: &str, today: NaiveDate) -> Option<RuleDef> {
        let f = self.fields(root, "", TOP_KEYS, REQUIRED_KEYS)?;

        let rule_id = f.get("rule_id").and_then(|n| self.rule_id(n, stem));
        let rule_version = f
            .get("rule_version")
            .and_then(|n| self.integer(n, "rule_version", 1, u64::from(u32::MAX)));
        let name = f.get("name").and_then(|n| self.name(n));
        let description = f.get("description").and_then(|n| self.description(n));
        let attack_release = f.get("attack_release").and_then(|n| self.release(n));
        let applies_to = f.get("applies_to").and_then(|n| self.applies_to(n));
        let emits = f.get("emits").and_then(|n| self.emits(n));
        // Fields and evidence keys are checked against the kinds; with unusable kinds those
        // checks would only repeat the kinds' error.
        let kinds = applies_to.as_deref();
        let matcher = f
            .get("match")
            .zip(kinds)
            .and_then(|(n, k)| self.matcher(n, k, emits.as_deref()));
        let evidence_fields = f
            .get("evidence_fields")
            .zip(kinds)
            .and_then(|(n, k)| self.evidence_fields(n, k));
        let rate_limit = match f.get("rate_limit_per_minute") {
            Some(n) => self
                .integer(n, "rate_limit_per_minute", 1, 100_000)
                .map(|n| n as u32),
            None => Some(DEFAULT_RATE_LIMIT_PER_MINUTE),
        };
        let last_reviewed = f
            .get("last_reviewed")
            .and_then(|n| self.date(n, "last_reviewed"));
        let next_review = f
            .get("next_review")
            .and_then(|n| self.date(n, "next_review"));
        self.review_dates(f.get("next_review"), last_reviewed, next_review, today);

        Some(RuleDef {
            rule_id: rule_id?,
            rule_version: rule_version? as u32,
            name: name?,
            description: description?,
            attack_release: attack_release?,
            applies_to: applies_to?,
            matcher: matcher?,
            emits: emits?,
            evidence_fields: evidence_fields?,
            rate_limit_per_minute: rate_limit?,
            last_reviewed,
            next_review,
        })
    }

    fn rule_id(&mut self, node: &Node, stem: &str) -> Option<String> {
        let id = self.string(node, "rule_id")?;
        if !is_rule_id(&id) {
            self.error(
                node.pos,
                "rule_id",
                format!("{id:?} does not match R followed by four digits"),
            );
            return None;
        }
        if id != stem {
            self.error(
                node.pos,
                "rule_id",
                format!("{id:?} differs from the file name {stem:?}"),
            );
            return None;
        }
        Some(id)
    }

    fn name(&mut self, node: &Node) -> Option<String> {
        let name = self.string(node, "name")?;
        let ok = name.len() >= 3
            && name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            self.error(
                node.pos,
                "name",
                format!(
                    "{name:?} must be 3-64 characters of a-z, 0-9 and _, starting with a letter"
                ),
            );
            return None;
        }
        Some(name)
    }

    fn description(&mut self, node: &Node) -> Option<String> {
        let text = self.string(node, "description")?;
        if text.trim().is_empty() {
            self.error(node.pos, "description", "must not be empty");
            return None;
        }
        Some(text)
    }

    fn release(&mut self, node: &Node) -> Option<String> {
        let release = self.string(node, "attack_release")?;
        let bundled = self.catalogue.release();
        if release != bundled {
            self.error(
                node.pos,
                "attack_release",
                format!("{release:?} differs from bundled catalogue {bundled:?}"),
            );
            return None;
        }
        Some(release)
    }

    fn applies_to(&mut self, node: &Node) -> Option<Vec<SourceKind>> {
        let items = self.list(node, "applies_to")?;
        if items.is_empty() {
            self.error(node.pos, "applies_to", "must name at least one source kind");
            return None;
        }
        let mut kinds = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("applies_to[{i}]");
            let Some(name) = self.string(item, &path) else {
                continue;
            };
            match name.parse::<SourceKind>() {
                Ok(kind) if kinds.contains(&kind) => {
                    self.error(item.pos, &path, format!("{kind} is listed twice"))
                }
                Ok(kind) => kinds.push(kind),
                Err(e) => self.error(item.pos, &path, e.to_string()),
            }
        }
        (kinds.len() == items.len()).then_some(kinds)
    }

    fn emits(&mut self, node: &Node) -> Option<Vec<Emit>> {
        let items = self.list(node, "emits")?;
        if items.is_empty() {
            self.error(node.pos, "emits", "must list at least one technique");
            return None;
        }
        let mut emits: Vec<Emit> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("emits[{i}]");
            let Some(emit) = self.emit(item, &path) else {
                continue;
            };
            if emits.iter().any(|e| e.attack_id() == emit.attack_id()) {
                self.error(
                    item.pos,
                    &path,
                    format!(
                        "{} is emitted twice (the tag ids would collide)",
                        emit.attack_id()
                    ),
                );
                continue;
            }
            emits.push(emit);
        }
        (emits.len() == items.len()).then_some(emits)
    }

    fn emit(&mut self, node: &Node, path: &str) -> Option<Emit> {
        let f = self.fields(
            node,
            path,
            EMIT_KEYS,
            &["tactic", "technique_id", "confidence"],
        )?;
        let errors_before = self.diag.errors.len();
        let tactic = f.get("tactic").and_then(|n| {
            self.id_field(
                n,
                &join(path, "tactic"),
                is_tactic_id,
                "TA followed by four digits",
            )
        });
        let technique = f.get("technique_id").and_then(|n| {
            self.id_field(
                n,
                &join(path, "technique_id"),
                is_technique_id,
                "T followed by four digits",
            )
        });
        let sub = f.get("sub_technique_id").and_then(|n| {
            self.id_field(
                n,
                &join(path, "sub_technique_id"),
                is_sub_technique_id,
                "Txxxx.yyy",
            )
        });
        let confidence = f
            .get("confidence")
            .and_then(|n| self.confidence(n, &join(path, "confidence")));
        if self.diag.errors.len() != errors_before {
            return None;
        }
        let emit = Emit {
            tactic: tactic?,
            technique_id: technique?,
            sub_technique_id: sub,
            confidence: confidence?,
        };
        self.check_emit_catalogue(&f, &emit, path).then_some(emit)
    }

    fn id_field(
        &mut self,
        node: &Node,
        path: &str,
        ok: fn(&str) -> bool,
        form: &str,
    ) -> Option<String> {
        let id = self.string(node, path)?;
        if !ok(&id) {
            self.error(node.pos, path, format!("{id:?} is not of the form {form}"));
            return None;
        }
        Some(id)
    }

    fn confidence(&mut self, node: &Node, path: &str) -> Option<f64> {
        let c = self.number(node, path)?;
        if !(0.0..=1.0).contains(&c) {
            self.error(node.pos, path, format!("{c} is outside [0, 1]"));
            return None;
        }
        if c < MIN_BASE_CONFIDENCE {
            self.error(
                node.pos,
                path,
                format!("{c} is below {MIN_BASE_CONFIDENCE}: low-band rules are not shipped"),
            );
            return None;
        }
        Some(c)
    }

    /// Catalogue checks of one emit (RULES.md §2, check 4).
    fn check_emit_catalogue(&mut self, f: &Fields<'_>, emit: &Emit, path: &str) -> bool {
        let pos_of = |key: &str| f.get(key).map(|n| n.pos).unwrap_or_default();
        let cat = self.catalogue;
        let before = self.diag.errors.len();
        if cat.tactic(&emit.tactic).is_none() {
            self.error(
                pos_of("tactic"),
                &join(path, "tactic"),
                format!("{} is not a tactic of {}", emit.tactic, cat.release()),
            );
        }
        match cat.technique(&emit.technique_id) {
            None => self.error(
                pos_of("technique_id"),
                &join(path, "technique_id"),
                format!(
                    "{} is not a technique of {}",
                    emit.technique_id,
                    cat.release()
                ),
            ),
            Some(t) if !t.is_active() => self.error(
                pos_of("technique_id"),
                &join(path, "technique_id"),
                format!("{} is {} in {}", t.id, retired(t), cat.release()),
            ),
            Some(t) if t.is_sub => self.error(
                pos_of("technique_id"),
                &join(path, "technique_id"),
                format!(
                    "{} is a sub-technique: name its parent here and put it in sub_technique_id",
                    t.id
                ),
            ),
            Some(_) => {}
        }
        if let Some(sub) = &emit.sub_technique_id {
            let sub_path = join(path, "sub_technique_id");
            if !sub.starts_with(&format!("{}.", emit.technique_id)) {
                self.error(
                    pos_of("sub_technique_id"),
                    &sub_path,
                    format!("{sub} is not a sub-technique of {}", emit.technique_id),
                );
            } else {
                match cat.technique(sub) {
                    None => self.error(
                        pos_of("sub_technique_id"),
                        &sub_path,
                        format!("{sub} is not a sub-technique of {}", cat.release()),
                    ),
                    Some(t) if !t.is_active() => self.error(
                        pos_of("sub_technique_id"),
                        &sub_path,
                        format!("{sub} is {} in {}", retired(t), cat.release()),
                    ),
                    Some(_) => {}
                }
            }
        }
        if self.diag.errors.len() == before
            && !cat.technique_has_tactic(emit.attack_id(), &emit.tactic)
        {
            let names = cat.tactic_names_of(emit.attack_id());
            self.error(
                pos_of("tactic"),
                &join(path, "tactic"),
                format!(
                    "{} is not a tactic of {} ({names})",
                    emit.tactic,
                    emit.attack_id()
                ),
            );
        }
        self.diag.errors.len() == before
    }

    fn matcher(
        &mut self,
        node: &Node,
        kinds: &[SourceKind],
        emits: Option<&[Emit]>,
    ) -> Option<Matcher> {
        if let Value::Map(entries) = &node.value
            && let Some((_, value)) = entries.iter().find(|(k, _)| k.as_scalar() == Some("kind"))
        {
            return self.lifter(node, value, kinds, emits);
        }
        let f = self.fields(node, "match", REGEX_MATCH_KEYS, &["pattern"])?;
        let fields = match f.get("field") {
            Some(n) => self.match_fields(n, kinds)?,
            None => Vec::new(),
        };
        let pattern_node = f.get("pattern")?;
        let pattern = self.string(pattern_node, "match.pattern")?;
        let regex = self.compile(pattern_node.pos, &pattern, &fields, kinds)?;
        if fields.is_empty() {
            for kind in kinds {
                if kind.default_field().is_none() {
                    self.error(
                        node.pos,
                        "match.field",
                        format!("{kind} has no default field: name one"),
                    );
                    return None;
                }
            }
        }
        Some(Matcher::Regex(RegexMatcher {
            fields,
            pattern,
            regex,
        }))
    }

    /// The lifter form: `match: {kind: lifter:<name>, <parameters…>}`.
    fn lifter(
        &mut self,
        node: &Node,
        kind: &Node,
        kinds: &[SourceKind],
        emits: Option<&[Emit]>,
    ) -> Option<Matcher> {
        let text = kind.as_scalar().unwrap_or_default();
        let Some(name) = text.strip_prefix("lifter:") else {
            self.error(
                kind.pos,
                "match.kind",
                format!("{text:?} is not of the form lifter:<name>"),
            );
            return None;
        };
        let Some(spec) = lifter::find(name) else {
            let near: Vec<&str> = lifter::registry()
                .map(|s| s.name)
                .filter(|n| is_near(name, n))
                .collect();
            let hint = match near.first() {
                Some(n) => format!(" (did you mean {n}?)"),
                None => String::new(),
            };
            self.error(
                kind.pos,
                "match.kind",
                format!("lifter {name:?} does not exist{hint}"),
            );
            return None;
        };
        let before = self.diag.errors.len();
        for k in kinds {
            if !spec.kinds.contains(k) {
                let accepted = spec
                    .kinds
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                self.error(
                    kind.pos,
                    "applies_to",
                    format!("lifter {name} does not evaluate {k} (it accepts {accepted})"),
                );
            }
        }
        // Tables select among the emits: without valid emits their checks would only
        // repeat the emits' own errors.
        let emits = emits?;
        let Value::Map(entries) = &node.value else {
            return None;
        };
        let params: Vec<(&str, Pos, &Node)> = entries
            .iter()
            .filter(|(k, _)| k.as_scalar() != Some("kind"))
            .map(|(k, v)| (k.as_scalar().unwrap_or_default(), k.pos, v))
            .collect();
        let mut p = Params::new(self.file, node.pos, params, emits, self.tables);
        let built = (spec.build)(&mut p);
        let errors = p.finish();
        self.diag.errors.extend(errors);
        if self.diag.errors.len() != before {
            return None;
        }
        // A lifter that declines to build must say why; never drop a rule without an error.
        let Some(built) = built else {
            self.error(
                node.pos,
                "match",
                format!("lifter {name} cannot be built from these parameters"),
            );
            return None;
        };
        Some(Matcher::Lifter(LifterMatcher {
            name: name.to_owned(),
            lifter: built.into(),
        }))
    }

    fn match_fields(&mut self, node: &Node, kinds: &[SourceKind]) -> Option<Vec<String>> {
        let (items, list) = match &node.value {
            Value::Seq(items) => (items.as_slice(), true),
            _ => (std::slice::from_ref(node), false),
        };
        if items.is_empty() {
            self.error(node.pos, "match.field", "must name at least one field");
            return None;
        }
        let mut fields = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = if list {
                format!("match.field[{i}]")
            } else {
                "match.field".to_owned()
            };
            let field = self.string(item, &path)?;
            if !kinds.iter().any(|k| k.has_string_field(&field)) {
                let names = kinds
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                self.error(
                    item.pos,
                    &path,
                    format!("{field:?} is not a string field of {names}"),
                );
                return None;
            }
            fields.push(field);
        }
        for kind in kinds {
            if !fields.iter().any(|f| kind.has_string_field(f)) {
                self.error(
                    node.pos,
                    "match.field",
                    format!("no listed field belongs to {kind}"),
                );
                return None;
            }
        }
        Some(fields)
    }

    fn compile(
        &mut self,
        pos: Pos,
        pattern: &str,
        fields: &[String],
        kinds: &[SourceKind],
    ) -> Option<Regex> {
        let reads_commands = if fields.is_empty() {
            kinds.contains(&SourceKind::Command)
        } else {
            fields.iter().any(|f| f == "command_text")
        };
        if pattern.contains(CMD_MACRO) && !reads_commands {
            self.error(
                pos,
                "match.pattern",
                format!("{CMD_MACRO} is only allowed when a field is command_text"),
            );
            return None;
        }
        match pattern::compile(pattern) {
            Ok(regex) => Some(regex),
            Err(e) => {
                self.error(pos, "match.pattern", e.to_string());
                None
            }
        }
    }

    fn evidence_fields(&mut self, node: &Node, kinds: &[SourceKind]) -> Option<Vec<EvidenceKey>> {
        let items = self.list(node, "evidence_fields")?;
        let mut keys = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("evidence_fields[{i}]");
            let Some(name) = self.string(item, &path) else {
                continue;
            };
            let key = EvidenceKey::parse(&name);
            let origin = |k: EvidenceKey| kinds.iter().filter_map(move |kind| k.origin_for(*kind));
            match key {
                None => self.error(item.pos, &path, format!("{name:?} is not an evidence key")),
                Some(k) if origin(k).any(|o| o != Origin::Matcher) => keys.push(k),
                Some(k) if origin(k).next().is_some() => self.error(
                    item.pos,
                    &path,
                    format!("{name:?} is produced by the matcher; do not list it"),
                ),
                Some(_) => {
                    let names = kinds
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ");
                    self.error(
                        item.pos,
                        &path,
                        format!("{name:?} is not an evidence key of {names}"),
                    );
                }
            }
        }
        (keys.len() == items.len()).then_some(keys)
    }

    fn review_dates(
        &mut self,
        node: Option<&Node>,
        last: Option<NaiveDate>,
        next: Option<NaiveDate>,
        today: NaiveDate,
    ) {
        let (Some(node), Some(next)) = (node, next) else {
            return;
        };
        if let Some(last) = last
            && next <= last
        {
            let message = format!("{next} is not after last_reviewed {last}");
            self.error(node.pos, "next_review", message);
            return;
        }
        if next < today {
            self.warn(node.pos, "next_review", format!("review was due on {next}"));
        }
    }
}

fn retired(t: &crate::catalogue::Technique) -> &'static str {
    if t.revoked { "revoked" } else { "deprecated" }
}

fn describe(node: &Node) -> String {
    match node.as_scalar() {
        Some(s) => format!("{s:?}"),
        None => node.shape().to_owned(),
    }
}

/// Whether two key names are one or two edits apart (a typo rather than another key).
fn is_near(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut row = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            row.push((prev[j] + cost).min(prev[j + 1] + 1).min(row[j] + 1));
        }
        prev = row;
    }
    prev[b.len()] <= 2
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn is_tactic_id(s: &str) -> bool {
    s.len() == 6 && s.starts_with("TA") && s[2..].bytes().all(|b| b.is_ascii_digit())
}

fn is_technique_id(s: &str) -> bool {
    s.len() == 5 && s.starts_with('T') && s[1..].bytes().all(|b| b.is_ascii_digit())
}

fn is_sub_technique_id(s: &str) -> bool {
    s.len() == 9
        && is_technique_id(&s[..5])
        && s.as_bytes()[5] == b'.'
        && s[6..].bytes().all(|b| b.is_ascii_digit())
}
