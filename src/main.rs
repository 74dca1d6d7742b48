//! The `s3backup` binary: parse, set up logging, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use s3backup::app::{self, Exit};
use s3backup::cli::Cli;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        .with_ansi(
            std::env::var_os("NO_COLOR").is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        )
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
