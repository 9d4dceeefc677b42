//! Observability for a batch job: Prometheus metrics (a node-exporter textfile and/or a
//! Pushgateway push) and the one-line summary Kubernetes shows in `kubectl describe`.
//!
//! Invariants: labels carry course keys, list names and statuses, never an address;
//! nothing here changes the exit code (a failed push is a warning); the textfile is
//! replaced atomically, and it carries the last success time forward from the previous
//! file, because a failed run must not make an alert forget when the job last worked.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::plan::Status;
use crate::report::{CourseReport, Outcome, Report};

const LAST_SUCCESS: &str = "roster_sync_last_success_timestamp_seconds";

/// Where the run's outcome is published besides the log and the report.
#[derive(Clone, Debug, Default)]
pub struct Sinks {
    pub metrics_file: Option<PathBuf>,
    pub pushgateway: Option<String>,
    /// Written only when the file already exists (Kubernetes creates it in a pod).
    pub termination_log: Option<PathBuf>,
}

pub fn publish(report: &Report, sinks: &Sinks) {
    let now = unix_seconds(SystemTime::now());
    if let Some(path) = &sinks.metrics_file {
        let previous_success = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| sample(&text, LAST_SUCCESS));
        let text = metrics(report, now, previous_success);
        if let Err(error) = write_atomically(path, text.as_bytes()) {
            log::warn!("cannot write the metrics file {}: {error}", path.display());
        }
    }
    if let Some(url) = &sinks.pushgateway {
        push(url, report, now);
    }
    if let Some(path) = sinks
        .termination_log
        .as_deref()
        .filter(|path| path.exists())
        && let Err(error) = std::fs::write(path, format!("{}\n", report.summary()))
    {
        log::warn!("cannot write {}: {error}", path.display());
    }
}

fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

/// The value of an unlabelled sample in a Prometheus text exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes metric families in the Prometheus text format.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, help: &str, samples: &[(String, f64)]) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(self.0, "{name}{labels} {value}");
        }
    }

    fn single(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, help, &[(String::new(), value)]);
    }
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", escape(value)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// The metrics of one run. `previous_success` is carried forward when this run did not
/// succeed; it is left out when there never was a success.
pub fn metrics(report: &Report, now: f64, previous_success: Option<f64>) -> String {
    let mut out = Exposition(String::new());
    out.single(
        "roster_sync_last_run_timestamp_seconds",
        "Unix time the last run finished.",
        now,
    );
    let success = report.outcome == Outcome::Success;
    if let Some(when) = if success { Some(now) } else { previous_success } {
        out.single(
            LAST_SUCCESS,
            "Unix time of the last run in which every course synced.",
            when,
        );
    }
    out.single(
        "roster_sync_run_duration_seconds",
        "Duration of the last run.",
        report.duration_seconds,
    );
    out.single(
        "roster_sync_exit_code",
        "Exit code of the last run (`roster-sync --help` lists the codes).",
        f64::from(report.exit_code),
    );
    out.family(
        "roster_sync_run_outcome",
        "1 for the outcome of the last run, 0 for the others.",
        &Outcome::ALL.map(|o| {
            (
                labels(&[("outcome", o.name())]),
                f64::from(u8::from(o == report.outcome)),
            )
        }),
    );
    out.family(
        "roster_sync_courses",
        "Courses of the last run by status.",
        &Status::ALL.map(|status| {
            (
                labels(&[("status", status.name())]),
                report.count(status) as f64,
            )
        }),
    );
    let per_list = |pick: fn(&CourseReport) -> [usize; 2]| {
        report
            .courses
            .iter()
            .flat_map(|course| {
                let [students, instructors] = pick(course);
                [("students", students), ("instructors", instructors)].map(|(list, value)| {
                    (
                        labels(&[("course", &course.key), ("list", list)]),
                        value as f64,
                    )
                })
            })
            .collect::<Vec<_>>()
    };
    out.family(
        "roster_sync_members",
        "Members per course and list after the last run (kept size for failed and guarded courses).",
        &per_list(|c| [c.students.count, c.instructors.count]),
    );
    out.family(
        "roster_sync_members_added",
        "Members added by the last run (held back for guarded courses).",
        &per_list(|c| [c.students.added, c.instructors.added]),
    );
    out.family(
        "roster_sync_members_removed",
        "Members removed by the last run (held back for guarded courses).",
        &per_list(|c| [c.students.removed, c.instructors.removed]),
    );
    out.single(
        "roster_sync_requests",
        "HTTP attempts of the last run, retries included.",
        report.requests.total as f64,
    );
    out.single(
        "roster_sync_requests_retried",
        "HTTP attempts of the last run that were retries.",
        report.requests.retried as f64,
    );
    out.single(
        "roster_sync_guard_trips",
        "Courses whose change a guard held back in the last run.",
        report.count(Status::Guarded) as f64,
    );
    out.single(
        "roster_sync_stale_profiles",
        "Configured course profiles whose term is --stale-after-terms or more terms ago.",
        report.courses.iter().filter(|course| course.stale).count() as f64,
    );
    out.single(
        "roster_sync_drift_files",
        "Roster files found changed out of band (and restored) in the last run.",
        report.drift as f64,
    );
    out.0
}

fn write_atomically(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let temp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&temp, content)?;
    std::fs::rename(&temp, path)
}

/// Pushes the run's metrics: PUT replaces the group after a success; after a failure
/// POST replaces only the metrics sent, which leaves the last success time in place.
fn push(url: &str, report: &Report, now: f64) {
    let success = report.outcome == Outcome::Success;
    let body = metrics(report, now, None);
    let endpoint = format!("{}/metrics/job/roster-sync", url.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let request = if success {
        agent.put(&endpoint)
    } else {
        agent.post(&endpoint)
    };
    match request
        .header("Content-Type", "text/plain; version=0.0.4")
        .send(body)
    {
        Ok(response) if response.status().is_success() => {
            log::info!("pushed metrics to the Pushgateway")
        }
        Ok(response) => log::warn!(
            "the Pushgateway answered HTTP {} to the metrics push",
            response.status().as_u16()
        ),
        Err(error) => log::warn!("cannot push metrics to the Pushgateway: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Ending, RunClock};

    fn report(outcome: Outcome) -> Report {
        let mut report = Report::new(&RunClock::start(), false, Ending::default());
        report.outcome = outcome;
        report
    }

    #[test]
    fn last_success_is_now_after_success_and_carried_forward_otherwise() {
        let ok = metrics(&report(Outcome::Success), 200.0, Some(100.0));
        assert_eq!(sample(&ok, LAST_SUCCESS), Some(200.0));
        let failed = metrics(&report(Outcome::Failed), 300.0, Some(100.0));
        assert_eq!(sample(&failed, LAST_SUCCESS), Some(100.0));
        assert_eq!(
            sample(&failed, "roster_sync_last_run_timestamp_seconds"),
            Some(300.0)
        );
        let never = metrics(&report(Outcome::Failed), 300.0, None);
        assert_eq!(sample(&never, LAST_SUCCESS), None);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(labels(&[("course", "a\"b\\c")]), r#"{course="a\"b\\c"}"#);
    }
}
