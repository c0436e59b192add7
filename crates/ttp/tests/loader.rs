//! Rule-file validation: every malformed file gives one clear error naming file, line,
//! column and field. One table of cases, one runner.

use std::path::Path;

use chrono::NaiveDate;
use decnet_ttp::catalogue::Catalogue;
use decnet_ttp::pack::{LoadError, load_dir_with};

const VALID: &str = r#"rule_id: R0015
rule_version: 1
name: suid_search
description: find invoked with a SUID/SGID permission predicate.
attack_release: enterprise-v18.1
applies_to: [command]
match:
  field: command_text
  pattern: '(?i){{cmd}}find\b[^;&|\n]*\s-perm\s+[-/]?(?:[ug][+=]s|0?[246]000)\b'
emits:
  - {tactic: TA0007, technique_id: T1083, confidence: 0.85}
  - {tactic: TA0004, technique_id: T1548, sub_technique_id: T1548.001, confidence: 0.95}
evidence_fields: [command_text]
last_reviewed: 2026-05-02
next_review: 2027-11-02
"#;

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 3).unwrap()
}

/// Write `text` as `R0015.yaml` in a fresh directory and load it.
fn load_one(text: &str) -> Result<usize, Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("R0015.yaml"), text).unwrap();
    load(dir.path())
}

fn load(dir: &Path) -> Result<usize, Vec<String>> {
    match load_dir_with(dir, Catalogue::bundled(), today()) {
        Ok(loaded) => Ok(loaded.pack.rules().len()),
        Err(LoadError::Invalid(errors)) => Err(errors.iter().map(ToString::to_string).collect()),
        Err(e) => Err(vec![e.to_string()]),
    }
}

#[test]
fn the_spec_example_loads() {
    assert_eq!(load_one(VALID), Ok(1));
}

#[test]
fn each_malformed_file_gives_one_located_error() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "mixed attack_release",
            "attack_release: enterprise-v18.1",
            r#"R0015.yaml:5:17: attack_release: "enterprise-v15.1" differs from bundled catalogue "enterprise-v18.1""#,
        ),
        (
            "misspelt key",
            "  pattern: '(?i)",
            "R0015.yaml:9:3: match.patern: unknown key",
        ),
        (
            "bad regex",
            r"(?:[ug][+=]s|0?[246]000)\b'",
            r"R0015.yaml:9:12: match.pattern: invalid regex: unclosed group",
        ),
        (
            "unknown technique",
            "technique_id: T1083,",
            "R0015.yaml:11:36: emits[0].technique_id: T9999 is not a technique of enterprise-v18.1",
        ),
        (
            "tactic that does not fit",
            "{tactic: TA0007, technique_id: T1083",
            "R0015.yaml:11:14: emits[0].tactic: TA0011 is not a tactic of T1083 (discovery)",
        ),
        (
            "confidence out of range",
            "confidence: 0.95}",
            "R0015.yaml:12:84: emits[1].confidence: 1.5 is outside [0, 1]",
        ),
        (
            "low-band confidence",
            "confidence: 0.85}",
            "R0015.yaml:11:55: emits[0].confidence: 0.5 is below 0.6: low-band rules are not shipped",
        ),
        (
            "unknown kind",
            "applies_to: [command]",
            "R0015.yaml:6:14: applies_to[0]: unknown source kind \"shell\"",
        ),
        ("bad yaml", "emits:\n", "R0015.yaml:11:3: invalid YAML: "),
        (
            "rule id differs from file",
            "rule_id: R0015",
            "R0015.yaml:1:10: rule_id: \"R0016\" differs from the file name \"R0015\"",
        ),
    ];
    let replacements = [
        "attack_release: enterprise-v15.1",
        "  patern: '(?i)",
        r"(?:[ug][+=]s|0?[246]000\b'",
        "technique_id: T9999,",
        "{tactic: TA0011, technique_id: T1083",
        "confidence: 1.5}",
        "confidence: 0.5}",
        "applies_to: [shell]",
        "emits: [\n",
        "rule_id: R0016",
    ];
    let mut mismatches = Vec::new();
    for ((name, from, want), to) in cases.iter().zip(replacements) {
        assert!(VALID.contains(from), "{name}: fixture lacks {from:?}");
        let text = VALID.replacen(from, to, 1);
        let errors = load_one(&text).expect_err(name);
        if errors.len() != 1 || !errors[0].starts_with(want) {
            mismatches.push(format!("{name}:\n  got {errors:?}\n want {want}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn a_missing_key_is_named() {
    let text = VALID.replace("evidence_fields: [command_text]\n", "");
    let errors = load_one(&text).unwrap_err();
    assert_eq!(
        errors,
        vec!["R0015.yaml:1:1: evidence_fields: missing required key"]
    );
}

#[test]
fn every_error_of_a_file_is_reported_at_once() {
    let text = VALID
        .replace("TA0007", "TA0011")
        .replace("0.95}", "1.5}")
        .replace("name: suid_search", "name: Suid");
    let errors = load_one(&text).unwrap_err();
    assert_eq!(errors.len(), 3, "{errors:#?}");
}

#[test]
fn a_sub_technique_must_belong_to_its_parent() {
    let text = VALID.replace("sub_technique_id: T1548.001", "sub_technique_id: T1003.008");
    let errors = load_one(&text).unwrap_err();
    assert_eq!(
        errors,
        vec![
            "R0015.yaml:12:61: emits[1].sub_technique_id: T1003.008 is not a sub-technique of T1548"
        ]
    );
}

#[test]
fn duplicate_emits_would_collide() {
    let text = VALID.replace(
        "  - {tactic: TA0004, technique_id: T1548, sub_technique_id: T1548.001, confidence: 0.95}",
        "  - {tactic: TA0007, technique_id: T1083, confidence: 0.9}",
    );
    let errors = load_one(&text).unwrap_err();
    assert_eq!(
        errors,
        vec!["R0015.yaml:12:5: emits[1]: T1083 is emitted twice (the tag ids would collide)"]
    );
}

#[test]
fn a_pattern_matching_nothing_in_particular_is_refused() {
    let text = VALID.replace(
        r"'(?i){{cmd}}find\b[^;&|\n]*\s-perm\s+[-/]?(?:[ug][+=]s|0?[246]000)\b'",
        "'x*'",
    );
    let errors = load_one(&text).unwrap_err();
    assert_eq!(
        errors,
        vec!["R0015.yaml:9:12: match.pattern: pattern matches the empty string"]
    );
}

#[test]
fn the_cmd_macro_needs_a_command_field() {
    let text = VALID
        .replace("applies_to: [command]", "applies_to: [http_request]")
        .replace("field: command_text", "field: raw_url");
    let errors = load_one(&text).unwrap_err();
    assert!(
        errors.contains(
            &"R0015.yaml:9:12: match.pattern: {{cmd}} is only allowed when a field is command_text"
                .to_owned()
        ),
        "{errors:#?}"
    );
}

#[test]
fn matcher_keys_in_evidence_fields_are_explained() {
    let text = VALID.replace(
        "evidence_fields: [command_text]",
        "evidence_fields: [command_text, matched_tokens, password]",
    );
    let errors = load_one(&text).unwrap_err();
    assert_eq!(
        errors,
        vec![
            "R0015.yaml:13:33: evidence_fields[1]: \"matched_tokens\" is produced by the matcher; do not list it",
            "R0015.yaml:13:49: evidence_fields[2]: \"password\" is not an evidence key",
        ]
    );
}

#[test]
fn an_overdue_review_is_a_warning_not_an_error() {
    let text = VALID.replace("next_review: 2027-11-02", "next_review: 2026-11-02");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("R0015.yaml"), text).unwrap();
    let loaded = load_dir_with(dir.path(), Catalogue::bundled(), today()).unwrap();
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        vec!["R0015.yaml:15:14: next_review: review was due on 2026-11-02"]
    );
}

#[test]
fn other_file_names_are_ignored_and_an_empty_pack_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["R0015.yml", ".R0015.yaml.swp", "notes.yaml", "R0015.yaml~"] {
        std::fs::write(dir.path().join(name), "not: [a rule").unwrap();
    }
    let errors = load(dir.path()).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].ends_with(": no rule files (R0001.yaml …) in this directory"),
        "{errors:?}"
    );
}

#[test]
fn the_shipped_pack_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/ttp");
    let n = load(&dir).unwrap_or_else(|e| panic!("{e:#?}"));
    assert!(n >= 1);
}
