//! Finding snapshots: every manifest under `PREFIX/.s3backup/manifests/` is
//! one, named by its file name without the suffix.
//!
//! A snapshot ID may be given whole, as the run ID alone, or as any
//! unambiguous prefix of the name (like a git hash).
//!
//! Anyone who can write to the bucket can leave a damaged manifest, or an
//! object named like a newer one, so no command trusts a name alone: a
//! snapshot is *readable* when its header (line 1) decodes ([`check`];
//! one ranged GET, not the whole manifest), and *damaged* otherwise, with
//! the reason. `latest` is the newest readable snapshot ([`open`] warns
//! once, naming the damaged newer ones it passed over); a damaged snapshot
//! asked for by ID is an error naming it. Retention ([`crate::retention`])
//! counts readable snapshots only and never removes the newest of them;
//! damaged ones are left alone unless named (as restic's `forget` leaves what its
//! policy cannot judge). Damage after the header is found by whoever reads
//! on ([`crate::manifest::ReadError`]).

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::manifest::{self, Header};
use crate::store::{GetRequest, ObjectStore, StoreError, join_key};

/// One snapshot as listed.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// The ID users type: the manifest's file name without `.jsonl.zst`.
    pub id: String,
    /// The manifest's full key.
    pub key: String,
    /// Size of the manifest object.
    #[serde(skip)]
    pub manifest_size: u64,
}

/// Why a snapshot could not be found or read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No snapshot has that ID.
    #[error("no snapshot '{id}' in {target}: run 's3backup snapshots {target}' to see the valid IDs")]
    Unknown {
        /// What the user asked for.
        id: String,
        /// The target text.
        target: String,
    },
    /// More than one snapshot starts with that ID.
    #[error("snapshot ID '{id}' is ambiguous ({count} match): give more of it")]
    Ambiguous {
        /// What the user asked for.
        id: String,
        /// How many matched.
        count: usize,
    },
    /// The manifest could not be fetched into a temporary file.
    #[error("manifest '{key}' is unreadable: {reason}")]
    Corrupt {
        /// Its key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The snapshot asked for by ID has a manifest whose header cannot be read.
    #[error("snapshot {id} is damaged: manifest '{key}': {reason}")]
    Damaged {
        /// The snapshot's ID.
        id: String,
        /// Its manifest's key.
        key: String,
        /// Why it cannot be read.
        reason: String,
    },
    /// `latest` was asked for and every snapshot is damaged.
    #[error(
        "no readable snapshot in {target} ({count} damaged); the newest, {id}, has manifest '{key}': {reason} (see 's3backup snapshots {target}')"
    )]
    NoneReadable {
        /// The target text.
        target: String,
        /// How many snapshots there are.
        count: usize,
        /// The newest one's ID.
        id: String,
        /// Its manifest's key.
        key: String,
        /// Why it cannot be read.
        reason: String,
    },
    /// A manifest broke off after its header: what follows cannot be read.
    #[error("snapshot {id}: {cause}")]
    Stopped {
        /// The snapshot's ID.
        id: String,
        /// Where and why the read stopped ([`manifest::ReadError::Stopped`]).
        cause: manifest::ReadError,
    },
}

/// Whether a snapshot's manifest can be read, judged by its header line.
#[derive(Debug, Clone)]
pub enum Health {
    /// The header decodes; entries are read (and checked) by whoever needs them.
    Readable(Header),
    /// The header cannot be read: not zstd, not a header, cut inside line 1,
    /// or a format newer than this build. The text says which.
    Damaged(String),
}

/// A damaged snapshot, as listed or passed over.
#[derive(Debug, Clone, Serialize)]
pub struct Damage {
    /// The snapshot's ID.
    pub id: String,
    /// Why its manifest cannot be read.
    #[serde(rename = "damage")]
    pub reason: String,
}

/// The snapshot a command works on, opened for reading, and the damaged
/// newer ones passed over to find it (empty unless `latest` was asked for
/// and the newest is damaged).
pub struct Opened<'a> {
    /// The snapshot.
    pub snapshot: &'a Snapshot,
    /// Its manifest, header read, entries next.
    pub reader: manifest::Reader<std::fs::File>,
    /// Damaged snapshots newer than it, newest first.
    pub passed_over: Vec<Damage>,
}

/// The manifest directory's key prefix for a target prefix.
pub(crate) fn manifest_prefix(prefix: &str) -> String {
    join_key(prefix, &format!("{}/", manifest::DIR))
}

/// All snapshots under `prefix`, oldest first, readable or not.
///
/// # Errors
/// The store's error from the listing.
pub(crate) async fn list(store: &dyn ObjectStore, prefix: &str) -> Result<Vec<Snapshot>, StoreError> {
    let dir = manifest_prefix(prefix);
    let mut snapshots: Vec<Snapshot> = store
        .list(&dir)
        .try_filter_map(|o| {
            let name = o.key[dir.len()..].to_string();
            let id = name.strip_suffix(manifest::SUFFIX).map(str::to_string);
            let snapshot = id.filter(|id| !id.contains('/')).map(|id| Snapshot {
                id,
                key: o.key,
                manifest_size: o.size,
            });
            futures::future::ready(Ok(snapshot))
        })
        .try_collect()
        .await?;
    snapshots.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(snapshots)
}

/// Picks a snapshot by ID (a full ID, a run ID or a unique prefix) from
/// the names alone; `latest` here is the newest name, readable or not
/// ([`open`] is what commands use).
///
/// # Errors
/// [`SnapshotError::Unknown`] when no snapshot matches,
/// [`SnapshotError::Ambiguous`] when a prefix matches several.
pub(crate) fn resolve<'a>(
    snapshots: &'a [Snapshot],
    id: &str,
    target: &str,
) -> Result<&'a Snapshot, SnapshotError> {
    let unknown = || SnapshotError::Unknown {
        id: id.to_string(),
        target: target.to_string(),
    };
    if id == "latest" {
        return snapshots.last().ok_or_else(unknown);
    }
    if let Some(exact) = snapshots
        .iter()
        .find(|s| s.id == id || s.id.split_once('-').is_some_and(|(_, run)| run == id))
    {
        return Ok(exact);
    }
    let matches: Vec<&Snapshot> = snapshots.iter().filter(|s| s.id.starts_with(id)).collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(unknown()),
        many => Err(SnapshotError::Ambiguous {
            id: id.to_string(),
            count: many.len(),
        }),
    }
}

/// When a snapshot was taken, from the UTC time that starts its ID.
pub fn created(snapshot: &Snapshot) -> Option<chrono::DateTime<chrono::Utc>> {
    let stamp = snapshot.id.split('-').next()?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

/// Reads a snapshot's header to tell whether it is readable. Only a store
/// failure is an error: what the bytes hold is the answer.
///
/// # Errors
/// The store's error from fetching the header (a missing object included).
pub async fn check(store: &dyn ObjectStore, snapshot: &Snapshot) -> Result<Health, StoreError> {
    match read_header(store, snapshot).await {
        Ok(header) => Ok(Health::Readable(header)),
        Err(SnapshotError::Store(e)) => Err(e),
        Err(e) => Ok(Health::Damaged(match e {
            SnapshotError::Corrupt { reason, .. } => reason,
            other => other.to_string(),
        })),
    }
}

/// Headers read at once by [`check_all`].
const CHECKS_IN_FLIGHT: usize = 8;

/// [`check`] for every snapshot, a few at a time, in the order given.
///
/// # Errors
/// The first store error, as [`check`].
pub(crate) async fn check_all(
    store: &dyn ObjectStore,
    snapshots: &[Snapshot],
) -> Result<Vec<Health>, StoreError> {
    futures::stream::iter(snapshots)
        .map(|s| check(store, s))
        .buffered(CHECKS_IN_FLIGHT)
        .try_collect()
        .await
}

/// Picks the snapshot `id` names and opens its manifest. `latest` is the
/// newest readable one: damaged newer ones are passed over with one
/// warning naming them (and listed in [`Opened::passed_over`]).
///
/// # Errors
/// [`SnapshotError::Unknown`]/[`SnapshotError::Ambiguous`] for an ID that
/// names none or several, [`SnapshotError::Damaged`] for a damaged snapshot
/// named by ID, [`SnapshotError::NoneReadable`] when every one is damaged,
/// [`SnapshotError::Store`] when the store fails.
pub async fn open<'a>(
    store: &dyn ObjectStore,
    snapshots: &'a [Snapshot],
    id: &str,
    target: &str,
) -> Result<Opened<'a>, SnapshotError> {
    if id != "latest" {
        let snapshot = resolve(snapshots, id, target)?;
        return Ok(Opened {
            snapshot,
            reader: open_checked(store, snapshot).await?,
            passed_over: Vec::new(),
        });
    }
    let mut passed_over = Vec::new();
    for snapshot in snapshots.iter().rev() {
        match open_checked(store, snapshot).await {
            Ok(reader) => {
                if !passed_over.is_empty() {
                    tracing::warn!(
                        "{}; 'latest' is {}, the newest readable snapshot",
                        describe_damage(&passed_over),
                        snapshot.id
                    );
                }
                return Ok(Opened {
                    snapshot,
                    reader,
                    passed_over,
                });
            }
            Err(SnapshotError::Damaged { id, reason, .. }) => passed_over.push(Damage { id, reason }),
            Err(e) => return Err(e),
        }
    }
    let (Some(newest), Some(first)) = (snapshots.last(), passed_over.into_iter().next()) else {
        return Err(SnapshotError::Unknown {
            id: id.to_string(),
            target: target.to_string(),
        });
    };
    Err(SnapshotError::NoneReadable {
        target: target.to_string(),
        count: snapshots.len(),
        id: newest.id.clone(),
        key: newest.key.clone(),
        reason: first.reason,
    })
}

/// Opens a snapshot's manifest, a damaged one being [`SnapshotError::Damaged`].
/// A manifest larger than a header read has its header checked first, so a
/// huge stray object is not downloaded to be found damaged; a small one is
/// fetched once.
async fn open_checked(
    store: &dyn ObjectStore,
    snapshot: &Snapshot,
) -> Result<manifest::Reader<std::fs::File>, SnapshotError> {
    if snapshot.manifest_size > HEAD_BYTES
        && let Health::Damaged(reason) = check(store, snapshot).await?
    {
        return Err(SnapshotError::Damaged {
            id: snapshot.id.clone(),
            key: snapshot.key.clone(),
            reason,
        });
    }
    open_manifest(store, snapshot).await
}

/// "damaged snapshot A (why)" or "2 damaged snapshots: A (why), B (why)", for one-line messages.
pub(crate) fn describe_damage(damaged: &[Damage]) -> String {
    let each: Vec<String> = damaged
        .iter()
        .map(|d| format!("{} ({})", d.id, d.reason))
        .collect();
    match each.as_slice() {
        [one] => format!("damaged snapshot {one}"),
        many => format!("{} damaged snapshots: {}", many.len(), many.join(", ")),
    }
}

/// Bytes of a manifest fetched first to read its header.
const HEAD_BYTES: u64 = 64 * 1024;

/// Reads just a manifest's header line: its first 64 KiB, then (when the
/// header runs past them) at most 2 MiB, room for the longest line a
/// reader accepts ([`manifest::MAX_LINE`]) however it compressed, so a
/// huge stray object is never fetched whole.
///
/// # Errors
/// [`SnapshotError::Store`] when the store fails;
/// [`SnapshotError::Corrupt`] when the bytes hold no readable header.
pub(crate) async fn read_header(
    store: &dyn ObjectStore,
    snapshot: &Snapshot,
) -> Result<Header, SnapshotError> {
    const HEAD_MAX: u64 = 2 * manifest::MAX_LINE as u64;
    let corrupt = |reason: String| SnapshotError::Corrupt {
        key: snapshot.key.clone(),
        reason,
    };
    let range = |len: u64| (snapshot.manifest_size > len).then_some((0, len));
    let first = fetch_bytes(store, &snapshot.key, range(HEAD_BYTES)).await?;
    let header = match manifest::Reader::new(&first[..]) {
        Ok(reader) => reader.header,
        Err(_) if range(HEAD_BYTES).is_some() => {
            let more = fetch_bytes(store, &snapshot.key, range(HEAD_MAX)).await?;
            manifest::Reader::new(&more[..])
                .map(|r| r.header)
                .map_err(|e| corrupt(e.to_string()))?
        }
        Err(e) => return Err(corrupt(e.to_string())),
    };
    check_name(&snapshot.key, &header).map_err(corrupt)?;
    Ok(header)
}

/// A manifest's name is made from its header's `created` and `run_id`
/// ([`manifest::file_name`]), and snapshots are ordered by name: a readable
/// manifest under another name (a copy, a stray, a machine whose clock
/// ran ahead renamed by hand) would pass for a newer snapshot than it is,
/// and `forget --keep-last` would keep it over the real ones. Such a
/// manifest counts as damaged, with why.
fn check_name(key: &str, header: &Header) -> Result<(), String> {
    let name = key.rsplit('/').next().unwrap_or(key);
    let expected = chrono::DateTime::parse_from_rfc3339(&header.created)
        .map(|created| manifest::file_name(created.with_timezone(&chrono::Utc), &header.run_id))
        .map_err(|e| format!("header's created time '{}' is not valid: {e}", header.created))?;
    if name == expected {
        Ok(())
    } else {
        Err(format!(
            "its name does not match its header, which says it was written as '{expected}' (a copy or a stray under another name)"
        ))
    }
}

/// The object's bytes (or a range of them), fetched again from the start
/// when the body is cut short: a cut body must not pass for a damaged manifest.
async fn fetch_bytes(
    store: &dyn ObjectStore,
    key: &str,
    range: Option<(u64, u64)>,
) -> Result<Vec<u8>, StoreError> {
    crate::store::retry::retry_n(crate::store::retry::DOWNLOAD_ATTEMPTS, key, || async move {
        let (_, chunks) = store
            .get(
                key,
                GetRequest {
                    range,
                    ..Default::default()
                },
            )
            .await?;
        let parts: Vec<bytes::Bytes> = chunks.try_collect().await?;
        Ok(parts.concat())
    })
    .await
}

/// Downloads a whole manifest to a temporary file and opens it for streaming.
///
/// # Errors
/// [`SnapshotError::Store`] when the download fails (a body cut short is
/// fetched again first); [`SnapshotError::Corrupt`] when the temporary
/// file cannot be made or read; [`SnapshotError::Damaged`] when the
/// manifest's header is unreadable or does not match its name.
pub(crate) async fn open_manifest(
    store: &dyn ObjectStore,
    snapshot: &Snapshot,
) -> Result<manifest::Reader<std::fs::File>, SnapshotError> {
    use std::io::{Seek, Write};
    let corrupt = |reason: String| SnapshotError::Corrupt {
        key: snapshot.key.clone(),
        reason,
    };
    let mut file = tempfile::tempfile().map_err(|e| corrupt(e.to_string()))?;
    // A body cut short is fetched again from the start (the SDK retries a
    // request only until its headers arrive).
    let local = |e: std::io::Error| crate::store::StoreError::Fatal(format!("temporary file: {e}"));
    crate::store::retry::retry_n(crate::store::retry::DOWNLOAD_ATTEMPTS, &snapshot.key, || {
        let mut out = &file;
        async move {
            out.set_len(0).map_err(local)?;
            out.rewind().map_err(local)?;
            let (_, mut chunks) = store.get(&snapshot.key, GetRequest::default()).await?;
            while let Some(chunk) = chunks.try_next().await? {
                out.write_all(&chunk).map_err(local)?;
            }
            Ok(())
        }
    })
    .await?;
    file.rewind().map_err(|e| corrupt(e.to_string()))?;
    let damaged = |reason: String| SnapshotError::Damaged {
        id: snapshot.id.clone(),
        key: snapshot.key.clone(),
        reason,
    };
    let reader = manifest::Reader::new(file).map_err(|e| damaged(e.to_string()))?;
    check_name(&snapshot.key, &reader.header).map_err(damaged)?;
    Ok(reader)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snaps(ids: &[&str]) -> Vec<Snapshot> {
        ids.iter()
            .map(|id| Snapshot {
                id: id.to_string(),
                key: format!("p/.s3backup/manifests/{id}.jsonl.zst"),
                manifest_size: 1,
            })
            .collect()
    }

    #[test]
    fn resolves_latest_full_run_and_prefix_ids() {
        let s = snaps(&[
            "20260101T000000Z-aaa1",
            "20260102T000000Z-bbb2",
            "20260102T000001Z-ccc3",
        ]);
        assert_eq!(resolve(&s, "latest", "t").unwrap().id, "20260102T000001Z-ccc3");
        assert_eq!(resolve(&s, "20260101T000000Z-aaa1", "t").unwrap().id, s[0].id);
        assert_eq!(resolve(&s, "bbb2", "t").unwrap().id, s[1].id);
        assert_eq!(resolve(&s, "20260101", "t").unwrap().id, s[0].id);
        assert!(matches!(
            resolve(&s, "20260102", "t"),
            Err(SnapshotError::Ambiguous { count: 2, .. })
        ));
        let err = resolve(&s, "nope", "s3://b/p").unwrap_err().to_string();
        assert!(err.contains("s3backup snapshots s3://b/p"), "{err}");
        assert!(resolve(&[], "latest", "t").is_err());
    }
}
