//! The SDK interceptor that counts every request the S3 client sends
//! ([`crate::store::counts`]): it sits in the SDK's attempt loop, so each
//! attempt (the SDK's own retries included) is seen once, just before it
//! goes out, and each response once, as it arrives. After each attempt it
//! also tells the request limits ([`crate::store::flow`]) of throttling:
//! a 503 (SlowDown or not) or 429 answer, or a timeout.

use std::sync::Arc;

use aws_sdk_s3::config::interceptors::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
    FinalizerInterceptorContextRef,
};
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::http::Headers;

use crate::store::counts::{RequestCounter, RequestKind};

/// Counts requests and body bytes into the store's [`RequestCounter`].
#[derive(Debug)]
pub(super) struct Counting(pub(super) Arc<RequestCounter>);

/// The operation's API name ("PutObject"), from the SDK's metadata.
fn operation(cfg: &ConfigBag) -> &str {
    cfg.load::<Metadata>().map_or("", Metadata::name)
}

/// A body's length from its `Content-Length` header, else its exact size hint.
fn length(headers: &Headers, hint: Option<u64>) -> u64 {
    headers
        .get("content-length")
        .and_then(|v| v.trim().parse().ok())
        .or(hint)
        .unwrap_or(0)
}

impl Intercept for Counting {
    fn name(&self) -> &'static str {
        "s3backup request counter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let sent = length(request.headers(), request.body().content_length());
        self.0.request(RequestKind::of_operation(operation(cfg)), sent);
        Ok(())
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // A HEAD reply announces the object's length but carries no body.
        if !operation(cfg).starts_with("Head") {
            let response = context.response();
            self.0
                .received(length(response.headers(), response.body().content_length()));
        }
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let status = context.response().map(|r| r.status().as_u16());
        let timed_out = context.output_or_error().is_some_and(|r| {
            r.err().is_some_and(|e| {
                e.is_timeout_error() || e.as_connector_error().is_some_and(|c| c.is_timeout())
            })
        });
        if matches!(status, Some(503 | 429)) || timed_out {
            self.0.flow.throttled();
        }
        Ok(())
    }
}
