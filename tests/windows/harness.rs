//! Running the real binary on Windows and looking at trees and manifests.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

use crate::server::S3Server;

/// The drive the CI script maps for these tests (`E:` unless
/// `S3BACKUP_WIN_DRIVE` names another), as `E:\`.
pub fn drive() -> PathBuf {
    let letter = std::env::var("S3BACKUP_WIN_DRIVE").unwrap_or_else(|_| "E:".into());
    let root = PathBuf::from(format!(r"{letter}\"));
    assert!(
        root.is_dir(),
        "{} is not mapped: run the suite through .ci/windows.sh, or set S3BACKUP_WIN_DRIVE",
        root.display()
    );
    root
}

/// The network share the CI script serves (`\\localhost\share` unless
/// `S3BACKUP_WIN_SHARE` names another).
pub fn share() -> PathBuf {
    let share = std::env::var("S3BACKUP_WIN_SHARE").unwrap_or_else(|_| r"\\localhost\share".into());
    let root = PathBuf::from(share);
    assert!(
        root.is_dir(),
        "{} is not reachable: run the suite through .ci/windows.sh, or set S3BACKUP_WIN_SHARE",
        root.display()
    );
    root
}

/// A fresh empty directory under `parent`, removed when dropped.
pub fn scratch(parent: &Path) -> TempDir {
    tempfile::Builder::new()
        .prefix("s3b-")
        .tempdir_in(parent)
        .unwrap_or_else(|e| panic!("a scratch directory in {}: {e}", parent.display()))
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    /// Exit code (None if it had none).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics, showing the output, unless the exit code is `code`.
    #[track_caller]
    pub fn expect(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// stdout parsed as one JSON document.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON: {e}\n{}\n{}", self.stdout, self.stderr))
    }
}

/// The binary under test with a clean environment: no `AWS_*` or
/// `S3BACKUP_*` variable from outside, the test server's keys, no AWS
/// config or credentials files, no instance metadata, no colour.
pub fn s3backup(config_dir: &Path) -> Command {
    let bin = std::env::var_os("S3BACKUP_IT_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_s3backup").into());
    let mut cmd = Command::new(bin);
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy().to_ascii_uppercase();
        if text.starts_with("AWS_") || text.starts_with("S3BACKUP_") {
            cmd.env_remove(&name);
        }
    }
    cmd.env_remove("RUST_LOG")
        .env("AWS_ACCESS_KEY_ID", S3Server::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", S3Server::SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", config_dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            config_dir.join("no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

/// Runs `s3backup ARGS…` and collects what it did.
pub fn run<I, S>(config_dir: &Path, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = s3backup(config_dir)
        .args(args)
        .output()
        .expect("start s3backup.exe");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The small tree every case backs up: relative path (with `/`) → bytes.
pub fn sample() -> BTreeMap<String, Vec<u8>> {
    [
        ("a.txt", &b"alpha"[..]),
        ("Quarterly Report.txt", b"q3 numbers"),
        ("sub/b.txt", b"bravo"),
        ("sub/deeper/c.txt", b"charlie"),
        ("empty.txt", b""),
    ]
    .into_iter()
    .map(|(p, b)| (p.to_string(), b.to_vec()))
    .collect()
}

/// Writes `tree` (relative paths with `/`) under `root`.
pub fn write_tree(root: &Path, tree: &BTreeMap<String, Vec<u8>>) {
    for (rel, bytes) in tree {
        let path = root.join(rel.replace('/', "\\"));
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create directories");
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

/// Every file under `root`: relative path (with `/`) → bytes. Skips the
/// store's own `.s3backup` area.
pub fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    walk(root, "", &mut out);
    out
}

fn walk(dir: &Path, rel: &str, out: &mut BTreeMap<String, Vec<u8>>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.expect("a directory entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if rel.is_empty() && name == ".s3backup" {
            continue;
        }
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if entry.file_type().expect("a file type").is_dir() {
            walk(&entry.path(), &child, out);
        } else {
            out.insert(child, std::fs::read(entry.path()).expect("read a file"));
        }
    }
}

/// The `path` of every entry of every manifest under `manifests` (a
/// local store's `.s3backup\manifests` directory).
pub fn manifest_paths_in_dir(manifests: &Path) -> Vec<String> {
    let mut paths = Vec::new();
    let entries =
        std::fs::read_dir(manifests).unwrap_or_else(|e| panic!("read {}: {e}", manifests.display()));
    for entry in entries {
        let bytes = std::fs::read(entry.expect("an entry").path()).expect("read a manifest");
        paths.extend(manifest_paths(&bytes));
    }
    paths
}

/// The `path` of every entry of one zstd-compressed JSON-lines manifest.
pub fn manifest_paths(compressed: &[u8]) -> Vec<String> {
    let raw = zstd::decode_all(compressed).expect("manifest is zstd");
    String::from_utf8(raw)
        .expect("manifest is UTF-8")
        .lines()
        .filter_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("manifest line is JSON");
            v.get("path").and_then(|p| p.as_str()).map(str::to_owned)
        })
        .collect()
}

/// A path `extra` characters past Windows' old 260-character limit: `base`
/// and then 40-character directory names.
pub fn long_path(base: &Path, extra: usize) -> PathBuf {
    let mut path = base.to_path_buf();
    let mut i = 0;
    while path.as_os_str().len() < 260 + extra {
        path.push(format!("{i:02}-{}", "d".repeat(37)));
        i += 1;
    }
    path
}
