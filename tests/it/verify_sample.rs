//! Rolling deep verify (issue 16): `verify --deep --sample SHARE` against
//! the test S3 server, counted in the server's own GetObject log: which
//! files each run downloads (never checked first, then the oldest), that a
//! cycle reads every object once, that a changed file and a damaged object
//! are taken in their turn, the `--json` fields, and bad command lines.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::common::*;
use crate::server::S3Server;

const BUCKET: &str = "bkt";
const TARGET: &str = "bkt::pre";
const MANIFESTS: &str = "pre/.s3backup/";

/// A server and a backed-up tree of `n` files `f00`…, each of its own size.
fn setup(n: usize) -> (S3Server, TestEnv) {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    for i in 0..n {
        env.write(&format!("f{i:02}"), noise(100 + i, i as u64));
    }
    env.backup_ok(TARGET, &[]);
    (server, env)
}

/// `verify TARGET --deep --sample SHARE --json --state STATE`.
fn verify(env: &TestEnv, share: &str, state: &std::path::Path) -> Run {
    let mut cmd = env.cmd();
    cmd.args(["verify", TARGET, "--deep", "--sample", share, "--json"])
        .arg("--endpoint-url")
        .arg(env.endpoint.as_deref().unwrap())
        .arg("--state")
        .arg(state);
    run(cmd)
}

/// A run's report, and the file objects it downloaded (from the server's log, sorted).
#[track_caller]
fn sampled(server: &S3Server, env: &TestEnv, share: &str, code: i32) -> (Value, Vec<String>) {
    server.clear_requests();
    let r = verify(env, share, &env.state);
    r.expect_code(code);
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}\n{}", r.show()));
    let mut got: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|q| q.op == "GetObject")
        .filter_map(|q| q.key)
        .filter(|k| !k.starts_with(MANIFESTS))
        .map(|k| k.trim_start_matches("pre/").to_string())
        .collect();
    got.sort();
    (v, got)
}

#[test]
fn twenty_runs_of_a_twentieth_read_every_file_once_then_the_oldest_again() {
    let (server, env) = setup(40);
    let mut reads: BTreeMap<String, usize> = BTreeMap::new();
    let mut first_run = Vec::new();
    for run in 1..=20u64 {
        let share = if run % 2 == 0 { "5%" } else { "1/20" };
        let (v, got) = sampled(&server, &env, share, 0);
        assert_eq!(got.len(), 2, "run {run}: {got:?}");
        if run == 1 {
            // Never checked: manifest order.
            assert_eq!(got, ["f00", "f01"]);
            first_run = got.clone();
        }
        let s = &v["sample"];
        assert_eq!(
            (s["files"].as_u64(), s["slice"].as_u64()),
            (Some(40), Some(2)),
            "{v}"
        );
        assert_eq!(s["checked"], 2, "{v}");
        assert_eq!(s["covered"], 2 * run, "{v}");
        assert_eq!(s["never_checked"], 40 - 2 * run, "{v}");
        assert_eq!(s["remembered"], true);
        assert!(
            s["oldest_check"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{v}"
        );
        let bytes: u64 = got.iter().map(|f| 100 + f[1..].parse::<u64>().unwrap()).sum();
        assert_eq!(v["bytes_checked"], bytes, "{v}");
        // The other files still get the listing's checks.
        assert_eq!(
            (v["files"].as_u64(), v["ok"].as_u64()),
            (Some(40), Some(40)),
            "{v}"
        );
        for f in got {
            *reads.entry(f).or_default() += 1;
        }
    }
    assert_eq!(reads.len(), 40, "{reads:?}");
    assert!(reads.values().all(|&n| n == 1), "{reads:?}");
    // The next cycle starts with the files checked longest ago.
    let (_, got) = sampled(&server, &env, "1/20", 0);
    assert_eq!(got, first_run);
    // The text summary says the same.
    let mut cmd = env.cmd();
    cmd.args(["verify", TARGET, "--deep", "--sample", "1/20", "--endpoint-url"])
        .arg(env.endpoint.as_deref().unwrap())
        .arg("--state")
        .arg(&env.state);
    let r = run(cmd);
    r.expect_code(0);
    assert!(
        r.stdout.contains("sample 1/20: checked 2 of 40 files this run"),
        "{}",
        r.show()
    );
    assert!(
        r.stdout.contains("cycle: 40 of 40 files checked intact"),
        "{}",
        r.show()
    );
}

#[test]
fn a_changed_file_counts_as_never_checked() {
    let (server, env) = setup(40);
    for _ in 0..3 {
        sampled(&server, &env, "1/20", 0);
    }
    // f01 was checked in the first run; its content changes.
    env.write("f01", "new content");
    env.backup_ok(TARGET, &[]);
    let (v, got) = sampled(&server, &env, "1/20", 0);
    assert_eq!(got, ["f01", "f06"], "{v}");
    assert_eq!(v["sample"]["covered"], 7, "{v}");
}

#[test]
fn a_damaged_object_is_found_when_its_turn_comes_and_read_again_next_run() {
    let (server, env) = setup(40);
    // Same size, other bytes, behind the server's back.
    let path = server.object_path(BUCKET, "pre/f05");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    for _ in 0..2 {
        let (v, got) = sampled(&server, &env, "1/20", 0);
        assert!(!got.contains(&"f05".to_string()), "{v}");
    }
    let (v, got) = sampled(&server, &env, "1/20", 1);
    assert_eq!(got, ["f04", "f05"]);
    assert_eq!(v["mismatched"], 1, "{v}");
    assert_eq!(v["problems"][0]["path"], "f05", "{v}");
    // A failed check is not a check: f05 is read first next time.
    let (v, got) = sampled(&server, &env, "1/20", 1);
    assert_eq!(got, ["f05", "f06"], "{v}");
    assert_eq!(v["sample"]["never_checked"], 34, "{v}");
}

#[test]
fn without_a_state_file_the_slice_is_random_and_not_remembered() {
    let (server, env) = setup(40);
    let none = env.root().join("no-state.db");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..3 {
        server.clear_requests();
        let r = verify(&env, "10%", &none);
        r.expect_code(0);
        let v: Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(v["sample"]["remembered"], false, "{v}");
        assert_eq!(v["sample"]["checked"], 4, "{v}");
        assert_eq!(v["sample"]["covered"], 4, "{v}");
        let got: Vec<String> = server
            .requests()
            .into_iter()
            .filter(|q| q.op == "GetObject")
            .filter_map(|q| q.key)
            .filter(|k| !k.starts_with(MANIFESTS))
            .collect();
        assert_eq!(got.len(), 4);
        seen.extend(got);
    }
    assert!(!none.exists(), "verify made a state file");
    // Three random slices of 4 out of 40 are the same one only by a 1-in-8-million chance.
    assert!(seen.len() > 4, "{seen:?}");
}

#[test]
fn sample_needs_deep_and_one_snapshot_and_a_share() {
    let (_server, env) = setup(2);
    let base = |args: &[&str]| {
        let mut cmd = env.cmd();
        cmd.args(["verify", TARGET, "--endpoint-url"])
            .arg(env.endpoint.as_deref().unwrap())
            .arg("--state")
            .arg(&env.state)
            .args(args);
        run(cmd)
    };
    let r = base(&["--sample", "5%"]);
    r.expect_code(2);
    assert!(r.error_line().contains("--sample needs --deep"), "{}", r.show());
    let r = base(&["--deep", "--all", "--sample", "5%"]);
    r.expect_code(2);
    assert!(r.stderr.contains("--all"), "{}", r.show());
    for bad in ["0%", "150%", "3/2", "five", "1/0"] {
        let r = base(&["--deep", "--sample", bad]);
        r.expect_code(2);
        assert!(r.stderr.contains(bad), "{bad}: {}", r.show());
    }
    // A slice is at least one file; all of a tiny snapshot at 100%.
    let r = base(&["--deep", "--sample", "1%", "--json"]);
    r.expect_code(0);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["sample"]["checked"], 1, "{v}");
    let r = base(&["--deep", "--sample", "100%", "--json"]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["sample"]["checked"], 2, "{v}");
}

/// `sampled`'s GetObject log with each key once (a failing read may be retried).
fn once(mut got: Vec<String>) -> Vec<String> {
    got.dedup();
    got
}

#[test]
fn a_file_that_cannot_be_read_goes_to_the_back_of_the_queue_and_is_not_counted_checked() {
    let (server, env) = setup(8);
    // As S3 answers for a GLACIER object: listed, never read.
    server.archive_key("pre/f00");
    let (v, got) = sampled(&server, &env, "1/4", 3);
    assert_eq!(once(got), ["f00", "f01"], "{v}");
    let s = &v["sample"];
    assert_eq!(
        (s["checked"].as_u64(), s["unreadable"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    assert_eq!(
        (s["covered"].as_u64(), s["never_checked"].as_u64()),
        (Some(1), Some(7)),
        "{v}"
    );
    assert_eq!(v["unreadable"], 1, "{v}");
    assert_eq!(v["bytes_checked"], 101, "{v}");
    // It is not taken first again: the files never checked are.
    for (run, want) in [(2, ["f02", "f03"]), (3, ["f04", "f05"]), (4, ["f06", "f07"])] {
        let (v, got) = sampled(&server, &env, "1/4", 0);
        assert_eq!(got, want, "run {run}: {v}");
        assert_eq!(v["sample"]["covered"], 2 * run - 1, "{v}");
    }
    // Then the oldest attempts, the unreadable one among them; still not covered.
    let (v, got) = sampled(&server, &env, "1/4", 3);
    assert_eq!(once(got), ["f00", "f01"], "{v}");
    assert_eq!(
        (
            v["sample"]["covered"].as_u64(),
            v["sample"]["never_checked"].as_u64()
        ),
        (Some(7), Some(1)),
        "{v}"
    );
    // The text says what was read and what could not be.
    let mut cmd = env.cmd();
    cmd.args(["verify", TARGET, "--deep", "--sample", "100%", "--endpoint-url"])
        .arg(env.endpoint.as_deref().unwrap())
        .arg("--state")
        .arg(&env.state);
    let r = run(cmd);
    r.expect_code(3);
    assert!(
        r.stdout.contains(
            "sample 100%: checked 7 of 8 files this run (728 B downloaded), 1 of the slice could not be read"
        ),
        "{}",
        r.show()
    );
    assert!(
        r.stdout.contains("cycle: 7 of 8 files checked intact"),
        "{}",
        r.show()
    );
}

#[test]
fn checks_on_one_endpoint_do_not_count_for_the_same_bucket_on_another() {
    let (a, mut env) = setup(4);
    let (v, got) = sampled(&a, &env, "1/4", 0);
    assert_eq!(
        (got.as_slice(), &v["sample"]["covered"]),
        (&["f00".to_string()][..], &Value::from(1))
    );
    // The same bucket and prefix on another server, backed up with the same state file.
    let b = S3Server::start();
    b.create_bucket(BUCKET);
    env.endpoint = Some(b.endpoint());
    env.backup_ok(TARGET, &[]);
    let (v, got) = sampled(&b, &env, "1/4", 0);
    assert_eq!(got, ["f00"], "{v}");
    assert_eq!(
        (
            v["sample"]["covered"].as_u64(),
            v["sample"]["never_checked"].as_u64()
        ),
        (Some(1), Some(3)),
        "{v}"
    );
    // Server A's record is its own.
    env.endpoint = Some(a.endpoint());
    let (v, got) = sampled(&a, &env, "1/4", 0);
    assert_eq!(got, ["f01"], "{v}");
    assert_eq!(v["sample"]["covered"], 2, "{v}");
}

#[test]
fn a_file_this_run_finds_missing_is_not_covered_whatever_the_record_says() {
    let (server, env) = setup(4);
    // One file a run, so f03 is the one checked last.
    for run in 1..=4 {
        let (v, _) = sampled(&server, &env, "1/4", 0);
        assert_eq!(v["sample"]["covered"], run, "{v}");
    }
    std::fs::remove_file(server.object_path(BUCKET, "pre/f03")).unwrap();
    let (v, got) = sampled(&server, &env, "1/4", 1);
    assert_eq!(got, ["f00"], "{v}");
    assert_eq!(v["missing"], 1, "{v}");
    let s = &v["sample"];
    assert_eq!(
        (s["covered"].as_u64(), s["never_checked"].as_u64()),
        (Some(3), Some(1)),
        "{v}"
    );
}

#[test]
fn a_local_object_rewritten_with_new_times_is_reported_mismatched_and_not_covered() {
    let env = TestEnv::new();
    for i in 0..4 {
        env.write(&format!("f{i:02}"), noise(100 + i, i as u64));
    }
    let store = env.root().join("store");
    let target = store.to_str().unwrap().to_string();
    env.backup_ok(&target, &[]);
    let verify = |share: &str, code: i32| {
        let mut cmd = env.cmd();
        cmd.args([
            "verify", &target, "--deep", "--sample", share, "--json", "--state",
        ])
        .arg(&env.state);
        let r = run(cmd);
        r.expect_code(code);
        serde_json::from_str::<Value>(&r.stdout).unwrap_or_else(|e| panic!("{e}\n{}", r.show()))
    };
    // One file a run, so f03 is the one checked last (not read next).
    for run in 1..=4 {
        assert_eq!(verify("1/4", 0)["sample"]["covered"], run);
    }
    // Same bytes, written again an hour later: the listing's ETag differs.
    let object = store.join("f03");
    let bytes = std::fs::read(&object).unwrap();
    std::fs::write(&object, &bytes).unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&object)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let v = verify("1/4", 1);
    assert_eq!(v["mismatched"], 1, "{v}");
    assert_eq!(v["problems"][0]["path"], "f03", "{v}");
    let s = &v["sample"];
    assert_eq!(
        (s["covered"].as_u64(), s["never_checked"].as_u64()),
        (Some(3), Some(1)),
        "{v}"
    );
}

#[test]
fn a_share_with_spaces_is_refused_not_echoed() {
    let (_server, env) = setup(2);
    for bad in ["1 /20", " 5%", "5 %", "1/ 20"] {
        let mut cmd = env.cmd();
        cmd.args(["verify", TARGET, "--deep", "--sample", bad, "--endpoint-url"])
            .arg(env.endpoint.as_deref().unwrap())
            .arg("--state")
            .arg(&env.state);
        let r = run(cmd);
        r.expect_code(2);
        assert!(
            r.stderr.contains(&format!("'{bad}' has a space in it")),
            "{bad}: {}",
            r.show()
        );
        assert!(r.stdout.is_empty(), "{bad}: {}", r.show());
    }
}
