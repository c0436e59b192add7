//! `decnet tag`: offline tagging of JSONL input (EVENTS.md §9).
//!
//! Each input line is a tagging event or a bus message; both are turned into evaluation
//! events by the same fan-out code as the tagger. Bad lines are reported with their number
//! and skipped: one malformed line never costs the tags of the others.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Utc;
use decnet_ttp::engine::SuppressReason;
use decnet_ttp::fanout::{self, FanoutError};
use decnet_ttp::ratelimit::RateLimiter;
use decnet_ttp::{EvalEvent, RuleIndex, load_dir};
use serde_json::Value;

use super::{EXIT_UNUSABLE, RulesDir};

#[derive(Debug, clap::Args)]
pub(crate) struct TagArgs {
    #[command(flatten)]
    rules: RulesDir,
    /// JSONL input files; standard input when none.
    files: Vec<PathBuf>,
}

/// Counts for the closing summary.
#[derive(Debug, Default)]
struct Summary {
    lines: usize,
    invalid: usize,
    events: usize,
    tags: usize,
    below_floor: usize,
    rate_limited: usize,
    skipped_items: usize,
}

struct Tagger<'a> {
    index: &'a RuleIndex,
    limiter: RateLimiter,
    summary: Summary,
}

pub(crate) fn run(args: &TagArgs) -> ExitCode {
    let index = match load_dir(&args.rules.path) {
        Ok(loaded) => RuleIndex::new(&loaded.pack),
        Err(e) => return super::rules::report_load_error(&args.rules.path, &e),
    };
    let mut tagger = Tagger {
        index: &index,
        limiter: RateLimiter::default(),
        summary: Summary::default(),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = if args.files.is_empty() {
        tagger.read(None, std::io::stdin().lock(), &mut out)
    } else {
        args.files
            .iter()
            .try_for_each(|path| match std::fs::File::open(path) {
                Ok(file) => tagger.read(Some(path), BufReader::new(file), &mut out),
                Err(e) => Err(std::io::Error::new(
                    e.kind(),
                    format!("cannot read {}: {e}", path.display()),
                )),
            })
    };
    if let Err(e) = result.and_then(|()| out.flush()) {
        report(&format!("decnet tag: {e}"));
        return ExitCode::from(EXIT_UNUSABLE);
    }
    let s = &tagger.summary;
    report(&format!(
        "decnet tag: {} lines, {} invalid, {} events, {} tags, {} suppressed ({} below_floor, {} rate_limited), {} list items skipped",
        s.lines,
        s.invalid,
        s.events,
        s.tags,
        s.below_floor + s.rate_limited,
        s.below_floor,
        s.rate_limited,
        s.skipped_items
    ));
    ExitCode::SUCCESS
}

impl Tagger<'_> {
    fn read(
        &mut self,
        path: Option<&PathBuf>,
        input: impl BufRead,
        out: &mut impl Write,
    ) -> std::io::Result<()> {
        for (i, line) in input.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            self.summary.lines += 1;
            match events_of_line(&line) {
                Ok((events, skipped)) => {
                    self.summary.skipped_items += skipped;
                    for event in events {
                        self.tag(&event, out)?;
                    }
                }
                Err(reason) => {
                    self.summary.invalid += 1;
                    let at = path.map_or_else(
                        || format!("line {}", i + 1),
                        |p| format!("{}:{}", p.display(), i + 1),
                    );
                    report(&format!("{at}: {reason}, skipped"));
                }
            }
        }
        Ok(())
    }

    fn tag(&mut self, event: &EvalEvent, out: &mut impl Write) -> std::io::Result<()> {
        self.summary.events += 1;
        let now = Utc::now();
        let mut eval = self.index.evaluate(event, now);
        let index = self.index;
        let limit_of = |id: &str| {
            index
                .get(id)
                .map_or(u32::MAX, |(r, _)| r.rate_limit_per_minute)
        };
        let mode_of = |id: &str| index.get(id).map(|(_, m)| m).unwrap_or_default();
        self.limiter
            .apply(&mut eval, event.ts.unwrap_or(now), limit_of, mode_of);
        for tag in &eval.tags {
            serde_json::to_writer(&mut *out, tag)?;
            out.write_all(b"\n")?;
        }
        self.summary.tags += eval.tags.len();
        for s in &eval.suppressed {
            match s.reason {
                SuppressReason::BelowFloor => self.summary.below_floor += 1,
                SuppressReason::RateLimited => self.summary.rate_limited += 1,
            }
        }
        Ok(())
    }
}

/// The events of one input line, and the list items it skipped.
fn events_of_line(line: &str) -> Result<(Vec<EvalEvent>, usize), String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(obj) = value else {
        return Err("expected a JSON object".to_owned());
    };
    let describe = |e: FanoutError| e.to_string();
    if obj.contains_key("subject") {
        let subject = obj
            .get("subject")
            .and_then(Value::as_str)
            .ok_or("subject: expected string")?;
        if let Some(k) = obj
            .keys()
            .find(|k| !["subject", "payload", "msg_id"].contains(&k.as_str()))
        {
            return Err(format!("{k}: unknown key in a bus message line"));
        }
        let payload = obj
            .get("payload")
            .ok_or("payload: missing required field")?;
        let fanout = fanout::from_message(subject, payload).map_err(describe)?;
        return Ok((fanout.events, fanout.skipped_items + fanout.truncated_items));
    }
    if obj.contains_key("source_kind") {
        return fanout::from_tagging_event(&obj)
            .map(|e| (vec![e], 0))
            .map_err(describe);
    }
    Err("neither a tagging event (source_kind) nor a bus message (subject)".to_owned())
}

/// Write one report line to standard error.
pub(crate) fn report(line: &str) {
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    let _ = writeln!(err, "{line}");
}
