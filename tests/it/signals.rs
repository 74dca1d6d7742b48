//! Ctrl-C and SIGTERM: `backup` and `restore` signalled mid-run stop
//! cleanly (issue 13). The signal is sent at an observable point, never
//! after a sleep: the server holding a reply (the run waits on a request
//! in flight), the fault proxy delaying a part, or a `--json-progress`
//! event. Each run must end while that request is still held: the request
//! in flight is dropped, not waited for.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::*;
use crate::proxy::{Fault, FaultProxy};
use crate::server::S3Server;

const BUCKET: &str = "bkt";
const TARGET: &str = "bkt::pre";
/// How long a signalled run may take to stop, and a held request to arrive.
const WAIT: Duration = Duration::from_secs(60);
const MULTIPART: [&str; 4] = ["--multipart-threshold", "5MiB", "--part-size", "5MiB"];

/// Sends `signal` to the child.
fn send(child: &Child, signal: i32) {
    // SAFETY: kill(2) on our own child's pid; it has not been waited for.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill({}, {signal})", child.id());
}

/// Spawns `cmd` with stdout and stderr piped.
fn spawn(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.spawn().expect("spawn s3backup")
}

/// Waits for the child (whose stdout and stderr are read here unless
/// taken before); fails the test, killing it, if it takes over [`WAIT`].
fn finish(child: Child) -> Run {
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WAIT) {
        Ok(out) => {
            let out = out.unwrap();
            Run {
                code: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        }
        Err(_) => {
            // SAFETY: as in `send`; the waiting thread reaps it.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("the signalled run did not stop within {WAIT:?}");
        }
    }
}

/// `state files --json`: path -> blake3.
fn state_rows(env: &TestEnv) -> BTreeMap<String, String> {
    let mut cmd = env.cmd();
    cmd.args(["state", "files", "--json", "--state"]).arg(&env.state);
    let r = run(cmd);
    r.expect_code(0);
    r.stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["path"].as_str().unwrap().to_owned(),
                v["blake3"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The status of the newest run in the state file.
fn last_run_status(env: &TestEnv) -> String {
    let mut cmd = env.cmd();
    cmd.args(["state", "runs", "--json", "--limit", "1", "--state"])
        .arg(&env.state);
    let r = run(cmd);
    r.expect_code(0);
    let runs: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    runs[0]["status"].as_str().unwrap().to_owned()
}

/// Every state row describes the object the store holds: same bytes.
fn assert_rows_match(rows: &BTreeMap<String, String>, object: impl Fn(&str) -> Option<Vec<u8>>) {
    for (path, blake3) in rows {
        let bytes = object(path).unwrap_or_else(|| panic!("row {path} has no object"));
        assert_eq!(
            &blake3_hex(&bytes),
            blake3,
            "row {path} does not describe its object"
        );
    }
}

#[test]
fn a_backup_stopped_by_ctrl_c_exits_130_keeps_what_it_sent_and_the_next_run_sends_the_rest() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    let names: Vec<String> = (0..10).map(|i| format!("f{i}.txt")).collect();
    for (i, name) in names.iter().enumerate() {
        env.write(name, format!("file {i}\n").repeat(i + 1));
    }
    server.hold_replies("pre/f5.txt");
    let child = spawn(env.backup_cmd(TARGET, &["--jobs", "2"]));
    let stored = server.wait_for_matching(1, WAIT, |r| {
        r.op == "PutObject" && r.key.as_deref() == Some("pre/f5.txt") && r.status != 0
    });
    assert!(stored, "f5.txt never reached the server: {:?}", server.ops());
    send(&child, libc::SIGINT);
    // Ends while the reply is still held: the upload in flight was dropped.
    let r = finish(child);
    server.release_replies();
    r.expect_code(130);
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with("interrupted by Ctrl-C (SIGINT)")),
        "{}",
        r.show()
    );
    assert!(r.stdout.is_empty(), "no summary: {}", r.show());

    let rows = state_rows(&env);
    assert!(
        !rows.contains_key("f5.txt"),
        "no row for the upload never confirmed: {rows:?}"
    );
    assert_rows_match(&rows, |p| server.object_bytes(BUCKET, &format!("pre/{p}")));
    assert_eq!(last_run_status(&env), "interrupted");

    server.clear_requests();
    let s = env.backup_ok(TARGET, &[]);
    let missing: Vec<&String> = names.iter().filter(|n| !rows.contains_key(*n)).collect();
    assert_eq!(s.uploaded as usize, missing.len(), "{s:?}");
    let mut sent: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.op == "PutObject")
        .filter_map(|r| r.key)
        .filter(|k| !k.contains("/.s3backup/"))
        .collect();
    sent.sort();
    let expected: Vec<String> = missing.iter().map(|n| format!("pre/{n}")).collect();
    assert_eq!(sent, expected, "only what was missing is sent");
    let rows = state_rows(&env);
    assert_eq!(rows.len(), names.len());
    assert_rows_match(&rows, |p| server.object_bytes(BUCKET, &format!("pre/{p}")));
}

#[test]
fn a_backup_to_a_local_store_stopped_mid_copy_leaves_no_temporary_files() {
    let env = TestEnv::new();
    for i in 0..4 {
        env.write(&format!("f{i}.bin"), noise(512 << 10, 40 + i));
    }
    let store = env.root().join("store");
    let target = store.to_str().unwrap().to_owned();
    // Paced, so each copy takes about two seconds: the signal comes while
    // the second file is being written into the store's temporary area.
    let mut child = spawn(env.backup_cmd(
        &target,
        &["--json-progress", "--jobs", "1", "--max-bandwidth", "256KiB"],
    ));
    let stdout = child.stdout.take().unwrap();
    let mut events = BufReader::new(stdout).lines();
    let first_done = events.by_ref().map_while(Result::ok).find(|l| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
        v["event"] == "file" && v["action"] == "uploaded"
    });
    assert!(first_done.is_some(), "no file was ever uploaded");
    send(&child, libc::SIGINT);
    // Keep draining stdout so the child never blocks on a full pipe.
    let drain = std::thread::spawn(move || events.map_while(Result::ok).count());
    let r = finish(child);
    drain.join().unwrap();
    r.expect_code(130);

    let tmp = store.join(".s3backup/tmp");
    let left: Vec<String> = std::fs::read_dir(&tmp)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left in the temporary area: {left:?}");
    let rows = state_rows(&env);
    assert!(rows.len() < 4, "the run was stopped before the end: {rows:?}");
    assert_rows_match(&rows, |p| std::fs::read(store.join(p)).ok());

    let s = env.backup_ok(&target, &[]);
    assert_eq!(s.uploaded as usize, 4 - rows.len(), "{s:?}");
}

#[test]
fn a_multipart_upload_stopped_by_ctrl_c_is_resumed_by_the_next_run() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let proxy = FaultProxy::start(&server, 13);
    let env = TestEnv::with_endpoint(&proxy.endpoint());
    let big = noise(12 << 20, 13);
    env.write("big.bin", &big);
    // Part 2 is held back by the proxy far longer than the test waits.
    proxy.set_slow_delay(Duration::from_secs(600));
    proxy.set_filter(|parts| parts.uri.query().is_some_and(|q| q.contains("partNumber=2")));
    proxy.set_faults(1.0, &[Fault::Slow]);
    let child = spawn(env.backup_cmd(TARGET, &[&["--jobs", "1"][..], &MULTIPART[..]].concat()));
    let first_part = server.wait_for_matching(1, WAIT, |r| {
        r.op == "UploadPart" && r.key.as_deref() == Some("pre/big.bin") && r.status == 200
    });
    assert!(first_part, "part 1 never arrived: {:?}", server.ops());
    send(&child, libc::SIGINT);
    finish(child).expect_code(130);
    assert_eq!(server.count("CompleteMultipartUpload"), 0);
    assert_eq!(server.count("AbortMultipartUpload"), 0, "{:?}", server.ops());

    proxy.clear_faults();
    server.clear_requests();
    let s = env.backup_ok(TARGET, &MULTIPART);
    assert_eq!((s.uploaded, s.failed), (1, 0), "{s:?}");
    assert_eq!(
        server.count("CreateMultipartUpload"),
        0,
        "resumed: {:?}",
        server.ops()
    );
    assert!(server.count("UploadPart") <= 3, "{:?}", server.ops());
    assert_eq!(server.count("CompleteMultipartUpload"), 1);
    assert_eq!(server.object_bytes(BUCKET, "pre/big.bin").unwrap(), big);
}

#[test]
fn a_restore_stopped_by_sigterm_exits_143_with_no_temporary_or_partial_file() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    env.write("a.txt", "a\n");
    env.write("b.bin", noise(3 << 20, 7));
    env.write("d/c.txt", "c\n");
    env.backup_ok(TARGET, &[]);

    let dest = env.root().join("dest");
    server.hold_replies("pre/b.bin");
    let child = spawn(env.restore_cmd(TARGET, &dest, &["--jobs", "2"]));
    let fetching = server.wait_for_matching(1, WAIT, |r| {
        r.op == "GetObject" && r.key.as_deref() == Some("pre/b.bin") && r.status != 0
    });
    assert!(fetching, "b.bin was never fetched: {:?}", server.ops());
    // b.bin's temporary file is there while its reply is held.
    assert!(!temp_files(&dest).is_empty(), "{:?}", paths_under(&dest));
    send(&child, libc::SIGTERM);
    let r = finish(child);
    server.release_replies();
    r.expect_code(143);
    // Worded for the signal received: a service manager sends SIGTERM, not Ctrl-C.
    assert_eq!(
        r.stderr.trim_end(),
        "interrupted by SIGTERM: stopping cleanly (SIGTERM again stops at once)",
        "{}",
        r.show()
    );

    assert_eq!(temp_files(&dest), Vec::<String>::new());
    for (path, node) in tree(&dest) {
        if let Kind::File(bytes) = node.kind {
            assert!(
                bytes == std::fs::read(env.path(&path)).unwrap(),
                "{path} is under its final name with other content"
            );
        }
    }
    assert!(!dest.join("b.bin").exists());

    env.restore_ok(TARGET, &dest, &[]);
    assert_eq!(tree(&dest), tree(&env.src));
}

#[test]
fn a_second_ctrl_c_exits_at_once() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    env.write("a.txt", "a\n");
    env.backup_ok(TARGET, &[]);

    // The restore waits on its manifest, held by the server.
    server.hold_replies("/.s3backup/manifests/");
    server.clear_requests();
    let mut child = spawn(env.restore_cmd(TARGET, &env.root().join("dest"), &[]));
    let reading = server.wait_for_matching(1, WAIT, |r| {
        r.op != "PutObject"
            && r.key
                .as_deref()
                .is_some_and(|k| k.contains("/.s3backup/manifests/"))
            && r.status != 0
    });
    assert!(reading, "the manifest was never fetched: {:?}", server.ops());
    send(&child, libc::SIGINT);
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    if !first.starts_with("interrupted by Ctrl-C") {
        let r = finish(child);
        panic!("the first signal was not handled: {first:?}, exit {:?}", r.code);
    }
    send(&child, libc::SIGINT);
    let r = finish(child);
    server.release_replies();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert_eq!(r.code, Some(130), "{first}{rest}");
}

/// Ctrl-C while the snapshot manifest is being uploaded: the upload is
/// dropped, the run is recorded as interrupted (not failed) with one line
/// on stderr, and the next run writes the manifest.
#[test]
fn ctrl_c_while_the_manifest_is_uploaded_records_an_interrupted_run() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    env.write("a.txt", "a\n");
    server.hold_replies("/.s3backup/manifests/");
    let child = spawn(env.backup_cmd(TARGET, &[]));
    let uploading = server.wait_for_matching(1, WAIT, |r| {
        r.op == "PutObject"
            && r.key
                .as_deref()
                .is_some_and(|k| k.contains("/.s3backup/manifests/"))
            && r.status != 0
    });
    assert!(uploading, "the manifest was never sent: {:?}", server.ops());
    send(&child, libc::SIGINT);
    // Ends while the manifest's reply is still held.
    let r = finish(child);
    server.release_replies();
    r.expect_code(130);
    assert_eq!(
        r.stderr.lines().collect::<Vec<_>>(),
        ["interrupted by Ctrl-C (SIGINT): stopping cleanly (Ctrl-C again stops at once)"],
        "{}",
        r.show()
    );
    assert_eq!(last_run_status(&env), "interrupted");
    assert!(state_rows(&env).contains_key("a.txt"));

    // The manifest is still pending: the next run writes one, sending no file.
    let s = env.backup_ok(TARGET, &[]);
    assert_eq!(s.uploaded, 0, "{s:?}");
    assert!(s.snapshot.is_some(), "{s:?}");
    assert_eq!(last_run_status(&env), "ok");
}

/// One Ctrl-C stops a backup, and a restore, whose endpoint accepts the
/// connection and never answers: exit 130 within a few seconds, while the
/// first request (the bucket check) is still unanswered. Start-up (store,
/// bucket check, manifest listing, a rebuild) used to run to its own
/// timeouts first, 18 to 30 s. The signal is sent once the connection is
/// accepted.
#[test]
fn one_ctrl_c_stops_a_run_waiting_on_a_silent_endpoint() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (conns, accepted) = mpsc::channel();
    std::thread::spawn(move || {
        // Accepted and held open, never answered.
        for conn in listener.incoming() {
            if conns.send(conn).is_err() {
                break;
            }
        }
    });
    let env = TestEnv::with_endpoint(&endpoint);
    env.write("a.txt", "a");
    let mut restore = env.cmd();
    restore
        .args(["restore", TARGET])
        .arg(env.root().join("dest"))
        .arg("--state")
        .arg(&env.state)
        .args(["--endpoint-url", &endpoint]);
    for cmd in [env.backup_cmd(TARGET, &[]), restore] {
        let child = spawn(cmd);
        let held = accepted.recv_timeout(WAIT).expect("the run connects").unwrap();
        let sent = std::time::Instant::now();
        send(&child, libc::SIGINT);
        let r = finish(child);
        let took = sent.elapsed();
        r.expect_code(130);
        assert!(
            took < Duration::from_secs(5),
            "took {took:?} to stop\n{}",
            r.show()
        );
        assert!(!r.stderr.contains("timed out"), "{}", r.show());
        drop(held);
        while accepted.try_recv().is_ok() {}
    }
}
