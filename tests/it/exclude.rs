//! What a backup leaves out besides the filters (issue 16):
//! `--exclude-caches`, `--exclude-if-present`, `--one-file-system` and
//! `--exclude-larger-than`, against the test S3 server: what is uploaded,
//! the `excluded_by` counts, `--dry-run`, `--delete` (which spares what
//! they leave out, as it spares what `--exclude` leaves out), and named
//! sets that save them.

use std::process::Command;

use crate::common::*;
use crate::server::S3Server;

const BUCKET: &str = "bkt";
const TARGET: &str = "bkt::pre";
const TAG: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag.\n";

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

/// The `--json` summary of a run that exited 0, as JSON.
#[track_caller]
fn json_ok(r: &Run) -> serde_json::Value {
    r.expect_code(0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    let last = lines.iter().rposition(|l| l.starts_with('{')).unwrap();
    serde_json::from_str(&lines[last..].join("\n")).unwrap()
}

/// `excluded_by` of a summary: (filters, caches, if_present, other_device, larger_than).
fn by(summary: &serde_json::Value) -> [u64; 5] {
    let b = &summary["excluded_by"];
    ["filters", "caches", "if_present", "other_device", "larger_than"].map(|k| {
        b[k].as_u64()
            .unwrap_or_else(|| panic!("no excluded_by.{k} in {summary}"))
    })
}

/// A tree with two real caches (one nested deep), one fake tag and plain files.
fn cache_tree(env: &TestEnv) {
    env.write("a.txt", "a")
        .write("cache/CACHEDIR.TAG", TAG)
        .write("cache/x.bin", "x")
        .write("cache/sub/y.bin", "y")
        .write("nested/keep.txt", "k")
        .write("nested/deep/c2/CACHEDIR.TAG", &TAG[..43])
        .write("nested/deep/c2/z.bin", "z")
        // A tag without the signature (a byte short of it) is not a tag.
        .write("fake/CACHEDIR.TAG", &TAG[..42])
        .write("fake/f.txt", "f")
        .write(
            "fake2/CACHEDIR.TAG",
            "Signature: something else entirely, 43 bytes",
        )
        .write("fake2/g.txt", "g");
}

#[test]
fn exclude_caches_leaves_out_tagged_directories_but_keeps_the_tag() {
    let (server, env) = setup();
    cache_tree(&env);
    let s = json_ok(&env.backup(TARGET, &["--json", "--exclude-caches"]));
    assert_eq!(
        keys(&server),
        [
            "a.txt",
            "cache/CACHEDIR.TAG",
            "fake/CACHEDIR.TAG",
            "fake/f.txt",
            "fake2/CACHEDIR.TAG",
            "fake2/g.txt",
            "nested/deep/c2/CACHEDIR.TAG",
            "nested/keep.txt",
        ]
    );
    // cache/sub (a directory, once), cache/x.bin, nested/deep/c2/z.bin.
    assert_eq!(by(&s), [0, 3, 0, 0, 0]);
    assert_eq!(s["excluded"], 3);
    // The plain summary says why.
    env.write("cache/new.bin", "n");
    let r = env.backup(TARGET, &["--exclude-caches"]);
    r.expect_code(0);
    assert!(
        r.stdout.contains("excluded 4: 4 in cache directories"),
        "{}",
        r.show()
    );
}

#[test]
fn exclude_if_present_at_the_root_and_below_keeps_only_the_marker() {
    let (server, env) = setup();
    env.write("a/.nobackup", "")
        .write("a/x", "x")
        .write("a/b/y", "y")
        .write("b/z", "z")
        .write("c/.skip-me", "")
        .write("c/w", "w");
    let s = json_ok(&env.backup(
        TARGET,
        &[
            "--json",
            "--exclude-if-present",
            ".nobackup",
            "--exclude-if-present",
            ".skip-me",
        ],
    ));
    assert_eq!(keys(&server), ["a/.nobackup", "b/z", "c/.skip-me"]);
    assert_eq!(by(&s), [0, 0, 3, 0, 0]);

    // A marker at SOURCE's root leaves out everything but itself.
    let (server, env) = setup();
    env.write(".nobackup", "").write("d/e", "e").write("f", "f");
    let s = json_ok(&env.backup(TARGET, &["--json", "--exclude-if-present", ".nobackup"]));
    assert_eq!(keys(&server), [".nobackup"]);
    assert_eq!(by(&s), [0, 0, 2, 0, 0]);
}

#[test]
fn exclude_if_present_refuses_a_name_with_a_slash() {
    let (server, env) = setup();
    env.write("a", "a");
    for bad in ["a/b", "/x", "", ".."] {
        let r = env.backup(TARGET, &["--exclude-if-present", bad]);
        r.expect_code(2);
        assert!(r.stderr.contains("--exclude-if-present"), "{bad}: {}", r.show());
        assert!(
            r.stderr.contains("file name") || r.stderr.contains("plain"),
            "{bad}: {}",
            r.show()
        );
    }
    assert!(keys(&server).is_empty());
}

#[test]
fn exclude_larger_than_keeps_a_file_of_exactly_the_limit() {
    let (server, env) = setup();
    env.write("at", vec![b'a'; 1024])
        .write("over", vec![b'o'; 1025])
        .write("under", vec![b'u'; 1023])
        .write("d/big", vec![b'b'; 5000]);
    let s = json_ok(&env.backup(TARGET, &["--json", "--exclude-larger-than", "1K"]));
    assert_eq!(keys(&server), ["at", "under"]);
    assert_eq!(by(&s), [0, 0, 0, 0, 2]);
    // Plain bytes; a bad size is a usage error.
    let s = json_ok(&env.backup(TARGET, &["--json", "--exclude-larger-than", "1025"]));
    assert_eq!(keys(&server), ["at", "over", "under"]);
    assert_eq!(s["excluded"], 1);
    env.backup(TARGET, &["--exclude-larger-than", "lots"])
        .expect_code(2);
    env.backup(TARGET, &["--exclude-larger-than", "-5"])
        .expect_code(2);
}

#[test]
fn dry_run_plans_without_what_the_options_leave_out() {
    let (server, env) = setup();
    cache_tree(&env);
    env.write("big", vec![0u8; 2000]);
    let opts = ["--dry-run", "--exclude-caches", "--exclude-larger-than", "1000"];
    let s = json_ok(&env.backup(TARGET, &[&["--json"][..], &opts].concat()));
    let r = env.backup(TARGET, &opts);
    r.expect_code(0);
    assert!(
        r.stdout.contains(
            "excluded 4: 3 in cache directories (CACHEDIR.TAG), 1 larger than --exclude-larger-than"
        ),
        "{}",
        r.show()
    );
    let plan = r.plan_lines();
    assert!(plan.iter().any(|l| l == "upload cache/CACHEDIR.TAG"), "{plan:?}");
    assert!(plan.iter().any(|l| l == "upload fake/f.txt"), "{plan:?}");
    for left_out in ["cache/x.bin", "cache/sub/y.bin", "nested/deep/c2/z.bin", "big"] {
        assert!(!plan.iter().any(|l| l.contains(left_out)), "{left_out}: {plan:?}");
    }
    assert_eq!(by(&s), [0, 3, 0, 0, 1]);
    assert!(keys(&server).is_empty(), "a dry run uploads nothing");
}

#[test]
fn delete_spares_what_the_options_leave_out_also_once_gone_locally() {
    let (server, env) = setup();
    cache_tree(&env);
    env.write("big", vec![0u8; 2000])
        .write("m/.nobackup", "")
        .write("m/n", "n");
    // Everything backed up first, without the options.
    env.backup_ok(TARGET, &[]);
    let all = keys(&server);
    assert!(all.contains(&"cache/x.bin".to_string()) && all.contains(&"big".to_string()));
    let opts = [
        "--delete",
        "--exclude-caches",
        "--exclude-if-present",
        ".nobackup",
        "--exclude-larger-than",
        "1000",
    ];
    // Left out but still there: not deleted.
    let s = env.backup_ok(TARGET, &opts);
    assert_eq!(s.deleted, 0);
    assert_eq!(keys(&server), all);
    // Gone locally too: still spared (a file in a cache, a whole gone
    // cache whose tag is recorded, the big file, a marked directory's file).
    env.remove("cache/x.bin").remove("big").remove("m/n");
    std::fs::remove_dir_all(env.path("nested/deep/c2")).unwrap();
    let mut dry = opts.to_vec();
    dry.push("--dry-run");
    let r = env.backup(TARGET, &dry);
    r.expect_code(0);
    assert!(r.plan_lines().is_empty(), "{}", r.show());
    let s = env.backup_ok(TARGET, &opts);
    assert_eq!(s.deleted, 0);
    assert_eq!(keys(&server), all);
    // A plain file gone is still deleted.
    env.remove("a.txt");
    let s = env.backup_ok(TARGET, &opts);
    assert_eq!(s.deleted, 1);
    assert!(!keys(&server).contains(&"a.txt".to_string()));
}

#[test]
fn named_sets_save_the_options_and_no_twins_turn_them_off() {
    let (server, env) = setup();
    cache_tree(&env);
    env.write("big", vec![0u8; 2000])
        .write("m/.nobackup", "")
        .write("m/n", "n");
    let saved = [
        "--set",
        "nightly",
        "--exclude-caches",
        "--exclude-if-present",
        ".nobackup",
        "--exclude-larger-than",
        "1000",
        "--one-file-system",
    ];
    env.backup_ok(TARGET, &saved);
    let first = keys(&server);
    assert!(!first.contains(&"cache/x.bin".to_string()) && !first.contains(&"big".to_string()));
    assert!(!first.contains(&"m/n".to_string()));
    // Run by name: the saved options hold.
    env.write("cache/new.bin", "n")
        .write("big2", vec![1u8; 3000])
        .write("m/o", "o");
    let by_name = |extra: &[&str]| {
        let mut cmd = env.cmd();
        cmd.args(["backup", "--set", "nightly", "--json", "--state"])
            .arg(&env.state)
            .args(extra);
        run(cmd)
    };
    let s = json_ok(&by_name(&[]));
    assert_eq!(
        keys(&server),
        first,
        "nothing new outside what the options leave out"
    );
    assert_eq!(by(&s), [0, 4, 2, 0, 2]);
    // Typed --no-exclude-caches and a new limit win for this run.
    let s = json_ok(&by_name(&[
        "--no-exclude-caches",
        "--exclude-larger-than",
        "2500",
    ]));
    let now = keys(&server);
    assert!(now.contains(&"cache/new.bin".to_string()) && now.contains(&"big".to_string()));
    assert!(!now.contains(&"big2".to_string()) && !now.contains(&"m/o".to_string()));
    assert_eq!(by(&s), [0, 0, 2, 0, 1]);
}

/// Runs `cmd` in a new user and mount namespace with a tmpfs mounted at
/// `mount_point` first: a real mount point inside a temporary SOURCE,
/// without needing root outside the namespace.
fn with_tmpfs_at(mount_point: &std::path::Path, cmd: &Command, files: &[(&str, &str)]) -> Run {
    let mut script = String::from("set -e; mount -t tmpfs s3backup-test \"$1\"; ");
    for (name, content) in files {
        script.push_str(&format!("printf '%s' '{content}' > \"$1/{name}\"; "));
    }
    script.push_str("shift; exec \"$@\"");
    let mut outer = Command::new("unshare");
    outer
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script, "sh"])
        .arg(mount_point)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    outer.env_clear();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            outer.env(k, v);
        }
    }
    outer.env("PATH", std::env::var_os("PATH").unwrap_or_default());
    if let Some(dir) = cmd.get_current_dir() {
        outer.current_dir(dir);
    }
    run(outer)
}

#[test]
fn one_file_system_keeps_a_mount_point_empty() {
    let (server, env) = setup();
    env.write("a.txt", "a")
        .write("mnt/under.txt", "hidden by the mount");
    let mnt = env.path("mnt");
    // Without the option the other file system's files are taken.
    let r = with_tmpfs_at(
        &mnt,
        &env.backup_cmd(TARGET, &["--json"]),
        &[("on-tmpfs.txt", "t")],
    );
    let s = json_ok(&r);
    assert_eq!(keys(&server), ["a.txt", "mnt/on-tmpfs.txt"]);
    assert_eq!(by(&s), [0, 0, 0, 0, 0]);
    // With it, the mount point is recorded as a directory and nothing below
    // it is walked; --delete keeps what an earlier run took from it.
    let r = with_tmpfs_at(
        &mnt,
        &env.backup_cmd(TARGET, &["--json", "--one-file-system", "--delete"]),
        &[("other.txt", "o")],
    );
    let s = json_ok(&r);
    assert_eq!(s["deleted"], 0, "{}", r.show());
    assert_eq!(keys(&server), ["a.txt", "mnt/on-tmpfs.txt"]);
    assert_eq!(by(&s), [0, 0, 0, 1, 0]);
    // The snapshot still lists what an earlier run took from the mount, not what is there now.
    let snap = s["snapshot"].as_str().unwrap().to_string();
    let manifest = Manifest::decode(&server.object_bytes(BUCKET, &snap).unwrap());
    assert_eq!(manifest.paths(), ["a.txt", "mnt/on-tmpfs.txt"]);
    // -x is the short form; SOURCE's own file system is walked as ever.
    let r = with_tmpfs_at(&mnt, &env.backup_cmd(TARGET, &["--json", "-x"]), &[]);
    json_ok(&r);
}
