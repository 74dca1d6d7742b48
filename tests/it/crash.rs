//! Crash safety: `s3backup backup` killed with SIGKILL at random moments,
//! then run again, must never leave the backup or its state unusable.
//!
//! Each harness test runs seeded trials (default 20). A trial:
//!
//! 1. changes the source tree at random: new, changed, renamed, deleted,
//!    re-dated and re-moded files, files given content the tree had now or
//!    earlier (server-side copies), and one file large enough for a
//!    multipart upload (5 MiB threshold and parts, the smallest S3 allows)
//!    that is sometimes rewritten or renamed;
//! 2. spawns `s3backup backup` (with or without `--delete`, at random) and
//!    kills it with SIGKILL as soon as a random kill point is reached. Kill
//!    points are counted, never timed: against S3 they are requests that
//!    reached the test server (or that it answered), against a local
//!    directory store they are file-system events (inotify) in the state
//!    file's directory and the store's directories (WAL writes, temp files,
//!    renames). Point 0 kills during start-up; points past the end let the
//!    run finish, which must then exit 0;
//! 3. after the kill checks that the state database passes `PRAGMA
//!    integrity_check` and is still in WAL mode; that every object under
//!    `.s3backup/manifests/` is a complete manifest under a manifest name;
//!    that `s3backup verify` reports no file missing that the state claims;
//!    and that every row of `state files --json` has its object in the
//!    bucket with the recorded size and blake3;
//! 4. runs the backup again, which must finish (exit 0, no failed file, no
//!    complaint about the state file), then checks the state against the
//!    bucket again, that `verify` finds the latest snapshot intact, and that
//!    a restore into an empty directory is the source tree byte for byte,
//!    with mtimes and modes, plus the files deleted locally since the last
//!    `--delete` run (a snapshot keeps them by design).
//!
//! Two gaps are known (see [`Harness::known_gap`]): right after a kill the
//! state can still describe an object the run had already replaced or
//! deleted. The default harnesses let exactly those pass (and count them);
//! the `strict_*` harnesses and the two deterministic reproductions below
//! fail on them and are ignored until `src/` is fixed.
//!
//! Reproducing a failure: every failure prints its seed. Set
//! `S3BACKUP_CRASH_SEED=<seed>` to replay it and `S3BACKUP_CRASH_TRIALS=<n>`
//! for more or fewer trials, e.g.
//! `S3BACKUP_CRASH_TRIALS=200 cargo test --test it crash -- --nocapture`;
//! `--nocapture` also shows the kill points and phases a run reached.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::server::{Request, S3Server};

/// Trials per harness test when `S3BACKUP_CRASH_TRIALS` is not set.
const DEFAULT_TRIALS: usize = 20;
/// Bucket of the S3 variant.
const BUCKET: &str = "crash";
/// Prefix of the S3 variant (keys are not at the bucket root).
const PREFIX: &str = "p";
/// Size of the file that goes up in parts: just over the 5 MiB threshold.
const BIG_SIZE: usize = 5 * MIB + 300 * 1024;
/// Path of the multipart-sized file in a fresh tree.
const BIG_PATH: &str = "big/large.bin";
/// Options every backup of the harness gets: the smallest multipart
/// threshold and part size, so the big file goes up in two parts.
const BACKUP_ARGS: &[&str] = &["--multipart-threshold", "5MiB", "--part-size", "5MiB"];
/// Longest a single spawned backup may take before the test gives up.
const CHILD_TIMEOUT: Duration = Duration::from_secs(90);
/// How long one wait for a kill point lasts before the harness looks
/// whether the child exited on its own (it never decides the kill point).
const WAIT_SLICE: Duration = Duration::from_millis(20);

/// The seed and the trial count: from the environment, or a fresh seed
/// and [`DEFAULT_TRIALS`].
fn seed_and_trials() -> (u64, usize) {
    let seed = match std::env::var("S3BACKUP_CRASH_SEED") {
        Ok(s) => s.trim().parse().expect("S3BACKUP_CRASH_SEED is a u64"),
        Err(_) => fastrand::u64(..),
    };
    let trials = match std::env::var("S3BACKUP_CRASH_TRIALS") {
        Ok(s) => s.trim().parse().expect("S3BACKUP_CRASH_TRIALS is a number"),
        Err(_) => DEFAULT_TRIALS,
    };
    (seed, trials)
}

/// Random kills of backups to S3 (the in-process server), at request
/// arrivals and at replies; the known gaps pass right after a kill.
#[test]
fn kill_backup_to_s3_at_random_requests() {
    s3_harness(false);
}

/// Random kills of backups to a local directory store, at file-system
/// events; the known gaps pass right after a kill.
#[test]
fn kill_backup_to_local_store_at_random_fs_events() {
    local_harness(false);
}

/// The S3 harness with no gap let pass: the state file must never claim an
/// object the bucket does not hold, not even right after a kill.
#[test]
fn strict_kill_backup_to_s3_at_random_requests() {
    s3_harness(true);
}

/// The local-store harness with no gap let pass.
#[test]
fn strict_kill_backup_to_local_store_at_random_fs_events() {
    local_harness(true);
}

fn s3_harness(strict: bool) {
    let server = S3Server::start();
    let (seed, trials) = seed_and_trials();
    Harness::new(seed, Store::S3(&server), strict).run_trials(trials);
}

fn local_harness(strict: bool) {
    let (seed, trials) = seed_and_trials();
    Harness::new(seed, Store::Local, strict).run_trials(trials);
}

/// Gap 1, reduced: a run replaces `x.txt`'s object and is killed before
/// it hears so; the state still says the object holds the old content.
/// The next run, asked for that old content under a new name while
/// `x.txt` is gone, copies `x.txt`'s object server-side — the new bytes —
/// and records them as the old content, so the old content is lost and a
/// restore of `y.txt` fails.
#[test]
fn killed_after_replacing_an_object_then_a_copy_from_its_stale_row_loses_data() {
    let server = S3Server::start();
    let env = TestEnv::with_server(&server);
    let target = format!("s3://{BUCKET}/{PREFIX}");
    let old = b"first version of x\n".to_vec();
    env.write_at("x.txt", &old, (1_600_000_000, 1));
    env.backup_ok(&target, &[]);

    // The server replaces the object, then the run dies before the reply.
    env.write_at("x.txt", b"second version, longer\n", (1_600_000_100, 1));
    server.hold_replies(&format!("{PREFIX}/x.txt"));
    server.clear_requests();
    // The set's one file is replaced: past the change tripwire's default.
    let mut child = spawn_quiet(env.backup_cmd(&target, &["--max-change", "100%"]));
    let replaced = server.wait_for_matching(1, CHILD_TIMEOUT, |r| {
        is_op_on(r, "PutObject", "x.txt") && r.status == 200
    });
    kill(&mut child);
    child.wait().unwrap();
    server.release_replies();
    assert!(replaced, "the run never replaced x.txt: {:?}", server.ops());

    // The invariant: a row must describe the object the bucket holds.
    // (No row at all is fine: the state then claims nothing about x.txt.)
    let row = state_row(&env, "x.txt");
    let object = server.object_bytes(BUCKET, &format!("{PREFIX}/x.txt")).unwrap();
    let stale = row.as_ref().is_some_and(|r| *r != blake3_hex(&object));

    // What it costs: the old content comes back under a new name.
    env.remove("x.txt");
    env.write_at("y.txt", &old, (1_600_000_200, 1));
    // x.txt, the set's one file, is deleted: past the delete guard's default.
    let s = env.backup_ok(&target, &["--delete", "--max-delete", "100%"]);
    let dest = env.root().join("restored");
    let r = env.restore(&target, &dest, &["--json"]);
    let restored = std::fs::read(dest.join("y.txt")).ok();
    assert!(
        !stale && restored.as_deref() == Some(&old[..]),
        "after the kill the state row of x.txt says blake3 {row:?} but the object is {} (stale: {stale}); \
         the next backup ({} copied, {} uploaded) then gave y.txt {:?} instead of {:?}\n{}",
        blake3_hex(&object),
        s.copied,
        s.uploaded,
        restored.as_deref().map(String::from_utf8_lossy),
        String::from_utf8_lossy(&old),
        r.show()
    );
}

/// Gap 2, reduced: a `--delete` run deletes an object and is killed
/// before it hears so; the state still claims the deleted object.
#[test]
fn killed_after_deleting_an_object_the_state_still_claims_it() {
    let server = S3Server::start();
    let env = TestEnv::with_server(&server);
    let target = format!("s3://{BUCKET}/{PREFIX}");
    env.write("keep.txt", "keep\n").write("gone.txt", "gone\n");
    env.backup_ok(&target, &[]);

    env.remove("gone.txt");
    server.hold_replies(&format!("{PREFIX}/gone.txt"));
    server.clear_requests();
    let mut child = spawn_quiet(env.backup_cmd(&target, &["--delete"]));
    let deleted = server.wait_for_matching(1, CHILD_TIMEOUT, |r| {
        is_op_on(r, "DeleteObject", "gone.txt") && r.status != 0
    });
    kill(&mut child);
    child.wait().unwrap();
    server.release_replies();
    assert!(deleted, "the run never deleted gone.txt: {:?}", server.ops());
    assert!(
        server
            .object_bytes(BUCKET, &format!("{PREFIX}/gone.txt"))
            .is_none()
    );
    assert_eq!(
        state_row(&env, "gone.txt"),
        None,
        "the state still claims gone.txt, whose object was deleted"
    );
}

/// Whether a logged request is operation `op` on `PREFIX/rel`.
fn is_op_on(r: &Request, op: &str, rel: &str) -> bool {
    r.op == op && r.key.as_deref() == Some(&format!("{PREFIX}/{rel}"))
}

/// Spawns a command with its output thrown away (for runs that get killed).
fn spawn_quiet(mut cmd: std::process::Command) -> Child {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn s3backup")
}

/// The blake3 the state records for `path`, if it has a row.
fn state_row(env: &TestEnv, path: &str) -> Option<String> {
    state_files(env).remove(path).map(|(_, b)| b)
}

/// `state files --json`: path -> (size, blake3).
fn state_files(env: &TestEnv) -> BTreeMap<String, (u64, String)> {
    if !env.state.exists() {
        return BTreeMap::new();
    }
    let mut cmd = env.cmd();
    cmd.arg("state")
        .arg("files")
        .arg("--json")
        .arg("--state")
        .arg(&env.state);
    let r = run(cmd);
    r.expect_code(0);
    assert_no_state_complaint(&r);
    r.stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("state files line is JSON");
            (
                v["path"].as_str().unwrap().to_owned(),
                (
                    v["size"].as_u64().unwrap(),
                    v["blake3"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

/// Where the harness backs up to.
enum Store<'a> {
    /// Bucket [`BUCKET`], prefix [`PREFIX`], on this server.
    S3(&'a S3Server),
    /// A directory store at `ROOT/store`.
    Local,
}

/// Where one killed run was stopped, for the histogram printed at the end.
struct KillRecord {
    /// The kill point asked for.
    point: usize,
    /// Whether the process was killed (false: it finished first).
    killed: bool,
    /// What it was doing: the last request or file-system event seen.
    phase: String,
}

/// One harness: a test environment, its model of the tree, its random source.
struct Harness<'a> {
    env: TestEnv,
    store: Store<'a>,
    target: String,
    seed: u64,
    rng: fastrand::Rng,
    /// The trial under way (for the failure message).
    trial: usize,
    /// The kill point of the trial under way (for the failure message).
    point: usize,
    /// Whether the trial under way runs with `--delete`.
    delete: bool,
    /// Whether the known gaps of [`Self::known_gap`] fail the test.
    strict: bool,
    /// Known gaps let pass, by kind (printed at the end).
    gaps: BTreeMap<&'static str, usize>,
    /// Counter for new file and directory names (never reused).
    next_name: u64,
    /// Contents the tree had at some time: material for copies.
    history: Vec<Vec<u8>>,
    /// The tree as of the end of the previous trial (all of it backed up).
    last_tree: BTreeMap<String, Node>,
    /// Files deleted locally since the last `--delete` run: the bucket and
    /// the latest snapshot still hold them, so a restore brings them back.
    ghosts: BTreeMap<String, Node>,
    /// (actions, kill points) of every run seen whole so far, to estimate
    /// where a run ends.
    observed: Vec<(f64, f64)>,
    /// The most kill points one run took.
    max_points: usize,
    /// File-system event source of the local variant.
    watcher: Option<Inotify>,
    records: Vec<KillRecord>,
    started: Instant,
}

impl Drop for Harness<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "crash harness failed in trial {} (kill point {}, --delete: {}): reproduce with \
                 S3BACKUP_CRASH_SEED={} S3BACKUP_CRASH_TRIALS={}",
                self.trial,
                self.point,
                self.delete,
                self.seed,
                self.trial + 1
            );
        }
    }
}

impl<'a> Harness<'a> {
    fn new(seed: u64, store: Store<'a>, strict: bool) -> Harness<'a> {
        let env = match &store {
            Store::S3(server) => TestEnv::with_server(server),
            Store::Local => TestEnv::new(),
        };
        let target = match &store {
            Store::S3(_) => format!("s3://{BUCKET}/{PREFIX}"),
            Store::Local => env.root().join("store").to_str().unwrap().to_owned(),
        };
        std::fs::create_dir_all(env.root().join("logs")).unwrap();
        let watcher = matches!(store, Store::Local).then(Inotify::new);
        println!("crash harness: seed {seed} (S3BACKUP_CRASH_SEED={seed} replays it)");
        Harness {
            env,
            store,
            target,
            seed,
            rng: fastrand::Rng::with_seed(seed),
            trial: 0,
            point: 0,
            delete: false,
            strict,
            gaps: BTreeMap::new(),
            next_name: 0,
            history: Vec::new(),
            last_tree: BTreeMap::new(),
            ghosts: BTreeMap::new(),
            observed: Vec::new(),
            max_points: 0,
            watcher,
            records: Vec::new(),
            started: Instant::now(),
        }
    }

    fn run_trials(&mut self, trials: usize) {
        for t in 0..trials {
            self.trial = t;
            self.one_trial();
        }
        self.print_histogram();
    }

    fn one_trial(&mut self) {
        if self.trial == 0 {
            self.build_tree();
        } else {
            self.mutate();
        }
        self.delete = self.rng.bool();
        let mut args: Vec<&str> = BACKUP_ARGS.to_vec();
        if self.delete {
            args.push("--delete");
        }
        // Kill points up to a bit past where the run should end (estimated
        // from its dry-run plan), so some runs finish; start-up
        // (points 0 and 1) gets extra weight.
        let expected = self.expected_points(&args);
        // (File-system event counts vary more: inotify merges repeated events.)
        let hi = match self.store {
            Store::S3(_) => expected + expected / 8 + 1,
            Store::Local => expected + expected * 2 / 3 + 2,
        };
        self.point = if self.rng.u8(..10) == 0 {
            self.rng.usize(0..2)
        } else {
            self.rng.usize(0..=hi)
        };
        let record = self.spawn_and_kill(&args, self.point);
        self.records.push(record);

        // After the kill: what is on disk and in the bucket must be sound.
        self.check_state_db();
        self.check_manifests();
        self.check_history();
        let rows = state_files(&self.env);
        self.check_verify_after_kill(&rows);
        self.check_rows_against_store(&rows, true);

        // The re-run finishes the job.
        self.drain_events();
        self.clear_requests();
        let mut rerun_args = vec!["--json"];
        rerun_args.extend_from_slice(&args);
        let r = self.env.backup(&self.target, &rerun_args);

        r.expect_code(0);
        assert_no_state_complaint(&r);
        let summary = r.summary();
        assert_eq!(summary.failed, 0, "the re-run had failures\n{}", r.show());
        let used = self.points_used();
        self.observe(used, &summary);

        self.check_state_db();
        self.check_manifests();
        self.check_history();
        let rows = state_files(&self.env);
        self.check_rows_against_store(&rows, false);

        // Files gone locally stay in the bucket and the snapshot unless
        // this run had `--delete` (see `ghosts`).
        let now = tree(&self.env.src);
        for (path, node) in &self.last_tree {
            if matches!(node.kind, Kind::File(_)) && !now.contains_key(path) {
                self.ghosts.insert(path.clone(), node.clone());
            }
        }
        self.ghosts.retain(|p, _| !now.contains_key(p));
        if self.delete {
            self.ghosts.clear();
        }
        self.last_tree = now;
        self.check_verify_clean();
        self.check_restore();
        self.check_verify_clean();
    }

    // ----- the source tree -----

    fn fresh_name(&mut self, prefix: &str) -> String {
        self.next_name += 1;
        format!("{prefix}{:03}", self.next_name)
    }

    /// A random past mtime with nanoseconds (never in the racy window).
    fn mtime(&mut self) -> (i64, u32) {
        (
            1_500_000_000 + self.rng.i64(0..200_000_000),
            self.rng.u32(0..1_000_000_000),
        )
    }

    /// Random bytes of a random small size (empty now and then), remembered.
    fn small_content(&mut self) -> Vec<u8> {
        let len = match self.rng.u8(..10) {
            0 => 0,
            1..=6 => self.rng.usize(1..400),
            _ => self.rng.usize(400..6000),
        };
        let c = noise(len, self.rng.u64(..));
        self.history.push(c.clone());
        c
    }

    /// Directories of the tree (relative paths), and "" for the root.
    fn dirs(&self) -> Vec<String> {
        let mut v = vec![String::new()];
        v.extend(
            tree(&self.env.src)
                .into_iter()
                .filter(|(_, n)| n.kind == Kind::Dir)
                .map(|(p, _)| p),
        );
        v
    }

    /// A directory for a new file: an existing one, or a new one in it.
    fn some_dir(&mut self) -> String {
        let dirs = self.dirs();
        let parent = dirs[self.rng.usize(..dirs.len())].clone();
        if self.rng.u8(..4) == 0 {
            let name = self.fresh_name("d");
            join(&parent, &name)
        } else {
            parent
        }
    }

    /// A path for a new file.
    fn new_path(&mut self) -> String {
        let dir = self.some_dir();
        let name = self.fresh_name("f");
        join(&dir, &format!("{name}.txt"))
    }

    /// Writes a file with a random mtime and mode.
    fn write_file(&mut self, rel: &str, content: &[u8]) {
        let mtime = self.mtime();
        self.env.write_at(rel, content, mtime);
        let mode = [0o644, 0o600, 0o755][self.rng.usize(..3)];
        self.env.set_mode(rel, mode);
    }

    fn build_tree(&mut self) {
        for d in ["d1/e1/f1", "d2/e2", "d3", "empty/inner"] {
            std::fs::create_dir_all(self.env.path(d)).unwrap();
        }
        for _ in 0..32 {
            let p = self.new_path();
            let content = self.small_content();
            self.write_file(&p, &content);
        }
        let big = noise(BIG_SIZE, self.rng.u64(..));
        self.write_file(BIG_PATH, &big);
    }

    /// Regular files of the source tree: (path, size).
    fn files(&self) -> Vec<(String, usize)> {
        files_of(&self.env.src)
            .into_iter()
            .map(|(p, n)| match n.kind {
                Kind::File(b) => (p, b.len()),
                _ => unreachable!(),
            })
            .collect()
    }

    /// 1 to 6 random changes; the tree stays between 20 and 50 files.
    fn mutate(&mut self) {
        let changes = self.rng.usize(1..=6);
        for _ in 0..changes {
            let files = self.files();
            let all: Vec<String> = files.iter().map(|(p, _)| p.clone()).collect();
            let small: Vec<String> = files
                .iter()
                .filter(|(_, len)| *len < MIB)
                .map(|(p, _)| p.clone())
                .collect();
            let big: Option<String> = files.iter().find(|(_, len)| *len >= MIB).map(|(p, _)| p.clone());
            let op = if files.len() < 20 {
                0
            } else if files.len() > 50 {
                3
            } else {
                self.rng.u8(..9)
            };
            let any = self.rng.usize(..all.len());
            let one = self.rng.usize(..small.len());
            match op {
                // A new file.
                0 => {
                    let p = self.new_path();
                    let content = self.small_content();
                    self.write_file(&p, &content);
                }
                // New content (half the time of the same size), new mtime.
                1 => {
                    let old_len = files.iter().find(|(p, _)| *p == small[one]).unwrap().1;
                    let content = if self.rng.bool() && old_len > 0 {
                        noise(old_len, self.rng.u64(..))
                    } else {
                        self.small_content()
                    };
                    self.history.push(content.clone());
                    self.write_file(&small[one], &content);
                }
                // A rename (the mtime travels), maybe into a new directory.
                2 => {
                    let to = self.new_path();
                    self.env.rename(&all[any], &to);
                }
                // A deletion.
                3 => {
                    self.env.remove(&small[one]);
                }
                // Same content, new mtime.
                4 => {
                    let mtime = self.mtime();
                    self.env.set_mtime(&all[any], mtime);
                }
                // New mode only.
                5 => {
                    let mode = [0o644, 0o600, 0o755, 0o640][self.rng.usize(..4)];
                    self.env.set_mode(&small[one], mode);
                }
                // A new file with content the tree has or had.
                6 => {
                    let content = self.history[self.rng.usize(..self.history.len())].clone();
                    let p = self.new_path();
                    self.write_file(&p, &content);
                }
                // An existing file gets content the tree has or had.
                7 => {
                    let content = self.history[self.rng.usize(..self.history.len())].clone();
                    self.write_file(&small[one], &content);
                }
                // The big file: rewritten (a new multipart upload), or made again.
                _ => {
                    let content = noise(BIG_SIZE, self.rng.u64(..));
                    let p = big.unwrap_or_else(|| BIG_PATH.to_owned());
                    self.write_file(&p, &content);
                }
            }
        }
    }

    // ----- killing a run -----

    /// About how many kill points the backup about to run will take: a
    /// straight line (fixed cost + cost per action) fitted to the runs seen
    /// whole so far, applied to its planned actions (from a dry run).
    fn expected_points(&self, args: &[&str]) -> usize {
        let mut dry = vec!["--dry-run", "--json"];
        dry.extend_from_slice(args);
        let r = self.env.backup(&self.target, &dry);
        r.expect_code(0);
        let (_, s) = r.trailing_summary();
        let actions = (s.uploaded + s.copied + s.touched + s.deleted) as f64;
        let (base, per_action) = match self.store {
            Store::S3(_) => (3.0, 1.2),
            Store::Local => (25.0, 5.0),
        };
        let n = self.observed.len() as f64;
        let mean = |f: fn(&(f64, f64)) -> f64| self.observed.iter().map(f).sum::<f64>() / n;
        let (ma, mp) = (mean(|o| o.0), mean(|o| o.1));
        let var: f64 = self.observed.iter().map(|o| (o.0 - ma).powi(2)).sum();
        let cov: f64 = self.observed.iter().map(|o| (o.0 - ma) * (o.1 - mp)).sum();
        let (base, per_action) = if n >= 3.0 && var > 0.0 {
            let slope = (cov / var).max(0.5);
            ((mp - slope * ma).max(1.0), slope)
        } else {
            (base, per_action)
        };
        (base + per_action * actions).ceil() as usize
    }

    /// Records a run seen whole: `points` used for what `s` reports.
    fn observe(&mut self, points: usize, s: &Summary) {
        let actions = (s.uploaded + s.copied + s.touched + s.deleted) as f64;
        self.observed.push((actions, points as f64));
        self.max_points = self.max_points.max(points);
    }

    /// Spawns a backup and kills it with SIGKILL at kill point `point`.
    fn spawn_and_kill(&mut self, args: &[&str], point: usize) -> KillRecord {
        if let Some(w) = &self.watcher {
            // The store's directories exist from the first completed run on.
            w.watch(self.env.root(), "state");
            let store = self.env.root().join("store");
            w.watch(&store, "store");
            w.watch(&store.join(".s3backup/tmp"), "store tmp");
            w.watch(&store.join(".s3backup/manifests"), "manifests");
        }
        self.drain_events();
        self.clear_requests();
        let logs = self.env.root().join("logs");
        let (out_path, err_path) = (logs.join("killed.stdout"), logs.join("killed.stderr"));
        let mut child = self
            .env
            .backup_cmd(&self.target, &[&["--json"], args].concat())
            .stdout(File::create(&out_path).unwrap())
            .stderr(File::create(&err_path).unwrap())
            .spawn()
            .expect("spawn s3backup");
        let deadline = Instant::now() + CHILD_TIMEOUT;
        let by_replies = self.rng.bool();
        let mut seen = 0usize;
        let mut phase = String::from("start-up");
        let reached = loop {
            let reached = match &self.store {
                Store::S3(server) if by_replies => server.wait_for_replies(point, WAIT_SLICE),
                Store::S3(server) => server.wait_for_requests(point, WAIT_SLICE),
                Store::Local => {
                    if seen < point {
                        for label in self.watcher.as_ref().unwrap().wait(WAIT_SLICE) {
                            seen += 1;
                            phase = label;
                            if seen >= point {
                                break;
                            }
                        }
                    }
                    seen >= point
                }
            };
            if reached || child.try_wait().unwrap().is_some() {
                break reached;
            }
            if Instant::now() > deadline {
                kill(&mut child);
                panic!("the backup neither finished nor reached kill point {point} within {CHILD_TIMEOUT:?}");
            }
        };
        if reached {
            kill(&mut child);
        }
        let status = child.wait().unwrap();
        if let Store::S3(server) = &self.store {
            assert!(
                server.wait_settled(CHILD_TIMEOUT),
                "point {point}: the server is still busy with the killed run's requests"
            );
            let reqs = server.requests();
            let last = if by_replies {
                reqs.iter().filter(|r| r.status != 0).take(point).last()
            } else {
                point.checked_sub(1).and_then(|i| reqs.get(i))
            };
            if let Some(r) = last {
                let manifest = r
                    .key
                    .as_deref()
                    .is_some_and(|k| k.contains("/.s3backup/manifests/"));
                phase = format!(
                    "{}{}{}",
                    r.op,
                    if manifest { " (manifest)" } else { "" },
                    if by_replies { " answered" } else { " arrived" }
                );
            }
        }
        let killed = status.signal() == Some(libc::SIGKILL);
        if !killed {
            assert_eq!(
                status.code(),
                Some(0),
                "a backup that was not killed must succeed: {status:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
            let used = self.points_used();
            let out = std::fs::read_to_string(&out_path).unwrap();
            let summary: Summary = serde_json::from_str(out.trim()).expect("--json summary");
            self.observe(used, &summary);
        }
        KillRecord {
            point,
            killed,
            phase: if killed { phase } else { "finished".into() },
        }
    }

    /// Kill points a run used since the last [`Self::clear_requests`] /
    /// [`Self::drain_events`]: requests, or file-system events.
    fn points_used(&self) -> usize {
        match &self.store {
            Store::S3(server) => server.requests().len(),
            Store::Local => self.watcher.as_ref().unwrap().drain().len(),
        }
    }

    fn clear_requests(&self) {
        if let Store::S3(server) = &self.store {
            server.clear_requests();
        }
    }

    fn drain_events(&self) {
        if let Some(w) = &self.watcher {
            w.drain();
        }
    }

    // ----- checks -----

    /// The state file is a sound SQLite database, still in WAL mode.
    fn check_state_db(&self) {
        if !self.env.state.exists() {
            return; // killed before it was created
        }
        let conn = rusqlite::Connection::open(&self.env.state).expect("open the state file");
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("integrity_check runs");
        assert_eq!(check, "ok", "the state file fails PRAGMA integrity_check");
        // A run killed between creating the file and setting it up leaves
        // an empty file, which is an empty database to SQLite (and the
        // next run sets it up); any other must be in WAL mode.
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        if version > 0 {
            assert_eq!(mode, "wal", "the state file left WAL mode");
        }
    }

    /// Keys (relative to the target prefix) and bytes of every object
    /// under the target, `.s3backup/` included.
    fn objects(&self) -> BTreeMap<String, Vec<u8>> {
        match &self.store {
            Store::S3(server) => server
                .list_keys(BUCKET)
                .into_iter()
                .filter_map(|k| {
                    let rel = k.strip_prefix(&format!("{PREFIX}/"))?.to_owned();
                    let bytes = server.object_bytes(BUCKET, &k).unwrap();
                    Some((rel, bytes))
                })
                .collect(),
            Store::Local => {
                let store = self.env.root().join("store");
                if !store.is_dir() {
                    return BTreeMap::new();
                }
                files_of(&store)
                    .into_iter()
                    .map(|(p, n)| match n.kind {
                        Kind::File(b) => (p, b),
                        _ => unreachable!(),
                    })
                    .collect()
            }
        }
    }

    /// Every object in the manifests area is a complete manifest under a
    /// manifest name: a half-written one never gets its final name.
    fn check_manifests(&self) {
        for (key, bytes) in self.objects() {
            let Some(name) = key.strip_prefix(".s3backup/manifests/") else {
                continue;
            };
            assert!(
                is_manifest_name(name),
                "unexpected object {key} among the manifests"
            );
            let raw = zstd::decode_all(&bytes[..])
                .unwrap_or_else(|e| panic!("manifest {key} is not a complete zstd frame: {e}"));
            assert!(raw.ends_with(b"\n"), "manifest {key} ends mid-line");
            let m = Manifest::decode(&bytes);
            assert_eq!(m.header["run_id"].as_str(), name.get(17..49), "run ID of {key}");
        }
    }

    /// Every file of every snapshot ever written (none is forgotten here)
    /// is still in the store: at its key with the snapshot's content, or
    /// in the content area under its blake3 (history): a kill never loses
    /// what a snapshot lists, whenever it strikes.
    fn check_history(&self) {
        let objects = self.objects();
        let holds = |key: &str, blake3: &str| objects.get(key).is_some_and(|b| blake3_hex(b) == blake3);
        for (key, bytes) in &objects {
            if !key.starts_with(".s3backup/manifests/") {
                continue;
            }
            let m = Manifest::decode(bytes);
            for f in &m.files {
                if f["type"] != "file" {
                    continue;
                }
                let (path, blake3) = (f["path"].as_str().unwrap(), f["blake3"].as_str().unwrap());
                let kept = format!(".s3backup/content/{}/{blake3}", &blake3[..2]);
                if !(holds(path, blake3) || holds(&kept, blake3)) {
                    let listed: Vec<String> = objects
                        .iter()
                        .filter(|(k, _)| k.starts_with(".s3backup/manifests/"))
                        .map(|(k, b)| {
                            let m = Manifest::decode(b);
                            let e = m.files.iter().find(|f| f["path"] == path);
                            format!("{k}: {:?}", e.map(|e| e["blake3"].clone()))
                        })
                        .collect();
                    panic!(
                        "seed {}: snapshot {key} lists {path} ({blake3}), which is neither at its key nor kept in history; \
                         the key holds {:?}; snapshots: {listed:#?}; state row: {:?}",
                        self.seed,
                        objects.get(path).map(|b| blake3_hex(b)),
                        state_row(&self.env, path)
                    );
                }
            }
        }
    }

    /// Every file the state claims is in the bucket with that content.
    /// Right after a kill (`after_kill`) a non-strict harness lets the
    /// known gaps of [`Self::known_gap`] pass, counting them.
    #[track_caller]
    fn check_rows_against_store(&mut self, rows: &BTreeMap<String, (u64, String)>, after_kill: bool) {
        let objects = self.objects();
        let mut wrong = Vec::new();
        for (path, (size, blake3)) in rows {
            let object = objects.get(path);
            let problem = match object {
                None => format!("{path}: the state claims it, the bucket has no object"),
                Some(b) if b.len() as u64 != *size || blake3_hex(b) != *blake3 => format!(
                    "{path}: the state claims {size} bytes with blake3 {}, the object has {} bytes \
                     with blake3 {}",
                    &blake3[..12.min(blake3.len())],
                    b.len(),
                    &blake3_hex(b)[..12]
                ),
                Some(_) => continue,
            };
            if after_kill && self.tolerate(path, object.map(Vec::as_slice)) {
                continue;
            }
            wrong.push(problem);
        }
        assert!(
            wrong.is_empty(),
            "{}: the state file claims objects the bucket does not hold:\n{}",
            if after_kill {
                "after the kill"
            } else {
                "after the re-run"
            },
            wrong.join("\n")
        );
    }

    /// Whether a state row that disagrees with the bucket right after a kill
    /// is one of the two known gaps (reproduced by the ignored tests above),
    /// which the re-run repairs:
    /// - a stale row: the run replaced the object with the file's new
    ///   content (the object now equals the source file) and was killed
    ///   before recording it, so the row still describes the old content;
    /// - a forgotten delete: a `--delete` run deleted the object of a file
    ///   gone locally and was killed before removing its row.
    fn known_gap(&self, path: &str, object: Option<&[u8]>) -> Option<&'static str> {
        let local = std::fs::read(self.env.path(path)).ok();
        match (object, local) {
            (Some(o), Some(l)) if o == l => Some("stale row"),
            (None, None) if self.delete => Some("forgotten delete"),
            _ => None,
        }
    }

    /// Counts and lets pass a known gap, unless the harness is strict.
    fn tolerate(&mut self, path: &str, object: Option<&[u8]>) -> bool {
        if self.strict {
            return false;
        }
        match self.known_gap(path, object) {
            Some(gap) => {
                *self.gaps.entry(gap).or_default() += 1;
                true
            }
            None => false,
        }
    }

    fn verify_run(&self) -> Run {
        let mut cmd = self.env.cmd();
        cmd.arg("verify").arg(&self.target).arg("--json");
        if let Some(e) = &self.env.endpoint {
            cmd.arg("--endpoint-url").arg(e);
        }
        run(cmd)
    }

    /// After a kill the latest snapshot may name objects the run has since
    /// replaced or deleted, but none that the state still claims.
    fn check_verify_after_kill(&mut self, rows: &BTreeMap<String, (u64, String)>) {
        let r = self.verify_run();
        if r.code == Some(1) && r.stdout.trim().is_empty() {
            // No snapshot (or no bucket) yet: only before the first manifest.
            let manifests = self
                .objects()
                .keys()
                .filter(|k| k.starts_with(".s3backup/manifests/"))
                .count();
            assert_eq!(
                manifests,
                0,
                "verify failed although there are manifests\n{}",
                r.show()
            );
            return;
        }
        assert!(matches!(r.code, Some(0 | 1)), "verify\n{}", r.show());
        let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("verify --json");
        let missing: Vec<String> = v["problems"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["kind"] == "missing")
            .filter_map(|p| p["path"].as_str())
            .filter(|p| rows.contains_key(*p))
            .map(str::to_owned)
            .collect();
        let claimed: Vec<&String> = missing.iter().filter(|p| !self.tolerate(p, None)).collect();
        assert!(
            claimed.is_empty(),
            "verify: the state claims files the bucket lacks: {claimed:?}\n{}",
            r.show()
        );
    }

    fn check_verify_clean(&self) {
        let r = self.verify_run();
        r.expect_code(0);
        let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("verify --json");
        assert_eq!(v["problems"], serde_json::json!([]), "verify\n{}", r.show());
    }

    /// A restore into an empty directory is the source tree plus the ghosts.
    fn check_restore(&self) {
        let dest = self.env.root().join(format!("restored-{}", self.trial));
        let s = self.env.restore_ok(&self.target, &dest, &[]);
        assert_eq!(s.failed, 0, "restore failures: {:?}", s.failures);
        let mut want = tree(&self.env.src);
        for (p, n) in &self.ghosts {
            want.insert(p.clone(), n.clone());
        }
        let got = tree(&dest);
        if got != want {
            let keys: BTreeSet<&String> = got.keys().chain(want.keys()).collect();
            let diff: Vec<String> = keys
                .into_iter()
                .filter(|k| got.get(*k) != want.get(*k))
                .map(|k| format!("{k}: restored {:?}, expected {:?}", got.get(k), want.get(k)))
                .collect();
            panic!("the restore differs from the source:\n{}", diff.join("\n"));
        }
        std::fs::remove_dir_all(&dest).unwrap();
    }

    fn print_histogram(&self) {
        let killed = self.records.iter().filter(|r| r.killed).count();
        let mut by_point: BTreeMap<usize, usize> = BTreeMap::new();
        let mut by_phase: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &self.records {
            *by_point.entry(r.point).or_default() += 1;
            *by_phase.entry(&r.phase).or_default() += 1;
        }
        println!(
            "crash harness (seed {}): {} trials in {:.1?}, {killed} killed, {} finished; \
             longest run {} kill points",
            self.seed,
            self.records.len(),
            self.started.elapsed(),
            self.records.len() - killed,
            self.max_points
        );
        println!("  kill points: {by_point:?}");
        println!("  phases: {by_phase:?}");
        println!("  known gaps let pass right after a kill: {:?}", self.gaps);
    }
}

/// SIGKILL (what `Child::kill` sends on Unix) to a child this test spawned
/// and has not reaped yet, so its pid cannot belong to anyone else.
fn kill(child: &mut Child) {
    let _ = child.kill();
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// A run must not have found the state file damaged.
#[track_caller]
fn assert_no_state_complaint(r: &Run) {
    for bad in ["malformed", "damaged", "not a database", "state file '"] {
        assert!(
            !r.stderr.contains(bad),
            "complaint about the state file\n{}",
            r.show()
        );
    }
}

/// Linux inotify on a few directories (not recursive): the kill points of
/// the local-store harness. Each directory has a label, reported per event.
/// `confine_store` uses it too, to stop or kill a run at a point it reached.
pub(crate) struct Inotify {
    fd: OwnedFd,
    labels: std::cell::RefCell<BTreeMap<i32, &'static str>>,
}

/// One inotify event: the watched directory's label, the event mask
/// (`libc::IN_*`) and the name of the entry it concerns.
pub(crate) struct FsEvent {
    pub label: &'static str,
    pub mask: u32,
    pub name: String,
}

impl Inotify {
    pub(crate) fn new() -> Inotify {
        // SAFETY: a plain system call; the result is checked.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0, "inotify_init1: {}", std::io::Error::last_os_error());
        Inotify {
            // SAFETY: a fresh descriptor that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            labels: Default::default(),
        }
    }

    /// Watches `dir` (if it exists) for writes, creations, renames, deletions.
    pub(crate) fn watch(&self, dir: &Path, label: &'static str) {
        if !dir.is_dir() {
            return;
        }
        let c = CString::new(dir.as_os_str().as_bytes()).unwrap();
        let mask = libc::IN_MODIFY
            | libc::IN_CREATE
            | libc::IN_DELETE
            | libc::IN_MOVED_FROM
            | libc::IN_MOVED_TO
            | libc::IN_CLOSE_WRITE;
        // SAFETY: a valid descriptor and a NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), mask) };
        assert!(
            wd >= 0,
            "inotify_add_watch {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
        self.labels.borrow_mut().insert(wd, label);
    }

    /// Waits up to `timeout` for events (woken by the kernel), then returns
    /// a label per event, e.g. "state: state.db-wal".
    fn wait(&self, timeout: Duration) -> Vec<String> {
        self.poll(timeout);
        self.drain()
    }

    /// Waits (woken by the kernel, up to `timeout` in all) until an event
    /// satisfies `pred`; true if one did. Events before it are dropped.
    pub(crate) fn wait_for(&self, timeout: Duration, mut pred: impl FnMut(&FsEvent) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.events().iter().any(&mut pred) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.poll(left);
        }
    }

    fn poll(&self, timeout: Duration) {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
    }

    /// The events queued so far, without waiting, as labels (state files
    /// by name; not the names of objects and temp files).
    fn drain(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .map(|e| {
                let name = match e.label {
                    "state" => e.name,
                    "store tmp" => "temp file".into(),
                    "manifests" => "manifest".into(),
                    _ => "object or directory".into(),
                };
                format!("{}: {name}", e.label)
            })
            .collect()
    }

    /// The events queued so far, without waiting.
    fn events(&self) -> Vec<FsEvent> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: `buf` is writable for its whole length.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return out;
            }
            // struct inotify_event: wd, mask, cookie, len (4 bytes each), name[len].
            let mut i = 0;
            while i + 16 <= n as usize {
                let field = |at: usize| u32::from_ne_bytes(buf[i + at..i + at + 4].try_into().unwrap());
                let wd = field(0) as i32;
                let mask = field(4);
                let len = field(12) as usize;
                let name = &buf[i + 16..i + 16 + len];
                let name = String::from_utf8_lossy(name.split(|&b| b == 0).next().unwrap_or_default());
                let label = self.labels.borrow().get(&wd).copied().unwrap_or("?");
                out.push(FsEvent {
                    label,
                    mask,
                    name: name.into_owned(),
                });
                i += 16 + len;
            }
        }
    }
}
