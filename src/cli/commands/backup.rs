//! `s3backup backup`: apply a named set, build the options, run the
//! backup, save the set, print the summary (or JSON) and the failures.

use std::path::Path;

use crate::backup;
use crate::cli::Exit;
use crate::cli::args::BackupArgs;
use crate::cli::options;
use crate::cli::output::{self, print_json};
use crate::cli::progress::progress_for;
use crate::cli::sets;

/// Runs `s3backup backup`: 0 when every file was backed up, 3 when some
/// failed (each named on stderr).
///
/// # Errors
/// A usage error (see [`options::backup`]), an unknown set, or a backup
/// that could not be done.
pub(crate) async fn run(
    args: BackupArgs,
    state_path: &Path,
    quiet: bool,
    verbose: u8,
    cancel: crate::cancel::Cancel,
) -> anyhow::Result<Exit> {
    let sets::Resolved {
        args,
        set_source,
        save,
    } = sets::resolve(args, state_path)?;
    let saving = (save && !args.dry_run).then(|| args.clone());
    let json = args.json || args.json_progress;
    let json_progress = args.json_progress;
    let opts = options::backup(args, state_path, set_source, cancel)?;
    let progress = progress_for(json_progress, json, quiet, verbose);
    let report = backup::run(&opts, progress).await?;
    if let Some(saving) = saving {
        sets::save(&saving, state_path, report.set_id)?;
    }
    let printed = if json {
        print_json(&report)
    } else {
        output::backup_summary(&opts, &report, quiet).map_err(Into::into)
    };
    output::ignore_closed(printed)?;
    for f in &report.failures {
        crate::cli::output::errln!("error: {}: {}", f.path, f.error);
    }
    if report.failed_dirs > 0 {
        crate::cli::output::errln!(
            "error: {} directory(ies) could not be read; what is under them was not backed up",
            report.failed_dirs
        );
    }
    if report.counts.failed > 0 {
        crate::cli::output::errln!(
            "error: {} file(s) were not backed up; run the backup again to retry them",
            report.counts.failed
        );
    }
    if report.counts.failed + report.failed_dirs > 0 {
        return Ok(Exit::Partial);
    }
    Ok(Exit::Ok)
}
