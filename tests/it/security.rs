//! What a backup leaves lying around and what it prints: the state file is
//! private, credentials never reach the output, and two runs of one set
//! never overlap.

use std::os::unix::fs::PermissionsExt;

use crate::common::*;
use crate::server::S3Server;

const BUCKET: &str = "bkt";
const TARGET: &str = "bkt::pre";

fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn state_file_and_its_directory_are_private() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let mut env = TestEnv::with_server(&server);
    env.state = env.root().join("fresh-dir/nested/state.db");
    env.write("a.txt", "a");
    env.backup_ok(TARGET, &[]);
    assert_eq!(mode_of(&env.state), 0o600, "state file");
    assert_eq!(mode_of(env.state.parent().unwrap()), 0o700, "state directory");
    for suffix in ["-wal", "-shm"] {
        let side = env.root().join(format!("fresh-dir/nested/state.db{suffix}"));
        if side.exists() {
            assert_eq!(mode_of(&side), 0o600, "{}", side.display());
        }
    }
}

#[test]
fn credentials_never_appear_in_output_even_at_debug_level() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    env.write("a.txt", "a");
    env.write("dir/b.txt", "b");
    let ok = env.backup(TARGET, &["-vv"]);
    // A failing run prints the server's error too.
    server.deny_bucket("denied-bucket");
    let denied = env.backup("denied-bucket::p", &["-vv"]);
    for run in [&ok, &denied] {
        for text in [&run.stdout, &run.stderr] {
            assert!(
                !text.contains(S3Server::SECRET_KEY),
                "secret key printed:\n{}",
                run.show()
            );
            assert!(
                !text.contains("Signature="),
                "request signature printed:\n{}",
                run.show()
            );
        }
    }
    assert!(
        ok.stderr.contains("DEBUG"),
        "-vv logs debug lines:\n{}",
        ok.show()
    );
    denied.expect_code(1);
}

#[test]
fn a_second_run_of_the_same_set_refuses_while_the_first_holds_it() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    env.write("a.txt", "a");
    env.backup_ok(TARGET, &[]);
    // Hold the set's lock as a running backup would (set 1 of this state file).
    let lock_path = env.root().join("state.db.set-1.lock");
    let lock = std::fs::File::options().write(true).open(&lock_path).unwrap();
    lock.try_lock().unwrap();
    env.write("b.txt", "b");
    server.clear_requests();
    let run = env.backup(TARGET, &[]);
    run.expect_code(1);
    assert!(run.stderr.contains("already backing up"), "{}", run.show());
    assert_eq!(
        server.count("PutObject"),
        0,
        "nothing uploaded by the refused run"
    );
    // Another set (another target) is not blocked.
    env.backup_ok("bkt::other", &[]);
    drop(lock);
    let s = env.backup_ok(TARGET, &[]);
    assert_eq!(s.counts().uploaded, 1);
}
