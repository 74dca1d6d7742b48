//! A directory on a local or mounted disk laid out like a bucket: the key
//! `a/b.txt` is the file `ROOT/a/b.txt`. It is how people try the tool with
//! no cloud account and how they back up to a USB disk or a NAS.
//!
//! Object metadata is kept where a file system keeps it: the file's mtime
//! and permission bits; the blake3 lives in the manifest. Every write goes to
//! a temporary file under `ROOT/.s3backup/tmp/` and is renamed into place,
//! so a crash never leaves a half-written file under a final name; what a
//! killed run leaves in that area is removed by the next backup that
//! writes, before its first write (module `scratch`). The ETag is derived
//! from size and mtime, as web servers derive theirs from a stat. A symlink
//! is stored as the symlink itself and read back without being followed:
//! its body is its target. Under a bandwidth limit the bytes a write copies
//! in and a read hands out are paced like an S3 body's (server-side copies
//! and the assembling of parts are not: no bytes move between the machine
//! and the store then, as with S3).
//!
//! # Confinement
//! Nothing the store does reaches outside its root or through a symbolic
//! link inside it (issue 12): a stored symlink `a` must not turn a later
//! write of `a/x` into a write wherever `a` points, nor a `--delete` into a
//! delete there. Every operation starts from the root's handle and
//! descends one component at a time without following links
//! ([`crate::fs::confine`]); the last step (open with `O_NOFOLLOW`, `renameat`,
//! `unlinkat`, `fchmod`/`futimens` on the open file, `utimensat` with
//! `AT_SYMLINK_NOFOLLOW`) is relative to the parent's handle. So:
//! - a write renames its temporary file into the parent directory, which
//!   replaces a symlink at the final name rather than writing through it;
//! - a write whose key has a symlink, a file or another non-directory as a
//!   parent component removes that entry (the link itself: a stale object
//!   of the store, left by a source whose link or file became a directory)
//!   and creates the directory in its place;
//! - a write whose final name is a directory replaces it when it is empty,
//!   and fails with a clear message when it still holds objects (the
//!   engine deletes those first when a directory became a file);
//! - a read (`head`, `get`) of a key beneath a link fails naming the link;
//!   a copy from such a key reports the source missing (the engine uploads
//!   instead); a delete of one deletes nothing (no object of the store is
//!   there); the listing never descends through a link (module `walk`).
//!
//! The root itself is opened by the path the user gave, following a link
//! there (their choice, as with any command-line argument).

mod ops;
mod scratch;
mod walk;

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt};
use cap_std::fs::{Metadata, OpenOptions};
use futures::StreamExt;
use futures::stream::BoxStream;
use md5::Digest;

use self::ops::Body;
use self::scratch::{Scratch, TMP};
use super::pace::{self, Bandwidth, PacedReader};
use super::{
    ByteChunks, CompletedPart, FileRange, GetRequest, ObjectInfo, ObjectMeta, ObjectStore, Prepared,
    PutOutcome, RemoteObject, StoreError, StoreResult,
};
use crate::fs::confine::{ConfineError, Create, Root};

/// Permission bits of the directories the store creates, before the umask
/// (as `mkdir -p` creates them).
const DIR_MODE: u32 = 0o777;

/// A bucket-shaped directory tree.
pub struct LocalStore {
    root: PathBuf,
    bandwidth: Option<Arc<Bandwidth>>,
    /// This run's hold on the temporary area, taken at its first write.
    scratch: Arc<Mutex<Option<Arc<Scratch>>>>,
    /// Stops the blocking copies of a run that is stopping (Ctrl-C).
    cancel: crate::cancel::Cancel,
}

impl LocalStore {
    /// A store rooted at `root` (which need not exist yet; see `prepare`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            bandwidth: None,
            scratch: Arc::default(),
            cancel: crate::cancel::Cancel::default(),
        }
    }

    /// Makes every copy into the store fail within one buffer once
    /// `cancel` is cancelled, removing its temporary file as any failed
    /// write does, so a stopping run leaves nothing in `ROOT/.s3backup/tmp`.
    pub fn with_cancel(mut self, cancel: crate::cancel::Cancel) -> Self {
        self.cancel = cancel;
        self
    }

    /// Paces the bytes copied into and read out of the store (`--max-bandwidth`).
    pub fn with_bandwidth(mut self, bandwidth: Option<Bandwidth>) -> Self {
        self.bandwidth = bandwidth.map(Arc::new);
        self
    }

    /// Copies `range` into `out`, paced under a bandwidth limit. Runs on a
    /// blocking thread; `handle` is the runtime the limit waits on.
    fn copy_in(
        &self,
        out: &mut File,
        range: FileRange<'_>,
        handle: Option<&tokio::runtime::Handle>,
    ) -> io::Result<()> {
        let cancel = &self.cancel;
        match (&self.bandwidth, handle) {
            (Some(limit), Some(handle)) => copy_range_with(out, range, |file| {
                cancel
                    .reader(PacedReader::new(file, limit.clone(), handle.clone()).with_cancel(cancel.clone()))
            }),
            _ => copy_range_with(out, range, |file| cancel.reader(file)),
        }
    }

    /// The runtime a paced copy waits on, when there is a limit; call it on an async thread.
    fn pace_handle(&self) -> StoreResult<Option<tokio::runtime::Handle>> {
        match &self.bandwidth {
            None => Ok(None),
            Some(_) => tokio::runtime::Handle::try_current()
                .map(Some)
                .map_err(|e| StoreError::Fatal(format!("bandwidth limit: {e}"))),
        }
    }

    /// The root's handle, opened anew by each operation (the root may be
    /// created by `prepare` after the store is made).
    fn open_root(&self) -> StoreResult<Root> {
        Root::open(&self.root).map_err(|e| confine_error(e, "opening the store"))
    }

    /// `ROOT/key`, for messages.
    fn shown(&self, key: &str) -> String {
        self.root.join(key).display().to_string()
    }

    /// This run's temporary area, taken (and locked) at the first write,
    /// which first removes what interrupted runs left there and logs how
    /// much (at `-v`). At the first write, not in `prepare`: a backup whose
    /// state proves the target exists skips `prepare`, and a run that
    /// writes nothing (a dry run, an unchanged tree) changes nothing in
    /// the store.
    fn scratch(&self, root: &Root) -> StoreResult<Arc<Scratch>> {
        let mut held = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(scratch) = held.as_ref() {
            return Ok(scratch.clone());
        }
        let area = self.root.join(TMP);
        let scratch = Arc::new(
            Scratch::begin(root, DIR_MODE)
                .map_err(|e| io_error(e, &format!("opening the temporary area '{}'", area.display())))?,
        );
        match scratch::sweep(root, SystemTime::now() - scratch::LEGACY_AGE) {
            Ok(s) if s.entries > 0 => tracing::info!(
                "removed {} temporary file(s), {} bytes, that interrupted runs left in '{}'",
                s.entries,
                s.bytes,
                area.display()
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(
                "not removing what interrupted runs left in '{}': {e}",
                area.display()
            ),
        }
        *held = Some(scratch.clone());
        Ok(scratch)
    }
}

/// Checks that a key names something beneath the root: relative, no empty,
/// `.` or `..` component, no NUL, no backslash on Windows. Returns it as
/// a path.
fn check_key(key: &str) -> StoreResult<&Path> {
    // The same rules as a restore's: a backslash is a plain name byte on
    // Unix (a file named `a\b` is backed up and restored as one) and a
    // separator only on Windows.
    crate::fs::safe_path::validate(key).map_err(StoreError::Fatal)?;
    Ok(Path::new(key))
}

/// The directory name of an open multipart upload.
fn upload_name(upload_id: &str) -> StoreResult<String> {
    if upload_id.is_empty() || !upload_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(StoreError::Fatal(format!("bad upload ID '{upload_id}'")));
    }
    Ok(format!("upload-{upload_id}"))
}

/// A confinement failure as a store error: a link on the way is a refusal
/// that names it ([`StoreError::Fatal`]), a file on the way means the key
/// holds no object ([`StoreError::NotFound`]).
fn confine_error(e: ConfineError, what: &str) -> StoreError {
    let text = format!("{what}: {e}");
    match e {
        ConfineError::Symlink { .. } | ConfineError::NotRelative { .. } => StoreError::Fatal(text),
        ConfineError::NotDir { .. } => StoreError::NotFound(text),
        ConfineError::Io { source, .. } => match source.kind() {
            io::ErrorKind::NotFound => StoreError::NotFound(text),
            io::ErrorKind::PermissionDenied => StoreError::AccessDenied(text),
            io::ErrorKind::Interrupted | io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                StoreError::Transient(text)
            }
            _ => StoreError::Fatal(text),
        },
    }
}

/// What the store reports of an entry's stat: size in bytes, mtime in
/// nanoseconds since the epoch, permission bits.
#[derive(Debug, Clone, Copy)]
struct Stat {
    len: u64,
    mtime_ns: i64,
    mode: u32,
}

impl Stat {
    fn of(md: &Metadata) -> Stat {
        #[cfg(unix)]
        let (mtime_ns, mode) = {
            use cap_std::fs::MetadataExt;
            (
                md.mtime()
                    .saturating_mul(1_000_000_000)
                    .saturating_add(md.mtime_nsec()),
                md.mode() & 0o7777,
            )
        };
        #[cfg(not(unix))]
        let (mtime_ns, mode) = {
            let ns = |t: SystemTime| match t.duration_since(SystemTime::UNIX_EPOCH) {
                Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
                Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
            };
            let mtime = md.modified().map(|t| ns(t.into_std())).unwrap_or(0);
            (mtime, if md.permissions().readonly() { 0o444 } else { 0o644 })
        };
        Stat {
            len: md.len(),
            mtime_ns,
            mode,
        }
    }

    /// The ETag: size and mtime in hex, as web servers derive theirs.
    fn etag(&self) -> String {
        format!("{:x}-{:x}", self.len, i128::from(self.mtime_ns))
    }

    fn put_outcome(&self) -> PutOutcome {
        PutOutcome {
            etag: self.etag(),
            version_id: None,
        }
    }
}

/// Applies an object's mode and mtime to an open file (`fchmod`, `futimens`).
fn apply_meta(file: &File, meta: &ObjectMeta) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(meta.mode & 0o7777))?;
    }
    let mtime = filetime::FileTime::from_unix_time(
        meta.mtime_ns.div_euclid(1_000_000_000),
        meta.mtime_ns.rem_euclid(1_000_000_000) as u32,
    );
    filetime::set_file_handle_times(file, None, Some(mtime))
}

/// Copies `range` into `out` through the reader `wrap` makes of the file;
/// with `range.md5`, fails with a [`DigestMismatch`] when the bytes copied
/// are not the bytes hashed (as S3 refuses a body whose `Content-MD5` differs).
fn copy_range_with<R: Read>(
    out: &mut File,
    range: FileRange<'_>,
    wrap: impl FnOnce(io::Take<File>) -> R,
) -> io::Result<()> {
    let mut file = File::open(range.path)?;
    file.seek(SeekFrom::Start(range.offset))?;
    let mut reader = Md5Reader {
        inner: wrap(file.take(range.len)),
        md5: range.md5.map(|_| md5::Md5::new()),
    };
    let copied = io::copy(&mut reader, out)?;
    if copied != range.len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, Shrank));
    }
    if let (Some(expected), Some(md5)) = (range.md5, reader.md5)
        && <[u8; 16]>::from(md5.finalize()) != expected
    {
        return Err(io::Error::other(DigestMismatch));
    }
    Ok(())
}

/// The bytes copied into the store are not the bytes hashed.
#[derive(Debug, thiserror::Error)]
#[error("the MD5 of the bytes read differs from the one hashed")]
struct DigestMismatch;

/// The file ended before the range to copy did.
#[derive(Debug, thiserror::Error)]
#[error("the file shrank while being read")]
struct Shrank;

/// A reader that hashes what passes through (when asked to).
struct Md5Reader<R> {
    inner: R,
    md5: Option<md5::Md5>,
}

impl<R: Read> Read for Md5Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(md5) = &mut self.md5 {
            md5.update(&buf[..n]);
        }
        Ok(n)
    }
}

fn io_error(e: io::Error, what: &str) -> StoreError {
    let text = format!("{what}: {e}");
    if e.get_ref().is_some_and(|inner| inner.is::<DigestMismatch>()) {
        return StoreError::BadDigest(what.to_string());
    }
    if e.get_ref().is_some_and(|inner| inner.is::<Shrank>()) {
        return StoreError::Shrank(what.to_string());
    }
    match e.kind() {
        io::ErrorKind::NotFound => StoreError::NotFound(text),
        io::ErrorKind::PermissionDenied => StoreError::AccessDenied(text),
        io::ErrorKind::Interrupted | io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            StoreError::Transient(text)
        }
        _ => StoreError::Fatal(text),
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> StoreResult<T> + Send + 'static) -> StoreResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Fatal(format!("file task failed: {e}")))?
}

/// Cheap to clone: the store is its root path, a shared limit and the
/// run's shared hold on the temporary area.
impl Clone for LocalStore {
    fn clone(&self) -> Self {
        Self {
            root: self.root.clone(),
            bandwidth: self.bandwidth.clone(),
            scratch: self.scratch.clone(),
            cancel: self.cancel.clone(),
        }
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn prepare(&self, create: bool) -> StoreResult<Prepared> {
        let root = self.root.clone();
        blocking(move || match std::fs::metadata(&root) {
            Ok(md) if md.is_dir() => Ok(Prepared::Existing),
            Ok(_) => Err(StoreError::Fatal(format!(
                "store '{}' exists but is not a directory",
                root.display()
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                std::fs::create_dir_all(&root)
                    .map_err(|e| io_error(e, &format!("creating store directory '{}'", root.display())))?;
                Ok(Prepared::Created)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Prepared::Missing),
            Err(e) => Err(io_error(
                e,
                &format!("checking store directory '{}'", root.display()),
            )),
        })
        .await
    }

    async fn put_file(&self, key: &str, range: FileRange<'_>, meta: &ObjectMeta) -> StoreResult<PutOutcome> {
        let (this, key, meta, path) = (
            self.clone(),
            key.to_string(),
            meta.clone(),
            range.path.to_path_buf(),
        );
        let (offset, len, md5) = (range.offset, range.len, range.md5);
        let handle = self.pace_handle()?;
        blocking(move || {
            this.write_atomically(&key, &meta, |out| {
                this.copy_in(
                    out,
                    FileRange {
                        path: &path,
                        offset,
                        len,
                        md5,
                    },
                    handle.as_ref(),
                )
            })
        })
        .await
    }

    async fn put_symlink(&self, key: &str, target: &[u8], meta: &ObjectMeta) -> StoreResult<PutOutcome> {
        check_key(key)?;
        if let Some(limit) = &self.bandwidth {
            limit.take(target.len()).await;
        }
        let (this, key) = (self.clone(), key.to_string());
        let (target, mtime_ns) = (crate::fs::names::os_string(target.to_vec()), meta.mtime_ns);
        blocking(move || this.write_symlink(&key, &target, mtime_ns)).await
    }

    async fn create_multipart(&self, key: &str, meta: &ObjectMeta) -> StoreResult<String> {
        check_key(key)?;
        let upload_id = uuid::Uuid::new_v4().simple().to_string();
        let name = upload_name(&upload_id)?;
        let meta_line = format!("{} {} {}", meta.mtime_ns, meta.mode, meta.blake3);
        let this = self.clone();
        blocking(move || {
            let what = |e| {
                io_error(
                    e,
                    &format!(
                        "starting upload '{upload_id}' in '{}'",
                        this.root.join(TMP).display()
                    ),
                )
            };
            let root = this.open_root()?;
            let tmp = this
                .tmp_dir(&root, Create::Mode(DIR_MODE))?
                .ok_or_else(|| StoreError::Fatal("the temporary area vanished".into()))?;
            tmp.create_dir(&name).map_err(what)?;
            let dir = tmp.open_dir_nofollow(&name).map_err(what)?;
            dir.open_with(
                "meta",
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .follow(FollowSymlinks::No),
            )
            .and_then(|mut f| f.write_all(meta_line.as_bytes()))
            .map_err(what)?;
            Ok(upload_id)
        })
        .await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        range: FileRange<'_>,
    ) -> StoreResult<String> {
        check_key(key)?;
        upload_name(upload_id)?;
        let (path, offset, len, md5) = (range.path.to_path_buf(), range.offset, range.len, range.md5);
        let (this, upload_id, handle) = (self.clone(), upload_id.to_string(), self.pace_handle()?);
        blocking(move || {
            let root = this.open_root()?;
            let dir = this.upload_dir(&root, &upload_id)?;
            let part = format!("part-{number:05}");
            let what = |e| io_error(e, &format!("writing part {number} of upload '{upload_id}'"));
            let mut out = dir
                .open_with(
                    &part,
                    OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .follow(FollowSymlinks::No),
                )
                .map_err(what)?
                .into_std();
            this.copy_in(
                &mut out,
                FileRange {
                    path: &path,
                    offset,
                    len,
                    md5,
                },
                handle.as_ref(),
            )
            .map_err(what)?;
            out.flush().map_err(what)?;
            Ok(format!("{number}-{len:x}"))
        })
        .await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> StoreResult<PutOutcome> {
        let name = upload_name(upload_id)?;
        let (this, key, upload_id) = (self.clone(), key.to_string(), upload_id.to_string());
        let numbers: Vec<i32> = parts.iter().map(|p| p.number).collect();
        blocking(move || {
            let what = |e| io_error(e, &format!("completing upload '{upload_id}'"));
            let root = this.open_root()?;
            let dir = this.upload_dir(&root, &upload_id)?;
            let meta_line = dir.read_to_string("meta").map_err(what)?;
            let mut fields = meta_line.split(' ');
            let meta = ObjectMeta {
                mtime_ns: fields.next().and_then(|f| f.parse().ok()).unwrap_or(0),
                mode: fields.next().and_then(|f| f.parse().ok()).unwrap_or(0o644),
                blake3: fields.next().unwrap_or_default().to_string(),
                symlink: false,
            };
            let outcome = this.write_atomically(&key, &meta, |out| {
                for n in &numbers {
                    let mut part = dir
                        .open_with(
                            format!("part-{n:05}"),
                            OpenOptions::new().read(true).follow(FollowSymlinks::No),
                        )?
                        .into_std();
                    io::copy(&mut part, out)?;
                }
                Ok(())
            })?;
            if let Some(tmp) = this.tmp_dir(&root, Create::No)? {
                let _ = tmp.remove_dir_all(&name);
            }
            Ok(outcome)
        })
        .await
    }

    async fn pending_uploads(&self, _prefix: &str) -> StoreResult<Vec<super::PendingUpload>> {
        let this = self.clone();
        blocking(move || {
            let what = |e| io_error(e, &format!("listing '{}'", this.root.join(TMP).display()));
            let root = match Root::open(&this.root) {
                Ok(root) => root,
                Err(ConfineError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                    return Ok(Vec::new());
                }
                Err(e) => return Err(confine_error(e, "opening the store")),
            };
            let Some(tmp) = this.tmp_dir(&root, Create::No)? else {
                return Ok(Vec::new());
            };
            let mut open = Vec::new();
            for entry in tmp.entries().map_err(what)? {
                let entry = entry.map_err(what)?;
                let Some(upload_id) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix("upload-"))
                    .map(str::to_string)
                else {
                    continue;
                };
                // Not followed: a link here is no upload.
                let Some(md) = entry.metadata().ok().filter(|md| md.is_dir()) else {
                    continue;
                };
                open.push(super::PendingUpload {
                    key: String::new(),
                    upload_id,
                    initiated_secs: Some(Stat::of(&md).mtime_ns.div_euclid(1_000_000_000)),
                });
            }
            Ok(open)
        })
        .await
    }

    async fn abort_multipart(&self, _key: &str, upload_id: &str) -> StoreResult<()> {
        let name = upload_name(upload_id)?;
        let this = self.clone();
        blocking(move || {
            let root = this.open_root()?;
            let Some(tmp) = this.tmp_dir(&root, Create::No)? else {
                return Ok(());
            };
            // cap-std's remove_dir_all removes links inside, never what they point to.
            match tmp.remove_dir_all(&name) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(
                    e,
                    &format!("aborting upload '{}'", this.root.join(TMP).join(&name).display()),
                )),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn copy(
        &self,
        src_key: &str,
        dst_key: &str,
        meta: &ObjectMeta,
        if_match: Option<&str>,
    ) -> StoreResult<PutOutcome> {
        let (this, src_key, dst_key, meta) = (
            self.clone(),
            src_key.to_string(),
            dst_key.to_string(),
            meta.clone(),
        );
        let if_match = if_match.map(str::to_string);
        blocking(move || this.copy_blocking(&src_key, &dst_key, &meta, if_match.as_deref())).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let (this, key) = (self.clone(), key.to_string());
        blocking(move || this.delete_blocking(&key)).await
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, StoreResult<ObjectInfo>> {
        // Walk only the directory the prefix names, on a blocking thread,
        // handing objects over a bounded channel: never the whole listing in memory.
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let root = self.root.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || {
            let root = match Root::open(&root) {
                Ok(root) => root,
                Err(ConfineError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => return,
                Err(e) => {
                    let _ = tx.blocking_send(Err(confine_error(e, "listing")));
                    return;
                }
            };
            walk::walk(&root, &prefix, |item| tx.blocking_send(item).is_ok());
        });
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }).boxed()
    }

    async fn head(&self, key: &str, version_id: Option<&str>) -> StoreResult<RemoteObject> {
        if version_id.is_some() {
            return Err(StoreError::Fatal(format!(
                "'{key}': a local directory store keeps no object versions"
            )));
        }
        let (this, key) = (self.clone(), key.to_string());
        blocking(move || this.head_blocking(&key)).await
    }

    async fn get(&self, key: &str, req: GetRequest<'_>) -> StoreResult<(RemoteObject, ByteChunks)> {
        if req.version_id.is_some() {
            return Err(StoreError::Fatal(format!(
                "'{key}': a local directory store keeps no object versions"
            )));
        }
        let (this, owned_key) = (self.clone(), key.to_string());
        let (remote, body) = blocking(move || this.open_blocking(&owned_key)).await?;
        let file = match body {
            Body::Link(target) => {
                let body = bytes::Bytes::from(target);
                let chunks = futures::stream::once(async move { Ok(body) }).boxed();
                return Ok((remote, pace::pace_chunks(self.bandwidth.as_ref(), chunks)));
            }
            Body::File(file) => file,
        };
        let name = self.shown(key);
        let what = |e| io_error(e, &format!("reading '{name}'"));
        if let Some(expected) = req.if_match.filter(|e| *e != remote.etag) {
            return Err(StoreError::Changed(format!(
                "'{key}' has ETag {}, expected {expected}",
                remote.etag
            )));
        }
        let mut file = tokio::fs::File::from_std(file);
        let (start, len) = req.range.unwrap_or((0, remote.size));
        {
            use tokio::io::AsyncSeekExt;
            file.seek(SeekFrom::Start(start)).await.map_err(what)?;
        }
        let chunks = futures::stream::unfold((file, len), move |(mut file, left)| {
            let name = name.clone();
            async move {
                use tokio::io::AsyncReadExt;
                if left == 0 {
                    return None;
                }
                let mut buf = vec![0u8; left.min(256 * 1024) as usize];
                match file.read(&mut buf).await {
                    Ok(0) => Some((
                        Err(StoreError::Fatal(format!("'{name}' shrank while being read"))),
                        (file, 0),
                    )),
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok(bytes::Bytes::from(buf)), (file, left - n as u64)))
                    }
                    Err(e) => Some((Err(io_error(e, &name)), (file, 0))),
                }
            }
        })
        .boxed();
        Ok((remote, pace::pace_chunks(self.bandwidth.as_ref(), chunks)))
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

fn remote_of(key: &str, md: &Metadata) -> StoreResult<RemoteObject> {
    let symlink = md.is_symlink();
    if !md.is_file() && !symlink {
        return Err(StoreError::NotFound(format!("'{key}' is not a file")));
    }
    let stat = Stat::of(md);
    Ok(RemoteObject {
        size: stat.len,
        etag: stat.etag(),
        version_id: None,
        last_modified_ns: Some(stat.mtime_ns),
        mtime_ns: Some(stat.mtime_ns),
        mode: (!symlink).then_some(stat.mode),
        blake3: None,
        symlink,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_keys_that_escape_the_root() {
        for key in ["../x", "a/../../x", "/etc/passwd", "a//b", "", "a/./b", "a\0b"] {
            assert!(check_key(key).is_err(), "{key}");
        }
        assert_eq!(check_key("a/b").ok(), Some(Path::new("a/b")));
        // A backslash separates paths on Windows only; on Unix it is a
        // plain name byte, as in a restore (`safe_path::validate`).
        assert_eq!(check_key("a\\b").is_err(), cfg!(windows));
    }

    /// The listing shows a link as the object it is, never what lies
    /// beneath it, and passes over the temporary area.
    #[cfg(unix)]
    #[tokio::test]
    async fn the_listing_never_descends_through_a_link() {
        use futures::TryStreamExt;
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(outside.join("deep")).unwrap();
        std::fs::write(outside.join("deep/secret"), b"s").unwrap();
        let root = dir.path().join("store");
        std::fs::create_dir_all(root.join("d/e")).unwrap();
        std::fs::create_dir_all(root.join(".s3backup/tmp")).unwrap();
        std::fs::write(root.join(".s3backup/tmp/run-x"), b"t").unwrap();
        std::fs::write(root.join("d/e/f"), b"f").unwrap();
        std::fs::write(root.join("d-"), b"g").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("d/link")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("top")).unwrap();
        let store = LocalStore::new(&root);
        let keys = |prefix: &'static str| {
            let store = store.clone();
            async move {
                let listed: Vec<ObjectInfo> = store.list(prefix).try_collect().await.unwrap();
                listed.into_iter().map(|o| o.key).collect::<Vec<_>>()
            }
        };
        assert_eq!(keys("").await, ["d-", "d/e/f", "d/link", "top"]);
        assert_eq!(keys("d/").await, ["d/e/f", "d/link"]);
        assert!(keys("d/link/").await.is_empty());
        assert!(keys("top/deep").await.is_empty());
    }

    /// A directory became a file: the write replaces an empty directory at
    /// the key and refuses, naming it, one that still holds objects.
    #[tokio::test]
    async fn a_directory_at_the_key_is_replaced_when_empty_refused_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("store"));
        store.prepare(true).await.unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"file now").unwrap();
        let range = FileRange {
            path: &file,
            offset: 0,
            len: 8,
            md5: None,
        };
        let meta = ObjectMeta::default();
        std::fs::create_dir_all(dir.path().join("store/empty")).unwrap();
        std::fs::create_dir_all(dir.path().join("store/full/sub")).unwrap();
        store.put_file("empty", range, &meta).await.unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("store/empty")).unwrap(),
            b"file now"
        );
        let err = store.put_file("full", range, &meta).await.unwrap_err();
        assert!(err.to_string().contains("holding other objects"), "{err}");
        assert!(dir.path().join("store/full/sub").is_dir());
        let tmp = std::fs::read_dir(dir.path().join("store/.s3backup/tmp")).unwrap();
        let names: Vec<_> = tmp
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            names.iter().all(|n| n.ends_with(".lock")),
            "the failed write's temp file is gone: {names:?}"
        );
    }

    /// As S3 refuses a body whose `Content-MD5` differs, so does the local
    /// store, whole objects and parts alike, and nothing reaches the key.
    #[tokio::test]
    async fn refuses_bytes_that_are_not_the_bytes_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("store"));
        store.prepare(true).await.unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"bytes as they are now").unwrap();
        let range = |md5| FileRange {
            path: &file,
            offset: 0,
            len: 21,
            md5: Some(md5),
        };
        let hashed_before = crate::fs::hash::md5_of(b"bytes as they were th");
        let meta = ObjectMeta::default();
        let err = store
            .put_file("k", range(hashed_before), &meta)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::BadDigest(_)), "{err}");
        assert!(!dir.path().join("store/k").exists());
        let id = store.create_multipart("k", &meta).await.unwrap();
        let err = store
            .upload_part("k", &id, 1, range(hashed_before))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::BadDigest(_)), "{err}");

        let now = crate::fs::hash::md5_of(b"bytes as they are now");
        store.put_file("k", range(now), &meta).await.unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("store/k")).unwrap(),
            b"bytes as they are now"
        );
    }
}
