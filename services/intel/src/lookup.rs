//! One attacker's lookup (INTEL.md §1): skip addresses that are not public, answer from a
//! valid row, else ask every due provider concurrently, each behind its limiter and its
//! quota, merge, and commit the row with its announcement.
//!
//! Only the database can make a lookup fail: a provider that is down, slow, paused or out
//! of quota costs its own verdict and nothing else, and the merged row records why.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use decnet_storage::{Database, IntelRow, StorageError};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::{IntelConfig, Provider};
use crate::http::{HttpClient, HttpError, Response};
use crate::limiter::{Limiter, pause_end};
use crate::metrics::Metrics;
use crate::providers::{abuseipdb, feodo, greynoise, threatfox};
use crate::verdict::{Merge, Outcome, announcement, merge, record};

/// What a lookup did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Looked {
    /// Not a public address: nothing asked, nothing published.
    NotPublic,
    /// The row is valid and no retry is due.
    Cached,
    /// A provider answered: the row and its announcement are committed.
    Announced,
    /// No provider answered: the row records why and when to retry.
    Saved,
}

/// Whether an address may be sent to a provider: not private, loopback, link-local,
/// multicast or unspecified (nor the IPv4 broadcast address).
pub(crate) fn is_public(ip: &str) -> bool {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_unspecified()
                || v4.is_broadcast())
        }
        Ok(IpAddr::V6(v6)) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(&v4.to_string());
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local())
        }
        Err(_) => false,
    }
}

fn delta(d: std::time::Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// Everything a lookup needs; shared by the consumer and the refresh timer.
#[derive(Debug)]
pub(crate) struct Enricher {
    pub(crate) db: Database,
    pub(crate) config: Arc<IntelConfig>,
    /// The providers asked, in a fixed order.
    pub(crate) enabled: Vec<Provider>,
    http: HttpClient,
    limiters: [Limiter; 4],
    feed: feodo::Feed,
    pub(crate) metrics: Metrics,
    /// Wakes the outbox publisher after a commit that staged a message.
    pub(crate) published: Arc<Notify>,
}

impl Enricher {
    pub(crate) fn new(
        db: Database,
        config: Arc<IntelConfig>,
        metrics: Metrics,
        published: Arc<Notify>,
    ) -> Enricher {
        let enabled = config.active_providers();
        let tls = enabled
            .iter()
            .any(|p| config.settings(*p).url.starts_with("https://"));
        let limiter = |p: Provider| {
            let s = config.settings(p);
            Limiter::new(s.concurrency, s.min_interval)
        };
        Enricher {
            db,
            http: HttpClient::new(&config.user_agent, tls),
            limiters: Provider::ALL.map(limiter),
            feed: feodo::Feed::default(),
            enabled,
            config,
            metrics,
            published,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.config.clock.now()
    }

    fn limiter(&self, p: Provider) -> &Limiter {
        &self.limiters[p as usize]
    }

    /// The quota day `now` falls in, and when the next one starts.
    fn quota_day(&self, now: DateTime<Utc>) -> (NaiveDate, DateTime<Utc>) {
        let offset = self.config.quota_day_start - chrono::NaiveTime::MIN;
        let day = (now - offset).date_naive();
        let next = day
            .succ_opt()
            .unwrap_or(day)
            .and_time(self.config.quota_day_start);
        (day, next.and_utc())
    }

    /// Look `attacker_uuid` at `ip` (canonical) up, as INTEL.md §1 says.
    pub(crate) async fn enrich(
        &self,
        attacker_uuid: Uuid,
        ip: &str,
    ) -> Result<Looked, StorageError> {
        let existing = self.db.attacker_intel(attacker_uuid).await?;
        if !is_public(ip) {
            return self.not_public(attacker_uuid, ip, existing).await;
        }
        let now = self.now();
        let full = existing
            .as_ref()
            .is_none_or(|r| r.expires_at.is_none_or(|e| e <= now));
        let retry_due = |p: Provider| {
            existing
                .as_ref()
                .is_some_and(|r| record(r, p).retry_at.is_some_and(|t| t <= now))
        };
        let due: Vec<Provider> = self
            .enabled
            .iter()
            .copied()
            .filter(|p| full || retry_due(*p))
            .collect();
        if due.is_empty() {
            return self.nothing_due(existing, now).await;
        }
        let asked = due
            .iter()
            .map(|p| async move { (*p, self.ask(*p, ip).await) });
        let mut outcomes = Vec::new();
        for (p, outcome) in futures_util::future::join_all(asked).await {
            outcomes.push((p, outcome?));
        }
        let mut row = existing.unwrap_or_else(|| IntelRow::new(Uuid::new_v4(), attacker_uuid, ip));
        row.attacker_ip = ip.to_owned();
        let m = Merge {
            now: self.now(),
            full,
            ttl: delta(self.config.ttl),
            failure_retry: delta(self.config.failure_retry),
            enabled: &self.enabled,
        };
        let answered = merge(&mut row, &outcomes, &m);
        let enabled = &self.enabled;
        self.db
            .save_intel(crate::SERVICE, &row, |r| {
                answered.then(|| announcement(r, enabled))
            })
            .await?;
        tracing::debug!(%attacker_uuid, answered, full, "intel lookup committed");
        if answered {
            self.published.notify_one();
            Ok(Looked::Announced)
        } else {
            Ok(Looked::Saved)
        }
    }

    async fn not_public(
        &self,
        attacker_uuid: Uuid,
        ip: &str,
        existing: Option<IntelRow>,
    ) -> Result<Looked, StorageError> {
        if existing
            .as_ref()
            .is_some_and(|r| r.last_error.as_deref() == Some("not_public"))
        {
            return Ok(Looked::NotPublic);
        }
        let mut row = existing.unwrap_or_else(|| IntelRow::new(Uuid::new_v4(), attacker_uuid, ip));
        row.last_error = Some("not_public".to_owned());
        row.retry_at = None;
        self.db.save_intel(crate::SERVICE, &row, |_| None).await?;
        Ok(Looked::NotPublic)
    }

    /// A valid row: nothing to ask. A row whose retry time passed with no provider left to
    /// ask (one since disabled) gets its retry time recomputed, so the timer lets it be.
    async fn nothing_due(
        &self,
        existing: Option<IntelRow>,
        now: DateTime<Utc>,
    ) -> Result<Looked, StorageError> {
        if let Some(mut row) = existing.filter(|r| r.retry_at.is_some_and(|t| t <= now)) {
            row.retry_at = self
                .enabled
                .iter()
                .filter_map(|p| record(&row, *p).retry_at)
                .filter(|t| *t > now)
                .min();
            self.db.save_intel(crate::SERVICE, &row, |_| None).await?;
        }
        Ok(Looked::Cached)
    }

    /// Ask one provider about `ip`. `Err` only when the quota counter could not be taken.
    async fn ask(&self, p: Provider, ip: &str) -> Result<Outcome, StorageError> {
        if p == Provider::Feodo {
            return Ok(self.ask_feodo(ip).await);
        }
        let limiter = self.limiter(p);
        if let Some(until) = limiter.paused(self.now()) {
            self.metrics.request(p.name(), "skipped_paused");
            return Ok(Outcome::Skipped(until));
        }
        let (_permit, waited) = limiter.acquire().await;
        self.metrics.waited(p.name(), waited.as_secs_f64());
        let now = self.now();
        if let Some(until) = limiter.paused(now) {
            self.metrics.request(p.name(), "skipped_paused");
            return Ok(Outcome::Skipped(until));
        }
        let settings = self.config.settings(p);
        if let Some(quota) = settings.daily_quota {
            let (day, next_day) = self.quota_day(now);
            if !self.db.take_intel_quota(p.name(), day, quota).await? {
                self.metrics.request(p.name(), "skipped_quota");
                return Ok(Outcome::Skipped(next_day));
            }
        }
        let mut req = match p {
            Provider::AbuseIpdb => match &settings.key {
                Some(key) => abuseipdb::request(&settings.url, ip, key),
                None => return Ok(failed("no API key")),
            },
            Provider::GreyNoise => greynoise::request(&settings.url, ip, settings.key.as_ref()),
            _ => threatfox::request(&settings.url, ip, settings.key.as_ref()),
        };
        req.timeout = self.config.request_timeout;
        let sent = self.http.send(req).await;
        Ok(self.answer(p, ip, sent))
    }

    /// What a sent request came to.
    fn answer(&self, p: Provider, ip: &str, sent: Result<Response, HttpError>) -> Outcome {
        let outcome = match sent {
            Err(HttpError::Timeout) => {
                self.metrics.request(p.name(), "timeout");
                return failed("timed out");
            }
            Err(e) => {
                self.metrics.request(p.name(), "error");
                return failed(&e.to_string());
            }
            Ok(r) if r.status == 429 => {
                let until = pause_end(
                    r.retry_after.as_deref(),
                    self.now(),
                    self.config.default_pause,
                );
                self.limiter(p).pause(until);
                self.metrics.request(p.name(), "rate_limited");
                tracing::debug!(provider = p.name(), until = %until, "provider asked us to wait");
                return Outcome::Failed {
                    error: "HTTP 429".to_owned(),
                    pause_until: Some(until),
                };
            }
            Ok(r) => match p {
                Provider::AbuseIpdb => abuseipdb::parse(r.status, &r.body),
                Provider::GreyNoise => greynoise::parse(r.status, &r.body),
                _ => threatfox::parse(ip, r.status, &r.body),
            },
        };
        match outcome {
            Ok(answer) => {
                self.metrics.request(p.name(), "ok");
                Outcome::Answered(answer)
            }
            Err(e) => {
                self.metrics.request(p.name(), "error");
                failed(&e)
            }
        }
    }

    /// Match `ip` against the blocklist, downloading it first when it is due.
    async fn ask_feodo(&self, ip: &str) -> Outcome {
        let settings = &self.config.feodo;
        // The feed's own lock makes downloads one at a time, and its age (on the service's
        // clock) spaces them, so the Feodo limiter is not used.
        let download = || async {
            let mut req = feodo::request(&settings.url);
            req.timeout = self.config.feed_timeout;
            match self.http.send(req).await {
                Ok(r) => {
                    let parsed = feodo::parse_feed(r.status, &r.body);
                    self.metrics
                        .request("feodo", if parsed.is_ok() { "ok" } else { "error" });
                    parsed
                }
                Err(e) => {
                    let outcome = if matches!(e, HttpError::Timeout) {
                        "timeout"
                    } else {
                        "error"
                    };
                    self.metrics.request("feodo", outcome);
                    Err(e.to_string())
                }
            }
        };
        let refresh = delta(settings.min_interval);
        match self.feed.index(self.now(), refresh, download).await {
            Ok(index) => Outcome::Answered(feodo::answer(&index, ip)),
            Err(e) => failed(&e),
        }
    }
}

fn failed(error: &str) -> Outcome {
    Outcome::Failed {
        error: error.to_owned(),
        pause_until: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_looked_up() {
        for ip in ["203.0.113.7", "8.8.8.8", "2001:db8::1", "100.64.0.1"] {
            assert!(is_public(ip), "{ip}");
        }
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.1.1",
            "224.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "not an address",
        ] {
            assert!(!is_public(ip), "{ip}");
        }
    }
}
