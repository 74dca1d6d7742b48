//! `backup --delete` into a local store on `E:` removes the directories it
//! empties, as on Linux: a later entry spelled otherwise (`SUB` after
//! `sub/` was emptied) is then stored, not refused every run.

use crate::harness::{drive, run, scratch};

#[test]
fn delete_removes_emptied_directories_so_another_spelling_is_stored() {
    let home = scratch(&std::env::temp_dir());
    let state = home.path().join("state.db");
    let state = state.to_str().unwrap();
    let source = home.path().join("ed");
    std::fs::create_dir_all(source.join("sub")).unwrap();
    std::fs::write(source.join("sub").join("a"), b"a in sub").unwrap();
    std::fs::write(source.join("b"), b"b").unwrap();
    let area = scratch(&drive());
    let store = area.path().join("edst");
    let (src, st) = (source.to_str().unwrap(), store.to_str().unwrap());
    run(home.path(), ["--state", state, "backup", src, st]).expect(0);
    assert!(store.join("sub").join("a").is_file());

    std::fs::remove_dir_all(source.join("sub")).unwrap();
    run(home.path(), ["--state", state, "backup", "--delete", src, st]).expect(0);
    assert!(
        !store.join("sub").exists(),
        "the emptied directory 'sub' stays in the store"
    );

    std::fs::write(source.join("SUB"), b"a file now").unwrap();
    run(home.path(), ["--state", state, "backup", "--delete", src, st]).expect(0);
    assert_eq!(std::fs::read(store.join("SUB")).unwrap(), b"a file now");
}
