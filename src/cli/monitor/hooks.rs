//! `--on-success` / `--on-failure`: the command runs with the shell
//! (`sh -c CMD`; on Windows `cmd /C CMD`, the command line passed as
//! typed), with the run's outcome in `S3BACKUP_*` environment variables on
//! top of s3backup's own environment, stdin closed, and its output on
//! s3backup's stderr, so that `--json` on stdout stays one JSON object.
//! s3backup waits for it; Ctrl-C or SIGTERM while it runs stops it (see
//! `cli::watched`). On Unix the hook runs in a process group of its own,
//! and stopping it signals the whole group (the shell and what it
//! started: a `sleep` or a `curl` left behind would outlive the job); a
//! second signal, which exits s3backup at once, stops the group first
//! ([`stop_running`]). On Windows the shell alone is stopped.

use std::process::Stdio;
use std::sync::atomic::{AtomicI32, Ordering};

use tokio::process::Command;

/// Why a hook did not run cleanly (the words follow "the --on-… command").
#[derive(Debug, thiserror::Error)]
pub(super) enum HookError {
    /// The shell could not be started.
    #[error("could not be started: {0}")]
    Spawn(std::io::Error),
    /// It ran and failed.
    #[error("failed ({0})")]
    Failed(std::process::ExitStatus),
    /// A signal stopped it.
    #[error("was stopped by a signal before it finished")]
    Stopped,
}

/// The process group of the hook running now (0 when none runs).
static RUNNING: AtomicI32 = AtomicI32::new(0);

/// Signals the running hook's process group (if any) to stop: called on
/// the way out of a second Ctrl-C or SIGTERM, and when the first stops a
/// hook.
pub(crate) fn stop_running() {
    #[cfg(unix)]
    {
        let group = RUNNING.swap(0, Ordering::SeqCst);
        if let Some(pid) = rustix::process::Pid::from_raw(group) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::TERM);
        }
    }
}

/// Runs `cmd` with the shell and `env` added to the environment, and
/// waits for it, or until `stop` is cancelled (the shell is then killed).
///
/// # Errors
/// [`HookError::Spawn`] when the shell cannot be started,
/// [`HookError::Failed`] when the command exits with anything but 0,
/// [`HookError::Stopped`] when `stop` came first.
pub(super) async fn run(
    cmd: &str,
    env: &[(String, String)],
    stop: Option<&crate::cancel::Cancel>,
) -> Result<(), HookError> {
    // What s3backup printed comes before what the hook prints.
    let _ = crate::cli::output::flush();
    let mut shell = shell(cmd);
    shell
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    // Not the command line itself: it may hold a health-check token.
    tracing::debug!("running a hook with {} S3BACKUP_* variables", env.len());
    #[cfg(unix)]
    shell.process_group(0);
    let mut child = shell.spawn().map_err(HookError::Spawn)?;
    // The group's id is the shell's pid (process_group(0)).
    let group = child.id().and_then(|id| i32::try_from(id).ok()).unwrap_or(0);
    RUNNING.store(group, Ordering::SeqCst);
    let waited = match stop {
        Some(stop) => stop.run(child.wait()).await,
        None => Ok(child.wait().await),
    };
    if waited.is_err() {
        stop_running();
    }
    RUNNING.store(0, Ordering::SeqCst);
    let status = waited
        .map_err(|_| HookError::Stopped)?
        .map_err(HookError::Spawn)?;
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
    let mut c = Command::new("cmd");
    c.arg("/C").raw_arg(cmd);
    c
}
