//! The consumer's work on a batch of `smtp.probe.pending` deliveries: read the payload, check
//! eligibility (SMTP.md §9.2), claim in the database (§9.3), run the sessions (§9.5) and
//! record how each ended (§9.6).
//!
//! Claims are made one delivery at a time in delivery order, so one instance hands out slots
//! in the order the decoy published; the sessions of a batch then run together, and while
//! any runs every delivery of the batch is kept alive with `in progress` so none is
//! redelivered meanwhile. A delivery is settled only after its outcome is committed.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::{self, object_store};
use chrono::{TimeDelta, Utc};
use decnet_bus::{Delivery, Handler, Outcome, Poison};
use decnet_proto::payload::smtp::{ProbeOutcome, ProbeRelayed, UpstreamTls};
use decnet_storage::{
    Database, NewProbeClaim, OutboxMessage, ProbeClaim, ProbeFinish, ProbeRelayRow, ProbeRetry,
    StorageError,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::SERVICE;
use crate::config::{Policy, RelayConfig, Upstream};
use crate::message::{Pending, decode, prepare};
use crate::metrics::Metrics;
use crate::session::{BeforeData, End, Outgoing, Report, deliver};

/// The clocks of the claim and the session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// How long a claim holds its lease.
    pub(crate) lease: Duration,
    /// How long a session may run.
    pub(crate) session_limit: Duration,
    /// How often `in progress` is sent while sessions run.
    pub(crate) progress_every: Duration,
}

/// The handler the runner drives.
pub(crate) struct Relay {
    pub(crate) db: Database,
    pub(crate) js: jetstream::Context,
    pub(crate) config: Arc<RelayConfig>,
    /// This instance: the lease owner.
    pub(crate) instance: String,
    pub(crate) timing: Timing,
    /// Wakes the outbox publisher after a commit that staged a message.
    pub(crate) published: Arc<Notify>,
    pub(crate) metrics: Metrics,
    /// The `QUARANTINE` bucket once it exists (the decoy creates it).
    pub(crate) bucket: Mutex<Option<object_store::ObjectStore>>,
}

/// A message claimed for a session.
struct Job<'a> {
    index: usize,
    pending: Pending,
    policy: &'a Policy,
    upstream: Arc<Upstream>,
    row: ProbeRelayRow,
    bytes: Vec<u8>,
}

/// The bytes of a message as read for the checks: at most `max_bytes + 1` of them kept, the
/// hash and size over all of them.
struct Fetched {
    bytes: Vec<u8>,
    size: u64,
    sha256: String,
}

/// What the claim phase made of one delivery.
enum Prepared<'a> {
    Settled(Outcome),
    Session(Box<Job<'a>>),
}

fn transient(e: &StorageError) -> Outcome {
    Outcome::Transient(format!("database: {e}"))
}

fn storage_outcome(e: &StorageError) -> Outcome {
    if e.is_transient() {
        transient(e)
    } else {
        Outcome::Poison(Poison {
            code: "constraint_violation",
            detail: e.to_string(),
        })
    }
}

/// A nak after `delay` rather than the runner's back-off.
fn retry_after(d: &Delivery, delay: Duration, why: String) -> Outcome {
    d.retry_after(delay.max(Duration::from_millis(1)));
    Outcome::Transient(why)
}

fn to_std(delta: TimeDelta) -> Duration {
    delta.to_std().unwrap_or(Duration::ZERO)
}

fn to_delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// Read everything from `reader`, hashing it all and keeping the first `keep` bytes.
async fn read_bounded(mut reader: impl AsyncRead + Unpin, keep: usize) -> std::io::Result<Fetched> {
    let mut hasher = Sha256::new();
    let mut bytes = Vec::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
        let room = keep.saturating_sub(bytes.len()).min(n);
        bytes.extend_from_slice(&buf[..room]);
    }
    Ok(Fetched {
        bytes,
        size,
        sha256: format!("{:x}", hasher.finalize()),
    })
}

/// The `smtp.probe.relayed` message announcing a terminal row (EVENTS.md §4.11).
pub(crate) fn announcement(row: &ProbeRelayRow, probe_limit: i64) -> OutboxMessage {
    let tls = row.tls.as_deref().and_then(|t| match t {
        "starttls" => Some(UpstreamTls::Starttls),
        "implicit" => Some(UpstreamTls::Implicit),
        "none" => Some(UpstreamTls::None),
        _ => None,
    });
    let outcome = match row.status.as_str() {
        "sent" => ProbeOutcome::Sent,
        "failed" => ProbeOutcome::Failed,
        "unknown" => ProbeOutcome::Unknown,
        _ => ProbeOutcome::Skipped,
    };
    let payload = ProbeRelayed {
        decky_id: row.decky_id.as_str().into(),
        attacker_ip: row.attacker_ip.as_str().into(),
        // The address was canonicalised when the payload was read, so it parses.
        attacker_uuid: decnet_ttp::anchor::attacker_uuid_for_ip(&row.attacker_ip)
            .unwrap_or_default(),
        stored_as: row.stored_as.clone(),
        outcome,
        reason: row.reason.clone(),
        slot: row.slot.map(i64::from),
        probe_limit,
        attempts: i64::from(row.attempts),
        upstream_host: row.upstream_host.clone(),
        upstream_port: row.upstream_port.map(i64::from),
        tls,
        smtp_code: row.smtp_code.map(i64::from),
        smtp_reply: row.smtp_reply.clone(),
        rcpt_count: i64::from(row.rcpt_count),
        finished_at: row.finished_at.unwrap_or(row.updated_at),
    };
    decnet_bus::outbox::message(
        "smtp.probe.relayed".to_owned(),
        format!("smtp.probe.relayed:{}:{}", row.decky_id, row.stored_as),
        &payload,
    )
}

impl Handler for Relay {
    async fn handle(&mut self, batch: &[Delivery]) -> Vec<Outcome> {
        let this = &*self;
        let mut outcomes: Vec<Option<Outcome>> = (0..batch.len()).map(|_| None).collect();
        let mut jobs = Vec::new();
        for (i, d) in batch.iter().enumerate() {
            match this.prepare(i, d).await {
                Prepared::Settled(outcome) => outcomes[i] = Some(outcome),
                Prepared::Session(job) => jobs.push(*job),
            }
        }
        if !jobs.is_empty() {
            let sessions = futures_util::future::join_all(
                jobs.into_iter().map(|job| this.run_job(job, batch)),
            );
            for (i, outcome) in this.keep_alive(batch, sessions).await {
                outcomes[i] = Some(outcome);
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::Transient("not handled".into())))
            .collect()
    }
}

impl Relay {
    /// Await `work`, sending `in progress` for every delivery of the batch meanwhile.
    async fn keep_alive<T>(&self, batch: &[Delivery], work: impl Future<Output = T>) -> T {
        let every = self.timing.progress_every;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = tick.tick() => {
                    for d in batch {
                        if let Err(e) = d.in_progress().await {
                            tracing::debug!(error = %e, "in-progress not sent");
                        }
                    }
                }
            }
        }
    }

    /// Decode, look the message up, check it and claim it.
    async fn prepare<'a>(&'a self, index: usize, d: &Delivery) -> Prepared<'a> {
        let settled = Prepared::Settled;
        let pending = match decode(d.payload(), d.header(decnet_proto::header::SCHEMA_VERSION)) {
            Ok(p) => p,
            Err(poison) => return settled(Outcome::Poison(poison)),
        };
        // A redelivery of a finished or leased message needs neither the bytes nor a check.
        match self
            .db
            .probe_relay(&pending.decky_id, &pending.stored_as)
            .await
        {
            Err(e) => return settled(transient(&e)),
            Ok(Some(row)) if row.is_terminal() => return settled(Outcome::Done),
            Ok(Some(row)) => {
                if let Some(until) = row.lease_until.filter(|u| *u > Utc::now()) {
                    let wait = to_std(until - Utc::now());
                    return settled(retry_after(d, wait, "leased by another session".into()));
                }
            }
            Ok(None) => {}
        }
        let policy = self.config.policy(&pending.decky_id);
        let (skip, bytes) = match self.eligibility(&pending, policy).await {
            Ok(checked) => checked,
            Err(why) => return settled(Outcome::Transient(why)),
        };
        let now = Utc::now();
        let up = policy.upstream.as_deref();
        let rcpt_count = match up.and_then(|u| u.redirect_to.as_ref()) {
            Some(_) => 1,
            None => pending.recipients.len(),
        };
        let claim = NewProbeClaim {
            id: Uuid::new_v4(),
            decky_id: &pending.decky_id,
            attacker_ip: &pending.attacker_ip,
            stored_as: &pending.stored_as,
            owner: &self.instance,
            now,
            lease: to_delta(self.timing.lease),
            probe_limit: policy.probe_limit,
            skip,
            upstream_host: up.map(|u| u.host.as_str()),
            upstream_port: up.map(|u| i32::from(u.port)),
            tls: up.map(|u| u.tls.as_str()),
            rcpt_count: i32::try_from(rcpt_count).unwrap_or(i32::MAX),
        };
        let limit = policy.probe_limit;
        let claimed = self
            .db
            .claim_probe(SERVICE, &claim, |row| announcement(row, limit))
            .await;
        match claimed {
            Err(e) => settled(storage_outcome(&e)),
            Ok(ProbeClaim::Busy { retry_in, .. }) => settled(retry_after(
                d,
                to_std(retry_in),
                "leased by another session".into(),
            )),
            Ok(ProbeClaim::Finished { row, changed }) => {
                if changed {
                    self.finished(&row);
                }
                settled(Outcome::Done)
            }
            Ok(ProbeClaim::Claimed(row)) => match (skip, policy.upstream.clone()) {
                // Taken over after the message stopped qualifying (its object expired, the
                // configuration changed): the slot stays used, nothing is sent.
                (Some(reason), _) => settled(self.end(&row, "failed", Some(reason)).await),
                (None, None) => settled(self.end(&row, "failed", Some("no_upstream")).await),
                (None, Some(upstream)) => Prepared::Session(Box::new(Job {
                    index,
                    pending,
                    policy,
                    upstream,
                    row,
                    bytes,
                })),
            },
        }
    }

    /// The checks of SMTP.md §9.2 before the slot, in order: the reason a message is not
    /// relayed, or its bytes. `Err` is transient (the bucket could not be read).
    async fn eligibility(
        &self,
        p: &Pending,
        policy: &Policy,
    ) -> Result<(Option<&'static str>, Vec<u8>), String> {
        if policy.upstream.is_none() {
            return Ok((Some("no_upstream"), Vec::new()));
        }
        let keep = usize::try_from(policy.max_bytes)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        let Some(fetched) = self.fetch(p, policy, keep).await? else {
            return Ok((Some("message_unavailable"), Vec::new()));
        };
        let skip = if p.body_sha256.as_ref().is_some_and(|h| *h != fetched.sha256) {
            Some("integrity_mismatch")
        } else if fetched.size > u64::try_from(policy.max_bytes).unwrap_or(0) {
            Some("too_large")
        } else if p.recipients.is_empty() {
            Some("no_recipients")
        } else if p.recipients.len() as i64 > policy.max_recipients {
            Some("too_many_recipients")
        } else {
            None
        };
        Ok((skip, fetched.bytes))
    }

    /// The message from the bucket, else from the local quarantine directory; `None` when
    /// neither has it.
    async fn fetch(
        &self,
        p: &Pending,
        policy: &Policy,
        keep: usize,
    ) -> Result<Option<Fetched>, String> {
        let name = decnet_bus::quarantine::object_name(&p.decky_id, &p.stored_as);
        if let Some(store) = self.bucket().await? {
            let read = async {
                match store.get(&name).await {
                    Ok(object) => read_bounded(object, keep)
                        .await
                        .map(Some)
                        .map_err(|e| e.to_string()),
                    Err(e) if e.kind() == object_store::GetErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e.to_string()),
                }
            };
            match tokio::time::timeout(Duration::from_secs(30), read).await {
                Ok(Ok(Some(fetched))) => return Ok(Some(fetched)),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => return Err(format!("reading QUARANTINE/{name}: {e}")),
                Err(_) => return Err(format!("reading QUARANTINE/{name}: timed out")),
            }
        }
        let Some(dir) = &policy.quarantine_dir else {
            return Ok(None);
        };
        let path = dir.join(&p.decky_id).join(&p.stored_as);
        // Unreadable counts as unavailable: a local file is the fallback, not the source.
        let Ok(file) = tokio::fs::File::open(&path).await else {
            return Ok(None);
        };
        Ok(read_bounded(file, keep).await.ok())
    }

    /// The bucket, opened on first use and cached; `None` while no decoy created it.
    async fn bucket(&self) -> Result<Option<object_store::ObjectStore>, String> {
        let cached = self
            .bucket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if cached.is_some() {
            return Ok(cached);
        }
        let opened = decnet_bus::quarantine::open_bucket(&self.js)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(store) = &opened {
            *self.bucket.lock().unwrap_or_else(PoisonError::into_inner) = Some(store.clone());
        }
        Ok(opened)
    }

    /// One session and its record; the delivery's index and outcome.
    async fn run_job(&self, job: Job<'_>, batch: &[Delivery]) -> (usize, Outcome) {
        let up = &job.upstream;
        let p = &job.pending;
        let from = up.sender.as_deref().unwrap_or(&p.mail_from);
        let header_from = Some(p.mail_from.as_str())
            .filter(|m| !m.is_empty())
            .or(up.sender.as_deref());
        let data = prepare(&job.bytes, header_from);
        let to = match &up.redirect_to {
            Some(r) => vec![r.clone()],
            None => p.recipients.clone(),
        };
        let out = Outgoing {
            helo: up.helo_name.as_deref().unwrap_or(&p.decky_id),
            from,
            to: &to,
            data: &data,
        };
        let now = Utc::now();
        let lease_left = job
            .row
            .lease_until
            .map_or(Duration::ZERO, |u| to_std(u - now));
        let budget = self.timing.session_limit.min(lease_left);
        let report = deliver(up, &out, self.commit_in_flight(job.row.id), budget).await;
        let outcome = self.record(&job, &report).await;
        let d = &batch[job.index];
        let outcome = match outcome {
            Recorded::Done => Outcome::Done,
            Recorded::Retry(delay, why) => retry_after(d, delay, why),
            Recorded::Later(why) => Outcome::Transient(why),
        };
        (job.index, outcome)
    }

    fn commit_in_flight(&self, id: Uuid) -> BeforeData<'_> {
        Box::pin(async move {
            match self
                .db
                .probe_in_flight(id, &self.instance, Utc::now(), to_delta(self.timing.lease))
                .await
            {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err("the lease was lost before the data".to_owned()),
                Err(e) => Err(format!("database: {e}")),
            }
        })
    }

    /// Write how a session ended (SMTP.md §9.6).
    async fn record(&self, job: &Job<'_>, report: &Report) -> Recorded {
        let tls = report.tls.map(|t| match t {
            UpstreamTls::Starttls => "starttls",
            UpstreamTls::Implicit => "implicit",
            UpstreamTls::None => "none",
        });
        let row = &job.row;
        let ctx = (row.decky_id.as_str(), row.stored_as.as_str());
        match &report.end {
            End::Sent { code, reply } => {
                let reply = Some((i32::from(*code), reply.as_str()));
                self.end_with(row, "sent", None, reply, tls, job.policy)
                    .await
            }
            End::Failed {
                reason,
                code,
                reply,
            } => {
                tracing::debug!(
                    decky_id = ctx.0,
                    stored_as = ctx.1,
                    reason,
                    "upstream refused the probe"
                );
                let reply = code.map(|c| (i32::from(c), reply.as_deref().unwrap_or("")));
                self.end_with(row, "failed", Some(reason), reply, tls, job.policy)
                    .await
            }
            End::Unknown { why } => {
                tracing::warn!(decky_id = ctx.0, stored_as = ctx.1, error = %why, "the connection ended after the final dot; not resent");
                self.end_with(
                    row,
                    "unknown",
                    Some("interrupted_after_data"),
                    None,
                    tls,
                    job.policy,
                )
                .await
            }
            End::Halted(why) => Recorded::Later(why.clone()),
            End::Transient { code, reply, why } => {
                tracing::debug!(decky_id = ctx.0, stored_as = ctx.1, attempts = row.attempts, error = %why, "transient failure");
                let reply = code.map(|c| (i32::from(c), reply.as_deref().unwrap_or("")));
                if i64::from(row.attempts) >= job.upstream.max_attempts {
                    return self
                        .end_with(
                            row,
                            "failed",
                            Some("retries_exhausted"),
                            reply,
                            tls,
                            job.policy,
                        )
                        .await;
                }
                let delay = job.upstream.retry_delay(i64::from(row.attempts));
                let now = Utc::now();
                let retry = ProbeRetry {
                    id: row.id,
                    owner: &self.instance,
                    now,
                    retry_at: now + to_delta(delay),
                    smtp_code: reply.map(|r| r.0),
                    smtp_reply: reply.map(|r| r.1),
                    tls,
                };
                match self.persist(|| self.db.retry_probe(&retry)).await {
                    Ok(Some(_)) => {
                        self.metrics.retried.inc();
                        Recorded::Retry(delay, why.clone())
                    }
                    Ok(None) => Recorded::Later("the lease was lost".into()),
                    Err(e) => Recorded::Later(format!("database: {e}")),
                }
            }
        }
    }

    /// A terminal end for a row this instance holds.
    async fn end_with(
        &self,
        row: &ProbeRelayRow,
        status: &str,
        reason: Option<&str>,
        reply: Option<(i32, &str)>,
        tls: Option<&str>,
        policy: &Policy,
    ) -> Recorded {
        let finish = ProbeFinish {
            id: row.id,
            owner: &self.instance,
            now: Utc::now(),
            status,
            reason,
            smtp_code: reply.map(|r| r.0),
            smtp_reply: reply.map(|r| r.1),
            tls,
        };
        let limit = policy.probe_limit;
        let written = self
            .persist(|| {
                self.db
                    .finish_probe(SERVICE, &finish, |row| announcement(row, limit))
            })
            .await;
        match written {
            Ok(Some(row)) => {
                self.finished(&row);
                Recorded::Done
            }
            // Someone else ended it (an expired lease): the redelivery will find it finished.
            Ok(None) => Recorded::Later("the lease was lost".into()),
            Err(e) => Recorded::Later(format!("database: {e}")),
        }
    }

    /// [`Relay::end_with`] for a claim that ends without a session.
    async fn end(&self, row: &ProbeRelayRow, status: &str, reason: Option<&str>) -> Outcome {
        let policy = self.config.policy(&row.decky_id);
        match self.end_with(row, status, reason, None, None, policy).await {
            Recorded::Done => Outcome::Done,
            Recorded::Retry(_, why) | Recorded::Later(why) => Outcome::Transient(why),
        }
    }

    /// Retry a write for a while through a database outage: after a session, the outcome is
    /// worth more than the few seconds (a `sent` not written would become `unknown`).
    async fn persist<T, F, Fut>(&self, write: F) -> Result<T, StorageError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, StorageError>>,
    {
        let mut delay = Duration::from_millis(200);
        let mut tries = 0;
        loop {
            match write().await {
                Err(e) if e.is_transient() && tries < 8 => {
                    tracing::warn!(error = %e, "recording a probe outcome failed; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    /// Count a terminal row this instance wrote, and wake the publisher.
    fn finished(&self, row: &ProbeRelayRow) {
        self.metrics.outcome(&row.status, row.reason.as_deref());
        tracing::debug!(decky_id = %row.decky_id, stored_as = %row.stored_as,
            outcome = %row.status, reason = ?row.reason, "probe finished");
        self.published.notify_one();
    }
}

/// What recording a session's end asks of the delivery.
enum Recorded {
    /// Committed: ack.
    Done,
    /// Released for another attempt: nak after the delay.
    Retry(Duration, String),
    /// Not recorded (the database is away, or another instance holds the row): nak with the
    /// runner's back-off; the redelivery looks again.
    Later(String),
}
