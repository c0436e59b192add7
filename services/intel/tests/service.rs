//! The intel service against a real `nats-server`, SQLite and one mock HTTP server standing
//! in for every provider (INTEL.md §8): request shapes, parsing of real-shaped, empty, 404,
//! 429, malformed and stalled answers, the cache and the refresh timer, partial results,
//! private addresses, poison, limits, quotas across a restart, and keys kept out of logs.

mod support;

use std::time::Duration;

use chrono::{TimeDelta, TimeZone, Utc};
use decnet_storage::{AbuseIpdbIntel, FeodoIntel, GreyNoiseIntel, ThreatFoxIntel};
use serde_json::json;
use support::mock::{abuse, feodo, fox, grey};
use support::{ABUSE_KEY, FOX_KEY, GREY_KEY, Reply, World, start_time, until, uuid_of};

const A: &str = "203.0.113.7";
const B: &str = "198.51.100.23";

#[tokio::test]
async fn requests_carry_the_documented_method_path_query_body_and_headers() {
    let world = World::new().await;
    let intel = world.start(world.config()).await;
    world.observe(A, 0).await;
    world.row_when(A, |r| r.providers_ok.len() == 4).await;
    intel.stop().await;

    let ua = format!("decnet-intel/{}", env!("CARGO_PKG_VERSION"));
    let one = |provider| {
        let got = world.mock.to(provider);
        assert_eq!(got.len(), 1, "{provider}: {got:#?}");
        got.into_iter().next().unwrap()
    };
    let a = one("abuseipdb");
    assert_eq!(
        (a.method.as_str(), a.path.as_str()),
        ("GET", "/api/v2/check")
    );
    assert_eq!(
        a.query.as_deref(),
        Some("ipAddress=203.0.113.7&maxAgeInDays=30&verbose")
    );
    assert_eq!(a.headers["key"], ABUSE_KEY);
    assert_eq!(a.headers["accept"], "application/json");
    assert_eq!(a.headers["user-agent"], ua);
    let g = one("greynoise");
    assert_eq!(
        (g.method.as_str(), g.path.as_str()),
        ("GET", "/v3/community/203.0.113.7")
    );
    assert_eq!(g.headers["key"], GREY_KEY);
    let t = one("threatfox");
    assert_eq!((t.method.as_str(), t.path.as_str()), ("POST", "/api/v1/"));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&t.body).unwrap(),
        json!({"query": "search_ioc", "search_term": A})
    );
    assert_eq!(t.headers["auth-key"], FOX_KEY);
    assert_eq!(t.headers["content-type"], "application/json");
    let f = one("feodo");
    assert_eq!(
        (f.method.as_str(), f.path.as_str()),
        ("GET", "/downloads/ipblocklist.json")
    );
    assert!(!f.headers.contains_key("key") && !f.headers.contains_key("auth-key"));

    // Without their optional keys GreyNoise and ThreatFox get no key header at all.
    let world = World::new().await;
    let mut config = world.config();
    config.greynoise.key = None;
    config.threatfox.key = None;
    let intel = world.start(config).await;
    world.observe(A, 0).await;
    world.row_when(A, |r| r.providers_ok.len() == 4).await;
    intel.stop().await;
    assert!(!world.mock.to("greynoise")[0].headers.contains_key("key"));
    assert!(
        !world.mock.to("threatfox")[0]
            .headers
            .contains_key("auth-key")
    );
}

#[tokio::test]
async fn real_shaped_answers_fill_the_row_and_the_event() {
    let world = World::new().await;
    world.mock.set(
        "abuseipdb",
        A,
        Reply::Json(200, abuse(A, 95, &[&[18, 22], &[14, 18]])),
    );
    world.mock.set(
        "greynoise",
        A,
        Reply::Json(200, grey(A, "malicious", true, false)),
    );
    world.mock.set(
        "feodo",
        "",
        Reply::Json(200, feodo(&[(A, "QakBot"), (B, "Emotet")])),
    );
    world.mock.set(
        "threatfox",
        A,
        Reply::Json(200, fox(&[(&format!("{A}:443"), "botnet_cc")])),
    );
    let intel = world.start(world.config()).await;
    world.observe(A, 0).await;
    let row = world.row_when(A, |r| r.providers_ok.len() == 4).await;
    let events = world.enriched_n(1).await;
    intel.stop().await;

    assert_eq!(
        row.abuseipdb,
        AbuseIpdbIntel {
            score: Some(95),
            categories: vec![14, 18, 22],
            total_reports: Some(2),
            is_tor: Some(false)
        }
    );
    assert_eq!(
        row.greynoise,
        GreyNoiseIntel {
            classification: Some("malicious".into()),
            name: Some("unknown".into()),
            tags: vec![],
            noise: Some(true),
            riot: Some(false)
        }
    );
    assert_eq!(
        row.feodo,
        FeodoIntel {
            listed: Some(true),
            malware_family: Some("QakBot".into()),
            first_seen: Some(Utc.with_ymd_and_hms(2026, 11, 2, 7, 15, 1).unwrap()),
        }
    );
    assert_eq!(
        row.threatfox,
        ThreatFoxIntel {
            listed: Some(true),
            threat_types: vec!["botnet_cc".into()],
            ioc_types: vec!["ip:port".into()],
            malware_families: vec!["Cobalt Strike".into()],
            confidence_max: Some(100),
        }
    );
    assert_eq!(row.aggregate_verdict.as_deref(), Some("malicious"));
    assert_eq!(row.aggregate_score, Some(1.0));
    assert_eq!(row.cached_at, Some(start_time()));
    assert_eq!(row.expires_at, Some(start_time() + TimeDelta::hours(24)));
    assert_eq!((row.retry_at, row.last_error.as_deref()), (None, None));

    let e = &events[0];
    assert_eq!(e.intel_id, Some(row.uuid));
    assert_eq!(e.attacker_uuid, uuid_of(A));
    assert_eq!(
        e.providers,
        vec!["abuseipdb", "greynoise", "feodo", "threatfox"]
    );
    assert_eq!(e.abuseipdb_score, Some(95));
    assert_eq!(e.abuseipdb_categories, vec![14, 18, 22]);
    assert_eq!(e.feodo_malware_family.as_deref(), Some("QakBot"));
    assert_eq!(e.threatfox_threat_types, vec!["botnet_cc"]);
    let scores = e.scores.clone().unwrap();
    assert_eq!(
        (
            scores.abuseipdb,
            scores.greynoise,
            scores.feodo,
            scores.threatfox
        ),
        (Some(0.95), Some(1.0), Some(1.0), Some(1.0))
    );
    assert_eq!(e.verdict_digest, row.verdict_digest);
    let (headers, _) = &world.messages("EVENTS", "attacker.intel.enriched").await[0];
    let id = format!(
        "attacker.intel.enriched:{}:{}",
        uuid_of(A),
        row.verdict_digest.unwrap()
    );
    assert!(headers.contains(&id), "{headers}");
}

#[tokio::test]
async fn failures_cost_only_their_providers_and_a_second_pass_keeps_what_the_first_stored() {
    let world = World::new().await;
    world
        .mock
        .set("abuseipdb", A, Reply::Json(200, abuse(A, 80, &[&[18]])));
    world.mock.set(
        "threatfox",
        A,
        Reply::Json(200, fox(&[(A, "payload_delivery")])),
    );
    world
        .mock
        .set("feodo", "", Reply::Json(200, feodo(&[(A, "Dridex")])));
    let intel = world.start(world.config()).await;
    world.observe(A, 0).await;
    let first = world.row_when(A, |r| r.providers_ok.len() == 4).await;
    // Seen by the tagger, so the timer refreshes it once it expires.
    world.sighted(A).await;
    assert_eq!(
        first.greynoise.classification.as_deref(),
        Some("unknown"),
        "404 = unknown"
    );

    // A day later every provider but GreyNoise breaks in its own way.
    world
        .mock
        .set("abuseipdb", A, Reply::Text(200, String::new()));
    world.mock.set(
        "greynoise",
        A,
        Reply::Json(200, grey(A, "benign", false, true)),
    );
    world
        .mock
        .set("threatfox", A, Reply::Stall(Duration::from_secs(3)));
    world
        .mock
        .set("feodo", "", Reply::Text(503, "maintenance".into()));
    world.clock.advance(TimeDelta::hours(25));
    let second = world.row_when(A, |r| r.cached_at != first.cached_at).await;
    intel.stop().await;

    assert_eq!(second.uuid, first.uuid);
    assert_eq!(second.abuseipdb, first.abuseipdb);
    assert_eq!(second.abuseipdb_record, first.abuseipdb_record);
    assert_eq!(second.threatfox, first.threatfox);
    // Feodo's earlier copy answered although the refresh failed.
    assert_eq!(second.feodo, first.feodo);
    assert_eq!(second.greynoise.classification.as_deref(), Some("benign"));
    assert_eq!(second.providers_ok, vec!["greynoise", "feodo"]);
    let failed: Vec<(String, String)> = second
        .providers_failed
        .iter()
        .map(|f| (f.provider.clone(), f.error.clone()))
        .collect();
    assert_eq!(
        failed,
        vec![
            ("abuseipdb".to_owned(), "malformed JSON".to_owned()),
            ("threatfox".to_owned(), "timed out".to_owned()),
        ]
    );
    assert_eq!(second.aggregate_verdict.as_deref(), Some("malicious"));
    assert_eq!(second.aggregate_score, Some(1.0));
    assert_eq!(second.scores.abuseipdb, Some(0.8));
    let events = world.enriched_n(2).await;
    assert_eq!(events[1].abuseipdb_score, Some(80));
    assert_eq!(events[1].providers_failed, vec!["abuseipdb", "threatfox"]);
}

#[tokio::test]
async fn when_every_provider_fails_nothing_is_published_and_the_timer_retries_after_15_minutes() {
    let world = World::new().await;
    for p in ["abuseipdb", "greynoise", "threatfox"] {
        world
            .mock
            .set(p, A, Reply::Text(502, "<html>bad gateway</html>".into()));
    }
    world.mock.set(
        "feodo",
        "",
        Reply::Text(500, "{\"error\": \"oops\"}".into()),
    );
    let intel = world.start(world.config()).await;
    world.observe(A, 0).await;
    let row = world.row_when(A, |r| r.retry_at.is_some()).await;
    assert_eq!(row.retry_at, Some(start_time() + TimeDelta::minutes(15)));
    assert_eq!((row.verdict_digest.clone(), row.expires_at), (None, None));
    assert_eq!(row.providers_failed.len(), 4);
    assert_eq!(
        row.last_error.as_deref(),
        Some(
            "abuseipdb: HTTP 502; greynoise: HTTP 502; feodo: feed: HTTP 500; threatfox: HTTP 502"
        )
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(world.enriched().await.is_empty());

    world
        .mock
        .set("abuseipdb", A, Reply::Json(200, abuse(A, 30, &[&[14]])));
    world.mock.set(
        "greynoise",
        A,
        Reply::Json(200, grey(A, "unknown", true, false)),
    );
    world.mock.set(
        "threatfox",
        A,
        Reply::Json(200, support::mock::fox_no_result()),
    );
    world.mock.set("feodo", "", Reply::Json(200, feodo(&[])));
    world.clock.advance(TimeDelta::minutes(15));
    let row = world.row_when(A, |r| r.providers_ok.len() == 4).await;
    intel.stop().await;
    assert_eq!((row.retry_at, row.last_error), (None, None));
    assert_eq!(row.aggregate_verdict.as_deref(), Some("suspicious"));
    assert_eq!(world.enriched_n(1).await[0].abuseipdb_score, Some(30));
}

#[tokio::test]
async fn a_valid_row_answers_without_a_request_and_an_expired_one_is_refreshed_by_the_timer() {
    let world = World::new().await;
    let intel = world.start(world.config()).await;
    world.observe(A, 0).await;
    let first = world.row_when(A, |r| r.providers_ok.len() == 4).await;
    world.sighted(A).await;
    let asked = world.mock.requests().len();
    assert_eq!(asked, 4);
    world.observe(A, 1).await;
    world.observe(A, 2).await;
    // A fence: a later attacker's lookup shows the two sightings were handled.
    world.observe(B, 0).await;
    world.row_when(B, |r| r.providers_ok.len() == 4).await;
    let to_a = world.mock.requests().iter().filter(|r| r.ip == A).count();
    assert_eq!(to_a, 3, "the valid row answered both sightings");

    world
        .clock
        .advance(TimeDelta::hours(24) + TimeDelta::minutes(1));
    let refreshed = world.row_when(A, |r| r.cached_at != first.cached_at).await;
    intel.stop().await;
    assert_eq!(refreshed.uuid, first.uuid);
    assert_eq!(
        refreshed.cached_at,
        Some(start_time() + TimeDelta::hours(24) + TimeDelta::minutes(1))
    );
    assert_eq!(
        world.mock.requests().iter().filter(|r| r.ip == A).count(),
        6
    );
    // Same verdict, same digest: the refresh's message carries the first one's id.
    assert_eq!(refreshed.verdict_digest, first.verdict_digest);
    let ids: Vec<String> = world
        .messages("EVENTS", "attacker.intel.enriched")
        .await
        .into_iter()
        .map(|(h, _)| h)
        .filter(|h| h.contains(&uuid_of(A).to_string()))
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "the stream dropped the repeated msg id: {ids:?}"
    );
}

#[tokio::test]
async fn private_addresses_never_reach_a_provider() {
    let world = World::new().await;
    let intel = world.start(world.config()).await;
    let private = [
        "10.0.0.5",
        "192.168.1.20",
        "127.0.0.1",
        "169.254.10.1",
        "224.0.0.251",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fd12:3456::1",
    ];
    for ip in private {
        world.observe(ip, 0).await;
    }
    world.observe(A, 0).await;
    world.row_when(A, |r| r.providers_ok.len() == 4).await;
    for ip in private {
        let row = world.row_when(ip, |_| true).await;
        assert_eq!(row.last_error.as_deref(), Some("not_public"), "{ip}");
        assert_eq!(row.providers_ok.len() + row.providers_failed.len(), 0);
    }
    intel.stop().await;
    let asked: Vec<String> = world.mock.requests().into_iter().map(|r| r.ip).collect();
    assert_eq!(asked.iter().filter(|ip| ip.as_str() == A).count(), 3);
    assert!(asked.iter().all(|ip| ip.is_empty() || ip == A), "{asked:?}");
    assert_eq!(world.enriched_n(1).await[0].attacker_ip.as_str(), A);
}

#[tokio::test]
async fn poison_goes_to_the_dlq_and_the_service_keeps_going() {
    let world = World::new().await;
    let intel = world.start(world.config()).await;
    world.publish_raw("not json".into(), "bad-1").await;
    world
        .publish_raw(r#"{"attacker_ip":"Unknown"}"#.into(), "bad-2")
        .await;
    world.observe(A, 0).await;
    world.row_when(A, |r| r.providers_ok.len() == 4).await;
    let dead = until("two dead letters", async || {
        let got = world.messages("DLQ", "decnet.dlq.intel").await;
        (got.len() == 2).then_some(got)
    })
    .await;
    intel.stop().await;
    assert!(
        dead[0].0.contains("decode_error: not JSON"),
        "{}",
        dead[0].0
    );
    assert_eq!(dead[0].1, b"not json");
    assert!(
        dead[1]
            .0
            .contains("schema_error: attacker_ip: not an address"),
        "{}",
        dead[1].0
    );
}

#[tokio::test]
async fn requests_to_one_provider_are_spaced_by_its_interval() {
    let world = World::new().await;
    let mut config = world.config();
    config.greynoise.min_interval = Duration::from_millis(300);
    let ips = [
        "203.0.113.1",
        "203.0.113.2",
        "203.0.113.3",
        "203.0.113.4",
        "203.0.113.5",
    ];
    // Published first, so one fetch hands the service all five lookups at once.
    for ip in ips {
        world.observe(ip, 0).await;
    }
    let intel = world.start(config).await;
    for ip in ips {
        world.row_when(ip, |r| r.providers_ok.len() == 4).await;
    }
    intel.stop().await;
    let mut at: Vec<_> = world.mock.to("greynoise").iter().map(|r| r.at).collect();
    at.sort();
    assert_eq!(at.len(), 5);
    // Starts are spaced exactly; arrivals carry each connection's own latency, so single
    // gaps may shrink by that jitter while the whole run cannot.
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    for gap in &gaps {
        assert!(*gap >= Duration::from_millis(200), "gaps {gaps:?}");
    }
    assert!(
        at[4] - at[0] >= Duration::from_millis(1150),
        "gaps {gaps:?}"
    );
    // AbuseIPDB, with no interval configured here, is not held back by GreyNoise's.
    let mut abuse_at: Vec<_> = world.mock.to("abuseipdb").iter().map(|r| r.at).collect();
    abuse_at.sort();
    assert!(
        abuse_at[4] - abuse_at[0] < Duration::from_millis(600),
        "{abuse_at:?}"
    );
    // Five lookups, one blocklist download: Feodo is matched locally, never asked per attacker.
    let feed = world.mock.to("feodo");
    assert_eq!((feed.len(), feed[0].query.as_deref()), (1, None));
}

#[tokio::test]
async fn a_429_with_retry_after_2_pauses_that_provider_for_2_seconds() {
    let world = World::new().await;
    let mut config = world.config();
    config.poll_interval = Duration::from_secs(1);
    world
        .mock
        .queue("greynoise", Reply::TooMany(Some("2".into())));
    world.mock.set(
        "greynoise",
        A,
        Reply::Json(200, grey(A, "malicious", true, false)),
    );
    let intel = world.start(config).await;
    world.observe(A, 0).await;
    let a = world.row_when(A, |r| r.providers_failed.len() == 1).await;
    let pause_end = start_time() + TimeDelta::seconds(2);
    assert_eq!(a.providers_failed[0].error, "HTTP 429");
    assert_eq!(
        (a.greynoise_record.retry_at, a.retry_at),
        (Some(pause_end), Some(pause_end))
    );
    // During the pause GreyNoise is skipped, not asked.
    world.observe(B, 0).await;
    let b = world.row_when(B, |r| !r.providers_skipped.is_empty()).await;
    assert_eq!(b.providers_skipped, vec!["greynoise"]);
    assert_eq!(b.greynoise_record.retry_at, Some(pause_end));
    assert_eq!(world.mock.to("greynoise").len(), 1);

    world.clock.advance(TimeDelta::seconds(2));
    let a = world
        .row_when(A, |r| r.greynoise.classification.is_some())
        .await;
    let b = world
        .row_when(B, |r| r.greynoise.classification.is_some())
        .await;
    intel.stop().await;
    assert_eq!(a.greynoise.classification.as_deref(), Some("malicious"));
    assert_eq!(b.greynoise.classification.as_deref(), Some("unknown"));
    assert_eq!((a.retry_at, b.retry_at), (None, None));
    assert_eq!(world.mock.to("greynoise").len(), 3);
    // The retries asked GreyNoise only.
    assert_eq!(world.mock.to("abuseipdb").len(), 2);
}

#[tokio::test]
async fn a_daily_quota_of_n_lets_exactly_n_abuseipdb_requests_out_and_the_rest_complete_after_the_reset_across_a_restart()
 {
    quota_over_a_reset(World::new().await).await;
}

#[tokio::test]
async fn the_daily_quota_holds_the_same_way_on_postgresql() {
    let Some(pg) = decnet_test_support::FreshPostgres::create("the PostgreSQL quota test").await
    else {
        return;
    };
    let world = World::with_database(tempfile::tempdir().unwrap(), pg.url.clone()).await;
    quota_over_a_reset(world).await;
    pg.remove().await;
}

/// N + 10 attackers with a daily quota of N, then a new process after the reset.
async fn quota_over_a_reset(world: World) {
    // At least 10, so the deferred lookups all fit in the next day's quota.
    const N: i64 = 12;
    let mut config = world.config();
    config.abuseipdb.daily_quota = Some(N);
    let ips: Vec<String> = (1..=N + 10).map(|i| format!("203.0.113.{i}")).collect();
    // The first request fails: it counts toward the quota all the same.
    world
        .mock
        .queue("abuseipdb", Reply::Text(500, "{\"errors\":[]}".into()));
    let intel = world.start(config.clone()).await;
    for ip in &ips {
        world.observe(ip, 0).await;
    }
    for ip in &ips {
        world.row_when(ip, |r| r.providers_ok.len() >= 3).await;
    }
    intel.stop().await;
    let day = start_time().date_naive();
    assert_eq!(world.mock.to("abuseipdb").len(), N as usize);
    assert_eq!(
        world.db.intel_quota_used("abuseipdb", day).await.unwrap(),
        N
    );
    let reset = Utc.with_ymd_and_hms(2026, 12, 5, 0, 0, 0).unwrap();
    let mut deferred = Vec::new();
    for ip in &ips {
        let row = world.db.attacker_intel(uuid_of(ip)).await.unwrap().unwrap();
        if row.providers_skipped == ["abuseipdb"] {
            assert_eq!(
                (row.abuseipdb_record.retry_at, row.retry_at),
                (Some(reset), Some(reset))
            );
            deferred.push(ip.clone());
        }
    }
    assert_eq!(deferred.len(), 10);

    // A new process after the reset: its first timer run completes every deferred lookup.
    world
        .clock
        .advance(TimeDelta::hours(4) + TimeDelta::seconds(30));
    let intel = world.start(config).await;
    for ip in &deferred {
        let row = world.row_when(ip, |r| r.abuseipdb.score.is_some()).await;
        assert_eq!(
            (row.retry_at, row.providers_ok.clone()),
            (None, vec!["abuseipdb".to_owned()])
        );
    }
    intel.stop().await;
    assert_eq!(world.mock.to("abuseipdb").len(), N as usize + 10);
    let next_day = reset.date_naive();
    assert_eq!(
        world
            .db
            .intel_quota_used("abuseipdb", next_day)
            .await
            .unwrap(),
        10
    );
    let abuse_asked: Vec<String> = world
        .mock
        .to("abuseipdb")
        .into_iter()
        .map(|r| r.ip)
        .collect();
    let mut distinct = abuse_asked.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), abuse_asked.len(), "no address asked twice");
}

/// Logs are captured on this thread: a current-thread runtime keeps every task on it.
#[tokio::test]
async fn keys_never_appear_in_logs_errors_rows_events_or_metrics() {
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let sink = std::sync::Arc::clone(&logs);
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || LogWriter(std::sync::Arc::clone(&sink)))
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let world = World::new().await;
    let config = world.config();
    assert!(!format!("{config:?}").contains(ABUSE_KEY));
    world.mock.set(
        "abuseipdb",
        A,
        Reply::Text(
            401,
            format!("{{\"errors\":[{{\"detail\":\"bad key {ABUSE_KEY}\"}}]}}"),
        ),
    );
    world.mock.set("greynoise", A, Reply::TooMany(None));
    world.mock.set(
        "threatfox",
        A,
        Reply::Json(200, json!({"query_status": "unknown_auth_key"})),
    );
    world
        .mock
        .set("abuseipdb", B, Reply::Json(200, abuse(B, 10, &[])));
    let intel = world.start(config).await;
    world.observe(A, 0).await;
    world.observe(B, 0).await;
    let a = world.row_when(A, |r| r.providers_failed.len() == 3).await;
    world.row_when(B, |r| !r.providers_ok.is_empty()).await;
    let metrics = intel.ops.metrics();
    intel.stop().await;

    let errors: Vec<&str> = a
        .providers_failed
        .iter()
        .map(|f| f.error.as_str())
        .collect();
    assert_eq!(
        errors,
        vec!["HTTP 401", "HTTP 429", "query_status \"unknown_auth_key\""]
    );
    let rows = format!(
        "{a:?} {:?}",
        world.db.attacker_intel(uuid_of(B)).await.unwrap()
    );
    let events = format!(
        "{:?}",
        world.messages("EVENTS", "attacker.intel.enriched").await
    );
    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("intel started"), "the capture works: {logs}");
    for key in [ABUSE_KEY, GREY_KEY, FOX_KEY] {
        for (what, text) in [
            ("logs", &logs),
            ("rows", &rows),
            ("events", &events),
            ("metrics", &metrics),
        ] {
            assert!(!text.contains(key), "{key} in {what}");
        }
    }
    assert!(
        metrics.contains(
            "decnet_intel_requests_total{provider=\"greynoise\",outcome=\"rate_limited\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("decnet_intel_limiter_wait_seconds_count{provider=\"abuseipdb\"} 2"),
        "{metrics}"
    );
}

struct LogWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn failed_and_429_requests_count_toward_the_quota_which_holds_across_a_restart() {
    let world = World::new().await;
    let mut config = world.config();
    config.abuseipdb.daily_quota = Some(3);
    let ips = ["203.0.113.31", "203.0.113.32", "203.0.113.33"];
    world
        .mock
        .queue("abuseipdb", Reply::TooMany(Some("1".into())));
    let intel = world.start(config.clone()).await;
    world.observe(ips[0], 0).await;
    let first = world
        .row_when(ips[0], |r| !r.providers_failed.is_empty())
        .await;
    assert_eq!(first.providers_failed[0].error, "HTTP 429");
    world.clock.advance(TimeDelta::seconds(2));
    world.observe(ips[1], 0).await;
    world
        .row_when(ips[1], |r| r.abuseipdb.score.is_some())
        .await;
    intel.stop().await;
    let day = start_time().date_naive();
    assert_eq!(
        world.db.intel_quota_used("abuseipdb", day).await.unwrap(),
        2
    );

    // Same day, new process: its first timer run redoes the 429'd lookup with the last
    // request of the quota, and the next attacker finds the quota spent.
    let intel = world.start(config).await;
    world
        .row_when(ips[0], |r| r.abuseipdb.score.is_some())
        .await;
    world.observe(ips[2], 0).await;
    let last = world
        .row_when(ips[2], |r| !r.providers_skipped.is_empty())
        .await;
    intel.stop().await;
    assert_eq!(last.providers_skipped, vec!["abuseipdb"]);
    let reset = Utc.with_ymd_and_hms(2026, 12, 5, 0, 0, 0).unwrap();
    assert_eq!(last.abuseipdb_record.retry_at, Some(reset));
    assert_eq!(
        world.db.intel_quota_used("abuseipdb", day).await.unwrap(),
        3
    );
    let asked: Vec<String> = world
        .mock
        .to("abuseipdb")
        .into_iter()
        .map(|r| r.ip)
        .collect();
    assert_eq!(asked, vec![ips[0], ips[1], ips[0]]);
}

#[tokio::test]
async fn disabled_it_consumes_and_acknowledges_without_calling_out() {
    let world = World::new().await;
    let mut config = world.config();
    config.enabled = false;
    let intel = world.start(config).await;
    world.observe(A, 0).await;
    world.observe(B, 0).await;
    let stream = world.js.get_stream("EVENTS").await.unwrap();
    until("both sightings acknowledged", async || {
        let info = stream.consumer_info("intel").await.ok()?;
        let settled = info.delivered.stream_sequence >= 2 && info.num_ack_pending == 0;
        settled.then_some(())
    })
    .await;
    intel.stop().await;
    assert!(world.mock.requests().is_empty());
    assert_eq!(world.db.attacker_intel(uuid_of(A)).await.unwrap(), None);
}

#[tokio::test]
async fn a_database_outage_naks_and_the_lookup_completes_once_it_is_back() {
    let Some(pg) = decnet_test_support::FreshPostgres::create("the database outage test").await
    else {
        return;
    };
    let server = pg.authority.rsplit('@').next().unwrap().to_owned();
    let proxy = decnet_test_support::TcpProxy::start(server.parse().unwrap()).unwrap();
    let url = pg
        .url
        .replace(&server, &format!("127.0.0.1:{}", proxy.port()));
    let world = World::with_database(tempfile::tempdir().unwrap(), url).await;
    let intel = world.start(world.config()).await;

    proxy.cut();
    world.observe(A, 0).await;
    let stream = world.js.get_stream("EVENTS").await.unwrap();
    until("a redelivery", async || {
        let info = stream.consumer_info("intel").await.ok()?;
        (info.delivered.consumer_sequence >= 2).then_some(())
    })
    .await;
    assert!(
        world.mock.requests().is_empty(),
        "nothing asked while the row cannot be read"
    );
    proxy.restore();
    let row = world.row_when(A, |r| r.providers_ok.len() == 4).await;
    intel.stop().await;
    assert_eq!(row.attacker_ip, A);
    assert!(world.messages("DLQ", "decnet.dlq.intel").await.is_empty());
    assert_eq!(
        world.mock.requests().iter().filter(|r| r.ip == A).count(),
        3
    );
    world.db.close().await;
    pg.remove().await;
}
