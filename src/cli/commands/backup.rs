//! `s3backup backup`: apply a named set, build the options, run the
//! backup, save the set, apply the keep rules (typed, or saved with the
//! set) after a run in which every file was backed up, print the summary
//! (or JSON) and the failures.

use std::path::Path;

use crate::backup;
use crate::cli::Exit;
use crate::cli::args::BackupArgs;
use crate::cli::monitor::{Facts, Watch};
use crate::cli::options;
use crate::cli::output::{self, outln, print_json};
use crate::cli::progress::progress_for;
use crate::cli::requests::{self, WithCost};
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
    watch: &mut Watch,
) -> anyhow::Result<Exit> {
    let sets::Resolved {
        args,
        set_source,
        save,
    } = sets::resolve(args, state_path)?;
    watch.configure(&args.monitor, args.dry_run)?;
    if let Some(target) = &args.target {
        watch.identify(
            sets::absolute_target(target).to_string(),
            args.source.as_deref().map(sets::absolute),
            args.set.clone(),
        );
    }
    let saving = (save && !args.dry_run).then(|| args.clone());
    let keep = (!args.no_keep).then(|| (options::policy(&args.keep), args.keep.prune));
    let json = args.json || args.json_progress;
    let json_progress = args.json_progress;
    let cost = args.cost_per_1000.clone();
    let opts = options::backup(args, state_path, set_source, cancel)?;
    let progress = progress_for(json_progress, json, quiet, verbose);
    let ran = backup::run(&opts, progress).await;
    if let (Err(_), Some(saving)) = (&ran, &saving) {
        not_saved(saving);
    }
    let report = match ran {
        Err(backup::BackupError::Refused { target, refusal }) => {
            return refused(&target, &refusal, json.then_some(opts.dry_run), watch);
        }
        other => other?,
    };
    watch.record(facts(&report));
    if let Some(saving) = saving {
        sets::save(&saving, state_path, report.set_id)?;
    }
    let clean = report.counts.failed + report.failed_dirs == 0 && !report.dry_run;
    let rules_waiting = !clean
        && !report.dry_run
        && keep
            .as_ref()
            .is_some_and(|(policy, prune)| *prune || !policy.is_empty());
    let retained = match keep {
        Some((policy, prune)) if clean && (prune || !policy.is_empty()) => {
            Some(retain(&opts, policy, prune).await)
        }
        _ => None,
    };
    let (retention, retain_error) = match retained {
        Some(Ok(r)) => (Some(r), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let printed = if json {
        let with_retention = WithRetention {
            report: &report,
            retention: retention.as_ref(),
        };
        let mut with_cost = WithCost::new(&with_retention, &report.requests, cost.as_ref());
        with_cost.would_cost_usd = cost
            .as_ref()
            .zip(report.would_send.as_ref())
            .map(|(c, w)| c.prices.estimate(w));
        print_json(&with_cost)
    } else {
        output::backup_summary(&opts, &report, quiet)
            .and_then(|()| {
                if quiet {
                    Ok(())
                } else {
                    summary_requests(&report, cost.as_ref())
                }
            })
            .and_then(|()| match &retention {
                Some(r) if !quiet => {
                    outln!("retention: {}", r.policy)?;
                    super::snapshots::forget_text(&r.forget, &opts.target)
                }
                _ => Ok(()),
            })
            .map_err(Into::into)
    };
    output::ignore_closed(printed)?;
    if let Some(e) = retain_error {
        return Err(e.context("the backup is done, but its keep rules could not be applied"));
    }
    Ok(ending(&report, rules_waiting, watch))
}

/// The failures of a finished run on stderr, and its exit code: 3 when
/// some files or directories failed, else 0.
fn ending(report: &backup::BackupReport, rules_waiting: bool, watch: &mut Watch) -> Exit {
    for f in &report.failures {
        crate::cli::output::errln!("error: {}: {}", f.path, f.error);
    }
    if report.failed_dirs > 0 {
        watch.say_error(format!(
            "{} directory(ies) could not be read; what is under them was not backed up",
            report.failed_dirs
        ));
    }
    if report.counts.failed > 0 {
        watch.say_error(format!(
            "{} file(s) were not backed up; run the backup again to retry them",
            report.counts.failed
        ));
    }
    if rules_waiting {
        tracing::warn!(
            "the keep rules were not applied: some files were not backed up (the next complete run applies them)"
        );
    }
    if report.counts.failed + report.failed_dirs > 0 {
        return Exit::Partial;
    }
    Exit::Ok
}

/// What a backup did, for the metrics file and the hooks.
fn facts(report: &backup::BackupReport) -> Facts {
    let c = &report.counts;
    Facts {
        snapshot: report.snapshot.clone(),
        files: vec![
            ("scanned", c.scanned),
            ("uploaded", c.uploaded),
            ("copied", c.copied),
            ("touched", c.touched),
            ("unchanged", c.unchanged),
            ("deleted", c.deleted),
            ("failed", c.failed),
            ("excluded", report.excluded),
            ("history_kept", c.history_kept),
        ],
        ..Facts::with_requests(&report.requests, vec![("sent", c.bytes_sent)])
    }
}

/// The requests line(s) of the summary: what the run sent, and for a dry
/// run what the real run would send.
fn summary_requests(
    report: &backup::BackupReport,
    cost: Option<&crate::cost::CostSpec>,
) -> Result<(), output::OutputError> {
    requests::print(&report.requests, cost)?;
    if let Some(would) = &report.would_send {
        outln!("  {}", requests::line("the backup would send", would))?;
        if let Some(spec) = cost {
            let usd = requests::usd(spec.prices.estimate(would));
            outln!("  its estimated cost: {usd} USD (an estimate, at --cost-per-1000 {spec})")?;
        }
    }
    Ok(())
}

/// Says that a run meant to save a named set's options did not: they are
/// saved with the set only by a run that finishes.
fn not_saved(saving: &BackupArgs) {
    let name = saving.set.as_deref().unwrap_or_default();
    crate::cli::output::errln!(
        "warning: the options of set '{name}' were not saved, since the backup did not finish; run the same command again to save them"
    );
}

/// Reports a run the delete guard or the change tripwire refused: with
/// `--json` (`json_dry_run` is whether it was a dry run) the `refused`
/// object on stdout; then the `error:` line on stderr, and under it the
/// directories most of what would go is in, one a line. Exit 1.
fn refused(
    target: &str,
    refusal: &crate::plan::guard::Refusal,
    json_dry_run: Option<bool>,
    watch: &mut Watch,
) -> anyhow::Result<Exit> {
    let message = refusal.headline(target);
    if let Some(dry_run) = json_dry_run {
        output::ignore_closed(print_json(&serde_json::json!({
            "refused": Refused { target, message: message.clone(), dry_run, refusal },
        })))?;
    }
    watch.say_error(message.clone());
    for d in &refusal.top_dirs {
        let dir = if d.dir == "." { "(top of SOURCE)" } else { &d.dir };
        crate::cli::output::errln!("  {:>8}  {dir}", d.files);
    }
    Ok(Exit::Error)
}

/// A run the delete guard or the change tripwire refused, for `--json`
/// (docs/json.md, "Refused runs").
#[derive(serde::Serialize)]
struct Refused<'a> {
    /// The target, as typed.
    target: &'a str,
    /// The `error:` line's text.
    message: String,
    /// Whether this was a dry run (the real run would be refused the same way).
    dry_run: bool,
    /// Why, what and how many (see [`crate::plan::guard::Refusal`]).
    #[serde(flatten)]
    refusal: &'a crate::plan::guard::Refusal,
}

/// What the keep rules did after the run, for the summary and `--json`.
#[derive(serde::Serialize)]
struct Retained {
    /// The rules, in words ("keep 7 daily, 4 weekly").
    policy: String,
    /// What `forget` (and the prune) did.
    #[serde(flatten)]
    forget: crate::retention::ForgetReport,
}

/// The backup's JSON summary with the `retention` object added.
#[derive(serde::Serialize)]
struct WithRetention<'a> {
    #[serde(flatten)]
    report: &'a backup::BackupReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    retention: Option<&'a Retained>,
}

/// Forgets (and prunes) under the run's target by `policy`.
async fn retain(
    opts: &backup::BackupOptions,
    policy: crate::retention::Policy,
    prune: bool,
) -> anyhow::Result<Retained> {
    use anyhow::Context;
    let text = opts.target.to_string();
    let store = crate::store::open(&opts.target, &opts.s3)
        .await
        .with_context(|| text.clone())?;
    let described = if policy.is_empty() {
        "prune only".to_string()
    } else {
        policy.describe()
    };
    let forget_opts = crate::retention::ForgetOptions {
        policy,
        ids: Vec::new(),
        prune,
        dry_run: false,
        jobs: opts.jobs,
        min_age: crate::retention::prune::DEFAULT_MIN_AGE,
        target: text.clone(),
    };
    let forget = crate::retention::forget(&*store, opts.target.prefix(), &forget_opts)
        .await
        .with_context(|| text.clone())?;
    Ok(Retained {
        policy: described,
        forget,
    })
}
