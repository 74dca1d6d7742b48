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

use futures::StreamExt;
use tokio::sync::Semaphore;

use crate::fs::hash::{self, BodyDigests};
use crate::fs::names;
use crate::fs::scan::{self, EntryKind, ScanEntry};
use crate::plan::Action;
use crate::progress::Progress;
use crate::state::{FileChange, FileRow, JournaledUpload, StateDb, StateResult, now_secs};
use crate::store::retry::retry;
use crate::store::{
    CompletedPart, FileRange, MAX_PART_SIZE, MAX_PARTS, MAX_SINGLE_OBJECT, MIN_PART_SIZE, ObjectMeta,
    ObjectStore, PutOutcome, StoreError, join_key,
};

/// The multipart-upload journal of one backup set, on its own connection
/// to the state file (parts finish on many tasks at once).
pub struct Journal {
    db: std::sync::Mutex<StateDb>,
    set_id: i64,
}

impl Journal {
    /// A journal writing to `db` for set `set_id`.
    pub fn new(db: StateDb, set_id: i64) -> Self {
        Self {
            db: std::sync::Mutex::new(db),
            set_id,
        }
    }

    /// Runs `f` on the database. A journal that cannot be written only
    /// costs a resume, so failures are logged, not raised.
    fn with<T>(&self, what: &str, f: impl FnOnce(&StateDb, i64) -> StateResult<T>) -> Option<T> {
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        match tokio::task::block_in_place(|| f(&db, self.set_id)) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!("upload journal, {what}: {e}");
                None
            }
        }
    }

    /// Aborts the uploads that can never be resumed: journaled ones whose
    /// file is gone or has changed since they began, and, after a run that
    /// was killed (`interrupted_since`: when it started, ms), the ones under
    /// `prefix` that no journal knows and that were begun while it ran (it
    /// died between the store starting them and the journal recording
    /// them). Listing uploads costs a request, so only then. Returns how many.
    pub async fn abort_abandoned(
        &self,
        store: &dyn ObjectStore,
        source: &Path,
        prefix: &str,
        interrupted_since: Option<i64>,
    ) -> usize {
        let uploads = self
            .with("listing", |db, set| db.journaled_uploads(set))
            .unwrap_or_default();
        let mut aborted = match interrupted_since {
            Some(ms) => {
                self.abort_unjournaled(store, prefix, &uploads, ms.div_euclid(1000))
                    .await
            }
            None => 0,
        };
        for u in uploads {
            let current = std::fs::metadata(names::local(source, &u.path)).ok();
            if current.is_some_and(|md| md.len() == u.size && scan::mtime_ns(&md) == u.mtime_ns) {
                continue;
            }
            match retry(&u.key, || store.abort_multipart(&u.key, &u.upload_id)).await {
                Ok(()) | Err(StoreError::NotFound(_)) => {
                    tracing::info!(key = %u.key, "aborted an unfinished upload whose file changed or is gone");
                    self.with("forgetting", |db, set| db.forget_upload(set, &u.key));
                    aborted += 1;
                }
                Err(e) => tracing::warn!("aborting the unfinished upload of '{}': {e}", u.key),
            }
        }
        aborted
    }

    async fn abort_unjournaled(
        &self,
        store: &dyn ObjectStore,
        prefix: &str,
        known: &[JournaledUpload],
        since_secs: i64,
    ) -> usize {
        let listed = match store.pending_uploads(prefix).await {
            Ok(l) => l,
            Err(e) => {
                tracing::info!("not looking for forgotten uploads: {e}");
                return 0;
            }
        };
        let mut aborted = 0;
        for p in listed {
            // A second of slack: the store's clock and ours may differ a little.
            let in_window = p.initiated_secs.is_some_and(|t| t >= since_secs - 1);
            if !in_window || known.iter().any(|u| u.upload_id == p.upload_id) {
                continue;
            }
            match retry(&p.key, || store.abort_multipart(&p.key, &p.upload_id)).await {
                Ok(()) | Err(StoreError::NotFound(_)) => {
                    tracing::info!(key = %p.key, "aborted an unfinished upload a killed run left behind");
                    aborted += 1;
                }
                Err(e) => tracing::warn!("aborting the unfinished upload of '{}': {e}", p.key),
            }
        }
        aborted
    }
}

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
    journal: Option<Journal>,
    /// Keys whose CreateMultipartUpload failed in a way the store may have
    /// acted on: [`Engine::abort_lost_uploads`] looks for what it began.
    maybe_lost_uploads: std::sync::Mutex<Vec<String>>,
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
            journal: None,
            maybe_lost_uploads: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Journals multipart uploads so an interrupted one resumes next run.
    pub fn with_journal(mut self, journal: Journal) -> Self {
        self.journal = Some(journal);
        self
    }

    /// After every transfer of a run is done: for each key whose
    /// CreateMultipartUpload may have been acted on with its answer lost,
    /// aborts the uploads the store holds open for that key that no journal
    /// knows (the run holds its set's lock, so none of them can still be in
    /// use). Every upload a run begins is thus completed, journaled for
    /// resume, or aborted. Costs a listing per such key, and nothing on a
    /// run without such failures. Returns how many were aborted.
    pub async fn abort_lost_uploads(&self) -> usize {
        let keys = std::mem::take(&mut *self.maybe_lost_uploads.lock().unwrap_or_else(|p| p.into_inner()));
        let Some(journal) = self.journal.as_ref().filter(|_| !keys.is_empty()) else {
            return 0;
        };
        let known = journal
            .with("listing", |db, set| db.journaled_uploads(set))
            .unwrap_or_default();
        let mut aborted = 0;
        for key in keys {
            let open = match self.store.pending_uploads(&key).await {
                Ok(open) => open,
                Err(e) => {
                    tracing::warn!(
                        "looking for an upload of '{key}' whose beginning was never answered: {e}"
                    );
                    continue;
                }
            };
            for p in open {
                if p.key != key || known.iter().any(|u| u.upload_id == p.upload_id) {
                    continue;
                }
                match retry(&key, || self.store.abort_multipart(&key, &p.upload_id)).await {
                    Ok(()) | Err(StoreError::NotFound(_)) => {
                        tracing::info!(key, "aborted an upload whose beginning was never answered");
                        aborted += 1;
                    }
                    Err(e) => tracing::warn!("aborting the unfinished upload of '{key}': {e}"),
                }
            }
        }
        aborted
    }

    /// Where progress goes.
    pub fn progress(&self) -> &Arc<dyn Progress> {
        &self.progress
    }

    /// The journal, if there is one.
    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
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
            } => {
                let meta = meta(entry, blake3);
                let copied = if entry.size > MAX_SINGLE_OBJECT {
                    None
                } else {
                    let (src, dst) = (self.key(from), self.key(&entry.path));
                    let if_match = Some(from_etag.as_str());
                    match retry(&dst, || {
                        self.request(self.store.copy(&src, &dst, &meta, if_match))
                    })
                    .await
                    {
                        Ok(put) => Some(put),
                        // The source vanished or changed behind our back: send the bytes instead.
                        Err(StoreError::NotFound(e) | StoreError::Changed(e)) => {
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
                    None => self.upload(entry, blake3, bodies).await,
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
    ) -> Result<Done, StoreError> {
        let path = names::local(&self.source, &entry.path);
        let key = self.key(&entry.path);
        let meta = meta(entry, blake3);
        let part_size = self.part_size_of(entry.size);
        let rehashed;
        let bodies = if entry.kind == EntryKind::Symlink
            || (!bodies.md5.is_empty() && bodies.part_size == part_size)
        {
            bodies
        } else {
            let (path, seen) = (path.clone(), entry.clone());
            let hashed = tokio::task::spawn_blocking(move || hash::hash_file(&path, &seen, part_size))
                .await
                .map_err(|e| StoreError::Fatal(format!("hashing task failed: {e}")))?
                .map_err(|e| StoreError::Fatal(format!("reading: {e}")))?;
            if hashed.blake3 != blake3 {
                return Err(StoreError::Fatal(
                    "file changed while being backed up; it will be retried next run".into(),
                ));
            }
            rehashed = hashed.bodies;
            &rehashed
        };
        let mut bytes_sent = entry.size;
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
                md5: bodies.part(1),
            };
            let put = retry(&key, || self.request(self.store.put_file(&key, range, &meta))).await?;
            self.progress.advance(entry.size);
            put
        } else {
            let (put, sent) = self.multipart(&key, &path, entry, &meta, bodies).await?;
            bytes_sent = sent;
            put
        };
        // Bytes read while the file changed may mix two versions: don't record them.
        hash::ensure_unchanged(&path, entry).map_err(|e| StoreError::Fatal(e.to_string()))?;
        Ok(Done {
            did: Did::Uploaded,
            change: FileChange::Upsert(file_row(entry, blake3, put)),
            bytes_sent,
        })
    }

    /// Sends a large file in parts, each with the MD5 `bodies` has for it.
    /// With a journal, the upload ID and each acknowledged part are
    /// recorded as they happen; a journaled upload of the same bytes (size,
    /// mtime, blake3 and part size as when it began) is resumed from its
    /// finished parts, and one that can't be (the file or `--part-size`
    /// changed) is aborted before a new one begins, so no upload is left
    /// behind unrecorded. A failure that a later run may get past keeps the
    /// upload for it to resume; one that will not aborts it. Returns the
    /// object and the bytes sent by this run.
    async fn multipart(
        &self,
        key: &str,
        path: &Path,
        entry: &ScanEntry,
        meta: &ObjectMeta,
        bodies: &BodyDigests,
    ) -> Result<(PutOutcome, u64), StoreError> {
        let size = entry.size;
        let part_size = bodies
            .part_size
            .unwrap_or_else(|| part_size_for(size, self.part_size));
        let body = Body {
            key,
            path,
            size,
            part_size,
            bodies,
        };
        let journaled = self
            .journal
            .as_ref()
            .and_then(|j| j.with("reading", |db, set| db.journaled_upload(set, key)))
            .flatten();
        if let Some((upload, parts)) = journaled {
            let resumable = upload.path == entry.path
                && upload.size == size
                && upload.mtime_ns == entry.mtime_ns
                && upload.blake3 == meta.blake3
                && upload.part_size == part_size;
            if resumable {
                tracing::info!(key, parts = parts.len(), "resuming an interrupted upload");
                let done = parts
                    .into_iter()
                    .map(|(number, etag)| CompletedPart { number, etag })
                    .collect();
                match self.send_parts(&body, &upload.upload_id, done).await {
                    // The store no longer knows the upload (aborted, expired, or
                    // its completion was cut off half-way): start over.
                    Err(StoreError::NotFound(e) | StoreError::AccessDenied(e)) => {
                        tracing::info!(key, "{e}; starting the upload again");
                        self.forget(key);
                    }
                    other => return other,
                }
            } else {
                match retry(key, || {
                    self.request(self.store.abort_multipart(key, &upload.upload_id))
                })
                .await
                {
                    Ok(()) | Err(StoreError::NotFound(_)) => {
                        tracing::info!(key, "aborted an unfinished upload that can't be resumed");
                        self.forget(key);
                    }
                    // Kept in the journal: the sweep of a later run aborts it.
                    Err(e) => return Err(e),
                }
            }
        }
        // A completion cut off half-way leaves the store without the upload
        // and maybe without the object: sent once more from the start.
        let mut attempts_left = 2;
        loop {
            attempts_left -= 1;
            let upload_id = retry(key, || async {
                let begun = self.request(self.store.create_multipart(key, meta)).await;
                if begun.as_ref().is_err_and(StoreError::is_transient) {
                    // The store may have begun it and the answer been lost.
                    let mut keys = self.maybe_lost_uploads.lock().unwrap_or_else(|p| p.into_inner());
                    if !keys.iter().any(|k| k == key) {
                        keys.push(key.to_string());
                    }
                }
                begun
            })
            .await?;
            if let Some(j) = &self.journal {
                let begun = JournaledUpload {
                    key: key.to_string(),
                    upload_id: upload_id.clone(),
                    path: entry.path.clone(),
                    size,
                    mtime_ns: entry.mtime_ns,
                    blake3: meta.blake3.clone(),
                    part_size,
                };
                j.with("recording an upload", |db, set| db.begin_upload(set, &begun));
            }
            match self.send_parts(&body, &upload_id, Vec::new()).await {
                Err(StoreError::NotFound(e)) if attempts_left > 0 => {
                    tracing::info!(key, "{e}; starting the upload again");
                }
                other => return other,
            }
        }
    }

    /// Uploads the parts not in `done`, then completes the upload. Returns
    /// the object and the bytes this call sent.
    async fn send_parts(
        &self,
        body: &Body<'_>,
        upload_id: &str,
        mut done: Vec<CompletedPart>,
    ) -> Result<(PutOutcome, u64), StoreError> {
        let Body {
            key,
            path,
            size,
            part_size,
            bodies,
        } = *body;
        let count = size.div_ceil(part_size);
        let have: std::collections::HashSet<i32> = done.iter().map(|p| p.number).collect();
        let already: u64 = done
            .iter()
            .map(|p| part_size.min(size - (p.number as u64 - 1) * part_size))
            .sum();
        self.progress.advance(already);
        let parts = futures::stream::iter((0..count).filter(|i| !have.contains(&(*i as i32 + 1))))
            .map(|i| async move {
                let offset = i * part_size;
                let number = i as i32 + 1;
                let range = FileRange {
                    path,
                    offset,
                    len: part_size.min(size - offset),
                    md5: bodies.part(number),
                };
                let etag = retry(key, || {
                    self.request(self.store.upload_part(key, upload_id, number, range))
                })
                .await?;
                if let Some(j) = &self.journal {
                    j.with("recording a part", |db, set| {
                        db.record_part(set, key, number, &etag)
                    });
                }
                self.progress.advance(range.len);
                Ok::<_, StoreError>(CompletedPart { number, etag })
            })
            .buffer_unordered(self.jobs)
            .collect::<Vec<_>>()
            .await;
        for part in parts {
            match part {
                Ok(p) => done.push(p),
                Err(e) => return Err(self.failed_upload(key, upload_id, e).await),
            }
        }
        done.sort_by_key(|p| p.number);
        match retry(key, || {
            self.request(self.store.complete_multipart(key, upload_id, &done))
        })
        .await
        {
            Ok(put) => {
                self.forget(key);
                Ok((put, size - already))
            }
            // A retried completion whose first answer was lost finds the
            // upload gone. Whatever the key holds now cannot be told from
            // an older object with certainty: the caller sends the file again.
            Err(e @ (StoreError::NotFound(_) | StoreError::AccessDenied(_))) => {
                self.forget(key);
                Err(StoreError::NotFound(format!("{e} (the upload is gone)")))
            }
            Err(e) => Err(self.failed_upload(key, upload_id, e).await),
        }
    }

    /// After a part or the completion failed: with a journal, an upload
    /// another run can finish (a network failure) is kept for it;
    /// otherwise, or when it cannot be finished, it is aborted.
    async fn failed_upload(&self, key: &str, upload_id: &str, e: StoreError) -> StoreError {
        let keep = self.journal.is_some() && matches!(e, StoreError::Transient(_));
        if !keep && !matches!(e, StoreError::NotFound(_)) {
            if let Err(abort) = self.request(self.store.abort_multipart(key, upload_id)).await {
                tracing::warn!("{abort}");
            }
            self.forget(key);
        }
        e
    }

    fn forget(&self, key: &str) {
        if let Some(j) = &self.journal {
            j.with("forgetting an upload", |db, set| db.forget_upload(set, key));
        }
    }
}

/// One file sent in parts: where its bytes are and how they are cut.
#[derive(Clone, Copy)]
struct Body<'a> {
    key: &'a str,
    path: &'a Path,
    /// File size, bytes.
    size: u64,
    /// Part size, bytes.
    part_size: u64,
    /// The MD5 of each part, when known.
    bodies: &'a BodyDigests,
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
