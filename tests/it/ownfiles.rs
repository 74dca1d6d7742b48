//! What s3backup writes itself is never backed up, and the local store is
//! never backed up into itself (issue 12, part 4): the state file, its
//! SQLite companions, lock files and shell history inside SOURCE are left
//! out (said once with `-v`); a local store inside SOURCE is left out, and
//! SOURCE or restore DEST inside the local store is refused. The per-set
//! lock holds whatever path reaches the state file, and a state directory
//! that cannot hold the state says so with the operating system's reason.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use crate::server::S3Server;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every file under `root`, relative, sorted.
fn files_under(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_type().is_dir())
        .map(|e| e.path().strip_prefix(root).unwrap().to_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

/// Backing up HOME with the default state location (inside HOME, as
/// `~/.local/state/s3backup/`): twice exit 0, none of the state file, its
/// `-wal`/`-shm`, lock files or shell history reaches the store (also
/// when `--follow-symlinks` reaches them through a link), the user's own
/// files beside them do, and `-v` says once what was left out.
#[test]
fn the_default_state_inside_source_is_left_out_and_said_once() {
    let env = TestEnv::new();
    let state_dir = env.home.join(".local/state/s3backup");
    std::fs::create_dir_all(&state_dir).unwrap();
    std::fs::write(state_dir.join("shell-history"), "backup ~ /x\n").unwrap();
    std::fs::write(state_dir.join("state.db.set-9.lock"), "").unwrap();
    std::fs::write(state_dir.join("notes.txt"), "mine").unwrap();
    std::fs::write(env.home.join("doc.txt"), "doc").unwrap();
    std::os::unix::fs::symlink(".local/state/s3backup", env.home.join("linked")).unwrap();

    // Each way twice: the first run creates the state, the second finds it.
    let runs = [
        ("store", [].as_slice()),
        ("store", &[]),
        ("followed", &["--follow-symlinks"]),
        ("followed", &["--follow-symlinks"]),
    ];
    for (round, (store, extra)) in runs.into_iter().enumerate() {
        let store = env.root().join(store);
        let mut cmd = env.cmd();
        cmd.arg("backup").arg(&env.home).arg(&store).arg("-v").args(extra);
        let r = run(cmd);
        r.expect_code(0);
        let said: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.contains("s3backup's own files"))
            .collect();
        assert_eq!(said.len(), 1, "said once, round {round}\n{}", r.show());
        assert!(said[0].contains(".local/state/s3backup/state.db"), "{}", r.show());
        assert!(state_dir.join("state.db").is_file(), "the default state is used");
    }
    for (store, mine) in [
        ("store", ["doc.txt", ".local/state/s3backup/notes.txt", "linked"]),
        (
            "followed",
            ["doc.txt", ".local/state/s3backup/notes.txt", "linked/notes.txt"],
        ),
    ] {
        let stored = files_under(&env.root().join(store));
        let own: Vec<&String> = stored
            .iter()
            .filter(|p| {
                let name = Path::new(p).file_name().unwrap().to_str().unwrap();
                name.starts_with("state.db") || name == "shell-history"
            })
            .collect();
        assert!(own.is_empty(), "own files stored: {own:?}\n{stored:?}");
        for mine in mine {
            assert!(stored.contains(&mine.to_string()), "{mine} missing: {stored:?}");
        }
    }
}

/// `backup ~/docs ~/docs/backup`: the store is not copied into itself,
/// run after run; `-v` says it was left out.
#[test]
fn a_local_store_inside_source_is_not_copied_into_itself() {
    let env = TestEnv::new();
    env.write("a.txt", "a");
    env.write("sub/b.txt", "b");
    let store = env.path("backup");
    for _ in 0..2 {
        let r = env.backup(s(&store), &["-v"]);
        r.expect_code(0);
        assert!(
            r.stderr
                .lines()
                .any(|l| l.contains("local store inside the source") && l.contains("backup")),
            "{}",
            r.show()
        );
    }
    let stored: Vec<String> = files_under(&store)
        .into_iter()
        .filter(|p| !p.starts_with(".s3backup/"))
        .collect();
    assert_eq!(stored, ["a.txt", "sub/b.txt"]);
}

/// SOURCE inside (or equal to) the local store, and a restore DEST
/// inside it: one error line, exit 1, nothing written.
#[test]
fn source_or_restore_dest_inside_the_local_store_is_refused() {
    let env = TestEnv::new();
    let store = env.root().join("store");
    env.write("a.txt", "a");
    env.backup_ok(s(&store), &[]);
    let before = files_under(&store);
    std::fs::create_dir_all(store.join("docs/docs")).unwrap();
    std::fs::write(store.join("docs/docs/x.txt"), "x").unwrap();
    for source in [store.join("docs"), store.clone()] {
        let mut cmd = env.cmd();
        cmd.arg("backup")
            .arg(&source)
            .arg(&store)
            .arg("--state")
            .arg(&env.state);
        let r = run(cmd);
        r.expect_code(1);
        let line = r.error_line();
        assert!(
            line.contains("lies inside the local store") && line.contains(s(&source)),
            "{}",
            r.show()
        );
    }
    std::fs::remove_dir_all(store.join("docs")).unwrap();
    assert_eq!(files_under(&store), before, "nothing written");

    let dest = store.join("restored");
    let mut cmd = env.cmd();
    cmd.arg("restore").arg(&store).arg(&dest);
    let r = run(cmd);
    r.expect_code(1);
    assert!(
        r.error_line().contains("lies inside the local store"),
        "{}",
        r.show()
    );
    assert!(!dest.exists(), "DEST not made");
    assert_eq!(files_under(&store), before, "nothing written");
}

/// Restoring into a DEST that holds the local store (a tree restored in
/// place, its store inside it) never writes into the store: a snapshot
/// holding a nested copy (`backup/a.txt`, as older versions made) would
/// overwrite the store's own `a.txt` with an older one.
#[test]
fn a_restore_never_writes_into_the_local_store_inside_dest() {
    let env = TestEnv::new();
    let dest = env.root().join("docs");
    let store = dest.join("backup");
    env.write("a.txt", "current");
    env.write("backup/a.txt", "older nested copy");
    env.backup_ok(s(&store), &[]);
    let mut cmd = env.cmd();
    cmd.arg("restore").arg(&store).arg(&dest).arg("--json");
    let r = run(cmd);
    r.expect_code(0);
    assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"current");
    assert_eq!(
        std::fs::read(store.join("a.txt")).unwrap(),
        b"current",
        "the store's object was overwritten\n{}",
        r.show()
    );
    // Said without -v, and counted.
    assert!(
        r.stderr.contains("notice: not restored: 2 entries"),
        "{}",
        r.show()
    );
    let summary: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(
        summary["store_entries_skipped"],
        2,
        "the directory and its file\n{}",
        r.show()
    );
}

/// The same state file reached through a symlink takes the same lock:
/// while one run is held mid-upload, a run of the same set through the
/// symlink is refused with the documented error and exit 1, and sends nothing.
#[test]
fn a_symlinked_state_path_takes_the_same_lock() {
    let server = S3Server::start();
    server.create_bucket("bkt");
    let mut env = TestEnv::with_server(&server);
    env.state = env.root().join("real/state.db");
    env.write("a.txt", "a");
    let alias: PathBuf = env.root().join("alias.db");
    server.hold_replies("a.txt");
    let first = {
        let cmd = env.backup_cmd("bkt::pre", &[]);
        std::thread::spawn(move || run(cmd))
    };
    assert!(
        server.wait_for_matching(1, Duration::from_secs(60), |r| r.op == "PutObject"
            && r.key.as_deref() == Some("pre/a.txt")),
        "the first run reached its upload"
    );
    std::os::unix::fs::symlink(&env.state, &alias).unwrap();
    let mut second = env.backup_cmd("bkt::pre", &[]);
    // The same command line with the symlinked state path.
    let args: Vec<_> = second
        .get_args()
        .map(|a| {
            if a == env.state.as_os_str() {
                alias.clone().into_os_string()
            } else {
                a.to_owned()
            }
        })
        .collect();
    second = env.cmd();
    second.args(args);
    let r = run(second);
    server.release_replies();
    r.expect_code(1);
    assert!(r.error_line().contains("already backing up"), "{}", r.show());
    first.join().unwrap().expect_code(0);
    assert_eq!(
        server.count_key("PutObject", "pre/a.txt"),
        1,
        "only the first run uploaded"
    );
}

/// A state directory this user cannot write in (SQLite must create the
/// `-wal` and `-shm` files there): one line naming the directory and the
/// operating system's reason, exit 1, and no advice to move a healthy
/// state aside. Permission bits do not stop root, so as root the binary
/// runs as `nobody`.
#[test]
fn a_read_only_state_directory_is_named_with_its_cause() {
    use std::os::unix::fs::PermissionsExt;
    let mut env = TestEnv::new();
    let state_dir = env.root().join("state-dir");
    env.state = state_dir.join("state.db");
    let store = env.root().join("store");
    env.write("a.txt", "a");
    env.backup_ok(s(&store), &[]);
    env.write("b.txt", "b");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        for e in walkdir::WalkDir::new(env.root()) {
            std::os::unix::fs::lchown(e.unwrap().path(), Some(65534), Some(65534)).unwrap();
        }
    }
    std::fs::set_permissions(env.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let r = run(as_nobody_if_root(env.backup_cmd(s(&store), &[]), env.root()));
    std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    r.expect_code(1);
    let line = r.error_line();
    assert!(
        line.contains(&format!("'{}'", s(&state_dir))) && line.contains("Permission denied"),
        "{}",
        r.show()
    );
    assert!(!line.contains("move it aside"), "{}", r.show());
    assert!(!store.join("b.txt").exists(), "nothing uploaded");
}

/// A full disk under an existing state file (SQLite says only "disk I/O
/// error" when its `-shm` file cannot grow) is named as such: one line
/// with the directory and "No space left on device", exit 1, advice to
/// free space, none to move the state aside, nothing uploaded. Needs a
/// small file system of its own: a 1 MiB tmpfs, which only root may mount;
/// elsewhere the test says why it did not run.
#[test]
fn a_full_disk_under_an_existing_state_is_named_as_such() {
    let mut env = TestEnv::new();
    let mnt = env.root().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .output();
    match mounted {
        Ok(out) if out.status.success() => {}
        other => {
            println!("skipped: cannot mount a tmpfs here ({other:?})");
            return;
        }
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    env.state = mnt.join("state.db");
    let store = env.root().join("store");
    env.write("a.txt", "a");
    env.backup_ok(s(&store), &[]);
    env.write("b.txt", "b");
    // Fill the file system: write until it refuses.
    let mut fill = std::fs::File::create(mnt.join("fill")).unwrap();
    let block = vec![0u8; 64 * 1024];
    while std::io::Write::write_all(&mut fill, &block).is_ok() {}
    // SQLite checkpoints and removes -wal/-shm on a clean close: the next
    // open must make them again, on a full disk.
    let r = env.backup(s(&store), &[]);
    r.expect_code(1);
    let line = r.error_line();
    assert!(
        line.contains(&format!("'{}'", s(&mnt))) && line.contains("No space left on device"),
        "{}",
        r.show()
    );
    assert!(line.contains("free some space"), "{}", r.show());
    assert!(!line.contains("move it aside"), "{}", r.show());
    assert!(!store.join("b.txt").exists(), "nothing uploaded");
}
