//! Stage 4, applying the plan: the [`plan::Action`]s the stages produce,
//! chunk by chunk, go to one executor that either carries them out
//! ([`Mode::Run`]) or lists them ([`Mode::List`], `--dry-run`); the dry
//! run's list is thus the plan the same code produced, and this file is
//! the one place where the two differ.
//!
//! Carrying out: at most `jobs` actions at once (each request takes one of
//! `jobs` permits, see `transfer`). A failure on one file is retried if
//! transient, then recorded and reported; it never stops the others and
//! never reaches the state file: state rows are written only after the
//! store confirmed, in batches. Objects whose path changed type are
//! deleted at the start of the chunk that brings them, before anything is
//! written; if one cannot be, every later write that conflicts with its
//! path fails for the run ([`Apply::admit`]).

mod listing;
mod predict;
mod rows;

use rows::{copy_source, dir_row};
mod replace;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::hash::HashedFile;
use super::journal::Journal;
use super::keep::LocalFiles;
use super::open::Opened;
use super::transfer::{Did, Done, Engine, TransferError};
use super::{BackupError, BackupOptions, BackupReport};
use crate::cancel::{Cancel, Interrupted};
use crate::fs::scan::ScanEntry;
use crate::plan::{self, Action};
use crate::progress::Progress;
use crate::report::Failure;
use crate::state::{FileChange, FileRow, RunStatus, StateDb, Taking};
use crate::store::{Prepared, StoreError};
use crate::target::Target;

/// How many state rows to commit per transaction.
const STATE_BATCH: usize = 512;

/// The longest object key S3 accepts, in bytes of UTF-8.
const MAX_KEY_BYTES: usize = 1024;

/// What the executor does with actions.
pub(super) enum Mode {
    /// Carry them out and record what the store confirmed, for the run
    /// recorded as `run_row` (its id `run_id` names the manifest).
    Run {
        /// The run's row in the state file.
        run_row: i64,
        /// The run's id.
        run_id: String,
    },
    /// List them (`--dry-run`): nothing is sent, nothing is written.
    List,
}

/// The executor, and what it carries between chunks.
pub(super) struct Apply {
    mode: Mode,
    engine: Arc<Engine>,
    db: Mutex<StateDb>,
    set_id: i64,
    source: PathBuf,
    /// Whether the set had rows when the run began (else no copy sources).
    has_rows: bool,
    /// S3's key limit applies (the target's prefix), not a local store's.
    s3_prefix: Option<String>,
    report: BackupReport,
    failures: Vec<Failure>,
    /// Sources of copies that failed: not deleted by this run.
    failed_sources: Vec<String>,
    /// Writes a case-folding local store refused for a name clash, as
    /// uploads: tried again after the deletes ([`Apply::retry_clashed`]).
    clashed: Vec<Action>,
    /// Content this run confirmed by hashing (copy sources the state's racy rows hide).
    confirmed: plan::Confirmed,
    /// Paths whose old object could not be replaced (its delete failed):
    /// nothing is written at, under or above them in this run.
    blocked: Vec<String>,
    /// Paths whose old content an earlier run could not keep (history), nor
    /// this one: nothing is written there in this run.
    unkept: Vec<String>,
    /// Objects of paths that changed type that a filter leaves out: kept,
    /// and nothing is written at, under or above them (see `replace`).
    kept: Vec<String>,
    /// The walk's filters, which the old entries of replaced paths obey too.
    walk: crate::fs::scan::WalkOptions,
    /// The target's prefix ("" for a local store).
    prefix: String,
    pending_marked: bool,
    /// Stops the run early (Ctrl-C): see [`crate::cancel`].
    cancel: Cancel,
    /// Files and symlinks the walk has found so far (the walk counts them).
    pub(super) scanned: Arc<std::sync::atomic::AtomicU64>,
}

/// What the executor leaves for the finish stage.
pub(super) struct Applied {
    /// The report so far (failures sorted, counted).
    pub report: BackupReport,
    /// The state connection.
    pub db: StateDb,
    /// The run carried out (`None` for a dry run).
    pub run: Option<(i64, String)>,
}

impl Apply {
    /// An executor for the run `opened`: one that carries actions out (the
    /// run recorded in the state, unfinished uploads a killed run left
    /// swept first), or with `--dry-run` one that lists them.
    ///
    /// # Errors
    /// [`BackupError::State`] when the run cannot be recorded.
    pub(super) async fn start(
        opts: &BackupOptions,
        opened: &Opened,
        db: StateDb,
        progress: Arc<dyn Progress>,
        mut report: BackupReport,
    ) -> Result<Apply, BackupError> {
        let set_id = opened.set_id;
        let mut engine = Engine::new(
            opened.store.clone(),
            opened.source.clone(),
            opts.target.prefix().to_string(),
            opts.jobs,
            opts.multipart_threshold,
            opts.part_size,
            progress,
        )
        .with_copy_cutoff(opts.copy_cutoff)
        .with_checksum(opts.s3.write.checksum);
        let mut blocked = Vec::new();
        let mut unkept_paths = Vec::new();
        let mode = if opts.dry_run {
            if opened.prepared == Prepared::Missing {
                report.planned.push(format!("create {}", opened.store.describe()));
            }
            engine = engine.with_history(opts.history, None);
            Mode::List
        } else {
            let run_id = uuid::Uuid::now_v7().simple().to_string();
            let run_row = db.begin_run(set_id, &run_id, "backup")?;
            // Its own connection: parts finish on many tasks at once.
            let journal = Journal::new(StateDb::open(&opened.state_path)?, set_id);
            let prefix = opts.target.prefix();
            let upload_prefix = if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            };
            let interrupted = db.interrupted_run_start(set_id, run_row)?;
            journal
                .abort_abandoned(&*opened.store, &opened.source, &upload_prefix, interrupted)
                .await;
            let local = LocalFiles::new(opened.state_path.clone(), set_id, opened.source.clone());
            engine = engine
                .with_journal(journal)
                .with_history(opts.history, Some(local));
            // Content a killed run was replacing is kept first, then its deletes finished.
            let (kept, unkept) = super::keep::finish(
                &db,
                set_id,
                &*opened.store,
                prefix,
                engine.copy_limits(),
                opts.history,
            )
            .await;
            report.counts.history_kept += kept;
            let (deleted, failed) =
                super::deleting::finish(&db, set_id, &*opened.store, prefix, &unkept).await;
            report.counts.deleted += deleted;
            blocked.extend(failed);
            unkept_paths = unkept;
            Mode::Run { run_row, run_id }
        };
        Ok(Apply {
            mode,
            engine: Arc::new(engine),
            db: Mutex::new(db),
            set_id,
            source: opened.source.clone(),
            has_rows: opened.has_rows,
            s3_prefix: match &opts.target {
                Target::S3 { prefix, .. } => Some(prefix.clone()),
                Target::Local { .. } => None,
            },
            report,
            failures: Vec::new(),
            failed_sources: Vec::new(),
            clashed: Vec::new(),
            confirmed: plan::Confirmed::default(),
            blocked,
            unkept: unkept_paths,
            kept: Vec::new(),
            walk: opts.walk.clone(),
            prefix: opts.target.prefix().to_string(),
            pending_marked: false,
            cancel: opts.cancel.clone(),
            scanned: Arc::default(),
        })
    }

    /// The transfer engine (hashing asks it how files will be cut).
    pub(super) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The report's counters and fields, for the stages that fill them.
    pub(super) fn report(&mut self) -> &mut BackupReport {
        &mut self.report
    }

    /// Records a problem with one path (the run goes on; exit 3).
    pub(super) fn fail(&mut self, path: String, error: String) {
        self.failures.push(Failure { path, error });
    }

    /// Keeps the files of a chunk that may be written: none that conflicts
    /// with a failed replacement, none whose key would be over S3's limit
    /// (each left out is reported as failed).
    /// `entry` gives each file's entry (files come read or not).
    pub(super) fn admit<T>(&mut self, mut files: Vec<T>, entry: impl Fn(&T) -> &ScanEntry) -> Vec<T> {
        files.retain(|f| self.unblocked(&entry(f).path));
        if let Some(prefix) = &self.s3_prefix {
            let failures = &mut self.failures;
            files.retain(|f| {
                let entry = entry(f);
                let len = crate::store::join_key(prefix, &entry.path).len();
                if len <= MAX_KEY_BYTES {
                    return true;
                }
                failures.push(Failure {
                    path: entry.path.clone(),
                    error: format!("its key would be {len} bytes, over S3's limit of {MAX_KEY_BYTES}"),
                });
                false
            });
        }
        files
    }

    /// Decides for a hashed chunk ([`plan::decide`], copy sources looked
    /// up in the state and statted now) and applies what it decided; files
    /// that could not be read are reported.
    pub(super) async fn decide(&mut self, hashed: Vec<HashedFile>) -> Result<(), BackupError> {
        let failures = &mut self.failures;
        let readable = hashed
            .into_iter()
            .filter_map(|(entry, old, hashed)| match hashed {
                Ok(h) => Some((entry, old, h)),
                Err(e) => {
                    failures.push(Failure {
                        path: entry.path,
                        error: format!("reading: {e}"),
                    });
                    None
                }
            });
        let (db, set_id, root, has_rows) = (&self.db, self.set_id, &self.source, self.has_rows);
        let decided = plan::decide(readable, &mut self.confirmed, |hash, size| {
            has_rows
                .then(|| copy_source(db, set_id, root, hash, size))
                .flatten()
        });
        self.report.counts.unchanged += decided.refresh.len() as u64;
        self.refresh(decided.refresh)?;
        self.execute(decided.actions).await
    }

    /// Whether `path` may be written: no failed replacement conflicts with
    /// it. If one does, the path is reported as failed.
    pub(super) fn unblocked(&mut self, path: &str) -> bool {
        let error = if self.unkept.iter().any(|p| p == path) {
            "not replaced: its previous content could not be kept for older snapshots (see the warning); \
             it is tried again next run, or back up with --history off to replace it without keeping it"
                .to_string()
        } else if let Some(p) = self.blocked.iter().find(|p| plan::overlaps(path, p)) {
            format!("not backed up: '{p}' changed type and its old object could not be deleted")
        } else if let Some(p) = self.kept.iter().find(|p| plan::overlaps(path, p)) {
            format!(
                "not backed up: the store keeps '{p}', which a filter leaves out, and one tree cannot hold both (exclude this path too, or stop excluding '{p}')"
            )
        } else {
            return true;
        };
        self.failures.push(Failure {
            path: path.to_string(),
            error,
        });
        false
    }

    /// Whether a failed copy read from `path` (its object is then kept).
    pub(super) fn copy_failed_from(&self, path: &str) -> bool {
        self.failed_sources.iter().any(|p| p == path)
    }

    /// Writes back racy rows that proved unchanged, with their new check times.
    fn refresh(&mut self, rows: Vec<FileRow>) -> Result<(), BackupError> {
        if rows.is_empty() || matches!(self.mode, Mode::List) {
            return Ok(());
        }
        let changes: Vec<FileChange> = rows.into_iter().map(FileChange::Upsert).collect();
        lock(&self.db).apply(self.set_id, &changes)?;
        Ok(())
    }

    /// Records the rows of new or changed directories (no remote object),
    /// except at or under a path whose old object could not be replaced or
    /// is kept (left out by a filter): the row of that object stays.
    pub(super) fn record_dirs(&mut self, dirs: Vec<ScanEntry>) -> Result<(), BackupError> {
        let rows: Vec<FileChange> = dirs
            .iter()
            .filter(|d| {
                !self
                    .blocked
                    .iter()
                    .chain(&self.kept)
                    .any(|p| d.path == *p || plan::is_under(&d.path, p))
            })
            .map(|d| FileChange::Upsert(dir_row(d)))
            .collect();
        if rows.is_empty() || matches!(self.mode, Mode::List) {
            self.report.dirs_would_change |= !rows.is_empty();
            return Ok(());
        }
        self.mark_pending()?;
        lock(&self.db).apply(self.set_id, &rows)?;
        Ok(())
    }

    /// Carries out actions (or, in a dry run, lists them).
    pub(super) async fn execute(&mut self, actions: Vec<Action>) -> Result<(), BackupError> {
        self.run(actions, "").await
    }

    /// [`Self::execute`], with `note` after each listed line.
    async fn run(&mut self, actions: Vec<Action>, note: &str) -> Result<(), BackupError> {
        if actions.is_empty() {
            return Ok(());
        }
        match self.mode {
            Mode::List => {
                self.list(&actions, note);
                Ok(())
            }
            Mode::Run { .. } => {
                self.mark_pending()?;
                match self.carry_out(actions).await {
                    Err(BackupError::Interrupted(_)) => Err(self.interrupted()),
                    other => other,
                }
            }
        }
    }

    /// `Ok` until the run is cancelled; then see [`Self::interrupted`].
    ///
    /// # Errors
    /// [`BackupError::Interrupted`] once the run is cancelled.
    pub(super) fn check(&mut self) -> Result<(), BackupError> {
        match self.cancel.check() {
            Ok(()) => Ok(()),
            Err(Interrupted) => Err(self.interrupted()),
        }
    }

    /// Records the run as interrupted, with what it did so far, and
    /// returns the error that ends it. No manifest is written: the state
    /// still owes one (`manifest_pending`), and the next run writes it.
    pub(super) fn interrupted(&mut self) -> BackupError {
        if let Mode::Run { run_row, .. } = &self.mode {
            let mut counts = self.report.counts;
            counts.failed = self.failures.len() as u64;
            // What the run got to: files the walk found so far, and bytes
            // the store confirmed (parts of unfinished uploads included).
            let relaxed = std::sync::atomic::Ordering::Relaxed;
            counts.scanned = counts.scanned.max(self.scanned.load(relaxed));
            counts.bytes_sent = counts.bytes_sent.max(self.engine.sent.load(relaxed));
            if let Err(e) = lock(&self.db).finish_run(*run_row, RunStatus::Interrupted, &counts, None, None) {
                tracing::warn!("recording the run as interrupted: {e}");
            }
        }
        BackupError::Interrupted(Interrupted)
    }

    /// Records, before the first remote change, that a manifest is owed.
    fn mark_pending(&mut self) -> Result<(), BackupError> {
        if !self.pending_marked && matches!(self.mode, Mode::Run { .. }) {
            lock(&self.db).set_manifest_pending(self.set_id, true)?;
            self.pending_marked = true;
        }
        Ok(())
    }

    /// Runs actions `jobs` at a time, counting results and committing state
    /// rows in batches; remembers the sources of copies that failed.
    ///
    /// Once the run is cancelled no action starts, and those in flight are
    /// dropped: an action never started gets its taken row back (its object
    /// is as it was); one cut off is handled as a failed one (a delete's row
    /// comes back, another's stays out: its object may have been replaced),
    /// but not reported. The rows of finished actions are committed, then
    /// [`BackupError::Interrupted`] is returned.
    async fn carry_out(&mut self, actions: Vec<Action>) -> Result<(), BackupError> {
        let (engine, cancel) = (self.engine.clone(), self.cancel.clone());
        let mut taken = self.queue(&actions)?;
        let with_old: Vec<(Action, Option<FileRow>)> = actions
            .into_iter()
            .map(|a| {
                let old = taken.get(a.path()).cloned();
                (a, old)
            })
            .collect();
        let mut results = futures::stream::iter(with_old)
            .map(|(action, old)| {
                let (engine, cancel) = (engine.clone(), cancel.clone());
                async move {
                    if cancel.is_cancelled() {
                        return (action, None);
                    }
                    let outcome = cancel.run(engine.execute(&action, old.as_ref())).await;
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
                    if let Some(row) = taken.remove(action.path()) {
                        batch.push(FileChange::Kept(row.path.clone()));
                        batch.push(FileChange::Upsert(row));
                    }
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
            self.settle(&action, outcome, &mut taken, &mut batch);
            if batch.len() >= STATE_BATCH || last_flush.elapsed() > Duration::from_secs(2) {
                tokio::task::block_in_place(|| lock(&self.db).apply(self.set_id, &batch))?;
                batch.clear();
                last_flush = Instant::now();
            }
        }
        drop(results);
        lock(&self.db).apply(self.set_id, &batch)?;
        if interrupted {
            return Err(BackupError::Interrupted(Interrupted));
        }
        Ok(())
    }

    /// Queues `actions` on the progress display and takes their rows out
    /// of the state (see [`StateDb::take_rows`]): rows of objects about to
    /// be replaced or deleted leave the state first, and a failure puts its
    /// row back ([`Apply::settle`]). Returns the taken rows by path.
    ///
    /// # Errors
    /// [`BackupError::State`] when the rows cannot be taken.
    fn queue(&self, actions: &[Action]) -> Result<HashMap<String, FileRow>, BackupError> {
        let bytes: u64 = actions
            .iter()
            .map(|a| match a {
                Action::Upload { entry, .. } => entry.size,
                _ => 0,
            })
            .sum();
        self.engine.progress().queued(actions.len() as u64, bytes);
        let paths: Vec<(&str, Taking)> = actions
            .iter()
            .map(|a| {
                let taking = Taking {
                    delete: matches!(a, Action::Delete(_)),
                    // A touch keeps the content; nothing to copy.
                    keep: !matches!(a, Action::Touch { .. }),
                };
                (a.path(), taking)
            })
            .collect();
        let engine = &self.engine;
        let taken = tokio::task::block_in_place(|| {
            lock(&self.db).take_rows(self.set_id, &paths, |row| engine.keeps(row))
        })?;
        Ok(taken.into_iter().map(|r| (r.path.clone(), r)).collect())
    }

    /// Counts one finished action and adds the state change it leads to
    /// to `batch`: its new row when it succeeded; when it failed, a report,
    /// and the row `taken` from a failed delete back.
    fn settle(
        &mut self,
        action: &Action,
        outcome: Result<Done, TransferError>,
        taken: &mut HashMap<String, FileRow>,
        batch: &mut Vec<FileChange>,
    ) {
        let progress = self.engine.progress();
        // The old content is safe unless keeping it is what failed: its
        // `preserving` entry then stays, for the next run to copy first.
        let unkept = matches!(outcome, Err(TransferError::Keep { .. }));
        if !unkept && taken.contains_key(action.path()) && !matches!(action, Action::Touch { .. }) {
            batch.push(FileChange::Kept(action.path().to_string()));
        }
        match outcome {
            Ok(done) => {
                self.report.counts.history_kept += u64::from(done.kept);
                progress.done(action.path(), done.did.label());
                let c = &mut self.report.counts;
                c.bytes_sent += done.bytes_sent;
                match done.did {
                    Did::Uploaded => c.uploaded += 1,
                    Did::Copied => c.copied += 1,
                    Did::Touched => c.touched += 1,
                    Did::Deleted => c.deleted += 1,
                    Did::Forgotten => {}
                }
                batch.push(done.change);
            }
            Err(e) => {
                progress.done(action.path(), "failed");
                // A copy refused for a name clash keeps nothing: its source may
                // be the clash (`A.txt` renamed `a.txt` on a case-folding store),
                // which the store's delete then renames or keeps (module
                // `store::local::fold`); the write is tried again after it.
                let clash = matches!(e, TransferError::Store(StoreError::NameClash(_)));
                if let Action::Copy { from, .. } = action
                    && !clash
                {
                    self.failed_sources.push(from.clone());
                }
                if let (true, Some(upload)) = (clash, as_upload(action)) {
                    self.clashed.push(upload);
                }
                // A failed upload, copy or touch may still have replaced the
                // object (a PUT whose answer was lost, a body the store kept
                // before refusing it, a file that changed after its upload):
                // its old row is dropped, so nothing claims or copies from
                // content the object may no longer hold, and the next run
                // hashes the file afresh. A failed delete leaves the object
                // as it was, or gone: its row comes back so `--delete` tries
                // again, and a copy from a gone object falls back to an upload.
                if let (Action::Delete(_), Some(old)) = (action, taken.remove(action.path())) {
                    batch.push(FileChange::Upsert(old));
                }
                self.failures.push(Failure {
                    path: action.path().to_string(),
                    error: e.to_string(),
                });
            }
        }
    }

    /// Tries the writes refused for a name clash once more, as uploads,
    /// after the run's deletes: a delete of the old spelling may have
    /// renamed its entry to theirs (see `store::local::fold`), and the
    /// snapshot then lists them. Their first failures are dropped; one
    /// refused again is reported again.
    ///
    /// # Errors
    /// As [`Self::execute`].
    pub(super) async fn retry_clashed(&mut self) -> Result<(), BackupError> {
        let again = std::mem::take(&mut self.clashed);
        if again.is_empty() {
            return Ok(());
        }
        let paths: std::collections::HashSet<&str> = again.iter().map(Action::path).collect();
        self.failures.retain(|f| !paths.contains(f.path.as_str()));
        self.execute(again).await?;
        self.clashed.clear();
        Ok(())
    }

    /// Ends the executor: uploads the store may have begun unanswered are
    /// swept (a real run), failures are sorted and counted (directories
    /// apart from files).
    pub(super) async fn close(self) -> Applied {
        let Apply {
            mode,
            engine,
            db,
            mut report,
            mut failures,
            ..
        } = self;
        let run = match mode {
            Mode::Run { run_row, run_id } => {
                engine.abort_lost_uploads().await;
                Some((run_row, run_id))
            }
            Mode::List => None,
        };
        engine.progress().finish();
        failures.sort_by(|a, b| a.path.cmp(&b.path));
        report.counts.failed = failures.len() as u64 - report.failed_dirs;
        report.failures = failures;
        Applied {
            report,
            db: db.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner()),
            run,
        }
    }
}

/// A write as the upload of its file (`None` for a touch or a delete).
fn as_upload(action: &Action) -> Option<Action> {
    match action {
        Action::Upload { .. } => Some(action.clone()),
        Action::Copy {
            entry,
            blake3,
            bodies,
            ..
        } => Some(Action::Upload {
            entry: entry.clone(),
            blake3: blake3.clone(),
            bodies: bodies.clone(),
        }),
        Action::Touch { .. } | Action::Delete(_) => None,
    }
}

/// The state connection, even if a task panicked while holding it (its
/// writes are transactions, so the database itself is consistent).
fn lock(db: &Mutex<StateDb>) -> std::sync::MutexGuard<'_, StateDb> {
    db.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
