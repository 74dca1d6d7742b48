//! What a backup records is exactly what the store holds (issue: integrity).
//!
//! Content that changes while size and mtime stay the same (tools that put
//! mtimes back), bytes that change between the hash and the upload, bodies
//! damaged on the way, and a failed upload's stale row: each is a way for a
//! run to exit 0 with a state row or manifest entry naming content the
//! object lacks. Timing comes from the server holding a reply back (no
//! sleeps), as in `edge_fs`.

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use crate::edge_fs::{MULTIPART, backup_killed_during_second_part};
use crate::proxy::{Fault, FaultProxy};
use crate::server::S3Server;

const BUCKET: &str = "bkt";
const TARGET: &str = "bkt::pre";
const WAIT: Duration = Duration::from_secs(60);

/// The state's rows: path → blake3, sorted by path.
fn recorded(env: &TestEnv) -> Vec<(String, String)> {
    let db = rusqlite::Connection::open(&env.state).unwrap();
    let mut st = db
        .prepare("SELECT path, blake3 FROM files WHERE kind = 'f' ORDER BY path")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Every row's blake3 is the blake3 of the object the server holds.
fn assert_rows_match_objects(server: &S3Server, env: &TestEnv) {
    for (path, blake3) in recorded(env) {
        let bytes = server
            .object_bytes(BUCKET, &format!("pre/{path}"))
            .unwrap_or_else(|| panic!("{path} is recorded but has no object"));
        assert_eq!(blake3_hex(&bytes), blake3, "the row of {path} names other bytes");
    }
}

/// Rewrites `rel` with `content` and puts its mtime back to `mtime`, as
/// `tar -x`, `cp -p`, `rsync -t` and `touch -r` do.
fn rewrite_keeping_mtime(env: &TestEnv, rel: &str, content: &[u8], mtime: (i64, u32)) {
    std::fs::write(env.path(rel), content).unwrap();
    env.set_mtime(rel, mtime);
}

/// Starts a backup, waits until the server has acted on (but not yet
/// answered) the first request of `op` on `held`, runs `meanwhile`, lets
/// the answer go and returns the finished run.
fn backup_around_held(
    server: &S3Server,
    env: &TestEnv,
    op: &str,
    held: &str,
    extra: &[&str],
    meanwhile: impl FnOnce(),
) -> Run {
    let key = format!("pre/{held}");
    server.clear_requests();
    server.hold_replies(&key);
    let mut cmd = env.backup_cmd(TARGET, extra);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let reached = server.wait_for_matching(1, WAIT, |r| {
        r.op == op && r.key.as_deref() == Some(&key) && r.status != 0
    });
    meanwhile();
    server.release_replies();
    let out = child.wait_with_output().unwrap();
    assert!(reached, "{op} of {held} never arrived: {:?}", server.ops());
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Multipart uploads a server (one that lists them: moto) still holds open.
fn open_uploads(endpoint: &str) -> usize {
    let client = sdk_client(endpoint);
    block_on(async {
        client
            .list_multipart_uploads()
            .bucket(BUCKET)
            .send()
            .await
            .unwrap()
            .uploads()
            .len()
    })
}

/// A file rewritten at the same size with its mtime put back is sent, on
/// both stores; a `chmod` costs a re-hash and a metadata refresh, not an
/// upload; a change time that moved with nothing else changed sends nothing.
#[test]
fn content_rewritten_at_the_same_size_with_its_mtime_put_back_is_sent() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    for local in [false, true] {
        let env = TestEnv::with_server(&server);
        let store = env.root().join("store");
        let target = if local {
            store.to_str().unwrap().to_owned()
        } else {
            format!("{BUCKET}::local{}", u8::from(local))
        };
        env.write("a.txt", "version one");
        env.write("b.txt", "steady");
        env.backup_ok(&target, &[]);

        rewrite_keeping_mtime(&env, "a.txt", b"version two", T0);
        let s = env.backup_ok(&target, &[]);
        assert_eq!((s.uploaded, s.unchanged), (1, 1), "local {local}: {s:?}");
        let stored = if local {
            std::fs::read(store.join("a.txt")).unwrap()
        } else {
            server.object_bytes(BUCKET, "local0/a.txt").unwrap()
        };
        assert_eq!(stored, b"version two", "local {local}");

        env.set_mode("b.txt", 0o600);
        let s = env.backup_ok(&target, &[]);
        assert_eq!(
            (s.uploaded, s.touched, s.bytes_sent),
            (0, 1, 0),
            "local {local}: {s:?}"
        );

        // Same mode again: only the change time moves. Hashed, nothing sent.
        env.set_mode("b.txt", 0o600);
        let s = env.backup_ok(&target, &[]);
        assert_eq!(
            (s.uploaded, s.touched, s.unchanged),
            (0, 0, 2),
            "local {local}: {s:?}"
        );
    }
}

/// Rows rebuilt from a snapshot know no change times: the first backup
/// after a rebuild hashes every file, so one rewritten with its size and
/// mtime kept while the state was lost is still sent.
#[test]
fn after_a_rebuild_from_a_snapshot_every_file_is_hashed_once() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    env.write("a.txt", "version one");
    env.write("b.txt", "steady");
    env.backup_ok(TARGET, &[]);
    std::fs::remove_file(&env.state).unwrap();
    rewrite_keeping_mtime(&env, "a.txt", b"version two", T0);

    let s = env.backup_ok(TARGET, &[]);
    assert_eq!((s.uploaded, s.unchanged), (1, 1), "{s:?}");
    assert_eq!(server.object_bytes(BUCKET, "pre/a.txt").unwrap(), b"version two");
    assert_rows_match_objects(&server, &env);
}

/// `--rehash` trusts no stat: a row whose content the file no longer has
/// (a file system that keeps change times still) is caught; nothing else is sent.
#[test]
fn rehash_hashes_every_file_and_sends_only_what_differs() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    env.write("a.txt", "version one");
    env.write("b.txt", "steady");
    env.backup_ok(TARGET, &[]);
    // The row of a.txt claims other content while every stat field matches,
    // and (however soon after writing the file the backup ran) the rows
    // were seen long after the files last changed: not racily clean.
    let db = rusqlite::Connection::open(&env.state).unwrap();
    db.execute(
        "UPDATE files SET blake3 = ?1 WHERE path = 'a.txt'",
        [blake3_hex(b"something else")],
    )
    .unwrap();
    db.execute("UPDATE files SET checked_ns = checked_ns + 60000000000", [])
        .unwrap();
    drop(db);
    let s = env.backup_ok(TARGET, &[]);
    assert_eq!(
        (s.uploaded, s.unchanged),
        (0, 2),
        "a plain run trusts the stat: {s:?}"
    );

    let s = env.backup_ok(TARGET, &["--rehash"]);
    assert_eq!((s.uploaded, s.unchanged), (1, 1), "{s:?}");
    assert_rows_match_objects(&server, &env);
    let s = env.backup_ok(TARGET, &["--rehash"]);
    assert_eq!((s.uploaded, s.unchanged), (0, 2), "{s:?}");
}

/// A file rewritten after it was hashed and before its upload read it,
/// with size and mtime put back, fails that file (the store refuses the
/// body: its MD5 is not the one hashed); no row claims either version,
/// and the next run sends what the file holds then.
#[test]
fn a_file_rewritten_between_hash_and_upload_with_size_and_mtime_kept_fails_alone() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    // This test replaces or deletes most of a tiny set on purpose (the guard is tested in `guard`).
    let env = env.past_the_guard();
    env.write("a.txt", "sent first");
    env.write("b.txt", "old content of b");
    env.backup_ok(TARGET, &[]);
    env.write_at("a.txt", "sent first, again", (1_700_000_100, 0));
    let b_mtime = (1_700_000_200, 5);
    env.write_at("b.txt", "new content of b", b_mtime);

    // One file at a time: b.txt is hashed, then waits behind a.txt.
    let r = backup_around_held(
        &server,
        &env,
        "PutObject",
        "a.txt",
        &["--json", "--jobs", "1"],
        || {
            rewrite_keeping_mtime(&env, "b.txt", b"NEW CONTENT OF B", b_mtime);
        },
    );
    r.expect_code(3);
    let s = r.summary();
    assert_eq!(s.failures.len(), 1, "{}", r.show());
    assert_eq!(s.failures[0].path, "b.txt");
    // Whether b.txt was hashed before the rewrite (its body is then refused)
    // or after (its hash then fails on the new change time), whatever row it
    // has names what its object holds.
    assert!(s.failures[0].error.contains("changed"), "{}", r.show());
    assert_rows_match_objects(&server, &env);

    let s = env.backup_ok(TARGET, &[]);
    assert_eq!(s.uploaded, 1, "{s:?}");
    assert_eq!(
        server.object_bytes(BUCKET, "pre/b.txt").unwrap(),
        b"NEW CONTENT OF B"
    );
    assert_rows_match_objects(&server, &env);
}

/// The same for a multipart upload: a part whose bytes changed after the
/// hash is refused, the upload is aborted (never completed half old, half
/// new), and nothing is recorded.
#[test]
fn a_multipart_file_rewritten_mid_upload_is_never_completed_half_old_half_new() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    let mtime = (1_700_000_300, 7);
    let mut big = noise(12 << 20, 31);
    env.write_at("big.bin", &big, mtime);

    let extra = [&["--json", "--jobs", "1"][..], &MULTIPART[..]].concat();
    let r = backup_around_held(&server, &env, "CreateMultipartUpload", "big.bin", &extra, || {
        // The last part's bytes change; size and mtime stay.
        let n = big.len();
        big[n - 10..].copy_from_slice(b"0123456789");
        rewrite_keeping_mtime(&env, "big.bin", &big, mtime);
    });
    r.expect_code(3);
    let s = r.summary();
    assert_eq!(s.failures.len(), 1, "{}", r.show());
    assert!(
        server.object_bytes(BUCKET, "pre/big.bin").is_none(),
        "never completed"
    );
    assert!(recorded(&env).is_empty());
    assert_eq!(server.count("AbortMultipartUpload"), 1, "{:?}", server.ops());
    assert_eq!(server.count("CompleteMultipartUpload"), 0, "{:?}", server.ops());

    let s = env.backup_ok(TARGET, &MULTIPART);
    assert_eq!(s.uploaded, 1, "{s:?}");
    assert_eq!(server.object_bytes(BUCKET, "pre/big.bin").unwrap(), big);
    assert_rows_match_objects(&server, &env);
}

/// A file appended to while its upload is in flight fails; its old row
/// must not come back (the PUT already replaced the object), or a later
/// file with the old content would be "copied" from an object that no
/// longer holds it.
#[test]
fn a_failed_upload_never_leaves_a_stale_row_to_copy_from() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    // This test replaces or deletes most of a tiny set on purpose (the guard is tested in `guard`).
    let env = env.past_the_guard();
    let old = b"the old content of a, kept elsewhere";
    env.write("a.txt", old);
    env.backup_ok(TARGET, &[]);

    env.write_at("a.txt", "a rewritten, then appended to", (1_700_000_100, 0));
    let r = backup_around_held(&server, &env, "PutObject", "a.txt", &["--json"], || {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(env.path("a.txt"))
            .unwrap();
        f.write_all(b" -- more").unwrap();
    });
    r.expect_code(3);
    assert_rows_match_objects(&server, &env);

    // a.txt goes away and its old content comes back under another name.
    env.remove("a.txt");
    env.write_at("b.txt", old, (1_700_000_500, 0));
    let s = env.backup_ok(TARGET, &[]);
    assert_eq!(s.failed, 0, "{s:?}");
    assert_eq!(server.object_bytes(BUCKET, "pre/b.txt").unwrap(), old);
    assert_rows_match_objects(&server, &env);
}

/// A body damaged on the way (a byte flipped between the tool and the
/// store) is refused by its Content-MD5 or caught by its ETag, single-part
/// and multipart: the run fails those files and records nothing for them;
/// once the network is clean, everything arrives intact.
#[test]
fn a_body_damaged_on_the_way_is_refused_and_never_recorded() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let proxy = FaultProxy::start(&server, 11);
    let env = TestEnv::with_endpoint(&proxy.endpoint());
    env.write("small.txt", "a small file, damaged on the way");
    let big = noise(11 << 20, 32);
    env.write("big.bin", &big);
    proxy.set_filter(|parts| parts.method == hyper::Method::PUT);
    proxy.set_faults(1.0, &[Fault::Corrupt]);

    let r = env.backup(TARGET, &[&["--json"][..], &MULTIPART[..]].concat());
    r.expect_code(3);
    let s = r.summary();
    assert_eq!(s.failed, 2, "{}", r.show());
    assert!(proxy.stats().corrupted >= 2, "{:?}", proxy.stats());
    assert!(recorded(&env).is_empty(), "{:?}", recorded(&env));

    proxy.clear_faults();
    let s = env.backup_ok(TARGET, &MULTIPART);
    assert_eq!(s.uploaded, 2, "{s:?}");
    assert_eq!(server.object_bytes(BUCKET, "pre/big.bin").unwrap(), big);
    assert_rows_match_objects(&server, &env);
}

/// Small bodies go out with their Content-MD5 and as UNSIGNED-PAYLOAD, as
/// streamed ones always did: the store checks the bytes against the MD5 of
/// the hashing read (the test above), so a SHA-256 of each body for the
/// signature would only hash every small file a second time.
#[test]
fn small_bodies_carry_their_md5_and_are_not_hashed_again_for_the_signature() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let proxy = FaultProxy::start(&server, 13);
    let env = TestEnv::with_endpoint(&proxy.endpoint());
    env.write("a.txt", "a small file").write("d/b.txt", "another one");
    env.symlink("a.txt", "link");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    proxy.set_filter(move |parts| {
        if parts.method == hyper::Method::PUT && !parts.uri.path().contains(".s3backup") {
            let header = |name: &str| {
                parts
                    .headers
                    .get(name)
                    .map(|v| v.to_str().unwrap_or("?").to_owned())
            };
            record.lock().unwrap().push((
                parts.uri.path().to_owned(),
                header("x-amz-content-sha256"),
                header("content-md5"),
            ));
        }
        false
    });

    let s = env.backup_ok(TARGET, &[]);
    assert_eq!(s.uploaded, 3, "{s:?}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for (path, sha256, md5) in &seen {
        assert_eq!(sha256.as_deref(), Some("UNSIGNED-PAYLOAD"), "{path}: {seen:?}");
        assert!(md5.is_some(), "{path} without Content-MD5: {seen:?}");
    }
    assert_eq!(
        server.object_bytes(BUCKET, "pre/d/b.txt").unwrap(),
        b"another one"
    );
    assert_rows_match_objects(&server, &env);
}

/// A re-run with another `--part-size` can't resume the journaled upload:
/// it is aborted before a new one begins, never left behind.
#[test]
fn an_upload_journaled_with_another_part_size_is_aborted_not_left_behind() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    let big = noise(12 << 20, 33);
    env.write("big.bin", &big);
    backup_killed_during_second_part(&server, &env);

    server.clear_requests();
    let s = env.backup_ok(TARGET, &["--multipart-threshold", "5MiB", "--part-size", "6MiB"]);
    assert_eq!(s.uploaded, 1, "{s:?}");
    assert_eq!(server.count("AbortMultipartUpload"), 1, "{:?}", server.ops());
    assert_eq!(server.object_bytes(BUCKET, "pre/big.bin").unwrap(), big);
}

/// A lost answer to CreateMultipartUpload (the server began an upload the
/// tool never heard of) leaves no upload behind once the run ends (on moto,
/// which lists open uploads; skipped without it, as in `versioned`).
#[test]
fn a_lost_create_multipart_answer_leaves_no_upload_behind() {
    let Some(moto) = crate::versioned::Moto::start("a_lost_create_multipart_answer_leaves_no_upload_behind")
    else {
        return;
    };
    moto.bucket(BUCKET, false);
    let proxy = FaultProxy::start_to(&moto.endpoint(), 12);
    let env = TestEnv::with_endpoint(&proxy.endpoint());
    let big = noise(11 << 20, 34);
    env.write("big.bin", &big);
    let first = std::sync::atomic::AtomicBool::new(true);
    proxy.set_filter(move |parts| {
        parts.method == hyper::Method::POST
            && parts.uri.query().is_some_and(|q| q.starts_with("uploads"))
            && first.swap(false, std::sync::atomic::Ordering::SeqCst)
    });
    proxy.set_faults(1.0, &[Fault::Truncate]);

    let s = env.backup_ok(TARGET, &MULTIPART);
    assert_eq!(s.uploaded, 1, "{s:?}");
    // The answer is cut off after the server began the upload.
    assert_eq!(proxy.stats().failures(), 1, "{:?}", proxy.fault_log());
    assert_eq!(open_uploads(&moto.endpoint()), 0);
    let dest = env.root().join("dest");
    env.restore_ok(TARGET, &dest, &[]);
    assert_eq!(std::fs::read(dest.join("big.bin")).unwrap(), big);
}

/// An object replaced behind the tool's back (another tool, another
/// machine) is never the source of a server-side copy or a metadata
/// refresh in place: its row's content is no longer what it holds, so the
/// copy is made only if the object still has the recorded ETag, and the
/// bytes are sent instead. S3 and the local store.
#[test]
fn an_object_replaced_behind_the_tools_back_is_never_copied_from() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    for local in [false, true] {
        let env = TestEnv::with_server(&server);
        let store = env.root().join("store");
        let prefix = format!("p{}", u8::from(local));
        let target = if local {
            store.to_str().unwrap().to_owned()
        } else {
            format!("{BUCKET}::{prefix}")
        };
        let content = noise(3000, 41);
        env.write("f2", &content);
        env.backup_ok(&target, &[]);
        // Another tool replaces the object.
        let other = noise(100, 42);
        if local {
            std::fs::write(store.join("f2"), &other).unwrap();
        } else {
            sdk_put(
                &sdk_client(&server.endpoint()),
                BUCKET,
                &format!("{prefix}/f2"),
                &other,
            );
        }

        // A copy of f2 appears: it never takes the other tool's bytes from f2's object.
        env.write_at("f2copy", &content, (1_700_000_900, 0));
        // f2's mtime moves: a metadata refresh in place would keep the wrong bytes.
        env.set_mtime("f2", (1_700_000_950, 0));
        let s = env.backup_ok(&target, &[]);
        // f2 is sent again; f2copy is sent too, or copied once f2's object
        // holds the recorded bytes again (the condition then holds).
        assert_eq!((s.touched, s.copied + s.uploaded), (0, 2), "local {local}: {s:?}");
        assert!(s.uploaded >= 1, "local {local}: {s:?}");
        let dest = env.root().join("dest");
        env.restore_ok(&target, &dest, &[]);
        assert_eq!(
            std::fs::read(dest.join("f2copy")).unwrap(),
            content,
            "local {local}"
        );
        assert_eq!(std::fs::read(dest.join("f2")).unwrap(), content, "local {local}");
    }
}
