//! Decoding the two AUTH mechanisms the decoy offers (SMTP.md §3) and the attempts it keeps.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};

/// Longest username or password kept, in characters.
const KEPT_CHARS: usize = 256;

/// A mechanism the decoy offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mechanism {
    /// RFC 4616.
    Plain,
    /// The de facto LOGIN exchange.
    Login,
}

impl Mechanism {
    /// As `auth_attempts[].method` names it.
    pub(crate) fn method(self) -> &'static str {
        match self {
            Mechanism::Plain => "plain",
            Mechanism::Login => "login",
        }
    }

    /// The mechanism named on an AUTH line, case-insensitively.
    pub(crate) fn named(name: &str) -> Option<Mechanism> {
        if name.eq_ignore_ascii_case("PLAIN") {
            Some(Mechanism::Plain)
        } else if name.eq_ignore_ascii_case("LOGIN") {
            Some(Mechanism::Login)
        } else {
            None
        }
    }
}

/// One login attempt as the decoy keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Attempt {
    /// As submitted, lossy UTF-8, at most 256 characters.
    pub(crate) username: String,
    /// As submitted, lossy UTF-8, at most 256 characters.
    pub(crate) password: String,
    /// `plain` or `login`.
    pub(crate) method: String,
    /// Whether the decoy said yes.
    pub(crate) success: bool,
    /// When.
    pub(crate) ts: DateTime<Utc>,
}

/// A client response that is not base64.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Undecodable;

/// Decode one base64 client response (surrounding blanks tolerated).
pub(crate) fn decode(response: &str) -> Result<Vec<u8>, Undecodable> {
    STANDARD
        .decode(response.trim().as_bytes())
        .map_err(|_| Undecodable)
}

/// The base64 of a server challenge.
#[cfg(test)]
pub(crate) fn challenge(text: &str) -> String {
    STANDARD.encode(text)
}

/// Lossy UTF-8, cut to the kept length.
pub(crate) fn kept(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .take(KEPT_CHARS)
        .collect()
}

/// `authzid NUL authcid NUL password` → (authcid, password). A response without the two NULs
/// is still an attempt: everything before the first NUL (or all of it) is the username.
pub(crate) fn plain_credentials(decoded: &[u8]) -> (String, String) {
    let mut parts = decoded.splitn(3, |&b| b == 0);
    let first = parts.next().unwrap_or_default();
    match (parts.next(), parts.next()) {
        (Some(authcid), Some(password)) => (kept(authcid), kept(password)),
        (Some(password), None) => (kept(first), kept(password)),
        _ => (kept(first), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_takes_the_authentication_identity_and_password() {
        assert_eq!(
            plain_credentials(b"\0admin\0hunter2"),
            ("admin".into(), "hunter2".into())
        );
        assert_eq!(
            plain_credentials(b"boss\0admin\0pw\0with-nul"),
            ("admin".into(), "pw\0with-nul".into())
        );
        assert_eq!(plain_credentials(b"admin"), ("admin".into(), String::new()));
        assert_eq!(
            plain_credentials(b"admin\0pw"),
            ("admin".into(), "pw".into())
        );
        let long = vec![b'x'; 1000];
        assert_eq!(plain_credentials(&long).0.chars().count(), 256);
        assert_eq!(plain_credentials(b"\0\xff\xfeu\0p").0, "\u{fffd}\u{fffd}u");
    }

    #[test]
    fn responses_decode_or_say_they_cannot() {
        assert_eq!(decode(" AGEAYg== ").unwrap(), b"\0a\0b");
        assert_eq!(decode("not base64!"), Err(Undecodable));
        assert_eq!(challenge("Username:"), "VXNlcm5hbWU6");
        assert_eq!(challenge("Password:"), "UGFzc3dvcmQ6");
        assert_eq!(Mechanism::named("login"), Some(Mechanism::Login));
        assert_eq!(Mechanism::named("CRAM-MD5"), None);
    }
}
