//! Restores onto a destination that folds letter case (an exFAT image
//! mounted through FUSE: `S3BACKUP_TEST_FOLDING_DIR`; CI mounts one, see
//! `.ci/run`): keys that would land on one file there are refused by
//! name (exit 3), never merged, and the same keys onto a case-sensitive
//! directory are all restored.

use std::path::{Path, PathBuf};

use crate::common::*;

/// A case-folding directory, when the environment provides one (under
/// CI it must).
pub fn folding_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("S3BACKUP_TEST_FOLDING_DIR").map(PathBuf::from);
    if dir.is_none() && std::env::var_os("CI").is_some() {
        panic!("CI must set S3BACKUP_TEST_FOLDING_DIR to a case-insensitive directory");
    }
    dir
}

/// A local store in `env` holding a backup of `files` (path, content),
/// written on a case-sensitive source; its target text.
fn store_with(env: &TestEnv, files: &[(&str, &str)]) -> String {
    for (path, content) in files {
        env.write(path, content);
    }
    let target = env.root().join("store").to_str().unwrap().to_owned();
    env.backup_ok(&target, &[]);
    target
}

/// The JSON summary's `case_clashes`.
fn clashes(run: &Run) -> u64 {
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    v["case_clashes"]
        .as_u64()
        .unwrap_or_else(|| panic!("no case_clashes\n{}", run.show()))
}

/// Names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn keys_differing_only_in_case_are_refused_by_name_on_a_folding_dest() {
    let Some(root) = folding_dir() else { return };
    let env = TestEnv::new();
    let target = store_with(
        &env,
        &[("Case.txt", "upper"), ("case.txt", "lower"), ("other.txt", "o")],
    );
    let dir = tempfile::tempdir_in(root).unwrap();
    let dest = dir.path().join("dest");

    let r = env.restore(&target, &dest, &["--json"]);
    r.expect_code(3);
    let s = r.restore_summary();
    assert_eq!(s.failed_paths(), ["case.txt"], "{}", r.show());
    let why = &s.failure("case.txt").unwrap().error;
    assert!(
        why.contains("the same name as 'Case.txt' on DEST (folds letter case)")
            && why.contains("keep only one")
            && why.contains("'Case.txt' wins"),
        "{why}"
    );
    assert_eq!((s.files, s.downloaded, s.failed), (3, 2, 1), "{}", r.show());
    assert_eq!(clashes(&r), 1);
    assert_eq!(names(&dest), ["Case.txt", "other.txt"]);
    assert_eq!(
        std::fs::read_to_string(dest.join("Case.txt")).unwrap(),
        "upper",
        "merged"
    );
    assert!(r.stderr.contains("case.txt"), "{}", r.show());

    // Again over it: the key that won is unchanged, the other refused again.
    let r = env.restore(&target, &dest, &["--json"]);
    r.expect_code(3);
    let s = r.restore_summary();
    assert_eq!(s.failed_paths(), ["case.txt"], "{}", r.show());
    assert_eq!((s.unchanged, s.downloaded), (2, 0), "{}", r.show());
    assert_eq!(std::fs::read_to_string(dest.join("Case.txt")).unwrap(), "upper");

    // The human summary counts them.
    let r = env.restore(&target, &dest, &[]);
    r.expect_code(3);
    assert!(
        r.stdout.contains("1 entry not restored: DEST folds letter case"),
        "{}",
        r.show()
    );
}

#[test]
fn directories_spelled_two_ways_and_a_file_beside_a_directory_clash_by_name() {
    let Some(root) = folding_dir() else { return };
    let env = TestEnv::new();
    let target = store_with(
        &env,
        &[("Docs/a", "a"), ("docs/b", "b"), ("X/y", "y"), ("x", "file x")],
    );
    let dir = tempfile::tempdir_in(root).unwrap();
    let dest = dir.path().join("dest");
    let r = env.restore(&target, &dest, &["--json"]);
    r.expect_code(3);
    let s = r.restore_summary();
    // Keys come sorted: `Docs` and `X` are spelled first and keep their places.
    assert_eq!(s.failed_paths(), ["docs", "docs/b", "x"], "{}", r.show());
    let why = &s.failure("docs/b").unwrap().error;
    assert!(
        why.contains("'docs' is the same directory as 'Docs'") && why.contains("merge"),
        "{why}"
    );
    assert_eq!(s.dirs_failed, 1, "{}", r.show());
    assert_eq!(clashes(&r), 3);
    assert_eq!(names(&dest), ["Docs", "X"]);
    assert_eq!(names(&dest.join("Docs")), ["a"], "merged into Docs");
    assert_eq!(std::fs::read_to_string(dest.join("X/y")).unwrap(), "y");
}

#[test]
fn a_dry_run_onto_a_folding_dest_lists_the_clashes_as_refused_and_writes_nothing() {
    let Some(root) = folding_dir() else { return };
    let env = TestEnv::new();
    let target = store_with(&env, &[("Case.txt", "upper"), ("case.txt", "lower")]);
    let dir = tempfile::tempdir_in(root).unwrap();
    let dest = dir.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("Seed"), "s").unwrap();
    let r = env.restore(&target, &dest, &["--dry-run"]);
    r.expect_code(3);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("refuse case.txt: the same name as 'Case.txt' on DEST")),
        "{}",
        r.show()
    );
    assert!(r.stdout.lines().any(|l| l == "download Case.txt"), "{}", r.show());
    assert_eq!(names(&dest), ["Seed"]);
}

#[test]
fn the_same_keys_onto_a_case_sensitive_dest_are_all_restored() {
    let env = TestEnv::new();
    let target = store_with(
        &env,
        &[
            ("Case.txt", "upper"),
            ("case.txt", "lower"),
            ("Docs/a", "a"),
            ("docs/b", "b"),
            ("x", "x"),
            ("X/y", "y"),
        ],
    );
    let dest = env.root().join("dest");
    let r = env.restore(&target, &dest, &["--json"]);
    r.expect_code(0);
    assert_eq!(clashes(&r), 0);
    assert_eq!(names(&dest), ["Case.txt", "Docs", "X", "case.txt", "docs", "x"]);
    assert_eq!(std::fs::read_to_string(dest.join("case.txt")).unwrap(), "lower");
}

/// Keys Windows (and exFAT) cannot hold as names, and the stand-ins a
/// restore writes them under there (rclone's encoding, README).
const REFUSED: [(&str, &str); 5] = [
    ("a:b.txt", "a\u{ff1a}b.txt"),
    ("q?.txt", "q\u{ff1f}.txt"),
    ("con.txt", "\u{ff43}on.txt"),
    ("name.", "name\u{ff0e}"),
    ("x ", "x\u{2420}"),
];

#[test]
fn names_a_dest_refuses_are_restored_under_stand_ins_and_as_they_are_elsewhere() {
    let Some(root) = folding_dir() else { return };
    let env = TestEnv::new();
    let files: Vec<(&str, &str)> = REFUSED.iter().map(|(key, _)| (*key, *key)).collect();
    let mut files = files;
    files.push(("d:ir/in.txt", "inner"));
    let target = store_with(&env, &files);
    let dir = tempfile::tempdir_in(root).unwrap();
    let dest = dir.path().join("dest");

    let r = env.restore(&target, &dest, &["--json"]);
    r.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["names_mapped"], 6, "{}", r.show());
    let mut expected: Vec<String> = REFUSED.iter().map(|(_, local)| local.to_string()).collect();
    expected.push("d\u{ff1a}ir".into());
    expected.sort();
    assert_eq!(names(&dest), expected);
    for (key, local) in REFUSED {
        assert_eq!(std::fs::read_to_string(dest.join(local)).unwrap(), key);
    }
    assert_eq!(
        std::fs::read_to_string(dest.join("d\u{ff1a}ir/in.txt")).unwrap(),
        "inner"
    );
    // Again: every file is found under its stand-in, unchanged.
    let s = env.restore_ok(&target, &dest, &[]);
    assert_eq!((s.unchanged, s.downloaded), (6, 0), "{s:?}");
    let r = env.restore(&target, &dest, &[]);
    assert!(
        r.stdout
            .contains("6 name(s) DEST cannot hold written under stand-ins"),
        "{}",
        r.show()
    );

    // Onto a directory that holds every name: the originals.
    let plain = env.root().join("plain");
    let r = env.restore(&target, &plain, &["--json"]);
    r.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["names_mapped"], 0, "{}", r.show());
    for (key, _) in REFUSED {
        assert_eq!(std::fs::read_to_string(plain.join(key)).unwrap(), key);
    }
    assert_eq!(
        std::fs::read_to_string(plain.join("d:ir/in.txt")).unwrap(),
        "inner"
    );
}

#[test]
fn a_backup_into_a_local_store_on_a_folding_disk_refuses_the_second_spelling() {
    let Some(root) = folding_dir() else { return };
    let env = TestEnv::new();
    env.write("A.txt", "upper")
        .write("a.txt", "lower")
        .write("b.txt", "b");
    let dir = tempfile::tempdir_in(root).unwrap();
    let store = dir.path().join("store");
    let target = store.to_str().unwrap();
    let r = env.backup(target, &["--json"]);
    r.expect_code(3);
    let s = r.summary();
    // Uploads run side by side: the first spelling written keeps its place.
    assert_eq!(s.failures.len(), 1, "{}", r.show());
    let refused = s.failures[0].path.clone();
    let kept = if refused == "a.txt" { "A.txt" } else { "a.txt" };
    assert!(refused == "a.txt" || refused == "A.txt", "{}", r.show());
    assert!(
        s.failures[0].error.contains("differs only in letter case"),
        "{}",
        r.show()
    );
    assert_eq!((s.uploaded, s.failed), (2, 1), "{}", r.show());
    let stored = if kept == "A.txt" { "upper" } else { "lower" };
    assert_eq!(std::fs::read_to_string(store.join(kept)).unwrap(), stored);
    assert_eq!(names(&store).iter().filter(|n| !n.starts_with('.')).count(), 2);

    // No row was recorded for it: the next run tries it again and is refused again.
    let r = env.backup(target, &["--json"]);
    r.expect_code(3);
    let s = r.summary();
    assert_eq!(s.failures.len(), 1, "{}", r.show());
    assert_eq!(s.failures[0].path, refused);
    assert!(
        s.failures[0].error.contains("already in the store"),
        "{}",
        r.show()
    );
    assert_eq!(s.unchanged, 2, "{}", r.show());
    assert_eq!(std::fs::read_to_string(store.join(kept)).unwrap(), stored);
}
