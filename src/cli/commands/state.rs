//! `s3backup state …` (and `s3backup sets`): look inside the state file,
//! or rebuild a set's records from the newest snapshot in the store.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::backup::rebuild;
use crate::cli::Exit;
use crate::cli::args::{S3Args, StateAction};
use crate::cli::commands::open_existing_store;
use crate::cli::output::{self, OutputError, print_json};
use crate::cli::values::SetRef;
use crate::snapshots;
use crate::state::StateDb;
use crate::target::Target;

/// Runs `s3backup state ACTION` on the state file at `path`.
///
/// # Errors
/// No state file (except for `rebuild`, which creates it), a set or path
/// that is not in it, or an unreadable state file.
pub(crate) async fn run(action: StateAction, path: &Path) -> anyhow::Result<Exit> {
    match action {
        StateAction::Rebuild {
            source,
            target,
            json,
            s3,
        } => return rebuild(source, target, json, s3, path).await,
        StateAction::Sets { json } => sets(&open(path)?, json)?,
        StateAction::Files { set, pattern, json } => {
            let db = open(path)?;
            let set = set_id(&db, set)?;
            files(&db, set, pattern.as_deref(), json)?;
        }
        StateAction::Show {
            path: wanted,
            set,
            json,
        } => {
            let db = open(path)?;
            let set = set_id(&db, set)?;
            show(&db, &wanted, set, json)?;
        }
        StateAction::Runs { set, limit, json } => {
            let db = open(path)?;
            let set = set_id(&db, set)?;
            let runs = db.runs(set, limit)?;
            if json {
                print_json(&runs)?;
            } else {
                output::runs_table(runs)?;
            }
        }
        StateAction::Stats { json } => {
            let s = open(path)?.stats()?;
            if json {
                print_json(&s)?;
            } else {
                output::stats(&s)?;
            }
        }
    }
    Ok(Exit::Ok)
}

/// Opens an existing state file (inspecting never creates one).
fn open(path: &Path) -> anyhow::Result<StateDb> {
    if !path.exists() {
        bail!(
            "no state file at '{}': nothing has been backed up with it yet (pass --state FILE to use another)",
            path.display()
        );
    }
    Ok(StateDb::open_read_only(path)?)
}

/// The set ID a `--set` names: an ID as it is, a name looked up. Digits
/// are an ID; when a set (named by an older s3backup) has those digits
/// as its name, a note on stderr says which set is shown and how to get
/// the other.
fn set_id(db: &StateDb, set: Option<SetRef>) -> anyhow::Result<Option<i64>> {
    let Some(set) = set else {
        return Ok(None);
    };
    let sets = db.sets()?;
    match set {
        SetRef::Id(id) => {
            let text = id.to_string();
            if let Some(named) = sets
                .iter()
                .find(|s| s.name.as_deref() == Some(&text) && s.id != id)
            {
                crate::cli::output::errln!(
                    "note: --set {id} is read as the set ID {id}; the set named '{id}' has the ID {} (--set {})",
                    named.id,
                    named.id
                );
            }
            Ok(Some(id))
        }
        SetRef::Name(name) => match sets.iter().find(|s| s.name.as_deref() == Some(&name)) {
            Some(s) => Ok(Some(s.id)),
            None => bail!("no backup set is named '{name}' (see 's3backup sets' for names and IDs)"),
        },
    }
}

/// `state sets`: every set, with its totals and last run.
fn sets(db: &StateDb, json: bool) -> anyhow::Result<()> {
    let sets = db.sets()?;
    if json {
        print_json(&sets)
    } else {
        Ok(output::sets_table(sets)?)
    }
}

/// `state files`: the files recorded (of one set, matching a glob), one a
/// line. A closed stdout stops the printing; the rows left are skipped.
fn files(db: &StateDb, set: Option<i64>, pattern: Option<&str>, json: bool) -> anyhow::Result<()> {
    if let Some(id) = set
        && !db.sets()?.iter().any(|s| s.id == id)
    {
        bail!("no backup set {id} in the state file (see 's3backup state sets')");
    }
    if !json {
        output::files_heading()?;
    }
    let pattern = pattern.map(crate::fs::filter::PathPattern::new).transpose()?;
    let wanted = |path: &str| pattern.as_ref().is_none_or(|p| p.matches(path));
    let mut printed: Result<(), OutputError> = Ok(());
    db.files_matching(set, wanted, |set_id, f| {
        if printed.is_ok() {
            printed = output::file_row(set_id, &f, json);
        }
        Ok(())
    })?;
    Ok(printed?)
}

/// `state show PATH`: the record of one path, in every set or one.
fn show(db: &StateDb, wanted: &str, set: Option<i64>, json: bool) -> anyhow::Result<()> {
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
        print_json(&found)
    } else {
        Ok(output::records(&found)?)
    }
}

/// `state rebuild SOURCE TARGET`: the set's records from the newest
/// readable snapshot under TARGET.
async fn rebuild(
    source: PathBuf,
    target: Target,
    json: bool,
    s3: S3Args,
    path: &Path,
) -> anyhow::Result<Exit> {
    let source = crate::fs::winpath::canonicalize(&source)
        .with_context(|| format!("source directory '{}'", source.display()))?;
    crate::fs::fstype::map_source_names(&source, true);
    let store = open_existing_store(&target, s3).await?;
    let nothing = || {
        anyhow::anyhow!(
            "no snapshots under {target}: nothing to rebuild from (a backup will upload and record everything)"
        )
    };
    if snapshots::list(&*store, target.prefix())
        .await
        .with_context(|| target.to_string())?
        .is_empty()
    {
        return Err(nothing());
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
    let r = report.ok_or_else(nothing)?;
    if json {
        print_json(&r)?;
    } else {
        output::rebuild_summary(set_id, &r)?;
    }
    Ok(Exit::Ok)
}
