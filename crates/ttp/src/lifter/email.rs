//! Email lifters (RULES.md §7.6): relay abuse, campaigns, mailer kits, homoglyph links,
//! sender masquerade, malicious attachments, BEC lures and encoded payloads.
//!
//! They read the features the SMTP decoy derives per message (EVENTS.md §4.5). Recipient
//! addresses, bodies, URLs and decoded bytes are read here and never returned: a decision
//! carries header names, domains of the sender side, a URL host, matched keywords, hashes
//! and counts, nothing else (the email evidence type has no key for more).

use regex::Regex;
use serde_json::Value;

use super::tables::{Table, TableReader};
use super::{Decision, Fields, Lift, Misfits, Params, Spec, fields};
use crate::event::EvalEvent;
use crate::evidence::{EvidenceKey, domain_of};
use crate::kind::SourceKind;

pub(super) const SPECS: &[Spec] = &[
    Spec {
        name: "email_open_relay",
        kinds: &[SourceKind::Email],
        build: |p| {
            let rcpt_threshold = p.int("rcpt_threshold", 10, 1, 1_000_000);
            let require_foreign_from = p.bool("require_foreign_from", true);
            Some(Box::new(OpenRelay {
                rcpt_threshold,
                require_foreign_from,
            }))
        },
    },
    Spec {
        name: "email_mass_phish",
        kinds: &[SourceKind::Email],
        build: |p| {
            let min_messages = p.int("min_messages", 5, 2, 1_000_000);
            let min_recipients = p.int("min_recipients", 25, 1, 1_000_000);
            let max_window_h = p.int("max_window_h", 24, 1, 24 * 366);
            Some(Box::new(MassPhish {
                min_messages,
                min_recipients,
                max_window_h,
            }))
        },
    },
    Spec {
        name: "email_xmailer_kit",
        kinds: &[SourceKind::Email],
        build: |p| {
            let table = p.table("catalogue", "")?;
            xmailer_kits(p, &table).map(|l| Box::new(l) as Box<dyn Lift>)
        },
    },
    Spec {
        name: "email_idn_url",
        kinds: &[SourceKind::Email],
        build: |p| {
            let prefix = p.string("punycode_prefix", "xn--").to_ascii_lowercase();
            Some(Box::new(IdnUrl { prefix }))
        },
    },
    Spec {
        name: "email_sender_masquerade",
        kinds: &[SourceKind::Email],
        build: |p| {
            let signals = p.strings("signals", MASQUERADE_SIGNALS, MASQUERADE_SIGNALS);
            Some(Box::new(SenderMasquerade { signals }))
        },
    },
    Spec {
        name: "email_malicious_attachment",
        kinds: &[SourceKind::Email],
        build: |p| {
            let triggers = p.strings("triggers", ATTACHMENT_TRIGGERS, ATTACHMENT_TRIGGERS);
            Some(Box::new(MaliciousAttachment { triggers }))
        },
    },
    Spec {
        name: "email_bec",
        kinds: &[SourceKind::Email],
        build: |p| {
            let subject = p.strings(
                "subject_keywords",
                &["urgent", "wire", "invoice", "payroll", "gift card"],
                &[],
            );
            let body = p.strings(
                "body_keywords",
                &["send", "transfer", "update banking", "confidential"],
                &[],
            );
            Some(Box::new(Bec {
                subject: Keywords::new(subject),
                body: Keywords::new(body),
            }))
        },
    },
    Spec {
        name: "email_encoded_payload",
        kinds: &[SourceKind::Email],
        build: |p| {
            let min_bytes = p.int("min_bytes", 4096, 1, i64::MAX);
            let min_run = p.int("min_run", 32, 4, 1_000_000) as usize;
            Some(Box::new(EncodedPayload { min_bytes, min_run }))
        },
    },
];

fn headers(names: &[&str]) -> (EvidenceKey, Value) {
    // Sorted and unique, as the evidence contract says of header names.
    let mut names: Vec<&str> = names.to_vec();
    names.sort_unstable();
    names.dedup();
    (EvidenceKey::MatchedHeaders, Value::from(names))
}

/// The domain of a sender-side field: after the last `@`, lowercased, trimmed; empty is none.
fn domain(f: Fields<'_>, field: &str) -> Option<String> {
    f.str(field).map(domain_of).filter(|d| !d.is_empty())
}

/// R0041: many recipients from a sender whose header domain is not the envelope's.
#[derive(Debug)]
struct OpenRelay {
    rcpt_threshold: i64,
    require_foreign_from: bool,
}

impl Lift for OpenRelay {
    fn lift(&self, event: &EvalEvent, misfits: &Misfits) -> Option<Decision> {
        let f = fields(event, misfits);
        let many = f
            .int("rcpt_count")
            .is_some_and(|n| n >= self.rcpt_threshold);
        if !many {
            return None;
        }
        if self.require_foreign_from {
            let from = domain(f, "from_domain");
            let envelope = domain(f, "mail_from_domain");
            match (from, envelope) {
                (Some(a), Some(b)) if a != b => {}
                _ => return None,
            }
        }
        Some(Decision::all(vec![headers(&["From", "MAIL FROM"])]))
    }
}

/// R0042: the decoy's campaign signal (near-identical bodies within the window).
#[derive(Debug)]
struct MassPhish {
    min_messages: i64,
    min_recipients: i64,
    max_window_h: i64,
}

impl Lift for MassPhish {
    fn lift(&self, event: &EvalEvent, misfits: &Misfits) -> Option<Decision> {
        let f = fields(event, misfits);
        let simhash_ok = f.str("body_simhash").is_some_and(|h| {
            h.len() == 16
                && h.bytes().all(|b| b.is_ascii_hexdigit())
                && h.bytes().any(|b| b != b'0')
        });
        let (Some(messages), Some(window)) =
            (f.int("campaign_message_count"), f.int("campaign_window_h"))
        else {
            return None;
        };
        let recipients = f.int("campaign_rcpt_count").unwrap_or(0);
        let fired = simhash_ok
            && window <= self.max_window_h
            && messages >= 2
            && (messages >= self.min_messages || recipients >= self.min_recipients);
        fired.then(Decision::default)
    }
}

/// One entry of the X-Mailer kit list.
#[derive(Debug)]
struct Kit {
    id: String,
    exact: bool,
    /// Normalised: trimmed, whitespace collapsed, lowercase.
    value: String,
    emits: Vec<usize>,
}

/// R0043: the `X-Mailer` of a known phishing kit or bulk mailer.
#[derive(Debug)]
struct XmailerKits {
    kits: Vec<Kit>,
}

fn normalise_mailer(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn xmailer_kits(p: &mut Params<'_>, table: &Table) -> Option<XmailerKits> {
    const KEYS: &[&str] = &[
        "id",
        "match",
        "value",
        "family",
        "class",
        "techniques",
        "reference",
        "notes",
    ];
    let mut r = TableReader::new(table);
    let mut kits: Vec<Kit> = Vec::new();
    let entries = table.root.as_ref().and_then(|root| {
        let top = r.map(root, "", &["entries"], &["entries"])?;
        let (_, list) = top.into_iter().find(|(k, _)| *k == "entries")?;
        r.seq(list, "entries").map(<[_]>::to_vec)
    });
    if table.root.is_none() {
        r.error(Default::default(), "", "the table is empty");
    }
    for (i, node) in entries.unwrap_or_default().iter().enumerate() {
        let path = format!("entries[{i}]");
        let Some(f) = r.map(node, &path, KEYS, &["id", "match", "value", "techniques"]) else {
            continue;
        };
        let get = |k: &str| f.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        let id = get("id").and_then(|n| r.string(n, &format!("{path}.id")));
        let how = get("match").and_then(|n| r.string(n, &format!("{path}.match")));
        let value = get("value").and_then(|n| r.string(n, &format!("{path}.value")));
        let techniques =
            get("techniques").and_then(|n| r.strings(n, &format!("{path}.techniques")));
        let (Some(id), Some(how), Some(value), Some(techniques)) = (id, how, value, techniques)
        else {
            continue;
        };
        let pos = node.pos;
        if !is_kit_id(&id) {
            r.error(
                pos,
                &format!("{path}.id"),
                format!("{id:?} is not of the form XM followed by three digits"),
            );
            continue;
        }
        if kits.iter().any(|k| k.id == id) {
            r.error(pos, &format!("{path}.id"), format!("{id} is listed twice"));
            continue;
        }
        let exact = match how.as_str() {
            "exact" => true,
            "contains" => false,
            other => {
                r.error(
                    pos,
                    &format!("{path}.match"),
                    format!("{other:?} is not exact or contains"),
                );
                continue;
            }
        };
        // Not `?`: the table's errors must reach the rule, or the rule would vanish silently.
        let Some(emits) = r.emits(p.emits(), &techniques, &format!("{path}.techniques"), pos)
        else {
            continue;
        };
        let normalised = normalise_mailer(&value);
        if normalised.is_empty() {
            r.error(
                pos,
                &format!("{path}.value"),
                "is empty once trimmed: it would match every X-Mailer",
            );
            continue;
        }
        kits.push(Kit {
            id,
            exact,
            value: normalised,
            emits,
        });
    }
    let errors = std::mem::take(&mut r.errors);
    let ok = errors.is_empty();
    for e in errors {
        p.table_error(e);
    }
    ok.then_some(XmailerKits { kits })
}

fn is_kit_id(s: &str) -> bool {
    s.len() == 5 && s.starts_with("XM") && s[2..].bytes().all(|b| b.is_ascii_digit())
}

impl Lift for XmailerKits {
    fn lift(&self, event: &EvalEvent, misfits: &Misfits) -> Option<Decision> {
        let mailer = fields(event, misfits).str("x_mailer")?;
        let mailer = normalise_mailer(mailer);
        if mailer.is_empty() {
            return None;
        }
        let kit = self.kits.iter().find(|k| {
            if k.exact {
                mailer == k.value
            } else {
                mailer.contains(&k.value)
            }
        });
        kit.map(|kit| Decision {
            extras: vec![
                (EvidenceKey::MatchedKit, Value::from(kit.id.as_str())),
                headers(&["X-Mailer"]),
            ],
            picks: Some(
                kit.emits
                    .iter()
                    .map(|&emit| super::Pick {
                        emit,
                        multiplier: 1.0,
                        extras: Vec::new(),
                    })
                    .collect(),
            ),
        })
    }
}

/// R0044: a web link whose host has a punycode (IDN) label.
#[derive(Debug)]
struct IdnUrl {
    prefix: String,
}

/// The lowercase host of an `http`/`https` URL: no user-info, no port.
fn web_host(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    // User-info ends at the last `@` before the path, whatever it holds.
    let before_path = rest.find('/').unwrap_or(rest.len());
    let host_start = rest[..before_path].rfind('@').map_or(0, |i| i + 1);
    let host_port = &rest[host_start..];
    if host_port.starts_with('[') {
        return None; // an IPv6 literal has no labels
    }
    // The host is what a DNS name can hold; anything else (`:port`, `;jsessionid=…`, `\`,
    // a path or a query) ends it, so a path can never ride along as "host".
    let len = host_port
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'))
        .unwrap_or(host_port.len());
    let host = host_port[..len].trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

impl Lift for IdnUrl {
    fn lift(&self, event: &EvalEvent, misfits: &Misfits) -> Option<Decision> {
        for url in fields(event, misfits).strs("urls") {
            if let Some(host) = web_host(url)
                && host.split('.').any(|label| label.starts_with(&self.prefix))
            {
                return Some(Decision::all(vec![(
                    EvidenceKey::MatchedUrlHost,
                    Value::from(host),
                )]));
            }
        }
        None
    }
}

const MASQUERADE_SIGNALS: &[&str] = &[
    "from_returnpath_mismatch",
    "from_mailfrom_mismatch",
    "dkim_missing",
    "spf_fail",
];

/// R0045: the sender is not who the headers say.
#[derive(Debug)]
struct SenderMasquerade {
    signals: Vec<String>,
}

impl Lift for SenderMasquerade {
    fn lift(&self, event: &EvalEvent, misfits: &Misfits) -> Option<Decision> {
        let f = fields(event, misfits);
        let from = domain(f, "from_domain");
        let differs =
            |other: Option<String>| matches!((&from, other), (Some(a), Some(b)) if *a != b);
        let returnpath = differs(domain(f, "return_path_domain"));
        let mailfrom = differs(domain(f, "mail_from_domain"));
        // A producer without `dkim_signature_present` (DECNET) is read from `dkim_signed`
        // (EVENTS.md §4.5); no claim at all is a missing signature.
        let dkim_present = match f.bool("dkim_signature_present") {
            Some(b) => b,
            None => f.bool("dkim_signed").unwrap_or(false),
        };
        // An SPF failure is stated, never assumed: Authentication-Results present and
        // `spf_pass` false.
        let spf_fail =
            f.bool("auth_results_present") == Some(true) && f.bool("spf_pass") == Some(false);
        let mut matched = Vec::new();
        let mut names = Vec::new();
        for signal in MASQUERADE_SIGNALS {
            if !self.signals.iter().any(|s| s == signal) {
                continue;
            }
            let (on, header) = match *signal {
                "from_returnpath_mismatch" => (returnpath, "Return-Path"),
                // The envelope is not a header: the From header is what disagrees with it.
                "from_mailfrom_mismatch" => (mailfrom, "From"),
                "dkim_missing" => (!dkim_present, "DKIM-Signature"),
                _ => (spf_fail, "Authentication-Results"),
            };
            if on {
                matched.push(*signal);
                if *signal != "dkim_missing" && *signal != "spf_fail" {
                    names.push("From");
                }
                names.push(header);
            }
        }
        if matched.is_empty() {
            return None;
        }
        Some(Decision::all(vec![
            (EvidenceKey::MatchedSignals, Value::from(matched)),
            headers(&names),
        ]))
    }
}

const ATTACHMENT_TRIGGERS: &[&str] = &[
    "office_macro",
    "protected_archive",
    "html_smuggling",
    "mal_hash_match",
    "lnk",
    "iso",
    "img",
];

/// R0046: an attachment that executes, hides or is known bad.
#[derive(Debug)]
struct MaliciousAttachment {
    triggers: Vec<String>,
}

impl Lift for MaliciousAttachment {
    fn lift(&self, event: &EvalEvent, misfits: &Misfits) -> Option<Decision> {
        let f = fields(event, misfits);
        let extensions: Vec<String> = f
            .strs("attachment_extensions")
            .iter()
            .map(|e| e.trim().trim_start_matches('.').to_lowercase())
            .collect();
        let mut matched: Vec<&str> = Vec::new();
        for trigger in ATTACHMENT_TRIGGERS {
            if !self.triggers.iter().any(|t| t == trigger) {
                continue;
            }
            let on = match *trigger {
                "office_macro" => f.bool("attachment_macros").unwrap_or(false),
                "protected_archive" => f.bool("attachment_password_protected").unwrap_or(false),
                "html_smuggling" => f.bool("html_smuggling").unwrap_or(false),
                "mal_hash_match" => f.bool("mal_hash_match").unwrap_or(false),
                ext => extensions.iter().any(|e| e == ext),
            };
            if on {
                matched.push(trigger);
            }
        }
        let first = matched.first()?;
        Some(Decision::all(vec![
            (EvidenceKey::MatchedTrigger, Value::from(*first)),
            (EvidenceKey::MatchedSignals, Value::from(matched)),
        ]))
    }
}

/// Whole-word, case-insensitive keywords and phrases; a phrase's words may be separated by
/// any whitespace.
#[derive(Debug)]
struct Keywords(Vec<(String, Regex)>);

impl Keywords {
    fn new(words: Vec<String>) -> Keywords {
        let compiled = words
            .into_iter()
            .filter_map(|w| {
                let parts: Vec<String> = w.split_whitespace().map(regex::escape).collect();
                let re = Regex::new(&format!(r"(?i)\b{}\b", parts.join(r"\s+"))).ok()?;
                Some((w, re))
            })
            .collect();
        Keywords(compiled)
    }

    fn matched(&self, text: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(_, re)| re.is_match(text))
            .map(|(w, _)| w.as_str())
            .collect()
    }
}

/// R0047: a business-email-compromise lure: a pressure word in the subject and a request in
/// the body.
#[derive(Debug)]
struct Bec {
    subject: Keywords,
    body: Keywords,
}

impl Lift for Bec {
    fn reads_fetched(&self, field: &str) -> bool {
        field == "body_text"
    }

    fn lift(&self, event: &EvalEvent, misfits: &Misfits) -> Option<Decision> {
        let f = fields(event, misfits);
        let (Some(subject), Some(body)) = (f.str("subject"), f.str("body_text")) else {
            return None;
        };
        let subject_kw = self.subject.matched(subject);
        if subject_kw.is_empty() {
            return None;
        }
        let body_kw = self.body.matched(body);
        if body_kw.is_empty() {
            return None;
        }
        Some(Decision::all(vec![
            (EvidenceKey::MatchedSubjectKw, Value::from(subject_kw)),
            (EvidenceKey::MatchedBodyKw, Value::from(body_kw)),
            headers(&["Subject"]),
        ]))
    }
}

/// R0048: a large base64 payload in the body.
#[derive(Debug)]
struct EncodedPayload {
    min_bytes: i64,
    min_run: usize,
}

impl Lift for EncodedPayload {
    fn reads_fetched(&self, field: &str) -> bool {
        field == "body_text"
    }

    fn lift(&self, event: &EvalEvent, misfits: &Misfits) -> Option<Decision> {
        let f = fields(event, misfits);
        let reported = f.int("body_base64_bytes").filter(|n| *n >= self.min_bytes);
        let size = match reported {
            Some(n) => Some(n),
            None => f
                .str("body_text")
                .and_then(|body| largest_base64_run(body, self.min_run))
                .map(|n| n as i64)
                .filter(|n| *n >= self.min_bytes),
        };
        size.map(|n| Decision::all(vec![(EvidenceKey::EncodedByteCount, Value::from(n))]))
    }
}

fn is_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// The decoded size of the largest base64 run in `text` that decodes strictly: at least
/// `min_run` characters without a break, at most two `=` at its end, length a multiple of
/// four, unused bits zero. A run stops at whitespace: a line-wrapped block (a PGP key, an
/// S/MIME signature) is text a person pasted, not a payload smuggled in one piece. The bytes
/// are never decoded into memory, only counted.
pub(crate) fn largest_base64_run(text: &str, min_run: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut best: Option<usize> = None;
    let mut i = 0;
    while i < bytes.len() {
        if !is_b64(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_b64(bytes[i]) {
            i += 1;
        }
        let chars = &bytes[start..i];
        let mut pad = 0;
        while i < bytes.len() && bytes[i] == b'=' {
            pad += 1;
            i += 1;
        }
        let len = chars.len() + pad;
        if pad > 2 || len < min_run || !len.is_multiple_of(4) || !strict_tail(chars, pad) {
            continue;
        }
        let decoded = len / 4 * 3 - pad;
        best = Some(best.map_or(decoded, |b: usize| b.max(decoded)));
    }
    best
}

/// The last character before padding must leave the unused bits zero.
fn strict_tail(chars: &[u8], pad: usize) -> bool {
    // `=` only ever follows data; a run of padding alone is not base64.
    let Some(&last) = chars.last() else {
        return false;
    };
    let value = match last {
        b'A'..=b'Z' => last - b'A',
        b'a'..=b'z' => last - b'a' + 26,
        b'0'..=b'9' => last - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    match pad {
        0 => true,
        1 => value & 0b11 == 0,
        _ => value & 0b1111 == 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_hosts_drop_user_info_and_port() {
        assert_eq!(
            web_host("https://u:p@XN--Pple-43d.com:8443/login?x"),
            Some("xn--pple-43d.com".into())
        );
        assert_eq!(web_host("ftp://xn--e1a.example/"), None);
        assert_eq!(web_host("http://[2001:db8::1]/"), None);
        assert_eq!(
            web_host("https://xn--pple-43d.com;jsessionid=SECRET123"),
            Some("xn--pple-43d.com".into())
        );
        assert_eq!(
            web_host("https://xn--pple-43d.com\\evil\\path"),
            Some("xn--pple-43d.com".into())
        );
        assert_eq!(
            web_host("http://admin:pa?ss@xn--e1a.example/x"),
            Some("xn--e1a.example".into())
        );
    }

    #[test]
    fn base64_runs_are_counted_strictly() {
        // 3 bytes per 4 characters; "QUJD" is "ABC".
        assert_eq!(largest_base64_run(&"QUJD".repeat(8), 32), Some(24));
        assert_eq!(largest_base64_run("QUI=", 4), Some(2));
        // "QUJ=": the last character leaves bits set, so this is not strict base64.
        assert_eq!(largest_base64_run("QUJ=", 4), None);
        // Not a multiple of four.
        assert_eq!(largest_base64_run(&"QUJD".repeat(8)[1..], 4), None);
        // A wrapped block counts line by line: each line is its own run.
        let wrapped = format!("{}\r\n{}\n", "QUJD".repeat(19), "QUJD".repeat(20));
        assert_eq!(largest_base64_run(&wrapped, 32), Some(60));
        assert_eq!(largest_base64_run("short Zm9v words", 32), None);
    }

    #[test]
    fn mailers_are_compared_normalised() {
        assert_eq!(
            normalise_mailer("  Leaf   PHPMailer\t2.7 "),
            "leaf phpmailer 2.7"
        );
    }
}
