//! Seeing the history: what changed between two snapshots ([`diff`],
//! `snapshots diff`), the tree of one ([`select::Paths`], `snapshots ls`)
//! and which snapshots hold paths matching patterns
//! ([`select::Patterns`], `snapshots find`).
//!
//! Everything here reads manifests as streams ([`Entries`]), never as
//! whole sets in memory: a manifest lists its entries sorted by path, so
//! two of them are compared side by side as a merge, and a selection is
//! decided entry by entry. Only `diff`'s rename candidates (files added
//! or removed whole) are held, since a rename pairs a path of one side
//! with any path of the other.
//!
//! A manifest line that cannot be read is skipped with a warning and
//! counted ([`Entries::bad_lines`]): what is shown then lacks it, and the
//! command says so by its exit code. A manifest that breaks off, or whose
//! entries are out of order (a merge would then pair the wrong paths), is
//! an error naming the snapshot.

pub mod diff;
pub mod select;

use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::manifest::{Entry, ReadError, Reader};
use crate::snapshots::SnapshotError;

/// Why a snapshot could not be browsed.
#[derive(Debug, thiserror::Error)]
pub enum BrowseError {
    /// The snapshot could not be found, opened or read to its end.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The manifest's entries are not sorted by path, as every manifest
    /// s3backup writes is: a damaged or hand-made one.
    #[error("snapshot {id} is damaged: its manifest lists '{path}' after '{previous}', out of path order")]
    Unsorted {
        /// The snapshot's ID.
        id: String,
        /// The entry out of order.
        path: String,
        /// The entry before it.
        previous: String,
    },
    /// The temporary file a diff keeps its changes in could not be written or read.
    #[error("temporary file of the diff: {0}")]
    Spool(#[source] std::io::Error),
}

/// One side of a change, or one entry as listed: what a manifest entry
/// says about a path, without where its object is. Sizes in bytes,
/// `mtime_ns` in nanoseconds since the epoch, `mode` octal text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// "file", "dir" or "symlink".
    #[serde(rename = "type")]
    pub kind: String,
    /// Bytes (0 for a directory).
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Permission bits, octal text ("644").
    pub mode: String,
    /// blake3 hex of the content (files and symlinks; absent for directories).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub blake3: String,
}

impl From<&Entry> for Node {
    fn from(e: &Entry) -> Self {
        Node {
            kind: e.kind.clone(),
            size: e.size,
            mtime_ns: e.mtime_ns,
            mode: e.mode.clone(),
            blake3: e.blake3.clone(),
        }
    }
}

impl Node {
    /// Whether this is a directory (which has no content of its own).
    pub fn is_dir(&self) -> bool {
        self.kind == "dir"
    }
}

/// A snapshot's entries as a stream of results: lines that cannot be read
/// are skipped (with a warning, counted in [`Entries::bad_lines`]); a
/// manifest that breaks off ([`SnapshotError::Stopped`]) or lists a path
/// out of order ([`BrowseError::Unsorted`]) ends the stream with that error.
pub struct Entries<R: Read> {
    reader: Reader<R>,
    id: String,
    previous: Option<String>,
    bad_lines: u64,
    done: bool,
}

impl<R: Read> Entries<R> {
    /// The entries of snapshot `id`, read from `reader` (header already read).
    pub fn new(id: &str, reader: Reader<R>) -> Self {
        Self {
            reader,
            id: id.to_string(),
            previous: None,
            bad_lines: 0,
            done: false,
        }
    }

    /// The snapshot's ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Lines skipped so far because they could not be read.
    pub fn bad_lines(&self) -> u64 {
        self.bad_lines
    }
}

impl<R: Read> Iterator for Entries<R> {
    type Item = Result<Entry, BrowseError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.reader.next()? {
                Ok(entry) => {
                    if let Some(previous) = self.previous.take()
                        && previous.as_bytes() >= entry.path.as_bytes()
                    {
                        self.done = true;
                        return Some(Err(BrowseError::Unsorted {
                            id: self.id.clone(),
                            path: entry.path,
                            previous,
                        }));
                    }
                    self.previous = Some(entry.path.clone());
                    return Some(Ok(entry));
                }
                Err(ReadError::Line { line, reason }) => {
                    self.bad_lines += 1;
                    tracing::warn!(
                        "snapshot {}: manifest line {line} cannot be read ({reason}); skipped",
                        self.id
                    );
                }
                Err(cause @ ReadError::Stopped { .. }) => {
                    self.done = true;
                    return Some(Err(SnapshotError::Stopped {
                        id: self.id.clone(),
                        cause,
                    }
                    .into()));
                }
            }
        }
        None
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::manifest::{Header, Writer};

    /// A file entry (`kind` "file", "dir" or "symlink"), content named by `content`.
    pub(crate) fn entry(path: &str, kind: &str, size: u64, content: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: kind.into(),
            size,
            mtime_ns: 1_700_000_000_000_000_000,
            mode: if kind == "dir" { "755" } else { "644" }.into(),
            blake3: if kind == "dir" {
                String::new()
            } else {
                blake3::hash(content.as_bytes()).to_hex().to_string()
            },
            etag: String::new(),
            version_id: None,
            checksum: None,
        }
    }

    /// A manifest of `entries` (in the order given), as bytes.
    pub(crate) fn manifest(entries: &[Entry]) -> Vec<u8> {
        let header = Header {
            format: crate::manifest::FORMAT,
            tool: "t".into(),
            source: "/s".into(),
            target: "t".into(),
            host: "h".into(),
            created: "2026-01-01T00:00:00Z".into(),
            run_id: "r".into(),
            files: entries.iter().filter(|e| e.kind != "dir").count() as u64,
            dirs: entries.iter().filter(|e| e.kind == "dir").count() as u64,
            bytes: 0,
            history: None,
            tags: Vec::new(),
            lock: None,
        };
        let mut w = Writer::new(Vec::new(), &header).unwrap();
        for e in entries {
            w.push(e).unwrap();
        }
        w.finish().unwrap()
    }

    /// [`Entries`] over a manifest of `entries`.
    pub(crate) fn entries(id: &str, list: &[Entry]) -> Entries<std::io::Cursor<Vec<u8>>> {
        Entries::new(id, Reader::new(std::io::Cursor::new(manifest(list))).unwrap())
    }

    #[test]
    fn entries_out_of_order_end_the_stream_naming_the_snapshot() {
        let list = [entry("b", "file", 1, "b"), entry("a", "file", 1, "a")];
        let mut it = entries("S1", &list);
        assert_eq!(it.next().unwrap().unwrap().path, "b");
        let err = it.next().unwrap().unwrap_err().to_string();
        assert!(
            err.contains("snapshot S1 is damaged") && err.contains("'a' after 'b'"),
            "{err}"
        );
        assert!(it.next().is_none());
        let twice = [entry("a", "file", 1, "a"), entry("a", "file", 1, "a")];
        assert!(
            entries("S", &twice).nth(1).unwrap().is_err(),
            "a path listed twice"
        );
    }
}
