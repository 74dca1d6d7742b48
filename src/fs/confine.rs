//! Path operations confined beneath one directory.
//!
//! The local store's root and a restore's DEST are the only trees s3backup
//! changes. A symlink inside either (planted by a hostile bucket writer, or
//! left by a source that once had a link where it now has a directory) must
//! never redirect a read, a write, a delete or a `chmod` outside. Checking a
//! path with `symlink_metadata` and then using it by name is racy and easy to
//! forget at one call site, so every operation here starts from an open
//! directory handle ([`Root`]) and descends one component at a time with
//! no-follow semantics (`openat(O_NOFOLLOW | O_DIRECTORY)` on Unix, the
//! equivalent reparse-point checks on Windows, both by the `cap-std` crate,
//! which exists for exactly this). What a caller gets back is a [`Parent`]:
//! the handle of the directory that holds the final name, and that name, so
//! the last step (open with no-follow, rename, remove, set times) is also
//! relative to a handle that cannot have moved.
//!
//! The root itself is opened by the path the user typed; a symlink there is
//! the user's choice and is followed, as every tool does for its arguments.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Component, Path, PathBuf};

use cap_fs_ext::DirExt;
pub use cap_std::fs::Dir;

/// Why a path beneath a [`Root`] could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// A component that must be a directory is a symbolic link; it is not
    /// followed, whatever it points to.
    #[error("'{}' is a symbolic link; s3backup does not follow links inside {}", .at.display(), .root.display())]
    Symlink {
        /// The link, as root joined with the relative path up to it.
        at: PathBuf,
        /// The root the operation is confined to.
        root: PathBuf,
    },
    /// A component that must be a directory is a file or another non-directory.
    #[error("'{}' is not a directory", .at.display())]
    NotDir {
        /// The entry, as root joined with the relative path up to it.
        at: PathBuf,
    },
    /// The relative path is empty, absolute, or has a `..`, `.` or prefix
    /// component: it could name something outside the root.
    #[error("'{}' is not a plain relative path", .rel.display())]
    NotRelative {
        /// The path as given.
        rel: PathBuf,
    },
    /// The operating system refused an operation on `at`.
    #[error("{}: {cause}", .at.display())]
    Io {
        /// The entry, as root joined with the relative path up to it.
        at: PathBuf,
        /// The error the system call returned (named in the message, so
        /// not also the error's source: a chain printed with `{:#}` names it once).
        cause: io::Error,
    },
}

impl From<ConfineError> for io::Error {
    fn from(e: ConfineError) -> Self {
        let kind = match &e {
            ConfineError::Symlink { .. } | ConfineError::NotDir { .. } => io::ErrorKind::NotADirectory,
            ConfineError::NotRelative { .. } => io::ErrorKind::InvalidInput,
            ConfineError::Io { cause, .. } => cause.kind(),
        };
        io::Error::new(kind, e)
    }
}

/// Whether [`Root::parent`] and [`Root::open_dir`] create missing directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// A missing component is a `NotFound` error.
    No,
    /// A missing component is created with these permission bits (Unix
    /// mode, before the umask; ignored elsewhere). A restore passes `0o700`
    /// so a directory is never more open while it fills than its recorded
    /// mode will make it.
    Mode(u32),
}

/// The directory holding a final name, reached without following a link.
#[derive(Debug)]
pub struct Parent {
    /// The handle of the directory; use it for the last step with the name.
    pub dir: Dir,
    /// The final component, a single name (no separators).
    pub name: OsString,
}

/// A directory opened once, beneath which every path is reached without
/// following symbolic links.
#[derive(Debug)]
pub struct Root {
    dir: Dir,
    path: PathBuf,
}

impl Root {
    /// Opens `path` (following a link there: it is what the user named).
    ///
    /// # Errors
    /// [`ConfineError::Io`] when it does not exist or is not a directory.
    pub fn open(path: &Path) -> Result<Self, ConfineError> {
        let dir =
            Dir::open_ambient_dir(path, cap_std::ambient_authority()).map_err(|source| ConfineError::Io {
                at: path.to_path_buf(),
                cause: source,
            })?;
        Ok(Self {
            dir,
            path: path.to_path_buf(),
        })
    }

    /// The path the root was opened by, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root's own handle.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// Reaches the directory that holds `rel`'s final name, descending
    /// one component at a time without following links, creating missing
    /// components when `create` says so.
    ///
    /// # Errors
    /// [`ConfineError::NotRelative`] for a path that could leave the root,
    /// [`ConfineError::Symlink`] / [`ConfineError::NotDir`] when a
    /// component is not a real directory, [`ConfineError::Io`] otherwise
    /// (`NotFound` for a missing component with [`Create::No`]).
    pub fn parent(&self, rel: &Path, create: Create) -> Result<Parent, ConfineError> {
        let names = plain_components(rel)?;
        let Some((last, dirs)) = names.split_last() else {
            return Err(ConfineError::NotRelative {
                rel: rel.to_path_buf(),
            });
        };
        let (dir, _) = self.descend(dirs, create)?;
        Ok(Parent {
            dir,
            name: last.to_os_string(),
        })
    }

    /// Opens `rel` itself as a directory, without following links in any
    /// component (an empty path is the root). Returns the handle and the
    /// directories created on the way, as [`Root::parent`] does.
    ///
    /// # Errors
    /// As [`Root::parent`].
    pub fn open_dir(&self, rel: &Path, create: Create) -> Result<(Dir, Vec<PathBuf>), ConfineError> {
        let names = plain_components(rel)?;
        self.descend(&names, create)
    }

    /// Reaches the directory that holds `rel`'s final name as
    /// [`Root::parent`] with [`Create::Mode`] does, except that a component
    /// that is a symbolic link, a file or another non-directory is removed
    /// (the link itself, never what it points to) and replaced by a new
    /// directory. For a tree the caller owns outright (the local store: a
    /// stale entry left by a source whose link or file became a directory),
    /// not for one a user shares with s3backup (a restore's DEST).
    ///
    /// # Errors
    /// [`ConfineError::NotRelative`] for a path that could leave the root;
    /// [`ConfineError::Io`] when a component cannot be removed or created,
    /// or keeps changing under concurrent writers (after a few rounds).
    pub(crate) fn parent_replacing(&self, rel: &Path, mode: u32) -> Result<Parent, ConfineError> {
        let names = plain_components(rel)?;
        let Some((last, dirs)) = names.split_last() else {
            return Err(ConfineError::NotRelative {
                rel: rel.to_path_buf(),
            });
        };
        let io_at = |at: &Path, source| ConfineError::Io {
            at: self.path.join(at),
            cause: source,
        };
        let mut dir = self.dir.try_clone().map_err(|e| io_at(Path::new(""), e))?;
        let mut at = PathBuf::new();
        for name in dirs {
            at.push(name);
            let mut rounds = 0;
            dir = loop {
                let missing = match dir.open_dir_nofollow(name) {
                    Ok(next) => break next,
                    Err(e) if rounds >= REPLACE_ROUNDS => return Err(io_at(&at, e)),
                    Err(e) => e.kind() == io::ErrorKind::NotFound,
                };
                rounds += 1;
                if !missing {
                    match dir.symlink_metadata(name) {
                        Ok(md) if !md.is_dir() => {
                            tracing::debug!(at = %self.path.join(&at).display(), "replacing a non-directory by a directory");
                            match dir.remove_file_or_symlink(name) {
                                Ok(()) => {}
                                // Another worker removed it first.
                                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                                // Another worker replaced it by a directory first: open that.
                                Err(_) if dir.symlink_metadata(name).is_ok_and(|md| md.is_dir()) => continue,
                                Err(e) => return Err(io_at(&at, e)),
                            }
                        }
                        // A directory after all (it changed, or it cannot be opened): retry, then report.
                        Ok(_) => continue,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io_at(&at, e)),
                    }
                }
                match dir.create_dir_with(name, &dir_builder(mode)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_at(&at, e)),
                }
            };
        }
        Ok(Parent {
            dir,
            name: last.to_os_string(),
        })
    }

    fn descend(&self, names: &[&OsStr], create: Create) -> Result<(Dir, Vec<PathBuf>), ConfineError> {
        let io_at = |at: &Path, source| ConfineError::Io {
            at: self.path.join(at),
            cause: source,
        };
        let mut dir = self.dir.try_clone().map_err(|e| io_at(Path::new(""), e))?;
        let mut rel = PathBuf::new();
        let mut created = Vec::new();
        for name in names {
            rel.push(name);
            let next = match dir.open_dir_nofollow(name) {
                Ok(next) => next,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let Create::Mode(mode) = create else {
                        return Err(io_at(&rel, e));
                    };
                    match dir.create_dir_with(name, &dir_builder(mode)) {
                        Ok(()) => created.push(rel.clone()),
                        // Another worker made it between our two calls.
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(io_at(&rel, e)),
                    }
                    dir.open_dir_nofollow(name)
                        .map_err(|e| self.classify(&dir, name, &rel, e))?
                }
                Err(e) => return Err(self.classify(&dir, name, &rel, e)),
            };
            dir = next;
        }
        Ok((dir, created))
    }

    /// Turns a failed no-follow open into the reason a user can act on.
    fn classify(&self, dir: &Dir, name: &OsStr, rel: &Path, source: io::Error) -> ConfineError {
        let at = self.path.join(rel);
        match dir.symlink_metadata(name) {
            Ok(md) if md.file_type().is_symlink() => ConfineError::Symlink {
                at,
                root: self.path.clone(),
            },
            Ok(md) if !md.is_dir() => ConfineError::NotDir { at },
            _ => ConfineError::Io { at, cause: source },
        }
    }
}

/// How many times [`Root::parent_replacing`] tries one component that
/// other writers keep changing before it gives up.
const REPLACE_ROUNDS: usize = 4;

/// The names of a plain relative path, refusing anything that could leave
/// the directory it is joined to.
fn plain_components(rel: &Path) -> Result<Vec<&OsStr>, ConfineError> {
    rel.components()
        .map(|c| match c {
            Component::Normal(name) => Ok(name),
            _ => Err(ConfineError::NotRelative {
                rel: rel.to_path_buf(),
            }),
        })
        .collect()
}

fn dir_builder(mode: u32) -> cap_std::fs::DirBuilder {
    #[cfg(unix)]
    {
        use cap_std::fs::DirBuilderExt;
        let mut builder = cap_std::fs::DirBuilder::new();
        builder.mode(mode);
        builder
    }
    #[cfg(not(unix))]
    {
        let _ = mode;
        cap_std::fs::DirBuilder::new()
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_link_in_any_component_is_refused_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let root_path = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(root_path.join("a")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root_path.join("a/link")).unwrap();
        let root = Root::open(&root_path).unwrap();

        let err = root
            .parent(Path::new("a/link/f"), Create::Mode(0o700))
            .unwrap_err();
        assert!(matches!(err, ConfineError::Symlink { .. }), "{err}");
        let err = root
            .parent(Path::new("a/link/new/f"), Create::Mode(0o700))
            .unwrap_err();
        assert!(matches!(err, ConfineError::Symlink { .. }), "{err}");
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "nothing created outside"
        );

        // The last name is returned, not opened: the caller decides.
        let parent = root.parent(Path::new("a/link"), Create::No).unwrap();
        assert_eq!(parent.name, "link");
        assert!(
            parent
                .dir
                .symlink_metadata("link")
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn replacing_removes_a_link_or_file_on_the_way_never_what_a_link_points_to() {
        let tmp = tempfile::tempdir().unwrap();
        let root_path = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(root_path.join("a")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("kept"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, root_path.join("a/link")).unwrap();
        std::fs::write(root_path.join("file"), b"stale").unwrap();
        let root = Root::open(&root_path).unwrap();

        let parent = root.parent_replacing(Path::new("a/link/new/f"), 0o700).unwrap();
        parent.dir.write(&parent.name, b"hi").unwrap();
        assert!(
            std::fs::symlink_metadata(root_path.join("a/link"))
                .unwrap()
                .is_dir()
        );
        assert_eq!(std::fs::read(root_path.join("a/link/new/f")).unwrap(), b"hi");
        let left: Vec<_> = std::fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["kept"], "nothing changed where the link pointed");

        root.parent_replacing(Path::new("file/g"), 0o700).unwrap();
        assert!(
            std::fs::symlink_metadata(root_path.join("file"))
                .unwrap()
                .is_dir()
        );
        // Existing directories are kept as they are, and a final name is never touched.
        root.parent_replacing(Path::new("a/link"), 0o700).unwrap();
        assert_eq!(std::fs::read(root_path.join("a/link/new/f")).unwrap(), b"hi");
        assert!(root.parent_replacing(Path::new("../x"), 0o700).is_err());
    }

    /// Concurrent writers beneath one stale link: one replaces it, the
    /// others find the directory (as the local store's parallel uploads do).
    #[test]
    fn concurrent_replacements_of_one_link_all_succeed() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        for round in 0..200 {
            let root_path = tmp.path().join(format!("root{round}"));
            std::fs::create_dir(&root_path).unwrap();
            std::os::unix::fs::symlink(&outside, root_path.join("a")).unwrap();
            let root = Root::open(&root_path).unwrap();
            let start = std::sync::Barrier::new(6);
            std::thread::scope(|s| {
                for n in 0..6 {
                    let (root, start) = (&root, &start);
                    s.spawn(move || {
                        let rel = PathBuf::from(format!("a/f{n}"));
                        start.wait();
                        let parent = root.parent_replacing(&rel, 0o700).unwrap();
                        parent.dir.write(&parent.name, b"x").unwrap();
                    });
                }
            });
            assert_eq!(std::fs::read_dir(root_path.join("a")).unwrap().count(), 6);
        }
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn a_file_where_a_directory_is_needed_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("f"), b"x").unwrap();
        let root = Root::open(tmp.path()).unwrap();
        let err = root.parent(Path::new("f/g"), Create::Mode(0o700)).unwrap_err();
        assert!(matches!(err, ConfineError::NotDir { .. }), "{err}");
        assert!(err.to_string().contains("'") && err.to_string().contains("not a directory"));
    }

    #[test]
    fn paths_that_could_leave_the_root_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::open(tmp.path()).unwrap();
        for rel in ["../x", "/etc/passwd", "a/../../x", "./x", ""] {
            let err = root.parent(Path::new(rel), Create::Mode(0o700)).unwrap_err();
            assert!(matches!(err, ConfineError::NotRelative { .. }), "{rel}: {err}");
        }
    }

    #[test]
    fn missing_directories_are_created_owner_only_and_reported() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("a")).unwrap();
        let root = Root::open(tmp.path()).unwrap();
        let err = root.parent(Path::new("a/b/c/f"), Create::No).unwrap_err();
        assert!(matches!(&err, ConfineError::Io { cause, .. } if cause.kind() == io::ErrorKind::NotFound));

        let (_, created) = root.open_dir(Path::new("a/b/c"), Create::Mode(0o700)).unwrap();
        assert_eq!(created, vec![PathBuf::from("a/b"), PathBuf::from("a/b/c")]);
        let parent = root.parent(Path::new("a/b/c/f"), Create::No).unwrap();
        for d in ["a/b", "a/b/c"] {
            let mode = std::fs::metadata(tmp.path().join(d))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "{d}");
        }
        parent.dir.write(&parent.name, b"hi").unwrap();
        assert_eq!(std::fs::read(tmp.path().join("a/b/c/f")).unwrap(), b"hi");

        let (_, created) = root.open_dir(Path::new("a/b/c"), Create::Mode(0o700)).unwrap();
        assert!(created.is_empty());
    }
}
