//! The publisher (SMTP.md §8): takes spooled jobs in receive order, puts each message into
//! the `QUARANTINE` bucket, derives its features, publishes `email.received` (and, in relay
//! mode, `smtp.probe.pending`) or `attacker.session.ended`, waits for every acknowledgement
//! and only then deletes the job. While NATS is away jobs wait, `/readyz` says so, and the
//! SMTP side keeps accepting mail.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, object_store::ObjectStore};
use decnet_bus::{BusError, connect, ensure_streams, outbox, publish, quarantine};
use decnet_ops::{Health, Readiness};
use decnet_proto::payload::attacker::{AuthAttempt, AuthResult, SessionBehaviour, SessionEnded};
use decnet_proto::payload::email::EmailReceived;
use decnet_proto::payload::smtp::ProbePending;
use decnet_proto::wire::{Decky, Hex64, Ip};
use tokio::sync::watch;

use crate::campaign::{self, Window};
use crate::config::Mode;
use crate::session::Decoy;
use crate::spool::{Job, MessageJob, SessionJob};

/// Longest wait between retries while NATS or the bucket fails.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why a job did not finish this time.
enum Failure {
    /// NATS: retry the same job later.
    Bus(BusError),
    /// The job can never finish (its message file is gone): set it aside.
    Broken(String),
}

impl From<BusError> for Failure {
    fn from(e: BusError) -> Failure {
        Failure::Bus(e)
    }
}

struct Connected {
    js: jetstream::Context,
    bucket: ObjectStore,
}

async fn connect_all(decoy: &Decoy) -> Result<Connected, BusError> {
    let client = connect(
        &decoy.config.nats_url,
        "decnet-smtp",
        Duration::from_secs(2),
    )
    .await?;
    let js = jetstream::new(client);
    ensure_streams(&js, &["EVENTS", "PROBES", "DLQ"]).await?;
    let bucket = quarantine::ensure_bucket(&js).await?;
    Ok(Connected { js, bucket })
}

/// Run until shutdown; whatever is left stays in the spool for the next start.
pub(crate) async fn run(
    decoy: Arc<Decoy>,
    mut window: Window,
    health: Arc<Health>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut bus: Option<Connected> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        if bus.is_none() {
            let attempt = tokio::select! {
                c = connect_all(&decoy) => c,
                _ = shutdown.changed() => return,
            };
            match attempt {
                Ok(c) => bus = Some(c),
                Err(e) => {
                    degraded(&decoy, &health, &format!("NATS: {e}"));
                    if wait(&mut shutdown, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
        }
        let Some(connected) = bus.as_ref() else {
            continue;
        };
        match drain(&decoy, connected, &mut window).await {
            Ok(()) => {
                backoff = Duration::from_millis(100);
                health.set(Readiness::Ready);
                decoy.metrics.jobs_pending.set(0);
                tokio::select! {
                    () = decoy.jobs.notified() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Err(e) => {
                degraded(&decoy, &health, &format!("publishing: {e}"));
                if wait(&mut shutdown, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn degraded(decoy: &Decoy, health: &Health, why: &str) {
    let waiting = decoy.spool.len();
    decoy.metrics.jobs_pending.set(waiting as i64);
    tracing::warn!(jobs = waiting, "{why}");
    health.set(Readiness::Degraded(format!(
        "{why}; {waiting} jobs waiting"
    )));
}

/// Sleep, or return true at shutdown.
async fn wait(shutdown: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}

/// Publish every job in the spool, in order; stop at the first bus failure.
async fn drain(decoy: &Decoy, bus: &Connected, window: &mut Window) -> Result<(), BusError> {
    let spool = decoy.spool.clone();
    let (jobs, bad) = tokio::task::spawn_blocking(move || spool.list())
        .await
        .map_err(|e| BusError::Nats(format!("listing the job spool: {e}")))?
        .map_err(|e| BusError::Nats(format!("listing the job spool: {e}")))?;
    for b in bad {
        decoy.metrics.bad_jobs.inc();
        tracing::error!(
            job = b.name,
            error = b.error,
            "unreadable job set aside as .bad"
        );
    }
    decoy.metrics.jobs_pending.set(jobs.len() as i64);
    for job in jobs {
        let done = match &job {
            Job::Message(m) => message(decoy, bus, window, m).await,
            Job::Session(s) => session(decoy, bus, s).await,
        };
        match done {
            Ok(()) => {}
            Err(Failure::Bus(e)) => return Err(e),
            Err(Failure::Broken(why)) => {
                decoy.metrics.bad_jobs.inc();
                tracing::error!(job = job.name(), "{why}; the job is set aside as .bad");
                let _ = decoy.spool.set_aside(&job);
                continue;
            }
        }
        if let Err(e) = decoy.spool.remove(&job) {
            tracing::error!(job = job.name(), error = %e, "cannot delete a published job; it will be published again (a duplicate the bus drops)");
        }
        decoy.metrics.jobs_pending.dec();
    }
    Ok(())
}

async fn send(
    decoy: &Decoy,
    js: &jetstream::Context,
    subject: &str,
    msg_id: String,
    payload: &impl serde::Serialize,
) -> Result<(), BusError> {
    let m = outbox::message(subject.to_owned(), msg_id, payload);
    publish(js, &m.subject, &m.msg_id, &m.headers, m.body.into()).await?;
    decoy
        .metrics
        .published
        .get_or_create(&vec![("subject", subject_label(subject))])
        .inc();
    Ok(())
}

fn subject_label(subject: &str) -> &'static str {
    match subject {
        "email.received" => "email.received",
        "smtp.probe.pending" => "smtp.probe.pending",
        _ => "attacker.session.ended",
    }
}

/// The distinct domains of addresses, first seen first.
fn domains(addresses: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in addresses
        .iter()
        .filter_map(|a| decnet_mail::address_domain(a))
    {
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

async fn message(
    decoy: &Decoy,
    bus: &Connected,
    window: &mut Window,
    job: &MessageJob,
) -> Result<(), Failure> {
    let config = &decoy.config;
    let q = decoy.quarantine.clone();
    let name = job.stored_as.clone();
    let bytes = tokio::task::spawn_blocking(move || q.read(&name))
        .await
        .map_err(|e| Failure::Broken(format!("reading the message panicked: {e}")))?
        .map_err(|e| Failure::Broken(format!("the quarantined message cannot be read: {e}")))?;
    // The bucket holds the message before any event names it.
    let object = quarantine::object_name(&config.decky_id, &job.stored_as);
    quarantine::put(&bus.bucket, &object, &bytes).await?;

    let size = bytes.len();
    let features = tokio::task::spawn_blocking(move || decnet_mail::analyse(&bytes))
        .await
        .map_err(|e| Failure::Broken(format!("analysing the message panicked: {e}")))?;
    let counts = match features.body_simhash {
        Some(hash) => Some(
            window
                .observe(&job.stored_as, job.received_at, hash, &job.rcpt_to)
                .map_err(|e| {
                    BusError::Nats(format!("the campaign window cannot be written: {e}"))
                })?,
        ),
        None => None,
    };
    let event = EmailReceived {
        source_id: job.stored_as.clone(),
        attacker_uuid: None,
        attacker_ip: Some(Ip(job.client_ip.clone())),
        decky_id: Decky(config.decky_id.clone()),
        service: config.service(),
        subject: features.subject,
        from_domain: features.from_domain,
        mail_from_domain: decnet_mail::address_domain(&job.mail_from),
        return_path_domain: features.return_path_domain,
        rcpt_count: job.rcpt_to.len() as i64,
        rcpt_domains: domains(&job.rcpt_to),
        x_mailer: features.x_mailer,
        dkim_signed: features.dkim_signed,
        spf_pass: features.spf_pass,
        urls: features.urls,
        attachment_count: features.attachment_count as i64,
        attachment_sha256s: features.attachment_sha256s.into_iter().map(Hex64).collect(),
        attachment_extensions: features.attachment_extensions,
        body_simhash: features.body_simhash.map(decnet_mail::simhash_hex),
        body_base64_bytes: features.body_base64_bytes as i64,
        attachment_macros: features.attachment_macros,
        attachment_password_protected: features.attachment_password_protected,
        html_smuggling: features.html_smuggling,
        stored_as: job.stored_as.clone(),
        body_sha256: Hex64(features.body_sha256.clone()),
        mal_hash_match: None,
        campaign_message_count: counts.map(|c| c.messages),
        campaign_rcpt_count: counts.map(|c| c.recipients),
        campaign_window_h: counts.map(|_| campaign::WINDOW_H),
        received_at: Some(job.received_at),
        size_bytes: Some(size as i64),
        truncated: Some(job.truncated),
        helo: job.helo.clone(),
        authenticated: Some(job.authenticated),
        dkim_signature_present: Some(features.dkim_signature_present),
        auth_results_present: Some(features.auth_results_present),
    };
    send(
        decoy,
        &bus.js,
        "email.received",
        format!("email.received:{}:{}", config.decky_id, job.stored_as),
        &event,
    )
    .await?;
    if config.mode == Mode::Relay {
        let pending = ProbePending {
            decky: Decky(config.decky_id.clone()),
            decky_id: Some(Decky(config.decky_id.clone())),
            attacker_ip: Ip(job.client_ip.clone()),
            stored_as: job.stored_as.clone(),
            mail_from: job.mail_from.clone(),
            rcpt_to: job.rcpt_to.join(","),
            rcpt_list: job.rcpt_to.clone(),
            size_bytes: Some(size as i64),
            body_sha256: Some(Hex64(features.body_sha256)),
            received_at: Some(job.received_at),
        };
        send(
            decoy,
            &bus.js,
            "smtp.probe.pending",
            format!("smtp.probe.pending:{}:{}", config.decky_id, job.stored_as),
            &pending,
        )
        .await?;
    }
    Ok(())
}

async fn session(decoy: &Decoy, bus: &Connected, job: &SessionJob) -> Result<(), Failure> {
    let config = &decoy.config;
    let service = config.mode.service_name();
    let event = SessionEnded {
        session_id: Some(job.session_id.to_string()),
        attacker_uuid: None,
        attacker_ip: Some(Ip(job.client_ip.clone())),
        decky_id: Decky(config.decky_id.clone()),
        service: service.to_owned(),
        started_at: Some(job.started_at),
        ended_at: job.ended_at,
        duration_s: (job.ended_at - job.started_at)
            .num_microseconds()
            .unwrap_or(0)
            .max(0) as f64
            / 1e6,
        commands: Vec::new(),
        auth_attempts: job
            .attempts
            .iter()
            .map(|a| AuthAttempt {
                username: a.username.clone(),
                password: a.password.clone(),
                result: if a.success {
                    AuthResult::Success
                } else {
                    AuthResult::Failure
                },
                ts: a.ts,
                service: Some(service.to_owned()),
                method: Some(a.method.clone()),
            })
            .collect(),
        http_requests: Vec::new(),
        shard_path: None,
        behaviour: SessionBehaviour::default(),
    };
    send(
        decoy,
        &bus.js,
        "attacker.session.ended",
        format!(
            "attacker.session.ended:{}:{}",
            config.decky_id, job.session_id
        ),
        &event,
    )
    .await?;
    Ok(())
}
