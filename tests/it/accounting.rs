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
        "CreateMultipartUpload"
        | "CompleteMultipartUpload"
        | "AbortMultipartUpload"
        | "ListParts"
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
    counts.insert(
        "bytes_received".into(),
        requests.iter().map(|r| r.bytes_out).sum(),
    );
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
        .position(|l| l.starts_with('{') || l.starts_with('['))
        .unwrap_or_else(|| panic!("no JSON\n{}", r.show()));
    let text: Vec<&str> = r.stdout.lines().skip(start).collect();
    serde_json::from_str(&text.join("\n")).unwrap_or_else(|e| panic!("bad JSON {e}\n{}", r.show()))
}

/// Checks that the run's reported counts are exactly what the server logged
/// since the last clear, then clears the log for the next run.
#[track_caller]
fn assert_counts_match(server: &S3Server, summary: &Value, what: &str) -> BTreeMap<String, u64> {
    let logged = server.requests();
    assert!(
        logged.iter().all(|r| r.status != 0),
        "{what}: unanswered requests {logged:?}"
    );
    let seen = server_counts(&logged);
    let got = reported(summary);
    assert_eq!(
        got,
        seen,
        "{what}: reported vs the server's log ({:?})",
        server.ops()
    );
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
    cmd.arg("--state")
        .arg(&env.state)
        .args(["verify", TARGET, "--json"]);
    cmd.arg("--endpoint-url")
        .arg(env.endpoint.as_deref().unwrap())
        .args(extra);
    run(cmd)
}

#[test]
fn counts_equal_the_servers_log_for_backups_a_restore_and_a_deep_verify() {
    let (server, env) = setup();
    env.write("big.bin", noise(12 * MIB, 1));
    env.write("a.txt", "alpha")
        .write("dir/b.txt", "bravo")
        .write("dir/gone.txt", "going");
    env.write("old/name.bin", noise(40_000, 2));
    server.clear_requests();

    let mut args = vec!["--json"];
    args.extend_from_slice(SMALL_PARTS);
    let first = json_of(&env.backup(TARGET, &args));
    let got = assert_counts_match(&server, &first, "first backup");
    assert_eq!(
        (got["multipart_parts"], got["multipart_other"]),
        (3, 2),
        "{first}"
    );
    assert!(got["bytes_sent"] > 12 * MIB as u64, "{first}");

    // A changed re-run with a rename (a copy) and a deletion.
    env.write("a.txt", "alpha, changed");
    env.remove("dir/gone.txt");
    env.rename("old/name.bin", "new/name.bin");
    args.push("--delete");
    let second = json_of(&env.backup(TARGET, &args));
    let got = assert_counts_match(&server, &second, "changed re-run");
    assert!(got["copy"] >= 1 && got["delete"] >= 1, "{second}");

    // Unchanged: one request (the manifests' listing), counted as such.
    let third = json_of(&env.backup(TARGET, &args));
    let got = assert_counts_match(&server, &third, "unchanged re-run");
    let total: u64 = KINDS.iter().map(|k| got[*k]).sum();
    assert_eq!((got["list"], total), (1, 1), "{third}");

    let dest = env.path("restored");
    let restored = json_of(&env.restore(TARGET, &dest, &["--json"]));
    let got = assert_counts_match(&server, &restored, "restore");
    assert!(
        got["get"] >= 4 && got["bytes_received"] > 12 * MIB as u64,
        "{restored}"
    );

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
    env.write("old/moved.bin", noise(30_000, 4))
        .write("gone.txt", "going")
        .write("edit.txt", "v1");
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
    // The bytes: the files' (the parts' too), short of the real run's by
    // no more than the small bodies (manifest, multipart XML) not predicted.
    let (predicted, actual) = (would["bytes_sent"], sent["bytes_sent"]);
    assert!(
        predicted >= (16 * MIB) as u64 && predicted <= actual && actual - predicted < 64 * 1024,
        "predicted {predicted} B, sent {actual} B\n{dry}\n{real}"
    );
    // 16 MiB in 5 MiB parts: 4 parts, plus create and complete.
    assert_eq!(
        (sent["multipart_parts"], sent["multipart_other"]),
        (4, 2),
        "{real}"
    );
    assert!(
        sent["copy"] >= 2 && sent["delete"] >= 2,
        "a rename, a kept edit, two deletes: {real}"
    );
}

/// The cost `--cost-per-1000 SPEC` should give for `counts`, computed here
/// from the server's own counts.
fn expected_cost(c: &BTreeMap<String, u64>, per_1000: [f64; 8], egress_gb: f64) -> f64 {
    let [list, head, get, put, copy, part, delete, other] = per_1000;
    let requests = c["list"] as f64 * list
        + c["head"] as f64 * head
        + c["get"] as f64 * get
        + (c["put"] + c["multipart_other"]) as f64 * put
        + c["copy"] as f64 * copy
        + c["multipart_parts"] as f64 * part
        + c["delete"] as f64 * delete
        + c["other"] as f64 * other;
    requests / 1000.0 + c["bytes_received"] as f64 / (1024.0 * 1024.0 * 1024.0) * egress_gb
}

#[track_caller]
fn assert_usd(got: &Value, want: f64) {
    let got = got.as_f64().unwrap_or_else(|| panic!("cost_usd is {got}"));
    assert!((got - want).abs() < 1e-9, "cost_usd {got}, expected {want}");
}

#[test]
fn cost_per_1000_prices_the_counted_requests() {
    let (server, env) = setup();
    env.write("big.bin", noise(6 * MIB, 6))
        .write("a.txt", "a")
        .write("b.txt", "b");
    server.clear_requests();
    let spec = "list=1,head=2,get=3,put=5,copy=7,part=11,delete=13,other=17";
    let mut args = vec!["--json", "--cost-per-1000", spec];
    args.extend_from_slice(SMALL_PARTS);
    let backup = json_of(&env.backup(TARGET, &args));
    let counts = assert_counts_match(&server, &backup, "backup");
    let want = expected_cost(&counts, [1.0, 2.0, 3.0, 5.0, 7.0, 11.0, 13.0, 17.0], 0.0);
    assert!(want > 0.0);
    assert_usd(&backup["cost_usd"], want);

    // The built-in table, with egress: a restore receives the bodies.
    let dest = env.path("dest");
    let restored = json_of(&env.restore(TARGET, &dest, &["--json", "--cost-per-1000", "s3-standard"]));
    let counts = assert_counts_match(&server, &restored, "restore");
    let s3 = [0.005, 0.0004, 0.0004, 0.005, 0.005, 0.005, 0.0, 0.0004];
    assert_usd(&restored["cost_usd"], expected_cost(&counts, s3, 0.09));

    // Starting from the table and changing one price; the text summary says it is an estimate.
    let r = verify(&env, &["--deep", "--cost-per-1000", "s3-standard,get=1"]);
    let v = json_of(&r);
    let counts = assert_counts_match(&server, &v, "verify");
    let mut changed = s3;
    changed[2] = 1.0;
    assert_usd(&v["cost_usd"], expected_cost(&counts, changed, 0.09));
    let mut cmd = env.cmd();
    // One GET (the manifest) at 1000 USD per 1000.
    cmd.arg("--state")
        .arg(&env.state)
        .args(["verify", TARGET, "--cost-per-1000", "get=1000"]);
    cmd.arg("--endpoint-url").arg(env.endpoint.as_deref().unwrap());
    let text = run(cmd);
    text.expect_code(0);
    assert!(
        text.stdout.contains("  requests: ")
            && text.stdout.contains("estimated cost: 1.000000 USD (an estimate"),
        "{}",
        text.show()
    );
}

#[test]
fn a_malformed_cost_spec_is_a_usage_error_naming_the_item() {
    let (server, env) = setup();
    env.write("a.txt", "a");
    server.clear_requests();
    for (spec, item) in [
        ("put=0.005,gets=1", "'gets=1'"),
        ("put=-1", "'put=-1'"),
        ("put", "'put'"),
        ("get=1,s3-standard", "'s3-standard'"),
    ] {
        let r = env.backup(TARGET, &["--cost-per-1000", spec]);
        r.expect_code(2);
        assert!(r.stderr.contains(item), "{spec}: {}", r.show());
        let dest = env.path("dest");
        let r = env.restore(TARGET, &dest, &["--cost-per-1000", spec]);
        r.expect_code(2);
        assert!(r.stderr.contains(item) && !dest.exists(), "{spec}: {}", r.show());
    }
    assert!(server.requests().is_empty(), "nothing sent: {:?}", server.ops());
    assert!(!env.state.exists(), "no state written");
}

#[test]
fn state_runs_keep_each_runs_requests_and_a_set_keeps_the_prices() {
    let (server, env) = setup();
    env.write("a.txt", "a").write("b.txt", "b");
    server.clear_requests();
    let set = ["--json", "--set", "nightly", "--cost-per-1000", "put=1000"];
    let first = json_of(&env.backup(TARGET, &set));
    let counts = assert_counts_match(&server, &first, "first");
    assert_usd(
        &first["cost_usd"],
        expected_cost(&counts, [0.0, 0.0, 0.0, 1000.0, 0.0, 0.0, 0.0, 0.0], 0.0),
    );
    env.write("a.txt", "changed");
    let mut cmd = env.cmd();
    cmd.arg("--state")
        .arg(&env.state)
        .args(["backup", "--set", "nightly", "--json"]);
    let second = json_of(&run(cmd));
    let counts = assert_counts_match(&server, &second, "by name");
    assert_usd(
        &second["cost_usd"],
        expected_cost(&counts, [0.0, 0.0, 0.0, 1000.0, 0.0, 0.0, 0.0, 0.0], 0.0),
    );

    let mut cmd = env.cmd();
    cmd.arg("--state")
        .arg(&env.state)
        .args(["state", "runs", "--json"]);
    let runs = json_of(&run(cmd));
    let runs = runs.as_array().expect("runs array");
    assert_eq!(runs.len(), 2);
    // Newest first.
    assert_eq!(runs[0]["requests"], second["requests"]);
    assert_eq!(runs[1]["requests"], first["requests"]);
    let mut cmd = env.cmd();
    cmd.arg("--state").arg(&env.state).args(["state", "runs"]);
    let table = run(cmd);
    table.expect_code(0);
    assert!(
        table.stdout.lines().next().unwrap_or("").contains("requests"),
        "{}",
        table.show()
    );
}

#[test]
fn a_local_store_counts_its_operations_as_requests() {
    let env = TestEnv::new();
    env.write("a.txt", "alpha").write("d/b.txt", "bravo!");
    let store = env.path("store");
    let target = store.to_str().unwrap();
    let first = json_of(&env.backup(target, &["--json"]));
    let got = reported(&first);
    // Two files and the manifest; 11 bytes of files and the manifest's.
    assert_eq!((got["put"], got["get"], got["delete"]), (3, 0, 0), "{first}");
    assert!(got["bytes_sent"] > 11 && got["other"] == 1, "{first}");
    let dest = env.path("dest");
    let restored = json_of(&env.restore(target, &dest, &["--json"]));
    let got = reported(&restored);
    // The manifest and the two files, read whole.
    assert_eq!(got["get"], 3, "{restored}");
    assert!(got["bytes_received"] > 11 && got["put"] == 0, "{restored}");
}
