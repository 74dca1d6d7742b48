//! Named backup sets: `backup SOURCE TARGET --set NAME` remembers the set,
//! `backup --set NAME` runs it from anywhere, `sets` lists them.

use crate::common::*;
use crate::server::S3Server;

const BUCKET: &str = "bkt";
const TARGET: &str = "bkt::pre";

/// `s3backup backup --set NAME --state STATE EXTRA...` run from `cwd`, no SOURCE or TARGET.
fn by_name(env: &TestEnv, name: &str, cwd: &std::path::Path, extra: &[&str]) -> Run {
    let mut cmd = env.cmd();
    cmd.current_dir(cwd)
        .args(["backup", "--set", name, "--state"])
        .arg(&env.state)
        .args(extra);
    run(cmd)
}

#[test]
fn a_named_set_runs_by_name_with_its_saved_options_from_anywhere() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    // This test replaces or deletes most of a tiny set on purpose (the guard is tested in `guard`).
    let env = env.past_the_guard();
    env.write("a.txt", "a").write("junk.tmp", "junk");
    // The endpoint is an option like any other: saved with the set.
    env.backup_ok(TARGET, &["--set", "docs", "--exclude", "*.tmp", "--delete"]);
    assert!(server.object_bytes(BUCKET, "pre/junk.tmp").is_none());

    env.write("b.txt", "b").write("more.tmp", "more");
    env.remove("a.txt");
    let elsewhere = tempfile::tempdir().unwrap();
    let r = by_name(&env, "docs", elsewhere.path(), &["--json"]);
    r.expect_code(0);
    let s = r.summary();
    assert_eq!(
        (s.uploaded, s.deleted),
        (1, 1),
        "b.txt up, a.txt gone (saved --delete): {s:?}"
    );
    assert!(
        server.object_bytes(BUCKET, "pre/more.tmp").is_none(),
        "saved --exclude"
    );
    assert!(server.object_bytes(BUCKET, "pre/b.txt").is_some());

    // An option given now wins for this run only.
    let r = by_name(&env, "docs", elsewhere.path(), &["--json", "--include", "*.tmp"]);
    r.expect_code(0);
    assert!(server.object_bytes(BUCKET, "pre/more.tmp").is_some());

    // `sets` (and `state sets`) list it under its name.
    let mut cmd = env.cmd();
    cmd.args(["sets", "--json", "--state"]).arg(&env.state);
    let r = run(cmd);
    r.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["name"], "docs");
    assert_eq!(
        v[0]["target"],
        format!("s3://bkt/pre (endpoint {})", server.endpoint())
    );
    let mut cmd = env.cmd();
    cmd.args(["sets", "--state"]).arg(&env.state);
    let r = run(cmd);
    r.expect_code(0);
    assert!(r.stdout.contains("docs"), "{}", r.show());
}

#[test]
fn unknown_half_given_and_taken_names_are_clear_errors() {
    let env = TestEnv::new();
    env.write("a.txt", "a");
    let store = env.root().join("store");
    let store = store.to_str().unwrap();
    let r = by_name(&env, "nope", env.root(), &[]);
    r.expect_code(1);
    assert!(
        r.error_line().contains("no backup set is named 'nope'"),
        "{}",
        r.show()
    );

    let mut cmd = env.cmd();
    cmd.args(["backup", "--set", "x", "--state"])
        .arg(&env.state)
        .arg(&env.src);
    let r = run(cmd);
    // A command line that cannot be run as given: a usage error.
    r.expect_code(2);
    assert!(
        r.error_line().contains("give both SOURCE and TARGET"),
        "{}",
        r.show()
    );

    env.backup_ok(store, &["--set", "docs"]);
    let other = env.root().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let mut cmd = env.cmd();
    cmd.args(["backup"])
        .arg(&other)
        .arg(store)
        .args(["--set", "docs", "--state"])
        .arg(&env.state);
    let r = run(cmd);
    r.expect_code(1);
    assert!(
        r.error_line().contains("the name 'docs' is already used"),
        "{}",
        r.show()
    );

    // No SOURCE, TARGET or --set at all: a usage error.
    let mut cmd = env.cmd();
    cmd.args(["backup", "--state"]).arg(&env.state);
    run(cmd).expect_code(2);
}

/// The local store's files (outside the tool's own area), sorted.
fn stored(store: &std::path::Path) -> Vec<String> {
    files_of(store)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| !p.starts_with(".s3backup/"))
        .collect()
}

/// `s3backup backup WORDS... --state STATE` run from `cwd`.
fn backup_in(env: &TestEnv, cwd: &std::path::Path, words: &[&str]) -> Run {
    let mut cmd = env.cmd();
    cmd.current_dir(cwd)
        .arg("backup")
        .args(words)
        .arg("--state")
        .arg(&env.state);
    run(cmd)
}

/// `sets --json`, parsed.
fn sets_json(env: &TestEnv) -> Vec<serde_json::Value> {
    let mut cmd = env.cmd();
    cmd.args(["sets", "--json", "--state"]).arg(&env.state);
    let r = run(cmd);
    r.expect_code(0);
    serde_json::from_str::<serde_json::Value>(&r.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The ETag the state file records for `path`.
fn recorded_etag(env: &TestEnv, path: &str) -> Option<String> {
    let mut cmd = env.cmd();
    cmd.args(["state", "files", "--json", "--state"]).arg(&env.state);
    let r = run(cmd);
    r.expect_code(0);
    r.stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["path"] == path)
        .map(|v| v["etag"].as_str().unwrap().to_owned())
}

/// An option typed when running by name wins even when it equals its
/// default: a set saved with a 5 MiB multipart threshold, run with
/// `--multipart-threshold 64MiB` (the default), sends a 6 MiB file whole
/// (one PUT: an ETag without a part count), not in parts.
#[test]
fn an_option_typed_with_its_default_value_wins_over_the_saved_one() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    env.write("a.txt", "a");
    env.backup_ok(
        TARGET,
        &["--set", "docs", "--multipart-threshold", "5MiB", "--jobs", "4"],
    );
    env.write("big.bin", noise(6 << 20, 7));
    let elsewhere = tempfile::tempdir().unwrap();
    let r = by_name(
        &env,
        "docs",
        elsewhere.path(),
        &["--json", "--multipart-threshold", "64MiB", "--jobs", "16"],
    );
    r.expect_code(0);
    assert_eq!(r.summary().uploaded, 1, "{}", r.show());
    let etag = recorded_etag(&env, "big.bin").expect("big.bin stored");
    assert!(
        !etag.contains('-'),
        "sent whole, as --multipart-threshold 64MiB says (ETag {etag})"
    );
    // Not typed: the saved 5 MiB threshold applies again.
    env.write("big2.bin", noise(6 << 20, 8));
    by_name(&env, "docs", elsewhere.path(), &["--json"]).expect_code(0);
    let etag = recorded_etag(&env, "big2.bin").expect("big2.bin stored");
    assert!(
        etag.contains('-'),
        "sent in parts by the saved threshold (ETag {etag})"
    );
}

/// A saved `--delete` is turned off for one run with `--no-delete`, and
/// every saved flag has a `--no-` twin in `backup --help`.
#[test]
fn saved_flags_are_turned_off_with_their_no_twins() {
    let env = TestEnv::new();
    let store = env.root().join("store");
    env.write("a.txt", "a").write("b.txt", "b");
    env.backup_ok(store.to_str().unwrap(), &["--set", "docs", "--delete"]);
    env.remove("a.txt");
    let r = by_name(&env, "docs", env.root(), &["--json", "--no-delete"]);
    r.expect_code(0);
    assert_eq!(r.summary().deleted, 0, "{}", r.show());
    assert_eq!(stored(&store), ["a.txt", "b.txt"]);
    // The later of the twins wins.
    let r = by_name(&env, "docs", env.root(), &["--json", "--no-delete", "--delete"]);
    r.expect_code(0);
    assert_eq!(r.summary().deleted, 1, "{}", r.show());
    assert_eq!(stored(&store), ["b.txt"]);

    let mut cmd = env.cmd();
    cmd.args(["backup", "--help"]);
    let r = run(cmd);
    r.expect_code(0);
    for flag in ["--no-delete", "--no-follow-symlinks", "--no-path-style"] {
        assert!(r.stdout.contains(flag), "{flag} in --help\n{}", r.stdout);
    }
}

/// A set saved with relative SOURCE, store and `--exclude-from` paths,
/// run by name from another directory (as cron does), backs up the saved
/// source into the saved store, and `sets` shows the path it uses.
#[test]
fn a_set_saved_with_relative_paths_runs_from_another_directory() {
    let env = TestEnv::new();
    env.write("a.txt", "a").write("skip.tmp", "t");
    std::fs::write(env.root().join("list"), "*.tmp\n").unwrap();
    let r = backup_in(
        &env,
        env.root(),
        &[
            "./src",
            "./store",
            "--set",
            "docs",
            "--exclude-from",
            "./list",
            "--json",
        ],
    );
    r.expect_code(0);
    let store = env.root().join("store");
    assert_eq!(stored(&store), ["a.txt"]);

    env.write("b.txt", "b");
    let elsewhere = tempfile::tempdir().unwrap();
    let r = by_name(&env, "docs", elsewhere.path(), &["--json"]);
    r.expect_code(0);
    assert_eq!(r.summary().uploaded, 1, "{}", r.show());
    assert_eq!(stored(&store), ["a.txt", "b.txt"], "into the saved store");
    assert_eq!(
        paths_under(elsewhere.path()),
        Vec::<String>::new(),
        "nothing written where the run started"
    );
    let sets = sets_json(&env);
    assert_eq!(sets.len(), 1, "{sets:?}");
    let real = std::fs::canonicalize(&store).unwrap();
    assert_eq!(sets[0]["target"], format!("file://{}", real.display()));
}

/// A named set follows SOURCE as typed: saved with a symlink that a dump
/// job then repoints (`current -> day1`, then `-> day2`), the next run by
/// name backs up day2's content as the same set: unchanged content is not
/// sent again, the saved `--delete` removes what day2 lacks, no new set
/// appears, and the run after that finds nothing to do.
#[test]
fn a_named_set_follows_a_repointed_symlink() {
    let env = TestEnv::new();
    let root = env.root();
    for (day, files) in [
        ("day1", &["a.txt", "b.txt"][..]),
        ("day2", &["a.txt", "c.txt"][..]),
    ] {
        std::fs::create_dir_all(root.join(day)).unwrap();
        for f in files {
            std::fs::write(root.join(day).join(f), format!("{f} content")).unwrap();
        }
    }
    let link = root.join("current");
    std::os::unix::fs::symlink("day1", &link).unwrap();
    let store = root.join("store");
    let r = backup_in(
        &env,
        root,
        &[
            link.to_str().unwrap(),
            store.to_str().unwrap(),
            "--set",
            "dump",
            "--delete",
            "--json",
        ],
    );
    r.expect_code(0);
    assert_eq!(stored(&store), ["a.txt", "b.txt"]);

    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink("day2", &link).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let r = by_name(&env, "dump", elsewhere.path(), &["--json"]);
    r.expect_code(0);
    let s = r.summary();
    assert_eq!(
        (s.uploaded, s.deleted),
        (1, 1),
        "c.txt up, b.txt gone: {}",
        r.show()
    );
    assert_eq!(stored(&store), ["a.txt", "c.txt"]);
    let sets = sets_json(&env);
    assert_eq!(sets.len(), 1, "still one set: {sets:?}");
    assert_eq!(sets[0]["name"], "dump");

    let r = by_name(&env, "dump", elsewhere.path(), &["--json"]);
    r.expect_code(0);
    let s = r.summary();
    assert_eq!((s.uploaded, s.deleted, s.unchanged), (0, 0, 2), "{}", r.show());
    assert_eq!(sets_json(&env).len(), 1);
}

/// Saving SOURCE and TARGET again under a new name would rename the set
/// (and replace its options) behind a cron line that runs it by its old
/// name: it is refused as a usage error, and the set keeps its name,
/// its `--delete` and its filters.
#[test]
fn a_saved_set_is_not_renamed_by_saving_it_under_another_name() {
    let env = TestEnv::new();
    // This test replaces or deletes most of a tiny set on purpose (the guard is tested in `guard`).
    let env = env.past_the_guard();
    env.write("a.txt", "a").write("junk.tmp", "junk");
    let store = env.root().join("store");
    let target = store.to_str().unwrap();
    env.backup_ok(target, &["--set", "x", "--delete", "--exclude", "*.tmp"]);

    let r = env.backup(target, &["--set", "y"]);
    r.expect_code(2);
    let line = r.error_line();
    assert!(
        line.contains("already saved as set 'x'") && line.contains("--set x"),
        "{}",
        r.show()
    );
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.show());
    assert_eq!(stored(&store), ["a.txt"], "nothing was done");
    let names: Vec<String> = sets_json(&env)
        .iter()
        .map(|v| v["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(names, ["x"]);

    // `x` still runs with its saved --delete and --exclude.
    env.remove("a.txt");
    env.write("b.txt", "b");
    let r = by_name(&env, "x", env.root(), &["--json"]);
    r.expect_code(0);
    assert_eq!(stored(&store), ["b.txt"], "{}", r.show());
}

/// The column at which `line`'s text after `status` starts (the next value).
fn after_status(line: &str, status: &str) -> usize {
    let at = line
        .find(status)
        .unwrap_or_else(|| panic!("no {status:?} in {line:?}"));
    let rest = &line[at + status.len()..];
    at + status.len() + (rest.len() - rest.trim_start().len())
}

/// `interrupted` (the longest status) and a long set name keep the
/// columns of `sets` and `state runs` in line: each column is as wide as
/// its longest value. They used to push the rest of their row to the right.
#[test]
fn long_statuses_and_names_keep_the_tables_in_line() {
    let env = TestEnv::new();
    env.write("a.txt", "a");
    let store = env.root().join("store").display().to_string();
    env.backup_ok(&store, &["--set", "a-rather-long-name"]);
    env.backup_ok(&format!("{store}2"), &[]);
    env.write("c.txt", "c");
    env.backup_ok(&store, &["--set", "a-rather-long-name"]);
    // What a backup stopped by Ctrl-C records.
    let db = rusqlite::Connection::open(&env.state).unwrap();
    db.execute(
        "UPDATE runs SET status = 'interrupted' WHERE rowid = (SELECT MAX(rowid) FROM runs)",
        [],
    )
    .unwrap();
    drop(db);
    let table = |words: &[&str]| {
        let mut cmd = env.cmd();
        cmd.arg("--state").arg(&env.state).args(words);
        let r = run(cmd);
        r.expect_code(0);
        r.stdout.lines().map(str::to_owned).collect::<Vec<_>>()
    };
    let sets = table(&["sets"]);
    assert_eq!(sets.len(), 3, "{sets:#?}");
    let column = sets[0].find("source -> target").unwrap();
    for line in &sets[1..] {
        let src = line.find(&*env.src.display().to_string()).unwrap();
        assert_eq!(src, column, "sets:\n{}", sets.join("\n"));
    }
    let runs = table(&["state", "runs"]);
    assert_eq!(runs.len(), 4, "{runs:#?}");
    let scanned = runs[0].find("scanned").unwrap() + "scanned".len();
    for line in &runs[1..] {
        let status = if line.contains("interrupted") {
            "interrupted"
        } else {
            "ok"
        };
        let value = after_status(line, status);
        let end = value + line[value..].find(' ').unwrap();
        assert_eq!(end, scanned, "state runs:\n{}", runs.join("\n"));
    }
}

/// The encryption headers of the object writes (uploads, copies, the
/// snapshot manifest) since the last `clear_requests`, one list per write.
fn sse_headers(server: &S3Server) -> Vec<Vec<(String, String)>> {
    server
        .requests()
        .into_iter()
        .filter(|r| ["PutObject", "CreateMultipartUpload", "CopyObject"].contains(&r.op.as_str()))
        .map(|r| {
            let mut h: Vec<_> = r
                .write_headers
                .into_iter()
                .filter(|(k, _)| k.starts_with("x-amz-server-side-encryption"))
                .collect();
            h.sort();
            h
        })
        .collect()
}

/// A set saved with `--sse aws:kms` takes `--sse-kms-key-id K` by name
/// (the saved `--sse` counts), `--no-sse` turns the saved `--sse` off, and
/// `--sse-kms-key-id` with no `--sse aws:kms` anywhere is one error line,
/// exit 2. By name, the key used to get clap's "required arguments" error.
#[test]
fn encryption_of_a_named_set_takes_a_key_and_turns_off() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    env.write("a.txt", "a");
    env.backup_ok(TARGET, &["--set", "enc", "--sse", "aws:kms"]);
    let kms = |key: Option<&str>| {
        let mut h = vec![("x-amz-server-side-encryption".to_string(), "aws:kms".to_string())];
        if let Some(key) = key {
            h.push((
                "x-amz-server-side-encryption-aws-kms-key-id".to_string(),
                key.to_string(),
            ));
        }
        h
    };

    server.clear_requests();
    env.write("b.txt", "b");
    let r = by_name(
        &env,
        "enc",
        env.root(),
        &["--json", "--sse-kms-key-id", "alias/k"],
    );
    r.expect_code(0);
    assert_eq!(
        sse_headers(&server),
        vec![kms(Some("alias/k")); 2],
        "{}",
        r.show()
    );

    server.clear_requests();
    env.write("c.txt", "c");
    by_name(&env, "enc", env.root(), &["--json", "--no-sse"]).expect_code(0);
    assert_eq!(sse_headers(&server), vec![Vec::new(); 2]);

    // Saved, it stays: the next run by name encrypts again.
    server.clear_requests();
    env.write("d.txt", "d");
    by_name(&env, "enc", env.root(), &["--json"]).expect_code(0);
    assert_eq!(sse_headers(&server), vec![kms(None); 2]);

    // No --sse aws:kms typed or saved: one line, exit 2, nothing sent.
    server.clear_requests();
    for extra in [&["--no-sse"][..], &["--sse", "AES256"]] {
        let r = by_name(
            &env,
            "enc",
            env.root(),
            &[extra, &["--sse-kms-key-id", "k"]].concat(),
        );
        r.expect_code(2);
        assert_eq!(r.stderr.lines().count(), 1, "{}", r.show());
        assert!(
            r.error_line().contains("--sse-kms-key-id needs --sse aws:kms"),
            "{}",
            r.show()
        );
    }
    let r = env.backup(TARGET, &["--sse-kms-key-id", "k"]);
    r.expect_code(2);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.show());
    assert!(
        r.error_line().contains("--sse-kms-key-id needs --sse aws:kms"),
        "{}",
        r.show()
    );
    assert!(sse_headers(&server).is_empty(), "{:?}", server.ops());
}

/// Paths typed with `..` are saved normalised (no `.`, no `..`), so a set
/// saved from `sub1/` as `backup ../src ../store --set x` still runs once
/// `sub1` is gone; they used to be saved as `…/sub1/../src`.
#[test]
fn paths_typed_with_dot_dot_are_saved_without_it() {
    let env = TestEnv::new();
    env.write("a.txt", "a").write("skip.tmp", "t");
    let sub = env.root().join("sub1");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(env.root().join("list"), "*.tmp\n").unwrap();
    let r = backup_in(
        &env,
        &sub,
        &[
            "../src",
            "./../store",
            "--set",
            "x",
            "--exclude-from",
            "../list",
            "--json",
        ],
    );
    r.expect_code(0);
    let db = rusqlite::Connection::open(&env.state).unwrap();
    let (source, options): (String, String) = db
        .query_row(
            "SELECT source, options FROM backup_sets WHERE name = 'x'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    drop(db);
    assert_eq!(source, env.src.display().to_string());
    assert!(!options.contains("..") && !options.contains("/./"), "{options}");
    std::fs::remove_dir(&sub).unwrap();
    env.write("b.txt", "b");
    let r = by_name(&env, "x", env.root(), &["--json"]);
    r.expect_code(0);
    assert_eq!(r.summary().uploaded, 1, "{}", r.show());
    assert_eq!(stored(&env.root().join("store")), ["a.txt", "b.txt"]);
    // Saved again from elsewhere with the same places typed another way: the same set.
    let r = backup_in(
        &env,
        env.root(),
        &["src/../src", "./sub2/../store", "--set", "x", "--json"],
    );
    r.expect_code(0);
    assert_eq!(sets_json(&env).len(), 1);
}

/// `--set` of `state files/show/runs` takes a set's name or its ID, so a
/// new set may not be named with digits only (it would read as an ID), nor
/// with a control character (it would break the `sets` table); one error
/// line, exit 2. A set an older s3backup named `2` is told apart from the
/// set with ID 2 by a note saying which one is shown.
#[test]
fn set_names_are_not_ids_and_state_takes_either() {
    let env = TestEnv::new();
    env.write("a.txt", "a");
    let store = env.root().join("store").display().to_string();
    let src = env.src.display().to_string();
    for bad in ["2", "a\nb", "tab\there"] {
        let r = backup_in(&env, env.root(), &[&src, &store, "--set", bad]);
        r.expect_code(2);
        assert_eq!(
            r.stderr.lines().filter(|l| l.starts_with("error: ")).count(),
            1,
            "{}",
            r.show()
        );
        assert!(!env.state.exists() || sets_json(&env).is_empty(), "{bad:?} saved");
    }
    assert!(
        backup_in(&env, env.root(), &[&src, &store, "--set", "2"])
            .error_line()
            .contains("digits only")
    );
    backup_in(&env, env.root(), &[&src, &store, "--set", "docs"]).expect_code(0);
    backup_in(&env, env.root(), &[&src, &format!("{store}2")]).expect_code(0);
    let state = |words: &[&str]| {
        let mut cmd = env.cmd();
        cmd.arg("--state").arg(&env.state).arg("state").args(words);
        run(cmd)
    };
    let by_name = state(&["runs", "--set", "docs", "--json"]);
    by_name.expect_code(0);
    let runs: serde_json::Value = serde_json::from_str(&by_name.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(runs[0]["set_id"], 1, "{runs}");
    let files = state(&["files", "--set", "docs", "--json"]);
    files.expect_code(0);
    assert_eq!(files.stdout.lines().count(), 1, "{}", files.show());
    state(&["show", "a.txt", "--set", "docs"]).expect_code(0);
    let r = state(&["runs", "--set", "nope"]);
    r.expect_code(1);
    assert!(
        r.error_line().contains("no backup set is named 'nope'"),
        "{}",
        r.show()
    );

    // A set named "2" by an older s3backup, beside the set with ID 2.
    let db = rusqlite::Connection::open(&env.state).unwrap();
    db.execute("UPDATE backup_sets SET name = '2' WHERE name = 'docs'", [])
        .unwrap();
    drop(db);
    let r = state(&["runs", "--set", "2", "--json"]);
    r.expect_code(0);
    let runs: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(runs[0]["set_id"], 2, "the ID wins: {}", r.show());
    assert!(
        r.stderr.contains("--set 2 is read as the set ID 2") && r.stderr.contains("(--set 1)"),
        "{}",
        r.show()
    );
    // It still runs by its name.
    by_name_run(&env, "2").expect_code(0);
}

/// `backup --set NAME` from the test's root.
fn by_name_run(env: &TestEnv, name: &str) -> Run {
    by_name(env, name, env.root(), &[])
}
