//! `backup --lock-days N [--lock-mode MODE]` and `--no-lock`: the Object
//! Lock options ([`crate::lock`]), their checks, and how a named set keeps
//! them. The checks that need no store are here (exit 2); whether the
//! bucket has Object Lock is asked by the backup itself (exit 1).

use clap::Args;

use crate::cli::exit::usage;
use crate::lock::{LockMode, MAX_LOCK_DAYS, Retention};
use crate::target::Target;

/// The Object Lock options of a backup.
#[derive(Debug, Args, Clone, Default)]
pub struct LockArgs {
    /// Lock every object version the run writes (and its manifest) for N days (1 to 36500) with S3 Object Lock; the bucket must have Object Lock enabled.
    #[arg(long, value_name = "N", value_parser = parse_lock_days, allow_hyphen_values = true, overrides_with = "no_lock")]
    pub lock_days: Option<u32>,
    /// Retention mode of --lock-days: governance (the default: an administrator with s3:BypassGovernanceRetention can lift it) or compliance (nobody can, until the date).
    #[arg(long, value_name = "MODE", value_parser = parse_lock_mode, overrides_with = "no_lock")]
    pub lock_mode: Option<LockMode>,
    /// Send no --lock-days (the bucket's default retention, if any, applies; turns off a lock saved with --set).
    #[arg(long, overrides_with_all = ["lock_days", "lock_mode"])]
    pub no_lock: bool,
}

/// `--lock-days N`: a whole number of days from 1 to [`MAX_LOCK_DAYS`].
fn parse_lock_days(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(days @ 1..=MAX_LOCK_DAYS) => Ok(days),
        Ok(0) => Err("0 days locks nothing: give 1 or more, or leave --lock-days out".into()),
        _ => Err(format!(
            "'{text}' is not a number of days from 1 to {MAX_LOCK_DAYS} (100 years)"
        )),
    }
}

/// `--lock-mode MODE`: `governance` or `compliance`.
fn parse_lock_mode(text: &str) -> Result<LockMode, String> {
    [LockMode::Governance, LockMode::Compliance]
        .into_iter()
        .find(|m| m.as_str() == text)
        .ok_or_else(|| format!("unknown lock mode '{text}': give governance or compliance"))
}

/// The retention a run asks for: `--lock-days` days after now, in
/// `--lock-mode` (governance unless given); `None` without `--lock-days`.
///
/// # Errors
/// A [`UsageError`](crate::cli::exit::UsageError) for `--lock-mode`
/// without `--lock-days`, or `--lock-days` on a local store.
pub(crate) fn retention(args: &LockArgs, target: Option<&Target>) -> anyhow::Result<Option<Retention>> {
    let Some(days) = args.lock_days else {
        if let Some(mode) = args.lock_mode {
            usage!(
                "--lock-mode {} needs --lock-days N (typed, or saved with --set)",
                mode.as_str()
            );
        }
        return Ok(None);
    };
    if let Some(Target::Local { root }) = target {
        usage!(
            "--lock-days needs an S3 bucket with Object Lock enabled; {} is a local directory, which cannot lock its files",
            root.display()
        );
    }
    let mode = args.lock_mode.unwrap_or_default();
    Ok(Some(Retention::days_after(mode, chrono::Utc::now(), days)))
}

/// What a named set keeps of the lock options.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SavedLock {
    /// `--lock-days`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_days: Option<u32>,
    /// `--lock-mode`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_mode: Option<LockMode>,
}

impl SavedLock {
    /// The options to save from a run's command line.
    pub(crate) fn from_args(args: &LockArgs) -> SavedLock {
        SavedLock {
            lock_days: args.lock_days,
            lock_mode: args.lock_mode,
        }
    }

    /// A run by name: `--no-lock` drops the saved lock; a typed
    /// `--lock-days` or `--lock-mode` replaces that one value.
    pub(crate) fn apply(&self, typed: impl Fn(&str) -> bool, now: LockArgs) -> LockArgs {
        if typed("no_lock") {
            return LockArgs::default();
        }
        LockArgs {
            lock_days: if typed("lock_days") {
                now.lock_days
            } else {
                self.lock_days
            },
            lock_mode: if typed("lock_mode") {
                now.lock_mode
            } else {
                self.lock_mode
            },
            no_lock: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_days_are_bounded() {
        assert_eq!(parse_lock_days("30"), Ok(30));
        assert_eq!(parse_lock_days("36500"), Ok(36_500));
        for bad in ["0", "36501", "-1", "7d", "", "99999999999"] {
            assert!(parse_lock_days(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_lock_mode("compliance"), Ok(LockMode::Compliance));
        assert!(parse_lock_mode("COMPLIANCE").is_err());
    }

    #[test]
    fn a_set_keeps_or_drops_its_lock() {
        let saved = SavedLock {
            lock_days: Some(30),
            lock_mode: Some(LockMode::Compliance),
        };
        let kept = saved.apply(|_| false, LockArgs::default());
        assert_eq!(
            (kept.lock_days, kept.lock_mode),
            (Some(30), Some(LockMode::Compliance))
        );
        let typed = LockArgs {
            lock_days: Some(7),
            ..LockArgs::default()
        };
        let now = saved.apply(|id| id == "lock_days", typed);
        assert_eq!(
            (now.lock_days, now.lock_mode),
            (Some(7), Some(LockMode::Compliance))
        );
        let dropped = saved.apply(|id| id == "no_lock", LockArgs::default());
        assert_eq!((dropped.lock_days, dropped.lock_mode), (None, None));
    }
}
