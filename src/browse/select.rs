//! Which entries of a snapshot `snapshots ls` and `snapshots find` show,
//! decided one entry at a time as the manifest streams by.

use crate::fs::filter::{FilterError, PathPattern};
use crate::manifest::Entry;

/// The PATHs of `snapshots ls`: a path names that entry and, for a
/// directory, everything under it; none names the whole snapshot. Each
/// remembers whether it named anything, so one that names nothing is
/// reported once the manifest is read.
#[derive(Debug, Clone)]
pub struct Paths {
    wanted: Vec<String>,
    matched: Vec<bool>,
}

impl Paths {
    /// The paths as typed (`/`-separated, relative to the backup root; a
    /// leading or trailing `/` is dropped).
    pub fn new(paths: &[String]) -> Self {
        let wanted: Vec<String> = paths.iter().map(|p| p.trim_matches('/').to_string()).collect();
        Self {
            matched: vec![false; wanted.len()],
            wanted,
        }
    }

    /// Whether the entry at `path` is shown (and marks the PATHs naming it).
    pub fn wants(&mut self, path: &str) -> bool {
        if self.wanted.is_empty() {
            return true;
        }
        let mut any = false;
        for (w, matched) in self.wanted.iter().zip(&mut self.matched) {
            let under = path
                .strip_prefix(w.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
            if under {
                *matched = true;
                any = true;
            }
        }
        any
    }

    /// The PATHs (as trimmed) that named no entry so far.
    pub fn unmatched(&self) -> Vec<&str> {
        self.wanted
            .iter()
            .zip(&self.matched)
            .filter(|(_, m)| !**m)
            .map(|(w, _)| w.as_str())
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
        let mut p = Paths::new(&["docs/".into(), "a.txt".into(), "nothing".into()]);
        assert!(p.wants("docs") && p.wants("docs/x/y") && p.wants("a.txt"));
        assert!(!p.wants("docs2") && !p.wants("a.txt.bak") && !p.wants("b"));
        assert_eq!(p.unmatched(), ["nothing"]);
        let mut all = Paths::new(&[]);
        assert!(all.wants("anything") && all.unmatched().is_empty());
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
