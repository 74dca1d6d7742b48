//! `s3backup snapshots`: list the snapshots under a target (damaged ones
//! included, with their damage, and each one's tags), `snapshots forget`
//! old ones (by restic's keep rules or by ID, then `--prune`), or
//! `snapshots prune` the content no snapshot needs ([`crate::retention`]).

use anyhow::{Context, bail};

use crate::cli::Exit;
use crate::cli::args::{ForgetArgs, PruneArgs, SnapshotsAction, SnapshotsArgs};
use crate::cli::commands::open_existing_store;
use crate::cli::exit::usage;
use crate::cli::options;
use crate::cli::output::{self, OutputError, SnapshotRow, outln, print_json};
use crate::retention::{self, ForgetOptions, ForgetReport, PruneReport};
use crate::snapshots::{self, Damage, Health, Snapshot};
use crate::target::Target;

/// Runs `s3backup snapshots [forget]`.
///
/// # Errors
/// A store that cannot be read, or does not exist.
pub(crate) async fn run(args: SnapshotsArgs) -> anyhow::Result<Exit> {
    match args.action {
        Some(SnapshotsAction::Forget(forget_args)) => return forget(forget_args).await,
        Some(SnapshotsAction::Diff(a)) => return crate::cli::commands::browse::diff(a).await,
        Some(SnapshotsAction::Ls(a)) => return crate::cli::commands::browse::ls(a).await,
        Some(SnapshotsAction::Find(a)) => return crate::cli::commands::browse::find(a).await,
        Some(SnapshotsAction::Prune(prune_args)) => return prune(prune_args).await,
        None => {}
    }
    let Some(target) = args.target else {
        bail!("snapshots: a TARGET is required");
    };
    let store = open_existing_store(&target, args.s3).await?;
    let list = snapshots::list(&*store, target.prefix())
        .await
        .with_context(|| target.to_string())?;
    let health = snapshots::check_all(&*store, &list)
        .await
        .with_context(|| target.to_string())?;
    let mut rows = Vec::with_capacity(list.len());
    let mut damaged = Vec::new();
    for (snap, health) in list.iter().zip(health) {
        if let Health::Damaged(reason) = &health {
            damaged.push(Damage {
                id: snap.id.clone(),
                reason: reason.clone(),
            });
        }
        rows.push(row(snap, health));
    }
    if args.json {
        print_json(&rows)?;
    } else {
        output::snapshots_table(&rows, &target)?;
    }
    if !damaged.is_empty() {
        let what = if damaged.len() == list.len() {
            "no snapshot is readable"
        } else {
            "restores, verify and rebuilds use the newest readable snapshot"
        };
        tracing::warn!("{} in {target}: {what}", snapshots::describe_damage(&damaged));
    }
    Ok(Exit::Ok)
}

/// One snapshot as the listing shows it.
fn row(snap: &Snapshot, health: Health) -> SnapshotRow {
    match health {
        Health::Readable(header) => SnapshotRow {
            id: snap.id.clone(),
            created: header.created,
            files: Some(header.files),
            bytes: Some(header.bytes),
            host: Some(header.host),
            source: Some(header.source),
            tags: header.tags,
            status: "ok",
            damage: None,
            lock: header.lock,
        },
        Health::Damaged(reason) => SnapshotRow {
            id: snap.id.clone(),
            created: snapshots::created(snap)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default(),
            files: None,
            bytes: None,
            host: None,
            source: None,
            tags: Vec::new(),
            status: "damaged",
            damage: Some(reason),
            lock: None,
        },
    }
}

/// `s3backup snapshots forget`: removes the snapshots that the keep rules
/// leave out and those named, never the newest readable one; damaged ones
/// only when named; with `--prune`, then the content only they kept.
async fn forget(args: ForgetArgs) -> anyhow::Result<Exit> {
    if args.ids.iter().any(|id| id == "latest") {
        usage!("snapshots forget never removes 'latest' (the newest readable snapshot)");
    }
    if args.pruning.min_age.is_some() && !args.keep.prune {
        usage!("--min-age says which content a prune keeps: it needs --prune");
    }
    let target = &args.target;
    let store = open_existing_store(target, args.s3.clone()).await?;
    let opts = ForgetOptions {
        policy: options::policy(&args.keep),
        ids: args.ids.clone(),
        prune: args.keep.prune,
        dry_run: args.dry_run,
        jobs: usize::from(args.pruning.jobs),
        min_age: args
            .pruning
            .min_age
            .unwrap_or(crate::retention::prune::DEFAULT_MIN_AGE),
        target: target.to_string(),
    };
    let report = retention::forget(&*store, target.prefix(), &opts)
        .await
        .with_context(|| target.to_string())?;
    if args.json {
        print_json(&report)?;
    } else {
        forget_text(&report, target)?;
    }
    Ok(Exit::Ok)
}

/// `s3backup snapshots prune`: deletes the content no snapshot references.
async fn prune(args: PruneArgs) -> anyhow::Result<Exit> {
    let target = &args.target;
    let store = open_existing_store(target, args.s3.clone()).await?;
    let opts = ForgetOptions {
        dry_run: args.dry_run,
        jobs: usize::from(args.pruning.jobs),
        min_age: args
            .pruning
            .min_age
            .unwrap_or(crate::retention::prune::DEFAULT_MIN_AGE),
        target: target.to_string(),
        ..ForgetOptions::default()
    };
    let report = retention::prune_only(&*store, target.prefix(), &opts)
        .await
        .with_context(|| target.to_string())?;
    if args.json {
        print_json(&report)?;
    } else {
        prune_text(&report)?;
    }
    Ok(Exit::Ok)
}

/// What `forget` did, as text (and the prune's lines when it ran).
pub(crate) fn forget_text(report: &ForgetReport, target: &Target) -> Result<(), OutputError> {
    output::forget_summary(
        &report.removed,
        report.kept,
        &report.damaged,
        report.dry_run,
        target,
    )?;
    locked_text(&report.locked, "snapshot")?;
    match &report.prune {
        Some(prune) => prune_text(prune),
        None => Ok(()),
    }
}

/// The snapshots or content objects kept because Object Lock still
/// holds them, one line each, then how many and until when.
fn locked_text(locked: &[retention::Locked], what: &str) -> Result<(), OutputError> {
    for l in locked {
        outln!("kept {}: locked ({})", l.id, l.lock.describe())?;
    }
    match locked.iter().map(|l| l.lock.until).max() {
        Some(last) => outln!(
            "kept {} locked {what}(s) (S3 Object Lock) until {}: they go on the first forget or prune after their date",
            locked.len(),
            last.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        None => Ok(()),
    }
}

/// What a prune did, as text: in a dry run each object that would go,
/// then one summary line.
pub(crate) fn prune_text(r: &PruneReport) -> Result<(), OutputError> {
    locked_text(&r.locked, "content object")?;
    if r.dry_run {
        for p in &r.deleted {
            outln!("would delete {} ({})", p.key, output::bytes(p.bytes))?;
        }
    }
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    let mut line = format!(
        "prune: {verb} {} content object(s), {} freed; kept {} ({})",
        r.deleted_objects,
        output::bytes(r.deleted_bytes),
        r.kept_objects,
        output::bytes(r.kept_bytes)
    );
    if r.kept_new > 0 {
        line.push_str(&format!(", {} of them newer than the prune", r.kept_new));
    }
    if r.other_objects > 0 {
        line.push_str(&format!("; {} other object(s) left alone", r.other_objects));
    }
    outln!("{line}")
}
