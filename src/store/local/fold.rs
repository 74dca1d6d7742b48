//! The local store on a disk that folds letter case (exFAT, NTFS, FAT, a
//! Mac's APFS): two keys that differ only in case would be one file there,
//! the second overwriting the first without an error. The store root is
//! probed once, at the first write ([`crate::fs::case::probe`]); from then
//! on each object written is checked against the keys written before it in
//! this run ([`Twins`]: two new files `A.txt` and `a.txt`) and against the
//! name already in the store (`A.txt` stored by an earlier run, `a.txt`
//! new). A key that clashes is refused with a one-line reason naming it,
//! before anything is written for it: the backup reports it as a failed
//! file (exit 3) and records no row for it. On a store that compares names
//! exactly this is one probe per run.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use crate::fs::case::{Clash, Folding, Twins};
use crate::fs::confine::Parent;
use crate::store::{StoreError, StoreResult};

/// The keys written so far in this run, once the root has been probed
/// (`None` inside: the root compares names exactly). Shared by the
/// store's clones.
#[derive(Debug, Default, Clone)]
pub(super) struct CaseGuard(Arc<OnceLock<Option<Mutex<Twins>>>>);

impl CaseGuard {
    /// Checks that `key`, about to be written at `parent` in the store
    /// rooted at `root`, has a name of its own there.
    ///
    /// # Errors
    /// [`StoreError::Fatal`] naming the clash.
    pub(super) fn check(&self, root: &Path, parent: &Parent, key: &str) -> StoreResult<()> {
        let twins = self.0.get_or_init(|| match crate::fs::case::probe(root, true) {
            Ok(Folding::Exact) => None,
            Ok(folding) => Some(Mutex::new(Twins::new(folding))),
            Err(e) => {
                tracing::warn!(
                    "could not tell whether '{}' folds letter case ({e}); keys differing only in case are not checked",
                    root.display()
                );
                None
            }
        });
        let Some(twins) = twins else {
            return Ok(());
        };
        let mut twins = twins.lock().unwrap_or_else(|p| p.into_inner());
        let folds = twins.folding().describe();
        match twins.take(key, false) {
            Ok(()) => {}
            Err(Clash::Name) => {
                return Err(StoreError::Fatal(format!(
                    "'{key}' differs only in letter case from another key; the store's file system (folds {folds}) would keep only one"
                )));
            }
            Err(Clash::Directory(dir)) => {
                return Err(StoreError::Fatal(format!(
                    "'{key}': its directory '{dir}' differs only in letter case from another key's; the store's \
                     file system (folds {folds}) would merge their entries into one directory"
                )));
            }
        }
        drop(twins);
        if let Some(stored) = stored_spelling(parent) {
            return Err(StoreError::Fatal(format!(
                "'{key}' differs only in letter case from '{stored}', already in the store; its file system \
                 (folds {folds}) would keep only one"
            )));
        }
        Ok(())
    }
}

/// The name under which the store holds `parent.name` when it is another
/// spelling of it (found under the name, but not listed as it).
fn stored_spelling(parent: &Parent) -> Option<String> {
    parent.dir.symlink_metadata(&parent.name).ok()?;
    let wanted = parent.name.to_string_lossy().to_lowercase();
    let mut other = None;
    for entry in parent.dir.entries().ok()?.flatten() {
        let name = entry.file_name();
        if name == parent.name {
            return None;
        }
        if name.to_string_lossy().to_lowercase() == wanted {
            other = Some(name.to_string_lossy().into_owned());
        }
    }
    other
}
