//! Rules that differ between stores (issue 17), each shown by a server:
//! the in-process s3s-fs server behind the proxy ([`FaultProxy`] with a
//! [`Rewrite`]) standing in for the store that has the rule, or moto.
//!
//! - ETags that are not MD5s: a bucket whose default encryption is SSE-KMS
//!   answers every write with such an ETag and `x-amz-server-side-encryption:
//!   aws:kms`, without the client asking for encryption. The proxy rewrites
//!   s3s-fs's ETags into stable tokens and adds the header: a fair stand-in
//!   for S3, whose ETag for such objects is not the MD5 of the content (S3
//!   API reference, "Object": ETag) and which names the encryption in every
//!   answer. Backups, copies (renames and metadata refreshes), verify,
//!   restore, the next run's decisions and a state rebuild must all work.
//! - A store that ignores `If-Match` and `x-amz-copy-source-if-match` (the
//!   proxy strips them; s3s-fs itself ignores `If-Match` on GET): the tool
//!   must still never record or restore content other than what it knows.
//! - 503 SlowDown with `Retry-After`: the retry comes no sooner than asked.

use std::time::{Duration, SystemTime};

use crate::common::*;
use crate::proxy::FaultProxy;
use crate::rewrite::Rewrite;
use crate::server::S3Server;

const BUCKET: &str = "bkt";
const TARGET: &str = "bkt::pre";
/// Multipart from 5 MiB on, in 5 MiB parts: an 11 MiB file goes in three.
const MULTIPART: [&str; 4] = ["--multipart-threshold", "5MiB", "--part-size", "5MiB"];
/// [`MULTIPART`], and objects of files gone are deleted.
const MULTIPART_DELETE: [&str; 5] = ["--multipart-threshold", "5MiB", "--part-size", "5MiB", "--delete"];

/// A server with bucket `bkt`, the proxy in front of it with `rewrite`,
/// and a test environment whose endpoint is the proxy.
struct Fx {
    server: S3Server,
    proxy: FaultProxy,
    env: TestEnv,
}

impl Fx {
    fn new(rewrite: Rewrite) -> Fx {
        let server = S3Server::start();
        server.create_bucket(BUCKET);
        let proxy = FaultProxy::start(&server, 17);
        proxy.set_rewrite(rewrite);
        let env = TestEnv::with_endpoint(&proxy.endpoint()).past_the_guard();
        Fx { server, proxy, env }
    }

    /// `verify TARGET --json EXTRA…` through the proxy.
    fn verify(&self, extra: &[&str]) -> Run {
        let mut cmd = self.env.cmd();
        cmd.args(["verify", TARGET, "--json", "--endpoint-url"])
            .arg(self.proxy.endpoint())
            .args(extra);
        run(cmd)
    }

    /// Requires the object `key` to hold `want` (without printing bytes).
    #[track_caller]
    fn assert_holds(&self, key: &str, want: &[u8], why: &str) {
        let held = self.server.object_bytes(BUCKET, key);
        assert!(
            held.as_deref() == Some(want),
            "{key} holds {:?} bytes (blake3 {:?}), not the {} expected: {why}",
            held.as_ref().map(Vec::len),
            held.as_deref().map(blake3_hex),
            want.len()
        );
    }

    /// Replaces the object `key` behind the tool's back (straight to the server).
    fn replace(&self, key: &str, body: &[u8]) {
        sdk_put(&sdk_client(&self.server.endpoint()), BUCKET, key, body);
    }
}

/// A small file, an 11 MiB file sent in three parts, and a symlink.
fn kms_tree(env: &TestEnv) -> (Vec<u8>, Vec<u8>) {
    let small = b"small file on a KMS bucket".to_vec();
    let big = noise(11 * MIB, 17);
    env.write("a.txt", &small);
    env.write("big.bin", &big);
    env.symlink("a.txt", "link");
    (small, big)
}

/// On a bucket whose default encryption is SSE-KMS every ETag is a token,
/// not the MD5 of the content, though the backup asked for no encryption:
/// the answer's `x-amz-server-side-encryption` says so. Uploads (single,
/// multipart, symlinks), a rename (server-side copy), a metadata refresh
/// (a copy onto itself), the unchanged next run, a run from a rebuilt
/// state, verify (`--deep` too) and a restore all work.
#[test]
fn a_bucket_encrypting_with_kms_by_default_backs_up_copies_verifies_and_restores() {
    let fx = Fx::new(Rewrite {
        kms_etags: true,
        ..Rewrite::default()
    });
    let (small, big) = kms_tree(&fx.env);
    let s = fx.env.backup_ok(TARGET, &MULTIPART);
    assert_eq!((s.uploaded, s.failed), (3, 0), "{s:?}");
    fx.assert_holds("pre/big.bin", &big, "uploaded in parts");

    fx.env.rename("big.bin", "moved.bin");
    fx.env.set_mtime("a.txt", (T0.0 + 60, 0));
    let s = fx.env.backup_ok(TARGET, &MULTIPART_DELETE);
    assert_eq!(
        (s.copied, s.touched, s.uploaded, s.deleted, s.failed),
        (1, 1, 0, 1, 0),
        "the rename is a copy, the new mtime a refresh: {s:?}"
    );
    fx.assert_holds("pre/moved.bin", &big, "copied");

    let s = fx.env.backup_ok(TARGET, &MULTIPART);
    assert_eq!(
        (s.unchanged, s.uploaded, s.copied, s.touched),
        (3, 0, 0, 0),
        "{s:?}"
    );
    std::fs::remove_file(&fx.env.state).unwrap();
    let s = fx.env.backup_ok(TARGET, &MULTIPART);
    assert_eq!(
        (s.unchanged, s.uploaded),
        (3, 0),
        "a rebuilt state trusts the tokens: {s:?}"
    );

    fx.verify(&[]).expect_code(0);
    fx.verify(&["--deep"]).expect_code(0);
    let dest = fx.env.root().join("dest");
    let r = fx.env.restore_ok(TARGET, &dest, &[]);
    assert_eq!(r.failed, 0, "{r:?}");
    assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), small);
    assert!(
        std::fs::read(dest.join("moved.bin")).unwrap() == big,
        "moved.bin restored"
    );
    assert_eq!(
        std::fs::read_link(dest.join("link")).unwrap().to_str(),
        Some("a.txt")
    );
}

/// A store that ignores `x-amz-copy-source-if-match`: the object a rename
/// would copy from was replaced behind the tool's back. The tool must not
/// take the replaced bytes for the renamed file's: whatever it records
/// under the new name holds the file's own content, for a multipart
/// source (whose ETag is no MD5, so the copy's ETag proves nothing) and a
/// single-part one alike.
#[test]
fn a_rename_copy_never_takes_a_replaced_source_where_the_store_ignores_the_condition() {
    let fx = Fx::new(Rewrite {
        strip_headers: vec!["if-match", "x-amz-copy-source-if-match"],
        ..Rewrite::default()
    });
    let big = noise(11 * MIB, 3);
    let small = b"the small file's own bytes".to_vec();
    fx.env.write("big.bin", &big).write("small.txt", &small);
    fx.env.backup_ok(TARGET, &MULTIPART);
    fx.replace("pre/big.bin", &noise(11 * MIB, 4));
    fx.replace("pre/small.txt", b"other bytes, same length!!");

    fx.env
        .rename("big.bin", "moved.bin")
        .rename("small.txt", "moved.txt");
    let s = fx.env.backup_ok(TARGET, &MULTIPART_DELETE);
    assert_eq!(s.failed, 0, "{s:?}");
    let why = format!("the renamed file's object holds its own bytes: {s:?}");
    fx.assert_holds("pre/moved.bin", &big, &why);
    fx.assert_holds("pre/moved.txt", &small, &why);
    fx.verify(&["--deep"]).expect_code(0);
    // What the history kept of the deleted names is what they held when recorded.
    for key in fx.server.list_keys(BUCKET) {
        if let Some(name) = key.strip_prefix("pre/.s3backup/content/") {
            let bytes = fx.server.object_bytes(BUCKET, &key).unwrap();
            assert!(name.ends_with(&blake3_hex(&bytes)), "{key} holds other content");
        }
    }
    let dest = fx.env.root().join("dest");
    fx.env.restore_ok(TARGET, &dest, &[]);
    assert!(std::fs::read(dest.join("moved.bin")).unwrap() == big);
}

/// A metadata refresh (a copy onto itself, conditional on the recorded
/// ETag) where the store ignores the condition and the object was
/// replaced: the file is sent again rather than the replaced bytes kept
/// under the file's new mtime.
#[test]
fn a_refresh_never_keeps_a_replaced_object_where_the_store_ignores_the_condition() {
    let fx = Fx::new(Rewrite {
        strip_headers: vec!["if-match", "x-amz-copy-source-if-match"],
        ..Rewrite::default()
    });
    let big = noise(11 * MIB, 5);
    fx.env.write("big.bin", &big);
    fx.env.backup_ok(TARGET, &MULTIPART);
    fx.replace("pre/big.bin", &noise(11 * MIB, 6));
    fx.env.set_mtime("big.bin", (T0.0 + 60, 0));
    let s = fx.env.backup_ok(TARGET, &MULTIPART);
    assert_eq!(s.failed, 0, "{s:?}");
    fx.assert_holds(
        "pre/big.bin",
        &big,
        &format!("the refreshed object holds the file's bytes: {s:?}"),
    );
}

/// A restore from a store that ignores `If-Match`, of objects replaced
/// behind the tool's back (same sizes): nothing but the snapshot's bytes
/// is written; each such file is reported (exit 3) and the others come back.
#[test]
fn a_restore_never_writes_replaced_objects_where_the_store_ignores_the_condition() {
    let fx = Fx::new(Rewrite {
        strip_headers: vec!["if-match", "x-amz-copy-source-if-match"],
        ..Rewrite::default()
    });
    fx.env
        .write("small.txt", b"small original")
        .write("big.bin", noise(11 * MIB, 7))
        .write("kept.txt", b"untouched");
    fx.env.backup_ok(TARGET, &MULTIPART);
    fx.replace("pre/small.txt", b"small REPLACED");
    fx.replace("pre/big.bin", &noise(11 * MIB, 8));
    let dest = fx.env.root().join("dest");
    let r = fx.env.restore(TARGET, &dest, &["--json"]);
    r.expect_code(3);
    let s = r.restore_summary();
    assert_eq!(s.failed_paths(), ["big.bin", "small.txt"], "{}", r.show());
    assert_eq!(std::fs::read(dest.join("kept.txt")).unwrap(), b"untouched");
    assert!(!dest.join("small.txt").exists() && !dest.join("big.bin").exists());
    assert!(temp_files(&dest).is_empty(), "{:?}", temp_files(&dest));
}

/// The proxy's arrivals of `what` ("METHOD /path…"): the first (answered
/// 503) and the next (the retry).
#[track_caller]
fn first_two(proxy: &FaultProxy, what: &str) -> (std::time::Instant, std::time::Instant, SystemTime) {
    let times: Vec<_> = proxy
        .arrivals()
        .into_iter()
        .filter(|(_, _, w)| w.starts_with(what))
        .collect();
    assert!(times.len() >= 2, "no retry of {what}: {:?}", proxy.arrivals());
    (times[0].0, times[1].0, times[1].1)
}

/// 503 SlowDown with `Retry-After: 1` (seconds): the SDK's own backoff for
/// a first retry is under a second; the tool waits the second asked for.
/// Measured from the proxy's log, not by sleeping.
#[test]
fn a_slow_down_with_retry_after_in_seconds_is_waited_for() {
    let fx = Fx::new(Rewrite::default());
    fx.env.write("a.txt", b"throttled");
    fx.proxy.slow_down_once("1", |p| {
        p.method == hyper::Method::PUT && p.uri.path() == "/bkt/pre/a.txt"
    });
    let s = fx.env.backup_ok(TARGET, &[]);
    assert_eq!((s.uploaded, fx.proxy.stats().slow_downs), (1, 1), "{s:?}");
    let (first, retry, _) = first_two(&fx.proxy, "PUT /bkt/pre/a.txt");
    assert!(
        retry - first >= Duration::from_secs(1),
        "retried {:?} after a 503 asking for 1 s",
        retry - first
    );
}

/// The same with `Retry-After` as an HTTP date, two seconds ahead (whole
/// seconds, so one to two seconds away): the retry comes after that date.
#[test]
fn a_slow_down_with_retry_after_as_a_date_is_waited_for() {
    let fx = Fx::new(Rewrite::default());
    fx.env.write("a.txt", b"throttled");
    let at = SystemTime::now() + Duration::from_secs(2);
    let secs = at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let date = aws_smithy_types::DateTime::from_secs(secs as i64)
        .fmt(aws_smithy_types::date_time::Format::HttpDate)
        .unwrap();
    fx.proxy.slow_down_once(&date, |p| {
        p.method == hyper::Method::PUT && p.uri.path() == "/bkt/pre/a.txt"
    });
    let s = fx.env.backup_ok(TARGET, &[]);
    assert_eq!((s.uploaded, fx.proxy.stats().slow_downs), (1, 1), "{s:?}");
    let (_, _, retry_at) = first_two(&fx.proxy, "PUT /bkt/pre/a.txt");
    let due = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    assert!(
        retry_at >= due,
        "retried {:?} before the date asked for ({date})",
        due.duration_since(retry_at).unwrap_or_default()
    );
}

/// Paths the state file records (`state files --json`).
#[track_caller]
fn state_paths(env: &TestEnv) -> Vec<String> {
    let mut cmd = env.cmd();
    cmd.arg("--state")
        .arg(&env.state)
        .args(["state", "files", "--json"]);
    let r = run(cmd);
    r.expect_code(0);
    r.stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["path"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// moto refuses a key holding a newline (its router answers 404 Not Found
/// to the PUT; S3 takes such keys). A backup with such a file backs up
/// everything else, names that one file with the store's reason (a refused
/// key, not a missing object: 404 without `NoSuchBucket`), exits 3,
/// and records neither a state row nor a manifest entry for it, so the
/// next run tries it again (and fails the same way); the snapshot
/// restores and verifies without it.
#[test]
fn a_key_the_store_refuses_fails_that_file_alone_on_moto() {
    let Some(moto) = crate::versioned::Moto::start("a_key_the_store_refuses_fails_that_file_alone_on_moto")
    else {
        return;
    };
    let c = moto.bucket(BUCKET, false);
    let env = TestEnv::with_endpoint(&moto.endpoint());
    env.write("ok.txt", b"fine")
        .write("dir/also.txt", b"fine too")
        .write("bad\nname.txt", b"refused");
    for run_no in 1..=2 {
        let r = env.backup(TARGET, &["--json"]);
        r.expect_code(3);
        let s = r.summary();
        assert_eq!((s.failed, s.failures.len()), (1, 1), "run {run_no}: {s:?}");
        assert_eq!(s.failures[0].path, "bad\nname.txt", "{s:?}");
        assert!(
            s.failures[0]
                .error
                .contains("'pre/bad\nname.txt': the store refused this key (HTTP 404)"),
            "the key and the store's answer are named: {s:?}"
        );
        assert_eq!(s.uploaded, if run_no == 1 { 2 } else { 0 }, "run {run_no}: {s:?}");
        assert!(
            r.stderr.contains("bad\\nname.txt"),
            "stderr names it, escaped:\n{}",
            r.show()
        );
        let mut paths = state_paths(&env);
        paths.sort();
        assert_eq!(paths, ["dir/also.txt", "ok.txt"], "run {run_no}");
        if run_no == 1 {
            let id = snapshot_id(s.snapshot.as_deref().expect("a snapshot of what was backed up"));
            let listed = crate::versioned::manifest(&c, BUCKET, "pre", &id).paths();
            assert_eq!(listed, ["dir/also.txt", "ok.txt"]);
        }
    }
    let mut verify = env.cmd();
    verify
        .args(["verify", TARGET, "--deep", "--endpoint-url"])
        .arg(moto.endpoint());
    run(verify).expect_code(0);
    let dest = env.root().join("dest");
    let r = env.restore_ok(TARGET, &dest, &[]);
    assert_eq!(r.failed, 0, "{r:?}");
    assert_eq!(paths_under(&dest), ["dir", "dir/also.txt", "ok.txt"]);
}

/// A store whose listings hold no ETags (moto behind the proxy, which
/// strips `<ETag>` from ListObjectsV2 answers; s3s-fs lists none itself):
/// a run from a lost state sends nothing again; `verify --deep` finds an
/// object replaced behind the tool's back with bytes of the same size (a
/// plain verify, one listing and no request per file, sees presence and
/// size only on such a store: documented in the README); a restore writes
/// only the snapshot's bytes; a run from a lost state whose newest
/// manifest is damaged (so rows are checked against the listing) confirms
/// each row by a HEAD and sends the replaced file again.
#[test]
fn a_store_listing_no_etags_still_rebuilds_verifies_and_restores_on_moto() {
    let Some(moto) = crate::versioned::Moto::start(
        "a_store_listing_no_etags_still_rebuilds_verifies_and_restores_on_moto",
    ) else {
        return;
    };
    let c = moto.bucket(BUCKET, false);
    let proxy = FaultProxy::start_to(&moto.endpoint(), 3);
    proxy.set_rewrite(Rewrite {
        strip_list_etags: true,
        ..Rewrite::default()
    });
    let env = TestEnv::with_endpoint(&proxy.endpoint());
    env.write("a.txt", b"alpha")
        .write("b.txt", b"bravo")
        .write("big.bin", noise(6 * MIB, 9));
    env.backup_ok(TARGET, &MULTIPART);
    std::fs::remove_file(&env.state).unwrap();
    let s = env.backup_ok(TARGET, &MULTIPART);
    assert_eq!((s.unchanged, s.uploaded), (3, 0), "rows from the manifest: {s:?}");

    let verify = |extra: &[&str]| {
        let mut cmd = env.cmd();
        cmd.args(["verify", TARGET, "--json", "--endpoint-url"])
            .arg(proxy.endpoint())
            .args(extra);
        run(cmd)
    };
    verify(&[]).expect_code(0);
    sdk_put(&c, BUCKET, "pre/b.txt", b"BRAVO");
    let r = verify(&["--deep"]);
    r.expect_code(1);
    assert!(
        r.stdout.contains("\"path\":\"b.txt\",\"kind\":\"mismatch\""),
        "{}",
        r.show()
    );
    let dest = env.root().join("dest");
    let r = env.restore(TARGET, &dest, &["--json"]);
    r.expect_code(3);
    assert_eq!(r.restore_summary().failed_paths(), ["b.txt"], "{}", r.show());
    assert!(!dest.join("b.txt").exists());
    assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"alpha");

    // A damaged newer manifest: the rebuild checks its rows against a
    // listing, here without ETags, so each is confirmed by a HEAD.
    sdk_put(
        &c,
        BUCKET,
        "pre/.s3backup/manifests/29991231T235959Z-00000000000000000000000000000000.jsonl.zst",
        b"not zstd",
    );
    std::fs::remove_file(&env.state).unwrap();
    let s = env.backup_ok(TARGET, &MULTIPART);
    assert_eq!(
        (s.unchanged, s.uploaded),
        (2, 1),
        "the replaced object is sent again: {s:?}"
    );
    let r = verify(&[]);
    assert!(r.stdout.contains("\"mismatched\":0"), "{}", r.show());
}

/// moto itself ignores `x-amz-copy-source-if-match` (a copy from a source
/// whose ETag differs succeeds). Renames whose sources were replaced
/// behind the tool's back: a single-part file, a multipart one copied by
/// one CopyObject and one copied in parts (UploadPartCopy, `--copy-cutoff
/// 5MiB`) each end up holding their own bytes, and verify --deep agrees.
#[test]
fn a_rename_copy_never_takes_a_replaced_source_on_moto() {
    let Some(moto) = crate::versioned::Moto::start("a_rename_copy_never_takes_a_replaced_source_on_moto")
    else {
        return;
    };
    let c = moto.bucket(BUCKET, false);
    let env = TestEnv::with_endpoint(&moto.endpoint()).past_the_guard();
    let files = [
        (
            "small.txt",
            b"the small file's own bytes".to_vec(),
            b"other bytes, same length!!".to_vec(),
        ),
        ("big.bin", noise(11 * MIB, 21), noise(11 * MIB, 22)),
    ];
    for (name, own, _) in &files {
        env.write(name, own);
    }
    env.backup_ok(TARGET, &MULTIPART);
    for cutoff in ["5GiB", "5MiB"] {
        for (name, _, other) in &files {
            sdk_put(&c, BUCKET, &format!("pre/{name}"), other);
            env.rename(name, &format!("{cutoff}-{name}"));
        }
        let s = env.backup_ok(
            TARGET,
            &[&MULTIPART_DELETE[..], &["--copy-cutoff", cutoff]].concat(),
        );
        assert_eq!(
            (s.copied, s.failed),
            (0, 0),
            "{cutoff}: no copy of replaced bytes: {s:?}"
        );
        for (name, own, _) in &files {
            let key = format!("pre/{cutoff}-{name}");
            let held = block_on(async {
                let out = c
                    .get_object()
                    .bucket(BUCKET)
                    .key(&key)
                    .send()
                    .await
                    .expect("GetObject");
                out.body.collect().await.expect("body").into_bytes()
            });
            assert!(held.as_ref() == own.as_slice(), "{key} holds other bytes");
        }
        // The next round renames these again.
        for (name, _, _) in &files {
            env.rename(&format!("{cutoff}-{name}"), name);
        }
        env.backup_ok(TARGET, &MULTIPART_DELETE);
    }
    let mut verify = env.cmd();
    verify
        .args(["verify", TARGET, "--deep", "--endpoint-url"])
        .arg(moto.endpoint());
    run(verify).expect_code(0);
}
