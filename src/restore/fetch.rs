//! Fetching one object, correctly: the download (one GET, or parallel
//! byte ranges for a large object), retried from the start when a body is
//! cut short, checked against its size and blake3; for a restore, into a
//! temporary file beside the final name, given its mode and mtime, then
//! renamed, so a reader never sees a half-written file under the real name
//! and a failed check leaves the old file untouched.
//!
//! `verify --deep` runs the same download ([`Fetcher::download`]) with no
//! file: the bytes are hashed and dropped, so what verify calls intact is
//! what a restore would accept.
//!
//! Every local step (the temporary file, the rename, the times and modes)
//! works on a directory handle reached without following links
//! ([`crate::restore::dest`]) and on the entry's own handle, never on a
//! path that a symlink could redirect.
//!
//! Small objects come in one GET and are hashed as they stream in; large
//! ones come as parallel byte ranges written at their offsets, then hashed.
//! Every range after the first is pinned to the first response's ETag (or
//! to the requested version), so an object replaced mid-download fails
//! instead of mixing two versions.

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{StreamExt, TryStreamExt};

use crate::fs::confine::Dir;
use crate::fs::scan::EntryKind;
use crate::restore::dest::TempFile;
use crate::restore::meta::{ModePolicy, set_file_times_and_mode};
use crate::restore::source::Item;
use crate::store::flow::Flow;
use crate::store::retry::{DOWNLOAD_ATTEMPTS, retry_n};
use crate::store::{ByteChunks, GetRequest, ObjectStore, RemoteObject, StoreError};

/// Objects larger than this are fetched as parallel ranges.
const RANGE_THRESHOLD: u64 = 64 * 1024 * 1024;
/// Size of each range.
const RANGE_SIZE: u64 = 16 * 1024 * 1024;
/// Objects up to this size are written, hashed and put in place on the
/// async thread itself: that work takes microseconds, and handing it to
/// another thread (`block_in_place`) costs a thread wake-up each time,
/// which for a tree of small files was most of the restore's system time.
const INLINE_MAX: u64 = 256 * 1024;

/// The longest symlink target accepted from a store (Linux's PATH_MAX).
const MAX_LINK_TARGET: u64 = 4096;

/// Why one object could not be fetched or put in place. The Display is the
/// one line the user sees after the file's path.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A snapshot's object was replaced since (no version recorded to ask for).
    #[error("changed in the bucket since this snapshot and no version of it is recorded: unrecoverable")]
    Changed(String),
    /// A snapshot's object is gone (the store's detail inside).
    #[error("missing from the bucket: unrecoverable")]
    Missing(String),
    /// Neither the live key (or the recorded version) nor the content area
    /// holds a snapshot's content (see [`crate::restore::locate`]).
    #[error(
        "{}; the content area holds no intact copy of it ({content_key}): unrecoverable",
        crate::restore::locate::live_state(live)
    )]
    NotKept {
        /// What the live key (or version) answered: missing, changed,
        /// other bytes.
        live: Box<FetchError>,
        /// The content area's key for it.
        content_key: String,
    },
    /// The store failed, after retries.
    #[error(transparent)]
    Store(StoreError),
    /// The body read to its end has another length than recorded.
    #[error("size mismatch: got {got} bytes, expected {expected}")]
    Size {
        /// Bytes received.
        got: u64,
        /// Bytes the manifest (or the store) announced.
        expected: u64,
    },
    /// The bytes read whole do not hash to the recorded blake3.
    #[error(
        "content does not match its blake3 (expected {expected}, got {actual}): the object was changed or corrupted{}",
        if *unrecoverable { "; unrecoverable" } else { "" }
    )]
    Hash {
        /// The recorded hash (hex).
        expected: String,
        /// The hash of the bytes received (hex).
        actual: String,
        /// No other version to fetch (a snapshot's object without a version).
        unrecoverable: bool,
    },
    /// A range request answered with fewer bytes than asked.
    #[error("range at {offset} returned {got} of {len} bytes")]
    ShortRange {
        /// First byte of the range.
        offset: u64,
        /// Bytes received.
        got: u64,
        /// Bytes asked for.
        len: u64,
    },
    /// A symlink's content is longer than any link target can be.
    #[error("symlink target of {0} bytes is too long")]
    LinkTooLong(u64),
    /// A directory stands where a file goes (never replaced).
    #[error("'{}' is a directory; not replacing it with a file", .0.display())]
    DirInTheWay(PathBuf),
    /// A local step on a named path failed.
    #[error("{what} '{}': {cause}", path.display())]
    Local {
        /// The step: "checking", "reading", "writing", "creating a temporary file in".
        what: &'static str,
        /// The path under DEST.
        path: PathBuf,
        /// The system's error (named in the message, so not also the source).
        cause: std::io::Error,
    },
    /// A directory on the way in DEST is a link or a file, or cannot be reached.
    #[error(transparent)]
    Confine(#[from] crate::fs::confine::ConfineError),
    /// Reading back the temporary file failed.
    #[error("{what}: {cause}")]
    Download {
        /// The step, e.g. "re-reading the download".
        what: &'static str,
        /// The system's error (named in the message, so not also the source).
        cause: std::io::Error,
    },
}

impl FetchError {
    /// A store error as this item's failure: for an object a snapshot
    /// recorded without a version, "changed" and "not found" are final.
    fn from_store(e: StoreError, from_manifest: bool) -> Self {
        match e {
            StoreError::Changed(d) if from_manifest => FetchError::Changed(d),
            StoreError::NotFound(d) if from_manifest => FetchError::Missing(d),
            other => FetchError::Store(other),
        }
    }
}

/// What a download brought: the object as the store described it, and
/// the bytes received (read whole, checked against size and blake3).
#[derive(Debug)]
pub struct Downloaded {
    /// The object's metadata, from the first response.
    pub remote: RemoteObject,
    /// Bytes received.
    pub received: u64,
}

/// Downloads objects with at most `jobs` requests in flight (an adaptive
/// limit under that ceiling, see [`crate::store::flow`]).
pub struct Fetcher {
    store: Arc<dyn ObjectStore>,
    requests: Flow,
    jobs: usize,
}

/// One object to fetch and where it goes.
pub struct Fetch<'a> {
    /// The target's prefix (for the content area's keys).
    pub prefix: &'a str,
    /// The object's key.
    pub key: &'a str,
    /// What the manifest or listing says about it.
    pub item: &'a Item,
    /// The directory it goes in, reached without following links.
    pub dir: &'a Dir,
    /// Its final name in `dir`.
    pub name: &'a OsStr,
    /// Its path under DEST, for messages.
    pub shown: &'a Path,
    /// Which mode bits to apply.
    pub modes: &'a ModePolicy,
}

/// What a fetch brought.
#[derive(Debug)]
pub enum Fetched {
    /// A file, now in place; the bytes received.
    File(u64),
    /// A symlink's target (checked like any content), for the caller to
    /// place once every file is written, so no write can pass through it.
    Link {
        /// The raw target.
        target: Vec<u8>,
        /// mtime to give the link.
        mtime_ns: Option<i64>,
    },
}

impl Fetcher {
    /// A fetcher sharing one request limit across all downloads.
    pub fn new(store: Arc<dyn ObjectStore>, jobs: usize) -> Self {
        let jobs = jobs.max(1);
        Self {
            requests: Flow::new(jobs, store.signals(), "downloads"),
            store,
            jobs,
        }
    }

    /// The store fetched from (for a HEAD, which takes no request slot).
    pub fn store(&self) -> &dyn ObjectStore {
        &*self.store
    }

    async fn get(&self, key: &str, req: GetRequest<'_>) -> Result<(RemoteObject, ByteChunks), StoreError> {
        let _permit = self.requests.acquire().await?;
        self.store.get(key, req).await
    }

    /// Fetches one object into place (or, for a symlink, its target).
    ///
    /// # Errors
    /// [`FetchError`]: the download failed or its bytes are not the
    /// recorded ones (see [`Fetcher::download`]), or a local step failed;
    /// the old file, if any, is left untouched.
    pub async fn fetch(&self, f: Fetch<'_>) -> Result<Fetched, FetchError> {
        let item = f.item;
        let tmp = TempFile::create(f.dir).map_err(|source| FetchError::Local {
            what: "creating a temporary file in",
            path: f.shown.parent().unwrap_or(f.shown).to_path_buf(),
            cause: source,
        })?;
        let file = tmp.file();
        let Downloaded { remote, received } =
            self.download_located(f.prefix, f.key, item, Some(file)).await?;
        let mtime = item.mtime_ns.or(remote.mtime_ns).or(remote.last_modified_ns);
        // A manifest's type decides: a content object kept for a symlink
        // may hold the same bytes as a file of another snapshot.
        if item.kind == EntryKind::Symlink || (remote.symlink && !item.from_manifest) {
            if received > MAX_LINK_TARGET {
                return Err(FetchError::LinkTooLong(received));
            }
            let mut target = Vec::with_capacity(received as usize);
            std::io::copy(&mut ReadAt::new(file), &mut target).map_err(|source| FetchError::Download {
                what: "reading the download",
                cause: source,
            })?;
            return Ok(Fetched::Link {
                target,
                mtime_ns: mtime,
            });
        }
        let mode = item.mode.or(remote.mode).unwrap_or(0o644);
        let mode = f.modes.apply(&item.path, mode);
        // No fsync per file (as cp, tar and rclone): a crash leaves at worst a
        // temporary file, never a partial one under the final name, and a
        // re-run fetches whatever is missing or differs (and sweeps it, see
        // `crate::restore::dest`).
        let place = || {
            set_file_times_and_mode(tmp.file(), mtime, Some(mode))?;
            tmp.place(f.name)
        };
        if item.size <= INLINE_MAX {
            place()
        } else {
            tokio::task::block_in_place(place)
        }
        .map_err(|source| FetchError::Local {
            what: "writing",
            path: f.shown.to_path_buf(),
            cause: source,
        })?;
        Ok(Fetched::File(received))
    }

    /// Downloads the object `key` that `item` describes, into `file` when
    /// given (written at its offsets; a large object as parallel ranges),
    /// else hashing the bytes and dropping them (one GET). A request that
    /// fails, or a body cut short, is fetched again from the start,
    /// [`DOWNLOAD_ATTEMPTS`] times in all for transient errors (with a
    /// file, the rest of a short body is fetched as ranges instead). Only
    /// a body read to its end is checked against the size and blake3.
    ///
    /// # Errors
    /// [`FetchError::Missing`] / [`FetchError::Changed`] (a snapshot's
    /// object gone or replaced), [`FetchError::Size`] /
    /// [`FetchError::Hash`] (the bytes are not the recorded ones),
    /// [`FetchError::Store`] (the store failed after retries), or the
    /// file's own errors.
    pub async fn download(
        &self,
        key: &str,
        item: &Item,
        file: Option<&File>,
    ) -> Result<Downloaded, FetchError> {
        let pin_version = item.version_id.as_deref();
        let ranged = file.is_some() && item.size > RANGE_THRESHOLD;
        // The blake3 decides whether the bytes are the snapshot's; an ETag also
        // changes on metadata-only updates, so it is a condition only when no hash is known.
        let req = GetRequest {
            version_id: pin_version,
            if_match: if pin_version.is_none() && item.blake3.is_none() {
                item.etag.as_deref()
            } else {
                None
            },
            range: ranged.then_some((0, RANGE_SIZE)),
        };
        let inline = item.size <= INLINE_MAX;
        // Only a retry empties the file: on ext4, truncating a file to zero
        // makes its close start writeback (the replace-via-truncate guard),
        // which for a tree of small files costs more than the downloads.
        let written = &AtomicBool::new(false);
        // A body cut short is fetched again from the start: the SDK retries
        // a request only until its headers arrive.
        let (remote, mut hasher, mut received) = retry_n(DOWNLOAD_ATTEMPTS, key, || async move {
            if written.swap(false, Ordering::Relaxed)
                && let Some(file) = file
            {
                file.set_len(0)
                    .map_err(|e| StoreError::Fatal(format!("writing: {e}")))?;
            }
            let (remote, chunks) = self.get(key, req).await?;
            written.store(true, Ordering::Relaxed);
            if item.from_manifest && pin_version.is_none() && remote.size != item.size {
                return Err(StoreError::Changed(format!(
                    "object has {} bytes, the snapshot recorded {}",
                    remote.size, item.size
                )));
            }
            let mut hasher = blake3::Hasher::new();
            let received = write_chunks(file, 0, chunks, Some(&mut hasher), inline).await?;
            if file.is_none() && received < remote.size {
                // The store announced more than arrived: the connection, not the object.
                return Err(StoreError::Transient(format!(
                    "downloading '{key}': the body ended after {received} of {} bytes",
                    remote.size
                )));
            }
            Ok((remote, hasher, received))
        })
        .await
        .map_err(|e| FetchError::from_store(e, item.from_manifest))?;
        if let Some(file) = file
            && remote.size > received
        {
            // Large object: the rest in parallel ranges, pinned to what we started with.
            received += fetch_ranges(self, key, &remote, received, file).await?;
            hasher = hash_file(file).await?;
        }
        if received != remote.size || (item.from_manifest && received != item.size) {
            let expected = if item.from_manifest {
                item.size
            } else {
                remote.size
            };
            return Err(FetchError::Size {
                got: received,
                expected,
            });
        }
        let actual = hasher.finalize().to_hex();
        if let Some(expected) = item.blake3.as_ref().or(remote.blake3.as_ref())
            && expected.as_str() != actual.as_str()
        {
            return Err(FetchError::Hash {
                expected: expected.clone(),
                actual: actual.to_string(),
                unrecoverable: item.from_manifest && item.version_id.is_none(),
            });
        }
        Ok(Downloaded { remote, received })
    }
}

/// The blake3 of a file written at its offsets, read back on a blocking thread.
async fn hash_file(file: &File) -> Result<blake3::Hasher, FetchError> {
    let reread = |source| FetchError::Download {
        what: "re-reading the download",
        cause: source,
    };
    let file = file.try_clone().map_err(reread)?;
    tokio::task::spawn_blocking(move || {
        let mut h = blake3::Hasher::new();
        h.update_reader(ReadAt::new(&file))?;
        Ok::<_, std::io::Error>(h)
    })
    .await
    .map_err(|e| reread(std::io::Error::other(e)))?
    .map_err(reread)
}

/// Fetches bytes `start..` of `remote` as parallel ranges into `file`,
/// each pinned to the first response's version or ETag; returns the bytes written.
async fn fetch_ranges(
    fetcher: &Fetcher,
    key: &str,
    remote: &RemoteObject,
    start: u64,
    file: &File,
) -> Result<u64, FetchError> {
    let ranges: Vec<(u64, u64)> = (start..remote.size)
        .step_by(RANGE_SIZE as usize)
        .map(|offset| (offset, RANGE_SIZE.min(remote.size - offset)))
        .collect();
    let version = remote.version_id.as_deref();
    let etag = remote.etag.as_str();
    let written: Vec<u64> = futures::stream::iter(ranges)
        .map(|range| async move {
            let req = GetRequest {
                version_id: version,
                if_match: if version.is_none() { Some(etag) } else { None },
                range: Some(range),
            };
            let n = retry_n(DOWNLOAD_ATTEMPTS, key, || async move {
                let (_, chunks) = fetcher.get(key, req).await?;
                write_chunks(Some(file), range.0, chunks, None, false).await
            })
            .await
            .map_err(FetchError::Store)?;
            if n != range.1 {
                return Err(FetchError::ShortRange {
                    offset: range.0,
                    got: n,
                    len: range.1,
                });
            }
            Ok(n)
        })
        .buffer_unordered(fetcher.jobs)
        .try_collect()
        .await?;
    Ok(written.iter().sum())
}

/// Writes a body at `offset` into `file` (when given), optionally hashing
/// it; returns the bytes received. `inline` (small objects only) keeps the
/// work on this thread.
async fn write_chunks(
    file: Option<&File>,
    mut offset: u64,
    mut chunks: ByteChunks,
    mut hasher: Option<&mut blake3::Hasher>,
    inline: bool,
) -> Result<u64, StoreError> {
    let start = offset;
    while let Some(chunk) = chunks.try_next().await? {
        let mut write = || {
            if let Some(h) = hasher.as_deref_mut() {
                h.update(&chunk);
            }
            match file {
                Some(file) => write_all_at(file, &chunk, offset),
                None => Ok(()),
            }
        };
        if inline {
            write()
        } else {
            tokio::task::block_in_place(write)
        }
        .map_err(|e| StoreError::Fatal(format!("writing: {e}")))?;
        offset += chunk.len() as u64;
    }
    Ok(offset - start)
}

#[cfg(unix)]
fn write_all_at(file: &File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}

#[cfg(not(unix))]
fn write_all_at(file: &File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = file;
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(buf)
}

/// Reads a file from its start with positioned reads, leaving any shared
/// offset alone.
pub(crate) struct ReadAt<'a> {
    file: &'a File,
    offset: u64,
}

impl<'a> ReadAt<'a> {
    pub(crate) fn new(file: &'a File) -> Self {
        Self { file, offset: 0 }
    }
}

impl std::io::Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        #[cfg(unix)]
        let n = std::os::unix::fs::FileExt::read_at(self.file, buf, self.offset)?;
        #[cfg(windows)]
        let n = std::os::windows::fs::FileExt::seek_read(self.file, buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_of_a_snapshots_object_are_final_and_say_so_in_one_line() {
        let missing = FetchError::from_store(StoreError::NotFound("k".into()), true);
        assert!(matches!(missing, FetchError::Missing(_)));
        assert_eq!(missing.to_string(), "missing from the bucket: unrecoverable");
        let changed = FetchError::from_store(StoreError::Changed("etag".into()), true);
        assert!(matches!(changed, FetchError::Changed(_)));
        // From a listing there is nothing else to fetch: the store's own words.
        let listed = FetchError::from_store(StoreError::NotFound("k".into()), false);
        assert!(matches!(listed, FetchError::Store(StoreError::NotFound(_))));
        assert_eq!(listed.to_string(), "not found: k");
        let hash = FetchError::Hash {
            expected: "aa".into(),
            actual: "bb".into(),
            unrecoverable: true,
        };
        assert_eq!(
            hash.to_string(),
            "content does not match its blake3 (expected aa, got bb): the object was changed or corrupted; unrecoverable"
        );
        for e in [missing, changed, listed, hash] {
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }
}
