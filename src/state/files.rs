//! The `files` table: one row per remote file, directory or symlink of a
//! set, read in path (byte) order by the planner and written in batched
//! transactions only after the store confirmed each change.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use super::{StateDb, StateError, StateResult};
use crate::fs::scan::{EntryKind, Stamp};

/// What the state knows about one remote file or directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    /// Relative path, `/`-separated.
    pub path: String,
    /// File or directory.
    pub kind: EntryKind,
    /// Size in bytes.
    pub size: u64,
    /// Local mtime when backed up, ns since the epoch.
    pub mtime_ns: i64,
    /// Unix permission bits.
    pub mode: u32,
    /// blake3 hex of the content ("" for directories).
    pub blake3: String,
    /// The object's ETag ("" for directories).
    pub etag: String,
    /// The object's version on a versioned bucket.
    pub version_id: Option<String>,
    /// When it was uploaded, unix seconds.
    pub uploaded_at: i64,
    /// When the local file was last seen with this content, ns since the epoch.
    pub checked_ns: i64,
    /// Change time, inode and device when it was last seen; `None` when not
    /// known (a row rebuilt from a manifest, or older than schema version
    /// 3), which makes the next backup hash the file.
    pub stamp: Option<Stamp>,
    /// The additional checksum the store said the object has
    /// (`--checksum-algorithm`); `None` when none was asked for or named.
    pub checksum: Option<crate::fs::checksum::StoredChecksum>,
}

/// One change to the `files` table.
#[derive(Debug, Clone)]
pub enum FileChange {
    /// Insert or replace a row.
    Upsert(FileRow),
    /// Remove the row for this path.
    Remove(String),
    /// The content this path's object held before the run is safe (copied
    /// into the content area, or needing no copy): its entry in the
    /// `preserving` table goes (see [`StateDb::take_rows`]).
    Kept(String),
}

/// How a backup is about to change the object of a path whose row it
/// takes ([`StateDb::take_rows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taking {
    /// The object is to be deleted (recorded in `deleting`).
    pub delete: bool,
    /// Its content is to be copied into the content area first (recorded
    /// in `preserving`, when the row has content): history, see
    /// [`crate::history`].
    pub keep: bool,
}

impl StateDb {
    /// Streams a set's rows in path (byte) order, never holding them all.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn for_each_file(
        &self,
        set_id: i64,
        mut f: impl FnMut(FileRow) -> StateResult<()>,
    ) -> StateResult<()> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT path, kind, size, mtime_ns, mode, blake3, etag, version_id, uploaded_at, checked_ns, ctime_ns, inode, device, checksum
                 FROM files WHERE set_id = ?1 ORDER BY path",
            )
            .map_err(self.err())?;
        let rows = st.query_map([set_id], row_to_file).map_err(self.err())?;
        for row in rows {
            f(row.map_err(self.err())?)?;
        }
        Ok(())
    }

    /// Hands `f` the set's file rows (not directories) in path (byte) order,
    /// streamed from the database, never all in memory.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn with_file_rows<T>(
        &self,
        set_id: i64,
        f: impl FnOnce(&mut dyn Iterator<Item = FileRow>) -> T,
    ) -> StateResult<T> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT path, kind, size, mtime_ns, mode, blake3, etag, version_id, uploaded_at, checked_ns, ctime_ns, inode, device, checksum
                 FROM files WHERE set_id = ?1 AND kind <> 'd' ORDER BY path",
            )
            .map_err(self.err())?;
        let mut rows = st.query_map([set_id], row_to_file).map_err(self.err())?;
        let mut failure = None;
        let out = {
            let mut iter = std::iter::from_fn(|| match rows.next()? {
                Ok(row) => Some(row),
                Err(e) => {
                    failure = Some(e);
                    None
                }
            });
            f(&mut iter)
        };
        match failure {
            Some(e) => Err(self.err()(e)),
            None => Ok(out),
        }
    }

    /// The set's directory rows, keyed by path.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn dir_rows(&self, set_id: i64) -> StateResult<HashMap<String, FileRow>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT path, kind, size, mtime_ns, mode, blake3, etag, version_id, uploaded_at, checked_ns, ctime_ns, inode, device, checksum
                 FROM files WHERE set_id = ?1 AND kind = 'd'",
            )
            .map_err(self.err())?;
        let rows = st.query_map([set_id], row_to_file).map_err(self.err())?;
        rows.map(|r| r.map(|row| (row.path.clone(), row)))
            .collect::<Result<_, _>>()
            .map_err(self.err())
    }

    /// Whether the set has any rows at all.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn has_rows(&self, set_id: i64) -> StateResult<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM files WHERE set_id = ?1)",
                [set_id],
                |r| r.get(0),
            )
            .map_err(self.err())
    }

    /// Rows that claim this content, in path order (for server-side copies).
    /// Pinned to the hash index: without statistics SQLite would rather walk
    /// the whole set in path order than sort a handful of matches.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn rows_with_content(&self, set_id: i64, blake3: &str, size: u64) -> StateResult<Vec<FileRow>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT path, kind, size, mtime_ns, mode, blake3, etag, version_id, uploaded_at, checked_ns, ctime_ns, inode, device, checksum
                 FROM files INDEXED BY files_by_hash
                 WHERE set_id = ?1 AND blake3 = ?2 AND size = ?3 AND kind = 'f'
                 ORDER BY path LIMIT 16",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map(params![set_id, blake3, size as i64], row_to_file)
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Number of files (not directories) and their total size in a set.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn totals(&self, set_id: i64) -> StateResult<(u64, u64)> {
        self.conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM files WHERE set_id = ?1 AND kind <> 'd'",
                [set_id],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(self.err())
    }

    /// Number of files (not directories), their total size, and number of
    /// directories in a set, from one pass over its rows without decoding
    /// them (what a manifest's header counts: at ten million rows, counting
    /// directories by streaming every row cost a full read of the set).
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn totals_and_dirs(&self, set_id: i64) -> StateResult<(u64, u64, u64)> {
        self.conn
            .query_row(
                "SELECT COALESCE(SUM(kind <> 'd'), 0),
                        COALESCE(SUM(CASE WHEN kind <> 'd' THEN size ELSE 0 END), 0),
                        COALESCE(SUM(kind = 'd'), 0)
                 FROM files WHERE set_id = ?1",
                [set_id],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        r.get::<_, i64>(1)? as u64,
                        r.get::<_, i64>(2)? as u64,
                    ))
                },
            )
            .map_err(self.err())
    }

    /// Removes the rows of `paths` in one transaction and returns them;
    /// the paths [`Taking::delete`] names are recorded in the `deleting`
    /// table, and those [`Taking::keep`] names (when the row has content
    /// and `keep` says so for the row) in the `preserving` table, in the
    /// same transaction.
    ///
    /// A backup calls this before it replaces or deletes those objects: a
    /// run killed halfway then leaves no row claiming content the bucket
    /// may no longer hold (which a later run could pick as a copy source),
    /// only rows it can trust and paths it will look at afresh; and no
    /// object it was about to delete unclaimed: the next run finishes the
    /// deletes [`StateDb::deletes_under_way`] lists, after copying into the
    /// content area what [`StateDb::preserving`] lists.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn take_rows(
        &mut self,
        set_id: i64,
        paths: &[(&str, Taking)],
        keep: impl Fn(&FileRow) -> bool,
    ) -> StateResult<Vec<FileRow>> {
        let path = self.path.clone();
        let err = |source| StateError::Sqlite {
            path: path.clone(),
            cause: source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let mut taken = Vec::new();
        {
            let mut select = tx
                .prepare_cached(
                    "SELECT path, kind, size, mtime_ns, mode, blake3, etag, version_id, uploaded_at, checked_ns, ctime_ns, inode, device, checksum
                     FROM files WHERE set_id = ?1 AND path = ?2",
                )
                .map_err(err)?;
            let mut remove = tx
                .prepare_cached("DELETE FROM files WHERE set_id = ?1 AND path = ?2")
                .map_err(err)?;
            let mut deleting = tx
                .prepare_cached("INSERT OR REPLACE INTO deleting (set_id, path, kind) VALUES (?1, ?2, ?3)")
                .map_err(err)?;
            let mut preserving = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO preserving (set_id, path, kind, size, mtime_ns, mode, blake3, etag)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(err)?;
            for &(p, taking) in paths {
                if let Some(row) = select
                    .query_row(params![set_id, p], row_to_file)
                    .optional()
                    .map_err(err)?
                {
                    remove.execute(params![set_id, p]).map_err(err)?;
                    if taking.delete {
                        deleting
                            .execute(params![set_id, p, kind_code(row.kind)])
                            .map_err(err)?;
                    }
                    if taking.keep && row.kind.has_content() && !row.blake3.is_empty() && keep(&row) {
                        preserving
                            .execute(params![
                                set_id,
                                p,
                                kind_code(row.kind),
                                row.size as i64,
                                row.mtime_ns,
                                row.mode,
                                row.blake3,
                                row.etag
                            ])
                            .map_err(err)?;
                    }
                    taken.push(row);
                }
            }
        }
        tx.commit().map_err(err)?;
        Ok(taken)
    }

    /// Applies a batch of changes in one transaction. A change to a path
    /// ends any delete under way there (see [`StateDb::take_rows`]): the
    /// store confirmed it (the row is removed) or refused it (the row comes
    /// back), or the path was written anew.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn apply(&mut self, set_id: i64, changes: &[FileChange]) -> StateResult<()> {
        let path = self.path.clone();
        let err = |source| StateError::Sqlite {
            path: path.clone(),
            cause: source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO files
                     (set_id, path, kind, size, mtime_ns, mode, blake3, etag, version_id, uploaded_at, checked_ns,
                      ctime_ns, inode, device, checksum)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                )
                .map_err(err)?;
            let mut remove = tx
                .prepare_cached("DELETE FROM files WHERE set_id = ?1 AND path = ?2")
                .map_err(err)?;
            let mut done = tx
                .prepare_cached("DELETE FROM deleting WHERE set_id = ?1 AND path = ?2")
                .map_err(err)?;
            let mut kept = tx
                .prepare_cached("DELETE FROM preserving WHERE set_id = ?1 AND path = ?2")
                .map_err(err)?;
            for change in changes {
                let path = match change {
                    FileChange::Upsert(r) => &r.path,
                    FileChange::Remove(p) => p,
                    FileChange::Kept(p) => {
                        kept.execute(params![set_id, p]).map_err(err)?;
                        continue;
                    }
                };
                done.execute(params![set_id, path]).map_err(err)?;
                match change {
                    FileChange::Upsert(r) => upsert.execute(params![
                        set_id,
                        r.path,
                        kind_code(r.kind),
                        r.size as i64,
                        r.mtime_ns,
                        r.mode,
                        r.blake3,
                        r.etag,
                        r.version_id,
                        r.uploaded_at,
                        r.checked_ns,
                        r.stamp.map(|s| s.ctime_ns),
                        // Stored as SQLite's signed 64 bits, bit for bit.
                        r.stamp.map(|s| s.inode as i64),
                        r.stamp.map(|s| s.device as i64),
                        r.checksum.as_ref().map(|c| c.to_text())
                    ]),
                    FileChange::Remove(p) => remove.execute(params![set_id, p]),
                    FileChange::Kept(_) => continue,
                }
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }
}

impl StateDb {
    /// The deletes a killed run left under way (see [`StateDb::take_rows`]):
    /// each path, and whether it has an object (not a directory's row).
    /// A path that has a row again (rebuilt from a snapshot, or written
    /// since) is left out and forgotten: its object is that row's.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn deletes_under_way(&self, set_id: i64) -> StateResult<Vec<(String, bool)>> {
        self.conn
            .execute(
                // Correlated, so SQLite looks each (rare) journaled path up in
                // the files table's key; `path IN (SELECT …)` built a
                // temporary index of every path of the set on every run
                // (4,000 instructions a file on an unchanged re-run).
                "DELETE FROM deleting WHERE set_id = ?1
                 AND EXISTS (SELECT 1 FROM files f WHERE f.set_id = ?1 AND f.path = deleting.path)",
                [set_id],
            )
            .map_err(self.err())?;
        let mut stmt = self
            .conn
            .prepare("SELECT path, kind FROM deleting WHERE set_id = ?1 ORDER BY path")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([set_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)? != "d"))
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Forgets a delete under way whose object the store confirmed gone.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn delete_done(&self, set_id: i64, path: &str) -> StateResult<()> {
        self.conn
            .execute(
                "DELETE FROM deleting WHERE set_id = ?1 AND path = ?2",
                params![set_id, path],
            )
            .map(drop)
            .map_err(self.err())
    }
}

/// The `kind` column's code for an entry kind.
fn kind_code(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::File => "f",
        EntryKind::Dir => "d",
        EntryKind::Symlink => "l",
    }
}

/// A `files` row, selected with the columns in the order of [`FileRow`].
pub(super) fn row_to_file(r: &rusqlite::Row<'_>) -> rusqlite::Result<FileRow> {
    let kind: String = r.get(1)?;
    Ok(FileRow {
        path: r.get(0)?,
        kind: match kind.as_str() {
            "d" => EntryKind::Dir,
            "l" => EntryKind::Symlink,
            _ => EntryKind::File,
        },
        size: r.get::<_, i64>(2)? as u64,
        mtime_ns: r.get(3)?,
        mode: r.get(4)?,
        blake3: r.get(5)?,
        etag: r.get(6)?,
        version_id: r.get(7)?,
        uploaded_at: r.get(8)?,
        checked_ns: r.get(9)?,
        stamp: match (
            r.get::<_, Option<i64>>(10)?,
            r.get::<_, Option<i64>>(11)?,
            r.get::<_, Option<i64>>(12)?,
        ) {
            (Some(ctime_ns), Some(inode), Some(device)) => Some(Stamp {
                ctime_ns,
                inode: inode as u64,
                device: device as u64,
            }),
            _ => None,
        },
        checksum: r
            .get::<_, Option<String>>(13)?
            .and_then(|c| crate::fs::checksum::StoredChecksum::from_text(&c)),
    })
}
