//! Damaged manifests, against the in-process S3 server and a local store:
//! one unreadable manifest (random bytes, zstd holding no header, a format
//! from the future, an object cut short, an empty object, a stray object
//! named like a newer manifest) must not take the others down.
//!
//! What is checked is what a user sees: `snapshots` lists a damaged
//! snapshot as `damaged: <why>` and exits 0; `latest` is the newest readable
//! snapshot, with a warning naming the damaged ones passed over; `forget`
//! counts readable snapshots only, never removes the newest of them, and
//! leaves damaged ones alone unless they are named; a manifest that breaks
//! off after its header stops a restore plainly (exit 1, the snapshot and
//! the line named); an over-long line is one failure and the rest is
//! restored; a backup with a fresh state file rebuilds it from the newest
//! readable snapshot without claiming content the bucket no longer holds.

use std::path::PathBuf;

use serde_json::Value;

use crate::common::*;
use crate::server::S3Server;

const BUCKET: &str = "bkt";
/// A name that sorts after any real manifest.
const STRAY: &str = "29991231T000000Z-x";

/// A test environment and a target: `bkt::pre` on the S3 server, or a local store.
struct Fx {
    env: TestEnv,
    server: Option<S3Server>,
    local: PathBuf,
    target: String,
}

impl Fx {
    fn s3() -> Fx {
        let server = S3Server::start();
        server.create_bucket(BUCKET);
        let env = TestEnv::with_server(&server);
        Fx {
            local: PathBuf::new(),
            env,
            server: Some(server),
            target: "bkt::pre".into(),
        }
    }

    fn local() -> Fx {
        let env = TestEnv::new();
        let local = env.root().join("store");
        Fx {
            target: local.display().to_string(),
            local,
            env,
            server: None,
        }
    }

    /// The key of a stored object, `rel` relative to the target.
    fn key(&self, rel: &str) -> String {
        match self.server {
            Some(_) => format!("pre/{rel}"),
            None => rel.into(),
        }
    }

    fn manifest_rel(id: &str) -> String {
        format!(".s3backup/manifests/{id}.jsonl.zst")
    }

    /// A stored object's bytes, `None` when absent.
    fn object(&self, rel: &str) -> Option<Vec<u8>> {
        match &self.server {
            Some(s) => s.object_bytes(BUCKET, &self.key(rel)),
            None => std::fs::read(self.local.join(rel)).ok(),
        }
    }

    /// Writes an object as any other tool could.
    fn put(&self, rel: &str, bytes: &[u8]) {
        match &self.server {
            Some(s) => sdk_put(&sdk_client(&s.endpoint()), BUCKET, &self.key(rel), bytes),
            None => {
                let path = self.local.join(rel);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, bytes).unwrap();
            }
        }
    }

    fn manifest(&self, id: &str) -> Option<Vec<u8>> {
        self.object(&Self::manifest_rel(id))
    }

    fn put_manifest(&self, id: &str, bytes: &[u8]) {
        self.put(&Self::manifest_rel(id), bytes);
    }

    /// `s3backup --state STATE WORDS… TARGET [--endpoint-url E] EXTRA…`.
    fn on_target(&self, words: &[&str], extra: &[&str]) -> Run {
        let mut cmd = self.env.cmd();
        cmd.arg("--state")
            .arg(&self.env.state)
            .args(words)
            .arg(&self.target);
        if let Some(e) = &self.env.endpoint {
            cmd.arg("--endpoint-url").arg(e);
        }
        cmd.args(extra);
        run(cmd)
    }

    /// `state rebuild SRC TARGET --json`.
    fn rebuild(&self) -> Run {
        let mut cmd = self.env.cmd();
        cmd.arg("--state")
            .arg(&self.env.state)
            .args(["state", "rebuild"])
            .arg(&self.env.src)
            .arg(&self.target)
            .arg("--json");
        if let Some(e) = &self.env.endpoint {
            cmd.arg("--endpoint-url").arg(e);
        }
        run(cmd)
    }

    fn backup(&self) -> String {
        snapshot_id(
            &self
                .env
                .backup_ok(&self.target, &[])
                .snapshot
                .expect("a manifest"),
        )
    }

    /// Three snapshots; returns their IDs and the source tree as the second saw it.
    fn three_snapshots(&self) -> ([String; 3], std::collections::BTreeMap<String, Node>) {
        self.env.write("a.txt", "one");
        let first = self.backup();
        self.env.write("dir/b.txt", "two");
        let second = self.backup();
        let at_second = tree(&self.env.src);
        // Only added to: on a bucket without versions an older snapshot's
        // files stay restorable only while no later run replaced them.
        self.env.write("c.txt", "three");
        let third = self.backup();
        assert!(first < second && second < third, "{first} {second} {third}");
        ([first, second, third], at_second)
    }

    /// `snapshots --json`, exit 0, parsed.
    #[track_caller]
    fn snapshots_json(&self) -> Vec<Value> {
        let r = self.on_target(&["snapshots"], &["--json"]);
        r.expect_code(0);
        one_json(&r)
            .as_array()
            .unwrap_or_else(|| panic!("{}", r.show()))
            .clone()
    }
}

fn one_json(r: &Run) -> Value {
    serde_json::from_str(r.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON value: {e}\n{}", r.show()))
}

/// The `snapshots --json` row of `id`.
#[track_caller]
fn row<'a>(rows: &'a [Value], id: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no row {id} in {rows:?}"))
}

/// Zstd of `text`, one frame.
fn zstd_of(text: &[u8]) -> Vec<u8> {
    zstd::encode_all(text, 3).unwrap()
}

/// Ways a manifest object can be damaged, made from the good bytes, and a
/// word the listed reason must hold.
fn damage_kinds(good: &[u8]) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let mut too_new = manifest_header(1, 3);
    too_new["format"] = 99.into();
    vec![
        ("20 random bytes", noise(20, 11), "header unreadable"),
        (
            "zstd with no header",
            zstd_of(b"{\"not\":\"a header\"}\n"),
            "header is not valid",
        ),
        ("a newer format", encode_manifest(&too_new, &[]), "newer"),
        (
            "cut in half",
            good[..good.len() / 2].to_vec(),
            "header unreadable",
        ),
        ("empty", Vec::new(), "header unreadable"),
    ]
}

// ---------------------------------------------------------------- listing and latest

fn damaged_newest_is_listed_and_latest_is_the_newest_readable(fx: &Fx) {
    let ([first, second, third], at_second) = fx.three_snapshots();
    let good = fx.manifest(&third).unwrap();
    for (what, bytes, why) in damage_kinds(&good) {
        fx.put_manifest(&third, &bytes);

        let rows = fx.snapshots_json();
        assert_eq!(rows.len(), 3, "{what}: {rows:?}");
        for id in [&first, &second] {
            assert_eq!(row(&rows, id)["status"], "ok", "{what}: {rows:?}");
        }
        let bad = row(&rows, &third);
        assert_eq!(bad["status"], "damaged", "{what}: {bad}");
        let reason = bad["damage"].as_str().unwrap_or_default();
        assert!(reason.contains(why), "{what}: {reason}");
        assert_eq!(bad["files"], Value::Null, "{what}: {bad}");

        let r = fx.on_target(&["snapshots"], &[]);
        r.expect_code(0);
        let line = r.stdout.lines().find(|l| l.starts_with(&third)).unwrap();
        assert!(
            line.contains(&format!("damaged: {reason}")),
            "{what}\n{}",
            r.show()
        );

        // latest = the second snapshot, byte for byte, with a warning naming the third.
        let dest = fx.env.root().join(format!("dest-{}", what.replace(' ', "-")));
        let r = fx.env.restore(&fx.target, &dest, &["--json"]);
        r.expect_code(0);
        assert_eq!(r.restore_summary().source, second, "{what}");
        assert!(
            tree(&dest) == at_second,
            "{what}: restored tree differs from the second snapshot"
        );
        let warning = r.stderr.lines().find(|l| l.contains(&third)).unwrap_or_default();
        assert!(
            warning.contains("damaged") && warning.contains(&second),
            "{what}: no warning naming the damaged snapshot\n{}",
            r.show()
        );
    }
}

#[test]
fn damaged_newest_on_s3_is_listed_and_latest_is_the_newest_readable() {
    damaged_newest_is_listed_and_latest_is_the_newest_readable(&Fx::s3());
}

#[test]
fn damaged_newest_in_a_local_store_is_listed_and_latest_is_the_newest_readable() {
    damaged_newest_is_listed_and_latest_is_the_newest_readable(&Fx::local());
}

#[test]
fn a_stray_object_named_like_a_newer_manifest_is_listed_damaged_and_passed_over() {
    let fx = Fx::s3();
    let ([_, _, third], _) = fx.three_snapshots();
    let at_third = tree(&fx.env.src);
    fx.put_manifest(STRAY, b"not a manifest at all");

    let rows = fx.snapshots_json();
    assert_eq!(row(&rows, STRAY)["status"], "damaged", "{rows:?}");
    assert_eq!(row(&rows, &third)["status"], "ok", "{rows:?}");

    let dest = fx.env.root().join("dest");
    let r = fx.env.restore(&fx.target, &dest, &["--json"]);
    r.expect_code(0);
    assert_eq!(r.restore_summary().source, third);
    assert!(
        tree(&dest) == at_third,
        "restored tree differs from the real latest"
    );
    assert!(r.stderr.contains(STRAY), "{}", r.show());
}

/// A readable manifest under a later name (a copy, a stray, a clock run
/// ahead) is not taken for the newest snapshot: its name does not match
/// its header, so it is listed as damaged, `latest` is the real newest,
/// and `forget --keep-last 1` keeps the real newest (it used to remove
/// every real snapshot and keep the copy).
#[test]
fn a_readable_manifest_under_a_later_name_is_damaged_not_the_newest() {
    for fx in [Fx::s3(), Fx::local()] {
        let ([first, second, third], _) = fx.three_snapshots();
        let at_third = tree(&fx.env.src);
        let copy = fx.manifest(&first).expect("first manifest");
        fx.put_manifest(STRAY, &copy);

        let rows = fx.snapshots_json();
        assert_eq!(row(&rows, STRAY)["status"], "damaged", "{rows:?}");
        let r = fx.on_target(&["snapshots", "forget"], &["--keep-last", "1", "--json"]);
        r.expect_code(0);
        let v = one_json(&r);
        assert_eq!(v["removed"], serde_json::json!([first, second]), "{}", r.show());
        let dest = fx.env.root().join(format!("dest-{}", fx.target.len()));
        let r = fx.env.restore(&fx.target, &dest, &["--json"]);
        r.expect_code(0);
        assert_eq!(r.restore_summary().source, third);
        assert!(
            tree(&dest) == at_third,
            "restored tree differs from the real latest"
        );
    }
}

// ---------------------------------------------------------------- forget

fn forget_keeps_the_newest_readable_and_leaves_damaged_ones_alone(fx: &Fx) {
    let ([first, second, third], _) = fx.three_snapshots();
    fx.put_manifest(&third, &noise(20, 12));
    fx.put_manifest(STRAY, &noise(20, 13));

    // Dry run: what would go, nothing goes.
    let r = fx.on_target(
        &["snapshots", "forget"],
        &["--keep-last", "1", "--dry-run", "--json"],
    );
    r.expect_code(0);
    let v = one_json(&r);
    assert_eq!(v["removed"], serde_json::json!([first]), "{}", r.show());
    assert_eq!(v["kept"], 1, "{}", r.show());
    let damaged: Vec<&str> = v["damaged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(damaged, [third.as_str(), STRAY], "{}", r.show());
    assert!(v["damaged"][0]["damage"].as_str().is_some_and(|d| !d.is_empty()));
    for id in [&first, &second, &third] {
        assert!(fx.manifest(id).is_some(), "dry run removed {id}");
    }

    // For real: only the older readable one goes.
    let r = fx.on_target(&["snapshots", "forget"], &["--keep-last", "1"]);
    r.expect_code(0);
    assert!(r.stdout.contains(&format!("removed {first}")), "{}", r.show());
    for id in [&third, STRAY] {
        let line = r.stdout.lines().find(|l| l.contains(id)).unwrap_or_default();
        assert!(
            line.contains("damaged"),
            "{id} not said to be damaged\n{}",
            r.show()
        );
    }
    assert!(fx.manifest(&first).is_none(), "{first} kept");
    for id in [&second, &third, &STRAY.to_owned()] {
        assert!(fx.manifest(id).is_some(), "{id} removed");
    }

    // The newest readable one is never removed, even by name; a damaged one is, by name.
    let r = fx.on_target(&["snapshots", "forget"], &[&second]);
    r.expect_code(1);
    assert!(r.error_line().contains(&second), "{}", r.show());
    assert!(fx.manifest(&second).is_some());
    let r = fx.on_target(&["snapshots", "forget"], &[STRAY, "--json"]);
    r.expect_code(0);
    assert_eq!(
        one_json(&r)["removed"],
        serde_json::json!([STRAY]),
        "{}",
        r.show()
    );
    assert!(fx.manifest(STRAY).is_none());
    assert!(fx.manifest(&third).is_some());
}

#[test]
fn forget_on_s3_keeps_the_newest_readable_and_leaves_damaged_ones_alone() {
    forget_keeps_the_newest_readable_and_leaves_damaged_ones_alone(&Fx::s3());
}

#[test]
fn forget_in_a_local_store_keeps_the_newest_readable_and_leaves_damaged_ones_alone() {
    forget_keeps_the_newest_readable_and_leaves_damaged_ones_alone(&Fx::local());
}

// ---------------------------------------------------------------- restore and verify

#[test]
fn a_damaged_snapshot_asked_for_by_id_is_an_error_naming_it() {
    let fx = Fx::s3();
    let ([first, second, third], _) = fx.three_snapshots();
    fx.put_manifest(&third, &noise(20, 14));
    let dest = fx.env.root().join("dest");
    let r = fx.env.restore(&fx.target, &dest, &["--snapshot", &third]);
    r.expect_code(1);
    let e = r.error_line();
    assert!(e.contains(&third) && e.contains("damaged"), "{}", r.show());
    assert!(!dest.exists(), "DEST created");

    // Every snapshot damaged: no silent fallback, the newest is named.
    for id in [&first, &second] {
        fx.put_manifest(id, &noise(20, 15));
    }
    let r = fx.env.restore(&fx.target, &dest, &[]);
    r.expect_code(1);
    let e = r.error_line();
    assert!(
        e.contains("no readable snapshot") && e.contains(&third),
        "{}",
        r.show()
    );
    assert!(!dest.exists(), "DEST created");
}

fn restore_stops_plainly_where_a_manifest_breaks_off(fx: &Fx) {
    let ([_, _, third], _) = fx.three_snapshots();
    let text = zstd::decode_all(&fx.manifest(&third).unwrap()[..]).unwrap();
    let lines: Vec<&[u8]> = text.split_inclusive(|b| *b == b'\n').collect();
    assert!(lines.len() >= 5, "header, a dir and three files");
    // Cut inside the fourth line, and cut cleanly after the third.
    let mid_line = [&lines[..3].concat()[..], &lines[3][..10]].concat();
    let at_line = lines[..3].concat();
    for (what, cut) in [("mid-line", mid_line), ("at a line end", at_line)] {
        fx.put_manifest(&third, &zstd_of(&cut));
        let dest = fx.env.root().join(what.replace(' ', "-"));
        let r = fx.env.restore(&fx.target, &dest, &["--json"]);
        r.expect_code(1);
        let e = r.error_line();
        assert!(
            e.contains(&third) && e.contains("after line 3") && e.contains("stopped"),
            "{what}\n{}",
            r.show()
        );
        let v = one_json(&r);
        assert!(
            v["stopped"].as_str().is_some_and(|s| s.contains("line 3")),
            "{what}\n{}",
            r.show()
        );
        assert_eq!(v["source"], third.as_str());
        assert_eq!(temp_files(&dest), Vec::<String>::new(), "{what}");
    }
}

#[test]
fn restore_on_s3_stops_plainly_where_a_manifest_breaks_off() {
    restore_stops_plainly_where_a_manifest_breaks_off(&Fx::s3());
}

#[test]
fn restore_from_a_local_store_stops_plainly_where_a_manifest_breaks_off() {
    restore_stops_plainly_where_a_manifest_breaks_off(&Fx::local());
}

fn an_overlong_manifest_line_is_one_failure_and_the_rest_is_restored(fx: &Fx) {
    let file = |path: &str, content: &[u8]| {
        serde_json::json!({
            "path": path, "type": "file", "size": content.len(), "mtime_ns": 1_600_000_000_000_000_000i64,
            "mode": "644", "blake3": blake3_hex(content),
        })
    };
    let long = "x".repeat(2 * MIB);
    let entries = [file("a.txt", b"aa"), file(&long, b"zz"), file("c.txt", b"cc")];
    fx.put("a.txt", b"aa");
    fx.put("c.txt", b"cc");
    fx.put_manifest(
        "20200101T000000Z-0000000000000000000000000000beef",
        &encode_manifest(&manifest_header(3, 6), &entries),
    );
    let dest = fx.env.root().join("dest");
    let r = fx.env.restore(&fx.target, &dest, &["--json"]);
    r.expect_code(3);
    let s = r.restore_summary();
    assert_eq!(
        (s.files, s.downloaded, s.failed, s.unreadable_entries),
        (2, 2, 0, 1),
        "{}",
        r.show()
    );
    let error = &s.failures[0].error;
    assert!(
        error.contains("line 3") && error.contains("longer than"),
        "{}",
        r.show()
    );
    assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"aa");
    assert_eq!(
        std::fs::read(dest.join("c.txt")).unwrap(),
        b"cc",
        "the line after it was not read"
    );
}

#[test]
fn an_overlong_manifest_line_on_s3_is_one_failure_and_the_rest_is_restored() {
    an_overlong_manifest_line_is_one_failure_and_the_rest_is_restored(&Fx::s3());
}

#[test]
fn an_overlong_manifest_line_in_a_local_store_is_one_failure_and_the_rest_is_restored() {
    an_overlong_manifest_line_is_one_failure_and_the_rest_is_restored(&Fx::local());
}

#[test]
fn verify_with_a_damaged_newest_checks_the_newest_readable_and_fails() {
    let fx = Fx::local();
    let ([_, second, third], _) = fx.three_snapshots();
    fx.put_manifest(&third, &noise(20, 16));
    let r = fx.on_target(&["verify"], &["--json"]);
    r.expect_code(1);
    let v = one_json(&r);
    assert_eq!(v["snapshot"], second.as_str(), "{}", r.show());
    assert_eq!(v["missing"], 0);
    assert_eq!(v["passed_over"][0]["id"], third.as_str(), "{}", r.show());
    assert!(r.error_line().contains(&third), "{}", r.show());
}

// ---------------------------------------------------------------- rebuilding state

/// A first snapshot, then a second that changed `a.txt` in the bucket and
/// whose manifest is then damaged; locally `a.txt` goes back to exactly
/// what the first snapshot recorded, and the state file is lost.
fn damaged_newest_over_a_changed_bucket(fx: &Fx) -> (String, String) {
    fx.env.write("a.txt", "old");
    fx.env.write("b.txt", "bee");
    let first = fx.backup();
    fx.env.write_at("a.txt", "newer, longer", (T0.0 + 60, 0));
    let second = fx.backup();
    fx.put_manifest(&second, &noise(20, 17));
    fx.env.write("a.txt", "old");
    std::fs::remove_file(&fx.env.state).unwrap();
    (first, second)
}

fn fresh_state_backup_rebuilds_from_the_newest_readable(fx: &Fx) {
    let (first, second) = damaged_newest_over_a_changed_bucket(fx);
    let r = fx.env.backup(&fx.target, &["--json"]);
    r.expect_code(0);
    assert!(!r.stderr.contains("error"), "{}", r.show());
    let warning = r.stderr.lines().find(|l| l.contains(&second)).unwrap_or_default();
    assert!(
        warning.contains("damaged") && warning.contains(&first),
        "{}",
        r.show()
    );
    let s = r.summary();
    // b.txt is trusted from the first snapshot; a.txt's row is not (the
    // bucket holds the second run's bytes), so it is sent again.
    assert_eq!((s.uploaded, s.unchanged), (1, 1), "{}", r.show());
    assert_eq!(fx.object("a.txt").unwrap(), b"old");
    let dest = fx.env.root().join("dest");
    let restored = fx.env.restore_ok(&fx.target, &dest, &[]);
    assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"old");
    assert_eq!(restored.failed, 0);
}

#[test]
fn fresh_state_backup_on_s3_rebuilds_from_the_newest_readable_snapshot() {
    fresh_state_backup_rebuilds_from_the_newest_readable(&Fx::s3());
}

#[test]
fn fresh_state_backup_to_a_local_store_rebuilds_from_the_newest_readable_snapshot() {
    fresh_state_backup_rebuilds_from_the_newest_readable(&Fx::local());
}

#[test]
fn state_rebuild_with_a_damaged_newest_uses_the_newest_readable_and_drops_stale_rows() {
    let fx = Fx::s3();
    let (first, second) = damaged_newest_over_a_changed_bucket(&fx);
    let r = fx.rebuild();
    r.expect_code(0);
    let v = one_json(&r);
    assert_eq!(v["snapshot"], first.as_str(), "{}", r.show());
    assert_eq!(v["passed_over"][0]["id"], second.as_str(), "{}", r.show());
    assert_eq!(
        (v["files"].as_u64(), v["stale"].as_u64()),
        (Some(1), Some(1)),
        "{}",
        r.show()
    );
}

#[test]
fn fresh_state_backup_with_every_snapshot_damaged_uploads_everything() {
    let fx = Fx::local();
    fx.env.write("a.txt", "a");
    fx.env.write("b.txt", "b");
    let only = fx.backup();
    fx.put_manifest(&only, &noise(20, 18));
    std::fs::remove_file(&fx.env.state).unwrap();
    let r = fx.env.backup(&fx.target, &["--json"]);
    r.expect_code(0);
    assert!(
        r.stderr.contains(&only) && r.stderr.contains("uploading every file"),
        "{}",
        r.show()
    );
    assert_eq!(r.summary().uploaded, 2);
}
