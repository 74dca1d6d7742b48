//! Exit codes, and the one place that decides which one an error gets.
//!
//! The codes are documented in `--help` and the README: 0 ok, 1 error,
//! 2 usage (the command line is wrong), 3 partial (some files failed). A
//! command returns `Ok(Exit)` for the outcomes it knows, or an error;
//! [`report`] prints that error and picks its code by its type, never by
//! its text: a [`UsageError`] (or a named set asked for without both
//! SOURCE and TARGET, a saved set given a second name, a new set named
//! with digits only, an invalid pattern in an `--exclude-from` file) is 2, a closed stdout ([`OutputError::Closed`]) is
//! 0 and prints nothing, as ripgrep does for `rg … | head`, anything else 1.
//! A command line clap refuses is 2 ([`of_clap`]; help and version are 0).

use crate::cli::output::OutputError;
use crate::cli::sets::SetError;
use crate::fs::filter::FilterError;

/// The documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything worked.
    Ok = 0,
    /// The run could not be done.
    Error = 1,
    /// The command line was wrong.
    Usage = 2,
    /// Some files failed; the rest were done.
    Partial = 3,
    /// Stopped by Ctrl-C (SIGINT): 128 + 2.
    Interrupted = 130,
    /// Stopped by SIGTERM: 128 + 15.
    Terminated = 143,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A command line that clap accepts but that cannot be run as given (a
/// combination of flags, or a missing SOURCE/TARGET without `--set`): exit
/// 2, with the message on one line naming the flag.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub(crate) String);

/// Fails with a [`UsageError`] built like `format!`.
macro_rules! usage {
    ($($arg:tt)*) => {
        return Err($crate::cli::exit::UsageError(format!($($arg)*)).into())
    };
}
pub(crate) use usage;

/// The exit code of an error, by its type.
fn code_of(err: &anyhow::Error) -> Exit {
    if matches!(err.downcast_ref::<OutputError>(), Some(OutputError::Closed)) {
        Exit::Ok
    } else if err.downcast_ref::<UsageError>().is_some()
        || matches!(
            err.downcast_ref::<FilterError>(),
            Some(FilterError::ListPattern { .. })
        )
        || matches!(
            err.downcast_ref::<SetError>(),
            Some(SetError::Half(_) | SetError::AlreadySaved { .. } | SetError::DigitsName(_))
        )
    {
        Exit::Usage
    } else {
        Exit::Error
    }
}

/// The exit code of a command line clap refused: 0 for `--help` and
/// `--version`, 2 (usage) for everything else.
pub(crate) fn of_clap(e: &clap::Error) -> Exit {
    if e.exit_code() == 0 { Exit::Ok } else { Exit::Usage }
}

/// The outcome of a command as an exit code: its own code when it ran, or
/// the code of its error, printed on stderr with its context chain as one
/// `error: …` line (nothing for a closed stdout).
pub(crate) fn report(outcome: anyhow::Result<Exit>) -> Exit {
    match outcome {
        Ok(exit) => exit,
        Err(err) => {
            let code = code_of(&err);
            if code != Exit::Ok {
                crate::cli::output::errln!("error: {err:#}");
            }
            code
        }
    }
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    #[test]
    fn codes_follow_the_type_through_context() {
        let usage: anyhow::Error = UsageError("--x needs --y".into()).into();
        assert_eq!(code_of(&usage.context("backup")), Exit::Usage);
        let closed = Err::<(), _>(OutputError::Closed).context("printing");
        assert_eq!(code_of(&closed.unwrap_err()), Exit::Ok);
        let other = anyhow::anyhow!("--x needs --y (only text)");
        assert_eq!(code_of(&other), Exit::Error);
        assert_eq!(code_of(&SetError::Half("docs".into()).into()), Exit::Usage);
    }
}
