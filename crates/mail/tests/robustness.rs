//! `analyse` and `body_text` on hostile input: seeded random mutations of the corpus, and
//! the bombs the bounds exist for. Each must finish, without panicking, in bounded time and
//! memory, and the bounds must be visible in the result.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use decnet_mail::{analyse, body_text};

/// Generous for a debug build on a loaded two-core machine; an unbounded walk takes minutes.
const TIME_LIMIT: Duration = Duration::from_secs(20);

/// xorshift64*: deterministic, so a failing mutation can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

fn mutate(rng: &mut Rng, original: &[u8], other: &[u8]) -> Vec<u8> {
    let mut bytes = original.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len());
        match rng.below(6) {
            0 => bytes.truncate(at),
            1 => {
                for _ in 0..1 + rng.below(16) {
                    let i = rng.below(bytes.len());
                    if let Some(b) = bytes.get_mut(i) {
                        *b ^= 1 << rng.below(8);
                    }
                }
            }
            2 => {
                let junk: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
                bytes.splice(at..at, junk);
            }
            3 => {
                let end = (at + rng.below(4096)).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
            4 => {
                let from = rng.below(other.len());
                let end = (from + rng.below(2048)).min(other.len());
                bytes.splice(at..at, other[from..end].iter().copied());
            }
            _ => {
                // Structural bytes are where parsers go wrong: MIME punctuation, ZIP and CFB
                // markers, line ends.
                let tokens: [&[u8]; 7] = [
                    b"\r\n",
                    b"--",
                    b"=",
                    b"PK\x01\x02",
                    b"\xff\xff\xff\xff",
                    b"<",
                    b":",
                ];
                bytes.splice(at..at, tokens[rng.below(tokens.len())].iter().copied());
            }
        }
    }
    bytes
}

#[test]
fn thousands_of_seeded_mutations_of_the_corpus() {
    let files = corpus();
    assert!(files.len() >= 16, "corpus has {} files", files.len());
    let mut rng = Rng(0x5eed_0fde_c0e7);
    let started = Instant::now();
    let mut runs = 0;
    for round in 0..250 {
        for (i, (name, original)) in files.iter().enumerate() {
            let other = &files[(i + 1 + round) % files.len()].1;
            let mutated = mutate(&mut rng, original, other);
            let features = analyse(&mutated);
            let text = body_text(&mutated);
            assert_eq!(features.body_sha256.len(), 64, "{name} round {round}");
            assert!(
                features.urls.len() <= 64
                    && features.urls.iter().all(|u| u.chars().count() <= 2048)
            );
            assert!(features.attachment_sha256s.len() as u64 <= features.attachment_count);
            assert!(text.is_none_or(|t| t.len() <= 64 * 1024));
            runs += 1;
        }
    }
    assert_eq!(runs, 250 * files.len());
    assert!(
        started.elapsed() < TIME_LIMIT * 10,
        "took {:?}",
        started.elapsed()
    );
}

/// Peak resident memory of this test process (nextest runs each test in its own process).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn timed(message: &[u8]) -> decnet_mail::MessageFeatures {
    let started = Instant::now();
    let features = analyse(message);
    let _ = body_text(message);
    assert!(
        started.elapsed() < TIME_LIMIT,
        "took {:?}",
        started.elapsed()
    );
    if let Some(peak) = peak_rss_kib() {
        assert!(peak < 1024 * 1024, "peak RSS {peak} KiB");
    }
    features
}

#[test]
fn ten_thousand_nested_multiparts() {
    let mut message = String::from("Subject: nest\r\n");
    for level in 0..10_000 {
        message.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"n{level}\"\r\n\r\n--n{level}\r\n"
        ));
    }
    message.push_str(
        "Content-Type: text/plain\r\n\r\nsee http://deep.example/ one two three four five six\r\n",
    );
    for level in (0..10_000).rev() {
        message.push_str(&format!("--n{level}--\r\n"));
    }
    let features = timed(message.as_bytes());
    assert_eq!(features.subject.as_deref(), Some("nest"));
    // The text sits below the depth bound: never reached.
    assert_eq!(features.urls, Vec::<String>::new());
    assert_eq!(features.body_simhash, None);
}

#[test]
fn ten_thousand_nested_messages() {
    let mut message = String::new();
    for level in 0..10_000 {
        message.push_str(&format!(
            "Subject: level {level}\r\nContent-Type: message/rfc822\r\n\r\n"
        ));
    }
    message.push_str("Subject: bottom\r\n\r\nhttp://bottom.example/\r\n");
    let features = timed(message.as_bytes());
    assert_eq!(features.subject.as_deref(), Some("level 0"));
    assert_eq!(features.urls, Vec::<String>::new());
}

#[test]
fn a_hundred_thousand_parts() {
    let mut message =
        String::from("Subject: many\r\nContent-Type: multipart/mixed; boundary=p\r\n\r\n");
    for i in 0..100_000 {
        message.push_str(&format!(
            "--p\r\nContent-Disposition: attachment; filename=\"f{i}.x{}\"\r\n\r\n{i}\r\n",
            i % 3
        ));
    }
    message.push_str("--p--\r\n");
    let features = timed(message.as_bytes());
    // 512 parts, the multipart itself the first.
    assert_eq!(features.attachment_count, 511);
    assert_eq!(features.attachment_sha256s.len(), 511);
    assert_eq!(features.attachment_extensions, [".x0", ".x1", ".x2"]);
}

#[test]
fn a_zip_bomb_and_a_zip_of_many_ratio_bound_members() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let bomb = std::fs::read(dir.join("zip_bomb.eml")).unwrap();
    assert!(!timed(&bomb).attachment_macros);

    // 400 Office-named members of 1 MiB each at a declared ratio of 99, only the last holding
    // a VBA project: within every per-member bound, so only the per-message inflate budget
    // keeps the walk from reaching it.
    let plain = vec![b'a'; 1 << 20];
    let mut macro_member = local_header("xl/vbaProject.bin", 0, 1, 1);
    macro_member.extend_from_slice(b"v");
    macro_member.resize(1 << 20, b'a');
    let mut members: Vec<(String, Vec<u8>)> = (0..399)
        .map(|i| {
            (
                format!("m{i:03}.doc"),
                miniz_oxide::deflate::compress_to_vec(&plain, 1),
            )
        })
        .collect();
    members.push((
        "m399.xlsm".into(),
        miniz_oxide::deflate::compress_to_vec(&macro_member, 1),
    ));
    let claimed = (1 << 20) / 99 + 1;
    let zip = zip_archive(&members, 1 << 20, claimed);

    // The control: with ten members the last is reached and its project found.
    let few = [&members[..9], &members[399..]].concat();
    let control = zip_message(&zip_archive(&few, 1 << 20, claimed));
    assert!(timed(control.as_bytes()).attachment_macros);
    let features = timed(zip_message(&zip).as_bytes());
    assert_eq!(features.attachment_count, 1);
    assert!(!features.attachment_macros);
}

#[test]
fn long_lines_and_huge_headers() {
    let mut message = String::new();
    for i in 0..20_000 {
        message.push_str(&format!("X-H{i}: {}\r\n", "v".repeat(50)));
    }
    message.push_str(&format!(
        "Subject: {}\r\n\r\n",
        "=?utf-8?b?QUJD?= ".repeat(10_000)
    ));
    message.push_str(&"<a download>".repeat(50_000));
    message.push_str(&"http://x.example/".repeat(20_000));
    let features = timed(message.as_bytes());
    assert_eq!(
        features.subject.as_ref().map(|s| s.chars().count()),
        Some(512)
    );
    assert_eq!(
        features.urls.len(),
        0,
        "one 340 000-character URL is skipped"
    );
}

fn zip_message(zip: &[u8]) -> String {
    let encoded = base64_lines(zip);
    format!(
        "Subject: many members\r\nContent-Type: application/zip; name=\"m.zip\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n"
    )
}

/// A ZIP local header: deflated (method 8) or stored (0), with the sizes it claims.
fn local_header(name: &str, method: u16, compressed: u32, uncompressed: u32) -> Vec<u8> {
    let mut h = b"PK\x03\x04\x14\x00\x00\x00".to_vec();
    h.extend_from_slice(&method.to_le_bytes());
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&compressed.to_le_bytes());
    h.extend_from_slice(&uncompressed.to_le_bytes());
    h.extend_from_slice(&(name.len() as u16).to_le_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(name.as_bytes());
    h
}

/// Deflated members that all claim `uncompressed` bytes from `claimed_compressed` (the
/// directory's sizes are what the bounds read).
fn zip_archive(
    members: &[(String, Vec<u8>)],
    uncompressed: u32,
    claimed_compressed: u32,
) -> Vec<u8> {
    let (mut zip, mut directory) = (Vec::new(), Vec::new());
    for (name, deflated) in members {
        let offset = zip.len() as u32;
        let compressed = claimed_compressed.max(deflated.len() as u32);
        zip.extend(local_header(name, 8, compressed, uncompressed));
        zip.extend_from_slice(deflated);
        let local = local_header(name, 8, compressed, uncompressed);
        directory.extend_from_slice(b"PK\x01\x02\x14\x00");
        directory.extend_from_slice(&local[4..30]);
        directory.extend_from_slice(&[0; 10]);
        directory.extend_from_slice(&offset.to_le_bytes());
        directory.extend_from_slice(name.as_bytes());
    }
    let directory_offset = zip.len() as u32;
    let count = (members.len() as u16).to_le_bytes();
    zip.extend_from_slice(&directory);
    zip.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    zip.extend_from_slice(&[count[0], count[1], count[0], count[1]]);
    zip.extend_from_slice(&(directory.len() as u32).to_le_bytes());
    zip.extend_from_slice(&directory_offset.to_le_bytes());
    zip.extend_from_slice(&[0, 0]);
    zip
}

fn base64_lines(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push_str("\r\n");
        }
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (j, &b)| n | u32::from(b) << (16 - 8 * j));
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
