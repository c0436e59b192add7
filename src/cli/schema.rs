//! `decnet schema SUBJECT`: print the JSON Schema of a subject's payload, the same text as
//! the checked-in `proto/schemas/` file; `decnet schema --list` names every subject.

use std::io::Write;
use std::process::ExitCode;

use decnet_proto::{SUBJECTS, subject_def};

use super::EXIT_UNUSABLE;

/// `decnet schema`.
#[derive(Debug, clap::Args)]
pub(crate) struct SchemaArgs {
    /// A subject as published (`canary.5d1c….triggered`), as the spec writes it
    /// (`canary.<token>.triggered`) or as a NATS filter (`canary.*.triggered`).
    #[arg(required_unless_present = "list")]
    subject: Option<String>,
    /// List every subject with a schema, its stream and its file.
    #[arg(long, conflicts_with = "subject")]
    list: bool,
}

pub(crate) fn run(args: &SchemaArgs) -> ExitCode {
    let mut out = std::io::stdout().lock();
    if args.list {
        for def in &SUBJECTS {
            let stream = def.stream().map_or("-", |s| s.name);
            let _ = writeln!(
                out,
                "{:<30} {:<8} proto/schemas/{}",
                def.name, stream, def.file
            );
        }
        return ExitCode::SUCCESS;
    }
    let subject = args.subject.as_deref().unwrap_or_default();
    match subject_def(subject) {
        Some(def) => {
            let _ = out.write_all(def.schema_text().as_bytes());
            ExitCode::SUCCESS
        }
        None if decnet_proto::subject::matches("decnet.dlq.*", subject) => {
            let _ = writeln!(
                std::io::stderr().lock(),
                "{subject}: a dead letter's body is the original message byte for byte; \
                 its reason and origin are in the decnet-dlq-* headers (EVENTS.md §2.5)"
            );
            ExitCode::from(EXIT_UNUSABLE)
        }
        None => {
            let _ = writeln!(
                std::io::stderr().lock(),
                "{subject}: no such subject; `decnet schema --list` names the {} that have a schema",
                SUBJECTS.len()
            );
            ExitCode::from(EXIT_UNUSABLE)
        }
    }
}
