//! s3backup: incremental backups of a local directory to Amazon S3, any
//! S3-compatible store, or a local directory, decided locally from a SQLite
//! state file and described in the bucket by per-run manifests.
//!
//! The binary (`main.rs`) is a thin shell over [`app::run`]; the engines
//! ([`backup`], [`restore`]) see plain option structs and a storage trait ([`store`]).
#![warn(missing_docs)]

pub mod app;
pub mod backup;
pub mod cli;
pub mod confine;
pub mod dest;
pub mod download;
pub mod filter;
/// Completion scripts and man pages generated from [`cli`].
pub mod generate;
pub mod hash;
pub mod inspect;
pub mod manifest;
pub mod names;
pub mod own;
pub mod plan;
pub mod progress;
pub mod rebuild;
pub mod restore;
pub mod safe_path;
pub mod scan;
pub mod sets;
pub mod shell;
pub mod snapshots;
pub mod spare;
pub mod state;
pub mod store;
pub mod target;
pub mod transfer;
pub mod verify;
