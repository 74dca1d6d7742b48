//! Which entries a restore takes, as they stream in from the source: the
//! requested paths (a file, or a subtree), `--exclude`/`--include`, and
//! never the subtree where the local store being restored from lies
//! inside DEST. Counts what it leaves out, so the summary can name every
//! skip, and remembers every directory entry's recorded metadata (selected
//! or not: a directory a selected file needs gets it at the end).

use std::collections::HashMap;
use std::sync::Arc;

use crate::fs::filter::Filters;
use crate::fs::safe_path::{self, UnsafePath};
use crate::fs::scan::EntryKind;
use crate::fs::selector::PathSelector;
use crate::progress::Progress;
use crate::report::Failure;
use crate::restore::meta::DirMeta;
use crate::restore::source::Item;

/// What [`Select::admit`] makes of one entry from the source.
#[derive(Debug)]
pub enum Admitted {
    /// Never a key a restore takes (under the local store in DEST).
    Out,
    /// Not selected (requested paths, `--exclude`/`--include`), yet a key
    /// of the backup: it goes through the twin check
    /// ([`crate::restore::fold::Guard::pass`]) so that the key that keeps
    /// a name on a folding DEST is the same whatever the selection.
    Aside(Item),
    /// Selected: restore it (or, for an entry that could not be read,
    /// report it).
    In(Result<Item, Failure>),
}

/// The selection, and what it has seen so far.
pub struct Select<'a> {
    /// The requested paths (a trailing `/`: a directory only); all when empty.
    selectors: Vec<PathSelector>,
    /// Which of them matched an entry.
    matched: Vec<bool>,
    filters: &'a Filters,
    /// Where the local store lies under DEST, if it does.
    store_in_dest: Option<String>,
    /// The target's text, when the user is to be told (at the first entry)
    /// that there is no manifest and a listing is restored.
    listing_notice: Option<String>,
    progress: Arc<dyn Progress>,
    /// Every directory entry's recorded metadata, by path.
    pub recorded: HashMap<String, DirMeta>,
    /// Entries read from the source (failures to read one included).
    pub seen: u64,
    /// Entries `--exclude`/`--include` left out.
    pub excluded: u64,
    /// Entries left out because they lie under the local store in DEST.
    pub store_skipped: u64,
}

impl<'a> Select<'a> {
    /// A selection of `paths` (relative; all when empty) through `filters`,
    /// leaving out `store_in_dest` (see [`crate::fs::own::check_dest`]).
    /// `progress` is told of entries seen and files queued.
    ///
    /// # Errors
    /// [`UnsafePath`] for a requested path that is not a plain relative path.
    pub fn new(
        paths: &[String],
        filters: &'a Filters,
        store_in_dest: Option<String>,
        progress: Arc<dyn Progress>,
    ) -> Result<Self, UnsafePath> {
        let selectors: Vec<PathSelector> = paths.iter().map(|p| PathSelector::new(p)).collect();
        for s in &selectors {
            safe_path::validate(&s.path)?;
        }
        Ok(Self {
            matched: vec![false; selectors.len()],
            selectors,
            filters,
            store_in_dest,
            listing_notice: None,
            progress,
            recorded: HashMap::new(),
            seen: 0,
            excluded: 0,
            store_skipped: 0,
        })
    }

    /// Tells the user, at the first entry, that the bucket under `target`
    /// holds no manifest and a listing is restored instead.
    pub fn notice_listing(&mut self, target: String) {
        self.listing_notice = Some(target);
    }

    /// Takes one entry from the source: [`Admitted::In`] to restore it (or,
    /// for an entry that could not be read, to report it), otherwise left out.
    pub fn admit(&mut self, item: Result<Item, String>) -> Admitted {
        let item = match item {
            Ok(item) => item,
            Err(error) => {
                return Admitted::In(Err(Failure {
                    path: String::new(),
                    error,
                }));
            }
        };
        self.seen += 1;
        if item.kind == EntryKind::Dir {
            self.recorded.insert(
                item.path.clone(),
                DirMeta {
                    mtime_ns: item.mtime_ns,
                    mode: item.mode,
                },
            );
        }
        if self.seen.is_multiple_of(1000) {
            self.progress.scanned(self.seen as usize);
        }
        if self.seen == 1
            && let Some(target) = &self.listing_notice
        {
            tracing::warn!(
                "notice: no snapshot manifest under {target}; restoring from a listing of the bucket"
            );
        }
        if self
            .store_in_dest
            .as_deref()
            .is_some_and(|store| crate::fs::own::is_under(&item.path, store))
        {
            self.store_skipped += 1;
            return Admitted::Out;
        }
        if !self.filters.selects(&item.path, item.kind == EntryKind::Dir) {
            self.excluded += 1;
            return Admitted::Aside(item);
        }
        let mut hit = self.selectors.is_empty();
        for (s, matched) in self.selectors.iter().zip(self.matched.iter_mut()) {
            if s.names(&item.path, item.kind == EntryKind::Dir) {
                *matched = true;
                hit = true;
            }
        }
        if hit && item.kind != EntryKind::Dir {
            self.progress.queued(1, item.size);
        }
        if hit {
            Admitted::In(Ok(item))
        } else {
            Admitted::Aside(item)
        }
    }

    /// When paths were requested and none matched: them, joined for a message.
    pub fn none_matched(&self) -> Option<String> {
        (!self.selectors.is_empty() && !self.matched.contains(&true)).then(|| {
            let typed: Vec<String> = self.selectors.iter().map(PathSelector::typed).collect();
            typed.join(", ")
        })
    }

    /// The requested paths that matched nothing.
    pub fn unmatched(&self) -> impl Iterator<Item = String> {
        self.selectors
            .iter()
            .zip(&self.matched)
            .filter(|(_, m)| !**m)
            .map(|(s, _)| s.typed())
    }
}
