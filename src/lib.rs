//! s3backup: incremental backups of a local directory to Amazon S3, any
//! S3-compatible store, or a local directory, decided locally from a SQLite
//! state file and described in the bucket by per-run manifests.
//!
//! The binary (`main.rs`) is a thin shell over [`cli::main`]; the engines
//! ([`backup`], [`restore`]) see plain option structs and a storage trait ([`store`]).
#![warn(missing_docs)]
#![warn(clippy::missing_errors_doc)]

pub mod backup;
pub mod browse;
pub mod cancel;
pub mod cli;
pub mod cost;
pub mod fs;
pub mod history;
pub mod lock;
pub mod manifest;
pub mod plan;
pub mod progress;
pub mod report;
pub mod restore;
pub mod retention;
pub mod snapshots;
pub mod state;
pub mod store;
pub mod target;
pub mod verify;
