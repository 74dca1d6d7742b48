//! Running the real `s3backup` binary from tests.
//!
//! [`TestEnv`] (after fd's) owns a temporary directory holding the source
//! tree (`src/`), a state file, a private `HOME` and a working directory;
//! it builds the tree, runs the binary with an environment cleared of every
//! `AWS_*` variable (so a developer's profile, region or CA bundle never
//! leaks in), and parses the `--json` summary. Helpers to read manifests and
//! object metadata sit here too, shared by the S3 and local-store tests,
//! and, for the restore tests, helpers to run `restore` / `snapshots`, to
//! read a restored tree back ([`tree`]), to write a manifest by hand
//! ([`encode_manifest`]) and to talk to a server with a plain aws-sdk-s3
//! client ([`sdk_client`]).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use filetime::FileTime;
use serde::Deserialize;
use tempfile::TempDir;

use crate::server::S3Server;

/// How long one run of the binary may take before the test gives up.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

/// Default mtime of files written by [`TestEnv::write`]: a fixed instant with
/// nanoseconds, so tests can check that sub-second precision survives.
pub const T0: (i64, u32) = (1_700_000_000, 123_456_789);

/// The `s3backup` binary with a clean environment: no `AWS_*` or
/// `S3BACKUP_*` variable from outside, the test server's keys,
/// config/credentials files that do not exist, no instance metadata, no
/// colour, and `HOME` / `XDG_STATE_HOME` inside `home`.
///
/// `S3BACKUP_IT_BIN`, if set, names another binary to test (e.g. an
/// installed one) instead of the one cargo built.
pub fn s3backup(home: &Path) -> Command {
    let bin = std::env::var_os("S3BACKUP_IT_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_s3backup").into());
    let mut cmd = Command::new(bin);
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if name_text.starts_with("AWS_") || name_text.starts_with("S3BACKUP_") {
            cmd.env_remove(&name);
        }
    }
    for name in [
        "AWS_CA_BUNDLE",
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
    ] {
        cmd.env_remove(name);
    }
    cmd.env_remove("RUST_LOG")
        .env("AWS_ACCESS_KEY_ID", S3Server::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", S3Server::SECRET_KEY)
        .env("AWS_CONFIG_FILE", home.join("no-such-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            home.join("no-such-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_COLOR", "1")
        .env("HOME", home)
        .env("XDG_STATE_HOME", home.join(".local/state"))
        .stdin(Stdio::null());
    cmd
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    /// Exit code (None if killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics, showing the output, unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "unexpected exit code\n{}", self.show());
        self
    }

    /// The `--json` summary: stdout must be exactly one JSON object.
    #[track_caller]
    pub fn summary(&self) -> Summary {
        let mut values = serde_json::Deserializer::from_str(&self.stdout).into_iter::<serde_json::Value>();
        let first = values
            .next()
            .unwrap_or_else(|| panic!("no JSON on stdout\n{}", self.show()))
            .unwrap_or_else(|e| panic!("stdout is not JSON: {e}\n{}", self.show()));
        assert!(
            values.next().is_none(),
            "more than one JSON value on stdout\n{}",
            self.show()
        );
        serde_json::from_value(first).unwrap_or_else(|e| panic!("summary lacks fields: {e}\n{}", self.show()))
    }

    /// The summary object at the end of stdout, after any plan lines
    /// (for `--dry-run --json`), and the lines before it.
    #[track_caller]
    pub fn trailing_summary(&self) -> (Vec<String>, Summary) {
        let lines: Vec<&str> = self.stdout.lines().collect();
        let start = lines
            .iter()
            .rposition(|l| l.starts_with('{'))
            .unwrap_or_else(|| panic!("no JSON object on stdout\n{}", self.show()));
        let json = lines[start..].join("\n");
        let summary =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("bad summary: {e}\n{}", self.show()));
        (lines[..start].iter().map(|s| s.to_string()).collect(), summary)
    }

    /// The one stderr line starting with "error: ".
    #[track_caller]
    pub fn error_line(&self) -> String {
        let errors: Vec<&str> = self.stderr.lines().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(
            errors.len(),
            1,
            "expected one 'error: ' line on stderr\n{}",
            self.show()
        );
        errors[0].to_owned()
    }

    /// Dry-run plan lines (`upload P`, `copy A -> B`, `touch P`, `delete P`), sorted.
    pub fn plan_lines(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .stdout
            .lines()
            .map(str::trim_end)
            .filter(|l| {
                ["upload ", "copy ", "touch ", "delete "]
                    .iter()
                    .any(|p| l.starts_with(p))
            })
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    }

    pub fn show(&self) -> String {
        format!(
            "exit code: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// `cmd` rebuilt to run as `nobody` (uid/gid 65534) when the tests run as
/// root, where permission bits stop no one; unchanged otherwise.
///
/// The binary is copied under `reachable` first, because cargo's build
/// output may sit in a directory `nobody` cannot enter (a target directory
/// under root's home). `reachable` and its parents must let `nobody` in.
pub fn as_nobody_if_root(cmd: Command, reachable: &Path) -> Command {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return cmd;
    }
    let bin_dir = reachable.join(".nobody-bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::set_permissions(&bin_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = bin_dir.join("s3backup");
    // A hard link where it can be: a copy is a file this process held open
    // for writing, and a child another test thread forks in that moment
    // keeps it open until it execs, so running the copy fails with
    // ETXTBSY ("Text file busy"); `run` retries that case too.
    let _ = std::fs::remove_file(&bin);
    if std::fs::hard_link(cmd.get_program(), &bin).is_err() {
        std::fs::copy(cmd.get_program(), &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut as_nobody = Command::new(bin);
    as_nobody.args(cmd.get_args());
    for (name, value) in cmd.get_envs() {
        match value {
            Some(v) => as_nobody.env(name, v),
            None => as_nobody.env_remove(name),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        as_nobody.current_dir(dir);
    }
    as_nobody.uid(65534).gid(65534);
    as_nobody
}

/// Spawns `cmd`, trying again while the binary is "Text file busy"
/// (ETXTBSY: a copy of it just written, still open in a child another test
/// thread forked before it execs; see [`as_nobody_if_root`]). That lasts
/// only until the child execs, so a few tries a few milliseconds apart do.
fn spawn_retrying_busy(cmd: &mut Command) -> std::process::Child {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other.expect("spawn s3backup"),
        }
    }
}

/// Runs a command to completion with a time limit, capturing its output.
pub fn run(mut cmd: Command) -> Run {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = spawn_retrying_busy(&mut cmd);
    let pid = child.id();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        let status = child.wait();
        let _ = tx.send((s, status));
    });
    let (stdout, status) = match rx.recv_timeout(RUN_TIMEOUT) {
        Ok(r) => r,
        Err(_) => {
            // Stop the child we started, by its pid, and fail the test.
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            let stderr = err_reader.join().unwrap_or_default();
            panic!(
                "s3backup did not finish within {RUN_TIMEOUT:?}; stderr:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
    };
    let stderr = err_reader.join().unwrap();
    Run {
        code: status.expect("wait for s3backup").code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// The `--json` summary of a backup run.
#[derive(Debug, Clone, Deserialize)]
pub struct Summary {
    pub scanned: u64,
    pub uploaded: u64,
    pub copied: u64,
    pub touched: u64,
    pub unchanged: u64,
    pub deleted: u64,
    pub failed: u64,
    pub skipped: u64,
    pub bytes_sent: u64,
    /// Objects copied into the content area (history) before being replaced or deleted.
    #[serde(default)]
    pub history_kept: u64,
    #[allow(dead_code)]
    pub elapsed_ms: u64,
    pub dry_run: bool,
    pub snapshot: Option<String>,
    pub failures: Vec<Failure>,
}

/// One file that could not be backed up.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Failure {
    pub path: String,
    pub error: String,
}

/// The per-file counters of a summary, to compare all at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub scanned: u64,
    pub uploaded: u64,
    pub copied: u64,
    pub touched: u64,
    pub unchanged: u64,
    pub deleted: u64,
    pub failed: u64,
    pub skipped: u64,
}

impl Summary {
    pub fn counts(&self) -> Counts {
        Counts {
            scanned: self.scanned,
            uploaded: self.uploaded,
            copied: self.copied,
            touched: self.touched,
            unchanged: self.unchanged,
            deleted: self.deleted,
            failed: self.failed,
            skipped: self.skipped,
        }
    }
}

/// A temporary world for one test: source tree, state file, home, cwd.
pub struct TestEnv {
    dir: TempDir,
    /// The directory that is backed up.
    pub src: PathBuf,
    /// The `--state` file.
    pub state: PathBuf,
    /// `HOME` of the binary.
    pub home: PathBuf,
    /// `--endpoint-url` passed to backups, when talking to a test server.
    pub endpoint: Option<String>,
    /// Backups get `--max-delete 100% --max-change 100%` ([`Self::past_the_guard`]).
    pub past_guard: bool,
}

impl TestEnv {
    /// An environment with an empty source tree and no S3 endpoint.
    pub fn new() -> TestEnv {
        let dir = tempfile::Builder::new().prefix("s3backup-it-").tempdir().unwrap();
        let src = dir.path().join("src");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        TestEnv {
            state: dir.path().join("state.db"),
            src,
            home,
            endpoint: None,
            past_guard: false,
            dir,
        }
    }

    /// An environment whose backups go to `server`.
    pub fn with_server(server: &S3Server) -> TestEnv {
        TestEnv {
            endpoint: Some(server.endpoint()),
            ..TestEnv::new()
        }
    }

    /// An environment whose backups and restores go to another S3
    /// endpoint (e.g. moto's server).
    pub fn with_endpoint(endpoint: &str) -> TestEnv {
        TestEnv {
            endpoint: Some(endpoint.to_owned()),
            ..TestEnv::new()
        }
    }

    /// This environment's backups ([`Self::backup_cmd`]) pass
    /// `--max-delete 100% --max-change 100%`: for tests whose tiny sets
    /// legitimately delete or replace most of their files in one run (the
    /// delete guard and the change tripwire are tested in `guard`).
    pub fn past_the_guard(mut self) -> TestEnv {
        self.past_guard = true;
        self
    }

    /// The temporary directory holding everything (also the binary's cwd).
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Path of `rel` inside the source tree.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.src.join(rel)
    }

    /// Writes a source file (creating directories), with mtime [`T0`] and mode 644.
    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> &Self {
        self.write_at(rel, content, T0)
    }

    /// Writes a source file with the given mtime (seconds, nanoseconds) and mode 644.
    pub fn write_at(&self, rel: &str, content: impl AsRef<[u8]>, mtime: (i64, u32)) -> &Self {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        self.set_mode(rel, 0o644);
        self.set_mtime(rel, mtime);
        self
    }

    pub fn set_mtime(&self, rel: &str, (secs, nanos): (i64, u32)) -> &Self {
        filetime::set_symlink_file_times(
            self.path(rel),
            FileTime::from_unix_time(secs, nanos),
            FileTime::from_unix_time(secs, nanos),
        )
        .unwrap();
        self
    }

    pub fn set_mode(&self, rel: &str, mode: u32) -> &Self {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.path(rel), std::fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    pub fn remove(&self, rel: &str) -> &Self {
        std::fs::remove_file(self.path(rel)).unwrap();
        self
    }

    /// Renames within the source tree (the mtime travels with the file).
    pub fn rename(&self, from: &str, to: &str) -> &Self {
        let to = self.path(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::rename(self.path(from), to).unwrap();
        self
    }

    pub fn symlink(&self, points_to: &str, rel: &str) -> &Self {
        std::os::unix::fs::symlink(points_to, self.path(rel)).unwrap();
        self
    }

    /// The binary with this environment's clean env, cwd = [`Self::root`].
    pub fn cmd(&self) -> Command {
        let mut cmd = s3backup(&self.home);
        cmd.current_dir(self.root());
        cmd
    }

    /// `s3backup backup SRC TARGET --state STATE [--endpoint-url E] EXTRA...`
    pub fn backup_cmd(&self, target: &str, extra: &[&str]) -> Command {
        let mut cmd = self.cmd();
        cmd.arg("backup")
            .arg(&self.src)
            .arg(target)
            .arg("--state")
            .arg(&self.state);
        if let Some(e) = &self.endpoint {
            cmd.arg("--endpoint-url").arg(e);
        }
        if self.past_guard {
            cmd.args(["--max-delete", "100%", "--max-change", "100%"]);
        }
        cmd.args(extra);
        cmd
    }

    /// Runs a backup and returns what happened, whatever the exit code.
    pub fn backup(&self, target: &str, extra: &[&str]) -> Run {
        run(self.backup_cmd(target, extra))
    }

    /// Runs a backup with `--json`, requires exit 0, returns the summary.
    #[track_caller]
    pub fn backup_ok(&self, target: &str, extra: &[&str]) -> Summary {
        let mut args = vec!["--json"];
        args.extend_from_slice(extra);
        let r = self.backup(target, &args);
        r.expect_code(0);
        r.summary()
    }
}

/// The blake3 of `data`, hex.
pub fn blake3_hex(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

/// Parses an rclone-style mtime ("1700000000.123456789", "1700000000.5",
/// "1700000000", "-1.5") into (seconds, nanoseconds) as a file time holds
/// it (seconds rounded down, nanoseconds from 0 to 999,999,999). The sign
/// covers the fraction, as rclone reads it: "-1.5" is (-2, 500_000_000).
#[track_caller]
pub fn parse_mtime(s: &str) -> (i64, u32) {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let negative = secs.starts_with('-');
    let secs: i64 = secs.parse().unwrap_or_else(|_| panic!("bad mtime {s:?}"));
    assert!(
        frac.len() <= 9 && frac.bytes().all(|b| b.is_ascii_digit()),
        "bad mtime {s:?}"
    );
    let nanos: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().unwrap()
    };
    let total = secs * 1_000_000_000 + if negative { -nanos } else { nanos };
    (
        total.div_euclid(1_000_000_000),
        total.rem_euclid(1_000_000_000) as u32,
    )
}

/// Checks the user metadata of a backed-up object: mtime, blake3, mode.
#[track_caller]
pub fn assert_object_metadata(md: &HashMap<String, String>, content: &[u8], mtime: (i64, u32), mode: u32) {
    let m = md.get("mtime").unwrap_or_else(|| panic!("no mtime in {md:?}"));
    assert_eq!(parse_mtime(m), mtime, "mtime metadata {m:?}");
    assert_eq!(
        md.get("blake3"),
        Some(&blake3_hex(content)),
        "blake3 metadata in {md:?}"
    );
    assert_eq!(
        md.get("mode"),
        Some(&format!("{mode:o}")),
        "mode metadata in {md:?}"
    );
}

/// Whether `name` looks like `<YYYYMMDDTHHMMSSZ>-<runid>.jsonl.zst`.
pub fn is_manifest_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".jsonl.zst") else {
        return false;
    };
    let b = stem.as_bytes();
    b.len() > 17
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'Z'
        && b[16] == b'-'
        && !stem[17..].contains('/')
}

/// A decoded manifest: the header line and the file lines.
#[derive(Debug)]
pub struct Manifest {
    pub header: serde_json::Value,
    pub files: Vec<serde_json::Value>,
}

impl Manifest {
    #[track_caller]
    pub fn decode(compressed: &[u8]) -> Manifest {
        let raw = zstd::decode_all(compressed).expect("manifest is zstd");
        let text = String::from_utf8(raw).expect("manifest is UTF-8");
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header: serde_json::Value =
            serde_json::from_str(lines.next().expect("manifest has a header")).unwrap();
        assert_eq!(header["format"], 2, "manifest header {header}");
        let entries: Vec<serde_json::Value> = lines
            .map(|l| serde_json::from_str(l).expect("manifest line is JSON"))
            .collect();
        let paths: Vec<&str> = entries
            .iter()
            .map(|e| e["path"].as_str().expect("path"))
            .collect();
        assert!(
            paths.windows(2).all(|w| w[0] < w[1]),
            "manifest lines sorted by path: {paths:?}"
        );
        // The binary also records directories (`"type":"dir"`); the file
        // lines are what the contract describes.
        let files: Vec<serde_json::Value> = entries.into_iter().filter(|e| e["type"] != "dir").collect();
        if let Some(n) = header.get("files") {
            assert_eq!(n, files.len(), "header's file count: {header}");
        }
        Manifest { header, files }
    }

    /// The `path` of every file line (directories left out), in manifest order.
    pub fn paths(&self) -> Vec<String> {
        self.files
            .iter()
            .map(|f| f["path"].as_str().expect("path").to_owned())
            .collect()
    }

    /// File lines by path.
    pub fn by_path(&self) -> BTreeMap<String, serde_json::Value> {
        self.files
            .iter()
            .map(|f| (f["path"].as_str().unwrap().to_owned(), f.clone()))
            .collect()
    }

    /// Checks one file's line: size, mtime_ns, blake3, mode, etag present.
    #[track_caller]
    pub fn assert_file(&self, path: &str, content: &[u8], mtime: (i64, u32), mode: u32) {
        let all = self.by_path();
        let f = all
            .get(path)
            .unwrap_or_else(|| panic!("{path} not in manifest {:?}", self.paths()));
        assert_eq!(f["size"], content.len() as u64, "size of {path}: {f}");
        let ns = i128::from(mtime.0) * 1_000_000_000 + i128::from(mtime.1);
        assert_eq!(
            f["mtime_ns"].as_i64().map(i128::from),
            Some(ns),
            "mtime_ns of {path}: {f}"
        );
        assert_eq!(f["blake3"], blake3_hex(content), "blake3 of {path}: {f}");
        let m = match &f["mode"] {
            serde_json::Value::Number(n) => n.as_u64().unwrap() as u32 & 0o7777,
            serde_json::Value::String(s) => u32::from_str_radix(s, 8).unwrap(),
            other => panic!("mode of {path} is {other}"),
        };
        assert_eq!(m, mode, "mode of {path}: {f}");
        assert!(
            f["etag"].as_str().is_some_and(|e| !e.is_empty()),
            "etag of {path}: {f}"
        );
    }
}

/// Deterministic, non-repeating bytes (so multipart parts all differ).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub const MIB: usize = 1024 * 1024;

/// The `--json` summary of a restore run.
#[derive(Debug, Clone, Deserialize)]
pub struct RestoreSummary {
    pub source: String,
    pub files: u64,
    pub downloaded: u64,
    pub unchanged: u64,
    pub kept: u64,
    pub dirs: u64,
    pub failed: u64,
    pub dirs_failed: u64,
    pub unreadable_entries: u64,
    pub paths_not_found: u64,
    pub bytes_received: u64,
    #[allow(dead_code)]
    pub elapsed_ms: u64,
    pub kept_paths: Vec<String>,
    pub failures: Vec<Failure>,
}

impl RestoreSummary {
    /// The failure reported for `path`, if any.
    pub fn failure(&self, path: &str) -> Option<&Failure> {
        self.failures.iter().find(|f| f.path == path)
    }

    /// Failed paths, sorted.
    pub fn failed_paths(&self) -> Vec<String> {
        let mut v: Vec<String> = self.failures.iter().map(|f| f.path.clone()).collect();
        v.sort();
        v
    }
}

impl Run {
    /// The `--json` summary of a restore: stdout must be exactly one JSON object.
    #[track_caller]
    pub fn restore_summary(&self) -> RestoreSummary {
        let v: serde_json::Value = serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON value: {e}\n{}", self.show()));
        serde_json::from_value(v)
            .unwrap_or_else(|e| panic!("restore summary lacks fields: {e}\n{}", self.show()))
    }
}

impl TestEnv {
    /// `s3backup restore TARGET DEST [--endpoint-url E] EXTRA...` (no `--state`:
    /// a restore must not need one).
    pub fn restore_cmd(&self, target: &str, dest: &Path, extra: &[&str]) -> Command {
        let mut cmd = self.cmd();
        cmd.arg("restore").arg(target).arg(dest);
        if let Some(e) = &self.endpoint {
            cmd.arg("--endpoint-url").arg(e);
        }
        cmd.args(extra);
        cmd
    }

    /// Runs a restore and returns what happened, whatever the exit code.
    pub fn restore(&self, target: &str, dest: &Path, extra: &[&str]) -> Run {
        run(self.restore_cmd(target, dest, extra))
    }

    /// Runs a restore with `--json`, requires exit 0, returns the summary.
    #[track_caller]
    pub fn restore_ok(&self, target: &str, dest: &Path, extra: &[&str]) -> RestoreSummary {
        let mut args = vec!["--json"];
        args.extend_from_slice(extra);
        let r = self.restore(target, dest, &args);
        r.expect_code(0);
        r.restore_summary()
    }

    /// Runs `s3backup snapshots TARGET [--endpoint-url E] EXTRA...`.
    pub fn snapshots(&self, target: &str, extra: &[&str]) -> Run {
        let mut cmd = self.cmd();
        cmd.arg("snapshots").arg(target);
        if let Some(e) = &self.endpoint {
            cmd.arg("--endpoint-url").arg(e);
        }
        cmd.args(extra);
        run(cmd)
    }

    /// `snapshots --json`, required to succeed, parsed.
    #[track_caller]
    pub fn snapshot_list(&self, target: &str) -> Vec<SnapshotRow> {
        let r = self.snapshots(target, &["--json"]);
        r.expect_code(0);
        serde_json::from_str(r.stdout.trim())
            .unwrap_or_else(|e| panic!("snapshots --json is not an array of snapshots: {e}\n{}", r.show()))
    }
}

/// One element of `snapshots --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct SnapshotRow {
    pub id: String,
    pub created: String,
    pub files: u64,
    pub bytes: u64,
    pub host: String,
    pub source: String,
}

/// What one path of a directory tree is, as a user would check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(PathBuf),
}

/// One entry of [`tree`]: kind (with bytes), mtime and permission bits.
#[derive(Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    pub mtime: (i64, u32),
    pub mode: u32,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::File(b) if b.len() > 64 => {
                write!(f, "file({} bytes, blake3 {})", b.len(), &blake3_hex(b)[..12])?
            }
            Kind::File(b) => write!(f, "file({:?})", String::from_utf8_lossy(b))?,
            Kind::Dir => write!(f, "dir")?,
            Kind::Symlink(t) => write!(f, "symlink -> {}", t.display())?,
        }
        write!(
            f,
            " mtime {}.{:09} mode {:o}",
            self.mtime.0, self.mtime.1, self.mode
        )
    }
}

/// Everything under `root` (not `root` itself), by '/'-separated relative
/// path; symlinks are not followed.
pub fn tree(root: &Path) -> BTreeMap<String, Node> {
    fn go(base: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let kind = if md.file_type().is_symlink() {
                Kind::Symlink(std::fs::read_link(&p).unwrap())
            } else if md.is_dir() {
                Kind::Dir
            } else {
                Kind::File(std::fs::read(&p).unwrap())
            };
            let t = FileTime::from_last_modification_time(&md);
            use std::os::unix::fs::PermissionsExt;
            let is_dir = kind == Kind::Dir;
            out.insert(
                rel,
                Node {
                    kind,
                    mtime: (t.unix_seconds(), t.nanoseconds()),
                    mode: md.permissions().mode() & 0o7777,
                },
            );
            if is_dir {
                go(base, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    go(root, root, &mut out);
    out
}

/// Every path under `root` (files, directories, symlinks), sorted.
pub fn paths_under(root: &Path) -> Vec<String> {
    if !root.exists() {
        return Vec::new();
    }
    tree(root).into_keys().collect()
}

/// Paths under `root` whose file name starts with the restore's temporary prefix.
pub fn temp_files(root: &Path) -> Vec<String> {
    paths_under(root)
        .into_iter()
        .filter(|p| p.rsplit('/').next().unwrap().starts_with(".s3backup-restore-"))
        .collect()
}

/// A manifest as the documented format describes it: `header`, then
/// `entries`, one JSON line each, zstd-compressed.
pub fn encode_manifest(header: &serde_json::Value, entries: &[serde_json::Value]) -> Vec<u8> {
    let mut text = String::new();
    for line in std::iter::once(header).chain(entries) {
        text.push_str(&line.to_string());
        text.push('\n');
    }
    zstd::encode_all(text.as_bytes(), 3).unwrap()
}

/// A valid manifest header for a hand-written manifest.
pub fn manifest_header(files: u64, bytes: u64) -> serde_json::Value {
    serde_json::json!({
        "format": 1,
        "tool": "handmade",
        "source": "/nowhere",
        "target": "s3://somewhere",
        "host": "elsewhere",
        "created": "2020-01-01T00:00:00Z",
        "run_id": "0000000000000000000000000000beef",
        "files": files,
        "dirs": 0,
        "bytes": bytes,
    })
}

/// A plain aws-sdk-s3 client for `endpoint` (path-style, the test keys,
/// checksums only where required), for putting objects the way other tools do.
pub fn sdk_client(endpoint: &str) -> aws_sdk_s3::Client {
    sdk_client_in(endpoint, "us-east-1")
}

/// [`sdk_client`] signing for `region` (Garage checks it).
pub fn sdk_client_in(endpoint: &str, region: &str) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{
        BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    };
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            S3Server::ACCESS_KEY,
            S3Server::SECRET_KEY,
            None,
            None,
            "test",
        ))
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Runs a future to completion on a fresh single-threaded runtime (for SDK
/// calls from synchronous tests).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// PutObject of `body` at `key` with a plain client (no s3backup metadata).
#[track_caller]
pub fn sdk_put(client: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &[u8]) {
    let r = block_on(
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(aws_sdk_s3::primitives::ByteStream::from(body.to_vec()))
            .send(),
    );
    if let Err(e) = r {
        panic!(
            "PutObject {bucket}/{key}: {}",
            aws_sdk_s3::error::DisplayErrorContext(&e)
        );
    }
}

/// Files with different modes and mtimes, an empty file, nested and empty
/// directories with their own modes and mtimes (set last, deepest first).
/// Returns the number of files.
pub fn rich_tree(env: &TestEnv) -> usize {
    // (path, content, mtime, mode)
    type Spec = (&'static str, Vec<u8>, (i64, u32), u32);
    let files: &[Spec] = &[
        ("a.txt", b"hello\n".to_vec(), T0, 0o600),
        ("dir/b.txt", b"bee\n".to_vec(), (1_600_000_000, 5), 0o644),
        (
            "dir/sub/c.bin",
            noise(3000, 1),
            (1_650_000_000, 999_999_999),
            0o755,
        ),
        ("empty.txt", Vec::new(), T0, 0o644),
        ("ro.txt", b"read only\n".to_vec(), (1_400_000_000, 1), 0o444),
        (
            "nested/l1/l2/l3/leaf.txt",
            b"leaf".to_vec(),
            (1_690_000_000, 123),
            0o640,
        ),
        (
            "with space/\u{fc}ml\u{e4}ut+%.txt",
            b"odd name".to_vec(),
            (1_680_000_000, 7),
            0o644,
        ),
    ];
    for (rel, content, mtime, mode) in files {
        env.write_at(rel, content, *mtime);
        env.set_mode(rel, *mode);
    }
    for d in ["emptydir", "nested/l1/empty2"] {
        std::fs::create_dir_all(env.path(d)).unwrap();
    }
    // Deepest first, so setting a child does not disturb its parent's mtime.
    let dirs: &[(&str, (i64, u32), u32)] = &[
        ("nested/l1/l2/l3", (1_500_000_003, 3), 0o755),
        ("nested/l1/l2", (1_500_000_002, 2), 0o755),
        ("nested/l1/empty2", (1_500_000_005, 5), 0o700),
        ("nested/l1", (1_500_000_001, 1), 0o750),
        ("nested", (1_500_000_000, 0), 0o755),
        ("dir/sub", (1_550_000_000, 550), 0o750),
        ("dir", (1_560_000_000, 560), 0o755),
        ("emptydir", (1_570_000_000, 570), 0o700),
        ("with space", (1_580_000_000, 580), 0o755),
    ];
    for (rel, mtime, mode) in dirs {
        env.set_mode(rel, *mode);
        env.set_mtime(rel, *mtime);
    }
    files.len()
}

/// The snapshot ID of a manifest key (its file name without the suffix).
pub fn snapshot_id(manifest_key: &str) -> String {
    let name = manifest_key.rsplit('/').next().unwrap();
    name.strip_suffix(".jsonl.zst").unwrap().to_owned()
}

/// Files (not directories) of a tree.
pub fn files_of(root: &Path) -> Vec<(String, Node)> {
    tree(root)
        .into_iter()
        .filter(|(_, n)| matches!(n.kind, Kind::File(_)))
        .collect()
}

/// A path's mtime (not following symlinks).
pub fn mtime_of(p: &Path) -> (i64, u32) {
    let t = FileTime::from_last_modification_time(&std::fs::symlink_metadata(p).unwrap());
    (t.unix_seconds(), t.nanoseconds())
}

/// A sandbox directory holding DEST two levels down, so a `..` escape has
/// somewhere to land that the test can see; and an unrelated outside dir.
pub fn sandbox(env: &TestEnv) -> (PathBuf, PathBuf, PathBuf) {
    let sandbox = env.root().join("sandbox");
    let dest = sandbox.join("a/b/dest");
    let outside = env.root().join("outside");
    std::fs::create_dir_all(&sandbox).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    (sandbox, dest, outside)
}

/// One source file as the backup tests expect to find it in the bucket or store.
pub struct Expect {
    pub rel: &'static str,
    pub content: Vec<u8>,
    pub mtime: (i64, u32),
    pub mode: u32,
}

/// a.txt (600), dir/b.txt (older mtime), dir/sub/c.bin (755), empty.txt.
pub fn standard_tree(env: &TestEnv) -> Vec<Expect> {
    let files = vec![
        Expect {
            rel: "a.txt",
            content: b"hello\n".to_vec(),
            mtime: T0,
            mode: 0o600,
        },
        Expect {
            rel: "dir/b.txt",
            content: b"bee\n".to_vec(),
            mtime: (1_600_000_000, 5),
            mode: 0o644,
        },
        Expect {
            rel: "dir/sub/c.bin",
            content: noise(3000, 1),
            mtime: (1_650_000_000, 999_999_999),
            mode: 0o755,
        },
        Expect {
            rel: "empty.txt",
            content: Vec::new(),
            mtime: T0,
            mode: 0o644,
        },
    ];
    for f in &files {
        env.write_at(f.rel, &f.content, f.mtime);
        env.set_mode(f.rel, f.mode);
    }
    files
}
