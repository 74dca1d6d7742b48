//! A directory on a local or mounted disk laid out like a bucket: the key
//! `a/b.txt` is the file `ROOT/a/b.txt`. It is how people try the tool with
//! no cloud account and how they back up to a USB disk or a NAS.
//!
//! Object metadata is kept where a file system keeps it: the file's mtime
//! and permission bits; the blake3 lives in the manifest. Every write goes to
//! a temporary file under `ROOT/.s3backup/tmp/` and is renamed into place,
//! so a crash never leaves a half-written file under a final name. The ETag
//! is derived from size and mtime, as web servers derive theirs from a stat.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{
    CompletedPart, FileRange, ObjectMeta, ObjectStore, Prepared, PutOutcome, StoreError, StoreResult,
};

/// A bucket-shaped directory tree.
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// A store rooted at `root` (which need not exist yet; see `prepare`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
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

fn etag_of(path: &Path) -> io::Result<PutOutcome> {
    let md = fs::metadata(path)?;
    let mtime = filetime::FileTime::from_last_modification_time(&md);
    let mtime_ns = mtime.unix_seconds() as i128 * 1_000_000_000 + mtime.nanoseconds() as i128;
    Ok(PutOutcome {
        etag: format!("{:x}-{:x}", md.len(), mtime_ns),
        version_id: None,
    })
}

fn copy_range(out: &mut File, range: FileRange<'_>) -> io::Result<()> {
    let mut file = File::open(range.path)?;
    file.seek(SeekFrom::Start(range.offset))?;
    let copied = io::copy(&mut file.take(range.len), out)?;
    if copied != range.len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{} shrank while being read", range.path.display()),
        ));
    }
    Ok(())
}

fn io_error(e: io::Error, what: &str) -> StoreError {
    let text = format!("{what}: {e}");
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

/// Cheap to clone: the store is just its root path.
impl Clone for LocalStore {
    fn clone(&self) -> Self {
        Self::new(self.root.clone())
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
        let (offset, len) = (range.offset, range.len);
        blocking(move || {
            this.write_atomically(&key, &meta, |out| {
                copy_range(
                    out,
                    FileRange {
                        path: &path,
                        offset,
                        len,
                    },
                )
            })
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
        let (path, offset, len) = (range.path.to_path_buf(), range.offset, range.len);
        blocking(move || {
            let part = dir.join(format!("part-{number:05}"));
            let what = |e| io_error(e, &format!("writing part '{}'", part.display()));
            let mut out = File::create(&part).map_err(what)?;
            copy_range(
                &mut out,
                FileRange {
                    path: &path,
                    offset,
                    len,
                },
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

    async fn copy(&self, src_key: &str, dst_key: &str, meta: &ObjectMeta) -> StoreResult<PutOutcome> {
        let src = self.object_path(src_key)?;
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

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
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
}
