//! Which paths gone locally `--delete` may remove from the store: those the
//! walk would take, never those a filter leaves out.
//!
//! The README promises that a path a filter leaves out is never deleted by
//! `--delete`. The walk does not meet a path that is gone, so its verdict
//! cannot be collected on the way (issue 11, part 6: an excluded file that
//! was also deleted locally had its object deleted). Instead every row
//! gone locally is put through the walk's own decision (`decide`, which
//! mirrors `scan::Walker::excluded`, checked against it by the tests
//! below), component by component from the top, as the walk would meet it:
//! the command-line filters (`--exclude`, `--exclude-from`, `--include`,
//! with `--include` walking through excluded directories) and the
//! `.s3backupignore` files of its ancestor directories.
//!
//! Which ignore files apply to a path whose directory may be gone:
//! - a directory that exists: its `.s3backupignore` on disk, as the walk
//!   reads it (or none);
//! - an ignore file that is gone (itself or with its directory) but that
//!   the state records as backed up: its rules are read from the store's
//!   copy (the recorded version, checked against the recorded blake3). Its
//!   rules were in force when the rows below it were last seen, and the
//!   safe reading is that what they left out is still left out. Such an
//!   ignore file is itself spared while its rules spare anything, so the
//!   next run can still read them (and spares the same). One whose rules
//!   spare nothing is deleted with its directory, as any file is;
//! - an ignore file that is gone and whose copy cannot be read (network,
//!   changed, unrecorded blake3 mismatch): everything below its directory,
//!   and the file itself, is spared for this run, the safe choice.
//!
//! With `--no-ignore-files` (walk option `ignore_files` off) only the
//! command-line filters count, as for the walk.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use futures::{StreamExt, TryStreamExt};
use ignore::Match;
use ignore::gitignore::Gitignore;

use crate::fs::filter::{self, Filters, IGNORE_FILE, Verdict};
use crate::fs::names;
use crate::fs::scan::{EntryKind, WalkOptions};
use crate::state::FileRow;
use crate::store::retry::{DOWNLOAD_ATTEMPTS, retry_n};
use crate::store::{GetRequest, ObjectStore, StoreError, join_key};

/// Largest `.s3backupignore` read back from the store, in bytes: rules, not data.
const MAX_IGNORE_FILE: u64 = 1024 * 1024;

/// What the walk does with one path (the same three outcomes as the walk's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exclusion {
    /// Taken.
    No,
    /// Left out, with everything under it.
    Yes,
    /// A directory left out whose contents an `--include` may take: each
    /// path under it is decided on its own.
    WalkThrough,
}

/// The walk's decision on `rel` given the ignore files in force, its
/// ancestors' (shallowest first, as `(matcher, tag)`): `--include` wins,
/// then `--exclude`, then the deepest ignore file with a rule for it. Also
/// returns the tag of the ignore file that left it out, if one did.
fn decide<T: Copy>(
    filters: &Filters,
    ignore_files: &[(&Gitignore, T)],
    rel: &str,
    is_dir: bool,
) -> (Exclusion, Option<T>) {
    let (out, by) = match filters.verdict(rel, is_dir) {
        Verdict::Included => (false, None),
        Verdict::Excluded => (true, None),
        Verdict::NoRule => ignore_files
            .iter()
            .rev()
            .find_map(|(g, tag)| match crate::fs::filter::matched_up(g, rel, is_dir) {
                Match::Ignore(_) => Some((true, Some(*tag))),
                Match::Whitelist(_) => Some((false, None)),
                Match::None => None,
            })
            .unwrap_or((false, None)),
    };
    let exclusion = match (out, is_dir && filters.has_includes()) {
        (false, _) => Exclusion::No,
        (true, false) => Exclusion::Yes,
        (true, true) => Exclusion::WalkThrough,
    };
    (exclusion, by)
}

/// The rules of one directory's `.s3backupignore`.
enum Rules {
    /// No ignore file.
    None,
    /// Rules, and whether they come from the store's copy of a gone file.
    Some(Gitignore, bool),
    /// A gone ignore file whose copy could not be read: spare all below.
    Unknown,
}

/// Removes from `vanished` (rows whose path is gone locally, about to be
/// deleted by `--delete`) every row the walk's filters leave out, so
/// deletions and `--dry-run` plans obey the same filter as the walk. Reads
/// the ignore files of gone directories' ancestors from disk and, for
/// recorded ignore files that are gone, their copies from `store` under
/// `prefix`, `jobs` at a time (see the module doc). Returns how many rows
/// were spared.
pub async fn spare_filtered(
    vanished: &mut Vec<FileRow>,
    root: &Path,
    walk: &WalkOptions,
    store: &dyn ObjectStore,
    prefix: &str,
    jobs: usize,
) -> usize {
    if vanished.is_empty() || (walk.filters.is_empty() && !walk.ignore_files && walk.leave_out.is_empty()) {
        return 0;
    }
    // Recorded ignore files that are gone locally: their rules, from the store.
    let gone: Vec<&FileRow> = if walk.ignore_files {
        vanished
            .iter()
            .filter(|r| is_ignore_file(r) && !names::local(root, &r.path).is_file())
            .collect()
    } else {
        Vec::new()
    };
    let recorded: HashMap<String, Rules> = futures::stream::iter(gone)
        .map(|row| async move {
            let dir = parent_of(&row.path).to_string();
            let rules = match read_copy(store, &join_key(prefix, &row.path), row).await {
                Ok(text) => match filter::ignore_rules(&dir, &text) {
                    Some(g) => Rules::Some(g, true),
                    None => Rules::None,
                },
                Err(e) => {
                    tracing::warn!(
                        path = %row.path,
                        "cannot read the store's copy of a deleted ignore file ({e}): --delete spares everything below it"
                    );
                    Rules::Unknown
                }
            };
            (dir, rules)
        })
        .buffer_unordered(jobs.max(1))
        .collect()
        .await;
    let rows = std::mem::take(vanished);
    let before = rows.len();
    *vanished = tokio::task::block_in_place(|| {
        let rows = keep_deletable(rows, root, walk, recorded);
        // What --exclude-caches and the like leave out is spared the same way.
        walk.leave_out.deletable(rows, root, |r| {
            (r.path.as_str(), r.kind == EntryKind::Dir, r.size)
        })
    });
    before - vanished.len()
}

/// The rows of `rows` the walk would take (see [`spare_filtered`]).
fn keep_deletable(
    rows: Vec<FileRow>,
    root: &Path,
    walk: &WalkOptions,
    recorded: HashMap<String, Rules>,
) -> Vec<FileRow> {
    let mut dirs = DirRules {
        root,
        enabled: walk.ignore_files,
        recorded,
        local: HashMap::new(),
    };
    // Gone ignore files whose rules spared something: spared themselves.
    let mut needed: HashSet<String> = HashSet::new();
    let mut deletable = Vec::with_capacity(rows.len());
    for row in rows {
        match dirs.spared_by(&walk.filters, &row.path, row.kind == EntryKind::Dir) {
            Spared::No => deletable.push(row),
            Spared::ByFilter => {}
            Spared::ByGoneIgnoreFile(dir) => {
                needed.insert(dir);
            }
        }
    }
    deletable.retain(|r| !(is_ignore_file(r) && needed.contains(parent_of(&r.path))));
    deletable
}

/// Whether a row is spared, and if so whose rules spared it.
enum Spared {
    No,
    /// The command line or an ignore file on disk.
    ByFilter,
    /// A gone ignore file's rules (or unknown rules) of this directory.
    ByGoneIgnoreFile(String),
}

/// The ignore files of directories, read once each.
struct DirRules<'a> {
    root: &'a Path,
    enabled: bool,
    recorded: HashMap<String, Rules>,
    local: HashMap<String, Rules>,
}

impl DirRules<'_> {
    /// Walks `path`'s components from the top as the walk would meet them.
    fn spared_by(&mut self, filters: &Filters, path: &str, is_dir: bool) -> Spared {
        // Directories (by relative path) whose rules are in force, shallowest first.
        let mut in_force: Vec<String> = Vec::new();
        let mut dir = String::new();
        let mut components = path.split('/').peekable();
        loop {
            if self.enabled {
                match self.rules(&dir) {
                    Rules::None => {}
                    Rules::Some(..) => in_force.push(dir.clone()),
                    Rules::Unknown => return Spared::ByGoneIgnoreFile(dir),
                }
            }
            let Some(name) = components.next() else {
                return Spared::No;
            };
            let rel = if dir.is_empty() {
                name.to_string()
            } else {
                format!("{dir}/{name}")
            };
            let last = components.peek().is_none();
            let files: Vec<(&Gitignore, &str)> = in_force
                .iter()
                .filter_map(|d| match self.cached(d) {
                    Some(Rules::Some(g, _)) => Some((g, d.as_str())),
                    _ => None,
                })
                .collect();
            let (exclusion, by) = decide(filters, &files, &rel, !last || is_dir);
            let spared = match by.and_then(|d| self.cached(d).map(|r| (d, r))) {
                Some((d, Rules::Some(_, true))) => Spared::ByGoneIgnoreFile(d.to_string()),
                _ => Spared::ByFilter,
            };
            match exclusion {
                Exclusion::Yes => return spared,
                Exclusion::WalkThrough if last => return spared,
                Exclusion::No if last => return Spared::No,
                Exclusion::No | Exclusion::WalkThrough => {}
            }
            dir = rel;
        }
    }

    /// The rules of directory `dir`, loaded on first use.
    fn rules(&mut self, dir: &str) -> &Rules {
        if !self.local.contains_key(dir) {
            let local = names::local(self.root, dir);
            let rules = if local.join(IGNORE_FILE).is_file() {
                match filter::ignore_file(&local, dir) {
                    Some(g) => Rules::Some(g, false),
                    None => Rules::None,
                }
            } else {
                match self.recorded.remove(dir) {
                    Some(r) => r,
                    None => Rules::None,
                }
            };
            self.local.insert(dir.to_string(), rules);
        }
        &self.local[dir]
    }

    fn cached(&self, dir: &str) -> Option<&Rules> {
        self.local.get(dir)
    }
}

/// Whether a row is an ignore file (a regular file of that name).
fn is_ignore_file(row: &FileRow) -> bool {
    row.kind == EntryKind::File && row.path.rsplit('/').next() == Some(IGNORE_FILE)
}

/// The directory part of a relative path ("" at the top).
fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// The store's copy of a recorded ignore file, as text: the recorded
/// version, retried as a download is, checked against the recorded blake3.
async fn read_copy(store: &dyn ObjectStore, key: &str, row: &FileRow) -> Result<String, StoreError> {
    if row.size > MAX_IGNORE_FILE {
        return Err(StoreError::Fatal(format!(
            "{} bytes is too large for an ignore file",
            row.size
        )));
    }
    let req = GetRequest {
        version_id: row.version_id.as_deref(),
        ..GetRequest::default()
    };
    let bytes = retry_n(DOWNLOAD_ATTEMPTS, key, || async move {
        let (_, mut chunks) = store.get(key, req).await?;
        let mut body = Vec::new();
        while let Some(chunk) = chunks.try_next().await? {
            body.extend_from_slice(&chunk);
            if body.len() as u64 > MAX_IGNORE_FILE {
                return Err(StoreError::Fatal("too large for an ignore file".into()));
            }
        }
        Ok(body)
    })
    .await?;
    let actual = blake3::hash(&bytes).to_hex().to_string();
    if !row.blake3.is_empty() && actual != row.blake3 {
        return Err(StoreError::Changed(format!(
            "'{key}' no longer has the recorded content"
        )));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::scan::{self, Walked};

    fn filters(exclude: &[&str], include: &[&str]) -> Filters {
        let s = |v: &[&str]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        Filters::new(&s(exclude), &s(include), &[]).unwrap()
    }

    fn row(path: &str, kind: EntryKind) -> FileRow {
        FileRow {
            path: path.into(),
            kind,
            size: 1,
            mtime_ns: 1,
            mode: 0o644,
            blake3: String::new(),
            etag: String::new(),
            version_id: None,
            uploaded_at: 0,
            checked_ns: 0,
            stamp: None,
            checksum: None,
        }
    }

    /// A tree with ignore files at several depths, files and directories
    /// that filters and ignore files take and leave out.
    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            ".s3backupignore",
            "a.log",
            "a.txt",
            "a.tmp",
            "build/out.o",
            "build/keep.txt",
            "cache/x",
            "docs/cache",
            "secret/key.txt",
            "secret/key.bin",
            "src/build/real.rs",
            "sub/.s3backupignore",
            "sub/keep.log",
            "sub/other.log",
            "sub/inner/c.log",
            "sub/inner/d.txt",
            "deep/er/b.tmp",
            "deep/er/b.txt",
        ];
        for f in files {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, "x").unwrap();
        }
        std::fs::write(dir.path().join(".s3backupignore"), "*.log\nsecret/\n").unwrap();
        std::fs::write(dir.path().join("sub/.s3backupignore"), "!keep.log\n").unwrap();
        dir
    }

    /// Every path under `root` (files and directories), with whether it is a directory.
    fn all_paths(root: &Path) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                // Keys use `/` on every platform (a Windows path's are `\`).
                let rel = p
                    .strip_prefix(root)
                    .unwrap()
                    .components()
                    .map(|c| c.as_os_str().to_str().unwrap())
                    .collect::<Vec<_>>()
                    .join("/");
                let is_dir = p.is_dir();
                if is_dir {
                    stack.push(p);
                }
                out.push((rel, is_dir));
            }
        }
        out.sort();
        out
    }

    /// For each filter set, every path of the tree: spared exactly when the
    /// walk does not take it (an excluded path, or one under an excluded
    /// directory, or a walked-through directory).
    #[test]
    fn the_decision_on_a_path_is_the_walks() {
        let dir = tree();
        let sets = [
            filters(&[], &[]),
            filters(&["*.tmp", "/build", "cache/"], &["build/keep.txt"]),
            filters(&["*"], &["*.txt"]),
            filters(&["sub/"], &[]),
            filters(&[], &["secret/"]),
        ];
        for (i, f) in sets.into_iter().enumerate() {
            for ignore_files in [true, false] {
                let opts = WalkOptions {
                    filters: f.clone(),
                    ignore_files,
                    ..WalkOptions::default()
                };
                let taken: HashSet<String> = scan::walk_with(dir.path(), &opts, |_| {})
                    .unwrap()
                    .filter_map(|w| match w {
                        Walked::Entry(e) => Some(e.path),
                        _ => None,
                    })
                    .collect();
                let rows: Vec<FileRow> = all_paths(dir.path())
                    .into_iter()
                    .map(|(p, is_dir)| row(&p, if is_dir { EntryKind::Dir } else { EntryKind::File }))
                    .collect();
                let deletable: HashSet<String> =
                    keep_deletable(rows.clone(), dir.path(), &opts, HashMap::new())
                        .into_iter()
                        .map(|r| r.path)
                        .collect();
                for r in &rows {
                    assert_eq!(
                        deletable.contains(&r.path),
                        taken.contains(&r.path),
                        "set {i}, ignore files {ignore_files}: {}",
                        r.path
                    );
                }
            }
        }
    }

    #[test]
    fn a_gone_ignore_files_recorded_rules_spare_and_keep_it() {
        let dir = tempfile::tempdir().unwrap();
        let opts = WalkOptions::default();
        let rows = vec![
            row("gone/.s3backupignore", EntryKind::File),
            row("gone/x.o", EntryKind::File),
            row("gone/y.c", EntryKind::File),
            row("other/.s3backupignore", EntryKind::File),
            row("other/z.o", EntryKind::File),
            row("unknown/.s3backupignore", EntryKind::File),
            row("unknown/w.c", EntryKind::File),
        ];
        let mut recorded = HashMap::new();
        recorded.insert(
            "gone".to_string(),
            Rules::Some(filter::ignore_rules("gone", "*.o\n").unwrap(), true),
        );
        recorded.insert(
            "other".to_string(),
            Rules::Some(filter::ignore_rules("other", "*.c\n").unwrap(), true),
        );
        recorded.insert("unknown".to_string(), Rules::Unknown);
        let deletable: Vec<String> = keep_deletable(rows, dir.path(), &opts, recorded)
            .into_iter()
            .map(|r| r.path)
            .collect();
        assert_eq!(deletable, ["gone/y.c", "other/.s3backupignore", "other/z.o"]);
    }

    #[test]
    fn decide_names_the_ignore_file_that_left_a_path_out() {
        let top = filter::ignore_rules("", "*.log\n").unwrap();
        let sub = filter::ignore_rules("sub", "!keep.log\n*.o\n").unwrap();
        let files = [(&top, 0), (&sub, 1)];
        let none = filters(&[], &[]);
        assert_eq!(decide(&none, &files, "a.log", false), (Exclusion::Yes, Some(0)));
        assert_eq!(decide(&none, &files, "sub/x.o", false), (Exclusion::Yes, Some(1)));
        assert_eq!(
            decide(&none, &files, "sub/keep.log", false),
            (Exclusion::No, None)
        );
        let inc = filters(&["*"], &["*.txt"]);
        assert_eq!(decide(&inc, &files, "d", true), (Exclusion::WalkThrough, None));
        assert_eq!(decide(&inc, &files, "d/a.txt", false), (Exclusion::No, None));
    }
}
