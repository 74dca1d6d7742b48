//! The delete guard and the change tripwire, as pure decisions (issue 16).
//!
//! A backup that runs unattended must not mirror a disaster over the good
//! copy: a disk that failed to mount (the source looks empty, or is the
//! empty mount point on another device), a script that deleted a tree, a
//! mass encryption or a bad `sed -i` rewriting every file. Before a run
//! changes anything, the backup (`backup::guard`) counts what it would
//! delete and what it would replace, and [`Guard::judge`] says whether
//! that may go ahead; a [`Refusal`] names what would have gone and the
//! flag that allows it.
//!
//! Thresholds are "more than": a limit of 50 % lets a run delete exactly
//! half of the set. The set's size is the number of files and symlinks
//! (objects) its rows hold before the run; directories have no object and
//! are not counted on either side.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

/// A threshold: a number of objects, or a share of the set's objects.
/// In JSON, the text a user types (`"50%"`, `"100"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// At most this many.
    Count(u64),
    /// At most this percentage (0 to 100, decimals allowed) of the set.
    Percent(f64),
}

impl Limit {
    /// The default of both `--max-delete` and `--max-change`: half the set.
    pub const HALF: Limit = Limit::Percent(50.0);

    /// A share never refuses this many objects or fewer: in a set of one
    /// file (a password database backed up nightly) every edit is 100 %,
    /// and a guard that trips on every run gets turned off for good. A
    /// count limit has no floor (`--max-delete 0` refuses any delete), and
    /// an empty source is refused whatever the number.
    pub const SHARE_FLOOR: u64 = 5;

    /// Whether `n` of a set of `of` objects is more than this limit allows
    /// (a share: also more than [`Self::SHARE_FLOOR`]).
    pub fn exceeded(self, n: u64, of: u64) -> bool {
        match self {
            Limit::Count(c) => n > c,
            // n / of > p / 100, without the division (of may be 0).
            Limit::Percent(p) => n > Self::SHARE_FLOOR && (n as f64) * 100.0 > p * of as f64,
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Count(c) => write!(f, "{c}"),
            Limit::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for Limit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why a limit text is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a count (e.g. 100) or a percentage from 0% to 100% (e.g. 50%, 12.5%)")]
pub struct LimitError(pub String);

impl std::str::FromStr for Limit {
    type Err = LimitError;

    /// `N` (a count) or `P%` (0 to 100, decimals allowed).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || LimitError(s.to_string());
        let t = s.trim();
        match t.strip_suffix('%') {
            Some(p) => {
                // Plain decimals only: no sign, exponent, "inf" or "nan".
                if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit() || c == '.') {
                    return Err(bad());
                }
                let v: f64 = p.parse().map_err(|_| bad())?;
                if (0.0..=100.0).contains(&v) {
                    Ok(Limit::Percent(v))
                } else {
                    Err(bad())
                }
            }
            None if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) => {
                t.parse().map(Limit::Count).map_err(|_| bad())
            }
            None => Err(bad()),
        }
    }
}

/// What a run may delete and replace (the backup options of issue 16).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guard {
    /// `--max-delete`: the most objects `--delete` may remove in one run.
    pub max_delete: Limit,
    /// `--max-change`: the most of the set's files one run may replace.
    pub max_change: Limit,
    /// `--allow-empty-source`: `--delete` may empty the set when SOURCE is empty.
    pub allow_empty_source: bool,
    /// `--allow-device-change`: `--delete` may run when SOURCE's root is
    /// on another device than at the set's last successful backup.
    pub allow_device_change: bool,
}

impl Default for Guard {
    fn default() -> Self {
        Guard {
            max_delete: Limit::HALF,
            max_change: Limit::HALF,
            allow_empty_source: false,
            allow_device_change: false,
        }
    }
}

/// What a run would do, as the guard needs it.
#[derive(Debug, Clone, Default)]
pub struct Planned<'a> {
    /// Objects (files and symlinks) the set holds before the run.
    pub set_files: u64,
    /// Files and symlinks the walk found (after filters).
    pub found: u64,
    /// Whether SOURCE's root moved to another device since the set's last
    /// successful run (false when no device was recorded).
    pub device_changed: bool,
    /// With `--delete`: the objects it would delete, by path.
    pub deletes: Vec<&'a str>,
    /// The objects whose content the run would replace, by path.
    pub replaces: Vec<&'a str>,
}

/// Why a run was refused.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// SOURCE holds no files, yet the set does.
    EmptySource,
    /// SOURCE's root is on another device than at the last successful run.
    DeviceChanged,
    /// More deletes than `--max-delete`.
    TooManyDeletes {
        /// The limit in force.
        limit: Limit,
    },
    /// More replacements than `--max-change`.
    TooManyChanges {
        /// The limit in force.
        limit: Limit,
    },
}

/// A run the guard stopped before it changed anything.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refusal {
    /// Why.
    #[serde(flatten)]
    pub reason: Reason,
    /// `delete` or `replace`: what the run would have done too much of.
    pub action: &'static str,
    /// How many objects it would have deleted or replaced.
    pub count: u64,
    /// The set's objects before the run.
    pub set_files: u64,
    /// `count` as a share of `set_files`, in percent (one decimal).
    pub percent: f64,
    /// The flag that lets the run go ahead.
    pub allow_with: &'static str,
    /// The directories most of them are in, by count (at most [`TOP_DIRS`]).
    pub top_dirs: Vec<DirCount>,
}

/// How many of the refused paths are directly in one directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirCount {
    /// The directory, relative to SOURCE ("." for its top).
    pub dir: String,
    /// Files in it (not below it) that would go.
    pub files: u64,
}

/// How many directories a refusal names.
pub const TOP_DIRS: usize = 10;

impl Guard {
    /// Whether `planned` may go ahead; else the first refusal, checked in
    /// this order: an empty source, a changed device, too many deletes
    /// (each only when something would be deleted), then too many replacements.
    ///
    /// # Errors
    /// The [`Refusal`] that stops the run.
    pub fn judge(&self, planned: &Planned<'_>) -> Result<(), Refusal> {
        let (n_del, of) = (planned.deletes.len() as u64, planned.set_files);
        let delete = |reason, allow_with| Refusal {
            reason,
            action: "delete",
            count: n_del,
            set_files: of,
            percent: percent(n_del, of),
            allow_with,
            top_dirs: top_dirs(&planned.deletes),
        };
        if n_del > 0 {
            if planned.found == 0 && !self.allow_empty_source {
                return Err(delete(Reason::EmptySource, "--allow-empty-source"));
            }
            if planned.device_changed && !self.allow_device_change {
                return Err(delete(Reason::DeviceChanged, "--allow-device-change"));
            }
            if self.max_delete.exceeded(n_del, of) {
                let limit = self.max_delete;
                return Err(delete(Reason::TooManyDeletes { limit }, "--max-delete 100%"));
            }
        }
        let n_rep = planned.replaces.len() as u64;
        if self.max_change.exceeded(n_rep, of) {
            return Err(Refusal {
                reason: Reason::TooManyChanges {
                    limit: self.max_change,
                },
                action: "replace",
                count: n_rep,
                set_files: of,
                percent: percent(n_rep, of),
                allow_with: "--max-change 100%",
                top_dirs: top_dirs(&planned.replaces),
            });
        }
        Ok(())
    }
}

/// `n` as a share of `of`, in percent, one decimal (0 of an empty set).
fn percent(n: u64, of: u64) -> f64 {
    if of == 0 {
        return 0.0;
    }
    (n as f64 * 1000.0 / of as f64).round() / 10.0
}

impl Refusal {
    /// The one-line message (without `error: `), naming the target.
    pub fn headline(&self, target: &str) -> String {
        let (n, of, pct) = (self.count, self.set_files, self.percent);
        let what = format!("{n} of the set's {of} objects ({pct}%) in {target}");
        match self.reason {
            Reason::EmptySource => format!(
                "refusing to delete {what}: SOURCE holds no files (an unmounted disk?); \
                 --allow-empty-source lets --delete empty the set"
            ),
            Reason::DeviceChanged => format!(
                "refusing to delete {what}: SOURCE is on another device than at the set's last backup \
                 (an unmounted disk?); --allow-device-change lets --delete run"
            ),
            Reason::TooManyDeletes { limit } => format!(
                "refusing to delete {what}: more than --max-delete {limit}; --max-delete 100% (or a larger count) allows it"
            ),
            Reason::TooManyChanges { limit } => format!(
                "refusing to replace {what} with new content: more than --max-change {limit} \
                 (mass encryption, a bad rewrite?); nothing was sent; --max-change 100% accepts it"
            ),
        }
    }
}

/// The directories (each path's parent, "." for the top) holding most of
/// `paths`, most first (ties by name), at most [`TOP_DIRS`].
pub fn top_dirs(paths: &[&str]) -> Vec<DirCount> {
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for p in paths {
        let dir = p.rsplit_once('/').map_or(".", |(d, _)| d);
        *counts.entry(dir).or_default() += 1;
    }
    let mut dirs: Vec<DirCount> = counts
        .into_iter()
        .map(|(dir, files)| DirCount {
            dir: dir.to_string(),
            files,
        })
        .collect();
    dirs.sort_by(|a, b| b.files.cmp(&a.files).then_with(|| a.dir.cmp(&b.dir)));
    dirs.truncate(TOP_DIRS);
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_and_compare_as_more_than() {
        assert_eq!("10".parse(), Ok(Limit::Count(10)));
        assert_eq!("12.5%".parse(), Ok(Limit::Percent(12.5)));
        assert_eq!("100%".parse(), Ok(Limit::Percent(100.0)));
        for bad in [
            "", "%", "-1", "101%", "1e2%", "nan%", "inf%", "5 %x", "1.5", "-5%",
        ] {
            assert!(bad.parse::<Limit>().is_err(), "{bad}");
        }
        assert!(!Limit::HALF.exceeded(6, 12));
        assert!(Limit::HALF.exceeded(7, 12));
        // A share never refuses SHARE_FLOOR objects or fewer; a count does.
        assert!(!Limit::HALF.exceeded(5, 5));
        assert!(!Limit::Percent(0.0).exceeded(5, 1000));
        assert!(Limit::Percent(0.0).exceeded(6, 1000));
        assert!(!Limit::Count(3).exceeded(3, 4));
        assert!(Limit::Count(3).exceeded(4, 4));
        assert!(Limit::Count(0).exceeded(1, 1000));
        assert!(!Limit::Percent(100.0).exceeded(40, 40));
    }

    #[test]
    fn empty_source_and_device_change_refuse_whatever_the_limit() {
        let g = Guard {
            max_delete: Limit::Percent(100.0),
            ..Guard::default()
        };
        let mut p = Planned {
            set_files: 2,
            deletes: vec!["a", "b/c"],
            ..Planned::default()
        };
        assert_eq!(g.judge(&p).unwrap_err().reason, Reason::EmptySource);
        p.found = 1;
        assert!(g.judge(&p).is_ok());
        p.device_changed = true;
        assert_eq!(g.judge(&p).unwrap_err().allow_with, "--allow-device-change");
        let allowed = Guard {
            allow_device_change: true,
            ..g
        };
        assert!(allowed.judge(&p).is_ok());
        // Nothing to delete: nothing to refuse.
        p.deletes.clear();
        assert!(g.judge(&p).is_ok());
    }

    #[test]
    fn replacements_over_the_limit_are_refused_with_their_directories() {
        let paths: Vec<String> = (0..12).map(|i| format!("d{}/f{i}", i % 11)).collect();
        let mut replaces: Vec<&str> = paths.iter().map(String::as_str).collect();
        replaces.push("top");
        let p = Planned {
            set_files: 20,
            found: 20,
            replaces,
            ..Planned::default()
        };
        let r = Guard::default().judge(&p).unwrap_err();
        assert_eq!((r.action, r.count, r.percent), ("replace", 13, 65.0));
        assert_eq!(r.top_dirs.len(), TOP_DIRS);
        assert_eq!(
            r.top_dirs[0],
            DirCount {
                dir: "d0".into(),
                files: 2
            }
        );
        assert_eq!(r.top_dirs[1].dir, ".");
        assert!(
            r.headline("s3://b/p")
                .contains("13 of the set's 20 objects (65%) in s3://b/p")
        );
    }
}
