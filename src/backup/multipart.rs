//! Sending a large file in parts (S3 multipart upload), parts in
//! parallel under the engine's request permits, journaled as they go so
//! an interrupted upload resumes from its finished parts (see
//! [`super::journal`]); and the sweep, after a run, of uploads the store
//! may have begun without the run hearing of it.

use std::path::Path;

use futures::StreamExt;

use super::transfer::Engine;
use crate::fs::hash::BodyDigests;
use crate::fs::scan::ScanEntry;
use crate::state::JournaledUpload;
use crate::store::retry::retry;
use crate::store::{
    CompletedPart, FileRange, MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, ObjectMeta, PutOutcome, StoreError,
};

impl Engine {
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

    /// Sends a large file in parts, each with the MD5 `bodies` has for it.
    /// With a journal, the upload ID and each acknowledged part are
    /// recorded as they happen; a journaled upload of the same bytes (size,
    /// mtime, blake3 and part size as when it began) is resumed from its
    /// finished parts, and one that can't be (the file or `--part-size`
    /// changed) is aborted before a new one begins, so no upload is left
    /// behind unrecorded. A failure that a later run may get past keeps the
    /// upload for it to resume; one that will not aborts it. Returns the
    /// object and the bytes sent by this run.
    pub(super) async fn multipart(
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
                && upload.part_size == part_size
                && upload.checksum == self.checksum;
            if resumable {
                tracing::info!(key, parts = parts.len(), "resuming an interrupted upload");
                // The same bytes cut the same way: each part's checksum is
                // the one this run's read computed.
                let done = parts
                    .into_iter()
                    .map(|(number, etag)| CompletedPart {
                        number,
                        etag,
                        checksum: bodies.sum(number).map(|s| s.base64()),
                    })
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
                    checksum: self.checksum,
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
                    sum: bodies.sum(number),
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
                self.sent
                    .fetch_add(range.len, std::sync::atomic::Ordering::Relaxed);
                Ok::<_, StoreError>(CompletedPart {
                    number,
                    etag,
                    checksum: range.sum.map(|s| s.base64()),
                })
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
        let whole = bodies.sums.as_ref().and_then(|s| s.full_object());
        match retry(key, || {
            self.request(self.store.complete_multipart(key, upload_id, &done, whole))
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

    pub(super) fn forget(&self, key: &str) {
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
