//! Fetching one object into place, correctly: into a temporary file beside
//! the final name, checked against its blake3, given its mode and mtime,
//! then renamed, so a reader never sees a half-written file under the real
//! name and a failed check leaves the old file untouched.
//!
//! Small objects come in one GET and are hashed as they stream in; large
//! ones come as parallel byte ranges written at their offsets, then hashed.
//! Every range after the first is pinned to the first response's ETag (or
//! to the requested version), so an object replaced mid-download fails
//! instead of mixing two versions.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use tokio::sync::Semaphore;

use crate::restore::Item;
use crate::store::{ByteChunks, GetRequest, ObjectStore, RemoteObject, StoreError};
use crate::transfer::{DOWNLOAD_ATTEMPTS, retry_n};

/// Objects larger than this are fetched as parallel ranges.
pub const RANGE_THRESHOLD: u64 = 64 * 1024 * 1024;
/// Size of each range.
pub const RANGE_SIZE: u64 = 16 * 1024 * 1024;
/// Objects up to this size are written, hashed and put in place on the
/// async thread itself: that work takes microseconds, and handing it to
/// another thread (`block_in_place`) costs a thread wake-up each time,
/// which for a tree of small files was most of the restore's system time.
const INLINE_MAX: u64 = 256 * 1024;

/// Downloads objects with at most `jobs` requests in flight.
pub struct Fetcher {
    store: Arc<dyn ObjectStore>,
    requests: Semaphore,
    jobs: usize,
}

/// One object to fetch and where it goes.
pub struct Fetch<'a> {
    /// The object's key.
    pub key: &'a str,
    /// What the manifest or listing says about it.
    pub item: &'a Item,
    /// The (existing, checked) directory it goes in.
    pub parent: &'a Path,
    /// Its final path.
    pub final_path: &'a Path,
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

/// The longest symlink target accepted from a store (Linux's PATH_MAX).
const MAX_LINK_TARGET: u64 = 4096;

/// How a local file compares with the remote one.
#[derive(Debug)]
pub enum Local {
    /// Nothing there.
    Missing,
    /// Same content; only metadata may need setting.
    Same {
        /// mtime to set.
        mtime_ns: Option<i64>,
        /// mode to set.
        mode: Option<u32>,
    },
    /// Something else is there.
    Differs,
}

impl Fetcher {
    /// A fetcher sharing one request limit across all downloads.
    pub fn new(store: Arc<dyn ObjectStore>, jobs: usize) -> Self {
        let jobs = jobs.max(1);
        Self {
            store,
            requests: Semaphore::new(jobs),
            jobs,
        }
    }

    async fn get(&self, key: &str, req: GetRequest<'_>) -> Result<(RemoteObject, ByteChunks), StoreError> {
        let _permit = self
            .requests
            .acquire()
            .await
            .map_err(|_| StoreError::Fatal("download queue closed".into()))?;
        self.store.get(key, req).await
    }

    /// Fetches one object into place (or, for a symlink, its target).
    pub async fn fetch(&self, f: Fetch<'_>) -> Result<Fetched, String> {
        let item = f.item;
        let unrecoverable = |e: StoreError| match e {
            StoreError::Changed(_) if item.from_manifest => {
                "changed in the bucket since this snapshot and no version of it is recorded: unrecoverable"
                    .to_string()
            }
            StoreError::NotFound(_) if item.from_manifest => {
                "missing from the bucket: unrecoverable".to_string()
            }
            other => other.to_string(),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".s3backup-restore-")
            .tempfile_in(f.parent)
            .map_err(|e| format!("creating a temporary file in '{}': {e}", f.parent.display()))?;
        let pin_version = item.version_id.as_deref();
        let first_len = if item.size > RANGE_THRESHOLD {
            RANGE_SIZE
        } else {
            item.size
        };
        // The blake3 decides whether the bytes are the snapshot's; an ETag also
        // changes on metadata-only updates, so it is a condition only when no hash is known.
        let req = GetRequest {
            version_id: pin_version,
            if_match: if pin_version.is_none() && item.blake3.is_none() {
                item.etag.as_deref()
            } else {
                None
            },
            range: (item.size > RANGE_THRESHOLD).then_some((0, first_len)),
        };
        let file = tmp.as_file();
        let inline = item.size <= INLINE_MAX;
        // Only a retry empties the file: on ext4, truncating a file to zero
        // makes its close start writeback (the replace-via-truncate guard),
        // which for a tree of small files costs more than the downloads.
        let written = &std::sync::atomic::AtomicBool::new(false);
        // A body cut short is fetched again from the start: the SDK retries
        // a request only until its headers arrive.
        let (remote, mut hasher, mut received) = retry_n(DOWNLOAD_ATTEMPTS, f.key, || async move {
            if written.swap(false, std::sync::atomic::Ordering::Relaxed) {
                file.set_len(0)
                    .map_err(|e| StoreError::Fatal(format!("writing: {e}")))?;
            }
            let (remote, chunks) = self.get(f.key, req).await?;
            written.store(true, std::sync::atomic::Ordering::Relaxed);
            if item.from_manifest && pin_version.is_none() && remote.size != item.size {
                return Err(StoreError::Changed(format!(
                    "object has {} bytes, the snapshot recorded {}",
                    remote.size, item.size
                )));
            }
            let mut hasher = blake3::Hasher::new();
            let received = write_chunks(file, 0, chunks, Some(&mut hasher), inline).await?;
            Ok((remote, hasher, received))
        })
        .await
        .map_err(unrecoverable)?;
        if remote.size > received {
            // Large object: the rest in parallel ranges, pinned to what we started with.
            let etag = remote.etag.clone();
            let rest = fetch_ranges(self, f.key, &remote, &etag, received, file).await?;
            received += rest;
            let path = tmp.path().to_path_buf();
            hasher = tokio::task::spawn_blocking(move || {
                let mut h = blake3::Hasher::new();
                h.update_reader(File::open(path)?)?;
                Ok::<_, std::io::Error>(h)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("re-reading the download: {e}"))?;
        }
        if received != remote.size || (item.from_manifest && received != item.size) {
            return Err(format!(
                "size mismatch: got {received} bytes, expected {}",
                if item.from_manifest {
                    item.size
                } else {
                    remote.size
                }
            ));
        }
        let actual = hasher.finalize().to_hex().to_string();
        if let Some(expected) = item.blake3.as_ref().or(remote.blake3.as_ref())
            && *expected != actual
        {
            return Err(format!(
                "content does not match its blake3 (expected {expected}, got {actual}): the object was changed or corrupted{}",
                if item.from_manifest && item.version_id.is_none() {
                    "; unrecoverable"
                } else {
                    ""
                }
            ));
        }
        let mtime = item.mtime_ns.or(remote.mtime_ns).or(remote.last_modified_ns);
        if remote.symlink || item.kind == crate::scan::EntryKind::Symlink {
            if received > MAX_LINK_TARGET {
                return Err(format!("symlink target of {received} bytes is too long"));
            }
            let target = std::fs::read(tmp.path()).map_err(|e| format!("reading the download: {e}"))?;
            return Ok(Fetched::Link {
                target,
                mtime_ns: mtime,
            });
        }
        let mode = item.mode.or(remote.mode).or(Some(0o644));
        // No fsync per file (as cp, tar and rclone): a crash leaves at worst a
        // temporary file, never a partial one under the final name, and a
        // re-run fetches whatever is missing or differs.
        let place = || {
            set_file_times_and_mode(tmp.as_file(), mtime, mode)?;
            tmp.persist(f.final_path).map(|_| ()).map_err(|e| e.error)
        };
        if inline {
            place()
        } else {
            tokio::task::block_in_place(place)
        }
        .map_err(|e| format!("writing '{}': {e}", f.final_path.display()))?;
        Ok(Fetched::File(received))
    }
}

async fn fetch_ranges(
    fetcher: &Fetcher,
    key: &str,
    remote: &RemoteObject,
    etag: &str,
    start: u64,
    file: &File,
) -> Result<u64, String> {
    let ranges: Vec<(u64, u64)> = (start..remote.size)
        .step_by(RANGE_SIZE as usize)
        .map(|offset| (offset, RANGE_SIZE.min(remote.size - offset)))
        .collect();
    let version = remote.version_id.as_deref();
    let written: Vec<u64> = futures::stream::iter(ranges)
        .map(|range| async move {
            let req = GetRequest {
                version_id: version,
                if_match: if version.is_none() { Some(etag) } else { None },
                range: Some(range),
            };
            let n = retry_n(DOWNLOAD_ATTEMPTS, key, || async move {
                let (_, chunks) = fetcher.get(key, req).await?;
                write_chunks(file, range.0, chunks, None, false).await
            })
            .await
            .map_err(|e| e.to_string())?;
            if n != range.1 {
                return Err(format!("range at {} returned {n} of {} bytes", range.0, range.1));
            }
            Ok(n)
        })
        .buffer_unordered(fetcher.jobs)
        .try_collect()
        .await?;
    Ok(written.iter().sum())
}

/// Writes a body at `offset`, optionally hashing it; returns the bytes
/// written. `inline` (small objects only) keeps the work on this thread.
async fn write_chunks(
    file: &File,
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
            write_all_at(file, &chunk, offset)
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

/// Compares a local file with the remote one without downloading it.
pub async fn compare_local(fetcher: &Fetcher, key: &str, local: &Path, item: &Item) -> Result<Local, String> {
    let md = match std::fs::symlink_metadata(local) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Local::Missing),
        Err(e) => return Err(format!("checking '{}': {e}", local.display())),
    };
    if md.is_dir() {
        return Err(format!(
            "'{}' is a directory; not replacing it with a file",
            local.display()
        ));
    }
    if item.kind == crate::scan::EntryKind::Symlink {
        let same = md.file_type().is_symlink()
            && item.blake3.as_ref().is_some_and(|expected| {
                crate::hash::link_target(local)
                    .is_ok_and(|t| blake3::hash(&t).to_hex().as_str() == expected.as_str())
            });
        return Ok(if same {
            Local::Same {
                mtime_ns: item.mtime_ns,
                mode: None,
            }
        } else {
            Local::Differs
        });
    }
    if !md.is_file() || md.len() != item.size {
        return Ok(Local::Differs);
    }
    // What we know of the remote file: from the manifest, else from its metadata.
    let (blake3, mtime, mode) = if item.from_manifest {
        (item.blake3.clone(), item.mtime_ns, item.mode)
    } else {
        let head = fetcher.store.head(key, None).await.map_err(|e| e.to_string())?;
        (head.blake3, head.mtime_ns.or(head.last_modified_ns), head.mode)
    };
    let same = match blake3 {
        Some(expected) => {
            let path = local.to_path_buf();
            let actual = tokio::task::spawn_blocking(move || {
                let mut h = blake3::Hasher::new();
                h.update_reader(File::open(path)?)
                    .map(|h| h.finalize().to_hex().to_string())
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("reading '{}': {e}", local.display()))?;
            actual == expected
        }
        // No hash to compare: size and mtime, as rsync does.
        None => mtime == Some(crate::scan::mtime_ns(&md)),
    };
    Ok(if same {
        Local::Same {
            mtime_ns: mtime,
            mode,
        }
    } else {
        Local::Differs
    })
}

/// Sets a symlink's own mtime (never its target's).
pub fn set_link_time(path: &Path, mtime_ns: Option<i64>) -> std::io::Result<()> {
    if let Some(ns) = mtime_ns {
        let t = filetime::FileTime::from_unix_time(
            ns.div_euclid(1_000_000_000),
            ns.rem_euclid(1_000_000_000) as u32,
        );
        filetime::set_symlink_file_times(path, t, t)?;
    }
    Ok(())
}

/// Puts a symlink at `final_path` (in the checked directory `parent`):
/// made under a temporary name and renamed over whatever file or link is
/// there; a directory in the way is refused, never replaced.
pub fn place_link(
    parent: &Path,
    final_path: &Path,
    target: &[u8],
    mtime_ns: Option<i64>,
) -> std::io::Result<()> {
    if std::fs::symlink_metadata(final_path).is_ok_and(|md| md.is_dir()) {
        return Err(std::io::Error::other(format!(
            "'{}' is a directory; not replacing it with a symlink",
            final_path.display()
        )));
    }
    let tmp = parent.join(format!(
        ".s3backup-restore-link-{}",
        uuid::Uuid::new_v4().simple()
    ));
    #[cfg(unix)]
    std::os::unix::fs::symlink(crate::names::os_string(target.to_vec()), &tmp)?;
    #[cfg(not(unix))]
    {
        let _ = target;
        return Err(std::io::Error::other(
            "symlinks are not supported on this platform",
        ));
    }
    let placed = set_link_time(&tmp, mtime_ns).and_then(|()| std::fs::rename(&tmp, final_path));
    if placed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    placed
}

/// [`set_times_and_mode`] through an open handle: no path lookups, and no
/// second open just to set the time.
fn set_file_times_and_mode(file: &File, mtime_ns: Option<i64>, mode: Option<u32>) -> std::io::Result<()> {
    #[cfg(unix)]
    if let Some(mode) = mode {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    if let Some(ns) = mtime_ns {
        file.set_times(std::fs::FileTimes::new().set_modified(system_time(ns)))?;
    }
    Ok(())
}

/// Nanoseconds since the epoch (negative before it) as a `SystemTime`.
fn system_time(ns: i64) -> std::time::SystemTime {
    let since = std::time::Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        std::time::UNIX_EPOCH + since
    } else {
        std::time::UNIX_EPOCH - since
    }
}

/// Sets a file's or directory's permission bits and mtime, where known.
pub fn set_times_and_mode(path: &Path, mtime_ns: Option<i64>, mode: Option<u32>) -> std::io::Result<()> {
    #[cfg(unix)]
    if let Some(mode) = mode {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    if let Some(ns) = mtime_ns {
        let t = filetime::FileTime::from_unix_time(
            ns.div_euclid(1_000_000_000),
            ns.rem_euclid(1_000_000_000) as u32,
        );
        filetime::set_file_mtime(path, t)?;
    }
    Ok(())
}
