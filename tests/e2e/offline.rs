//! End-to-end tests of the binary on the bundled offline fixtures (`--api-base file://…`).
//!
//! Every test runs the real binary in its own sandbox (isolated HOME, no ROSTER_SYNC_* or
//! credential variables from the caller) and checks what it leaves behind: the roster files
//! against the independently derived `tests/expected/fixtures/`, the JSON report, the exit
//! code and the audit repository (through the `git` command line, not libgit2).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{self, Run, Sandbox, assert_exit};
use serde_json::Value;

/// The fixture courses with their term ids (file order of `fixtures/values.yaml`); the
/// Canvas course has none.
const COURSES: [(&str, Option<u64>); 5] = [
    ("2019-fall-23970", Some(2198)),
    ("2020-spring-14552", Some(2202)),
    ("2021-fall-32244", Some(2218)),
    ("2022-summer-04321", Some(2225)),
    ("canvas-1234567", None),
];

/// The course whose enrollment page the "changed fixture" tests edit.
const CHANGED: &str = "2020-spring-14552";

/// Mail domains used by the fixtures.
const DOMAINS: [&str; 3] = ["berkeley.edu", "example.com", "example.org"];

const CREDENTIAL_VARS: [&str; 8] = [
    "SIS_CLASSES_ID",
    "SIS_CLASSES_KEY",
    "SIS_ENROLLMENTS_ID",
    "SIS_ENROLLMENTS_KEY",
    "SIS_STUDENTS_ID",
    "SIS_STUDENTS_KEY",
    "UCB_HR_ID",
    "UCB_HR_KEY",
];

// ---------------------------------------------------------------------------------------
// helpers

fn expected_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expected/fixtures")
}

fn expected_json(name: &str) -> Value {
    let text = fs::read_to_string(expected_dir().join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The expected rosters with waitlisted students (instructor files are the usual ones).
fn expected_with_waitlisted() -> BTreeMap<String, Vec<u8>> {
    let mut files = support::expected_fixture_files();
    for (name, content) in support::read_dir_files(&expected_dir().join("with-waitlisted")) {
        assert!(name.ends_with("-students.txt"), "{name}");
        files.insert(name, content);
    }
    files
}

fn students(key: &str) -> String {
    format!("{key}-students.txt")
}

fn instructors(key: &str) -> String {
    format!("{key}-instructors.txt")
}

fn lines(content: &[u8]) -> usize {
    content.iter().filter(|&&b| b == b'\n').count()
}

/// The same command run by `sh` under another umask.
fn under_umask(command: &Command, umask: &str) -> Command {
    support::under_shell(command, &format!("umask {umask}"))
}

/// Every entry directly in `dir` (files, directories, dot files), by name.
fn entry_names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect()
}

/// Inode number and bytes of every roster file, to prove files were not rewritten.
fn inodes_and_bytes(dir: &Path) -> BTreeMap<String, (u64, Vec<u8>)> {
    entry_names(dir)
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            let inode = fs::symlink_metadata(&path).unwrap().ino();
            (name, (inode, fs::read(&path).unwrap()))
        })
        .collect()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn head(sandbox: &Sandbox) -> String {
    sandbox.git(&["rev-parse", "main"]).trim().to_string()
}

fn courses(report: &Value) -> &Vec<Value> {
    report["courses"].as_array().expect("courses is an array")
}

fn course_keys(report: &Value) -> BTreeSet<String> {
    courses(report)
        .iter()
        .map(|course| course["key"].as_str().unwrap().to_string())
        .collect()
}

fn fixture_keys() -> BTreeSet<String> {
    COURSES.iter().map(|(key, _)| key.to_string()).collect()
}

/// Asserts a course entry: status and, per list, (count, added, removed).
#[track_caller]
fn assert_course(
    course: &Value,
    status: &str,
    students: (usize, usize, usize),
    instructors: (usize, usize, usize),
) {
    let key = &course["key"];
    assert_eq!(course["status"], status, "{key} status: {course}");
    for (list, (count, added, removed)) in [("students", students), ("instructors", instructors)] {
        assert_eq!(course[list]["count"], count, "{key} {list} count: {course}");
        assert_eq!(course[list]["added"], added, "{key} {list} added: {course}");
        assert_eq!(
            course[list]["removed"], removed,
            "{key} {list} removed: {course}"
        );
    }
}

/// Asserts every fixture course was created with the expected sizes.
#[track_caller]
fn assert_fixture_courses_created(report: &Value, expected: &BTreeMap<String, Vec<u8>>) {
    assert_eq!(course_keys(report), fixture_keys(), "{report}");
    let no_email = expected_json("no_email.json");
    for (key, term_id) in COURSES {
        let course = courses(report)
            .iter()
            .find(|course| course["key"] == key)
            .unwrap();
        let s = lines(&expected[&students(key)]);
        let i = lines(&expected[&instructors(key)]);
        assert_course(course, "created", (s, s, 0), (i, i, 0));
        assert_eq!(course["term_id"], Value::from(term_id), "{key}");
        assert_eq!(course["students"]["no_email"], no_email[key], "{key}");
        assert_eq!(course["error"], Value::Null, "{key}");
    }
}

/// Recursively copies a directory.
fn enrollments(page: &mut Value) -> &mut Vec<Value> {
    page.pointer_mut("/apiResponse/response/enrollmentsByClassSection/classSectionEnrollments")
        .and_then(Value::as_array_mut)
        .expect("a v3 enrollment page")
}

fn campus_uid(enrollment: &Value) -> String {
    enrollment["student"]["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|id| id["type"] == "campus-uid")
        .and_then(|id| id["id"].as_str())
        .unwrap()
        .to_string()
}

/// A copy of `fixtures/sis` in which the lecture of [`CHANGED`] lost two enrolled students
/// (with CAMP addresses, enrolled in no other section) and gained three; returns the
/// `file://` base and the students file that course should now have.
pub(crate) fn changed_fixtures(sandbox: &Sandbox) -> (String, Vec<u8>) {
    let sis = sandbox.path("sis-changed");
    support::copy_dir(&support::fixtures().join("sis"), &sis);
    let page_path = sis.join("enrollments/2202/14552/page-1.json");
    let mut page: Value = serde_json::from_str(&fs::read_to_string(&page_path).unwrap()).unwrap();
    let lab: Value = serde_json::from_str(
        &fs::read_to_string(sis.join("enrollments/2202/14554/page-1.json")).unwrap(),
    )
    .unwrap();
    let in_lab: BTreeSet<String> = lab
        .pointer("/apiResponse/response/enrollmentsByClassSection/classSectionEnrollments")
        .and_then(Value::as_array)
        .unwrap()
        .iter()
        .map(campus_uid)
        .collect();
    let items = enrollments(&mut page);
    let droppable = |item: &Value| {
        let emails = item["student"]["emails"].as_array();
        item["enrollmentStatus"]["status"]["code"] == "E"
            && !in_lab.contains(&campus_uid(item))
            && emails.is_some_and(|emails| emails.len() == 1 && emails[0]["type"]["code"] == "CAMP")
    };
    let dropped: Vec<usize> = (0..items.len())
        .filter(|&i| droppable(&items[i]))
        .take(2)
        .collect();
    assert_eq!(dropped.len(), 2, "two droppable students in the fixture");
    let template = items[dropped[0]].clone();
    let mut removed = Vec::new();
    for &i in dropped.iter().rev() {
        let item = items.remove(i);
        let address = item["student"]["emails"][0]["emailAddress"]
            .as_str()
            .unwrap()
            .trim()
            .to_lowercase();
        removed.push(address);
    }
    let mut added = Vec::new();
    for n in 1..=3 {
        let mut item = template.clone();
        for id in item["student"]["identifiers"].as_array_mut().unwrap() {
            id["id"] = Value::from(format!("399990{n}"));
        }
        let address = format!("new.student.{n}@berkeley.edu");
        item["student"]["emails"][0]["emailAddress"] = Value::from(address.clone());
        items.push(item);
        added.push(address);
    }
    fs::write(&page_path, serde_json::to_vec_pretty(&page).unwrap()).unwrap();

    let before =
        String::from_utf8(support::expected_fixture_files()[&students(CHANGED)].clone()).unwrap();
    let mut roster: BTreeSet<String> = before.lines().map(str::to_string).collect();
    for address in &removed {
        assert!(roster.remove(address), "{address} was a student before");
    }
    roster.extend(added);
    let content: String = roster.iter().map(|line| format!("{line}\n")).collect();
    (format!("file://{}", sis.display()), content.into_bytes())
}

/// Runs the fixture sync and asserts it succeeded.
fn synced(sandbox: &Sandbox) -> Run {
    let output = sandbox.run(&mut sandbox.sync_fixtures());
    assert_exit(&output, 0);
    output
}

// ---------------------------------------------------------------------------------------
// 1. the fixture run

#[test]
fn fixture_run_writes_the_expected_rosters_modes_and_report() {
    let expected = support::expected_fixture_files();
    assert_eq!(expected.len(), 10, "the expected fixture rosters");
    for umask in ["077", "000"] {
        let sandbox = Sandbox::new();
        let output = sandbox.run(&mut under_umask(&sandbox.sync_fixtures(), umask));
        assert_exit(&output, 0);

        assert_eq!(sandbox.roster_files(), expected, "umask {umask}");
        let names: BTreeSet<String> = expected.keys().cloned().collect();
        assert_eq!(
            entry_names(&sandbox.output_dir()),
            names,
            "umask {umask}: exactly the roster files, no temporary file"
        );
        assert_eq!(
            mode(&sandbox.output_dir()),
            0o750,
            "umask {umask}: output dir"
        );
        for name in &names {
            assert_eq!(
                mode(&sandbox.output_dir().join(name)),
                0o640,
                "umask {umask}: {name}"
            );
        }

        let report = sandbox.report();
        assert_eq!(report["outcome"], "success", "{report}");
        assert_eq!(report["exit_code"], 0);
        assert_eq!(report["dry_run"], false);
        assert_eq!(report["commit"], head(&sandbox).as_str());
        assert_eq!(report["drift"], 0);
        assert_eq!(
            report["requests"]["total"],
            expected_json("requests.json")["count"]
        );
        assert_eq!(report["requests"]["retried"], 0);
        assert_eq!(report["error"], Value::Null);
        assert_fixture_courses_created(&report, &expected);
        // The accessor of the shared helpers agrees.
        assert_eq!(sandbox.course_report("2019-fall-23970")["term_id"], 2198);
        assert_eq!(
            sandbox.course_report("canvas-1234567")["term_id"],
            Value::Null
        );
    }
}

// ---------------------------------------------------------------------------------------
// 2. the audit repository

#[test]
fn audit_repository_is_bare_on_main_with_one_exact_commit() {
    let sandbox = Sandbox::new();
    let foreign = "[user]\n\tname = Somebody Else\n\temail = somebody@elsewhere.invalid\n";
    fs::write(sandbox.path("home/.gitconfig"), foreign).unwrap();
    fs::create_dir_all(sandbox.path("home/git")).unwrap();
    fs::write(sandbox.path("home/git/config"), foreign).unwrap();
    synced(&sandbox);

    assert_eq!(
        sandbox.git(&["rev-parse", "--is-bare-repository"]).trim(),
        "true"
    );
    assert_eq!(
        sandbox.git(&["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/main"
    );
    assert_eq!(sandbox.commit_count(), 1);

    // The tree: flat, regular blobs, exactly the roster files, byte for byte.
    let expected = support::expected_fixture_files();
    for line in sandbox.git(&["ls-tree", "main"]).lines() {
        assert!(line.starts_with("100644 blob "), "{line}");
    }
    assert_eq!(sandbox.audit_files(), expected);
    assert_eq!(sandbox.audit_files(), sandbox.roster_files());

    let identity = sandbox.git(&["log", "-1", "--format=%an <%ae>%n%cn <%ce>", "main"]);
    assert_eq!(
        identity,
        "roster-sync <roster-sync@localhost>\nroster-sync <roster-sync@localhost>\n"
    );

    let total: usize = expected.values().map(|content| lines(content)).sum();
    let subject = sandbox.git(&["log", "-1", "--format=%s", "main"]);
    assert_eq!(
        subject.trim(),
        format!("roster-sync: 5 courses changed (+{total} -0)")
    );
    let body = sandbox.git(&["log", "-1", "--format=%b", "main"]);
    let course_lines: Vec<&str> = body
        .lines()
        .filter(|line| COURSES.iter().any(|(key, _)| line.starts_with(key)))
        .collect();
    assert_eq!(
        course_lines.len(),
        10,
        "one line per course and list:\n{body}"
    );
    for (key, _) in COURSES {
        for (list, name) in [
            ("students", students(key)),
            ("instructors", instructors(key)),
        ] {
            let n = lines(&expected[&name]);
            let line = course_lines
                .iter()
                .find(|line| line.starts_with(&format!("{key} {list}")))
                .unwrap_or_else(|| panic!("a line for {key} {list}:\n{body}"));
            assert!(
                line.contains(&format!("+{n}"))
                    && line.contains("-0")
                    && line.contains(&format!("{n} members")),
                "{line}"
            );
        }
    }

    let run_id = sandbox.git(&[
        "log",
        "-1",
        "--format=%(trailers:key=Roster-Sync-Run-Id,valueonly)",
        "main",
    ]);
    assert!(!run_id.trim().is_empty(), "a run id trailer:\n{body}");
    let report = sandbox.report();
    let report_run_id = report["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a run_id in the report: {report}"));
    assert!(!report_run_id.is_empty(), "{report}");
    assert_eq!(
        run_id.trim(),
        report_run_id,
        "the trailer is the report's run id"
    );
    let version = sandbox.git(&[
        "log",
        "-1",
        "--format=%(trailers:key=Roster-Sync-Version,valueonly)",
        "main",
    ]);
    assert_eq!(version.trim(), env!("CARGO_PKG_VERSION"));

    let fsck = sandbox.git(&["fsck", "--full", "--strict"]);
    for word in ["error", "missing", "broken", "dangling"] {
        assert!(!fsck.contains(word), "git fsck: {fsck}");
    }
}

// ---------------------------------------------------------------------------------------
// 3. a second run

#[test]
fn second_run_commits_nothing_and_rewrites_no_file() {
    let sandbox = Sandbox::new();
    synced(&sandbox);
    let first_head = head(&sandbox);
    let before = inodes_and_bytes(&sandbox.output_dir());

    synced(&sandbox);
    assert_eq!(sandbox.commit_count(), 1);
    assert_eq!(head(&sandbox), first_head);
    assert_eq!(
        inodes_and_bytes(&sandbox.output_dir()),
        before,
        "same names, same inodes, same bytes"
    );
    let report = sandbox.report();
    assert_eq!(report["outcome"], "success");
    assert_eq!(report["commit"], Value::Null);
    assert_eq!(report["drift"], 0);
    let expected = support::expected_fixture_files();
    assert_eq!(course_keys(&report), fixture_keys());
    for course in courses(&report) {
        let key = course["key"].as_str().unwrap();
        let s = lines(&expected[&students(key)]);
        let i = lines(&expected[&instructors(key)]);
        assert_course(course, "unchanged", (s, 0, 0), (i, 0, 0));
    }
}

// ---------------------------------------------------------------------------------------
// 4. a changed fixture

#[test]
fn changed_enrollment_page_makes_one_commit_with_the_right_counts() {
    let sandbox = Sandbox::new();
    synced(&sandbox);
    let first_head = head(&sandbox);
    let (api_base, new_students) = changed_fixtures(&sandbox);

    let output = sandbox.run(&mut sandbox.sync(&api_base));
    assert_exit(&output, 0);
    assert_eq!(sandbox.commit_count(), 2);
    assert_eq!(sandbox.git(&["rev-parse", "main~1"]).trim(), first_head);
    let report = sandbox.report();
    assert_eq!(report["outcome"], "success", "{report}");
    assert_eq!(report["commit"], head(&sandbox).as_str());
    assert_eq!(report["drift"], 0);

    let subject = sandbox.git(&["log", "-1", "--format=%s", "main"]);
    assert_eq!(subject.trim(), "roster-sync: 1 course changed (+3 -2)");
    let body = sandbox.git(&["log", "-1", "--format=%b", "main"]);
    let course_lines: Vec<&str> = body
        .lines()
        .filter(|line| COURSES.iter().any(|(key, _)| line.starts_with(key)))
        .collect();
    assert_eq!(course_lines.len(), 1, "only the changed list:\n{body}");
    let size = lines(&new_students);
    assert_eq!(size, 24);
    let line = course_lines[0];
    assert!(
        line.starts_with(&format!("{CHANGED} students"))
            && line.contains("+3")
            && line.contains("-2")
            && line.contains(&format!("{size} members")),
        "{line}"
    );

    let expected = support::expected_fixture_files();
    for course in courses(&report) {
        let key = course["key"].as_str().unwrap();
        let s = lines(&expected[&students(key)]);
        let i = lines(&expected[&instructors(key)]);
        if key == CHANGED {
            assert_course(course, "updated", (size, 3, 2), (i, 0, 0));
        } else {
            assert_course(course, "unchanged", (s, 0, 0), (i, 0, 0));
        }
    }

    let mut now = expected.clone();
    now.insert(students(CHANGED), new_students);
    assert_eq!(sandbox.roster_files(), now);
    assert_eq!(sandbox.audit_files(), now);
}

// ---------------------------------------------------------------------------------------
// 5. waitlisted students

#[test]
fn include_waitlisted_by_flag_or_environment_adds_the_waitlist() {
    let expected = expected_with_waitlisted();
    for how in ["flag", "true", "1"] {
        let sandbox = Sandbox::new();
        let mut command = sandbox.sync_fixtures();
        if how == "flag" {
            command.arg("--include-waitlisted");
        } else {
            command.env("ROSTER_SYNC_INCLUDE_WAITLISTED", how);
        }
        assert_exit(&sandbox.run(&mut command), 0);
        assert_eq!(sandbox.roster_files(), expected, "{how}");
        let report = sandbox.report();
        assert_eq!(course_keys(&report), fixture_keys());
        for (key, _) in COURSES {
            let s = lines(&expected[&students(key)]);
            let i = lines(&expected[&instructors(key)]);
            assert_course(&sandbox.course_report(key), "created", (s, s, 0), (i, i, 0));
        }
    }
    for how in ["false", "0"] {
        let sandbox = Sandbox::new();
        let mut command = sandbox.sync_fixtures();
        command.env("ROSTER_SYNC_INCLUDE_WAITLISTED", how);
        assert_exit(&sandbox.run(&mut command), 0);
        assert_eq!(
            sandbox.roster_files(),
            support::expected_fixture_files(),
            "{how}"
        );
    }
}

/// `fixtures/README.md`: student 121 is waitlisted with no address, "skipped even with W;
/// not in `no_email`" (SPEC §8: `no_email` counts *enrolled* students).
#[test]
fn waitlisted_student_without_address_is_not_counted_in_no_email() {
    let sandbox = Sandbox::new();
    let mut command = sandbox.sync_fixtures();
    command.arg("--include-waitlisted");
    assert_exit(&sandbox.run(&mut command), 0);
    let no_email = expected_json("no_email.json");
    for (key, _) in COURSES {
        assert_eq!(
            sandbox.course_report(key)["students"]["no_email"],
            no_email[key],
            "{key}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 6. plan and dry runs

#[test]
fn plan_and_dry_run_create_nothing_when_nothing_exists() {
    let expected = support::expected_fixture_files();
    for args in [&["plan"][..], &["sync", "--dry-run"], &["--dry-run"]] {
        let sandbox = Sandbox::new();
        let output = sandbox.run(&mut sandbox.fixture_job(args));
        assert_exit(&output, 0);
        assert!(!sandbox.output_dir().exists(), "{args:?}: no output dir");
        assert!(!sandbox.audit_repo().exists(), "{args:?}: no audit repo");
        assert_eq!(
            entry_names(sandbox.dir.path()),
            BTreeSet::from(["home", "report.json", "values.yaml"].map(String::from)),
            "{args:?}: nothing else in the sandbox"
        );
        assert!(entry_names(&sandbox.path("home")).is_empty());
        let report = sandbox.report();
        assert_eq!(report["dry_run"], true, "{args:?}");
        assert_eq!(report["outcome"], "success");
        assert_eq!(report["exit_code"], 0);
        assert_eq!(report["commit"], Value::Null);
        assert_fixture_courses_created(&report, &expected);
    }
}

#[test]
fn plan_and_dry_run_predict_an_update_and_change_nothing() {
    let sandbox = Sandbox::new();
    synced(&sandbox);
    let first_head = head(&sandbox);
    let (api_base, new_students) = changed_fixtures(&sandbox);
    let files = inodes_and_bytes(&sandbox.output_dir());
    let audit = support::snapshot(&sandbox.audit_repo());
    let expected = support::expected_fixture_files();
    for args in [&["plan"][..], &["sync", "--dry-run"]] {
        let output = sandbox.run(&mut sandbox.job(args, &api_base));
        assert_exit(&output, 0);
        assert_eq!(
            inodes_and_bytes(&sandbox.output_dir()),
            files,
            "{args:?}: files"
        );
        assert_eq!(
            support::snapshot(&sandbox.audit_repo()),
            audit,
            "{args:?}: audit repo"
        );
        assert_eq!(sandbox.commit_count(), 1);
        assert_eq!(head(&sandbox), first_head);
        let report = sandbox.report();
        assert_eq!(report["dry_run"], true);
        assert_eq!(report["outcome"], "success");
        assert_eq!(report["commit"], Value::Null);
        for course in courses(&report) {
            let key = course["key"].as_str().unwrap();
            let s = lines(&expected[&students(key)]);
            let i = lines(&expected[&instructors(key)]);
            if key == CHANGED {
                assert_course(course, "updated", (lines(&new_students), 3, 2), (i, 0, 0));
            } else {
                assert_course(course, "unchanged", (s, 0, 0), (i, 0, 0));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// 7. check

fn check(sandbox: &Sandbox, api_base: &str) -> Command {
    sandbox.job_at(
        &["check"],
        api_base,
        &sandbox.output_dir(),
        &sandbox.audit_repo(),
        None,
    )
}

#[test]
fn check_validates_without_network_or_side_effects() {
    let sandbox = Sandbox::new();
    sandbox.copy_fixture_values();
    let output = sandbox.run(&mut check(&sandbox, &support::fixture_api_base()));
    assert_exit(&output, 0);
    assert!(!sandbox.output_dir().exists());
    assert!(!sandbox.audit_repo().exists());

    // Missing credentials for a live base: exit 2, every variable named.
    let output = sandbox.run(&mut check(&sandbox, "https://example.invalid"));
    assert_exit(&output, 2);
    let stdout = output.stdout.as_str();
    for var in CREDENTIAL_VARS {
        assert!(stdout.contains(var), "{var} in:\n{stdout}");
    }
    // With every credential present, check passes without contacting anything.
    let mut command = check(&sandbox, "https://example.invalid");
    for var in CREDENTIAL_VARS {
        command.env(var, "test-value");
    }
    assert_exit(&sandbox.run(&mut command), 0);
    assert!(!sandbox.output_dir().exists());
    assert!(!sandbox.audit_repo().exists());

    // A bad values file.
    sandbox.write_values("custom:\n  profiles:\n    2019-fall-1: [\n  b: c\n");
    let output = sandbox.run(&mut check(&sandbox, &support::fixture_api_base()));
    assert_exit(&output, 2);
    assert!(!sandbox.output_dir().exists());
    assert!(!sandbox.audit_repo().exists());
}

// ---------------------------------------------------------------------------------------
// 8. configuration errors

/// Runs a sync that must stop with a configuration error; returns the report's error.
#[track_caller]
fn assert_config_error(sandbox: &Sandbox, command: &mut Command, what: &str) -> String {
    let output = sandbox.run(command);
    assert_exit(&output, 2);
    assert!(!sandbox.output_dir().exists(), "{what}: no output dir");
    assert!(!sandbox.audit_repo().exists(), "{what}: no audit repo");
    assert!(
        sandbox.report_path().exists(),
        "{what}: a report is written whatever the exit code (SPEC §8)"
    );
    let report = sandbox.report();
    assert_eq!(report["outcome"], "failed", "{what}: {report}");
    assert_eq!(report["exit_code"], 2, "{what}");
    assert_eq!(report["commit"], Value::Null, "{what}");
    assert_eq!(report["requests"]["total"], 0, "{what}");
    let error = report["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: an error in {report}"))
        .to_string();
    assert!(!error.is_empty(), "{what}");
    error
}

#[test]
fn missing_values_file_is_a_configuration_error() {
    let sandbox = Sandbox::new();
    let error = assert_config_error(
        &sandbox,
        &mut sandbox.sync(&support::fixture_api_base()),
        "missing values",
    );
    assert!(
        error.contains(&sandbox.values().display().to_string()),
        "{error}"
    );
}

#[test]
fn yaml_syntax_error_names_the_file_and_line() {
    let sandbox = Sandbox::new();
    sandbox.write_values("custom:\n  profiles:\n    2019-fall-1: [\n  b: c\n");
    let error = assert_config_error(
        &sandbox,
        &mut sandbox.sync(&support::fixture_api_base()),
        "yaml syntax",
    );
    assert!(
        error.contains(&sandbox.values().display().to_string()),
        "{error}"
    );
    let has_line_number = error
        .match_indices("line ")
        .any(|(at, _)| error[at + 5..].starts_with(|c: char| c.is_ascii_digit()));
    assert!(has_line_number, "a line number in: {error}");
}

#[test]
fn profiles_that_are_a_list_are_a_configuration_error() {
    let sandbox = Sandbox::new();
    sandbox.write_values("custom:\n  profiles:\n    - 2019-fall-23970\n");
    let error = assert_config_error(
        &sandbox,
        &mut sandbox.sync(&support::fixture_api_base()),
        "profiles list",
    );
    assert!(
        error.contains(&sandbox.values().display().to_string()),
        "{error}"
    );
    assert!(error.contains("custom.profiles"), "{error}");
}

#[test]
fn unsupported_api_base_scheme_is_a_configuration_error() {
    let sandbox = Sandbox::new();
    sandbox.copy_fixture_values();
    let error = assert_config_error(&sandbox, &mut sandbox.sync("ftp://x"), "ftp api base");
    assert!(error.contains("ftp://x"), "{error}");
}

#[test]
fn missing_credentials_stop_before_any_connection() {
    let sandbox = Sandbox::new();
    sandbox.copy_fixture_values();
    let error = assert_config_error(
        &sandbox,
        &mut sandbox.sync("https://127.0.0.1:1"),
        "missing credentials",
    );
    for var in CREDENTIAL_VARS {
        assert!(error.contains(var), "{var} in: {error}");
    }
}

// ---------------------------------------------------------------------------------------
// 9. null / empty profiles and non-course keys

#[test]
fn null_empty_or_absent_profiles_mean_no_courses_and_a_warning() {
    for yaml in [
        "custom: {profiles: null}\n",
        "custom:\n  profiles: {}\n",
        "hub: {}\n",
    ] {
        let sandbox = Sandbox::new();
        sandbox.write_values(yaml);
        // No courses need no credentials, even for a live base.
        let output = sandbox.run(&mut sandbox.sync("https://127.0.0.1:1"));
        assert_exit(&output, 0);
        let report = sandbox.report();
        assert_eq!(report["outcome"], "success", "{yaml}");
        assert!(courses(&report).is_empty(), "{yaml}: {report}");
        assert_eq!(report["requests"]["total"], 0);
        let stderr = output.stderr.as_str();
        assert!(stderr.contains("WARN"), "{yaml}: a warning in:\n{stderr}");
    }
}

#[test]
fn null_profiles_keep_existing_rosters() {
    let sandbox = Sandbox::new();
    synced(&sandbox);
    let first_head = head(&sandbox);
    let files = inodes_and_bytes(&sandbox.output_dir());
    sandbox.write_values("custom: {profiles: null}\n");
    let output = sandbox.run(&mut sandbox.sync(&support::fixture_api_base()));
    assert_exit(&output, 0);
    assert_eq!(inodes_and_bytes(&sandbox.output_dir()), files);
    assert_eq!(head(&sandbox), first_head);
    assert_eq!(sandbox.report()["commit"], Value::Null);
}

#[test]
fn non_course_profiles_are_skipped() {
    let sandbox = Sandbox::new();
    synced(&sandbox);
    let report = sandbox.report();
    assert!(
        courses(&report)
            .iter()
            .all(|course| course["key"] != "astr-128-admins"),
        "{report}"
    );
    assert!(
        sandbox
            .roster_files()
            .keys()
            .all(|name| !name.contains("astr")),
        "no file for astr-128-admins"
    );
    assert!(
        sandbox
            .audit_files()
            .keys()
            .all(|name| !name.contains("astr"))
    );
}

/// A values file with `body` (a YAML mapping of profiles) nested under `path`.
fn nested(path: &str, body: &str) -> String {
    let mut yaml = String::new();
    let depth = path.split('.').count();
    for (level, part) in path.split('.').enumerate() {
        yaml += &format!("{}{part}:\n", "  ".repeat(level));
    }
    for line in body.lines() {
        yaml += &format!("{}{line}\n", "  ".repeat(depth));
    }
    yaml
}

#[test]
fn profiles_are_found_under_each_default_path_and_an_explicit_key() {
    const KEY: &str = "2022-summer-04321";
    let expected = support::expected_fixture_files();
    let only_key = |sandbox: &Sandbox, key: &str, what: &str| {
        let report = sandbox.report();
        assert_eq!(
            course_keys(&report),
            BTreeSet::from([key.to_string()]),
            "{what}"
        );
        let files: BTreeMap<String, Vec<u8>> = [students(key), instructors(key)]
            .into_iter()
            .map(|name| (name.clone(), expected[&name].clone()))
            .collect();
        assert_eq!(sandbox.roster_files(), files, "{what}");
    };
    for path in [
        "custom.profiles",
        "jupyterhub.custom.profiles",
        "hub.extraConfigMap.profiles",
        "jupyterhub.hub.extraConfigMap.profiles",
    ] {
        let sandbox = Sandbox::new();
        sandbox.write_values(&nested(
            path,
            &format!("{KEY}:\n  mem_limit: 1G\nastr-128-admins:\n  users: [a]\n"),
        ));
        assert_exit(
            &sandbox.run(&mut sandbox.sync(&support::fixture_api_base())),
            0,
        );
        only_key(&sandbox, KEY, path);
    }

    // Both paths present: the first default wins, --profiles-key picks the other.
    const OTHER: &str = "2020-spring-14552";
    let both = format!(
        "{}{}",
        nested("custom.profiles", &format!("{KEY}: {{}}\n")),
        nested("jupyterhub.custom.profiles", &format!("{OTHER}: {{}}\n"))
    );
    let sandbox = Sandbox::new();
    sandbox.write_values(&both);
    assert_exit(
        &sandbox.run(&mut sandbox.sync(&support::fixture_api_base())),
        0,
    );
    only_key(&sandbox, KEY, "default order");

    for how in ["flag", "env"] {
        let sandbox = Sandbox::new();
        sandbox.write_values(&both);
        let mut command = sandbox.sync(&support::fixture_api_base());
        if how == "flag" {
            command.args(["--profiles-key", "jupyterhub.custom.profiles"]);
        } else {
            command.env("ROSTER_SYNC_PROFILES_KEY", "jupyterhub.custom.profiles");
        }
        assert_exit(&sandbox.run(&mut command), 0);
        only_key(&sandbox, OTHER, how);
    }
}

#[test]
fn path_like_profile_keys_are_skipped_and_nothing_escapes() {
    const KEY: &str = "2022-summer-04321";
    let sandbox = Sandbox::new();
    sandbox.write_values(&format!(
        "custom:\n  profiles:\n    2019-fall-1/../../x: {{}}\n    2019-fall-1/../x: {{}}\n    \
         ../{KEY}: {{}}\n    {KEY}/..: {{}}\n    2019-fall-1/..: {{}}\n    {KEY}: {{}}\n"
    ));
    // Deep enough that every `..` above stays inside the sandbox.
    let output_dir = sandbox.path("a/b/c/profiles.d");
    let output = sandbox.run(&mut sandbox.job_at(
        &["sync"],
        &support::fixture_api_base(),
        &output_dir,
        &sandbox.audit_repo(),
        Some(&sandbox.report_path()),
    ));
    assert_exit(&output, 0);
    let report = sandbox.report();
    assert_eq!(course_keys(&report), BTreeSet::from([KEY.to_string()]));

    let roster_names = BTreeSet::from([students(KEY), instructors(KEY)]);
    assert_eq!(entry_names(&output_dir), roster_names);
    let outside_audit: BTreeSet<PathBuf> = support::snapshot(sandbox.dir.path())
        .into_keys()
        .filter(|path| !path.starts_with("audit"))
        .collect();
    let mut expected: BTreeSet<PathBuf> = [
        "home",
        "values.yaml",
        "report.json",
        "a",
        "a/b",
        "a/b/c",
        "a/b/c/profiles.d",
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect();
    expected.extend(
        roster_names
            .iter()
            .map(|name| Path::new("a/b/c/profiles.d").join(name)),
    );
    assert_eq!(outside_audit, expected, "no file outside the output dir");
    assert_eq!(
        sandbox.audit_files().into_keys().collect::<BTreeSet<_>>(),
        roster_names
    );
}

// ---------------------------------------------------------------------------------------
// 10. options from the environment

#[test]
fn every_option_can_come_from_the_environment() {
    let sandbox = Sandbox::new();
    sandbox.copy_fixture_values();
    let mut command = sandbox.command();
    command
        .arg("sync")
        .env("ROSTER_SYNC_VALUES", sandbox.values())
        .env("ROSTER_SYNC_API_BASE", support::fixture_api_base())
        .env("ROSTER_SYNC_CANVAS_API", support::fixture_canvas_api())
        .env("ROSTER_SYNC_OUTPUT_DIR", sandbox.output_dir())
        .env("ROSTER_SYNC_AUDIT_REPO", sandbox.audit_repo())
        .env("ROSTER_SYNC_REPORT", sandbox.report_path());
    assert_exit(&sandbox.run(&mut command), 0);
    assert_eq!(sandbox.roster_files(), support::expected_fixture_files());
    assert_eq!(sandbox.commit_count(), 1);
    assert_eq!(sandbox.report()["commit"], head(&sandbox).as_str());
}

#[test]
fn a_flag_wins_over_its_variable() {
    let sandbox = Sandbox::new();
    let mut command = sandbox.sync_fixtures();
    command
        .env("ROSTER_SYNC_VALUES", sandbox.path("nonexistent.yaml"))
        .env("ROSTER_SYNC_API_BASE", "ftp://not-used")
        .env("ROSTER_SYNC_CANVAS_API", "ftp://not-used")
        .env("ROSTER_SYNC_OUTPUT_DIR", sandbox.path("env-output"))
        .env("ROSTER_SYNC_AUDIT_REPO", sandbox.path("env-audit"))
        .env("ROSTER_SYNC_REPORT", sandbox.path("env-report.json"));
    assert_exit(&sandbox.run(&mut command), 0);
    assert_eq!(sandbox.roster_files(), support::expected_fixture_files());
    assert_eq!(sandbox.commit_count(), 1);
    assert_eq!(sandbox.report()["outcome"], "success");
    for unused in ["env-output", "env-audit", "env-report.json"] {
        assert!(!sandbox.path(unused).exists(), "{unused}");
    }
    // The flag --profiles-key wins too.
    let sandbox = Sandbox::new();
    let mut command = sandbox.sync_fixtures();
    command
        .args(["--profiles-key", "custom.profiles"])
        .env("ROSTER_SYNC_PROFILES_KEY", "no.such.path");
    assert_exit(&sandbox.run(&mut command), 0);
    assert_eq!(course_keys(&sandbox.report()), fixture_keys());
}

#[test]
fn switches_from_the_environment_accept_true_false_1_0() {
    for value in ["1", "true"] {
        let sandbox = Sandbox::new();
        let mut command = sandbox.sync_fixtures();
        command.env("ROSTER_SYNC_DRY_RUN", value);
        assert_exit(&sandbox.run(&mut command), 0);
        assert!(!sandbox.output_dir().exists(), "DRY_RUN={value}");
        assert!(!sandbox.audit_repo().exists(), "DRY_RUN={value}");
        assert_eq!(sandbox.report()["dry_run"], true, "DRY_RUN={value}");
    }
    for value in ["0", "false"] {
        let sandbox = Sandbox::new();
        let mut command = sandbox.sync_fixtures();
        command.env("ROSTER_SYNC_DRY_RUN", value);
        assert_exit(&sandbox.run(&mut command), 0);
        assert_eq!(
            sandbox.roster_files(),
            support::expected_fixture_files(),
            "DRY_RUN={value}"
        );
        assert_eq!(sandbox.commit_count(), 1, "DRY_RUN={value}");
        assert_eq!(sandbox.report()["dry_run"], false, "DRY_RUN={value}");
    }
}

#[test]
fn options_stand_before_or_after_the_command_or_without_one() {
    let expected = support::expected_fixture_files();
    let options = |sandbox: &Sandbox| -> Vec<std::ffi::OsString> {
        vec![
            "--values".into(),
            sandbox.values().into(),
            "--api-base".into(),
            support::fixture_api_base().into(),
            "--canvas-api".into(),
            support::fixture_canvas_api().into(),
            "--output-dir".into(),
            sandbox.output_dir().into(),
            "--audit-repo".into(),
            sandbox.audit_repo().into(),
            "--report".into(),
            sandbox.report_path().into(),
        ]
    };
    for placement in ["before", "after", "none"] {
        let sandbox = Sandbox::new();
        sandbox.copy_fixture_values();
        let mut command = sandbox.command();
        match placement {
            "before" => command.args(options(&sandbox)).arg("sync"),
            "after" => command.arg("sync").args(options(&sandbox)),
            _ => command.args(options(&sandbox)),
        };
        assert_exit(&sandbox.run(&mut command), 0);
        assert_eq!(sandbox.roster_files(), expected, "{placement}");
        assert_eq!(sandbox.commit_count(), 1, "{placement}");
    }
    // A switch before `plan` and after it.
    for args in [&["--dry-run", "sync"][..], &["sync", "--dry-run"]] {
        let sandbox = Sandbox::new();
        assert_exit(&sandbox.run(&mut sandbox.fixture_job(args)), 0);
        assert!(!sandbox.output_dir().exists(), "{args:?}");
        assert_eq!(sandbox.report()["dry_run"], true, "{args:?}");
    }
}

// ---------------------------------------------------------------------------------------
// 11. help and version

#[test]
fn each_commands_help_is_complete_on_its_own() {
    let sandbox = Sandbox::new();
    let help = |args: &[&str]| {
        let output = sandbox.run(sandbox.command().args(args));
        assert_exit(&output, 0);
        output.stdout
    };
    let top = help(&["--help"]);
    for command in ["sync", "plan", "check", "verify", "history"] {
        assert!(top.contains(command), "{command} in --help:\n{top}");
    }
    let job = [
        "--values",
        "--output-dir",
        "--audit-repo",
        "--api-base",
        "--concurrency",
        "--approve",
        "--prune",
        "--include-waitlisted",
        "--hub-api",
    ];
    // (command, options its help lists, options it must not list, its exit codes)
    type Case<'a> = (&'a str, &'a [&'a str], &'a [&'a str], &'a [i32]);
    let cases: [Case; 5] = [
        (
            "sync",
            &[&job[..], &["--dry-run", "--report"]].concat(),
            &["--member"],
            &[0, 1, 2, 3, 4, 5, 6, 7],
        ),
        (
            "plan",
            &[&job[..], &["--report"]].concat(),
            &["--dry-run", "--member"],
            &[0, 1, 2, 3, 4, 5, 6, 7],
        ),
        ("check", &job, &["--report", "--member"], &[0, 2]),
        (
            "verify",
            &["--output-dir", "--audit-repo"],
            &["--values", "--approve"],
            &[0, 1, 5],
        ),
        (
            "history",
            &["--audit-repo", "--course", "--member", "--since"],
            &["--concurrency", "--approve", "--output-dir"],
            &[0, 2, 5],
        ),
    ];
    for (command, present, absent, codes) in cases {
        let text = help(&[command, "--help"]);
        let lists = |option: &str| {
            text.lines().any(|line| {
                let rest = line.trim_start().strip_prefix(option);
                rest.is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '=']))
            })
        };
        for option in present {
            assert!(lists(option), "{option} in {command} --help:\n{text}");
        }
        for option in absent {
            assert!(!lists(option), "{option} not in {command} --help:\n{text}");
        }
        let at = text
            .find("Exit codes")
            .unwrap_or_else(|| panic!("exit codes in {command} --help:\n{text}"));
        let listed: Vec<i32> = text[at..]
            .lines()
            .skip(1)
            .filter_map(|line| line.trim_start().split_once("  ")?.0.parse().ok())
            .collect();
        assert_eq!(listed, codes, "{command} --help exit codes:\n{text}");
    }
    assert!(
        help(&["sync", "--help"]).contains("SIS_CLASSES_KEY"),
        "credentials in sync --help"
    );
    assert!(
        help(&["sync", "--help"]).contains("1-64"),
        "ranges in sync --help"
    );

    let version = help(&["--version"]);
    assert!(
        version.contains(env!("CARGO_PKG_VERSION")),
        "--version: {version}"
    );
}

// ---------------------------------------------------------------------------------------
// 12. no address in the logs

#[track_caller]
fn assert_no_address(text: &str, what: &str) {
    let lower = text.to_lowercase();
    for domain in DOMAINS {
        assert!(!lower.contains(domain), "{what} mentions {domain}:\n{text}");
    }
}

#[test]
fn debug_logs_never_contain_an_address() {
    let sandbox = Sandbox::new();
    for format in ["text", "json"] {
        let mut command = sandbox.sync_fixtures();
        command
            .env("RUST_LOG", "debug")
            .args(["--log-format", format]);
        let output = sandbox.run(&mut command);
        assert_exit(&output, 0);
        let stderr = output.stderr.as_str();
        assert!(
            stderr.contains("DEBUG") || stderr.contains("debug"),
            "{stderr}"
        );
        assert_no_address(stderr, &format!("{format} stderr"));
        assert_no_address(&output.stdout, "stdout");
    }
    // A run that adds and removes members logs no address either.
    let (api_base, _) = changed_fixtures(&sandbox);
    let mut command = sandbox.sync(&api_base);
    command.env("RUST_LOG", "debug");
    let output = sandbox.run(&mut command);
    assert_exit(&output, 0);
    assert_eq!(sandbox.commit_count(), 2);
    assert_no_address(&output.stderr, "stderr of an update");
}

// ---------------------------------------------------------------------------------------
// 13. the report on stdout

#[test]
fn report_dash_writes_the_json_report_to_stdout() {
    let sandbox = Sandbox::new();
    sandbox.copy_fixture_values();
    let mut command = sandbox.job_at(
        &["sync"],
        &support::fixture_api_base(),
        &sandbox.output_dir(),
        &sandbox.audit_repo(),
        None,
    );
    command
        .current_dir(sandbox.dir.path())
        .args(["--report", "-"]);
    let output = sandbox.run(&mut command);
    assert_exit(&output, 0);
    let report: Value = serde_json::from_str(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "stdout is the JSON report ({error}):\n{}",
            output.stdout.as_str()
        )
    });
    assert_eq!(report["outcome"], "success");
    assert_eq!(report["commit"], head(&sandbox).as_str());
    assert_fixture_courses_created(&report, &support::expected_fixture_files());
    assert!(!sandbox.path("-").exists(), "no file named -");
}

// ---------------------------------------------------------------------------------------
// stale profiles

/// Today's term as an ordinal (spring, summer, fall of a year are 3y, 3y+1, 3y+2), from
/// the system clock, independently of the code under test.
fn todays_term() -> i64 {
    let today = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let year: i64 = today[0..4].parse().unwrap();
    let month: i64 = today[5..7].parse().unwrap();
    year * 3 + [0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2][(month - 1) as usize]
}

#[test]
fn profiles_of_terms_long_past_are_warned_about_reported_and_counted() {
    // 2021 fall is term 2021*3+2; with N one more than its distance it is not stale,
    // while 2020 spring and 2019 fall (further back) are.
    let fall_2021 = todays_term() - (2021 * 3 + 2);
    let after = (fall_2021 + 1).to_string();
    let sandbox = Sandbox::new();
    let run = sandbox.run(
        sandbox
            .fixture_job(&["sync", "--stale-after-terms", &after])
            .arg("--metrics-file")
            .arg(sandbox.path("metrics.prom")),
    );
    assert_exit(&run, 0);
    let stale: BTreeSet<&str> = courses(&run.report)
        .iter()
        .filter(|course| course["stale"] == true)
        .map(|course| course["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        stale,
        BTreeSet::from(["2019-fall-23970", "2020-spring-14552"])
    );
    assert!(
        courses(&run.report)
            .iter()
            .all(|course| course["stale"].is_boolean())
    );
    for key in ["2019-fall-23970", "2020-spring-14552"] {
        assert!(
            run.stderr.lines().any(|line| line.contains("WARN")
                && line.contains(key)
                && line.contains("terms ago")),
            "a warning for {key}: {}",
            run.stderr
        );
    }
    let metrics = fs::read_to_string(sandbox.path("metrics.prom")).unwrap();
    assert!(
        metrics.contains("\nroster_sync_stale_profiles 2\n"),
        "{metrics}"
    );

    let check = sandbox
        .run(check(&sandbox, &support::fixture_api_base()).args(["--stale-after-terms", &after]));
    assert_exit(&check, 0);
    let warned: Vec<&str> = check
        .stdout
        .lines()
        .filter(|line| line.starts_with("warn stale profile"))
        .collect();
    assert_eq!(warned.len(), 2, "{}", check.stdout);
    assert!(warned[0].contains("2019-fall-23970") && warned[1].contains("2020-spring-14552"));

    let never = sandbox.run(&mut sandbox.fixture_job(&["plan", "--stale-after-terms", "99"]));
    assert_exit(&never, 0);
    assert!(
        courses(&never.report)
            .iter()
            .all(|course| course["stale"] == false)
    );
}
