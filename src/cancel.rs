//! Stopping a run early, cleanly: the one signal the binary's edge raises
//! (on Ctrl-C or SIGTERM, see `cli::interrupt`) and the engines check.
//!
//! The engines check it at a few clear points, never in the middle of a
//! state write: before each chunk of files a backup hashes and sends,
//! before each transfer starts (a backup action, a restored file), and
//! around each transfer in flight (the snapshot manifest's upload too),
//! which is dropped when the run is cancelled. What a dropped transfer leaves is what a failed one leaves:
//! no state row, a restore's temporary file removed (its `Drop`), a
//! multipart upload still journaled for the next run to resume. The local
//! store's blocking copies check it too ([`Cancel::reader`]), so none goes
//! on writing a temporary file after the run has stopped.
//!
//! A [`Cancel`] never cancelled costs one atomic load per check.

use std::io::Read;

use tokio_util::sync::CancellationToken;

/// Shared by everything one run does; cheap to clone (all clones are
/// cancelled together). `Default` is a token nobody cancels.
#[derive(Debug, Clone, Default)]
pub struct Cancel(CancellationToken);

/// The run was cancelled (Ctrl-C, SIGTERM) before it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

impl Cancel {
    /// A token nobody has cancelled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels the run (idempotent).
    pub fn cancel(&self) {
        self.0.cancel();
    }

    /// Whether the run was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }

    /// `Err(Interrupted)` once the run was cancelled: for `?` at a check point.
    ///
    /// # Errors
    /// [`Interrupted`] when the run was cancelled.
    pub fn check(&self) -> Result<(), Interrupted> {
        if self.is_cancelled() {
            Err(Interrupted)
        } else {
            Ok(())
        }
    }

    /// Resolves when the run is cancelled.
    pub async fn cancelled(&self) {
        self.0.cancelled().await;
    }

    /// Runs `fut` to its end unless the run is cancelled first, in which
    /// case `fut` is dropped (a request in flight is cut off) and this
    /// returns `Err(Interrupted)`. Checked before `fut` is first polled,
    /// so nothing new starts once the run is cancelled.
    ///
    /// # Errors
    /// [`Interrupted`] when the run was cancelled before `fut` finished.
    pub async fn run<F: Future>(&self, fut: F) -> Result<F::Output, Interrupted> {
        tokio::select! {
            biased;
            () = self.0.cancelled() => Err(Interrupted),
            out = fut => Ok(out),
        }
    }

    /// `inner`, failing every read once the run is cancelled, so a
    /// blocking copy stops within one buffer and its caller's error path
    /// cleans up. The error wraps [`Interrupted`].
    pub fn reader<R: Read>(&self, inner: R) -> CancelReader<R> {
        CancelReader {
            inner,
            cancel: self.clone(),
        }
    }
}

/// See [`Cancel::reader`].
#[derive(Debug)]
pub struct CancelReader<R> {
    inner: R,
    cancel: Cancel,
}

impl<R: Read> Read for CancelReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Not `ErrorKind::Interrupted`: `io::copy` retries that kind.
        self.cancel.check().map_err(std::io::Error::other)?;
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nothing_starts_once_cancelled_and_what_runs_is_dropped() {
        let cancel = Cancel::new();
        assert_eq!(cancel.run(async { 1 }).await, Ok(1));
        cancel.cancel();
        let mut started = false;
        let out = cancel.run(async { started = true }).await;
        assert_eq!(out, Err(Interrupted));
        assert!(!started);
        assert_eq!(cancel.check(), Err(Interrupted));
    }

    #[tokio::test]
    async fn a_future_in_flight_is_cut_off() {
        let cancel = Cancel::new();
        let other = cancel.clone();
        let pending = cancel.run(std::future::pending::<()>());
        let (out, ()) = tokio::join!(pending, async move { other.cancel() });
        assert_eq!(out, Err(Interrupted));
    }

    #[test]
    fn a_reader_fails_once_cancelled() {
        let cancel = Cancel::new();
        let mut r = cancel.reader(&b"abcdef"[..]);
        let mut buf = [0u8; 3];
        assert_eq!(r.read(&mut buf).unwrap(), 3);
        cancel.cancel();
        let e = r.read(&mut buf).unwrap_err();
        assert!(e.get_ref().is_some_and(|i| i.is::<Interrupted>()));
    }
}
