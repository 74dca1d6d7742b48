//! What a backup leaves out besides the filters (issue 16): the contents of
//! cache directories (`--exclude-caches`), of directories holding a marker
//! (`--exclude-if-present NAME`), of directories on another device than
//! SOURCE's root (`--one-file-system`), and files larger than a limit
//! (`--exclude-larger-than SIZE`).
//!
//! A cache directory is one holding a regular file `CACHEDIR.TAG` whose
//! first 43 bytes are the signature of the Cache Directory Tagging
//! Specification (<https://bford.info/cachedir/>); a file of that name
//! with anything else in it is not a tag. The tag (or the marker) itself
//! is kept, as `tar --exclude-caches` keeps it, so a restore shows that
//! something was left out there; so is a mount point, empty, as restic and
//! tar keep it. The directories are decided by the walk
//! ([`crate::fs::scan`]); what they leave out behaves like what an
//! `--exclude` pattern leaves out: it is counted as excluded and
//! `--delete` does not delete it from the store, also once it is gone
//! locally ([`LeaveOut::deletable`]).

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::fs::names;

/// The name of a cache directory's tag file.
pub const CACHEDIR_TAG: &str = "CACHEDIR.TAG";

/// The first bytes of a valid `CACHEDIR.TAG`.
pub const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// What a backup leaves out besides the filters (saved with named sets in
/// this shape).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LeaveOut {
    /// `--exclude-caches`: the contents of directories with a valid `CACHEDIR.TAG`.
    pub exclude_caches: bool,
    /// `--exclude-if-present NAME`: the contents of directories holding an
    /// entry of one of these names (plain names, no `/`).
    pub if_present: Vec<String>,
    /// `--one-file-system`: do not descend into directories on another device.
    pub one_file_system: bool,
    /// `--exclude-larger-than SIZE`: files of more bytes than this.
    pub larger_than: Option<u64>,
}

/// Why a path was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// An `--exclude`/`--include`/`--exclude-from` filter or an ignore file.
    Filter,
    /// Inside a directory with a valid `CACHEDIR.TAG`.
    Cache,
    /// Inside a directory with an `--exclude-if-present` marker.
    Marker,
    /// A mount point's contents (`--one-file-system`).
    OtherDevice,
    /// Larger than `--exclude-larger-than`.
    TooLarge,
}

/// How many paths the walk left out, by why (a directory counts once; a
/// mount point stands for its contents). The `--json` summary's `excluded_by`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ExcludedBy {
    /// By filters and ignore files.
    pub filters: u64,
    /// In cache directories (`--exclude-caches`).
    pub caches: u64,
    /// In directories holding a marker (`--exclude-if-present`).
    pub if_present: u64,
    /// Mount points whose contents were not walked (`--one-file-system`).
    pub other_device: u64,
    /// Files larger than `--exclude-larger-than`.
    pub larger_than: u64,
}

impl ExcludedBy {
    /// Counts one path left out for `reason`.
    pub fn add(&mut self, reason: Reason) {
        let n = match reason {
            Reason::Filter => &mut self.filters,
            Reason::Cache => &mut self.caches,
            Reason::Marker => &mut self.if_present,
            Reason::OtherDevice => &mut self.other_device,
            Reason::TooLarge => &mut self.larger_than,
        };
        *n += 1;
    }

    /// Whether anything but the filters left something out.
    pub fn beyond_filters(&self) -> bool {
        self.caches + self.if_present + self.other_device + self.larger_than > 0
    }
}

/// Whether the file at `path` is a valid cache directory tag (a regular
/// file starting with [`CACHEDIR_SIGNATURE`]); one that cannot be read is not.
pub fn is_cache_tag(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let mut head = Vec::with_capacity(CACHEDIR_SIGNATURE.len());
    file.take(CACHEDIR_SIGNATURE.len() as u64)
        .read_to_end(&mut head)
        .is_ok_and(|_| head == CACHEDIR_SIGNATURE)
}

impl LeaveOut {
    /// Whether none of the options is given.
    pub fn is_empty(&self) -> bool {
        *self == LeaveOut::default()
    }

    /// Whether `name` is one the options keep in a marked directory (the
    /// tag or a marker).
    pub fn is_marker_name(&self, name: &str) -> bool {
        (self.exclude_caches && name == CACHEDIR_TAG) || self.if_present.iter().any(|m| m == name)
    }

    /// Whether a file of `size` bytes is left out for its size (one of
    /// exactly the limit is kept).
    pub fn too_large(&self, size: u64) -> bool {
        self.larger_than.is_some_and(|limit| size > limit)
    }

    /// Whether the directory `dir`, whose entries are `entries` (text
    /// names, and whether each is a regular file), has its contents left
    /// out, and why: a valid tag first, then a marker.
    pub fn marked<'a>(&self, dir: &Path, entries: impl Iterator<Item = (&'a str, bool)>) -> Option<Reason> {
        if !self.exclude_caches && self.if_present.is_empty() {
            return None;
        }
        let mut marker = false;
        for (name, is_file) in entries {
            if self.exclude_caches && name == CACHEDIR_TAG && is_file && is_cache_tag(&dir.join(CACHEDIR_TAG))
            {
                return Some(Reason::Cache);
            }
            marker |= self.if_present.iter().any(|m| m == name);
        }
        marker.then_some(Reason::Marker)
    }

    /// Whether the existing directory `dir` is marked (see [`Self::marked`]).
    fn marked_on_disk(&self, dir: &Path) -> bool {
        (self.exclude_caches && is_cache_tag(&dir.join(CACHEDIR_TAG)))
            || self
                .if_present
                .iter()
                .any(|m| std::fs::symlink_metadata(dir.join(m)).is_ok())
    }

    /// The rows of `rows` (paths gone locally, about to be deleted by
    /// `--delete`; `info` gives each one's relative path, whether it is a
    /// directory and its recorded size) that these options do not leave
    /// out, so `--delete` spares what they leave out as it spares what a
    /// filter leaves out:
    /// - a file recorded larger than `--exclude-larger-than`;
    /// - anything below a directory that is marked on disk (a valid tag or
    ///   a marker), except the tag or marker itself;
    /// - anything below a directory that is gone whose tag or marker the
    ///   state records (gone with it): the safe reading, as the tag's
    ///   contents cannot be read any more. Such a tag or marker, and the
    ///   directory's own row, are spared while it spares anything, so the
    ///   next run spares the same.
    pub fn deletable<T>(&self, rows: Vec<T>, root: &Path, info: impl Fn(&T) -> (&str, bool, u64)) -> Vec<T> {
        if self.is_empty() {
            return rows;
        }
        // Directories gone locally whose recorded tag or marker is among the rows.
        let gone_marked: HashSet<String> = rows
            .iter()
            .map(&info)
            .filter(|(path, is_dir, _)| !is_dir && self.is_marker_name(name_of(path)))
            .map(|(path, _, _)| parent_of(path).to_string())
            .filter(|dir| !names::local(root, dir).is_dir())
            .collect();
        let mut on_disk: HashMap<String, bool> = HashMap::new();
        let mut needed: HashSet<String> = HashSet::new();
        let mut deletable = Vec::with_capacity(rows.len());
        for row in rows {
            let (path, is_dir, size) = info(&row);
            if !is_dir && self.too_large(size) {
                continue;
            }
            let own_marker = !is_dir && self.is_marker_name(name_of(path));
            // A gone marked directory's own row goes with what is under it.
            let itself = (is_dir && gone_marked.contains(path)).then_some(path);
            let marked_by = itself.or_else(|| {
                ancestors(path).find(|dir| {
                    if own_marker && *dir == parent_of(path) {
                        return false;
                    }
                    gone_marked.contains(*dir)
                        || *on_disk.entry(dir.to_string()).or_insert_with(|| {
                            let local = names::local(root, dir);
                            local.is_dir() && self.marked_on_disk(&local)
                        })
                })
            });
            match marked_by {
                Some(dir) => {
                    needed.insert(dir.to_string());
                }
                None => deletable.push(row),
            }
        }
        deletable.retain(|row| {
            let (path, is_dir, _) = info(row);
            !(!is_dir && self.is_marker_name(name_of(path)) && needed.contains(parent_of(path)))
        });
        deletable
    }
}

/// The directories above `path` (relative, `/`-separated), from the top
/// (`""`, SOURCE's root) down to its parent.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    std::iter::once("").chain(path.match_indices('/').map(move |(i, _)| &path[..i]))
}

/// The last component of a relative path.
fn name_of(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, name)| name)
}

/// The directory of a relative path (`""` at the top).
fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caches() -> LeaveOut {
        LeaveOut {
            exclude_caches: true,
            ..LeaveOut::default()
        }
    }

    #[test]
    fn only_a_signed_tag_marks_a_cache_directory() {
        let dir = tempfile::tempdir().unwrap();
        let tag = dir.path().join(CACHEDIR_TAG);
        std::fs::write(&tag, b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache").unwrap();
        assert!(is_cache_tag(&tag));
        assert_eq!(
            caches().marked(dir.path(), [(CACHEDIR_TAG, true)].into_iter()),
            Some(Reason::Cache)
        );
        std::fs::write(&tag, b"Signature: 8a477f597d28d172789f06886806bc5").unwrap();
        assert!(!is_cache_tag(&tag), "one byte short");
        std::fs::write(&tag, b"signature: 8a477f597d28d172789f06886806bc55").unwrap();
        assert!(!is_cache_tag(&tag));
        assert_eq!(
            caches().marked(dir.path(), [(CACHEDIR_TAG, true)].into_iter()),
            None
        );
    }

    #[test]
    fn ancestors_run_from_the_top() {
        assert_eq!(ancestors("a/b/c").collect::<Vec<_>>(), ["", "a", "a/b"]);
        assert_eq!(ancestors("top").collect::<Vec<_>>(), [""]);
    }

    #[test]
    fn delete_spares_what_the_options_leave_out() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("c")).unwrap();
        std::fs::write(root.join("c").join(CACHEDIR_TAG), CACHEDIR_SIGNATURE).unwrap();
        let opts = LeaveOut {
            exclude_caches: true,
            larger_than: Some(100),
            ..LeaveOut::default()
        };
        let rows = vec![
            ("big", false, 101),
            ("small", false, 100),
            ("c/x", false, 1),
            ("gone/CACHEDIR.TAG", false, 43),
            ("gone", true, 0),
            ("gone/y", false, 1),
            ("gone2/CACHEDIR.TAG", false, 43),
            ("d/z", false, 1),
        ];
        let left = opts.deletable(rows, root, |r| (r.0, r.1, r.2));
        let paths: Vec<&str> = left.iter().map(|r| r.0).collect();
        assert_eq!(paths, ["small", "gone2/CACHEDIR.TAG", "d/z"]);
    }
}
