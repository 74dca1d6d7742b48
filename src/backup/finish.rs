//! Stage 5, finishing a run: once the walk is over and every file it
//! handed on is done, the directories' rows, the mode-only touches and
//! the deletions (last, after every copy that may read them); then the
//! manifest of the new state and the run's record.

use md5::Digest;

use super::BackupError;
use super::BackupOptions;
use super::BackupReport;
use super::apply::{Applied, Apply};
use super::open::Opened;
use super::spare;
use super::triage::WalkOutcome;
use crate::cancel::Interrupted;
use crate::fs::scan;
use crate::manifest;
use crate::state::{RunStatus, StateDb};
use crate::store::retry::retry;
use crate::store::{FileRange, ObjectMeta, ObjectStore, StoreError, join_key};

/// Why the manifest of a run could not be written (the files themselves are backed up).
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest could not be written to its temporary file.
    #[error("writing it to a temporary file: {0}")]
    Write(std::io::Error),
    /// The store did not take it.
    #[error("uploading it: {0}")]
    Upload(StoreError),
}

/// Settles which vanished rows `--delete` may delete: none at or under
/// what the walk could not read or left out, nor what the walk's filters
/// leave out now (see `spare`). Returns how many rows the filters spared.
pub(super) async fn settle_vanished(opts: &BackupOptions, opened: &Opened, walked: &mut WalkOutcome) -> u64 {
    let triage = &mut walked.triage;
    triage.protect(&walked.errors.iter().map(|p| p.path.clone()).collect::<Vec<_>>());
    // What a filter leaves out is not deleted by `--delete` either (as in
    // rclone and the AWS CLI): it stays in the bucket as it was, also once
    // it is gone locally (the walk's filter, applied to the rows).
    triage.protect(&walked.excluded);
    if !opts.delete {
        return 0;
    }
    let gone: Vec<String> = triage.vanished.iter().map(|r| r.path.clone()).collect();
    let spared = spare::spare_filtered(
        &mut triage.vanished,
        &opened.source,
        &opts.walk,
        &*opened.store,
        opts.target.prefix(),
        opts.jobs,
    )
    .await;
    // Left out by a filter and gone locally too: counted as excluded
    // (and named with -v), as the paths the walk left out are.
    if spared > 0 {
        let deletable: std::collections::HashSet<&str> =
            triage.vanished.iter().map(|r| r.path.as_str()).collect();
        for path in gone.iter().filter(|p| !deletable.contains(p.as_str())) {
            tracing::info!(path = %path, "excluded (gone locally): not deleted");
        }
    }
    spared as u64
}

/// Applies what the walk left for the end: problems are reported, what
/// could not be read or was filtered out is spared from `--delete` (unless
/// the guard did it already, see [`settle_vanished`]), then the
/// directories' rows, the touches and the deletions.
///
/// # Errors
/// State errors (recording rows), as the apply stage returns them.
pub(super) async fn rest(
    opts: &BackupOptions,
    opened: &Opened,
    mut walked: WalkOutcome,
    apply: &mut Apply,
) -> Result<(), BackupError> {
    let spared = match walked.spared {
        Some(spared) => spared,
        None => settle_vanished(opts, opened, &mut walked).await,
    };
    let WalkOutcome {
        triage,
        scanned,
        skipped,
        excluded,
        excluded_by,
        errors,
        ..
    } = walked;
    for s in &skipped {
        tracing::warn!(path = %s.path, "{}", s.reason);
    }
    let report = apply.report();
    report.excluded = excluded.len() as u64 + spared;
    report.excluded_by = excluded_by;
    report.counts.scanned = scanned;
    report.counts.unchanged += triage.unchanged;
    report.skipped = skipped.len() as u64;
    report.failed_dirs = errors.iter().filter(|p| p.is_dir).count() as u64;
    report.reserved = reserved_entry(&opened.source);
    for p in &errors {
        apply.fail(p.path.clone(), p.reason.clone());
    }
    let rest = triage.into_rest(opts.delete);
    apply.record_dirs(rest.dirs)?;
    let touches = rest
        .touches
        .into_iter()
        .filter(|a| apply.unblocked(a.path()))
        .collect();
    apply.execute(touches).await?;
    // Deletions wait for every transfer: a rename's copy reads the object
    // its delete removes. A path whose copy failed is not deleted either,
    // so its content stays in the bucket until the next run uploads it.
    let deletes = rest
        .deletes
        .into_iter()
        .filter(|a| !apply.copy_failed_from(a.path()))
        .collect();
    apply.execute(deletes).await?;
    // A delete may have renamed an old spelling's entry to a refused key's.
    if opts.delete {
        apply.retry_clashed().await?;
    }
    Ok(())
}

/// Whether SOURCE has a top-level `.s3backup` entry, which the walk
/// leaves out (the name is the tool's own in a store): warned about by
/// path, and counted (0 or 1).
fn reserved_entry(source: &std::path::Path) -> u64 {
    let path = source.join(scan::RESERVED);
    if std::fs::symlink_metadata(&path).is_err() {
        return 0;
    }
    tracing::warn!(
        "{}: not backed up: the name '{}' at the top of a source is reserved for s3backup's own files",
        path.display(),
        scan::RESERVED
    );
    1
}

/// Writes the manifest of the set's new state (when the run changed
/// anything) and records how the run ended. A dry run records nothing.
///
/// # Errors
/// [`BackupError::Manifest`] when the manifest could not be written (the
/// run is recorded as failed); [`BackupError::Interrupted`] when the run
/// was cancelled while it was being uploaded (recorded as interrupted:
/// the manifest stays pending, for the next run to write); state errors.
pub(super) async fn record(
    opts: &BackupOptions,
    opened: &Opened,
    applied: Applied,
) -> Result<BackupReport, BackupError> {
    let Applied { mut report, db, run } = applied;
    let set_id = opened.set_id;
    let Some((run_row, run_id)) = run else {
        // A dry run: the real run would write a manifest after any change.
        let pending = db.manifest_pending(set_id)? || !opts.tags.is_empty() || report.dirs_would_change;
        if let Some(w) = report.would_send.as_mut()
            && (pending || w.total() > 0)
        {
            w.put += 1;
        }
        return Ok(report);
    };
    // A run that sent nothing and failed files leaves the snapshot to the
    // next run: a "latest" that only adds directories would restore as if
    // the failed files never existed.
    let c = report.counts;
    let sent_nothing = c.uploaded + c.copied + c.touched + c.deleted == 0;
    let failed = c.failed + report.failed_dirs > 0;
    // A tagged run is a snapshot the user asked for by name (`--keep-tag`
    // keeps it), so it is written even when nothing changed.
    let tagged = !opts.tags.is_empty() && !failed;
    let manifest_result = if (db.manifest_pending(set_id)? || tagged) && !(sent_nothing && failed) {
        write_manifest(&db, set_id, &*opened.store, &opened.source_text, opts, &run_id).await
    } else {
        Ok(None)
    };
    // Every request of the run is sent by now (the manifest's included).
    report.requests = opened.store.requests();
    let counted = (&c, &report.requests);
    match manifest_result {
        Ok(key) => {
            if key.is_some() {
                db.set_manifest_pending(set_id, false)?;
            }
            report.snapshot = key;
            let status = if failed { RunStatus::Partial } else { RunStatus::Ok };
            db.finish_run_counted(run_row, status, counted, report.snapshot.as_deref(), None)?;
            // The device the delete guard compares the next run's with.
            if let Some(device) = super::guard::device_of(opened)
                && db.source_device(set_id)?.as_deref() != Some(device.as_str())
            {
                db.set_source_device(set_id, &device)?;
            }
            Ok(report)
        }
        Err(e @ BackupError::Interrupted(_)) => {
            db.finish_run_counted(run_row, RunStatus::Interrupted, counted, None, None)?;
            Err(e)
        }
        Err(e) => {
            db.finish_run_counted(run_row, RunStatus::Failed, counted, None, Some(&e.to_string()))?;
            Err(e)
        }
    }
}

/// The snapshot's lock. With `--lock-days`: the run's, down to the
/// earliest lock of the versions it names, after extending those that
/// end too early ([`super::relock`]). Else the bucket's default retention
/// counted from the run's start (the time in its UUIDv7 ID), which every
/// version the run wrote holds at least until: asked of the store once,
/// and only by a run that writes a manifest; `None` when the store has no
/// Object Lock or cannot say.
async fn run_lock(
    db: &StateDb,
    set_id: i64,
    store: &dyn ObjectStore,
    opts: &BackupOptions,
    run_id: &str,
) -> Option<crate::lock::Retention> {
    let started = uuid::Uuid::try_parse(run_id)
        .ok()
        .and_then(|id| id.get_timestamp())
        .and_then(|t| {
            let (secs, nanos) = t.to_unix();
            chrono::DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos)
        })
        .unwrap_or_else(chrono::Utc::now);
    if let Some(lock) = opts.s3.write.lock {
        return super::relock::relock(db, set_id, store, opts, lock, started).await;
    }
    let (mode, days) = match store.object_lock().await {
        Ok(bucket) => bucket?.default?,
        Err(e) => {
            tracing::debug!("reading the bucket's Object Lock: {e}");
            return None;
        }
    };
    Some(crate::lock::Retention::days_after(mode, started, days))
}

/// Streams the set's state into a compressed temp file, then uploads it;
/// the upload stops when `cancel` is cancelled ([`BackupError::Interrupted`]).
async fn write_manifest(
    db: &StateDb,
    set_id: i64,
    store: &dyn ObjectStore,
    source: &str,
    opts: &BackupOptions,
    run_id: &str,
) -> Result<Option<String>, BackupError> {
    let (target, cancel) = (&opts.target, &opts.cancel);
    let fail = |e| BackupError::Manifest(ManifestError::Write(e));
    let created = chrono::Utc::now();
    let (files, bytes, dirs) = db.totals_and_dirs(set_id)?;
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
        history: Some(opts.history),
        tags: opts.tags.clone(),
        lock: run_lock(db, set_id, store, opts, run_id).await,
    };
    let tmp = tempfile::NamedTempFile::new().map_err(fail)?;
    let mut hasher = blake3::Hasher::new();
    let mut md5 = md5::Md5::new();
    {
        let file = tmp.as_file().try_clone().map_err(fail)?;
        let mut writer = manifest::Writer::new(
            HashingWriter {
                inner: file,
                hasher: &mut hasher,
                md5: &mut md5,
            },
            &header,
        )
        .map_err(fail)?;
        db.for_each_file(set_id, |row| {
            writer
                .push(&manifest::Entry::from(&row))
                .map_err(|source| crate::state::StateError::Io {
                    path: tmp.path().to_path_buf(),
                    cause: source,
                })
        })?;
        writer.finish().map_err(fail)?;
    }
    let len = tmp.as_file().metadata().map_err(fail)?.len();
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
        // The S3 store computes the run's checksum of it, if any.
        sum: None,
    };
    match cancel
        .run(retry(&key, || store.put_file(&key, range, &meta)))
        .await?
    {
        Ok(_) => Ok(Some(key)),
        // The store saw the cancel first (a paced copy into a local
        // store fails its next read): the run was interrupted, not failed.
        Err(_) if cancel.is_cancelled() => Err(Interrupted.into()),
        Err(e) => Err(BackupError::Manifest(ManifestError::Upload(e))),
    }
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
