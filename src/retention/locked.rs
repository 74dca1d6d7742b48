//! What Object Lock ([`crate::lock`]) keeps from `forget` and `prune`.
//!
//! On a bucket with Object Lock a plain DELETE is never refused (it adds a
//! delete marker), so nothing here is about errors: a snapshot whose
//! manifest is still locked is not forgotten, because a delete marker
//! would hide it from every listing while its locked versions stay, billed,
//! until the date, and the tool would have lost track of a snapshot that
//! can still be restored. A content object still locked is not pruned, for
//! the same reason. Both are reported with their date, and go as usual on
//! the first forget or prune after it.
//!
//! A snapshot's lock is the one its manifest's header records; for one
//! without (written before locks were recorded, or damaged) on a bucket
//! with Object Lock, the manifest's own retention is asked with a HEAD.
//! A content object's is always asked (one HEAD each, only for the
//! objects a prune would delete, and only on a bucket with Object Lock).

use serde::Serialize;

use crate::lock::Retention;
use crate::snapshots::Snapshot;
use crate::store::{ObjectStore, StoreError};

/// One snapshot or object kept because it is still locked.
#[derive(Debug, Clone, Serialize)]
pub struct Locked {
    /// The snapshot's ID, or the object's key.
    pub id: String,
    /// Its lock: mode and date.
    #[serde(flatten)]
    pub lock: Retention,
}

/// Whether the store has Object Lock at all (asked once, lazily).
pub(super) struct LockProbe<'a> {
    store: &'a dyn ObjectStore,
    enabled: Option<bool>,
    now: chrono::DateTime<chrono::Utc>,
}

impl<'a> LockProbe<'a> {
    /// A probe judging locks at `now` (the command's start).
    pub(super) fn new(store: &'a dyn ObjectStore, now: chrono::DateTime<chrono::Utc>) -> Self {
        LockProbe {
            store,
            enabled: None,
            now,
        }
    }

    /// Whether the bucket has Object Lock; a store that cannot say has none.
    pub(super) async fn enabled(&mut self) -> bool {
        if self.enabled.is_none() {
            let lock = self.store.object_lock().await;
            if let Err(e) = &lock {
                tracing::debug!("reading the bucket's Object Lock: {e}");
            }
            self.enabled = Some(matches!(lock, Ok(Some(_))));
        }
        self.enabled == Some(true)
    }

    /// The lock still holding on `snap`: `recorded` (its header's) when
    /// given, else its manifest's retention on a bucket with Object Lock.
    ///
    /// # Errors
    /// The HEAD's error (a missing manifest is not locked).
    pub(super) async fn snapshot(
        &mut self,
        snap: &Snapshot,
        recorded: Option<Retention>,
    ) -> Result<Option<Retention>, StoreError> {
        let lock = match recorded {
            Some(lock) => Some(lock),
            None => self.object(&snap.key).await?,
        };
        Ok(lock.filter(|l| l.holds_at(self.now)))
    }

    /// The lock still holding on the object at `key` (a HEAD, on a bucket
    /// with Object Lock only).
    ///
    /// # Errors
    /// The HEAD's error (a missing object is not locked).
    pub(super) async fn object(&mut self, key: &str) -> Result<Option<Retention>, StoreError> {
        if !self.enabled().await {
            return Ok(None);
        }
        self.head(key).await
    }

    /// The lock still holding on the object at `key`, by a HEAD whatever
    /// [`Self::enabled`] says.
    ///
    /// # Errors
    /// The HEAD's error (a missing object is not locked).
    pub(super) async fn head(&self, key: &str) -> Result<Option<Retention>, StoreError> {
        match self.store.head(key, None).await {
            Ok(remote) => Ok(remote.lock.filter(|l| l.holds_at(self.now))),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
