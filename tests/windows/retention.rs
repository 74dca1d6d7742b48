//! Retention in a local store on `E:`: a prune judges each content object
//! by its stored time, on Windows the later of the file's creation and
//! modification times: content just copied in stays under the default
//! `--min-age`, and goes with `--min-age 0s` once no snapshot lists it.
//! (Under wine a file's creation time follows its modification time, so
//! a copy carrying an old source's mtime cannot be shown fresh here; on
//! NTFS its creation time is when it was made.)

use crate::harness::{drive, run, scratch};

/// The content key of `data` under `store`, as a path.
fn content_path(store: &std::path::Path, data: &[u8]) -> std::path::PathBuf {
    let h = blake3::hash(data).to_hex().to_string();
    store.join(".s3backup").join("content").join(&h[..2]).join(h)
}

#[test]
fn prune_in_a_local_store_on_windows_keeps_fresh_copies_and_frees_the_rest() {
    let home = scratch(&std::env::temp_dir());
    let state = home.path().join("state.db");
    let state = state.to_str().unwrap();
    let source = home.path().join("src");
    std::fs::create_dir_all(&source).unwrap();
    let area = scratch(&drive());
    let store = area.path().join("st");
    let (src, st) = (source.to_str().unwrap(), store.to_str().unwrap());
    std::fs::write(source.join("a.txt"), b"first").unwrap();
    run(home.path(), ["--state", state, "backup", src, st]).expect(0);
    std::fs::write(source.join("a.txt"), b"second").unwrap();
    // The set's one file is replaced: past the change tripwire's default (50%).
    run(
        home.path(),
        ["--state", state, "backup", "--max-change", "100%", src, st],
    )
    .expect(0);
    let first = content_path(&store, b"first");
    assert!(first.is_file(), "the second run kept the first content");
    let orphan = content_path(&store, b"nobody lists this");
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(&orphan, b"nobody lists this").unwrap();

    // Just copied in: a prune with the default --min-age keeps both.
    let r = run(
        home.path(),
        [
            "--state",
            state,
            "snapshots",
            "forget",
            st,
            "--keep-last",
            "1",
            "--prune",
            "--json",
        ],
    );
    let v = r.expect(0).json();
    assert_eq!(v["removed"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["prune"]["deleted_objects"], 0, "{v}");
    assert_eq!(v["prune"]["kept_new"], 2, "{v}");
    assert!(first.is_file() && orphan.is_file());

    let r = run(
        home.path(),
        [
            "--state",
            state,
            "snapshots",
            "prune",
            st,
            "--min-age",
            "0s",
            "--json",
        ],
    );
    let v = r.expect(0).json();
    assert_eq!(v["deleted_objects"], 2, "{v}");
    assert!(!first.exists() && !orphan.exists(), "{v}");
    assert_eq!(std::fs::read(store.join("a.txt")).unwrap(), b"second");
}
