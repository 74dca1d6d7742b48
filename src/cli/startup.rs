//! Starting up: reading the command line (clap's help and errors printed
//! as documented: one-line problem, exit 2, no colours off a terminal) and
//! setting up logging from `-q`/`-v`/`RUST_LOG`.

use std::io::{IsTerminal, Write};

use clap::error::ErrorKind;
use clap::{ColorChoice, CommandFactory};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::cli::args::Cli;

/// The handle that changes the log filter after start-up: the shell's
/// `-v` typed on one line raises the level for that line only.
static FILTER: std::sync::OnceLock<reload::Handle<EnvFilter, Registry>> = std::sync::OnceLock::new();

/// The filter for `-q`/`-v`: `-q` errors only, none `warn`, `-v` info,
/// `-vv` debug; `RUST_LOG` replaces it.
fn filter(quiet: bool, verbose: u8) -> EnvFilter {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    // Other crates (the AWS SDK) speak up only when asked: the tool reports their errors itself.
    let others = match (quiet, verbose) {
        (true, _) | (false, 0) => "error",
        (false, 1) => "warn",
        (false, _) => "info",
    };
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("s3backup={level},{others}")))
}

/// Sets up logging on stderr, at the level of [`filter`].
pub fn init_logging(quiet: bool, verbose: u8) {
    let (layer, handle) = reload::Layer::new(filter(quiet, verbose));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour(&std::io::stderr()))
        .without_time()
        .with_target(false);
    if tracing_subscriber::registry()
        .with(layer)
        .with(fmt)
        .try_init()
        .is_ok()
    {
        let _ = FILTER.set(handle);
    }
}

/// Sets the log level to that of `-q`/`-v` (see [`filter`]), for the
/// shell's lines; nothing when logging was not set up here.
pub(crate) fn set_log_level(quiet: bool, verbose: u8) {
    if let Some(handle) = FILTER.get() {
        let _ = handle.reload(filter(quiet, verbose));
    }
}

/// Parses the command line. clap is told never to colour when `NO_COLOR`
/// is set; either way its help and errors are printed by
/// [`usage_error`], which colours them only for a terminal.
pub fn parse() -> Cli {
    let choice = if no_color() {
        ColorChoice::Never
    } else {
        ColorChoice::Auto
    };
    Cli::command()
        .color(choice)
        .try_get_matches()
        .and_then(crate::cli::matches::parse)
        .unwrap_or_else(|e| usage_error(e))
}

/// Whether `NO_COLOR` asks for no colours (set and not empty, as
/// no-color.org defines it).
fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Whether text for `stream` gets colours: it is a terminal, and `NO_COLOR` is unset.
fn colour(stream: &impl IsTerminal) -> bool {
    !no_color() && stream.is_terminal()
}

/// Prints a command-line error and exits with its code (2 for usage
/// errors). The problem goes on the first line, whole: clap puts some of
/// it on the lines below (`the following required arguments were not
/// provided:` and then the arguments), so that first paragraph is joined
/// into one line. Usage and hints follow unchanged. Help and version
/// requests are printed as clap renders them, on stdout (help shown for a
/// missing subcommand goes to stderr, with code 2). Colours only when the
/// stream written to is a terminal and `NO_COLOR` is unset, whatever
/// `CLICOLOR_FORCE` says; a closed pipe (`s3backup --help | head -1`) is
/// not an error.
fn usage_error(e: clap::Error) -> ! {
    let code = i32::from(crate::cli::exit::of_clap(&e).code());
    let styled = e.render();
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let write = |out: &mut dyn Write, ansi: bool| {
            let _ = if ansi {
                write!(out, "{}", styled.ansi())
            } else {
                write!(out, "{styled}")
            };
            let _ = out.flush();
        };
        if code == 0 {
            write(&mut std::io::stdout().lock(), colour(&std::io::stdout()));
        } else {
            write(&mut std::io::stderr().lock(), colour(&std::io::stderr()));
        }
        std::process::exit(code);
    }
    let text = if colour(&std::io::stderr()) {
        styled.ansi().to_string()
    } else {
        styled.to_string()
    };
    let (problem, rest) = text.split_once("\n\n").unwrap_or((text.as_str(), ""));
    let problem: Vec<&str> = problem.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    crate::cli::output::errln!("{}", problem.join(" "));
    if !rest.is_empty() {
        crate::cli::output::errprint!("\n{rest}");
    }
    std::process::exit(code);
}
