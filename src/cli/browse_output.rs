//! What `snapshots diff`, `snapshots ls` and `snapshots find` print: one
//! line per change or entry as it comes (names through
//! [`crate::cli::output::visible`], sizes as people read them), or JSON
//! with exact sizes and names (see `docs/json.md`). Nothing is gathered
//! first: a snapshot of millions of entries prints as it streams.

use serde::Serialize;

use crate::browse::Node;
use crate::browse::diff::{Change, ChangeKind, Count, Diff, Totals};
use crate::cli::json::json_line;
use crate::cli::output::{OutputError, bytes, human_time_ns, outln, raw_line, write};

/// The columns every entry line shares: type, mode, size, mtime.
fn columns(node: &Node) -> String {
    let size = if node.is_dir() {
        "-".to_string()
    } else {
        bytes(node.size)
    };
    format!(
        "{:<7} {:>4} {:>10}  {}",
        node.kind,
        node.mode,
        size,
        human_time_ns(node.mtime_ns)
    )
}

/// One entry of `snapshots ls`, as a line or (`json`) a JSON object.
pub(crate) fn ls_line(path: &str, node: &Node, json: bool) -> anyhow::Result<()> {
    if json {
        #[derive(Serialize)]
        struct Listed<'a> {
            path: &'a str,
            #[serde(flatten)]
            node: &'a Node,
        }
        raw_line(&json_line(&Listed { path, node })?)?;
        return Ok(());
    }
    Ok(outln!("{}  {path}", columns(node))?)
}

/// The heading line of one snapshot's matches in `snapshots find`.
pub(crate) fn find_heading(id: &str, created: &str) -> Result<(), OutputError> {
    outln!("snapshot {id} ({created})")
}

/// One match of `snapshots find`, as an indented line under its
/// snapshot's heading or (`json`) a JSON object naming the snapshot.
pub(crate) fn find_line(id: &str, created: &str, path: &str, node: &Node, json: bool) -> anyhow::Result<()> {
    if json {
        #[derive(Serialize)]
        struct Found<'a> {
            snapshot: &'a str,
            created: &'a str,
            path: &'a str,
            #[serde(flatten)]
            node: &'a Node,
        }
        let found = Found {
            snapshot: id,
            created,
            path,
            node,
        };
        raw_line(&json_line(&found)?)?;
        return Ok(());
    }
    Ok(outln!("  {}  {path}", columns(node))?)
}

/// The last line of `snapshots find`.
pub(crate) fn find_summary(matches: u64, holding: usize, searched: usize) -> Result<(), OutputError> {
    let snapshots = plural(searched as u64, "snapshot", "snapshots");
    if matches == 0 {
        return outln!("found no match in {snapshots}");
    }
    outln!(
        "found {} in {holding} of {snapshots}",
        plural(matches, "match", "matches")
    )
}

/// "1 file", "2 files".
fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `snapshots diff`: a line naming both snapshots, one line per change,
/// and the totals; with `json`, one JSON object (its `changes` array
/// written as the changes come).
pub(crate) fn diff(a: &str, b: &str, diff: Diff, unreadable_lines: u64, json: bool) -> anyhow::Result<()> {
    if json {
        return diff_json(a, b, diff, unreadable_lines);
    }
    outln!("diff {a} -> {b}")?;
    let totals = diff.totals;
    for change in diff {
        outln!("{}", change_line(&change?))?;
    }
    Ok(outln!("total: {}", totals_text(&totals))?)
}

/// `snapshots diff --json`: `{"a":…,"b":…,"totals":…,"unreadable_lines":…,"changes":[…]}` on one line.
fn diff_json(a: &str, b: &str, diff: Diff, unreadable_lines: u64) -> anyhow::Result<()> {
    let head =
        serde_json::json!({"a": a, "b": b, "totals": diff.totals, "unreadable_lines": unreadable_lines});
    let head = json_line(&head)?;
    let open = head.strip_suffix('}').unwrap_or(&head);
    write(format_args!("{open},\"changes\":["))?;
    for (i, change) in diff.enumerate() {
        let comma = if i == 0 { "" } else { "," };
        write(format_args!("{comma}{}", json_line(&change?)?))?;
    }
    Ok(raw_line("]}")?)
}

/// One change as a line: the change, the entry's type and size (B's;
/// A's for a removal), its path (`from -> to` for a rename) and what
/// changed besides.
fn change_line(c: &Change) -> String {
    let Some(node) = c.new.as_ref().or(c.old.as_ref()) else {
        return String::new();
    };
    let size = if node.is_dir() {
        "-".to_string()
    } else {
        bytes(node.size)
    };
    let path = match &c.from {
        Some(from) => format!("{from} -> {}", c.path),
        None => c.path.clone(),
    };
    let detail = match (c.change, &c.old) {
        (ChangeKind::Modified, Some(old)) => format!("  (was {})", bytes(old.size)),
        (ChangeKind::TypeChanged, Some(old)) => format!("  (was {})", old.kind),
        (ChangeKind::Metadata, Some(old)) => metadata_detail(old, node),
        _ => String::new(),
    };
    format!(
        "{:<12} {:<7} {:>10}  {path}{detail}",
        c.change.as_str(),
        node.kind,
        size
    )
}

/// "  (mode 644 -> 755, mtime … -> …)": what a metadata change changed.
fn metadata_detail(old: &Node, new: &Node) -> String {
    let mut parts = Vec::new();
    if old.mode != new.mode {
        parts.push(format!("mode {} -> {}", old.mode, new.mode));
    }
    if old.mtime_ns != new.mtime_ns {
        let (mut was, mut is) = (human_time_ns(old.mtime_ns), human_time_ns(new.mtime_ns));
        if was == is {
            // Apart by less than a second: shown to the nanosecond.
            let precise = |ns| {
                chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
            };
            (was, is) = (precise(old.mtime_ns), precise(new.mtime_ns));
        }
        parts.push(format!("mtime {was} -> {is}"));
    }
    format!("  ({})", parts.join(", "))
}

/// The totals line: each kind of change that happened, with its counts
/// and bytes; "no changes" when none did.
fn totals_text(t: &Totals) -> String {
    let entries = |c: &Count| {
        let mut s = Vec::new();
        if c.files > 0 || c.dirs == 0 {
            s.push(plural(c.files, "file", "files"));
        }
        if c.dirs > 0 {
            s.push(plural(c.dirs, "dir", "dirs"));
        }
        s.join(" + ")
    };
    let mut parts = Vec::new();
    let some = |c: &Count| c.files + c.dirs > 0;
    if some(&t.added) {
        parts.push(format!("added {} ({})", entries(&t.added), bytes(t.added.bytes)));
    }
    if some(&t.removed) {
        parts.push(format!(
            "removed {} ({})",
            entries(&t.removed),
            bytes(t.removed.bytes)
        ));
    }
    let m = &t.modified;
    if m.files > 0 {
        parts.push(format!(
            "modified {} ({} -> {})",
            plural(m.files, "file", "files"),
            bytes(m.old_bytes),
            bytes(m.new_bytes)
        ));
    }
    if some(&t.renamed) {
        parts.push(format!(
            "renamed {} ({})",
            entries(&t.renamed),
            bytes(t.renamed.bytes)
        ));
    }
    if some(&t.metadata) {
        parts.push(format!("metadata only {}", entries(&t.metadata)));
    }
    if some(&t.type_changed) {
        parts.push(format!("type changed {}", entries(&t.type_changed)));
    }
    if parts.is_empty() {
        "no changes".into()
    } else {
        parts.join(", ")
    }
}
