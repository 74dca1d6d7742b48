//! The local directory store never reaches outside its root: a symbolic
//! link inside the store (left by a source whose link became a directory,
//! or planted there) is never written, deleted or read through (issue 12),
//! and what a killed backup left in the store's temporary area is removed
//! by the next backup, but not what a backup running at the same time is
//! writing (issue 12, part 5b).

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::common::*;
use crate::crash::Inotify;

/// Longest wait for a run to reach a point.
const WAIT: Duration = Duration::from_secs(60);

fn store_of(env: &TestEnv) -> PathBuf {
    env.root().join("store")
}

/// A directory outside the store with two files in it: what no backup may touch.
fn outside_dir(env: &TestEnv) -> PathBuf {
    let outside = env.root().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("victim.txt"), b"precious, not part of any backup").unwrap();
    std::fs::write(outside.join("x.txt"), b"outside x").unwrap();
    outside
}

/// Replaces the store's `a` (whatever it is) with a link to `to`.
fn plant_link(store: &Path, to: &Path) {
    let a = store.join("a");
    if std::fs::symlink_metadata(&a).is_ok_and(|md| md.is_dir()) {
        std::fs::remove_dir_all(&a).unwrap();
    }
    std::os::unix::fs::symlink(to, &a).unwrap();
}

/// The case: the source had a symlink `a` (stored as a symlink),
/// then a real directory `a`. The next backup writes `a/x.txt` into the
/// store's directory `a`, which replaces the stale link; nothing lands
/// where the link pointed.
#[test]
fn a_stored_link_that_became_a_directory_is_replaced_not_written_through() {
    let env = TestEnv::new();
    let (store, outside) = (store_of(&env), outside_dir(&env));
    let target = store.to_str().unwrap().to_owned();
    env.symlink(outside.to_str().unwrap(), "a");
    env.backup_ok(&target, &[]);
    assert!(std::fs::symlink_metadata(store.join("a")).unwrap().is_symlink());
    let before = tree(&outside);

    std::fs::remove_file(env.path("a")).unwrap();
    env.write("a/x.txt", "new x").write("a/new.txt", "new file");
    // The set's one object changes type: a replacement of all of it, past the tripwire's default.
    let r = env.backup(&target, &["--json", "--max-change", "100%"]);
    assert_eq!(
        tree(&outside),
        before,
        "the directory the link pointed to changed\n{}",
        r.show()
    );
    r.expect_code(0);
    let md = std::fs::symlink_metadata(store.join("a")).unwrap();
    assert!(
        md.is_dir() && !md.is_symlink(),
        "the stale link is replaced by a directory"
    );
    assert_eq!(std::fs::read(store.join("a/x.txt")).unwrap(), b"new x");
    assert_eq!(std::fs::read(store.join("a/new.txt")).unwrap(), b"new file");
}

/// A link planted in the store where a backed-up directory was: a backup
/// with `--delete` that deletes `a/victim.txt` and rewrites `a/x.txt`
/// deletes and writes nothing where the link points.
#[test]
fn a_link_planted_in_the_store_is_never_written_or_deleted_through() {
    let env = TestEnv::new();
    let (store, outside) = (store_of(&env), outside_dir(&env));
    let target = store.to_str().unwrap().to_owned();
    env.write("a/victim.txt", "backed up").write("a/x.txt", "old x");
    env.backup_ok(&target, &[]);
    plant_link(&store, &outside);
    let before = tree(&outside);

    env.remove("a/victim.txt");
    env.write_at("a/x.txt", "new x", (1_700_000_100, 0));
    let r = env.backup(&target, &["--json", "--delete"]);
    assert_eq!(
        tree(&outside),
        before,
        "the directory the link points to changed\n{}",
        r.show()
    );
    r.expect_code(0);
    assert!(!std::fs::symlink_metadata(store.join("a")).unwrap().is_symlink());
    assert_eq!(std::fs::read(store.join("a/x.txt")).unwrap(), b"new x");
    assert!(!store.join("a/victim.txt").exists());
}

/// A restore from a store whose directory `a` was replaced by a link to a
/// directory holding the very same file reads nothing through the link:
/// the file fails, naming the link, and nothing is restored from there.
#[test]
fn a_restore_does_not_read_through_a_link_in_the_store() {
    let env = TestEnv::new();
    let store = store_of(&env);
    let target = store.to_str().unwrap().to_owned();
    env.write("a/x.txt", "the content").write("b.txt", "b");
    env.backup_ok(&target, &[]);
    // The same bytes and mtime outside: only the path tells them apart.
    let outside = env.root().join("outside");
    std::fs::rename(store.join("a"), &outside).unwrap();
    plant_link(&store, &outside);

    let dest = env.root().join("dest");
    let r = env.restore(&target, &dest, &["--json"]);
    r.expect_code(3);
    let s = r.restore_summary();
    assert_eq!(s.failed_paths(), ["a/x.txt"], "{}", r.show());
    let why = &s.failure("a/x.txt").unwrap().error;
    assert!(why.contains("symbolic link"), "the failure names the link: {why}");
    assert!(!dest.join("a/x.txt").exists());
    assert_eq!(std::fs::read(dest.join("b.txt")).unwrap(), b"b");
}

/// Starts a backup of `env` to `target` paced to 256 KiB/s and waits for it
/// to write into a temporary file in the store's temporary area (whose
/// watch `tmp` holds) not named in `known`; returns the running child.
fn start_paced_backup(env: &TestEnv, target: &str, tmp: &Inotify, known: &[(String, u64)]) -> Child {
    let mut child = env
        .backup_cmd(target, &["--max-bandwidth", "256KiB"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let writing = tmp.wait_for(WAIT, |e| {
        e.mask & libc::IN_MODIFY != 0 && !known.iter().any(|(name, _)| *name == e.name)
    });
    if !writing {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the backup never wrote a temporary file");
    }
    child
}

/// The regular files in the store's temporary area, with their sizes
/// (multipart upload directories and lock files aside).
fn temp_files_of(store: &Path) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = std::fs::read_dir(store.join(".s3backup/tmp"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| (e.file_name().into_string().unwrap(), e.metadata().unwrap().len()))
        .filter(|(name, _)| !name.ends_with(".lock"))
        .collect();
    out.sort();
    out
}

/// Stops `child` (SIGSTOP) and waits until it has stopped, so its files
/// no longer change.
fn stop(child: &Child) {
    signal(child, libc::SIGSTOP);
    let mut status = 0;
    // SAFETY: waits for our own child; WUNTRACED reports its stop.
    let rc = unsafe { libc::waitpid(child.id() as i32, &mut status, libc::WUNTRACED) };
    assert!(
        rc > 0 && libc::WIFSTOPPED(status),
        "the running backup did not stop: {status:#x}"
    );
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: a plain system call on our own child's pid.
    let rc = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
}

/// A backup killed while it writes leaves a partial temporary file in the
/// store; the next backup of that store removes it (and says so at -v),
/// while the temporary file of another backup set's run going on at that
/// moment (stopped mid-write) is kept, and that run then finishes intact.
#[test]
fn a_killed_backups_temp_file_is_removed_by_the_next_run_but_not_a_running_ones() {
    let env = TestEnv::new();
    let store = store_of(&env);
    let target = store.to_str().unwrap().to_owned();
    env.write("first.txt", "makes the store and its temporary area");
    env.backup_ok(&target, &[]);
    let watch = Inotify::new();
    watch.watch(&store.join(".s3backup/tmp"), "store tmp");

    // 1. Another backup set (another source) writing to the same store,
    // stopped mid-write so that it is surely running while 2 and 3 happen.
    let other = TestEnv::new();
    let other_big = noise(512 * 1024, 2);
    other.write("other/big.bin", &other_big);
    let mut running = start_paced_backup(&other, &target, &watch, &[]);
    stop(&running);
    let theirs = temp_files_of(&store);
    assert_eq!(theirs.len(), 1, "the running backup's temporary file: {theirs:?}");

    // 2. A run of the first set killed in the middle of writing big.bin.
    env.write("big.bin", noise(512 * 1024, 1));
    let mut killed = start_paced_backup(&env, &target, &watch, &theirs);
    killed.kill().unwrap();
    assert_eq!(killed.wait().unwrap().signal(), Some(libc::SIGKILL));
    let during = temp_files_of(&store);
    let stale: Vec<_> = during
        .iter()
        .filter(|f| !theirs.iter().any(|t| t.0 == f.0))
        .cloned()
        .collect();
    assert_eq!(stale.len(), 1, "the kill left one temporary file: {during:?}");
    assert!(stale[0].1 > 0, "partly written: {stale:?}");

    // 3. The next run of the first set removes the killed run's file only.
    let r = env.backup(&target, &["--json", "-v"]);
    signal(&running, libc::SIGCONT);
    r.expect_code(0);
    let left: Vec<String> = temp_files_of(&store).into_iter().map(|f| f.0).collect();
    assert!(
        !left.contains(&stale[0].0),
        "the killed run's file is still there: {left:?}\n{}",
        r.show()
    );
    assert!(
        left.contains(&theirs[0].0),
        "the running backup's file was removed\n{}",
        r.show()
    );
    assert!(
        r.stderr.contains("removed 1 temporary file(s)"),
        "the removal is logged\n{}",
        r.show()
    );
    assert_eq!(
        std::fs::read(store.join("big.bin")).unwrap(),
        noise(512 * 1024, 1)
    );

    let status = running.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "the other set's backup finishes: {status:?}"
    );
    assert_eq!(std::fs::read(store.join("other/big.bin")).unwrap(), other_big);
    assert_eq!(temp_files_of(&store), [], "nothing is left behind");
}
