//! `s3backup backup` against the in-process S3 server: what lands in the
//! bucket (keys, bytes, metadata, manifest), which requests the server sees,
//! the `--json` summary and the exit codes.

use std::collections::HashMap;

use crate::common::*;
use crate::server::S3Server;

const BUCKET: &str = "bkt";
const TARGET: &str = "bkt::pre";

/// Requests that change something on the server.
const WRITE_OPS: &[&str] = &[
    "PutObject",
    "CopyObject",
    "DeleteObject",
    "DeleteObjects",
    "CreateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
    "CreateBucket",
];

/// A server with bucket `bkt` and an environment pointed at it.
fn setup() -> (S3Server, TestEnv) {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    (server, env)
}

fn total_bytes(files: &[Expect]) -> u64 {
    files.iter().map(|f| f.content.len() as u64).sum()
}

/// Keys under `prefix` that are backed-up files (not manifests), without the prefix.
fn file_keys(server: &S3Server, bucket: &str, prefix: &str) -> Vec<String> {
    let p = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    server
        .list_keys(bucket)
        .into_iter()
        .filter_map(|k| k.strip_prefix(&p).map(str::to_owned))
        .filter(|k| !k.starts_with(".s3backup/"))
        .collect()
}

/// Manifest keys under `prefix`, sorted.
fn manifest_keys(server: &S3Server, bucket: &str, prefix: &str) -> Vec<String> {
    let dir = if prefix.is_empty() {
        ".s3backup/manifests/".to_owned()
    } else {
        format!("{prefix}/.s3backup/manifests/")
    };
    server
        .list_keys(bucket)
        .into_iter()
        .filter(|k| k.starts_with(&dir))
        .collect()
}

#[track_caller]
fn manifest(server: &S3Server, key: &str) -> Manifest {
    let bytes = server
        .object_bytes(BUCKET, key)
        .unwrap_or_else(|| panic!("manifest {key} missing; keys: {:?}", server.list_keys(BUCKET)));
    Manifest::decode(&bytes)
}

#[track_caller]
fn metadata(server: &S3Server, key: &str) -> HashMap<String, String> {
    server
        .object_metadata(BUCKET, key)
        .unwrap_or_else(|| panic!("object {key} missing; keys: {:?}", server.list_keys(BUCKET)))
}

#[track_caller]
fn assert_no_writes(server: &S3Server) {
    let writes: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| WRITE_OPS.contains(&r.op.as_str()))
        .collect();
    assert!(writes.is_empty(), "unexpected write requests: {writes:#?}");
}

#[test]
fn first_backup_uploads_every_file_with_metadata_and_a_manifest() {
    let (server, env) = setup();
    let files = standard_tree(&env);

    let s = env.backup_ok(TARGET, &[]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 4,
            uploaded: 4,
            ..Counts::default()
        }
    );
    assert_eq!(s.bytes_sent, total_bytes(&files));
    assert!(!s.dry_run);
    assert!(s.failures.is_empty());

    // Every file at PREFIX/<relative path>, byte for byte, with its metadata.
    assert_eq!(
        file_keys(&server, BUCKET, "pre"),
        ["a.txt", "dir/b.txt", "dir/sub/c.bin", "empty.txt"]
    );
    for f in &files {
        let key = format!("pre/{}", f.rel);
        assert_eq!(
            server.object_bytes(BUCKET, &key).unwrap(),
            f.content,
            "bytes of {key}"
        );
        assert_object_metadata(&metadata(&server, &key), &f.content, f.mtime, f.mode);
        assert_eq!(server.count_key("PutObject", &key), 1, "{:#?}", server.ops());
    }
    assert_eq!(server.count("CopyObject"), 0);
    assert_eq!(server.count("DeleteObject"), 0);
    assert_eq!(server.count("CreateBucket"), 0, "the bucket exists");
    assert!(
        server.count("HeadBucket") >= 1,
        "the bucket is checked first: {:?}",
        server.ops()
    );

    // One manifest, named as documented and reported as the snapshot.
    let manifests = manifest_keys(&server, BUCKET, "pre");
    assert_eq!(manifests.len(), 1, "{manifests:?}");
    let name = manifests[0].strip_prefix("pre/.s3backup/manifests/").unwrap();
    assert!(is_manifest_name(name), "manifest name {name:?}");
    assert_eq!(s.snapshot.as_deref(), Some(manifests[0].as_str()));
    let m = manifest(&server, &manifests[0]);
    assert!(
        m.header.get("path").is_none(),
        "the first line is the header: {}",
        m.header
    );
    assert_eq!(
        m.paths(),
        ["a.txt", "dir/b.txt", "dir/sub/c.bin", "empty.txt"],
        "sorted by path"
    );
    for f in &files {
        m.assert_file(f.rel, &f.content, f.mtime, f.mode);
    }
}

#[test]
fn unchanged_rerun_sends_only_a_head_bucket() {
    let (server, env) = setup();
    standard_tree(&env);
    env.backup_ok(TARGET, &[]);
    let keys_before = server.list_keys(BUCKET);
    server.clear_requests();

    let s = env.backup_ok(TARGET, &[]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 4,
            unchanged: 4,
            ..Counts::default()
        }
    );
    assert_eq!(s.bytes_sent, 0);
    assert_eq!(s.snapshot, None, "nothing changed, so no manifest is written");
    assert_one_manifest_check(&server);
    assert_eq!(server.list_keys(BUCKET), keys_before);
}

#[test]
fn changed_content_is_uploaded_again() {
    let (server, env) = setup();
    let files = standard_tree(&env);
    let first = env.backup_ok(TARGET, &[]);
    server.clear_requests();

    // Same size, different bytes, new mtime.
    let new_mtime = (1_700_000_100, 42);
    env.write_at("a.txt", "HELLO\n", new_mtime);
    env.set_mode("a.txt", 0o600);
    let s = env.backup_ok(TARGET, &[]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 4,
            uploaded: 1,
            unchanged: 3,
            ..Counts::default()
        }
    );
    assert_eq!(s.bytes_sent, 6);

    assert_eq!(server.object_bytes(BUCKET, "pre/a.txt").unwrap(), b"HELLO\n");
    assert_object_metadata(&metadata(&server, "pre/a.txt"), b"HELLO\n", new_mtime, 0o600);
    assert_eq!(server.count_key("PutObject", "pre/a.txt"), 1);
    for f in files.iter().filter(|f| f.rel != "a.txt") {
        let key = format!("pre/{}", f.rel);
        assert_eq!(server.count_key("PutObject", &key), 0, "{key} is unchanged");
    }

    // A second manifest describes the new state; the first one stays.
    let snap = s.snapshot.expect("a run that uploaded writes a manifest");
    assert_ne!(Some(&snap), first.snapshot.as_ref());
    assert_eq!(manifest_keys(&server, BUCKET, "pre").len(), 2);
    let m = manifest(&server, &snap);
    assert_eq!(m.paths(), ["a.txt", "dir/b.txt", "dir/sub/c.bin", "empty.txt"]);
    m.assert_file("a.txt", b"HELLO\n", new_mtime, 0o600);
    m.assert_file("dir/b.txt", b"bee\n", (1_600_000_000, 5), 0o644);
}

#[test]
fn mtime_only_change_is_touched_by_a_copy_onto_itself() {
    let (server, env) = setup();
    standard_tree(&env);
    env.backup_ok(TARGET, &[]);
    server.clear_requests();

    let new_mtime = (1_700_000_500, 700);
    env.set_mtime("dir/b.txt", new_mtime);
    let s = env.backup_ok(TARGET, &[]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 4,
            touched: 1,
            unchanged: 3,
            ..Counts::default()
        }
    );
    assert_eq!(s.bytes_sent, 0, "bytes are not sent again");

    assert_eq!(
        server.count("PutObject") - manifest_puts(&server),
        0,
        "{:?}",
        server.ops()
    );
    assert_eq!(server.count("CreateMultipartUpload"), 0);
    assert_eq!(
        server.count_key("CopyObject", "pre/dir/b.txt"),
        1,
        "{:?}",
        server.ops()
    );
    assert_eq!(server.count("CopyObject"), 1);
    assert_eq!(server.object_bytes(BUCKET, "pre/dir/b.txt").unwrap(), b"bee\n");
    assert_object_metadata(&metadata(&server, "pre/dir/b.txt"), b"bee\n", new_mtime, 0o644);

    let snap = s.snapshot.expect("the tree changed, so a manifest is written");
    manifest(&server, &snap).assert_file("dir/b.txt", b"bee\n", new_mtime, 0o644);
}

/// PutObject requests that wrote manifests.
fn manifest_puts(server: &S3Server) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| {
            r.op == "PutObject"
                && r.key
                    .as_deref()
                    .is_some_and(|k| k.contains(".s3backup/manifests/"))
        })
        .count()
}

#[test]
fn renamed_file_is_copied_server_side_and_the_old_key_stays() {
    let (server, env) = setup();
    standard_tree(&env);
    env.backup_ok(TARGET, &[]);
    server.clear_requests();

    env.rename("dir/sub/c.bin", "moved/c-renamed.bin");
    let s = env.backup_ok(TARGET, &[]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 4,
            copied: 1,
            unchanged: 3,
            ..Counts::default()
        }
    );
    assert_eq!(s.bytes_sent, 0);

    let new_key = "pre/moved/c-renamed.bin";
    assert_eq!(server.count_key("CopyObject", new_key), 1, "{:?}", server.ops());
    assert_eq!(server.count_key("PutObject", new_key), 0);
    assert_eq!(server.count("CreateMultipartUpload"), 0);
    assert_eq!(server.count("DeleteObject"), 0);
    let content = noise(3000, 1);
    assert_eq!(server.object_bytes(BUCKET, new_key).unwrap(), content);
    assert_object_metadata(
        &metadata(&server, new_key),
        &content,
        (1_650_000_000, 999_999_999),
        0o755,
    );
    // Without --delete the old object is left alone.
    assert_eq!(
        file_keys(&server, BUCKET, "pre"),
        [
            "a.txt",
            "dir/b.txt",
            "dir/sub/c.bin",
            "empty.txt",
            "moved/c-renamed.bin"
        ]
    );

    // The manifest describes the bucket after the run (docs/manifest.md),
    // so the old key, still there, is listed too.
    let m = manifest(&server, &s.snapshot.expect("manifest"));
    assert_eq!(
        m.paths(),
        [
            "a.txt",
            "dir/b.txt",
            "dir/sub/c.bin",
            "empty.txt",
            "moved/c-renamed.bin"
        ]
    );
    m.assert_file(
        "moved/c-renamed.bin",
        &content,
        (1_650_000_000, 999_999_999),
        0o755,
    );
}

#[test]
fn renamed_file_with_delete_removes_the_old_key() {
    let (server, env) = setup();
    standard_tree(&env);
    env.backup_ok(TARGET, &[]);
    server.clear_requests();

    env.rename("dir/b.txt", "dir/b2.txt");
    let s = env.backup_ok(TARGET, &["--delete"]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 4,
            copied: 1,
            deleted: 1,
            unchanged: 3,
            ..Counts::default()
        }
    );
    assert_eq!(
        server.count_key("CopyObject", "pre/dir/b2.txt"),
        1,
        "{:#?}",
        server.requests()
    );
    assert_eq!(server.count_key("PutObject", "pre/dir/b2.txt"), 0);
    assert_eq!(
        server.count_key("DeleteObject", "pre/dir/b.txt"),
        1,
        "{:?}",
        server.ops()
    );
    assert_eq!(
        file_keys(&server, BUCKET, "pre"),
        ["a.txt", "dir/b2.txt", "dir/sub/c.bin", "empty.txt"]
    );
    assert_object_metadata(
        &metadata(&server, "pre/dir/b2.txt"),
        b"bee\n",
        (1_600_000_000, 5),
        0o644,
    );
}

#[test]
fn many_renames_with_delete_copy_before_deleting() {
    // A rename with --delete is "copy old -> new, then delete old"; the
    // delete must never overtake the copy that reads the old object. The
    // names are reversed (the first source is copied last) and everything
    // runs at once, so a delete that does not wait for its copy shows up.
    let (server, env) = setup();
    let n = 16;
    let content = |i: usize| noise(200_000 + i, i as u64);
    for i in 0..n {
        env.write(&format!("old/f{i:02}.bin"), content(i));
    }
    env.backup_ok(TARGET, &[]);
    for i in 0..n {
        env.rename(&format!("old/f{i:02}.bin"), &format!("new/g{:02}.bin", n - 1 - i));
    }
    server.clear_requests();

    // Every object of the set is deleted (renamed): past the delete guard's default.
    let s = env.backup_ok(TARGET, &["--delete", "--jobs", "32", "--max-delete", "100%"]);
    let all = n as u64;
    assert_eq!(
        s.counts(),
        Counts {
            scanned: all,
            copied: all,
            deleted: all,
            ..Counts::default()
        }
    );
    let expected: Vec<String> = (0..n).map(|j| format!("new/g{j:02}.bin")).collect();
    assert_eq!(file_keys(&server, BUCKET, "pre"), expected);
    for j in 0..n {
        let key = format!("pre/new/g{j:02}.bin");
        assert!(
            server.object_bytes(BUCKET, &key).unwrap() == content(n - 1 - j),
            "bytes of {key}"
        );
        assert_eq!(
            server.count_key("CopyObject", &key),
            1,
            "{key}: {:?}",
            server.ops()
        );
    }
    assert_eq!(
        server.count("PutObject") - manifest_puts(&server),
        0,
        "{:?}",
        server.ops()
    );
}

#[test]
fn duplicate_content_under_a_new_name_is_copied() {
    let (server, env) = setup();
    standard_tree(&env);
    env.backup_ok(TARGET, &[]);
    server.clear_requests();

    let dup_mtime = (1_700_000_900, 1);
    env.write_at("copies/a-again.txt", "hello\n", dup_mtime);
    let s = env.backup_ok(TARGET, &[]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 5,
            copied: 1,
            unchanged: 4,
            ..Counts::default()
        }
    );
    assert_eq!(s.bytes_sent, 0);
    assert_eq!(
        server.count_key("CopyObject", "pre/copies/a-again.txt"),
        1,
        "{:?}",
        server.ops()
    );
    assert_eq!(server.count_key("PutObject", "pre/copies/a-again.txt"), 0);
    assert_eq!(
        server.object_bytes(BUCKET, "pre/copies/a-again.txt").unwrap(),
        b"hello\n"
    );
    // The copy carries its own mtime and mode, not those of the original.
    assert_object_metadata(
        &metadata(&server, "pre/copies/a-again.txt"),
        b"hello\n",
        dup_mtime,
        0o644,
    );
    assert_object_metadata(&metadata(&server, "pre/a.txt"), b"hello\n", T0, 0o600);
}

#[test]
fn deleted_file_stays_in_the_bucket_unless_delete_is_given() {
    let (server, env) = setup();
    standard_tree(&env);
    env.backup_ok(TARGET, &[]);
    server.clear_requests();

    env.remove("a.txt");
    let s = env.backup_ok(TARGET, &[]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 3,
            unchanged: 3,
            ..Counts::default()
        }
    );
    assert_eq!(server.count("DeleteObject") + server.count("DeleteObjects"), 0);
    assert_eq!(server.object_bytes(BUCKET, "pre/a.txt").unwrap(), b"hello\n");

    server.clear_requests();
    let s = env.backup_ok(TARGET, &["--delete"]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 3,
            unchanged: 3,
            deleted: 1,
            ..Counts::default()
        }
    );
    assert_eq!(
        server.count_key("DeleteObject", "pre/a.txt"),
        1,
        "{:?}",
        server.ops()
    );
    assert_eq!(
        file_keys(&server, BUCKET, "pre"),
        ["dir/b.txt", "dir/sub/c.bin", "empty.txt"]
    );
    // Manifests are never deleted; the new one no longer lists the file.
    let manifests = manifest_keys(&server, BUCKET, "pre");
    assert!(manifests.len() >= 2, "{manifests:?}");
    let m = manifest(&server, &s.snapshot.expect("a deletion changes the bucket"));
    assert_eq!(m.paths(), ["dir/b.txt", "dir/sub/c.bin", "empty.txt"]);

    // Deleting again is a no-op.
    server.clear_requests();
    let s = env.backup_ok(TARGET, &["--delete"]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 3,
            unchanged: 3,
            ..Counts::default()
        }
    );
    assert_one_manifest_check(&server);
}

/// An unchanged run's one request: a listing of the manifests from the
/// set's latest on (the bucket is there, still holds what the state
/// describes, and nobody has written a newer snapshot).
#[track_caller]
fn assert_one_manifest_check(server: &S3Server) {
    let ops = server.ops();
    assert!(
        ops.len() == 1 && ops[0].starts_with("ListObjectsV2"),
        "one request, no request per file: {ops:?}"
    );
}

/// Two machines backing up different sources to one prefix (each with its
/// own state file): after the other one's `--delete` removed this one's
/// files, this one's next run sees a newer snapshot it did not write and
/// rebuilds its state from what the bucket holds, so its files go up
/// again instead of being called unchanged.
#[test]
fn a_newer_snapshot_by_another_writer_is_not_trusted_as_unchanged() {
    let (server, laptop) = setup();
    let desktop = TestEnv::with_server(&server);
    laptop.write("a.txt", "laptop a");
    desktop.write("b.txt", "desktop b");
    laptop.backup_ok(TARGET, &[]);
    // The desktop deletes the laptop's only file: past the delete guard's default.
    let r = desktop.backup(TARGET, &["--json", "--delete", "--max-delete", "100%"]);
    r.expect_code(0);
    assert!(
        r.stderr.contains("not of"),
        "the desktop is told whose snapshot it took: {}",
        r.show()
    );
    assert!(server.object_bytes(BUCKET, "pre/a.txt").is_none());

    laptop.write("c.txt", "laptop c");
    let r = laptop.backup(TARGET, &["--json"]);
    r.expect_code(0);
    assert!(r.stderr.contains("newer snapshot"), "{}", r.show());
    let s = r.summary();
    assert_eq!((s.uploaded, s.unchanged), (2, 0), "{s:?}");
    assert_eq!(server.object_bytes(BUCKET, "pre/a.txt").unwrap(), b"laptop a");
    // Its own snapshot is the newest again: the next run trusts it.
    server.clear_requests();
    let s = laptop.backup_ok(TARGET, &[]);
    assert_eq!((s.uploaded, s.unchanged), (0, 2), "{s:?}");
    assert_one_manifest_check(&server);
}

/// A stray newer object under the manifests (not a readable manifest)
/// does not make every run rebuild its state.
#[test]
fn a_stray_newer_object_under_the_manifests_does_not_force_a_rebuild() {
    let (server, env) = setup();
    env.write("a.txt", "a");
    env.backup_ok(TARGET, &[]);
    sdk_put(
        &sdk_client(&server.endpoint()),
        BUCKET,
        "pre/.s3backup/manifests/29991231T000000Z-x.jsonl.zst",
        b"junk",
    );
    let s = env.backup_ok(TARGET, &[]);
    assert_eq!((s.uploaded, s.unchanged), (0, 1), "{s:?}");
}

#[test]
fn large_file_is_sent_as_a_multipart_upload() {
    let (server, env) = setup();
    let big = noise(12 * MIB, 7);
    env.write("big.bin", &big);
    env.write("small.txt", "small");

    let s = env.backup_ok(TARGET, &["--multipart-threshold", "5MiB", "--part-size", "5MiB"]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 2,
            uploaded: 2,
            ..Counts::default()
        }
    );
    assert_eq!(s.bytes_sent, (12 * MIB + 5) as u64);

    assert_eq!(
        server.count_key("CreateMultipartUpload", "pre/big.bin"),
        1,
        "{:?}",
        server.ops()
    );
    assert_eq!(
        server.count_key("UploadPart", "pre/big.bin"),
        3,
        "12 MiB in 5 MiB parts"
    );
    assert_eq!(server.count_key("CompleteMultipartUpload", "pre/big.bin"), 1);
    assert_eq!(server.count_key("PutObject", "pre/big.bin"), 0);
    assert_eq!(
        server.count_key("PutObject", "pre/small.txt"),
        1,
        "small files use PutObject"
    );
    assert_eq!(server.count("AbortMultipartUpload"), 0);

    assert!(
        server.object_bytes(BUCKET, "pre/big.bin").unwrap() == big,
        "multipart bytes differ"
    );
    assert_object_metadata(&metadata(&server, "pre/big.bin"), &big, T0, 0o644);
    let m = manifest(&server, &s.snapshot.expect("manifest"));
    m.assert_file("big.bin", &big, T0, 0o644);
    let etag = m.by_path()["big.bin"]["etag"].as_str().unwrap().to_owned();
    assert!(etag.trim_matches('"').ends_with("-3"), "multipart etag {etag}");

    // Some S3-compatible servers reject the SDK's default checksum headers
    // and aws-chunked trailers: uploads must not carry them.
    let with_checksums: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| !r.checksum_headers.is_empty())
        .map(|r| format!("{} {:?}", r.op, r.checksum_headers))
        .collect();
    assert!(with_checksums.is_empty(), "{with_checksums:?}");
}

#[test]
fn missing_bucket_is_created() {
    let server = S3Server::start();
    let env = TestEnv::with_server(&server);
    env.write("a.txt", "a");

    let s = env.backup_ok("new-bucket::p", &[]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 1,
            uploaded: 1,
            ..Counts::default()
        }
    );
    assert_eq!(server.count("CreateBucket"), 1, "{:?}", server.ops());
    assert!(server.bucket_exists("new-bucket"));
    assert_eq!(server.object_bytes("new-bucket", "p/a.txt").unwrap(), b"a");
}

#[test]
fn denied_bucket_stops_before_uploading_anything() {
    let (server, env) = setup();
    standard_tree(&env);
    server.deny_bucket(BUCKET);

    let r = env.backup(TARGET, &["--json"]);
    r.expect_code(1);
    let err = r.error_line();
    assert!(err.contains(BUCKET), "error names the bucket: {err}");
    assert_no_writes(&server);
    assert!(server.list_keys(BUCKET).is_empty());

    // Nothing was recorded as uploaded: once allowed, everything goes up.
    server.allow_bucket(BUCKET);
    let s = env.backup_ok(TARGET, &[]);
    assert_eq!(s.uploaded, 4);
}

#[test]
fn wrong_secret_key_fails_and_uploads_nothing() {
    let (server, env) = setup();
    standard_tree(&env);

    let mut cmd = env.backup_cmd(TARGET, &["--json"]);
    cmd.env("AWS_SECRET_ACCESS_KEY", "definitely-wrong");
    let r = run(cmd);
    r.expect_code(1);
    r.error_line();
    let reqs = server.requests();
    assert!(!reqs.is_empty(), "the server was asked");
    assert!(
        reqs.iter().all(|q| q.status == 403),
        "every request was refused: {reqs:#?}"
    );
    assert!(server.list_keys(BUCKET).is_empty());

    let s = env.backup_ok(TARGET, &[]);
    assert_eq!(s.uploaded, 4, "nothing was recorded by the failed run");
}

#[test]
fn missing_source_is_an_error_naming_it() {
    let (server, env) = setup();
    let missing = env.root().join("no-such-dir");
    let mut cmd = env.cmd();
    cmd.arg("backup")
        .arg(&missing)
        .arg(TARGET)
        .args(["--state".as_ref(), env.state.as_os_str()])
        .args(["--endpoint-url", &server.endpoint()]);
    let r = run(cmd);
    r.expect_code(1);
    let err = r.error_line();
    assert!(
        err.contains(&*missing.to_string_lossy()),
        "error names the path: {err}"
    );
    assert_no_writes(&server);
}

#[test]
fn malformed_targets_are_usage_errors_listing_the_valid_forms() {
    let (server, env) = setup();
    env.write("a.txt", "a");
    for target in ["just-a-name", "s3://", "bucket:prefix", "ftp://x"] {
        let r = env.backup(target, &[]);
        r.expect_code(2);
        let err = r.error_line();
        assert!(err.contains(target), "error names the target {target:?}: {err}");
        assert!(
            r.stderr.contains("bucket::prefix"),
            "valid forms listed for {target:?}\n{}",
            r.show()
        );
    }
    assert!(server.requests().is_empty(), "{:?}", server.ops());
}

#[test]
fn unknown_flag_and_missing_target_are_usage_errors() {
    let (server, env) = setup();
    env.write("a.txt", "a");
    env.backup(TARGET, &["--no-such-flag"]).expect_code(2);
    let mut cmd = env.cmd();
    cmd.arg("backup").arg(&env.src);
    run(cmd).expect_code(2);
    env.backup(TARGET, &["--part-size", "lots"]).expect_code(2);
    assert!(server.requests().is_empty(), "{:?}", server.ops());
}

#[test]
fn part_size_below_five_mib_is_a_usage_error() {
    let (server, env) = setup();
    env.write("a.txt", "a");
    let r = env.backup(TARGET, &["--part-size", "1MiB"]);
    r.expect_code(2);
    assert!(r.error_line().to_lowercase().contains("part"), "{}", r.show());
    assert!(server.requests().is_empty(), "{:?}", server.ops());
}

#[test]
fn a_file_failing_permanently_exits_3_and_is_retried_next_run() {
    let (server, env) = setup();
    env.write("a.txt", "a");
    env.write("bad.txt", "bad");
    env.write("dir/c.txt", "c");
    server.fail_key("bad.txt", None, false);

    let r = env.backup(TARGET, &["--json"]);
    r.expect_code(3);
    let s = r.summary();
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 3,
            uploaded: 2,
            failed: 1,
            ..Counts::default()
        }
    );
    assert_eq!(s.failures.len(), 1, "{:?}", s.failures);
    let f = &s.failures[0];
    assert!(
        f.path == "bad.txt" || f.path.ends_with("/bad.txt"),
        "failure path {f:?}"
    );
    let e = f.error.to_lowercase();
    assert!(
        e.contains("denied") || e.contains("403") || e.contains("forbidden"),
        "failure error {f:?}"
    );
    assert_eq!(file_keys(&server, BUCKET, "pre"), ["a.txt", "dir/c.txt"]);
    // The manifest only claims what is really in the bucket.
    let m = manifest(
        &server,
        &s.snapshot.expect("files were uploaded, so a manifest is written"),
    );
    assert_eq!(m.paths(), ["a.txt", "dir/c.txt"]);

    server.clear_rules();
    server.clear_requests();
    let s = env.backup_ok(TARGET, &[]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 3,
            uploaded: 1,
            unchanged: 2,
            ..Counts::default()
        }
    );
    assert_eq!(server.count_key("PutObject", "pre/bad.txt"), 1);
    assert_eq!(server.count_key("PutObject", "pre/a.txt"), 0);
    assert_eq!(server.object_bytes(BUCKET, "pre/bad.txt").unwrap(), b"bad");
    let m = manifest(&server, &s.snapshot.expect("manifest"));
    assert_eq!(m.paths(), ["a.txt", "bad.txt", "dir/c.txt"]);
}

#[test]
fn transient_failures_are_retried_and_the_run_succeeds() {
    let (server, env) = setup();
    env.write("flaky.txt", "flaky");
    env.write("other.txt", "other");
    server.fail_key("flaky", Some(2), true);

    let s = env.backup_ok(TARGET, &["--jobs", "2"]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 2,
            uploaded: 2,
            ..Counts::default()
        }
    );
    assert!(s.failures.is_empty());
    assert_eq!(
        server.count_key("PutObject", "pre/flaky.txt"),
        3,
        "two 503s, then success"
    );
    assert_eq!(server.object_bytes(BUCKET, "pre/flaky.txt").unwrap(), b"flaky");
}

#[test]
fn top_level_dot_s3backup_is_never_uploaded() {
    let (server, env) = setup();
    env.write("a.txt", "a");
    env.write(".s3backup/state.db", "not for the bucket");
    env.write(".s3backup/manifests/19990101T000000Z-fake.jsonl.zst", "fake");
    env.write("dir/.s3backup/kept.txt", "only the top level is reserved");

    let s = env.backup_ok(TARGET, &[]);
    assert_eq!(s.uploaded, 2);
    assert_eq!(
        file_keys(&server, BUCKET, "pre"),
        ["a.txt", "dir/.s3backup/kept.txt"]
    );
    let manifests = manifest_keys(&server, BUCKET, "pre");
    assert_eq!(manifests, [s.snapshot.clone().unwrap()], "only the real manifest");
    assert_eq!(
        manifest(&server, &manifests[0]).paths(),
        ["a.txt", "dir/.s3backup/kept.txt"]
    );
    assert_eq!(server.count_key("PutObject", "pre/.s3backup/state.db"), 0);
}

#[test]
fn a_top_level_dot_s3backup_is_counted_and_named_not_skipped_silently() {
    let (_server, env) = setup();
    env.write("a.txt", "a");
    env.write(".s3backup/state.db", "not for the bucket");

    let r = env.backup(TARGET, &["--json"]);
    r.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("one JSON summary");
    assert_eq!(v["reserved"], 1, "{}", r.show());
    assert_eq!(
        (v["uploaded"].as_u64(), v["skipped"].as_u64()),
        (Some(1), Some(0))
    );
    let reserved = env.src.join(".s3backup");
    assert!(
        r.stderr.contains("/.s3backup: not backed up") && r.stderr.contains("reserved"),
        "a warning names the path: {}",
        r.show()
    );
    let r = env.backup(TARGET, &[]);
    r.expect_code(0);
    assert!(
        r.stdout.contains("skipped .s3backup (a reserved name)"),
        "the summary names it: {}",
        r.show()
    );

    // Without one, nothing is said.
    std::fs::remove_dir_all(&reserved).unwrap();
    let r = env.backup(TARGET, &["--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("one JSON summary");
    assert_eq!(v["reserved"], 0, "{}", r.show());
    assert!(!r.stderr.contains("reserved"), "{}", r.show());
}

#[test]
fn symlinks_are_kept_as_links_and_come_back_as_links() {
    let (server, env) = setup();
    env.write("a.txt", "a");
    env.write("dir/b.txt", "b");
    env.symlink("a.txt", "link-to-a");
    env.symlink("nowhere", "dangling");
    env.symlink("/etc", "abs");
    env.symlink("../a.txt", "dir/up");

    let s = env.backup_ok(TARGET, &[]);
    assert_eq!((s.uploaded, s.skipped, s.failed), (6, 0, 0), "{s:?}");
    // The object's body is the link's target; metadata says it is a link.
    assert_eq!(server.object_bytes(BUCKET, "pre/link-to-a").unwrap(), b"a.txt");
    assert_eq!(server.object_bytes(BUCKET, "pre/abs").unwrap(), b"/etc");
    let md = server.object_metadata(BUCKET, "pre/dangling").unwrap();
    assert_eq!(md.get("type").map(String::as_str), Some("symlink"), "{md:?}");
    assert_eq!(md.get("blake3"), Some(&blake3_hex(b"nowhere")));
    assert!(
        !server
            .object_metadata(BUCKET, "pre/a.txt")
            .unwrap()
            .contains_key("type")
    );

    let s = env.backup_ok(TARGET, &[]);
    assert_eq!((s.uploaded, s.counts().unchanged), (0, 6), "{s:?}");

    // A link pointed elsewhere is sent again; nothing else is.
    env.remove("link-to-a");
    env.symlink("dir/b.txt", "link-to-a");
    let s = env.backup_ok(TARGET, &[]);
    assert_eq!(s.uploaded, 1, "{s:?}");
    assert_eq!(
        server.object_bytes(BUCKET, "pre/link-to-a").unwrap(),
        b"dir/b.txt"
    );

    // Both ways of restoring bring the links back as links, with their
    // mtimes (a listing knows nothing of directories' own mtimes).
    let no_dirs = |t: std::collections::BTreeMap<String, Node>| -> Vec<(String, Node)> {
        t.into_iter()
            .filter(|(_, n)| !matches!(n.kind, Kind::Dir))
            .collect()
    };
    let dest = tempfile::tempdir().unwrap();
    env.restore_ok(TARGET, dest.path(), &[]);
    assert_eq!(tree(dest.path()), tree(&env.src));
    let again = env.restore_ok(TARGET, dest.path(), &[]);
    assert_eq!(
        again.downloaded, 0,
        "a second restore finds everything in place: {again:?}"
    );
    assert_eq!(tree(dest.path()), tree(&env.src));
    let dest = tempfile::tempdir().unwrap();
    env.restore_ok(TARGET, dest.path(), &["--from-listing"]);
    assert_eq!(no_dirs(tree(dest.path())), no_dirs(tree(&env.src)));
}

#[test]
fn follow_symlinks_backs_up_targets_and_reports_loops() {
    let (server, env) = setup();
    env.write("real/f.txt", "f");
    env.symlink("real", "via-link");
    env.symlink("..", "real/loop");
    env.symlink("nowhere", "dangling");

    let r = env.backup(TARGET, &["--follow-symlinks", "--json"]);
    r.expect_code(3);
    let s = r.summary();
    assert_eq!(
        file_keys(&server, BUCKET, "pre"),
        ["real/f.txt", "via-link/f.txt"]
    );
    assert_eq!(server.object_bytes(BUCKET, "pre/via-link/f.txt").unwrap(), b"f");
    let mut failed: Vec<_> = s.failures.iter().map(|f| f.path.as_str()).collect();
    failed.sort();
    assert_eq!(failed, ["dangling", "real/loop", "via-link/loop"], "{s:?}");
    assert!(
        s.failures.iter().any(|f| f.error.contains("symlink loop")),
        "{s:?}"
    );
}

#[test]
fn dry_run_of_a_first_backup_plans_uploads_and_writes_nothing() {
    let (server, env) = setup();
    standard_tree(&env);

    let r = env.backup(TARGET, &["--dry-run"]);
    r.expect_code(0);
    assert_eq!(
        r.plan_lines(),
        [
            "upload a.txt",
            "upload dir/b.txt",
            "upload dir/sub/c.bin",
            "upload empty.txt"
        ],
        "{}",
        r.show()
    );
    let r = env.backup(TARGET, &["--dry-run", "--json"]);
    r.expect_code(0);
    let (_, s) = r.trailing_summary();
    assert!(s.dry_run);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 4,
            uploaded: 4,
            ..Counts::default()
        }
    );
    assert_eq!(s.snapshot, None);
    assert_no_writes(&server);
    assert!(server.list_keys(BUCKET).is_empty());

    // The dry runs recorded nothing: the real run uploads everything.
    let s = env.backup_ok(TARGET, &[]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 4,
            uploaded: 4,
            ..Counts::default()
        }
    );
}

#[test]
fn dry_run_plans_every_kind_of_action_and_changes_nothing() {
    let (server, env) = setup();
    standard_tree(&env);
    env.backup_ok(TARGET, &[]);

    env.write_at("a.txt", "changed", (1_700_000_001, 0)); // upload
    env.set_mode("a.txt", 0o600);
    env.set_mtime("dir/b.txt", (1_700_000_002, 0)); // touch
    env.rename("dir/sub/c.bin", "moved/c.bin"); // copy (+ delete of the old path)
    env.remove("empty.txt"); // delete
    env.write("new.txt", "new file"); // upload
    let keys_before = server.list_keys(BUCKET);
    server.clear_requests();

    let r = env.backup(TARGET, &["--dry-run", "--delete"]);
    r.expect_code(0);
    let planned = [
        "copy dir/sub/c.bin -> moved/c.bin",
        "delete dir/sub/c.bin",
        "delete empty.txt",
        "touch dir/b.txt",
        "upload a.txt",
        "upload new.txt",
    ];
    assert_eq!(r.plan_lines(), planned, "{}", r.show());
    let r = env.backup(TARGET, &["--dry-run", "--delete", "--json"]);
    r.expect_code(0);
    let (_, dry) = r.trailing_summary();
    assert!(dry.dry_run);
    let expected = Counts {
        scanned: 4,
        uploaded: 2,
        copied: 1,
        touched: 1,
        deleted: 2,
        ..Counts::default()
    };
    assert_eq!(dry.counts(), expected);
    assert_no_writes(&server);
    assert_eq!(server.list_keys(BUCKET), keys_before);
    assert_eq!(server.object_bytes(BUCKET, "pre/a.txt").unwrap(), b"hello\n");

    // The real run does exactly what was planned.
    let s = env.backup_ok(TARGET, &["--delete"]);
    assert!(!s.dry_run);
    assert_eq!(s.counts(), expected);
    assert_eq!(
        file_keys(&server, BUCKET, "pre"),
        ["a.txt", "dir/b.txt", "moved/c.bin", "new.txt"]
    );
    assert_eq!(server.object_bytes(BUCKET, "pre/a.txt").unwrap(), b"changed");
    assert_object_metadata(
        &metadata(&server, "pre/dir/b.txt"),
        b"bee\n",
        (1_700_000_002, 0),
        0o644,
    );
}

#[test]
fn dry_run_against_a_missing_bucket_creates_nothing() {
    let server = S3Server::start();
    let env = TestEnv::with_server(&server);
    env.write("a.txt", "a");

    let r = env.backup("later::p", &["--dry-run"]);
    r.expect_code(0);
    assert_eq!(r.plan_lines(), ["upload a.txt"], "{}", r.show());
    assert_no_writes(&server);
    assert!(!server.bucket_exists("later"));
}

#[test]
fn every_target_form_puts_keys_under_the_right_prefix() {
    let server = S3Server::start();
    let env = TestEnv::with_server(&server);
    env.write("a.txt", "a");
    env.write("d/b.txt", "b");
    for (bucket, target, prefix) in [
        ("bkt1", "s3://bkt1/deep/er", "deep/er"),
        ("bkt2", "bkt2::", ""),
        ("bkt3", "s3://bkt3", ""),
        ("bkt4", "bkt4::one/two", "one/two"),
    ] {
        server.create_bucket(bucket);
        let s = env.backup_ok(target, &[]);
        assert_eq!(s.uploaded, 2, "{target}");
        assert_eq!(
            file_keys(&server, bucket, prefix),
            ["a.txt", "d/b.txt"],
            "{target}"
        );
        let all = server.list_keys(bucket);
        assert_eq!(all.len(), 3, "two files and a manifest for {target}: {all:?}");
        let m = manifest_keys(&server, bucket, prefix);
        assert_eq!(m.len(), 1, "{target}: {all:?}");
        assert_eq!(s.snapshot.as_deref(), Some(m[0].as_str()), "{target}");
    }
    assert_eq!(server.object_bytes("bkt2", "a.txt").unwrap(), b"a");
    assert_eq!(server.object_bytes("bkt1", "deep/er/d/b.txt").unwrap(), b"b");
}

#[test]
fn endpoint_can_come_from_aws_endpoint_url() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::new(); // no --endpoint-url
    env.write("a.txt", "a");
    let mut cmd = env.backup_cmd(TARGET, &["--json"]);
    cmd.env("AWS_ENDPOINT_URL", server.endpoint());
    let r = run(cmd);
    r.expect_code(0);
    assert_eq!(r.summary().uploaded, 1);
    assert_eq!(server.object_bytes(BUCKET, "pre/a.txt").unwrap(), b"a");
}

/// A credentials file in `env`'s home with the test server's keys under
/// the profile `backup`; returns its path.
fn backup_profile_credentials(env: &TestEnv) -> std::path::PathBuf {
    let creds = env.home.join("credentials");
    std::fs::write(
        &creds,
        format!(
            "[backup]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            S3Server::ACCESS_KEY,
            S3Server::SECRET_KEY
        ),
    )
    .unwrap();
    creds
}

/// The same `bucket::prefix` on another endpoint (a migration, an
/// off-site copy on a second provider) or under another profile is a set
/// of its own: the second store receives everything, and the first set
/// stays incremental.
#[test]
fn the_same_bucket_prefix_on_another_endpoint_or_profile_is_another_set() {
    let (first, env) = setup();
    env.write("a.txt", "a");
    env.write("d/b.txt", "bee");
    assert_eq!(env.backup_ok(TARGET, &[]).uploaded, 2);

    let second = S3Server::start();
    second.create_bucket(BUCKET);
    let r = run({
        let mut c = env.cmd();
        c.arg("backup")
            .arg(&env.src)
            .arg(TARGET)
            .arg("--state")
            .arg(&env.state);
        c.args(["--json", "--endpoint-url", &second.endpoint()]);
        c
    });
    r.expect_code(0);
    assert_eq!(r.summary().uploaded, 2, "{}", r.show());
    assert_eq!(second.object_bytes(BUCKET, "pre/d/b.txt").unwrap(), b"bee");

    // Back on the first endpoint: still incremental, nothing sent.
    first.clear_requests();
    let s = env.backup_ok(TARGET, &[]);
    assert_eq!((s.uploaded, s.unchanged), (0, 2), "{s:?}");
    assert_one_manifest_check(&first);

    // Another profile on the same endpoint is another account: another set.
    let creds = backup_profile_credentials(&env);
    let mut cmd = env.backup_cmd(TARGET, &["--json", "--profile", "backup"]);
    cmd.env("AWS_SHARED_CREDENTIALS_FILE", &creds);
    let r = run(cmd);
    r.expect_code(0);
    assert_eq!(
        r.summary().uploaded,
        0,
        "rebuilt from the bucket's snapshot, nothing re-sent: {}",
        r.show()
    );
    let sets = run({
        let mut c = env.cmd();
        c.args(["state", "sets", "--json", "--state"]).arg(&env.state);
        c
    });
    sets.expect_code(0);
    assert_eq!(sets.stdout.matches("\"id\"").count(), 3, "{}", sets.show());
}

/// A target that no longer holds the set's latest snapshot (emptied,
/// recreated, or another account's bucket of the same name) is not
/// trusted: the state is rebuilt from what it holds, so every file goes up.
#[test]
fn a_target_without_the_sets_latest_snapshot_gets_everything_again() {
    let (server, env) = setup();
    env.write("a.txt", "a");
    env.write("d/b.txt", "bee");
    env.backup_ok(TARGET, &[]);
    // The bucket is emptied behind the tool's back.
    for key in server.list_keys(BUCKET) {
        std::fs::remove_file(server.object_path(BUCKET, &key)).unwrap();
    }
    let s = env.backup_ok(TARGET, &[]);
    assert_eq!((s.uploaded, s.unchanged), (2, 0), "{s:?}");
    assert_eq!(server.object_bytes(BUCKET, "pre/a.txt").unwrap(), b"a");
    // A dry run on an emptied target plans every upload and changes nothing.
    for key in server.list_keys(BUCKET) {
        std::fs::remove_file(server.object_path(BUCKET, &key)).unwrap();
    }
    let s = env.backup_ok(TARGET, &["--dry-run"]);
    assert_eq!(s.uploaded, 2, "{s:?}");
    assert!(server.list_keys(BUCKET).is_empty());
}

#[test]
fn credentials_can_come_from_a_named_profile() {
    let (server, env) = setup();
    env.write("a.txt", "a");
    let creds = backup_profile_credentials(&env);

    let mut cmd = env.backup_cmd(
        TARGET,
        &["--json", "--profile", "backup", "--region", "us-east-1"],
    );
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_SHARED_CREDENTIALS_FILE", &creds);
    let r = run(cmd);
    r.expect_code(0);
    assert_eq!(r.summary().uploaded, 1);
    assert_eq!(server.object_bytes(BUCKET, "pre/a.txt").unwrap(), b"a");
}

/// `--profile` wins over keys in the environment, as with the AWS CLI: the
/// environment's keys here are ones the server refuses.
#[test]
fn a_named_profile_wins_over_keys_in_the_environment() {
    let (server, env) = setup();
    env.write("a.txt", "a");
    let creds = backup_profile_credentials(&env);
    let wrong_keys = [
        ("AWS_ACCESS_KEY_ID", "AKIDNOTTHEPROFILES"),
        ("AWS_SECRET_ACCESS_KEY", "not-the-profiles-secret"),
    ];
    let mut cmd = env.backup_cmd(TARGET, &["--json", "--profile", "backup"]);
    cmd.envs(wrong_keys).env("AWS_SHARED_CREDENTIALS_FILE", &creds);
    let r = run(cmd);
    r.expect_code(0);
    assert_eq!(r.summary().uploaded, 1);
    assert_eq!(server.object_bytes(BUCKET, "pre/a.txt").unwrap(), b"a");

    // Without --profile the environment's keys are used, and refused.
    let mut cmd = env.backup_cmd(TARGET, &["--json"]);
    cmd.envs(wrong_keys).env("AWS_SHARED_CREDENTIALS_FILE", &creds);
    env.write("b.txt", "b");
    let r = run(cmd);
    assert_ne!(r.code, Some(0), "{}", r.show());
    assert!(server.object_bytes(BUCKET, "pre/b.txt").is_none());
}

#[test]
fn state_defaults_to_the_xdg_state_directory() {
    let (server, env) = setup();
    env.write("a.txt", "a");
    let backup = || {
        let mut cmd = env.cmd();
        cmd.arg("backup")
            .arg(&env.src)
            .arg(TARGET)
            .args(["--endpoint-url", &server.endpoint(), "--json"]);
        let r = run(cmd);
        r.expect_code(0);
        r.summary()
    };
    assert_eq!(backup().uploaded, 1);
    let db = env.home.join(".local/state/s3backup/state.db");
    assert!(db.is_file(), "state database at {}", db.display());
    assert!(!env.state.exists());
    let s = backup();
    assert_eq!((s.uploaded, s.unchanged), (0, 1), "the default state was reused");
}

#[test]
fn each_target_is_its_own_backup_set() {
    let (server, env) = setup();
    standard_tree(&env);
    assert_eq!(env.backup_ok("bkt::one", &["--jobs", "1"]).uploaded, 4);
    assert_eq!(env.backup_ok("bkt::two", &[]).uploaded, 4);
    assert_eq!(
        file_keys(&server, BUCKET, "two"),
        ["a.txt", "dir/b.txt", "dir/sub/c.bin", "empty.txt"]
    );
    let s = env.backup_ok("s3://bkt/one", &[]);
    assert_eq!(
        (s.uploaded, s.unchanged),
        (0, 4),
        "s3://bkt/one is the same set as bkt::one"
    );
}

#[test]
fn human_summary_goes_to_stdout() {
    let (server, env) = setup();
    env.write("a.txt", "a");
    let r = env.backup(TARGET, &[]);
    r.expect_code(0);
    assert!(r.stdout.to_lowercase().contains("uploaded"), "{}", r.show());
    assert!(
        serde_json::from_str::<serde_json::Value>(&r.stdout).is_err(),
        "not JSON without --json"
    );
    assert_eq!(server.object_bytes(BUCKET, "pre/a.txt").unwrap(), b"a");
}

#[test]
fn an_object_gone_from_the_bucket_is_sent_again_when_its_file_is_touched() {
    // The state says the object exists; someone emptied the bucket since.
    let (server, env) = setup();
    env.write("a.txt", "alpha");
    env.backup_ok(TARGET, &[]);
    std::fs::remove_file(server.object_path(BUCKET, "pre/a.txt")).unwrap();
    env.set_mtime("a.txt", (T0.0 + 60, 0));

    let s = env.backup_ok(TARGET, &[]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 1,
            uploaded: 1,
            ..Counts::default()
        }
    );
    assert_eq!(server.object_bytes(BUCKET, "pre/a.txt").unwrap(), b"alpha");
    // And the run after that has nothing to do.
    let s = env.backup_ok(TARGET, &[]);
    assert_eq!(s.counts().unchanged, 1);
}

#[test]
fn storage_class_encryption_and_acl_go_with_every_file_write_but_manifests_stay_standard() {
    let (server, env) = setup();
    env.write("small.txt", "small");
    env.write("big.bin", noise(11 * MIB, 3));
    let opts = [
        // The test server accepts only STANDARD; what matters is that it is sent.
        "--storage-class",
        "STANDARD",
        "--sse",
        "aws:kms",
        "--sse-kms-key-id",
        "alias/backups",
        "--acl",
        "bucket-owner-full-control",
        "--multipart-threshold",
        "5MiB",
        "--part-size",
        "5MiB",
    ];
    env.backup_ok(TARGET, &opts);
    // A touch is a copy onto itself: without the options it would fall back to STANDARD.
    env.set_mtime("small.txt", (1_700_000_500, 0));
    let s = env.backup_ok(TARGET, &opts);
    assert_eq!(s.touched, 1, "{s:?}");

    let want = |class: bool| {
        let mut h = vec![
            ("x-amz-acl".to_string(), "bucket-owner-full-control".to_string()),
            ("x-amz-server-side-encryption".to_string(), "aws:kms".to_string()),
            (
                "x-amz-server-side-encryption-aws-kms-key-id".to_string(),
                "alias/backups".to_string(),
            ),
        ];
        if class {
            h.push(("x-amz-storage-class".to_string(), "STANDARD".to_string()));
        }
        h.sort();
        h
    };
    let mut writes = 0;
    for r in server.requests() {
        if !["PutObject", "CreateMultipartUpload", "CopyObject"].contains(&r.op.as_str()) {
            continue;
        }
        writes += 1;
        let key = r.key.clone().unwrap_or_default();
        let mut got = r.write_headers.clone();
        got.sort();
        assert_eq!(got, want(!key.contains("/.s3backup/")), "{} {key}", r.op);
    }
    assert_eq!(writes, 5, "2 files, 1 touch, 2 manifests: {:?}", server.ops());

    // --sse-kms-key-id without --sse aws:kms is refused before anything is sent.
    let r = env.backup(TARGET, &["--sse", "AES256", "--sse-kms-key-id", "k"]);
    // A flag combination that cannot be run: a usage error.
    r.expect_code(2);
    assert!(
        r.stderr.contains("--sse-kms-key-id needs --sse aws:kms"),
        "{}",
        r.show()
    );
}

#[test]
fn max_bandwidth_holds_uploads_to_the_rate() {
    let (server, env) = setup();
    for i in 0..5 {
        env.write(&format!("f{i}"), noise(200 * 1024, i));
    }
    let started = std::time::Instant::now();
    let s = env.backup_ok(TARGET, &["--max-bandwidth", "1MiB"]);
    let took = started.elapsed();
    assert_eq!(s.uploaded, 5);
    // 1000 KiB at 1 MiB/s, every byte paced as it is sent: no run can
    // finish sooner than this.
    assert!(took >= std::time::Duration::from_millis(750), "took {took:?}");
    assert_eq!(server.count("PutObject"), 6, "5 files and the manifest");
    let r = env.backup(TARGET, &["--max-bandwidth", "0"]);
    r.expect_code(2);
    assert!(r.stderr.contains("--max-bandwidth"), "{}", r.show());
}

#[test]
fn restoring_an_object_in_an_archive_class_says_to_restore_it_in_s3_first() {
    let (server, env) = setup();
    env.write("a.txt", "a").write("cold.bin", "frozen");
    env.backup_ok(TARGET, &["--storage-class", "STANDARD"]);
    server.archive_key("pre/cold.bin");
    let dest = env.root().join("dest");
    let r = env.restore(TARGET, &dest, &[]);
    r.expect_code(3);
    assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"a");
    let line = r
        .stderr
        .lines()
        .find(|l| l.starts_with("error: cold.bin: "))
        .unwrap_or_else(|| panic!("no line for cold.bin\n{}", r.show()));
    assert!(
        line.contains("archive storage class") && line.contains("request a restore"),
        "{line}"
    );
}
