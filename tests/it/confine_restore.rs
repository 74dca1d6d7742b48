//! A restore changes nothing outside DEST, and what it creates inside is
//! never more open than the backup says: a symlink in DEST to a directory
//! outside is never followed (not even to call a file there "unchanged"
//! and set its recorded mode), on S3 (s3s-fs, and moto when
//! `S3BACKUP_MOTO_SERVER` is set) and on the local store, from a snapshot
//! and from a listing; setuid/setgid/sticky bits come back only with
//! `--preserve-special-bits`; directories created for a partial restore
//! get their recorded modes and mtimes; a killed restore's temporary files
//! are removed by the next one (but not while another restore writes them).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use crate::server::S3Server;
use crate::versioned::Moto;

const BUCKET: &str = "bkt";
const TARGET: &str = "bkt::pre";
/// The recorded mtime of the hostile entry: long ago.
const OLD: (i64, u32) = (1_000_000_000, 0);
/// The mtime of the file outside DEST.
const OUTSIDE_T: (i64, u32) = (1_650_000_000, 0);
const WAIT: Duration = Duration::from_secs(60);

fn setup() -> (S3Server, TestEnv) {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    (server, env)
}

/// A local directory store inside the test's root, and its target text.
fn local_store(env: &TestEnv) -> String {
    env.root().join("store").to_str().unwrap().to_owned()
}

/// Permission bits, special ones included, of `p` itself (no link followed).
fn mode_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// The `--json` summary as a JSON value (for fields the shared parser lacks).
fn json(r: &Run) -> serde_json::Value {
    serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("not JSON: {e}\n{}", r.show()))
}

/// The umask this test process (and so the binary) runs with.
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line.split_whitespace().nth(1).unwrap(), 8).unwrap()
}

/// The backup holds `d/v.sh` (mode 4777, an old mtime); DEST/d links to a
/// directory outside that holds a `v.sh` with the same content. Restored
/// from the snapshot and from a listing, `d/v.sh` (and the snapshot's
/// directory entry `d`) is refused (exit 3, the failure naming the link),
/// and the outside file keeps its mode, mtime and content; the rest of the
/// tree is restored and the link stays.
fn a_link_to_an_outside_directory_is_refused(env: &TestEnv, target: &str) {
    let content = b"#!/bin/sh\necho hello\n";
    env.write_at("d/v.sh", content, OLD);
    env.set_mode("d/v.sh", 0o4777);
    env.write("ok.txt", "ok");
    env.backup_ok(target, &[]);
    for (i, extra) in [&[][..], &["--from-listing"][..]].into_iter().enumerate() {
        let dest = env.root().join(format!("dest{i}"));
        let outside = env.root().join(format!("outside{i}"));
        std::fs::create_dir_all(&dest).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o700)).unwrap();
        let victim = outside.join("v.sh");
        std::fs::write(&victim, content).unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o755)).unwrap();
        filetime::set_file_mtime(
            &victim,
            filetime::FileTime::from_unix_time(OUTSIDE_T.0, OUTSIDE_T.1),
        )
        .unwrap();
        std::os::unix::fs::symlink(&outside, dest.join("d")).unwrap();

        let mut args = vec!["--json"];
        args.extend_from_slice(extra);
        let r = env.restore(target, &dest, &args);
        r.expect_code(3);
        let s = r.restore_summary();
        let failure = s
            .failure("d/v.sh")
            .unwrap_or_else(|| panic!("d/v.sh is refused and reported ({extra:?})\n{}", r.show()));
        assert!(
            failure.error.contains("symbolic link")
                && failure.error.contains(&*dest.join("d").to_string_lossy()),
            "the failure names the link: {failure:?}"
        );
        // The snapshot also records the directory `d`: its mode is not set through the link either.
        let want: &[&str] = if extra.is_empty() {
            &["d", "d/v.sh"]
        } else {
            &["d/v.sh"]
        };
        assert_eq!(s.failed_paths(), want, "{}", r.show());
        assert_eq!(mode_of(&outside), 0o700, "the outside directory's mode changed");
        assert_eq!(mode_of(&victim), 0o755, "mode changed through DEST/d ({extra:?})");
        assert_eq!(
            mtime_of(&victim),
            OUTSIDE_T,
            "mtime changed through DEST/d ({extra:?})"
        );
        assert_eq!(std::fs::read(&victim).unwrap(), content);
        assert_eq!(paths_under(&outside), ["v.sh"], "nothing written outside");
        assert!(
            std::fs::symlink_metadata(dest.join("d"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(dest.join("ok.txt")).unwrap(), b"ok");
    }
}

#[test]
fn a_link_to_an_outside_directory_is_never_followed_on_s3() {
    let (_server, env) = setup();
    a_link_to_an_outside_directory_is_refused(&env, TARGET);
}

#[test]
fn a_link_to_an_outside_directory_is_never_followed_on_the_local_store() {
    let env = TestEnv::new();
    a_link_to_an_outside_directory_is_refused(&env, &local_store(&env));
}

#[test]
fn a_link_to_an_outside_directory_is_never_followed_on_moto() {
    let Some(moto) = Moto::start("a_link_to_an_outside_directory_is_never_followed_on_moto") else {
        return;
    };
    moto.bucket("mbkt", false);
    let env = TestEnv::with_endpoint(&moto.endpoint());
    a_link_to_an_outside_directory_is_refused(&env, "mbkt::pre");
}

/// A hand-written listing (objects put by another tool, no manifest) whose
/// metadata claims `d/v.sh` has the outside file's content and mode 4777.
#[test]
fn a_hostile_listing_cannot_chmod_through_a_link_in_dest() {
    let (server, env) = setup();
    let content = b"known content";
    let c = sdk_client(&server.endpoint());
    block_on(
        c.put_object()
            .bucket(BUCKET)
            .key("pre/d/v.sh")
            .body(content.to_vec().into())
            .metadata("mtime", "1000000000")
            .metadata("mode", "4777")
            .metadata("blake3", blake3_hex(content))
            .send(),
    )
    .unwrap();
    let dest = env.root().join("dest");
    let outside = env.root().join("outside");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let victim = outside.join("v.sh");
    std::fs::write(&victim, content).unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink(&outside, dest.join("d")).unwrap();

    let r = env.restore(TARGET, &dest, &["--json"]);
    r.expect_code(3);
    assert_eq!(r.restore_summary().failed_paths(), ["d/v.sh"], "{}", r.show());
    assert_eq!(mode_of(&victim), 0o644, "{}", r.show());
}

#[test]
fn special_bits_are_dropped_and_said_unless_preserve_special_bits() {
    let (_server, env) = setup();
    env.write("bin/tool", "setuid tool");
    env.set_mode("bin/tool", 0o4755);
    env.write("shared/f.txt", "in a sticky directory");
    env.set_mode("shared", 0o1777);
    env.write("plain.txt", "plain");
    env.backup_ok(TARGET, &[]);

    let dest = env.root().join("dropped");
    let r = env.restore(TARGET, &dest, &["--json"]);
    r.expect_code(0);
    assert_eq!(mode_of(&dest.join("bin/tool")), 0o755, "{}", r.show());
    assert_eq!(mode_of(&dest.join("shared")), 0o777, "{}", r.show());
    assert_eq!(mode_of(&dest.join("plain.txt")), 0o644);
    assert_eq!(json(&r)["special_bits_dropped"], 2, "{}", r.show());
    assert!(
        r.stderr.contains("--preserve-special-bits") && r.stderr.contains("2 entries"),
        "the restore says so\n{}",
        r.show()
    );

    let kept = env.root().join("kept");
    let r = env.restore(TARGET, &kept, &["--json", "--preserve-special-bits"]);
    r.expect_code(0);
    assert_eq!(mode_of(&kept.join("bin/tool")), 0o4755, "{}", r.show());
    assert_eq!(mode_of(&kept.join("shared")), 0o1777, "{}", r.show());
    assert_eq!(json(&r)["special_bits_dropped"], 0);
    assert!(!r.stderr.contains("--preserve-special-bits"), "{}", r.show());

    // A file found unchanged gets its mode set the same way.
    let r = env.restore(TARGET, &kept, &["--json"]);
    r.expect_code(0);
    assert_eq!(r.restore_summary().unchanged, 3);
    assert_eq!(mode_of(&kept.join("bin/tool")), 0o755, "{}", r.show());
}

/// `some/` and `some/dir/` are 0700 with their own mtimes in the backup; a
/// restore of only `some/dir/file.txt` (by path, or by `--include`) creates
/// both with those modes and mtimes, and a listing restore (no recorded
/// directories) gives them the default mode.
fn partial_restores_give_created_directories_their_recorded_modes(env: &TestEnv, target: &str) {
    env.write("some/dir/file.txt", "secret");
    env.write("some/other.bin", "other");
    env.write("else.bin", "else");
    env.set_mode("some/dir", 0o700).set_mode("some", 0o700);
    env.set_mtime("some/dir", (1_500_000_002, 2))
        .set_mtime("some", (1_500_000_001, 1));
    env.backup_ok(target, &[]);

    let ways: [&[&str]; 2] = [&["some/dir/file.txt"], &["--exclude", "*", "--include", "*.txt"]];
    for (i, args) in ways.into_iter().enumerate() {
        let dest = env.root().join(format!("dest{i}"));
        let s = env.restore_ok(target, &dest, args);
        assert_eq!(s.downloaded, 1, "{args:?} {s:?}");
        assert_eq!(paths_under(&dest), ["some", "some/dir", "some/dir/file.txt"]);
        assert_eq!(mode_of(&dest.join("some")), 0o700, "{args:?}");
        assert_eq!(mode_of(&dest.join("some/dir")), 0o700, "{args:?}");
        assert_eq!(mtime_of(&dest.join("some")), (1_500_000_001, 1), "{args:?}");
        assert_eq!(mtime_of(&dest.join("some/dir")), (1_500_000_002, 2), "{args:?}");
    }

    let dest = env.root().join("from-listing");
    env.restore_ok(target, &dest, &["--from-listing", "some/dir/file.txt"]);
    let default = 0o777 & !umask();
    assert_eq!(mode_of(&dest.join("some")), default);
    assert_eq!(mode_of(&dest.join("some/dir")), default);
    assert_eq!(std::fs::read(dest.join("some/dir/file.txt")).unwrap(), b"secret");
}

#[test]
fn partial_restores_give_created_directories_their_recorded_modes_on_s3() {
    let (_server, env) = setup();
    partial_restores_give_created_directories_their_recorded_modes(&env, TARGET);
}

#[test]
fn partial_restores_give_created_directories_their_recorded_modes_on_the_local_store() {
    let env = TestEnv::new();
    partial_restores_give_created_directories_their_recorded_modes(&env, &local_store(&env));
}

/// Starts a restore of `paths` into `dest` whose download of `sub/x.bin`
/// is held by the server, and returns it once that GET has arrived (its
/// temporary file then exists).
fn restore_held_at_x(server: &S3Server, env: &TestEnv, dest: &Path, paths: &[&str]) -> std::process::Child {
    server.hold_replies("sub/x.bin");
    server.clear_requests();
    let mut cmd = env.restore_cmd(TARGET, dest, paths);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let child = cmd.spawn().unwrap();
    let reached = server.wait_for_matching(1, WAIT, |r| {
        r.op == "GetObject" && r.key.as_deref() == Some("pre/sub/x.bin")
    });
    assert!(
        reached,
        "never reached the download of sub/x.bin: {:?}",
        server.ops()
    );
    child
}

#[test]
fn a_killed_restore_leaves_owner_only_directories_and_its_temporary_file_goes_next_time() {
    let (server, env) = setup();
    env.write("sub/x.bin", noise(1000, 1));
    env.write("sub/y.txt", "y");
    env.write("top.txt", "top");
    env.set_mode("sub", 0o750).set_mtime("sub", (1_500_000_000, 0));
    env.backup_ok(TARGET, &[]);
    let dest = env.root().join("dest");

    let mut first = restore_held_at_x(&server, &env, &dest, &["sub/x.bin"]);
    let temps = temp_files(&dest);
    assert_eq!(
        temps.len(),
        1,
        "the held download has its temporary file: {temps:?}"
    );
    assert_eq!(mode_of(&dest.join("sub")), 0o700, "owner-only while it fills");

    // Another restore into the same DEST while the first one writes: it
    // leaves the other's temporary file alone.
    let r = env.restore(TARGET, &dest, &["--json", "sub/y.txt", "top.txt"]);
    r.expect_code(0);
    assert_eq!(json(&r)["stale_temp_removed"], 0, "{}", r.show());
    assert_eq!(
        temp_files(&dest),
        temps,
        "a live restore's temporary file was removed"
    );

    first.kill().unwrap();
    first.wait().unwrap();
    server.release_replies();
    assert_eq!(temp_files(&dest), temps, "the killed restore left it");
    assert_eq!(
        mode_of(&dest.join("sub")),
        0o700,
        "a killed restore leaves nothing more open"
    );

    let r = env.restore(TARGET, &dest, &["--json"]);
    r.expect_code(0);
    assert_eq!(json(&r)["stale_temp_removed"], 1, "{}", r.show());
    assert!(
        r.stderr.contains("removed 1 temporary file"),
        "the restore says how many\n{}",
        r.show()
    );
    assert_eq!(temp_files(&dest), Vec::<String>::new());
    assert_eq!(tree(&dest), tree(&env.src));

    // Nothing of this tool's is left to remove: the next run says nothing.
    let r = env.restore(TARGET, &dest, &["--json"]);
    r.expect_code(0);
    assert_eq!(json(&r)["stale_temp_removed"], 0);
    assert!(!r.stderr.contains("temporary file"), "{}", r.show());
}

/// A file of the user's named like a temporary file but somewhere the
/// restore never goes is not searched for; one in a directory it visits is
/// (the name is the tool's: README says so).
#[test]
fn only_names_with_the_temporary_prefix_are_removed() {
    let (_server, env) = setup();
    env.write("a/f.txt", "f");
    env.backup_ok(TARGET, &[]);
    let dest = env.root().join("dest");
    std::fs::create_dir_all(dest.join("a")).unwrap();
    std::fs::create_dir_all(dest.join("elsewhere")).unwrap();
    for p in [
        "a/.s3backup-restore-abc",
        "a/s3backup-restore-x",
        "a/.s3backup-restorex",
        "elsewhere/.s3backup-restore-y",
    ] {
        std::fs::write(dest.join(p), "x").unwrap();
    }
    let r = env.restore(TARGET, &dest, &["--json"]);
    r.expect_code(0);
    assert_eq!(json(&r)["stale_temp_removed"], 1, "{}", r.show());
    let mut left: Vec<PathBuf> = paths_under(&dest).into_iter().map(PathBuf::from).collect();
    left.sort();
    assert_eq!(
        left,
        [
            "a",
            "a/.s3backup-restorex",
            "a/f.txt",
            "a/s3backup-restore-x",
            "elsewhere",
            "elsewhere/.s3backup-restore-y"
        ]
        .map(PathBuf::from)
    );
}

/// What a killed restore left in a tree is not backed up from it.
#[test]
fn a_backup_leaves_restore_temporaries_out() {
    let (server, env) = setup();
    env.write("a.txt", "a");
    env.write("d/.s3backup-restore-0123abcd", "half a download");
    env.write(".s3backup-restore-link-x", "x");
    env.write("d/.s3backup-restorex", "a user's file");
    env.backup_ok(TARGET, &[]);
    let mut keys: Vec<String> = server
        .list_keys(BUCKET)
        .into_iter()
        .filter(|k| !k.contains(".s3backup/"))
        .collect();
    keys.sort();
    assert_eq!(keys, ["pre/a.txt", "pre/d/.s3backup-restorex"]);
}

/// A file in DEST that is a hard link to a file outside, with the same
/// content as the backup's but another mode and mtime: the restore replaces
/// DEST's name (a new file renamed over it) instead of setting the mode
/// and mtime on the shared inode, so the outside name keeps its own. On a
/// local store and on S3, from a snapshot and from a listing.
#[test]
fn a_hard_link_to_a_file_outside_keeps_the_outside_names_mode_and_mtime() {
    let (_server, s3_env) = setup();
    let local_env = TestEnv::new();
    let local = local_store(&local_env);
    for (env, target) in [(&s3_env, TARGET), (&local_env, local.as_str())] {
        env.write_at("d/f", "same bytes", OLD);
        env.set_mode("d/f", 0o644);
        env.backup_ok(target, &[]);
        for extra in [&[][..], &["--from-listing"][..]] {
            let outside = env.root().join(format!("outside{}", extra.len()));
            let dest = env.root().join(format!("dest{}", extra.len()));
            std::fs::create_dir_all(&outside).unwrap();
            std::fs::create_dir_all(dest.join("d")).unwrap();
            let hf = outside.join("hf");
            std::fs::write(&hf, "same bytes").unwrap();
            std::fs::set_permissions(&hf, std::fs::Permissions::from_mode(0o600)).unwrap();
            filetime::set_file_mtime(&hf, filetime::FileTime::from_unix_time(OUTSIDE_T.0, OUTSIDE_T.1))
                .unwrap();
            std::fs::hard_link(&hf, dest.join("d/f")).unwrap();

            env.restore_ok(target, &dest, extra);
            assert_eq!(mode_of(&hf), 0o600, "{target} {extra:?}: outside mode changed");
            let t = filetime::FileTime::from_last_modification_time(&std::fs::metadata(&hf).unwrap());
            assert_eq!(
                t.unix_seconds(),
                OUTSIDE_T.0,
                "{target} {extra:?}: outside mtime changed"
            );
            assert_eq!(std::fs::read(&hf).unwrap(), b"same bytes");
            // DEST's name is the backup's file, on its own now.
            assert_eq!(std::fs::read(dest.join("d/f")).unwrap(), b"same bytes");
            assert_eq!(mode_of(&dest.join("d/f")), 0o644, "{target} {extra:?}");
            let t = filetime::FileTime::from_last_modification_time(
                &std::fs::metadata(dest.join("d/f")).unwrap(),
            );
            assert_eq!(t.unix_seconds(), OLD.0, "{target} {extra:?}");
        }
    }
}
