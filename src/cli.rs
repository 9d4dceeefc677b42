//! The command line. Every option also comes from `ROSTER_SYNC_<OPTION>` (a flag wins over
//! its variable), and each command accepts exactly the options it uses, so its `--help`
//! is complete on its own.
//!
//! Options may stand before the command name, and no command means `sync`: [`parse`]
//! moves the command name to the front (or inserts `sync`) before clap sees the line.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::exit::Exit;
use crate::source::http::MAX_CONCURRENCY;

/// The variable of `--approve`: its comma-separated keys are added to the flags' (clap's
/// own variable would replace them).
pub const APPROVE_ENV: &str = "ROSTER_SYNC_APPROVE";

const CREDENTIALS_HELP: &str = "Credentials (needed only when SIS courses are configured and \
    --api-base is http(s)): SIS_CLASSES_ID/SIS_CLASSES_KEY, SIS_ENROLLMENTS_ID/SIS_ENROLLMENTS_KEY, \
    SIS_STUDENTS_ID/SIS_STUDENTS_KEY and UCB_HR_ID/UCB_HR_KEY; for canvas-{id} courses with an \
    http(s) --canvas-api, CANVAS_API_TOKEN. Each is also readable from the file named by the \
    same variable with a _FILE suffix (which wins).";

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
        Options may stand before or after the command; without a command, sync runs. \
        Every option can also be set by ROSTER_SYNC_<OPTION> (--output-dir: \
        ROSTER_SYNC_OUTPUT_DIR); a flag wins over its variable. `roster-sync COMMAND --help` \
        lists a command's options.",
    after_help = Exit::job_help(),
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum Command {
    /// Run the job: fetch, guard, write, commit (the default).
    #[command(after_help = format!("{CREDENTIALS_HELP}\n\n{}", Exit::job_help()))]
    Sync(SyncArgs),
    /// Like `sync --dry-run`: fetch and report what would change; write and commit nothing.
    #[command(after_help = format!("{CREDENTIALS_HELP}\n\n{}", Exit::job_help()))]
    Plan(PlanArgs),
    /// Validate the options, the values file, the course keys and the credentials; with
    /// --online, look the courses up in the Classes API too.
    #[command(after_help = format!("{CREDENTIALS_HELP}\n\n{}", Exit::help(&[
        (Exit::Success, "the configuration is usable"),
        (Exit::Config, "something is not (each line says what)"),
    ])))]
    Check(CheckArgs),
    /// Compare the output directory with the audit repository HEAD.
    #[command(after_help = Exit::help(&[
        (Exit::Success, "every file matches"),
        (Exit::Failed, "a file differs, is missing or is not a regular file, or there is no audit repository"),
        (Exit::Storage, "the audit repository cannot be read"),
    ]))]
    Verify(VerifyArgs),
    /// Show roster changes from the audit repository, one line per address added or removed.
    #[command(after_help = Exit::help(&[
        (Exit::Success, "the history was shown (also when there is none)"),
        (Exit::Config, "a usage error (an unreadable --since, say)"),
        (Exit::Storage, "the audit repository cannot be read"),
    ]))]
    History(HistoryArgs),
    /// Show a course's roster as the audit repository recorded it at a moment, one address
    /// per line.
    #[command(after_help = Exit::help(&[
        (Exit::Success, "the roster was shown"),
        (Exit::Failed, "the course had no such roster then"),
        (Exit::Config, "a usage error (an unreadable --at, say)"),
        (Exit::Storage, "the audit repository cannot be read"),
    ]))]
    Show(ShowArgs),
}

impl Command {
    pub fn log_format(&self) -> LogFormat {
        let log = match self {
            Command::Sync(args) => &args.run.log,
            Command::Plan(args) => &args.run.log,
            Command::Check(args) => &args.log,
            Command::Verify(args) => &args.log,
            Command::History(args) => &args.log,
            Command::Show(args) => &args.log,
        };
        log.log_format
    }
}

/// The Canvas user field roster addresses come from.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanvasIdentity {
    #[value(name = "email")]
    Email,
    #[value(name = "login_id")]
    LoginId,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct LogArgs {
    /// Log lines on stderr as text or as one JSON object per line.
    #[arg(long, env = "ROSTER_SYNC_LOG_FORMAT", value_enum,
          default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct OutputDirArg {
    /// Where the hub reads the roster files.
    #[arg(
        long,
        env = "ROSTER_SYNC_OUTPUT_DIR",
        value_name = "DIR",
        default_value = "/srv/jupyterhub/profiles.d"
    )]
    pub output_dir: PathBuf,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct AuditRepoArg {
    /// The git audit repository (bare; created on the first sync).
    #[arg(
        long,
        env = "ROSTER_SYNC_AUDIT_REPO",
        value_name = "PATH",
        default_value = "/srv/roster-audit"
    )]
    pub audit_repo: PathBuf,
}

/// What a sync, a plan and a check are configured by.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct JobOptions {
    /// The hub's helm values file holding the course profiles.
    #[arg(
        long,
        env = "ROSTER_SYNC_VALUES",
        value_name = "PATH",
        default_value = "/usr/local/etc/jupyterhub/secret/values.yaml"
    )]
    pub values: PathBuf,

    /// Dotted path of the profiles mapping in the values file [default: the first of
    /// custom.profiles, jupyterhub.custom.profiles, hub.extraConfigMap.profiles,
    /// jupyterhub.hub.extraConfigMap.profiles that exists].
    #[arg(long, env = "ROSTER_SYNC_PROFILES_KEY", value_name = "KEY")]
    pub profiles_key: Option<String>,

    #[command(flatten)]
    pub output_dir: OutputDirArg,

    #[command(flatten)]
    pub audit_repo: AuditRepoArg,

    /// API gateway base URL (http:// or https://), or file://DIR to replay recorded
    /// responses.
    #[arg(
        long,
        env = "ROSTER_SYNC_API_BASE",
        value_name = "URL",
        default_value = "https://gateway.api.berkeley.edu"
    )]
    pub api_base: String,

    /// Canvas LMS base URL for canvas-{id} course keys (e.g. https://bcourses.berkeley.edu),
    /// or file://DIR to replay recorded answers; token from CANVAS_API_TOKEN or
    /// CANVAS_API_TOKEN_FILE.
    #[arg(long, env = "ROSTER_SYNC_CANVAS_API", value_name = "URL")]
    pub canvas_api: Option<String>,

    /// The Canvas user field that is a roster address: `email` (user.email) or `login_id`
    /// (user.login_id).
    #[arg(long, env = "ROSTER_SYNC_CANVAS_IDENTITY", value_enum,
          default_value_t = CanvasIdentity::Email, value_name = "FIELD")]
    pub canvas_identity: CanvasIdentity,

    /// Canvas enrollment types that make an instructor (comma separated; TeacherEnrollment,
    /// TaEnrollment, DesignerEnrollment, ObserverEnrollment).
    #[arg(
        long,
        env = "ROSTER_SYNC_CANVAS_INSTRUCTOR_TYPES",
        value_name = "TYPES",
        value_delimiter = ',',
        default_value = "TeacherEnrollment,TaEnrollment"
    )]
    pub canvas_instructor_types: Vec<String>,

    /// Most requests in flight at once (1-64).
    #[arg(long, env = "ROSTER_SYNC_CONCURRENCY", value_name = "N",
          default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_CONCURRENCY)))]
    pub concurrency: u16,

    /// Count waitlisted students (status W) as students too.
    #[arg(long, env = "ROSTER_SYNC_INCLUDE_WAITLISTED",
          action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub include_waitlisted: bool,

    /// Instructor role codes that do not make an instructor (comma separated).
    #[arg(
        long,
        env = "ROSTER_SYNC_EXCLUDE_ROLES",
        value_name = "CODES",
        value_delimiter = ',',
        default_value = "APRX"
    )]
    pub exclude_roles: Vec<String>,

    /// Hold back a roster that would lose more than this percentage of its members (0-100).
    #[arg(long, env = "ROSTER_SYNC_MAX_REMOVAL_PERCENT", value_name = "PERCENT",
          default_value_t = 30, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub max_removal_percent: u8,

    /// The shrink guard applies to rosters that had at least this many members.
    #[arg(
        long,
        env = "ROSTER_SYNC_GUARD_MIN_SIZE",
        value_name = "N",
        default_value_t = 10
    )]
    pub guard_min_size: usize,

    /// Let this course's guarded change through (repeatable; ROSTER_SYNC_APPROVE holds
    /// more keys, comma separated, added to these).
    #[arg(long, value_name = "KEY")]
    pub approve: Vec<String>,

    /// Remove roster files (and audit entries) of courses no longer configured.
    #[arg(long, env = "ROSTER_SYNC_PRUNE",
          action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub prune: bool,

    /// Warn about course profiles whose term is at least this many terms before today's
    /// (1-99; 2: a fall course from the next summer on).
    #[arg(long, env = "ROSTER_SYNC_STALE_AFTER_TERMS", value_name = "N",
          default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=99))]
    pub stale_after_terms: u16,

    /// Retries after a failed attempt (429, 5xx, timeout, connection error).
    #[arg(
        long,
        env = "ROSTER_SYNC_RETRIES",
        value_name = "N",
        default_value_t = 3
    )]
    pub retries: u32,

    /// Seconds one request may take in all (connecting takes at most 10 of them).
    #[arg(
        long,
        env = "ROSTER_SYNC_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 30.0
    )]
    pub timeout: f64,

    /// Also keep the JupyterHub groups of every course in step, through this hub API URL
    /// (e.g. http://hub:8081/hub/api; token from JUPYTERHUB_API_TOKEN or
    /// JUPYTERHUB_API_TOKEN_FILE).
    #[arg(long, env = "ROSTER_SYNC_HUB_API", value_name = "URL")]
    pub hub_api: Option<String>,

    /// The JupyterHub group of a course's list; {key} is the course key, {list} is
    /// `students` or `instructors`.
    #[arg(
        long,
        env = "ROSTER_SYNC_HUB_GROUP_TEMPLATE",
        value_name = "TEMPLATE",
        default_value = "course::{key}::{list}"
    )]
    pub hub_group_template: String,

    /// A roster address local@DOMAIN is the hub user `local`; addresses in other domains
    /// are skipped. Empty: the whole address is the username.
    #[arg(
        long,
        env = "ROSTER_SYNC_HUB_USERNAME_DOMAIN",
        value_name = "DOMAIN",
        default_value = "berkeley.edu"
    )]
    pub hub_username_domain: String,

    /// Pack the audit repository once more than this many objects are loose (0: never).
    #[arg(
        long,
        env = "ROSTER_SYNC_PACK_LOOSE_OBJECTS",
        value_name = "N",
        default_value_t = 1000
    )]
    pub pack_loose_objects: usize,

    /// Author and committer name of audit commits.
    #[arg(
        long,
        env = "ROSTER_SYNC_AUTHOR_NAME",
        value_name = "NAME",
        default_value = "roster-sync"
    )]
    pub author_name: String,

    /// Author and committer email of audit commits.
    #[arg(
        long,
        env = "ROSTER_SYNC_AUTHOR_EMAIL",
        value_name = "EMAIL",
        default_value = "roster-sync@localhost"
    )]
    pub author_email: String,
}

/// Where a sync or a plan publishes how it went, besides the log.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct RunOutputs {
    /// Write the JSON report here (`-` for stdout).
    #[arg(long, env = "ROSTER_SYNC_REPORT", value_name = "PATH")]
    pub report: Option<PathBuf>,

    /// Write Prometheus metrics of each run to this file (node-exporter textfile style).
    #[arg(long, env = "ROSTER_SYNC_METRICS_FILE", value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,

    /// Push the same metrics to this Prometheus Pushgateway (job `roster-sync`).
    #[arg(long, env = "ROSTER_SYNC_PUSHGATEWAY", value_name = "URL")]
    pub pushgateway: Option<String>,

    /// Write a one-line run summary here when the file exists (Kubernetes shows it).
    #[arg(
        long,
        env = "ROSTER_SYNC_TERMINATION_LOG",
        value_name = "PATH",
        default_value = "/dev/termination-log"
    )]
    pub termination_log: PathBuf,

    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct SyncArgs {
    #[command(flatten)]
    pub job: JobOptions,

    /// Fetch and report, but write and commit nothing (what `plan` does).
    #[arg(long, env = "ROSTER_SYNC_DRY_RUN",
          action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub dry_run: bool,

    #[command(flatten)]
    pub run: RunOutputs,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct PlanArgs {
    #[command(flatten)]
    pub job: JobOptions,

    #[command(flatten)]
    pub run: RunOutputs,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct CheckArgs {
    #[command(flatten)]
    pub job: JobOptions,

    /// Also look every course up in the Classes API (read-only): title, sections,
    /// instructors; a class that does not exist fails the check.
    #[arg(long, env = "ROSTER_SYNC_ONLINE",
          action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub online: bool,

    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub output_dir: OutputDirArg,

    #[command(flatten)]
    pub audit_repo: AuditRepoArg,

    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub audit_repo: AuditRepoArg,

    /// Only this course key.
    #[arg(long, value_name = "KEY")]
    pub course: Option<String>,

    /// Only this address (case-insensitive).
    #[arg(long, value_name = "ADDRESS")]
    pub member: Option<String>,

    /// Only changes committed on or after this date (YYYY-MM-DD or RFC 3339, UTC).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,

    /// One line of text per change, or one JSON object per line.
    #[arg(long, value_enum, default_value_t = HistoryFormat::Text, value_name = "FORMAT")]
    pub format: HistoryFormat,

    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistoryFormat {
    Text,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListArg {
    Students,
    Instructors,
}

impl ListArg {
    pub fn list(self) -> crate::roster::List {
        match self {
            ListArg::Students => crate::roster::List::Students,
            ListArg::Instructors => crate::roster::List::Instructors,
        }
    }
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct ShowArgs {
    #[command(flatten)]
    pub audit_repo: AuditRepoArg,

    /// The course key.
    #[arg(long, value_name = "KEY")]
    pub course: String,

    /// The moment: a date (the state at the end of that day, UTC), an RFC 3339 time (the
    /// last commit at or before it), or a commit id [default: the latest commit].
    #[arg(long, value_name = "WHEN")]
    pub at: Option<String>,

    /// Which list.
    #[arg(long, value_enum, default_value_t = ListArg::Students, value_name = "LIST")]
    pub list: ListArg,

    #[command(flatten)]
    pub log: LogArgs,
}

/// Parses a command line (the program name first).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(command_first(args.into_iter().collect()))
}

/// The outputs of a `sync` or `plan` line that clap rejected, read without clap so that
/// the CronJob's report, metrics and termination log still say the run failed:
/// `--report`, `--metrics-file`, `--pushgateway` and `--termination-log` (as `--flag V`
/// or `--flag=V`), else their `ROSTER_SYNC_*` variables through `env`. Also whether the
/// line was a dry run. `None` for the other commands.
pub fn rejected_outputs(
    args: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Option<(RunOutputs, bool)> {
    let args = command_first(args.into_iter().collect());
    let command = args.get(1).and_then(|arg| arg.to_str())?;
    if !matches!(command, "sync" | "plan") {
        return None;
    }
    let options: Vec<&str> = args
        .iter()
        .skip(2)
        .map(|arg| arg.to_str().unwrap_or(""))
        .take_while(|arg| *arg != "--")
        .collect();
    let flag = |name: &str, variable: &str| -> Option<PathBuf> {
        let long = format!("--{name}");
        let mut found = None;
        for (i, arg) in options.iter().enumerate() {
            if *arg == long {
                found = options.get(i + 1).map(PathBuf::from);
            } else if let Some(value) = arg.strip_prefix(&long).and_then(|v| v.strip_prefix('=')) {
                found = Some(PathBuf::from(value));
            }
        }
        found.or_else(|| env(variable).map(PathBuf::from))
    };
    let outputs = RunOutputs {
        report: flag("report", "ROSTER_SYNC_REPORT"),
        metrics_file: flag("metrics-file", "ROSTER_SYNC_METRICS_FILE"),
        pushgateway: flag("pushgateway", "ROSTER_SYNC_PUSHGATEWAY")
            .map(|url| url.to_string_lossy().into_owned()),
        termination_log: flag("termination-log", "ROSTER_SYNC_TERMINATION_LOG")
            .unwrap_or_else(|| PathBuf::from("/dev/termination-log")),
        log: LogArgs {
            log_format: LogFormat::Text,
        },
    };
    let dry_run = command == "plan" || options.contains(&"--dry-run");
    Some((outputs, dry_run))
}

/// What clap rejected, in one line for the report: the kind of error and the argument,
/// never the value (which could be anything the operator typed).
pub fn rejection_summary(error: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let kind = error.kind().as_str().unwrap_or("invalid command line");
    let argument = match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => {
            let name = arg.split(['=', ' ']).next().unwrap_or(arg);
            format!(" ({name})")
        }
        _ => String::new(),
    };
    format!(
        "the command line was rejected: {kind}{argument}; see roster-sync sync --help and \
         check the ROSTER_SYNC_* variables"
    )
}

/// Moves the command name in front of the options that stand before it, or inserts
/// `sync` when the line names no command, so each command's own parser sees them all.
fn command_first(mut args: Vec<OsString>) -> Vec<OsString> {
    let cli = Cli::command();
    let names: Vec<&str> = cli
        .get_subcommands()
        .map(|command| command.get_name())
        .chain(["help"])
        .collect();
    let takes_value = |name: &str| {
        cli.get_subcommands()
            .flat_map(|command| command.get_arguments())
            .any(|arg| arg.get_long() == Some(name) && arg.get_action().takes_values())
    };
    let mut index = 1;
    let mut only_top_level_flags = true;
    while let Some(arg) = args.get(index).and_then(|arg| arg.to_str()) {
        if arg == "--" {
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            only_top_level_flags &= matches!(long, "help" | "version");
            let skip_value = !long.contains('=') && takes_value(long);
            index += if skip_value { 2 } else { 1 };
        } else if arg.starts_with('-') {
            only_top_level_flags &= matches!(arg, "-h" | "-V");
            index += 1;
        } else {
            if names.contains(&arg) {
                let command = args.remove(index);
                args.insert(1, command);
            } else {
                // Not a command: clap reports it as an unexpected argument of `sync`.
                args.insert(1, "sync".into());
            }
            return args;
        }
    }
    if !(only_top_level_flags && index > 1) {
        args.insert(1.min(args.len()), "sync".into());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> Command {
        parse(args.iter().map(OsString::from))
            .unwrap_or_else(|error| panic!("{args:?}: {error}"))
            .command
    }

    #[test]
    fn options_stand_before_or_after_the_command_or_without_one() {
        let before = parsed(&["roster-sync", "--dry-run", "--approve", "k", "sync"]);
        let after = parsed(&["roster-sync", "sync", "--dry-run", "--approve", "k"]);
        let without = parsed(&["roster-sync", "--dry-run", "--approve", "k"]);
        assert_eq!(before, after);
        assert_eq!(before, without);
        let Command::Sync(args) = before else {
            panic!("sync")
        };
        assert!(args.dry_run);
        assert_eq!(args.job.approve, ["k"]);
        assert!(matches!(parsed(&["roster-sync"]), Command::Sync(_)));
    }

    #[test]
    fn an_option_value_that_names_a_command_is_a_value() {
        let Command::History(args) = parsed(&["roster-sync", "--course", "sync", "history"]) else {
            panic!("history")
        };
        assert_eq!(args.course.as_deref(), Some("sync"));
        let Command::Verify(args) = parsed(&["roster-sync", "--audit-repo=plan", "verify"]) else {
            panic!("verify")
        };
        assert_eq!(args.audit_repo.audit_repo, PathBuf::from("plan"));
    }

    #[test]
    fn a_command_accepts_only_its_own_options() {
        for line in [
            &["roster-sync", "history", "--concurrency", "3"][..],
            &["roster-sync", "verify", "--approve", "k"],
            &["roster-sync", "check", "--report", "r.json"],
            &["roster-sync", "plan", "--dry-run"],
        ] {
            let error = parse(line.iter().map(OsString::from)).unwrap_err();
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::UnknownArgument,
                "{line:?}"
            );
        }
    }

    #[test]
    fn top_level_help_and_version_are_not_sync_help() {
        for flag in ["--help", "-h", "--version", "-V"] {
            let error = parse(["roster-sync", flag].map(OsString::from)).unwrap_err();
            let rendered = error.render().to_string();
            assert!(!rendered.contains("--values"), "{flag}: {rendered}");
        }
    }

    /// The option table of docs/reference.md, as (flag with value name, variable, default,
    /// commands) per row.
    fn documented_options() -> Vec<(String, String, String, Vec<String>)> {
        let reference = include_str!("../docs/reference.md");
        let table = reference
            .split("| option | variable | default | commands | meaning |")
            .nth(1)
            .expect("the option table in docs/reference.md");
        table
            .lines()
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .map(|line| {
                let cells: Vec<String> = line
                    .trim_matches('|')
                    .split(" | ")
                    .map(|cell| cell.trim().to_string())
                    .collect();
                let commands = cells[3].split(", ").map(str::to_string).collect();
                (
                    cells[0].clone(),
                    cells[1].clone(),
                    cells[2].clone(),
                    commands,
                )
            })
            .collect()
    }

    #[test]
    fn the_documented_option_table_matches_each_commands_help() {
        let documented = documented_options();
        let cli = Cli::command();
        let mut seen = std::collections::BTreeSet::new();
        for command in cli.get_subcommands() {
            let name = command.get_name();
            let mut accepted: Vec<String> = Vec::new();
            for arg in command.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                if long == "help" {
                    continue;
                }
                let value = arg
                    .get_value_names()
                    .filter(|_| arg.get_action().takes_values())
                    .map(|names| format!(" {}", names[0]))
                    .unwrap_or_default();
                let flag = format!("`--{long}{value}`");
                let row = documented
                    .iter()
                    .find(|(documented, ..)| *documented == flag)
                    .unwrap_or_else(|| panic!("{name} {flag}: no row in docs/reference.md"));
                let variable = match arg.get_env() {
                    Some(env) => format!("`{}`", env.to_string_lossy()),
                    None if long == "approve" => format!("`{APPROVE_ENV}`"),
                    None => "—".to_string(),
                };
                assert_eq!(row.1, variable, "{flag}: variable");
                let defaults: Vec<String> = arg
                    .get_default_values()
                    .iter()
                    .map(|value| value.to_string_lossy().into_owned())
                    .collect();
                match defaults.as_slice() {
                    [] => assert!(
                        !row.2.starts_with('`'),
                        "{flag}: documented default {}",
                        row.2
                    ),
                    [flag_default] if flag_default == "false" => assert_eq!(row.2, "—", "{flag}"),
                    _ => assert_eq!(
                        row.2,
                        format!("`{}`", defaults.join(",")),
                        "{flag}: default"
                    ),
                }
                assert!(
                    row.3.iter().any(|command| command == name),
                    "{flag}: docs/reference.md does not list `{name}` among its commands"
                );
                seen.insert(flag.clone());
                accepted.push(flag);
            }
            for (flag, _, _, commands) in &documented {
                if commands.iter().any(|command| command == name) {
                    assert!(
                        accepted.contains(flag),
                        "docs/reference.md says `{name}` takes {flag}"
                    );
                }
            }
        }
        let stale: Vec<_> = documented
            .iter()
            .filter(|(flag, ..)| !seen.contains(flag))
            .collect();
        assert!(stale.is_empty(), "documented but not accepted: {stale:?}");
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_outputs_of_a_rejected_line_are_found_without_clap() {
        let line = |args: &[&str]| args.iter().map(OsString::from).collect::<Vec<_>>();
        let env = |name: &str| match name {
            "ROSTER_SYNC_REPORT" => Some(OsString::from("/env/report.json")),
            "ROSTER_SYNC_METRICS_FILE" => Some(OsString::from("/env/metrics.prom")),
            _ => None,
        };
        let (outputs, dry_run) = rejected_outputs(
            line(&[
                "roster-sync",
                "--bogus",
                "--report",
                "/r.json",
                "--termination-log=/t",
            ]),
            env,
        )
        .unwrap();
        assert_eq!(outputs.report, Some(PathBuf::from("/r.json")));
        assert_eq!(
            outputs.metrics_file,
            Some(PathBuf::from("/env/metrics.prom"))
        );
        assert_eq!(outputs.termination_log, PathBuf::from("/t"));
        assert!(!dry_run);
        let (outputs, dry_run) =
            rejected_outputs(line(&["roster-sync", "plan", "--concurrency", "0"]), env).unwrap();
        assert_eq!(outputs.report, Some(PathBuf::from("/env/report.json")));
        assert_eq!(
            outputs.termination_log,
            PathBuf::from("/dev/termination-log")
        );
        assert!(dry_run);
        for other in [
            &["roster-sync", "verify", "--bogus"][..],
            &["roster-sync", "history", "-x"],
        ] {
            assert!(rejected_outputs(line(other), env).is_none(), "{other:?}");
        }
    }

    #[test]
    fn a_rejection_summary_names_the_argument_not_the_value() {
        let error =
            parse(["roster-sync", "--concurrency", "secret-ish"].map(OsString::from)).unwrap_err();
        let summary = rejection_summary(&error);
        assert!(summary.contains("--concurrency"), "{summary}");
        assert!(!summary.contains("secret-ish"), "{summary}");
        let error = parse(["roster-sync", "--app-key=hunter2"].map(OsString::from)).unwrap_err();
        let summary = rejection_summary(&error);
        assert!(
            summary.contains("(--app-key)") && !summary.contains("hunter2"),
            "{summary}"
        );
    }
}
