//! Multipart uploads on S3: begin, send parts, assemble, abandon, and list
//! the ones left open. Beginning one is never retried inside the SDK (a
//! retry after a lost answer would begin a second upload nobody hears of);
//! the caller retries, and looks for such uploads once its transfers are done.

use aws_config::retry::RetryConfig;
use aws_sdk_s3::types::CompletedMultipartUpload;

use super::errors::convert;
use super::{S3Store, body, clean_etag, metadata};
use crate::fs::checksum::{Algorithm, Sum};
use crate::store::{
    CompletedPart, FileRange, ObjectMeta, PendingUpload, PutOutcome, StoreError, StoreResult,
};

/// The [`crate::store::ObjectStore`] multipart operations; errors as
/// [`convert`] sorts the SDK's, plus [`StoreError::BadDigest`] for a part
/// whose ETag is not the MD5 sent and [`StoreError::Fatal`] for an answer
/// without an upload ID.
impl S3Store {
    /// The multipart uploads open under `prefix`, page by page.
    pub(super) async fn pending_uploads(&self, prefix: &str) -> StoreResult<Vec<PendingUpload>> {
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
                Some(PendingUpload {
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

    /// Begins a multipart upload of `key`, returning its upload ID.
    pub(super) async fn create_multipart(&self, key: &str, meta: &ObjectMeta) -> StoreResult<String> {
        let req = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key);
        // Not retried inside the SDK: a retry after a lost answer begins a
        // second upload and the first is never heard of. The caller retries
        // and knows to look for such uploads once its transfers are done.
        let out = with_write_options!(req, &self.write, key)
            .set_checksum_algorithm(self.write.checksum.map(super::sums::sdk_algorithm))
            .set_checksum_type(self.write.checksum.map(super::sums::checksum_type))
            .set_metadata(Some(metadata(meta)))
            .customize()
            .config_override(aws_sdk_s3::config::Builder::default().retry_config(RetryConfig::disabled()))
            .send()
            .await
            .map_err(|e| super::errors::convert_write(e, &format!("starting multipart upload of '{key}'")))?;
        out.upload_id()
            .map(str::to_string)
            .ok_or_else(|| StoreError::Fatal(format!("server gave no upload ID for '{key}'")))
    }

    /// Sends part `number` of an upload, returning its ETag.
    pub(super) async fn upload_part(
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
            .set_content_md5(range.md5.map(aws_smithy_types::base64::encode));
        let req = with_sum!(req, range.sum).body(self.paced(body(range, self.bandwidth.is_none()).await?));
        let out = match self.upload_config(range.len) {
            Some(config) => req.customize().config_override(config).send().await,
            None => req.send().await,
        }
        .map_err(|e| convert(e, &what))?;
        let etag = clean_etag(out.e_tag());
        let stored = super::etags::Stored {
            sse: out.server_side_encryption(),
            customer_key: out.sse_customer_algorithm(),
        };
        self.check_etag(&etag, range.md5, stored, &what)?;
        Ok(etag)
    }

    /// Assembles the parts into the object.
    pub(super) async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        whole: Option<Sum>,
    ) -> StoreResult<PutOutcome> {
        let algorithm = self.write.checksum;
        let parts = parts
            .iter()
            .map(|p| {
                let sum = |a: Algorithm| p.checksum.clone().filter(|_| algorithm == Some(a));
                aws_sdk_s3::types::CompletedPart::builder()
                    .part_number(p.number)
                    .e_tag(&p.etag)
                    .set_checksum_crc64_nvme(sum(Algorithm::Crc64nvme))
                    .set_checksum_crc32_c(sum(Algorithm::Crc32c))
                    .set_checksum_sha256(sum(Algorithm::Sha256))
                    .build()
            })
            .collect();
        let req = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build());
        // The full-object checksum of the whole file, where the algorithm
        // has one: the store checks the parts add up to it. The type rides
        // only with that value: S3 takes it from CreateMultipartUpload (on
        // completion it is a check), and Garage refuses a type named
        // without a value (a composite SHA-256, a copy in parts).
        let whole = whole.filter(|w| Some(w.algorithm) == algorithm);
        let req = req.set_checksum_type(whole.map(|w| super::sums::checksum_type(w.algorithm)));
        let value = |a: Algorithm| whole.filter(|w| w.algorithm == a).map(|w| w.base64());
        let out = req
            .set_checksum_crc64_nvme(value(Algorithm::Crc64nvme))
            .set_checksum_crc32_c(value(Algorithm::Crc32c))
            .set_checksum_sha256(value(Algorithm::Sha256))
            .send()
            .await
            .map_err(|e| convert(e, &format!("completing multipart upload of '{key}'")))?;
        let put = PutOutcome {
            etag: clean_etag(out.e_tag()),
            version_id: self.kept(out.version_id()).await,
            checksum: stored_sum!(out, algorithm),
        };
        // The lock named on CreateMultipartUpload is not applied by every
        // store (moto ignores it): set it on the version made, so that no
        // snapshot is reported locked while one of its objects is not.
        if let (Some(lock), Some(version)) = (&self.write.lock, &put.version_id) {
            self.extend_retention(key, version, lock).await?;
        }
        Ok(put)
    }

    /// Abandons an upload and frees its parts.
    pub(super) async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
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
}
