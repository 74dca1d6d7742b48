//! The first contact with a bucket: the check of [`ObjectStore::prepare`]
//! (HeadBucket, held to short bounds and retried here so the error can say
//! what was tried), creating a missing bucket, and the guidance a user gets
//! when the bucket is elsewhere, someone else's, or out of reach. What an
//! SDK error means is decided by [`classify`], never by its text.
//!
//! [`ObjectStore::prepare`]: crate::store::ObjectStore::prepare

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::head_bucket::HeadBucketError;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};

use super::errors::{Class, classify, convert, error_chain};
use super::{DEFAULT_REGION, S3Store};
use crate::store::{Prepared, StoreError, StoreResult};

/// How long the first contact with a store (the bucket check of
/// [`ObjectStore::prepare`]) may take: an endpoint that accepts connections
/// and never answers would otherwise hold the run for the SDK's retries of
/// the full `--read-timeout` (minutes) before the first word. Each attempt
/// waits `--connect-timeout` for the connection and at most
/// [`FIRST_ANSWER_MAX`] (or `--read-timeout`, if shorter) for the answer,
/// since a HeadBucket answer is a few headers; there are at most
/// [`FIRST_CONTACT_ATTEMPTS`], together within [`FIRST_CONTACT_MAX`]
/// unless one attempt alone is configured to take longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FirstContact {
    /// Wait for an answer to begin, per attempt.
    pub(super) answer: Duration,
    /// Attempts at most.
    pub(super) attempts: u32,
    /// Deadline for all attempts and the pauses between them.
    pub(super) total: Duration,
}

/// Longest wait for the bucket check's answer to begin, per attempt.
const FIRST_ANSWER_MAX: Duration = Duration::from_secs(15);
/// Most attempts at the bucket check.
const FIRST_CONTACT_ATTEMPTS: u32 = 3;
/// Bound on the whole bucket check, retries included (with the default timeouts).
const FIRST_CONTACT_MAX: Duration = Duration::from_secs(30);

impl FirstContact {
    /// The bounds for the client's `(connect, read)` timeouts.
    pub(super) fn new((connect, read): (Duration, Duration)) -> Self {
        let answer = read.min(FIRST_ANSWER_MAX);
        let one = connect.saturating_add(answer);
        Self {
            answer,
            attempts: FIRST_CONTACT_ATTEMPTS,
            total: one
                .saturating_mul(FIRST_CONTACT_ATTEMPTS)
                .min(FIRST_CONTACT_MAX.max(one)),
        }
    }

    /// The pause before attempt `n` (2, 3, …): 0.2 s, then 0.4 s.
    fn pause(n: u32) -> Duration {
        Duration::from_millis(200 << n.saturating_sub(2).min(4))
    }
}

/// How the bounded bucket check ended, when it did not succeed.
enum CheckFailed {
    /// No answer before the [`FirstContact::total`] deadline.
    Deadline(String),
    /// The last attempt's error.
    Sdk(Box<SdkError<HeadBucketError, HttpResponse>>),
}

impl S3Store {
    /// Checks the bucket (HeadBucket within the [`FirstContact`] bounds);
    /// creates it when missing and `create` is set.
    ///
    /// # Errors
    /// [`StoreError::AccessDenied`] for a bucket these credentials may not
    /// use (or, when creating, a name someone else holds);
    /// [`StoreError::Fatal`] for a bucket in another region (naming it and
    /// the `--region` to pass) and other refusals; [`StoreError::Transient`]
    /// when the store cannot be reached or does not answer, saying where
    /// requests went and how many attempts were made.
    pub(super) async fn prepare_bucket(&self, create: bool) -> StoreResult<Prepared> {
        let (result, tried) = self.head_bucket_bounded().await;
        let what = format!("checking bucket '{}'", self.bucket);
        let e = match result {
            Ok(()) => return Ok(Prepared::Existing),
            Err(CheckFailed::Deadline(text)) => {
                return Err(StoreError::Transient(format!("{what}: {text}{tried}")));
            }
            Err(CheckFailed::Sdk(e)) => *e,
        };
        match classify(&e) {
            Class::NotFound if create => {
                self.create_bucket().await?;
                Ok(Prepared::Created)
            }
            Class::NotFound => Ok(Prepared::Missing),
            Class::AccessDenied => Err(StoreError::AccessDenied(format!(
                "bucket '{}' exists but these credentials may not use it (it may belong to another account; check --profile or AWS_ACCESS_KEY_ID)",
                self.bucket
            ))),
            Class::WrongRegion => {
                // S3 names the bucket's region in its redirect; say it.
                let home = e
                    .raw_response()
                    .and_then(|r| r.headers().get("x-amz-bucket-region"));
                Err(StoreError::Fatal(match home {
                    Some(home) => format!(
                        "bucket '{}' is in region '{home}', not '{}': pass --region {home}",
                        self.bucket, self.region
                    ),
                    None => format!(
                        "bucket '{}' is in another region than '{}': pass --region",
                        self.bucket, self.region
                    ),
                }))
            }
            Class::Unreachable => {
                let named = match &self.endpoint {
                    Some(url) => format!("cannot reach the endpoint {url}"),
                    None => format!("cannot reach S3 in region '{}'", self.region),
                };
                Err(StoreError::Transient(format!(
                    "{what}: {named}: {}{tried}",
                    error_chain(&e)
                )))
            }
            Class::Refused if is_bare_bad_request(&e) => Err(self.explain_bad_request(e, &what).await),
            class if class.is_transient() => match convert(e, &what) {
                StoreError::Transient(text) => Err(StoreError::Transient(format!(
                    "{text}: from {}{tried}",
                    self.where_to()
                ))),
                other => Err(other),
            },
            _ => Err(convert(e, &what)),
        }
    }

    /// Says why HeadBucket answered 400. A HEAD answer has no body, so no
    /// error code; the usual cause is a region the server does not answer
    /// to (Garage and MinIO check the region of the signature, and name
    /// theirs only in an error body). S3 names the bucket's region in the
    /// `x-amz-bucket-region` header; otherwise one GetBucketLocation, not
    /// retried, gets an answer with a body: `AuthorizationHeaderMalformed`
    /// with a `<Region>` element (as S3 and Garage send it) names the
    /// region to pass. Anything else is reported as that answer says.
    async fn explain_bad_request(
        &self,
        head: SdkError<HeadBucketError, HttpResponse>,
        what: &str,
    ) -> StoreError {
        let named = head
            .raw_response()
            .and_then(|r| r.headers().get("x-amz-bucket-region"))
            .map(str::to_string);
        let region = match named {
            Some(region) => Some(region),
            None => self.region_from_location().await,
        };
        match region {
            Some(region) if region != self.region => StoreError::Fatal(format!(
                "bucket '{}' is in region '{region}', not '{}': pass --region {region}",
                self.bucket, self.region
            )),
            _ => convert(head, what),
        }
    }

    /// The region named by a GetBucketLocation refused for its signature's
    /// region (`AuthorizationHeaderMalformed` with a `<Region>` element);
    /// `None` for any other answer. One attempt, first-contact bounds.
    async fn region_from_location(&self) -> Option<String> {
        use aws_sdk_s3::error::ProvideErrorMetadata;
        let plan = FirstContact::new(self.timeouts);
        let e = self
            .client
            .get_bucket_location()
            .bucket(&self.bucket)
            .customize()
            .config_override(self.first_contact_config(&plan, RetryConfig::disabled()))
            .send()
            .await
            .err()?;
        let service = e.as_service_error()?;
        if service.code() != Some("AuthorizationHeaderMalformed") {
            return None;
        }
        e.raw_response()
            .and_then(|r| r.body().bytes())
            .and_then(region_element)
    }

    /// Creates the bucket in the client's region; one already ours is fine.
    ///
    /// # Errors
    /// [`StoreError::AccessDenied`] when the name belongs to someone else;
    /// otherwise as [`convert`] sorts the SDK's error.
    async fn create_bucket(&self) -> StoreResult<()> {
        let mut req = self.client.create_bucket().bucket(&self.bucket);
        // us-east-1 is the one region that refuses an explicit location constraint.
        if self.region != DEFAULT_REGION {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.region.as_str()))
                    .build(),
            );
        }
        let e = match req.send().await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        match classify(&e) {
            Class::BucketOwned => Ok(()),
            Class::BucketTaken => Err(StoreError::AccessDenied(format!(
                "bucket '{}' already exists and belongs to someone else: choose another name",
                self.bucket
            ))),
            _ => Err(convert(e, &format!("creating bucket '{}'", self.bucket))),
        }
    }

    /// Where requests go, for messages: the endpoint, or S3 in the region.
    pub(super) fn where_to(&self) -> String {
        match &self.endpoint {
            Some(url) => format!("the endpoint {url}"),
            None => format!("S3 in region '{}'", self.region),
        }
    }

    /// The per-request configuration of a run's first request: `retry`,
    /// the client's connect timeout and the [`FirstContact`] answer wait.
    pub(super) fn first_contact_config(
        &self,
        plan: &FirstContact,
        retry: RetryConfig,
    ) -> aws_sdk_s3::config::Builder {
        aws_sdk_s3::config::Builder::default()
            .retry_config(retry)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(self.timeouts.0)
                    .read_timeout(plan.answer)
                    .build(),
            )
    }

    /// HeadBucket within the [`FirstContact`] bounds: the SDK's own
    /// retries are off for it, and transient failures (no connection, no
    /// answer in time, 5xx, throttling) are tried again here, so that the
    /// error can say what was tried. Returns the last attempt's result (or
    /// the deadline), and a note on the attempts to add to a transient error.
    async fn head_bucket_bounded(&self) -> (Result<(), CheckFailed>, String) {
        let plan = FirstContact::new(self.timeouts);
        let started = tokio::time::Instant::now();
        let deadline = started + plan.total;
        let config = self.first_contact_config(&plan, RetryConfig::disabled());
        let mut attempt = 0;
        let note = |attempt: u32| {
            format!(
                " ({attempt} attempt{} in {:.1} s, each allowed {} s to connect and {} s to answer)",
                if attempt == 1 { "" } else { "s" },
                started.elapsed().as_secs_f64(),
                self.timeouts.0.as_secs(),
                plan.answer.as_secs(),
            )
        };
        loop {
            attempt += 1;
            let send = self
                .client
                .head_bucket()
                .bucket(&self.bucket)
                .customize()
                .config_override(config.clone())
                .send();
            let result = match tokio::time::timeout_at(deadline, send).await {
                Ok(result) => result.map(|_| ()),
                Err(_) => {
                    let text = format!("request has timed out: no answer from {}", self.where_to());
                    return (Err(CheckFailed::Deadline(text)), note(attempt));
                }
            };
            let retry = result.as_ref().is_err_and(|e| classify(e).is_transient());
            let pause = FirstContact::pause(attempt + 1);
            if !retry || attempt >= plan.attempts || tokio::time::Instant::now() + pause >= deadline {
                return (result.map_err(|e| CheckFailed::Sdk(Box::new(e))), note(attempt));
            }
            tracing::debug!(attempt, bucket = self.bucket, "bucket check failed; trying again");
            tokio::time::sleep(pause).await;
        }
    }
}

/// Whether HeadBucket's error is a 400 without an error code (a HEAD
/// answer carries no body to hold one).
fn is_bare_bad_request(e: &SdkError<HeadBucketError, HttpResponse>) -> bool {
    use aws_sdk_s3::error::ProvideErrorMetadata;
    e.raw_response().is_some_and(|r| r.status().as_u16() == 400) && e.code().is_none()
}

/// The text of the `<Region>` element of an S3 error body, if it holds a
/// region name (lowercase letters, digits and dashes, as S3's regions and
/// Garage's default `garage` are).
fn region_element(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Region>")? + "<Region>".len();
    let len = text[start..].find("</Region>")?;
    let region = &text[start..start + len];
    let plain = !region.is_empty()
        && region.len() <= 64
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    plain.then(|| region.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_is_read_from_an_error_body() {
        let garage = br#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>AuthorizationHeaderMalformed</Code><Message>unexpected scope</Message><Resource>/backups</Resource><Region>garage</Region></Error>"#;
        assert_eq!(region_element(garage).as_deref(), Some("garage"));
        assert_eq!(
            region_element(b"<Error><Region>eu-west-1</Region></Error>").as_deref(),
            Some("eu-west-1")
        );
        for bad in [
            &b"<Error><Region></Region></Error>"[..],
            b"<Error><Region>a b</Region></Error>",
            b"<Error><Region>x",
            b"<Error></Error>",
            b"\xff<Region>x</Region>",
        ] {
            assert_eq!(region_element(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_first_contact_is_bounded() {
        let secs = Duration::from_secs;
        // The defaults (10 s, 120 s): 15 s per answer, 30 s in all.
        let plan = FirstContact::new((secs(10), secs(120)));
        assert_eq!(plan.answer, secs(15));
        assert_eq!(plan.total, secs(30));
        assert!(plan.total < secs(60));
        // Short timeouts: three whole attempts.
        let plan = FirstContact::new((secs(1), secs(1)));
        assert_eq!((plan.answer, plan.total, plan.attempts), (secs(1), secs(6), 3));
        // The longest timeouts allowed: one attempt still fits, nothing overflows.
        let day = secs(crate::store::MAX_TIMEOUT_SECS);
        let plan = FirstContact::new((day, day));
        assert_eq!(plan.total, day + secs(15));
        assert_eq!(FirstContact::pause(2), Duration::from_millis(200));
        assert_eq!(FirstContact::pause(3), Duration::from_millis(400));
    }
}
