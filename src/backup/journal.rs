//! The multipart-upload journal: which uploads a set has begun and which
//! of their parts the store acknowledged, so a run that was interrupted is
//! resumed from its finished parts, and uploads that can never be resumed
//! are aborted rather than left to cost storage.

use std::path::Path;

use crate::fs::names;
use crate::fs::scan;
use crate::state::{JournaledUpload, StateDb, StateResult};
use crate::store::retry::retry;
use crate::store::{ObjectStore, StoreError};

/// The multipart-upload journal of one backup set, on its own connection
/// to the state file (parts finish on many tasks at once).
pub struct Journal {
    db: std::sync::Mutex<StateDb>,
    set_id: i64,
}

impl Journal {
    /// A journal writing to `db` for set `set_id`.
    pub fn new(db: StateDb, set_id: i64) -> Self {
        Self {
            db: std::sync::Mutex::new(db),
            set_id,
        }
    }

    /// Runs `f` on the database. A journal that cannot be written only
    /// costs a resume, so failures are logged, not raised.
    pub(super) fn with<T>(&self, what: &str, f: impl FnOnce(&StateDb, i64) -> StateResult<T>) -> Option<T> {
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        match tokio::task::block_in_place(|| f(&db, self.set_id)) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!("upload journal, {what}: {e}");
                None
            }
        }
    }

    /// Aborts the uploads that can never be resumed: journaled ones whose
    /// file is gone or has changed since they began, and, after a run that
    /// was killed (`interrupted_since`: when it started, ms), the ones under
    /// `prefix` that no journal knows and that were begun while it ran (it
    /// died between the store starting them and the journal recording
    /// them). Listing uploads costs a request, so only then. Returns how many.
    pub async fn abort_abandoned(
        &self,
        store: &dyn ObjectStore,
        source: &Path,
        prefix: &str,
        interrupted_since: Option<i64>,
    ) -> usize {
        let uploads = self
            .with("listing", |db, set| db.journaled_uploads(set))
            .unwrap_or_default();
        let mut aborted = match interrupted_since {
            Some(ms) => {
                self.abort_unjournaled(store, prefix, &uploads, ms.div_euclid(1000))
                    .await
            }
            None => 0,
        };
        for u in uploads {
            let current = std::fs::metadata(names::local(source, &u.path)).ok();
            if current.is_some_and(|md| md.len() == u.size && scan::mtime_ns(&md) == u.mtime_ns) {
                continue;
            }
            match retry(&u.key, || store.abort_multipart(&u.key, &u.upload_id)).await {
                Ok(()) | Err(StoreError::NotFound(_)) => {
                    tracing::info!(key = %u.key, "aborted an unfinished upload whose file changed or is gone");
                    self.with("forgetting", |db, set| db.forget_upload(set, &u.key));
                    aborted += 1;
                }
                Err(e) => tracing::warn!("aborting the unfinished upload of '{}': {e}", u.key),
            }
        }
        aborted
    }

    async fn abort_unjournaled(
        &self,
        store: &dyn ObjectStore,
        prefix: &str,
        known: &[JournaledUpload],
        since_secs: i64,
    ) -> usize {
        let listed = match store.pending_uploads(prefix).await {
            Ok(l) => l,
            Err(e) => {
                tracing::info!("not looking for forgotten uploads: {e}");
                return 0;
            }
        };
        let mut aborted = 0;
        for p in listed {
            // A second of slack: the store's clock and ours may differ a little.
            let in_window = p.initiated_secs.is_some_and(|t| t >= since_secs - 1);
            if !in_window || known.iter().any(|u| u.upload_id == p.upload_id) {
                continue;
            }
            match retry(&p.key, || store.abort_multipart(&p.key, &p.upload_id)).await {
                Ok(()) | Err(StoreError::NotFound(_)) => {
                    tracing::info!(key = %p.key, "aborted an unfinished upload a killed run left behind");
                    aborted += 1;
                }
                Err(e) => tracing::warn!("aborting the unfinished upload of '{}': {e}", p.key),
            }
        }
        aborted
    }
}
