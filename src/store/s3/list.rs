//! Listing a bucket: every object under a prefix page by page, and the
//! one-request listing after a key that a repeated backup starts with,
//! held to the same first-contact bounds as the bucket check.

use aws_config::retry::RetryConfig;
use futures::StreamExt;
use futures::stream::BoxStream;

use super::bucket::FirstContact;
use super::errors::{Class, classify, convert, error_chain};
use super::{S3Store, clean_etag, datetime_ns};
use crate::store::{ObjectInfo, StoreError, StoreResult};

/// The [`crate::store::ObjectStore`] listings; errors as [`convert`] sorts
/// the SDK's, and [`StoreError::Transient`] naming where requests went
/// when the first listing gets no answer.
impl S3Store {
    /// Every object under `prefix`, in key order, a page at a time.
    pub(super) fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, StoreResult<ObjectInfo>> {
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
                    .filter_map(|o| object_info(o).map(Ok))
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
    pub(super) async fn list_after(
        &self,
        prefix: &str,
        start_after: &str,
        max: usize,
    ) -> StoreResult<Vec<ObjectInfo>> {
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
            Ok(out) => out.map_err(|e| match classify(&e) {
                Class::Unreachable | Class::TimedOut => StoreError::Transient(format!(
                    "{what}: cannot reach {} ({} attempts, each allowed {} s to connect and {} s to answer): {}",
                    self.where_to(),
                    plan.attempts,
                    self.timeouts.0.as_secs(),
                    plan.answer.as_secs(),
                    error_chain(&e),
                )),
                _ => convert(e, &what),
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
            .filter_map(object_info)
            .take(max)
            .collect())
    }
}

/// A listed object in the store's terms; `None` for one without a key.
fn object_info(o: aws_sdk_s3::types::Object) -> Option<ObjectInfo> {
    Some(ObjectInfo {
        key: o.key?,
        size: o.size.unwrap_or(0).max(0) as u64,
        etag: clean_etag(o.e_tag.as_deref()),
        last_modified_ns: o.last_modified.as_ref().map(datetime_ns),
        storage_class: o.storage_class.map(|c| c.as_str().to_string()),
    })
}
