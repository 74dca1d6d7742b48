//! Backup-engine findings of issue 14: errors that print their cause
//! once, copy sources among rows a run re-hashed, deletions that survive
//! a kill, and what the summary counts.

use crate::common::*;
use crate::proxy::{Fault, FaultProxy};
use crate::server::S3Server;

const BUCKET: &str = "bkt";
const TARGET: &str = "bkt::pre";

/// A state that cannot be rebuilt (every listing of the snapshots fails)
/// is one error line that names the store's answer once: the message of
/// `BackupError::Rebuild` named its cause and the chain printed it again.
#[test]
fn a_failed_rebuild_names_its_cause_once() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let proxy = FaultProxy::start(&server, 14);
    let env = TestEnv::with_endpoint(&proxy.endpoint());
    env.write("a.txt", "a");
    env.backup_ok(TARGET, &[]);
    std::fs::remove_file(&env.state).unwrap();

    proxy.set_filter(|p| {
        p.method == hyper::Method::GET && p.uri.query().is_some_and(|q| q.contains("list-type"))
    });
    proxy.set_faults(1.0, &[Fault::InternalError]);
    let r = env.backup(TARGET, &["--connect-timeout", "2", "--read-timeout", "5"]);
    r.expect_code(1);
    let line = r.error_line();
    assert!(line.contains("rebuilding state"), "{}", r.show());
    let cause = line.rsplit(": ").next().unwrap_or_default();
    assert!(!cause.is_empty(), "{}", r.show());
    assert_eq!(
        line.matches(cause).count(),
        1,
        "the cause is printed once: {line}"
    );
}

/// A file the run hashes again and finds unchanged (its row is racy: its
/// mtime is in the future, so no stat can vouch for it) holds the bytes a
/// new duplicate needs: the duplicate is copied server-side (one
/// CopyObject), not uploaded (no PutObject of it). The row is written back
/// only with its chunk, and racy still, so the lookup in the state passed
/// it over.
#[test]
fn a_duplicate_of_a_file_the_run_rehashed_is_copied() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    let body = noise(64 * 1024, 6);
    let future = (chrono::Utc::now().timestamp() + 3600, 123);
    env.write_at("a.bin", &body, future);
    env.backup_ok(TARGET, &[]);

    env.write_at("z.bin", &body, (1_700_000_000, 0));
    server.clear_requests();
    let s = env.backup_ok(TARGET, &[]);
    assert_eq!((s.uploaded, s.copied, s.unchanged), (0, 1, 1), "{s:?}");
    assert_eq!(
        server.count_key("PutObject", "pre/z.bin"),
        0,
        "{:?}",
        server.ops()
    );
    assert_eq!(
        server.count_key("CopyObject", "pre/z.bin"),
        1,
        "{:?}",
        server.ops()
    );
    assert_eq!(server.object_bytes(BUCKET, "pre/z.bin").unwrap(), body);
}

/// Polls the proxy (every 10 ms, up to a minute) until `done` holds for its stats.
fn wait_for_proxy(proxy: &FaultProxy, done: impl Fn(&crate::proxy::Stats) -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if done(&proxy.stats()) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

/// Issue 12's crash gap: a run takes the row of `t` (a file that is now a
/// directory) out of the state and is killed while its DeleteObject is
/// held by the proxy, before the store saw it. The object must not stay
/// unclaimed: the next run deletes it, so the bucket holds exactly the new
/// tree and a restore gives it; with and without `--delete`.
#[test]
fn a_run_killed_before_a_replaced_object_is_deleted_leaves_no_orphan() {
    for extra in [&[][..], &["--delete"][..]] {
        let server = S3Server::start();
        server.create_bucket(BUCKET);
        let proxy = FaultProxy::start(&server, 12);
        let env = TestEnv::with_endpoint(&proxy.endpoint());
        env.write("t", "a file that becomes a directory")
            .write("keep", "k");
        env.backup_ok(TARGET, extra);
        env.remove("t").write("t/x", "now under a directory");

        proxy.set_slow_delay(std::time::Duration::from_secs(600));
        proxy.set_filter(|p| p.method == hyper::Method::DELETE);
        proxy.set_faults(1.0, &[Fault::Slow]);
        let mut child = env
            .backup_cmd(TARGET, extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let held = wait_for_proxy(&proxy, |s| s.slow >= 1);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(held, "{extra:?}: the run never asked to delete t");
        assert!(
            server.object_bytes(BUCKET, "pre/t").is_some(),
            "the delete was held"
        );

        proxy.clear_faults();
        let s = env.backup_ok(TARGET, extra);
        assert_eq!(s.failed, 0, "{extra:?}: {s:?}");
        let keys: Vec<String> = server
            .list_keys(BUCKET)
            .into_iter()
            .filter(|k| !k.starts_with("pre/.s3backup/"))
            .collect();
        assert_eq!(keys, ["pre/keep", "pre/t/x"], "{extra:?}: an orphan is left");
        let dest = env.root().join("restored");
        env.restore_ok(TARGET, &dest, &[]);
        assert_eq!(tree(&dest), tree(&env.src), "{extra:?}");
    }
}

/// The names and bytes of every file in `dir`.
fn contents(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    all.sort();
    all
}

/// `backup --dry-run` never writes the state file (it opened it as a
/// writer, which may migrate the schema): it plans from a 0444 copy in a
/// 0555 directory, run by a user who can write neither (`nobody` when the
/// tests run as root), and leaves it as it was; with no state file at
/// all it plans on a scratch state and leaves none behind.
#[test]
fn a_dry_run_reads_a_read_only_state_and_writes_no_state() {
    use std::os::unix::fs::PermissionsExt;
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    env.write("a.txt", "a").write("docs/b.txt", "b");
    env.backup_ok(TARGET, &[]);
    env.write("new.txt", "new");

    let copy_dir = env.root().join("copy");
    std::fs::create_dir(&copy_dir).unwrap();
    let copy = copy_dir.join("state.db");
    std::fs::copy(&env.state, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(&copy_dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    std::fs::set_permissions(env.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let before = contents(&copy_dir);
    let dry_run = |state: &std::path::Path| {
        let mut cmd = env.cmd();
        cmd.arg("backup")
            .arg(&env.src)
            .arg(TARGET)
            .arg("--endpoint-url")
            .arg(server.endpoint())
            .arg("--state")
            .arg(state)
            .arg("--dry-run");
        run(as_nobody_if_root(cmd, env.root()))
    };
    let r = dry_run(&copy);
    r.expect_code(0);
    assert_eq!(r.plan_lines(), ["upload new.txt"], "{}", r.show());
    assert_eq!(contents(&copy_dir), before, "the copy's directory is as it was");
    std::fs::set_permissions(&copy_dir, std::fs::Permissions::from_mode(0o755)).unwrap();

    let none_dir = env.root().join("none");
    std::fs::create_dir(&none_dir).unwrap();
    std::fs::set_permissions(&none_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let r = dry_run(&none_dir.join("state.db"));
    r.expect_code(0);
    // Planned on a scratch state rebuilt from the bucket's snapshot.
    assert_eq!(r.plan_lines(), ["upload new.txt"], "{}", r.show());
    assert!(contents(&none_dir).is_empty(), "no state file is left behind");
}

/// A run stopped by Ctrl-C records what it got to in `state runs`: the
/// files its walk found and the bytes the store confirmed (here the first
/// part of a multipart upload whose second part the proxy holds), not
/// `scanned 0` and `sent 0`.
#[test]
fn an_interrupted_run_records_what_it_scanned_and_sent() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let proxy = FaultProxy::start(&server, 15);
    let env = TestEnv::with_endpoint(&proxy.endpoint());
    env.write("big.bin", noise(12 << 20, 15))
        .write("a.txt", "a")
        .write("d/b.txt", "b");
    proxy.set_slow_delay(std::time::Duration::from_secs(600));
    proxy.set_filter(|p| p.uri.query().is_some_and(|q| q.contains("partNumber=2")));
    proxy.set_faults(1.0, &[Fault::Slow]);
    let args = [
        "--jobs",
        "1",
        "--multipart-threshold",
        "5MiB",
        "--part-size",
        "5MiB",
    ];
    let mut child = env
        .backup_cmd(TARGET, &args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // With one job, part 2 is sent only once part 1 was answered.
    let held = wait_for_proxy(&proxy, |s| s.slow >= 1);
    // SAFETY: kill(2) on our own child, not yet waited for.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(held, "part 2 never came");
    assert_eq!(status.code(), Some(130));

    let mut cmd = env.cmd();
    cmd.args(["state", "runs", "--json", "--limit", "1", "--state"])
        .arg(&env.state);
    let r = run(cmd);
    r.expect_code(0);
    let runs: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let last = &runs[0];
    assert_eq!(last["status"], "interrupted", "{last}");
    assert_eq!(last["scanned"], 3, "{last}");
    assert!(last["bytes_sent"].as_u64().unwrap() >= 5 << 20, "{last}");
}

/// Paths a filter leaves out that are gone locally too are spared by
/// `--delete` and, as README says, counted as `excluded` (and named with
/// `-v`), as the paths the walk left out are: they were counted nowhere.
#[test]
fn excluded_paths_gone_locally_are_counted_as_excluded() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    env.write("a.txt", "a")
        .write("b.tmp", "b")
        .write("d/c.tmp", "c")
        .write("keep.txt", "k");
    env.write("here.tmp", "still here");
    env.backup_ok(TARGET, &[]);
    env.remove("a.txt").remove("b.tmp").remove("d/c.tmp");
    let r = env.backup(TARGET, &["--json", "-v", "--delete", "--exclude", "*.tmp"]);
    r.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    // here.tmp (met by the walk), b.tmp and d/c.tmp (gone).
    assert_eq!(v["excluded"], 3, "{}", r.show());
    assert_eq!(v["deleted"], 1, "{}", r.show());
    for gone in ["b.tmp", "d/c.tmp"] {
        assert!(
            r.stderr
                .lines()
                .any(|l| l.contains("excluded") && l.contains(gone)),
            "{gone} is named: {}",
            r.show()
        );
    }
}
