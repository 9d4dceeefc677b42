//! End-to-end tests of what a cluster sees of a run: JSON log lines, the Prometheus
//! metrics file, the Pushgateway push and the termination-log summary.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::{self, Sandbox, assert_exit};

/// Parses a Prometheus text exposition strictly enough to catch format mistakes:
/// every sample belongs to a family announced by `# HELP` and `# TYPE`, names and labels
/// are well formed, values are numbers. Returns `family → [(labels, value)]`.
fn parse_exposition(text: &str) -> BTreeMap<String, Vec<(String, f64)>> {
    let mut families: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
    let mut typed = None::<String>;
    let valid_name = |name: &str| {
        !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(valid_name(name), "{line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap().to_string();
            assert_eq!(parts.next(), Some("gauge"), "{line}");
            families.entry(name.clone()).or_default();
            typed = Some(name);
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').unwrap_or_else(|| panic!("{line}"));
                for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                    let (label, quoted) = pair.split_once('=').unwrap_or_else(|| panic!("{line}"));
                    assert!(valid_name(label) && quoted.starts_with('"'), "{line}");
                }
                (name, labels.to_string())
            }
            None => (series, String::new()),
        };
        assert_eq!(
            typed.as_deref(),
            Some(name),
            "sample before its TYPE: {line}"
        );
        families.get_mut(name).unwrap().push((labels, value));
    }
    families
}

fn no_address_in(text: &str) {
    for domain in ["berkeley.edu", "example.com", "example.org"] {
        assert!(
            !text.contains(domain),
            "an address ({domain}) leaked: {text}"
        );
    }
}

#[test]
fn json_log_lines_parse_and_carry_no_addresses() {
    let sandbox = Sandbox::new();
    let output = sandbox.run(
        sandbox
            .sync_fixtures()
            .args(["--log-format", "json"])
            .env("RUST_LOG", "debug"),
    );
    assert_exit(&output, 0);
    let stderr = output.stderr;
    no_address_in(&stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert!(lines.len() > 5);
    for line in &lines {
        for field in ["timestamp", "level", "target", "message"] {
            assert!(line[field].is_string(), "{field} in {line}");
        }
    }
    for key in ["2019-fall-23970", "canvas-1234567"] {
        let course_lines = lines
            .iter()
            .filter(|line| line["course"] == key && line["status"] == "created")
            .count();
        assert_eq!(course_lines, 1, "{key}");
    }
    let summary = lines.last().unwrap();
    assert_eq!(summary["outcome"], "success");
    assert_eq!(summary["exit_code"], 0);
}

/// Every metric family `src/observe.rs` writes; the test fails when one disappears or a
/// new one appears without being added here.
const FAMILIES: [&str; 14] = [
    "roster_sync_last_run_timestamp_seconds",
    "roster_sync_last_success_timestamp_seconds",
    "roster_sync_run_duration_seconds",
    "roster_sync_exit_code",
    "roster_sync_run_outcome",
    "roster_sync_courses",
    "roster_sync_members",
    "roster_sync_members_added",
    "roster_sync_members_removed",
    "roster_sync_requests",
    "roster_sync_requests_retried",
    "roster_sync_guard_trips",
    "roster_sync_stale_profiles",
    "roster_sync_drift_files",
];

#[test]
fn the_metrics_file_has_every_family() {
    let sandbox = Sandbox::new();
    let metrics = sandbox.path("roster-sync.prom");
    assert_exit(
        &sandbox.run(sandbox.sync_fixtures().arg("--metrics-file").arg(&metrics)),
        0,
    );
    let text = std::fs::read_to_string(&metrics).unwrap();
    no_address_in(&text);
    let families = parse_exposition(&text);
    let names: BTreeSet<&str> = families.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(FAMILIES),
        "exactly the known families (a new one needs a test here) in:\n{text}"
    );
    let value = |family: &str, labels: &str| {
        families[family]
            .iter()
            .find(|(l, _)| l == labels)
            .unwrap_or_else(|| panic!("{family}{{{labels}}}"))
            .1
    };
    assert_eq!(
        value("roster_sync_run_outcome", r#"outcome="success""#),
        1.0
    );
    assert_eq!(value("roster_sync_courses", r#"status="created""#), 5.0);
    assert_eq!(
        value(
            "roster_sync_members",
            r#"course="2019-fall-23970",list="students""#
        ),
        135.0
    );
    // 33 SIS requests and the Canvas course's two pages.
    assert_eq!(value("roster_sync_requests", ""), 35.0);
    assert_eq!(value("roster_sync_requests_retried", ""), 0.0);
    assert_eq!(value("roster_sync_exit_code", ""), 0.0);
    assert_eq!(value("roster_sync_guard_trips", ""), 0.0);
    assert_eq!(value("roster_sync_drift_files", ""), 0.0);
    // The SIS fixture courses' terms (2019 to 2022) are more than two terms ago; the
    // Canvas course has no term, so it is never stale.
    assert_eq!(value("roster_sync_stale_profiles", ""), 4.0);
    let course = |list: &str| format!(r#"course="2019-fall-23970",list="{list}""#);
    assert_eq!(
        value("roster_sync_members_added", &course("students")),
        135.0
    );
    assert_eq!(
        value("roster_sync_members_removed", &course("students")),
        0.0
    );
    assert_eq!(value("roster_sync_members", &course("instructors")), 3.0);
    let canvas = |list: &str| format!(r#"course="canvas-1234567",list="{list}""#);
    assert_eq!(value("roster_sync_members", &canvas("students")), 99.0);
    assert_eq!(
        value("roster_sync_members_added", &canvas("students")),
        99.0
    );
    assert_eq!(value("roster_sync_members", &canvas("instructors")), 3.0);
    // Every status has its sample, zero or not; every course and list has its three.
    assert_eq!(families["roster_sync_courses"].len(), 6, "{text}");
    for family in [
        "roster_sync_members",
        "roster_sync_members_added",
        "roster_sync_members_removed",
    ] {
        assert_eq!(families[family].len(), 5 * 2, "{family} in:\n{text}");
    }
    let last_run = value("roster_sync_last_run_timestamp_seconds", "");
    let first_success = value("roster_sync_last_success_timestamp_seconds", "");
    assert_eq!(first_success, last_run, "a success is the last success");
    let duration = value("roster_sync_run_duration_seconds", "");
    assert!((0.0..60.0).contains(&duration), "{duration}");

    // A failing run keeps the last success time of the earlier run.
    sandbox.write_values("custom: {profiles: [broken]}\n");
    assert_exit(
        &sandbox.run(
            sandbox
                .sync(&support::fixture_api_base())
                .arg("--metrics-file")
                .arg(&metrics),
        ),
        2,
    );
    let failed_text = std::fs::read_to_string(&metrics).unwrap();
    let failed = parse_exposition(&failed_text);
    let names: BTreeSet<&str> = failed.keys().map(String::as_str).collect();
    assert_eq!(names, BTreeSet::from(FAMILIES), "{failed_text}");
    assert_eq!(failed["roster_sync_exit_code"][0].1, 2.0);
    assert!(failed["roster_sync_last_run_timestamp_seconds"][0].1 >= last_run);
    assert_eq!(
        failed["roster_sync_last_success_timestamp_seconds"][0].1,
        first_success
    );
    let outcome = |labels: &str| {
        failed["roster_sync_run_outcome"]
            .iter()
            .find(|(l, _)| l == labels)
            .unwrap()
            .1
    };
    assert_eq!(outcome(r#"outcome="failed""#), 1.0);
    assert_eq!(outcome(r#"outcome="success""#), 0.0);
}

#[test]
fn metrics_are_pushed_to_the_pushgateway() {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    let (pushed, received) = mpsc::channel();
    std::thread::spawn(move || {
        for mut request in server.incoming_requests() {
            let mut body = String::new();
            request.as_reader().read_to_string(&mut body).unwrap();
            let _ = pushed.send((
                request.method().to_string(),
                request.url().to_string(),
                body,
            ));
            let _ = request.respond(tiny_http::Response::empty(200));
        }
    });
    let sandbox = Sandbox::new();
    assert_exit(
        &sandbox.run(
            sandbox
                .sync_fixtures()
                .arg("--pushgateway")
                .arg(format!("http://127.0.0.1:{port}")),
        ),
        0,
    );
    let (method, url, body) = received.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        (method.as_str(), url.as_str()),
        ("PUT", "/metrics/job/roster-sync")
    );
    let families = parse_exposition(&body);
    assert!(families.contains_key("roster_sync_members"));
    let names: BTreeSet<&str> = families.keys().map(String::as_str).collect();
    assert_eq!(names, BTreeSet::from(FAMILIES), "pushed:\n{body}");
    no_address_in(&body);
}

#[test]
fn a_failed_push_does_not_change_the_exit_code() {
    let sandbox = Sandbox::new();
    let output = sandbox.run(
        sandbox
            .sync_fixtures()
            .args(["--pushgateway", "http://127.0.0.1:1"]),
    );
    assert_exit(&output, 0);
    assert!(output.stderr.contains("Pushgateway"));
}

#[test]
fn the_termination_log_gets_the_summary_when_it_exists() {
    let sandbox = Sandbox::new();
    let absent = sandbox.path("absent-termination-log");
    assert_exit(
        &sandbox.run(
            sandbox
                .sync_fixtures()
                .arg("--termination-log")
                .arg(&absent),
        ),
        0,
    );
    assert!(!absent.exists(), "only an existing file is written");

    let present = sandbox.path("termination-log");
    std::fs::write(&present, "").unwrap();
    assert_exit(
        &sandbox.run(
            sandbox
                .sync_fixtures()
                .env("ROSTER_SYNC_TERMINATION_LOG", &present),
        ),
        0,
    );
    let summary = std::fs::read_to_string(&present).unwrap();
    assert_eq!(summary.lines().count(), 1);
    assert!(
        summary.starts_with("outcome success (exit 0): 5 courses"),
        "{summary}"
    );
}
