//! The local state file: what was uploaded, so a repeated backup decides
//! what changed without asking the bucket.
//!
//! One SQLite database per user (`$XDG_STATE_HOME/s3backup/state.db`, or
//! `--state FILE`) holds every backup set. Following cargo's SQLite layer:
//! the schema is an ordered list of `.sql` migrations embedded in the binary
//! and tracked by `PRAGMA user_version`, applied in one exclusive
//! transaction and never edited once shipped. A file written by a newer
//! s3backup (a higher `user_version`) is refused rather than guessed at.
//!
//! Only writers migrate, and only when there is work (cargo's rule): a
//! writer ([`StateDb::open`]: backup, `state rebuild`) reads the version
//! first and takes the exclusive transaction only for a file that needs
//! upgrading. Read-only commands (`state …`, `sets`) open with
//! [`StateDb::open_read_only`], which never writes the file, takes no
//! lock a backup would wait on, and works on a read-only copy (a 0444
//! file in a 0555 directory, where SQLite cannot create its `-shm` file:
//! then it is opened `immutable`). A file too old for them is refused
//! with the command that upgrades it ([`StateError::TooOld`]).
//!
//! Concurrency: WAL mode lets readers (`state` commands) run beside a backup;
//! a backup takes an exclusive lock file per set (`runs.rs`), so two runs
//! of one set never interleave. A `files` row claims that the object exists
//! remotely with that content: callers write it only after the upload or
//! copy succeeded, in batched transactions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use crate::fs::scan::{EntryKind, Stamp};

mod inspect;
mod runs;
mod uploads;

pub use inspect::{NamedSet, RunRow, SetSummary, Stats};

pub use runs::{RunCounts, RunLock, RunStatus};
pub use uploads::JournaledUpload;

/// Schema migrations, in order. Append only.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_initial.sql"),
    include_str!("../../migrations/0002_symlinks_and_upload_journal.sql"),
    include_str!("../../migrations/0003_change_time_and_inode.sql"),
];

/// What can go wrong with the state file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// SQLite refused: corrupt file, not a database, disk full, ….
    ///
    /// Only a damaged file (SQLite's `SQLITE_CORRUPT`, `SQLITE_NOTADB`)
    /// gets the advice to move it aside; a full disk says so, and other
    /// causes are shown as they are (see [`sqlite_advice`]).
    #[error("state file '{}': {cause}{}", path.display(), sqlite_advice(cause, path))]
    Sqlite {
        /// The state file.
        path: PathBuf,
        /// SQLite's error.
        cause: rusqlite::Error,
    },
    /// Written by a newer s3backup.
    #[error(
        "state file '{path}' has schema version {found}, newer than this s3backup understands ({known}): upgrade s3backup or use another --state file"
    )]
    TooNew {
        /// The state file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
    /// Written by an older s3backup, for a command that only reads.
    #[error(
        "state file '{path}' has schema version {found}, older than this s3backup's ({known}); commands that only read never upgrade it: run a backup with it once ('s3backup backup SOURCE TARGET', or 'backup --set NAME') or 's3backup state rebuild SOURCE TARGET', which upgrade it"
    )]
    TooOld {
        /// The state file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
    /// The directory the state file lives in cannot hold it: it cannot be
    /// made, is not a directory, or does not let this user create files
    /// (SQLite must create the `-wal` and `-shm` files beside the state
    /// file), with the operating system's own reason. The state file
    /// itself is not at fault, so nothing is said about moving it aside.
    #[error(
        "cannot use the state directory '{}' for '{}': {cause} ({}, or pass --state FILE elsewhere)",
        dir.display(),
        file.display(),
        if cause.kind() == std::io::ErrorKind::StorageFull { "free some space" } else { "make it writable" }
    )]
    Directory {
        /// The directory.
        dir: PathBuf,
        /// The state file meant to be in it.
        file: PathBuf,
        /// What the operating system said when a file was created there.
        cause: std::io::Error,
    },
    /// The directory or lock file could not be made.
    #[error("state file '{path}': {cause}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        cause: std::io::Error,
    },
    /// A set name already used by another set.
    #[error(
        "the name '{name}' is already used by the set backing up {set_source} to {target}; pick another name"
    )]
    NameTaken {
        /// The name.
        name: String,
        /// That set's source.
        set_source: String,
        /// That set's target.
        target: String,
    },
    /// Another run of the same backup set holds the lock.
    #[error("another s3backup run is already backing up this set (lock '{0}'); wait for it to finish")]
    Busy(PathBuf),
}

/// Result alias for state operations.
pub type StateResult<T> = Result<T, StateError>;

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
}

/// One change to the `files` table.
#[derive(Debug, Clone)]
pub enum FileChange {
    /// Insert or replace a row.
    Upsert(FileRow),
    /// Remove the row for this path.
    Remove(String),
}

/// An open state database.
pub struct StateDb {
    conn: Connection,
    path: PathBuf,
}

impl StateDb {
    /// The default location: under the XDG state directory.
    pub fn default_path() -> Option<PathBuf> {
        dirs::state_dir()
            .or_else(dirs::data_local_dir)
            .map(|d| d.join("s3backup").join("state.db"))
    }

    /// Opens (creating if needed) the state file and brings its schema up to date.
    ///
    /// A new state file (and a directory made for it) is readable by the
    /// user alone: it lists every file name that was backed up.
    ///
    /// A directory that cannot hold the state (it cannot be made, is not a
    /// directory, is read-only for this user, or SQLite cannot create its
    /// `-wal`/`-shm` files there) is [`StateError::Directory`], naming the
    /// directory and the operating system's reason.
    pub fn open(path: &Path) -> StateResult<Self> {
        let dir = state_dir(path);
        let in_dir = |cause| StateError::Directory {
            dir: dir.clone(),
            file: path.to_path_buf(),
            cause,
        };
        if !dir.is_dir() {
            private_dir_builder().create(&dir).map_err(|cause| {
                // A file where a directory should be: name that file.
                match dir.ancestors().find(|a| a.exists() && !a.is_dir()) {
                    Some(file) => StateError::Directory {
                        dir: file.to_path_buf(),
                        file: path.to_path_buf(),
                        cause: std::io::Error::new(cause.kind(), "it is not a directory"),
                    },
                    None => in_dir(cause),
                }
            })?;
        }
        if !path.exists() {
            create_private_file(path).map_err(in_dir)?;
        }
        let opened = Connection::open(path)
            .map_err(|source| StateError::Sqlite {
                path: path.to_path_buf(),
                cause: source,
            })
            .and_then(|conn| Self::init(conn, path));
        match opened {
            Err(StateError::Sqlite { cause, .. }) if cannot_open(&cause) => {
                // SQLite says only "unable to open database file" or "disk
                // I/O error": ask the operating system why, by creating a
                // file where SQLite had to and writing as much as its
                // `-shm` file needs (a full disk lets an empty file be made).
                let probe = tempfile::Builder::new()
                    .prefix(".s3backup-probe-")
                    .tempfile_in(&dir)
                    .map_err(|e| std::io::Error::new(e.kind(), strip_probe_name(&e)))
                    .and_then(|mut probe| {
                        std::io::Write::write_all(probe.as_file_mut(), &[0; 32 * 1024])?;
                        probe.as_file().sync_data()
                    });
                match probe {
                    Err(e) => Err(in_dir(e)),
                    Ok(()) => Err(StateError::Sqlite {
                        path: path.to_path_buf(),
                        cause,
                    }),
                }
            }
            other => other,
        }
    }

    /// A second, read-only connection to a state file another connection
    /// has opened (and migrated): a reader whose statements see a stable
    /// snapshot while the writer goes on (WAL mode).
    pub fn open_reader(path: &Path) -> StateResult<Self> {
        let err = |source| StateError::Sqlite {
            path: path.to_path_buf(),
            cause: source,
        };
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(err)?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Opens an existing state file for reading only: nothing is written
    /// to it and no lock is taken that a running backup would wait on. A
    /// file SQLite cannot open read-only in WAL mode (no `-shm` file, and
    /// a directory this user cannot create one in: a read-only copy) is
    /// opened `immutable`.
    ///
    /// # Errors
    /// [`StateError::TooOld`] for a schema older than this build's (only
    /// writers upgrade), [`StateError::TooNew`] for a newer one,
    /// [`StateError::Sqlite`] if SQLite cannot read it.
    pub fn open_read_only(path: &Path) -> StateResult<Self> {
        let err = |cause| StateError::Sqlite {
            path: path.to_path_buf(),
            cause,
        };
        // The schema is read too, so a damaged file is reported here, before
        // a command prints anything, as a writer's open reports it.
        let version = |conn: &Connection| {
            conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
            conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        };
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let plain = Connection::open_with_flags(path, flags).and_then(|c| version(&c).map(|v| (c, v)));
        let (conn, found) = match plain {
            Err(e) if cannot_open(&e) => {
                let conn = Connection::open_with_flags(
                    immutable_uri(path),
                    flags | rusqlite::OpenFlags::SQLITE_OPEN_URI,
                )
                .map_err(err)?;
                let found = version(&conn).map_err(err)?;
                (conn, found)
            }
            other => other.map_err(err)?,
        };
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(err)?;
        let known = MIGRATIONS.len() as i64;
        let (path, found) = (path.to_path_buf(), found);
        match found.cmp(&known) {
            std::cmp::Ordering::Less => Err(StateError::TooOld { path, found, known }),
            std::cmp::Ordering::Greater => Err(StateError::TooNew { path, found, known }),
            std::cmp::Ordering::Equal => Ok(Self { conn, path }),
        }
    }

    fn init(mut conn: Connection, path: &Path) -> StateResult<Self> {
        let err = |source| StateError::Sqlite {
            path: path.to_path_buf(),
            cause: source,
        };
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", true).map_err(err)?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
        migrate(&mut conn, path)?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// The file this state lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StateError + '_ {
        |source| StateError::Sqlite {
            path: self.path.clone(),
            cause: source,
        }
    }

    /// The ID of the set for (source, target), if it was ever backed up.
    pub fn find_set(&self, source: &str, target: &str) -> StateResult<Option<i64>> {
        self.conn
            .prepare_cached("SELECT id FROM backup_sets WHERE source = ?1 AND target = ?2")
            .and_then(|mut st| st.query_row(params![source, target], |r| r.get(0)).optional())
            .map_err(self.err())
    }

    /// The ID of the set for (source, target), creating it if new.
    pub fn ensure_set(&self, source: &str, target: &str) -> StateResult<i64> {
        if let Some(id) = self.find_set(source, target)? {
            return Ok(id);
        }
        self.conn
            .execute(
                "INSERT INTO backup_sets (source, target, created_at) VALUES (?1, ?2, ?3)",
                params![source, target, chrono::Utc::now().timestamp()],
            )
            .map_err(self.err())?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Streams a set's rows in path (byte) order, never holding them all.
    pub fn for_each_file(
        &self,
        set_id: i64,
        mut f: impl FnMut(FileRow) -> StateResult<()>,
    ) -> StateResult<()> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT path, kind, size, mtime_ns, mode, blake3, etag, version_id, uploaded_at, checked_ns, ctime_ns, inode, device
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
    pub fn with_file_rows<T>(
        &self,
        set_id: i64,
        f: impl FnOnce(&mut dyn Iterator<Item = FileRow>) -> T,
    ) -> StateResult<T> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT path, kind, size, mtime_ns, mode, blake3, etag, version_id, uploaded_at, checked_ns, ctime_ns, inode, device
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
    pub fn dir_rows(&self, set_id: i64) -> StateResult<HashMap<String, FileRow>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT path, kind, size, mtime_ns, mode, blake3, etag, version_id, uploaded_at, checked_ns, ctime_ns, inode, device
                 FROM files WHERE set_id = ?1 AND kind = 'd'",
            )
            .map_err(self.err())?;
        let rows = st.query_map([set_id], row_to_file).map_err(self.err())?;
        rows.map(|r| r.map(|row| (row.path.clone(), row)))
            .collect::<Result<_, _>>()
            .map_err(self.err())
    }

    /// Whether the set has any rows at all.
    pub fn has_rows(&self, set_id: i64) -> StateResult<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM files WHERE set_id = ?1)",
                [set_id],
                |r| r.get(0),
            )
            .map_err(self.err())
    }

    /// Whether any backup of the set was ever begun with this state file.
    pub fn has_runs(&self, set_id: i64) -> StateResult<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE set_id = ?1 AND kind = 'backup')",
                [set_id],
                |r| r.get(0),
            )
            .map_err(self.err())
    }

    /// Rows that claim this content, in path order (for server-side copies).
    /// Pinned to the hash index: without statistics SQLite would rather walk
    /// the whole set in path order than sort a handful of matches.
    pub fn rows_with_content(&self, set_id: i64, blake3: &str, size: u64) -> StateResult<Vec<FileRow>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT path, kind, size, mtime_ns, mode, blake3, etag, version_id, uploaded_at, checked_ns, ctime_ns, inode, device
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

    /// Up to `limit` file rows after `after` in path order: a page of the
    /// set, for readers that must not hold the connection between pages.
    pub fn file_rows_after(&self, set_id: i64, after: &str, limit: usize) -> StateResult<Vec<FileRow>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT path, kind, size, mtime_ns, mode, blake3, etag, version_id, uploaded_at, checked_ns, ctime_ns, inode, device
                 FROM files WHERE set_id = ?1 AND kind <> 'd' AND path > ?2 ORDER BY path LIMIT ?3",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map(params![set_id, after, limit as i64], row_to_file)
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Number of files (not directories) and their total size in a set.
    pub fn totals(&self, set_id: i64) -> StateResult<(u64, u64)> {
        self.conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM files WHERE set_id = ?1 AND kind <> 'd'",
                [set_id],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(self.err())
    }

    /// Removes the rows of `paths` in one transaction and returns them.
    ///
    /// A backup calls this before it replaces or deletes those objects: a
    /// run killed halfway then leaves no row claiming content the bucket
    /// may no longer hold (which a later run could pick as a copy source),
    /// only rows it can trust and paths it will look at afresh.
    pub fn take_rows(&mut self, set_id: i64, paths: &[&str]) -> StateResult<Vec<FileRow>> {
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
                    "SELECT path, kind, size, mtime_ns, mode, blake3, etag, version_id, uploaded_at, checked_ns, ctime_ns, inode, device
                     FROM files WHERE set_id = ?1 AND path = ?2",
                )
                .map_err(err)?;
            let mut remove = tx
                .prepare_cached("DELETE FROM files WHERE set_id = ?1 AND path = ?2")
                .map_err(err)?;
            for p in paths {
                if let Some(row) = select
                    .query_row(params![set_id, p], row_to_file)
                    .optional()
                    .map_err(err)?
                {
                    remove.execute(params![set_id, p]).map_err(err)?;
                    taken.push(row);
                }
            }
        }
        tx.commit().map_err(err)?;
        Ok(taken)
    }

    /// Applies a batch of changes in one transaction.
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
                      ctime_ns, inode, device)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                )
                .map_err(err)?;
            let mut remove = tx
                .prepare_cached("DELETE FROM files WHERE set_id = ?1 AND path = ?2")
                .map_err(err)?;
            for change in changes {
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
                        r.stamp.map(|s| s.device as i64)
                    ]),
                    FileChange::Remove(p) => remove.execute(params![set_id, p]),
                }
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }
}

/// The directory a state file lives in (`.` for a bare file name).
fn state_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Whether SQLite could not open or write the file for a reason of its
/// directory or permissions rather than of its content: `SQLITE_CANTOPEN`
/// (it cannot create the `-wal`/`-shm` files, or the file), `SQLITE_PERM`
/// and `SQLITE_READONLY` (a file it had to open read-only), and
/// `SQLITE_IOERR` (what opening an existing state on a full disk gives:
/// the `-shm` file cannot grow).
fn cannot_open(cause: &rusqlite::Error) -> bool {
    matches!(
        cause.sqlite_error_code(),
        Some(
            rusqlite::ErrorCode::CannotOpen
                | rusqlite::ErrorCode::PermissionDenied
                | rusqlite::ErrorCode::ReadOnly
                | rusqlite::ErrorCode::SystemIoFailure
        )
    )
}

/// tempfile's error text ends with the probe's random name: left out.
fn strip_probe_name(e: &std::io::Error) -> String {
    let text = e.to_string();
    text.split(" at path ").next().unwrap_or(&text).to_string()
}

/// What a SQLite error on the state file adds to its message: moving the
/// file aside for a damaged file (`SQLITE_CORRUPT`, `SQLITE_NOTADB`: the
/// next backup rebuilds it from the latest snapshot), freeing space for a
/// full disk (`SQLITE_FULL`; a healthy state must not be moved aside for
/// that), nothing for anything else.
fn sqlite_advice(cause: &rusqlite::Error, path: &Path) -> String {
    match cause.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
            " (if it is damaged, move it aside: the next backup rebuilds it from the latest snapshot; or run 's3backup state rebuild SOURCE TARGET')".to_string()
        }
        Some(rusqlite::ErrorCode::DiskFull) => format!(
            " (the disk holding '{}' is full: free some space and run again)",
            state_dir(path).display()
        ),
        _ => String::new(),
    }
}

fn private_dir_builder() -> std::fs::DirBuilder {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
}

fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other.map(drop),
    }
}

fn kind_code(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::File => "f",
        EntryKind::Dir => "d",
        EntryKind::Symlink => "l",
    }
}

fn row_to_file(r: &rusqlite::Row<'_>) -> rusqlite::Result<FileRow> {
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
    })
}

/// A `file:` URI opening `path` immutable (SQLite then takes no locks and
/// needs no `-shm` file), with the characters URIs reserve escaped.
fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii() && !b.is_ascii_control() && !matches!(b, b'%' | b'?' | b'#') {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri + "?immutable=1"
}

/// Brings the schema to the newest version in one exclusive transaction,
/// taken only when there is work: a file already up to date is not
/// written (nor locked) on open.
fn migrate(conn: &mut Connection, path: &Path) -> StateResult<()> {
    let err = |source| StateError::Sqlite {
        path: path.to_path_buf(),
        cause: source,
    };
    let known = MIGRATIONS.len() as i64;
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err)?;
    if current == known {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .map_err(err)?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err)?;
    if version > known {
        return Err(StateError::TooNew {
            path: path.to_path_buf(),
            found: version,
            known,
        });
    }
    for sql in &MIGRATIONS[version as usize..] {
        tx.execute_batch(sql).map_err(err)?;
    }
    tx.pragma_update(None, "user_version", known).map_err(err)?;
    tx.commit().map_err(err)
}

/// Seconds since the epoch (UTC), the unit of `uploaded_at` and of a run's times.
pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(path: &str, hash: &str) -> FileRow {
        FileRow {
            path: path.into(),
            kind: EntryKind::File,
            size: 3,
            mtime_ns: 42,
            mode: 0o644,
            blake3: hash.into(),
            etag: "e".into(),
            version_id: None,
            uploaded_at: 1,
            checked_ns: 2,
            stamp: Some(Stamp {
                ctime_ns: 40,
                inode: u64::MAX - 1,
                device: 1 << 63,
            }),
        }
    }

    #[test]
    fn a_version_1_file_is_upgraded_with_its_rows_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(
                "INSERT INTO backup_sets (id, source, target, created_at) VALUES (1, '/src', 's3://b/p', 0);
                 INSERT INTO files VALUES (1, 'a.txt', 'f', 3, 42, 420, 'h', 'e', NULL, 1, 2);
                 INSERT INTO files VALUES (1, 'd', 'd', 0, 42, 493, '', '', NULL, 1, 2);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let mut db = StateDb::open(&path).unwrap();
        let rows = db.file_rows_after(1, "", 100).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].path.as_str(), rows[0].blake3.as_str()), ("a.txt", "h"));
        assert_eq!(db.dir_rows(1).unwrap().len(), 1);
        let link = FileRow {
            kind: EntryKind::Symlink,
            ..row("link", "t")
        };
        db.apply(1, &[FileChange::Upsert(link.clone())]).unwrap();
        assert_eq!(db.file_rows_after(1, "", 100).unwrap()[1], link);
        let version: i64 = db
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }

    #[test]
    fn stores_and_streams_rows_in_byte_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StateDb::open(&dir.path().join("sub/state.db")).unwrap();
        let set = db.ensure_set("/src", "s3://b/p").unwrap();
        assert_eq!(db.ensure_set("/src", "s3://b/p").unwrap(), set);
        let changes: Vec<_> = ["a/b", "a.txt", "Z"]
            .iter()
            .map(|p| FileChange::Upsert(row(p, "h")))
            .collect();
        db.apply(set, &changes).unwrap();
        db.apply(set, &[FileChange::Remove("Z".into())]).unwrap();
        let mut seen = vec![];
        db.for_each_file(set, |r| {
            seen.push(r.path);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, ["a.txt", "a/b"]);
        assert_eq!(db.totals(set).unwrap(), (2, 6));
        assert_eq!(db.file(set, "a/b").unwrap(), Some(row("a/b", "h")));
        let streamed = db
            .with_file_rows(set, |rows| rows.map(|r| r.path).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(streamed, ["a.txt", "a/b"]);
    }

    #[test]
    fn reopening_keeps_schema_and_refuses_newer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(StateDb::open(&path).unwrap());
        drop(StateDb::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = StateDb::open(&path).err().unwrap();
        assert!(matches!(err, StateError::TooNew { found: 99, .. }), "{err}");
    }

    /// A real `SQLITE_FULL` (the database held to its current size by
    /// `max_page_count`, as a full disk would) says the disk is full and
    /// does not advise moving a healthy state aside.
    #[test]
    fn a_full_disk_says_so_without_advising_to_move_the_state_aside() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StateDb::open(&dir.path().join("state.db")).unwrap();
        let set = db.ensure_set("/src", "s3://b/p").unwrap();
        let pages: i64 = db.conn.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        db.conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
            .unwrap();
        let changes: Vec<_> = (0..5000)
            .map(|i| FileChange::Upsert(row(&format!("dir/file-{i:05}"), "h")))
            .collect();
        let err = db.apply(set, &changes).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(&err, StateError::Sqlite { cause, .. }
                if cause.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)),
            "{text}"
        );
        assert!(
            text.contains("is full") && text.contains(&dir.path().display().to_string()),
            "{text}"
        );
        assert!(!text.contains("move it aside"), "{text}");
    }

    /// A state directory that is a regular file: the directory and the
    /// operating system's reason, no advice about the state file.
    #[test]
    fn a_state_directory_that_is_a_file_is_named_with_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, "x").unwrap();
        for path in [file.join("state.db"), file.join("sub/state.db")] {
            let err = StateDb::open(&path).err().unwrap();
            let text = err.to_string();
            assert!(matches!(err, StateError::Directory { .. }), "{text}");
            assert!(text.contains("plain-file'"), "{text}");
            assert!(text.contains("ot a directory"), "{text}");
            assert!(!text.contains("move it aside"), "{text}");
        }
    }

    #[test]
    fn garbage_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        std::fs::write(&path, vec![b'x'; 8192]).unwrap();
        let err = StateDb::open(&path).err().unwrap();
        assert!(err.to_string().contains("state.db"), "{err}");
        assert!(err.to_string().contains("move it aside"), "{err}");
    }
}
