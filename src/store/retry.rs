//! Retrying store requests on transient errors ([`StoreError::is_transient`]),
//! on top of the SDK's own retries: a body cut short after its headers
//! arrived is something only the caller can retry.

use std::time::Duration;

use super::StoreError;

/// Attempts per file operation for transient errors (on top of the SDK's own retries).
pub(crate) const ATTEMPTS: u32 = 2;

/// Attempts for a download: the SDK retries a request only until its
/// headers arrive, so a body cut short is retried here alone.
pub const DOWNLOAD_ATTEMPTS: u32 = 4;

/// Retries `op` on transient errors with exponential backoff.
///
/// # Errors
/// The last error: a non-transient one at once, a transient one after
/// [`ATTEMPTS`] attempts.
pub(crate) async fn retry<T, F, Fut>(what: &str, op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    retry_n(ATTEMPTS, what, op).await
}

/// [`retry`] with a given number of attempts.
///
/// # Errors
/// As [`retry`], after `attempts` attempts.
pub(crate) async fn retry_n<T, F, Fut>(attempts: u32, what: &str, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if e.is_transient() && attempt < attempts => {
                // Exponential backoff with full jitter, so many files failing
                // together (throttling) do not retry in lockstep.
                let delay = fastrand::u64(100..=(500u64 << attempt));
                tracing::info!(attempt, delay_ms = delay, "{what}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(delay)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}
