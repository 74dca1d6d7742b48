//! What s3backup writes itself, kept out of what it backs up and restores
//! (issue 12, part 4).
//!
//! `s3backup backup ~ …` with the default state (`~/.local/state/s3backup/`)
//! used to upload its own state file while writing it: the `-wal` file
//! changed under the upload and every run ended with exit 3. And a local
//! store inside SOURCE (`backup ~/docs ~/docs/backup`) was copied into
//! itself on every run, one level deeper each time. So a backup leaves out,
//! wherever they lie under SOURCE:
//! - the state file, its SQLite companions (`-wal`, `-shm`, `-journal`),
//!   the per-set lock files (`<state>.set-<id>.lock`) and the shell's
//!   history (`shell-history`), both beside the state path as typed and
//!   beside its canonical path (SQLite puts `-wal` beside the file a
//!   symlink points to; named sets live inside the state file itself);
//! - the local store's root directory, with everything under it.
//!
//! They are recognised by identity, not by path text: a state file is
//! known by its directory's device and inode plus its name, the store by
//! its device and inode. So a symlinked home, `--follow-symlinks` into the
//! state directory or a bind mount all lead to the same verdict, and files
//! SQLite creates during the walk (a `-wal`) are caught too. `-v` says once
//! what was left out. They are left out silently like the reserved
//! top-level `.s3backup`: not filtered, so their rows from an older run are
//! "gone locally" and `--delete` removes those copies from the store.
//!
//! The store is left out rather than refused: backing up a tree into a
//! folder of itself is a deliberate (if fragile) choice for some, and the
//! store copied into itself is never what they want. The reverse cases
//! are refused, with one line, before anything is written:
//! - SOURCE at or under the local store's root: the store's objects would
//!   be written into the source tree (a file `x` of SOURCE `store/docs` is
//!   stored at `store/x`, which may be another source file);
//! - restore DEST at or under the local store's root: restored files would
//!   become objects of the store they come from.
//!
//! A restore into a DEST that holds the store leaves the store's subtree
//! out (a snapshot taken before this rule may hold the nested copy, and
//! writing it back would overwrite the store's objects with older ones).
//!
//! A restore's temporary files (`.s3backup-restore-<random>`, see
//! [`TEMP_PREFIX`]) are the tool's own too: a killed restore leaves them in
//! DEST, a backup's walk leaves them out wherever they lie, and the next
//! restore sweeps them. The naming rule lives here so the walk need not
//! know the restore.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::fs::names;
use crate::target::{Target, real_path};

/// Identity of a file or directory: device and inode on Unix, volume
/// serial number and file index on Windows ([`dir_identity`]).
pub type FileId = (u64, u64);

/// Names in one directory that are s3backup's own.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OwnDir {
    /// The directory's identity.
    id: FileId,
    /// Exact names, in their text form ([`names::encode`]).
    exact: Vec<String>,
    /// State file names `N` whose lock files `N.set-<digits>.lock` are own.
    lock_of: Vec<String>,
}

/// What a backup must not take from its source: s3backup's own files and
/// the local store's root (see the module doc). Empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnFiles {
    dirs: Vec<OwnDir>,
    store: Option<FileId>,
}

/// The history file the shell keeps beside the state file (`shell.rs`).
pub(crate) const SHELL_HISTORY: &str = "shell-history";

/// SQLite's companion files of a database `N`: `N-wal`, `N-shm` (WAL mode)
/// and `N-journal` (a rollback journal, before WAL mode is set).
const SQLITE_SUFFIXES: [&str; 3] = ["-wal", "-shm", "-journal"];

impl OwnFiles {
    /// The own files of each state file in `state_paths` (as typed, and
    /// their canonical paths) and the local store rooted at `store_root`.
    /// Paths that do not exist (yet) are passed over: what does not exist
    /// cannot be walked into.
    pub(crate) fn find(state_paths: &[&Path], store_root: Option<&Path>) -> OwnFiles {
        let mut own = OwnFiles::default();
        for path in state_paths {
            own.add_state(path, true);
            if let Ok(canonical) = crate::fs::winpath::canonicalize(path) {
                own.add_state(&canonical, false);
            }
        }
        own.store = store_root.and_then(id_of);
        own
    }

    fn add_state(&mut self, path: &Path, with_history: bool) {
        let (Some(name), Some(id)) = (path.file_name(), state_dir_id(path)) else {
            return;
        };
        let name = names::encode(name).into_owned();
        let index = match self.dirs.iter().position(|d| d.id == id) {
            Some(i) => i,
            None => {
                self.dirs.push(OwnDir {
                    id,
                    exact: Vec::new(),
                    lock_of: Vec::new(),
                });
                self.dirs.len() - 1
            }
        };
        let dir = &mut self.dirs[index];
        let mut exact: Vec<String> = SQLITE_SUFFIXES.iter().map(|s| format!("{name}{s}")).collect();
        exact.push(name.clone());
        if with_history {
            exact.push(SHELL_HISTORY.to_string());
        }
        for n in exact {
            if !dir.exact.contains(&n) {
                dir.exact.push(n);
            }
        }
        if !dir.lock_of.contains(&name) {
            dir.lock_of.push(name);
        }
    }

    /// Whether nothing is left out.
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty() && self.store.is_none()
    }

    /// Whether the entry named `name` (text form) in the directory `parent`
    /// is one of s3backup's own files.
    pub(crate) fn is_own_file(&self, parent: FileId, name: &str) -> bool {
        self.dirs.iter().filter(|d| d.id == parent).any(|d| {
            d.exact.iter().any(|n| n == name)
                || d.lock_of.iter().any(|state| {
                    name.strip_prefix(state.as_str())
                        .and_then(|rest| rest.strip_prefix(".set-"))
                        .and_then(|rest| rest.strip_suffix(".lock"))
                        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
                })
        })
    }

    /// Whether a local store's root is to be left out (so a walk asks each
    /// directory for its identity).
    pub(crate) fn has_store(&self) -> bool {
        self.store.is_some()
    }

    /// Whether a directory with this identity is the local store's root.
    pub(crate) fn is_store(&self, id: FileId) -> bool {
        self.store == Some(id)
    }
}

/// The identity of the directory a state file lives in, if it exists.
fn state_dir_id(path: &Path) -> Option<FileId> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    id_of(dir)
}

/// The identity of the file or directory at `path` (links followed), if
/// it exists and the platform gives one: [`dir_identity`] with its stat.
pub(crate) fn id_of(path: &Path) -> Option<FileId> {
    dir_identity(path, &std::fs::metadata(path).ok()?)
}

/// The identity of the file or directory at `path` whose stat (links
/// followed) is `md`: device and inode on Unix, read from `md`; the volume
/// serial number and the 64-bit file index on Windows, which std's
/// metadata does not give yet, so the file is opened and asked
/// (`GetFileInformationByHandle`, through `winapi-util`). None where it
/// cannot be had: an identity that every file shares must match none
/// (when Windows had `(0, 0)` for all, every subdirectory of SOURCE was
/// "the local store", skipped without a word).
pub(crate) fn dir_identity(path: &Path, md: &std::fs::Metadata) -> Option<FileId> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let _ = path;
        Some((md.dev(), md.ino()))
    }
    #[cfg(windows)]
    {
        let _ = md;
        let handle = winapi_util::Handle::from_path_any(path).ok()?;
        let info = winapi_util::file::information(&handle).ok()?;
        Some((info.volume_serial_number(), info.file_index())).filter(|id| *id != (0, 0))
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (path, md);
        None
    }
}

/// Why a source or destination cannot be used with a local store.
#[derive(Debug, thiserror::Error)]
pub enum OwnError {
    /// SOURCE is the local store's root or lies under it.
    #[error(
        "SOURCE '{}' lies inside the local store '{}': the store's files would be written into the tree being backed up; choose a store outside SOURCE",
        source_dir.display(),
        store.display()
    )]
    SourceInStore {
        /// The source, resolved.
        source_dir: PathBuf,
        /// The store's root, resolved.
        store: PathBuf,
    },
    /// The local store lies in another store's own area (`.s3backup/`):
    /// its files would land among that store's manifests and kept content.
    #[error(
        "the local store '{}' lies inside a store's own area ('.s3backup'), where s3backup keeps manifests and older content: choose a store outside it",
        store.display()
    )]
    StoreInOwnArea {
        /// The store's root, resolved.
        store: PathBuf,
    },
    /// DEST is the local store's root or lies under it.
    #[error(
        "DEST '{}' lies inside the local store '{}' being restored from: restored files would become objects of the store; choose a DEST outside it",
        dest.display(),
        store.display()
    )]
    DestInStore {
        /// The destination, resolved.
        dest: PathBuf,
        /// The store's root, resolved.
        store: PathBuf,
    },
}

/// The local store's resolved root, for a local target.
fn store_root(target: &Target) -> Option<PathBuf> {
    match target {
        Target::Local { root } => Some(real_path(root)),
        Target::S3 { .. } => None,
    }
}

/// Refuses a (canonical) SOURCE at or under the local store's root.
///
/// # Errors
/// [`OwnError::SourceInStore`] when SOURCE is the store's root or beneath it;
/// [`OwnError::StoreInOwnArea`] when the store lies in a `.s3backup` area.
pub(crate) fn check_source(source: &Path, target: &Target) -> Result<(), OwnError> {
    if let Some(store) = store_root(target)
        && store
            .components()
            .any(|c| c.as_os_str() == crate::target::OWN_AREA)
    {
        return Err(OwnError::StoreInOwnArea { store });
    }
    match store_root(target) {
        Some(store) if real_path(source).starts_with(&store) => Err(OwnError::SourceInStore {
            source_dir: source.to_path_buf(),
            store,
        }),
        _ => Ok(()),
    }
}

/// Refuses a restore DEST at or under the local store's root; otherwise
/// returns where the store lies under DEST (its relative path in text
/// form, `/`-separated), if it does: a restore leaves that subtree out.
///
/// # Errors
/// [`OwnError::DestInStore`] when DEST is the store's root or beneath it.
pub(crate) fn check_dest(dest: &Path, target: &Target) -> Result<Option<String>, OwnError> {
    let Some(store) = store_root(target) else {
        return Ok(None);
    };
    let dest = real_path(dest);
    if dest.starts_with(&store) {
        return Err(OwnError::DestInStore { dest, store });
    }
    Ok(store.strip_prefix(&dest).ok().map(|rel| {
        rel.iter()
            .map(|part| names::encode(part).into_owned())
            .collect::<Vec<_>>()
            .join("/")
    }))
}

/// Whether the relative path `path` is `dir` or lies under it.
pub(crate) fn is_under(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Prefix of every temporary name a restore makes in DEST (files, and
/// symlinks before they are renamed into place). Only names with it are
/// ever removed by the restore's sweep, and a backup's walk leaves them out.
pub const TEMP_PREFIX: &str = ".s3backup-restore-";

/// A fresh temporary name: the prefix, `kind`, and 128 random bits.
pub fn temp_name(kind: &str) -> OsString {
    OsString::from(format!("{TEMP_PREFIX}{kind}{}", uuid::Uuid::new_v4().simple()))
}

/// Whether `name` is one of a restore's temporary names ([`TEMP_PREFIX`]);
/// a backup leaves such names out of its walk.
pub fn is_temp_name(name: &OsStr) -> bool {
    name.as_encoded_bytes().starts_with(TEMP_PREFIX.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_names_are_the_state_its_companions_locks_and_history() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.db");
        std::fs::write(&state, "").unwrap();
        let own = OwnFiles::find(&[&state], None);
        let id = id_of(dir.path()).unwrap();
        for name in [
            "state.db",
            "state.db-wal",
            "state.db-shm",
            "state.db-journal",
            "state.db.set-1.lock",
            "state.db.set-42.lock",
            "shell-history",
        ] {
            assert!(own.is_own_file(id, name), "{name}");
        }
        for name in [
            "state.db.set-.lock",
            "state.db.set-x.lock",
            "state.db.bak",
            "other.db",
        ] {
            assert!(!own.is_own_file(id, name), "{name}");
        }
        assert!(!own.is_own_file((id.0, id.1 + 1), "state.db"));
        assert!(!OwnFiles::default().is_own_file(id, "state.db"));
    }

    #[test]
    fn identities_tell_directories_apart_and_know_them_again() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        let (top, a, b) = (
            id_of(dir.path()).unwrap(),
            id_of(&dir.path().join("a")).unwrap(),
            id_of(&dir.path().join("a/b")).unwrap(),
        );
        assert!(top != a && a != b && top != b, "{top:?} {a:?} {b:?}");
        assert_eq!(id_of(&dir.path().join("a/b/..")), Some(a));
        assert_eq!(id_of(&dir.path().join("missing")), None);
        // A store under a state directory is known by identity alone.
        let own = OwnFiles::find(&[], Some(&dir.path().join("a")));
        assert!(own.is_store(a) && !own.is_store(b) && !own.is_store(top));
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_state_file_also_names_the_real_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        let real = dir.path().join("real/state.db");
        std::fs::write(&real, "").unwrap();
        let alias = dir.path().join("alias.db");
        std::os::unix::fs::symlink(&real, &alias).unwrap();
        let own = OwnFiles::find(&[&alias], None);
        let real_dir = id_of(&dir.path().join("real")).unwrap();
        let alias_dir = id_of(dir.path()).unwrap();
        assert!(own.is_own_file(real_dir, "state.db-wal"));
        assert!(own.is_own_file(real_dir, "state.db.set-3.lock"));
        assert!(own.is_own_file(alias_dir, "alias.db"));
        assert!(own.is_own_file(alias_dir, "shell-history"));
    }

    #[test]
    fn sources_and_destinations_inside_a_local_store_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        std::fs::create_dir_all(store.join("docs")).unwrap();
        let local = Target::Local { root: store.clone() };
        assert!(check_source(&store, &local).is_err());
        assert!(check_source(&store.join("docs"), &local).is_err());
        assert!(check_source(dir.path(), &local).is_ok());
        assert!(check_source(&store, &"bkt::p".parse().unwrap()).is_ok());
        // A store not made yet, spelt with `..`.
        let later = Target::Local {
            root: dir.path().join("docs/../new-store"),
        };
        assert!(check_dest(&dir.path().join("new-store/x/y"), &later).is_err());
        assert!(check_dest(&store.join("docs/new"), &local).is_err());
        assert_eq!(check_dest(dir.path(), &local).unwrap().as_deref(), Some("store"));
        assert_eq!(check_dest(&dir.path().join("elsewhere"), &local).unwrap(), None);
    }

    #[test]
    fn under_means_the_path_or_below() {
        assert!(is_under("store", "store"));
        assert!(is_under("store/a", "store"));
        assert!(!is_under("stored", "store"));
        assert!(!is_under("a/store", "store"));
    }
}
