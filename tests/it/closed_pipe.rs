//! A closed stdout is not a crash: every command that prints, run with its
//! stdout a pipe whose reading end is already closed (as `s3backup state
//! files | head -1` leaves it once `head` has its line), ends quietly,
//! with nothing on stderr and exit 0, or the exit code of the run itself
//! (a backup, restore or verify still reports its failures on stderr).

use std::process::{Command, Stdio};

use crate::common::*;

/// Runs `cmd` with stdout a pipe nobody reads: its reading end is closed
/// before the binary starts, so its first write fails with EPIPE.
fn closed_stdout(mut cmd: Command) -> Run {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let child = cmd
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn s3backup");
    let out = child.wait_with_output().expect("wait for s3backup");
    Run {
        code: out.status.code(),
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs each command line of `lines` (after `s3backup --state STATE`)
/// with a closed stdout and checks that every one exits with `code` and
/// prints nothing on stderr; all failures are reported together.
#[track_caller]
fn all_quiet(env: &TestEnv, lines: &[Vec<String>]) {
    let mut failed = Vec::new();
    for words in lines {
        let mut cmd = env.cmd();
        cmd.arg("--state").arg(&env.state).args(words);
        let r = closed_stdout(cmd);
        if r.code != Some(0) || !r.stderr.is_empty() {
            failed.push(format!("s3backup {}\n{}", words.join(" "), r.show()));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// Words of a command line.
fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// A source of two files backed up to a local store; returns the store.
fn backed_up(env: &TestEnv) -> String {
    env.write("a.txt", "a").write("d/b.txt", "bb");
    let store = env.root().join("store").display().to_string();
    env.backup_ok(&store, &[]);
    store
}

#[test]
fn state_and_sets_commands_stop_quietly() {
    let env = TestEnv::new();
    backed_up(&env);
    let lines: Vec<Vec<String>> = [
        "state files",
        "state files --json",
        "state files --set 1 d/*",
        "state runs",
        "state runs --json",
        "state sets",
        "state sets --json",
        "state stats",
        "state stats --json",
        "state show a.txt",
        "state show a.txt --json",
        "sets",
        "sets --json",
    ]
    .iter()
    .map(|l| words(l))
    .collect();
    all_quiet(&env, &lines);
}

#[test]
fn store_commands_stop_quietly() {
    let env = TestEnv::new();
    let store = backed_up(&env);
    env.write("c.txt", "c");
    env.backup_ok(&store, &[]);
    let dest = env.root().join("dest").display().to_string();
    let lines: Vec<Vec<String>> = [
        format!("snapshots {store}"),
        format!("snapshots {store} --json"),
        format!("snapshots forget {store} --keep-last 1 --dry-run"),
        format!("snapshots forget {store} --keep-last 1 --dry-run --json"),
        format!("snapshots diff {store} latest latest"),
        format!("snapshots diff {store} latest latest --json"),
        format!("snapshots ls {store} latest"),
        format!("snapshots ls {store} latest --json"),
        format!("snapshots find {store} *.txt"),
        format!("snapshots find {store} *.txt --json"),
        format!("verify {store}"),
        format!("verify {store} --json"),
        format!("restore {store} {dest}"),
        format!("restore {store} {dest}-json --json"),
        format!("restore {store} {dest}-events --json-progress"),
    ]
    .iter()
    .map(|l| words(l))
    .collect();
    all_quiet(&env, &lines);
    assert_eq!(tree(std::path::Path::new(&dest)), tree(&env.src));
}

#[test]
fn backups_stop_printing_quietly_and_are_done() {
    let env = TestEnv::new();
    env.write("a.txt", "a");
    let store = env.root().join("store");
    let src = env.src.display().to_string();
    let target = store.display().to_string();
    let lines: Vec<Vec<String>> = [
        format!("backup {src} {target} --dry-run"),
        format!("backup {src} {target} --json"),
        format!("backup {src} {target}"),
        format!("backup {src} {target} --json-progress"),
    ]
    .iter()
    .map(|l| words(l))
    .collect();
    env.write("b.txt", "b");
    all_quiet(&env, &lines);
    // The backups were done: the next run finds nothing to send.
    let r = env.backup_ok(&target, &[]);
    assert_eq!(r.uploaded, 0, "{r:?}");
    assert_eq!(r.unchanged, 2, "{r:?}");
}

#[test]
fn help_completions_man_and_the_shell_stop_quietly() {
    let env = TestEnv::new();
    let man_dir = env.root().join("man").display().to_string();
    let lines: Vec<Vec<String>> = [
        "--help",
        "backup --help",
        "--version",
        "completions bash",
        "completions zsh",
        "man",
        &format!("man --all {man_dir}"),
    ]
    .iter()
    .map(|l| words(l))
    .collect();
    all_quiet(&env, &lines);
    // The shell's own `help` and the commands typed in it.
    let mut cmd = env.cmd();
    cmd.arg("--state")
        .arg(&env.state)
        .arg("shell")
        .stdin(Stdio::piped());
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = cmd.stdout(writer).stderr(Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"help\ncompletions bash\nexit\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn a_verify_that_finds_damage_still_says_so_with_stdout_closed() {
    let env = TestEnv::new();
    let store = backed_up(&env);
    std::fs::remove_file(std::path::Path::new(&store).join("a.txt")).unwrap();
    let mut cmd = env.cmd();
    cmd.args(["--state"]).arg(&env.state).args(["verify", &store]);
    let r = closed_stdout(cmd);
    r.expect_code(1);
    assert!(
        r.error_line().contains("not intact"),
        "the outcome is still reported\n{}",
        r.show()
    );
    assert!(!r.stderr.contains("panicked"), "{}", r.show());
}

/// Runs `cmd` with stderr a pipe whose reading end is already closed (as
/// `s3backup … 2>&1 | head -1` leaves it once `head` has its line).
fn closed_stderr(mut cmd: Command) -> Run {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(writer)
        .output()
        .expect("run s3backup");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::new(),
    }
}

/// A closed stderr is not a crash either: a usage error still exits 2, a
/// failed run 1, a partial one 3, and a run with `-v` (log lines and
/// progress on stderr) finishes its work and records itself as done. Each
/// used to panic at its first message (exit 101), a backup leaving its
/// run `running` and a restore stopping part-way.
#[test]
fn a_closed_stderr_changes_no_exit_code_and_stops_no_run() {
    let env = TestEnv::new();
    let run = |words: &str| {
        let mut cmd = env.cmd();
        cmd.arg("--state").arg(&env.state).args(words.split_whitespace());
        closed_stderr(cmd)
    };
    assert_eq!(run("--bogus").code, Some(2));
    assert_eq!(run("backup /nonexistent/src /nonexistent/store").code, Some(1));
    for i in 0..50 {
        env.write(&format!("d{}/f{i}.txt", i % 5), format!("file {i}"));
    }
    let store = env.root().join("store").display().to_string();
    let r = run(&format!("backup {} {store} -v", env.src.display()));
    assert_eq!(r.code, Some(0), "{}", r.show());
    let mut cmd = env.cmd();
    cmd.arg("--state")
        .arg(&env.state)
        .args(["state", "runs", "--json"]);
    let runs = crate::common::run(cmd);
    runs.expect_code(0);
    assert!(!runs.stdout.contains("\"running\""), "{}", runs.show());
    // A restore whose directory d0 is blocked by a file: errors on stderr, exit 3,
    // and every other file restored.
    let dest = env.root().join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(dest.join("d0"), "in the way").unwrap();
    let r = run(&format!("restore {store} {} -v", dest.display()));
    assert_eq!(r.code, Some(3), "{}", r.show());
    for i in (0..50).filter(|i| i % 5 != 0) {
        let path = dest.join(format!("d{}/f{i}.txt", i % 5));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("file {i}"));
    }
}

/// A full disk under `> file` is an error, not a closed pipe: exit 1 and
/// one `error:` line that gives its reason once (it used to be printed
/// twice: `writing to stdout: No space left … : No space left …`).
#[test]
fn a_full_stdout_is_one_error_line_and_exit_1() {
    let full = std::path::Path::new("/dev/full");
    if !full.exists() {
        eprintln!("skipped: no /dev/full here");
        return;
    }
    let env = TestEnv::new();
    backed_up(&env);
    for words in [&["sets"][..], &["state", "files"], &["state", "runs"]] {
        let mut cmd = env.cmd();
        cmd.arg("--state").arg(&env.state).args(words);
        let out = cmd
            .stdout(std::fs::OpenOptions::new().write(true).open(full).unwrap())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let r = Run {
            code: out.status.code(),
            stdout: String::new(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        r.expect_code(1);
        assert_eq!(r.stderr.lines().count(), 1, "{words:?}\n{}", r.show());
        let line = r.error_line();
        assert!(line.starts_with("error: writing to stdout: "), "{}", r.show());
        assert_eq!(line.matches("(os error 28)").count(), 1, "{}", r.show());
    }
}
