//! `s3backup completions` and `s3backup man`: print (or write) what
//! [`crate::cli::generate`] renders from the clap definitions.

use std::path::PathBuf;

use crate::cli::Exit;
use crate::cli::generate;
use crate::cli::output::{self, outln};

/// `s3backup completions SHELL`: the script on stdout.
///
/// # Errors
/// Stdout cannot be written (a closed pipe ends it quietly).
pub(crate) fn completions(shell: clap_complete::Shell) -> anyhow::Result<Exit> {
    output::write_bytes(&generate::completions(shell))?;
    Ok(Exit::Ok)
}

/// `s3backup man`: the top-level page on stdout, or every page into a directory.
///
/// # Errors
/// The pages cannot be rendered or written.
pub(crate) fn man(all: Option<PathBuf>, quiet: bool) -> anyhow::Result<Exit> {
    let Some(dir) = all else {
        output::write_bytes(&generate::man_page()?)?;
        return Ok(Exit::Ok);
    };
    let written = generate::man_pages_to(&dir)?;
    if !quiet {
        outln!("wrote {} man pages to {}", written.len(), dir.display())?;
    }
    Ok(Exit::Ok)
}
