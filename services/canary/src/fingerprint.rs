//! Fingerprint submissions (CANARY.md §5, §8): decoding the `d` parameter and the validation
//! layers A (nonce), B (shape) and C (mint). Layer D, the rate limit, runs before these in the
//! beacon (see [`crate::limits`]). The first failure names the state; only a fingerprint that
//! passes every layer is ever kept.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::token::nonce_matches;

/// The longest `d` decoded; a longer one makes the hit `oversize` (CANARY.md §5).
pub const MAX_D_CHARS: usize = 8192;

/// The keys of which at least [`MIN_OBJECTS`] must be objects (layer B).
const SHAPE_KEYS: [&str; 8] = ["nav", "scr", "tz", "cv", "gl", "au", "ft", "rtc"];
const MIN_OBJECTS: usize = 3;

/// What validation made of a hit's fingerprint (EVENTS.md §4.6 `fingerprint_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// No fingerprint was submitted.
    None,
    /// Every layer passed.
    Valid,
    /// Layer A: `k` is not the token's nonce.
    InvalidNonce,
    /// Layer B: no mint, or fewer than three collector objects.
    InvalidShape,
    /// Layer C: the mint is not the token's.
    InvalidMint,
    /// Layer D: too many submissions from this address for this token.
    RateLimited,
    /// Not base64url, not UTF-8, not JSON or not an object.
    DecodeError,
    /// `d` (or a chunk) longer than the limit.
    Oversize,
    /// A chunk set did not complete in time.
    ChunkTimeout,
    /// A chunk set's parts disagree or break the accepted shape.
    ChunkInconsistent,
    /// A chunk set was evicted to keep memory bounded.
    ChunkEvicted,
}

impl State {
    /// The stored and published name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::None => "none",
            State::Valid => "valid",
            State::InvalidNonce => "invalid_nonce",
            State::InvalidShape => "invalid_shape",
            State::InvalidMint => "invalid_mint",
            State::RateLimited => "rate_limited",
            State::DecodeError => "decode_error",
            State::Oversize => "oversize",
            State::ChunkTimeout => "chunk_timeout",
            State::ChunkInconsistent => "chunk_inconsistent",
            State::ChunkEvicted => "chunk_evicted",
        }
    }
}

/// Decode a `d` value (or a reassembled set) into the fingerprint object.
pub fn decode(d: &str) -> Result<Map<String, Value>, State> {
    if d.len() > MAX_D_CHARS * crate::chunks::MAX_PARTS {
        return Err(State::Oversize);
    }
    // Padding is not sent, but a client that pads is no reason to throw the data away.
    let bytes = URL_SAFE_NO_PAD
        .decode(d.trim_end_matches('='))
        .map_err(|_| State::DecodeError)?;
    let text = String::from_utf8(bytes).map_err(|_| State::DecodeError)?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(State::DecodeError),
    }
}

/// Layers A, B and C in order, for a token with `nonce` (fingerprint tokens) and `mint`.
pub fn validate(
    fingerprint: &Map<String, Value>,
    k: Option<&str>,
    nonce: Option<&str>,
    mint: Uuid,
) -> State {
    if let Some(nonce) = nonce
        && !k.is_some_and(|k| nonce_matches(nonce, k))
    {
        return State::InvalidNonce;
    }
    let claimed = match fingerprint.get("mint") {
        Some(Value::String(m)) if !m.is_empty() => m,
        _ => return State::InvalidShape,
    };
    let objects = SHAPE_KEYS
        .iter()
        .filter(|key| fingerprint.get(**key).is_some_and(Value::is_object))
        .count();
    if objects < MIN_OBJECTS {
        return State::InvalidShape;
    }
    if *claimed != mint.to_string() {
        return State::InvalidMint;
    }
    State::Valid
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn decoding_refuses_what_is_not_a_json_object() {
        assert_eq!(decode("!!!"), Err(State::DecodeError));
        assert_eq!(
            decode(&URL_SAFE_NO_PAD.encode([0xff, 0xfe])),
            Err(State::DecodeError)
        );
        assert_eq!(
            decode(&URL_SAFE_NO_PAD.encode("[1,2]")),
            Err(State::DecodeError)
        );
        assert_eq!(decode(&b64(&json!({"a": 1}))).unwrap()["a"], 1);
    }

    #[test]
    fn layers_fail_in_order() {
        let mint = crate::token::mint_uuid("aaaqeayeaudaocajbifqydiob4");
        let good = json!({"mint": mint.to_string(), "nav": {}, "scr": {}, "tz": {"err": "x"}});
        let good = good.as_object().unwrap();
        let nonce = Some("b99763c72a85044f");
        assert_eq!(
            validate(good, Some("b99763c72a85044f"), nonce, mint),
            State::Valid
        );
        assert_eq!(
            validate(good, Some("0000000000000000"), nonce, mint),
            State::InvalidNonce
        );
        assert_eq!(validate(good, None, nonce, mint), State::InvalidNonce);
        // Without a nonce on the token, layer A is skipped.
        assert_eq!(validate(good, None, None, mint), State::Valid);
        let thin = json!({"mint": mint.to_string(), "nav": {}, "scr": 3, "tz": "x"});
        assert_eq!(
            validate(thin.as_object().unwrap(), None, None, mint),
            State::InvalidShape
        );
        let other = json!({"mint": Uuid::nil().to_string(), "nav": {}, "scr": {}, "tz": {}});
        assert_eq!(
            validate(other.as_object().unwrap(), None, None, mint),
            State::InvalidMint
        );
    }
}
