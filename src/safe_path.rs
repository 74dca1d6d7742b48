//! Keeping restores inside their destination.
//!
//! Every remote name (a key from a listing, a path from a manifest someone
//! else may have written) is checked before anything is written for it:
//! absolute paths, `..` and `.` segments, empty segments and NUL are refused,
//! and so are backslashes where they separate paths (Windows); on Unix a
//! backslash is a plain name byte, and a file named with one is restored.
//! Directories are created one component at a time, and an existing
//! component that is a symlink (or a file) is refused instead of followed,
//! so a link planted inside DEST cannot redirect a write outside.
//! Final files are renamed into place, which replaces a symlink at the final
//! name instead of writing through it.

use std::io;
use std::path::{Path, PathBuf};

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

/// Makes sure every directory of `rel` (all of it when `include_last`,
/// else only its parents) exists under `dest` as a real directory, and
/// returns the deepest one.
pub fn make_dirs(dest: &Path, rel: &str, include_last: bool) -> io::Result<PathBuf> {
    let mut parts: Vec<&str> = rel.split('/').collect();
    if !include_last {
        parts.pop();
    }
    let mut dir = dest.to_path_buf();
    for part in parts {
        dir.push(crate::names::decode(part));
        match std::fs::symlink_metadata(&dir) {
            Ok(md) if md.is_dir() => continue,
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "'{}' is a symlink or file, not a directory; refusing to write through it",
                    dir.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match std::fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && is_real_dir(&dir) => {}
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
    Ok(dir)
}

fn is_real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|md| md.is_dir())
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

    #[cfg(unix)]
    #[test]
    fn never_writes_through_a_symlinked_directory() {
        let dest = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dest.path().join("link")).unwrap();
        assert!(make_dirs(dest.path(), "link/x/file", false).is_err());
        assert!(!outside.path().join("x").exists());
        let made = make_dirs(dest.path(), "a/b/file", false).unwrap();
        assert_eq!(made, dest.path().join("a/b"));
        assert!(made.is_dir());
    }
}
