//! Each generated schema agrees with EVENTS.md §4 on every field's name, type, nullability
//! and requiredness, and has no field the spec does not list (EVENTS.md §1.4).
//!
//! The spec's tables are read from `events-fields.tsv`, extracted from EVENTS.md by
//! `scripts/extract-event-fields.py` (a clone of the project has no spec folder).

use std::collections::BTreeSet;

use decnet_proto::subject_def;
use serde_json::Value;

struct SpecField {
    subject: String,
    path: String,
    base: String,
    array: bool,
    nullable: bool,
    values: Vec<String>,
    req: String,
}

fn spec_fields() -> Vec<SpecField> {
    include_str!("events-fields.tsv")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            assert_eq!(c.len(), 7, "events-fields.tsv: bad line {l:?}");
            SpecField {
                subject: c[0].to_owned(),
                path: c[1].to_owned(),
                base: c[2].to_owned(),
                array: c[3] == "1",
                nullable: c[4] == "1",
                values: c[5]
                    .split(',')
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
                    .collect(),
                req: c[6].to_owned(),
            }
        })
        .collect()
}

/// Follows `$ref` and strips a nullable `anyOf`, reporting whether null was allowed.
fn resolve<'a>(root: &'a Value, mut s: &'a Value) -> (&'a Value, bool) {
    let mut nullable = false;
    loop {
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let name = r.trim_start_matches("#/$defs/");
            s = &root["$defs"][name];
            continue;
        }
        if let Some(any) = s.get("anyOf").and_then(Value::as_array) {
            let (nulls, rest): (Vec<&Value>, Vec<&Value>) = any
                .iter()
                .partition(|v| v.get("type") == Some(&"null".into()));
            if !nulls.is_empty() && rest.len() == 1 {
                nullable = true;
                s = rest[0];
                continue;
            }
        }
        return (s, nullable);
    }
}

fn types(s: &Value) -> (BTreeSet<String>, bool) {
    let mut set = BTreeSet::new();
    match s.get("type") {
        Some(Value::String(t)) => {
            set.insert(t.clone());
        }
        Some(Value::Array(ts)) => {
            set.extend(ts.iter().filter_map(Value::as_str).map(str::to_owned))
        }
        _ => {}
    }
    let nullable = set.remove("null");
    (set, nullable)
}

fn enum_values(s: &Value) -> Vec<String> {
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        return e
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
    }
    s.get("oneOf")
        .and_then(Value::as_array)
        .map(|alts| {
            alts.iter()
                .filter_map(|a| a.get("const").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The object schema that holds the properties at `prefix` (`""`, `commands[].`, `fingerprint.`).
fn object_at<'a>(root: &'a Value, prefix: &str) -> Option<&'a Value> {
    let mut s = root;
    for step in prefix.split('.').filter(|p| !p.is_empty()) {
        let (name, array) = match step.strip_suffix("[]") {
            Some(n) => (n, true),
            None => (step, false),
        };
        s = resolve(root, s.get("properties")?.get(name)?).0;
        if array {
            s = resolve(root, s.get("items")?).0;
        }
    }
    Some(s)
}

fn check(root: &Value, f: &SpecField) -> Vec<String> {
    let mut problems = Vec::new();
    let (prefix, name) = match f.path.rfind('.') {
        Some(i) => (&f.path[..=i], &f.path[i + 1..]),
        None => ("", f.path.as_str()),
    };
    let Some(obj) = object_at(root, prefix) else {
        return vec![format!("no object for {prefix}")];
    };
    let Some(prop) = obj.get("properties").and_then(|p| p.get(name)) else {
        return vec!["missing from the schema".into()];
    };
    let required = obj
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(|r| r.iter().any(|v| v == name));
    let (mut s, mut nullable) = resolve(root, prop);
    let (mut ty, n) = types(s);
    nullable |= n;
    if f.array {
        if ty != BTreeSet::from(["array".to_owned()]) {
            problems.push(format!("spec says an array, schema has {ty:?}"));
            return problems;
        }
        s = resolve(root, &s["items"]).0;
        ty = types(s).0;
    }
    let x_type = s.get("x-decnet-type").and_then(Value::as_str);
    let format = s.get("format").and_then(Value::as_str);
    let want: &[&str] = match f.base.as_str() {
        "string" | "ip" | "decky" | "hex64" | "uuid" | "ts" | "enum" => &["string"],
        "int" => &["integer"],
        "float" => &["number"],
        "bool" => &["boolean"],
        "object" => &["object"],
        other => return vec![format!("unknown spec type {other}")],
    };
    let want: BTreeSet<String> = want.iter().map(|s| (*s).to_owned()).collect();
    let values = enum_values(s);
    if f.base == "enum" {
        if values != f.values {
            problems.push(format!("enum {:?}, schema {values:?}", f.values));
        }
    } else if ty != want {
        problems.push(format!("spec type {}, schema {ty:?}", f.base));
    }
    let special = match f.base.as_str() {
        "uuid" => format == Some("uuid"),
        "ts" => format == Some("date-time"),
        "ip" | "decky" | "hex64" => x_type == Some(f.base.as_str()),
        _ => x_type.is_none() && !matches!(format, Some("uuid" | "date-time")),
    };
    if !special {
        problems.push(format!(
            "spec type {}, schema format {format:?} x-decnet-type {x_type:?}",
            f.base
        ));
    }
    match f.req.as_str() {
        "yes" => {
            if !required {
                problems.push("required in the spec, optional in the schema".into());
            }
            // Requiredness and nullability are separate in the spec (`T?`, req yes).
            if nullable != f.nullable && !f.array {
                problems.push(format!(
                    "spec nullable {}, schema nullable {nullable}",
                    f.nullable
                ));
            }
        }
        "no" | "cond" if required => {
            problems.push(format!("{} in the spec, required in the schema", f.req));
        }
        _ => {}
    }
    problems
}

#[test]
fn schemas_agree_with_the_spec_tables() {
    let fields = spec_fields();
    let mut problems = Vec::new();
    let mut subjects: Vec<&str> = fields.iter().map(|f| f.subject.as_str()).collect();
    subjects.dedup();
    for subject in &subjects {
        let Some(def) = subject_def(subject) else {
            problems.push(format!("{subject}: no payload type in proto"));
            continue;
        };
        let root = def.schema().to_value();
        let mine: Vec<&SpecField> = fields.iter().filter(|f| f.subject == *subject).collect();
        for f in &mine {
            for p in check(&root, f) {
                problems.push(format!("{subject} {}: {p}", f.path));
            }
        }
        // The other way round: every property of an object the spec describes is listed.
        let prefixes: BTreeSet<String> = mine
            .iter()
            .map(|f| {
                f.path
                    .rfind('.')
                    .map_or(String::new(), |i| f.path[..=i].to_owned())
            })
            .collect();
        for prefix in &prefixes {
            let Some(props) = object_at(&root, prefix)
                .and_then(|o| o.get("properties"))
                .and_then(Value::as_object)
            else {
                continue;
            };
            for name in props.keys() {
                let path = format!("{prefix}{name}");
                if !mine.iter().any(|f| f.path == path) {
                    problems.push(format!("{subject} {path}: in the schema, not in the spec"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_subject_with_a_schema_is_in_the_spec() {
    let fields = spec_fields();
    for def in &decnet_proto::SUBJECTS {
        assert!(
            fields.iter().any(|f| f.subject == def.name),
            "{} has a schema but no table in EVENTS.md §4",
            def.name
        );
    }
}
