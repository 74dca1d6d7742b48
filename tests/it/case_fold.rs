//! Which keys a case-folding DEST takes for one name, by its own table
//! (exFAT's upper-case table, not `to_lowercase`), what a restore does
//! with a DEST file spelled otherwise than the backup's key, and what a
//! dry run onto such a DEST lists. The exFAT image is
//! `S3BACKUP_TEST_FOLDING_DIR` (CI mounts one, see `.ci/run`).

use std::path::Path;

use crate::case_dest::folding_dir;
use crate::common::*;

/// A local store in `env` holding a backup of `files` (path, content); its target text.
fn store_with(env: &TestEnv, files: &[(&str, &str)]) -> String {
    for (path, content) in files {
        env.write(path, content);
    }
    let target = env.root().join("store").to_str().unwrap().to_owned();
    env.backup_ok(&target, &[]);
    target
}

/// A restore dry run's lines (those before its summary).
fn plan(r: &Run) -> Vec<String> {
    r.stdout
        .lines()
        .take_while(|l| !l.starts_with("dry run: "))
        .map(str::to_owned)
        .collect()
}

/// Names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn exfat_decides_by_its_own_table_final_sigma_refused_and_title_case_dz_restored() {
    let Some(root) = folding_dir() else { return };
    let env = TestEnv::new();
    // Final and medial sigma: one name on exFAT (upper case Σ), two to
    // `to_lowercase`. Title-case ǅ and small ǆ: two names on exFAT, one to
    // `to_lowercase`.
    let target = store_with(
        &env,
        &[
            ("\u{3c2}.txt", "final"),
            ("\u{3c3}.txt", "medial"),
            ("\u{1c5}.txt", "title"),
            ("\u{1c6}.txt", "small"),
        ],
    );
    let dir = tempfile::tempdir_in(root).unwrap();
    let dest = dir.path().join("dest");
    let r = env.restore(&target, &dest, &["--json"]);
    r.expect_code(3);
    let s = r.restore_summary();
    // Keys come sorted: ς (U+03C2) before σ (U+03C3).
    assert_eq!(s.failed_paths(), ["\u{3c3}.txt"], "{}", r.show());
    let why = &s.failure("\u{3c3}.txt").unwrap().error;
    assert!(
        why.contains("the same name as '\u{3c2}.txt' on DEST") && why.contains("'\u{3c2}.txt' wins"),
        "{why}"
    );
    assert_eq!((s.files, s.downloaded, s.failed), (4, 3, 1), "{}", r.show());
    assert_eq!(names(&dest), ["\u{1c5}.txt", "\u{1c6}.txt", "\u{3c2}.txt"]);
    assert_eq!(
        std::fs::read_to_string(dest.join("\u{3c2}.txt")).unwrap(),
        "final"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("\u{1c5}.txt")).unwrap(),
        "title"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("\u{1c6}.txt")).unwrap(),
        "small"
    );
    assert!(temp_files(&dest).is_empty(), "{:?}", temp_files(&dest));

    // Again: the same refusal, the rest unchanged.
    let r = env.restore(&target, &dest, &["--json"]);
    r.expect_code(3);
    let s = r.restore_summary();
    assert_eq!(s.failed_paths(), ["\u{3c3}.txt"], "{}", r.show());
    assert_eq!((s.unchanged, s.downloaded), (3, 0), "{}", r.show());
}

#[test]
fn a_dry_run_onto_a_new_empty_folding_dir_predicts_the_clash_the_restore_meets() {
    let Some(root) = folding_dir() else { return };
    let env = TestEnv::new();
    let target = store_with(&env, &[("Case.txt", "upper"), ("case.txt", "lower")]);
    let dir = tempfile::tempdir_in(root).unwrap();
    // An empty directory, and one not made yet: no entry to look up.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for dest in [empty.clone(), dir.path().join("new/dest")] {
        let r = env.restore(&target, &dest, &["--dry-run"]);
        r.expect_code(3);
        assert!(
            r.stdout
                .lines()
                .any(|l| l.starts_with("refuse case.txt: the same name as 'Case.txt' on DEST")),
            "{}",
            r.show()
        );
        assert!(r.stdout.lines().any(|l| l == "download Case.txt"), "{}", r.show());
        assert!(!r.stdout.contains("download case.txt"), "{}", r.show());
    }
    assert_eq!(names(dir.path()), ["empty"], "a dry run wrote");
    assert!(names(&empty).is_empty());
    // The restore does what the dry run said.
    let r = env.restore(&target, &empty, &["--json"]);
    r.expect_code(3);
    assert_eq!(r.restore_summary().failed_paths(), ["case.txt"], "{}", r.show());
}

#[test]
fn a_dry_run_summary_says_what_it_would_download_not_what_it_received() {
    let env = TestEnv::new();
    let target = store_with(&env, &[("a.txt", "12345"), ("b.txt", "678")]);
    let dest = env.root().join("dest");
    let r = env.restore(&target, &dest, &["--dry-run"]);
    r.expect_code(0);
    // What it would download, with no time or rate for a download it did not make.
    assert!(
        r.stdout.lines().any(|l| l == "  would download 8 B"),
        "{}",
        r.show()
    );
    assert!(!r.stdout.contains("received"), "{}", r.show());
    let r = env.restore(&target, &dest, &[]);
    r.expect_code(0);
    assert!(r.stdout.contains("  received 8 B in "), "{}", r.show());
}

#[test]
fn a_dest_file_spelled_otherwise_is_that_keys_copy_replaced_or_kept_and_a_dry_run_names_it() {
    let Some(root) = folding_dir() else { return };
    let env = TestEnv::new();
    let target = store_with(&env, &[("Case.txt", "backup")]);
    let dir = tempfile::tempdir_in(root).unwrap();
    let dest = dir.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("CASE.TXT"), "dest's own").unwrap();

    // --no-clobber keeps it, spelled as DEST spells it; the dry run says so.
    let r = env.restore(&target, &dest, &["--dry-run", "--no-clobber"]);
    r.expect_code(0);
    assert_eq!(
        plan(&r),
        ["keep Case.txt (differs, --no-clobber; DEST spells it 'CASE.TXT')"],
        "{}",
        r.show()
    );
    let s = env.restore_ok(&target, &dest, &["--no-clobber"]);
    assert_eq!((s.kept, s.downloaded), (1, 0), "{s:?}");
    assert_eq!(names(&dest), ["CASE.TXT"]);
    assert_eq!(
        std::fs::read_to_string(dest.join("CASE.TXT")).unwrap(),
        "dest's own"
    );

    // Without it: replaced by the backup's file, under the backup's spelling.
    let r = env.restore(&target, &dest, &["--dry-run"]);
    r.expect_code(0);
    assert_eq!(
        plan(&r),
        ["download Case.txt (overwrite 'CASE.TXT')"],
        "{}",
        r.show()
    );
    let s = env.restore_ok(&target, &dest, &[]);
    assert_eq!((s.downloaded, s.kept), (1, 0), "{s:?}");
    assert_eq!(names(&dest), ["Case.txt"]);
    assert_eq!(std::fs::read_to_string(dest.join("Case.txt")).unwrap(), "backup");
    // And then it is the same: nothing to do.
    let r = env.restore(&target, &dest, &["--dry-run"]);
    assert!(plan(&r).is_empty(), "{}", r.show());
}

#[test]
fn after_a_restore_onto_exfat_a_dry_run_and_a_second_restore_find_nothing_to_do() {
    let Some(root) = folding_dir() else { return };
    let env = TestEnv::new();
    env.write("a:b.txt", "mapped")
        .write("d/inner.txt", "inner")
        .write("private", "p")
        .set_mode("private", 0o600)
        .write_at("exact", "ns", (1_600_000_000, 123_456_789));
    let target = env.root().join("store").to_str().unwrap().to_owned();
    env.backup_ok(&target, &[]);
    let dir = tempfile::tempdir_in(root).unwrap();
    let dest = dir.path().join("dest");
    let s = env.restore_ok(&target, &dest, &[]);
    assert_eq!(s.downloaded, 4, "{s:?}");
    // exFAT keeps whole seconds (its FUSE driver) and no modes: the
    // recorded mtime, to the second, is what is there.
    assert_eq!(mtime_of(&dest.join("exact")).0, 1_600_000_000);

    // Nothing to list: the stand-in is found, and what exFAT cannot hold
    // (modes, nanoseconds) is not a change.
    let r = env.restore(&target, &dest, &["--dry-run"]);
    r.expect_code(0);
    assert!(plan(&r).is_empty(), "{}", r.show());
    assert!(r.stdout.contains("downloaded 0, unchanged 4"), "{}", r.show());
    // And the restore does nothing either.
    let before = mtime_of(&dest.join("exact"));
    let s = env.restore_ok(&target, &dest, &[]);
    assert_eq!((s.unchanged, s.downloaded), (4, 0), "{s:?}");
    assert_eq!(mtime_of(&dest.join("exact")), before);
}

#[test]
fn restoring_one_twin_by_path_or_filter_refuses_it_as_a_full_restore_does() {
    let Some(root) = folding_dir() else { return };
    let env = TestEnv::new();
    let target = store_with(&env, &[("BIG.BIN", "the upper one"), ("big.bin", "lower")]);
    let dir = tempfile::tempdir_in(root).unwrap();
    let dest = dir.path().join("dest");
    let r = env.restore(&target, &dest, &["--json"]);
    r.expect_code(3);
    assert_eq!(r.restore_summary().failed_paths(), ["big.bin"], "{}", r.show());
    let upper = || std::fs::read_to_string(dest.join("BIG.BIN")).unwrap();
    assert_eq!(upper(), "the upper one");
    for pick in [&["big.bin"][..], &["--include", "big.bin"][..]] {
        // The dry run says what the restore then does: big.bin is refused,
        // BIG.BIN (in the backup, not selected) keeps the name.
        let mut args = vec!["--dry-run"];
        args.extend_from_slice(pick);
        let r = env.restore(&target, &dest, &args);
        r.expect_code(3);
        assert!(
            plan(&r)
                .iter()
                .any(|l| l.starts_with("refuse big.bin: the same name as 'BIG.BIN' on DEST")),
            "{}",
            r.show()
        );
        assert!(!r.stdout.contains("download big.bin"), "{}", r.show());
        let mut args = vec!["--json"];
        args.extend_from_slice(pick);
        let r = env.restore(&target, &dest, &args);
        r.expect_code(3);
        let s = r.restore_summary();
        assert_eq!(s.failed_paths(), ["big.bin"], "{}", r.show());
        assert!(
            s.failure("big.bin").unwrap().error.contains("'BIG.BIN' wins"),
            "{}",
            r.show()
        );
        assert_eq!((s.downloaded, s.failed), (0, 1), "{}", r.show());
        assert_eq!(names(&dest), ["BIG.BIN"]);
        assert_eq!(upper(), "the upper one", "{pick:?} replaced BIG.BIN");
    }
}

#[test]
fn no_clobber_onto_a_folding_dest_names_the_winner_and_dests_spelling_in_the_real_run_too() {
    let Some(root) = folding_dir() else { return };
    let env = TestEnv::new();
    let target = store_with(&env, &[("Case.txt", "backup"), ("case.txt", "twin")]);
    let dir = tempfile::tempdir_in(root).unwrap();
    let dest = dir.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("CASE.TXT"), "dest's own").unwrap();
    let r = env.restore(&target, &dest, &["--no-clobber"]);
    r.expect_code(3);
    // Case.txt was kept, not restored: the refusal says it wins.
    let refusal = r
        .stderr
        .lines()
        .find(|l| l.starts_with("error: case.txt: "))
        .unwrap_or_default();
    assert!(
        refusal.contains("'Case.txt' wins") && !refusal.contains("is restored"),
        "{}",
        r.show()
    );
    // The kept line names DEST's spelling, as the dry run's keep line does.
    assert!(
        r.stderr
            .lines()
            .any(|l| l == "kept (differs from the backup): Case.txt; DEST spells it 'CASE.TXT'"),
        "{}",
        r.show()
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("CASE.TXT")).unwrap(),
        "dest's own"
    );
}

#[test]
fn dry_run_lines_name_files_as_written_not_as_the_manifest_escapes_them() {
    let env = TestEnv::new();
    // `‛` is doubled in the manifest's key (`z‛‛w.txt`); the file is `z‛w.txt`.
    let target = store_with(&env, &[("z\u{201B}w.txt", "quote"), ("d\u{201B}/f", "in d")]);
    let dest = env.root().join("dest");
    let r = env.restore(&target, &dest, &["--dry-run"]);
    r.expect_code(0);
    assert_eq!(
        plan(&r),
        [
            format!("create {}", dest.display()),
            "mkdir d\u{201B}".to_string(),
            "download d\u{201B}/f".to_string(),
            "download z\u{201B}w.txt".to_string(),
        ],
        "{}",
        r.show()
    );
    env.restore_ok(&target, &dest, &[]);
    assert_eq!(
        std::fs::read_to_string(dest.join("z\u{201B}w.txt")).unwrap(),
        "quote"
    );
}
