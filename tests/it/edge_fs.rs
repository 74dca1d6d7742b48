//! File-system edge cases met in the middle of a run: files that change,
//! vanish or cannot be read while a backup goes on, and sparse files.
//! Timing comes from the server holding a reply back (no sleeps): the
//! change is made while the client waits for it.

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use crate::server::S3Server;

const BUCKET: &str = "bkt";
const TARGET: &str = "bkt::pre";
const WAIT: Duration = Duration::from_secs(60);

/// The state's file paths, sorted.
fn recorded(env: &TestEnv) -> Vec<String> {
    let r = run({
        let mut c = env.cmd();
        c.args(["state", "files", "--json", "--state"]).arg(&env.state);
        c
    });
    r.expect_code(0);
    // One JSON object per line.
    let mut paths: Vec<String> = r
        .stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["path"].as_str().unwrap().to_owned()
        })
        .collect();
    paths.sort();
    paths
}

/// Starts a backup with `extra` args, waits until the server has answered
/// (but not yet replied to) the upload of `held`, runs `meanwhile`, lets
/// the reply go and returns the finished run.
fn backup_around_held_upload(
    server: &S3Server,
    env: &TestEnv,
    held: &str,
    extra: &[&str],
    meanwhile: impl FnOnce(),
) -> Run {
    let key = format!("pre/{held}");
    server.hold_replies(&key);
    let mut cmd = env.backup_cmd(TARGET, extra);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let reached = server.wait_for_matching(1, WAIT, |r| {
        r.op == "PutObject" && r.key.as_deref() == Some(&key) && r.status != 0
    });
    meanwhile();
    server.release_replies();
    let out = child.wait_with_output().unwrap();
    assert!(reached, "the upload of {held} never arrived: {:?}", server.ops());
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_file_changed_during_its_upload_is_reported_and_never_recorded() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    env.write("a.txt", "first version");
    env.write("b.txt", "steady");

    let r = backup_around_held_upload(&server, &env, "a.txt", &["--json"], || {
        env.write_at("a.txt", "second version, longer", (1_700_000_100, 0));
    });
    r.expect_code(3);
    let s = r.summary();
    assert_eq!(s.failures.len(), 1, "{}", r.show());
    assert_eq!(s.failures[0].path, "a.txt");
    assert!(
        s.failures[0].error.contains("changed while being backed up"),
        "{s:?}"
    );
    assert_eq!(
        recorded(&env),
        ["b.txt"],
        "no row for bytes that may mix two versions"
    );

    // The next run sends the file as it is now.
    let s = env.backup_ok(TARGET, &[]);
    assert_eq!(s.uploaded, 1, "{s:?}");
    assert_eq!(
        server.object_bytes(BUCKET, "pre/a.txt").unwrap(),
        b"second version, longer"
    );
    assert_eq!(recorded(&env), ["a.txt", "b.txt"]);
}

#[test]
fn a_file_that_vanishes_between_scan_and_read_is_reported_and_the_rest_go_up() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    env.write("a.txt", "sent first");
    env.write("b.txt", "gone before it is read");
    env.write("c.txt", "sent last");

    // One file at a time: b.txt is scanned and hashed, then waits behind a.txt.
    let r = backup_around_held_upload(&server, &env, "a.txt", &["--json", "--jobs", "1"], || {
        env.remove("b.txt");
    });
    r.expect_code(3);
    let s = r.summary();
    assert_eq!(s.failures.len(), 1, "{}", r.show());
    assert_eq!(s.failures[0].path, "b.txt");
    assert_eq!(recorded(&env), ["a.txt", "c.txt"]);
    assert!(server.object_bytes(BUCKET, "pre/b.txt").is_none());

    // Gone for good: the next run has nothing to do and nothing to report.
    let s = env.backup_ok(TARGET, &[]);
    assert_eq!((s.uploaded, s.failed), (0, 0), "{s:?}");
}

/// Makes everything under `root` belong to `nobody`, so a run as `nobody`
/// sees permission bits the way a normal user does (they do not stop root).
fn give_to_nobody(root: &std::path::Path) {
    std::os::unix::fs::lchown(root, Some(65534), Some(65534)).unwrap();
    for e in walkdir::WalkDir::new(root) {
        let e = e.unwrap();
        std::os::unix::fs::lchown(e.path(), Some(65534), Some(65534)).unwrap();
    }
}

#[test]
fn unreadable_files_and_directories_are_reported_the_rest_go_up_and_delete_spares_them() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let store = env.root().join("store");
    let store = store.to_str().unwrap().to_owned();
    env.write("ok.txt", "readable");
    env.write("secret.txt", "not for you");
    env.write("locked/inner.txt", "backed up while it was readable");
    env.backup_ok(&store, &[]);

    env.write("new.txt", "new");
    env.write_at("secret.txt", "changed, still not for you", (1_700_000_100, 0));
    let mode =
        |p: &str, m: u32| std::fs::set_permissions(env.path(p), std::fs::Permissions::from_mode(m)).unwrap();
    mode("secret.txt", 0o000);
    mode("locked", 0o000);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        give_to_nobody(env.root());
    }
    let r = run(as_nobody_if_root(
        env.backup_cmd(&store, &["--json", "--delete"]),
        env.root(),
    ));
    mode("locked", 0o755);
    mode("secret.txt", 0o644);
    r.expect_code(3);
    let s = r.summary();
    let mut failed: Vec<_> = s.failures.iter().map(|f| f.path.as_str()).collect();
    failed.sort();
    assert_eq!(failed, ["locked", "secret.txt"], "{}", r.show());
    assert!(
        s.failures.iter().all(|f| f.error.contains("Permission denied")),
        "{s:?}"
    );
    assert_eq!(s.uploaded, 1, "new.txt goes up: {s:?}");
    // An unreadable directory is not a deleted one: --delete keeps its files.
    assert_eq!(s.deleted, 0, "{s:?}");
    let store = std::path::Path::new(&store);
    assert_eq!(
        std::fs::read(store.join("locked/inner.txt")).unwrap(),
        b"backed up while it was readable"
    );
    assert_eq!(std::fs::read(store.join("secret.txt")).unwrap(), b"not for you");
    assert_eq!(std::fs::read(store.join("new.txt")).unwrap(), b"new");
}

#[test]
fn sparse_and_zero_byte_files_round_trip() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    let sparse = env.path("sparse.img");
    {
        let f = std::fs::File::create(&sparse).unwrap();
        f.set_len(9 << 20).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"end", (9 << 20) - 3).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"start", 0).unwrap();
    }
    env.set_mtime("sparse.img", T0);
    env.write("empty", "");
    let s = env.backup_ok(TARGET, &["--multipart-threshold", "5MiB", "--part-size", "5MiB"]);
    assert_eq!(s.uploaded, 2, "{s:?}");
    let dest = env.root().join("dest");
    env.restore_ok(TARGET, &dest, &[]);
    assert_eq!(tree(&dest), tree(&env.src));
}

/// Starts a backup of the 3-part `big.bin` one request at a time and kills
/// it the moment its second part reaches the server: the first part is
/// then journaled, the second in flight, the third and the completion not sent.
pub(crate) fn backup_killed_during_second_part(server: &S3Server, env: &TestEnv) {
    let mut cmd = env.backup_cmd(TARGET, &[&["--jobs", "1"][..], &MULTIPART[..]].concat());
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    server.clear_requests();
    let mut child = cmd.spawn().unwrap();
    let reached = server.wait_for_matching(2, WAIT, |r| {
        r.op == "UploadPart" && r.key.as_deref() == Some("pre/big.bin")
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(reached, "never reached the second part: {:?}", server.ops());
}

pub(crate) const MULTIPART: [&str; 4] = ["--multipart-threshold", "5MiB", "--part-size", "5MiB"];

#[test]
fn an_interrupted_multipart_upload_resumes_from_its_finished_parts() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    let big = noise(12 << 20, 21);
    env.write("big.bin", &big);
    backup_killed_during_second_part(&server, &env);

    server.clear_requests();
    let s = env.backup_ok(TARGET, &MULTIPART);
    assert_eq!((s.uploaded, s.failed), (1, 0), "{s:?}");
    assert_eq!(server.count("CreateMultipartUpload"), 0, "{:?}", server.ops());
    let parts = server.count("UploadPart");
    assert!(
        (1..=2).contains(&parts),
        "part 1 is not sent again: {:?}",
        server.ops()
    );
    // Only the parts sent by this run count: the last part (2 MiB), plus
    // the second (5 MiB) if the killed run's copy of it was not journaled.
    let expected = if parts == 1 { 2 << 20 } else { 7 << 20 };
    assert_eq!(s.bytes_sent, expected, "{s:?}");
    assert_eq!(server.count("CompleteMultipartUpload"), 1);
    assert_eq!(server.object_bytes(BUCKET, "pre/big.bin").unwrap(), big);
    let dest = env.root().join("dest");
    env.restore_ok(TARGET, &dest, &[]);
    assert_eq!(std::fs::read(dest.join("big.bin")).unwrap(), big);
}

#[test]
fn an_interrupted_upload_whose_file_changed_is_aborted_not_resumed() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    // This test replaces or deletes most of a tiny set on purpose (the guard is tested in `guard`).
    let env = env.past_the_guard();
    env.write("big.bin", noise(12 << 20, 22));
    backup_killed_during_second_part(&server, &env);

    let big = noise(12 << 20, 23);
    env.write_at("big.bin", &big, (1_700_000_100, 0));
    server.clear_requests();
    let s = env.backup_ok(TARGET, &MULTIPART);
    assert_eq!(s.uploaded, 1, "{s:?}");
    assert_eq!(server.count("AbortMultipartUpload"), 1, "{:?}", server.ops());
    assert_eq!(server.count("CreateMultipartUpload"), 1);
    assert_eq!(server.count("UploadPart"), 3);
    assert_eq!(server.object_bytes(BUCKET, "pre/big.bin").unwrap(), big);

    // Deleted locally instead: the next run aborts it too.
    env.write_at("big.bin", noise(12 << 20, 24), (1_700_000_200, 0));
    backup_killed_during_second_part(&server, &env);
    env.remove("big.bin");
    server.clear_requests();
    env.backup_ok(TARGET, &[]);
    assert_eq!(server.count("AbortMultipartUpload"), 1, "{:?}", server.ops());
}

#[test]
fn after_a_killed_run_the_uploads_it_began_but_never_journaled_are_aborted() {
    let env = TestEnv::new();
    env.write("a.txt", "a");
    let store = env.root().join("store");
    let target = store.to_str().unwrap().to_owned();
    env.backup_ok(&target, &[]);
    // Make that run look killed (no end recorded), and leave two uploads
    // no journal knows: one begun while it ran, one from an hour before.
    let started_ms: i64 = {
        let db = rusqlite::Connection::open(&env.state).unwrap();
        db.execute(
            "UPDATE runs SET status = 'running', finished_at = NULL WHERE id = (SELECT MAX(id) FROM runs)",
            [],
        )
        .unwrap();
        db.query_row("SELECT MAX(started_at) FROM runs", [], |r| r.get(0))
            .unwrap()
    };
    let tmp = store.join(".s3backup/tmp");
    for (id, secs) in [
        ("during", started_ms / 1000 + 1),
        ("before", started_ms / 1000 - 3600),
    ] {
        let dir = tmp.join(format!("upload-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("part-00001"), noise(1024, 1)).unwrap();
        filetime::set_file_mtime(&dir, filetime::FileTime::from_unix_time(secs, 0)).unwrap();
    }
    env.backup_ok(&target, &[]);
    assert!(
        !tmp.join("upload-during").exists(),
        "begun by the killed run: aborted"
    );
    assert!(tmp.join("upload-before").exists(), "not the killed run's: kept");
}

#[test]
fn a_file_that_shrinks_while_being_uploaded_is_reported_as_shrunk() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    env.write("big.bin", noise(12 << 20, 5));
    env.write("small.txt", "steady");

    // The upload of big.bin begins (hashed at 12 MiB), and while the
    // store's answer is held back the file is cut to 1 MiB: its parts are
    // then read from a file shorter than the ranges to send.
    server.hold_replies("pre/big.bin");
    let mut cmd = env.backup_cmd(TARGET, &[&["--json", "--jobs", "1"][..], &MULTIPART[..]].concat());
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let reached = server.wait_for_matching(1, WAIT, |r| {
        r.key.as_deref() == Some("pre/big.bin") && r.status != 0
    });
    std::fs::OpenOptions::new()
        .write(true)
        .open(env.path("big.bin"))
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    server.release_replies();
    let out = child.wait_with_output().unwrap();
    assert!(reached, "the upload of big.bin never began: {:?}", server.ops());
    let r = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    r.expect_code(3);
    let s = r.summary();
    assert_eq!(s.failures.len(), 1, "{}", r.show());
    assert_eq!(s.failures[0].path, "big.bin");
    assert!(
        s.failures[0].error.contains("the file shrank while being read"),
        "{s:?}"
    );
    assert_eq!(recorded(&env), ["small.txt"]);
    assert!(server.object_bytes(BUCKET, "pre/big.bin").is_none());
}

#[test]
fn an_unreadable_directory_is_counted_as_a_directory_not_as_a_file() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let store = env.root().join("store");
    let store = store.to_str().unwrap().to_owned();
    env.write("ok.txt", "readable");
    env.write("locked/inner.txt", "not seen");
    std::fs::set_permissions(env.path("locked"), std::fs::Permissions::from_mode(0o000)).unwrap();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        give_to_nobody(env.root());
    }
    let json = run(as_nobody_if_root(env.backup_cmd(&store, &["--json"]), env.root()));
    let text = run(as_nobody_if_root(env.backup_cmd(&store, &[]), env.root()));
    std::fs::set_permissions(env.path("locked"), std::fs::Permissions::from_mode(0o755)).unwrap();
    json.expect_code(3);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("one JSON summary");
    assert_eq!(v["failed"], 0, "no file failed: {}", json.show());
    assert_eq!(v["failed_dirs"], 1, "{}", json.show());
    assert_eq!(v["failures"][0]["path"], "locked");
    text.expect_code(3);
    assert!(
        text.stdout.contains("failed 0,") && text.stdout.contains("1 directories could not be read"),
        "{}",
        text.show()
    );
    assert!(
        text.stderr.contains("error: 1 directory(ies) could not be read")
            && !text.stderr.contains("file(s) were not backed up"),
        "{}",
        text.show()
    );
}
