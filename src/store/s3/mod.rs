//! The S3 store: aws-sdk-s3 behind [`ObjectStore`].
//!
//! Everything SDK-specific lives in this module and its children, one
//! concern each: `client` builds the client (credential chain, profile,
//! region, endpoint, path-style, retries, timeouts); `errors` sorts SDK
//! errors into [`StoreError`] by their structure, in one function;
//! `bucket` is the first contact (the bounded bucket check, creating a
//! bucket, and the guidance when it fails); `list` and `multipart` are
//! those operations; `etags` what an ETag proves (judged by what each
//! answer says) and the checks around copies; `retry_after` the
//! `Retry-After` header honoured; this file holds the settings,
//! single-object reads and writes, copies and deletes. Current SDK releases add CRC checksum
//! headers and trailers to every upload by default, which several
//! S3-compatible servers reject; the client asks for checksums only where
//! the S3 API requires them, which every server supports.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::MetadataDirective;
use aws_smithy_types::body::SdkBody;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::fs::checksum::Sum;
use crate::fs::hash::Md5;

use super::pace::{self, Bandwidth, BandwidthLimit};
use super::{
    ByteChunks, CompletedPart, FileRange, GetRequest, ObjectInfo, ObjectMeta, ObjectStore, PendingUpload,
    Prepared, PutOutcome, RemoteObject, StoreError, StoreResult,
};
use errors::convert;

/// Applies [`WriteOptions`] to any of the SDK's write requests.
macro_rules! with_write_options {
    ($req:expr, $w:expr, $key:expr) => {{
        let w: &$crate::store::s3::WriteOptions = $w;
        let is_tool_object = $key.starts_with(".s3backup/") || $key.contains("/.s3backup/");
        $req.set_storage_class(
            w.storage_class
                .as_deref()
                .filter(|_| !is_tool_object)
                .map(aws_sdk_s3::types::StorageClass::from),
        )
        .set_server_side_encryption(
            w.sse
                .as_deref()
                .map(aws_sdk_s3::types::ServerSideEncryption::from),
        )
        .set_ssekms_key_id(w.sse_kms_key_id.clone())
        .set_acl(w.acl.as_deref().map(aws_sdk_s3::types::ObjectCannedAcl::from))
        .set_object_lock_mode($crate::store::s3::lock::mode(w.lock.as_ref()))
        .set_object_lock_retain_until_date($crate::store::s3::lock::until(w.lock.as_ref()))
    }};
}

#[macro_use]
mod sums;
mod bucket;
mod client;
mod copy_parts;
mod count;
mod errors;
mod etags;
mod list;
mod lock;
mod multipart;
mod retry_after;

/// Region used when neither the flags, the environment nor the config files name one.
pub(crate) const DEFAULT_REGION: &str = "us-east-1";

/// How to reach S3: what the user gave on the command line; the rest comes
/// from the standard AWS environment and config files.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    /// Named profile from `~/.aws/config` / `~/.aws/credentials`.
    pub profile: Option<String>,
    /// Region override.
    pub region: Option<String>,
    /// Endpoint override for S3-compatible servers (also `AWS_ENDPOINT_URL`).
    pub endpoint_url: Option<String>,
    /// Force path-style addressing (`endpoint/bucket/key`).
    pub path_style: bool,
    /// Connect timeout (zero: the default of 10 s).
    pub connect_timeout: Duration,
    /// Read timeout (zero: the default of 120 s).
    pub read_timeout: Duration,
    /// How new objects are stored (backups only).
    pub write: WriteOptions,
    /// `--max-bandwidth`: paces every byte the store sends or receives
    /// (any store, not only S3; see [`super::pace`]).
    pub bandwidth: Option<BandwidthLimit>,
}

/// Per-object settings of every object a backup writes: storage class,
/// server-side encryption and canned ACL (none of them sent unless asked,
/// so the bucket's defaults apply).
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `x-amz-storage-class` for file objects (manifests stay STANDARD, so a
    /// restore never has to wait for one to come out of an archive).
    pub storage_class: Option<String>,
    /// `x-amz-server-side-encryption`: `AES256`, `aws:kms` or `aws:kms:dsse`.
    pub sse: Option<String>,
    /// The KMS key for `aws:kms`.
    pub sse_kms_key_id: Option<String>,
    /// `x-amz-acl` (a canned ACL such as `bucket-owner-full-control`).
    pub acl: Option<String>,
    /// `--checksum-algorithm`: the additional checksum every upload sends
    /// (computed by the caller, [`FileRange::sum`]) and multipart uploads
    /// and copies name.
    pub checksum: Option<crate::fs::checksum::Algorithm>,
    /// `--lock-days`: the Object Lock retention of every object version
    /// written, manifests included (see [`crate::lock`]).
    pub lock: Option<crate::lock::Retention>,
}

/// An S3 bucket reached through aws-sdk-s3.
pub struct S3Store {
    client: Client,
    bucket: String,
    region: String,
    /// The endpoint as configured, to name in connection errors.
    endpoint: Option<String>,
    /// The profile named by `--profile` or `AWS_PROFILE`, if any.
    profile: Option<String>,
    /// Storage class, encryption and ACL of new objects.
    write: WriteOptions,
    /// The run's bandwidth limit, if any.
    bandwidth: Option<Arc<Bandwidth>>,
    /// The timeouts the client was built with, for the paced uploads' longer ones.
    timeouts: (Duration, Duration),
    /// Every request the client sends, counted by its interceptor.
    counter: Arc<super::counts::RequestCounter>,
    /// Whether the bucket keeps the versions its writes name, asked once
    /// per run, at the first write that names one ([`S3Store::kept`]).
    versioning: tokio::sync::OnceCell<bool>,
    /// The bucket's Object Lock, once asked (see `lock`).
    lock_seen: tokio::sync::OnceCell<Option<crate::lock::BucketLock>>,
    /// Whether copies carry `Content-MD5`, once decided (see `lock`).
    copy_md5: tokio::sync::OnceCell<bool>,
}

impl S3Store {
    /// An upload body, paced when there is a bandwidth limit. The SDK
    /// re-sends a body on a retry: a file body can be read again, so the
    /// paced one is rebuilt around a fresh copy each time.
    fn paced(&self, body: ByteStream) -> ByteStream {
        let Some(limit) = self.bandwidth.clone() else {
            return body;
        };
        let inner = body.into_inner();
        if inner.try_clone().is_none() {
            return ByteStream::new(SdkBody::from_body_1_x(pace::PacedBody::new(inner, limit)));
        }
        ByteStream::new(SdkBody::retryable(move || match inner.try_clone() {
            Some(copy) => SdkBody::from_body_1_x(pace::PacedBody::new(copy, limit.clone())),
            // Not reached (checked above); a taken body fails the request rather than send other bytes.
            None => SdkBody::taken(),
        }))
    }

    /// Per-request settings of an upload of `len` bytes: under a bandwidth
    /// limit the SDK's read timeout, which runs from the start of the
    /// request until the answer's headers and so covers sending the body,
    /// is lengthened by the time the bytes may take at the limit
    /// ([`Bandwidth::upload_allowance`]); `None` without a limit (nothing changes).
    fn upload_config(&self, len: u64) -> Option<aws_sdk_s3::config::Builder> {
        let limit = self.bandwidth.as_ref()?;
        Some(
            aws_sdk_s3::config::Builder::default().timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(self.timeouts.0)
                    .read_timeout(self.timeouts.1 + limit.upload_allowance(len))
                    .build(),
            ),
        )
    }

    /// One PutObject of `len` bytes with the write options and `meta`;
    /// with `md5`, sent as `Content-MD5` and checked against the ETag; with
    /// `sum`, sent as its `x-amz-checksum-*` header.
    async fn put(
        &self,
        key: &str,
        len: u64,
        body: aws_sdk_s3::primitives::ByteStream,
        (md5, sum): (Option<Md5>, Option<Sum>),
        meta: &ObjectMeta,
        what: &str,
    ) -> StoreResult<PutOutcome> {
        let what = format!("{what} '{key}'");
        let req = self.client.put_object().bucket(&self.bucket).key(key);
        let req = with_sum!(with_write_options!(req, &self.write, key), sum)
            .content_length(len as i64)
            .set_content_md5(md5.map(aws_smithy_types::base64::encode))
            .set_metadata(Some(metadata(meta)))
            .body(self.paced(body));
        // A per-request config costs a layer of runtime plugins on every
        // request: only paced uploads, which need a longer timeout, have one.
        // A body with its Content-MD5 is sent as UNSIGNED-PAYLOAD: the store
        // already refuses one that differs from the bytes hashed, and the
        // SDK would SHA-256 a body held in memory for the signature (it
        // cannot for a streamed one, which goes unsigned anyway). Under
        // valgrind (no SHA instructions) that hash was the +49 % a first
        // backup of small files counted once their bodies were read whole.
        let out = match (self.upload_config(len), md5.is_some()) {
            (Some(config), _) => req.customize().config_override(config).send().await,
            (None, true) => req.customize().disable_payload_signing().send().await,
            (None, false) => req.send().await,
        }
        .map_err(|e| errors::convert_write(e, &what))?;
        let etag = clean_etag(out.e_tag());
        let stored = etags::Stored {
            sse: out.server_side_encryption(),
            customer_key: out.sse_customer_algorithm(),
        };
        self.check_etag(&etag, md5, stored, &what)?;
        Ok(PutOutcome {
            etag,
            version_id: self.kept(out.version_id()).await,
            checksum: stored_sum!(out, sum.map(|s| s.algorithm)),
        })
    }

    /// The version ID a write answered with, when it names a version the
    /// bucket keeps. S3 sends one only from a bucket with versioning on,
    /// but not every store follows that: Garage answers every PutObject
    /// with an `x-amz-version-id` (its internal version) while it has no
    /// bucket versioning at all, and the next write of the key drops the
    /// old content. A version taken for kept there would stand in for the
    /// history copy older snapshots need. So the first write that names a
    /// version asks the bucket once (GetBucketVersioning): an ID counts
    /// only where versioning is `Enabled` or `Suspended` (it was on once;
    /// writes made while suspended get the `null` version, which
    /// [`crate::store::kept_version`] drops). A refused or failed question
    /// counts as no versioning: older content is then copied, never lost.
    async fn kept(&self, version_id: Option<&str>) -> Option<String> {
        let id = crate::store::kept_version(version_id)?;
        let keeps = *self
            .versioning
            .get_or_init(|| async {
                match self
                    .client
                    .get_bucket_versioning()
                    .bucket(&self.bucket)
                    .send()
                    .await
                {
                    Ok(out) => out.status().is_some(),
                    Err(e) => {
                        tracing::debug!(
                            "bucket versioning unknown ({}); version IDs are not relied on",
                            errors::error_chain(&e)
                        );
                        false
                    }
                }
            })
            .await;
        keeps.then(|| id.to_string())
    }
}

fn metadata(meta: &ObjectMeta) -> std::collections::HashMap<String, String> {
    let mut map: std::collections::HashMap<String, String> = [
        ("mtime".to_string(), meta.mtime_text()),
        ("mode".to_string(), meta.mode_text()),
        ("blake3".to_string(), meta.blake3.clone()),
    ]
    .into_iter()
    .collect();
    if meta.symlink {
        map.insert("type".to_string(), "symlink".to_string());
    }
    map
}

fn clean_etag(etag: Option<&str>) -> String {
    etag.unwrap_or_default().trim_matches('"').to_string()
}

/// Bodies up to this many bytes are read into memory when the request is
/// built (see [`body`]): the same as one streamed chunk, so a request in
/// flight holds no more than it did (see [`crate::store::flow`]'s bound).
const SMALL_BODY: u64 = pace::MAX_CHUNK as u64;

/// The body of `range`: a small one (at most [`SMALL_BODY`] bytes, and
/// `whole` set: no bandwidth limit cuts it into paced pieces) read into
/// memory at once, on the calling thread, as the restore writes small
/// files (a page-cache read of a few KiB costs less than handing it to a
/// blocking thread, and the SDK's file body does that for the open and
/// for every read); a larger one streamed from the file. Either can be
/// sent again on a retry, and either holds the bytes read when it is
/// sent, which `Content-MD5` checks against the hashing's.
async fn body(range: FileRange<'_>, whole: bool) -> StoreResult<ByteStream> {
    if whole && range.len <= SMALL_BODY {
        return read_small(range).map(ByteStream::from);
    }
    ByteStream::read_from()
        .path(range.path)
        .offset(range.offset)
        .length(Length::Exact(range.len))
        .buffer_size(pace::MAX_CHUNK)
        .build()
        .await
        .map_err(|e| read_error(range, e))
}

/// The bytes of a small `range`, read in one go.
fn read_small(range: FileRange<'_>) -> StoreResult<Vec<u8>> {
    use std::io::{Read, Seek};
    let read = || -> std::io::Result<Vec<u8>> {
        let mut file = std::fs::File::open(range.path)?;
        if range.offset > 0 {
            file.seek(std::io::SeekFrom::Start(range.offset))?;
        }
        let mut buf = Vec::with_capacity(usize::try_from(range.len).unwrap_or(0));
        file.take(range.len).read_to_end(&mut buf)?;
        Ok(buf)
    };
    let buf = read().map_err(|e| read_error(range, e))?;
    if (buf.len() as u64) < range.len {
        return Err(StoreError::Shrank(format!("reading {}", range.path.display())));
    }
    Ok(buf)
}

/// What a failed read of `range` means: a file now shorter than the range
/// shrank (the SDK checks the range against the file's length, and its
/// error kinds are private); anything else ends the file's upload.
fn read_error(range: FileRange<'_>, e: impl std::fmt::Display) -> StoreError {
    let what = format!("reading {}", range.path.display());
    match std::fs::metadata(range.path) {
        Ok(md) if md.len() < range.offset.saturating_add(range.len) => StoreError::Shrank(what),
        _ => StoreError::Fatal(format!("{what}: {e}")),
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn prepare(&self, create: bool) -> StoreResult<Prepared> {
        self.prepare_bucket(create).await
    }

    async fn put_file(&self, key: &str, range: FileRange<'_>, meta: &ObjectMeta) -> StoreResult<PutOutcome> {
        let sum = self.sum_of(range).await?;
        let body = body(range, self.bandwidth.is_none()).await?;
        self.put(key, range.len, body, (range.md5, sum), meta, "uploading")
            .await
    }

    async fn put_symlink(&self, key: &str, target: &[u8], meta: &ObjectMeta) -> StoreResult<PutOutcome> {
        let body = aws_sdk_s3::primitives::ByteStream::from(target.to_vec());
        let md5 = crate::fs::hash::md5_of(target);
        let sum = self.write.checksum.map(|a| Sum::of(a, target));
        self.put(
            key,
            target.len() as u64,
            body,
            (Some(md5), sum),
            meta,
            "uploading symlink",
        )
        .await
    }

    async fn pending_uploads(&self, prefix: &str) -> StoreResult<Vec<PendingUpload>> {
        self.pending_uploads(prefix).await
    }

    async fn create_multipart(&self, key: &str, meta: &ObjectMeta) -> StoreResult<String> {
        self.create_multipart(key, meta).await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        range: FileRange<'_>,
    ) -> StoreResult<String> {
        self.upload_part(key, upload_id, number, range).await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        whole: Option<Sum>,
    ) -> StoreResult<PutOutcome> {
        self.complete_multipart(key, upload_id, parts, whole).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        self.abort_multipart(key, upload_id).await
    }

    async fn copy(
        &self,
        src_key: &str,
        dst_key: &str,
        meta: &ObjectMeta,
        if_match: Option<&str>,
    ) -> StoreResult<PutOutcome> {
        let source = format!("{}/{}", self.bucket, encode_copy_source(src_key));
        let what = format!("copying '{src_key}' to '{dst_key}'");
        // A copy (also a metadata refresh in place) would otherwise fall back
        // to the bucket's defaults: the write options go with it.
        let if_match = if_match.filter(|e| !e.is_empty());
        if let Some(expected) = if_match
            && src_key == dst_key
        {
            self.check_before_self_copy(src_key, expected, &what).await?;
        }
        let req = self.client.copy_object().bucket(&self.bucket).key(dst_key);
        let req = with_write_options!(req, &self.write, dst_key)
            .copy_source(source)
            // S3 answers 412 (Changed) when the source's ETag differs.
            .set_copy_source_if_match(if_match.map(|e| format!("\"{e}\"")))
            .metadata_directive(MetadataDirective::Replace)
            .set_metadata(Some(metadata(meta)))
            // The copy gets the run's checksum, computed by the store.
            .set_checksum_algorithm(self.write.checksum.map(sums::sdk_algorithm));
        let out = if self.copies_need_md5().await {
            req.customize().mutate_request(lock::empty_body_md5).send().await
        } else {
            req.send().await
        }
        .map_err(|e| convert(e, &what))?;
        let etag = clean_etag(out.copy_object_result().and_then(|r| r.e_tag()));
        // A server that ignores the condition is caught here (`etags`).
        if let Some(expected) = if_match {
            let stored = etags::Stored {
                sse: out.server_side_encryption(),
                customer_key: out.sse_customer_algorithm(),
            };
            self.check_after_copy(src_key, dst_key, expected, Some((&etag, stored)), &what)
                .await?;
        }
        let checksum = out
            .copy_object_result()
            .and_then(|r| stored_sum!(r, self.write.checksum));
        Ok(PutOutcome {
            etag,
            version_id: self.kept(out.version_id()).await,
            checksum,
        })
    }

    async fn copy_in_parts(
        &self,
        src_key: &str,
        dst_key: &str,
        size: u64,
        part_size: u64,
        meta: &ObjectMeta,
        if_match: Option<&str>,
    ) -> StoreResult<PutOutcome> {
        self.copy_by_parts(src_key, dst_key, size, part_size, meta, if_match)
            .await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| convert(e, &format!("deleting '{key}'")))?;
        Ok(())
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, StoreResult<ObjectInfo>> {
        self.list(prefix)
    }

    async fn list_after(&self, prefix: &str, start_after: &str, max: usize) -> StoreResult<Vec<ObjectInfo>> {
        self.list_after(prefix, start_after, max).await
    }

    async fn get(&self, key: &str, req: GetRequest<'_>) -> StoreResult<(RemoteObject, ByteChunks)> {
        let mut get = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(req.version_id.map(str::to_string))
            .set_if_match(req.if_match.map(|e| format!("\"{e}\"")));
        if let Some((start, len)) = req.range.filter(|(_, len)| *len > 0) {
            get = get.range(format!("bytes={start}-{}", start + len - 1));
        }
        let out = get
            .send()
            .await
            .map_err(|e| convert(e, &format!("downloading '{key}'")))?;
        let size = out
            .content_range()
            .and_then(|r| r.rsplit('/').next())
            .and_then(|total| total.parse().ok())
            .unwrap_or(out.content_length().unwrap_or(0).max(0) as u64);
        let mut remote = remote_object(
            size,
            out.e_tag(),
            crate::store::kept_version(out.version_id()),
            out.last_modified(),
            out.metadata(),
        );
        remote.lock = lock::retention(out.object_lock_mode(), out.object_lock_retain_until_date());
        let what = format!("downloading '{key}'");
        let chunks = futures::stream::unfold(Some(out.body), move |body| {
            let what = what.clone();
            async move {
                let mut body = body?;
                match body.try_next().await {
                    Ok(Some(bytes)) => Some((Ok(bytes), Some(body))),
                    Ok(None) => None,
                    Err(e) => Some((Err(StoreError::Transient(format!("{what}: {e}"))), None)),
                }
            }
        })
        .boxed();
        Ok((remote, pace::pace_chunks(self.bandwidth.as_ref(), chunks)))
    }

    async fn head(&self, key: &str, version_id: Option<&str>) -> StoreResult<RemoteObject> {
        self.head_object(key, version_id, false).await
    }

    async fn object_lock(&self) -> StoreResult<Option<crate::lock::BucketLock>> {
        self.bucket_lock().await
    }

    async fn put_retention(
        &self,
        key: &str,
        version_id: &str,
        lock: &crate::lock::Retention,
    ) -> StoreResult<()> {
        self.extend_retention(key, version_id, lock).await
    }

    async fn head_checksum(&self, key: &str, version_id: Option<&str>) -> StoreResult<RemoteObject> {
        self.head_object(key, version_id, true).await
    }

    fn describe(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    fn requests(&self) -> super::RequestCounts {
        self.counter.snapshot()
    }

    fn signals(&self) -> Arc<super::flow::Signals> {
        self.counter.flow.clone()
    }

    fn location(&self) -> Option<String> {
        let parts: Vec<String> = [
            self.endpoint
                .as_ref()
                .map(|e| format!("endpoint {}", e.trim_end_matches('/'))),
            self.profile.as_ref().map(|p| format!("profile {p}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// What GetObject and HeadObject say about an object, in the store's terms.
fn remote_object(
    size: u64,
    etag: Option<&str>,
    version_id: Option<&str>,
    last_modified: Option<&aws_smithy_types::DateTime>,
    metadata: Option<&std::collections::HashMap<String, String>>,
) -> RemoteObject {
    let mut remote = RemoteObject {
        size,
        etag: clean_etag(etag),
        version_id: version_id.map(str::to_string),
        last_modified_ns: last_modified.map(datetime_ns),
        ..RemoteObject::default()
    };
    if let Some(meta) = metadata {
        remote.apply_metadata(|k| meta.get(k).map(String::as_str));
    }
    remote
}

fn datetime_ns(t: &aws_smithy_types::DateTime) -> i64 {
    t.as_nanos().clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// Percent-encodes a key for the `x-amz-copy-source` header, keeping `/`.
fn encode_copy_source(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_source_is_encoded() {
        assert_eq!(encode_copy_source("a b/ü+x.txt"), "a%20b/%C3%BC%2Bx.txt");
    }
}
