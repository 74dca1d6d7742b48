//! Content hashing: blake3 over a streamed file, run on blocking threads,
//! and in the same read the MD5 of every request body the file will be
//! sent in (the whole file, or each multipart part).
//!
//! The MD5s go out as `Content-MD5` with the upload, so the store refuses
//! (`BadDigest`) any body that differs from the bytes hashed here: a file
//! rewritten between this read and the upload's read, even with its size
//! and mtime put back, fails that request instead of being stored under a
//! blake3 it does not have, and a byte flipped in transit is caught too
//! (every S3-compatible server checks `Content-MD5`; see the S3 API's
//! PutObject and UploadPart).
//!
//! A file that changes while it is read would give a hash of bytes that
//! never existed together; the stat is compared before and after, and such
//! a file is reported rather than recorded.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use md5::Digest;

use crate::fs::checksum::{Algorithm, BodySums, Sum, Summer};
use crate::fs::scan::{self, EntryKind, ScanEntry, Stamp};

/// An MD5 digest (16 bytes), as `Content-MD5` carries it (base64) and as a
/// single-part ETag shows it (hex).
pub type Md5 = [u8; 16];

/// The MD5 of each request body a file is sent in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyDigests {
    /// `None`: one request for the whole file; `Some(n)`: parts of `n`
    /// bytes (the last one shorter), part `i` (1-based) starting at
    /// `(i - 1) * n`.
    pub part_size: Option<u64>,
    /// One digest per body, in order (one for an empty file). Empty when
    /// not computed: the upload then hashes the file again itself.
    pub md5: Vec<Md5>,
    /// The additional checksum of each body (and of the whole file), with
    /// `--checksum-algorithm`; `None` without one.
    pub sums: Option<BodySums>,
}

impl BodyDigests {
    /// The digest of part `number` (1-based; 1 for a single request), if known.
    pub fn part(&self, number: i32) -> Option<Md5> {
        usize::try_from(number - 1)
            .ok()
            .and_then(|i| self.md5.get(i))
            .copied()
    }

    /// The additional checksum of part `number` (1-based; 1 for a single request), if computed.
    pub fn sum(&self, number: i32) -> Option<Sum> {
        let sums = self.sums.as_ref()?;
        usize::try_from(number - 1)
            .ok()
            .and_then(|i| sums.parts.get(i))
            .copied()
    }
}

/// What one read of a file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashed {
    /// blake3 of the whole content, lowercase hex.
    pub blake3: String,
    /// MD5 of each request body (empty for a symlink: its target is
    /// hashed again, from the same bytes, when it is sent).
    pub bodies: BodyDigests,
}

/// Bytes read at a time.
const READ_BUF: usize = 256 * 1024;

/// Hashes `path` and checks it still matches what the scan saw. A
/// symlink's content is its target, read without following it. `part_size`
/// says how the file will be sent (see [`BodyDigests::part_size`]);
/// `algorithm`, the additional checksum computed for each body, if any.
///
/// # Errors
/// The I/O error of opening or reading the file (or reading the link), or
/// the one of [`ensure_unchanged`] when the file changed since the scan.
pub fn hash_file(
    path: &Path,
    seen: &ScanEntry,
    part_size: Option<u64>,
    algorithm: Option<Algorithm>,
) -> io::Result<Hashed> {
    if seen.kind == EntryKind::Symlink {
        let target = link_target(path)?;
        ensure_unchanged(path, seen)?;
        return Ok(Hashed {
            blake3: blake3::hash(&target).to_hex().to_string(),
            bodies: BodyDigests::default(),
        });
    }
    let file = File::open(path)?;
    // A small file's whole content and the end-of-file in two reads, without
    // zeroing a large buffer for each of thousands of small files.
    let buf_len = usize::try_from(seen.size.saturating_add(1)).map_or(READ_BUF, |n| n.clamp(4096, READ_BUF));
    let hashed = hash_reader_with(file, part_size.filter(|&n| n > 0), algorithm, buf_len)?;
    ensure_unchanged(path, seen)?;
    Ok(hashed)
}

/// blake3 of everything `reader` yields and the MD5 of each `part_size`
/// slice of it (one MD5 of the whole when `None`), and with `algorithm`
/// the same slices' additional checksums, reading `buf_len` bytes at a time.
fn hash_reader_with(
    mut reader: impl Read,
    part_size: Option<u64>,
    algorithm: Option<Algorithm>,
    buf_len: usize,
) -> io::Result<Hashed> {
    let mut hasher = blake3::Hasher::new();
    let mut md5 = md5::Md5::new();
    let mut summer = algorithm.map(|a| Summer::new(a, part_size.is_some()));
    let mut digests = Vec::new();
    let mut left_in_part = part_size.unwrap_or(u64::MAX);
    let mut buf = vec![0u8; buf_len.max(1)];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut data = &buf[..n];
        hasher.update(data);
        while !data.is_empty() {
            let take = data
                .len()
                .min(usize::try_from(left_in_part).unwrap_or(usize::MAX));
            md5.update(&data[..take]);
            if let Some(s) = summer.as_mut() {
                s.update(&data[..take]);
            }
            data = &data[take..];
            left_in_part -= take as u64;
            if left_in_part == 0 {
                digests.push(md5.finalize_reset().into());
                if let Some(s) = summer.as_mut() {
                    s.end_part();
                }
                left_in_part = part_size.unwrap_or(u64::MAX);
            }
        }
    }
    // The last (or only) body, unless the content ended exactly on a part
    // boundary; an empty file is one empty body.
    if digests.is_empty() || left_in_part != part_size.unwrap_or(u64::MAX) {
        digests.push(md5.finalize().into());
        if let Some(s) = summer.as_mut() {
            s.end_part();
        }
    }
    Ok(Hashed {
        blake3: hasher.finalize().to_hex().to_string(),
        bodies: BodyDigests {
            part_size,
            md5: digests,
            sums: summer.map(Summer::finish),
        },
    })
}

/// The MD5 of `data`.
pub(crate) fn md5_of(data: &[u8]) -> Md5 {
    md5::Md5::digest(data).into()
}

/// The raw bytes a symlink points to.
///
/// # Errors
/// The I/O error of `readlink` (not a link, gone, not permitted).
pub(crate) fn link_target(path: &Path) -> io::Result<Vec<u8>> {
    Ok(std::fs::read_link(path)?.into_os_string().into_encoded_bytes())
}

/// Fails if the file's size, mtime, change time, inode or device differ
/// from the scan's: then the bytes read or sent may not be the ones seen.
///
/// # Errors
/// The I/O error of the `stat`, or an [`io::ErrorKind::Other`] error
/// ("file changed while being backed up") when anything differs.
pub fn ensure_unchanged(path: &Path, seen: &ScanEntry) -> io::Result<()> {
    let md = if seen.kind == EntryKind::Symlink {
        std::fs::symlink_metadata(path)?
    } else {
        std::fs::metadata(path)?
    };
    if md.len() != seen.size || scan::mtime_ns(&md) != seen.mtime_ns || Stamp::of(&md) != seen.stamp {
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
            stamp: Stamp::of(&md),
        };
        let hashed = hash_file(&path, &seen, None, None).unwrap();
        assert_eq!(hashed.blake3, blake3::hash(b"hello").to_hex().to_string());
        assert_eq!(hashed.bodies.md5, [md5_of(b"hello")]);
        seen.stamp.inode += 1;
        assert!(
            hash_file(&path, &seen, None, None).is_err(),
            "another inode is another file"
        );
        seen.stamp.inode -= 1;
        seen.size = 4;
        assert!(hash_file(&path, &seen, None, None).is_err());
    }

    #[test]
    fn one_md5_per_part_whatever_the_read_boundaries() {
        let data: Vec<u8> = (0..(3 * READ_BUF + 17)).map(|i| (i * 7 % 251) as u8).collect();
        for part in [
            1000u64,
            READ_BUF as u64,
            READ_BUF as u64 + 1,
            data.len() as u64,
            1 << 40,
        ] {
            let hashed = hash_reader_with(&data[..], Some(part), None, READ_BUF).unwrap();
            let expected: Vec<Md5> = data
                .chunks(part.min(data.len() as u64) as usize)
                .map(md5_of)
                .collect();
            assert_eq!(hashed.bodies.md5, expected, "part size {part}");
            assert_eq!(hashed.blake3, blake3::hash(&data).to_hex().to_string());
            let summed = hash_reader_with(&data[..], Some(part), Some(Algorithm::Crc32c), READ_BUF).unwrap();
            let sums = summed.bodies.sums.expect("sums");
            let chunks = data.chunks(part.min(data.len() as u64) as usize);
            let expected: Vec<Sum> = chunks.map(|c| Sum::of(Algorithm::Crc32c, c)).collect();
            assert_eq!(sums.parts, expected, "part size {part}");
            assert_eq!(sums.full_object(), Some(Sum::of(Algorithm::Crc32c, &data)));
        }
        assert_eq!(
            hash_reader_with(&data[..], None, None, READ_BUF)
                .unwrap()
                .bodies
                .md5,
            [md5_of(&data)]
        );
        assert_eq!(
            hash_reader_with(&b""[..], None, None, READ_BUF)
                .unwrap()
                .bodies
                .md5,
            [md5_of(b"")]
        );
        assert_eq!(
            hash_reader_with(&b""[..], Some(5), None, READ_BUF)
                .unwrap()
                .bodies
                .md5,
            [md5_of(b"")]
        );
    }
}
