//! Stage 1, opening a run: the source made absolute and checked against
//! the store, the store reached and checked (created if missing), the
//! state file opened and the set locked, and a set's state rebuilt from
//! the target's newest snapshot when this state file has none for it or
//! it no longer matches what the target holds.
//!
//! A dry run never writes the state file: it reads it, or works on a
//! scratch copy of what it needs (a set rebuilt from a manifest), and it
//! neither locks the set nor creates the bucket.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::BackupError;
use super::BackupOptions;
use super::rebuild::{self, RebuildError};
use crate::fs::scan;
use crate::manifest;
use crate::snapshots::SnapshotError;
use crate::state::{RunLock, StateDb};
use crate::store::{self, ObjectStore, Prepared, StoreError};

/// What the later stages need from an opened run.
pub(super) struct Opened {
    /// SOURCE, absolute and canonical.
    pub source: PathBuf,
    /// The same, as text (the set's name in the state and manifests).
    pub source_text: String,
    /// The target's store.
    pub store: Arc<dyn ObjectStore>,
    /// The set's id in the state file in use.
    pub set_id: i64,
    /// The state file in use: the real one, or a dry run's scratch copy.
    pub state_path: PathBuf,
    /// Whether the bucket or store directory existed, was created or is missing.
    pub prepared: Prepared,
    /// Whether the set has rows (else no content can be copied server-side).
    pub has_rows: bool,
    /// The set's run lock (none in a dry run), held until the run ends.
    _lock: Option<RunLock>,
    /// A dry run's scratch directory, removed when the run ends.
    _scratch: Option<tempfile::TempDir>,
}

/// Opens a run: see the module doc. Returns what later stages need and
/// the state connection (which the apply stage takes over).
pub(super) async fn open(opts: &BackupOptions) -> Result<(Opened, StateDb), BackupError> {
    let source = absolute_source(&opts.source)?;
    crate::fs::own::check_source(&source, &opts.target)?;
    crate::fs::fstype::map_source_names(&source, !opts.dry_run);
    let store_err = |cause| BackupError::Store {
        target: opts.target.canonical(),
        cause,
    };
    let store = store::open_cancellable(&opts.target, &opts.s3, &opts.cancel)
        .await
        .map_err(store_err)?;
    if let Some(lock) = &opts.s3.write.lock {
        check_lock(&*store, lock).await.map_err(store_err)?;
    }
    let set_target = store::set_target(&opts.target, &*store);
    let source_text = source.to_string_lossy().to_string();
    let set_source = opts.set_source.clone().unwrap_or_else(|| source_text.clone());
    let scratch = if opts.dry_run {
        Some(tempfile::tempdir().map_err(BackupError::Scratch)?)
    } else {
        None
    };
    let scratch_path = scratch.as_ref().map(|d| d.path().join("state.db"));
    let (mut db, mut state_path) = match &scratch_path {
        Some(scratch_path) => dry_run_state(&opts.state_path, scratch_path, &set_source, &set_target)?,
        None => (StateDb::open(&opts.state_path)?, opts.state_path.clone()),
    };
    // Known to a dry run reading the real state: nothing is written.
    let mut set_id = db.ensure_set(&set_source, &set_target)?;
    let lock = if opts.dry_run {
        None
    } else {
        Some(db.lock_set(set_id)?)
    };

    let latest = if db.has_rows(set_id)? {
        db.latest_manifest(set_id)?
    } else {
        None
    };
    // A local store's directory gone from under a set that wrote there is
    // a disk that is not mounted, not a store to start afresh: not created.
    if let (crate::target::Target::Local { root }, Some(key)) = (&opts.target, &latest)
        && !crate::fs::safe_path::lexical_absolute(root).exists()
    {
        return Err(store_err(StoreError::Fatal(format!(
            "the store directory is gone, though this set's latest snapshot {key} was written there: if its disk is not mounted, mount it; to back up into it anew, create the directory"
        ))));
    }
    let (prepared, stale) = check_target(&*store, opts.target.prefix(), latest, !opts.dry_run)
        .await
        .map_err(store_err)?;
    if let Some(missing) = &stale {
        tracing::warn!(
            "{}: this set's latest snapshot {missing} is missing or no longer the newest (another store or account, an emptied bucket, or another writer): the state is rebuilt from what the target holds",
            opts.target
        );
        match &scratch_path {
            // The real state stays as it is; the plan is made on a scratch one.
            Some(scratch_path) => {
                state_path = scratch_path.clone();
                db = StateDb::open(&state_path)?;
                set_id = db.ensure_set(&set_source, &set_target)?;
            }
            None => db.clear_files(set_id)?,
        }
    }
    if prepared == Prepared::Existing {
        rebuild_if_unknown(opts, &*store, &mut db, set_id, &source, stale.is_some()).await?;
    }
    let has_rows = db.has_rows(set_id)?;
    let opened = Opened {
        source,
        source_text,
        store,
        set_id,
        state_path,
        prepared,
        has_rows,
        _lock: lock,
        _scratch: scratch,
    };
    Ok((opened, db))
}

/// `--lock-days` needs a bucket with Object Lock enabled: asked before
/// anything is written (a missing bucket is not created for it).
async fn check_lock(store: &dyn ObjectStore, lock: &crate::lock::Retention) -> Result<(), StoreError> {
    match store.object_lock().await? {
        Some(_) => Ok(()),
        None => Err(StoreError::Fatal(format!(
            "--lock-days ({}) needs a bucket with Object Lock enabled, and {} has it off (README, \"Immutable backups\", says how to turn it on)",
            lock.describe(),
            store.describe()
        ))),
    }
}

/// A dry run's state, which it never writes: the state file at `path`
/// opened read-only when it has rows for the set (so it works on a
/// read-only copy, and never migrates the schema); a scratch copy at
/// `scratch` migrated there when its schema is older than this build's;
/// else an empty scratch state at `scratch` (no state file, or one that
/// never backed the set up: everything is new). Returns the connection
/// and the path it reads.
fn dry_run_state(
    path: &Path,
    scratch: &Path,
    source: &str,
    set_target: &str,
) -> Result<(StateDb, PathBuf), BackupError> {
    if path.exists() {
        // An older schema is read from an upgraded scratch copy.
        let db = StateDb::open_read_only(path)?;
        let known = db
            .find_set(source, set_target)?
            .map(|id| db.has_rows(id))
            .transpose()?
            .unwrap_or(false);
        if known {
            return Ok((db, path.to_path_buf()));
        }
    }
    Ok((StateDb::open(scratch)?, scratch.to_path_buf()))
}

/// Rebuilds the set's rows from the target's newest readable snapshot
/// when this state file has never backed the set up, or (`stale`) its
/// latest snapshot is not what the target holds.
///
/// Only a set this state file has never backed up is rebuilt: a known
/// set with no rows may have had them taken by a run that died mid-way
/// (see `StateDb::take_rows`), and the snapshot is then older than the bucket.
async fn rebuild_if_unknown(
    opts: &BackupOptions,
    store: &dyn ObjectStore,
    db: &mut StateDb,
    set_id: i64,
    source: &Path,
    stale: bool,
) -> Result<(), BackupError> {
    let unknown = !db.has_rows(set_id)? && !db.has_runs(set_id)?;
    if !unknown && !stale {
        return Ok(());
    }
    let rebuilt = match rebuild::from_latest_manifest(store, &opts.target, db, set_id, source).await {
        // Nothing to rebuild from: with no rows every file is sent, which is right.
        Err(RebuildError::Snapshot(e @ SnapshotError::NoneReadable { .. })) => {
            tracing::warn!("no state for this backup set, and {e}: uploading every file");
            None
        }
        other => other?,
    };
    if let Some(r) = rebuilt {
        tracing::warn!(
            "no state for this backup set: rebuilt it from snapshot {} ({} files); files are hashed, not re-uploaded",
            r.snapshot,
            r.files
        );
    }
    Ok(())
}

/// Checks the target before a run, in one request when nothing is wrong.
///
/// A set that has written a snapshot (`latest`, its manifest key) lists
/// the manifests from that key on (one ListObjectsV2 of two keys): its own
/// manifest first and nothing after it means the bucket exists, holds what
/// the state describes and nobody else has written a snapshot since, so
/// the state's "unchanged" can be trusted. Otherwise the missing or
/// outdated key is returned and the caller rebuilds the state from what
/// the target holds:
/// - the manifest is missing: a migration to another endpoint, another
///   account, an emptied or recreated bucket (the bucket is then checked,
///   and created if `create`, the usual way);
/// - a readable snapshot is newer: another source or machine backs up to
///   the same prefix (its `--delete` may have removed this set's files).
///   A newer object that is not a readable manifest (a stray) is passed
///   over, so junk costs one header read per run, never a rebuild.
///
/// Any other answer falls back to the usual check, whose errors name the problem.
async fn check_target(
    store: &dyn ObjectStore,
    prefix: &str,
    latest: Option<String>,
    create: bool,
) -> Result<(Prepared, Option<String>), StoreError> {
    let Some(key) = latest else {
        return Ok((store.prepare(create).await?, None));
    };
    let dir = crate::snapshots::manifest_prefix(prefix);
    let page = match store.list_after(&dir, &just_before(&key), 2).await {
        Ok(page) => page,
        Err(StoreError::NotFound(_)) => return Ok((store.prepare(create).await?, Some(key))),
        // Already bounded and tried again: a second bounded wait on the
        // bucket check would only double the time before the first word.
        Err(e @ StoreError::Transient(_)) => return Err(e),
        Err(_) => return Ok((store.prepare(create).await?, None)),
    };
    if page.first().is_none_or(|o| o.key != key) {
        return Ok((store.prepare(create).await?, Some(key)));
    }
    for newer in &page[1..] {
        let Some(id) = newer.key[dir.len()..].strip_suffix(manifest::SUFFIX) else {
            continue;
        };
        let snapshot = crate::snapshots::Snapshot {
            id: id.to_string(),
            key: newer.key.clone(),
            manifest_size: newer.size,
        };
        if let crate::snapshots::Health::Readable(header) = crate::snapshots::check(store, &snapshot).await? {
            tracing::warn!(
                "a newer snapshot {} under this prefix was written by a backup of '{}' on {}: this set's state is rebuilt from what the target holds",
                snapshot.id,
                header.source,
                header.host
            );
            return Ok((Prepared::Existing, Some(key)));
        }
    }
    Ok((Prepared::Existing, None))
}

/// A key that sorts just before `key` and after every other key that
/// sorts before it (for a listing that starts at `key` itself).
fn just_before(key: &str) -> String {
    let mut bytes = key.as_bytes().to_vec();
    match bytes.pop() {
        // Keys here end in ASCII (".zst"); anything else starts from the prefix.
        Some(last) if last.is_ascii() && last > 0 => {
            bytes.push(last - 1);
            String::from_utf8(bytes).unwrap_or_default()
        }
        _ => String::new(),
    }
}

/// The source as an absolute path, so a set is the same set from any working directory.
fn absolute_source(source: &Path) -> Result<PathBuf, scan::ScanError> {
    match std::fs::metadata(source) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => return Err(scan::ScanError::NotADirectory(source.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(scan::ScanError::Missing(source.to_path_buf()));
        }
        Err(e) => return Err(scan::ScanError::Unreadable(source.to_path_buf(), e)),
    }
    crate::fs::winpath::canonicalize(source).map_err(|e| scan::ScanError::Unreadable(source.to_path_buf(), e))
}
