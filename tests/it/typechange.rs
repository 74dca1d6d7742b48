//! Backups of paths whose type changed (issue 12): a symlink, file or
//! directory that became another kind of entry at the same path. The run
//! deletes the old object(s) first, `--delete` or not, so nothing is
//! written through a stored symlink, a stored file never blocks the new
//! directory (or the reverse), no old object stays beside the new ones,
//! and a restore gives the new tree exactly. Each test runs the real
//! binary against the local store, the in-process S3 server (s3s-fs) and,
//! where it is installed, moto (a flat key space, as S3's), with and
//! without `--delete`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::common::*;
use crate::proxy::{Fault, FaultProxy};
use crate::server::S3Server;
use crate::versioned::Moto;

const BUCKET: &str = "bkt";
const S3_TARGET: &str = "bkt::pre";

/// Where a test backs up to.
enum Store {
    Local(PathBuf),
    S3(S3Server),
    Moto(Moto),
}

impl Store {
    /// The store of one kind, and an environment that reaches it.
    fn open(kind: &str) -> Option<(Store, TestEnv)> {
        match kind {
            "local" => {
                let env = TestEnv::new();
                Some((Store::Local(env.root().join("store")), env))
            }
            "s3" => {
                let server = S3Server::start();
                server.create_bucket(BUCKET);
                let env = TestEnv::with_server(&server);
                Some((Store::S3(server), env))
            }
            _ => {
                let moto = Moto::start(kind)?;
                moto.bucket(BUCKET, false);
                let env = TestEnv::with_endpoint(&moto.endpoint());
                Some((Store::Moto(moto), env))
            }
        }
    }

    fn target(&self) -> String {
        match self {
            Store::Local(p) => p.to_str().unwrap().to_owned(),
            Store::S3(_) | Store::Moto(_) => S3_TARGET.to_owned(),
        }
    }

    /// Every object of the backed-up tree (manifests left out), by relative path.
    fn objects(&self) -> BTreeSet<String> {
        let keys: Vec<String> = match self {
            Store::Local(root) => tree(root)
                .into_iter()
                .filter(|(_, n)| n.kind != Kind::Dir)
                .map(|(p, _)| p)
                .collect(),
            Store::S3(server) => server
                .list_keys(BUCKET)
                .into_iter()
                .filter_map(|k| k.strip_prefix("pre/").map(str::to_owned))
                .collect(),
            Store::Moto(moto) => {
                let c = sdk_client(&moto.endpoint());
                let out = block_on(c.list_objects_v2().bucket(BUCKET).prefix("pre/").send()).unwrap();
                out.contents()
                    .iter()
                    .filter_map(|o| o.key()?.strip_prefix("pre/").map(str::to_owned))
                    .collect()
            }
        };
        keys.into_iter()
            .filter(|k| !k.starts_with(".s3backup/"))
            .collect()
    }
}

/// Files and symlinks of the source: what the store must hold, no more.
fn expected_objects(src: &Path) -> BTreeSet<String> {
    tree(src)
        .into_iter()
        .filter(|(_, n)| n.kind != Kind::Dir)
        .map(|(p, _)| p)
        .collect()
}

/// Restores the latest snapshot into a new directory and requires the
/// source tree exactly (kinds, bytes, link targets, mtimes, modes).
#[track_caller]
fn assert_restores_exactly(env: &TestEnv, target: &str, what: &str) {
    let dest = tempfile::tempdir().unwrap();
    let dest = dest.path().join("restored");
    env.restore_ok(target, &dest, &[]);
    assert_eq!(
        tree(&dest),
        tree(&env.src),
        "{what}: restore differs from the source"
    );
}

/// Removes a directory of the source tree and all under it.
fn remove_dir(env: &TestEnv, rel: &str) {
    std::fs::remove_dir_all(env.path(rel)).unwrap();
}

/// A symlink to a directory outside the source, then a real directory
/// under the same name: the stored link is deleted first, so nothing
/// lands in (or, with `--delete`, is deleted from) the directory it
/// pointed to.
fn symlink_to_a_directory_that_becomes_a_directory(kind: &str) {
    for extra in [&[][..], &["--delete"][..]] {
        let Some((store, env)) = Store::open(kind) else {
            return;
        };
        let target = store.target();
        let elsewhere = env.root().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("keep.txt"), "not the backup's").unwrap();
        let before = tree(&elsewhere);
        env.write("top.txt", "top");
        env.symlink(elsewhere.to_str().unwrap(), "a");
        env.backup_ok(&target, extra);

        // The user replaces the link with a real folder.
        env.remove("a");
        env.write("a/x", "x in a real directory");
        env.write("a/keep.txt", "shadows the name in elsewhere");
        env.write("a/sub/y", "y");
        let r = env.backup(&target, &[&["--json", "-v"][..], extra].concat());
        assert_eq!(
            tree(&elsewhere),
            before,
            "{kind} {extra:?}: written through the old link"
        );
        r.expect_code(0);
        assert!(r.stderr.contains("replaced: type changed"), "{}", r.show());
        let s = r.summary();
        assert_eq!(
            (s.uploaded, s.deleted, s.failed),
            (3, 1, 0),
            "{kind} {extra:?}: {s:?}"
        );
        assert_eq!(store.objects(), expected_objects(&env.src), "{kind} {extra:?}");
        if let Store::Local(root) = &store {
            let md = std::fs::symlink_metadata(root.join("a")).unwrap();
            assert!(
                md.is_dir(),
                "{kind} {extra:?}: the store's 'a' is a real directory now"
            );
            assert_eq!(std::fs::read(root.join("a/x")).unwrap(), b"x in a real directory");
        }
        if let Store::S3(server) = &store {
            assert_eq!(
                server.object_bytes(BUCKET, "pre/a"),
                None,
                "the link object is gone"
            );
            assert_eq!(
                server.object_bytes(BUCKET, "pre/a/x").unwrap(),
                b"x in a real directory"
            );
        }
        assert_restores_exactly(&env, &target, kind);

        // Deleting files under the new directory deletes in the store only.
        env.remove("a/keep.txt");
        let s = env.backup_ok(&target, extra);
        assert_eq!(s.deleted, u64::from(!extra.is_empty()), "{kind} {extra:?}: {s:?}");
        assert_eq!(
            tree(&elsewhere),
            before,
            "{kind} {extra:?}: deleted through the old link"
        );
        if !extra.is_empty() {
            assert_eq!(store.objects(), expected_objects(&env.src), "{kind} {extra:?}");
            assert_restores_exactly(&env, &target, kind);
        }
    }
}

#[test]
fn a_symlinked_directory_that_becomes_a_real_one_writes_nothing_outside_on_the_local_store() {
    symlink_to_a_directory_that_becomes_a_directory("local");
}

#[test]
fn a_symlinked_directory_that_becomes_a_real_one_replaces_the_link_object_on_s3() {
    symlink_to_a_directory_that_becomes_a_directory("s3");
}

/// Builds the first tree: names that sort between `d` and `d/` (`d-old`,
/// `d.txt`) sit beside the paths that change type, so the merge must look
/// past them.
fn first_tree(env: &TestEnv) {
    env.write("f", "a file that becomes a directory");
    env.write("f.txt", "beside f");
    env.write("d/x", "under a directory that becomes a file");
    env.write("d/sub/y", "deeper");
    env.write("d-old", "beside d");
    env.write("d.txt", "beside d too");
    env.write("e/z", "under a directory that becomes a symlink");
    env.symlink("f.txt", "l");
    env.write("g", "a file that becomes an empty directory");
}

/// Turns every changing path of [`first_tree`] into another type.
fn second_tree(env: &TestEnv) {
    env.remove("f");
    env.write("f/inner", "f is a directory now");
    remove_dir(env, "d");
    env.write_at("d", "d is a file now", (1_700_000_100, 0));
    remove_dir(env, "e");
    env.symlink("d.txt", "e");
    env.remove("l");
    env.write("l/w", "the symlink l is a directory now");
    env.remove("g");
    std::fs::create_dir(env.path("g")).unwrap();
    filetime::set_file_mtime(
        env.path("g"),
        filetime::FileTime::from_unix_time(1_650_000_000, 0),
    )
    .unwrap();
}

/// And back: each path takes its first type again.
fn third_tree(env: &TestEnv) {
    remove_dir(env, "f");
    env.write("f", "a file again");
    env.remove("d");
    env.write("d/x", "a directory again");
    env.remove("e");
    env.write("e/z", "a directory again");
    remove_dir(env, "l");
    env.symlink("f", "l");
    remove_dir(env, "g");
    env.write("g", "a file again");
}

fn type_changes_both_ways(kind: &str) {
    for extra in [&[][..], &["--delete"][..]] {
        let Some((store, env)) = Store::open(kind) else {
            return;
        };
        // Most of this tiny set changes type on purpose (the guard is tested in `guard`).
        let env = env.past_the_guard();
        let target = store.target();
        first_tree(&env);
        env.backup_ok(&target, extra);
        assert_eq!(store.objects(), expected_objects(&env.src), "{kind} {extra:?}");

        second_tree(&env);
        // A dry run plans the replacements first and changes nothing.
        let stored = store.objects();
        let r = env.backup(&target, &[&["--dry-run"][..], extra].concat());
        r.expect_code(0);
        let replaced: Vec<String> = r
            .plan_lines()
            .into_iter()
            .filter(|l| l.ends_with(" (replaced: type changed)"))
            .collect();
        assert_eq!(
            replaced,
            ["d", "d/sub", "d/sub/y", "d/x", "e", "e/z", "f", "g", "l"]
                .map(|p| format!("delete {p} (replaced: type changed)")),
            "{kind} {extra:?}\n{}",
            r.show()
        );
        assert_eq!(
            store.objects(),
            stored,
            "{kind} {extra:?}: the dry run changed the store"
        );
        let s = env.backup_ok(&target, extra);
        // Replaced: f, d/x, d/sub/y, e/z, l, g (the directories' rows have no object).
        assert_eq!((s.deleted, s.failed), (6, 0), "{kind} {extra:?}: {s:?}");
        assert_eq!(store.objects(), expected_objects(&env.src), "{kind} {extra:?}");
        assert_restores_exactly(&env, &target, &format!("{kind} {extra:?} second"));

        third_tree(&env);
        let s = env.backup_ok(&target, extra);
        // Replaced: f/inner, d, e, l/w, nothing for the empty g.
        assert_eq!((s.deleted, s.failed), (4, 0), "{kind} {extra:?}: {s:?}");
        assert_eq!(store.objects(), expected_objects(&env.src), "{kind} {extra:?}");
        assert_restores_exactly(&env, &target, &format!("{kind} {extra:?} third"));

        // Nothing is left to do.
        let s = env.backup_ok(&target, extra);
        assert_eq!(
            (s.uploaded, s.deleted, s.copied),
            (0, 0, 0),
            "{kind} {extra:?}: {s:?}"
        );
    }
}

#[test]
fn files_and_directories_that_swap_types_are_replaced_on_the_local_store() {
    type_changes_both_ways("local");
}

#[test]
fn files_and_directories_that_swap_types_are_replaced_on_s3() {
    type_changes_both_ways("s3");
}

#[test]
fn files_and_directories_that_swap_types_leave_no_orphan_on_moto() {
    type_changes_both_ways("files_and_directories_that_swap_types_leave_no_orphan_on_moto");
}

/// Hands `root` and everything under it to `nobody`, so a run as `nobody`
/// sees permission bits the way a normal user does (they do not stop root).
fn give_to_nobody(root: &Path) {
    for e in walkdir::WalkDir::new(root) {
        let e = e.unwrap();
        std::os::unix::fs::lchown(e.path(), Some(65534), Some(65534)).unwrap();
    }
}

#[test]
fn a_link_that_cannot_be_replaced_blocks_every_write_through_it_on_the_local_store() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let store = env.root().join("store");
    let target = store.to_str().unwrap().to_owned();
    let elsewhere = env.root().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    env.write("top.txt", "top");
    env.symlink(elsewhere.to_str().unwrap(), "a");
    env.backup_ok(&target, &[]);
    env.remove("a");
    env.write("a/x", "x");
    env.write("a/sub/y", "y");

    // The store's top directory can't be written: the old link can't be deleted.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        give_to_nobody(env.root());
    }
    let mode = |m: u32| std::fs::set_permissions(&store, std::fs::Permissions::from_mode(m)).unwrap();
    mode(0o555);
    for extra in [&[][..], &["--delete"][..]] {
        let r = run(as_nobody_if_root(
            env.backup_cmd(&target, &[&["--json"][..], extra].concat()),
            env.root(),
        ));
        r.expect_code(3);
        let s = r.summary();
        let failed: Vec<&str> = s.failures.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(failed, ["a", "a/sub/y", "a/x"], "{extra:?}: {s:?}");
        assert_eq!(
            paths_under(&elsewhere),
            Vec::<String>::new(),
            "{extra:?}: written through"
        );
        assert!(
            std::fs::symlink_metadata(store.join("a")).unwrap().is_symlink(),
            "the link is still there"
        );
    }

    // Once it can be deleted, the next run replaces it.
    mode(0o755);
    let s = env.backup_ok(&target, &[]);
    assert_eq!((s.uploaded, s.deleted, s.failed), (2, 1, 0), "{s:?}");
    assert_eq!(paths_under(&elsewhere), Vec::<String>::new());
    assert_restores_exactly(&env, &target, "after the link could be deleted");
}

#[test]
fn a_file_that_cannot_be_replaced_blocks_the_directory_written_over_it_on_moto() {
    let Some(moto) =
        Moto::start("a_file_that_cannot_be_replaced_blocks_the_directory_written_over_it_on_moto")
    else {
        return;
    };
    moto.bucket(BUCKET, false);
    let proxy = FaultProxy::start_to(&moto.endpoint(), 12);
    let env = TestEnv::with_endpoint(&proxy.endpoint());
    let store = Store::Moto(moto);
    env.write("a", "a file that becomes a directory");
    env.write("b", "b");
    env.backup_ok(S3_TARGET, &[]);
    env.remove("a");
    env.write("a/x", "x");

    // Every DeleteObject fails (with retries): the old object stays, so
    // nothing may be written under its name.
    proxy.set_filter(|p| p.method == hyper::Method::DELETE);
    proxy.set_faults(1.0, &[Fault::InternalError]);
    let r = env.backup(S3_TARGET, &["--json", "--delete"]);
    r.expect_code(3);
    let s = r.summary();
    let failed: Vec<&str> = s.failures.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(failed, ["a", "a/x"], "{s:?}");
    assert_eq!(
        store.objects(),
        BTreeSet::from(["a".to_owned(), "b".to_owned()]),
        "nothing written beside the old object"
    );

    proxy.clear_faults();
    let s = env.backup_ok(S3_TARGET, &[]);
    assert_eq!((s.uploaded, s.deleted, s.failed), (1, 1, 0), "{s:?}");
    assert_eq!(store.objects(), expected_objects(&env.src));
    assert_restores_exactly(&env, S3_TARGET, "after the delete went through");
}

/// A directory a filter leaves out that becomes a file or a symlink at the
/// same path (issue 14): README promises a path a filter leaves out is
/// never deleted, and a type change is no exception. The objects under
/// the excluded `cache/` stay; the new `cache` conflicts with them (one
/// tree cannot hold both), so it fails by name (exit 3) and nothing is
/// deleted; once `cache` is excluded too, nothing happens at all. With
/// and without `--delete`.
fn an_excluded_directory_that_changes_type_keeps_its_objects(kind: &str) {
    for (new_kind, extra) in [
        ("file", &[][..]),
        ("file", &["--delete"][..]),
        ("symlink", &[][..]),
        ("symlink", &["--delete"][..]),
    ] {
        let Some((store, env)) = Store::open(kind) else {
            return;
        };
        let target = store.target();
        env.write("top", "top")
            .write("cache/a", "a")
            .write("cache/sub/b", "b");
        env.backup_ok(&target, extra);
        let stored = store.objects();

        remove_dir(&env, "cache");
        match new_kind {
            "file" => env.write("cache", "now a file"),
            _ => env.symlink("top", "cache"),
        };
        let what = format!("{kind} {new_kind} {extra:?}");
        let args = [&["--json", "--exclude", "cache/"][..], extra].concat();
        let r = env.backup(&target, &args);
        r.expect_code(3);
        let s = r.summary();
        assert_eq!((s.deleted, s.failed), (0, 1), "{what}: {}", r.show());
        let failure = s
            .failures
            .iter()
            .find(|f| f.path == "cache")
            .unwrap_or_else(|| panic!("{what}: {}", r.show()));
        assert!(
            failure.error.contains("filter") && failure.error.contains("cache/"),
            "{what}: {failure:?}"
        );
        assert_eq!(store.objects(), stored, "{what}: the excluded objects stay");

        // The new entry left out too: nothing to do, nothing deleted.
        let args = [&["--exclude", "cache/", "--exclude", "cache"][..], extra].concat();
        let s = env.backup_ok(&target, &args);
        assert_eq!((s.deleted, s.failed, s.uploaded), (0, 0, 0), "{what}: {s:?}");
        assert_eq!(store.objects(), stored, "{what}");
    }
}

#[test]
fn an_excluded_directory_that_becomes_a_file_keeps_its_objects_on_the_local_store() {
    an_excluded_directory_that_changes_type_keeps_its_objects("local");
}

#[test]
fn an_excluded_directory_that_becomes_a_file_keeps_its_objects_on_s3() {
    an_excluded_directory_that_changes_type_keeps_its_objects("s3");
}

/// The other way: a file a filter now leaves out (`--exclude x`) whose
/// path became a directory whose contents an `--include` takes: the
/// file's object stays, and each entry under `x/` fails by name.
fn an_excluded_file_that_becomes_a_directory_keeps_its_object(kind: &str) {
    for extra in [&[][..], &["--delete"][..]] {
        let Some((store, env)) = Store::open(kind) else {
            return;
        };
        let target = store.target();
        env.write("top", "top").write("x", "a file");
        env.backup_ok(&target, extra);
        let stored = store.objects();

        env.remove("x");
        env.write("x/a", "under a directory now");
        let args = [&["--json", "--exclude", "x", "--include", "x/a"][..], extra].concat();
        let r = env.backup(&target, &args);
        r.expect_code(3);
        let s = r.summary();
        assert_eq!((s.deleted, s.uploaded), (0, 0), "{kind} {extra:?}: {}", r.show());
        let failed: Vec<&str> = s.failures.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(failed, ["x/a"], "{kind} {extra:?}: {}", r.show());
        assert_eq!(
            store.objects(),
            stored,
            "{kind} {extra:?}: the excluded object stays"
        );
    }
}

#[test]
fn an_excluded_file_that_becomes_a_directory_keeps_its_object_on_the_local_store() {
    an_excluded_file_that_becomes_a_directory_keeps_its_object("local");
}

#[test]
fn an_excluded_file_that_becomes_a_directory_keeps_its_object_on_s3() {
    an_excluded_file_that_becomes_a_directory_keeps_its_object("s3");
}
