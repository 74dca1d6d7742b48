//! Content hashing: blake3 over a streamed file, run on blocking threads.
//!
//! A file that changes while it is read would give a hash of bytes that
//! never existed together; the stat is compared before and after, and such
//! a file is reported rather than recorded.

use std::fs::File;
use std::io;
use std::path::Path;

use crate::scan::{self, EntryKind, ScanEntry};

/// Hashes `path` and checks it still matches what the scan saw. A
/// symlink's content is its target, read without following it.
pub fn hash_file(path: &Path, seen: &ScanEntry) -> io::Result<String> {
    if seen.kind == EntryKind::Symlink {
        let target = link_target(path)?;
        ensure_unchanged(path, seen)?;
        return Ok(blake3::hash(&target).to_hex().to_string());
    }
    let file = File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(&file)?;
    ensure_unchanged(path, seen)?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// The raw bytes a symlink points to.
pub fn link_target(path: &Path) -> io::Result<Vec<u8>> {
    Ok(std::fs::read_link(path)?.into_os_string().into_encoded_bytes())
}

/// Fails if the file's size or mtime differ from the scan's.
pub fn ensure_unchanged(path: &Path, seen: &ScanEntry) -> io::Result<()> {
    let md = if seen.kind == EntryKind::Symlink {
        std::fs::symlink_metadata(path)?
    } else {
        std::fs::metadata(path)?
    };
    if md.len() != seen.size || scan::mtime_ns(&md) != seen.mtime_ns {
        return Err(io::Error::other(
            "file changed while being backed up; it will be retried next run",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_notices_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello").unwrap();
        let md = std::fs::metadata(&path).unwrap();
        let mut seen = ScanEntry {
            path: "f".into(),
            kind: scan::EntryKind::File,
            size: 5,
            mtime_ns: scan::mtime_ns(&md),
            mode: 0o644,
            seen_ns: 0,
        };
        assert_eq!(
            hash_file(&path, &seen).unwrap(),
            blake3::hash(b"hello").to_hex().to_string()
        );
        seen.size = 4;
        assert!(hash_file(&path, &seen).is_err());
    }
}
