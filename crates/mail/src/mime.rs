//! The bounded MIME walk (SMTP.md §7): header blocks, multipart bodies, encapsulated messages
//! and transfer decoding, flattened into the leaf parts that every feature reads.
//!
//! `mail-parser` does the header-level work (unfolding, RFC 2047 encoded words, RFC 2231
//! parameters), one header block at a time. The tree walk is ours so that the bounds hold by
//! construction: containers deeper than [`MAX_DEPTH`] are not opened and the walk stops after
//! [`MAX_PARTS`] parts, however many the message claims, and every scan is linear in the bytes
//! it is given. Charsets are not converted: SMTP.md §7 reads text parts as lossy UTF-8.

use std::sync::LazyLock;

use mail_parser::{Header, HeaderName, HeaderValue, MessageParser};

/// Containers at this depth (the message itself is depth 0) are kept as opaque leaves.
pub(crate) const MAX_DEPTH: usize = 16;

/// Parts visited per message, containers included; later ones are not looked at.
pub(crate) const MAX_PARTS: usize = 512;

/// Unstructured parsing for the headers §7 reads as text, so their encoded words are decoded
/// and `From` keeps its display name (the domain rule reads the whole decoded header).
static PARSER: LazyLock<MessageParser> = LazyLock::new(|| {
    MessageParser::new()
        .with_mime_headers()
        .header_text(HeaderName::Subject)
        .header_text(HeaderName::From)
        .header_text(HeaderName::ReturnPath)
        .default_header_text()
});

/// A message that parsed: its top-level headers and its leaf parts in document order.
pub(crate) struct Parsed<'a> {
    pub(crate) headers: Vec<Header<'a>>,
    pub(crate) leaves: Vec<Leaf>,
}

/// A part that is not walked into, with its transfer-decoded bytes.
#[derive(Debug)]
pub(crate) struct Leaf {
    /// `type/subtype`, lower-cased; `text/plain` when the part says nothing.
    pub(crate) mime_type: String,
    /// The decoded `Content-Disposition` `filename`, else the `Content-Type` `name`.
    pub(crate) file_name: Option<String>,
    /// A file name or an `attachment` disposition (§7's definition of an attachment).
    pub(crate) attachment: bool,
    pub(crate) bytes: Vec<u8>,
}

impl Leaf {
    /// A `text/*` leaf, attachments of text type included (§7's *text part*).
    pub(crate) fn is_text(&self) -> bool {
        self.mime_type.starts_with("text/")
    }
}

/// The walk of one message; `None` when it does not start with a header field.
pub(crate) fn parse(message: &[u8]) -> Option<Parsed<'_>> {
    let (head, body) = split_head(message);
    if !starts_with_field(head) {
        return None;
    }
    let headers = parse_headers(head)?;
    let mut walker = Walker {
        parts: 0,
        leaves: Vec::new(),
    };
    walker.part(&headers, body, 0);
    Some(Parsed {
        headers,
        leaves: walker.leaves,
    })
}

/// The header block (through the line end before the empty line) and the body after it.
pub(crate) fn split_head(bytes: &[u8]) -> (&[u8], &[u8]) {
    if let Some(body) = bytes
        .strip_prefix(b"\r\n")
        .or_else(|| bytes.strip_prefix(b"\n"))
    {
        return (&[], body);
    }
    let mut at = 0;
    while let Some(i) = bytes[at..].iter().position(|&b| b == b'\n').map(|i| at + i) {
        let rest = &bytes[i + 1..];
        if let Some(body) = rest
            .strip_prefix(b"\r\n")
            .or_else(|| rest.strip_prefix(b"\n"))
        {
            return (&bytes[..=i], body);
        }
        at = i + 1;
    }
    (bytes, &[])
}

/// Whether the first line is a header field: a name of printable ASCII other than `:` (RFC
/// 5322 `ftext`), optional blanks, then `:`. `mail-parser` recovers a header out of almost any
/// bytes; this is the line between a message and garbage.
fn starts_with_field(head: &[u8]) -> bool {
    let name = head
        .iter()
        .take_while(|&&b| (33..=126).contains(&b) && b != b':')
        .count();
    let rest = &head[name..];
    let blanks = rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    name > 0 && rest.get(blanks) == Some(&b':')
}

fn parse_headers(head: &[u8]) -> Option<Vec<Header<'_>>> {
    if head.is_empty() {
        return None;
    }
    let message = PARSER.parse_headers(head)?;
    let mut parts = message.parts;
    (!parts.is_empty()).then(|| std::mem::take(&mut parts[0].headers))
}

/// The first header with this name (ASCII case-insensitive), as `mail-parser` decoded it.
pub(crate) fn header<'h, 'a>(headers: &'h [Header<'a>], name: &str) -> Option<&'h HeaderValue<'a>> {
    headers
        .iter()
        .find(|h| h.name().eq_ignore_ascii_case(name))
        .map(Header::value)
}

/// The text of a header parsed as unstructured; `Some("")` for a present but empty one.
pub(crate) fn header_text<'h>(value: &'h HeaderValue<'_>) -> Option<&'h str> {
    match value {
        HeaderValue::Text(text) => Some(text),
        HeaderValue::Empty => Some(""),
        _ => None,
    }
}

struct Walker {
    parts: usize,
    leaves: Vec<Leaf>,
}

impl Walker {
    fn part(&mut self, headers: &[Header<'_>], body: &[u8], depth: usize) {
        if self.parts >= MAX_PARTS {
            return;
        }
        self.parts += 1;
        let kind = PartKind::of(headers);
        let openable = depth < MAX_DEPTH;

        // A multipart without a boundary cannot be split: it stays a leaf.
        if openable
            && kind.mime_type.starts_with("multipart/")
            && let Some(boundary) = kind.boundary.as_deref().filter(|b| !b.is_empty())
        {
            for sub in Multipart::new(body, boundary.as_bytes()) {
                if self.parts >= MAX_PARTS {
                    break;
                }
                let (head, sub_body) = split_head(sub);
                let sub_headers = parse_headers(head).unwrap_or_default();
                self.part(&sub_headers, sub_body, depth + 1);
            }
            return;
        }

        let bytes = transfer_decode(body, kind.encoding.as_deref());
        if openable && matches!(kind.mime_type.as_str(), "message/rfc822" | "message/global") {
            let (head, inner_body) = split_head(&bytes);
            if let Some(inner_headers) = parse_headers(head) {
                self.part(&inner_headers, inner_body, depth + 1);
                return;
            }
        }
        self.leaves.push(kind.into_leaf(bytes));
    }
}

/// What a part's headers say about it.
struct PartKind {
    mime_type: String,
    boundary: Option<String>,
    encoding: Option<String>,
    file_name: Option<String>,
    attachment_disposition: bool,
}

impl PartKind {
    fn of(headers: &[Header<'_>]) -> PartKind {
        let content_type = header(headers, "Content-Type").and_then(HeaderValue::as_content_type);
        let disposition =
            header(headers, "Content-Disposition").and_then(HeaderValue::as_content_type);
        let mime_type = match content_type {
            Some(ct) => {
                let subtype = ct.subtype().unwrap_or_default();
                format!("{}/{}", ct.ctype(), subtype).to_ascii_lowercase()
            }
            None => "text/plain".to_owned(),
        };
        let named = |value: Option<&str>| value.filter(|v| !v.is_empty()).map(str::to_owned);
        let file_name = named(disposition.and_then(|d| d.attribute("filename")))
            .or_else(|| named(content_type.and_then(|ct| ct.attribute("name"))));
        PartKind {
            mime_type,
            boundary: content_type
                .and_then(|ct| ct.attribute("boundary"))
                .map(str::to_owned),
            encoding: header(headers, "Content-Transfer-Encoding")
                .and_then(header_text)
                .map(|e| e.trim().to_ascii_lowercase()),
            file_name,
            attachment_disposition: disposition
                .is_some_and(|d| d.ctype().eq_ignore_ascii_case("attachment")),
        }
    }

    fn into_leaf(self, bytes: Vec<u8>) -> Leaf {
        Leaf {
            attachment: self.file_name.is_some() || self.attachment_disposition,
            mime_type: self.mime_type,
            file_name: self.file_name,
            bytes,
        }
    }
}

/// The body parts of a multipart body, lazily, so a message claiming 100 000 parts costs only
/// the parts the walk takes. A part without a closing delimiter runs to the end of the body.
struct Multipart<'a> {
    body: &'a [u8],
    delimiter: Vec<u8>,
    /// Where the next part's content starts; `None` once the close delimiter is seen.
    next: Option<usize>,
}

impl<'a> Multipart<'a> {
    fn new(body: &'a [u8], boundary: &[u8]) -> Multipart<'a> {
        let delimiter = [b"--", boundary].concat();
        let mut parts = Multipart {
            body,
            delimiter,
            next: None,
        };
        // The preamble before the first delimiter is not a part.
        parts.next = parts
            .find_delimiter(0)
            .and_then(|(_, after, close)| (!close).then_some(after));
        parts
    }

    /// The next delimiter line at or after `from`: where its line break starts (the break
    /// belongs to the delimiter, RFC 2046 §5.1.1), where the line after it starts, and
    /// whether it is the close delimiter.
    fn find_delimiter(&self, from: usize) -> Option<(usize, usize, bool)> {
        let body = self.body;
        let mut line = from;
        loop {
            if line >= body.len() {
                return None;
            }
            if let Some(found) = self.delimiter_at(line) {
                return Some(found);
            }
            line += body[line..].iter().position(|&b| b == b'\n')? + 1;
        }
    }

    fn delimiter_at(&self, line: usize) -> Option<(usize, usize, bool)> {
        let rest = self.body[line..].strip_prefix(self.delimiter.as_slice())?;
        let close = rest.starts_with(b"--");
        let tail = if close { &rest[2..] } else { rest };
        let end_of_line = tail.iter().position(|&b| b == b'\n');
        let padding = &tail[..end_of_line.unwrap_or(tail.len())];
        // A longer boundary that merely starts with ours is not our delimiter.
        if !padding.iter().all(|&b| matches!(b, b' ' | b'\t' | b'\r')) {
            return None;
        }
        let after = end_of_line.map_or(self.body.len(), |i| self.body.len() - tail.len() + i + 1);
        let mut start = line;
        if start > 0 && self.body[start - 1] == b'\n' {
            start -= 1;
            if start > 0 && self.body[start - 1] == b'\r' {
                start -= 1;
            }
        }
        Some((start, after, close))
    }
}

impl<'a> Iterator for Multipart<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.next.take()?;
        match self.find_delimiter(start) {
            Some((end, after, close)) => {
                self.next = (!close).then_some(after);
                Some(&self.body[start..end.max(start)])
            }
            None => Some(&self.body[start..]),
        }
    }
}

/// The payload under its `Content-Transfer-Encoding`; unknown encodings pass through.
pub(crate) fn transfer_decode(body: &[u8], encoding: Option<&str>) -> Vec<u8> {
    match encoding {
        Some("base64") => decode_base64_lenient(body),
        Some("quoted-printable") => decode_quoted_printable(body),
        _ => body.to_vec(),
    }
}

/// Base64 as mail clients read it: characters outside the alphabet (line breaks, blanks,
/// junk) are skipped and decoding ends at the first `=`; a dangling sextet is dropped.
fn decode_base64_lenient(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in body {
        let value = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Quoted-printable (RFC 2045 §6.7): `=XX` escapes and soft line breaks; a malformed `=` is
/// kept as it stands.
fn decode_quoted_printable(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] != b'=' {
            out.push(body[i]);
            i += 1;
            continue;
        }
        let rest = &body[i + 1..];
        if let Some(skip) = soft_break(rest) {
            i += 1 + skip;
        } else if let [hi, lo, ..] = rest
            && let (Some(hi), Some(lo)) = (hex(*hi), hex(*lo))
        {
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b'=');
            i += 1;
        }
    }
    out
}

/// The length of a soft line break after `=`: optional trailing blanks, then a line end.
fn soft_break(rest: &[u8]) -> Option<usize> {
    let blanks = rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    match &rest[blanks..] {
        [b'\r', b'\n', ..] => Some(blanks + 2),
        [b'\n', ..] => Some(blanks + 1),
        _ => None,
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(message: &str) -> Vec<Leaf> {
        parse(message.as_bytes()).expect("parses").leaves
    }

    #[test]
    fn split_head_finds_the_empty_line_with_either_line_end() {
        assert_eq!(
            split_head(b"A: b\r\n\r\nbody"),
            (&b"A: b\r\n"[..], &b"body"[..])
        );
        assert_eq!(
            split_head(b"A: b\nC: d\n\nbody\n\nmore"),
            (&b"A: b\nC: d\n"[..], &b"body\n\nmore"[..])
        );
        assert_eq!(split_head(b"\r\nbody"), (&b""[..], &b"body"[..]));
        assert_eq!(split_head(b"A: b"), (&b"A: b"[..], &b""[..]));
    }

    #[test]
    fn a_single_part_message_is_one_text_leaf() {
        let leaves = leaves("Subject: x\r\n\r\nhello\r\n");
        assert_eq!(leaves.len(), 1);
        assert_eq!(leaves[0].mime_type, "text/plain");
        assert_eq!(leaves[0].bytes, b"hello\r\n");
        assert!(!leaves[0].attachment);
    }

    #[test]
    fn multipart_parts_exclude_preamble_epilogue_and_the_delimiter_line_break() {
        let message = "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n\
            --b1\r\n\r\none\r\n--b1 \r\nContent-Type: text/html\r\n\r\n<p>two</p>\r\n\
            --b1--\r\nepilogue\r\n";
        let leaves = leaves(message);
        let bodies: Vec<&[u8]> = leaves.iter().map(|l| l.bytes.as_slice()).collect();
        assert_eq!(bodies, [&b"one"[..], b"<p>two</p>"]);
        assert_eq!(leaves[1].mime_type, "text/html");
    }

    #[test]
    fn a_longer_boundary_sharing_the_prefix_is_not_a_delimiter() {
        let message = "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--bb\ny\n--b--\n";
        let leaves = leaves(message);
        assert_eq!(leaves.len(), 1);
        assert_eq!(leaves[0].bytes, b"x\n--bb\ny");
    }

    #[test]
    fn an_unclosed_last_part_runs_to_the_end() {
        let leaves = leaves("Content-Type: multipart/mixed; boundary=b\n\n--b\n\ntail");
        assert_eq!(leaves.len(), 1);
        assert_eq!(leaves[0].bytes, b"tail");
    }

    #[test]
    fn attachments_are_named_or_disposed_as_attachment() {
        let message = "Content-Type: multipart/mixed; boundary=b\n\n\
            --b\nContent-Type: application/pdf; name=\"a.pdf\"\n\nA\n\
            --b\nContent-Disposition: attachment\n\nB\n\
            --b\nContent-Disposition: inline; filename*=utf-8''%C3%A9t%C3%A9.txt\n\nC\n\
            --b\nContent-Type: image/png\n\nD\n--b--\n";
        let leaves = leaves(message);
        let named: Vec<_> = leaves
            .iter()
            .map(|l| (l.file_name.as_deref(), l.attachment))
            .collect();
        assert_eq!(
            named,
            [
                (Some("a.pdf"), true),
                (None, true),
                (Some("été.txt"), true),
                (None, false)
            ]
        );
    }

    #[test]
    fn encapsulated_messages_are_walked_into() {
        let message = "Content-Type: message/rfc822\n\nSubject: inner\n\
            Content-Type: text/html\n\n<b>hi</b>\n";
        let leaves = leaves(message);
        assert_eq!(leaves.len(), 1);
        assert_eq!(leaves[0].mime_type, "text/html");
        assert_eq!(leaves[0].bytes, b"<b>hi</b>\n");
    }

    #[test]
    fn depth_beyond_the_bound_is_an_opaque_leaf() {
        let mut message = String::new();
        for level in 0..20 {
            message.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=l{level}\n\n--l{level}\n"
            ));
        }
        message.push_str("\ndeep\n");
        let leaves = leaves(&message);
        assert_eq!(leaves.len(), 1);
        assert_eq!(leaves[0].mime_type, "multipart/mixed");
        assert!(String::from_utf8_lossy(&leaves[0].bytes).starts_with("--l16\n"));
    }

    #[test]
    fn the_walk_stops_after_the_part_bound() {
        let mut message = "Content-Type: multipart/mixed; boundary=b\n\n".to_owned();
        for i in 0..2000 {
            message.push_str(&format!("--b\n\n{i}\n"));
        }
        let leaves = leaves(&message);
        // The multipart itself is the first of the 512 parts.
        assert_eq!(leaves.len(), MAX_PARTS - 1);
        assert_eq!(leaves.last().unwrap().bytes, b"510");
    }

    #[test]
    fn transfer_decodings() {
        assert_eq!(
            transfer_decode(b"aGVs\r\nbG8=\r\nignored", Some("base64")),
            b"hello"
        );
        assert_eq!(transfer_decode(b"a*G!V sbG8", Some("base64")), b"hello");
        assert_eq!(
            transfer_decode(b"caf=C3=A9 =\r\nend=\n=ZZ=4", Some("quoted-printable")),
            "café end=ZZ=4".as_bytes()
        );
        assert_eq!(
            transfer_decode(b"=41=  \nB", Some("quoted-printable")),
            b"AB"
        );
        assert_eq!(transfer_decode(b"raw=41", Some("8bit")), b"raw=41");
    }

    #[test]
    fn a_block_without_header_fields_does_not_parse() {
        assert!(parse(b"").is_none());
        assert!(parse(b"\r\njust a body").is_none());
        assert!(parse(b"\x00garbage: here\r\n\r\nbody").is_none());
        assert!(parse(b"From sender@example Mon Jan 1\r\n").is_none());
        assert!(parse(b"X-Odd-Name \t: v\r\n\r\nbody").is_some());
    }
}
