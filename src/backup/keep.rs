//! History on the backup's side: before an action overwrites or deletes an
//! object whose content a snapshot lists, that content is copied
//! server-side into the content area ([`crate::history`]), and only then is
//! the object changed. The order is what makes it crash-safe: the taken
//! row's content is recorded in the state's `preserving` table in the same
//! transaction that takes the row ([`crate::state::StateDb::take_rows`]),
//! and leaves it only once the copy is confirmed; a run killed in between
//! leaves the entry, and the next run copies it ([`finish`]) before it
//! writes or deletes anything at that path.
//!
//! The copy is conditional on the ETag the state recorded (`If-Match`), so
//! it never keeps content other than the snapshot's; an object found gone
//! or changed holds nothing to keep (whoever changed it outside a backup
//! took the content with it), which is logged, not an error. Any other
//! failure fails the action before the object is touched, and the file is
//! tried again next run: a backup never replaces content it could not keep.
//! Content copied once in a run is not copied again in that run.
//!
//! A metadata refresh (a touch) keeps the content, so it copies nothing.
//! An object in an archive storage class cannot be copied: its content is
//! sent from a local file that still has it, when the caller knows one
//! (a rename's new path), and otherwise the action fails with a message
//! saying so.

use std::collections::HashSet;
use std::sync::Mutex;

use super::transfer::{Engine, TransferError};
use crate::fs::scan::EntryKind;
use crate::history::{self, HistoryMode};
use crate::state::{FileRow, Preserving, StateDb};
use crate::store::retry::retry;
use crate::store::{MAX_SINGLE_OBJECT, ObjectMeta, ObjectStore, StoreError, join_key};

/// What the engine needs to keep content: the mode, and the content this
/// run already copied (a blake3 each).
#[derive(Debug, Default)]
pub struct Keeper {
    mode: HistoryMode,
    done: Mutex<HashSet<String>>,
}

/// What keeping an object's content came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// Copied into the content area now.
    Copied,
    /// Nothing to copy: history is off for it (a version keeps it, or
    /// `--history versions|off`), this run copied the content already, or
    /// the object no longer holds it.
    Nothing,
}

impl Keeper {
    /// A keeper for `mode`.
    pub fn new(mode: HistoryMode) -> Self {
        Keeper {
            mode,
            done: Mutex::default(),
        }
    }

    /// Whether the object of `row` is copied before it is replaced or deleted.
    pub fn wants(&self, row: &FileRow) -> bool {
        row.kind.has_content() && !row.blake3.is_empty() && self.mode.copies(row.version_id.is_some())
    }

    fn copied_already(&self, blake3: &str) -> bool {
        self.done
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(blake3)
    }

    fn note(&self, blake3: &str) {
        self.done
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(blake3.to_string());
    }
}

/// What is kept of an object: its content and the metadata the copy carries.
struct Content<'a> {
    path: &'a str,
    kind: EntryKind,
    size: u64,
    mtime_ns: i64,
    mode: u32,
    blake3: &'a str,
    etag: &'a str,
}

impl<'a> From<&'a FileRow> for Content<'a> {
    fn from(r: &'a FileRow) -> Self {
        Content {
            path: &r.path,
            kind: r.kind,
            size: r.size,
            mtime_ns: r.mtime_ns,
            mode: r.mode,
            blake3: &r.blake3,
            etag: &r.etag,
        }
    }
}

impl<'a> From<&'a Preserving> for Content<'a> {
    fn from(p: &'a Preserving) -> Self {
        Content {
            path: &p.path,
            kind: p.kind,
            size: p.size,
            mtime_ns: p.mtime_ns,
            mode: p.mode,
            blake3: &p.blake3,
            etag: &p.etag,
        }
    }
}

impl Content<'_> {
    /// The object metadata the copy carries.
    fn meta(&self) -> ObjectMeta {
        ObjectMeta {
            mtime_ns: self.mtime_ns,
            mode: self.mode,
            blake3: self.blake3.to_string(),
            symlink: self.kind == EntryKind::Symlink,
        }
    }

    /// What a failure to keep it means: gone or changed objects hold
    /// nothing to keep; anything else is an error.
    fn judge(&self, copied: Result<(), StoreError>) -> Result<Kept, StoreError> {
        match copied {
            Ok(()) => Ok(Kept::Copied),
            Err(StoreError::NotFound(e) | StoreError::Changed(e)) => {
                tracing::info!(
                    path = %self.path,
                    "{e}: the object no longer holds the content the state recorded; nothing to keep"
                );
                Ok(Kept::Nothing)
            }
            Err(e) => Err(e),
        }
    }

    /// Copies it into the content area under `prefix`, each attempt
    /// holding one of `permits` (the engine's requests in flight) when given.
    async fn copy(
        &self,
        store: &dyn ObjectStore,
        prefix: &str,
        permits: Option<&tokio::sync::Semaphore>,
    ) -> Result<Kept, StoreError> {
        if self.size > MAX_SINGLE_OBJECT {
            // CopyObject takes at most 5 GiB; UploadPartCopy is not used yet.
            return Err(StoreError::Fatal(format!(
                "{}: objects over 5 GiB cannot be copied into history yet; back it up with --history off to replace it without keeping its old content",
                self.path
            )));
        }
        let (src, dst) = (join_key(prefix, self.path), history::content_key(prefix, self.blake3));
        let meta = self.meta();
        let copied = retry(&dst, || async {
            let _permit = match permits {
                Some(p) => Some(
                    p.acquire()
                        .await
                        .map_err(|_| StoreError::Fatal("transfer queue closed".into()))?,
                ),
                None => None,
            };
            store.copy(&src, &dst, &meta, Some(self.etag)).await.map(drop)
        })
        .await;
        self.judge(copied)
    }
}

impl Engine {
    /// Copies the content `old` records into the content area before its
    /// object is replaced or deleted (see the module doc).
    ///
    /// # Errors
    /// [`TransferError::Keep`] when the copy failed (after retries) for
    /// another reason than the object no longer holding that content: the
    /// caller must then leave the object alone.
    pub(super) async fn keep(&self, old: &FileRow) -> Result<Kept, TransferError> {
        if !self.keeper.wants(old) || self.keeper.copied_already(&old.blake3) {
            return Ok(Kept::Nothing);
        }
        let content = Content::from(old);
        match content.copy(&*self.store, &self.prefix, Some(&self.requests)).await {
            Ok(kept) => {
                self.keeper.note(&old.blake3);
                Ok(kept)
            }
            Err(e) => Err(TransferError::Keep {
                path: old.path.clone(),
                cause: e,
            }),
        }
    }
}

/// Copies into the content area what killed runs of set `set_id` left in
/// the `preserving` table, before this run changes anything. Returns how
/// many were copied, and the paths whose content could not be: nothing may
/// be written or deleted at them in this run (their entries stay for the
/// next one).
pub(super) async fn finish(db: &StateDb, set_id: i64, store: &dyn ObjectStore, prefix: &str) -> (u64, Vec<String>) {
    let left = match db.preserving(set_id) {
        Ok(left) => left,
        Err(e) => {
            tracing::warn!("listing the content a killed run left to keep: {e}");
            return (0, Vec::new());
        }
    };
    let (mut copied, mut failed) = (0, Vec::new());
    for entry in &left {
        let content = Content::from(entry);
        match content.copy(store, prefix, None).await {
            Ok(kept) => {
                copied += u64::from(kept == Kept::Copied);
                if let Err(e) = db.preserved(set_id, &entry.path) {
                    tracing::warn!(path = %entry.path, "recording kept content: {e}");
                }
            }
            Err(e) => {
                tracing::warn!(path = %entry.path, "keeping the content a killed run was replacing: {e}");
                failed.push(entry.path.clone());
            }
        }
    }
    (copied, failed)
}
