//! Backups into a local store on a disk that folds letter case and refuses
//! the names Windows refuses (an exFAT image mounted through FUSE:
//! `S3BACKUP_TEST_FOLDING_DIR`; CI mounts one, see `.ci/run`). A key whose
//! path meets another spelling already in the store (a directory, or a
//! file where it needs a directory) is refused by name, by every kind of
//! write (upload, server-side copy, multipart), and nothing in the store
//! is lost; keys the disk cannot name are held under the stand-ins a
//! restore onto Windows uses and read back as they were.

use std::path::{Path, PathBuf};

use crate::case_dest::folding_dir;
use crate::common::*;

/// Names in `dir` that are not the tool's own (`.s3backup`), sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != ".s3backup")
        .collect();
    v.sort();
    v
}

/// A fresh store directory on the folding disk (removed with the guard).
fn store_on(root: PathBuf) -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir_in(root).unwrap();
    let store = dir.path().join("store");
    let target = store.to_str().unwrap().to_owned();
    (dir, store, target)
}

/// `verify` of the store's newest snapshot passes (every object it lists is there).
fn verify_ok(env: &TestEnv, target: &str) {
    let mut cmd = env.cmd();
    cmd.args(["verify", target]);
    run(cmd).expect_code(0);
}

/// The one failure of a run that must fail with exit 3, checked to name
/// `path` and hold each of `words`.
fn refused(r: &Run, path: &str, words: &[&str]) {
    r.expect_code(3);
    let s = r.summary();
    assert_eq!(s.failed_paths(), [path], "{}", r.show());
    let why = &s.failures[0].error;
    for w in words {
        assert!(why.contains(w), "{w:?} not in {why}");
    }
}

impl Summary {
    /// The paths that failed, sorted.
    fn failed_paths(&self) -> Vec<String> {
        let mut v: Vec<String> = self.failures.iter().map(|f| f.path.clone()).collect();
        v.sort();
        v
    }
}

#[test]
fn a_directory_spelled_otherwise_than_the_stores_is_refused_not_merged() {
    let Some(root) = folding_dir() else { return };
    let env = TestEnv::new();
    let (_guard, store, target) = store_on(root);
    env.write("dir/y", "y in dir");
    env.backup_ok(&target, &[]);

    // The source (case-sensitive) now also holds `Dir/x`: on the store it
    // would go into `dir`, and a restore would bring it back as `dir/x`.
    env.write("Dir/x", "x in Dir");
    let r = env.backup(&target, &["--json"]);
    refused(&r, "Dir/x", &["'Dir'", "'dir'", "already in the store", "merge"]);
    assert_eq!(names(&store), ["dir"]);
    assert_eq!(names(&store.join("dir")), ["y"], "merged");
    verify_ok(&env, &target);

    // No row was recorded: the next run refuses it again.
    let r = env.backup(&target, &["--json"]);
    refused(&r, "Dir/x", &["'dir'"]);
}

#[test]
fn a_copy_into_a_directory_spelled_otherwise_is_refused_too() {
    let Some(root) = folding_dir() else { return };
    let env = TestEnv::new();
    let (_guard, store, target) = store_on(root);
    env.write("dir/y", "moved bytes");
    env.backup_ok(&target, &[]);

    // A rename whose old key the store holds is a server-side copy of it.
    env.rename("dir/y", "Dir/moved");
    std::fs::remove_dir(env.path("dir")).unwrap();
    let plan = env.backup(&target, &["--dry-run"]);
    assert_eq!(plan.plan_lines(), ["copy dir/y -> Dir/moved"], "{}", plan.show());
    let r = env.backup(&target, &["--json"]);
    refused(&r, "Dir/moved", &["'Dir'", "'dir'", "already in the store"]);
    assert_eq!(names(&store.join("dir")), ["y"], "merged");
    verify_ok(&env, &target);
}

#[test]
fn a_directory_where_the_store_holds_a_file_of_the_folded_name_never_replaces_it() {
    let Some(root) = folding_dir() else { return };
    let env = TestEnv::new();
    let (_guard, store, target) = store_on(root);
    env.write("f", "an earlier run's file");
    env.backup_ok(&target, &[]);

    // `F/g` would put a directory `F` where the store holds `f`.
    env.write("F/g", "g");
    let r = env.backup(&target, &["--json"]);
    refused(&r, "F/g", &["'F'", "the file 'f'", "already in the store"]);
    assert_eq!(
        std::fs::read_to_string(store.join("f")).unwrap(),
        "an earlier run's file",
        "the earlier file was replaced"
    );
    assert_eq!(names(&store), ["f"]);
    verify_ok(&env, &target);

    // A large file sent in parts is refused the same, before any part is joined.
    env.remove("F/g").write("F/big", noise(6 << 20, 7));
    let r = env.backup(
        &target,
        &["--json", "--multipart-threshold", "5MiB", "--part-size", "5MiB"],
    );
    refused(&r, "F/big", &["'F'", "the file 'f'"]);
    assert_eq!(
        std::fs::read_to_string(store.join("f")).unwrap(),
        "an earlier run's file"
    );
    verify_ok(&env, &target);

    // And the other way round: a file where the store holds a directory.
    let env = TestEnv::new();
    let (_guard2, store, target) = store_on(folding_dir().unwrap());
    env.write("D/inner", "inner");
    env.backup_ok(&target, &[]);
    env.write("d", "a file d");
    let r = env.backup(&target, &["--json"]);
    refused(&r, "d", &["the directory 'D'", "already in the store"]);
    assert_eq!(std::fs::read_to_string(store.join("D/inner")).unwrap(), "inner");
}

#[test]
fn a_store_on_a_disk_refusing_windows_names_holds_every_key_under_stand_ins() {
    let Some(root) = folding_dir() else { return };
    let env = TestEnv::new();
    let (_guard, store, target) = store_on(root);
    let files = [
        ("a:b.txt", "colon"),
        ("q?.txt", "question"),
        ("con.txt", "console"),
        ("trailing.", "dot"),
        ("trailing ", "space"),
        ("d:ir/f", "in d:ir"),
        ("plain.txt", "plain"),
    ];
    for (path, content) in files {
        env.write(path, content);
    }
    let s = env.backup_ok(&target, &[]);
    assert_eq!((s.uploaded, s.failed), (7, 0));
    // On disk: the stand-ins, and the marker that says so.
    assert_eq!(
        names(&store),
        [
            "a\u{ff1a}b.txt",
            "d\u{ff1a}ir",
            "plain.txt",
            "q\u{ff1f}.txt",
            "trailing\u{2420}",
            "trailing\u{ff0e}",
            "\u{ff43}on.txt",
        ]
    );
    assert_eq!(
        std::fs::read_to_string(store.join(".s3backup/name-encoding")).unwrap(),
        "windows-stand-ins 1\n"
    );
    verify_ok(&env, &target);

    // Read back as the original keys: an unchanged re-run sends nothing,
    // a restore onto a case-sensitive directory writes the original names.
    let s = env.backup_ok(&target, &[]);
    assert_eq!((s.unchanged, s.uploaded), (7, 0));
    let dest = env.root().join("dest");
    let r = env.restore_ok(&target, &dest, &[]);
    assert_eq!(r.failed, 0);
    for (path, content) in files {
        assert_eq!(
            std::fs::read_to_string(dest.join(path)).unwrap(),
            content,
            "{path}"
        );
    }

    // The encoding belongs to the store: copied onto a disk that takes
    // every name, it reads back the same keys.
    let elsewhere = env.root().join("elsewhere");
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(&store)
        .arg(&elsewhere)
        .status()
        .unwrap();
    assert!(copied.success());
    let dest = env.root().join("dest-elsewhere");
    env.restore_ok(elsewhere.to_str().unwrap(), &dest, &[]);
    for (path, content) in files {
        assert_eq!(
            std::fs::read_to_string(dest.join(path)).unwrap(),
            content,
            "{path}"
        );
    }

    // `--delete` finds the stored key of a removed file.
    env.remove("q?.txt");
    let s = env.backup_ok(&target, &["--delete"]);
    assert_eq!(s.deleted, 1);
    assert!(!names(&store).contains(&"q\u{ff1f}.txt".to_string()));
}

#[test]
fn a_store_written_elsewhere_with_literal_stand_in_names_keeps_them_literal() {
    let Some(root) = folding_dir() else { return };
    let env = TestEnv::new();
    // A store written on a case-sensitive disk, holding a name that is
    // itself a stand-in (a Japanese user's `a：b.txt`), moved onto exFAT.
    env.write("a\u{ff1a}b.txt", "full-width colon");
    let written = env.root().join("written");
    env.backup_ok(written.to_str().unwrap(), &[]);
    let (_guard, store, target) = store_on(root);
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(&written)
        .arg(&store)
        .status()
        .unwrap();
    assert!(copied.success());

    // It keeps literal names: taking the stand-ins on would read that name
    // back as `a:b.txt`. A key the disk cannot name fails, and says why.
    env.write("x:y.txt", "colon");
    let r = env.backup(&target, &["--json"]);
    r.expect_code(3);
    assert_eq!(r.summary().failed_paths(), ["x:y.txt"], "{}", r.show());
    assert!(
        r.stderr.contains("a\u{ff1a}b.txt") && r.stderr.contains("keeps literal names"),
        "{}",
        r.show()
    );
    assert!(!store.join(".s3backup/name-encoding").exists());
    let dest = env.root().join("dest");
    env.restore_ok(&target, &dest, &[]);
    assert_eq!(
        std::fs::read_to_string(dest.join("a\u{ff1a}b.txt")).unwrap(),
        "full-width colon"
    );
    assert!(!dest.join("a:b.txt").exists());
}

/// Everything under `dir` that is not a directory (`/`-separated, sorted).
fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir(dir, "");
    v.sort();
    v
}

fn walkdir(dir: &Path, at: &str) -> Vec<String> {
    let mut out = Vec::new();
    for name in names(dir) {
        let path = if at.is_empty() {
            name.clone()
        } else {
            format!("{at}/{name}")
        };
        let p = dir.join(&name);
        if p.is_dir() {
            out.extend(walkdir(&p, &path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A file and a directory renamed in letter case only: without `--delete`
/// the old spellings stay (the new ones refused); with it, the delete of
/// each old key renames its entry to the new spelling in one rename
/// (the directory at once, as every file in it moves), so at no point does
/// the store hold neither spelling; the refused keys, tried again after
/// the deletes, are then stored (exit 0).
#[test]
fn a_rename_that_changes_only_case_renames_the_stored_entry_and_never_empties_the_store() {
    let Some(root) = folding_dir() else { return };
    let env = TestEnv::new();
    let (_guard, store, target) = store_on(root);
    env.write("Report.txt", "numbers");
    env.write("dir/y", "y in dir");
    env.write("dir/sub/z", "z in dir/sub");
    env.backup_ok(&target, &[]);

    env.rename("Report.txt", "report.txt");
    env.rename("dir", "DIR");
    let r = env.backup(&target, &["--json"]);
    r.expect_code(3);
    let failed = ["DIR/sub/z", "DIR/y", "report.txt"];
    assert_eq!(r.summary().failed_paths(), failed, "{}", r.show());
    assert_eq!(files_in(&store), ["Report.txt", "dir/sub/z", "dir/y"]);
    verify_ok(&env, &target);

    // With --delete: the new spellings are refused as they are written,
    // the deletes of the old keys rename the entries instead, and the
    // refused keys, tried again, are stored and in the snapshot.
    let s = env.backup_ok(&target, &["--delete"]);
    assert_eq!((s.uploaded, s.failed), (3, 0), "{s:?}");
    assert_eq!(files_in(&store), ["DIR/sub/z", "DIR/y", "report.txt"]);
    verify_ok(&env, &target);

    // The next run finds nothing to do.
    let s = env.backup_ok(&target, &["--delete"]);
    assert_eq!(
        (s.unchanged, s.uploaded, s.deleted, s.failed),
        (3, 0, 0, 0),
        "{s:?}"
    );
    let dest = env.root().join("dest");
    env.restore_ok(&target, &dest, &[]);
    assert_eq!(
        std::fs::read_to_string(dest.join("report.txt")).unwrap(),
        "numbers"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("DIR/sub/z")).unwrap(),
        "z in dir/sub"
    );
}

/// A new spelling that is no copy of the old (the file changed as it was
/// renamed), or a directory renamed while the old spelling still holds
/// another file: `--delete` keeps the old object, reported as kept (its
/// row stays, so `verify` passes), rather than leave neither spelling.
#[test]
fn a_delete_of_a_spelling_whose_new_one_was_refused_is_refused() {
    let Some(root) = folding_dir() else { return };
    let env = TestEnv::new();
    let (_guard, store, target) = store_on(root);
    env.write("Notes.txt", "old words");
    env.write("dir/y", "y in dir");
    env.write("dir/w", "w stays");
    env.backup_ok(&target, &[]);

    env.remove("Notes.txt");
    env.write("notes.txt", "new words");
    // `dir/w` stays where it is; `y` moves to `DIR` (the source tells them apart).
    env.rename("dir/y", "DIR/y");
    let r = env.backup(&target, &["--json", "--delete"]);
    r.expect_code(3);
    let s = r.summary();
    assert_eq!(
        s.failed_paths(),
        ["DIR/y", "Notes.txt", "dir/y", "notes.txt"],
        "{}",
        r.show()
    );
    let kept = s.failures.iter().find(|f| f.path == "Notes.txt").unwrap();
    assert!(kept.error.contains("is kept in the store"), "{}", kept.error);
    assert_eq!(files_in(&store), ["Notes.txt", "dir/w", "dir/y"]);
    assert_eq!(
        std::fs::read_to_string(store.join("Notes.txt")).unwrap(),
        "old words"
    );
    verify_ok(&env, &target);
}

/// Two new keys a wide fold groups are asked of the disk's own table:
/// exFAT takes `ς.txt` and `σ.txt` for one name (the second is refused
/// naming it, the first keeps its bytes) and keeps `ǅ.txt` and `ǆ.txt`
/// apart (both stored; `to_lowercase` alone would call them twins).
#[test]
fn two_new_keys_are_one_name_by_the_disks_own_table() {
    let Some(root) = folding_dir() else { return };
    let env = TestEnv::new();
    let (_guard, store, target) = store_on(root);
    env.write("\u{1c5}.txt", "title-case dz");
    env.write("\u{1c6}.txt", "small dz");
    env.write("\u{3c2}.txt", "final sigma");
    env.write("\u{3c3}.txt", "sigma");
    let r = env.backup(&target, &["--json"]);
    // Uploads run side by side: whichever sigma is written first keeps its
    // place (and keeps it on later runs); the other is refused naming it.
    r.expect_code(3);
    let failed = r.summary().failed_paths();
    let (lost, kept, bytes) = if failed == ["\u{3c3}.txt"] {
        ("\u{3c3}.txt", "\u{3c2}.txt", &b"final sigma"[..])
    } else {
        ("\u{3c2}.txt", "\u{3c3}.txt", &b"sigma"[..])
    };
    // The refusal names the key that kept its place, as written in this run.
    let (l, k) = (format!("'{lost}'"), format!("'{kept}'"));
    refused(&r, lost, &[&l, &k, "written in this run", "would keep only one"]);
    assert_eq!(
        names(&store),
        ["\u{1c5}.txt", "\u{1c6}.txt", kept],
        "{}",
        r.show()
    );
    assert_eq!(std::fs::read(store.join(kept)).unwrap(), bytes);
    assert_eq!(std::fs::read(store.join("\u{1c6}.txt")).unwrap(), b"small dz");
    verify_ok(&env, &target);
    // Nothing was left in the store's temporary area by the probes.
    let tmp = store.join(".s3backup/tmp");
    let left: Vec<String> = std::fs::read_dir(&tmp)
        .map(|d| d.map(|e| e.unwrap().file_name().into_string().unwrap()).collect())
        .unwrap_or_default();
    assert!(left.iter().all(|n| !n.contains("probe")), "{left:?}");
}
