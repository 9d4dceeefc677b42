//! The `roster-sync` binary: parse the command line, set up logging and signal
//! handling, run, and turn the result into the exit code.

use std::process::ExitCode;

use clap::Parser;
use roster_sync::cli::Cli;
use roster_sync::shutdown::Shutdown;

fn main() -> ExitCode {
    let cli = Cli::parse();
    roster_sync::logging::init(cli.options.log_format);
    let shutdown = match Shutdown::on_signals() {
        Ok(shutdown) => shutdown,
        Err(error) => {
            log::error!("cannot install the SIGTERM handler: {error}");
            return ExitCode::from(2);
        }
    };
    ExitCode::from(roster_sync::run(&cli, &shutdown))
}
