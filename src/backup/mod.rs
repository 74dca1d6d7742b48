//! A backup run, as a pipeline of stages, one file each:
//!
//! 1. [`open`]: check the source and the target, open the state and lock
//!    the set, rebuild the set's state from a snapshot when it has none;
//! 2. [`triage`]: walk the tree on a blocking thread, merged in path order
//!    with the set's rows ([`crate::plan::triage`]), handing files to hash
//!    and rows to replace on in chunks while the walk goes on; for a set
//!    with rows, [`guard`] holds the chunks until the walk is over and
//!    judges the whole run (the delete guard and the change tripwire)
//!    before anything changes;
//! 3. [`hash`]: read each file of a chunk once (blake3 and request MD5s);
//! 4. [`apply`]: decide for the chunk ([`crate::plan::decide`]) and carry
//!    the actions out, or, with `--dry-run`, list them: one executor, so a
//!    dry run prints the plan the same code produced;
//! 5. [`finish`]: once the walk is over, directories' rows, mode-only
//!    touches and deletions, then the manifest and the run's record.
//!
//! Memory stays bounded however large the tree or the first backup: the
//! walk produces chunks of at most [`triage::CHUNK`] files, each hashed,
//! decided and carried out while the walk goes on (the guard holds at
//! most a bounded number of them, then walks again: see [`guard`]).
//! Ordering guarantees:
//! objects whose path changed type are deleted at the start of the chunk
//! that brings them, before anything is written; deletions run last, after
//! every copy that may read them; state rows are written only after the
//! store confirmed (see [`apply`]). Transfers run with bounded concurrency
//! (see [`transfer`]); a failure on one file is reported and never stops
//! the others.

mod apply;
mod deleting;
mod finish;
mod guard;
mod hash;
mod journal;
pub mod keep;
mod multipart;
mod open;
pub mod rebuild;
mod relock;
pub mod spare;
pub mod transfer;
mod triage;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::fs::scan;
use crate::progress::Progress;
use crate::report::Failure;
use crate::state::RunCounts;
use crate::store::{S3Settings, StoreError};
use crate::target::Target;
pub use finish::ManifestError;
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
    /// The source text that identifies the set in the state file (a named
    /// set's, see `cli::sets`); `None`: the source's real path.
    pub set_source: Option<String>,
    /// Remove remote files whose local file is gone.
    pub delete: bool,
    /// Plan and print, change nothing.
    pub dry_run: bool,
    /// What to follow and what to leave out.
    pub walk: scan::WalkOptions,
    /// Hash every file, trusting no stat (`--rehash`).
    pub rehash: bool,
    /// How the content the run replaces or deletes is kept (`--history`,
    /// see [`crate::history`]).
    pub history: crate::history::HistoryMode,
    /// Labels for the snapshot (`--tag`), written to the manifest header.
    pub tags: Vec<String>,
    /// Files and requests in flight at once.
    pub jobs: usize,
    /// Files larger than this use multipart upload.
    pub multipart_threshold: u64,
    /// Multipart part size (raised if a file would need more than 10,000 parts).
    pub part_size: u64,
    /// Objects larger than this are copied server-side in parts of
    /// `part_size` (renames, history); S3 copies at most 5 GiB at once.
    pub copy_cutoff: u64,
    /// How to reach S3, and the bandwidth limit (`s3.bandwidth`).
    pub s3: S3Settings,
    /// Stops the run early and cleanly (Ctrl-C): see [`crate::cancel`].
    pub cancel: crate::cancel::Cancel,
    /// What the run may delete and replace before it is refused (the
    /// delete guard and the change tripwire, see [`crate::plan::guard`]).
    pub guard: crate::plan::guard::Guard,
}

/// What a run did, for the summary and `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    /// What was done, file by file.
    #[serde(flatten)]
    pub counts: RunCounts,
    /// Special files not backed up.
    pub skipped: u64,
    /// Directories that could not be read (listed in `failures`, not
    /// counted in `failed`, which counts files).
    pub failed_dirs: u64,
    /// Top-level `.s3backup` entries of SOURCE not backed up (0 or 1): the
    /// name is reserved for the tool's own files in a store.
    pub reserved: u64,
    /// Files and directories left out by filters (a directory counts once).
    pub excluded: u64,
    /// What the walk left out, by why (`excluded` also counts rows
    /// `--delete` spared).
    pub excluded_by: crate::fs::leave_out::ExcludedBy,
    /// Wall time of the run.
    pub elapsed_ms: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Key of the manifest written, if any.
    pub snapshot: Option<String>,
    /// The failed files.
    pub failures: Vec<Failure>,
    /// The requests the run sent to the store, by kind, and their body
    /// bytes (a dry run: its listing and checks only).
    pub requests: crate::store::RequestCounts,
    /// How many requests were in flight: the most at once, the adaptive
    /// limit's highest and last level, throttling answers seen
    /// ([`crate::store::flow`]).
    pub concurrency: crate::store::flow::Concurrency,
    /// What a dry run predicts the real run would send (`None` for a real
    /// run): uploads, parts, copies, deletes and the manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_send: Option<crate::store::RequestCounts>,
    /// Whether a dry run found directories to record (the real run would
    /// then write a manifest even with no file to send).
    #[serde(skip)]
    pub(crate) dirs_would_change: bool,
    /// The planned actions, one line each (dry run only).
    #[serde(skip)]
    pub planned: Vec<String>,
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
    Manifest(ManifestError),
    /// A dry run could not make the scratch directory its state copy lives in.
    #[error("creating a scratch directory for the dry run's state: {0}")]
    Scratch(std::io::Error),
    /// The walk of SOURCE stopped unexpectedly (its thread panicked or was cancelled).
    #[error("the walk of the source stopped unexpectedly: {0}")]
    Walk(tokio::task::JoinError),
    /// A set this state file never saw could not be rebuilt from the
    /// bucket's snapshots (a store or state error: damaged manifests are not).
    /// The message names the cause, which is therefore not also the
    /// error's source: a chain printed with `{:#}` names it once.
    #[error("rebuilding state from the newest readable snapshot: {0}")]
    Rebuild(RebuildError),
    /// SOURCE lies inside the local store it would be backed up to.
    #[error(transparent)]
    Own(#[from] crate::fs::own::OwnError),
    /// The run was cancelled ([`BackupOptions::cancel`]): the transfers it
    /// finished are recorded, the run is recorded as interrupted, and
    /// unfinished multipart uploads stay journaled for the next run.
    #[error(transparent)]
    Interrupted(#[from] crate::cancel::Interrupted),
    /// The delete guard or the change tripwire stopped the run before it
    /// changed anything (see [`crate::plan::guard`]). The message names
    /// what would have gone and the flag that allows it; the refusal's
    /// `top_dirs`, the directories most of it is in.
    #[error("{}", refusal.headline(target))]
    Refused {
        /// The target, as printed (`s3://bucket/prefix`, `file:///path`).
        target: String,
        /// What was refused (boxed: it is large, and rare).
        refusal: Box<crate::plan::guard::Refusal>,
    },
}

/// Runs one backup: the stages in order (see the module doc).
///
/// # Errors
/// A [`BackupError`] when the run cannot go on at all: the source is
/// missing or unreadable or lies in the store, the target cannot be
/// reached or used, the state file cannot be used, the set's state cannot
/// be rebuilt, the walk died, or the manifest could not be written.
/// Per-file problems are not errors: they are in the report's `failures`.
pub async fn run(opts: &BackupOptions, progress: Arc<dyn Progress>) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    // Opening (store, bucket check, manifest listing, a rebuild) races the
    // cancel: one Ctrl-C stops a run waiting on a silent endpoint at once.
    let (opened, db) = opts.cancel.run(open::open(opts)).await??;
    let report = BackupReport::new(opts.dry_run, &opened);
    let scanned = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // Only a set with rows can lose objects: its walk is judged to the end
    // before anything changes (see `guard`); a first backup streams.
    let gathered = if opened.has_rows {
        guard::gather(opts, &opened, &db, progress.clone(), scanned.clone()).await?
    } else {
        guard::Gathered::WalkAgain
    };
    let mut apply = apply::Apply::start(opts, &opened, db, progress.clone(), report).await?;
    apply.scanned = scanned;
    let walked = match gathered {
        guard::Gathered::All(held, walked) => {
            for chunk in held {
                apply.check()?;
                apply_held(opts, &opened, &mut apply, chunk).await?;
            }
            *walked
        }
        guard::Gathered::WalkAgain => stream(opts, &opened, &mut apply, progress).await?,
    };
    // A walk cut short by a cancel leaves rows unmatched: they must not be taken for deletions.
    apply.check()?;
    finish::rest(opts, &opened, walked, &mut apply).await?;
    let applied = apply.close().await;
    let mut report = finish::record(opts, &opened, applied).await?;
    report.requests = opened.store.requests();
    report.concurrency = opened.store.signals().figures();
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Walks SOURCE and carries out each chunk as the walk hands it on.
async fn stream(
    opts: &BackupOptions,
    opened: &open::Opened,
    apply: &mut apply::Apply,
    progress: Arc<dyn Progress>,
) -> Result<triage::WalkOutcome, BackupError> {
    let mut walk = triage::Walk::start(opts, opened, progress, apply.scanned.clone());
    while let Some(chunk) = walk.next_chunk().await {
        // Cancelled: no new file is started (returning drops the walk's channel, so it stops too).
        apply.check()?;
        apply_held(opts, opened, apply, guard::Held::Raw(chunk)).await?;
    }
    walk.finish().await
}

/// Carries out one chunk of the walk: the objects of paths that changed
/// type first, then its files, hashed (unless the guard did) and decided.
async fn apply_held(
    opts: &BackupOptions,
    opened: &open::Opened,
    apply: &mut apply::Apply,
    chunk: guard::Held,
) -> Result<(), BackupError> {
    let hashed = match chunk {
        guard::Held::Raw(chunk) => {
            apply.replace(chunk.replaced).await?;
            let files = apply.admit(chunk.changed, |(entry, _)| entry);
            let engine = apply.engine();
            let cut = |size| engine.part_size_of(size);
            let Ok(hashed) = opts
                .cancel
                .run(hash::hash_chunk(
                    &opened.source,
                    files,
                    cut,
                    opts.s3.write.checksum,
                    &**engine.progress(),
                ))
                .await
            else {
                return Err(apply.interrupted());
            };
            hashed
        }
        guard::Held::Hashed { replaced, files } => {
            apply.replace(replaced).await?;
            apply.admit(files, |(entry, _, _)| entry)
        }
    };
    apply.decide(hashed).await
}

impl From<RebuildError> for BackupError {
    fn from(e: RebuildError) -> Self {
        BackupError::Rebuild(e)
    }
}

impl BackupReport {
    /// A report with nothing done yet.
    fn new(dry_run: bool, opened: &open::Opened) -> Self {
        BackupReport {
            counts: RunCounts::default(),
            skipped: 0,
            failed_dirs: 0,
            reserved: 0,
            excluded: 0,
            excluded_by: Default::default(),
            elapsed_ms: 0,
            dry_run,
            snapshot: None,
            failures: Vec::new(),
            requests: crate::store::RequestCounts::default(),
            concurrency: Default::default(),
            would_send: dry_run.then(crate::store::RequestCounts::default),
            dirs_would_change: false,
            planned: Vec::new(),
            set_id: opened.set_id,
        }
    }
}
