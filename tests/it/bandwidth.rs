//! `--max-bandwidth` on backup and restore, on S3 (the in-process server)
//! and on the local directory store: the run's wall time is measured and
//! must be at least 80 % of what its bytes take at the limit (a bound on
//! the run, never a sleep in the test). The bytes are paced as they are
//! sent, so a single request's body (the last or only one) is held to the
//! rate too, and parallel parts of a multipart upload share it.

use std::time::{Duration, Instant};

use crate::common::*;
use crate::server::S3Server;

const MIB: usize = 1024 * 1024;
const BUCKET: &str = "bkt";
const TARGET: &str = "bkt::pre";

/// Runs `f`, returning what it returned and how long it took.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

/// At least 80 % of `bytes` at `rate` bytes per second, and not wildly
/// more (a limiter that is far too slow is a bug too; the ceiling is
/// generous for a loaded machine).
#[track_caller]
fn assert_paced(took: Duration, bytes: usize, rate: usize, what: &str) {
    let expected = Duration::from_secs_f64(bytes as f64 / rate as f64);
    assert!(
        took >= expected.mul_f64(0.8),
        "{what}: {bytes} bytes at {rate} B/s took {took:?}, under 80 % of {expected:?}"
    );
    assert!(
        took <= expected * 4 + Duration::from_secs(5),
        "{what}: {bytes} bytes at {rate} B/s took {took:?}, far over {expected:?}"
    );
}

fn s3_setup() -> (S3Server, TestEnv) {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    (server, env)
}

#[test]
fn max_bandwidth_paces_a_single_upload_and_its_restore_on_s3() {
    let (server, env) = s3_setup();
    let content = noise(3 * MIB, 1);
    env.write("one.bin", &content);

    let (s, took) = timed(|| env.backup_ok(TARGET, &["--max-bandwidth", "1MiB"]));
    assert_eq!(s.uploaded, 1);
    assert_eq!(
        server.count("PutObject"),
        2,
        "one PutObject for the file, one for the manifest"
    );
    assert_paced(took, 3 * MIB, MIB, "backup");
    assert_eq!(server.object_bytes(BUCKET, "pre/one.bin").unwrap(), content);

    let dest = env.root().join("dest");
    let (s, took) = timed(|| env.restore_ok(TARGET, &dest, &["--max-bandwidth", "1MiB"]));
    assert_eq!((s.downloaded, s.failed), (1, 0), "{s:?}");
    assert_paced(took, 3 * MIB, MIB, "restore");
    assert_eq!(std::fs::read(dest.join("one.bin")).unwrap(), content);
}

#[test]
fn max_bandwidth_paces_a_single_upload_and_its_restore_on_the_local_store() {
    let env = TestEnv::new();
    let store = env.root().join("store");
    let target = store.to_str().unwrap().to_owned();
    let content = noise(3 * MIB, 2);
    env.write("one.bin", &content);

    let (s, took) = timed(|| env.backup_ok(&target, &["--max-bandwidth", "1MiB"]));
    assert_eq!(s.uploaded, 1);
    assert_paced(took, 3 * MIB, MIB, "backup");
    assert_eq!(std::fs::read(store.join("one.bin")).unwrap(), content);

    let dest = env.root().join("dest");
    let (s, took) = timed(|| env.restore_ok(&target, &dest, &["--max-bandwidth", "1MiB"]));
    assert_eq!((s.downloaded, s.failed), (1, 0), "{s:?}");
    assert_paced(took, 3 * MIB, MIB, "restore");
    assert_eq!(std::fs::read(dest.join("one.bin")).unwrap(), content);
}

#[test]
fn max_bandwidth_holds_for_parts_sent_in_parallel() {
    let (server, env) = s3_setup();
    // Two 5 MiB parts, sent at once, at 2.5 MiB/s: 4 s in all. Pacing each
    // request as a whole before it starts would let the second part go
    // after 2 s and finish at once.
    let content = noise(10 * MIB, 3);
    env.write("big.bin", &content);
    let args = [
        "--max-bandwidth",
        "2560K",
        "--multipart-threshold",
        "5MiB",
        "--part-size",
        "5MiB",
    ];
    let (s, took) = timed(|| env.backup_ok(TARGET, &args));
    assert_eq!(s.uploaded, 1);
    assert_eq!(server.count("UploadPart"), 2);
    assert_paced(took, 10 * MIB, 2560 * 1024, "multipart backup");
    assert_eq!(server.object_bytes(BUCKET, "pre/big.bin").unwrap(), content);
}

/// The largest rate a size can spell is paced without overflow (it used
/// to panic, exit 101), and one under 1 KiB/s, which the SDK's stall check
/// would end after minutes, is refused at once.
#[test]
fn max_bandwidth_at_its_extremes_runs_or_is_refused_in_one_line() {
    let (_server, env) = s3_setup();
    env.write("a.txt", "a");
    for huge in ["18446744073709551615", "200000T"] {
        env.backup(TARGET, &["--max-bandwidth", huge]).expect_code(0);
        let dest = env.root().join(format!("dest-{huge}"));
        env.restore(TARGET, &dest, &["--max-bandwidth", huge])
            .expect_code(0);
    }
    for tiny in ["1", "1023"] {
        let r = env.backup(TARGET, &["--max-bandwidth", tiny]);
        r.expect_code(2);
        assert!(r.stderr.contains("at least 1K"), "{}", r.show());
        assert_eq!(
            r.stderr
                .trim()
                .lines()
                .next()
                .map(|l| l.contains("--max-bandwidth")),
            Some(true),
            "{}",
            r.show()
        );
    }
}

#[test]
fn max_bandwidth_of_zero_is_refused_by_backup_and_restore() {
    let (_server, env) = s3_setup();
    env.write("a.txt", "a");
    let r = env.backup(TARGET, &["--max-bandwidth", "0"]);
    r.expect_code(2);
    assert!(r.stderr.contains("--max-bandwidth"), "{}", r.show());
    let dest = env.root().join("dest");
    let r = env.restore(TARGET, &dest, &["--max-bandwidth", "0"]);
    r.expect_code(2);
    assert!(r.stderr.contains("--max-bandwidth"), "{}", r.show());
    assert!(!dest.exists(), "nothing written");
    let r = env.restore(TARGET, &dest, &["--max-bandwidth", "fast"]);
    r.expect_code(2);
    assert!(r.stderr.contains("'fast' is not a size"), "{}", r.show());
}

#[test]
fn a_paced_upload_longer_than_the_read_timeout_is_not_cut_off() {
    let (server, env) = s3_setup();
    // The SDK's read timeout runs from the start of a request until the
    // answer's headers, so it covers sending the body: 3 s of pacing would
    // overrun a 1 s timeout on every attempt unless it is lengthened.
    let content = noise(3 * MIB, 4);
    env.write("one.bin", &content);
    let (s, took) = timed(|| env.backup_ok(TARGET, &["--max-bandwidth", "1MiB", "--read-timeout", "1"]));
    assert_eq!((s.uploaded, s.failed), (1, 0), "{s:?}");
    assert_eq!(server.count("PutObject"), 2, "no attempt was cut off and retried");
    assert_paced(took, 3 * MIB, MIB, "backup");
    assert_eq!(server.object_bytes(BUCKET, "pre/one.bin").unwrap(), content);
}
