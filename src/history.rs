//! History: the content a backup run replaces or deletes is kept, so every
//! kept snapshot stays restorable on a store without versioning (the
//! default on S3, and all that Garage, many MinIO setups, R2 and the local
//! directory store offer).
//!
//! Before a run overwrites or deletes an object whose content a snapshot
//! may still list, it copies that object server-side (no re-upload) to
//! the *content area*, keyed by the content's blake3:
//!
//! ```text
//! PREFIX/.s3backup/content/<first two hex digits>/<64 hex digits of blake3>
//! ```
//!
//! The same content is kept once however many snapshots or paths name it
//! (the key is its hash), and the two-digit fan-out keeps a local store's
//! directories small (git's object store does the same). The copy carries
//! the tool's object metadata (`blake3`, `mtime`, `mode`, `type` for a
//! symlink) of the first path it was kept for; the manifests hold each
//! path's own. A restore or `verify` takes a snapshot's file from the live
//! key when it still holds the content, and from the content area otherwise.
//! Retention (`snapshots forget --prune`) deletes content objects no kept
//! snapshot lists.
//!
//! On a versioned bucket the version IDs the manifests record already keep
//! old content, so by default ([`HistoryMode::Auto`]) objects with a
//! recorded version are not copied; [`HistoryMode::Both`] copies them too,
//! and [`HistoryMode::Off`] gives a pure mirror (no copies, and snapshots
//! older than the newest may then be unrecoverable where no version is kept).

use serde::{Deserialize, Serialize};

use crate::store::join_key;

/// Where preserved content lives, relative to the target prefix.
pub const CONTENT_DIR: &str = ".s3backup/content";

/// How a backup keeps the content it replaces or deletes (`--history`).
/// Recorded in each manifest's header (`history`), so a reader knows
/// whether to look in the content area.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HistoryMode {
    /// Copy to the content area unless the object has a recorded version
    /// (a versioned bucket keeps it): the default.
    #[default]
    Auto,
    /// Always copy to the content area, versions or not.
    Both,
    /// Never copy: rely on the bucket's versions alone.
    Versions,
    /// Never copy: a pure mirror, as before history existed.
    Off,
}

impl HistoryMode {
    /// The name the command line and manifests use.
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryMode::Auto => "auto",
            HistoryMode::Both => "both",
            HistoryMode::Versions => "versions",
            HistoryMode::Off => "off",
        }
    }

    /// Whether an object about to be replaced or deleted is copied to the
    /// content area first, given whether its state row records a version ID.
    pub fn copies(self, has_version: bool) -> bool {
        match self {
            HistoryMode::Auto => !has_version,
            HistoryMode::Both => true,
            HistoryMode::Versions | HistoryMode::Off => false,
        }
    }
}

/// Whether `text` is a blake3 hash as the tool writes it: 64 lowercase hex digits.
pub fn is_blake3_hex(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The key prefix of the content area under a target prefix, with its
/// trailing `/` (for listings).
pub fn content_prefix(prefix: &str) -> String {
    join_key(prefix, &format!("{CONTENT_DIR}/"))
}

/// The key that holds the content whose blake3 is `blake3` (lowercase hex).
pub fn content_key(prefix: &str, blake3: &str) -> String {
    let fan = blake3.get(..2).unwrap_or("00");
    join_key(prefix, &format!("{CONTENT_DIR}/{fan}/{blake3}"))
}

/// The blake3 a listed key of the content area names, given the area's
/// prefix ([`content_prefix`]); `None` for anything else found there
/// (a stray object, a wrong fan-out directory), which retention leaves alone.
pub fn blake3_of_key<'a>(content_prefix: &str, key: &'a str) -> Option<&'a str> {
    let rest = key.strip_prefix(content_prefix)?;
    let (fan, hash) = rest.split_once('/')?;
    (is_blake3_hex(hash) && hash.get(..2) == Some(fan)).then_some(hash)
}

/// Whether the content area under `prefix` holds anything: one listing
/// request of at most one key. A snapshot whose header and the newest's
/// name no copying mode may still have content there (a run between them
/// kept it: `off`, then `auto`, then `off`), so readers look when it does.
///
/// # Errors
/// The store's error from the listing.
pub async fn area_in_use(
    store: &dyn crate::store::ObjectStore,
    prefix: &str,
) -> Result<bool, crate::store::StoreError> {
    Ok(!store.list_after(&content_prefix(prefix), "", 1).await?.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

    #[test]
    fn content_keys_fan_out_by_the_first_two_digits_and_read_back() {
        assert_eq!(content_key("", H), format!(".s3backup/content/af/{H}"));
        assert_eq!(content_key("p/q", H), format!("p/q/.s3backup/content/af/{H}"));
        let area = content_prefix("p/q");
        assert_eq!(area, "p/q/.s3backup/content/");
        assert_eq!(blake3_of_key(&area, &content_key("p/q", H)), Some(H));
        assert_eq!(blake3_of_key(&area, &format!("{area}00/{H}")), None);
        assert_eq!(blake3_of_key(&area, &format!("{area}af/{}", &H[..63])), None);
        assert_eq!(
            blake3_of_key(&area, &format!("{area}af/{}", H.to_uppercase())),
            None
        );
        assert_eq!(blake3_of_key(&area, "p/q/other"), None);
    }

    #[test]
    fn auto_copies_only_what_no_version_keeps() {
        assert!(HistoryMode::Auto.copies(false));
        assert!(!HistoryMode::Auto.copies(true));
        assert!(HistoryMode::Both.copies(true));
        assert!(!HistoryMode::Versions.copies(false));
        assert!(!HistoryMode::Off.copies(false));
        let json = serde_json::to_string(&HistoryMode::Both).unwrap();
        assert_eq!(json, "\"both\"");
        assert_eq!(HistoryMode::Off.as_str(), "off");
    }
}
