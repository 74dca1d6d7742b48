//! History on the backup's side (`src/backup/keep.rs`): before a run
//! replaces or deletes an object, its content is copied server-side into
//! `PREFIX/.s3backup/content/<2 hex>/<blake3>`, once per content, and only
//! then is the object changed; a failed or killed copy leaves the object
//! alone until a later run has kept it. Against the in-process S3 server
//! (no versioning), moto with versioning, and the local store.

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use crate::server::{Request, S3Server};
use crate::versioned::Moto;

const BUCKET: &str = "hist";
const TARGET: &str = "hist::p";

fn setup() -> (S3Server, TestEnv) {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    // Every test here replaces or deletes most of a tiny set on purpose.
    let env = TestEnv::with_server(&server).past_the_guard();
    (server, env)
}

/// The content area's key of `content` under prefix `p`.
fn content_key(content: &[u8]) -> String {
    let h = blake3_hex(content);
    format!("p/.s3backup/content/{}/{h}", &h[..2])
}

/// Keys of the content area, sorted.
fn content_keys(server: &S3Server) -> Vec<String> {
    let mut keys: Vec<String> = server
        .list_keys(BUCKET)
        .into_iter()
        .filter(|k| k.starts_with("p/.s3backup/content/"))
        .collect();
    keys.sort();
    keys
}

/// Index of the first logged request for which `f` holds.
fn first(log: &[Request], f: impl Fn(&Request) -> bool) -> usize {
    log.iter().position(f).unwrap_or_else(|| {
        panic!(
            "no such request in {:#?}",
            log.iter().map(|r| (&r.op, &r.key)).collect::<Vec<_>>()
        )
    })
}

fn is(r: &Request, op: &str, key: &str) -> bool {
    r.op == op && r.key.as_deref() == Some(key)
}

#[test]
fn a_run_keeps_what_it_replaces_or_deletes_before_changing_it() {
    let (server, env) = setup();
    env.write("a.txt", "one")
        .write("b.txt", "two")
        .write("c.txt", "three")
        .write("d/e.txt", "same")
        .write("f.txt", "same");
    env.backup_ok(TARGET, &[]);
    assert_eq!(
        content_keys(&server),
        Vec::<String>::new(),
        "a first backup replaces nothing"
    );
    env.write("a.txt", "one, changed")
        .remove("b.txt")
        .rename("c.txt", "c2.txt")
        .write("d/e.txt", "e now")
        .write("f.txt", "f now");
    server.clear_requests();
    let s = env.backup_ok(TARGET, &["--delete"]);
    // one, two, three (c.txt's object goes after its rename), same (once for two paths).
    assert_eq!(s.history_kept, 4, "{s:?}");
    let mut want: Vec<String> = ["one", "two", "three", "same"]
        .iter()
        .map(|c| content_key(c.as_bytes()))
        .collect();
    want.sort();
    assert_eq!(content_keys(&server), want);
    for c in ["one", "two", "three", "same"] {
        let key = content_key(c.as_bytes());
        assert_eq!(server.object_bytes(BUCKET, &key).unwrap(), c.as_bytes(), "{key}");
        let md = server.object_metadata(BUCKET, &key).unwrap();
        assert_eq!(md.get("blake3"), Some(&blake3_hex(c.as_bytes())), "{key}");
    }
    let log = server.requests();
    let kept = |c: &str| first(&log, |r| is(r, "CopyObject", &content_key(c.as_bytes())));
    assert!(kept("one") < first(&log, |r| is(r, "PutObject", "p/a.txt")));
    assert!(kept("two") < first(&log, |r| is(r, "DeleteObject", "p/b.txt")));
    assert!(kept("three") < first(&log, |r| is(r, "DeleteObject", "p/c.txt")));
    let same = content_key(b"same");
    assert_eq!(log.iter().filter(|r| is(r, "CopyObject", &same)).count(), 1);
    // Nothing changed: nothing kept, and still one request.
    server.clear_requests();
    let s = env.backup_ok(TARGET, &["--delete"]);
    assert_eq!((s.history_kept, s.uploaded, s.copied), (0, 0, 0));
    assert_eq!(server.requests().len(), 1, "{:?}", server.ops());
}

#[test]
fn a_touch_keeps_nothing_and_history_off_is_a_pure_mirror() {
    let (server, env) = setup();
    env.write_at("a.txt", "one", (1_600_000_000, 0))
        .write("b.txt", "two");
    env.backup_ok(TARGET, &[]);
    env.set_mtime("a.txt", (1_700_000_000, 0));
    let s = env.backup_ok(TARGET, &[]);
    assert_eq!((s.touched, s.history_kept), (1, 0));
    env.write("b.txt", "two, changed");
    let s = env.backup_ok(TARGET, &["--history", "off"]);
    assert_eq!((s.uploaded, s.history_kept), (1, 0));
    assert_eq!(content_keys(&server), Vec::<String>::new());
    let manifest = server
        .list_keys(BUCKET)
        .into_iter()
        .filter(|k| k.contains("/manifests/"))
        .max()
        .unwrap();
    let m = Manifest::decode(&server.object_bytes(BUCKET, &manifest).unwrap());
    assert_eq!(m.header["format"], 2);
    assert_eq!(m.header["history"], "off");
    let r = env.backup(TARGET, &["--history", "sometimes"]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("unknown history mode 'sometimes'"),
        "{}",
        r.show()
    );
}

#[test]
fn a_failed_keep_leaves_the_object_and_the_next_run_keeps_it() {
    let (server, env) = setup();
    env.write("a.txt", "one").write("b.txt", "two");
    env.backup_ok(TARGET, &[]);
    env.write("a.txt", "one, changed");
    server.fail_key(".s3backup/content/", None, false);
    let r = env.backup(TARGET, &["--json"]);
    r.expect_code(3);
    let s = r.summary();
    assert_eq!(s.failures.len(), 1, "{s:?}");
    assert_eq!(s.failures[0].path, "a.txt");
    assert!(
        s.failures[0].error.contains("not replaced"),
        "{}",
        s.failures[0].error
    );
    assert_eq!(server.object_bytes(BUCKET, "p/a.txt").unwrap(), b"one");
    server.clear_rules();
    let s = env.backup_ok(TARGET, &[]);
    assert_eq!((s.uploaded, s.history_kept), (1, 1), "{s:?}");
    assert_eq!(server.object_bytes(BUCKET, &content_key(b"one")).unwrap(), b"one");
    assert_eq!(server.object_bytes(BUCKET, "p/a.txt").unwrap(), b"one, changed");
}

/// Killed while its copy into history is being refused (503, retried):
/// the row of the object it was replacing is already out of the state,
/// yet the next run keeps that content before it uploads the new one.
#[test]
fn killed_before_its_copy_the_next_run_keeps_that_content_first() {
    let (server, env) = setup();
    env.write("a.txt", "one").write("b.txt", "two");
    env.backup_ok(TARGET, &[]);
    env.write("a.txt", "one, changed");
    server.fail_key(".s3backup/content/", None, true);
    server.clear_requests();
    let mut child = env
        .backup_cmd(TARGET, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let key = content_key(b"one");
    let seen = server.wait_for_matching(1, Duration::from_secs(30), |r| is(r, "CopyObject", &key));
    child.kill().unwrap();
    child.wait().unwrap();
    // A retry the killed run had in flight is settled under the 503 rule,
    // not after it is cleared (it would keep the content for the next run).
    assert!(
        server.wait_settled(Duration::from_secs(30)),
        "the killed run's requests never settled"
    );
    assert!(
        seen,
        "the run never tried to keep a.txt's content: {:?}",
        server.ops()
    );
    assert_eq!(server.object_bytes(BUCKET, "p/a.txt").unwrap(), b"one");
    assert_eq!(server.object_bytes(BUCKET, &key), None);
    server.clear_rules();
    server.clear_requests();
    let s = env.backup_ok(TARGET, &[]);
    assert_eq!(s.history_kept, 1, "{s:?}");
    assert_eq!(server.object_bytes(BUCKET, &key).unwrap(), b"one");
    assert_eq!(server.object_bytes(BUCKET, "p/a.txt").unwrap(), b"one, changed");
    let log = server.requests();
    assert!(first(&log, |r| is(r, "CopyObject", &key)) < first(&log, |r| is(r, "PutObject", "p/a.txt")));
}

/// S3 neither reads nor copies an object in GLACIER or DEEP_ARCHIVE.
#[test]
fn archived_objects_are_sent_from_local_files_or_left_alone_with_a_reason() {
    let (server, env) = setup();
    env.write("a.txt", "one")
        .write("c.txt", "three")
        .write_at("t.txt", "touched", (1_600_000_000, 0));
    env.backup_ok(TARGET, &[]);
    for k in ["p/a.txt", "p/c.txt", "p/t.txt"] {
        server.archive_key(k);
    }
    // A rename: the copy falls back to an upload, and c.txt's content is
    // kept from the local c2.txt before c.txt goes.
    env.rename("c.txt", "c2.txt");
    // A touch: its metadata refresh falls back to an upload.
    env.set_mtime("t.txt", (1_700_000_000, 0));
    // A change: the old content is only in the archived object.
    env.write("a.txt", "one, changed");
    let r = env.backup(TARGET, &["--json", "--delete"]);
    r.expect_code(3);
    let s = r.summary();
    assert_eq!(s.failures.len(), 1, "{s:?}");
    assert_eq!(s.failures[0].path, "a.txt");
    let e = &s.failures[0].error;
    assert!(
        e.contains("not replaced") && e.contains("archive storage class"),
        "{e}"
    );
    assert_eq!(server.object_bytes(BUCKET, "p/a.txt").unwrap(), b"one");
    assert_eq!(server.object_bytes(BUCKET, "p/c2.txt").unwrap(), b"three");
    assert_eq!(server.object_bytes(BUCKET, "p/c.txt"), None);
    assert_eq!(
        server.object_bytes(BUCKET, &content_key(b"three")).unwrap(),
        b"three"
    );
    assert_eq!(s.history_kept, 1, "{s:?}");
    assert_eq!(s.deleted, 1, "{s:?}");
    assert_eq!(s.uploaded, 2, "c2.txt and t.txt are sent: {s:?}");
}

#[test]
fn the_local_store_keeps_replaced_content_too() {
    let env = TestEnv::new().past_the_guard(); // replaces most of a tiny set on purpose
    let store = env.root().join("store");
    let target = store.to_str().unwrap();
    env.write("a.txt", "one").write("b.txt", "two");
    env.backup_ok(target, &[]);
    env.write("a.txt", "one, changed").remove("b.txt");
    let s = env.backup_ok(target, &["--delete"]);
    assert_eq!(s.history_kept, 2, "{s:?}");
    for c in ["one", "two"] {
        let h = blake3_hex(c.as_bytes());
        let kept = store.join(".s3backup/content").join(&h[..2]).join(&h);
        assert_eq!(std::fs::read(&kept).unwrap(), c.as_bytes(), "{}", kept.display());
    }
}

#[test]
fn a_versioned_bucket_keeps_versions_and_copies_only_when_asked() {
    let Some(moto) = Moto::start("a_versioned_bucket_keeps_versions_and_copies_only_when_asked") else {
        return;
    };
    let client = moto.bucket("vhist", true);
    let env = TestEnv::with_endpoint(&moto.endpoint()).past_the_guard(); // as `setup`
    env.write("a.txt", "one").write("b.txt", "two");
    env.backup_ok("vhist::p", &[]);
    env.write("a.txt", "one, changed");
    let s = env.backup_ok("vhist::p", &[]);
    assert_eq!(s.history_kept, 0, "the bucket keeps a version: {s:?}");
    env.write("b.txt", "two, changed");
    let s = env.backup_ok("vhist::p", &["--history", "both"]);
    assert_eq!(s.history_kept, 1, "{s:?}");
    let keys: Vec<String> = block_on(
        client
            .list_objects_v2()
            .bucket("vhist")
            .prefix("p/.s3backup/content/")
            .send(),
    )
    .unwrap()
    .contents()
    .iter()
    .filter_map(|o| o.key().map(str::to_owned))
    .collect();
    assert_eq!(keys, [content_key(b"two")]);
}

#[test]
fn a_dry_run_counts_what_it_would_keep_and_copies_nothing() {
    let (server, env) = setup();
    env.write("a.txt", "one")
        .write("b.txt", "two")
        .write("c.txt", "three");
    env.backup_ok(TARGET, &[]);
    env.write("a.txt", "one, changed").remove("b.txt");
    env.set_mtime("c.txt", (1_700_000_000, 0));
    let s = env.backup_ok(TARGET, &["--dry-run", "--delete"]);
    assert_eq!(
        (s.history_kept, s.uploaded, s.deleted, s.touched),
        (2, 1, 1, 1),
        "{s:?}"
    );
    assert_eq!(content_keys(&server), Vec::<String>::new());
    let r = env.backup(TARGET, &["--dry-run", "--delete"]);
    r.expect_code(0);
    assert!(
        r.stdout
            .contains("would keep 2 objects replaced or deleted for older snapshots"),
        "{}",
        r.show()
    );
}

#[test]
fn content_a_copy_or_touch_wrote_is_kept_when_replaced() {
    let (server, env) = setup();
    env.write("a.txt", "alpha")
        .write_at("t.txt", "tee", (1_600_000_000, 0));
    env.backup_ok(TARGET, &[]);
    env.write("b.txt", "alpha");
    env.set_mtime("t.txt", (1_700_000_000, 0));
    let s = env.backup_ok(TARGET, &[]);
    assert_eq!((s.copied, s.touched), (1, 1), "{s:?}");
    env.write("b.txt", "beta").write("t.txt", "tee, changed");
    let s = env.backup_ok(TARGET, &[]);
    assert_eq!((s.uploaded, s.history_kept), (2, 2), "{s:?}");
    assert_eq!(
        server.object_bytes(BUCKET, &content_key(b"alpha")).unwrap(),
        b"alpha"
    );
    assert_eq!(server.object_bytes(BUCKET, &content_key(b"tee")).unwrap(), b"tee");
}

/// Objects over `--copy-cutoff` (S3 copies at most 5 GiB at once) are
/// copied in parts: into history, and for a rename.
#[test]
fn large_objects_are_copied_in_parts() {
    let (server, env) = setup();
    let args = [
        "--multipart-threshold",
        "5MiB",
        "--part-size",
        "5MiB",
        "--copy-cutoff",
        "5MiB",
    ];
    let (old, new) = (noise(6 * 1024 * 1024 + 11, 7), noise(6 * 1024 * 1024 + 12, 8));
    let moved = noise(5 * 1024 * 1024 + 3, 9);
    env.write("big.bin", &old).write("m/moved.bin", &moved);
    env.backup_ok(TARGET, &args);
    env.write("big.bin", &new).rename("m/moved.bin", "m/there.bin");
    server.clear_requests();
    let s = env.backup_ok(TARGET, &[&args[..], &["--delete"]].concat());
    assert_eq!((s.uploaded, s.copied, s.history_kept), (1, 1, 2), "{s:?}");
    assert_eq!(server.object_bytes(BUCKET, &content_key(&old)).unwrap(), old);
    assert_eq!(server.object_bytes(BUCKET, &content_key(&moved)).unwrap(), moved);
    assert_eq!(server.object_bytes(BUCKET, "p/m/there.bin").unwrap(), moved);
    assert_eq!(server.object_bytes(BUCKET, "p/big.bin").unwrap(), new);
    // Two parts for each of the three copies, and no single CopyObject.
    assert_eq!(server.count("UploadPartCopy"), 6, "{:?}", server.ops());
    assert_eq!(server.count("CopyObject"), 0, "{:?}", server.ops());
    let r = env.backup(TARGET, &["--copy-cutoff", "4MiB"]);
    r.expect_code(2);
    assert!(r.stderr.contains("copy cutoff '4MiB'"), "{}", r.show());
}

/// A local store's ETag is made of size and mtime: an object rewritten
/// behind the state's back at its old size and mtime passes `If-Match`,
/// yet it no longer holds the content to keep, and must not be kept under
/// that content's name (the crash harness found it after a kill).
#[test]
fn a_local_object_rewritten_at_its_old_size_and_mtime_is_not_kept_as_the_old_content() {
    let env = TestEnv::new().past_the_guard(); // replaces most of a tiny set on purpose
    let store = env.root().join("store");
    let target = store.to_str().unwrap();
    env.write_at("f.txt", "AAAA", (1_600_000_000, 0));
    env.backup_ok(target, &[]);
    let object = store.join("f.txt");
    std::fs::write(&object, "BBBB").unwrap();
    filetime::set_file_mtime(&object, filetime::FileTime::from_unix_time(1_600_000_000, 0)).unwrap();
    env.write("f.txt", "something else");
    let s = env.backup_ok(target, &[]);
    assert_eq!((s.uploaded, s.history_kept), (1, 0), "{s:?}");
    let h = blake3_hex(b"AAAA");
    let kept = store.join(".s3backup/content").join(&h[..2]).join(&h);
    assert!(
        !kept.exists(),
        "{} holds {:?}",
        kept.display(),
        std::fs::read(&kept)
    );
    assert_eq!(std::fs::read(&object).unwrap(), b"something else");
}

#[test]
fn a_named_set_saves_its_history_mode() {
    let (server, env) = setup();
    env.write("a.txt", "one");
    env.backup_ok(TARGET, &["--set", "h", "--history", "off"]);
    env.write("a.txt", "one, changed");
    let mut cmd = env.cmd();
    cmd.args(["backup", "--set", "h", "--json", "--state"])
        .arg(&env.state);
    let r = run(cmd);
    r.expect_code(0);
    assert_eq!(r.summary().history_kept, 0, "{}", r.show());
    assert_eq!(content_keys(&server), Vec::<String>::new());
    env.write("a.txt", "one, changed again");
    let mut cmd = env.cmd();
    cmd.args(["backup", "--set", "h", "--json", "--history", "auto", "--state"])
        .arg(&env.state);
    let r = run(cmd);
    r.expect_code(0);
    assert_eq!(
        r.summary().history_kept,
        1,
        "a typed --history wins: {}",
        r.show()
    );
}

/// moto answers a multipart upload on a bucket that never had versioning
/// with the version ID `null` (S3 gives it to objects written while
/// versioning is suspended): a "null version" is replaced by the next
/// write, so it keeps nothing, and the old content must be copied.
#[test]
fn a_null_version_is_no_version_and_the_old_content_is_kept() {
    let test = "a_null_version_is_no_version_and_the_old_content_is_kept";
    let Some(moto) = Moto::start(test) else { return };
    moto.bucket("nullv", false);
    let env = TestEnv::with_endpoint(&moto.endpoint()).past_the_guard(); // as `setup`
    let args = ["--multipart-threshold", "5MiB", "--part-size", "5MiB"];
    let (old, new) = (noise(6 * 1024 * 1024 + 5, 21), noise(6 * 1024 * 1024 + 6, 22));
    env.write("big.bin", &old);
    let first = env.backup_ok("nullv::p", &args).snapshot.unwrap();
    env.write("big.bin", &new);
    let s = env.backup_ok("nullv::p", &args);
    assert_eq!((s.uploaded, s.history_kept), (1, 1), "{s:?}");
    let dest = env.root().join("first");
    env.restore_ok("nullv::p", &dest, &["--snapshot", &snapshot_id(&first)]);
    assert_eq!(std::fs::read(dest.join("big.bin")).unwrap(), old);
    let mut cmd = env.cmd();
    cmd.args(["verify", "nullv::p", "--all", "--endpoint-url", &moto.endpoint()]);
    run(cmd).expect_code(0);
}

/// S3 refuses to copy an object in GLACIER with `ObjectNotInActiveTierError`
/// (moto too): a rename then sends the local file, and a changed file whose
/// old content is only in the archived object is left alone, saying why.
#[test]
fn an_archived_source_on_moto_is_recognised() {
    let Some(moto) = Moto::start("an_archived_source_on_moto_is_recognised") else {
        return;
    };
    moto.bucket("glacier", false);
    let env = TestEnv::with_endpoint(&moto.endpoint()).past_the_guard(); // as `setup`
    let args = ["--storage-class", "GLACIER"];
    env.write("a.txt", "one").write("b.txt", "two");
    env.backup_ok("glacier::p", &args);
    env.write("a.txt", "one, changed").rename("b.txt", "b2.txt");
    let r = env.backup("glacier::p", &[&args[..], &["--json", "--delete"]].concat());
    r.expect_code(3);
    let s = r.summary();
    let failed: Vec<&str> = s.failures.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(failed, ["a.txt"], "{}", r.show());
    assert!(
        s.failures[0].error.contains("archive storage class"),
        "{}",
        r.show()
    );
    assert_eq!(
        (s.uploaded, s.history_kept, s.deleted),
        (1, 1, 1),
        "b2.txt sent, b.txt kept from it: {s:?}"
    );
    // --history off lets the change through, as the README says.
    let s = env.backup_ok("glacier::p", &[&args[..], &["--history", "off"]].concat());
    assert_eq!(s.uploaded, 1, "{s:?}");
}

#[test]
fn a_keep_that_keeps_failing_says_so_and_history_off_gets_past_it() {
    let (server, env) = setup();
    env.write("a.txt", "one");
    env.backup_ok(TARGET, &[]);
    env.write("a.txt", "one, changed");
    server.fail_key(".s3backup/content/", None, false);
    env.backup(TARGET, &[]).expect_code(3);
    let r = env.backup(TARGET, &["--json"]);
    r.expect_code(3);
    let e = &r.summary().failures[0].error;
    assert!(e.contains("not replaced") && e.contains("--history off"), "{e}");
    assert!(!e.contains("changed type"), "{e}");
    let s = env.backup_ok(TARGET, &["--history", "off"]);
    assert_eq!((s.uploaded, s.history_kept), (1, 0), "{s:?}");
    assert_eq!(server.object_bytes(BUCKET, "p/a.txt").unwrap(), b"one, changed");
}

#[test]
fn a_tagged_run_is_a_snapshot_even_when_nothing_changed() {
    let (_server, env) = setup();
    env.write("a.txt", "one");
    env.backup_ok(TARGET, &[]);
    let s = env.backup_ok(TARGET, &["--tag", "release"]);
    assert!(s.snapshot.is_some(), "{s:?}");
    let r = env.snapshots(TARGET, &["--json"]);
    r.expect_code(0);
    let list: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let tags: Vec<&serde_json::Value> = list.as_array().unwrap().iter().map(|s| &s["tags"]).collect();
    assert_eq!(
        tags.last().unwrap().as_array().unwrap(),
        &[serde_json::json!("release")],
        "{list}"
    );
}

/// A recorded version the bucket no longer keeps (expired, or removed), of
/// content the content area holds too (`--history both`): verify passes,
/// as the restore does.
#[test]
fn verify_looks_in_the_content_area_for_a_version_that_is_gone() {
    let test = "verify_looks_in_the_content_area_for_a_version_that_is_gone";
    let Some(moto) = Moto::start(test) else { return };
    let client = moto.bucket("vgone", true);
    let env = TestEnv::with_endpoint(&moto.endpoint()).past_the_guard(); // as `setup`
    env.write("f", "one").write("g", "keep");
    let first = env
        .backup_ok("vgone::p", &["--history", "both"])
        .snapshot
        .unwrap();
    env.write("f", "two");
    let s = env.backup_ok("vgone::p", &["--history", "both"]);
    assert_eq!(s.history_kept, 1, "{s:?}");
    let versions = block_on(client.list_object_versions().bucket("vgone").prefix("p/f").send()).unwrap();
    let old = versions
        .versions()
        .iter()
        .find(|v| v.key() == Some("p/f") && v.is_latest() == Some(false))
        .and_then(|v| v.version_id())
        .unwrap()
        .to_owned();
    block_on(
        client
            .delete_object()
            .bucket("vgone")
            .key("p/f")
            .version_id(old)
            .send(),
    )
    .unwrap();
    for deep in [false, true] {
        let mut cmd = env.cmd();
        cmd.args(["verify", "vgone::p", "--all", "--endpoint-url", &moto.endpoint()]);
        if deep {
            cmd.arg("--deep");
        }
        run(cmd).expect_code(0);
    }
    let dest = env.root().join("first");
    env.restore_ok("vgone::p", &dest, &["--snapshot", &snapshot_id(&first)]);
    assert_eq!(std::fs::read(dest.join("f")).unwrap(), b"one");
}

#[test]
fn keep_rules_a_partial_run_skips_are_named() {
    let (server, env) = setup();
    env.write("a.txt", "one").write("bad.txt", "two");
    env.backup_ok(TARGET, &[]);
    env.write("bad.txt", "two, changed");
    server.fail_key("p/bad.txt", None, false);
    let r = env.backup(TARGET, &["--keep-last", "1", "--prune"]);
    r.expect_code(3);
    assert!(
        r.stderr.contains("the keep rules were not applied"),
        "{}",
        r.show()
    );
}

/// A snapshot whose header and the newest's say `--history off` may still
/// have its content in the content area (a run between them kept it).
#[test]
fn a_history_off_snapshot_finds_content_a_later_run_kept() {
    let env = TestEnv::new().past_the_guard(); // replaces most of a tiny set on purpose
    let store = env.root().join("store");
    let target = store.to_str().unwrap();
    env.write("f", "v1");
    let first = env.backup_ok(target, &["--history", "off"]).snapshot.unwrap();
    env.write("f", "v2");
    assert_eq!(env.backup_ok(target, &["--history", "auto"]).history_kept, 1);
    env.write("g", "g");
    env.backup_ok(target, &["--history", "off"]);
    let dest = env.root().join("first");
    env.restore_ok(target, &dest, &["--snapshot", &snapshot_id(&first)]);
    assert_eq!(std::fs::read(dest.join("f")).unwrap(), b"v1");
    let mut cmd = env.cmd();
    cmd.args(["verify", target, "--all"]);
    run(cmd).expect_code(0);
}

/// A recorded version that is gone, while the key's current object holds
/// the same content (a re-dated file): the restore takes it from the key.
#[test]
fn a_gone_version_whose_key_holds_the_content_restores_from_the_key() {
    let test = "a_gone_version_whose_key_holds_the_content_restores_from_the_key";
    let Some(moto) = Moto::start(test) else { return };
    let client = moto.bucket("vtouch", true);
    let env = TestEnv::with_endpoint(&moto.endpoint()).past_the_guard(); // as `setup`
    env.write("f", "hello").write("g", "other");
    let first = env.backup_ok("vtouch::p", &[]).snapshot.unwrap();
    env.set_mode("f", 0o600);
    assert_eq!(env.backup_ok("vtouch::p", &[]).touched, 1);
    let versions = block_on(
        client
            .list_object_versions()
            .bucket("vtouch")
            .prefix("p/f")
            .send(),
    )
    .unwrap();
    for v in versions.versions() {
        if v.key() == Some("p/f") && v.is_latest() == Some(false) {
            let id = v.version_id().unwrap().to_owned();
            block_on(
                client
                    .delete_object()
                    .bucket("vtouch")
                    .key("p/f")
                    .version_id(id)
                    .send(),
            )
            .unwrap();
        }
    }
    let dest = env.root().join("first");
    env.restore_ok("vtouch::p", &dest, &["--snapshot", &snapshot_id(&first)]);
    assert_eq!(std::fs::read(dest.join("f")).unwrap(), b"hello");
}

/// A local store inside another store's `.s3backup/` would write among
/// its manifests and kept content (as an S3 prefix there is refused).
#[test]
fn a_local_store_inside_a_stores_own_area_is_refused() {
    let env = TestEnv::new().past_the_guard(); // replaces most of a tiny set on purpose
    let store = env.root().join("store");
    env.write("a.txt", "one");
    env.backup_ok(store.to_str().unwrap(), &[]);
    let link = env.root().join("link");
    std::os::unix::fs::symlink(store.join(".s3backup"), &link).unwrap();
    for inner in [
        store.join(".s3backup"),
        store.join(".s3backup/content"),
        link.join("x"),
    ] {
        let r = env.backup(inner.to_str().unwrap(), &[]);
        r.expect_code(1);
        assert!(r.error_line().contains("own area ('.s3backup')"), "{}", r.show());
    }
    assert!(!store.join(".s3backup/a.txt").exists());
}
