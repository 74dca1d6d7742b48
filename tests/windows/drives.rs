//! Drive spellings of SOURCE and DEST, and a whole drive backed up into a
//! store on itself (issue 14).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::harness::{drive, manifest_paths_in_dir, read_tree, run, sample, scratch, write_tree};

/// The drive the CI script maps for [`a_whole_drive_is_backed_up_without_its_store_and_state`]
/// alone (`F:` unless `S3BACKUP_WIN_DRIVE2` names another), as `F:\`,
/// emptied first: the case backs the whole drive up.
fn own_drive() -> PathBuf {
    let letter = std::env::var("S3BACKUP_WIN_DRIVE2").unwrap_or_else(|_| "F:".into());
    let root = PathBuf::from(format!(r"{letter}\"));
    assert!(
        root.is_dir(),
        "{} is not mapped: run the suite through .ci/windows.sh, or set S3BACKUP_WIN_DRIVE2 to an empty drive",
        root.display()
    );
    for entry in std::fs::read_dir(&root).expect("read the drive") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).expect("empty the drive");
        } else {
            std::fs::remove_file(&path).expect("empty the drive");
        }
    }
    root
}

/// `C:rel` (relative to the drive's own current directory) and a bare
/// `E:` as SOURCE or DEST are refused with one line saying how to write
/// them (`C:\rel`, `E:\`), exit 2, and nothing is written.
#[test]
fn drive_relative_source_and_dest_are_refused_saying_how_to_write_them() {
    let home = scratch(&std::env::temp_dir());
    let src = home.path().join("src");
    write_tree(&src, &sample());
    let on_e = scratch(&drive());
    let store = on_e.path().join("store");
    let store_text = store.to_str().unwrap();
    let state = home.path().join("state.db");
    let state = state.to_str().unwrap();
    run(
        home.path(),
        ["--state", state, "backup", src.to_str().unwrap(), store_text],
    )
    .expect(0);
    for (dest, says) in [("E:", r"e.g. E:\"), ("C:rel", r"e.g. C:\rel")] {
        let r = run(home.path(), ["--state", state, "restore", store_text, dest]);
        r.expect(2);
        let first = r.stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error: ")
                && first.contains(&format!("'{dest}'"))
                && first.contains(says)
                && !first.contains(":: "),
            "{}",
            r.stderr
        );
        assert!(r.stdout.is_empty(), "{}", r.stdout);
    }
    let r = run(home.path(), ["--state", state, "backup", "E:", store_text]);
    r.expect(2);
    assert!(r.stderr.contains(r"e.g. E:\"), "{}", r.stderr);
    let restored: Vec<String> = read_tree(on_e.path()).into_keys().collect();
    assert!(
        restored.iter().all(|p| p.starts_with("store/")),
        "written outside the store: {restored:?}"
    );
}

/// SOURCE and DEST given as `file:///E:/x` URLs (README's Windows
/// section) name the drive path `E:/x`, as a TARGET's does, never a
/// directory `file:` in the current directory.
#[test]
fn source_and_dest_as_file_urls_name_their_drive_paths() {
    let home = scratch(&std::env::temp_dir());
    let src = home.path().join("src");
    write_tree(&src, &sample());
    let on_e = scratch(&drive());
    let store = on_e.path().join("store");
    let store_text = store.to_str().unwrap();
    let state = home.path().join("state.db");
    let state = state.to_str().unwrap();
    let url = |p: &std::path::Path| format!("file:///{}", p.to_str().unwrap().replace('\\', "/"));
    run(home.path(), ["--state", state, "backup", &url(&src), store_text]).expect(0);
    let dest = on_e.path().join("restored");
    run(
        home.path(),
        ["--state", state, "restore", store_text, &url(&dest)],
    )
    .expect(0);
    assert_eq!(read_tree(&dest), sample());
}

/// `backup F:\ F:\st --state F:\state.db`: the store and the state file
/// on the drive being backed up are left out (known by their identity,
/// volume serial and file index), run after run, as on Unix.
#[test]
fn a_whole_drive_is_backed_up_without_its_store_and_state() {
    let root = own_drive();
    let tree = sample();
    write_tree(&root.join("docs"), &tree);
    let home = scratch(&std::env::temp_dir());
    let root_text = root.to_str().unwrap();
    let store = root.join("st");
    let state = root.join("state.db");
    let args = [
        "--state",
        state.to_str().unwrap(),
        "backup",
        root_text,
        store.to_str().unwrap(),
    ];
    run(home.path(), args).expect(0);
    std::fs::write(root.join("docs").join("new.txt"), b"new").expect("a new file");
    run(home.path(), args).expect(0);
    let mut expected: BTreeMap<String, Vec<u8>> =
        tree.into_iter().map(|(p, b)| (format!("docs/{p}"), b)).collect();
    expected.insert("docs/new.txt".into(), b"new".to_vec());
    assert_eq!(
        read_tree(&store),
        expected,
        "the store holds the drive's files and nothing of its own"
    );
    let paths = manifest_paths_in_dir(&store.join(".s3backup").join("manifests"));
    assert!(
        paths.iter().all(|p| p.starts_with("docs")),
        "the store or the state file was backed up: {paths:?}"
    );
    drop(own_drive());
}
