//! What the local store reads of a stored file (its [`Stat`]: size,
//! mtime, mode, and the ETag made of them) and how it copies a range of a
//! source file in, checking the bytes against the MD5 they were hashed
//! with, as S3 checks `Content-MD5`.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
#[cfg(not(unix))]
use std::time::SystemTime;

use cap_std::fs::Metadata;
use md5::Digest;

use super::errors::{DigestMismatch, Shrank};
use crate::store::{FileRange, ObjectMeta, PutOutcome, RemoteObject, StoreError, StoreResult};

/// What the store reports of an entry's stat: size in bytes, mtime in
/// nanoseconds since the epoch, permission bits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stat {
    pub(super) len: u64,
    pub(super) mtime_ns: i64,
    pub(super) mode: u32,
}

impl Stat {
    pub(super) fn of(md: &Metadata) -> Stat {
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

    /// When the entry was last put in place, for a listing's
    /// `last_modified_ns` (S3's Last-Modified: when the object was stored,
    /// not the file's mtime, which the store sets to the source file's):
    /// the inode's change time on Unix (a write, a rename, a new mtime all
    /// set it), the later of creation and modification time elsewhere.
    /// A prune keeps content this recent ([`crate::retention::prune`]).
    pub(super) fn stored_ns(md: &Metadata) -> i64 {
        #[cfg(unix)]
        {
            use cap_std::fs::MetadataExt;
            md.ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(md.ctime_nsec())
        }
        #[cfg(not(unix))]
        {
            let ns = |t: SystemTime| match t.duration_since(SystemTime::UNIX_EPOCH) {
                Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
                Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
            };
            let created = md.created().map(|t| ns(t.into_std())).unwrap_or(0);
            let modified = md.modified().map(|t| ns(t.into_std())).unwrap_or(0);
            created.max(modified)
        }
    }

    /// The ETag: size and mtime in hex, as web servers derive theirs.
    pub(super) fn etag(&self) -> String {
        format!("{:x}-{:x}", self.len, i128::from(self.mtime_ns))
    }

    pub(super) fn put_outcome(&self) -> PutOutcome {
        PutOutcome {
            etag: self.etag(),
            version_id: None,
            checksum: None,
        }
    }
}

/// Applies an object's mode and mtime to an open file (`fchmod`, `futimens`).
pub(super) fn apply_meta(file: &File, meta: &ObjectMeta) -> io::Result<()> {
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
/// are not the bytes hashed (as S3 refuses a body whose `Content-MD5`
/// differs), and with [`Shrank`] when the file ended first.
pub(super) fn copy_range_with<R: Read>(
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

/// An object as a read reports it: a regular file or a symlink, else not found.
pub(super) fn remote_of(key: &str, md: &Metadata) -> StoreResult<RemoteObject> {
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
        checksum: None,
        lock: None,
    })
}
