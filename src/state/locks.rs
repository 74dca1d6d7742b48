//! The Object Lock retention known on each file row's object version
//! (table `locks`, migration 9; see [`crate::lock`] and the backup's
//! `relock` stage): which versions a locked run wrote or extended, so a
//! run knows which of the versions its snapshot names would be unlocked
//! too early, and the snapshot's lock is the earliest of them.

use rusqlite::params;

use super::{StateDb, StateResult};

impl StateDb {
    /// Records `until` (Unix seconds) and `mode` (S3's spelling) for the
    /// versions of the set's file and symlink rows written after `after`
    /// (Unix seconds: rows a run with that lock wrote, `files.uploaded_at`).
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be written.
    pub fn lock_written(&self, set_id: i64, after: i64, until: i64, mode: &str) -> StateResult<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO locks (set_id, path, version_id, until, mode)
                 SELECT set_id, path, version_id, ?3, ?4 FROM files
                 WHERE set_id = ?1 AND kind != 'd' AND version_id IS NOT NULL AND uploaded_at > ?2",
                params![set_id, after, until, mode],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The (path, version ID, recorded mode) of the set's file and symlink
    /// rows whose version has no known lock reaching `before` (Unix
    /// seconds), by path; the mode is `None` where none is known.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read.
    pub fn locks_ending_before(
        &self,
        set_id: i64,
        before: i64,
    ) -> StateResult<Vec<(String, String, Option<String>)>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT f.path, f.version_id, l.mode FROM files f
                 LEFT JOIN locks l ON l.set_id = f.set_id AND l.path = f.path AND l.version_id = f.version_id
                 WHERE f.set_id = ?1 AND f.kind != 'd' AND f.version_id IS NOT NULL
                   AND (l.until IS NULL OR l.until < ?2)
                 ORDER BY f.path",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![set_id, before], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Records that the version `version_id` of `path` is locked until
    /// `until` in `mode` (S3's spelling).
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be written.
    pub fn lock_extended(
        &self,
        set_id: i64,
        path: &str,
        version_id: &str,
        until: i64,
        mode: &str,
    ) -> StateResult<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO locks (set_id, path, version_id, until, mode) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![set_id, path, version_id, until, mode],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The earliest lock end (Unix seconds) among the versions the set's
    /// file and symlink rows name, and whether every one of them is known
    /// to be locked in compliance mode: `None` when one of them has no
    /// known lock (or the set has no such row).
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read.
    pub fn lock_floor(&self, set_id: i64) -> StateResult<Option<(i64, bool)>> {
        let (floor, all_compliance): (Option<i64>, Option<bool>) = self
            .conn
            .query_row(
                "SELECT CASE WHEN COUNT(*) = COUNT(l.until) THEN MIN(l.until) END,
                        COALESCE(SUM(l.mode IS NOT 'COMPLIANCE'), 0) = 0 FROM files f
                 LEFT JOIN locks l ON l.set_id = f.set_id AND l.path = f.path AND l.version_id = f.version_id
                 WHERE f.set_id = ?1 AND f.kind != 'd'",
                [set_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.err())?;
        Ok(floor.map(|f| (f, all_compliance.unwrap_or(false))))
    }
}
