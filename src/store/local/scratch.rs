//! The local store's temporary area, `ROOT/.s3backup/tmp`, and the removal
//! of what killed runs left there.
//!
//! Every write is assembled in this area and renamed into place, so a run
//! killed mid-write leaves a partly written file here and never under a
//! key. Before this module such files stayed forever (1.2 GB after 20
//! killed runs against 330 MB of data). Now each run that writes takes one
//! name, `run-<id>` (`id`: 32 hex digits, a random UUID), and holds an
//! advisory lock (`flock`, by [`std::fs::File::lock`]) on the file
//! `run-<id>.lock` for as long as it lives; its temporary entries are named
//! `run-<id>-<n>` (files, and symlinks, which cannot carry a lock
//! themselves). The kernel drops the lock when the process dies, however it
//! dies. [`sweep`], run by each backup before its first write to the store
//! (so also by the next run after a kill), removes the
//! entries of every run whose lock it can take (its process is gone), and
//! leaves alone those of runs going on now: two backup sets (two source
//! directories) may share one store, and their per-set locks in the state
//! file do not see each other.
//!
//! The race between a run creating its lock file and locking it is closed
//! from the run's side: a sweep only unlinks a lock file while holding the
//! lock, so a run that locks its file and then finds it unlinked (link count
//! 0) knows a sweep took it and starts again under a new name.
//!
//! Entries of earlier versions (`.tmpXXXXXX` files and `link-<32 hex>`
//! symlinks) carry no lock; they are removed once their status change time
//! (ctime, which every write and `chmod` moves) is older than
//! [`LEGACY_AGE`], long after any writer would have renamed them.
//! Multipart upload directories (`upload-<id>`) are not touched here: a
//! killed run's parts are what the next run resumes from, and the backup
//! engine aborts the uploads that cannot be resumed (`abort_abandoned`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, TryLockError};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt};
use cap_std::fs::{Dir, OpenOptions};

use crate::fs::confine::{Create, Root};

/// The temporary area, relative to the store's root.
pub(super) const TMP: &str = ".s3backup/tmp";

/// How old (by ctime) an entry of an earlier version must be before a sweep
/// takes it for abandoned: no writer of those versions kept a temporary
/// entry unchanged for anywhere near this long.
pub(super) const LEGACY_AGE: Duration = Duration::from_secs(60 * 60);

/// Attempts at a lock file a concurrent sweep keeps taking away.
const BEGIN_ATTEMPTS: usize = 4;

/// One run's hold on the temporary area: the area's handle, the run's
/// locked lock file, and a counter for fresh entry names. Dropping it
/// removes the lock file (the entries are gone by then: each is renamed
/// into place or removed when its write fails).
#[derive(Debug)]
pub(super) struct Scratch {
    tmp: Dir,
    id: String,
    // Held for its lock; never read.
    _lock: File,
    next: AtomicU64,
}

impl Scratch {
    /// Opens (creating it when missing, with `dir_mode`) the temporary area
    /// beneath `root` and takes a run name there.
    ///
    /// # Errors
    /// When the area cannot be reached without following a link, or the
    /// lock file cannot be created or locked.
    pub(super) fn begin(root: &Root, dir_mode: u32) -> io::Result<Scratch> {
        let (tmp, _) = root.open_dir(Path::new(TMP), Create::Mode(dir_mode))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let id = uuid::Uuid::new_v4().simple().to_string();
            let name = lock_name(&id);
            let lock = tmp
                .open_with(
                    &name,
                    OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .follow(FollowSymlinks::No),
                )?
                .into_std();
            lock.lock()?;
            if still_linked(&lock)? {
                return Ok(Scratch {
                    tmp,
                    id,
                    _lock: lock,
                    next: AtomicU64::new(0),
                });
            }
            // A sweep took the file between its creation and our lock.
            if attempt >= BEGIN_ATTEMPTS {
                return Err(io::Error::other(
                    "the temporary area's lock file keeps being removed by another run",
                ));
            }
        }
    }

    /// The temporary area's handle.
    pub(super) fn dir(&self) -> &Dir {
        &self.tmp
    }

    /// A name no entry of any run has had.
    pub(super) fn fresh_name(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("run-{}-{n}", self.id)
    }

    /// Creates a new temporary file (owner-only until its mode is applied).
    ///
    /// # Errors
    /// As the `openat` call.
    pub(super) fn create_file(&self) -> io::Result<(String, File)> {
        let name = self.fresh_name();
        let mut options = OpenOptions::new();
        options.write(true).create_new(true).follow(FollowSymlinks::No);
        #[cfg(unix)]
        {
            use cap_std::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = self.tmp.open_with(&name, &options)?.into_std();
        Ok((name, file))
    }

    /// Removes a temporary entry that will not be placed (best effort).
    pub(super) fn discard(&self, name: &str) {
        if let Err(e) = self.tmp.remove_file_or_symlink(name)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!("removing the temporary file '{name}': {e}");
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Still locked while it is unlinked: no sweep mistakes it for a dead run's.
        let _ = self.tmp.remove_file(lock_name(&self.id));
    }
}

fn lock_name(id: &str) -> String {
    format!("run-{id}.lock")
}

/// Whether an open file still has a name (a sweep unlinks the lock files it takes).
fn still_linked(file: &File) -> io::Result<bool> {
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

/// What a [`sweep`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Swept {
    /// Temporary files and links removed (lock files not counted).
    pub entries: usize,
    /// Their sizes added up, in bytes.
    pub bytes: u64,
}

/// What a name in the temporary area is.
#[derive(Debug, PartialEq, Eq)]
enum Entry<'a> {
    /// `run-<id>.lock`.
    Lock(&'a str),
    /// `run-<id>-<n>`.
    Temp(&'a str),
    /// An earlier version's `.tmpXXXXXX` file or `link-<32 hex>` symlink.
    Legacy,
    /// Anything else (upload directories, names not ours): left alone.
    Other,
}

fn classify(name: &str) -> Entry<'_> {
    let hex32 = |s: &str| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(rest) = name.strip_prefix("run-") {
        if let Some(id) = rest.strip_suffix(".lock").filter(|id| hex32(id)) {
            return Entry::Lock(id);
        }
        if let Some((id, n)) = rest.split_once('-')
            && hex32(id)
            && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
        {
            return Entry::Temp(id);
        }
        return Entry::Other;
    }
    // tempfile's default names: ".tmp" and six alphanumerics.
    let legacy_file = name
        .strip_prefix(".tmp")
        .is_some_and(|r| r.len() == 6 && r.bytes().all(|b| b.is_ascii_alphanumeric()));
    let legacy_link = name.strip_prefix("link-").is_some_and(hex32);
    if legacy_file || legacy_link {
        Entry::Legacy
    } else {
        Entry::Other
    }
}

/// Removes the temporary entries of runs that are gone from the store's
/// temporary area (see the module doc), and earlier versions' entries whose
/// ctime is before `legacy_before`. A missing area is nothing to do.
///
/// # Errors
/// When the area cannot be opened or listed; an entry that cannot be
/// removed is logged and passed over.
pub(super) fn sweep(root: &Root, legacy_before: SystemTime) -> io::Result<Swept> {
    let tmp = match root.open_dir(Path::new(TMP), Create::No) {
        Ok((tmp, _)) => tmp,
        Err(e) => {
            let e = io::Error::from(e);
            return match e.kind() {
                io::ErrorKind::NotFound => Ok(Swept::default()),
                _ => Err(e),
            };
        }
    };
    let mut names = Vec::new();
    for entry in tmp.entries()? {
        if let Ok(name) = entry?.file_name().into_string() {
            names.push(name);
        }
    }
    // The locks first: a run is dead when its lock can be taken. Taken
    // locks are held until the end, so no new run can take those names.
    let mut dead: BTreeMap<&str, File> = BTreeMap::new();
    let mut alive: BTreeSet<&str> = BTreeSet::new();
    for name in &names {
        let Entry::Lock(id) = classify(name) else { continue };
        let opened = tmp.open_with(name, OpenOptions::new().read(true).follow(FollowSymlinks::No));
        let lock = match opened {
            Ok(lock) => lock.into_std(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                tracing::warn!("checking the temporary area's lock '{name}': {e}");
                alive.insert(id);
                continue;
            }
        };
        match lock.try_lock() {
            Ok(()) => {
                dead.insert(id, lock);
            }
            Err(TryLockError::WouldBlock) => {
                alive.insert(id);
            }
            Err(TryLockError::Error(e)) => {
                tracing::warn!("checking the temporary area's lock '{name}': {e}");
                alive.insert(id);
            }
        }
    }
    let mut swept = Swept::default();
    for name in &names {
        let abandoned = match classify(name) {
            Entry::Temp(id) if alive.contains(id) => false,
            Entry::Temp(id) if dead.contains_key(id) => true,
            // No lock was listed: a run begun since the listing has one now;
            // an entry whose lock is gone outlived its run.
            Entry::Temp(id) => matches!(
                tmp.symlink_metadata(lock_name(id)),
                Err(e) if e.kind() == io::ErrorKind::NotFound
            ),
            Entry::Legacy => changed_before(&tmp, name, legacy_before),
            Entry::Lock(_) | Entry::Other => false,
        };
        if !abandoned {
            continue;
        }
        let size = match tmp.symlink_metadata(name) {
            Ok(md) if !md.is_dir() => md.len(),
            _ => continue,
        };
        match tmp.remove_file_or_symlink(name) {
            Ok(()) => {
                swept.entries += 1;
                swept.bytes += size;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("removing the abandoned temporary file '{name}': {e}"),
        }
    }
    for id in dead.keys() {
        // Unlinked while still locked: see the module doc.
        if let Err(e) = tmp.remove_file(lock_name(id))
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!("removing an abandoned lock file: {e}");
        }
    }
    Ok(swept)
}

/// Whether an entry's status last changed before `before` (never true
/// where the platform has no ctime).
fn changed_before(tmp: &Dir, name: &str, before: SystemTime) -> bool {
    #[cfg(unix)]
    {
        use cap_std::fs::MetadataExt;
        let Ok(md) = tmp.symlink_metadata(name) else {
            return false;
        };
        let Ok(limit) = before.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let ctime = (md.ctime(), md.ctime_nsec());
        ctime < (limit.as_secs() as i64, i64::from(limit.subsec_nanos()))
    }
    #[cfg(not(unix))]
    {
        let _ = (tmp, name, before);
        false
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn names_are_told_apart() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(classify(&format!("run-{id}.lock")), Entry::Lock(id));
        assert_eq!(classify(&format!("run-{id}-0")), Entry::Temp(id));
        assert_eq!(classify(&format!("run-{id}-17")), Entry::Temp(id));
        assert_eq!(classify(".tmpAb3xZ9"), Entry::Legacy);
        assert_eq!(classify(&format!("link-{id}")), Entry::Legacy);
        for other in [
            "upload-0123456789abcdef0123456789abcdef",
            &format!("run-{id}-"),
            &format!("run-{id}-1x"),
            "run-abc-1",
            ".tmpAb3",
            ".tmpAb3xZ9.part",
            "notes.txt",
        ] {
            assert_eq!(classify(other), Entry::Other, "{other}");
        }
    }

    #[test]
    fn a_sweep_removes_dead_runs_entries_and_keeps_live_ones() {
        let store = tempfile::tempdir().unwrap();
        let root = Root::open(store.path()).unwrap();
        let live = Scratch::begin(&root, 0o700).unwrap();
        let (live_name, _) = live.create_file().unwrap();
        let tmp = store.path().join(TMP);
        // A dead run: its lock file is there, nobody holds it.
        let dead = "fedcba9876543210fedcba9876543210";
        std::fs::write(tmp.join(lock_name(dead)), b"").unwrap();
        std::fs::write(tmp.join(format!("run-{dead}-0")), b"12345").unwrap();
        std::os::unix::fs::symlink("/etc", tmp.join(format!("run-{dead}-1"))).unwrap();
        // An orphan whose lock is gone, a recent legacy file, and an upload.
        std::fs::write(tmp.join("run-00000000000000000000000000000000-3"), b"xy").unwrap();
        std::fs::write(tmp.join(".tmpAAAAAA"), b"legacy").unwrap();
        std::fs::create_dir(tmp.join("upload-abc")).unwrap();

        let swept = sweep(&root, SystemTime::now() - LEGACY_AGE).unwrap();
        assert_eq!(
            swept,
            Swept {
                entries: 3,
                bytes: 5 + 4 + 2
            },
            "(a link's size is its target's length)"
        );
        let mut left: Vec<String> = std::fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut want = vec![
            ".tmpAAAAAA".to_string(),
            lock_name(&live.id),
            live_name.clone(),
            "upload-abc".into(),
        ];
        want.sort();
        assert_eq!(left, want);
        assert!(
            Path::new("/etc/passwd").exists(),
            "a link is removed, not followed"
        );

        // Once old enough, an earlier version's file goes too.
        let swept = sweep(&root, SystemTime::now() + Duration::from_secs(1)).unwrap();
        assert_eq!(swept, Swept { entries: 1, bytes: 6 });
        drop(live);
        assert!(!tmp.join(lock_name(dead)).exists());
    }
}
