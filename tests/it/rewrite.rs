//! What [`crate::proxy::FaultProxy`] changes in the requests and answers
//! that pass through it, so one server (s3s-fs, moto) can stand in for
//! stores whose rules differ ([`Rewrite`]): a store that ignores
//! conditions (`If-Match`, `x-amz-copy-source-if-match` stripped), a bucket
//! whose default encryption is SSE-KMS (ETags that are not MD5s, and the
//! `x-amz-server-side-encryption: aws:kms` header, as S3 answers for such
//! a bucket: S3 API reference, "Common Response Headers" and the ETag of
//! "Object"), and listings without ETags.
//!
//! A request the proxy changes is signed again (SigV4, with the test
//! server's keys and the region of the original signature), so s3s-fs,
//! which checks signatures, takes it as the client's; moto checks none.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use bytes::Bytes;
use hyper::http::request::Parts;
use hyper::http::response;
use hyper::http::{HeaderName, HeaderValue};

use crate::server::S3Server;

/// The rules a proxy applies to every request (all off by default).
#[derive(Debug, Clone, Default)]
pub struct Rewrite {
    /// Request headers removed before the server sees them (lowercase
    /// names), as by a store that ignores them.
    pub strip_headers: Vec<&'static str>,
    /// Answer as S3 does for a bucket whose default encryption is SSE-KMS:
    /// every ETag the server gives (headers, CopyObject, UploadPartCopy,
    /// CompleteMultipartUpload and listing bodies) becomes a token that is
    /// not the MD5 of the content (the same token for the same key and real
    /// ETag, `-N` kept: a copy's token differs from its source's, as on S3),
    /// and every successful answer says
    /// `x-amz-server-side-encryption: aws:kms`. Tokens in conditions and in
    /// CompleteMultipartUpload bodies are mapped back before forwarding.
    pub kms_etags: bool,
    /// ListObjectsV2 answers lose their `<ETag>` elements.
    pub strip_list_etags: bool,
}

impl Rewrite {
    /// Whether nothing is changed.
    pub fn is_off(&self) -> bool {
        self.strip_headers.is_empty() && !self.kms_etags && !self.strip_list_etags
    }
}

/// The KMS tokens handed out, token → real ETag.
#[derive(Default)]
pub struct Tokens(Mutex<HashMap<String, String>>);

impl Tokens {
    /// The token standing for `real` (`hex` or `hex-N`) of `key`, remembered.
    fn token(&self, key: &str, real: &str) -> String {
        let (hex, parts) = match real.split_once('-') {
            Some((h, n)) => (h, format!("-{n}")),
            None => (real, String::new()),
        };
        let token = format!(
            "{}{parts}",
            &blake3::hash(format!("kms:{key}:{hex}").as_bytes()).to_hex()[..32]
        );
        self.0.lock().unwrap().insert(token.clone(), real.to_owned());
        token
    }

    /// The real ETag behind `token` (or `token` itself when it is none).
    fn real(&self, token: &str) -> String {
        self.0
            .lock()
            .unwrap()
            .get(token)
            .cloned()
            .unwrap_or_else(|| token.to_owned())
    }
}

/// `"abc"` → `abc`, keeping what wrapped it to put back.
fn unquote(v: &str) -> (&str, &str, &str) {
    for q in ["&quot;", "&#34;", "\""] {
        if let Some(inner) = v.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return (q, inner, q);
        }
    }
    ("", v, "")
}

/// Replaces the value of every `<ETag>…</ETag>` in `xml` by `f(key,
/// value)` (quotes kept), or drops the element when `f` gives `None`;
/// `key` is the last `<Key>` before it, if any.
fn map_xml_etags(xml: &str, f: impl Fn(Option<&str>, &str) -> Option<String>) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    let mut key: Option<String> = None;
    while let Some(start) = rest.find("<ETag>") {
        let Some(len) = rest[start..].find("</ETag>") else {
            break;
        };
        let before = &rest[..start];
        if let Some(k) = before.rfind("<Key>") {
            let k = &before[k + 5..];
            key = Some(k[..k.find("</Key>").unwrap_or(k.len())].to_owned());
        }
        out.push_str(before);
        let (open, value, close) = unquote(&rest[start + 6..start + len]);
        if let Some(new) = f(key.as_deref(), value) {
            out.push_str(&format!("<ETag>{open}{new}{close}</ETag>"));
        }
        rest = &rest[start + len + 7..];
    }
    out.push_str(rest);
    out
}

/// Whether the request lists a bucket (ListObjectsV2).
fn is_listing(parts: &Parts) -> bool {
    parts.method == hyper::Method::GET && parts.uri.query().is_some_and(|q| q.contains("list-type=2"))
}

/// Whether the answer's body is XML that names ETags of objects or parts.
fn answers_with_etags(parts: &Parts) -> bool {
    let query = parts.uri.query().unwrap_or("");
    is_listing(parts)
        || parts.headers.contains_key("x-amz-copy-source")
        || (parts.method == hyper::Method::POST && query.contains("uploadId"))
}

/// Applies `rw` to a request before it is forwarded; signs it again when
/// anything changed.
pub fn request(rw: &Rewrite, tokens: &Tokens, parts: &mut Parts, body: Bytes) -> Bytes {
    if rw.is_off() {
        return body;
    }
    let mut changed = false;
    for name in &rw.strip_headers {
        changed |= parts.headers.remove(*name).is_some();
    }
    let mut body = body;
    if rw.kms_etags {
        for name in ["if-match", "if-none-match", "x-amz-copy-source-if-match"] {
            let Some(v) = parts.headers.get(name).and_then(|v| v.to_str().ok()) else {
                continue;
            };
            let (open, inner, close) = unquote(v);
            let real = format!("{open}{}{close}", tokens.real(inner));
            if real != v {
                parts.headers.insert(name, HeaderValue::from_str(&real).unwrap());
                changed = true;
            }
        }
        if parts.method == hyper::Method::POST
            && parts.uri.query().is_some_and(|q| q.contains("uploadId"))
            && let Ok(xml) = std::str::from_utf8(&body)
        {
            let mapped = map_xml_etags(xml, |_, t| Some(tokens.real(t)));
            if mapped != xml {
                body = Bytes::from(mapped);
                changed = true;
            }
        }
    }
    if changed {
        sign_again(parts, &body);
    }
    body
}

/// Applies `rw` to an answer (its head, and its body when it is XML naming ETags).
pub fn response(
    rw: &Rewrite,
    tokens: &Tokens,
    req: &Parts,
    head: &mut response::Parts,
    body: Bytes,
) -> Bytes {
    if rw.is_off() {
        return body;
    }
    // The object's key: the path after the bucket.
    let path_key = req
        .uri
        .path()
        .trim_start_matches('/')
        .split_once('/')
        .map_or("", |(_, k)| k);
    if rw.kms_etags {
        if let Some(v) = head.headers.get("etag").and_then(|v| v.to_str().ok()) {
            let (open, inner, close) = unquote(v);
            let token = format!("{open}{}{close}", tokens.token(path_key, inner));
            head.headers
                .insert("etag", HeaderValue::from_str(&token).unwrap());
        }
        if head.status.is_success() {
            head.headers.insert(
                HeaderName::from_static("x-amz-server-side-encryption"),
                HeaderValue::from_static("aws:kms"),
            );
        }
    }
    let strip = rw.strip_list_etags && is_listing(req);
    if !(rw.kms_etags || strip) || !answers_with_etags(req) {
        return body;
    }
    let Ok(xml) = std::str::from_utf8(&body) else {
        return body;
    };
    let mapped = map_xml_etags(xml, |key, v| {
        (!strip).then(|| match rw.kms_etags {
            true => tokens.token(key.unwrap_or(path_key), v),
            false => v.to_owned(),
        })
    });
    head.headers.remove(hyper::header::TRANSFER_ENCODING);
    head.headers
        .insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(mapped.len()));
    Bytes::from(mapped)
}

/// Signs a changed request again with the test server's keys (SigV4, the
/// region of its original signature, the body's SHA-256 unless it was sent
/// as an unsigned payload).
fn sign_again(parts: &mut Parts, body: &Bytes) {
    use aws_sigv4::http_request::{
        PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
        UriPathNormalizationMode, sign,
    };
    let Some(auth) = parts.headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return;
    };
    // "AWS4-HMAC-SHA256 Credential=AK/20261130/us-east-1/s3/aws4_request, ..."
    let region = auth
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split('/').nth(2))
        .unwrap_or("us-east-1")
        .to_owned();
    let unsigned = parts
        .headers
        .get("x-amz-content-sha256")
        .is_some_and(|v| v.as_bytes() == b"UNSIGNED-PAYLOAD");
    for name in ["authorization", "x-amz-date", "x-amz-content-sha256"] {
        parts.headers.remove(name);
    }
    let identity = aws_credential_types::Credentials::new(
        S3Server::ACCESS_KEY,
        S3Server::SECRET_KEY,
        None,
        None,
        "rewrite",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&region)
        .name("s3")
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let uri = parts.uri.to_string();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let signable = SignableRequest::new(
        parts.method.as_str(),
        uri,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        if unsigned {
            SignableBody::UnsignedPayload
        } else {
            SignableBody::Bytes(body)
        },
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let (new_headers, _) = instructions.into_parts();
    for h in new_headers {
        parts.headers.insert(
            HeaderName::from_bytes(h.name().as_bytes()).unwrap(),
            HeaderValue::from_str(h.value()).unwrap(),
        );
    }
}

#[test]
fn xml_etags_are_mapped_and_dropped() {
    let xml = "<a><ETag>&quot;abc&quot;</ETag><b/><ETag>\"d-2\"</ETag></a>";
    assert_eq!(
        map_xml_etags(xml, |_, v| Some(v.to_uppercase())),
        "<a><ETag>&quot;ABC&quot;</ETag><b/><ETag>\"D-2\"</ETag></a>"
    );
    assert_eq!(map_xml_etags(xml, |_, _| None), "<a><b/></a>");
    let listed = "<C><Key>k1</Key><ETag>1</ETag></C><C><Key>k2</Key><ETag>2</ETag></C>";
    assert_eq!(
        map_xml_etags(listed, |k, v| Some(format!("{}{v}", k.unwrap()))),
        "<C><Key>k1</Key><ETag>k11</ETag></C><C><Key>k2</Key><ETag>k22</ETag></C>"
    );
    let t = Tokens::default();
    let token = t.token("k", "0123456789abcdef0123456789abcdef-3");
    assert_ne!(token, t.token("k2", "0123456789abcdef0123456789abcdef-3"));
    assert!(token.ends_with("-3") && token.len() == 34);
    assert_eq!(t.real(&token), "0123456789abcdef0123456789abcdef-3");
}
