//! Fetching every configured course, with at most `concurrency` requests in flight.
//!
//! A coordinator (the calling thread) owns all state and decides what to ask next;
//! worker threads only send requests, parse answers and reduce each enrollment page to
//! the student rules' [`Tally`] before handing it over, so parsed rows never outlive
//! their page. Work is shared across courses: each section's pages and each instructor
//! are fetched once per run, whichever courses need them, and pages of a section are
//! asked one after another because page n+1 is only needed when page n was full.
//!
//! Memory follows the addresses, not the pages: the queue hands out the task of the
//! lowest course index first (a course's pages and instructors right after its Classes
//! answer, later courses' Classes answers only when no earlier course has work ready),
//! so few courses are open at a time, and a course that completes keeps only its two
//! rosters. A finished section keeps its compacted tally (its distinct addresses) until
//! every Classes answer has arrived, because a course whose answer is still to come may
//! list it too; then a section is dropped once every course that needs it has settled.
//!
//! Invariant: a course either gets both lists complete, or fails as a whole with the
//! first reason seen; nothing is ever filled in from a failed or partial answer.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::course::Course;
use crate::roster::{Roster, Rosters, Tally};
use crate::shutdown::Shutdown;
use crate::source::api::{self, Section};
use crate::source::{Client, FetchError, PAGE_SIZE, Request, Transport};

/// Pages read from one section before the course is failed instead of looping on.
pub const MAX_PAGES: u32 = 100;

#[derive(Clone, Debug)]
pub struct FetchOptions {
    pub concurrency: usize,
    pub include_waitlisted: bool,
    pub excluded_roles: BTreeSet<String>,
}

/// What fetching one course gave: both lists complete, or the first reason it failed.
pub type Fetched = Result<Rosters, FetchError>;

/// Hears of each course the moment its fetch ends (on the coordinating thread), so the
/// job can write its rosters while later courses are still being fetched.
pub type Finished<'a> = &'a (dyn Fn(&Course, &Fetched) + Sync);

/// SIGTERM or SIGINT arrived while fetching.
#[derive(Debug, PartialEq, Eq)]
pub struct Interrupted;

/// Fetches every course; the result is in the order of `courses`.
pub fn fetch_all<T: Transport + 'static>(
    client: Arc<Client<T>>,
    courses: &[Course],
    options: &FetchOptions,
    shutdown: &Shutdown,
    finished: Finished<'_>,
) -> Result<Vec<Fetched>, Interrupted> {
    if courses.is_empty() {
        return Ok(Vec::new());
    }
    let queue = Arc::new(TaskQueue::default());
    for (index, course) in courses.iter().enumerate() {
        queue.push(index, Task::Sections(index, request_sections(course)));
    }
    let (answers, answered) = mpsc::channel();
    let include_waitlisted = options.include_waitlisted;
    let workers: Vec<_> = (0..options.concurrency.max(1))
        .map(|n| {
            let (client, queue, answers) =
                (Arc::clone(&client), Arc::clone(&queue), answers.clone());
            std::thread::Builder::new()
                .name(format!("fetch-{n}"))
                .spawn(move || {
                    while let Some(task) = queue.pop() {
                        let answer = catch_unwind(AssertUnwindSafe(|| {
                            task.run(&client, include_waitlisted)
                        }))
                        .unwrap_or(Err(FetchError::Internal));
                        if answers.send((task, answer)).is_err() {
                            break;
                        }
                    }
                })
                .expect("spawning a fetch thread")
        })
        .collect();
    drop(answers);

    let mut coordinator = Coordinator::new(courses, options, &queue, finished);
    while coordinator.unfinished > 0 {
        match answered.recv_timeout(Duration::from_millis(50)) {
            Ok((task, answer)) => coordinator.take(task, answer),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => unreachable!("workers outlive the queue"),
        }
        if shutdown.requested() {
            // Workers are left to die with the process: waiting for a request in
            // flight could outlast the pod's grace period.
            queue.close();
            return Err(Interrupted);
        }
    }
    queue.close();
    for worker in workers {
        let _ = worker.join();
    }
    Ok(coordinator.into_results())
}

fn request_sections(course: &Course) -> Request {
    Request::Sections {
        term_id: course
            .term_id
            .expect("the SIS coordinator is given SIS courses only"),
        class_number: course.class_number.clone(),
    }
}

/// The log line of a course whose fetch ended, for every source.
pub(crate) fn log_result(course: &Course, result: &Fetched) {
    let key = &course.key;
    match result {
        Ok(rosters) => log::info!(
            course = key.as_str();
            "{key}: fetched {} student addresses ({} more enrolled students have none), \
             {} instructor addresses",
            rosters.students.len(),
            rosters.no_email,
            rosters.instructors.len()
        ),
        Err(error) => log::error!(course = key.as_str(); "{key}: fetch failed: {error}"),
    }
}

/// A section of a term, the unit whose pages are fetched once per run.
type SectionKey = (u32, String);

enum Task {
    Sections(usize, Request),
    Page(SectionKey, Request),
    Person(Request),
}

/// A parsed answer; `Ok(None)` is 404 (or HR's empty `response`).
enum Answer {
    Sections(Option<Vec<Section>>),
    /// How many rows the page had (for pagination) and what the student rules keep.
    Page(Option<(usize, Tally)>),
    Addresses(Vec<String>),
}

impl Task {
    fn request(&self) -> &Request {
        match self {
            Task::Sections(_, request) | Task::Page(_, request) | Task::Person(request) => request,
        }
    }

    fn run<T: Transport>(
        &self,
        client: &Client<T>,
        include_waitlisted: bool,
    ) -> Result<Answer, FetchError> {
        let request = self.request();
        let body = client.fetch(request)?;
        let malformed = |reason| FetchError::Malformed {
            request: request.clone(),
            reason,
        };
        let Some(body) = body else {
            return Ok(match request {
                Request::Sections { .. } => Answer::Sections(None),
                Request::EnrollmentPage { .. } => Answer::Page(None),
                Request::Student { .. } | Request::Employee { .. } => Answer::Addresses(Vec::new()),
                Request::CanvasEnrollments { .. } => unreachable!("no Canvas task here"),
            });
        };
        Ok(match request {
            Request::Sections { .. } => {
                Answer::Sections(Some(api::parse_sections(&body).map_err(malformed)?))
            }
            Request::EnrollmentPage { .. } => {
                let rows = api::parse_enrollment_page(&body).map_err(malformed)?;
                Answer::Page(Some((rows.len(), Tally::of(&rows, include_waitlisted))))
            }
            Request::Student { .. } => {
                Answer::Addresses(api::parse_student_addresses(&body).map_err(malformed)?)
            }
            Request::Employee { .. } => Answer::Addresses(
                api::parse_employee_addresses(&body)
                    .map_err(malformed)?
                    .unwrap_or_default(),
            ),
            Request::CanvasEnrollments { .. } => unreachable!("no Canvas task here"),
        })
    }
}

/// Tasks waiting for a worker, lowest priority (course index) first and, within one
/// priority, first in first out; closing it wakes every worker up to exit.
#[derive(Default)]
struct TaskQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

#[derive(Default)]
struct QueueState {
    tasks: BinaryHeap<Queued>,
    pushed: u64,
    closed: bool,
}

struct Queued {
    /// (priority, order of pushing), reversed: the heap's greatest is the lowest.
    rank: Reverse<(usize, u64)>,
    task: Task,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.rank == other.rank
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank.cmp(&other.rank)
    }
}

impl TaskQueue {
    fn push(&self, priority: usize, task: Task) {
        let mut state = self.state.lock().expect("queue lock");
        let rank = Reverse((priority, state.pushed));
        state.pushed += 1;
        state.tasks.push(Queued { rank, task });
        drop(state);
        self.ready.notify_one();
    }

    fn pop(&self) -> Option<Task> {
        let mut state = self.state.lock().expect("queue lock");
        loop {
            if state.closed {
                return None;
            }
            if let Some(queued) = state.tasks.pop() {
                return Some(queued.task);
            }
            state = self.ready.wait(state).expect("queue lock");
        }
    }

    fn close(&self) {
        let mut state = self.state.lock().expect("queue lock");
        state.tasks.clear();
        state.closed = true;
        self.ready.notify_all();
    }
}

enum Progress<T> {
    Pending,
    Done(T),
    Failed(FetchError),
}

struct SectionState {
    /// What the student rules keep of the pages read so far.
    tally: Tally,
    progress: Progress<()>,
    /// The courses that list the section; the first one's index is its priority.
    courses: Vec<usize>,
}

#[derive(Default)]
struct PersonState {
    hr: Option<Result<Vec<String>, FetchError>>,
    student: Option<Result<Vec<String>, FetchError>>,
    courses: Vec<usize>,
}

impl PersonState {
    fn progress(&self) -> Progress<Vec<&str>> {
        match (&self.hr, &self.student) {
            (Some(Err(reason)), _) | (_, Some(Err(reason))) => Progress::Failed(reason.clone()),
            (Some(Ok(hr)), Some(Ok(student))) => {
                Progress::Done(hr.iter().chain(student).map(String::as_str).collect())
            }
            _ => Progress::Pending,
        }
    }
}

#[derive(Default)]
struct CourseState {
    sections: Option<Vec<SectionKey>>,
    uids: BTreeSet<String>,
    result: Option<Fetched>,
}

struct Coordinator<'a> {
    courses: &'a [Course],
    options: &'a FetchOptions,
    queue: &'a TaskQueue,
    state: Vec<CourseState>,
    sections: BTreeMap<SectionKey, SectionState>,
    people: BTreeMap<String, PersonState>,
    unfinished: usize,
    finished: Finished<'a>,
    /// Courses whose Classes answer has not arrived; while there are any, finished
    /// sections are kept for them.
    unanswered: usize,
}

impl<'a> Coordinator<'a> {
    fn new(
        courses: &'a [Course],
        options: &'a FetchOptions,
        queue: &'a TaskQueue,
        finished: Finished<'a>,
    ) -> Self {
        Coordinator {
            courses,
            options,
            queue,
            finished,
            state: courses.iter().map(|_| CourseState::default()).collect(),
            sections: BTreeMap::new(),
            people: BTreeMap::new(),
            unfinished: courses.len(),
            unanswered: courses.len(),
        }
    }

    fn take(&mut self, task: Task, answer: Result<Answer, FetchError>) {
        match (task, answer) {
            (Task::Sections(course, _), answer) => self.take_sections(course, answer),
            (Task::Page(key, request), answer) => self.take_page(key, &request, answer),
            (Task::Person(request), answer) => self.take_person(&request, answer),
        }
    }

    fn take_sections(&mut self, course: usize, answer: Result<Answer, FetchError>) {
        self.unanswered -= 1;
        self.register(course, answer);
        if self.unanswered == 0 {
            let keys: Vec<SectionKey> = self.sections.keys().cloned().collect();
            self.release(&keys);
        }
    }

    /// Records a course's sections and instructors, asking for the ones not asked yet.
    fn register(&mut self, course: usize, answer: Result<Answer, FetchError>) {
        let sections = match answer {
            Ok(Answer::Sections(Some(sections))) if !sections.is_empty() => sections,
            Ok(_) => {
                let request = request_sections(&self.courses[course]);
                return self.finish(course, Err(FetchError::ClassNotFound { request }));
            }
            Err(error) => return self.finish(course, Err(error)),
        };
        let term_id = self.courses[course].term_id.expect("SIS courses only");
        let mut keys = Vec::new();
        for section in &sections {
            let key = (term_id, section.id.clone());
            if keys.contains(&key) {
                continue;
            }
            let state = self.sections.entry(key.clone()).or_insert_with(|| {
                self.queue
                    .push(course, Task::Page(key.clone(), page_request(&key, 1)));
                SectionState {
                    tally: Tally::default(),
                    progress: Progress::Pending,
                    courses: Vec::new(),
                }
            });
            state.courses.push(course);
            keys.push(key);
        }
        let uids = api::instructor_uids(&sections, &self.options.excluded_roles);
        for uid in &uids {
            let person = self.people.entry(uid.clone()).or_insert_with(|| {
                self.queue
                    .push(course, Task::Person(Request::Employee { uid: uid.clone() }));
                self.queue
                    .push(course, Task::Person(Request::Student { uid: uid.clone() }));
                PersonState::default()
            });
            person.courses.push(course);
        }
        let state = &mut self.state[course];
        state.sections = Some(keys);
        state.uids = uids;
        self.settle(course);
    }

    fn take_page(
        &mut self,
        key: SectionKey,
        request: &Request,
        answer: Result<Answer, FetchError>,
    ) {
        let Request::EnrollmentPage { page, .. } = *request else {
            unreachable!("page tasks carry page requests")
        };
        let section = self
            .sections
            .get_mut(&key)
            .expect("sections are registered before their pages");
        match answer {
            Ok(Answer::Page(Some((rows, tally)))) => {
                let full = rows >= PAGE_SIZE;
                section.tally.append(tally);
                if !full {
                    section.progress = Progress::Done(());
                } else if page >= MAX_PAGES {
                    section.progress = Progress::Failed(FetchError::PageCap {
                        request: request.clone(),
                        pages: MAX_PAGES,
                    });
                } else {
                    let priority = section.courses[0];
                    self.queue.push(
                        priority,
                        Task::Page(key.clone(), page_request(&key, page + 1)),
                    );
                    return;
                }
            }
            // 404: an empty section on page 1, the end of the roster after it.
            Ok(_) => section.progress = Progress::Done(()),
            Err(error) => section.progress = Progress::Failed(error),
        }
        match section.progress {
            Progress::Done(()) => section.tally.compact(),
            _ => section.tally = Tally::default(),
        }
        for course in section.courses.clone() {
            self.settle(course);
        }
        self.release(&[key]);
    }

    fn take_person(&mut self, request: &Request, answer: Result<Answer, FetchError>) {
        let addresses = answer.map(|answer| match answer {
            Answer::Addresses(addresses) => addresses,
            _ => unreachable!("person tasks answer addresses"),
        });
        let (uid, from_hr) = match request {
            Request::Employee { uid } => (uid, true),
            Request::Student { uid } => (uid, false),
            _ => unreachable!("person tasks carry person requests"),
        };
        let person = self
            .people
            .get_mut(uid)
            .expect("people are registered before lookups");
        if from_hr {
            person.hr = Some(addresses);
        } else {
            person.student = Some(addresses);
        }
        for course in person.courses.clone() {
            self.settle(course);
        }
    }

    /// Finishes a course once everything it needs has an answer, or anything failed.
    fn settle(&mut self, course: usize) {
        let state = &self.state[course];
        if state.result.is_some() {
            return;
        }
        let Some(keys) = &state.sections else { return };
        let mut tallies = Vec::new();
        for key in keys {
            match &self.sections[key].progress {
                Progress::Pending => return,
                Progress::Failed(error) => return self.finish(course, Err(error.clone())),
                Progress::Done(()) => tallies.push(&self.sections[key].tally),
            }
        }
        let mut addresses = Vec::new();
        for uid in &state.uids {
            match self.people[uid].progress() {
                Progress::Pending => return,
                Progress::Failed(error) => return self.finish(course, Err(error)),
                Progress::Done(found) => addresses.extend(found),
            }
        }
        let students = Tally::students(tallies);
        let rosters = Rosters {
            instructors: Roster::from_raw(addresses),
            students: students.roster,
            no_email: students.no_email,
        };
        self.finish(course, Ok(rosters));
    }

    fn finish(&mut self, course: usize, result: Fetched) {
        log_result(&self.courses[course], &result);
        (self.finished)(&self.courses[course], &result);
        let state = &mut self.state[course];
        state.result = Some(result);
        state.uids = BTreeSet::new();
        let keys = state.sections.take().unwrap_or_default();
        self.unfinished -= 1;
        self.release(&keys);
    }

    /// Drops the sections among `keys` that no course can need any more: every Classes
    /// answer is in, the section is no longer being fetched, and its courses settled.
    fn release(&mut self, keys: &[SectionKey]) {
        if self.unanswered > 0 {
            return;
        }
        for key in keys {
            let Some(section) = self.sections.get(key) else {
                continue;
            };
            let settled = section
                .courses
                .iter()
                .all(|&course| self.state[course].result.is_some());
            if settled && !matches!(section.progress, Progress::Pending) {
                self.sections.remove(key);
            }
        }
    }

    fn into_results(self) -> Vec<Fetched> {
        self.state
            .into_iter()
            .map(|state| state.result.expect("every course finished"))
            .collect()
    }
}

fn page_request((term_id, section_id): &SectionKey, page: u32) -> Request {
    Request::EnrollmentPage {
        term_id: *term_id,
        section_id: section_id.clone(),
        page,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::course::KeyKind;
    use crate::source::{Reply, RetryPolicy, TransportError};
    use std::collections::HashMap;

    /// Answers from a map of replay paths; anything else is 404. Counts every request.
    struct Canned {
        answers: HashMap<String, (u16, String)>,
        asked: Mutex<Vec<String>>,
    }

    impl Transport for Canned {
        fn send(&self, request: &Request) -> Result<Reply, TransportError> {
            let path = request.replay_path().display().to_string();
            self.asked.lock().unwrap().push(path.clone());
            let (status, body) = self
                .answers
                .get(&path)
                .cloned()
                .unwrap_or((404, String::new()));
            Ok(Reply {
                status,
                body: body.into_bytes(),
                retry_after: None,
                link_next: None,
                rate_limit_remaining: None,
            })
        }
    }

    fn course(key: &str) -> Course {
        match Course::classify(key) {
            KeyKind::Course(course) => course,
            other => panic!("{other:?}"),
        }
    }

    fn sections(ids: &[u32], instructor: &str) -> String {
        let sections: Vec<String> = ids
            .iter()
            .map(|id| {
                format!(
                    r#"{{"id":{id},"meetings":[{{"assignedInstructors":[{{"instructor":
                    {{"identifiers":[{{"type":"campus-uid","id":"{instructor}","disclose":true}}]}},
                    "role":{{"code":"PI"}}}}]}}]}}"#
                )
            })
            .collect();
        format!(
            r#"{{"response":{{"classSections":[{}]}}}}"#,
            sections.join(",")
        )
    }

    fn page(first: usize, count: usize) -> String {
        let rows: Vec<String> = (first..first + count)
            .map(|n| {
                format!(
                    r#"{{"student":{{"emails":[{{"type":{{"code":"CAMP"}},"emailAddress":"s{n}@berkeley.edu"}}]}},
                    "enrollmentStatus":{{"status":{{"code":"E"}}}}}}"#
                )
            })
            .collect();
        format!(
            r#"{{"response":{{"classSectionEnrollments":[{}]}}}}"#,
            rows.join(",")
        )
    }

    fn run(answers: &[(&str, u16, String)], keys: &[&str]) -> (Vec<Fetched>, Vec<String>) {
        let (fetched, mut asked) = run_with(answers, keys, 3);
        asked.sort();
        (fetched, asked)
    }

    /// Fetches `keys` with `concurrency` workers; the requests in the order they were sent.
    fn run_with(
        answers: &[(&str, u16, String)],
        keys: &[&str],
        concurrency: usize,
    ) -> (Vec<Fetched>, Vec<String>) {
        let transport = Canned {
            answers: answers
                .iter()
                .map(|(path, status, body)| (path.to_string(), (*status, body.clone())))
                .collect(),
            asked: Mutex::new(Vec::new()),
        };
        let policy = RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        };
        let client = Arc::new(Client::new(transport, policy, Shutdown::new()));
        let courses: Vec<Course> = keys.iter().map(|key| course(key)).collect();
        let options = FetchOptions {
            concurrency,
            include_waitlisted: false,
            excluded_roles: BTreeSet::from(["APRX".to_string()]),
        };
        let fetched = fetch_all(
            Arc::clone(&client),
            &courses,
            &options,
            &Shutdown::new(),
            &|_, _| {},
        )
        .unwrap();
        let asked = std::mem::take(&mut *client.transport().asked.lock().unwrap());
        (fetched, asked)
    }

    fn students(fetched: &Fetched) -> usize {
        match fetched {
            Ok(rosters) => rosters.students.len(),
            Err(error) => panic!("failed: {error}"),
        }
    }

    #[test]
    fn shared_sections_and_instructors_are_fetched_once() {
        let (fetched, asked) = run(
            &[
                ("classes/2198/1.json", 200, sections(&[10, 11], "7")),
                ("classes/2198/2.json", 200, sections(&[11], "7")),
                ("enrollments/2198/10/page-1.json", 200, page(0, 100)),
                ("enrollments/2198/10/page-2.json", 200, page(100, 5)),
                ("enrollments/2198/11/page-1.json", 200, page(200, 3)),
                ("hr/7.json", 200, r#"{"response":[{"emails":[{"type":{"code":"BUSN"},"emailAddress":"p@berkeley.edu"}]}]}"#.into()),
            ],
            &["2019-fall-1", "2019-fall-2"],
        );
        assert_eq!(students(&fetched[0]), 108);
        assert_eq!(students(&fetched[1]), 3);
        assert_eq!(
            asked,
            [
                "classes/2198/1.json",
                "classes/2198/2.json",
                "enrollments/2198/10/page-1.json",
                "enrollments/2198/10/page-2.json",
                "enrollments/2198/11/page-1.json",
                "hr/7.json",
                "students/7.json",
            ]
        );
    }

    #[test]
    fn the_queue_hands_out_the_lowest_course_first_and_in_order_within_one() {
        let queue = TaskQueue::default();
        let person = |uid: &str| Task::Person(Request::Student { uid: uid.into() });
        for (priority, uid) in [(2, "a"), (0, "b"), (1, "c"), (0, "d"), (1, "e")] {
            queue.push(priority, person(uid));
        }
        let order: Vec<String> = std::iter::from_fn(|| {
            let empty = queue.state.lock().unwrap().tasks.is_empty();
            (!empty).then(|| queue.pop().unwrap().request().to_string())
        })
        .collect();
        let expected: Vec<String> = ["b", "d", "c", "e", "a"]
            .iter()
            .map(|uid| person(uid).request().to_string())
            .collect();
        assert_eq!(order, expected);
        queue.close();
        assert!(queue.pop().is_none());
    }

    #[test]
    fn a_section_is_kept_for_a_later_course_that_lists_it() {
        // One worker: each course is nearly done before the next one's Classes answer.
        let (fetched, mut asked) = run_with(
            &[
                ("classes/2198/1.json", 200, sections(&[10], "7")),
                ("classes/2198/2.json", 200, sections(&[20], "8")),
                ("classes/2198/3.json", 200, sections(&[10, 30], "7")),
                ("enrollments/2198/10/page-1.json", 200, page(0, 5)),
                ("enrollments/2198/20/page-1.json", 200, page(100, 2)),
                ("enrollments/2198/30/page-1.json", 200, page(3, 4)),
            ],
            &["2019-fall-1", "2019-fall-2", "2019-fall-3"],
            1,
        );
        asked.sort();
        assert_eq!(
            asked,
            [
                "classes/2198/1.json",
                "classes/2198/2.json",
                "classes/2198/3.json",
                "enrollments/2198/10/page-1.json",
                "enrollments/2198/20/page-1.json",
                "enrollments/2198/30/page-1.json",
                "hr/7.json",
                "hr/8.json",
                "students/7.json",
                "students/8.json",
            ]
        );
        assert_eq!(students(&fetched[0]), 5);
        assert_eq!(students(&fetched[1]), 2);
        assert_eq!(
            students(&fetched[2]),
            7,
            "s0..s4 of section 10, s3..s6 of 30"
        );
    }

    #[test]
    fn a_full_last_page_is_followed_by_one_more_request() {
        let (fetched, asked) = run(
            &[
                ("classes/2198/1.json", 200, sections(&[10], "7")),
                ("enrollments/2198/10/page-1.json", 200, page(0, 100)),
            ],
            &["2019-fall-1"],
        );
        assert_eq!(students(&fetched[0]), 100);
        assert!(asked.contains(&"enrollments/2198/10/page-2.json".to_string()));
        assert_eq!(asked.len(), 5);
    }

    #[test]
    fn a_failed_piece_fails_only_the_courses_that_need_it() {
        let (fetched, _) = run(
            &[
                ("classes/2198/1.json", 200, sections(&[10], "7")),
                ("classes/2198/2.json", 200, sections(&[11], "8")),
                ("enrollments/2198/10/page-1.json", 200, page(0, 100)),
                ("enrollments/2198/10/page-2.json", 500, String::new()),
                ("enrollments/2198/11/page-1.json", 200, page(0, 2)),
            ],
            &["2019-fall-1", "2019-fall-2", "2019-fall-3"],
        );
        assert!(matches!(
            &fetched[0],
            Err(FetchError::GaveUp {
                request: Request::EnrollmentPage { page: 2, .. },
                ..
            })
        ));
        assert_eq!(students(&fetched[1]), 2);
        assert!(matches!(&fetched[2], Err(FetchError::ClassNotFound { .. })));
    }

    #[test]
    fn a_section_that_never_ends_fails_at_the_page_cap() {
        let mut answers = vec![("classes/2198/1.json".to_string(), 200, sections(&[10], "7"))];
        for n in 1..=MAX_PAGES + 1 {
            answers.push((
                format!("enrollments/2198/10/page-{n}.json"),
                200,
                page(0, 100),
            ));
        }
        let answers: Vec<(&str, u16, String)> = answers
            .iter()
            .map(|(p, s, b)| (p.as_str(), *s, b.clone()))
            .collect();
        let (fetched, asked) = run(&answers, &["2019-fall-1"]);
        assert!(matches!(
            &fetched[0],
            Err(FetchError::PageCap {
                pages: MAX_PAGES,
                ..
            })
        ));
        let pages = asked.iter().filter(|path| path.contains("page-")).count();
        assert_eq!(pages, MAX_PAGES as usize);
    }
}
