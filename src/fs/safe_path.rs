//! Keeping restores inside their destination.
//!
//! Every remote name (a key from a listing, a path from a manifest someone
//! else may have written) is checked before anything is written for it:
//! absolute paths, `..` and `.` segments, empty segments and NUL are refused,
//! and so are backslashes where they separate paths (Windows); on Unix a
//! backslash is a plain name byte, and a file named with one is restored.
//! A restore that writes every name through the Windows stand-ins (always
//! on Windows, see [`crate::fs::winname`]) checks with [`validate_mapped`]:
//! there a backslash in a key is one more character of its name, written
//! `＼`, so `..\..\x`, `C:\x` and `\\server\x` are each one name.
//! What happens next, in DEST, is [`crate::restore::dest`]'s: directories are
//! reached one component at a time from a handle, never through a link,
//! and final files are renamed into place, which replaces a symlink at the
//! final name instead of writing through it.

/// Why a remote path was refused: each is a way a name could reach
/// outside DEST or be read as something else than the one name it claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsafe {
    /// The path is empty.
    Empty,
    /// It starts with `/`.
    Absolute,
    /// It holds a NUL byte, which ends a name in every system call.
    Nul,
    /// It holds a backslash, a separator on Windows.
    Backslash,
    /// Two separators in a row, or one at either end.
    EmptySegment,
    /// A `..` segment, which climbs out of the directory.
    DotDot,
    /// A `.` segment, the same directory named twice.
    Dot,
}

impl Unsafe {
    /// The reason in a few words, for messages.
    fn reason(self) -> &'static str {
        match self {
            Unsafe::Empty => "empty path",
            Unsafe::Absolute => "absolute path",
            Unsafe::Nul => "NUL in path",
            Unsafe::Backslash => "backslash in path",
            Unsafe::EmptySegment => "empty path segment",
            Unsafe::DotDot => "'..' segment",
            Unsafe::Dot => "'.' segment",
        }
    }
}

/// A remote path refused before anything is written for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refusing unsafe path '{}': {}", path.escape_debug(), why.reason())]
pub struct UnsafePath {
    /// The path as it came (a key from a listing or a manifest's path).
    pub path: String,
    /// What is wrong with it.
    pub why: Unsafe,
}

/// Checks that a relative path from a remote source is safe to join to DEST.
///
/// # Errors
/// [`UnsafePath`] naming the path and what is wrong with it.
pub fn validate(rel: &str) -> Result<(), UnsafePath> {
    let why = if rel.is_empty() {
        Unsafe::Empty
    } else if rel.starts_with('/') {
        Unsafe::Absolute
    } else if rel.contains('\0') {
        Unsafe::Nul
    } else if cfg!(windows) && rel.contains('\\') {
        Unsafe::Backslash
    } else if rel.split('/').any(str::is_empty) {
        Unsafe::EmptySegment
    } else if rel.split('/').any(|s| s == "..") {
        Unsafe::DotDot
    } else if rel.split('/').any(|s| s == ".") {
        Unsafe::Dot
    } else {
        return Ok(());
    };
    Err(UnsafePath {
        path: rel.to_string(),
        why,
    })
}

/// [`validate`] for a key whose every component is written through
/// [`crate::fs::winname::to_windows`] when `mapped`: a backslash is then
/// a name character (it becomes `＼`, never a separator), and the rest is
/// checked as [`validate`] does.
///
/// # Errors
/// [`UnsafePath`] naming the path (as it came) and what is wrong with it.
pub fn validate_mapped(rel: &str, mapped: bool) -> Result<(), UnsafePath> {
    if mapped && rel.contains('\\') {
        return validate(&rel.replace('\\', "\u{FF3C}")).map_err(|e| UnsafePath {
            path: rel.to_string(),
            why: e.why,
        });
    }
    validate(rel)
}

/// `path` made absolute against the current directory and normalised
/// lexically: no `.` and no `..` (each takes the component before it
/// away, as `cd ..` in a shell does; `/..` is `/`), symlinks not
/// resolved. Named sets save paths so, and a backup asks whether a local
/// store is gone by it (`./gone/../store` names `store`).
pub fn lexical_absolute(path: &std::path::Path) -> std::path::PathBuf {
    use std::path::Component;
    let whole = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = std::path::PathBuf::new();
    for part in whole.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if matches!(out.components().next_back(), Some(Component::Normal(_))) {
                    out.pop();
                }
            }
            other => out.push(other),
        }
    }
    out
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
        assert_eq!(
            validate("a/../b").unwrap_err().to_string(),
            "refusing unsafe path 'a/../b': '..' segment"
        );
        assert_eq!(validate("a\0b").unwrap_err().why, Unsafe::Nul);
        // One name on Unix, a path on Windows.
        assert_eq!(validate("a\\..\\b").is_ok(), cfg!(unix));
    }

    #[test]
    fn a_backslash_is_a_name_character_where_names_are_mapped() {
        for key in [
            "back\\slash",
            "..\\..\\x",
            "C:\\x",
            "\\\\server\\x",
            "d\\/f",
            "\\",
        ] {
            assert!(validate_mapped(key, true).is_ok(), "{key:?}");
            assert_eq!(validate_mapped(key, false).is_ok(), cfg!(unix), "{key:?}");
        }
        for bad in ["../x\\y", "a\\b/..", "/a\\b", "a\\b//c", "a\\b\0"] {
            let e = validate_mapped(bad, true).unwrap_err();
            assert_eq!(e.path, bad);
        }
    }
}
