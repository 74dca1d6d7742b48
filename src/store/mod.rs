//! Storage behind one small trait, so the backup and restore engines never
//! know whether they talk to S3 or to a directory on a disk.
//!
//! The trait speaks in the tool's own types and one [`StoreError`]; SDK
//! errors are converted in `s3.rs` and nowhere else. Keys are full keys
//! (the target prefix already joined): a store knows its bucket or root
//! directory, not the backup layout.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;

use crate::fs::checksum::{StoredChecksum, Sum};
use crate::target::Target;

pub mod counts;
pub mod flow;
pub mod local;
pub mod pace;
pub mod retry;
pub mod s3;

pub use counts::{RequestCounts, RequestKind};
pub use local::LocalStore;
pub use s3::{S3Settings, S3Store, WriteOptions};

/// Largest single PutObject / CopyObject S3 accepts.
pub(crate) const MAX_SINGLE_OBJECT: u64 = 5 * 1024 * 1024 * 1024;
/// Smallest part S3 accepts (except the last one).
pub(crate) const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Largest part S3 accepts.
pub(crate) const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// Most parts one multipart upload may have.
pub(crate) const MAX_PARTS: u64 = 10_000;
/// The longest connect and read timeout, in seconds: a day. Nothing useful
/// waits longer, and sums of timeouts then cannot overflow.
pub const MAX_TIMEOUT_SECS: u64 = 86_400;

/// What went wrong talking to a store, sorted by what the caller should do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The bucket or object does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The credentials were refused or may not do this.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// Worth retrying: throttling, a server error, a dropped connection.
    #[error("{0}")]
    Transient(String),
    /// A conditional read found the object changed (its ETag no longer matches).
    #[error("changed: {0}")]
    Changed(String),
    /// The bytes the store received are not the bytes hashed: the file
    /// changed after it was read (even with its size and mtime put back),
    /// or the body was damaged on the way. Retried once the file is read
    /// again; nothing is recorded for it.
    #[error(
        "{0}: the bytes sent differ from the bytes hashed (the file changed after it was read, or the body was damaged on the way)"
    )]
    BadDigest(String),
    /// The local file a request body is read from is shorter than the
    /// range to send (`{0}` names it): it shrank after it was hashed.
    /// Not retried; the next run reads the file again.
    #[error("{0}: the file shrank while being read")]
    Shrank(String),
    /// The store's file system holds another spelling of a name on the
    /// key's path (a local store on a disk that folds letter case): nothing
    /// was written. Not retried. A copy refused so does not keep its source
    /// from `--delete`: the clash may be with that very source (a rename
    /// that changes only case), which must go before the new spelling fits.
    #[error("{0}")]
    NameClash(String),
    /// The object is in an archive storage class (S3 GLACIER or
    /// DEEP_ARCHIVE, answered `InvalidObjectState`): it cannot be read or
    /// copied until it is restored in S3. A copy falls back to sending a
    /// local file with the same content, where there is one.
    #[error("{0}: the object is in an archive storage class; request a restore of it in S3 first")]
    Archived(String),
    /// Retrying will not help.
    #[error("{0}")]
    Fatal(String),
}

impl StoreError {
    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Transient(_) | StoreError::BadDigest(_))
    }
}

/// Result alias for store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Per-object metadata that rides on every object, so any tool (rclone
/// reads `mtime`) or a restore without a manifest can use it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Unix permission bits.
    pub mode: u32,
    /// blake3 of the content, lowercase hex.
    pub blake3: String,
    /// A symlink: the content is its target (metadata `type: symlink`).
    pub symlink: bool,
}

impl ObjectMeta {
    /// The `mtime` metadata value: one signed decimal number of seconds
    /// since the epoch, written exactly as rclone writes it (its S3 backend
    /// calls `swift.TimeToFloatString`, github.com/ncw/swift `meta.go`,
    /// `nsToFloatString`): a `-` for times before 1970, the whole seconds,
    /// then `.` and the nanoseconds with trailing zeros dropped, or no
    /// point at all for whole seconds. −1.5 s is `-1.5`, −1 ns is
    /// `-0.000000001`, 1 s is `1`.
    pub(crate) fn mtime_text(&self) -> String {
        let sign = if self.mtime_ns < 0 { "-" } else { "" };
        // unsigned_abs: i64::MIN has no positive i64 counterpart.
        let abs = self.mtime_ns.unsigned_abs();
        let (secs, nanos) = (abs / 1_000_000_000, abs % 1_000_000_000);
        if nanos == 0 {
            format!("{sign}{secs}")
        } else {
            let frac = format!("{nanos:09}");
            format!("{sign}{secs}.{}", frac.trim_end_matches('0'))
        }
    }

    /// Parses an `mtime` metadata value into nanoseconds since the epoch,
    /// accepting exactly what rclone accepts (`swift.FloatStringToTime`,
    /// `floatStringToNs` in github.com/ncw/swift `meta.go`): the digits
    /// after the first `.` are cut to 9 or padded with zeros to 9, glued to
    /// what comes before it, and the result read as one signed integer
    /// (an optional `+` or `-`, then ASCII digits, within i64). So the sign
    /// applies to the fraction too (`-1.5` is −1.5 s), `5` is 5 s, `.5` is
    /// 0.5 s, and digits past the ninth are ignored unread. `None` for
    /// anything else (empty, exponents, spaces, overflow): as with rclone,
    /// the object then has no usable `mtime`.
    pub(crate) fn parse_mtime(text: &str) -> Option<i64> {
        const NINE: usize = 9;
        let bytes = text.as_bytes();
        let mut digits: Vec<u8> = Vec::with_capacity(bytes.len() + NINE);
        match bytes.iter().position(|&b| b == b'.') {
            Some(point) => {
                let tail = &bytes[point + 1..];
                digits.extend_from_slice(&bytes[..point]);
                digits.extend_from_slice(&tail[..tail.len().min(NINE)]);
                digits.resize(point + NINE, b'0');
            }
            None if bytes.is_empty() => return None,
            None => {
                digits.extend_from_slice(bytes);
                digits.resize(bytes.len() + NINE, b'0');
            }
        }
        // i64's FromStr takes the same shape as Go's strconv.ParseInt in
        // base 10: an optional sign, then at least one ASCII digit.
        std::str::from_utf8(&digits).ok()?.parse().ok()
    }

    /// The `mode` metadata value (octal).
    pub(crate) fn mode_text(&self) -> String {
        format!("{:o}", self.mode)
    }
}

/// What a store says about an object it holds after a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    /// The store's entity tag (S3 ETag without quotes).
    pub etag: String,
    /// Version ID on a versioned bucket.
    pub version_id: Option<String>,
    /// The additional checksum the store says the object now has
    /// (`--checksum-algorithm`); `None` when it named none.
    pub checksum: Option<StoredChecksum>,
}

/// One finished part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    /// 1-based part number.
    pub number: i32,
    /// The part's entity tag.
    pub etag: String,
    /// The part's additional checksum (base64), for an upload begun with one.
    pub checksum: Option<String>,
}

/// A byte range of a local file, the body of one upload request.
#[derive(Debug, Clone, Copy)]
pub struct FileRange<'a> {
    /// The file.
    pub path: &'a Path,
    /// First byte.
    pub offset: u64,
    /// Number of bytes.
    pub len: u64,
    /// The MD5 these bytes had when they were hashed: the store refuses a
    /// body that differs ([`StoreError::BadDigest`]), so what it keeps is
    /// what was hashed. S3 gets it as `Content-MD5`.
    pub md5: Option<crate::fs::hash::Md5>,
    /// The additional checksum of these bytes (`--checksum-algorithm`),
    /// sent as its `x-amz-checksum-*` header: the store refuses a body
    /// that differs and keeps the value.
    pub sum: Option<Sum>,
}

/// An object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Full key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Entity tag.
    pub etag: String,
    /// Last-Modified, ns since the epoch.
    pub last_modified_ns: Option<i64>,
    /// Storage class, when the store reports one (e.g. "GLACIER").
    pub storage_class: Option<String>,
}

/// What a store says about an object it returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteObject {
    /// Size of the whole object.
    pub size: u64,
    /// Entity tag.
    pub etag: String,
    /// Version ID on a versioned bucket.
    pub version_id: Option<String>,
    /// Last-Modified, ns since the epoch.
    pub last_modified_ns: Option<i64>,
    /// The `mtime` metadata, if set.
    pub mtime_ns: Option<i64>,
    /// The `mode` metadata, if set.
    pub mode: Option<u32>,
    /// The `blake3` metadata, if set.
    pub blake3: Option<String>,
    /// A symlink (metadata `type: symlink`): the body is its target.
    pub symlink: bool,
    /// The additional checksum the store keeps for it, when asked for
    /// ([`ObjectStore::head_checksum`]) and it has one.
    pub checksum: Option<StoredChecksum>,
    /// The version's Object Lock retention, where the store reports one.
    pub lock: Option<crate::lock::Retention>,
}

impl RemoteObject {
    /// Reads the tool's metadata keys from an object's user metadata.
    pub(crate) fn apply_metadata<'a>(&mut self, mut get: impl FnMut(&str) -> Option<&'a str>) {
        self.mtime_ns = get("mtime").and_then(ObjectMeta::parse_mtime);
        self.mode = get("mode").and_then(|m| u32::from_str_radix(m, 8).ok());
        self.blake3 = get("blake3")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_ascii_lowercase);
        self.symlink = get("type") == Some("symlink");
    }
}

/// Which object (version) to read, and how much of it.
#[derive(Debug, Clone, Copy, Default)]
pub struct GetRequest<'a> {
    /// A specific version (versioned buckets).
    pub version_id: Option<&'a str>,
    /// Fail with [`StoreError::Changed`] unless the object still has this ETag.
    pub if_match: Option<&'a str>,
    /// First byte and length; `None` for the whole object.
    pub range: Option<(u64, u64)>,
}

/// An object's body, as a stream of chunks.
pub type ByteChunks = futures::stream::BoxStream<'static, StoreResult<bytes::Bytes>>;

/// How the bucket (or store directory) was found before a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    /// It existed and is usable.
    Existing,
    /// It did not exist and was created.
    Created,
    /// It does not exist and `create` was false (dry run).
    Missing,
}

/// A multipart upload the store holds open (begun, neither completed nor aborted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// Its key ("" where the store does not record one).
    pub key: String,
    /// Its upload ID.
    pub upload_id: String,
    /// When it was begun, seconds since the epoch, if known.
    pub initiated_secs: Option<i64>,
}

/// The operations the engines need from a storage backend.
///
/// # Errors
/// Every fallible method returns a [`StoreError`] sorted by what the
/// caller should do, the same way for every store: [`StoreError::NotFound`]
/// for a missing bucket, object or upload, [`StoreError::AccessDenied`] for
/// refused credentials or permissions, [`StoreError::Changed`] when an
/// `if_match` condition fails, [`StoreError::BadDigest`] when the bytes
/// received are not the bytes hashed, [`StoreError::Transient`] for what a
/// retry may cure (throttling, a server error, no connection, a timeout),
/// [`StoreError::Fatal`] for everything else. The S3 store sorts SDK errors
/// in `s3/errors.rs`, the local store I/O errors in `local/errors.rs`, by
/// their structure (status, code, variant, `io::ErrorKind`), never by text.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Checks the bucket exists and is usable; creates it when missing and `create` is set.
    async fn prepare(&self, create: bool) -> StoreResult<Prepared>;
    /// Uploads a whole file (or a range of it) as one object.
    async fn put_file(&self, key: &str, body: FileRange<'_>, meta: &ObjectMeta) -> StoreResult<PutOutcome>;
    /// Stores a symlink whose target is `target` (raw bytes) under `key`.
    async fn put_symlink(&self, key: &str, target: &[u8], meta: &ObjectMeta) -> StoreResult<PutOutcome>;
    /// Starts a multipart upload, returning its upload ID.
    async fn create_multipart(&self, key: &str, meta: &ObjectMeta) -> StoreResult<String>;
    /// Uploads one part, returning its entity tag.
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: FileRange<'_>,
    ) -> StoreResult<String>;
    /// Assembles the parts into the object; `whole` is the full-object
    /// checksum of an upload begun with one.
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        whole: Option<Sum>,
    ) -> StoreResult<PutOutcome>;
    /// Abandons a multipart upload and frees its parts.
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()>;
    /// The multipart uploads open under `prefix` (none where the store
    /// cannot list them).
    async fn pending_uploads(&self, _prefix: &str) -> StoreResult<Vec<PendingUpload>> {
        Ok(Vec::new())
    }
    /// Copies an object inside the store, replacing its metadata (a copy
    /// onto itself refreshes metadata in place). With `if_match`, fails with
    /// [`StoreError::Changed`] unless the source still has that ETag, so a
    /// copy never takes content other than what the caller knows the source
    /// holds; the destination may then hold the source's current bytes, and
    /// the caller must send the right ones.
    async fn copy(
        &self,
        src_key: &str,
        dst_key: &str,
        meta: &ObjectMeta,
        if_match: Option<&str>,
    ) -> StoreResult<PutOutcome>;
    /// [`ObjectStore::copy`] for an object of `size` bytes too large for
    /// one copy request (S3: over 5 GiB), in parts of `part_size` bytes
    /// (S3's UploadPartCopy), every part conditional on `if_match`. The
    /// default, for stores without such a limit, is one [`ObjectStore::copy`].
    async fn copy_in_parts(
        &self,
        src_key: &str,
        dst_key: &str,
        size: u64,
        part_size: u64,
        meta: &ObjectMeta,
        if_match: Option<&str>,
    ) -> StoreResult<PutOutcome> {
        let _ = (size, part_size);
        self.copy(src_key, dst_key, meta, if_match).await
    }
    /// Removes an object; removing a missing object is not an error.
    async fn delete(&self, key: &str) -> StoreResult<()>;
    /// Lists every object under `prefix` (a key prefix, not a directory), in key order, page by page.
    fn list<'a>(&'a self, prefix: &'a str) -> futures::stream::BoxStream<'a, StoreResult<ObjectInfo>>;
    /// Up to `max` objects under `prefix` whose keys sort after
    /// `start_after`, in key order: one request on S3 (ListObjectsV2's
    /// `start-after`), where [`ObjectStore::list`] may need many.
    async fn list_after(&self, prefix: &str, start_after: &str, max: usize) -> StoreResult<Vec<ObjectInfo>> {
        use futures::TryStreamExt;
        self.list(prefix)
            .try_filter(|o| futures::future::ready(o.key.as_str() > start_after))
            .take(max)
            .try_collect()
            .await
    }
    /// Reads an object (or a range of it): its description and its bytes.
    async fn get(&self, key: &str, req: GetRequest<'_>) -> StoreResult<(RemoteObject, ByteChunks)>;
    /// Describes an object without reading it (size, ETag, metadata).
    async fn head(&self, key: &str, version_id: Option<&str>) -> StoreResult<RemoteObject>;
    /// [`ObjectStore::head`], also asking for the additional checksum the
    /// store keeps ([`RemoteObject::checksum`]; S3: `x-amz-checksum-mode:
    /// ENABLED`). The default, for stores that keep none, is a plain head.
    async fn head_checksum(&self, key: &str, version_id: Option<&str>) -> StoreResult<RemoteObject> {
        self.head(key, version_id).await
    }
    /// The bucket's Object Lock: `None` where it has none (not enabled,
    /// or a store without Object Lock, the default). S3 asks once a run
    /// and remembers the answer.
    async fn object_lock(&self) -> StoreResult<Option<crate::lock::BucketLock>> {
        Ok(None)
    }
    /// Extends the Object Lock retention of version `version_id` of `key`
    /// to `lock` (S3's PutObjectRetention). The default, for stores
    /// without Object Lock, refuses.
    async fn put_retention(
        &self,
        key: &str,
        version_id: &str,
        lock: &crate::lock::Retention,
    ) -> StoreResult<()> {
        let _ = (version_id, lock);
        Err(StoreError::Fatal(format!(
            "'{key}': this store has no Object Lock"
        )))
    }
    /// Checks that the bucket exists without creating it (restores, listings).
    async fn exists(&self) -> StoreResult<bool> {
        Ok(self.prepare(false).await? != Prepared::Missing)
    }
    /// Whether the ETag an object has now (`held`: listed, or read by a
    /// HEAD or GET) names the content recorded with the ETag `recorded`.
    /// S3's ETags (an MD5, `hex-N` after a multipart upload) are compared
    /// exactly, the default; the local store's, made of size and mtime,
    /// also agree when one mtime is the other cut to a coarser disk's step
    /// (a store copied to exFAT, or read from Windows).
    fn same_etag(&self, held: &str, recorded: &str) -> bool {
        held == recorded
    }
    /// A short human description ("s3://bucket", "/mnt/backup") for messages.
    fn describe(&self) -> String;
    /// What besides the target names where the data goes: for S3, the
    /// endpoint and the profile when they are not the defaults ("endpoint
    /// http://nas:9000, profile offsite"). The same `bucket::prefix` on
    /// another endpoint or account is another backup set.
    fn location(&self) -> Option<String> {
        None
    }
    /// The requests sent so far by this store (one run), by kind, with the
    /// body bytes each way ([`counts`]).
    fn requests(&self) -> RequestCounts;

    /// The store's throttling signals and request-limit figures, shared
    /// by every [`flow::Flow`] of the run.
    fn signals(&self) -> Arc<flow::Signals>;
}

/// The text that identifies a backup set's target in the state file: the
/// canonical target, plus the store's [`ObjectStore::location`] when it has
/// one, so that a migration to another endpoint or an off-site copy under
/// another profile is a set of its own, never taken for the one already
/// backed up.
pub(crate) fn set_target(target: &Target, store: &dyn ObjectStore) -> String {
    match store.location() {
        Some(location) => format!("{} ({location})", target.canonical()),
        None => target.canonical(),
    }
}

/// Opens the store a target names. With `settings.bandwidth`, the store
/// gets one token bucket that paces every byte it sends or receives for as
/// long as it lives (one run).
///
/// # Errors
/// As [`S3Store::connect`] for an S3 target (no usable credentials); a
/// local target opens without touching the disk.
pub async fn open(target: &Target, settings: &S3Settings) -> StoreResult<Arc<dyn ObjectStore>> {
    open_cancellable(target, settings, &crate::cancel::Cancel::default()).await
}

/// [`open`], for a run that may be stopped early: the local store's
/// blocking copies then stop with it (an S3 request is cut off by the
/// engine dropping it).
///
/// # Errors
/// As [`open`]: the S3 client cannot be set up.
pub async fn open_cancellable(
    target: &Target,
    settings: &S3Settings,
    cancel: &crate::cancel::Cancel,
) -> StoreResult<Arc<dyn ObjectStore>> {
    Ok(match target {
        Target::S3 { bucket, .. } => Arc::new(S3Store::connect(bucket, settings).await?),
        Target::Local { root } => Arc::new(
            LocalStore::new(root.clone())
                .with_bandwidth(settings.bandwidth.map(pace::Bandwidth::new))
                .with_cancel(cancel.clone()),
        ),
    })
}

/// A version ID that names a version the store keeps, or `None`. S3 gives
/// the version ID `null` to objects written while versioning is off or
/// suspended (moto returns it for multipart uploads on buckets that never
/// had versioning); the next write of the key replaces that "null
/// version", so it keeps nothing and must not stand for a version (S3 User
/// Guide, "Working with objects in a versioning-suspended bucket").
pub fn kept_version(version_id: Option<&str>) -> Option<&str> {
    version_id.filter(|v| !v.is_empty() && *v != "null")
}

/// Joins a target prefix and a relative path into a key.
pub fn join_key(prefix: &str, path: &str) -> String {
    if prefix.is_empty() {
        path.to_string()
    } else {
        format!("{prefix}/{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(ns: i64) -> String {
        ObjectMeta {
            mtime_ns: ns,
            ..Default::default()
        }
        .mtime_text()
    }

    #[test]
    fn mtime_text_is_written_as_rclone_writes_it() {
        let cases = [
            (0, "0"),
            (1, "0.000000001"),
            (-1, "-0.000000001"),
            (1_000_000_000, "1"),
            (-1_000_000_000, "-1"),
            (1_500_000_000, "1.5"),
            (-1_500_000_000, "-1.5"),
            (-500_000_000, "-0.5"),
            (-31_536_000_123_456_789, "-31536000.123456789"),
            (1_700_000_000_123_456_789, "1700000000.123456789"),
            (1_700_000_000_120_000_000, "1700000000.12"),
            (i64::MAX, "9223372036.854775807"),
            (i64::MIN, "-9223372036.854775808"),
        ];
        for (ns, want) in cases {
            assert_eq!(text(ns), want, "{ns}");
            assert_eq!(ObjectMeta::parse_mtime(want), Some(ns), "{want}");
        }
    }

    #[test]
    fn mtime_is_read_as_rclone_reads_it() {
        let cases = [
            // The sign covers the fraction: -1.5 is one and a half seconds before 1970.
            ("-1.5", Some(-1_500_000_000)),
            ("-1.500000000", Some(-1_500_000_000)),
            ("-2.5", Some(-2_500_000_000)),
            ("-0.000000001", Some(-1)),
            ("-1", Some(-1_000_000_000)),
            ("-1.", Some(-1_000_000_000)),
            ("-.5", Some(-500_000_000)),
            ("+1.5", Some(1_500_000_000)),
            (".5", Some(500_000_000)),
            ("5.", Some(5_000_000_000)),
            (".", Some(0)),
            ("0", Some(0)),
            ("-0", Some(0)),
            ("1700000000.5", Some(1_700_000_000_500_000_000)),
            ("1700000000", Some(1_700_000_000_000_000_000)),
            // More than nine digits: the rest are cut off unread, as rclone does.
            ("1.1234567891", Some(1_123_456_789)),
            ("-1.123456789999", Some(-1_123_456_789)),
            ("1.123456789x", Some(1_123_456_789)),
            ("1.123456789€", Some(1_123_456_789)),
            ("9223372036.854775807", Some(i64::MAX)),
            ("9223372036.854775808", None),
            ("-9223372036.854775809", None),
            ("", None),
            // A lone sign gets nine zeros appended, which Go reads as 0.
            ("-", Some(0)),
            ("abc", None),
            ("1e9", None),
            ("1.5e3", None),
            (" 1.5", None),
            ("1.5 ", None),
            ("1.-5", None),
            ("1.2.3", None),
            ("1_000", None),
        ];
        for (text, want) in cases {
            assert_eq!(ObjectMeta::parse_mtime(text), want, "{text:?}");
        }
    }

    #[test]
    fn mtime_text_round_trips() {
        for ns in [
            0,
            1,
            -1,
            999_999_999,
            -999_999_999,
            1_700_000_000_123_456_789,
            -1_500_000_000,
            -4_102_444_800_000_000_001,
            i64::MAX,
            i64::MIN,
        ] {
            assert_eq!(ObjectMeta::parse_mtime(&text(ns)), Some(ns), "{ns}");
        }
    }

    #[test]
    fn joins_keys() {
        assert_eq!(join_key("", "a/b"), "a/b");
        assert_eq!(join_key("p/q", "a"), "p/q/a");
    }
}
