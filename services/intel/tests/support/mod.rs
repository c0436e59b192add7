//! A world for the intel service's tests: a private `nats-server`, a SQLite file, the mock
//! providers, a manual clock, and instances of the service started and stopped at will.

#![allow(dead_code, unreachable_pub)]

pub mod mock;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use decnet_intel::clock::ManualClock;
use decnet_intel::{IntelConfig, Secret};
use decnet_ops::Ops;
use decnet_proto::payload::attacker::IntelEnriched;
use decnet_storage::{AttackerSighting, Database, IntelRow, Options};
use decnet_test_support::NatsServer;
use futures_util::StreamExt;
use tokio::sync::watch;
use uuid::Uuid;

pub use mock::{Mock, Reply};

/// Keys the tests configure; none may ever show outside the request headers.
pub const ABUSE_KEY: &str = "abuse-K3Y-0f5e7c";
pub const GREY_KEY: &str = "grey-K3Y-9a1b2c";
pub const FOX_KEY: &str = "fox-K3Y-77d0e1";

/// How long a test waits for something that should happen.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub struct World {
    pub nats: NatsServer,
    pub dir: tempfile::TempDir,
    pub database_url: String,
    pub db: Database,
    pub js: jetstream::Context,
    pub mock: Mock,
    pub clock: ManualClock,
}

/// 2026-12-04 20:00 UTC: four hours before a quota day ends.
pub fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, 20, 0, 0).unwrap()
}

impl World {
    pub async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("decnet.db").display());
        World::with_database(dir, url).await
    }

    pub async fn with_database(dir: tempfile::TempDir, database_url: String) -> World {
        let nats = NatsServer::start().unwrap();
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = jetstream::new(client);
        decnet_bus::ensure_streams(&js, &["EVENTS", "DLQ"])
            .await
            .unwrap();
        let db = Database::connect(&database_url, &Options::default())
            .await
            .unwrap();
        World {
            nats,
            dir,
            database_url,
            db,
            js,
            mock: Mock::start().await,
            clock: ManualClock::new(start_time()),
        }
    }

    /// Every provider at the mock with a key, no spacing, short timeouts, the manual clock.
    pub fn config(&self) -> IntelConfig {
        let mut c =
            IntelConfig::local(&self.nats.url(), &self.database_url, &self.mock.url()).unwrap();
        c.abuseipdb.key = Some(Secret::new(ABUSE_KEY));
        c.greynoise.key = Some(Secret::new(GREY_KEY));
        c.threatfox.key = Some(Secret::new(FOX_KEY));
        for p in decnet_intel::Provider::ALL {
            if p != decnet_intel::Provider::Feodo {
                c.settings_mut(p).min_interval = Duration::ZERO;
            }
        }
        c.request_timeout = Duration::from_millis(500);
        c.feed_timeout = Duration::from_millis(500);
        c.fetch_wait = Duration::from_millis(200);
        c.nak_delays = vec![Duration::from_millis(200)];
        c.clock = Arc::new(self.clock.clone());
        c
    }

    pub async fn start(&self, config: IntelConfig) -> Instance {
        let ops = Ops::new();
        let (stop, shutdown) = watch::channel(false);
        let handle = {
            let ops = Arc::clone(&ops);
            tokio::spawn(async move { decnet_intel::run_with(&config, &ops, shutdown).await })
        };
        let start = tokio::time::Instant::now();
        while !ops.readiness().0 {
            assert!(start.elapsed() < PATIENCE, "intel never got ready");
            assert!(!handle.is_finished(), "intel stopped during start-up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Instance { ops, stop, handle }
    }

    /// Publish `attacker.observed` for `ip`; `n` makes the msg id new (a second sighting).
    pub async fn observe(&self, ip: &str, n: u32) {
        let body = serde_json::json!({"attacker_ip": ip, "service": "ssh", "decky": "decoy-01"});
        self.publish_raw(
            Bytes::from(body.to_string()),
            &format!("attacker.observed:{ip}:{n}"),
        )
        .await;
    }

    pub async fn publish_raw(&self, body: Bytes, msg_id: &str) {
        decnet_bus::publish(
            &self.js,
            "attacker.observed",
            msg_id,
            &[("decnet-schema-version".to_owned(), "1".to_owned())].into(),
            body,
        )
        .await
        .unwrap();
    }

    /// Record the attacker as the tagger would, seen now on the test clock.
    pub async fn sighted(&self, ip: &str) {
        use decnet_intel::clock::Clock;
        let sighting = AttackerSighting {
            uuid: uuid_of(ip),
            ip: Some(ip.to_owned()),
            seen_at: self.clock.now(),
        };
        self.db
            .write_tags("tagger", &[sighting], &[], |_| Vec::new())
            .await
            .unwrap();
    }

    /// The row of `ip`'s attacker once `done` holds.
    pub async fn row_when(&self, ip: &str, done: impl Fn(&IntelRow) -> bool) -> IntelRow {
        let start = tokio::time::Instant::now();
        loop {
            let row = self.db.attacker_intel(uuid_of(ip)).await.unwrap();
            if let Some(row) = row.filter(|r| done(r)) {
                return row;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "the row of {ip} never got there"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every message of `stream` on `subject`, as (headers, body).
    pub async fn messages(&self, stream: &str, subject: &str) -> Vec<(String, Vec<u8>)> {
        let stream = self.js.get_stream(stream).await.unwrap();
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::Config {
                filter_subject: subject.to_owned(),
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ack_policy: jetstream::consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut out = Vec::new();
        let mut batch = consumer
            .fetch()
            .max_messages(1000)
            .expires(Duration::from_millis(300))
            .messages()
            .await
            .unwrap();
        while let Some(Ok(m)) = batch.next().await {
            let headers = m
                .headers
                .as_ref()
                .map(|h| format!("{h:?}"))
                .unwrap_or_default();
            out.push((headers, m.payload.to_vec()));
        }
        out
    }

    /// Every `attacker.intel.enriched` so far.
    pub async fn enriched(&self) -> Vec<IntelEnriched> {
        self.messages("EVENTS", "attacker.intel.enriched")
            .await
            .into_iter()
            .map(|(_, body)| serde_json::from_slice(&body).unwrap())
            .collect()
    }

    /// Wait until `n` announcements are on EVENTS, then a little longer to see no more come.
    pub async fn enriched_n(&self, n: usize) -> Vec<IntelEnriched> {
        let start = tokio::time::Instant::now();
        loop {
            let got = self.enriched().await;
            if got.len() >= n {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let got = self.enriched().await;
                assert_eq!(got.len(), n, "announcements: {got:#?}");
                return got;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "waited for {n} announcements, have {got:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The attacker uuid the service derives from an address.
pub fn uuid_of(ip: &str) -> Uuid {
    decnet_ttp::anchor::attacker_uuid_for_ip(ip).unwrap()
}

pub struct Instance {
    pub ops: Arc<Ops>,
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<Result<(), decnet_intel::IntelError>>,
}

impl Instance {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(PATIENCE, self.handle)
            .await
            .expect("intel stops")
            .unwrap()
            .unwrap();
    }
}

/// Wait until `check` returns something.
pub async fn until<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < PATIENCE, "waited too long for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
