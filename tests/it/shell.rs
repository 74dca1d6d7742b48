//! `s3backup shell` driven by piped stdin: commands run as on the command
//! line, errors do not end it, `exit` does.

use std::io::Write;
use std::process::Stdio;

use crate::common::*;
use crate::server::S3Server;

/// Runs `s3backup --state STATE shell` with `input` on stdin.
fn shell(env: &TestEnv, input: &str) -> Run {
    let mut cmd = env.cmd();
    cmd.arg("--state")
        .arg(&env.state)
        .arg("shell")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn piped_commands_back_up_list_and_restore_and_errors_do_not_stop_it() {
    let env = TestEnv::new();
    env.write("a.txt", "a").write("d/b.txt", "b");
    let store = env.root().join("store");
    let dest = env.root().join("restored");
    let (src, store_s, dest_s) = (
        env.src.display().to_string(),
        store.display().to_string(),
        dest.display().to_string(),
    );
    let input = format!(
        "# a comment\n\nbackup '{src}' '{store_s}'\nsnapshots '{store_s}'\nnot-a-command\n\
         restore '{store_s}' '{dest_s}'\nhelp\nhelp restore\nexit\nbackup '{src}' /never\n"
    );
    let r = shell(&env, &input);
    r.expect_code(0);
    assert_eq!(tree(&dest), tree(&env.src), "{}", r.show());
    assert!(r.stdout.contains("backed up"), "{}", r.show());
    assert!(
        r.stdout.contains("Commands (the same words"),
        "help: {}",
        r.show()
    );
    assert!(r.stdout.contains("--no-clobber"), "help restore: {}", r.show());
    assert!(
        r.stderr.contains("not-a-command"),
        "the bad line is reported: {}",
        r.show()
    );
    assert!(!std::path::Path::new("/never").exists(), "nothing after exit ran");
}

#[test]
fn the_shell_talks_to_s3_and_ends_with_the_last_commands_code() {
    let server = S3Server::start();
    server.create_bucket("bkt");
    let env = TestEnv::with_server(&server);
    env.write("a.txt", "a");
    let endpoint = server.endpoint();
    let src = env.src.display().to_string();
    let r = shell(
        &env,
        &format!(
            "backup '{src}' bkt::pre --endpoint-url {endpoint}\nsnapshots bkt::pre --endpoint-url {endpoint} --json\n"
        ),
    );
    r.expect_code(0);
    assert_eq!(server.object_bytes("bkt", "pre/a.txt").unwrap(), b"a");
    assert!(r.stdout.contains("\"files\":1"), "{}", r.show());
    // End of input without `exit`: the code is the last command's.
    let r = shell(
        &env,
        "restore bkt::missing /tmp/x --endpoint-url http://127.0.0.1:1\n",
    );
    r.expect_code(1);
}
