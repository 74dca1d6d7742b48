//! Progress reporting, owned by the library as a trait with a no-op default
//! (as rustic does): the engines report, the binary picks how it is shown.
//! The renderers (bars on a terminal, a periodic line on a non-terminal
//! with `-v`, JSON events with `--json-progress`) live at the binary's edge,
//! in `cli/progress.rs`; [`Totals`] is the counting they share.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Receives progress events from a backup or a restore.
pub trait Progress: Send + Sync {
    /// Another batch of entries was scanned (or listed); `total` so far.
    fn scanned(&self, _total: usize) {}
    /// `files` more files (`bytes` of them) were hashed to see what changed.
    fn hashed(&self, _files: u64, _bytes: u64) {}
    /// More work was found: `files` more to handle, `bytes` more to move.
    fn queued(&self, _files: u64, _bytes: u64) {}
    /// `bytes` more were sent or received.
    fn advance(&self, _bytes: u64) {}
    /// One file is finished: `what` happened to it (`uploaded`, `copied`,
    /// `touched`, `deleted`, `downloaded`, `unchanged`, `failed`, …).
    fn done(&self, _path: &str, _what: &str) {}
    /// Everything is done; clear the display.
    fn finish(&self) {}
}

/// Reports nothing: for scripts, tests and `-q`.
pub struct NoProgress;

impl Progress for NoProgress {}

/// Totals every reporter keeps, lock-free.
#[derive(Default)]
pub struct Totals {
    /// Entries scanned (or listed) so far.
    pub(crate) scanned: AtomicU64,
    /// Files hashed.
    pub(crate) hashed: AtomicU64,
    /// Bytes of the files hashed.
    pub(crate) hashed_bytes: AtomicU64,
    /// Files found to handle.
    pub(crate) files: AtomicU64,
    /// Files finished.
    pub(crate) files_done: AtomicU64,
    /// Bytes found to move.
    pub(crate) bytes: AtomicU64,
    /// Bytes moved.
    pub(crate) bytes_done: AtomicU64,
}

impl Totals {
    /// Counts `files` more hashed, `bytes` of them.
    pub(crate) fn add_hashed(&self, files: u64, bytes: u64) {
        self.hashed.fetch_add(files, Ordering::Relaxed);
        self.hashed_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes moved per second since `started`.
    pub(crate) fn rate(&self, started: Instant) -> u64 {
        let secs = started.elapsed().as_secs_f64();
        if secs > 0.0 {
            (self.bytes_done.load(Ordering::Relaxed) as f64 / secs) as u64
        } else {
            0
        }
    }
}
