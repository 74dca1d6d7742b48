//! Paths saved with a named set: local paths absolute and normalised
//! lexically, so a run by name from anywhere (cron runs in `/`) reads and
//! writes the same places, and comparisons with sets an older s3backup
//! saved (not normalised).

use std::path::{Path, PathBuf};

use crate::fs::filter::Rule;
use crate::target::Target;

/// `path` made absolute against the current directory and normalised
/// lexically: no `.` and no `..` (each takes the component before it
/// away, as `cd ..` in a shell does), symlinks not resolved, so a saved
/// set does not depend on the directory it was saved from
/// (`../src` typed in `sub1/` is saved as `…/src`, not `…/sub1/../src`).
pub(crate) fn absolute(path: &Path) -> PathBuf {
    crate::fs::safe_path::lexical_absolute(path)
}

/// Whether a saved path (maybe saved by an older s3backup, which did not
/// normalise it) names the same place as `path`, normalised.
pub(super) fn same_path(saved: &Path, path: &Path) -> bool {
    saved == path || absolute(saved) == path
}

/// Whether a saved target (see [`same_path`]) is `target`, normalised.
pub(super) fn same_target(saved: &str, target: &Target) -> bool {
    saved == target.to_string()
        || saved
            .parse::<Target>()
            .is_ok_and(|t| absolute_target(&t).to_string() == target.to_string())
}

/// `target` with a local store's path made absolute.
pub(crate) fn absolute_target(target: &Target) -> Target {
    match target {
        Target::Local { root } => Target::Local { root: absolute(root) },
        other => other.clone(),
    }
}

/// `rules` with `--exclude-from` files made absolute.
pub(super) fn absolute_rules(rules: Vec<Rule>) -> Vec<Rule> {
    rules
        .into_iter()
        .map(|r| match r {
            Rule::ExcludeFrom(p) => Rule::ExcludeFrom(absolute(&p)),
            other => other,
        })
        .collect()
}
