//! `--on-success` / `--on-failure`: the command runs with the shell
//! (`sh -c CMD`; on Windows `cmd /C CMD`, the command line passed as
//! typed), with the run's outcome in `S3BACKUP_*` environment variables on
//! top of s3backup's own environment, stdin closed, and its output on
//! s3backup's stderr, so that `--json` on stdout stays one JSON object.
//! s3backup waits for it.

use std::process::{Command, Stdio};

/// Why a hook did not run cleanly (the words follow "the --on-… command").
#[derive(Debug, thiserror::Error)]
pub(super) enum HookError {
    /// The shell could not be started.
    #[error("could not be started: {0}")]
    Spawn(std::io::Error),
    /// It ran and failed.
    #[error("failed ({0})")]
    Failed(std::process::ExitStatus),
}

/// Runs `cmd` with the shell and `env` added to the environment, and
/// waits for it.
///
/// # Errors
/// [`HookError::Spawn`] when the shell cannot be started,
/// [`HookError::Failed`] when the command exits with anything but 0.
pub(super) fn run(cmd: &str, env: &[(String, String)]) -> Result<(), HookError> {
    // What s3backup printed comes before what the hook prints.
    let _ = crate::cli::output::flush();
    let mut shell = shell(cmd);
    shell
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::inherit());
    // Not the command line itself: it may hold a health-check token.
    tracing::debug!("running a hook with {} S3BACKUP_* variables", env.len());
    let status = shell.status().map_err(HookError::Spawn)?;
    if status.success() {
        Ok(())
    } else {
        Err(HookError::Failed(status))
    }
}

#[cfg(not(windows))]
fn shell(cmd: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(cmd);
    c
}

#[cfg(windows)]
fn shell(cmd: &str) -> Command {
    use std::os::windows::process::CommandExt;
    let mut c = Command::new("cmd");
    c.arg("/C").raw_arg(cmd);
    c
}
