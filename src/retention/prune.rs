//! Prune: delete the objects of the content area ([`crate::history`]) that
//! no kept snapshot references.
//!
//! One pass, planned before anything is deleted:
//! 1. every kept manifest is streamed (downloaded to a temporary file a
//!    few at a time, read line by line) into a set of the blake3 hashes its
//!    entries name: 32 bytes per distinct hash (about 40–75 with the hash
//!    table's slack), never whole manifests or entry lists in memory;
//! 2. the content area is listed once; an object is a *candidate* when its
//!    key is a content key ([`crate::history::blake3_of_key`]; anything
//!    else there is left alone), its hash is not in the set, and it was
//!    stored (its Last-Modified; a local store's file's change time) before
//!    the start of the command less `--min-age` (default
//!    [`DEFAULT_MIN_AGE`]): content a backup copies in while the prune runs
//!    is never deleted, even with the store's clock behind this machine's
//!    by as much as S3 itself allows. A time given in whole seconds (S3's
//!    listings) may be up to a second later, and is judged so; an object
//!    without a Last-Modified is kept;
//! 3. the manifests are listed again right before deleting: a snapshot
//!    that appeared meanwhile (a backup from another machine) has its
//!    references read and taken out of the candidates; one that cannot be
//!    read stops the prune with nothing deleted;
//! 4. the candidates are deleted, at most `jobs` at a time (an adaptive
//!    limit under that ceiling, [`crate::store::flow`]).
//!
//! Crash safety: only objects no manifest present at step 3 references
//! are deleted, and forgotten manifests are deleted before the prune
//! starts, so a kill at any point leaves every kept snapshot complete;
//! the next prune deletes what is left. The window it cannot close: a
//! backup that copied content in before the prune started and writes its
//! manifest after step 3 (run prunes when no other machine backs up to
//! the same target, or from the machine that does).

use std::collections::HashSet;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::RetentionError;
use crate::history;
use crate::snapshots::{self, Health, Snapshot};
use crate::store::ObjectStore;
use crate::store::flow::Flow;

/// How much older than the prune's start a content object must look to
/// be deleted, unless `--min-age` says otherwise: 15 minutes, the clock
/// skew S3 accepts in a signed request (a store whose clock is further off
/// refuses them), so a copy made after the start never looks older than
/// the cut-off.
pub const DEFAULT_MIN_AGE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Manifests downloaded ahead while one is read.
const MANIFESTS_AHEAD: usize = 4;

/// One content object deleted (or to be deleted).
#[derive(Debug, Clone, Serialize)]
pub struct Pruned {
    /// Its key.
    pub key: String,
    /// Its size.
    pub bytes: u64,
}

/// What a prune did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    /// Whether nothing was deleted.
    pub dry_run: bool,
    /// Content objects deleted (would be, in a dry run).
    pub deleted_objects: u64,
    /// Their bytes: the space freed.
    pub deleted_bytes: u64,
    /// Content objects kept: referenced, or newer than the prune's start.
    pub kept_objects: u64,
    /// Their bytes.
    pub kept_bytes: u64,
    /// Of the kept ones, those kept because they are younger than the
    /// prune's start less `--min-age` (referenced or not).
    pub kept_new: u64,
    /// Objects in the content area that are not content keys, left alone.
    pub other_objects: u64,
    /// Snapshots whose references were read (the kept ones, plus any that
    /// appeared while the prune ran).
    pub snapshots_read: usize,
    /// The objects deleted (would be, in a dry run), in key order.
    pub deleted: Vec<Pruned>,
    /// Unreferenced objects kept because they are still under Object Lock
    /// (counted in `kept_objects` too), each with its lock: they go on the
    /// first prune after it.
    pub locked: Vec<super::Locked>,
}

/// One prune's settings.
pub(super) struct Run<'a> {
    /// The store.
    pub(super) store: &'a dyn ObjectStore,
    /// The target prefix.
    pub(super) prefix: &'a str,
    /// Delete nothing.
    pub(super) dry_run: bool,
    /// Deletions in flight at once.
    pub(super) jobs: usize,
    /// When the command started.
    pub(super) start: chrono::DateTime<chrono::Utc>,
    /// Content stored later than `start` less this is kept.
    pub(super) min_age: std::time::Duration,
}

/// A blake3 hash as 32 bytes (the set's entries).
type Hash = [u8; 32];

/// The 32 bytes of a 64-digit lowercase hex blake3; `None` for anything else.
fn hash_of(hex: &str) -> Option<Hash> {
    if !history::is_blake3_hex(hex) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The latest a stored time may be: a time in whole seconds (as S3's
/// listings give it) may stand for any moment of that second.
fn latest_time(ns: i64) -> i64 {
    if ns.rem_euclid(1_000_000_000) == 0 {
        ns.saturating_add(999_999_999)
    } else {
        ns
    }
}

impl Run<'_> {
    /// Plans and carries out the prune, keeping `kept` (readable manifests)
    /// and ignoring, on the second listing, the manifests in `ignore` (the
    /// ones just forgotten: still there in a dry run).
    ///
    /// # Errors
    /// [`RetentionError::Unreadable`] when a manifest to keep cannot be read
    /// to the end, store errors; nothing is deleted after either.
    pub(super) async fn prune(
        &self,
        kept: &[Snapshot],
        ignore: &HashSet<String>,
    ) -> Result<PruneReport, RetentionError> {
        let mut report = PruneReport {
            dry_run: self.dry_run,
            ..PruneReport::default()
        };
        let mut seen: HashSet<String> = kept.iter().map(|s| s.key.clone()).collect();
        let mut referenced = self.references(kept, HashSet::new()).await?;
        report.snapshots_read = kept.len();
        let mut candidates = self.list_content(&referenced, &mut report).await?;
        // A snapshot written meanwhile keeps what it references.
        let now: Vec<Snapshot> = snapshots::list(self.store, self.prefix)
            .await?
            .into_iter()
            .filter(|s| !ignore.contains(&s.key) && seen.insert(s.key.clone()))
            .collect();
        if !now.is_empty() {
            for snap in &now {
                if let Health::Damaged(reason) = snapshots::check(self.store, snap).await? {
                    return Err(RetentionError::Unreadable {
                        id: snap.id.clone(),
                        reason,
                    });
                }
            }
            referenced = self.references(&now, referenced).await?;
            report.snapshots_read += now.len();
            let (still, saved): (Vec<_>, Vec<_>) = candidates
                .into_iter()
                .partition(|(hash, _)| !referenced.contains(hash));
            for (_, p) in saved {
                report.kept_objects += 1;
                report.kept_bytes += p.bytes;
            }
            candidates = still;
        }
        drop(referenced);
        let doomed = self
            .unlocked(candidates.into_iter().map(|(_, p)| p).collect(), &mut report)
            .await?;
        if !self.dry_run {
            self.delete_all(&doomed).await?;
        }
        report.deleted_objects = doomed.len() as u64;
        report.deleted_bytes = doomed.iter().map(|p| p.bytes).sum();
        report.deleted = doomed;
        Ok(report)
    }

    /// Adds the hashes every entry of `snaps` names to `set`, streaming
    /// each manifest from a temporary file.
    async fn references(
        &self,
        snaps: &[Snapshot],
        set: HashSet<Hash>,
    ) -> Result<HashSet<Hash>, RetentionError> {
        let mut opened = futures::stream::iter(snaps)
            .map(|s| async move { (s, snapshots::open_manifest(self.store, s).await) })
            .buffered(MANIFESTS_AHEAD);
        let mut set = set;
        while let Some((snap, reader)) = opened.next().await {
            let reader = reader.map_err(|e| match e {
                snapshots::SnapshotError::Store(e) => RetentionError::Store(e),
                other => RetentionError::Unreadable {
                    id: snap.id.clone(),
                    reason: other.to_string(),
                },
            })?;
            let id = snap.id.clone();
            set = tokio::task::spawn_blocking(move || {
                for entry in reader {
                    let entry = entry.map_err(|e| RetentionError::Unreadable {
                        id: id.clone(),
                        reason: e.to_string(),
                    })?;
                    if let Some(hash) = hash_of(&entry.blake3) {
                        set.insert(hash);
                    }
                }
                Ok::<_, RetentionError>(set)
            })
            .await
            .map_err(|e| RetentionError::Local(format!("reading manifests: {e}")))??;
        }
        Ok(set)
    }

    /// Lists the content area once: returns the unreferenced, old enough
    /// content objects, and counts the rest into `report`.
    async fn list_content(
        &self,
        referenced: &HashSet<Hash>,
        report: &mut PruneReport,
    ) -> Result<Vec<(Hash, Pruned)>, RetentionError> {
        let area = history::content_prefix(self.prefix);
        let start_ns = self.start.timestamp_nanos_opt().unwrap_or(i64::MAX);
        let age_ns = i64::try_from(self.min_age.as_nanos()).unwrap_or(i64::MAX);
        let cutoff_ns = start_ns.saturating_sub(age_ns);
        let mut candidates = Vec::new();
        let mut listing = self.store.list(&area);
        while let Some(object) = listing.try_next().await? {
            let Some(hash) = history::blake3_of_key(&area, &object.key).and_then(hash_of) else {
                report.other_objects += 1;
                continue;
            };
            let new = object
                .last_modified_ns
                .is_none_or(|t| latest_time(t) >= cutoff_ns);
            if new || referenced.contains(&hash) {
                report.kept_objects += 1;
                report.kept_bytes += object.size;
                report.kept_new += u64::from(new);
            } else {
                candidates.push((
                    hash,
                    Pruned {
                        key: object.key,
                        bytes: object.size,
                    },
                ));
            }
        }
        Ok(candidates)
    }

    /// The candidates not under Object Lock; the locked ones are counted
    /// as kept into `report` (see [`super::locked`]). One HEAD each, `jobs`
    /// at a time, on a bucket with Object Lock only.
    async fn unlocked(
        &self,
        doomed: Vec<Pruned>,
        report: &mut PruneReport,
    ) -> Result<Vec<Pruned>, RetentionError> {
        let mut probe = super::locked::LockProbe::new(self.store, self.start);
        if doomed.is_empty() || !probe.enabled().await {
            return Ok(doomed);
        }
        let probe = &probe;
        let flow = &Flow::new(self.jobs, self.store.signals(), "lock checks");
        let judged: Vec<(Pruned, Option<crate::lock::Retention>)> = futures::stream::iter(doomed)
            .map(|p| async move {
                let _permit = flow.acquire().await?;
                probe.head(&p.key).await.map(|lock| (p, lock))
            })
            .buffered(self.jobs)
            .try_collect()
            .await?;
        let mut free = Vec::with_capacity(judged.len());
        for (p, lock) in judged {
            match lock {
                Some(lock) => {
                    report.kept_objects += 1;
                    report.kept_bytes += p.bytes;
                    report.locked.push(super::Locked { id: p.key, lock });
                }
                None => free.push(p),
            }
        }
        Ok(free)
    }

    /// Deletes `doomed`, `jobs` at a time; the first failure stops it
    /// (what is left goes on the next prune).
    async fn delete_all(&self, doomed: &[Pruned]) -> Result<(), RetentionError> {
        let flow = &Flow::new(self.jobs, self.store.signals(), "deletions");
        futures::stream::iter(doomed)
            .map(|p| async move {
                let _permit = flow.acquire().await?;
                self.store.delete(&p.key).await
            })
            .buffer_unordered(self.jobs)
            .try_collect::<()>()
            .await
            .map_err(RetentionError::Store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_read_from_hex_and_nothing_else() {
        let hex = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
        let h = hash_of(hex).unwrap();
        assert_eq!(h[0], 0xaf);
        assert_eq!(h[31], 0x62);
        assert_eq!(hash_of(&hex.to_uppercase()), None);
        assert_eq!(hash_of(&hex[..62]), None);
        assert_eq!(hash_of(""), None);
    }

    #[test]
    fn a_time_in_whole_seconds_may_be_any_moment_of_that_second() {
        assert_eq!(latest_time(5_000_000_000), 5_999_999_999);
        assert_eq!(latest_time(5_000_000_001), 5_000_000_001);
        assert_eq!(latest_time(-1_000_000_000), -1);
    }
}
