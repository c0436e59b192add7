//! The checked-in schemas in `proto/schemas/` are the ones the types generate. After changing
//! a payload type, regenerate them with `DECNET_UPDATE_SCHEMAS=1 cargo test -p decnet-proto`.

use std::path::PathBuf;

use decnet_proto::SUBJECTS;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

#[test]
fn checked_in_schemas_are_generated_from_the_types() {
    let update = std::env::var_os("DECNET_UPDATE_SCHEMAS").is_some();
    let mut stale = Vec::new();
    for def in &SUBJECTS {
        let path = dir().join(def.file);
        let want = def.schema_text();
        if update {
            std::fs::write(&path, &want).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(have) if have == want => {}
            Ok(_) => stale.push(format!("{} differs", path.display())),
            Err(e) => stale.push(format!("{}: {e}", path.display())),
        }
    }
    assert!(
        stale.is_empty(),
        "{}\nregenerate with DECNET_UPDATE_SCHEMAS=1 cargo test -p decnet-proto",
        stale.join("\n")
    );
}

#[test]
fn no_schema_file_is_left_without_a_subject() {
    for entry in std::fs::read_dir(dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            SUBJECTS.iter().any(|d| d.file == name),
            "proto/schemas/{name} belongs to no subject"
        );
    }
}
