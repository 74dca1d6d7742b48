//! How long a repeated backup of an unchanged tree takes, end to end: the
//! real release binary (process start, state file, credential and bucket
//! check, directory walk, plan) against an in-process S3 server on
//! 127.0.0.1 and against a local directory store.
//!
//! Run: `cargo bench --bench unchanged_rerun` (options after `--`:
//! `--files N` (default 10000), `--runs N` (default 10)).

#[path = "../tests/it/server.rs"]
#[allow(dead_code, unused_imports)]
mod server;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let mut files = 10_000usize;
    let mut runs = 10usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--files" => files = args.next().and_then(|v| v.parse().ok()).unwrap_or(files),
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).unwrap_or(runs),
            _ => {} // cargo bench passes --bench
        }
    }
    let work = tempfile::tempdir().expect("temp dir");
    let src = work.path().join("src");
    make_tree(&src, files);
    println!(
        "tree: {files} files of 1 KiB in {} directories",
        files.div_ceil(100)
    );

    let server = server::S3Server::start();
    let s3_target = "s3://bench-bucket/tree";
    let s3_args = ["--endpoint-url", &server.endpoint()];
    let first = backup(work.path(), "s3.db", &src, s3_target, &s3_args);
    println!(
        "S3 (in-process s3s-fs): first backup {:.2} s",
        first.as_secs_f64()
    );
    server.clear_requests();
    let times: Vec<Duration> = (0..runs)
        .map(|_| backup(work.path(), "s3.db", &src, s3_target, &s3_args))
        .collect();
    report("S3 (in-process s3s-fs): unchanged re-run", &times);
    println!(
        "  requests per re-run: {}",
        server.requests().len() as f64 / runs as f64
    );

    let store = work.path().join("store");
    let local_target = store.to_str().expect("utf-8 temp path");
    let first = backup(work.path(), "local.db", &src, local_target, &[]);
    println!("local store: first backup {:.2} s", first.as_secs_f64());
    let times: Vec<Duration> = (0..runs)
        .map(|_| backup(work.path(), "local.db", &src, local_target, &[]))
        .collect();
    report("local store: unchanged re-run", &times);
}

fn make_tree(root: &Path, files: usize) {
    for i in 0..files {
        let dir = root.join(format!("d{:03}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&dir).expect("mkdir");
        }
        let body: Vec<u8> = (0..1024u32).map(|b| (b as usize * 31 + i) as u8).collect();
        std::fs::write(dir.join(format!("f{i:05}.bin")), body).expect("write");
    }
}

fn backup(work: &Path, state: &str, src: &Path, target: &str, extra: &[&str]) -> Duration {
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
        .args(extra);
    let start = Instant::now();
    let out = cmd.output().expect("run s3backup");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "backup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn report(what: &str, times: &[Duration]) {
    let mut ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "{what}: min {:.0} ms, median {:.0} ms, max {:.0} ms over {} runs",
        ms[0],
        ms[ms.len() / 2],
        ms[ms.len() - 1],
        ms.len()
    );
}
