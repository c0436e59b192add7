//! `decnet rules …`: the rule author's tools.
//!
//! `validate` prints every problem of a pack with file, line and field; `list` shows what the
//! pack holds; `test` scores each rule against a labelled corpus; `coverage` writes an ATT&CK
//! Navigator layer of what the pack can detect; `disable`, `clip` and `enable` change a rule's
//! operational state through the rule store.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::Utc;
use decnet_ttp::catalogue::Catalogue;
use decnet_ttp::corpus::{self, CorpusError, Report};
use decnet_ttp::pack::{LoadError, Loaded};
use decnet_ttp::{Pack, RuleIndex, load_dir};

use super::tag::report;
use super::{EXIT_UNUSABLE, RulesDir};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum RulesCommand {
    /// Validate every rule file of a directory; print each problem as FILE:LINE:COL: FIELD: MESSAGE.
    Validate {
        /// Directory of rule files.
        #[arg(env = "DECNET_RULES_DIR", default_value = "rules/ttp")]
        dir: PathBuf,
    },
    /// List the rules: id, name, kinds, techniques, state.
    List(RulesDir),
    /// Score each rule on a labelled corpus: precision and recall against its band's targets.
    Test {
        #[command(flatten)]
        rules: RulesDir,
        /// Directory of labelled JSONL files.
        #[arg(long, default_value = "tests/corpus/rules")]
        corpus: PathBuf,
        /// Score only these rules: an id or an inclusive range (R0010-R0029); repeatable.
        #[arg(long = "rule", value_name = "ID|ID-ID")]
        selection: Vec<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Disable a rule in every tagger (through the rule store): `--reason` required.
    Disable(super::rule_state::DisableArgs),
    /// Cap a rule's confidences at `--ceiling` in every tagger: `--reason` required.
    Clip(super::rule_state::ClipArgs),
    /// Return a rule to enabled with no ceiling.
    Enable(super::rule_state::EnableArgs),
    /// Write an ATT&CK Navigator (layer 4.5) file of the techniques the pack can tag.
    Coverage {
        #[command(flatten)]
        rules: RulesDir,
        /// Where to write the layer.
        #[arg(long)]
        navigator: PathBuf,
    },
}

pub(crate) fn run(command: RulesCommand) -> ExitCode {
    match command {
        RulesCommand::Validate { dir } => validate(&dir),
        RulesCommand::List(rules) => with_pack(&rules.path, list),
        RulesCommand::Test {
            rules,
            corpus,
            selection,
            json,
        } => with_pack(&rules.path, |loaded| {
            test(&loaded.pack, &corpus, &selection, json)
        }),
        RulesCommand::Disable(args) => super::rule_state::disable(&args),
        RulesCommand::Clip(args) => super::rule_state::clip(&args),
        RulesCommand::Enable(args) => super::rule_state::enable(&args),
        RulesCommand::Coverage { rules, navigator } => {
            with_pack(&rules.path, |loaded| coverage(&loaded.pack, &navigator))
        }
    }
}

fn with_pack(dir: &Path, f: impl FnOnce(&Loaded) -> ExitCode) -> ExitCode {
    match load_dir(dir) {
        Ok(loaded) => f(&loaded),
        Err(e) => report_load_error(dir, &e),
    }
}

/// Print why a pack did not load; the exit status for an unusable pack.
pub(crate) fn report_load_error(dir: &Path, error: &LoadError) -> ExitCode {
    if let LoadError::Invalid(errors) = error {
        for e in errors {
            report(&e.to_string());
        }
    }
    report(&format!("{}: {error}", dir.display()));
    ExitCode::from(EXIT_UNUSABLE)
}

fn validate(dir: &Path) -> ExitCode {
    match load_dir(dir) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                report(&format!("warning: {w}"));
            }
            let n = loaded.pack.rules().len();
            report(&format!("{}: {n} rules valid", dir.display()));
            ExitCode::SUCCESS
        }
        Err(LoadError::Invalid(errors)) => {
            for e in &errors {
                report(&e.to_string());
            }
            report(&format!(
                "{}: {} error{} found",
                dir.display(),
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            ));
            ExitCode::FAILURE
        }
        Err(e) => {
            report(&e.to_string());
            ExitCode::from(EXIT_UNUSABLE)
        }
    }
}

fn list(loaded: &Loaded) -> ExitCode {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<6} {:<34} {:<22} {:<40} {}\n",
        "ID", "NAME", "KINDS", "TECHNIQUES", "STATE"
    ));
    for rule in loaded.pack.rules() {
        let kinds: Vec<&str> = rule.applies_to.iter().map(|k| k.as_str()).collect();
        let techniques: Vec<&str> = rule.emits.iter().map(|e| e.attack_id()).collect();
        // Offline there is no rule store: every rule of a directory runs enabled.
        out.push_str(&format!(
            "{:<6} {:<34} {:<22} {:<40} {}\n",
            rule.rule_id,
            rule.name,
            kinds.join(","),
            techniques.join(","),
            "enabled"
        ));
    }
    write_stdout(&out)
}

fn write_stdout(text: &str) -> ExitCode {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    match lock.write_all(text.as_bytes()).and_then(|()| lock.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&format!("cannot write output: {e}"));
            ExitCode::from(EXIT_UNUSABLE)
        }
    }
}

/// Expand `--rule` values into rule ids of the pack.
fn select(pack: &Pack, selection: &[String]) -> Result<BTreeSet<String>, String> {
    let mut ids = BTreeSet::new();
    for item in selection {
        match item.split_once('-') {
            Some((lo, hi))
                if decnet_ttp::rule::is_rule_id(lo)
                    && decnet_ttp::rule::is_rule_id(hi)
                    && lo <= hi =>
            {
                ids.extend(
                    pack.rules()
                        .iter()
                        .map(|r| &r.rule_id)
                        .filter(|id| id.as_str() >= lo && id.as_str() <= hi)
                        .cloned(),
                );
            }
            None if pack.get(item).is_some() => {
                ids.insert(item.clone());
            }
            None if decnet_ttp::rule::is_rule_id(item) => {
                return Err(format!("--rule {item}: the pack holds no such rule"));
            }
            _ => {
                return Err(format!(
                    "--rule {item}: expected a rule id (R0012) or a range (R0010-R0029)"
                ));
            }
        }
    }
    Ok(ids)
}

fn test(pack: &Pack, corpus_dir: &Path, selection: &[String], json: bool) -> ExitCode {
    let selected = match select(pack, selection) {
        Ok(ids) => ids,
        Err(e) => {
            report(&e);
            return ExitCode::from(EXIT_UNUSABLE);
        }
    };
    let rows = match corpus::load_corpus(corpus_dir) {
        Ok(rows) => rows,
        Err(CorpusError::Invalid(errors)) => {
            errors.iter().for_each(|e| report(e));
            report(&format!(
                "{}: invalid corpus ({} errors)",
                corpus_dir.display(),
                errors.len()
            ));
            return ExitCode::from(EXIT_UNUSABLE);
        }
        Err(e) => {
            report(&e.to_string());
            return ExitCode::from(EXIT_UNUSABLE);
        }
    };
    let index = RuleIndex::new(pack);
    let result = corpus::score(&index, &rows, &selected, Utc::now());
    let text = if json {
        serde_json::to_string_pretty(&result)
            .map(|s| s + "\n")
            .unwrap_or_default()
    } else {
        render(&result, rows.len())
    };
    let written = write_stdout(&text);
    if written != ExitCode::SUCCESS {
        return written;
    }
    if result.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}"))
}

fn render(report: &Report, rows: usize) -> String {
    let mut out = format!(
        "{:<6} {:<4} {:>5} {:>5} {:>5} {:>4} {:>4} {:>4} {:>9} {:>7} {:<14} {}\n",
        "RULE",
        "BAND",
        "ROWS",
        "POS",
        "NEG",
        "TP",
        "FP",
        "FN",
        "PRECISION",
        "RECALL",
        "TARGETS",
        "RESULT"
    );
    for r in &report.rules {
        out.push_str(&format!(
            "{:<6} {:<4} {:>5} {:>5} {:>5} {:>4} {:>4} {:>4} {:>9} {:>7} {:<14} {}\n",
            r.rule_id,
            format!("{:?}", r.band),
            r.rows,
            r.positives,
            r.negatives,
            r.tp,
            r.fp,
            r.fn_,
            pct(r.precision),
            pct(r.recall),
            format!("P≥{:.2} R≥{:.2}", r.precision_target, r.recall_target),
            if r.pass { "PASS" } else { "FAIL" }
        ));
    }
    for r in report.rules.iter().filter(|r| !r.pass) {
        let mut why = Vec::new();
        if r.positives < corpus::MIN_ROWS_EACH_SIDE || r.negatives < corpus::MIN_ROWS_EACH_SIDE {
            why.push(format!(
                "needs ≥{} positive and ≥{} negative rows",
                corpus::MIN_ROWS_EACH_SIDE,
                corpus::MIN_ROWS_EACH_SIDE
            ));
        }
        out.push_str(&format!(
            "\n{} FAIL{}\n",
            r.rule_id,
            if why.is_empty() {
                String::new()
            } else {
                format!(": {}", why.join("; "))
            }
        ));
        for label in &r.fp_labels {
            out.push_str(&format!("  FP {label}\n"));
        }
        for label in &r.fn_labels {
            out.push_str(&format!("  FN {label}\n"));
        }
    }
    if !report.not_scored.is_empty() {
        out.push_str(&format!(
            "\nnot scored (not in the pack): {}\n",
            report.not_scored.join(", ")
        ));
    }
    let passed = report.rules.iter().filter(|r| r.pass).count();
    out.push_str(&format!(
        "\n{passed}/{} rules pass on {rows} corpus rows\n",
        report.rules.len()
    ));
    out
}

fn coverage(pack: &Pack, path: &Path) -> ExitCode {
    let catalogue = Catalogue::bundled();
    let layer = decnet_ttp::navigator::coverage_layer(pack.rules(), catalogue);
    let techniques = layer["techniques"].as_array().map_or(0, Vec::len);
    let text = serde_json::to_string_pretty(&layer).unwrap_or_default();
    if let Err(e) = std::fs::write(path, text + "\n") {
        report(&format!("cannot write {}: {e}", path.display()));
        return ExitCode::from(EXIT_UNUSABLE);
    }
    report(&format!(
        "{}: {techniques} technique cells from {} rules",
        path.display(),
        pack.rules().len()
    ));
    ExitCode::SUCCESS
}
