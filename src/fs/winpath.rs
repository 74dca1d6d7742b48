//! Windows path spellings: recognising them in typed text, and keeping the
//! verbatim prefix `\\?\` out of the paths the tool stores and shows.
//!
//! Windows users type `C:\…`, `C:/…`, `\\server\share\…` and, for long
//! paths, `\\?\C:\…`. [`windows_form`] tells such text apart wherever it is
//! parsed, on every platform, so the target parser can accept it on Windows
//! and refuse it on Unix with a reason (a `C:\x` there is no path the user
//! meant) and its unit tests run on Linux too.
//!
//! `std::fs::canonicalize` on Windows answers in the verbatim form
//! (`\\?\C:\x`, `\\?\UNC\server\share\x`). Kept, it would show up in every
//! message and make `C:\x` and `\\?\C:\x` two backup sets; and a verbatim
//! path takes no `/`, which the tool's keys use. So [`canonicalize`] strips
//! the prefix again whenever the plain spelling names the same file: the
//! standard library adds `\\?\` back by itself for a path longer than 260
//! characters, so length is no reason to keep it. The prefix stays only on
//! paths that need it (a `.` or `..` or `/` inside, a component ending in a
//! dot or a space, a reserved device name such as `CON` or `aux.txt`).

use std::path::{Path, PathBuf};

/// How a text spells a Windows path, if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowsForm {
    /// `C:\…` or `C:/…`: a drive letter and an absolute path on it.
    Drive,
    /// `C:` or `C:x`: relative to the current directory of that drive.
    DriveRelative,
    /// `\\server\share\…`: a network (UNC) path.
    Unc,
    /// `\\?\…`: a verbatim path, passed to the file system as it is.
    Verbatim,
    /// `\\.\…`: a device path (`\\.\COM1`, `\\.\PhysicalDrive0`).
    Device,
    /// `.\…` or `..\…`: relative, written with a backslash.
    Relative,
}

/// The Windows spelling of `text`, if it has one ([`WindowsForm`]).
pub fn windows_form(text: &str) -> Option<WindowsForm> {
    let b = text.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        return Some(match b.get(2) {
            Some(b'\\' | b'/') => WindowsForm::Drive,
            // `C::x` is a bucket form (bucket names are lower case, but
            // `C::x` should get the bucket error, not a path one).
            Some(b':') => return None,
            _ => WindowsForm::DriveRelative,
        });
    }
    if text.starts_with(r"\\?\") {
        return Some(WindowsForm::Verbatim);
    }
    if text.starts_with(r"\\.\") {
        return Some(WindowsForm::Device);
    }
    if text.starts_with(r"\\") {
        return Some(WindowsForm::Unc);
    }
    if text.starts_with(r".\") || text.starts_with(r"..\") {
        return Some(WindowsForm::Relative);
    }
    None
}

/// Why a typed SOURCE or DEST directory is refused: a spelling that names
/// no single directory on this system.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirSpellingError {
    /// A Windows spelling on a system that is not Windows, where `E:\x`
    /// or `C:x` would quietly become a directory literally so named in the
    /// current directory.
    #[error(
        "'{0}' is a Windows path, and this is not Windows: give this system's path (e.g. /mnt/e/x), or ./{0} for a directory with that name here"
    )]
    NotWindows(String),
    /// `C:x` on Windows: relative to the current directory of drive `C:`,
    /// which each process keeps apart and no one sees.
    #[error(
        "'{text}' is relative to the current directory of drive {drive}; write the full path, e.g. {drive}\\{rest}"
    )]
    DriveRelative {
        /// The path as typed.
        text: String,
        /// `C:`.
        drive: String,
        /// What follows the drive (`rel` of `C:rel`).
        rest: String,
    },
    /// `file://` followed by no absolute path (`file://host/x`,
    /// `file://relative`): a URL naming a host, or none.
    #[error(
        "'{0}' is not a local directory: a file:// URL takes an absolute path, file:///path (or file://./path)"
    )]
    FileUrl(String),
    /// `\\.\X`: a device, not a directory.
    #[error("'{0}' is a device path (\\\\.\\), not a directory")]
    Device(String),
}

/// Checks the text of a SOURCE or DEST directory for a Windows spelling it
/// cannot mean here ([`DirSpellingError`]): every Windows form outside
/// Windows (`E:\x`, `C:x`, `\\srv\share`, `.\x`), and on Windows a drive
/// without its root (`C:rel`, a bare `E:`) and a device path.
///
/// # Errors
/// [`DirSpellingError`] naming the text and how to write it.
pub fn check_dir_spelling(text: &str) -> Result<(), DirSpellingError> {
    let Some(form) = windows_form(text) else {
        return Ok(());
    };
    if !cfg!(windows) {
        return Err(DirSpellingError::NotWindows(text.to_string()));
    }
    match form {
        WindowsForm::DriveRelative => Err(DirSpellingError::DriveRelative {
            text: text.to_string(),
            drive: text[..2].to_string(),
            rest: text[2..].to_string(),
        }),
        WindowsForm::Device => Err(DirSpellingError::Device(text.to_string())),
        _ => Ok(()),
    }
}

/// The directory a `file://` URL given as SOURCE or DEST names, read as
/// a TARGET's is ([`crate::target::Target`]): `file:///abs/path`,
/// `file://./rel` (and `file://../rel`), on Windows `file:///C:/x` for
/// `C:/x`; the rest is taken as it is (no `%` decoding, as for TARGET).
/// `None` when `text` is not a `file://` URL.
///
/// # Errors
/// [`DirSpellingError::FileUrl`] for a URL naming a host or no path.
pub fn from_file_url(text: &str) -> Option<Result<String, DirSpellingError>> {
    let rest = text.strip_prefix("file://")?;
    let explicit = rest.starts_with('/')
        || rest.starts_with("./")
        || rest.starts_with("../")
        || rest == "."
        || rest == "..";
    if !explicit {
        return Some(Err(DirSpellingError::FileUrl(text.to_string())));
    }
    if cfg!(windows)
        && let Some(drive) = rest.strip_prefix('/')
        && windows_form(drive) == Some(WindowsForm::Drive)
    {
        return Some(Ok(drive.to_string()));
    }
    Some(Ok(rest.to_string()))
}

/// The plain spelling of a verbatim path text (`\\?\C:\x` → `C:\x`,
/// `\\?\UNC\srv\share\x` → `\\srv\share\x`), or None when `text` is not
/// verbatim or its plain spelling would name another file (see the
/// module doc).
pub fn strip_verbatim(text: &str) -> Option<String> {
    let rest = text.strip_prefix(r"\\?\")?;
    let (plain, tail) = if let Some(unc) = rest.strip_prefix(r"UNC\") {
        (format!(r"\\{unc}"), unc)
    } else {
        let b = rest.as_bytes();
        if !(b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\') {
            return None;
        }
        (rest.to_string(), &rest[3..])
    };
    if tail.contains('/') || !tail.split('\\').all(plain_component) {
        return None;
    }
    Some(plain)
}

/// Whether a path component means the same with and without `\\?\`.
fn plain_component(name: &str) -> bool {
    if name.is_empty() {
        // A trailing `\` (`C:\`), not `a\\b`.
        return true;
    }
    if name == "." || name == ".." || name.ends_with('.') || name.ends_with(' ') {
        return false;
    }
    !is_reserved_device(name)
}

/// Whether Windows takes `name` for a device (`CON`, `nul.txt`, `COM1`),
/// whatever its case or extension.
pub fn is_reserved_device(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    let upper = stem.to_ascii_uppercase();
    if matches!(
        upper.as_str(),
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$"
    ) {
        return true;
    }
    match upper.strip_prefix("COM").or_else(|| upper.strip_prefix("LPT")) {
        Some(n) => matches!(
            n,
            "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9" | "¹" | "²" | "³"
        ),
        None => false,
    }
}

/// `path` without a verbatim prefix it does not need ([`strip_verbatim`]);
/// unchanged on Unix.
pub fn plain(path: PathBuf) -> PathBuf {
    if cfg!(windows)
        && let Some(text) = path.to_str()
        && let Some(plain) = strip_verbatim(text)
    {
        return PathBuf::from(plain);
    }
    path
}

/// Clears the read-only attribute of the file `name` in `dir` before it is
/// removed or replaced, and says whether it was set. On Windows a
/// read-only file can be neither deleted nor renamed over, and that
/// attribute is what the owner-write bit maps to: a restore of a file
/// with mode `0444`, or a store object a Unix backup wrote with that
/// mode onto a shared disk, is read-only there. Elsewhere a file's own
/// mode guards neither, and this does nothing. A link or a directory is
/// left as it is.
///
/// # Errors
/// The system's, when the attribute is set and cannot be cleared.
pub fn clear_readonly(dir: &cap_std::fs::Dir, name: &Path) -> std::io::Result<bool> {
    if !cfg!(windows) {
        return Ok(false);
    }
    match dir.symlink_metadata(name) {
        Ok(md) if md.is_file() && md.permissions().readonly() => {
            let mut perms = md.permissions();
            perms.set_readonly(false);
            dir.set_permissions(name, perms)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// `std::fs::canonicalize` without a needless verbatim prefix on Windows
/// ([`plain`]): the absolute path with links resolved, spelled as a user
/// would type it.
///
/// # Errors
/// Those of `std::fs::canonicalize` (the path does not exist, a component
/// cannot be read).
pub fn canonicalize(path: &Path) -> std::io::Result<PathBuf> {
    match std::fs::canonicalize(path) {
        Ok(real) => Ok(plain(real)),
        // wine 8 answers the final-path query of a path longer than 260
        // characters with ERROR_MORE_DATA (234), which std does not retry;
        // the absolute path (links not resolved) still names the place.
        Err(e) if cfg!(windows) && e.raw_os_error() == Some(234) => {
            std::fs::metadata(path)?;
            std::path::absolute(path).map(plain)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_windows_spellings() {
        use WindowsForm::*;
        for (text, form) in [
            (r"C:\Users\me\Reports", Some(Drive)),
            ("e:/backup", Some(Drive)),
            (r"C:\", Some(Drive)),
            ("C:", Some(DriveRelative)),
            ("C:x", Some(DriveRelative)),
            (r"\\nas\docs\x", Some(Unc)),
            (r"\\?\E:\long", Some(Verbatim)),
            (r"\\?\UNC\nas\docs", Some(Verbatim)),
            (r"\\.\COM1", Some(Device)),
            (r".\x", Some(Relative)),
            (r"..\x", Some(Relative)),
            ("C::x", None),
            ("bucket::C:/x", None),
            ("/tmp/x", None),
            ("./x", None),
            ("1:x", None),
        ] {
            assert_eq!(windows_form(text), form, "{text}");
        }
    }

    #[test]
    fn strips_verbatim_only_where_the_plain_path_is_the_same() {
        for (text, plain) in [
            (r"\\?\C:\Users\me", Some(r"C:\Users\me")),
            (r"\\?\C:\", Some(r"C:\")),
            (r"\\?\UNC\nas\docs\x", Some(r"\\nas\docs\x")),
            (r"\\?\C:\a\..\b", None),
            (r"\\?\C:\a\.\b", None),
            (r"\\?\C:\a/b", None),
            (r"\\?\C:\dot.", None),
            (r"\\?\C:\space ", None),
            (r"\\?\C:\x\con", None),
            (r"\\?\C:\x\Aux.txt", None),
            (r"\\?\C:\x\com1.log", None),
            (r"\\?\C:\x\console", Some(r"C:\x\console")),
            (r"\\?\C:\x\com10", Some(r"C:\x\com10")),
            (r"\\?\Volume{0b1}\x", None),
            (r"C:\x", None),
            ("/tmp/x", None),
        ] {
            assert_eq!(strip_verbatim(text).as_deref(), plain, "{text}");
        }
        let long = format!(r"\\?\C:\{}", ["d"; 200].join(r"\"));
        assert_eq!(strip_verbatim(&long).as_deref(), Some(&long[4..]));
    }

    #[cfg(not(windows))]
    #[test]
    fn windows_directory_spellings_are_refused_elsewhere() {
        for text in [r"E:\x", "E:/x", "C:x", "E:", r"\\nas\docs", r".\x", r"\\?\C:\x"] {
            let err = check_dir_spelling(text).expect_err(text).to_string();
            assert!(err.contains("a Windows path, and this is not Windows"), "{err}");
        }
        for text in ["./C:x", "/mnt/e/x", "x", "ab:c", "C::x"] {
            assert_eq!(check_dir_spelling(text), Ok(()), "{text}");
        }
    }

    #[test]
    fn the_drive_relative_message_names_the_drive_once() {
        let err = DirSpellingError::DriveRelative {
            text: "C:rel".into(),
            drive: "C:".into(),
            rest: "rel".into(),
        }
        .to_string();
        assert!(!err.contains("C::"), "{err}");
        assert!(
            err.contains(r"drive C:; write the full path, e.g. C:\rel"),
            "{err}"
        );
    }

    #[test]
    fn file_urls_name_the_directory_a_targets_would() {
        assert_eq!(from_file_url("/tmp/x"), None);
        assert_eq!(from_file_url("file:///tmp/x"), Some(Ok("/tmp/x".into())));
        assert_eq!(from_file_url("file://./x"), Some(Ok("./x".into())));
        let drive = if cfg!(windows) { "C:/fu" } else { "/C:/fu" };
        assert_eq!(from_file_url("file:///C:/fu"), Some(Ok(drive.into())));
        for bad in ["file://", "file://host/x", "file://rel"] {
            assert_eq!(
                from_file_url(bad),
                Some(Err(DirSpellingError::FileUrl(bad.into())))
            );
        }
    }

    #[cfg(windows)]
    #[test]
    fn drive_relative_and_device_directories_are_refused_on_windows() {
        let err = check_dir_spelling("C:rel").unwrap_err().to_string();
        assert!(err.contains(r"write the full path, e.g. C:\rel"), "{err}");
        let err = check_dir_spelling("E:").unwrap_err().to_string();
        assert!(err.contains(r"e.g. E:\"), "{err}");
        assert!(check_dir_spelling(r"\\.\COM1").is_err());
        for text in [r"C:\x", "C:/x", r"\\srv\share", r"\\?\C:\x", r".\x", "x"] {
            assert_eq!(check_dir_spelling(text), Ok(()), "{text}");
        }
    }

    #[test]
    fn reserved_device_names() {
        for name in [
            "CON",
            "con",
            "nul.txt",
            "aux.tar.gz",
            "COM1",
            "lpt9.x",
            "PRN ",
            "com¹",
        ] {
            assert!(is_reserved_device(name), "{name}");
        }
        for name in ["console", "com0", "com10", "lpt", "x.con", "auxiliary", ""] {
            assert!(!is_reserved_device(name), "{name}");
        }
    }
}
