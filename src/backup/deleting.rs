//! Deletes a killed run left under way: a backup takes a row out of the
//! state and records its path as being deleted in one transaction, before
//! it asks the store (see `StateDb::take_rows`). A run killed before the
//! store confirmed leaves the path recorded; the next run deletes those
//! objects before anything else, so no object the state stopped claiming
//! stays in the bucket unclaimed (an orphan that restores ignore and no
//! later run would find), and no row claims an object that may be gone.

use crate::state::StateDb;
use crate::store::retry::retry;
use crate::store::{ObjectStore, join_key};

/// Finishes the deletes under way for set `set_id` (objects under
/// `prefix` in `store`). Returns how many objects were deleted and the
/// paths whose delete failed: those stay recorded for the next run, and
/// the caller writes nothing at or under them in this one. Paths in
/// `unkept` (whose content could not be copied into history yet, see
/// [`super::keep::finish`]) are not deleted, and are returned as failed.
pub(super) async fn finish(
    db: &StateDb,
    set_id: i64,
    store: &dyn ObjectStore,
    prefix: &str,
    unkept: &[String],
) -> (u64, Vec<String>) {
    let under_way = match db.deletes_under_way(set_id) {
        Ok(paths) => paths,
        Err(e) => {
            tracing::warn!("listing the deletes a killed run left under way: {e}");
            return (0, Vec::new());
        }
    };
    let (mut deleted, mut failed) = (0, Vec::new());
    for (path, has_object) in under_way {
        if has_object && unkept.contains(&path) {
            failed.push(path);
            continue;
        }
        if has_object {
            let key = join_key(prefix, &path);
            if let Err(e) = retry(&key, || store.delete(&key)).await {
                tracing::warn!(path = %path, "deleting what a killed run was deleting: {e}");
                failed.push(path);
                continue;
            }
            deleted += 1;
            tracing::info!(path = %path, "deleted: a killed run was deleting it");
        }
        if let Err(e) = db.delete_done(set_id, &path) {
            tracing::warn!(path = %path, "recording a finished delete: {e}");
        }
    }
    (deleted, failed)
}
