//! The inspection and repair commands, each against the in-process S3
//! server and against a local directory store: `state sets|files|show|runs|
//! stats`, `snapshots` and `snapshots forget`, `verify` (with and without
//! `--deep`), `state rebuild` and the automatic rebuild of a backup that
//! finds no state, and what every command does with a state file that is
//! missing, corrupt or written by a newer s3backup.
//!
//! Checks are on what a user sees: plain output, the `--json` shapes of
//! `docs/json.md`, exit codes, messages, and (on S3) the requests sent.
//! Helpers live here rather than in `common.rs` so this file stands alone.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::*;
use crate::server::S3Server;

const BUCKET: &str = "bkt";

/// Where a fixture's backups go.
enum Store {
    S3(S3Server),
    Local(PathBuf),
}

/// A test environment plus a target on S3 (`bkt::pre`) or in a local store.
struct Fx {
    env: TestEnv,
    store: Store,
    target: String,
}

impl Fx {
    /// A server with bucket `bkt`; the target is `bkt::pre`.
    fn s3() -> Fx {
        let server = S3Server::start();
        server.create_bucket(BUCKET);
        let env = TestEnv::with_server(&server);
        Fx {
            env,
            store: Store::S3(server),
            target: "bkt::pre".to_owned(),
        }
    }

    /// A local directory store inside the test's temporary directory.
    fn local() -> Fx {
        let env = TestEnv::new();
        let root = env.root().join("store");
        Fx {
            target: root.display().to_string(),
            env,
            store: Store::Local(root),
        }
    }

    fn server(&self) -> Option<&S3Server> {
        match &self.store {
            Store::S3(s) => Some(s),
            Store::Local(_) => None,
        }
    }

    /// The target as the state file records it.
    /// How the state file names the set's target: for S3 with the
    /// endpoint, which is part of the set's identity.
    fn canonical(&self) -> String {
        match &self.store {
            Store::S3(s) => format!("s3://bkt/pre (endpoint {})", s.endpoint()),
            Store::Local(root) => format!("file://{}", root.display()),
        }
    }

    /// The object key of a backed-up file.
    fn key(&self, rel: &str) -> String {
        match &self.store {
            Store::S3(_) => format!("pre/{rel}"),
            Store::Local(_) => rel.to_owned(),
        }
    }

    /// Where the stored bytes of a backed-up file are.
    fn stored(&self, rel: &str) -> PathBuf {
        match &self.store {
            Store::S3(s) => s.object_path(BUCKET, &self.key(rel)),
            Store::Local(root) => root.join(rel),
        }
    }

    /// Snapshot IDs present in the store, sorted (from the files, no request).
    fn stored_snapshots(&self) -> Vec<String> {
        let dir = match &self.store {
            Store::S3(s) => s.object_path(BUCKET, "pre/.s3backup/manifests"),
            Store::Local(root) => root.join(".s3backup/manifests"),
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter_map(|n| n.strip_suffix(".jsonl.zst").map(str::to_owned))
            .collect();
        ids.sort();
        ids
    }

    /// `--endpoint-url E` for S3 targets, nothing for local ones.
    fn s3_args(&self) -> Vec<String> {
        match &self.env.endpoint {
            Some(e) => vec!["--endpoint-url".to_owned(), e.clone()],
            None => Vec::new(),
        }
    }

    /// `s3backup --state STATE WORDS… TARGET [--endpoint-url E] EXTRA…`.
    fn on_target(&self, words: &[&str], extra: &[&str]) -> Run {
        let mut cmd = self.state_cmd();
        cmd.args(words).arg(&self.target).args(self.s3_args()).args(extra);
        run(cmd)
    }

    /// The binary with `--state STATE` before the subcommand.
    fn state_cmd(&self) -> Command {
        let mut cmd = self.env.cmd();
        cmd.arg("--state").arg(&self.env.state);
        cmd
    }

    /// `s3backup --state STATE state ARGS…`.
    fn state(&self, args: &[&str]) -> Run {
        let mut cmd = self.state_cmd();
        cmd.arg("state").args(args);
        run(cmd)
    }

    /// `state ARGS… --json`, required to succeed, stdout parsed as one value.
    #[track_caller]
    fn state_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let r = self.state(&all);
        r.expect_code(0);
        one_json(&r)
    }

    /// `state files ARGS… --json`: JSON lines, each parsed.
    #[track_caller]
    fn state_files(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["files"];
        all.extend_from_slice(args);
        all.push("--json");
        let r = self.state(&all);
        r.expect_code(0);
        r.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("line {l:?} is not JSON: {e}\n{}", r.show()))
            })
            .collect()
    }

    /// `state rebuild SRC TARGET [--endpoint-url E] EXTRA…`.
    fn rebuild(&self, extra: &[&str]) -> Run {
        let mut cmd = self.state_cmd();
        cmd.args(["state", "rebuild"])
            .arg(&self.env.src)
            .arg(&self.target)
            .args(self.s3_args())
            .args(extra);
        run(cmd)
    }

    /// `verify TARGET --json EXTRA…`: exit code and parsed report.
    #[track_caller]
    fn verify(&self, extra: &[&str]) -> (i32, Value) {
        let mut all = vec!["--json"];
        all.extend_from_slice(extra);
        let r = self.on_target(&["verify"], &all);
        let code = r.code.unwrap_or_else(|| panic!("killed\n{}", r.show()));
        assert!(code == 0 || code == 1, "verify exit code\n{}", r.show());
        let v = one_json(&r);
        let problems = v["problems"].as_array().expect("problems array").len();
        assert_eq!(
            code == 1,
            problems > 0,
            "exit 1 exactly when there are problems\n{}",
            r.show()
        );
        (code, v)
    }

    /// `snapshots TARGET --json`, required to succeed.
    #[track_caller]
    fn snapshots(&self) -> Vec<Value> {
        let r = self.on_target(&["snapshots"], &["--json"]);
        r.expect_code(0);
        one_json(&r)
            .as_array()
            .expect("snapshots --json is an array")
            .clone()
    }

    /// Makes the next writes of `rel` fail (S3: 403 on its key; local: a
    /// non-empty directory where it should go).
    fn break_writes_of(&self, rel: &str) {
        match &self.store {
            Store::S3(s) => s.fail_key(&self.key(rel), None, false),
            Store::Local(root) => std::fs::create_dir_all(root.join(rel).join("blocker")).unwrap(),
        }
    }

    fn mend_writes_of(&self, rel: &str) {
        match &self.store {
            Store::S3(s) => s.clear_rules(),
            Store::Local(root) => std::fs::remove_dir_all(root.join(rel)).unwrap(),
        }
    }

    /// Forgets the requests logged so far (S3 only).
    fn clear_requests(&self) {
        if let Some(s) = self.server() {
            s.clear_requests();
        }
    }

    /// On S3: no request wrote a backed-up file (manifests aside).
    #[track_caller]
    fn assert_no_file_writes(&self) {
        let Some(server) = self.server() else { return };
        let writes: Vec<String> = server
            .requests()
            .into_iter()
            .filter(|r| {
                ["PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart"].contains(&r.op.as_str())
                    && r.key.as_deref().is_some_and(|k| !k.contains(".s3backup/"))
            })
            .map(|r| format!("{} {}", r.op, r.key.unwrap_or_default()))
            .collect();
        assert!(writes.is_empty(), "file writes: {writes:?}");
    }
}

/// stdout must be exactly one JSON value.
#[track_caller]
fn one_json(r: &Run) -> Value {
    serde_json::from_str(r.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON value: {e}\n{}", r.show()))
}

/// The snapshot ID of a manifest key.
fn id_of(manifest_key: &str) -> String {
    let name = manifest_key.rsplit('/').next().unwrap();
    name.strip_suffix(".jsonl.zst")
        .unwrap_or_else(|| panic!("not a manifest key: {manifest_key}"))
        .to_owned()
}

/// The source directory as the tool records it (absolute, resolved).
fn source_text(env: &TestEnv) -> String {
    env.src.canonicalize().unwrap().display().to_string()
}

fn ns((secs, nanos): (i64, u32)) -> i64 {
    secs * 1_000_000_000 + i64::from(nanos)
}

/// stderr must not show a panic.
#[track_caller]
fn assert_no_panic(r: &Run) {
    assert!(
        !r.stderr.contains("panicked"),
        "the binary panicked\n{}",
        r.show()
    );
}

// ---------------------------------------------------------------------------
// A plain aws-sdk-s3 client, for changing objects behind the tool's back.

fn sdk(server: &S3Server) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{
        BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    };
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(server.endpoint())
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            S3Server::ACCESS_KEY,
            S3Server::SECRET_KEY,
            None,
            None,
            "test",
        ))
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

fn on_runtime<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn sdk_put_object(server: &S3Server, key: &str, body: &[u8]) {
    let client = sdk(server);
    on_runtime(
        client
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .body(aws_sdk_s3::primitives::ByteStream::from(body.to_vec()))
            .send(),
    )
    .unwrap_or_else(|e| panic!("PutObject {key}: {}", aws_sdk_s3::error::DisplayErrorContext(&e)));
}

fn sdk_delete_object(server: &S3Server, key: &str) {
    let client = sdk(server);
    on_runtime(client.delete_object().bucket(BUCKET).key(key).send()).unwrap_or_else(|e| {
        panic!(
            "DeleteObject {key}: {}",
            aws_sdk_s3::error::DisplayErrorContext(&e)
        )
    });
}

/// The ETag the server reports for an object (HeadObject).
fn sdk_etag(server: &S3Server, key: &str) -> String {
    let client = sdk(server);
    let out = on_runtime(client.head_object().bucket(BUCKET).key(key).send())
        .unwrap_or_else(|e| panic!("HeadObject {key}: {}", aws_sdk_s3::error::DisplayErrorContext(&e)));
    out.e_tag().unwrap_or_default().trim_matches('"').to_owned()
}

// ---------------------------------------------------------------------------
// state sets | files | show | runs | stats

/// T1: a later mtime for changed files.
const T1: (i64, u32) = (1_750_000_000, 42);

/// Three runs (all new; a change, a copy and a touch; one file failing),
/// then a fourth that retries the failure, then a second set; every state
/// command is checked against what happened.
fn state_commands_describe_the_backups(fx: &Fx) {
    let env = &fx.env;
    let big = noise(3000, 2);
    let pdf = noise(2000, 1);
    env.write("a.txt", "hello\n");
    env.write_at("docs/r.pdf", &pdf, (1_600_000_000, 5));
    env.write("docs/notes.txt", "notes\n");
    env.write("big.bin", &big);
    env.set_mode("docs/r.pdf", 0o600);
    let s1 = env.backup_ok(&fx.target, &[]);
    assert_eq!(s1.uploaded, 4);

    // Run 2: one changed file, one copy of existing content, one mtime-only change.
    env.write_at("a.txt", "hello world\n", T1);
    env.write("copy.bin", &big);
    env.set_mtime("docs/notes.txt", T1);
    let s2 = env.backup_ok(&fx.target, &[]);
    assert_eq!(
        s2.counts(),
        Counts {
            scanned: 5,
            uploaded: 1,
            copied: 1,
            touched: 1,
            unchanged: 2,
            ..Counts::default()
        }
    );

    // Run 3: a file that cannot be written.
    env.write("bad.txt", "bad\n");
    fx.break_writes_of("bad.txt");
    let r3 = env.backup(&fx.target, &["--json"]);
    r3.expect_code(3);
    assert_eq!(r3.summary().failed, 1);

    // After a partial run: sets says so, and the failed file is not recorded.
    let sets = fx.state_json(&["sets"]);
    let sets = sets.as_array().expect("sets --json is an array");
    assert_eq!(sets.len(), 1, "{sets:?}");
    let set = &sets[0];
    assert_eq!(set["id"], 1);
    assert_eq!(set["source"], source_text(env));
    assert_eq!(set["target"], fx.canonical());
    assert_eq!(set["files"], 5, "{set}");
    assert_eq!(set["bytes"], 12 + 2000 + 6 + 3000 + 3000, "{set}");
    assert_eq!(set["last_status"], "partial", "{set}");
    let last_run = set["last_run"].as_str().expect("last_run");
    assert!(
        last_run.len() == 20 && last_run.ends_with('Z') && last_run.as_bytes()[10] == b'T',
        "last_run is RFC 3339 UTC: {last_run}"
    );
    let r = fx.state(&["sets"]);
    r.expect_code(0);
    assert!(r.stdout.contains("partial"), "{}", r.show());
    assert!(r.stdout.contains(&source_text(env)), "{}", r.show());
    assert!(r.stdout.contains(&fx.canonical()), "{}", r.show());
    assert!(
        fx.state_files(&["bad.txt"]).is_empty(),
        "a failed file has no row"
    );

    // Run 4: the failure is retried and the set is ok again.
    fx.mend_writes_of("bad.txt");
    let s4 = env.backup_ok(&fx.target, &[]);
    assert_eq!((s4.uploaded, s4.unchanged), (1, 5), "{s4:?}");
    let sets = fx.state_json(&["sets"]);
    assert_eq!(sets[0]["last_status"], "ok", "{sets}");
    assert_eq!(sets[0]["files"], 6, "{sets}");

    // state files: every file (no directories), ordered by path, as recorded.
    let files = fx.state_files(&[]);
    let paths: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "a.txt",
            "bad.txt",
            "big.bin",
            "copy.bin",
            "docs/notes.txt",
            "docs/r.pdf"
        ]
    );
    let by_path: BTreeMap<&str, &Value> = paths.iter().copied().zip(&files).collect();
    let a = by_path["a.txt"];
    assert_eq!(a["set"], 1);
    assert_eq!(a["size"], 12);
    assert_eq!(a["mtime_ns"], ns(T1));
    assert_eq!(a["mode"], "644");
    assert_eq!(a["blake3"], blake3_hex(b"hello world\n"));
    assert!(a["etag"].as_str().is_some_and(|e| !e.is_empty()), "{a}");
    assert_eq!(a["version_id"], Value::Null);
    assert!(
        a["uploaded_at"].as_i64().is_some_and(|t| t > 1_600_000_000),
        "{a}"
    );
    let pdf_row = by_path["docs/r.pdf"];
    assert_eq!(pdf_row["mode"], "600");
    assert_eq!(pdf_row["size"], 2000);
    assert_eq!(pdf_row["blake3"], blake3_hex(&pdf));
    assert_eq!(pdf_row["mtime_ns"], ns((1_600_000_000, 5)));
    assert_eq!(by_path["copy.bin"]["blake3"], blake3_hex(&big));
    assert_eq!(
        by_path["docs/notes.txt"]["mtime_ns"],
        ns(T1),
        "a touch is recorded"
    );

    // Glob filtering ('*' also matches '/').
    let matched = |args: &[&str]| -> Vec<String> {
        fx.state_files(args)
            .iter()
            .map(|f| f["path"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(matched(&["docs/*"]), ["docs/notes.txt", "docs/r.pdf"]);
    assert_eq!(matched(&["*.txt"]), ["a.txt", "bad.txt", "docs/notes.txt"]);
    assert_eq!(matched(&["*.bin"]), ["big.bin", "copy.bin"]);
    assert_eq!(matched(&["--set", "1", "a.txt"]), ["a.txt"]);
    assert!(matched(&["nothing*"]).is_empty());
    let r = fx.state(&["files", "docs/*"]);
    r.expect_code(0);
    let rows: Vec<&str> = r.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "a header and two rows\n{}", r.show());
    assert!(rows[0].ends_with(" docs/notes.txt"), "{}", r.show());
    assert!(rows[1].ends_with(" docs/r.pdf"), "{}", r.show());

    // state show: a file, a directory, slashes around the path, a missing path.
    let shown = fx.state_json(&["show", "a.txt"]);
    let shown = shown.as_array().expect("show --json is an array");
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0]["type"], "file");
    for field in [
        "set",
        "path",
        "size",
        "mtime_ns",
        "mode",
        "blake3",
        "etag",
        "version_id",
    ] {
        assert_eq!(shown[0][field], a[field], "show and files agree on {field}");
    }
    let dir = fx.state_json(&["show", "/docs/"]);
    assert_eq!(dir[0]["type"], "dir", "{dir}");
    assert_eq!(dir[0]["path"], "docs", "{dir}");
    let r = fx.state(&["show", "a.txt"]);
    r.expect_code(0);
    assert!(r.stdout.contains(&blake3_hex(b"hello world\n")), "{}", r.show());
    assert!(r.stdout.contains("a.txt"), "{}", r.show());
    for args in [
        &["show", "no/such.txt"][..],
        &["show", "no/such.txt", "--json"][..],
    ] {
        let r = fx.state(args);
        r.expect_code(1);
        let e = r.error_line();
        assert!(
            e.contains("no/such.txt") && e.contains("not in the state file"),
            "{e}"
        );
        assert!(r.stdout.is_empty(), "{}", r.show());
        assert_no_panic(&r);
    }

    // state runs: newest first, with each run's counts.
    let runs = fx.state_json(&["runs"]);
    let runs = runs.as_array().expect("runs --json is an array");
    assert_eq!(runs.len(), 4, "{runs:?}");
    let counts = |r: &Value| -> [u64; 8] {
        [
            "scanned",
            "uploaded",
            "copied",
            "touched",
            "unchanged",
            "deleted",
            "failed",
            "bytes_sent",
        ]
        .map(|k| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}")))
    };
    assert_eq!(
        counts(&runs[3]),
        [4, 4, 0, 0, 0, 0, 0, 5012],
        "run 1: {}",
        runs[3]
    );
    assert_eq!(counts(&runs[2]), [5, 1, 1, 1, 2, 0, 0, 12], "run 2: {}", runs[2]);
    assert_eq!(counts(&runs[1]), [6, 0, 0, 0, 5, 0, 1, 0], "run 3: {}", runs[1]);
    assert_eq!(counts(&runs[0]), [6, 1, 0, 0, 5, 0, 0, 4], "run 4: {}", runs[0]);
    let statuses: Vec<&str> = runs.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["ok", "partial", "ok", "ok"]);
    for (run, summary) in [(&runs[3], &s1), (&runs[2], &s2), (&runs[0], &s4)] {
        assert_eq!(run["kind"], "backup");
        assert_eq!(run["set_id"], 1);
        assert_eq!(run["manifest"].as_str(), summary.snapshot.as_deref(), "{run}");
        let id = id_of(summary.snapshot.as_deref().unwrap());
        assert!(
            id.ends_with(run["run_id"].as_str().unwrap()),
            "run id {run} in {id}"
        );
        assert!(run["duration_ms"].as_i64().is_some(), "{run}");
        assert_eq!(run["error"], Value::Null);
    }
    let limited = fx.state_json(&["runs", "--limit", "2"]);
    assert_eq!(limited.as_array().unwrap().len(), 2);
    assert_eq!(limited[0]["run_id"], runs[0]["run_id"]);
    let r = fx.state(&["runs"]);
    r.expect_code(0);
    assert_eq!(r.stdout.lines().count(), 5, "a header and 4 runs\n{}", r.show());
    assert!(r.stdout.contains("partial"), "{}", r.show());

    // state stats.
    let stats = fx.state_json(&["stats"]);
    assert_eq!(stats["path"], env.state.display().to_string());
    assert!(stats["db_bytes"].as_u64().is_some_and(|b| b > 0), "{stats}");
    assert_eq!(stats["schema_version"], 11);
    assert_eq!(stats["sets"], 1);
    assert_eq!(stats["files"], 6);
    assert_eq!(stats["dirs"], 1, "docs: {stats}");
    assert_eq!(stats["bytes"], 12 + 4 + 3000 + 3000 + 6 + 2000);
    assert_eq!(stats["runs"], 4);
    let r = fx.state(&["stats"]);
    r.expect_code(0);
    assert!(
        r.stdout.contains(&env.state.display().to_string()),
        "{}",
        r.show()
    );

    // A second set: same source, another target.
    let other = match &fx.store {
        Store::S3(_) => "bkt::other".to_owned(),
        Store::Local(root) => root.with_file_name("store2").display().to_string(),
    };
    env.backup_ok(&other, &[]);
    let sets = fx.state_json(&["sets"]);
    assert_eq!(sets.as_array().unwrap().len(), 2, "{sets}");
    assert_eq!(sets[1]["id"], 2);
    assert_eq!(sets[1]["files"], 6);
    assert_eq!(sets[1]["last_status"], "ok");
    let set2 = fx.state_files(&["--set", "2"]);
    assert_eq!(set2.len(), 6);
    assert!(set2.iter().all(|f| f["set"] == 2));
    let all = fx.state_files(&["a.txt"]);
    let sets_of: Vec<&Value> = all.iter().map(|f| &f["set"]).collect();
    assert_eq!(sets_of, [1, 2], "ordered by set");
    assert_eq!(fx.state_json(&["show", "a.txt"]).as_array().unwrap().len(), 2);
    assert_eq!(
        fx.state_json(&["show", "a.txt", "--set", "2"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let runs2 = fx.state_json(&["runs", "--set", "2"]);
    assert_eq!(runs2.as_array().unwrap().len(), 1);
    let stats = fx.state_json(&["stats"]);
    assert_eq!(
        (stats["sets"].as_u64(), stats["runs"].as_u64()),
        (Some(2), Some(5))
    );
}

#[test]
fn state_commands_describe_backups_to_s3() {
    state_commands_describe_the_backups(&Fx::s3());
}

#[test]
fn state_commands_describe_backups_to_a_local_store() {
    state_commands_describe_the_backups(&Fx::local());
}

#[test]
fn state_commands_without_a_state_file_fail_naming_it_and_create_nothing() {
    let env = TestEnv::new();
    let state = env.root().join("nowhere/state.db");
    for args in [
        &["sets"][..],
        &["sets", "--json"],
        &["files"],
        &["files", "--json", "*.txt"],
        &["show", "a.txt"],
        &["runs"],
        &["runs", "--json"],
        &["stats"],
        &["stats", "--json"],
    ] {
        let mut cmd = env.cmd();
        cmd.arg("--state").arg(&state).arg("state").args(args);
        let r = run(cmd);
        r.expect_code(1);
        let e = r.error_line();
        assert!(e.contains(&state.display().to_string()), "state {args:?}: {e}");
        assert!(r.stdout.is_empty(), "state {args:?}\n{}", r.show());
        assert_no_panic(&r);
        assert!(!state.exists(), "state {args:?} created the state file");
        assert!(
            !state.parent().unwrap().exists(),
            "state {args:?} created its directory"
        );
    }
    // The default location (under XDG_STATE_HOME) is not created either.
    let r = run({
        let mut cmd = env.cmd();
        cmd.args(["state", "sets"]);
        cmd
    });
    r.expect_code(1);
    assert!(r.error_line().contains("state.db"), "{}", r.show());
    assert!(!env.home.join(".local/state/s3backup").exists());
}

// ---------------------------------------------------------------------------
// snapshots, snapshots forget

/// Three backups that each add a file (so older snapshots stay intact),
/// listed, then forgotten with every kind of rule.
fn snapshots_are_listed_and_forgotten(fx: &Fx) {
    let env = &fx.env;
    let mut keys = Vec::new();
    let contents: [(&str, &[u8]); 3] = [("a.txt", b"first\n"), ("b.txt", b"second!\n"), ("c.txt", b"3\n")];
    for (rel, content) in contents {
        env.write(rel, content);
        let s = env.backup_ok(&fx.target, &[]);
        keys.push(
            s.snapshot
                .expect("a backup that changed something writes a manifest"),
        );
    }
    let ids: Vec<String> = keys.iter().map(|k| id_of(k)).collect();
    assert_eq!(fx.stored_snapshots(), ids, "manifest names sort in run order");

    // snapshots --json: oldest first, with each header's numbers.
    let list = fx.snapshots();
    let listed: Vec<&str> = list.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(listed, ids);
    let mut bytes = 0;
    for (i, (snap, (_, content))) in list.iter().zip(contents).enumerate() {
        bytes += content.len() as u64;
        assert_eq!(snap["files"], i as u64 + 1, "{snap}");
        assert_eq!(snap["bytes"], bytes, "{snap}");
        assert_eq!(snap["source"], source_text(env), "{snap}");
        assert!(snap["host"].as_str().is_some_and(|h| !h.is_empty()), "{snap}");
        let created = snap["created"].as_str().unwrap();
        assert_eq!(
            created.replace(['-', ':'], ""),
            ids[i].split('-').next().unwrap(),
            "created matches the ID's time"
        );
    }
    let r = fx.on_target(&["snapshots"], &[]);
    r.expect_code(0);
    for id in &ids {
        assert!(r.stdout.contains(id.as_str()), "{id}\n{}", r.show());
    }

    // forget needs a rule.
    let r = fx.on_target(&["snapshots", "forget"], &[]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("--keep-last") || r.stderr.contains("--keep-within"),
        "{}",
        r.show()
    );
    let r = fx.on_target(&["snapshots", "forget"], &["--dry-run"]);
    r.expect_code(2);

    // Dry runs remove nothing, whatever they would remove.
    let forget = |extra: &[&str]| -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(extra);
        let r = fx.on_target(&["snapshots", "forget"], &all);
        r.expect_code(0);
        one_json(&r)
    };
    fx.clear_requests();
    let v = forget(&["--keep-last", "1", "--dry-run"]);
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["removed"], serde_json::json!([ids[0], ids[1]]), "{v}");
    assert_eq!(v["kept"], 1);
    let v = forget(&["--keep-last", "0", "--dry-run"]);
    assert_eq!(
        v["removed"],
        serde_json::json!([ids[0], ids[1]]),
        "the newest always stays: {v}"
    );
    assert_eq!(v["kept"], 1);
    let v = forget(&["--keep-within", "1h", "--dry-run"]);
    assert_eq!(
        v["removed"],
        serde_json::json!([]),
        "all are younger than an hour: {v}"
    );
    assert_eq!(v["kept"], 3);
    let v = forget(&["--keep-last", "1", "--keep-within", "1d", "--dry-run"]);
    assert_eq!(v["removed"], serde_json::json!([]), "either rule keeps: {v}");
    let r = fx.on_target(&["snapshots", "forget"], &["--keep-last", "1", "--dry-run"]);
    r.expect_code(0);
    assert!(
        r.stdout.contains(&format!("would remove {}", ids[0])),
        "{}",
        r.show()
    );
    assert!(
        r.stdout.contains(&format!("would remove {}", ids[1])),
        "{}",
        r.show()
    );
    assert!(!r.stdout.contains(&ids[2]), "{}", r.show());
    if let Some(server) = fx.server() {
        assert_eq!(server.count("DeleteObject"), 0, "{:?}", server.ops());
        assert_eq!(server.count("DeleteObjects"), 0, "{:?}", server.ops());
    }
    assert_eq!(fx.stored_snapshots(), ids, "a dry run removes nothing");

    // A real forget removes exactly the old manifests, and no file.
    fx.clear_requests();
    let v = forget(&["--keep-last", "2"]);
    assert_eq!(v["dry_run"], false);
    assert_eq!(v["removed"], serde_json::json!([ids[0]]));
    assert_eq!(v["kept"], 2);
    if let Some(server) = fx.server() {
        let deletes: Vec<String> = server
            .requests()
            .into_iter()
            .filter(|r| r.op == "DeleteObject" || r.op == "DeleteObjects")
            .map(|r| format!("{} {}", r.op, r.key.unwrap_or_default()))
            .collect();
        assert_eq!(deletes, [format!("DeleteObject {}", keys[0])]);
    }
    assert_eq!(fx.stored_snapshots(), ids[1..]);
    for (rel, content) in contents {
        assert_eq!(std::fs::read(fx.stored(rel)).unwrap(), content, "{rel} stays");
    }
    let listed: Vec<String> = fx
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, ids[1..]);

    // The kept snapshots still verify and restore; the removed one is gone.
    // (Verify results are checked last, so a verify bug hides no forget check.)
    let verified_second = fx.verify(&["--snapshot", &ids[1]]);
    let dest = env.root().join("restored");
    let mut cmd = env.cmd();
    cmd.arg("restore")
        .arg(&fx.target)
        .arg(&dest)
        .args(["--snapshot", &ids[1], "--json"])
        .args(fx.s3_args());
    let r = run(cmd);
    r.expect_code(0);
    assert_eq!(paths_of_files(&dest), ["a.txt", "b.txt"]);
    assert_eq!(std::fs::read(dest.join("b.txt")).unwrap(), b"second!\n");
    let r = fx.on_target(&["verify"], &["--snapshot", &ids[0]]);
    r.expect_code(1);
    assert!(r.error_line().contains(&ids[0]), "{}", r.show());

    // --keep-last 0 for real: only the newest is left.
    let r = fx.on_target(&["snapshots", "forget"], &["--keep-last", "0"]);
    r.expect_code(0);
    assert!(r.stdout.contains(&format!("removed {}", ids[1])), "{}", r.show());
    assert_eq!(fx.stored_snapshots(), ids[2..]);
    let verified_newest = fx.verify(&[]);
    // Nothing more to forget: the newest is never removed.
    let v = forget(&["--keep-last", "0"]);
    assert_eq!(v["removed"], serde_json::json!([]));
    assert_eq!(v["kept"], 1);
    assert_eq!(fx.stored_snapshots(), ids[2..]);

    let (code, v) = verified_second;
    assert_eq!(code, 0, "a kept snapshot verifies: {v}");
    assert_eq!(
        (v["snapshot"].as_str(), v["files"].as_u64()),
        (Some(ids[1].as_str()), Some(2))
    );
    let (code, v) = verified_newest;
    assert_eq!(code, 0, "the newest snapshot verifies: {v}");
    assert_eq!(v["snapshot"], ids[2]);
}

/// Relative paths of the files under `root`, sorted.
fn paths_of_files(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(root).unwrap().display().to_string())
        .collect();
    out.sort();
    out
}

#[test]
fn snapshots_on_s3_are_listed_and_forgotten() {
    snapshots_are_listed_and_forgotten(&Fx::s3());
}

#[test]
fn snapshots_in_a_local_store_are_listed_and_forgotten() {
    snapshots_are_listed_and_forgotten(&Fx::local());
}

#[test]
fn snapshots_of_an_empty_target_is_an_empty_list() {
    for fx in [Fx::s3(), Fx::local()] {
        if let Store::Local(root) = &fx.store {
            std::fs::create_dir_all(root).unwrap();
        }
        assert!(fx.snapshots().is_empty());
        let r = fx.on_target(&["snapshots"], &[]);
        r.expect_code(0);
        assert!(r.stdout.contains("no snapshots"), "{}", r.show());
    }
}

// ---------------------------------------------------------------------------
// verify

/// a.txt, dir/b.txt, dir/sub/c.bin (3000 bytes), empty.txt; backed up.
fn verify_tree(fx: &Fx) -> (String, u64) {
    fx.env.write("a.txt", "hello\n");
    fx.env.write("dir/b.txt", "bee\n");
    fx.env.write("dir/sub/c.bin", noise(3000, 7));
    fx.env.write("empty.txt", "");
    let s = fx.env.backup_ok(&fx.target, &[]);
    (id_of(&s.snapshot.unwrap()), 6 + 4 + 3000)
}

#[test]
fn verify_on_s3_without_deep_is_one_listing_and_the_manifest() {
    let fx = Fx::s3();
    let server = fx.server().unwrap();
    let (id, bytes) = verify_tree(&fx);

    server.clear_requests();
    let (code, v) = fx.verify(&[]);
    let manifest_key = format!("pre/.s3backup/manifests/{id}.jsonl.zst");
    let per_file: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| !matches!(r.op.as_str(), "ListObjectsV2" | "HeadBucket"))
        .filter(|r| !(r.op == "GetObject" && r.key.as_deref() == Some(manifest_key.as_str())))
        .map(|r| format!("{} {}", r.op, r.key.unwrap_or_default()))
        .collect();
    assert!(
        per_file.is_empty(),
        "requests besides listings and the manifest: {per_file:?}"
    );
    assert_eq!(
        server.count_key("GetObject", &manifest_key),
        1,
        "{:?}",
        server.ops()
    );
    assert_eq!(v["snapshot"], id);
    assert_eq!(v["files"], 4);
    assert_eq!(v["bytes_checked"], 0);
    assert_eq!(v["deep"], false);
    assert!(v["elapsed_ms"].as_u64().is_some());
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["ok"], 4);
    assert_eq!(
        (v["missing"].as_u64(), v["mismatched"].as_u64()),
        (Some(0), Some(0))
    );

    let r = fx.on_target(&["verify"], &[]);
    r.expect_code(0);
    assert!(r.stdout.contains(&id), "{}", r.show());
    assert!(r.stdout.contains("4 files"), "{}", r.show());
    assert!(!r.stderr.contains("error"), "{}", r.show());

    // --deep reads every file once and checks it.
    server.clear_requests();
    let (code, v) = fx.verify(&["--deep"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["deep"], true);
    assert_eq!(v["ok"], 4);
    assert_eq!(v["bytes_checked"], bytes);
    for rel in ["a.txt", "dir/b.txt", "dir/sub/c.bin", "empty.txt"] {
        assert_eq!(
            server.count_key("GetObject", &fx.key(rel)),
            1,
            "{:?}",
            server.ops()
        );
    }
    assert_eq!(server.count("PutObject") + server.count("DeleteObject"), 0);
}

#[test]
fn verify_on_s3_reports_missing_and_replaced_objects() {
    let fx = Fx::s3();
    let server = fx.server().unwrap();
    let (id, _) = verify_tree(&fx);

    // Removed behind the tool's back, two ways; replaced with other bytes.
    std::fs::remove_file(server.object_path(BUCKET, "pre/a.txt")).unwrap();
    sdk_delete_object(server, "pre/empty.txt");
    sdk_put_object(server, "pre/dir/b.txt", b"a different, longer content\n");

    for deep in [false, true] {
        let extra: &[&str] = if deep { &["--deep"] } else { &[] };
        let (code, v) = fx.verify(extra);
        assert_eq!(code, 1, "deep {deep}: {v}");
        assert_eq!(v["snapshot"], id);
        assert_eq!(v["files"], 4);
        assert_eq!(v["ok"], 1, "only c.bin is intact: {v}");
        assert_eq!(v["missing"], 2, "{v}");
        assert_eq!(v["mismatched"], 1, "{v}");
        let problems: Vec<(&str, &str)> = v["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["path"].as_str().unwrap(), p["kind"].as_str().unwrap()))
            .collect();
        assert_eq!(
            problems,
            [
                ("a.txt", "missing"),
                ("dir/b.txt", "mismatch"),
                ("empty.txt", "missing")
            ],
            "deep {deep}"
        );
        let detail = v["problems"][0]["detail"].as_str().unwrap();
        assert!(
            detail.contains("pre/a.txt"),
            "missing detail names the key: {detail}"
        );
    }

    let r = fx.on_target(&["verify"], &[]);
    r.expect_code(1);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("missing") && l.contains("a.txt")),
        "{}",
        r.show()
    );
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("mismatch") && l.contains("dir/b.txt")),
        "{}",
        r.show()
    );
    let e = r.error_line();
    assert!(e.contains("3 file(s)") && e.contains(&id), "{e}");
    assert_no_panic(&r);
}

#[test]
fn verify_on_s3_deep_catches_same_size_corruption() {
    let fx = Fx::s3();
    let server = fx.server().unwrap();
    let (id, _) = verify_tree(&fx);
    let key = fx.key("dir/sub/c.bin");
    let etag_before = sdk_etag(server, &key);

    // Same length, other bytes, written straight into s3s-fs's file: the
    // ETag s3s-fs reports comes from its metadata sidecar, so it does not
    // change, and listings carry size only. Only reading the bytes can tell.
    let path = server.object_path(BUCKET, &key);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1500] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(
        sdk_etag(server, &key),
        etag_before,
        "s3s-fs keeps the recorded ETag"
    );

    let (code, v) = fx.verify(&["--deep"]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["snapshot"], id);
    assert_eq!(
        (v["ok"].as_u64(), v["mismatched"].as_u64()),
        (Some(3), Some(1)),
        "{v}"
    );
    let p = &v["problems"][0];
    assert_eq!(
        (p["path"].as_str(), p["kind"].as_str()),
        (Some("dir/sub/c.bin"), Some("mismatch"))
    );
    assert!(p["detail"].as_str().unwrap().contains("blake3"), "{p}");
    let r = fx.on_target(&["verify"], &["--deep"]);
    r.expect_code(1);
    assert!(r.stdout.contains("dir/sub/c.bin"), "{}", r.show());

    let (code, v) = fx.verify(&[]);
    assert_eq!(
        code, 0,
        "size and ETag still match, so a listing check passes: {v}"
    );
}

#[test]
fn verify_on_a_local_store_catches_deleted_and_modified_files() {
    let fx = Fx::local();
    let (id, bytes) = verify_tree(&fx);
    let (code, v) = fx.verify(&[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!((v["files"].as_u64(), v["ok"].as_u64()), (Some(4), Some(4)));
    let (code, v) = fx.verify(&["--deep"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["bytes_checked"], bytes);

    // Same size, other bytes, mtime put back: only --deep can tell.
    let c = fx.stored("dir/sub/c.bin");
    let mtime = filetime::FileTime::from_last_modification_time(&std::fs::metadata(&c).unwrap());
    let mut content = std::fs::read(&c).unwrap();
    content[10] ^= 0x55;
    std::fs::write(&c, &content).unwrap();
    filetime::set_file_mtime(&c, mtime).unwrap();
    let (code, v) = fx.verify(&[]);
    assert_eq!(code, 0, "size and mtime as recorded: {v}");
    let (code, v) = fx.verify(&["--deep"]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["problems"][0]["path"], "dir/sub/c.bin");
    assert_eq!(v["problems"][0]["kind"], "mismatch");
    assert!(
        v["problems"][0]["detail"].as_str().unwrap().contains("blake3"),
        "{v}"
    );

    // Same size, other bytes, new mtime: seen without --deep.
    std::fs::write(fx.stored("a.txt"), "HELLO\n").unwrap();
    // Other size; and a deleted file.
    std::fs::write(fx.stored("dir/b.txt"), "much longer than before\n").unwrap();
    std::fs::remove_file(fx.stored("empty.txt")).unwrap();
    let (code, v) = fx.verify(&[]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["snapshot"], id);
    let problems: Vec<(&str, &str)> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["path"].as_str().unwrap(), p["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        problems,
        [
            ("a.txt", "mismatch"),
            ("dir/b.txt", "mismatch"),
            ("empty.txt", "missing")
        ]
    );
    assert_eq!(
        (v["ok"].as_u64(), v["missing"].as_u64(), v["mismatched"].as_u64()),
        (Some(1), Some(1), Some(2))
    );
    let (code, v) = fx.verify(&["--deep"]);
    assert_eq!(code, 1);
    assert_eq!(
        (v["ok"].as_u64(), v["missing"].as_u64(), v["mismatched"].as_u64()),
        (Some(0), Some(1), Some(3)),
        "{v}"
    );

    let r = fx.on_target(&["verify"], &[]);
    r.expect_code(1);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("missing") && l.contains("empty.txt")),
        "{}",
        r.show()
    );
    assert!(r.error_line().contains(&id), "{}", r.show());
}

/// `--snapshot` picks the snapshot; an unknown one, an empty target and a
/// missing target are clear errors.
fn verify_picks_snapshots_and_explains_errors(fx: &Fx) {
    // A pure mirror (`--history off`): what a run replaces or deletes is gone.
    let env = &fx.env;
    env.write("a.txt", "v1\n");
    let first = id_of(&env.backup_ok(&fx.target, &["--history", "off"]).snapshot.unwrap());
    env.write_at("a.txt", "version two\n", T1);
    let second = id_of(&env.backup_ok(&fx.target, &["--history", "off"]).snapshot.unwrap());

    let (code, v) = fx.verify(&[]);
    assert_eq!((code, v["snapshot"].as_str()), (0, Some(second.as_str())), "{v}");
    let (code, v) = fx.verify(&["--snapshot", "latest"]);
    assert_eq!((code, v["snapshot"].as_str()), (0, Some(second.as_str())), "{v}");
    // The first snapshot's a.txt was overwritten by the second run.
    let (code, v) = fx.verify(&["--snapshot", &first]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["snapshot"], first);
    assert_eq!(v["problems"][0]["path"], "a.txt");
    assert_eq!(v["problems"][0]["kind"], "mismatch");

    let r = fx.on_target(&["verify"], &["--snapshot", "19990101T000000Z-nope"]);
    r.expect_code(1);
    let e = r.error_line();
    assert!(
        e.contains("19990101T000000Z-nope") && e.contains("s3backup snapshots"),
        "{e}"
    );
    assert!(r.stdout.is_empty(), "{}", r.show());
    assert_no_panic(&r);
}

#[test]
fn verify_on_s3_picks_snapshots_and_explains_errors() {
    let mut fx = Fx::s3();
    // This test replaces or deletes most of a tiny set on purpose (the guard is tested in `guard`).
    fx.env.past_guard = true;
    verify_picks_snapshots_and_explains_errors(&fx);
    let server = fx.server().unwrap();

    server.create_bucket("empty");
    let mut cmd = fx.env.cmd();
    cmd.args(["verify", "empty::x"]).args(fx.s3_args());
    let r = run(cmd);
    r.expect_code(1);
    assert!(r.error_line().contains("no snapshots"), "{}", r.show());

    let mut cmd = fx.env.cmd();
    cmd.args(["verify", "s3://no-such-bucket/p"]).args(fx.s3_args());
    let r = run(cmd);
    r.expect_code(1);
    assert!(r.error_line().contains("no-such-bucket"), "{}", r.show());
    assert!(!server.bucket_exists("no-such-bucket"), "verify creates nothing");
}

#[test]
fn verify_on_a_local_store_picks_snapshots_and_explains_errors() {
    let mut fx = Fx::local();
    // This test replaces or deletes most of a tiny set on purpose (the guard is tested in `guard`).
    fx.env.past_guard = true;
    verify_picks_snapshots_and_explains_errors(&fx);

    let empty = fx.env.root().join("empty-store");
    std::fs::create_dir_all(&empty).unwrap();
    let mut cmd = fx.env.cmd();
    cmd.arg("verify").arg(&empty);
    let r = run(cmd);
    r.expect_code(1);
    assert!(r.error_line().contains("no snapshots"), "{}", r.show());

    let missing = fx.env.root().join("no-such-store");
    let mut cmd = fx.env.cmd();
    cmd.arg("verify").arg(&missing);
    let r = run(cmd);
    r.expect_code(1);
    assert!(r.error_line().contains("no-such-store"), "{}", r.show());
    assert!(!missing.exists(), "verify creates nothing");
}

// ---------------------------------------------------------------------------
// state rebuild, and backups that find no state

/// Inode numbers of the stored files (a local store rewrites by renaming a
/// new file into place, so an unchanged inode means an untouched file).
fn stored_inodes(fx: &Fx, rels: &[&str]) -> Vec<u64> {
    rels.iter()
        .map(|r| std::fs::metadata(fx.stored(r)).unwrap().ino())
        .collect()
}

const REBUILD_FILES: [&str; 4] = ["a.txt", "dir/b.txt", "dir/sub/c.bin", "empty.txt"];

fn state_rebuild_restores_what_a_lost_state_file_knew(fx: &Fx) {
    let env = &fx.env;
    let (id, _) = verify_tree(fx);
    let before = stored_inodes(fx, &REBUILD_FILES);
    std::fs::remove_file(&env.state).unwrap();

    let r = fx.rebuild(&["--json"]);
    r.expect_code(0);
    let v = one_json(&r);
    assert_eq!(v["snapshot"], id);
    assert_eq!(v["files"], 4);
    assert_eq!(v["dirs"], 2, "dir and dir/sub: {v}");
    assert_eq!(v["matching"], 4);
    assert_eq!(
        (
            v["to_hash"].as_u64(),
            v["missing_locally"].as_u64(),
            v["refused"].as_u64()
        ),
        (Some(0), Some(0), Some(0))
    );
    let files = fx.state_files(&[]);
    assert_eq!(files.len(), 4);
    assert_eq!(files[0]["path"], "a.txt");
    assert_eq!(files[0]["blake3"], blake3_hex(b"hello\n"));
    assert_eq!(files[0]["mtime_ns"], ns(T0));

    fx.clear_requests();
    let s = env.backup_ok(&fx.target, &[]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 4,
            unchanged: 4,
            ..Counts::default()
        }
    );
    assert_eq!(s.snapshot, None, "nothing changed, no new snapshot");
    fx.assert_no_file_writes();
    assert_eq!(stored_inodes(fx, &REBUILD_FILES), before);

    // Lost again, with one file changed (other size) and one removed locally.
    std::fs::remove_file(&env.state).unwrap();
    env.write_at("dir/b.txt", "bee, but longer\n", T1);
    env.remove("empty.txt");
    let r = fx.rebuild(&[]);
    r.expect_code(0);
    assert!(r.stdout.contains(&id), "{}", r.show());
    assert!(r.stdout.contains("4 files"), "{}", r.show());
    let r = fx.rebuild(&["--json"]);
    r.expect_code(0);
    let v = one_json(&r);
    assert_eq!(
        (
            v["matching"].as_u64(),
            v["to_hash"].as_u64(),
            v["missing_locally"].as_u64()
        ),
        (Some(2), Some(1), Some(1)),
        "{v}"
    );

    fx.clear_requests();
    let s = env.backup_ok(&fx.target, &[]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 3,
            uploaded: 1,
            unchanged: 2,
            ..Counts::default()
        }
    );
    if let Some(server) = fx.server() {
        assert_eq!(
            server.count_key("PutObject", "pre/dir/b.txt"),
            1,
            "{:?}",
            server.ops()
        );
        let puts: Vec<String> = server
            .requests()
            .into_iter()
            .filter(|r| r.op == "PutObject" && r.key.as_deref().is_some_and(|k| !k.contains(".s3backup/")))
            .map(|r| r.key.unwrap_or_default())
            .collect();
        assert_eq!(puts, ["pre/dir/b.txt"]);
        // The one copy keeps b.txt's old content for older snapshots (history).
        let copies: Vec<String> = server
            .requests()
            .into_iter()
            .filter(|r| r.op == "CopyObject")
            .map(|r| r.key.unwrap_or_default())
            .collect();
        assert_eq!(copies.len(), 1, "{copies:?}");
        assert!(copies[0].starts_with("pre/.s3backup/content/"), "{copies:?}");
    }
    assert_eq!(
        std::fs::read(fx.stored("dir/b.txt")).unwrap(),
        b"bee, but longer\n"
    );
}

#[test]
fn state_rebuild_from_s3_then_a_backup_uploads_nothing() {
    state_rebuild_restores_what_a_lost_state_file_knew(&Fx::s3());
}

#[test]
fn state_rebuild_from_a_local_store_then_a_backup_copies_nothing() {
    state_rebuild_restores_what_a_lost_state_file_knew(&Fx::local());
}

#[test]
fn state_rebuild_without_snapshots_is_a_clear_error() {
    for fx in [Fx::s3(), Fx::local()] {
        fx.env.write("a.txt", "a");
        if let Store::Local(root) = &fx.store {
            std::fs::create_dir_all(root).unwrap();
        }
        for json in [false, true] {
            let r = fx.rebuild(if json { &["--json"] } else { &[] });
            r.expect_code(1);
            let e = r.error_line();
            assert!(e.contains("no snapshots"), "{e}");
            assert!(r.stdout.is_empty(), "{}", r.show());
            assert_no_panic(&r);
        }
    }
    // A target that does not exist at all.
    let fx = Fx::local();
    let r = fx.rebuild(&[]);
    r.expect_code(1);
    assert!(r.error_line().contains("does not exist"), "{}", r.show());
    if let Store::Local(root) = &fx.store {
        assert!(!root.exists(), "rebuild creates no store");
    }
}

/// A backup with a fresh state path against a target with a snapshot
/// rebuilds on its own: unchanged files are not sent, a changed one is.
fn backup_without_state_rebuilds_from_the_latest_snapshot(fx: &mut Fx) {
    let (_, _) = verify_tree(fx);
    let before = stored_inodes(fx, &REBUILD_FILES);

    fx.env.state = fx.env.root().join("fresh-1/state.db");
    fx.clear_requests();
    let r = fx.env.backup(&fx.target, &["--json"]);
    r.expect_code(0);
    let s = r.summary();
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 4,
            unchanged: 4,
            ..Counts::default()
        },
        "{}",
        r.show()
    );
    assert!(r.stderr.contains("rebuilt"), "the user is told\n{}", r.show());
    fx.assert_no_file_writes();
    assert_eq!(stored_inodes(fx, &REBUILD_FILES), before);
    assert_eq!(
        fx.state_files(&[]).len(),
        4,
        "the new state file knows every file"
    );

    fx.env.state = fx.env.root().join("fresh-2/state.db");
    fx.env.write("dir/sub/c.bin", noise(4000, 8));
    fx.clear_requests();
    let s = fx.env.backup_ok(&fx.target, &[]);
    assert_eq!(
        s.counts(),
        Counts {
            scanned: 4,
            uploaded: 1,
            unchanged: 3,
            ..Counts::default()
        }
    );
    assert_eq!(s.bytes_sent, 4000);
    if let Some(server) = fx.server() {
        let puts: Vec<String> = server
            .requests()
            .into_iter()
            .filter(|r| {
                ["PutObject", "CopyObject"].contains(&r.op.as_str())
                    && r.key.as_deref().is_some_and(|k| !k.contains(".s3backup/"))
            })
            .map(|r| r.key.unwrap_or_default())
            .collect();
        assert_eq!(puts, ["pre/dir/sub/c.bin"]);
    }
    assert_eq!(std::fs::read(fx.stored("dir/sub/c.bin")).unwrap(), noise(4000, 8));
    let unchanged = ["a.txt", "dir/b.txt", "empty.txt"];
    let old: Vec<u64> = [0, 1, 3].iter().map(|&i| before[i]).collect();
    assert_eq!(stored_inodes(fx, &unchanged), old);
}

#[test]
fn backup_to_s3_without_state_rebuilds_and_uploads_only_changes() {
    backup_without_state_rebuilds_from_the_latest_snapshot(&mut Fx::s3());
}

#[test]
fn backup_to_a_local_store_without_state_rebuilds_and_copies_only_changes() {
    backup_without_state_rebuilds_from_the_latest_snapshot(&mut Fx::local());
}

// ---------------------------------------------------------------------------
// Damaged and too-new state files

/// Every command that opens the state file, with the arguments to run it.
fn state_users(fx: &Fx) -> Vec<(String, Command)> {
    let mut out = Vec::new();
    out.push(("backup".to_owned(), fx.env.backup_cmd(&fx.target, &[])));
    out.push((
        "backup --json".to_owned(),
        fx.env.backup_cmd(&fx.target, &["--json"]),
    ));
    for args in [
        &["sets"][..],
        &["sets", "--json"],
        &["files"],
        &["files", "--json"],
        &["show", "a.txt"],
        &["runs"],
        &["stats"],
        &["stats", "--json"],
    ] {
        let mut cmd = fx.state_cmd();
        cmd.arg("state").args(args);
        out.push((format!("state {}", args.join(" ")), cmd));
    }
    out
}

fn remove_sqlite_sidecars(state: &Path) {
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = state.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

fn damaged_state_file_is_a_one_line_error(fx: &Fx) {
    let env = &fx.env;
    env.write("a.txt", "a");
    env.backup_ok(&fx.target, &[]);
    let state_text = env.state.display().to_string();

    let real = std::fs::read(&env.state).unwrap();
    let mut half_broken = real.clone();
    for b in &mut half_broken[100..] {
        *b = 0xab;
    }
    let damages: [(&str, Vec<u8>); 3] = [
        ("garbage", vec![b'x'; 8192]),
        ("short garbage", b"not a database\n".to_vec()),
        ("header kept, pages overwritten", half_broken),
    ];
    for (what, bytes) in damages {
        remove_sqlite_sidecars(&env.state);
        std::fs::write(&env.state, &bytes).unwrap();
        for (name, cmd) in state_users(fx) {
            let r = run(cmd);
            let ctx = format!("{what}, {name}");
            assert_no_panic(&r);
            assert_eq!(r.code, Some(1), "{ctx}: exit code\n{}", r.show());
            assert!(r.stdout.is_empty(), "{ctx}: nothing on stdout\n{}", r.show());
            assert_eq!(
                r.stderr.trim().lines().count(),
                1,
                "{ctx}: one line\n{}",
                r.show()
            );
            let e = r.error_line();
            assert!(e.contains(&state_text), "{ctx}: names the file: {e}");
            assert!(
                e.contains("state rebuild"),
                "{ctx}: points to 'state rebuild': {e}"
            );
            assert_eq!(
                std::fs::read(&env.state).unwrap(),
                bytes,
                "{ctx}: the file is left alone"
            );
        }
    }
}

#[test]
fn damaged_state_file_with_s3_is_a_one_line_error_naming_it() {
    damaged_state_file_is_a_one_line_error(&Fx::s3());
}

#[test]
fn damaged_state_file_with_a_local_store_is_a_one_line_error_naming_it() {
    damaged_state_file_is_a_one_line_error(&Fx::local());
}

fn newer_schema_is_refused_with_its_version(fx: &Fx) {
    let env = &fx.env;
    env.write("a.txt", "a");
    env.backup_ok(&fx.target, &[]);
    {
        let conn = rusqlite::Connection::open(&env.state).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    for (name, cmd) in state_users(fx) {
        let r = run(cmd);
        assert_no_panic(&r);
        assert_eq!(r.code, Some(1), "{name}: exit code\n{}", r.show());
        assert!(r.stdout.is_empty(), "{name}\n{}", r.show());
        let e = r.error_line();
        assert!(
            e.contains(&env.state.display().to_string()),
            "{name}: names the file: {e}"
        );
        assert!(
            e.contains("99") && e.contains("version"),
            "{name}: says which version: {e}"
        );
    }
    // Refused, not migrated or overwritten.
    let conn = rusqlite::Connection::open(&env.state).unwrap();
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(v, 99);
}

#[test]
fn newer_schema_with_s3_is_refused_with_its_version() {
    newer_schema_is_refused_with_its_version(&Fx::s3());
}

#[test]
fn newer_schema_with_a_local_store_is_refused_with_its_version() {
    newer_schema_is_refused_with_its_version(&Fx::local());
}
