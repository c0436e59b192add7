//! `decnet schema`: prints the checked-in schema of a subject, named any of the three ways,
//! and refuses what has none with a reason.

use std::path::Path;
use std::process::Command;

fn decnet(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_decnet"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn a_subject_named_any_way_prints_its_checked_in_schema() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let file =
        std::fs::read_to_string(root.join("proto/schemas/canary.token.triggered.json")).unwrap();
    for name in [
        "canary.5d1c0000-0000-4000-8000-00000000009a.triggered",
        "canary.<token>.triggered",
        "canary.*.triggered",
    ] {
        let (code, out, err) = decnet(&["schema", name]);
        assert_eq!((code, err.as_str()), (0, ""), "{name}");
        assert_eq!(out, file, "{name}");
    }
    let (code, out, _) = decnet(&["schema", "ttp.rule.fired.T1110"]);
    assert_eq!(code, 0);
    assert!(out.contains("\"title\": \"ttp.rule.fired.<technique>\""));
}

#[test]
fn subjects_without_a_schema_are_refused_with_the_reason() {
    let (code, out, err) = decnet(&["schema", "weather.report"]);
    assert_eq!((code, out.as_str()), (2, ""));
    assert_eq!(
        err,
        "weather.report: no such subject; `decnet schema --list` names the 19 that have a schema\n"
    );
    let (code, _, err) = decnet(&["schema", "decnet.dlq.tagger"]);
    assert_eq!(code, 2);
    assert!(err.contains("the original message byte for byte"), "{err}");
    let (code, out, _) = decnet(&["schema", "--list"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 19);
    assert!(
        out.contains(
            "smtp.probe.pending             PROBES   proto/schemas/smtp.probe.pending.json"
        )
    );
}
