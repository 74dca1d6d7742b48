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
