//! Unattended runs tell someone how they went (issue 16): `--metrics-file`
//! (Prometheus text format, written atomically, the last success carried
//! over a failed run) and `--on-success` / `--on-failure` (a shell command
//! with the outcome in `S3BACKUP_*` variables), on backup and verify,
//! saved with named sets, never on a dry run. The hooks here write their
//! environment to a file the test then reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use crate::server::S3Server;

const BUCKET: &str = "monitor";
const TARGET: &str = "monitor::p";

/// A metrics file's samples: `name{labels}` -> value. Every line that is
/// not a comment must be one sample in the text format.
fn samples(file: &Path) -> BTreeMap<String, f64> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        assert!(
            series.ends_with('}') && series.contains('{'),
            "bad series {line:?}"
        );
        out.insert(
            series.to_owned(),
            value.parse().unwrap_or_else(|_| panic!("bad value {line:?}")),
        );
    }
    out
}

/// The one sample whose series starts with `name{` and contains `label`.
fn sample(s: &BTreeMap<String, f64>, name: &str, label: &str) -> f64 {
    let hits: Vec<f64> = s
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{name}{{")) && k.contains(label))
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(hits.len(), 1, "{name} {label} in {s:#?}");
    hits[0]
}

/// A hook that writes its `S3BACKUP_*` variables to `out` (and says
/// something on its stdout, which must not reach s3backup's stdout).
fn recorder(out: &Path) -> String {
    format!("echo hook-ran; env | grep '^S3BACKUP_' > '{}'", out.display())
}

/// The variables a [`recorder`] hook wrote (None if it did not run).
fn recorded(out: &Path) -> Option<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(out).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}

struct Fixture {
    server: S3Server,
    env: TestEnv,
}

impl Fixture {
    fn new() -> Fixture {
        let server = S3Server::start();
        server.create_bucket(BUCKET);
        let env = TestEnv::with_server(&server);
        env.write("a.txt", "alpha").write("d/b.txt", "bravo");
        Fixture { server, env }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.env.root().join(name)
    }
}

#[test]
fn metrics_file_holds_the_runs_numbers_and_keeps_the_last_success_through_a_failure() {
    let f = Fixture::new();
    let metrics = f.file("s3backup.prom");
    let m = metrics.to_str().unwrap();
    let r = f.env.backup(TARGET, &["--json", "--metrics-file", m]);
    r.expect_code(0);
    let summary = r.summary();
    let s = samples(&metrics);
    let labels = format!("{{command=\"backup\",set=\"\",target=\"s3://{BUCKET}/p\"");
    assert_eq!(sample(&s, "s3backup_last_run_exit_code", &labels), 0.0);
    assert_eq!(sample(&s, "s3backup_last_run_success", &labels), 1.0);
    assert_eq!(
        sample(&s, "s3backup_last_run_files", "outcome=\"uploaded\""),
        summary.uploaded as f64
    );
    assert_eq!(summary.uploaded, 2);
    assert_eq!(
        sample(&s, "s3backup_last_run_bytes", "direction=\"sent\""),
        summary.bytes_sent as f64
    );
    let success = sample(&s, "s3backup_last_success_timestamp_seconds", &labels);
    assert_eq!(
        success,
        sample(&s, "s3backup_last_run_timestamp_seconds", &labels)
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - success).abs() < 600.0, "{success} is not now ({now})");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&metrics).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "node_exporter runs as another user and must read it");
    }
    // Nothing but the file (no temporary file left) besides what was there.
    let stray: Vec<_> = std::fs::read_dir(f.env.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("metrics"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");

    // A run that fails (the bucket is gone) says so, keeping the success.
    f.server.deny_bucket(BUCKET);
    let r = f.env.backup(TARGET, &["--metrics-file", m]);
    r.expect_code(1);
    let s = samples(&metrics);
    assert_eq!(sample(&s, "s3backup_last_run_exit_code", &labels), 1.0);
    assert_eq!(sample(&s, "s3backup_last_run_success", &labels), 0.0);
    assert_eq!(
        sample(&s, "s3backup_last_success_timestamp_seconds", &labels),
        success
    );
    assert!(sample(&s, "s3backup_last_run_timestamp_seconds", &labels) >= success);
    assert!(
        !s.keys().any(|k| k.starts_with("s3backup_last_run_files")),
        "{s:#?}"
    );
}

#[test]
fn a_metrics_file_that_cannot_be_written_is_refused_before_anything_is_sent() {
    let f = Fixture::new();
    let missing = f.file("no/such/dir/x.prom");
    let under_a_file = f.env.path("a.txt/x.prom");
    let fifo = f.file("fifo.prom");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) on a path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for (bad, says) in [
        (missing.as_path(), "does not exist"),
        (f.env.root(), "is a directory"),
        (under_a_file.as_path(), "is not a directory"),
        (fifo.as_path(), "is not a regular file"),
    ] {
        f.server.clear_requests();
        let r = f.env.backup(TARGET, &["--metrics-file", bad.to_str().unwrap()]);
        r.expect_code(2);
        let line = r.error_line();
        assert!(line.contains("--metrics-file") && line.contains(says), "{line}");
        assert_eq!(f.server.requests().len(), 0, "{:?}", f.server.ops());
    }
}

#[test]
fn on_success_gets_the_outcome_in_its_environment_and_its_output_stays_off_stdout() {
    let f = Fixture::new();
    let out = f.file("hook.env");
    let failure_out = f.file("failure.env");
    let r = f.env.backup(
        TARGET,
        &[
            "--json",
            "--on-success",
            &recorder(&out),
            "--on-failure",
            &recorder(&failure_out),
        ],
    );
    r.expect_code(0);
    let summary = r.summary();
    assert!(r.stderr.contains("hook-ran"), "{}", r.show());
    let env = recorded(&out).expect("the --on-success command ran");
    assert!(
        recorded(&failure_out).is_none(),
        "--on-failure ran after a success"
    );
    let want = [
        ("S3BACKUP_COMMAND", "backup".to_owned()),
        ("S3BACKUP_OUTCOME", "success".to_owned()),
        ("S3BACKUP_EXIT_CODE", "0".to_owned()),
        ("S3BACKUP_TARGET", format!("s3://{BUCKET}/p")),
        ("S3BACKUP_SOURCE", f.env.src.display().to_string()),
        ("S3BACKUP_FILES_UPLOADED", "2".to_owned()),
        ("S3BACKUP_FILES_FAILED", "0".to_owned()),
        ("S3BACKUP_BYTES_SENT", summary.bytes_sent.to_string()),
        ("S3BACKUP_SNAPSHOT", summary.snapshot.clone().unwrap()),
    ];
    for (k, v) in want {
        assert_eq!(env.get(k), Some(&v), "{k} in {env:#?}");
    }
    assert!(env["S3BACKUP_DURATION_SECONDS"].parse::<f64>().is_ok());
    assert!(!env.contains_key("S3BACKUP_ERROR"));
}

#[test]
fn on_failure_runs_for_an_error_and_for_failed_files_and_a_failing_hook_is_a_warning() {
    let f = Fixture::new();
    let out = f.file("hook.env");
    let success_out = f.file("success.env");
    // An error: the bucket refuses us.
    f.server.deny_bucket(BUCKET);
    let hooks = [
        "--on-failure",
        &recorder(&out),
        "--on-success",
        &recorder(&success_out),
    ];
    let r = f.env.backup(TARGET, &hooks);
    r.expect_code(1);
    let env = recorded(&out).expect("the --on-failure command ran");
    assert_eq!(env["S3BACKUP_OUTCOME"], "failure");
    assert_eq!(env["S3BACKUP_EXIT_CODE"], "1");
    let error = r.error_line();
    assert_eq!(format!("error: {}", env["S3BACKUP_ERROR"]), error);
    // The error is printed before the hook's output.
    let (e, h) = (
        r.stderr.find("error: ").unwrap(),
        r.stderr.find("hook-ran").unwrap(),
    );
    assert!(e < h, "{}", r.show());
    assert!(recorded(&success_out).is_none());

    // Some files failed (exit 3): partial.
    f.server.allow_bucket(BUCKET);
    f.server.fail_key("d/b.txt", None, false);
    std::fs::remove_file(&out).unwrap();
    let r = f.env.backup(TARGET, &hooks);
    r.expect_code(3);
    let env = recorded(&out).expect("the --on-failure command ran");
    assert_eq!(env["S3BACKUP_OUTCOME"], "partial");
    assert_eq!(env["S3BACKUP_FILES_FAILED"], "1");
    assert_eq!(env["S3BACKUP_FILES_UPLOADED"], "1");
    assert_eq!(
        env["S3BACKUP_ERROR"],
        "1 file(s) were not backed up; run the backup again to retry them"
    );

    // A hook that fails is named in a warning; the run's code stands.
    f.server.clear_rules();
    f.env.write("c.txt", "charlie");
    let r = f.env.backup(TARGET, &["--on-success", "exit 7"]);
    r.expect_code(0);
    assert!(
        r.stderr.contains("warning: the --on-success command failed") && r.stderr.contains('7'),
        "{}",
        r.show()
    );
    let r = f.env.backup(TARGET, &["--on-success", "/no/such/program"]);
    r.expect_code(0);
    assert!(
        r.stderr.contains("warning: the --on-success command"),
        "{}",
        r.show()
    );
}

#[test]
fn a_dry_run_writes_no_metrics_and_runs_no_hook() {
    let f = Fixture::new();
    let metrics = f.file("m.prom");
    let out = f.file("hook.env");
    let r = f.env.backup(
        TARGET,
        &[
            "--dry-run",
            "--metrics-file",
            metrics.to_str().unwrap(),
            "--on-success",
            &recorder(&out),
        ],
    );
    r.expect_code(0);
    assert!(!metrics.exists());
    assert!(recorded(&out).is_none());
}

#[test]
fn named_sets_keep_the_metrics_file_and_hooks_and_an_empty_value_drops_them() {
    let f = Fixture::new();
    let metrics = f.file("set.prom");
    let out = f.file("hook.env");
    let save = f.env.backup(
        TARGET,
        &[
            "--set",
            "docs",
            "--metrics-file",
            "set.prom",
            "--on-success",
            &recorder(&out),
        ],
    );
    save.expect_code(0);
    std::fs::remove_file(&metrics).unwrap();
    std::fs::remove_file(&out).unwrap();
    // By name, from another directory (cron runs in /): the saved
    // relative metrics file was made absolute.
    f.env.write("new.txt", "new");
    let mut cmd = f.env.cmd();
    cmd.current_dir("/")
        .args(["backup", "--set", "docs", "--state"])
        .arg(&f.env.state)
        .args(["--endpoint-url", &f.server.endpoint()]);
    run(cmd).expect_code(0);
    let s = samples(&metrics);
    assert_eq!(sample(&s, "s3backup_last_run_files", "outcome=\"uploaded\""), 1.0);
    assert!(s.keys().any(|k| k.contains("set=\"docs\"")), "{s:#?}");
    let env = recorded(&out).expect("the saved hook ran");
    assert_eq!(env["S3BACKUP_SET"], "docs");

    // Typed empty, the saved ones are off for this run.
    std::fs::remove_file(&metrics).unwrap();
    std::fs::remove_file(&out).unwrap();
    let mut cmd = f.env.cmd();
    cmd.args([
        "backup",
        "--set",
        "docs",
        "--metrics-file",
        "",
        "--on-success",
        "",
        "--state",
    ])
    .arg(&f.env.state)
    .args(["--endpoint-url", &f.server.endpoint()]);
    run(cmd).expect_code(0);
    assert!(!metrics.exists());
    assert!(recorded(&out).is_none());
}

#[test]
fn verify_writes_metrics_and_calls_on_failure_for_a_damaged_object() {
    let f = Fixture::new();
    f.env.backup_ok(TARGET, &[]);
    let metrics = f.file("verify.prom");
    let out = f.file("hook.env");
    let verify = |extra: &[&str]| {
        let mut cmd = f.env.cmd();
        cmd.args(["verify", TARGET, "--deep", "--endpoint-url", &f.server.endpoint()])
            .args([
                "--metrics-file",
                metrics.to_str().unwrap(),
                "--on-failure",
                &recorder(&out),
            ])
            .args(extra);
        run(cmd)
    };
    let r = verify(&["--quiet"]);
    r.expect_code(0);
    assert_eq!(r.stdout, "", "--quiet prints no summary");
    let s = samples(&metrics);
    assert_eq!(sample(&s, "s3backup_last_run_files", "outcome=\"ok\""), 2.0);
    assert_eq!(sample(&s, "s3backup_last_run_success", "command=\"verify\""), 1.0);
    assert!(recorded(&out).is_none());
    // A rolling check says how far its cycle got.
    verify(&["--sample", "1/2", "--state", f.env.state.to_str().unwrap()]).expect_code(0);
    let s = samples(&metrics);
    assert_eq!(sample(&s, "s3backup_last_run_files", "outcome=\"sampled\""), 1.0);
    assert_eq!(sample(&s, "s3backup_last_run_files", "outcome=\"covered\""), 1.0);
    assert_eq!(
        sample(&s, "s3backup_last_run_files", "outcome=\"never_checked\""),
        1.0
    );
    // Damage one object behind the tool's back.
    std::fs::write(f.server.object_path(BUCKET, "p/a.txt"), "alphx").unwrap();
    verify(&[]).expect_code(1);
    let s = samples(&metrics);
    assert_eq!(
        sample(&s, "s3backup_last_run_files", "outcome=\"mismatched\""),
        1.0
    );
    assert_eq!(
        sample(&s, "s3backup_last_run_exit_code", "command=\"verify\""),
        1.0
    );
    let env = recorded(&out).expect("--on-failure ran");
    assert_eq!(env["S3BACKUP_COMMAND"], "verify");
    assert_eq!(env["S3BACKUP_FILES_MISMATCHED"], "1");
}

#[test]
fn an_interrupted_backup_runs_on_failure_with_the_signal_exit_code() {
    let f = Fixture::new();
    let out = f.file("hook.env");
    f.server.hold_replies("p/a.txt");
    let mut cmd = f.env.backup_cmd(TARGET, &["--on-failure", &recorder(&out)]);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let held = f.server.wait_for_matching(1, Duration::from_secs(60), |r| {
        r.key.as_deref() == Some("p/a.txt") && r.status != 0
    });
    assert!(held, "{:?}", f.server.ops());
    // SAFETY: kill(2) on our own child, not yet waited for.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    f.server.release_replies();
    assert_eq!(status.code(), Some(143));
    let env = recorded(&out).expect("--on-failure ran");
    assert_eq!(env["S3BACKUP_OUTCOME"], "interrupted");
    assert_eq!(env["S3BACKUP_EXIT_CODE"], "143");
}

/// SIGTERM to `child` (our own, not yet waited for).
fn terminate(child: &std::process::Child) {
    // SAFETY: kill(2) on our own child, not yet waited for.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
}

#[test]
fn a_signal_stops_a_hook_that_hangs_and_the_runs_code_stays() {
    let f = Fixture::new();
    let fifo = f.file("started");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) on a path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let pid_file = f.file("sleep.pid");
    // The shell starts a child of its own: stopping the hook stops both.
    let hook = format!(
        "sleep 600 & echo $! > '{}'; echo started > '{}'; wait",
        pid_file.display(),
        fifo.display()
    );
    let mut cmd = f.env.backup_cmd(TARGET, &["--on-success", &hook]);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // Blocks until the hook opens the pipe: it is running.
    let said = std::fs::read_to_string(&fifo).unwrap();
    assert_eq!(said.trim(), "started");
    terminate(&child);
    let (tx, rx) = std::sync::mpsc::channel();
    let mut stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        let _ = tx.send(text);
    });
    let text = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("s3backup did not stop the hook");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(
        text.contains("warning: the --on-success command was stopped by a signal"),
        "{text}"
    );
    let pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    // Gone, or a zombie waiting for init to reap it.
    let dead = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
    };
    while !dead() {
        assert!(
            std::time::Instant::now() < deadline,
            "the hook's child {pid} outlived it"
        );
        std::thread::yield_now();
    }
}

#[test]
fn an_interrupted_verify_runs_on_failure_and_writes_its_metrics() {
    let f = Fixture::new();
    f.env.backup_ok(TARGET, &[]);
    let metrics = f.file("verify.prom");
    let out = f.file("hook.env");
    f.server.hold_replies("p/a.txt");
    let mut cmd = f.env.cmd();
    cmd.args(["verify", TARGET, "--deep", "--endpoint-url", &f.server.endpoint()])
        .args([
            "--metrics-file",
            metrics.to_str().unwrap(),
            "--on-failure",
            &recorder(&out),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let held = f.server.wait_for_matching(1, Duration::from_secs(60), |r| {
        r.op == "GetObject" && r.key.as_deref() == Some("p/a.txt") && r.status != 0
    });
    assert!(held, "{:?}", f.server.ops());
    terminate(&child);
    let status = child.wait().unwrap();
    f.server.release_replies();
    assert_eq!(status.code(), Some(143));
    let env = recorded(&out).expect("--on-failure ran");
    assert_eq!(env["S3BACKUP_OUTCOME"], "interrupted");
    let s = samples(&metrics);
    assert_eq!(
        sample(&s, "s3backup_last_run_exit_code", "command=\"verify\""),
        143.0
    );
}

#[test]
fn a_run_that_was_to_save_a_set_and_failed_says_the_options_were_not_saved() {
    let f = Fixture::new();
    f.server.deny_bucket(BUCKET);
    let r = f.env.backup(TARGET, &["--set", "seven", "--on-failure", "true"]);
    r.expect_code(1);
    assert!(
        r.stderr
            .contains("warning: the options of set 'seven' were not saved, since the backup did not finish"),
        "{}",
        r.show()
    );
}
