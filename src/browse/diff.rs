//! `snapshots diff A B`: what changed from snapshot A to snapshot B.
//!
//! Both manifests are sorted by path, so they are read side by side as a
//! merge, one entry of each in memory. A path on both sides is
//! *modified* when its content differs (blake3; size and ETag where an
//! entry has no blake3), *metadata* when only its mode or mtime does,
//! *type_changed* when it is another kind of entry (a file that became a
//! directory). A path on one side only is *removed* or *added*, unless it
//! is one half of a *rename*: a file (or symlink) removed whose content
//! (type and blake3) equals that of one added. Only those halves, files
//! and symlinks with content (empty files are never called renames, as
//! git does not), are held in memory until both manifests are read;
//! every other change goes to a temporary file as it is found.
//!
//! Several removed and added paths with one content are paired
//! deterministically: first those with the same file name (the last path
//! component), each removed path in path order taking the first added
//! one in path order; then the rest, in path order, the n-th removed with
//! the n-th added. What is left over is removed or added.
//!
//! The changes come out in path order (a rename under its new path),
//! merged from the temporary file and the paired candidates; the totals
//! are known before the first one.

use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, Write};

use serde::{Deserialize, Serialize};

use crate::browse::{BrowseError, Entries, Node};
use crate::manifest::Entry;

/// What kind of change a path went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Only in B.
    Added,
    /// Only in A.
    Removed,
    /// In both, with other content.
    Modified,
    /// In both, same content, other mode or mtime.
    Metadata,
    /// In both, another kind of entry (file, directory, symlink).
    TypeChanged,
    /// Removed from `from` and added at `path` with the same content.
    Renamed,
}

impl ChangeKind {
    /// The word the text output and the JSON use.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Modified => "modified",
            ChangeKind::Metadata => "metadata",
            ChangeKind::TypeChanged => "type_changed",
            ChangeKind::Renamed => "renamed",
        }
    }
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// What happened.
    pub change: ChangeKind,
    /// The path (in B, for a rename).
    pub path: String,
    /// A rename's path in A.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The entry in A (`None` when added).
    pub old: Option<Node>,
    /// The entry in B (`None` when removed).
    pub new: Option<Node>,
}

/// Entries and bytes of one kind of change. `files` counts files and
/// symlinks, `dirs` directories; `bytes` is the size of the entries (the
/// new side's for a type change).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Count {
    /// Files and symlinks.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, node: &Node) {
        if node.is_dir() {
            self.dirs += 1;
        } else {
            self.files += 1;
        }
        self.bytes += node.size;
    }
}

/// Files whose content changed, and their bytes before and after.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Modified {
    /// Files and symlinks.
    pub files: u64,
    /// Their bytes in A.
    pub old_bytes: u64,
    /// Their bytes in B.
    pub new_bytes: u64,
}

/// The totals of a diff, by kind of change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Only in B (renames not counted).
    pub added: Count,
    /// Only in A (renames not counted).
    pub removed: Count,
    /// Content changed.
    pub modified: Modified,
    /// Renamed (bytes: the content's size).
    pub renamed: Count,
    /// Mode or mtime changed only.
    pub metadata: Count,
    /// Another kind of entry.
    pub type_changed: Count,
}

impl Totals {
    /// Counts one change.
    fn count(&mut self, c: &Change) {
        let (old, new) = (c.old.as_ref(), c.new.as_ref());
        let (count, node) = match c.change {
            ChangeKind::Added => (&mut self.added, new),
            ChangeKind::Removed => (&mut self.removed, old),
            ChangeKind::Renamed => (&mut self.renamed, new),
            ChangeKind::Metadata => (&mut self.metadata, new),
            ChangeKind::TypeChanged => (&mut self.type_changed, new),
            ChangeKind::Modified => {
                self.modified.files += 1;
                self.modified.old_bytes += old.map_or(0, |n| n.size);
                self.modified.new_bytes += new.map_or(0, |n| n.size);
                return;
            }
        };
        if let Some(node) = node {
            count.add(node);
        }
    }
}

/// The changes from A to B, in path order, and their totals.
pub struct Diff {
    spooled: std::io::Lines<BufReader<std::fs::File>>,
    next_spooled: Option<Change>,
    paired: std::iter::Peekable<std::vec::IntoIter<Change>>,
    /// The totals of every change the iterator gives.
    pub totals: Totals,
}

/// Compares snapshot `a` with snapshot `b` (A the older, usually).
///
/// # Errors
/// What reading either snapshot gives ([`BrowseError`]: a manifest cut
/// short or out of order), or [`BrowseError::Spool`] when the temporary
/// file cannot be written.
pub fn diff<RA: Read, RB: Read>(a: &mut Entries<RA>, b: &mut Entries<RB>) -> Result<Diff, BrowseError> {
    let mut found = Found::new()?;
    let mut left = a.next().transpose()?;
    let mut right = b.next().transpose()?;
    loop {
        let order = match (&left, &right) {
            (None, None) => break,
            (Some(l), Some(r)) => l.path.as_bytes().cmp(r.path.as_bytes()),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
        };
        if order != Ordering::Greater
            && let Some(l) = left.take()
        {
            match right.take() {
                Some(r) if order == Ordering::Equal => {
                    found.both(l, r)?;
                    right = b.next().transpose()?;
                }
                r => {
                    right = r;
                    found.one_side(l, ChangeKind::Removed)?;
                }
            }
            left = a.next().transpose()?;
        } else if let Some(r) = right.take() {
            found.one_side(r, ChangeKind::Added)?;
            right = b.next().transpose()?;
        }
    }
    found.finish()
}

/// A path only one side holds that may be half of a rename.
struct Candidate {
    path: String,
    node: Node,
}

/// What the merge found so far: changes spooled, rename candidates held.
struct Found {
    spool: BufWriter<std::fs::File>,
    removed: Vec<Candidate>,
    added: Vec<Candidate>,
    totals: Totals,
}

impl Found {
    fn new() -> Result<Self, BrowseError> {
        Ok(Self {
            spool: BufWriter::new(tempfile::tempfile().map_err(BrowseError::Spool)?),
            removed: Vec::new(),
            added: Vec::new(),
            totals: Totals::default(),
        })
    }

    /// Writes a change to the temporary file and counts it.
    fn spool(&mut self, change: Change) -> Result<(), BrowseError> {
        self.totals.count(&change);
        serde_json::to_writer(&mut self.spool, &change).map_err(|e| BrowseError::Spool(e.into()))?;
        self.spool.write_all(b"\n").map_err(BrowseError::Spool)
    }

    /// A path only A (`Removed`) or only B (`Added`) holds.
    fn one_side(&mut self, entry: Entry, kind: ChangeKind) -> Result<(), BrowseError> {
        let node = Node::from(&entry);
        if node.kind != "dir" && node.size > 0 && !node.blake3.is_empty() {
            let held = Candidate {
                path: entry.path,
                node,
            };
            match kind {
                ChangeKind::Removed => self.removed.push(held),
                _ => self.added.push(held),
            }
            return Ok(());
        }
        let (old, new) = match kind {
            ChangeKind::Removed => (Some(node), None),
            _ => (None, Some(node)),
        };
        self.spool(Change {
            change: kind,
            path: entry.path,
            from: None,
            old,
            new,
        })
    }

    /// A path both sides hold: a change if they differ.
    fn both(&mut self, old: Entry, new: Entry) -> Result<(), BrowseError> {
        let change = if old.kind != new.kind {
            ChangeKind::TypeChanged
        } else if old.kind == "dir" || same_content(&old, &new) {
            if old.mode == new.mode && old.mtime_ns == new.mtime_ns {
                return Ok(());
            }
            ChangeKind::Metadata
        } else {
            ChangeKind::Modified
        };
        self.spool(Change {
            change,
            from: None,
            old: Some(Node::from(&old)),
            new: Some(Node::from(&new)),
            path: new.path,
        })
    }

    /// Pairs the candidates and reads the temporary file back.
    fn finish(mut self) -> Result<Diff, BrowseError> {
        let mut paired = pair(std::mem::take(&mut self.removed), std::mem::take(&mut self.added));
        for change in &paired {
            self.totals.count(change);
        }
        paired.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        let mut file = self
            .spool
            .into_inner()
            .map_err(|e| BrowseError::Spool(e.into_error()))?;
        file.rewind().map_err(BrowseError::Spool)?;
        let mut diff = Diff {
            spooled: BufReader::new(file).lines(),
            next_spooled: None,
            paired: paired.into_iter().peekable(),
            totals: self.totals,
        };
        diff.next_spooled = diff.read_spooled()?;
        Ok(diff)
    }
}

/// Whether two entries of one kind hold the same content: the same
/// blake3, or (where one has none, as a hand-made manifest may) the same
/// size and ETag.
fn same_content(a: &Entry, b: &Entry) -> bool {
    if !a.blake3.is_empty() && !b.blake3.is_empty() {
        return a.blake3 == b.blake3;
    }
    a.size == b.size && !a.etag.is_empty() && a.etag == b.etag
}

/// The last component of a path.
fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Pairs removed with added candidates of the same type and content, by
/// the rule in the module doc; both lists are in path order. Returns the
/// renames and what is left, removed or added, unsorted.
fn pair(removed: Vec<Candidate>, added: Vec<Candidate>) -> Vec<Change> {
    // (type, blake3) -> (removed, added) candidates holding it, by index.
    type Groups<'a> = HashMap<(&'a str, &'a str), (Vec<usize>, Vec<usize>)>;
    let mut groups: Groups<'_> = HashMap::new();
    for (i, c) in removed.iter().enumerate() {
        groups
            .entry((&c.node.kind, &c.node.blake3))
            .or_default()
            .0
            .push(i);
    }
    for (i, c) in added.iter().enumerate() {
        if let Some(group) = groups.get_mut(&(c.node.kind.as_str(), c.node.blake3.as_str())) {
            group.1.push(i);
        }
    }
    // partner[i]: the added candidate removed candidate i was renamed to.
    let mut partner: Vec<Option<usize>> = vec![None; removed.len()];
    let mut taken = vec![false; added.len()];
    for (gone, came) in groups.values() {
        if came.is_empty() {
            continue;
        }
        let mut by_name: HashMap<&str, VecDeque<usize>> = HashMap::new();
        for &j in came {
            by_name.entry(base_name(&added[j].path)).or_default().push_back(j);
        }
        for &i in gone {
            if let Some(j) = by_name
                .get_mut(base_name(&removed[i].path))
                .and_then(VecDeque::pop_front)
            {
                partner[i] = Some(j);
                taken[j] = true;
            }
        }
        let rest: Vec<usize> = came.iter().copied().filter(|&j| !taken[j]).collect();
        let alone: Vec<usize> = gone.iter().copied().filter(|&i| partner[i].is_none()).collect();
        for (i, j) in alone.into_iter().zip(rest) {
            partner[i] = Some(j);
            taken[j] = true;
        }
    }
    let mut added: Vec<Option<Candidate>> = added.into_iter().map(Some).collect();
    let mut changes = Vec::new();
    for (c, to) in removed.into_iter().zip(partner) {
        let renamed = to.and_then(|j| added[j].take());
        changes.push(match renamed {
            Some(new) => Change {
                change: ChangeKind::Renamed,
                path: new.path,
                from: Some(c.path),
                old: Some(c.node),
                new: Some(new.node),
            },
            None => Change {
                change: ChangeKind::Removed,
                path: c.path,
                from: None,
                old: Some(c.node),
                new: None,
            },
        });
    }
    changes.extend(added.into_iter().flatten().map(|c| Change {
        change: ChangeKind::Added,
        path: c.path,
        from: None,
        old: None,
        new: Some(c.node),
    }));
    changes
}

impl Diff {
    /// The next change of the temporary file.
    fn read_spooled(&mut self) -> Result<Option<Change>, BrowseError> {
        match self.spooled.next() {
            None => Ok(None),
            Some(line) => {
                let line = line.map_err(BrowseError::Spool)?;
                serde_json::from_str(&line)
                    .map_err(|e| BrowseError::Spool(e.into()))
                    .map(Some)
            }
        }
    }
}

impl Iterator for Diff {
    type Item = Result<Change, BrowseError>;

    fn next(&mut self) -> Option<Self::Item> {
        let spooled_first = match (&self.next_spooled, self.paired.peek()) {
            (None, None) => return None,
            (Some(s), Some(p)) => s.path.as_bytes() <= p.path.as_bytes(),
            (Some(_), None) => true,
            (None, Some(_)) => false,
        };
        if !spooled_first {
            return self.paired.next().map(Ok);
        }
        let change = self.next_spooled.take()?;
        match self.read_spooled() {
            Ok(next) => self.next_spooled = next,
            Err(e) => return Some(Err(e)),
        }
        Some(Ok(change))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::browse::tests::{entries, entry};

    fn run(a: &[Entry], b: &[Entry]) -> (Vec<String>, Totals) {
        let d = diff(&mut entries("A", a), &mut entries("B", b)).unwrap();
        let totals = d.totals;
        let lines = d
            .map(Result::unwrap)
            .map(|c| match c.from {
                Some(from) => format!("{} {from} -> {}", c.change.as_str(), c.path),
                None => format!("{} {}", c.change.as_str(), c.path),
            })
            .collect();
        (lines, totals)
    }

    #[test]
    fn classifies_each_kind_of_change_in_path_order() {
        let mut meta = entry("m", "file", 2, "mm");
        meta.mode = "755".into();
        let mut dir_touched = entry("d", "dir", 0, "");
        dir_touched.mtime_ns += 1;
        let a = [
            entry("a", "file", 1, "a"),
            entry("d", "dir", 0, ""),
            entry("e", "file", 0, ""),
            entry("gone", "file", 3, "gone"),
            entry("m", "file", 2, "mm"),
            entry("old/x", "file", 4, "xxxx"),
            entry("t", "file", 1, "t"),
        ];
        let b = [
            entry("a", "file", 2, "a2"),
            dir_touched,
            meta,
            entry("m2", "file", 5, "mnew1"),
            entry("new/x", "file", 4, "xxxx"),
            entry("t", "dir", 0, ""),
        ];
        let (lines, totals) = run(&a, &b);
        assert_eq!(
            lines,
            [
                "modified a",
                "metadata d",
                "removed e",
                "removed gone",
                "metadata m",
                "added m2",
                "renamed old/x -> new/x",
                "type_changed t",
            ]
        );
        assert_eq!(
            totals.added,
            Count {
                files: 1,
                dirs: 0,
                bytes: 5
            }
        );
        assert_eq!(
            totals.removed,
            Count {
                files: 2,
                dirs: 0,
                bytes: 3
            }
        );
        assert_eq!(
            totals.modified,
            Modified {
                files: 1,
                old_bytes: 1,
                new_bytes: 2
            }
        );
        assert_eq!(
            totals.renamed,
            Count {
                files: 1,
                dirs: 0,
                bytes: 4
            }
        );
        assert_eq!(
            totals.metadata,
            Count {
                files: 1,
                dirs: 1,
                bytes: 2
            }
        );
        assert_eq!(
            totals.type_changed,
            Count {
                files: 0,
                dirs: 1,
                bytes: 0
            }
        );
    }

    #[test]
    fn several_candidates_pair_by_name_then_in_path_order() {
        let same = |p: &str| entry(p, "file", 4, "same");
        let a = [same("a/keep.txt"), same("b/one"), same("c/two"), same("z/three")];
        let b = [same("n/one2"), same("p/three3"), same("q/keep.txt")];
        let (lines, totals) = run(&a, &b);
        assert_eq!(
            lines,
            [
                "renamed b/one -> n/one2",
                "renamed c/two -> p/three3",
                "renamed a/keep.txt -> q/keep.txt",
                "removed z/three",
            ]
        );
        assert_eq!(totals.renamed.files, 3);
        // A symlink with a file's content is not its rename.
        let link = entry("l", "symlink", 4, "same");
        let (lines, _) = run(&[link], &[same("f")]);
        assert_eq!(lines, ["added f", "removed l"]);
    }

    #[test]
    fn identical_snapshots_have_no_changes() {
        let a = [entry("a", "file", 1, "a"), entry("d", "dir", 0, "")];
        let (lines, totals) = run(&a, &a);
        assert!(lines.is_empty());
        assert_eq!(totals, Totals::default());
    }
}
