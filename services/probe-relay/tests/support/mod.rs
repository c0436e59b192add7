//! What probe-relay's end-to-end tests share: a private nats-server, a database, running
//! instances, the decoy's side (objects in `QUARANTINE`, `smtp.probe.pending` on `PROBES`)
//! and the announcements on `EVENTS`.

#![allow(dead_code, reason = "each test file uses its own part of the harness")]

pub(crate) mod sink;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use decnet_ops::Ops;
use decnet_probe_relay::{ProbeRelayConfig, RelayConfig};
use decnet_proto::payload::smtp::ProbeRelayed;
use decnet_storage::{Database, Options, ProbeRelayRow};
use decnet_test_support::NatsServer;
use futures_util::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

/// Every wait in these tests ends.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// One test's world.
pub(crate) struct World {
    pub(crate) nats: NatsServer,
    pub(crate) js: jetstream::Context,
    pub(crate) database_url: String,
    pub(crate) db: Database,
    pub(crate) dir: tempfile::TempDir,
}

impl World {
    /// NATS and SQLite in a temporary directory.
    pub(crate) async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("decnet.db").display());
        World::with_database(dir, url).await
    }

    /// NATS and the database at `database_url`.
    pub(crate) async fn with_database(dir: tempfile::TempDir, database_url: String) -> World {
        let nats = NatsServer::start().unwrap();
        let client = decnet_bus::connect(&nats.url(), "probe-relay-test", Duration::from_secs(5))
            .await
            .unwrap();
        let js = jetstream::new(client);
        decnet_bus::ensure_streams(&js, &["PROBES", "EVENTS", "DLQ"])
            .await
            .unwrap();
        let db = Database::connect(&database_url, &Options::default())
            .await
            .unwrap();
        World {
            nats,
            js,
            database_url,
            db,
            dir,
        }
    }

    /// A configuration file in the test directory, read.
    pub(crate) fn config(&self, text: &str) -> RelayConfig {
        let path = self.dir.path().join("probe-relay.toml");
        std::fs::write(&path, text).unwrap();
        RelayConfig::load(&path).unwrap()
    }

    /// Run an instance named `instance`, ready when this returns.
    pub(crate) async fn relay(&self, relay: RelayConfig, instance: &str) -> Instance {
        let mut config =
            ProbeRelayConfig::new(&self.nats.url(), &self.database_url, relay, instance);
        config.fetch_wait = Duration::from_millis(200);
        config.nak_delays = vec![Duration::from_millis(200)];
        self.relay_with(config).await
    }

    /// Run an instance with every setting given.
    pub(crate) async fn relay_with(&self, config: ProbeRelayConfig) -> Instance {
        let ops = Ops::new();
        let (stop, shutdown) = watch::channel(false);
        let task = {
            let ops = Arc::clone(&ops);
            tokio::spawn(async move { decnet_probe_relay::run_with(&config, &ops, shutdown).await })
        };
        let ready = async {
            while !ops.readiness().0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(PATIENCE, ready)
            .await
            .expect("probe-relay became ready");
        Instance { ops, stop, task }
    }

    /// What the decoy does for one message: the object, then the pending notice.
    pub(crate) async fn offer(&self, message: &Message<'_>) {
        let store = decnet_bus::quarantine::ensure_bucket(&self.js)
            .await
            .unwrap();
        let name = decnet_bus::quarantine::object_name(message.decky, message.stored_as);
        decnet_bus::quarantine::put(&store, &name, message.bytes)
            .await
            .unwrap();
        let id = format!("smtp.probe.pending:{}:{}", message.decky, message.stored_as);
        self.publish_pending(&message.pending(), &id).await;
    }

    /// Publish a pending notice under `msg_id`; a new id is a forced redelivery.
    pub(crate) async fn publish_pending(&self, body: &Value, msg_id: &str) {
        self.publish_raw(Bytes::from(serde_json::to_vec(body).unwrap()), msg_id)
            .await;
    }

    /// Publish any body on `smtp.probe.pending`.
    pub(crate) async fn publish_raw(&self, body: Bytes, msg_id: &str) {
        decnet_bus::publish(
            &self.js,
            "smtp.probe.pending",
            msg_id,
            &[("decnet-schema-version".to_owned(), "1".to_owned())].into(),
            body,
        )
        .await
        .unwrap();
    }

    /// Every `smtp.probe.relayed` on EVENTS so far, in order.
    pub(crate) async fn relayed_now(&self) -> Vec<ProbeRelayed> {
        self.messages("EVENTS", "smtp.probe.relayed")
            .await
            .into_iter()
            .map(|(_, body)| serde_json::from_slice(&body).unwrap())
            .collect()
    }

    /// Every message of `stream` on `subject`: its headers as text, its body.
    pub(crate) async fn messages(&self, stream: &str, subject: &str) -> Vec<(String, Vec<u8>)> {
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

    /// Wait until `n` announcements are on EVENTS, then a little longer to see that no more
    /// come; they are returned sorted by message name.
    pub(crate) async fn relayed(&self, n: usize) -> Vec<ProbeRelayed> {
        let start = tokio::time::Instant::now();
        loop {
            let got = self.relayed_now().await;
            if got.len() >= n {
                tokio::time::sleep(Duration::from_millis(400)).await;
                let mut got = self.relayed_now().await;
                assert_eq!(got.len(), n, "announcements: {got:#?}");
                got.sort_by(|a, b| a.stored_as.cmp(&b.stored_as));
                return got;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "waited for {n} announcements, have {got:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until the row of `stored_as` on decoy-01 satisfies `done`.
    pub(crate) async fn row_when(
        &self,
        stored_as: &str,
        done: impl Fn(&ProbeRelayRow) -> bool,
    ) -> ProbeRelayRow {
        let start = tokio::time::Instant::now();
        loop {
            if let Some(row) = self.db.probe_relay("decoy-01", stored_as).await.unwrap()
                && done(&row)
            {
                return row;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "row of {stored_as} never got there"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// A running instance.
pub(crate) struct Instance {
    pub(crate) ops: Arc<Ops>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), decnet_probe_relay::ProbeRelayError>>,
}

impl Instance {
    /// SIGTERM: finish the work in hand and stop; the run must end cleanly.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        let result = tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("probe-relay stopped")
            .unwrap();
        result.unwrap();
    }

    /// A crash: the process is gone mid-work, nothing is finished.
    pub(crate) fn kill(self) {
        self.task.abort();
    }
}

/// A message as the relay-mode decoy stored and announced it.
#[derive(Debug, Clone)]
pub(crate) struct Message<'a> {
    pub(crate) decky: &'a str,
    pub(crate) stored_as: &'a str,
    pub(crate) attacker_ip: &'a str,
    pub(crate) mail_from: &'a str,
    pub(crate) rcpt: &'a [&'a str],
    pub(crate) bytes: &'a [u8],
}

impl<'a> Message<'a> {
    /// A message on decoy-01 with one recipient.
    pub(crate) fn new(stored_as: &'a str, attacker_ip: &'a str, bytes: &'a [u8]) -> Message<'a> {
        Message {
            decky: "decoy-01",
            stored_as,
            attacker_ip,
            mail_from: "spammer@bad.example",
            rcpt: &["probe@inbox.example"],
            bytes,
        }
    }

    /// Its `smtp.probe.pending` body.
    pub(crate) fn pending(&self) -> Value {
        json!({
            "decky": self.decky,
            "decky_id": self.decky,
            "attacker_ip": self.attacker_ip,
            "stored_as": self.stored_as,
            "mail_from": self.mail_from,
            "rcpt_to": self.rcpt.join(","),
            "rcpt_list": self.rcpt,
            "size_bytes": self.bytes.len(),
            "body_sha256": format!("{:x}", Sha256::digest(self.bytes)),
            "received_at": "2026-12-04T10:00:00Z",
        })
    }
}

/// A short message with a From: line.
pub(crate) fn mail(n: usize) -> Vec<u8> {
    // Every line ended, as the decoy stores a message.
    format!(
        "From: spammer@bad.example\r\nTo: probe@inbox.example\r\nSubject: test {n}\r\n\r\nrelay test {n}\r\n"
    )
    .into_bytes()
}

/// A configuration towards a plain-text sink on `port` with fast retries.
pub(crate) fn plain_config(port: u16, extra: &str) -> String {
    format!(
        "[defaults]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\ntimeout_s = 2\n\
         retry_schedule = [\"200ms\"]\n{extra}\n"
    )
}
