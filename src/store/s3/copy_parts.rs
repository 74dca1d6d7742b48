//! Server-side copies of objects larger than one CopyObject takes (5 GiB):
//! a multipart upload whose parts are ranges of the source
//! (UploadPartCopy), each conditional on the source's ETag, so a source
//! replaced halfway fails the copy instead of mixing two versions. The
//! rule is S3's ("Copy an object using the multipart upload API", S3 User
//! Guide); rclone does the same above its `--s3-copy-cutoff`. A failed
//! copy aborts its upload, so no parts are left billed. A store that
//! ignores the condition is caught once the copy is done: the source must
//! still have the recorded ETag (`etags`), else the copy is
//! [`crate::store::StoreError::Changed`].

use super::errors::convert;
use super::{S3Store, clean_etag, encode_copy_source};
use crate::store::{CompletedPart, ObjectMeta, PutOutcome, StoreResult};

impl S3Store {
    /// Copies `src_key` (of `size` bytes) to `dst_key` in parts of
    /// `part_size` bytes with `meta` as the new object's metadata; with
    /// `if_match`, every part requires the source to still have that ETag.
    pub(super) async fn copy_by_parts(
        &self,
        src_key: &str,
        dst_key: &str,
        size: u64,
        part_size: u64,
        meta: &ObjectMeta,
        if_match: Option<&str>,
    ) -> StoreResult<PutOutcome> {
        let upload_id = self.create_multipart(dst_key, meta).await?;
        match self
            .copy_parts(src_key, dst_key, &upload_id, size, part_size, if_match)
            .await
        {
            Ok(parts) => match self.complete_multipart(dst_key, &upload_id, &parts, None).await {
                Ok(put) => match if_match.filter(|e| !e.is_empty()) {
                    Some(expected) => {
                        let what = format!("copying '{src_key}' to '{dst_key}'");
                        self.check_after_copy(src_key, dst_key, expected, None, &what)
                            .await?;
                        Ok(put)
                    }
                    None => Ok(put),
                },
                Err(e) => {
                    self.abandon(dst_key, &upload_id).await;
                    Err(e)
                }
            },
            Err(e) => {
                self.abandon(dst_key, &upload_id).await;
                Err(e)
            }
        }
    }

    /// Aborts an upload a failed copy began (a failure to is only logged:
    /// the backup's sweep of forgotten uploads finds it later).
    async fn abandon(&self, key: &str, upload_id: &str) {
        if let Err(e) = self.abort_multipart(key, upload_id).await {
            tracing::warn!("abandoning the copy into '{key}': {e}");
        }
    }

    /// The parts, one UploadPartCopy each, in order.
    async fn copy_parts(
        &self,
        src_key: &str,
        dst_key: &str,
        upload_id: &str,
        size: u64,
        part_size: u64,
        if_match: Option<&str>,
    ) -> StoreResult<Vec<CompletedPart>> {
        let source = format!("{}/{}", self.bucket, encode_copy_source(src_key));
        let part_size = part_size.max(1);
        let mut parts = Vec::new();
        let mut offset = 0;
        let mut number = 1;
        while offset < size || number == 1 {
            let end = size.min(offset + part_size);
            let what = format!("copying part {number} of '{src_key}' to '{dst_key}'");
            let req = self
                .client
                .upload_part_copy()
                .bucket(&self.bucket)
                .key(dst_key)
                .upload_id(upload_id)
                .part_number(number)
                .copy_source(&source)
                .set_copy_source_if_match(if_match.filter(|e| !e.is_empty()).map(|e| format!("\"{e}\"")));
            // An empty source has no byte range to name.
            let req = if end > offset {
                req.copy_source_range(format!("bytes={offset}-{}", end - 1))
            } else {
                req
            };
            let out = req.send().await.map_err(|e| convert(e, &what))?;
            // With `--checksum-algorithm` the upload names it and the store
            // computes each part's, which the completion must list.
            let result = out.copy_part_result();
            parts.push(CompletedPart {
                number,
                etag: clean_etag(result.and_then(|r| r.e_tag())),
                checksum: result
                    .and_then(|r| stored_sum!(r, self.write.checksum))
                    .map(|c| c.value),
            });
            offset = end;
            number += 1;
            if end == size {
                break;
            }
        }
        Ok(parts)
    }
}
