//! What `verify` prints as text: each problem on a line, a summary line
//! per snapshot, `--sample`'s slice and cycle, and `--all`'s total (the
//! `--json` shapes are in `docs/json.md`).

use crate::cli::output::{OutputError, outln};
use crate::verify::VerifyReport;

/// The problems `verify` found, one a line, and its summary line.
pub(crate) fn verify_summary(r: &VerifyReport) -> Result<(), OutputError> {
    for p in r.problems.iter().chain(&r.unreadable_files) {
        if p.path.is_empty() {
            outln!("{:<8} {}", p.kind, p.detail)?;
        } else {
            outln!("{:<8} {}: {}", p.kind, p.path, p.detail)?;
        }
    }
    let how = if r.sample.is_some() {
        "present (the sample's content checked)"
    } else if r.deep {
        "present and content checked"
    } else if r.checksums {
        "present with the checksum recorded"
    } else {
        "present with size and ETag"
    };
    // Kept copies are listed under their blake3, not their ETag: say that
    // only their size was seen, so "ETag" is not claimed for them.
    let how = if r.ok_by_size > 0 && !r.deep && !r.checksums {
        format!("{how} ({} of them kept copies, checked by size)", r.ok_by_size)
    } else {
        how.to_string()
    };
    let damaged_lines = if r.damaged_lines > 0 {
        format!(", {} manifest line(s) unreadable", r.damaged_lines)
    } else {
        String::new()
    };
    // Not checked is neither intact nor damaged: said apart, with why.
    let not_checked = if r.checksums {
        format!(
            ", {} not checked (no checksum recorded, or none kept by the store)",
            r.not_checked
        )
    } else {
        String::new()
    };
    outln!(
        "snapshot {}: {} files, {} {how}, {} missing, {} mismatched, {} unreadable{damaged_lines}{not_checked}",
        r.snapshot,
        r.files,
        r.ok,
        r.missing,
        r.mismatched,
        r.unreadable
    )?;
    if let Some(sample) = &r.sample {
        sample_summary(sample, r.bytes_checked)?;
    }
    Ok(())
}

/// `verify --deep --sample`'s lines: this run's slice and the cycle's progress.
fn sample_summary(s: &crate::verify::sample::SampleReport, bytes: u64) -> Result<(), OutputError> {
    let unreadable = if s.unreadable > 0 {
        format!(", {} of the slice could not be read", s.unreadable)
    } else {
        String::new()
    };
    outln!(
        "  sample {}: checked {} of {} files this run ({} downloaded){unreadable}",
        s.fraction,
        s.checked,
        s.files,
        indicatif::HumanBytes(bytes)
    )?;
    if s.remembered {
        outln!(
            "  cycle: {} of {} files checked intact as they are now, {} not yet; oldest check {}",
            s.covered,
            s.files,
            s.never_checked,
            s.oldest_check.as_deref().unwrap_or("none")
        )
    } else {
        outln!("  no state file: the slice was chosen at random and is not remembered")
    }
}

/// `verify --all`'s text: each snapshot as [`verify_summary`] prints it,
/// a line per damaged snapshot, then the total.
pub(crate) fn verify_all_summary(
    r: &crate::verify::all::AllReport,
    cost: Option<&crate::cost::CostSpec>,
) -> Result<(), OutputError> {
    for one in &r.snapshots {
        verify_summary(one)?;
    }
    for d in &r.damaged {
        outln!("damaged  snapshot {}: {}", d.id, d.reason)?;
    }
    crate::cli::requests::print(&r.requests, cost)?;
    outln!(
        "all {} snapshot(s): {} files, {} intact, {} missing, {} mismatched, {} unreadable, {} damaged snapshot(s)",
        r.snapshots.len() + r.damaged.len(),
        r.files,
        r.ok,
        r.missing,
        r.mismatched,
        r.unreadable,
        r.damaged.len()
    )?;
    if r.snapshots.iter().any(|s| s.checksums) {
        outln!(
            "  {} file(s) not checked: no checksum recorded, or none kept by the store",
            r.not_checked
        )?;
    }
    Ok(())
}
