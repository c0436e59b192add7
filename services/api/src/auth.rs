//! Bearer tokens (API.md §2): HS256 JWTs with a `viewer` or `admin` role, verified and issued
//! here.
//!
//! The check is written by hand over `hmac` and `sha2`, which the tree already has, rather
//! than taken from a JWT crate: only one algorithm is accepted, so the whole of it is a header
//! compared with `{"alg":"HS256"}`, a constant-time MAC comparison and five claims. A general
//! library would bring asymmetric algorithms (and their crates) that this API must refuse
//! anyway. There is no login endpoint and no user table: `decnet token issue` signs tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

/// The shortest key accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;
/// Clock leeway on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_SECS: i64 = 30;

/// What a token lets its holder do; `admin` may do all a viewer may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads.
    Viewer,
    /// Reads and state changes.
    Admin,
}

impl Role {
    /// `viewer` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "admin" => Ok(Role::Admin),
            other => Err(format!("role must be viewer or admin, not {other:?}")),
        }
    }
}

/// The verified holder of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The `sub` claim: recorded as `set_by` and `created_by`.
    pub sub: String,
    /// The `role` claim.
    pub role: Role,
}

/// The HS256 key; its `Debug` never shows the bytes.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

/// Why a key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Shorter than [`MIN_SECRET_BYTES`].
    #[error("the JWT key from {source_name} is {len} bytes; at least 32 are required")]
    TooShort {
        /// Where it came from (a variable or a file).
        source_name: String,
        /// Its length.
        len: usize,
    },
}

impl Secret {
    /// A key from raw bytes (`source_name` names the variable or file in the error).
    pub fn new(bytes: Vec<u8>, source_name: &str) -> Result<Secret, SecretError> {
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort {
                source_name: source_name.to_owned(),
                len: bytes.len(),
            });
        }
        Ok(Secret(bytes))
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length")
    }
}

/// Why a token was refused; `reason()` labels `decnet_api_auth_failures_total`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `Authorization` header.
    #[error("missing bearer token")]
    Missing,
    /// A scheme other than `Bearer`.
    #[error("authorization scheme must be Bearer")]
    Scheme,
    /// Not three base64url parts of JSON.
    #[error("malformed token")]
    Malformed,
    /// `alg` is not `HS256` (`none` included).
    #[error("token algorithm must be HS256")]
    Algorithm,
    /// The MAC does not match.
    #[error("bad token signature")]
    Signature,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// A required claim is missing or of the wrong type.
    #[error("token claim '{0}' is missing or invalid")]
    Claim(&'static str),
    /// `role` is neither `viewer` nor `admin`.
    #[error("token role must be viewer or admin")]
    Role,
    /// `iss` differs from `DECNET_JWT_ISSUER`.
    #[error("token issuer is not accepted")]
    Issuer,
}

impl TokenError {
    /// The metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Scheme => "scheme",
            TokenError::Malformed => "malformed",
            TokenError::Algorithm => "algorithm",
            TokenError::Signature => "signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::Claim(_) => "claim",
            TokenError::Role => "role",
            TokenError::Issuer => "issuer",
        }
    }
}

/// How tokens are checked.
#[derive(Debug, Clone)]
pub struct Verifier {
    secret: Secret,
    issuer: Option<String>,
}

impl Verifier {
    /// Check with `secret`, and require `iss == issuer` when one is set.
    pub fn new(secret: Secret, issuer: Option<String>) -> Verifier {
        Verifier { secret, issuer }
    }

    /// The caller an `Authorization` header value names, at `now` (Unix seconds).
    pub fn verify_header(&self, header: Option<&str>, now: i64) -> Result<Caller, TokenError> {
        let header = header.ok_or(TokenError::Missing)?;
        let (scheme, token) = header.split_once(' ').ok_or(TokenError::Scheme)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(TokenError::Scheme);
        }
        self.verify(token.trim(), now)
    }

    /// The caller a compact JWT names, at `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<Caller, TokenError> {
        let mut parts = token.split('.');
        let (Some(head), Some(body), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Value = decode_json(head)?;
        // The algorithm is checked before the signature: a token naming another one is
        // refused for that, whatever its MAC.
        if header.get("alg").and_then(Value::as_str) != Some("HS256") {
            return Err(TokenError::Algorithm);
        }
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| TokenError::Malformed)?;
        let mut mac = self.secret.mac();
        mac.update(head.as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        mac.verify_slice(&sig).map_err(|_| TokenError::Signature)?;
        let claims: Value = decode_json(body)?;
        self.check_claims(&claims, now)
    }

    fn check_claims(&self, claims: &Value, now: i64) -> Result<Caller, TokenError> {
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(TokenError::Claim("sub"))?;
        let role = claims
            .get("role")
            .ok_or(TokenError::Claim("role"))?
            .as_str()
            .and_then(|r| r.parse::<Role>().ok())
            .ok_or(TokenError::Role)?;
        let time = |name: &'static str| match claims.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(|t| Some(t as i64))
                .ok_or(TokenError::Claim(name)),
        };
        let exp = time("exp")?.ok_or(TokenError::Claim("exp"))?;
        if now > exp + LEEWAY_SECS {
            return Err(TokenError::Expired);
        }
        for name in ["nbf", "iat"] {
            if time(name)?.is_some_and(|t| t > now + LEEWAY_SECS) {
                return Err(TokenError::NotYetValid);
            }
        }
        if let Some(issuer) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(issuer)
        {
            return Err(TokenError::Issuer);
        }
        Ok(Caller {
            sub: sub.to_owned(),
            role,
        })
    }
}

fn decode_json(part: &str) -> Result<Value, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
    value
        .is_object()
        .then_some(value)
        .ok_or(TokenError::Malformed)
}

/// Sign `claims` (a JSON object) with HS256.
pub fn sign(secret: &Secret, claims: &Value) -> String {
    let head = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialise"));
    let mut mac = secret.mac();
    mac.update(head.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{head}.{body}.{sig}")
}

/// A token for `sub` with `role`, valid from `now` for `ttl_secs` (Unix seconds).
pub fn issue(
    secret: &Secret,
    sub: &str,
    role: Role,
    now: i64,
    ttl_secs: i64,
    issuer: Option<&str>,
) -> String {
    let mut claims = serde_json::json!({
        "sub": sub,
        "role": role.as_str(),
        "iat": now,
        "nbf": now,
        "exp": now + ttl_secs,
    });
    if let Some(iss) = issuer {
        claims["iss"] = Value::from(iss);
    }
    sign(secret, &claims)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn secret() -> Secret {
        Secret::new(vec![7; 32], "test").unwrap()
    }

    #[test]
    fn short_keys_are_refused() {
        let e = Secret::new(vec![1; 31], "DECNET_JWT_SECRET").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the JWT key from DECNET_JWT_SECRET is 31 bytes; at least 32 are required"
        );
        assert_eq!(format!("{:?}", secret()), "Secret(<32 bytes>)");
    }

    #[test]
    fn tokens_are_checked_claim_by_claim() {
        let v = Verifier::new(secret(), Some("decnet".into()));
        let now = 1_800_000_000;
        let good = json!({"sub": "ana", "role": "admin", "exp": now + 60, "iss": "decnet"});
        let with = |patch: Value| {
            let mut c = good.clone();
            for (k, val) in patch.as_object().unwrap() {
                if val.is_null() {
                    c.as_object_mut().unwrap().remove(k);
                } else {
                    c[k] = val.clone();
                }
            }
            sign(&secret(), &c)
        };
        let cases: Vec<(&str, Value, Result<Role, TokenError>)> = vec![
            ("valid", json!({}), Ok(Role::Admin)),
            ("viewer", json!({"role": "viewer"}), Ok(Role::Viewer)),
            (
                "expired",
                json!({"exp": now - 31}),
                Err(TokenError::Expired),
            ),
            ("within leeway", json!({"exp": now - 29}), Ok(Role::Admin)),
            (
                "future nbf",
                json!({"nbf": now + 31}),
                Err(TokenError::NotYetValid),
            ),
            (
                "future iat",
                json!({"iat": now + 60}),
                Err(TokenError::NotYetValid),
            ),
            (
                "no sub",
                json!({"sub": null}),
                Err(TokenError::Claim("sub")),
            ),
            (
                "no exp",
                json!({"exp": null}),
                Err(TokenError::Claim("exp")),
            ),
            (
                "no role",
                json!({"role": null}),
                Err(TokenError::Claim("role")),
            ),
            ("odd role", json!({"role": "root"}), Err(TokenError::Role)),
            ("issuer", json!({"iss": "other"}), Err(TokenError::Issuer)),
        ];
        for (name, patch, want) in cases {
            let got = v.verify(&with(patch), now).map(|c| c.role);
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn other_algorithms_and_tampering_are_refused() {
        let v = Verifier::new(secret(), None);
        let now = 1_800_000_000;
        let token = issue(&secret(), "ana", Role::Viewer, now, 3600, None);
        assert_eq!(v.verify(&token, now).unwrap().sub, "ana");
        let (_, rest) = token.split_once('.').unwrap();
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        assert_eq!(
            v.verify(&format!("{none}.{rest}"), now),
            Err(TokenError::Algorithm)
        );
        let hs512 = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS512"}"#);
        assert_eq!(
            v.verify(&format!("{hs512}.{rest}"), now),
            Err(TokenError::Algorithm)
        );
        let other = Secret::new(vec![8; 32], "t").unwrap();
        let forged = issue(&other, "ana", Role::Admin, now, 3600, None);
        assert_eq!(v.verify(&forged, now), Err(TokenError::Signature));
        assert_eq!(v.verify("a.b", now), Err(TokenError::Malformed));
        assert_eq!(
            v.verify_header(Some(&format!("Basic {token}")), now),
            Err(TokenError::Scheme)
        );
        assert_eq!(v.verify_header(None, now), Err(TokenError::Missing));
    }
}
