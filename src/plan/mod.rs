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
//! Pure functions, and the ones the backup runs (`backup/`), chunk by
//! chunk while the walk goes on; the unit tests below and the `plan_100k`
//! bench run the same ones. Three steps, because hashing sits between the
//! first two: [`triage`] merges the walk with the state by size, mtime and
//! change stamp (no reads), handing on files to hash as it finds them;
//! once a chunk of them is hashed, [`decide`] picks for each: same content
//! as its row → *touch* (metadata only), content the bucket already holds
//! under another unchanged or vanished path ([`copy_source`]) →
//! server-side *copy*, else *upload*; when the walk is over,
//! [`Triage::into_rest`] gives the directories' rows, mode-only touches
//! and, when asked, the *deletions* of paths gone locally. Copy sources are never paths rewritten in the same run, so a
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

pub mod guard;
mod merge;

pub use merge::triage;

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
    /// Directories that are new or changed (state only; no remote object).
    pub dirs: Vec<ScanEntry>,
    /// Rows whose path no longer exists locally.
    pub vanished: Vec<FileRow>,
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

    /// What is left once the walk is over and every file it handed on is
    /// done: the directories whose rows change, a touch for each file whose
    /// mode alone changed, and, with `delete`, a deletion for each vanished
    /// row (in path order), to run after everything else.
    pub fn into_rest(self, delete: bool) -> Rest {
        let touches = self
            .mode_only
            .into_iter()
            .map(|(entry, old)| Action::Touch { entry, old })
            .collect();
        let deletes = if delete {
            self.vanished.into_iter().map(Action::Delete).collect()
        } else {
            Vec::new()
        };
        Rest {
            dirs: self.dirs,
            touches,
            deletes,
        }
    }
}

/// The end of a backup's plan ([`Triage::into_rest`]).
#[derive(Debug, Default)]
pub struct Rest {
    /// Directories whose rows change (no remote object).
    pub dirs: Vec<ScanEntry>,
    /// Metadata refreshes of files whose mode alone changed.
    pub touches: Vec<Action>,
    /// Deletions of objects whose path is gone locally (`--delete`).
    pub deletes: Vec<Action>,
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

/// What to do with one hashed file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
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
fn decide_file(
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

/// What [`decide`] chose for a chunk of hashed files.
#[derive(Debug, Default)]
pub struct Decided {
    /// Remote operations, in the order of the files.
    pub actions: Vec<Action>,
    /// Rows of files found unchanged after a re-hash (their rows were
    /// racy): only the row is rewritten, with its new check time, so it
    /// stops being racy; nothing is sent.
    pub refresh: Vec<FileRow>,
}

/// Content this run confirmed the bucket holds, by (blake3, size): the
/// objects of files a run hashed again and found unchanged ([`decide`]'s
/// refreshed rows). Their rows in the state may still be racy (written
/// back with their chunk, or racy still: an mtime in the future), so the
/// state's lookup passes them over; yet the run just read those bytes and
/// leaves the objects as they are, so they are copy sources for the rest
/// of the run. One entry per refreshed file (racy rows are few).
#[derive(Debug, Default)]
pub struct Confirmed(std::collections::HashMap<(String, u64), CopySource>);

impl Confirmed {
    /// A copy source for `blake3` and `size` this run confirmed, if any.
    pub fn get(&self, blake3: &str, size: u64) -> Option<CopySource> {
        self.0.get(&(blake3.to_string(), size)).cloned()
    }

    /// Remembers that `row`'s object holds its content (the first one wins).
    fn add(&mut self, row: &FileRow) {
        self.0
            .entry((row.blake3.clone(), row.size))
            .or_insert_with(|| CopySource {
                path: row.path.clone(),
                etag: row.etag.clone(),
            });
    }
}

/// Decides for each hashed file, as the backup does chunk by chunk while
/// the walk goes on: `decide_file` with, as the copy source, content this
/// run `confirmed` (files found unchanged by their hash, this chunk's
/// included, see [`Confirmed`]), else `copy_source(blake3, size)` naming
/// an object the bucket holds those bytes under (the backup asks
/// [`copy_source`] about the state's rows, each path statted now).
pub fn decide(
    hashed: impl IntoIterator<Item = (ScanEntry, Option<FileRow>, Hashed)>,
    confirmed: &mut Confirmed,
    mut copy_source: impl FnMut(&str, u64) -> Option<CopySource>,
) -> Decided {
    let mut decided = Decided::default();
    for (entry, old, hashed) in hashed {
        let lookup = |hash: &str, size: u64| confirmed.get(hash, size).or_else(|| copy_source(hash, size));
        match decide_file(entry, old, hashed, lookup) {
            Decision::Refresh(row) => {
                confirmed.add(&row);
                decided.refresh.push(row);
            }
            Decision::Act(action) => decided.actions.push(action),
        }
    }
    decided
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

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
            checksum: None,
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

    /// What the merge found: the [`Triage`] it returns, and what it
    /// handed on while it ran (files to hash, rows to replace), in order.
    struct Triaged {
        triage: Triage,
        to_hash: Vec<(ScanEntry, Option<FileRow>)>,
        replaced: Vec<FileRow>,
    }

    impl std::ops::Deref for Triaged {
        type Target = Triage;
        fn deref(&self) -> &Triage {
            &self.triage
        }
    }

    impl std::ops::DerefMut for Triaged {
        fn deref_mut(&mut self) -> &mut Triage {
            &mut self.triage
        }
    }

    /// Merges like a backup does: entries in walk order, rows sorted, no dir rows.
    fn triage(entries: Vec<ScanEntry>, rows: &[FileRow]) -> Triaged {
        let mut entries = entries;
        walk_order(&mut entries);
        collect(entries, rows.to_vec(), HashMap::new(), false)
    }

    /// Runs [`super::triage`], collecting what it hands on.
    fn collect(
        entries: Vec<ScanEntry>,
        file_rows: Vec<FileRow>,
        dir_rows: HashMap<String, FileRow>,
        rehash: bool,
    ) -> Triaged {
        let (mut to_hash, mut replaced) = (Vec::new(), Vec::new());
        let triage = super::triage(entries, file_rows, dir_rows, rehash, |f| match f {
            Found::Changed(e, old) => to_hash.push((e, old)),
            Found::Replaced(row) => replaced.push(row),
        });
        Triaged {
            triage,
            to_hash,
            replaced,
        }
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

    /// A whole backup's plan, put together from the functions the backup
    /// runs, in the order it runs them (here all at once, there chunk by chunk).
    #[derive(Debug, Default)]
    struct Plan {
        /// Deletions of objects whose path changed type, first.
        replaces: Vec<Action>,
        /// Uploads, copies and touches, in path order.
        transfers: Vec<Action>,
        /// Deletions, last.
        deletes: Vec<Action>,
        /// Rows refreshed without sending anything.
        refresh: Vec<FileRow>,
        /// Files with nothing to do.
        unchanged: u64,
    }

    /// Plans as a backup does once the files are hashed (`hashes`: path →
    /// blake3; a file missing from it could not be read and is left out),
    /// with the copy-source rule asked about `rows`. What each path holds
    /// now, as the walk found it: a changed file as its entry, a vanished
    /// one gone, an unchanged one as its row (the triage found its stat
    /// equal to the row's).
    fn decide(t: Triaged, hashes: &HashMap<String, String>, rows: &[FileRow], delete: bool) -> Plan {
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
        let mut now = |path: &str| match changed.get(path) {
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
        let mut holders = holders(rows);
        let Triaged {
            triage,
            to_hash,
            replaced,
        } = t;
        let hashed = to_hash.into_iter().filter_map(|(entry, old)| {
            let blake3 = hashes.get(&entry.path)?.clone();
            let bodies = BodyDigests::default();
            Some((entry, old, Hashed { blake3, bodies }))
        });
        let decided = super::decide(hashed, &mut Confirmed::default(), |hash, size| {
            copy_source(holders(hash, size), &mut now)
        });
        let unchanged = triage.unchanged + decided.refresh.len() as u64;
        let rest = triage.into_rest(delete);
        let mut transfers = rest.touches;
        transfers.extend(decided.actions);
        transfers.sort_by(|a, b| a.path().cmp(b.path()));
        Plan {
            replaces: replaced.into_iter().map(Action::Delete).collect(),
            transfers,
            deletes: rest.deletes,
            refresh: decided.refresh,
            unchanged,
        }
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
        let t = super::triage(vec![file("a", 1, 10)], st, HashMap::new(), true, |_| hashed += 1);
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

    /// The rule a backup runs (`backup/apply.rs` stats each candidate
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
        let t = super::triage(entries, files, dirs, false, |f| {
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
        let t = collect(vec![dir.clone()], vec![], HashMap::new(), false);
        assert_eq!(t.dirs, [dir]);
        assert!(t.to_hash.is_empty());
    }

    /// A file found unchanged by its hash (its row racy) is a copy source
    /// for a duplicate later in the same chunk, before the state's lookup
    /// (which finds nothing: the row is racy until the chunk is written).
    #[test]
    fn a_file_confirmed_by_its_hash_is_a_copy_source_in_its_own_chunk() {
        let racy = FileRow {
            checked_ns: 1_000,
            ..row("a", 3, 1_000, "h1")
        };
        let hashed = |blake3: &str| Hashed {
            blake3: blake3.into(),
            bodies: BodyDigests::default(),
        };
        let chunk = vec![
            (file("a", 3, 1_000), Some(racy), hashed("h1")),
            (file("z", 3, 5_000), None, hashed("h1")),
        ];
        let mut confirmed = Confirmed::default();
        let decided = super::decide(chunk, &mut confirmed, |_, _| None);
        assert_eq!(decided.refresh.len(), 1);
        assert_eq!(
            decided.actions.iter().map(Action::describe).collect::<Vec<_>>(),
            ["copy a -> z"]
        );
        assert_eq!(confirmed.get("h1", 3).map(|c| c.path), Some("a".to_string()));
    }
}
