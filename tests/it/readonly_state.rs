//! Read-only commands never write the state file (issue 13): `state …`
//! and `sets` open it read-only, so they work on a read-only copy and
//! beside a backup holding the write lock, and a file from an older
//! s3backup is read through an upgraded copy and left as it is.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::*;

/// Every read-only inspection command line (after `--state FILE`).
const READERS: &[&[&str]] = &[
    &["sets"],
    &["sets", "--json"],
    &["state", "sets", "--json"],
    &["state", "files"],
    &["state", "files", "--json", "*.txt"],
    &["state", "show", "a.txt"],
    &["state", "runs", "--json"],
    &["state", "stats", "--json"],
];

/// The names and bytes of every file in `dir`.
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    all.sort();
    all
}

/// A state file with one backed-up set (a.txt, docs/b.txt), closed.
fn backed_up() -> TestEnv {
    let env = TestEnv::new();
    env.write("a.txt", "a").write("docs/b.txt", "b");
    let store = env.root().join("store");
    env.backup_ok(store.to_str().unwrap(), &["--set", "docs"]);
    env
}

/// A copy of the state file, mode 0444, in a 0555 directory, read by a
/// user who cannot write either (`nobody` when the tests run as root):
/// every read-only command works and nothing is written there.
#[test]
fn read_only_commands_work_on_a_read_only_copy_and_write_nothing() {
    let env = backed_up();
    let copy_dir = env.root().join("copy");
    std::fs::create_dir(&copy_dir).unwrap();
    let copy = copy_dir.join("state.db");
    std::fs::copy(&env.state, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(&copy_dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Let `nobody` reach the copy (the test root is 0700).
    std::fs::set_permissions(env.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let before = contents(&copy_dir);
    for args in READERS {
        let mut cmd = env.cmd();
        cmd.arg("--state").arg(&copy).args(*args);
        let r = run(as_nobody_if_root(cmd, env.root()));
        r.expect_code(0);
        assert!(!r.stdout.is_empty(), "{args:?} printed nothing\n{}", r.show());
    }
    assert_eq!(contents(&copy_dir), before, "the copy's directory is as it was");
    std::fs::set_permissions(&copy_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A backup holds the state's write lock for as long as a transaction
/// lasts; a read-only command does not wait for it (it took an exclusive
/// transaction to rewrite the schema version, and waited 30 s, then failed).
#[test]
fn read_only_commands_run_beside_a_writer_holding_the_lock() {
    let env = backed_up();
    let writer = rusqlite::Connection::open(&env.state).unwrap();
    writer.execute_batch("BEGIN EXCLUSIVE").unwrap();
    for args in READERS {
        let started = std::time::Instant::now();
        let mut cmd = env.cmd();
        cmd.arg("--state").arg(&env.state).args(*args);
        run(cmd).expect_code(0);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{args:?} waited for the writer"
        );
    }
    writer.execute_batch("ROLLBACK").unwrap();
}

/// A state file of schema version 1 (an s3backup from before three
/// upgrades), with one set and one file in it: read-only commands read it
/// through an upgraded scratch copy and show what it holds, and leave it
/// as it is (bytes and version); a backup upgrades it. They used to refuse
/// it (exit 1) until a backup had run.
#[test]
fn a_state_file_from_an_older_s3backup_is_read_and_left_alone() {
    let env = TestEnv::new();
    // This test replaces or deletes most of a tiny set on purpose (the guard is tested in `guard`).
    let env = env.past_the_guard();
    env.write("a.txt", "a");
    let source = env.src.canonicalize().unwrap();
    let store = env.root().join("store");
    {
        let db = rusqlite::Connection::open(&env.state).unwrap();
        db.execute_batch(include_str!("../../migrations/0001_initial.sql"))
            .unwrap();
        db.execute(
            "INSERT INTO backup_sets (id, source, target, created_at) VALUES (1, ?1, ?2, 0)",
            [source.to_str().unwrap(), &format!("file://{}", store.display())],
        )
        .unwrap();
        db.execute_batch(
            "INSERT INTO files (set_id, path, kind, size, mtime_ns, mode, blake3, etag, uploaded_at) \
             VALUES (1, 'a.txt', 'f', 1, 0, 420, 'ab', 'etag', 0); \
             PRAGMA user_version = 1",
        )
        .unwrap();
    }
    let before = std::fs::read(&env.state).unwrap();
    for args in READERS {
        let mut cmd = env.cmd();
        cmd.arg("--state").arg(&env.state).args(*args);
        let r = run(cmd);
        r.expect_code(0);
        assert!(r.stderr.is_empty(), "{args:?}: {}", r.show());
    }
    let mut cmd = env.cmd();
    cmd.arg("--state").arg(&env.state).args(["state", "files"]);
    let r = run(cmd);
    r.expect_code(0);
    assert!(r.stdout.contains("a.txt"), "{}", r.show());
    assert_eq!(std::fs::read(&env.state).unwrap(), before, "the file was written");
    let version = |path: &Path| -> i64 {
        rusqlite::Connection::open(path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(version(&env.state), 1);

    env.backup_ok(store.to_str().unwrap(), &[]);
    assert!(version(&env.state) > 1, "a backup upgrades it");
    let mut cmd = env.cmd();
    cmd.arg("--state").arg(&env.state).args(["state", "files"]);
    let r = run(cmd);
    r.expect_code(0);
    assert!(r.stdout.contains("a.txt"), "{}", r.show());
}

/// A state file a writer created and was killed before setting up (no
/// table, version 0; the crash harness leaves one) or an empty file holds
/// nothing: read-only commands show nothing and exit 0, and leave it as it
/// is. They used to call it "older than this s3backup's" (exit 1).
#[test]
fn a_state_file_never_set_up_reads_as_empty_and_is_left_alone() {
    let env = TestEnv::new();
    for setup in ["empty file", "created, never set up"] {
        let _ = std::fs::remove_file(&env.state);
        if setup == "empty file" {
            std::fs::write(&env.state, b"").unwrap();
        } else {
            rusqlite::Connection::open(&env.state)
                .unwrap()
                .execute_batch("PRAGMA journal_mode = WAL")
                .unwrap();
        }
        let before = std::fs::read(&env.state).unwrap();
        for args in READERS {
            let mut cmd = env.cmd();
            cmd.arg("--state").arg(&env.state).args(*args);
            let r = run(cmd);
            if args[..] == ["state", "show", "a.txt"] {
                r.expect_code(1);
                assert!(
                    r.error_line().contains("'a.txt' is not in the state file"),
                    "{}",
                    r.show()
                );
            } else {
                r.expect_code(0);
                assert!(r.stderr.is_empty(), "{setup}, {args:?}: {}", r.show());
            }
        }
        assert_eq!(
            std::fs::read(&env.state).unwrap(),
            before,
            "{setup}: the file was written"
        );
    }
}
