//! Crash safety of retention: `snapshots forget --keep-last 2 --prune`
//! killed with SIGKILL at every one of its requests (counted, never timed:
//! when the Nth request reaches the test server, or when the server has
//! answered N of them, as `crash` does for backups) must never leave a
//! kept snapshot referencing a deleted content object, and the same
//! command run again must finish with exactly what the kept snapshots need.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::common::*;
use crate::server::S3Server;

const BUCKET: &str = "prunecrash";
/// Snapshots in each trial's fixture; the newest two are kept.
const SNAPSHOTS: u32 = 5;
/// Unreferenced content objects in each trial's fixture.
const ORPHANS: u32 = 6;

/// The content every snapshot lists, snapshot `i`'s own, and an orphan.
fn shared() -> Vec<u8> {
    b"in every snapshot".to_vec()
}
fn own(i: u32) -> Vec<u8> {
    format!("only in snapshot {i}").into_bytes()
}
fn orphan(i: u32) -> Vec<u8> {
    format!("orphan {i}").into_bytes()
}

/// A hand-made format-2 manifest name and bytes for snapshot `i`.
fn manifest(i: u32) -> (String, Vec<u8>) {
    let run_id = format!("{i:032x}");
    let created = format!("2020-01-0{i}T00:00:00Z");
    let hashes = [blake3_hex(&shared()), blake3_hex(&own(i))];
    let mut header = manifest_header(2, 2);
    header["format"] = json!(2);
    header["created"] = json!(created);
    header["run_id"] = json!(run_id);
    let entries: Vec<Value> = hashes
        .iter()
        .enumerate()
        .map(|(n, h)| json!({"path": format!("f{n}"), "type": "file", "size": 1, "mtime_ns": 0, "mode": "644", "blake3": h, "etag": "e"}))
        .collect();
    (
        format!("{}-{run_id}.jsonl.zst", created.replace(['-', ':'], "")),
        encode_manifest(&header, &entries),
    )
}

fn content_key(prefix: &str, data: &[u8]) -> String {
    let h = blake3_hex(data);
    format!("{prefix}/.s3backup/content/{}/{h}", &h[..2])
}

struct Trial<'a> {
    server: &'a S3Server,
    client: aws_sdk_s3::Client,
    env: &'a TestEnv,
}

impl Trial<'_> {
    /// Puts the fixture under `prefix`, every object an hour old.
    fn setup(&self, prefix: &str) {
        let put = |key: String, body: &[u8]| {
            sdk_put(&self.client, BUCKET, &key, body);
            let path = self.server.object_path(BUCKET, &key);
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(SystemTime::now() - Duration::from_secs(3600))
                .unwrap();
        };
        for i in 1..=SNAPSHOTS {
            let (name, bytes) = manifest(i);
            put(format!("{prefix}/.s3backup/manifests/{name}"), &bytes);
            put(content_key(prefix, &own(i)), &own(i));
        }
        put(content_key(prefix, &shared()), &shared());
        for i in 1..=ORPHANS {
            put(content_key(prefix, &orphan(i)), &orphan(i));
        }
    }

    fn cmd(&self, prefix: &str) -> std::process::Command {
        let mut cmd = self.env.cmd();
        cmd.args(["snapshots", "forget"])
            .arg(format!("s3://{BUCKET}/{prefix}"))
            .args(["--keep-last", "2", "--prune", "--jobs", "3", "--json"])
            .args(["--endpoint-url", &self.server.endpoint()]);
        cmd
    }

    fn keys(&self, prefix: &str, dir: &str) -> BTreeSet<String> {
        let under = format!("{prefix}/.s3backup/{dir}/");
        self.server
            .list_keys(BUCKET)
            .into_iter()
            .filter(|k| k.starts_with(&under))
            .collect()
    }

    /// Every manifest left lists only content that is still there.
    fn check_kept_complete(&self, prefix: &str, what: &str) {
        let content = self.keys(prefix, "content");
        for key in self.keys(prefix, "manifests") {
            let bytes = self.server.object_bytes(BUCKET, &key).unwrap();
            let text = String::from_utf8(zstd::decode_all(&bytes[..]).unwrap()).unwrap();
            for line in text.lines().skip(1) {
                let e: Value = serde_json::from_str(line).unwrap();
                let h = e["blake3"].as_str().unwrap();
                let want = format!("{prefix}/.s3backup/content/{}/{h}", &h[..2]);
                assert!(
                    content.contains(&want),
                    "{what}: {key} lists {want}, which is gone"
                );
            }
        }
    }

    /// Runs the command and kills it at kill point `point`; whether it was killed.
    fn kill_at(&self, prefix: &str, point: usize, by_replies: bool) -> bool {
        self.server.clear_requests();
        let mut child = self
            .cmd(prefix)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let slice = Duration::from_millis(20);
        let reached = loop {
            let reached = if by_replies {
                self.server.wait_for_replies(point, slice)
            } else {
                self.server.wait_for_requests(point, slice)
            };
            if reached || child.try_wait().unwrap().is_some() {
                break reached;
            }
            assert!(Instant::now() < deadline, "the prune hung at point {point}");
        };
        if reached {
            let _ = child.kill();
        }
        let status = child.wait().unwrap();
        assert!(
            self.server.wait_settled(Duration::from_secs(30)),
            "point {point}: the server is still busy with the killed prune's requests"
        );
        use std::os::unix::process::ExitStatusExt;
        let killed = status.signal() == Some(libc::SIGKILL);
        if !killed {
            assert_eq!(
                status.code(),
                Some(0),
                "point {point}: a prune not killed succeeds"
            );
        }
        killed
    }
}

#[test]
fn kill_forget_prune_at_every_request_never_loses_kept_content() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    let trial = Trial {
        client: sdk_client(&server.endpoint()),
        server: &server,
        env: &env,
    };
    // The requests of a whole run, counted once.
    trial.setup("count");
    server.clear_requests();
    let r = run(trial.cmd("count"));
    r.expect_code(0);
    let total = server.requests().len();
    assert!(total > 10, "{:?}", server.ops());
    let expected = |prefix: &str| -> (BTreeSet<String>, BTreeSet<String>) {
        let manifests = (SNAPSHOTS - 1..=SNAPSHOTS)
            .map(|i| format!("{prefix}/.s3backup/manifests/{}", manifest(i).0))
            .collect();
        let content = [shared(), own(SNAPSHOTS - 1), own(SNAPSHOTS)]
            .iter()
            .map(|d| content_key(prefix, d))
            .collect();
        (manifests, content)
    };
    assert_eq!(
        (trial.keys("count", "manifests"), trial.keys("count", "content")),
        expected("count")
    );
    let mut killed = 0;
    for point in 0..=total + 1 {
        for by_replies in [false, true] {
            let prefix = format!("t{point}{}", if by_replies { "r" } else { "q" });
            trial.setup(&prefix);
            killed += usize::from(trial.kill_at(&prefix, point, by_replies));
            trial.check_kept_complete(&prefix, &format!("killed at {point} (replies: {by_replies})"));
            let r = run(trial.cmd(&prefix));
            r.expect_code(0);
            assert_eq!(
                (trial.keys(&prefix, "manifests"), trial.keys(&prefix, "content")),
                expected(&prefix),
                "after a kill at point {point}, the next run finishes the job"
            );
        }
    }
    assert!(
        killed >= total,
        "most points kill a running prune ({killed} of {})",
        2 * (total + 2)
    );
}
