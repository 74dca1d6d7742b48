//! Waiting as long as the store asks: the `Retry-After` header of a
//! throttling or unavailable answer (503 SlowDown, 429, 500…).
//!
//! The SDK's standard retry reads only AWS's own `x-amz-retry-after`
//! (milliseconds); `Retry-After` (RFC 9110 §10.2.3: delay-seconds or an
//! HTTP date), which S3-compatible servers and proxies send with 503, is
//! ignored, and its first backoff is under a second whatever the server
//! asked. [`RetryAfter`] runs after the SDK's classifiers: where they found
//! the answer worth retrying, it puts the asked-for delay into their
//! verdict, so the retry comes no sooner than asked. The delay is capped at
//! [`MAX_RETRY_AFTER`] (a server asking for an hour does not stall the run
//! an hour; the request is retried after the cap, and the run's own retry
//! rules apply if it fails again), and the retry still counts against the
//! client's attempts (4 per request): the header never adds attempts, and
//! never makes an answer retryable that the SDK would not retry.

use std::time::{Duration, SystemTime};

use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority, RetryReason,
};
use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;

/// The longest `Retry-After` honoured: the SDK's own longest backoff (20 s).
pub(super) const MAX_RETRY_AFTER: Duration = Duration::from_secs(20);

/// The retry classifier that honours `Retry-After`.
#[derive(Debug, Default)]
pub(super) struct RetryAfter;

impl ClassifyRetry for RetryAfter {
    fn classify_retry(&self, _ctx: &InterceptorContext) -> RetryAction {
        // Alone it decides nothing: it only refines a verdict (below).
        RetryAction::NoActionIndicated
    }

    fn classify_retry_v2(&self, ctx: &InterceptorContext, previous: &RetryAction) -> RetryAction {
        let RetryAction::RetryIndicated(RetryReason::RetryableError { kind, retry_after }) = previous else {
            return RetryAction::NoActionIndicated;
        };
        let Some(asked) = ctx
            .response()
            .and_then(|r| r.headers().get("retry-after"))
            .and_then(|v| delay_asked(v, SystemTime::now()))
        else {
            return RetryAction::NoActionIndicated;
        };
        let delay = asked.min(MAX_RETRY_AFTER).max(retry_after.unwrap_or_default());
        RetryAction::retryable_error_with_explicit_delay(*kind, delay)
    }

    fn name(&self) -> &'static str {
        "Retry-After"
    }

    fn priority(&self) -> RetryClassifierPriority {
        // After every classifier the SDK adds (the transient-error one runs last).
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

/// The delay a `Retry-After` value asks for at `now`: whole seconds, or an
/// HTTP date (zero when it has passed). `None` for anything else.
fn delay_asked(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = SystemTime::try_from(DateTime::from_str(value, Format::HttpDate).ok()?).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use aws_smithy_runtime_api::client::interceptors::context::Input;
    use aws_smithy_runtime_api::http::Response;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::retry::ErrorKind;

    use super::*;

    /// The verdict for an answer with `Retry-After: value`, after `previous`.
    fn verdict(value: &str, previous: &RetryAction) -> RetryAction {
        let mut answer = Response::new(503.try_into().unwrap(), SdkBody::empty());
        answer.headers_mut().insert("retry-after", value.to_owned());
        let mut ctx = InterceptorContext::new(Input::doesnt_matter());
        ctx.set_response(answer);
        RetryAfter.classify_retry_v2(&ctx, previous)
    }

    #[test]
    fn the_delay_asked_refines_a_retry_capped_and_never_starts_one() {
        let throttled = RetryAction::retryable_error(ErrorKind::ThrottlingError);
        let after = |d| RetryAction::retryable_error_with_explicit_delay(ErrorKind::ThrottlingError, d);
        assert_eq!(verdict("2", &throttled), after(Duration::from_secs(2)));
        assert_eq!(verdict("3600", &throttled), after(MAX_RETRY_AFTER), "capped");
        // A longer wait another classifier asked for (x-amz-retry-after) stands.
        assert_eq!(
            verdict("1", &after(Duration::from_secs(5))),
            after(Duration::from_secs(5))
        );
        assert_eq!(verdict("soon", &throttled), RetryAction::NoActionIndicated);
        for not_retried in [RetryAction::NoActionIndicated, RetryAction::RetryForbidden] {
            assert_eq!(verdict("2", &not_retried), RetryAction::NoActionIndicated);
        }
    }

    #[test]
    fn both_forms_are_read() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(delay_asked("3", now), Some(Duration::from_secs(3)));
        assert_eq!(delay_asked(" 0 ", now), Some(Duration::ZERO));
        // 1_700_000_005 is Tue, 14 Nov 2023 22:13:25 GMT.
        assert_eq!(
            delay_asked("Tue, 14 Nov 2023 22:13:25 GMT", now),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            delay_asked("Tue, 14 Nov 2023 22:13:15 GMT", now),
            Some(Duration::ZERO),
            "a date gone by asks for no wait"
        );
        for bad in ["", "-1", "1.5", "soon", "Tue, 14 Nov 2023"] {
            assert_eq!(delay_asked(bad, now), None, "{bad:?}");
        }
    }
}
