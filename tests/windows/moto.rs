//! moto's S3 server (`moto_server`), run on the Linux side of wine: the
//! in-process s3s-fs server keeps each object in a file of its own, so,
//! inside wine, it cannot hold a key Windows refuses as a file name
//! (`a:b.txt`) nor two keys differing only by case. moto keeps keys in
//! memory, as any real S3 does.
//!
//! wine starts a Linux executable handed to `CreateProcess` as it is
//! (`Z:\bin\sh`); the shell writes its pid to `/tmp` and becomes moto
//! (`S3BACKUP_MOTO_SERVER`, a Linux path, which `.ci/windows.sh` sets
//! as `.ci/run` does); dropping [`Moto`] runs
//! `kill` on that pid. Readiness is a TCP
//! connect retried until a deadline.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::server::S3Server;

/// How long moto may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// A running `moto_server`, stopped on drop.
pub struct Moto {
    /// The shell that became moto; kept, not waited for (see [`Drop`]).
    _shell: Child,
    /// `Z:\tmp\s3backup-wine-moto-PORT.pid`: moto's Linux pid.
    pid_file: String,
    addr: SocketAddr,
    rt: tokio::runtime::Runtime,
    client: aws_sdk_s3::Client,
}

impl Drop for Moto {
    fn drop(&mut self) {
        // wine has no handle for a Linux process it started (waiting on
        // one fails), so moto is stopped by its pid, which the shell wrote.
        if let Ok(pid) = std::fs::read_to_string(&self.pid_file) {
            let _ = Command::new(r"Z:\bin\kill").arg(pid.trim()).status();
            let _ = std::fs::remove_file(&self.pid_file);
        }
    }
}

impl Moto {
    /// Starts moto on a free port of 127.0.0.1 and makes `bucket` there.
    pub fn start(bucket: &str) -> Moto {
        // wine hides HOME from Windows programs: .ci/windows.sh sets this.
        let exe = std::env::var("S3BACKUP_MOTO_SERVER")
            .ok()
            .filter(|p| !p.is_empty())
            .expect(
                "S3BACKUP_MOTO_SERVER (the Linux path of moto_server) is not set: run through .ci/windows.sh",
            );
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind 127.0.0.1:0")
            .local_addr()
            .expect("a local address")
            .port();
        let script = r#"[ -x "$0" ] || { echo "moto_server not found at $0 (set S3BACKUP_MOTO_SERVER)" >&2; exit 127; }
echo $$ > "/tmp/s3backup-wine-moto-$1.pid"
exec "$0" -H 127.0.0.1 -p "$1" </dev/null >/dev/null 2>&1"#;
        let shell = Command::new(r"Z:\bin\sh")
            .args(["-c", script, &exe, &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start moto through Z:\\bin\\sh: {e}"));
        let pid_file = format!(r"Z:\tmp\s3backup-wine-moto-{port}.pid");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{exe} not listening on {addr} after {START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let client = client(&format!("http://{addr}"));
        let moto = Moto {
            _shell: shell,
            pid_file,
            addr,
            rt,
            client,
        };
        moto.rt
            .block_on(moto.client.create_bucket().bucket(bucket).send())
            .expect("CreateBucket");
        moto
    }

    /// The endpoint URL, for `--endpoint-url`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// PutObject of `body` at `key`, as any S3 client (a Linux backup) would.
    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) {
        self.rt
            .block_on(
                self.client
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .body(body.to_vec().into())
                    .send(),
            )
            .unwrap_or_else(|e| panic!("PutObject {key}: {e:?}"));
    }

    /// A symlink object at `key` pointing at `target`, as a Linux backup
    /// stores one (user metadata `type: symlink`, the target as its body).
    pub fn put_link(&self, bucket: &str, key: &str, target: &str) {
        self.rt
            .block_on(
                self.client
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .metadata("type", "symlink")
                    .body(target.as_bytes().to_vec().into())
                    .send(),
            )
            .unwrap_or_else(|e| panic!("PutObject {key}: {e:?}"));
    }

    /// Every key under `prefix`, sorted.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .rt
                .block_on(
                    self.client
                        .list_objects_v2()
                        .bucket(bucket)
                        .prefix(prefix)
                        .set_continuation_token(token)
                        .send(),
                )
                .expect("ListObjectsV2");
            keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
            token = page.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        keys.sort();
        keys
    }
}

/// An SDK client for `endpoint` with the test keys, path-style.
fn client(endpoint: &str) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            S3Server::ACCESS_KEY,
            S3Server::SECRET_KEY,
            None,
            None,
            "test",
        ))
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}
