//! Postfix-shaped queue ids (SMTP.md §2): the time in microseconds in base 29 over Postfix's
//! consonant-and-digit alphabet, then one random character of the same alphabet.

/// Postfix's long queue-id alphabet: no vowels, no 0 or 1.
const ALPHABET: &[u8; 29] = b"BCDFGHJKLMNPQRSTVWXYZ23456789";

/// Digits of the time part: 29¹¹ µs lasts past the year 2350.
const TIME_DIGITS: usize = 11;

/// The id of a message received at `micros` since the epoch; `random` picks the last
/// character.
pub(crate) fn queue_id(micros: u64, random: u64) -> String {
    let mut digits = [ALPHABET[0]; TIME_DIGITS];
    let mut rest = micros;
    for slot in digits.iter_mut().rev() {
        *slot = ALPHABET[(rest % 29) as usize];
        rest /= 29;
    }
    let mut id = String::with_capacity(TIME_DIGITS + 1);
    id.extend(digits.iter().map(|&b| char::from(b)));
    id.push(char::from(ALPHABET[(random % 29) as usize]));
    id
}

/// Whether `id` has the shape `queue_id` gives.
#[cfg(test)]
pub(crate) fn is_queue_id(id: &str) -> bool {
    id.len() == TIME_DIGITS + 1 && id.bytes().all(|b| ALPHABET.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twelve_characters_that_sort_by_time() {
        // 2026-12-04T08:00:00Z.
        let now = 1_796_371_200_000_000;
        let id = queue_id(now, 0);
        assert_eq!(id.len(), 12);
        assert!(is_queue_id(&id), "{id}");
        assert!(queue_id(now, 0) < queue_id(now + 1, 0));
        // Ten digits ran out in 1983: today's clock needs the eleventh.
        assert!(29u64.pow(10) < now && now < 29u64.pow(11));
        assert_eq!(queue_id(0, 0), "BBBBBBBBBBBB");
        assert_eq!(queue_id(28, 28), "BBBBBBBBBB99");
        assert_eq!(&queue_id(29, 1)[9..], "CBC");
        assert!(!is_queue_id("BBBBBBBBBBBA"));
    }
}
