//! A backup run, end to end: check the target, walk, decide, hash,
//! transfer, record, write the manifest.
//!
//! The walk runs on a blocking thread, merged in path order with a
//! read-only snapshot of the state (its own connection), and hands the
//! files that need hashing over a bounded channel in chunks; they are
//! hashed, decided (`plan::decide_file`) and sent while the walk goes on,
//! so memory stays bounded however large the tree or the first backup.
//! Metadata-only updates and deletions follow once the walk is done;
//! deletions run last, after every copy that may read them. `--dry-run`
//! runs the same decisions and lists them instead of executing them.
//! Objects whose path changed type (see `plan`) are deleted at the start of
//! the chunk that brings them, before anything is written; if one cannot
//! be, every later write that conflicts with its path fails for the run.
//!
//! Transfers run with bounded concurrency: at most `jobs` files in flight
//! and at most `jobs` requests (parts included) at once (see `transfer`).
//! A failure on one file is retried if transient, then recorded and
//! reported; it never stops the others and never reaches the state file.
//! State rows are written only after their upload succeeded, in batches.

pub mod rebuild;
pub mod spare;
pub mod transfer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use md5::Digest;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::backup::transfer::{Did, Engine, Journal};
use crate::cancel::{Cancel, Interrupted};
use crate::fs::hash;
use crate::fs::names;
use crate::fs::scan::{self, EntryKind, ScanEntry};
use crate::manifest;
use crate::plan::{self, Action};
use crate::progress::Progress;
use crate::report::Failure;
use crate::snapshots::SnapshotError;
use crate::state::now_secs;
use crate::state::{FileChange, FileRow, RunCounts, RunStatus, StateDb};
use crate::store::retry::retry;
use crate::store::{self, FileRange, ObjectMeta, ObjectStore, Prepared, S3Settings, StoreError, join_key};
use crate::target::Target;
use rebuild::RebuildError;

/// Everything a backup run needs to know, validated by the caller.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Directory to back up.
    pub source: PathBuf,
    /// Where to.
    pub target: Target,
    /// State database file.
    pub state_path: PathBuf,
    /// Remove remote files whose local file is gone.
    pub delete: bool,
    /// Plan and print, change nothing.
    pub dry_run: bool,
    /// What to follow and what to leave out.
    pub walk: scan::WalkOptions,
    /// Hash every file, trusting no stat (`--rehash`).
    pub rehash: bool,
    /// Files and requests in flight at once.
    pub jobs: usize,
    /// Files larger than this use multipart upload.
    pub multipart_threshold: u64,
    /// Multipart part size (raised if a file would need more than 10,000 parts).
    pub part_size: u64,
    /// How to reach S3, and the bandwidth limit (`s3.bandwidth`).
    pub s3: S3Settings,
    /// Stops the run early and cleanly (Ctrl-C): see [`crate::cancel`].
    pub cancel: Cancel,
}

/// What a run did, for the summary and `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    /// What was done, file by file.
    #[serde(flatten)]
    pub counts: RunCounts,
    /// Special files not backed up.
    pub skipped: u64,
    /// Files and directories left out by filters (a directory counts once).
    pub excluded: u64,
    /// Wall time of the run.
    pub elapsed_ms: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Key of the manifest written, if any.
    pub snapshot: Option<String>,
    /// The failed files.
    pub failures: Vec<Failure>,
    /// The planned actions, one line each (dry run only).
    #[serde(skip)]
    pub planned: Vec<String>,
    /// Whether the bucket or store directory was created.
    #[serde(skip)]
    pub created_target: bool,
    /// The set's id in the state file (of the scratch copy in a dry run).
    #[serde(skip)]
    pub set_id: i64,
}

/// Why a backup could not run at all (per-file problems are [`Failure`]s).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The source directory is missing or unreadable.
    #[error(transparent)]
    Source(#[from] scan::ScanError),
    /// The state file could not be used.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The target could not be reached or used.
    #[error("target {target}: {cause}")]
    Store {
        /// The target.
        target: String,
        /// What the store said.
        cause: StoreError,
    },
    /// Writing the manifest failed; the files themselves are backed up.
    #[error("writing the snapshot manifest: {0}")]
    Manifest(String),
    /// A set this state file never saw could not be rebuilt from the
    /// bucket's snapshots (a store or state error: damaged manifests are not).
    #[error("rebuilding state from the newest readable snapshot: {0}")]
    Rebuild(#[from] RebuildError),
    /// SOURCE lies inside the local store it would be backed up to.
    #[error(transparent)]
    Own(#[from] crate::fs::own::OwnError),
    /// The run was cancelled ([`BackupOptions::cancel`]): the transfers it
    /// finished are recorded, the run is recorded as interrupted, and
    /// unfinished multipart uploads stay journaled for the next run.
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
}

/// How many state rows to commit per transaction.
const STATE_BATCH: usize = 512;

/// Files handed from the walk to hashing and transfers at a time: the
/// bound on how much of a large first backup is in memory at once.
const CHUNK: usize = 2048;
/// The longest object key S3 accepts, in bytes of UTF-8.
const MAX_KEY_BYTES: usize = 1024;

/// Runs one backup.
pub async fn run(opts: &BackupOptions, progress: Arc<dyn Progress>) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    let source = absolute_source(&opts.source)?;
    crate::fs::own::check_source(&source, &opts.target)?;
    let target_text = opts.target.canonical();
    let store_err = |source| BackupError::Store {
        target: target_text.clone(),
        cause: source,
    };

    let store = store::open_cancellable(&opts.target, &opts.s3, &opts.cancel)
        .await
        .map_err(store_err)?;
    let set_target = store::set_target(&opts.target, &*store);

    // A dry run never writes the state file: it reads it, or works on a
    // scratch copy of what it needs (a set rebuilt from a manifest).
    let scratch =
        tempfile::tempdir().map_err(|e| BackupError::Manifest(format!("scratch directory: {e}")))?;
    let scratch_path = scratch.path().join("state.db");
    let source_text = source.to_string_lossy().to_string();
    let mut state_path = opts.state_path.clone();
    if opts.dry_run {
        let known = state_path.exists() && {
            let db = StateDb::open(&state_path)?;
            db.find_set(&source_text, &set_target)?
                .map(|id| db.has_rows(id))
                .transpose()?
                .unwrap_or(false)
        };
        if !known {
            state_path = scratch_path.clone();
        }
    }
    let mut db = StateDb::open(&state_path)?;
    let mut set_id = db.ensure_set(&source_text, &set_target)?;
    let _lock = if opts.dry_run {
        None
    } else {
        Some(db.lock_set(set_id)?)
    };

    let latest = if db.has_rows(set_id)? {
        db.latest_manifest(set_id)?
    } else {
        None
    };
    let (prepared, stale) = check_target(&*store, opts.target.prefix(), latest, !opts.dry_run)
        .await
        .map_err(store_err)?;
    if let Some(missing) = &stale {
        tracing::warn!(
            "{}: this set's latest snapshot {missing} is missing or no longer the newest (another store or account, an emptied bucket, or another writer): the state is rebuilt from what the target holds",
            opts.target
        );
        if opts.dry_run {
            // The real state stays as it is; the plan is made on a scratch one.
            state_path = scratch_path;
            db = StateDb::open(&state_path)?;
            set_id = db.ensure_set(&source_text, &set_target)?;
        } else {
            db.clear_files(set_id)?;
        }
    }

    // Only a set this state file has never backed up is rebuilt from a
    // snapshot: a known set with no rows may have had them taken by a run
    // that died mid-way (see `StateDb::take_rows`), and the snapshot is
    // then older than the bucket. A set whose latest snapshot the target
    // lacks is rebuilt from what the target holds.
    let unknown = !db.has_rows(set_id)? && !db.has_runs(set_id)?;
    if (unknown || stale.is_some()) && prepared == Prepared::Existing {
        let rebuilt =
            match rebuild::from_latest_manifest(&*store, &opts.target, &mut db, set_id, &source).await {
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
    }
    let has_rows = db.has_rows(set_id)?;

    let mut report = BackupReport {
        counts: RunCounts::default(),
        skipped: 0,
        excluded: 0,
        elapsed_ms: 0,
        dry_run: opts.dry_run,
        snapshot: None,
        failures: Vec::new(),
        planned: Vec::new(),
        created_target: prepared == Prepared::Created,
        set_id,
    };
    if opts.dry_run && prepared == Prepared::Missing {
        report.planned.push(format!("create {}", store.describe()));
    }
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let run_row = if opts.dry_run {
        None
    } else {
        Some(db.begin_run(set_id, &run_id, "backup")?)
    };
    let db = Mutex::new(db);
    let mut engine = Engine::new(
        store.clone(),
        source.clone(),
        opts.target.prefix().to_string(),
        opts.jobs,
        opts.multipart_threshold,
        opts.part_size,
        progress.clone(),
    );
    if !opts.dry_run {
        // Its own connection: parts finish on many tasks at once.
        let journal = Journal::new(StateDb::open(&state_path)?, set_id);
        let prefix = opts.target.prefix();
        let upload_prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let interrupted = match run_row {
            Some(row) => lock(&db).interrupted_run_start(set_id, row)?,
            None => None,
        };
        journal
            .abort_abandoned(&*store, &source, &upload_prefix, interrupted)
            .await;
        engine = engine.with_journal(journal);
    }
    let engine = Arc::new(engine);
    let mut run = RunState {
        engine: &engine,
        db: &db,
        set_id,
        dry_run: opts.dry_run,
        report: &mut report,
        failures: Vec::new(),
        failed_sources: Vec::new(),
        blocked: Vec::new(),
        pending_marked: false,
        run_row,
        cancel: &opts.cancel,
    };

    // The walk (merged with a read-only snapshot of the state) runs on a
    // blocking thread and hands changed files over in chunks: they are
    // hashed, decided and sent while the walk goes on. Rows whose path
    // changed type come down the same channel, always before the entries
    // they conflict with, and each chunk deletes them first.
    let (tx, mut rx) = mpsc::channel(CHUNK);
    let walker = {
        let (root, state_path, tick) = (source.clone(), state_path.clone(), progress.clone());
        let mut walk_options = opts.walk.clone();
        // The real state file (also in a dry run) and the one in use.
        walk_options.own = crate::fs::own::OwnFiles::find(
            &[&opts.state_path, &state_path],
            match &opts.target {
                Target::Local { root } => Some(root.as_path()),
                Target::S3 { .. } => None,
            },
        );
        let (rehash, cancel) = (opts.rehash, opts.cancel.clone());
        tokio::task::spawn_blocking(move || {
            let reader = StateDb::open_reader(&state_path)?;
            scan_and_triage(
                (&reader, set_id),
                &root,
                &walk_options,
                rehash,
                &cancel,
                |n| tick.scanned(n),
                |found| {
                    // The receiver only goes away when the run is failing anyway.
                    let _ = tx.blocking_send(found);
                },
            )
        })
    };
    loop {
        let mut found = Vec::with_capacity(CHUNK);
        if rx.recv_many(&mut found, CHUNK).await == 0 {
            break;
        }
        // Cancelled: no new file is started (returning drops `rx`, so the walk stops too).
        run.check()?;
        let mut chunk = Vec::with_capacity(found.len());
        let mut replaced = Vec::new();
        for f in found {
            match f {
                plan::Found::Changed(entry, old) => chunk.push((entry, old)),
                plan::Found::Replaced(row) => replaced.push(row),
            }
        }
        run.replace(replaced).await?;
        chunk.retain(|(entry, _)| run.unblocked(&entry.path));
        if let Target::S3 { prefix, .. } = &opts.target {
            chunk.retain(|(entry, _)| {
                let len = join_key(prefix, &entry.path).len();
                if len <= MAX_KEY_BYTES {
                    return true;
                }
                run.failures.push(Failure {
                    path: entry.path.clone(),
                    error: format!("its key would be {len} bytes, over S3's limit of {MAX_KEY_BYTES}"),
                });
                false
            });
        }
        let mut actions = Vec::new();
        let (hashed_files, hashed_bytes) = (chunk.len() as u64, chunk.iter().map(|(e, _)| e.size).sum());
        let Ok(hashed_chunk) = opts.cancel.run(hash_chunk(&source, chunk, &engine)).await else {
            return Err(run.interrupted());
        };
        progress.hashed(hashed_files, hashed_bytes);
        for (entry, old, hashed) in hashed_chunk {
            let hashed = match hashed {
                Ok(h) => h,
                Err(e) => {
                    run.failures.push(Failure {
                        path: entry.path,
                        error: format!("reading: {e}"),
                    });
                    continue;
                }
            };
            let source_for_copy = |hash: &str, size| {
                has_rows
                    .then(|| copy_source(&db, set_id, &source, hash, size))
                    .flatten()
            };
            match plan::decide_file(entry, old, hashed, source_for_copy) {
                plan::Decision::Refresh(row) => {
                    run.report.counts.unchanged += 1;
                    run.refresh(row)?;
                }
                plan::Decision::Act(action) => actions.push(action),
            }
        }
        run.execute(actions).await?;
    }
    let outcome = walker
        .await
        .map_err(|e| BackupError::Manifest(format!("scan task failed: {e}")))??;
    // A walk cut short by a cancel leaves rows unmatched: they must not be taken for deletions.
    run.check()?;
    let ScanOutcome {
        mut triage,
        scanned,
        skipped,
        errors,
        excluded,
    } = outcome;
    for s in &skipped {
        tracing::warn!(path = %s.path, "{}", s.reason);
    }
    run.failures.extend(errors.iter().map(|p| Failure {
        path: p.path.clone(),
        error: p.reason.clone(),
    }));
    triage.protect(&errors.iter().map(|p| p.path.clone()).collect::<Vec<_>>());
    // What a filter leaves out is not deleted by `--delete` either (as in
    // rclone and the AWS CLI): it stays in the bucket as it was, also once
    // it is gone locally (the walk's filter, applied to the rows).
    triage.protect(&excluded);
    if opts.delete {
        spare::spare_filtered(
            &mut triage.vanished,
            &source,
            &opts.walk,
            &*store,
            opts.target.prefix(),
            opts.jobs,
        )
        .await;
    }
    run.report.excluded = excluded.len() as u64;
    run.report.counts.scanned = scanned;
    run.report.counts.unchanged += triage.unchanged;
    run.report.skipped = skipped.len() as u64;

    // A directory at or under a path whose old object could not be
    // replaced gets no row: the row of that object stays.
    triage.dirs.retain(|d| {
        !run.blocked
            .iter()
            .any(|p| d.path == *p || plan::is_under(&d.path, p))
    });
    if !opts.dry_run && !triage.dirs.is_empty() {
        run.mark_pending()?;
        let rows: Vec<FileChange> = triage
            .dirs
            .iter()
            .map(|d| FileChange::Upsert(dir_row(d)))
            .collect();
        lock(&db).apply(set_id, &rows)?;
    }
    let touches = triage
        .mode_only
        .into_iter()
        .filter(|(entry, _)| run.unblocked(&entry.path))
        .map(|(entry, old)| Action::Touch { entry, old })
        .collect();
    run.execute(touches).await?;
    // Deletions wait for every transfer: a rename's copy reads the object
    // its delete removes. A path whose copy failed is not deleted either,
    // so its content stays in the bucket until the next run uploads it.
    if opts.delete {
        let deletes = triage
            .vanished
            .into_iter()
            .filter(|r| !run.failed_sources.contains(&r.path))
            .map(Action::Delete)
            .collect();
        run.execute(deletes).await?;
    }
    if !opts.dry_run {
        engine.abort_lost_uploads().await;
    }
    progress.finish();
    let mut failures = std::mem::take(&mut run.failures);
    drop(run);
    failures.sort_by(|a, b| a.path.cmp(&b.path));
    report.counts.failed = failures.len() as u64;
    report.failures = failures;

    let Some(run_row) = run_row else {
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    };
    let db = db.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    // A run that sent nothing and failed files leaves the snapshot to the
    // next run: a "latest" that only adds directories would restore as if
    // the failed files never existed.
    let c = report.counts;
    let sent_nothing = c.uploaded + c.copied + c.touched + c.deleted == 0;
    let manifest_result = if db.manifest_pending(set_id)? && !(sent_nothing && c.failed > 0) {
        write_manifest(&db, set_id, &*store, &source_text, &opts.target, &run_id).await
    } else {
        Ok(None)
    };
    let counts = report.counts;
    match manifest_result {
        Ok(key) => {
            if key.is_some() {
                db.set_manifest_pending(set_id, false)?;
            }
            report.snapshot = key;
            let status = if report.counts.failed > 0 {
                RunStatus::Partial
            } else {
                RunStatus::Ok
            };
            db.finish_run(run_row, status, &counts, report.snapshot.as_deref(), None)?;
        }
        Err(e) => {
            db.finish_run(run_row, RunStatus::Failed, &counts, None, Some(&e.to_string()))?;
            return Err(e);
        }
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
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

/// The state connection, even if a task panicked while holding it (its
/// writes are transactions, so the database itself is consistent).
fn lock(db: &Mutex<StateDb>) -> std::sync::MutexGuard<'_, StateDb> {
    db.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A path the bucket holds this content under and that this run will not
/// overwrite ([`plan::copy_source`]), each candidate's path statted now.
fn copy_source(
    db: &Mutex<StateDb>,
    set_id: i64,
    root: &Path,
    blake3: &str,
    size: u64,
) -> Option<plan::CopySource> {
    let rows = lock(db)
        .rows_with_content(set_id, blake3, size)
        .unwrap_or_else(|e| {
            tracing::warn!("looking up content for a server-side copy: {e}");
            Vec::new()
        });
    plan::copy_source(rows, |path| {
        match std::fs::symlink_metadata(names::local(root, path)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => plan::PathNow::Gone,
            Err(_) => plan::PathNow::Other,
            Ok(md) => plan::PathNow::of(&md),
        }
    })
}

/// What the execution side of a run carries between chunks.
struct RunState<'a> {
    engine: &'a Arc<Engine>,
    db: &'a Mutex<StateDb>,
    set_id: i64,
    dry_run: bool,
    report: &'a mut BackupReport,
    failures: Vec<Failure>,
    failed_sources: Vec<String>,
    /// Paths whose old object could not be replaced (its delete failed):
    /// nothing is written at, under or above them in this run.
    blocked: Vec<String>,
    pending_marked: bool,
    /// The run's row in the state file (none in a dry run).
    run_row: Option<i64>,
    cancel: &'a Cancel,
}

impl RunState<'_> {
    /// `Ok` until the run is cancelled; then see [`Self::interrupted`].
    fn check(&mut self) -> Result<(), BackupError> {
        match self.cancel.check() {
            Ok(()) => Ok(()),
            Err(Interrupted) => Err(self.interrupted()),
        }
    }

    /// Records the run as interrupted, with what it did so far, and
    /// returns the error that ends it. No manifest is written: the state
    /// still owes one (`manifest_pending`), and the next run writes it.
    fn interrupted(&mut self) -> BackupError {
        if let Some(row) = self.run_row {
            let mut counts = self.report.counts;
            counts.failed = self.failures.len() as u64;
            if let Err(e) = lock(self.db).finish_run(row, RunStatus::Interrupted, &counts, None, None) {
                tracing::warn!("recording the run as interrupted: {e}");
            }
        }
        BackupError::Interrupted(Interrupted)
    }

    /// Records, before the first remote change, that a manifest is owed.
    fn mark_pending(&mut self) -> Result<(), BackupError> {
        if !self.pending_marked && !self.dry_run {
            lock(self.db).set_manifest_pending(self.set_id, true)?;
            self.pending_marked = true;
        }
        Ok(())
    }

    /// Deletes the objects (and rows) of paths whose type changed, before
    /// anything is written there: counted as deleted, logged with `-v`. A
    /// path whose delete fails keeps its row and blocks every write that
    /// conflicts with it for the rest of the run (reported, exit 3), so
    /// nothing is written through or beside an old object still there.
    async fn replace(&mut self, rows: Vec<FileRow>) -> Result<(), BackupError> {
        if rows.is_empty() {
            return Ok(());
        }
        for row in &rows {
            tracing::info!(path = %row.path, kind = row.kind.name(), "replaced: type changed");
        }
        if self.dry_run {
            for row in &rows {
                self.report
                    .planned
                    .push(format!("delete {} (replaced: type changed)", row.path));
                self.report.counts.deleted += u64::from(row.kind.has_content());
            }
            return Ok(());
        }
        let before = self.failures.len();
        self.execute(rows.into_iter().map(Action::Delete).collect())
            .await?;
        let failed: Vec<String> = self.failures[before..].iter().map(|f| f.path.clone()).collect();
        self.blocked.extend(failed);
        Ok(())
    }

    /// Whether `path` may be written: no failed replacement conflicts with
    /// it. If one does, the path is reported as failed.
    fn unblocked(&mut self, path: &str) -> bool {
        let Some(p) = self.blocked.iter().find(|p| plan::overlaps(path, p)) else {
            return true;
        };
        self.failures.push(Failure {
            path: path.to_string(),
            error: format!("not backed up: '{p}' changed type and its old object could not be deleted"),
        });
        false
    }

    /// Writes back a racy row that proved unchanged, with its new check time.
    fn refresh(&mut self, row: FileRow) -> Result<(), BackupError> {
        if self.dry_run {
            return Ok(());
        }
        lock(self.db).apply(self.set_id, &[FileChange::Upsert(row)])?;
        Ok(())
    }

    /// Carries out actions (or, in a dry run, lists them).
    async fn execute(&mut self, actions: Vec<Action>) -> Result<(), BackupError> {
        if actions.is_empty() {
            return Ok(());
        }
        if self.dry_run {
            for action in &actions {
                self.report.planned.push(action.describe());
                let c = &mut self.report.counts;
                match action {
                    Action::Upload { entry, .. } => {
                        c.uploaded += 1;
                        c.bytes_sent += entry.size;
                    }
                    Action::Copy { .. } => c.copied += 1,
                    Action::Touch { .. } => c.touched += 1,
                    Action::Delete(row) if row.kind.has_content() => c.deleted += 1,
                    Action::Delete(_) => {}
                }
            }
            return Ok(());
        }
        self.mark_pending()?;
        let failed = match execute(
            self.engine,
            actions,
            (self.db, self.set_id),
            self.report,
            &mut self.failures,
            self.cancel,
        )
        .await
        {
            Err(BackupError::Interrupted(_)) => return Err(self.interrupted()),
            other => other?,
        };
        self.failed_sources.extend(failed);
        Ok(())
    }
}

/// Runs actions `jobs` at a time, counting results and committing state
/// rows in batches. Returns the sources of copies that failed.
///
/// Once `cancel` is cancelled no action starts, and those in flight are
/// dropped: an action never started gets its taken row back (its object is
/// as it was); one cut off is handled as a failed one (a delete's row comes
/// back, another's stays out: its object may have been replaced), but not
/// reported. The rows of finished actions are committed, then
/// [`BackupError::Interrupted`] is returned.
async fn execute(
    engine: &Arc<Engine>,
    actions: Vec<Action>,
    (db, set_id): (&Mutex<StateDb>, i64),
    report: &mut BackupReport,
    failures: &mut Vec<Failure>,
    cancel: &Cancel,
) -> Result<Vec<String>, BackupError> {
    let mut failed_sources = Vec::new();
    let progress = engine.progress().clone();
    let bytes: u64 = actions
        .iter()
        .map(|a| match a {
            Action::Upload { entry, .. } => entry.size,
            _ => 0,
        })
        .sum();
    progress.queued(actions.len() as u64, bytes);
    // Rows of objects about to be replaced or deleted leave the state first
    // (see `StateDb::take_rows`); a failure puts its row back below.
    let paths: Vec<&str> = actions.iter().map(Action::path).collect();
    let taken = tokio::task::block_in_place(|| lock(db).take_rows(set_id, &paths))?;
    let mut taken: std::collections::HashMap<String, FileRow> =
        taken.into_iter().map(|r| (r.path.clone(), r)).collect();
    let mut results = futures::stream::iter(actions)
        .map(|action| {
            let (engine, cancel) = (engine.clone(), cancel.clone());
            async move {
                if cancel.is_cancelled() {
                    return (action, None);
                }
                let outcome = cancel.run(engine.execute(&action)).await;
                (action, Some(outcome))
            }
        })
        .buffer_unordered(engine.jobs());
    let mut batch = Vec::with_capacity(STATE_BATCH);
    let mut last_flush = Instant::now();
    let mut interrupted = false;
    while let Some((action, outcome)) = results.next().await {
        let outcome = match outcome {
            Some(Ok(outcome)) => outcome,
            // Never started: the object is as it was, and so is its row.
            None => {
                interrupted = true;
                batch.extend(taken.remove(action.path()).map(FileChange::Upsert));
                continue;
            }
            // Cut off in flight: as a failure (below), without a report.
            Some(Err(Interrupted)) => {
                interrupted = true;
                if let (Action::Delete(_), Some(old)) = (&action, taken.remove(action.path())) {
                    batch.push(FileChange::Upsert(old));
                }
                continue;
            }
        };
        match outcome {
            Ok(done) => {
                progress.done(action.path(), done.did.label());
                report.counts.bytes_sent += done.bytes_sent;
                match done.did {
                    Did::Uploaded => report.counts.uploaded += 1,
                    Did::Copied => report.counts.copied += 1,
                    Did::Touched => report.counts.touched += 1,
                    Did::Deleted => report.counts.deleted += 1,
                    Did::Forgotten => {}
                }
                batch.push(done.change);
            }
            Err(e) => {
                progress.done(action.path(), "failed");
                if let Action::Copy { from, .. } = &action {
                    failed_sources.push(from.clone());
                }
                // A failed upload, copy or touch may still have replaced the
                // object (a PUT whose answer was lost, a body the store kept
                // before refusing it, a file that changed after its upload):
                // its old row is dropped, so nothing claims or copies from
                // content the object may no longer hold, and the next run
                // hashes the file afresh. A failed delete leaves the object
                // as it was, or gone: its row comes back so `--delete` tries
                // again, and a copy from a gone object falls back to an upload.
                if let (Action::Delete(_), Some(old)) = (&action, taken.remove(action.path())) {
                    batch.push(FileChange::Upsert(old));
                }
                failures.push(Failure {
                    path: action.path().to_string(),
                    error: e.to_string(),
                });
            }
        }
        if batch.len() >= STATE_BATCH || last_flush.elapsed() > Duration::from_secs(2) {
            tokio::task::block_in_place(|| lock(db).apply(set_id, &batch))?;
            batch.clear();
            last_flush = Instant::now();
        }
    }
    drop(results);
    lock(db).apply(set_id, &batch)?;
    if interrupted {
        return Err(BackupError::Interrupted(Interrupted));
    }
    Ok(failed_sources)
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
    source
        .canonicalize()
        .map_err(|e| scan::ScanError::Unreadable(source.to_path_buf(), e))
}

/// What one streaming pass over the tree and the state found.
struct ScanOutcome {
    triage: plan::Triage,
    scanned: u64,
    skipped: Vec<scan::ScanProblem>,
    /// Paths left out by filters (a directory stands for its subtree).
    excluded: Vec<String>,
    errors: Vec<scan::ScanProblem>,
}

/// Walks the source and merges it with the set's rows without holding
/// either whole; files to hash and rows to replace go to `found` as they
/// are found.
fn scan_and_triage(
    (db, set_id): (&StateDb, i64),
    root: &Path,
    walk_options: &scan::WalkOptions,
    rehash: bool,
    cancel: &Cancel,
    tick: impl FnMut(usize),
    found: impl FnMut(plan::Found),
) -> Result<ScanOutcome, BackupError> {
    // A cancelled run stops walking (what it found is then not used).
    let walk = scan::walk_with(root, walk_options, tick)?.take_while(|_| !cancel.is_cancelled());
    let dir_rows = db.dir_rows(set_id)?;
    let (mut scanned, mut skipped, mut errors, mut excluded) = (0u64, Vec::new(), Vec::new(), Vec::new());
    let entries = walk.filter_map(|item| match item {
        scan::Walked::Excluded { path, .. } => {
            excluded.push(path);
            None
        }
        scan::Walked::Entry(e) => {
            scanned += u64::from(e.kind.has_content());
            Some(e)
        }
        scan::Walked::Skipped(p) => {
            skipped.push(p);
            None
        }
        scan::Walked::Error(p) => {
            errors.push(p);
            None
        }
    });
    let triage = db.with_file_rows(set_id, |rows| {
        plan::triage_with(entries, rows, dir_rows, rehash, found)
    })?;
    Ok(ScanOutcome {
        triage,
        scanned,
        skipped,
        errors,
        excluded,
    })
}

/// Hashes a chunk of files on blocking threads, one per core, with the
/// MD5 of each request body the engine will send them in.
async fn hash_chunk(
    source: &Path,
    chunk: Vec<(ScanEntry, Option<FileRow>)>,
    engine: &Engine,
) -> Vec<(ScanEntry, Option<FileRow>, std::io::Result<hash::Hashed>)> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    futures::stream::iter(chunk)
        .map(|(entry, old)| {
            let path = names::local(source, &entry.path);
            let part_size = engine.part_size_of(entry.size);
            async move {
                let seen = entry.clone();
                let result = tokio::task::spawn_blocking(move || hash::hash_file(&path, &seen, part_size))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                (entry, old, result)
            }
        })
        .buffered(threads)
        .collect()
        .await
}

fn dir_row(entry: &ScanEntry) -> FileRow {
    FileRow {
        path: entry.path.clone(),
        kind: EntryKind::Dir,
        size: 0,
        mtime_ns: entry.mtime_ns,
        mode: entry.mode,
        blake3: String::new(),
        etag: String::new(),
        version_id: None,
        uploaded_at: now_secs(),
        checked_ns: entry.seen_ns,
        stamp: Some(entry.stamp),
    }
}

/// Streams the set's state into a compressed temp file, then uploads it.
async fn write_manifest(
    db: &StateDb,
    set_id: i64,
    store: &dyn ObjectStore,
    source: &str,
    target: &Target,
    run_id: &str,
) -> Result<Option<String>, BackupError> {
    let fail = |e: &dyn std::fmt::Display| BackupError::Manifest(e.to_string());
    let created = chrono::Utc::now();
    let (files, bytes) = db.totals(set_id)?;
    let mut dirs = 0;
    db.for_each_file(set_id, |r| {
        dirs += u64::from(r.kind == EntryKind::Dir);
        Ok(())
    })?;
    let header = manifest::Header {
        format: manifest::FORMAT,
        tool: format!("s3backup {}", env!("CARGO_PKG_VERSION")),
        source: source.to_string(),
        target: target.canonical(),
        host: gethostname::gethostname().to_string_lossy().to_string(),
        created: created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        run_id: run_id.to_string(),
        files,
        dirs,
        bytes,
    };
    let tmp = tempfile::NamedTempFile::new().map_err(|e| fail(&e))?;
    let mut hasher = blake3::Hasher::new();
    let mut md5 = md5::Md5::new();
    {
        let file = tmp.as_file().try_clone().map_err(|e| fail(&e))?;
        let mut writer = manifest::Writer::new(
            HashingWriter {
                inner: file,
                hasher: &mut hasher,
                md5: &mut md5,
            },
            &header,
        )
        .map_err(|e| fail(&e))?;
        db.for_each_file(set_id, |row| {
            writer
                .push(&manifest::Entry::from(&row))
                .map_err(|source| crate::state::StateError::Io {
                    path: tmp.path().to_path_buf(),
                    cause: source,
                })
        })?;
        writer.finish().map_err(|e| fail(&e))?;
    }
    let len = tmp.as_file().metadata().map_err(|e| fail(&e))?.len();
    let key = join_key(
        target.prefix(),
        &format!("{}/{}", manifest::DIR, manifest::file_name(created, run_id)),
    );
    let meta = ObjectMeta {
        mtime_ns: created.timestamp_nanos_opt().unwrap_or_default(),
        mode: 0o644,
        blake3: hasher.finalize().to_hex().to_string(),
        symlink: false,
    };
    let range = FileRange {
        path: tmp.path(),
        offset: 0,
        len,
        md5: Some(md5.finalize().into()),
    };
    retry(&key, || store.put_file(&key, range, &meta))
        .await
        .map_err(|e| fail(&e))?;
    Ok(Some(key))
}

/// Hashes what passes through, so the manifest's blake3 and MD5 cost no second read.
struct HashingWriter<'a, W> {
    inner: W,
    hasher: &'a mut blake3::Hasher,
    md5: &'a mut md5::Md5,
}

impl<W: std::io::Write> std::io::Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.md5.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
