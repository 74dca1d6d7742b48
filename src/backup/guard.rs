//! The delete guard and the change tripwire, before a run changes anything
//! (issue 16; the decisions are [`crate::plan::guard`]'s).
//!
//! A set with rows (the only kind a run could delete from or replace in)
//! is walked to the end before the first change: the walk's chunks are
//! held, not carried out, so what the run would delete (`--delete`: the
//! rows gone locally, less what the filters spare) and replace (files
//! whose new content would go over an object of the set) is known in full.
//! Only if [`crate::plan::guard::Guard::judge`] lets it go ahead are the held chunks handed to
//! the apply stage, in the order the walk produced them, and the run goes
//! on as usual. A first backup (no rows) streams as before.
//!
//! Replacements are judged by content, not by stat: a file whose size or
//! mtime changed is only a candidate. While the candidates are at most the
//! limit nothing more is read (the usual hashing follows, once); past it,
//! the held chunks are hashed now (CPU only, nothing sent) and kept hashed
//! for the apply stage, so no file is read twice, and a candidate counts
//! only if its blake3 differs from its row's (a `touch` over the tree, a
//! restored copy, is no replacement). A type change counts as one.
//!
//! Memory: what is held is bounded by [`HOLD`] files. A walk that finds
//! more changed files than that (a large tree added to a set) goes on
//! counting only the candidates (each has a row, so they are bounded by
//! the set), and the run walks again, streaming, once the guard is passed.
//!
//! Deletes a killed run left under way (the state's `deleting` table, see
//! `deleting`) are not counted: their rows already left the set, and
//! finishing them carries out a decision a past run took and the guard
//! then passed.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use super::hash::{self, HashedFile};
use super::open::Opened;
use super::spare;
use super::triage::{Chunk, Walk, WalkOutcome};
use super::{BackupError, BackupOptions};
use crate::fs::scan::ScanEntry;
use crate::plan::guard::Planned;
use crate::progress::Progress;
use crate::state::{FileRow, StateDb};

/// The most changed files the guard holds in memory before it falls back
/// to walking twice (see the module doc): 64 of the walk's chunks.
const HOLD: usize = 64 * super::triage::CHUNK;

/// A chunk the guard held back, as the apply stage takes it.
pub(super) enum Held {
    /// As the walk handed it on: hashed by the usual stage.
    Raw(Chunk),
    /// Already hashed by the guard.
    Hashed {
        /// Rows whose path changed type.
        replaced: Vec<FileRow>,
        /// The chunk's files, read.
        files: Vec<HashedFile>,
    },
}

/// What the guard leaves for the run once it let it go ahead.
pub(super) enum Gathered {
    /// The whole walk: its chunks, in order, and what it found beyond them.
    All(Vec<Held>, Box<WalkOutcome>),
    /// Too much to hold: the run walks again.
    WalkAgain,
}

/// The device SOURCE's root is on, as the state records it (decimal text
/// of the Unix `st_dev` or the Windows volume serial number).
pub(super) fn device_of(opened: &Opened) -> Option<String> {
    crate::fs::own::id_of(&opened.source).map(|(device, _)| device.to_string())
}

/// Walks the set's source to the end, holding what it finds, and judges
/// the run by `opts.guard` (see the module doc). `scanned` counts the
/// files found, as the walk goes.
///
/// # Errors
/// [`BackupError::Refused`] when the guard refuses the run (nothing was
/// changed); [`BackupError::Interrupted`] when the run was cancelled; the
/// walk's and the state's errors.
pub(super) async fn gather(
    opts: &BackupOptions,
    opened: &Opened,
    db: &StateDb,
    progress: Arc<dyn Progress>,
    scanned: Arc<AtomicU64>,
) -> Result<Gathered, BackupError> {
    let mut walk = Walk::start(opts, opened, progress.clone(), scanned);
    let Found {
        mut held,
        overflow,
        candidates,
        mut type_changed,
        mut replaced,
    } = hold(&mut walk).await;
    let mut walked = walk.finish().await?;
    opts.cancel.check()?;
    // Every content row of the set went one way in the merge (unchanged,
    // mode only, changed, type changed, gone): their sum is the set's size
    // before the run, without a count over the state (3% of a 1%-changed run).
    let t = &walked.triage;
    let gone = t.vanished.iter().filter(|r| r.kind.has_content()).count();
    let set_files = (t.unchanged as usize
        + t.mode_only.len()
        + candidates.len()
        + type_changed.len()
        + replaced.len()
        + gone) as u64;
    debug_assert_eq!(Some(set_files), db.totals(opened.set_id).ok().map(|(n, _)| n));
    let spared = super::finish::settle_vanished(opts, opened, &mut walked).await;
    walked.spared = Some(spared);
    let found = walked.scanned;
    let mut deletes: Vec<&FileRow> = if opts.delete {
        walked
            .triage
            .vanished
            .iter()
            .filter(|r| r.kind.has_content())
            .collect()
    } else {
        Vec::new()
    };
    let touched = candidates.len() + type_changed.len() + replaced.len();
    // Nothing to delete or replace (an unchanged run): nothing to judge, no more reads.
    if deletes.is_empty() && touched == 0 {
        return Ok(if overflow {
            Gathered::WalkAgain
        } else {
            Gathered::All(held, Box::new(walked))
        });
    }
    let was = db.source_device(opened.set_id)?;
    let may_trip = opts.guard.max_change.exceeded(touched as u64, set_files);
    if may_trip {
        // Objects of type-changed paths a filter leaves out are kept, not replaced (`apply::replace`).
        let store = &*opened.store;
        spare::spare_filtered(
            &mut replaced,
            &opened.source,
            &opts.walk,
            store,
            opts.target.prefix(),
            opts.jobs,
        )
        .await;
    }
    type_changed.extend(replaced.into_iter().map(|r| r.path));
    // Too many deletes: a gone row whose content is at a new path was moved
    // (renamed), and the run copies it before deleting: no loss, no count.
    // Judged by content (the held files hashed once, for the run too), never
    // by size and mtime, which a rewrite can keep.
    let many_deletes = opts.guard.max_delete.exceeded(deletes.len() as u64, set_files);
    let hashed = !overflow && (may_trip || many_deletes);
    if hashed {
        held = hash_held(opts, opened, held, &progress).await?;
    }
    if many_deletes && hashed {
        let moved = new_content(&held);
        deletes.retain(|r| !moved.contains(r.blake3.as_str()));
    }
    let mut planned = Planned {
        set_files,
        found,
        device_changed: was.is_some_and(|w| device_of(opened).is_some_and(|now| now != w)),
        deletes: deletes.iter().map(|r| r.path.as_str()).collect(),
        replaces: type_changed.iter().map(String::as_str).collect(),
    };
    let changed_content;
    if may_trip {
        changed_content = if overflow {
            changed_by_content(opts, opened, candidates, &progress).await?
        } else {
            changed_in(&held)
        };
        planned
            .replaces
            .extend(changed_content.iter().map(String::as_str));
    }
    let target = opts.target.canonical();
    opts.guard
        .judge(&planned)
        .map_err(|refusal| BackupError::Refused {
            target,
            refusal: Box::new(refusal),
        })?;
    if overflow {
        return Ok(Gathered::WalkAgain);
    }
    Ok(Gathered::All(held, Box::new(walked)))
}

/// The blake3 of every new path's content in the hashed chunks (files
/// the set did not hold at that path): a gone row with one of them was
/// moved or renamed. A file that could not be read has none.
fn new_content(held: &[Held]) -> std::collections::HashSet<&str> {
    held.iter()
        .flat_map(|h| match h {
            Held::Hashed { files, .. } => files.as_slice(),
            Held::Raw(_) => &[],
        })
        .filter(|(_, old, _)| old.is_none())
        .filter_map(|(_, _, hashed)| hashed.as_ref().ok().map(|h| h.blake3.as_str()))
        .collect()
}

/// What the walk handed on, as the guard keeps it.
struct Found {
    /// The chunks, in order (none once `overflow`).
    held: Vec<Held>,
    /// Whether there were too many changed files to hold ([`HOLD`]).
    overflow: bool,
    /// Files whose stat no longer vouches for their row (same kind), with it.
    candidates: Vec<(ScanEntry, FileRow)>,
    /// Paths of files and symlinks whose row had another kind with content.
    type_changed: Vec<String>,
    /// Rows with content whose path changed type (their objects are deleted first).
    replaced: Vec<FileRow>,
}

/// Takes the walk's chunks until it is over (see [`Found`]).
async fn hold(walk: &mut Walk) -> Found {
    let mut found = Found {
        held: Vec::new(),
        overflow: false,
        candidates: Vec::new(),
        type_changed: Vec::new(),
        replaced: Vec::new(),
    };
    let mut n_held = 0;
    while let Some(chunk) = walk.next_chunk().await {
        for (entry, old) in &chunk.changed {
            match old {
                Some(row) if row.kind != entry.kind && row.kind.has_content() => {
                    found.type_changed.push(entry.path.clone())
                }
                Some(row) if row.kind.has_content() => found.candidates.push((entry.clone(), row.clone())),
                _ => {}
            }
        }
        let replaced = chunk.replaced.iter().filter(|r| r.kind.has_content()).cloned();
        found.replaced.extend(replaced);
        n_held += chunk.changed.len();
        found.overflow |= n_held > HOLD;
        if found.overflow {
            found.held.clear();
        } else {
            found.held.push(Held::Raw(chunk));
        }
    }
    found
}

/// Hashes every held chunk (their files are read once, here, for the
/// apply stage too).
async fn hash_held(
    opts: &BackupOptions,
    opened: &Opened,
    held: Vec<Held>,
    progress: &Arc<dyn Progress>,
) -> Result<Vec<Held>, BackupError> {
    let mut hashed = Vec::with_capacity(held.len());
    for h in held {
        let Held::Raw(chunk) = h else {
            hashed.push(h);
            continue;
        };
        let cut = |size| hash::part_size(opts, size);
        let files = opts
            .cancel
            .run(hash::hash_chunk(
                &opened.source,
                chunk.changed,
                cut,
                opts.s3.write.checksum,
                &**progress,
            ))
            .await?;
        hashed.push(Held::Hashed {
            replaced: chunk.replaced,
            files,
        });
    }
    Ok(hashed)
}

/// The paths of hashed files whose content is not their row's (of the
/// same kind: a type change is counted apart).
fn changed_in(held: &[Held]) -> Vec<String> {
    held.iter()
        .flat_map(|h| match h {
            Held::Hashed { files, .. } => files.as_slice(),
            Held::Raw(_) => &[],
        })
        .filter(|(entry, old, hashed)| {
            old.as_ref().is_some_and(|row| {
                row.kind == entry.kind
                    && row.kind.has_content()
                    && hashed
                        .as_ref()
                        .is_ok_and(|h| h.blake3 != row.blake3 || row.size != entry.size)
            })
        })
        .map(|(entry, _, _)| entry.path.clone())
        .collect()
}

/// Hashes the candidates alone (too many files to hold, see the module
/// doc) and returns those whose content changed.
async fn changed_by_content(
    opts: &BackupOptions,
    opened: &Opened,
    candidates: Vec<(ScanEntry, FileRow)>,
    progress: &Arc<dyn Progress>,
) -> Result<Vec<String>, BackupError> {
    let mut changed = Vec::new();
    for part in candidates.chunks(super::triage::CHUNK) {
        // A changed size is a changed content: nothing to read.
        let (differ, same): (Vec<_>, Vec<_>) = part.iter().cloned().partition(|(e, r)| e.size != r.size);
        changed.extend(differ.into_iter().map(|(e, _)| e.path));
        let files = same.into_iter().map(|(e, r)| (e, Some(r))).collect();
        let cut = |size| hash::part_size(opts, size);
        let hashed = opts
            .cancel
            .run(hash::hash_chunk(
                &opened.source,
                files,
                cut,
                opts.s3.write.checksum,
                &**progress,
            ))
            .await?;
        changed.extend(changed_in(&[Held::Hashed {
            replaced: Vec::new(),
            files: hashed,
        }]));
    }
    Ok(changed)
}
