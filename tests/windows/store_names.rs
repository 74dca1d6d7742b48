//! Keys Windows refuses (`a:b.txt`, `con.txt`, `name.`), held in a local
//! store on drive `E:` under the stand-ins a restore uses, and read back as
//! the original keys. The keys come from moto, as a Linux backup stored
//! them: a restore maps them onto Windows, and a backup of that tree into
//! the local store stores the original keys again.

use std::collections::BTreeMap;

use crate::harness::{drive, manifest_paths_in_dir, read_tree, run, scratch};
use crate::moto::Moto;

/// key → (the name Windows holds it under, bytes).
fn forbidden() -> Vec<(&'static str, &'static str, &'static [u8])> {
    vec![
        ("a:b.txt", "a\u{FF1A}b.txt", b"colon"),
        ("q?.txt", "q\u{FF1F}.txt", b"question"),
        ("con.txt", "\u{FF43}on.txt", b"console"),
        ("name.", "name\u{FF0E}", b"trailing dot"),
        ("x ", "x\u{2420}", b"trailing space"),
        ("d:ir/f", "d\u{FF1A}ir/f", b"in a mapped directory"),
    ]
}

#[test]
fn forbidden_keys_are_held_in_a_local_store_under_stand_ins_and_restore() {
    let moto = Moto::start("bucket");
    for (key, _, body) in forbidden() {
        moto.put("bucket", &format!("linux/{key}"), body);
    }
    let home = scratch(&std::env::temp_dir());
    let state = home.path().join("state.db");
    let state = state.to_str().unwrap();
    let restored = home.path().join("restored");
    run(
        home.path(),
        [
            "--state",
            state,
            "restore",
            "bucket::linux",
            restored.to_str().unwrap(),
            "--endpoint-url",
            &moto.endpoint(),
        ],
    )
    .expect(0);
    let on_windows: BTreeMap<String, Vec<u8>> = forbidden()
        .into_iter()
        .map(|(_, name, body)| (name.to_string(), body.to_vec()))
        .collect();
    assert_eq!(read_tree(&restored), on_windows);

    // Backed up from Windows into a local store on E:.
    let area = scratch(&drive());
    let store = area.path().join("store");
    let store_text = store.to_str().unwrap();
    let backup = run(
        home.path(),
        [
            "--state",
            state,
            "backup",
            restored.to_str().unwrap(),
            store_text,
            "--json",
        ],
    );
    backup.expect(0);
    assert_eq!(backup.json()["uploaded"], 6, "{}", backup.stderr);
    // On disk: the stand-ins, recorded in the store's marker; in the
    // manifest: the original keys.
    assert_eq!(read_tree(&store), on_windows);
    assert_eq!(
        std::fs::read_to_string(store.join(".s3backup").join("name-encoding")).unwrap(),
        "windows-stand-ins 1\n"
    );
    let mut keys = manifest_paths_in_dir(&store.join(".s3backup").join("manifests"));
    keys.sort();
    // The directory `d:ir` has an entry of its own.
    let mut originals: Vec<String> = forbidden().iter().map(|(k, _, _)| k.to_string()).collect();
    originals.push("d:ir".into());
    originals.sort();
    assert_eq!(keys, originals);

    // The listing reads the original keys back: an unchanged run sends nothing,
    // verify finds every object, a restore writes the tree again.
    let again = run(
        home.path(),
        [
            "--state",
            state,
            "backup",
            restored.to_str().unwrap(),
            store_text,
            "--json",
        ],
    );
    again.expect(0);
    assert_eq!(again.json()["unchanged"], 6, "{}", again.stderr);
    run(home.path(), ["verify", store_text]).expect(0);
    let back = home.path().join("back");
    run(home.path(), ["restore", store_text, back.to_str().unwrap()]).expect(0);
    assert_eq!(read_tree(&back), on_windows);

    // One key by name: `con.txt` is found in the store.
    let one = home.path().join("one");
    run(
        home.path(),
        ["restore", store_text, one.to_str().unwrap(), "con.txt"],
    )
    .expect(0);
    let want: BTreeMap<String, Vec<u8>> = [("\u{FF43}on.txt".to_string(), b"console".to_vec())].into();
    assert_eq!(read_tree(&one), want);
}
