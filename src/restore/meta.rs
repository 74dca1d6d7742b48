//! Modes and times, set through handles: which mode bits a restore applies
//! ([`ModePolicy`]: setuid, setgid and sticky bits only with
//! `--preserve-special-bits`, as `tar` strips them unless asked, counted so
//! the restore can say how many were dropped), and the calls that set a
//! mode or an mtime on an open file or directory, or on a symlink itself.
//! The lowest layer of the restore: it knows nothing of DEST or the store.

use std::ffi::OsStr;
use std::fs::File;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use cap_fs_ext::DirExt;

use crate::fs::confine::Dir;

/// A directory's recorded metadata from a snapshot's directory entry.
#[derive(Debug, Clone, Copy, Default)]
pub struct DirMeta {
    /// mtime, nanoseconds since the epoch.
    pub mtime_ns: Option<i64>,
    /// Permission bits (octal value, as recorded).
    pub mode: Option<u32>,
}

/// Which mode bits a restore applies, and how many special bits it left out.
#[derive(Debug, Default)]
pub struct ModePolicy {
    preserve_special: bool,
    dropped: AtomicU64,
    example: Mutex<Option<String>>,
}

impl ModePolicy {
    /// A policy keeping setuid/setgid/sticky bits only when `preserve_special`.
    pub fn new(preserve_special: bool) -> Self {
        Self {
            preserve_special,
            ..Self::default()
        }
    }

    /// The bits to set for `path` (its text form, for the notice): the
    /// permission bits, plus the special ones (`0o7000`) when preserved.
    /// Counts each entry whose special bits are dropped.
    pub fn apply(&self, path: &str, mode: u32) -> u32 {
        let mode = mode & 0o7777;
        if self.preserve_special || mode & 0o7000 == 0 {
            return mode;
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut example) = self.example.lock() {
            example.get_or_insert_with(|| path.to_string());
        }
        mode & 0o777
    }

    /// How many entries had special bits dropped, and the first of them.
    pub fn dropped(&self) -> (u64, Option<String>) {
        let example = self.example.lock().ok().and_then(|e| e.clone());
        (self.dropped.load(Ordering::Relaxed), example)
    }
}

/// Sets the own mtime of the symlink `name` in `dir` (never its target's).
///
/// # Errors
/// The system's.
pub fn set_link_time(dir: &Dir, name: &OsStr, mtime_ns: Option<i64>) -> std::io::Result<()> {
    if let Some(ns) = mtime_ns {
        let t = cap_fs_ext::SystemTimeSpec::Absolute(cap_std::time::SystemTime::from_std(system_time(ns)));
        dir.set_symlink_times(name, None, Some(t))?;
    }
    Ok(())
}

/// Sets permission bits (Unix; `mode & 0o7777`, already filtered by a
/// [`ModePolicy`]) and the mtime (nanoseconds since the epoch) through an
/// open handle of a file or directory: no path lookup a link could
/// redirect, and no second open. On Windows a file (not a directory)
/// gets the read-only attribute exactly when the owner-write bit
/// (`0o200`) is clear, and loses it when that bit is set; the mtime is set
/// first, as the attribute is. The access time becomes now.
///
/// # Errors
/// The system's.
pub fn set_file_times_and_mode(file: &File, mtime_ns: Option<i64>, mode: Option<u32>) -> std::io::Result<()> {
    #[cfg(unix)]
    if let Some(mode) = mode {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))?;
    }
    if let Some(ns) = mtime_ns {
        // The access time is set too (to now): exFAT's FUSE driver drops
        // an mtime set without one (`UTIME_OMIT`) and writes the clock's.
        let times = std::fs::FileTimes::new()
            .set_modified(system_time(ns))
            .set_accessed(std::time::SystemTime::now());
        file.set_times(times)?;
    }
    #[cfg(windows)]
    if let Some(mode) = mode {
        set_read_only(file, mode)?;
    }
    #[cfg(not(any(unix, windows)))]
    let _ = mode;
    Ok(())
}

/// Windows: gives the file behind `file` the read-only attribute when the
/// owner-write bit of `mode` is clear, and takes it away when it is set
/// (the attribute is what a backup on Windows records as `444` against
/// `644`). Directories are left alone: on Windows their read-only
/// attribute does not keep entries from being made in them, and under
/// wine it would.
#[cfg(windows)]
fn set_read_only(file: &File, mode: u32) -> std::io::Result<()> {
    let md = file.metadata()?;
    let read_only = mode & 0o200 == 0;
    if md.is_dir() || md.permissions().readonly() == read_only {
        return Ok(());
    }
    let mut perms = md.permissions();
    perms.set_readonly(read_only);
    file.set_permissions(perms)
}

/// Whether setting `mtime_ns` and `mode` (filtered, as
/// [`set_file_times_and_mode`] takes it) would change an entry that now
/// has the mtime `now_ns` and the permission bits `now_mode` (a dry run
/// lists only such changes). Modes count on Unix; on Windows only the
/// owner-write bit does (the read-only attribute), elsewhere none.
pub fn differs((now_ns, now_mode): (i64, u32), mtime_ns: Option<i64>, mode: Option<u32>) -> bool {
    let mode_differs = if cfg!(unix) {
        mode.is_some_and(|m| m & 0o7777 != now_mode & 0o7777)
    } else if cfg!(windows) {
        mode.is_some_and(|m| m & 0o200 != now_mode & 0o200)
    } else {
        false
    };
    mode_differs || mtime_ns.is_some_and(|t| t != now_ns)
}

/// What DEST keeps of the metadata a restore sets, learned once: exFAT
/// and FAT hold no mode bits (every entry reads `777`) and times in steps
/// (exFAT through FUSE: whole seconds; FAT: two), so comparing what was
/// set with what reads back would find a change on every run. Only what
/// DEST keeps is compared ([`Keeps::differs`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keeps {
    /// Whether permission bits set read back as set.
    pub modes: bool,
    /// The step (ns) of the mtimes it keeps: two times closer than this
    /// are one.
    pub mtime_step_ns: i64,
}

impl Default for Keeps {
    /// Everything, to the nanosecond.
    fn default() -> Self {
        Self {
            modes: true,
            mtime_step_ns: 1,
        }
    }
}

/// The steps of the file systems' clocks, finest first (ns): NTFS's
/// 100 ns, microseconds, milliseconds, exFAT's 10 ms, seconds, FAT's 2 s.
const STEPS: [i64; 6] = [100, 1_000, 1_000_000, 10_000_000, 1_000_000_000, 2_000_000_000];

impl Keeps {
    /// [`differs`], for what DEST keeps: modes only where it keeps them,
    /// mtimes to its step.
    pub fn differs(self, (now_ns, now_mode): (i64, u32), mtime_ns: Option<i64>, mode: Option<u32>) -> bool {
        let mode = mode.filter(|_| self.modes);
        let mtime_differs = mtime_ns.is_some_and(|t| t.abs_diff(now_ns) >= self.mtime_step_ns.unsigned_abs());
        mtime_differs || differs((now_ns, now_mode), None, mode)
    }

    /// Learns what the directory `dir` keeps by setting a mode and a time
    /// on a temporary file there (a restore's temporary name, swept if a
    /// kill leaves it) and reading them back. Unix only; anything that
    /// fails leaves [`Keeps::default`].
    pub fn learn(dir: &std::path::Path) -> Self {
        if !cfg!(unix) {
            return Self::default();
        }
        let path = dir.join(format!(
            "{}-meta",
            crate::fs::own::temp_name("probe").to_string_lossy()
        ));
        let Ok(file) = crate::fs::case::create_new(&path) else {
            return Self::default();
        };
        const SET: i64 = 1_000_000_001_123_456_789;
        let read = set_file_times_and_mode(&file, Some(SET), Some(0o600)).and_then(|()| file.metadata());
        drop(file);
        let _ = std::fs::remove_file(&path);
        let Ok(md) = read else {
            return Self::default();
        };
        let (now, mode) = now_of(&md);
        let off = now.abs_diff(SET);
        Self {
            modes: mode & 0o777 == 0o600,
            mtime_step_ns: if off == 0 {
                1
            } else {
                STEPS
                    .into_iter()
                    .find(|s| off < s.unsigned_abs())
                    .unwrap_or(2_000_000_000)
            },
        }
    }

    /// Without writing (a dry run): what entries already in DEST suggest,
    /// for a DEST that folds names (exFAT, FAT, NTFS; one that does not
    /// is taken to keep everything): no modes when every one reads `777`,
    /// and the coarsest step (at most a second) every mtime is a multiple of. Looks at up to
    /// 64 entries of `dir` and `dir` itself; an empty one tells nothing.
    pub fn guess(dir: &std::path::Path) -> Self {
        let mut seen: Vec<(i64, u32)> = std::fs::symlink_metadata(dir)
            .map(|md| now_of(&md))
            .into_iter()
            .collect();
        if let Ok(entries) = std::fs::read_dir(dir) {
            seen.extend(
                entries
                    .flatten()
                    .take(64)
                    .filter_map(|e| e.metadata().ok())
                    .map(|md| now_of(&md)),
            );
        }
        if seen.len() < 2 {
            return Self::default();
        }
        // Never coarser than a second: two entries at even seconds by
        // chance are common, and FAT's two seconds would hide a change.
        let step = STEPS[..5]
            .iter()
            .copied()
            .rev()
            .find(|s| seen.iter().all(|(t, _)| t.rem_euclid(*s) == 0))
            .unwrap_or(1);
        Self {
            modes: cfg!(not(unix)) || !seen.iter().all(|(_, m)| m & 0o777 == 0o777),
            mtime_step_ns: step,
        }
    }
}

/// What [`differs`] compares of a stat result: its mtime (ns) and permission bits.
pub fn now_of(md: &std::fs::Metadata) -> (i64, u32) {
    (crate::fs::scan::mtime_ns(md), crate::fs::scan::mode(md))
}

/// The mtime (ns) of an entry stat'ed through a directory handle (a
/// symlink's own, for [`differs`]).
///
/// # Errors
/// The system's, when it has no mtime.
pub fn cap_mtime_ns(md: &cap_std::fs::Metadata) -> std::io::Result<i64> {
    let t = filetime::FileTime::from_system_time(md.modified()?.into_std());
    Ok(t.unix_seconds()
        .saturating_mul(1_000_000_000)
        .saturating_add(i64::from(t.nanoseconds())))
}

/// Nanoseconds since the epoch (negative before it) as a `SystemTime`.
pub(crate) fn system_time(ns: i64) -> std::time::SystemTime {
    let since = std::time::Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        std::time::UNIX_EPOCH + since
    } else {
        std::time::UNIX_EPOCH - since
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_bits_are_dropped_and_counted_unless_preserved() {
        let drop = ModePolicy::new(false);
        assert_eq!(drop.apply("a", 0o4777), 0o777);
        assert_eq!(drop.apply("b", 0o644), 0o644);
        assert_eq!(drop.apply("c", 0o1777), 0o777);
        assert_eq!(drop.dropped(), (2, Some("a".to_string())));
        let keep = ModePolicy::new(true);
        assert_eq!(keep.apply("a", 0o104777), 0o4777);
        assert_eq!(keep.dropped().0, 0);
    }

    #[test]
    fn only_a_different_mtime_or_mode_is_a_change() {
        let now = (1_000, 0o644);
        assert!(!differs(now, Some(1_000), Some(0o100644)));
        assert!(!differs(now, None, None));
        assert!(differs(now, Some(1_001), Some(0o644)));
        assert_eq!(differs(now, Some(1_000), Some(0o600)), cfg!(unix));
        // The owner-write bit is the read-only attribute on Windows.
        assert_eq!(differs(now, Some(1_000), Some(0o444)), cfg!(any(unix, windows)));
    }

    #[test]
    fn only_what_dest_keeps_is_compared() {
        let exfat = Keeps {
            modes: false,
            mtime_step_ns: 1_000_000_000,
        };
        let now = (5_000_000_000, 0o777);
        assert!(!exfat.differs(now, Some(5_123_456_789), Some(0o644)));
        assert!(exfat.differs(now, Some(6_000_000_000), Some(0o644)));
        assert!(Keeps::default().differs(now, Some(5_000_000_001), None));
        assert_eq!(
            Keeps::default().differs(now, Some(5_000_000_000), Some(0o644)),
            cfg!(unix)
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_local_directory_keeps_modes_and_nanoseconds_and_exfat_neither() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Keeps::learn(dir.path()), Keeps::default());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let Some(root) = std::env::var_os("S3BACKUP_TEST_FOLDING_DIR") else {
            return;
        };
        let dir = tempfile::tempdir_in(root).unwrap();
        let exfat = Keeps::learn(dir.path());
        assert!(!exfat.modes && exfat.mtime_step_ns >= 10_000_000, "{exfat:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        std::fs::write(dir.path().join("a"), "").unwrap();
        assert_eq!(Keeps::guess(dir.path()), exfat);
    }
}
