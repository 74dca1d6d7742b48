//! File names as text: the one place where local names become the
//! UTF-8 paths that keys, state rows and manifests are made of, and back.
//!
//! S3 keys are UTF-8, but a Unix file name is any bytes but `/` and NUL.
//! Valid UTF-8 passes through untouched (and is never normalised, so `é`
//! written as one code point and as `e` + accent stay two files). Each byte
//! that is not part of valid UTF-8 becomes `‛` (U+201B) and two upper-case
//! hex digits, as rclone does; a `‛` in a name is doubled so the mapping
//! stays reversible. Names without either, nearly all of them, read in the
//! bucket exactly as on disk.
//!
//! On Windows a name a backup finds on disk may be the stand-in a restore
//! wrote for a key Windows cannot hold (`a：b.txt` for `a:b.txt`, see
//! [`crate::fs::winname`]): [`key_of`] reads it back as the original key,
//! and [`local`] maps a key to its stand-in again, so a round trip
//! Linux → Windows → Linux stores the same keys. Elsewhere both are the
//! plain mapping above, except under a SOURCE whose file system refuses
//! Windows names (exFAT, FAT: a restore wrote stand-ins there too, see
//! [`crate::fs::fstype`]): a backup registers such a root once with
//! [`map_windows_names_under`], and the walk and every later
//! [`local`] under it map as on Windows. The roots are kept process-wide,
//! beside the one function that applies them, rather than threaded
//! through each stage of the backup that turns a key back into a path.

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// The quote character that introduces an escaped byte.
pub(crate) const QUOTE: char = '\u{201B}';

/// The text form of a local name or relative path (see the module doc).
pub fn encode(name: &OsStr) -> Cow<'_, str> {
    let bytes = name.as_encoded_bytes();
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.contains(QUOTE) => Cow::Borrowed(text),
        _ => {
            let mut out = String::with_capacity(bytes.len() + 8);
            for chunk in bytes.utf8_chunks() {
                for c in chunk.valid().chars() {
                    if c == QUOTE {
                        out.push(QUOTE);
                    }
                    out.push(c);
                }
                for b in chunk.invalid() {
                    out.push(QUOTE);
                    out.push_str(&format!("{b:02X}"));
                }
            }
            Cow::Owned(out)
        }
    }
}

/// The local name or relative path a text form stands for.
///
/// Inverse of [`encode`]. Only bytes 0x80–0xFF can be escaped, so a
/// decoded name can never gain a `/`, a NUL or a dot the text did not
/// show. A `‛` not followed by another or by such a byte (a key written by
/// another tool) is kept as it is.
pub fn decode(text: &str) -> Cow<'_, OsStr> {
    if !text.contains(QUOTE) {
        return Cow::Borrowed(OsStr::new(text));
    }
    let mut out: Vec<u8> = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(QUOTE) {
        out.extend_from_slice(&rest.as_bytes()[..i]);
        let after = &rest[i + QUOTE.len_utf8()..];
        if let Some(tail) = after.strip_prefix(QUOTE) {
            out.extend_from_slice(QUOTE.to_string().as_bytes());
            rest = tail;
        } else if let Some(b) = escaped_byte(after) {
            out.push(b);
            rest = &after[2..];
        } else {
            out.extend_from_slice(QUOTE.to_string().as_bytes());
            rest = after;
        }
    }
    out.extend_from_slice(rest.as_bytes());
    Cow::Owned(os_string(out))
}

/// Roots whose names map as on Windows (see the module doc).
static WINDOWS_NAMED: RwLock<Vec<PathBuf>> = RwLock::new(Vec::new());
/// Whether [`WINDOWS_NAMED`] holds any root: the fast "no" of nearly every run.
static ANY_WINDOWS_NAMED: AtomicBool = AtomicBool::new(false);

/// Makes names under `root` (a SOURCE on a file system that refuses
/// Windows names, as an absolute path) map as on Windows, for the rest of
/// the process: [`key_with`] of its walk and [`local`] under it.
pub fn map_windows_names_under(root: &Path) {
    let mut roots = WINDOWS_NAMED
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !roots.iter().any(|r| r == root) {
        roots.push(root.to_path_buf());
    }
    ANY_WINDOWS_NAMED.store(true, Ordering::Release);
}

/// Whether names at `path` map as on Windows: on Windows, and under a
/// root given to [`map_windows_names_under`].
pub fn windows_named(path: &Path) -> bool {
    cfg!(windows)
        || (ANY_WINDOWS_NAMED.load(Ordering::Acquire)
            && WINDOWS_NAMED
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .any(|r| path.starts_with(r)))
}

/// The path of `rel` (a text form) under `root`; where names map as on
/// Windows ([`windows_named`]) each component through
/// [`crate::fs::winname::to_windows`] (see the module doc), joined one at
/// a time so the path uses `\` throughout on Windows: a verbatim root
/// (`\\?\E:\x`) takes no `/`.
pub fn local(root: &Path, rel: &str) -> PathBuf {
    if windows_named(root) {
        let mut path = root.to_path_buf();
        for part in rel.split('/').filter(|c| !c.is_empty()) {
            let decoded = decode(part);
            match decoded.to_str() {
                Some(text) => path.push(&*crate::fs::winname::to_windows(text)),
                None => path.push(&*decoded),
            }
        }
        return path;
    }
    root.join(decode(rel))
}

/// The text form of one name a walk found (the key it stands for): as
/// [`encode`], and on Windows read back from its stand-in
/// ([`crate::fs::winname::from_windows`]; see the module doc).
pub fn key_of(name: &OsStr) -> Cow<'_, str> {
    key_with(name, cfg!(windows))
}

/// [`key_of`] for a name in a directory whose names map as on Windows
/// (`windows_names`, see [`windows_named`]) or not.
pub fn key_with(name: &OsStr, windows_names: bool) -> Cow<'_, str> {
    if windows_names
        && let Some(text) = name.to_str()
        && let Cow::Owned(original) = crate::fs::winname::from_windows(text)
    {
        return Cow::Owned(encode(OsStr::new(&original)).into_owned());
    }
    encode(name)
}

/// Whether a text form could have come from [`encode`]: decoding and
/// encoding it again gives it back.
pub fn is_canonical(text: &str) -> bool {
    encode(&decode(text)) == text
}

/// The byte of an escape's two upper-case hex digits, if they make one of 0x80–0xFF.
fn escaped_byte(s: &str) -> Option<u8> {
    let hex = s.get(..2)?;
    if !hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
    {
        return None;
    }
    u8::from_str_radix(hex, 16).ok().filter(|b| *b >= 0x80)
}

/// Raw bytes as an OS string (lossy where the platform's strings are not bytes).
#[cfg(unix)]
pub(crate) fn os_string(bytes: Vec<u8>) -> OsString {
    use std::os::unix::ffi::OsStringExt;
    OsString::from_vec(bytes)
}

/// Raw bytes as an OS string (lossy where the platform's strings are not bytes).
#[cfg(not(unix))]
pub(crate) fn os_string(bytes: Vec<u8>) -> OsString {
    OsString::from(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    fn round_trip(bytes: &[u8]) -> String {
        let name = OsStr::from_bytes(bytes);
        let text = encode(name).into_owned();
        assert_eq!(decode(&text).as_bytes(), bytes, "{text}");
        assert!(is_canonical(&text));
        text
    }

    #[test]
    fn utf8_names_are_untouched_and_never_normalised() {
        assert_eq!(round_trip(b"a/b c.txt"), "a/b c.txt");
        assert_eq!(round_trip("caf\u{e9}".as_bytes()), "caf\u{e9}");
        assert_eq!(round_trip("cafe\u{301}".as_bytes()), "cafe\u{301}");
        assert!(matches!(encode(OsStr::new("plain")), Cow::Borrowed(_)));
    }

    #[test]
    fn invalid_bytes_and_the_quote_are_escaped_reversibly() {
        assert_eq!(round_trip(b"caf\xe9.txt"), "caf\u{201b}E9.txt");
        assert_eq!(round_trip(b"\xff\xfe"), "\u{201b}FF\u{201b}FE");
        assert_eq!(round_trip("x\u{201b}E9".as_bytes()), "x\u{201b}\u{201b}E9");
        // The escaped and the literal spelling stay two names.
        assert_ne!(round_trip(b"\xe9"), round_trip("\u{201b}E9".as_bytes()));
    }

    #[test]
    fn foreign_quotes_are_kept_and_nothing_ascii_can_be_smuggled() {
        assert_eq!(decode("a\u{201b}zz").as_bytes(), "a\u{201b}zz".as_bytes());
        assert_eq!(decode("\u{201b}2F").as_bytes(), "\u{201b}2F".as_bytes());
        assert_eq!(decode("\u{201b}e9").as_bytes(), "\u{201b}e9".as_bytes());
        assert_eq!(decode("end\u{201b}").as_bytes(), "end\u{201b}".as_bytes());
        assert!(!is_canonical("a\u{201b}zz"));
    }
}
