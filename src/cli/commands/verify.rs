//! `s3backup verify`: check a snapshot (or, with `--all`, every snapshot)
//! against the store and say, by the exit code, whether every file is intact.

use crate::cli::Exit;
use crate::cli::args::VerifyArgs;
use crate::cli::monitor::{Facts, Watch};
use crate::cli::options;
use crate::cli::output::{self, print_json};
use crate::cli::requests::{self, WithCost};
use crate::cli::verify_output;
use crate::snapshots;
use crate::verify::all::AllReport;
use crate::verify::{self, VerifyOptions, VerifyReport};

/// Runs `s3backup verify` (see [`verify_exit`] for the codes).
///
/// # Errors
/// A verification that could not be done (no snapshot, no bucket, …).
pub(crate) async fn run(
    args: VerifyArgs,
    state_path: &std::path::Path,
    quiet: bool,
    cancel: crate::cancel::Cancel,
    watch: &mut Watch,
) -> anyhow::Result<Exit> {
    let json = args.json;
    let cost = args.cost_per_1000.clone();
    watch.configure(&args.monitor, false)?;
    watch.identify(
        crate::cli::sets::absolute_target(&args.target).to_string(),
        None,
        None,
    );
    let opts = options::verify(args, state_path)?;
    if opts.all {
        return run_all(&opts, json, quiet, cost.as_ref(), &cancel, watch).await;
    }
    // Verify changes nothing in the store: a signal simply drops it.
    let r = cancel.run(verify::run(&opts)).await??;
    let counted = r.requests.unwrap_or_default();
    let mut files = checked(r.files, r.ok, r.missing, r.mismatched, r.unreadable);
    if let Some(s) = &r.sample {
        files.extend([
            ("sampled", s.checked),
            ("covered", s.covered),
            ("never_checked", s.never_checked),
            ("sample_unreadable", s.unreadable),
        ]);
    }
    watch.record(Facts {
        snapshot: Some(r.snapshot.clone()),
        files,
        ..Facts::with_requests(&counted, vec![("checked", r.bytes_checked)])
    });
    let printed = if json {
        print_json(&WithCost::new(&r, &counted, cost.as_ref()))
    } else if quiet {
        // --quiet: only the error lines (stderr) say anything.
        Ok(())
    } else {
        verify_output::verify_summary(&r)
            .and_then(|()| requests::print(&counted, cost.as_ref()))
            .map_err(Into::into)
    };
    output::ignore_closed(printed)?;
    Ok(verify_exit(&r, &opts.target.to_string(), watch))
}

/// The exit code of a verification, with its error line: damage (missing
/// or mismatched files, unreadable manifest lines, damaged newer snapshots
/// passed over) is 1 and takes precedence; files that could only not be
/// read are 3 (partial: run it again), since nothing shows them damaged.
fn verify_exit(r: &VerifyReport, target: &str, watch: &mut Watch) -> Exit {
    let damaged = r.missing + r.mismatched + r.damaged_lines;
    if damaged > 0 {
        watch.say_error(format!(
            "{damaged} file(s) of snapshot {} are not intact in {target}",
            r.snapshot,
        ));
        if r.unreadable > 0 {
            watch.say_error(format!(
                "{} other file(s) could not be read; run verify again to check them",
                r.unreadable
            ));
        }
        return Exit::Error;
    }
    if !r.passed_over.is_empty() {
        watch.say_error(format!(
            "{} in {target}: checked {}, the newest readable snapshot, instead",
            snapshots::describe_damage(&r.passed_over),
            r.snapshot
        ));
        return Exit::Error;
    }
    if r.unreadable > 0 {
        watch.say_error(format!(
            "{} file(s) of snapshot {} could not be read from {target} (none found damaged); run verify again to check them",
            r.unreadable,
            r.snapshot,
        ));
        return Exit::Partial;
    }
    Exit::Ok
}

/// `verify --all`: every snapshot's line, the damaged ones, the total;
/// exit 1 when any file is damaged or any snapshot unreadable, 3 when
/// files could only not be read, 0 otherwise.
///
/// # Errors
/// A verification that could not be done (no snapshot, no bucket, …).
async fn run_all(
    opts: &VerifyOptions,
    json: bool,
    quiet: bool,
    cost: Option<&crate::cost::CostSpec>,
    cancel: &crate::cancel::Cancel,
    watch: &mut Watch,
) -> anyhow::Result<Exit> {
    let r = cancel.run(verify::all::run(opts)).await??;
    watch.record(Facts {
        snapshot: None,
        files: checked(r.files, r.ok, r.missing, r.mismatched, r.unreadable),
        ..Facts::with_requests(&r.requests, vec![("checked", r.bytes_checked)])
    });
    let printed = if json {
        print_json(&WithCost::new(&r, &r.requests, cost))
    } else if quiet {
        Ok(())
    } else {
        verify_output::verify_all_summary(&r, cost).map_err(Into::into)
    };
    output::ignore_closed(printed)?;
    Ok(verify_all_exit(&r, &opts.target.to_string(), watch))
}

/// The exit code of `verify --all`, with its error line (see [`run_all`]).
fn verify_all_exit(r: &AllReport, target: &str, watch: &mut Watch) -> Exit {
    let damaged_files = r.missing + r.mismatched + r.damaged_lines;
    let bad: Vec<&str> = r
        .snapshots
        .iter()
        .filter(|s| s.missing + s.mismatched + s.damaged_lines > 0)
        .map(|s| s.snapshot.as_str())
        .collect();
    if damaged_files > 0 || !r.damaged.is_empty() {
        if damaged_files > 0 {
            watch.say_error(format!(
                "{damaged_files} file(s) of {} snapshot(s) are not intact in {target}: {}",
                bad.len(),
                bad.join(", ")
            ));
        }
        if !r.damaged.is_empty() {
            watch.say_error(format!("{} in {target}", snapshots::describe_damage(&r.damaged)));
        }
        return Exit::Error;
    }
    if r.unreadable > 0 {
        watch.say_error(format!(
            "{} file(s) could not be read from {target} (none found damaged); run verify again to check them",
            r.unreadable
        ));
        return Exit::Partial;
    }
    Exit::Ok
}

/// A verification's files by outcome, for the metrics file and the hooks.
fn checked(files: u64, ok: u64, missing: u64, mismatched: u64, unreadable: u64) -> Vec<(&'static str, u64)> {
    vec![
        ("checked", files),
        ("ok", ok),
        ("missing", missing),
        ("mismatched", mismatched),
        ("unreadable", unreadable),
    ]
}
