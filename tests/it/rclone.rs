//! s3backup and the real `rclone` binary on the same bucket (the in-process
//! s3s-fs server): each must read the `mtime` metadata the other writes,
//! to the nanosecond, also before 1970 where the sign covers the fraction
//! (−1.5 s is `-1.5`, not `-2.5`).
//!
//! rclone is found on `PATH` (Debian's package; `.ci/run` installs it).
//! Without it the tests print "skipped: rclone not found" and pass, except
//! when `CI=true`, where they fail: CI must run them. rclone is configured
//! only through `RCLONE_CONFIG_*` variables, with an empty config file and
//! every `AWS_*` / `RCLONE_*` variable from outside removed (an
//! `AWS_CA_BUNDLE` would make it fail on the plain-HTTP endpoint).

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;
use crate::server::S3Server;

const BUCKET: &str = "bkt";
/// The rclone remote the tests configure (`RCLONE_CONFIG_S3T_*`).
const REMOTE: &str = "s3t";
/// One and a half seconds before the epoch, as a file time holds it.
const MINUS_1_5: (i64, u32) = (-2, 500_000_000);

/// Says a test is skipped, straight to stderr: the test harness captures
/// `eprintln!` of passing tests, and this must be seen.
fn skip(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{test}: skipped: {why}");
}

/// Whether an `rclone` is on PATH; when not, says the test is skipped, or
/// fails it under `CI=true`.
fn have_rclone(test: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("rclone").is_file()));
    if !found {
        let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
        assert!(
            !ci,
            "rclone not found (CI=true): install it (apt-get install rclone)"
        );
        skip(test, "rclone not found (apt-get install rclone)");
    }
    found
}

/// `rclone ARGS...` against `server` as remote `s3t:`, in UTC, with a
/// clean environment; returns stdout, panicking on failure.
#[track_caller]
fn rclone(server: &S3Server, env: &TestEnv, args: &[&str]) -> String {
    let mut cmd = Command::new("rclone");
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if text.starts_with("AWS_") || text.starts_with("RCLONE_") {
            cmd.env_remove(&name);
        }
    }
    let config = env.root().join("rclone.conf");
    std::fs::write(&config, "").unwrap();
    let prefix = format!("RCLONE_CONFIG_{}_", REMOTE.to_ascii_uppercase());
    let endpoint = server.endpoint();
    for (key, value) in [
        ("TYPE", "s3"),
        ("PROVIDER", "Other"),
        ("ACCESS_KEY_ID", S3Server::ACCESS_KEY),
        ("SECRET_ACCESS_KEY", S3Server::SECRET_KEY),
        ("ENDPOINT", endpoint.as_str()),
        ("REGION", "us-east-1"),
        ("FORCE_PATH_STYLE", "true"),
        ("NO_CHECK_BUCKET", "true"),
    ] {
        cmd.env(format!("{prefix}{key}"), value);
    }
    let out = cmd
        .env("RCLONE_CONFIG", &config)
        .env("HOME", &env.home)
        .env("TZ", "UTC")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running rclone");
    assert!(
        out.status.success(),
        "rclone {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("rclone output is UTF-8")
}

/// The bucket as an rclone remote. Tests name the bucket itself and pick
/// paths with filters: given `bkt/dir`, rclone first asks whether `dir` is
/// an object (HeadObject), which s3s-fs answers with a slow 500.
fn bucket() -> String {
    format!("{REMOTE}:{BUCKET}")
}

fn write_with_mtime(path: &Path, content: &[u8], (secs, nanos): (i64, u32)) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    let t = filetime::FileTime::from_unix_time(secs, nanos);
    filetime::set_file_times(path, t, t).unwrap();
}

#[test]
fn rclone_reads_the_mtime_s3backup_writes_before_1970() {
    if !have_rclone("rclone_reads_the_mtime_s3backup_writes_before_1970") {
        return;
    }
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    env.write_at("old.txt", "punch card", MINUS_1_5);
    env.write_at("tiny.txt", "a nanosecond early", (-1, 999_999_999));
    env.write_at("whole.txt", "a second early", (-1, 0));
    env.backup_ok("bkt::pre", &[]);

    let md = server.object_metadata(BUCKET, "pre/old.txt").expect("object");
    assert_eq!(md.get("mtime").map(String::as_str), Some("-1.5"), "{md:?}");

    // rclone lsl: SIZE YYYY-MM-DD HH:MM:SS.NNNNNNNNN NAME, in TZ (UTC here).
    let listing = rclone(&server, &env, &["lsl", &bucket(), "--include", "/pre/*.txt"]);
    let mut seen: Vec<(String, String)> = listing
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 4, "lsl line {l:?}");
            (
                f[3].trim_start_matches("pre/").to_string(),
                format!("{} {}", f[1], f[2]),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("old.txt".into(), "1969-12-31 23:59:58.500000000".into()),
            ("tiny.txt".into(), "1969-12-31 23:59:59.999999999".into()),
            ("whole.txt".into(), "1969-12-31 23:59:59.000000000".into()),
        ],
        "rclone lsl:\n{listing}"
    );

    // rclone copy sets the local file's mtime from the metadata.
    let dest = env.root().join("by-rclone");
    rclone(
        &server,
        &env,
        &[
            "copy",
            &bucket(),
            dest.to_str().unwrap(),
            "--include",
            "/pre/*.txt",
        ],
    );
    let dest = dest.join("pre");
    assert_eq!(std::fs::read(dest.join("old.txt")).unwrap(), b"punch card");
    assert_eq!(mtime_of(&dest.join("old.txt")), MINUS_1_5);
    assert_eq!(mtime_of(&dest.join("tiny.txt")), (-1, 999_999_999));
    assert_eq!(mtime_of(&dest.join("whole.txt")), (-1, 0));
}

#[test]
fn s3backup_restores_the_mtime_rclone_writes_before_1970() {
    if !have_rclone("s3backup_restores_the_mtime_rclone_writes_before_1970") {
        return;
    }
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    let local = env.root().join("for-rclone");
    write_with_mtime(&local.join("old.txt"), b"punch card", MINUS_1_5);
    write_with_mtime(&local.join("tiny.txt"), b"a nanosecond early", (-1, 999_999_999));
    write_with_mtime(&local.join("recent.txt"), b"now-ish", T0);
    rclone(
        &server,
        &env,
        &[
            "copy",
            local.parent().unwrap().to_str().unwrap(),
            &bucket(),
            "--include",
            "/for-rclone/*.txt",
        ],
    );

    let md = server
        .object_metadata(BUCKET, "for-rclone/old.txt")
        .expect("rclone's object");
    assert_eq!(
        md.get("mtime").map(String::as_str),
        Some("-1.5"),
        "what rclone writes: {md:?}"
    );

    // No manifest under for-rclone/: the restore reads the listing and each object's metadata.
    let dest = env.root().join("restored");
    let s = env.restore_ok("bkt::for-rclone", &dest, &[]);
    assert_eq!((s.downloaded, s.failed), (3, 0), "{s:?}");
    assert_eq!(std::fs::read(dest.join("old.txt")).unwrap(), b"punch card");
    assert_eq!(mtime_of(&dest.join("old.txt")), MINUS_1_5);
    assert_eq!(mtime_of(&dest.join("tiny.txt")), (-1, 999_999_999));
    assert_eq!(mtime_of(&dest.join("recent.txt")), T0);
}
