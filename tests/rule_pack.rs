//! The shipped rule pack against its labelled corpus, through the real CLI: every rule meets
//! its precision target with ≥ 0.90 recall, on ≥ 10 positive and ≥ 10 negative rows.

use std::process::Command;

use serde_json::Value;

fn decnet(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_decnet"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

#[test]
fn the_pack_validates() {
    let out = decnet(&["rules", "validate", "rules/ttp"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_rule_meets_its_targets_on_the_corpus() {
    let out = decnet(&["rules", "test", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rules = report["rules"].as_array().unwrap();
    let failing: Vec<String> = rules
        .iter()
        .filter(|r| r["pass"] != Value::Bool(true))
        .map(|r| {
            format!(
                "{} P={} R={} FP={} FN={}",
                r["rule_id"], r["precision"], r["recall"], r["fp_labels"], r["fn_labels"]
            )
        })
        .collect();
    assert!(failing.is_empty(), "failing rules:\n{}", failing.join("\n"));
    assert!(out.status.success());
    assert_eq!(
        report["not_scored"],
        Value::Array(vec![]),
        "corpus rows name rules the pack lacks"
    );
    // Every shipped rule is scored: none escapes the corpus.
    let listed = decnet(&["rules", "list"]);
    let shipped = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .skip(1)
        .count();
    assert_eq!(rules.len(), shipped);
}

#[test]
fn selecting_an_unknown_rule_is_an_error() {
    let out = decnet(&["rules", "test", "--rule", "R0999"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "--rule R0999: the pack holds no such rule"
    );
}

#[test]
fn a_range_scores_only_the_rules_within_it() {
    let out = decnet(&["rules", "test", "--rule", "R0010-R0012", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["R0010", "R0011", "R0012"]);
}

#[test]
fn the_coverage_layer_is_a_navigator_layer_of_the_pack() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layer.json");
    let out = decnet(&["rules", "coverage", "--navigator", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let layer: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(layer["versions"]["layer"], "4.5");
    assert_eq!(layer["domain"], "enterprise-attack");
    let cells = layer["techniques"].as_array().unwrap();
    let suid = cells
        .iter()
        .find(|c| c["techniqueID"] == "T1548.001")
        .expect("R0015 emits T1548.001");
    assert_eq!(suid["tactic"], "privilege-escalation");
    assert_eq!(suid["score"], 95.0);
    assert!(suid["comment"].as_str().unwrap().contains("R0015"));
}
