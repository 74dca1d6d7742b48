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

#[test]
fn a_server_that_never_answers_times_out_with_a_clear_error() {
    // Accepts connections and never replies: only the read timeout ends the wait.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for conn in listener.incoming().take(16) {
            match conn {
                Ok(c) => conns.push(c),
                Err(_) => break,
            }
        }
        conns
    });
    let env = TestEnv::with_endpoint(&endpoint);
    env.write("a.txt", "a");
    let run = env.backup(TARGET, &["--read-timeout", "1", "--connect-timeout", "1"]);
    run.expect_code(1);
    let line = run.error_line();
    assert!(line.contains("bkt"), "{line}");
    assert!(
        line.to_lowercase().contains("timeout") || line.contains("timed out"),
        "{}",
        run.show()
    );
    drop(held);
}

#[test]
fn an_unreachable_endpoint_is_a_clear_error() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = TestEnv::with_endpoint(&format!("http://127.0.0.1:{port}"));
    env.write("a.txt", "a");
    let run = env.backup(TARGET, &[]);
    run.expect_code(1);
    let line = run.error_line();
    assert!(line.contains("bkt"), "{line}");
    assert!(
        line.contains("connect") || line.contains("Connection refused") || line.contains("dispatch"),
        "{}",
        run.show()
    );
}

#[test]
fn no_credentials_is_a_one_line_error_that_says_what_to_do() {
    let server = S3Server::start();
    let env = TestEnv::with_server(&server);
    env.write("a.txt", "a");
    let mut cmd = env.backup_cmd(TARGET, &[]);
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    let run = run(cmd);
    run.expect_code(1);
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.show());
    let line = run.error_line();
    assert!(
        line.contains("no usable AWS credentials") && line.contains("aws configure"),
        "{line}"
    );
    assert!(server.requests().is_empty(), "nothing sent without credentials");
}

#[test]
fn non_utf8_names_and_normalisation_twins_round_trip_losslessly() {
    use std::os::unix::ffi::OsStrExt;
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    std::fs::write(env.src.join(latin1), "latin-1 name").unwrap();
    std::fs::create_dir_all(env.src.join(std::ffi::OsStr::from_bytes(b"d\xff"))).unwrap();
    std::fs::write(
        env.src.join(std::ffi::OsStr::from_bytes(b"d\xff/inner")),
        "under a non-UTF-8 dir",
    )
    .unwrap();
    // The same name as one code point (NFC) and as e + combining accent (NFD).
    env.write("caf\u{e9}", "nfc");
    env.write("cafe\u{301}", "nfd");
    // A name that already holds the escape character.
    env.write("quote\u{201b}E9", "literal quote");
    // A backslash is a plain name byte on Unix, not a separator.
    env.write("back\\..\\slash", "one file");

    let s = env.backup_ok(TARGET, &[]);
    assert_eq!((s.uploaded, s.failed), (6, 0), "{s:?}");
    let keys = server.list_keys(BUCKET);
    for key in [
        "pre/caf\u{201b}E9.txt",
        "pre/d\u{201b}FF/inner",
        "pre/caf\u{e9}",
        "pre/cafe\u{301}",
        "pre/quote\u{201b}\u{201b}E9",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} not in {keys:?}");
    }
    assert_eq!(env.backup_ok(TARGET, &[]).uploaded, 0);

    for extra in [&[][..], &["--from-listing"][..]] {
        let dest = tempfile::tempdir().unwrap();
        env.restore_ok(TARGET, dest.path(), extra);
        let mut names: Vec<Vec<u8>> = std::fs::read_dir(dest.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().as_bytes().to_vec())
            .collect();
        names.sort();
        let mut want: Vec<Vec<u8>> = std::fs::read_dir(&env.src)
            .unwrap()
            .map(|e| e.unwrap().file_name().as_bytes().to_vec())
            .collect();
        want.sort();
        assert_eq!(names, want, "restore {extra:?}");
        assert_eq!(std::fs::read(dest.path().join(latin1)).unwrap(), b"latin-1 name");
        assert_eq!(
            std::fs::read(dest.path().join(std::ffi::OsStr::from_bytes(b"d\xff/inner"))).unwrap(),
            b"under a non-UTF-8 dir"
        );
        assert_eq!(std::fs::read(dest.path().join("cafe\u{301}")).unwrap(), b"nfd");
        assert_eq!(std::fs::read(dest.path().join("caf\u{e9}")).unwrap(), b"nfc");
        assert_eq!(
            std::fs::read(dest.path().join("back\\..\\slash")).unwrap(),
            b"one file"
        );
    }
}

/// Runs a restore into `dest` on a file system that fills up after 1 MiB:
/// a fresh 1 MiB tmpfs in a private mount namespace when the machine
/// allows one, else a 1 MiB file-size limit on the process (the write
/// fails the same way, with a different error). Returns the exit code,
/// stdout, stderr and the names left in `dest` (seen before the tmpfs goes).
fn restore_onto_a_full_disk(
    env: &TestEnv,
    store: &str,
    dest: &std::path::Path,
) -> (i32, String, String, Vec<String>) {
    let inner = env.restore_cmd(store, dest, &["--json", "--jobs", "1"]);
    let script = r#"d="$1"; shift
mount -t tmpfs -o size=1m tmpfs "$d" || exit 97
"$@"; rc=$?
echo "S3BACKUP_RC=$rc"
ls -A "$d""#;
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["-rm", "sh", "-c", script, "sh"])
        .arg(dest)
        .arg(inner.get_program())
        .args(inner.get_args())
        .current_dir(env.root());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    if let Ok(out) = cmd.output()
        && out.status.code() != Some(97)
        && let Some((json, rest)) = String::from_utf8_lossy(&out.stdout).split_once("S3BACKUP_RC=")
    {
        let mut lines = rest.lines();
        let code: i32 = lines.next().unwrap().trim().parse().unwrap();
        let left = lines.map(str::to_owned).collect();
        return (
            code,
            json.to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            left,
        );
    }
    eprintln!("no private tmpfs here; limiting the file size instead");
    let mut cmd = env.restore_cmd(store, dest, &["--json", "--jobs", "1"]);
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let limit = libc::rlimit {
                rlim_cur: 1 << 20,
                rlim_max: 1 << 20,
            };
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let mut left: Vec<String> = std::fs::read_dir(dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        left,
    )
}

#[test]
fn a_full_disk_during_restore_is_a_clear_error_and_leaves_no_partial_file() {
    let env = TestEnv::new();
    env.write("a.txt", "small enough");
    env.write("big.bin", noise(3 << 20, 11));
    let store = env.root().join("store");
    let store = store.to_str().unwrap();
    env.backup_ok(store, &[]);

    let dest = env.root().join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    let (code, stdout, stderr, left) = restore_onto_a_full_disk(&env, store, &dest);
    assert_eq!(code, 3, "{stdout}\n{stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let failures = summary["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{summary}");
    assert_eq!(failures[0]["path"], "big.bin");
    let error = failures[0]["error"].as_str().unwrap();
    assert!(
        error.contains("No space left on device") || error.contains("File too large"),
        "{error}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("error: big.bin: ") && l.contains(error)),
        "one line names the file and the cause: {stderr}"
    );
    // The file that fit is there; nothing else, no partial file under any name.
    assert_eq!(left, ["a.txt"], "{stderr}");
}
