//! Property tests (proptest) for the mappings a restore depends on: a local
//! relative path must come back byte for byte from its key, keys of siblings
//! must sort the way a merge with S3 listings and state rows expects,
//! every name a tree walk can produce must pass `safe_path` and stay under
//! DEST, and every target must survive Display → parse. The fuzz targets in
//! `fuzz/` check the same things on arbitrary input; these run in `cargo test`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use proptest::prelude::*;
use s3backup::fs::names;
use s3backup::fs::safe_path;
use s3backup::store::join_key;
use s3backup::target::Target;

/// One byte or short sequence of a file name, weighted towards the cases
/// the text form treats specially: invalid UTF-8, the `‛` quote (literal,
/// and as part of something that looks like an escape) and multi-byte UTF-8.
fn name_piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => any::<u8>().prop_filter("no '/' or NUL", |b| *b != b'/' && *b != 0).prop_map(|b| vec![b]),
        2 => (0x80u8..=0xFF).prop_map(|b| vec![b]),
        1 => Just("\u{201b}".as_bytes().to_vec()),
        1 => Just(b"\xe2\x80".to_vec()),
        1 => Just("E9".as_bytes().to_vec()),
        1 => Just("\u{e9}".as_bytes().to_vec()),
        1 => Just(".".as_bytes().to_vec()),
    ]
}

/// A file name as a Unix directory can hold it: any bytes but `/` and NUL,
/// not empty, `.` or `..`.
fn name() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(name_piece(), 1..6)
        .prop_map(|pieces| pieces.concat())
        .prop_filter("not . or ..", |n| n != b"." && n != b"..")
}

/// A relative path of one to five such names.
fn rel_path() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(name(), 1..5).prop_map(|names| names.join(&b'/'))
}

/// A key prefix as the target parser leaves it: empty, or `/`-joined segments.
fn prefix() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z0-9][a-z0-9 ._-]{0,8}(/[a-z0-9][a-z0-9 ._-]{0,8}){0,2}"
    ]
}

/// The text form of a byte-string path.
fn encode(bytes: &[u8]) -> String {
    names::encode(OsStr::from_bytes(bytes)).into_owned()
}

/// What a restore from a listing does with a key: drop `prefix/`, then decode.
fn key_to_path(prefix: &str, key: &str) -> Vec<u8> {
    let listed = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let rel = key.strip_prefix(&listed).expect("key under its prefix");
    names::decode(rel).as_bytes().to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// path → key → path gives the same bytes, under any prefix.
    #[test]
    fn path_key_path_round_trips(path in rel_path(), prefix in prefix()) {
        let text = encode(&path);
        prop_assert!(names::is_canonical(&text), "{text:?}");
        prop_assert_eq!(text.split('/').count(), path.split(|b| *b == b'/').count());
        prop_assert!(!text.contains('\0'));
        for prefix in [String::new(), prefix] {
            let key = join_key(&prefix, &text);
            prop_assert_eq!(key_to_path(&prefix, &key), path.clone(), "{:?}", key);
        }
    }

    /// Siblings ordered by their encoded names (directories as `name/`, as
    /// the tree walk does with raw names) give keys in byte order, the
    /// order of S3 listings and of the state rows a backup merges with.
    #[test]
    fn sibling_keys_sort_in_walk_order(
        parent in rel_path(),
        siblings in prop::collection::btree_map(name(), any::<bool>(), 2..8),
        prefix in prefix(),
    ) {
        let parent = encode(&parent);
        let mut walk: Vec<(String, bool)> = siblings
            .into_iter()
            .map(|(n, is_dir)| (encode(&n), is_dir))
            .collect();
        let sort_key = |(n, is_dir): &(String, bool)| {
            let mut k = n.as_bytes().to_vec();
            if *is_dir {
                k.push(b'/');
            }
            k
        };
        walk.sort_by_key(sort_key);
        let keys: Vec<String> = walk
            .iter()
            .flat_map(|(n, is_dir)| {
                let path = format!("{parent}/{n}");
                if *is_dir {
                    vec![format!("{path}/a"), format!("{path}/{}", encode(b"\xff z"))]
                } else {
                    vec![path]
                }
            })
            .map(|p| join_key(&prefix, &p))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        prop_assert_eq!(keys, sorted);
    }

    /// Every name a tree walk can produce (a backslash included: on Unix it
    /// is a plain name byte) passes safe_path, and its restore path is DEST
    /// plus plain components, one per segment.
    #[test]
    fn safe_path_accepts_walked_paths_and_stays_under_dest(path in rel_path()) {
        let text = encode(&path);
        prop_assert!(safe_path::validate(&text).is_ok(), "{:?}", safe_path::validate(&text));
        let dest = Path::new("/restore/dest");
        let local = names::local(dest, &text);
        prop_assert_eq!(local.as_os_str().as_bytes(), [dest.as_os_str().as_bytes(), b"/", &path].concat());
        let rel = local.strip_prefix(dest).expect("under DEST");
        prop_assert!(rel.components().all(|c| matches!(c, Component::Normal(_))), "{rel:?}");
        prop_assert_eq!(rel.components().count(), text.split('/').count());
    }

    /// An S3 target, however typed, displays as `s3://…` and parses back to itself.
    #[test]
    fn s3_targets_round_trip(bucket in bucket(), segments in prop::collection::vec(prefix_segment(), 0..4)) {
        let prefix = segments.join("/");
        let target = Target::S3 { bucket: bucket.clone(), prefix: prefix.clone() };
        prop_assert_eq!(target.to_string().parse::<Target>(), Ok(target.clone()));
        prop_assert_eq!(format!("{bucket}::{prefix}").parse::<Target>(), Ok(target.clone()));
        prop_assert_eq!(format!("s3://{bucket}/{prefix}/").parse::<Target>(), Ok(target.clone()));
        prop_assert_eq!(format!("{bucket}::/{prefix}").parse::<Target>(), Ok(target));
    }

    /// A local store displays as `file://…` and parses back to itself.
    #[test]
    fn local_targets_round_trip(
        start in prop_oneof![Just("/"), Just("./"), Just("../")],
        segments in prop::collection::vec(prefix_segment(), 1..4),
    ) {
        let root = PathBuf::from(format!("{start}{}", segments.join("/")));
        let target = Target::Local { root };
        prop_assert_eq!(target.to_string().parse::<Target>(), Ok(target.clone()));
        let typed = format!("{start}{}", segments.join("/"));
        prop_assert_eq!(typed.parse::<Target>(), Ok(target));
    }
}

/// A bucket name S3 accepts: 3–63 lowercase letters, digits, `-`, `.`,
/// starting and ending with a letter or digit, no `..`, not an IP address.
fn bucket() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]".prop_filter("no .., no IP address", |b| {
        !b.contains("..") && b.parse::<std::net::Ipv4Addr>().is_err()
    })
}

/// One segment of a key prefix or a path: any characters but `/`, `\` and
/// NUL, not `.`, `..` or the tool's own `.s3backup`, and not starting with
/// `:` (`bucket:::x` is refused as a mistyped `::`).
fn prefix_segment() -> impl Strategy<Value = String> {
    "[^/\\\\\0]{1,12}".prop_filter("not . or .., .s3backup or :…", |s| {
        s != "." && s != ".." && s != ".s3backup" && !s.starts_with(':')
    })
}
