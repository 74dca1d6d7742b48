//! An S3 server started inside the test process, for tests that run the real
//! binary (or an SDK client) against the real S3 protocol.
//!
//! [`S3Server::start`] serves `s3s-fs` (objects are plain files under a
//! temporary root) on `127.0.0.1:<random port>` from a background thread
//! with its own tokio runtime, so plain synchronous `#[test]` functions can
//! use it; it stops when dropped.
//!
//! Besides storing objects it lets a test see and steer what happens:
//! - every HTTP request is logged at the HTTP layer, before authentication,
//!   so requests that fail auth are counted too ([`S3Server::requests`],
//!   [`S3Server::count`]). The whole request body is read before s3s sees
//!   the request, so an error reply never races a half-sent upload;
//! - [`S3Server::deny_bucket`] answers every request on a bucket with
//!   403 AccessDenied;
//! - [`S3Server::fail_key`] makes writes of matching keys fail with
//!   503 SlowDown (transient: the AWS SDK retries it) or 403 AccessDenied;
//! - [`S3Server::add_listed_key`] makes ListObjectsV2 show keys that a
//!   file-system-backed store cannot hold (`../x`, `a//b`, `folder/`), as
//!   S3 itself would list them, so restores can be fed hostile names;
//! - [`S3Server::wait_for_requests`] / [`S3Server::wait_for_replies`] /
//!   [`S3Server::wait_for_matching`] block until the log holds n requests
//!   (or n answered ones, or n matching ones), woken by the server itself,
//!   so a test can act at an exact point of a client's run (the crash tests
//!   kill the binary there) without sleeping;
//! - [`S3Server::hold_replies`] carries out requests on matching keys but
//!   holds their replies back until [`S3Server::release_replies`], so a test
//!   can kill a client after the server acted and before it heard so;
//! - a DeleteObject removes the directories s3s-fs made for the key's
//!   "folders" once they are empty, before it answers: S3 has no folders,
//!   so once `a/x` is deleted a key `a` can be written, as on S3 (s3s-fs
//!   alone would keep an empty directory `a` and refuse it).
//!
//! The policy hooks live in an `s3s::access::S3Access` implementation, which
//! s3s calls after the signature check and route resolution; that is also
//! where the operation name of a logged request is filled in.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::SimpleAuth;
use s3s::path::S3Path;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{Body, HttpError, HttpResponse, S3Result, s3_error};
use tempfile::TempDir;

/// One HTTP request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// HTTP method, e.g. "PUT".
    pub method: String,
    /// URL path, percent-decoded, e.g. "/bucket/dir/a b.txt".
    pub path: String,
    /// Raw query string without the '?', e.g. "list-type=2&prefix=p%2F".
    pub query: String,
    /// Operation name, e.g. "PutObject". Taken from s3s's routing when the
    /// request got that far; for requests rejected earlier (bad signature)
    /// it is guessed from the method, path, query and headers.
    pub op: String,
    /// Whether `op` comes from s3s (true) or is a guess (false).
    pub op_resolved: bool,
    /// Bucket named in the path, if any.
    pub bucket: Option<String>,
    /// Object key named in the path, if any.
    pub key: Option<String>,
    /// HTTP status of the reply (0 if the connection failed before one).
    pub status: u16,
    /// The `Range` header, if the request had one (e.g. "bytes=0-99").
    pub range: Option<String>,
    /// Names of checksum headers and encodings some S3-compatible servers
    /// reject (`x-amz-checksum-*`, `x-amz-sdk-checksum-algorithm`,
    /// `x-amz-trailer`, `Content-Encoding: aws-chunked`).
    pub checksum_headers: Vec<String>,
    /// The values of the `x-amz-checksum-*` and
    /// `x-amz-sdk-checksum-algorithm` headers, as sent.
    pub checksum_values: Vec<(String, String)>,
    /// Storage class, server-side encryption and ACL headers, as sent.
    pub write_headers: Vec<(String, String)>,
    /// Whether the server stopped working on the request without a reply
    /// (the client hung up, e.g. because it was killed).
    pub abandoned: bool,
    /// Bytes of the request body the server read.
    pub bytes_in: u64,
    /// Bytes of the reply's body, as its `Content-Length` announces it
    /// (0 for a HEAD, whose header gives the object's size but no body).
    pub bytes_out: u64,
}

/// Marks its request abandoned when dropped before the request got a
/// status: hyper drops a request's future when the client goes away.
struct Abandon {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Abandon {
    fn drop(&mut self) {
        self.shared.update(self.id, |r| r.abandoned = r.status == 0);
    }
}

#[derive(Debug)]
struct FailRule {
    key_contains: String,
    remaining: Option<usize>,
    transient: bool,
}

#[derive(Default)]
struct Shared {
    log: Mutex<Vec<(u64, Request)>>,
    /// Notified whenever `log` changes (a request arrives or gets its status).
    log_changed: Condvar,
    next_id: AtomicU64,
    denied: Mutex<HashSet<String>>,
    /// Keys whose GETs answer as S3 does for an object in an archive class.
    archived: Mutex<HashSet<String>>,
    rules: Mutex<Vec<FailRule>>,
    /// Key substrings whose replies are held back (`hold_replies`).
    held: Mutex<Vec<String>>,
    /// Wakes held replies when `held` shrinks.
    released: tokio::sync::Notify,
    /// Extra (key, size) entries that listings of a bucket show.
    listed: Mutex<HashMap<String, Vec<(String, u64)>>>,
    /// The directory s3s-fs keeps its buckets in.
    root: PathBuf,
}

impl Shared {
    fn update(&self, id: u64, f: impl FnOnce(&mut Request)) {
        let mut log = self.log.lock().unwrap();
        // Recent requests are at the end; a cleared log simply has no entry.
        if let Some((_, r)) = log.iter_mut().rev().find(|(i, _)| *i == id) {
            f(r);
        }
        self.log_changed.notify_all();
    }

    /// Blocks until `done(log)` holds or `timeout` passes; returns whether it holds.
    fn wait_log(&self, timeout: Duration, done: impl Fn(&[(u64, Request)]) -> bool) -> bool {
        let log = self.log.lock().unwrap();
        let (log, _) = self
            .log_changed
            .wait_timeout_while(log, timeout, |log| !done(log))
            .unwrap();
        done(&log)
    }
}

/// Marks a request (in its http extensions) with its log entry.
#[derive(Clone, Copy)]
struct LogId(u64);

/// Operations that `fail_key` rules apply to.
const WRITE_OPS: &[&str] = &["PutObject", "UploadPart", "CreateMultipartUpload", "CopyObject"];

struct Policy {
    shared: Arc<Shared>,
}

#[async_trait::async_trait]
impl S3Access for Policy {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let op = cx.s3_op().name().to_owned();
        let (bucket, key) = match cx.s3_path() {
            S3Path::Root => (None, None),
            S3Path::Bucket { bucket } => (Some(bucket.to_string()), None),
            S3Path::Object { bucket, key } => (Some(bucket.to_string()), Some(key.to_string())),
        };
        if let Some(LogId(id)) = cx.extensions_mut().get::<LogId>().copied() {
            self.shared.update(id, |r| {
                r.op = op.clone();
                r.op_resolved = true;
                r.bucket = bucket.clone();
                r.key = key.clone();
            });
        }
        if cx.credentials().is_none() {
            return Err(s3_error!(AccessDenied, "Signature is required"));
        }
        if let Some(b) = &bucket
            && self.shared.denied.lock().unwrap().contains(b)
        {
            return Err(s3_error!(AccessDenied, "Access Denied"));
        }
        // S3 neither reads nor copies an archived object (CopyObject names
        // its source in `x-amz-copy-source`: `bucket/key`, percent-encoded).
        let copy_source = (op == "CopyObject")
            .then(|| cx.headers().get("x-amz-copy-source"))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let v = v.trim_start_matches('/');
                let v = v.split_once("?versionId=").map_or(v, |(k, _)| k);
                let decoded = percent_decode(v);
                decoded
                    .split_once('/')
                    .map(|(_, k)| k.to_owned())
                    .unwrap_or_default()
            });
        let read = if op == "GetObject" {
            key.clone()
        } else {
            copy_source
        };
        if let Some(k) = &read
            && self.shared.archived.lock().unwrap().contains(k)
        {
            return Err(s3_error!(
                InvalidObjectState,
                "The operation is not valid for the object's storage class"
            ));
        }
        if let Some(k) = &key
            && WRITE_OPS.contains(&op.as_str())
        {
            let mut rules = self.shared.rules.lock().unwrap();
            if let Some(i) = rules.iter().position(|r| k.contains(&r.key_contains)) {
                let transient = rules[i].transient;
                if let Some(n) = &mut rules[i].remaining {
                    *n -= 1;
                    if *n == 0 {
                        rules.remove(i);
                    }
                }
                return Err(if transient {
                    s3_error!(SlowDown, "Please reduce your request rate (test rule)")
                } else {
                    s3_error!(AccessDenied, "Access Denied (test rule)")
                });
            }
        }
        Ok(())
    }
}

/// The hyper service: log, buffer the body, hand over to s3s, log the status.
#[derive(Clone)]
struct Logged {
    inner: S3Service,
    shared: Arc<Shared>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for Logged {
    type Response = HttpResponse;
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let id = this.shared.next_id.fetch_add(1, Ordering::SeqCst);
            let path = percent_decode(req.uri().path());
            let query = req.uri().query().unwrap_or("").to_owned();
            let (bucket, key) = split_path(&path);
            let entry = Request {
                method: req.method().as_str().to_owned(),
                op: guess_op(req.method().as_str(), &bucket, &key, &query, req.headers()),
                op_resolved: false,
                path,
                query,
                bucket,
                key,
                status: 0,
                range: req
                    .headers()
                    .get(hyper::header::RANGE)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
                checksum_headers: req
                    .headers()
                    .iter()
                    .filter(|(name, value)| {
                        let n = name.as_str();
                        n.starts_with("x-amz-checksum-")
                            || n == "x-amz-sdk-checksum-algorithm"
                            || n == "x-amz-trailer"
                            || (n == "content-encoding" && value.as_bytes().starts_with(b"aws-chunked"))
                    })
                    .map(|(name, _)| name.as_str().to_owned())
                    .collect(),
                checksum_values: req
                    .headers()
                    .iter()
                    .filter(|(name, _)| {
                        name.as_str().starts_with("x-amz-checksum-")
                            || name.as_str() == "x-amz-sdk-checksum-algorithm"
                    })
                    .map(|(name, value)| {
                        (
                            name.as_str().to_owned(),
                            String::from_utf8_lossy(value.as_bytes()).into_owned(),
                        )
                    })
                    .collect(),
                write_headers: req
                    .headers()
                    .iter()
                    .filter(|(name, _)| {
                        let n = name.as_str();
                        n == "x-amz-storage-class"
                            || n == "x-amz-acl"
                            || n.starts_with("x-amz-server-side-encryption")
                    })
                    .map(|(name, value)| {
                        (
                            name.as_str().to_owned(),
                            String::from_utf8_lossy(value.as_bytes()).into_owned(),
                        )
                    })
                    .collect(),
                abandoned: false,
                bytes_in: 0,
                bytes_out: 0,
            };
            let list_bucket = entry.bucket.clone().filter(|_| entry.op == "ListObjectsV2");
            let deleted = (entry.op == "DeleteObject")
                .then(|| entry.bucket.clone().zip(entry.key.clone()))
                .flatten();
            let list_query = entry.query.clone();
            let reply_key = entry.key.clone();
            this.shared.log.lock().unwrap().push((id, entry));
            this.shared.log_changed.notify_all();
            let _abandon = Abandon {
                shared: this.shared.clone(),
                id,
            };

            let head = req.method() == hyper::Method::HEAD;
            let (mut parts, body) = req.into_parts();
            let bytes = body
                .collect()
                .await
                .map_err(|e| HttpError::new(Box::new(e)))?
                .to_bytes();
            let bytes_in = bytes.len() as u64;
            parts.extensions.insert(LogId(id));
            let req = hyper::Request::from_parts(parts, Body::from(bytes));
            let mut resp = this.inner.call(req).await?;
            let status = resp.status().as_u16();
            if let Some((bucket, key)) = deleted.filter(|_| status < 300) {
                prune_empty_folders(&this.shared.root.join(bucket), &key);
            }
            let bytes_out = if head { 0 } else { reply_length(&resp) };
            this.shared.update(id, |r| {
                r.status = status;
                r.bytes_in = bytes_in;
                r.bytes_out = bytes_out;
            });
            loop {
                // Created before the check, so a release in between is not missed.
                let released = this.shared.released.notified();
                let held = this
                    .shared
                    .held
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|h| reply_key.as_deref().is_some_and(|k| k.contains(h.as_str())));
                if !held {
                    break;
                }
                released.await;
            }
            if status == 200
                && let Some(bucket) = list_bucket
            {
                let extra = this.shared.listed.lock().unwrap().get(&bucket).cloned();
                if let Some(extra) = extra {
                    resp = add_listed(resp, &list_query, &extra).await?;
                    let bytes_out = reply_length(&resp);
                    this.shared.update(id, |r| r.bytes_out = bytes_out);
                }
            }
            Ok(resp)
        })
    }
}

/// The length of a reply's body: its `Content-Length`, else the body's exact size hint.
fn reply_length(resp: &HttpResponse) -> u64 {
    use hyper::body::Body as _;
    resp.headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse().ok())
        .or_else(|| resp.body().size_hint().exact())
        .unwrap_or(0)
}

/// An S3 server on 127.0.0.1 backed by a temporary directory; stops on drop.
pub struct S3Server {
    addr: SocketAddr,
    root: TempDir,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl S3Server {
    /// Access key id the server accepts.
    pub const ACCESS_KEY: &'static str = "AKIAS3BACKUPTEST";
    /// Secret key the server accepts.
    pub const SECRET_KEY: &'static str = "s3backup-test-secret-key";

    /// Starts a server on a free port of 127.0.0.1.
    pub fn start() -> S3Server {
        let root = tempfile::Builder::new()
            .prefix("s3server-")
            .tempdir()
            .expect("create server root");
        let shared = Arc::new(Shared {
            root: root.path().to_path_buf(),
            ..Shared::default()
        });
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs root");
        let service = {
            let mut b = S3ServiceBuilder::new(fs);
            b.set_auth(SimpleAuth::from_single(Self::ACCESS_KEY, Self::SECRET_KEY));
            b.set_access(Policy {
                shared: shared.clone(),
            });
            b.build()
        };
        let service = Logged {
            inner: service,
            shared: shared.clone(),
        };

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();

        let thread = std::thread::Builder::new()
            .name(format!("s3server-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("server runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    let http = ConnBuilder::new(TokioExecutor::new());
                    loop {
                        let socket = tokio::select! {
                            res = listener.accept() => match res {
                                Ok((socket, _)) => socket,
                                Err(_) => continue,
                            },
                            _ = &mut rx => break,
                        };
                        let conn = http
                            .serve_connection(TokioIo::new(socket), service.clone())
                            .into_owned();
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                    }
                });
                // Dropping the runtime cancels the connection tasks.
                rt.shutdown_background();
            })
            .expect("spawn server thread");

        S3Server {
            addr,
            root,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// "http://127.0.0.1:PORT"
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared
            .log
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Forgets the requests logged so far.
    pub fn clear_requests(&self) {
        self.shared.log.lock().unwrap().clear();
    }

    /// Waits (woken by the server, no polling) until at least `n` requests
    /// have arrived since the start or the last [`Self::clear_requests`], or
    /// `timeout` passes; returns whether they have. A request counts as soon
    /// as its headers are in, before it is carried out.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        self.shared.wait_log(timeout, |log| log.len() >= n)
    }

    /// Like [`Self::wait_for_requests`], but counts only requests the server
    /// has carried out and answered (their status is set; the client may not
    /// have read the reply yet).
    pub fn wait_for_replies(&self, n: usize, timeout: Duration) -> bool {
        self.shared.wait_log(timeout, |log| {
            log.iter().filter(|(_, r)| r.status != 0).count() >= n
        })
    }

    /// Waits until the server has finished with every request it received:
    /// answered or abandoned (a killed client's). Call it after killing a
    /// client and before reading the bucket's files, which an in-flight
    /// request could otherwise still be changing; returns whether it did.
    pub fn wait_settled(&self, timeout: Duration) -> bool {
        self.shared.wait_log(timeout, |log| {
            log.iter().all(|(_, r)| r.status != 0 || r.abandoned)
        })
    }

    /// Like [`Self::wait_for_requests`], but counts only logged requests
    /// for which `matches` holds (e.g. a PutObject of one key that has been
    /// answered). Runs `matches` under the log's lock: keep it cheap.
    pub fn wait_for_matching(&self, n: usize, timeout: Duration, matches: impl Fn(&Request) -> bool) -> bool {
        self.shared
            .wait_log(timeout, |log| log.iter().filter(|(_, r)| matches(r)).count() >= n)
    }

    /// From now on, requests on keys containing `key_contains` are carried
    /// out (their status is logged) but their replies are held back until
    /// [`Self::release_replies`]: the client cannot know they succeeded.
    pub fn hold_replies(&self, key_contains: &str) {
        self.shared.held.lock().unwrap().push(key_contains.to_owned());
    }

    /// Lifts every `hold_replies` and sends the replies held so far.
    pub fn release_replies(&self) {
        self.shared.held.lock().unwrap().clear();
        self.shared.released.notify_waiters();
    }

    /// Number of logged requests whose operation is `op` (e.g. "PutObject").
    pub fn count(&self, op: &str) -> usize {
        self.requests().iter().filter(|r| r.op == op).count()
    }

    /// Logged requests of operation `op` on keys equal to `key`.
    pub fn count_key(&self, op: &str, key: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.op == op && r.key.as_deref() == Some(key))
            .count()
    }

    /// Operation names of all logged requests, in order (handy in messages).
    pub fn ops(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| match &r.key {
                Some(k) => format!("{} {}", r.op, k),
                None => r.op.clone(),
            })
            .collect()
    }

    /// From now on every request on `bucket` gets 403 AccessDenied.
    pub fn deny_bucket(&self, bucket: &str) {
        self.shared.denied.lock().unwrap().insert(bucket.to_owned());
    }

    /// GETs of `key`, and copies from it, fail with 403 InvalidObjectState,
    /// as S3 answers for an object in GLACIER or DEEP_ARCHIVE that has not
    /// been restored.
    pub fn archive_key(&self, key: &str) {
        self.shared.archived.lock().unwrap().insert(key.to_owned());
    }

    /// Writes (PutObject, UploadPart, CreateMultipartUpload, CopyObject) of
    /// keys containing `key_contains` fail: `transient` gives 503 SlowDown,
    /// otherwise 403 AccessDenied. `times`: None = always, Some(n) = the
    /// first n matching requests.
    pub fn fail_key(&self, key_contains: &str, times: Option<usize>, transient: bool) {
        assert_ne!(times, Some(0), "fail_key with times = Some(0) fails nothing");
        self.shared.rules.lock().unwrap().push(FailRule {
            key_contains: key_contains.to_owned(),
            remaining: times,
            transient,
        });
    }

    /// Removes every `fail_key` rule (bucket denials stay).
    pub fn clear_rules(&self) {
        self.shared.rules.lock().unwrap().clear();
    }

    /// From now on, ListObjectsV2 on `bucket` also shows `key` (with
    /// `size`, an ETag and a Last-Modified of 2020-01-01) when it matches
    /// the request's prefix. Nothing is stored: the key may be one no file
    /// system can hold (`../x`, `/abs`, `a//b`, `folder/`). Only for
    /// listings that fit one page (the entries are added to every page).
    pub fn add_listed_key(&self, bucket: &str, key: &str, size: u64) {
        self.shared
            .listed
            .lock()
            .unwrap()
            .entry(bucket.to_owned())
            .or_default()
            .push((key.to_owned(), size));
    }

    /// Lifts a `deny_bucket`.
    pub fn allow_bucket(&self, bucket: &str) {
        self.shared.denied.lock().unwrap().remove(bucket);
    }

    /// Creates a bucket directly in the store (no request is logged).
    pub fn create_bucket(&self, name: &str) {
        std::fs::create_dir(self.root.path().join(name)).expect("create bucket dir");
    }

    /// Whether the bucket exists in the store.
    pub fn bucket_exists(&self, name: &str) -> bool {
        self.root.path().join(name).is_dir()
    }

    /// Where s3s-fs keeps the bytes of an object.
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.path().join(bucket).join(key)
    }

    /// An object's bytes, or None if it does not exist.
    pub fn object_bytes(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let p = self.object_path(bucket, key);
        p.is_file().then(|| std::fs::read(p).unwrap())
    }

    /// An object's user metadata (the `x-amz-meta-*` pairs, names without
    /// the prefix), or None if the object does not exist. Read from the
    /// sidecar file s3s-fs keeps, so no request is logged.
    pub fn object_metadata(&self, bucket: &str, key: &str) -> Option<HashMap<String, String>> {
        if !self.object_path(bucket, key).is_file() {
            return None;
        }
        let name = format!(
            ".bucket-{}.object-{}.metadata.json",
            base64_url_nopad(bucket.as_bytes()),
            base64_url_nopad(key.as_bytes())
        );
        let Ok(text) = std::fs::read(self.root.path().join(name)) else {
            return Some(HashMap::new());
        };
        let v: serde_json::Value = serde_json::from_slice(&text).expect("metadata sidecar is JSON");
        // Current format: {"user_metadata": {...}, ...}; old format: {...}.
        let map = match v.get("user_metadata") {
            Some(m) => m.clone(),
            None if v.get("content_type").is_some() => serde_json::Value::Null,
            None => v,
        };
        let mut out = HashMap::new();
        if let serde_json::Value::Object(m) = map {
            for (k, v) in m {
                out.insert(k, v.as_str().unwrap_or_default().to_owned());
            }
        }
        Some(out)
    }

    /// The sidecar where s3s-fs keeps an object's ETag and checksums.
    fn internal_info_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.path().join(format!(
            ".bucket-{}.object-{}.internal.json",
            base64_url_nopad(bucket.as_bytes()),
            base64_url_nopad(key.as_bytes())
        ))
    }

    /// The checksums s3s-fs keeps for an object (`"crc64nvme"` → base64),
    /// as it checked them on PutObject and returns them on HEAD. Read from
    /// its sidecar, so no request is logged.
    pub fn stored_checksums(&self, bucket: &str, key: &str) -> HashMap<String, String> {
        let Ok(text) = std::fs::read(self.internal_info_path(bucket, key)) else {
            return HashMap::new();
        };
        let v: serde_json::Value = serde_json::from_slice(&text).expect("internal sidecar is JSON");
        let mut out = HashMap::new();
        if let serde_json::Value::Object(m) = v {
            for (k, v) in m {
                if let Some(name) = k.strip_prefix("checksum_") {
                    out.insert(name.to_owned(), v.as_str().unwrap_or_default().to_owned());
                }
            }
        }
        out
    }

    /// Replaces an object's bytes and the checksum s3s-fs keeps for it,
    /// behind the store's API (the ETag it keeps stays): what a store that
    /// recomputes checksums at rest shows after the stored bytes changed.
    pub fn change_stored_bytes(&self, bucket: &str, key: &str, bytes: &[u8], checksum: (&str, &str)) {
        std::fs::write(self.object_path(bucket, key), bytes).unwrap();
        let path = self.internal_info_path(bucket, key);
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        v[format!("checksum_{}", checksum.0)] = serde_json::Value::String(checksum.1.to_owned());
        std::fs::write(path, serde_json::to_vec(&v).unwrap()).unwrap();
    }

    /// All object keys in a bucket, sorted (empty if there is no bucket).
    pub fn list_keys(&self, bucket: &str) -> Vec<String> {
        let dir = self.root.path().join(bucket);
        let mut keys = Vec::new();
        if dir.is_dir() {
            walk(&dir, &dir, &mut keys);
        }
        keys.sort();
        keys
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Removes the now empty directories of `key`'s "folders" under
/// `bucket_dir`, deepest first, stopping at the first that is not empty.
fn prune_empty_folders(bucket_dir: &Path, key: &str) {
    let mut dir = Path::new(key).parent();
    while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
        if std::fs::remove_dir(bucket_dir.join(d)).is_err() {
            break;
        }
        dir = d.parent();
    }
}

/// Adds `extra` entries matching the query's prefix to a ListObjectsV2 reply.
async fn add_listed(
    resp: HttpResponse,
    query: &str,
    extra: &[(String, u64)],
) -> Result<HttpResponse, HttpError> {
    let param = |name: &str| {
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then(|| percent_decode(&v.replace('+', " ")))
        })
    };
    let prefix = param("prefix").unwrap_or_default();
    let url_encoded = param("encoding-type").as_deref() == Some("url");
    let (mut parts, body) = resp.into_parts();
    let bytes = body.collect().await.map_err(HttpError::new)?.to_bytes();
    let mut xml = String::from_utf8_lossy(&bytes).into_owned();
    let mut contents = String::new();
    for (key, size) in extra.iter().filter(|(k, _)| k.starts_with(&prefix)) {
        let key = if url_encoded {
            percent_encode(key)
        } else {
            xml_escape(key)
        };
        contents.push_str(&format!(
            "<Contents><Key>{key}</Key><LastModified>2020-01-01T00:00:00.000Z</LastModified>\
             <ETag>&quot;00000000000000000000000000000000&quot;</ETag><Size>{size}</Size>\
             <StorageClass>STANDARD</StorageClass></Contents>"
        ));
    }
    if let Some(end) = xml.rfind("</ListBucketResult>") {
        xml.insert_str(end, &contents);
    }
    parts.headers.remove(hyper::header::CONTENT_LENGTH);
    Ok(hyper::Response::from_parts(parts, Body::from(xml)))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Collects the keys of the files under `dir`. An entry that vanishes
/// while it is read (a delete the server is still finishing, or the empty
/// folder it then removes) is simply not listed.
fn walk(base: &Path, dir: &Path, keys: &mut Vec<String>) {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let entries = match std::fs::read_dir(dir) {
        Err(e) if gone(&e) => return,
        r => r.unwrap(),
    };
    for entry in entries {
        let entry = entry.unwrap();
        let ft = match entry.file_type() {
            Err(e) if gone(&e) => continue,
            r => r.unwrap(),
        };
        let p = entry.path();
        if ft.is_dir() {
            walk(base, &p, keys);
        } else if ft.is_file() {
            let rel = p.strip_prefix(base).unwrap();
            let key: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            keys.push(key.join("/"));
        }
    }
}

/// "/bucket/a/b" -> (Some("bucket"), Some("a/b")).
fn split_path(path: &str) -> (Option<String>, Option<String>) {
    let p = path.strip_prefix('/').unwrap_or(path);
    if p.is_empty() {
        return (None, None);
    }
    match p.split_once('/') {
        Some((b, k)) if !k.is_empty() => (Some(b.to_owned()), Some(k.to_owned())),
        Some((b, _)) => (Some(b.to_owned()), None),
        None => (Some(p.to_owned()), None),
    }
}

fn has_param(query: &str, name: &str) -> bool {
    query
        .split('&')
        .any(|kv| kv.split_once('=').map_or(kv, |(k, _)| k) == name)
}

/// The operation a request is for, judged from its HTTP shape only; used
/// for requests s3s rejects before routing them (e.g. a bad signature).
fn guess_op(
    method: &str,
    bucket: &Option<String>,
    key: &Option<String>,
    query: &str,
    headers: &hyper::HeaderMap,
) -> String {
    let q = |n| has_param(query, n);
    let op = match (method, bucket.is_some(), key.is_some()) {
        ("GET", false, _) => "ListBuckets",
        ("PUT", true, false) => "CreateBucket",
        ("HEAD", true, false) => "HeadBucket",
        ("DELETE", true, false) => "DeleteBucket",
        ("GET", true, false) if q("location") => "GetBucketLocation",
        ("GET", true, false) if q("list-type") => "ListObjectsV2",
        ("GET", true, false) => "ListObjects",
        ("POST", true, false) if q("delete") => "DeleteObjects",
        ("PUT", true, true) if q("partNumber") && headers.contains_key("x-amz-copy-source") => {
            "UploadPartCopy"
        }
        ("PUT", true, true) if q("partNumber") => "UploadPart",
        ("PUT", true, true) if headers.contains_key("x-amz-copy-source") => "CopyObject",
        ("PUT", true, true) => "PutObject",
        ("HEAD", true, true) => "HeadObject",
        ("GET", true, true) if q("uploadId") => "ListParts",
        ("GET", true, true) => "GetObject",
        ("POST", true, true) if q("uploads") => "CreateMultipartUpload",
        ("POST", true, true) if q("uploadId") => "CompleteMultipartUpload",
        ("DELETE", true, true) if q("uploadId") => "AbortMultipartUpload",
        ("DELETE", true, true) => "DeleteObject",
        _ => "Unknown",
    };
    op.to_owned()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn base64_url_nopad(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(base64_url_nopad(b"bucket"), "YnVja2V0");
        assert_eq!(base64_url_nopad(b"a/b?"), "YS9iPw");
        assert_eq!(base64_url_nopad(b"ab"), "YWI");
        assert_eq!(percent_decode("/b/a%20b%2Fc%zz%2"), "/b/a b/c%zz%2");
        assert_eq!(split_path("/b/x/y"), (Some("b".into()), Some("x/y".into())));
        assert_eq!(split_path("/b/"), (Some("b".into()), None));
        assert_eq!(split_path("/"), (None, None));
    }
}
