//! The beacon: what happens to one request under `/c/` (CANARY.md §4–§12).
//!
//! The HTTP layer ([`crate::http`]) turns a request into a [`Hit`] and always answers the GIF;
//! this module decides what the hit is (a plain fetch, the script's open beacon, a
//! fingerprint or one chunk of one), runs the validation layers, applies the limits and
//! records it: the trigger row, the token's counters, a possible auto-revoke and the
//! announcements commit in one transaction. A database that cannot be reached sends the hit
//! to the spool instead; nothing is lost.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use decnet_proto::payload::canary::{
    CanaryRevoked, CanaryTriggered, Channel, FingerprintSignals, HitKind, RevokeReason,
};
use decnet_proto::subject;
use decnet_storage::{
    CanaryTokenRow, Database, HitRecord, NewCanaryTrigger, OutboxMessage, StorageError,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::SERVICE;
use crate::chunks::{Chunk, Finished, Reassembly, SetKey};
use crate::fingerprint::{self, MAX_D_CHARS, State};
use crate::limits::{MAX_KEYS, SlidingLimit};
use crate::signals::{self, Automation};
use crate::token::{self, TokenState};

/// Fingerprint submissions per (token, address) per minute (layer D).
pub const SUBMISSIONS_PER_MINUTE: usize = 30;
/// Recorded hits per (token, address) per minute before the flood guard folds them.
pub const HITS_PER_MINUTE: usize = 120;

/// The query parameters the script sends (CANARY.md §5); everything else is ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// `o=1`.
    pub open: bool,
    /// `d`.
    pub d: Option<String>,
    /// `s`.
    pub sid: Option<String>,
    /// `i`.
    pub index: Option<String>,
    /// `n`.
    pub total: Option<String>,
    /// `k`.
    pub k: Option<String>,
}

impl Query {
    /// Read a raw query string (percent-decoded values; the last of a repeated key wins).
    pub fn parse(raw: Option<&str>) -> Query {
        let mut q = Query::default();
        for pair in raw.unwrap_or_default().split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value);
            match key {
                "o" => q.open = value == "1",
                "d" => q.d = Some(value),
                "s" => q.sid = Some(value),
                "i" => q.index = Some(value),
                "n" => q.total = Some(value),
                "k" => q.k = Some(value),
                _ => {}
            }
        }
        q
    }

    fn is_chunk(&self) -> bool {
        self.sid.is_some() && self.index.is_some() && self.total.is_some() && self.d.is_some()
    }
}

/// `%XX` and `+` decoding; an invalid escape is kept as written.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                // Two hex digits exactly: `from_str_radix` alone would take `+1`.
                let pair = &bytes[i + 1..i + 3];
                let hex = pair
                    .iter()
                    .all(u8::is_ascii_hexdigit)
                    .then(|| std::str::from_utf8(pair).ok())
                    .flatten();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One request under `/c/`, as recorded (and as spooled while the database is away).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hit {
    /// Drawn when the request arrived; the trigger row's uuid, so a hit replayed from the spool
    /// twice (a crash mid-replay) is stored once.
    pub id: Uuid,
    /// The slug as it appeared in the path.
    pub slug: String,
    /// `GET` or `HEAD`.
    pub method: String,
    /// The client address after trusted-proxy resolution.
    pub src_ip: IpAddr,
    /// The socket peer.
    pub peer_ip: IpAddr,
    /// `User-Agent`, at most 1 KiB.
    pub user_agent: Option<String>,
    /// The path, no query, at most 2048 characters.
    pub request_path: String,
    /// Header names lower-cased, at most 16 KiB of JSON.
    pub headers: Map<String, Value>,
    /// When it arrived.
    pub occurred_at: DateTime<Utc>,
    /// The script's parameters.
    pub query: Query,
    /// Why it looks like a link preview or a mail scanner.
    pub scanner_reason: Option<String>,
}

/// What the beacon keeps between requests.
pub struct Beacon {
    db: Database,
    automation: Automation,
    geo: Option<crate::geo::Geo>,
    submissions: Mutex<SlidingLimit<(Uuid, IpAddr)>>,
    flood: Mutex<SlidingLimit<(Uuid, IpAddr)>>,
    chunks: Mutex<Reassembly<Hit>>,
    /// Woken after each commit so the outbox goes out at once.
    published: Arc<Notify>,
    /// What `/metrics` shows.
    pub metrics: crate::metrics::CanaryMetrics,
}

impl Beacon {
    /// A beacon on `db`; chunk sets time out after `chunk_timeout`.
    pub fn new(
        db: Database,
        chunk_timeout: Duration,
        geo: Option<crate::geo::Geo>,
        published: Arc<Notify>,
    ) -> Beacon {
        Beacon {
            db,
            automation: Automation::shipped(),
            geo,
            submissions: Mutex::new(SlidingLimit::new(
                SUBMISSIONS_PER_MINUTE,
                Duration::from_secs(60),
                MAX_KEYS,
            )),
            flood: Mutex::new(SlidingLimit::new(
                HITS_PER_MINUTE,
                Duration::from_secs(60),
                MAX_KEYS,
            )),
            chunks: Mutex::new(Reassembly::new(chunk_timeout)),
            published,
            metrics: crate::metrics::CanaryMetrics::default(),
        }
    }

    /// Handle one hit: look the slug up and record what it was. A database error is returned
    /// for the caller to spool the hit; the beacon's answer never depends on the outcome.
    pub async fn handle(&self, hit: Hit) -> Result<(), StorageError> {
        // Unknown slugs cost the same lookup as live ones.
        let key = if token::is_slug(&hit.slug) {
            token::slug_key(&hit.slug)
        } else {
            String::new()
        };
        let Some(token) = self.db.canary_token_by_slug(&key).await? else {
            return Ok(());
        };
        if TokenState::parse(&token.state) != Some(TokenState::Planted) {
            return Ok(());
        }
        let now = Instant::now();
        if hit.query.is_chunk() {
            return self.chunk(&token, hit, now).await;
        }
        let (kind, state, fingerprint) = match &hit.query.d {
            Some(d) => {
                let (state, fp) = self.single(&token, &hit, d, now);
                (HitKind::Fingerprint, state, fp)
            }
            None if hit.query.open => (HitKind::Open, State::None, None),
            None => (HitKind::Beacon, State::None, None),
        };
        let flags = self.flags(&token, &hit, None);
        self.record(&token, &hit, kind, state, flags, fingerprint, now)
            .await
    }

    /// Layers D, then decoding, then A–C for a single-shot fingerprint.
    fn single(
        &self,
        token: &CanaryTokenRow,
        hit: &Hit,
        d: &str,
        now: Instant,
    ) -> (State, Option<Map<String, Value>>) {
        if !lock(&self.submissions).hit(&(token.uuid, hit.src_ip), now) {
            return (State::RateLimited, None);
        }
        if d.len() > MAX_D_CHARS {
            return (State::Oversize, None);
        }
        self.validate(token, d, hit.query.k.as_deref())
    }

    fn validate(
        &self,
        token: &CanaryTokenRow,
        text: &str,
        k: Option<&str>,
    ) -> (State, Option<Map<String, Value>>) {
        let fp = match fingerprint::decode(text) {
            Ok(fp) => fp,
            Err(state) => return (state, None),
        };
        let mint = token
            .mint_uuid
            .unwrap_or_else(|| token::mint_uuid(&token.slug));
        match fingerprint::validate(&fp, k, token.fingerprint_nonce.as_deref(), mint) {
            State::Valid => (State::Valid, Some(fp)),
            failed => (failed, None),
        }
    }

    async fn chunk(
        &self,
        token: &CanaryTokenRow,
        hit: Hit,
        now: Instant,
    ) -> Result<(), StorageError> {
        let q = hit.query.clone();
        let parse = |v: &Option<String>| {
            v.as_deref()
                .filter(|s| !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<usize>().ok())
        };
        let key = SetKey {
            token: token.uuid,
            client: hit.src_ip,
            sid: q.sid.clone().unwrap_or_default(),
        };
        let valid_sid = key.sid.len() <= 16
            && !key.sid.is_empty()
            && key
                .sid
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let (Some(index), Some(total), true) = (parse(&q.index), parse(&q.total), valid_sid) else {
            // A chunk whose counters do not parse cannot belong to any set.
            let flags = self.flags(token, &hit, Some((1, parse(&q.total).unwrap_or(0))));
            return self
                .record(
                    token,
                    &hit,
                    HitKind::Fingerprint,
                    State::ChunkInconsistent,
                    flags,
                    None,
                    now,
                )
                .await;
        };
        let chunk = Chunk {
            index,
            total,
            nonce: q.k.as_deref(),
            part: q.d.as_deref().unwrap_or_default(),
        };
        let finished = lock(&self.chunks).add(&key, chunk, hit, now);
        for set in finished {
            // A set of this token was just looked up; evicted sets of others are looked up.
            let known = (token::slug_key(&set.context.slug) == token.slug_key).then_some(token);
            self.finish(set, known, now).await?;
        }
        Ok(())
    }

    /// Record a chunk set that left the buffer: complete (validated now) or ended.
    async fn finish(
        &self,
        set: Finished<Hit>,
        known: Option<&CanaryTokenRow>,
        now: Instant,
    ) -> Result<(), StorageError> {
        let hit = &set.context;
        let looked_up;
        let token = match known {
            Some(token) => token,
            None => {
                let key = token::slug_key(&hit.slug);
                let Some(row) = self.db.canary_token_by_slug(&key).await? else {
                    return Ok(());
                };
                looked_up = row;
                &looked_up
            }
        };
        if TokenState::parse(&token.state) != Some(TokenState::Planted) {
            return Ok(());
        }
        let within = lock(&self.submissions).hit(&(token.uuid, hit.src_ip), now);
        let (state, fp) = match (set.ended, &set.joined) {
            (Some(ended), _) => (ended, None),
            (None, _) if !within => (State::RateLimited, None),
            (None, Some(joined)) => self.validate(token, joined, set.nonce.as_deref()),
            (None, None) => (State::DecodeError, None),
        };
        let flags = self.flags(token, hit, Some((set.received, set.total)));
        self.record(token, hit, HitKind::Fingerprint, state, flags, fp, now)
            .await
    }

    /// A DNS-channel hit: `label` under the zone, asked by `resolver`. Only live DNS tokens
    /// record; a slug hit more than an hour earlier from another resolver is flagged
    /// `dns_echo` (resolvers and scanners re-resolving old names).
    pub async fn handle_dns(
        &self,
        label: &str,
        qname: &str,
        resolver: IpAddr,
    ) -> Result<(), StorageError> {
        let key = if token::is_slug(label) {
            token::slug_key(label)
        } else {
            String::new()
        };
        let Some(token) = self.db.canary_token_by_slug(&key).await? else {
            return Ok(());
        };
        if TokenState::parse(&token.state) != Some(TokenState::Planted) || token.kind != "dns" {
            return Ok(());
        }
        let now = Utc::now();
        let resolver = crate::net::canonical(resolver);
        let echo = self
            .db
            .canary_triggers(token.uuid, 1, None)
            .await?
            .first()
            .is_some_and(|last| {
                now - last.occurred_at > chrono::TimeDelta::hours(1)
                    && last.src_ip != resolver.to_string()
            });
        let hit = Hit {
            id: Uuid::new_v4(),
            slug: label.to_owned(),
            method: String::new(),
            src_ip: resolver,
            peer_ip: resolver,
            user_agent: None,
            request_path: String::new(),
            headers: Map::new(),
            occurred_at: now,
            query: Query::default(),
            scanner_reason: None,
        };
        let mut flags = Map::new();
        if echo {
            flags.insert("dns_echo".into(), json!(true));
        }
        self.record_on(
            &token,
            &hit,
            Some(qname),
            HitKind::Beacon,
            State::None,
            Value::Object(flags),
            None,
            Instant::now(),
        )
        .await
    }

    /// Record every chunk set that timed out by `now`.
    pub async fn expire_chunks(&self) -> Result<usize, StorageError> {
        let now = Instant::now();
        let expired = lock(&self.chunks).expire(now);
        let n = expired.len();
        for set in expired {
            self.finish(set, None, now).await?;
        }
        Ok(n)
    }

    fn flags(&self, token: &CanaryTokenRow, hit: &Hit, chunks: Option<(usize, usize)>) -> Value {
        let mut flags = Map::new();
        if hit.query.open {
            flags.insert("open".into(), json!(true));
        }
        if let (Some(nonce), Some(k)) = (&token.fingerprint_nonce, &hit.query.k) {
            flags.insert("nonce_ok".into(), json!(token::nonce_matches(nonce, k)));
        }
        if let Some((received, total)) = chunks {
            if let Some(sid) = &hit.query.sid {
                flags.insert(
                    "chunk_sid".into(),
                    json!(sid.chars().take(16).collect::<String>()),
                );
            }
            flags.insert("chunks_received".into(), json!(received));
            flags.insert("chunks_total".into(), json!(total));
        }
        Value::Object(flags)
    }

    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        token: &CanaryTokenRow,
        hit: &Hit,
        kind: HitKind,
        state: State,
        flags: Value,
        fingerprint: Option<Map<String, Value>>,
        now: Instant,
    ) -> Result<(), StorageError> {
        self.record_on(token, hit, None, kind, state, flags, fingerprint, now)
            .await
    }

    /// Record a hit; `dns_qname` makes it a DNS-channel hit (no HTTP fields).
    #[allow(clippy::too_many_arguments)]
    async fn record_on(
        &self,
        token: &CanaryTokenRow,
        hit: &Hit,
        dns_qname: Option<&str>,
        kind: HitKind,
        state: State,
        flags: Value,
        fingerprint: Option<Map<String, Value>>,
        now: Instant,
    ) -> Result<(), StorageError> {
        let http = dns_qname.is_none();
        if !lock(&self.flood).hit(&(token.uuid, hit.src_ip), now) {
            // The flood guard: the latest row counts the repeat; nothing is published.
            self.db
                .repeat_canary_hit(token.uuid, &hit.src_ip.to_string(), hit.occurred_at)
                .await?;
            self.metrics
                .hits
                .get_or_create(&vec![("outcome", "repeat")])
                .inc();
            return Ok(());
        }
        let signals: Option<FingerprintSignals> = fingerprint.as_ref().map(|fp| {
            let ctx = signals::Context {
                automation: &self.automation,
                geo: self.geo.as_ref(),
                at: hit.occurred_at,
            };
            signals::derive(fp, hit.src_ip, hit.user_agent.as_deref(), &ctx)
        });
        let scanner = hit.scanner_reason.is_some();
        let auto_revoke = state == State::Valid && token.fingerprint_nonce.is_some() && !scanner;
        let trigger = NewCanaryTrigger {
            uuid: hit.id,
            token_uuid: token.uuid,
            occurred_at: hit.occurred_at,
            channel: if http { "http" } else { "dns" }.to_owned(),
            method: http.then(|| hit.method.clone()),
            src_ip: hit.src_ip.to_string(),
            peer_ip: hit.peer_ip.to_string(),
            attacker_uuid: decnet_ttp_anchor(hit.src_ip),
            user_agent: hit.user_agent.clone(),
            request_path: http.then(|| hit.request_path.clone()),
            dns_qname: dns_qname.map(str::to_owned),
            headers: http.then(|| Value::Object(hit.headers.clone())),
            hit_kind: hit_kind_name(kind).to_owned(),
            fingerprint_state: state.as_str().to_owned(),
            flags,
            suspected_scanner: scanner,
            scanner_reason: hit.scanner_reason.clone(),
            fingerprint: fingerprint.map(Value::Object),
            signals: signals
                .as_ref()
                .map(|s| serde_json::to_value(s).expect("signals serialise")),
        };
        let triggered = CanaryTriggered {
            token_id: token.uuid,
            trigger_id: trigger.uuid,
            decky_name: token.decky_name.as_str().into(),
            request_path: trigger.request_path.clone(),
            dns_qname: trigger.dns_qname.clone(),
            src_ip: trigger.src_ip.as_str().into(),
            user_agent: trigger.user_agent.clone(),
            occurred_at: Some(decnet_storage::micros(hit.occurred_at)),
            token_kind: Some(token_kind(&token.generator).to_owned()),
            generator: Some(token.generator.clone()),
            channel: Some(if http { Channel::Http } else { Channel::Dns }),
            method: trigger.method.clone(),
            hit_kind: Some(kind),
            fingerprint_state: Some(state.as_str().to_owned()),
            suspected_scanner: Some(scanner),
            scanner_reason: hit.scanner_reason.clone(),
            fingerprint: signals,
        };
        let outcome = self
            .db
            .record_canary_hit(SERVICE, &trigger, auto_revoke, |after, revoked| {
                let mut out = vec![triggered_message(&triggered)];
                if revoked {
                    out.push(revoked_message(after, Some(trigger.uuid)));
                }
                out
            })
            .await?;
        if let HitRecord::Recorded { revoked, .. } = outcome {
            self.metrics
                .hits
                .get_or_create(&vec![("outcome", "recorded")])
                .inc();
            if kind == HitKind::Fingerprint {
                self.metrics
                    .fingerprints
                    .get_or_create(&vec![("state", state.as_str())])
                    .inc();
            }
            if revoked {
                self.metrics.revoked.inc();
                tracing::info!(token = %token.uuid, "fingerprint collected; token revoked");
            }
            self.published.notify_one();
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn hit_kind_name(kind: HitKind) -> &'static str {
    match kind {
        HitKind::Beacon => "beacon",
        HitKind::Open => "open",
        HitKind::Fingerprint => "fingerprint",
    }
}

/// What the artifact is, by generator (CANARY.md §13); imports are web bugs.
pub fn token_kind(generator: &str) -> &'static str {
    match generator {
        "aws_creds" => "aws_key",
        "env_file" => "env_file",
        "git_config" => "git_config",
        "ssh_key" => "ssh_key",
        "mysql_dump" => "db_dump",
        "honeydoc" | "honeydoc_docx" | "honeydoc_pdf" | "fingerprint_html" | "fingerprint_svg" => {
            "honeydoc"
        }
        _ => "web_bug",
    }
}

/// The attacker anchor of an address (EVENTS.md §5.1), as the tagger computes it.
fn decnet_ttp_anchor(ip: IpAddr) -> Uuid {
    decnet_ttp::anchor::attacker_uuid_for_ip(&ip.to_string())
        .expect("the text of an address is an address")
}

/// `canary.<token>.triggered`, named by the trigger row.
pub fn triggered_message(event: &CanaryTriggered) -> OutboxMessage {
    decnet_bus::outbox::message(
        subject::canary_triggered(event.token_id),
        format!("canary.triggered:{}", event.trigger_id),
        event,
    )
}

/// `canary.<token>.revoked`: a token is revoked once, so the token names it.
pub fn revoked_message(token: &CanaryTokenRow, trigger: Option<Uuid>) -> OutboxMessage {
    let event = CanaryRevoked {
        token_id: token.uuid,
        reason: if trigger.is_some() {
            RevokeReason::FingerprintCollected
        } else {
            RevokeReason::Operator
        },
        trigger_id: trigger,
        decky_name: token.decky_name.as_str().into(),
        placement_path: Some(token.placement_path.clone()),
        revoked_by: token.revoked_by.clone(),
        revoked_at: token.revoked_at,
    };
    decnet_bus::outbox::message(
        subject::canary_revoked(token.uuid),
        format!("canary.revoked:{}", token.uuid),
        &event,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_keeps_only_the_script_s_parameters() {
        let q = Query::parse(Some("o=1&k=b99763c72a85044f&utm=x&d=ab%2Dc"));
        assert!(q.open);
        assert_eq!(q.k.as_deref(), Some("b99763c72a85044f"));
        assert_eq!(q.d.as_deref(), Some("ab-c"));
        assert!(!q.is_chunk());
        let c = Query::parse(Some("s=x1&i=0&n=3&d=AAAA"));
        assert!(c.is_chunk());
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        // Not an escape: kept as written (and `+` is a space, as in any form encoding).
        assert_eq!(percent_decode("%+1%-1"), "% 1%-1");
        assert_eq!(percent_decode("%41%2d"), "A-");
    }
}
