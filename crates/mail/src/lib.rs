//! What a quarantined message says (SMTP.md §7): the MIME parse, with bounds, and the features
//! derived from it for `email.received`; the body text the tagger's rules read.
//!
//! [`analyse`] is the whole job for the decoy: it takes the stored bytes and returns the
//! features that depend on them alone. The envelope fields (MAIL FROM, recipients, HELO,
//! campaign counts, sizes) are the decoy's, and [`address_domain`] is the one rule it shares
//! with the headers. [`body_text`] is what the tagger reads from the quarantine for rules on
//! `body_text`. Nothing here panics or allocates beyond a small multiple of the input, on any
//! input: the decoy runs it on whatever an attacker sends.

mod attachment;
mod mime;
mod ole;
mod simhash;
mod text;
mod zip;

use std::sync::LazyLock;

use mail_parser::Header;
use regex::Regex;
use sha2::{Digest, Sha256};

pub use simhash::{MIN_WORDS, hamming, simhash, simhash_hex};
pub use text::html_to_text;

/// `subject` is cut to this many characters (§7).
pub const MAX_SUBJECT_CHARS: usize = 512;
/// `x_mailer` is cut to this many characters (§7).
pub const MAX_X_MAILER_CHARS: usize = 256;

/// Features of one message from its bytes alone (SMTP.md §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFeatures {
    /// RFC 2047-decoded `Subject`, at most 512 characters; `None` when absent.
    pub subject: Option<String>,
    /// The §7 domain rule ([`address_domain`]) on the decoded `From` header.
    pub from_domain: Option<String>,
    /// The same rule on a `Return-Path` header in the message.
    pub return_path_domain: Option<String>,
    /// Decoded `X-Mailer`, at most 256 characters; `None` when absent or empty.
    pub x_mailer: Option<String>,
    /// A top-level `Authentication-Results` claims `dkim=pass` (a claim, not a check).
    pub dkim_signed: bool,
    /// A top-level `Authentication-Results` claims `spf=pass`.
    pub spf_pass: bool,
    /// The top-level header block has a `DKIM-Signature`.
    pub dkim_signature_present: bool,
    /// The top-level header block has an `Authentication-Results`.
    pub auth_results_present: bool,
    /// URLs in text parts: distinct, first seen, at most 64, each at most 2048 characters.
    pub urls: Vec<String>,
    /// Leaf parts with a file name or an `attachment` disposition.
    pub attachment_count: u64,
    /// Lower-case hex SHA-256 of each non-empty attachment, in order.
    pub attachment_sha256s: Vec<String>,
    /// File name extensions with the leading dot, lower-case (".docm"), distinct, first seen.
    pub attachment_extensions: Vec<String>,
    /// Some attachment carries a VBA project (§7 cases (a) to (c)).
    pub attachment_macros: bool,
    /// Some attachment is a 7z or RAR, an encrypted ZIP entry or encrypted OOXML.
    pub attachment_password_protected: bool,
    /// One HTML document holds both a download anchor and a blob-building call.
    pub html_smuggling: bool,
    /// [`simhash`] of the body text; `None` under 8 words or without a text part.
    pub body_simhash: Option<u64>,
    /// The largest strict decode of a base64 run in the text parts joined by `\n`.
    pub body_base64_bytes: u64,
    /// SHA-256 hex of the whole message bytes.
    pub body_sha256: String,
}

/// Parse with bounds (nesting depth 16, at most 512 parts) and derive. Never panics on any
/// input; a message that does not parse (no header field in its header block) gets `None`
/// header fields and empty lists (`body_sha256` is still the hash of the bytes).
pub fn analyse(message: &[u8]) -> MessageFeatures {
    let body_sha256 = sha256_hex(message);
    let Some(parsed) = mime::parse(message) else {
        return MessageFeatures::unparsed(body_sha256);
    };
    let mut features = MessageFeatures::unparsed(body_sha256);
    features.read_headers(&parsed.headers);
    features.read_text(&parsed.leaves);
    features.read_attachments(&parsed.leaves);
    features
}

/// The §7 domain rule: in `text`, the first `@` followed by `[A-Za-z0-9.-]+`; outer dots
/// trimmed, lower-cased; `None` when there is none or only dots follow. (Used by the decoy on
/// MAIL FROM and RCPT addresses.)
pub fn address_domain(text: &str) -> Option<String> {
    static DOMAIN: LazyLock<Regex> =
        LazyLock::new(|| Regex::new("@([A-Za-z0-9.-]+)").expect("valid regex"));
    let domain = DOMAIN.captures(text)?.get(1)?.as_str().trim_matches('.');
    (!domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

/// The body text the tagger's rules read as `body_text` (RULES.md): the first `text/plain`
/// part, else the first `text/html` part reduced to text ([`html_to_text`]), transfer-decoded,
/// lossy UTF-8, cut to at most 64 KiB at a char boundary. `None` when the message has no text
/// part or does not parse.
///
/// A text part here is any `text/*` leaf, attachments of text type included (§7).
pub fn body_text(message: &[u8]) -> Option<String> {
    let parsed = mime::parse(message)?;
    let source = text::body_source(&parsed.leaves)?;
    Some(text::truncate_bytes(source, text::BODY_TEXT_MAX_BYTES))
}

impl MessageFeatures {
    fn unparsed(body_sha256: String) -> MessageFeatures {
        MessageFeatures {
            subject: None,
            from_domain: None,
            return_path_domain: None,
            x_mailer: None,
            dkim_signed: false,
            spf_pass: false,
            dkim_signature_present: false,
            auth_results_present: false,
            urls: Vec::new(),
            attachment_count: 0,
            attachment_sha256s: Vec::new(),
            attachment_extensions: Vec::new(),
            attachment_macros: false,
            attachment_password_protected: false,
            html_smuggling: false,
            body_simhash: None,
            body_base64_bytes: 0,
            body_sha256,
        }
    }

    fn read_headers(&mut self, headers: &[Header<'_>]) {
        static DKIM_PASS: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"(?i)\bdkim\s*=\s*pass\b").expect("valid regex"));
        static SPF_PASS: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"(?i)\bspf\s*=\s*pass\b").expect("valid regex"));

        let text = |name| mime::header(headers, name).and_then(mime::header_text);
        self.subject = text("Subject").map(|s| text::truncate_chars(s, MAX_SUBJECT_CHARS));
        self.from_domain = text("From").and_then(address_domain);
        self.return_path_domain = text("Return-Path").and_then(address_domain);
        self.x_mailer = text("X-Mailer")
            .filter(|m| !m.trim().is_empty())
            .map(|m| text::truncate_chars(m, MAX_X_MAILER_CHARS));

        let named = |name: &'static str| {
            headers
                .iter()
                .filter(move |h| h.name().eq_ignore_ascii_case(name))
        };
        let results: Vec<&str> = named("Authentication-Results")
            .filter_map(|h| mime::header_text(h.value()))
            .collect();
        self.auth_results_present = named("Authentication-Results").next().is_some();
        self.dkim_signature_present = named("DKIM-Signature").next().is_some();
        self.dkim_signed = results.iter().any(|r| DKIM_PASS.is_match(r));
        self.spf_pass = results.iter().any(|r| SPF_PASS.is_match(r));
    }

    fn read_text(&mut self, leaves: &[mime::Leaf]) {
        let texts: Vec<String> = leaves
            .iter()
            .filter(|l| l.is_text())
            .map(text::leaf_text)
            .collect();
        self.urls = text::urls(texts.iter().map(String::as_str));
        self.body_base64_bytes = text::largest_base64_run(&texts.join("\n"));
        self.body_simhash = text::body_source(leaves).as_deref().and_then(simhash);
    }

    fn read_attachments(&mut self, leaves: &[mime::Leaf]) {
        let mut inspector = attachment::Inspector::default();
        for leaf in leaves {
            let html_named = leaf
                .file_name
                .as_deref()
                .is_some_and(attachment::is_html_like);
            if (leaf.mime_type == "text/html" || (leaf.attachment && html_named))
                && !self.html_smuggling
            {
                self.html_smuggling = text::smuggles(&String::from_utf8_lossy(&leaf.bytes));
            }
            if !leaf.attachment {
                continue;
            }
            self.attachment_count += 1;
            if !leaf.bytes.is_empty() {
                self.attachment_sha256s.push(sha256_hex(&leaf.bytes));
            }
            let extension = leaf.file_name.as_deref().and_then(attachment::extension);
            if let Some(extension) = extension.filter(|e| !self.attachment_extensions.contains(e)) {
                self.attachment_extensions.push(extension);
            }
            inspector.inspect(&leaf.bytes);
        }
        self.attachment_macros = inspector.macros;
        self.attachment_password_protected = inspector.password_protected;
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_domain_rule() {
        let cases = [
            ("Bob <bob@Example.COM>", Some("example.com")),
            ("\"svc@paypal.com\" <x@evil.example>", Some("paypal.com")),
            ("<@>, later@second.example", Some("second.example")),
            ("a@.sub.example..", Some("sub.example")),
            ("a@...", None),
            ("no address here", None),
            ("user@[192.0.2.1]", None),
            ("<>", None),
            ("x@host-1.example_rest", Some("host-1.example")),
        ];
        for (text, expected) in cases {
            assert_eq!(address_domain(text).as_deref(), expected, "{text:?}");
        }
    }

    #[test]
    fn headers_are_decoded_and_bounded() {
        let long = "s".repeat(600);
        let message = format!(
            "Subject: {long}\r\nFrom: =?utf-8?q?Caf=C3=A9?= <a@CAFE.example>\r\n\
             X-Mailer:   \r\nReturn-Path: <b@bounce.example>\r\n\r\nbody\r\n"
        );
        let f = analyse(message.as_bytes());
        assert_eq!(f.subject.as_deref(), Some("s".repeat(512).as_str()));
        assert_eq!(f.from_domain.as_deref(), Some("cafe.example"));
        assert_eq!(f.return_path_domain.as_deref(), Some("bounce.example"));
        assert_eq!(f.x_mailer, None);
        assert!(!f.auth_results_present && !f.dkim_signature_present);
    }

    #[test]
    fn authentication_results_any_header_counts() {
        let message = "From: a@b.example\r\nAuthentication-Results: mx; spf=fail\r\n\
             Authentication-Results: mx2; DKIM = Pass header.d=b.example; spf=passed\r\n\r\nx";
        let f = analyse(message.as_bytes());
        assert!(f.auth_results_present);
        assert!(f.dkim_signed);
        assert!(!f.spf_pass);
    }

    #[test]
    fn body_text_prefers_plain_and_is_cut_at_a_char_boundary() {
        let message = "Content-Type: multipart/alternative; boundary=b\n\n\
            --b\nContent-Type: text/html\n\n<p>html &amp; all</p>\n\
            --b\nContent-Type: text/plain\n\nplain\n--b--\n";
        assert_eq!(body_text(message.as_bytes()).as_deref(), Some("plain"));
        let html_only = "Content-Type: text/html\n\n<p>html &amp; all</p>";
        assert_eq!(
            body_text(html_only.as_bytes()).as_deref(),
            Some("html & all")
        );

        let big = format!("Subject: x\n\na{}", "é".repeat(40_000));
        let text = body_text(big.as_bytes()).unwrap();
        assert_eq!(text.len(), 65_535);
        assert!(text.ends_with('é'));
        assert_eq!(body_text(b"Content-Type: image/png\n\nxx"), None);
    }

    #[test]
    fn unparsed_messages_keep_only_the_hash() {
        let f = analyse(b"");
        assert_eq!(f, MessageFeatures::unparsed(sha256_hex(b"")));
        assert_eq!(
            f.body_sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
