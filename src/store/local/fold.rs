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

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io;
use std::sync::{Arc, Mutex, OnceLock};

use cap_fs_ext::{DirExt, OpenOptionsFollowExt};
use cap_std::fs::Dir;

use crate::fs::case::{Clash, Folding, Judge, Twins};
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
        if taken.paths.contains(&hash(rel)) {
            return Ok(());
        }
        let folding = taken.twins.folding();
        let folds = folding.describe();
        if let Some(stored) = on_disk(root, rel, folding, &mut taken.dirs)? {
            return Err(refusal(key, &stored, folds));
        }
        match taken.twins.take(rel, false) {
            Ok(()) => {}
            Err(Clash::Name) => {
                return Err(StoreError::NameClash(format!(
                    "'{key}' differs only in letter case from another key; the store's file system (folds {folds}) would keep only one"
                )));
            }
            Err(Clash::Directory(dir)) => {
                let dir = key_prefix(key, dir.split('/').count());
                return Err(StoreError::NameClash(format!(
                    "'{key}': its directory '{dir}' differs only in letter case from another key's; the store's \
                     file system (folds {folds}) would merge their entries into one directory"
                )));
            }
        }
        taken.paths.insert(hash(rel));
        Ok(())
    }

    /// Whether every component of `rel` that the store holds is held under
    /// exactly that spelling, so a delete of the key removes its own
    /// object and never another spelling's (always, where the root
    /// compares names exactly).
    ///
    /// # Errors
    /// An I/O error reading the store.
    pub(super) fn holds_exactly(&self, root: &Root, rel: &str) -> StoreResult<bool> {
        let Some(taken) = self.taken(root) else {
            return Ok(true);
        };
        let mut taken = taken.lock().unwrap_or_else(|p| p.into_inner());
        let folding = taken.twins.folding();
        Ok(on_disk(root, rel, folding, &mut taken.dirs)?.is_none())
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

/// A 64-bit hash of a path.
fn hash(path: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

/// The first `depth` components of `key`.
fn key_prefix(key: &str, depth: usize) -> &str {
    match key.match_indices('/').nth(depth.saturating_sub(1)) {
        Some((end, _)) => &key[..end],
        None => key,
    }
}

/// The one-line reason a key is refused for what the store holds.
fn refusal(key: &str, stored: &Stored, folds: &str) -> StoreError {
    let ours = key_prefix(key, stored.depth);
    let last = ours.len() == key.len();
    let kind = if stored.is_dir { "directory" } else { "file" };
    let text = match (&stored.spelling, last) {
        (Some(spelling), true) => format!(
            "'{key}' differs only in letter case from the {kind} '{spelling}', already in the store; its \
             file system (folds {folds}) would keep only one"
        ),
        (Some(spelling), false) => format!(
            "'{key}': its directory '{ours}' differs only in letter case from the {kind} '{spelling}', already \
             in the store; its file system (folds {folds}) would {}",
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
