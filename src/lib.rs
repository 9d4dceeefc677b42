//! roster-sync: fetch course rosters from UC Berkeley's SIS and HR APIs, write them
//! where a JupyterHub reads them, and record every change in a git audit repository,
//! without ever letting a failed, partial or suspicious fetch overwrite a good roster.
//!
//! The job's data flows one way: [`config`] → [`fetch`] (over [`source`]) → [`plan`]
//! (pure, with [`guard`]) → [`store`] and [`audit`] → [`report`] and [`observe`]. [`job`]
//! strings them together; [`inspect`] holds the read-only commands. The domain types live
//! in leaves that depend on nothing else of the crate but each other: [`course`],
//! [`roster`], [`tree`], [`guard`], [`exit`].

pub mod ahead;
pub mod audit;
pub mod canvas;
pub mod cli;
pub mod config;
pub mod course;
pub mod exit;
pub mod fetch;
pub mod guard;
pub mod history;
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
pub mod tree;

use cli::{Cli, Command, JobOptions, RunOutputs};
use config::Settings;
use exit::Exit;
use job::Abort;
use report::RunClock;
use shutdown::Shutdown;

/// Runs the command line's command and returns how it ended.
pub fn run(cli: &Cli, shutdown: &Shutdown) -> Exit {
    // libgit2's process-wide options, before any repository is opened; a failure is
    // reported by the first command that opens one.
    let _ = audit::isolate();
    let approve_env = std::env::var(cli::APPROVE_ENV).ok();
    let approve_env = approve_env.as_deref();
    let mut stdout = std::io::stdout().lock();
    match &cli.command {
        Command::Sync(args) => run_job(&args.job, args.dry_run, &args.run, approve_env, shutdown),
        Command::Plan(args) => run_job(&args.job, true, &args.run, approve_env, shutdown),
        Command::Check(args) => {
            inspect::check(&args.job, args.online, approve_env, shutdown, &mut stdout)
        }
        Command::Verify(args) => inspect::verify(
            &args.output_dir.output_dir,
            &args.audit_repo.audit_repo,
            &mut stdout,
        ),
        Command::History(args) => inspect::history(args, &mut stdout),
        Command::Show(args) => inspect::show(args, &mut stdout),
    }
}

/// `sync` or `plan`: the job, then its report wherever it was asked for.
fn run_job(
    options: &JobOptions,
    dry_run: bool,
    outputs: &RunOutputs,
    approve_env: Option<&str>,
    shutdown: &Shutdown,
) -> Exit {
    let report = match Settings::from_options(options, dry_run, approve_env) {
        Ok(settings) => job::run(&settings, shutdown),
        Err(error) => job::rejected(&RunClock::start(), Abort::Config(error), dry_run),
    };
    publish(&report, outputs);
    report.exit
}

/// The report of a `sync` or `plan` whose command line clap rejected (exit 2), written
/// wherever the line or the environment asks for it; nothing for other commands, help
/// or version. Returns whether a report was made.
pub fn reject_command_line(args: &[std::ffi::OsString], error: &clap::Error) -> bool {
    use clap::error::ErrorKind;
    if !error.use_stderr()
        || matches!(
            error.kind(),
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
        )
    {
        return false;
    }
    let Some((outputs, dry_run)) =
        cli::rejected_outputs(args.to_vec(), |name| std::env::var_os(name))
    else {
        return false;
    };
    let abort = Abort::Config(config::ConfigError::Usage(cli::rejection_summary(error)));
    let report = job::rejected(&RunClock::start(), abort, dry_run);
    publish(&report, &outputs);
    true
}

/// Writes the report where it was asked for and publishes it to the observers.
fn publish(report: &report::Report, outputs: &RunOutputs) {
    if let Some(path) = &outputs.report
        && let Err(error) = report.write_to(path)
    {
        log::error!("cannot write the report to {}: {error}", path.display());
    }
    let sinks = observe::Sinks {
        metrics_file: outputs.metrics_file.clone(),
        pushgateway: outputs.pushgateway.clone(),
        termination_log: Some(outputs.termination_log.clone()),
    };
    observe::publish(report, &sinks);
}
