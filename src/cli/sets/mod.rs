//! Named backup sets: `backup SOURCE TARGET --set NAME` remembers the
//! source, the target and the options in the state file, so a cron line
//! (or a person) runs the same backup with `backup --set NAME`.
//!
//! Rules (README, "Named sets"):
//! - Running by name takes the saved options; every option typed on that
//!   command line wins for that run only, even one typed with its default
//!   value (`--jobs 16` over a saved 4: told apart by clap's value source,
//!   see [`crate::cli::matches`]). A saved flag is turned off with its
//!   `--no-…` twin (`--no-delete`, `--no-follow-symlinks`,
//!   `--no-path-style`, `--no-sse`, which drops the saved KMS key too; a
//!   saved key goes with a saved `--sse aws:kms`, and a typed
//!   `--sse-kms-key-id` with the saved `--sse`). Any filter typed (`--exclude`, `--include`,
//!   `--exclude-from`) replaces the saved filters as a whole, since their
//!   order decides. `--dry-run`, `--rehash`, `--json`, `--json-progress`
//!   and the global flags always come from the command line.
//! - Every local path is saved absolute (SOURCE, a local-store TARGET,
//!   `--exclude-from` files), made so against the directory the set was
//!   saved from and normalised lexically (no `.`, no `..`; see [`absolute`]), so a run by name from anywhere (cron runs in `/`) reads
//!   and writes the same places.
//! - A named set follows SOURCE as typed: a set saved with a symlink
//!   (`current -> day1`) backs up wherever the link points at each run
//!   (`day2` after a dump job repoints it), as the same set, so change
//!   detection and `--delete` work across the move. The state file knows
//!   a named set by its name; a new named set is recorded under its
//!   absolute SOURCE as typed, symlinks not resolved.
//! - Saving again with SOURCE and TARGET replaces the saved options; a
//!   name that another SOURCE or TARGET holds is refused before anything
//!   is done.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cli::args::{BackupArgs, FilterArgs, LeaveOutArgs, MonitorArgs, S3Args, S3WriteArgs};
use crate::cli::matches;
use crate::fs::filter::Rule;
use crate::state::{NamedSet, StateDb};
use crate::target::Target;

mod paths;
pub(crate) use paths::{absolute, absolute_target};
use paths::{absolute_rules, same_path, same_target};

/// What a named set remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedBackup {
    /// Absolute source directory, as typed (symlinks not resolved).
    pub source: PathBuf,
    /// Target, as text; a local store's path absolute.
    pub target: String,
    /// `--delete`.
    pub delete: bool,
    /// `--follow-symlinks`.
    pub follow_symlinks: bool,
    /// `--jobs`.
    pub jobs: u16,
    /// `--multipart-threshold`.
    pub multipart_threshold: u64,
    /// `--part-size`.
    pub part_size: u64,
    /// `--copy-cutoff` (0 in sets saved before it existed: the default).
    pub copy_cutoff: u64,
    /// `--max-bandwidth`.
    pub max_bandwidth: Option<u64>,
    /// `--history` (`auto` in sets saved before it existed).
    pub history: crate::history::HistoryMode,
    /// `--max-delete`, as typed (`N` or `P%`; `None` in sets saved before it existed: the default).
    pub max_delete: Option<String>,
    /// `--max-change`, as `max_delete`.
    pub max_change: Option<String>,
    /// The filters in command-line order (`--exclude-from` files absolute).
    /// Empty in sets saved before filters were ordered: those have only
    /// the three lists below, read in the order in which `--include` wins.
    pub filters: Vec<Rule>,
    /// `--exclude` (also written, for an older s3backup reading the set).
    pub exclude: Vec<String>,
    /// `--include` (also written, as `exclude`).
    pub include: Vec<String>,
    /// `--exclude-from`, absolute (also written, as `exclude`).
    pub exclude_from: Vec<PathBuf>,
    /// `--exclude-caches`, `--exclude-if-present`, `--one-file-system`,
    /// `--exclude-larger-than` (none in sets saved before they existed).
    pub leave_out: crate::fs::leave_out::LeaveOut,
    /// `--storage-class`.
    pub storage_class: Option<String>,
    /// `--sse`.
    pub sse: Option<String>,
    /// `--sse-kms-key-id`.
    pub sse_kms_key_id: Option<String>,
    /// `--acl`.
    pub acl: Option<String>,
    /// `--checksum-algorithm` (`None`: none; `--no-checksum-algorithm` drops it).
    pub checksum_algorithm: Option<String>,
    /// `--lock-days`, `--lock-mode` (none in sets saved before they existed).
    #[serde(flatten)]
    pub lock: crate::cli::lock::SavedLock,
    /// `--profile`.
    pub profile: Option<String>,
    /// `--region`.
    pub region: Option<String>,
    /// `--endpoint-url`.
    pub endpoint_url: Option<String>,
    /// `--path-style`.
    pub path_style: bool,
    /// `--connect-timeout`.
    pub connect_timeout: u64,
    /// `--read-timeout`.
    pub read_timeout: u64,
    /// `--tag`: the labels each run's snapshot gets.
    pub tags: Vec<String>,
    /// The `--keep-*` rules applied after each successful run (empty: none).
    pub keep: crate::retention::Policy,
    /// `--prune` after each successful run.
    pub prune: bool,
    /// `--metrics-file`, absolute.
    pub metrics_file: Option<PathBuf>,
    /// `--on-success`.
    pub on_success: Option<String>,
    /// `--on-failure`.
    pub on_failure: Option<String>,
    /// `--cost-per-1000`, as typed (checked when saved).
    pub cost_per_1000: Option<String>,
}

/// Why a named set cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    /// No set has the name.
    #[error(
        "no backup set is named '{0}': name one with 's3backup backup SOURCE TARGET --set {0}' ('s3backup sets' lists them)"
    )]
    Unknown(String),
    /// A new set named with digits only, which `state … --set` reads as an ID.
    #[error(
        "a set name of digits only ('{0}') would read as a set ID in 'state … --set': pick a name with a letter in it"
    )]
    DigitsName(String),
    /// SOURCE without TARGET (or the reverse) with --set.
    #[error("give both SOURCE and TARGET to save the set '{0}', or neither to run it")]
    Half(String),
    /// The saved options do not parse (written by a newer s3backup?).
    #[error("the saved options of set '{0}' cannot be read ({1}); save them again with SOURCE and TARGET")]
    Corrupt(String, String),
    /// A set saved by an older s3backup with a relative local store path,
    /// relative to a directory no one knows any more.
    #[error(
        "the set '{name}' was saved with the relative store path '{target}' by an older s3backup: save it again with SOURCE and TARGET (it is saved absolute now)"
    )]
    RelativeTarget {
        /// The set's name.
        name: String,
        /// The saved target.
        target: String,
    },
    /// Saving a set under a name another source or target has.
    #[error(
        "the name '{name}' is already used by the set backing up {set_source} to {target}; pick another name"
    )]
    NameTaken {
        /// The name.
        name: String,
        /// That set's source.
        set_source: String,
        /// That set's target.
        target: String,
    },
    /// Saving SOURCE and TARGET under a new name while another name holds them.
    #[error(
        "{set_source} -> {target} is already saved as set '{saved}': use --set {saved} to run or save it ('{name}' is not given to a set that has a name)"
    )]
    AlreadySaved {
        /// The name typed.
        name: String,
        /// The name the set has.
        saved: String,
        /// SOURCE as typed, absolute.
        set_source: String,
        /// TARGET as typed.
        target: String,
    },
    /// The state file.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// A `backup` command line with its named set filled in.
#[derive(Debug)]
pub struct Resolved {
    /// What to run: SOURCE, TARGET and every option.
    pub args: BackupArgs,
    /// The source text that identifies the set in the state file, for a
    /// named set (its row's, or SOURCE as typed made absolute for a new
    /// one); `None` for an unnamed backup (its real path).
    pub set_source: Option<String>,
    /// Whether to save the options under the name after the run (SOURCE
    /// and TARGET were typed with `--set`).
    pub save: bool,
}

/// A guard limit: `now` if typed or none was saved, else the saved text parsed.
fn saved_limit(
    name: &str,
    typed: bool,
    now: crate::plan::guard::Limit,
    saved: Option<&str>,
) -> Result<crate::plan::guard::Limit, SetError> {
    match saved {
        Some(text) if !typed => text
            .parse()
            .map_err(|e: crate::plan::guard::LimitError| SetError::Corrupt(name.to_string(), e.to_string())),
        _ => Ok(now),
    }
}

/// `now` if the option was typed, else `saved`.
fn pick<T>(typed: bool, now: T, saved: T) -> T {
    if typed { now } else { saved }
}

impl SavedBackup {
    /// The options of a command line that names SOURCE and TARGET, every
    /// local path made absolute.
    pub fn from_args(args: &BackupArgs, source: &Path, target: &Target) -> Self {
        let filters = absolute_rules(matches::rules(&args.filters));
        let list = |want: fn(&Rule) -> Option<String>| filters.iter().filter_map(want).collect();
        Self {
            source: absolute(source),
            target: absolute_target(target).to_string(),
            delete: args.delete,
            follow_symlinks: args.follow_symlinks,
            jobs: args.jobs,
            multipart_threshold: args.multipart_threshold,
            part_size: args.part_size,
            copy_cutoff: args.copy_cutoff,
            max_bandwidth: args.max_bandwidth,
            cost_per_1000: args.cost_per_1000.as_ref().map(ToString::to_string),
            history: args.history,
            max_delete: Some(args.max_delete.to_string()),
            max_change: Some(args.max_change.to_string()),
            exclude: list(|r| match r {
                Rule::Exclude(p) => Some(p.clone()),
                _ => None,
            }),
            include: list(|r| match r {
                Rule::Include(p) => Some(p.clone()),
                _ => None,
            }),
            exclude_from: filters
                .iter()
                .filter_map(|r| match r {
                    Rule::ExcludeFrom(p) => Some(p.clone()),
                    _ => None,
                })
                .collect(),
            filters,
            leave_out: crate::cli::options::leave_out(&args.leave_out),
            storage_class: args.write.storage_class.clone(),
            sse: args.write.sse.clone(),
            sse_kms_key_id: args.write.sse_kms_key_id.clone(),
            acl: args.write.acl.clone(),
            checksum_algorithm: args
                .write
                .checksum_algorithm
                .clone()
                .filter(|a| a != "none" && !args.write.no_checksum_algorithm),
            lock: crate::cli::lock::SavedLock::from_args(&args.lock),
            profile: args.s3.profile.clone(),
            region: args.s3.region.clone(),
            endpoint_url: args.s3.endpoint_url.clone(),
            path_style: args.s3.path_style,
            connect_timeout: args.s3.connect_timeout,
            read_timeout: args.s3.read_timeout,
            tags: args.tags.clone(),
            keep: if args.no_keep {
                crate::retention::Policy::default()
            } else {
                crate::cli::options::policy(&args.keep)
            },
            prune: args.keep.prune && !args.no_keep,
            metrics_file: args
                .monitor
                .metrics_file
                .as_deref()
                .filter(|p| !p.as_os_str().is_empty())
                .map(absolute),
            on_success: args.monitor.on_success.clone().filter(|c| !c.is_empty()),
            on_failure: args.monitor.on_failure.clone().filter(|c| !c.is_empty()),
        }
    }

    /// The saved filters in the order they apply.
    fn rules(&self) -> Vec<Rule> {
        if !self.filters.is_empty() {
            return self.filters.clone();
        }
        matches::rules(&FilterArgs {
            exclude: self.exclude.clone(),
            include: self.include.clone(),
            exclude_from: self.exclude_from.clone(),
            rules: Vec::new(),
        })
    }

    /// The command line to run: these options, with every option typed on
    /// `now` (see [`BackupArgs::given`]) taking precedence.
    ///
    /// # Errors
    /// [`SetError::Corrupt`] if the saved target does not parse,
    /// [`SetError::RelativeTarget`] if it is a relative local path.
    pub fn apply(self, now: BackupArgs) -> Result<BackupArgs, SetError> {
        let name = now.set.clone().unwrap_or_default();
        let target: Target = self
            .target
            .parse()
            .map_err(|e: crate::target::TargetError| SetError::Corrupt(name.clone(), e.to_string()))?;
        if let Target::Local { root } = &target
            && root.is_relative()
        {
            return Err(SetError::RelativeTarget {
                name,
                target: self.target,
            });
        }
        let g = &now.given;
        let typed = |id: &str| g.has(id);
        let flag = |on: &str, off: &str, saved: bool| !typed(off) && (typed(on) || saved);
        let filters_typed = typed("exclude") || typed("include") || typed("exclude_from");
        // Any keep rule or --prune typed replaces the saved ones as a whole;
        // --no-keep runs without them.
        let keep_typed = KEEP_IDS.iter().any(|id| typed(id));
        let keep = if keep_typed || typed("no_keep") {
            now.keep.clone()
        } else {
            crate::cli::options::keep_args(&self.keep, self.prune)
        };
        let limit =
            |id: &str, now, saved: &Option<String>| saved_limit(&name, typed(id), now, saved.as_deref());
        let rules = if filters_typed {
            matches::rules(&now.filters)
        } else {
            self.rules()
        };
        let s3 = self.s3_args(g, now.s3.clone());
        let write = self.write_args(g, now.write.clone());
        Ok(BackupArgs {
            source: Some(self.source.clone()),
            target: Some(target),
            set: now.set.clone(),
            delete: flag("delete", "no_delete", self.delete),
            no_delete: false,
            dry_run: now.dry_run,
            follow_symlinks: flag("follow_symlinks", "no_follow_symlinks", self.follow_symlinks),
            no_follow_symlinks: false,
            // A one-off check, never saved with the set.
            rehash: now.rehash,
            history: pick(typed("history"), now.history, self.history),
            max_delete: limit("max_delete", now.max_delete, &self.max_delete)?,
            max_change: limit("max_change", now.max_change, &self.max_change)?,
            // One-off permissions, never saved: a saved one would turn the guard off for good.
            allow_empty_source: now.allow_empty_source,
            allow_device_change: now.allow_device_change,
            filters: FilterArgs {
                rules,
                ..FilterArgs::default()
            },
            leave_out: leave_out_args(g, now.leave_out, self.leave_out),
            write,
            lock: self.lock.apply(typed, now.lock),
            max_bandwidth: pick(typed("max_bandwidth"), now.max_bandwidth, self.max_bandwidth),
            // Checked when it was saved; a set edited by hand into nonsense prices nothing.
            cost_per_1000: pick(
                typed("cost_per_1000"),
                now.cost_per_1000,
                self.cost_per_1000.as_deref().and_then(|t| t.parse().ok()),
            ),
            json: now.json,
            json_progress: now.json_progress,
            jobs: pick(typed("jobs"), now.jobs, self.jobs),
            multipart_threshold: pick(
                typed("multipart_threshold"),
                now.multipart_threshold,
                self.multipart_threshold,
            ),
            part_size: pick(typed("part_size"), now.part_size, self.part_size),
            copy_cutoff: if typed("copy_cutoff") || self.copy_cutoff == 0 {
                now.copy_cutoff
            } else {
                self.copy_cutoff
            },
            s3,
            tags: pick(typed("tags"), now.tags, self.tags),
            keep,
            no_keep: now.no_keep,
            monitor: MonitorArgs {
                metrics_file: pick(typed("metrics_file"), now.monitor.metrics_file, self.metrics_file),
                on_success: pick(typed("on_success"), now.monitor.on_success, self.on_success),
                on_failure: pick(typed("on_failure"), now.monitor.on_failure, self.on_failure),
            },
            given: now.given,
        })
    }

    /// The storage class, encryption, ACL and checksum of a run by name:
    /// each typed one wins; `--no-sse` turns a saved --sse off (a typed
    /// --sse replaces it), `--no-checksum-algorithm` a saved algorithm.
    fn write_args(&self, g: &matches::Given, now: S3WriteArgs) -> S3WriteArgs {
        let typed = |id: &str| g.has(id);
        let sse = if typed("no_sse") {
            None
        } else {
            pick(typed("sse"), now.sse.clone(), self.sse.clone())
        };
        S3WriteArgs {
            storage_class: pick(
                typed("storage_class"),
                now.storage_class,
                self.storage_class.clone(),
            ),
            sse_kms_key_id: kms_key(g, now.sse_kms_key_id, self.sse_kms_key_id.clone(), sse.as_deref()),
            sse,
            no_sse: false,
            acl: pick(typed("acl"), now.acl, self.acl.clone()),
            checksum_algorithm: if typed("no_checksum_algorithm") {
                None
            } else {
                pick(
                    typed("checksum_algorithm"),
                    now.checksum_algorithm,
                    self.checksum_algorithm.clone(),
                )
            },
            no_checksum_algorithm: false,
        }
    }

    /// The connection settings of a run by name: each typed one wins.
    fn s3_args(&self, g: &matches::Given, now: S3Args) -> S3Args {
        let typed = |id: &str| g.has(id);
        S3Args {
            profile: pick(typed("profile"), now.profile, self.profile.clone()),
            region: pick(typed("region"), now.region, self.region.clone()),
            endpoint_url: pick(typed("endpoint_url"), now.endpoint_url, self.endpoint_url.clone()),
            path_style: !typed("no_path_style") && (typed("path_style") || self.path_style),
            no_path_style: false,
            connect_timeout: pick(
                typed("connect_timeout"),
                now.connect_timeout,
                self.connect_timeout,
            ),
            read_timeout: pick(typed("read_timeout"), now.read_timeout, self.read_timeout),
        }
    }
}

/// The clap ids of the keep rules and `--prune` (see [`SavedBackup::apply`]).
const KEEP_IDS: [&str; 9] = [
    "keep_last",
    "keep_hourly",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
    "keep_within",
    "keep_tag",
    "prune",
];

/// The leave-out options of a run by name: each typed one wins over the
/// saved one (`--exclude-if-present` typed replaces the saved list; a
/// saved flag is turned off by its `--no-…` twin).
fn leave_out_args(
    given: &matches::Given,
    now: LeaveOutArgs,
    saved: crate::fs::leave_out::LeaveOut,
) -> LeaveOutArgs {
    let typed = |id: &str| given.has(id);
    let flag = |on: &str, off: &str, saved: bool| !typed(off) && (typed(on) || saved);
    LeaveOutArgs {
        exclude_caches: flag("exclude_caches", "no_exclude_caches", saved.exclude_caches),
        no_exclude_caches: false,
        exclude_if_present: pick(
            typed("exclude_if_present"),
            now.exclude_if_present,
            saved.if_present,
        ),
        one_file_system: flag("one_file_system", "no_one_file_system", saved.one_file_system),
        no_one_file_system: false,
        exclude_larger_than: pick(
            typed("exclude_larger_than"),
            now.exclude_larger_than,
            saved.larger_than,
        ),
    }
}

/// The KMS key of a run by name: the one typed, else the saved one while
/// the run's `--sse` (typed or saved) is a KMS one; a saved key goes with
/// the saved `--sse aws:kms`, not with a typed `--sse AES256` or `--no-sse`.
fn kms_key(
    given: &matches::Given,
    typed: Option<String>,
    saved: Option<String>,
    sse: Option<&str>,
) -> Option<String> {
    if given.has("sse_kms_key_id") {
        typed
    } else if sse.is_some_and(|s| s.starts_with("aws:kms")) {
        saved
    } else {
        None
    }
}

/// The saved options of a named set's row.
fn saved_of(name: &str, row: &NamedSet) -> Result<SavedBackup, SetError> {
    serde_json::from_str(&row.options).map_err(|e| SetError::Corrupt(name.to_string(), e.to_string()))
}

/// The set named `name` in the state file at `state_path`, if the file
/// exists and has one.
fn find(state_path: &Path, name: &str) -> Result<Option<NamedSet>, SetError> {
    if !state_path.exists() {
        return Ok(None);
    }
    // A backup is about to open it as a writer anyway: this may migrate it.
    Ok(StateDb::open(state_path)?.named_set(name)?)
}

/// Refuses to save SOURCE and TARGET under the new name `name` when
/// another name holds them: the set's row is found by SOURCE and TARGET,
/// so saving would rename it (and replace its options) under a cron line
/// that runs it by its name.
fn refuse_rename(state_path: &Path, name: &str, source: &Path, target: &Target) -> Result<(), SetError> {
    if !state_path.exists() {
        return Ok(());
    }
    let db = StateDb::open(state_path)?;
    let (source_text, target_text) = (source.to_string_lossy(), target.to_string());
    for set in db.sets()? {
        let Some(saved_name) = set.name.filter(|n| n != name) else {
            continue;
        };
        let saved = db
            .named_set(&saved_name)?
            .and_then(|row| saved_of(&saved_name, &row).ok())
            .unwrap_or_default();
        let same = (set.source == source_text && set.target == target.canonical())
            || (same_path(&saved.source, source) && same_target(&saved.target, target));
        if same {
            return Err(SetError::AlreadySaved {
                name: name.to_string(),
                saved: saved_name,
                set_source: source_text.into_owned(),
                target: target_text,
            });
        }
    }
    Ok(())
}

/// Fills in a `backup --set NAME` command line from the saved set, or
/// checks that a saving one has both SOURCE and TARGET and that NAME is
/// free or already this set's.
///
/// # Errors
/// [`SetError::Unknown`] for a name no set has, [`SetError::DigitsName`]
/// for a new name of digits only, [`SetError::Half`] for
/// SOURCE without TARGET, [`SetError::NameTaken`] for a name another set
/// has, [`SetError::AlreadySaved`] for SOURCE and TARGET saved under
/// another name, [`SetError::Corrupt`] or [`SetError::RelativeTarget`] for saved
/// options that cannot be used, [`SetError::State`] for the state file.
pub fn resolve(args: BackupArgs, state_path: &Path) -> Result<Resolved, SetError> {
    let Some(name) = args.set.clone() else {
        return Ok(Resolved {
            args,
            set_source: None,
            save: false,
        });
    };
    match (&args.source, &args.target) {
        (Some(source), Some(target)) => {
            let source = absolute(source);
            let target = absolute_target(target);
            let set_source = match find(state_path, &name)? {
                None => {
                    if name.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(SetError::DigitsName(name));
                    }
                    refuse_rename(state_path, &name, &source, &target)?;
                    source.to_string_lossy().into_owned()
                }
                Some(row) => {
                    let saved = saved_of(&name, &row).unwrap_or_default();
                    let same_source = same_path(&saved.source, &source)
                        || Path::new(&row.source) == crate::target::real_path(&source);
                    let same_target = same_target(&saved.target, &target) || row.target == target.canonical();
                    if !(same_source && same_target) {
                        return Err(SetError::NameTaken {
                            name,
                            set_source: row.source,
                            target: row.target,
                        });
                    }
                    row.source
                }
            };
            Ok(Resolved {
                args,
                set_source: Some(set_source),
                save: true,
            })
        }
        (None, None) => {
            let row = find(state_path, &name)?.ok_or_else(|| SetError::Unknown(name.clone()))?;
            let saved = saved_of(&name, &row)?;
            Ok(Resolved {
                args: saved.apply(args)?,
                set_source: Some(row.source),
                save: false,
            })
        }
        _ => Err(SetError::Half(name)),
    }
}

/// Saves the options of a `backup SOURCE TARGET --set NAME` run under NAME,
/// for the set `set_id` that run backed up.
///
/// # Errors
/// [`SetError::State`] if the state file cannot be written (or another
/// set took the name meanwhile).
pub fn save(args: &BackupArgs, state_path: &Path, set_id: i64) -> Result<(), SetError> {
    let (Some(name), Some(source), Some(target)) = (&args.set, &args.source, &args.target) else {
        return Ok(());
    };
    let saved = SavedBackup::from_args(args, source, target);
    let db = StateDb::open(state_path)?;
    let json = serde_json::to_string(&saved).map_err(|e| SetError::Corrupt(name.clone(), e.to_string()))?;
    db.name_set(set_id, name, &json)?;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn saved_paths_are_absolute_without_dot_or_dot_dot() {
        for (typed, want) in [
            ("/a/sub1/../src", "/a/src"),
            ("/a/./b/./c/..", "/a/b"),
            ("/../..", "/"),
            ("/a/b/../../..", "/"),
        ] {
            assert_eq!(absolute(Path::new(typed)), PathBuf::from(want), "{typed}");
        }
        let here = std::env::current_dir().unwrap();
        assert_eq!(absolute(Path::new("x/../y")), here.join("y"));
    }
}
