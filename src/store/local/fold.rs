//! The local store on a disk that folds letter case (exFAT, NTFS, FAT, a
//! Mac's APFS): two keys that differ only in case would be one file there,
//! the second overwriting the first without an error; a directory spelled
//! otherwise than one in the store (`Dir/x` beside `dir/y`) would merge
//! into it, and a key through a directory where the store holds a file of
//! the folded name (`F/g` beside `f`) would replace that file. The store
//! root is probed once, at the first write ([`crate::fs::case::probe`]);
//! from then on every component of every path a write creates (objects,
//! links, copies, completed multipart uploads, manifests) is checked,
//! before anything is written for it:
//! - against what the store holds on disk, by an exact lookup: a name that
//!   resolves, in a directory that does not list it under that spelling,
//!   is held there under another spelling (this catches every folding the
//!   file system does, whatever its table; [`Folding::fold`] only finds
//!   the stored spelling to name it). A directory found spelled as the key
//!   spells it is not looked at again in the run;
//! - against this run's earlier keys ([`Twins`]: two new files `A.txt` and
//!   `a.txt`, `Docs/a` and `docs/b`); where a wide fold puts two together,
//!   the disk's own table is asked by a pair of probe files in the
//!   temporary area (exFAT takes `ς` and `σ` for one name, `ǅ` and `ǆ`
//!   for two).
//!
//! A key that clashes is refused with a one-line reason naming it and the
//! stored spelling: the backup reports it as a failed file (exit 3) and
//! records no row for it. On a store that compares names exactly this is
//! one probe per run and nothing else, so an unchanged re-run stays cheap.
//! Paths here are as they are on disk (after [`super::names`]' stand-ins).

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io;
use std::sync::{Arc, Mutex, OnceLock};

use cap_fs_ext::{DirExt, OpenOptionsFollowExt};
use cap_std::fs::Dir;

use crate::fs::case::{Clash, Folding, Judge, Twin, Twins};
use crate::fs::confine::Root;
use crate::store::{StoreError, StoreResult};

/// What the guard knows, once the root has been probed (`None` inside: the
/// root compares names exactly). Shared by the store's clones.
#[derive(Debug, Default, Clone)]
pub(super) struct CaseGuard(Arc<OnceLock<Option<Mutex<Taken>>>>);

/// This run's keys and the directories found spelled as they are on disk.
#[derive(Debug)]
struct Taken {
    twins: Twins,
    /// Hashes of the exact paths written in this run (8 bytes each, as
    /// [`Twins`] keeps its names): writing one again (a retry) is no clash.
    paths: HashSet<u64>,
    /// Directory paths checked on disk and found under their own spelling.
    dirs: HashSet<String>,
    /// Hashes of the folded paths of writes refused in this run: a delete
    /// of any spelling of one is refused too, so the store never holds
    /// neither spelling of a file the source still has.
    refused: HashSet<u64>,
    /// Copies refused because the store holds their source under the
    /// spelling their key clashes with: source path to key path, on disk.
    recasings: HashMap<String, String>,
    /// Hashes of the paths written in this run and of the directories on
    /// their way: a refusal naming one says so, not "already in the store".
    written: HashSet<u64>,
}

/// What a delete of a key is to do on a store that folds case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Deleting {
    /// Remove the key's object (and the directories it leaves empty).
    Remove,
    /// Nothing: the store holds the path under another spelling, which is
    /// another key's object (or this key's, renamed by this run).
    NotItsOwn,
    /// Nothing more: its entry took the spelling of a copy this run
    /// refused ([`CaseGuard::refused_copy`]), in one rename.
    Renamed,
    /// Refuse: another spelling of it was refused in this run, and the
    /// store would hold neither.
    Kept,
}

/// A component of a path held on disk under another spelling.
struct Stored {
    /// How many components of the path lead to it (1 for the first).
    depth: usize,
    /// The path as the store spells it, when a name of the same folded
    /// form was found beside it.
    spelling: Option<String>,
    /// Whether the stored entry is a directory.
    is_dir: bool,
}

impl CaseGuard {
    /// Checks that `rel` (the path on disk that is to hold `key`) has a
    /// place of its own in the store under `root`.
    ///
    /// # Errors
    /// [`StoreError::NameClash`] naming the clash; an I/O error reading the store.
    pub(super) fn check(&self, root: &Root, rel: &str, key: &str) -> StoreResult<()> {
        let Some(taken) = self.taken(root) else {
            return Ok(());
        };
        // Held across the lookups so two writers of one folded name are
        // told apart in order, and the directory record stays whole.
        let mut taken = taken.lock().unwrap_or_else(|p| p.into_inner());
        let judged = judge(&mut taken, root, rel, key);
        if matches!(judged, Err(StoreError::NameClash(_))) {
            let folded = folded(taken.twins.folding(), rel);
            taken.refused.insert(folded);
        }
        judged
    }

    /// Notes a copy of `from` to `to` (paths on disk) refused for a name
    /// clash, when the entry the store holds under the clashing spelling
    /// is `from`'s own: a delete of `from` in this run then renames that
    /// entry instead ([`CaseGuard::recase`]).
    ///
    /// # Errors
    /// An I/O error reading the store.
    pub(super) fn refused_copy(&self, root: &Root, from: &str, to: &str) -> StoreResult<()> {
        let Some(taken) = self.taken(root) else {
            return Ok(());
        };
        let mut taken = taken.lock().unwrap_or_else(|p| p.into_inner());
        if recasing(&mut taken, root, from, to)?.is_some() {
            taken.recasings.insert(from.to_owned(), to.to_owned());
        }
        Ok(())
    }

    /// What a delete of `rel` (a path on disk) is to do, decided under one
    /// lock so that a concurrent rename ([`recase`]) is seen whole.
    ///
    /// # Errors
    /// An I/O error reading the store or renaming an entry.
    pub(super) fn before_delete(&self, root: &Root, rel: &str) -> StoreResult<Deleting> {
        let Some(taken) = self.taken(root) else {
            return Ok(Deleting::Remove);
        };
        let mut taken = taken.lock().unwrap_or_else(|p| p.into_inner());
        let folding = taken.twins.folding();
        if on_disk(root, rel, folding, &mut taken.dirs)?.is_some() {
            return Ok(Deleting::NotItsOwn);
        }
        if recase(&mut taken, root, rel)? {
            return Ok(Deleting::Renamed);
        }
        if taken.refused.contains(&folded(folding, rel)) {
            return Ok(Deleting::Kept);
        }
        Ok(Deleting::Remove)
    }

    /// This run's record, the root probed at the first call (`None`: it
    /// compares names exactly, or could not be probed).
    fn taken(&self, root: &Root) -> Option<&Mutex<Taken>> {
        // Probes are made in the temporary area where it exists (a kill
        // mid-probe then leaves no entry the listing would take for an
        // object), else where it will be made; it is on the store's disk.
        let area = root.path().join(super::scratch::TMP);
        let taken = self.0.get_or_init(|| match crate::fs::case::probe(&area, true) {
            Ok(Folding::Exact) => None,
            Ok(folding) => Some(Mutex::new(Taken {
                // Two of this run's keys one wide fold groups are asked of
                // the disk's own table (exFAT keeps `ǅ` and `ǆ` apart);
                // `rel` is already the name on disk, stand-ins included.
                twins: Twins::asking(
                    folding,
                    Judge::Dest {
                        base: area.clone(),
                        windows_names: false,
                    },
                ),
                paths: HashSet::new(),
                dirs: HashSet::new(),
                refused: HashSet::new(),
                recasings: HashMap::new(),
                written: HashSet::new(),
            })),
            Err(e) => {
                tracing::warn!(
                    "could not tell whether '{}' folds letter case ({e}); keys differing only in case are not checked",
                    root.path().display()
                );
                None
            }
        });
        taken.as_ref()
    }
}

/// [`CaseGuard::check`] with the record locked.
fn judge(taken: &mut Taken, root: &Root, rel: &str, key: &str) -> StoreResult<()> {
    if taken.paths.contains(&hash(rel)) {
        return Ok(());
    }
    let folding = taken.twins.folding();
    let folds = folding.describe();
    if let Some(stored) = on_disk(root, rel, folding, &mut taken.dirs)? {
        return Err(refusal(key, &stored, folds, &taken.written));
    }
    match taken.twins.take_named(rel, false) {
        Ok(()) => {}
        Err(Twin {
            clash: Clash::Name,
            winner,
        }) => {
            return Err(StoreError::NameClash(format!(
                "'{key}' differs only in letter case from '{winner}', written in this run; the store's file \
                 system (folds {folds}) would keep only one"
            )));
        }
        Err(Twin {
            clash: Clash::Directory(dir),
            winner,
        }) => {
            let dir = key_prefix(key, dir.split('/').count());
            return Err(StoreError::NameClash(format!(
                "'{key}': its directory '{dir}' differs only in letter case from '{winner}', written in this \
                 run; the store's file system (folds {folds}) would merge their entries into one directory"
            )));
        }
    }
    taken.written.insert(hash(rel));
    for (end, _) in rel.match_indices('/') {
        taken.written.insert(hash(&rel[..end]));
    }
    taken.paths.insert(hash(rel));
    Ok(())
}

/// Where this run refused a copy of `rel` to another spelling of it
/// ([`CaseGuard::refused_copy`]) and `rel` is held under its own spelling, renames the stored entry where the
/// two first differ to the copy's spelling, in one rename, so the store
/// holds one spelling or the other at every moment: the file itself,
/// or a directory when every file beneath it was refused a copy to the
/// same place under the new spelling in this run (a directory also
/// holding anything else keeps its spelling). Returns whether it did.
///
/// # Errors
/// An I/O error reading the store or renaming the entry.
fn recase(taken: &mut Taken, root: &Root, rel: &str) -> StoreResult<bool> {
    let Some(to) = taken.recasings.get(rel).cloned() else {
        return Ok(false);
    };
    let Some(depth) = recasing(taken, root, rel, &to)? else {
        return Ok(false);
    };
    let (old, new) = (key_prefix(rel, depth), key_prefix(&to, depth));
    let fail = |e: io::Error| StoreError::Fatal(format!("renaming '{old}' to '{new}' in the store: {e}"));
    if old.len() < rel.len() {
        let files = files_under(root, old).map_err(fail)?;
        let all = files.iter().all(|f| {
            let to = taken.recasings.get(&format!("{old}/{f}"));
            to.is_some_and(|to| *to == format!("{new}/{f}"))
        });
        if !all {
            return Ok(false);
        }
    }
    let (parent, name) = match old.rsplit_once('/') {
        Some((parent, name)) => (root.dir().open_dir_nofollow(parent).map_err(fail)?, name),
        None => (root.dir().try_clone().map_err(fail)?, old),
    };
    let new_name = new.rsplit_once('/').map_or(new, |(_, n)| n);
    parent.rename(name, &parent, new_name).map_err(fail)?;
    // Directories found under their spelling may now be spelled otherwise.
    taken.dirs.clear();
    Ok(true)
}

/// How deep the entry is that a copy of `from` to `to` (paths on disk,
/// one name by the fold) clashes with, if that entry is `from`'s own.
fn recasing(taken: &mut Taken, root: &Root, from: &str, to: &str) -> StoreResult<Option<usize>> {
    let folding = taken.twins.folding();
    if from == to || folding.fold(from) != folding.fold(to) {
        return Ok(None);
    }
    Ok(match on_disk(root, to, folding, &mut taken.dirs)? {
        Some(Stored {
            depth,
            spelling: Some(s),
            ..
        }) if s == key_prefix(from, depth) => Some(depth),
        _ => None,
    })
}

/// The paths (beneath `dir`, `/`-separated) of everything but directories
/// under the directory `dir` of the store.
fn files_under(root: &Root, dir: &str) -> io::Result<Vec<String>> {
    let mut found = Vec::new();
    let mut pending = vec![(root.dir().open_dir_nofollow(dir)?, String::new())];
    while let Some((d, at)) = pending.pop() {
        for entry in d.entries()? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if at.is_empty() {
                name.clone()
            } else {
                format!("{at}/{name}")
            };
            if entry.file_type()?.is_dir() {
                pending.push((d.open_dir_nofollow(&name)?, path));
            } else {
                found.push(path);
            }
        }
    }
    Ok(found)
}

/// A 64-bit hash of a path.
fn hash(path: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

/// A 64-bit hash of `path` under the wide fold.
fn folded(folding: Folding, path: &str) -> u64 {
    hash(&folding.fold(path).unwrap_or_else(|| path.to_owned()))
}

/// The first `depth` components of `key`.
fn key_prefix(key: &str, depth: usize) -> &str {
    match key.match_indices('/').nth(depth.saturating_sub(1)) {
        Some((end, _)) => &key[..end],
        None => key,
    }
}

/// The one-line reason a key is refused for what the store holds.
fn refusal(key: &str, stored: &Stored, folds: &str, written: &HashSet<u64>) -> StoreError {
    let ours = key_prefix(key, stored.depth);
    // A spelling this run wrote is named as such, not as one it found.
    let when = match &stored.spelling {
        Some(s) if written.contains(&hash(s)) => "written in this run",
        _ => "already in the store",
    };
    let last = ours.len() == key.len();
    let kind = if stored.is_dir { "directory" } else { "file" };
    let text = match (&stored.spelling, last) {
        (Some(spelling), true) => format!(
            "'{key}' differs only in letter case from the {kind} '{spelling}', {when}; the store's \
             file system (folds {folds}) would keep only one"
        ),
        (Some(spelling), false) => format!(
            "'{key}': its directory '{ours}' differs only in letter case from the {kind} '{spelling}', {when}; \
             the store's file system (folds {folds}) would {}",
            if stored.is_dir {
                "merge their entries into one directory"
            } else {
                "put the directory in the file's place"
            }
        ),
        (None, _) => format!(
            "'{key}': '{ours}' names a {kind} already in the store under another spelling; its file system \
             (folds {folds}) would keep only one"
        ),
    };
    StoreError::NameClash(text)
}

/// Looks each component of `rel` up in the store, from the root down to the
/// first that does not exist: the first held under another spelling, if any.
fn on_disk(
    root: &Root,
    rel: &str,
    folding: Folding,
    dirs: &mut HashSet<String>,
) -> StoreResult<Option<Stored>> {
    let fail = |e: io::Error| {
        StoreError::Fatal(format!(
            "checking '{}' for its spelling: {e}",
            root.path().display()
        ))
    };
    let mut dir = root.dir().try_clone().map_err(fail)?;
    let parts: Vec<&str> = rel.split('/').collect();
    let mut path = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            path.push('/');
        }
        path.push_str(part);
        let last = i + 1 == parts.len();
        if !last && dirs.contains(&path) {
            match dir.open_dir_nofollow(part) {
                Ok(next) => {
                    dir = next;
                    continue;
                }
                Err(_) => {
                    dirs.remove(&path);
                }
            }
        }
        let Ok(md) = dir.symlink_metadata(part) else {
            return Ok(None);
        };
        if !listed(&dir, part).map_err(fail)? {
            let spelling = spelled_as(&dir, part, folding).map_err(fail)?.map(|s| {
                let parent = &path[..path.len() - part.len()];
                format!("{parent}{s}")
            });
            if spelling.is_none() && gone(&dir, part, &md) {
                return Ok(None);
            }
            return Ok(Some(Stored {
                depth: i + 1,
                spelling,
                is_dir: md.is_dir(),
            }));
        }
        if last || !md.is_dir() {
            // A file or link where the key needs a directory, under the
            // key's own spelling, is a stale object the write replaces.
            return Ok(None);
        }
        dirs.insert(path.clone());
        dir = match dir.open_dir_nofollow(part) {
            Ok(next) => next,
            Err(_) => return Ok(None),
        };
    }
    Ok(None)
}

/// Whether a file that resolved, though no entry is listed under its
/// name or any spelling of it, is in fact gone: opening it fails as
/// missing. A FUSE mount keeps a removed file's other spellings resolving
/// for up to its entry timeout (the exFAT driver CI mounts does, for about
/// a second), while the file system itself answers that it is not there.
/// (A removed directory's other spellings even open there; they are
/// reported as held under another spelling until the timeout passes.)
fn gone(dir: &Dir, name: &str, md: &cap_std::fs::Metadata) -> bool {
    if !md.is_file() {
        return false;
    }
    let mut options = cap_std::fs::OpenOptions::new();
    options.read(true).follow(cap_fs_ext::FollowSymlinks::No);
    dir.open_with(name, &options)
        .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
}

/// Whether `dir` lists an entry spelled exactly `name`.
fn listed(dir: &Dir, name: &str) -> io::Result<bool> {
    for entry in dir.entries()? {
        if entry?.file_name() == OsStr::new(name) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The name in `dir` that folds as `name` does (its stored spelling).
fn spelled_as(dir: &Dir, name: &str, folding: Folding) -> io::Result<Option<String>> {
    let wanted = folding.fold(name);
    for entry in dir.entries()? {
        let other = entry?.file_name().to_string_lossy().into_owned();
        if folding.fold(&other) == wanted {
            return Ok(Some(other));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_of_a_key_is_its_first_components() {
        assert_eq!(key_prefix("a/b/c", 1), "a");
        assert_eq!(key_prefix("a/b/c", 2), "a/b");
        assert_eq!(key_prefix("a/b/c", 3), "a/b/c");
    }
}
