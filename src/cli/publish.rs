//! `decnet publish [FILE…]`: put bus messages on JetStream, for labs and demos.
//!
//! Input is the bus-message form of `decnet tag` (one JSON object per line:
//! `{"subject": …, "payload": {…}, "msg_id"?: …}`). Each message is stored with a
//! `Nats-Msg-Id` — the given one, else a digest of subject and payload — so publishing the
//! same file twice stores nothing new. Bad lines are reported with their number and skipped.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{EXIT_UNUSABLE, tag::report};

/// `decnet publish`.
#[derive(Debug, clap::Args)]
pub(crate) struct PublishArgs {
    /// NATS server.
    #[arg(long, env = "DECNET_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// JSONL files of bus messages; standard input when none.
    files: Vec<PathBuf>,
}

/// One line to publish, or why not.
fn parse(line: &str) -> Result<Option<(String, String, Vec<u8>)>, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(obj) = value else {
        return Err("expected a JSON object".into());
    };
    // A tagging-event line (`source_kind`) is for `decnet tag`; it has no subject to go to.
    if obj.contains_key("source_kind") {
        return Ok(None);
    }
    if let Some(k) = obj
        .keys()
        .find(|k| !["subject", "payload", "msg_id"].contains(&k.as_str()))
    {
        return Err(format!(
            "{k}: unknown key (a bus message line has subject, payload, msg_id)"
        ));
    }
    let subject = obj
        .get("subject")
        .and_then(Value::as_str)
        .ok_or("subject: missing or not a string")?;
    if decnet_bus::stream_for_subject(subject).is_none() {
        return Err(format!("subject {subject:?} belongs to no stream"));
    }
    let payload = obj.get("payload").ok_or("payload: missing")?;
    let body = serde_json::to_vec(payload).expect("JSON values serialise");
    let msg_id = match obj.get("msg_id").and_then(Value::as_str) {
        Some(id) => id.to_owned(),
        None => {
            let mut hasher = Sha256::new();
            hasher.update(subject.as_bytes());
            hasher.update(b"\n");
            hasher.update(&body);
            let digest: String = hasher
                .finalize()
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("decnet.publish:{digest}")
        }
    };
    Ok(Some((subject.to_owned(), msg_id, body)))
}

pub(crate) fn run(args: &PublishArgs) -> ExitCode {
    let mut lines: Vec<(usize, String)> = Vec::new();
    let mut read = |reader: &mut dyn BufRead| -> std::io::Result<()> {
        for (i, line) in reader.lines().enumerate() {
            lines.push((i + 1, line?));
        }
        Ok(())
    };
    let loaded = if args.files.is_empty() {
        read(&mut std::io::stdin().lock())
    } else {
        args.files.iter().try_for_each(|f| {
            let file = std::fs::File::open(f)?;
            read(&mut std::io::BufReader::new(file))
        })
    };
    if let Err(e) = loaded {
        report(&format!("decnet publish: {e}"));
        return ExitCode::from(EXIT_UNUSABLE);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    runtime.block_on(async {
        let client = match decnet_bus::connect(&args.nats_url, "decnet-publish", Duration::from_secs(10)).await {
            Ok(c) => c,
            Err(e) => {
                report(&format!("decnet publish: {e}"));
                return ExitCode::from(EXIT_UNUSABLE);
            }
        };
        let js = jetstream::new(client);
        if let Err(e) = decnet_bus::ensure_streams(&js, &["EVENTS", "TTP", "DLQ"]).await {
            report(&format!("decnet publish: {e}"));
            return ExitCode::from(EXIT_UNUSABLE);
        }
        let (mut stored, mut duplicates, mut invalid, mut offline) = (0, 0, 0, 0);
        for (n, line) in &lines {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            match parse(line) {
                Ok(None) => offline += 1,
                Ok(Some((subject, msg_id, body))) => {
                    match decnet_bus::publish(&js, &subject, &msg_id, &BTreeMap::new(), Bytes::from(body)).await {
                        Ok(true) => duplicates += 1,
                        Ok(false) => stored += 1,
                        Err(e) => {
                            report(&format!("line {n}: {e}"));
                            return ExitCode::from(1);
                        }
                    }
                }
                Err(e) => {
                    invalid += 1;
                    report(&format!("line {n}: {e}, skipped"));
                }
            }
        }
        report(&format!(
            "decnet publish: {stored} stored, {duplicates} already stored, {invalid} invalid, {offline} tagging events left for decnet tag"
        ));
        if invalid > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS }
    })
}
