//! Checking that the bucket really holds a snapshot.
//!
//! The manifest (sorted by path) and a listing of the prefix (sorted by key,
//! which is the same order) are walked side by side, so every file is
//! checked for presence, size and ETag with one listing and no request per
//! file. On a versioned bucket, a file whose current object differs from
//! the snapshot is checked by asking for the recorded version. `--deep`
//! downloads every file and checks its blake3.
//!
//! History (issue 15): a file not at its key as recorded may still be
//! kept. The newest snapshot's manifest is read alongside
//! ([`crate::restore::locate::Newest`]): where it lists the same content
//! under the ETag the key now has, the key holds it (a re-dated file);
//! otherwise the content area, listed once when first needed ([`kept`]),
//! holds it at the recorded size or nobody does. `--deep` reads each file
//! through the restore's [`Fetcher::download_located`], from where a
//! restore would. [`all`] checks every snapshot. Snapshots of buckets
//! without history (format 1, `--history off`) are judged as before.
//!
//! A verdict of damage needs proof: a file is *missing* when the store says
//! it does not exist (404), *mismatched* when what it holds (listed size and
//! ETag, a version's, or the bytes read whole) differs from the snapshot.
//! `--deep` reads each object through the restore's own download
//! ([`Fetcher::download`]: the same requests, size and blake3 checks, and
//! retries, [`DOWNLOAD_ATTEMPTS`] in all, a body cut short fetched again
//! from the start), hashing the bytes instead of writing them, so what
//! verify calls intact is what a restore accepts. A request that fails is
//! retried as a restore retries it;
//! a file that still cannot be read is *unreadable* (network, throttling,
//! access or storage-class errors, sorted by [`StoreError`] kind): it is
//! counted and listed apart from the damaged ones, since nothing is known
//! about its content. Issue 11, part 5: through injected faults, transport
//! errors had been reported as mismatches.
//!
//! `--checksums` ([`sums`]): a file present as recorded is also asked for
//! the checksum the store keeps (a HEAD with checksum mode, no body) and
//! compared with the one `backup --checksum-algorithm` recorded: integrity
//! at rest without paying for a download. A file with nothing to compare
//! is *not checked*, counted apart, never as intact.

pub mod all;
pub mod kept;
mod read;
pub mod sample;
mod sums;

use std::sync::Arc;
use std::time::Instant;

use futures::stream::{BoxStream, Peekable};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::history;
use crate::manifest::{Entry, ReadError, Reader};
use crate::restore::fetch::Fetcher;
use crate::restore::locate::{self, Newest, Origin};
use crate::snapshots::{self, Snapshot, SnapshotError};
use crate::store::{self, ObjectInfo, ObjectStore, S3Settings, StoreError, StoreResult, join_key};
use crate::target::Target;
use crate::verify::kept::{ContentSet, Held, LazyContent};

/// What to verify.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Where the backup is.
    pub target: Target,
    /// Snapshot ID (`latest` when `None`).
    pub snapshot: Option<String>,
    /// Check every snapshot ([`all::run`]) instead of one.
    pub all: bool,
    /// Download every file and check its blake3.
    pub deep: bool,
    /// Compare each file's checksum as the store keeps it (a HEAD with
    /// checksum mode, no body) with the recorded one ([`sums`]).
    pub checksums: bool,
    /// With `deep`: download only this share of the files ([`sample`]).
    pub sample: Option<sample::Fraction>,
    /// The state file that remembers sampled checks (used only if it exists).
    pub state: Option<std::path::PathBuf>,
    /// Requests in flight at once (deep mode).
    pub jobs: usize,
    /// How to reach S3.
    pub s3: S3Settings,
}

/// One file that is not as the snapshot says, or could not be checked.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// Relative path.
    pub path: String,
    /// What is wrong.
    pub kind: ProblemKind,
    /// Details.
    pub detail: String,
}

/// What verify found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// The snapshot checked.
    pub snapshot: String,
    /// Files in the snapshot.
    pub files: u64,
    /// Files found as recorded.
    pub ok: u64,
    /// Files absent from the bucket.
    pub missing: u64,
    /// Files present but different.
    pub mismatched: u64,
    /// Files that could not be read or checked after retries (network,
    /// throttling, access): not known to be damaged, not known to be intact.
    pub unreadable: u64,
    /// Manifest lines that could not be read (each skipped, its file
    /// unchecked): damage of the snapshot itself, listed in `problems`.
    pub damaged_lines: u64,
    /// Damaged snapshots newer than the one checked, passed over to find
    /// `latest` (newest first); verify fails when there are any.
    pub passed_over: Vec<snapshots::Damage>,
    /// Files whose checksum could not be compared (`--checksums`): none
    /// recorded, none kept by the store, or another algorithm's. Never
    /// counted in `ok`, nor as damage.
    pub not_checked: u64,
    /// Of `ok`, the files found only as kept copies in the content area
    /// and checked by size alone (no `--deep`, no `--checksums`).
    pub ok_by_size: u64,
    /// Bytes downloaded and hashed (`--deep`).
    pub bytes_checked: u64,
    /// Whether contents were checked.
    pub deep: bool,
    /// Whether the store's checksums were compared (`--checksums`).
    pub checksums: bool,
    /// `--sample`: the slice read this run and what the cycle covers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<sample::SampleReport>,
    /// Wall time.
    pub elapsed_ms: u64,
    /// Every missing or mismatched file (damage), sorted by path.
    pub problems: Vec<Problem>,
    /// Every unreadable file, sorted by path.
    pub unreadable_files: Vec<Problem>,
    /// Every file whose checksum could not be compared, sorted by path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_checked_files: Vec<Problem>,
    /// The requests the run sent, by kind, with their body bytes (the
    /// run's total: absent from each snapshot of `verify --all`, whose
    /// report has the total).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<crate::store::RequestCounts>,
    /// How many requests were in flight: the most at once, the adaptive
    /// limit's highest and last level, throttling answers seen
    /// ([`crate::store::flow`]; absent like `requests`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<crate::store::flow::Concurrency>,
}

/// Why verify could not run.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The store failed.
    #[error("{target}: {cause}")]
    Store {
        /// The target text.
        target: String,
        /// What the store said.
        cause: StoreError,
    },
    /// The bucket or store directory does not exist.
    #[error("{0} does not exist")]
    NoSuchTarget(String),
    /// There is nothing to verify.
    #[error("no snapshots under {0}: nothing to verify")]
    NoSnapshots(String),
    /// The snapshot could not be found or read.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The state file that remembers sampled checks could not be used.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// What is wrong with a file, as `--json` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// The store says the file does not exist (404): damage.
    Missing,
    /// Its listed size, ETag or bytes differ from the snapshot's: damage.
    Mismatch,
    /// It could not be read after retries: nothing is known of its content
    /// (in [`VerifyReport::unreadable_files`]).
    Unreadable,
    /// A manifest line that could not be read (damage of the snapshot: the
    /// path is empty, the detail names the line).
    DamagedLine,
    /// `--checksums`: present as the listing says, but no checksum to
    /// compare (in [`VerifyReport::not_checked_files`]); not damage.
    NotChecked,
}

impl ProblemKind {
    /// The name `--json` and the text report use.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Missing => "missing",
            ProblemKind::Mismatch => "mismatch",
            ProblemKind::Unreadable => "unreadable",
            ProblemKind::DamagedLine => "damaged-line",
            ProblemKind::NotChecked => "not-checked",
        }
    }
}

impl std::fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

enum Check {
    Ok,
    /// A kept copy in the content area, listed at the recorded size: its
    /// key names its blake3, but a listing shows no more than its size
    /// (a copy's ETag need not be the original's), so without `--deep`
    /// this is all that was checked.
    OkBySize,
    Problem(Problem),
    /// Present as recorded; `--deep` still has to read it.
    Read(Entry, String, Origin),
    /// Current object differs; the recorded version must be checked.
    Version(Entry, String, String),
}

type Listing<'a> = Peekable<BoxStream<'a, StoreResult<ObjectInfo>>>;

/// Runs one verification.
///
/// # Errors
/// [`VerifyError`]: the target cannot be reached or does not exist, holds
/// no snapshots, the snapshot is unknown or its manifest unreadable or cut
/// short, or the listing failed. Damaged or unreadable files are not
/// errors: they are in the report.
pub async fn run(opts: &VerifyOptions) -> Result<VerifyReport, VerifyError> {
    let (store, all) = open_target(opts).await?;
    let target_text = opts.target.to_string();
    let opened = snapshots::open(
        &*store,
        &all,
        opts.snapshot.as_deref().unwrap_or("latest"),
        &target_text,
    )
    .await?;
    let content = LazyContent::new();
    let id = opened.snapshot.id.clone();
    let one = (id, opened.reader, opened.passed_over);
    let mut report = check_snapshot(opts, &store, &all, one, &content).await?;
    report.requests = Some(store.requests());
    report.concurrency = Some(store.signals().figures());
    Ok(report)
}

/// Opens the store, checks that the target exists, and lists its snapshots.
///
/// # Errors
/// [`VerifyError`]: the target cannot be reached, does not exist, or holds no snapshots.
async fn open_target(opts: &VerifyOptions) -> Result<(Arc<dyn ObjectStore>, Vec<Snapshot>), VerifyError> {
    let target_text = opts.target.to_string();
    let store_err = |source| VerifyError::Store {
        target: target_text.clone(),
        cause: source,
    };
    let store = store::open(&opts.target, &opts.s3).await.map_err(store_err)?;
    if !store.exists().await.map_err(store_err)? {
        return Err(VerifyError::NoSuchTarget(target_text));
    }
    let all = snapshots::list(&*store, opts.target.prefix())
        .await
        .map_err(store_err)?;
    if all.is_empty() {
        return Err(VerifyError::NoSnapshots(target_text));
    }
    Ok((store, all))
}

/// Checks one opened snapshot (its ID, manifest and the damaged newer
/// snapshots passed over to find it) against one listing of the prefix,
/// the newest snapshot's manifest alongside and the content area when a
/// file needs it (listed once into `content`, see [`kept`]).
///
/// # Errors
/// As [`run`]: the listing failed or the manifest broke off.
async fn check_snapshot(
    opts: &VerifyOptions,
    store: &Arc<dyn ObjectStore>,
    all: &[Snapshot],
    (id, reader, passed_over): (String, Reader<std::fs::File>, Vec<snapshots::Damage>),
    content: &LazyContent,
) -> Result<VerifyReport, VerifyError> {
    let started = Instant::now();
    let target_text = opts.target.to_string();
    let store_err = |source| VerifyError::Store {
        target: target_text.clone(),
        cause: source,
    };
    let prefix = opts.target.prefix();
    let mut report = VerifyReport {
        snapshot: id.clone(),
        deep: opts.deep,
        checksums: opts.checksums,
        passed_over,
        ..VerifyReport::default()
    };
    let newest = locate::newest_after(&**store, all, &id, &target_text).await?;
    let history = locate::uses_content_area(&reader.header, newest.as_ref().map(|r| &r.header))
        || crate::history::area_in_use(&**store, prefix)
            .await
            .map_err(|cause| VerifyError::Store {
                target: target_text.clone(),
                cause,
            })?;
    let mut sampler = match &opts.sample {
        Some(fraction) if opts.deep => {
            Some(sample::choose_for(opts, store, all, &id, fraction.clone()).await?)
        }
        _ => None,
    };
    let chosen = sampler.as_ref().map(sample::Sampler::chosen);
    let ctx = Ctx {
        store: &**store,
        deep: opts.deep,
        checksums: opts.checksums,
        sample: chosen.as_ref(),
        prefix: prefix.to_string(),
        history,
        content,
    };
    let list_prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let listing: Listing<'_> = store.list(&list_prefix).peekable();
    let newest = newest.filter(|_| history).map(Newest::new);
    let checks = walk((reader, listing, newest), &ctx, id);
    let fetcher = &Fetcher::new(store.clone(), opts.jobs);
    let ctx = &ctx;
    let mut results = checks
        .map_ok(|check| read::settle(ctx, fetcher, check))
        .try_buffer_unordered(opts.jobs.max(1))
        .boxed();
    while let Some(result) = results.next().await {
        let (sampled, check, bytes, hashed) = result.map_err(|step| match step {
            Step::Store(e) => store_err(e),
            Step::Stopped(e) => VerifyError::Snapshot(e),
        })?;
        if let Some(s) = sampler.as_mut() {
            sample_note(s, sampled.as_deref(), &check, hashed);
        }
        report.count(check, bytes);
    }
    drop(results);
    if let Some(s) = sampler {
        report.sample = Some(s.finish(opts.state.as_deref())?);
    }
    report.problems.sort_by(|a, b| a.path.cmp(&b.path));
    report.unreadable_files.sort_by(|a, b| a.path.cmp(&b.path));
    report.not_checked_files.sort_by(|a, b| a.path.cmp(&b.path));
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Tells the sampler one file's verdict: `sampled` is its path when it is
/// in the slice (`hashed`: its bytes were read whole and hashed); any file
/// found missing, mismatched or unreadable is not covered this run.
fn sample_note(s: &mut sample::Sampler, sampled: Option<&str>, check: &Check, hashed: bool) {
    let outcome = match check {
        Check::Problem(p) if matches!(p.kind, ProblemKind::DamagedLine | ProblemKind::NotChecked) => return,
        Check::Problem(p) if p.kind == ProblemKind::Unreadable => sample::Outcome::Unreadable,
        Check::Problem(_) => sample::Outcome::Damaged,
        _ => sample::Outcome::Intact,
    };
    match (sampled, check) {
        (Some(path), _) => s.record(path, outcome, hashed, crate::fs::scan::now_ns()),
        (None, Check::Problem(p)) => s.note(&p.path, false),
        (None, _) => {}
    }
}

/// What the walk needs besides the manifest, the listing and the newest manifest.
struct Ctx<'a> {
    store: &'a dyn ObjectStore,
    deep: bool,
    /// `--checksums`: the store's checksum of each file is compared ([`sums`]).
    checksums: bool,
    /// `--sample`: the paths `deep` reads (None: every path).
    sample: Option<&'a std::collections::HashSet<String>>,
    prefix: String,
    /// Whether the content area is in use ([`locate::uses_content_area`]).
    history: bool,
    /// The content area, listed the first time a file needs it.
    content: &'a LazyContent,
}

impl Ctx<'_> {
    /// Whether `--deep` reads the file at `path` (sampled: only the chosen).
    fn deep_for(&self, path: &str) -> bool {
        self.deep && self.sample.is_none_or(|s| s.contains(path))
    }

    /// The content area's (blake3, size) pairs, listed the first time a
    /// file needs them and shared by every snapshot checked.
    ///
    /// # Errors
    /// The store's error from the listing.
    async fn content_set(&self) -> StoreResult<&ContentSet> {
        self.content
            .get_or_try_init(|| ContentSet::list(self.store, &self.prefix))
            .await
    }
}

/// The walk's moving parts: the snapshot's manifest, the listing of the
/// prefix, and the newest snapshot's manifest (`None`: this is the newest).
type Cursors<'a> = (Reader<std::fs::File>, Listing<'a>, Option<Newest>);

/// The manifest's file entries walked beside the listing: one [`Check`]
/// each (or a damaged line's problem), in manifest order; ends early, with
/// the reason, when the listing fails or the manifest breaks off.
fn walk<'a>(
    cursors: Cursors<'a>,
    ctx: &'a Ctx<'a>,
    snapshot_id: String,
) -> impl futures::Stream<Item = Result<Check, Step>> + 'a {
    futures::stream::try_unfold(cursors, move |(mut reader, mut listing, mut newest)| {
        let snapshot_id = snapshot_id.clone();
        async move {
            let entry = match next_file(&mut reader) {
                Ok(Some(entry)) => entry,
                Ok(None) => return Ok(None),
                Err(ReadError::Line { line, reason }) => {
                    let problem = Problem {
                        path: String::new(),
                        kind: ProblemKind::DamagedLine,
                        detail: format!("snapshot {snapshot_id}: manifest line {line}: {reason}"),
                    };
                    return Ok(Some((Check::Problem(problem), (reader, listing, newest))));
                }
                Err(cause @ ReadError::Stopped { .. }) => {
                    return Err(Step::Stopped(SnapshotError::Stopped {
                        id: snapshot_id,
                        cause,
                    }));
                }
            };
            let key = join_key(&ctx.prefix, &entry.path);
            let found = advance(&mut listing, &key).await.map_err(Step::Store)?;
            let check = compare(entry, key, found, ctx, newest.as_mut())
                .await
                .map_err(Step::Store)?;
            Ok(Some((check, (reader, listing, newest))))
        }
    })
}

impl VerifyReport {
    /// Counts one file's verdict (and the bytes read for it).
    fn count(&mut self, check: Check, bytes: u64) {
        self.bytes_checked += bytes;
        let Check::Problem(p) = check else {
            self.files += 1;
            self.ok += 1;
            self.ok_by_size += u64::from(matches!(check, Check::OkBySize));
            return;
        };
        match p.kind {
            ProblemKind::Missing => self.missing += 1,
            ProblemKind::Unreadable => self.unreadable += 1,
            ProblemKind::DamagedLine => self.damaged_lines += 1,
            ProblemKind::Mismatch => self.mismatched += 1,
            ProblemKind::NotChecked => self.not_checked += 1,
        }
        self.files += u64::from(p.kind != ProblemKind::DamagedLine);
        match p.kind {
            ProblemKind::Unreadable => self.unreadable_files.push(p),
            ProblemKind::NotChecked => self.not_checked_files.push(p),
            _ => self.problems.push(p),
        }
    }
}

/// Why the walk over the manifest and the listing ended early.
enum Step {
    /// The store failed.
    Store(StoreError),
    /// The manifest broke off after its header.
    Stopped(SnapshotError),
}

impl From<StoreError> for Step {
    fn from(e: StoreError) -> Self {
        Step::Store(e)
    }
}

/// The next file entry of the manifest (directories have no object), or
/// the line that could not be read.
fn next_file(reader: &mut Reader<std::fs::File>) -> Result<Option<Entry>, ReadError> {
    for entry in reader.by_ref() {
        let entry = entry?;
        if entry.kind != "dir" {
            return Ok(Some(entry));
        }
    }
    Ok(None)
}

/// Advances the listing to `key`: the object listed under it, if any.
///
/// # Errors
/// The listing's error.
async fn advance(listing: &mut Listing<'_>, key: &str) -> StoreResult<Option<ObjectInfo>> {
    loop {
        let ahead = match std::pin::Pin::new(&mut *listing).peek().await {
            Some(Ok(o)) => o.key.as_str() < key,
            Some(Err(_)) => {
                return match listing.next().await {
                    Some(Err(e)) => Err(e),
                    _ => Err(StoreError::Fatal("listing failed".into())),
                };
            }
            None => false,
        };
        if !ahead {
            break;
        }
        listing.next().await;
    }
    Ok(match std::pin::Pin::new(&mut *listing).peek().await {
        Some(Ok(o)) if o.key == key => listing.next().await.and_then(Result::ok),
        _ => None,
    })
}

/// Compares what the listing `found` under `key` with the entry: as
/// recorded, it is read (`--deep`) or passes; a recorded version is asked
/// for; otherwise, when the content area is in use, the live key passes
/// if the newest snapshot holds the same content there under the listed
/// ETag (a metadata-only refresh), and the content area's copy if it is
/// listed with the recorded size ([`kept`]). With `deep`, an object of the
/// recorded size found nowhere else is read: its bytes' blake3 decides.
async fn compare(
    entry: Entry,
    key: String,
    found: Option<ObjectInfo>,
    ctx: &Ctx<'_>,
    newest: Option<&mut Newest>,
) -> StoreResult<Check> {
    let store = ctx.store;
    let as_recorded = found
        .as_ref()
        .is_some_and(|o| o.size == entry.size && etags_agree(store, &o.etag, &entry.etag));
    let history = ctx.history && !entry.blake3.is_empty();
    // A version recorded but no longer the key's: the content area may hold
    // it too (`--history both`, or a version expired by a lifecycle rule),
    // and a restore would take it from there.
    if history && entry.version_id.is_some() && !as_recorded {
        let content = ctx.content_set().await?;
        if content.size_of(&entry.blake3) == Some(entry.size) {
            return Ok(Check::Read(entry, key, Origin::ContentFirst));
        }
    }
    if !history || entry.version_id.is_some() {
        return Ok(match entry.version_id.clone() {
            _ if as_recorded => Check::Read(entry, key, Origin::LiveOnly),
            Some(v) => Check::Version(entry, key, v),
            None => {
                let deep = ctx.deep_for(&entry.path);
                live_verdict(entry, key, found, deep)
            }
        });
    }
    let held = kept::held(newest, &entry);
    let live_etag = match &held {
        Held::Live => Some(entry.etag.as_str()),
        Held::LiveAs(etag) => Some(etag.as_str()),
        Held::Kept => None,
    };
    if let (Some(etag), Some(o)) = (live_etag, &found)
        && o.size == entry.size
        && etags_agree(store, &o.etag, etag)
    {
        return Ok(Check::Read(entry, key, Origin::LiveFirst));
    }
    let content = ctx.content_set().await?;
    if content.size_of(&entry.blake3) == Some(entry.size) {
        return Ok(Check::Read(entry, key, Origin::ContentFirst));
    }
    let live_expected = live_etag.is_some();
    if as_recorded
        || (ctx.deep_for(&entry.path)
            && live_expected
            && found.as_ref().is_some_and(|o| o.size == entry.size))
    {
        return Ok(Check::Read(entry, key, Origin::LiveFirst));
    }
    let content_key = history::content_key(&ctx.prefix, &entry.blake3);
    Ok(match (held, found) {
        (Held::Live | Held::LiveAs(_), Some(o)) => live_verdict(entry, key, Some(o), false),
        (_, found) => {
            let live = match found {
                None => format!("no object '{key}'"),
                Some(o) => format!("'{key}' holds other content ({} bytes)", o.size),
            };
            Check::Problem(Problem {
                detail: format!("{live} and the content area holds no intact copy ('{content_key}')"),
                path: entry.path,
                kind: ProblemKind::Missing,
            })
        }
    })
}

/// The verdict from the live key alone, as before history: missing when
/// not listed, read (`deep`, same size, a blake3 to check) or mismatched
/// when it differs.
fn live_verdict(entry: Entry, key: String, found: Option<ObjectInfo>, deep: bool) -> Check {
    let problem = |kind, detail: String| {
        Check::Problem(Problem {
            path: entry.path.clone(),
            kind,
            detail,
        })
    };
    match found {
        None => problem(ProblemKind::Missing, format!("no object '{key}'")),
        Some(o) if deep && o.size == entry.size && !entry.blake3.is_empty() => {
            Check::Read(entry, key, Origin::LiveOnly)
        }
        Some(o) => problem(
            ProblemKind::Mismatch,
            format!(
                "object has size {} and ETag {}, snapshot recorded {} and {}",
                o.size, o.etag, entry.size, entry.etag
            ),
        ),
    }
}

/// Some S3-compatible servers list no ETags: an unknown one on either side
/// proves nothing. Known ones are compared by the store's rule
/// ([`ObjectStore::same_etag`]: a local store copied to a disk with
/// coarser mtimes still holds what it recorded).
fn etags_agree(store: &dyn ObjectStore, listed: &str, recorded: &str) -> bool {
    listed.is_empty() || recorded.is_empty() || store.same_etag(listed, recorded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_kinds_keep_their_documented_names() {
        for (kind, name) in [
            (ProblemKind::Missing, "missing"),
            (ProblemKind::Mismatch, "mismatch"),
            (ProblemKind::Unreadable, "unreadable"),
            (ProblemKind::DamagedLine, "damaged-line"),
            (ProblemKind::NotChecked, "not-checked"),
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), name);
            assert_eq!(format!("{kind:<13}|"), format!("{name:<13}|"));
        }
    }
}
