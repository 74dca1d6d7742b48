//! The `s3backup` binary: parse, set up logging, run, exit with the code
//! the run chose (see `s3backup::cli::exit`).

use std::process::ExitCode;

use s3backup::cli;

fn main() -> ExitCode {
    let cli = cli::startup::parse();
    cli::startup::init_logging(cli.quiet, cli.verbose);
    ExitCode::from(cli::main(cli).code())
}
