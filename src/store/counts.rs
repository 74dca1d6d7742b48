//! Request accounting: how many requests a run sent to its store, by kind,
//! and how many body bytes went each way, so the summary, `--json`, the
//! state's run history and the metrics file can say what a run cost.
//!
//! Every store holds one [`RequestCounter`] for as long as it lives (one
//! run) and bumps it where every request passes, so nothing escapes:
//! - the S3 store counts in an SDK interceptor ([`super::s3`]), once per
//!   *attempt*: a request the SDK's retry layer or `store::retry` sends
//!   again is a request again, as it is on the bill. The kind comes from
//!   the SDK's operation name; bytes sent are the request body's length,
//!   bytes received the response body's announced length (`Content-Length`,
//!   none for a HEAD);
//! - the local store counts its operations by the same kinds (see
//!   [`super::local`] for what one "request" is there).
//!
//! The counter is a handful of relaxed atomics: one add per request, no
//! lock, no allocation, so counting adds no measurable cost to a run.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// What kind of request: the groups S3 prices differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// ListObjectsV2, ListObjectVersions.
    List,
    /// HeadObject.
    Head,
    /// GetObject.
    Get,
    /// PutObject.
    Put,
    /// CopyObject.
    Copy,
    /// UploadPart, UploadPartCopy.
    MultipartPart,
    /// CreateMultipartUpload, CompleteMultipartUpload,
    /// AbortMultipartUpload, ListParts, ListMultipartUploads.
    MultipartOther,
    /// DeleteObject; a DeleteObjects batch is one request.
    Delete,
    /// Everything else: bucket location, versioning, HeadBucket, CreateBucket…
    Other,
}

impl RequestKind {
    /// The kind of an S3 operation, by its API name (e.g. "PutObject").
    #[must_use]
    pub fn of_operation(name: &str) -> Self {
        match name {
            "ListObjectsV2" | "ListObjects" | "ListObjectVersions" => Self::List,
            "HeadObject" => Self::Head,
            "GetObject" => Self::Get,
            "PutObject" => Self::Put,
            "CopyObject" => Self::Copy,
            "UploadPart" | "UploadPartCopy" => Self::MultipartPart,
            "CreateMultipartUpload"
            | "CompleteMultipartUpload"
            | "AbortMultipartUpload"
            | "ListParts"
            | "ListMultipartUploads" => Self::MultipartOther,
            "DeleteObject" | "DeleteObjects" => Self::Delete,
            _ => Self::Other,
        }
    }
}

/// The requests of a run by kind, and the body bytes sent and received:
/// plain numbers, a snapshot of a [`RequestCounter`]. Serialised as the
/// `requests` object of `--json` (`docs/json.md`), every field present.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RequestCounts {
    /// Listing requests (one page each).
    pub list: u64,
    /// HeadObject requests.
    pub head: u64,
    /// GetObject requests.
    pub get: u64,
    /// PutObject requests.
    pub put: u64,
    /// CopyObject requests.
    pub copy: u64,
    /// UploadPart and UploadPartCopy requests.
    pub multipart_parts: u64,
    /// Create, complete, abort and list-parts requests of multipart uploads.
    pub multipart_other: u64,
    /// DeleteObject requests (a DeleteObjects batch counts once).
    pub delete: u64,
    /// Any other request (bucket checks, versioning, location…).
    pub other: u64,
    /// Bytes of request bodies sent.
    pub bytes_sent: u64,
    /// Bytes of response bodies received.
    pub bytes_received: u64,
}

impl RequestCounts {
    /// All requests, of every kind.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.kinds().iter().map(|(_, n)| n).sum()
    }

    /// Each kind's name (as in `--json`) and count, in a fixed order.
    #[must_use]
    pub fn kinds(&self) -> [(&'static str, u64); 9] {
        [
            ("list", self.list),
            ("head", self.head),
            ("get", self.get),
            ("put", self.put),
            ("copy", self.copy),
            ("multipart_parts", self.multipart_parts),
            ("multipart_other", self.multipart_other),
            ("delete", self.delete),
            ("other", self.other),
        ]
    }

    /// Adds one request of `kind`.
    pub fn add(&mut self, kind: RequestKind) {
        *self.slot(kind) += 1;
    }

    fn slot(&mut self, kind: RequestKind) -> &mut u64 {
        match kind {
            RequestKind::List => &mut self.list,
            RequestKind::Head => &mut self.head,
            RequestKind::Get => &mut self.get,
            RequestKind::Put => &mut self.put,
            RequestKind::Copy => &mut self.copy,
            RequestKind::MultipartPart => &mut self.multipart_parts,
            RequestKind::MultipartOther => &mut self.multipart_other,
            RequestKind::Delete => &mut self.delete,
            RequestKind::Other => &mut self.other,
        }
    }
}

impl std::ops::AddAssign for RequestCounts {
    fn add_assign(&mut self, o: Self) {
        self.list += o.list;
        self.head += o.head;
        self.get += o.get;
        self.put += o.put;
        self.copy += o.copy;
        self.multipart_parts += o.multipart_parts;
        self.multipart_other += o.multipart_other;
        self.delete += o.delete;
        self.other += o.other;
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
    }
}

/// The live counter a store bumps: one atomic per kind, plus the bytes.
/// Shared (`Arc`) with the SDK interceptor; read with [`Self::snapshot`].
#[derive(Debug, Default)]
pub struct RequestCounter {
    kinds: [AtomicU64; 9],
    sent: AtomicU64,
    received: AtomicU64,
    /// Throttling seen and the request limits' figures ([`super::flow`]).
    pub(crate) flow: std::sync::Arc<super::flow::Signals>,
}

impl RequestCounter {
    /// Counts one request of `kind` whose body is `body_bytes` long.
    pub fn request(&self, kind: RequestKind, body_bytes: u64) {
        self.kinds[kind as usize].fetch_add(1, Ordering::Relaxed);
        if body_bytes > 0 {
            self.sent.fetch_add(body_bytes, Ordering::Relaxed);
        }
    }

    /// Counts `n` bytes of a response body.
    pub fn received(&self, n: u64) {
        if n > 0 {
            self.received.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The counts so far.
    #[must_use]
    pub fn snapshot(&self) -> RequestCounts {
        let k = |kind: RequestKind| self.kinds[kind as usize].load(Ordering::Relaxed);
        RequestCounts {
            list: k(RequestKind::List),
            head: k(RequestKind::Head),
            get: k(RequestKind::Get),
            put: k(RequestKind::Put),
            copy: k(RequestKind::Copy),
            multipart_parts: k(RequestKind::MultipartPart),
            multipart_other: k(RequestKind::MultipartOther),
            delete: k(RequestKind::Delete),
            other: k(RequestKind::Other),
            bytes_sent: self.sent.load(Ordering::Relaxed),
            bytes_received: self.received.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_snapshots_by_kind() {
        let c = RequestCounter::default();
        c.request(RequestKind::of_operation("UploadPartCopy"), 0);
        c.request(RequestKind::of_operation("PutObject"), 10);
        c.request(RequestKind::of_operation("DeleteObjects"), 5);
        c.request(RequestKind::of_operation("GetBucketVersioning"), 0);
        c.received(7);
        let s = c.snapshot();
        assert_eq!((s.multipart_parts, s.put, s.delete, s.other), (1, 1, 1, 1));
        assert_eq!((s.bytes_sent, s.bytes_received, s.total()), (15, 7, 4));
        let mut sum = s;
        sum += s;
        assert_eq!(sum.total(), 8);
    }
}
