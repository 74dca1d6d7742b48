//! SDK errors sorted once, by their structure, into what the store's
//! callers act on.
//!
//! An error from aws-sdk-s3 is read here and nowhere else: its
//! [`SdkError`] variant (the request could not be built, was never
//! answered, timed out, got an unreadable answer, or got a service error),
//! the HTTP status of the raw answer and the service's error code
//! ([`ProvideErrorMetadata::code`]). [`classify`] turns that into a
//! [`Class`]; [`convert`] turns the class into a [`StoreError`] whose text
//! keeps the server's code and message for the user. The text is for
//! people only: nothing in the store decides anything by searching it, so
//! a key, a bucket or a server message that happens to contain words such
//! as "HTTP 301" or "cannot reach" changes nothing.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::store::StoreError;

/// What an SDK error means for the caller, decided from its structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// HTTP 404: the bucket or object does not exist.
    NotFound,
    /// HTTP 401 or 403: the credentials were refused or may not do this.
    AccessDenied,
    /// HTTP 412: a condition (`If-Match`, `x-amz-copy-source-if-match`) failed.
    Changed,
    /// Code `BadDigest`: the body's MD5 is not the `Content-MD5` sent.
    BadDigest,
    /// Code `InvalidObjectState`: the object is in an archive storage class.
    Archived,
    /// HTTP 301: the bucket lives in another region than the one asked.
    WrongRegion,
    /// Code `BucketAlreadyOwnedByYou`: a CreateBucket found the bucket ours.
    BucketOwned,
    /// Code `BucketAlreadyExists`: the bucket name belongs to someone else.
    BucketTaken,
    /// HTTP 408, 429 or 5xx, or code `SlowDown` / `RequestTimeout`:
    /// throttling or a server-side failure, worth retrying.
    Busy,
    /// Any other service error (HTTP 400 and the like): retrying will not help.
    Refused,
    /// The request never got an answer: no connection, DNS, TLS, a reset.
    Unreachable,
    /// The SDK's connect or read timeout ran out.
    TimedOut,
    /// An answer came but could not be read or parsed.
    BadResponse,
    /// The request could not be built (a bad parameter, no credentials).
    Construction,
}

impl Class {
    /// Whether another attempt may succeed.
    pub(super) fn is_transient(self) -> bool {
        matches!(
            self,
            Class::Busy | Class::Unreachable | Class::TimedOut | Class::BadResponse
        )
    }
}

/// The HTTP status of a raw response, whatever the SDK's response type.
pub(super) trait HasStatus {
    /// The status code, e.g. 404.
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Sorts an SDK error into a [`Class`]: the one place where SDK errors are
/// read. A service error is judged by its code where the code alone says
/// what happened (`BadDigest`, `InvalidObjectState`, the bucket ones), else
/// by its HTTP status, with the throttling codes S3 may send with another
/// status counted as busy.
pub(super) fn classify<E, R>(err: &SdkError<E, R>) -> Class
where
    E: ProvideErrorMetadata,
    R: HasStatus,
{
    match err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status_code();
            match (status, service.err().code().unwrap_or("")) {
                (404, _) => Class::NotFound,
                (_, "BadDigest") => Class::BadDigest,
                (412, _) => Class::Changed,
                // CopyObject answers an archived source with the second (S3 API
                // reference, CopyObject "Errors"; moto sends it too).
                (_, "InvalidObjectState" | "ObjectNotInActiveTierError") => Class::Archived,
                (_, "BucketAlreadyOwnedByYou") => Class::BucketOwned,
                (_, "BucketAlreadyExists") => Class::BucketTaken,
                (401 | 403, _) => Class::AccessDenied,
                (301, _) => Class::WrongRegion,
                (408 | 429 | 500..=599, _) | (_, "SlowDown" | "RequestTimeout") => Class::Busy,
                _ => Class::Refused,
            }
        }
        SdkError::ConstructionFailure(_) => Class::Construction,
        SdkError::DispatchFailure(_) => Class::Unreachable,
        SdkError::TimeoutError(_) => Class::TimedOut,
        // ResponseError, and any variant a later SDK adds: an answer that
        // went wrong on the way is worth another try.
        _ => Class::BadResponse,
    }
}

/// Turns an SDK error into a [`StoreError`] by its [`Class`], keeping the
/// server's code and message; `what` says what was being done ("uploading
/// 'a/b'") and opens the message.
pub(super) fn convert<E, R>(err: SdkError<E, R>, what: &str) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HasStatus + 'static,
{
    let class = classify(&err);
    let text = format!("{what}: {}", detail(&err));
    match class {
        Class::NotFound => StoreError::NotFound(text),
        Class::AccessDenied | Class::BucketTaken => StoreError::AccessDenied(text),
        Class::Changed => StoreError::Changed(text),
        Class::BadDigest => StoreError::BadDigest(text),
        Class::Archived => StoreError::Archived(text),
        Class::Busy | Class::TimedOut | Class::BadResponse => StoreError::Transient(text),
        Class::Unreachable => StoreError::Transient(format!(
            "{what}: cannot reach the endpoint: {}",
            error_chain(&err)
        )),
        Class::WrongRegion | Class::BucketOwned | Class::Refused | Class::Construction => {
            StoreError::Fatal(text)
        }
    }
}

/// [`convert`] for the write of a new object (PutObject,
/// CreateMultipartUpload) in a bucket known to exist: S3 answers such a
/// write 404 only with `NoSuchBucket`; a 404 without that code is the store
/// having no place for the key (moto's router answers so to a key holding
/// a newline), which is said as such, not as a missing object. Not
/// retried: the next run tries the file again.
pub(super) fn convert_write<E, R>(err: SdkError<E, R>, what: &str) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HasStatus + 'static,
{
    if let SdkError::ServiceError(service) = &err
        && service.raw().status_code() == 404
        && service.err().code() != Some("NoSuchBucket")
    {
        return StoreError::Fatal(format!(
            "{what}: the store refused this key ({}); S3 takes it, some S3-compatible stores do not",
            detail(&err)
        ));
    }
    convert(err, what)
}

/// What the error says, for people: a service error's code, message and
/// HTTP status ("NoSuchKey: The specified key does not exist. (HTTP
/// 404)"), any other error's chain of causes.
fn detail<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HasStatus + 'static,
{
    let SdkError::ServiceError(service) = err else {
        return error_chain(err);
    };
    let status = service.raw().status_code();
    let code = service.err().code().unwrap_or("");
    let message = service.err().message().unwrap_or("");
    match (code.is_empty(), message.is_empty()) {
        (true, _) => format!("HTTP {status}"),
        (false, true) => format!("{code} (HTTP {status})"),
        (false, false) => format!("{code}: {message} (HTTP {status})"),
    }
}

/// An error and its causes on one line, each said once (a cause whose text
/// an earlier one already holds is left out).
pub(super) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
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

#[cfg(test)]
mod tests {
    use aws_sdk_s3::config::http::HttpResponse;
    use aws_sdk_s3::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use aws_smithy_types::body::SdkBody;

    use super::*;

    type Error = SdkError<GetObjectError, HttpResponse>;

    fn answer(status: u16) -> HttpResponse {
        HttpResponse::new(status.try_into().unwrap(), SdkBody::empty())
    }

    /// A service error with this HTTP status, error code and message.
    fn service(status: u16, code: &str, message: &str) -> Error {
        let mut meta = ErrorMetadata::builder();
        if !code.is_empty() {
            meta = meta.code(code);
        }
        if !message.is_empty() {
            meta = meta.message(message);
        }
        SdkError::service_error(GetObjectError::generic(meta.build()), answer(status))
    }

    #[test]
    fn service_errors_are_sorted_by_status_and_code() {
        let cases = [
            (404, "NoSuchKey", Class::NotFound),
            (404, "NoSuchBucket", Class::NotFound),
            (403, "AccessDenied", Class::AccessDenied),
            (401, "", Class::AccessDenied),
            (412, "PreconditionFailed", Class::Changed),
            (400, "BadDigest", Class::BadDigest),
            (403, "InvalidObjectState", Class::Archived),
            (403, "ObjectNotInActiveTierError", Class::Archived),
            (301, "PermanentRedirect", Class::WrongRegion),
            (301, "", Class::WrongRegion),
            (409, "BucketAlreadyOwnedByYou", Class::BucketOwned),
            (409, "BucketAlreadyExists", Class::BucketTaken),
            (503, "SlowDown", Class::Busy),
            (400, "SlowDown", Class::Busy),
            (400, "RequestTimeout", Class::Busy),
            (500, "InternalError", Class::Busy),
            (429, "", Class::Busy),
            (408, "", Class::Busy),
            (400, "InvalidArgument", Class::Refused),
            (409, "OperationAborted", Class::Refused),
        ];
        for (status, code, want) in cases {
            assert_eq!(classify(&service(status, code, "")), want, "{status} {code}");
        }
    }

    #[test]
    fn transport_errors_are_sorted_by_variant() {
        let unreachable: Error = SdkError::dispatch_failure(ConnectorError::io("connection refused".into()));
        assert_eq!(classify(&unreachable), Class::Unreachable);
        let timeout: Error = SdkError::timeout_error("read timeout");
        assert_eq!(classify(&timeout), Class::TimedOut);
        let garbled: Error = SdkError::response_error("unparsable XML", answer(200));
        assert_eq!(classify(&garbled), Class::BadResponse);
        let unbuilt: Error = SdkError::construction_failure("no bucket");
        assert_eq!(classify(&unbuilt), Class::Construction);
        assert!(
            [
                Class::Unreachable,
                Class::TimedOut,
                Class::BadResponse,
                Class::Busy
            ]
            .iter()
            .all(|c| c.is_transient())
        );
        assert!(!Class::Refused.is_transient() && !Class::WrongRegion.is_transient());
    }

    /// The store used to re-sort its errors by searching their text: any
    /// fatal error whose text held "HTTP 301" was taken for a bucket in
    /// another region, and any transient one holding "cannot reach the
    /// endpoint" for an unreachable endpoint. A server message (or a key
    /// or bucket named in `what`) with those words was misread; the class
    /// comes from the status and the variant alone.
    #[test]
    fn words_in_the_text_change_nothing() {
        let err = service(400, "InvalidRequest", "redirects (HTTP 301) are not followed");
        let text = convert(
            service(400, "InvalidRequest", "redirects (HTTP 301) are not followed"),
            "x",
        )
        .to_string();
        assert!(
            text.contains("HTTP 301"),
            "the old rule would have matched: {text}"
        );
        assert_eq!(classify(&err), Class::Refused);

        let err = service(503, "ServiceUnavailable", "proxy: cannot reach the endpoint");
        assert_eq!(classify(&err), Class::Busy);

        let what = "checking 'backups/cannot reach the endpoint (HTTP 301)'";
        assert_eq!(classify(&service(404, "NoSuchKey", "")), Class::NotFound);
        assert!(matches!(
            convert(service(404, "NoSuchKey", ""), what),
            StoreError::NotFound(_)
        ));
    }

    #[test]
    fn a_404_to_a_write_is_a_refused_key_unless_the_bucket_is_gone() {
        let refused = convert_write(service(404, "", ""), "uploading 'a\nb'").to_string();
        assert_eq!(
            refused,
            "uploading 'a\nb': the store refused this key (HTTP 404); S3 takes it, some S3-compatible stores do not"
        );
        assert!(matches!(
            convert_write(service(404, "NoSuchBucket", ""), "uploading 'a'"),
            StoreError::NotFound(_)
        ));
        assert!(matches!(
            convert_write(service(503, "SlowDown", ""), "uploading 'a'"),
            StoreError::Transient(_)
        ));
    }

    #[test]
    fn messages_keep_the_servers_code_and_message() {
        let text = |e: StoreError| e.to_string();
        assert_eq!(
            text(convert(
                service(404, "NoSuchKey", "The key does not exist."),
                "downloading 'a'"
            )),
            "not found: downloading 'a': NoSuchKey: The key does not exist. (HTTP 404)"
        );
        assert_eq!(
            text(convert(service(403, "", ""), "checking 'a'")),
            "access denied: checking 'a': HTTP 403"
        );
        assert_eq!(
            text(convert(service(500, "InternalError", ""), "uploading 'a'")),
            "uploading 'a': InternalError (HTTP 500)"
        );
        let unreachable: Error = SdkError::dispatch_failure(ConnectorError::io("connection refused".into()));
        assert_eq!(
            text(convert(unreachable, "listing")),
            "listing: cannot reach the endpoint: dispatch failure: io error: connection refused"
        );
        assert!(
            text(convert(
                service(403, "InvalidObjectState", "archived"),
                "downloading 'a'"
            ))
            .ends_with("request a restore of it in S3 first")
        );
    }
}
