//! Deciding what a backup must do, from the scan and the state alone.
//!
//! "Same size and mtime" is trusted only for rows whose file was last seen
//! (stat-ed, then read) well after its mtime: a file written again within
//! the file system's timestamp granularity of that moment keeps its mtime,
//! so, as git does with "racily clean" index entries, such rows are hashed
//! again on the next run; if the bytes are unchanged only the row's check
//! time moves on. The check time is the scan's stat, not the upload's end,
//! so a long upload does not hide a write made just after the read.
//!
//! Pure functions, in two steps because hashing sits between them:
//! [`triage`] sorts scanned entries by size and mtime (no reads) into
//! unchanged ones and ones to hash; once those are hashed, [`decide`] picks
//! for each: same content as its row → *touch* (metadata only), content the
//! bucket already holds under another unchanged or vanished path → server-side
//! *copy*, else *upload*. Paths in state but gone locally are *deleted* only
//! when asked. Copy sources are never paths rewritten in the same run, so a
//! copy can't pick up content that is being replaced under it; deletions run
//! after everything else, so a rename's source outlives its copy.
//!
//! A path whose type changed (a file or symlink that is now a directory, a
//! directory that is now a file or symlink) is *replaced*: the merge hands
//! on the rows of the old objects ([`Found::Replaced`]: the file or link
//! `a`, or every row under the old `a/`) before any entry that would be
//! written at or under that path, and the backup deletes them first,
//! `--delete` or not. A tree cannot hold a file and a directory at one
//! path: on the local store the new files would be written through a
//! stored symlink (or fail on the stored file), on S3 the old object would
//! stay beside the new ones and a restore would conflict (issue 12).

use std::collections::HashMap;

use crate::fs::hash::{BodyDigests, Hashed};
use crate::fs::scan::{EntryKind, ScanEntry, Stamp};
use crate::state::FileRow;

/// Result of comparing the scan with the state, before any reading.
#[derive(Debug, Default)]
pub struct Triage {
    /// Files whose size, mtime and mode match their row.
    pub unchanged: u64,
    /// Files whose size and mtime match but whose mode changed: refresh metadata only.
    pub mode_only: Vec<(ScanEntry, FileRow)>,
    /// Files that are new or whose size or mtime changed (with their row, if any): hash them.
    pub to_hash: Vec<(ScanEntry, Option<FileRow>)>,
    /// Directories that are new or changed (state only; no remote object).
    pub dirs: Vec<ScanEntry>,
    /// Rows whose path no longer exists locally.
    pub vanished: Vec<FileRow>,
    /// Rows whose path changed type, to delete before anything is written
    /// there (collected by [`triage`]; [`triage_with`] hands them on as found).
    pub replaced: Vec<FileRow>,
}

impl Triage {
    /// Keeps rows at or under `paths` (entries the scan could not read) out
    /// of `vanished`, so an unreadable directory is never mistaken for a
    /// deleted one and wiped remotely by `--delete`.
    pub fn protect(&mut self, paths: &[String]) {
        self.vanished.retain(|row| {
            !paths.iter().any(|p| {
                p.is_empty()
                    || row.path == *p
                    || row
                        .path
                        .strip_prefix(p.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            })
        });
    }
}

/// One remote operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send the file's bytes.
    Upload {
        /// The local file.
        entry: ScanEntry,
        /// Its blake3.
        blake3: String,
        /// The MD5 of each request body, from the same read as the blake3
        /// (empty: hashed again when sent).
        bodies: BodyDigests,
    },
    /// Copy an object already in the bucket to this path.
    Copy {
        /// Relative path of the existing object.
        from: String,
        /// The ETag its row records: the copy is made only if the object
        /// still has it, so nothing is copied from content not known.
        from_etag: String,
        /// The local file it matches.
        entry: ScanEntry,
        /// The shared blake3.
        blake3: String,
        /// As for an upload: used if the copy source turns out to be gone.
        bodies: BodyDigests,
    },
    /// Content unchanged; refresh the object's metadata (mtime, mode).
    Touch {
        /// The local file.
        entry: ScanEntry,
        /// Its row before this run.
        old: FileRow,
    },
    /// Remove the remote object (or, for a directory, just its row).
    Delete(FileRow),
}

impl Action {
    /// The relative path this action writes or removes.
    pub fn path(&self) -> &str {
        match self {
            Action::Upload { entry, .. } | Action::Copy { entry, .. } | Action::Touch { entry, .. } => {
                &entry.path
            }
            Action::Delete(row) => &row.path,
        }
    }

    /// One line for `--dry-run` and logs.
    pub fn describe(&self) -> String {
        match self {
            Action::Upload { entry, .. } => format!("upload {}", entry.path),
            Action::Copy { from, entry, .. } => format!("copy {from} -> {}", entry.path),
            Action::Touch { entry, .. } => format!("touch {}", entry.path),
            Action::Delete(row) => format!("delete {}", row.path),
        }
    }
}

/// Everything a backup will do.
#[derive(Debug, Default)]
pub struct Plan {
    /// Deletions of objects whose path changed type, run before anything else.
    pub replaces: Vec<Action>,
    /// Uploads, copies and touches, in path order.
    pub transfers: Vec<Action>,
    /// Deletions, run after all transfers.
    pub deletes: Vec<Action>,
    /// Directories whose rows change.
    pub dirs: Vec<ScanEntry>,
    /// Files re-hashed because their rows were racy, found unchanged: only
    /// the row is rewritten (so it stops being racy), nothing is sent.
    pub refresh: Vec<FileRow>,
    /// Files with nothing to do.
    pub unchanged: u64,
}

/// How close (ns) to the moment a file was last seen its mtime may be
/// before size and mtime can no longer vouch for its content, on a file
/// system with whole-second timestamps (2 s covers the coarsest common
/// ones, FAT's).
pub const RACY_WINDOW_NS: i64 = 2_000_000_000;

/// The same for a file system with sub-second timestamps: the kernel stamps
/// files from a clock that ticks at least every 10 ms and may lag the clock
/// the check time comes from by one tick, so 100 ms leaves a wide margin.
pub const RACY_WINDOW_FINE_NS: i64 = 100_000_000;

/// Whether the file was last seen so soon after its mtime that a later
/// write could have kept the same mtime (git's "racily clean" rule).
///
/// An mtime with a fractional second shows the file system keeps fine
/// timestamps; a whole-second one may come from a coarse file system, so
/// it gets the wide window (as do files restored with whole-second times,
/// which costs nothing: they are rarely this recent).
///
/// The change time counts as well as the mtime: it is set by every write
/// and can't be set back, so a row is trusted only once both are well
/// before the moment the file was seen.
pub fn is_racy(row: &FileRow) -> bool {
    let last_change = row.stamp.map_or(row.mtime_ns, |s| s.ctime_ns.max(row.mtime_ns));
    last_change > row.checked_ns.saturating_sub(racy_window(row))
}

/// [`is_racy`] by the mtime alone: whether a write after the file was seen
/// could have kept its mtime. A backup picks copy sources with this: a row
/// racy only by its change time (mtime put back within a clock tick of
/// the backup) is hashed again by the run, but its object still holds the
/// row's content, which is all a copy needs.
pub fn mtime_is_racy(row: &FileRow) -> bool {
    row.mtime_ns > row.checked_ns.saturating_sub(racy_window(row))
}

/// The racy window for a row: wide for whole-second mtimes, narrow otherwise.
fn racy_window(row: &FileRow) -> i64 {
    if row.mtime_ns % 1_000_000_000 == 0 {
        RACY_WINDOW_NS
    } else {
        RACY_WINDOW_FINE_NS
    }
}

/// Whether a file's stat vouches for its row's content without a read:
/// same kind, size, mtime, change time, inode and device, and the row not
/// racily clean. A row whose stamp is unknown (rebuilt from a manifest)
/// never vouches, so such files are hashed once.
pub fn stat_matches(entry: &ScanEntry, row: &FileRow) -> bool {
    row.kind == entry.kind
        && row.size == entry.size
        && row.mtime_ns == entry.mtime_ns
        && row.stamp == Some(entry.stamp)
        && !is_racy(row)
}

/// What the merge of the walk with the state hands on as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A file or symlink to hash (new, or its stat no longer vouches for
    /// its row), with its row if it has one.
    Changed(ScanEntry, Option<FileRow>),
    /// A row whose path changed type: its object (none for a directory
    /// row) must be deleted before anything is written at, under or above
    /// its path. Always handed on before every [`Found::Changed`] entry it
    /// conflicts with.
    Replaced(FileRow),
}

/// Whether `path` lies strictly under the directory `dir` (`a/x` under `a`).
pub fn is_under(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

/// Whether two paths can't both exist in one tree unless both are
/// directories: the same path, or one under the other.
pub fn overlaps(a: &str, b: &str) -> bool {
    a == b || is_under(a, b) || is_under(b, a)
}

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
pub fn triage_with(
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

/// The state of [`triage_with`]'s merge.
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

/// [`triage_with`], collecting the files to hash into `to_hash` and the
/// rows to replace into `replaced`.
pub fn triage(
    entries: impl IntoIterator<Item = ScanEntry>,
    file_rows: impl IntoIterator<Item = FileRow>,
    dir_rows: HashMap<String, FileRow>,
) -> Triage {
    let (mut to_hash, mut replaced) = (Vec::new(), Vec::new());
    let mut triage = triage_with(entries, file_rows, dir_rows, false, |f| match f {
        Found::Changed(e, old) => to_hash.push((e, old)),
        Found::Replaced(row) => replaced.push(row),
    });
    triage.to_hash = to_hash;
    triage.replaced = replaced;
    triage
}

/// What to do with one hashed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Same bytes, mtime and mode as its row, which was only racy: write
    /// the row back with the new check time (so it stops being racy), send nothing.
    Refresh(FileRow),
    /// A remote operation.
    Act(Action),
}

/// An object the bucket holds some content under, by its row: where a
/// server-side copy can take that content from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySource {
    /// Relative path of the object.
    pub path: String,
    /// The ETag its row records ("" when not known: no condition).
    pub etag: String,
}

/// What a row's path holds now, as [`copy_source`] needs it: a backup
/// stats the path ([`PathNow::of`]); a whole-tree plan knows it from the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathNow {
    /// Nothing: the object stays until deletions, which run last.
    Gone,
    /// A regular file of this size, mtime (ns) and change stamp.
    File {
        /// Bytes.
        size: u64,
        /// Modification time, ns since the epoch.
        mtime_ns: i64,
        /// Change time, inode and device.
        stamp: Stamp,
    },
    /// Anything else: a directory, a link, a path that cannot be read.
    Other,
}

impl PathNow {
    /// What `md` (from `symlink_metadata`) says is at a path.
    pub fn of(md: &std::fs::Metadata) -> Self {
        if md.is_file() {
            PathNow::File {
                size: md.len(),
                mtime_ns: crate::fs::scan::mtime_ns(md),
                stamp: Stamp::of(md),
            }
        } else {
            PathNow::Other
        }
    }
}

/// The copy-source rule: of the rows claiming some content (in the order
/// given), the first whose object this run will not overwrite, because its
/// path is gone locally (deletions run last) or still exactly as the row
/// describes (size, mtime, and change time, inode and device) and the row
/// is not racy ([`mtime_is_racy`]). A row without a stamp (rebuilt from a
/// manifest) is never a source: nothing vouches that its object still
/// holds the bytes until the file is hashed again.
pub fn copy_source(
    rows: impl IntoIterator<Item = FileRow>,
    mut now: impl FnMut(&str) -> PathNow,
) -> Option<CopySource> {
    rows.into_iter()
        .find(|r| match now(&r.path) {
            PathNow::Gone => true,
            PathNow::File {
                size,
                mtime_ns,
                stamp,
            } => size == r.size && mtime_ns == r.mtime_ns && r.stamp == Some(stamp) && !mtime_is_racy(r),
            PathNow::Other => false,
        })
        .map(|r| CopySource {
            path: r.path,
            etag: r.etag,
        })
}

/// Decides for one hashed file: its own row has the bytes → touch (or just
/// refresh the row: the bytes, mtime and mode are as recorded, only the
/// stat's other fields or the check time moved), `copy_source(blake3,
/// size)` names an object the bucket holds them under → copy, else upload.
pub fn decide_file(
    entry: ScanEntry,
    old: Option<FileRow>,
    hashed: Hashed,
    copy_source: impl FnOnce(&str, u64) -> Option<CopySource>,
) -> Decision {
    let Hashed { blake3, bodies } = hashed;
    match old {
        Some(old) if old.kind == entry.kind && old.blake3 == blake3 && old.size == entry.size => {
            if old.mtime_ns == entry.mtime_ns && old.mode == entry.mode {
                Decision::Refresh(FileRow {
                    checked_ns: entry.seen_ns,
                    stamp: Some(entry.stamp),
                    ..old
                })
            } else if entry.kind == EntryKind::Symlink {
                // A link is a few bytes: sent again rather than touched in place.
                Decision::Act(Action::Upload {
                    entry,
                    blake3,
                    bodies,
                })
            } else {
                Decision::Act(Action::Touch { entry, old })
            }
        }
        _ if entry.kind == EntryKind::Symlink => Decision::Act(Action::Upload {
            entry,
            blake3,
            bodies,
        }),
        _ => match copy_source(&blake3, entry.size) {
            Some(from) => Decision::Act(Action::Copy {
                from: from.path,
                from_etag: from.etag,
                entry,
                blake3,
                bodies,
            }),
            None => Decision::Act(Action::Upload {
                entry,
                blake3,
                bodies,
            }),
        },
    }
}

/// Chooses an action for every hashed file at once (the plan a dry run
/// of the whole tree would list), with the functions a backup runs chunk by
/// chunk: [`decide_file`] and the [`copy_source`] rule. `hashes` maps path
/// → blake3; a file missing from it could not be read and is left out (the
/// caller reports it). `holders(blake3, size)` gives the rows that claim
/// that content, `now(path)` what the path holds now.
pub fn decide(
    triage: Triage,
    hashes: &HashMap<String, String>,
    mut holders: impl FnMut(&str, u64) -> Vec<FileRow>,
    mut now: impl FnMut(&str) -> PathNow,
    delete: bool,
) -> Plan {
    let mut plan = Plan {
        unchanged: triage.unchanged,
        dirs: triage.dirs,
        replaces: triage.replaced.into_iter().map(Action::Delete).collect(),
        ..Plan::default()
    };
    for (entry, old) in triage.mode_only {
        plan.transfers.push(Action::Touch { entry, old });
    }
    for (entry, old) in triage.to_hash {
        let Some(blake3) = hashes.get(&entry.path) else {
            continue;
        };
        let source = |hash: &str, size| copy_source(holders(hash, size), &mut now);
        let hashed = Hashed {
            blake3: blake3.clone(),
            bodies: BodyDigests::default(),
        };
        match decide_file(entry, old, hashed, source) {
            Decision::Refresh(row) => {
                plan.unchanged += 1;
                plan.refresh.push(row);
            }
            Decision::Act(action) => plan.transfers.push(action),
        }
    }
    plan.transfers.sort_by(|a, b| a.path().cmp(b.path()));
    if delete {
        plan.deletes = triage.vanished.into_iter().map(Action::Delete).collect();
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64, mtime_ns: i64) -> ScanEntry {
        ScanEntry {
            path: path.into(),
            kind: EntryKind::File,
            size,
            mtime_ns,
            mode: 0o644,
            seen_ns: 2_000_000_000_000_000_000,
            stamp: stamp(mtime_ns),
        }
    }

    /// The stamp of a file last changed at `ctime_ns`, on inode 7 of device 1.
    fn stamp(ctime_ns: i64) -> Stamp {
        Stamp {
            ctime_ns,
            inode: 7,
            device: 1,
        }
    }

    fn row(path: &str, size: u64, mtime_ns: i64, hash: &str) -> FileRow {
        FileRow {
            path: path.into(),
            kind: EntryKind::File,
            size,
            mtime_ns,
            mode: 0o644,
            blake3: hash.into(),
            etag: format!("etag-{path}"),
            version_id: None,
            uploaded_at: 2_000_000_000,
            checked_ns: 2_000_000_000_000_000_000,
            stamp: Some(stamp(mtime_ns)),
        }
    }

    fn state(rows: &[FileRow]) -> Vec<FileRow> {
        let mut rows = rows.to_vec();
        rows.sort_by(|a, b| a.path.cmp(&b.path));
        rows
    }

    /// Sorts entries in the walk's order: a directory sorts as `path/`.
    fn walk_order(entries: &mut [ScanEntry]) {
        entries.sort_by_key(|e| match e.kind {
            EntryKind::Dir => format!("{}/", e.path),
            _ => e.path.clone(),
        });
    }

    /// Merges like a backup does: entries in walk order, rows sorted, no dir rows.
    fn triage(entries: Vec<ScanEntry>, rows: &[FileRow]) -> Triage {
        let mut entries = entries;
        walk_order(&mut entries);
        super::triage(entries, rows.to_vec(), HashMap::new())
    }

    /// Content lookup over the rows, as the state database answers it.
    fn holders(rows: &[FileRow]) -> impl FnMut(&str, u64) -> Vec<FileRow> + '_ {
        |hash, size| {
            rows.iter()
                .filter(|r| r.blake3 == hash && r.size == size)
                .cloned()
                .collect()
        }
    }

    /// What each path holds now, as the walk found it: a changed file as
    /// its entry, a vanished one gone, an unchanged one as its row (the
    /// triage found its stat equal to the row's).
    fn decide(t: Triage, hashes: &HashMap<String, String>, rows: &[FileRow], delete: bool) -> Plan {
        let changed: HashMap<String, PathNow> = t
            .to_hash
            .iter()
            .map(|(e, _)| e)
            .chain(t.mode_only.iter().map(|(e, _)| e))
            .map(|e| {
                let now = PathNow::File {
                    size: e.size,
                    mtime_ns: e.mtime_ns,
                    stamp: e.stamp,
                };
                (e.path.clone(), now)
            })
            .collect();
        let gone: std::collections::HashSet<String> = t.vanished.iter().map(|r| r.path.clone()).collect();
        let now = |path: &str| match changed.get(path) {
            Some(now) => *now,
            None if gone.contains(path) => PathNow::Gone,
            None => rows
                .iter()
                .find(|r| r.path == path)
                .and_then(|r| {
                    r.stamp.map(|stamp| PathNow::File {
                        size: r.size,
                        mtime_ns: r.mtime_ns,
                        stamp,
                    })
                })
                .unwrap_or(PathNow::Other),
        };
        super::decide(t, hashes, holders(rows), now, delete)
    }

    fn hashes(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(p, h)| (p.to_string(), h.to_string()))
            .collect()
    }

    fn describe(plan: &Plan) -> Vec<String> {
        plan.transfers
            .iter()
            .chain(&plan.deletes)
            .map(Action::describe)
            .collect()
    }

    #[test]
    fn unchanged_tree_needs_no_hashing_and_no_actions() {
        let st = state(&[row("a", 1, 10, "h1"), row("b/c", 2, 20, "h2")]);
        let t = triage(vec![file("a", 1, 10), file("b/c", 2, 20)], &st);
        assert_eq!((t.unchanged, t.to_hash.len(), t.vanished.len()), (2, 0, 0));
        let plan = decide(t, &HashMap::new(), &st, true);
        assert!(describe(&plan).is_empty());
    }

    #[test]
    fn new_and_modified_files_are_uploaded() {
        let st = state(&[row("a", 1, 10, "h1")]);
        let t = triage(vec![file("a", 2, 11), file("new", 3, 5)], &st);
        assert_eq!(t.to_hash.len(), 2);
        let plan = decide(t, &hashes(&[("a", "h9"), ("new", "h3")]), &st, false);
        assert_eq!(describe(&plan), ["upload a", "upload new"]);
    }

    #[test]
    fn racily_clean_rows_are_hashed_again_and_only_refreshed() {
        // Whole-second mtime (a coarse file system), recorded within 2 s of
        // it: a write in that second could have kept size and mtime.
        let mut racy = row("a", 1, 1_700_000_000_000_000_000, "h1");
        racy.checked_ns = 1_700_000_001_500_000_000;
        let st = state(&[racy.clone()]);
        let t = triage(vec![file("a", 1, racy.mtime_ns)], &st);
        assert_eq!((t.unchanged, t.to_hash.len()), (0, 1));
        let plan = decide(t, &hashes(&[("a", "h1")]), &st, false);
        assert!(describe(&plan).is_empty());
        assert_eq!((plan.unchanged, plan.refresh.len()), (1, 1));
        // Different bytes under the same size and mtime are caught.
        let t = triage(vec![file("a", 1, racy.mtime_ns)], &st);
        assert_eq!(
            describe(&decide(t, &hashes(&[("a", "h2")]), &st, false)),
            ["upload a"]
        );
        // Recorded long after the mtime: trusted.
        racy.checked_ns = 1_700_000_100_000_000_000;
        let st = state(&[racy.clone()]);
        assert_eq!(triage(vec![file("a", 1, racy.mtime_ns)], &st).unchanged, 1);
        // Sub-second mtime (a fine file system): racy within 100 ms only.
        let mut fine = row("a", 1, 1_700_000_000_500_000_000, "h1");
        fine.checked_ns = fine.mtime_ns + 50_000_000;
        let st = state(&[fine.clone()]);
        assert_eq!(triage(vec![file("a", 1, fine.mtime_ns)], &st).to_hash.len(), 1);
        fine.checked_ns = fine.mtime_ns + 300_000_000;
        let st = state(&[fine.clone()]);
        assert_eq!(triage(vec![file("a", 1, fine.mtime_ns)], &st).unchanged, 1);
    }

    #[test]
    fn a_new_change_time_inode_or_device_is_hashed_and_the_hash_decides() {
        let st = state(&[row("a", 1, 10, "h1")]);
        let mut changes = Vec::new();
        for change in [
            |s: &mut Stamp| s.ctime_ns += 1,
            |s: &mut Stamp| s.inode += 1,
            |s: &mut Stamp| s.device += 1,
        ] {
            let mut entry = file("a", 1, 10);
            change(&mut entry.stamp);
            changes.push(entry);
        }
        for entry in changes {
            // Same size and mtime (put back by `touch -r`, `tar -x`, …).
            let t = triage(vec![entry.clone()], &st);
            assert_eq!((t.unchanged, t.to_hash.len()), (0, 1), "{:?}", entry.stamp);
            // New bytes are sent; the same bytes only refresh the row.
            let plan = decide(t, &hashes(&[("a", "h2")]), &st, false);
            assert_eq!(describe(&plan), ["upload a"]);
            let plan = decide(
                triage(vec![entry.clone()], &st),
                &hashes(&[("a", "h1")]),
                &st,
                false,
            );
            assert!(describe(&plan).is_empty());
            assert_eq!(
                plan.refresh[0].stamp,
                Some(entry.stamp),
                "the row takes the new stamp"
            );
        }
    }

    #[test]
    fn rows_without_a_stamp_and_rehash_runs_trust_no_stat() {
        let mut unknown = row("a", 1, 10, "h1");
        unknown.stamp = None;
        let t = triage(vec![file("a", 1, 10)], &state(&[unknown]));
        assert_eq!((t.unchanged, t.to_hash.len()), (0, 1));

        let st = state(&[row("a", 1, 10, "h1")]);
        let mut hashed = 0;
        let t = super::triage_with(vec![file("a", 1, 10)], st, HashMap::new(), true, |_| hashed += 1);
        assert_eq!((t.unchanged, hashed), (0, 1));
    }

    #[test]
    fn a_recent_change_time_makes_a_row_racy() {
        // mtime put back long before, but the change happened just before
        // the file was seen: a second write could keep both.
        let mut r = row("a", 1, 1_600_000_000_500_000_000, "h1");
        r.checked_ns = 1_700_000_000_000_000_000;
        r.stamp = Some(stamp(r.checked_ns - 10_000_000));
        assert!(is_racy(&r));
        r.stamp = Some(stamp(r.checked_ns - 1_000_000_000));
        assert!(!is_racy(&r));
    }

    #[test]
    fn touched_file_with_same_bytes_is_not_uploaded() {
        let st = state(&[row("a", 1, 10, "h1")]);
        let t = triage(vec![file("a", 1, 99)], &st);
        let plan = decide(t, &hashes(&[("a", "h1")]), &st, false);
        assert_eq!(describe(&plan), ["touch a"]);
    }

    #[test]
    fn mode_change_alone_is_a_touch_without_hashing() {
        let st = state(&[row("a", 1, 10, "h1")]);
        let mut entry = file("a", 1, 10);
        entry.mode = 0o600;
        let t = triage(vec![entry], &st);
        assert!(t.to_hash.is_empty());
        assert_eq!(describe(&decide(t, &HashMap::new(), &st, false)), ["touch a"]);
    }

    #[test]
    fn rename_is_a_copy_and_the_old_path_is_deleted_only_on_request() {
        let st = state(&[row("old", 5, 10, "h5")]);
        let t = triage(vec![file("new", 5, 10)], &st);
        assert_eq!(t.vanished.len(), 1);
        let plan = decide(t, &hashes(&[("new", "h5")]), &st, false);
        assert_eq!(describe(&plan), ["copy old -> new"]);

        let t = triage(vec![file("new", 5, 10)], &st);
        let plan = decide(t, &hashes(&[("new", "h5")]), &st, true);
        assert_eq!(describe(&plan), ["copy old -> new", "delete old"]);
    }

    /// The rule a backup runs (`backup::copy_source` stats each candidate
    /// and asks this): gone or exactly as recorded, not racy, with a stamp.
    #[test]
    fn a_copy_source_is_gone_or_exactly_as_its_row_says() {
        let r = row("a", 5, 10, "h5");
        let as_recorded = PathNow::File {
            size: 5,
            mtime_ns: 10,
            stamp: stamp(10),
        };
        let pick = |row: &FileRow, now: PathNow| copy_source([row.clone()], |_| now).map(|c| c.path);
        assert_eq!(pick(&r, PathNow::Gone), Some("a".into()));
        assert_eq!(pick(&r, as_recorded), Some("a".into()));
        let etag = copy_source([r.clone()], |_| PathNow::Gone).map(|c| c.etag);
        assert_eq!(
            etag.as_deref(),
            Some("etag-a"),
            "the row's ETag is the copy's condition"
        );
        for changed in [
            PathNow::File {
                size: 6,
                mtime_ns: 10,
                stamp: stamp(10),
            },
            PathNow::File {
                size: 5,
                mtime_ns: 11,
                stamp: stamp(10),
            },
            // Rewritten with its mtime put back: the change time moved.
            PathNow::File {
                size: 5,
                mtime_ns: 10,
                stamp: stamp(12),
            },
            PathNow::Other,
        ] {
            assert_eq!(pick(&r, changed), None, "{changed:?}");
        }
        // A row rebuilt from a manifest has no stamp: not a source until hashed.
        let rebuilt = FileRow {
            stamp: None,
            ..r.clone()
        };
        assert_eq!(pick(&rebuilt, as_recorded), None);
        // A racy row (seen right after its mtime) vouches for nothing.
        let racy = FileRow {
            checked_ns: 10 + 1,
            ..r.clone()
        };
        assert_eq!(pick(&racy, as_recorded), None);
        // The first row that qualifies wins.
        let other = row("b", 5, 10, "h5");
        let first = copy_source([r.clone(), other], |p| {
            if p == "a" { PathNow::Other } else { PathNow::Gone }
        });
        assert_eq!(first.map(|c| c.path).as_deref(), Some("b"));
    }

    #[test]
    fn duplicate_of_unchanged_file_is_copied() {
        let st = state(&[row("a", 5, 10, "h5")]);
        let t = triage(vec![file("a", 5, 10), file("dup", 5, 77)], &st);
        let plan = decide(t, &hashes(&[("dup", "h5")]), &st, false);
        assert_eq!(describe(&plan), ["copy a -> dup"]);
    }

    #[test]
    fn never_copies_from_a_path_rewritten_in_the_same_run() {
        // a's old content moved to b while a got new content: copying from
        // a's key could race with a's upload, so b is uploaded.
        let st = state(&[row("a", 5, 10, "old")]);
        let t = triage(vec![file("a", 6, 11), file("b", 5, 10)], &st);
        let plan = decide(t, &hashes(&[("a", "new"), ("b", "old")]), &st, false);
        assert_eq!(describe(&plan), ["upload a", "upload b"]);
    }

    #[test]
    fn unreadable_directories_are_not_deleted() {
        let st = state(&[
            row("locked/a", 1, 1, "h"),
            row("lockedness", 1, 1, "h2"),
            row("gone", 1, 1, "h3"),
        ]);
        let mut t = triage(vec![], &st);
        t.protect(&["locked".to_string()]);
        let plan = decide(t, &HashMap::new(), &st, true);
        assert_eq!(describe(&plan), ["delete gone", "delete lockedness"]);
    }

    #[test]
    fn unreadable_files_are_left_out() {
        let st = state(&[]);
        let t = triage(vec![file("gone", 1, 1)], &st);
        let plan = decide(t, &HashMap::new(), &st, false);
        assert!(describe(&plan).is_empty());
    }

    fn dir(path: &str) -> ScanEntry {
        ScanEntry {
            path: path.into(),
            kind: EntryKind::Dir,
            size: 0,
            mtime_ns: 1,
            mode: 0o755,
            seen_ns: 0,
            stamp: Stamp::default(),
        }
    }

    fn dir_row(path: &str) -> FileRow {
        FileRow {
            kind: EntryKind::Dir,
            size: 0,
            mtime_ns: 1,
            mode: 0o755,
            blake3: String::new(),
            etag: String::new(),
            ..row(path, 0, 1, "")
        }
    }

    /// Runs the merge the backup runs, over entries in walk order (a
    /// directory sorting as `path/`), and lists what it hands on, in order.
    fn merge(entries: Vec<ScanEntry>, rows: &[FileRow]) -> (Vec<String>, Triage) {
        let mut entries = entries;
        walk_order(&mut entries);
        let (dirs, files): (Vec<FileRow>, Vec<FileRow>) =
            state(rows).into_iter().partition(|r| r.kind == EntryKind::Dir);
        let dirs = dirs.into_iter().map(|r| (r.path.clone(), r)).collect();
        let mut seen = Vec::new();
        let t = super::triage_with(entries, files, dirs, false, |f| {
            seen.push(match f {
                Found::Changed(e, _) => format!("hash {}", e.path),
                Found::Replaced(r) => format!("replace {}", r.path),
            })
        });
        (seen, t)
    }

    #[test]
    fn a_file_that_became_a_directory_is_replaced_before_anything_under_it() {
        // Names sorting between "f" and "f/" ("f.txt", "f-1") come in between.
        let st = [
            row("f", 1, 10, "h1"),
            row("f.txt", 2, 20, "h2"),
            row("f-1", 3, 30, "h3"),
        ];
        let (seen, t) = merge(
            vec![
                file("f.txt", 2, 20),
                file("f-1", 3, 30),
                dir("f"),
                file("f/inner", 4, 40),
            ],
            &st,
        );
        assert_eq!(seen, ["replace f", "hash f/inner"]);
        assert!(t.vanished.is_empty(), "{:?}", t.vanished);
        assert_eq!(t.dirs, [dir("f")]);
        assert_eq!(t.unchanged, 2);

        // An empty directory replaces it too; a symlink is replaced the same way.
        let mut link = row("l", 5, 10, "h5");
        link.kind = EntryKind::Symlink;
        let (seen, t) = merge(vec![dir("f"), dir("l")], &[row("f", 1, 10, "h1"), link]);
        assert_eq!(seen, ["replace f", "replace l"]);
        assert!(t.vanished.is_empty());
    }

    #[test]
    fn a_directory_that_became_a_file_is_replaced_before_the_file_is_handed_on() {
        let st = [
            dir_row("d"),
            dir_row("d/sub"),
            row("d/sub/y", 1, 10, "h1"),
            row("d/x", 2, 20, "h2"),
            row("d-old", 3, 30, "h3"),
            row("d.txt", 4, 40, "h4"),
            row("e", 5, 50, "h5"),
        ];
        let (seen, t) = merge(
            vec![
                file("d", 6, 60),
                file("d-old", 3, 30),
                file("d.txt", 4, 40),
                file("e", 5, 50),
            ],
            &st,
        );
        assert_eq!(
            seen,
            [
                "replace d",
                "replace d/sub",
                "replace d/sub/y",
                "replace d/x",
                "hash d"
            ]
        );
        assert!(t.vanished.is_empty(), "{:?}", t.vanished);
        assert_eq!(t.unchanged, 3);
    }

    #[test]
    fn rows_left_under_an_unchanged_file_are_replaced_and_plain_deletions_are_not() {
        // Objects an older version left under a file's name (its old
        // directory) go, even though the file itself is unchanged; a file
        // that is simply gone (or renamed beside it) only vanishes.
        let st = [
            row("a", 1, 10, "h1"),
            row("a/old", 2, 20, "h2"),
            row("gone", 3, 30, "h3"),
        ];
        let (seen, t) = merge(vec![file("a", 1, 10), file("gone.txt", 3, 30)], &st);
        assert_eq!(seen, ["replace a/old", "hash gone.txt"]);
        assert_eq!(
            t.vanished.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
            ["gone"]
        );

        // A directory with its name prefixed is not under it.
        let (seen, t) = merge(vec![dir("ab"), file("ab/c", 1, 10)], &[row("a", 1, 10, "h1")]);
        assert_eq!(seen, ["hash ab/c"]);
        assert_eq!(t.vanished.len(), 1);
    }

    #[test]
    fn the_plan_deletes_replaced_objects_first_whether_or_not_delete_is_asked() {
        let st = [row("f", 1, 10, "h1")];
        let t = triage(vec![dir("f"), file("f/inner", 4, 40)], &st);
        let plan = decide(t, &hashes(&[("f/inner", "h4")]), &st, false);
        let replaces: Vec<String> = plan.replaces.iter().map(Action::describe).collect();
        assert_eq!(replaces, ["delete f"]);
        assert_eq!(describe(&plan), ["upload f/inner"]);
    }

    #[test]
    fn overlapping_paths() {
        assert!(overlaps("a", "a") && overlaps("a/x", "a") && overlaps("a", "a/x"));
        assert!(!overlaps("ab", "a") && !overlaps("a.txt", "a") && !overlaps("b/a", "a"));
    }

    #[test]
    fn directories_are_tracked_without_remote_actions() {
        let dir = ScanEntry {
            path: "d".into(),
            kind: EntryKind::Dir,
            size: 0,
            mtime_ns: 1,
            mode: 0o755,
            seen_ns: 0,
            stamp: Stamp::default(),
        };
        let t = super::triage(vec![dir.clone()], vec![], HashMap::new());
        assert_eq!(t.dirs, [dir]);
        assert!(t.to_hash.is_empty());
    }
}
