//! `--exclude`, `--include`, `--exclude-from` and `.s3backupignore`: what
//! a backup takes, what `--delete` spares, and what a restore brings back.
//!
//! `--delete` spares what a filter leaves out even once it is gone locally
//! too (issue 11, part 6): each form is checked on both stores (the test S3
//! server and a local directory), with `--dry-run` planning the same.

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

/// A store the `--delete` tests run against: the test S3 server or a local directory.
enum Store {
    S3(S3Server),
    Local(std::path::PathBuf),
}

impl Store {
    /// Both kinds, each with a test environment whose backups go to it.
    fn both() -> Vec<(Store, TestEnv)> {
        let (server, s3_env) = setup();
        let local_env = TestEnv::new();
        let dir = local_env.root().join("store");
        vec![(Store::S3(server), s3_env), (Store::Local(dir), local_env)]
    }

    fn target(&self) -> String {
        match self {
            Store::S3(_) => TARGET.to_owned(),
            Store::Local(dir) => dir.to_str().unwrap().to_owned(),
        }
    }

    /// Stored paths outside the tool's area, sorted.
    fn paths(&self) -> Vec<String> {
        match self {
            Store::S3(server) => keys(server),
            Store::Local(dir) => files_of(dir)
                .into_iter()
                .map(|(p, _)| p)
                .filter(|p| !p.starts_with(".s3backup/"))
                .collect(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Store::S3(_) => "s3",
            Store::Local(_) => "local",
        }
    }
}

/// Backs up `files` with no filter, removes `gone` (files, or directories
/// with everything in them) locally, then runs a `--delete` backup with
/// `filters`, first as a dry run (its plan must be the run's) and then for
/// real. Returns the paths deleted, sorted.
#[track_caller]
fn delete_run(store: &Store, env: &TestEnv, files: &[&str], gone: &[&str], filters: &[&str]) -> Vec<String> {
    tree_of(env, files);
    env.backup_ok(&store.target(), &[]);
    for g in gone {
        let p = env.path(g);
        if p.is_dir() {
            std::fs::remove_dir_all(p).unwrap();
        } else {
            std::fs::remove_file(p).unwrap();
        }
    }
    delete_again(store, env, filters)
}

/// A `--delete` backup with `filters`: a dry run, then the run; their
/// deletions must agree. Returns the paths deleted, sorted.
#[track_caller]
fn delete_again(store: &Store, env: &TestEnv, filters: &[&str]) -> Vec<String> {
    let before = store.paths();
    let args = [&["--delete", "--dry-run"][..], filters].concat();
    let r = env.backup(&store.target(), &args);
    r.expect_code(0);
    let planned: Vec<String> = r
        .plan_lines()
        .into_iter()
        .filter_map(|l| l.strip_prefix("delete ").map(str::to_owned))
        .collect();
    assert_eq!(store.paths(), before, "a dry run deletes nothing");
    let s = env.backup_ok(&store.target(), &[&["--delete"][..], filters].concat());
    let after = store.paths();
    let deleted: Vec<String> = before.iter().filter(|p| !after.contains(p)).cloned().collect();
    assert_eq!(s.deleted, deleted.len() as u64, "{}: {s:?}", store.name());
    // The plan also lists directory rows, which have no object.
    let planned_objects: Vec<String> = planned.into_iter().filter(|p| before.contains(p)).collect();
    assert_eq!(
        planned_objects,
        deleted,
        "{}: the dry run plans what the run does",
        store.name()
    );
    deleted
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

/// A pattern ending in `/` matches directories only (gitignore(5)), also
/// at the top: `--exclude '*/'` once left out every top-level file too,
/// and a `*/` in an ignore file every file beside it; a restore with
/// `--exclude '*/'` brought nothing back.
#[test]
fn a_directory_only_pattern_never_matches_a_file_at_its_own_level() {
    let (server, env) = setup();
    tree_of(
        &env,
        &[
            "a.txt",
            "b.log",
            "docs/d.txt",
            "cache/x/c.txt",
            "n/y.txt",
            "n/e/z.txt",
        ],
    );
    env.write("n/.s3backupignore", "*/\n");
    for pattern in ["*/", "/*/"] {
        let r = env.backup(TARGET, &["--json", "--dry-run", "--exclude", pattern]);
        r.expect_code(0);
        let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
        assert_eq!(v["uploaded"], 2, "{pattern}: only a.txt and b.log go: {v}");
    }
    env.backup(TARGET, &[]).expect_code(0);
    assert_eq!(
        keys(&server),
        [
            "a.txt",
            "b.log",
            "cache/x/c.txt",
            "docs/d.txt",
            "n/.s3backupignore",
            "n/y.txt"
        ],
        "the ignore file's `*/` leaves out n/e only"
    );
    let dest = env.root().join("restored");
    env.restore(TARGET, &dest, &["--exclude", "*/"]).expect_code(0);
    assert_eq!(
        files_of(&dest).into_iter().map(|(p, _)| p).collect::<Vec<_>>(),
        ["a.txt", "b.log"]
    );
}

/// The text summary says how much the filters left out, as `--json` does.
#[test]
fn the_text_summary_counts_what_filters_left_out() {
    let (_server, env) = setup();
    env.write("keep.txt", "k")
        .write("junk.tmp", "j")
        .write("cache/x", "x");
    let r = env.backup("bkt::pre", &["--exclude", "*.tmp", "--exclude", "cache/"]);
    r.expect_code(0);
    assert!(r.stdout.contains("  excluded 2 by filters"), "{}", r.show());
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
    // The filters leave no file to back up: an empty source to the delete guard.
    let s = env.backup_ok(
        TARGET,
        &[
            "--delete",
            "--allow-empty-source",
            "--exclude",
            "*.tmp",
            "--exclude",
            "logs/",
        ],
    );
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

#[test]
fn delete_spares_an_excluded_file_that_is_gone_locally_too() {
    for (store, env) in Store::both() {
        let deleted = delete_run(
            &store,
            &env,
            &["a.txt", "b.tmp", "d/c.tmp", "keep.txt"],
            &["a.txt", "b.tmp", "d/c.tmp"],
            &["--exclude", "*.tmp"],
        );
        assert_eq!(deleted, ["a.txt"], "{}", store.name());
        assert_eq!(
            store.paths(),
            ["b.tmp", "d/c.tmp", "keep.txt"],
            "{}",
            store.name()
        );
    }
}

#[test]
fn delete_spares_an_excluded_directory_that_is_gone_locally_too() {
    for (store, env) in Store::both() {
        let deleted = delete_run(
            &store,
            &env,
            &[
                "logs/x.log",
                "logs/sub/y.log",
                "build/out.o",
                "src/build/z.rs",
                "gone.txt",
                "keep.txt",
            ],
            &["logs", "build", "src", "gone.txt"],
            &["--exclude", "logs/", "--exclude", "/build"],
        );
        // src/build is not /build: it goes with src.
        assert_eq!(deleted, ["gone.txt", "src/build/z.rs"], "{}", store.name());
        assert_eq!(
            store.paths(),
            ["build/out.o", "keep.txt", "logs/sub/y.log", "logs/x.log"],
            "{}",
            store.name()
        );
    }
}

#[test]
fn delete_spares_what_exclude_everything_but_include_leaves_out() {
    for (store, env) in Store::both() {
        let deleted = delete_run(
            &store,
            &env,
            &["a.txt", "a.bin", "d/b.txt", "d/c.bin", "e/f.bin", "keep.txt"],
            &["a.txt", "a.bin", "d", "e"],
            &["--exclude", "*", "--include", "*.txt"],
        );
        assert_eq!(deleted, ["a.txt", "d/b.txt"], "{}", store.name());
        assert_eq!(
            store.paths(),
            ["a.bin", "d/c.bin", "e/f.bin", "keep.txt"],
            "{}",
            store.name()
        );
    }
}

#[test]
fn delete_spares_what_an_ignore_file_leaves_out_once_it_is_gone_locally() {
    for (store, env) in Store::both() {
        let n = store.name();
        tree_of(
            &env,
            &[
                "a.log",
                "a.txt",
                "sub/b.log",
                "sub/c.txt",
                "keep.txt",
                "proj/x.o",
                "proj/y.c",
                "tmp/t.o",
                "tmp/u.c",
            ],
        );
        env.backup_ok(&store.target(), &[]);
        // Rules added after these files went up; then the files, and whole
        // directories, are deleted locally.
        env.write(".s3backupignore", "*.log\n");
        env.write("proj/.s3backupignore", "*.o\n");
        env.write("tmp/.s3backupignore", "*.nothing\n");
        env.backup_ok(&store.target(), &[]);
        for f in ["a.log", "a.txt"] {
            env.remove(f);
        }
        for d in ["sub", "proj", "tmp"] {
            std::fs::remove_dir_all(env.path(d)).unwrap();
        }
        let deleted = delete_again(&store, &env, &[]);
        // The top ignore file still exists and spares every *.log, also in
        // the gone sub/. proj/'s ignore file is gone with its directory: its
        // rules are read from the store's copy, so x.o stays, and so does
        // the ignore file, which is what keeps it spared. tmp/'s spares
        // nothing, so all of tmp/ goes.
        assert_eq!(
            deleted,
            [
                "a.txt",
                "proj/y.c",
                "sub/c.txt",
                "tmp/.s3backupignore",
                "tmp/t.o",
                "tmp/u.c"
            ],
            "{n}"
        );
        assert_eq!(
            store.paths(),
            [
                ".s3backupignore",
                "a.log",
                "keep.txt",
                "proj/.s3backupignore",
                "proj/x.o",
                "sub/b.log"
            ],
            "{n}"
        );
        // Durable: the next run spares the same, deletes nothing.
        assert_eq!(delete_again(&store, &env, &[]), Vec::<String>::new(), "{n}");
    }
}

#[test]
fn dry_run_delete_plans_no_deletion_of_a_filtered_out_path() {
    for (store, env) in Store::both() {
        tree_of(&env, &["a.txt", "b.tmp", "logs/x.log", "keep.txt"]);
        env.backup_ok(&store.target(), &[]);
        env.remove("a.txt").remove("b.tmp");
        std::fs::remove_dir_all(env.path("logs")).unwrap();
        let r = env.backup(
            &store.target(),
            &[
                "--dry-run",
                "--delete",
                "--exclude",
                "*.tmp",
                "--exclude",
                "logs/",
            ],
        );
        r.expect_code(0);
        assert_eq!(r.plan_lines(), ["delete a.txt"], "{}\n{}", store.name(), r.show());
        assert_eq!(
            store.paths(),
            ["a.txt", "b.tmp", "keep.txt", "logs/x.log"],
            "{}",
            store.name()
        );
    }
}

/// The last matching filter decides, in command-line order, as in the AWS
/// CLI: `--exclude '*' --include '*.txt'` keeps the text files,
/// `--include '*.txt' --exclude '*'` keeps nothing, and an
/// `--exclude-from` file counts where it is typed. Backup and restore
/// take the same paths.
#[test]
fn the_last_matching_filter_wins_in_either_order() {
    let files = ["a.txt", "b.bin", "d/c.txt", "d/e.bin", "keep/x.txt"];
    let list = |env: &TestEnv| {
        let p = env.root().join("list");
        std::fs::write(&p, "*.txt\n").unwrap();
        p.to_str().unwrap().to_owned()
    };
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (
            vec!["--exclude", "*", "--include", "*.txt"],
            &["a.txt", "d/c.txt", "keep/x.txt"],
        ),
        (vec!["--include", "*.txt", "--exclude", "*"], &[]),
        (
            vec!["--include", "keep/", "--exclude", "*.txt"],
            &["b.bin", "d/e.bin"],
        ),
        (
            vec!["--exclude", "*.txt", "--include", "keep/"],
            &["b.bin", "d/e.bin", "keep/x.txt"],
        ),
        (
            vec!["--include", "keep/", "--exclude-from", "LIST"],
            &["b.bin", "d/e.bin"],
        ),
        (
            vec!["--exclude-from", "LIST", "--include", "keep/"],
            &["b.bin", "d/e.bin", "keep/x.txt"],
        ),
    ];
    for (filters, expected) in cases {
        let env = TestEnv::new();
        tree_of(&env, &files);
        let list = list(&env);
        let filters: Vec<&str> = filters
            .iter()
            .map(|f| if *f == "LIST" { list.as_str() } else { f })
            .collect();
        let store = env.root().join("store");
        let target = store.to_str().unwrap();
        env.backup_ok(target, &filters);
        let stored: Vec<String> = files_of(&store)
            .into_iter()
            .filter(|(p, _)| !p.starts_with(".s3backup"))
            .map(|(p, _)| p)
            .collect();
        assert_eq!(stored, expected, "backup with {filters:?}");

        // A restore of a full backup with the same filters brings back the same.
        let full = env.root().join("full");
        env.backup_ok(full.to_str().unwrap(), &[]);
        let dest = env.root().join("dest");
        env.restore_ok(full.to_str().unwrap(), &dest, &filters);
        let restored: Vec<String> = files_of(&dest).into_iter().map(|(p, _)| p).collect();
        assert_eq!(restored, expected, "restore with {filters:?}");
    }
}

/// `--delete` spares what the last matching filter leaves out, whichever
/// the order: with `--include '*.txt' --exclude '*'` every path is left
/// out, so nothing gone locally is deleted.
#[test]
fn delete_spares_what_the_last_matching_filter_leaves_out() {
    for (store, env) in Store::both() {
        let deleted = delete_run(
            &store,
            &env,
            &["a.txt", "a.bin", "d/b.txt", "keep.txt"],
            &["a.txt", "a.bin", "d"],
            &["--include", "*.txt", "--exclude", "*"],
        );
        assert_eq!(deleted, Vec::<String>::new(), "{}", store.name());
        assert_eq!(
            store.paths(),
            ["a.bin", "a.txt", "d/b.txt", "keep.txt"],
            "{}",
            store.name()
        );
    }
}

/// `state files PATTERN` reads PATTERN as `--exclude` does (gitignore
/// syntax): a directory takes everything under it, a name without `/`
/// matches at any depth, a leading `/` anchors to the top.
#[test]
fn state_files_takes_the_filters_patterns() {
    let env = TestEnv::new();
    tree_of(&env, &["a.txt", "docs/a.txt", "docs/sub/r.pdf", "other/docs.txt"]);
    let store = env.root().join("store");
    env.backup_ok(store.to_str().unwrap(), &[]);
    let listed = |pattern: &str| -> Vec<String> {
        let mut cmd = env.cmd();
        cmd.args(["state", "files", "--json", "--state"])
            .arg(&env.state)
            .arg(pattern);
        let r = run(cmd);
        r.expect_code(0);
        r.stdout
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["path"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(listed("docs/"), ["docs/a.txt", "docs/sub/r.pdf"]);
    assert_eq!(listed("docs"), ["docs/a.txt", "docs/sub/r.pdf"]);
    assert_eq!(listed("/a.txt"), ["a.txt"]);
    assert_eq!(listed("a.txt"), ["a.txt", "docs/a.txt"]);
    assert_eq!(listed("*.pdf"), ["docs/sub/r.pdf"]);
    assert_eq!(listed("**/sub/*.pdf"), ["docs/sub/r.pdf"]);
}
