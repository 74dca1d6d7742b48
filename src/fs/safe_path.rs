//! Keeping restores inside their destination.
//!
//! Every remote name (a key from a listing, a path from a manifest someone
//! else may have written) is checked before anything is written for it:
//! absolute paths, `..` and `.` segments, empty segments and NUL are refused,
//! and so are backslashes where they separate paths (Windows); on Unix a
//! backslash is a plain name byte, and a file named with one is restored.
//! What happens next, in DEST, is [`crate::restore::dest`]'s: directories are
//! reached one component at a time from a handle, never through a link,
//! and final files are renamed into place, which replaces a symlink at the
//! final name instead of writing through it.

/// Checks that a relative path from a remote source is safe to join to DEST.
pub fn validate(rel: &str) -> Result<(), String> {
    let reason = if rel.is_empty() {
        "empty path"
    } else if rel.starts_with('/') {
        "absolute path"
    } else if rel.contains('\0') {
        "NUL in path"
    } else if cfg!(windows) && rel.contains('\\') {
        "backslash in path"
    } else if rel.split('/').any(str::is_empty) {
        "empty path segment"
    } else if rel.split('/').any(|s| s == "..") {
        "'..' segment"
    } else if rel.split('/').any(|s| s == ".") {
        "'.' segment"
    } else {
        return Ok(());
    };
    Err(format!("refusing unsafe path '{}': {reason}", rel.escape_debug()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_hostile_names() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "a/",
            "./a",
            "a\0b",
            "a/.",
        ] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "a/b.txt", "..a", "a..b/c", ".hidden/x"] {
            assert!(validate(good).is_ok(), "{good:?}");
        }
        // One name on Unix, a path on Windows.
        assert_eq!(validate("a\\..\\b").is_ok(), cfg!(unix));
    }
}
