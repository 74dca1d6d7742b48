//! A local store copied (`cp -a`) onto a disk with coarser mtimes (the
//! exFAT image of `S3BACKUP_TEST_FOLDING_DIR`, see `case_dest`) still holds
//! what its snapshots recorded: the copy's ETags carry mtimes cut to the
//! disk's step, and the store compares them by its own rule
//! (`ObjectStore::same_etag`). `verify` and `verify --deep` pass, a backup
//! into the copy sends nothing, a restore from it gets every file. And
//! `verify --deep` judges by the bytes' blake3, never by an ETag first.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::case_dest::folding_dir;
use crate::common::*;

/// Files with nanosecond mtimes no coarser disk keeps (and one of them
/// large enough for ranged reads).
fn files() -> Vec<(String, Vec<u8>, (i64, u32))> {
    vec![
        ("a.txt".into(), b"alpha\n".to_vec(), T0),
        (
            "sub/b.txt".into(),
            b"bravo!\n".to_vec(),
            (1_700_000_123, 987_654_321),
        ),
        (
            "sub/deep/c.bin".into(),
            noise(3 << 20, 7),
            (1_700_000_456, 5_000_001),
        ),
        ("d.txt".into(), b"delta".to_vec(), (1_700_000_789, 199_999_999)),
    ]
}

/// `s3backup verify STORE --json EXTRA...`: exit code and report.
fn verify(env: &TestEnv, store: &Path, extra: &[&str]) -> (i32, Value) {
    let mut cmd = env.cmd();
    cmd.arg("verify").arg(store).arg("--json").args(extra);
    let r = run(cmd);
    let code = r.code.unwrap_or_else(|| panic!("killed\n{}", r.show()));
    let v = serde_json::from_str(r.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON value: {e}\n{}", r.show()));
    (code, v)
}

#[test]
fn a_store_copied_onto_exfat_verifies_backs_up_nothing_and_restores() {
    let Some(root) = folding_dir() else { return };
    let env = TestEnv::new();
    for (path, content, mtime) in files() {
        env.write_at(&path, &content, mtime);
    }
    let store = env.root().join("store");
    let first = env.backup_ok(store.to_str().unwrap(), &[]);
    assert_eq!(first.uploaded, 4);

    let dir = tempfile::tempdir_in(root).unwrap();
    let copy = dir.path().join("copy");
    let status = Command::new("cp")
        .arg("-a")
        .arg(&store)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success(), "cp -a onto the exFAT mount");
    // The point of the test: the copy's mtimes are coarser than the store's.
    let mtime = |p: &Path| filetime::FileTime::from_last_modification_time(&std::fs::metadata(p).unwrap());
    assert_ne!(mtime(&copy.join("sub/b.txt")), mtime(&store.join("sub/b.txt")));

    for extra in [&[][..], &["--deep"][..]] {
        let (code, v) = verify(&env, &copy, extra);
        assert_eq!(code, 0, "verify {extra:?} of the copy: {v}");
        assert_eq!(v["ok"], 4, "{v}");
        assert_eq!(v["problems"].as_array().map(Vec::len), Some(0), "{v}");
    }

    // A backup into the copy (a new set: its rows rebuilt from the copy's
    // manifest) finds everything there; so does the one after it.
    let target = copy.to_str().unwrap();
    for which in ["first", "second"] {
        let s = env.backup_ok(target, &[]);
        assert_eq!(
            (s.uploaded, s.copied, s.bytes_sent),
            (0, 0, 0),
            "{which} backup into the copy: {s:?}"
        );
        assert!(s.failures.is_empty(), "{s:?}");
    }
    // Only an mtime changed: the object is refreshed in place (a copy onto
    // itself, on the condition that it still has the recorded ETag), not sent.
    env.set_mtime("a.txt", (1_700_001_000, 250_000_000));
    let r = env.backup(target, &["--json"]);
    r.expect_code(0);
    let s = r.summary();
    assert_eq!((s.touched, s.uploaded, s.bytes_sent), (1, 0, 0), "{}", r.show());
    assert!(!r.stderr.contains("no longer holds"), "{}", r.show());
    let (code, v) = verify(&env, &copy, &["--deep"]);
    assert_eq!(code, 0, "verify --deep after the refresh: {v}");

    let dest = env.root().join("dest");
    let r = env.restore_ok(target, &dest, &[]);
    assert_eq!((r.files, r.failed), (4, 0), "{r:?}");
    for (path, content, _) in files() {
        assert_eq!(std::fs::read(dest.join(&path)).unwrap(), content, "{path}");
    }
}

/// `verify --deep` judges content by the bytes' blake3: a stored file whose
/// mtime alone changed (its ETag then differs by more than any step) is a
/// mismatch to the plain `verify`, which sees only the listing, and intact
/// to `--deep`; a file whose bytes changed (same size) is a mismatch to both.
#[test]
fn verify_deep_judges_by_the_bytes_not_the_etag() {
    let env = TestEnv::new();
    env.write("same.txt", "same bytes");
    env.write("changed.txt", "old bytes!");
    let store = env.root().join("store");
    env.backup_ok(store.to_str().unwrap(), &[]);
    let later = filetime::FileTime::from_unix_time(1_700_100_000, 0);
    filetime::set_file_mtime(store.join("same.txt"), later).unwrap();
    std::fs::write(store.join("changed.txt"), "new bytes!").unwrap();
    filetime::set_file_mtime(store.join("changed.txt"), later).unwrap();

    let (code, v) = verify(&env, &store, &[]);
    assert_eq!((code, &v["mismatched"]), (1, &Value::from(2)), "{v}");
    let (code, v) = verify(&env, &store, &["--deep"]);
    assert_eq!(
        (code, &v["ok"], &v["mismatched"]),
        (1, &Value::from(1), &Value::from(1)),
        "{v}"
    );
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{v}");
    assert_eq!(problems[0]["path"], "changed.txt", "{v}");
    assert!(problems[0]["detail"].as_str().unwrap().contains("blake3"), "{v}");
}
