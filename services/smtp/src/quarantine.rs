//! The `.eml` quarantine on disk (SMTP.md §6): one file per message, named by its time, its
//! hash and its queue id, written so that a crash leaves either the whole file or none.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// A decoy's directory of stored messages.
#[derive(Debug, Clone)]
pub(crate) struct Quarantine {
    dir: PathBuf,
}

/// `<UTC time>_<first 12 hex of SHA-256>_<queue id, safe characters, ≤ 32>.eml`.
pub(crate) fn stored_as(received: DateTime<Utc>, bytes: &[u8], queue_id: &str) -> String {
    let digest = hex(&Sha256::digest(bytes));
    let id: String = queue_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(32)
        .collect();
    format!(
        "{}_{}_{id}.eml",
        received.format("%Y-%m-%dT%H:%M:%SZ"),
        &digest[..12]
    )
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Create a directory (and its parents) with mode 0750.
pub(crate) fn private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o750))
}

/// Write `bytes` to `path` through `<path>.part`: fsync'd, renamed, the directory fsync'd, so
/// the name appears only with the whole content behind it.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&part)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&part, path)?;
        if let Some(dir) = path.parent() {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&part);
    }
    result
}

impl Quarantine {
    /// `<quarantine-dir>/<decky-id>`.
    pub(crate) fn new(root: &Path, decky_id: &str) -> Quarantine {
        Quarantine {
            dir: root.join(decky_id),
        }
    }

    /// Make sure the directory exists (at start-up, so a missing disk is a start-up error).
    pub(crate) fn prepare(&self) -> io::Result<()> {
        private_dir(&self.dir)
    }

    /// Where a stored message lives.
    pub(crate) fn path(&self, stored_as: &str) -> PathBuf {
        self.dir.join(stored_as)
    }

    /// Store a message under its name, mode 0640.
    pub(crate) fn store(&self, stored_as: &str, bytes: &[u8]) -> io::Result<()> {
        private_dir(&self.dir)?;
        write_atomically(&self.path(stored_as), bytes, 0o640)
    }

    /// A stored message, as the publisher reads it back.
    pub(crate) fn read(&self, stored_as: &str) -> io::Result<Vec<u8>> {
        fs::read(self.path(stored_as))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_time_hash_and_a_safe_queue_id() {
        let at = DateTime::parse_from_rfc3339("2026-12-04T08:01:02.345Z")
            .unwrap()
            .with_timezone(&Utc);
        let name = stored_as(at, b"hello", "BCDFGHJKLMNP");
        // SHA-256("hello") = 2cf24dba5fb0a30e…
        assert_eq!(name, "2026-12-04T08:01:02Z_2cf24dba5fb0_BCDFGHJKLMNP.eml");
        let odd = stored_as(
            at,
            b"hello",
            "a/b c:d\u{e9}.x-y_z0123456789012345678901234567",
        );
        assert_eq!(
            odd,
            "2026-12-04T08:01:02Z_2cf24dba5fb0_a_b_c_d_.x-y_z012345678901234567.eml"
        );
    }

    #[test]
    fn a_stored_message_is_whole_private_and_leaves_no_part_file() {
        let tmp = tempfile::tempdir().unwrap();
        let q = Quarantine::new(tmp.path(), "decoy-01");
        q.store("m.eml", b"Subject: hi\r\n\r\nbody\r\n").unwrap();
        assert_eq!(q.read("m.eml").unwrap(), b"Subject: hi\r\n\r\nbody\r\n");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&q.path("m.eml")), 0o640);
        assert_eq!(mode(&tmp.path().join("decoy-01")), 0o750);
        let names: Vec<_> = fs::read_dir(tmp.path().join("decoy-01"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["m.eml"]);
    }
}
