//! The job: `sync` and `plan`. Data flows one way: configuration → fetch → plan →
//! apply → report.
//!
//! Order of effects, chosen for crash safety: the lock first (a second run changes
//! nothing); then every new file staged under a temporary name and pruned files
//! removed; then the audit commit; then the staged files renamed into place. A run
//! killed before the commit leaves the old files (a pruned file it already removed is
//! restored from HEAD as drift, or pruned again); a run killed after it leaves files
//! that differ from HEAD, which the next run restores as drift. Every file is replaced
//! by rename, so each roster file is always either old or new.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::audit::{self, AuditError, AuditRepo, RunLock};
use crate::config::{self, ConfigError, Settings, SourceConfig};
use crate::credentials::Credentials;
use crate::fetch::{self, FetchOptions, Fetched};
use crate::plan::{self, Status, Tree};
use crate::report::{CourseReport, Report, Stop};
use crate::shutdown::Shutdown;
use crate::source::http::HttpTransport;
use crate::source::replay::ReplayTransport;
use crate::source::{Api, Client, Transport};
use crate::store::{OutputDir, StoreError};

/// Why a run stopped before it could apply its plan.
#[derive(Debug)]
enum Abort {
    Config(String),
    Storage(String),
    Locked(String),
    Interrupted,
}

impl From<ConfigError> for Abort {
    fn from(error: ConfigError) -> Self {
        Abort::Config(error.to_string())
    }
}

impl From<StoreError> for Abort {
    fn from(error: StoreError) -> Self {
        Abort::Storage(error.to_string())
    }
}

impl From<AuditError> for Abort {
    fn from(error: AuditError) -> Self {
        match error {
            AuditError::Locked { .. } => Abort::Locked(error.to_string()),
            _ => Abort::Storage(error.to_string()),
        }
    }
}

impl Abort {
    fn into_stop(self) -> (Stop, String) {
        match self {
            Abort::Config(message) => (Stop::Config, message),
            Abort::Storage(message) => (Stop::Storage, message),
            Abort::Locked(message) => (Stop::Locked, message),
            Abort::Interrupted => (
                Stop::Interrupted,
                "stopped by a termination signal before anything was written; safe to rerun"
                    .to_string(),
            ),
        }
    }
}

/// Runs `sync` (or `plan` when `settings.dry_run`) and returns its report.
pub fn run(settings: Settings, shutdown: &Shutdown) -> Report {
    let started = Instant::now();
    let mut report = new_report(settings.dry_run);
    let result = execute(&settings, shutdown, &mut report);
    conclude(report, result.err().map(Abort::into_stop), started)
}

/// The report of a run whose command line was rejected before it started.
pub fn rejected(error: ConfigError, dry_run: bool) -> Report {
    let report = new_report(dry_run);
    conclude(report, Some(Abort::from(error).into_stop()), Instant::now())
}

fn new_report(dry_run: bool) -> Report {
    let now = SystemTime::now();
    let started_at = humantime::format_rfc3339_seconds(now).to_string();
    let run_id = format!("{started_at}-{}", std::process::id());
    Report::new(run_id, started_at, dry_run)
}

fn conclude(mut report: Report, stop: Option<(Stop, String)>, started: Instant) -> Report {
    report.conclude(stop);
    report.duration_seconds = started.elapsed().as_secs_f64();
    if let Some(error) = &report.error {
        log::error!("{error}");
    }
    log::info!(
        outcome = report.outcome.name(),
        exit_code = report.exit_code,
        drift = report.drift;
        "{}",
        report.summary()
    );
    report
}

/// One line per course: its status, both lists' change, and the reason when held
/// back, failed or approved.
fn log_course(course: &plan::CoursePlan) {
    let level = match course.status {
        Status::Failed => log::Level::Error,
        Status::Guarded => log::Level::Warn,
        _ if course.approved.is_some() => log::Level::Warn,
        _ => log::Level::Info,
    };
    let reason = match (&course.error, &course.approved) {
        (Some(error), _) => format!(": {error}"),
        (None, Some(guard)) => format!(": approved although it {guard}"),
        (None, None) => String::new(),
    };
    let (students, instructors) = (&course.students, &course.instructors);
    log::log!(
        level,
        course = course.key.as_str(),
        status = course.status.name();
        "{}: {} (students {} +{} -{}, instructors {} +{} -{}){reason}",
        course.key,
        course.status.name(),
        students.count,
        students.added,
        students.removed,
        instructors.count,
        instructors.added,
        instructors.removed,
    );
}

fn execute(settings: &Settings, shutdown: &Shutdown, report: &mut Report) -> Result<(), Abort> {
    let courses = load_courses(settings)?;
    let transport = if courses.is_empty() {
        None
    } else {
        Some(transport(settings)?)
    };
    let storage = Storage::open(settings)?;
    let head = match &storage.repo {
        Some(repo) => repo.head_tree()?,
        None => Tree::new(),
    };
    let fetched = match transport {
        Some(transport) => fetch_courses(settings, transport, &courses, shutdown, report)?,
        None => Vec::new(),
    };
    if shutdown.requested() {
        return Err(Abort::Interrupted);
    }

    let paired: Vec<(config::Course, Fetched)> = courses.into_iter().zip(fetched).collect();
    let plan = plan::plan(&paired, &head, &settings.guard, settings.prune);
    report.courses = plan.courses.iter().map(CourseReport::from).collect();
    log_plan(&plan, settings);
    if paired.is_empty() && !head.is_empty() && !settings.prune {
        log::warn!(
            "the configuration yields no course profiles while the audit repository holds \
             rosters; nothing is written or removed"
        );
        return Ok(());
    }

    let disk = storage
        .store
        .read_all(head.keys().chain(plan.tree.keys()))?;
    let reconcile = plan::reconcile(&head, &plan.tree, &disk);
    report.drift = reconcile.drift.len();
    for name in &reconcile.drift {
        log::warn!(
            file = name.as_str();
            "{name} differs from the audit repository (edited, deleted or replaced out of \
             band); {}",
            if settings.dry_run {
                "it would be restored"
            } else {
                "restoring it"
            }
        );
    }
    report.commit = storage.apply(&plan, &head, &reconcile, settings, &report.run_id)?;
    Ok(())
}

/// The configured courses, saying in the log where they were found.
fn load_courses(settings: &Settings) -> Result<Vec<config::Course>, Abort> {
    let profiles = config::load_profiles(&settings.values, settings.profiles_key.as_deref())?;
    let values = settings.values.display();
    match &profiles.key_path {
        Some(path) if profiles.courses.is_empty() => {
            log::warn!("{values}: {path} holds no course profiles; existing rosters are kept")
        }
        Some(path) => log::info!(
            "{values}: {} course profiles under {path}",
            profiles.courses.len()
        ),
        None => log::warn!(
            "{values}: no profiles found (looked for {}); existing rosters are kept",
            settings
                .profiles_key
                .as_deref()
                .map_or_else(|| config::DEFAULT_PROFILE_PATHS.join(", "), str::to_string)
        ),
    }
    Ok(profiles.courses)
}

/// Fetches every course; the request counts go into the report whatever happens.
fn fetch_courses(
    settings: &Settings,
    transport: Box<dyn Transport>,
    courses: &[config::Course],
    shutdown: &Shutdown,
    report: &mut Report,
) -> Result<Vec<Fetched>, Abort> {
    let client = Arc::new(Client::new(
        transport,
        settings.retry.clone(),
        shutdown.clone(),
    ));
    let options = FetchOptions {
        concurrency: settings.concurrency,
        include_waitlisted: settings.include_waitlisted,
        excluded_roles: settings.excluded_roles.clone(),
    };
    let result = fetch::fetch_all(Arc::clone(&client), courses, &options, shutdown);
    report.set_requests(client.counts());
    result.map_err(|_| Abort::Interrupted)
}

fn log_plan(plan: &plan::Plan, settings: &Settings) {
    for course in &plan.courses {
        log_course(course);
    }
    for key in &settings.guard.approvals {
        let used = plan
            .courses
            .iter()
            .any(|course| &course.key == key && course.approved.is_some());
        if !used {
            log::info!("approval of {key} was not needed: no guard held its change back");
        }
    }
    if !plan.unconfigured.is_empty() {
        log::info!(
            "{} courses in the audit repository are no longer configured; their files are \
             kept (pass --prune to remove them)",
            plan.unconfigured.len()
        );
    }
}

/// The output directory and audit repository of a run: locked, created and cleaned of
/// what a killed run left for a sync; only opened, if they exist, for a dry run.
struct Storage {
    store: OutputDir,
    repo: Option<AuditRepo>,
    lock: Option<RunLock>,
}

impl Storage {
    fn open(settings: &Settings) -> Result<Storage, Abort> {
        if settings.dry_run {
            return Ok(Storage {
                store: OutputDir::existing(&settings.output_dir),
                repo: AuditRepo::open_existing(&settings.audit_repo)?,
                lock: None,
            });
        }
        let lock = audit::lock(&settings.audit_repo)?;
        let repo = AuditRepo::open_or_init(&settings.audit_repo, &lock)?;
        for stale in audit::remove_stale_git_locks(&settings.audit_repo, &lock)? {
            log::warn!("removed {} left by a killed run", stale.display());
        }
        let store = OutputDir::create(&settings.output_dir)?;
        let temp_files = store.remove_stale_temp_files()?;
        if temp_files > 0 {
            log::warn!("removed {temp_files} temporary files left by a killed run");
        }
        Ok(Storage {
            store,
            repo: Some(repo),
            lock: Some(lock),
        })
    }

    /// Publishes the plan (nothing in a dry run); returns the new commit, if any.
    ///
    /// Files are staged and pruned files removed before the commit, so a directory that
    /// cannot be written stops the run before the audit trail records anything; a kill
    /// after the commit leaves staged files that the next run cleans up, and files that
    /// differ from HEAD, which it restores.
    fn apply(
        &self,
        plan: &plan::Plan,
        head: &Tree,
        reconcile: &plan::Reconcile,
        settings: &Settings,
        run_id: &str,
    ) -> Result<Option<String>, Abort> {
        let (Some(repo), Some(lock)) = (&self.repo, &self.lock) else {
            return Ok(None);
        };
        let staged = reconcile
            .writes
            .iter()
            .map(|name| self.store.stage(name, &plan.tree[name]))
            .collect::<Result<Vec<_>, _>>()?;
        for name in &reconcile.removals {
            self.store.remove(name)?;
        }
        let mut commit = None;
        if let Some(message) = plan.commit_message(head, run_id, env!("CARGO_PKG_VERSION")) {
            let oid = repo.commit(&plan.tree, &message, &settings.author, lock)?;
            log::info!(
                "audit commit {oid}: {}",
                message.lines().next().unwrap_or_default()
            );
            commit = Some(oid.to_string());
        }
        for file in staged {
            file.publish()?;
        }
        self.store.sync()?;
        Ok(commit)
    }
}

/// The transport for the configured source; live HTTP needs every API's credentials.
fn transport(settings: &Settings) -> Result<Box<dyn Transport>, Abort> {
    Ok(match &settings.source {
        SourceConfig::Replay { dir } => Box::new(ReplayTransport::new(dir.clone())),
        SourceConfig::Http { base_url } => {
            let credentials = Credentials::from_env(&Api::ALL)
                .map_err(|missing| ConfigError::Credentials(missing.to_string()))?;
            Box::new(
                HttpTransport::new(base_url, credentials, settings.timeout)
                    .map_err(Abort::Config)?,
            )
        }
    })
}
