//! `verify --checksums`: the checksum the store keeps for a file's object,
//! asked for with a HEAD in checksum mode (no body downloaded, so no
//! egress), compared with the one `backup --checksum-algorithm` recorded.
//!
//! The verdicts: the same value is intact; another value of the same
//! algorithm is a mismatch (the stored bytes are not the ones sent, or
//! the object was replaced behind the tool's back); a file without a
//! recorded checksum (backed up without the option, a copy the store
//! named none for) or whose object has none, or one of another algorithm,
//! is *not checked*: nothing is known either way. A file held in the
//! content area (history) is compared there when its recorded checksum
//! is a full-object one, which a server-side copy of the same bytes
//! keeps; a composite one (`value-N`, SHA-256 in parts) is not checked.

use super::{Check, Ctx, Problem, ProblemKind, etags_agree};
use crate::fs::checksum::StoredChecksum;
use crate::history;
use crate::manifest::Entry;
use crate::restore::locate::Origin;
use crate::store::StoreError;
use crate::store::retry::{DOWNLOAD_ATTEMPTS, retry_n};

/// The verdict on one file the listing found as recorded (at `key`, or in
/// the content area for [`Origin::ContentFirst`]); with `version`, that
/// version of `key` is asked for, and its size and ETag checked too.
pub(super) async fn check(
    ctx: &Ctx<'_>,
    entry: Entry,
    key: &str,
    origin: Origin,
    version: Option<&str>,
) -> Check {
    let verdict = |kind, detail: String| {
        Check::Problem(Problem {
            path: entry.path.clone(),
            kind,
            detail,
        })
    };
    let Some(recorded) = entry.checksum.as_ref() else {
        return verdict(ProblemKind::NotChecked, "no checksum recorded".into());
    };
    let at = if origin == Origin::ContentFirst {
        if recorded.composite() {
            return verdict(
                ProblemKind::NotChecked,
                "held in the content area, whose copy has no composite checksum".into(),
            );
        }
        history::content_key(&ctx.prefix, &entry.blake3)
    } else {
        key.to_string()
    };
    let what = version.map_or_else(|| format!("'{at}'"), |v| format!("version {v}"));
    let held = match retry_n(DOWNLOAD_ATTEMPTS, &at, || ctx.store.head_checksum(&at, version)).await {
        Ok(h) => h,
        Err(StoreError::NotFound(e)) => return verdict(ProblemKind::Missing, format!("{what}: {e}")),
        Err(e) => return verdict(ProblemKind::Unreadable, format!("{what}: cannot check: {e}")),
    };
    if version.is_some() && (held.size != entry.size || !etags_agree(ctx.store, &held.etag, &entry.etag)) {
        return verdict(
            ProblemKind::Mismatch,
            format!("{what} has size {} and ETag {}", held.size, held.etag),
        );
    }
    match compare(recorded, held.checksum.as_ref()) {
        Ok(()) => Check::Ok,
        Err((kind, why)) => verdict(kind, format!("{what}: {why}")),
    }
}

/// Compares a recorded checksum with the one the store keeps.
fn compare(recorded: &StoredChecksum, held: Option<&StoredChecksum>) -> Result<(), (ProblemKind, String)> {
    match held {
        None => Err((
            ProblemKind::NotChecked,
            "the store keeps no checksum for it".into(),
        )),
        Some(h) if h.algorithm != recorded.algorithm => Err((
            ProblemKind::NotChecked,
            format!(
                "the store keeps a {} checksum, the snapshot recorded {}",
                h.algorithm, recorded.algorithm
            ),
        )),
        Some(h) if h.value == recorded.value => Ok(()),
        Some(h) => Err((
            ProblemKind::Mismatch,
            format!(
                "the store's checksum is {h}, the snapshot recorded {}",
                recorded.value
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::checksum::Algorithm;

    fn sum(a: Algorithm, v: &str) -> StoredChecksum {
        StoredChecksum {
            algorithm: a,
            value: v.into(),
        }
    }

    #[test]
    fn only_the_same_algorithm_is_compared() {
        let rec = sum(Algorithm::Crc64nvme, "AAA=");
        assert!(compare(&rec, Some(&rec)).is_ok());
        let kind = |h: Option<StoredChecksum>| compare(&rec, h.as_ref()).unwrap_err().0;
        assert_eq!(
            kind(Some(sum(Algorithm::Crc64nvme, "BBB="))),
            ProblemKind::Mismatch
        );
        assert_eq!(
            kind(Some(sum(Algorithm::Crc32c, "AAA="))),
            ProblemKind::NotChecked
        );
        assert_eq!(kind(None), ProblemKind::NotChecked);
    }
}
