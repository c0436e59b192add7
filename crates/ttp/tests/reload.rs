//! A reload recompiles only the kinds its rule applies to; the index it yields must evaluate
//! exactly as one compiled from scratch, on every labelled corpus row.

use std::path::Path;

use chrono::{TimeZone, Utc};
use decnet_ttp::catalogue::Catalogue;
use decnet_ttp::corpus::load_corpus;
use decnet_ttp::lifter::Tables;
use decnet_ttp::rule::{RuleDef, parse_rule};
use decnet_ttp::{Pack, RuleIndex, load_dir};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn parse(id: &str, text: &str) -> RuleDef {
    let tables = Tables::in_dir(root().join("rules/ttp/data"));
    let today = Utc::now().date_naive();
    parse_rule(
        &format!("{id}.yaml"),
        id,
        text,
        Catalogue::bundled(),
        &tables,
        today,
    )
    .unwrap()
    .0
}

#[test]
fn an_incremental_reload_evaluates_as_a_fresh_compilation() {
    let pack = load_dir(&root().join("rules/ttp")).unwrap().pack;
    let r0015 = std::fs::read_to_string(root().join("rules/ttp/R0015.yaml")).unwrap();
    // A rule added in the middle of the id order (positions after it move), one removed, one
    // replaced in place with other confidences, and a lifter rule replaced.
    let added = parse(
        "R0015",
        &r0015.replace("confidence: 0.85", "confidence: 0.80"),
    );
    let mut copy = parse(
        "R0015",
        &r0015.replace("name: suid_search", "name: suid_search_copy"),
    );
    copy.rule_id = "R0012".into();
    // A replaced pattern: the old one must stop firing.
    let r0016 = std::fs::read_to_string(root().join("rules/ttp/R0016.yaml")).unwrap();
    let pattern_line = r0016
        .lines()
        .find(|l| l.trim_start().starts_with("pattern:"))
        .unwrap();
    let narrowed = parse(
        "R0016",
        &r0016.replace(
            pattern_line,
            "  pattern: '(?i){{cmd}}find\\s+/decnet-never-seen\\b'",
        ),
    );
    let r0001 = std::fs::read_to_string(root().join("rules/ttp/R0001.yaml")).unwrap();
    let lifter = parse(
        "R0001",
        &r0001.replace("fail_threshold: 5", "fail_threshold: 3"),
    );

    let incremental = RuleIndex::new(&pack)
        .without_rule("R0013")
        .with_rule(added.clone())
        .with_rule(lifter.clone())
        .with_rule(narrowed.clone())
        .without_rule("R0012")
        .with_rule(copy.clone());
    let mut defs: Vec<RuleDef> = pack
        .rules()
        .iter()
        .filter(|r| !["R0001", "R0012", "R0013", "R0015", "R0016"].contains(&r.rule_id.as_str()))
        .cloned()
        .collect();
    defs.extend([added, lifter, copy, narrowed]);
    let fresh = RuleIndex::new(&Pack::from_rules(defs));

    assert!(
        !incremental.is_compact(),
        "reloaded rules run on their own regexes"
    );
    let compacted = incremental.compacted();
    assert!(compacted.is_compact() && fresh.is_compact());

    let rows = load_corpus(&root().join("tests/corpus/rules")).unwrap();
    assert!(rows.len() > 1000);
    let now = Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0).unwrap();
    let mut fired = 0;
    for row in &rows {
        let event = row.event();
        let want = format!("{:?}", fresh.evaluate(&event, now));
        let got = incremental.evaluate(&event, now);
        assert_eq!(format!("{got:?}"), want, "row {row:?}");
        assert_eq!(
            format!("{:?}", compacted.evaluate(&event, now)),
            want,
            "row {row:?}"
        );
        fired += got.tags.len();
    }
    assert!(fired > 1000, "the corpus fires rules: {fired} tags");
}
