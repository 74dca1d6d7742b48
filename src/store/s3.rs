//! The S3 store: aws-sdk-s3 behind [`ObjectStore`].
//!
//! Everything SDK-specific lives here: building the client (credential
//! chain, profile, region, endpoint, path-style, retries, timeouts) and
//! turning SDK errors into [`StoreError`]. Current SDK releases add CRC
//! checksum headers and trailers to every upload by default, which several
//! S3-compatible servers reject; the client asks for checksums only where
//! the S3 API requires them, which every server supports.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{
    BucketLocationConstraint, CompletedMultipartUpload, CreateBucketConfiguration, MetadataDirective,
};
use aws_smithy_types::body::SdkBody;

use futures::StreamExt;
use futures::stream::BoxStream;

use crate::fs::hash::Md5;

use super::pace::{self, Bandwidth, BandwidthLimit};
use super::{
    ByteChunks, CompletedPart, FileRange, GetRequest, ObjectInfo, ObjectMeta, ObjectStore, Prepared,
    PutOutcome, RemoteObject, StoreError, StoreResult,
};

/// Region used when neither the flags, the environment nor the config files name one.
pub const DEFAULT_REGION: &str = "us-east-1";

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
}

/// Applies [`WriteOptions`] to any of the SDK's write requests.
macro_rules! with_write_options {
    ($req:expr, $w:expr, $key:expr) => {{
        let w: &WriteOptions = $w;
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
    }};
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
}

impl S3Store {
    /// Builds the client from the standard credential chain and `settings`,
    /// and checks that credentials can be found at all.
    pub async fn connect(bucket: &str, settings: &S3Settings) -> StoreResult<Self> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(profile) = &settings.profile {
            // A profile named on the command line wins over keys in the
            // environment, as with the AWS CLI: otherwise `--profile prod`
            // would quietly write with whatever AWS_ACCESS_KEY_ID is set.
            let from_profile = aws_config::profile::ProfileFileCredentialsProvider::builder()
                .profile_name(profile)
                .build();
            loader = loader.profile_name(profile).credentials_provider(from_profile);
        }
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let sdk = loader.load().await;
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| DEFAULT_REGION.to_string());
        let endpoint = sdk.endpoint_url().map(str::to_string);
        let path_style = settings.path_style || endpoint.as_deref().is_some_and(is_local_endpoint);

        let provider = sdk
            .credentials_provider()
            .ok_or_else(|| StoreError::Fatal("no AWS credentials provider is configured".into()))?;
        provider.provide_credentials().await.map_err(|e| {
            tracing::debug!("credential chain: {}", DisplayErrorContext(&e));
            StoreError::Fatal(match &settings.profile {
                Some(profile) => format!(
                    "no usable AWS credentials for profile '{profile}': it is not in ~/.aws/config or ~/.aws/credentials (AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE) or has no keys (-vv shows what was tried)"
                ),
                None => "no usable AWS credentials: run 'aws configure', set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass --profile (-vv shows what was tried)"
                    .into(),
            })
        })?;

        let timeouts = (
            or_default(settings.connect_timeout, 10),
            or_default(settings.read_timeout, 120),
        );
        let config = aws_sdk_s3::config::Builder::from(&sdk)
            .region(Region::new(region.clone()))
            .force_path_style(path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(RetryConfig::standard().with_max_attempts(4))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(timeouts.0)
                    .read_timeout(timeouts.1)
                    .build(),
            )
            .build();
        tracing::debug!(bucket, region, ?endpoint, path_style, "S3 client ready");
        Ok(Self {
            client: Client::from_conf(config),
            bucket: bucket.to_string(),
            region,
            endpoint,
            profile: settings
                .profile
                .clone()
                .or_else(|| std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty())),
            write: settings.write.clone(),
            bandwidth: settings.bandwidth.map(|l| Arc::new(Bandwidth::new(l))),
            timeouts,
        })
    }

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
    /// with `md5`, sent as `Content-MD5` and checked against the ETag.
    async fn put(
        &self,
        key: &str,
        len: u64,
        body: aws_sdk_s3::primitives::ByteStream,
        md5: Option<Md5>,
        meta: &ObjectMeta,
        what: &str,
    ) -> StoreResult<PutOutcome> {
        let what = format!("{what} '{key}'");
        let req = self.client.put_object().bucket(&self.bucket).key(key);
        let req = with_write_options!(req, &self.write, key)
            .content_length(len as i64)
            .set_content_md5(md5.map(aws_smithy_types::base64::encode))
            .set_metadata(Some(metadata(meta)))
            .body(self.paced(body));
        // A per-request config costs a layer of runtime plugins on every
        // request: only paced uploads, which need a longer timeout, have one.
        let out = match self.upload_config(len) {
            Some(config) => req.customize().config_override(config).send().await,
            None => req.send().await,
        }
        .map_err(|e| convert(e, &what))?;
        let etag = clean_etag(out.e_tag());
        self.check_etag(&etag, md5, &what)?;
        Ok(PutOutcome {
            etag,
            version_id: out.version_id().map(str::to_string),
        })
    }

    /// Whether `etag` is the MD5 of the object's content: 32 hex digits (a
    /// multipart ETag has a `-N` suffix) on an object this store writes
    /// without SSE-KMS, whose ETags are not MD5s (S3's ETag documentation).
    fn etag_is_content_md5(&self, etag: &str) -> bool {
        let kms = self
            .write
            .sse
            .as_deref()
            .is_some_and(|s| s.starts_with("aws:kms"));
        !kms && etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())
    }

    /// Compares the ETag of a single-part object or of a part with the MD5
    /// of the body sent, where the ETag is an MD5: S3 documents it as one
    /// for objects stored in plain or with SSE-S3, not with SSE-KMS or
    /// SSE-C, and an S3-compatible server that ignores `Content-MD5` is
    /// still caught this way. Anything else is not compared.
    fn check_etag(&self, etag: &str, md5: Option<Md5>, what: &str) -> StoreResult<()> {
        let Some(md5) = md5 else { return Ok(()) };
        if !self.etag_is_content_md5(etag) || etag.eq_ignore_ascii_case(&hex::encode(md5)) {
            return Ok(());
        }
        Err(StoreError::BadDigest(format!(
            "{what}: the store's ETag {etag} is not the MD5 of the body ({})",
            hex::encode(md5)
        )))
    }

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
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("BucketAlreadyOwnedByYou") => Ok(()),
            Err(e) if e.code() == Some("BucketAlreadyExists") => Err(StoreError::AccessDenied(format!(
                "bucket '{}' already exists and belongs to someone else: choose another name",
                self.bucket
            ))),
            Err(e) => Err(convert(e, &format!("creating bucket '{}'", self.bucket))),
        }
    }
}

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
struct FirstContact {
    /// Wait for an answer to begin, per attempt.
    answer: Duration,
    /// Attempts at most.
    attempts: u32,
    /// Deadline for all attempts and the pauses between them.
    total: Duration,
}

/// Longest wait for the bucket check's answer to begin, per attempt.
const FIRST_ANSWER_MAX: Duration = Duration::from_secs(15);
/// Most attempts at the bucket check.
const FIRST_CONTACT_ATTEMPTS: u32 = 3;
/// Bound on the whole bucket check, retries included (with the default timeouts).
const FIRST_CONTACT_MAX: Duration = Duration::from_secs(30);

impl FirstContact {
    /// The bounds for the client's `(connect, read)` timeouts.
    fn new((connect, read): (Duration, Duration)) -> Self {
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

fn or_default(d: Duration, secs: u64) -> Duration {
    if d.is_zero() { Duration::from_secs(secs) } else { d }
}

/// Endpoints on this machine or given as an IP address cannot use
/// virtual-hosted (bucket-in-hostname) addressing.
fn is_local_endpoint(url: &str) -> bool {
    let host = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?'])
        .next()
        .unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host_only = if host.starts_with('[') {
        host.split(']')
            .next()
            .map(|h| h.trim_start_matches('['))
            .unwrap_or(host)
    } else {
        host.split(':').next().unwrap_or(host)
    };
    host_only == "localhost" || host_only.parse::<std::net::IpAddr>().is_ok()
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

async fn body(range: FileRange<'_>) -> StoreResult<ByteStream> {
    ByteStream::read_from()
        .path(range.path)
        .offset(range.offset)
        .length(Length::Exact(range.len))
        .buffer_size(pace::MAX_CHUNK)
        .build()
        .await
        .map_err(|e| {
            // The SDK checks the range against the file's length (its error
            // kinds are private): a file now shorter than the range shrank.
            let what = format!("reading {}", range.path.display());
            match std::fs::metadata(range.path) {
                Ok(md) if md.len() < range.offset.saturating_add(range.len) => StoreError::Shrank(what),
                _ => StoreError::Fatal(format!("{what}: {e}")),
            }
        })
}

/// Turns an SDK error into a [`StoreError`], keeping the server's code and message.
fn convert<E, R>(err: SdkError<E, R>, what: &str) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HasStatus + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status_code();
            let code = service.err().code().unwrap_or("");
            let message = service.err().message().unwrap_or("");
            let detail = match (code.is_empty(), message.is_empty()) {
                (true, _) => format!("HTTP {status}"),
                (false, true) => format!("{code} (HTTP {status})"),
                (false, false) => format!("{code}: {message} (HTTP {status})"),
            };
            let text = format!("{what}: {detail}");
            match status {
                404 => StoreError::NotFound(text),
                // The body's MD5 is not the `Content-MD5` sent (S3's error codes).
                _ if code == "BadDigest" => StoreError::BadDigest(text),
                412 => StoreError::Changed(text),
                _ if code == "InvalidObjectState" => StoreError::Fatal(format!(
                    "{text}: the object is in an archive storage class; request a restore of it in S3 first"
                )),
                401 | 403 => StoreError::AccessDenied(text),
                408 | 429 | 500..=599 => StoreError::Transient(text),
                _ if code == "SlowDown" || code == "RequestTimeout" => StoreError::Transient(text),
                _ => StoreError::Fatal(text),
            }
        }
        SdkError::ConstructionFailure(_) => StoreError::Fatal(format!("{what}: {}", error_chain(&err))),
        SdkError::DispatchFailure(_) => StoreError::Transient(format!(
            "{what}: cannot reach the endpoint: {}",
            error_chain(&err)
        )),
        _ => StoreError::Transient(format!("{what}: {}", error_chain(&err))),
    }
}

/// An error and its causes on one line, each said once.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![err.to_string()];
    let mut cause = err.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = e.source();
    }
    parts.join(": ")
}

/// The HTTP status of a raw response, whatever the SDK's response type.
trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

impl S3Store {
    /// Where requests go, for messages: the endpoint, or S3 in the region.
    fn where_to(&self) -> String {
        match &self.endpoint {
            Some(url) => format!("the endpoint {url}"),
            None => format!("S3 in region '{}'", self.region),
        }
    }

    /// The per-request configuration of a run's first request: `retry`,
    /// the client's connect timeout and the [`FirstContact`] answer wait.
    fn first_contact_config(&self, plan: &FirstContact, retry: RetryConfig) -> aws_sdk_s3::config::Builder {
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
    /// error can say what was tried. Returns the last attempt's result, and
    /// a note on the attempts to add to a transient error.
    async fn head_bucket_bounded(
        &self,
    ) -> (
        Result<
            (),
            SdkError<
                aws_sdk_s3::operation::head_bucket::HeadBucketError,
                aws_sdk_s3::config::http::HttpResponse,
            >,
        >,
        String,
    ) {
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
                    return (
                        Err(SdkError::timeout_error(format!(
                            "no answer from {}",
                            self.where_to()
                        ))),
                        note(attempt),
                    );
                }
            };
            let retry = match &result {
                Ok(()) => false,
                Err(SdkError::ServiceError(e)) => {
                    matches!(e.raw().status().as_u16(), 408 | 429 | 500..=599)
                }
                Err(
                    SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_),
                ) => true,
                Err(_) => false,
            };
            let pause = FirstContact::pause(attempt + 1);
            if !retry || attempt >= plan.attempts || tokio::time::Instant::now() + pause >= deadline {
                return (result, note(attempt));
            }
            tracing::debug!(attempt, bucket = self.bucket, "bucket check failed; trying again");
            tokio::time::sleep(pause).await;
        }
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn prepare(&self, create: bool) -> StoreResult<Prepared> {
        let (result, tried) = self.head_bucket_bounded().await;
        match result {
            Ok(()) => Ok(Prepared::Existing),
            Err(e) => {
                // S3 names the bucket's region in its redirect; say it.
                let home = e
                    .raw_response()
                    .and_then(|r| r.headers().get("x-amz-bucket-region"))
                    .map(str::to_string);
                match convert(e, &format!("checking bucket '{}'", self.bucket)) {
                    StoreError::NotFound(_) if create => {
                        self.create_bucket().await?;
                        Ok(Prepared::Created)
                    }
                    StoreError::NotFound(_) => Ok(Prepared::Missing),
                    StoreError::AccessDenied(_) => Err(StoreError::AccessDenied(format!(
                        "bucket '{}' exists but these credentials may not use it (it may belong to another account; check --profile or AWS_ACCESS_KEY_ID)",
                        self.bucket
                    ))),
                    StoreError::Fatal(text) if text.contains("HTTP 301") => {
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
                    StoreError::Transient(text) if text.contains("cannot reach the endpoint") => {
                        let named = match &self.endpoint {
                            Some(url) => format!("cannot reach the endpoint {url}"),
                            None => format!("cannot reach S3 in region '{}'", self.region),
                        };
                        Err(StoreError::Transient(
                            text.replacen("cannot reach the endpoint", &named, 1) + &tried,
                        ))
                    }
                    StoreError::Transient(text) => {
                        let to = self.where_to();
                        Err(StoreError::Transient(if text.contains(&to) {
                            text + &tried
                        } else {
                            format!("{text}: from {to}{tried}")
                        }))
                    }
                    other => Err(other),
                }
            }
        }
    }

    async fn put_file(&self, key: &str, range: FileRange<'_>, meta: &ObjectMeta) -> StoreResult<PutOutcome> {
        self.put(key, range.len, body(range).await?, range.md5, meta, "uploading")
            .await
    }

    async fn put_symlink(&self, key: &str, target: &[u8], meta: &ObjectMeta) -> StoreResult<PutOutcome> {
        let body = aws_sdk_s3::primitives::ByteStream::from(target.to_vec());
        let md5 = crate::fs::hash::md5_of(target);
        self.put(
            key,
            target.len() as u64,
            body,
            Some(md5),
            meta,
            "uploading symlink",
        )
        .await
    }

    async fn pending_uploads(&self, prefix: &str) -> StoreResult<Vec<super::PendingUpload>> {
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone())
                .send()
                .await
                .map_err(|e| convert(e, "listing unfinished uploads"))?;
            out.extend(page.uploads().iter().filter_map(|u| {
                Some(super::PendingUpload {
                    key: u.key()?.to_string(),
                    upload_id: u.upload_id()?.to_string(),
                    initiated_secs: u.initiated().map(|t| t.secs()),
                })
            }));
            if page.is_truncated() != Some(true) {
                return Ok(out);
            }
            key_marker = page.next_key_marker().map(str::to_string);
            id_marker = page.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() && id_marker.is_none() {
                return Ok(out);
            }
        }
    }

    async fn create_multipart(&self, key: &str, meta: &ObjectMeta) -> StoreResult<String> {
        let req = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key);
        // Not retried inside the SDK: a retry after a lost answer begins a
        // second upload and the first is never heard of. The caller retries
        // and knows to look for such uploads once its transfers are done.
        let out = with_write_options!(req, &self.write, key)
            .set_metadata(Some(metadata(meta)))
            .customize()
            .config_override(aws_sdk_s3::config::Builder::default().retry_config(RetryConfig::disabled()))
            .send()
            .await
            .map_err(|e| convert(e, &format!("starting multipart upload of '{key}'")))?;
        out.upload_id()
            .map(str::to_string)
            .ok_or_else(|| StoreError::Fatal(format!("server gave no upload ID for '{key}'")))
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        range: FileRange<'_>,
    ) -> StoreResult<String> {
        let what = format!("uploading part {number} of '{key}'");
        let req = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .content_length(range.len as i64)
            .set_content_md5(range.md5.map(aws_smithy_types::base64::encode))
            .body(self.paced(body(range).await?));
        let out = match self.upload_config(range.len) {
            Some(config) => req.customize().config_override(config).send().await,
            None => req.send().await,
        }
        .map_err(|e| convert(e, &what))?;
        let etag = clean_etag(out.e_tag());
        self.check_etag(&etag, range.md5, &what)?;
        Ok(etag)
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> StoreResult<PutOutcome> {
        let parts = parts
            .iter()
            .map(|p| {
                aws_sdk_s3::types::CompletedPart::builder()
                    .part_number(p.number)
                    .e_tag(&p.etag)
                    .build()
            })
            .collect();
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| convert(e, &format!("completing multipart upload of '{key}'")))?;
        Ok(PutOutcome {
            etag: clean_etag(out.e_tag()),
            version_id: out.version_id().map(str::to_string),
        })
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| convert(e, &format!("aborting multipart upload of '{key}'")))?;
        Ok(())
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
        let req = self.client.copy_object().bucket(&self.bucket).key(dst_key);
        let out = with_write_options!(req, &self.write, dst_key)
            .copy_source(source)
            // S3 answers 412 (Changed) when the source's ETag differs.
            .set_copy_source_if_match(if_match.filter(|e| !e.is_empty()).map(|e| format!("\"{e}\"")))
            .metadata_directive(MetadataDirective::Replace)
            .set_metadata(Some(metadata(meta)))
            .send()
            .await
            .map_err(|e| convert(e, &what))?;
        let etag = clean_etag(out.copy_object_result().and_then(|r| r.e_tag()));
        // A server that ignores the condition is caught where both ETags are
        // MD5s (single-part objects without SSE-KMS): a copy's is its source's.
        if let Some(expected) = if_match
            && self.etag_is_content_md5(expected)
            && self.etag_is_content_md5(&etag)
            && !expected.eq_ignore_ascii_case(&etag)
        {
            return Err(StoreError::Changed(format!(
                "{what}: the source no longer holds the content recorded for it (ETag {etag}, recorded {expected})"
            )));
        }
        Ok(PutOutcome {
            etag,
            version_id: out.version_id().map(str::to_string),
        })
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
        let pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let what = format!("listing s3://{}/{prefix}", self.bucket);
        futures::stream::unfold(pages, |mut pages| async move {
            let page = pages.next().await?;
            Some((page, pages))
        })
        .flat_map(move |page| {
            let items: Vec<StoreResult<ObjectInfo>> = match page {
                Ok(out) => out
                    .contents
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|o| {
                        Some(Ok(ObjectInfo {
                            key: o.key?,
                            size: o.size.unwrap_or(0).max(0) as u64,
                            etag: clean_etag(o.e_tag.as_deref()),
                            last_modified_ns: o.last_modified.as_ref().map(datetime_ns),
                            storage_class: o.storage_class.map(|c| c.as_str().to_string()),
                        }))
                    })
                    .collect(),
                Err(e) => vec![Err(convert(e, &what))],
            };
            futures::stream::iter(items)
        })
        .boxed()
    }

    /// A repeated backup's first (and often only) request, so it is held
    /// to the [`FirstContact`] bounds as the bucket check is: the SDK's
    /// retries, at most that many attempts, each allowed the short answer
    /// wait, all within the total.
    async fn list_after(&self, prefix: &str, start_after: &str, max: usize) -> StoreResult<Vec<ObjectInfo>> {
        let plan = FirstContact::new(self.timeouts);
        let what = format!("listing s3://{}/{prefix}", self.bucket);
        let config =
            self.first_contact_config(&plan, RetryConfig::standard().with_max_attempts(plan.attempts));
        let send = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .start_after(start_after)
            .max_keys(i32::try_from(max).unwrap_or(i32::MAX))
            .customize()
            .config_override(config)
            .send();
        let out = match tokio::time::timeout(plan.total, send).await {
            Ok(out) => out.map_err(|e| match e {
                SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => StoreError::Transient(format!(
                    "{what}: cannot reach {} ({} attempts, each allowed {} s to connect and {} s to answer): {}",
                    self.where_to(),
                    plan.attempts,
                    self.timeouts.0.as_secs(),
                    plan.answer.as_secs(),
                    error_chain(&e),
                )),
                e => convert(e, &what),
            })?,
            Err(_) => {
                return Err(StoreError::Transient(format!(
                    "{what}: no answer from {} within {} s (up to {} attempts, each allowed {} s to connect and {} s to answer)",
                    self.where_to(),
                    plan.total.as_secs(),
                    plan.attempts,
                    self.timeouts.0.as_secs(),
                    plan.answer.as_secs(),
                )));
            }
        };
        Ok(out
            .contents
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| {
                Some(ObjectInfo {
                    key: o.key?,
                    size: o.size.unwrap_or(0).max(0) as u64,
                    etag: clean_etag(o.e_tag.as_deref()),
                    last_modified_ns: o.last_modified.as_ref().map(datetime_ns),
                    storage_class: o.storage_class.map(|c| c.as_str().to_string()),
                })
            })
            .take(max)
            .collect())
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
        let remote = remote_object(
            size,
            out.e_tag(),
            out.version_id(),
            out.last_modified(),
            out.metadata(),
        );
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
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_string))
            .send()
            .await
            .map_err(|e| convert(e, &format!("checking '{key}'")))?;
        Ok(remote_object(
            out.content_length().unwrap_or(0).max(0) as u64,
            out.e_tag(),
            out.version_id(),
            out.last_modified(),
            out.metadata(),
        ))
    }

    fn describe(&self) -> String {
        format!("s3://{}", self.bucket)
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
    fn local_endpoints_use_path_style() {
        assert!(is_local_endpoint("http://127.0.0.1:9000"));
        assert!(is_local_endpoint("http://localhost:9000/"));
        assert!(is_local_endpoint("http://[::1]:9000"));
        assert!(is_local_endpoint("https://10.0.0.5"));
        assert!(!is_local_endpoint("https://s3.example.com"));
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

    #[test]
    fn copy_source_is_encoded() {
        assert_eq!(encode_copy_source("a b/ü+x.txt"), "a%20b/%C3%BC%2Bx.txt");
    }
}
