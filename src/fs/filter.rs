//! Which paths a backup takes and a restore brings back.
//!
//! Patterns use gitignore syntax (the `ignore` crate, as ripgrep and fd
//! do), matched against the path relative to the source: a pattern
//! without a `/` matches a name at any depth (`*.tmp`, `node_modules`), one
//! with a `/` is anchored to the top (`/build`, `docs/*.pdf`), a trailing
//! `/` matches directories only, and `**` spans directories. Excluding a
//! directory excludes everything under it.
//!
//! Precedence, first rule that applies:
//! 1. `--include` re-includes what would otherwise be left out (as in the
//!    AWS CLI: `--exclude '*' --include '*.txt'` keeps only text files);
//! 2. `--exclude` and `--exclude-from` leave paths out;
//! 3. `.s3backupignore` files (backups only), in any directory, with
//!    gitignore's own rules: they apply to their directory and below, a
//!    deeper file overrides a shallower one, later lines override earlier
//!    ones and `!pattern` re-includes.
//!
//! Everything else is taken.

use std::path::{Path, PathBuf};

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

/// The name of the per-directory ignore file.
pub const IGNORE_FILE: &str = ".s3backupignore";

/// A pattern or a pattern file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// Not a valid pattern.
    #[error("invalid {flag} pattern '{pattern}': {cause}")]
    Pattern {
        /// Which option gave it.
        flag: &'static str,
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        cause: String,
    },
    /// An `--exclude-from` file that cannot be read.
    #[error("cannot read --exclude-from file '{0}': {1}")]
    File(PathBuf, std::io::Error),
}

/// The command line's filters.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    include: Option<Gitignore>,
    exclude: Option<Gitignore>,
}

/// What the filters say about one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Re-included by `--include`: taken whatever else says.
    Included,
    /// Left out by `--exclude`/`--exclude-from`.
    Excluded,
    /// No command-line rule matches (ignore files may still have a say).
    NoRule,
}

impl Filters {
    /// Builds the filters from `--exclude`, `--include` and the lines of
    /// each `--exclude-from` file (blank lines and `#` comments skipped).
    pub fn new(
        exclude: &[String],
        include: &[String],
        exclude_from: &[PathBuf],
    ) -> Result<Self, FilterError> {
        let mut excludes: Vec<(&'static str, String)> =
            exclude.iter().map(|p| ("--exclude", p.clone())).collect();
        for file in exclude_from {
            let text = std::fs::read_to_string(file).map_err(|e| FilterError::File(file.clone(), e))?;
            excludes.extend(
                text.lines()
                    .map(str::trim_end)
                    .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                    .map(|l| ("--exclude-from", l.to_string())),
            );
        }
        let includes: Vec<_> = include.iter().map(|p| ("--include", p.clone())).collect();
        Ok(Self {
            include: matcher(&includes)?,
            exclude: matcher(&excludes)?,
        })
    }

    /// Whether any `--include` was given (then excluded directories are
    /// still walked, since something under them may be re-included).
    pub fn has_includes(&self) -> bool {
        self.include.is_some()
    }

    /// Whether there are no command-line filters at all.
    pub fn is_empty(&self) -> bool {
        self.include.is_none() && self.exclude.is_none()
    }

    /// The command line's verdict on `rel` (a path or any of its parents).
    pub fn verdict(&self, rel: &str, is_dir: bool) -> Verdict {
        let hit = |m: &Option<Gitignore>| {
            m.as_ref()
                .is_some_and(|m| m.matched_path_or_any_parents(rel, is_dir).is_ignore())
        };
        if hit(&self.include) {
            Verdict::Included
        } else if hit(&self.exclude) {
            Verdict::Excluded
        } else {
            Verdict::NoRule
        }
    }

    /// Whether a restore brings `rel` back.
    pub fn selects(&self, rel: &str, is_dir: bool) -> bool {
        self.verdict(rel, is_dir) != Verdict::Excluded
    }
}

/// One gitignore matcher over all `patterns` (each a line of gitignore
/// syntax). Unlike in ignore files, where git reads an unclosed `[` as a
/// literal `[` (and [`ignore_file`] does too), a pattern typed as an option
/// with an unclosed `[` (`--exclude 'a['`) is refused: on a command line it
/// is far more likely a mistake than a wish to match a `[`, which `\[`
/// says plainly.
fn matcher(patterns: &[(&'static str, String)]) -> Result<Option<Gitignore>, FilterError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GitignoreBuilder::new("");
    b.allow_unclosed_class(false);
    for (flag, p) in patterns {
        b.add_line(None, p).map_err(|e| FilterError::Pattern {
            flag,
            pattern: p.clone(),
            cause: e.to_string(),
        })?;
    }
    b.build().map(Some).map_err(|e| FilterError::Pattern {
        flag: patterns[0].0,
        pattern: patterns
            .iter()
            .map(|(_, p)| p.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        cause: e.to_string(),
    })
}

/// The `.s3backupignore` of the directory `rel` (text form, "" for the
/// top) at `dir`, if it has one. Lines that are not valid patterns are
/// skipped with a warning, as git does.
pub fn ignore_file(dir: &Path, rel: &str) -> Option<Gitignore> {
    let path = dir.join(IGNORE_FILE);
    if !path.is_file() {
        return None;
    }
    let mut b = GitignoreBuilder::new(rel);
    if let Some(e) = b.add(&path) {
        tracing::warn!(file = %path.display(), "{e}");
    }
    b.build()
        .map_err(|e| tracing::warn!(file = %path.display(), "{e}"))
        .ok()
}

/// The rules of an ignore file of directory `rel` given as `text` (the
/// store's copy of one that is gone locally, see [`crate::backup::spare`]), or
/// `None` if it has none. Lines that are not valid patterns are skipped
/// with a warning, as [`ignore_file`] does.
pub fn ignore_rules(rel: &str, text: &str) -> Option<Gitignore> {
    let mut b = GitignoreBuilder::new(rel);
    for line in text.lines() {
        if let Err(e) = b.add_line(None, line) {
            tracing::warn!(dir = rel, "{IGNORE_FILE}: {e}");
        }
    }
    b.build()
        .map_err(|e| tracing::warn!(dir = rel, "{IGNORE_FILE}: {e}"))
        .ok()
        .filter(|g| !g.is_empty())
}

/// What the ignore files in force (deepest last) say about `rel`:
/// `Some(true)` ignored, `Some(false)` re-included, `None` no rule.
pub fn ignored_by(files: &[&Gitignore], rel: &str, is_dir: bool) -> Option<bool> {
    for g in files.iter().rev() {
        match g.matched_path_or_any_parents(rel, is_dir) {
            Match::Ignore(_) => return Some(true),
            Match::Whitelist(_) => return Some(false),
            Match::None => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(exclude: &[&str], include: &[&str]) -> Filters {
        let s = |v: &[&str]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        Filters::new(&s(exclude), &s(include), &[]).unwrap()
    }

    #[test]
    fn patterns_follow_gitignore_and_include_wins() {
        let fl = f(&["*.tmp", "/build", "cache/", "docs/**/*.pdf"], &[]);
        assert_eq!(fl.verdict("a.tmp", false), Verdict::Excluded);
        assert_eq!(fl.verdict("deep/er/a.tmp", false), Verdict::Excluded);
        assert_eq!(fl.verdict("build", true), Verdict::Excluded);
        assert_eq!(fl.verdict("build/x.o", false), Verdict::Excluded);
        assert_eq!(
            fl.verdict("src/build", true),
            Verdict::NoRule,
            "anchored to the top"
        );
        assert_eq!(fl.verdict("cache", true), Verdict::Excluded);
        assert_eq!(
            fl.verdict("cache", false),
            Verdict::NoRule,
            "a file named cache stays"
        );
        assert_eq!(
            fl.verdict("x/cache/y", false),
            Verdict::Excluded,
            "under an excluded dir"
        );
        assert_eq!(fl.verdict("docs/a/b/c.pdf", false), Verdict::Excluded);
        assert_eq!(fl.verdict("a.txt", false), Verdict::NoRule);

        let fl = f(&["*"], &["*.txt"]);
        assert_eq!(fl.verdict("dir", true), Verdict::Excluded);
        assert_eq!(fl.verdict("dir/a.txt", false), Verdict::Included);
        assert_eq!(fl.verdict("dir/a.bin", false), Verdict::Excluded);
        assert!(fl.has_includes() && !fl.is_empty());
        assert!(f(&[], &[]).is_empty());
    }

    #[test]
    fn exclude_from_reads_lines_and_bad_input_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list");
        std::fs::write(&list, "# comment\n\n*.log\n/tmp\n").unwrap();
        let fl = Filters::new(&[], &[], std::slice::from_ref(&list)).unwrap();
        assert_eq!(fl.verdict("a/b.log", false), Verdict::Excluded);
        assert_eq!(fl.verdict("tmp", true), Verdict::Excluded);
        assert_eq!(fl.verdict("comment", false), Verdict::NoRule);

        let err = Filters::new(&[], &[], &[dir.path().join("missing")]).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        let err = Filters::new(&["a[z-a]".into()], &[], &[]).unwrap_err();
        assert!(err.to_string().contains("--exclude pattern 'a[z-a]'"), "{err}");
        for bad in ["a[", "[!", "x/[abc"] {
            let err = Filters::new(&[], &[bad.into()], &[]).unwrap_err();
            assert!(
                err.to_string().contains(&format!("--include pattern '{bad}'")),
                "{err}"
            );
        }
        std::fs::write(&list, "ok\nb[\n").unwrap();
        let err = Filters::new(&[], &[], std::slice::from_ref(&list)).unwrap_err();
        assert!(err.to_string().contains("--exclude-from pattern 'b['"), "{err}");
        let fl = f(&["\\[x"], &[]);
        assert_eq!(
            fl.verdict("[x", false),
            Verdict::Excluded,
            "an escaped '[' is a literal"
        );
    }

    #[test]
    fn ignore_files_nest_and_negate() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join(IGNORE_FILE), "*.log\nsecret/\n").unwrap();
        std::fs::write(dir.path().join("sub").join(IGNORE_FILE), "!keep.log\n").unwrap();
        let top = ignore_file(dir.path(), "").unwrap();
        let sub = ignore_file(&dir.path().join("sub"), "sub").unwrap();
        assert_eq!(ignored_by(&[&top], "a.log", false), Some(true));
        assert_eq!(ignored_by(&[&top], "secret", true), Some(true));
        assert_eq!(ignored_by(&[&top], "a.txt", false), None);
        assert_eq!(ignored_by(&[&top, &sub], "sub/keep.log", false), Some(false));
        assert_eq!(ignored_by(&[&top, &sub], "sub/other.log", false), Some(true));
        assert!(ignore_file(&dir.path().join("sub/none"), "sub/none").is_none());
    }
}
