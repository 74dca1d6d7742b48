//! Snapshot manifests: one zstd-compressed JSON-lines object per backup run
//! that changed anything, at `PREFIX/.s3backup/manifests/<UTC time>-<run id>.jsonl.zst`.
//!
//! The first line is a [`Header`], then one [`Entry`] per file or directory,
//! sorted by path (byte order). JSON lines so any tool (`zstdcat | jq`) can
//! read it; streamed both ways so a manifest of millions of files never sits
//! whole in memory. Names sort by time, so the newest is the last listed.
//! The format is documented in `docs/manifest.md`; bump [`FORMAT`] on any
//! change a reader of the old format would misread.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};

use serde::{Deserialize, Serialize};

use crate::state::FileRow;

/// Version of the manifest format written by this build.
pub const FORMAT: u32 = 1;
/// Where manifests live, relative to the target prefix.
pub const DIR: &str = ".s3backup/manifests";
/// Manifest file name suffix.
pub const SUFFIX: &str = ".jsonl.zst";

/// The manifest's first line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Manifest format version.
    pub format: u32,
    /// The writing tool and its version.
    pub tool: String,
    /// Absolute source directory.
    pub source: String,
    /// The target as text.
    pub target: String,
    /// Host name of the machine that ran the backup.
    pub host: String,
    /// RFC 3339 UTC time the manifest was written.
    pub created: String,
    /// The run's ID.
    pub run_id: String,
    /// Number of files.
    pub files: u64,
    /// Number of directories.
    pub dirs: u64,
    /// Total bytes of all files.
    pub bytes: u64,
}

/// One file or directory of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative path, `/`-separated.
    pub path: String,
    /// "file", "dir" or "symlink" (whose content is the link target).
    #[serde(rename = "type")]
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Permission bits, octal text ("644").
    pub mode: String,
    /// blake3 hex of the content (files only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub blake3: String,
    /// The object's ETag (files only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub etag: String,
    /// The object's version on a versioned bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

impl From<&FileRow> for Entry {
    fn from(row: &FileRow) -> Self {
        Entry {
            path: row.path.clone(),
            kind: row.kind.name().to_string(),
            size: row.size,
            mtime_ns: row.mtime_ns,
            mode: format!("{:o}", row.mode),
            blake3: row.blake3.clone(),
            etag: row.etag.clone(),
            version_id: row.version_id.clone(),
        }
    }
}

/// Manifest file name for a run: sortable UTC time, then the run ID.
pub fn file_name(created: chrono::DateTime<chrono::Utc>, run_id: &str) -> String {
    format!("{}-{run_id}{SUFFIX}", created.format("%Y%m%dT%H%M%SZ"))
}

/// Streams a manifest into `out`, compressing as it goes.
pub struct Writer<W: Write> {
    encoder: zstd::Encoder<'static, BufWriter<W>>,
}

impl<W: Write> Writer<W> {
    /// Starts a manifest with its header line.
    pub fn new(out: W, header: &Header) -> io::Result<Self> {
        let mut encoder = zstd::Encoder::new(BufWriter::new(out), 3)?;
        serde_json::to_writer(&mut encoder, header)?;
        encoder.write_all(b"\n")?;
        Ok(Self { encoder })
    }

    /// Appends one entry; callers feed them in path order.
    pub fn push(&mut self, entry: &Entry) -> io::Result<()> {
        serde_json::to_writer(&mut self.encoder, entry)?;
        self.encoder.write_all(b"\n")
    }

    /// Ends the zstd frame and flushes.
    pub fn finish(self) -> io::Result<W> {
        let buf = self.encoder.finish()?;
        buf.into_inner().map_err(|e| e.into_error())
    }
}

/// The longest manifest line a reader accepts. Entries take a few hundred
/// bytes; without a limit a few kilobytes of hostile zstd could make one
/// line, and so one allocation, as large as memory (found by fuzzing).
pub const MAX_LINE: usize = 1 << 20;

/// Reads a manifest back line by line.
pub struct Reader<R: Read> {
    input: BufReader<zstd::Decoder<'static, BufReader<R>>>,
    /// Set after an error the rest cannot be read past (I/O, an overlong line).
    done: bool,
    /// The header line.
    pub header: Header,
}

impl<R: Read> Reader<R> {
    /// Opens a manifest and parses its header; refuses formats newer than this build.
    pub fn new(input: R) -> io::Result<Self> {
        let mut input = BufReader::new(zstd::Decoder::new(input)?);
        let first = read_line(&mut input)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "manifest is empty"))??;
        let header: Header = serde_json::from_str(&first)?;
        if header.format > FORMAT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "manifest format {} is newer than this s3backup understands ({FORMAT})",
                    header.format
                ),
            ));
        }
        Ok(Self {
            input,
            done: false,
            header,
        })
    }
}

/// The next line without its `\n` or `\r\n`, like [`BufRead::lines`] but
/// refusing lines over [`MAX_LINE`] bytes; `None` at the end.
fn read_line(input: &mut impl BufRead) -> Option<io::Result<String>> {
    let mut buf = Vec::new();
    match input.take(MAX_LINE as u64 + 1).read_until(b'\n', &mut buf) {
        Ok(0) => return None,
        Ok(_) => {}
        Err(e) => return Some(Err(e)),
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    } else if buf.len() > MAX_LINE {
        return Some(Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("manifest line longer than {MAX_LINE} bytes"),
        )));
    }
    Some(String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)))
}

impl<R: Read> Iterator for Reader<R> {
    type Item = io::Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match read_line(&mut self.input)? {
                Ok(line) if line.trim().is_empty() => continue,
                Ok(line) => return Some(serde_json::from_str(&line).map_err(io::Error::from)),
                Err(e) => {
                    // A line that is not UTF-8 is one bad entry; anything else ends the read.
                    self.done = e
                        .get_ref()
                        .is_none_or(|inner| !inner.is::<std::string::FromUtf8Error>());
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            format: FORMAT,
            tool: "s3backup test".into(),
            source: "/src".into(),
            target: "s3://b/p".into(),
            host: "h".into(),
            created: "2026-01-01T00:00:00Z".into(),
            run_id: "r".into(),
            files: 2,
            dirs: 0,
            bytes: 3,
        }
    }

    #[test]
    fn round_trips_header_and_entries() {
        let entries: Vec<Entry> = (0..3)
            .map(|i| Entry {
                path: format!("dir/f{i}"),
                kind: "file".into(),
                size: i,
                mtime_ns: 1_700_000_000_000_000_000 + i as i64,
                mode: "644".into(),
                blake3: "ab".repeat(32),
                etag: "e".into(),
                version_id: (i == 1).then(|| "v1".to_string()),
            })
            .collect();
        let mut w = Writer::new(Vec::new(), &header()).unwrap();
        for e in &entries {
            w.push(e).unwrap();
        }
        let bytes = w.finish().unwrap();
        let r = Reader::new(&bytes[..]).unwrap();
        assert_eq!(r.header, header());
        let back: Vec<Entry> = r.map(Result::unwrap).collect();
        assert_eq!(back, entries);
    }

    #[test]
    fn refuses_newer_format() {
        let mut h = header();
        h.format = FORMAT + 1;
        let bytes = Writer::new(Vec::new(), &h).unwrap().finish().unwrap();
        assert!(Reader::new(&bytes[..]).is_err());
    }

    #[test]
    fn an_overlong_line_is_an_error_that_ends_the_read() {
        let mut raw = serde_json::to_vec(&header()).unwrap();
        raw.extend_from_slice(b"\n\n{\"path\":\"");
        raw.resize(raw.len() + MAX_LINE, b'a');
        raw.extend_from_slice(b"\"}\n{}\n");
        let bytes = zstd::encode_all(&raw[..], 1).unwrap();
        let mut r = Reader::new(&bytes[..]).unwrap();
        let err = r.next().unwrap().unwrap_err();
        assert!(err.to_string().contains("longer than"), "{err}");
        assert!(r.next().is_none());
    }

    #[test]
    fn names_sort_by_time() {
        use chrono::TimeZone;
        let a = file_name(chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(), "zz");
        let b = file_name(chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 6).unwrap(), "aa");
        assert_eq!(a, "20260102T030405Z-zz.jsonl.zst");
        assert!(a < b);
    }
}
