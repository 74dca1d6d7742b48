//! A real distributed store for the tests: a three-node Garage cluster
//! (replication factor 3, consistency mode `consistent`) on 127.0.0.1,
//! set up by the tests themselves: one configuration file, metadata and
//! data directory per node, the nodes connected to each other, a layout
//! of three zones applied, the test key imported and a bucket made for it.
//!
//! Garage writes and reads with a quorum of two of the three copies, so a
//! cluster with one node killed (SIGKILL, [`Garage::kill`]) still serves
//! every request through the two left; [`Garage::restart`] brings a node
//! back on its old ports and directories.
//!
//! The `garage` executable is `S3BACKUP_GARAGE`, else the first `garage`
//! on `PATH`; without one the tests are skipped with a printed reason, and
//! under `CI=true` they fail, as the moto tests do. `.ci/run` builds it
//! with `cargo install garage` into `$HOME/.cache` and sets the variable.
//! Garage's own integration tests (`tests/common/garage.rs` in its crate)
//! set up a single node the same way; this is that, times three.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::common::block_on;
use crate::server::S3Server;

/// The S3 region the cluster answers to (`s3_region`): Garage refuses a
/// signature made for any other, so every command passes `--region`.
pub(crate) const REGION: &str = "garage";
/// The bucket [`Garage::start`] makes.
pub(crate) const BUCKET: &str = "backups";
/// A bucket of the harness's own, for the writes that prove a node serves.
const PROBE_BUCKET: &str = "probe";
/// How long the cluster may take to come up (processes, layout, bucket).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The RPC secret the nodes share (32 bytes, hex).
const RPC_SECRET: &str = "5e3bac2b5e3bac2b5e3bac2b5e3bac2b5e3bac2b5e3bac2b5e3bac2b5e3bac2b";

/// One node: its configuration file, ports and process.
struct GarageNode {
    config: PathBuf,
    s3: SocketAddr,
    rpc: SocketAddr,
    log: PathBuf,
    child: Option<Child>,
}

/// A running three-node cluster; the processes are killed on drop.
pub(crate) struct Garage {
    exe: PathBuf,
    nodes: Vec<GarageNode>,
    dir: TempDir,
}

impl Drop for Garage {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Says a test is skipped, straight to stderr (the harness captures
/// `eprintln!` of passing tests, and this must be seen).
fn skip(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "{test}: skipped: {why}");
}

/// The garage executable: `S3BACKUP_GARAGE`, else the first on `PATH`.
fn find_garage() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("S3BACKUP_GARAGE").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "S3BACKUP_GARAGE={} is not a file", p.display());
        return Some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("garage"))
        .find(|p| p.is_file())
}

/// Two free ports on 127.0.0.1 (RPC, S3), held until the caller lets them go.
fn free_ports() -> (Vec<TcpListener>, Vec<SocketAddr>) {
    let listeners: Vec<TcpListener> = (0..2)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    let addrs = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    (listeners, addrs)
}

impl Garage {
    /// Starts a cluster with [`BUCKET`] made and the test key allowed on
    /// it, or returns None (after saying so) when Garage is not installed;
    /// panics instead when `CI=true`.
    pub(crate) fn start(test: &str) -> Option<Garage> {
        let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
        let Some(exe) = find_garage() else {
            assert!(
                !ci,
                "garage not found (CI=true): set S3BACKUP_GARAGE or put garage on PATH \
                 (cargo install garage --locked)"
            );
            skip(
                test,
                "garage not found (set S3BACKUP_GARAGE, or `cargo install garage --locked`)",
            );
            return None;
        };
        // A port taken between its pick and the node's bind (another test
        // picking at the same moment) makes the node exit: pick again.
        let mut last = String::new();
        for _ in 0..3 {
            match Garage::try_start(&exe) {
                Ok(g) => return Some(g),
                Err(e) => last = e,
            }
        }
        panic!("garage cluster did not start:\n{last}");
    }

    fn try_start(exe: &Path) -> Result<Garage, String> {
        let dir = tempfile::Builder::new()
            .prefix("s3backup-garage-")
            .tempdir()
            .unwrap();
        let mut held = Vec::new();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let (listeners, addrs) = free_ports();
            held.extend(listeners);
            let root = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&root).unwrap();
            let config = root.join("garage.toml");
            std::fs::write(
                &config,
                format!(
                    r#"metadata_dir = "{root}/meta"
data_dir = "{root}/data"
db_engine = "sqlite"
replication_factor = 3
consistency_mode = "consistent"
rpc_bind_addr = "{rpc}"
rpc_public_addr = "{rpc}"
rpc_secret = "{RPC_SECRET}"
# Short timeouts: a killed peer is noticed in seconds, not a minute.
rpc_timeout_msec = 5000
rpc_ping_timeout_msec = 2000

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "{s3}"
root_domain = ".s3.garage.localhost"
"#,
                    root = root.display(),
                    rpc = addrs[0],
                    s3 = addrs[1],
                ),
            )
            .unwrap();
            nodes.push(GarageNode {
                config,
                s3: addrs[1],
                rpc: addrs[0],
                log: root.join("server.log"),
                child: None,
            });
        }
        drop(held);
        let mut g = Garage {
            exe: exe.to_path_buf(),
            nodes,
            dir,
        };
        for i in 0..3 {
            g.spawn(i);
        }
        g.set_up().map_err(|e| format!("{e}\n{}", g.logs()))?;
        Ok(g)
    }

    /// Starts node `i`'s server process (its ports and directories as before).
    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        let child = Command::new(&self.exe)
            .arg("-c")
            .arg(&node.config)
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.exe.display()));
        node.child = Some(child);
    }

    /// Waits for the nodes to listen, connects them, applies a layout of
    /// three zones and makes the key and the bucket.
    fn set_up(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        for i in 0..3 {
            self.wait_listening(i, deadline)?;
        }
        let ids: Vec<String> = (0..3)
            .map(|i| {
                let out = self.cli(i, &["node", "id", "-q"])?;
                Ok(out.trim().to_string())
            })
            .collect::<Result<_, String>>()?;
        for id in &ids[1..] {
            self.cli(0, &["node", "connect", id])?;
        }
        for (i, id) in ids.iter().enumerate() {
            let short = id.split('@').next().unwrap_or(id);
            self.cli(
                0,
                &["layout", "assign", "-z", &format!("z{i}"), "-c", "1G", short],
            )?;
        }
        self.cli(0, &["layout", "apply", "--version", "1"])?;
        // The layout reaches the other nodes in the background: key and
        // bucket writes need a quorum that knows it, so they are retried.
        self.until(deadline, |g| {
            g.cli(
                0,
                &[
                    "key",
                    "import",
                    "--yes",
                    "-n",
                    "s3backup-test",
                    S3Server::ACCESS_KEY,
                    S3Server::SECRET_KEY,
                ],
            )
        })?;
        self.create_bucket(BUCKET);
        self.create_bucket(PROBE_BUCKET);
        Ok(())
    }

    /// Makes `name` and lets the test key read, write and own it.
    pub(crate) fn create_bucket(&self, name: &str) {
        let deadline = Instant::now() + START_TIMEOUT;
        let made = self
            .until(deadline, |g| g.cli(0, &["bucket", "create", name]))
            .and_then(|_| {
                self.until(deadline, |g| {
                    g.cli(
                        0,
                        &[
                            "bucket",
                            "allow",
                            "--read",
                            "--write",
                            "--owner",
                            name,
                            "--key",
                            S3Server::ACCESS_KEY,
                        ],
                    )
                })
            });
        if let Err(e) = made {
            panic!("garage bucket {name}: {e}\n{}", self.logs());
        }
        // The S3 API reads the bucket and the key through a quorum too.
        let client = self.client(0);
        self.until(deadline, |_| {
            block_on(client.head_bucket().bucket(name).send())
                .map(|_| String::new())
                .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(&e).to_string())
        })
        .unwrap_or_else(|e| panic!("garage bucket {name} not served: {e}\n{}", self.logs()));
    }

    /// Repeats `f` every 100 ms until it succeeds or `deadline` passes
    /// (polling a cluster coming up, not a sleep standing in for an event).
    fn until(
        &self,
        deadline: Instant,
        f: impl Fn(&Garage) -> Result<String, String>,
    ) -> Result<String, String> {
        loop {
            match f(self) {
                Ok(out) => return Ok(out),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn wait_listening(&mut self, i: usize, deadline: Instant) -> Result<(), String> {
        loop {
            if TcpStream::connect_timeout(&self.nodes[i].s3, Duration::from_secs(1)).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.nodes[i].child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("garage node {i} exited ({status}) before listening"));
            }
            if Instant::now() >= deadline {
                return Err(format!("garage node {i} not listening on {}", self.nodes[i].s3));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `garage -c <node i's config> ARGS`; its stdout, or the error.
    pub(crate) fn cli(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let out: Output = Command::new(&self.exe)
            .arg("-c")
            .arg(&self.nodes[i].config)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running garage: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "garage {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// The S3 endpoint of node `i` (`http://127.0.0.1:PORT`).
    pub(crate) fn endpoint(&self, i: usize) -> String {
        format!("http://{}", self.nodes[i].s3)
    }

    /// Kills node `i` with SIGKILL, as a machine losing power would.
    pub(crate) fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts node `i` again after [`Garage::kill`] and waits until it
    /// serves S3 writes: a node just started answers before it has
    /// reconnected to its peers, and until then cannot reach a write
    /// quorum (503 "Could not reach quorum"). So the wait is for a write
    /// through it, into a bucket of the harness's own.
    pub(crate) fn restart(&mut self, i: usize) {
        self.spawn(i);
        let deadline = Instant::now() + START_TIMEOUT;
        if let Err(e) = self.wait_listening(i, deadline) {
            panic!("{e}\n{}", self.logs());
        }
        let client = self.client(i);
        self.until(deadline, |_| {
            block_on(
                client
                    .put_object()
                    .bucket(PROBE_BUCKET)
                    .key("probe")
                    .body(b"probe".to_vec().into())
                    .send(),
            )
            .map(|_| String::new())
            .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(&e).to_string())
        })
        .unwrap_or_else(|e| panic!("garage node {i} not serving after restart: {e}\n{}", self.logs()));
    }

    /// A plain aws-sdk-s3 client for node `i` (the test key, region
    /// [`REGION`], path-style, checksums only where required).
    pub(crate) fn client(&self, i: usize) -> aws_sdk_s3::Client {
        crate::common::sdk_client_in(&self.endpoint(i), REGION)
    }

    /// Every key in `bucket`, through node `i`.
    pub(crate) fn keys(&self, i: usize, bucket: &str) -> Vec<String> {
        let client = self.client(i);
        block_on(async {
            let mut keys = Vec::new();
            let mut pages = client.list_objects_v2().bucket(bucket).into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.unwrap_or_else(|e| {
                    panic!("listing {bucket}: {}", aws_sdk_s3::error::DisplayErrorContext(&e))
                });
                keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
            }
            keys
        })
    }

    /// The nodes' logs, for a failure message.
    pub(crate) fn logs(&self) -> String {
        let mut text = format!("(cluster in {})\n", self.dir.path().display());
        for (i, node) in self.nodes.iter().enumerate() {
            let log = std::fs::read_to_string(&node.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            text.push_str(&format!("--- node {i} (rpc {}) ---\n", node.rpc));
            for line in tail.into_iter().rev() {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }
}
