//! Bringing a backed-up tree back, from a snapshot manifest or from a live
//! listing of the bucket (for trees s3backup never wrote, or when no
//! manifest exists).
//!
//! Entries stream in (manifest lines or listing pages, never all at once)
//! and are handled `jobs` at a time. For each: the remote name is checked
//! ([`crate::fs::safe_path`]); a local file that already has the same content is
//! left alone; otherwise the object is fetched ([`crate::restore::fetch`]) into a
//! temporary file beside its final name, its blake3 checked when known, its
//! mode and mtime set, and renamed into place. Directories get their modes
//! and mtimes last, deepest first, since writing files changes them.
//!
//! Every step in DEST goes through [`crate::restore::dest::Dest`]: no link inside
//! DEST is followed, for reading or writing; directories the restore makes
//! stay owner-only until they get their recorded modes at the end; stale
//! temporary files of an interrupted restore are removed.

pub mod dest;
pub mod fetch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::fs::safe_path;
use crate::fs::scan::EntryKind;
use crate::report::Failure;
use crate::restore::dest::{Dest, DirMeta, ModePolicy};
use crate::snapshots::{self, SnapshotError};
use crate::store::{self, ObjectStore, S3Settings, StoreError, join_key};
use crate::target::Target;
use fetch::Fetch;

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
}

/// What a restore did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    /// Where the entries came from: a snapshot ID, or "listing".
    pub source: String,
    /// Files selected for restore.
    pub files: u64,
    /// Files downloaded.
    pub downloaded: u64,
    /// Files already present with the same content.
    pub unchanged: u64,
    /// Files that differ but were kept (`--no-clobber`).
    pub kept: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Entries left out by `--exclude`/`--include`.
    pub excluded: u64,
    /// Files that failed.
    pub failed: u64,
    /// Bytes downloaded.
    pub bytes_received: u64,
    /// Wall time.
    pub elapsed_ms: u64,
    /// Files kept by `--no-clobber`.
    pub kept_paths: Vec<String>,
    /// The failed files.
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
    /// Entries left out because they lie under the local store being
    /// restored from, inside DEST (restoring them would overwrite the
    /// store's own objects).
    pub store_entries_skipped: u64,
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
}

/// One thing to restore, from a manifest line or a listed object.
#[derive(Debug, Clone)]
pub struct Item {
    /// Path relative to DEST (unchecked until handled).
    pub path: String,
    /// File or directory.
    pub kind: EntryKind,
    /// Size, when known.
    pub size: u64,
    /// mtime to set, when known before fetching.
    pub mtime_ns: Option<i64>,
    /// Mode to set, when known before fetching.
    pub mode: Option<u32>,
    /// Expected blake3, when known before fetching.
    pub blake3: Option<String>,
    /// ETag the object had when the snapshot was taken.
    pub etag: Option<String>,
    /// Version to fetch.
    pub version_id: Option<String>,
    /// Last-Modified from a listing (the mtime fallback).
    pub last_modified_ns: Option<i64>,
    /// Whether this came from a manifest (so a changed object is unrecoverable).
    pub from_manifest: bool,
}

/// Runs one restore.
pub async fn run(opts: &RestoreOptions) -> Result<RestoreReport, RestoreError> {
    run_with_progress(opts, Arc::new(crate::progress::NoProgress)).await
}

/// [`run`], reporting entries seen, files queued and done, and bytes received.
pub async fn run_with_progress(
    opts: &RestoreOptions,
    progress: Arc<dyn crate::progress::Progress>,
) -> Result<RestoreReport, RestoreError> {
    let started = Instant::now();
    let target_text = opts.target.to_string();
    let store_err = |source| RestoreError::Store {
        target: target_text.clone(),
        cause: source,
    };
    // A local store inside DEST is left out (see `own`); DEST inside it is refused.
    let store_in_dest = crate::fs::own::check_dest(&opts.dest, &opts.target)?;
    let store = store::open(&opts.target, &opts.s3).await.map_err(store_err)?;
    if !store.exists().await.map_err(store_err)? {
        return Err(RestoreError::NoSuchTarget(match &opts.target {
            Target::S3 { bucket, .. } => format!("bucket '{bucket}'"),
            Target::Local { root } => format!("store directory '{}'", root.display()),
        }));
    }
    let selectors: Vec<String> = opts
        .paths
        .iter()
        .map(|p| p.trim_matches('/').to_string())
        .collect();
    for s in &selectors {
        safe_path::validate(s).map_err(|e| RestoreError::NoMatch(e.to_string()))?;
    }

    let prefix = opts.target.prefix().to_string();
    let (tx, rx) = mpsc::channel::<Batch>(16);
    let mut report = RestoreReport::default();
    let mut listing_notice = false;
    let mut manifest_reader = None;
    if opts.from_listing {
        report.source = "listing".into();
        spawn_listing(store.clone(), prefix.clone(), tx);
    } else {
        let all = snapshots::list(&*store, &prefix).await.map_err(store_err)?;
        if all.is_empty() && opts.snapshot.is_none() {
            // Said once the listing finds something (an empty prefix is an error instead).
            listing_notice = true;
            report.source = "listing".into();
            spawn_listing(store.clone(), prefix.clone(), tx);
        } else {
            let id = opts.snapshot.as_deref().unwrap_or("latest");
            let opened = snapshots::open(&*store, &all, id, &target_text).await?;
            report.source = opened.snapshot.id.clone();
            manifest_reader = Some(spawn_manifest(opened.reader, opened.snapshot.id.clone(), tx));
        }
    }

    let created_dest = !opts.dest.exists();
    std::fs::create_dir_all(&opts.dest).map_err(|e| RestoreError::Dest(opts.dest.clone(), e))?;
    let dest_path = opts
        .dest
        .canonicalize()
        .map_err(|e| RestoreError::Dest(opts.dest.clone(), e))?;
    let dest = Arc::new(
        Dest::open(&dest_path, ModePolicy::new(opts.preserve_special_bits))
            .map_err(|e| RestoreError::Dest(opts.dest.clone(), e.into()))?,
    );

    let fetcher = Arc::new(fetch::Fetcher::new(store.clone(), opts.jobs));
    let mut matched = vec![false; selectors.len()];
    let mut dirs: Vec<(String, DirMeta)> = Vec::new();
    // Every directory entry, selected or not: a directory a selected file
    // needs is created, and gets its recorded metadata at the end.
    let mut recorded: std::collections::HashMap<String, DirMeta> = std::collections::HashMap::new();
    let mut links: Vec<LinkToPlace> = Vec::new();
    let items = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) })
        .flat_map(futures::stream::iter)
        .boxed();
    let mut total_seen = 0u64;
    let mut report_excluded = 0u64;
    let mut store_met = 0u64;
    let filters = &opts.filters;
    let mut results = items
        .filter_map(|item| {
            let item = match item {
                Ok(item) => item,
                Err(e) => {
                    return futures::future::ready(Some(Err(Failure {
                        path: String::new(),
                        error: e,
                    })));
                }
            };
            total_seen += 1;
            if item.kind == EntryKind::Dir {
                recorded.insert(
                    item.path.clone(),
                    DirMeta {
                        mtime_ns: item.mtime_ns,
                        mode: item.mode,
                    },
                );
            }
            if total_seen.is_multiple_of(1000) {
                progress.scanned(total_seen as usize);
            }
            if total_seen == 1 && listing_notice {
                tracing::warn!(
                    "notice: no snapshot manifest under {target_text}; restoring from a listing of the bucket"
                );
            }
            if store_in_dest
                .as_deref()
                .is_some_and(|store| crate::fs::own::is_under(&item.path, store))
            {
                store_met += 1;
                return futures::future::ready(None);
            }
            if !filters.selects(&item.path, item.kind == EntryKind::Dir) {
                report_excluded += 1;
                return futures::future::ready(None);
            }
            let mut hit = selectors.is_empty();
            for (i, s) in selectors.iter().enumerate() {
                if item.path == *s
                    || item
                        .path
                        .strip_prefix(s.as_str())
                        .is_some_and(|r| r.starts_with('/'))
                {
                    matched[i] = true;
                    hit = true;
                }
            }
            if hit && item.kind != EntryKind::Dir {
                progress.queued(1, item.size);
            }
            futures::future::ready(hit.then_some(Ok(item)))
        })
        .map(|item| {
            let (fetcher, dest, prefix) = (fetcher.clone(), dest.clone(), prefix.clone());
            let no_clobber = opts.no_clobber;
            let progress = progress.clone();
            async move {
                match item {
                    Err(f) => Outcome::Failed(f),
                    Ok(item) if item.kind == EntryKind::Dir => Outcome::Dir(item),
                    Ok(item) => {
                        let path = item.path.clone();
                        let outcome = restore_file(&fetcher, &dest, &prefix, item, no_clobber).await;
                        let (what, bytes) = match &outcome {
                            Outcome::Downloaded(b) => ("downloaded", *b),
                            Outcome::Link(l) => ("downloaded", l.target.len() as u64),
                            Outcome::Unchanged => ("unchanged", 0),
                            Outcome::Kept(_) => ("kept", 0),
                            Outcome::Failed(_) | Outcome::Dir(_) => ("failed", 0),
                        };
                        progress.advance(bytes);
                        progress.done(&path, what);
                        outcome
                    }
                }
            }
        })
        .buffer_unordered(opts.jobs.max(1))
        .boxed();
    while let Some(outcome) = results.next().await {
        match outcome {
            Outcome::Dir(item) => dirs.push((
                item.path,
                DirMeta {
                    mtime_ns: item.mtime_ns,
                    mode: item.mode,
                },
            )),
            Outcome::Link(link) => {
                report.files += 1;
                report.bytes_received += link.target.len() as u64;
                links.push(link);
            }
            Outcome::Downloaded(bytes) => {
                report.files += 1;
                report.downloaded += 1;
                report.bytes_received += bytes;
            }
            Outcome::Unchanged => {
                report.files += 1;
                report.unchanged += 1;
            }
            Outcome::Kept(path) => {
                report.files += 1;
                report.kept += 1;
                report.kept_paths.push(path);
            }
            Outcome::Failed(f) => {
                report.files += u64::from(!f.path.is_empty());
                report.failures.push(f);
            }
        }
    }
    drop(results);
    report.excluded = report_excluded;
    report.store_entries_skipped = store_met;
    if let (Some(store), 1..) = (&store_in_dest, store_met) {
        tracing::warn!(
            "notice: not restored: {store_met} entries under '{store}', where the local store being restored from lies in DEST"
        );
    }
    // The reader has ended (the channel closed); it says whether it read to the end.
    let stopped = match manifest_reader {
        Some(reader) => reader.await.unwrap_or_else(|e| {
            Some(crate::manifest::ReadError::Stopped {
                line: 0,
                reason: format!("the manifest reader failed: {e}"),
            })
        }),
        None => None,
    };
    if let Some(cause) = stopped {
        let stop = SnapshotError::Stopped {
            id: report.source.clone(),
            cause,
        };
        if total_seen == 0 && report.failures.is_empty() {
            if created_dest {
                let _ = std::fs::remove_dir(&dest_path);
            }
            return Err(stop.into());
        }
        report.stopped = Some(format!(
            "{stop}; the restore stopped there: entries after it were not restored"
        ));
    }

    let nothing = if total_seen == 0 && report.failures.is_empty() {
        Some(RestoreError::Empty(target_text))
    } else if !selectors.is_empty() && !matched.iter().any(|m| *m) {
        Some(RestoreError::NoMatch(selectors.join(", ")))
    } else {
        None
    };
    if let Some(err) = nothing {
        if created_dest {
            // Leave no trace of a restore that restored nothing.
            let _ = std::fs::remove_dir(&dest_path);
        }
        return Err(err);
    }
    for (s, m) in selectors.iter().zip(&matched) {
        if !m {
            report.failures.push(Failure {
                path: s.clone(),
                error: "not found in the backup".into(),
            });
        }
    }
    report.downloaded += place_links(&dest, links, &mut report.failures);
    report.dirs = dest.finish_dirs(dirs, &recorded, &mut report.failures);
    report.failed = report.failures.len() as u64;
    report.stale_temp_removed = dest.stale_removed();
    if report.stale_temp_removed > 0 {
        tracing::warn!(
            "notice: removed {} temporary file(s) an interrupted restore had left in '{}'",
            report.stale_temp_removed,
            dest_path.display()
        );
    }
    let (dropped, example) = dest.modes.dropped();
    report.special_bits_dropped = dropped;
    if let Some(example) = example {
        tracing::warn!(
            "notice: setuid/setgid/sticky bits in the backup were not restored on {dropped} entr{} (e.g. '{example}'); \
             pass --preserve-special-bits to restore them",
            if dropped == 1 { "y" } else { "ies" }
        );
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    progress.finish();
    Ok(report)
}

enum Outcome {
    Dir(Item),
    Link(LinkToPlace),
    Downloaded(u64),
    Unchanged,
    Kept(String),
    Failed(Failure),
}

/// Entries (or the reasons they could not be read) passed from the reader
/// in batches: one per entry would wake the reading thread once per file.
type Batch = Vec<Result<Item, String>>;

/// Entries per batch from the manifest reader.
const MANIFEST_BATCH: usize = 256;

/// Feeds manifest entries into the channel from a blocking thread. A bad
/// line is one failure and the read goes on; the thread's result is the
/// [`ReadError::Stopped`](crate::manifest::ReadError::Stopped) that ended
/// the read early, if one did.
fn spawn_manifest(
    reader: crate::manifest::Reader<std::fs::File>,
    snapshot: String,
    tx: mpsc::Sender<Batch>,
) -> tokio::task::JoinHandle<Option<crate::manifest::ReadError>> {
    tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(MANIFEST_BATCH);
        let mut stopped = None;
        for entry in reader {
            let entry = match entry {
                Err(e @ crate::manifest::ReadError::Stopped { .. }) => {
                    stopped = Some(e);
                    break;
                }
                other => other,
            };
            let item = entry
                .map_err(|e| format!("snapshot {snapshot}: {e}; that entry was not restored"))
                .and_then(|e| {
                    let Some(kind) = EntryKind::from_name(&e.kind) else {
                        return Err(format!("{}: unknown entry type '{}'", e.path, e.kind));
                    };
                    Ok(Item {
                        kind,
                        size: e.size,
                        mtime_ns: Some(e.mtime_ns),
                        mode: u32::from_str_radix(&e.mode, 8).ok(),
                        blake3: (!e.blake3.is_empty()).then_some(e.blake3),
                        etag: (!e.etag.is_empty()).then_some(e.etag),
                        version_id: e.version_id,
                        last_modified_ns: None,
                        from_manifest: true,
                        path: e.path,
                    })
                });
            batch.push(item);
            if batch.len() == MANIFEST_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(MANIFEST_BATCH));
                if tx.blocking_send(full).is_err() {
                    return None;
                }
            }
        }
        if !batch.is_empty() {
            let _ = tx.blocking_send(batch);
        }
        stopped
    })
}

/// Feeds listed objects into the channel, skipping folder placeholders and the tool's own area.
fn spawn_listing(store: Arc<dyn ObjectStore>, prefix: String, tx: mpsc::Sender<Batch>) {
    tokio::spawn(async move {
        let list_prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let mut objects = store.list(&list_prefix);
        while let Some(object) = objects.next().await {
            let item = match object {
                Err(e) => Err(format!("listing failed: {e}")),
                Ok(o) => {
                    let path = o.key[list_prefix.len()..].to_string();
                    if path.is_empty()
                        || path.ends_with('/')
                        || path == ".s3backup"
                        || path.starts_with(".s3backup/")
                    {
                        continue;
                    }
                    Ok(Item {
                        path,
                        kind: EntryKind::File,
                        size: o.size,
                        mtime_ns: None,
                        mode: None,
                        blake3: None,
                        etag: None,
                        version_id: None,
                        last_modified_ns: o.last_modified_ns,
                        from_manifest: false,
                    })
                }
            };
            let stop = item.is_err();
            if tx.send(vec![item]).await.is_err() || stop {
                return;
            }
        }
    });
}

/// A symlink fetched and checked, placed after every file is written.
struct LinkToPlace {
    path: String,
    target: Vec<u8>,
    mtime_ns: Option<i64>,
}

/// Places the fetched symlinks, one by one, once all files are written:
/// a link made earlier could otherwise stand where a later (hostile)
/// entry expects a directory. Each one's directory is reached again
/// without following links, so a link placed earlier is refused as a
/// component. Returns how many were placed.
fn place_links(dest: &Dest, links: Vec<LinkToPlace>, failures: &mut Vec<Failure>) -> u64 {
    let mut placed = 0;
    for link in links {
        let shown = crate::fs::names::local(dest.path(), &link.path);
        let result = match dest.find_parent(&link.path) {
            Ok(Some((dir, name))) => fetch::place_link(&dir, &name, &shown, &link.target, link.mtime_ns),
            Ok(None) => Err(std::io::Error::other("its directory vanished during the restore")),
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(()) => placed += 1,
            Err(e) => failures.push(Failure {
                path: link.path,
                error: e.to_string(),
            }),
        }
    }
    placed
}

async fn restore_file(
    fetcher: &fetch::Fetcher,
    dest: &Dest,
    prefix: &str,
    item: Item,
    no_clobber: bool,
) -> Outcome {
    let fail = |path: &str, error: String| {
        Outcome::Failed(Failure {
            path: path.to_string(),
            error,
        })
    };
    if let Err(e) = safe_path::validate(&item.path) {
        return fail(&item.path, e.to_string());
    }
    let key = join_key(prefix, &item.path);
    let shown = crate::fs::names::local(dest.path(), &item.path);
    // Usually a cache lookup; the first file of a directory walks to it
    // (a few system calls, too brief to hand to another thread).
    let found = match dest.find_parent(&item.path) {
        Ok(found) => found,
        Err(e) => return fail(&item.path, e.to_string()),
    };
    if let Some((dir, name)) = &found {
        match fetch::compare_local(fetcher, &key, dir, name, &shown, &item).await {
            Ok(fetch::Local::Same {
                mtime_ns, file: None, ..
            }) => {
                return match fetch::set_link_time(dir, name, mtime_ns) {
                    Ok(()) => Outcome::Unchanged,
                    Err(e) => fail(&item.path, e.to_string()),
                };
            }
            Ok(fetch::Local::Same {
                mtime_ns,
                mode,
                file: Some(file),
            }) => {
                let mode = mode.map(|m| dest.modes.apply(&item.path, m));
                return match fetch::set_file_times_and_mode(&file, mtime_ns, mode) {
                    Ok(()) => Outcome::Unchanged,
                    Err(e) => fail(&item.path, e.to_string()),
                };
            }
            Ok(fetch::Local::Differs) if no_clobber => return Outcome::Kept(item.path),
            Ok(fetch::Local::Differs | fetch::Local::Missing) => {}
            Err(e) => return fail(&item.path, e),
        }
    }
    let (dir, name) = match found {
        Some(found) => found,
        None => match dest.make_parent(&item.path) {
            Ok(made) => made,
            Err(e) => return fail(&item.path, e.to_string()),
        },
    };
    let fetch = Fetch {
        key: &key,
        item: &item,
        dir: &dir,
        name: &name,
        shown: &shown,
        modes: &dest.modes,
    };
    match fetcher.fetch(fetch).await {
        Ok(fetch::Fetched::File(bytes)) => Outcome::Downloaded(bytes),
        Ok(fetch::Fetched::Link { target, mtime_ns }) => Outcome::Link(LinkToPlace {
            path: item.path,
            target,
            mtime_ns,
        }),
        Err(e) => fail(&item.path, e),
    }
}
