//! Where a restore's entries come from: a snapshot's manifest (read on a
//! blocking thread, line by line) or, for trees s3backup never wrote or
//! when no manifest exists, a listing of the bucket. Either way entries
//! stream in through a bounded channel, in batches, never all at once, as
//! [`Item`]s: what the later stages (and `verify --deep`) know of an entry.

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::fs::scan::EntryKind;
use crate::manifest::{ReadError, Reader};
use crate::restore::locate::{self, Newest};
use crate::snapshots::{self, SnapshotError};
use crate::store::{ObjectStore, StoreError};

/// One thing to restore (or verify), from a manifest line or a listed object.
#[derive(Debug, Clone)]
pub struct Item {
    /// Path relative to DEST (unchecked until handled).
    pub path: String,
    /// File, symlink or directory.
    pub kind: EntryKind,
    /// Size in bytes, when known.
    pub size: u64,
    /// mtime to set (nanoseconds since the epoch), when known before fetching.
    pub mtime_ns: Option<i64>,
    /// Mode to set, when known before fetching.
    pub mode: Option<u32>,
    /// Expected blake3 (hex), when known before fetching.
    pub blake3: Option<String>,
    /// ETag the object had when the snapshot was taken.
    pub etag: Option<String>,
    /// Version to fetch.
    pub version_id: Option<String>,
    /// Whether this came from a manifest (so a changed object is unrecoverable).
    pub from_manifest: bool,
    /// Where it is looked for: the live key, the content area, in which order.
    pub origin: crate::restore::locate::Origin,
}

impl Item {
    /// The item a manifest entry of `kind` describes.
    pub fn from_manifest(e: crate::manifest::Entry, kind: EntryKind) -> Self {
        Item {
            kind,
            size: e.size,
            mtime_ns: Some(e.mtime_ns),
            mode: u32::from_str_radix(&e.mode, 8).ok(),
            blake3: (!e.blake3.is_empty()).then_some(e.blake3),
            etag: (!e.etag.is_empty()).then_some(e.etag),
            version_id: crate::store::kept_version(e.version_id.as_deref()).map(str::to_string),
            from_manifest: true,
            origin: Default::default(),
            path: e.path,
        }
    }
}

/// Entries (or the reasons they could not be read) passed from the reader
/// in batches: one per entry would wake the reading thread once per file.
pub type Batch = Vec<Result<Item, String>>;

/// Entries per batch from the manifest reader.
const MANIFEST_BATCH: usize = 256;

/// Batches in flight between the reader and the restore.
const CHANNEL_BATCHES: usize = 16;

/// An opened source: its entries arrive on `entries`.
pub struct Source {
    /// The snapshot ID, or "listing".
    pub name: String,
    /// Whether the restore fell back to a listing because no manifest
    /// exists (the user is told once the listing finds something).
    pub listing_notice: bool,
    /// The entries, in batches; closed when the source is read to its end.
    pub entries: mpsc::Receiver<Batch>,
    /// How the source ended, known once `entries` is closed.
    pub end: End,
}

/// The manifest reader (none for a listing), whose result says whether the
/// manifest broke off early.
pub struct End(Option<JoinHandle<Option<ReadError>>>);

/// Why a source could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Listing the snapshots failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The snapshot could not be found or read.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// Opens the entries to restore under `prefix`: a listing when
/// `from_listing`, or when there is no snapshot at all and none was
/// asked for; otherwise the snapshot `id` (`latest` when `None`).
/// `target` is the target's text, for messages.
///
/// # Errors
/// [`SourceError::Store`] when the snapshots cannot be listed,
/// [`SourceError::Snapshot`] when the snapshot is unknown or unreadable.
pub async fn open(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    from_listing: bool,
    id: Option<&str>,
    target: &str,
) -> Result<Source, SourceError> {
    let (tx, entries) = mpsc::channel::<Batch>(CHANNEL_BATCHES);
    let all = if from_listing {
        Vec::new()
    } else {
        snapshots::list(&**store, prefix).await?
    };
    if from_listing || (all.is_empty() && id.is_none()) {
        spawn_listing(store.clone(), prefix.to_string(), tx);
        return Ok(Source {
            name: "listing".into(),
            // Said once the listing finds something (an empty prefix is an error instead).
            listing_notice: !from_listing,
            entries,
            end: End(None),
        });
    }
    let opened = snapshots::open(&**store, &all, id.unwrap_or("latest"), target).await?;
    let name = opened.snapshot.id.clone();
    let newest = locate::newest_after(&**store, &all, &name, target).await?;
    let history = locate::uses_content_area(&opened.reader.header, newest.as_ref().map(|r| &r.header))
        || crate::history::area_in_use(&**store, prefix).await?;
    let newest = newest.filter(|_| history).map(Newest::new);
    Ok(Source {
        end: End(Some(spawn_manifest(
            opened.reader,
            name.clone(),
            (history, newest),
            tx,
        ))),
        name,
        listing_notice: false,
        entries,
    })
}

impl End {
    /// Once the entries channel has closed: why the manifest of snapshot
    /// `id` broke off after its header, if it did (never for a listing).
    pub async fn stopped(self, id: &str) -> Option<SnapshotError> {
        let cause = match self.0 {
            Some(reader) => reader.await.unwrap_or_else(|e| {
                Some(ReadError::Stopped {
                    line: 0,
                    reason: format!("the manifest reader failed: {e}"),
                })
            }),
            None => None,
        }?;
        Some(SnapshotError::Stopped {
            id: id.to_string(),
            cause,
        })
    }
}

/// Feeds manifest entries into the channel from a blocking thread. A bad
/// line is one failure and the read goes on; the thread's result is the
/// [`ReadError::Stopped`](ReadError::Stopped) that ended
/// the read early, if one did.
/// Each entry gets its [`Origin`](locate::Origin) from `history` (whether
/// the content area is in use) and the newest snapshot's manifest, read
/// alongside ([`Newest`]).
fn spawn_manifest(
    reader: Reader<std::fs::File>,
    snapshot: String,
    (history, mut newest): (bool, Option<Newest>),
    tx: mpsc::Sender<Batch>,
) -> JoinHandle<Option<ReadError>> {
    tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(MANIFEST_BATCH);
        let mut stopped = None;
        for entry in reader {
            let entry = match entry {
                Err(e @ ReadError::Stopped { .. }) => {
                    stopped = Some(e);
                    break;
                }
                other => other,
            };
            let item = entry
                .map_err(|e| format!("snapshot {snapshot}: {e}; that entry was not restored"))
                .and_then(|e| {
                    let Some(kind) = EntryKind::from_name(&e.kind) else {
                        return Err(format!("{}: unknown entry type '{}'", e.path, e.kind));
                    };
                    let origin = locate::origin(&e, history, newest.as_mut());
                    Ok(Item {
                        origin,
                        ..Item::from_manifest(e, kind)
                    })
                });
            batch.push(item);
            if batch.len() == MANIFEST_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(MANIFEST_BATCH));
                if tx.blocking_send(full).is_err() {
                    return None;
                }
            }
        }
        if !batch.is_empty() {
            let _ = tx.blocking_send(batch);
        }
        stopped
    })
}

/// Feeds listed objects into the channel, skipping folder placeholders and the tool's own area.
fn spawn_listing(store: Arc<dyn ObjectStore>, prefix: String, tx: mpsc::Sender<Batch>) {
    tokio::spawn(async move {
        let list_prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let mut objects = store.list(&list_prefix);
        while let Some(object) = objects.next().await {
            let item = match object {
                Err(e) => Err(format!("listing failed: {e}")),
                Ok(o) => {
                    let path = o.key[list_prefix.len()..].to_string();
                    if path.is_empty()
                        || path.ends_with('/')
                        || path == ".s3backup"
                        || path.starts_with(".s3backup/")
                    {
                        continue;
                    }
                    Ok(Item {
                        path,
                        kind: EntryKind::File,
                        size: o.size,
                        mtime_ns: None,
                        mode: None,
                        blake3: None,
                        etag: None,
                        version_id: None,
                        from_manifest: false,
                        origin: Default::default(),
                    })
                }
            };
            let stop = item.is_err();
            if tx.send(vec![item]).await.is_err() || stop {
                return;
            }
        }
    });
}
