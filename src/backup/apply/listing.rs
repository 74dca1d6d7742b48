//! `--dry-run`: actions listed instead of carried out, counted as if they
//! succeeded, with the old content each would keep in history (a lookup
//! of its path's row in the dry run's copy of the state).

use super::{Apply, lock};
use crate::plan::Action;

impl Apply {
    /// Lists actions for `--dry-run`, counted as if they succeeded (the
    /// old content each would keep in history too).
    pub(super) fn list(&mut self, actions: &[Action], note: &str) {
        for action in actions {
            self.report.planned.push(format!("{}{note}", action.describe()));
            let kept = self.would_keep(action);
            self.predict(action, kept);
            let c = &mut self.report.counts;
            c.history_kept += u64::from(kept);
            match action {
                Action::Upload { entry, .. } => {
                    c.uploaded += 1;
                    c.bytes_sent += entry.size;
                }
                Action::Copy { .. } => c.copied += 1,
                Action::Touch { .. } => c.touched += 1,
                Action::Delete(row) if row.kind.has_content() => c.deleted += 1,
                Action::Delete(_) => {}
            }
        }
    }

    /// Whether `action` would copy the content its path's object holds
    /// into history first (a dry run's count; see `super::keep`).
    fn would_keep(&self, action: &Action) -> bool {
        let (path, new) = match action {
            Action::Delete(row) => return self.engine.keeps(row),
            Action::Touch { .. } => return false,
            Action::Upload { entry, blake3, .. } | Action::Copy { entry, blake3, .. } => {
                (&entry.path, blake3)
            }
        };
        match lock(&self.db).file(self.set_id, path) {
            Ok(Some(old)) => old.blake3 != *new && self.engine.keeps(&old),
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(path = %path, "looking up the row a dry run would replace: {e}");
                false
            }
        }
    }
}
