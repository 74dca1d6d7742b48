//! Keeping a locked snapshot whole: a run with `--lock-days` writes its
//! new versions locked until its date, but its snapshot also names the
//! versions earlier runs wrote, locked only as long as those runs said.
//! Before the manifest is written, each version the snapshot names whose
//! known lock ends before half of this run's period (run start + N/2 days)
//! gets this run's date (PutObjectRetention, at most `jobs` at a time
//! under an adaptive limit, [`crate::store::flow`]); the state
//! remembers each version's lock (`locks`, see [`crate::state`]), so a
//! version is extended about once per N/2 days, not on every run. The
//! snapshot's recorded lock is then the earliest lock among its versions
//! and its manifest: at least the run's start plus N/2 days.
//!
//! A version whose lock cannot be extended (a compliance lock a
//! governance run may not weaken, a version gone) is reported; the
//! snapshot then records no lock (not all of it is known to be locked),
//! and `snapshots` shows none.

use futures::StreamExt;

use super::BackupOptions;
use crate::lock::{LockMode, Retention};
use crate::state::StateDb;
use crate::store::flow::Flow;
use crate::store::retry::retry;
use crate::store::{ObjectStore, join_key};

/// Extends the locks that end too early (each in the stronger of its own
/// mode and `lock`'s) and returns the snapshot's lock: compliance only
/// when `lock` and every version it names are compliance, else governance,
/// until the earliest lock of those versions (and never later than
/// `lock`); `None` when one of them has no known lock.
pub(super) async fn relock(
    db: &StateDb,
    set_id: i64,
    store: &dyn ObjectStore,
    opts: &BackupOptions,
    lock: Retention,
    started: chrono::DateTime<chrono::Utc>,
) -> Option<Retention> {
    let (start, until) = (started.timestamp(), lock.until.timestamp());
    let warn =
        |e: &dyn std::fmt::Display| tracing::warn!("recording the Object Lock of the run's versions: {e}");
    if let Err(e) = db.lock_written(set_id, start, until, lock.mode.s3_name()) {
        warn(&e);
        return None;
    }
    let ending = match db.locks_ending_before(set_id, start + (until - start) / 2) {
        Ok(ending) => ending,
        Err(e) => {
            warn(&e);
            return None;
        }
    };
    let prefix = opts.target.prefix();
    let lock = &lock;
    let flow = &Flow::new(opts.jobs, store.signals(), "lock extensions");
    let mut extended = futures::stream::iter(ending)
        .map(|(path, version, mode)| async move {
            let key = join_key(prefix, &path);
            // The stronger of the version's own mode and the run's: a
            // compliance lock extended in governance mode would be weakened
            // where a store allows that (moto does; S3 refuses it).
            let recorded = mode.as_deref().and_then(LockMode::from_s3);
            let own = Retention {
                mode: if recorded == Some(LockMode::Compliance) {
                    LockMode::Compliance
                } else {
                    lock.mode
                },
                ..*lock
            };
            let done = retry(&key, || async {
                let _permit = flow.acquire().await?;
                store.put_retention(&key, &version, &own).await
            })
            .await;
            (path, version, own.mode, done)
        })
        .buffer_unordered(opts.jobs.max(1));
    let mut failed = 0u64;
    while let Some((path, version, mode, done)) = extended.next().await {
        match done {
            Ok(()) => {
                if let Err(e) = db.lock_extended(set_id, &path, &version, until, mode.s3_name()) {
                    warn(&e);
                }
            }
            Err(e) => {
                failed += 1;
                tracing::warn!(path = %path, "extending its Object Lock to {}: {e}", lock.describe());
            }
        }
    }
    if failed > 0 {
        tracing::warn!(
            "{failed} version(s) the snapshot names could not be locked until its date: the snapshot records no lock"
        );
    }
    let (floor, all_compliance) = db.lock_floor(set_id).inspect_err(|e| warn(e)).ok()??;
    // The weakest mode among the versions (and the manifest, in the run's mode).
    let mode = if all_compliance && lock.mode == LockMode::Compliance {
        LockMode::Compliance
    } else {
        LockMode::Governance
    };
    Some(Retention {
        mode,
        until: chrono::DateTime::from_timestamp(floor.min(until), 0)?,
    })
}
