//! Requests in flight find their own level (`src/store/flow.rs`): through
//! a proxy that holds every request 200 ms, as a store that far away would
//! (long enough that a debug build on a busy machine is still waiting on
//! the store, not on its CPU, with 16 in flight),
//! a default backup and restore keep more than the old fixed 16 requests
//! in flight and `--jobs 8` never more than 8; through a proxy that also
//! answers a share of the uploads 503 SlowDown, the level comes down and
//! the run still stores every file. What is in flight is counted at the
//! proxy, and the run's own figure is its `--json` `concurrency`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::*;
use crate::proxy::{Fault, FaultProxy};
use crate::server::S3Server;

const BUCKET: &str = "bkt";
const TARGET: &str = "bkt::pre";

/// `n` small different files in ten directories, by relative path.
fn small_files(env: &TestEnv, n: usize) -> BTreeMap<String, Vec<u8>> {
    (0..n)
        .map(|i| {
            let rel = format!("d{}/f{i:04}.txt", i % 10);
            let content = noise(1 + (i * 37) % 300, i as u64 + 1);
            env.write(&rel, &content);
            (rel, content)
        })
        .collect()
}

/// A server, a proxy holding every request `delay`, an env through it.
fn far(delay: Duration) -> (S3Server, FaultProxy, TestEnv) {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let proxy = FaultProxy::start(&server, 18);
    proxy.set_delay(delay);
    let env = TestEnv::with_endpoint(&proxy.endpoint());
    (server, proxy, env)
}

/// The `concurrency` object of a `--json` summary.
#[track_caller]
fn concurrency(run: &Run) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON value: {e}\n{}", run.show()));
    v.get("concurrency")
        .cloned()
        .unwrap_or_else(|| panic!("no concurrency in the summary\n{}", run.show()))
}

#[track_caller]
fn assert_restored(dest: &std::path::Path, files: &BTreeMap<String, Vec<u8>>) {
    for (rel, content) in files {
        let got = std::fs::read(dest.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert!(got == *content, "{rel} restored differs");
    }
}

#[test]
fn a_far_store_gets_more_than_16_requests_in_flight_and_jobs_bounds_them() {
    let (_server, proxy, env) = far(Duration::from_millis(200));
    let files = small_files(&env, 400);
    let run = env.backup(TARGET, &["--json", "-v"]);
    run.expect_code(0);
    assert_eq!(run.summary().uploaded, 400);
    let most = proxy.in_flight().into_iter().max().unwrap_or(0);
    assert!(
        most > 16,
        "a default backup had at most {most} requests in flight\n{}",
        run.show()
    );
    let c = concurrency(&run);
    assert!(c["max_level"].as_u64().unwrap() > 16, "{c}");
    assert!(c["max_in_flight"].as_u64().unwrap() > 16, "{c}");

    let dest = env.root().join("dest");
    let before = proxy.in_flight().len();
    let run = env.restore(TARGET, &dest, &["--json", "-v"]);
    run.expect_code(0);
    assert_eq!(run.restore_summary().downloaded, 400);
    assert_restored(&dest, &files);
    let most = proxy.in_flight()[before..].iter().copied().max().unwrap_or(0);
    assert!(
        most > 16,
        "a default restore had at most {most} requests in flight\n{}",
        run.show()
    );

    // --jobs is the ceiling.
    for i in 0..100 {
        env.write(&format!("more/g{i:03}.txt"), noise(10 + i, 7000 + i as u64));
    }
    let before = proxy.in_flight().len();
    let run = env.backup(TARGET, &["--json", "--jobs", "8"]);
    run.expect_code(0);
    assert_eq!(run.summary().uploaded, 100);
    let most = proxy.in_flight()[before..].iter().copied().max().unwrap_or(0);
    assert!((2..=8).contains(&most), "--jobs 8 had {most} requests in flight");
    assert!(concurrency(&run)["max_level"].as_u64().unwrap() <= 8);
}

#[test]
fn slow_down_answers_bring_the_level_down_and_the_run_completes() {
    let (server, proxy, env) = far(Duration::from_millis(100));
    let files = small_files(&env, 150);
    proxy.set_filter(|p| p.method == hyper::Method::PUT);
    proxy.set_faults(0.1, &[Fault::SlowDown]);
    let run = env.backup(TARGET, &["--json", "-v"]);
    run.expect_code(0);
    let s = run.summary();
    assert_eq!((s.uploaded, s.failed), (150, 0), "{}", run.show());
    assert!(proxy.stats().slow_downs > 0);
    for (rel, content) in &files {
        let stored = server.object_bytes(BUCKET, &format!("pre/{rel}"));
        assert!(
            stored.as_deref() == Some(&content[..]),
            "{rel} is not stored whole"
        );
    }
    // At the proxy: the later half of the run never had more than 8 in
    // flight (a fixed 16 keeps about 16 there).
    let seen = proxy.in_flight();
    let later = seen[seen.len() / 2..].iter().copied().max().unwrap_or(0);
    assert!(
        later <= 8,
        "{later} requests in flight late in a throttled run\n{}",
        run.show()
    );
    let c = concurrency(&run);
    assert!(c["throttled"].as_u64().unwrap() > 0, "{c}");
    assert!(c["final_level"].as_u64().unwrap() < 16, "{c}");
}
