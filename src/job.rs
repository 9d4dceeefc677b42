//! The job: `sync` and `plan`. Data flows one way: configuration → fetch → plan →
//! apply → report.
//!
//! Order of effects, chosen for crash safety: the lock first (a second run changes
//! nothing); then every new file staged under a temporary name (from the fetch on: see
//! [`crate::ahead`]) and pruned files removed; then the audit commit; then the staged
//! files renamed into place. A run killed before the commit leaves the old files (a
//! pruned file it already removed is restored from HEAD as drift, or pruned again); a
//! run killed after it leaves files that differ from HEAD, which the next run restores
//! as drift. Every file is replaced by rename, so each roster file is always either old
//! or new. A course whose file cannot be staged, replaced or removed fails alone before
//! the commit and keeps its HEAD files in it, so the commit records only what the hub
//! gets.
//!
//! [`run`] is the wiring (values file, credentials, transport); [`run_with`] is the job
//! itself, with its transport as a parameter, so tests run it in process.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::ahead::{StagedAhead, WriteAhead};
use crate::audit::{self, AuditError, AuditRepo, RunLock, Superseded};
use crate::canvas;
use crate::config::{self, ConfigError, Settings, StorageSettings};
use crate::course::{Course, Source};
use crate::exit::Exit;
use crate::fetch;
use crate::hub::{self, CourseRosters, HubConfig, HubReport};
use crate::plan::{self, CoursePlan, Status};
use crate::report::{Ending, Report, RunClock};
use crate::roster::List;
use crate::shutdown::Shutdown;
use crate::source::canvas::{CanvasBase, CanvasHttpTransport, CanvasReplayTransport, CanvasToken};
use crate::source::{Client, Reply, Request, Requests, Transport, TransportError};
use crate::store::{OutputDir, StoreError};
use crate::tree::{self, OnDisk, Tree};

/// Why a run stopped before it could apply its plan.
#[derive(Debug)]
pub enum Abort {
    Config(ConfigError),
    Store(StoreError),
    Audit(AuditError),
    /// Some courses could not be published; the others were, and the commit was made.
    Unpublished(String),
    Interrupted,
}

impl Abort {
    fn exit(&self) -> Exit {
        match self {
            Abort::Config(_) => Exit::Config,
            Abort::Store(_) => Exit::Storage,
            Abort::Audit(AuditError::Locked { .. }) => Exit::Locked,
            Abort::Audit(_) | Abort::Unpublished(_) => Exit::Storage,
            Abort::Interrupted => Exit::Interrupted,
        }
    }
}

impl fmt::Display for Abort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Abort::Config(error) => error.fmt(f),
            Abort::Store(error) => error.fmt(f),
            Abort::Audit(error) => error.fmt(f),
            Abort::Unpublished(message) => f.write_str(message),
            Abort::Interrupted => f.write_str(
                "stopped by a termination signal: no new work was started after it, and what \
                 was done is consistent; safe to rerun",
            ),
        }
    }
}

impl From<ConfigError> for Abort {
    fn from(error: ConfigError) -> Self {
        Abort::Config(error)
    }
}

impl From<StoreError> for Abort {
    fn from(error: StoreError) -> Self {
        Abort::Store(error)
    }
}

impl From<AuditError> for Abort {
    fn from(error: AuditError) -> Self {
        Abort::Audit(error)
    }
}

/// Runs `sync` (or `plan` when `settings.dry_run`) with the configured courses and source,
/// and returns its report.
pub fn run(settings: &Settings, shutdown: &Shutdown) -> Report {
    let clock = RunClock::start();
    let (courses, out_of_range) = match load_courses(settings) {
        Ok(profiles) => (profiles.courses, profiles.out_of_range),
        Err(error) => return rejected(&clock, Abort::Config(error), settings.dry_run),
    };
    let unsyncable: Vec<(String, String)> = out_of_range
        .into_iter()
        .map(|key| {
            let reason = format!(
                "course key {key} has a year outside 1900-2099, which has no SIS term id; \
                 it is not synced and its files are kept (fix the key in the values file)"
            );
            (key, reason)
        })
        .collect();
    let sources = match connect_sources(settings, &courses) {
        Ok(sources) => sources,
        Err(error) => return rejected(&clock, Abort::Config(error), settings.dry_run),
    };
    let hub = match settings.hub.as_ref().map(|hub| hub.connect(settings)) {
        None => None,
        Some(Ok(hub)) => Some(hub),
        Some(Err(error)) => return rejected(&clock, Abort::Config(error), settings.dry_run),
    };
    run_courses(
        settings,
        (&courses, &unsyncable),
        sources,
        hub.as_ref(),
        shutdown,
        &clock,
    )
}

/// The transports of a run: one for SIS courses, one for Canvas courses. A source no
/// configured course needs is never asked, and needs no credentials.
pub struct Sources {
    pub sis: Box<dyn Transport>,
    pub canvas: Box<dyn Transport>,
    /// Where Canvas next-page links may point (the `--canvas-api` origin).
    pub canvas_base: Option<CanvasBase>,
}

/// Loads the credentials the configured courses need and builds their transports.
fn connect_sources(settings: &Settings, courses: &[Course]) -> Result<Sources, ConfigError> {
    let needs = |source| courses.iter().any(|course| course.source() == source);
    // No SIS course, no SIS request: credentials are not needed.
    let sis: Box<dyn Transport> = match needs(Source::Sis) {
        true => settings.source.connect(settings.timeout)?,
        false => Box::new(NothingToAsk),
    };
    let canvas_base = settings.canvas.api.clone();
    let canvas: Box<dyn Transport> = match &canvas_base {
        _ if !needs(Source::Canvas) => Box::new(NothingToAsk),
        None => {
            return Err(ConfigError::CanvasApiMissing {
                path: settings.values.clone(),
            });
        }
        Some(CanvasBase::Replay(dir)) => Box::new(CanvasReplayTransport::new(dir.clone())),
        Some(CanvasBase::Http(base)) => {
            let token = CanvasToken::from_env().map_err(ConfigError::CanvasToken)?;
            Box::new(CanvasHttpTransport::new(
                base,
                token,
                settings.canvas.options.types.clone(),
                settings.timeout,
            ))
        }
    };
    Ok(Sources {
        sis,
        canvas,
        canvas_base,
    })
}

/// The report of a run whose configuration was rejected before it started.
pub fn rejected(clock: &RunClock, abort: Abort, dry_run: bool) -> Report {
    conclude(
        clock,
        dry_run,
        Ending {
            stop: Some((abort.exit(), abort.to_string())),
            ..Ending::default()
        },
    )
}

/// The job on `courses` (SIS ones only), asking `transport` for their rosters and, with
/// `hub`, keeping the hub's groups in step.
pub fn run_with(
    settings: &Settings,
    courses: &[Course],
    transport: Box<dyn Transport>,
    hub: Option<&HubConfig>,
    shutdown: &Shutdown,
    clock: &RunClock,
) -> Report {
    let sources = Sources {
        sis: transport,
        canvas: Box::new(NothingToAsk),
        canvas_base: None,
    };
    run_with_sources(settings, courses, sources, hub, shutdown, clock)
}

/// The job on `courses`, SIS and Canvas ones asked through their own transport.
pub fn run_with_sources(
    settings: &Settings,
    courses: &[Course],
    sources: Sources,
    hub: Option<&HubConfig>,
    shutdown: &Shutdown,
    clock: &RunClock,
) -> Report {
    run_courses(settings, (courses, &[]), sources, hub, shutdown, clock)
}

/// The job on the configured courses and on configured keys that cannot be synced (each
/// with its reason: they fail alone, keeping their files).
fn run_courses(
    settings: &Settings,
    (courses, unsyncable): (&[Course], &[(String, String)]),
    sources: Sources,
    hub: Option<&HubConfig>,
    shutdown: &Shutdown,
    clock: &RunClock,
) -> Report {
    let mut ending = Ending::default();
    for (course, ago) in config::stale_courses(courses, settings.stale_after_terms) {
        log::warn!(
            course = course.key.as_str();
            "{}: its term was {ago} terms ago; remove the profile from the values file and \
             sync with --prune, so the job stops fetching it and its former students no \
             longer match it",
            course.key
        );
        ending.stale.insert(course.key.clone());
    }
    let result = execute(
        settings,
        (courses, unsyncable),
        sources,
        hub,
        shutdown,
        clock,
        &mut ending,
    );
    if let Err(abort) = result {
        ending.stop = Some((abort.exit(), abort.to_string()));
    }
    conclude(clock, settings.dry_run, ending)
}

fn conclude(clock: &RunClock, dry_run: bool, ending: Ending) -> Report {
    let report = Report::new(clock, dry_run, ending);
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

/// A transport for a run with no courses: it is never asked.
struct NothingToAsk;

impl Transport for NothingToAsk {
    fn send(&self, request: &Request) -> Result<Reply, TransportError> {
        Err(TransportError {
            message: format!("{request}: no credentials were loaded, as no course is configured"),
            retryable: false,
        })
    }
}

/// Runs the stages, recording in `ending` what each one settled, so that a stage that
/// stops the run still leaves the report what the earlier ones found.
fn execute(
    settings: &Settings,
    (courses, unsyncable): (&[Course], &[(String, String)]),
    sources: Sources,
    hub: Option<&HubConfig>,
    shutdown: &Shutdown,
    clock: &RunClock,
    ending: &mut Ending,
) -> Result<(), Abort> {
    let storage = Storage::open(&settings.storage, settings.dry_run)?;
    let head = match &storage.repo {
        Some(repo) => repo.head()?,
        None => audit::Head::default(),
    };
    warn_foreign(&head.foreign);
    let head = head.tree;
    let keys = courses
        .iter()
        .map(|course| course.key.as_str())
        .chain(unsyncable.iter().map(|(key, _)| key.as_str()));
    let baseline = storage.baseline(keys, &head)?;
    let ((fetched, requests), staged_ahead, superseded) =
        storage.fetch_writing_ahead(&head, settings.storage.pack_loose_objects, |finished| {
            fetch_courses(settings, courses, sources, shutdown, finished)
        });
    ending.requests = requests;
    let fetched = fetched.map_err(|_| Abort::Interrupted)?;
    if shutdown.requested() {
        return Err(Abort::Interrupted);
    }

    let paired: Vec<(Course, fetch::Fetched)> = courses.iter().cloned().zip(fetched).collect();
    let previous = plan::Previous {
        head: &head,
        baseline: &baseline,
    };
    let mut plan = plan::plan(
        &paired,
        unsyncable,
        previous,
        &settings.guard,
        settings.prune,
    );
    log_plan(&plan, settings);
    ending.courses = plan.courses.clone();
    if paired.is_empty() && !head.is_empty() && !settings.prune {
        log::warn!(
            "the configuration yields no course profiles while the audit repository holds \
             rosters; nothing is written or removed"
        );
        ending.hub = hub.map(|hub| sync_groups(hub, &head, &head, &plan, settings, shutdown));
        return Ok(());
    }

    let disk = storage.store.survey(&head, &plan.tree)?;
    let reconcile = tree::reconcile(&head, &plan.tree, &disk);
    ending.drift = reconcile.drift.len();
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
    let applied = storage.apply(
        &mut plan,
        &head,
        &reconcile,
        staged_ahead,
        &settings.storage,
        &clock.run_id,
    );
    ending.courses = plan.courses.clone();
    let applied = applied?;
    ending.commit = applied.commit;
    storage.remove_superseded(superseded);
    if let Some(hub) = hub {
        ending.hub = Some(sync_groups(
            hub, &head, &plan.tree, &plan, settings, shutdown,
        ));
        // A signal during the groups sync cut it short (the rosters were applied).
        if shutdown.requested() {
            return Err(Abort::Interrupted);
        }
    }
    match applied.unpublished.is_empty() {
        true => Ok(()),
        false => Err(Abort::Unpublished(format!(
            "output directory: {} could not be published and kept their previous files \
             ({}); every other course was published",
            match applied.unpublished.len() {
                1 => "1 course".to_string(),
                n => format!("{n} courses"),
            },
            applied.unpublished.join(", ")
        ))),
    }
}

/// Says once that the audit HEAD holds entries that are not roster files.
fn warn_foreign(foreign: &[String]) {
    const SHOWN: usize = 5;
    if foreign.is_empty() {
        return;
    }
    let mut names: Vec<String> = foreign
        .iter()
        .take(SHOWN)
        .map(|name| format!("{name:?}"))
        .collect();
    if foreign.len() > SHOWN {
        names.push(format!("and {} more", foreign.len() - SHOWN));
    }
    log::warn!(
        "the audit repository's tree holds {} entries that are not roster files ({}); \
         they are kept in the tree as they are and never written to, read from or removed \
         from the output directory",
        foreign.len(),
        names.join(", ")
    );
}

/// Fetches SIS courses with [`fetch::fetch_all`] and Canvas courses with
/// [`canvas::fetch_all`], side by side (each source with its own `--concurrency` limit),
/// and returns the results in the order of `courses` with the requests of both.
fn fetch_courses(
    settings: &Settings,
    courses: &[Course],
    sources: Sources,
    shutdown: &Shutdown,
    finished: fetch::Finished<'_>,
) -> (Result<Vec<fetch::Fetched>, fetch::Interrupted>, Requests) {
    let (canvas_courses, sis_courses): (Vec<Course>, Vec<Course>) = courses
        .iter()
        .cloned()
        .partition(|course| course.source() == Source::Canvas);
    let client = |transport| {
        Arc::new(Client::new(
            transport,
            settings.retry.clone(),
            shutdown.clone(),
        ))
    };
    let (sis, canvas_client) = (client(sources.sis), client(sources.canvas));
    let canvas_base = sources
        .canvas_base
        .unwrap_or_else(|| CanvasBase::Replay(Default::default()));
    let (sis_fetched, canvas_fetched) = std::thread::scope(|scope| {
        let canvas = scope.spawn(|| {
            canvas::fetch_all(
                Arc::clone(&canvas_client),
                &canvas_base,
                &canvas_courses,
                &settings.canvas.options,
                shutdown,
                finished,
            )
        });
        let sis = fetch::fetch_all(
            Arc::clone(&sis),
            &sis_courses,
            &settings.fetch,
            shutdown,
            finished,
        );
        let canvas = canvas.join().unwrap_or(Err(fetch::Interrupted));
        (sis, canvas)
    });
    let requests = Requests {
        total: sis.requests().total + canvas_client.requests().total,
        retried: sis.requests().retried + canvas_client.requests().retried,
    };
    let merged = sis_fetched.and_then(|sis| {
        let (mut sis, mut canvas) = (sis.into_iter(), canvas_fetched?.into_iter());
        Ok(courses
            .iter()
            .map(|course| {
                let next = match course.source() {
                    Source::Sis => sis.next(),
                    Source::Canvas => canvas.next(),
                };
                next.expect("one result per course")
            })
            .collect())
    });
    (merged, requests)
}

/// Brings the hub's groups to `desired` (the audited tree: HEAD for failed and guarded
/// courses), telling drift from roster changes by `previous`, the tree before this run.
fn sync_groups(
    hub: &HubConfig,
    previous: &Tree,
    desired: &Tree,
    plan: &plan::Plan,
    settings: &Settings,
    shutdown: &Shutdown,
) -> HubReport {
    let rosters = |tree: &Tree| -> CourseRosters {
        tree::rosters_in(tree)
            .into_iter()
            .map(|(key, lists)| (key.to_string(), lists))
            .collect()
    };
    let pruned: Vec<String> = plan
        .courses
        .iter()
        .filter(|course| course.status() == Status::Pruned)
        .map(|course| course.key.clone())
        .collect();
    hub::sync_groups(
        hub,
        &rosters(previous),
        &rosters(desired),
        &pruned,
        settings.dry_run,
        shutdown,
    )
}

/// The configured courses, saying in the log where they were found.
fn load_courses(settings: &Settings) -> Result<config::Profiles, ConfigError> {
    let profiles = settings.load_profiles()?;
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
    Ok(profiles)
}

/// One line per course: its status, both lists' change, and the reason when held
/// back, failed or approved.
fn log_course(course: &CoursePlan) {
    let status = course.status();
    let approved = course.approved();
    let level = match status {
        Status::Failed => log::Level::Error,
        Status::Guarded => log::Level::Warn,
        _ if approved.is_some() => log::Level::Warn,
        _ => log::Level::Info,
    };
    let reason = match (course.error(), approved) {
        (Some(error), _) => format!(": {error}"),
        (None, Some(guard)) => format!(": approved although it {guard}"),
        (None, None) => String::new(),
    };
    let (students, instructors) = (&course.students, &course.instructors);
    log::log!(
        level,
        course = course.key.as_str(),
        status = status.name();
        "{}: {status} (students {} +{} -{}, instructors {} +{} -{}){reason}",
        course.key,
        students.count,
        students.added,
        students.removed,
        instructors.count,
        instructors.added,
        instructors.removed,
    );
}

fn log_plan(plan: &plan::Plan, settings: &Settings) {
    for course in &plan.courses {
        log_course(course);
    }
    for key in &settings.guard.approvals {
        if !plan.courses.iter().any(|course| &course.key == key) {
            log::warn!(
                "--approve {key} (or ROSTER_SYNC_APPROVE) names no configured course; \
                 check its spelling against the keys of the values file"
            );
            continue;
        }
        let used = plan
            .courses
            .iter()
            .any(|course| &course.key == key && course.approved().is_some());
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
    /// Runs `fetch`, telling it what to call as each course finishes, and meanwhile (not
    /// in a dry run) writes the finished courses' changed files ahead ([`ahead`]) and
    /// packs the audit repository when it has more than `threshold` loose objects: both
    /// wait for the disk while the fetch waits for the network. Packing sees the history
    /// before this run, so this run's objects are packed by a later one; what the new
    /// pack supersedes is returned, to be removed after the commit. A failed packing is a
    /// warning, not the run's failure: it only costs disk space until a later run packs.
    fn fetch_writing_ahead<'a, T>(
        &'a self,
        head: &'a Tree,
        threshold: usize,
        fetch: impl FnOnce(fetch::Finished<'_>) -> T,
    ) -> (T, StagedAhead<'a>, Option<Superseded>) {
        let (Some(repo), Some(lock)) = (&self.repo, &self.lock) else {
            return (fetch(&|_, _| {}), StagedAhead::new(), None);
        };
        let writers = repo.object_writers(lock);
        let (fetched, staged, packed) = std::thread::scope(|scope| {
            let packing = scope.spawn(|| writers.pack_if_needed(threshold));
            let ahead = WriteAhead::start(scope, &self.store, &writers, head);
            let feed = ahead.feed();
            let fetched = fetch(&|course, result| feed.finished(course, result));
            let staged = ahead.finish();
            (fetched, staged, packing.join())
        });
        let superseded = match packed {
            Ok(Ok(superseded)) => superseded,
            Ok(Err(error)) => {
                log::warn!("{error}; a later run packs it");
                None
            }
            Err(_) => {
                log::warn!("packing the audit repository failed; a later run packs it");
                None
            }
        };
        (fetched, staged, superseded)
    }

    /// Removes what this run's packing superseded, once the commit is made.
    fn remove_superseded(&self, superseded: Option<Superseded>) {
        let (Some(superseded), Some(lock)) = (superseded, &self.lock) else {
            return;
        };
        if let Err(error) = superseded.remove(lock) {
            log::warn!("{error}; a later run packs it");
        }
    }

    fn open(settings: &StorageSettings, dry_run: bool) -> Result<Storage, Abort> {
        if dry_run {
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

    /// The roster files in the output directory of the courses `keys` that `head` has no
    /// entry for (regular files only): the guards' baseline when the audit history was
    /// lost or recreated.
    fn baseline<'a>(
        &self,
        keys: impl Iterator<Item = &'a str>,
        head: &Tree,
    ) -> Result<Tree, Abort> {
        let mut baseline = Tree::new();
        for key in keys {
            let names = List::BOTH.map(|list| list.file_name(key));
            if names.iter().any(|name| head.contains_key(name)) {
                continue;
            }
            for name in names {
                if let OnDisk::File(bytes) = self.store.read(&name)? {
                    baseline.insert(name, bytes.as_slice().into());
                }
            }
        }
        if !baseline.is_empty() {
            log::warn!(
                "{} roster files in the output directory have no entry in the audit \
                 repository (lost or recreated?); the guards compare against them",
                baseline.len()
            );
        }
        Ok(baseline)
    }

    /// Publishes the plan (nothing in a dry run); returns the new commit, if any, and
    /// the courses that could not be published.
    ///
    /// Files are staged and pruned files removed before the commit, so a file that
    /// cannot be written fails its course before the audit trail records it: that
    /// course keeps its HEAD files in the commit (and on disk), the others go through.
    /// A kill after the commit leaves staged files that the next run cleans up, and
    /// files that differ from HEAD, which it restores.
    fn apply(
        &self,
        plan: &mut plan::Plan,
        head: &Tree,
        reconcile: &tree::Reconcile,
        mut staged_ahead: StagedAhead<'_>,
        settings: &StorageSettings,
        run_id: &str,
    ) -> Result<Applied, Abort> {
        let (Some(repo), Some(lock)) = (&self.repo, &self.lock) else {
            return Ok(Applied::default());
        };
        let mut failed: BTreeMap<String, String> = BTreeMap::new();
        let course_of = |name: &str| {
            List::parse_file_name(name).map_or_else(|| name.to_string(), |(key, _)| key.into())
        };
        // A file staged ahead with the content to publish is kept; the others (a guarded
        // course's, say) are removed when `staged_ahead` is dropped.
        let (mut ready, mut writes) = (Vec::new(), Vec::new());
        for name in &reconcile.writes {
            let content = &plan.tree[name];
            match staged_ahead.remove(name) {
                Some((file, staged)) if staged == *content => ready.push((name.as_str(), Ok(file))),
                _ => writes.push((name.as_str(), &**content)),
            }
        }
        drop(staged_ahead);
        let newly_staged = writes
            .iter()
            .map(|(name, _)| *name)
            .zip(self.store.stage_all(&writes));
        let mut staged = Vec::new();
        for (name, result) in ready.into_iter().chain(newly_staged) {
            match result.and_then(|file| self.store.replaceable(name).map(|()| file)) {
                Ok(file) => staged.push(file),
                Err(error) => {
                    failed.entry(course_of(name)).or_insert(error.to_string());
                }
            }
        }
        for name in &reconcile.removals {
            if let Err(error) = self.store.remove(name) {
                failed.entry(course_of(name)).or_insert(error.to_string());
            }
        }
        // A failed course keeps its HEAD files: its staged files are dropped (which
        // removes them) and its entries in the tree to commit restored.
        staged.retain(|file| !failed.contains_key(&course_of(file.name())));
        for (key, reason) in &failed {
            log::error!("{key}: not published: {reason}");
            plan.fail(key, reason.clone(), head);
        }
        let mut applied = Applied::default();
        if let Some(message) = plan.commit_message(head, run_id, env!("CARGO_PKG_VERSION")) {
            let oid = repo.commit(&plan.tree, &message, &settings.author, lock)?;
            log::info!(
                "audit commit {oid}: {}",
                message.lines().next().unwrap_or_default()
            );
            applied.commit = Some(oid.to_string());
        }
        for file in staged {
            let name = file.name().to_string();
            // Checked before the commit; only a change made meanwhile lands here, and
            // the next run restores the file from HEAD as drift.
            if let Err(error) = file.publish() {
                failed.entry(course_of(&name)).or_insert(error.to_string());
                if let Some(course) = plan.courses.iter_mut().find(|c| c.key == course_of(&name)) {
                    course.decision = plan::Decision::NotSynced(error.to_string());
                }
            }
        }
        self.store.sync()?;
        applied.unpublished = failed.into_keys().collect();
        Ok(applied)
    }
}

/// What [`Storage::apply`] did.
#[derive(Debug, Default)]
struct Applied {
    /// The audit commit made, if any.
    commit: Option<String>,
    /// The keys of the courses (or names of the files) that could not be published.
    unpublished: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::source::replay::ReplayTransport;
    use std::path::Path;

    /// The settings of `sync` with the defaults, storage in `dir`, on the fixtures' values.
    fn settings(dir: &Path) -> Settings {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let args = [
            "roster-sync".into(),
            "sync".into(),
            "--values".into(),
            fixtures.join("values.yaml").into_os_string(),
            "--output-dir".into(),
            dir.join("profiles.d").into_os_string(),
            "--audit-repo".into(),
            dir.join("audit").into_os_string(),
        ];
        let Cli {
            command: Command::Sync(args),
        } = crate::cli::parse(args).unwrap()
        else {
            unreachable!("a sync command line")
        };
        Settings::from_options(&args.job, false, None).unwrap()
    }

    /// The recorded fixtures, except that one section's first page answers 503.
    struct FailingSection(ReplayTransport);

    impl Transport for FailingSection {
        fn send(&self, request: &Request) -> Result<Reply, TransportError> {
            match request {
                Request::EnrollmentPage { section_id, .. } if section_id == "14552" => Ok(Reply {
                    status: 503,
                    body: Vec::new(),
                    retry_after: None,
                    link_next: None,
                    rate_limit_remaining: None,
                }),
                _ => self.0.send(request),
            }
        }
    }

    #[test]
    fn the_whole_job_runs_in_process_with_a_fake_transport() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = settings(dir.path());
        settings.retry.attempts = 1;
        let courses = settings.load_profiles().unwrap().courses;
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let replay = ReplayTransport::new(fixtures.join("sis"));
        let canvas = fixtures.join("canvas");
        let sources = Sources {
            sis: Box::new(FailingSection(replay)),
            canvas: Box::new(CanvasReplayTransport::new(canvas.clone())),
            canvas_base: Some(CanvasBase::Replay(canvas)),
        };
        let report = run_with_sources(
            &settings,
            &courses,
            sources,
            None,
            &Shutdown::new(),
            &RunClock::start(),
        );
        assert_eq!(report.exit, Exit::Failed);
        let statuses: Vec<(&str, Status)> = report
            .courses
            .iter()
            .map(|course| (course.key.as_str(), course.status))
            .collect();
        assert_eq!(
            statuses,
            [
                ("2019-fall-23970", Status::Created),
                ("2020-spring-14552", Status::Failed),
                ("2021-fall-32244", Status::Created),
                ("2022-summer-04321", Status::Created),
                ("canvas-1234567", Status::Created),
            ]
        );
        let written = std::fs::read_dir(dir.path().join("profiles.d"))
            .unwrap()
            .count();
        assert_eq!(
            written, 8,
            "both files of each fetched course, none of the failed one"
        );
        assert!(report.commit.is_some());
    }
}
