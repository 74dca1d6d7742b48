//! `s3backup restore` and `snapshots` with a local directory store: the
//! same results as from S3 (bytes, mtimes to the nanosecond, modes,
//! directories, summary, exit codes), the store's own files standing in for
//! object metadata, and hand-written manifests for hostile names.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use filetime::FileTime;

use crate::common::*;

/// A store directory inside the test's root, and its target text.
fn store_of(env: &TestEnv) -> (PathBuf, String) {
    let store = env.root().join("store");
    let text = store.to_str().unwrap().to_owned();
    (store, text)
}

fn inodes(dest: &Path) -> Vec<u64> {
    files_of(dest)
        .iter()
        .map(|(p, _)| std::fs::metadata(dest.join(p)).unwrap().ino())
        .collect()
}

#[test]
fn round_trip_on_a_new_machine_and_a_second_run_that_does_nothing() {
    let env = TestEnv::new();
    let (_store, target) = store_of(&env);
    let n = rich_tree(&env) as u64;
    let expected = tree(&env.src);
    let backup = env.backup_ok(&target, &[]);
    let id = snapshot_id(backup.snapshot.as_deref().unwrap());

    let other = TestEnv::new();
    let dest = other.root().join("restored");
    let s = other.restore_ok(&target, &dest, &[]);
    assert_eq!(tree(&dest), expected, "DEST must equal the source tree");
    assert_eq!(s.source, id);
    assert_eq!(
        (s.files, s.downloaded, s.unchanged, s.failed),
        (n, n, 0, 0),
        "{s:?}"
    );
    assert_eq!(
        s.dirs,
        expected.values().filter(|n| n.kind == Kind::Dir).count() as u64
    );
    assert_eq!(paths_under(&other.home), Vec::<String>::new());

    // Again: nothing is copied (same inodes), one local mtime is put back.
    let before = inodes(&dest);
    filetime::set_file_mtime(dest.join("a.txt"), FileTime::from_unix_time(5, 5)).unwrap();
    let r = other.restore(&target, &dest, &[]);
    r.expect_code(0);
    assert!(
        r.stdout.contains(&format!("unchanged {n}")),
        "human summary\n{}",
        r.show()
    );
    assert_eq!(tree(&dest), expected);
    assert_eq!(inodes(&dest), before, "files were rewritten");
    let s = other.restore_ok(&target, &dest, &[]);
    assert_eq!((s.unchanged, s.downloaded, s.bytes_received), (n, 0, 0), "{s:?}");
}

#[test]
fn a_plain_directory_without_manifest_is_restored_from_its_listing() {
    let env = TestEnv::new();
    let (store, target) = store_of(&env);
    let put = |rel: &str, content: &str, mtime: (i64, u32), mode: u32| {
        let p = store.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        filetime::set_file_mtime(&p, FileTime::from_unix_time(mtime.0, mtime.1)).unwrap();
    };
    put("a.txt", "alpha", (1_500_000_001, 111), 0o600);
    put("dir/b.txt", "beta", (1_500_000_002, 222), 0o755);
    put(".s3backup/tmp/half-written", "junk", T0, 0o644);
    put(".s3backup/notes", "tool area", T0, 0o644);

    let dest = env.root().join("dest");
    let r = env.restore(&target, &dest, &["--json"]);
    r.expect_code(0);
    assert!(r.stderr.contains("notice"), "{}", r.show());
    let s = r.restore_summary();
    assert_eq!(s.source, "listing");
    assert_eq!((s.files, s.downloaded), (2, 2), "{s:?}");
    let t = tree(&dest);
    assert_eq!(paths_under(&dest), ["a.txt", "dir", "dir/b.txt"]);
    assert_eq!(t["a.txt"].kind, Kind::File(b"alpha".to_vec()));
    assert_eq!((t["a.txt"].mtime, t["a.txt"].mode), ((1_500_000_001, 111), 0o600));
    assert_eq!(
        (t["dir/b.txt"].mtime, t["dir/b.txt"].mode),
        ((1_500_000_002, 222), 0o755)
    );

    // Explicitly, and again: nothing to do.
    let s = env.restore_ok(&target, &dest, &["--from-listing"]);
    assert_eq!((s.source.as_str(), s.unchanged, s.downloaded), ("listing", 2, 0));
}

#[test]
fn older_snapshot_whose_file_changed_is_reported_unrecoverable() {
    // A pure mirror (`--history off`): what a run replaces or deletes is gone.
    let env = TestEnv::new();
    // This test replaces or deletes most of a tiny set on purpose (the guard is tested in `guard`).
    let env = env.past_the_guard();
    let (_store, target) = store_of(&env);
    env.write("same-size.txt", "one\n");
    env.write("grew.txt", "short");
    env.write("keep.txt", "kept");
    env.backup_ok(&target, &["--history", "off"]);
    env.write_at("same-size.txt", "two\n", (1_700_000_100, 0));
    env.write_at("grew.txt", "much longer than before", (1_700_000_100, 0));
    env.backup_ok(&target, &["--history", "off"]);
    let rows = env.snapshot_list(&target);
    assert_eq!(rows.len(), 2);

    let dest = env.root().join("dest");
    let r = env.restore(&target, &dest, &["--json", "--snapshot", &rows[0].id]);
    r.expect_code(3);
    let s = r.restore_summary();
    assert_eq!(s.failed_paths(), ["grew.txt", "same-size.txt"]);
    for f in &s.failures {
        assert!(f.error.contains("unrecoverable"), "{f:?}");
    }
    assert_eq!(paths_under(&dest), ["keep.txt"]);
    assert_eq!(temp_files(&dest), Vec::<String>::new());
}

#[test]
fn older_snapshot_of_a_file_whose_mtime_alone_changed_restores_with_the_old_mtime() {
    // The second backup only "touches" a.txt (same bytes, new mtime): the
    // first snapshot's content is still in the store, byte for byte.
    let env = TestEnv::new();
    let (_store, target) = store_of(&env);
    env.write_at("a.txt", "same bytes", (1_600_000_000, 7));
    env.backup_ok(&target, &[]);
    env.set_mtime("a.txt", (1_700_000_000, 9));
    let s = env.backup_ok(&target, &[]);
    assert_eq!(s.touched, 1, "{s:?}");
    let rows = env.snapshot_list(&target);
    assert_eq!(rows.len(), 2);

    let dest = env.root().join("dest");
    let r = env.restore(&target, &dest, &["--json", "--snapshot", &rows[0].id]);
    r.expect_code(0);
    let t = tree(&dest);
    assert_eq!(t["a.txt"].kind, Kind::File(b"same bytes".to_vec()));
    assert_eq!(t["a.txt"].mtime, (1_600_000_000, 7), "the first snapshot's mtime");
}

#[test]
fn store_copied_without_keeping_mtimes_still_restores_verified_content() {
    // `cp -r` of a store to another disk gives every file a new mtime; the
    // manifest's blake3 still proves the bytes are the snapshot's.
    let env = TestEnv::new();
    let (store, target) = store_of(&env);
    env.write_at("a.txt", "alpha", (1_600_000_000, 1));
    env.write_at("dir/b.txt", "beta", (1_600_000_000, 2));
    env.backup_ok(&target, &[]);
    for rel in ["a.txt", "dir/b.txt"] {
        filetime::set_file_mtime(store.join(rel), FileTime::from_unix_time(1_750_000_000, 0)).unwrap();
    }
    let dest = env.root().join("dest");
    let r = env.restore(&target, &dest, &["--json"]);
    r.expect_code(0);
    let t = tree(&dest);
    assert_eq!(t["a.txt"].kind, Kind::File(b"alpha".to_vec()));
    assert_eq!(t["a.txt"].mtime, (1_600_000_000, 1), "the snapshot's mtime");
    assert_eq!(t["dir/b.txt"].mtime, (1_600_000_000, 2));
}

#[test]
fn partial_restore_and_no_match() {
    let env = TestEnv::new();
    let (_store, target) = store_of(&env);
    env.write("docs/report.pdf", "pdf");
    env.write("docs/other.txt", "other");
    env.write("photos/a.jpg", "a");
    env.write("photos/sub/b.jpg", "b");
    env.write("music/x.mp3", "x");
    env.backup_ok(&target, &[]);

    let dest = env.root().join("dest");
    let s = env.restore_ok(&target, &dest, &["docs/report.pdf", "photos/"]);
    assert_eq!(s.files, 3);
    let files: Vec<String> = files_of(&dest).into_iter().map(|(p, _)| p).collect();
    assert_eq!(files, ["docs/report.pdf", "photos/a.jpg", "photos/sub/b.jpg"]);

    let none = env.root().join("none");
    let r = env.restore(&target, &none, &["nope"]);
    r.expect_code(1);
    assert!(
        r.error_line().contains("none of the requested paths"),
        "{}",
        r.show()
    );
    assert!(!none.exists());

    let some = env.root().join("some");
    let r = env.restore(&target, &some, &["--json", "music", "nope"]);
    r.expect_code(3);
    assert_eq!(r.restore_summary().failed_paths(), ["nope"]);
    assert_eq!(paths_under(&some), ["music", "music/x.mp3"]);

    // A trailing `/` names a directory only: the file music/x.mp3 is not
    // `music/x.mp3/`, and the directory docs is `docs/`.
    let slash = env.root().join("slash");
    let r = env.restore(&target, &slash, &["--json", "docs/", "music/x.mp3/"]);
    r.expect_code(3);
    assert_eq!(
        r.restore_summary().failed_paths(),
        ["music/x.mp3/"],
        "{}",
        r.show()
    );
    assert_eq!(
        paths_under(&slash),
        ["docs", "docs/other.txt", "docs/report.pdf"],
        "{}",
        r.show()
    );
}

#[test]
fn no_clobber_keeps_and_reports_and_a_plain_restore_replaces() {
    let env = TestEnv::new();
    let (_store, target) = store_of(&env);
    rich_tree(&env);
    let expected = tree(&env.src);
    env.backup_ok(&target, &[]);
    let dest = env.root().join("dest");
    env.restore_ok(&target, &dest, &[]);
    let m = mtime_of(&dest.join("a.txt"));
    std::fs::write(dest.join("a.txt"), "HELLO\n").unwrap();
    filetime::set_file_mtime(dest.join("a.txt"), FileTime::from_unix_time(m.0, m.1)).unwrap();

    let r = env.restore(&target, &dest, &["--json", "--no-clobber"]);
    r.expect_code(0);
    let s = r.restore_summary();
    assert_eq!(s.kept_paths, ["a.txt"]);
    assert!(r.stderr.contains("kept"), "{}", r.show());
    assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"HELLO\n");

    let s = env.restore_ok(&target, &dest, &[]);
    assert_eq!((s.downloaded, s.kept), (1, 0));
    assert_eq!(tree(&dest), expected);
}

#[test]
fn corrupted_file_in_the_store_fails_its_blake3_check() {
    let env = TestEnv::new();
    let (store, target) = store_of(&env);
    env.write("a.txt", "fine");
    env.write_at("dir/b.txt", "bee\n", (1_600_000_000, 5));
    env.backup_ok(&target, &[]);
    // Bit rot: same size, same mtime, other bytes.
    let p = store.join("dir/b.txt");
    let m = mtime_of(&p);
    std::fs::write(&p, "BEE\n").unwrap();
    filetime::set_file_mtime(&p, FileTime::from_unix_time(m.0, m.1)).unwrap();

    let dest = env.root().join("dest");
    std::fs::create_dir_all(dest.join("dir")).unwrap();
    std::fs::write(dest.join("dir/b.txt"), "old local").unwrap();
    let r = env.restore(&target, &dest, &["--json"]);
    r.expect_code(3);
    let s = r.restore_summary();
    assert_eq!(s.failed_paths(), ["dir/b.txt"]);
    assert!(s.failures[0].error.contains("blake3"), "{:?}", s.failures);
    assert_eq!(std::fs::read(dest.join("dir/b.txt")).unwrap(), b"old local");
    assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"fine");
    assert_eq!(temp_files(&dest), Vec::<String>::new());
}

#[test]
fn hostile_manifest_and_symlinks_write_nothing_outside_dest() {
    let env = TestEnv::new();
    let (store, target) = store_of(&env);
    let (sandbox, dest, outside) = sandbox(&env);
    let good = b"good".to_vec();
    let file = |path: &str| {
        serde_json::json!({
            "path": path, "type": "file", "size": good.len(), "mtime_ns": 1_600_000_000_000_000_000i64,
            "mode": "644", "blake3": blake3_hex(&good),
        })
    };
    let abs = format!("{}/abs.txt", outside.display());
    let hostile = ["../../evil", abs.as_str(), "ok/../../y", "a//b"];
    let mut entries: Vec<serde_json::Value> = hostile.iter().map(|p| file(p)).collect();
    entries.push(file("good.txt"));
    // A backslash is a plain name byte on Unix: one file inside DEST.
    entries.push(file("back\\slash"));
    entries.push(file("link/x"));
    // Real files behind every name the store can hold, so a restore that
    // followed them would have bytes to write.
    std::fs::create_dir_all(store.join("ok")).unwrap();
    std::fs::create_dir_all(store.join("link")).unwrap();
    for rel in ["good.txt", "back\\slash", "link/x"] {
        std::fs::write(store.join(rel), &good).unwrap();
    }
    std::fs::write(env.root().join("evil"), &good).unwrap();
    std::fs::create_dir_all(store.join(".s3backup/manifests")).unwrap();
    std::fs::write(
        store.join(".s3backup/manifests/20200101T000000Z-0000000000000000000000000000beef.jsonl.zst"),
        encode_manifest(&manifest_header(7, 28), &entries),
    )
    .unwrap();
    std::fs::create_dir_all(&dest).unwrap();
    std::os::unix::fs::symlink(&outside, dest.join("link")).unwrap();

    let r = env.restore(&target, &dest, &["--json"]);
    r.expect_code(3);
    let s = r.restore_summary();
    let mut want: Vec<String> = hostile
        .iter()
        .map(|p| p.to_string())
        .chain(["link/x".into()])
        .collect();
    want.sort();
    assert_eq!(s.failed_paths(), want, "{}", r.show());
    assert_eq!(s.downloaded, 2);
    assert_eq!(
        paths_under(&sandbox),
        [
            "a",
            "a/b",
            "a/b/dest",
            "a/b/dest/back\\slash",
            "a/b/dest/good.txt",
            "a/b/dest/link"
        ]
    );
    assert_eq!(paths_under(&outside), Vec::<String>::new());
}

#[test]
fn missing_or_empty_store_and_unknown_snapshot_are_errors() {
    let env = TestEnv::new();
    let (store, target) = store_of(&env);
    let dest = env.root().join("dest");

    let r = env.restore(&target, &dest, &[]);
    r.expect_code(1);
    assert!(r.error_line().contains(store.to_str().unwrap()), "{}", r.show());
    assert!(!dest.exists());
    assert!(!store.exists(), "restore created the store");

    std::fs::create_dir_all(&store).unwrap();
    let r = env.restore(&target, &dest, &[]);
    r.expect_code(1);
    let e = r.error_line();
    assert!(e.contains("nothing to restore"), "{}", r.show());
    assert!(e.contains(store.to_str().unwrap()), "{}", r.show());
    assert!(!dest.exists());

    env.write("a.txt", "a");
    env.backup_ok(&target, &[]);
    let r = env.restore(&target, &dest, &["--snapshot", "nope"]);
    r.expect_code(1);
    assert!(r.error_line().contains("s3backup snapshots"), "{}", r.show());
    assert!(!dest.exists());
}

#[test]
fn manifest_of_a_newer_format_is_refused() {
    let env = TestEnv::new();
    let (store, target) = store_of(&env);
    std::fs::create_dir_all(store.join(".s3backup/manifests")).unwrap();
    std::fs::write(store.join("a.txt"), "a").unwrap();
    let mut header = manifest_header(1, 1);
    header["format"] = 3.into();
    std::fs::write(
        store.join(".s3backup/manifests/20200101T000000Z-0000000000000000000000000000beef.jsonl.zst"),
        encode_manifest(&header, &[]),
    )
    .unwrap();
    let dest = env.root().join("dest");
    let r = env.restore(&target, &dest, &[]);
    r.expect_code(1);
    assert!(r.error_line().contains("newer"), "{}", r.show());
    assert!(!dest.exists());
}

#[test]
fn corrupt_or_truncated_manifest_is_reported() {
    let env = TestEnv::new();
    let (store, target) = store_of(&env);
    env.write("a.txt", "a");
    env.write("b.txt", "b");
    env.write("c.txt", "c");
    env.backup_ok(&target, &[]);
    let dir = store.join(".s3backup/manifests");
    let name = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let path = dir.join(name);
    let good = std::fs::read(&path).unwrap();

    // Not zstd at all: exit 1 naming the manifest, DEST not created.
    std::fs::write(&path, b"garbage").unwrap();
    let dest = env.root().join("dest");
    let r = env.restore(&target, &dest, &[]);
    r.expect_code(1);
    let e = r.error_line();
    assert!(
        e.contains("unreadable") && e.contains(".jsonl.zst"),
        "{}",
        r.show()
    );
    assert!(!dest.exists());

    // Cut short after the header and the first entries: those are
    // restored, the damage is reported, exit 3.
    let text = zstd::decode_all(&good[..]).unwrap();
    let cut = text.len() - 20;
    let mut enc = zstd::Encoder::new(Vec::new(), 3).unwrap();
    std::io::Write::write_all(&mut enc, &text[..cut]).unwrap();
    let truncated = enc.finish().unwrap(); // a whole frame of a cut text
    let mut frame_cut = good.clone();
    frame_cut.truncate(good.len() - 4);
    for (what, bytes) in [("cut text", truncated), ("cut frame", frame_cut)] {
        std::fs::write(&path, bytes).unwrap();
        let dest = env.root().join(what);
        let r = env.restore(&target, &dest, &["--json"]);
        // Exit 3 with the damage reported, or (when not even the header
        // decodes) exit 1; never a silent success.
        match r.code {
            Some(3) => assert!(r.restore_summary().failed >= 1, "{what}\n{}", r.show()),
            Some(1) => assert!(r.error_line().contains("unreadable"), "{what}\n{}", r.show()),
            _ => panic!("{what}: a damaged manifest is not a success\n{}", r.show()),
        }
        assert_eq!(temp_files(&dest), Vec::<String>::new());
    }
}

#[test]
fn snapshots_of_a_local_store() {
    let env = TestEnv::new();
    let (_store, target) = store_of(&env);
    env.write("a.txt", "12345");
    let first = env.backup_ok(&target, &[]);
    env.write("b.txt", "678");
    let second = env.backup_ok(&target, &[]);

    let rows = env.snapshot_list(&target);
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    assert_eq!(
        ids,
        [
            snapshot_id(first.snapshot.as_deref().unwrap()),
            snapshot_id(second.snapshot.as_deref().unwrap())
        ]
    );
    assert_eq!((rows[0].files, rows[0].bytes), (1, 5));
    assert_eq!((rows[1].files, rows[1].bytes), (2, 8));
    let r = env.snapshots(&target, &[]);
    r.expect_code(0);
    for row in &rows {
        let line = r.stdout.lines().find(|l| l.contains(&row.id)).unwrap();
        assert!(line.contains(&row.created), "{line}");
        assert!(
            line.contains(&indicatif::HumanBytes(row.bytes).to_string()),
            "{line}"
        );
    }
    let missing = env.root().join("no-store");
    env.snapshots(missing.to_str().unwrap(), &[]).expect_code(1);
}

/// A backslash is a plain name byte on Unix: a file named with one is
/// backed up to a local store and restored from it, as on S3 (the store
/// used to refuse such a key on every run, exit 3).
#[test]
fn a_name_with_a_backslash_round_trips_through_a_local_store() {
    let env = TestEnv::new();
    let (store, target) = store_of(&env);
    env.write("back\\..\\slash", "one file");
    env.write("d\\e/f", "under a directory with a backslash");
    let s = env.backup_ok(&target, &[]);
    assert_eq!((s.uploaded, s.failed), (2, 0), "{s:?}");
    assert_eq!(std::fs::read(store.join("back\\..\\slash")).unwrap(), b"one file");
    assert_eq!(env.backup_ok(&target, &[]).uploaded, 0);
    for extra in [&[][..], &["--from-listing"][..]] {
        let dest = env.root().join(format!("dest{}", extra.len()));
        env.restore_ok(&target, &dest, extra);
        // A listing holds no directory entries, so only files compare there.
        let files = |root: &Path| {
            let mut t = tree(root);
            t.retain(|_, n| extra.is_empty() || n.kind != Kind::Dir);
            t
        };
        assert_eq!(files(&dest), files(&env.src), "restore {extra:?}");
    }
}

/// Issue 13: a restore summary counts files and directories apart, and
/// its numbers add up. DEST holds a file where the snapshot has the
/// directory `d`: both files under it and both directories fail; on main
/// the directories were counted as failed files (`3 files: downloaded 1,
/// failed 4`).
#[test]
fn a_summary_where_directories_fail_counts_files_and_directories_apart() {
    let env = TestEnv::new();
    let (_store, target) = store_of(&env);
    env.write("top.txt", "top\n");
    env.write("d/x.txt", "x\n");
    env.write("d/sub/y.txt", "y\n");
    env.backup_ok(&target, &[]);

    let dest = env.root().join("restored");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("d"), "a file where the directory goes\n").unwrap();
    let r = env.restore(&target, &dest, &["--json"]);
    r.expect_code(3);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"));
    assert_eq!(
        (
            n("files"),
            n("downloaded"),
            n("unchanged"),
            n("kept"),
            n("failed")
        ),
        (3, 1, 0, 0, 2),
        "{v}"
    );
    assert_eq!(
        n("files"),
        n("downloaded") + n("unchanged") + n("kept") + n("failed"),
        "{v}"
    );
    assert_eq!((n("dirs"), n("dirs_failed")), (0, 2), "{v}");
    let s = r.restore_summary();
    assert_eq!(s.failures.len() as u64, s.failed + s.dirs_failed, "{s:?}");
    assert_eq!((n("unreadable_entries"), n("paths_not_found")), (0, 0), "{v}");
    let mut failed: Vec<&str> = v["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    failed.sort();
    assert_eq!(failed, ["d", "d/sub", "d/sub/y.txt", "d/x.txt"], "{v}");
    assert_eq!(std::fs::read(dest.join("top.txt")).unwrap(), b"top\n");
    assert_eq!(
        std::fs::read(dest.join("d")).unwrap(),
        b"a file where the directory goes\n",
        "the file in the way is left alone"
    );

    // The text summary says the same, and the last line names both kinds.
    let r = env.restore(&target, &dest, &[]);
    r.expect_code(3);
    assert!(
        r.stdout.contains(
            "3 files: downloaded 0, unchanged 1, kept 0, failed 2; 2 directories: restored 0, failed 2"
        ),
        "{}",
        r.show()
    );
    assert_eq!(
        r.stderr.lines().last(),
        Some("error: 2 file(s), 2 director(ies) were not restored"),
        "{}",
        r.show()
    );

    // Leaving `d` out by a filter is a skip, and the summary names it.
    let r = env.restore(&target, &dest, &["--exclude", "d"]);
    r.expect_code(0);
    assert!(
        r.stdout.contains(
            "1 files: downloaded 0, unchanged 1, kept 0, failed 0; 0 directories: restored 0, failed 0"
        ),
        "{}",
        r.show()
    );
    assert!(r.stdout.contains("excluded 4 by filters"), "{}", r.show());
}
