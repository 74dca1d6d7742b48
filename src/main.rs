//! The `s3backup` binary: parse, set up logging, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use s3backup::app::{self, Exit};
use s3backup::cli::Cli;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::try_parse().unwrap_or_else(|e| usage_error(e));
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    // Other crates (the AWS SDK) speak up only when asked: the tool reports their errors itself.
    let others = match (cli.quiet, cli.verbose) {
        (true, _) | (false, 0) => "error",
        (false, 1) => "warn",
        (false, _) => "info",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("s3backup={level},{others}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour())
        .without_time()
        .with_target(false)
        .init();
    let code = match app::run(cli) {
        Ok(exit) => exit,
        Err(err) => {
            eprintln!("error: {err:#}");
            Exit::Error
        }
    };
    ExitCode::from(code as u8)
}

/// Whether stderr gets colours (a terminal, and `NO_COLOR` unset).
fn colour() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr())
}

/// Prints a command-line error and exits with clap's code (2 for usage
/// errors). The problem goes on the first line, whole: clap puts some of
/// it on the lines below (`the following required arguments were not
/// provided:` and then the arguments), so that first paragraph is joined
/// into one line. Usage and hints follow unchanged; help and version
/// requests are printed as clap prints them.
fn usage_error(e: clap::Error) -> ! {
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let styled = e.render();
    let text = if colour() {
        styled.ansi().to_string()
    } else {
        styled.to_string()
    };
    let (problem, rest) = text.split_once("\n\n").unwrap_or((text.as_str(), ""));
    let problem: Vec<&str> = problem.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    eprintln!("{}", problem.join(" "));
    if !rest.is_empty() {
        eprint!("\n{rest}");
    }
    std::process::exit(e.exit_code());
}
