//! A restore onto a destination that folds names: keys that would land on
//! one file there are refused by name instead of merged.
//!
//! DEST is probed once ([`crate::fs::case::probe`]: by writing a probe
//! file, or, in a dry run, by reading only) and every entry goes through
//! [`Twins::take`] before anything is written for it, in the order the
//! source gives them (a manifest's, sorted by path, so the same key wins
//! every time). Entries not selected go through too ([`Guard::pass`]),
//! acting on nothing: restoring `big.bin` alone is refused when `BIG.BIN`
//! is in the backup, as in a full restore. Which keys are one name DEST decides itself
//! where it may be written ([`crate::fs::twins`]); a dry run takes every
//! two keys of one wide-fold group for one. A key that clashes with an
//! earlier one is not restored: it is a failure naming the key, the key
//! restored instead and why (exit 3), counted in `case_clashes`. A second
//! restore over the first reports the same clashes again (the key is still
//! not restored), and finds the keys that won unchanged. On a DEST that
//! compares names exactly, [`Twins`] takes every key at no cost.
//!
//! [`Holds`] carries what the probes found (folding, Windows names, what
//! DEST keeps of modes and times) to every stage that touches DEST.
//!
//! The same pass counts the names a DEST that refuses the names Windows
//! refuses gets under a stand-in ([`crate::fs::winname`]; the mapping
//! itself is [`crate::restore::dest::Dest::local_rel`]).

use std::borrow::Cow;
use std::ffi::OsStr;
use std::path::Path;

use crate::fs::case::{Clash, Folding, Judge, Twin, Twins};
use crate::fs::scan::EntryKind;
use crate::report::Failure;
use crate::restore::source::Item;

/// How DEST compares names, probed once; without `may_write` (a dry run)
/// nothing is written there, and two keys of one group of
/// [`Folding::fold`] are taken for one name; with it, DEST is asked about
/// each such pair ([`Judge::Dest`], its names mapped as `windows_names`
/// says). Also whether the answer is unsure: a dry run that found no name
/// to look up takes DEST to fold letter case, and says "if".
///
/// # Errors
/// The I/O error of the probe (DEST cannot be written or read).
pub fn probe(dest: &Path, may_write: bool, windows_names: bool) -> std::io::Result<(Twins, bool)> {
    let (folding, unsure) = if may_write {
        (crate::fs::case::probe(dest, true)?, false)
    } else {
        // Nothing on the way could tell: list the keys that would clash
        // if DEST folds, rather than predict a silent merge.
        match crate::fs::case::probe_read_only(dest)? {
            Some(folding) => (folding, false),
            // Windows folds case (but for directories marked otherwise).
            None => (Folding::Case, !cfg!(windows)),
        }
    };
    if folding != Folding::Exact {
        tracing::info!(
            "'{}' folds {}: keys that differ only so are restored once",
            dest.display(),
            folding.describe()
        );
    }
    let judge = match crate::fs::case::nearest_existing(dest) {
        Some(base) if may_write => Judge::Dest {
            base: base.to_path_buf(),
            windows_names,
        },
        _ => Judge::Superset,
    };
    Ok((Twins::asking(folding, judge), unsure))
}

/// Without writing (a dry run): whether DEST is taken to refuse the names
/// Windows refuses, as a restore would find by writing
/// ([`crate::fs::winname::refused_by`]): a DEST that folds letter case and
/// is exFAT or FAT by its file system's number (Linux's drivers), or that
/// holds a stand-in name at its top (an earlier restore's, e.g. through
/// exFAT's FUSE driver, which has no number of its own).
pub fn guess_windows_names(dest: &Path, folding: Folding) -> bool {
    if folding == Folding::Exact {
        return false;
    }
    let Some(base) = crate::fs::case::nearest_existing(dest) else {
        return false;
    };
    fat_family(base)
        || std::fs::read_dir(base).is_ok_and(|entries| {
            entries.flatten().take(1024).any(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| crate::fs::winname::from_windows(n) != n)
            })
        })
}

/// Linux: whether `dir` is on exFAT or FAT by its file system's number.
#[cfg(target_os = "linux")]
fn fat_family(dir: &Path) -> bool {
    const EXFAT: u64 = 0x2011_BAB0;
    const MSDOS: u64 = 0x4d44;
    #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
    rustix::fs::statfs(dir).is_ok_and(|s| matches!(s.f_type as u64, EXFAT | MSDOS))
}

/// Elsewhere the number is not read.
#[cfg(not(target_os = "linux"))]
fn fat_family(_dir: &Path) -> bool {
    false
}

/// How DEST holds names, modes and times, probed once before any entry
/// and read by every stage that touches DEST.
#[derive(Debug, Clone, Copy)]
pub struct Holds {
    /// Whether DEST refuses the names Windows refuses: every name is then
    /// written through [`crate::fs::winname::to_windows`] ([`local_rel`]).
    pub windows_names: bool,
    /// How DEST compares names (a dry run names a file it spells otherwise).
    pub folding: Folding,
    /// What DEST keeps of modes and mtimes: only that is compared.
    pub keeps: crate::restore::meta::Keeps,
}

impl Default for Holds {
    /// Every name as it is, compared exactly; every mode and nanosecond kept.
    fn default() -> Self {
        Self {
            windows_names: false,
            folding: Folding::Exact,
            keeps: crate::restore::meta::Keeps::default(),
        }
    }
}

/// An entry refused because an earlier key lands on its name in DEST.
#[derive(Debug)]
pub struct Refused {
    /// The key and why.
    pub failure: Failure,
    /// Whether it is a directory entry.
    pub dir: bool,
}

/// Every selected entry passes here before anything is written for it.
#[derive(Debug)]
pub struct Guard {
    /// The keys taken so far.
    twins: Twins,
    /// Whether DEST's names are mapped through [`crate::fs::winname`].
    windows_names: bool,
    /// Whether DEST was only taken to fold (a dry run that could not tell).
    unsure: bool,
    /// Entries whose own name is written under a stand-in.
    pub mapped: u64,
}

impl Guard {
    /// A guard for a DEST that folds as `twins` says (or, `unsure`, may
    /// fold so) and, with `windows_names`, holds names under their
    /// Windows stand-ins.
    pub fn new((twins, unsure): (Twins, bool), windows_names: bool) -> Self {
        Self {
            twins,
            windows_names,
            unsure,
            mapped: 0,
        }
    }

    /// Takes `item`: back when it has a place of its own (counting a
    /// mapped name), or why it is refused.
    ///
    /// # Errors
    /// The clash, to count and report.
    pub fn check(&mut self, item: Item) -> Result<Item, Refused> {
        let item = check(&mut self.twins, item).map_err(|mut refused| {
            if self.unsure {
                refused.failure.error = format!(
                    "if DEST folds letter case (a dry run cannot tell without writing): {}",
                    refused.failure.error
                );
            }
            refused
        })?;
        let name = item.path.rsplit('/').next().unwrap_or_default();
        if self.windows_names && crate::fs::winname::to_windows(name) != name {
            self.mapped += 1;
        }
        Ok(item)
    }
}

impl Guard {
    /// Takes a key that is not selected into the record, as a full
    /// restore would (acting on nothing): a selected twin after it is
    /// refused just as in a full restore. A clash of its own is not
    /// reported (the key is not restored either way).
    pub fn pass(&mut self, item: &Item) {
        let _ = self.twins.take_named(&item.path, item.kind == EntryKind::Dir);
    }
}

/// Takes `item` into `twins`: the item back when it has a place of its
/// own, or why it is refused.
///
/// # Errors
/// The clash, to count and report.
pub fn check(twins: &mut Twins, item: Item) -> Result<Item, Refused> {
    let is_dir = item.kind == EntryKind::Dir;
    match twins.take_named(&item.path, is_dir) {
        Ok(()) => Ok(item),
        Err(twin) => Err(Refused {
            failure: Failure {
                error: reason(twins.folding(), &twin),
                path: item.path,
            },
            dir: is_dir,
        }),
    }
}

/// The one-line reason for a clash on a destination folding as
/// `folding`, naming the key that keeps its place.
fn reason(folding: Folding, twin: &Twin) -> String {
    let folds = folding.describe();
    let winner = &twin.winner;
    match &twin.clash {
        Clash::Name => format!(
            "the same name as '{winner}' on DEST (folds {folds}), which would keep only one; \
             '{winner}' wins, this key is not restored"
        ),
        Clash::Directory(dir) => format!(
            "its directory '{dir}' is the same directory as '{winner}' on DEST (folds {folds}), \
             which would merge their entries; '{winner}' wins, this key is not restored"
        ),
    }
}

/// The name `dir` lists for `name` when it lists it under another spelling
/// only (a DEST that folds as `folding`; `None` on one that does not, or
/// when `name` is listed as it is). Reads the whole directory: a dry run
/// asks it only of files it would overwrite or keep.
pub fn spelled_otherwise(
    dir: &crate::fs::confine::Dir,
    name: &OsStr,
    folding: Folding,
) -> Option<std::ffi::OsString> {
    let want = folding.fold(name.to_str()?)?;
    let mut other = None;
    for entry in dir.entries().ok()? {
        let found = entry.ok()?.file_name();
        if found == name {
            return None;
        }
        if other.is_none() && found.to_str().and_then(|f| folding.fold(f)).as_deref() == Some(want.as_str()) {
            other = Some(found);
        }
    }
    other
}

/// The local form of `text` (a key's relative path) in DEST: decoded
/// ([`crate::fs::names::decode`]) and, with `windows_names`, each
/// component mapped by [`crate::fs::winname::to_windows`].
pub fn local_rel(windows_names: bool, text: &str) -> Cow<'_, OsStr> {
    let decoded = crate::fs::names::decode(text);
    if !windows_names {
        return decoded;
    }
    let mapped = decoded
        .to_str()
        .and_then(|s| match crate::fs::winname::path_to_windows(s) {
            Cow::Owned(m) => Some(m),
            Cow::Borrowed(_) => None,
        });
    match mapped {
        Some(m) => Cow::Owned(m.into()),
        None => decoded,
    }
}

/// The key text of a local path relative to DEST: the inverse of [`local_rel`].
pub fn key_text(windows_names: bool, rel: &Path) -> String {
    rel.components()
        .map(|c| match c.as_os_str().to_str() {
            Some(s) if windows_names => {
                crate::fs::names::encode(OsStr::new(&*crate::fs::winname::from_windows(s))).into_owned()
            }
            _ => crate::fs::names::encode(c.as_os_str()).into_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(path: &str, kind: EntryKind) -> Item {
        Item {
            path: path.into(),
            kind,
            size: 0,
            mtime_ns: None,
            mode: None,
            blake3: None,
            etag: None,
            version_id: None,
            from_manifest: true,
            origin: Default::default(),
        }
    }

    #[test]
    fn a_dry_run_that_cannot_tell_refuses_twins_if_dest_folds() {
        let mut g = Guard::new((Twins::new(Folding::Case), true), false);
        assert!(g.check(item("Case.txt", EntryKind::File)).is_ok());
        let Err(Refused { failure, .. }) = g.check(item("case.txt", EntryKind::File)) else {
            panic!("no clash");
        };
        assert!(
            failure.error.starts_with("if DEST folds letter case")
                && failure.error.contains("'Case.txt' wins"),
            "{}",
            failure.error
        );
    }

    #[test]
    fn a_clash_names_the_key_and_says_why() {
        let mut t = Twins::new(Folding::Case);
        assert!(check(&mut t, item("Case.txt", EntryKind::File)).is_ok());
        let Err(Refused { failure, dir: false }) = check(&mut t, item("case.txt", EntryKind::File)) else {
            panic!("no clash");
        };
        assert_eq!(failure.path, "case.txt");
        assert!(failure.error.contains("folds letter case"), "{}", failure.error);
        assert!(failure.error.contains("'Case.txt' wins"), "{}", failure.error);
        let Err(Refused { failure, .. }) = check(&mut t, item("CASE.TXT/x", EntryKind::File)) else {
            panic!("no clash");
        };
        assert!(
            failure
                .error
                .contains("'CASE.TXT' is the same directory as 'Case.txt'"),
            "{}",
            failure.error
        );
    }
}
