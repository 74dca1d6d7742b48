//! A directory on a local or mounted disk laid out like a bucket: the key
//! `a/b.txt` is the file `ROOT/a/b.txt`. It is how people try the tool with
//! no cloud account and how they back up to a USB disk or a NAS.
//!
//! Object metadata is kept where a file system keeps it: the file's mtime
//! and permission bits; the blake3 lives in the manifest. Every write goes to
//! a temporary file under `ROOT/.s3backup/tmp/` and is renamed into place,
//! so a crash never leaves a half-written file under a final name. The ETag
//! is derived from size and mtime, as web servers derive theirs from a stat.
//! A symlink is stored as the symlink itself and read back without being
//! followed: its body is its target. Under a bandwidth limit the bytes a
//! write copies in and a read hands out are paced like an S3 body's
//! (server-side copies and the assembling of parts are not: no bytes move
//! between the machine and the store then, as with S3).

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use md5::Digest;

use super::pace::{self, Bandwidth, PacedReader};
use super::{
    ByteChunks, CompletedPart, FileRange, GetRequest, ObjectInfo, ObjectMeta, ObjectStore, Prepared,
    PutOutcome, RemoteObject, StoreError, StoreResult,
};

/// A bucket-shaped directory tree.
pub struct LocalStore {
    root: PathBuf,
    bandwidth: Option<Arc<Bandwidth>>,
}

impl LocalStore {
    /// A store rooted at `root` (which need not exist yet; see `prepare`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            bandwidth: None,
        }
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
        match (&self.bandwidth, handle) {
            (Some(limit), Some(handle)) => copy_range_with(out, range, |file| {
                PacedReader::new(file, limit.clone(), handle.clone())
            }),
            _ => copy_range(out, range),
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

    fn object_path(&self, key: &str) -> StoreResult<PathBuf> {
        if key.is_empty()
            || key.starts_with('/')
            || key.contains('\\')
            || key.contains('\0')
            || key.split('/').any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(StoreError::Fatal(format!("refusing unsafe key '{key}'")));
        }
        Ok(self.root.join(key))
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join(".s3backup").join("tmp")
    }

    fn upload_dir(&self, upload_id: &str) -> StoreResult<PathBuf> {
        if upload_id.is_empty() || !upload_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(StoreError::Fatal(format!("bad upload ID '{upload_id}'")));
        }
        Ok(self.tmp_dir().join(format!("upload-{upload_id}")))
    }

    /// Writes `fill`'s output to a temp file, applies `meta`, and renames it to `key`.
    fn write_atomically(
        &self,
        key: &str,
        meta: &ObjectMeta,
        fill: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> StoreResult<PutOutcome> {
        let dest = self.object_path(key)?;
        let what = |e: io::Error| io_error(e, &format!("writing '{}'", dest.display()));
        fs::create_dir_all(self.tmp_dir()).map_err(what)?;
        let mut tmp = tempfile::NamedTempFile::new_in(self.tmp_dir()).map_err(what)?;
        fill(tmp.as_file_mut()).map_err(what)?;
        tmp.as_file_mut().sync_data().map_err(what)?;
        apply_meta(tmp.path(), meta).map_err(what)?;
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(what)?;
        }
        tmp.persist(&dest).map_err(|e| what(e.error))?;
        etag_of(&dest).map_err(what)
    }
}

fn apply_meta(path: &Path, meta: &ObjectMeta) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(meta.mode & 0o7777))?;
    }
    let mtime = filetime::FileTime::from_unix_time(
        meta.mtime_ns.div_euclid(1_000_000_000),
        meta.mtime_ns.rem_euclid(1_000_000_000) as u32,
    );
    filetime::set_file_mtime(path, mtime)
}

fn file_time(ns: i64) -> filetime::FileTime {
    filetime::FileTime::from_unix_time(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000) as u32)
}

#[cfg(unix)]
fn make_symlink(target: &std::ffi::OsStr, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn make_symlink(_target: &std::ffi::OsStr, _link: &Path) -> io::Result<()> {
    Err(io::Error::other("symlinks are not supported on this platform"))
}

fn etag_of(path: &Path) -> io::Result<PutOutcome> {
    let md = fs::symlink_metadata(path)?;
    let mtime = filetime::FileTime::from_last_modification_time(&md);
    let mtime_ns = mtime.unix_seconds() as i128 * 1_000_000_000 + mtime.nanoseconds() as i128;
    Ok(PutOutcome {
        etag: format!("{:x}-{:x}", md.len(), mtime_ns),
        version_id: None,
    })
}

/// Copies a range of a file into `out`; with `range.md5`, fails with a
/// [`DigestMismatch`] when the bytes copied are not the bytes hashed (as S3
/// refuses a body whose `Content-MD5` differs).
fn copy_range(out: &mut File, range: FileRange<'_>) -> io::Result<()> {
    copy_range_with(out, range, |file| file)
}

/// Copies `range` into `out` through the reader `wrap` makes of the file.
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
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{} shrank while being read", range.path.display()),
        ));
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

/// Cheap to clone: the store is its root path and a shared limit.
impl Clone for LocalStore {
    fn clone(&self) -> Self {
        Self {
            root: self.root.clone(),
            bandwidth: self.bandwidth.clone(),
        }
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn prepare(&self, create: bool) -> StoreResult<Prepared> {
        let root = self.root.clone();
        blocking(move || match fs::metadata(&root) {
            Ok(md) if md.is_dir() => Ok(Prepared::Existing),
            Ok(_) => Err(StoreError::Fatal(format!(
                "store '{}' exists but is not a directory",
                root.display()
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                fs::create_dir_all(&root)
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
        let dest = self.object_path(key)?;
        let tmp_dir = self.tmp_dir();
        if let Some(limit) = &self.bandwidth {
            limit.take(target.len()).await;
        }
        let (target, mtime_ns) = (crate::names::os_string(target.to_vec()), meta.mtime_ns);
        blocking(move || {
            let what = |e: io::Error| io_error(e, &format!("writing symlink '{}'", dest.display()));
            fs::create_dir_all(&tmp_dir).map_err(what)?;
            let tmp = tmp_dir.join(format!("link-{}", uuid::Uuid::new_v4().simple()));
            make_symlink(&target, &tmp).map_err(what)?;
            let placed = filetime::set_symlink_file_times(&tmp, file_time(mtime_ns), file_time(mtime_ns))
                .and_then(|()| match dest.parent() {
                    Some(parent) => fs::create_dir_all(parent),
                    None => Ok(()),
                })
                .and_then(|()| fs::rename(&tmp, &dest));
            if let Err(e) = placed {
                let _ = fs::remove_file(&tmp);
                return Err(what(e));
            }
            etag_of(&dest).map_err(what)
        })
        .await
    }

    async fn create_multipart(&self, key: &str, meta: &ObjectMeta) -> StoreResult<String> {
        self.object_path(key)?;
        let upload_id = uuid::Uuid::new_v4().simple().to_string();
        let dir = self.upload_dir(&upload_id)?;
        let meta_line = format!("{} {} {}", meta.mtime_ns, meta.mode, meta.blake3);
        blocking(move || {
            let what = |e| io_error(e, &format!("starting upload in '{}'", dir.display()));
            fs::create_dir_all(&dir).map_err(what)?;
            fs::write(dir.join("meta"), meta_line).map_err(what)?;
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
        self.object_path(key)?;
        let dir = self.upload_dir(upload_id)?;
        let (path, offset, len, md5) = (range.path.to_path_buf(), range.offset, range.len, range.md5);
        let (this, handle) = (self.clone(), self.pace_handle()?);
        blocking(move || {
            let part = dir.join(format!("part-{number:05}"));
            let what = |e| io_error(e, &format!("writing part '{}'", part.display()));
            let mut out = File::create(&part).map_err(what)?;
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
        let dir = self.upload_dir(upload_id)?;
        let (this, key) = (self.clone(), key.to_string());
        let numbers: Vec<i32> = parts.iter().map(|p| p.number).collect();
        blocking(move || {
            let what = |e| io_error(e, &format!("completing upload in '{}'", dir.display()));
            let meta_line = fs::read_to_string(dir.join("meta")).map_err(what)?;
            let mut fields = meta_line.split(' ');
            let meta = ObjectMeta {
                mtime_ns: fields.next().and_then(|f| f.parse().ok()).unwrap_or(0),
                mode: fields.next().and_then(|f| f.parse().ok()).unwrap_or(0o644),
                blake3: fields.next().unwrap_or_default().to_string(),
                symlink: false,
            };
            let outcome = this.write_atomically(&key, &meta, |out| {
                for n in &numbers {
                    let mut part = File::open(dir.join(format!("part-{n:05}")))?;
                    io::copy(&mut part, out)?;
                }
                Ok(())
            })?;
            let _ = fs::remove_dir_all(&dir);
            Ok(outcome)
        })
        .await
    }

    async fn pending_uploads(&self, _prefix: &str) -> StoreResult<Vec<super::PendingUpload>> {
        let tmp = self.tmp_dir();
        blocking(move || {
            let entries = match fs::read_dir(&tmp) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(io_error(e, &format!("listing '{}'", tmp.display()))),
            };
            Ok(entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().to_str()?.strip_prefix("upload-")?.to_string();
                    let md = e.metadata().ok()?;
                    Some(super::PendingUpload {
                        key: String::new(),
                        upload_id: name,
                        initiated_secs: Some(crate::scan::mtime_ns(&md).div_euclid(1_000_000_000)),
                    })
                })
                .collect())
        })
        .await
    }

    async fn abort_multipart(&self, _key: &str, upload_id: &str) -> StoreResult<()> {
        let dir = self.upload_dir(upload_id)?;
        blocking(move || match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(io_error(e, &format!("aborting upload '{}'", dir.display())))
            }
            _ => Ok(()),
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
        let src = self.object_path(src_key)?;
        if let Some(expected) = if_match.filter(|e| !e.is_empty()) {
            let src = src.clone();
            let now = blocking(move || {
                etag_of(&src).map_err(|e| io_error(e, &format!("checking '{}'", src.display())))
            })
            .await?;
            if now.etag != expected {
                return Err(StoreError::Changed(format!(
                    "'{src_key}' no longer holds the content recorded for it"
                )));
            }
        }
        if src_key == dst_key {
            // A metadata refresh: the file system can do it in place, without rewriting the bytes.
            let meta = meta.clone();
            return blocking(move || {
                let what = |e| io_error(e, &format!("updating '{}'", src.display()));
                if !src.is_file() {
                    return Err(StoreError::NotFound(format!("'{}' is missing", src.display())));
                }
                apply_meta(&src, &meta).map_err(what)?;
                etag_of(&src).map_err(what)
            })
            .await;
        }
        let (this, dst_key, meta) = (self.clone(), dst_key.to_string(), meta.clone());
        blocking(move || {
            this.write_atomically(&dst_key, &meta, |out| {
                let mut input = File::open(&src)?;
                io::copy(&mut input, out).map(|_| ())
            })
        })
        .await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let path = self.object_path(key)?;
        let root = self.root.clone();
        blocking(move || {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_error(e, &format!("deleting '{}'", path.display())));
                }
                _ => {}
            }
            // Like a bucket, the store has no empty "folders": prune them up to the root.
            let mut dir = path.parent();
            while let Some(d) = dir {
                if d == root || fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
            }
            Ok(())
        })
        .await
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, StoreResult<ObjectInfo>> {
        // Walk only the directory the prefix names, on a blocking thread,
        // handing objects over a bounded channel: never the whole listing in memory.
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let root = self.root.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || {
            let base = match prefix.rfind('/') {
                Some(i) => root.join(&prefix[..i]),
                None => root.clone(),
            };
            if !base.is_dir() {
                return;
            }
            // Siblings sort as "name/" for directories, so the depth-first walk
            // yields keys in byte order, as S3 lists them.
            let walker = walkdir::WalkDir::new(&base).sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
            for item in walker {
                let result = match item {
                    Ok(e) if !e.file_type().is_file() && !e.file_type().is_symlink() => continue,
                    Ok(e) => {
                        let Some(key) = relative_key(&root, e.path()) else {
                            continue;
                        };
                        if !key.starts_with(&prefix) || key.starts_with(".s3backup/tmp/") {
                            continue;
                        }
                        e.metadata()
                            .map_err(|err| StoreError::Fatal(format!("listing '{key}': {err}")))
                            .and_then(|md| {
                                let put = etag_of(e.path()).map_err(|err| io_error(err, &key))?;
                                Ok(ObjectInfo {
                                    key,
                                    size: md.len(),
                                    etag: put.etag,
                                    last_modified_ns: Some(crate::scan::mtime_ns(&md)),
                                    storage_class: None,
                                })
                            })
                    }
                    Err(err) => Err(StoreError::Fatal(format!("listing '{}': {err}", base.display()))),
                };
                if tx.blocking_send(result).is_err() {
                    return;
                }
            }
        });
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }).boxed()
    }

    async fn head(&self, key: &str, version_id: Option<&str>) -> StoreResult<RemoteObject> {
        if version_id.is_some() {
            return Err(StoreError::Fatal(format!(
                "'{key}': a local directory store keeps no object versions"
            )));
        }
        let path = self.object_path(key)?;
        let md = tokio::fs::symlink_metadata(&path)
            .await
            .map_err(|e| io_error(e, &format!("checking '{}'", path.display())))?;
        remote_of(key, &path, &md)
    }

    async fn get(&self, key: &str, req: GetRequest<'_>) -> StoreResult<(RemoteObject, ByteChunks)> {
        if req.version_id.is_some() {
            return Err(StoreError::Fatal(format!(
                "'{key}': a local directory store keeps no object versions"
            )));
        }
        let path = self.object_path(key)?;
        let what = |e| io_error(e, &format!("reading '{}'", path.display()));
        let lmd = tokio::fs::symlink_metadata(&path).await.map_err(what)?;
        if lmd.file_type().is_symlink() {
            // Never followed: the body is the target itself.
            let remote = remote_of(key, &path, &lmd)?;
            let target = tokio::fs::read_link(&path).await.map_err(what)?;
            let body = bytes::Bytes::from(target.into_os_string().into_encoded_bytes());
            let chunks = futures::stream::once(async move { Ok(body) }).boxed();
            return Ok((remote, pace::pace_chunks(self.bandwidth.as_ref(), chunks)));
        }
        let mut file = tokio::fs::File::open(&path).await.map_err(what)?;
        let md = file.metadata().await.map_err(what)?;
        let remote = remote_of(key, &path, &md)?;
        if let Some(expected) = req.if_match.filter(|e| *e != remote.etag) {
            return Err(StoreError::Changed(format!(
                "'{key}' has ETag {}, expected {expected}",
                remote.etag
            )));
        }
        let (start, len) = req.range.unwrap_or((0, md.len()));
        {
            use tokio::io::AsyncSeekExt;
            file.seek(SeekFrom::Start(start)).await.map_err(what)?;
        }
        let name = path.display().to_string();
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

fn remote_of(key: &str, path: &Path, md: &fs::Metadata) -> StoreResult<RemoteObject> {
    let symlink = md.file_type().is_symlink();
    if !md.is_file() && !symlink {
        return Err(StoreError::NotFound(format!("'{key}' is not a file")));
    }
    let etag = etag_of(path)
        .map_err(|e| io_error(e, &format!("reading '{}'", path.display())))?
        .etag;
    let mtime = crate::scan::mtime_ns(md);
    Ok(RemoteObject {
        size: md.len(),
        etag,
        version_id: None,
        last_modified_ns: Some(mtime),
        mtime_ns: Some(mtime),
        mode: (!symlink).then(|| crate::scan::mode(md)),
        blake3: None,
        symlink,
    })
}

fn sort_key(entry: &walkdir::DirEntry) -> Vec<u8> {
    let mut key = entry.file_name().as_encoded_bytes().to_vec();
    if entry.file_type().is_dir() {
        key.push(b'/');
    }
    key
}

fn relative_key(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_keys_that_escape_the_root() {
        let store = LocalStore::new("/tmp/store");
        for key in ["../x", "a/../../x", "/etc/passwd", "a//b", "a\\b", ""] {
            assert!(store.object_path(key).is_err(), "{key}");
        }
        assert_eq!(
            store.object_path("a/b").ok(),
            Some(PathBuf::from("/tmp/store/a/b"))
        );
    }

    /// As S3 refuses a body whose `Content-MD5` differs, so does the local
    /// store, whole objects and parts alike, and nothing reaches the key.
    #[tokio::test]
    async fn refuses_bytes_that_are_not_the_bytes_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("store"));
        let file = dir.path().join("f");
        std::fs::write(&file, b"bytes as they are now").unwrap();
        let range = |md5| FileRange {
            path: &file,
            offset: 0,
            len: 21,
            md5: Some(md5),
        };
        let hashed_before = crate::hash::md5_of(b"bytes as they were th");
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

        let now = crate::hash::md5_of(b"bytes as they are now");
        store.put_file("k", range(now), &meta).await.unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("store/k")).unwrap(),
            b"bytes as they are now"
        );
    }
}
