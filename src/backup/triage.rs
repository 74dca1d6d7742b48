//! Stage 2, the walk merged with the state: the tree is walked on a
//! blocking thread and merged in path order with a read-only snapshot of
//! the set's rows (its own connection) by [`plan::triage`], which hands on
//! files to hash and rows to replace as soon as it knows them. They come
//! over a bounded channel, in chunks of at most [`CHUNK`], so memory stays
//! bounded however large the tree; rows whose path changed type always
//! come before the entries they conflict with. What is left once the walk
//! is over (directories, mode-only changes, vanished rows, the problems
//! met) comes back from [`Walk::finish`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::open::Opened;
use super::{BackupError, BackupOptions};
use crate::fs::scan::{self, ScanEntry};
use crate::plan;
use crate::progress::Progress;
use crate::state::{FileRow, StateDb};
use crate::target::Target;

/// Files handed from the walk to hashing and transfers at a time: the
/// bound on how much of a large first backup is in memory at once.
pub(super) const CHUNK: usize = 2048;

/// A walk under way.
pub(super) struct Walk {
    rx: mpsc::Receiver<plan::Found>,
    walker: JoinHandle<Result<WalkOutcome, BackupError>>,
}

/// What the walk handed on since the last chunk, in walk order.
pub(super) struct Chunk {
    /// Files to hash, with their rows (if any).
    pub changed: Vec<(ScanEntry, Option<FileRow>)>,
    /// Rows whose path changed type: their objects go before anything in this chunk is written.
    pub replaced: Vec<FileRow>,
}

/// What one streaming pass over the tree and the state found, beyond the chunks.
pub(super) struct WalkOutcome {
    /// The merge's result: unchanged count, mode-only changes, directories, vanished rows.
    pub triage: plan::Triage,
    /// Files (and symlinks) found.
    pub scanned: u64,
    /// Special files, left out on purpose.
    pub skipped: Vec<scan::ScanProblem>,
    /// Paths left out by filters (a directory stands for its subtree).
    pub excluded: Vec<String>,
    /// How many of them each reason left out.
    pub excluded_by: crate::fs::leave_out::ExcludedBy,
    /// What could not be read.
    pub errors: Vec<scan::ScanProblem>,
    /// Set once `finish::settle_vanished` has run: the rows it spared.
    pub spared: Option<u64>,
}

impl Walk {
    /// Starts walking SOURCE on a blocking thread.
    /// `scanned` counts the files and symlinks found as the walk goes on
    /// (what an interrupted run records).
    pub(super) fn start(
        opts: &BackupOptions,
        opened: &Opened,
        progress: Arc<dyn Progress>,
        scanned: Arc<AtomicU64>,
    ) -> Walk {
        let (tx, rx) = mpsc::channel(CHUNK);
        let (root, state_path, set_id) = (opened.source.clone(), opened.state_path.clone(), opened.set_id);
        let mut walk_options = opts.walk.clone();
        // The real state file (also in a dry run) and the one in use.
        walk_options.own = crate::fs::own::OwnFiles::find(
            &[&opts.state_path, &state_path],
            match &opts.target {
                Target::Local { root } => Some(root.as_path()),
                Target::S3 { .. } => None,
            },
        );
        let (rehash, cancel, dry_run) = (opts.rehash, opts.cancel.clone(), opts.dry_run);
        let walker = tokio::task::spawn_blocking(move || {
            // A dry run may read a state file it cannot write (see `open`).
            let reader = if dry_run {
                StateDb::open_read_only(&state_path)?
            } else {
                StateDb::open_reader(&state_path)?
            };
            scan_and_triage(
                (&reader, set_id),
                &root,
                &walk_options,
                rehash,
                (&cancel, &scanned),
                |n| progress.scanned(n),
                |found| {
                    // The receiver only goes away when the run is failing anyway.
                    let _ = tx.blocking_send(found);
                },
            )
        });
        Walk { rx, walker }
    }

    /// The next chunk, once there is one; `None` when the walk is over.
    pub(super) async fn next_chunk(&mut self) -> Option<Chunk> {
        let mut found = Vec::with_capacity(CHUNK);
        if self.rx.recv_many(&mut found, CHUNK).await == 0 {
            return None;
        }
        let mut changed = Vec::with_capacity(found.len());
        let mut replaced = Vec::new();
        for f in found {
            match f {
                plan::Found::Changed(entry, old) => changed.push((entry, old)),
                plan::Found::Replaced(row) => replaced.push(row),
            }
        }
        Some(Chunk { changed, replaced })
    }

    /// What the walk found beyond its chunks, once it is over.
    ///
    /// # Errors
    /// [`BackupError::Walk`] if the walk's thread died; the source or state
    /// errors that stopped the walk.
    pub(super) async fn finish(self) -> Result<WalkOutcome, BackupError> {
        self.walker.await.map_err(BackupError::Walk)?
    }
}

/// Walks the source and merges it with the set's rows without holding
/// either whole; files to hash and rows to replace go to `found` as they
/// are found.
fn scan_and_triage(
    (db, set_id): (&StateDb, i64),
    root: &Path,
    walk_options: &scan::WalkOptions,
    rehash: bool,
    (cancel, found_so_far): (&crate::cancel::Cancel, &AtomicU64),
    tick: impl FnMut(usize),
    found: impl FnMut(plan::Found),
) -> Result<WalkOutcome, BackupError> {
    // A cancelled run stops walking (what it found is then not used).
    let walk = scan::walk_with(root, walk_options, tick)?.take_while(|_| !cancel.is_cancelled());
    let dir_rows = db.dir_rows(set_id)?;
    let (mut scanned, mut skipped, mut errors, mut excluded) = (0u64, Vec::new(), Vec::new(), Vec::new());
    let mut excluded_by = crate::fs::leave_out::ExcludedBy::default();
    let entries = walk.filter_map(|item| match item {
        scan::Walked::Excluded { path, reason, .. } => {
            excluded.push(path);
            excluded_by.add(reason);
            None
        }
        scan::Walked::Entry(e) => {
            if e.kind.has_content() {
                scanned += 1;
                found_so_far.store(scanned, Ordering::Relaxed);
            }
            Some(e)
        }
        scan::Walked::Skipped(p) => {
            skipped.push(p);
            None
        }
        scan::Walked::Error(p) => {
            errors.push(p);
            None
        }
    });
    let triage = db.with_file_rows(set_id, |rows| {
        plan::triage(entries, rows, dir_rows, rehash, found)
    })?;
    Ok(WalkOutcome {
        triage,
        scanned,
        skipped,
        errors,
        excluded,
        excluded_by,
        spared: None,
    })
}
