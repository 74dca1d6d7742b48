//! How `verify` settles a file the walk could not judge from the listing
//! alone: read whole and hashed (`--deep`, or `--sample`'s slice) through
//! the restore's own download, or a recorded version asked for by a HEAD;
//! and what a failed read says of the file.

use super::{Check, Ctx, Problem, ProblemKind, Step, etags_agree};
use crate::fs::scan::EntryKind;
use crate::manifest::Entry;
use crate::restore::fetch::{FetchError, Fetcher};
use crate::restore::locate::Origin;
use crate::restore::source::Item;
use crate::store::retry::{DOWNLOAD_ATTEMPTS, retry_n};
use crate::store::{ObjectStore, StoreError};

/// Finishes one file's check: reads and hashes it when `--deep` asks for
/// it (every file, or the sample's), asks for a recorded version, passes
/// what the listing found as recorded. Returns the file's path when it is
/// in the sample (its verdict is remembered), the verdict, the bytes read,
/// and whether the file was downloaded whole and hashed.
pub(super) async fn settle(
    ctx: &Ctx<'_>,
    fetcher: &Fetcher,
    check: Check,
) -> Result<(Option<String>, Check, u64, bool), Step> {
    let path = match &check {
        Check::Read(e, ..) | Check::Version(e, ..) => Some(e.path.as_str()),
        Check::Problem(p) => Some(p.path.as_str()),
        Check::Ok | Check::OkBySize => None,
    };
    let sampled = path
        .filter(|p| ctx.sample.is_some_and(|s| s.contains(*p)))
        .map(str::to_string);
    let prefix = ctx.prefix.as_str();
    let (check, bytes, hashed) = match check {
        Check::Read(entry, key, origin) if ctx.deep_for(&entry.path) => {
            let item = Item {
                origin,
                ..item_of(entry, None)
            };
            read_and_hash(fetcher, prefix, item, &key).await
        }
        Check::Read(entry, key, origin) if ctx.checksums => {
            (super::sums::check(ctx, entry, &key, origin, None).await, 0, false)
        }
        Check::Read(_, _, Origin::ContentFirst) => (Check::OkBySize, 0, false),
        Check::Read(..) => (Check::Ok, 0, false),
        Check::Version(entry, key, version) => {
            if ctx.deep_for(&entry.path) {
                read_and_hash(fetcher, prefix, item_of(entry, Some(version)), &key).await
            } else if ctx.checksums {
                let origin = Origin::LiveOnly;
                (
                    super::sums::check(ctx, entry, &key, origin, Some(&version)).await,
                    0,
                    false,
                )
            } else {
                (check_version(ctx.store, &entry, &key, &version).await, 0, false)
            }
        }
        other => (other, 0, false),
    };
    Ok((sampled, check, bytes, hashed))
}

/// What a failed read says of a file of `size` bytes: its kind, the
/// detail, the bytes hashed, and whether they were read to their end and
/// hashed. A file the content area did not hold either is judged by what
/// the live key answered (missing, or other bytes).
fn verdict(e: FetchError, size: u64) -> (ProblemKind, String, u64, bool) {
    match e {
        FetchError::Missing(e) | FetchError::Store(StoreError::NotFound(e)) => {
            (ProblemKind::Missing, e, 0, false)
        }
        FetchError::NotKept { live, content_key } => {
            let (kind, detail, bytes, hashed) = verdict(*live, size);
            let detail = format!("{detail}; the content area holds no intact copy ({content_key})");
            (kind, detail, bytes, hashed)
        }
        FetchError::Changed(e) => (
            ProblemKind::Mismatch,
            format!("changed since the snapshot: {e}"),
            0,
            false,
        ),
        FetchError::Size { got, .. } => (
            ProblemKind::Mismatch,
            format!("content has {got} bytes, snapshot recorded {size}"),
            got,
            true,
        ),
        FetchError::Hash { expected, actual, .. } => (
            ProblemKind::Mismatch,
            format!("content has {size} bytes and blake3 {actual}, expected {expected}"),
            size,
            true,
        ),
        e => (ProblemKind::Unreadable, format!("cannot read: {e}"), 0, false),
    }
}

/// The item a restore would make of `entry` (the recorded `version` to read, if any).
fn item_of(entry: Entry, version: Option<String>) -> Item {
    let kind = EntryKind::from_name(&entry.kind).unwrap_or(EntryKind::File);
    Item {
        version_id: version,
        ..Item::from_manifest(entry, kind)
    }
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
/// its length and blake3 against the snapshot. Returns the verdict, the
/// bytes hashed, and whether the bytes were read to their end and hashed:
/// a 404 is missing, bytes read to their end that differ are a mismatch,
/// anything else (the store kept failing) unreadable.
async fn read_and_hash(fetcher: &Fetcher, prefix: &str, item: Item, key: &str) -> (Check, u64, bool) {
    let (kind, detail, bytes, hashed) = match fetcher.download_located(prefix, key, &item, None).await {
        Ok(got) => return (Check::Ok, got.received, true),
        Err(e) => verdict(e, item.size),
    };
    let problem = Problem {
        path: item.path,
        kind,
        detail,
    };
    (Check::Problem(problem), bytes, hashed)
}
