//! `--dry-run`'s prediction of the requests the real run would send
//! (`would_send`): each listed action is counted as the engine would carry
//! it out, with the same multipart threshold, part sizing and copy cutoff
//! ([`crate::backup::transfer`]), plus the history copy of the content it
//! replaces and, at the end ([`super::super::finish`]), the manifest's put.
//!
//! What it cannot see: retries, uploads resumed from a killed run's parts
//! (fewer parts), copies that fall back to an upload (the source changed),
//! history copies of one content kept for several paths (counted each
//! time), and a kept object over the copy cutoff (counted as one copy).

use super::Apply;
use crate::fs::scan::EntryKind;
use crate::plan::Action;
use crate::store::{MAX_SINGLE_OBJECT, RequestCounts};

impl Apply {
    /// Adds what carrying out `action` would send (and `kept`: the copy of
    /// the content it replaces) to the report's `would_send`.
    pub(super) fn predict(&mut self, action: &Action, kept: bool) {
        let limits = self.engine.copy_limits();
        let multipart = self.engine.part_size_of(action_size(action));
        let Some(w) = self.report.would_send.as_mut() else {
            return;
        };
        if kept {
            w.copy += 1;
        }
        match action {
            Action::Upload { entry, .. } => match multipart.filter(|_| entry.kind != EntryKind::Symlink) {
                Some(part_size) => {
                    parts(w, entry.size, part_size);
                    // The parts carry the file (the XML of create and complete is not counted).
                    w.bytes_sent += entry.size;
                }
                None => {
                    w.put += 1;
                    w.bytes_sent += entry.size;
                }
            },
            Action::Copy { entry, .. } if entry.size > limits.cutoff => {
                let part_size = crate::backup::multipart::part_size_for(entry.size, limits.part_size);
                parts(w, entry.size, part_size);
            }
            Action::Copy { .. } => w.copy += 1,
            Action::Touch { entry, .. } if entry.size > MAX_SINGLE_OBJECT => {}
            Action::Touch { .. } => w.copy += 1,
            Action::Delete(row) if row.kind.has_content() => w.delete += 1,
            Action::Delete(_) => {}
        }
    }
}

/// The size of the file an action writes (0 for a delete).
fn action_size(action: &Action) -> u64 {
    match action {
        Action::Upload { entry, .. } | Action::Copy { entry, .. } | Action::Touch { entry, .. } => entry.size,
        Action::Delete(_) => 0,
    }
}

/// A multipart upload or copy of `size` bytes in parts of `part_size`:
/// create, the parts, complete.
fn parts(w: &mut RequestCounts, size: u64, part_size: u64) {
    w.multipart_other += 2;
    w.multipart_parts += size.div_ceil(part_size).max(1);
}
