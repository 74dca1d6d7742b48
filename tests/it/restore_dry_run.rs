//! `restore --dry-run` against the in-process S3 server and real
//! directories: the plan it prints (over a missing DEST, one with the same,
//! differing and extra files, with `--no-clobber`, with unsafe keys and a
//! link where a directory goes, from an older snapshot and from a live
//! listing), that it changes nothing (DEST's tree with its bytes, mtimes
//! and modes, DEST's own metadata, the state file) and fetches no object
//! body, that its exit code and counts are the restore's, and that the
//! restore run afterwards does exactly what the dry run listed: the list
//! is rebuilt from what the real run changed in DEST (and what it kept and
//! refused) and compared line for line.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::*;
use crate::server::S3Server;

const BUCKET: &str = "bkt";
const TARGET: &str = "bkt::pre";

/// A server with bucket `bkt` and an environment pointed at it.
fn setup() -> (S3Server, TestEnv) {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    (server, env)
}

/// What a dry run must leave exactly as it was.
#[derive(Debug, PartialEq)]
struct Untouched {
    /// DEST's tree (kinds, bytes, link targets, mtimes, modes), `None` when DEST is missing.
    tree: Option<BTreeMap<String, Node>>,
    /// DEST's own mtime and mode.
    top: Option<((i64, u32), u32)>,
    /// The state file's bytes.
    state: Option<Vec<u8>>,
}

fn untouched(env: &TestEnv, dest: &Path) -> Untouched {
    use std::os::unix::fs::PermissionsExt;
    let top = std::fs::symlink_metadata(dest).ok().map(|md| {
        let t = filetime::FileTime::from_last_modification_time(&md);
        (
            (t.unix_seconds(), t.nanoseconds()),
            md.permissions().mode() & 0o7777,
        )
    });
    Untouched {
        tree: dest.exists().then(|| tree(dest)),
        top,
        state: std::fs::read(&env.state).ok(),
    }
}

/// Requests that are neither a listing, a HEAD nor a read under `.s3backup/`
/// (the manifests): a dry run sends none of them.
fn not_read_only(server: &S3Server) -> Vec<String> {
    server
        .requests()
        .into_iter()
        .filter(|r| {
            let manifest_read =
                r.op == "GetObject" && r.key.as_deref().is_some_and(|k| k.contains(".s3backup/"));
            !manifest_read
                && !["ListObjectsV2", "ListObjects", "HeadBucket", "HeadObject"].contains(&r.op.as_str())
        })
        .map(|r| format!("{} {}", r.op, r.key.unwrap_or_default()))
        .collect()
}

/// The plan lines of a dry run: stdout before its summary, in printed order.
fn plan_of(r: &Run) -> Vec<String> {
    let lines: Vec<String> = r.stdout.lines().map(str::to_owned).collect();
    let end = lines
        .iter()
        .position(|l| l.starts_with("dry run: would restore "))
        .unwrap_or_else(|| panic!("no dry-run summary\n{}", r.show()));
    lines[..end].to_vec()
}

/// A restore's `--json` summary without what may differ between a dry
/// run and the run (its time, the flag itself), arrays sorted.
fn counts_of(r: &Run) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(r.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON value: {e}\n{}", r.show()));
    let o = v.as_object_mut().unwrap();
    o.remove("elapsed_ms");
    o.remove("dry_run");
    // A dry run sends its own requests (no downloads): not the run's, nor
    // is the level its requests in flight reached.
    o.remove("requests");
    o.remove("concurrency");
    for key in ["failures", "kept_paths"] {
        if let Some(serde_json::Value::Array(a)) = o.get_mut(key) {
            a.sort_by_key(|x| x.to_string());
        }
    }
    v
}

/// The list a dry run should have printed for what a real run did: from
/// DEST `before` and `after` it (directories made, files and links put
/// there or replaced, metadata changed, stale temporary files gone), and
/// from its summary (kept and refused paths). Sorted.
fn done_list(dest: &Path, before: Option<&BTreeMap<String, Node>>, real: &RestoreSummary) -> Vec<String> {
    let empty = BTreeMap::new();
    let before = match before {
        Some(b) => b,
        None => {
            return [format!("create {}", dest.display())]
                .into_iter()
                .chain(done_list(dest, Some(&empty), real))
                .collect::<Vec<_>>();
        }
    };
    let after = tree(dest);
    let mut out = Vec::new();
    for (p, n) in &after {
        let link = matches!(n.kind, Kind::Symlink(_));
        match before.get(p) {
            None if n.kind == Kind::Dir => out.push(format!("mkdir {p}")),
            None if link => out.push(format!("download {p} (symlink)")),
            None => out.push(format!("download {p}")),
            Some(b) if b.kind != n.kind && link => out.push(format!("download {p} (symlink, overwrite)")),
            Some(b) if b.kind != n.kind => out.push(format!("download {p} (overwrite)")),
            Some(b) if (b.mtime, b.mode) != (n.mtime, n.mode) => out.push(format!("touch {p}")),
            Some(_) => {}
        }
    }
    for p in before.keys().filter(|p| !after.contains_key(*p)) {
        assert!(
            p.rsplit('/').next().unwrap().starts_with(".s3backup-restore-"),
            "{p} removed"
        );
        out.push(format!("delete {p} (stale temporary file)"));
    }
    out.extend(
        real.kept_paths
            .iter()
            .map(|p| format!("keep {p} (differs, --no-clobber)")),
    );
    out.extend(
        real.failures
            .iter()
            .map(|f| format!("refuse {}: {}", f.path, f.error)),
    );
    out.sort();
    out
}

/// Runs `restore --dry-run` as text and as `--json` over `dest`, with
/// `extra`; both must exit `code`, change nothing and fetch no body.
/// Returns the plan (as printed) and the JSON counts.
fn dry_run(
    server: &S3Server,
    env: &TestEnv,
    target: &str,
    dest: &Path,
    extra: &[&str],
    code: i32,
) -> (Vec<String>, serde_json::Value) {
    let before = untouched(env, dest);
    server.clear_requests();
    let r = env.restore(target, dest, &[&["--dry-run"], extra].concat());
    r.expect_code(code);
    let plan = plan_of(&r);
    let j = env.restore(target, dest, &[&["-n", "--json"], extra].concat());
    j.expect_code(code);
    let v: serde_json::Value = serde_json::from_str(j.stdout.trim()).unwrap();
    assert_eq!(v["dry_run"], true, "{}", j.show());
    assert_eq!(
        untouched(env, dest),
        before,
        "a dry run changed something\n{}",
        r.show()
    );
    assert_eq!(
        not_read_only(server),
        Vec::<String>::new(),
        "a dry run only lists and reads manifests"
    );
    (plan, counts_of(&j))
}

/// The real restore after a dry run: it must do exactly what was listed,
/// with the same counts and exit code.
fn real_run_matches(
    env: &TestEnv,
    target: &str,
    dest: &Path,
    extra: &[&str],
    code: i32,
    dry: &(Vec<String>, serde_json::Value),
) {
    let before = dest.exists().then(|| tree(dest));
    let r = env.restore(target, dest, &[&["--json"], extra].concat());
    r.expect_code(code);
    let mut planned = dry.0.clone();
    planned.sort();
    assert_eq!(
        done_list(dest, before.as_ref(), &r.restore_summary()),
        planned,
        "{}",
        r.show()
    );
    assert_eq!(counts_of(&r), dry.1, "the dry run's counts are the run's");
    assert_eq!(temp_files(dest), Vec::<String>::new());
}

/// A tree with files of several modes and mtimes, nested and empty
/// directories and a symlink, backed up.
fn backed_up(env: &TestEnv) {
    rich_tree(env);
    env.symlink("a.txt", "link");
    env.backup_ok(TARGET, &[]);
}

#[test]
fn a_dry_run_into_a_missing_dest_lists_everything_and_creates_nothing() {
    let (server, env) = setup();
    backed_up(&env);
    let dest = env.root().join("new/dest");

    let dry = dry_run(&server, &env, TARGET, &dest, &[], 0);
    assert!(!env.root().join("new").exists());
    let create = format!("create {}", dest.display());
    assert_eq!(
        dry.0,
        [
            create.as_str(),
            "download a.txt",
            "mkdir dir",
            "download dir/b.txt",
            "mkdir dir/sub",
            "download dir/sub/c.bin",
            "download empty.txt",
            "mkdir emptydir",
            "download link (symlink)",
            "mkdir nested",
            "mkdir nested/l1",
            "mkdir nested/l1/empty2",
            "mkdir nested/l1/l2",
            "mkdir nested/l1/l2/l3",
            "download nested/l1/l2/l3/leaf.txt",
            "download ro.txt",
            "mkdir with space",
            "download with space/\u{fc}ml\u{e4}ut+%.txt",
        ]
    );
    assert_eq!(dry.1["downloaded"], 8);
    assert_eq!(dry.1["dirs"], 9);
    real_run_matches(&env, TARGET, &dest, &[], 0, &dry);
}

#[test]
fn a_dry_run_over_same_differing_and_extra_files_lists_what_the_restore_changes() {
    let (server, env) = setup();
    backed_up(&env);
    let dest = env.root().join("dest");
    env.restore_ok(TARGET, &dest, &[]);
    let at = |p: &str| dest.join(p);
    std::fs::write(at("a.txt"), "changed").unwrap(); // overwrite
    filetime::set_file_mtime(at("dir/b.txt"), filetime::FileTime::from_unix_time(1_000, 0)).unwrap(); // touch
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(at("ro.txt"), std::fs::Permissions::from_mode(0o666)).unwrap(); // touch
    std::fs::remove_dir_all(at("nested/l1/l2")).unwrap(); // mkdir + download, touch nested/l1
    std::fs::remove_file(at("link")).unwrap();
    std::fs::write(at("link"), "a file where the link goes").unwrap(); // overwrite with the link
    std::fs::write(at("extra.txt"), "not in the backup").unwrap(); // left alone
    std::fs::write(at("dir/.s3backup-restore-stale"), "killed").unwrap(); // swept; touch dir
    // Extra files change no directory the restore gives metadata: the
    // directories get theirs back by the end.
    filetime::set_file_mtime(at("dir"), filetime::FileTime::from_unix_time(1_560_000_000, 560)).unwrap();

    let dry = dry_run(&server, &env, TARGET, &dest, &[], 0);
    assert_eq!(
        dry.0,
        [
            "download a.txt (overwrite)",
            "delete dir/.s3backup-restore-stale (stale temporary file)",
            "touch dir/b.txt",
            "download link (symlink, overwrite)",
            "touch nested/l1",
            "mkdir nested/l1/l2",
            "mkdir nested/l1/l2/l3",
            "download nested/l1/l2/l3/leaf.txt",
            "touch ro.txt",
        ]
    );
    assert_eq!(
        (&dry.1["downloaded"], &dry.1["unchanged"]),
        (&3.into(), &5.into()),
        "{}",
        dry.1
    );
    assert_eq!(dry.1["stale_temp_removed"], 1);
    real_run_matches(&env, TARGET, &dest, &[], 0, &dry);
    assert_eq!(std::fs::read(at("extra.txt")).unwrap(), b"not in the backup");

    // Over a restored tree there is nothing to do, and nothing is listed.
    let dry = dry_run(&server, &env, TARGET, &dest, &[], 0);
    assert_eq!(dry.0, Vec::<String>::new());
}

#[test]
fn a_dry_run_with_no_clobber_lists_the_files_it_keeps() {
    let (server, env) = setup();
    backed_up(&env);
    let dest = env.root().join("dest");
    env.restore_ok(TARGET, &dest, &[]);
    std::fs::write(dest.join("a.txt"), "mine").unwrap();
    std::fs::write(dest.join("dir/b.txt"), "mine too").unwrap();
    std::fs::remove_file(dest.join("empty.txt")).unwrap();

    let dry = dry_run(&server, &env, TARGET, &dest, &["--no-clobber"], 0);
    assert_eq!(
        dry.0,
        [
            "keep a.txt (differs, --no-clobber)",
            "keep dir/b.txt (differs, --no-clobber)",
            "download empty.txt",
        ]
    );
    assert_eq!(dry.1["kept"], 2);
    let r = env.restore(TARGET, &dest, &["-n", "--no-clobber"]);
    assert!(
        !r.stderr.contains("kept (differs"),
        "the plan lists them\n{}",
        r.show()
    );
    real_run_matches(&env, TARGET, &dest, &["--no-clobber"], 0, &dry);
    assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"mine");
}

#[test]
fn a_dry_run_lists_refusals_and_exits_3_as_the_restore_does() {
    let (server, env) = setup();
    let c = sdk_client(&server.endpoint());
    sdk_put(&c, BUCKET, "hostile/ok.txt", b"fine");
    sdk_put(&c, BUCKET, "hostile/sub/x.txt", b"under a link");
    for k in ["hostile/../escape.txt", "hostile/a//b"] {
        server.add_listed_key(BUCKET, k, 4);
    }
    // A link where the backup has a directory: refused, never followed.
    let outside = env.root().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let dest = env.root().join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    std::os::unix::fs::symlink(&outside, dest.join("sub")).unwrap();

    let dry = dry_run(&server, &env, "bkt::hostile", &dest, &[], 3);
    let link_error = format!(
        "'{}' is a symbolic link; s3backup does not follow links inside {}",
        dest.join("sub").display(),
        dest.canonicalize().unwrap().display()
    );
    assert_eq!(dry.0.len(), 4, "{:?}", dry.0);
    assert!(
        dry.0[0].starts_with("refuse ../escape.txt: ") && dry.0[0].contains("unsafe"),
        "{:?}",
        dry.0
    );
    assert!(
        dry.0[1].starts_with("refuse a//b: ") && dry.0[1].contains("unsafe"),
        "{:?}",
        dry.0
    );
    assert_eq!(
        dry.0[2..],
        [
            "download ok.txt".to_owned(),
            format!("refuse sub/x.txt: {link_error}")
        ]
    );
    let r = env.restore("bkt::hostile", &dest, &["-n"]);
    assert!(
        r.stderr.contains("error: 3 file(s) would not be restored"),
        "{}",
        r.show()
    );
    real_run_matches(&env, "bkt::hostile", &dest, &[], 3, &dry);
    assert_eq!(paths_under(&outside), Vec::<String>::new());
}

#[test]
fn a_dry_run_of_an_older_snapshot_and_of_a_listing_lists_what_each_brings() {
    let (server, env) = setup();
    env.write("a.txt", "one");
    let first = snapshot_id(&env.backup_ok(TARGET, &[]).snapshot.unwrap());
    env.write("b.txt", "two");
    env.backup_ok(TARGET, &[]);
    let dest = env.root().join("dest");

    let dry = dry_run(&server, &env, TARGET, &dest, &["--snapshot", &first], 0);
    assert_eq!(
        dry.0,
        [format!("create {}", dest.display()), "download a.txt".into()]
    );
    assert_eq!(dry.1["source"], first.as_str());
    real_run_matches(&env, TARGET, &dest, &["--snapshot", &first], 0, &dry);
    assert_eq!(paths_under(&dest), ["a.txt"]);

    // The listing has both objects; a file of the same size is compared
    // with the object's recorded blake3, read by HEAD.
    std::fs::write(dest.join("a.txt"), "eno").unwrap();
    let dry = dry_run(&server, &env, TARGET, &dest, &["--from-listing"], 0);
    assert_eq!(dry.0, ["download a.txt (overwrite)", "download b.txt"]);
    assert_eq!(dry.1["source"], "listing");
    real_run_matches(&env, TARGET, &dest, &["--from-listing"], 0, &dry);
    assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"one");
}

/// A DEST the user may not write to fails a dry run as it fails the
/// restore (exit 1, one line), though the dry run makes no probe file.
/// Permission bits do not stop root, so as root the binary runs as `nobody`.
#[test]
fn a_dry_run_refuses_a_read_only_dest_as_the_restore_does() {
    use std::os::unix::fs::PermissionsExt;
    let (_server, env) = setup();
    env.write("a.txt", "a");
    env.backup_ok(TARGET, &[]);
    let dest = env.root().join("dest");
    std::fs::create_dir(&dest).unwrap();
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Let `nobody` reach DEST (the test root is 0700).
    std::fs::set_permissions(env.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for extra in [&["--dry-run"][..], &[]] {
        let r = run(as_nobody_if_root(
            env.restore_cmd(TARGET, &dest, extra),
            env.root(),
        ));
        r.expect_code(1);
        let e = r.error_line();
        assert!(
            e.contains("cannot write to DEST") && e.contains("Permission denied"),
            "{extra:?}: {e}"
        );
    }
    assert_eq!(paths_under(&dest), Vec::<String>::new(), "DEST was written");
}
