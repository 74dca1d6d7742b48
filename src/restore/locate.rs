//! Where a snapshot's file is: the live key, its recorded version, or the
//! content area ([`crate::history`]), and fetching it from there.
//!
//! A backup copies what it replaces or deletes into the content area
//! (unless history is off, or a recorded version keeps it), but not a
//! metadata-only refresh: a file whose content did not change stays live,
//! though its ETag may change (a local store's ETag is made of size and
//! mtime; S3 gives a self-copied multipart object a plain MD5 ETag). So the
//! ETag a snapshot recorded does not say whether the live object still
//! holds the snapshot's content; the newest snapshot does: where it lists
//! the same path with the same type and blake3, the live object holds that
//! content (or a later run replaced it, and then preserved it first).
//!
//! The restore reads the newest readable snapshot's manifest beside the
//! one it restores ([`Newest`]), both in path order, one entry at a time:
//! no request per file and no set held (memory does not grow with the
//! tree). Each entry gets an [`Origin`]: the live key first when the newest
//! snapshot holds the same content there (or a version is recorded), the
//! content area first otherwise. The other place is tried when the first
//! does not hold the content (missing, another size, another blake3), so a
//! hint that is wrong (a run that crashed after preserving and replacing
//! an object, a hand-made change) costs a request, never a file.
//!
//! A file found in neither place is unrecoverable, and its message says
//! where it was looked for ([`FetchError::NotKept`]). Snapshots written
//! before history existed (format 1) and buckets backed up with
//! `--history off` only (neither the snapshot's header nor the newest
//! one's names a mode that copies) never look in the content area: they
//! restore exactly as before ([`Origin::LiveOnly`]).

use std::fs::File;

use crate::history::{self, HistoryMode};
use crate::manifest::{Entry, Header, ReadError, Reader};
use crate::restore::fetch::{Downloaded, FetchError, Fetcher};
use crate::restore::source::Item;
use crate::snapshots::{self, Snapshot, SnapshotError};
use crate::store::ObjectStore;

/// Where a file of a snapshot is looked for, in order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Origin {
    /// The live key (or the recorded version) only: a listing, a snapshot
    /// of a bucket without history, an entry without a blake3.
    #[default]
    LiveOnly,
    /// The live key (or the recorded version) first, then the content area.
    LiveFirst,
    /// The content area first, then the live key.
    ContentFirst,
}

/// Whether a manifest written under `mode` may have content preserved for
/// it (format 1 manifests have no mode, and `off` copies nothing).
pub fn keeps_history(mode: Option<HistoryMode>) -> bool {
    mode.is_some_and(|m| m != HistoryMode::Off)
}

/// Whether the content area is looked in at all for a snapshot whose
/// header is `snapshot`, given the newest readable snapshot's header
/// (`None` when it is the one restored): a run after the snapshot may have
/// preserved its content, so either one keeping history is enough.
pub fn uses_content_area(snapshot: &Header, newest: Option<&Header>) -> bool {
    keeps_history(snapshot.history) || newest.is_some_and(|h| keeps_history(h.history))
}

/// The newest snapshot's manifest, read beside the restored one in path
/// order (both are sorted by path, as bytes), one entry ahead at most.
pub struct Newest {
    /// `None` once read to its end (or broken off).
    reader: Option<Reader<File>>,
    ahead: Option<Entry>,
    /// It broke off: what it would list from there is unknown.
    broken: bool,
}

impl Newest {
    /// Walks `reader` (the newest readable snapshot's manifest, header read).
    pub fn new(reader: Reader<File>) -> Self {
        Self {
            reader: Some(reader),
            ahead: None,
            broken: false,
        }
    }

    /// The newest snapshot's entry for `path`, if it lists one; `path`
    /// must not come before an earlier call's. A damaged line is passed
    /// over; a manifest that broke off answers `None` from there on.
    pub fn entry_for(&mut self, path: &str) -> Option<&Entry> {
        loop {
            if let Some(e) = &self.ahead
                && e.path.as_str() >= path
            {
                break;
            }
            self.ahead = None;
            match self.reader.as_mut()?.next() {
                Some(Ok(e)) => self.ahead = Some(e),
                Some(Err(ReadError::Line { .. })) => {}
                Some(Err(ReadError::Stopped { .. })) => {
                    (self.reader, self.broken) = (None, true);
                    return None;
                }
                None => {
                    self.reader = None;
                    return None;
                }
            }
        }
        self.ahead.as_ref().filter(|e| e.path == path)
    }

    /// Whether it broke off, so that what it lists from there is unknown.
    pub fn broken(&self) -> bool {
        self.broken
    }

    /// Whether the newest snapshot lists `entry`'s path with the same type
    /// and content (so the live object holds it); `None` when that cannot
    /// be told (the newest manifest broke off before it).
    pub fn holds(&mut self, entry: &Entry) -> Option<bool> {
        let same = self
            .entry_for(&entry.path)
            .is_some_and(|n| n.kind == entry.kind && n.blake3 == entry.blake3);
        (same || !self.broken).then_some(same)
    }
}

/// The manifest of the newest readable snapshot after the one named `id`
/// (damaged ones passed over without a word: this is a hint only), or
/// `None` when `id` is the newest readable one.
///
/// # Errors
/// [`SnapshotError::Store`] when the store fails.
pub async fn newest_after(
    store: &dyn ObjectStore,
    all: &[Snapshot],
    id: &str,
    target: &str,
) -> Result<Option<Reader<std::fs::File>>, SnapshotError> {
    for newer in all.iter().rev().take_while(|s| s.id != id) {
        match snapshots::open(store, all, &newer.id, target).await {
            Ok(opened) => return Ok(Some(opened.reader)),
            Err(SnapshotError::Store(e)) => return Err(SnapshotError::Store(e)),
            Err(_) => {}
        }
    }
    Ok(None)
}

/// Where to look for `entry` of a snapshot: `history` says whether the
/// content area is in use ([`uses_content_area`]); `newest` is the newest
/// snapshot's manifest, `None` when the snapshot is the newest itself.
pub fn origin(entry: &Entry, history: bool, newest: Option<&mut Newest>) -> Origin {
    if !history || entry.blake3.is_empty() || entry.kind == "dir" {
        return Origin::LiveOnly;
    }
    if entry.version_id.is_some() {
        return Origin::LiveFirst;
    }
    match newest.and_then(|n| n.holds(entry)) {
        Some(false) => Origin::ContentFirst,
        Some(true) | None => Origin::LiveFirst,
    }
}

/// Whether a failed download shows the place does not hold the content
/// (so the other place is worth asking), as opposed to a failure that
/// says nothing about it (the network, access, a local error).
fn not_there(e: &FetchError) -> bool {
    matches!(
        e,
        FetchError::Missing(_)
            | FetchError::Changed(_)
            | FetchError::Hash { .. }
            | FetchError::Size { .. }
            | FetchError::Store(crate::store::StoreError::NotFound(_))
    )
}

/// Empties the download's file (if any) before another place is tried.
fn empty(file: Option<&File>) -> Result<(), FetchError> {
    match file {
        Some(file) => file.set_len(0).map_err(|cause| FetchError::Download {
            what: "emptying the download",
            cause,
        }),
        None => Ok(()),
    }
}

/// What the live key (or version) was found to hold, for the message of
/// a file found nowhere (the error's own words, less "unrecoverable").
pub(crate) fn live_state(e: &FetchError) -> String {
    match e {
        FetchError::Missing(_) | FetchError::Store(crate::store::StoreError::NotFound(_)) => {
            "missing from the bucket".into()
        }
        FetchError::Changed(_) => "changed in the bucket since this snapshot".into(),
        FetchError::Hash { expected, actual, .. } => FetchError::Hash {
            expected: expected.clone(),
            actual: actual.clone(),
            unrecoverable: false,
        }
        .to_string(),
        other => other.to_string(),
    }
}

impl Fetcher {
    /// Downloads `item` (of the snapshot under `prefix`, live at `key`)
    /// from where its [`Item::origin`] says, the other place next when the
    /// first does not hold it; into `file` when given (emptied between
    /// tries), else hashed and dropped ([`Fetcher::download`]).
    ///
    /// # Errors
    /// [`FetchError::NotKept`] when neither place holds the content;
    /// otherwise as [`Fetcher::download`].
    // Each download is boxed: inlined, the futures of its three tries made
    // this one's state large, and moving it (once per file, into the
    // restore's stream) copied 23 KB a file (cachegrind: +40 % instructions
    // for a local restore, all of it in memcpy).
    pub async fn download_located(
        &self,
        prefix: &str,
        key: &str,
        item: &Item,
        file: Option<&File>,
    ) -> Result<Downloaded, FetchError> {
        let Some(blake3) = item.blake3.as_deref().filter(|_| item.origin != Origin::LiveOnly) else {
            return Box::pin(self.download_live(key, item, file)).await;
        };
        let content_key = history::content_key(prefix, blake3);
        // Made only when the content area is asked (most files are live).
        let content_item = || Item {
            version_id: None,
            etag: None,
            ..item.clone()
        };
        let live_first = item.origin == Origin::LiveFirst;
        let first = match live_first {
            true => Box::pin(self.download_live(key, item, file)).await,
            false => Box::pin(self.download(&content_key, &content_item(), file)).await,
        };
        let first_err = match first {
            Err(e) if not_there(&e) => e,
            done => return done,
        };
        empty(file)?;
        let second = match live_first {
            true => Box::pin(self.download(&content_key, &content_item(), file)).await,
            false => Box::pin(self.download_live(key, item, file)).await,
        };
        match second {
            Err(e) if not_there(&e) => {
                let live = if live_first { first_err } else { e };
                Err(FetchError::NotKept {
                    live: Box::new(live),
                    content_key,
                })
            }
            done => done,
        }
    }
}

impl Fetcher {
    /// Downloads `item` from its key: its recorded version, and when that
    /// version is gone (expired by a lifecycle rule, removed), the key's
    /// current object, which may hold the same content (a re-dated file,
    /// one deleted and made again, content that came back): its blake3
    /// decides, so nothing else is ever accepted.
    ///
    /// # Errors
    /// As [`Fetcher::download`] for the version when the key's object does
    /// not hold the content either.
    async fn download_live(
        &self,
        key: &str,
        item: &Item,
        file: Option<&File>,
    ) -> Result<Downloaded, FetchError> {
        let versioned = Box::pin(self.download(key, item, file)).await;
        let err = match versioned {
            Err(e) if item.version_id.is_some() && item.blake3.is_some() && not_there(&e) => e,
            done => return done,
        };
        empty(file)?;
        let current = Item {
            version_id: None,
            etag: None,
            ..item.clone()
        };
        match Box::pin(self.download(key, &current, file)).await {
            Err(e) if not_there(&e) => Err(err),
            done => done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: &str, blake3: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: kind.into(),
            size: 1,
            mtime_ns: 0,
            mode: "644".into(),
            blake3: blake3.into(),
            etag: String::new(),
            version_id: None,
            checksum: None,
        }
    }

    #[test]
    fn no_history_means_the_live_key_only_and_a_version_is_asked_for_first() {
        let file = entry("a", "file", "h");
        assert_eq!(origin(&file, false, None), Origin::LiveOnly);
        assert_eq!(origin(&file, true, None), Origin::LiveFirst);
        assert_eq!(origin(&entry("a", "file", ""), true, None), Origin::LiveOnly);
        let versioned = Entry {
            version_id: Some("v".into()),
            ..file
        };
        assert_eq!(origin(&versioned, true, None), Origin::LiveFirst);
    }

    fn header(history: Option<HistoryMode>, files: u64) -> Header {
        Header {
            format: 2,
            tool: String::new(),
            source: String::new(),
            target: String::new(),
            host: String::new(),
            created: String::new(),
            run_id: String::new(),
            files,
            dirs: 0,
            bytes: 0,
            history,
            tags: Vec::new(),
            lock: None,
        }
    }

    /// A newest snapshot listing `entries` (in path order), opened for reading.
    fn newest(entries: &[Entry]) -> Newest {
        let mut file = tempfile::tempfile().unwrap();
        let h = header(Some(HistoryMode::Auto), entries.len() as u64);
        let mut w = crate::manifest::Writer::new(&mut file, &h).unwrap();
        for e in entries {
            w.push(e).unwrap();
        }
        w.finish().unwrap();
        use std::io::Seek;
        file.rewind().unwrap();
        Newest::new(Reader::new(file).unwrap())
    }

    #[test]
    fn the_newest_snapshot_says_where_each_file_is_looked_for_first() {
        let mut n = newest(&[
            entry("a", "file", "h1"),
            entry("b", "file", "h2"),
            entry("c", "symlink", "h3"),
            entry("e", "file", "h5"),
        ]);
        let mut at = |e: Entry| origin(&e, true, Some(&mut n));
        // Same content: the key. Other content, another type, not listed,
        // or past the newest's last entry: the content area.
        assert_eq!(at(entry("a", "file", "h1")), Origin::LiveFirst);
        assert_eq!(at(entry("b", "file", "old")), Origin::ContentFirst);
        assert_eq!(at(entry("c", "file", "h3")), Origin::ContentFirst);
        assert_eq!(at(entry("d", "file", "h4")), Origin::ContentFirst);
        assert_eq!(at(entry("e", "file", "h5")), Origin::LiveFirst);
        assert_eq!(at(entry("f", "file", "h6")), Origin::ContentFirst);
    }

    #[test]
    fn history_is_in_use_when_either_header_keeps_it() {
        let off = header(Some(HistoryMode::Off), 0);
        let old = header(None, 0);
        let auto = header(Some(HistoryMode::Auto), 0);
        assert!(!uses_content_area(&old, None));
        assert!(!uses_content_area(&off, Some(&old)));
        assert!(uses_content_area(&old, Some(&auto)));
        assert!(uses_content_area(&auto, None));
    }
}
