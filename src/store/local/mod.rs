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
//! from size and mtime, as web servers derive theirs from a stat; two agree
//! when one's mtime is the other's cut to a coarser disk's step (module
//! `etag`: a store copied to exFAT or read from Windows). A symlink
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
//!
//! # Layout
//! This file holds the [`ObjectStore`] methods (async shims over blocking
//! work); `ops` the single-object file-system operations, `multipart` the
//! upload directories, `stat` what is read of a stored file and the copy
//! that checks MD5s, `errors` the sorting of I/O and confinement errors,
//! `scratch` the temporary area, `walk` the listing.
//!
//! # Requests
//! The store counts its operations as the S3 store counts requests
//! ([`super::counts`]), one per call of a trait method, by the kind of the
//! S3 request it stands for: `prepare` (the bucket check) is "other", a
//! listing is one "list" per started page of 1000 objects (as S3 pages
//! them), a pending-uploads listing, a create, complete or abort of a
//! multipart upload is "multipart other". Bytes sent are the bodies
//! written (file ranges, symlink targets); bytes received the bodies read
//! (`get`). Nothing the store does on its own (temporary files, renames,
//! directory creation) is counted: none of it is a request a caller made.

mod errors;
mod etag;
mod fold;
mod multipart;
mod names;
mod ops;
mod scratch;
mod stat;
mod walk;

use std::fs::File;
use std::io::{self, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;

use self::errors::{check_key, check_key_text, confine_error, io_error, upload_name};
use self::ops::Body;
use self::scratch::{Scratch, TMP};
use self::stat::{Stat, apply_meta, copy_range_with, remote_of};
use super::counts::{RequestCounter, RequestCounts, RequestKind};
use super::pace::{self, Bandwidth, PacedReader};
use super::{
    ByteChunks, CompletedPart, FileRange, GetRequest, ObjectInfo, ObjectMeta, ObjectStore, PendingUpload,
    Prepared, PutOutcome, RemoteObject, StoreError, StoreResult,
};
use crate::fs::confine::{ConfineError, Root};

/// Permission bits of the directories the store creates, before the umask
/// (as `mkdir -p` creates them).
const DIR_MODE: u32 = 0o777;

/// Objects per counted list request: S3's page size.
const LIST_PAGE: usize = 1000;

/// A bucket-shaped directory tree.
pub struct LocalStore {
    root: PathBuf,
    bandwidth: Option<Arc<Bandwidth>>,
    /// This run's hold on the temporary area, taken at its first write.
    scratch: Arc<Mutex<Option<Arc<Scratch>>>>,
    /// Stops the blocking copies of a run that is stopping (Ctrl-C).
    cancel: crate::cancel::Cancel,
    /// Keys that would land on one file where the root folds case.
    case: fold::CaseGuard,
    /// How keys are spelled on disk (module `names`).
    names: names::NameGuard,
    /// The operations of this run, by request kind (see "Requests" above).
    counter: Arc<RequestCounter>,
}

impl LocalStore {
    /// A store rooted at `root` (which need not exist yet; see `prepare`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            bandwidth: None,
            scratch: Arc::default(),
            cancel: crate::cancel::Cancel::default(),
            case: fold::CaseGuard::default(),
            names: names::NameGuard::default(),
            counter: Arc::default(),
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
    pub(crate) fn with_bandwidth(mut self, bandwidth: Option<Bandwidth>) -> Self {
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

    /// The path on disk (`/`-separated, beneath the root) that holds `key`
    /// for a write: under the store's name encoding, which the first write
    /// settles (module `names`), and checked for a place of its own where
    /// the root folds case (module `fold`).
    ///
    /// # Errors
    /// A malformed key, a clash, an I/O error settling either.
    fn write_path(&self, root: &Root, scratch: &Scratch, key: &str) -> StoreResult<String> {
        let rel = disk_path(key, self.names.for_writes(root, scratch)?)?;
        self.case.check(root, &rel, key)?;
        Ok(rel)
    }

    /// The path on disk that holds `key` for a read, a copy's source or a delete.
    ///
    /// # Errors
    /// A malformed key; the name-encoding marker cannot be read.
    fn read_path(&self, root: &Root, key: &str) -> StoreResult<String> {
        disk_path(key, self.names.for_reads(root)?)
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

/// `key` spelled under `names`, both checked: the key for what could leave
/// the root, the path on disk for what this system cannot name.
fn disk_path(key: &str, names: names::Names) -> StoreResult<String> {
    check_key_text(key)?;
    let rel = names.disk_of(key).into_owned();
    check_key(&rel)?;
    Ok(rel)
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
            case: self.case.clone(),
            names: self.names.clone(),
            counter: self.counter.clone(),
        }
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn prepare(&self, create: bool) -> StoreResult<Prepared> {
        self.counter.request(RequestKind::Other, 0);
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
        self.counter.request(RequestKind::Put, range.len);
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
                        sum: None,
                    },
                    handle.as_ref(),
                )
            })
        })
        .await
    }

    async fn put_symlink(&self, key: &str, target: &[u8], meta: &ObjectMeta) -> StoreResult<PutOutcome> {
        check_key_text(key)?;
        self.counter.request(RequestKind::Put, target.len() as u64);
        if let Some(limit) = &self.bandwidth {
            limit.take(target.len()).await;
        }
        let (this, key) = (self.clone(), key.to_string());
        let (target, mtime_ns) = (crate::fs::names::os_string(target.to_vec()), meta.mtime_ns);
        blocking(move || this.write_symlink(&key, &target, mtime_ns)).await
    }
    async fn create_multipart(&self, key: &str, meta: &ObjectMeta) -> StoreResult<String> {
        self.counter.request(RequestKind::MultipartOther, 0);
        self.create_multipart(key, meta).await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        range: FileRange<'_>,
    ) -> StoreResult<String> {
        self.counter.request(RequestKind::MultipartPart, range.len);
        self.upload_part(key, upload_id, number, range).await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        _whole: Option<crate::fs::checksum::Sum>,
    ) -> StoreResult<PutOutcome> {
        self.counter.request(RequestKind::MultipartOther, 0);
        self.complete_multipart(key, upload_id, parts).await
    }

    async fn pending_uploads(&self, prefix: &str) -> StoreResult<Vec<PendingUpload>> {
        self.counter.request(RequestKind::MultipartOther, 0);
        self.pending_uploads(prefix).await
    }

    async fn abort_multipart(&self, _key: &str, upload_id: &str) -> StoreResult<()> {
        self.counter.request(RequestKind::MultipartOther, 0);
        self.abort_multipart(upload_id).await
    }

    async fn copy(
        &self,
        src_key: &str,
        dst_key: &str,
        meta: &ObjectMeta,
        if_match: Option<&str>,
    ) -> StoreResult<PutOutcome> {
        self.counter.request(RequestKind::Copy, 0);
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
        self.counter.request(RequestKind::Delete, 0);
        let (this, key) = (self.clone(), key.to_string());
        blocking(move || this.delete_blocking(&key)).await
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, StoreResult<ObjectInfo>> {
        // Walk only the directory the prefix names, on a blocking thread,
        // handing objects over a bounded channel: never the whole listing in memory.
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let (root, guard) = (self.root.clone(), self.names.clone());
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || {
            let root = match Root::open(&root) {
                Ok(root) => root,
                Err(ConfineError::Io { cause, .. }) if cause.kind() == io::ErrorKind::NotFound => return,
                Err(e) => {
                    let _ = tx.blocking_send(Err(confine_error(e, "listing")));
                    return;
                }
            };
            let names = match guard.for_reads(&root) {
                Ok(names) => names,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            walk::walk(&root, &prefix, names, |item| tx.blocking_send(item).is_ok());
        });
        // One list request per page of [`LIST_PAGE`] objects, as S3 pages.
        let counter = self.counter.clone();
        counter.request(RequestKind::List, 0);
        futures::stream::unfold((rx, 0usize), move |(mut rx, n)| {
            let counter = counter.clone();
            async move {
                let item = rx.recv().await?;
                if n > 0 && n % LIST_PAGE == 0 {
                    counter.request(RequestKind::List, 0);
                }
                Some((item, (rx, n + 1)))
            }
        })
        .boxed()
    }

    async fn head(&self, key: &str, version_id: Option<&str>) -> StoreResult<RemoteObject> {
        self.counter.request(RequestKind::Head, 0);
        if version_id.is_some() {
            return Err(StoreError::Fatal(format!(
                "'{key}': a local directory store keeps no object versions"
            )));
        }
        let (this, key) = (self.clone(), key.to_string());
        blocking(move || this.head_blocking(&key)).await
    }

    async fn get(&self, key: &str, req: GetRequest<'_>) -> StoreResult<(RemoteObject, ByteChunks)> {
        self.counter.request(RequestKind::Get, 0);
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
                self.counter.received(body.len() as u64);
                let chunks = futures::stream::once(async move { Ok(body) }).boxed();
                return Ok((remote, pace::pace_chunks(self.bandwidth.as_ref(), chunks)));
            }
            Body::File(file) => file,
        };
        let name = self.shown(key);
        let what = |e| io_error(e, &format!("reading '{name}'"));
        if let Some(expected) = req.if_match.filter(|e| !etag::agree(&remote.etag, e)) {
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
        let counter = self.counter.clone();
        let chunks = futures::stream::unfold((file, len), move |(mut file, left)| {
            let (name, counter) = (name.clone(), counter.clone());
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
                        counter.received(n as u64);
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

    fn same_etag(&self, held: &str, recorded: &str) -> bool {
        etag::agree(held, recorded)
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn requests(&self) -> RequestCounts {
        self.counter.snapshot()
    }

    fn signals(&self) -> Arc<super::flow::Signals> {
        self.counter.flow.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            sum: None,
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

    /// A symlink Windows will not make (no privilege; wine reports one
    /// made that is not there) is one line saying why, not an OS error
    /// code, and leaves nothing in the store; where it is made, it reads
    /// back as the link it is.
    #[cfg(windows)]
    #[tokio::test]
    async fn a_symlink_windows_will_not_make_is_one_clear_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("store"));
        store.prepare(true).await.unwrap();
        match store
            .put_symlink("link", b"sub/target", &ObjectMeta::default())
            .await
        {
            Ok(_) => assert!(store.head("link", None).await.unwrap().symlink),
            Err(e) => {
                let text = e.to_string();
                assert!(
                    (text.contains("privilege") || text.contains("there is none"))
                        && text.contains("not stored")
                        && !text.contains("os error")
                        && !text.contains('\n'),
                    "{text}"
                );
                assert!(!dir.path().join("store/link").exists());
                let tmp = std::fs::read_dir(dir.path().join("store/.s3backup/tmp")).unwrap();
                assert!(
                    tmp.map(|e| e.unwrap().file_name().into_string().unwrap())
                        .all(|n| n.ends_with(".lock")),
                    "a temporary link is left"
                );
            }
        }
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
            sum: None,
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
