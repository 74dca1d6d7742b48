//! s3backup against a real distributed store: a three-node Garage cluster
//! (`garage`, replication factor 3) on 127.0.0.1. A full backup and
//! restore with an edit, a rename (a server-side copy) and a deletion
//! between runs, older snapshots restored from the kept history (Garage
//! has no bucket versioning), `verify --deep`; a backup during which a
//! peer node is killed with SIGKILL (quorum writes carry it), then a
//! restore and a deep verify with that node still down; a backup whose
//! own node is killed (it fails cleanly, records nothing the store does
//! not hold, and the next run completes); and a multipart upload resumed
//! after the client itself was killed. Skipped with a printed reason when
//! Garage is not installed; failing under `CI=true`.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Run, TestEnv, noise, run, tree};
use crate::garage::{BUCKET, Garage, REGION};

const TARGET: &str = "backups::pc";
/// Uploads of every test here are sent in parts from this size on.
const PART: &str = "5MiB";

/// An environment talking to node `node` of `g`.
fn env_on(g: &Garage, node: usize) -> TestEnv {
    TestEnv::with_endpoint(&g.endpoint(node)).past_the_guard()
}

/// The backup options every run here uses: Garage's region, small parts.
fn opts<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "--region",
        REGION,
        "--multipart-threshold",
        PART,
        "--part-size",
        PART,
    ];
    v.extend_from_slice(extra);
    v
}

/// `s3backup verify TARGET --deep --json` through `env`'s node.
fn verify_deep(env: &TestEnv, snapshot: Option<&str>) -> Run {
    let mut cmd = env.cmd();
    cmd.args(["verify", TARGET, "--deep", "--json", "--region", REGION])
        .arg("--endpoint-url")
        .arg(env.endpoint.as_deref().unwrap())
        .arg("--state")
        .arg(&env.state);
    if let Some(id) = snapshot {
        cmd.args(["--snapshot", id]);
    }
    run(cmd)
}

/// Restores `snapshot` (or the latest) into a new directory under the
/// environment and returns its tree.
fn restored(env: &TestEnv, dest: &str, snapshot: Option<&str>) -> BTreeMap<String, crate::common::Node> {
    let dest = env.root().join(dest);
    let mut args = vec!["--region", REGION];
    if let Some(id) = snapshot {
        args.extend(["--snapshot", id]);
    }
    env.restore_ok(TARGET, &dest, &args);
    tree(&dest)
}

/// Starts a backup in the background (its output discarded).
fn spawn_backup(env: &TestEnv, extra: &[&str]) -> Child {
    let mut cmd: Command = env.backup_cmd(TARGET, &opts(extra));
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    cmd.spawn().expect("spawn s3backup")
}

/// Waits until `pred` holds of the cluster (polled every 50 ms), or panics.
fn wait_for(g: &Garage, what: &str, pred: impl Fn(&Garage) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pred(g) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            g.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for a spawned run and returns its exit code and stderr.
fn finish(child: Child) -> (i32, String) {
    let out = child.wait_with_output().expect("wait for s3backup");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The files of the set the state records (`state files --json`): path -> blake3.
fn state_files(env: &TestEnv) -> BTreeMap<String, String> {
    let mut cmd = env.cmd();
    cmd.args(["state", "files", "--json", "--state"]).arg(&env.state);
    let r = run(cmd);
    r.expect_code(0);
    // One JSON object per line.
    r.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            (
                f["path"].as_str().unwrap().to_owned(),
                f["blake3"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The snapshot IDs of [`TARGET`], oldest first (`snapshots --json`).
fn snapshot_ids(env: &TestEnv) -> Vec<String> {
    let r = env.snapshots(TARGET, &["--json", "--region", REGION]);
    r.expect_code(0);
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{}", r.show()));
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A tree of `n` files of `size` bytes each under `dir/`.
fn many_files(env: &TestEnv, dir: &str, n: usize, size: usize) {
    for i in 0..n {
        env.write(&format!("{dir}/f{i:04}.bin"), noise(size, i as u64 + 1));
    }
}

#[test]
fn backup_restore_rename_history_and_deep_verify_on_a_three_node_cluster() {
    let Some(g) = Garage::start("garage_cluster::backup_restore") else {
        return;
    };
    let env = env_on(&g, 0);
    env.write("notes.txt", "first words\n")
        .write("dir/photo.jpg", noise(200_000, 7))
        .write("big.iso", noise(12 * 1024 * 1024 + 17, 8))
        .write("gone.txt", "deleted before the second run\n")
        .symlink("notes.txt", "link");
    let first = env.backup_ok(TARGET, &opts(&[]));
    assert_eq!(first.uploaded, 5, "{first:?}");
    let tree1 = tree(&env.src);
    assert_eq!(restored(&env, "r1", None), tree1);

    // An edit, a rename (a server-side copy, nothing sent again) and a deletion.
    env.write_at("notes.txt", "second words, longer\n", (1_700_000_500, 0))
        .rename("dir/photo.jpg", "moved/photo.jpg")
        .remove("gone.txt");
    let second = env.backup_ok(TARGET, &opts(&["--delete"]));
    assert_eq!(
        (second.uploaded, second.copied, second.deleted),
        (1, 1, 2),
        "{second:?}"
    );
    assert!(second.bytes_sent < 1000, "the rename was sent again: {second:?}");
    let tree2 = tree(&env.src);
    assert_eq!(restored(&env, "r2", None), tree2);

    // Garage has no versioning: the first snapshot comes back from the
    // content the second run kept before replacing and deleting.
    let snaps = snapshot_ids(&env);
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    assert_eq!(restored(&env, "r1-again", Some(&snaps[0])), tree1);

    for id in [None, Some(snaps[0].as_str())] {
        let r = verify_deep(&env, id);
        r.expect_code(0);
        let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
        assert_eq!(v["mismatched"], 0, "{}", r.show());
        assert_eq!(v["missing"], 0, "{}", r.show());
    }

    // An unchanged re-run asks the store one question.
    let third = env.backup_ok(TARGET, &opts(&[]));
    assert_eq!(third.uploaded + third.copied + third.deleted, 0, "{third:?}");
}

#[test]
fn a_peer_node_killed_mid_backup_the_run_completes_and_restores_with_the_node_down() {
    let Some(mut g) = Garage::start("garage_cluster::peer_killed") else {
        return;
    };
    let env = env_on(&g, 0);
    many_files(&env, "data", 240, 40_000);
    // Paced, so the node dies while the run is in full swing.
    let child = spawn_backup(&env, &["--max-bandwidth", "2MiB", "--json"]);
    wait_for(&g, "the first uploads", |g| g.keys(0, BUCKET).len() >= 40);
    g.kill(2);
    let (code, stderr) = finish(child);
    assert_eq!(
        code,
        0,
        "a backup with one of three nodes down must complete:\n{stderr}\n{}",
        g.logs()
    );
    assert!(g.keys(0, BUCKET).len() >= 240);

    // With the node still down: a restore and a deep verify through another node.
    let via1 = TestEnv::with_endpoint(&g.endpoint(1));
    let dest = via1.root().join("restored");
    via1.restore_ok(TARGET, &dest, &["--region", REGION]);
    assert_eq!(tree(&dest), tree(&env.src));
    let r = verify_deep(&env, None);
    r.expect_code(0);

    // The node comes back; the next run has nothing to do.
    g.restart(2);
    let again = env.backup_ok(TARGET, &opts(&[]));
    assert_eq!((again.uploaded, again.failed), (0, 0), "{again:?}");
}

#[test]
fn the_node_a_backup_talks_to_killed_mid_run_fails_cleanly_and_the_next_run_completes() {
    let Some(mut g) = Garage::start("garage_cluster::own_node_killed") else {
        return;
    };
    let env = env_on(&g, 0);
    many_files(&env, "data", 120, 40_000);
    let child = spawn_backup(
        &env,
        &[
            "--max-bandwidth",
            "2MiB",
            "--connect-timeout",
            "2",
            "--read-timeout",
            "5",
        ],
    );
    wait_for(&g, "the first uploads", |g| g.keys(1, BUCKET).len() >= 40);
    g.kill(0);
    let (code, stderr) = finish(child);
    assert!(
        code == 1 || code == 3,
        "a backup whose store went away must fail (exit 1 or 3), not {code}:\n{stderr}"
    );
    let first_error = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(
        first_error.contains("cannot reach the endpoint"),
        "the error says the store went away: {first_error}\n{stderr}"
    );

    // Nothing recorded that the store does not hold: every row's object is
    // there (read through a live node), with the content recorded.
    let held = g.keys(1, BUCKET);
    for (path, _) in state_files(&env) {
        assert!(
            held.iter().any(|k| k == &format!("pc/{path}")),
            "the state records {path}, which the store does not hold"
        );
    }

    g.restart(0);
    let done = env.backup_ok(TARGET, &opts(&[]));
    assert_eq!(done.failed, 0, "{done:?}");
    assert_eq!(restored(&env, "after", None), tree(&env.src));
    verify_deep(&env, None).expect_code(0);
}

#[test]
fn a_multipart_upload_resumes_after_the_client_is_killed() {
    let Some(g) = Garage::start("garage_cluster::multipart_resume") else {
        return;
    };
    let env = env_on(&g, 0);
    env.write("disk.img", noise(30 * 1024 * 1024, 3));
    let mut child = spawn_backup(&env, &["--max-bandwidth", "4MiB"]);
    // Killed once Garage holds two parts of the upload.
    let client = g.client(0);
    wait_for(&g, "two parts of the upload", |_| parts_held(&client) >= 2);
    child.kill().unwrap();
    let _ = child.wait();

    let r = env.backup(TARGET, &opts(&["--json"]));
    r.expect_code(0);
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let parts = v["requests"]["multipart_parts"].as_u64().unwrap();
    assert!(
        parts <= 4,
        "the resumed run sent {parts} of the 6 parts: those Garage held were sent again\n{}",
        r.show()
    );
    assert_eq!(restored(&env, "r", None), tree(&env.src));
    verify_deep(&env, None).expect_code(0);
    assert!(parts_held(&client) == 0, "an unfinished upload was left behind");
}

/// Parts of the multipart uploads open in [`BUCKET`].
fn parts_held(client: &aws_sdk_s3::Client) -> usize {
    crate::common::block_on(async {
        let Ok(ups) = client.list_multipart_uploads().bucket(BUCKET).send().await else {
            return 0;
        };
        let mut n = 0;
        for u in ups.uploads() {
            let (Some(key), Some(id)) = (u.key(), u.upload_id()) else {
                continue;
            };
            if let Ok(p) = client
                .list_parts()
                .bucket(BUCKET)
                .key(key)
                .upload_id(id)
                .send()
                .await
            {
                n += p.parts().len();
            }
        }
        n
    })
}

#[test]
fn a_wrong_region_is_named_with_the_region_to_pass() {
    let Some(g) = Garage::start("garage_cluster::wrong_region") else {
        return;
    };
    let env = env_on(&g, 0);
    env.write("a.txt", "a\n");
    // Garage checks the region of every signature; a HEAD answer has no
    // body to say so, and "HTTP 400" alone left the user guessing.
    for r in [env.backup(TARGET, &[]), env.snapshots(TARGET, &[])] {
        r.expect_code(1);
        assert!(
            r.error_line()
                .ends_with("bucket 'backups' is in region 'garage', not 'us-east-1': pass --region garage"),
            "{}",
            r.show()
        );
    }
    assert!(g.keys(0, BUCKET).is_empty(), "a refused run wrote to the bucket");
}

#[test]
fn garage_keeps_and_answers_checksums_and_object_lock_is_refused_there() {
    let Some(g) = Garage::start("garage_cluster::checksums_and_lock") else {
        return;
    };
    let env = env_on(&g, 0);
    env.write("small.txt", "checked at rest\n")
        .write("big.iso", noise(11 * 1024 * 1024, 5));
    env.backup_ok(TARGET, &opts(&["--checksum-algorithm", "crc64nvme"]));

    // One HEAD per file in checksum mode, no body: Garage keeps the value.
    let mut cmd = env.cmd();
    cmd.args(["verify", TARGET, "--checksums", "--json", "--region", REGION])
        .arg("--endpoint-url")
        .arg(env.endpoint.as_deref().unwrap())
        .arg("--state")
        .arg(&env.state);
    let r = run(cmd);
    r.expect_code(0);
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(
        (v["mismatched"].as_u64(), v["missing"].as_u64()),
        (Some(0), Some(0)),
        "{}",
        r.show()
    );
    assert!(
        v["ok"].as_u64().unwrap() >= 1 && v["requests"]["get"].as_u64() == Some(1),
        "checked by checksum, only the manifest read: {}",
        r.show()
    );

    // A rename of a file copied in parts, and SHA-256 (composite) in parts:
    // Garage refused their completion while it named a checksum type
    // without a value, on every run.
    env.rename("big.iso", "moved.iso");
    let moved = env.backup_ok(
        TARGET,
        &opts(&[
            "--checksum-algorithm",
            "crc64nvme",
            "--copy-cutoff",
            PART,
            "--delete",
        ]),
    );
    assert_eq!((moved.copied, moved.failed), (1, 0), "{moved:?}");
    let sha = TestEnv::with_endpoint(&g.endpoint(1)).past_the_guard();
    sha.write("big.iso", noise(11 * 1024 * 1024, 6));
    let s = sha.backup_ok("backups::sha", &opts(&["--checksum-algorithm", "sha256"]));
    assert_eq!((s.uploaded, s.failed), (1, 0), "{s:?}");

    // Garage has no Object Lock (GetObjectLockConfiguration: 501) and
    // takes the lock headers of a PutObject without keeping them: a run
    // asking for a lock there is refused before it writes anything.
    let before = g.keys(0, BUCKET);
    env.write("new.txt", "would be unlocked\n");
    let r = env.backup(TARGET, &opts(&["--lock-days", "7"]));
    r.expect_code(1);
    assert!(r.error_line().contains("Object Lock"), "{}", r.show());
    assert_eq!(g.keys(0, BUCKET), before, "a refused run wrote to the bucket");
}
