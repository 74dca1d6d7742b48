//! `s3backup restore`: build the options (DEST checked first), run the
//! restore, print the summary (or JSON), the kept files and the failures.
//! With `--dry-run` the plan's lines come first on stdout (not with
//! `--json`, as for `backup`), and the exit code is the one the restore
//! would have, as far as it can be known without downloading.

use crate::cli::Exit;
use crate::cli::args::RestoreArgs;
use crate::cli::options;
use crate::cli::output::{self, print_json};
use crate::cli::progress::progress_for;
use crate::cli::requests::{self, WithCost};
use crate::restore;

/// Runs `s3backup restore`: 0 when every file was restored, 3 when some
/// failed (or, in a dry run, would), 1 when the listing or manifest
/// stopped part way.
///
/// # Errors
/// A DEST that cannot be written, or a restore that could not start.
pub(crate) async fn run(
    args: RestoreArgs,
    quiet: bool,
    verbose: u8,
    cancel: crate::cancel::Cancel,
) -> anyhow::Result<Exit> {
    let json = args.json || args.json_progress;
    let json_progress = args.json_progress;
    let cost = args.cost_per_1000.clone();
    let opts = options::restore(args, cancel)?;
    let progress = progress_for(json_progress, json, quiet, verbose);
    let r = restore::run_with_progress(&opts, progress).await?;
    let printed = if json {
        print_json(&WithCost::new(&r, &r.requests, cost.as_ref()))
    } else {
        output::restore_summary(&opts, &r, quiet)
            .and_then(|()| {
                if quiet {
                    Ok(())
                } else {
                    requests::print(&r.requests, cost.as_ref())
                }
            })
            .map_err(Into::into)
    };
    output::ignore_closed(printed)?;
    // A dry run lists them as `keep` lines (and in `kept_paths`).
    for path in r.kept_paths.iter().filter(|_| !r.dry_run) {
        match r.kept_spelled.get(path) {
            Some(s) => {
                crate::cli::output::errln!("kept (differs from the backup): {path}; DEST spells it '{s}'")
            }
            None => crate::cli::output::errln!("kept (differs from the backup): {path}"),
        }
    }
    for f in &r.failures {
        if f.path.is_empty() {
            crate::cli::output::errln!("error: {}", f.error);
        } else {
            crate::cli::output::errln!("error: {}: {}", f.path, f.error);
        }
    }
    if let Some(stopped) = &r.stopped {
        // Not "some files failed": how many entries were never read is unknown.
        crate::cli::output::errln!("error: {stopped}");
        return Ok(Exit::Error);
    }
    if !r.failures.is_empty() {
        let parts = [
            (r.failed, "file(s)"),
            (r.dirs_failed, "director(ies)"),
            (r.unreadable_entries, "unreadable entr(ies)"),
            (r.paths_not_found, "requested path(s)"),
        ];
        let parts: Vec<String> = parts
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        let not = if r.dry_run {
            "would not be restored"
        } else {
            "were not restored"
        };
        crate::cli::output::errln!("error: {} {not}", parts.join(", "));
        return Ok(Exit::Partial);
    }
    Ok(Exit::Ok)
}
