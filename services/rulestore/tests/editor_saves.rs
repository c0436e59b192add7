//! Every way an editor saves a rule file becomes exactly one stored change for that rule; swap
//! files, backups and saves without a change become none (issue 5). The real inotify watcher
//! and the real store (SQLite) run here; only NATS is left out, as nothing is published.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use chrono::Utc;
use decnet_rulestore::watcher::DirWatcher;
use decnet_rulestore::{Definitions, Outcome, RulestoreMetrics};
use decnet_storage::{Database, Options};
use tempfile::TempDir;

struct Bench {
    _tmp: TempDir,
    dir: std::path::PathBuf,
    defs: Definitions,
    watcher: DirWatcher,
}

impl Bench {
    async fn new() -> Bench {
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path().join("rules");
        common::copy_pack(&dir);
        let url = format!("sqlite://{}", tmp.path().join("store.db").display());
        let db = Database::connect(&url, &Options::default()).await.unwrap();
        let mut defs = Definitions::open(&dir, db, "test", RulestoreMetrics::default())
            .await
            .unwrap();
        defs.load_all(Utc::now()).await.unwrap();
        let watcher = DirWatcher::start(&dir, Duration::from_millis(20)).unwrap();
        Bench {
            _tmp: tmp,
            dir,
            defs,
            watcher,
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.join(name)
    }

    /// Every change stored while the events of what was just done arrive, by rule id; the
    /// watch is drained until it has been quiet for half a second.
    async fn changes(&mut self) -> BTreeMap<String, Vec<Outcome>> {
        let mut changes: BTreeMap<String, Vec<Outcome>> = BTreeMap::new();
        while let Ok(Some(burst)) =
            tokio::time::timeout(Duration::from_millis(500), self.watcher.next()).await
        {
            for (rule, outcome) in self.defs.apply(&burst, Utc::now()).await.unwrap() {
                if outcome != Outcome::Unchanged {
                    changes.entry(rule).or_default().push(outcome);
                }
            }
        }
        changes
    }
}

/// The rule text with its description changed (a change that needs no version bump).
fn edited(text: &str) -> String {
    if text.contains("description: '") {
        text.replacen("description: '", "description: 'Edited. ", 1)
    } else {
        text.replacen("description: ", "description: Edited. ", 1)
    }
}

fn kinds(changes: &BTreeMap<String, Vec<Outcome>>) -> BTreeMap<String, Vec<&'static str>> {
    changes
        .iter()
        .map(|(id, outcomes)| {
            let kinds = outcomes
                .iter()
                .map(|o| match o {
                    Outcome::Stored(_) => "stored",
                    Outcome::Deleted(_) => "deleted",
                    Outcome::Refused(_) => "refused",
                    Outcome::Unchanged => "unchanged",
                })
                .collect();
            (id.clone(), kinds)
        })
        .collect()
}

fn one(rule: &str, kind: &'static str) -> BTreeMap<String, Vec<&'static str>> {
    BTreeMap::from([(rule.to_owned(), vec![kind])])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_save_is_one_change_even_when_written_in_pieces() {
    let mut b = Bench::new().await;
    let text = edited(&std::fs::read_to_string(b.path("R0015.yaml")).unwrap());
    {
        // Truncate, then write in two pieces with a pause: the file is briefly empty and then
        // half written, which must not be stored.
        let mut f = std::fs::File::create(b.path("R0015.yaml")).unwrap();
        let (head, tail) = text.split_at(text.len() / 2);
        f.write_all(head.as_bytes()).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        f.write_all(tail.as_bytes()).unwrap();
    }
    assert_eq!(kinds(&b.changes().await), one("R0015", "stored"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_then_rename_is_one_change() {
    let mut b = Bench::new().await;
    let text = edited(&std::fs::read_to_string(b.path("R0016.yaml")).unwrap());
    std::fs::write(b.path(".R0016.yaml.tmp"), &text).unwrap();
    std::fs::rename(b.path(".R0016.yaml.tmp"), b.path("R0016.yaml")).unwrap();
    assert_eq!(kinds(&b.changes().await), one("R0016", "stored"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vim_style_save_with_backup_is_one_change() {
    let mut b = Bench::new().await;
    let text = edited(&std::fs::read_to_string(b.path("R0017.yaml")).unwrap());
    // vim: probe the directory with `4913`, move the original to a backup, write the file anew,
    // drop the backup; its swap file comes and goes around it.
    std::fs::write(b.path(".R0017.yaml.swp"), b"swap").unwrap();
    std::fs::write(b.path("4913"), b"").unwrap();
    std::fs::remove_file(b.path("4913")).unwrap();
    std::fs::rename(b.path("R0017.yaml"), b.path("R0017.yaml~")).unwrap();
    std::fs::write(b.path("R0017.yaml"), &text).unwrap();
    std::fs::remove_file(b.path("R0017.yaml~")).unwrap();
    std::fs::remove_file(b.path(".R0017.yaml.swp")).unwrap();
    assert_eq!(kinds(&b.changes().await), one("R0017", "stored"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_file_is_one_change_and_a_deleted_one_is_one_deletion() {
    let mut b = Bench::new().await;
    let text = std::fs::read_to_string(b.path("R0015.yaml"))
        .unwrap()
        .replace("rule_id: R0015", "rule_id: R0999")
        .replace("name: suid_search", "name: suid_search_copy");
    std::fs::write(b.path("R0999.yaml"), text).unwrap();
    assert_eq!(kinds(&b.changes().await), one("R0999", "stored"));
    std::fs::remove_file(b.path("R0999.yaml")).unwrap();
    assert_eq!(kinds(&b.changes().await), one("R0999", "deleted"));
    assert!(!b.defs.is_live("R0999"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_files_backups_and_unchanged_saves_are_no_change() {
    let mut b = Bench::new().await;
    let original = std::fs::read_to_string(b.path("R0015.yaml")).unwrap();
    let garbage = "this: is: not: a rule";
    for name in [
        ".R0015.yaml.swp",
        "R0015.yaml~",
        "R0015.yaml.bak",
        "R0015.yml",
        "#R0015.yaml#",
        ".#R0015.yaml",
        "data/.c2_fingerprints.yaml.swp",
        "data/c2_fingerprints.yaml~",
    ] {
        std::fs::write(b.path(name), garbage).unwrap();
    }
    // A save that writes the same bytes again, and one that only touches the file.
    std::fs::write(b.path("R0015.yaml"), &original).unwrap();
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(b.path("R0016.yaml"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
    assert_eq!(kinds(&b.changes().await), BTreeMap::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_edit_changes_exactly_the_rules_that_read_it() {
    let mut b = Bench::new().await;
    let table = b.path("data/c2_fingerprints.yaml");
    let text = std::fs::read_to_string(&table).unwrap();
    std::fs::write(&table, format!("{text}\n# curated again\n")).unwrap();
    assert_eq!(kinds(&b.changes().await), one("R0030", "stored"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_edit_is_refused_and_the_last_good_version_stays() {
    let mut b = Bench::new().await;
    let before = b
        .defs
        .stored()
        .find(|r| r.rule_id == "R0015")
        .unwrap()
        .clone();
    let broken = std::fs::read_to_string(b.path("R0015.yaml"))
        .unwrap()
        .replace("confidence: 0.85", "confidence: 1.85");
    std::fs::write(b.path("R0015.yaml"), broken).unwrap();
    let changes = b.changes().await;
    let Some([Outcome::Refused(errors)]) = changes.get("R0015").map(Vec::as_slice) else {
        panic!("expected one refusal, got {changes:?}");
    };
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = errors[0].to_string();
    assert!(
        e.starts_with("R0015.yaml:") && e.contains("emits[0].confidence"),
        "{e}"
    );
    let after = b.defs.stored().find(|r| r.rule_id == "R0015").unwrap();
    assert_eq!(after, &before, "the stored definition is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_version_discipline_refuses_a_lower_version_and_an_unbumped_match_change() {
    let mut b = Bench::new().await;
    let text = std::fs::read_to_string(b.path("R0015.yaml")).unwrap();
    let bumped = text.replace("rule_version: 1", "rule_version: 2");
    std::fs::write(b.path("R0015.yaml"), &bumped).unwrap();
    assert_eq!(kinds(&b.changes().await), one("R0015", "stored"));

    std::fs::write(b.path("R0015.yaml"), &text).unwrap();
    let lowered = b.changes().await;
    let refusal = refusal_text(&lowered);
    assert_eq!(
        refusal,
        "R0015.yaml:2:15: rule_version: 1 is lower than the stored version 2; a rule version is never lowered"
    );

    let widened = bumped.replace("-perm\\s+", "-perm\\s*");
    assert_ne!(widened, bumped, "the test edits the pattern");
    std::fs::write(b.path("R0015.yaml"), &widened).unwrap();
    let refusal = refusal_text(&b.changes().await);
    assert_eq!(
        refusal,
        "R0015.yaml:2:15: rule_version: match changed but rule_version is still 2; bump it (old tags keep their version)"
    );
}

fn refusal_text(changes: &BTreeMap<String, Vec<Outcome>>) -> String {
    match changes.get("R0015").map(Vec::as_slice) {
        Some([Outcome::Refused(errors)]) if errors.len() == 1 => errors[0].to_string(),
        other => panic!("expected one refusal, got {other:?} in {changes:?}"),
    }
}
