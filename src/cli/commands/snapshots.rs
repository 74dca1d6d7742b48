//! `s3backup snapshots`: list the snapshots under a target (damaged ones
//! included, with their damage), or `snapshots forget` old ones.

use anyhow::{Context, bail};

use crate::cli::Exit;
use crate::cli::args::{ForgetArgs, SnapshotsAction, SnapshotsArgs};
use crate::cli::commands::open_existing_store;
use crate::cli::exit::usage;
use crate::cli::output::{self, SnapshotRow, print_json};
use crate::snapshots::{self, Damage, Health, Snapshot};

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
            status: "ok",
            damage: None,
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
            status: "damaged",
            damage: Some(reason),
        },
    }
}

/// `s3backup snapshots forget`: removes the snapshots that the keep rules
/// leave out and those named, never the newest readable one; damaged ones
/// only when named.
async fn forget(args: ForgetArgs) -> anyhow::Result<Exit> {
    if args.ids.iter().any(|id| id == "latest") {
        usage!("snapshots forget never removes 'latest' (the newest readable snapshot)");
    }
    let target = &args.target;
    let store = open_existing_store(target, args.s3.clone()).await?;
    let list = snapshots::list(&*store, target.prefix())
        .await
        .with_context(|| target.to_string())?;
    let health = snapshots::check_all(&*store, &list)
        .await
        .with_context(|| target.to_string())?;
    let mut readable = Vec::new();
    let mut damaged = Vec::new();
    for (snap, health) in list.iter().zip(health) {
        match health {
            Health::Readable(_) => readable.push(snap),
            Health::Damaged(reason) => damaged.push((snap, reason)),
        }
    }
    let doomed = doomed(&args, &list, &readable)?;
    let mut removed = Vec::new();
    for snap in &doomed {
        if !args.dry_run {
            store
                .delete(&snap.key)
                .await
                .with_context(|| format!("removing snapshot {}", snap.id))?;
        }
        removed.push(snap.id.clone());
    }
    let left_damaged: Vec<Damage> = damaged
        .into_iter()
        .filter(|(s, _)| !doomed.iter().any(|d| d.key == s.key))
        .map(|(s, reason)| Damage {
            id: s.id.clone(),
            reason,
        })
        .collect();
    let kept = readable
        .iter()
        .filter(|s| !doomed.iter().any(|d| d.key == s.key))
        .count();
    if args.json {
        print_json(&serde_json::json!({
            "dry_run": args.dry_run,
            "removed": removed,
            "kept": kept,
            "damaged": left_damaged,
        }))?;
    } else {
        output::forget_summary(&removed, kept, &left_damaged, args.dry_run, target)?;
    }
    Ok(Exit::Ok)
}

/// The snapshots `forget` removes, sorted by ID: those the keep rules
/// leave out of `readable`, and those named by ID.
fn doomed<'a>(
    args: &ForgetArgs,
    list: &'a [Snapshot],
    readable: &[&'a Snapshot],
) -> anyhow::Result<Vec<&'a Snapshot>> {
    let target = &args.target;
    let newest_readable = readable.last().map(|s| s.key.clone());
    let mut doomed: Vec<&Snapshot> = if args.keep_last.is_some() || args.keep_within.is_some() {
        snapshots::to_forget(readable, args.keep_last, args.keep_within, chrono::Utc::now())
    } else {
        Vec::new()
    };
    for id in &args.ids {
        let named = snapshots::resolve(list, id, &target.to_string())?;
        if newest_readable.as_ref() == Some(&named.key) {
            bail!(
                "snapshot {} is the newest readable snapshot ('latest'): snapshots forget never removes it",
                named.id
            );
        }
        if !doomed.iter().any(|s| s.key == named.key) {
            doomed.push(named);
        }
    }
    doomed.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(doomed)
}
