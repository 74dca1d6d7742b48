//! Rows the executor looks up or makes: the source of a server-side copy
//! (the state's rows of some content, each path statted now) and a
//! directory's row.

use std::path::Path;
use std::sync::Mutex;

use super::lock;
use crate::fs::names;
use crate::fs::scan::{EntryKind, ScanEntry};
use crate::plan;
use crate::state::{FileRow, StateDb, now_secs};

/// A path the bucket holds this content under and that this run will not
/// overwrite ([`plan::copy_source`]), each candidate's path statted now.
pub(super) fn copy_source(
    db: &Mutex<StateDb>,
    set_id: i64,
    root: &Path,
    blake3: &str,
    size: u64,
) -> Option<plan::CopySource> {
    let rows = lock(db)
        .rows_with_content(set_id, blake3, size)
        .unwrap_or_else(|e| {
            tracing::warn!("looking up content for a server-side copy: {e}");
            Vec::new()
        });
    plan::copy_source(rows, |path| {
        match std::fs::symlink_metadata(names::local(root, path)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => plan::PathNow::Gone,
            Err(_) => plan::PathNow::Other,
            Ok(md) => plan::PathNow::of(&md),
        }
    })
}

/// The state row of a directory (no remote object).
pub(super) fn dir_row(entry: &ScanEntry) -> FileRow {
    FileRow {
        path: entry.path.clone(),
        kind: EntryKind::Dir,
        size: 0,
        mtime_ns: entry.mtime_ns,
        mode: entry.mode,
        blake3: String::new(),
        etag: String::new(),
        version_id: None,
        uploaded_at: now_secs(),
        checked_ns: entry.seen_ns,
        stamp: Some(entry.stamp),
        checksum: None,
    }
}
