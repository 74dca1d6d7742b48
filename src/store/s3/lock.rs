//! Object Lock on S3 ([`crate::lock`]): reading the bucket's configuration
//! (once a store's life, and only when a run needs it), the retention
//! headers of every write (set by `with_write_options!`), and the one
//! header S3 wants on a write that a lock covers.
//!
//! S3 requires `Content-MD5` (or an SDK checksum) on every write of an
//! object version that gets a retention, explicit or from the bucket's
//! default ("Content-MD5 or x-amz-sdk-checksum-algorithm header required",
//! as moto words it): kopia's uploads were refused without it. s3backup
//! sends `Content-MD5` on every PutObject and UploadPart anyway; a
//! CopyObject has no body, so on a bucket whose writes are locked it gets
//! the MD5 of its empty body, which S3 checks against the (empty) body and
//! moto requires. Elsewhere it is not sent: a server that compares it with
//! the copied bytes (some do) would refuse the copy.

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{ObjectLockEnabled, ObjectLockRetentionMode};

use super::S3Store;
use super::errors::{Class, classify, convert};
use crate::lock::{BucketLock, LockMode, Retention};
use crate::store::StoreResult;

/// The base64 MD5 of an empty body, the `Content-MD5` of a locked CopyObject.
const EMPTY_BODY_MD5: &str = "1B2M2Y8AsgTpgAXAQMzo8w==";

/// S3's mode of a [`Retention`], for the write requests' setters.
pub(super) fn mode(lock: Option<&Retention>) -> Option<aws_sdk_s3::types::ObjectLockMode> {
    lock.map(|l| aws_sdk_s3::types::ObjectLockMode::from(l.mode.s3_name()))
}

/// S3's retain-until date of a [`Retention`], for the write requests' setters.
pub(super) fn until(lock: Option<&Retention>) -> Option<aws_smithy_types::DateTime> {
    lock.map(|l| aws_smithy_types::DateTime::from_secs(l.until.timestamp()))
}

/// What a HEAD or GET says about a version's retention, if anything.
pub(super) fn retention(
    mode: Option<&aws_sdk_s3::types::ObjectLockMode>,
    until: Option<&aws_smithy_types::DateTime>,
) -> Option<Retention> {
    let mode = LockMode::from_s3(mode?.as_str())?;
    let until = chrono::DateTime::from_timestamp(until?.secs(), 0)?;
    Some(Retention { mode, until })
}

/// Adds `Content-MD5` of the empty body to a request that has none.
pub(super) fn empty_body_md5(req: &mut aws_smithy_runtime_api::client::orchestrator::HttpRequest) {
    if req.headers().get("content-md5").is_none() {
        req.headers_mut().insert("content-md5", EMPTY_BODY_MD5);
    }
}

/// Adds the `Content-MD5` of a request's (in-memory) body.
fn body_md5(req: &mut aws_smithy_runtime_api::client::orchestrator::HttpRequest) {
    use md5::Digest;
    if let Some(bytes) = req.body().bytes() {
        let md5: crate::fs::hash::Md5 = md5::Md5::digest(bytes).into();
        req.headers_mut()
            .insert("content-md5", aws_smithy_types::base64::encode(md5));
    }
}

impl S3Store {
    /// The bucket's Object Lock, asked once and remembered (an error is
    /// not remembered: the next call asks again).
    ///
    /// # Errors
    /// [`crate::store::StoreError::NotFound`] for a missing bucket; the
    /// store's error for a refused or failed request. A bucket without a
    /// configuration, or a server that does not implement the request, is
    /// `Ok(None)`.
    pub(super) async fn bucket_lock(&self) -> StoreResult<Option<BucketLock>> {
        self.lock_seen
            .get_or_try_init(|| self.read_bucket_lock())
            .await
            .copied()
    }

    /// Whether this store's copies must carry `Content-MD5`: its writes get
    /// a retention, by `--lock-days` or by the bucket's default. Asked
    /// once; a bucket whose configuration cannot be read counts as unlocked.
    pub(super) async fn copies_need_md5(&self) -> bool {
        *self
            .copy_md5
            .get_or_init(|| async {
                self.write.lock.is_some()
                    || self
                        .bucket_lock()
                        .await
                        .inspect_err(|e| tracing::debug!("reading the bucket's Object Lock: {e}"))
                        .ok()
                        .flatten()
                        .is_some_and(|b| b.default.is_some())
            })
            .await
    }

    /// Extends the retention of one version (PutObjectRetention), with
    /// the `Content-MD5` of its body, which S3 requires.
    ///
    /// # Errors
    /// As [`convert`] sorts the SDK's: a lock that may not be shortened or
    /// weakened (compliance to governance) is refused by the store.
    pub(super) async fn extend_retention(
        &self,
        key: &str,
        version_id: &str,
        lock: &Retention,
    ) -> StoreResult<()> {
        let retention = aws_sdk_s3::types::ObjectLockRetention::builder()
            .mode(ObjectLockRetentionMode::from(lock.mode.s3_name()))
            .set_retain_until_date(until(Some(lock)))
            .build();
        self.client
            .put_object_retention()
            .bucket(&self.bucket)
            .key(key)
            .version_id(version_id)
            .retention(retention)
            .customize()
            .mutate_request(body_md5)
            .send()
            .await
            .map_err(|e| {
                convert(
                    e,
                    &format!("extending the Object Lock of '{key}' (version {version_id})"),
                )
            })?;
        Ok(())
    }

    /// One GetObjectLockConfiguration.
    async fn read_bucket_lock(&self) -> StoreResult<Option<BucketLock>> {
        let what = format!(
            "reading the Object Lock configuration of bucket '{}'",
            self.bucket
        );
        let out = match self
            .client
            .get_object_lock_configuration()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let code = e.code().unwrap_or_default().to_string();
                let none = match classify(&e) {
                    // ObjectLockConfigurationNotFoundError; not NoSuchBucket.
                    Class::NotFound => code != "NoSuchBucket",
                    Class::Refused => true,
                    // A server without the request (501).
                    _ => code == "NotImplemented",
                };
                return if none { Ok(None) } else { Err(convert(e, &what)) };
            }
        };
        let Some(config) = out.object_lock_configuration() else {
            return Ok(None);
        };
        if config.object_lock_enabled() != Some(&ObjectLockEnabled::Enabled) {
            return Ok(None);
        }
        let default = config.rule().and_then(|r| r.default_retention()).and_then(|d| {
            let mode = match d.mode()? {
                ObjectLockRetentionMode::Governance => LockMode::Governance,
                ObjectLockRetentionMode::Compliance => LockMode::Compliance,
                other => LockMode::from_s3(other.as_str())?,
            };
            let days = d.days().unwrap_or(0).max(0) as u32 + d.years().unwrap_or(0).max(0) as u32 * 365;
            Some((mode, days))
        });
        Ok(Some(BucketLock { default }))
    }
}
