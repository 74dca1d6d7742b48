//! Object Lock (immutable backups, issue 17) on moto, which implements it:
//! `--lock-days` puts a retention on every version a run writes, a bucket's
//! default retention is recorded, every write to such a bucket carries the
//! `Content-MD5` moto (like S3) requires, `snapshots` shows each lock, and
//! what the same credentials can do afterwards (a `--delete` of an emptied
//! tree, `forget --keep-last 1 --prune`, a DeleteObject of one version)
//! leaves every locked snapshot restorable byte-identical. Bad input is
//! refused on the in-process server and a local store, with nothing written.

use aws_sdk_s3::types::{
    DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode, ObjectLockRule,
};
use serde_json::Value;

use crate::common::*;
use crate::server::S3Server;
use crate::versioned::Moto;

/// Creates `bucket` with Object Lock enabled (so versioned), with a
/// default retention of `default_days` governance days when given.
fn lock_bucket(moto: &Moto, bucket: &str, default_days: Option<i32>) -> aws_sdk_s3::Client {
    let c = sdk_client(&moto.endpoint());
    block_on(
        c.create_bucket()
            .bucket(bucket)
            .object_lock_enabled_for_bucket(true)
            .send(),
    )
    .expect("CreateBucket with Object Lock");
    if let Some(days) = default_days {
        let rule = ObjectLockRule::builder()
            .default_retention(
                DefaultRetention::builder()
                    .mode(ObjectLockRetentionMode::Governance)
                    .days(days)
                    .build(),
            )
            .build();
        block_on(
            c.put_object_lock_configuration()
                .bucket(bucket)
                .object_lock_configuration(
                    ObjectLockConfiguration::builder()
                        .object_lock_enabled(ObjectLockEnabled::Enabled)
                        .rule(rule)
                        .build(),
                )
                .send(),
        )
        .expect("PutObjectLockConfiguration");
    }
    c
}

/// The (mode, retain-until seconds) of the current version of `key`.
fn lock_of(c: &aws_sdk_s3::Client, bucket: &str, key: &str) -> (String, i64) {
    let out = block_on(c.head_object().bucket(bucket).key(key).send()).expect("HeadObject");
    (
        out.object_lock_mode()
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default(),
        out.object_lock_retain_until_date().map_or(0, |d| d.secs()),
    )
}

/// Every key under `prefix`, as listed.
fn keys(c: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<String> {
    let out = block_on(c.list_objects_v2().bucket(bucket).prefix(prefix).send()).expect("ListObjectsV2");
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

/// `snapshots --json` as values.
fn snapshot_rows(env: &TestEnv, target: &str) -> Vec<Value> {
    let r = env.snapshots(target, &["--json"]);
    r.expect_code(0);
    serde_json::from_str(r.stdout.trim()).unwrap()
}

/// `snapshots forget TARGET ARGS… --endpoint-url E`.
fn forget(env: &TestEnv, endpoint: &str, target: &str, args: &[&str]) -> Run {
    let mut cmd = env.cmd();
    cmd.args(["snapshots", "forget", target, "--endpoint-url", endpoint]);
    cmd.args(args);
    run(cmd)
}

/// Now, in seconds since the epoch.
fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn locked_snapshots_survive_what_the_same_credentials_can_do() {
    let Some(moto) = Moto::start("locked_snapshots_survive_what_the_same_credentials_can_do") else {
        return;
    };
    let endpoint = moto.endpoint();
    let c = lock_bucket(&moto, "locked", None);
    moto.bucket("plain", false);
    let env = TestEnv::with_endpoint(&endpoint).past_the_guard();
    env.write_at("a.txt", "alpha", (1_600_000_000, 0));
    env.write_at("dir/b.txt", "bravo", (1_600_000_000, 0));
    env.symlink("a.txt", "link");

    // A bucket without Object Lock: refused before anything is written.
    let r = env.backup("plain::pre", &["--lock-days", "1"]);
    r.expect_code(1);
    assert!(r.error_line().contains("Object Lock"), "{}", r.show());
    assert!(
        keys(&c, "plain", "").is_empty(),
        "nothing written to the plain bucket"
    );

    // Content kept in the content area by a locked run (pruned at the end,
    // when it is more than a second old) is not deleted while locked.
    let hist = "locked::hist";
    env.backup_ok(hist, &[]);
    env.write_at("a.txt", "alpha, edited", (1_600_000_100, 0));
    env.backup_ok(hist, &["--lock-days", "1", "--history", "both"]);
    env.write_at("a.txt", "alpha", (1_600_000_000, 0));

    let target = "locked::pre";
    let t0 = now_secs();
    env.backup_ok(target, &["--lock-days", "1"]);
    let first = tree(&env.src);
    for key in ["pre/a.txt", "pre/dir/b.txt", "pre/link"] {
        let (mode, until) = lock_of(&c, "locked", key);
        assert_eq!(mode, "GOVERNANCE", "{key}");
        assert!(
            (t0 + 86_400 - 5..=now_secs() + 86_400).contains(&until),
            "{key}: {until}"
        );
    }
    // A rename (CopyObject) and a touched file (a metadata copy onto itself), in compliance mode.
    env.rename("dir/b.txt", "dir/c.txt");
    env.set_mtime("a.txt", (1_700_000_000, 0));
    let s = env.backup_ok(
        target,
        &["--lock-days", "3", "--lock-mode", "compliance", "--delete"],
    );
    assert!(s.copied >= 1, "{s:?}");
    let second = tree(&env.src);
    let t1 = now_secs();
    // Written by this run, and the symlink the first run wrote, whose lock
    // (1 day) ended before half of this run's (1.5 days): extended.
    for key in ["pre/a.txt", "pre/dir/c.txt", "pre/link"] {
        let (mode, until) = lock_of(&c, "locked", key);
        assert_eq!(mode, "COMPLIANCE", "{key}");
        assert!(until >= t1 - 60 + 3 * 86_400, "{key}: {until}");
    }
    let rows = snapshot_rows(&env, target);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["lock"]["mode"], "governance", "{rows:?}");
    assert_eq!(rows[1]["lock"]["mode"], "compliance", "{rows:?}");
    let until = chrono::DateTime::parse_from_rfc3339(rows[1]["lock"]["until"].as_str().unwrap()).unwrap();
    assert!(
        until.timestamp() >= t1 - 60 + 2 * 86_400,
        "the snapshot's lock is its versions' earliest: {rows:?}"
    );
    let manifests = keys(&c, "locked", "pre/.s3backup/manifests/");
    assert_eq!(lock_of(&c, "locked", &manifests[1]).0, "COMPLIANCE");
    let listing = env.snapshots(target, &[]);
    assert!(
        listing.stdout.contains("(locked: governance until "),
        "{}",
        listing.show()
    );
    let ids: Vec<String> = rows
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();

    // The same credentials, later: the tree emptied and backed up with --delete ...
    for p in ["a.txt", "dir/c.txt", "link"] {
        env.remove(p);
    }
    env.backup_ok(target, &["--delete", "--allow-empty-source"]);
    // ... every snapshot but the newest forgotten and pruned: the locked ones are kept, with their dates ...
    let r = forget(
        &env,
        &endpoint,
        target,
        &["--keep-last", "1", "--prune", "--json"],
    );
    r.expect_code(0);
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["removed"], serde_json::json!([]), "{v}");
    let locked: Vec<&str> = v["locked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(locked, [ids[0].as_str(), ids[1].as_str()], "{v}");
    assert_eq!(v["locked"][1]["mode"], "compliance", "{v}");
    assert!(v["locked"][0]["until"].as_str().unwrap().ends_with('Z'), "{v}");
    let r = forget(&env, &endpoint, target, &["--keep-last", "1"]);
    r.expect_code(0);
    assert!(r.stdout.contains("kept 2 locked snapshot(s)"), "{}", r.show());
    // ... one named by ID is refused, nothing removed ...
    let r = forget(&env, &endpoint, target, &[&ids[0]]);
    r.expect_code(1);
    assert!(
        r.error_line().contains("locked (governance until "),
        "{}",
        r.show()
    );
    // ... and every version of the files deleted one by one: refused by the lock.
    let versions = block_on(c.list_object_versions().bucket("locked").prefix("pre/").send()).unwrap();
    let locked_keys = [
        "pre/a.txt",
        "pre/dir/b.txt",
        "pre/dir/c.txt",
        "pre/link",
        &manifests[0],
        &manifests[1],
    ];
    let mut refused = 0;
    for v in versions.versions() {
        let (key, id) = (v.key().unwrap(), v.version_id().unwrap());
        if !locked_keys.contains(&key) {
            continue;
        }
        let deleted = block_on(c.delete_object().bucket("locked").key(key).version_id(id).send());
        assert!(deleted.is_err(), "deleting {key} version {id} was allowed");
        refused += 1;
    }
    assert_eq!(
        refused, 7,
        "two versions of a.txt, one of each other file, two manifests"
    );

    for (id, expected) in [(&ids[0], &first), (&ids[1], &second)] {
        let dest = env.root().join(format!("restored-{id}"));
        env.restore_ok(target, &dest, &["--snapshot", id]);
        assert_eq!(&tree(&dest), expected, "snapshot {id}");
    }

    let r = forget(
        &env,
        &endpoint,
        hist,
        &["--keep-last", "1", "--prune", "--min-age", "0s", "--json"],
    );
    r.expect_code(0);
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(
        v["removed"].as_array().unwrap().len(),
        1,
        "the unlocked snapshot goes: {v}"
    );
    assert_eq!(v["prune"]["deleted_objects"], 0, "{v}");
    assert_eq!(v["prune"]["locked"].as_array().unwrap().len(), 1, "{v}");
    assert!(
        v["prune"]["locked"][0]["id"]
            .as_str()
            .unwrap()
            .starts_with("hist/.s3backup/content/"),
        "{v}"
    );
    assert_eq!(keys(&c, "locked", "hist/.s3backup/content/").len(), 1);
}

#[test]
fn a_bucket_default_retention_is_honoured_and_recorded() {
    let Some(moto) = Moto::start("a_bucket_default_retention_is_honoured_and_recorded") else {
        return;
    };
    let c = lock_bucket(&moto, "deflock", Some(1));
    let env = TestEnv::with_endpoint(&moto.endpoint()).past_the_guard();
    env.write_at("a.txt", "alpha", (1_600_000_000, 0));
    env.write_at("d/b.txt", "bravo", (1_600_000_000, 0));
    env.symlink("a.txt", "link");
    let target = "deflock::p";
    let t0 = now_secs();
    env.backup_ok(target, &[]);
    // Every write gets the default and must carry Content-MD5: copies too.
    env.rename("d/b.txt", "d/c.txt");
    env.set_mtime("a.txt", (1_700_000_000, 0));
    let s = env.backup_ok(target, &["--delete"]);
    assert_eq!((s.copied, s.failed), (1, 0), "{s:?}");
    let expected = tree(&env.src);
    assert_eq!(lock_of(&c, "deflock", "p/d/c.txt").0, "GOVERNANCE");
    for row in snapshot_rows(&env, target) {
        assert_eq!(row["lock"]["mode"], "governance", "{row}");
        let until = chrono::DateTime::parse_from_rfc3339(row["lock"]["until"].as_str().unwrap()).unwrap();
        assert!(
            (t0 + 86_400 - 5..=now_secs() + 86_400).contains(&until.timestamp()),
            "{row}"
        );
    }
    let dest = env.root().join("back");
    env.restore_ok(target, &dest, &[]);
    assert_eq!(tree(&dest), expected);
}

#[test]
fn lock_options_refuse_bad_input_and_write_nothing() {
    let env = TestEnv::new();
    env.write("a.txt", "a");
    let store = env.root().join("store");
    let local = store.to_str().unwrap();
    for (args, says) in [
        (vec!["--lock-days", "0"], "0 days"),
        (vec!["--lock-days", "36501"], "from 1 to 36500"),
        (vec!["--lock-days", "-3"], "from 1 to 36500"),
        (
            vec!["--lock-days", "1", "--lock-mode", "forever"],
            "governance or compliance",
        ),
        (vec!["--lock-mode", "compliance"], "needs --lock-days"),
        (vec!["--lock-days", "1"], "local directory"),
    ] {
        let r = env.backup(local, &args);
        r.expect_code(2);
        assert!(r.stderr.contains(says), "{args:?}: {}", r.show());
    }
    assert!(!store.exists(), "nothing written");

    // An S3 server without Object Lock (s3s-fs): exit 1, nothing written.
    let server = S3Server::start();
    server.create_bucket("nolock");
    let env = TestEnv::with_server(&server);
    env.write("a.txt", "a");
    let r = env.backup("s3://nolock/p", &["--lock-days", "3"]);
    r.expect_code(1);
    assert!(r.error_line().contains("Object Lock"), "{}", r.show());
    assert!(server.object_bytes("nolock", "p/a.txt").is_none());
    assert!(
        std::fs::read_dir(server.object_path("nolock", ""))
            .unwrap()
            .next()
            .is_none()
    );
}

/// moto takes the lock headers of CreateMultipartUpload and applies
/// nothing: a file sent in parts was left unlocked while `snapshots`
/// called its snapshot locked (a tester deleted it with the backup's own
/// credentials). The version a multipart upload makes gets its retention
/// set after completion, whatever the store did with the headers.
#[test]
fn a_file_sent_in_parts_is_locked_where_the_store_ignores_the_lock_on_create() {
    let Some(moto) = Moto::start("a_file_sent_in_parts_is_locked") else {
        return;
    };
    let c = lock_bucket(&moto, "parts", None);
    let env = TestEnv::with_endpoint(&moto.endpoint()).past_the_guard();
    env.write("big.bin", crate::common::noise(6 * 1024 * 1024, 9));
    let t0 = now_secs();
    env.backup_ok(
        "parts::mp",
        &[
            "--lock-days",
            "1",
            "--multipart-threshold",
            "5MiB",
            "--part-size",
            "5MiB",
        ],
    );
    let (mode, until) = lock_of(&c, "parts", "mp/big.bin");
    assert_eq!(mode, "GOVERNANCE");
    assert!(
        (t0 + 86_400 - 5..=now_secs() + 86_400).contains(&until),
        "{until}"
    );
}

/// A governance run extends an older compliance lock in compliance mode
/// (extending it as governance weakened it on moto, and S3 refuses it);
/// a snapshot naming governance versions is shown as governance, not as
/// the mode of the run that wrote it (a tester found both).
#[test]
fn extended_locks_keep_their_mode_and_a_snapshot_shows_its_weakest() {
    let Some(moto) = Moto::start("extended_locks_keep_their_mode") else {
        return;
    };
    let c = lock_bucket(&moto, "modes", None);
    let env = TestEnv::with_endpoint(&moto.endpoint()).past_the_guard();
    env.write_at("a.txt", "alpha", (1_600_000_000, 0));
    env.write_at("b.txt", "bravo", (1_600_000_000, 0));
    env.backup_ok("modes::c", &["--lock-days", "1", "--lock-mode", "compliance"]);
    env.write_at("a.txt", "alpha, edited", (1_600_000_100, 0));
    // Four days in governance: b.txt's lock (1 day) ends before half of it.
    let t1 = now_secs();
    env.backup_ok("modes::c", &["--lock-days", "4"]);
    let (mode, until) = lock_of(&c, "modes", "c/b.txt");
    assert_eq!(mode, "COMPLIANCE", "an extension weakened b.txt's lock");
    assert!(until >= t1 - 60 + 4 * 86_400, "{until}");
    assert_eq!(lock_of(&c, "modes", "c/a.txt").0, "GOVERNANCE");
    let rows = snapshot_rows(&env, "modes::c");
    assert_eq!(rows[0]["lock"]["mode"], "compliance", "{rows:?}");
    assert_eq!(rows[1]["lock"]["mode"], "governance", "{rows:?}");

    // Governance for two days, then compliance for three: the first run's
    // versions are not extended (their lock reaches half of the second's),
    // so the snapshot naming them is governance.
    env.write_at("b.txt", "bravo, edited", (1_600_000_200, 0));
    env.backup_ok("modes::g", &["--lock-days", "2"]);
    env.write_at("a.txt", "alpha, again", (1_600_000_300, 0));
    env.backup_ok("modes::g", &["--lock-days", "3", "--lock-mode", "compliance"]);
    assert_eq!(lock_of(&c, "modes", "g/b.txt").0, "GOVERNANCE");
    let rows = snapshot_rows(&env, "modes::g");
    assert_eq!(rows[1]["lock"]["mode"], "governance", "{rows:?}");
}
