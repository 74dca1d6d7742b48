//! `s3backup backup` to a local directory store: the same layout as in a
//! bucket (`STORE/<relative path>` with the source's mtime, manifests under
//! `STORE/.s3backup/manifests/`), the same summary and exit codes, for every
//! target form that names a directory.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use filetime::FileTime;

use crate::common::*;

const STANDARD: [&str; 4] = ["a.txt", "dir/b.txt", "dir/sub/c.bin", "empty.txt"];

fn store_of(env: &TestEnv) -> PathBuf {
    env.root().join("store")
}

/// Target text naming the store by absolute path.
fn target(store: &Path) -> String {
    store.to_str().unwrap().to_owned()
}

/// Regular files in the store outside its top-level `.s3backup`, sorted, '/'-separated.
fn store_files(store: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if store.is_dir() {
        walk(store, store, &mut out);
    }
    out.retain(|p| !p.starts_with(".s3backup/"));
    out.sort();
    out
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            walk(base, &e.path(), out);
        } else {
            let rel = e.path().strip_prefix(base).unwrap().to_str().unwrap().to_owned();
            out.push(rel);
        }
    }
}

/// Manifest file names in the store, sorted.
fn manifests(store: &Path) -> Vec<String> {
    let dir = store.join(".s3backup/manifests");
    let mut names: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_str().unwrap().to_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.retain(|n| !n.starts_with('.')); // temp files, if any
    names.sort();
    names
}

/// The manifest a summary's snapshot names.
#[track_caller]
fn snapshot_manifest(store: &Path, snapshot: &Option<String>) -> Manifest {
    let snap = snapshot.as_deref().expect("the run wrote a manifest");
    let name = snap.rsplit('/').next().unwrap();
    assert!(is_manifest_name(name), "snapshot {snap:?}");
    assert!(snap.contains(".s3backup/manifests/"), "snapshot {snap:?}");
    let path = store.join(".s3backup/manifests").join(name);
    Manifest::decode(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn mtime_of(path: &Path) -> (i64, u32) {
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let t = FileTime::from_last_modification_time(&m);
    (t.unix_seconds(), t.nanoseconds())
}

#[track_caller]
fn assert_stored(store: &Path, rel: &str, content: &[u8], mtime: (i64, u32)) {
    let p = store.join(rel);
    let got = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(
        got == content,
        "bytes of {rel} differ ({} vs {} bytes)",
        got.len(),
        content.len()
    );
    assert_eq!(mtime_of(&p), mtime, "mtime of stored {rel}");
}

#[test]
fn first_backup_copies_every_file_with_its_mtime_and_writes_a_manifest() {
    let env = TestEnv::new();
    let files = standard_tree(&env);
    let store = store_of(&env);

    let s = env.backup_ok(&target(&store), &[]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 4,
            uploaded: 4,
            ..Counts::default()
        }
    );
    assert_eq!(
        s.bytes_sent,
        files.iter().map(|f| f.content.len() as u64).sum::<u64>()
    );
    assert!(s.failures.is_empty());

    assert_eq!(store_files(&store), STANDARD);
    for f in &files {
        assert_stored(&store, f.rel, &f.content, f.mtime);
        // The stored file's own permission bits carry the mode.
        let mode = std::fs::metadata(store.join(f.rel)).unwrap().mode() & 0o7777;
        assert_eq!(mode, f.mode, "mode of stored {}: {mode:o}", f.rel);
    }
    let names = manifests(&store);
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(is_manifest_name(&names[0]), "{names:?}");
    let m = snapshot_manifest(&store, &s.snapshot);
    assert!(s.snapshot.as_deref().unwrap().ends_with(&names[0]));
    assert_eq!(m.paths(), STANDARD);
    for f in &files {
        m.assert_file(f.rel, &f.content, f.mtime, f.mode);
    }
    // The source is left as it was.
    assert_eq!(mtime_of(&env.path("dir/b.txt")), (1_600_000_000, 5));
}

#[test]
fn every_local_target_form_lands_in_the_named_directory() {
    let env = TestEnv::new();
    env.write("a.txt", "a");
    env.write("d/b.txt", "b");
    std::fs::create_dir_all(env.root().join("work")).unwrap();
    let file_url = format!("file://{}", env.root().join("by-url").display());

    let cases: Vec<(String, PathBuf, &str)> = vec![
        (file_url, env.root().join("by-url"), "root"),
        (
            target(&env.root().join("by-abs")),
            env.root().join("by-abs"),
            "root",
        ),
        ("./by-rel".into(), env.root().join("by-rel"), "root"),
        ("../by-parent".into(), env.root().join("by-parent"), "work"),
        (
            "~/backups/by-home".into(),
            env.home.join("backups/by-home"),
            "root",
        ),
    ];
    for (text, store, cwd) in cases {
        let mut cmd = env.backup_cmd(&text, &["--json"]);
        if cwd == "work" {
            cmd.current_dir(env.root().join("work"));
        }
        let r = run(cmd);
        r.expect_code(0);
        let s = r.summary();
        assert_eq!(s.uploaded, 2, "{text}");
        assert_eq!(
            store_files(&store),
            ["a.txt", "d/b.txt"],
            "{text} -> {}",
            store.display()
        );
        assert_stored(&store, "d/b.txt", b"b", T0);
        assert_eq!(manifests(&store).len(), 1, "{text}");
    }
}

#[test]
fn unchanged_rerun_does_nothing() {
    let env = TestEnv::new();
    standard_tree(&env);
    let store = store_of(&env);
    env.backup_ok(&target(&store), &[]);
    let inode = std::fs::metadata(store.join("a.txt")).unwrap().ino();

    let s = env.backup_ok(&target(&store), &[]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 4,
            unchanged: 4,
            ..Counts::default()
        }
    );
    assert_eq!(s.bytes_sent, 0);
    assert_eq!(s.snapshot, None);
    assert_eq!(
        manifests(&store).len(),
        1,
        "no manifest for a run that changed nothing"
    );
    assert_eq!(
        std::fs::metadata(store.join("a.txt")).unwrap().ino(),
        inode,
        "a.txt was not rewritten"
    );
}

#[test]
fn changed_content_is_copied_again() {
    let env = TestEnv::new();
    standard_tree(&env);
    let store = store_of(&env);
    env.backup_ok(&target(&store), &[]);

    let new_mtime = (1_700_000_100, 42);
    env.write_at("dir/b.txt", "BEE\n", new_mtime);
    let s = env.backup_ok(&target(&store), &[]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 4,
            uploaded: 1,
            unchanged: 3,
            ..Counts::default()
        }
    );
    assert_eq!(s.bytes_sent, 4);
    assert_stored(&store, "dir/b.txt", b"BEE\n", new_mtime);
    assert_eq!(manifests(&store).len(), 2);
    snapshot_manifest(&store, &s.snapshot).assert_file("dir/b.txt", b"BEE\n", new_mtime, 0o644);
}

#[test]
fn mtime_only_change_updates_the_stored_mtime_without_copying() {
    let env = TestEnv::new();
    standard_tree(&env);
    let store = store_of(&env);
    env.backup_ok(&target(&store), &[]);
    let inode = std::fs::metadata(store.join("a.txt")).unwrap().ino();

    let new_mtime = (1_700_000_500, 700);
    env.set_mtime("a.txt", new_mtime);
    let s = env.backup_ok(&target(&store), &[]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 4,
            touched: 1,
            unchanged: 3,
            ..Counts::default()
        }
    );
    assert_eq!(s.bytes_sent, 0);
    assert_stored(&store, "a.txt", b"hello\n", new_mtime);
    assert_eq!(
        std::fs::metadata(store.join("a.txt")).unwrap().ino(),
        inode,
        "a.txt was not rewritten"
    );
    snapshot_manifest(&store, &s.snapshot).assert_file("a.txt", b"hello\n", new_mtime, 0o600);
}

#[test]
fn renamed_file_is_copied_inside_the_store_and_the_old_one_stays() {
    let env = TestEnv::new();
    standard_tree(&env);
    let store = store_of(&env);
    env.backup_ok(&target(&store), &[]);

    env.rename("dir/sub/c.bin", "moved/c.bin");
    let s = env.backup_ok(&target(&store), &[]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 4,
            copied: 1,
            unchanged: 3,
            ..Counts::default()
        }
    );
    assert_eq!(s.bytes_sent, 0);
    assert_stored(
        &store,
        "moved/c.bin",
        &noise(3000, 1),
        (1_650_000_000, 999_999_999),
    );
    assert_eq!(
        store_files(&store),
        ["a.txt", "dir/b.txt", "dir/sub/c.bin", "empty.txt", "moved/c.bin"]
    );

    // With --delete the old copy goes.
    env.rename("moved/c.bin", "moved/c2.bin");
    let s = env.backup_ok(&target(&store), &["--delete"]);
    assert_eq!(s.copied, 1);
    assert_eq!(s.deleted, 2, "moved/c.bin and the earlier dir/sub/c.bin");
    assert_eq!(
        store_files(&store),
        ["a.txt", "dir/b.txt", "empty.txt", "moved/c2.bin"]
    );
    assert_eq!(
        snapshot_manifest(&store, &s.snapshot).paths(),
        ["a.txt", "dir/b.txt", "empty.txt", "moved/c2.bin"]
    );
}

#[test]
fn many_renames_with_delete_copy_before_deleting() {
    // See the S3 test of the same name: a delete must wait for the copy
    // that reads the old file.
    let env = TestEnv::new();
    let store = store_of(&env);
    let n = 16;
    let content = |i: usize| noise(200_000 + i, i as u64);
    for i in 0..n {
        env.write(&format!("old/f{i:02}.bin"), content(i));
    }
    env.backup_ok(&target(&store), &[]);
    for i in 0..n {
        env.rename(&format!("old/f{i:02}.bin"), &format!("new/g{:02}.bin", n - 1 - i));
    }
    // Every object of the set is deleted (renamed): past the delete guard's default.
    let s = env.backup_ok(
        &target(&store),
        &["--delete", "--jobs", "32", "--max-delete", "100%"],
    );
    let all = n as u64;
    assert_eq!(
        s.counts(),
        Counts {
            scanned: all,
            copied: all,
            deleted: all,
            ..Counts::default()
        }
    );
    let expected: Vec<String> = (0..n).map(|j| format!("new/g{j:02}.bin")).collect();
    assert_eq!(store_files(&store), expected);
    for j in 0..n {
        assert_stored(&store, &format!("new/g{j:02}.bin"), &content(n - 1 - j), T0);
    }
}

#[test]
fn duplicate_content_under_a_new_name_is_copied() {
    let env = TestEnv::new();
    standard_tree(&env);
    let store = store_of(&env);
    env.backup_ok(&target(&store), &[]);

    let dup_mtime = (1_700_000_900, 1);
    env.write_at("copies/b-again.txt", "bee\n", dup_mtime);
    let s = env.backup_ok(&target(&store), &[]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 5,
            copied: 1,
            unchanged: 4,
            ..Counts::default()
        }
    );
    assert_eq!(s.bytes_sent, 0);
    assert_stored(&store, "copies/b-again.txt", b"bee\n", dup_mtime);
    assert_stored(&store, "dir/b.txt", b"bee\n", (1_600_000_000, 5));
}

#[test]
fn deleted_file_stays_in_the_store_unless_delete_is_given() {
    let env = TestEnv::new();
    standard_tree(&env);
    let store = store_of(&env);
    env.backup_ok(&target(&store), &[]);

    env.remove("empty.txt");
    let s = env.backup_ok(&target(&store), &[]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 3,
            unchanged: 3,
            ..Counts::default()
        }
    );
    assert!(store.join("empty.txt").is_file());

    let s = env.backup_ok(&target(&store), &["--delete"]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 3,
            unchanged: 3,
            deleted: 1,
            ..Counts::default()
        }
    );
    assert_eq!(store_files(&store), ["a.txt", "dir/b.txt", "dir/sub/c.bin"]);
    assert!(manifests(&store).len() >= 2, "manifests are never deleted");
}

#[test]
fn large_file_with_multipart_settings_arrives_intact() {
    let env = TestEnv::new();
    let big = noise(12 * MIB, 9);
    env.write("big.bin", &big);
    let store = store_of(&env);
    let s = env.backup_ok(
        &target(&store),
        &["--multipart-threshold", "5242880", "--part-size", "8M"],
    );
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 1,
            uploaded: 1,
            ..Counts::default()
        }
    );
    assert_eq!(s.bytes_sent, (12 * MIB) as u64);
    assert_stored(&store, "big.bin", &big, T0);
}

#[test]
fn missing_store_directory_is_created() {
    let env = TestEnv::new();
    env.write("a.txt", "a");
    let store = env.root().join("not/yet/there");
    let s = env.backup_ok(&format!("file://{}", store.display()), &[]);
    assert_eq!(s.uploaded, 1);
    assert_stored(&store, "a.txt", b"a", T0);
}

/// A store directory gone from under a set that wrote there (a disk not
/// mounted) is not created again for a full backup into the mount point:
/// exit 1 naming it, nothing written; created by hand, it is backed up into.
#[test]
fn a_store_directory_gone_from_under_a_set_is_not_created_again() {
    let env = TestEnv::new();
    env.write("a.txt", "a");
    let store = env.root().join("usb/backup");
    let t = target(&store);
    env.backup_ok(&t, &[]);
    std::fs::remove_dir_all(env.root().join("usb")).unwrap();
    for extra in [&[][..], &["--dry-run"]] {
        let r = env.backup(&t, extra);
        r.expect_code(1);
        let err = r.error_line();
        assert!(
            err.contains("the store directory is gone") && err.contains("mount it"),
            "{err}"
        );
        assert!(!env.root().join("usb").exists(), "{}", r.show());
    }
    std::fs::create_dir_all(&store).unwrap();
    let s = env.backup_ok(&t, &[]);
    assert_eq!(s.uploaded, 1);
    assert_stored(&store, "a.txt", b"a", T0);
}

#[test]
fn store_that_is_a_file_is_an_error_naming_it() {
    let env = TestEnv::new();
    env.write("a.txt", "a");
    let store = env.root().join("plain-file");
    std::fs::write(&store, "I am not a directory").unwrap();
    let r = env.backup(&target(&store), &["--json"]);
    r.expect_code(1);
    let err = r.error_line();
    assert!(
        err.contains(&*store.to_string_lossy()),
        "error names the store: {err}"
    );
    assert_eq!(std::fs::read(&store).unwrap(), b"I am not a directory");
}

#[test]
fn missing_source_is_an_error_naming_it() {
    let env = TestEnv::new();
    let store = store_of(&env);
    let missing = env.root().join("no-such-dir");
    let mut cmd = env.cmd();
    cmd.arg("backup")
        .arg(&missing)
        .arg(target(&store))
        .arg("--state")
        .arg(&env.state);
    let r = run(cmd);
    r.expect_code(1);
    let err = r.error_line();
    assert!(
        err.contains(&*missing.to_string_lossy()),
        "error names the path: {err}"
    );
    assert!(store_files(&store).is_empty());
}

#[test]
fn a_file_that_cannot_be_written_exits_3_and_is_retried_next_run() {
    let env = TestEnv::new();
    env.write("a.txt", "a");
    env.write("bad.txt", "bad");
    env.write("dir/c.txt", "c");
    let store = store_of(&env);
    // A non-empty directory where bad.txt should go makes that one file fail.
    std::fs::create_dir_all(store.join("bad.txt/blocker")).unwrap();

    let r = env.backup(&target(&store), &["--json"]);
    r.expect_code(3);
    let s = r.summary();
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 3,
            uploaded: 2,
            failed: 1,
            ..Counts::default()
        }
    );
    assert_eq!(s.failures.len(), 1, "{:?}", s.failures);
    let f = &s.failures[0];
    assert!(
        f.path == "bad.txt" || f.path.ends_with("/bad.txt"),
        "failure path {f:?}"
    );
    assert!(!f.error.is_empty());
    assert_stored(&store, "a.txt", b"a", T0);
    assert_stored(&store, "dir/c.txt", b"c", T0);
    assert_eq!(
        snapshot_manifest(&store, &s.snapshot).paths(),
        ["a.txt", "dir/c.txt"]
    );

    std::fs::remove_dir_all(store.join("bad.txt")).unwrap();
    let s = env.backup_ok(&target(&store), &[]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 3,
            uploaded: 1,
            unchanged: 2,
            ..Counts::default()
        }
    );
    assert_stored(&store, "bad.txt", b"bad", T0);
}

#[test]
fn top_level_dot_s3backup_is_never_copied() {
    let env = TestEnv::new();
    env.write("a.txt", "a");
    env.write(".s3backup/state.db", "not for the store");
    env.write(".s3backup/manifests/19990101T000000Z-fake.jsonl.zst", "fake");
    env.write("dir/.s3backup/kept.txt", "kept");
    let store = store_of(&env);

    let s = env.backup_ok(&target(&store), &[]);
    assert_eq!(s.uploaded, 2);
    assert_eq!(store_files(&store), ["a.txt", "dir/.s3backup/kept.txt"]);
    assert!(!store.join(".s3backup/state.db").exists());
    assert_eq!(manifests(&store).len(), 1, "{:?}", manifests(&store));
}

#[test]
fn symlinks_are_stored_and_restored_as_links() {
    let env = TestEnv::new();
    env.write("a.txt", "a");
    env.symlink("a.txt", "link-to-a");
    env.symlink("/etc/passwd", "abs");
    let store = store_of(&env);
    let s = env.backup_ok(&target(&store), &[]);
    assert_eq!((s.uploaded, s.skipped, s.failed), (3, 0, 0), "{s:?}");
    // In the store a link is a link (never followed): plain to read.
    assert_eq!(
        std::fs::read_link(store.join("link-to-a")).unwrap(),
        std::path::Path::new("a.txt")
    );
    assert_eq!(
        std::fs::read_link(store.join("abs")).unwrap(),
        std::path::Path::new("/etc/passwd")
    );
    let s = env.backup_ok(&target(&store), &[]);
    assert_eq!(s.uploaded, 0, "{s:?}");

    for extra in [&[][..], &["--from-listing"][..]] {
        let dest = tempfile::tempdir().unwrap();
        env.restore_ok(&target(&store), dest.path(), extra);
        assert_eq!(tree(dest.path()), tree(&env.src), "restore {extra:?}");
    }
}

#[test]
fn dry_run_writes_nothing_to_the_store() {
    let env = TestEnv::new();
    standard_tree(&env);
    let store = store_of(&env);

    let r = env.backup(&target(&store), &["--dry-run"]);
    r.expect_code(0);
    assert_eq!(
        r.plan_lines(),
        STANDARD.map(|p| format!("upload {p}")),
        "{}",
        r.show()
    );
    assert!(!store.exists(), "a dry run creates no store");

    env.backup_ok(&target(&store), &[]);
    env.write_at("a.txt", "changed", (1_700_000_001, 0));
    env.set_mtime("dir/b.txt", (1_700_000_002, 0));
    env.rename("dir/sub/c.bin", "moved/c.bin");
    env.remove("empty.txt");
    let r = env.backup(&target(&store), &["--dry-run", "--delete", "--json"]);
    r.expect_code(0);
    let (_, s) = r.trailing_summary();
    assert!(s.dry_run);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 3,
            uploaded: 1,
            copied: 1,
            touched: 1,
            deleted: 2,
            ..Counts::default()
        }
    );
    let r = env.backup(&target(&store), &["--dry-run", "--delete"]);
    assert_eq!(
        r.plan_lines(),
        [
            "copy dir/sub/c.bin -> moved/c.bin",
            "delete dir/sub/c.bin",
            "delete empty.txt",
            "touch dir/b.txt",
            "upload a.txt"
        ],
        "{}",
        r.show()
    );
    assert_eq!(store_files(&store), STANDARD, "nothing changed in the store");
    assert_stored(&store, "a.txt", b"hello\n", T0);
    assert_stored(&store, "dir/b.txt", b"bee\n", (1_600_000_000, 5));
    assert_eq!(manifests(&store).len(), 1);
}

#[test]
fn same_size_rewrite_that_keeps_the_mtime_is_not_missed() {
    // A file rewritten within the file system's timestamp granularity of
    // its backup keeps its mtime. The row recorded in that window must not
    // vouch for the file on the next run ("racily clean", as git calls it).
    let env = TestEnv::new();
    let store = store_of(&env);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    // A moment ahead of the clock, so the backup surely sees the file within
    // the racy window however slow the machine is.
    let mtime = (now.as_secs() as i64 + 1, now.subsec_nanos());
    env.write_at("racy.txt", "first", mtime);
    env.write("calm.txt", "calm");
    env.backup_ok(&target(&store), &[]);

    env.write_at("racy.txt", "again", mtime);
    let s = env.backup_ok(&target(&store), &[]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 2,
            uploaded: 1,
            unchanged: 1,
            ..Counts::default()
        }
    );
    assert_eq!(std::fs::read(store.join("racy.txt")).unwrap(), b"again");

    // Once recorded long enough after its mtime, the row is trusted again:
    // re-hashed once more, found unchanged, nothing sent.
    env.set_mtime("racy.txt", T0);
    let s = env.backup_ok(&target(&store), &[]);
    assert_eq!(s.counts().touched, 1, "the old mtime goes to the store");
    let s = env.backup_ok(&target(&store), &[]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 2,
            unchanged: 2,
            ..Counts::default()
        }
    );
}

/// A store directory that no longer holds the set's latest snapshot (wiped,
/// or another disk mounted in its place) is not trusted: everything goes
/// to it again.
#[test]
fn a_store_without_the_sets_latest_snapshot_gets_everything_again() {
    let env = TestEnv::new();
    env.write("a.txt", "a");
    env.write("d/b.txt", "bee");
    let store = store_of(&env);
    env.backup_ok(&target(&store), &[]);
    std::fs::remove_dir_all(&store).unwrap();
    std::fs::create_dir_all(&store).unwrap();
    let s = env.backup_ok(&target(&store), &[]);
    assert_eq!((s.uploaded, s.unchanged), (2, 0), "{s:?}");
    assert_eq!(std::fs::read(store.join("d/b.txt")).unwrap(), b"bee");
}
