//! Ctrl-C and SIGTERM at the binary's edge, for `backup` and `restore`.
//!
//! The first signal prints one line and cancels the run's [`Cancel`]: the
//! engine starts nothing new, drops what is in flight, records what it
//! finished and returns [`Interrupted`]; the command then exits 130 after
//! SIGINT, 143 after SIGTERM (128 + the signal's number, as a shell
//! reports a process killed by it). A second signal exits at once, with
//! the first one's code, whatever is still running: what that leaves (a
//! temporary file, an upload not journaled) is what a killed run leaves,
//! and the next run cleans it up. A run that finished before it could
//! stop keeps its own outcome. On Windows only Ctrl-C is caught.

use std::sync::{Arc, OnceLock};

use crate::backup::BackupError;
use crate::cancel::{Cancel, Interrupted};
use crate::cli::Exit;
use crate::restore::RestoreError;

/// The signals that stop a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM (`kill`, a service manager stopping the job).
    #[cfg_attr(not(unix), allow(dead_code))]
    Terminate,
}

impl Signal {
    fn exit(self) -> Exit {
        match self {
            Signal::Interrupt => Exit::Interrupted,
            Signal::Terminate => Exit::Terminated,
        }
    }

    /// How the signal is sent again, for the first signal's line.
    fn again(self) -> &'static str {
        match self {
            Signal::Interrupt => "Ctrl-C",
            Signal::Terminate => "SIGTERM",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "Ctrl-C (SIGINT)",
            Signal::Terminate => "SIGTERM",
        }
    }
}

/// Listens for the stopping signals for one command; see the module doc.
pub struct Interrupts {
    cancel: Cancel,
    received: Arc<OnceLock<Signal>>,
}

impl Interrupts {
    /// Starts listening on `runtime`. The handlers are in place when this
    /// returns, so a signal that comes once the command runs is never missed.
    ///
    /// # Errors
    /// When the system refuses the signal handlers.
    pub fn listen(runtime: &tokio::runtime::Runtime) -> std::io::Result<Self> {
        let _entered = runtime.enter();
        let mut listener = Listener::new()?;
        let cancel = Cancel::new();
        let received = Arc::new(OnceLock::new());
        let (token, first) = (cancel.clone(), received.clone());
        runtime.spawn(async move {
            let signal = listener.next().await;
            let _ = first.set(signal);
            crate::cli::output::errln!(
                "interrupted by {}: stopping cleanly ({} again stops at once)",
                signal.name(),
                signal.again()
            );
            token.cancel();
            listener.next().await;
            crate::cli::output::errln!("interrupted again: stopping now");
            crate::cli::monitor::stop_hook();
            std::process::exit(signal.exit() as i32);
        });
        Ok(Self { cancel, received })
    }

    /// The token the command's engine checks.
    pub fn cancel(&self) -> Cancel {
        self.cancel.clone()
    }

    /// The command's outcome: as `result` says, unless a signal stopped
    /// it, then its exit code (an error other than [`Interrupted`] is
    /// still printed).
    ///
    /// # Errors
    /// `result`'s, when no signal came.
    pub fn outcome(&self, result: anyhow::Result<Exit>) -> anyhow::Result<Exit> {
        let Some(signal) = self.received.get() else {
            return result;
        };
        match result {
            Ok(exit) => Ok(exit),
            Err(e) => {
                if !is_interrupted(&e) {
                    crate::cli::output::errln!("error: {e:#}");
                }
                Ok(signal.exit())
            }
        }
    }
}

/// Whether the engines said they stopped because they were cancelled.
fn is_interrupted(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Interrupted>().is_some()
        || matches!(e.downcast_ref::<BackupError>(), Some(BackupError::Interrupted(_)))
        || matches!(
            e.downcast_ref::<RestoreError>(),
            Some(RestoreError::Interrupted(_))
        )
}

/// The registered signal streams.
struct Listener {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(not(unix))]
    ctrl_c: tokio::signal::windows::CtrlC,
}

impl Listener {
    #[cfg(unix)]
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    #[cfg(not(unix))]
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            ctrl_c: tokio::signal::windows::ctrl_c()?,
        })
    }

    /// The next signal.
    #[cfg(unix)]
    async fn next(&mut self) -> Signal {
        // `None` (the runtime is going away) is no signal.
        tokio::select! {
            Some(()) = self.interrupt.recv() => Signal::Interrupt,
            Some(()) = self.terminate.recv() => Signal::Terminate,
            else => std::future::pending().await,
        }
    }

    /// The next signal.
    #[cfg(not(unix))]
    async fn next(&mut self) -> Signal {
        match self.ctrl_c.recv().await {
            Some(()) => Signal::Interrupt,
            // The runtime is going away: no signal.
            None => std::future::pending().await,
        }
    }
}
