//! Which entries of a snapshot `snapshots ls` and `snapshots find` show,
//! decided one entry at a time as the manifest streams by.

use crate::fs::filter::{FilterError, PathPattern};
use crate::fs::selector::PathSelector;
use crate::manifest::Entry;

/// The PATHs of `snapshots ls`: a path names that entry and, for a
/// directory, everything under it (with a trailing `/`, a directory only:
/// [`PathSelector`]); none names the whole snapshot. Each
/// remembers whether it named anything, so one that names nothing is
/// reported once the manifest is read.
#[derive(Debug, Clone)]
pub struct Paths {
    wanted: Vec<PathSelector>,
    matched: Vec<bool>,
}

impl Paths {
    /// The paths as typed (`/`-separated, relative to the backup root; a
    /// leading `/` is dropped, a trailing one means a directory only).
    pub fn new(paths: &[String]) -> Self {
        let wanted: Vec<PathSelector> = paths.iter().map(|p| PathSelector::new(p)).collect();
        Self {
            matched: vec![false; wanted.len()],
            wanted,
        }
    }

    /// Whether the entry at `path` (a directory when `is_dir`) is shown
    /// (and marks the PATHs naming it).
    pub fn wants(&mut self, path: &str, is_dir: bool) -> bool {
        if self.wanted.is_empty() {
            return true;
        }
        let mut any = false;
        for (w, matched) in self.wanted.iter().zip(&mut self.matched) {
            if w.names(path, is_dir) {
                *matched = true;
                any = true;
            }
        }
        any
    }

    /// The PATHs (as trimmed; `d/` for a directory only) that named no
    /// entry so far.
    pub fn unmatched(&self) -> Vec<String> {
        self.wanted
            .iter()
            .zip(&self.matched)
            .filter(|(_, m)| !**m)
            .map(|(w, _)| w.typed())
            .collect()
    }
}

/// The PATTERNs of `snapshots find`, in the syntax of `--exclude`: one
/// without a `/` matches an entry's name at any depth, one with a `/` its
/// whole path from the top, one ending in `/` directories only. An entry
/// matches when any pattern matches it itself (not through a parent
/// directory: `docs` finds the directory, not each file under it).
#[derive(Debug, Clone)]
pub struct Patterns(Vec<PathPattern>);

impl Patterns {
    /// Parses each pattern.
    ///
    /// # Errors
    /// [`FilterError::Pattern`] for one that is not valid gitignore syntax.
    pub fn new(patterns: &[String]) -> Result<Self, FilterError> {
        patterns
            .iter()
            .map(|p| PathPattern::new(p))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether `entry` matches.
    pub fn matches(&self, entry: &Entry) -> bool {
        let is_dir = entry.kind == "dir";
        self.0.iter().any(|p| p.matches_itself(&entry.path, is_dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::browse::tests::entry;

    #[test]
    fn a_path_names_itself_and_what_is_under_it() {
        let mut p = Paths::new(&["docs/".into(), "a.txt".into(), "nothing".into(), "a.txt/".into()]);
        assert!(p.wants("docs", true) && p.wants("docs/x/y", false) && p.wants("a.txt", false));
        assert!(!p.wants("docs2", true) && !p.wants("a.txt.bak", false) && !p.wants("b", false));
        assert_eq!(
            p.unmatched(),
            ["nothing", "a.txt/"],
            "a file is not named by 'a.txt/'"
        );
        let mut all = Paths::new(&[]);
        assert!(all.wants("anything", false) && all.unmatched().is_empty());
    }

    #[test]
    fn patterns_match_names_or_whole_paths() {
        let p = Patterns::new(&["*.pdf".into(), "src/main.rs".into(), "build/".into()]).unwrap();
        assert!(p.matches(&entry("x/y/a.pdf", "file", 1, "")));
        assert!(p.matches(&entry("src/main.rs", "file", 1, "")));
        assert!(!p.matches(&entry("lib/src/main.rs", "file", 1, "")));
        assert!(p.matches(&entry("a/build", "dir", 0, "")));
        assert!(!p.matches(&entry("a/build", "file", 1, "")));
        assert!(!p.matches(&entry("a/build/x", "file", 1, "")));
        assert!(Patterns::new(&["ok".into(), "a[".into()]).is_err());
    }
}
