//! Executing planned actions against a store: uploads (single or
//! multipart with parts in parallel), server-side copies, metadata
//! refreshes and deletions, each retried on transient errors.
//!
//! Concurrency: the caller runs up to `jobs` actions at once, and every
//! request (parts included) takes a permit from one semaphore of `jobs`
//! permits, held only for that request, so a large multipart upload can
//! neither starve the others nor deadlock waiting for its own parts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Semaphore;

use crate::hash;
use crate::names;
use crate::plan::Action;
use crate::progress::Progress;
use crate::scan::{EntryKind, ScanEntry};
use crate::state::{FileChange, FileRow};
use crate::store::{
    CompletedPart, FileRange, MAX_PART_SIZE, MAX_PARTS, MAX_SINGLE_OBJECT, MIN_PART_SIZE, ObjectMeta,
    ObjectStore, PutOutcome, StoreError, join_key,
};

/// Attempts per file operation for transient errors (on top of the SDK's own retries).
const ATTEMPTS: u32 = 2;

/// Shared by every transfer task of a run.
pub struct Engine {
    store: Arc<dyn ObjectStore>,
    source: PathBuf,
    prefix: String,
    requests: Semaphore,
    jobs: usize,
    multipart_threshold: u64,
    part_size: u64,
    progress: Arc<dyn Progress>,
}

/// Seconds since the epoch, for `uploaded_at`.
pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn file_row(entry: &ScanEntry, blake3: &str, put: PutOutcome) -> FileRow {
    FileRow {
        path: entry.path.clone(),
        kind: entry.kind,
        size: entry.size,
        mtime_ns: entry.mtime_ns,
        mode: entry.mode,
        blake3: blake3.to_string(),
        etag: put.etag,
        version_id: put.version_id,
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

/// A finished action: what it did, the state change to record and the bytes it sent.
pub struct Done {
    /// What happened.
    pub did: Did,
    /// The state row to write or remove.
    pub change: FileChange,
    /// Upload body bytes sent.
    pub bytes_sent: u64,
}

/// Retries `op` on transient errors with exponential backoff.
pub async fn retry<T, F, Fut>(what: &str, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                // Exponential backoff with full jitter, so many files failing
                // together (throttling) do not retry in lockstep.
                let delay = fastrand::u64(100..=(500u64 << attempt));
                tracing::info!(attempt, delay_ms = delay, "{what}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(delay)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
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
            store,
            source,
            prefix,
            requests: Semaphore::new(jobs),
            jobs,
            multipart_threshold: multipart_threshold.clamp(MIN_PART_SIZE, MAX_SINGLE_OBJECT),
            part_size: part_size.clamp(MIN_PART_SIZE, MAX_PART_SIZE),
            progress,
        }
    }

    /// How many actions the caller should run at once.
    pub fn jobs(&self) -> usize {
        self.jobs
    }

    fn key(&self, path: &str) -> String {
        join_key(&self.prefix, path)
    }

    /// Carries out one action.
    pub async fn execute(&self, action: &Action) -> Result<Done, StoreError> {
        match action {
            Action::Upload { entry, blake3 } => self.upload(entry, blake3).await,
            Action::Copy { from, entry, blake3 } => {
                let meta = meta(entry, blake3);
                let copied = if entry.size > MAX_SINGLE_OBJECT {
                    None
                } else {
                    let (src, dst) = (self.key(from), self.key(&entry.path));
                    match retry(&dst, || self.request(self.store.copy(&src, &dst, &meta))).await {
                        Ok(put) => Some(put),
                        // The source vanished behind our back: send the bytes instead.
                        Err(StoreError::NotFound(e)) => {
                            tracing::info!("{e}; uploading instead");
                            None
                        }
                        Err(e) => return Err(e),
                    }
                };
                match copied {
                    Some(put) => {
                        hash::ensure_unchanged(&names::local(&self.source, &entry.path), entry)
                            .map_err(|e| StoreError::Fatal(e.to_string()))?;
                        Ok(Done {
                            did: Did::Copied,
                            change: FileChange::Upsert(file_row(entry, blake3, put)),
                            bytes_sent: 0,
                        })
                    }
                    None => self.upload(entry, blake3).await,
                }
            }
            Action::Touch { entry, old } => {
                let put = if entry.size > MAX_SINGLE_OBJECT {
                    // CopyObject cannot refresh metadata on objects this large; the state still tracks the mtime.
                    PutOutcome {
                        etag: old.etag.clone(),
                        version_id: old.version_id.clone(),
                    }
                } else {
                    let key = self.key(&entry.path);
                    let meta = meta(entry, &old.blake3);
                    match retry(&key, || self.request(self.store.copy(&key, &key, &meta))).await {
                        Ok(put) => put,
                        // The object went missing behind the state's back (a bucket
                        // emptied or recreated): send the bytes again.
                        Err(StoreError::NotFound(e)) => {
                            tracing::warn!("{e}; uploading it again");
                            return self.upload(entry, &old.blake3).await;
                        }
                        Err(e) => return Err(e),
                    }
                };
                Ok(Done {
                    did: Did::Touched,
                    change: FileChange::Upsert(file_row(entry, &old.blake3, put)),
                    bytes_sent: 0,
                })
            }
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
                })
            }
        }
    }

    /// Runs one request under a concurrency permit.
    async fn request<T>(&self, fut: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        let _permit = self
            .requests
            .acquire()
            .await
            .map_err(|_| StoreError::Fatal("transfer queue closed".into()))?;
        fut.await
    }

    async fn upload(&self, entry: &ScanEntry, blake3: &str) -> Result<Done, StoreError> {
        let path = names::local(&self.source, &entry.path);
        let key = self.key(&entry.path);
        let meta = meta(entry, blake3);
        let put = if entry.kind == EntryKind::Symlink {
            let target = hash::link_target(&path).map_err(|e| StoreError::Fatal(e.to_string()))?;
            if blake3::hash(&target).to_hex().as_str() != blake3 {
                return Err(StoreError::Fatal(
                    "symlink changed while being backed up; it will be retried next run".into(),
                ));
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
            };
            let put = retry(&key, || self.request(self.store.put_file(&key, range, &meta))).await?;
            self.progress.advance(entry.size);
            put
        } else {
            self.multipart(&key, &path, entry.size, &meta).await?
        };
        // Bytes read while the file changed may mix two versions: don't record them.
        hash::ensure_unchanged(&path, entry).map_err(|e| StoreError::Fatal(e.to_string()))?;
        Ok(Done {
            did: Did::Uploaded,
            change: FileChange::Upsert(file_row(entry, blake3, put)),
            bytes_sent: entry.size,
        })
    }

    async fn multipart(
        &self,
        key: &str,
        path: &Path,
        size: u64,
        meta: &ObjectMeta,
    ) -> Result<PutOutcome, StoreError> {
        let part_size = part_size_for(size, self.part_size);
        let count = size.div_ceil(part_size);
        let upload_id = retry(key, || self.request(self.store.create_multipart(key, meta))).await?;
        let parts = futures::stream::iter(0..count)
            .map(|i| {
                let upload_id = &upload_id;
                async move {
                    let offset = i * part_size;
                    let range = FileRange {
                        path,
                        offset,
                        len: part_size.min(size - offset),
                    };
                    let number = i as i32 + 1;
                    let etag = retry(key, || {
                        self.request(self.store.upload_part(key, upload_id, number, range))
                    })
                    .await?;
                    self.progress.advance(range.len);
                    Ok::<_, StoreError>(CompletedPart { number, etag })
                }
            })
            .buffer_unordered(self.jobs)
            .collect::<Vec<_>>()
            .await;
        let mut done = Vec::with_capacity(parts.len());
        for part in parts {
            match part {
                Ok(p) => done.push(p),
                Err(e) => {
                    if let Err(abort) = self.request(self.store.abort_multipart(key, &upload_id)).await {
                        tracing::warn!("{abort}");
                    }
                    return Err(e);
                }
            }
        }
        done.sort_by_key(|p| p.number);
        let result = retry(key, || {
            self.request(self.store.complete_multipart(key, &upload_id, &done))
        })
        .await;
        if result.is_err() {
            let _ = self.request(self.store.abort_multipart(key, &upload_id)).await;
        }
        result
    }
}

/// The part size to use: the configured one, raised (to a whole MiB) if the
/// file would otherwise need more than S3's 10,000 parts.
pub fn part_size_for(size: u64, configured: u64) -> u64 {
    const MIB: u64 = 1024 * 1024;
    let needed = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    configured.max(needed).clamp(MIN_PART_SIZE, MAX_PART_SIZE)
}

fn meta(entry: &ScanEntry, blake3: &str) -> ObjectMeta {
    ObjectMeta {
        mtime_ns: entry.mtime_ns,
        mode: entry.mode,
        blake3: blake3.to_string(),
        symlink: entry.kind == EntryKind::Symlink,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_respects_s3_limits() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(part_size_for(100 * MIB, 8 * MIB), 8 * MIB);
        assert_eq!(part_size_for(100 * MIB, MIB), 5 * MIB);
        let huge = 200 * 1024 * MIB * 1024; // 200 TiB-ish is over S3's limit, but the math must still cap
        assert!(part_size_for(huge, 8 * MIB) <= MAX_PART_SIZE);
        let big = 100 * 1024 * MIB; // 100 GiB needs > 10 MiB parts
        let p = part_size_for(big, 8 * MIB);
        assert!(big.div_ceil(p) <= MAX_PARTS && p.is_multiple_of(MIB));
    }
}
