//! Canvas courses (SPEC §11) end to end: the binary against the Canvas emulator of
//! `sis_emulator::canvas` (and the SIS emulator for mixed runs). Every run checks the
//! emulator saw no contract violation and that the token never shows in the output.

use std::process::Command;
use std::time::{Duration, Instant};

use sis_emulator::canvas::{CanvasCampus, CanvasServer, Fault, Options, TOKEN};
use sis_emulator::{Campus, Options as SisOptions, SisServer, Synthetic};

use crate::support::{self, Run, Sandbox, assert_exit};

fn start(campus: CanvasCampus) -> CanvasServer {
    CanvasServer::start(campus, Options::default())
}

/// `sync` against the Canvas emulator with the token; `--api-base` points nowhere, as no
/// SIS course is configured.
fn command(sandbox: &Sandbox, server: &CanvasServer, args: &[&str]) -> Command {
    let mut command = sandbox.job(&["sync"], "http://127.0.0.1:9");
    command
        .arg("--canvas-api")
        .arg(server.base_url())
        .env("CANVAS_API_TOKEN", TOKEN)
        .env("RUST_LOG", "debug")
        .args(args);
    command
}

#[track_caller]
fn run(sandbox: &Sandbox, server: &CanvasServer, command: &mut Command) -> Run {
    let run = sandbox.run(command);
    assert_eq!(
        server.violations(),
        Vec::<String>::new(),
        "{}",
        run.describe()
    );
    for text in [&run.stdout, &run.stderr, &run.report.to_string()] {
        assert!(
            !text.contains(TOKEN),
            "the token leaked\n{}",
            run.describe()
        );
    }
    run
}

fn sync(sandbox: &Sandbox, server: &CanvasServer, args: &[&str]) -> Run {
    run(sandbox, server, &mut command(sandbox, server, args))
}

fn sandbox_for(campus: &CanvasCampus) -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.write_values(&campus.values_yaml());
    sandbox
}

fn lines(addresses: &[String]) -> String {
    addresses.iter().map(|a| format!("{a}\n")).collect()
}

fn file(sandbox: &Sandbox, course: u64, list: &str) -> Option<String> {
    std::fs::read_to_string(
        sandbox
            .output_dir()
            .join(format!("{}-{list}.txt", CanvasCampus::key(course))),
    )
    .ok()
}

#[track_caller]
fn assert_rosters(sandbox: &Sandbox, campus: &CanvasCampus, course: u64) {
    assert_eq!(
        file(sandbox, course, "students").as_deref(),
        Some(lines(&campus.expected_students(course)).as_str()),
        "students of {course}"
    );
    assert_eq!(
        file(sandbox, course, "instructors").as_deref(),
        Some(lines(&campus.expected_instructors(course)).as_str()),
        "instructors of {course}"
    );
}

#[test]
fn pagination_edges_follow_next_links_with_one_request_per_page() {
    let mut campus = CanvasCampus::default();
    // Students only (no teacher) for exact page edges; 0 is an empty course.
    for (course, students) in [
        (100u64, 0usize),
        (101, 99),
        (102, 100),
        (103, 101),
        (104, 250),
    ] {
        campus.courses.entry(course).or_default();
        for n in 0..students as u64 {
            campus.enroll(course, course * 1000 + n, "StudentEnrollment", course);
        }
    }
    campus.enroll(104, 555, "TeacherEnrollment", 104);
    let server = start(campus.clone());
    let sandbox = sandbox_for(&campus);
    let run = sync(&sandbox, &server, &[]);
    assert_exit(&run, 0);
    for (course, pages) in [(100u64, 1usize), (101, 1), (102, 1), (103, 2), (104, 3)] {
        assert_rosters(&sandbox, &campus, course);
        let requests = server.requests_for(course);
        assert_eq!(requests.len(), pages, "pages of {course}");
        assert_eq!(campus.pages(course), pages);
        let first = &requests[0];
        assert_eq!(
            first.values("type[]"),
            ["StudentEnrollment", "TeacherEnrollment", "TaEnrollment"]
        );
        assert_eq!(first.values("per_page"), ["100"]);
        assert_eq!(first.values("page"), Vec::<&str>::new());
        for later in &requests[1..] {
            assert!(
                later.values("page")[0].starts_with("bookmark:"),
                "{later:?}"
            );
        }
        let entry = run.course(&CanvasCampus::key(course));
        assert_eq!(entry["term_id"], serde_json::Value::Null);
        assert_eq!(entry["status"], "created");
    }
    assert_eq!(run.total(), campus.minimum_requests() as u64);
    assert_eq!(sandbox.commit_count(), 1);
}

#[test]
fn a_next_link_to_another_origin_fails_the_course_and_is_never_asked() {
    let mut campus = CanvasCampus::default();
    campus.add_course(1, 150, 1);
    campus.add_course(2, 5, 1000);
    let server = start(campus.clone());
    let elsewhere = CanvasServer::start(campus.clone(), Options::default());
    server.foreign_next(
        1,
        &format!(
            "{}/api/v1/courses/1/enrollments?page=bookmark:o2s",
            elsewhere.base_url()
        ),
    );
    let sandbox = sandbox_for(&campus);
    let run = sync(&sandbox, &server, &[]);
    assert_exit(&run, 1);
    assert_eq!(run.status("canvas-1"), "failed");
    let error = run.course("canvas-1")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("another origin"), "{error}");
    assert!(elsewhere.requests().is_empty(), "the token went elsewhere");
    assert_eq!(file(&sandbox, 1, "students"), None);
    assert_rosters(&sandbox, &campus, 2);
}

#[test]
fn a_rejected_token_fails_every_canvas_course_with_one_request() {
    let mut campus = CanvasCampus::default();
    for course in 1..=5 {
        campus.add_course(course, 3, course * 100);
    }
    let server = CanvasServer::start(
        campus.clone(),
        Options {
            token: "another-token".into(),
            ..Options::default()
        },
    );
    let sandbox = sandbox_for(&campus);
    let run = sync(&sandbox, &server, &[]);
    assert_exit(&run, 1);
    assert_eq!(run.report["outcome"], "failed");
    for course in 1..=5 {
        assert_eq!(run.status(&CanvasCampus::key(course)), "failed");
    }
    assert_eq!(server.requests().len(), 1, "a 401 costs one request");
    assert!(
        run.stderr.contains("CANVAS_API_TOKEN"),
        "{}",
        run.describe()
    );
}

#[test]
fn throttling_by_403_or_429_is_retried_and_a_permission_403_fails_one_course() {
    let mut campus = CanvasCampus::default();
    campus.add_course(1, 20, 1);
    campus.add_course(2, 20, 100);
    campus.add_course(3, 20, 200);
    let server = start(campus.clone());
    server.fail(1, vec![Fault::RateLimited403]);
    server.fail(2, vec![Fault::TooMany(1)]);
    server.fail_always(3, Fault::Unauthorized);
    let sandbox = sandbox_for(&campus);
    let started = Instant::now();
    let run = sync(&sandbox, &server, &[]);
    assert_exit(&run, 1);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_rosters(&sandbox, &campus, 1);
    assert_rosters(&sandbox, &campus, 2);
    assert_eq!(run.status("canvas-3"), "failed");
    let error = run.course("canvas-3")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("403") && error.contains("Users - view list"),
        "{error}"
    );
    assert_eq!(
        server.requests_for(3).len(),
        1,
        "a permission 403 is not retried"
    );
    assert_eq!(run.retried(), 2);
    assert_eq!(run.total(), 5);
}

#[test]
fn an_unknown_course_fails_as_not_found() {
    let mut campus = CanvasCampus::default();
    campus.add_course(1, 4, 1);
    let server = start(campus.clone());
    let sandbox = Sandbox::new();
    sandbox.write_values("custom:\n  profiles:\n    canvas-1: {}\n    canvas-404: {}\n");
    let run = sync(&sandbox, &server, &[]);
    assert_exit(&run, 1);
    assert_eq!(run.status("canvas-1"), "created");
    assert_eq!(run.status("canvas-404"), "failed");
    let error = run.course("canvas-404")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("course not found"), "{error}");
}

#[test]
fn a_concluded_course_lists_nobody_and_the_empty_guard_holds_it() {
    let mut campus = CanvasCampus::default();
    campus.add_course(7, 30, 1);
    let server = start(campus.clone());
    let sandbox = sandbox_for(&campus);
    assert_exit(&sync(&sandbox, &server, &[]), 0);
    let before = sandbox.roster_files();
    server.update_campus(|campus| campus.courses.get_mut(&7).unwrap().conclude());
    let run = sync(&sandbox, &server, &[]);
    assert_exit(&run, 3);
    assert_eq!(run.status("canvas-7"), "guarded");
    assert_eq!(run.course("canvas-7")["students"]["removed"], 30);
    assert_eq!(sandbox.roster_files(), before, "the rosters are kept");
    assert!(
        run.stderr.contains("no active enrollment"),
        "{}",
        run.describe()
    );
    assert_eq!(sandbox.commit_count(), 1);
}

#[test]
fn a_student_in_two_sections_counts_once_and_users_without_email_are_counted() {
    let mut campus = CanvasCampus::default();
    campus.add_course(3, 12, 1);
    campus.enroll(3, 1, "StudentEnrollment", 31);
    campus.enroll(3, 2, "StudentEnrollment", 32);
    campus.users.get_mut(&5).unwrap().email = None;
    campus.users.get_mut(&6).unwrap().email = Some("  ".into());
    campus.enroll(3, 6, "StudentEnrollment", 32);
    campus.enroll(3, 70, "ObserverEnrollment", 30);
    let server = start(campus.clone());
    let sandbox = sandbox_for(&campus);
    let run = sync(&sandbox, &server, &[]);
    assert_exit(&run, 0);
    assert_rosters(&sandbox, &campus, 3);
    let entry = run.course("canvas-3");
    assert_eq!(entry["students"]["count"], 10);
    assert_eq!(entry["students"]["no_email"], 2);
    assert_eq!(campus.expected_no_email(3), 2);
    assert!(!file(&sandbox, 3, "students").unwrap().contains("u70@"));

    // --canvas-identity login_id uses login IDs, which every user has.
    let by_login = Sandbox::new();
    by_login.write_values(&campus.values_yaml());
    let run = sync(&by_login, &server, &["--canvas-identity", "login_id"]);
    assert_exit(&run, 0);
    assert_eq!(run.course("canvas-3")["students"]["no_email"], 0);
    let students = file(&by_login, 3, "students").unwrap();
    assert!(
        students
            .lines()
            .all(|line| line.starts_with('u') && !line.contains('@'))
    );
    assert_eq!(students.lines().count(), 12);
}

#[test]
fn instructor_types_can_be_narrowed() {
    let mut campus = CanvasCampus::default();
    campus.add_course(4, 3, 1);
    let server = start(campus.clone());
    let sandbox = sandbox_for(&campus);
    let run = sync(
        &sandbox,
        &server,
        &["--canvas-instructor-types", "TeacherEnrollment"],
    );
    assert_exit(&run, 0);
    assert_eq!(
        file(&sandbox, 4, "instructors").as_deref(),
        Some("u900004@example.edu\n")
    );
    assert_eq!(
        server.requests()[0].values("type[]"),
        ["StudentEnrollment", "TeacherEnrollment"]
    );
    let run = sandbox.run(&mut command(
        &sandbox,
        &server,
        &["--canvas-instructor-types", "Teachers"],
    ));
    assert_exit(&run, 2);
}

/// A SIS campus and a Canvas campus configured in one values file, in this order:
/// SIS A, Canvas 1, SIS B, Canvas 2.
fn mixed() -> (Campus, CanvasCampus, String) {
    let sis = Campus::synthetic(&Synthetic {
        courses: 2,
        mean_sections: 2,
        mean_students: 12,
        instructor_pool: 4,
        seed: 3,
    });
    let mut canvas = CanvasCampus::default();
    canvas.add_course(1, 15, 1);
    canvas.add_course(2, 120, 100);
    let keys: Vec<String> = sis.courses.iter().map(|course| course.key()).collect();
    let yaml = format!(
        "custom:\n  profiles:\n    {}: {{}}\n    canvas-1: {{}}\n    {}: {{}}\n    canvas-2: {{}}\n",
        keys[0], keys[1]
    );
    (sis, canvas, yaml)
}

#[test]
fn sis_and_canvas_courses_sync_in_one_run_in_values_file_order() {
    let (sis_campus, canvas_campus, yaml) = mixed();
    let sis = SisServer::start(sis_campus.clone(), SisOptions::default());
    let canvas = start(canvas_campus.clone());
    let sandbox = Sandbox::new();
    sandbox.write_values(&yaml);
    let mut command = sandbox.server_job(&["sync"], &sis);
    command
        .arg("--canvas-api")
        .arg(canvas.base_url())
        .env("CANVAS_API_TOKEN", TOKEN);
    let run = run(&sandbox, &canvas, &mut command);
    assert_exit(&run, 0);
    assert!(sis.violations().is_empty(), "{:?}", sis.violations());
    let keys: Vec<&str> = run.report["courses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|course| course["key"].as_str().unwrap())
        .collect();
    let sis_keys: Vec<String> = sis_campus.courses.iter().map(|c| c.key()).collect();
    assert_eq!(
        keys,
        [sis_keys[0].as_str(), "canvas-1", &sis_keys[1], "canvas-2"]
    );
    for key in &sis_keys {
        assert!(run.course(key)["term_id"].is_u64());
        let students =
            std::fs::read_to_string(sandbox.output_dir().join(format!("{key}-students.txt")))
                .unwrap();
        assert_eq!(students, lines(&sis_campus.expected_students(key)));
    }
    assert_rosters(&sandbox, &canvas_campus, 1);
    assert_rosters(&sandbox, &canvas_campus, 2);
    assert_eq!(
        run.total(),
        (sis.requests().len() + canvas.requests().len()) as u64
    );
    assert_eq!(canvas.requests().len(), canvas_campus.minimum_requests());
    let subject = sandbox.git(&["log", "-1", "--format=%s", "main"]);
    assert!(
        subject.starts_with("roster-sync: 4 courses changed"),
        "{subject}"
    );
}

#[test]
fn a_run_with_both_sources_needs_both_credentials_before_any_request() {
    let (sis_campus, canvas_campus, yaml) = mixed();
    let sis = SisServer::start(sis_campus, SisOptions::default());
    let canvas = start(canvas_campus);
    let sandbox = Sandbox::new();
    sandbox.write_values(&yaml);

    // SIS credentials only.
    let mut only_sis = sandbox.server_job(&["sync"], &sis);
    only_sis.arg("--canvas-api").arg(canvas.base_url());
    let run = sandbox.run(&mut only_sis);
    assert_exit(&run, 2);
    assert!(
        run.report["error"]
            .as_str()
            .unwrap()
            .contains("CANVAS_API_TOKEN")
    );

    // The Canvas token only.
    let mut only_canvas = sandbox.job(&["sync"], sis.base_url());
    only_canvas
        .arg("--canvas-api")
        .arg(canvas.base_url())
        .env("CANVAS_API_TOKEN", TOKEN);
    let run = sandbox.run(&mut only_canvas);
    assert_exit(&run, 2);
    assert!(
        run.report["error"]
            .as_str()
            .unwrap()
            .contains("SIS_CLASSES_ID")
    );

    // Canvas courses but no --canvas-api.
    let mut no_api = sandbox.server_job(&["sync"], &sis);
    no_api.env("CANVAS_API_TOKEN", TOKEN);
    let run = sandbox.run(&mut no_api);
    assert_exit(&run, 2);
    assert!(
        run.report["error"]
            .as_str()
            .unwrap()
            .contains("--canvas-api")
    );

    assert!(sis.requests().is_empty() && canvas.requests().is_empty());
    assert!(!sandbox.output_dir().exists());

    // check says the same, without a request.
    let mut check = sandbox.command();
    check
        .args(["check", "--values"])
        .arg(sandbox.values())
        .arg("--canvas-api")
        .arg(canvas.base_url())
        .args(["--api-base", sis.base_url()]);
    support::credentials(&mut check);
    let run = sandbox.run(&mut check);
    assert_exit(&run, 2);
    assert!(
        run.stdout.contains("FAIL canvas: missing credentials"),
        "{}",
        run.stdout
    );

    // A Canvas-only values file needs no SIS credentials.
    let canvas_only = Sandbox::new();
    canvas_only.write_values("custom:\n  profiles:\n    canvas-1: {}\n");
    let mut command = canvas_only.job(&["sync"], sis.base_url());
    command
        .arg("--canvas-api")
        .arg(canvas.base_url())
        .env("CANVAS_API_TOKEN", TOKEN);
    assert_exit(&canvas_only.run(&mut command), 0);
    assert!(sis.requests().is_empty());
}

#[test]
fn the_token_can_come_from_a_file_and_goes_out_as_a_bearer_header() {
    let mut campus = CanvasCampus::default();
    campus.add_course(9, 2, 1);
    let server = start(campus.clone());
    let sandbox = sandbox_for(&campus);
    let token_file = sandbox.path("canvas-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let mut command = command(&sandbox, &server, &[]);
    command
        .env("CANVAS_API_TOKEN", "wrong")
        .env("CANVAS_API_TOKEN_FILE", &token_file);
    let run = run(&sandbox, &server, &mut command);
    assert_exit(&run, 0);
    assert_eq!(
        server.requests()[0].authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
}
