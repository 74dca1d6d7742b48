//! The merge of the walk with the state ([`triage`]): one pass over both,
//! in path order, with a lookahead no longer than a path's depth.

use std::collections::HashMap;

use super::{Found, Triage, is_under, stat_matches};
use crate::fs::scan::{EntryKind, ScanEntry};
use crate::state::FileRow;

/// Whether the merge key `key` sorts after `path/` and everything under it.
fn past(key: &str, path: &str) -> bool {
    key.as_bytes()
        .iter()
        .cmp(path.as_bytes().iter().chain(b"/"))
        .is_gt()
        && !is_under(key, path)
}

/// Sorts the scan against the state without reading any file, in one
/// merged pass: `entries` yields entries in the walk's order (the byte
/// order of their paths, a directory sorting as `path/`, just before what
/// is under it), `file_rows` yields the set's file and symlink rows in
/// byte order of their paths, and `dir_rows` holds its directory rows
/// (few). What needs work while the walk goes on is handed to `found` as
/// soon as it is known (files to hash, rows to replace), so a caller can
/// stream it on; everything else that needs work is returned. With
/// `rehash`, no stat is trusted: every file is hashed (`backup --rehash`,
/// for file systems whose change times can't be trusted).
///
/// Type changes are found in the same pass, with a lookahead no longer
/// than a path's depth: a file row `a` that has left its path stays
/// undecided until the walk is past `a/` (an entry under it, the
/// directory `a` included, makes it [`Found::Replaced`]; else it has
/// vanished), and a file or symlink entry `a` is held back until the walk
/// is past `a/`, so that the rows under the old directory `a/` reach
/// `found` as replaced before the entry does. Both lists only ever hold
/// prefixes of the current path.
pub fn triage(
    entries: impl IntoIterator<Item = ScanEntry>,
    file_rows: impl IntoIterator<Item = FileRow>,
    dir_rows: HashMap<String, FileRow>,
    rehash: bool,
    found: impl FnMut(Found),
) -> Triage {
    let mut merge = Merge {
        rows: file_rows.into_iter().peekable(),
        dir_rows,
        undecided: Vec::new(),
        held: Vec::new(),
        triage: Triage::default(),
        found,
    };
    for entry in entries {
        if entry.kind == EntryKind::Dir {
            merge.advance(Some(&format!("{}/", entry.path)));
            match merge.dir_rows.remove(&entry.path) {
                Some(r) if r.mode == entry.mode && r.mtime_ns == entry.mtime_ns => {}
                _ => merge.triage.dirs.push(entry),
            }
            continue;
        }
        merge.advance(Some(&entry.path));
        // A directory row here: the directory is now a file or a symlink.
        let was_dir = merge.dir_rows.contains_key(&entry.path);
        if was_dir {
            merge.replace_dirs(&entry.path);
        }
        let path = entry.path.clone();
        let changed = match merge.rows.next_if(|r| r.path == entry.path) {
            Some(r) if !rehash && stat_matches(&entry, &r) => {
                if r.mode == entry.mode || entry.kind == EntryKind::Symlink {
                    merge.triage.unchanged += 1;
                } else {
                    merge.triage.mode_only.push((entry, r));
                }
                None
            }
            old => Some(Found::Changed(entry, old)),
        };
        merge.held.push(Held {
            path,
            changed,
            replaced_under: was_dir,
        });
    }
    merge.advance(None);
    let Merge {
        mut triage, dir_rows, ..
    } = merge;
    triage.vanished.extend(dir_rows.into_values());
    triage.vanished.sort_by(|a, b| a.path.cmp(&b.path));
    triage
}

/// A file or symlink entry waiting until the walk is past `path/`.
struct Held {
    path: String,
    /// Its [`Found::Changed`], if it has one.
    changed: Option<Found>,
    /// Whether rows under `path/` were replaced (then directory rows there go too).
    replaced_under: bool,
}

/// The state of [`triage`]'s merge.
struct Merge<R: Iterator<Item = FileRow>, F: FnMut(Found)> {
    rows: std::iter::Peekable<R>,
    dir_rows: HashMap<String, FileRow>,
    /// Rows gone from their path whose path the walk may yet show as a directory.
    undecided: Vec<FileRow>,
    /// Files and symlinks whose path may yet hold rows under it (a directory before).
    held: Vec<Held>,
    triage: Triage,
    found: F,
}

impl<R: Iterator<Item = FileRow>, F: FnMut(Found)> Merge<R, F> {
    /// Moves the merge up to the walk's next key (`None`: the walk is over).
    fn advance(&mut self, key: Option<&str>) {
        // Rows before the key have left their paths: under a held file or
        // symlink they are replaced, otherwise undecided for now.
        while let Some(r) = self.rows.next_if(|r| key.is_none_or(|k| r.path.as_str() < k)) {
            match self.held.iter_mut().find(|h| is_under(&r.path, &h.path)) {
                Some(h) => {
                    h.replaced_under = true;
                    (self.found)(Found::Replaced(r));
                }
                None => self.undecided.push(r),
            }
        }
        let (found, vanished) = (&mut self.found, &mut self.triage.vanished);
        self.undecided.retain(|r| match key {
            Some(k) if is_under(k, &r.path) => {
                found(Found::Replaced(r.clone()));
                false
            }
            Some(k) if !past(k, &r.path) => true,
            _ => {
                vanished.push(r.clone());
                false
            }
        });
        let mut i = 0;
        while i < self.held.len() {
            if key.is_some_and(|k| !past(k, &self.held[i].path)) {
                i += 1;
                continue;
            }
            let h = self.held.remove(i);
            if h.replaced_under {
                self.replace_dirs(&h.path);
            }
            if let Some(c) = h.changed {
                (self.found)(c);
            }
        }
    }

    /// Replaces the directory rows at and under `path` (now a file or symlink).
    fn replace_dirs(&mut self, path: &str) {
        let mut gone: Vec<String> = self
            .dir_rows
            .keys()
            .filter(|p| p.as_str() == path || is_under(p, path))
            .cloned()
            .collect();
        gone.sort();
        for p in gone {
            if let Some(row) = self.dir_rows.remove(&p) {
                (self.found)(Found::Replaced(row));
            }
        }
    }
}
