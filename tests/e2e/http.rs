//! End-to-end tests of `roster-sync sync` over HTTP, against the local SIS emulator.
//!
//! Each test builds a campus, serves it on loopback, runs the real binary in a temporary
//! directory with fake credentials, and checks the roster files, the JSON report, the exit
//! code and the requests the emulator saw. Every run also asserts that no API key appears
//! in stdout, stderr or the report (the runs log at debug level).

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use crate::support::{Run, Sandbox};
use sis_emulator::{
    Api, Assignment, Campus, Course, Email, EmptyPage, Enrollment, Fault, HrRecord, Options,
    Person, Section, SisServer, Synthetic,
};

const A: &str = "2019-fall-23970";
const B: &str = "2020-spring-01234";
const C: &str = "2021-summer-777";

/// Ada (111111) teaches A and B; 222222 is a GSI known only to the Students API; 333333 is an
/// administrative proxy and 444444 an undisclosed uid (neither may be looked up); 555555 gets
/// an empty HR answer. C has no instructor at all.
fn small_campus() -> Campus {
    let camp = |address: &str| Email::new("CAMP", address);
    let othr = |address: &str| Email::new("OTHR", address);
    let mut undisclosed = Assignment::new("444444", "TNIC");
    undisclosed.disclose = false;
    let mut lecture = Section::new(
        23970,
        vec![
            Enrollment::new(
                "1000001",
                "E",
                vec![camp("Oski@Berkeley.edu"), othr("oski.bear@example.com")],
            ),
            Enrollment::new("1000002", "W", vec![camp("waitlisted@berkeley.edu")]),
            Enrollment::new("1000003", "D", vec![camp("dropped@berkeley.edu")]),
            Enrollment::new(
                "1000004",
                "E",
                vec![
                    othr(" Other.Only@Example.com "),
                    Email::new("HOME", "home@example.com"),
                ],
            ),
            Enrollment::new(
                "1000005",
                "E",
                vec![
                    othr("first.othr@example.com"),
                    camp("camp.later@berkeley.edu"),
                ],
            ),
            Enrollment::new(
                "1000006",
                "E",
                vec![Email::new("HOME", "nohome@example.com")],
            ),
        ],
        vec![
            Assignment::new("111111", "PI"),
            Assignment::new("333333", "APRX"),
        ],
    );
    lecture
        .meetings
        .push(vec![Assignment::new("111111", "PI"), undisclosed]);
    let discussion = Section::new(
        23971,
        vec![
            Enrollment::new("1000001", "E", vec![camp("oski@berkeley.edu")]),
            Enrollment::new("1000007", "E", vec![camp("zed@berkeley.edu")]),
        ],
        vec![Assignment::new("222222", "TNIC")],
    );
    let b = Section::new(
        41234,
        vec![
            Enrollment::new("2000001", "E", vec![camp("b.one@berkeley.edu")]),
            Enrollment::new("2000002", "E", vec![camp("B.Two@berkeley.edu")]),
        ],
        vec![
            Assignment::new("111111", "PI"),
            Assignment::new("555555", "PI"),
        ],
    );
    let c = Section::new(
        50777,
        vec![Enrollment::new(
            "3000001",
            "E",
            vec![camp("c.student@berkeley.edu")],
        )],
        vec![],
    );
    let mut campus = Campus {
        courses: vec![
            Course::new(A, vec![lecture, discussion]),
            Course::new(B, vec![b]),
            Course::new(C, vec![c]),
        ],
        ..Campus::default()
    };
    let busn = |address: &str| Email::new("BUSN", address);
    let people = [
        (
            "111111",
            HrRecord::Emails(vec![
                busn("Ada.Professor@Berkeley.edu"),
                Email::new("HOME", "ada@example.com"),
            ]),
            Some(vec![
                camp("ada.student@berkeley.edu"),
                Email::undisclosed("CAMP", "ada.hidden@berkeley.edu"),
            ]),
        ),
        (
            "222222",
            HrRecord::NotFound,
            Some(vec![
                camp("gsi.person@berkeley.edu"),
                othr("gsi@example.org"),
            ]),
        ),
        (
            "333333",
            HrRecord::Emails(vec![busn("proxy@berkeley.edu")]),
            None,
        ),
        (
            "444444",
            HrRecord::Emails(vec![busn("hidden.uid@berkeley.edu")]),
            None,
        ),
        ("555555", HrRecord::EmptyArray, None),
    ];
    for (uid, hr, student) in people {
        campus
            .people
            .insert(uid.to_string(), Person { hr, student });
    }
    campus
}

/// A sandbox whose values file configures the campus's courses.
fn sandbox_for(campus: &Campus) -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.write_values(&campus.values_yaml());
    sandbox
}

/// `sync` with every API's credentials, logging at debug level (so a leak would show).
fn sync_command(sandbox: &Sandbox, server: &SisServer, args: &[&str]) -> Command {
    let mut command = sandbox.server_job(&["sync"], server);
    command.env("RUST_LOG", "debug").args(args);
    command
}

/// Runs the sync; every request it sent must have kept the API contract.
fn sync(sandbox: &Sandbox, server: &SisServer, args: &[&str]) -> Run {
    let run = sandbox.run(&mut sync_command(sandbox, server, args));
    assert_eq!(
        server.violations(),
        Vec::<String>::new(),
        "{}",
        run.describe()
    );
    run
}

fn roster(sandbox: &Sandbox, key: &str, list: &str) -> Option<String> {
    std::fs::read_to_string(sandbox.output_dir().join(format!("{key}-{list}.txt"))).ok()
}

/// The file content of a roster: one address per line, each ending in `\n`.
fn lines(addresses: &[&str]) -> String {
    addresses.iter().map(|a| format!("{a}\n")).collect()
}

fn owned_lines(addresses: &[String]) -> String {
    addresses.iter().map(|a| format!("{a}\n")).collect()
}

fn start(campus: &Campus) -> SisServer {
    SisServer::start(campus.clone(), Options::default())
}

fn assert_rosters_match_the_oracle(sandbox: &Sandbox, campus: &Campus) {
    for course in &campus.courses {
        let key = course.key();
        assert_eq!(
            roster(sandbox, &key, "students").as_deref(),
            Some(owned_lines(&campus.expected_students(&key)).as_str()),
            "{key} students"
        );
        assert_eq!(
            roster(sandbox, &key, "instructors").as_deref(),
            Some(owned_lines(&campus.expected_instructors(&key)).as_str()),
            "{key} instructors"
        );
    }
}

#[test]
fn emulator_flags_bad_requests() {
    let campus = small_campus();
    let server = start(&campus);
    let address = server.base_url().trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    // No credentials and a wrong page size.
    stream
        .write_all(
            b"GET /sis/v3/enrollments/terms/2198/classes/sections/23970?page-number=1&page-size=50 \
              HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    let violations = server.violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].contains("app_key"), "{violations:?}");
}

#[test]
fn small_campus_rosters_are_exact() {
    let campus = small_campus();
    let server = start(&campus);
    let sandbox = sandbox_for(&campus);
    // A profile that is not a course must be skipped without a request.
    sandbox.write_values(&format!(
        "{}    astr-128-admins:\n      users: [someone]\n",
        campus.values_yaml()
    ));
    let outcome = sync(&sandbox, &server, &[]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.describe());
    assert_eq!(outcome.report["outcome"], "success");
    assert_eq!(outcome.report["exit_code"], 0);

    let students_a = [
        "camp.later@berkeley.edu",
        "oski@berkeley.edu",
        "other.only@example.com",
        "zed@berkeley.edu",
    ];
    let instructors_a = [
        "ada.professor@berkeley.edu",
        "ada.student@berkeley.edu",
        "gsi.person@berkeley.edu",
    ];
    let expected = [
        (A, &students_a[..], &instructors_a[..]),
        (
            B,
            &["b.one@berkeley.edu", "b.two@berkeley.edu"][..],
            &["ada.professor@berkeley.edu", "ada.student@berkeley.edu"][..],
        ),
        (C, &["c.student@berkeley.edu"][..], &[][..]),
    ];
    for (key, students, instructors) in expected {
        assert_eq!(
            roster(&sandbox, key, "students").as_deref(),
            Some(lines(students).as_str()),
            "{key}"
        );
        assert_eq!(
            roster(&sandbox, key, "instructors").as_deref(),
            Some(lines(instructors).as_str()),
            "{key}"
        );
        let course = outcome.course(key);
        assert_eq!(course["status"], "created", "{key}");
        assert_eq!(course["students"]["count"], students.len(), "{key}");
        assert_eq!(course["instructors"]["count"], instructors.len(), "{key}");
        assert!(course["error"].is_null(), "{key}");
    }
    assert_eq!(campus.expected_no_email(A), 1);
    assert_eq!(outcome.course(A)["students"]["no_email"], 1);
    assert_eq!(outcome.course(A)["term_id"], 2198);
    assert_eq!(outcome.course(B)["term_id"], 2202);
    // The hand-written expectations and the emulator's oracle agree.
    assert_rosters_match_the_oracle(&sandbox, &campus);
    assert!(roster(&sandbox, "astr-128-admins", "students").is_none());
    assert_eq!(server.violations(), Vec::<String>::new());
}

#[test]
fn every_request_carries_the_right_headers_and_query() {
    let campus = small_campus();
    let server = start(&campus);
    let sandbox = sandbox_for(&campus);
    let outcome = sync(&sandbox, &server, &[]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.describe());
    assert_eq!(server.violations(), Vec::<String>::new());
    let requests = server.requests();
    assert!(!requests.is_empty());
    for request in &requests {
        let api = Api::of_path(&request.path).unwrap_or_else(|| panic!("{}", request.path));
        let what = format!("{} {}", request.method, request.path);
        assert_eq!(request.method, "GET", "{what}");
        assert_eq!(request.header("accept"), Some("application/json"), "{what}");
        assert_eq!(request.header("app_id"), Some(api.id().as_str()), "{what}");
        assert_eq!(
            request.header("app_key"),
            Some(api.key().as_str()),
            "{what}"
        );
        assert!(
            request
                .header("user-agent")
                .is_some_and(|agent| agent.starts_with("roster-sync/")),
            "{what}"
        );
        let mut query: Vec<(&str, &str)> = request
            .query
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        query.sort();
        match api {
            Api::Classes => {
                let term = if request.path.ends_with("/23970") {
                    "2198"
                } else if request.path.ends_with("/01234") {
                    "2202"
                } else {
                    "2215"
                };
                assert_eq!(
                    query,
                    [("include-secondary", "true"), ("term-id", term)],
                    "{what}"
                );
            }
            Api::Enrollments => {
                assert_eq!(query.len(), 2, "{what}");
                assert_eq!(query[0], ("page-number", "1"), "{what}");
                assert_eq!(query[1], ("page-size", "100"), "{what}");
            }
            Api::Students => {
                assert_eq!(
                    query,
                    [("id-type", "campus-uid"), ("inc-cntc", "true")],
                    "{what}"
                )
            }
            Api::Hr => assert_eq!(query, [("id-type", "campus-uid")], "{what}"),
        }
    }
    // The class number goes into the URL as written, leading zero kept.
    assert_eq!(
        server.requests_to("/sis/v1/classes/sections/01234").len(),
        1
    );
}

#[test]
fn request_count_is_the_minimum() {
    let campus = small_campus();
    let server = start(&campus);
    let sandbox = sandbox_for(&campus);
    let outcome = sync(&sandbox, &server, &[]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.describe());
    // 3 Classes + 3 single-page sections + 2 lookups for each of 111111, 222222, 555555.
    assert_eq!(campus.minimum_requests(), 13);
    assert_eq!(server.requests().len(), 13);
    assert_eq!(outcome.total(), 13);
    assert_eq!(outcome.retried(), 0);
    for uid in ["333333", "444444"] {
        assert!(
            server
                .requests_to(&format!("/hr/v3/employees/{uid}"))
                .is_empty(),
            "{uid}"
        );
        assert!(
            server
                .requests_to(&format!("/sis/v2/students/{uid}"))
                .is_empty(),
            "{uid}"
        );
    }
}

#[test]
fn a_shared_instructor_is_looked_up_once() {
    let campus = small_campus();
    let server = start(&campus);
    let sandbox = sandbox_for(&campus);
    let outcome = sync(&sandbox, &server, &["--concurrency", "8"]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.describe());
    assert_eq!(server.requests_to("/hr/v3/employees/111111").len(), 1);
    assert_eq!(server.requests_to("/sis/v2/students/111111").len(), 1);
    // Both courses still list Ada.
    for key in [A, B] {
        assert!(
            roster(&sandbox, key, "instructors")
                .unwrap()
                .contains("ada.professor@berkeley.edu\n")
        );
    }
}

fn pagination_campus() -> Campus {
    let sizes = [0usize, 99, 100, 101, 250];
    let sections = sizes
        .iter()
        .enumerate()
        .map(|(s, &size)| {
            let enrollments = (0..size)
                .map(|i| {
                    let uid = format!("7{s}{i:04}");
                    Enrollment::new(
                        &uid,
                        "E",
                        vec![Email::new("CAMP", &format!("s{uid}@berkeley.edu"))],
                    )
                })
                .collect();
            Section::new(60000 + s as u64, enrollments, vec![])
        })
        .collect();
    Campus {
        courses: vec![Course::new("2022-fall-31415", sections)],
        ..Campus::default()
    }
}

fn check_pagination(empty_page: EmptyPage) {
    let campus = pagination_campus();
    let server = SisServer::start(
        campus.clone(),
        Options {
            empty_page,
            ..Options::default()
        },
    );
    let sandbox = sandbox_for(&campus);
    let outcome = sync(&sandbox, &server, &[]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.describe());
    let key = "2022-fall-31415";
    assert_eq!(
        outcome.course(key)["students"]["count"],
        99 + 100 + 101 + 250
    );
    assert_eq!(
        roster(&sandbox, key, "students").unwrap().lines().count(),
        99 + 100 + 101 + 250
    );
    assert_rosters_match_the_oracle(&sandbox, &campus);
    let course = campus.course(key);
    for (section, pages) in course.sections.iter().zip([1, 1, 2, 2, 3]) {
        let requested: Vec<String> = server
            .requests_to(&course.enrollments_path(section.id))
            .iter()
            .map(|r| r.query_value("page-number").unwrap().to_string())
            .collect();
        let expected: Vec<String> = (1..=pages).map(|p| p.to_string()).collect();
        assert_eq!(
            requested,
            expected,
            "section of {} students",
            section.enrollments.len()
        );
    }
    assert_eq!(outcome.total() as usize, campus.minimum_requests());
    assert_eq!(server.violations(), Vec::<String>::new());
}

#[test]
fn pagination_edges() {
    check_pagination(EmptyPage::NotFound);
}

#[test]
fn pagination_edges_with_empty_pages_as_empty_lists() {
    check_pagination(EmptyPage::EmptyList);
}

#[test]
fn server_errors_are_retried() {
    let campus = small_campus();
    let server = start(&campus);
    server.fail(
        &campus.course(A).classes_path(),
        vec![Fault::Status(500), Fault::Status(500)],
    );
    let sandbox = sandbox_for(&campus);
    let outcome = sync(&sandbox, &server, &[]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.describe());
    assert_eq!(outcome.status(A), "created");
    assert_eq!(outcome.retried(), 2);
    assert_eq!(outcome.total() as usize, campus.minimum_requests() + 2);
    assert_eq!(
        server.requests_to(&campus.course(A).classes_path()).len(),
        3
    );
    assert_rosters_match_the_oracle(&sandbox, &campus);
}

#[test]
fn retry_after_is_honoured() {
    let campus = small_campus();
    let server = start(&campus);
    let path = campus.course(A).enrollments_path(23971);
    server.fail(&path, vec![Fault::RetryAfter(429, 1)]);
    let sandbox = sandbox_for(&campus);
    let outcome = sync(&sandbox, &server, &[]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.describe());
    assert_eq!(outcome.retried(), 1);
    let attempts = server.requests_to(&path);
    assert_eq!(attempts.len(), 2);
    assert_eq!((attempts[0].status, attempts[1].status), (429, 200));
    let waited = attempts[1].at - attempts[0].at;
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    assert_rosters_match_the_oracle(&sandbox, &campus);
}

#[test]
fn timeouts_are_retried() {
    let campus = small_campus();
    let server = start(&campus);
    let path = campus.course(B).classes_path();
    server.fail(&path, vec![Fault::Delay(Duration::from_secs(4))]);
    let sandbox = sandbox_for(&campus);
    let outcome = sync(&sandbox, &server, &["--timeout", "1"]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.describe());
    assert_eq!(outcome.retried(), 1);
    let attempts = server.requests_to(&path);
    assert_eq!(attempts.len(), 2);
    let waited = attempts[1].at - attempts[0].at;
    // The client gave up after its 1 s timeout, well before the 4 s answer.
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(3),
        "retried after {waited:?}"
    );
    assert_rosters_match_the_oracle(&sandbox, &campus);
}

#[test]
fn a_course_that_keeps_failing_keeps_its_previous_files() {
    let campus = small_campus();
    let server = start(&campus);
    let sandbox = sandbox_for(&campus);
    let first = sync(&sandbox, &server, &[]);
    assert_eq!(first.code, Some(0), "{}", first.describe());
    let before = (
        roster(&sandbox, A, "students"),
        roster(&sandbox, A, "instructors"),
    );

    // New students in A and B; A's Classes call now fails for good.
    server.update_campus(|campus| {
        for key in [A, B] {
            campus.course_mut(key).sections[0]
                .enrollments
                .push(Enrollment::new(
                    "1999999",
                    "E",
                    vec![Email::new("CAMP", "newcomer@berkeley.edu")],
                ));
        }
    });
    let path = campus.course(A).classes_path();
    server.fail_always(&path, Fault::Status(503));
    server.clear_log();
    let second = sync(&sandbox, &server, &["--retries", "2"]);
    assert_eq!(second.code, Some(1), "{}", second.describe());
    assert_eq!(second.report["outcome"], "partial");
    assert_eq!(second.status(A), "failed");
    assert!(
        second.course(A)["error"].is_string(),
        "{}",
        second.describe()
    );
    assert_eq!(
        second.course(A)["students"]["count"],
        4,
        "previous size kept"
    );
    assert_eq!(second.status(B), "updated");
    assert_eq!(second.status(C), "unchanged");
    assert_eq!(server.requests_to(&path).len(), 3, "1 attempt + 2 retries");
    assert_eq!(
        (
            roster(&sandbox, A, "students"),
            roster(&sandbox, A, "instructors")
        ),
        before
    );
    assert!(
        roster(&sandbox, B, "students")
            .unwrap()
            .contains("newcomer@berkeley.edu\n")
    );
}

#[test]
fn truncated_json_fails_the_course() {
    let campus = small_campus();
    let server = start(&campus);
    server.fail(
        &campus.course(A).enrollments_path(23971),
        vec![Fault::Truncated],
    );
    let sandbox = sandbox_for(&campus);
    let outcome = sync(&sandbox, &server, &[]);
    assert_eq!(outcome.code, Some(1), "{}", outcome.describe());
    assert_eq!(outcome.report["outcome"], "partial");
    assert_eq!(outcome.status(A), "failed");
    assert!(outcome.course(A)["error"].is_string());
    assert_eq!(roster(&sandbox, A, "students"), None);
    assert_eq!(roster(&sandbox, A, "instructors"), None);
    for key in [B, C] {
        assert_eq!(outcome.status(key), "created", "{key}");
    }
}

#[test]
fn rejected_hr_credentials_stop_hr_requests_and_never_leak() {
    let campus = small_campus();
    let server = start(&campus);
    server.fail_always("/hr/*", Fault::Status(401));
    let sandbox = sandbox_for(&campus);
    let outcome = sync(&sandbox, &server, &[]);
    // `run` already checked that no key is in stdout, stderr or the report.
    assert_eq!(outcome.code, Some(1), "{}", outcome.describe());
    for key in [A, B] {
        assert_eq!(outcome.status(key), "failed", "{key}");
        let error = outcome.course(key)["error"].as_str().unwrap_or_default();
        assert!(error.contains("UCB_HR_KEY"), "{key}: {error}");
        assert_eq!(
            roster(&sandbox, key, "students"),
            None,
            "{key}: all or nothing"
        );
    }
    // C needs no instructor lookup and is applied.
    assert_eq!(outcome.status(C), "created");
    assert_eq!(outcome.report["outcome"], "partial");
    assert!(
        outcome.stderr.contains("UCB_HR_KEY"),
        "the log names the variable"
    );
    assert_eq!(
        server.requests_to("/hr/").len(),
        1,
        "one HR request in the whole run"
    );
}

#[test]
fn missing_credentials_stop_the_run_before_any_request() {
    let campus = small_campus();
    let server = start(&campus);
    let sandbox = sandbox_for(&campus);
    let mut command = sync_command(&sandbox, &server, &[]);
    command
        .env_remove("SIS_ENROLLMENTS_KEY")
        .env_remove("UCB_HR_ID");
    let outcome = sandbox.run(&mut command);
    assert_eq!(outcome.code, Some(2), "{}", outcome.describe());
    assert!(server.requests().is_empty(), "no request may be sent");
    for var in ["SIS_ENROLLMENTS_KEY", "UCB_HR_ID"] {
        assert!(
            outcome.stderr.contains(var),
            "stderr names {var}: {}",
            outcome.stderr
        );
    }
    assert!(
        !sandbox
            .output_dir()
            .join(format!("{A}-students.txt"))
            .exists()
    );
}

#[test]
fn file_credentials_are_read_and_win() {
    let campus = small_campus();
    let server = start(&campus);
    let sandbox = sandbox_for(&campus);
    let mut command = sync_command(&sandbox, &server, &[]);
    for api in Api::ALL {
        let (id_var, key_var) = api.vars();
        for (var, value) in [(id_var, api.id()), (key_var, api.key())] {
            let file = sandbox.path(&format!("{var}.secret"));
            std::fs::write(&file, format!("  {value}\n")).unwrap();
            // The plain variable is wrong: the file must win.
            command
                .env(format!("{var}_FILE"), &file)
                .env(var, "wrong-value");
        }
    }
    let outcome = sandbox.run(&mut command);
    assert_eq!(outcome.code, Some(0), "{}", outcome.describe());
    assert_eq!(server.violations(), Vec::<String>::new());
    assert_rosters_match_the_oracle(&sandbox, &campus);
}

#[test]
fn legacy_response_shapes_are_accepted() {
    let campus = small_campus();
    let server = SisServer::start(
        campus.clone(),
        Options {
            legacy_shapes: true,
            ..Options::default()
        },
    );
    let sandbox = sandbox_for(&campus);
    let outcome = sync(&sandbox, &server, &[]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.describe());
    assert_rosters_match_the_oracle(&sandbox, &campus);
}

#[test]
fn a_synthetic_campus_matches_the_oracle_with_the_fewest_requests() {
    let campus = Campus::synthetic(&Synthetic {
        courses: 12,
        mean_sections: 3,
        mean_students: 150,
        instructor_pool: 8,
        seed: 7,
    });
    let server = start(&campus);
    let sandbox = sandbox_for(&campus);
    let outcome = sync(&sandbox, &server, &["--concurrency", "4"]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.describe());
    assert_rosters_match_the_oracle(&sandbox, &campus);
    assert_eq!(server.violations(), Vec::<String>::new());
    assert_eq!(server.requests().len(), campus.minimum_requests());
    assert_eq!(outcome.total() as usize, campus.minimum_requests());
}

/// SPEC §3 politeness: at most `--concurrency` requests in flight. With a fixed response
/// time L, a request that arrives while two others are within L of their arrival would be
/// a third in flight; with `--concurrency 2` the server must never see that, and must see
/// two at once (the bound is used, not just respected).
#[test]
fn no_more_requests_in_flight_than_the_concurrency() {
    let campus = Campus::synthetic(&Synthetic {
        courses: 6,
        mean_sections: 2,
        mean_students: 50,
        instructor_pool: 4,
        seed: 3,
    });
    let latency = Duration::from_millis(60);
    let server = SisServer::start(
        campus.clone(),
        Options {
            latency,
            ..Options::default()
        },
    );
    let sandbox = sandbox_for(&campus);
    let outcome = sync(&sandbox, &server, &["--concurrency", "2"]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.describe());
    let arrivals: Vec<_> = server.requests().iter().map(|request| request.at).collect();
    // A margin below L absorbs scheduling jitter on the client's side.
    let window = latency * 9 / 10;
    let most_at_once = arrivals
        .iter()
        .map(|start| {
            arrivals
                .iter()
                .filter(|at| **at >= *start && at.duration_since(*start) < window)
                .count()
        })
        .max()
        .unwrap();
    assert_eq!(most_at_once, 2, "requests in flight at once");
}

/// Every connection the run opens stays open for its next request: with eight requests in
/// flight, ureq's default pool (three idle connections per host) closed the others as they
/// finished, and the run opened dozens (against the gateway, each a TLS handshake).
#[test]
fn a_run_opens_no_more_connections_than_its_concurrency() {
    let campus = Campus::synthetic(&Synthetic {
        courses: 20,
        mean_sections: 3,
        mean_students: 150,
        instructor_pool: 12,
        seed: 5,
    });
    let server = SisServer::start(
        campus.clone(),
        Options {
            latency: Duration::from_millis(5),
            ..Options::default()
        },
    );
    let sandbox = sandbox_for(&campus);
    let outcome = sync(&sandbox, &server, &["--concurrency", "8"]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.describe());
    assert!(server.requests().len() > 100, "{}", server.requests().len());
    assert!(
        server.connections() <= 8,
        "{} connections for {} requests",
        server.connections(),
        server.requests().len()
    );
}

#[test]
fn check_online_looks_every_course_up_and_fails_on_a_class_that_does_not_exist() {
    let campus = small_campus();
    let server = start(&campus);
    let sandbox = Sandbox::new();
    // 2021-fall-99999 is no class of the campus.
    sandbox.write_values(&format!(
        "{}    2021-fall-99999: {{}}\n",
        campus.values_yaml()
    ));
    let mut command = sandbox.job_at(
        &["check", "--online"],
        server.base_url(),
        &sandbox.output_dir(),
        &sandbox.audit_repo(),
        None,
    );
    let run = sandbox.run(crate::support::credentials(&mut command));
    assert_eq!(run.code, Some(2), "{}", run.describe());
    let line = |key: &str| {
        run.stdout
            .lines()
            .find(|line| line.contains(&format!("course {key} ")))
            .unwrap_or_else(|| panic!("a line for {key}:\n{}", run.stdout))
            .to_string()
    };
    assert!(
        line(A).starts_with("ok   ") && line(A).contains("2 sections"),
        "{}",
        line(A)
    );
    assert!(
        line(A).contains("2 instructors"),
        "Ada and the GSI; not the proxy: {}",
        line(A)
    );
    assert!(
        line(C).starts_with("ok   ") && line(C).contains("0 instructors"),
        "{}",
        line(C)
    );
    let missing = line("2021-fall-99999");
    assert!(
        missing.starts_with("FAIL") && missing.contains("no such class"),
        "{missing}"
    );
    // Read-only: one Classes request per course, nothing else asked, nothing written.
    let requests = server.requests();
    assert_eq!(requests.len(), campus.courses.len() + 1, "{requests:?}");
    assert!(
        requests
            .iter()
            .all(|request| request.path.starts_with("/sis/v1/classes/sections/"))
    );
    assert!(!sandbox.output_dir().exists() && !sandbox.audit_repo().exists());
    assert_eq!(server.violations(), Vec::<String>::new());

    // Without --online, check asks nothing.
    let mut offline = sandbox.job_at(
        &["check"],
        server.base_url(),
        &sandbox.output_dir(),
        &sandbox.audit_repo(),
        None,
    );
    let quiet = sandbox.run(crate::support::credentials(&mut offline));
    assert_eq!(quiet.code, Some(0), "{}", quiet.describe());
    assert_eq!(server.requests().len(), campus.courses.len() + 1);
}
