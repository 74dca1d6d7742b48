//! Everything a restore does inside DEST, and nowhere else.
//!
//! A restore reads, creates, renames and `chmod`s entries in a tree it
//! does not own: a symlink there (planted by someone else, or left by the
//! user) must never carry a read, a write or a mode change outside DEST,
//! not even the "already identical" check and the times and modes set on a
//! file found unchanged. So every operation here starts from a handle of
//! DEST ([`crate::fs::confine::Root`]) and reaches the directory holding an
//! entry one component at a time without following links; the entry itself
//! is then opened, renamed or changed relative to that handle, with
//! no-follow semantics, and its times and mode are set through the opened
//! handle (`fchmod`, `futimens`), never by path. A link in a directory
//! component is refused, never replaced: it may be the user's own (a
//! `DEST/cache -> /mnt/big` link), and the failure names it (exit 3).
//!
//! Directories a restore creates are made owner-only (`0700`) while they
//! fill and get their recorded mode and mtime at the end ([`Dest::finish_dirs`]),
//! whatever selected them: a directory entry of the snapshot, or a file
//! below it (a partial restore or `--include`). A directory with no recorded
//! entry (a listing restore, a hand-made manifest) gets the default mode
//! (`0777` less the umask) at the end, as `mkdir` would have made it.
//!
//! Temporary files are `.s3backup-restore-<random>` beside their final
//! name ([`TempFile`]; the naming rule is [`crate::fs::own::temp_name`],
//! which a backup's walk also knows, to leave them out). A killed restore
//! leaves them behind; the next restore removes those it finds in every
//! directory it visits and says how many ([`Dest::stale_removed`]).
//! Another restore may be writing into the same DEST at the same time, so
//! a writer holds an exclusive advisory lock (`flock`) on its temporary
//! file from creation to rename, and the sweep removes only files it can
//! lock: the lock of a killed process is gone with it. (A per-DEST lock
//! would serialise two restores of different subtrees, and would itself
//! be a file left in DEST.)
//!
//! Mode bits from the store are applied through [`ModePolicy`]: setuid,
//! setgid and sticky bits only with `--preserve-special-bits` (as `tar`
//! strips them unless asked), and the restore says how many were dropped.
//!
//! For `--dry-run` DEST is opened for listing ([`Dest::open`] with a
//! [`Planned`], or [`Dest::absent`] when DEST does not exist yet): it is
//! read and walked exactly as for a restore, but where a restore would
//! create a directory, remove a stale temporary file or set a directory's
//! mode and mtime, a line is recorded instead (see [`crate::restore::dry`]).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt};

use crate::fs::confine::{ConfineError, Create, Dir, Root};
use crate::fs::own::{is_temp_name, temp_name};
use crate::report::Failure;
use crate::restore::dry::Planned;
use crate::restore::meta::{DirMeta, ModePolicy};

/// Mode of a directory while the restore fills it: no more open than
/// any recorded mode will make it.
const FILLING_MODE: u32 = 0o700;

/// Directory handles kept for reuse. Entries arrive mostly sorted by path,
/// so a few hundred cover the working set without holding one descriptor
/// per directory of a large tree.
const CACHED_DIRS: usize = 256;

/// How many fresh names a temporary file gets before giving up when
/// another restore's sweep keeps removing them (it can only win the short
/// window between creating a file and locking it).
const TEMP_ATTEMPTS: usize = 4;

/// DEST, opened once; see the module doc.
#[derive(Debug)]
pub struct Dest {
    /// `None` for a dry run's DEST that does not exist yet.
    root: Option<Root>,
    path: std::path::PathBuf,
    handles: Mutex<HashMap<String, Arc<Dir>>>,
    visited: Mutex<HashSet<String>>,
    created: Mutex<Vec<String>>,
    stale_removed: AtomicU64,
    /// The mode bits applied to restored entries.
    pub modes: ModePolicy,
    /// A dry run's lines: when set, nothing in DEST is changed.
    planned: Option<Planned>,
    /// How DEST holds names, modes and times (probed once, before any entry).
    pub holds: crate::restore::fold::Holds,
}

impl Dest {
    /// Opens DEST (an existing directory; a link there is followed: it is
    /// what the user named) and sweeps stale temporary files from its top;
    /// with `planned` (a dry run) it is only read, and what would change
    /// is recorded there.
    ///
    /// # Errors
    /// [`ConfineError::Io`] when it cannot be opened as a directory.
    pub fn open(path: &Path, modes: ModePolicy, planned: Option<Planned>) -> Result<Self, ConfineError> {
        let dest = Self::new(Some(Root::open(path)?), path, modes, planned);
        if let Some(root) = &dest.root {
            dest.first_visit("", root.dir());
        }
        Ok(dest)
    }

    /// A dry run's DEST that does not exist: every directory in it would
    /// be created, and DEST itself first (a `create` line).
    pub fn absent(path: &Path, modes: ModePolicy) -> Self {
        let planned = Planned::default();
        planned.line("", format!("create {}", path.display()));
        Self::new(None, path, modes, Some(planned))
    }

    fn new(root: Option<Root>, path: &Path, modes: ModePolicy, planned: Option<Planned>) -> Self {
        Self {
            root,
            path: path.to_path_buf(),
            handles: Mutex::default(),
            visited: Mutex::default(),
            created: Mutex::default(),
            stale_removed: AtomicU64::new(0),
            modes,
            planned,
            holds: crate::restore::fold::Holds::default(),
        }
    }

    /// Whether names are mapped (see [`crate::restore::fold::Holds`]).
    pub fn maps_windows_names(&self) -> bool {
        self.holds.windows_names
    }

    /// The local form, relative to DEST, of `text` (a key's relative
    /// path): see [`crate::restore::fold::local_rel`].
    pub fn local_rel<'a>(&self, text: &'a str) -> Cow<'a, OsStr> {
        crate::restore::fold::local_rel(self.holds.windows_names, text)
    }

    /// The path of `text` (a key's relative path) in DEST, for messages.
    pub fn shown(&self, text: &str) -> std::path::PathBuf {
        self.path.join(self.local_rel(text))
    }

    /// The key text of a local path relative to DEST.
    fn key_text(&self, rel: &Path) -> String {
        crate::restore::fold::key_text(self.holds.windows_names, rel)
    }

    /// DEST's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A dry run's lines (`None` in a restore, which changes DEST).
    pub fn planned(&self) -> Option<&Planned> {
        self.planned.as_ref()
    }

    /// In a dry run, records the directories a file at `rel` (a checked
    /// path whose directory [`Dest::find_parent`] found missing) would
    /// need created: the first missing one and every one below it.
    pub fn plan_parent(&self, rel: &str) {
        if let (Some(planned), Some((parent, _))) = (&self.planned, rel.rsplit_once('/')) {
            self.plan_dirs(planned, parent);
        }
    }

    /// Records `dir` and its missing ancestors as directories to create.
    fn plan_dirs(&self, planned: &Planned, dir: &str) {
        if planned.makes(dir) {
            return;
        }
        let mut at = 0;
        let mut missing = self.root.is_none();
        for part in dir.split('/') {
            at += part.len();
            let here = &dir[..at];
            at += 1;
            missing = missing
                || self.root.as_ref().is_some_and(|root| {
                    matches!(
                        root.open_dir(Path::new(&self.local_rel(here)), Create::No),
                        Err(ConfineError::Io { cause, .. }) if cause.kind() == io::ErrorKind::NotFound
                    )
                });
            if missing {
                planned.mkdir(here);
            }
        }
    }

    /// Stale temporary files removed so far (see the module doc).
    pub fn stale_removed(&self) -> u64 {
        self.stale_removed.load(Ordering::Relaxed)
    }

    /// The directory that holds `rel` (a checked text path, see
    /// [`crate::fs::safe_path::validate`]) and its final name, when every
    /// directory on the way exists as a real directory; `None` when one is
    /// missing. Nothing is created.
    ///
    /// # Errors
    /// [`ConfineError::Symlink`] / [`ConfineError::NotDir`] when a component
    /// is a link or a file, [`ConfineError::Io`] otherwise.
    pub fn find_parent(&self, rel: &str) -> Result<Option<(Arc<Dir>, OsString)>, ConfineError> {
        if self.root.is_none() {
            return Ok(None);
        }
        match self.parent(rel, Create::No) {
            Ok(found) => Ok(Some(found)),
            Err(ConfineError::Io { cause, .. }) if cause.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// As [`Dest::find_parent`], creating missing directories owner-only;
    /// they are remembered for [`Dest::finish_dirs`].
    ///
    /// # Errors
    /// As [`Dest::find_parent`].
    pub fn make_parent(&self, rel: &str) -> Result<(Arc<Dir>, OsString), ConfineError> {
        self.parent(rel, Create::Mode(FILLING_MODE))
    }

    fn parent(&self, rel: &str, create: Create) -> Result<(Arc<Dir>, OsString), ConfineError> {
        let root = self.root()?;
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let name = self.local_rel(name).into_owned();
        let cached = self.handles.lock().ok().and_then(|h| h.get(parent).cloned());
        if let Some(dir) = cached {
            return Ok((dir, name));
        }
        let dir = if parent.is_empty() {
            root.dir().try_clone().map_err(|source| ConfineError::Io {
                at: root.path().to_path_buf(),
                cause: source,
            })?
        } else {
            let (dir, created) = root.open_dir(Path::new(&self.local_rel(parent)), create)?;
            if !created.is_empty()
                && let Ok(mut all) = self.created.lock()
            {
                all.extend(created.iter().map(|p| self.key_text(p)));
            }
            dir
        };
        self.first_visit(parent, &dir);
        let dir = Arc::new(dir);
        if let Ok(mut handles) = self.handles.lock() {
            if handles.len() >= CACHED_DIRS {
                handles.clear();
            }
            handles.insert(parent.to_string(), dir.clone());
        }
        Ok((dir, name))
    }

    /// Sweeps a directory the first time this restore reaches it. The
    /// lock is held through the sweep: another task reaching the same
    /// directory meanwhile waits, so it cannot create a temporary file
    /// there that the sweep would take (and count) before its writer locks it.
    fn first_visit(&self, rel: &str, dir: &Dir) {
        let Ok(mut visited) = self.visited.lock() else {
            return;
        };
        if visited.insert(rel.to_string()) {
            let removed = sweep(dir, rel, self.planned.as_ref());
            if removed > 0 {
                tracing::debug!("removed {removed} stale temporary file(s) in '{rel}'");
                self.stale_removed.fetch_add(removed, Ordering::Relaxed);
            }
        }
    }

    /// Gives directories their modes and mtimes, deepest first, once every
    /// file and link is in place: the `selected` directory entries (created
    /// owner-only if missing), and every directory this restore created,
    /// with its metadata from `recorded` (all directory entries of the
    /// snapshot, selected or not) or, without one, the default mode.
    /// Returns how many were done; each failure is added to `failures`.
    pub fn finish_dirs(
        &self,
        selected: Vec<(String, DirMeta)>,
        recorded: &HashMap<String, DirMeta>,
        failures: &mut Vec<Failure>,
    ) -> u64 {
        // Handles of directories about to be changed are not needed again.
        if let Ok(mut handles) = self.handles.lock() {
            handles.clear();
        }
        let mut todo: HashMap<String, DirMeta> = HashMap::new();
        for (path, meta) in selected {
            match crate::fs::safe_path::validate_mapped(&path, self.holds.windows_names)
                .map_err(io::Error::other)
                .and_then(|()| self.make_dir(&path))
            {
                Ok(()) => {
                    todo.insert(path, meta);
                }
                Err(e) => failures.push(Failure {
                    path,
                    error: e.to_string(),
                }),
            }
        }
        let created = match &self.planned {
            Some(planned) => planned.made_dirs(),
            None => self.created.lock().map(|c| c.clone()).unwrap_or_default(),
        };
        let default_mode = default_dir_mode();
        for path in created {
            let meta = recorded.get(&path).copied().unwrap_or(DirMeta {
                mtime_ns: None,
                mode: default_mode,
            });
            // A created directory with a recorded entry lacking a mode still leaves 0700.
            let meta = DirMeta {
                mode: meta.mode.or(default_mode),
                ..meta
            };
            todo.entry(path).or_insert(meta);
        }
        let mut todo: Vec<(String, DirMeta)> = todo.into_iter().collect();
        todo.sort_by(|a, b| b.0.cmp(&a.0));
        let mut done = 0;
        for (path, meta) in todo {
            let mode = meta.mode.map(|m| self.modes.apply(&path, m));
            let result = match &self.planned {
                Some(planned) => self.plan_dir_meta(planned, &path, meta.mtime_ns, mode),
                None => self.set_dir_meta(Path::new(&self.local_rel(&path)), meta.mtime_ns, mode),
            };
            match result {
                Ok(()) => done += 1,
                Err(e) => failures.push(Failure {
                    path,
                    error: e.to_string(),
                }),
            }
        }
        done
    }
}

impl Dest {
    /// DEST's handle; a dry run's absent DEST is a missing directory.
    fn root(&self) -> Result<&Root, ConfineError> {
        self.root.as_ref().ok_or_else(|| ConfineError::Io {
            at: self.path.clone(),
            cause: io::ErrorKind::NotFound.into(),
        })
    }

    /// Makes the directory `path` (a checked text path) and what is
    /// missing on the way, owner-only, remembering those created; in a dry
    /// run, records them instead.
    fn make_dir(&self, path: &str) -> io::Result<()> {
        let rel = self.local_rel(path);
        let Some(planned) = &self.planned else {
            let (_, created) = self
                .root()?
                .open_dir(Path::new(&rel), Create::Mode(FILLING_MODE))?;
            if let Ok(mut all) = self.created.lock() {
                all.extend(created.iter().map(|p| self.key_text(p)));
            }
            return Ok(());
        };
        let Some(root) = &self.root else {
            self.plan_dirs(planned, path);
            return Ok(());
        };
        match root.open_dir(Path::new(&rel), Create::No) {
            Ok(_) => Ok(()),
            Err(ConfineError::Io { cause, .. }) if cause.kind() == io::ErrorKind::NotFound => {
                self.plan_dirs(planned, path);
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A dry run's [`Dest::set_dir_meta`]: a `touch` line for an existing
    /// directory whose mode or mtime would change (one it would create has
    /// its `mkdir` line).
    fn plan_dir_meta(
        &self,
        planned: &Planned,
        path: &str,
        mtime_ns: Option<i64>,
        mode: Option<u32>,
    ) -> io::Result<()> {
        if planned.makes(path) {
            return Ok(());
        }
        let (dir, _) = self
            .root()?
            .open_dir(Path::new(&self.local_rel(path)), Create::No)?;
        // A directory's mode is set on Unix only (see `set_dir_meta`).
        let (now, mode) = (dir_now(&dir)?, mode.filter(|_| cfg!(unix)));
        if self.holds.keeps.differs(now, mtime_ns, mode) {
            planned.line(path, format!("touch {}", crate::restore::dry::name(path)));
        }
        Ok(())
    }

    /// Sets a directory's mode and mtime through its own handle, reached
    /// without following links.
    #[cfg(unix)]
    fn set_dir_meta(&self, rel: &Path, mtime_ns: Option<i64>, mode: Option<u32>) -> io::Result<()> {
        let (dir, _) = self.root()?.open_dir(rel, Create::No)?;
        crate::restore::meta::set_file_times_and_mode(&dir_file(&dir)?, mtime_ns, mode)
    }

    /// Sets a directory's mtime relative to DEST's handle (cap-std keeps
    /// the path inside it); modes are Unix-only.
    #[cfg(not(unix))]
    fn set_dir_meta(&self, rel: &Path, mtime_ns: Option<i64>, _mode: Option<u32>) -> io::Result<()> {
        let root = self.root()?;
        root.open_dir(rel, Create::No)?;
        if let Some(ns) = mtime_ns {
            let t = cap_std::time::SystemTime::from_std(crate::restore::meta::system_time(ns));
            root.dir()
                .set_times(rel, None, Some(cap_fs_ext::SystemTimeSpec::Absolute(t)))?;
        }
        Ok(())
    }
}

/// A temporary file in a DEST directory, locked (`flock`) while this
/// process writes it, removed unless [`TempFile::place`]d.
#[derive(Debug)]
pub struct TempFile<'a> {
    dir: &'a Dir,
    name: OsString,
    file: std::fs::File,
    placed: bool,
}

impl<'a> TempFile<'a> {
    /// Creates an owner-only temporary file in `dir` and locks it.
    ///
    /// # Errors
    /// The system's, when the file cannot be created or locked.
    pub fn create(dir: &'a Dir) -> io::Result<Self> {
        for _ in 0..TEMP_ATTEMPTS {
            let name = temp_name("");
            let mut opts = cap_std::fs::OpenOptions::new();
            opts.read(true).write(true).create_new(true);
            opts.follow(FollowSymlinks::No);
            #[cfg(unix)]
            {
                use cap_std::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let file = dir.open_with(&name, &opts)?.into_std();
            let temp = Self {
                dir,
                name,
                file,
                placed: false,
            };
            temp.file.lock()?;
            if still_linked(&temp.file)? {
                return Ok(temp);
            }
            // Another restore's sweep took it between creation and lock.
        }
        Err(io::Error::other(
            "temporary files in this directory keep being removed by another process",
        ))
    }

    /// The open file, for writing and reading back.
    pub fn file(&self) -> &std::fs::File {
        &self.file
    }

    /// Renames the file to `final_name` in the same directory, replacing a
    /// file or symlink there (never following it). On Windows a read-only
    /// file there loses the attribute first, as Windows refuses to replace
    /// it otherwise (the new file has the attribute its mode gives).
    ///
    /// # Errors
    /// The system's (e.g. a directory is in the way).
    pub fn place(mut self, final_name: &OsStr) -> io::Result<()> {
        crate::fs::winpath::clear_readonly(self.dir, Path::new(final_name))?;
        self.dir.rename(&self.name, self.dir, final_name)?;
        self.placed = true;
        Ok(())
    }
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if !self.placed {
            let _ = self.dir.remove_file(&self.name);
        }
    }
}

/// Whether the file still has a name (a sweep unlinks it before unlocking).
fn still_linked(file: &std::fs::File) -> io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok(file.metadata()?.nlink() > 0)
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        Ok(true)
    }
}

/// Removes the abandoned temporary files and links in `dir` (at `rel`
/// in DEST); returns how many. A file another process holds locked is
/// being written: it stays. In a dry run (`planned`), each one that would
/// be removed is listed instead.
fn sweep(dir: &Dir, rel: &str, planned: Option<&Planned>) -> u64 {
    let Ok(entries) = dir.entries() else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !is_temp_name(&name) {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let gone = if kind.is_symlink() {
            // A link is made and renamed within microseconds; a placer that
            // loses it here makes another (see `crate::restore::place::place_link`).
            match planned {
                Some(_) => Ok(true),
                None => dir.remove_file_or_symlink(&name).map(|()| true),
            }
        } else if kind.is_file() {
            remove_if_abandoned(dir, &name, planned.is_none())
        } else {
            continue;
        };
        match gone {
            Ok(true) => {
                removed += 1;
                if let Some(planned) = planned {
                    let name = crate::fs::names::encode(&name);
                    let path = if rel.is_empty() {
                        name.into_owned()
                    } else {
                        format!("{rel}/{name}")
                    };
                    planned.line(&path, format!("delete {path} (stale temporary file)"));
                }
            }
            Ok(false) => {}
            Err(e) => tracing::debug!("not removing '{}': {e}", Path::new(&name).display()),
        }
    }
    removed
}

/// Removes the temporary file `name` unless its writer still holds its
/// lock; the lock is held across the removal, so the writer, locking
/// after it, sees the file unlinked and takes another name. Without
/// `remove` (a dry run), only says whether it would be removed.
fn remove_if_abandoned(dir: &Dir, name: &OsStr, remove: bool) -> io::Result<bool> {
    let mut opts = cap_std::fs::OpenOptions::new();
    opts.read(true);
    opts.follow(FollowSymlinks::No);
    #[cfg(unix)]
    {
        use cap_std::fs::OpenOptionsExt;
        opts.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    let file = dir.open_with(name, &opts)?.into_std();
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    if remove {
        // A restore killed after marking its file read-only (mode 0444) leaves it so on Windows.
        crate::fs::winpath::clear_readonly(dir, Path::new(name))?;
        dir.remove_file(name)?;
    }
    drop(file);
    Ok(true)
}

/// The directory itself opened for reading: a [`Dir`] may be a path-only
/// handle (`O_PATH` on Linux), which `fchmod` and `futimens` refuse.
#[cfg(unix)]
fn dir_file(dir: &Dir) -> io::Result<std::fs::File> {
    use cap_std::fs::OpenOptionsExt;
    let mut opts = cap_std::fs::OpenOptions::new();
    opts.read(true);
    opts.follow(FollowSymlinks::No);
    opts.custom_flags(rustix::fs::OFlags::DIRECTORY.bits() as i32);
    Ok(dir.open_with(".", &opts)?.into_std())
}

/// A directory's mtime (ns) and permission bits, read through its handle.
#[cfg(unix)]
fn dir_now(dir: &Dir) -> io::Result<(i64, u32)> {
    Ok(crate::restore::meta::now_of(&dir_file(dir)?.metadata()?))
}

/// A directory's mtime (ns), read through its handle; no modes here.
#[cfg(not(unix))]
fn dir_now(dir: &Dir) -> io::Result<(i64, u32)> {
    Ok((crate::restore::meta::cap_mtime_ns(&dir.dir_metadata()?)?, 0))
}

/// The mode `mkdir` gives a directory: `0777` less the umask. The umask can
/// only be read by setting it, so it is set back at once; the modes this
/// process passes when creating (`0600`, `0700`) are unaffected by the
/// brief change.
fn default_dir_mode() -> Option<u32> {
    #[cfg(unix)]
    {
        use rustix::fs::Mode;
        let mask = rustix::process::umask(Mode::from_bits_truncate(0o077));
        rustix::process::umask(mask);
        Some(0o777 & !mask.bits())
    }
    #[cfg(not(unix))]
    None
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_sweep_removes_unlocked_temporaries_only() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path();
        std::fs::write(p.join(".s3backup-restore-stale"), b"x").unwrap();
        std::fs::write(p.join("keep.txt"), b"x").unwrap();
        std::fs::create_dir(p.join(".s3backup-restore-dir")).unwrap();
        std::os::unix::fs::symlink("/nowhere", p.join(".s3backup-restore-link-x")).unwrap();
        let dir = Dir::open_ambient_dir(p, cap_std::ambient_authority()).unwrap();
        let live = TempFile::create(&dir).unwrap();
        assert_eq!(
            sweep(&dir, "", Some(&Planned::default())),
            2,
            "a dry run counts them"
        );
        assert_eq!(sweep(&dir, "", None), 2);
        let mut left: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left.len(), 3, "{left:?}");
        assert!(
            left.contains(&"keep.txt".to_string()) && left.contains(&".s3backup-restore-dir".to_string())
        );
        live.place(OsStr::new("placed")).unwrap();
        assert!(p.join("placed").is_file());
    }

    #[test]
    fn directory_handles_take_modes_and_times() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("d")).unwrap();
        let root = Root::open(tmp.path()).unwrap();
        let (dir, _) = root.open_dir(Path::new("d"), Create::No).unwrap();
        crate::restore::meta::set_file_times_and_mode(
            &dir_file(&dir).unwrap(),
            Some(1_000_000_000_000_000_000),
            Some(0o750),
        )
        .unwrap();
        let md = std::fs::metadata(tmp.path().join("d")).unwrap();
        assert_eq!(md.permissions().mode() & 0o7777, 0o750);
        assert_eq!(crate::fs::scan::mtime_ns(&md), 1_000_000_000_000_000_000);
    }
}
