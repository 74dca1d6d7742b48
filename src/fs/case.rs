//! Destinations that fold names, and the keys that would land on one file there.
//!
//! S3 keys are exact: `Case.txt` and `case.txt` are two objects, and so are
//! `é` written as one code point (NFC) and as `e` + accent (NFD). Many file
//! systems are not: NTFS, exFAT and FAT fold letter case, macOS's APFS and
//! HFS+ fold case and Unicode normalisation form by default, ext4 folds case
//! in directories marked `+F`. Writing both keys there keeps one file and
//! loses the other without an error, so a restore (and a backup into a
//! local store) first asks the destination how it compares names
//! ([`probe`]), then checks every key against those written before it
//! ([`Twins`]): the first keeps its place, each later one that would land
//! on the same file, or in the same directory under another spelling, is
//! reported by name instead of written. Which keys are one name is
//! decided in [`crate::fs::twins`]: by a fold wider than any file
//! system's, and, where the destination may be written, by the
//! destination itself.
//!
//! The probe creates a file with a fresh random name (a restore's temporary
//! name, [`crate::fs::own::temp_name`], swept like the others if a kill
//! leaves it) and looks for it under another spelling; where it may not
//! write (a dry run), it looks an existing entry up under its other
//! spelling.

use std::io;
use std::path::Path;

use unicode_normalization::UnicodeNormalization;

pub use crate::fs::twins::{Clash, Judge, Twin, Twins};

/// How a destination compares names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folding {
    /// Byte for byte, as keys are (Linux's ext4, xfs, btrfs, …).
    Exact,
    /// Letter case folded (NTFS, exFAT, FAT).
    Case,
    /// Letter case and Unicode normalisation form folded (APFS, HFS+).
    CaseAndForm,
}

impl Folding {
    /// A form two names share whenever this file system takes them for
    /// one (`None` for [`Folding::Exact`]): the lower case of the upper
    /// case (after NFC for [`Folding::CaseAndForm`]). It is wider than any
    /// file system's own table (exFAT's and NTFS's upper-case by a table,
    /// APFS's fold): names it tells apart are two names everywhere, names
    /// it puts together may still be two there (`ǅ` and `ǆ` on exFAT), which
    /// only the file system can say ([`Judge::Dest`]).
    pub fn fold(self, name: &str) -> Option<String> {
        let wide = |chars: &mut dyn Iterator<Item = char>| {
            chars
                .flat_map(char::to_uppercase)
                .flat_map(char::to_lowercase)
                .collect()
        };
        match self {
            Folding::Exact => None,
            Folding::Case => Some(wide(&mut name.chars())),
            Folding::CaseAndForm => Some(wide(&mut name.nfc())),
        }
    }

    /// Words for messages: what the file system folds.
    pub fn describe(self) -> &'static str {
        match self {
            Folding::Exact => "nothing",
            Folding::Case => "letter case",
            Folding::CaseAndForm => "letter case and Unicode normalisation",
        }
    }
}

/// How the file system holding `dir` (or, if `dir` does not exist yet, its
/// nearest existing ancestor) compares names. With `may_write`, a probe
/// file is created and removed there; without, names are looked up under
/// another spelling ([`probe_read_only`]), and a directory that cannot
/// tell that way reads as [`Folding::Exact`].
///
/// # Errors
/// The I/O error of creating the probe file, or of reading `dir`.
pub fn probe(dir: &Path, may_write: bool) -> io::Result<Folding> {
    let Some(base) = nearest_existing(dir) else {
        return Ok(Folding::Exact);
    };
    if may_write {
        probe_by_writing(base)
    } else {
        Ok(probe_by_reading(base)?.unwrap_or(Folding::Exact))
    }
}

/// Without writing: how `dir` (or its nearest existing ancestor) compares
/// names, or `None` when nothing there can tell. Names are looked up
/// under another spelling: first its entries, then (empty, or not made
/// yet) its own name in its parent, and the parent's in its own, while
/// they are on the same device (a mount root's name is looked up by the
/// file system it is mounted on).
///
/// # Errors
/// The I/O error of reading it.
pub fn probe_read_only(dir: &Path) -> io::Result<Option<Folding>> {
    match nearest_existing(dir) {
        Some(base) => probe_by_reading(base),
        None => Ok(None),
    }
}

/// Creates a lower-case probe name (and one holding an NFC `é`) and looks
/// for its other spelling.
fn probe_by_writing(base: &Path) -> io::Result<Folding> {
    let lower = base.join(format!(
        "{}-case",
        crate::fs::own::temp_name("probe").to_string_lossy()
    ));
    let upper = base.join(
        lower
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_uppercase(),
    );
    let created = create_new(&lower)?;
    let folds_case = upper.symlink_metadata().is_ok();
    drop(created);
    std::fs::remove_file(&lower)?;
    if !folds_case {
        return Ok(Folding::Exact);
    }
    let nfc = base.join(format!(
        "{}-\u{e9}",
        crate::fs::own::temp_name("probe").to_string_lossy()
    ));
    let nfd = base.join(
        nfc.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .nfd()
            .collect::<String>(),
    );
    let created = create_new(&nfc)?;
    let folds_form = nfd.symlink_metadata().is_ok();
    drop(created);
    std::fs::remove_file(&nfc)?;
    Ok(if folds_form {
        Folding::CaseAndForm
    } else {
        Folding::Case
    })
}

/// `dir`, or its nearest ancestor that exists (where it would be made):
/// the directory a probe of `dir` looks at; `None` when none exists.
pub(crate) fn nearest_existing(dir: &Path) -> Option<&Path> {
    let mut base = dir;
    while !base.exists() {
        match base.parent() {
            Some(p) if !p.as_os_str().is_empty() => base = p,
            _ => return None,
        }
    }
    Some(base)
}

/// Creates `path`, failing if anything is there.
pub(crate) fn create_new(path: &Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// Looks up the first entry of `base` whose name has another spelling
/// under that spelling: found, and not listed under it, means the name
/// was folded. (Identity cannot tell: FUSE file systems number each lookup
/// afresh.) An empty directory has no entry to look up: then its own
/// name, and its ancestors', on the same device (see [`probe_read_only`]).
fn probe_by_reading(base: &Path) -> io::Result<Option<Folding>> {
    for entry in std::fs::read_dir(base)? {
        let Some(name) = entry?.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if let Some(folding) = folds(base, &name)? {
            return Ok(Some(folding));
        }
    }
    let mut dir = base.to_path_buf();
    while let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) {
        if parent.as_os_str().is_empty() || !same_device(parent, &dir) {
            break;
        }
        if let Some(name) = name.to_str()
            && let Some(folding) = folds(parent, name)?
        {
            return Ok(Some(folding));
        }
        dir = parent.to_path_buf();
    }
    Ok(None)
}

/// Whether `name`, an entry of `dir`, is found under another spelling
/// there without being listed under it; `None` when it has no other.
fn folds(dir: &Path, name: &str) -> io::Result<Option<Folding>> {
    let other = swap_case(name);
    if other == name {
        return Ok(None);
    }
    if dir.join(&other).symlink_metadata().is_err() {
        return Ok(Some(Folding::Exact));
    }
    for entry in std::fs::read_dir(dir)? {
        if entry?.file_name().to_str() == Some(other.as_str()) {
            return Ok(Some(Folding::Exact));
        }
    }
    Ok(Some(Folding::Case))
}

/// Whether `a` and `b` are on one device (where that cannot be told,
/// outside Unix, they are not).
fn same_device(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (a.metadata(), b.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        false
    }
}

/// `name` with every letter's case swapped.
fn swap_case(name: &str) -> String {
    name.chars()
        .flat_map(|c| {
            let swapped: Vec<char> = if c.is_lowercase() {
                c.to_uppercase().collect()
            } else {
                c.to_lowercase().collect()
            };
            swapped
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn a_case_sensitive_directory_probes_exact_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(probe(dir.path(), true).unwrap(), Folding::Exact);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        std::fs::write(dir.path().join("Name"), "").unwrap();
        assert_eq!(probe(dir.path(), false).unwrap(), Folding::Exact);
        // A destination not made yet is probed where it will be made.
        assert_eq!(
            probe(&dir.path().join("new/deeper"), true).unwrap(),
            Folding::Exact
        );
    }

    /// A case-folding directory, when the environment provides one (CI
    /// mounts an exFAT image there; see .ci/run).
    #[cfg(unix)]
    fn folding_dir() -> Option<std::path::PathBuf> {
        let dir = std::env::var_os("S3BACKUP_TEST_FOLDING_DIR").map(std::path::PathBuf::from);
        if dir.is_none() && std::env::var_os("CI").is_some() {
            panic!("CI must set S3BACKUP_TEST_FOLDING_DIR to a case-insensitive directory");
        }
        dir
    }

    #[cfg(windows)]
    #[test]
    fn a_windows_directory_folds_case() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(probe(dir.path(), true).unwrap(), Folding::Case);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        std::fs::write(dir.path().join("Name"), "").unwrap();
        assert_eq!(probe(dir.path(), false).unwrap(), Folding::Case);
    }

    #[cfg(unix)]
    #[test]
    fn a_case_folding_directory_probes_as_such() {
        let Some(root) = folding_dir() else { return };
        let dir = tempfile::tempdir_in(root).unwrap();
        assert_eq!(probe(dir.path(), true).unwrap(), Folding::Case);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        std::fs::write(dir.path().join("Name"), "").unwrap();
        assert_eq!(probe(dir.path(), false).unwrap(), Folding::Case);
        // Empty, or not made yet: its own name (and its parent's) tells.
        let empty = tempfile::tempdir_in(dir.path()).unwrap();
        assert_eq!(probe_read_only(empty.path()).unwrap(), Some(Folding::Case));
        let new = empty.path().join("not/yet");
        assert_eq!(probe_read_only(&new).unwrap(), Some(Folding::Case));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_empty_case_sensitive_directory_tells_by_its_own_name() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("Empty");
        std::fs::create_dir(&empty).unwrap();
        assert_eq!(probe_read_only(&empty).unwrap(), Some(Folding::Exact));
        // A name with no other spelling: its parent's tells.
        let digits = dir.path().join("1234");
        std::fs::create_dir(&digits).unwrap();
        assert_eq!(
            probe_read_only(&digits.join("new")).unwrap(),
            Some(Folding::Exact)
        );
    }
}
