//! A local emulator of the UC Berkeley SIS/HR gateway, for end-to-end tests and the benchmark.
//!
//! A [`Campus`] describes, in Rust, the courses, sections, enrollments and instructors; the
//! [`SisServer`] serves it on `127.0.0.1` with the four API paths of SPEC §3, paginated as
//! the real Enrollments API (page size 100, 404 past the last page). The campus is also the
//! test oracle: [`Campus::expected_students`], [`Campus::expected_instructors`] and
//! [`Campus::minimum_requests`] apply the SPEC's rules independently of the code under test.
//!
//! Invariants: every request is logged (method, path, query, headers, status, time); a
//! request with a wrong or missing header or query parameter is answered 400 and recorded as
//! a violation, so tests assert `violations()` is empty; injected faults are consumed in
//! order, per path pattern, before the normal answer is served.
//!
//! This is the library of the `sis-emulator` crate: the end-to-end tests (`tests/e2e`) use it
//! as a dev-dependency and the benchmark's `sis-emulator` binary (`src/main.rs`) serves it.

pub mod canvas;
mod http;
mod shapes;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use http::{Incoming, Listening, Outgoing};

/// Page size of the Enrollments API, as the client must request it.
pub const PAGE_SIZE: usize = 100;

/// The control path that reports request and violation counts (for the benchmark script);
/// it is not logged and needs no credentials.
pub const STATS_PATH: &str = "/_emulator/stats";

/// The four APIs, with the credentials the emulator expects from the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Api {
    Classes,
    Enrollments,
    Students,
    Hr,
}

impl Api {
    pub const ALL: [Api; 4] = [Api::Classes, Api::Enrollments, Api::Students, Api::Hr];

    fn slug(self) -> &'static str {
        match self {
            Api::Classes => "classes",
            Api::Enrollments => "enrollments",
            Api::Students => "students",
            Api::Hr => "hr",
        }
    }

    /// The `(id, key)` environment variable names.
    pub fn vars(self) -> (&'static str, &'static str) {
        match self {
            Api::Classes => ("SIS_CLASSES_ID", "SIS_CLASSES_KEY"),
            Api::Enrollments => ("SIS_ENROLLMENTS_ID", "SIS_ENROLLMENTS_KEY"),
            Api::Students => ("SIS_STUDENTS_ID", "SIS_STUDENTS_KEY"),
            Api::Hr => ("UCB_HR_ID", "UCB_HR_KEY"),
        }
    }

    /// The fake `app_id` the emulator accepts.
    pub fn id(self) -> String {
        format!("test-{}-id", self.slug())
    }

    /// The fake `app_key` the emulator accepts; distinctive, so a leak is easy to find.
    pub fn key(self) -> String {
        format!("test-{}-key-XYZ", self.slug())
    }

    /// The API a request path belongs to.
    pub fn of_path(path: &str) -> Option<Api> {
        [
            ("/sis/v1/classes/sections/", Api::Classes),
            ("/sis/v3/enrollments/terms/", Api::Enrollments),
            ("/sis/v2/students/", Api::Students),
            ("/hr/v3/employees/", Api::Hr),
        ]
        .into_iter()
        .find(|(prefix, _)| path.starts_with(prefix))
        .map(|(_, api)| api)
    }
}

/// An address with its SIS type code (`CAMP`, `OTHR`, `BUSN`, `HOME`, ...).
#[derive(Clone, Debug)]
pub struct Email {
    pub code: &'static str,
    pub address: String,
    pub disclose: bool,
}

impl Email {
    pub fn new(code: &'static str, address: &str) -> Email {
        Email {
            code,
            address: address.to_string(),
            disclose: true,
        }
    }

    pub fn undisclosed(code: &'static str, address: &str) -> Email {
        Email {
            disclose: false,
            ..Email::new(code, address)
        }
    }
}

#[derive(Clone, Debug)]
pub struct Enrollment {
    pub uid: String,
    /// `E` enrolled, `W` waitlisted, `D` dropped.
    pub status: &'static str,
    pub emails: Vec<Email>,
}

impl Enrollment {
    pub fn new(uid: &str, status: &'static str, emails: Vec<Email>) -> Enrollment {
        Enrollment {
            uid: uid.to_string(),
            status,
            emails,
        }
    }
}

/// An instructor assigned to a meeting.
#[derive(Clone, Debug)]
pub struct Assignment {
    pub uid: String,
    /// `PI`, `TNIC`, `APRX`, ...
    pub role: &'static str,
    /// Whether the campus-uid identifier is disclosed.
    pub disclose: bool,
}

impl Assignment {
    pub fn new(uid: &str, role: &'static str) -> Assignment {
        Assignment {
            uid: uid.to_string(),
            role,
            disclose: true,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Section {
    pub id: u64,
    pub enrollments: Vec<Enrollment>,
    /// Each meeting's assigned instructors.
    pub meetings: Vec<Vec<Assignment>>,
}

impl Section {
    pub fn new(id: u64, enrollments: Vec<Enrollment>, instructors: Vec<Assignment>) -> Section {
        Section {
            id,
            enrollments,
            meetings: vec![instructors],
        }
    }
}

#[derive(Clone, Debug)]
pub struct Course {
    pub year: u32,
    /// `spring`, `summer` or `fall`.
    pub term: &'static str,
    /// As written in the profile key (leading zeros kept).
    pub class_number: String,
    /// The first one is the lecture (primary).
    pub sections: Vec<Section>,
}

impl Course {
    pub fn new(key: &str, sections: Vec<Section>) -> Course {
        let mut parts = key.splitn(3, '-');
        let year = parts.next().unwrap().parse().unwrap();
        let term = match parts.next().unwrap() {
            "spring" => "spring",
            "summer" => "summer",
            "fall" => "fall",
            other => panic!("bad term {other}"),
        };
        Course {
            year,
            term,
            class_number: parts.next().unwrap().to_string(),
            sections,
        }
    }

    pub fn key(&self) -> String {
        format!("{}-{}-{}", self.year, self.term, self.class_number)
    }

    /// SPEC §2: `1000*(year/100 - 18) + 10*(year % 100) + {spring:2, summer:5, fall:8}`.
    pub fn term_id(&self) -> u32 {
        let season = match self.term {
            "spring" => 2,
            "summer" => 5,
            _ => 8,
        };
        1000 * (self.year / 100 - 18) + 10 * (self.year % 100) + season
    }

    pub fn classes_path(&self) -> String {
        format!("/sis/v1/classes/sections/{}", self.class_number)
    }

    pub fn enrollments_path(&self, section_id: u64) -> String {
        format!(
            "/sis/v3/enrollments/terms/{}/classes/sections/{section_id}",
            self.term_id()
        )
    }
}

/// What the HR API knows about a person.
#[derive(Clone, Debug)]
pub enum HrRecord {
    NotFound,
    /// 200 with `"response": []`, which the SPEC treats as 404.
    EmptyArray,
    Emails(Vec<Email>),
}

/// A person the instructor lookups can find.
#[derive(Clone, Debug)]
pub struct Person {
    pub hr: HrRecord,
    /// The Students API record's emails; `None` answers 404.
    pub student: Option<Vec<Email>>,
}

#[derive(Clone, Debug, Default)]
pub struct Campus {
    pub courses: Vec<Course>,
    /// By campus uid; an instructor missing here gets 404 from both lookups.
    pub people: BTreeMap<String, Person>,
}

/// Parameters of [`Campus::synthetic`].
#[derive(Clone, Debug)]
pub struct Synthetic {
    pub courses: usize,
    /// Sections per course vary in `mean - 1 ..= mean + 1` (at least 2).
    pub mean_sections: usize,
    /// Students per course vary in `mean / 2 .. mean * 3 / 2`.
    pub mean_students: usize,
    pub instructor_pool: usize,
    pub seed: u64,
}

impl Campus {
    pub fn course(&self, key: &str) -> &Course {
        self.courses
            .iter()
            .find(|course| course.key() == key)
            .unwrap_or_else(|| panic!("no course {key}"))
    }

    pub fn course_mut(&mut self, key: &str) -> &mut Course {
        self.courses
            .iter_mut()
            .find(|course| course.key() == key)
            .unwrap_or_else(|| panic!("no course {key}"))
    }

    /// A values file with one profile per course, under `custom.profiles`.
    pub fn values_yaml(&self) -> String {
        let mut yaml = String::from("custom:\n  profiles:\n");
        for course in &self.courses {
            yaml.push_str(&format!(
                "    \"{}\":\n      mem_limit: 4096M\n",
                course.key()
            ));
        }
        yaml
    }

    /// The student roster SPEC §3 prescribes: enrolled (`E`) students' first `CAMP`
    /// address, else first `OTHR`, trimmed, lower-cased, de-duplicated, sorted.
    pub fn expected_students(&self, key: &str) -> Vec<String> {
        let mut addresses = BTreeSet::new();
        for section in &self.course(key).sections {
            for enrollment in section.enrollments.iter().filter(|e| e.status == "E") {
                if let Some(address) = student_address(enrollment) {
                    addresses.insert(address);
                }
            }
        }
        addresses.into_iter().collect()
    }

    /// Enrolled students with no usable address (counted per distinct uid).
    pub fn expected_no_email(&self, key: &str) -> usize {
        let mut uids = BTreeSet::new();
        for section in &self.course(key).sections {
            for enrollment in &section.enrollments {
                if enrollment.status == "E" && student_address(enrollment).is_none() {
                    uids.insert(enrollment.uid.clone());
                }
            }
        }
        uids.len()
    }

    /// The disclosed campus uids of non-`APRX` instructors of a course.
    pub fn instructor_uids(&self, key: &str) -> BTreeSet<String> {
        let mut uids = BTreeSet::new();
        for section in &self.course(key).sections {
            for assignment in section.meetings.iter().flatten() {
                if assignment.role != "APRX" && assignment.disclose {
                    uids.insert(assignment.uid.clone());
                }
            }
        }
        uids
    }

    /// HR `BUSN` addresses plus disclosed Students-API `CAMP` addresses of the instructors.
    pub fn expected_instructors(&self, key: &str) -> Vec<String> {
        let mut addresses = BTreeSet::new();
        for uid in self.instructor_uids(key) {
            let Some(person) = self.people.get(&uid) else {
                continue;
            };
            if let HrRecord::Emails(emails) = &person.hr {
                for email in emails.iter().filter(|e| e.code == "BUSN") {
                    addresses.insert(normalize(&email.address));
                }
            }
            for email in person.student.iter().flatten() {
                if email.code == "CAMP" && email.disclose {
                    addresses.insert(normalize(&email.address));
                }
            }
        }
        addresses.into_iter().collect()
    }

    /// The fewest requests a correct client can make for the whole campus: one Classes call
    /// per course, `floor(n / 100) + 1` pages per section of `n` enrollments (the last page
    /// is short, or a 404 after a full one), and one HR and one Students call per distinct
    /// instructor.
    pub fn minimum_requests(&self) -> usize {
        let mut instructors = BTreeSet::new();
        let mut requests = 0;
        for course in &self.courses {
            requests += 1;
            for section in &course.sections {
                requests += section.enrollments.len() / PAGE_SIZE + 1;
            }
            instructors.extend(self.instructor_uids(&course.key()));
        }
        requests + 2 * instructors.len()
    }

    /// A deterministic campus of `courses` courses for load tests: a lecture holding every
    /// student plus discussions splitting them, two instructors per course (a `PI` on the
    /// lecture, a `TNIC` on a discussion) drawn from a shared pool, sometimes an `APRX`,
    /// and a realistic mix of statuses, address types and lookup outcomes.
    pub fn synthetic(spec: &Synthetic) -> Campus {
        let mut rng = SplitMix(spec.seed);
        let mut campus = Campus::default();
        for c in 0..spec.courses {
            let sections = (spec.mean_sections.max(2) - 1 + rng.below(3)).max(2);
            let students = spec.mean_students / 2 + rng.below(spec.mean_students.max(1));
            let enrollments: Vec<Enrollment> = (0..students)
                .map(|s| synthetic_student(&mut rng, &format!("3{c:04}{s:04}")))
                .collect();
            let pick = |rng: &mut SplitMix| format!("9{:05}", rng.below(spec.instructor_pool));
            let lead = pick(&mut rng);
            let mut gsi = pick(&mut rng);
            while gsi == lead && spec.instructor_pool > 1 {
                gsi = pick(&mut rng);
            }
            let mut lecture_staff = vec![Assignment::new(&lead, "PI")];
            if rng.below(10) < 3 {
                lecture_staff.push(Assignment::new(&pick(&mut rng), "APRX"));
            }
            let base = 100_000 + 10 * c as u64;
            let mut course_sections = vec![Section::new(base, enrollments.clone(), lecture_staff)];
            for d in 1..sections {
                let members = enrollments
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % (sections - 1) == d - 1)
                    .map(|(_, e)| e.clone())
                    .collect();
                let staff = if d == 1 {
                    vec![Assignment::new(&gsi, "TNIC")]
                } else {
                    Vec::new()
                };
                course_sections.push(Section::new(base + d as u64, members, staff));
            }
            campus.courses.push(Course {
                year: 2024,
                term: "fall",
                class_number: format!("{:05}", 1000 + 7 * c),
                sections: course_sections,
            });
        }
        for p in 0..spec.instructor_pool {
            let uid = format!("9{p:05}");
            let hr = match rng.below(10) {
                0 => HrRecord::NotFound,
                1 => HrRecord::EmptyArray,
                _ => HrRecord::Emails(vec![
                    Email::new("BUSN", &format!("Staff.{uid}@Berkeley.edu")),
                    Email::new("HOME", &format!("home.{uid}@example.com")),
                ]),
            };
            let student = match rng.below(4) {
                0 => Some(vec![
                    Email::new("CAMP", &format!("gsi.{uid}@berkeley.edu")),
                    Email::undisclosed("CAMP", &format!("hidden.{uid}@berkeley.edu")),
                ]),
                _ => None,
            };
            campus.people.insert(uid, Person { hr, student });
        }
        campus
    }
}

fn synthetic_student(rng: &mut SplitMix, uid: &str) -> Enrollment {
    let status = match rng.below(100) {
        0..=89 => "E",
        90..=96 => "W",
        _ => "D",
    };
    let emails = match rng.below(100) {
        0..=84 => vec![
            Email::new("OTHR", &format!("{uid}@example.com")),
            Email::new("CAMP", &format!(" Student.{uid}@Berkeley.EDU ")),
        ],
        85..=97 => vec![Email::new("OTHR", &format!("{uid}@example.org"))],
        _ => vec![Email::new("HOME", &format!("{uid}@example.net"))],
    };
    Enrollment::new(uid, status, emails)
}

fn student_address(enrollment: &Enrollment) -> Option<String> {
    ["CAMP", "OTHR"].iter().find_map(|code| {
        enrollment
            .emails
            .iter()
            .find(|e| e.code == *code)
            .map(|e| normalize(&e.address))
    })
}

fn normalize(address: &str) -> String {
    address.trim().to_lowercase()
}

/// A small deterministic generator (SplitMix64): no dependency, same campus every run.
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n.max(1) as u64) as usize
    }
}

/// A fault served instead of (or before) the normal answer.
#[derive(Clone, Debug)]
pub enum Fault {
    /// This status with a small JSON error body.
    Status(u16),
    /// This status with `Retry-After: seconds`.
    RetryAfter(u16, u64),
    /// The normal answer cut in half (with a matching `Content-Length`).
    Truncated,
    /// The normal answer after this delay (to trip the client's timeout).
    Delay(Duration),
}

/// How an empty page is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmptyPage {
    /// 404, as the real API does (on page 1 of an empty section, and past the last page).
    NotFound,
    /// 200 with an empty list.
    EmptyList,
}

#[derive(Clone, Debug)]
pub struct Options {
    /// Time from a request's arrival to its answer (at least the time to build it).
    pub latency: Duration,
    pub empty_page: EmptyPage,
    /// Answer without the `apiResponse` wrapper and with the v2 enrollments nesting.
    pub legacy_shapes: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            latency: Duration::ZERO,
            empty_page: EmptyPage::NotFound,
            legacy_shapes: false,
        }
    }
}

/// One request as the emulator saw it.
#[derive(Clone, Debug)]
pub struct Logged {
    id: u64,
    /// When it arrived.
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    /// 0 until the answer is sent.
    pub status: u16,
}

impl Logged {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

struct FaultRule {
    /// An exact path, or a prefix when it ends with `*`.
    pattern: String,
    queue: VecDeque<Fault>,
    always: Option<Fault>,
}

impl FaultRule {
    fn matches(&self, path: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == self.pattern,
        }
    }
}

struct Shared {
    campus: RwLock<Campus>,
    options: Options,
    faults: Mutex<Vec<FaultRule>>,
    log: Mutex<Vec<Logged>>,
    next_id: AtomicU64,
    violations: Mutex<Vec<String>>,
}

/// The emulator: serves a campus on `127.0.0.1:<free port>` until dropped.
pub struct SisServer {
    base_url: String,
    shared: Arc<Shared>,
    listening: Listening,
}

impl SisServer {
    pub fn start(campus: Campus, options: Options) -> SisServer {
        Self::start_on("127.0.0.1:0", campus, options)
    }

    /// Serves on a given loopback address (`127.0.0.1:0` picks a free port).
    pub fn start_on(address: &str, campus: Campus, options: Options) -> SisServer {
        let shared = Arc::new(Shared {
            campus: RwLock::new(campus),
            faults: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            violations: Mutex::new(Vec::new()),
            options,
        });
        let serving = shared.clone();
        let listening = Listening::start(address, move |request, _| serve(&serving, request));
        SisServer {
            base_url: format!("http://127.0.0.1:{}", listening.port),
            shared,
            listening,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The connections clients have opened so far.
    pub fn connections(&self) -> usize {
        self.listening.accepted()
    }

    /// Changes the campus for the following requests.
    pub fn update_campus(&self, change: impl FnOnce(&mut Campus)) {
        change(&mut self.shared.campus.write().unwrap());
    }

    /// Serves `faults` one per request to paths matching `pattern` (exact, or a prefix
    /// ending in `*`), then the normal answers.
    pub fn fail(&self, pattern: &str, faults: Vec<Fault>) {
        self.add_rule(pattern, faults.into(), None);
    }

    /// Serves `fault` to every request to paths matching `pattern`.
    pub fn fail_always(&self, pattern: &str, fault: Fault) {
        self.add_rule(pattern, VecDeque::new(), Some(fault));
    }

    fn add_rule(&self, pattern: &str, queue: VecDeque<Fault>, always: Option<Fault>) {
        self.shared.faults.lock().unwrap().push(FaultRule {
            pattern: pattern.to_string(),
            queue,
            always,
        });
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Logged> {
        let mut log = self.shared.log.lock().unwrap().clone();
        log.sort_by_key(|entry| entry.at);
        log
    }

    /// The requests whose path starts with `prefix`, in arrival order.
    pub fn requests_to(&self, prefix: &str) -> Vec<Logged> {
        self.requests()
            .into_iter()
            .filter(|entry| entry.path.starts_with(prefix))
            .collect()
    }

    pub fn clear_log(&self) {
        self.shared.log.lock().unwrap().clear();
    }

    /// Requests that broke the API contract (headers, query, method, path).
    pub fn violations(&self) -> Vec<String> {
        self.shared.violations.lock().unwrap().clone()
    }
}

struct Answer {
    status: u16,
    body: Vec<u8>,
    retry_after: Option<u64>,
}

impl Answer {
    fn json(status: u16, body: &Value) -> Answer {
        Answer {
            status,
            body: body.to_string().into_bytes(),
            retry_after: None,
        }
    }

    /// A 200 with `body` as its JSON.
    fn serialized(body: &impl serde::Serialize) -> Answer {
        Answer {
            status: 200,
            body: serde_json::to_vec(body).expect("an answer serializes"),
            retry_after: None,
        }
    }

    /// A 200 with an SIS `response`, in the `apiResponse` envelope or, in the legacy shapes,
    /// as `{"response": ...}`.
    fn sis<T: serde::Serialize>(options: &Options, response: T) -> Answer {
        if options.legacy_shapes {
            Answer::serialized(&shapes::Bare { response })
        } else {
            Answer::serialized(&shapes::Wrapped::new(response))
        }
    }

    fn error(status: u16, description: &str) -> Answer {
        Answer::json(
            status,
            &json!({"httpStatus": {"code": status.to_string(), "description": description}}),
        )
    }
}

fn serve(shared: &Shared, request: &Incoming) -> Outgoing {
    let at = request.arrived;
    let (path, raw_query) = request.url.split_once('?').unwrap_or((&request.url, ""));
    let query = query_pairs(raw_query);
    let (method, headers) = (&request.method, &request.headers);
    let answer = if path == STATS_PATH {
        let log = shared.log.lock().unwrap();
        // The same path and query asked again: a retry, or work the client did twice.
        let mut seen = std::collections::HashSet::new();
        let repeated: Vec<String> = log
            .iter()
            .filter(|logged| !seen.insert((&logged.path, &logged.query)))
            .map(|logged| {
                format!(
                    "{} {} (status {})",
                    logged.path,
                    query_text(&logged.query),
                    logged.status
                )
            })
            .collect();
        let violations = shared.violations.lock().unwrap().clone();
        Answer::json(
            200,
            &json!({"requests": log.len(), "repeated": repeated, "violations": violations}),
        )
    } else {
        // Logged on arrival, so a request whose answer is delayed is seen at once.
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        shared.log.lock().unwrap().push(Logged {
            id,
            at,
            method: method.clone(),
            path: percent_decode(path),
            query: query.clone(),
            headers: headers.clone(),
            status: 0,
        });
        let answer = answer(shared, method, path, &query, headers);
        // Found by id: `clear_log` may have run meanwhile.
        let mut log = shared.log.lock().unwrap();
        if let Some(entry) = log.iter_mut().rev().find(|entry| entry.id == id) {
            entry.status = answer.status;
        }
        drop(log);
        // The latency counts from arrival and includes the time spent building the
        // answer, like a server with a fixed response time: the benchmark's ideal time
        // then measures the client, not the emulator's own CPU.
        std::thread::sleep(shared.options.latency.saturating_sub(at.elapsed()));
        answer
    };
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    if let Some(seconds) = answer.retry_after {
        headers.push(("Retry-After".to_string(), seconds.to_string()));
    }
    Outgoing {
        status: answer.status,
        headers,
        body: answer.body,
    }
}

fn answer(
    shared: &Shared,
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
) -> Answer {
    let violation = |what: String| {
        shared
            .violations
            .lock()
            .unwrap()
            .push(format!("{method} {path}: {what}"));
    };
    let Some(api) = Api::of_path(path) else {
        violation("unknown path".to_string());
        return Answer::error(404, "Not Found");
    };
    if method != "GET" {
        violation("method is not GET".to_string());
        return Answer::error(405, "Method Not Allowed");
    }
    let mut problems = Vec::new();
    for (name, expected) in [
        ("accept", "application/json".to_string()),
        ("app_id", api.id()),
        ("app_key", api.key()),
    ] {
        let values: Vec<&String> = headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v)
            .collect();
        if values.len() != 1 || *values[0] != expected {
            // The value itself is not quoted: it may be some other API's key.
            problems.push(format!("header {name} missing, repeated or wrong"));
        }
    }
    let campus = shared.campus.read().unwrap();
    let Some(route) = route(&campus, api, path, query) else {
        violation("no such resource shape".to_string());
        return Answer::error(404, "Not Found");
    };
    let mut sorted_query = query.to_vec();
    sorted_query.sort();
    {
        let mut expected = route.query.clone();
        expected.sort();
        // The page number is checked apart: any page from 1 is a valid request.
        if api == Api::Enrollments {
            let page = query
                .iter()
                .find(|(n, _)| n == "page-number")
                .map(|(_, v)| v.as_str());
            match page.and_then(|p| p.parse::<usize>().ok()) {
                Some(n) if n >= 1 && page == Some(&n.to_string()) => {
                    expected.push(("page-number".to_string(), n.to_string()));
                    expected.sort();
                }
                _ => problems.push("page-number missing or not a positive integer".to_string()),
            }
        }
        if problems.is_empty() && sorted_query != expected {
            problems.push(format!("query {sorted_query:?}, expected {expected:?}"));
        }
    }
    if !problems.is_empty() {
        violation(problems.join("; "));
        return Answer::error(400, "Bad Request");
    }
    let fault = {
        let mut rules = shared.faults.lock().unwrap();
        rules
            .iter_mut()
            .find(|rule| rule.matches(path) && (rule.always.is_some() || !rule.queue.is_empty()))
            .and_then(|rule| rule.queue.pop_front().or_else(|| rule.always.clone()))
    };
    let page = query
        .iter()
        .find(|(n, _)| n == "page-number")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(1);
    let normal = || (route.answer)(&campus, &shared.options, page);
    match fault {
        None => normal(),
        Some(Fault::Status(status)) => Answer::error(status, "Injected fault"),
        Some(Fault::RetryAfter(status, seconds)) => Answer {
            retry_after: Some(seconds),
            ..Answer::error(status, "Injected fault")
        },
        Some(Fault::Truncated) => {
            let mut answer = normal();
            answer.body.truncate(answer.body.len() / 2);
            answer
        }
        Some(Fault::Delay(delay)) => {
            std::thread::sleep(delay);
            normal()
        }
    }
}

type Render = Box<dyn Fn(&Campus, &Options, usize) -> Answer>;

/// What a path asks for: the query it must carry (without the page number) and how to
/// answer it.
struct Route {
    query: Vec<(String, String)>,
    answer: Render,
}

fn pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// The route of a path, `None` for a shape the API does not have.
fn route(campus: &Campus, api: Api, path: &str, query: &[(String, String)]) -> Option<Route> {
    let path = percent_decode(path);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let route = match (api, segments.as_slice()) {
        (Api::Classes, ["sis", "v1", "classes", "sections", class_number]) => {
            let class_number = class_number.to_string();
            let sent_term = query
                .iter()
                .find(|(n, _)| n == "term-id")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            // A class number may exist in several terms; the one asked for must be one of
            // them (a wrong term id is a client bug, not a missing class).
            let terms: Vec<String> = campus
                .courses
                .iter()
                .filter(|c| c.class_number == class_number)
                .map(|c| c.term_id().to_string())
                .collect();
            let term = if terms.is_empty() || terms.contains(&sent_term) {
                sent_term
            } else {
                terms[0].clone()
            };
            Route {
                query: pairs(&[("term-id", &term), ("include-secondary", "true")]),
                answer: Box::new(move |campus, options, _| {
                    // A term id in another spelling was refused with the query above.
                    let term_id = term.parse::<u32>().ok();
                    let course = campus
                        .courses
                        .iter()
                        .find(|c| c.class_number == class_number && Some(c.term_id()) == term_id);
                    let Some(course) = course else {
                        return Answer::error(404, "Class section not found");
                    };
                    Answer::sis(options, shapes::ClassSections::of(course, &term))
                }),
            }
        }
        (
            Api::Enrollments,
            [
                "sis",
                "v3",
                "enrollments",
                "terms",
                term,
                "classes",
                "sections",
                id,
            ],
        ) => {
            let (term, id) = (term.to_string(), id.to_string());
            Route {
                query: pairs(&[("page-size", "100")]),
                answer: Box::new(move |campus, options, page| {
                    let Some(section) = find_section(campus, &term, &id) else {
                        return Answer::error(404, "Not Found");
                    };
                    let page = shapes::Enrollments::page(section, page, PAGE_SIZE);
                    if page.is_empty() && options.empty_page == EmptyPage::NotFound {
                        return Answer::error(404, "No enrollments found");
                    }
                    if options.legacy_shapes {
                        Answer::sis(options, page)
                    } else {
                        Answer::sis(
                            options,
                            shapes::ByClassSection {
                                enrollments_by_class_section: page,
                            },
                        )
                    }
                }),
            }
        }
        (Api::Students, ["sis", "v2", "students", uid]) => {
            let uid = uid.to_string();
            Route {
                query: pairs(&[("id-type", "campus-uid"), ("inc-cntc", "true")]),
                answer: Box::new(move |campus, options, _| {
                    let emails = campus.people.get(&uid).and_then(|p| p.student.as_ref());
                    let Some(emails) = emails else {
                        return Answer::error(404, "Student not found");
                    };
                    Answer::sis(options, shapes::Person::student(&uid, emails))
                }),
            }
        }
        (Api::Hr, ["hr", "v3", "employees", uid]) => {
            let uid = uid.to_string();
            Route {
                query: pairs(&[("id-type", "campus-uid")]),
                answer: Box::new(move |campus, _, _| {
                    match campus.people.get(&uid).map(|p| &p.hr) {
                        None | Some(HrRecord::NotFound) => Answer::error(404, "Not Found"),
                        Some(HrRecord::EmptyArray) => Answer::json(200, &json!({"response": []})),
                        Some(HrRecord::Emails(emails)) => Answer::serialized(&shapes::Bare {
                            response: [shapes::Person::employee(&uid, emails)],
                        }),
                    }
                }),
            }
        }
        _ => return None,
    };
    Some(route)
}

fn find_section<'a>(campus: &'a Campus, term: &str, id: &str) -> Option<&'a Section> {
    // Compared as numbers, written the one way `to_string` writes them: a campus of
    // thousands of courses is scanned on every page request without an allocation per
    // section, which made the emulator's CPU time grow with the square of the campus.
    let term = term.parse::<u32>().ok().filter(|n| n.to_string() == term)?;
    let id = id.parse::<u64>().ok().filter(|n| n.to_string() == id)?;
    campus
        .courses
        .iter()
        .filter(|course| course.term_id() == term)
        .flat_map(|course| &course.sections)
        .find(|section| section.id == id)
}

/// The name-value pairs of a query string, decoded, in the order sent.
fn query_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn query_text(query: &[(String, String)]) -> String {
    query
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}
