//! Features read from the text of a message (SMTP.md §7): the body text, the URLs, the largest
//! base64 payload, the HTML reduction, and the HTML-smuggling indicators.
//!
//! Everything here works on decoded text parts from [`crate::mime`] and is linear in their
//! length; regexes are compiled once.

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use regex::Regex;

use crate::mime::Leaf;

/// The §7 URL pattern, also the one SimHash normalisation replaces.
pub(crate) static URL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"https?://[^\s<>"')\]]+"#).expect("valid regex"));

static BASE64_RUN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("[A-Za-z0-9+/]{32,}={0,2}").expect("valid regex"));

static DOWNLOAD_ANCHOR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)<a\s[^>]*\bdownload\b").expect("valid regex"));

static BLOB_CALL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:new\s+blob|new\s+uint8array|url\.createobjecturl|mssaveoropenblob)\s*\(")
        .expect("valid regex")
});

/// URLs kept per message, and the longest one kept (§7).
pub(crate) const MAX_URLS: usize = 64;
pub(crate) const MAX_URL_CHARS: usize = 2048;

/// `body_text` is cut to this many bytes (RULES.md, the `email` field table).
pub(crate) const BODY_TEXT_MAX_BYTES: usize = 64 * 1024;

/// Strict standard base64, as Python's `b64decode(validate=True)`: canonical padding required,
/// but non-zero trailing bits tolerated, so byte counts agree with the Python producer.
const STRICT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(true),
);

/// The text of a text leaf, lossily converted from its transfer-decoded bytes.
pub(crate) fn leaf_text(leaf: &Leaf) -> String {
    String::from_utf8_lossy(&leaf.bytes).into_owned()
}

/// The body the rules and the SimHash read: the first `text/plain` part, else the first
/// `text/html` part reduced to text; before any length cut.
pub(crate) fn body_source(leaves: &[Leaf]) -> Option<String> {
    if let Some(plain) = leaves.iter().find(|l| l.mime_type == "text/plain") {
        return Some(leaf_text(plain));
    }
    let html = leaves.iter().find(|l| l.mime_type == "text/html")?;
    Some(html_to_text(&leaf_text(html)))
}

/// Cut to at most `max` bytes at a char boundary.
pub(crate) fn truncate_bytes(mut text: String, max: usize) -> String {
    if text.len() > max {
        let cut = (0..=max)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text.truncate(cut);
    }
    text
}

/// At most `max` characters.
pub(crate) fn truncate_chars(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// §7 `urls` over the text parts in order: trailing `.,;:!?` removed, distinct, first seen,
/// at most [`MAX_URLS`], longer than [`MAX_URL_CHARS`] skipped.
pub(crate) fn urls<'t>(texts: impl IntoIterator<Item = &'t str>) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for text in texts {
        for m in URL.find_iter(text) {
            let url = m.as_str().trim_end_matches(['.', ',', ';', ':', '!', '?']);
            if url.chars().count() > MAX_URL_CHARS || found.iter().any(|u| u == url) {
                continue;
            }
            found.push(url.to_owned());
            if found.len() == MAX_URLS {
                return found;
            }
        }
    }
    found
}

/// §7 `body_base64_bytes`: the largest strict decode among the base64 runs of `text`.
pub(crate) fn largest_base64_run(text: &str) -> u64 {
    BASE64_RUN
        .find_iter(text)
        .filter_map(|run| STRICT_BASE64.decode(run.as_str()).ok())
        .map(|decoded| decoded.len() as u64)
        .max()
        .unwrap_or(0)
}

/// Both HTML-smuggling indicators in one document; either alone is ordinary HTML.
pub(crate) fn smuggles(document: &str) -> bool {
    DOWNLOAD_ANCHOR.is_match(document) && BLOB_CALL.is_match(document)
}

/// HTML reduced to text: `<script>` and `<style>` elements dropped with their content, other
/// tags dropped (a `<` not followed by a letter, `/`, `!` or `?` is text; an unclosed tag runs
/// to the end), then `&amp; &lt; &gt; &quot; &#39; &nbsp;` and numeric references decoded.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let tag = &rest[open..];
        let starts_tag =
            tag[1..].starts_with(|c: char| c.is_ascii_alphabetic() || "/!?".contains(c));
        if !starts_tag {
            out.push('<');
            rest = &tag[1..];
            continue;
        }
        rest = match raw_text_element(tag) {
            Some(element) => skip_element(tag, element),
            None => tag.find('>').map_or("", |close| &tag[close + 1..]),
        };
    }
    out.push_str(rest);
    decode_entities(&out)
}

/// `script` or `style` when `tag` opens one of them.
fn raw_text_element(tag: &str) -> Option<&'static str> {
    ["script", "style"].into_iter().find(|name| {
        let after = tag.get(1..1 + name.len());
        after.is_some_and(|a| a.eq_ignore_ascii_case(name))
            && tag[1 + name.len()..]
                .starts_with(|c: char| c == '>' || c == '/' || c.is_whitespace())
    })
}

/// What follows the element's closing tag; the rest is dropped when it never closes.
fn skip_element<'h>(tag: &'h str, name: &str) -> &'h str {
    // Scanned in place rather than on a lower-cased copy: a copy per element would make a page
    // of many scripts quadratic.
    let closes = |at: &usize| {
        let after = &tag.as_bytes()[at + 2..];
        after.len() >= name.len() && after[..name.len()].eq_ignore_ascii_case(name.as_bytes())
    };
    match tag.match_indices("</").map(|(at, _)| at).find(closes) {
        Some(at) => {
            let after = &tag[at..];
            after.find('>').map_or("", |close| &after[close + 1..])
        }
        None => "",
    }
}

fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let entity = &rest[amp..];
        match decode_entity(entity) {
            Some((decoded, len)) => {
                out.push(decoded);
                rest = &entity[len..];
            }
            None => {
                out.push('&');
                rest = &entity[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The character an entity at the start of `entity` stands for, and its length.
fn decode_entity(entity: &str) -> Option<(char, usize)> {
    const NAMED: [(&str, char); 6] = [
        ("&amp;", '&'),
        ("&lt;", '<'),
        ("&gt;", '>'),
        ("&quot;", '"'),
        ("&#39;", '\''),
        ("&nbsp;", '\u{a0}'),
    ];
    if let Some((name, c)) = NAMED.iter().find(|(name, _)| entity.starts_with(name)) {
        return Some((*c, name.len()));
    }
    let digits = entity.strip_prefix("&#")?;
    let (radix, digits, prefix) = match digits.strip_prefix(['x', 'X']) {
        Some(hex) => (16, hex, 3),
        None => (10, digits, 2),
    };
    let len = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    if len == 0 || len > 8 || !digits[len..].starts_with(';') {
        return None;
    }
    let code = u32::from_str_radix(&digits[..len], radix).ok()?;
    Some((
        char::from_u32(code).filter(|&c| c != '\0')?,
        prefix + len + 1,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_the_table_row() {
        let text = "see https://a.example/x. and (http://b.example/y) or \
                    \"https://a.example/x\" <http://c.example/z?q=1!?> http://";
        assert_eq!(
            urls([text]),
            [
                "https://a.example/x",
                "http://b.example/y",
                "http://c.example/z?q=1"
            ]
        );
        assert_eq!(
            urls(["HTTPS://upper.example is not matched"]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn urls_are_bounded_in_count_and_length() {
        let many: String = (0..100).map(|i| format!("http://h{i}.example ")).collect();
        let found = urls([many.as_str()]);
        assert_eq!(found.len(), MAX_URLS);
        assert_eq!(found[63], "http://h63.example");

        let long = format!("http://{} http://short.example", "a".repeat(MAX_URL_CHARS));
        assert_eq!(urls([long.as_str()]), ["http://short.example"]);
        let fits = format!("http://{}", "a".repeat(MAX_URL_CHARS - 7));
        assert_eq!(urls([fits.as_str()]), std::slice::from_ref(&fits));
    }

    #[test]
    fn base64_runs_decode_strictly_and_the_largest_wins() {
        let run48 = "QUJD".repeat(12); // 36 bytes
        let run33 = "A".repeat(33); // not a multiple of four: fails strictly
        let padded = format!("{}QQ==", "QUJD".repeat(8)); // 25 bytes
        let text = format!("x {run33} y {padded}\n{run48} {}", "QUJD".repeat(7));
        assert_eq!(largest_base64_run(&text), 36);
        assert_eq!(largest_base64_run(&run33), 0);
        assert_eq!(largest_base64_run(&padded), 25);
        // Non-zero trailing bits are accepted, as Python's strict mode does.
        assert_eq!(largest_base64_run(&format!("{}QR==", "QUJD".repeat(8))), 25);
        assert_eq!(largest_base64_run("short QUJD"), 0);
    }

    #[test]
    fn html_reduction() {
        let html = "<html><head><style>p{color:red}</style><SCRIPT type=x>var a = '<p>';</script>\
                    </head><body><p>Hello&nbsp;<b>World</b> &amp; a &lt; b &#65;&#x42;&#x;&bogus;\
                    </p>2 < 3 <!-- c --></body>";
        assert_eq!(
            html_to_text(html),
            "Hello\u{a0}World & a < b AB&#x;&bogus;2 < 3 "
        );
        assert_eq!(html_to_text("before<script>never closed"), "before");
        assert_eq!(html_to_text("a<br unclosed"), "a");
        assert_eq!(html_to_text("<scripts>kept</scripts>"), "kept");
        assert_eq!(
            html_to_text("&#0; &#1114112; &#99999999999;"),
            "&#0; &#1114112; &#99999999999;"
        );
    }

    #[test]
    fn smuggling_needs_both_indicators() {
        let anchor = "<a href=\"#\" download=\"x.iso\">";
        let blob = "var b = new Blob ([data]);";
        assert!(smuggles(&format!("{anchor}{blob}")));
        assert!(smuggles(
            "<A\nclass=x DOWNLOAD>go</A> URL.createObjectURL(b)"
        ));
        assert!(smuggles("<a download> navigator.msSaveOrOpenBlob\t(b)"));
        assert!(smuggles("<a download> new Uint8Array(8)"));
        assert!(!smuggles(anchor));
        assert!(!smuggles(blob));
        assert!(!smuggles("<a downloads> new Blob("));
        assert!(!smuggles("<abbr download> new Blob("));
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_bytes("aé".to_owned(), 2), "a");
        assert_eq!(truncate_bytes("aé".to_owned(), 3), "aé");
        assert_eq!(truncate_chars("ééé", 2), "éé");
    }
}
