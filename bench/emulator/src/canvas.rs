//! A local emulator of Canvas LMS's enrollments API, for the end-to-end tests and the
//! benchmark: `GET /api/v1/courses/:id/enrollments` with `type[]`, `state[]`,
//! `include[]=email` and `per_page` (default 10, at most 100, as Canvas), `Link` headers
//! with opaque bookmark page tokens (`current`, `first`, `next`), `X-Rate-Limit-Remaining`
//! and `X-Request-Cost`, and Canvas's error bodies (401 `Invalid access token.`, 404
//! `The specified resource does not exist.`, 403 `unauthorized`, 403/429 throttling).
//!
//! A [`CanvasCampus`] is also the oracle: [`CanvasCampus::expected_students`] and friends
//! apply SPEC §11 independently of the code under test.
//!
//! Invariants: listens on 127.0.0.1 only; every request is logged; a request without the
//! bearer token, without `Accept: application/json`, or without the filters roster-sync
//! must send is a violation (tests assert there is none).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::http::{Incoming, Listening, Outgoing};
use super::{SplitMix, percent_decode, query_pairs};

/// The token the emulator accepts by default.
pub const TOKEN: &str = "test-canvas-token-Q9";

/// Canvas's default and largest page sizes.
pub const DEFAULT_PER_PAGE: usize = 10;
pub const MAX_PER_PAGE: usize = 100;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub email: Option<String>,
    pub login_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enrollment {
    pub user_id: u64,
    /// `StudentEnrollment`, `TeacherEnrollment`, `TaEnrollment`, `ObserverEnrollment`, ...
    pub kind: &'static str,
    /// `active`, `invited`, `completed`, `inactive`, `deleted`, ...
    pub state: &'static str,
    pub section_id: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Course {
    pub enrollments: Vec<Enrollment>,
}

impl Course {
    /// Ends the course: every enrollment becomes `completed`, so an `active` filter
    /// lists none (what a concluded course looks like).
    pub fn conclude(&mut self) {
        for enrollment in &mut self.enrollments {
            enrollment.state = "completed";
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct CanvasCampus {
    pub users: BTreeMap<u64, User>,
    pub courses: BTreeMap<u64, Course>,
}

impl CanvasCampus {
    /// Adds a user with a synthetic address `u{id}@example.edu` and login `u{id}`.
    pub fn user(&mut self, id: u64) -> u64 {
        self.users.entry(id).or_insert_with(|| User {
            id,
            name: format!("Test User {id}"),
            email: Some(format!("U{id}@Example.edu")),
            login_id: Some(format!("u{id}")),
        });
        id
    }

    pub fn enroll(&mut self, course: u64, user: u64, kind: &'static str, section_id: u64) {
        self.user(user);
        self.courses
            .entry(course)
            .or_default()
            .enrollments
            .push(Enrollment {
                user_id: user,
                kind,
                state: "active",
                section_id,
            });
    }

    /// A course with `students` students (ids from `first_user`) and one teacher and one TA.
    pub fn add_course(&mut self, course: u64, students: usize, first_user: u64) {
        self.courses.entry(course).or_default();
        for n in 0..students as u64 {
            self.enroll(course, first_user + n, "StudentEnrollment", course * 10);
        }
        self.enroll(course, 900_000 + course, "TeacherEnrollment", course * 10);
        self.enroll(course, 800_000 + course, "TaEnrollment", course * 10 + 1);
    }

    /// `courses` courses of `students` each, drawn from a pool so that students share
    /// courses, with about one in forty users without an address, and a few students in two
    /// sections of a course. A pure function of the parameters.
    pub fn synthetic(courses: usize, students: usize, pool: usize, seed: u64) -> CanvasCampus {
        let mut rng = SplitMix(seed);
        let mut campus = CanvasCampus::default();
        for c in 0..courses as u64 {
            let course = 10_000 + c;
            let mut chosen = BTreeSet::new();
            while chosen.len() < students.min(pool) {
                chosen.insert(1 + rng.below(pool) as u64);
            }
            for (n, user) in chosen.into_iter().enumerate() {
                let section = course * 10 + (n % 3) as u64;
                campus.enroll(course, user, "StudentEnrollment", section);
                if n % 37 == 0 {
                    campus.enroll(course, user, "StudentEnrollment", section + 1);
                }
            }
            campus.enroll(course, 900_000 + c, "TeacherEnrollment", course * 10);
            campus.enroll(course, 800_000 + c, "TaEnrollment", course * 10);
        }
        for user in campus.users.values_mut() {
            if rng.below(40) == 0 {
                user.email = None;
            }
        }
        campus
    }

    pub fn key(course: u64) -> String {
        format!("canvas-{course}")
    }

    /// A values file configuring every course.
    pub fn values_yaml(&self) -> String {
        let mut yaml = String::from("custom:\n  profiles:\n");
        for course in self.courses.keys() {
            yaml += &format!("    {}:\n      mem_limit: 2G\n", Self::key(*course));
        }
        yaml
    }

    fn addresses(&self, course: u64, kinds: &[&str], login: bool) -> (Vec<String>, usize) {
        let mut found = BTreeSet::new();
        let mut missing = BTreeSet::new();
        for enrollment in &self.courses[&course].enrollments {
            if enrollment.state != "active" || !kinds.contains(&enrollment.kind) {
                continue;
            }
            let user = &self.users[&enrollment.user_id];
            let field = if login { &user.login_id } else { &user.email };
            match field.as_deref().map(|a| a.trim().to_lowercase()) {
                Some(address) if !address.is_empty() => {
                    found.insert(address);
                }
                _ => {
                    missing.insert(user.id);
                }
            }
        }
        (found.into_iter().collect(), missing.len())
    }

    /// The students file a sync should write: sorted, normalised, each once.
    pub fn expected_students(&self, course: u64) -> Vec<String> {
        self.addresses(course, &["StudentEnrollment"], false).0
    }

    pub fn expected_no_email(&self, course: u64) -> usize {
        self.addresses(course, &["StudentEnrollment"], false).1
    }

    pub fn expected_instructors(&self, course: u64) -> Vec<String> {
        self.addresses(course, &["TeacherEnrollment", "TaEnrollment"], false)
            .0
    }

    /// Pages a client needs for a course at 100 a page (at least one).
    pub fn pages(&self, course: u64) -> usize {
        let rows = self.courses[&course]
            .enrollments
            .iter()
            .filter(|e| e.state == "active" && Self::requested(e.kind))
            .count();
        rows.div_ceil(MAX_PER_PAGE).max(1)
    }

    fn requested(kind: &str) -> bool {
        matches!(
            kind,
            "StudentEnrollment" | "TeacherEnrollment" | "TaEnrollment"
        )
    }

    /// The fewest requests a client can sync every course with.
    pub fn minimum_requests(&self) -> usize {
        self.courses.keys().map(|course| self.pages(*course)).sum()
    }
}

/// A fault served instead of the normal answer.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Canvas's throttling answer until late 2025: 403 `Forbidden (Rate Limit Exceeded)`.
    RateLimited403,
    /// Throttling since: 429 with `Retry-After: seconds`.
    TooMany(u64),
    /// A 403 for a permission the token's user lacks.
    Unauthorized,
    /// This status with a small error body.
    Status(u16),
}

#[derive(Clone, Debug)]
pub struct Options {
    pub latency: Duration,
    /// The token accepted; anything else is 401.
    pub token: String,
    /// `X-Rate-Limit-Remaining` of the first request, and the cost of each.
    pub quota: f64,
    pub cost: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            latency: Duration::ZERO,
            token: TOKEN.to_string(),
            quota: 700.0,
            cost: 1.5,
        }
    }
}

/// One request as the emulator saw it.
#[derive(Clone, Debug)]
pub struct Logged {
    pub at: Instant,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub authorization: Option<String>,
    pub status: u16,
}

impl Logged {
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

struct Shared {
    campus: RwLock<CanvasCampus>,
    options: Options,
    faults: Mutex<BTreeMap<u64, VecDeque<Fault>>>,
    always: Mutex<BTreeMap<u64, Fault>>,
    foreign_next: Mutex<BTreeMap<u64, String>>,
    remaining: Mutex<f64>,
    log: Mutex<Vec<Logged>>,
    violations: Mutex<Vec<String>>,
}

/// Serves a Canvas campus on `127.0.0.1:<free port>` until dropped.
pub struct CanvasServer {
    base_url: String,
    shared: Arc<Shared>,
    _listening: Listening,
}

impl CanvasServer {
    pub fn start(campus: CanvasCampus, options: Options) -> CanvasServer {
        Self::start_on("127.0.0.1:0", campus, options)
    }

    pub fn start_on(address: &str, campus: CanvasCampus, options: Options) -> CanvasServer {
        let shared = Arc::new(Shared {
            campus: RwLock::new(campus),
            faults: Mutex::default(),
            always: Mutex::default(),
            foreign_next: Mutex::default(),
            remaining: Mutex::new(options.quota),
            log: Mutex::default(),
            violations: Mutex::default(),
            options,
        });
        let serving = shared.clone();
        let listening =
            Listening::start(address, move |request, port| serve(&serving, request, port));
        CanvasServer {
            base_url: format!("http://127.0.0.1:{}", listening.port),
            shared,
            _listening: listening,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn update_campus(&self, change: impl FnOnce(&mut CanvasCampus)) {
        change(&mut self.shared.campus.write().unwrap());
    }

    /// Serves `faults` to this course's requests, one each, before the normal answers.
    pub fn fail(&self, course: u64, faults: Vec<Fault>) {
        self.shared
            .faults
            .lock()
            .unwrap()
            .entry(course)
            .or_default()
            .extend(faults);
    }

    pub fn fail_always(&self, course: u64, fault: Fault) {
        self.shared.always.lock().unwrap().insert(course, fault);
    }

    /// The course's first page names `url` as its next page.
    pub fn foreign_next(&self, course: u64, url: &str) {
        self.shared
            .foreign_next
            .lock()
            .unwrap()
            .insert(course, url.to_string());
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.shared.log.lock().unwrap().clone()
    }

    /// The requests for one course's enrollments.
    pub fn requests_for(&self, course: u64) -> Vec<Logged> {
        let path = format!("/api/v1/courses/{course}/enrollments");
        self.requests()
            .into_iter()
            .filter(|entry| entry.path == path)
            .collect()
    }

    pub fn violations(&self) -> Vec<String> {
        self.shared.violations.lock().unwrap().clone()
    }
}

struct Answer {
    status: u16,
    body: String,
    headers: Vec<(&'static str, String)>,
}

impl Answer {
    fn error(status: u16, body: Value) -> Answer {
        Answer {
            status,
            body: body.to_string(),
            headers: Vec::new(),
        }
    }
}

fn serve(shared: &Shared, request: &Incoming, port: u16) -> Outgoing {
    let at = request.arrived;
    let (path, raw_query) = request.url.split_once('?').unwrap_or((&request.url, ""));
    let query = query_pairs(raw_query);
    let authorization = request.header("authorization").map(str::to_string);
    let accept = request.header("accept").map(str::to_string);
    let path = percent_decode(path);
    let answer = answer(
        shared,
        &path,
        &query,
        authorization.as_deref(),
        accept.as_deref(),
        port,
    );
    shared.log.lock().unwrap().push(Logged {
        at,
        path,
        query,
        authorization,
        status: answer.status,
    });
    std::thread::sleep(shared.options.latency.saturating_sub(at.elapsed()));
    let mut headers = vec![(
        "Content-Type".to_string(),
        "application/json; charset=utf-8".to_string(),
    )];
    headers.extend(
        answer
            .headers
            .into_iter()
            .map(|(name, value)| (name.to_string(), value)),
    );
    Outgoing {
        status: answer.status,
        headers,
        body: answer.body.into_bytes(),
    }
}

fn answer(
    shared: &Shared,
    path: &str,
    query: &[(String, String)],
    authorization: Option<&str>,
    accept: Option<&str>,
    port: u16,
) -> Answer {
    let violation = |what: String| {
        shared
            .violations
            .lock()
            .unwrap()
            .push(format!("{path}: {what}"))
    };
    let expected = format!("Bearer {}", shared.options.token);
    match authorization {
        Some(value) if value == expected => {}
        Some(_) => {
            return Answer::error(
                401,
                json!({"errors": [{"message": "Invalid access token."}]}),
            );
        }
        None => {
            violation("no Authorization header".into());
            return Answer::error(
                401,
                json!({"status": "unauthenticated", "errors": [{"message": "user authorization required"}]}),
            );
        }
    }
    if !accept.is_some_and(|accept| accept.contains("application/json")) {
        violation("no Accept: application/json".into());
    }
    let course: Option<u64> = path
        .strip_prefix("/api/v1/courses/")
        .and_then(|rest| rest.strip_suffix("/enrollments"))
        .and_then(|id| id.parse().ok());
    let Some(course) = course else {
        violation("unknown path".into());
        return Answer::error(
            404,
            json!({"errors": [{"message": "The specified resource does not exist."}]}),
        );
    };
    let values = |name: &str| -> Vec<&str> {
        query
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let types = values("type[]");
    let states = values("state[]");
    let include_email = values("include[]").contains(&"email");
    for (what, ok) in [
        (
            "type[] StudentEnrollment",
            types.contains(&"StudentEnrollment"),
        ),
        ("state[]=active", states == ["active"]),
        ("include[]=email", include_email),
    ] {
        if !ok {
            violation(format!("missing {what}"));
        }
    }
    let fault = {
        let queued = shared
            .faults
            .lock()
            .unwrap()
            .get_mut(&course)
            .and_then(VecDeque::pop_front);
        queued.or_else(|| shared.always.lock().unwrap().get(&course).cloned())
    };
    let cost = shared.options.cost;
    let remaining = {
        let mut remaining = shared.remaining.lock().unwrap();
        *remaining = (*remaining - cost).max(0.0);
        *remaining
    };
    let quota_headers = vec![
        ("X-Request-Cost", format!("{cost:.3}")),
        ("X-Rate-Limit-Remaining", format!("{remaining:.3}")),
    ];
    match fault {
        Some(Fault::RateLimited403) => {
            return Answer {
                status: 403,
                body: "403 Forbidden (Rate Limit Exceeded)\n".into(),
                headers: quota_headers,
            };
        }
        Some(Fault::TooMany(seconds)) => {
            let mut headers = quota_headers;
            headers.push(("Retry-After", seconds.to_string()));
            return Answer {
                status: 429,
                body: "429 Too Many Requests (Rate Limit Exceeded)\n".into(),
                headers,
            };
        }
        Some(Fault::Unauthorized) => {
            return Answer::error(
                403,
                json!({"status": "unauthorized", "errors": [{"message": "user not authorized to perform that action"}]}),
            );
        }
        Some(Fault::Status(status)) => {
            return Answer::error(status, json!({"errors": [{"message": "emulated failure"}]}));
        }
        None => {}
    }
    let campus = shared.campus.read().unwrap();
    let Some(entry) = campus.courses.get(&course) else {
        return Answer::error(
            404,
            json!({"errors": [{"message": "The specified resource does not exist."}]}),
        );
    };
    let states: Vec<&str> = if states.is_empty() {
        vec!["active", "invited"]
    } else {
        states
    };
    let rows: Vec<&Enrollment> = entry
        .enrollments
        .iter()
        .filter(|e| types.is_empty() || types.contains(&e.kind))
        .filter(|e| states.contains(&e.state))
        .collect();
    let per_page = values("per_page")
        .first()
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(DEFAULT_PER_PAGE)
        .clamp(1, MAX_PER_PAGE);
    // An opaque bookmark: the offset, disguised.
    let offset = match values("page").first() {
        None => 0,
        Some(page) => match page
            .strip_prefix("bookmark:o")
            .and_then(|n| usize::from_str_radix(n, 36).ok())
        {
            Some(offset) => offset,
            None => {
                violation(format!("bad page token {page:?}"));
                return Answer::error(400, json!({"errors": [{"message": "invalid page"}]}));
            }
        },
    };
    let page: Vec<Value> = rows
        .iter()
        .skip(offset)
        .take(per_page)
        .enumerate()
        .map(|(n, e)| {
            let user = &campus.users[&e.user_id];
            let mut user_json = json!({
                "id": user.id,
                "name": user.name,
                "sortable_name": user.name,
                "short_name": user.name,
                "created_at": "2024-01-08T10:00:00-08:00",
            });
            if let Some(login) = &user.login_id {
                user_json["login_id"] = json!(login);
            }
            if include_email {
                user_json["email"] = json!(user.email);
            }
            json!({
                "id": (course << 20) + (offset + n) as u64,
                "course_id": course,
                "course_section_id": e.section_id,
                "user_id": e.user_id,
                "type": e.kind,
                "role": e.kind,
                "enrollment_state": e.state,
                "limit_privileges_to_course_section": false,
                "html_url": format!("http://127.0.0.1:{port}/courses/{course}/users/{}", e.user_id),
                "user": user_json,
            })
        })
        .collect();
    let link = |offset: usize| {
        let mut url = format!("http://127.0.0.1:{port}{path}?");
        for kind in &types {
            url += &format!("type%5B%5D={kind}&");
        }
        for state in &states {
            url += &format!("state%5B%5D={state}&");
        }
        if include_email {
            url += "include%5B%5D=email&";
        }
        url + &format!("page=bookmark:o{}&per_page={per_page}", radix36(offset))
    };
    let mut links = vec![
        format!("<{}>; rel=\"current\"", link(offset)),
        format!("<{}>; rel=\"first\"", link(0)),
    ];
    if offset + per_page < rows.len() {
        let next = match (offset, shared.foreign_next.lock().unwrap().get(&course)) {
            (0, Some(foreign)) => foreign.clone(),
            _ => link(offset + per_page),
        };
        links.insert(1, format!("<{next}>; rel=\"next\""));
    }
    let mut headers = quota_headers;
    headers.push(("Link", links.join(",")));
    Answer {
        status: 200,
        body: Value::Array(page).to_string(),
        headers,
    }
}

fn radix36(mut n: usize) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(digits[n % 36]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap()
}
