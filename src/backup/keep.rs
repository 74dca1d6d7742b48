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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::path::PathBuf;

use super::multipart::part_size_for;
use super::transfer::{Engine, TransferError};
use crate::fs::hash;
use crate::fs::names;
use crate::fs::scan::{EntryKind, ScanEntry};
use crate::history::{self, HistoryMode};
use crate::plan;
use crate::state::{FileRow, Preserving, StateDb};
use crate::store::retry::retry;
use crate::store::{FileRange, MAX_SINGLE_OBJECT, ObjectMeta, ObjectStore, StoreError, join_key};

/// What the engine needs to keep content: the mode, the content this run
/// already copied (a blake3 each), and where to look for a local file with
/// some content when its object cannot be copied.
#[derive(Default)]
pub struct Keeper {
    mode: HistoryMode,
    /// One lock per content this run keeps, holding whether it is kept: a
    /// second path with the same content waits for the first copy, and
    /// copies itself only if that one did not.
    done: Mutex<HashMap<String, Arc<tokio::sync::Mutex<bool>>>>,
    local: Option<LocalFiles>,
    /// Whether `--history versions` was found replacing an object of which
    /// the bucket keeps no version (said once a run).
    warned_unversioned: std::sync::atomic::AtomicBool,
}

/// The set's rows and SOURCE, to find a local file that still holds some
/// content (its own state connection, opened the first time it is needed:
/// archived objects are rare, and a run pays nothing for them otherwise).
pub struct LocalFiles {
    state: PathBuf,
    db: std::sync::OnceLock<Option<Mutex<StateDb>>>,
    set_id: i64,
    root: PathBuf,
}

impl LocalFiles {
    /// Looks content up in set `set_id` of the state file `state`, files under `root`.
    pub fn new(state: PathBuf, set_id: i64, root: PathBuf) -> Self {
        LocalFiles {
            state,
            db: std::sync::OnceLock::new(),
            set_id,
            root,
        }
    }

    /// The state connection, opened now if not yet (`None` if it cannot be).
    fn db(&self) -> Option<&Mutex<StateDb>> {
        self.db
            .get_or_init(|| match StateDb::open(&self.state) {
                Ok(db) => Some(Mutex::new(db)),
                Err(e) => {
                    tracing::warn!("opening the state to look for local copies of archived content: {e}");
                    None
                }
            })
            .as_ref()
    }

    /// A regular file under SOURCE that holds `blake3` (of `size` bytes) as
    /// far as its row and its stat tell (unchanged since it was hashed, not
    /// racy): its path, with the stat to check again after sending it.
    fn find(&self, blake3: &str, size: u64) -> Option<(PathBuf, ScanEntry)> {
        let rows = self
            .db()?
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .rows_with_content(self.set_id, blake3, size)
            .ok()?;
        rows.into_iter().find_map(|row| {
            let path = names::local(&self.root, &row.path);
            let md = std::fs::symlink_metadata(&path).ok()?;
            let plan::PathNow::File {
                size,
                mtime_ns,
                stamp,
            } = plan::PathNow::of(&md)
            else {
                return None;
            };
            let same = row.kind == EntryKind::File
                && size == row.size
                && mtime_ns == row.mtime_ns
                && row.stamp == Some(stamp)
                && !plan::mtime_is_racy(&row);
            same.then(|| {
                let seen = ScanEntry {
                    path: row.path.clone(),
                    kind: EntryKind::File,
                    size,
                    mtime_ns,
                    mode: row.mode,
                    stamp,
                    seen_ns: row.checked_ns,
                };
                (path, seen)
            })
        })
    }
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
    /// A keeper for `mode`; `local` finds local files for content whose
    /// object is archived (none in a dry run).
    pub fn new(mode: HistoryMode, local: Option<LocalFiles>) -> Self {
        Keeper {
            mode,
            done: Mutex::default(),
            local,
            warned_unversioned: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether the object of `row` is copied before it is replaced or deleted.
    pub fn wants(&self, row: &FileRow) -> bool {
        // A "null" version (written while versioning was off; recorded by
        // older releases) keeps nothing: the next write replaces it.
        let versioned = crate::store::kept_version(row.version_id.as_deref()).is_some();
        row.kind.has_content() && !row.blake3.is_empty() && self.mode.copies(versioned)
    }

    /// Says once a run that `--history versions` keeps nothing of `row`,
    /// replaced or deleted, since the bucket keeps no version of it.
    fn warn_unversioned(&self, row: &FileRow) {
        let unversioned = crate::store::kept_version(row.version_id.as_deref()).is_none();
        if self.mode == HistoryMode::Versions
            && unversioned
            && row.kind.has_content()
            && !self
                .warned_unversioned
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                path = %row.path,
                "--history versions: the bucket keeps no version of what this run replaces or deletes, so older snapshots lose it (turn versioning on, or use --history auto)"
            );
        }
    }

    /// The lock of one content (see [`Keeper::done`]).
    fn slot(&self, blake3: &str) -> Arc<tokio::sync::Mutex<bool>> {
        self.done
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(blake3.to_string())
            .or_default()
            .clone()
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
            // Changed or removed outside s3backup: older snapshots lose it,
            // which the user should hear of (not only with -v).
            Err(StoreError::NotFound(e) | StoreError::Changed(e)) => {
                tracing::warn!(path = %self.path, "{e}; nothing is left to keep for older snapshots");
                Ok(Kept::Nothing)
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the content area holds it already (the killed run copied it
    /// before it died): a content object is never written twice, since a
    /// second copy from an object the killed run may have been changing
    /// could only be worse than the first.
    async fn kept_already(&self, store: &dyn ObjectStore, prefix: &str) -> Result<bool, StoreError> {
        let key = history::content_key(prefix, self.blake3);
        match retry(&key, || store.head(&key, None)).await {
            // Content objects are only ever written by checked copies, so one
            // of the right size is the content (the local store keeps no
            // blake3 metadata; S3's must agree).
            Ok(o) => Ok(o.size == self.size && o.blake3.as_deref().is_none_or(|b| b == self.blake3)),
            Err(StoreError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Copies it into the content area under `prefix`, each attempt
    /// holding one of `permits` (the engine's requests in flight) when
    /// given; an object over `limits.cutoff` bytes in parts.
    async fn copy(
        &self,
        store: &dyn ObjectStore,
        prefix: &str,
        permits: Option<&crate::store::flow::Flow>,
        limits: CopyLimits,
    ) -> Result<Kept, StoreError> {
        let (src, dst) = (
            join_key(prefix, self.path),
            history::content_key(prefix, self.blake3),
        );
        let meta = self.meta();
        let copied = retry(&dst, || async {
            let _permit = match permits {
                Some(p) => Some(p.acquire().await?),
                None => None,
            };
            let etag = Some(self.etag);
            if self.size > limits.cutoff {
                let part_size = part_size_for(self.size, limits.part_size);
                store
                    .copy_in_parts(&src, &dst, self.size, part_size, &meta, etag)
                    .await
                    .map(drop)
            } else {
                store.copy(&src, &dst, &meta, etag).await.map(drop)
            }
        })
        .await;
        self.judge(copied)
    }
}

/// When a server-side copy goes in parts, and how large they are.
#[derive(Debug, Clone, Copy)]
pub struct CopyLimits {
    /// Objects larger than this (bytes) are copied in parts (at most 5 GiB:
    /// S3's limit for one CopyObject).
    pub cutoff: u64,
    /// The part size asked for (bytes; raised past 10,000 parts).
    pub part_size: u64,
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
        if !self.keeper.wants(old) {
            self.keeper.warn_unversioned(old);
            return Ok(Kept::Nothing);
        }
        let slot = self.keeper.slot(&old.blake3);
        let mut kept_already = slot.lock().await;
        if *kept_already {
            return Ok(Kept::Nothing);
        }
        let content = Content::from(old);
        let copied = match content
            .copy(
                &*self.store,
                &self.prefix,
                Some(&self.requests),
                self.copy_limits(),
            )
            .await
        {
            Err(StoreError::Archived(e)) => self.send_local(&content).await.ok_or(StoreError::Archived(e)),
            other => other,
        };
        match copied {
            Ok(kept) => {
                *kept_already = kept == Kept::Copied;
                Ok(kept)
            }
            Err(e) => Err(TransferError::Keep {
                path: old.path.clone(),
                cause: e,
            }),
        }
    }
}

impl Engine {
    /// Sends the content from a local file that still holds it, for an
    /// object that cannot be copied (archived): `None` when no file has it
    /// or sending failed (logged).
    async fn send_local(&self, content: &Content<'_>) -> Option<Kept> {
        let local = self.keeper.local.as_ref()?;
        let (path, seen) = local.find(content.blake3, content.size)?;
        let (file, stat, algorithm) = (path.clone(), seen.clone(), self.checksum);
        let hashed = tokio::task::spawn_blocking(move || hash::hash_file(&file, &stat, None, algorithm))
            .await
            .ok()?
            .ok()?;
        if hashed.blake3 != content.blake3 || content.size > MAX_SINGLE_OBJECT {
            return None;
        }
        let key = history::content_key(&self.prefix, content.blake3);
        let range = FileRange {
            path: &path,
            offset: 0,
            len: content.size,
            md5: hashed.bodies.part(1),
            sum: hashed.bodies.sum(1),
        };
        let meta = content.meta();
        let sent = retry(&key, || self.request(self.store.put_file(&key, range, &meta))).await;
        match sent
            .and_then(|_| hash::ensure_unchanged(&path, &seen).map_err(|e| StoreError::Fatal(e.to_string())))
        {
            Ok(()) => {
                tracing::info!(path = %content.path, "archived: its content was kept from the local file {}", seen.path);
                Some(Kept::Copied)
            }
            Err(e) => {
                tracing::warn!(path = %content.path, "keeping its content from the local file {}: {e}", seen.path);
                None
            }
        }
    }
}

/// Forgets `path`'s entry in the `preserving` table (its content is kept,
/// or let go); a failure to is only logged: the next run looks again.
fn settled(db: &StateDb, set_id: i64, path: &str) {
    if let Err(e) = db.preserved(set_id, path) {
        tracing::warn!(path = %path, "recording kept content: {e}");
    }
}

/// Copies into the content area what killed runs of set `set_id` left in
/// the `preserving` table, before this run changes anything. Returns how
/// many were copied, and the paths whose content could not be: nothing may
/// be written or deleted at them in this run (their entries stay for the
/// next one).
pub(super) async fn finish(
    db: &StateDb,
    set_id: i64,
    store: &dyn ObjectStore,
    prefix: &str,
    limits: CopyLimits,
    mode: HistoryMode,
) -> (u64, Vec<String>) {
    let left = match db.preserving(set_id) {
        Ok(left) => left,
        Err(e) => {
            tracing::warn!("listing the content an earlier run left to keep: {e}");
            return (0, Vec::new());
        }
    };
    if !mode.copies(false) {
        // `--history off|versions`: the user asks for no copies, so what
        // an earlier run could not keep is let go, not tried again.
        for entry in &left {
            tracing::info!(path = %entry.path, "not keeping the content an earlier run could not keep (--history {})", mode.as_str());
            settled(db, set_id, &entry.path);
        }
        return (0, Vec::new());
    }
    let (mut copied, mut failed) = (0, Vec::new());
    for entry in &left {
        let content = Content::from(entry);
        match content.kept_already(store, prefix).await {
            Ok(true) => {
                settled(db, set_id, &entry.path);
                continue;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(path = %entry.path, "looking for the content an earlier run could not keep: {e}");
                failed.push(entry.path.clone());
                continue;
            }
        }
        match content.copy(store, prefix, None, limits).await {
            Ok(kept) => {
                copied += u64::from(kept == Kept::Copied);
                settled(db, set_id, &entry.path);
            }
            Err(e) => {
                tracing::warn!(path = %entry.path, "keeping the content an earlier run could not keep: {e}");
                failed.push(entry.path.clone());
            }
        }
    }
    (copied, failed)
}
