//! Feodo Tracker (INTEL.md §2): the botnet C2 blocklist, downloaded whole when the copy in
//! memory is older than the refresh interval and matched locally, so no attacker's address
//! is ever sent to abuse.ch. One download at a time; lookups meanwhile wait for it. A failed
//! refresh keeps the earlier copy; without one, the lookup fails, and the next download is
//! tried a minute later rather than on every lookup.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use decnet_storage::FeodoIntel;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{Answer, Columns, json_body, raw_text};
use crate::http::Request;

/// How long a failed download waits before the next try.
const RETRY: TimeDelta = TimeDelta::seconds(60);

/// The feed request.
pub(crate) fn request(base: &str) -> Request<'static> {
    Request {
        method: http::Method::GET,
        url: format!("{}/downloads/ipblocklist.json", base.trim_end_matches('/')),
        headers: Vec::new(),
        json_body: None,
        timeout: std::time::Duration::ZERO,
        limit: 32 << 20,
    }
}

/// The blocklist by canonical address.
pub(crate) type Index = HashMap<String, Value>;

/// Read a downloaded feed.
pub(crate) fn parse_feed(status: u16, body: &[u8]) -> Result<Index, String> {
    if !(200..300).contains(&status) {
        return Err(format!("HTTP {status}"));
    }
    let Value::Array(entries) = json_body(body)? else {
        return Err("the feed is not a list".to_owned());
    };
    Ok(entries
        .into_iter()
        .filter_map(|e| {
            let ip = e.get("ip_address").and_then(Value::as_str)?;
            let ip = decnet_ttp::anchor::canonical_ip(ip)?;
            Some((ip, e))
        })
        .collect())
}

/// The columns for `ip` from the index.
pub(crate) fn answer(index: &Index, ip: &str) -> Answer {
    match index.get(ip) {
        None => Answer {
            columns: Columns::Feodo(FeodoIntel {
                listed: Some(false),
                malware_family: None,
                first_seen: None,
            }),
            raw: json!({}).to_string(),
        },
        Some(entry) => Answer {
            columns: Columns::Feodo(FeodoIntel {
                listed: Some(true),
                malware_family: entry
                    .get("malware")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                first_seen: entry
                    .get("first_seen")
                    .and_then(Value::as_str)
                    .and_then(feed_time),
            }),
            raw: raw_text(entry),
        },
    }
}

/// The feed's times, `YYYY-MM-DD HH:MM:SS` in UTC.
fn feed_time(text: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc())
}

#[derive(Debug, Default)]
struct State {
    index: Option<Arc<Index>>,
    fetched_at: Option<DateTime<Utc>>,
    next_try: Option<DateTime<Utc>>,
}

/// The copy in memory.
#[derive(Debug, Default)]
pub(crate) struct Feed {
    state: Mutex<State>,
}

impl Feed {
    /// The index to match against, downloading it first through `download` when it is
    /// missing or older than `refresh`. `Err` when there is no copy to use.
    pub(crate) async fn index<F, Fut>(
        &self,
        now: DateTime<Utc>,
        refresh: TimeDelta,
        download: F,
    ) -> Result<Arc<Index>, String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Index, String>>,
    {
        let mut state = self.state.lock().await;
        let fresh = state.fetched_at.is_some_and(|t| now - t < refresh);
        let waiting = state.next_try.is_some_and(|t| now < t);
        if let Some(index) = state.index.clone().filter(|_| fresh || waiting) {
            return Ok(index);
        }
        if waiting {
            return Err("the Feodo feed is unavailable".to_owned());
        }
        match download().await {
            Ok(index) => {
                tracing::debug!(entries = index.len(), "feodo feed refreshed");
                let index = Arc::new(index);
                state.index = Some(Arc::clone(&index));
                state.fetched_at = Some(now);
                state.next_try = None;
                Ok(index)
            }
            Err(e) => {
                state.next_try = Some(now + RETRY);
                match state.index.clone() {
                    Some(index) => {
                        tracing::warn!(error = %e, "feodo feed refresh failed; keeping the earlier copy");
                        Ok(index)
                    }
                    None => Err(format!("feed: {e}")),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed() -> Vec<u8> {
        json!([
            {"ip_address": "203.0.113.7", "port": 447, "status": "online", "hostname": null,
             "as_number": 64500, "as_name": "EXAMPLE-AS", "country": "NL",
             "first_seen": "2026-11-02 07:15:01", "last_online": "2026-12-03",
             "malware": "QakBot"},
            {"ip_address": "198.51.100.9", "port": 443, "status": "offline",
             "first_seen": "2025-01-10 00:00:00", "last_online": "2025-02-01",
             "malware": "Emotet"}
        ])
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_listed_address_hits_and_another_misses() {
        let index = parse_feed(200, &feed()).unwrap();
        let hit = answer(&index, "203.0.113.7");
        assert_eq!(
            hit.columns,
            Columns::Feodo(FeodoIntel {
                listed: Some(true),
                malware_family: Some("QakBot".into()),
                first_seen: feed_time("2026-11-02 07:15:01"),
            })
        );
        assert!(hit.raw.contains("\"port\":447"));
        let miss = answer(&index, "192.0.2.1");
        assert_eq!(
            miss.columns,
            Columns::Feodo(FeodoIntel {
                listed: Some(false),
                ..FeodoIntel::default()
            })
        );
        assert_eq!(
            parse_feed(200, b"{}").unwrap_err(),
            "the feed is not a list"
        );
        assert_eq!(parse_feed(503, b"").unwrap_err(), "HTTP 503");
    }

    #[tokio::test]
    async fn the_feed_is_downloaded_once_per_interval_and_a_failed_refresh_keeps_the_copy() {
        let feed_state = Feed::default();
        let t0 = Utc::now();
        let hour = TimeDelta::seconds(3600);
        let downloads = std::sync::atomic::AtomicUsize::new(0);
        let ok = || async {
            downloads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            parse_feed(200, &feed())
        };
        assert_eq!(feed_state.index(t0, hour, ok).await.unwrap().len(), 2);
        assert_eq!(
            feed_state
                .index(t0 + TimeDelta::minutes(59), hour, ok)
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(downloads.load(std::sync::atomic::Ordering::SeqCst), 1);
        let failing = || async { Err::<Index, _>("HTTP 503".to_owned()) };
        let later = t0 + TimeDelta::minutes(61);
        assert_eq!(
            feed_state.index(later, hour, failing).await.unwrap().len(),
            2
        );

        let empty = Feed::default();
        assert_eq!(
            empty.index(t0, hour, failing).await.unwrap_err(),
            "feed: HTTP 503"
        );
        // Within a minute of the failure nothing is downloaded again.
        assert_eq!(
            empty
                .index(t0 + TimeDelta::seconds(30), hour, ok)
                .await
                .unwrap_err(),
            "the Feodo feed is unavailable"
        );
        assert_eq!(
            empty
                .index(t0 + TimeDelta::seconds(61), hour, ok)
                .await
                .unwrap()
                .len(),
            2
        );
    }
}
