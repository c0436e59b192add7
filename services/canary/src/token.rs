//! The token model (CANARY.md §1, §2, §7): slugs, the mint uuid and the fingerprint nonce.
//!
//! A slug is the callback secret: 16 bytes from the OS CSPRNG in lower-case unpadded base32,
//! a valid DNS label and path segment at once. Fingerprint tokens also carry a mint uuid
//! derived from the slug and a nonce keyed by the operator's secret, which the fingerprint
//! script must echo; both are derived here and nowhere else.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// The namespace of mint uuids (CANARY.md §7).
pub const MINT_NAMESPACE: Uuid = Uuid::from_u128(0xa3f7c821_9d1e_4b6a_8c2d_1e4f9a7b3c5d);

/// What a token's slug serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// The HTTP beacon.
    Http,
    /// The DNS channel.
    Dns,
    /// Never calls back; trips through an operator integration.
    AwsPassive,
}

impl TokenKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Http => "http",
            TokenKind::Dns => "dns",
            TokenKind::AwsPassive => "aws_passive",
        }
    }
}

/// A token's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    /// Minted; the slug resolves.
    Planted,
    /// Placement failed; the slug no longer resolves.
    Failed,
    /// Terminal; the slug no longer resolves.
    Revoked,
}

impl TokenState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Planted => "planted",
            TokenState::Failed => "failed",
            TokenState::Revoked => "revoked",
        }
    }

    /// Parse a stored name.
    pub fn parse(s: &str) -> Option<TokenState> {
        match s {
            "planted" => Some(TokenState::Planted),
            "failed" => Some(TokenState::Failed),
            "revoked" => Some(TokenState::Revoked),
            _ => None,
        }
    }
}

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Lower-case unpadded RFC 4648 base32.
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(BASE32[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// A new slug: 16 CSPRNG bytes, 26 characters of `[a-z2-7]`.
pub fn new_slug() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes)?;
    Ok(base32(&bytes))
}

/// Whether `s` is a minted slug (`[a-z2-7]{26}`) or an imported one (`[A-Za-z0-9_-]{16,64}`);
/// anything else in the slug position is an unknown slug.
pub fn is_slug(s: &str) -> bool {
    (16..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The key every lookup uses: the slug lower-cased.
pub fn slug_key(slug: &str) -> String {
    slug.to_ascii_lowercase()
}

/// The mint uuid of a fingerprint token: UUIDv5 of the slug as stored.
pub fn mint_uuid(slug: &str) -> Uuid {
    Uuid::new_v5(&MINT_NAMESPACE, slug.as_bytes())
}

/// The fingerprint nonce: the first 16 hex digits of HMAC-SHA256(secret, `slug|mint`).
pub fn fingerprint_nonce(secret: &str, slug: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(format!("{slug}|{}", mint_uuid(slug)).as_bytes());
    mac.finalize().into_bytes()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compare two nonces in constant time.
pub fn nonce_matches(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_golden_mint_and_nonce_of_the_spec() {
        let slug = "aaaqeayeaudaocajbifqydiob4";
        assert_eq!(
            mint_uuid(slug).to_string(),
            "9e4adb85-1679-57a9-9ffa-ebeeb67ab7dc"
        );
        assert_eq!(fingerprint_nonce("test-secret", slug), "b99763c72a85044f");
    }

    #[test]
    fn minted_slugs_are_lower_case_base32_of_sixteen_bytes() {
        // The golden slug is the base32 of bytes 0..16.
        let bytes: Vec<u8> = (0..16).collect();
        assert_eq!(base32(&bytes), "aaaqeayeaudaocajbifqydiob4");
        let slug = new_slug().unwrap();
        assert_eq!(slug.len(), 26);
        assert!(slug.bytes().all(|b| BASE32.contains(&b)), "{slug}");
        assert_ne!(slug, new_slug().unwrap());
        assert!(is_slug(&slug));
    }

    #[test]
    fn slug_shapes() {
        assert!(is_slug("Imported_Slug-0123"));
        for bad in [
            "short",
            "has.dot.in.it.long",
            "with space 0123456",
            &"a".repeat(65),
        ] {
            assert!(!is_slug(bad), "{bad}");
        }
        assert_eq!(slug_key("AbCdEfGhIjKlMnOp"), "abcdefghijklmnop");
    }

    #[test]
    fn nonces_compare_whole() {
        assert!(nonce_matches("b99763c72a85044f", "b99763c72a85044f"));
        assert!(!nonce_matches("b99763c72a85044f", "b99763c72a85044e"));
        assert!(!nonce_matches("b99763c72a85044f", "b99763c72a8504"));
    }
}
