//! Executing planned actions against a store: uploads (single or
//! multipart with parts in parallel), server-side copies, metadata
//! refreshes and deletions, each retried on transient errors.
//!
//! Concurrency: the caller runs up to `jobs` (the ceiling) actions at once,
//! and every request (parts included) takes a permit from one adaptive
//! limit ([`crate::store::flow`]: at most `jobs`, finding its own level
//! below that), held only for that request, so a large multipart upload can
//! neither starve the others nor deadlock waiting for its own parts.
//! Multipart uploads are in [`super::multipart`], their journal in
//! [`super::journal`].

use std::path::PathBuf;
use std::sync::Arc;

use super::journal::Journal;
use super::keep::{CopyLimits, Keeper, Kept, LocalFiles};
use super::multipart::part_size_for;
use crate::fs::checksum::Algorithm;
use crate::fs::hash::{self, BodyDigests};
use crate::fs::names;
use crate::fs::scan::{EntryKind, ScanEntry};
use crate::plan::Action;
use crate::progress::Progress;
use crate::state::{FileChange, FileRow, now_secs};
use crate::store::retry::retry;
use crate::store::{
    FileRange, MAX_PART_SIZE, MAX_SINGLE_OBJECT, MIN_PART_SIZE, ObjectMeta, ObjectStore, PutOutcome,
    StoreError, flow::Flow, join_key,
};

/// Shared by every transfer task of a run.
pub struct Engine {
    pub(super) store: Arc<dyn ObjectStore>,
    source: PathBuf,
    pub(super) prefix: String,
    /// The run's requests in flight (the adaptive limit, at most `jobs`).
    pub(super) requests: Flow,
    pub(super) jobs: usize,
    multipart_threshold: u64,
    pub(super) part_size: u64,
    pub(super) progress: Arc<dyn Progress>,
    pub(super) journal: Option<Journal>,
    /// Keys whose CreateMultipartUpload failed in a way the store may have
    /// acted on: [`Engine::abort_lost_uploads`] looks for what it began.
    pub(super) maybe_lost_uploads: std::sync::Mutex<Vec<String>>,
    /// Bytes of files (whole objects and parts) the store confirmed in
    /// this run, finished files or not: what an interrupted run records.
    pub(super) sent: std::sync::atomic::AtomicU64,
    /// Keeps the content the run replaces or deletes (history).
    pub(super) keeper: Keeper,
    /// Objects larger than this are copied server-side in parts.
    copy_cutoff: u64,
    /// `--checksum-algorithm`: the additional checksum of every body sent.
    pub(super) checksum: Option<Algorithm>,
}

/// Why one action failed (reported for its file; the run goes on).
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The store refused or could not be reached (after retries).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The file could not be read to hash it again before sending.
    #[error("reading: {0}")]
    Read(std::io::Error),
    /// The file's stat after sending differs from the scan's (or it could
    /// not be stat-ed): the bytes sent may mix two versions.
    #[error("{0}")]
    Unsettled(std::io::Error),
    /// Hashed again before sending, the file no longer has the bytes planned.
    #[error("file changed while being backed up; it will be retried next run")]
    Changed,
    /// The symlink's target is no longer the one planned.
    #[error("symlink changed while being backed up; it will be retried next run")]
    LinkChanged,
    /// The content the object held could not be copied into the content
    /// area (history), so the object was left as it was.
    #[error(
        "not replaced: its previous content could not be kept for older snapshots ({cause}); it is tried again next run"
    )]
    Keep {
        /// The path whose object held it.
        path: String,
        /// What the store said.
        cause: StoreError,
    },
    /// A blocking task (hashing) died.
    /// (The message names the cause, so it is not also the source.)
    #[error("hashing task failed: {0}")]
    Task(tokio::task::JoinError),
}

impl From<tokio::task::JoinError> for TransferError {
    fn from(e: tokio::task::JoinError) -> Self {
        TransferError::Task(e)
    }
}

fn file_row(entry: &ScanEntry, blake3: &str, put: PutOutcome) -> FileRow {
    FileRow {
        stamp: Some(entry.stamp),
        path: entry.path.clone(),
        kind: entry.kind,
        size: entry.size,
        mtime_ns: entry.mtime_ns,
        mode: entry.mode,
        blake3: blake3.to_string(),
        etag: put.etag,
        version_id: put.version_id,
        checksum: put.checksum,
        uploaded_at: now_secs(),
        checked_ns: entry.seen_ns,
    }
}

/// What an action turned out to do (a copy whose source vanished becomes an upload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Did {
    /// Bytes sent.
    Uploaded,
    /// Copied server-side.
    Copied,
    /// Metadata refreshed.
    Touched,
    /// Remote object deleted.
    Deleted,
    /// A directory's row dropped (no remote object).
    Forgotten,
}

impl Did {
    /// The word for it in progress events.
    pub fn label(self) -> &'static str {
        match self {
            Did::Uploaded => "uploaded",
            Did::Copied => "copied",
            Did::Touched => "touched",
            Did::Deleted => "deleted",
            Did::Forgotten => "forgotten",
        }
    }
}

/// A finished action: what it did, the state change to record and the bytes it sent.
pub struct Done {
    /// What happened.
    pub did: Did,
    /// The state row to write or remove.
    pub change: FileChange,
    /// Upload body bytes sent.
    pub bytes_sent: u64,
    /// Whether the content the object held before was copied into history.
    pub kept: bool,
}

impl Engine {
    /// An engine writing under `prefix` in `store`, reading files under `source`.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        source: PathBuf,
        prefix: String,
        jobs: usize,
        multipart_threshold: u64,
        part_size: u64,
        progress: Arc<dyn Progress>,
    ) -> Self {
        let jobs = jobs.max(1);
        Self {
            source,
            prefix,
            requests: Flow::new(jobs, store.signals(), "uploads"),
            jobs,
            multipart_threshold: multipart_threshold.clamp(MIN_PART_SIZE, MAX_SINGLE_OBJECT),
            part_size: part_size.clamp(MIN_PART_SIZE, MAX_PART_SIZE),
            progress,
            journal: None,
            maybe_lost_uploads: std::sync::Mutex::new(Vec::new()),
            sent: std::sync::atomic::AtomicU64::new(0),
            keeper: Keeper::default(),
            copy_cutoff: MAX_SINGLE_OBJECT,
            checksum: None,
            store,
        }
    }

    /// Sends `algorithm`'s checksum with every body (`--checksum-algorithm`):
    /// a file hashed without it (a copy that fell back to an upload) is
    /// read again for it.
    pub fn with_checksum(mut self, algorithm: Option<Algorithm>) -> Self {
        self.checksum = algorithm;
        self
    }

    /// Copies objects larger than `cutoff` bytes server-side in parts
    /// (clamped to 5 MiB–5 GiB: S3 copies at most 5 GiB in one request).
    pub fn with_copy_cutoff(mut self, cutoff: u64) -> Self {
        self.copy_cutoff = cutoff.clamp(MIN_PART_SIZE, MAX_SINGLE_OBJECT);
        self
    }

    /// When copies go in parts, and how large the parts are.
    pub(super) fn copy_limits(&self) -> CopyLimits {
        CopyLimits {
            cutoff: self.copy_cutoff,
            part_size: self.part_size,
        }
    }

    /// Keeps what the run replaces or deletes as `mode` says (history),
    /// sending archived content from the local files `local` finds.
    pub fn with_history(mut self, mode: crate::history::HistoryMode, local: Option<LocalFiles>) -> Self {
        self.keeper = Keeper::new(mode, local);
        self
    }

    /// Whether the content of `row` is copied into history before its
    /// object is replaced or deleted.
    pub fn keeps(&self, row: &FileRow) -> bool {
        self.keeper.wants(row)
    }

    /// Journals multipart uploads so an interrupted one resumes next run.
    pub fn with_journal(mut self, journal: Journal) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Where progress goes.
    pub fn progress(&self) -> &Arc<dyn Progress> {
        &self.progress
    }

    /// How many actions the caller should run at once.
    pub fn jobs(&self) -> usize {
        self.jobs
    }

    fn key(&self, path: &str) -> String {
        join_key(&self.prefix, path)
    }

    /// Carries out one action; `old` is the row the action's path had
    /// (taken from the state before): its content is kept first when the
    /// action replaces it (history, see [`super::keep`]).
    ///
    /// # Errors
    /// A [`TransferError`] when the store refused the action (after
    /// retries), its old content could not be kept, or the file changed,
    /// shrank or vanished on the way; nothing is recorded for it.
    pub async fn execute(&self, action: &Action, old: Option<&FileRow>) -> Result<Done, TransferError> {
        let replaced = match action {
            Action::Upload { blake3, .. } | Action::Copy { blake3, .. } => {
                old.filter(|o| o.blake3 != *blake3)
            }
            Action::Delete(row) => Some(row),
            Action::Touch { .. } => None,
        };
        let kept = match replaced {
            Some(row) => self.keep(row).await?,
            None => Kept::Nothing,
        };
        let mut done = self.carry(action).await?;
        done.kept = kept == Kept::Copied;
        Ok(done)
    }

    /// [`Self::execute`] once the old content is safe.
    async fn carry(&self, action: &Action) -> Result<Done, TransferError> {
        match action {
            Action::Upload {
                entry,
                blake3,
                bodies,
            } => self.upload(entry, blake3, bodies).await,
            Action::Copy {
                from,
                from_etag,
                entry,
                blake3,
                bodies,
            } => self.copy(from, from_etag, entry, blake3, bodies).await,
            Action::Touch { entry, old } => self.touch(entry, old).await,
            Action::Delete(row) => {
                if row.kind.has_content() {
                    let key = self.key(&row.path);
                    retry(&key, || self.request(self.store.delete(&key))).await?;
                }
                Ok(Done {
                    did: if row.kind.has_content() {
                        Did::Deleted
                    } else {
                        Did::Forgotten
                    },
                    change: FileChange::Remove(row.path.clone()),
                    bytes_sent: 0,
                    kept: false,
                })
            }
        }
    }

    /// Copies the object at `from` (if it still has `from_etag`) to
    /// `entry`'s key, server-side (in parts above the copy cutoff); uploads
    /// the file instead when the source is gone, changed or archived.
    async fn copy(
        &self,
        from: &str,
        from_etag: &str,
        entry: &ScanEntry,
        blake3: &str,
        bodies: &BodyDigests,
    ) -> Result<Done, TransferError> {
        let meta = meta(entry, blake3);
        let copied = {
            let (src, dst) = (self.key(from), self.key(&entry.path));
            let if_match = Some(from_etag);
            let size = entry.size;
            let part_size = part_size_for(size, self.part_size);
            match retry(&dst, || {
                self.request(async {
                    if size > self.copy_cutoff {
                        (self
                            .store
                            .copy_in_parts(&src, &dst, size, part_size, &meta, if_match))
                        .await
                    } else {
                        self.store.copy(&src, &dst, &meta, if_match).await
                    }
                })
            })
            .await
            {
                Ok(put) => Some(put),
                // The source vanished or changed behind our back: send the bytes instead.
                Err(StoreError::NotFound(e) | StoreError::Changed(e)) => {
                    tracing::info!("{e}; uploading instead");
                    None
                }
                // S3 copies nothing out of GLACIER or DEEP_ARCHIVE; the local file has the bytes.
                Err(e @ StoreError::Archived(_)) => {
                    tracing::info!("{e}; uploading the local file instead");
                    None
                }
                Err(e) => return Err(e.into()),
            }
        };
        match copied {
            Some(put) => {
                hash::ensure_unchanged(&names::local(&self.source, &entry.path), entry)
                    .map_err(TransferError::Unsettled)?;
                Ok(Done {
                    did: Did::Copied,
                    change: FileChange::Upsert(file_row(entry, blake3, put)),
                    bytes_sent: 0,
                    kept: false,
                })
            }
            None => self.upload(entry, blake3, bodies).await,
        }
    }

    /// Refreshes the metadata (mtime, mode) of `entry`'s object, whose
    /// content `old` records, by copying it onto itself; uploads it again
    /// when the object is gone or replaced.
    async fn touch(&self, entry: &ScanEntry, old: &FileRow) -> Result<Done, TransferError> {
        let put = if entry.size > MAX_SINGLE_OBJECT {
            // CopyObject cannot refresh metadata on objects this large; the state still tracks the mtime.
            PutOutcome {
                etag: old.etag.clone(),
                version_id: old.version_id.clone(),
                checksum: old.checksum.clone(),
            }
        } else {
            let key = self.key(&entry.path);
            let meta = meta(entry, &old.blake3);
            let if_match = Some(old.etag.as_str());
            match retry(&key, || {
                self.request(self.store.copy(&key, &key, &meta, if_match))
            })
            .await
            {
                Ok(put) => put,
                // The object went missing or was replaced behind the state's
                // back (a bucket emptied or recreated, another tool): send
                // the bytes again.
                Err(StoreError::NotFound(e) | StoreError::Changed(e)) => {
                    tracing::warn!("{e}; uploading it again");
                    return self.upload(entry, &old.blake3, &BodyDigests::default()).await;
                }
                // An archived object's metadata cannot be refreshed by a
                // copy; the local file still has its content, so it is sent
                // (otherwise every run would fail on it again).
                Err(e @ StoreError::Archived(_)) => {
                    tracing::info!("{e}; uploading the local file instead");
                    return self.upload(entry, &old.blake3, &BodyDigests::default()).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        Ok(Done {
            did: Did::Touched,
            change: FileChange::Upsert(file_row(entry, &old.blake3, put)),
            bytes_sent: 0,
            kept: false,
        })
    }

    /// Runs one request under a concurrency permit.
    pub(super) async fn request<T>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let _permit = self.requests.acquire().await?;
        fut.await
    }

    /// How a file of `size` bytes is sent: `None` in one request, else in
    /// parts of the returned size (see [`BodyDigests::part_size`]).
    pub fn part_size_of(&self, size: u64) -> Option<u64> {
        (size > self.multipart_threshold).then(|| part_size_for(size, self.part_size))
    }

    /// Sends a file whose content hashed to `blake3`, each request body
    /// with the MD5 `bodies` has for it. Without them (a touch or a copy
    /// that fell back to sending the bytes), the file is read once more to
    /// get them, and must still hash to `blake3`. Returns what was done and
    /// the bytes really sent (parts a resumed upload had sent before are
    /// not counted again).
    async fn upload(
        &self,
        entry: &ScanEntry,
        blake3: &str,
        bodies: &BodyDigests,
    ) -> Result<Done, TransferError> {
        let path = names::local(&self.source, &entry.path);
        let key = self.key(&entry.path);
        let meta = meta(entry, blake3);
        let part_size = self.part_size_of(entry.size);
        let rehashed;
        let summed = |b: &BodyDigests| b.sums.as_ref().and_then(|s| s.parts.first()).map(|s| s.algorithm);
        let bodies = if entry.kind == EntryKind::Symlink
            || (!bodies.md5.is_empty() && bodies.part_size == part_size && summed(bodies) == self.checksum)
        {
            bodies
        } else {
            let (path, seen, algorithm) = (path.clone(), entry.clone(), self.checksum);
            let hashed =
                tokio::task::spawn_blocking(move || hash::hash_file(&path, &seen, part_size, algorithm))
                    .await?
                    .map_err(TransferError::Read)?;
            if hashed.blake3 != blake3 {
                return Err(TransferError::Changed);
            }
            rehashed = hashed.bodies;
            &rehashed
        };
        let mut bytes_sent = entry.size;
        let put = if entry.kind == EntryKind::Symlink {
            let target = hash::link_target(&path).map_err(TransferError::Unsettled)?;
            if blake3::hash(&target).to_hex().as_str() != blake3 {
                return Err(TransferError::LinkChanged);
            }
            retry(&key, || {
                self.request(self.store.put_symlink(&key, &target, &meta))
            })
            .await?
        } else if entry.size <= self.multipart_threshold {
            let range = FileRange {
                path: &path,
                offset: 0,
                len: entry.size,
                md5: bodies.part(1),
                sum: bodies.sum(1),
            };
            let put = retry(&key, || self.request(self.store.put_file(&key, range, &meta))).await?;
            self.progress.advance(entry.size);
            self.sent
                .fetch_add(entry.size, std::sync::atomic::Ordering::Relaxed);
            put
        } else {
            let (put, sent) = self.multipart(&key, &path, entry, &meta, bodies).await?;
            bytes_sent = sent;
            put
        };
        // Bytes read while the file changed may mix two versions: don't record them.
        hash::ensure_unchanged(&path, entry).map_err(TransferError::Unsettled)?;
        Ok(Done {
            did: Did::Uploaded,
            change: FileChange::Upsert(file_row(entry, blake3, put)),
            bytes_sent,
            kept: false,
        })
    }
}

fn meta(entry: &ScanEntry, blake3: &str) -> ObjectMeta {
    ObjectMeta {
        mtime_ns: entry.mtime_ns,
        mode: entry.mode,
        blake3: blake3.to_string(),
        symlink: entry.kind == EntryKind::Symlink,
    }
}
