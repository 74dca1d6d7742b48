//! Fetching one object into place, correctly: into a temporary file beside
//! the final name, checked against its blake3, given its mode and mtime,
//! then renamed, so a reader never sees a half-written file under the real
//! name and a failed check leaves the old file untouched.
//!
//! Every local step (the comparison with what DEST holds, the temporary
//! file, the rename, the times and modes) works on a directory handle
//! reached without following links ([`crate::restore::dest`]) and on the entry's
//! own handle, never on a path that a symlink could redirect.
//!
//! Small objects come in one GET and are hashed as they stream in; large
//! ones come as parallel byte ranges written at their offsets, then hashed.
//! Every range after the first is pinned to the first response's ETag (or
//! to the requested version), so an object replaced mid-download fails
//! instead of mixing two versions.

use std::ffi::OsStr;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt};

use futures::{StreamExt, TryStreamExt};
use tokio::sync::Semaphore;

use crate::fs::confine::Dir;
use crate::restore::Item;
use crate::restore::dest::{ModePolicy, TempFile};
use crate::store::retry::{DOWNLOAD_ATTEMPTS, retry_n};
use crate::store::{ByteChunks, GetRequest, ObjectStore, RemoteObject, StoreError};

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
        /// mode to set (as recorded: special bits not yet filtered).
        mode: Option<u32>,
        /// The file, opened without following a link, to set them through
        /// (`None` for a symlink, whose own time is set by name).
        file: Option<File>,
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
        let tmp = TempFile::create(f.dir).map_err(|e| {
            let at = f.shown.parent().unwrap_or(f.shown);
            format!("creating a temporary file in '{}': {e}", at.display())
        })?;
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
        let file = tmp.file();
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
            let reread = file
                .try_clone()
                .map_err(|e| format!("re-reading the download: {e}"))?;
            hasher = tokio::task::spawn_blocking(move || {
                let mut h = blake3::Hasher::new();
                h.update_reader(ReadAt::new(&reread))?;
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
        if remote.symlink || item.kind == crate::fs::scan::EntryKind::Symlink {
            if received > MAX_LINK_TARGET {
                return Err(format!("symlink target of {received} bytes is too long"));
            }
            let mut target = Vec::with_capacity(received as usize);
            std::io::copy(&mut ReadAt::new(file), &mut target)
                .map_err(|e| format!("reading the download: {e}"))?;
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
        if inline {
            place()
        } else {
            tokio::task::block_in_place(place)
        }
        .map_err(|e| format!("writing '{}': {e}", f.shown.display()))?;
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

/// Reads a file from its start with positioned reads, leaving any shared
/// offset alone.
struct ReadAt<'a> {
    file: &'a File,
    offset: u64,
}

impl<'a> ReadAt<'a> {
    fn new(file: &'a File) -> Self {
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

/// Compares what DEST holds at `name` in `dir` (reached without following
/// links; `shown` is its path, for messages) with the remote entry,
/// without downloading it. The local file is opened without following a
/// link, and its hash and metadata come from that handle.
///
/// # Errors
/// A message naming the path: a directory is in the way, or it cannot be read.
pub async fn compare_local(
    fetcher: &Fetcher,
    key: &str,
    dir: &Dir,
    name: &OsStr,
    shown: &Path,
    item: &Item,
) -> Result<Local, String> {
    let md = match dir.symlink_metadata(name) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Local::Missing),
        Err(e) => return Err(format!("checking '{}': {e}", shown.display())),
    };
    if md.is_dir() {
        return Err(format!(
            "'{}' is a directory; not replacing it with a file",
            shown.display()
        ));
    }
    if item.kind == crate::fs::scan::EntryKind::Symlink {
        let same = md.file_type().is_symlink()
            && item.blake3.as_ref().is_some_and(|expected| {
                dir.read_link_contents(name).is_ok_and(|t| {
                    blake3::hash(t.as_os_str().as_encoded_bytes()).to_hex().as_str() == expected.as_str()
                })
            });
        return Ok(if same {
            Local::Same {
                mtime_ns: item.mtime_ns,
                mode: None,
                file: None,
            }
        } else {
            Local::Differs
        });
    }
    if !md.is_file() || md.len() != item.size {
        return Ok(Local::Differs);
    }
    let Some((file, md)) =
        open_regular(dir, name).map_err(|e| format!("reading '{}': {e}", shown.display()))?
    else {
        return Ok(Local::Differs);
    };
    if md.len() != item.size {
        return Ok(Local::Differs);
    }
    // What we know of the remote file: from the manifest, else from its metadata.
    let (blake3, mtime, mode) = if item.from_manifest {
        (item.blake3.clone(), item.mtime_ns, item.mode)
    } else {
        let head = fetcher.store.head(key, None).await.map_err(|e| e.to_string())?;
        (head.blake3, head.mtime_ns.or(head.last_modified_ns), head.mode)
    };
    let (file, same) = match blake3 {
        Some(expected) => {
            let (file, actual) = tokio::task::spawn_blocking(move || {
                let mut h = blake3::Hasher::new();
                h.update_reader(ReadAt::new(&file))?;
                Ok::<_, std::io::Error>((file, h.finalize().to_hex().to_string()))
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("reading '{}': {e}", shown.display()))?;
            (file, actual == expected)
        }
        // No hash to compare: size and mtime, as rsync does.
        None => (file, mtime == Some(crate::fs::scan::mtime_ns(&md))),
    };
    // A hard link shares its mode and times with every other name of the
    // file, maybe one outside DEST: setting them here would change that
    // one too. Such a file is replaced (a new file renamed over this name)
    // unless it already has what the restore would set.
    if same && shares_changed_metadata(&md, mtime, mode) {
        return Ok(Local::Differs);
    }
    Ok(if same {
        Local::Same {
            mtime_ns: mtime,
            mode,
            file: Some(file),
        }
    } else {
        Local::Differs
    })
}

/// Whether `md` is a file with other names (link count above 1) whose
/// mtime (ns) or mode (the low 12 bits) differs from what a restore sets.
#[cfg(unix)]
fn shares_changed_metadata(md: &std::fs::Metadata, mtime_ns: Option<i64>, mode: Option<u32>) -> bool {
    use std::os::unix::fs::MetadataExt;
    md.nlink() > 1
        && (mtime_ns.is_some_and(|t| t != crate::fs::scan::mtime_ns(md))
            || mode.is_some_and(|m| m & 0o7777 != md.mode() & 0o7777))
}

/// Windows: a restore sets no mode there, and its times are set on the
/// name's own handle; hard links are rare enough to treat as unlinked.
#[cfg(not(unix))]
fn shares_changed_metadata(_md: &std::fs::Metadata, _mtime_ns: Option<i64>, _mode: Option<u32>) -> bool {
    false
}

/// Opens `name` for reading without following a link (nor blocking on a
/// FIFO swapped in since it was checked); `None` when it is not a regular file.
fn open_regular(dir: &Dir, name: &OsStr) -> std::io::Result<Option<(File, std::fs::Metadata)>> {
    let mut opts = cap_std::fs::OpenOptions::new();
    opts.read(true);
    opts.follow(FollowSymlinks::No);
    #[cfg(unix)]
    {
        use cap_std::fs::OpenOptionsExt;
        opts.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    let file = match dir.open_with(name, &opts) {
        Ok(f) => f.into_std(),
        // A link swapped in since the check (ELOOP): not the file compared.
        Err(_) if dir.symlink_metadata(name).is_ok_and(|md| !md.is_file()) => return Ok(None),
        Err(e) => return Err(e),
    };
    let md = file.metadata()?;
    Ok(md.is_file().then_some((file, md)))
}

/// Sets the own mtime of the symlink `name` in `dir` (never its target's).
///
/// # Errors
/// The system's.
pub fn set_link_time(dir: &Dir, name: &OsStr, mtime_ns: Option<i64>) -> std::io::Result<()> {
    if let Some(ns) = mtime_ns {
        let t = cap_fs_ext::SystemTimeSpec::Absolute(cap_std::time::SystemTime::from_std(system_time(ns)));
        dir.set_symlink_times(name, None, Some(t))?;
    }
    Ok(())
}

/// Puts a symlink at `name` in `dir` (reached without following links;
/// `shown` is its path, for messages): made under a temporary name and
/// renamed over whatever file or link is there; a directory in the way is
/// refused, never replaced. When another restore's sweep removes the
/// temporary link before the rename, another is made.
///
/// # Errors
/// The system's, or a message for a directory in the way.
pub fn place_link(
    dir: &Dir,
    name: &OsStr,
    shown: &Path,
    target: &[u8],
    mtime_ns: Option<i64>,
) -> std::io::Result<()> {
    if dir.symlink_metadata(name).is_ok_and(|md| md.is_dir()) {
        return Err(std::io::Error::other(format!(
            "'{}' is a directory; not replacing it with a symlink",
            shown.display()
        )));
    }
    #[cfg(unix)]
    {
        let mut attempts = 0;
        loop {
            let tmp = crate::restore::dest::temp_name("link-");
            dir.symlink_contents(crate::fs::names::os_string(target.to_vec()), &tmp)?;
            let placed = set_link_time(dir, &tmp, mtime_ns).and_then(|()| dir.rename(&tmp, dir, name));
            match placed {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 3 => attempts += 1,
                Err(e) => {
                    let _ = dir.remove_file(&tmp);
                    return Err(e);
                }
                Ok(()) => return Ok(()),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (target, mtime_ns);
        Err(std::io::Error::other(
            "symlinks are not supported on this platform",
        ))
    }
}

/// Sets permission bits (Unix; `mode & 0o7777`, already filtered by a
/// [`ModePolicy`]) and the mtime (nanoseconds since the epoch) through an
/// open handle of a file or directory: no path lookup a link could
/// redirect, and no second open.
///
/// # Errors
/// The system's.
pub fn set_file_times_and_mode(file: &File, mtime_ns: Option<i64>, mode: Option<u32>) -> std::io::Result<()> {
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
pub(crate) fn system_time(ns: i64) -> std::time::SystemTime {
    let since = std::time::Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        std::time::UNIX_EPOCH + since
    } else {
        std::time::UNIX_EPOCH - since
    }
}
