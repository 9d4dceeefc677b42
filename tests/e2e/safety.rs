//! Safety tests of `roster-sync`: the guarantees that make the job worth running. A failed,
//! partial or suspicious fetch never overwrites a good roster; guards hold back large
//! shrinks until approved; pruning touches only roster files of courses that are gone;
//! drift is repaired from the audit HEAD; one run at a time; a kill at any instant leaves
//! every file old or new and the audit repository valid; SIGTERM stops cleanly.
//!
//! Each test runs the real binary against the local SIS emulator in a sandbox and checks
//! the roster files byte for byte, the exit code, the JSON report and the audit
//! repository. Every address is synthetic.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, Run, Sandbox, assert_exit};
use serde_json::Value;
use sis_emulator::{
    Assignment, Campus, Course, Email, Enrollment, Fault, HrRecord, Options, Person, Section,
    SisServer, Synthetic,
};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A file's bytes; compared byte for byte, shown as text when an assertion fails.
#[derive(Clone, PartialEq, Eq)]
struct Bytes(Vec<u8>);

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

/// Files by name.
type Files = BTreeMap<String, Bytes>;

fn files_of(raw: BTreeMap<String, Vec<u8>>) -> Files {
    raw.into_iter()
        .map(|(name, bytes)| (name, Bytes(bytes)))
        .collect()
}

/// The two lists of one course, as the emulator serves them (lower-case addresses).
#[derive(Clone, Debug, Default)]
struct Lists {
    students: Vec<String>,
    instructors: Vec<String>,
}

fn lists(students: Vec<String>, instructors: Vec<String>) -> Lists {
    Lists {
        students,
        instructors,
    }
}

/// Synthetic addresses `{tag}.{i:03}@example.edu` for every `i` in `range`.
fn addresses(tag: &str, range: Range<usize>) -> Vec<String> {
    range.map(|i| format!("{tag}.{i:03}@example.edu")).collect()
}

/// Concatenation of address lists.
fn join(parts: &[Vec<String>]) -> Vec<String> {
    parts.concat()
}

/// A roster file's expected bytes: sorted, de-duplicated, one address per line.
fn render(list: &[String]) -> Vec<u8> {
    let set: BTreeSet<&String> = list.iter().collect();
    set.into_iter()
        .flat_map(|a| format!("{a}\n").into_bytes())
        .collect()
}

fn students_file(key: &str) -> String {
    format!("{key}-students.txt")
}

fn instructors_file(key: &str) -> String {
    format!("{key}-instructors.txt")
}

/// The roster files the courses should produce.
fn expected(courses: &[(&str, Lists)]) -> Files {
    let mut files = BTreeMap::new();
    for (key, lists) in courses {
        files.insert(students_file(key), Bytes(render(&lists.students)));
        files.insert(instructors_file(key), Bytes(render(&lists.instructors)));
    }
    files
}

/// The subset of `files` that belongs to course `key`.
fn of_course(files: &Files, key: &str) -> Files {
    [students_file(key), instructors_file(key)]
        .into_iter()
        .filter_map(|name| files.get(&name).map(|c| (name, c.clone())))
        .collect()
}

/// A stable campus uid for an instructor address (FNV-1a), so the same person keeps the
/// same uid from one campus to the next.
fn uid_of(address: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in address.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("8{:07}", hash % 10_000_000)
}

/// A campus whose courses have one section each: students enrolled (`E`) with a `CAMP`
/// address, instructors (`PI`) known to HR with a `BUSN` address.
fn campus(courses: &[(&str, Lists)]) -> Campus {
    let mut campus = Campus::default();
    for (key, lists) in courses {
        let class_number: u64 = key.rsplit('-').next().unwrap().parse().unwrap();
        let enrollments = lists
            .students
            .iter()
            .enumerate()
            .map(|(i, address)| {
                Enrollment::new(
                    &format!("{class_number}{i:05}"),
                    "E",
                    vec![Email::new("CAMP", address)],
                )
            })
            .collect();
        let mut staff = Vec::new();
        for address in &lists.instructors {
            let uid = uid_of(address);
            let person = Person {
                hr: HrRecord::Emails(vec![Email::new("BUSN", address)]),
                student: None,
            };
            if let Some(HrRecord::Emails(known)) = campus.people.get(&uid).map(|p| &p.hr) {
                assert_eq!(known[0].address, *address, "uid collision for {uid}");
            }
            campus.people.insert(uid.clone(), person);
            staff.push(Assignment::new(&uid, "PI"));
        }
        campus.courses.push(Course::new(
            key,
            vec![Section::new(class_number * 10 + 1, enrollments, staff)],
        ));
    }
    campus
}

/// The emulator path of a course's Classes call.
fn classes_path(key: &str) -> String {
    campus(&[(key, Lists::default())]).courses[0].classes_path()
}

/// The emulator path of the enrollments of a course's (only) section.
fn enrollments_path(key: &str) -> String {
    let course = &campus(&[(key, Lists::default())]).courses[0];
    course.enrollments_path(course.sections[0].id)
}

fn values_yaml(keys: &[&str]) -> String {
    let mut yaml = String::from("custom:\n  profiles:\n");
    for key in keys {
        yaml.push_str(&format!("    \"{key}\":\n      mem_limit: 4096M\n"));
    }
    yaml
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("report {} not written: {e}", path.display()));
    serde_json::from_str(&text).expect("the report is JSON")
}

/// `(count, added, removed)` of one list in a course's report entry.
fn counts(course: &Value, list: &str) -> (u64, u64, u64) {
    let entry = &course[list];
    (
        entry["count"].as_u64().unwrap(),
        entry["added"].as_u64().unwrap(),
        entry["removed"].as_u64().unwrap(),
    )
}

fn dir_files(dir: &Path) -> Files {
    files_of(support::read_dir_files(dir))
}

fn temp_files(dir: &Path) -> Vec<String> {
    match fs::read_dir(dir) {
        Err(_) => Vec::new(),
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(".roster-sync-tmp-"))
            .collect(),
    }
}

/// One sandbox and one emulator.
struct Env {
    sb: Sandbox,
    server: SisServer,
}

impl Env {
    fn new(courses: &[(&str, Lists)]) -> Env {
        Env::with_options(courses, Options::default())
    }

    fn with_options(courses: &[(&str, Lists)], options: Options) -> Env {
        Env::with_campus(campus(courses), options)
    }

    fn with_campus(campus: Campus, options: Options) -> Env {
        let sb = Sandbox::new();
        sb.write_values(&campus.values_yaml());
        Env {
            sb,
            server: SisServer::start(campus, options),
        }
    }

    /// Serves these courses from now on (the values file is unchanged).
    fn serve(&self, courses: &[(&str, Lists)]) {
        let next = campus(courses);
        self.server.update_campus(|campus| *campus = next);
    }

    /// Configures exactly these course keys in the values file.
    fn configure(&self, keys: &[&str]) {
        self.sb.write_values(&values_yaml(keys));
    }

    /// `roster-sync SUB` with the emulator's credentials, this sandbox's values file, and
    /// the given output directory, audit repository and report path.
    fn command_at(&self, sub: &str, output_dir: &Path, audit: &Path, report: &Path) -> Command {
        let mut command = self.sb.job_at(
            &[sub],
            self.server.base_url(),
            output_dir,
            audit,
            Some(report),
        );
        support::credentials(&mut command);
        command
    }

    /// `roster-sync SUB` with this sandbox's paths and the emulator's credentials.
    fn command(&self, sub: &str) -> Command {
        self.sb.server_job(&[sub], &self.server)
    }

    fn run(&self, sub: &str, args: &[&str]) -> Run {
        self.sb.run(self.command(sub).args(args))
    }

    fn sync(&self, args: &[&str]) -> Run {
        self.run("sync", args)
    }

    fn report(&self) -> Value {
        self.sb.report()
    }

    fn course(&self, key: &str) -> Value {
        self.sb.course_report(key)
    }

    fn files(&self) -> Files {
        files_of(self.sb.roster_files())
    }

    fn audit(&self) -> Files {
        files_of(self.sb.audit_files())
    }

    fn file(&self, name: &str) -> PathBuf {
        self.sb.output_dir().join(name)
    }

    /// `verify` against this sandbox.
    fn verify(&self) -> Run {
        self.sb.run(
            self.sb
                .command()
                .arg("verify")
                .arg("--output-dir")
                .arg(self.sb.output_dir())
                .arg("--audit-repo")
                .arg(self.sb.audit_repo()),
        )
    }

    fn last_commit_message(&self) -> String {
        self.sb.git(&["log", "-1", "--format=%B", "main"])
    }

    fn assert_fsck_clean(&self) {
        let output = Command::new("git")
            .arg("-C")
            .arg(self.sb.audit_repo())
            .args(["fsck", "--full", "--no-progress"])
            .env("HOME", self.sb.path("home"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "git fsck failed:\n{text}");
        for bad in ["error", "missing", "broken", "corrupt", "fatal"] {
            assert!(!text.contains(bad), "git fsck reports {bad}:\n{text}");
        }
    }

    fn assert_no_violations(&self) {
        assert_eq!(self.server.violations(), Vec::<String>::new());
    }
}

const A: &str = "2019-fall-23970";
const B: &str = "2020-spring-1234";
const C: &str = "2021-fall-32244";

// ---------------------------------------------------------------------------------------
// 1. A failed fetch keeps the previous files
// ---------------------------------------------------------------------------------------

#[test]
fn failed_fetch_keeps_both_previous_files_and_applies_other_courses() {
    let base = vec![
        (A, lists(addresses("a", 0..15), addresses("ai", 0..2))),
        (B, lists(addresses("b", 0..12), addresses("bi", 0..1))),
        (C, lists(addresses("c", 0..250), addresses("ci", 0..1))),
    ];
    let env = Env::new(&base);
    assert_exit(&env.sync(&[]), 0);
    assert_eq!(env.files(), expected(&base));
    let good = env.files();
    let good_audit = env.audit();
    assert_eq!(good_audit, good);
    assert_eq!(env.sb.commit_count(), 1);

    // A's Classes call fails every time; A and B both changed upstream.
    let next = vec![
        (A, lists(addresses("a", 0..16), addresses("ai", 0..3))),
        (B, lists(addresses("b", 0..13), addresses("bi", 0..1))),
        base[2].clone(),
    ];
    env.serve(&next);
    env.server.fail_always(&classes_path(A), Fault::Status(503));
    let output = env.sync(&["--retries", "1"]);
    assert_exit(&output, 1);
    let report = env.report();
    assert_eq!(report["outcome"], "partial");
    assert_eq!(report["exit_code"], 1);
    let a = env.course(A);
    assert_eq!(a["status"], "failed");
    let error = a["error"].as_str().expect("a failed course has an error");
    assert!(!error.contains('\n'), "one line: {error:?}");
    assert!(error.contains("Classes"), "names the API: {error:?}");
    assert_eq!(counts(&a, "students").0, 15, "kept count");
    assert_eq!(counts(&a, "instructors").0, 2, "kept count");
    assert_eq!(env.course(B)["status"], "updated");
    assert_eq!(env.course(C)["status"], "unchanged");
    let files = env.files();
    assert_eq!(of_course(&files, A), of_course(&good, A), "A's files kept");
    assert_eq!(of_course(&files, B), of_course(&expected(&next), B));
    let audit = env.audit();
    assert_eq!(of_course(&audit, A), of_course(&good_audit, A));
    assert_eq!(audit, files, "the audit tree matches the directory");
    assert_eq!(env.sb.commit_count(), 2);
    // Both tries of A's Classes call were made (--retries 1), none to its enrollments.
    let a_calls = env.server.requests_to(&classes_path(A));
    assert!(a_calls.len() >= 2, "{} Classes calls", a_calls.len());

    // C (250 students, 3 pages) changes; page 2 comes back truncated. With the shrink
    // guard out of the way, only the all-or-nothing rule can keep the old roster.
    let before_c = env.files();
    let changed_c = lists(addresses("c", 5..255), addresses("ci", 0..1));
    let next = vec![next[0].clone(), next[1].clone(), (C, changed_c)];
    env.serve(&next);
    let c_section = enrollments_path(C);
    env.server.fail(
        &c_section,
        vec![Fault::Delay(Duration::ZERO), Fault::Truncated],
    );
    let output = env.sync(&["--retries", "1", "--max-removal-percent", "100"]);
    assert_exit(&output, 1);
    let c = env.course(C);
    assert_eq!(c["status"], "failed", "{c:#}");
    let error = c["error"].as_str().unwrap();
    assert!(!error.contains('\n'), "one line: {error:?}");
    assert!(error.contains("Enrollments"), "names the API: {error:?}");
    let pages: Vec<_> = env
        .server
        .requests_to(&c_section)
        .into_iter()
        .filter(|r| r.query_value("page-number") == Some("2"))
        .collect();
    assert!(!pages.is_empty(), "page 2 was requested");
    let files = env.files();
    assert_eq!(
        of_course(&files, C),
        of_course(&before_c, C),
        "no partial roster"
    );
    assert_eq!(of_course(&env.audit(), C), of_course(&before_c, C));
    assert_eq!(env.sb.commit_count(), 2, "nothing new to commit");
    assert!(temp_files(&env.sb.output_dir()).is_empty());
    env.assert_no_violations();
}

// ---------------------------------------------------------------------------------------
// 2. Shrink guard
// ---------------------------------------------------------------------------------------

const G: &str = "2022-fall-4321";

/// A sandbox where `G` was synced with `before` and is now served with `after`.
fn guard_case(before: Lists, after: Lists) -> Env {
    let env = Env::new(&[(G, before.clone())]);
    assert_exit(&env.sync(&[]), 0);
    assert_eq!(env.files(), expected(&[(G, before)]));
    env.serve(&[(G, after)]);
    env
}

#[track_caller]
fn assert_guarded(env: &Env, output: &Run, kept: &Files, commits: usize) {
    assert_exit(output, 3);
    let report = env.report();
    assert_eq!(report["outcome"], "guarded");
    assert_eq!(report["commit"], Value::Null);
    let course = env.course(G);
    assert_eq!(course["status"], "guarded", "{course:#}");
    assert!(course["error"].as_str().is_some_and(|e| !e.is_empty()));
    assert_eq!(env.files(), *kept, "files kept");
    assert_eq!(env.audit(), *kept, "HEAD kept");
    assert_eq!(env.sb.commit_count(), commits);
}

#[test]
fn shrink_guard_holds_back_a_large_removal_also_in_plan_and_dry_run() {
    let before = lists(addresses("g", 0..20), addresses("gi", 0..2));
    // 7 of 20 removed (35%), 2 added.
    let after = lists(
        join(&[addresses("g", 7..20), addresses("new", 0..2)]),
        addresses("gi", 0..2),
    );
    let env = guard_case(before.clone(), after);
    let kept = expected(&[(G, before)]);

    for (sub, args) in [("plan", &[][..]), ("sync", &["--dry-run"][..])] {
        let output = env.run(sub, args);
        assert_exit(&output, 3);
        let report = env.report();
        assert_eq!(report["dry_run"], true, "{sub} {args:?}");
        assert_eq!(report["outcome"], "guarded");
        assert_eq!(env.course(G)["status"], "guarded");
        assert_eq!(env.files(), kept, "{sub} {args:?} wrote nothing");
        assert_eq!(env.sb.commit_count(), 1);
    }

    let output = env.sync(&[]);
    assert_guarded(&env, &output, &kept, 1);
    let course = env.course(G);
    assert_eq!(counts(&course, "students"), (20, 2, 7), "held-back change");
    assert_eq!(counts(&course, "instructors"), (2, 0, 0));
    assert!(
        course["error"].as_str().unwrap().contains(G),
        "the reason names the key to approve"
    );
    env.assert_no_violations();
}

#[test]
fn shrink_guard_lets_exactly_the_limit_through() {
    let before = lists(addresses("g", 0..20), addresses("gi", 0..2));
    let after = lists(addresses("g", 6..20), addresses("gi", 0..2));
    let env = guard_case(before, after.clone());
    assert_exit(&env.sync(&[]), 0);
    assert_eq!(env.course(G)["status"], "updated");
    assert_eq!(counts(&env.course(G), "students"), (14, 0, 6));
    assert_eq!(env.files(), expected(&[(G, after)]));
    assert_eq!(env.audit(), env.files());
    assert_eq!(env.sb.commit_count(), 2);
}

#[test]
fn shrink_guard_spares_small_rosters_but_not_emptying() {
    // 9 members may lose 5.
    let after = lists(addresses("g", 5..9), addresses("gi", 0..1));
    let env = guard_case(
        lists(addresses("g", 0..9), addresses("gi", 0..1)),
        after.clone(),
    );
    assert_exit(&env.sync(&[]), 0);
    assert_eq!(env.course(G)["status"], "updated");
    assert_eq!(env.files(), expected(&[(G, after)]));

    // 2 students → 0: held back although small.
    let before = lists(addresses("g", 0..2), addresses("gi", 0..1));
    let env = guard_case(before.clone(), lists(vec![], addresses("gi", 0..1)));
    let kept = expected(&[(G, before.clone())]);
    let output = env.sync(&[]);
    assert_guarded(&env, &output, &kept, 1);
    assert_eq!(counts(&env.course(G), "students"), (2, 0, 2));

    // 1 instructor → 0: held back too.
    let env = guard_case(before.clone(), lists(addresses("g", 0..2), vec![]));
    let output = env.sync(&[]);
    assert_guarded(&env, &output, &kept, 1);
    assert_eq!(counts(&env.course(G), "instructors"), (1, 0, 1));
}

#[test]
fn shrink_guard_covers_instructors_and_follows_its_options() {
    // Instructors 10 → 6 (40%): guarded by default, through with 50%.
    let before = lists(addresses("g", 0..12), addresses("gi", 0..10));
    let after = lists(addresses("g", 0..12), addresses("gi", 4..10));
    let env = guard_case(before.clone(), after.clone());
    let output = env.sync(&[]);
    assert_guarded(&env, &output, &expected(&[(G, before)]), 1);
    assert_eq!(counts(&env.course(G), "instructors"), (10, 0, 4));
    let output = env.sync(&["--max-removal-percent", "50"]);
    assert_exit(&output, 0);
    assert_eq!(env.course(G)["status"], "updated");
    assert_eq!(env.files(), expected(&[(G, after)]));
    assert_eq!(env.sb.commit_count(), 2);

    // 20 → 10 students: through when the guard starts at 100 members.
    let before = lists(addresses("g", 0..20), addresses("gi", 0..1));
    let after = lists(addresses("g", 10..20), addresses("gi", 0..1));
    let env = guard_case(before.clone(), after.clone());
    let output = env.sync(&[]);
    assert_guarded(&env, &output, &expected(&[(G, before)]), 1);
    let output = env.sync(&["--guard-min-size", "100"]);
    assert_exit(&output, 0);
    assert_eq!(env.course(G)["status"], "updated");
    assert_eq!(counts(&env.course(G), "students"), (10, 0, 10));
    assert_eq!(env.files(), expected(&[(G, after)]));
}

// ---------------------------------------------------------------------------------------
// 3. Approval
// ---------------------------------------------------------------------------------------

const K1: &str = "2023-spring-111";
const K2: &str = "2023-spring-222";

/// K1 and K2 synced with 20 students each, now served with half of them.
fn approval_case() -> (Env, Vec<(&'static str, Lists)>) {
    let base = vec![
        (K1, lists(addresses("k1", 0..20), addresses("k1i", 0..2))),
        (K2, lists(addresses("k2", 0..20), addresses("k2i", 0..2))),
    ];
    let env = Env::new(&base);
    assert_exit(&env.sync(&[]), 0);
    let next = vec![
        (K1, lists(addresses("k1", 10..20), addresses("k1i", 0..2))),
        (K2, lists(addresses("k2", 10..20), addresses("k2i", 0..2))),
    ];
    env.serve(&next);
    (env, next)
}

#[test]
fn approval_flag_releases_only_the_approved_course() {
    let (env, next) = approval_case();
    let good = env.files();
    let output = env.sync(&[]);
    assert_exit(&output, 3);
    assert_eq!(env.course(K1)["status"], "guarded");
    assert_eq!(env.course(K2)["status"], "guarded");
    assert_eq!(env.files(), good);
    assert_eq!(env.sb.commit_count(), 1);

    // Approving K2 does not release K1.
    let output = env.sync(&["--approve", K2]);
    assert_exit(&output, 3);
    assert_eq!(env.course(K1)["status"], "guarded");
    assert_eq!(env.course(K1)["approved"], Value::Null);
    assert_eq!(env.course(K2)["status"], "updated");
    let files = env.files();
    assert_eq!(of_course(&files, K1), of_course(&good, K1), "K1 kept");
    assert_eq!(of_course(&files, K2), of_course(&expected(&next), K2));
    assert_eq!(env.sb.commit_count(), 2);
    let message = env.last_commit_message();
    assert!(message.contains(&format!("Approved: {K2}")), "{message}");
    assert!(!message.contains(&format!("Approved: {K1}")), "{message}");

    let output = env.sync(&["--approve", K1]);
    assert_exit(&output, 0);
    let report = env.report();
    assert_eq!(report["outcome"], "success");
    let k1 = env.course(K1);
    assert_eq!(k1["status"], "updated");
    assert!(k1["approved"].is_string(), "{k1:#}");
    assert_eq!(counts(&k1, "students"), (10, 0, 10));
    assert_eq!(env.files(), expected(&next));
    assert_eq!(env.audit(), expected(&next));
    assert_eq!(env.sb.commit_count(), 3);
    let message = env.last_commit_message();
    assert!(message.contains(&format!("Approved: {K1}")), "{message}");
}

#[test]
fn approval_from_the_environment_adds_to_the_flags() {
    let (env, next) = approval_case();
    let output = env.sb.run(
        env.command("sync")
            .env("ROSTER_SYNC_APPROVE", format!("2099-fall-9, {K1}"))
            .args(["--approve", K2]),
    );
    assert_exit(&output, 0);
    for key in [K1, K2] {
        let course = env.course(key);
        assert_eq!(course["status"], "updated", "{course:#}");
        assert!(course["approved"].is_string(), "{course:#}");
    }
    assert_eq!(env.files(), expected(&next));
    let message = env.last_commit_message();
    assert!(message.contains(&format!("Approved: {K1}")), "{message}");
    assert!(message.contains(&format!("Approved: {K2}")), "{message}");

    // The environment alone, two keys comma separated.
    let (env, next) = approval_case();
    let output = env.sb.run(
        env.command("sync")
            .env("ROSTER_SYNC_APPROVE", format!("{K2},{K1}")),
    );
    assert_exit(&output, 0);
    assert_eq!(env.files(), expected(&next));
    let message = env.last_commit_message();
    assert!(message.contains(&format!("Approved: {K1}")), "{message}");
}

// ---------------------------------------------------------------------------------------
// 4. First time seen
// ---------------------------------------------------------------------------------------

#[test]
fn a_course_seen_for_the_first_time_is_never_guarded() {
    const NEW_EMPTY: &str = "2024-fall-70001";
    const OLD_SIDECAR: &str = "2024-fall-70002";
    let base = vec![(A, lists(addresses("a", 0..12), addresses("ai", 0..1)))];
    let env = Env::new(&base);
    assert_exit(&env.sync(&[]), 0);

    // A file an older tool left for a course the audit repository has never seen: not a
    // first time (SPEC §6), that file is the guards' baseline.
    let old = render(&addresses("old", 0..30));
    fs::write(env.file(&students_file(OLD_SIDECAR)), &old).unwrap();
    let next = vec![
        base[0].clone(),
        (NEW_EMPTY, Lists::default()),
        (OLD_SIDECAR, lists(addresses("o", 0..1), vec![])),
    ];
    env.serve(&next);
    env.configure(&[A, NEW_EMPTY, OLD_SIDECAR]);
    let output = env.sync(&[]);
    assert_exit(&output, 3);
    assert_eq!(env.course(NEW_EMPTY)["status"], "created");
    assert_eq!(env.course(OLD_SIDECAR)["status"], "guarded");
    assert_eq!(counts(&env.course(OLD_SIDECAR), "students"), (30, 1, 30));
    let files = env.files();
    assert_eq!(files[&students_file(NEW_EMPTY)], Bytes(vec![]));
    assert_eq!(files[&instructors_file(NEW_EMPTY)], Bytes(vec![]));
    let mut kept = expected(&next[..2]);
    kept.insert(students_file(OLD_SIDECAR), Bytes(old));
    assert_eq!(files, kept);
    assert_eq!(env.audit(), kept, "the old file is recorded as it is");
    assert_eq!(env.sb.commit_count(), 2);
}

// ---------------------------------------------------------------------------------------
// 5. Pruning
// ---------------------------------------------------------------------------------------

#[test]
fn removed_profile_is_kept_without_prune_and_pruned_with_it_never_other_files() {
    const P1: &str = "2024-spring-101";
    const P2: &str = "2024-spring-102";
    const P3: &str = "2024-spring-103";
    let base = vec![
        (P1, lists(addresses("p1", 0..3), addresses("p1i", 0..1))),
        (P2, lists(addresses("p2", 0..4), addresses("p2i", 0..1))),
        (P3, lists(addresses("p3", 0..5), addresses("p3i", 0..2))),
    ];
    let env = Env::new(&base);
    fs::create_dir_all(env.sb.output_dir()).unwrap();
    let foreign: Files = [
        ("notes.txt", &b"operator notes\n"[..]),
        ("other-students.txt.bak", b"backup.000@example.edu\n"),
        ("2018-fall-99999-students.txt", b"never.000@example.edu\n"),
    ]
    .into_iter()
    .map(|(name, content)| (name.to_string(), Bytes(content.to_vec())))
    .collect();
    for (name, content) in &foreign {
        fs::write(env.file(name), content).unwrap();
    }
    let with_foreign = |rosters: Files| {
        let mut all = rosters;
        all.extend(foreign.clone());
        all
    };
    assert_exit(&env.sync(&[]), 0);
    assert_eq!(env.files(), with_foreign(expected(&base)));
    assert_eq!(env.audit(), expected(&base));

    // P3 no longer configured: kept, no commit.
    env.configure(&[P1, P2]);
    let output = env.sync(&[]);
    assert_exit(&output, 0);
    assert_eq!(env.files(), with_foreign(expected(&base)));
    assert_eq!(env.audit(), expected(&base));
    assert_eq!(env.sb.commit_count(), 1);
    assert_eq!(env.report()["commit"], Value::Null);

    let output = env.sync(&["--prune"]);
    assert_exit(&output, 0);
    let remaining = base[..2].to_vec();
    assert_eq!(env.files(), with_foreign(expected(&remaining)));
    assert_eq!(env.audit(), expected(&remaining));
    assert_eq!(env.sb.commit_count(), 2);
    let p3 = env.course(P3);
    assert_eq!(p3["status"], "pruned");
    assert_eq!(counts(&p3, "students"), (0, 0, 5));
    assert_eq!(counts(&p3, "instructors"), (0, 0, 2));
    let subject = env.sb.git(&["log", "-1", "--format=%s", "main"]);
    assert_eq!(subject.trim(), "roster-sync: 1 course changed (+0 -7)");

    // A second prune has nothing left to do and still leaves the other files alone.
    assert_exit(&env.sync(&["--prune"]), 0);
    assert_eq!(env.files(), with_foreign(expected(&remaining)));
    assert_eq!(env.sb.commit_count(), 2);
}

#[test]
fn pruning_many_courses_is_guarded_in_courses() {
    let keys: Vec<String> = (0..10)
        .map(|i| format!("2024-summer-{}", 500 + i))
        .collect();
    let base: Vec<(&str, Lists)> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let tag = format!("m{i}");
            (key.as_str(), lists(addresses(&tag, 0..2), vec![]))
        })
        .collect();
    let env = Env::new(&base);
    assert_exit(&env.sync(&[]), 0);
    let all = expected(&base);

    // 4 of 10 courses (40%): held back.
    let kept: Vec<&str> = keys[..6].iter().map(String::as_str).collect();
    env.configure(&kept);
    let output = env.sync(&["--prune"]);
    assert_exit(&output, 3);
    for key in &keys[6..] {
        assert_eq!(env.course(key)["status"], "guarded");
    }
    assert_eq!(env.files(), all);
    assert_eq!(env.sb.commit_count(), 1);

    // 3 of 10 (30%): through.
    let kept: Vec<&str> = keys[..7].iter().map(String::as_str).collect();
    env.configure(&kept);
    assert_exit(&env.sync(&["--prune"]), 0);
    for key in &keys[7..] {
        assert_eq!(env.course(key)["status"], "pruned");
    }
    assert_eq!(env.files(), expected(&base[..7]));
    assert_eq!(env.sb.commit_count(), 2);
}

// ---------------------------------------------------------------------------------------
// 6. Empty profiles
// ---------------------------------------------------------------------------------------

#[test]
fn empty_profiles_keep_every_roster_unless_pruning_is_approved() {
    let base = vec![
        (A, lists(addresses("a", 0..12), addresses("ai", 0..1))),
        (B, lists(addresses("b", 0..3), addresses("bi", 0..1))),
    ];
    for yaml in [
        "custom:\n  profiles: {}\n",
        "custom:\n  profiles: null\n",
        "custom:\n  profiles:\n",
    ] {
        let env = Env::new(&base);
        assert_exit(&env.sync(&[]), 0);
        let good = env.files();
        env.sb.write_values(yaml);

        let output = env.sync(&[]);
        assert_exit(&output, 0);
        assert_eq!(env.report()["commit"], Value::Null, "{yaml:?}");
        assert_eq!(env.files(), good, "{yaml:?}");
        assert_eq!(env.audit(), good);
        assert_eq!(env.sb.commit_count(), 1);
        assert!(
            output.stderr.contains("kept") || output.stderr.contains("nothing"),
            "the log says why: {}",
            output.stderr
        );

        let output = env.sync(&["--prune"]);
        assert_exit(&output, 3);
        assert_eq!(env.report()["outcome"], "guarded");
        assert_eq!(env.files(), good, "{yaml:?}");
        assert_eq!(env.sb.commit_count(), 1);

        let output = env.sync(&["--prune", "--approve", A, "--approve", B]);
        assert_exit(&output, 0);
        assert_eq!(env.course(A)["status"], "pruned");
        assert_eq!(env.course(B)["status"], "pruned");
        assert_eq!(env.files(), BTreeMap::new(), "{yaml:?}");
        assert_eq!(env.audit(), BTreeMap::new());
        assert_eq!(env.sb.commit_count(), 2);
    }
}

// ---------------------------------------------------------------------------------------
// 7. Drift
// ---------------------------------------------------------------------------------------

#[test]
fn drift_is_restored_from_head_for_every_kind_of_course() {
    const D1: &str = "2025-spring-301";
    const D2: &str = "2025-spring-302";
    let base = vec![
        (D1, lists(addresses("d1", 0..12), addresses("d1i", 0..2))),
        (D2, lists(addresses("d2", 0..12), addresses("d2i", 0..1))),
    ];
    let env = Env::new(&base);
    assert_exit(&env.sync(&[]), 0);
    let good = expected(&base);

    let assert_repaired = |output: &Run, code: i32| {
        assert_exit(output, code);
        assert_eq!(env.report()["drift"], 1);
        assert_eq!(env.report()["commit"], Value::Null);
        assert_eq!(env.files(), good);
        assert_eq!(env.audit(), good);
        assert_eq!(env.sb.commit_count(), 1);
    };

    // Edited.
    let mut edited = good[&students_file(D1)].clone();
    edited.0.extend_from_slice(b"intruder.000@example.edu\n");
    fs::write(env.file(&students_file(D1)), &edited).unwrap();
    let output = env.sync(&[]);
    assert_repaired(&output, 0);
    assert_eq!(env.course(D1)["status"], "unchanged");

    // Deleted.
    fs::remove_file(env.file(&instructors_file(D1))).unwrap();
    assert_repaired(&env.sync(&[]), 0);

    // Replaced by a symlink to a file outside the directory.
    let outside = env.sb.path("outside.txt");
    fs::write(&outside, b"outside.000@example.edu\n").unwrap();
    fs::remove_file(env.file(&students_file(D2))).unwrap();
    std::os::unix::fs::symlink(&outside, env.file(&students_file(D2))).unwrap();
    assert_repaired(&env.sync(&[]), 0);
    let metadata = fs::symlink_metadata(env.file(&students_file(D2))).unwrap();
    assert!(metadata.file_type().is_file(), "a regular file again");
    assert_eq!(fs::read(&outside).unwrap(), b"outside.000@example.edu\n");

    // plan reports drift and writes nothing.
    fs::write(env.file(&students_file(D1)), &edited).unwrap();
    let output = env.run("plan", &[]);
    assert_exit(&output, 0);
    assert_eq!(env.report()["drift"], 1);
    assert_eq!(
        Bytes(fs::read(env.file(&students_file(D1))).unwrap()),
        edited
    );
    assert_eq!(env.sb.commit_count(), 1);

    // A guarded course's drift is repaired from HEAD.
    env.serve(&[
        (D1, lists(addresses("d1", 6..12), addresses("d1i", 0..2))),
        base[1].clone(),
    ]);
    let output = env.sync(&[]);
    assert_repaired(&output, 3);
    assert_eq!(env.course(D1)["status"], "guarded");

    // A failed course's drift is repaired from HEAD.
    env.serve(&base);
    env.server
        .fail_always(&classes_path(D2), Fault::Status(503));
    fs::write(env.file(&instructors_file(D2)), b"").unwrap();
    let output = env.sync(&["--retries", "0"]);
    assert_repaired(&output, 1);
    assert_eq!(env.course(D2)["status"], "failed");
    assert_eq!(env.course(D1)["status"], "unchanged");
    assert_exit(&env.verify(), 0);
}

// ---------------------------------------------------------------------------------------
// 8. Lock
// ---------------------------------------------------------------------------------------

fn hold_lock(env: &Env) -> fs::File {
    fs::create_dir_all(env.sb.audit_repo()).unwrap();
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(env.sb.audit_repo().join("roster-sync.lock"))
        .unwrap();
    file.try_lock().expect("the test takes the lock");
    file
}

#[test]
fn a_held_lock_makes_a_run_exit_4_at_once_changing_nothing() {
    let base = vec![(A, lists(addresses("a", 0..12), addresses("ai", 0..1)))];
    let env = Env::with_options(
        &base,
        Options {
            latency: Duration::from_millis(200),
            ..Options::default()
        },
    );
    let lock = hold_lock(&env);
    let started = Instant::now();
    let output = env.sync(&[]);
    assert_exit(&output, 4);
    assert!(started.elapsed() < Duration::from_secs(3), "at once");
    let report = env.report();
    assert_eq!(report["outcome"], "failed");
    assert_eq!(report["exit_code"], 4);
    assert!(report["error"].as_str().is_some_and(|e| !e.is_empty()));
    assert!(env.server.requests().is_empty(), "no request");
    assert!(
        !env.sb.output_dir().exists() || env.files().is_empty(),
        "no file written"
    );
    assert_eq!(env.sb.commit_count(), 0);
    drop(lock);

    // With a repository: still nothing changes.
    assert_exit(&env.sync(&[]), 0);
    let good = env.files();
    env.serve(&[(A, lists(addresses("a", 0..13), addresses("ai", 0..1)))]);
    let lock = hold_lock(&env);
    env.server.clear_log();
    let output = env.sync(&[]);
    assert_exit(&output, 4);
    assert_eq!(env.report()["outcome"], "failed");
    assert!(env.server.requests().is_empty());
    assert_eq!(env.files(), good);
    assert_eq!(env.sb.commit_count(), 1);
    drop(lock);
    assert_exit(&env.sync(&[]), 0);
    assert_eq!(env.sb.commit_count(), 2);
}

#[test]
fn two_concurrent_runs_one_exits_4() {
    let base = vec![
        (A, lists(addresses("a", 0..12), addresses("ai", 0..1))),
        (B, lists(addresses("b", 0..5), addresses("bi", 0..1))),
    ];
    let env = Env::with_options(
        &base,
        Options {
            latency: Duration::from_millis(100),
            ..Options::default()
        },
    );
    let reports = [env.sb.path("report-1.json"), env.sb.path("report-2.json")];
    let children: Vec<_> = reports
        .iter()
        .map(|report| {
            env.command_at("sync", &env.sb.output_dir(), &env.sb.audit_repo(), report)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut codes: Vec<i32> = children
        .into_iter()
        .map(|child| child.wait_with_output().unwrap().status.code().unwrap())
        .collect();
    let loser = reports
        .iter()
        .map(|path| read_json(path))
        .find(|report| report["exit_code"] == 4);
    codes.sort();
    assert_eq!(codes, [0, 4]);
    let loser = loser.expect("the loser's report");
    assert_eq!(loser["outcome"], "failed");
    assert!(loser["error"].is_string());
    assert_eq!(env.files(), expected(&base));
    assert_eq!(env.sb.commit_count(), 1);
}

#[test]
fn stale_git_lock_files_are_removed_by_the_next_run() {
    let base = vec![(A, lists(addresses("a", 0..12), addresses("ai", 0..1)))];
    let env = Env::new(&base);
    assert_exit(&env.sync(&[]), 0);
    let next = vec![(A, lists(addresses("a", 0..14), addresses("ai", 0..1)))];
    env.serve(&next);
    let audit = env.sb.audit_repo();
    let stale = ["HEAD.lock", "refs/heads/main.lock", "index.lock"];
    for name in stale {
        fs::write(audit.join(name), b"").unwrap();
    }
    let output = env.sync(&[]);
    assert_exit(&output, 0);
    for name in stale {
        assert!(!audit.join(name).exists(), "{name} removed");
    }
    assert!(
        audit.join("roster-sync.lock").exists(),
        "our lock file stays"
    );
    assert_eq!(env.files(), expected(&next));
    assert_eq!(env.audit(), expected(&next));
    assert_eq!(env.sb.commit_count(), 2);
    env.assert_fsck_clean();
}

// ---------------------------------------------------------------------------------------
// 9. SIGKILL at any instant
// ---------------------------------------------------------------------------------------

/// Generation `g` of a campus whose rosters change every generation: each course gains
/// one student and loses its oldest one.
fn mutate(campus: &mut Campus, generation: usize) {
    for (c, course) in campus.courses.iter_mut().enumerate() {
        let gone = course.sections[0]
            .enrollments
            .first()
            .map(|e| e.uid.clone());
        if let Some(gone) = gone {
            for section in &mut course.sections {
                section.enrollments.retain(|e| e.uid != gone);
            }
        }
        course.sections[0].enrollments.push(Enrollment::new(
            &format!("7{generation:03}{c:03}"),
            "E",
            vec![Email::new(
                "CAMP",
                &format!("gen{generation:03}.c{c:02}@example.edu"),
            )],
        ));
    }
}

fn oracle(campus: &Campus) -> Files {
    let mut files = BTreeMap::new();
    for course in &campus.courses {
        let key = course.key();
        files.insert(
            students_file(&key),
            Bytes(render(&campus.expected_students(&key))),
        );
        files.insert(
            instructors_file(&key),
            Bytes(render(&campus.expected_instructors(&key))),
        );
    }
    files
}

/// Where a SIGKILL lands in a run.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// A fixed time after the start.
    Delay(Duration),
    /// As soon as the run stages its first temporary roster file: before its commit.
    Staging,
    /// As soon as the run moves the audit branch: after its commit, before its renames.
    /// strace holds the thread that moved the branch for a while inside that system call,
    /// so the kill cannot come after the renames, which take microseconds.
    Commit,
}

/// An inotify watch for entries that appear in one directory (created or renamed into
/// it), so a kill can follow an event within microseconds instead of a guessed delay.
struct Watch(std::os::fd::OwnedFd);

impl Watch {
    fn new(dir: &Path) -> Watch {
        use std::os::fd::FromRawFd;
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
        // SAFETY: plain system calls; the descriptor is owned from here on.
        unsafe {
            let fd = libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC);
            assert!(fd >= 0, "inotify: {}", std::io::Error::last_os_error());
            let fd = std::os::fd::OwnedFd::from_raw_fd(fd);
            let mask = libc::IN_CREATE | libc::IN_MOVED_TO;
            let watch =
                libc::inotify_add_watch(std::os::fd::AsRawFd::as_raw_fd(&fd), path.as_ptr(), mask);
            assert!(
                watch >= 0,
                "inotify {}: {}",
                dir.display(),
                std::io::Error::last_os_error()
            );
            Watch(fd)
        }
    }

    /// Waits up to `timeout` for an entry whose name satisfies `wanted`.
    fn wait(&self, wanted: &dyn Fn(&str) -> bool, timeout: Duration) -> bool {
        use std::os::fd::AsRawFd;
        let fd = self.0.as_raw_fd();
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = timeout.as_millis().try_into().unwrap_or(libc::c_int::MAX);
        // SAFETY: poll and read on our own descriptor into a local buffer.
        if unsafe { libc::poll(&mut poll, 1, millis) } <= 0 {
            return false;
        }
        let mut buffer = [0u64; 512];
        let read = unsafe { libc::read(fd, buffer.as_mut_ptr().cast(), size_of_val(&buffer)) };
        let Ok(read) = usize::try_from(read) else {
            return false;
        };
        let bytes = &buffer_bytes(&buffer)[..read];
        let header = size_of::<libc::inotify_event>();
        let mut at = 0;
        while at + header <= bytes.len() {
            // The event's name follows its header, NUL-padded to `len` bytes.
            let len = u32::from_ne_bytes(bytes[at + 12..at + 16].try_into().unwrap()) as usize;
            let name = &bytes[at + header..at + header + len];
            let name = name.split(|&b| b == 0).next().unwrap_or_default();
            if wanted(&String::from_utf8_lossy(name)) {
                return true;
            }
            at += header + len;
        }
        false
    }
}

fn buffer_bytes(buffer: &[u64]) -> &[u8] {
    // SAFETY: any u64 buffer is a valid byte buffer of eight times its length.
    unsafe { std::slice::from_raw_parts(buffer.as_ptr().cast(), size_of_val(buffer)) }
}

/// Starts a sync and SIGKILLs it at `at`; false when it finished before.
fn killed_sync(env: &Env, at: KillAt) -> bool {
    let branch = env.sb.audit_repo().join("refs/heads");
    let watch = match at {
        KillAt::Delay(_) => None,
        KillAt::Staging => Some((
            Watch::new(&env.sb.output_dir()),
            (|name: &str| name.starts_with(".roster-sync-tmp-")) as fn(&str) -> bool,
        )),
        KillAt::Commit => Some((
            Watch::new(&branch),
            (|name: &str| name == "main") as fn(&str) -> bool,
        )),
    };
    let mut command = match at {
        KillAt::Commit => held_after_moving(&branch.join("main.lock"), &env.command("sync")),
        _ => env.command("sync"),
    };
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    match (at, watch) {
        (KillAt::Delay(delay), _) => std::thread::sleep(delay),
        (_, Some((watch, wanted))) => loop {
            if watch.wait(&wanted, Duration::from_millis(5)) {
                break;
            }
            if child.try_wait().unwrap().is_some() {
                return false;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{at:?} never came"
            );
        },
        (_, None) => unreachable!(),
    }
    // The child is not reaped before this point, so its pid cannot have been reused.
    let finished = child.try_wait().unwrap().is_some();
    if !finished {
        let sync = match at {
            // The sync is strace's only child (killing strace would let it run on).
            KillAt::Commit => {
                let children = format!("/proc/{0}/task/{0}/children", child.id());
                let children = fs::read_to_string(&children).expect("strace's child");
                children.trim().parse().expect("one child")
            }
            _ => child.id(),
        };
        // SAFETY: kill(2) on a process of ours that has not been reaped.
        unsafe { libc::kill(sync as libc::pid_t, libc::SIGKILL) };
    }
    child.wait().unwrap();
    !finished
}

/// `sync` under strace, which holds each thread that renames or links `lock` (libgit2
/// moving it over the branch) for half a second once the call has returned.
fn held_after_moving(lock: &Path, sync: &Command) -> Command {
    let calls = "link,rename,renameat,renameat2";
    let mut strace = Command::new("strace");
    strace
        .args(["-f", "-qq", "-o", "/dev/null", "-P"])
        .arg(lock)
        .args(["-e", &format!("trace={calls}")])
        .args(["-e", &format!("inject={calls}:delay_exit=500ms")]);
    support::under(strace, sync)
}

#[test]
fn sigkill_at_any_instant_leaves_old_or_new_files_and_the_next_run_converges() {
    let test_started = Instant::now();
    let mut campus = Campus::synthetic(&Synthetic {
        courses: 6,
        mean_sections: 2,
        mean_students: 60,
        instructor_pool: 6,
        seed: 7,
    });
    let env = Env::with_campus(
        campus.clone(),
        Options {
            latency: Duration::from_millis(10),
            ..Options::default()
        },
    );
    assert_exit(&env.sync(&[]), 0);
    assert_eq!(env.files(), oracle(&campus));
    // A full run that changes every course, timed to spread the kill points.
    mutate(&mut campus, 0);
    let next_campus = campus.clone();
    env.server.update_campus(|c| *c = next_campus);
    let started = Instant::now();
    assert_exit(&env.sync(&[]), 0);
    let full_run = started.elapsed().max(Duration::from_millis(50));
    assert_eq!(env.files(), oracle(&campus));

    // Kill points spread over the whole run, denser towards its end where the commit
    // and the writes happen; then kills that follow the run's own steps, which a delay
    // cannot hit reliably: the first staged file (so the kill lands between staging and
    // the commit) and the move of the audit branch (between the commit and the renames,
    // held open by strace, so every one lands there).
    const DELAYS: usize = 25;
    const AT_STAGING: usize = 4;
    const AT_COMMIT: usize = 3;
    let schedule: Vec<KillAt> = (0..DELAYS)
        .map(|i| KillAt::Delay(full_run.mul_f64((i as f64 / (DELAYS - 1) as f64).sqrt())))
        .chain((0..AT_STAGING).map(|_| KillAt::Staging))
        .chain((0..AT_COMMIT).map(|_| KillAt::Commit))
        .collect();

    // What the kills hit, judged by the state they left.
    let (mut finished, mut before_commit, mut staged_before_commit) = (0, 0, 0);
    let (mut after_commit_before_rename, mut after_rename, mut mixed) = (0, 0, 0);
    for (i, at) in schedule.into_iter().enumerate() {
        mutate(&mut campus, i + 1);
        let next_campus = campus.clone();
        env.server.update_campus(|c| *c = next_campus);
        let old = env.files();
        let new = oracle(&campus);
        assert_ne!(old, new, "every generation changes rosters");
        let old_head = env.audit();
        assert_eq!(old_head, old);

        let killed = killed_sync(&env, at);
        if !killed {
            finished += 1;
        }

        // Invariants right after the kill.
        let dir = env.sb.output_dir();
        let mut still_old = 0;
        for (name, content) in dir_files(&dir) {
            if name.starts_with(".roster-sync-tmp-") {
                continue;
            }
            let (was, will) = (old.get(&name), new.get(&name));
            assert!(
                was == Some(&content) || will == Some(&content),
                "iteration {i} (kill {at:?}): {name} is neither old nor new"
            );
            if was != Some(&content) {
                mixed += 1;
            }
            if will != Some(&content) {
                still_old += 1;
            }
        }
        for name in old.keys() {
            assert!(dir.join(name).is_file(), "iteration {i}: {name} vanished");
        }
        env.assert_fsck_clean();
        let head = env.audit();
        assert!(
            head == old_head || head == new,
            "iteration {i} (kill {at:?}): HEAD is neither the old nor the new tree"
        );
        if killed && head == old_head {
            before_commit += 1;
            if !temp_files(&dir).is_empty() {
                staged_before_commit += 1;
            }
        } else if killed && still_old > 0 {
            after_commit_before_rename += 1;
        } else if killed {
            after_rename += 1;
        }

        // The next run converges.
        let output = env.sync(&[]);
        assert_exit(&output, 0);
        assert_eq!(env.files(), new, "iteration {i}: converged");
        assert_eq!(env.audit(), new);
        assert_exit(&env.verify(), 0);
        assert!(
            temp_files(&dir).is_empty(),
            "iteration {i}: temporary files"
        );
    }
    let hits = format!(
        "full run {full_run:?}; {finished} runs finished before the kill; kills before the \
         commit {before_commit} ({staged_before_commit} with staged files), after the commit \
         before the renames {after_commit_before_rename}, after the renames {after_rename}; \
         {mixed} files already new; {:?} in all",
        test_started.elapsed()
    );
    assert!(
        staged_before_commit >= 1,
        "no kill landed between staging and the commit: {hits}"
    );
    assert!(
        after_commit_before_rename >= AT_COMMIT,
        "no kill landed between the commit and the renames: {hits}"
    );
    assert!(test_started.elapsed() < Duration::from_secs(60), "{hits}");
    env.assert_no_violations();
}

// ---------------------------------------------------------------------------------------
// 10. SIGTERM
// ---------------------------------------------------------------------------------------

#[test]
fn sigterm_during_a_slow_fetch_exits_6_promptly_writing_nothing() {
    let base = vec![(A, lists(addresses("a", 0..12), addresses("ai", 0..1)))];
    let env = Env::new(&base);
    assert_exit(&env.sync(&[]), 0);
    let good = env.files();
    let next = vec![(A, lists(addresses("a", 0..13), addresses("ai", 0..1)))];
    env.serve(&next);
    env.server
        .fail(&classes_path(A), vec![Fault::Delay(Duration::from_secs(4))]);
    let _ = fs::remove_file(env.sb.report_path());
    let mut child = env
        .command("sync")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert!(child.try_wait().unwrap().is_none(), "still fetching");
    let signalled = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if signalled.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            panic!("still running 5 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(2), "exited after {took:?}");
    assert_eq!(code, Some(6));
    let report = env.report();
    assert_eq!(report["outcome"], "failed");
    assert_eq!(report["exit_code"], 6);
    let error = report["error"].as_str().expect("an error");
    assert!(error.contains("signal"), "{error}");
    assert_eq!(env.files(), good);
    assert_eq!(env.sb.commit_count(), 1);
    assert!(temp_files(&env.sb.output_dir()).is_empty());

    let output = env.sync(&[]);
    assert_exit(&output, 0);
    assert_eq!(env.files(), expected(&next));
    assert_eq!(env.sb.commit_count(), 2);
}

// ---------------------------------------------------------------------------------------
// 11. verify
// ---------------------------------------------------------------------------------------

#[test]
fn verify_names_every_file_and_the_ones_that_differ() {
    let base = vec![
        (A, lists(addresses("a", 0..3), addresses("ai", 0..1))),
        (B, lists(addresses("b", 0..2), addresses("bi", 0..1))),
    ];
    let env = Env::new(&base);
    assert_exit(&env.sync(&[]), 0);
    let output = env.verify();
    assert_exit(&output, 0);
    let text = &output.stdout;
    let names: Vec<String> = expected(&base).into_keys().collect();
    for name in &names {
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(name.as_str())).collect();
        assert_eq!(lines.len(), 1, "one line for {name}:\n{text}");
        assert!(lines[0].starts_with("ok"), "{text}");
    }

    let edited = students_file(A);
    let deleted = instructors_file(B);
    fs::write(env.file(&edited), b"tampered.000@example.edu\n").unwrap();
    fs::remove_file(env.file(&deleted)).unwrap();
    let output = env.verify();
    assert_exit(&output, 1);
    let text = &output.stdout;
    for name in [&edited, &deleted] {
        let line = text
            .lines()
            .find(|l| l.contains(name.as_str()))
            .unwrap_or_else(|| panic!("{name} named:\n{text}"));
        assert!(!line.starts_with("ok"), "{line}");
    }
    for name in names.iter().filter(|n| **n != edited && **n != deleted) {
        assert!(
            text.lines()
                .any(|l| l.contains(name.as_str()) && l.starts_with("ok")),
            "{text}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 12. history
// ---------------------------------------------------------------------------------------

#[test]
fn history_shows_additions_and_removals_with_filters() {
    const H1: &str = "2024-spring-5150";
    const H2: &str = "2024-spring-5151";
    let joiner = "late.joiner@example.edu";
    let base = vec![
        (H1, lists(addresses("h", 0..12), addresses("hi", 0..1))),
        (H2, lists(addresses("x", 0..2), addresses("xi", 0..1))),
    ];
    let env = Env::new(&base);
    assert_exit(&env.sync(&[]), 0);
    let mut grown = base.clone();
    grown[0].1.students.push(joiner.to_string());
    env.serve(&grown);
    assert_exit(&env.sync(&[]), 0);
    env.serve(&base);
    assert_exit(&env.sync(&[]), 0);
    assert_eq!(env.sb.commit_count(), 3);
    let commits: Vec<String> = env
        .sb
        .git(&["rev-list", "--reverse", "main"])
        .lines()
        .map(str::to_string)
        .collect();

    let history = |args: &[&str]| {
        let output = env.sb.run(
            env.sb
                .command()
                .arg("history")
                .arg("--audit-repo")
                .arg(env.sb.audit_repo())
                .args(args),
        );
        (output.code, output.stdout)
    };

    let (code, all) = history(&[]);
    assert_eq!(code, Some(0));
    let of_joiner: Vec<Vec<&str>> = all
        .lines()
        .filter(|l| l.contains(joiner))
        .map(|l| l.split(' ').collect())
        .collect();
    assert_eq!(of_joiner.len(), 2, "{all}");
    for (fields, (sign, commit)) in of_joiner
        .iter()
        .zip([('+', &commits[1]), ('-', &commits[2])])
    {
        assert_eq!(fields.len(), 5, "{fields:?}");
        assert!(
            fields[0].len() == 20 && fields[0].ends_with('Z') && fields[0].as_bytes()[10] == b'T',
            "RFC 3339 time: {fields:?}"
        );
        assert!(
            commit.starts_with(fields[1]) && fields[1].len() >= 7,
            "{fields:?}"
        );
        assert_eq!(fields[2], H1);
        assert_eq!(fields[3], "students");
        assert_eq!(fields[4], format!("{sign}{joiner}"));
    }
    // The first commit added every member of both courses.
    let initial = 12 + 1 + 2 + 1;
    assert_eq!(all.lines().count(), initial + 2, "{all}");

    let (_, by_member) = history(&["--member", "Late.Joiner@EXAMPLE.edu"]);
    let lines: Vec<&str> = by_member.lines().collect();
    assert_eq!(lines.len(), 2, "{by_member}");
    assert!(lines[0].ends_with(&format!("+{joiner}")));
    assert!(lines[1].ends_with(&format!("-{joiner}")));

    let (_, by_course) = history(&["--course", H2]);
    assert_eq!(by_course.lines().count(), 3, "{by_course}");
    assert!(by_course.lines().all(|l| l.split(' ').nth(2) == Some(H2)));

    let (code, future) = history(&["--since", "2999-01-01"]);
    assert_eq!(code, Some(0));
    assert_eq!(future, "");
    let today = &all.lines().next().unwrap()[..10];
    let (_, since_today) = history(&["--since", today]);
    assert_eq!(since_today, all);
    let (_, past) = history(&["--since", "2000-01-01"]);
    assert_eq!(past, all);

    let (code, _) = history(&["--since", "not-a-date"]);
    assert_eq!(code, Some(2));
}

// ---------------------------------------------------------------------------------------
// 13. Storage errors
// ---------------------------------------------------------------------------------------

#[test]
fn an_unwritable_output_directory_exits_5_and_commits_nothing() {
    let base = vec![(A, lists(addresses("a", 0..12), addresses("ai", 0..1)))];
    let env = Env::new(&base);
    let blocker = env.sb.path("blocker");
    fs::write(&blocker, b"a regular file\n").unwrap();
    let under_file = blocker.join("profiles.d");
    let report = env.sb.report_path();

    let output =
        env.sb
            .run(&mut env.command_at("sync", &under_file, &env.sb.audit_repo(), &report));
    assert_exit(&output, 5);
    let json = read_json(&report);
    assert_eq!(json["outcome"], "failed");
    assert_eq!(json["exit_code"], 5);
    assert!(json["error"].as_str().is_some_and(|e| !e.is_empty()));
    assert_eq!(json["commit"], Value::Null);
    assert_eq!(env.sb.commit_count(), 0);
    assert_eq!(fs::read(&blocker).unwrap(), b"a regular file\n");

    // With history: a changed roster is not committed either.
    assert_exit(&env.sync(&[]), 0);
    env.serve(&[(A, lists(addresses("a", 0..13), addresses("ai", 0..1)))]);
    let output =
        env.sb
            .run(&mut env.command_at("sync", &under_file, &env.sb.audit_repo(), &report));
    assert_exit(&output, 5);
    assert_eq!(read_json(&report)["outcome"], "failed");
    assert_eq!(env.sb.commit_count(), 1);
    assert_eq!(env.files(), expected(&base));

    // An audit repository that cannot be created: exit 5, no file written.
    let fresh = env.sb.path("fresh-out");
    let output = env
        .sb
        .run(&mut env.command_at("sync", &fresh, &blocker.join("audit"), &report));
    assert_exit(&output, 5);
    assert_eq!(read_json(&report)["outcome"], "failed");
    assert!(!fresh.exists() || dir_files(&fresh).is_empty());
}

/// A directory the job cannot write: mode 0555, and the job started without the
/// capabilities that let root ignore mode bits. This works on any file system (tmpfs and
/// overlayfs included) and in a container's default capability set, where `chattr +i`
/// often cannot run (it needs CAP_LINUX_IMMUTABLE and a file system with the attribute).
/// The mode is restored when dropped.
struct ReadOnlyForTheJob(PathBuf);

/// Capabilities (linux/capability.h) with which root writes where the mode forbids it.
const MODE_OVERRIDES: [u32; 4] = [
    1, // CAP_DAC_OVERRIDE
    2, // CAP_DAC_READ_SEARCH
    3, // CAP_FOWNER (could chmod the directory back)
    9, // CAP_LINUX_IMMUTABLE
];

/// Runs in the child between fork and exec: takes [`MODE_OVERRIDES`] out of the bounding
/// and inheritable sets, so the program exec'd as root does not get them back. Nothing to
/// do for a test run without root, whose child has no capability anyway.
fn drop_mode_overrides() -> std::io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Sets {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    // SAFETY: plain syscalls on local buffers of the layout the kernel expects; no
    // allocation, as required between fork and exec.
    unsafe {
        if libc::geteuid() != 0 {
            return Ok(());
        }
        for cap in MODE_OVERRIDES {
            let cap = libc::c_ulong::from(cap);
            if libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) == 1
                && libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        let mut header = Header {
            version: VERSION_3,
            pid: 0,
        };
        let mut sets = [Sets {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        if libc::syscall(libc::SYS_capget, &mut header, sets.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mask = MODE_OVERRIDES
            .iter()
            .fold(0u32, |mask, cap| mask | 1 << cap);
        sets[0].inheritable &= !mask;
        if libc::syscall(libc::SYS_capset, &header, sets.as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

impl ReadOnlyForTheJob {
    /// Makes `dir` read-only for commands passed through [`ReadOnlyForTheJob::restrict`],
    /// and proves it with a probe that must fail to create a file there. Panics, saying
    /// what is missing, where that cannot be done: the test must not pass without running.
    #[track_caller]
    fn set(dir: &Path) -> ReadOnlyForTheJob {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o750, "the job made {}", dir.display());
        fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).unwrap();
        let guard = ReadOnlyForTheJob(dir.to_path_buf());
        let probe = dir.join(".probe");
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(": > \"$0\"")
            .arg(&probe)
            .stderr(Stdio::null());
        let status = guard
            .restrict(&mut command)
            .status()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start a process without CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, \
                 CAP_FOWNER and CAP_LINUX_IMMUTABLE ({error}); the test needs CAP_SETPCAP \
                 to drop them when it runs as root"
                )
            });
        assert!(
            !status.success() && !probe.exists(),
            "{} (mode 0555) is still writable for a process without the capabilities \
             that override file modes; the test cannot run here",
            dir.display()
        );
        guard
    }

    /// Starts `command` without the capabilities that override file modes.
    fn restrict<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        use std::os::unix::process::CommandExt;
        // SAFETY: drop_mode_overrides only makes async-signal-safe system calls.
        unsafe { command.pre_exec(drop_mode_overrides) }
    }
}

impl Drop for ReadOnlyForTheJob {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(&self.0, fs::Permissions::from_mode(0o750));
    }
}

#[test]
fn a_read_only_output_directory_exits_5_and_commits_nothing() {
    let base = vec![(A, lists(addresses("a", 0..12), addresses("ai", 0..1)))];
    let env = Env::new(&base);
    assert_exit(&env.sync(&[]), 0);
    let next = vec![(A, lists(addresses("a", 0..14), addresses("ai", 0..1)))];
    env.serve(&next);
    let read_only = ReadOnlyForTheJob::set(&env.sb.output_dir());
    let output = env.sb.run(read_only.restrict(&mut env.command("sync")));
    let report = env.report();
    let commits = env.sb.commit_count();
    drop(read_only);
    assert_exit(&output, 5);
    assert_eq!(report["outcome"], "failed");
    assert!(report["error"].as_str().is_some_and(|e| !e.is_empty()));
    assert_eq!(env.files(), expected(&base), "files kept");
    assert_eq!(
        (commits, &report["commit"]),
        (1, &Value::Null),
        "nothing committed: the audit repository would record a roster the hub never got"
    );
    assert_eq!(env.audit(), expected(&base));
    assert!(temp_files(&env.sb.output_dir()).is_empty());
}

// ---------------------------------------------------------------------------------------
// Crash states that a kill can leave at two precise instants, built deterministically
// ---------------------------------------------------------------------------------------

/// Pruned files are removed before the prune commit (a file that is not in HEAD is not
/// the job's to touch), so a kill in between leaves HEAD with files the directory lacks;
/// the next `--prune` run must still converge to HEAD.
#[test]
fn a_prune_killed_before_its_commit_is_completed_by_the_next_run() {
    const P1: &str = "2024-spring-101";
    const P3: &str = "2024-spring-103";
    let base = vec![
        (P1, lists(addresses("p1", 0..3), addresses("p1i", 0..1))),
        (P3, lists(addresses("p3", 0..5), addresses("p3i", 0..2))),
    ];
    let env = Env::new(&base);
    assert_exit(&env.sync(&[]), 0);
    assert_eq!(env.sb.commit_count(), 1);
    env.configure(&[P1]);
    // The state of a kill between the removals and the commit (pruned files are removed
    // before the commit): the files are gone, HEAD still has them.
    for (name, _) in of_course(&env.files(), P3) {
        fs::remove_file(env.file(&name)).unwrap();
    }
    let output = env.sync(&["--prune"]);
    assert_exit(&output, 0);
    assert_eq!(env.sb.commit_count(), 2);
    assert_eq!(env.files(), env.audit(), "the directory converges to HEAD");
    assert_eq!(env.files(), expected(&base[..1]));
}

/// A first run killed while libgit2 was creating the audit repository leaves a directory
/// holding the start of a bare repository (and our lock file); the next run must finish
/// the job instead of failing for ever.
#[test]
fn a_repository_creation_killed_half_way_is_completed_by_the_next_run() {
    let base = vec![(A, lists(addresses("a", 0..5), addresses("ai", 0..1)))];
    let env = Env::new(&base);
    let audit = env.sb.audit_repo();
    for dir in ["hooks", "info", "objects"] {
        fs::create_dir_all(audit.join(dir)).unwrap();
    }
    fs::write(
        audit.join("description"),
        "Unnamed repository; edit this file 'description' to name the repository.\n",
    )
    .unwrap();
    fs::write(audit.join("roster-sync.lock"), b"").unwrap();
    // roster-sync marks a creation in progress before libgit2 writes anything.
    fs::write(audit.join("roster-sync.init"), b"").unwrap();
    let output = env.sync(&[]);
    assert_exit(&output, 0);
    assert_eq!(env.files(), expected(&base));
    assert_eq!(env.audit(), expected(&base));
    env.assert_fsck_clean();
}

/// The same with real kills early in a first run.
#[test]
fn sigkill_early_in_the_first_run_still_converges() {
    let base = vec![(A, lists(addresses("a", 0..5), addresses("ai", 0..1)))];
    let env = Env::new(&base);
    let report = env.sb.path("report-kill.json");
    for step in 0..25u64 {
        let out = env.sb.path(&format!("out-{step}"));
        let audit = env.sb.path(&format!("audit-{step}"));
        let mut child = env
            .command_at("sync", &out, &audit, &report)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = Duration::from_micros(800 * step);
        std::thread::sleep(delay);
        let _ = child.kill();
        child.wait().unwrap();
        let left: Vec<String> = fs::read_dir(&audit)
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let output = env
            .sb
            .run(&mut env.command_at("sync", &out, &audit, &report));
        assert_eq!(
            output.code,
            Some(0),
            "killed after {delay:?}, leaving {left:?} in the audit repository; the next \
             run: {}",
            output
                .stderr
                .lines()
                .find(|l| l.contains("ERROR"))
                .unwrap_or_default()
        );
        assert_eq!(dir_files(&out), expected(&base));
    }
}
