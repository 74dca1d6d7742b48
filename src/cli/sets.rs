//! Named backup sets: `backup SOURCE TARGET --set NAME` remembers the
//! source, the target and the options in the state file, so a cron line
//! (or a person) runs the same backup with `backup --set NAME`.
//!
//! Running by name takes the saved options; an option given on that
//! command line and different from its default replaces the saved one for
//! that run only (`--dry-run`, `--json` and the global flags always come
//! from the command line). Saving again with SOURCE and TARGET replaces
//! the saved options.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cli::args::{BackupArgs, FilterArgs, S3Args, S3WriteArgs};
use crate::state::StateDb;
use crate::target::Target;

/// What a named set remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedBackup {
    /// Absolute source directory.
    pub source: PathBuf,
    /// Target, as text.
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
    /// `--max-bandwidth`.
    pub max_bandwidth: Option<u64>,
    /// `--exclude`.
    pub exclude: Vec<String>,
    /// `--include`.
    pub include: Vec<String>,
    /// `--exclude-from` (absolute).
    pub exclude_from: Vec<PathBuf>,
    /// `--storage-class`.
    pub storage_class: Option<String>,
    /// `--sse`.
    pub sse: Option<String>,
    /// `--sse-kms-key-id`.
    pub sse_kms_key_id: Option<String>,
    /// `--acl`.
    pub acl: Option<String>,
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
}

/// Why a named set cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    /// No set has the name.
    #[error(
        "no backup set is named '{0}': name one with 's3backup backup SOURCE TARGET --set {0}' ('s3backup sets' lists them)"
    )]
    Unknown(String),
    /// SOURCE without TARGET (or the reverse) with --set.
    #[error("give both SOURCE and TARGET to save the set '{0}', or neither to run it")]
    Half(String),
    /// The saved options do not parse (written by a newer s3backup?).
    #[error("the saved options of set '{0}' cannot be read ({1}); save them again with SOURCE and TARGET")]
    Corrupt(String, String),
    /// The state file.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

impl SavedBackup {
    /// The options of a command line that names SOURCE and TARGET.
    pub fn from_args(args: &BackupArgs, source: &Path, target: &Target) -> Self {
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        Self {
            source: absolute(source),
            target: target.to_string(),
            delete: args.delete,
            follow_symlinks: args.follow_symlinks,
            jobs: args.jobs,
            multipart_threshold: args.multipart_threshold,
            part_size: args.part_size,
            max_bandwidth: args.max_bandwidth,
            exclude: args.filters.exclude.clone(),
            include: args.filters.include.clone(),
            exclude_from: args.filters.exclude_from.iter().map(|p| absolute(p)).collect(),
            storage_class: args.write.storage_class.clone(),
            sse: args.write.sse.clone(),
            sse_kms_key_id: args.write.sse_kms_key_id.clone(),
            acl: args.write.acl.clone(),
            profile: args.s3.profile.clone(),
            region: args.s3.region.clone(),
            endpoint_url: args.s3.endpoint_url.clone(),
            path_style: args.s3.path_style,
            connect_timeout: args.s3.connect_timeout,
            read_timeout: args.s3.read_timeout,
        }
    }

    /// The command line to run: these options, with any option `now` sets
    /// to other than its default taking precedence.
    pub fn apply(self, now: BackupArgs) -> Result<BackupArgs, SetError> {
        let defaults = default_backup_args();
        let name = now.set.clone().unwrap_or_default();
        let target: Target = self
            .target
            .parse()
            .map_err(|e: crate::target::TargetError| SetError::Corrupt(name.clone(), e.to_string()))?;
        let pick = |now: u64, default: u64, saved: u64| if now != default { now } else { saved };
        Ok(BackupArgs {
            source: Some(self.source),
            target: Some(target),
            set: now.set,
            delete: now.delete || self.delete,
            dry_run: now.dry_run,
            follow_symlinks: now.follow_symlinks || self.follow_symlinks,
            // A one-off check, never saved with the set.
            rehash: now.rehash,
            filters: FilterArgs {
                exclude: or_saved(now.filters.exclude, self.exclude),
                include: or_saved(now.filters.include, self.include),
                exclude_from: or_saved(now.filters.exclude_from, self.exclude_from),
            },
            write: S3WriteArgs {
                storage_class: now.write.storage_class.or(self.storage_class),
                sse: now.write.sse.or(self.sse),
                sse_kms_key_id: now.write.sse_kms_key_id.or(self.sse_kms_key_id),
                acl: now.write.acl.or(self.acl),
            },
            max_bandwidth: now.max_bandwidth.or(self.max_bandwidth),
            json: now.json,
            json_progress: now.json_progress,
            jobs: if now.jobs != defaults.jobs {
                now.jobs
            } else {
                self.jobs
            },
            multipart_threshold: pick(
                now.multipart_threshold,
                defaults.multipart_threshold,
                self.multipart_threshold,
            ),
            part_size: pick(now.part_size, defaults.part_size, self.part_size),
            s3: S3Args {
                profile: now.s3.profile.or(self.profile),
                region: now.s3.region.or(self.region),
                endpoint_url: now.s3.endpoint_url.or(self.endpoint_url),
                path_style: now.s3.path_style || self.path_style,
                connect_timeout: pick(
                    now.s3.connect_timeout,
                    defaults.s3.connect_timeout,
                    self.connect_timeout,
                ),
                read_timeout: pick(now.s3.read_timeout, defaults.s3.read_timeout, self.read_timeout),
            },
        })
    }
}

fn or_saved<T>(now: Vec<T>, saved: Vec<T>) -> Vec<T> {
    if now.is_empty() { saved } else { now }
}

/// The defaults clap gives a bare `backup SOURCE TARGET`.
fn default_backup_args() -> BackupArgs {
    use clap::Parser;
    match crate::cli::args::Cli::try_parse_from(["s3backup", "backup", "x", "/x"]) {
        Ok(crate::cli::args::Cli {
            command: crate::cli::args::Command::Backup(args),
            ..
        }) => args,
        // Cannot happen: the line above is a valid command line.
        _ => unreachable!("a bare backup command line parses"),
    }
}

/// Fills in a `backup --set NAME` command line from the saved set, or
/// checks that a saving one has both SOURCE and TARGET.
pub fn resolve(args: BackupArgs, state_path: &Path) -> Result<BackupArgs, SetError> {
    let Some(name) = args.set.clone() else {
        return Ok(args);
    };
    match (&args.source, &args.target) {
        (Some(_), Some(_)) => Ok(args),
        (None, None) => {
            if !state_path.exists() {
                return Err(SetError::Unknown(name));
            }
            let db = StateDb::open(state_path)?;
            let text = db
                .named_set(&name)?
                .ok_or_else(|| SetError::Unknown(name.clone()))?;
            let saved: SavedBackup =
                serde_json::from_str(&text).map_err(|e| SetError::Corrupt(name.clone(), e.to_string()))?;
            saved.apply(args)
        }
        _ => Err(SetError::Half(name)),
    }
}

/// Saves the options of a `backup SOURCE TARGET --set NAME` run under NAME,
/// for the set `set_id` that run backed up.
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
