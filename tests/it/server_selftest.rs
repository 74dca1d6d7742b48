//! Checks that the in-process S3 server (`server.rs`) behaves like S3 for an
//! ordinary aws-sdk-s3 client, and that its request log and failure rules do
//! what the backup tests rely on.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};

use crate::server::S3Server;

const MIB: usize = 1024 * 1024;

fn client_with(server: &S3Server, secret: &str) -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(server.endpoint())
        .force_path_style(true)
        .credentials_provider(Credentials::new(S3Server::ACCESS_KEY, secret, None, None, "test"))
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        // The default retry policy (3 attempts), with short waits.
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(10)),
        )
        .build();
    Client::from_conf(conf)
}

fn client(server: &S3Server) -> Client {
    client_with(server, S3Server::SECRET_KEY)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn put(c: &Client, bucket: &str, key: &str, body: &[u8]) -> Result<(), String> {
    c.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| e.code().unwrap_or("<no code>").to_owned())
}

#[tokio::test]
async fn bucket_put_head_list_delete() {
    let server = S3Server::start();
    let c = client(&server);

    c.create_bucket().bucket("bkt").send().await.unwrap();
    assert!(server.bucket_exists("bkt"));
    c.head_bucket().bucket("bkt").send().await.unwrap();
    let missing = c.head_bucket().bucket("nope").send().await.unwrap_err();
    assert_eq!(missing.raw_response().unwrap().status().as_u16(), 404);

    c.put_object()
        .bucket("bkt")
        .key("dir/a b.txt")
        .metadata("mtime", "1700000000.5")
        .metadata("blake3", "abc")
        .body(ByteStream::from_static(b"hello"))
        .send()
        .await
        .unwrap();
    put(&c, "bkt", "top", b"").await.unwrap();

    let head = c
        .head_object()
        .bucket("bkt")
        .key("dir/a b.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(5));
    let md = head.metadata().unwrap();
    assert_eq!(md.get("mtime").map(String::as_str), Some("1700000000.5"));
    assert_eq!(md.get("blake3").map(String::as_str), Some("abc"));

    // The harness's views agree with what the client sees.
    assert_eq!(server.object_bytes("bkt", "dir/a b.txt").unwrap(), b"hello");
    assert_eq!(server.object_bytes("bkt", "top").unwrap(), b"");
    let smd = server.object_metadata("bkt", "dir/a b.txt").unwrap();
    assert_eq!(smd.get("mtime").map(String::as_str), Some("1700000000.5"));
    assert_eq!(server.object_metadata("bkt", "top"), Some(Default::default()));
    assert_eq!(server.object_metadata("bkt", "absent"), None);
    assert_eq!(server.list_keys("bkt"), ["dir/a b.txt", "top"]);
    assert!(server.list_keys("no-such-bucket").is_empty());

    let got = c
        .get_object()
        .bucket("bkt")
        .key("dir/a b.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), b"hello");

    let list = c
        .list_objects_v2()
        .bucket("bkt")
        .prefix("dir/")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = list.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["dir/a b.txt"]);

    c.delete_object()
        .bucket("bkt")
        .key("dir/a b.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(server.list_keys("bkt"), ["top"]);
    assert_eq!(server.object_metadata("bkt", "dir/a b.txt"), None);

    // The log has every request in order, with names, decoded paths, statuses.
    let ops: Vec<String> = server.requests().iter().map(|r| r.op.clone()).collect();
    assert_eq!(
        ops,
        [
            "CreateBucket",
            "HeadBucket",
            "HeadBucket",
            "PutObject",
            "PutObject",
            "HeadObject",
            "GetObject",
            "ListObjectsV2",
            "DeleteObject"
        ]
    );
    let reqs = server.requests();
    assert!(reqs.iter().all(|r| r.op_resolved));
    assert_eq!(reqs[3].method, "PUT");
    assert_eq!(reqs[3].path, "/bkt/dir/a b.txt");
    assert_eq!(reqs[3].bucket.as_deref(), Some("bkt"));
    assert_eq!(reqs[3].key.as_deref(), Some("dir/a b.txt"));
    assert_eq!(reqs[3].status, 200);
    assert_eq!(reqs[2].status, 404);
    assert!(reqs[7].query.contains("list-type=2"), "{:?}", reqs[7]);
    assert_eq!(server.count("PutObject"), 2);
    assert_eq!(server.count_key("PutObject", "top"), 1);

    server.clear_requests();
    assert!(server.requests().is_empty());
    c.head_bucket().bucket("bkt").send().await.unwrap();
    assert_eq!(server.ops(), ["HeadBucket"]);
}

#[tokio::test]
async fn multipart_upload_keeps_bytes_and_metadata() {
    let server = S3Server::start();
    server.create_bucket("bkt");
    let c = client(&server);
    let part1 = pattern(5 * MIB, 1);
    let part2 = pattern(MIB + 7, 2);

    let up = c
        .create_multipart_upload()
        .bucket("bkt")
        .key("big/file.bin")
        .metadata("mtime", "1.25")
        .metadata("mode", "644")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    let mut done = Vec::new();
    for (n, body) in [(1, &part1), (2, &part2)] {
        let r = c
            .upload_part()
            .bucket("bkt")
            .key("big/file.bin")
            .upload_id(id)
            .part_number(n)
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .unwrap();
        done.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(r.e_tag().unwrap())
                .build(),
        );
    }
    let fin = c
        .complete_multipart_upload()
        .bucket("bkt")
        .key("big/file.bin")
        .upload_id(id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done)).build())
        .send()
        .await
        .unwrap();
    assert!(
        fin.e_tag().unwrap().ends_with("-2\""),
        "multipart etag: {:?}",
        fin.e_tag()
    );

    let mut expected = part1.clone();
    expected.extend_from_slice(&part2);
    assert_eq!(server.object_bytes("bkt", "big/file.bin").unwrap(), expected);
    let md = server.object_metadata("bkt", "big/file.bin").unwrap();
    assert_eq!(md.get("mtime").map(String::as_str), Some("1.25"));
    assert_eq!(md.get("mode").map(String::as_str), Some("644"));
    // No upload leftovers show up as keys.
    assert_eq!(server.list_keys("bkt"), ["big/file.bin"]);
    assert_eq!(server.count("CreateMultipartUpload"), 1);
    assert_eq!(server.count("UploadPart"), 2);
    assert_eq!(server.count("CompleteMultipartUpload"), 1);
}

#[tokio::test]
async fn copy_object_with_replace_directive_replaces_metadata() {
    let server = S3Server::start();
    server.create_bucket("bkt");
    let c = client(&server);
    c.put_object()
        .bucket("bkt")
        .key("a")
        .metadata("mtime", "1.0")
        .metadata("blake3", "h")
        .body(ByteStream::from_static(b"content"))
        .send()
        .await
        .unwrap();

    // Copy to itself with new metadata (a metadata-only update).
    c.copy_object()
        .bucket("bkt")
        .key("a")
        .copy_source("bkt/a")
        .metadata_directive(MetadataDirective::Replace)
        .metadata("mtime", "2.0")
        .metadata("blake3", "h")
        .send()
        .await
        .unwrap();
    assert_eq!(server.object_bytes("bkt", "a").unwrap(), b"content");
    let md = server.object_metadata("bkt", "a").unwrap();
    assert_eq!(md.get("mtime").map(String::as_str), Some("2.0"));

    // Copy to a new key (a rename on the server side).
    c.copy_object()
        .bucket("bkt")
        .key("dir/b c")
        .copy_source("bkt/a")
        .metadata_directive(MetadataDirective::Replace)
        .metadata("mtime", "3.0")
        .send()
        .await
        .unwrap();
    assert_eq!(server.object_bytes("bkt", "dir/b c").unwrap(), b"content");
    let md = server.object_metadata("bkt", "dir/b c").unwrap();
    assert_eq!(md.get("mtime").map(String::as_str), Some("3.0"));
    assert_eq!(md.get("blake3"), None, "REPLACE drops metadata not sent");

    // Default directive (COPY) keeps the source's metadata.
    c.copy_object()
        .bucket("bkt")
        .key("c")
        .copy_source("bkt/a")
        .send()
        .await
        .unwrap();
    let md = server.object_metadata("bkt", "c").unwrap();
    assert_eq!(md.get("mtime").map(String::as_str), Some("2.0"));

    assert_eq!(server.list_keys("bkt"), ["a", "c", "dir/b c"]);
    assert_eq!(server.count("CopyObject"), 3);
    assert_eq!(server.count("PutObject"), 1);
}

#[tokio::test]
async fn denied_bucket_gets_403_for_everything() {
    let server = S3Server::start();
    server.create_bucket("open");
    server.create_bucket("closed");
    server.deny_bucket("closed");
    let c = client(&server);

    let e = c.head_bucket().bucket("closed").send().await.unwrap_err();
    assert_eq!(e.raw_response().unwrap().status().as_u16(), 403);
    assert_eq!(put(&c, "closed", "k", b"x").await, Err("AccessDenied".to_owned()));
    let e = c.list_objects_v2().bucket("closed").send().await.unwrap_err();
    assert_eq!(e.code(), Some("AccessDenied"));
    // A missing denied bucket cannot be created either.
    server.deny_bucket("new");
    let e = c.create_bucket().bucket("new").send().await.unwrap_err();
    assert_eq!(e.code(), Some("AccessDenied"));
    assert!(!server.bucket_exists("new"));

    assert!(server.list_keys("closed").is_empty());
    assert_eq!(server.count("PutObject"), 1, "the attempt is logged");
    // Other buckets are unaffected.
    put(&c, "open", "k", b"x").await.unwrap();
    assert_eq!(server.list_keys("open"), ["k"]);

    server.allow_bucket("closed");
    put(&c, "closed", "k", b"x").await.unwrap();
    assert_eq!(server.list_keys("closed"), ["k"]);
}

#[tokio::test]
async fn transient_failures_are_retried_by_the_sdk() {
    let server = S3Server::start();
    server.create_bucket("bkt");
    let c = client(&server);
    server.fail_key("flaky", Some(2), true);

    put(&c, "bkt", "dir/flaky.txt", b"data").await.unwrap();
    assert_eq!(server.object_bytes("bkt", "dir/flaky.txt").unwrap(), b"data");
    let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 200]);
    assert_eq!(server.count("PutObject"), 3);

    // The rule is used up; other keys were never affected.
    put(&c, "bkt", "flaky2", b"x").await.unwrap();
    put(&c, "bkt", "steady", b"y").await.unwrap();
    assert_eq!(server.count("PutObject"), 5);
}

#[tokio::test]
async fn transient_failures_beyond_the_retry_budget_fail() {
    let server = S3Server::start();
    server.create_bucket("bkt");
    let c = client(&server);
    server.fail_key("flaky", None, true);
    assert_eq!(put(&c, "bkt", "flaky", b"data").await, Err("SlowDown".to_owned()));
    assert_eq!(server.count("PutObject"), 3, "SDK tried 3 times");
    assert!(server.list_keys("bkt").is_empty());
}

#[tokio::test]
async fn permanent_failures_are_not_retried_and_rules_can_be_cleared() {
    let server = S3Server::start();
    server.create_bucket("bkt");
    let c = client(&server);
    server.fail_key("bad", None, false);

    assert_eq!(
        put(&c, "bkt", "a/bad.txt", b"1").await,
        Err("AccessDenied".to_owned())
    );
    assert_eq!(
        put(&c, "bkt", "a/bad.txt", b"1").await,
        Err("AccessDenied".to_owned())
    );
    put(&c, "bkt", "a/good.txt", b"2").await.unwrap();
    assert_eq!(server.count_key("PutObject", "a/bad.txt"), 2);
    assert_eq!(server.list_keys("bkt"), ["a/good.txt"]);

    // Copies and multipart uploads to matching keys fail too.
    let e = c
        .copy_object()
        .bucket("bkt")
        .key("bad2")
        .copy_source("bkt/a/good.txt")
        .send()
        .await;
    assert_eq!(e.unwrap_err().code(), Some("AccessDenied"));
    let e = c
        .create_multipart_upload()
        .bucket("bkt")
        .key("x/bad")
        .send()
        .await;
    assert_eq!(e.unwrap_err().code(), Some("AccessDenied"));
    // Reads of matching keys are not affected.
    c.head_object()
        .bucket("bkt")
        .key("a/good.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(server.count("CopyObject"), 1);

    server.clear_rules();
    put(&c, "bkt", "a/bad.txt", b"1").await.unwrap();
    assert_eq!(server.list_keys("bkt"), ["a/bad.txt", "a/good.txt"]);

    // A counted permanent rule fails only the first n requests.
    server.fail_key("once", Some(1), false);
    assert_eq!(put(&c, "bkt", "once", b"1").await, Err("AccessDenied".to_owned()));
    put(&c, "bkt", "once", b"1").await.unwrap();
}

#[tokio::test]
async fn failing_upload_part_with_large_body_reports_the_error() {
    // The server reads the whole body before answering, so a rejected
    // 5 MiB part gives the client a clean 503 rather than a broken pipe.
    let server = S3Server::start();
    server.create_bucket("bkt");
    let c = client(&server);
    let up = c
        .create_multipart_upload()
        .bucket("bkt")
        .key("big")
        .send()
        .await
        .unwrap();
    server.fail_key("big", Some(1), true);
    let r = c
        .upload_part()
        .bucket("bkt")
        .key("big")
        .upload_id(up.upload_id().unwrap())
        .part_number(1)
        .body(ByteStream::from(pattern(5 * MIB, 3)))
        .send()
        .await
        .unwrap();
    assert!(r.e_tag().is_some());
    let statuses: Vec<u16> = server
        .requests()
        .iter()
        .filter(|r| r.op == "UploadPart")
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [503, 200]);
}

#[tokio::test]
async fn wrong_credentials_get_403_and_are_logged() {
    let server = S3Server::start();
    server.create_bucket("bkt");
    let c = client_with(&server, "not-the-secret");

    let e = c.head_bucket().bucket("bkt").send().await.unwrap_err();
    assert_eq!(e.raw_response().unwrap().status().as_u16(), 403);
    let e = put(&c, "bkt", "k", b"x").await.unwrap_err();
    assert_eq!(e, "SignatureDoesNotMatch");
    assert!(server.list_keys("bkt").is_empty());

    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert!(reqs.iter().all(|r| r.status == 403 && !r.op_resolved));
    // Rejected before routing, the operation is guessed from the request.
    assert_eq!(server.ops(), ["HeadBucket", "PutObject k"]);
}
