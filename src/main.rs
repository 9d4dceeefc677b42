//! The `roster-sync` binary: parse the command line, set up logging and signal
//! handling, run, and turn the result into the exit code.

use std::process::ExitCode;

use roster_sync::exit::Exit;
use roster_sync::shutdown::Shutdown;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = roster_sync::cli::parse(args.clone()).unwrap_or_else(|error| {
        // The CronJob's report, metrics and termination log must say the run failed.
        roster_sync::reject_command_line(&args, &error);
        error.exit()
    });
    roster_sync::logging::init(cli.command.log_format());
    let shutdown = match Shutdown::on_signals() {
        Ok(shutdown) => shutdown,
        Err(error) => {
            log::error!("cannot install the SIGTERM handler: {error}");
            return Exit::Config.into();
        }
    };
    roster_sync::run(&cli, &shutdown).into()
}
