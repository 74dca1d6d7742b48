//! Read-only files in the way of a delete or a replacement on Windows,
//! where a read-only file can be neither deleted nor renamed over and the
//! read-only attribute is what a mode without the owner-write bit maps to
//! (issue 14).

use std::path::Path;

use crate::harness::{drive, read_tree, run, sample, scratch, write_tree};

/// Marks the file at `path` read-only.
fn make_read_only(path: &Path) {
    let mut perms = std::fs::metadata(path).expect("stat").permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(path, perms).expect("set read-only");
}

/// Objects of a local store that are read-only (a Unix backup of `0444`
/// files onto a disk Windows then uses) are deleted by `backup --delete`
/// and replaced by a changed file, exit 0.
#[test]
fn read_only_store_objects_are_deleted_and_replaced() {
    let home = scratch(&std::env::temp_dir());
    let src = home.path().join("src");
    let mut tree = sample();
    write_tree(&src, &tree);
    let on_e = scratch(&drive());
    let store = on_e.path().join("store");
    let state = home.path().join("state.db");
    let args = [
        "--state",
        state.to_str().unwrap(),
        "backup",
        src.to_str().unwrap(),
        store.to_str().unwrap(),
        "--delete",
    ];
    run(home.path(), args).expect(0);
    make_read_only(&store.join("a.txt"));
    make_read_only(&store.join("sub").join("b.txt"));
    std::fs::remove_file(src.join("a.txt")).expect("remove a source file");
    tree.remove("a.txt");
    std::fs::write(src.join("sub").join("b.txt"), b"bravo, longer now").expect("change a file");
    tree.insert("sub/b.txt".into(), b"bravo, longer now".to_vec());
    run(home.path(), args).expect(0);
    assert_eq!(read_tree(&store), tree);
}

/// A restore's temporary file that a killed restore left read-only (it
/// had applied the mode `0444` already) is swept by the next restore.
#[test]
fn a_read_only_temporary_file_left_in_dest_is_swept() {
    let home = scratch(&std::env::temp_dir());
    let src = home.path().join("src");
    let tree = sample();
    write_tree(&src, &tree);
    let on_e = scratch(&drive());
    let store = on_e.path().join("store");
    let dest = on_e.path().join("dest");
    let state = home.path().join("state.db");
    let state = state.to_str().unwrap();
    run(
        home.path(),
        [
            "--state",
            state,
            "backup",
            src.to_str().unwrap(),
            store.to_str().unwrap(),
        ],
    )
    .expect(0);
    std::fs::create_dir_all(dest.join("sub")).expect("DEST");
    let stale = dest
        .join("sub")
        .join(".s3backup-restore-file0123456789abcdef0123456789abcdef");
    std::fs::write(&stale, b"half").expect("a stale temporary file");
    make_read_only(&stale);
    run(
        home.path(),
        [
            "--state",
            state,
            "restore",
            store.to_str().unwrap(),
            dest.to_str().unwrap(),
        ],
    )
    .expect(0);
    assert!(!stale.exists(), "the read-only temporary file is still there");
    assert_eq!(read_tree(&dest), tree);
}
