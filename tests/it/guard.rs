//! The delete guard and the change tripwire (issue 16): a backup that
//! would delete or replace too much of its set, or `--delete` from an
//! empty source or one whose root moved to another device, is refused
//! before it changes anything (the server's request log shows no write and
//! its keys stay as they were); the flags that allow each, dry runs, the
//! `--json` refusal, and limits saved with a named set.

use std::path::Path;

use crate::common::*;
use crate::server::S3Server;

const BUCKET: &str = "bkt";
const TARGET: &str = "bkt::pre";

/// The operations that change a bucket.
const WRITES: [&str; 7] = [
    "PutObject",
    "CopyObject",
    "DeleteObject",
    "DeleteObjects",
    "CreateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
];

/// A server with the bucket, and an environment backing up to it.
fn setup() -> (S3Server, TestEnv) {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    (server, env)
}

/// Runs `attempt` and checks it exits 1 having written nothing: no write
/// request, the same keys, the same state file bytes. Returns the run.
#[track_caller]
fn refused(server: &S3Server, env: &TestEnv, attempt: impl FnOnce() -> Run) -> Run {
    let keys = server.list_keys(BUCKET);
    let state = std::fs::read(&env.state).unwrap();
    server.clear_requests();
    let r = attempt();
    r.expect_code(1);
    let writes: Vec<String> = server
        .requests()
        .iter()
        .filter(|q| WRITES.contains(&q.op.as_str()))
        .map(|q| format!("{} {:?}", q.op, q.key))
        .collect();
    assert!(writes.is_empty(), "a refused run wrote {writes:?}\n{}", r.show());
    assert_eq!(server.list_keys(BUCKET), keys, "the bucket changed\n{}", r.show());
    assert!(
        std::fs::read(&env.state).unwrap() == state,
        "the state file changed\n{}",
        r.show()
    );
    r
}

/// Ten files, six of them in `d1/`, backed up with `--delete`.
fn ten_files(env: &TestEnv) {
    for i in 0..6 {
        env.write(&format!("d1/f{i}"), format!("one {i}"));
    }
    for i in 0..4 {
        env.write(&format!("d2/f{i}"), format!("two {i}"));
    }
    env.backup_ok(TARGET, &["--delete"]);
}

#[test]
fn an_emptied_source_with_delete_is_refused_whatever_the_limit() {
    let (server, env) = setup();
    env.write("a", "a").write("b/c", "c").write("b/d", "d");
    env.backup_ok(TARGET, &["--delete"]);
    std::fs::remove_dir_all(&env.src).unwrap();
    std::fs::create_dir(&env.src).unwrap();

    let r = refused(&server, &env, || {
        env.backup(TARGET, &["--delete", "--max-delete", "100%"])
    });
    let line = r.error_line();
    for part in [
        "refusing to delete 3 of the set's 3 objects (100%)",
        "--allow-empty-source",
        "pre",
    ] {
        assert!(line.contains(part), "{part:?} in {line}");
    }
    assert!(
        r.stderr.contains("2  b\n"),
        "top directories listed\n{}",
        r.show()
    );
    // A dry run says the same, with the same code.
    let r = refused(&server, &env, || {
        env.backup(TARGET, &["--delete", "--dry-run", "--max-delete", "100%"])
    });
    assert!(r.error_line().contains("--allow-empty-source"), "{}", r.show());
    // Without --delete nothing is deleted, so nothing is refused.
    assert_eq!(env.backup_ok(TARGET, &[]).deleted, 0);

    let s = env.backup_ok(
        TARGET,
        &["--delete", "--allow-empty-source", "--max-delete", "100%"],
    );
    assert_eq!(s.deleted, 3);
    assert!(
        server
            .list_keys(BUCKET)
            .iter()
            .all(|k| k.starts_with("pre/.s3backup/")),
        "{:?}",
        server.list_keys(BUCKET)
    );
}

#[test]
fn deletes_over_max_delete_are_refused_by_share_and_by_count_and_exactly_at_it_pass() {
    let (server, env) = setup();
    ten_files(&env);
    std::fs::remove_dir_all(env.path("d1")).unwrap();

    // 6 of 10 is over the default 50%.
    let r = refused(&server, &env, || env.backup(TARGET, &["--delete"]));
    let line = r.error_line();
    for part in [
        "refusing to delete 6 of the set's 10 objects (60%) in",
        "--max-delete 50%",
        "--max-delete 100%",
    ] {
        assert!(line.contains(part), "{part:?} in {line}");
    }
    assert!(r.stderr.contains("       6  d1\n"), "{}", r.show());
    refused(&server, &env, || {
        env.backup(TARGET, &["--delete", "--max-delete", "5"])
    });
    refused(&server, &env, || {
        env.backup(TARGET, &["--delete", "--max-delete", "59.9%"])
    });
    // Exactly at a count passes.
    assert_eq!(
        env.backup_ok(TARGET, &["--delete", "--max-delete", "6"]).deleted,
        6
    );

    // Two of the four left is exactly the default 50%: it passes.
    env.remove("d2/f0").remove("d2/f1");
    assert_eq!(env.backup_ok(TARGET, &["--delete"]).deleted, 2);
    // A bad limit is a usage error.
    let r = env.backup(TARGET, &["--delete", "--max-delete", "101%"]);
    r.expect_code(2);
}

#[test]
fn a_refusal_in_json_names_reason_counts_and_directories() {
    let (server, env) = setup();
    ten_files(&env);
    std::fs::remove_dir_all(env.path("d1")).unwrap();
    for dry in [false, true] {
        let mut args = vec!["--delete", "--json"];
        if dry {
            args.push("--dry-run");
        }
        let r = refused(&server, &env, || env.backup(TARGET, &args));
        let v: serde_json::Value =
            serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{}", r.show()));
        let refusal = &v["refused"];
        assert_eq!(refusal["reason"], "too_many_deletes", "{v}");
        assert_eq!(refusal["limit"], "50%", "{v}");
        assert_eq!(refusal["action"], "delete", "{v}");
        assert_eq!(
            (refusal["count"].as_u64(), refusal["set_files"].as_u64()),
            (Some(6), Some(10)),
            "{v}"
        );
        assert_eq!(refusal["percent"], 60.0, "{v}");
        assert_eq!(refusal["allow_with"], "--max-delete 100%", "{v}");
        assert_eq!(refusal["dry_run"], dry, "{v}");
        assert_eq!(refusal["target"], "s3://bkt/pre", "{v}");
        assert_eq!(
            refusal["top_dirs"],
            serde_json::json!([{"dir": "d1", "files": 6}]),
            "{v}"
        );
        assert!(r.error_line().contains("refusing to delete 6"), "{}", r.show());
    }
}

#[test]
fn a_mass_rewrite_trips_max_change_and_a_mass_touch_does_not() {
    let (server, env) = setup();
    ten_files(&env);
    // Every file touched (new mtimes, same bytes): judged by content, no replacement.
    for i in 0..6 {
        env.set_mtime(&format!("d1/f{i}"), (1_700_000_000, 0));
    }
    for i in 0..4 {
        env.set_mtime(&format!("d2/f{i}"), (1_700_000_000, 0));
    }
    let s = env.backup_ok(TARGET, &[]);
    assert_eq!((s.touched, s.uploaded), (10, 0), "{s:?}");

    // Six of ten rewritten (a mass encryption): refused, nothing sent, with a dry run too.
    for i in 0..6 {
        env.write(&format!("d1/f{i}"), format!("encrypted {i}!"));
    }
    let r = refused(&server, &env, || env.backup(TARGET, &[]));
    let line = r.error_line();
    for part in [
        "refusing to replace 6 of the set's 10 objects (60%)",
        "--max-change 50%",
        "--max-change 100%",
    ] {
        assert!(line.contains(part), "{part:?} in {line}");
    }
    assert!(r.stderr.contains("       6  d1\n"), "{}", r.show());
    let r = refused(&server, &env, || env.backup(TARGET, &["--dry-run"]));
    assert!(r.error_line().contains("--max-change"), "{}", r.show());
    refused(&server, &env, || env.backup(TARGET, &["--max-change", "5"]));
    refused(&server, &env, || env.backup(TARGET, &["--max-change", "59.9%"]));
    // Exactly at a count passes.
    let s = env.backup_ok(TARGET, &["--max-change", "6"]);
    assert_eq!(s.uploaded, 6, "{s:?}");
    assert_eq!(server.object_bytes(BUCKET, "pre/d1/f0").unwrap(), b"encrypted 0!");

    // Twenty new files are no replacements; five rewrites of ten are exactly 50%: passes.
    for i in 0..20 {
        env.write(&format!("new/n{i}"), format!("new {i}"));
    }
    for i in 0..4 {
        env.write(&format!("d2/f{i}"), format!("rewritten {i}"));
    }
    env.write("d1/f5", "rewritten 5");
    let s = env.backup_ok(TARGET, &[]);
    assert_eq!(s.uploaded, 25, "{s:?}");
}

#[test]
fn type_changes_count_as_replacements_and_exactly_half_passes() {
    let (server, env) = setup();
    for i in 0..20 {
        env.write(&format!("f{i}"), format!("file {i}"));
    }
    env.backup_ok(TARGET, &[]);
    // Ten of twenty become directories: exactly 50%, passes.
    for i in 0..10 {
        env.remove(&format!("f{i}"));
        env.write(&format!("f{i}/inner"), "x");
    }
    env.backup_ok(TARGET, &[]);
    // Seven of twenty objects' content replaced (six rewrites, one file
    // now a link): over 30%.
    for i in 10..16 {
        env.write(&format!("f{i}"), format!("changed {i}"));
    }
    env.remove("f0/inner");
    env.symlink("f12", "f0/inner");
    let r = refused(&server, &env, || env.backup(TARGET, &["--max-change", "30%"]));
    assert!(
        r.error_line()
            .contains("refusing to replace 7 of the set's 20 objects"),
        "{}",
        r.show()
    );
}

#[test]
fn a_share_never_refuses_a_handful_of_files() {
    let (_server, env) = setup();
    env.write("passwords.kdbx", "v1");
    env.backup_ok(TARGET, &["--delete"]);
    // The one file of the set edited every night: 100%, but one file.
    env.write("passwords.kdbx", "v2, longer");
    env.backup_ok(TARGET, &["--delete"]);
    for i in 0..4 {
        env.write(&format!("f{i}"), format!("{i}"));
    }
    env.backup_ok(TARGET, &["--delete"]);
    // Four of five deleted: 80%, but no more than five objects.
    for i in 0..4 {
        env.remove(&format!("f{i}"));
    }
    let s = env.backup_ok(TARGET, &["--delete"]);
    assert_eq!(s.deleted, 4);
}

/// A directory on another device than the test's temporary directory:
/// under /dev/shm, else the exFAT mount; `None` (and why) if neither is.
fn other_device(than: &Path) -> Result<tempfile::TempDir, String> {
    use std::os::unix::fs::MetadataExt;
    let here = std::fs::metadata(than).unwrap().dev();
    for base in ["/dev/shm", "/work/exfat"] {
        let Ok(md) = std::fs::metadata(base) else {
            continue;
        };
        if md.dev() == here {
            continue;
        }
        if let Ok(dir) = tempfile::Builder::new()
            .prefix("s3backup-guard-")
            .tempdir_in(base)
        {
            return Ok(dir);
        }
    }
    Err("neither /dev/shm nor /work/exfat is a writable directory on another device".into())
}

/// `backup --set NAME --state STATE EXTRA...` (a saved set, by name).
fn by_name(env: &TestEnv, name: &str, extra: &[&str]) -> Run {
    let mut cmd = env.cmd();
    cmd.args(["backup", "--set", name, "--state"])
        .arg(&env.state)
        .args(extra);
    run(cmd)
}

#[test]
fn delete_refuses_a_source_whose_root_moved_to_another_device() {
    let (server, env) = setup();
    let other = match other_device(env.root()) {
        Ok(d) => d,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    // SOURCE is a link (a mount point in real life): the set follows it as typed.
    let here = env.root().join("disk");
    for dir in [&here, &other.path().to_path_buf()] {
        for name in ["a", "b", "c"] {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join(name), name).unwrap();
        }
    }
    std::fs::remove_file(other.path().join("c")).unwrap();
    let link = env.root().join("mnt");
    std::os::unix::fs::symlink(&here, &link).unwrap();
    let mut cmd = env.cmd();
    cmd.arg("backup")
        .arg(&link)
        .arg(TARGET)
        .args(["--set", "m", "--delete", "--json", "--state"])
        .arg(&env.state)
        .args(["--endpoint-url", env.endpoint.as_deref().unwrap()]);
    run(cmd).expect_code(0);

    // The "mount" now shows another device, without c: one delete of three, under any limit.
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(other.path(), &link).unwrap();
    let r = refused(&server, &env, || by_name(&env, "m", &["--max-delete", "100%"]));
    let line = r.error_line();
    for part in [
        "refusing to delete 1 of the set's 3 objects",
        "another device",
        "--allow-device-change",
    ] {
        assert!(line.contains(part), "{part:?} in {line}");
    }
    refused(&server, &env, || by_name(&env, "m", &["--dry-run"]));
    let r = by_name(&env, "m", &["--allow-device-change", "--json"]);
    r.expect_code(0);
    assert_eq!(r.summary().deleted, 1);
    assert!(server.object_bytes(BUCKET, "pre/c").is_none());
    // The new device is recorded: the next run (one delete of two, 50%) needs no flag.
    std::fs::remove_file(other.path().join("b")).unwrap();
    let r = by_name(&env, "m", &["--json"]);
    r.expect_code(0);
    assert_eq!(r.summary().deleted, 1, "{}", r.show());

    // Without --delete a move is no refusal, and is recorded.
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&here, &link).unwrap();
    by_name(&env, "m", &["--no-delete"]).expect_code(0);
    std::fs::remove_file(here.join("c")).unwrap();
    let r = by_name(&env, "m", &["--json"]);
    r.expect_code(0);
    assert_eq!(r.summary().deleted, 1, "{}", r.show());
}

#[test]
fn guard_limits_are_saved_with_a_named_set() {
    let (server, env) = setup();
    for i in 0..30 {
        env.write(&format!("f{i}"), format!("{i}"));
    }
    env.backup_ok(
        TARGET,
        &[
            "--set",
            "g",
            "--delete",
            "--max-delete",
            "1",
            "--max-change",
            "10%",
        ],
    );
    env.remove("f0").remove("f1");
    // The saved --max-delete 1 refuses two deletes.
    let r = refused(&server, &env, || by_name(&env, "g", &[]));
    assert!(r.error_line().contains("--max-delete 1;"), "{}", r.show());
    // The saved --max-change 10% refuses six rewrites of thirty.
    for i in 2..8 {
        env.write(&format!("f{i}"), format!("changed {i}"));
    }
    let r = refused(&server, &env, || by_name(&env, "g", &["--no-delete"]));
    assert!(r.error_line().contains("--max-change 10%"), "{}", r.show());
    // Typed limits win for one run.
    let r = by_name(&env, "g", &["--max-delete", "2", "--max-change", "6", "--json"]);
    r.expect_code(0);
    assert_eq!((r.summary().deleted, r.summary().uploaded), (2, 6));
}

#[test]
fn a_renamed_tree_is_no_mass_delete_but_deleted_files_replaced_by_new_ones_are() {
    let (server, env) = setup();
    ten_files(&env);
    // Every file moves (d1 -> e1, d2 -> e2): the run copies, then deletes
    // the old keys; nothing is lost, so the guard lets it through.
    env.rename("d1", "e1").rename("d2", "e2");
    let s = env.backup_ok(TARGET, &["--delete"]);
    assert_eq!((s.copied, s.deleted, s.uploaded), (10, 10, 0));
    let keys = server.list_keys(BUCKET);
    assert!(keys.iter().all(|k| !k.starts_with("pre/d")), "{keys:?}");
    // Every file encrypted under a new name, its size and mtime kept (as
    // `touch -r` would): new content, so the deletes count.
    let rot13 = |s: &str| -> Vec<u8> {
        s.bytes()
            .map(|b| {
                if b.is_ascii_lowercase() {
                    (b - b'a' + 13) % 26 + b'a'
                } else {
                    b
                }
            })
            .collect()
    };
    for (dir, word, n) in [("e1", "one", 6), ("e2", "two", 4)] {
        for i in 0..n {
            env.remove(&format!("{dir}/f{i}"));
            env.write(&format!("{dir}/f{i}.locked"), rot13(&format!("{word} {i}")));
        }
    }
    let r = refused(&server, &env, || env.backup(TARGET, &["--delete"]));
    assert!(
        r.error_line()
            .contains("refusing to delete 10 of the set's 10 objects"),
        "{}",
        r.show()
    );
}
