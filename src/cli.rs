//! The command line: every option also comes from `ROSTER_SYNC_<OPTION>`; a flag wins
//! over its variable. Options may stand before or after the command.

use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "roster-sync",
    version,
    about = "Sync UC Berkeley course rosters into JupyterHub profile files, with a git audit trail",
    long_about = "Sync UC Berkeley course rosters into JupyterHub profile files, with a git audit trail.\n\n\
        One run reads the course profiles from the hub's helm values file, fetches each course's \
        students and instructors from the SIS and HR APIs, writes \
        {key}-students.txt and {key}-instructors.txt into the output directory, and commits \
        every change to the audit repository. A failed, partial or suspicious fetch never \
        overwrites a good roster.\n\n\
        Credentials come from SIS_CLASSES_ID/KEY, SIS_ENROLLMENTS_ID/KEY, SIS_STUDENTS_ID/KEY \
        and UCB_HR_ID/KEY, or from files named by the same variables with a _FILE suffix.\n\n\
        Exit codes: 0 all synced, 1 a course failed to fetch, 2 configuration error, \
        3 a guard held a change back, 4 another run holds the lock, 5 storage error, \
        6 stopped by SIGTERM/SIGINT."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub options: Options,
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the job: fetch, guard, write, commit (the default).
    Sync,
    /// Like `sync --dry-run`: fetch and report what would change; write and commit nothing.
    Plan,
    /// Validate the values file, course keys and credentials; no network.
    Check,
    /// Compare the output directory with the audit repository HEAD (exit 1 on difference).
    Verify,
    /// Show roster changes from the audit repository, one line per address added or removed.
    History(HistoryArgs),
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct HistoryArgs {
    /// Only this course key.
    #[arg(long, value_name = "KEY")]
    pub course: Option<String>,
    /// Only this address (case-insensitive).
    #[arg(long, value_name = "ADDRESS")]
    pub member: Option<String>,
    /// Only changes committed on or after this date (YYYY-MM-DD or RFC 3339, UTC).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct Options {
    /// The hub's helm values file holding the course profiles.
    #[arg(
        long,
        global = true,
        env = "ROSTER_SYNC_VALUES",
        value_name = "PATH",
        default_value = "/usr/local/etc/jupyterhub/secret/values.yaml"
    )]
    pub values: PathBuf,

    /// Dotted path of the profiles mapping in the values file [default: the first of
    /// custom.profiles, jupyterhub.custom.profiles, hub.extraConfigMap.profiles,
    /// jupyterhub.hub.extraConfigMap.profiles that exists].
    #[arg(
        long,
        global = true,
        env = "ROSTER_SYNC_PROFILES_KEY",
        value_name = "KEY"
    )]
    pub profiles_key: Option<String>,

    /// Where the hub reads the roster files.
    #[arg(
        long,
        global = true,
        env = "ROSTER_SYNC_OUTPUT_DIR",
        value_name = "DIR",
        default_value = "/srv/jupyterhub/profiles.d"
    )]
    pub output_dir: PathBuf,

    /// The git audit repository (bare; created on the first sync).
    #[arg(
        long,
        global = true,
        env = "ROSTER_SYNC_AUDIT_REPO",
        value_name = "PATH",
        default_value = "/srv/roster-audit"
    )]
    pub audit_repo: PathBuf,

    /// API gateway base URL, or file://DIR to replay recorded responses.
    #[arg(
        long,
        global = true,
        env = "ROSTER_SYNC_API_BASE",
        value_name = "URL",
        default_value = "https://gateway.api.berkeley.edu"
    )]
    pub api_base: String,

    /// Most requests in flight at once.
    #[arg(long, global = true, env = "ROSTER_SYNC_CONCURRENCY", value_name = "N",
          default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,

    /// Count waitlisted students (status W) as students too.
    #[arg(long, global = true, env = "ROSTER_SYNC_INCLUDE_WAITLISTED",
          action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub include_waitlisted: bool,

    /// Instructor role codes that do not make an instructor (comma separated).
    #[arg(
        long,
        global = true,
        env = "ROSTER_SYNC_EXCLUDE_ROLES",
        value_name = "CODES",
        value_delimiter = ',',
        default_value = "APRX"
    )]
    pub exclude_roles: Vec<String>,

    /// Hold back a roster that would lose more than this percentage of its members.
    #[arg(long, global = true, env = "ROSTER_SYNC_MAX_REMOVAL_PERCENT", value_name = "PERCENT",
          default_value_t = 30, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub max_removal_percent: u8,

    /// The shrink guard applies to rosters that had at least this many members.
    #[arg(
        long,
        global = true,
        env = "ROSTER_SYNC_GUARD_MIN_SIZE",
        value_name = "N",
        default_value_t = 10
    )]
    pub guard_min_size: usize,

    /// Let this course's guarded change through (repeatable; ROSTER_SYNC_APPROVE holds
    /// more keys, comma separated, added to these).
    #[arg(long, global = true, value_name = "KEY")]
    pub approve: Vec<String>,

    /// Remove roster files (and audit entries) of courses no longer configured.
    #[arg(long, global = true, env = "ROSTER_SYNC_PRUNE",
          action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub prune: bool,

    /// Fetch and report, but write and commit nothing.
    #[arg(long, global = true, env = "ROSTER_SYNC_DRY_RUN",
          action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub dry_run: bool,

    /// Retries after a failed attempt (429, 5xx, timeout, connection error).
    #[arg(
        long,
        global = true,
        env = "ROSTER_SYNC_RETRIES",
        value_name = "N",
        default_value_t = 3
    )]
    pub retries: u32,

    /// Seconds one request may take in all (connecting takes at most 10 of them).
    #[arg(
        long,
        global = true,
        env = "ROSTER_SYNC_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 30.0
    )]
    pub timeout: f64,

    /// Write the JSON report here (`-` for stdout).
    #[arg(long, global = true, env = "ROSTER_SYNC_REPORT", value_name = "PATH")]
    pub report: Option<PathBuf>,

    /// Log lines on stderr as text or as one JSON object per line.
    #[arg(long, global = true, env = "ROSTER_SYNC_LOG_FORMAT", value_enum,
          default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub log_format: LogFormat,

    /// Write Prometheus metrics of each run to this file (node-exporter textfile style).
    #[arg(
        long,
        global = true,
        env = "ROSTER_SYNC_METRICS_FILE",
        value_name = "PATH"
    )]
    pub metrics_file: Option<PathBuf>,

    /// Push the same metrics to this Prometheus Pushgateway (job `roster-sync`).
    #[arg(
        long,
        global = true,
        env = "ROSTER_SYNC_PUSHGATEWAY",
        value_name = "URL"
    )]
    pub pushgateway: Option<String>,

    /// Write a one-line run summary here when the file exists (Kubernetes shows it).
    #[arg(
        long,
        global = true,
        env = "ROSTER_SYNC_TERMINATION_LOG",
        value_name = "PATH",
        default_value = "/dev/termination-log"
    )]
    pub termination_log: PathBuf,

    /// Author and committer name of audit commits.
    #[arg(
        long,
        global = true,
        env = "ROSTER_SYNC_AUTHOR_NAME",
        value_name = "NAME",
        default_value = "roster-sync"
    )]
    pub author_name: String,

    /// Author and committer email of audit commits.
    #[arg(
        long,
        global = true,
        env = "ROSTER_SYNC_AUTHOR_EMAIL",
        value_name = "EMAIL",
        default_value = "roster-sync@localhost"
    )]
    pub author_email: String,
}

impl Cli {
    /// The command to run; `sync` when none is given.
    pub fn selected_command(&self) -> Command {
        self.command.clone().unwrap_or(Command::Sync)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_stand_before_or_after_the_command() {
        let before = Cli::parse_from(["roster-sync", "--dry-run", "--approve", "k", "sync"]);
        assert_eq!(before.selected_command(), Command::Sync);
        let after = Cli::parse_from(["roster-sync", "sync", "--dry-run", "--approve", "k"]);
        assert!(before.options.dry_run && after.options.dry_run);
        assert_eq!(before.options.approve, after.options.approve);
        assert_eq!(
            Cli::parse_from(["roster-sync"]).selected_command(),
            Command::Sync
        );
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        <Cli as CommandFactory>::command().debug_assert();
    }
}
