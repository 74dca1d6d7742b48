//! A fault-injecting HTTP proxy on 127.0.0.1, put between the real binary
//! and the in-process S3 server, so tests can see what the tool does when
//! the network and the server misbehave the way real ones do.
//!
//! [`FaultProxy::start`] listens on `127.0.0.1:<random port>` from its own
//! thread and tokio runtime (like [`S3Server`]) and forwards every request,
//! unchanged (the `Host` header too, so SigV4 signatures stay valid), to
//! the server over a fresh connection. For each request it first reads the
//! whole request body (so a fault never races a half-sent upload), then
//! decides with a seeded RNG, in arrival order, whether to inject a fault:
//! with probability [`FaultProxy::set_faults`]'s `share`, one of the chosen
//! [`Fault`] kinds, drawn uniformly:
//! - [`Fault::InternalError`]: 500 with an S3 `InternalError` XML body;
//! - [`Fault::SlowDown`]: 503 with an S3 `SlowDown` XML body;
//! - [`Fault::Reset`]: the connection is closed with `SO_LINGER 0` (a TCP
//!   RST) and no response at all;
//! - [`Fault::Truncate`]: the request is forwarded and the real response
//!   headers (with the full `Content-Length`) are sent, but the connection
//!   is closed after half the body. A response without a body cannot be
//!   cut short: then the connection is closed without any response after
//!   the server acted on the request (a lost response, counted apart);
//! - [`Fault::Slow`]: the request is forwarded after a delay
//!   ([`FaultProxy::set_slow_delay`]); it succeeds if the client waits.
//!
//! The first three never reach the server. Two draws are made per request
//! whatever the settings, so with one seed the n-th request seen always
//! gets the same decision. Settings can change while the proxy runs
//! (e.g. 100 % after a successful backup), and [`FaultProxy::set_filter`]
//! limits faults to some requests (e.g. only object downloads). Counters
//! ([`FaultProxy::stats`]) let a test assert that faults really happened.
//!
//! Besides faults, the proxy can change every request and answer that
//! passes through it to stand in for a store with other rules
//! ([`FaultProxy::set_rewrite`], see [`crate::rewrite`]), answer the next
//! matching request with 503 SlowDown and a `Retry-After` header
//! ([`FaultProxy::slow_down_once`]), and it notes when each request
//! arrived ([`FaultProxy::arrivals`]). It can hold every request for a
//! fixed time before answering it, as a store that far away would
//! ([`FaultProxy::set_delay`]), and it counts the requests it holds at once
//! ([`FaultProxy::in_flight`]: now, the most, and at each arrival).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::rewrite::{self, Rewrite, Tokens};
use crate::server::S3Server;

/// Errors inside the proxy (they only ever close a connection).
type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every response the proxy sends.
type ProxyBody = BoxBody<Bytes, BoxError>;
/// Which requests faults apply to (see [`FaultProxy::set_filter`]).
type Filter = Arc<dyn Fn(&Parts) -> bool + Send + Sync>;

/// One kind of fault the proxy can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// 500 InternalError with an S3 XML error body.
    InternalError,
    /// 503 SlowDown with an S3 XML error body.
    SlowDown,
    /// Connection reset (RST) without any response.
    Reset,
    /// Real headers, then the connection closes after half the body.
    Truncate,
    /// The response comes after a delay, otherwise unchanged.
    Slow,
    /// The request reaches the server with one byte of its body flipped (a
    /// bit error on the way, which TCP's checksum can miss); a request
    /// without a body goes through unchanged. Not in [`Fault::ALL`].
    Corrupt,
}

impl Fault {
    /// Every kind.
    pub const ALL: [Fault; 5] = [
        Fault::InternalError,
        Fault::SlowDown,
        Fault::Reset,
        Fault::Truncate,
        Fault::Slow,
    ];
    /// The kinds that make a request fail (all but [`Fault::Slow`]).
    pub const FAILING: [Fault; 4] = [
        Fault::InternalError,
        Fault::SlowDown,
        Fault::Reset,
        Fault::Truncate,
    ];
}

/// What the proxy has seen and done since it started (or since
/// [`FaultProxy::reset_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests received (whole request read).
    pub requests: u64,
    /// 500 InternalError answers.
    pub internal_errors: u64,
    /// 503 SlowDown answers.
    pub slow_downs: u64,
    /// Connections reset without a response.
    pub resets: u64,
    /// Responses whose body was cut short.
    pub truncated: u64,
    /// [`Fault::Truncate`] on a response without a body: the server acted,
    /// the client got no response.
    pub lost_responses: u64,
    /// Responses delayed.
    pub slow: u64,
    /// Request bodies forwarded with a byte flipped.
    pub corrupted: u64,
}

impl Stats {
    /// Requests that the client saw fail (every fault but slow responses).
    pub fn failures(&self) -> u64 {
        self.internal_errors + self.slow_downs + self.resets + self.truncated + self.lost_responses
    }
}

/// The proxy's settings, changed while it runs.
struct Config {
    share: f64,
    kinds: Vec<Fault>,
    slow_delay: Duration,
    filter: Option<Filter>,
    rng: fastrand::Rng,
    rewrite: Rewrite,
    /// The next request this matches is answered 503 SlowDown with this `Retry-After`.
    slow_down_once: Option<(Filter, String)>,
    /// How long every request is held before it is answered or forwarded.
    delay: Duration,
}

/// State shared by the proxy's tasks and the test.
struct Shared {
    upstream: SocketAddr,
    config: Mutex<Config>,
    requests: AtomicU64,
    internal_errors: AtomicU64,
    slow_downs: AtomicU64,
    resets: AtomicU64,
    truncated: AtomicU64,
    lost_responses: AtomicU64,
    slow: AtomicU64,
    corrupted: AtomicU64,
    /// "KIND METHOD /path?query" of every fault injected, for messages.
    log: Mutex<Vec<String>>,
    /// When each request arrived (its whole body read): "METHOD /path?query".
    arrivals: Mutex<Vec<(Instant, SystemTime, String)>>,
    /// The ETag tokens of [`Rewrite::kms_etags`].
    tokens: Tokens,
    /// Requests being handled now.
    in_flight: AtomicU64,
    /// Requests in flight as each request arrived (itself included), in order.
    in_flight_seen: Mutex<Vec<u64>>,
}

/// Counts one request in flight at the proxy while it lives.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn new(shared: &'a Shared) -> Self {
        let n = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.in_flight_seen.lock().unwrap().push(n);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    /// Counts the request and decides its fate (two RNG draws, always).
    fn decide(&self, parts: &Parts) -> (Option<Fault>, Duration) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let mut c = self.config.lock().unwrap();
        let roll = c.rng.f64();
        let pick = c.rng.u64(..);
        let applies = c.filter.as_ref().is_none_or(|f| f(parts));
        let fault = (applies && !c.kinds.is_empty() && roll < c.share)
            .then(|| c.kinds[(pick % c.kinds.len() as u64) as usize]);
        (fault, c.slow_delay)
    }

    fn note(&self, counter: &AtomicU64, what: &str, parts: &Parts) {
        counter.fetch_add(1, Ordering::SeqCst);
        self.log
            .lock()
            .unwrap()
            .push(format!("{what} {} {}", parts.method, parts.uri));
    }
}

/// A fault-injecting proxy in front of an [`S3Server`]; stops on drop.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy to `server` on a free port of 127.0.0.1, injecting
    /// nothing until [`Self::set_faults`]; `seed` fixes its decisions.
    pub fn start(server: &S3Server, seed: u64) -> FaultProxy {
        FaultProxy::start_to(&server.endpoint(), seed)
    }

    /// [`Self::start`] in front of any S3 server at `endpoint` (`http://IP:PORT`), e.g. moto.
    pub fn start_to(endpoint: &str, seed: u64) -> FaultProxy {
        let upstream: SocketAddr = endpoint
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .expect("server endpoint is http://IP:PORT");
        let shared = Arc::new(Shared {
            upstream,
            config: Mutex::new(Config {
                share: 0.0,
                kinds: Vec::new(),
                slow_delay: Duration::from_millis(200),
                filter: None,
                rng: fastrand::Rng::with_seed(seed),
                rewrite: Rewrite::default(),
                slow_down_once: None,
                delay: Duration::ZERO,
            }),
            requests: AtomicU64::new(0),
            internal_errors: AtomicU64::new(0),
            slow_downs: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            truncated: AtomicU64::new(0),
            lost_responses: AtomicU64::new(0),
            slow: AtomicU64::new(0),
            corrupted: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
            arrivals: Mutex::new(Vec::new()),
            tokens: Tokens::default(),
            in_flight: AtomicU64::new(0),
            in_flight_seen: Mutex::new(Vec::new()),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    loop {
                        let socket = tokio::select! {
                            res = listener.accept() => match res {
                                Ok((socket, _)) => socket,
                                Err(_) => continue,
                            },
                            _ = &mut rx => break,
                        };
                        let _ = socket.set_nodelay(true);
                        let fd = socket.as_raw_fd();
                        let shared = thread_shared.clone();
                        let service = hyper::service::service_fn(move |req| handle(shared.clone(), fd, req));
                        tokio::spawn(async move {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(socket), service)
                                .await;
                        });
                    }
                });
                // Dropping the runtime cancels the connection tasks.
                rt.shutdown_background();
            })
            .expect("spawn proxy thread");
        FaultProxy {
            addr,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// "http://127.0.0.1:PORT", for `--endpoint-url`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on, a `share` (0.0 to 1.0) of the requests get a fault,
    /// drawn uniformly from `kinds`.
    pub fn set_faults(&self, share: f64, kinds: &[Fault]) {
        assert!((0.0..=1.0).contains(&share), "share {share} is not in 0.0..=1.0");
        let mut c = self.shared.config.lock().unwrap();
        c.share = share;
        c.kinds = kinds.to_vec();
    }

    /// No more faults.
    pub fn clear_faults(&self) {
        self.set_faults(0.0, &[]);
    }

    /// How long [`Fault::Slow`] delays a response (default 200 ms).
    pub fn set_slow_delay(&self, delay: Duration) {
        self.shared.config.lock().unwrap().slow_delay = delay;
    }

    /// Faults apply only to requests for which `filter` is true (the
    /// others still make their RNG draws, and are counted).
    pub fn set_filter(&self, filter: impl Fn(&Parts) -> bool + Send + Sync + 'static) {
        self.shared.config.lock().unwrap().filter = Some(Arc::new(filter));
    }

    /// From now on, every request and answer is changed by `rewrite`.
    pub fn set_rewrite(&self, rewrite: Rewrite) {
        self.shared.config.lock().unwrap().rewrite = rewrite;
    }

    /// The next request for which `filter` is true gets 503 SlowDown with
    /// `Retry-After: retry_after` (seconds or an HTTP date) instead of
    /// reaching the server; later ones go through.
    pub fn slow_down_once(&self, retry_after: &str, filter: impl Fn(&Parts) -> bool + Send + Sync + 'static) {
        self.shared.config.lock().unwrap().slow_down_once = Some((Arc::new(filter), retry_after.to_owned()));
    }

    /// Holds every request `delay` before answering or forwarding it (a
    /// store that far away; zero, the default, for none).
    pub fn set_delay(&self, delay: Duration) {
        self.shared.config.lock().unwrap().delay = delay;
    }

    /// Requests in flight at the proxy as each one arrived (itself
    /// included), in order of arrival; their maximum is the most at once.
    pub fn in_flight(&self) -> Vec<u64> {
        self.shared.in_flight_seen.lock().unwrap().clone()
    }

    /// When each request arrived, in order: (time, wall-clock time, "METHOD /path?query").
    pub fn arrivals(&self) -> Vec<(Instant, SystemTime, String)> {
        self.shared.arrivals.lock().unwrap().clone()
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        let get = |c: &AtomicU64| c.load(Ordering::SeqCst);
        Stats {
            requests: get(&s.requests),
            internal_errors: get(&s.internal_errors),
            slow_downs: get(&s.slow_downs),
            resets: get(&s.resets),
            truncated: get(&s.truncated),
            lost_responses: get(&s.lost_responses),
            slow: get(&s.slow),
            corrupted: get(&s.corrupted),
        }
    }

    /// Sets every counter to zero and forgets the fault log.
    pub fn reset_stats(&self) {
        let s = &self.shared;
        for c in [
            &s.requests,
            &s.internal_errors,
            &s.slow_downs,
            &s.resets,
            &s.truncated,
            &s.lost_responses,
            &s.slow,
            &s.corrupted,
        ] {
            c.store(0, Ordering::SeqCst);
        }
        s.log.lock().unwrap().clear();
    }

    /// Every fault injected, in order: "KIND METHOD /path?query".
    pub fn fault_log(&self) -> Vec<String> {
        self.shared.log.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request: read it whole, decide, then answer, forward or break.
async fn handle(
    shared: Arc<Shared>,
    fd: RawFd,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, BoxError> {
    let (mut parts, body) = req.into_parts();
    let _counted = InFlight::new(&shared);
    let body = body.collect().await?.to_bytes();
    shared.arrivals.lock().unwrap().push((
        Instant::now(),
        SystemTime::now(),
        format!("{} {}", parts.method, parts.uri),
    ));
    let delay = shared.config.lock().unwrap().delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (rewrite, once) = {
        let mut c = shared.config.lock().unwrap();
        let once = match &c.slow_down_once {
            Some((filter, _)) if filter(&parts) => c.slow_down_once.take().map(|(_, after)| after),
            _ => None,
        };
        (c.rewrite.clone(), once)
    };
    if let Some(after) = once {
        shared.note(&shared.slow_downs, "503", &parts);
        let mut resp = s3_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SlowDown",
            "Please reduce your request rate.",
        );
        resp.headers_mut()
            .insert(hyper::header::RETRY_AFTER, after.parse().unwrap());
        return Ok(resp);
    }
    let (fault, slow_delay) = shared.decide(&parts);
    // The proxy answers 100-continue itself; the server gets the whole body at once.
    parts.headers.remove(hyper::header::EXPECT);
    let body = rewrite::request(&rewrite, &shared.tokens, &mut parts, body);
    match fault {
        None if rewrite.is_off() => forward(&shared, parts, body).await,
        None => {
            let req = parts.clone();
            let (mut head, body) = forward(&shared, parts, body).await?.into_parts();
            let body = body.collect().await?.to_bytes();
            let body = rewrite::response(&rewrite, &shared.tokens, &req, &mut head, body);
            Ok(Response::from_parts(
                head,
                Full::new(body).map_err(|e: Infallible| match e {}).boxed(),
            ))
        }
        Some(Fault::InternalError) => {
            shared.note(&shared.internal_errors, "500", &parts);
            Ok(s3_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "We encountered an internal error. Please try again.",
            ))
        }
        Some(Fault::SlowDown) => {
            shared.note(&shared.slow_downs, "503", &parts);
            Ok(s3_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "SlowDown",
                "Please reduce your request rate.",
            ))
        }
        Some(Fault::Reset) => {
            shared.note(&shared.resets, "reset", &parts);
            abortive_close(fd);
            Err("injected connection reset".into())
        }
        Some(Fault::Corrupt) if !body.is_empty() => {
            shared.note(&shared.corrupted, "corrupt", &parts);
            let mut bytes = body.to_vec();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x20;
            forward(&shared, parts, Bytes::from(bytes)).await
        }
        Some(Fault::Corrupt) => forward(&shared, parts, body).await,
        Some(Fault::Slow) => {
            shared.note(&shared.slow, "slow", &parts);
            tokio::time::sleep(slow_delay).await;
            forward(&shared, parts, body).await
        }
        Some(Fault::Truncate) => {
            let note = parts.clone();
            let resp = forward(&shared, parts, body).await?;
            let (head, body) = resp.into_parts();
            let full = body.collect().await?.to_bytes();
            if full.is_empty() {
                shared.note(&shared.lost_responses, "lost", &note);
                return Err("injected lost response".into());
            }
            shared.note(&shared.truncated, "truncated", &note);
            let half = full.slice(..full.len() / 2);
            // Send half, give hyper a moment to flush it, then fail the
            // body: hyper closes the connection mid-body.
            let frames = futures::stream::unfold(0u8, move |step| {
                let half = half.clone();
                async move {
                    match step {
                        0 => Some((Ok(Frame::data(half)), 1)),
                        1 => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            Some((Err::<Frame<Bytes>, BoxError>("injected truncation".into()), 2))
                        }
                        _ => None,
                    }
                }
            });
            // `head` keeps the server's Content-Length: the client expects the whole body.
            Ok(Response::from_parts(
                head,
                BodyExt::boxed(StreamBody::new(frames)),
            ))
        }
    }
}

/// Sends the request to the server over a new connection; returns its response.
async fn forward(shared: &Shared, parts: Parts, body: Bytes) -> Result<Response<ProxyBody>, BoxError> {
    let stream = tokio::net::TcpStream::connect(shared.upstream).await?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await?;
    Ok(resp.map(|b| b.map_err(BoxError::from).boxed()))
}

/// An S3 error reply (`<Error><Code>…`), as S3 sends it.
fn s3_error(status: StatusCode, code: &str, message: &str) -> Response<ProxyBody> {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>{message}</Message><RequestId>FAULTPROXY</RequestId></Error>"
    );
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/xml")
        .header("x-amz-request-id", "FAULTPROXY")
        .body(
            Full::new(Bytes::from(xml))
                .map_err(|e: Infallible| match e {})
                .boxed(),
        )
        .unwrap()
}

/// Makes the next close of the socket a reset (RST) rather than a FIN.
fn abortive_close(fd: RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `fd` is the connection's socket, owned by the hyper connection
    // whose request is being handled, so it is open for this whole call;
    // setsockopt only reads the `linger` value for its duration.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}
