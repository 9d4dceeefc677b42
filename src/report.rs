//! Reporting: the JSON report of a run and its one-line summary, built once from the
//! run's final values.
//!
//! Invariant: the exit code and the outcome are derived here, in one place, from what
//! happened (see [`Exit`] for the precedence), so the report, the log, the metrics and
//! the process agree.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::time::{Instant, SystemTime};

use serde::Serialize;

use crate::exit::Exit;
use crate::hub::HubReport;
use crate::plan::{CoursePlan, Status};
use crate::source::Requests;

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Partial,
    Guarded,
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Success,
        Outcome::Partial,
        Outcome::Guarded,
        Outcome::Failed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Partial => "partial",
            Outcome::Guarded => "guarded",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct StudentsReport {
    pub count: usize,
    pub added: usize,
    pub removed: usize,
    pub no_email: usize,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct InstructorsReport {
    pub count: usize,
    pub added: usize,
    pub removed: usize,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct CourseReport {
    pub key: String,
    pub term_id: Option<u32>,
    pub status: Status,
    pub students: StudentsReport,
    pub instructors: InstructorsReport,
    pub error: Option<String>,
    /// The guard an approval let through, when one did.
    pub approved: Option<String>,
    /// The profile's term is `--stale-after-terms` or more terms ago: due for removal.
    pub stale: bool,
}

impl From<&CoursePlan> for CourseReport {
    fn from(course: &CoursePlan) -> Self {
        CourseReport {
            key: course.key.clone(),
            term_id: course.term_id,
            status: course.status(),
            students: StudentsReport {
                count: course.students.count,
                added: course.students.added,
                removed: course.students.removed,
                no_email: course.no_email,
            },
            instructors: InstructorsReport {
                count: course.instructors.count,
                added: course.instructors.added,
                removed: course.instructors.removed,
            },
            error: course.error(),
            approved: course.approved(),
            stale: false,
        }
    }
}

/// When and as what a run started.
#[derive(Debug, Clone)]
pub struct RunClock {
    pub run_id: String,
    started_at: String,
    started: Instant,
}

impl RunClock {
    pub fn start() -> Self {
        let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        RunClock {
            run_id: format!("{started_at}-{}", std::process::id()),
            started_at,
            started: Instant::now(),
        }
    }
}

/// What a run got to before it ended, and why it ended early if it did.
#[derive(Debug, Default)]
pub struct Ending {
    pub courses: Vec<CoursePlan>,
    pub drift: usize,
    pub commit: Option<String>,
    pub requests: Requests,
    /// The keys of the configured courses whose profiles are stale.
    pub stale: BTreeSet<String>,
    /// What the JupyterHub groups sync did, when `--hub-api` is given and it ran.
    pub hub: Option<HubReport>,
    /// The exit and the message of a run stopped before it could apply its plan.
    pub stop: Option<(Exit, String)>,
}

#[derive(Serialize, Debug, Clone)]
pub struct Report {
    pub outcome: Outcome,
    pub exit_code: u8,
    pub dry_run: bool,
    pub commit: Option<String>,
    pub drift: usize,
    pub requests: Requests,
    pub courses: Vec<CourseReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub: Option<HubReport>,
    pub error: Option<String>,
    pub run_id: String,
    pub version: &'static str,
    pub started_at: String,
    pub duration_seconds: f64,
    #[serde(skip)]
    pub exit: Exit,
}

impl Report {
    /// The report of a run that started at `clock` and ended as `ending` says.
    pub fn new(clock: &RunClock, dry_run: bool, ending: Ending) -> Self {
        let courses: Vec<CourseReport> = ending
            .courses
            .iter()
            .map(|course| CourseReport {
                stale: ending.stale.contains(&course.key),
                ..CourseReport::from(course)
            })
            .collect();
        let count = |status| courses.iter().filter(|c| c.status == status).count();
        let (guarded, failed) = (count(Status::Guarded), count(Status::Failed));
        let hub_failed = ending.hub.as_ref().is_some_and(|hub| hub.error.is_some());
        let (outcome, exit, error) = match ending.stop {
            Some((exit, message)) => (Outcome::Failed, exit, Some(message)),
            None if guarded > 0 => (Outcome::Guarded, Exit::Guarded, None),
            None if failed > 0 && failed == courses.len() => (Outcome::Failed, Exit::Failed, None),
            None if failed > 0 => (Outcome::Partial, Exit::Failed, None),
            None if hub_failed => (Outcome::Partial, Exit::Hub, None),
            None => (Outcome::Success, Exit::Success, None),
        };
        Report {
            outcome,
            exit_code: exit.code(),
            dry_run,
            commit: ending.commit,
            drift: ending.drift,
            requests: ending.requests,
            courses,
            hub: ending.hub,
            error,
            run_id: clock.run_id.clone(),
            version: env!("CARGO_PKG_VERSION"),
            started_at: clock.started_at.clone(),
            duration_seconds: clock.started.elapsed().as_secs_f64(),
            exit,
        }
    }

    /// How many courses have `status`.
    pub fn count(&self, status: Status) -> usize {
        self.courses.iter().filter(|c| c.status == status).count()
    }

    /// Writes the report to `path` (`-` is stdout).
    pub fn write_to(&self, path: &Path) -> std::io::Result<()> {
        let mut json = serde_json::to_vec_pretty(self).expect("a report serialises");
        json.push(b'\n');
        if path == Path::new("-") {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&json)?;
            return stdout.flush();
        }
        std::fs::write(path, json)
    }

    /// One line that says how the run went, for the log.
    pub fn summary(&self) -> String {
        let statuses = Status::ALL
            .into_iter()
            .map(|status| format!("{} {status}", self.count(status)))
            .collect::<Vec<_>>()
            .join(", ");
        let hub = match &self.hub {
            Some(hub) => format!(
                "; hub groups {} (+{} -{}, {} created, {} deleted, drift {}, {} not in hub{})",
                hub.groups,
                hub.added,
                hub.removed,
                hub.created,
                hub.deleted,
                hub.drift,
                hub.not_in_hub,
                if hub.error.is_some() { ", error" } else { "" }
            ),
            None => String::new(),
        };
        format!(
            "outcome {} (exit {}): {} courses ({statuses}); drift {}; requests {} ({} retried){hub}; commit {}{}",
            self.outcome.name(),
            self.exit_code,
            self.courses.len(),
            self.drift,
            self.requests.total,
            self.requests.retried,
            self.commit.as_deref().unwrap_or("none"),
            if self.dry_run { " (dry run)" } else { "" },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::GuardPolicy;
    use crate::plan::{Decision, ListPlan};
    use crate::source::FetchError;

    fn course(decision: Decision) -> CoursePlan {
        CoursePlan {
            key: "k".into(),
            term_id: None,
            decision,
            students: ListPlan::default(),
            instructors: ListPlan::default(),
            no_email: 0,
        }
    }

    fn guarded() -> Decision {
        let policy = GuardPolicy::default();
        Decision::Guarded(vec![policy.check(None, 1, 1, 0).unwrap()])
    }

    fn concluded(decisions: Vec<Decision>, stop: Option<Exit>) -> (Outcome, u8) {
        let ending = Ending {
            courses: decisions.into_iter().map(course).collect(),
            stop: stop.map(|exit| (exit, "why".to_string())),
            ..Ending::default()
        };
        let report = Report::new(&RunClock::start(), false, ending);
        (report.outcome, report.exit_code)
    }

    #[test]
    fn outcome_and_exit_code_follow_the_precedence() {
        let failed = || Decision::Failed(FetchError::Internal);
        let updated = || Decision::Updated { approved: vec![] };
        let pruned = Decision::Pruned { approved: None };
        assert_eq!(concluded(vec![], None), (Outcome::Success, 0));
        assert_eq!(
            concluded(vec![Decision::Unchanged, Decision::Created, pruned], None),
            (Outcome::Success, 0)
        );
        assert_eq!(
            concluded(vec![updated(), failed()], None),
            (Outcome::Partial, 1)
        );
        assert_eq!(
            concluded(vec![failed(), failed()], None),
            (Outcome::Failed, 1)
        );
        assert_eq!(
            concluded(vec![failed(), guarded()], None),
            (Outcome::Guarded, 3)
        );
        assert_eq!(
            concluded(vec![updated()], Some(Exit::Locked)),
            (Outcome::Failed, 4)
        );
        assert_eq!(concluded(vec![], Some(Exit::Config)), (Outcome::Failed, 2));
        assert_eq!(concluded(vec![], Some(Exit::Storage)), (Outcome::Failed, 5));
        assert_eq!(
            concluded(vec![guarded()], Some(Exit::Interrupted)),
            (Outcome::Failed, 6)
        );
    }

    #[test]
    fn a_hub_failure_is_exit_7_unless_something_worse_happened() {
        let hub = |error: Option<&str>| HubReport {
            error: error.map(str::to_string),
            ..HubReport::default()
        };
        let run = |decisions: Vec<Decision>, hub: HubReport| {
            let ending = Ending {
                courses: decisions.into_iter().map(course).collect(),
                hub: Some(hub),
                ..Ending::default()
            };
            let report = Report::new(&RunClock::start(), false, ending);
            (report.outcome, report.exit_code)
        };
        assert_eq!(
            run(vec![Decision::Created], hub(None)),
            (Outcome::Success, 0)
        );
        assert_eq!(
            run(vec![Decision::Created], hub(Some("403"))),
            (Outcome::Partial, 7)
        );
        let failed = Decision::Failed(FetchError::Internal);
        assert_eq!(
            run(vec![Decision::Created, failed], hub(Some("403"))),
            (Outcome::Partial, 1)
        );
        assert_eq!(
            run(vec![guarded()], hub(Some("403"))),
            (Outcome::Guarded, 3)
        );
    }

    #[test]
    fn the_report_has_the_spec_fields() {
        let ending = Ending {
            courses: vec![course(Decision::Created)],
            ..Ending::default()
        };
        let report = Report::new(&RunClock::start(), true, ending);
        let json = serde_json::to_value(&report).unwrap();
        for field in [
            "outcome",
            "exit_code",
            "dry_run",
            "commit",
            "drift",
            "requests",
            "courses",
        ] {
            assert!(json.get(field).is_some(), "{field}");
        }
        assert_eq!(json["outcome"], "success");
        assert_eq!(json["commit"], serde_json::Value::Null);
        assert_eq!(json["courses"][0]["status"], "created");
        assert_eq!(json["courses"][0]["students"]["no_email"], 0);
        assert_eq!(json["requests"]["retried"], 0);
        assert!(json.get("exit").is_none());
        assert!(json.get("hub").is_none(), "no hub object without --hub-api");
    }
}
