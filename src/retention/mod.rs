//! Retention: `snapshots forget` (which snapshots go, by restic's policy
//! rules or by ID: [`policy`]) and `--prune` / `snapshots prune` (which
//! preserved content objects no kept snapshot needs any more: [`prune`]).
//!
//! Order, for crash safety: the forgotten manifests are deleted first,
//! then the content no remaining manifest references. A kill between the
//! two leaves garbage the next prune frees, never a kept snapshot without
//! its content. The newest readable snapshot is never forgotten; a damaged
//! one only when named. A prune refuses to run while a damaged snapshot is
//! kept, since what it references cannot be read (forget it by ID first).

pub mod locked;
pub mod policy;
pub mod prune;

use std::collections::HashSet;

use serde::Serialize;

pub use locked::Locked;
pub use policy::Policy;
pub use prune::PruneReport;

use crate::snapshots::{self, Damage, Health, Snapshot, SnapshotError};
use crate::store::{ObjectStore, StoreError};

/// What `forget` does: the policy, the snapshots named, and whether to prune.
#[derive(Debug, Clone)]
pub struct ForgetOptions {
    /// The keep rules (empty: forget only the snapshots named).
    pub policy: Policy,
    /// Snapshots named by ID (or unique prefix), damaged or not.
    pub ids: Vec<String>,
    /// Also delete the content no kept snapshot references.
    pub prune: bool,
    /// Change nothing; report what would go.
    pub dry_run: bool,
    /// Deletions in flight at once.
    pub jobs: usize,
    /// Content stored less than this before the command started is kept
    /// by a prune ([`prune::DEFAULT_MIN_AGE`] unless given).
    pub min_age: std::time::Duration,
    /// The target as text, for messages.
    pub target: String,
}

impl Default for ForgetOptions {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            ids: Vec::new(),
            prune: false,
            dry_run: false,
            jobs: crate::store::flow::DEFAULT_CEILING,
            min_age: prune::DEFAULT_MIN_AGE,
            target: String::new(),
        }
    }
}

/// What `forget` did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct ForgetReport {
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// IDs of the snapshots removed (or to be removed), oldest first.
    pub removed: Vec<String>,
    /// How many readable snapshots are kept.
    pub kept: usize,
    /// The damaged snapshots left alone.
    pub damaged: Vec<Damage>,
    /// The snapshots the rules would remove but whose manifests are still
    /// under Object Lock: kept, each with its lock (see [`locked`]).
    pub locked: Vec<Locked>,
    /// What the prune did, when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneReport>,
}

/// Why a forget or prune stopped.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// A snapshot could not be found, named or read.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The newest readable snapshot was named.
    #[error("snapshot {0} is the newest readable snapshot ('latest'): snapshots forget never removes it")]
    Newest(String),
    /// A manifest could not be removed.
    #[error("removing snapshot {id}: {source}")]
    Removing {
        /// The snapshot.
        id: String,
        /// The store's error.
        source: StoreError,
    },
    /// A prune with damaged snapshots kept: their references are unknown.
    #[error(
        "cannot prune: {what} is kept and what it references cannot be read; forget it by ID first (s3backup snapshots forget {target} ID)"
    )]
    DamagedKept {
        /// The target text.
        target: String,
        /// The damaged snapshots, described.
        what: String,
    },
    /// A kept manifest's entries could not be read to the end.
    #[error(
        "cannot prune: snapshot {id} cannot be read to the end ({reason}); nothing was deleted from the content area (what it references is unknown: forget it by ID first, or keep it and prune nothing)"
    )]
    Unreadable {
        /// The snapshot.
        id: String,
        /// Why.
        reason: String,
    },
    /// A snapshot named by ID is still under Object Lock.
    #[error(
        "snapshot {id} is locked ({}) by S3 Object Lock: it cannot be forgotten before then; nothing was removed",
        lock.describe()
    )]
    Locked {
        /// The snapshot.
        id: String,
        /// Its lock.
        lock: crate::lock::Retention,
    },
    /// A local failure (a worker thread).
    #[error("{0}")]
    Local(String),
}

/// Removes the snapshots the policy leaves out and those named (the
/// newest readable one never), then prunes when asked.
///
/// # Errors
/// [`RetentionError::Snapshot`] for an ID that names none or several;
/// [`RetentionError::Newest`] when the newest readable one is named;
/// [`RetentionError::DamagedKept`] for a prune while a damaged snapshot
/// stays (checked before anything is removed); store errors.
pub async fn forget(
    store: &dyn ObjectStore,
    prefix: &str,
    opts: &ForgetOptions,
) -> Result<ForgetReport, RetentionError> {
    let start = chrono::Utc::now();
    let list = snapshots::list(store, prefix).await?;
    let health = snapshots::check_all(store, &list).await?;
    let mut readable = Vec::new();
    let mut damaged = Vec::new();
    for (snap, health) in list.iter().zip(health) {
        match health {
            Health::Readable(header) => readable.push((snap, header)),
            Health::Damaged(reason) => damaged.push((snap, reason)),
        }
    }
    let (doomed, locked) = unlocked(
        store,
        opts,
        start,
        &list,
        &readable,
        doomed(opts, &list, &readable)?,
    )
    .await?;
    let gone: HashSet<&str> = doomed.iter().map(|s| s.key.as_str()).collect();
    let left_damaged: Vec<Damage> = damaged
        .into_iter()
        .filter(|(s, _)| !gone.contains(s.key.as_str()))
        .map(|(s, reason)| Damage {
            id: s.id.clone(),
            reason,
        })
        .collect();
    if opts.prune && !left_damaged.is_empty() {
        return Err(RetentionError::DamagedKept {
            target: opts.target.clone(),
            what: snapshots::describe_damage(&left_damaged),
        });
    }
    let kept: Vec<Snapshot> = readable
        .iter()
        .filter(|(s, _)| !gone.contains(s.key.as_str()))
        .map(|(s, _)| (*s).clone())
        .collect();
    let mut removed = Vec::new();
    for snap in &doomed {
        if !opts.dry_run {
            store
                .delete(&snap.key)
                .await
                .map_err(|source| RetentionError::Removing {
                    id: snap.id.clone(),
                    source,
                })?;
        }
        removed.push(snap.id.clone());
    }
    let prune = if opts.prune {
        let ignore: HashSet<String> = gone.iter().map(|k| (*k).to_string()).collect();
        let run = prune::Run {
            store,
            prefix,
            dry_run: opts.dry_run,
            jobs: opts.jobs.max(1),
            start,
            min_age: opts.min_age,
        };
        Some(run.prune(&kept, &ignore).await?)
    } else {
        None
    };
    Ok(ForgetReport {
        dry_run: opts.dry_run,
        removed,
        kept: kept.len(),
        damaged: left_damaged,
        locked,
        prune,
    })
}

/// `snapshots prune`: deletes the content no snapshot references, keeping
/// every readable snapshot (a damaged one stops it, as in [`forget`]).
///
/// # Errors
/// As [`forget`] with `--prune` and no rule.
pub async fn prune_only(
    store: &dyn ObjectStore,
    prefix: &str,
    opts: &ForgetOptions,
) -> Result<PruneReport, RetentionError> {
    let only = ForgetOptions {
        policy: Policy::default(),
        ids: Vec::new(),
        prune: true,
        ..opts.clone()
    };
    let report = forget(store, prefix, &only).await?;
    report
        .prune
        .ok_or_else(|| RetentionError::Local("the prune did not run".into()))
}

/// Splits `doomed` into the snapshots that may go and those still under
/// Object Lock (kept: see [`locked`]).
///
/// # Errors
/// [`RetentionError::Locked`] when one named by ID is locked (checked
/// before anything is removed); a HEAD's error.
async fn unlocked<'a>(
    store: &dyn ObjectStore,
    opts: &ForgetOptions,
    start: chrono::DateTime<chrono::Utc>,
    list: &[Snapshot],
    readable: &[(&Snapshot, crate::manifest::Header)],
    doomed: Vec<&'a Snapshot>,
) -> Result<(Vec<&'a Snapshot>, Vec<Locked>), RetentionError> {
    let mut probe = locked::LockProbe::new(store, start);
    let (mut free, mut held) = (Vec::new(), Vec::new());
    for snap in doomed {
        let recorded = readable
            .iter()
            .find(|(s, _)| s.key == snap.key)
            .and_then(|(_, h)| h.lock);
        let Some(lock) = probe.snapshot(snap, recorded).await? else {
            free.push(snap);
            continue;
        };
        for id in &opts.ids {
            if snapshots::resolve(list, id, &opts.target)?.key == snap.key {
                return Err(RetentionError::Locked {
                    id: snap.id.clone(),
                    lock,
                });
            }
        }
        held.push(Locked {
            id: snap.id.clone(),
            lock,
        });
    }
    Ok((free, held))
}

/// When a readable snapshot was taken: its header's `created`, else its ID's time.
fn taken(snap: &Snapshot, header: &crate::manifest::Header) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(&header.created)
        .map(|t| t.with_timezone(&chrono::Utc))
        .ok()
        .or_else(|| snapshots::created(snap))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
}

/// The snapshots `forget` removes, sorted by ID: those the policy leaves
/// out of the readable ones (never the newest), and those named by ID.
fn doomed<'a>(
    opts: &ForgetOptions,
    list: &'a [Snapshot],
    readable: &[(&'a Snapshot, crate::manifest::Header)],
) -> Result<Vec<&'a Snapshot>, RetentionError> {
    let newest = readable.last().map(|(s, _)| s.key.clone());
    let mut doomed: Vec<&Snapshot> = Vec::new();
    if !opts.policy.is_empty() {
        let candidates: Vec<policy::Candidate> = readable
            .iter()
            .map(|(s, h)| policy::Candidate {
                time: taken(s, h),
                tags: &h.tags,
            })
            .collect();
        let why = policy::apply(&candidates, &opts.policy, &chrono::Local, chrono::Utc::now());
        for ((snap, _), reasons) in readable.iter().zip(why) {
            if reasons.is_empty() && newest.as_ref() != Some(&snap.key) {
                doomed.push(snap);
            }
        }
    }
    for id in &opts.ids {
        let named = snapshots::resolve(list, id, &opts.target)?;
        if newest.as_ref() == Some(&named.key) {
            return Err(RetentionError::Newest(named.id.clone()));
        }
        if !doomed.iter().any(|s| s.key == named.key) {
            doomed.push(named);
        }
    }
    doomed.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(doomed)
}
