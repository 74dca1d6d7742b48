//! From the command line to the engines' options, once (as ripgrep's
//! `HiArgs`): the clap types of [`crate::cli::args`] are checked as a whole
//! here (flag combinations clap cannot express, SOURCE and TARGET after a
//! named set is applied, DEST) and turned into the plain option structs
//! the engines take. A command line that cannot be run as given is a
//! [`UsageError`](crate::cli::exit::UsageError) (exit 2) naming the flag.

use std::path::{Path, PathBuf};

use crate::backup::BackupOptions;
use crate::cli::args::{BackupArgs, FilterArgs, LeaveOutArgs, RestoreArgs, S3Args, VerifyArgs};
use crate::cli::exit::usage;
use crate::fs::filter::Filters;
use crate::fs::leave_out::LeaveOut;
use crate::fs::scan::WalkOptions;
use crate::restore::RestoreOptions;
use crate::store::pace::BandwidthLimit;
use crate::store::{S3Settings, WriteOptions};
use crate::verify::VerifyOptions;

/// What a command line leaves out besides the filters.
pub(crate) fn leave_out(args: &LeaveOutArgs) -> LeaveOut {
    LeaveOut {
        exclude_caches: args.exclude_caches,
        if_present: args.exclude_if_present.clone(),
        one_file_system: args.one_file_system,
        larger_than: args.exclude_larger_than,
    }
}

/// The filters of a command line (reading any `--exclude-from` files).
fn filters(args: &FilterArgs) -> anyhow::Result<Filters> {
    Ok(Filters::ordered(&crate::cli::matches::rules(args))?)
}

/// `--max-bandwidth` of a backup or restore, shared by the run's `--jobs`
/// transfers. 0 is refused (it would never finish): clap refuses it on
/// the command line, this catches one from a saved set.
fn bandwidth(max_bandwidth: Option<u64>, jobs: u16) -> anyhow::Result<Option<BandwidthLimit>> {
    match max_bandwidth {
        Some(0) => usage!("--max-bandwidth must be more than 0 bytes per second"),
        Some(bytes_per_sec) => Ok(Some(BandwidthLimit {
            bytes_per_sec,
            streams: usize::from(jobs),
        })),
        None => Ok(None),
    }
}

impl From<S3Args> for S3Settings {
    fn from(a: S3Args) -> Self {
        S3Settings {
            profile: a.profile,
            region: a.region,
            endpoint_url: a.endpoint_url,
            path_style: a.path_style,
            connect_timeout: std::time::Duration::from_secs(a.connect_timeout),
            read_timeout: std::time::Duration::from_secs(a.read_timeout),
            write: Default::default(),
            bandwidth: None,
        }
    }
}

/// The options of a backup, from its command line with any named set
/// already applied.
///
/// # Errors
/// A [`UsageError`](crate::cli::exit::UsageError) for `--sse-kms-key-id`
/// without `--sse aws:kms`, `--max-bandwidth 0` or a missing SOURCE or
/// TARGET; an error reading an `--exclude-from` file.
pub(crate) fn backup(
    args: BackupArgs,
    state_path: &Path,
    set_source: Option<String>,
    cancel: crate::cancel::Cancel,
) -> anyhow::Result<BackupOptions> {
    if args.write.sse_kms_key_id.is_some()
        && !args
            .write
            .sse
            .as_deref()
            .is_some_and(|s| s.starts_with("aws:kms"))
    {
        match args.write.sse.as_deref() {
            Some(other) => usage!(
                "--sse-kms-key-id needs --sse aws:kms (or aws:kms:dsse), not --sse {other} (typed, or saved with --set)"
            ),
            None => usage!(
                "--sse-kms-key-id needs --sse aws:kms (or aws:kms:dsse), typed or saved with --set; none is given"
            ),
        }
    }
    let bandwidth = bandwidth(args.max_bandwidth, args.jobs)?;
    let lock = crate::cli::lock::retention(&args.lock, args.target.as_ref())?;
    let (Some(source), Some(target)) = (args.source, args.target) else {
        usage!("give SOURCE and TARGET, or --set NAME of a saved set");
    };
    // A local store keeps no checksums: nothing to send it.
    let checksum = args
        .write
        .checksum_algorithm
        .as_deref()
        .filter(|_| !args.write.no_checksum_algorithm && matches!(target, crate::target::Target::S3 { .. }))
        .and_then(crate::fs::checksum::Algorithm::parse);
    Ok(BackupOptions {
        source,
        target,
        state_path: state_path.to_path_buf(),
        set_source,
        delete: args.delete,
        dry_run: args.dry_run,
        walk: WalkOptions {
            follow_symlinks: args.follow_symlinks,
            filters: filters(&args.filters)?,
            ignore_files: true,
            leave_out: leave_out(&args.leave_out),
            // Filled in by the backup, which knows its state file and store.
            own: Default::default(),
        },
        rehash: args.rehash,
        history: args.history,
        tags: args.tags,
        jobs: usize::from(args.jobs),
        multipart_threshold: args.multipart_threshold,
        part_size: args.part_size,
        copy_cutoff: args.copy_cutoff,
        s3: S3Settings {
            write: WriteOptions {
                storage_class: args.write.storage_class,
                sse: args.write.sse,
                sse_kms_key_id: args.write.sse_kms_key_id,
                acl: args.write.acl,
                checksum,
                lock,
            },
            bandwidth,
            ..args.s3.into()
        },
        cancel,
        guard: crate::plan::guard::Guard {
            max_delete: args.max_delete,
            max_change: args.max_change,
            allow_empty_source: args.allow_empty_source,
            allow_device_change: args.allow_device_change,
        },
    })
}

/// The options of a restore.
///
/// # Errors
/// A DEST that cannot be a directory or cannot be written to (see
/// [`check_dest`]); an error reading an `--exclude-from` file.
pub(crate) fn restore(args: RestoreArgs, cancel: crate::cancel::Cancel) -> anyhow::Result<RestoreOptions> {
    let bandwidth = bandwidth(args.max_bandwidth, args.jobs)?;
    check_dest(&args.dest, args.dry_run)?;
    Ok(RestoreOptions {
        target: args.target,
        dest: args.dest,
        snapshot: args.snapshot,
        from_listing: args.from_listing,
        paths: args.paths,
        no_clobber: args.no_clobber,
        preserve_special_bits: args.preserve_special_bits,
        jobs: usize::from(args.jobs),
        filters: filters(&args.filters)?,
        s3: S3Settings {
            bandwidth,
            ..args.s3.into()
        },
        cancel,
        dry_run: args.dry_run,
    })
}

/// The options of a verification; `state_path` remembers `--sample`'s checks.
///
/// # Errors
/// A usage error for `--sample` without `--deep`.
pub(crate) fn verify(args: VerifyArgs, state_path: &Path) -> anyhow::Result<VerifyOptions> {
    if args.sample.is_some() && !args.deep {
        usage!(
            "--sample needs --deep: it chooses which files to download and check (without --deep no file is downloaded)"
        );
    }
    if args.checksums && !matches!(args.target, crate::target::Target::S3 { .. }) {
        usage!(
            "--checksums needs an S3 target: a local store keeps no checksums (--deep reads and checks every file)"
        );
    }
    Ok(VerifyOptions {
        target: args.target,
        snapshot: args.snapshot,
        all: args.all,
        deep: args.deep,
        checksums: args.checksums,
        sample: args.sample,
        state: Some(state_path.to_path_buf()),
        jobs: usize::from(args.jobs),
        s3: args.s3.into(),
    })
}

/// Refuses, with one line and before anything is fetched, a DEST that
/// cannot be a directory (it is a file, or lies under one) or an existing
/// DEST directory this process cannot create files in (permissions, a
/// read-only mount); otherwise every file would fail on its own, each with
/// the same error. The write probe is a temporary file, removed at once;
/// a dry run, which writes nothing, asks the system instead (`access`).
fn check_dest(dest: &Path, dry_run: bool) -> anyhow::Result<()> {
    let shown = dest.display();
    if !dest.is_dir() {
        if dest.exists() {
            anyhow::bail!("DEST '{shown}' exists but is not a directory");
        }
        // The nearest existing ancestor must be a directory to create DEST in.
        if let Some(file) = dest
            .ancestors()
            .skip(1)
            .find(|a| a.exists())
            .filter(|a| !a.is_dir())
        {
            anyhow::bail!(
                "DEST '{shown}' cannot be created: '{}' is not a directory",
                file.display()
            );
        }
        return Ok(());
    }
    if dry_run {
        return writable(dest).map_err(|e| anyhow::anyhow!("cannot write to DEST '{shown}': {e}"));
    }
    match tempfile::Builder::new()
        .prefix(".s3backup-restore-")
        .tempfile_in(dest)
    {
        Ok(_probe) => Ok(()),
        Err(e) => {
            // tempfile's text ends with the probe's random name: leave that out.
            let text = e.to_string();
            let cause = text.split(" at path ").next().unwrap_or(&text);
            anyhow::bail!("cannot write to DEST '{shown}': {cause}")
        }
    }
}

/// Whether this process may create entries in the directory `dir`,
/// without creating one (for a dry run).
#[cfg(unix)]
fn writable(dir: &Path) -> std::io::Result<()> {
    use rustix::fs::{Access, access};
    access(dir, Access::WRITE_OK | Access::EXEC_OK).map_err(std::io::Error::from)
}

/// Elsewhere, a read-only directory is the one case to refuse.
#[cfg(not(unix))]
fn writable(dir: &Path) -> std::io::Result<()> {
    if std::fs::metadata(dir)?.permissions().readonly() {
        return Err(std::io::ErrorKind::PermissionDenied.into());
    }
    Ok(())
}

/// The state file: `--state`, else the default one.
///
/// # Errors
/// When there is no `--state` and no state directory can be found.
pub(crate) fn state_path(state: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match state {
        Some(path) => Ok(path),
        None => crate::state::StateDb::default_path()
            .ok_or_else(|| anyhow::anyhow!("cannot find a state directory: pass --state FILE")),
    }
}

/// The keep rules typed (or saved) as flags, as the policy the engine takes.
pub(crate) fn policy(keep: &crate::cli::args::KeepArgs) -> crate::retention::Policy {
    crate::retention::Policy {
        last: keep.keep_last,
        hourly: keep.keep_hourly,
        daily: keep.keep_daily,
        weekly: keep.keep_weekly,
        monthly: keep.keep_monthly,
        yearly: keep.keep_yearly,
        within_secs: keep.keep_within.map(|d| d.as_secs()),
        tags: keep
            .keep_tag
            .iter()
            .map(|list| list.split(',').map(str::to_string).collect())
            .collect(),
    }
}

/// A saved policy (and `--prune`) as the flags that give it.
pub(crate) fn keep_args(policy: &crate::retention::Policy, prune: bool) -> crate::cli::args::KeepArgs {
    crate::cli::args::KeepArgs {
        keep_last: policy.last,
        keep_hourly: policy.hourly,
        keep_daily: policy.daily,
        keep_weekly: policy.weekly,
        keep_monthly: policy.monthly,
        keep_yearly: policy.yearly,
        keep_within: policy.within_secs.map(std::time::Duration::from_secs),
        keep_tag: policy.tags.iter().map(|list| list.join(",")).collect(),
        prune,
    }
}
