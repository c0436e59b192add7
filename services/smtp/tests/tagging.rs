//! The decoy and the tagger together (issue 7): crafted phishing and masquerade messages sent
//! over SMTP come out as the email rules' tags, including R0047, whose body keywords the
//! tagger can only see by reading the message from the `QUARANTINE` bucket.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::{Client, Decoy, config, send_message, until};
use decnet_ops::Ops;
use decnet_smtp::Mode;
use decnet_storage::{Database, Options};
use decnet_tagger::TaggerConfig;
use decnet_test_support::NatsServer;
use tokio::sync::watch;

fn corpus(name: &str) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crates/mail/tests/corpus");
    std::fs::read(dir.join(name)).unwrap()
}

/// The real tagger on the shipped pack, on SQLite under `dir`, ready.
struct Tagger {
    url: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), decnet_tagger::TaggerError>>,
}

impl Tagger {
    async fn start(nats: &NatsServer, dir: &Path) -> Tagger {
        let url = format!("sqlite://{}", dir.join("decnet.db").display());
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/ttp");
        let config = TaggerConfig::new(&nats.url(), &url, Some(rules));
        let ops = Ops::new();
        let (stop, shutdown) = watch::channel(false);
        let task = {
            let ops = Arc::clone(&ops);
            tokio::spawn(async move { decnet_tagger::run_with(&config, &ops, shutdown).await })
        };
        until("the tagger", 30, async || ops.readiness().0.then_some(())).await;
        Tagger { url, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_phishing_and_masquerade_mail_is_tagged_by_the_email_rules() {
    let nats = NatsServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let tagger = Tagger::start(&nats, tmp.path()).await;
    let url = tagger.url.clone();
    let decoy = Decoy::start(config(Mode::Relay, &nats.url(), &tmp.path().join("q"))).await;
    decoy.ready().await;

    // The envelope sender matches each From domain, so only what the message itself says
    // is a masquerade.
    let cases = [
        ("idn_url.eml", "news@shop.example.com"),
        ("macro_docm.eml", "billing@vendor.example"),
        ("return_path_mismatch.eml", "service@paypal.example"),
        ("bec.eml", "mark.boss@c0rp.example"),
    ];
    let mut names = BTreeMap::new();
    for (file, from) in cases {
        let message = corpus(file);
        let id = send_message(decoy.addr, from, &["victim@corp.example.com"], &message).await;
        names.insert(id, file);
    }
    let db = Database::connect(&url, &Options::default()).await.unwrap();
    let stored: Vec<String> = decoy.stored();
    assert_eq!(stored.len(), 4);
    until("the tags of four messages", 30, async || {
        let tags = db.tags().await.unwrap();
        let sources: std::collections::BTreeSet<_> =
            tags.iter().map(|t| t.source_id.clone()).collect();
        (sources.len() == 4).then_some(())
    })
    .await;
    // Give a late tag the chance to show up before the exact comparison.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let tags = db.tags().await.unwrap();
    let file_of = |source_id: &str| {
        names
            .iter()
            .find(|(id, _)| source_id.ends_with(&format!("_{id}.eml")))
            .map(|(_, f)| *f)
    };
    let mut by_file: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for t in &tags {
        assert!(stored.contains(&t.source_id), "{}", t.source_id);
        let file = file_of(&t.source_id)
            .unwrap_or_else(|| panic!("a tag of an unknown message: {}", t.source_id));
        let technique = t
            .sub_technique_id
            .clone()
            .unwrap_or_else(|| t.technique_id.clone());
        by_file.entry(file).or_default().push(format!(
            "{} {}/{technique}@{}",
            t.rule_id, t.tactic, t.confidence
        ));
    }
    for v in by_file.values_mut() {
        v.sort();
    }
    let expected: BTreeMap<&str, Vec<String>> = [
        (
            "bec.eml",
            vec!["R0045 TA0005/T1036@0.85", "R0047 TA0001/T1566.003@0.85"],
        ),
        (
            "idn_url.eml",
            vec![
                "R0044 TA0001/T1566.002@0.9",
                "R0044 TA0005/T1036.005@0.9",
                "R0045 TA0005/T1036@0.85",
            ],
        ),
        (
            "macro_docm.eml",
            vec![
                "R0045 TA0005/T1036@0.85",
                "R0046 TA0001/T1566.001@0.9",
                "R0046 TA0002/T1204.002@0.9",
            ],
        ),
        ("return_path_mismatch.eml", vec!["R0045 TA0005/T1036@0.85"]),
    ]
    .into_iter()
    .map(|(f, v)| (f, v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(by_file, expected);
    // R0045 says why: the Return-Path disagrees with From, and no signature either way.
    let masquerade = tags
        .iter()
        .find(|t| t.rule_id == "R0045" && file_of(&t.source_id) == Some("return_path_mismatch.eml"))
        .unwrap();
    assert_eq!(
        masquerade.evidence["matched_signals"],
        serde_json::json!(["from_returnpath_mismatch", "dkim_missing", "spf_fail"])
    );
    // The body's words were read, never stored.
    let bec = tags.iter().find(|t| t.rule_id == "R0047").unwrap();
    assert_eq!(
        bec.evidence["matched_body_kw"],
        serde_json::json!(["send", "transfer", "update banking", "confidential"])
    );
    let text =
        serde_json::to_string(&tags.iter().map(|t| &t.evidence).collect::<Vec<_>>()).unwrap();
    assert!(!text.contains("Hi Anna"), "{text}");

    tagger.stop().await;
    decoy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_harvester_login_storm_is_tagged_as_brute_force_and_password_guessing() {
    let nats = NatsServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let tagger = Tagger::start(&nats, tmp.path()).await;
    let url = tagger.url.clone();
    let decoy = Decoy::start(config(Mode::Harvester, &nats.url(), &tmp.path().join("q"))).await;
    decoy.ready().await;

    let mut c = Client::connect(decoy.addr).await;
    c.line().await;
    c.say("HELO spray").await;
    use base64::Engine;
    for password in [
        "123456", "password", "admin", "qwerty", "letmein", "welcome",
    ] {
        let plain =
            base64::engine::general_purpose::STANDARD.encode(format!("\0admin\0{password}"));
        assert!(
            c.say(&format!("AUTH PLAIN {plain}"))
                .await
                .starts_with("535 ")
        );
    }
    c.say("QUIT").await;

    let db = Database::connect(&url, &Options::default()).await.unwrap();
    until("two tags", 30, async || {
        let tags = db.tags().await.unwrap();
        (tags.len() >= 2).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut got: Vec<String> = db
        .tags()
        .await
        .unwrap()
        .iter()
        .map(|t| {
            let technique = t
                .sub_technique_id
                .clone()
                .unwrap_or_else(|| t.technique_id.clone());
            format!(
                "{} {}/{technique} {}",
                t.rule_id,
                t.tactic,
                t.decky_id.as_deref().unwrap_or("-")
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "R0001 TA0006/T1110 decoy-01",
            "R0002 TA0006/T1110.001 decoy-01",
        ]
    );
    // The passwords were tagging input only.
    let evidence = serde_json::to_string(
        &db.tags()
            .await
            .unwrap()
            .iter()
            .map(|t| &t.evidence)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(!evidence.contains("letmein"), "{evidence}");
    tagger.stop().await;
    decoy.stop().await;
}
