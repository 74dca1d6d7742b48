//! Retention: `snapshots forget` with restic's keep rules (local time,
//! `--keep-within` from the newest, `--keep-tag`), `backup --tag`,
//! `snapshots prune` / `forget --prune` (what goes from the content area,
//! and what never does), keep rules saved with a named set, and a prune
//! killed at every request.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::common::*;
use crate::server::S3Server;

const BUCKET: &str = "keep";
const PREFIX: &str = "p";

/// Where a test's backups live: a local directory store, or a bucket of
/// the test server under [`PREFIX`].
enum Place<'a> {
    Local(PathBuf),
    S3(&'a S3Server, aws_sdk_s3::Client),
}

impl Place<'_> {
    fn local(env: &TestEnv) -> Place<'static> {
        let root = env.root().join("store");
        std::fs::create_dir_all(&root).unwrap();
        Place::Local(root)
    }

    fn s3<'a>(server: &'a S3Server) -> Place<'a> {
        if !server.bucket_exists(BUCKET) {
            server.create_bucket(BUCKET);
        }
        Place::S3(server, sdk_client(&server.endpoint()))
    }

    fn target(&self) -> String {
        match self {
            Place::Local(root) => root.to_str().unwrap().to_owned(),
            Place::S3(..) => format!("s3://{BUCKET}/{PREFIX}"),
        }
    }

    /// Where the object `rel` (relative to the target) is on disk.
    fn file(&self, rel: &str) -> PathBuf {
        match self {
            Place::Local(root) => root.join(rel),
            Place::S3(server, _) => server.object_path(BUCKET, &format!("{PREFIX}/{rel}")),
        }
    }

    /// Stores `body` at `rel`, its Last-Modified `age` ago.
    fn put(&self, rel: &str, body: &[u8], age: Duration) {
        match self {
            Place::Local(_) => {
                let p = self.file(rel);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, body).unwrap();
            }
            Place::S3(_, client) => sdk_put(client, BUCKET, &format!("{PREFIX}/{rel}"), body),
        }
        age_file(&self.file(rel), age);
    }

    fn exists(&self, rel: &str) -> bool {
        self.file(rel).is_file()
    }

    /// The keys under `.s3backup/content/`, relative to the target.
    fn content(&self) -> Vec<String> {
        let dir = self.file(".s3backup/content");
        let mut out: Vec<String> = paths_under(&dir)
            .into_iter()
            .filter(|p| dir.join(p).is_file())
            .map(|p| format!(".s3backup/content/{p}"))
            .collect();
        out.sort();
        out
    }

    /// The manifests' file names, sorted.
    fn manifests(&self) -> Vec<String> {
        let dir = self.file(".s3backup/manifests");
        let mut out: Vec<String> = std::fs::read_dir(dir)
            .map(|d| d.map(|e| e.unwrap().file_name().into_string().unwrap()).collect())
            .unwrap_or_default();
        out.retain(|n| n.ends_with(".jsonl.zst"));
        out.sort();
        out
    }

    /// Runs `s3backup ARGS… TARGET EXTRA…` (with the server's endpoint).
    /// `snapshots prune` and `snapshots forget --prune` get `--min-age 0s`
    /// unless EXTRA gives one: what a test puts in the content area is as young
    /// as the command (a local store's objects cannot be aged: their
    /// stored time is the file's change time).
    fn run(&self, env: &TestEnv, args: &[&str], extra: &[&str]) -> Run {
        let mut cmd = env.cmd();
        cmd.args(args).arg(self.target()).arg("--state").arg(&env.state);
        if let Place::S3(server, _) = self {
            cmd.arg("--endpoint-url").arg(server.endpoint());
        }
        let prunes = args.get(1) == Some(&"prune") || extra.contains(&"--prune");
        if args.first() == Some(&"snapshots") && prunes && !extra.contains(&"--min-age") {
            cmd.args(["--min-age", "0s"]);
        }
        cmd.args(extra);
        run(cmd)
    }

    /// As [`Self::run`] with `--json`, which must exit 0: the one JSON object.
    #[track_caller]
    fn json(&self, env: &TestEnv, args: &[&str], extra: &[&str]) -> Value {
        let r = self.run(env, args, &[&["--json"], extra].concat());
        r.expect_code(0);
        serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{}", r.show()))
    }
}

/// Sets a file's mtime `age` ago (the local store's and s3s-fs's Last-Modified).
fn age_file(path: &Path, age: Duration) {
    let when = SystemTime::now() - age;
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

/// The content key of `data` relative to the target.
fn content_rel(data: &[u8]) -> String {
    let h = blake3_hex(data);
    format!(".s3backup/content/{}/{h}", &h[..2])
}

const HOUR: Duration = Duration::from_secs(3600);

/// A hand-made format-2 manifest taken at `created` (RFC 3339, UTC, whole
/// seconds) with `tags`, one file entry per hash: its file name and bytes.
fn handmade(created: &str, n: u32, tags: &[&str], hashes: &[String]) -> (String, Vec<u8>) {
    let header = handmade_header(created, n, tags, hashes.len() as u64);
    let entries: Vec<Value> = hashes
        .iter()
        .enumerate()
        .map(|(i, h)| {
            json!({"path": format!("f{i}"), "type": "file", "size": 1, "mtime_ns": 0,
                   "mode": "644", "blake3": h, "etag": "e"})
        })
        .collect();
    (handmade_name(created, n), encode_manifest(&header, &entries))
}

/// The header [`handmade`] gives a manifest of `files` one-byte files.
fn handmade_header(created: &str, n: u32, tags: &[&str], files: u64) -> Value {
    let mut header = manifest_header(files, files);
    header["format"] = json!(2);
    header["created"] = json!(created);
    header["run_id"] = json!(format!("{n:032x}"));
    header["history"] = json!("auto");
    header["tags"] = json!(tags);
    header
}

/// The object name of [`handmade`]'s manifest.
fn handmade_name(created: &str, n: u32) -> String {
    format!("{}-{n:032x}.jsonl.zst", created.replace(['-', ':'], ""))
}

/// A local store with one backup of `a.txt`, and a content object no
/// snapshot references, stored an hour ago: its key.
fn one_backup_and_an_orphan(env: &TestEnv, place: &Place) -> String {
    env.write("a.txt", "one");
    env.backup_ok(&place.target(), &[]);
    let orphan = content_rel(b"orphan");
    place.put(&orphan, b"orphan", HOUR);
    orphan
}

/// Stores hand-made manifests taken at `times`, without tags or entries.
fn handmade_at(place: &Place, times: &[&str]) -> Vec<String> {
    times
        .iter()
        .zip(1..)
        .map(|(t, n)| {
            let (name, bytes) = handmade(t, n, &[], &[]);
            place.put(&format!(".s3backup/manifests/{name}"), &bytes, HOUR);
            name.trim_end_matches(".jsonl.zst").to_owned()
        })
        .collect()
}

/// `forget … --dry-run --json` with `TZ` set: the IDs it would remove.
fn would_remove(env: &TestEnv, place: &Place, tz: &str, rules: &[&str]) -> Vec<String> {
    let mut cmd = env.cmd();
    cmd.env("TZ", tz)
        .args(["snapshots", "forget"])
        .arg(place.target())
        .args(rules)
        .args(["--dry-run", "--json"]);
    let r = run(cmd);
    r.expect_code(0);
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    v["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// `--keep-daily` buckets by the local day (TZ respected), and
/// `--keep-within` counts back from the newest snapshot, not from now
/// (restic's rule: old backups do not expire because backups stopped).
#[test]
fn keep_daily_buckets_by_local_time_and_keep_within_counts_from_the_newest() {
    let env = TestEnv::new();
    let place = Place::local(&env);
    let ids = handmade_at(
        &place,
        &[
            "2016-01-01T20:00:00Z",
            "2016-01-01T22:00:00Z",
            "2016-01-02T01:00:00Z",
        ],
    );
    // UTC: days 1, 1, 2: the newest of each day stays.
    assert_eq!(
        would_remove(&env, &place, "UTC", &["--keep-daily", "2"]),
        [ids[0].clone()]
    );
    // UTC+3: 23:00 on the 1st, 01:00 and 04:00 on the 2nd.
    assert_eq!(
        would_remove(&env, &place, "Etc/GMT-3", &["--keep-daily", "2"]),
        [ids[1].clone()]
    );
    // Hourly 2 keeps the two newest hours; with slots left at the oldest it stays too.
    assert_eq!(
        would_remove(&env, &place, "UTC", &["--keep-hourly", "2"]),
        [ids[0].clone()]
    );
    assert!(would_remove(&env, &place, "UTC", &["--keep-hourly", "5"]).is_empty());
    assert!(would_remove(&env, &place, "UTC", &["--keep-last", "unlimited"]).is_empty());
    // One a year, however many: the newest of 2016, and the oldest (slots left).
    assert_eq!(
        would_remove(&env, &place, "UTC", &["--keep-yearly", "unlimited"]),
        [ids[1].clone()]
    );

    let env = TestEnv::new();
    let place = Place::local(&env);
    let ids = handmade_at(
        &place,
        &[
            "2016-01-01T00:00:00Z",
            "2016-01-05T00:00:00Z",
            "2016-01-10T00:00:00Z",
        ],
    );
    // Ten years after the newest, 6 days still reach back to the 5th.
    assert_eq!(
        would_remove(&env, &place, "UTC", &["--keep-within", "6d"]),
        [ids[0].clone()]
    );
    assert_eq!(
        would_remove(&env, &place, "UTC", &["--keep-within", "5d"]),
        [ids[0].clone(), ids[1].clone()],
        "strictly after newest − 5d: the 5th is out"
    );
}

/// `backup --tag` labels the snapshot (listed by `snapshots`, table and
/// JSON), and `forget --keep-tag` keeps the tagged ones.
#[test]
fn backup_tags_are_listed_and_kept_by_keep_tag() {
    let env = TestEnv::new();
    // This test replaces or deletes most of a tiny set on purpose (the guard is tested in `guard`).
    let env = env.past_the_guard();
    let place = Place::local(&env);
    let target = place.target();
    env.write("a.txt", "one");
    env.backup_ok(&target, &["--tag", "release", "--tag", "v1"]);
    env.write("a.txt", "two");
    env.backup_ok(&target, &["--tag", "v1"]);
    env.write("a.txt", "three");
    env.backup_ok(&target, &[]);
    let r = env.snapshots(&target, &["--json"]);
    r.expect_code(0);
    let list: Vec<Value> = serde_json::from_str(r.stdout.trim()).unwrap();
    let tags: Vec<&Value> = list.iter().map(|s| &s["tags"]).collect();
    assert_eq!(tags, [&json!(["release", "v1"]), &json!(["v1"]), &json!([])]);
    let r = env.snapshots(&target, &[]);
    r.expect_code(0);
    assert!(r.stdout.contains("[release, v1]"), "{}", r.show());
    let ids: Vec<String> = list
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();

    // Both tags of a list are needed; any list keeps.
    let v = place.json(
        &env,
        &["snapshots", "forget"],
        &["--keep-tag", "release,v1", "--keep-last", "1"],
    );
    assert_eq!(v["removed"], json!([ids[1]]), "{v}");
    assert_eq!(place.manifests().len(), 2);

    let r = env.backup(&target, &["--tag", "a,b"]);
    r.expect_code(2);
    assert!(r.error_line().contains("comma"), "{}", r.show());
    let r = env.backup(&target, &["--tag", ""]);
    r.expect_code(2);
}

/// Two real backups (a.txt "one" then "two"), the content area holding
/// "one" (as a backup keeps it), an orphan and a stray; then prune and
/// forget --prune, dry and real.
fn prune_leaves_exactly_what_kept_snapshots_need(env: &TestEnv, place: &Place) {
    let target = place.target();
    env.write("a.txt", "one").write("same.txt", "same");
    env.backup_ok(&target, &[]);
    env.write("a.txt", "two");
    env.backup_ok(&target, &[]);
    let kept_one = content_rel(b"one");
    let orphan = content_rel(b"nobody needs this");
    let stray = ".s3backup/content/zz/readme.txt";
    place.put(&kept_one, b"one", HOUR);
    place.put(&orphan, b"nobody needs this", HOUR);
    place.put(stray, b"not a content key", HOUR);
    let before = place.content();

    // A plain prune keeps every snapshot: only the orphan goes.
    let v = place.json(env, &["snapshots", "prune"], &["--dry-run"]);
    assert_eq!(v["dry_run"], true, "{v}");
    assert_eq!(v["deleted_objects"], 1, "{v}");
    assert_eq!(v["deleted_bytes"], 17, "{v}");
    assert_eq!(
        v["deleted"][0]["key"],
        format!("{}{orphan}", key_prefix(place)),
        "{v}"
    );
    assert_eq!(v["kept_objects"], 1, "{v}");
    assert_eq!(v["other_objects"], 1, "{v}");
    let r = place.run(env, &["snapshots", "prune"], &["--dry-run"]);
    r.expect_code(0);
    assert!(
        r.stdout.contains("would delete 1 content object(s), 17 B freed"),
        "{}",
        r.show()
    );
    assert!(r.stdout.contains(&orphan), "{}", r.show());
    assert_eq!(place.content(), before, "a dry run deletes nothing");

    // Forgetting the first snapshot frees "one" too (dry run first).
    let v = place.json(
        env,
        &["snapshots", "forget"],
        &["--keep-last", "1", "--prune", "--dry-run"],
    );
    assert_eq!(v["removed"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["prune"]["deleted_objects"], 2, "{v}");
    assert_eq!(v["prune"]["deleted_bytes"], 20, "{v}");
    assert_eq!(place.content(), before);
    assert_eq!(place.manifests().len(), 2);

    let v = place.json(env, &["snapshots", "forget"], &["--keep-last", "1", "--prune"]);
    assert_eq!(v["prune"]["dry_run"], false, "{v}");
    assert_eq!(v["prune"]["deleted_objects"], 2, "{v}");
    assert_eq!(v["prune"]["kept_objects"], 0, "{v}");
    assert_eq!(place.content(), [stray.to_owned()], "only the stray is left");
    assert_eq!(place.manifests().len(), 1);
    assert!(
        place.exists("a.txt") && place.exists("same.txt"),
        "live objects stay"
    );
    let dest = env.root().join("restored");
    let mut cmd = env.cmd();
    cmd.arg("restore").arg(&target).arg(&dest);
    if let Place::S3(server, _) = place {
        cmd.arg("--endpoint-url").arg(server.endpoint());
    }
    run(cmd).expect_code(0);
    assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"two");
    // Nothing more to prune.
    let v = place.json(env, &["snapshots", "prune"], &[]);
    assert_eq!(v["deleted_objects"], 0, "{v}");
}

/// The key prefix of the target in listings ("" for a local store).
fn key_prefix(place: &Place) -> String {
    match place {
        Place::Local(_) => String::new(),
        Place::S3(..) => format!("{PREFIX}/"),
    }
}

#[test]
fn prune_in_a_local_store_leaves_exactly_what_kept_snapshots_need() {
    let env = TestEnv::new();
    prune_leaves_exactly_what_kept_snapshots_need(&env, &Place::local(&env));
}

#[test]
fn prune_on_s3_leaves_exactly_what_kept_snapshots_need() {
    let server = S3Server::start();
    let env = TestEnv::with_server(&server);
    let place = Place::s3(&server);
    prune_leaves_exactly_what_kept_snapshots_need(&env, &place);
    // One listing of the content area per prune, deletes one by one.
    server.clear_requests();
    place.put(&content_rel(b"x"), b"x", HOUR);
    place.put(&content_rel(b"y"), b"y", HOUR);
    server.clear_requests();
    let v = place.json(&env, &["snapshots", "prune"], &["--jobs", "2"]);
    assert_eq!(v["deleted_objects"], 2, "{v}");
    let content_lists = server
        .requests()
        .iter()
        .filter(|r| r.op == "ListObjectsV2" && r.query.contains("content"))
        .count();
    assert_eq!(content_lists, 1, "{:?}", server.ops());
    assert_eq!(server.count("DeleteObject"), 2, "{:?}", server.ops());
}

/// Content stored less than `--min-age` (default 15 minutes) before the
/// prune's start stays, referenced or not: a backup may be copying it in.
#[test]
fn prune_keeps_content_younger_than_its_min_age() {
    let server = S3Server::start();
    let env = TestEnv::with_server(&server);
    let place = Place::s3(&server);
    env.write("a.txt", "one");
    env.backup_ok(&place.target(), &[]);
    let fresh = content_rel(b"just copied in");
    place.put(&fresh, b"just copied in", Duration::from_secs(60));
    let old = content_rel(b"old orphan");
    place.put(&old, b"old orphan", HOUR);
    let v = place.json(&env, &["snapshots", "prune"], &["--min-age", "15m"]);
    assert_eq!(v["deleted_objects"], 1, "{v}");
    assert_eq!(v["kept_new"], 1, "{v}");
    assert!(place.exists(&fresh));
    assert!(!place.exists(&old));
    let v = place.json(&env, &["snapshots", "prune"], &["--min-age", "30s"]);
    assert_eq!(v["deleted_objects"], 1, "{v}");
    assert!(!place.exists(&fresh));

    // A local store judges by the file's change time: content put there
    // just now stays under the default.
    let env = TestEnv::new();
    let place = Place::local(&env);
    env.write("a.txt", "one");
    env.backup_ok(&place.target(), &[]);
    place.put(&fresh, b"just copied in", HOUR);
    let v = place.json(&env, &["snapshots", "prune"], &["--min-age", "15m"]);
    assert_eq!(
        (v["deleted_objects"].as_u64(), v["kept_new"].as_u64()),
        (Some(0), Some(1)),
        "{v}"
    );
    let v = place.json(&env, &["snapshots", "prune"], &[]);
    assert_eq!(v["deleted_objects"], 1, "with --min-age 0s: {v}");
}

/// Content copied in after the prune started is never deleted, even with
/// `--min-age 0s` and no snapshot listing it yet.
#[test]
fn prune_never_deletes_content_stored_after_its_start() {
    let server = S3Server::start();
    let env = TestEnv::with_server(&server);
    let place = Place::s3(&server);
    let (name, bytes) = handmade("2020-01-01T00:00:00Z", 1, &[], &[]);
    place.put(&format!(".s3backup/manifests/{name}"), &bytes, HOUR);
    let old = content_rel(b"old orphan");
    place.put(&old, b"old orphan", HOUR);
    server.hold_replies(&name);
    server.clear_requests();
    let mut cmd = env.cmd();
    cmd.args(["snapshots", "prune"])
        .arg(place.target())
        .args(["--json", "--min-age", "0s", "--endpoint-url", &server.endpoint()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    assert!(
        server.wait_for_matching(1, Duration::from_secs(30), |r| r.op == "GetObject"
            && r.key.as_deref().is_some_and(|k| k.contains(&name))),
        "the prune reads the manifest"
    );
    // A backup elsewhere copies content in while the prune runs.
    let fresh = content_rel(b"copied in meanwhile");
    place.put(&fresh, b"copied in meanwhile", Duration::ZERO);
    age_file(&place.file(&fresh), Duration::ZERO);
    server.release_replies();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["deleted_objects"], 1, "{v}");
    assert_eq!(v["kept_new"], 1, "{v}");
    assert!(place.exists(&fresh));
    assert!(!place.exists(&old));
}

/// A damaged snapshot's references cannot be read: a prune refuses (exit
/// 1, nothing deleted) until it is forgotten by ID.
#[test]
fn prune_refuses_while_a_damaged_snapshot_is_kept() {
    let env = TestEnv::new();
    let place = Place::local(&env);
    let orphan = one_backup_and_an_orphan(&env, &place);
    let bad = ".s3backup/manifests/20200101T000000Z-00000000000000000000000000000bad.jsonl.zst";
    place.put(bad, b"not zstd", HOUR);
    let r = place.run(&env, &["snapshots", "prune"], &[]);
    r.expect_code(1);
    assert!(r.error_line().contains("cannot prune"), "{}", r.show());
    assert!(r.error_line().contains("forget it by ID"), "{}", r.show());
    assert!(place.exists(&orphan));
    let r = place.run(&env, &["snapshots", "forget"], &["--keep-last", "1", "--prune"]);
    r.expect_code(1);
    assert!(place.exists(&orphan) && place.exists(bad), "nothing removed");
    let v = place.json(
        &env,
        &["snapshots", "forget"],
        &["20200101T000000Z-00000000000000000000000000000bad", "--prune"],
    );
    assert_eq!(v["prune"]["deleted_objects"], 1, "{v}");
    assert!(!place.exists(&orphan));
}

/// A kept snapshot with one line that cannot be read: what it references
/// is unknown, so a prune deletes nothing and says the way out (forget it
/// by ID); once forgotten, the prune goes ahead.
#[test]
fn prune_refuses_over_one_unreadable_line_and_names_the_way_out() {
    let env = TestEnv::new();
    let place = Place::local(&env);
    let orphan = one_backup_and_an_orphan(&env, &place);
    let name = handmade_name("2020-01-01T00:00:00Z", 7);
    let header = handmade_header("2020-01-01T00:00:00Z", 7, &[], 1);
    let text = format!("{header}\n{{\"path\": broken\n");
    place.put(
        &format!(".s3backup/manifests/{name}"),
        &zstd::encode_all(text.as_bytes(), 3).unwrap(),
        HOUR,
    );
    let r = place.run(&env, &["snapshots", "prune"], &[]);
    r.expect_code(1);
    let line = r.error_line();
    assert!(
        line.contains("cannot prune") && line.contains("forget it by ID"),
        "{}",
        r.show()
    );
    assert!(place.exists(&orphan), "nothing deleted");
    let id = name.trim_end_matches(".jsonl.zst");
    let v = place.json(&env, &["snapshots", "forget"], &[id, "--prune"]);
    assert_eq!(v["prune"]["deleted_objects"], 1, "{v}");
    assert!(!place.exists(&orphan));
}

/// A snapshot written while the prune runs (another machine's backup)
/// keeps what it references: the manifests are listed again before deleting.
#[test]
fn prune_counts_a_snapshot_written_while_it_runs() {
    let server = S3Server::start();
    let env = TestEnv::with_server(&server);
    let place = Place::s3(&server);
    let (name, bytes) = handmade("2020-01-01T00:00:00Z", 1, &[], &[]);
    place.put(&format!(".s3backup/manifests/{name}"), &bytes, HOUR);
    let needed = content_rel(b"needed by the newcomer");
    place.put(&needed, b"needed by the newcomer", HOUR);
    let orphan = content_rel(b"orphan");
    place.put(&orphan, b"orphan", HOUR);
    // Hold the first read of the existing manifest: the prune has listed
    // the manifests once, and waits.
    server.hold_replies(&name);
    server.clear_requests();
    let mut cmd = env.cmd();
    cmd.args(["snapshots", "prune"])
        .arg(place.target())
        .args(["--json", "--endpoint-url", &server.endpoint()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    assert!(
        server.wait_for_matching(1, Duration::from_secs(30), |r| r.op == "GetObject"
            && r.key.as_deref().is_some_and(|k| k.contains(&name))),
        "the prune reads the manifest"
    );
    let newcomer = handmade(
        "2020-01-02T00:00:00Z",
        2,
        &[],
        &[blake3_hex(b"needed by the newcomer")],
    );
    place.put(
        &format!(".s3backup/manifests/{}", newcomer.0),
        &newcomer.1,
        Duration::ZERO,
    );
    server.release_replies();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["snapshots_read"], 2, "{v}");
    assert_eq!(v["deleted_objects"], 1, "{v}");
    assert!(place.exists(&needed), "the newcomer's content stays");
    assert!(!place.exists(&orphan));
}

/// `backup SRC TGT --set NAME --keep-last 2 --prune` saves the rules;
/// each `backup --set NAME` then forgets and prunes after it (its JSON
/// says what); `--no-keep` skips them once; `--keep-*` without `--set`
/// applies once and is not remembered.
#[test]
fn named_set_saves_keep_rules_and_applies_them_after_each_run() {
    let env = TestEnv::new();
    // This test replaces or deletes most of a tiny set on purpose (the guard is tested in `guard`).
    let env = env.past_the_guard();
    let place = Place::local(&env);
    let target = place.target();
    env.write("a.txt", "v0");
    let r = env.backup(
        &target,
        &["--set", "docs", "--keep-last", "2", "--prune", "--json"],
    );
    r.expect_code(0);
    let set_run = |extra: &[&str]| -> Value {
        let mut cmd = env.cmd();
        cmd.args(["backup", "--set", "docs", "--json", "--state"])
            .arg(&env.state)
            .args(extra);
        let r = run(cmd);
        r.expect_code(0);
        serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{}", r.show()))
    };
    env.write("a.txt", "v1");
    let v = set_run(&[]);
    assert_eq!(v["retention"]["removed"], json!([]), "{v}");
    assert_eq!(v["retention"]["policy"], "keep the last 2", "{v}");
    assert_eq!(place.manifests().len(), 2);
    let orphan = content_rel(b"orphan");
    place.put(&orphan, b"orphan", HOUR);
    env.write("a.txt", "v2");
    let v = set_run(&[]);
    assert_eq!(v["retention"]["removed"].as_array().unwrap().len(), 1, "{v}");
    // The prune ran: what was stored in the last 15 minutes (the orphan,
    // the copies this test's runs made) stays until a later one.
    assert_eq!(v["retention"]["prune"]["deleted_objects"], 0, "{v}");
    assert!(v["retention"]["prune"]["kept_new"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(place.manifests().len(), 2);
    assert!(place.exists(&orphan));
    let v = place.json(&env, &["snapshots", "prune"], &[]);
    assert!(
        v["deleted_objects"].as_u64().unwrap() >= 2,
        "the orphan and v0's copy: {v}"
    );
    assert!(!place.exists(&orphan));
    // --no-keep: this run only, nothing forgotten.
    env.write("a.txt", "v3");
    let v = set_run(&["--no-keep"]);
    assert!(v.get("retention").is_none(), "{v}");
    assert_eq!(place.manifests().len(), 3);
    // A typed rule wins for this run.
    env.write("a.txt", "v4");
    let v = set_run(&["--keep-last", "1"]);
    assert_eq!(v["retention"]["removed"].as_array().unwrap().len(), 3, "{v}");
    assert_eq!(place.manifests().len(), 1);
    // Unnamed: applied once, not remembered.
    let other = env.root().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let other = other.to_str().unwrap();
    env.backup_ok(other, &[]);
    env.write("a.txt", "v5");
    env.backup_ok(other, &[]);
    // (An unchanged run writes no snapshot; the rules still apply.)
    let r = env.backup(other, &["--keep-last", "1", "--json"]);
    r.expect_code(0);
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["retention"]["removed"].as_array().unwrap().len(), 1, "{v}");
    env.write("a.txt", "v6");
    let r = env.backup(other, &["--json"]);
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert!(v.get("retention").is_none(), "{v}");
    // The text summary says it too.
    env.write("a.txt", "v7");
    let r = env.backup(other, &["--keep-last", "1"]);
    r.expect_code(0);
    assert!(r.stdout.contains("retention: keep the last 1"), "{}", r.show());
    assert!(r.stdout.contains("removed 2 snapshot(s), kept 1"), "{}", r.show());
}

/// The content keys (relative to the target) the manifests left in the
/// store list, of those in `area`.
fn needed(place: &Place, area: &[String]) -> Vec<String> {
    let mut want = std::collections::BTreeSet::new();
    for name in place.manifests() {
        let bytes = std::fs::read(place.file(&format!(".s3backup/manifests/{name}"))).unwrap();
        let text = String::from_utf8(zstd::decode_all(&bytes[..]).unwrap()).unwrap();
        for line in text.lines().skip(1) {
            let e: Value = serde_json::from_str(line).unwrap();
            if let Some(h) = e["blake3"].as_str().filter(|h| !h.is_empty()) {
                want.insert(format!(".s3backup/content/{}/{h}", &h[..2]));
            }
        }
    }
    area.iter().filter(|k| want.contains(*k)).cloned().collect()
}

/// Real backups with edits, a rename and a deletion between them keep the
/// old content in the content area; forgetting with `--prune` then leaves
/// exactly what the kept snapshots list, and the newest still restores.
fn backups_then_forget_prune_leave_exactly_what_kept_snapshots_need(env: &TestEnv, place: &Place) {
    let target = place.target();
    env.write("a.txt", "a first")
        .write("b.txt", "b stays the same")
        .write("c.txt", "c is deleted");
    env.backup_ok(&target, &["--delete"]);
    env.write("a.txt", "a second")
        .rename("b.txt", "b-renamed.txt")
        .remove("c.txt");
    env.backup_ok(&target, &["--delete"]);
    env.write("a.txt", "a third, the newest");
    env.backup_ok(&target, &["--delete"]);
    let area = place.content();
    for kept in [&b"a first"[..], b"a second", b"c is deleted"] {
        assert!(
            area.contains(&content_rel(kept)),
            "the backups kept {kept:?}: {area:?}"
        );
    }
    // Copies made just now are younger than the prune's clock margin: age them.
    for rel in &area {
        age_file(&place.file(rel), HOUR);
    }
    let v = place.json(env, &["snapshots", "forget"], &["--keep-last", "2", "--prune"]);
    assert_eq!(v["removed"].as_array().unwrap().len(), 1, "{v}");
    let left = place.content();
    assert_eq!(left, needed(place, &area), "{v}");
    assert!(!left.contains(&content_rel(b"a first")) && !left.contains(&content_rel(b"c is deleted")));
    assert!(
        left.contains(&content_rel(b"a second")),
        "the second snapshot still needs it"
    );
    assert_eq!(
        v["prune"]["deleted_objects"],
        (area.len() - left.len()) as u64,
        "{v}"
    );

    let v = place.json(env, &["snapshots", "forget"], &["--keep-last", "1", "--prune"]);
    assert_eq!(v["removed"].as_array().unwrap().len(), 1, "{v}");
    let last = place.content();
    assert_eq!(last, needed(place, &area));
    assert!(!last.contains(&content_rel(b"a second")));
    let dest = env.root().join("restored");
    let mut cmd = env.cmd();
    cmd.arg("restore").arg(&target).arg(&dest);
    if let Place::S3(server, _) = place {
        cmd.arg("--endpoint-url").arg(server.endpoint());
    }
    run(cmd).expect_code(0);
    assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"a third, the newest");
    assert_eq!(
        std::fs::read(dest.join("b-renamed.txt")).unwrap(),
        b"b stays the same"
    );
    assert!(!dest.join("c.txt").exists());
}

#[test]
fn backups_then_forget_prune_in_a_local_store_leave_exactly_what_kept_snapshots_need() {
    let env = TestEnv::new().past_the_guard(); // This test replaces or deletes most of a tiny set on purpose (the guard is tested in `guard`).
    backups_then_forget_prune_leave_exactly_what_kept_snapshots_need(&env, &Place::local(&env));
}

#[test]
fn backups_then_forget_prune_on_s3_leave_exactly_what_kept_snapshots_need() {
    let server = S3Server::start();
    let env = TestEnv::with_server(&server).past_the_guard(); // This test replaces or deletes most of a tiny set on purpose (the guard is tested in `guard`).
    backups_then_forget_prune_leave_exactly_what_kept_snapshots_need(&env, &Place::s3(&server));
}

/// Bad keep rules, tags and ages are refused with one line naming the
/// flag (exit 2), before the store is touched.
#[test]
fn keep_rules_tags_and_ages_refuse_bad_values() {
    let env = TestEnv::new();
    let place = Place::local(&env);
    let store = place.target();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["snapshots", "forget", &store, "--keep-daily", "-1"],
            &["'-1' is negative", "--keep-daily"],
        ),
        (
            &["snapshots", "forget", &store, "--keep-weekly", "lots"],
            &["'lots'", "--keep-weekly"],
        ),
        (
            &["snapshots", "forget", &store, "--keep-tag", "a,,b"],
            &["empty tag", "--keep-tag"],
        ),
        (
            &["snapshots", "forget", &store, "--prune"],
            &["not provided", "--keep-daily"],
        ),
        (
            &["snapshots", "prune", &store, "--min-age", "-5m"],
            &["negative", "--min-age"],
        ),
        (&["snapshots", "prune"], &["not provided", "<TARGET>"]),
        (
            &[
                "snapshots",
                "forget",
                &store,
                "--keep-last",
                "1",
                "--min-age",
                "1h",
            ],
            &["--min-age", "needs --prune"],
        ),
        (&["backup", "src", &store, "--tag", "a,b"], &["comma", "--tag"]),
    ];
    for (args, needles) in cases {
        let mut cmd = env.cmd();
        cmd.args(*args);
        let r = run(cmd);
        r.expect_code(2);
        assert!(r.stdout.is_empty(), "{}", r.show());
        let first = r.stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with("error: "), "{}", r.show());
        for n in *needles {
            assert!(first.contains(n), "{args:?}: {n}\n{}", r.show());
        }
    }
    assert!(place.manifests().is_empty() && place.content().is_empty());
}
