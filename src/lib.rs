//! roster-sync: fetch course rosters from UC Berkeley's SIS and HR APIs, write them
//! where a JupyterHub reads them, and record every change in a git audit repository,
//! without ever letting a failed, partial or suspicious fetch overwrite a good roster.
//!
//! The job's data flows one way: [`config`] → [`fetch`] (over [`source`]) → [`plan`]
//! (pure) → [`store`] and [`audit`] → [`report`]. [`job`] strings them together;
//! [`inspect`] holds the read-only commands.

pub mod audit;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod fetch;
pub mod hub;
pub mod inspect;
pub mod job;
pub mod logging;
pub mod observe;
pub mod plan;
pub mod report;
pub mod roster;
pub mod shutdown;
pub mod source;
pub mod store;

use std::path::Path;

use cli::{Cli, Command};
use config::Settings;
use shutdown::Shutdown;

/// Runs the command line's command and returns the process exit code.
pub fn run(cli: &Cli, shutdown: &Shutdown) -> u8 {
    let approve_env = std::env::var("ROSTER_SYNC_APPROVE").ok();
    let settings = Settings::from_options(&cli.options, approve_env.as_deref());
    let mut stdout = std::io::stdout().lock();
    let command = cli.selected_command();
    let settings = match (command.clone(), settings) {
        (Command::Sync | Command::Plan, settings) => settings,
        (_, Err(error)) => {
            log::error!("{error}");
            return report::Stop::Config.exit_code();
        }
        (Command::Check, Ok(settings)) => return inspect::check(&settings, &mut stdout),
        (Command::Verify, Ok(settings)) => return inspect::verify(&settings, &mut stdout),
        (Command::History(args), Ok(settings)) => {
            return inspect::history(&settings, &args, &mut stdout);
        }
    };
    drop(stdout);
    let dry_run = command == Command::Plan;
    let report = match settings {
        Ok(mut settings) => {
            settings.dry_run |= dry_run;
            job::run(settings, shutdown)
        }
        Err(error) => job::rejected(error, dry_run || cli.options.dry_run),
    };
    if let Some(path) = &cli.options.report {
        write_report(&report, path);
    }
    let sinks = observe::Sinks {
        metrics_file: cli.options.metrics_file.clone(),
        pushgateway: cli.options.pushgateway.clone(),
        termination_log: Some(cli.options.termination_log.clone()),
    };
    observe::publish(&report, &sinks);
    report.exit_code
}

fn write_report(report: &report::Report, path: &Path) {
    if let Err(error) = report.write_to(path) {
        log::error!("cannot write the report to {}: {error}", path.display());
    }
}
