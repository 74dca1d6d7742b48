//! Recreating a backup set's state from the newest manifest in the bucket:
//! for a new machine, a lost state file, or a damaged one moved aside.
//!
//! The manifest says what the bucket holds, which is exactly what a state
//! row claims, so its lines become the set's rows. The next backup then
//! does the rest with its usual rules: local files whose size and mtime
//! match a row are trusted, others are hashed, and only real differences
//! are sent. A backup that finds a set with no rows does this by itself, so
//! losing the state file costs a walk and some hashing, not a re-upload.
//!
//! Damage: the rows come from the newest *readable* snapshot
//! ([`snapshots::open`]). When newer manifests are damaged, the bucket
//! may hold content newer than that snapshot, so its rows are checked
//! against one listing of the prefix and kept only where the object still
//! has the recorded size and ETag (a row must never claim content the
//! store does not hold); the rest are left to the next backup. Where the
//! store lists no ETags, a row whose size matches is confirmed by a HEAD. A manifest
//! that breaks off after its header keeps the rows read before the break:
//! each is a true claim, and the files after it are simply uploaded again.

use std::collections::HashMap;
use std::path::Path;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::fs::safe_path;
use crate::fs::scan::EntryKind;
use crate::manifest::{Entry, Header, ReadError};
use crate::snapshots::{self, Damage, SnapshotError};
use crate::state::now_secs;
use crate::state::{FileChange, FileRow, StateDb, StateError};
use crate::store::{ObjectStore, StoreError, join_key};
use crate::target::Target;

/// What a rebuild found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RebuildReport {
    /// The snapshot the rows came from.
    pub snapshot: String,
    /// File rows written.
    pub files: u64,
    /// Directory rows written.
    pub dirs: u64,
    /// Files whose local size and mtime match (trusted without reading).
    pub matching: u64,
    /// Files present locally that the next backup will hash.
    pub to_hash: u64,
    /// Files in the manifest that are missing locally.
    pub missing_locally: u64,
    /// Manifest lines refused (unsafe or unknown paths, unreadable lines).
    pub refused: u64,
    /// Damaged snapshots newer than the one used, newest first.
    pub passed_over: Vec<Damage>,
    /// Files left without a row because the object changed after the
    /// snapshot used (only checked when newer snapshots are damaged).
    pub stale: u64,
    /// Set when the manifest broke off after its header: where and why
    /// (the rows read before that point are kept).
    pub stopped: Option<String>,
}

/// Why a rebuild failed.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// Listing or reading manifests failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// Writing the state failed.
    #[error(transparent)]
    State(#[from] StateError),
}

impl From<StoreError> for RebuildError {
    fn from(e: StoreError) -> Self {
        RebuildError::Snapshot(SnapshotError::Store(e))
    }
}

/// Replaces the set's rows with the newest readable manifest under the
/// target's prefix; `Ok(None)` when there is no manifest.
///
/// # Errors
/// [`RebuildError::Snapshot`] when the manifests cannot be listed or read
/// (every manifest being damaged is [`SnapshotError::NoneReadable`]) or
/// the store cannot confirm rows; [`RebuildError::State`] when the rows
/// cannot be written.
pub async fn from_latest_manifest(
    store: &dyn ObjectStore,
    target: &Target,
    db: &mut StateDb,
    set_id: i64,
    source: &Path,
) -> Result<Option<RebuildReport>, RebuildError> {
    let prefix = target.prefix();
    let all = snapshots::list(store, prefix).await?;
    if all.is_empty() {
        return Ok(None);
    }
    let opened = snapshots::open(store, &all, "latest", &target.to_string()).await?;
    let (latest, reader) = (opened.snapshot, opened.reader);
    warn_if_other_source(&latest.id, &reader.header, source);
    let objects = if opened.passed_over.is_empty() {
        None
    } else {
        Some(objects_under(store, prefix).await?)
    };
    let mut report = RebuildReport {
        snapshot: latest.id.clone(),
        passed_over: opened.passed_over,
        ..RebuildReport::default()
    };
    // Rows whose object is listed with the right size but no ETag: asked
    // about one by one below (only when newer snapshots are damaged, and
    // only on stores that list no ETags).
    let mut to_confirm = Vec::new();
    tokio::task::block_in_place(|| -> Result<(), RebuildError> {
        db.clear_files(set_id)?;
        let mut batch = Vec::with_capacity(1024);
        for entry in reader {
            let entry = match entry {
                Ok(entry) => entry,
                Err(ReadError::Line { .. }) => {
                    report.refused += 1;
                    continue;
                }
                Err(cause @ ReadError::Stopped { .. }) => {
                    report.stopped = Some(
                        SnapshotError::Stopped {
                            id: latest.id.clone(),
                            cause,
                        }
                        .to_string(),
                    );
                    break;
                }
            };
            let Some(row) = row_from_entry(entry) else {
                report.refused += 1;
                continue;
            };
            match listed(store, objects.as_ref(), prefix, &row) {
                Listed::Matches => {}
                Listed::ToConfirm => {
                    to_confirm.push(row);
                    continue;
                }
                Listed::Stale => {
                    report.stale += 1;
                    continue;
                }
            }
            tally(&mut report, source, &row);
            batch.push(FileChange::Upsert(row));
            if batch.len() == 1024 {
                db.apply(set_id, &batch)?;
                batch.clear();
            }
        }
        db.apply(set_id, &batch)?;
        Ok(())
    })?;
    if !to_confirm.is_empty() {
        confirm(store, prefix, source, db, set_id, to_confirm, &mut report).await?;
    }
    if let Some(stopped) = &report.stopped {
        tracing::warn!(
            "{stopped}: state rebuilt from the {} entries before it; the next backup uploads the rest again",
            report.files + report.dirs
        );
    }
    Ok(Some(report))
}

/// Warns when the snapshot `id` was written by a backup of another
/// source than `source`: two sources sharing one prefix overwrite and
/// (with `--delete`) delete each other's files, so say so where it begins.
fn warn_if_other_source(id: &str, header: &Header, source: &Path) {
    let ours = source.to_string_lossy();
    if header.source != ours {
        tracing::warn!(
            "snapshot {id} was written by a backup of '{}' on {}, not of '{ours}': expected if this is that tree moved or on a new machine; if another source backs up to this prefix too, the two mix their files (and --delete removes the other's): give each source its own prefix",
            header.source,
            header.host
        );
    }
}

/// What the store's listing says about a manifest row's object.
enum Listed {
    /// Listed with the row's size and ETag, or not checked: no listing was
    /// needed (the newest snapshot was readable), or the row is a directory.
    Matches,
    /// Listed with the row's size but no ETag: asked about with a HEAD.
    ToConfirm,
    /// Missing, or with another size or ETag: the row is left out.
    Stale,
}

/// Checks `row` against `objects` (key → size, ETag), the listing taken
/// when newer snapshots were damaged (`None` otherwise); ETags are compared
/// by the store's rule ([`ObjectStore::same_etag`]).
fn listed(
    store: &dyn ObjectStore,
    objects: Option<&HashMap<String, (u64, String)>>,
    prefix: &str,
    row: &FileRow,
) -> Listed {
    let Some(objects) = objects.filter(|_| row.kind != EntryKind::Dir) else {
        return Listed::Matches;
    };
    match objects.get(&join_key(prefix, &row.path)) {
        Some((size, etag)) if *size == row.size && etag.is_empty() => Listed::ToConfirm,
        Some((size, etag))
            if *size == row.size && !row.etag.is_empty() && store.same_etag(etag, &row.etag) =>
        {
            Listed::Matches
        }
        _ => Listed::Stale,
    }
}

/// Writes the rows whose object was listed with the right size but no
/// ETag, once a HEAD confirms the object has the recorded size and ETag;
/// the others are counted as stale.
async fn confirm(
    store: &dyn ObjectStore,
    prefix: &str,
    source: &Path,
    db: &mut StateDb,
    set_id: i64,
    to_confirm: Vec<FileRow>,
    report: &mut RebuildReport,
) -> Result<(), RebuildError> {
    let confirmed: Vec<(FileRow, bool)> = futures::stream::iter(to_confirm)
        .map(|row| async move {
            let key = join_key(prefix, &row.path);
            let head = store.head(&key, None).await?;
            let same =
                head.size == row.size && !row.etag.is_empty() && store.same_etag(&head.etag, &row.etag);
            Ok::<_, StoreError>((row, same))
        })
        .buffer_unordered(CONFIRMS_IN_FLIGHT)
        .try_collect()
        .await?;
    let mut batch = Vec::new();
    for (row, same) in confirmed {
        if same {
            tally(report, source, &row);
            batch.push(FileChange::Upsert(row));
        } else {
            report.stale += 1;
        }
    }
    tokio::task::block_in_place(|| db.apply(set_id, &batch))?;
    Ok(())
}

/// HEAD requests in flight when confirming rows (see [`from_latest_manifest`]).
const CONFIRMS_IN_FLIGHT: usize = 16;

/// Counts a row about to be written: a directory, or a file (or symlink)
/// that matches, differs from or is missing in the local source.
fn tally(report: &mut RebuildReport, source: &Path, row: &FileRow) {
    match row.kind {
        EntryKind::Dir => report.dirs += 1,
        EntryKind::File | EntryKind::Symlink => {
            report.files += 1;
            match std::fs::symlink_metadata(crate::fs::names::local(source, &row.path)) {
                Ok(md) if md.len() == row.size && crate::fs::scan::mtime_ns(&md) == row.mtime_ns => {
                    report.matching += 1
                }
                Ok(_) => report.to_hash += 1,
                Err(_) => report.missing_locally += 1,
            }
        }
    }
}

/// Size and ETag of every object under `prefix` (the tool's own area left
/// out), from one listing; the ETag is empty where the store lists none.
async fn objects_under(
    store: &dyn ObjectStore,
    prefix: &str,
) -> Result<HashMap<String, (u64, String)>, StoreError> {
    let list_prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let own = format!("{list_prefix}.s3backup/");
    store
        .list(&list_prefix)
        .try_filter(|o| futures::future::ready(!o.key.starts_with(&own)))
        .map_ok(|o| (o.key, (o.size, o.etag)))
        .try_collect()
        .await
}

fn row_from_entry(e: Entry) -> Option<FileRow> {
    safe_path::validate(&e.path).ok()?;
    let kind = EntryKind::from_name(&e.kind)?;
    Some(FileRow {
        kind,
        size: e.size,
        mtime_ns: e.mtime_ns,
        mode: u32::from_str_radix(&e.mode, 8).ok()?,
        blake3: e.blake3,
        etag: e.etag,
        version_id: e.version_id,
        uploaded_at: now_secs(),
        // The manifest vouches for the content: trusted by size and mtime like any row.
        checked_ns: crate::fs::scan::now_ns(),
        // A manifest knows no change times: each file is hashed once.
        stamp: None,
        checksum: e.checksum,
        path: e.path,
    })
}
