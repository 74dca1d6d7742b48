//! What the commands print on stdout: lines written through [`outln!`],
//! which returns an error instead of panicking when stdout is gone (a
//! closed pipe, `s3backup state files | head -1`, ends the command quietly
//! with exit 0, see [`crate::cli::exit`]), JSON values, and the small
//! formatting helpers the tables share.

use std::io::Write;

use serde::Serialize;

use crate::backup::rebuild::RebuildReport;
use crate::backup::{BackupOptions, BackupReport};
use crate::restore::{RestoreOptions, RestoreReport};
use crate::snapshots::Damage;
use crate::state::{FileRow, RunRow, SetSummary, Stats};
use crate::target::Target;

/// Stdout could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OutputError {
    /// The reader went away (a closed pipe): not an error of the run.
    #[error("stdout was closed")]
    Closed,
    /// Any other failure (a full disk under `> file`, …). The cause is
    /// its source, not part of this text: `{:#}` prints the chain once.
    #[error("writing to stdout")]
    Io(#[source] std::io::Error),
}

impl From<std::io::Error> for OutputError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            OutputError::Closed
        } else {
            OutputError::Io(e)
        }
    }
}

/// Writes `args` to stdout (locked for this one write), reporting a
/// closed pipe as [`OutputError::Closed`] rather than panicking as
/// `print!` does.
pub(crate) fn write(args: std::fmt::Arguments<'_>) -> Result<(), OutputError> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)?;
    Ok(())
}

/// Writes bytes to stdout and flushes them.
pub(crate) fn write_bytes(bytes: &[u8]) -> Result<(), OutputError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}

/// Flushes stdout (before the process ends, so that a closed pipe is
/// seen here rather than ignored by the standard library at exit).
pub(crate) fn flush() -> Result<(), OutputError> {
    std::io::stdout().lock().flush()?;
    Ok(())
}

/// `println!` that returns `Result<(), OutputError>` instead of panicking;
/// the line is shown through [`visible`].
macro_rules! outln {
    () => {
        $crate::cli::output::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write(format_args!(
            "{}\n",
            $crate::cli::output::visible(&format!($($arg)*))
        ))
    };
}
pub(crate) use outln;

/// `eprintln!` that never panics: a message for stderr is dropped when
/// stderr is gone (`2>&1 | head -1` after the reader left), so a closed
/// stderr never ends a run half-way (exit 101) or changes its exit code.
/// The line is shown through [`visible`].
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr().lock(),
            "{}",
            $crate::cli::output::visible(&format!($($arg)*))
        );
    }};
}
pub(crate) use errln;

/// `line` with every control character but a tab written as an escape
/// (`\n`, `\r`, `\x1b`, `\u{9b}`): a file name holding an escape
/// sequence or a line break, printed in a plan line, a failure or a table,
/// can neither drive the terminal nor pass for another line (as `ls`
/// quotes such names). `--json` output is escaped by JSON itself.
pub(crate) fn visible(line: &str) -> std::borrow::Cow<'_, str> {
    use std::fmt::Write as _;
    let shown = |c: char| c == '\t' || !c.is_control();
    if line.chars().all(shown) {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 8);
    for c in line.chars() {
        match c {
            c if shown(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if u32::from(c) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `eprint!` that never panics (see [`errln`]).
macro_rules! errprint {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr().lock(), $($arg)*);
    }};
}
pub(crate) use errprint;

/// Prints `value` as one line of JSON.
pub(crate) fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    raw_line(&super::json::json_line(value)?)?;
    Ok(())
}

/// Writes `text` and a line break as they are (JSON: already escaped).
pub(crate) fn raw_line(text: &str) -> Result<(), OutputError> {
    write(format_args!("{text}\n"))
}

/// A time in nanoseconds since the epoch, as RFC 3339 UTC to the second.
pub(crate) fn human_time_ns(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A byte count as people read it (`1.50 MiB`).
pub(crate) fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// `Ok` for a closed stdout: for the commands whose exit code says how the
/// run went (backup, restore, verify), a reader that stopped early ends the
/// printing but not the reporting of failures on stderr or the exit code.
pub(crate) fn ignore_closed(printed: anyhow::Result<()>) -> anyhow::Result<()> {
    match printed {
        Err(e) if matches!(e.downcast_ref::<OutputError>(), Some(OutputError::Closed)) => Ok(()),
        other => other,
    }
}

/// The summary of a backup (and, for a dry run, its plan lines first);
/// with `quiet` only the plan lines.
pub(crate) fn backup_summary(opts: &BackupOptions, r: &BackupReport, quiet: bool) -> Result<(), OutputError> {
    if r.dry_run {
        for line in &r.planned {
            outln!("{line}")?;
        }
    }
    if quiet {
        return Ok(());
    }
    let verb = if r.dry_run {
        "dry run: would back up"
    } else {
        "backed up"
    };
    outln!("{verb} {} -> {}", opts.source.display(), opts.target)?;
    outln!(
        "  scanned {} files: uploaded {}, copied {}, touched {}, unchanged {}, deleted {}, failed {}, skipped {}",
        r.counts.scanned,
        r.counts.uploaded,
        r.counts.copied,
        r.counts.touched,
        r.counts.unchanged,
        r.counts.deleted,
        r.counts.failed,
        r.skipped
    )?;
    if r.failed_dirs > 0 {
        outln!("  {} directories could not be read", r.failed_dirs)?;
    }
    if r.reserved > 0 {
        outln!("  skipped {} (a reserved name)", crate::fs::scan::RESERVED)?;
    }
    // Beyond the filters' own count: other reasons, or rows `--delete` spared.
    if r.excluded_by.beyond_filters() || r.excluded > r.excluded_by.filters {
        outln!(
            "  excluded {}: {}",
            r.excluded,
            excluded_by(&r.excluded_by, r.excluded)
        )?;
    } else if r.excluded > 0 {
        outln!("  excluded {} by filters", r.excluded)?;
    }
    if r.counts.history_kept > 0 {
        outln!(
            "  {} {} replaced or deleted for older snapshots (in .s3backup/content)",
            if r.dry_run { "would keep" } else { "kept" },
            match r.counts.history_kept {
                1 => "1 object".to_string(),
                n => format!("{n} objects"),
            }
        )?;
    }
    outln!(
        "  {} {} in {:.2} s",
        if r.dry_run { "would send" } else { "sent" },
        indicatif::HumanBytes(r.counts.bytes_sent),
        r.elapsed_ms as f64 / 1000.0
    )?;
    if let Some(key) = &r.snapshot {
        outln!("  snapshot {key}")?;
    }
    Ok(())
}

/// What left paths out, for the summary line: `2 by filters, 3 in cache
/// directories, …`; what is left is rows gone locally that `--delete` spared.
fn excluded_by(by: &crate::fs::leave_out::ExcludedBy, total: u64) -> String {
    let walked = by.filters + by.caches + by.if_present + by.other_device + by.larger_than;
    [
        (by.filters, "by filters"),
        (by.caches, "in cache directories (CACHEDIR.TAG)"),
        (
            by.if_present,
            "in directories with an --exclude-if-present marker",
        ),
        (by.other_device, "mount point(s) not crossed (--one-file-system)"),
        (by.larger_than, "larger than --exclude-larger-than"),
        (total.saturating_sub(walked), "gone locally, kept in the store"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect::<Vec<_>>()
    .join(", ")
}

/// The summary of a restore (and, for a dry run, its plan lines first);
/// with `quiet` only the plan lines.
pub(crate) fn restore_summary(
    opts: &RestoreOptions,
    r: &RestoreReport,
    quiet: bool,
) -> Result<(), OutputError> {
    for line in &r.planned {
        outln!("{line}")?;
    }
    if quiet {
        return Ok(());
    }
    let verb = if r.dry_run {
        "dry run: would restore"
    } else {
        "restored"
    };
    outln!(
        "{verb} {} from {} -> {}",
        opts.target,
        r.source,
        opts.dest.display()
    )?;
    outln!(
        "  {} files: downloaded {}, unchanged {}, kept {}, failed {}; {} directories: restored {}, failed {}",
        r.files,
        r.downloaded,
        r.unchanged,
        r.kept,
        r.failed,
        r.dirs + r.dirs_failed,
        r.dirs,
        r.dirs_failed
    )?;
    if r.excluded > 0 {
        outln!("  excluded {} by filters", r.excluded)?;
    }
    if r.case_clashes > 0 {
        outln!(
            "  {} entr{} not restored: DEST folds letter case and another key lands on the same name there",
            r.case_clashes,
            if r.case_clashes == 1 { "y" } else { "ies" }
        )?;
    }
    if r.names_mapped > 0 {
        outln!(
            "  {} name(s) DEST cannot hold written under stand-ins (README: Names Windows cannot hold)",
            r.names_mapped
        )?;
    }
    // A dry run receives no bodies: it says what the restore would fetch,
    // with no time or rate (it downloaded nothing).
    if r.dry_run {
        return outln!("  would download {}", indicatif::HumanBytes(r.bytes_received));
    }
    outln!(
        "  received {} in {:.2} s",
        indicatif::HumanBytes(r.bytes_received),
        r.elapsed_ms as f64 / 1000.0
    )
}

/// One snapshot as `snapshots --json` prints it. A damaged one has
/// `status: "damaged"` and its `damage`; what only its header could say is
/// `null`, and `created` comes from its ID.
#[derive(Serialize)]
pub(crate) struct SnapshotRow {
    pub(crate) id: String,
    pub(crate) created: String,
    pub(crate) files: Option<u64>,
    pub(crate) bytes: Option<u64>,
    pub(crate) host: Option<String>,
    pub(crate) source: Option<String>,
    /// The run's `--tag`s (none for a damaged one).
    pub(crate) tags: Vec<String>,
    /// "ok" or "damaged".
    pub(crate) status: &'static str,
    /// Why a damaged snapshot cannot be read.
    pub(crate) damage: Option<String>,
    /// The Object Lock its run's writes got (`null` when none is known).
    pub(crate) lock: Option<crate::lock::Retention>,
}

/// The table of `snapshots`.
pub(crate) fn snapshots_table(rows: &[SnapshotRow], target: &Target) -> Result<(), OutputError> {
    if rows.is_empty() {
        return outln!("no snapshots under {target}");
    }
    outln!(
        "{:<50} {:<21} {:>9} {:>11}  source",
        "ID",
        "created",
        "files",
        "size"
    )?;
    for r in rows {
        match (&r.damage, r.files, r.bytes) {
            (None, Some(files), Some(size)) => outln!(
                "{:<50} {:<21} {:>9} {:>11}  {}:{}{}{}",
                r.id,
                r.created,
                files,
                bytes(size),
                r.host.as_deref().unwrap_or_default(),
                r.source.as_deref().unwrap_or_default(),
                if r.tags.is_empty() {
                    String::new()
                } else {
                    format!("  [{}]", r.tags.join(", "))
                },
                r.lock
                    .map(|l| {
                        let held = if l.holds_at(chrono::Utc::now()) {
                            "locked"
                        } else {
                            "lock ended"
                        };
                        format!("  ({held}: {})", l.describe())
                    })
                    .unwrap_or_default()
            )?,
            (damage, ..) => outln!(
                "{:<50} {:<21} {:>9} {:>11}  damaged: {}",
                r.id,
                r.created,
                "-",
                "-",
                damage.as_deref().unwrap_or_default()
            )?,
        }
    }
    Ok(())
}

/// What `snapshots forget` did (or, with `dry_run`, would do).
pub(crate) fn forget_summary(
    removed: &[String],
    kept: usize,
    left_damaged: &[Damage],
    dry_run: bool,
    target: &Target,
) -> Result<(), OutputError> {
    let verb = if dry_run { "would remove" } else { "removed" };
    for id in removed {
        outln!("{verb} {id}")?;
    }
    for d in left_damaged {
        outln!("left alone {} (damaged: {})", d.id, d.reason)?;
    }
    let line = format!("{verb} {} snapshot(s), kept {}", removed.len(), kept);
    if left_damaged.is_empty() {
        outln!("{line}")
    } else {
        outln!(
            "{line}; {} damaged snapshot(s) left alone (name one to remove it: s3backup snapshots forget {target} ID)",
            left_damaged.len()
        )
    }
}

/// The table of `state sets` (and `sets`), its columns as wide as their
/// longest value (see [`crate::cli::table`]).
pub(crate) fn sets_table(sets: Vec<SetSummary>) -> Result<(), OutputError> {
    use crate::cli::table::{Align::*, Table};
    let mut t = Table::new(&[
        ("", "ID", Right),
        ("  ", "name", Left),
        (" ", "files", Right),
        (" ", "size", Right),
        ("  ", "last run", Left),
        (" ", "status", Left),
        ("  ", "source -> target", Left),
    ]);
    for s in sets {
        t.row(vec![
            s.id.to_string(),
            s.name.unwrap_or_else(|| "-".into()),
            s.files.to_string(),
            bytes(s.bytes),
            s.last_run.unwrap_or_else(|| "never".into()),
            s.last_status.unwrap_or_default(),
            format!("{} -> {}", s.source, s.target),
        ]);
    }
    t.print()
}

/// The heading of the `state files` table.
pub(crate) fn files_heading() -> Result<(), OutputError> {
    outln!(
        "{:>4}  {:>11}  {:<20}  {:<12}  {:<34}  {:<20}  path",
        "set",
        "size",
        "mtime",
        "blake3",
        "etag",
        "uploaded"
    )
}

/// One row of `state files`: a table line, or with `json` one JSON object.
pub(crate) fn file_row(set_id: i64, f: &FileRow, json: bool) -> Result<(), OutputError> {
    if json {
        let line = serde_json::json!({
            "set": set_id, "path": f.path, "size": f.size, "mtime_ns": f.mtime_ns,
            "mode": format!("{:o}", f.mode), "blake3": f.blake3, "etag": f.etag,
            "version_id": f.version_id, "uploaded_at": f.uploaded_at,
        });
        let text = super::json::json_line(&line).map_err(|e| OutputError::Io(std::io::Error::other(e)))?;
        return raw_line(&text);
    }
    outln!(
        "{:>4}  {:>11}  {:<20}  {:<12}  {:<34}  {:<20}  {}",
        set_id,
        f.size,
        human_time_ns(f.mtime_ns),
        f.blake3.get(..12).unwrap_or(&f.blake3),
        f.etag,
        human_time_ns(f.uploaded_at.saturating_mul(1_000_000_000)),
        f.path
    )
}

/// `state show`: each record as `key: value` lines, a blank line after each.
pub(crate) fn records(found: &[serde_json::Value]) -> Result<(), OutputError> {
    for f in found {
        if let Some(obj) = f.as_object() {
            for (k, v) in obj {
                outln!(
                    "{k:>12}: {}",
                    v.as_str().map_or_else(|| v.to_string(), str::to_string)
                )?;
            }
            outln!()?;
        }
    }
    Ok(())
}

/// The table of `state runs`, its columns as wide as their longest value
/// (see [`crate::cli::table`]).
pub(crate) fn runs_table(runs: Vec<RunRow>) -> Result<(), OutputError> {
    use crate::cli::table::{Align::*, Table};
    let mut t = Table::new(&[
        ("", "set", Right),
        ("  ", "started", Left),
        (" ", "took", Right),
        ("  ", "status", Left),
        (" ", "scanned", Right),
        (" ", "uploaded", Right),
        (" ", "copied", Right),
        (" ", "touched", Right),
        (" ", "unchanged", Right),
        (" ", "deleted", Right),
        (" ", "failed", Right),
        (" ", "sent", Right),
        (" ", "requests", Right),
        ("  ", "manifest", Left),
    ]);
    for r in runs {
        let c = &r.counts;
        t.row(vec![
            r.set_id.to_string(),
            r.started.clone(),
            r.duration_ms
                .map_or_else(|| "-".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0)),
            r.status.clone(),
            c.scanned.to_string(),
            c.uploaded.to_string(),
            c.copied.to_string(),
            c.touched.to_string(),
            c.unchanged.to_string(),
            c.deleted.to_string(),
            c.failed.to_string(),
            bytes(c.bytes_sent),
            r.requests.total().to_string(),
            r.manifest.or(r.error).unwrap_or_default(),
        ]);
    }
    t.print()
}

/// `state stats`.
pub(crate) fn stats(s: &Stats) -> Result<(), OutputError> {
    outln!(
        "state file  {} ({}, schema {})",
        s.path,
        bytes(s.db_bytes),
        s.schema_version
    )?;
    outln!("sets        {}", s.sets)?;
    outln!("files       {} ({})", s.files, bytes(s.bytes))?;
    outln!("directories {}", s.dirs)?;
    outln!("runs        {}", s.runs)
}

/// What `state rebuild` found.
pub(crate) fn rebuild_summary(set_id: i64, r: &RebuildReport) -> Result<(), OutputError> {
    outln!(
        "rebuilt set {set_id} from snapshot {}: {} files, {} directories",
        r.snapshot,
        r.files,
        r.dirs
    )?;
    outln!(
        "  {} match local files by size and mtime; {} differ and will be hashed by the next backup; {} are missing locally",
        r.matching,
        r.to_hash,
        r.missing_locally
    )?;
    if r.refused > 0 {
        outln!(
            "  {} unsafe, unknown or unreadable manifest lines were skipped",
            r.refused
        )?;
    }
    if r.stale > 0 {
        outln!(
            "  {} files changed in the bucket after that snapshot: the next backup hashes and sends them",
            r.stale
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_escaped() {
        assert!(matches!(
            visible("plain\tname ünï"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            visible("a\u{1b}[31mred\nfake line\r\u{9b}"),
            "a\\x1b[31mred\\nfake line\\r\\u{9b}"
        );
    }
}
