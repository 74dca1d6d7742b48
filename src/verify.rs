//! Checking that the bucket really holds a snapshot.
//!
//! The manifest (sorted by path) and a listing of the prefix (sorted by key,
//! which is the same order) are walked side by side, so every file is
//! checked for presence, size and ETag with one listing and no request per
//! file. On a versioned bucket, a file whose current object differs from
//! the snapshot is checked by asking for the recorded version. `--deep`
//! downloads every file and checks its blake3.
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

use std::time::Instant;

use futures::stream::{BoxStream, Peekable};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::fs::scan::EntryKind;
use crate::manifest::{Entry, ReadError, Reader};
use crate::restore::fetch::{FetchError, Fetcher};
use crate::restore::source::Item;
use crate::snapshots::{self, SnapshotError};
use crate::store::retry::{DOWNLOAD_ATTEMPTS, retry_n};
use crate::store::{self, ObjectInfo, ObjectStore, S3Settings, StoreError, StoreResult, join_key};
use crate::target::Target;

/// What to verify.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Where the backup is.
    pub target: Target,
    /// Snapshot ID (`latest` when `None`).
    pub snapshot: Option<String>,
    /// Download every file and check its blake3.
    pub deep: bool,
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
    /// Bytes downloaded and hashed (`--deep`).
    pub bytes_checked: u64,
    /// Whether contents were checked.
    pub deep: bool,
    /// Wall time.
    pub elapsed_ms: u64,
    /// Every missing or mismatched file (damage), sorted by path.
    pub problems: Vec<Problem>,
    /// Every unreadable file, sorted by path.
    pub unreadable_files: Vec<Problem>,
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
}

impl ProblemKind {
    /// The name `--json` and the text report use.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Missing => "missing",
            ProblemKind::Mismatch => "mismatch",
            ProblemKind::Unreadable => "unreadable",
            ProblemKind::DamagedLine => "damaged-line",
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
    Problem(Problem),
    /// Present as recorded; `--deep` still has to read it.
    Read(Entry, String),
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
    let started = Instant::now();
    let target_text = opts.target.to_string();
    let store_err = |source| VerifyError::Store {
        target: target_text.clone(),
        cause: source,
    };
    let store = store::open(&opts.target, &opts.s3).await.map_err(store_err)?;
    if !store.exists().await.map_err(store_err)? {
        return Err(VerifyError::NoSuchTarget(target_text));
    }
    let prefix = opts.target.prefix();
    let all = snapshots::list(&*store, prefix).await.map_err(store_err)?;
    if all.is_empty() {
        return Err(VerifyError::NoSnapshots(target_text));
    }
    let opened = snapshots::open(
        &*store,
        &all,
        opts.snapshot.as_deref().unwrap_or("latest"),
        &target_text,
    )
    .await?;
    let snapshot = opened.snapshot;
    let reader = opened.reader;
    let mut report = VerifyReport {
        snapshot: snapshot.id.clone(),
        deep: opts.deep,
        passed_over: opened.passed_over,
        ..VerifyReport::default()
    };

    let list_prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let listing: Listing<'_> = store.list(&list_prefix).peekable();
    let deep = opts.deep;
    let checks = walk(
        reader,
        listing,
        &*store,
        deep,
        prefix.to_string(),
        snapshot.id.clone(),
    );
    let fetcher = &Fetcher::new(store.clone(), opts.jobs);
    let store = &*store;
    let mut results = checks
        .map_ok(|check| async move {
            Ok::<_, Step>(match check {
                Check::Read(entry, key) if deep => read_and_hash(fetcher, entry, &key, None).await,
                Check::Read(..) => (Check::Ok, 0),
                Check::Version(entry, key, version) => {
                    if deep {
                        read_and_hash(fetcher, entry, &key, Some(version)).await
                    } else {
                        (check_version(store, &entry, &key, &version).await, 0)
                    }
                }
                other => (other, 0),
            })
        })
        .try_buffer_unordered(opts.jobs.max(1))
        .boxed();
    while let Some(result) = results.next().await {
        let (check, bytes) = result.map_err(|step| match step {
            Step::Store(e) => store_err(e),
            Step::Stopped(e) => VerifyError::Snapshot(e),
        })?;
        report.count(check, bytes);
    }
    report.problems.sort_by(|a, b| a.path.cmp(&b.path));
    report.unreadable_files.sort_by(|a, b| a.path.cmp(&b.path));
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// The manifest's file entries walked beside the listing: one [`Check`]
/// each (or a damaged line's problem), in manifest order; ends early, with
/// the reason, when the listing fails or the manifest breaks off.
fn walk<'a>(
    reader: Reader<std::fs::File>,
    listing: Listing<'a>,
    store: &'a dyn ObjectStore,
    deep: bool,
    prefix: String,
    snapshot_id: String,
) -> impl futures::Stream<Item = Result<Check, Step>> + 'a {
    futures::stream::try_unfold((reader, listing), move |(mut reader, mut listing)| {
        let prefix = prefix.clone();
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
                    return Ok(Some((Check::Problem(problem), (reader, listing))));
                }
                Err(cause @ ReadError::Stopped { .. }) => {
                    return Err(Step::Stopped(SnapshotError::Stopped {
                        id: snapshot_id,
                        cause,
                    }));
                }
            };
            let key = join_key(&prefix, &entry.path);
            let check = compare(entry, key, &mut listing, store, deep)
                .await
                .map_err(Step::Store)?;
            Ok(Some((check, (reader, listing))))
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
            return;
        };
        match p.kind {
            ProblemKind::Missing => self.missing += 1,
            ProblemKind::Unreadable => self.unreadable += 1,
            ProblemKind::DamagedLine => self.damaged_lines += 1,
            ProblemKind::Mismatch => self.mismatched += 1,
        }
        self.files += u64::from(p.kind != ProblemKind::DamagedLine);
        if p.kind == ProblemKind::Unreadable {
            self.unreadable_files.push(p);
        } else {
            self.problems.push(p);
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

/// Advances the listing to `key` and compares what is there with the entry.
/// With `deep`, an object of the recorded size whose ETag differs (and no
/// recorded version to ask for) is read: its bytes' blake3 decides.
async fn compare(
    entry: Entry,
    key: String,
    listing: &mut Listing<'_>,
    store: &dyn ObjectStore,
    deep: bool,
) -> StoreResult<Check> {
    loop {
        let ahead = match std::pin::Pin::new(&mut *listing).peek().await {
            Some(Ok(o)) => o.key < key,
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
    let found = match std::pin::Pin::new(&mut *listing).peek().await {
        Some(Ok(o)) if o.key == key => listing.next().await.and_then(Result::ok),
        _ => None,
    };
    let problem = |kind, detail: String| {
        Check::Problem(Problem {
            path: entry.path.clone(),
            kind,
            detail,
        })
    };
    Ok(match found {
        None => match entry.version_id.clone() {
            Some(v) => Check::Version(entry, key, v),
            None => problem(ProblemKind::Missing, format!("no object '{key}'")),
        },
        Some(o) if o.size == entry.size && etags_agree(store, &o.etag, &entry.etag) => {
            Check::Read(entry, key)
        }
        Some(o) => match entry.version_id.clone() {
            Some(v) => Check::Version(entry, key, v),
            None if deep && o.size == entry.size && !entry.blake3.is_empty() => Check::Read(entry, key),
            None => problem(
                ProblemKind::Mismatch,
                format!(
                    "object has size {} and ETag {}, snapshot recorded {} and {}",
                    o.size, o.etag, entry.size, entry.etag
                ),
            ),
        },
    })
}

/// Some S3-compatible servers list no ETags: an unknown one on either side
/// proves nothing. Known ones are compared by the store's rule
/// ([`ObjectStore::same_etag`]: a local store copied to a disk with
/// coarser mtimes still holds what it recorded).
fn etags_agree(store: &dyn ObjectStore, listed: &str, recorded: &str) -> bool {
    listed.is_empty() || recorded.is_empty() || store.same_etag(listed, recorded)
}

/// Asks for the recorded version (retried as a download is): a 404 is
/// missing, other sizes or ETags a mismatch, any other failure unreadable.
async fn check_version(store: &dyn ObjectStore, entry: &Entry, key: &str, version: &str) -> Check {
    let problem = |kind, detail: String| {
        Check::Problem(Problem {
            path: entry.path.clone(),
            kind,
            detail,
        })
    };
    match retry_n(DOWNLOAD_ATTEMPTS, key, || store.head(key, Some(version))).await {
        Ok(h) if h.size == entry.size && etags_agree(store, &h.etag, &entry.etag) => Check::Ok,
        Ok(h) => problem(
            ProblemKind::Mismatch,
            format!("version {version} has size {} and ETag {}", h.size, h.etag),
        ),
        Err(StoreError::NotFound(e)) => problem(ProblemKind::Missing, format!("version {version}: {e}")),
        Err(e) => problem(
            ProblemKind::Unreadable,
            format!("version {version}: cannot check: {e}"),
        ),
    }
}

/// Downloads the object (or the recorded version) whole through the
/// restore's download ([`Fetcher::download`], retries included) and checks
/// its length and blake3 against the snapshot. Returns the verdict and the
/// bytes hashed: a 404 is missing, bytes read to their end that differ are
/// a mismatch, anything else (the store kept failing) unreadable.
async fn read_and_hash(fetcher: &Fetcher, entry: Entry, key: &str, version: Option<String>) -> (Check, u64) {
    let kind = EntryKind::from_name(&entry.kind).unwrap_or(EntryKind::File);
    let size = entry.size;
    let item = Item {
        version_id: version,
        ..Item::from_manifest(entry, kind)
    };
    let (kind, detail, bytes) = match fetcher.download(key, &item, None).await {
        Ok(got) => return (Check::Ok, got.received),
        Err(FetchError::Missing(e) | FetchError::Store(StoreError::NotFound(e))) => {
            (ProblemKind::Missing, e, 0)
        }
        Err(FetchError::Changed(e)) => (
            ProblemKind::Mismatch,
            format!("changed since the snapshot: {e}"),
            0,
        ),
        Err(FetchError::Size { got, .. }) => (
            ProblemKind::Mismatch,
            format!("content has {got} bytes, snapshot recorded {size}"),
            got,
        ),
        Err(FetchError::Hash { expected, actual, .. }) => (
            ProblemKind::Mismatch,
            format!("content has {size} bytes and blake3 {actual}, expected {expected}"),
            size,
        ),
        Err(e) => (ProblemKind::Unreadable, format!("cannot read: {e}"), 0),
    };
    let problem = Problem {
        path: item.path,
        kind,
        detail,
    };
    (Check::Problem(problem), bytes)
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
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), name);
            assert_eq!(format!("{kind:<13}|"), format!("{name:<13}|"));
        }
    }
}
