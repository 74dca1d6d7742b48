//! How long a repeated backup of an unchanged tree takes, end to end: the
//! real release binary (process start, state file, credential and bucket
//! check, directory walk, plan) against an in-process S3 server on
//! 127.0.0.1 and against a local directory store, with each process's peak
//! RSS, beside a bare `find` over the same tree as the floor.
//!
//! Run: `cargo bench --bench unchanged_rerun` (options after `--`:
//! `--files N` (default 10000), `--runs N` (default 10), `--size BYTES`
//! per file (default 1024; 0 makes empty files), `--local-only`).

#[path = "../tests/it/server.rs"]
#[allow(dead_code, unused_imports)]
mod server;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Opts {
    files: usize,
    runs: usize,
    size: usize,
    local_only: bool,
}

fn main() {
    let mut o = Opts {
        files: 10_000,
        runs: 10,
        size: 1024,
        local_only: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut num = |d: usize| args.next().and_then(|v| v.parse().ok()).unwrap_or(d);
        match arg.as_str() {
            "--files" => o.files = num(o.files),
            "--runs" => o.runs = num(o.runs),
            "--size" => o.size = num(o.size),
            "--local-only" => o.local_only = true,
            _ => {} // cargo bench passes --bench
        }
    }
    let work = tempfile::tempdir().expect("temp dir");
    let src = work.path().join("src");
    make_tree(&src, o.files, o.size);
    println!(
        "tree: {} files of {} bytes in {} directories",
        o.files,
        o.size,
        o.files.div_ceil(100)
    );
    let mut find = Command::new("find");
    find.arg(&src)
        .args(["-printf", "%s %T@\\n"])
        .stdout(Stdio::null());
    let floor: Vec<(Duration, f64)> = (0..o.runs).map(|_| timed(&mut find)).collect();
    report("floor: find -printf '%s %T@'", &floor);

    if !o.local_only {
        let server = server::S3Server::start();
        let target = "s3://bench-bucket/tree";
        let extra = ["--endpoint-url", &server.endpoint()];
        let first = backup(work.path(), "s3.db", &src, target, &extra);
        report("S3 (in-process s3s-fs): first backup", &[first]);
        server.clear_requests();
        let runs: Vec<_> = (0..o.runs)
            .map(|_| backup(work.path(), "s3.db", &src, target, &extra))
            .collect();
        report("S3 (in-process s3s-fs): unchanged re-run", &runs);
        println!(
            "  requests per re-run: {}",
            server.requests().len() as f64 / o.runs as f64
        );
    }

    let store = work.path().join("store");
    let target = store.to_str().expect("utf-8 temp path");
    let first = backup(work.path(), "local.db", &src, target, &[]);
    report("local store: first backup", &[first]);
    let runs: Vec<_> = (0..o.runs)
        .map(|_| backup(work.path(), "local.db", &src, target, &[]))
        .collect();
    report("local store: unchanged re-run", &runs);
}

fn make_tree(root: &Path, files: usize, size: usize) {
    for i in 0..files {
        let dir = root.join(format!("d{:05}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&dir).expect("mkdir");
        }
        let body: Vec<u8> = (0..size).map(|b| (b * 31 + i) as u8).collect();
        std::fs::write(dir.join(format!("f{i:07}.bin")), body).expect("write");
    }
}

fn backup(work: &Path, state: &str, src: &Path, target: &str, extra: &[&str]) -> (Duration, f64) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_s3backup"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("AWS_")) {
        cmd.env_remove(k);
    }
    cmd.env("AWS_ACCESS_KEY_ID", server::S3Server::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", server::S3Server::SECRET_KEY)
        .env("AWS_CONFIG_FILE", work.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", work.join("no-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .arg("--state")
        .arg(work.join(state))
        .arg("-q")
        .arg("backup")
        .arg(src)
        .arg(target)
        .args(extra)
        .stdout(Stdio::null());
    timed(&mut cmd)
}

/// Runs a command to completion; returns its wall time and peak RSS in MB.
#[cfg(unix)]
fn timed(cmd: &mut Command) -> (Duration, f64) {
    let start = Instant::now();
    #[allow(clippy::zombie_processes)] // reaped by wait4 below, which also gives the rusage
    let child = cmd.spawn().expect("spawn");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, which std has not reaped.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let took = start.elapsed();
    assert!(
        pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed"
    );
    (took, usage.ru_maxrss as f64 / 1024.0)
}

/// Runs a command to completion; returns its wall time and 0 for the peak
/// RSS, which std cannot read for a child outside Unix (`wait4`).
#[cfg(not(unix))]
fn timed(cmd: &mut Command) -> (Duration, f64) {
    let start = Instant::now();
    let status = cmd.status().expect("spawn");
    let took = start.elapsed();
    assert!(status.success(), "{cmd:?} failed");
    (took, 0.0)
}

fn report(what: &str, runs: &[(Duration, f64)]) {
    let mut ms: Vec<f64> = runs.iter().map(|(t, _)| t.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let rss = runs.iter().map(|(_, r)| *r).fold(0.0, f64::max);
    if ms.len() == 1 {
        println!("{what}: {:.0} ms, peak RSS {rss:.1} MB", ms[0]);
    } else {
        println!(
            "{what}: median {:.0} ms (min {:.0}, max {:.0}) over {} runs, peak RSS {rss:.1} MB",
            ms[ms.len() / 2],
            ms[0],
            ms[ms.len() - 1],
            ms.len()
        );
    }
}
