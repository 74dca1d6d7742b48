//! The binary's edge: everything between the command line and the engines.
//! Nothing outside `cli/` imports it.
//!
//! - [`args`]: the clap types (what the command line accepts), with the
//!   value parsers of `values.rs`;
//! - `options.rs`: the clap types checked as a whole and turned, once,
//!   into the engines' option structs (as ripgrep's `HiArgs`);
//! - `commands/`: one file per command (run the engine, print, pick the
//!   exit code); `output.rs`: tables, summaries and JSON on stdout, where a
//!   closed pipe ends the printing quietly; `browse_output.rs`: the lines
//!   and JSON of `snapshots diff`, `ls` and `find`, as they stream;
//!   `progress.rs`: the progress renderers; `table.rs`: tables whose
//!   columns fit their values;
//! - [`startup`]: parsing (clap's errors and help) and logging;
//! - [`exit`]: the exit codes and the one place that maps errors to them;
//! - `shell.rs`: the interactive shell; `sets.rs`: named sets;
//!   `generate.rs`: completions and man pages.

pub mod args;
mod browse_output;
mod commands;
pub mod exit;
mod generate;
mod help_text;
mod interrupt;
mod json;
mod lock;
pub(crate) mod matches;
mod monitor;
mod options;
mod output;
mod progress;
mod requests;
pub(crate) mod sets;
mod shell;
pub mod startup;
mod table;
mod values;
mod verify_output;

use std::path::PathBuf;

use anyhow::Context;

pub use exit::Exit;

use crate::cli::args::{Cli, Command, StateAction};

/// Runs a parsed command line and returns its exit code, having printed
/// any error (the codes are chosen in [`exit`]).
pub fn main(cli: Cli) -> Exit {
    let outcome = run(cli).and_then(|exit| match output::flush() {
        // A closed pipe seen only at the last flush is no error either,
        // and does not change the outcome of a run.
        Ok(()) | Err(output::OutputError::Closed) => Ok(exit),
        Err(e) => Err(e.into()),
    });
    exit::report(outcome)
}

/// Runs a parsed command line. `completions` and `man` only print what
/// the clap definitions say, so they run before (and without) the state
/// file and the async runtime.
///
/// # Errors
/// Whatever the command could not do; [`exit::report`] maps it to a code.
pub(crate) fn run(cli: Cli) -> anyhow::Result<Exit> {
    let Cli {
        quiet,
        verbose,
        state,
        command,
    } = cli;
    // Everything but completions, man and the shell needs the runtime,
    // and a state file path (found first, so that a missing state
    // directory is reported the same way by every command).
    let setup = || -> anyhow::Result<(tokio::runtime::Runtime, PathBuf)> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        Ok((runtime, options::state_path(state.clone())?))
    };
    match command {
        Command::Completions(args) => commands::generate::completions(args.shell),
        Command::Man(args) => commands::generate::man(args.all, quiet),
        Command::Shell(args) => shell::run(shell::ShellContext {
            state: state.clone(),
            quiet,
            verbose,
            s3: args,
        }),
        Command::Backup(args) => {
            let watch = monitor::Watch::new("backup", &args.monitor);
            watched(watch, state, |runtime, path, cancel, watch| {
                runtime.block_on(commands::backup::run(*args, path, quiet, verbose, cancel, watch))
            })
        }
        Command::Restore(args) => {
            let runtime = setup()?.0;
            let signals = interrupt::Interrupts::listen(&runtime).context("catching Ctrl-C")?;
            signals.outcome(runtime.block_on(commands::restore::run(args, quiet, verbose, signals.cancel())))
        }
        Command::Snapshots(args) => setup()?.0.block_on(commands::snapshots::run(args)),
        Command::Verify(args) => {
            let watch = monitor::Watch::new("verify", &args.monitor);
            watched(watch, state, |runtime, path, cancel, watch| {
                runtime.block_on(commands::verify::run(args, path, quiet, cancel, watch))
            })
        }
        Command::State(action) => {
            let (runtime, path) = setup()?;
            runtime.block_on(commands::state::run(action, &path))
        }
        Command::Sets { json } => {
            let (runtime, path) = setup()?;
            runtime.block_on(commands::state::run(StateAction::Sets { json }, &path))
        }
    }
}

/// Runs a command whose end `watch` reports (backup, verify: see
/// [`monitor`]): with Ctrl-C and SIGTERM caught for the whole of it, the
/// metrics file and hook included. A signal during the hook stops the
/// hook when none came before; after one that stopped the run, the next
/// exits at once, as always.
///
/// # Errors
/// Starting the runtime or the signal handlers; the command's own errors
/// are printed and turned into its exit code by [`monitor::Watch::finish`].
fn watched(
    mut watch: monitor::Watch,
    state: Option<PathBuf>,
    run: impl FnOnce(
        &tokio::runtime::Runtime,
        &std::path::Path,
        crate::cancel::Cancel,
        &mut monitor::Watch,
    ) -> anyhow::Result<Exit>,
) -> anyhow::Result<Exit> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let signals = interrupt::Interrupts::listen(&runtime).context("catching Ctrl-C")?;
    let outcome = options::state_path(state)
        .and_then(|path| signals.outcome(run(&runtime, &path, signals.cancel(), &mut watch)));
    let stop = Some(signals.cancel()).filter(|c| !c.is_cancelled());
    runtime.block_on(watch.finish(outcome, stop))
}
