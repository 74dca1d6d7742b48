//! Backups of a SOURCE on a file system that refuses Windows names (the
//! exFAT image of `S3BACKUP_TEST_FOLDING_DIR`, see `case_dest`): the
//! stand-ins a restore wrote there (`a：b.txt` for `a:b.txt`) are read
//! back as the original keys, as a Windows backup does, so a round trip
//! through such a disk keeps every key and adds no `‛` (issue 14).

use std::path::Path;

use crate::case_dest::folding_dir;
use crate::common::*;

/// Keys Windows (and so exFAT) cannot hold as they are, one that holds a
/// stand-in itself and one that holds rclone's quote, beside plain ones.
const FILES: [(&str, &str); 8] = [
    ("a:b.txt", "colon"),
    ("con.txt", "device"),
    ("trailing.", "dot"),
    ("x\u{FF1A}y.txt", "full-width colon"),
    ("q\u{201B}z.txt", "quote"),
    ("what?/in.txt", "in a directory"),
    ("sub/plain.txt", "plain"),
    ("plain.txt", "plain"),
];

/// The paths of the snapshot a `--json` backup summary names, in `store`.
fn snapshot_paths(store: &Path, summary: &Summary) -> Vec<String> {
    let snap = summary.snapshot.as_deref().expect("a snapshot");
    let name = snap.rsplit('/').next().unwrap();
    let path = store.join(".s3backup/manifests").join(name);
    let mut paths = Manifest::decode(&std::fs::read(&path).unwrap()).paths();
    paths.sort();
    paths
}

/// Every file of a local store but its own area: path → content.
fn files_of(store: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![store.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(store).unwrap().to_string_lossy().into_owned();
            if rel == ".s3backup" {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// `s3backup backup SOURCE STORE --json` with `env`'s state; its summary.
fn back_up(env: &TestEnv, source: &Path, store: &Path) -> Summary {
    let mut cmd = env.cmd();
    cmd.arg("--state")
        .arg(&env.state)
        .arg("backup")
        .arg(source)
        .arg(store)
        .arg("--json");
    let r = run(cmd);
    r.expect_code(0);
    r.summary()
}

#[test]
fn a_tree_restored_onto_exfat_backs_up_to_its_original_keys() {
    let Some(root) = folding_dir() else { return };
    let env = TestEnv::new();
    for (path, content) in FILES {
        env.write(path, content);
    }
    let first = env.root().join("first");
    let original = snapshot_paths(&first, &env.backup_ok(first.to_str().unwrap(), &[]));
    assert_eq!(original.len(), FILES.len());

    let disk = tempfile::tempdir_in(root).unwrap();
    let mut store = first;
    for round in 1..=2 {
        let dest = disk.path().join(format!("dest{round}"));
        env.restore(store.to_str().unwrap(), &dest, &[]).expect_code(0);
        assert!(
            dest.join("a\u{FF1A}b.txt").is_file(),
            "round {round}: the stand-in was written"
        );
        let next = env.root().join(format!("round{round}"));
        let keys = snapshot_paths(&next, &back_up(&env, &dest, &next));
        assert_eq!(
            keys, original,
            "round {round}: the keys of a backup of the exFAT tree"
        );
        assert_eq!(
            files_of(&next),
            files_of(&store),
            "round {round}: the stores differ"
        );
        store = next;
    }
    // Nothing of the probe is left in SOURCE.
    let left: Vec<_> = std::fs::read_dir(disk.path().join("dest1"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".s3backup"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
