//! History (issue 15): every kept snapshot restores exactly, on the
//! in-process S3 server (no versioning: the content area serves), on moto
//! with versioning (the recorded versions serve) and on a local store.
//!
//! Three backups with `--delete`, and between them edits, a rename, a
//! deletion, type changes (a file becomes a directory, then a file again;
//! a file becomes a symlink) and a touch (mtime only, content unchanged);
//! then each snapshot is restored into an empty directory and compared
//! with the tree as it was backed up (bytes, mtimes to the nanosecond,
//! modes, directories, links), `verify` passes for each and `verify --all`
//! for all; finally one kept copy is removed by hand, and `verify` reports
//! exactly that file missing and the restore of its snapshot reports it
//! unrecoverable (exit 3), restoring everything else.

use std::collections::BTreeMap;

use crate::common::*;
use crate::server::S3Server;
use crate::versioned::Moto;

/// One snapshot: its ID and the tree it was taken of.
struct Taken {
    id: String,
    tree: BTreeMap<String, Node>,
}

const T: i64 = 1_600_000_000;

/// The first tree.
fn first_tree(env: &TestEnv) {
    env.write_at("a.txt", "version one", (T, 111));
    env.set_mode("a.txt", 0o600);
    env.write_at("b.txt", "bee", (T, 222));
    env.write_at("old/name.txt", "renamed later", (T, 333));
    env.write_at("gone.txt", "deleted later", (T, 444));
    env.write_at("shape", "a file that becomes a directory", (T, 555));
    env.write_at("link", "a file that becomes a symlink", (T, 666));
    env.write_at("same.txt", "never changes", (T, 777));
    env.set_mode("same.txt", 0o640);
    env.write_at("touched.txt", "only its mtime changes", (T, 888));
    std::fs::set_permissions(
        env.path("old"),
        std::os::unix::fs::PermissionsExt::from_mode(0o750),
    )
    .unwrap();
}

/// Edits, a rename, a deletion, two type changes and a touch.
fn second_tree(env: &TestEnv) {
    env.write_at("a.txt", "version two, longer", (T + 100, 1));
    env.rename("old/name.txt", "new/name.txt");
    std::fs::remove_dir(env.path("old")).unwrap();
    env.remove("gone.txt");
    env.remove("shape");
    env.write_at("shape/inner.txt", "inside", (T + 100, 2));
    env.remove("link");
    env.symlink("a.txt", "link");
    env.set_mtime("touched.txt", (T + 100, 3));
}

/// Another edit (same size), a deletion, a directory that is a file again
/// (holding content an older snapshot had under another name), a link
/// pointed elsewhere, a new file.
fn third_tree(env: &TestEnv) {
    env.write_at("a.txt", "VERSION TWO, LONGER", (T + 200, 1));
    env.remove("b.txt");
    std::fs::remove_dir_all(env.path("shape")).unwrap();
    env.write_at("shape", "bee", (T + 200, 2));
    env.remove("link");
    env.symlink("same.txt", "link");
    env.write_at("c.txt", "new in the third", (T + 200, 3));
}

/// The three backups (`--delete`, plus `extra`), each snapshot with its tree.
fn three_backups(env: &TestEnv, target: &str, extra: &[&str]) -> Vec<Taken> {
    let mut args = vec!["--delete"];
    args.extend_from_slice(extra);
    let mut taken = Vec::new();
    let steps: [fn(&TestEnv); 3] = [first_tree, second_tree, third_tree];
    for step in steps {
        step(env);
        let s = env.backup_ok(target, &args);
        taken.push(Taken {
            id: snapshot_id(s.snapshot.as_deref().expect("a manifest")),
            tree: tree(&env.src),
        });
    }
    taken
}

/// Each snapshot restored into an empty directory equals its tree.
fn each_restores_exactly(env: &TestEnv, target: &str, taken: &[Taken]) {
    for (i, t) in taken.iter().enumerate() {
        let dest = env.root().join(format!("restored-{i}"));
        let s = env.restore_ok(target, &dest, &["--snapshot", &t.id]);
        assert_eq!(s.failed, 0, "snapshot {i}: {s:?}");
        assert_eq!(
            tree(&dest),
            t.tree,
            "snapshot {i} ({}) must come back exactly",
            t.id
        );
    }
}

/// `verify` of each snapshot and `verify --all` pass. `kept_copies`: every
/// snapshot but the newest has files only the content area holds, which a
/// plain verify sees by size alone and must say so (not "size and ETag").
fn each_verifies(env: &TestEnv, target: &str, taken: &[Taken], kept_copies: bool) {
    for (i, t) in taken.iter().enumerate() {
        let r = env.verify(target, &["--snapshot", &t.id]);
        r.expect_code(0);
        let by_size = r.stdout.contains("kept copies, checked by size");
        assert_eq!(
            by_size,
            kept_copies && i + 1 < taken.len(),
            "snapshot {i}: {}",
            r.show()
        );
        let j = env.verify(target, &["--json", "--snapshot", &t.id]);
        let v: serde_json::Value = serde_json::from_str(j.stdout.trim()).unwrap();
        let n = v["ok_by_size"].as_u64().unwrap_or(0);
        assert_eq!(n > 0, by_size, "snapshot {i}: {}", j.show());
        let deep = env.verify(target, &["--deep", "--snapshot", &t.id]);
        deep.expect_code(0);
    }
    let all = env.verify(target, &["--all", "--json"]);
    all.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(all.stdout.trim()).unwrap();
    let ids: Vec<&str> = v["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["snapshot"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = taken.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, want, "{}", all.show());
    let files: u64 = taken
        .iter()
        .map(|t| t.tree.values().filter(|n| n.kind != Kind::Dir).count() as u64)
        .sum();
    assert_eq!(
        (v["files"].as_u64(), v["ok"].as_u64()),
        (Some(files), Some(files)),
        "{}",
        all.show()
    );
}

/// With `gone.txt`'s kept content removed: verify of the first snapshot
/// names exactly that file missing, `--all` fails, and the restore of the
/// first snapshot brings back everything else and says gone.txt is
/// unrecoverable (exit 3).
fn a_lost_copy_is_named(env: &TestEnv, target: &str, taken: &[Taken]) {
    let r = env.verify(target, &["--json", "--snapshot", &taken[0].id]);
    r.expect_code(1);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let problems: Vec<(&str, &str)> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["path"].as_str().unwrap(), p["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(problems, [("gone.txt", "missing")], "{}", r.show());
    env.verify(target, &["--all"]).expect_code(1);
    // The later snapshots never listed it: still intact.
    env.verify(target, &["--snapshot", &taken[1].id]).expect_code(0);

    let dest = env.root().join("restored-lost");
    let r = env.restore(target, &dest, &["--json", "--snapshot", &taken[0].id]);
    r.expect_code(3);
    let s = r.restore_summary();
    assert_eq!(s.failed_paths(), ["gone.txt"], "{}", r.show());
    let error = &s.failure("gone.txt").unwrap().error;
    assert!(error.contains("unrecoverable"), "{error}");
    let mut want = taken[0].tree.clone();
    want.remove("gone.txt");
    let mut got = tree(&dest);
    // The root's own entries' mtimes are set at the end, whatever failed.
    got.retain(|k, _| want.contains_key(k));
    assert_eq!(got, want);
}

impl TestEnv {
    /// `s3backup verify TARGET [--endpoint-url E] EXTRA...`.
    fn verify(&self, target: &str, extra: &[&str]) -> Run {
        let mut cmd = self.cmd();
        cmd.arg("verify").arg(target);
        if let Some(e) = &self.endpoint {
            cmd.arg("--endpoint-url").arg(e);
        }
        cmd.args(extra);
        run(cmd)
    }
}

#[test]
fn every_snapshot_restores_exactly_from_a_bucket_without_versioning() {
    let server = S3Server::start();
    server.create_bucket("hist");
    let env = TestEnv::with_server(&server);
    let target = "hist::pre";
    let taken = three_backups(&env, target, &[]);
    each_restores_exactly(&env, target, &taken);
    each_verifies(&env, target, &taken, true);
    no_request_wasted(&server, &env, target, &taken);
    let hash = blake3_hex(b"deleted later");
    let key = format!("pre/.s3backup/content/{}/{hash}", &hash[..2]);
    std::fs::remove_file(server.object_path("hist", &key)).unwrap();
    a_lost_copy_is_named(&env, target, &taken);
}

#[test]
fn every_snapshot_restores_exactly_from_a_local_store() {
    let env = TestEnv::new();
    let store = env.root().join("store");
    let target = store.to_str().unwrap().to_owned();
    let taken = three_backups(&env, &target, &[]);
    each_restores_exactly(&env, &target, &taken);
    each_verifies(&env, &target, &taken, true);
    let hash = blake3_hex(b"deleted later");
    std::fs::remove_file(store.join(format!(".s3backup/content/{}/{hash}", &hash[..2]))).unwrap();
    a_lost_copy_is_named(&env, &target, &taken);
}

#[test]
fn every_snapshot_restores_exactly_from_a_versioned_bucket() {
    let Some(moto) = Moto::start("every_snapshot_restores_exactly_from_a_versioned_bucket") else {
        return;
    };
    let client = moto.bucket("vhist", true);
    let env = TestEnv::with_endpoint(&moto.endpoint());
    let target = "vhist::pre";
    let taken = three_backups(&env, target, &[]);
    each_restores_exactly(&env, target, &taken);
    each_verifies(&env, target, &taken, false);
    // Versions keep the history here: removing the one gone.txt had loses it.
    let versions = block_on(
        client
            .list_object_versions()
            .bucket("vhist")
            .prefix("pre/gone.txt")
            .send(),
    )
    .expect("ListObjectVersions");
    for v in versions.versions() {
        block_on(
            client
                .delete_object()
                .bucket("vhist")
                .key("pre/gone.txt")
                .set_version_id(v.version_id().map(str::to_owned))
                .send(),
        )
        .expect("DeleteObject version");
    }
    a_lost_copy_is_named(&env, target, &taken);
}

/// The first snapshot's restore asks for each file once, where it is: the
/// content area for what changed or went since, the live key for what did
/// not (touched.txt only had its mtime refreshed). `verify --all` reads
/// manifests, lists the prefix once per snapshot and the content area
/// once, and asks nothing per file.
fn no_request_wasted(server: &S3Server, env: &TestEnv, target: &str, taken: &[Taken]) {
    server.clear_requests();
    env.restore_ok(target, &env.root().join("counted"), &["--snapshot", &taken[0].id]);
    let mut gets: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.op == "GetObject")
        .filter_map(|r| r.key)
        .filter(|k| !k.contains("/.s3backup/manifests/"))
        .collect();
    gets.sort();
    let mut want: Vec<String> = [
        "version one",
        "bee",
        "renamed later",
        "deleted later",
        "a file that becomes a directory",
        "a file that becomes a symlink",
    ]
    .iter()
    .map(|c| {
        let hash = blake3_hex(c.as_bytes());
        format!("pre/.s3backup/content/{}/{hash}", &hash[..2])
    })
    .chain(["pre/same.txt".to_owned(), "pre/touched.txt".to_owned()])
    .collect();
    want.sort();
    assert_eq!(gets, want);

    server.clear_requests();
    env.verify(target, &["--all"]).expect_code(0);
    let requests = server.requests();
    let per_file: Vec<_> = requests
        .iter()
        .filter(|r| r.op == "HeadObject" || r.op == "GetObject")
        .filter(|r| {
            !r.key
                .as_deref()
                .unwrap_or_default()
                .contains("/.s3backup/manifests/")
        })
        .collect();
    assert!(per_file.is_empty(), "{per_file:?}");
    let lists = |what: &str| {
        requests
            .iter()
            .filter(|r| r.op == "ListObjectsV2" && r.query.contains(what))
            .count()
    };
    assert_eq!(lists("prefix=pre%2F.s3backup%2Fcontent"), 1, "{requests:?}");
}

/// `--history off` is today's pure mirror: the latest snapshot restores,
/// an older one's changed and deleted files are unrecoverable, said as
/// before, and nothing is asked of the content area.
#[test]
fn history_off_restores_as_a_pure_mirror_did() {
    let server = S3Server::start();
    server.create_bucket("hist");
    let env = TestEnv::with_server(&server);
    let target = "hist::pre";
    let taken = three_backups(&env, target, &["--history", "off"]);
    let dest = env.root().join("latest");
    env.restore_ok(target, &dest, &[]);
    assert_eq!(tree(&dest), taken[2].tree);
    server.clear_requests();
    let dest = env.root().join("first");
    let r = env.restore(target, &dest, &["--json", "--snapshot", &taken[0].id]);
    r.expect_code(3);
    let s = r.restore_summary();
    assert_eq!(
        s.failed_paths(),
        ["a.txt", "b.txt", "gone.txt", "link", "old/name.txt", "shape"],
        "{}",
        r.show()
    );
    for f in &s.failures {
        assert!(f.error.ends_with("unrecoverable"), "{f:?}");
        assert!(!f.error.contains("content area"), "{f:?}");
    }
    let asked: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| {
            r.key
                .as_deref()
                .is_some_and(|k| k.contains("/.s3backup/content/"))
        })
        .collect();
    assert!(asked.is_empty(), "{asked:?}");
    env.verify(target, &["--snapshot", &taken[2].id]).expect_code(0);
    env.verify(target, &["--snapshot", &taken[0].id]).expect_code(1);
}

/// `verify --all` as text: each snapshot's line, a damaged snapshot's line
/// (and exit 1, the readable ones still checked), then the total; with
/// `--snapshot` it is a usage error.
#[test]
fn verify_all_names_each_snapshot_and_a_damaged_one() {
    let env = TestEnv::new();
    let store = env.root().join("store");
    let target = store.to_str().unwrap().to_owned();
    let taken = three_backups(&env, &target, &[]);
    let r = env.verify(&target, &["--all"]);
    r.expect_code(0);
    for t in &taken {
        let line = format!("snapshot {}: ", t.id);
        assert!(r.stdout.lines().any(|l| l.starts_with(&line)), "{}", r.show());
    }
    let last = r.stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("all 3 snapshot(s): "), "{}", r.show());

    let stray = "29990101T000000Z-00000000000000000000000000000bad";
    std::fs::write(
        store.join(format!(".s3backup/manifests/{stray}.jsonl.zst")),
        "not zstd",
    )
    .unwrap();
    let r = env.verify(&target, &["--all", "--json"]);
    r.expect_code(1);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["snapshots"].as_array().map(Vec::len), Some(3), "{}", r.show());
    assert_eq!(v["damaged"][0]["id"], stray, "{}", r.show());
    assert_eq!(v["missing"], 0, "{}", r.show());
    assert!(r.error_line().contains(stray), "{}", r.show());

    let r = env.verify(&target, &["--all", "--snapshot", &taken[0].id]);
    r.expect_code(2);
    assert!(r.stderr.contains("--snapshot"), "{}", r.show());
}
