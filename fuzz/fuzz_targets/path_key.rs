//! Fuzzes the mapping between local names, object keys and restore paths.
//!
//! Backups turn relative paths (any bytes but NUL, `/`-separated) into keys
//! with `names::encode` and a prefix; restores strip the prefix, decode, and
//! let `safe_path` decide whether the name may be written under DEST. The
//! input is used twice: as the bytes of a relative path (which must come
//! back exactly, under the empty and a non-empty prefix), and as a key
//! someone else wrote (which, once accepted, must stay under DEST).
#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use s3backup::names;
use s3backup::safe_path;
use s3backup::store::join_key;

const DEST: &str = "/restore/dest";

fuzz_target!(|data: &[u8]| {
    local_path_round_trips(data);
    foreign_key_stays_under_dest(&String::from_utf8_lossy(data));
});

/// A local relative path: the input with NULs, empty, `.` and `..` segments
/// dropped, as a tree walk could produce it.
fn local_path_round_trips(data: &[u8]) {
    let parts: Vec<&[u8]> = data
        .split(|&b| b == b'/')
        .map(|p| p.split(|&b| b == 0).next().unwrap_or_default())
        .filter(|p| !p.is_empty() && *p != b"." && *p != b"..")
        .collect();
    if parts.is_empty() {
        return;
    }
    let rel = parts.join(&b'/');
    let text = names::encode(OsStr::from_bytes(&rel));
    assert_eq!(
        text.matches('/').count(),
        parts.len() - 1,
        "encoding changed the separators of {rel:?}: {text:?}"
    );
    assert!(!text.contains('\0'));
    assert!(names::is_canonical(&text), "{text:?}");
    for prefix in ["", "p", "backups/host one"] {
        let key = join_key(prefix, &text);
        let listed = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let back = key.strip_prefix(&listed).expect("key starts with its prefix");
        assert_eq!(names::decode(back).as_bytes(), &rel[..], "{key:?}");
    }
    // Anything from a tree walk must be accepted (a backslash is a plain
    // name byte on Unix).
    safe_path::validate(&text).unwrap_or_else(|e| panic!("{rel:?}: {e}"));
    assert_under_dest(&text);
}

/// A key written by anyone: decoding keeps every ASCII byte but the hex
/// digits of escapes (so never adds or drops a `/`, `.`, `\` or NUL),
/// re-encoding is stable, and whatever safe_path accepts stays under DEST.
fn foreign_key_stays_under_dest(text: &str) {
    let decoded = names::decode(text);
    let ascii = |b: &[u8]| {
        b.iter()
            .copied()
            .filter(|c| c.is_ascii() && !c.is_ascii_digit() && !(b'A'..=b'F').contains(c))
            .collect::<Vec<u8>>()
    };
    assert_eq!(ascii(decoded.as_bytes()), ascii(text.as_bytes()), "{text:?}");
    let again = names::encode(&decoded);
    assert_eq!(names::decode(&again).as_bytes(), decoded.as_bytes(), "{text:?}");
    assert!(names::is_canonical(&again));
    if safe_path::validate(text).is_ok() {
        assert_under_dest(text);
    }
}

/// The restore path of an accepted name is DEST plus plain components only.
fn assert_under_dest(text: &str) {
    let dest = Path::new(DEST);
    let local = names::local(dest, text);
    let rel = local
        .strip_prefix(dest)
        .unwrap_or_else(|_| panic!("{text:?} left DEST: {local:?}"));
    assert!(
        rel.components().all(|c| matches!(c, Component::Normal(_))),
        "{text:?} → {local:?}"
    );
    assert_eq!(
        rel.components().count(),
        text.split('/').count(),
        "{text:?} → {local:?}"
    );
}
