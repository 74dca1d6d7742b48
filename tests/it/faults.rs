//! Backups and restores through a fault-injecting proxy ([`FaultProxy`]):
//! at a 10 % share of failed requests (500 InternalError, 503 SlowDown,
//! connection resets, truncated bodies, lost and slow responses) a run
//! completes by retrying and loses nothing; when every request fails it
//! stops with one clear error line and a non-zero exit, records nothing as
//! done and leaves no partial file in DEST; and `--read-timeout` decides
//! whether a slow server is waited for or given up on. `verify --deep`
//! retries as a restore does: through faults it finds an intact snapshot
//! intact and a damaged object mismatched, and a file it cannot read is
//! reported as unreadable (exit 3), never as damage.
//!
//! Everything goes through the real binary and the in-process S3 server;
//! each proxy is seeded, so the n-th request always gets the same fate.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::http::request::Parts;

use crate::common::*;
use crate::proxy::{Fault, FaultProxy, Stats};
use crate::server::S3Server;

const BUCKET: &str = "bkt";
const TARGET: &str = "bkt::pre";
/// Short timeouts, far above the proxy's 200 ms slow responses: a run
/// that needs them never waits long.
const TIMEOUTS: [&str; 4] = ["--connect-timeout", "2", "--read-timeout", "5"];
/// Multipart from 5 MiB on, in 5 MiB parts (the smallest S3 allows), so an
/// 11 MiB file goes in three parts.
const MULTIPART: [&str; 4] = ["--multipart-threshold", "5MiB", "--part-size", "5MiB"];

/// A server with bucket `bkt`, a proxy in front of it, and a test
/// environment whose `--endpoint-url` is the proxy.
struct Fx {
    server: S3Server,
    proxy: FaultProxy,
    env: TestEnv,
}

impl Fx {
    fn new(seed: u64) -> Fx {
        let server = S3Server::start();
        server.create_bucket(BUCKET);
        let proxy = FaultProxy::start(&server, seed);
        let env = TestEnv::with_endpoint(&proxy.endpoint());
        Fx { server, proxy, env }
    }

    /// Writes `n` small files (a few bytes to a few hundred, all
    /// different) in ten directories; returns them by relative path.
    fn small_files(&self, n: usize) -> BTreeMap<String, Vec<u8>> {
        (0..n)
            .map(|i| {
                let rel = format!("d{}/f{i:04}.txt", i % 10);
                let content = noise(1 + (i * 37) % 400, i as u64 + 1);
                self.env.write(&rel, &content);
                (rel, content)
            })
            .collect()
    }

    /// Checks that every file is in the bucket byte for byte, and that the
    /// bucket holds nothing else outside the tool's `.s3backup/` area.
    #[track_caller]
    fn assert_bucket_holds(&self, files: &BTreeMap<String, Vec<u8>>) {
        for (rel, content) in files {
            let key = format!("pre/{rel}");
            let stored = self
                .server
                .object_bytes(BUCKET, &key)
                .unwrap_or_else(|| panic!("{key} is missing from the bucket"));
            assert!(
                stored == *content,
                "{key}: {} bytes stored differ from the {} of the source",
                stored.len(),
                content.len()
            );
        }
        let keys: Vec<String> = self
            .server
            .list_keys(BUCKET)
            .into_iter()
            .filter(|k| !k.starts_with("pre/.s3backup/"))
            .collect();
        let expected: Vec<String> = files.keys().map(|r| format!("pre/{r}")).collect();
        assert_eq!(keys, expected, "objects in the bucket");
    }

    /// Paths the state file records as backed up (`state files --json`).
    #[track_caller]
    fn state_files(&self) -> Vec<String> {
        let mut cmd = self.env.cmd();
        cmd.arg("--state")
            .arg(&self.env.state)
            .args(["state", "files", "--json"]);
        let r = run(cmd);
        r.expect_code(0);
        r.stdout
            .lines()
            .map(|l| {
                let v: serde_json::Value =
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{}", r.show()));
                v["path"].as_str().expect("path").to_owned()
            })
            .collect()
    }

    /// Manifests in the bucket (read from the store, no request).
    fn manifests(&self) -> Vec<String> {
        self.server
            .list_keys(BUCKET)
            .into_iter()
            .filter(|k| k.starts_with("pre/.s3backup/manifests/"))
            .collect()
    }

    /// `verify TARGET --json EXTRA…` through the proxy: the run and its report.
    fn verify(&self, extra: &[&str]) -> (Run, serde_json::Value) {
        let mut cmd = self.env.cmd();
        cmd.args(["verify", TARGET, "--json", "--endpoint-url"])
            .arg(self.proxy.endpoint())
            .args(TIMEOUTS)
            .args(extra);
        let r = run(cmd);
        let v = serde_json::from_str(r.stdout.trim())
            .unwrap_or_else(|e| panic!("verify --json: {e}\n{}", r.show()));
        (r, v)
    }

    /// A backup with no faults, that must upload everything.
    #[track_caller]
    fn clean_backup(&self, files: usize) {
        self.proxy.clear_faults();
        let s = self
            .env
            .backup_ok(TARGET, &[&MULTIPART[..], &TIMEOUTS[..]].concat());
        assert_eq!((s.uploaded, s.failed), (files as u64, 0), "{s:?}");
    }
}

/// Every kind of fault in `kinds` was injected at least once.
#[track_caller]
fn assert_each_kind_seen(stats: Stats, kinds: &[Fault], log: &[String]) {
    for kind in kinds {
        let n = match kind {
            Fault::InternalError => stats.internal_errors,
            Fault::SlowDown => stats.slow_downs,
            Fault::Reset => stats.resets,
            Fault::Truncate => stats.truncated + stats.lost_responses,
            Fault::Slow => stats.slow,
            Fault::Corrupt => stats.corrupted,
        };
        assert!(n > 0, "no {kind:?} fault was injected: {stats:?}\n{log:#?}");
    }
}

/// Requests on an object (`/bucket/key`), not on the bucket itself.
fn is_object_request(p: &Parts) -> bool {
    p.uri
        .path()
        .trim_start_matches('/')
        .split_once('/')
        .is_some_and(|(_, key)| !key.is_empty())
}

/// Requests on backed-up files (not on the tool's manifests).
fn is_file_request(p: &Parts) -> bool {
    is_object_request(p) && !p.uri.path().contains("/.s3backup/")
}

/// GETs of backed-up files (not of the tool's manifests).
fn is_file_download(p: &Parts) -> bool {
    p.method == hyper::Method::GET && is_file_request(p)
}

/// GETs of snapshot manifests.
fn is_manifest_download(p: &Parts) -> bool {
    p.method == hyper::Method::GET && p.uri.path().contains("/.s3backup/manifests/")
}

/// CompleteMultipartUpload: `POST /bucket/key?uploadId=…`.
fn is_complete_multipart(p: &Parts) -> bool {
    p.method == hyper::Method::POST && p.uri.query().is_some_and(|q| q.contains("uploadId="))
}

/// `pred`, but only for the first request it matches.
fn first_only(pred: fn(&Parts) -> bool) -> impl Fn(&Parts) -> bool + Send + Sync + 'static {
    let done = AtomicBool::new(false);
    move |p| pred(p) && !done.swap(true, Ordering::SeqCst)
}

#[test]
fn backup_at_ten_percent_faults_retries_and_uploads_everything_intact() {
    let fx = Fx::new(0x5EED_0001);
    let mut files = fx.small_files(300);
    let big = noise(11 * MIB + 321, 7);
    fx.env.write("big/blob.bin", &big);
    files.insert("big/blob.bin".to_owned(), big);

    // Not CompleteMultipartUpload: a lost answer to it fails the file (see
    // `multipart_upload_survives_a_lost_complete_response`, ignored until fixed).
    fx.proxy.set_filter(|p| !is_complete_multipart(p));
    fx.proxy.set_faults(0.10, &Fault::ALL);
    let s = fx
        .env
        .backup_ok(TARGET, &[&MULTIPART[..], &TIMEOUTS[..]].concat());
    let stats = fx.proxy.stats();
    // Shown with the test's output if it fails (or with --nocapture).
    eprintln!("backup through the proxy: {stats:?}");
    assert_eq!(
        (s.scanned, s.uploaded, s.failed),
        (files.len() as u64, files.len() as u64, 0),
        "{s:?}"
    );
    assert!(s.snapshot.is_some(), "{s:?}");
    assert!(stats.requests > files.len() as u64, "{stats:?}");
    assert_each_kind_seen(stats, &Fault::ALL, &fx.proxy.fault_log());
    assert!(
        fx.server.count("UploadPart") >= 3 && fx.server.count("CompleteMultipartUpload") >= 1,
        "the big file went up in parts: {:?}",
        fx.server
            .ops()
            .iter()
            .filter(|o| o.contains("big/"))
            .collect::<Vec<_>>()
    );

    fx.assert_bucket_holds(&files);
    assert_eq!(fx.manifests().len(), 1, "{:?}", fx.manifests());
    let recorded = fx.state_files();
    assert_eq!(recorded, files.keys().cloned().collect::<Vec<_>>());

    // The snapshot the faulty run wrote is complete and true.
    fx.proxy.clear_faults();
    let mut cmd = fx.env.cmd();
    cmd.args(["verify", TARGET, "--deep", "--json", "--endpoint-url"])
        .arg(fx.proxy.endpoint());
    let r = run(cmd);
    r.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(
        (v["files"].as_u64(), v["ok"].as_u64()),
        (Some(files.len() as u64), Some(files.len() as u64)),
        "{v}"
    );
}

/// Backs up 300 small files and an 11 MiB one without faults, then
/// restores them through the proxy at 10 % faults of `kinds`: the restore
/// must succeed and give back the source tree exactly.
fn restore_at_ten_percent(seed: u64, kinds: &[Fault]) {
    let fx = Fx::new(seed);
    let files = fx.small_files(300);
    fx.env.write("big/blob.bin", noise(11 * MIB + 321, 8));
    fx.clean_backup(files.len() + 1);

    fx.proxy.reset_stats();
    fx.proxy.set_faults(0.10, kinds);
    let dest = fx.env.root().join("restored");
    let r = fx
        .env
        .restore(TARGET, &dest, &[&["--json"][..], &TIMEOUTS[..]].concat());
    let stats = fx.proxy.stats();
    eprintln!("restore through the proxy: {stats:?}");
    assert_each_kind_seen(stats, kinds, &fx.proxy.fault_log());
    r.expect_code(0);
    let s = r.restore_summary();
    assert_eq!((s.downloaded, s.failed), (files.len() as u64 + 1, 0), "{s:?}");
    assert!(
        tree(&dest) == tree(&fx.env.src),
        "restored tree differs from the source"
    );
    assert!(temp_files(&dest).is_empty(), "{:?}", temp_files(&dest));
}

#[test]
fn restore_at_ten_percent_errors_resets_and_slow_responses_restores_an_identical_tree() {
    restore_at_ten_percent(
        0x5EED_0002,
        &[Fault::InternalError, Fault::SlowDown, Fault::Reset, Fault::Slow],
    );
}

#[test]
fn restore_at_ten_percent_faults_of_every_kind_restores_an_identical_tree() {
    restore_at_ten_percent(0x5EED_0012, &Fault::ALL);
}

#[test]
fn backup_when_every_request_fails_stops_with_one_error_and_records_nothing() {
    let fx = Fx::new(0x5EED_0003);
    let files = fx.small_files(8);

    fx.proxy.set_faults(1.0, &Fault::FAILING);
    let r = fx.env.backup(TARGET, &TIMEOUTS);
    r.expect_code(1);
    let line = r.error_line();
    assert_eq!(r.stderr.trim(), line, "one line on stderr");
    assert!(
        line.starts_with("error: target s3://bkt/pre: ") && line.contains("checking bucket 'bkt'"),
        "{line}"
    );
    let stats = fx.proxy.stats();
    assert!(stats.requests >= 2, "the first request was retried: {stats:?}");
    assert_eq!(stats.failures(), stats.requests, "{stats:?}");
    assert!(fx.state_files().is_empty(), "{:?}", fx.state_files());
    assert!(fx.server.list_keys(BUCKET).is_empty());

    // The faults pass: the next run sends everything.
    fx.proxy.clear_faults();
    let s = fx.env.backup_ok(TARGET, &TIMEOUTS);
    assert_eq!((s.uploaded, s.failed), (files.len() as u64, 0), "{s:?}");
    fx.assert_bucket_holds(&files);
    assert_eq!(fx.state_files().len(), files.len());
}

#[test]
fn backup_whose_every_upload_fails_reports_each_file_and_records_none() {
    let fx = Fx::new(0x5EED_0004);
    let files = fx.small_files(8);

    // The bucket check, listing and manifest work; every request on a file fails.
    fx.proxy.set_filter(is_file_request);
    fx.proxy.set_faults(1.0, &Fault::FAILING);
    let r = fx.env.backup(TARGET, &[&["--json"][..], &TIMEOUTS[..]].concat());
    r.expect_code(3);
    let s = r.summary();
    assert_eq!(
        (s.scanned, s.uploaded, s.failed),
        (files.len() as u64, 0, files.len() as u64),
        "{s:?}"
    );
    let failed: Vec<&str> = s.failures.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(failed, files.keys().map(String::as_str).collect::<Vec<_>>());
    assert!(
        r.stderr
            .contains("error: 8 file(s) were not backed up; run the backup again to retry them"),
        "{}",
        r.show()
    );
    assert!(fx.state_files().is_empty(), "{:?}", fx.state_files());

    fx.proxy.clear_faults();
    let s = fx.env.backup_ok(TARGET, &TIMEOUTS);
    assert_eq!((s.uploaded, s.failed), (files.len() as u64, 0), "{s:?}");
    fx.assert_bucket_holds(&files);
    assert_eq!(fx.state_files().len(), files.len());
}

#[test]
fn restore_when_every_request_fails_stops_with_one_error_and_writes_nothing() {
    let fx = Fx::new(0x5EED_0005);
    let files = fx.small_files(8);
    fx.clean_backup(files.len());

    fx.proxy.reset_stats();
    fx.proxy.set_faults(1.0, &Fault::FAILING);
    let dest = fx.env.root().join("restored");
    let r = fx.env.restore(TARGET, &dest, &TIMEOUTS);
    r.expect_code(1);
    let line = r.error_line();
    assert_eq!(r.stderr.trim(), line, "one line on stderr");
    assert!(
        line.starts_with("error: s3://bkt/pre: ") && line.contains("checking bucket 'bkt'"),
        "{line}"
    );
    let stats = fx.proxy.stats();
    assert!(stats.requests >= 2, "the first request was retried: {stats:?}");
    assert_eq!(stats.failures(), stats.requests, "{stats:?}");
    assert!(paths_under(&dest).is_empty(), "{:?}", paths_under(&dest));
}

#[test]
fn restore_whose_every_download_fails_leaves_no_partial_file() {
    let fx = Fx::new(0x5EED_0006);
    let files = fx.small_files(8);
    fx.clean_backup(files.len());

    // The manifest arrives; every file's download fails (truncated bodies too).
    fx.proxy.set_filter(is_file_download);
    fx.proxy.set_faults(1.0, &Fault::FAILING);
    let dest = fx.env.root().join("restored");
    let r = fx
        .env
        .restore(TARGET, &dest, &[&["--json"][..], &TIMEOUTS[..]].concat());
    r.expect_code(3);
    let s = r.restore_summary();
    assert_eq!((s.downloaded, s.failed), (0, files.len() as u64), "{s:?}");
    assert_eq!(s.failed_paths(), files.keys().cloned().collect::<Vec<_>>());
    assert!(
        r.stderr.contains("error: 8 file(s) were not restored"),
        "{}",
        r.show()
    );
    assert!(fx.proxy.stats().truncated > 0, "{:?}", fx.proxy.stats());
    assert!(files_of(&dest).is_empty(), "{:?}", paths_under(&dest));
    assert!(temp_files(&dest).is_empty(), "{:?}", temp_files(&dest));
}

#[test]
fn read_timeout_decides_between_giving_up_on_and_waiting_for_a_slow_server() {
    let fx = Fx::new(0x5EED_0007);
    let files = fx.small_files(3);
    fx.proxy.set_slow_delay(Duration::from_millis(1500));
    fx.proxy.set_faults(1.0, &[Fault::Slow]);

    let r = fx
        .env
        .backup(TARGET, &["--connect-timeout", "2", "--read-timeout", "1"]);
    r.expect_code(1);
    let line = r.error_line();
    assert!(
        line.contains("checking bucket 'bkt'") && line.contains("read timeout occurred after 1s"),
        "{line}"
    );
    assert!(fx.proxy.stats().slow >= 2, "retried: {:?}", fx.proxy.stats());
    assert!(fx.state_files().is_empty(), "{:?}", fx.state_files());

    let s = fx
        .env
        .backup_ok(TARGET, &["--connect-timeout", "2", "--read-timeout", "4"]);
    assert_eq!((s.uploaded, s.failed), (files.len() as u64, 0), "{s:?}");
    fx.assert_bucket_holds(&files);
}

#[test]
fn restore_retries_truncated_downloads() {
    let fx = Fx::new(0x5EED_0008);
    let files = fx.small_files(40);
    fx.clean_backup(files.len());

    // A third of the file downloads are cut off after half their body.
    fx.proxy.set_filter(is_file_download);
    fx.proxy.set_faults(0.3, &[Fault::Truncate]);
    let dest = fx.env.root().join("restored");
    let r = fx
        .env
        .restore(TARGET, &dest, &[&["--json"][..], &TIMEOUTS[..]].concat());
    let stats = fx.proxy.stats();
    assert!(stats.truncated > 0, "{stats:?}");
    r.expect_code(0);
    assert!(
        tree(&dest) == tree(&fx.env.src),
        "restored tree differs from the source"
    );
}

#[test]
fn restore_retries_a_truncated_manifest_download() {
    let fx = Fx::new(0x5EED_0009);
    let files = fx.small_files(5);
    fx.clean_backup(files.len());

    fx.proxy.set_filter(first_only(is_manifest_download));
    fx.proxy.set_faults(1.0, &[Fault::Truncate]);
    let dest = fx.env.root().join("restored");
    let r = fx.env.restore(TARGET, &dest, &TIMEOUTS);
    assert_eq!(fx.proxy.stats().truncated, 1, "{:?}", fx.proxy.fault_log());
    r.expect_code(0);
    assert!(
        tree(&dest) == tree(&fx.env.src),
        "restored tree differs from the source"
    );
}

#[test]
fn multipart_upload_survives_a_lost_complete_response() {
    let fx = Fx::new(0x5EED_000A);
    let big = noise(11 * MIB, 9);
    fx.env.write("big.bin", &big);

    // The server completes the upload, but its answer is cut short: the
    // client retries a completion that already happened.
    fx.proxy.set_filter(first_only(is_complete_multipart));
    fx.proxy.set_faults(1.0, &[Fault::Truncate]);
    let r = fx
        .env
        .backup(TARGET, &[&["--json"][..], &MULTIPART[..], &TIMEOUTS[..]].concat());
    assert_eq!(fx.proxy.stats().truncated, 1, "{:?}", fx.proxy.fault_log());
    r.expect_code(0);
    assert_eq!(
        fx.server.object_bytes(BUCKET, "pre/big.bin").as_deref(),
        Some(&big[..])
    );
    assert_eq!(fx.state_files(), ["big.bin"]);
}

#[test]
fn a_backup_whose_every_upload_failed_writes_no_snapshot() {
    let fx = Fx::new(0x5EED_000B);
    fx.small_files(4);

    fx.proxy.set_filter(is_file_request);
    fx.proxy.set_faults(1.0, &[Fault::InternalError]);
    let r = fx.env.backup(TARGET, &[&["--json"][..], &TIMEOUTS[..]].concat());
    r.expect_code(3);
    assert_eq!(r.summary().snapshot, None, "{}", r.show());
    assert!(fx.manifests().is_empty(), "{:?}", fx.manifests());
}

#[test]
fn backup_retries_a_truncated_listing() {
    let fx = Fx::new(0x5EED_000C);
    let files = fx.small_files(3);

    // The first backup of a set lists the bucket's manifests; that answer
    // (an XML body, read whole by the SDK) is cut short once.
    fx.proxy.set_filter(first_only(|p| {
        p.method == hyper::Method::GET && p.uri.query().is_some_and(|q| q.contains("list-type=2"))
    }));
    fx.proxy.set_faults(1.0, &[Fault::Truncate]);
    let s = fx.env.backup_ok(TARGET, &TIMEOUTS);
    assert_eq!(fx.proxy.stats().truncated, 1, "{:?}", fx.proxy.fault_log());
    assert_eq!((s.uploaded, s.failed), (files.len() as u64, 0), "{s:?}");
    fx.assert_bucket_holds(&files);
}

/// Paths and kinds of a verify report's list `field` (`problems` or `unreadable_files`).
fn listed(v: &serde_json::Value, field: &str) -> Vec<(String, String)> {
    v[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
            (s("path"), s("kind"))
        })
        .collect()
}

#[test]
fn verify_deep_at_twenty_percent_faults_of_every_kind_finds_the_snapshot_intact() {
    let fx = Fx::new(0x5EED_0101);
    let files = fx.small_files(200);
    fx.env.write("big/blob.bin", noise(11 * MIB + 321, 10));
    fx.clean_backup(files.len() + 1);

    fx.proxy.reset_stats();
    fx.proxy.set_faults(0.20, &Fault::ALL);
    let (r, v) = fx.verify(&["--deep"]);
    let stats = fx.proxy.stats();
    eprintln!("verify through the proxy: {stats:?}");
    assert_each_kind_seen(stats, &Fault::ALL, &fx.proxy.fault_log());
    assert!(stats.truncated > 0, "{stats:?}");
    r.expect_code(0);
    let n = files.len() as u64 + 1;
    assert_eq!(
        (
            v["files"].as_u64(),
            v["ok"].as_u64(),
            v["missing"].as_u64(),
            v["mismatched"].as_u64(),
            v["unreadable"].as_u64()
        ),
        (Some(n), Some(n), Some(0), Some(0), Some(0)),
        "{v}"
    );
    assert_eq!(listed(&v, "problems"), [], "{v}");
    assert_eq!(listed(&v, "unreadable_files"), [], "{v}");
}

#[test]
fn verify_deep_through_faults_reports_a_damaged_object_and_only_it_as_mismatched() {
    let fx = Fx::new(0x5EED_0102);
    let files = fx.small_files(100);
    fx.clean_backup(files.len());
    // Same length, other bytes, straight into the server's file.
    let damaged = files.keys().nth(42).unwrap().clone();
    let path = fx.server.object_path(BUCKET, &format!("pre/{damaged}"));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();

    fx.proxy.set_filter(is_file_download);
    fx.proxy.set_faults(0.25, &Fault::FAILING);
    let (r, v) = fx.verify(&["--deep"]);
    let stats = fx.proxy.stats();
    assert_each_kind_seen(stats, &Fault::FAILING, &fx.proxy.fault_log());
    r.expect_code(1);
    assert_eq!(listed(&v, "problems"), [(damaged, "mismatch".to_owned())], "{v}");
    assert_eq!(
        (
            v["ok"].as_u64(),
            v["mismatched"].as_u64(),
            v["unreadable"].as_u64()
        ),
        (Some(files.len() as u64 - 1), Some(1), Some(0)),
        "{v}"
    );
    assert!(
        v["problems"][0]["detail"].as_str().unwrap().contains("blake3"),
        "{v}"
    );
}

#[test]
fn verify_deep_when_every_download_fails_reports_unreadable_files_not_damage() {
    let fx = Fx::new(0x5EED_0103);
    let files = fx.small_files(8);
    fx.clean_backup(files.len());

    // The listing and the manifest arrive; every file's download fails.
    fx.proxy.set_filter(is_file_download);
    fx.proxy.set_faults(1.0, &Fault::FAILING);
    let (r, v) = fx.verify(&["--deep"]);
    assert!(fx.proxy.stats().truncated > 0, "{:?}", fx.proxy.stats());
    r.expect_code(3);
    assert_eq!(
        (
            v["ok"].as_u64(),
            v["missing"].as_u64(),
            v["mismatched"].as_u64(),
            v["unreadable"].as_u64()
        ),
        (Some(0), Some(0), Some(0), Some(files.len() as u64)),
        "{v}"
    );
    assert_eq!(listed(&v, "problems"), [], "no damage is claimed: {v}");
    let expected: Vec<(String, String)> = files
        .keys()
        .map(|p| (p.clone(), "unreadable".to_owned()))
        .collect();
    assert_eq!(listed(&v, "unreadable_files"), expected, "{v}");
    assert!(
        r.error_line().contains("8 file(s) of snapshot") && r.error_line().contains("could not be read"),
        "{}",
        r.show()
    );

    // The text report lists them as unreadable and counts them apart.
    let mut cmd = fx.env.cmd();
    cmd.args(["verify", TARGET, "--deep", "--endpoint-url"])
        .arg(fx.proxy.endpoint())
        .args(TIMEOUTS);
    let r = run(cmd);
    r.expect_code(3);
    let unreadable = r.stdout.lines().filter(|l| l.starts_with("unreadable ")).count();
    assert_eq!(unreadable, files.len(), "{}", r.show());
    assert!(
        r.stdout.contains("0 missing, 0 mismatched, 8 unreadable"),
        "{}",
        r.show()
    );

    // Once the faults pass, the same snapshot verifies clean.
    fx.proxy.clear_faults();
    let (r, v) = fx.verify(&["--deep"]);
    r.expect_code(0);
    assert_eq!(v["ok"].as_u64(), Some(files.len() as u64), "{v}");
}

#[test]
fn verify_of_recorded_versions_through_failing_requests_reports_unreadable_not_missing() {
    let fx = Fx::new(0x5EED_0104);
    // A snapshot recording versions that the current objects do not match
    // (other sizes), so verify asks for each recorded version (HEAD).
    let c = sdk_client(&fx.server.endpoint());
    let mut entries = Vec::new();
    for name in ["a.txt", "b.txt", "c.txt"] {
        sdk_put(&c, BUCKET, &format!("pre/{name}"), b"the current content");
        entries.push(serde_json::json!({
            "path": name, "type": "file", "size": 3, "mtime_ns": 1_600_000_000_000_000_000i64,
            "mode": "644", "blake3": blake3_hex(b"old"), "etag": "0123", "version_id": "v1",
        }));
    }
    sdk_put(
        &c,
        BUCKET,
        "pre/.s3backup/manifests/20200101T000000Z-0000000000000000000000000000beef.jsonl.zst",
        &encode_manifest(&manifest_header(3, 9), &entries),
    );

    fx.proxy
        .set_filter(|p| p.method == hyper::Method::HEAD && is_file_request(p));
    fx.proxy.set_faults(1.0, &Fault::FAILING);
    let (r, v) = fx.verify(&[]);
    assert!(fx.proxy.stats().failures() >= 3, "{:?}", fx.proxy.stats());
    r.expect_code(3);
    assert_eq!(
        (v["missing"].as_u64(), v["unreadable"].as_u64()),
        (Some(0), Some(3)),
        "{v}"
    );
    assert_eq!(listed(&v, "problems"), [], "{v}");
}

#[test]
fn delete_spares_all_below_a_gone_ignore_file_whose_copy_cannot_be_read() {
    let fx = Fx::new(0x5EED_0105);
    for f in ["proj/x.o", "proj/y.c", "other.txt"] {
        fx.env.write(f, f);
    }
    fx.clean_backup(3);
    // A rule added after x.o went up; then the whole directory is deleted.
    fx.env.write("proj/.s3backupignore", "*.o\n");
    fx.env.backup_ok(TARGET, &TIMEOUTS);
    std::fs::remove_dir_all(fx.env.path("proj")).unwrap();
    fx.env.remove("other.txt");

    // Its rules cannot be read back: nothing below proj/ is deleted.
    fx.proxy
        .set_filter(|p| p.method == hyper::Method::GET && p.uri.path().ends_with("/.s3backupignore"));
    fx.proxy.set_faults(1.0, &Fault::FAILING);
    let r = fx
        .env
        // No file is left to back up: an empty source to the delete guard.
        .backup(
            TARGET,
            &[&["--json", "--delete", "--allow-empty-source"][..], &TIMEOUTS[..]].concat(),
        );
    r.expect_code(0);
    assert!(fx.proxy.stats().failures() > 0, "{:?}", fx.proxy.stats());
    assert_eq!(r.summary().deleted, 1, "{}", r.show());
    assert!(
        r.stderr.contains("proj/.s3backupignore") && r.stderr.contains("spares everything below it"),
        "{}",
        r.show()
    );
    let keys = |fx: &Fx| -> Vec<String> {
        fx.server
            .list_keys(BUCKET)
            .into_iter()
            .filter(|k| !k.starts_with("pre/.s3backup/"))
            .collect()
    };
    assert_eq!(
        keys(&fx),
        ["pre/proj/.s3backupignore", "pre/proj/x.o", "pre/proj/y.c"]
    );

    // Once it can be read, what its rules leave out stays, the rest goes.
    fx.proxy.clear_faults();
    let s = fx.env.backup_ok(
        TARGET,
        &[&["--delete", "--allow-empty-source"][..], &TIMEOUTS[..]].concat(),
    );
    assert_eq!(s.deleted, 1, "{s:?}");
    assert_eq!(keys(&fx), ["pre/proj/.s3backupignore", "pre/proj/x.o"]);
}
