//! Request accounting (issue 16): the requests a run reports in `--json`,
//! by kind and with their body bytes, are exactly the requests the
//! in-process server logged (its own count, grouped by operation), for
//! backups (multipart, a rename's copy, `--delete`), a restore, a deep
//! verify and a run whose request is retried; what a dry run predicts is
//! what the real run then sends; `--cost-per-1000` prices the counts;
//! `state runs` keeps them.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::common::*;
use crate::server::{Request, S3Server};

const BUCKET: &str = "bkt";
const TARGET: &str = "bkt::pre";
const MIB: usize = 1024 * 1024;

/// The kind the tool files an S3 operation under, as docs/json.md lists them.
fn kind(op: &str) -> &'static str {
    match op {
        "ListObjectsV2" | "ListObjects" | "ListObjectVersions" => "list",
        "HeadObject" => "head",
        "GetObject" => "get",
        "PutObject" => "put",
        "CopyObject" => "copy",
        "UploadPart" | "UploadPartCopy" => "multipart_parts",
        "CreateMultipartUpload" | "CompleteMultipartUpload" | "AbortMultipartUpload" | "ListParts"
        | "ListMultipartUploads" => "multipart_other",
        "DeleteObject" | "DeleteObjects" => "delete",
        _ => "other",
    }
}

const KINDS: [&str; 9] = [
    "list",
    "head",
    "get",
    "put",
    "copy",
    "multipart_parts",
    "multipart_other",
    "delete",
    "other",
];

/// What the server saw, in the shape of the `requests` object of `--json`.
fn server_counts(requests: &[Request]) -> BTreeMap<String, u64> {
    let mut counts: BTreeMap<String, u64> = KINDS.iter().map(|k| (k.to_string(), 0)).collect();
    for r in requests {
        *counts.get_mut(kind(&r.op)).unwrap() += 1;
    }
    counts.insert("bytes_sent".into(), requests.iter().map(|r| r.bytes_in).sum());
    counts.insert("bytes_received".into(), requests.iter().map(|r| r.bytes_out).sum());
    counts
}

/// The `requests` object of a `--json` summary, as numbers by name.
#[track_caller]
fn reported(summary: &Value) -> BTreeMap<String, u64> {
    let obj = summary["requests"]
        .as_object()
        .unwrap_or_else(|| panic!("no requests object in {summary}"));
    let counts: BTreeMap<String, u64> = obj
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or_else(|| panic!("{k}: {v}"))))
        .collect();
    for k in KINDS.iter().chain(&["bytes_sent", "bytes_received"]) {
        assert!(counts.contains_key(*k), "requests lacks {k}: {summary}");
    }
    counts
}

/// Runs `cmd`, requires exit 0, parses the one JSON object on stdout.
#[track_caller]
fn json_of(r: &Run) -> Value {
    r.expect_code(0);
    let start = r
        .stdout
        .lines()
        .position(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON\n{}", r.show()));
    let text: Vec<&str> = r.stdout.lines().skip(start).collect();
    serde_json::from_str(&text.join("\n")).unwrap_or_else(|e| panic!("bad JSON {e}\n{}", r.show()))
}

/// Checks that the run's reported counts are exactly what the server logged
/// since the last clear, then clears the log for the next run.
#[track_caller]
fn assert_counts_match(server: &S3Server, summary: &Value, what: &str) -> BTreeMap<String, u64> {
    let logged = server.requests();
    assert!(logged.iter().all(|r| r.status != 0), "{what}: unanswered requests {logged:?}");
    let seen = server_counts(&logged);
    let got = reported(summary);
    assert_eq!(got, seen, "{what}: reported vs the server's log ({:?})", server.ops());
    server.clear_requests();
    got
}

fn setup() -> (S3Server, TestEnv) {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    (server, env)
}

const SMALL_PARTS: &[&str] = &["--multipart-threshold", "5MiB", "--part-size", "5MiB"];

/// `verify TARGET --deep --json` with the environment's state and endpoint.
fn verify(env: &TestEnv, extra: &[&str]) -> Run {
    let mut cmd = env.cmd();
    cmd.arg("--state").arg(&env.state).args(["verify", TARGET, "--json"]);
    cmd.arg("--endpoint-url").arg(env.endpoint.as_deref().unwrap()).args(extra);
    run(cmd)
}

#[test]
fn counts_equal_the_servers_log_for_backups_a_restore_and_a_deep_verify() {
    let (server, env) = setup();
    env.write("big.bin", noise(12 * MIB, 1));
    env.write("a.txt", "alpha").write("dir/b.txt", "bravo").write("dir/gone.txt", "going");
    env.write("old/name.bin", noise(40_000, 2));
    server.clear_requests();

    let mut args = vec!["--json"];
    args.extend_from_slice(SMALL_PARTS);
    let first = json_of(&env.backup(TARGET, &args));
    let got = assert_counts_match(&server, &first, "first backup");
    assert_eq!((got["multipart_parts"], got["multipart_other"]), (3, 2), "{first}");
    assert!(got["bytes_sent"] > 12 * MIB as u64, "{first}");

    // A changed re-run with a rename (a copy) and a deletion.
    env.write("a.txt", "alpha, changed");
    env.remove("dir/gone.txt");
    env.rename("old/name.bin", "new/name.bin");
    args.push("--delete");
    let second = json_of(&env.backup(TARGET, &args));
    let got = assert_counts_match(&server, &second, "changed re-run");
    assert!(got["copy"] >= 1 && got["delete"] >= 1, "{second}");

    let dest = env.path("restored");
    let restored = json_of(&env.restore(TARGET, &dest, &["--json"]));
    let got = assert_counts_match(&server, &restored, "restore");
    assert!(got["get"] >= 4 && got["bytes_received"] > 12 * MIB as u64, "{restored}");

    let verified = json_of(&verify(&env, &["--deep"]));
    let got = assert_counts_match(&server, &verified, "verify --deep");
    assert!(got["get"] >= 4, "{verified}");
}

#[test]
fn a_retried_request_is_counted_as_sent() {
    let (server, env) = setup();
    env.write("flaky.txt", "once refused").write("fine.txt", "fine");
    server.fail_key("flaky", Some(1), true);
    server.clear_requests();
    let summary = json_of(&env.backup(TARGET, &["--json"]));
    let puts = server.requests().iter().filter(|r| r.op == "PutObject").count();
    let got = assert_counts_match(&server, &summary, "backup with a retry");
    // Two files and the manifest: four PutObjects, one of them refused with 503.
    assert_eq!((puts, got["put"]), (4, 4), "{summary}");
}

/// The kinds a dry run predicts (`would_send`), from a `requests`-shaped map.
fn writes(counts: &BTreeMap<String, u64>) -> Vec<(&'static str, u64)> {
    ["put", "copy", "multipart_parts", "multipart_other", "delete"]
        .into_iter()
        .map(|k| (k, counts[k]))
        .collect()
}

#[test]
fn a_dry_run_predicts_the_writes_the_real_run_sends() {
    let (server, env) = setup();
    env.write("big.bin", noise(11 * MIB, 3)).write("keep.txt", "same");
    env.write("old/moved.bin", noise(30_000, 4)).write("gone.txt", "going").write("edit.txt", "v1");
    let mut args = vec!["--json", "--delete"];
    args.extend_from_slice(SMALL_PARTS);
    json_of(&env.backup(TARGET, &args));

    // A new large file, a new small one, a rename, a deletion and an edit
    // (whose old content is kept in history: a copy).
    env.write("big2.bin", noise(16 * MIB, 5)).write("new.txt", "new");
    env.rename("old/moved.bin", "new/moved.bin");
    env.remove("gone.txt");
    env.write("edit.txt", "version two");
    let mut dry_args = args.clone();
    dry_args.push("--dry-run");
    server.clear_requests();
    let dry = json_of(&env.backup(TARGET, &dry_args));
    // The dry run's own requests (the listing) are counted too.
    assert_counts_match(&server, &dry, "dry run");
    let would = reported(&serde_json::json!({ "requests": dry["would_send"] }));

    let real = json_of(&env.backup(TARGET, &args));
    let sent = assert_counts_match(&server, &real, "real run");
    assert_eq!(writes(&would), writes(&sent), "predicted vs sent\n{dry}\n{real}");
    // 16 MiB in 5 MiB parts: 4 parts, plus create and complete.
    assert_eq!((sent["multipart_parts"], sent["multipart_other"]), (4, 2), "{real}");
    assert!(sent["copy"] >= 2 && sent["delete"] >= 2, "a rename, a kept edit, two deletes: {real}");
}
