//! Restores against moto's S3 server (`moto_server`), for what the
//! in-process s3s-fs server cannot do: bucket versioning (an older snapshot
//! comes back from the object versions its manifest recorded), conditional
//! GETs (`If-Match` answered with 412), and keys stored verbatim (`../x`,
//! `a//b`, `folder/` placeholders).
//!
//! moto is found through `S3BACKUP_MOTO_SERVER` (a path) or on `PATH`
//! (`.ci/run` installs it in a venv and sets the variable). Without it the
//! tests print "skipped: moto_server not found" and pass, except when
//! `CI=true`, where they fail: CI must run them.
//!
//! Each test starts its own `moto_server` on 127.0.0.1 with port 0, so the
//! server binds a free port itself and holds it from that moment; the port
//! is read from the line werkzeug prints ("Running on http://127.0.0.1:PORT").
//! (Picking a port by binding 0 and releasing it before moto started let
//! two tests starting at once get the same port: one test then talked to
//! the other's moto and its CreateBucket failed with BucketAlreadyExists.)
//! It is stopped when done. Readiness is the port printed, then a TCP
//! connect, retried until a deadline, waiting between tries on the server's
//! own log output (or at most 50 ms), never a fixed sleep.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};

use crate::common::*;

/// How long moto may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `moto_server`, killed (by its pid) and reaped on drop.
pub(crate) struct Moto {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Says a test is skipped, straight to stderr: the test harness captures
/// `eprintln!` of passing tests, and this must be seen.
fn skip(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{test}: skipped: {why}");
}

/// The moto_server executable: `S3BACKUP_MOTO_SERVER`, else the first on PATH.
fn find_moto() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("S3BACKUP_MOTO_SERVER").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "S3BACKUP_MOTO_SERVER={} is not a file", p.display());
        return Some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("moto_server"))
        .find(|p| p.is_file())
}

impl Moto {
    /// Starts moto, or returns None (after saying so) when it is not
    /// installed; panics instead when `CI=true`.
    pub(crate) fn start(test: &str) -> Option<Moto> {
        let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
        let from_env = std::env::var_os("S3BACKUP_MOTO_SERVER").is_some_and(|p| !p.is_empty());
        let Some(exe) = find_moto() else {
            assert!(
                !ci,
                "moto_server not found (CI=true): set S3BACKUP_MOTO_SERVER or put moto_server on PATH \
                 (python3 -m venv V && V/bin/pip install 'moto[server]<5.2')"
            );
            skip(
                test,
                "moto_server not found (set S3BACKUP_MOTO_SERVER, or install \"moto[server]<5.2\" on PATH)",
            );
            return None;
        };
        let mut child = Command::new(&exe)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .env_remove("AWS_ENDPOINT_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", exe.display()));
        // Drain both pipes for the server's whole life (a full pipe would
        // block it); every line also wakes the readiness loop.
        let (tx, rx) = mpsc::channel::<String>();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let _ = tx.send(line);
                }
            });
        }
        drop(tx);
        let mut moto = Moto {
            child,
            addr: ([127, 0, 0, 1], 0).into(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let mut log: Vec<String> = Vec::new();
        loop {
            if moto.addr.port() == 0
                && let Some(port) = log.iter().find_map(|l| printed_port(l))
            {
                moto.addr.set_port(port);
            }
            if moto.addr.port() != 0 && TcpStream::connect_timeout(&moto.addr, Duration::from_secs(1)).is_ok()
            {
                break;
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                log.extend(rx.try_iter());
                panic!(
                    "moto_server exited ({status}) before listening:\n{}",
                    log.join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "moto_server not listening (port {}) after {START_TIMEOUT:?}:\n{}",
                moto.addr.port(),
                log.join("\n")
            );
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(50)) {
                log.push(line);
            }
        }
        // moto 5.2 switched to a serializer whose XML roots are named
        // `<Operation>Response` (e.g. CompleteMultipartUploadResponse);
        // aws-sdk-s3 for Rust rejects them, so s3backup cannot work with it.
        if let Err(e) = moto.probe() {
            let msg = format!(
                "{} does not speak S3 as aws-sdk-s3 expects ({e}); moto 5.2 and later name XML roots \
                 `<Operation>Response`: install \"moto[server]<5.2\" and set S3BACKUP_MOTO_SERVER",
                exe.display()
            );
            assert!(!ci && !from_env, "{msg}");
            skip(test, &msg);
            return None;
        }
        Some(moto)
    }

    /// A one-part multipart upload: the operation moto 5.2+ gets wrong.
    fn probe(&self) -> Result<(), String> {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        let c = sdk_client(&self.endpoint());
        // The first line of the error chain is enough ("...invalid XML root...").
        let show = |e: &dyn std::error::Error| {
            let text = aws_sdk_s3::error::DisplayErrorContext(e).to_string();
            let text = text.split(" (ServiceError").next().unwrap_or_default();
            text.chars().take(300).collect::<String>()
        };
        block_on(async {
            c.create_bucket()
                .bucket("moto-probe")
                .send()
                .await
                .map_err(|e| show(&e))?;
            let up = c
                .create_multipart_upload()
                .bucket("moto-probe")
                .key("k")
                .send()
                .await
                .map_err(|e| show(&e))?;
            let id = up.upload_id().unwrap_or_default().to_owned();
            let part = c
                .upload_part()
                .bucket("moto-probe")
                .key("k")
                .upload_id(&id)
                .part_number(1)
                .body(b"x".to_vec().into())
                .send()
                .await
                .map_err(|e| show(&e))?;
            c.complete_multipart_upload()
                .bucket("moto-probe")
                .key("k")
                .upload_id(&id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .parts(
                            CompletedPart::builder()
                                .part_number(1)
                                .set_e_tag(part.e_tag().map(str::to_owned))
                                .build(),
                        )
                        .build(),
                )
                .send()
                .await
                .map_err(|e| show(&e))?;
            Ok(())
        })
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A test environment whose backups and restores go to this server.
    fn env(&self) -> TestEnv {
        TestEnv::with_endpoint(&self.endpoint())
    }

    /// Creates `bucket`, with versioning when `versioned`.
    pub(crate) fn bucket(&self, bucket: &str, versioned: bool) -> aws_sdk_s3::Client {
        let c = sdk_client(&self.endpoint());
        block_on(c.create_bucket().bucket(bucket).send()).expect("CreateBucket");
        if versioned {
            block_on(
                c.put_bucket_versioning()
                    .bucket(bucket)
                    .versioning_configuration(
                        VersioningConfiguration::builder()
                            .status(BucketVersioningStatus::Enabled)
                            .build(),
                    )
                    .send(),
            )
            .expect("PutBucketVersioning");
        }
        c
    }
}

/// The port in werkzeug's start-up line (`* Running on http://127.0.0.1:PORT`,
/// perhaps with terminal colours around it), if `line` is that line.
fn printed_port(line: &str) -> Option<u16> {
    let rest = &line[line.find("Running on http://127.0.0.1:")? + "Running on http://127.0.0.1:".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|&p| p != 0)
}

#[test]
fn the_port_moto_prints_is_read() {
    let line = "\u{1b}[31m * Running on http://127.0.0.1:37667\u{1b}[0m";
    assert_eq!(printed_port(line), Some(37667));
    assert_eq!(printed_port(" * Running on http://127.0.0.1:0"), None);
    assert_eq!(printed_port("Press CTRL+C to quit"), None);
}

/// Tests start moto servers at the same moment: each must be its own. (The
/// harness used to pick a port by binding port 0 and releasing it before
/// moto started, so two tests could pick the same port and one of them
/// talked to the other's moto: a CreateBucket failed with
/// BucketAlreadyExists.) Four started at once listen on four ports and each
/// creates a bucket of the same name.
#[test]
fn motos_started_at_once_are_each_their_own() {
    let test = "motos_started_at_once_are_each_their_own";
    let motos: Vec<Moto> = std::thread::scope(|s| {
        let started: Vec<_> = (0..4).map(|_| s.spawn(|| Moto::start(test))).collect();
        started.into_iter().filter_map(|h| h.join().unwrap()).collect()
    });
    let mut ports: Vec<u16> = motos.iter().map(|m| m.addr.port()).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), motos.len(), "{ports:?}");
    for moto in &motos {
        moto.bucket("same-name", false);
    }
}

/// The snapshot's manifest, fetched with the SDK.
pub(crate) fn manifest(c: &aws_sdk_s3::Client, bucket: &str, prefix: &str, id: &str) -> Manifest {
    let key = format!("{prefix}/.s3backup/manifests/{id}.jsonl.zst");
    let bytes = block_on(async {
        let out = c
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .expect("GetObject manifest");
        out.body.collect().await.expect("manifest body").into_bytes()
    });
    Manifest::decode(&bytes)
}

#[test]
fn versioned_bucket_brings_back_an_older_snapshot() {
    let Some(moto) = Moto::start("versioned_bucket_brings_back_an_older_snapshot") else {
        return;
    };
    let c = moto.bucket("vbkt", true);
    let env = moto.env();
    let target = "vbkt::pre";
    env.write_at("a.txt", "version one", (1_600_000_000, 111));
    env.set_mode("a.txt", 0o600);
    env.write_at("gone.txt", "deleted later", (1_600_000_000, 222));
    env.write_at("keep/k.txt", "kept", (1_600_000_000, 333));
    let expected_first = tree(&env.src);
    env.backup_ok(target, &[]);

    env.write_at("a.txt", "version two, longer", (1_700_000_000, 444));
    env.set_mode("a.txt", 0o600);
    env.remove("gone.txt");
    let s = env.backup_ok(target, &["--delete"]);
    assert_eq!((s.uploaded, s.deleted), (1, 1), "{s:?}");
    let expected_second = tree(&env.src);

    let rows = env.snapshot_list(target);
    assert_eq!(rows.len(), 2);
    let m = manifest(&c, "vbkt", "pre", &rows[0].id);
    for f in &m.files {
        assert!(
            f["version_id"].as_str().is_some_and(|v| !v.is_empty()),
            "a versioned bucket's manifest records versions: {f}"
        );
    }

    // The first snapshot: the old bytes and the deleted file come back.
    let dest = env.root().join("first");
    let s = env.restore_ok(target, &dest, &["--snapshot", &rows[0].id]);
    assert_eq!((s.files, s.downloaded, s.failed), (3, 3, 0), "{s:?}");
    assert_eq!(tree(&dest), expected_first);

    // Latest: the new bytes, and no deleted file.
    let dest = env.root().join("latest");
    let s = env.restore_ok(target, &dest, &[]);
    assert_eq!(s.source, rows[1].id);
    assert_eq!(tree(&dest), expected_second);

    // Going back in place: only a.txt differs, and gone.txt is missing.
    let s = env.restore_ok(target, &dest, &["--snapshot", &rows[0].id]);
    assert_eq!((s.downloaded, s.unchanged), (2, 1), "{s:?}");
    assert_eq!(tree(&dest), expected_first);
}

#[test]
fn unversioned_bucket_refuses_changed_objects_via_if_match() {
    // A pure mirror (`--history off`): what a run replaces or deletes is gone.
    let Some(moto) = Moto::start("unversioned_bucket_refuses_changed_objects_via_if_match") else {
        return;
    };
    moto.bucket("ubkt", false);
    let env = moto.env();
    // This test replaces or deletes most of a tiny set on purpose (the guard is tested in `guard`).
    let env = env.past_the_guard();
    let target = "ubkt::pre";
    env.write("same-size.txt", "one\n");
    env.write("grew.txt", "short");
    env.write("keep.txt", "kept");
    env.backup_ok(target, &["--history", "off"]);
    env.write_at("same-size.txt", "two\n", (1_700_000_100, 0));
    env.write_at("grew.txt", "much longer than before", (1_700_000_100, 0));
    env.backup_ok(target, &["--history", "off"]);
    let rows = env.snapshot_list(target);

    let dest = env.root().join("dest");
    let r = env.restore(target, &dest, &["--json", "--snapshot", &rows[0].id]);
    r.expect_code(3);
    let s = r.restore_summary();
    assert_eq!(s.failed_paths(), ["grew.txt", "same-size.txt"]);
    for f in &s.failures {
        assert!(f.error.contains("unrecoverable"), "{f:?}");
    }
    assert_eq!(paths_under(&dest), ["keep.txt"]);
}

#[test]
fn unversioned_bucket_restores_an_older_snapshot_of_a_touched_multipart_file() {
    // A touch (mtime-only change) rewrites the object's metadata with
    // CopyObject; S3 gives the copy an MD5 ETag, so an object uploaded in
    // parts ("md5-N") gets a new ETag although not one byte changed. The
    // older snapshot's blake3 still proves the bytes are the same.
    let Some(moto) = Moto::start("unversioned_bucket_restores_an_older_snapshot_of_a_touched_multipart_file")
    else {
        return;
    };
    let c = moto.bucket("tbkt", false);
    let env = moto.env();
    let target = "tbkt::pre";
    let big = noise(6 * MIB, 6);
    env.write_at("big.bin", &big, (1_600_000_000, 1));
    let mp = ["--multipart-threshold", "5MiB", "--part-size", "5MiB"];
    env.backup_ok(target, &mp);
    let etag = |c: &aws_sdk_s3::Client| {
        let h = block_on(c.head_object().bucket("tbkt").key("pre/big.bin").send()).expect("HeadObject");
        h.e_tag().unwrap_or_default().to_owned()
    };
    let before = etag(&c);
    env.set_mtime("big.bin", (1_700_000_000, 2));
    let s = env.backup_ok(target, &mp);
    assert_eq!(s.touched, 1, "{s:?}");
    assert_ne!(etag(&c), before, "the copy changed the ETag");
    let rows = env.snapshot_list(target);

    // moto answers CompleteMultipartUpload on an unversioned bucket with
    // `x-amz-version-id: null`, which S3 does not send; take it out of the
    // first manifest so the restore sees what it would see on S3.
    let key = format!("pre/.s3backup/manifests/{}.jsonl.zst", rows[0].id);
    let raw = block_on(async {
        let out = c.get_object().bucket("tbkt").key(&key).send().await.unwrap();
        out.body.collect().await.unwrap().into_bytes()
    });
    let text = String::from_utf8(zstd::decode_all(&raw[..]).unwrap()).unwrap();
    let mut lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for line in lines.iter_mut().skip(1) {
        if line["version_id"] == "null"
            && let Some(o) = line.as_object_mut()
        {
            o.remove("version_id");
        }
    }
    sdk_put(&c, "tbkt", &key, &encode_manifest(&lines[0], &lines[1..]));

    let dest = env.root().join("dest");
    let r = env.restore(target, &dest, &["--json", "--snapshot", &rows[0].id]);
    r.expect_code(0);
    assert!(std::fs::read(dest.join("big.bin")).unwrap() == big);
    assert_eq!(mtime_of(&dest.join("big.bin")), (1_600_000_000, 1));
}

#[test]
fn hostile_keys_stored_verbatim_write_nothing_outside_dest() {
    let Some(moto) = Moto::start("hostile_keys_stored_verbatim_write_nothing_outside_dest") else {
        return;
    };
    let c = moto.bucket("hbkt", false);
    let env = moto.env();
    let (sandbox, dest, outside) = sandbox(&env);
    let abs = format!("{}/abs.txt", outside.display());
    let hostile = [
        "../escape.txt".to_owned(),
        "a/../../x".to_owned(),
        abs.clone(),
        "a//b".to_owned(),
        "./dot".to_owned(),
    ];
    for p in &hostile {
        sdk_put(&c, "hbkt", &format!("pre/{p}"), b"EVIL");
    }
    // A backslash is a plain name byte on Unix: one file inside DEST.
    sdk_put(&c, "hbkt", "pre/back\\..\\..\\slash", b"one file");
    sdk_put(&c, "hbkt", "pre/ok.txt", b"fine");
    sdk_put(&c, "hbkt", "pre/folder/", b"");
    sdk_put(&c, "hbkt", "pre/.s3backup/locks/x", b"tool area");
    let listed: Vec<String> = block_on(c.list_objects_v2().bucket("hbkt").prefix("pre/").send())
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    for p in &hostile {
        assert!(
            listed.contains(&format!("pre/{p}")),
            "moto keeps keys verbatim: {p:?} not in {listed:?}"
        );
    }

    let r = env.restore("hbkt::pre", &dest, &["--json"]);
    r.expect_code(3);
    let s = r.restore_summary();
    let mut want = hostile.to_vec();
    want.sort();
    assert_eq!(s.failed_paths(), want, "{}", r.show());
    assert_eq!(s.downloaded, 2);
    assert_eq!(
        paths_under(&sandbox),
        [
            "a",
            "a/b",
            "a/b/dest",
            "a/b/dest/back\\..\\..\\slash",
            "a/b/dest/ok.txt"
        ]
    );
    assert_eq!(paths_under(&outside), Vec::<String>::new());
}
