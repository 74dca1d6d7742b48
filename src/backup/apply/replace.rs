//! Paths whose type changed, and the filters: the rows of the old
//! entries are deleted before anything is written there (see
//! [`crate::plan`]), except those a filter leaves out. README promises a
//! path a filter leaves out is never deleted, and a type change is no
//! exception: `cache/` backed up, then excluded (`--exclude 'cache/'`),
//! then replaced by a file `cache` keeps every object under `cache/`.
//!
//! The rows are put through the walk's own decision ([`spare`], as for
//! `--delete`), each as the kind it was: a file row as a file, rows under
//! a directory with their directories. Rows with an object that a filter
//! leaves out are kept (and so is a directory row above one of them);
//! the rest are deleted as before. A kept object then stands where the new
//! entry would go (a file `cache` and objects under `cache/` cannot both
//! be in one tree: a restore could give only one), so every entry that
//! conflicts with one fails for the run with a message naming the kept
//! path (exit 3), and nothing is deleted. An entry the filter leaves out
//! too never reaches this point: then nothing happens at all.

use super::{Apply, BackupError};
use crate::backup::spare;
use crate::plan::{self, Action};
use crate::state::FileRow;

impl Apply {
    /// Deletes the objects (and rows) of paths whose type changed, before
    /// anything is written there: counted as deleted, logged with `-v`. A
    /// path whose delete fails keeps its row and blocks every write that
    /// conflicts with it for the rest of the run (reported, exit 3), so
    /// nothing is written through or beside an old object still there.
    /// Rows a filter leaves out are kept, and block the same way (see the
    /// module doc).
    pub(in crate::backup) async fn replace(&mut self, rows: Vec<FileRow>) -> Result<(), BackupError> {
        if rows.is_empty() {
            return Ok(());
        }
        let rows = self.keep_filtered(rows).await;
        for row in &rows {
            tracing::info!(path = %row.path, kind = row.kind.name(), "replaced: type changed");
        }
        let before = self.failures.len();
        let deletes = rows.into_iter().map(Action::Delete).collect();
        self.run(deletes, " (replaced: type changed)").await?;
        let failed: Vec<String> = self.failures[before..].iter().map(|f| f.path.clone()).collect();
        self.blocked.extend(failed);
        Ok(())
    }

    /// Takes out of `rows` those a filter leaves out (with the directory
    /// rows above them), remembering the paths of their objects as kept;
    /// returns the rows to delete.
    async fn keep_filtered(&mut self, rows: Vec<FileRow>) -> Vec<FileRow> {
        let mut deletable = rows.clone();
        let engine = &self.engine;
        let spared = spare::spare_filtered(
            &mut deletable,
            &self.source,
            &self.walk,
            &*engine.store,
            &self.prefix,
            engine.jobs,
        )
        .await;
        if spared == 0 {
            return rows;
        }
        let deletable_paths: std::collections::HashSet<&str> =
            deletable.iter().map(|r| r.path.as_str()).collect();
        let kept: Vec<&FileRow> = rows
            .iter()
            .filter(|r| r.kind.has_content() && !deletable_paths.contains(r.path.as_str()))
            .collect();
        for row in &kept {
            tracing::info!(path = %row.path, "kept: left out by a filter (its path changed type)");
            self.kept.push(row.path.clone());
        }
        // A directory row (no object) goes, filtered or not, unless a kept
        // object is under it.
        let keep_dir = |r: &FileRow| kept.iter().any(|k| plan::is_under(&k.path, &r.path));
        rows.iter()
            .filter(|r| {
                if r.kind.has_content() {
                    deletable_paths.contains(r.path.as_str())
                } else {
                    !keep_dir(r)
                }
            })
            .cloned()
            .collect()
    }
}
