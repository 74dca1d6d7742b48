//! The inspection commands at the binary's edge: `snapshots`, `verify` and
//! `state`. Each prints a table for people or, with `--json`, the shape
//! documented in `docs/json.md`.

use anyhow::{Context, bail};
use serde::Serialize;

use crate::backup::rebuild;
use crate::cli::Exit;
use crate::cli::args::{ForgetArgs, SnapshotsAction, SnapshotsArgs, StateAction, VerifyArgs};
use crate::snapshots::{self, Damage, Health, Snapshot};
use crate::state::StateDb;
use crate::store;
use crate::target::Target;
use crate::verify::{self, VerifyOptions};

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

fn human_time_ns(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

async fn open_existing_store(
    target: &Target,
    s3: crate::cli::args::S3Args,
) -> anyhow::Result<std::sync::Arc<dyn store::ObjectStore>> {
    let text = target.to_string();
    let store = store::open(target, &s3.into())
        .await
        .with_context(|| text.clone())?;
    if !store.exists().await.with_context(|| text.clone())? {
        bail!("{text} does not exist");
    }
    Ok(store)
}

/// One snapshot as `snapshots --json` prints it. A damaged one has
/// `status: "damaged"` and its `damage`; what only its header could say is
/// `null`, and `created` comes from its ID.
#[derive(Serialize)]
struct SnapshotRow {
    id: String,
    created: String,
    files: Option<u64>,
    bytes: Option<u64>,
    host: Option<String>,
    source: Option<String>,
    /// "ok" or "damaged".
    status: &'static str,
    /// Why a damaged snapshot cannot be read.
    damage: Option<String>,
}

/// `s3backup snapshots [forget]`.
pub async fn snapshots(args: SnapshotsArgs) -> anyhow::Result<Exit> {
    if let Some(SnapshotsAction::Forget(forget_args)) = args.action {
        return forget(forget_args).await;
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
        rows.push(match health {
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
            Health::Damaged(reason) => {
                damaged.push(Damage {
                    id: snap.id.clone(),
                    reason: reason.clone(),
                });
                SnapshotRow {
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
                }
            }
        });
    }
    if args.json {
        print_json(&rows)?;
    } else if rows.is_empty() {
        println!("no snapshots under {target}");
    } else {
        println!(
            "{:<50} {:<21} {:>9} {:>11}  source",
            "ID", "created", "files", "size"
        );
        for r in &rows {
            match (&r.damage, r.files, r.bytes) {
                (None, Some(files), Some(size)) => println!(
                    "{:<50} {:<21} {:>9} {:>11}  {}:{}",
                    r.id,
                    r.created,
                    files,
                    bytes(size),
                    r.host.as_deref().unwrap_or_default(),
                    r.source.as_deref().unwrap_or_default()
                ),
                (damage, ..) => println!(
                    "{:<50} {:<21} {:>9} {:>11}  damaged: {}",
                    r.id,
                    r.created,
                    "-",
                    "-",
                    damage.as_deref().unwrap_or_default()
                ),
            }
        }
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

async fn forget(args: ForgetArgs) -> anyhow::Result<Exit> {
    let target = &args.target;
    let store = open_existing_store(target, args.s3).await?;
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
    let newest_readable = readable.last().map(|s| s.key.clone());
    let mut doomed: Vec<&Snapshot> = if args.keep_last.is_some() || args.keep_within.is_some() {
        snapshots::to_forget(&readable, args.keep_last, args.keep_within, chrono::Utc::now())
    } else {
        Vec::new()
    };
    for id in &args.ids {
        if id == "latest" {
            bail!("snapshots forget never removes 'latest' (the newest readable snapshot)");
        }
        let named = snapshots::resolve(&list, id, &target.to_string())?;
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
        let verb = if args.dry_run { "would remove" } else { "removed" };
        for id in &removed {
            println!("{verb} {id}");
        }
        for d in &left_damaged {
            println!("left alone {} (damaged: {})", d.id, d.reason);
        }
        print!("{verb} {} snapshot(s), kept {}", removed.len(), kept);
        if left_damaged.is_empty() {
            println!();
        } else {
            println!(
                "; {} damaged snapshot(s) left alone (name one to remove it: s3backup snapshots forget {target} ID)",
                left_damaged.len()
            );
        }
    }
    Ok(Exit::Ok)
}

/// `s3backup verify`.
pub async fn verify(args: VerifyArgs) -> anyhow::Result<Exit> {
    let opts = VerifyOptions {
        target: args.target,
        snapshot: args.snapshot,
        deep: args.deep,
        jobs: usize::from(args.jobs),
        s3: args.s3.into(),
    };
    let r = verify::run(&opts).await?;
    if args.json {
        print_json(&r)?;
    } else {
        for p in r.problems.iter().chain(&r.unreadable_files) {
            if p.path.is_empty() {
                println!("{:<8} {}", p.kind, p.detail);
            } else {
                println!("{:<8} {}: {}", p.kind, p.path, p.detail);
            }
        }
        let how = if r.deep {
            "present and content checked"
        } else {
            "present with size and ETag"
        };
        let damaged_lines = if r.damaged_lines > 0 {
            format!(", {} manifest line(s) unreadable", r.damaged_lines)
        } else {
            String::new()
        };
        println!(
            "snapshot {}: {} files, {} {how}, {} missing, {} mismatched, {} unreadable{damaged_lines}",
            r.snapshot, r.files, r.ok, r.missing, r.mismatched, r.unreadable
        );
    }
    verify_exit(&r, &opts.target.to_string())
}

/// The exit code of a verification, with its error line: damage (missing
/// or mismatched files, unreadable manifest lines, damaged newer snapshots
/// passed over) is 1 and takes precedence; files that could only not be
/// read are 3 (partial: run it again), since nothing shows them damaged.
fn verify_exit(r: &verify::VerifyReport, target: &str) -> anyhow::Result<Exit> {
    let damaged = r.missing + r.mismatched + r.damaged_lines;
    if damaged > 0 {
        eprintln!(
            "error: {damaged} file(s) of snapshot {} are not intact in {target}",
            r.snapshot,
        );
        if r.unreadable > 0 {
            eprintln!(
                "error: {} other file(s) could not be read; run verify again to check them",
                r.unreadable
            );
        }
        return Ok(Exit::Error);
    }
    if !r.passed_over.is_empty() {
        eprintln!(
            "error: {} in {target}: checked {}, the newest readable snapshot, instead",
            snapshots::describe_damage(&r.passed_over),
            r.snapshot
        );
        return Ok(Exit::Error);
    }
    if r.unreadable > 0 {
        eprintln!(
            "error: {} file(s) of snapshot {} could not be read from {target} (none found damaged); run verify again to check them",
            r.unreadable, r.snapshot,
        );
        return Ok(Exit::Partial);
    }
    Ok(Exit::Ok)
}

/// `s3backup state …`.
pub async fn state(action: StateAction, path: &std::path::Path) -> anyhow::Result<Exit> {
    let open = || -> anyhow::Result<StateDb> {
        if !path.exists() {
            bail!(
                "no state file at '{}': nothing has been backed up with it yet (pass --state FILE to use another)",
                path.display()
            );
        }
        Ok(StateDb::open_read_only(path)?)
    };
    match action {
        StateAction::Rebuild {
            source,
            target,
            json,
            s3,
        } => return state_rebuild(source, target, json, s3, path).await,
        StateAction::Sets { json } => {
            let db = open()?;
            let sets = db.sets()?;
            if json {
                return print_json(&sets).map(|()| Exit::Ok);
            }
            println!(
                "{:>4}  {:<12} {:>9} {:>11}  {:<20} {:<8}  source -> target",
                "ID", "name", "files", "size", "last run", "status"
            );
            for s in sets {
                println!(
                    "{:>4}  {:<12} {:>9} {:>11}  {:<20} {:<8}  {} -> {}",
                    s.id,
                    s.name.as_deref().unwrap_or("-"),
                    s.files,
                    bytes(s.bytes),
                    s.last_run.unwrap_or_else(|| "never".into()),
                    s.last_status.unwrap_or_default(),
                    s.source,
                    s.target
                );
            }
        }
        StateAction::Files { set, pattern, json } => {
            let db = open()?;
            if let Some(id) = set
                && !db.sets()?.iter().any(|s| s.id == id)
            {
                bail!("no backup set {id} in the state file (see 's3backup state sets')");
            }
            if !json {
                println!(
                    "{:>4}  {:>11}  {:<20}  {:<12}  {:<34}  {:<20}  path",
                    "set", "size", "mtime", "blake3", "etag", "uploaded"
                );
            }
            let pattern = pattern
                .as_deref()
                .map(crate::fs::filter::PathPattern::new)
                .transpose()?;
            let wanted = |path: &str| pattern.as_ref().is_none_or(|p| p.matches(path));
            db.files_matching(set, wanted, |set_id, f| {
                if json {
                    let line = serde_json::json!({
                        "set": set_id, "path": f.path, "size": f.size, "mtime_ns": f.mtime_ns,
                        "mode": format!("{:o}", f.mode), "blake3": f.blake3, "etag": f.etag,
                        "version_id": f.version_id, "uploaded_at": f.uploaded_at,
                    });
                    println!("{line}");
                } else {
                    println!(
                        "{:>4}  {:>11}  {:<20}  {:<12}  {:<34}  {:<20}  {}",
                        set_id,
                        f.size,
                        human_time_ns(f.mtime_ns),
                        f.blake3.get(..12).unwrap_or(&f.blake3),
                        f.etag,
                        human_time_ns(f.uploaded_at.saturating_mul(1_000_000_000)),
                        f.path
                    );
                }
                Ok(())
            })?;
        }
        StateAction::Show {
            path: wanted,
            set,
            json,
        } => {
            let db = open()?;
            let sets: Vec<i64> = match set {
                Some(id) => vec![id],
                None => db.sets()?.into_iter().map(|s| s.id).collect(),
            };
            let mut found = Vec::new();
            for id in sets {
                if let Some(f) = db.file(id, wanted.trim_matches('/'))? {
                    found.push(serde_json::json!({
                        "set": id, "path": f.path, "type": f.kind.name(),
                        "size": f.size, "mtime_ns": f.mtime_ns, "mode": format!("{:o}", f.mode),
                        "blake3": f.blake3, "etag": f.etag, "version_id": f.version_id, "uploaded_at": f.uploaded_at,
                    }));
                }
            }
            if found.is_empty() {
                bail!("'{wanted}' is not in the state file");
            }
            if json {
                print_json(&found)?;
            } else {
                for f in &found {
                    if let Some(obj) = f.as_object() {
                        for (k, v) in obj {
                            println!(
                                "{k:>12}: {}",
                                v.as_str().map_or_else(|| v.to_string(), str::to_string)
                            );
                        }
                        println!();
                    }
                }
            }
        }
        StateAction::Runs { set, limit, json } => {
            let db = open()?;
            let runs = db.runs(set, limit)?;
            if json {
                return print_json(&runs).map(|()| Exit::Ok);
            }
            println!(
                "{:>4}  {:<20} {:>9}  {:<8} {:>8} {:>8} {:>6} {:>7} {:>9} {:>7} {:>6} {:>11}  manifest",
                "set",
                "started",
                "took",
                "status",
                "scanned",
                "uploaded",
                "copied",
                "touched",
                "unchanged",
                "deleted",
                "failed",
                "sent"
            );
            for r in runs {
                println!(
                    "{:>4}  {:<20} {:>9}  {:<8} {:>8} {:>8} {:>6} {:>7} {:>9} {:>7} {:>6} {:>11}  {}",
                    r.set_id,
                    r.started,
                    r.duration_ms
                        .map_or_else(|| "-".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0)),
                    r.status,
                    r.counts.scanned,
                    r.counts.uploaded,
                    r.counts.copied,
                    r.counts.touched,
                    r.counts.unchanged,
                    r.counts.deleted,
                    r.counts.failed,
                    bytes(r.counts.bytes_sent),
                    r.manifest.or(r.error).unwrap_or_default()
                );
            }
        }
        StateAction::Stats { json } => {
            let db = open()?;
            let s = db.stats()?;
            if json {
                return print_json(&s).map(|()| Exit::Ok);
            }
            println!(
                "state file  {} ({}, schema {})",
                s.path,
                bytes(s.db_bytes),
                s.schema_version
            );
            println!("sets        {}", s.sets);
            println!("files       {} ({})", s.files, bytes(s.bytes));
            println!("directories {}", s.dirs);
            println!("runs        {}", s.runs);
        }
    }
    Ok(Exit::Ok)
}

async fn state_rebuild(
    source: std::path::PathBuf,
    target: Target,
    json: bool,
    s3: crate::cli::args::S3Args,
    path: &std::path::Path,
) -> anyhow::Result<Exit> {
    let source = source
        .canonicalize()
        .with_context(|| format!("source directory '{}'", source.display()))?;
    let store = open_existing_store(&target, s3).await?;
    if snapshots::list(&*store, target.prefix())
        .await
        .with_context(|| target.to_string())?
        .is_empty()
    {
        bail!(
            "no snapshots under {target}: nothing to rebuild from (a backup will upload and record everything)"
        );
    }
    let mut db = StateDb::open(path)?;
    let set_id = db.ensure_set(
        &source.to_string_lossy(),
        &crate::store::set_target(&target, &*store),
    )?;
    let _lock = db.lock_set(set_id)?;
    let report = rebuild::from_latest_manifest(&*store, &target, &mut db, set_id, &source)
        .await
        .with_context(|| format!("rebuilding state for {} -> {target}", source.display()))?;
    let Some(r) = report else {
        bail!(
            "no snapshots under {target}: nothing to rebuild from (a backup will upload and record everything)"
        );
    };
    if json {
        print_json(&r)?;
    } else {
        println!(
            "rebuilt set {set_id} from snapshot {}: {} files, {} directories",
            r.snapshot, r.files, r.dirs
        );
        println!(
            "  {} match local files by size and mtime; {} differ and will be hashed by the next backup; {} are missing locally",
            r.matching, r.to_hash, r.missing_locally
        );
        if r.refused > 0 {
            println!(
                "  {} unsafe, unknown or unreadable manifest lines were skipped",
                r.refused
            );
        }
        if r.stale > 0 {
            println!(
                "  {} files changed in the bucket after that snapshot: the next backup hashes and sends them",
                r.stale
            );
        }
    }
    Ok(Exit::Ok)
}
