//! `decnet tail SUBJECT…`: a live view of any subject, pretty or `--json` for piping.
//!
//! Each pattern is read from every stream whose subjects it overlaps, with one ordered,
//! ephemeral consumer per (stream, filter) delivering new messages (or from `--from-seq`), so
//! tailing never takes work from a service. The work-queue stream `PROBES` is the exception:
//! a consumer there would take probes from probe-relay, so it is watched with a plain core
//! subscription, live only, and the command says so. Messages of several streams are shown
//! as they arrive.

use std::process::ExitCode;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use futures_util::stream::{BoxStream, select_all};
use serde_json::{Value, json};

use super::{EXIT_UNUSABLE, tag::report};

/// `decnet tail`.
#[derive(Debug, clap::Args)]
pub(crate) struct TailArgs {
    /// NATS server.
    #[arg(long, env = "DECNET_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// One JSON object per message (stream, seq, subject, time, headers, body).
    #[arg(long)]
    json: bool,
    /// Start at this stream sequence instead of new messages (with one stream).
    #[arg(long)]
    from_seq: Option<u64>,
    /// Stop after this many messages.
    #[arg(long)]
    count: Option<usize>,
    /// Subjects or patterns (`ttp.tagged`, `ttp.rule.fired.>`, `decnet.dlq.>`).
    #[arg(required = true)]
    subjects: Vec<String>,
}

/// Whether some subject matches both patterns.
fn overlap(a: &str, b: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
    for i in 0.. {
        match (a.get(i), b.get(i)) {
            (None, None) => return true,
            (Some(&">"), Some(_)) | (Some(_), Some(&">")) => return true,
            (Some(x), Some(y)) if x == y || *x == "*" || *y == "*" => {}
            _ => return false,
        }
    }
    unreachable!("the loop returns")
}

/// Whether every subject `inner` matches is matched by `outer`.
fn within(inner: &str, outer: &str) -> bool {
    let (i, o): (Vec<&str>, Vec<&str>) = (inner.split('.').collect(), outer.split('.').collect());
    for k in 0.. {
        match (i.get(k), o.get(k)) {
            (None, None) => return true,
            (_, Some(&">")) => return i.len() > k,
            (Some(&">"), _) => return false,
            (Some(_), Some(&"*")) => {}
            (Some(x), Some(y)) if x == y => {}
            _ => return false,
        }
    }
    unreachable!("the loop returns")
}

/// The (stream, filter) pairs a pattern reads.
fn plan(pattern: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for def in decnet_bus::STREAMS.iter() {
        for s in def.subjects {
            if !overlap(pattern, s) {
                continue;
            }
            let filter = if within(pattern, s) {
                pattern.to_owned()
            } else {
                (*s).to_owned()
            };
            if !out.contains(&(def.name, filter.clone())) {
                out.push((def.name, filter));
            }
        }
    }
    out
}

struct Shown {
    stream: String,
    seq: Option<u64>,
    subject: String,
    headers: serde_json::Map<String, Value>,
    body: Vec<u8>,
}

fn headers_of(h: Option<&async_nats::HeaderMap>) -> serde_json::Map<String, Value> {
    h.into_iter()
        .flat_map(|h| h.iter())
        .map(|(k, v)| {
            let value = v.first().map(|x| x.as_str().to_owned()).unwrap_or_default();
            (k.to_string(), Value::from(value))
        })
        .collect()
}

fn print(m: &Shown, as_json: bool) {
    let now = chrono::Utc::now();
    let body: Value = serde_json::from_slice(&m.body)
        .unwrap_or_else(|_| Value::from(String::from_utf8_lossy(&m.body).into_owned()));
    let line = if as_json {
        json!({"stream": m.stream, "seq": m.seq, "subject": m.subject,
            "time": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "headers": m.headers, "body": body})
        .to_string()
    } else {
        let mut text = body.to_string();
        if text.chars().count() > 200 {
            text = text.chars().take(199).collect::<String>() + "…";
        }
        let reason = m
            .headers
            .get("decnet-dlq-reason")
            .and_then(Value::as_str)
            .map(|r| format!("  [{r}]"))
            .unwrap_or_default();
        format!(
            "{} {:<8} {:<32} {text}{reason}",
            now.format("%H:%M:%S%.3f"),
            m.stream,
            m.subject
        )
    };
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

pub(crate) fn run(args: &TailArgs) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    runtime.block_on(async {
        let client = match decnet_bus::connect(&args.nats_url, "decnet-tail", Duration::from_secs(10)).await {
            Ok(c) => c,
            Err(e) => {
                report(&format!("decnet tail: {e}"));
                return ExitCode::from(EXIT_UNUSABLE);
            }
        };
        let js = jetstream::new(client.clone());
        let mut feeds: Vec<BoxStream<'static, Shown>> = Vec::new();
        for pattern in &args.subjects {
            let plan = plan(pattern);
            if plan.is_empty() {
                report(&format!("decnet tail: {pattern:?} matches no stream's subjects"));
                return ExitCode::from(EXIT_UNUSABLE);
            }
            for (stream, filter) in plan {
                if stream == "PROBES" {
                    report(&format!(
                        "decnet tail: {filter} is a work queue; showing live messages only (a consumer would take probes from probe-relay)"
                    ));
                    match client.subscribe(filter.clone()).await {
                        Ok(sub) => feeds.push(
                            sub.map(|m| Shown {
                                stream: "PROBES".into(),
                                seq: None,
                                subject: m.subject.to_string(),
                                headers: headers_of(m.headers.as_ref()),
                                body: m.payload.to_vec(),
                            })
                            .boxed(),
                        ),
                        Err(e) => {
                            report(&format!("decnet tail: subscribing to {filter}: {e}"));
                            return ExitCode::from(EXIT_UNUSABLE);
                        }
                    }
                    continue;
                }
                let Ok(s) = js.get_stream(stream).await else {
                    report(&format!("decnet tail: stream {stream} does not exist yet; skipping {filter}"));
                    continue;
                };
                let deliver_policy = match args.from_seq {
                    Some(start_sequence) => consumer::DeliverPolicy::ByStartSequence { start_sequence },
                    None => consumer::DeliverPolicy::New,
                };
                let config = consumer::pull::OrderedConfig {
                    filter_subject: filter.clone(),
                    deliver_policy,
                    ..Default::default()
                };
                let messages = match s.create_consumer(config).await {
                    Ok(c) => c.messages().await,
                    Err(e) => {
                        report(&format!("decnet tail: reading {stream} {filter}: {e}"));
                        return ExitCode::from(EXIT_UNUSABLE);
                    }
                };
                match messages {
                    Ok(messages) => feeds.push(
                        messages
                            .filter_map(move |m| {
                                let stream = stream.to_owned();
                                async move {
                                    let m = m.ok()?;
                                    let seq = m.info().ok().map(|i| i.stream_sequence);
                                    Some(Shown {
                                        stream,
                                        seq,
                                        subject: m.subject.to_string(),
                                        headers: headers_of(m.headers.as_ref()),
                                        body: m.payload.to_vec(),
                                    })
                                }
                            })
                            .boxed(),
                    ),
                    Err(e) => {
                        report(&format!("decnet tail: reading {stream} {filter}: {e}"));
                        return ExitCode::from(EXIT_UNUSABLE);
                    }
                }
            }
        }
        let mut all = select_all(feeds);
        let mut shown = 0;
        loop {
            tokio::select! {
                next = all.next() => match next {
                    Some(m) => {
                        print(&m, args.json);
                        shown += 1;
                        if args.count.is_some_and(|n| shown >= n) {
                            return ExitCode::SUCCESS;
                        }
                    }
                    None => return ExitCode::SUCCESS,
                },
                _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_map_to_their_streams() {
        assert_eq!(plan("ttp.tagged"), vec![("TTP", "ttp.tagged".to_owned())]);
        assert_eq!(
            plan("ttp.rule.>"),
            vec![
                ("TTP", "ttp.rule.fired.>".to_owned()),
                ("TTP", "ttp.rule.suppressed".to_owned()),
                ("RULES", "ttp.rule.reloaded.>".to_owned()),
                ("RULES", "ttp.rule.state.>".to_owned()),
            ]
        );
        assert_eq!(
            plan("canary.*.triggered"),
            vec![("EVENTS", "canary.*.triggered".to_owned())]
        );
        assert_eq!(
            plan("smtp.probe.*"),
            vec![
                ("EVENTS", "smtp.probe.relayed".to_owned()),
                ("PROBES", "smtp.probe.pending".to_owned()),
            ]
        );
        assert!(plan("weather.report").is_empty());
    }

    #[test]
    fn overlap_and_within_follow_nats_wildcards() {
        assert!(overlap(">", "attacker.>"));
        assert!(!overlap("attacker", "attacker.>"));
        assert!(within("attacker.session.ended", "attacker.>"));
        assert!(!within("attacker.>", "attacker.session.ended"));
        assert!(within("canary.*.triggered", "canary.>"));
    }
}
