//! Content a killed run was about to replace or delete and had not yet
//! copied into the content area (history, see [`crate::history`] and
//! [`StateDb::take_rows`]): the next run copies it first.

use rusqlite::params;

use super::{StateDb, StateResult};
use crate::fs::scan::EntryKind;

/// One object whose content must be copied into the content area before
/// anything else happens at its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preserving {
    /// Relative path (text form); the object's key is the prefix joined to it.
    pub path: String,
    /// File or symlink.
    pub kind: EntryKind,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch (the copy's metadata).
    pub mtime_ns: i64,
    /// Permission bits (the copy's metadata).
    pub mode: u32,
    /// blake3 of the content, hex: names the copy's key.
    pub blake3: String,
    /// The ETag the object had: the copy is made only while it still has it.
    pub etag: String,
}

impl StateDb {
    /// What the set's killed runs left to copy into the content area, by path.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read.
    pub fn preserving(&self, set_id: i64) -> StateResult<Vec<Preserving>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT path, kind, size, mtime_ns, mode, blake3, etag FROM preserving
                 WHERE set_id = ?1 ORDER BY path",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([set_id], |r| {
                let kind: String = r.get(1)?;
                Ok(Preserving {
                    path: r.get(0)?,
                    kind: if kind == "l" {
                        EntryKind::Symlink
                    } else {
                        EntryKind::File
                    },
                    size: r.get::<_, i64>(2)? as u64,
                    mtime_ns: r.get(3)?,
                    mode: r.get(4)?,
                    blake3: r.get(5)?,
                    etag: r.get(6)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Forgets an entry whose content is safe (copied, or no longer held by the object).
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be written.
    pub fn preserved(&self, set_id: i64, path: &str) -> StateResult<()> {
        self.conn
            .execute(
                "DELETE FROM preserving WHERE set_id = ?1 AND path = ?2",
                params![set_id, path],
            )
            .map(drop)
            .map_err(self.err())
    }
}
