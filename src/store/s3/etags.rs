//! What an ETag proves, judged by what the store's answer says.
//!
//! S3 documents an object's ETag as the MD5 of its content only for objects
//! written by PutObject (or copied) and stored in plain or with SSE-S3; with
//! SSE-KMS, DSSE-KMS or SSE-C it is not, and after a multipart upload it is
//! `hex-N` (S3 API reference, "Object", ETag). A bucket whose default
//! encryption is SSE-KMS gives such ETags to every write, also when the
//! client asked for no encryption: every answer names the encryption used
//! (`x-amz-server-side-encryption`, `x-amz-server-side-encryption-customer-
//! algorithm`). So an ETag is compared with an MD5 only where the answer
//! (and the write options the request asked for) say it is one; the
//! `Content-MD5` sent with the body still has the store check the bytes.
//!
//! A copy's condition (`x-amz-copy-source-if-match`) is what keeps it from
//! taking content other than what the tool knows the source holds; a store
//! that ignores the condition is caught after the copy by its ETag where
//! both are MD5s, and otherwise by asking for the source's ETag (one HEAD:
//! the source must still have the recorded one; the copy is deleted when
//! not), or, for a copy onto itself (a metadata refresh, whose ETag the
//! copy replaces), before it: a source replaced between that HEAD and the
//! copy, on a store that ignores the condition, is the one case not caught.

use aws_sdk_s3::types::ServerSideEncryption;

use super::S3Store;
use crate::store::{ObjectStore, StoreError, StoreResult};

/// How an answer says the object it wrote is stored.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Stored<'a> {
    /// `x-amz-server-side-encryption`.
    pub(super) sse: Option<&'a ServerSideEncryption>,
    /// `x-amz-server-side-encryption-customer-algorithm` (SSE-C).
    pub(super) customer_key: Option<&'a str>,
}

impl S3Store {
    /// Whether `etag` is the MD5 of the content of an object stored as
    /// `stored` says: 32 hex digits, stored in plain or with SSE-S3, neither
    /// the answer nor the write options naming KMS or a customer key.
    pub(super) fn etag_is_md5(&self, etag: &str, stored: Stored<'_>) -> bool {
        let kms_asked = self
            .write
            .sse
            .as_deref()
            .is_some_and(|s| s.starts_with("aws:kms"));
        let plain = match stored.sse {
            None | Some(ServerSideEncryption::Aes256) => true,
            Some(_) => false,
        };
        plain
            && !kms_asked
            && stored.customer_key.is_none()
            && etag.len() == 32
            && etag.bytes().all(|b| b.is_ascii_hexdigit())
    }

    /// Compares the ETag of a single-part object or of a part with the MD5
    /// of the body sent, where the ETag is one ([`Self::etag_is_md5`]): an
    /// S3-compatible server that ignores `Content-MD5` is still caught.
    pub(super) fn check_etag(
        &self,
        etag: &str,
        md5: Option<crate::fs::hash::Md5>,
        stored: Stored<'_>,
        what: &str,
    ) -> StoreResult<()> {
        let Some(md5) = md5 else { return Ok(()) };
        if !self.etag_is_md5(etag, stored) || etag.eq_ignore_ascii_case(&hex::encode(md5)) {
            return Ok(());
        }
        Err(StoreError::BadDigest(format!(
            "{what}: the store's ETag {etag} is not the MD5 of the body ({})",
            hex::encode(md5)
        )))
    }

    /// Before a copy of `key` onto itself conditional on `expected`: the
    /// object must have that ETag now (the copy replaces it, so it cannot be
    /// asked afterwards).
    pub(super) async fn check_before_self_copy(
        &self,
        key: &str,
        expected: &str,
        what: &str,
    ) -> StoreResult<()> {
        let held = self.head(key, None).await?.etag;
        same_or_changed(&held, expected, what)
    }

    /// After a copy from `src_key` conditional on `expected` whose answer
    /// gave the ETag `copied`: proof that it took the recorded content. Two
    /// MD5s prove it (a copy's ETag is its content's MD5); otherwise the
    /// source must still have the recorded ETag (a copy onto itself was
    /// checked before, by [`Self::check_before_self_copy`]).
    ///
    /// # Errors
    /// [`StoreError::Changed`] when the source holds other content.
    pub(super) async fn check_after_copy(
        &self,
        src_key: &str,
        dst_key: &str,
        expected: &str,
        copied: Option<(&str, Stored<'_>)>,
        what: &str,
    ) -> StoreResult<()> {
        if let Some((etag, stored)) = copied
            && self.etag_is_md5(expected, Stored::default())
            && self.etag_is_md5(etag, stored)
            && expected.eq_ignore_ascii_case(etag)
        {
            return Ok(());
        }
        if src_key == dst_key {
            return match copied {
                // Two MD5s that differ: the object held other content.
                Some((etag, stored))
                    if self.etag_is_md5(expected, Stored::default()) && self.etag_is_md5(etag, stored) =>
                {
                    same_or_changed(etag, expected, what)
                }
                _ => Ok(()),
            };
        }
        let held = self.head(src_key, None).await?.etag;
        let checked = same_or_changed(&held, expected, what);
        if checked.is_err() {
            // The copy wrote content nobody asked for: it must not stay
            // under a name that claims other content (the content area's
            // names are hashes). A rename's caller sends the file there next.
            if let Err(e) = self.delete(dst_key).await {
                tracing::warn!("removing the copy '{dst_key}' of changed content: {e}");
            }
        }
        checked
    }
}

/// `Ok` when the ETag `held` is the recorded `expected`, else
/// [`StoreError::Changed`].
fn same_or_changed(held: &str, expected: &str, what: &str) -> StoreResult<()> {
    if held == expected {
        return Ok(());
    }
    Err(StoreError::Changed(format!(
        "{what}: the source no longer holds the content recorded for it (ETag {held}, recorded {expected})"
    )))
}
