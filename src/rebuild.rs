//! Recreating a backup set's state from the newest manifest in the bucket:
//! for a new machine, a lost state file, or a damaged one moved aside.
//!
//! The manifest says what the bucket holds, which is exactly what a state
//! row claims, so its lines become the set's rows. The next backup then
//! does the rest with its usual rules: local files whose size and mtime
//! match a row are trusted, others are hashed, and only real differences
//! are sent. A backup that finds a set with no rows does this by itself, so
//! losing the state file costs a walk and some hashing, not a re-upload.

use std::path::Path;

use serde::Serialize;

use crate::manifest::Entry;
use crate::safe_path;
use crate::scan::EntryKind;
use crate::snapshots::{self, SnapshotError};
use crate::state::{FileChange, FileRow, StateDb, StateError};
use crate::store::{ObjectStore, StoreError};
use crate::transfer::now_secs;

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
    /// Manifest lines refused (unsafe or unknown paths).
    pub refused: u64,
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

/// Replaces the set's rows with the newest manifest under `prefix`;
/// `Ok(None)` when there is no manifest.
pub async fn from_latest_manifest(
    store: &dyn ObjectStore,
    prefix: &str,
    db: &mut StateDb,
    set_id: i64,
    source: &Path,
) -> Result<Option<RebuildReport>, RebuildError> {
    let all = snapshots::list(store, prefix).await?;
    let Some(latest) = all.last() else {
        return Ok(None);
    };
    let reader = snapshots::open_manifest(store, latest).await?;
    let mut report = RebuildReport {
        snapshot: latest.id.clone(),
        ..RebuildReport::default()
    };
    tokio::task::block_in_place(|| -> Result<(), RebuildError> {
        db.clear_files(set_id)?;
        let mut batch = Vec::with_capacity(1024);
        for entry in reader {
            let entry = entry.map_err(|e| SnapshotError::Corrupt {
                key: latest.key.clone(),
                reason: e.to_string(),
            })?;
            let Some(row) = row_from_entry(entry) else {
                report.refused += 1;
                continue;
            };
            match row.kind {
                EntryKind::Dir => report.dirs += 1,
                EntryKind::File | EntryKind::Symlink => {
                    report.files += 1;
                    match std::fs::symlink_metadata(crate::names::local(source, &row.path)) {
                        Ok(md) if md.len() == row.size && crate::scan::mtime_ns(&md) == row.mtime_ns => {
                            report.matching += 1
                        }
                        Ok(_) => report.to_hash += 1,
                        Err(_) => report.missing_locally += 1,
                    }
                }
            }
            batch.push(FileChange::Upsert(row));
            if batch.len() == 1024 {
                db.apply(set_id, &batch)?;
                batch.clear();
            }
        }
        db.apply(set_id, &batch)?;
        Ok(())
    })?;
    Ok(Some(report))
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
        checked_ns: crate::scan::now_ns(),
        // A manifest knows no change times: each file is hashed once.
        stamp: None,
        path: e.path,
    })
}
