//! A latency-adding HTTP proxy for benches/compare.py's scenario (l), with
//! the two helpers that measure its own ceiling.
//!
//! Real S3 is 10-80 ms away; the harness's server (s3s-fs) is on 127.0.0.1.
//! Scenario (l) puts this proxy between every tool and s3s-fs: each request
//! is held `--delay-ms` after its head arrives, then forwarded. Requests are
//! independent, so N requests in flight on N connections all finish after
//! about delay + service time; a tool that keeps few requests in flight
//! pays the delay once per request, as it would against a distant store.
//! (Only requests are delayed: a new TCP connection costs no extra round
//! trip here, so the proxy slightly favours tools that open many.)
//!
//! Why a separate program, not tests/it/proxy.rs (`FaultProxy`, `Fault::Slow`)
//! reused via `#[path]`: that proxy opens a new upstream connection per
//! request and reads every body whole before deciding on a fault, which is
//! right for fault tests and wrong for a benchmark (a connect per request
//! and a buffered 1 GiB upload). It also pulls in the test server and the
//! rewrite module. This one keeps idle upstream connections in a pool (a
//! connection goes back when its response body has been sent on), streams
//! request and response bodies through unbuffered, serves every client
//! connection as a task on one tokio runtime (no thread per request), and
//! holds any number of requests in flight. It is a crate of its own (not an
//! `[[example]]` of s3backup, whose dev-dependencies would change the
//! features s3backup's release build is compiled with), built by the
//! harness with `cargo build --release --locked` into its own target
//! directory.
//!
//! Subcommands (each server prints its `http://127.0.0.1:PORT` as the first
//! line on stdout, then runs until killed):
//! - `serve --upstream HOST:PORT --delay-ms MS`: the proxy;
//! - `echo`: a trivial upstream (answers every request 200 with a 1 KiB
//!   body after reading the request body), so the proxy's own ceiling can
//!   be measured without s3s-fs's cost;
//! - `load --url URL --requests N --concurrency C --size BYTES`: PUTs N
//!   objects of BYTES under `/BUCKET/lat-ceiling/`, then GETs them, from C
//!   tasks each on its own kept-alive connection, signed with SigV4 when
//!   `--access-key` is given; prints one JSON line
//!   `{"put_per_s":…,"get_per_s":…,"errors":…}`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// Errors inside the proxy; they only ever fail one request or connection.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The command line (see the module doc).
#[derive(Parser)]
#[command(about = "Latency proxy and its ceiling measurement for benches/compare.py")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What to run.
#[derive(Subcommand)]
enum Command {
    /// Forward to UPSTREAM, holding each request DELAY_MS first.
    Serve {
        /// The server to forward to, `IP:PORT`.
        #[arg(long)]
        upstream: SocketAddr,
        /// Milliseconds each request waits before it is forwarded.
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
    },
    /// A trivial upstream answering 200 with 1 KiB to everything.
    Echo,
    /// Small PUTs then GETs against URL; prints requests per second.
    Load {
        /// `http://IP:PORT` of the server or proxy.
        #[arg(long)]
        url: String,
        /// Objects to PUT (and then GET).
        #[arg(long, default_value_t = 10_000)]
        requests: u64,
        /// Requests in flight (one connection each).
        #[arg(long, default_value_t = 64)]
        concurrency: u64,
        /// Bytes per object.
        #[arg(long, default_value_t = 4096)]
        size: usize,
        /// Bucket (must exist).
        #[arg(long, default_value = "ceiling")]
        bucket: String,
        /// Sign with these keys (SigV4, region us-east-1); unsigned without.
        #[arg(long, requires = "secret_key")]
        access_key: Option<String>,
        /// The secret key for `--access-key`.
        #[arg(long)]
        secret_key: Option<String>,
    },
}

fn main() -> Result<(), BoxError> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Serve { upstream, delay_ms } => {
                serve_proxy(upstream, Duration::from_millis(delay_ms)).await
            }
            Command::Echo => serve_echo().await,
            Command::Load {
                url,
                requests,
                concurrency,
                size,
                bucket,
                access_key,
                secret_key,
            } => {
                let keys = access_key.zip(secret_key);
                load(&url, requests, concurrency, size, &bucket, keys).await
            }
        }
    })
}

/// Binds a free port on 127.0.0.1 and prints its URL as the first stdout line.
async fn bind() -> Result<tokio::net::TcpListener, BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("http://{}", listener.local_addr()?);
    use std::io::Write;
    std::io::stdout().flush()?;
    Ok(listener)
}

/// Idle kept-alive connections to the upstream server.
struct Pool {
    upstream: SocketAddr,
    idle: Mutex<Vec<SendRequest<Incoming>>>,
}

impl Pool {
    /// An idle connection, or a new one when none is left.
    async fn take(&self) -> Result<SendRequest<Incoming>, BoxError> {
        loop {
            let found = self.idle.lock().map_err(|_| "pool lock poisoned")?.pop();
            let Some(mut sender) = found else { break };
            if sender.is_closed() {
                continue;
            }
            if sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        let stream = tokio::net::TcpStream::connect(self.upstream).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(sender)
    }

    /// Puts a connection whose exchange is complete back for reuse.
    fn give_back(&self, sender: SendRequest<Incoming>) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(sender);
        }
    }
}

/// A response body streamed from upstream that returns its connection to
/// the pool once the last frame has been passed on (dropped early, the
/// connection is dropped with it: its state is unknown).
struct Returning {
    inner: Incoming,
    back: Option<(SendRequest<Incoming>, Arc<Pool>)>,
}

impl Body for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        // hyper stops polling a body with a known length once it reports
        // its end, so the last data frame may be the last poll.
        let done = matches!(polled, Poll::Ready(None)) || this.inner.is_end_stream();
        if done && let Some((sender, pool)) = this.back.take() {
            pool.give_back(sender);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Hop-by-hop headers, which a proxy must not pass on.
const HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    "expect",
];

/// Runs the proxy until killed.
async fn serve_proxy(upstream: SocketAddr, delay: Duration) -> Result<(), BoxError> {
    let listener = bind().await?;
    let pool = Arc::new(Pool {
        upstream,
        idle: Mutex::new(Vec::new()),
    });
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let _ = socket.set_nodelay(true);
        let pool = pool.clone();
        let service = hyper::service::service_fn(move |req| forward(pool.clone(), delay, req));
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}

/// One request: wait `delay`, send it upstream on a pooled connection, and
/// stream the answer back. The request body is read only once the upstream
/// connection asks for it (which also sends a client's `100 Continue`).
async fn forward(
    pool: Arc<Pool>,
    delay: Duration,
    req: Request<Incoming>,
) -> Result<Response<Returning>, BoxError> {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (mut parts, body) = req.into_parts();
    for h in HOP {
        parts.headers.remove(h);
    }
    let mut sender = pool.take().await?;
    let resp = sender.send_request(Request::from_parts(parts, body)).await?;
    let (mut head, inner) = resp.into_parts();
    for h in HOP {
        head.headers.remove(h);
    }
    let back = if inner.is_end_stream() {
        pool.give_back(sender);
        None
    } else {
        Some((sender, pool))
    };
    Ok(Response::from_parts(head, Returning { inner, back }))
}

/// Runs the trivial upstream until killed.
async fn serve_echo() -> Result<(), BoxError> {
    let listener = bind().await?;
    let reply = Bytes::from(vec![b'x'; 1024]);
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let _ = socket.set_nodelay(true);
        let reply = reply.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let reply = reply.clone();
            async move {
                let _ = req.into_body().collect().await;
                Ok::<_, Infallible>(Response::new(Full::new(reply)))
            }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}

/// The load generator: all PUTs, then all GETs; prints one JSON line.
async fn load(
    url: &str,
    requests: u64,
    concurrency: u64,
    size: usize,
    bucket: &str,
    keys: Option<(String, String)>,
) -> Result<(), BoxError> {
    let addr: SocketAddr = url
        .strip_prefix("http://")
        .ok_or("--url must be http://IP:PORT")?
        .parse()?;
    let body = Bytes::from(vec![b'b'; size]);
    let errors = Arc::new(AtomicU64::new(0));
    let mut rates = Vec::new();
    for method in [hyper::Method::PUT, hyper::Method::GET] {
        let next = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency.max(1) {
            let job = Job {
                addr,
                method: method.clone(),
                bucket: bucket.to_owned(),
                body: body.clone(),
                keys: keys.clone(),
            };
            let (next, errors) = (next.clone(), errors.clone());
            tasks.push(tokio::spawn(
                async move { job.run(requests, &next, &errors).await },
            ));
        }
        for t in tasks {
            if t.await.is_err() {
                errors.fetch_add(1, Ordering::SeqCst);
            }
        }
        rates.push(requests as f64 / start.elapsed().as_secs_f64());
    }
    println!(
        "{{\"put_per_s\":{:.1},\"get_per_s\":{:.1},\"errors\":{}}}",
        rates[0],
        rates[1],
        errors.load(Ordering::SeqCst)
    );
    Ok(())
}

/// One load task's fixed inputs.
struct Job {
    addr: SocketAddr,
    method: hyper::Method,
    bucket: String,
    body: Bytes,
    keys: Option<(String, String)>,
}

impl Job {
    /// Takes request numbers from `next` until `requests` are taken, on one
    /// kept-alive connection (a new one after an error).
    async fn run(&self, requests: u64, next: &AtomicU64, errors: &AtomicU64) {
        let mut conn: Option<SendRequest<Full<Bytes>>> = None;
        loop {
            let i = next.fetch_add(1, Ordering::SeqCst);
            if i >= requests {
                return;
            }
            if self.one(i, &mut conn).await.is_err() {
                errors.fetch_add(1, Ordering::SeqCst);
                conn = None;
            }
        }
    }

    /// Request number `i`; an error for a failed exchange or a non-2xx status.
    async fn one(&self, i: u64, conn: &mut Option<SendRequest<Full<Bytes>>>) -> Result<(), BoxError> {
        if conn.is_none() {
            let stream = tokio::net::TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            let (sender, c) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(c);
            *conn = Some(sender);
        }
        let sender = conn.as_mut().ok_or("no connection")?;
        sender.ready().await?;
        let path = format!("/{}/lat-ceiling/k{i:08}", self.bucket);
        let body = if self.method == hyper::Method::PUT {
            self.body.clone()
        } else {
            Bytes::new()
        };
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(&path)
            .header("host", self.addr.to_string())
            .header("content-length", body.len())
            .body(Full::new(body))?;
        if let Some((ak, sk)) = &self.keys {
            sign(&mut req, ak, sk)?;
        }
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        resp.into_body().collect().await?;
        if !status.is_success() {
            return Err(format!("{} {path}: {status}", self.method).into());
        }
        Ok(())
    }
}

/// Signs `req` with SigV4 (region us-east-1, service s3, unsigned payload).
fn sign(req: &mut Request<Full<Bytes>>, access_key: &str, secret_key: &str) -> Result<(), BoxError> {
    use aws_sigv4::http_request::{PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings};
    let identity = aws_credential_types::Credentials::new(access_key, secret_key, None, None, "load").into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(SystemTime::now())
        .settings(settings)
        .build()?
        .into();
    let uri = req.uri().to_string();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let signable = SignableRequest::new(
        req.method().as_str(),
        uri,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::UnsignedPayload,
    )?;
    let (instructions, _) = aws_sigv4::http_request::sign(signable, &params)?.into_parts();
    let (new_headers, _) = instructions.into_parts();
    for h in new_headers {
        req.headers_mut().insert(
            hyper::header::HeaderName::from_bytes(h.name().as_bytes())?,
            hyper::header::HeaderValue::from_str(h.value())?,
        );
    }
    Ok(())
}
