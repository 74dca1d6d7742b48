//! `s3backup shell` driven by piped stdin: commands run as on the command
//! line, errors do not end it, `exit` does.

use std::io::Write;
use std::process::Stdio;

use crate::common::*;
use crate::server::S3Server;

/// Runs `s3backup --state STATE shell` with `input` on stdin.
fn shell(env: &TestEnv, input: &str) -> Run {
    shell_with(env, &[], input)
}

/// Runs `s3backup --state STATE shell OPTIONS` with `input` on stdin.
fn shell_with(env: &TestEnv, options: &[&str], input: &str) -> Run {
    let mut cmd = env.cmd();
    cmd.arg("--state")
        .arg(&env.state)
        .arg("shell")
        .args(options)
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

/// Writes a credentials file (where the test environment points
/// `AWS_SHARED_CREDENTIALS_FILE`) with a profile `p` holding the server's keys.
fn profile_p(env: &TestEnv) {
    std::fs::write(
        env.home.join("no-such-aws-credentials"),
        format!(
            "[p]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            S3Server::ACCESS_KEY,
            S3Server::SECRET_KEY
        ),
    )
    .unwrap();
}

#[test]
fn connection_options_given_to_the_shell_apply_to_every_command() {
    let server = S3Server::start();
    server.create_bucket("bkt");
    let env = TestEnv::new();
    env.write("a.txt", "a").write("d/b.txt", "b");
    profile_p(&env);
    let endpoint = server.endpoint();
    let (src, dest) = (env.src.display().to_string(), env.root().join("dest"));
    let input = format!(
        "backup '{src}' bkt::pre\nsnapshots bkt::pre --json\nverify bkt::pre\nrestore bkt::pre '{}'\n",
        dest.display()
    );
    let r = shell_with(
        &env,
        &[
            "--endpoint-url",
            &endpoint,
            "--profile",
            "p",
            "--region",
            "eu-west-3",
            "--path-style",
        ],
        &input,
    );
    r.expect_code(0);
    assert!(r.stderr.is_empty(), "{}", r.show());
    assert_eq!(server.object_bytes("bkt", "pre/a.txt").unwrap(), b"a");
    assert!(r.stdout.contains("\"files\":2"), "{}", r.show());
    assert_eq!(tree(&dest), tree(&env.src), "{}", r.show());
}

#[test]
fn a_command_in_the_shell_overrides_the_shells_connection_options() {
    let server = S3Server::start();
    server.create_bucket("bkt");
    let env = TestEnv::new();
    env.write("a.txt", "a");
    profile_p(&env);
    let endpoint = server.endpoint();
    let src = env.src.display().to_string();
    // The shell's profile does not exist: commands that take it fail
    // (naming it), those that give their own work.
    let input = format!(
        "backup '{src}' bkt::pre\n\
         backup '{src}' bkt::pre --profile p\n\
         snapshots bkt::pre --endpoint-url http://127.0.0.1:1 --profile p\n\
         snapshots bkt::pre --profile p --json\n"
    );
    let r = shell_with(
        &env,
        &["--endpoint-url", &endpoint, "--profile", "nosuchprofile"],
        &input,
    );
    r.expect_code(0);
    let errors: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 2, "{}", r.show());
    assert!(errors[0].contains("'nosuchprofile'"), "{}", r.show());
    assert!(errors[1].contains("127.0.0.1:1"), "{}", r.show());
    assert_eq!(server.object_bytes("bkt", "pre/a.txt").unwrap(), b"a");
    assert!(r.stdout.contains("\"files\":1"), "{}", r.show());
}

/// The shell's connection options count as typed on each line, so they
/// win over a named set's saved ones as they do on the command line:
/// `backup --set NAME` in a shell started with another `--endpoint-url`
/// backs up to that endpoint, not the saved one.
#[test]
fn the_shells_endpoint_wins_over_a_named_sets_saved_one() {
    let saved = S3Server::start();
    saved.create_bucket("bkt");
    let other = S3Server::start();
    other.create_bucket("bkt");
    let env = TestEnv::with_server(&saved);
    env.write("a.txt", "a");
    env.backup_ok("bkt::pre", &["--set", "s3x"]);
    env.write("b.txt", "b");

    let r = shell_with(
        &env,
        &["--endpoint-url", &other.endpoint()],
        "backup --set s3x --json\n",
    );
    r.expect_code(0);
    assert_eq!(
        other.object_bytes("bkt", "pre/b.txt").as_deref(),
        Some(&b"b"[..]),
        "{}",
        r.show()
    );
    assert_eq!(
        other.object_bytes("bkt", "pre/a.txt").as_deref(),
        Some(&b"a"[..]),
        "{}",
        r.show()
    );
    assert!(
        saved.object_bytes("bkt", "pre/b.txt").is_none(),
        "the saved endpoint was used: {}",
        r.show()
    );
}

/// `-vv` typed on a line raises the log level for that line only: the
/// debug line of the S3 client's set-up shows for it, not for the next
/// line nor for the one before. It used to be ignored.
#[test]
fn verbose_flags_on_a_line_hold_for_that_line() {
    let server = S3Server::start();
    server.create_bucket("bkt");
    let env = TestEnv::new();
    env.write("a.txt", "a");
    let endpoint = server.endpoint();
    let r = shell_with(
        &env,
        &["--endpoint-url", &endpoint],
        "snapshots bkt::pre\nsnapshots bkt::pre -vv\nsnapshots bkt::pre\n",
    );
    r.expect_code(0);
    assert_eq!(
        r.stderr.matches("S3 client ready").count(),
        1,
        "once, for the -vv line\n{}",
        r.show()
    );
}
