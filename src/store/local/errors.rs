//! The local store's errors: keys and upload IDs checked before any file
//! is touched, and file-system errors sorted into [`StoreError`] by their
//! [`io::ErrorKind`] (which the standard library derives from the OS error
//! number: `ENOENT` is `NotFound`, `EACCES`/`EPERM` `PermissionDenied`,
//! `ENOSPC` `StorageFull`, `EROFS` `ReadOnlyFilesystem`, `ENOTEMPTY`
//! `DirectoryNotEmpty`), by the [`ConfineError`] variant, and by the type
//! of an error a copy wraps ([`DigestMismatch`]); never by their text.

use std::io;
use std::path::Path;

use crate::fs::confine::ConfineError;
use crate::store::{StoreError, StoreResult};

/// Checks that a key names something beneath the root: relative, no empty,
/// `.` or `..` component, no NUL, no backslash on Windows. Returns it as
/// a path.
pub(super) fn check_key(key: &str) -> StoreResult<&Path> {
    // The same rules as a restore's: a backslash is a plain name byte on
    // Unix (a file named `a\b` is backed up and restored as one) and a
    // separator only on Windows.
    crate::fs::safe_path::validate(key).map_err(|e| StoreError::Fatal(e.to_string()))?;
    Ok(Path::new(key))
}

/// Checks that a key is well formed whatever the store's name encoding:
/// as [`check_key`], except that a backslash, which the stand-ins hold
/// on Windows (`＼`), is taken as a plain name byte; the path on disk is
/// checked again by [`check_key`].
pub(super) fn check_key_text(key: &str) -> StoreResult<()> {
    if key.contains('\\') {
        return crate::fs::safe_path::validate(&key.replace('\\', "_"))
            .map_err(|e| StoreError::Fatal(format!("key '{key}': {e}")));
    }
    check_key(key).map(|_| ())
}

/// The directory name of an open multipart upload.
pub(super) fn upload_name(upload_id: &str) -> StoreResult<String> {
    if upload_id.is_empty() || !upload_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(StoreError::Fatal(format!("bad upload ID '{upload_id}'")));
    }
    Ok(format!("upload-{upload_id}"))
}

/// A confinement failure as a store error: a link on the way is a refusal
/// that names it ([`StoreError::Fatal`]), a file on the way means the key
/// holds no object ([`StoreError::NotFound`]), an I/O error is sorted by
/// [`by_kind`].
pub(super) fn confine_error(e: ConfineError, what: &str) -> StoreError {
    let text = format!("{what}: {e}");
    match e {
        ConfineError::Symlink { .. } | ConfineError::NotRelative { .. } => StoreError::Fatal(text),
        ConfineError::NotDir { .. } => StoreError::NotFound(text),
        ConfineError::Io { cause, .. } => by_kind(cause.kind(), text),
    }
}

/// The bytes copied into the store are not the bytes hashed.
#[derive(Debug, thiserror::Error)]
#[error("the MD5 of the bytes read differs from the one hashed")]
pub(super) struct DigestMismatch;

/// The file ended before the range to copy did.
#[derive(Debug, thiserror::Error)]
#[error("the file shrank while being read")]
pub(super) struct Shrank;

/// A file-system error met while `what` ("writing '/mnt/b/a.txt'") as a
/// store error: [`StoreError::BadDigest`] when it wraps a
/// [`DigestMismatch`], else sorted by [`by_kind`].
pub(super) fn io_error(e: io::Error, what: &str) -> StoreError {
    if e.get_ref().is_some_and(|inner| inner.is::<DigestMismatch>()) {
        return StoreError::BadDigest(what.to_string());
    }
    if e.get_ref().is_some_and(|inner| inner.is::<Shrank>()) {
        return StoreError::Shrank(what.to_string());
    }
    by_kind(e.kind(), format!("{what}: {e}"))
}

/// The one sorting of I/O errors by kind: missing is
/// [`StoreError::NotFound`], refused is [`StoreError::AccessDenied`], an
/// interrupted or timed-out call (`EINTR`, `EAGAIN`, `ETIMEDOUT`) is
/// [`StoreError::Transient`]; everything else (a full or read-only disk, a
/// name too long, an I/O error) will not go away by retrying.
fn by_kind(kind: io::ErrorKind, text: String) -> StoreError {
    match kind {
        io::ErrorKind::NotFound => StoreError::NotFound(text),
        io::ErrorKind::PermissionDenied => StoreError::AccessDenied(text),
        io::ErrorKind::Interrupted | io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            StoreError::Transient(text)
        }
        _ => StoreError::Fatal(text),
    }
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

    /// Sorted by the OS error number's kind; the message is never read.
    #[cfg(unix)]
    #[test]
    fn io_errors_are_sorted_by_kind() {
        let os = |errno: i32| io::Error::from_raw_os_error(errno);
        let sorted = |e: io::Error| io_error(e, "writing '/s/k'");
        // ENOENT, EACCES, EPERM, EINTR, EAGAIN, ENOSPC, EROFS on Linux and the BSDs alike.
        assert!(matches!(sorted(os(2)), StoreError::NotFound(_)));
        assert!(matches!(sorted(os(13)), StoreError::AccessDenied(_)));
        assert!(matches!(sorted(os(1)), StoreError::AccessDenied(_)));
        assert!(matches!(sorted(os(4)), StoreError::Transient(_)));
        assert!(matches!(sorted(os(28)), StoreError::Fatal(_)));
        assert!(matches!(sorted(os(30)), StoreError::Fatal(_)));
        // Words in the text count for nothing.
        let worded = io::Error::other("No such file or directory (permission denied, timed out)");
        assert!(matches!(sorted(worded), StoreError::Fatal(_)));
        assert!(matches!(
            sorted(io::Error::other(DigestMismatch)),
            StoreError::BadDigest(_)
        ));
        assert_eq!(
            sorted(os(2)).to_string(),
            format!("not found: writing '/s/k': {}", os(2))
        );
    }
}
