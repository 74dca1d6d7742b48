//! `--exclude`, `--include`, `--exclude-from` and `.s3backupignore`: what
//! a backup takes, what `--delete` spares, and what a restore brings back.

use crate::common::*;
use crate::server::S3Server;

const BUCKET: &str = "bkt";
const TARGET: &str = "bkt::pre";

fn setup() -> (S3Server, TestEnv) {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    (server, env)
}

/// Keys under `pre/` outside the tool's area, sorted.
fn keys(server: &S3Server) -> Vec<String> {
    server
        .list_keys(BUCKET)
        .into_iter()
        .filter_map(|k| k.strip_prefix("pre/").map(str::to_owned))
        .filter(|k| !k.starts_with(".s3backup/"))
        .collect()
}

fn tree_of(env: &TestEnv, files: &[&str]) {
    for f in files {
        env.write(f, format!("content of {f}"));
    }
}

#[test]
fn exclude_and_include_pick_what_a_backup_takes() {
    let (server, env) = setup();
    tree_of(
        &env,
        &[
            "a.txt",
            "a.tmp",
            "deep/er/b.tmp",
            "deep/er/b.txt",
            "build/out.o",
            "build/keep.txt",
            "src/build/real.rs",
            "cache/x",
            "docs/cache",
        ],
    );
    let r = env.backup(
        TARGET,
        &[
            "--json",
            "--exclude",
            "*.tmp",
            "--exclude",
            "/build",
            "--exclude",
            "cache/",
            "--include",
            "build/keep.txt",
        ],
    );
    r.expect_code(0);
    assert_eq!(
        keys(&server),
        [
            "a.txt",
            "build/keep.txt",
            "deep/er/b.txt",
            "docs/cache",
            "src/build/real.rs"
        ]
    );
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    // a.tmp, deep/er/b.tmp, build/out.o, cache (one directory).
    assert_eq!(v["excluded"], 4, "{v}");
}

#[test]
fn exclude_everything_but_include_keeps_only_the_included() {
    let (server, env) = setup();
    tree_of(&env, &["a.txt", "a.bin", "d/b.txt", "d/e/c.bin", "d/e/f.txt"]);
    env.backup_ok(TARGET, &["--exclude", "*", "--include", "*.txt"]);
    assert_eq!(keys(&server), ["a.txt", "d/b.txt", "d/e/f.txt"]);
}

#[test]
fn exclude_from_reads_patterns_from_a_file() {
    let (server, env) = setup();
    tree_of(&env, &["keep.txt", "x.log", "tmp/t", "notes"]);
    let list = env.root().join("excludes");
    std::fs::write(&list, "# build junk\n*.log\n\n/tmp\n").unwrap();
    env.backup_ok(TARGET, &["--exclude-from", list.to_str().unwrap()]);
    assert_eq!(keys(&server), ["keep.txt", "notes"]);
}

#[test]
fn s3backupignore_files_apply_below_their_directory_and_nest() {
    let (server, env) = setup();
    tree_of(
        &env,
        &[
            "a.log",
            "a.txt",
            "secret/key",
            "sub/b.log",
            "sub/keep.log",
            "sub/inner/c.log",
            "other/d.o",
        ],
    );
    env.write(".s3backupignore", "*.log\nsecret/\n");
    env.write("sub/.s3backupignore", "!keep.log\n");
    env.write("other/.s3backupignore", "*.o\n");
    env.backup_ok(TARGET, &[]);
    assert_eq!(
        keys(&server),
        [
            ".s3backupignore",
            "a.txt",
            "other/.s3backupignore",
            "sub/.s3backupignore",
            "sub/keep.log"
        ]
    );
    // --include beats an ignore file.
    env.backup_ok(TARGET, &["--include", "secret/"]);
    assert!(keys(&server).contains(&"secret/key".to_string()));
}

#[test]
fn delete_spares_what_a_filter_now_leaves_out() {
    let (server, env) = setup();
    tree_of(&env, &["a.txt", "b.tmp", "logs/x.log"]);
    env.backup_ok(TARGET, &[]);
    env.remove("a.txt");
    let s = env.backup_ok(TARGET, &["--delete", "--exclude", "*.tmp", "--exclude", "logs/"]);
    assert_eq!(s.deleted, 1, "only a.txt, deleted locally: {s:?}");
    assert_eq!(keys(&server), ["b.tmp", "logs/x.log"]);
}

#[test]
fn the_same_filters_select_what_a_restore_brings_back() {
    let (_server, env) = setup();
    tree_of(&env, &["a.txt", "a.tmp", "d/b.txt", "d/b.bin", "logs/x.log"]);
    env.backup_ok(TARGET, &[]);
    for extra in [&[][..], &["--from-listing"][..]] {
        let dest = tempfile::tempdir().unwrap();
        let args = [
            &["--exclude", "*.tmp", "--exclude", "logs/", "--exclude", "*.bin"][..],
            extra,
        ]
        .concat();
        let r = env.restore_ok(TARGET, dest.path(), &args);
        assert_eq!(
            paths_under(dest.path()),
            ["a.txt", "d", "d/b.txt"],
            "{extra:?} {r:?}"
        );
        let dest = tempfile::tempdir().unwrap();
        let args = [&["--exclude", "*", "--include", "*.tmp"][..], extra].concat();
        env.restore_ok(TARGET, dest.path(), &args);
        assert_eq!(paths_under(dest.path()), ["a.tmp"], "{extra:?}");
    }
}

#[test]
fn bad_patterns_and_missing_pattern_files_are_one_line_errors() {
    let (_server, env) = setup();
    env.write("a.txt", "a");
    let r = env.backup(TARGET, &["--exclude", "a[z-a]"]);
    r.expect_code(2);
    assert!(
        r.stderr
            .lines()
            .next()
            .unwrap()
            .contains("'a[z-a]' is not a valid pattern"),
        "{}",
        r.show()
    );
    let missing = env.root().join("no-such-list");
    let r = env.backup(TARGET, &["--exclude-from", missing.to_str().unwrap()]);
    r.expect_code(1);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.show());
    assert!(r.stderr.contains("no-such-list"), "{}", r.show());
}
