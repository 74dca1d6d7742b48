//! Which paths a backup takes and a restore brings back.
//!
//! Patterns use gitignore syntax (the `ignore` crate, as ripgrep and fd
//! do), matched against the path relative to the source: a pattern
//! without a `/` matches a name at any depth (`*.tmp`, `node_modules`), one
//! with a `/` is anchored to the top (`/build`, `docs/*.pdf`), a trailing
//! `/` matches directories only, and `**` spans directories. Excluding a
//! directory excludes everything under it.
//!
//! Precedence, as in the AWS CLI: the command-line filters (`--exclude`,
//! `--include`, and the lines of each `--exclude-from` file, expanded in
//! place) are read in command-line order and **the last one that matches
//! a path decides**: `--exclude '*' --include '*.txt'` keeps only text
//! files, `--include '*.txt' --exclude '*'` keeps nothing. A filter
//! matches a path when it matches the path or one of its parent
//! directories. A pattern written `!PATTERN` matches as PATTERN does and
//! says the opposite of its option. Only when no command-line filter
//! matches do the `.s3backupignore` files (backups only) have a say, with
//! gitignore's own rules: they apply to their directory and below, a
//! deeper file overrides a shallower one, later lines override earlier
//! ones and `!pattern` re-includes. Everything else is taken.
//!
//! A directory that a filter leaves out is still walked when any
//! `--include` is given, since something under it may be taken; each path
//! under it is then decided on its own, by the same rule.
//!
//! The same [`Filters::verdict`] decides for the walk (`fs::scan`), for
//! what `--delete` spares (`backup::spare`) and for a restore, so the three
//! cannot disagree.

use std::path::{Path, PathBuf};

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder, Glob};
use serde::{Deserialize, Serialize};

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
    /// A line of an `--exclude-from` file that is not a valid pattern.
    #[error("invalid pattern '{pattern}' on line {line} of --exclude-from file '{}': {cause}", file.display())]
    ListPattern {
        /// The file, as given (a named set's: absolute).
        file: PathBuf,
        /// The line's number, from 1.
        line: usize,
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        cause: String,
    },
    /// An `--exclude-from` file that cannot be read.
    #[error("cannot read --exclude-from file '{0}': {1}")]
    File(PathBuf, std::io::Error),
}

/// One command-line filter, as typed (saved with a named set in this shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// `--exclude PATTERN`.
    Exclude(String),
    /// `--include PATTERN`.
    Include(String),
    /// `--exclude-from FILE`: its lines are `--exclude` patterns, in place
    /// (blank lines and `#` comments skipped).
    ExcludeFrom(PathBuf),
}

/// The command line's filters, in their order.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Runs of consecutive patterns of one kind, each one matcher (a long
    /// `--exclude-from` file is one lookup, not one per line); command-line
    /// order, so the last run that matches decides.
    runs: Vec<(Kind, Gitignore)>,
    has_includes: bool,
}

/// Whether a filter leaves paths out or takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exclude,
    Include,
}

/// What the filters say about one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The last matching filter takes it (an `--include`): taken whatever
    /// ignore files say.
    Included,
    /// The last matching filter leaves it out (`--exclude`/`--exclude-from`).
    Excluded,
    /// No command-line filter matches (ignore files may still have a say).
    NoRule,
}

impl Filters {
    /// Filters that exclude `exclude`, then the lines of each
    /// `exclude_from` file, then include `include`: the order the options
    /// were read in before the last matching filter decided, so
    /// `--include` wins over every exclusion. Used for checks of one
    /// pattern and by tests; the command line uses [`Filters::ordered`].
    ///
    /// # Errors
    /// [`FilterError`] as for [`Filters::ordered`].
    pub fn new(
        exclude: &[String],
        include: &[String],
        exclude_from: &[PathBuf],
    ) -> Result<Self, FilterError> {
        let rules: Vec<Rule> = exclude
            .iter()
            .cloned()
            .map(Rule::Exclude)
            .chain(exclude_from.iter().cloned().map(Rule::ExcludeFrom))
            .chain(include.iter().cloned().map(Rule::Include))
            .collect();
        Self::ordered(&rules)
    }

    /// The filters `rules`, in command-line order (the last matching one
    /// decides), reading each `--exclude-from` file in place.
    ///
    /// # Errors
    /// [`FilterError::File`] for an `--exclude-from` file that cannot be
    /// read, [`FilterError::Pattern`] for a pattern that is not valid
    /// gitignore syntax (or has an unclosed `[`), naming its option.
    pub fn ordered(rules: &[Rule]) -> Result<Self, FilterError> {
        let mut lines: Vec<(Kind, Origin, String)> = Vec::new();
        for rule in rules {
            match rule {
                Rule::Exclude(p) => lines.push((Kind::Exclude, Origin::Flag("--exclude"), p.clone())),
                Rule::Include(p) => lines.push((Kind::Include, Origin::Flag("--include"), p.clone())),
                Rule::ExcludeFrom(file) => {
                    let text =
                        std::fs::read_to_string(file).map_err(|e| FilterError::File(file.clone(), e))?;
                    lines.extend(
                        text.lines()
                            .enumerate()
                            .map(|(i, l)| (i + 1, l.trim_end()))
                            .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
                            .map(|(n, l)| (Kind::Exclude, Origin::Line(file, n), l.to_string())),
                    );
                }
            }
        }
        let mut runs = Vec::new();
        for run in lines.chunk_by(|a, b| a.0 == b.0) {
            let patterns: Vec<(Origin, String)> = run.iter().map(|(_, o, p)| (*o, p.clone())).collect();
            runs.push((run[0].0, matcher(&patterns)?));
        }
        Ok(Self {
            has_includes: runs.iter().any(|(k, _)| *k == Kind::Include),
            runs,
        })
    }

    /// Whether any `--include` was given (then excluded directories are
    /// still walked, since something under them may be re-included).
    pub fn has_includes(&self) -> bool {
        self.has_includes
    }

    /// Whether there are no command-line filters at all.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The command line's verdict on `rel` (`/`-separated, relative to the
    /// source): that of the last filter matching it or a parent directory.
    pub fn verdict(&self, rel: &str, is_dir: bool) -> Verdict {
        for (kind, m) in self.runs.iter().rev() {
            let takes = match matched_up(m, rel, is_dir) {
                Match::None => continue,
                Match::Ignore(_) => *kind == Kind::Include,
                // `!PATTERN`: the opposite of its option.
                Match::Whitelist(_) => *kind == Kind::Exclude,
            };
            return if takes {
                Verdict::Included
            } else {
                Verdict::Excluded
            };
        }
        Verdict::NoRule
    }

    /// Whether a restore brings `rel` back.
    pub fn selects(&self, rel: &str, is_dir: bool) -> bool {
        self.verdict(rel, is_dir) != Verdict::Excluded
    }
}

/// One pattern in the filters' syntax, to select recorded paths
/// (`state files PATTERN`): a path matches when `--exclude PATTERN` would
/// leave it out.
#[derive(Debug, Clone)]
pub struct PathPattern(Filters);

impl PathPattern {
    /// Parses `pattern` as one `--exclude` would be.
    ///
    /// # Errors
    /// [`FilterError::Pattern`] if it is not valid gitignore syntax.
    pub fn new(pattern: &str) -> Result<Self, FilterError> {
        Filters::ordered(&[Rule::Exclude(pattern.to_string())]).map(Self)
    }

    /// Whether the file `rel` (relative, `/`-separated) matches.
    pub fn matches(&self, rel: &str) -> bool {
        self.0.verdict(rel, false) == Verdict::Excluded
    }

    /// Whether `rel` itself matches, not through a parent directory
    /// (`snapshots find`, as restic's: `docs` names the directory, not
    /// what is under it); `is_dir` for patterns ending in `/`.
    pub fn matches_itself(&self, rel: &str, is_dir: bool) -> bool {
        let verdict = self
            .0
            .runs
            .iter()
            .rev()
            .find_map(|(_, m)| match m.matched(rel, is_dir) {
                Match::None => None,
                Match::Ignore(_) => Some(true),
                Match::Whitelist(_) => Some(false),
            });
        verdict.unwrap_or(false)
    }
}

/// One gitignore matcher over all `patterns` (each a line of gitignore
/// syntax). Unlike in ignore files, where git reads an unclosed `[` as a
/// literal `[` (and [`ignore_file`] does too), a pattern typed as an option
/// with an unclosed `[` (`--exclude 'a['`) is refused: on a command line it
/// is far more likely a mistake than a wish to match a `[`, which `\[`
/// says plainly.
fn matcher(patterns: &[(Origin, String)]) -> Result<Gitignore, FilterError> {
    let mut b = GitignoreBuilder::new("");
    b.allow_unclosed_class(false);
    for (origin, p) in patterns {
        b.add_line(None, p)
            .map_err(|e| origin.error(p.clone(), e.to_string()))?;
    }
    b.build().map_err(|e| {
        let all = patterns.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>();
        patterns[0].0.error(all.join(" "), e.to_string())
    })
}

/// Where a command-line pattern comes from, for its error.
#[derive(Debug, Clone, Copy)]
enum Origin<'a> {
    /// Typed as this option.
    Flag(&'static str),
    /// A line (numbered from 1) of an `--exclude-from` file.
    Line(&'a Path, usize),
}

impl Origin<'_> {
    /// The error for `pattern` from here.
    fn error(self, pattern: String, cause: String) -> FilterError {
        match self {
            Origin::Flag(flag) => FilterError::Pattern { flag, pattern, cause },
            Origin::Line(file, line) => FilterError::ListPattern {
                file: file.to_path_buf(),
                line,
                pattern,
                cause,
            },
        }
    }
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

/// `g`'s verdict on `rel` (`/`-separated, relative to the source), or on
/// the nearest parent directory it has a rule for, walking up no further
/// than `g`'s own directory.
///
/// `Gitignore::matched_path_or_any_parents` also asks about the empty path
/// above a name at `g`'s own level, where a directory-only pattern such as
/// `*/` or `/*/` matches: it left out every top-level file for `--exclude
/// '*/'` (and every file beside an ignore file holding `*/`). git's rule is
/// that a pattern ending in `/` matches directories only (gitignore(5)).
pub fn matched_up<'a>(g: &'a Gitignore, rel: &str, is_dir: bool) -> Match<&'a Glob> {
    let own = g.matched(rel, is_dir);
    if !own.is_none() {
        return own;
    }
    let root_len = g.path().as_os_str().len();
    let mut path = rel;
    while let Some((parent, _)) = path.rsplit_once('/') {
        if parent.len() <= root_len {
            break;
        }
        let m = g.matched(parent, true);
        if !m.is_none() {
            return m;
        }
        path = parent;
    }
    Match::None
}

/// What the ignore files in force (deepest last) say about `rel`:
/// `Some(true)` ignored, `Some(false)` re-included, `None` no rule.
pub fn ignored_by(files: &[&Gitignore], rel: &str, is_dir: bool) -> Option<bool> {
    for g in files.iter().rev() {
        match matched_up(g, rel, is_dir) {
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
    fn a_directory_only_pattern_matches_directories_only_at_every_level() {
        for pattern in ["*/", "/*/"] {
            let fl = f(&[pattern], &[]);
            assert_eq!(fl.verdict("a.txt", false), Verdict::NoRule, "{pattern}");
            assert_eq!(fl.verdict("docs", true), Verdict::Excluded, "{pattern}");
            assert_eq!(fl.verdict("docs/d.txt", false), Verdict::Excluded, "{pattern}");
        }
        let nested = ignore_rules("n", "*/").unwrap();
        assert!(matched_up(&nested, "n/y.txt", false).is_none());
        assert!(matched_up(&nested, "n/e/z.txt", false).is_ignore());
        assert!(matched_up(&nested, "n/e", true).is_ignore());
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

    fn ordered(rules: &[(&str, &str)]) -> Filters {
        let rules: Vec<Rule> = rules
            .iter()
            .map(|(flag, p)| match *flag {
                "exclude" => Rule::Exclude(p.to_string()),
                _ => Rule::Include(p.to_string()),
            })
            .collect();
        Filters::ordered(&rules).unwrap()
    }

    /// The last matching filter decides, whichever the order (the AWS CLI's rule).
    #[test]
    fn the_last_matching_filter_wins_in_either_order() {
        let fl = ordered(&[("exclude", "*"), ("include", "*.txt")]);
        assert_eq!(fl.verdict("a.txt", false), Verdict::Included);
        assert_eq!(fl.verdict("d/a.txt", false), Verdict::Included);
        assert_eq!(fl.verdict("a.bin", false), Verdict::Excluded);
        let fl = ordered(&[("include", "*.txt"), ("exclude", "*")]);
        assert_eq!(fl.verdict("a.txt", false), Verdict::Excluded);
        assert_eq!(fl.verdict("d/a.txt", false), Verdict::Excluded);
        assert!(fl.has_includes());
        let fl = ordered(&[
            ("include", "keep/"),
            ("exclude", "*.log"),
            ("include", "keep/x.log"),
        ]);
        assert_eq!(fl.verdict("keep/a.log", false), Verdict::Excluded);
        assert_eq!(fl.verdict("keep/x.log", false), Verdict::Included);
        assert_eq!(fl.verdict("keep/a.txt", false), Verdict::Included);
        assert_eq!(fl.verdict("other.txt", false), Verdict::NoRule);
        // A negated pattern says the opposite of its option.
        let fl = ordered(&[("exclude", "*.log"), ("exclude", "!keep.log")]);
        assert_eq!(fl.verdict("keep.log", false), Verdict::Included);
        assert_eq!(fl.verdict("a.log", false), Verdict::Excluded);
    }

    #[test]
    fn a_path_pattern_matches_as_an_exclude_would() {
        let p = PathPattern::new("docs/").unwrap();
        assert!(p.matches("docs/a.pdf") && p.matches("docs/sub/b.txt"));
        assert!(!p.matches("a/docs.txt"));
        let p = PathPattern::new("*.pdf").unwrap();
        assert!(p.matches("a.pdf") && p.matches("x/y/b.pdf") && !p.matches("a.pdfx"));
        let p = PathPattern::new("/a.txt").unwrap();
        assert!(p.matches("a.txt") && !p.matches("d/a.txt"));
        assert!(PathPattern::new("a[").is_err());
    }

    #[test]
    fn a_path_pattern_can_match_a_path_itself() {
        let p = PathPattern::new("docs").unwrap();
        assert!(p.matches_itself("docs", true) && p.matches_itself("x/docs", false));
        assert!(!p.matches_itself("docs/a.pdf", false), "not through its parent");
        let p = PathPattern::new("docs/*.pdf").unwrap();
        assert!(p.matches_itself("docs/a.pdf", false) && !p.matches_itself("x/docs/a.pdf", false));
        let p = PathPattern::new("sub/").unwrap();
        assert!(p.matches_itself("a/sub", true) && !p.matches_itself("a/sub", false));
        let p = PathPattern::new("**/b?.txt").unwrap();
        assert!(p.matches_itself("x/y/b1.txt", false) && p.matches_itself("b2.txt", false));
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
        let text = err.to_string();
        assert!(
            text.contains("pattern 'b[' on line 2 of --exclude-from file"),
            "{err}"
        );
        assert!(text.contains(&list.display().to_string()), "{err}");
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
