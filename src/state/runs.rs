//! Run history and the one-run-per-set lock.
//!
//! The lock is an OS file lock (released by the kernel when a process dies,
//! so a crashed run never blocks the next one), not a row in the database.
//! Its file sits beside the state file's canonical path (symlinks
//! resolved), so the same state reached through a symlink, or a directory
//! symlink, takes the same lock (SQLite too resolves symlinks to find the
//! `-wal` file). Two hard links to one state file are not told apart:
//! SQLite does not support that either ("How To Corrupt An SQLite
//! Database File", section 2.5, "Multiple links to the same file").

use std::fs::File;
use std::path::PathBuf;

use rusqlite::params;

use super::{StateDb, StateError, StateResult};

/// The counters a run ends with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunCounts {
    /// Files found locally.
    pub scanned: u64,
    /// Files uploaded.
    pub uploaded: u64,
    /// Files copied server-side.
    pub copied: u64,
    /// Files whose mtime changed but content did not.
    pub touched: u64,
    /// Files with nothing to do.
    pub unchanged: u64,
    /// Remote files deleted.
    pub deleted: u64,
    /// Files that failed.
    pub failed: u64,
    /// Bytes sent as upload bodies.
    pub bytes_sent: u64,
    /// Objects copied into the content area before being replaced or
    /// deleted (history, see [`crate::history`]).
    pub history_kept: u64,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Everything done.
    Ok,
    /// Done, but some files failed.
    Partial,
    /// Stopped by an error.
    Failed,
    /// Stopped early by Ctrl-C or SIGTERM: what it did is recorded, the
    /// rest is left to the next run (which treats it as a killed run).
    Interrupted,
}

impl RunStatus {
    fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// Held while a run of one set is under way; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl StateDb {
    /// Takes the exclusive lock for a set, failing at once if another run
    /// holds it: `<canonical state path>.set-<id>.lock`.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn lock_set(&self, set_id: i64) -> StateResult<RunLock> {
        let canonical = std::fs::canonicalize(&self.path).map_err(|source| StateError::Io {
            path: self.path.clone(),
            cause: source,
        })?;
        let mut name = canonical.into_os_string();
        name.push(format!(".set-{set_id}.lock"));
        let path = PathBuf::from(name);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| StateError::Io {
                path: path.clone(),
                cause: source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(RunLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StateError::Busy(path)),
            Err(std::fs::TryLockError::Error(source)) => Err(StateError::Io { path, cause: source }),
        }
    }

    /// Whether remote changes exist that no uploaded manifest describes
    /// (a run crashed or failed between its uploads and its manifest).
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn manifest_pending(&self, set_id: i64) -> StateResult<bool> {
        self.conn
            .query_row(
                "SELECT manifest_pending FROM backup_sets WHERE id = ?1",
                [set_id],
                |r| r.get::<_, bool>(0),
            )
            .map_err(self.err())
    }

    /// Marks that remote changes are about to happen (true) or that a
    /// manifest now describes them (false).
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn set_manifest_pending(&self, set_id: i64, pending: bool) -> StateResult<()> {
        self.conn
            .execute(
                "UPDATE backup_sets SET manifest_pending = ?2 WHERE id = ?1",
                params![set_id, pending],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Records the start of a run, returning its row ID.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn begin_run(&self, set_id: i64, run_id: &str, kind: &str) -> StateResult<i64> {
        self.conn
            .execute(
                "INSERT INTO runs (set_id, run_id, kind, started_at, status) VALUES (?1, ?2, ?3, ?4, 'running')",
                params![set_id, run_id, kind, chrono::Utc::now().timestamp_millis()],
            )
            .map_err(self.err())?;
        Ok(self.conn.last_insert_rowid())
    }

    /// When the set's previous backup (before run row `current`) started,
    /// if it never ended (it was killed) or was interrupted: it may have
    /// left an upload begun that its journal never recorded (its beginning
    /// cut off before the answer came).
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn interrupted_run_start(&self, set_id: i64, current: i64) -> StateResult<Option<i64>> {
        use rusqlite::OptionalExtension;
        let last: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT started_at, status FROM runs WHERE set_id = ?1 AND kind = 'backup' AND id < ?2
                 ORDER BY id DESC LIMIT 1",
                params![set_id, current],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.err())?;
        Ok(last
            .filter(|(_, status)| status == "running" || status == "interrupted")
            .map(|(started, _)| started))
    }

    /// The key of the newest snapshot manifest a backup of the set wrote,
    /// if any: what the target must still hold for the state to describe it.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn latest_manifest(&self, set_id: i64) -> StateResult<Option<String>> {
        use rusqlite::OptionalExtension;
        self.conn
            .query_row(
                "SELECT manifest_key FROM runs WHERE set_id = ?1 AND kind = 'backup' AND manifest_key IS NOT NULL
                 ORDER BY id DESC LIMIT 1",
                [set_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())
    }

    /// Records how a run ended.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn finish_run(
        &self,
        run: i64,
        status: RunStatus,
        counts: &RunCounts,
        manifest_key: Option<&str>,
        error: Option<&str>,
    ) -> StateResult<()> {
        self.conn
            .execute(
                "UPDATE runs SET finished_at = ?2, status = ?3, scanned = ?4, uploaded = ?5, copied = ?6,
                 touched = ?7, unchanged = ?8, deleted = ?9, failed = ?10, bytes_sent = ?11,
                 manifest_key = ?12, error = ?13, history_kept = ?14 WHERE id = ?1",
                params![
                    run,
                    chrono::Utc::now().timestamp_millis(),
                    status.as_str(),
                    counts.scanned as i64,
                    counts.uploaded as i64,
                    counts.copied as i64,
                    counts.touched as i64,
                    counts.unchanged as i64,
                    counts.deleted as i64,
                    counts.failed as i64,
                    counts.bytes_sent as i64,
                    manifest_key,
                    error,
                    counts.history_kept as i64
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// [`Self::finish_run`] and [`Self::record_requests`] in one
    /// transaction: one commit at the end of a run, not two.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn finish_run_counted(
        &self,
        run: i64,
        status: RunStatus,
        (counts, requests): (&RunCounts, &crate::store::RequestCounts),
        manifest_key: Option<&str>,
        error: Option<&str>,
    ) -> StateResult<()> {
        let tx = self.conn.unchecked_transaction().map_err(self.err())?;
        self.finish_run(run, status, counts, manifest_key, error)?;
        self.record_requests(run, requests)?;
        tx.commit().map_err(self.err())
    }

    /// Records the requests a run sent, by kind, and their body bytes
    /// (migration 0006's columns; `state runs` shows them).
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn record_requests(&self, run: i64, r: &crate::store::RequestCounts) -> StateResult<()> {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.conn
            .execute(
                "UPDATE runs SET req_list = ?2, req_head = ?3, req_get = ?4, req_put = ?5, req_copy = ?6,
                 req_multipart_parts = ?7, req_multipart_other = ?8, req_delete = ?9, req_other = ?10,
                 req_bytes_sent = ?11, req_bytes_received = ?12 WHERE id = ?1",
                params![
                    run,
                    n(r.list),
                    n(r.head),
                    n(r.get),
                    n(r.put),
                    n(r.copy),
                    n(r.multipart_parts),
                    n(r.multipart_other),
                    n(r.delete),
                    n(r.other),
                    n(r.bytes_sent),
                    n(r.bytes_received)
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Whether any backup of the set was ever begun with this state file.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn has_runs(&self, set_id: i64) -> StateResult<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE set_id = ?1 AND kind = 'backup')",
                [set_id],
                |r| r.get(0),
            )
            .map_err(self.err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_a_set_is_refused_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(&dir.path().join("state.db")).unwrap();
        let set = db.ensure_set("/a", "s3://b").unwrap();
        let other = db.ensure_set("/b", "s3://b").unwrap();
        let lock = db.lock_set(set).unwrap();
        assert!(matches!(db.lock_set(set), Err(StateError::Busy(_))));
        let _other_lock = db.lock_set(other).unwrap();
        drop(lock);
        db.lock_set(set).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn the_lock_is_the_same_through_a_symlinked_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("state.db");
        let alias = dir.path().join("alias.db");
        let db = StateDb::open(&real).unwrap();
        std::os::unix::fs::symlink(&real, &alias).unwrap();
        let via_alias = StateDb::open(&alias).unwrap();
        let set = db.ensure_set("/a", "s3://b").unwrap();
        let _lock = db.lock_set(set).unwrap();
        assert!(matches!(via_alias.lock_set(set), Err(StateError::Busy(_))));
    }

    #[test]
    fn records_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(&dir.path().join("state.db")).unwrap();
        let set = db.ensure_set("/a", "s3://b").unwrap();
        let run = db.begin_run(set, "r1", "backup").unwrap();
        let counts = RunCounts {
            uploaded: 2,
            ..Default::default()
        };
        db.finish_run(run, RunStatus::Ok, &counts, Some("k"), None)
            .unwrap();
        let (status, uploaded): (String, i64) = db
            .conn
            .query_row("SELECT status, uploaded FROM runs WHERE id = ?1", [run], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((status.as_str(), uploaded), ("ok", 2));
    }
}
