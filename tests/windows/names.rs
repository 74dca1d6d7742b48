//! Keys Windows cannot hold as they are: names it forbids, and keys that
//! differ only by letter case. Both are put into moto (see `moto`) with a
//! plain S3 client, as a Linux backup would have stored them.

use std::collections::BTreeMap;

use crate::harness::{read_tree, run, scratch};
use crate::moto::Moto;

/// key → (the name the restore writes on Windows, bytes).
fn forbidden() -> Vec<(&'static str, &'static str, &'static [u8])> {
    vec![
        ("a:b.txt", "a\u{FF1A}b.txt", b"colon"),
        ("q?.txt", "q\u{FF1F}.txt", b"question"),
        ("con.txt", "\u{FF43}on.txt", b"console"),
        ("name.", "name\u{FF0E}", b"trailing dot"),
        ("x ", "x\u{2420}", b"trailing space"),
        ("d:ir/f", "d\u{FF1A}ir/f", b"in a mapped directory"),
    ]
}

/// Linux → Windows → Linux: keys holding names Windows forbids restore
/// under rclone's stand-ins with their bytes (counted in `names_mapped`),
/// and a backup of that tree stores the original keys again.
/// Backs `dest` up from Windows to `bucket::again` and returns the keys
/// stored there (the tool's own `.s3backup/` left out).
fn back_up_again(
    home: &tempfile::TempDir,
    state: &str,
    dest: &std::path::Path,
    endpoint: &str,
    moto: &Moto,
) -> Vec<String> {
    run(
        home.path(),
        [
            "--state",
            state,
            "backup",
            dest.to_str().unwrap(),
            "bucket::again",
            "--endpoint-url",
            endpoint,
            "--json",
        ],
    )
    .expect(0);
    moto.keys("bucket", "again/")
        .into_iter()
        .filter(|k| !k.starts_with("again/.s3backup/"))
        .collect()
}

#[test]
fn forbidden_names_round_trip_through_windows() {
    let moto = Moto::start("bucket");
    for (key, _, body) in forbidden() {
        moto.put("bucket", &format!("linux/{key}"), body);
    }
    let home = scratch(&std::env::temp_dir());
    let state = home.path().join("state.db");
    let state = state.to_str().unwrap();
    let endpoint = moto.endpoint();
    let dest = home.path().join("restored");
    let restore = run(
        home.path(),
        [
            "--state",
            state,
            "restore",
            "bucket::linux",
            dest.to_str().unwrap(),
            "--endpoint-url",
            &endpoint,
            "--json",
        ],
    );
    restore.expect(0);
    let want: BTreeMap<String, Vec<u8>> = forbidden()
        .into_iter()
        .map(|(_, name, body)| (name.to_string(), body.to_vec()))
        .collect();
    assert_eq!(read_tree(&dest), want);
    let summary = restore.json();
    // Five entries' own names; `d:ir` is only a directory a listing implies.
    assert_eq!(summary["names_mapped"], 5, "{summary}");
    assert_eq!(summary["downloaded"], 6, "{summary}");

    let keys = back_up_again(&home, state, &dest, &endpoint, &moto);
    let mut originals: Vec<String> = forbidden().iter().map(|(k, _, _)| format!("again/{k}")).collect();
    originals.sort();
    assert_eq!(keys, originals);
}

/// Keys differing only by case (`Case.txt` and `case.txt`; `Docs/a` and
/// `docs/b`) onto wine's case-folding file system: the first of each is
/// written, the other is a failure naming it, exit 3, never a silent merge.
#[test]
fn case_twins_are_refused_by_name() {
    let moto = Moto::start("bucket");
    for (key, body) in [
        ("Case.txt", &b"upper"[..]),
        ("case.txt", b"lower"),
        ("Docs/a", b"in Docs"),
        ("docs/b", b"in docs"),
    ] {
        moto.put("bucket", &format!("twins/{key}"), body);
    }
    let home = scratch(&std::env::temp_dir());
    let dest = home.path().join("restored");
    let restore = run(
        home.path(),
        [
            "restore",
            "bucket::twins",
            dest.to_str().unwrap(),
            "--endpoint-url",
            &moto.endpoint(),
            "--json",
        ],
    );
    restore.expect(3);
    let summary = restore.json();
    assert_eq!(summary["case_clashes"], 2, "{summary}");
    let failed: Vec<&str> = summary["failures"]
        .as_array()
        .expect("failures")
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    // Keys come sorted by byte: `Case.txt` and `Docs/a` first.
    assert_eq!(failed, ["case.txt", "docs/b"], "{summary}");
    assert!(
        restore.stderr.contains("case.txt") && restore.stderr.contains("docs/b"),
        "{}",
        restore.stderr
    );
    let want: BTreeMap<String, Vec<u8>> = [("Case.txt", &b"upper"[..]), ("Docs/a", b"in Docs")]
        .into_iter()
        .map(|(p, b)| (p.to_string(), b.to_vec()))
        .collect();
    assert_eq!(read_tree(&dest), want);
}

/// A backslash in a key (legal in S3 and on Linux) is one more character
/// of its name on Windows: restored under its stand-in `＼` (never a
/// separator, so no key reaches outside DEST), and a backup of that tree
/// stores the original keys again.
#[test]
fn backslashes_in_keys_are_name_characters_that_stay_inside_dest() {
    let keys: [(&str, &str); 5] = [
        ("back\\slash", "back\u{FF3C}slash"),
        ("..\\..\\x", "..\u{FF3C}..\u{FF3C}x"),
        ("C:\\x", "C\u{FF1A}\u{FF3C}x"),
        ("\\\\server\\x", "\u{FF3C}\u{FF3C}server\u{FF3C}x"),
        ("d\\ir/f", "d\u{FF3C}ir/f"),
    ];
    let moto = Moto::start("bucket");
    for (key, _) in keys {
        moto.put("bucket", &format!("bs/{key}"), key.as_bytes());
    }
    let home = scratch(&std::env::temp_dir());
    let state = home.path().join("state.db");
    let state = state.to_str().unwrap();
    let endpoint = moto.endpoint();
    let outer = home.path().join("outer");
    let dest = outer.join("restored");
    let restore = |extra: &[&str]| {
        let mut args = vec![
            "--state",
            state,
            "restore",
            "bucket::bs",
            dest.to_str().unwrap(),
            "--endpoint-url",
            &endpoint,
        ];
        args.extend_from_slice(extra);
        run(home.path(), args)
    };
    let dry = restore(&["--dry-run"]);
    dry.expect(0);
    assert!(dry.stdout.contains("download back\\slash"), "{}", dry.stdout);
    restore(&["--json"]).expect(0);
    let want: BTreeMap<String, Vec<u8>> = keys
        .iter()
        .map(|(key, name)| (name.to_string(), key.as_bytes().to_vec()))
        .collect();
    assert_eq!(read_tree(&dest), want);
    // Nothing beside DEST, nothing at the top of the drive.
    let beside: Vec<_> = std::fs::read_dir(&outer)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside, ["restored"]);
    assert!(!std::path::Path::new("C:\\x").exists());
    let stored = back_up_again(&home, state, &dest, &endpoint, &moto);
    let mut originals: Vec<String> = keys.iter().map(|(k, _)| format!("again/{k}")).collect();
    originals.sort();
    assert_eq!(stored, originals);
}
