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
//! reported by name instead of written.
//!
//! The probe creates a file with a fresh random name (a restore's temporary
//! name, [`crate::fs::own::temp_name`], swept like the others if a kill
//! leaves it) and looks for it under another spelling; where it may not
//! write (a dry run), it looks an existing entry up under its other
//! spelling. Folding is `char::to_lowercase` after NFC for both
//! normalisation forms: close to, not exactly, each file system's own table
//! (NTFS upper-cases by a per-volume table; a rare letter may differ).

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io;
use std::path::Path;

use unicode_normalization::UnicodeNormalization;

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
    /// The form two names share when this file system takes them for one
    /// (`None` for [`Folding::Exact`]).
    pub fn fold(self, name: &str) -> Option<String> {
        match self {
            Folding::Exact => None,
            Folding::Case => Some(name.chars().flat_map(char::to_lowercase).collect()),
            Folding::CaseAndForm => Some(name.nfc().flat_map(char::to_lowercase).collect()),
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
/// file is created and removed there; without, an existing entry is
/// looked up under its other spelling, and a directory with no entry that
/// has one reads as [`Folding::Exact`].
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
        probe_by_reading(base)
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

/// Looks up the first entry whose name has another spelling under that
/// spelling: found, and not listed under it, means the name was folded.
/// (Identity cannot tell: FUSE file systems number each lookup afresh.)
fn probe_by_reading(base: &Path) -> io::Result<Folding> {
    for entry in std::fs::read_dir(base)? {
        let Some(name) = entry?.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let other = swap_case(&name);
        if other == name {
            continue;
        }
        if base.join(&other).symlink_metadata().is_err() {
            return Ok(Folding::Exact);
        }
        for entry in std::fs::read_dir(base)? {
            if entry?.file_name().to_str() == Some(other.as_str()) {
                return Ok(Folding::Exact);
            }
        }
        return Ok(Folding::Case);
    }
    Ok(Folding::Exact)
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

/// Why a key cannot be written beside the ones before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clash {
    /// An earlier key lands on the same file (or directory) name.
    Name,
    /// A directory on this key's path was spelled otherwise by an earlier
    /// key: its entries would merge into that directory. Holds this key's
    /// spelling of the directory.
    Directory(String),
}

/// The keys written so far, by folded form (see the module doc). Holds
/// 8 bytes per name and 16 per directory, never the names themselves.
#[derive(Debug)]
pub struct Twins {
    folding: Folding,
    /// Hashes of the folded paths of every file, link and directory taken.
    names: HashSet<u64>,
    /// Folded directory path hash → hash of its first exact spelling.
    dirs: HashMap<u64, u64>,
}

impl Twins {
    /// An empty record for a destination that folds as `folding`.
    pub fn new(folding: Folding) -> Self {
        Self {
            folding,
            names: HashSet::new(),
            dirs: HashMap::new(),
        }
    }

    /// How the destination folds names.
    pub fn folding(&self) -> Folding {
        self.folding
    }

    /// Takes the relative path `rel` (`/`-separated) of a file, link or
    /// (`is_dir`) directory: `Ok` when it has a place of its own, or the
    /// [`Clash`] that keeps it out (it is then not recorded).
    ///
    /// # Errors
    /// The [`Clash`] with an earlier key.
    pub fn take(&mut self, rel: &str, is_dir: bool) -> Result<(), Clash> {
        let Some(folded) = self.folding.fold(rel) else {
            return Ok(());
        };
        // Directories on the way: the first spelling of each wins, and a
        // file already there under another spelling keeps its place.
        let mut pending = Vec::new();
        for (end, _) in rel.match_indices('/') {
            let dir = &rel[..end];
            let key = hash(&self.folding.fold(dir).unwrap_or_default());
            let exact = hash(dir);
            match self.dirs.get(&key) {
                Some(first) if *first != exact => return Err(Clash::Directory(dir.to_string())),
                Some(_) => {}
                None if self.names.contains(&key) => return Err(Clash::Directory(dir.to_string())),
                None => pending.push((key, exact)),
            }
        }
        let key = hash(&folded);
        if is_dir {
            match self.dirs.get(&key) {
                Some(first) if *first == hash(rel) => return Ok(()),
                Some(_) => return Err(Clash::Name),
                None => {}
            }
        }
        if !self.names.insert(key) {
            return Err(Clash::Name);
        }
        if is_dir {
            self.dirs.insert(key, hash(rel));
        }
        for (k, e) in pending {
            self.dirs.insert(k, e);
            self.names.insert(k);
        }
        Ok(())
    }
}

/// A 64-bit hash of a path (see [`Twins`]: a false match is about one in
/// 10^8 for a million names).
fn hash(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_destinations_take_every_key() {
        let mut t = Twins::new(Folding::Exact);
        assert_eq!(t.take("Case.txt", false), Ok(()));
        assert_eq!(t.take("case.txt", false), Ok(()));
    }

    #[test]
    fn keys_differing_only_in_case_clash_after_the_first() {
        let mut t = Twins::new(Folding::Case);
        assert_eq!(t.take("Case.txt", false), Ok(()));
        assert_eq!(t.take("case.txt", false), Err(Clash::Name));
        assert_eq!(t.take("CASE.TXT", false), Err(Clash::Name));
        assert_eq!(t.take("other.txt", false), Ok(()));
    }

    #[test]
    fn a_directory_spelled_two_ways_clashes_for_the_second_spelling() {
        let mut t = Twins::new(Folding::Case);
        assert_eq!(t.take("Docs", true), Ok(()));
        assert_eq!(t.take("Docs/a.txt", false), Ok(()));
        assert_eq!(t.take("docs/b.txt", false), Err(Clash::Directory("docs".into())));
        assert_eq!(t.take("Docs/b.txt", false), Ok(()));
        // The same directory entry again is no clash; another spelling is.
        assert_eq!(t.take("Docs", true), Ok(()));
        assert_eq!(t.take("DOCS", true), Err(Clash::Name));
        // Directories seen only on a file's path count too.
        assert_eq!(t.take("x/Y/z", false), Ok(()));
        assert_eq!(t.take("X/y/w", false), Err(Clash::Directory("X".into())));
        assert_eq!(t.take("x/y/w", false), Err(Clash::Directory("x/y".into())));
        // A file and a directory with one folded name clash, either way round.
        assert_eq!(t.take("x/y", false), Err(Clash::Name));
        assert_eq!(t.take("File", false), Ok(()));
        assert_eq!(t.take("file/inner", false), Err(Clash::Directory("file".into())));
    }

    #[test]
    fn normalisation_forms_clash_only_where_the_form_is_folded() {
        let nfc = "caf\u{e9}";
        let nfd = "cafe\u{301}";
        let mut case = Twins::new(Folding::Case);
        assert_eq!(case.take(nfc, false), Ok(()));
        assert_eq!(case.take(nfd, false), Ok(()));
        let mut both = Twins::new(Folding::CaseAndForm);
        assert_eq!(both.take(nfc, false), Ok(()));
        assert_eq!(both.take(&nfd.to_uppercase(), false), Err(Clash::Name));
    }

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
    }
}
