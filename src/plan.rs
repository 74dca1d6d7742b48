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

use std::collections::{HashMap, HashSet};

use crate::hash::{BodyDigests, Hashed};
use crate::scan::{EntryKind, ScanEntry};
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

/// Sorts the scan against the state without reading any file, in one
/// merged pass: `entries` yields files in byte order of their paths
/// (directories may come anywhere), `file_rows` yields the set's file rows
/// in the same order, and `dir_rows` holds its directory rows (few). Files
/// that need hashing go to `changed` as they are found, so a caller can
/// stream them on; everything else that needs work is returned. With
/// `rehash`, no stat is trusted: every file is hashed (`backup --rehash`,
/// for file systems whose change times can't be trusted).
pub fn triage_with(
    entries: impl IntoIterator<Item = ScanEntry>,
    file_rows: impl IntoIterator<Item = FileRow>,
    mut dir_rows: HashMap<String, FileRow>,
    rehash: bool,
    mut changed: impl FnMut(ScanEntry, Option<FileRow>),
) -> Triage {
    let mut triage = Triage::default();
    let mut rows = file_rows.into_iter().peekable();
    for entry in entries {
        if entry.kind == EntryKind::Dir {
            match dir_rows.remove(&entry.path) {
                Some(r) if r.mode == entry.mode && r.mtime_ns == entry.mtime_ns => {}
                _ => triage.dirs.push(entry),
            }
            continue;
        }
        while let Some(r) = rows.next_if(|r| r.path < entry.path) {
            triage.vanished.push(r);
        }
        match rows.next_if(|r| r.path == entry.path) {
            Some(r) if !rehash && stat_matches(&entry, &r) => {
                if r.mode == entry.mode || entry.kind == EntryKind::Symlink {
                    triage.unchanged += 1;
                } else {
                    triage.mode_only.push((entry, r));
                }
            }
            old => changed(entry, old),
        }
    }
    triage.vanished.extend(rows);
    triage.vanished.extend(dir_rows.into_values());
    triage.vanished.sort_by(|a, b| a.path.cmp(&b.path));
    triage
}

/// [`triage_with`], collecting the files to hash into `to_hash`.
pub fn triage(
    entries: impl IntoIterator<Item = ScanEntry>,
    file_rows: impl IntoIterator<Item = FileRow>,
    dir_rows: HashMap<String, FileRow>,
) -> Triage {
    let mut to_hash = Vec::new();
    let mut triage = triage_with(entries, file_rows, dir_rows, false, |e, old| {
        to_hash.push((e, old))
    });
    triage.to_hash = to_hash;
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

/// Chooses an action for every hashed file at once. `hashes` maps path →
/// blake3; a file missing from it could not be read and is left out (the
/// caller reports it). `holders(blake3, size)` names the paths whose rows
/// claim that content; paths rewritten by this run are never copy sources.
pub fn decide(
    triage: Triage,
    hashes: &HashMap<String, String>,
    mut holders: impl FnMut(&str, u64) -> Vec<String>,
    delete: bool,
) -> Plan {
    let rewritten: HashSet<String> = triage.to_hash.iter().map(|(e, _)| e.path.clone()).collect();
    let mut plan = Plan {
        unchanged: triage.unchanged,
        dirs: triage.dirs,
        ..Plan::default()
    };
    for (entry, old) in triage.mode_only {
        plan.transfers.push(Action::Touch { entry, old });
    }
    for (entry, old) in triage.to_hash {
        let Some(blake3) = hashes.get(&entry.path) else {
            continue;
        };
        let source = |hash: &str, size| {
            holders(hash, size)
                .into_iter()
                .find(|p| !rewritten.contains(p))
                .map(|path| CopySource {
                    path,
                    etag: String::new(),
                })
        };
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
    use crate::scan::Stamp;

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

    /// Merges like a backup does: files sorted, rows sorted, no dir rows.
    fn triage(entries: Vec<ScanEntry>, rows: &[FileRow]) -> Triage {
        let mut entries = entries;
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        super::triage(entries, rows.to_vec(), HashMap::new())
    }

    /// Content lookup over the rows, as the state database answers it.
    fn holders(rows: &[FileRow]) -> impl FnMut(&str, u64) -> Vec<String> + '_ {
        |hash, size| {
            rows.iter()
                .filter(|r| r.blake3 == hash && r.size == size)
                .map(|r| r.path.clone())
                .collect()
        }
    }

    fn decide(t: Triage, hashes: &HashMap<String, String>, rows: &[FileRow], delete: bool) -> Plan {
        super::decide(t, hashes, holders(rows), delete)
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
        let t = super::triage_with(vec![file("a", 1, 10)], st, HashMap::new(), true, |_, _| {
            hashed += 1
        });
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
