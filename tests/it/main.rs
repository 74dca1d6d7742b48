//! The one integration-test binary of s3backup (one binary keeps link time
//! down). `server` is an in-process S3 server; `common` runs the real
//! `s3backup` binary with a clean environment; the other modules are tests.

mod server;
mod server_selftest;
