//! The additional checksums (`--checksum-algorithm`) on S3 requests: the
//! precomputed value sent as an `x-amz-checksum-*` header (never the SDK's
//! aws-chunked trailers, see the module above), the algorithm a multipart
//! upload or a copy names, the checksum an answer says the object has, a
//! body's checksum computed here when the caller sent none (a manifest, a
//! symlink's target), and the HEAD in checksum mode `verify --checksums`
//! asks. Macros, because each SDK request and answer is its own type with
//! the same method names.

use aws_sdk_s3::types::{ChecksumAlgorithm as SdkAlgorithm, ChecksumType};

use super::errors::convert;
use super::{S3Store, remote_object};
use crate::fs::checksum::{Algorithm, StoredChecksum, Sum};
use crate::store::{FileRange, RemoteObject, StoreError, StoreResult, kept_version};

/// Sends a precomputed [`crate::fs::checksum::Sum`] (an `Option`) with a
/// PutObject or UploadPart: `x-amz-sdk-checksum-algorithm` and the
/// `x-amz-checksum-*` value. The SDK sees the value set and neither
/// computes another nor switches to aws-chunked trailers.
macro_rules! with_sum {
    ($req:expr, $sum:expr) => {{
        use $crate::fs::checksum::Algorithm as A;
        let sum: Option<$crate::fs::checksum::Sum> = $sum;
        let value = |a: A| sum.filter(|s| s.algorithm == a).map(|s| s.base64());
        $req.set_checksum_algorithm(sum.map(|s| $crate::store::s3::sums::sdk_algorithm(s.algorithm)))
            .set_checksum_crc64_nvme(value(A::Crc64nvme))
            .set_checksum_crc32_c(value(A::Crc32c))
            .set_checksum_sha256(value(A::Sha256))
    }};
}

/// The checksum of `algorithm` (an `Option`) an SDK answer (anything with
/// `checksum_crc64_nvme()`, `checksum_crc32_c()`, `checksum_sha256()`)
/// says the object or part has, as a [`StoredChecksum`]; `None` when it
/// names none (a server that ignored the header keeps none either).
macro_rules! stored_sum {
    ($out:expr, $algorithm:expr) => {{
        use $crate::fs::checksum::Algorithm as A;
        let algorithm: Option<A> = $algorithm;
        algorithm.and_then(|a| {
            let value = match a {
                A::Crc64nvme => $out.checksum_crc64_nvme(),
                A::Crc32c => $out.checksum_crc32_c(),
                A::Sha256 => $out.checksum_sha256(),
            };
            $crate::store::s3::sums::stored(a, value)
        })
    }};
}

impl S3Store {
    /// The additional checksum of a body the caller sent without one (a
    /// manifest, a symlink's target): computed here, from the same bytes,
    /// when the run asks for one.
    pub(super) async fn sum_of(&self, range: FileRange<'_>) -> StoreResult<Option<Sum>> {
        let Some(algorithm) = self.write.checksum.filter(|_| range.sum.is_none()) else {
            return Ok(range.sum);
        };
        let (path, offset, len) = (range.path.to_path_buf(), range.offset, range.len);
        let summed = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Seek};
            let mut file = std::fs::File::open(&path)?;
            file.seek(std::io::SeekFrom::Start(offset))?;
            crate::fs::checksum::sum_reader(algorithm, file.take(len))
        })
        .await
        .map_err(|e| StoreError::Fatal(format!("reading {}: {e}", range.path.display())))?
        .map_err(|e| StoreError::Fatal(format!("reading {}: {e}", range.path.display())))?;
        Ok(Some(summed))
    }

    /// One HeadObject, for [`crate::store::ObjectStore::head`] and, with
    /// `with_checksum`, [`crate::store::ObjectStore::head_checksum`]
    /// (`x-amz-checksum-mode: ENABLED`, which S3 needs to name the
    /// checksum): size, ETag, version, metadata, the version's Object Lock
    /// and, when asked for, the stored checksum.
    pub(super) async fn head_object(
        &self,
        key: &str,
        version_id: Option<&str>,
        with_checksum: bool,
    ) -> StoreResult<RemoteObject> {
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_string))
            .set_checksum_mode(with_checksum.then_some(aws_sdk_s3::types::ChecksumMode::Enabled))
            .send()
            .await
            .map_err(|e| convert(e, &format!("checking '{key}'")))?;
        Ok(RemoteObject {
            checksum: if with_checksum { any_stored(&out) } else { None },
            lock: super::lock::retention(out.object_lock_mode(), out.object_lock_retain_until_date()),
            ..remote_object(
                out.content_length().unwrap_or(0).max(0) as u64,
                out.e_tag(),
                kept_version(out.version_id()),
                out.last_modified(),
                out.metadata(),
            )
        })
    }
}

/// The SDK's name for an algorithm.
pub(crate) fn sdk_algorithm(a: Algorithm) -> SdkAlgorithm {
    match a {
        Algorithm::Crc64nvme => SdkAlgorithm::Crc64Nvme,
        Algorithm::Crc32c => SdkAlgorithm::Crc32C,
        Algorithm::Sha256 => SdkAlgorithm::Sha256,
    }
}

/// The checksum type a multipart upload of `a` asks for (S3 User Guide,
/// "Checking object integrity": CRC64NVME full object only, SHA-256
/// composite only, CRC32C either; the tool takes full object for it).
pub(crate) fn checksum_type(a: Algorithm) -> ChecksumType {
    if a.full_object() {
        ChecksumType::FullObject
    } else {
        ChecksumType::Composite
    }
}

/// A stored checksum from an answer's value, if it has a usable one.
pub(crate) fn stored(algorithm: Algorithm, value: Option<&str>) -> Option<StoredChecksum> {
    let value = value?.trim();
    (!value.is_empty()).then(|| StoredChecksum {
        algorithm,
        value: value.to_string(),
    })
}

/// The first checksum of an algorithm the tool knows that a HEAD answer
/// names (an object has at most one additional checksum).
pub(crate) fn any_stored(
    out: &aws_sdk_s3::operation::head_object::HeadObjectOutput,
) -> Option<StoredChecksum> {
    Algorithm::ALL.into_iter().find_map(|a| stored_sum!(out, Some(a)))
}
