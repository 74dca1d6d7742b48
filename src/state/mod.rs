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
//! then it is opened `immutable`). A file older than this build is read
//! through an upgraded scratch copy, and stays as it is until a writer
//! upgrades it.
//!
//! Concurrency: WAL mode lets readers (`state` commands) run beside a backup;
//! a backup takes an exclusive lock file per set (`runs.rs`), so two runs
//! of one set never interleave. A `files` row claims that the object exists
//! remotely with that content: callers write it only after the upload or
//! copy succeeded, in batched transactions.
//!
//! By concern: `open.rs` (opening, migrations), `files.rs` (the `files`
//! rows), `sets.rs` (the backup sets and their names), `runs.rs` (run
//! history and the per-set lock), `uploads.rs` (the multipart journal),
//! `inspect.rs` (read-only queries behind the `state` commands),
//! `verify_checks.rs` (what `verify --deep --sample` checked and when).

use std::path::{Path, PathBuf};

use rusqlite::Connection;

mod files;
mod inspect;
mod locks;
mod open;
mod preserving;
mod runs;
mod sets;
mod uploads;
mod verify_checks;

pub use files::{FileChange, FileRow, Taking};
pub use inspect::{RunRow, SetSummary, Stats};
pub use preserving::Preserving;
pub use runs::{RunCounts, RunLock, RunStatus};
pub use sets::NamedSet;
pub use uploads::JournaledUpload;
pub use verify_checks::{CheckResult, VerifyCheck};

use files::row_to_file;
use open::state_dir;

/// What can go wrong with the state file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// SQLite refused: corrupt file, not a database, disk full, ….
    ///
    /// Only a damaged file (SQLite's `SQLITE_CORRUPT`, `SQLITE_NOTADB`)
    /// gets the advice to move it aside; a full disk says so, and other
    /// causes are shown as they are (see [`sqlite_advice`]).
    #[error("state file '{}': {}{}", path.display(), sqlite_cause(cause, path), sqlite_advice(cause, path))]
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

/// An open state database.
pub struct StateDb {
    conn: Connection,
    path: PathBuf,
    /// For an older state file opened to read only: the directory of the
    /// upgraded copy `conn` reads, removed when this is dropped.
    _scratch: Option<tempfile::TempDir>,
}

impl StateDb {
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
}

/// SQLite's error as shown: for a directory (which SQLite reports as an
/// I/O error or as a file it cannot open) or a file it cannot open, the
/// reason the system gives; rusqlite's text would end with the path or the
/// `file:` URI it was opened by, which the user never typed.
fn sqlite_cause(cause: &rusqlite::Error, path: &Path) -> String {
    if path.is_dir() {
        return "it is a directory (give --state the path of a file)".to_string();
    }
    if cause.sqlite_error_code() != Some(rusqlite::ErrorCode::CannotOpen) {
        return cause.to_string();
    }
    match std::fs::File::open(path) {
        Err(e) => format!("cannot open it: {e}"),
        Ok(_) => "SQLite cannot open it".to_string(),
    }
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

/// Seconds since the epoch (UTC), the unit of `uploaded_at` and of a run's times.
pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::open::MIGRATIONS;
    use super::*;
    use crate::fs::scan::{EntryKind, Stamp};

    /// The set's file rows (not directories), in path order.
    fn file_rows(db: &StateDb, set_id: i64) -> Vec<FileRow> {
        db.with_file_rows(set_id, |rows| rows.collect()).unwrap()
    }

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
            checksum: None,
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
        let rows = file_rows(&db, 1);
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].path.as_str(), rows[0].blake3.as_str()), ("a.txt", "h"));
        assert_eq!(db.dir_rows(1).unwrap().len(), 1);
        let link = FileRow {
            kind: EntryKind::Symlink,
            ..row("link", "t")
        };
        db.apply(1, &[FileChange::Upsert(link.clone())]).unwrap();
        assert_eq!(file_rows(&db, 1)[1], link);
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
        assert_eq!(db.totals_and_dirs(set + 1).unwrap(), (0, 0, 0));
        let dir = FileRow {
            kind: EntryKind::Dir,
            size: 0,
            ..row("a", "")
        };
        db.apply(set, &[FileChange::Upsert(dir)]).unwrap();
        assert_eq!(db.totals_and_dirs(set).unwrap(), (2, 6, 1));
        db.apply(set, &[FileChange::Remove("a".into())]).unwrap();
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
