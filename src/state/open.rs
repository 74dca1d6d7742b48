//! Opening the state file: creating it (private to the user), the
//! writer's open that migrates when there is work, the read-only open
//! that never writes, and the ordered schema migrations (see the module
//! doc of [`super`] for the rules).

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::{StateDb, StateError, StateResult};

/// Schema migrations, in order. Append only.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_initial.sql"),
    include_str!("../../migrations/0002_symlinks_and_upload_journal.sql"),
    include_str!("../../migrations/0003_change_time_and_inode.sql"),
    include_str!("../../migrations/0004_deletes_under_way.sql"),
    include_str!("../../migrations/0005_history.sql"),
    include_str!("../../migrations/0006_exclude.sql"),
    include_str!("../../migrations/0007_account.sql"),
    include_str!("../../migrations/0008_guard.sql"),
    include_str!("../../migrations/0009_sum.sql"),
    include_str!("../../migrations/0010_lock.sql"),
    include_str!("../../migrations/0011_lock_mode.sql"),
];

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
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
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
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
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
            _scratch: None,
        })
    }

    /// Opens an existing state file for reading only: nothing is written
    /// to it and no lock is taken that a running backup would wait on. A
    /// file SQLite cannot open read-only in WAL mode (no `-shm` file, and
    /// a directory this user cannot create one in: a read-only copy) is
    /// opened `immutable`. A file with no table and version 0 (created by
    /// a writer stopped before setting it up, or empty) holds nothing: it
    /// is read as an empty state, and left as it is.
    ///
    /// A file written by an older s3backup is not upgraded (only writers
    /// do that): a copy of it, with its `-wal` (commits not yet folded
    /// into the file), is upgraded in a scratch directory and read instead,
    /// so `state`, `snapshots` and `verify` work right after an upgrade of
    /// s3backup, before its first backup.
    ///
    /// # Errors
    /// [`StateError::TooNew`] for a schema newer than this build's,
    /// [`StateError::Io`] if the scratch copy of an older one fails,
    /// [`StateError::Sqlite`] if SQLite cannot read it.
    pub fn open_read_only(path: &Path) -> StateResult<Self> {
        let err = |cause| StateError::Sqlite {
            path: path.to_path_buf(),
            cause,
        };
        // The schema is read too, so a damaged file is reported here, before
        // a command prints anything, as a writer's open reports it.
        let version = |conn: &Connection| {
            let objects = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))?;
            let version = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))?;
            // No table and no version: a file a writer created and was
            // stopped before setting up (killed, or an empty file). It holds
            // nothing, which is what a read-only command shows.
            Ok(if objects == 0 && version == 0 {
                None
            } else {
                Some(version)
            })
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
        let Some(found) = found else {
            let mut empty = Connection::open_in_memory().map_err(err)?;
            migrate(&mut empty, path)?;
            return Ok(Self {
                conn: empty,
                path: path.to_path_buf(),
                _scratch: None,
            });
        };
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(err)?;
        let known = MIGRATIONS.len() as i64;
        let (path, found) = (path.to_path_buf(), found);
        match found.cmp(&known) {
            std::cmp::Ordering::Less => Self::open_upgraded_copy(&path),
            std::cmp::Ordering::Greater => Err(StateError::TooNew { path, found, known }),
            std::cmp::Ordering::Equal => Ok(Self {
                conn,
                path,
                _scratch: None,
            }),
        }
    }

    /// An upgraded scratch copy of the older state file at `path` (see
    /// [`StateDb::open_read_only`]); its messages still name `path`.
    fn open_upgraded_copy(path: &Path) -> StateResult<Self> {
        let io = |cause| StateError::Io {
            path: path.to_path_buf(),
            cause,
        };
        let scratch = tempfile::tempdir().map_err(io)?;
        let copy = scratch.path().join("state.db");
        std::fs::copy(path, &copy).map_err(io)?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        match std::fs::copy(&wal, scratch.path().join("state.db-wal")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        let mut db = Self::open(&copy)?;
        db.path = path.to_path_buf();
        db._scratch = Some(scratch);
        Ok(db)
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
            _scratch: None,
        })
    }
}

/// The directory a state file lives in (`.` for a bare file name).
pub(super) fn state_dir(path: &Path) -> PathBuf {
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
