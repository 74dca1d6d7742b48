//! `backup --checksum-algorithm` and `verify --checksums` (issue 17):
//! the additional checksum is sent as a precomputed header with every
//! upload (never as aws-chunked trailers), checked and kept by the store
//! (s3s-fs validates `x-amz-checksum-*` on PutObject and keeps the value;
//! it ignores them on UploadPart and CompleteMultipartUpload, so there the
//! request log shows what was sent), recorded in the manifest and the
//! state only as the store names it, and compared by a HEAD in checksum
//! mode without downloading anything.

use std::process::Stdio;
use std::time::Duration;

use s3backup::fs::checksum::{Algorithm, Sum};

use crate::common::*;
use crate::proxy::{Fault, FaultProxy};
use crate::server::{Request, S3Server};

const BUCKET: &str = "bkt";
const TARGET: &str = "bkt::pre";
const MULTIPART: [&str; 4] = ["--multipart-threshold", "5MiB", "--part-size", "5MiB"];

fn setup() -> (S3Server, TestEnv) {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    (server, env)
}

/// The header value `name` of the request, if sent.
fn header<'a>(r: &'a Request, name: &str) -> Option<&'a str> {
    r.checksum_values
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The requests of operation `op` on `key`.
fn requests(server: &S3Server, op: &str, key: &str) -> Vec<Request> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.op == op && r.key.as_deref() == Some(key))
        .collect()
}

/// The key of the manifest of `snapshot` (its run ID ends the name).
fn manifest_key(server: &S3Server, snapshot: &str) -> String {
    server
        .list_keys(BUCKET)
        .into_iter()
        .find(|k| k.starts_with("pre/.s3backup/manifests/") && k.contains(snapshot))
        .unwrap_or_else(|| panic!("no manifest of {snapshot}: {:?}", server.list_keys(BUCKET)))
}

/// The file entries of a snapshot's manifest, by path.
fn entries(server: &S3Server, snapshot: &str) -> std::collections::HashMap<String, serde_json::Value> {
    let key = manifest_key(server, snapshot);
    let m = Manifest::decode(&server.object_bytes(BUCKET, &key).expect("manifest"));
    m.files
        .into_iter()
        .map(|e| (e["path"].as_str().unwrap().to_owned(), e))
        .collect()
}

/// `verify TARGET --json EXTRA…` with the environment's state and endpoint.
fn verify(env: &TestEnv, extra: &[&str]) -> Run {
    let mut cmd = env.cmd();
    cmd.arg("--state")
        .arg(&env.state)
        .args(["verify", TARGET, "--json"]);
    if let Some(e) = &env.endpoint {
        cmd.arg("--endpoint-url").arg(e);
    }
    cmd.args(extra);
    run(cmd)
}

/// Each algorithm's value of "Hello world" (the S3 User Guide's example)
/// goes out as the header, s3s-fs checks and keeps it, and the manifest
/// records it as the store named it; no aws-chunked body, no trailer; an
/// unchanged re-run still sends one request.
#[test]
fn each_upload_sends_the_checksum_the_store_checks_and_keeps() {
    for (algorithm, value) in [
        ("crc64nvme", "OOJZ0D8xKts="),
        ("crc32c", "crUfeA=="),
        ("sha256", "ZOyIygCyaOW6GjVnihtTFtIS9PNmskdyMlNKiuyjfzw="),
    ] {
        let (server, env) = setup();
        env.write("hello.txt", "Hello world");
        env.symlink("hello.txt", "link");
        let s = env.backup_ok(TARGET, &["--checksum-algorithm", algorithm]);
        let header_name = format!("x-amz-checksum-{algorithm}");
        let put = &requests(&server, "PutObject", "pre/hello.txt")[0];
        assert_eq!(header(put, &header_name), Some(value), "{put:?}");
        assert_eq!(
            header(put, "x-amz-sdk-checksum-algorithm").map(str::to_ascii_lowercase),
            Some(algorithm.to_owned())
        );
        assert!(
            !put.checksum_headers
                .iter()
                .any(|h| h == "x-amz-trailer" || h == "content-encoding"),
            "{put:?}"
        );
        assert_eq!(server.stored_checksums(BUCKET, "pre/hello.txt")[algorithm], value);
        // The symlink's object (its target) and the manifest carry one too.
        let link = Sum::of(Algorithm::parse(algorithm).unwrap(), b"hello.txt").base64();
        assert_eq!(server.stored_checksums(BUCKET, "pre/link")[algorithm], link);
        let snapshot = s.snapshot.expect("manifest");
        let manifest = manifest_key(&server, &snapshot);
        assert!(server.stored_checksums(BUCKET, &manifest).contains_key(algorithm));
        let e = entries(&server, &snapshot);
        assert_eq!(
            e["hello.txt"]["checksum"],
            serde_json::json!({"algorithm": algorithm, "value": value})
        );

        server.clear_requests();
        env.backup_ok(TARGET, &["--checksum-algorithm", algorithm]);
        assert_eq!(server.ops(), ["ListObjectsV2"], "an unchanged re-run");
    }
}

/// A body damaged on the way (the fault proxy flips a byte) is refused and
/// nothing recorded; the next run stores the checksum of the real bytes.
#[test]
fn a_body_damaged_on_the_way_is_refused_and_sent_again() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let proxy = FaultProxy::start(&server, 71);
    let env = TestEnv::with_endpoint(&proxy.endpoint());
    env.write("a.txt", "Hello world");
    proxy.set_filter(|parts| parts.method == hyper::Method::PUT && parts.uri.path().ends_with("/a.txt"));
    proxy.set_faults(1.0, &[Fault::Corrupt]);
    let r = env.backup(TARGET, &["--json", "--checksum-algorithm", "crc64nvme"]);
    r.expect_code(3);
    assert_eq!(r.summary().failed, 1, "{}", r.show());
    assert!(proxy.stats().corrupted >= 1, "{:?}", proxy.stats());

    proxy.clear_faults();
    let s = env.backup_ok(TARGET, &["--checksum-algorithm", "crc64nvme"]);
    assert_eq!(s.uploaded, 1, "{s:?}");
    assert_eq!(
        server.stored_checksums(BUCKET, "pre/a.txt")["crc64nvme"],
        "OOJZ0D8xKts="
    );
}

/// Multipart: CRC64NVME as a full-object checksum (the upload names it,
/// every part carries its own, the completion the whole file's), SHA-256
/// as a composite one (no whole-file value); s3s-fs keeps neither, and
/// nothing is recorded that the store did not name.
#[test]
fn multipart_uploads_send_full_object_and_composite_checksums() {
    for (algorithm, kind) in [
        ("crc64nvme", "FULL_OBJECT"),
        ("sha256", "COMPOSITE"),
        ("crc32c", "FULL_OBJECT"),
    ] {
        let (server, env) = setup();
        let big = noise(11 << 20, 5);
        env.write("big.bin", &big);
        let a = Algorithm::parse(algorithm).unwrap();
        let s = env.backup_ok(
            TARGET,
            &[&MULTIPART[..], &["--checksum-algorithm", algorithm]].concat(),
        );
        let name = format!("x-amz-checksum-{algorithm}");
        let create = &requests(&server, "CreateMultipartUpload", "pre/big.bin")[0];
        assert_eq!(
            header(create, "x-amz-checksum-algorithm").map(str::to_ascii_lowercase),
            Some(algorithm.to_owned()),
            "{create:?}"
        );
        assert_eq!(header(create, "x-amz-checksum-type"), Some(kind), "{create:?}");
        let mut parts: Vec<(String, String)> = requests(&server, "UploadPart", "pre/big.bin")
            .iter()
            .map(|r| {
                let n = r
                    .query
                    .split('&')
                    .find_map(|q| q.strip_prefix("partNumber="))
                    .unwrap();
                (n.to_owned(), header(r, &name).expect("part checksum").to_owned())
            })
            .collect();
        parts.sort();
        let expected: Vec<(String, String)> = big
            .chunks(5 << 20)
            .enumerate()
            .map(|(i, c)| ((i + 1).to_string(), Sum::of(a, c).base64()))
            .collect();
        assert_eq!(parts, expected);
        let complete = &requests(&server, "CompleteMultipartUpload", "pre/big.bin")[0];
        // The type rides with a whole-object value only (Garage refuses it alone).
        assert_eq!(
            header(complete, "x-amz-checksum-type"),
            (kind == "FULL_OBJECT").then_some(kind),
            "{complete:?}"
        );
        let whole = (kind == "FULL_OBJECT").then(|| Sum::of(a, &big).base64());
        assert_eq!(header(complete, &name).map(str::to_owned), whole, "{complete:?}");
        assert_eq!(server.object_bytes(BUCKET, "pre/big.bin").unwrap(), big);
        let e = entries(&server, &s.snapshot.unwrap());
        assert!(e["big.bin"].get("checksum").is_none(), "{}", e["big.bin"]);
    }
}

/// Kills a backup once it has sent the second part of big.bin.
fn killed_during_second_part(server: &S3Server, env: &TestEnv, extra: &[&str]) {
    let mut cmd = env.backup_cmd(TARGET, &[&["--jobs", "1"][..], &MULTIPART[..], extra].concat());
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    server.clear_requests();
    let mut child = cmd.spawn().unwrap();
    let reached = server.wait_for_matching(2, Duration::from_secs(60), |r| {
        r.op == "UploadPart" && r.key.as_deref() == Some("pre/big.bin")
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(reached, "never reached the second part: {:?}", server.ops());
}

/// An interrupted upload resumes with the same checksum (the parts not yet
/// sent carry theirs, the completion the whole file's); one begun with
/// another algorithm is aborted and begun again, never resumed.
#[test]
fn a_resumed_upload_keeps_its_checksum_and_another_algorithm_starts_over() {
    let (server, env) = setup();
    let big = noise(16 << 20, 8);
    env.write("big.bin", &big);
    let crc = ["--checksum-algorithm", "crc64nvme"];
    killed_during_second_part(&server, &env, &crc);

    server.clear_requests();
    env.backup_ok(TARGET, &[&MULTIPART[..], &crc].concat());
    assert_eq!(server.count("CreateMultipartUpload"), 0, "{:?}", server.ops());
    for part in requests(&server, "UploadPart", "pre/big.bin") {
        assert!(header(&part, "x-amz-checksum-crc64nvme").is_some(), "{part:?}");
    }
    let complete = &requests(&server, "CompleteMultipartUpload", "pre/big.bin")[0];
    let whole = Sum::of(Algorithm::Crc64nvme, &big).base64();
    assert_eq!(header(complete, "x-amz-checksum-crc64nvme"), Some(whole.as_str()));
    assert_eq!(server.object_bytes(BUCKET, "pre/big.bin").unwrap(), big);

    let other = noise(16 << 20, 9);
    env.write("big.bin", &other);
    killed_during_second_part(&server, &env, &crc);
    server.clear_requests();
    env.backup_ok(
        TARGET,
        &[&MULTIPART[..], &["--checksum-algorithm", "sha256"]].concat(),
    );
    assert_eq!(server.count("AbortMultipartUpload"), 1, "{:?}", server.ops());
    assert_eq!(server.count("CreateMultipartUpload"), 1, "{:?}", server.ops());
    let create = &requests(&server, "CreateMultipartUpload", "pre/big.bin")[0];
    assert_eq!(header(create, "x-amz-checksum-algorithm"), Some("SHA256"));
    assert_eq!(server.object_bytes(BUCKET, "pre/big.bin").unwrap(), other);
}

/// A rename is a server-side copy that names the algorithm; s3s-fs's copy
/// answer names no checksum, so none is recorded for the new path (never
/// one the object may not have), and `verify --checksums` says it is not
/// checked rather than intact (a.txt stays, without --delete).
#[test]
fn a_copy_records_only_a_checksum_the_store_names() {
    let (server, env) = setup();
    env.write("a.txt", "Hello world");
    let crc = ["--checksum-algorithm", "crc64nvme"];
    env.backup_ok(TARGET, &crc);
    env.rename("a.txt", "b.txt");
    server.clear_requests();
    let s = env.backup_ok(TARGET, &crc);
    assert_eq!(s.copied, 1, "{s:?}");
    let copy = &requests(&server, "CopyObject", "pre/b.txt")[0];
    assert_eq!(
        header(copy, "x-amz-checksum-algorithm"),
        Some("CRC64NVME"),
        "{copy:?}"
    );
    let e = entries(&server, &s.snapshot.unwrap());
    assert!(e["b.txt"].get("checksum").is_none(), "{}", e["b.txt"]);
    let r = verify(&env, &["--checksums"]);
    r.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (v["ok"].as_u64(), v["not_checked"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    assert_eq!(v["not_checked_files"][0]["kind"], "not-checked", "{v}");
}

/// `verify --checksums` finds an object whose stored bytes changed behind
/// the tool's back (same size and ETag, so the listing cannot tell) by the
/// checksum the store now keeps, with one HEAD per file that has a
/// recorded checksum and no GET; a file backed up without one is counted
/// as not checked, never as intact.
#[test]
fn verify_checksums_finds_changed_bytes_without_a_download() {
    let (server, env) = setup();
    env.write("old.txt", "backed up without a checksum");
    env.backup_ok(TARGET, &[]);
    env.write("a.txt", "Hello world");
    env.write("b.txt", "Hello there");
    env.backup_ok(TARGET, &["--checksum-algorithm", "crc64nvme"]);
    verify(&env, &["--checksums"]).expect_code(0);

    let changed = b"Hello therE";
    let sum = Sum::of(Algorithm::Crc64nvme, changed).base64();
    server.change_stored_bytes(BUCKET, "pre/b.txt", changed, ("crc64nvme", &sum));
    verify(&env, &[]).expect_code(0);
    server.clear_requests();
    let r = verify(&env, &["--checksums"]);
    r.expect_code(1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (
            v["files"].as_u64(),
            v["ok"].as_u64(),
            v["mismatched"].as_u64(),
            v["not_checked"].as_u64()
        ),
        (Some(3), Some(1), Some(1), Some(1)),
        "{v}"
    );
    assert_eq!(v["checksums"], true);
    assert_eq!(v["problems"][0]["path"], "b.txt", "{v}");
    assert_eq!(v["not_checked_files"][0]["path"], "old.txt", "{v}");
    let gets: Vec<Request> = server
        .requests()
        .into_iter()
        .filter(|r| r.op == "GetObject" && !r.key.as_deref().unwrap_or_default().contains("/.s3backup/"))
        .collect();
    assert!(gets.is_empty(), "only the manifest is read: {:?}", server.ops());
    assert_eq!(server.count("HeadObject"), 2, "{:?}", server.ops());

    let mut cmd = env.cmd();
    cmd.arg("--state")
        .arg(&env.state)
        .args(["verify", TARGET, "--checksums"]);
    cmd.arg("--endpoint-url").arg(env.endpoint.as_deref().unwrap());
    let text = run(cmd);
    text.expect_code(1);
    assert!(text.stdout.contains("1 not checked"), "{}", text.show());
    assert!(text.stdout.contains("mismatch b.txt"), "{}", text.show());
}

/// A local store keeps no checksums: `verify --checksums` says so (exit 2),
/// and `--checksums` with `--deep` is refused too.
#[test]
fn verify_checksums_is_refused_where_it_cannot_work() {
    let env = TestEnv::new();
    env.write("a.txt", "a");
    let store = env.root().join("store");
    let store = store.to_str().unwrap();
    env.backup_ok(store, &["--checksum-algorithm", "crc64nvme"]);
    let mut cmd = env.cmd();
    cmd.arg("--state")
        .arg(&env.state)
        .args(["verify", store, "--checksums"]);
    let r = run(cmd);
    r.expect_code(2);
    assert!(
        r.stderr.contains("--checksums needs an S3 target"),
        "{}",
        r.show()
    );
    let mut cmd = env.cmd();
    cmd.args(["verify", "bkt::p", "--checksums", "--deep"]);
    run(cmd).expect_code(2);
}

/// Saved with a named set, used by each run by name, dropped by
/// `--no-checksum-algorithm`.
#[test]
fn the_algorithm_is_saved_with_a_set_and_dropped() {
    let (server, env) = setup();
    env.write("a.txt", "a");
    env.backup_ok(TARGET, &["--set", "n", "--checksum-algorithm", "sha256"]);
    let by_name = |extra: &[&str]| {
        let mut cmd = env.cmd();
        cmd.arg("--state")
            .arg(&env.state)
            .args(["backup", "--set", "n", "--json"]);
        cmd.arg("--endpoint-url").arg(env.endpoint.as_deref().unwrap());
        cmd.args(extra);
        run(cmd).expect_code(0);
    };
    env.write("b.txt", "b");
    by_name(&[]);
    let put = &requests(&server, "PutObject", "pre/b.txt")[0];
    assert!(header(put, "x-amz-checksum-sha256").is_some(), "{put:?}");
    env.write("c.txt", "c");
    by_name(&["--no-checksum-algorithm"]);
    let put = &requests(&server, "PutObject", "pre/c.txt")[0];
    assert!(put.checksum_values.is_empty(), "{put:?}");
}

/// On moto, which returns a kept checksum only to a HEAD in checksum mode
/// (s3s-fs returns it always): the value sent is kept and `verify
/// --checksums` asks for it that way, so every file compares as intact.
#[test]
fn moto_keeps_the_checksum_sent_and_verify_asks_for_it_in_checksum_mode() {
    let Some(moto) =
        crate::versioned::Moto::start("moto_keeps_the_checksum_sent_and_verify_asks_for_it_in_checksum_mode")
    else {
        return;
    };
    let client = moto.bucket(BUCKET, false);
    let env = TestEnv::with_endpoint(&moto.endpoint());
    env.write("a.txt", "Hello world");
    env.write("b.txt", "Hello there");
    env.backup_ok(TARGET, &["--checksum-algorithm", "crc64nvme"]);
    let head = block_on(
        client
            .head_object()
            .bucket(BUCKET)
            .key("pre/a.txt")
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send(),
    )
    .expect("HeadObject");
    assert_eq!(head.checksum_crc64_nvme(), Some("OOJZ0D8xKts="));
    let r = verify(&env, &["--checksums"]);
    r.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (v["ok"].as_u64(), v["not_checked"].as_u64()),
        (Some(2), Some(0)),
        "{v}"
    );
}
