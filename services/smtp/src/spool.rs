//! The job spool (SMTP.md §8): the decoy has no database, so each stored message and each
//! connection with logins leaves a job file, fsync'd before the client hears 250, that the
//! publisher deletes only once JetStream has acknowledged every event of it. A crash at any
//! point leaves the job, and the next start finishes it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Attempt;
use crate::quarantine::{private_dir, write_atomically};

/// One accepted message, as the connection saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct MessageJob {
    pub(crate) stored_as: String,
    pub(crate) queue_id: String,
    pub(crate) client_ip: String,
    pub(crate) mail_from: String,
    pub(crate) rcpt_to: Vec<String>,
    pub(crate) helo: Option<String>,
    pub(crate) authenticated: bool,
    pub(crate) received_at: DateTime<Utc>,
    pub(crate) truncated: bool,
    pub(crate) size_bytes: u64,
}

/// One connection that tried to log in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SessionJob {
    /// Drawn when the connection opened; a retried publish reuses it.
    pub(crate) session_id: Uuid,
    pub(crate) client_ip: String,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) ended_at: DateTime<Utc>,
    pub(crate) attempts: Vec<Attempt>,
}

/// A unit of publishing work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Job {
    Message(MessageJob),
    Session(SessionJob),
}

impl Job {
    /// The file name of the job.
    pub(crate) fn name(&self) -> String {
        match self {
            Job::Message(m) => format!("{}.json", m.stored_as),
            Job::Session(s) => format!(
                "session_{}_{}.json",
                s.ended_at.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
                s.session_id
            ),
        }
    }

    /// When it happened: jobs are published in this order.
    pub(crate) fn at(&self) -> DateTime<Utc> {
        match self {
            Job::Message(m) => m.received_at,
            Job::Session(s) => s.ended_at,
        }
    }
}

/// `<quarantine-dir>/.jobs`.
#[derive(Debug, Clone)]
pub(crate) struct Spool {
    dir: PathBuf,
}

/// A job file that could not be read back, set aside as `<name>.bad`.
#[derive(Debug)]
pub(crate) struct Unreadable {
    pub(crate) name: String,
    pub(crate) error: String,
}

impl Spool {
    pub(crate) fn new(quarantine_dir: &Path) -> Spool {
        Spool {
            dir: quarantine_dir.join(".jobs"),
        }
    }

    pub(crate) fn prepare(&self) -> io::Result<()> {
        private_dir(&self.dir)
    }

    /// Write a job durably.
    pub(crate) fn put(&self, job: &Job) -> io::Result<()> {
        let body = serde_json::to_vec(job).map_err(io::Error::other)?;
        write_atomically(&self.dir.join(job.name()), &body, 0o640)
    }

    /// Every job, oldest first (ties by name, so the order is the same on every pass), and
    /// the files that are not jobs any more, which are renamed out of the way.
    pub(crate) fn list(&self) -> io::Result<(Vec<Job>, Vec<Unreadable>)> {
        let mut jobs = Vec::new();
        let mut bad = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".json") {
                continue;
            }
            let parsed = fs::read(entry.path())
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Job>(&b).map_err(|e| e.to_string()));
            match parsed {
                Ok(job) if job.name() == name => jobs.push(job),
                Ok(_) => bad.push((name, "its content names another job".to_owned())),
                Err(e) => bad.push((name, e)),
            }
        }
        let bad = bad
            .into_iter()
            .map(|(name, error)| {
                let _ = fs::rename(self.dir.join(&name), self.dir.join(format!("{name}.bad")));
                Unreadable { name, error }
            })
            .collect();
        jobs.sort_by(|a, b| a.at().cmp(&b.at()).then_with(|| a.name().cmp(&b.name())));
        Ok((jobs, bad))
    }

    /// The job is done.
    pub(crate) fn remove(&self, job: &Job) -> io::Result<()> {
        match fs::remove_file(self.dir.join(job.name())) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Set a job that can never finish aside as `<name>.bad`, for an operator to look at.
    pub(crate) fn set_aside(&self, job: &Job) -> io::Result<()> {
        let name = job.name();
        fs::rename(self.dir.join(&name), self.dir.join(format!("{name}.bad")))
    }

    /// Jobs waiting.
    pub(crate) fn len(&self) -> usize {
        fs::read_dir(&self.dir).map_or(0, |d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(stored_as: &str, at: &str) -> Job {
        Job::Message(MessageJob {
            stored_as: stored_as.into(),
            queue_id: "BCDFGHJKLMNP".into(),
            client_ip: "203.0.113.7".into(),
            mail_from: "a@b.example".into(),
            rcpt_to: vec!["c@d.example".into()],
            helo: Some("x".into()),
            authenticated: false,
            received_at: at.parse().unwrap(),
            truncated: false,
            size_bytes: 10,
        })
    }

    #[test]
    fn jobs_come_back_in_receive_order_and_broken_files_are_set_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::new(tmp.path());
        spool.prepare().unwrap();
        // Same second, so the file names do not sort by receive time; the job times do.
        let later = message(
            "2026-12-04T08:00:00Z_aaaaaaaaaaaa_B.eml",
            "2026-12-04T08:00:00.9Z",
        );
        let first = message(
            "2026-12-04T08:00:00Z_ffffffffffff_C.eml",
            "2026-12-04T08:00:00.1Z",
        );
        spool.put(&later).unwrap();
        spool.put(&first).unwrap();
        fs::write(tmp.path().join(".jobs/torn.json"), b"{\"kind\":").unwrap();
        let (jobs, bad) = spool.list().unwrap();
        assert_eq!(jobs, [first.clone(), later]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].name, "torn.json");
        assert!(tmp.path().join(".jobs/torn.json.bad").exists());
        assert_eq!(spool.len(), 2);
        spool.remove(&first).unwrap();
        spool.remove(&first).unwrap();
        assert_eq!(spool.len(), 1);
    }
}
