//! A rule store and tagger rule feeds in one process against a real nats-server, for the
//! swarm tests and the reload benchmark.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use decnet_ops::Ops;
use decnet_rulestore::{Clock, RulestoreConfig, SystemClock};
use decnet_tagger::TaggerMetrics;
use decnet_tagger::feed::{FeedStatus, RuleFeed, RuleSet};
use decnet_test_support::NatsServer;
use decnet_ttp::RuleIndex;
use decnet_ttp::rule::RuleDef;
use decnet_ttp::state::RuleMode;
use tempfile::TempDir;
use tokio::sync::watch;

/// The repository's rule pack.
pub fn shipped_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/ttp")
}

/// A copy of the shipped pack (rule files and data tables) in a fresh directory.
pub fn copy_pack(into: &Path) {
    decnet_test_support::copy_dir(&shipped_rules(), into).unwrap();
}

/// A rule text with `prefix` put before its (single-quoted) description: a change that needs
/// no version bump.
pub fn describe(text: &str, prefix: &str) -> String {
    assert!(
        text.contains("\ndescription: '"),
        "a single-quoted description"
    );
    text.replacen("\ndescription: '", &format!("\ndescription: '{prefix} "), 1)
}

/// A rule store running in this process.
pub struct Store {
    pub ops: Arc<Ops>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), decnet_rulestore::RulestoreError>>,
}

impl Store {
    /// Start a store on `dir` and wait until it is ready.
    pub async fn start(nats: &str, database_url: &str, dir: &Path, clock: Arc<dyn Clock>) -> Store {
        let mut config = RulestoreConfig::new(nats, database_url, dir.to_path_buf());
        config.clock = clock;
        config.connect_patience = Duration::from_secs(5);
        let ops = Ops::new();
        let (stop, shutdown) = watch::channel(false);
        let task = {
            let ops = Arc::clone(&ops);
            tokio::spawn(async move { decnet_rulestore::run_with(&config, &ops, shutdown).await })
        };
        let store = Store { ops, stop, task };
        store.wait_ready().await;
        store
    }

    async fn wait_ready(&self) {
        for _ in 0..400 {
            if self.ops.readiness().0 {
                return;
            }
            assert!(
                !self.task.is_finished(),
                "the rule store stopped: {}",
                self.ops.readiness().1
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the rule store is not ready: {}", self.ops.readiness().1);
    }

    /// A metric line's value from the store's `/metrics`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.ops
            .metrics()
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
    }

    /// Stop the store and wait for it to finish.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap().unwrap();
    }
}

/// Everything one swarm test needs: a server, a database, a rules directory.
pub struct Swarm {
    pub nats: NatsServer,
    pub js: jetstream::Context,
    pub client: async_nats::Client,
    pub dir: PathBuf,
    pub database_url: String,
    _tmp: TempDir,
}

impl Swarm {
    /// A server, a SQLite file and a copy of the shipped pack.
    pub async fn new() -> Swarm {
        Swarm::with_database(None).await
    }

    /// A server, the given database (a SQLite file when `None`) and a copy of the pack.
    pub async fn with_database(database_url: Option<String>) -> Swarm {
        // `DECNET_TEST_LOG=info` shows what the store and the feeds did.
        if let Ok(filter) = std::env::var("DECNET_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let nats = NatsServer::start().expect("nats-server starts");
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path().join("rules");
        copy_pack(&dir);
        let database_url = database_url
            .unwrap_or_else(|| format!("sqlite://{}", tmp.path().join("decnet.db").display()));
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = jetstream::new(client.clone());
        Swarm {
            nats,
            js,
            client,
            dir,
            database_url,
            _tmp: tmp,
        }
    }

    /// Start the store on the system clock.
    pub async fn store(&self) -> Store {
        self.store_with(Arc::new(SystemClock)).await
    }

    /// Start the store on `clock`.
    pub async fn store_with(&self, clock: Arc<dyn Clock>) -> Store {
        Store::start(&self.nats.url(), &self.database_url, &self.dir, clock).await
    }

    /// A tagger's rule feed following RULES, caught up.
    pub async fn feed(&self) -> RuleFeed {
        let feed = RuleFeed::start(
            self.js.clone(),
            RuleSet::from_stream(),
            TaggerMetrics::default(),
        );
        tokio::time::timeout(
            Duration::from_secs(10),
            feed.ready(decnet_tagger::feed::Definitions::Stream),
        )
        .await
        .expect("the feed loads the retained rules");
        feed
    }

    /// Write a rule file the way an editor that writes a temporary and renames it does.
    pub fn save(&self, rule_id: &str, text: &str) {
        let tmp = self.dir.join(format!(".{rule_id}.yaml.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.dir.join(format!("{rule_id}.yaml"))).unwrap();
    }

    /// A rule file's text.
    pub fn read(&self, rule_id: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{rule_id}.yaml"))).unwrap()
    }

    /// Send a state request and return the reply's body or its error headers.
    pub async fn request(
        &self,
        subject: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, (String, String)> {
        let reply = tokio::time::timeout(
            Duration::from_secs(5),
            self.client.request(
                subject.to_owned(),
                serde_json::to_vec(&body).unwrap().into(),
            ),
        )
        .await
        .expect("the store answers")
        .expect("the request is delivered");
        if let Some(h) = &reply.headers
            && let Some(message) = h.get("Nats-Service-Error")
        {
            let code = h
                .get("Nats-Service-Error-Code")
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default();
            return Err((code, message.as_str().to_owned()));
        }
        Ok(serde_json::from_slice(&reply.payload).unwrap())
    }
}

/// Wait until `check` holds for a feed's index (re-checked after each applied change).
pub async fn wait_for(feed: &RuleFeed, what: &str, check: impl Fn(&RuleIndex) -> bool) {
    let mut status = feed.status();
    let index = feed.index();
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if check(&index.load()) {
                return;
            }
            if status.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(
        waited.is_ok() && check(&index.load()),
        "a feed never saw {what}"
    );
}

/// A rule's definition and mode in a feed's live index.
pub fn rule_in(feed: &RuleFeed, rule_id: &str) -> Option<(RuleDef, RuleMode)> {
    feed.index()
        .load()
        .get(rule_id)
        .map(|(d, m)| (d.clone(), m))
}

/// The feed's status now.
pub fn status(feed: &RuleFeed) -> FeedStatus {
    feed.status().borrow().clone()
}
