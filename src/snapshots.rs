//! Finding snapshots: every manifest under `PREFIX/.s3backup/manifests/` is
//! one, named by its file name without the suffix; `latest` is the newest.
//!
//! A snapshot ID may be given whole, as the run ID alone, or as any
//! unambiguous prefix of the name (like a git hash).

use futures::TryStreamExt;
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
    /// The manifest is unreadable.
    #[error("manifest '{key}' is unreadable: {reason}")]
    Corrupt {
        /// Its key.
        key: String,
        /// Why.
        reason: String,
    },
}

/// The manifest directory's key prefix for a target prefix.
pub fn manifest_prefix(prefix: &str) -> String {
    join_key(prefix, &format!("{}/", manifest::DIR))
}

/// All snapshots under `prefix`, oldest first.
pub async fn list(store: &dyn ObjectStore, prefix: &str) -> Result<Vec<Snapshot>, StoreError> {
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

/// Picks a snapshot by ID (`latest`, a full ID, a run ID or a unique prefix).
pub fn resolve<'a>(snapshots: &'a [Snapshot], id: &str, target: &str) -> Result<&'a Snapshot, SnapshotError> {
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

/// Which snapshots `forget` removes: all but the newest `keep_last`, those
/// younger than `keep_within`, and always the newest one.
pub fn to_forget(
    snapshots: &[Snapshot],
    keep_last: Option<usize>,
    keep_within: Option<std::time::Duration>,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<&Snapshot> {
    let n = snapshots.len();
    let keep_last = keep_last.unwrap_or(0).max(1);
    snapshots
        .iter()
        .enumerate()
        .filter(|(i, s)| {
            let recent_enough = *i + keep_last >= n;
            let young = keep_within.is_some_and(|within| {
                created(s).is_some_and(|t| {
                    now.signed_duration_since(t)
                        .to_std()
                        .is_ok_and(|age| age <= within)
                })
            });
            !(recent_enough || young)
        })
        .map(|(_, s)| s)
        .collect()
}

/// Reads just a manifest's header line, fetching only its first bytes when possible.
pub async fn read_header(store: &dyn ObjectStore, snapshot: &Snapshot) -> Result<Header, SnapshotError> {
    const HEAD_BYTES: u64 = 64 * 1024;
    let range = (snapshot.manifest_size > HEAD_BYTES).then_some((0, HEAD_BYTES));
    let corrupt = |reason: String| SnapshotError::Corrupt {
        key: snapshot.key.clone(),
        reason,
    };
    let first = fetch_bytes(store, &snapshot.key, range).await?;
    match manifest::Reader::new(&first[..]) {
        Ok(reader) => Ok(reader.header),
        Err(_) if range.is_some() => {
            let whole = fetch_bytes(store, &snapshot.key, None).await?;
            manifest::Reader::new(&whole[..])
                .map(|r| r.header)
                .map_err(|e| corrupt(e.to_string()))
        }
        Err(e) => Err(corrupt(e.to_string())),
    }
}

async fn fetch_bytes(
    store: &dyn ObjectStore,
    key: &str,
    range: Option<(u64, u64)>,
) -> Result<Vec<u8>, StoreError> {
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
}

/// Downloads a whole manifest to a temporary file and opens it for streaming.
pub async fn open_manifest(
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
    crate::transfer::retry_n(crate::transfer::DOWNLOAD_ATTEMPTS, &snapshot.key, || {
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
    manifest::Reader::new(file).map_err(|e| corrupt(e.to_string()))
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

    #[test]
    fn forget_keeps_the_newest_and_what_was_asked() {
        use chrono::TimeZone;
        let s = snaps(&[
            "20260101T000000Z-a",
            "20260201T000000Z-b",
            "20260301T000000Z-c",
            "20260310T000000Z-d",
        ]);
        let now = chrono::Utc.with_ymd_and_hms(2026, 3, 11, 0, 0, 0).unwrap();
        let ids = |v: Vec<&Snapshot>| v.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
        assert_eq!(
            ids(to_forget(&s, Some(2), None, now)),
            ["20260101T000000Z-a", "20260201T000000Z-b"]
        );
        // keep_last 0 still keeps the newest
        assert_eq!(to_forget(&s, Some(0), None, now).len(), 3);
        let within = std::time::Duration::from_secs(15 * 86400);
        assert_eq!(
            ids(to_forget(&s, Some(1), Some(within), now)),
            ["20260101T000000Z-a", "20260201T000000Z-b"]
        );
        assert_eq!(
            created(&s[0]),
            Some(chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap())
        );
    }
}
