//! `--max-bandwidth`: one token bucket per opened store, shared by every
//! request of a run, paid for chunk by chunk as the bytes go out or come
//! in, so the rate holds within a request as well as across them (a 10 MB
//! body at 1 MiB/s takes about 10 s, not a burst after a wait).
//!
//! The bucket is `leaky_bucket::RateLimiter` (fair: waiters are served in
//! the order they asked, so parallel requests share the rate evenly). Every
//! body is cut into pieces of at most [`MAX_CHUNK`] (less at low rates) and
//! each piece waits for its tokens before it is handed on: to the HTTP
//! client for an upload ([`PacedBody`]), to the caller for a download
//! ([`pace_chunks`]), or to the copy loop of the local store
//! ([`PacedReader`]). The bucket starts empty and holds at most one refill,
//! so an idle spell buys no burst of more than a tenth of a second's worth.
//!
//! The stores hold an `Option<Arc<Bandwidth>>`; with `None` nothing is
//! wrapped and nothing waits.

use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body::{Body, Frame, SizeHint};
use leaky_bucket::{AcquireOwned, RateLimiter};

use super::{ByteChunks, StoreError};

/// Largest piece that goes out (or is handed on) before waiting for more
/// tokens: small enough that the rate holds within one request.
pub const MAX_CHUNK: usize = 64 * 1024;

/// The limit as the command line gives it: plain data, carried in the
/// store settings and turned into one [`Bandwidth`] when the store opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BandwidthLimit {
    /// Bytes per second, at least 1 (`--max-bandwidth`; 0 is refused by the CLI).
    pub bytes_per_sec: u64,
    /// How many requests of the run may be in flight at once (`--jobs`):
    /// each gets at least this share of the rate, which bounds how long
    /// one paced upload may take (see [`Bandwidth::upload_allowance`]).
    pub streams: usize,
}

/// The shared token bucket: one token per byte.
pub struct Bandwidth {
    limiter: Arc<RateLimiter>,
    /// The largest piece handed on at once, bytes.
    chunk: usize,
    limit: BandwidthLimit,
}

impl std::fmt::Debug for Bandwidth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bandwidth")
            .field("limit", &self.limit)
            .field("chunk", &self.chunk)
            .finish()
    }
}

impl Bandwidth {
    /// A bucket refilled at `limit.bytes_per_sec`. Tokens are added every
    /// 100 ms (up to every second at rates under 1 kB/s, so that each
    /// refill is a whole number of at least 100 tokens where it can be,
    /// which keeps the rounding error under 0.5 %). Not more often: the
    /// bucket counts whole milliseconds and loses the part of a millisecond
    /// by which each timer wake-up is late, which at 10 ms made runs about
    /// 10 % slower than the limit; at 100 ms it is under 1 %.
    pub fn new(limit: BandwidthLimit) -> Self {
        let rate = limit.bytes_per_sec.max(1);
        let interval_ms = 100_000u64.div_ceil(rate).clamp(100, 1000);
        let refill = rate.saturating_mul(interval_ms).saturating_add(500) / 1000;
        let refill = usize::try_from(refill.max(1)).unwrap_or(usize::MAX / 4);
        let limiter = RateLimiter::builder()
            .initial(0)
            .max(refill)
            .refill(refill)
            .interval(Duration::from_millis(interval_ms))
            .fair(true)
            .build();
        // A sixteenth of a second's worth per piece, between 512 B and 64 KiB.
        let chunk = usize::try_from(rate / 16)
            .unwrap_or(MAX_CHUNK)
            .clamp(512, MAX_CHUNK);
        Self {
            limiter: Arc::new(limiter),
            chunk,
            limit: BandwidthLimit {
                bytes_per_sec: rate,
                streams: limit.streams.max(1),
            },
        }
    }

    /// Waits until `bytes` more may pass.
    pub(crate) async fn take(&self, bytes: usize) {
        self.limiter.clone().acquire_owned(bytes).await;
    }

    fn acquire(&self, bytes: usize) -> Pin<Box<AcquireOwned>> {
        Box::pin(self.limiter.clone().acquire_owned(bytes))
    }

    /// How much longer than an unpaced one an upload of `len` bytes may
    /// take: its bytes at an even share of the rate among all streams,
    /// rounded up to a power of two seconds (so that requests of similar
    /// sizes share one timeout setting, and with it one connection pool,
    /// in the S3 client).
    pub fn upload_allowance(&self, len: u64) -> Duration {
        let secs = (len as u128 * self.limit.streams as u128).div_ceil(self.limit.bytes_per_sec as u128);
        let secs = u64::try_from(secs).unwrap_or(u64::MAX / 2).max(1);
        Duration::from_secs(secs.checked_next_power_of_two().unwrap_or(secs))
    }
}

/// An HTTP request body whose data frames are cut into pieces of at most
/// `Bandwidth::chunk` bytes, each released only once the bucket has its
/// tokens. Trailers and errors pass through unchanged.
pub struct PacedBody<B> {
    inner: B,
    limit: Arc<Bandwidth>,
    /// What is left of the last data frame read from `inner`.
    rest: Bytes,
    /// The piece waiting for its tokens.
    waiting: Option<(Pin<Box<AcquireOwned>>, Bytes)>,
}

impl<B> PacedBody<B> {
    /// Paces `inner` through `limit`.
    pub fn new(inner: B, limit: Arc<Bandwidth>) -> Self {
        Self {
            inner,
            limit,
            rest: Bytes::new(),
            waiting: None,
        }
    }

    fn buffered(&self) -> u64 {
        (self.rest.len() + self.waiting.as_ref().map_or(0, |(_, b)| b.len())) as u64
    }
}

impl<B> Body for PacedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        loop {
            if let Some((wait, _)) = &mut this.waiting {
                ready!(wait.as_mut().poll(cx));
                if let Some((_, piece)) = this.waiting.take() {
                    return Poll::Ready(Some(Ok(Frame::data(piece))));
                }
            }
            if !this.rest.is_empty() {
                let n = this.rest.len().min(this.limit.chunk);
                let piece = this.rest.split_to(n);
                this.waiting = Some((this.limit.acquire(n), piece));
                continue;
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.rest = data,
                    Err(other) => return Poll::Ready(Some(Ok(other))),
                },
                other => return Poll::Ready(other),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.buffered() == 0 && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let buffered = self.buffered();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(buffered));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(buffered));
        }
        hint
    }
}

/// A download's chunks, cut into pieces of at most `Bandwidth::chunk`
/// bytes, each handed on once the bucket has its tokens (the HTTP client
/// then reads no further than its buffers allow, so the sender slows down
/// too). Without a limit, `chunks` unchanged.
pub fn pace_chunks(limit: Option<&Arc<Bandwidth>>, chunks: ByteChunks) -> ByteChunks {
    let Some(limit) = limit.cloned() else {
        return chunks;
    };
    let chunk = limit.chunk;
    chunks
        .flat_map(move |item| {
            let pieces: Vec<Result<Bytes, StoreError>> = match item {
                Ok(mut bytes) => {
                    let mut pieces = Vec::with_capacity(bytes.len().div_ceil(chunk));
                    while !bytes.is_empty() {
                        pieces.push(Ok(bytes.split_to(bytes.len().min(chunk))));
                    }
                    pieces
                }
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(pieces)
        })
        .then(move |item| {
            let limit = limit.clone();
            async move {
                if let Ok(bytes) = &item {
                    limit.take(bytes.len()).await;
                }
                item
            }
        })
        .boxed()
}

/// A reader for the local store's blocking copy loops: each read returns
/// at most `Bandwidth::chunk` bytes, and only once the bucket has their
/// tokens. It waits by blocking its thread on the runtime (`handle`), so it
/// must run on a blocking thread (`spawn_blocking`), never on an async one.
pub struct PacedReader<R> {
    inner: R,
    limit: Arc<Bandwidth>,
    handle: tokio::runtime::Handle,
    cancel: crate::cancel::Cancel,
}

impl<R> PacedReader<R> {
    /// Paces `inner` through `limit`, waiting on `handle`'s runtime.
    pub fn new(inner: R, limit: Arc<Bandwidth>, handle: tokio::runtime::Handle) -> Self {
        Self {
            inner,
            limit,
            handle,
            cancel: crate::cancel::Cancel::default(),
        }
    }

    /// Stops waiting for tokens once `cancel` is cancelled (the run is
    /// stopping: the caller's next read fails, see [`crate::cancel::Cancel::reader`]).
    pub fn with_cancel(mut self, cancel: crate::cancel::Cancel) -> Self {
        self.cancel = cancel;
        self
    }
}

impl<R: Read> Read for PacedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.limit.chunk);
        let got = self.inner.read(&mut buf[..n])?;
        if got > 0 {
            let (limit, cancel) = (&self.limit, &self.cancel);
            self.handle.block_on(async {
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => {}
                    () = limit.take(got) => {}
                }
            });
        }
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(bytes_per_sec: u64, streams: usize) -> Bandwidth {
        Bandwidth::new(BandwidthLimit {
            bytes_per_sec,
            streams,
        })
    }

    #[test]
    fn pieces_are_small_enough_for_the_rate_to_hold_within_a_request() {
        assert_eq!(limit(1024 * 1024, 1).chunk, MAX_CHUNK);
        assert_eq!(limit(100 * 1024 * 1024, 1).chunk, MAX_CHUNK);
        assert_eq!(limit(160_000, 1).chunk, 10_000);
        assert_eq!(limit(1, 1).chunk, 512);
    }

    #[test]
    fn upload_allowance_covers_an_even_share_of_the_rate() {
        const MIB: u64 = 1024 * 1024;
        let b = limit(MIB, 16);
        // 16 MiB with 16 streams at 1 MiB/s: 256 s.
        assert_eq!(b.upload_allowance(16 * MIB), Duration::from_secs(256));
        // 3 MiB alone would take 48 s at a sixteenth of the rate; rounded up to 64.
        assert_eq!(b.upload_allowance(3 * MIB), Duration::from_secs(64));
        assert_eq!(b.upload_allowance(0), Duration::from_secs(1));
        assert!(limit(1, 256).upload_allowance(u64::MAX) > Duration::from_secs(1 << 40));
    }

    #[tokio::test(start_paused = true)]
    async fn a_paced_body_takes_its_bytes_time_at_the_rate() {
        use http_body_util::BodyExt;
        const RATE: u64 = 1024 * 1024;
        let b = Arc::new(limit(RATE, 1));
        let data = Bytes::from(vec![7u8; 3 * RATE as usize]);
        let body = PacedBody::new(http_body_util::Full::new(data.clone()), b);
        let start = tokio::time::Instant::now();
        let mut frames = 0;
        let mut got = Vec::new();
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let bytes = frame.unwrap().into_data().unwrap();
            assert!(bytes.len() <= MAX_CHUNK);
            got.extend_from_slice(&bytes);
            frames += 1;
        }
        let took = start.elapsed();
        assert_eq!(got, data);
        assert_eq!(frames, 3 * 16);
        assert!(took >= Duration::from_millis(2990), "{took:?}");
        assert!(took <= Duration::from_millis(3100), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn paced_chunks_are_split_and_timed() {
        const RATE: u64 = 64 * 1024;
        let b = Arc::new(limit(RATE, 1));
        let chunks: ByteChunks = futures::stream::iter(vec![
            Ok(Bytes::from(vec![1u8; 100_000])),
            Ok(Bytes::from(vec![2u8; 28_000])),
        ])
        .boxed();
        let start = tokio::time::Instant::now();
        let pieces: Vec<Bytes> = pace_chunks(Some(&b), chunks).map(|r| r.unwrap()).collect().await;
        let took = start.elapsed();
        assert!(pieces.iter().all(|p| p.len() <= b.chunk));
        assert_eq!(pieces.iter().map(Bytes::len).sum::<usize>(), 128_000);
        // 128,000 bytes at 65,536 B/s: 1.95 s.
        assert!(took >= Duration::from_millis(1940), "{took:?}");
        assert!(took <= Duration::from_millis(2050), "{took:?}");
    }
}
