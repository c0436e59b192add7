//! Lifter rules that cannot load say so: parameters and data tables are validated with
//! errors located in the rule file or in the table's own file, never a rule silently missing.

use std::path::Path;

const FP001: &str = "07d14d16d21d21d07c42d41d00041d24a458a375eef0c576d23a7bab9a9fb1";

#[test]
fn a_table_an_entry_selects_must_be_among_the_emits() {
    let dir = tempfile::tempdir().unwrap();
    let rule = "rule_id: R0030\nrule_version: 1\nname: jarm_hassh_c2_fingerprint\ndescription: C2 fingerprints.\n\
        attack_release: enterprise-v18.1\napplies_to: [fingerprint]\nmatch:\n  kind: lifter:c2_fingerprint\n  catalogue: c2_fingerprints\n\
        emits:\n  - {tactic: TA0011, technique_id: T1071, confidence: 0.85}\nevidence_fields: [fingerprint_type, port]\n";
    std::fs::write(dir.path().join("R0030.yaml"), rule).unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(
        dir.path().join("data/c2_fingerprints.yaml"),
        format!("entries:\n  - {{id: FP001, type: jarm, value: {FP001}, framework: cobalt_strike, status: active,\n     techniques: [T1071.001]}}\n  - {{id: FP002, type: jarm, value: 00000000000000000000000000000000000000000000000000000000000000,\n     framework: x, status: active, techniques: [T1071]}}\n"),
    )
    .unwrap();
    let errors = match decnet_ttp::load_dir(dir.path()) {
        Err(decnet_ttp::pack::LoadError::Invalid(errors)) => errors,
        other => panic!("expected a located error, got {other:?}"),
    };
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        vec![
            "data/c2_fingerprints.yaml:3:18: entries[0].techniques[0]: T1071.001 is not among the rule's emits",
            "data/c2_fingerprints.yaml:4:36: entries[1].value: the all-zero JARM means no TLS answer; it identifies nothing",
        ]
    );
}

#[test]
fn lifter_parameters_are_checked_with_their_location() {
    let dir = tempfile::tempdir().unwrap();
    let rule = "rule_id: R0001\nrule_version: 1\nname: generic_auth_brute\ndescription: Brute force.\n\
        attack_release: enterprise-v18.1\napplies_to: [auth_attempt, command]\nmatch:\n  kind: lifter:credential_auth_brute_generic\n  fail_threshold: 0\n  fail_treshold: 5\n\
        emits:\n  - {tactic: TA0006, technique_id: T1110, confidence: 0.85}\nevidence_fields: [service]\n";
    std::fs::write(dir.path().join("R0001.yaml"), rule).unwrap();
    std::fs::write(
        dir.path().join("R0002.yaml"),
        rule.replace("R0001", "R0002")
            .replace(
                "applies_to: [auth_attempt, command]",
                "applies_to: [auth_attempt]",
            )
            .replace(
                "credential_auth_brute_generic",
                "credential_auth_brute_generik",
            )
            .replace("  fail_threshold: 0\n  fail_treshold: 5\n", ""),
    )
    .unwrap();
    let errors = match decnet_ttp::load_dir(dir.path()) {
        Err(decnet_ttp::pack::LoadError::Invalid(errors)) => errors,
        other => panic!("expected located errors, got {other:?}"),
    };
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        vec![
            "R0001.yaml:8:9: applies_to: lifter credential_auth_brute_generic does not evaluate command (it accepts auth_attempt)",
            "R0001.yaml:9:19: match.fail_threshold: 0 is out of range 1..=1000000",
            "R0001.yaml:10:3: match.fail_treshold: unknown key (this lifter takes fail_threshold)",
            "R0002.yaml:8:9: match.kind: lifter \"credential_auth_brute_generik\" does not exist (did you mean credential_auth_brute_generic?)",
        ]
    );
}

#[test]
fn a_broken_table_entry_is_an_error_never_a_missing_rule() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/ttp");
    std::fs::copy(shipped.join("R0043.yaml"), dir.path().join("R0043.yaml")).unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(
        dir.path().join("data/xmailer_kits.yaml"),
        "entries:\n  - {id: XM001, match: exact, value: gophish, techniques: [T1204]}\n  - {id: XM002, match: contains, value: '  ', techniques: [T1566]}\n",
    )
    .unwrap();
    let errors = match decnet_ttp::load_dir(dir.path()) {
        Err(decnet_ttp::pack::LoadError::Invalid(errors)) => errors,
        other => panic!("expected located errors, got {other:?}"),
    };
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        vec![
            "data/xmailer_kits.yaml:2:5: entries[0].techniques[0]: T1204 is not among the rule's emits",
            "data/xmailer_kits.yaml:3:5: entries[1].value: is empty once trimmed: it would match every X-Mailer",
        ]
    );
}
