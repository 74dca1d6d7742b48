//! One file per command: each takes its clap arguments, runs the engine
//! with the options [`crate::cli::options`] built, prints through
//! [`crate::cli::output`] and says which [`crate::cli::Exit`] fits.

pub(crate) mod backup;
pub(crate) mod browse;
pub(crate) mod generate;
pub(crate) mod restore;
pub(crate) mod snapshots;
pub(crate) mod state;
pub(crate) mod verify;

use std::sync::Arc;

use anyhow::{Context, bail};

use crate::cli::args::S3Args;
use crate::store::{self, ObjectStore};
use crate::target::Target;

/// Opens the store of `target` and checks that it exists (a bucket, or a
/// local directory), for the commands that only read what is there.
///
/// # Errors
/// When the store cannot be reached, or does not exist.
pub(crate) async fn open_existing_store(target: &Target, s3: S3Args) -> anyhow::Result<Arc<dyn ObjectStore>> {
    let text = target.to_string();
    let store = store::open(target, &s3.into())
        .await
        .with_context(|| text.clone())?;
    if !store.exists().await.with_context(|| text.clone())? {
        bail!("{text} does not exist");
    }
    Ok(store)
}
