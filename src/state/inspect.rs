//! Read-only queries behind the `state` commands: what the tool knows, in
//! shapes that serialize straight to the documented `--json` output.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{FileRow, RunCounts, StateDb, StateResult, row_to_file};

/// One backup set with its totals and last run.
#[derive(Debug, Clone, Serialize)]
pub struct SetSummary {
    /// Set ID (for `--set`).
    pub id: i64,
    /// Its name, if it was given one (`backup --set NAME`).
    pub name: Option<String>,
    /// Source directory.
    pub source: String,
    /// Target.
    pub target: String,
    /// Files recorded.
    pub files: u64,
    /// Their total size.
    pub bytes: u64,
    /// When the last run started (RFC 3339), if any.
    pub last_run: Option<String>,
    /// How it ended: ok, partial, failed, interrupted (Ctrl-C, SIGTERM), or
    /// running (still, or killed).
    pub last_status: Option<String>,
}

/// One run from the history.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    /// Set ID.
    pub set_id: i64,
    /// Run ID (also in the manifest name).
    pub run_id: String,
    /// "backup", …
    pub kind: String,
    /// Start time (RFC 3339).
    pub started: String,
    /// Duration in milliseconds, if finished.
    pub duration_ms: Option<i64>,
    /// ok, partial, failed, or running.
    pub status: String,
    /// What the run did.
    #[serde(flatten)]
    pub counts: RunCounts,
    /// Manifest written, if any.
    pub manifest: Option<String>,
    /// Error that stopped the run, if any.
    pub error: Option<String>,
    /// The requests the run sent, by kind, and their body bytes (zeros
    /// for runs recorded before state version 6).
    pub requests: crate::store::RequestCounts,
}

/// Totals over the whole state file.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// The state file.
    pub path: String,
    /// Its size on disk (main file), in bytes.
    pub db_bytes: u64,
    /// Schema version.
    pub schema_version: i64,
    /// Backup sets.
    pub sets: u64,
    /// File rows.
    pub files: u64,
    /// Directory rows.
    pub dirs: u64,
    /// Total size of all files.
    pub bytes: u64,
    /// Runs recorded.
    pub runs: u64,
}

fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

impl StateDb {
    /// Every set with its totals and last run.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn sets(&self) -> StateResult<Vec<SetSummary>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT s.id, s.source, s.target, s.name,
                    (SELECT COUNT(*) FROM files f WHERE f.set_id = s.id AND f.kind <> 'd'),
                    (SELECT COALESCE(SUM(size), 0) FROM files f WHERE f.set_id = s.id AND f.kind <> 'd'),
                    (SELECT started_at FROM runs r WHERE r.set_id = s.id ORDER BY r.id DESC LIMIT 1),
                    (SELECT status FROM runs r WHERE r.set_id = s.id ORDER BY r.id DESC LIMIT 1)
                 FROM backup_sets s ORDER BY s.id",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([], |r| {
                Ok(SetSummary {
                    id: r.get(0)?,
                    source: r.get(1)?,
                    target: r.get(2)?,
                    name: r.get(3)?,
                    files: r.get::<_, i64>(4)? as u64,
                    bytes: r.get::<_, i64>(5)? as u64,
                    last_run: r.get::<_, Option<i64>>(6)?.map(rfc3339_ms),
                    last_status: r.get(7)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Streams file rows (not directories) of one set or all, in set and
    /// path order, whose path `wanted` accepts (the `state files PATTERN`
    /// filter, in the filters' own syntax, decided by the caller).
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn files_matching(
        &self,
        set_id: Option<i64>,
        wanted: impl Fn(&str) -> bool,
        mut f: impl FnMut(i64, FileRow) -> StateResult<()>,
    ) -> StateResult<()> {
        let mut st = self
            .conn
            .prepare(
                "SELECT path, kind, size, mtime_ns, mode, blake3, etag, version_id, uploaded_at, checked_ns, ctime_ns, inode, device, checksum, set_id
                 FROM files
                 WHERE kind <> 'd' AND (?1 IS NULL OR set_id = ?1)
                 ORDER BY set_id, path",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map(params![set_id], |r| Ok((r.get::<_, i64>(14)?, row_to_file(r)?)))
            .map_err(self.err())?;
        for row in rows {
            let (set, file) = row.map_err(self.err())?;
            if wanted(&file.path) {
                f(set, file)?;
            }
        }
        Ok(())
    }

    /// The row for one path in one set.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn file(&self, set_id: i64, path: &str) -> StateResult<Option<FileRow>> {
        self.conn
            .query_row(
                "SELECT path, kind, size, mtime_ns, mode, blake3, etag, version_id, uploaded_at, checked_ns,
                        ctime_ns, inode, device, checksum
                 FROM files WHERE set_id = ?1 AND path = ?2",
                params![set_id, path],
                row_to_file,
            )
            .optional()
            .map_err(self.err())
    }

    /// Run history, newest first.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn runs(&self, set_id: Option<i64>, limit: u32) -> StateResult<Vec<RunRow>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT set_id, run_id, kind, started_at, finished_at, status, scanned, uploaded, copied,
                        touched, unchanged, deleted, failed, bytes_sent, manifest_key, error, history_kept,
                        req_list, req_head, req_get, req_put, req_copy, req_multipart_parts,
                        req_multipart_other, req_delete, req_other, req_bytes_sent, req_bytes_received
                 FROM runs WHERE (?1 IS NULL OR set_id = ?1) ORDER BY id DESC LIMIT ?2",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map(params![set_id, limit], |r| {
                let started: i64 = r.get(3)?;
                let finished: Option<i64> = r.get(4)?;
                let n = |i| r.get::<_, i64>(i).map(|v| v as u64);
                Ok(RunRow {
                    set_id: r.get(0)?,
                    run_id: r.get(1)?,
                    kind: r.get(2)?,
                    started: rfc3339_ms(started),
                    duration_ms: finished.map(|f| f - started),
                    status: r.get(5)?,
                    counts: RunCounts {
                        scanned: n(6)?,
                        uploaded: n(7)?,
                        copied: n(8)?,
                        touched: n(9)?,
                        unchanged: n(10)?,
                        deleted: n(11)?,
                        failed: n(12)?,
                        bytes_sent: n(13)?,
                        history_kept: n(16)?,
                    },
                    manifest: r.get(14)?,
                    error: r.get(15)?,
                    requests: crate::store::RequestCounts {
                        list: n(17)?,
                        head: n(18)?,
                        get: n(19)?,
                        put: n(20)?,
                        copy: n(21)?,
                        multipart_parts: n(22)?,
                        multipart_other: n(23)?,
                        delete: n(24)?,
                        other: n(25)?,
                        bytes_sent: n(26)?,
                        bytes_received: n(27)?,
                    },
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Totals over the whole file.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn stats(&self) -> StateResult<Stats> {
        let count = |sql: &str| -> StateResult<u64> {
            self.conn
                .query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|v| v as u64)
                .map_err(self.err())
        };
        Ok(Stats {
            path: self.path.display().to_string(),
            db_bytes: std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0),
            schema_version: self
                .conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(self.err())?,
            sets: count("SELECT COUNT(*) FROM backup_sets")?,
            files: count("SELECT COUNT(*) FROM files WHERE kind <> 'd'")?,
            dirs: count("SELECT COUNT(*) FROM files WHERE kind = 'd'")?,
            bytes: count("SELECT COALESCE(SUM(size), 0) FROM files WHERE kind <> 'd'")?,
            runs: count("SELECT COUNT(*) FROM runs")?,
        })
    }

    /// Replaces every row of a set (used by `state rebuild`).
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn clear_files(&self, set_id: i64) -> StateResult<()> {
        self.conn
            .execute("DELETE FROM files WHERE set_id = ?1", [set_id])
            .map_err(self.err())?;
        Ok(())
    }
}
