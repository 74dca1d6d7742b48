//! `verify --all`: every kept snapshot checked, oldest first, each as
//! `verify --snapshot ID` would check it (one listing of the prefix each),
//! the content area listed at most once for all of them. A snapshot whose
//! manifest cannot be read (its header, or a line that stops the read) is
//! counted as damaged, with why, and the others are still checked.

use std::time::Instant;

use serde::Serialize;

use crate::snapshots::{self, Damage, SnapshotError};
use crate::verify::kept::LazyContent;
use crate::verify::{VerifyError, VerifyOptions, VerifyReport, check_snapshot, open_target};

/// What `verify --all` found: each readable snapshot's report, the damaged
/// ones, and the totals over all reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AllReport {
    /// Each snapshot checked, oldest first.
    pub snapshots: Vec<VerifyReport>,
    /// Snapshots whose manifest could not be read, oldest first.
    pub damaged: Vec<Damage>,
    /// Files in all the snapshots checked (a file kept by several counts in each).
    pub files: u64,
    /// Of them, found as recorded.
    pub ok: u64,
    /// Of them, absent.
    pub missing: u64,
    /// Of them, present but different.
    pub mismatched: u64,
    /// Of them, could not be read or checked after retries.
    pub unreadable: u64,
    /// Files whose checksum could not be compared (`--checksums`).
    pub not_checked: u64,
    /// Of `ok`, kept copies checked by size alone.
    pub ok_by_size: u64,
    /// Manifest lines that could not be read.
    pub damaged_lines: u64,
    /// Bytes downloaded and hashed (`--deep`).
    pub bytes_checked: u64,
    /// Whether contents were checked.
    pub deep: bool,
    /// Wall time.
    pub elapsed_ms: u64,
    /// The requests the run sent, by kind, with their body bytes.
    pub requests: crate::store::RequestCounts,
}

impl AllReport {
    fn add(&mut self, r: VerifyReport) {
        self.files += r.files;
        self.ok += r.ok;
        self.missing += r.missing;
        self.mismatched += r.mismatched;
        self.unreadable += r.unreadable;
        self.not_checked += r.not_checked;
        self.ok_by_size += r.ok_by_size;
        self.damaged_lines += r.damaged_lines;
        self.bytes_checked += r.bytes_checked;
        self.snapshots.push(r);
    }
}

/// Verifies every snapshot under the target (`opts.snapshot` is ignored).
///
/// # Errors
/// [`VerifyError`]: the target cannot be reached, does not exist or holds
/// no snapshots, or the store failed. A damaged snapshot is not an error:
/// it is in [`AllReport::damaged`].
pub async fn run(opts: &VerifyOptions) -> Result<AllReport, VerifyError> {
    let started = Instant::now();
    let (store, all) = open_target(opts).await?;
    let target_text = opts.target.to_string();
    let content = LazyContent::new();
    let mut report = AllReport {
        deep: opts.deep,
        ..AllReport::default()
    };
    for snapshot in &all {
        let damaged = |reason: String| Damage {
            id: snapshot.id.clone(),
            reason,
        };
        let opened = match snapshots::open(&*store, &all, &snapshot.id, &target_text).await {
            Ok(opened) => opened,
            Err(SnapshotError::Damaged { reason, .. }) => {
                report.damaged.push(damaged(reason));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let one = (snapshot.id.clone(), opened.reader, Vec::new());
        match check_snapshot(opts, &store, &all, one, &content).await {
            Ok(r) => report.add(r),
            Err(VerifyError::Snapshot(e @ SnapshotError::Stopped { .. })) => {
                report.damaged.push(damaged(e.to_string()));
            }
            Err(e) => return Err(e),
        }
    }
    report.requests = store.requests();
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}
