//! A backup run, end to end: check the target, scan, plan, hash, transfer,
//! record, write the manifest.
//!
//! Work is planned first and executed second, so `--dry-run` is "print the
//! plan". Transfers run with bounded concurrency: at most `jobs` files in
//! flight and at most `jobs` requests (parts included) at once, through one
//! semaphore whose permits are held only for a single request, so a large
//! multipart upload can never starve or deadlock the rest. A failure on one
//! file is retried if transient, then recorded and reported; it never stops
//! the others and never reaches the state file. State rows are written only
//! after their upload succeeded, in batches.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;

use crate::hash;
use crate::manifest;
use crate::plan::{self, Action};
use crate::progress::Progress;
use crate::rebuild;
use crate::scan::{self, EntryKind, ScanEntry};
use crate::state::{FileChange, FileRow, RunCounts, RunStatus, StateDb};
use crate::store::{self, FileRange, ObjectMeta, ObjectStore, Prepared, S3Settings, StoreError, join_key};
use crate::target::Target;
use crate::transfer::{Did, Engine, now_secs, retry};

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
    /// Files and requests in flight at once.
    pub jobs: usize,
    /// Files larger than this use multipart upload.
    pub multipart_threshold: u64,
    /// Multipart part size (raised if a file would need more than 10,000 parts).
    pub part_size: u64,
    /// How to reach S3.
    pub s3: S3Settings,
}

/// A file that was not backed up, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// Relative path.
    pub path: String,
    /// What went wrong.
    pub error: String,
}

/// What a run did, for the summary and `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    /// What was done, file by file.
    #[serde(flatten)]
    pub counts: RunCounts,
    /// Symlinks and special files not backed up.
    pub skipped: u64,
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
    #[error("target {target}: {source}")]
    Store {
        /// The target.
        target: String,
        /// What the store said.
        source: StoreError,
    },
    /// Writing the manifest failed; the files themselves are backed up.
    #[error("writing the snapshot manifest: {0}")]
    Manifest(String),
}

/// How many state rows to commit per transaction.
const STATE_BATCH: usize = 512;

/// Runs one backup.
pub async fn run(opts: &BackupOptions, progress: Arc<dyn Progress>) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    let source = absolute_source(&opts.source)?;
    let target_text = opts.target.canonical();
    let store_err = |source| BackupError::Store {
        target: target_text.clone(),
        source,
    };

    let mut db = if opts.dry_run && !opts.state_path.exists() {
        StateDb::in_memory()?
    } else {
        StateDb::open(&opts.state_path)?
    };
    let source_text = source.to_string_lossy().to_string();
    let mut set_id = if opts.dry_run {
        db.find_set(&source_text, &target_text)?.unwrap_or(-1)
    } else {
        db.ensure_set(&source_text, &target_text)?
    };
    if opts.dry_run && (set_id == -1 || db.load_files(set_id)?.is_empty()) {
        // A dry run may still rebuild state from a manifest, but only in memory.
        db = StateDb::in_memory()?;
        set_id = db.ensure_set(&source_text, &target_text)?;
    }
    let _lock = if opts.dry_run {
        None
    } else {
        Some(db.lock_set(set_id)?)
    };

    let store = store::open(&opts.target, &opts.s3).await.map_err(store_err)?;
    let prepared = store.prepare(!opts.dry_run).await.map_err(store_err)?;

    if !db.has_rows(set_id)? && prepared == Prepared::Existing {
        let rebuilt = rebuild::from_latest_manifest(&*store, opts.target.prefix(), &mut db, set_id, &source)
            .await
            .map_err(|e| BackupError::Manifest(format!("rebuilding state from the latest snapshot: {e}")))?;
        if let Some(r) = rebuilt {
            tracing::warn!(
                "no state for this backup set: rebuilt it from snapshot {} ({} files); files whose size and mtime differ are hashed, not re-uploaded",
                r.snapshot,
                r.files
            );
        }
    }

    // Walk the tree and merge it with the state rows in one streaming pass
    // on a blocking thread, which holds the state connection meanwhile.
    let scan_root = source.clone();
    let tick = progress.clone();
    let (returned_db, scanned) = tokio::task::spawn_blocking(move || {
        let result = scan_and_triage(&db, set_id, &scan_root, |n| tick.scanned(n));
        (db, result)
    })
    .await
    .map_err(|e| BackupError::Manifest(format!("scan task failed: {e}")))?;
    db = returned_db;
    let ScanOutcome {
        mut triage,
        scanned,
        skipped,
        errors,
    } = scanned?;
    for s in &skipped {
        tracing::warn!(path = %s.path, "{}", s.reason);
    }
    let mut failures: Vec<Failure> = errors
        .iter()
        .map(|p| Failure {
            path: p.path.clone(),
            error: p.reason.clone(),
        })
        .collect();
    triage.protect(&errors.iter().map(|p| p.path.clone()).collect::<Vec<_>>());
    let hashes = hash_all(&source, &triage.to_hash, &progress, &mut failures).await;
    let has_rows = db.has_rows(set_id)?;
    let plan = plan::decide(
        triage,
        &hashes,
        |blake3, size| {
            if !has_rows {
                return Vec::new();
            }
            db.paths_with_content(set_id, blake3, size).unwrap_or_else(|e| {
                tracing::warn!("looking up content for a server-side copy: {e}");
                Vec::new()
            })
        },
        opts.delete,
    );
    drop(hashes);

    let mut report = BackupReport {
        counts: RunCounts {
            scanned,
            unchanged: plan.unchanged,
            ..RunCounts::default()
        },
        skipped: skipped.len() as u64,
        elapsed_ms: 0,
        dry_run: opts.dry_run,
        snapshot: None,
        failures: Vec::new(),
        planned: Vec::new(),
        created_target: prepared == Prepared::Created,
    };

    if opts.dry_run {
        if prepared == Prepared::Missing {
            report.planned.push(format!("create {}", store.describe()));
        }
        for action in plan.transfers.iter().chain(&plan.deletes) {
            report.planned.push(action.describe());
            match action {
                Action::Upload { entry, .. } => {
                    report.counts.uploaded += 1;
                    report.counts.bytes_sent += entry.size;
                }
                Action::Copy { .. } => report.counts.copied += 1,
                Action::Touch { .. } => report.counts.touched += 1,
                Action::Delete(row) if row.kind == EntryKind::File => report.counts.deleted += 1,
                Action::Delete(_) => {}
            }
        }
        report.counts.failed = failures.len() as u64;
        report.failures = failures;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        progress.finish();
        return Ok(report);
    }

    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let run_row = db.begin_run(set_id, &run_id, "backup")?;
    let changes_planned = !plan.transfers.is_empty() || !plan.deletes.is_empty() || !plan.dirs.is_empty();
    if changes_planned {
        db.set_manifest_pending(set_id, true)?;
    }

    let engine = Arc::new(Engine::new(
        store.clone(),
        source.clone(),
        opts.target.prefix().to_string(),
        opts.jobs,
        opts.multipart_threshold,
        opts.part_size,
        progress.clone(),
    ));

    let quiet_rows: Vec<FileChange> = plan
        .dirs
        .iter()
        .map(|d| FileChange::Upsert(dir_row(d)))
        .chain(plan.refresh.iter().map(|r| {
            FileChange::Upsert(FileRow {
                uploaded_at: now_secs(),
                ..r.clone()
            })
        }))
        .collect();
    db.apply(set_id, &quiet_rows)?;

    let transfer_bytes = plan
        .transfers
        .iter()
        .map(|a| match a {
            Action::Upload { entry, .. } => entry.size,
            _ => 0,
        })
        .sum();
    progress.transferring(plan.transfers.len() as u64, transfer_bytes);
    // Deletions wait for every transfer: a rename's copy reads the object
    // its delete removes. A path whose copy failed is not deleted either,
    // so its content stays in the bucket until the next run uploads it.
    let failed_sources = execute(
        &engine,
        plan.transfers,
        &mut db,
        set_id,
        &mut report,
        &mut failures,
    )
    .await?;
    let deletes: Vec<Action> = plan
        .deletes
        .into_iter()
        .filter(|a| !failed_sources.iter().any(|p| p == a.path()))
        .collect();
    execute(&engine, deletes, &mut db, set_id, &mut report, &mut failures).await?;
    progress.finish();

    report.counts.failed = failures.len() as u64;
    report.failures = failures;
    let manifest_result = if db.manifest_pending(set_id)? {
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

/// Runs actions `jobs` at a time, counting results and committing state
/// rows in batches. Returns the sources of copies that failed.
async fn execute(
    engine: &Arc<Engine>,
    actions: Vec<Action>,
    db: &mut StateDb,
    set_id: i64,
    report: &mut BackupReport,
    failures: &mut Vec<Failure>,
) -> Result<Vec<String>, BackupError> {
    let mut failed_sources = Vec::new();
    let mut results = futures::stream::iter(actions)
        .map(|action| {
            let engine = engine.clone();
            async move {
                let outcome = engine.execute(&action).await;
                (action, outcome)
            }
        })
        .buffer_unordered(engine.jobs());
    let mut batch = Vec::with_capacity(STATE_BATCH);
    let mut last_flush = Instant::now();
    while let Some((action, outcome)) = results.next().await {
        match outcome {
            Ok(done) => {
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
                if let Action::Copy { from, .. } = &action {
                    failed_sources.push(from.clone());
                }
                failures.push(Failure {
                    path: action.path().to_string(),
                    error: e.to_string(),
                });
            }
        }
        if batch.len() >= STATE_BATCH || last_flush.elapsed() > Duration::from_secs(2) {
            tokio::task::block_in_place(|| db.apply(set_id, &batch))?;
            batch.clear();
            last_flush = Instant::now();
        }
    }
    drop(results);
    db.apply(set_id, &batch)?;
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
    errors: Vec<scan::ScanProblem>,
}

/// Walks the source and merges it with the set's rows without holding either whole.
fn scan_and_triage(
    db: &StateDb,
    set_id: i64,
    root: &Path,
    tick: impl FnMut(usize),
) -> Result<ScanOutcome, BackupError> {
    let walk = scan::walk(root, tick)?;
    let dir_rows = db.dir_rows(set_id)?;
    let (mut scanned, mut skipped, mut errors) = (0u64, Vec::new(), Vec::new());
    let entries = walk.filter_map(|item| match item {
        scan::Walked::Entry(e) => {
            scanned += u64::from(e.kind == EntryKind::File);
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
    let triage = db.with_file_rows(set_id, |rows| plan::triage(entries, rows, dir_rows))?;
    Ok(ScanOutcome {
        triage,
        scanned,
        skipped,
        errors,
    })
}

/// Hashes files on blocking threads, one per core; unreadable files become failures.
async fn hash_all(
    source: &Path,
    entries: &[(ScanEntry, Option<FileRow>)],
    progress: &Arc<dyn Progress>,
    failures: &mut Vec<Failure>,
) -> HashMap<String, String> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    progress.hashing(entries.len() as u64, entries.iter().map(|(e, _)| e.size).sum());
    let mut hashed = futures::stream::iter(entries.iter().map(|(e, _)| e.clone()))
        .map(|entry| {
            let path = source.join(&entry.path);
            async move {
                let result = tokio::task::spawn_blocking({
                    let entry = entry.clone();
                    move || hash::hash_file(&path, &entry)
                })
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                (entry, result)
            }
        })
        .buffer_unordered(threads);
    let mut hashes = HashMap::with_capacity(entries.len());
    while let Some((entry, result)) = hashed.next().await {
        progress.advance(entry.size);
        match result {
            Ok(h) => {
                hashes.insert(entry.path, h);
            }
            Err(e) => failures.push(Failure {
                path: entry.path,
                error: format!("reading: {e}"),
            }),
        }
    }
    hashes
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
    {
        let file = tmp.as_file().try_clone().map_err(|e| fail(&e))?;
        let mut writer = manifest::Writer::new(
            HashingWriter {
                inner: file,
                hasher: &mut hasher,
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
    };
    let range = FileRange {
        path: tmp.path(),
        offset: 0,
        len,
    };
    retry(&key, || store.put_file(&key, range, &meta))
        .await
        .map_err(|e| fail(&e))?;
    Ok(Some(key))
}

/// Hashes what passes through, so the manifest's blake3 costs no second read.
struct HashingWriter<'a, W> {
    inner: W,
    hasher: &'a mut blake3::Hasher,
}

impl<W: std::io::Write> std::io::Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
