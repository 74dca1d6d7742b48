//! File-system edge cases a backup meets in real trees.

use crate::common::*;
use crate::server::S3Server;

const BUCKET: &str = "bkt";
const TARGET: &str = "bkt::pre";

#[test]
fn fifos_are_skipped_with_a_note_and_never_block() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    env.write("a.txt", "a");
    let fifo = env.path("pipe");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let run = env.backup(TARGET, &["--json"]);
    run.expect_code(0);
    let s = run.summary();
    assert_eq!((s.counts().uploaded, s.skipped), (1, 1));
    assert!(
        run.stderr.contains("pipe") && run.stderr.contains("special file"),
        "{}",
        run.show()
    );
    assert_eq!(server.count_key("PutObject", "pre/pipe"), 0);
}

#[test]
fn a_path_whose_key_is_too_long_for_s3_fails_alone() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    env.write("short.txt", "fine");
    let segment = "d".repeat(250);
    let long = format!("{segment}/{segment}/{segment}/{segment}/{segment}/file.txt");
    env.write(&long, "too deep for a key");
    let run = env.backup(TARGET, &["--json"]);
    run.expect_code(3);
    let s = run.summary();
    assert_eq!(s.counts().uploaded, 1);
    assert_eq!(s.failures.len(), 1, "{:?}", s.failures);
    assert_eq!(s.failures[0].path, long);
    assert!(s.failures[0].error.contains("1024"), "{:?}", s.failures[0]);
    assert_eq!(
        server.count("PutObject") - 1,
        1,
        "short.txt and the manifest only"
    );
}
