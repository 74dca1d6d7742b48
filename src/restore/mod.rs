//! Bringing a backed-up tree back, from a snapshot manifest or from a live
//! listing of the bucket (for trees s3backup never wrote, or when no
//! manifest exists).
//!
//! A restore is a pipeline of stages, one module each:
//! 1. [`source`]: entries stream in (manifest lines or listing pages,
//!    never all at once);
//! 2. [`select`]: the requested paths and filters pick entries (every key
//!    still goes through [`fold::Guard`], so the key that keeps a name on
//!    a folding DEST is the same whatever is selected);
//! 3. [`decide`]: for each file (`jobs` at a time), what DEST holds is
//!    compared with the backup: leave it, keep it (`--no-clobber`) or fetch it;
//! 4. [`fetch`]: the object is downloaded into a temporary file beside its
//!    final name, its size and blake3 checked, a body cut short fetched again;
//!    a snapshot's file from its key, its version or the content area, in
//!    the order [`locate`] chose as the manifest was read;
//! 5. [`place`]: the file gets its mode and mtime and is renamed into place;
//!    symlinks are placed once every file is written, and directories get
//!    their modes and mtimes last, deepest first ([`dest::Dest::finish_dirs`]),
//!    since writing files changes them.
//!
//! Every step in DEST goes through [`dest::Dest`]: no link inside DEST is
//! followed, for reading or writing; directories the restore makes stay
//! owner-only until they get their recorded modes at the end; stale
//! temporary files of an interrupted restore are removed. Modes and times
//! are set through handles ([`meta`]).
//!
//! `--dry-run` runs the same stages on a DEST opened for listing: what a
//! restore would change is listed where it would be changed ([`dry`]).

pub mod decide;
pub mod dest;
pub mod dry;
pub mod fetch;
pub mod fold;
pub mod locate;
pub mod meta;
pub mod place;
pub mod select;
pub mod source;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use serde::Serialize;

use crate::fs::scan::EntryKind;
use crate::progress::Progress;
use crate::report::Failure;
use crate::restore::dest::Dest;
use crate::restore::fetch::Fetcher;
use crate::restore::meta::{DirMeta, ModePolicy};
use crate::restore::place::{LinkToPlace, Outcome};
use crate::restore::select::{Admitted, Select};
use crate::restore::source::{Source, SourceError};
use crate::snapshots::SnapshotError;
use crate::store::{self, ObjectStore, S3Settings, StoreError};
use crate::target::Target;

pub use source::Item;

/// Everything a restore needs to know.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Where the backup is.
    pub target: Target,
    /// Directory to restore into (created if missing).
    pub dest: PathBuf,
    /// Snapshot ID (`latest` when `None`).
    pub snapshot: Option<String>,
    /// Restore from a listing of the bucket instead of a manifest.
    pub from_listing: bool,
    /// Only these files or subtrees (relative paths); all when empty.
    pub paths: Vec<String>,
    /// Keep local files that differ instead of replacing them.
    pub no_clobber: bool,
    /// Restore setuid, setgid and sticky bits from the backup (dropped otherwise).
    pub preserve_special_bits: bool,
    /// Files and requests in flight at once.
    pub jobs: usize,
    /// `--exclude`/`--include`: which paths to bring back.
    pub filters: crate::fs::filter::Filters,
    /// How to reach S3.
    pub s3: S3Settings,
    /// Stops the restore early and cleanly (Ctrl-C): see [`crate::cancel`].
    pub cancel: crate::cancel::Cancel,
    /// List what the restore would do ([`RestoreReport::planned`]) and
    /// change nothing: see [`dry`].
    pub dry_run: bool,
}

/// What a restore did. Files (and symlinks) and directories are counted
/// apart, and each count adds up: `files` is `downloaded + unchanged + kept
/// + failed`; the directories handled are `dirs + dirs_failed`; every entry
/// of `failures` is one of `failed`, `dirs_failed`, `unreadable_entries` or
/// `paths_not_found`. Entries left out on purpose are counted by why
/// (`excluded`, `store_entries_skipped`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    /// Where the entries came from: a snapshot ID, or "listing".
    pub source: String,
    /// Files and symlinks selected for restore.
    pub files: u64,
    /// Files downloaded.
    pub downloaded: u64,
    /// Files already present with the same content.
    pub unchanged: u64,
    /// Files that differ but were kept (`--no-clobber`).
    pub kept: u64,
    /// Files that failed.
    pub failed: u64,
    /// Directories given their modes and mtimes (created or updated).
    pub dirs: u64,
    /// Directories that could not be made or given their modes and mtimes.
    pub dirs_failed: u64,
    /// Entries of the source that could not be read (a damaged manifest
    /// line, an unknown entry type, a listing that failed): each is a
    /// failure with an empty path.
    pub unreadable_entries: u64,
    /// Requested paths found in neither the snapshot nor the listing.
    pub paths_not_found: u64,
    /// Entries left out by `--exclude`/`--include`.
    pub excluded: u64,
    /// Bytes downloaded.
    pub bytes_received: u64,
    /// Wall time.
    pub elapsed_ms: u64,
    /// Files kept by `--no-clobber`.
    pub kept_paths: Vec<String>,
    /// Of `kept_paths`, those DEST spells otherwise (a DEST that folds):
    /// key → DEST's spelling, for the "kept" line.
    #[serde(skip)]
    pub kept_spelled: std::collections::BTreeMap<String, String>,
    /// Every failure: files, directories, unreadable entries, requested paths.
    pub failures: Vec<Failure>,
    /// Set when the snapshot's manifest broke off after its header: where
    /// and why. Entries before that point were restored; those after it
    /// could not be read, so the restore is incomplete (exit 1).
    pub stopped: Option<String>,
    /// Temporary files an interrupted restore had left in DEST, removed by this one.
    pub stale_temp_removed: u64,
    /// Files and directories whose recorded setuid, setgid or sticky bits
    /// were not restored (no `--preserve-special-bits`).
    pub special_bits_dropped: u64,
    /// Whether this was a dry run: the counts are what the restore would
    /// do (files counted as downloaded at the size the source announced).
    pub dry_run: bool,
    /// A dry run's lines, sorted by path (see [`dry`]).
    #[serde(skip)]
    pub planned: Vec<String>,
    /// Entries left out because they lie under the local store being
    /// restored from, inside DEST (restoring them would overwrite the
    /// store's own objects).
    pub store_entries_skipped: u64,
    /// Files, links and directories not restored because DEST folds letter
    /// case (or Unicode form) and an earlier key lands on the same name
    /// there (see [`fold`]); each is also in `failed` or `dirs_failed`.
    pub case_clashes: u64,
    /// Entries written under a stand-in name because DEST refuses the
    /// names Windows refuses (see [`crate::fs::winname`]); `0` when DEST
    /// holds every name as it is.
    pub names_mapped: u64,
    /// The requests the run sent, by kind, with their body bytes (a dry
    /// run: the snapshot's reading and the listing only).
    pub requests: crate::store::RequestCounts,
    /// How many requests were in flight: the most at once, the adaptive
    /// limit's highest and last level, throttling answers seen
    /// ([`crate::store::flow`]).
    pub concurrency: crate::store::flow::Concurrency,
}

/// Why a restore could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The bucket or store directory does not exist.
    #[error("{0} does not exist")]
    NoSuchTarget(String),
    /// Nothing is stored under the prefix.
    #[error("nothing to restore: no objects under {0}")]
    Empty(String),
    /// The paths asked for are in neither the snapshot nor the listing.
    #[error("none of the requested paths ({0}) exist in the backup")]
    NoMatch(String),
    /// A requested path that can never name a file of a backup (absolute,
    /// `..`, an empty segment); the command line refuses these first.
    /// (The message names the cause, so it is not also the source.)
    #[error("requested path: {0}")]
    BadPath(crate::fs::safe_path::UnsafePath),
    /// The store failed.
    #[error("{target}: {cause}")]
    Store {
        /// The target text.
        target: String,
        /// What the store said.
        cause: StoreError,
    },
    /// The snapshot could not be found or read.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The destination is unusable.
    #[error("destination '{0}': {1}")]
    Dest(PathBuf, std::io::Error),
    /// DEST lies inside the local store restored from.
    #[error(transparent)]
    Own(#[from] crate::fs::own::OwnError),
    /// The restore was cancelled ([`RestoreOptions::cancel`]) before it finished.
    #[error(transparent)]
    Interrupted(#[from] crate::cancel::Interrupted),
}

/// Runs one restore, reporting entries seen, files queued and done, and
/// bytes received to `progress`.
///
/// # Errors
/// [`RestoreError`]: the target cannot be reached or does not exist, the
/// snapshot is unknown or unreadable, DEST is unusable or inside the store,
/// or nothing (or none of the requested paths) is there to restore. A file
/// that fails is not an error: it is in [`RestoreReport::failures`].
pub async fn run_with_progress(
    opts: &RestoreOptions,
    progress: Arc<dyn Progress>,
) -> Result<RestoreReport, RestoreError> {
    let started = Instant::now();
    let target_text = opts.target.to_string();
    // A local store inside DEST is left out (see `own`); DEST inside it is refused.
    let store_in_dest = crate::fs::own::check_dest(&opts.dest, &opts.target)?;
    // Opening races the cancel: one Ctrl-C stops a wait on a silent endpoint.
    let store = opts.cancel.run(open_store(opts, &target_text)).await??;
    let mut select = Select::new(
        &opts.paths,
        &opts.filters,
        store_in_dest.clone(),
        progress.clone(),
    )
    .map_err(RestoreError::BadPath)?;
    let Source {
        name,
        listing_notice,
        entries,
        end,
    } = opts.cancel.run(open_source(opts, &store, &target_text)).await??;
    if listing_notice {
        select.notice_listing(target_text.clone());
    }
    let mut report = RestoreReport {
        source: name,
        dry_run: opts.dry_run,
        ..RestoreReport::default()
    };
    let (mut dest, created_dest) = open_dest(opts)?;
    let guard = guard(opts, &mut dest)?;
    let counted = store.clone();
    let fetcher = Fetcher::new(store, opts.jobs);
    let (dirs, links) = restore_entries(
        opts,
        entries,
        (&mut select, guard),
        &fetcher,
        &dest,
        &progress,
        &mut report,
    )
    .await;
    opts.cancel.check()?;
    report.excluded = select.excluded;
    report.store_entries_skipped = select.store_skipped;
    if let (Some(store), 1..) = (&store_in_dest, select.store_skipped) {
        tracing::warn!(
            "notice: not restored: {} entries under '{store}', where the local store being restored from lies in DEST",
            select.store_skipped
        );
    }
    if let Some(err) = nothing_restored(end, &select, &mut report, target_text).await {
        if created_dest && !opts.dry_run {
            // Leave no trace of a restore that restored nothing.
            let _ = std::fs::remove_dir(dest.path());
        }
        return Err(err);
    }
    for s in select.unmatched() {
        report.paths_not_found += 1;
        report.failures.push(Failure {
            path: s,
            error: "not found in the backup".into(),
        });
    }
    finish(&dest, dirs, &select.recorded, links, &mut report);
    if let Some(planned) = dest.planned() {
        report.planned = planned.take();
    }
    report.requests = counted.requests();
    report.concurrency = counted.signals().figures();
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    progress.finish();
    Ok(report)
}

/// Opens the snapshot (or the listing) to restore from.
///
/// # Errors
/// [`RestoreError::Store`] when the store cannot be read,
/// [`RestoreError::Snapshot`] when the snapshot is unknown or unreadable.
async fn open_source(
    opts: &RestoreOptions,
    store: &Arc<dyn ObjectStore>,
    target_text: &str,
) -> Result<Source, RestoreError> {
    source::open(
        store,
        opts.target.prefix(),
        opts.from_listing,
        opts.snapshot.as_deref(),
        target_text,
    )
    .await
    .map_err(|e| match e {
        SourceError::Store(cause) => RestoreError::Store {
            target: target_text.to_string(),
            cause,
        },
        SourceError::Snapshot(e) => RestoreError::Snapshot(e),
    })
}

/// Once the source has ended (its channel closed): the error for a
/// restore that restored nothing (the source broke off before any entry,
/// was empty, or none of the requested paths matched), or `None`. A
/// manifest that broke off after some entries is noted in
/// [`RestoreReport::stopped`] instead.
async fn nothing_restored(
    end: source::End,
    select: &Select<'_>,
    report: &mut RestoreReport,
    target_text: String,
) -> Option<RestoreError> {
    let nothing_read = select.seen == 0 && report.failures.is_empty();
    let nothing = match end.stopped(&report.source).await {
        Some(stop) if nothing_read => Some(RestoreError::from(stop)),
        Some(stop) => {
            report.stopped = Some(format!(
                "{stop}; the restore stopped there: entries after it were not restored"
            ));
            None
        }
        None => None,
    };
    nothing.or_else(|| {
        if nothing_read {
            Some(RestoreError::Empty(target_text))
        } else {
            select.none_matched().map(RestoreError::NoMatch)
        }
    })
}

/// Opens the store and checks that the bucket (or store directory) exists.
async fn open_store(opts: &RestoreOptions, target_text: &str) -> Result<Arc<dyn ObjectStore>, RestoreError> {
    let store_err = |cause| RestoreError::Store {
        target: target_text.to_string(),
        cause,
    };
    let store = store::open_cancellable(&opts.target, &opts.s3, &opts.cancel)
        .await
        .map_err(store_err)?;
    if !store.exists().await.map_err(store_err)? {
        return Err(RestoreError::NoSuchTarget(match &opts.target {
            Target::S3 { bucket, .. } => format!("bucket '{bucket}'"),
            Target::Local { root } => format!("store directory '{}'", root.display()),
        }));
    }
    Ok(store)
}

/// Creates DEST if missing and opens it; says whether it was created.
/// A dry run opens DEST for listing, and one that is missing as
/// [`Dest::absent`] (a dangling link there fails as the restore would).
fn open_dest(opts: &RestoreOptions) -> Result<(Dest, bool), RestoreError> {
    let dest_err = |e| RestoreError::Dest(opts.dest.clone(), e);
    let created = !opts.dest.exists();
    let modes = ModePolicy::new(opts.preserve_special_bits);
    if !opts.dry_run {
        std::fs::create_dir_all(&opts.dest).map_err(dest_err)?;
    } else if created {
        if std::fs::symlink_metadata(&opts.dest).is_ok() {
            return Err(dest_err(std::io::ErrorKind::AlreadyExists.into()));
        }
        return Ok((Dest::absent(&opts.dest, modes), true));
    }
    let path = crate::fs::winpath::canonicalize(&opts.dest).map_err(dest_err)?;
    let planned = opts.dry_run.then(dry::Planned::default);
    let dest = Dest::open(&path, modes, planned).map_err(|e| dest_err(e.into()))?;
    Ok((dest, created))
}

/// Probes DEST once: how it compares names, and whether it refuses the
/// names Windows refuses (then `dest` maps them). A dry run writes no probe.
///
/// # Errors
/// [`RestoreError::Dest`] when a probe cannot be made or read.
fn guard(opts: &RestoreOptions, dest: &mut Dest) -> Result<fold::Guard, RestoreError> {
    let dest_err = |e| RestoreError::Dest(opts.dest.clone(), e);
    let mut windows = crate::fs::winname::refused_by(dest.path(), !opts.dry_run).map_err(dest_err)?;
    let twins = fold::probe(dest.path(), !opts.dry_run, windows).map_err(dest_err)?;
    if opts.dry_run && !windows {
        // A dry run writes no probe: it finds the stand-ins a restore wrote.
        windows = fold::guess_windows_names(dest.path(), twins.0.folding());
    }
    dest.holds.folding = twins.0.folding();
    dest.holds.windows_names = windows;
    if let Some(base) = crate::fs::case::nearest_existing(dest.path()) {
        // What DEST keeps of modes and mtimes: learned by writing, or, in a
        // dry run onto a DEST that folds (exFAT, FAT), guessed from its entries.
        dest.holds.keeps = match (opts.dry_run, twins.0.folding()) {
            (false, _) => meta::Keeps::learn(base),
            (true, crate::fs::case::Folding::Exact) => meta::Keeps::default(),
            (true, _) => meta::Keeps::guess(base),
        };
    }
    Ok(fold::Guard::new(twins, windows))
}

/// Directory entries selected (given their metadata at the end) and
/// symlinks fetched (placed at the end).
type Deferred = (Vec<(String, DirMeta)>, Vec<LinkToPlace>);

/// The per-entry stages: entries from the source, through the selection,
/// `jobs` files at a time through [`place::restore_file`], counted into
/// `report` as they finish.
async fn restore_entries(
    opts: &RestoreOptions,
    entries: tokio::sync::mpsc::Receiver<source::Batch>,
    (select, mut guard): (&mut Select<'_>, fold::Guard),
    fetcher: &Fetcher,
    dest: &Dest,
    progress: &Arc<dyn Progress>,
    report: &mut RestoreReport,
) -> Deferred {
    let items = futures::stream::unfold(entries, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) })
        .flat_map(futures::stream::iter)
        .boxed();
    let (no_clobber, prefix, dry_run) = (opts.no_clobber, opts.target.prefix(), opts.dry_run);
    let mut results = items
        .filter_map(|item| {
            let admitted = match select.admit(item) {
                Admitted::Out => None,
                Admitted::Aside(item) => {
                    guard.pass(&item);
                    None
                }
                Admitted::In(Err(failure)) => Some(Err(Outcome::Failed(failure))),
                Admitted::In(Ok(item)) => Some(guard.check(item).map_err(Outcome::Clash)),
            };
            futures::future::ready(admitted)
        })
        .map(|item| async move {
            match item {
                Err(outcome) => outcome,
                Ok(item) if item.kind == EntryKind::Dir => Outcome::Dir(item),
                Ok(item) => {
                    let path = item.path.clone();
                    let outcome = place::restore_file(fetcher, dest, prefix, item, no_clobber).await;
                    let (what, bytes) = match &outcome {
                        Outcome::Downloaded(b) => ("downloaded", *b),
                        Outcome::Link(l) => ("downloaded", l.size),
                        Outcome::Unchanged => ("unchanged", 0),
                        Outcome::Kept(..) => ("kept", 0),
                        Outcome::Failed(_) | Outcome::Dir(_) | Outcome::Clash(_) => ("failed", 0),
                    };
                    // A dry run did none of it: no file event claims it did.
                    if !dry_run {
                        progress.advance(bytes);
                        progress.done(&path, what);
                    }
                    outcome
                }
            }
        })
        .buffer_unordered(opts.jobs.max(1))
        .boxed();
    let mut deferred = Deferred::default();
    loop {
        // Cancelled: no new file starts, and dropping `results` drops the
        // fetches in flight (their temporary files go with them).
        let outcome = tokio::select! {
            biased;
            () = opts.cancel.cancelled() => break,
            next = results.next() => match next {
                Some(outcome) => outcome,
                None => break,
            },
        };
        if let (Some(planned), Outcome::Failed(f) | Outcome::Clash(fold::Refused { failure: f, .. })) =
            (dest.planned(), &outcome)
        {
            dry::refuse(planned, std::slice::from_ref(f));
        }
        report.count(outcome, &mut deferred);
    }
    drop(results);
    report.names_mapped = guard.mapped;
    deferred
}

impl RestoreReport {
    /// Counts one entry's outcome; directories and symlinks are set aside for the end.
    fn count(&mut self, outcome: Outcome, (dirs, links): &mut Deferred) {
        match outcome {
            Outcome::Dir(item) => dirs.push((
                item.path,
                DirMeta {
                    mtime_ns: item.mtime_ns,
                    mode: item.mode,
                },
            )),
            Outcome::Link(link) => {
                self.files += 1;
                self.bytes_received += link.size;
                links.push(link);
            }
            Outcome::Downloaded(bytes) => {
                self.files += 1;
                self.downloaded += 1;
                self.bytes_received += bytes;
            }
            Outcome::Unchanged => {
                self.files += 1;
                self.unchanged += 1;
            }
            Outcome::Kept(path, spelled) => {
                self.files += 1;
                self.kept += 1;
                if let Some(spelled) = spelled {
                    self.kept_spelled.insert(path.clone(), spelled);
                }
                self.kept_paths.push(path);
            }
            Outcome::Failed(f) if f.path.is_empty() => {
                self.unreadable_entries += 1;
                self.failures.push(f);
            }
            Outcome::Failed(f) => {
                self.files += 1;
                self.failed += 1;
                self.failures.push(f);
            }
            Outcome::Clash(fold::Refused { failure, dir }) => {
                self.case_clashes += 1;
                if dir {
                    self.dirs_failed += 1;
                } else {
                    self.files += 1;
                    self.failed += 1;
                }
                self.failures.push(failure);
            }
        }
    }
}

/// The last stage, once every file is in place: symlinks, then directories'
/// modes and mtimes (deepest first), then the notices.
fn finish(
    dest: &Dest,
    dirs: Vec<(String, DirMeta)>,
    recorded: &std::collections::HashMap<String, DirMeta>,
    links: Vec<LinkToPlace>,
    report: &mut RestoreReport,
) {
    let before = report.failures.len();
    report.downloaded += place::place_links(dest, links, &mut report.failures);
    report.failed += (report.failures.len() - before) as u64;
    let before_dirs = report.failures.len();
    report.dirs = dest.finish_dirs(dirs, recorded, &mut report.failures);
    report.dirs_failed += (report.failures.len() - before_dirs) as u64;
    if let Some(planned) = dest.planned() {
        dry::refuse(planned, &report.failures[before..]);
    }
    let (removed, not) = if report.dry_run {
        ("would remove", "would not be restored")
    } else {
        ("removed", "were not restored")
    };
    report.stale_temp_removed = dest.stale_removed();
    if report.stale_temp_removed > 0 {
        tracing::warn!(
            "notice: {removed} {} temporary file(s) an interrupted restore had left in '{}'",
            report.stale_temp_removed,
            dest.path().display()
        );
    }
    let (dropped, example) = dest.modes.dropped();
    report.special_bits_dropped = dropped;
    if let Some(example) = example {
        tracing::warn!(
            "notice: setuid/setgid/sticky bits in the backup {not} on {dropped} entr{} (e.g. '{example}'); \
             pass --preserve-special-bits to restore them",
            if dropped == 1 { "y" } else { "ies" }
        );
    }
}
