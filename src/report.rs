//! Reporting: the exit code, the JSON report of SPEC §8, and the closing log line.
//!
//! The exit code is derived in one place from what happened, with the precedence of the
//! SPEC (2 > 5 > 4 > 6 > 3 > 1 > 0), so the report, the log and the process agree.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::plan::{CoursePlan, Status};
use crate::source::RequestCounts;

/// Why a run ended early, before or instead of applying the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Config,
    Storage,
    Locked,
    Interrupted,
}

impl Stop {
    pub fn exit_code(self) -> u8 {
        match self {
            Stop::Config => 2,
            Stop::Storage => 5,
            Stop::Locked => 4,
            Stop::Interrupted => 6,
        }
    }
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Partial,
    Guarded,
    Failed,
}

impl Outcome {
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
pub struct Requests {
    pub total: u64,
    pub retried: u64,
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
    pub status: &'static str,
    pub students: StudentsReport,
    pub instructors: InstructorsReport,
    pub error: Option<String>,
    /// The guard an approval let through, when one did.
    pub approved: Option<String>,
}

impl From<&CoursePlan> for CourseReport {
    fn from(course: &CoursePlan) -> Self {
        CourseReport {
            key: course.key.clone(),
            term_id: course.term_id,
            status: course.status.name(),
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
            error: course.error.clone(),
            approved: course.approved.clone(),
        }
    }
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
    pub error: Option<String>,
    pub run_id: String,
    pub version: &'static str,
    pub started_at: String,
    pub duration_seconds: f64,
}

impl Report {
    pub fn new(run_id: String, started_at: String, dry_run: bool) -> Self {
        Report {
            outcome: Outcome::Success,
            exit_code: 0,
            dry_run,
            commit: None,
            drift: 0,
            requests: Requests {
                total: 0,
                retried: 0,
            },
            courses: Vec::new(),
            error: None,
            run_id,
            version: env!("CARGO_PKG_VERSION"),
            started_at,
            duration_seconds: 0.0,
        }
    }

    pub fn set_requests(&mut self, counts: RequestCounts) {
        self.requests = Requests {
            total: counts.total,
            retried: counts.retried,
        };
    }

    /// Settles outcome and exit code: from the early stop if there was one, else from
    /// the courses' statuses.
    pub fn conclude(&mut self, stop: Option<(Stop, String)>) {
        if let Some((stop, message)) = stop {
            self.outcome = Outcome::Failed;
            self.exit_code = stop.exit_code();
            self.error = Some(message);
            return;
        }
        let count = |status: &str| self.courses.iter().filter(|c| c.status == status).count();
        let (guarded, failed) = (count(Status::Guarded.name()), count(Status::Failed.name()));
        (self.outcome, self.exit_code) = if guarded > 0 {
            (Outcome::Guarded, 3)
        } else if failed > 0 && failed == self.courses.len() {
            (Outcome::Failed, 1)
        } else if failed > 0 {
            (Outcome::Partial, 1)
        } else {
            (Outcome::Success, 0)
        };
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
        let count = |status: Status| {
            self.courses
                .iter()
                .filter(|c| c.status == status.name())
                .count()
        };
        let statuses = [
            Status::Created,
            Status::Updated,
            Status::Unchanged,
            Status::Pruned,
            Status::Guarded,
            Status::Failed,
        ]
        .into_iter()
        .map(|status| format!("{} {}", count(status), status.name()))
        .collect::<Vec<_>>()
        .join(", ");
        format!(
            "outcome {} (exit {}): {} courses ({statuses}); drift {}; requests {} ({} retried); commit {}{}",
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

    fn course(status: Status) -> CourseReport {
        CourseReport {
            key: "k".into(),
            term_id: None,
            status: status.name(),
            students: StudentsReport {
                count: 0,
                added: 0,
                removed: 0,
                no_email: 0,
            },
            instructors: InstructorsReport {
                count: 0,
                added: 0,
                removed: 0,
            },
            error: None,
            approved: None,
        }
    }

    fn concluded(statuses: &[Status], stop: Option<Stop>) -> (Outcome, u8) {
        let mut report = Report::new("r".into(), "t".into(), false);
        report.courses = statuses.iter().copied().map(course).collect();
        report.conclude(stop.map(|stop| (stop, "why".to_string())));
        (report.outcome, report.exit_code)
    }

    #[test]
    fn outcome_and_exit_code_follow_the_precedence() {
        use Status::*;
        assert_eq!(concluded(&[], None), (Outcome::Success, 0));
        assert_eq!(
            concluded(&[Unchanged, Created, Pruned], None),
            (Outcome::Success, 0)
        );
        assert_eq!(concluded(&[Updated, Failed], None), (Outcome::Partial, 1));
        assert_eq!(concluded(&[Failed, Failed], None), (Outcome::Failed, 1));
        assert_eq!(concluded(&[Failed, Guarded], None), (Outcome::Guarded, 3));
        assert_eq!(
            concluded(&[Updated], Some(Stop::Locked)),
            (Outcome::Failed, 4)
        );
        assert_eq!(concluded(&[], Some(Stop::Config)), (Outcome::Failed, 2));
        assert_eq!(concluded(&[], Some(Stop::Storage)), (Outcome::Failed, 5));
        assert_eq!(
            concluded(&[Guarded], Some(Stop::Interrupted)),
            (Outcome::Failed, 6)
        );
    }

    #[test]
    fn the_report_has_the_spec_fields() {
        let mut report = Report::new("r".into(), "t".into(), true);
        report.courses.push(course(Status::Created));
        report.conclude(None);
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
    }
}
