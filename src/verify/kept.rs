//! Where `verify` finds a snapshot's file when the live key does not hold
//! it as recorded: the live key still (a metadata-only refresh changed its
//! ETag, and the newest snapshot records the new one with the same
//! content), or the content area ([`crate::history`]).
//!
//! The content area is listed once, the first time a file needs it (a
//! snapshot whose files are all live never lists it), and the listing is
//! shared by every snapshot `verify --all` checks. It is held as a sorted
//! array of (blake3, size): 40 bytes per content object, 40 MB for a
//! million, looked up by binary search. No request per file: a file's
//! presence and size come from the listing, as for live keys.

use tokio::sync::OnceCell;

use crate::history;
use crate::manifest::Entry;
use crate::restore::locate::Newest;
use crate::store::{ObjectStore, StoreError};

/// The content area as listed: each object's blake3 and size, sorted.
#[derive(Debug, Default)]
pub struct ContentSet(Vec<([u8; 32], u64)>);

impl ContentSet {
    /// Lists the content area under `prefix` (one listing); objects whose
    /// key names no blake3 ([`history::blake3_of_key`]) are left out.
    ///
    /// # Errors
    /// The store's error from the listing.
    pub async fn list(store: &dyn ObjectStore, prefix: &str) -> Result<Self, StoreError> {
        use futures::TryStreamExt;
        let area = history::content_prefix(prefix);
        let mut held: Vec<([u8; 32], u64)> = store
            .list(&area)
            .try_filter_map(|o| {
                let hash = history::blake3_of_key(&area, &o.key).and_then(|h| blake3::Hash::from_hex(h).ok());
                futures::future::ready(Ok(hash.map(|h| (*h.as_bytes(), o.size))))
            })
            .try_collect()
            .await?;
        held.sort_unstable();
        held.dedup_by(|a, b| a.0 == b.0);
        Ok(Self(held))
    }

    /// The size of the content object for `blake3` (hex), if there is one.
    pub fn size_of(&self, blake3: &str) -> Option<u64> {
        let hash = blake3::Hash::from_hex(blake3).ok()?;
        let i = self.0.binary_search_by(|(h, _)| h.cmp(hash.as_bytes())).ok()?;
        Some(self.0[i].1)
    }
}

/// The content area, listed when first needed (see the module doc).
pub type LazyContent = OnceCell<ContentSet>;

/// What the newest snapshot says of a path.
pub enum Held {
    /// This snapshot is the newest (or the newest could not be read that far):
    /// the live key should hold the file as recorded.
    Live,
    /// The newest snapshot lists it with the same type and content, under
    /// this ETag: the live key holds it (maybe refreshed since).
    LiveAs(String),
    /// The newest snapshot lists other content there, or nothing: the
    /// content area should hold it.
    Kept,
}

/// What the newest snapshot (`None`: this one is the newest) says of `entry`.
pub fn held(newest: Option<&mut Newest>, entry: &Entry) -> Held {
    let Some(newest) = newest else {
        return Held::Live;
    };
    let same = newest
        .entry_for(&entry.path)
        .filter(|n| n.kind == entry.kind && n.blake3 == entry.blake3)
        .map(|n| n.etag.clone());
    match same {
        Some(etag) => Held::LiveAs(etag),
        None if newest.broken() => Held::Live,
        None => Held::Kept,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_found_by_hash_and_nothing_else() {
        let a = blake3::hash(b"a");
        let b = blake3::hash(b"b");
        let mut held = vec![(*b.as_bytes(), 1), (*a.as_bytes(), 7)];
        held.sort_unstable();
        let set = ContentSet(held);
        assert_eq!(set.size_of(a.to_hex().as_str()), Some(7));
        assert_eq!(set.size_of(b.to_hex().as_str()), Some(1));
        assert_eq!(set.size_of(blake3::hash(b"c").to_hex().as_str()), None);
        assert_eq!(set.size_of("not hex"), None);
    }
}
