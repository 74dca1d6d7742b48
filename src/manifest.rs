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

/// Version of the manifest format written by this build. Format 2 (history)
/// adds the header's `history` and `tags`: a format-2 snapshot's files may
/// be held in the content area ([`crate::history`]) instead of at their
/// keys, which a format-1 reader would call unrecoverable, so it refuses
/// them as too new. Format-1 manifests still read (no history, no tags).
pub const FORMAT: u32 = 2;
/// Where manifests live, relative to the target prefix.
pub const DIR: &str = ".s3backup/manifests";
/// Manifest file name suffix.
pub(crate) const SUFFIX: &str = ".jsonl.zst";

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
    /// How the run kept the content it replaced or deleted (format 2);
    /// `None` in a format-1 manifest, written before history existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<crate::history::HistoryMode>,
    /// Labels the user gave the run (`backup --tag`), for `snapshots
    /// forget --keep-tag` and listings; empty when none (and in format 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The Object Lock retention the run's writes got (`--lock-days`, or
    /// the bucket's default counted from the run's start): none of the
    /// object versions it wrote, this manifest included, can be deleted
    /// before `until`. Absent when none is known (and in older manifests);
    /// an older reader ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<crate::lock::Retention>,
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
    /// The additional checksum the store said the object has
    /// (`backup --checksum-algorithm`), for `verify --checksums`; absent
    /// when none was asked for or the store named none (and in manifests
    /// written before it existed). One this build cannot read is dropped,
    /// not a damaged line.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::fs::checksum::lenient"
    )]
    pub checksum: Option<crate::fs::checksum::StoredChecksum>,
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
            checksum: row.checksum.clone(),
        }
    }
}

/// Manifest file name for a run: sortable UTC time, then the run ID.
pub(crate) fn file_name(created: chrono::DateTime<chrono::Utc>, run_id: &str) -> String {
    format!("{}-{run_id}{SUFFIX}", created.format("%Y%m%dT%H%M%SZ"))
}

/// Streams a manifest into `out`, compressing as it goes.
pub struct Writer<W: Write> {
    encoder: zstd::Encoder<'static, BufWriter<W>>,
}

impl<W: Write> Writer<W> {
    /// Starts a manifest with its header line.
    ///
    /// # Errors
    /// The I/O error of starting the zstd frame or writing to `out`.
    pub fn new(out: W, header: &Header) -> io::Result<Self> {
        let mut encoder = zstd::Encoder::new(BufWriter::new(out), 3)?;
        serde_json::to_writer(&mut encoder, header)?;
        encoder.write_all(b"\n")?;
        Ok(Self { encoder })
    }

    /// Appends one entry; callers feed them in path order.
    ///
    /// # Errors
    /// The I/O error of writing to the output.
    pub fn push(&mut self, entry: &Entry) -> io::Result<()> {
        serde_json::to_writer(&mut self.encoder, entry)?;
        self.encoder.write_all(b"\n")
    }

    /// Ends the zstd frame and flushes.
    ///
    /// # Errors
    /// The I/O error of ending the frame or flushing the output.
    pub fn finish(self) -> io::Result<W> {
        let buf = self.encoder.finish()?;
        buf.into_inner().map_err(|e| e.into_error())
    }
}

/// The longest manifest line a reader accepts. Entries take a few hundred
/// bytes; without a limit a few kilobytes of hostile zstd could make one
/// line, and so one allocation, as large as memory (found by fuzzing).
pub const MAX_LINE: usize = 1 << 20;

/// Why a manifest's header (line 1) cannot be read: the manifest is then
/// damaged as a whole, and no entry of it can be trusted.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The bytes are not a zstd stream, or it breaks off inside line 1, or
    /// line 1 is longer than [`MAX_LINE`] or not UTF-8.
    #[error("header unreadable: {0}")]
    Unreadable(io::Error),
    /// The stream holds no line at all.
    #[error("manifest is empty")]
    Empty,
    /// Line 1 is not a header's JSON.
    #[error("header is not valid: {0}")]
    Invalid(serde_json::Error),
    /// Written by a newer s3backup in a format this build cannot read.
    #[error("manifest format {found} is newer than this s3backup understands ({supported})")]
    TooNew {
        /// The header's `format`.
        found: u32,
        /// [`FORMAT`].
        supported: u32,
    },
}

/// Why an entry line could not be read. `line` counts the decompressed
/// lines from 1 (the header), so `zstdcat M | sed -n Np` shows it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// This one line is bad (longer than [`MAX_LINE`], not UTF-8, not an
    /// entry's JSON); it is skipped and the lines after it are read.
    #[error("manifest line {line}: {reason}")]
    Line {
        /// The bad line's number.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing after this point can be read: the zstd stream is corrupt or
    /// cut short, the last line has no `\n`, or there are fewer entries
    /// than the header counts. The reader yields nothing more.
    #[error("manifest unreadable after line {line}: {reason}")]
    Stopped {
        /// The last line read whole.
        line: u64,
        /// Why the read ended there.
        reason: String,
    },
}

/// Reads a manifest back line by line.
///
/// A bad entry line is one [`ReadError::Line`] and the read goes on; a
/// manifest that cannot be read to its end gives one [`ReadError::Stopped`]
/// last, so a reader never mistakes a cut manifest for a whole one.
pub struct Reader<R: Read> {
    input: BufReader<zstd::Decoder<'static, BufReader<R>>>,
    /// Set after the read ended (at the end, or after a `Stopped`).
    done: bool,
    /// Lines consumed, the header included.
    line: u64,
    /// Entry lines seen, bad ones included (blank lines are not entries).
    entries: u64,
    /// The header line.
    pub header: Header,
}

impl<R: Read> Reader<R> {
    /// Opens a manifest and parses its header; refuses formats newer than this build.
    ///
    /// # Errors
    /// [`HeaderError`]: not zstd, empty, no header line, or a header this
    /// build does not read (a newer format, a line too long).
    pub fn new(input: R) -> Result<Self, HeaderError> {
        let mut input = BufReader::new(zstd::Decoder::new(input).map_err(HeaderError::Unreadable)?);
        let first = match read_line(&mut input) {
            None => return Err(HeaderError::Empty),
            Some(Err(e)) => return Err(HeaderError::Unreadable(e.into_io())),
            Some(Ok(Line::Cut)) => {
                return Err(HeaderError::Unreadable(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the manifest ends inside its header line",
                )));
            }
            Some(Ok(Line::Whole(text))) => text,
        };
        let header: Header = serde_json::from_str(&first).map_err(HeaderError::Invalid)?;
        if header.format > FORMAT {
            return Err(HeaderError::TooNew {
                found: header.format,
                supported: FORMAT,
            });
        }
        Ok(Self {
            input,
            done: false,
            line: 1,
            entries: 0,
            header,
        })
    }

    /// Entries the header says follow it (files, symlinks and directories).
    fn expected_entries(&self) -> u64 {
        self.header.files.saturating_add(self.header.dirs)
    }
}

/// One line as read: whole (it ended in `\n`), or the stream's last bytes
/// with no `\n` after them (a writer always ends lines, so the manifest was cut).
enum Line {
    Whole(String),
    Cut,
}

/// Why [`read_line`] gave no line.
enum LineError {
    /// The stream broke (zstd corrupt or cut short).
    Io(io::Error),
    /// This line is over [`MAX_LINE`] (and was skipped to its end) or not UTF-8.
    Bad(String),
}

impl LineError {
    fn into_io(self) -> io::Error {
        match self {
            LineError::Io(e) => e,
            LineError::Bad(reason) => io::Error::new(io::ErrorKind::InvalidData, reason),
        }
    }
}

/// The next line without its `\n` or `\r\n`, like [`BufRead::lines`] but
/// refusing lines over [`MAX_LINE`] bytes: such a line is skipped to its
/// end without holding it, so the lines after it can still be read.
/// `None` at the end.
fn read_line(input: &mut impl BufRead) -> Option<Result<Line, LineError>> {
    let mut buf = Vec::new();
    match input.take(MAX_LINE as u64 + 1).read_until(b'\n', &mut buf) {
        Ok(0) => return None,
        Ok(_) => {}
        Err(e) => return Some(Err(LineError::Io(e))),
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    } else if buf.len() > MAX_LINE {
        drop(buf);
        return Some(match input.skip_until(b'\n') {
            Ok(_) => Err(LineError::Bad(format!("longer than {MAX_LINE} bytes; skipped"))),
            Err(e) => Err(LineError::Io(e)),
        });
    } else {
        return Some(Ok(Line::Cut));
    }
    Some(
        String::from_utf8(buf)
            .map(Line::Whole)
            .map_err(|e| LineError::Bad(format!("not UTF-8: {e}"))),
    )
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<Entry, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let Some(read) = read_line(&mut self.input) else {
                self.done = true;
                let expected = self.expected_entries();
                if self.entries < expected {
                    return Some(Err(ReadError::Stopped {
                        line: self.line,
                        reason: format!(
                            "it ends after {} entries but its header counts {expected} (cut short)",
                            self.entries
                        ),
                    }));
                }
                return None;
            };
            match read {
                Ok(Line::Whole(text)) if text.trim().is_empty() => self.line += 1,
                Ok(Line::Whole(text)) => {
                    self.line += 1;
                    self.entries += 1;
                    return Some(
                        serde_json::from_str(&text)
                            .map(|mut entry: Entry| {
                                // A "null" version keeps nothing (`store::kept_version`);
                                // older releases recorded it.
                                if crate::store::kept_version(entry.version_id.as_deref()).is_none() {
                                    entry.version_id = None;
                                }
                                entry
                            })
                            .map_err(|e| ReadError::Line {
                                line: self.line,
                                reason: e.to_string(),
                            }),
                    );
                }
                Ok(Line::Cut) => {
                    self.done = true;
                    return Some(Err(ReadError::Stopped {
                        line: self.line,
                        reason: "the last line breaks off (cut short)".into(),
                    }));
                }
                Err(LineError::Bad(reason)) => {
                    self.line += 1;
                    self.entries += 1;
                    return Some(Err(ReadError::Line {
                        line: self.line,
                        reason,
                    }));
                }
                Err(LineError::Io(e)) => {
                    self.done = true;
                    return Some(Err(ReadError::Stopped {
                        line: self.line,
                        reason: e.to_string(),
                    }));
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
            history: Some(crate::history::HistoryMode::Auto),
            tags: vec!["nightly".into()],
            lock: None,
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
                checksum: (i == 2).then(|| crate::fs::checksum::StoredChecksum {
                    algorithm: crate::fs::checksum::Algorithm::Sha256,
                    value: "q1w2=-2".into(),
                }),
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
        assert!(matches!(
            Reader::new(&bytes[..]),
            Err(HeaderError::TooNew {
                found: 3,
                supported: 2
            })
        ));
    }

    #[test]
    fn a_format_1_manifest_still_reads() {
        // As the first release wrote it: no `history`, no `tags`.
        let old = concat!(
            r#"{"format":1,"tool":"s3backup 0.1.0","source":"/src","target":"s3://b/p","#,
            r#""host":"h","created":"2026-01-01T00:00:00Z","run_id":"r","files":1,"dirs":0,"bytes":3}"#,
            "\n",
            r#"{"path":"a","type":"file","size":3,"mtime_ns":1,"mode":"644","blake3":"ab","etag":"e"}"#,
            "\n"
        );
        let bytes = zstd::encode_all(old.as_bytes(), 3).unwrap();
        let reader = Reader::new(&bytes[..]).unwrap();
        assert_eq!(reader.header.format, 1);
        assert_eq!(reader.header.history, None);
        assert!(reader.header.tags.is_empty());
        let entries: Vec<Entry> = reader.map(Result::unwrap).collect();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].etag, "e");
    }

    /// A manifest of `header()` (which counts 2 files) and raw entry text.
    fn raw_manifest(entries: &[u8]) -> Vec<u8> {
        let mut raw = serde_json::to_vec(&header()).unwrap();
        raw.push(b'\n');
        raw.extend_from_slice(entries);
        zstd::encode_all(&raw[..], 1).unwrap()
    }

    const ENTRY: &str = r#"{"path":"b","type":"file","size":1,"mtime_ns":0,"mode":"644"}"#;

    #[test]
    fn an_overlong_line_is_skipped_and_the_rest_is_read() {
        let mut raw = b"\n{\"path\":\"".to_vec();
        raw.resize(raw.len() + MAX_LINE, b'a');
        raw.extend_from_slice(b"\"}\n");
        raw.extend_from_slice(ENTRY.as_bytes());
        raw.push(b'\n');
        let bytes = raw_manifest(&raw);
        let mut r = Reader::new(&bytes[..]).unwrap();
        let err = r.next().unwrap().unwrap_err();
        assert!(matches!(err, ReadError::Line { line: 3, .. }), "{err}");
        assert!(err.to_string().contains("longer than"), "{err}");
        assert_eq!(r.next().unwrap().unwrap().path, "b");
        assert!(r.next().is_none());
    }

    #[test]
    fn a_bad_line_is_skipped_and_the_rest_is_read() {
        let raw = format!("not json\n{ENTRY}\n");
        let bytes = raw_manifest(raw.as_bytes());
        let mut r = Reader::new(&bytes[..]).unwrap();
        assert!(matches!(r.next(), Some(Err(ReadError::Line { line: 2, .. }))));
        assert_eq!(r.next().unwrap().unwrap().path, "b");
        assert!(r.next().is_none());
    }

    #[test]
    fn fewer_entries_than_the_header_counts_is_a_stop() {
        let raw = format!("{ENTRY}\n");
        let bytes = raw_manifest(raw.as_bytes());
        let mut r = Reader::new(&bytes[..]).unwrap();
        assert!(r.next().unwrap().is_ok());
        let err = r.next().unwrap().unwrap_err();
        assert!(matches!(err, ReadError::Stopped { line: 2, .. }), "{err}");
        assert!(err.to_string().contains("header counts 2"), "{err}");
        assert!(r.next().is_none());
    }

    #[test]
    fn a_last_line_without_its_newline_is_a_stop() {
        let raw = format!("{ENTRY}\n{}", &ENTRY[..20]);
        let bytes = raw_manifest(raw.as_bytes());
        let mut r = Reader::new(&bytes[..]).unwrap();
        assert!(r.next().unwrap().is_ok());
        assert!(matches!(r.next(), Some(Err(ReadError::Stopped { line: 2, .. }))));
        assert!(r.next().is_none());
    }

    #[test]
    fn a_cut_frame_is_a_stop_never_a_quiet_end() {
        let entries: String = (0..20_000).map(|i| format!("{{\"path\":\"f{i:05}\",\"type\":\"file\",\"size\":{i},\"mtime_ns\":{i},\"mode\":\"644\",\"blake3\":\"{:x}\"}}\n", i * 7919)).collect();
        let mut h = header();
        h.files = 20_000;
        let mut raw = serde_json::to_vec(&h).unwrap();
        raw.push(b'\n');
        raw.extend_from_slice(entries.as_bytes());
        let mut bytes = zstd::encode_all(&raw[..], 1).unwrap();
        bytes.truncate(bytes.len() / 2);
        let r = Reader::new(&bytes[..]).unwrap();
        let results: Vec<_> = r.collect();
        let last = results.last().unwrap();
        assert!(matches!(last, Err(ReadError::Stopped { .. })), "{last:?}");
        assert!(results[..results.len() - 1].iter().all(Result::is_ok));
    }

    #[test]
    fn header_damage_is_typed() {
        assert!(matches!(
            Reader::new(&b"0123456789abcdefghij"[..]),
            Err(HeaderError::Unreadable(_))
        ));
        let junk = zstd::encode_all(&b"{\"not\":\"a header\"}\n"[..], 1).unwrap();
        assert!(matches!(Reader::new(&junk[..]), Err(HeaderError::Invalid(_))));
        let empty = zstd::encode_all(&b""[..], 1).unwrap();
        assert!(matches!(Reader::new(&empty[..]), Err(HeaderError::Empty)));
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
