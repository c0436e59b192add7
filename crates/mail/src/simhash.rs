//! The body SimHash behind R0042's campaign signal (RULES.md §7.6, SMTP.md §7), with the
//! details the specs leave open pinned here so that every producer computes the same bits.
//!
//! Near-identical bodies differ in few bits, so the decoy's campaign window compares hashes by
//! Hamming distance. Normalisation removes what mass mailers vary per recipient (case, links,
//! numbers) before the text is cut into word 3-shingles.

use std::sync::LazyLock;

use regex::Regex;

use crate::text::URL;

/// Bodies with fewer words get no SimHash: too little text to call two messages alike.
pub const MIN_WORDS: usize = 8;

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

static DIGITS: LazyLock<Regex> = LazyLock::new(|| Regex::new("[0-9]+").expect("valid regex"));

/// SimHash of a text, as RULES.md §7.6 and SMTP.md §7 define it; `None` under [`MIN_WORDS`]
/// words.
///
/// Exactly:
/// 1. lower-case the text (Unicode `to_lowercase`);
/// 2. replace every match of the §7 URL regex `https?://[^\s<>"')\]]+` by `<url>` (the whole
///    match: trailing punctuation is not given back);
/// 3. replace each run of ASCII digits by `0`;
/// 4. split on Unicode whitespace into words; fewer than 8 words gives `None`;
/// 5. the features are the runs of 3 consecutive words joined by one space (3-shingles), each
///    hashed with 64-bit FNV-1a over its UTF-8 bytes (offset basis `0xcbf29ce484222325`, prime
///    `0x100000001b3`);
/// 6. per bit, a counter gains 1 for each shingle whose hash has the bit set and loses 1 for
///    each that has it clear, duplicates counted each time; output bit `i` is 1 iff counter
///    `i` is positive (a tie gives 0).
pub fn simhash(text: &str) -> Option<u64> {
    let lowered = text.to_lowercase();
    let linkless = URL.replace_all(&lowered, "<url>");
    let normalised = DIGITS.replace_all(&linkless, "0");
    let words: Vec<&str> = normalised.split_whitespace().collect();
    if words.len() < MIN_WORDS {
        return None;
    }

    let mut counters = [0i64; 64];
    for shingle in words.windows(3) {
        let hash = fnv1a(shingle.join(" ").as_bytes());
        for (bit, counter) in counters.iter_mut().enumerate() {
            *counter += if hash >> bit & 1 == 1 { 1 } else { -1 };
        }
    }
    let bits = counters
        .iter()
        .enumerate()
        .filter(|&(_, &c)| c > 0)
        .map(|(bit, _)| 1u64 << bit);
    Some(bits.fold(0, |hash, bit| hash | bit))
}

/// A SimHash as the event carries it: 16 lower-case hex digits.
pub fn simhash_hex(hash: u64) -> String {
    format!("{hash:016x}")
}

/// The number of bits that differ: the campaign window's distance (within 3 is alike).
pub fn hamming(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x85944171f73967e8);
    }

    // Golden vectors computed once by an independent implementation of the definition above
    // (not part of the repository), so these pin the algorithm and not merely this code.
    #[test]
    fn golden_vectors() {
        let cases = [
            (
                "the quick brown fox jumps over the lazy dog",
                "6f01620b0f6bf1cb",
            ),
            (
                "Dear customer, your account 12345 has been suspended. Visit \
                 https://example.com/verify?id=987 to restore access within 24 hours.",
                "21246044d8a40028",
            ),
            (
                "Hello  World\n\tthis is\u{a0}a test of   whitespace 2024 and 7 numbers \
                 HTTP://UPPER.example/x and more words here",
                "4bcdc32a3373e8cd",
            ),
            ("één twee drie vier vijf zes zeven acht", "828320807743ac04"),
        ];
        for (text, expected) in cases {
            assert_eq!(
                simhash(text).map(simhash_hex).as_deref(),
                Some(expected),
                "{text:?}"
            );
        }
    }

    #[test]
    fn under_eight_words_has_no_hash() {
        assert_eq!(simhash("one two three four five six seven"), None);
        assert_eq!(simhash(""), None);
        assert!(simhash("one two three four five six seven eight").is_some());
    }

    #[test]
    fn recipient_specific_numbers_and_links_do_not_change_the_hash() {
        let a = simhash("Your order 1234 ships today, track it at https://t.example/a1 now please");
        let b =
            simhash("YOUR ORDER 98 ships today, track it at http://other.example/zz now please");
        assert_eq!(a, b);
    }

    #[test]
    fn near_identical_bodies_are_close_and_different_ones_are_not() {
        let base = "we noticed unusual activity on your mailbox and need you to confirm your \
                    identity by signing in again before the end of the day or access will stop";
        let edited = base.replace("end of the day", "end of the week");
        let other = "minutes of the planning meeting: the budget review moves to thursday and \
                     the design team presents the new onboarding flow after lunch as agreed";
        let (a, b, c) = (
            simhash(base).unwrap(),
            simhash(&edited).unwrap(),
            simhash(other).unwrap(),
        );
        assert!(
            hamming(a, b) < hamming(a, c),
            "{} vs {}",
            hamming(a, b),
            hamming(a, c)
        );
    }

    #[test]
    fn hex_and_hamming() {
        assert_eq!(simhash_hex(0xab), "00000000000000ab");
        assert_eq!(simhash_hex(u64::MAX), "ffffffffffffffff");
        assert_eq!(hamming(0b1011, 0b0110), 3);
        assert_eq!(hamming(7, 7), 0);
    }
}
