//! Fetching every configured Canvas course (SPEC §11), beside [`crate::fetch`] for SIS.
//!
//! One course is one chain of requests: page 1 of
//! `GET /api/v1/courses/{id}/enrollments` with the type, state and e-mail filters, then
//! each page's `Link: rel="next"` URL until a page has none. Courses are fetched by at
//! most `concurrency` workers, one request each at a time; the shared [`Client`] retries,
//! backs off, counts, and stops the whole source on a 401.
//!
//! Invariants: a course gets both lists complete, or fails as a whole (404, a permission
//! 403, a next link to another origin, the page cap, a malformed page, retries run out);
//! no partial list ever leaves this module. When Canvas's `X-Rate-Limit-Remaining` falls
//! under a tenth of the first value seen, requests go one at a time with a pause, so the
//! quota refills instead of running out.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::course::Course;
use crate::fetch::{Fetched, Finished, Interrupted, MAX_PAGES, log_result};
use crate::roster::{self, Enrollee, Roster, Rosters};
use crate::shutdown::Shutdown;
use crate::source::canvas::CanvasBase;
use crate::source::canvas_api::{self, Identity, Types};
use crate::source::{Client, FetchError, Request, Transport};

/// The share of the first `X-Rate-Limit-Remaining` under which requests slow down.
pub const LOW_QUOTA_SHARE: f64 = 0.1;

#[derive(Clone, Debug)]
pub struct CanvasOptions {
    pub concurrency: usize,
    pub types: Types,
    pub identity: Identity,
    /// The wait before each request while the quota is low.
    pub low_quota_pause: Duration,
}

impl Default for CanvasOptions {
    fn default() -> Self {
        CanvasOptions {
            concurrency: 4,
            types: Types::default(),
            identity: Identity::Email,
            low_quota_pause: Duration::from_secs(1),
        }
    }
}

/// Fetches every Canvas course of `courses` (all must be Canvas courses); the result is
/// in the order of `courses`.
pub fn fetch_all<T: Transport + 'static>(
    client: Arc<Client<T>>,
    base: &CanvasBase,
    courses: &[Course],
    options: &CanvasOptions,
    shutdown: &Shutdown,
    finished: Finished<'_>,
) -> Result<Vec<Fetched>, Interrupted> {
    if courses.is_empty() {
        return Ok(Vec::new());
    }
    let work = Arc::new(Work {
        courses: courses.to_vec(),
        next: AtomicUsize::new(0),
        base: base.clone(),
        options: options.clone(),
        pacer: Pacer::new(options.low_quota_pause),
        shutdown: shutdown.clone(),
    });
    let (answers, answered) = mpsc::channel();
    let workers = options.concurrency.clamp(1, courses.len());
    for n in 0..workers {
        let (client, work, answers) = (Arc::clone(&client), Arc::clone(&work), answers.clone());
        std::thread::Builder::new()
            .name(format!("canvas-{n}"))
            .spawn(move || {
                loop {
                    let index = work.next.fetch_add(1, Ordering::Relaxed);
                    let Some(course) = work.courses.get(index) else {
                        break;
                    };
                    if work.shutdown.requested() {
                        break;
                    }
                    let result =
                        catch_unwind(AssertUnwindSafe(|| fetch_course(&client, &work, course)))
                            .unwrap_or(Err(FetchError::Internal));
                    if answers.send((index, result)).is_err() {
                        break;
                    }
                }
            })
            .expect("spawning a Canvas fetch thread");
    }
    drop(answers);
    let mut results: Vec<Option<Fetched>> = courses.iter().map(|_| None).collect();
    let mut unfinished = courses.len();
    while unfinished > 0 {
        match answered.recv_timeout(Duration::from_millis(50)) {
            Ok((index, result)) => {
                log_result(&courses[index], &result);
                finished(&courses[index], &result);
                results[index] = Some(result);
                unfinished -= 1;
            }
            Err(RecvTimeoutError::Timeout) => {}
            // Workers only stop early on a signal.
            Err(RecvTimeoutError::Disconnected) => return Err(Interrupted),
        }
        if shutdown.requested() {
            // As for SIS: a request in flight is not waited for.
            return Err(Interrupted);
        }
    }
    Ok(results
        .into_iter()
        .map(|result| result.expect("every course answered"))
        .collect())
}

struct Work {
    courses: Vec<Course>,
    next: AtomicUsize,
    base: CanvasBase,
    options: CanvasOptions,
    pacer: Pacer,
    shutdown: Shutdown,
}

/// All pages of one course, then its two lists.
fn fetch_course<T: Transport>(client: &Client<T>, work: &Work, course: &Course) -> Fetched {
    let course_id = course
        .canvas_id()
        .expect("the Canvas coordinator is given Canvas courses only")
        .to_string();
    let options = &work.options;
    let mut request = Request::CanvasEnrollments {
        course_id: course_id.clone(),
        page: 1,
        next: None,
    };
    let mut students: Vec<Enrollee> = Vec::new();
    let mut instructors: Vec<Enrollee> = Vec::new();
    let mut rows = 0;
    loop {
        if !work.pacer.wait(&work.shutdown) {
            return Err(FetchError::Interrupted);
        }
        let Some(reply) = client.fetch_reply(&request)? else {
            return Err(FetchError::CourseNotFound { request });
        };
        work.pacer.observe(reply.rate_limit_remaining);
        let page = canvas_api::parse_enrollments(&reply.body, &options.types, options.identity)
            .map_err(|reason| FetchError::Malformed {
                request: request.clone(),
                reason,
            })?;
        rows += page.rows;
        students.extend(page.students);
        instructors.extend(page.instructors);
        let Some(next) = reply.link_next else { break };
        let Request::CanvasEnrollments { page: number, .. } = request else {
            unreachable!("Canvas requests only")
        };
        if !work.base.same_origin(&next) {
            return Err(FetchError::ForeignNextPage { request });
        }
        if number >= MAX_PAGES {
            return Err(FetchError::PageCap {
                request,
                pages: MAX_PAGES,
            });
        }
        request = Request::CanvasEnrollments {
            course_id: course_id.clone(),
            page: number + 1,
            next: Some(next),
        };
    }
    let listed = roster::students(&students, false);
    let instructors_without = instructors
        .iter()
        .filter(|row| row.address.as_deref().and_then(roster::normalize).is_none())
        .filter_map(|row| row.id.as_deref())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let key = &course.key;
    if rows == 0 {
        log::warn!(
            course = key.as_str();
            "{key}: Canvas lists no active enrollment (a concluded or unpublished course?)"
        );
    }
    let missing = listed.no_email + instructors_without;
    let instructor_roster =
        Roster::from_raw(instructors.iter().filter_map(|row| row.address.as_deref()));
    let found = listed.roster.len() + instructor_roster.len();
    // A few people without the field are normal; nobody with it is a missing permission.
    if missing > 0 && found == 0 {
        log::warn!(
            course = key.as_str();
            "{key}: none of {missing} people has {}; {}",
            options.identity,
            match options.identity {
                Identity::Email => "the token's user needs \"Users - view primary email address\"",
                Identity::LoginId => "the token's user needs \"Users - view login IDs\"",
            }
        );
    }
    Ok(Rosters {
        students: listed.roster,
        instructors: instructor_roster,
        no_email: listed.no_email,
    })
}

/// Slows requests down while Canvas says the quota is low: they go one at a time, each
/// after a pause, until a reply shows the quota back over the mark.
struct Pacer {
    first: Mutex<Option<f64>>,
    low: AtomicBool,
    turn: Mutex<()>,
    pause: Duration,
}

impl Pacer {
    fn new(pause: Duration) -> Self {
        Pacer {
            first: Mutex::new(None),
            low: AtomicBool::new(false),
            turn: Mutex::new(()),
            pause,
        }
    }

    /// Waits for this request's turn; `false` when a signal arrived.
    fn wait(&self, shutdown: &Shutdown) -> bool {
        if !self.low.load(Ordering::Relaxed) {
            return true;
        }
        let _turn = self
            .turn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        shutdown.sleep(self.pause)
    }

    fn observe(&self, remaining: Option<f64>) {
        let Some(remaining) = remaining else { return };
        let mut first = self
            .first
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mark = first.get_or_insert(remaining).max(0.0) * LOW_QUOTA_SHARE;
        let low = remaining < mark;
        if self.low.swap(low, Ordering::Relaxed) != low {
            if low {
                log::warn!(
                    "Canvas rate limit quota low ({remaining:.0} left, under {mark:.0}); \
                     slowing down to one request every {} ms",
                    self.pause.as_millis()
                );
            } else {
                log::info!("Canvas rate limit quota recovered ({remaining:.0} left)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::course::KeyKind;
    use crate::source::{Reply, RetryPolicy, TransportError};
    use std::collections::HashMap;
    use std::sync::atomic::AtomicU64;

    /// Status, body, next link and quota left of one scripted answer.
    type Scripted = (u16, String, Option<String>, Option<f64>);

    /// Answers by (course, page) from a script; anything else is 404.
    #[derive(Default)]
    struct Canned {
        pages: HashMap<(String, u32), Scripted>,
        sent: AtomicU64,
        asked: Mutex<Vec<Request>>,
    }

    impl Canned {
        fn page(mut self, course: &str, page: u32, body: &str, next: Option<&str>) -> Self {
            self.pages.insert(
                (course.into(), page),
                (200, body.into(), next.map(String::from), None),
            );
            self
        }

        fn status(mut self, course: &str, page: u32, status: u16, body: &str) -> Self {
            self.pages
                .insert((course.into(), page), (status, body.into(), None, None));
            self
        }
    }

    impl Transport for Canned {
        fn send(&self, request: &Request) -> Result<Reply, TransportError> {
            self.sent.fetch_add(1, Ordering::SeqCst);
            self.asked.lock().unwrap().push(request.clone());
            let Request::CanvasEnrollments {
                course_id, page, ..
            } = request
            else {
                panic!("{request}")
            };
            let (status, body, link_next, rate_limit_remaining) = self
                .pages
                .get(&(course_id.clone(), *page))
                .cloned()
                .unwrap_or((404, String::new(), None, None));
            Ok(Reply {
                status,
                body: body.into_bytes(),
                retry_after: None,
                link_next,
                rate_limit_remaining,
            })
        }
    }

    const BASE: &str = "https://canvas.example.edu";

    fn course(key: &str) -> Course {
        match Course::classify(key) {
            KeyKind::Course(course) => course,
            other => panic!("{other:?}"),
        }
    }

    fn run(canned: Canned, keys: &[&str]) -> (Vec<Fetched>, Arc<Client<Canned>>) {
        let client = Arc::new(Client::new(
            canned,
            RetryPolicy {
                attempts: 3,
                first_wait: Duration::from_millis(1),
                max_wait: Duration::from_millis(5),
            },
            Shutdown::new(),
        ));
        let courses: Vec<Course> = keys.iter().map(|key| course(key)).collect();
        let base = CanvasBase::Http(crate::source::http::BaseUrl::parse(BASE).unwrap());
        let results = fetch_all(
            Arc::clone(&client),
            &base,
            &courses,
            &CanvasOptions {
                concurrency: 2,
                low_quota_pause: Duration::from_millis(1),
                ..CanvasOptions::default()
            },
            &Shutdown::new(),
            &|_, _| {},
        )
        .unwrap();
        (results, client)
    }

    fn student(id: u32, email: Option<&str>) -> String {
        let email = email.map_or("null".to_string(), |email| format!("\"{email}\""));
        format!(
            r#"{{"type":"StudentEnrollment","enrollment_state":"active","user_id":{id},"user":{{"id":{id},"email":{email}}}}}"#
        )
    }

    #[test]
    fn pages_are_followed_by_their_next_links_and_lists_merged() {
        let next = format!("{BASE}/api/v1/courses/5/enrollments?page=bookmark:x&per_page=100");
        let one = format!(
            "[{},{},{{\"type\":\"TeacherEnrollment\",\"user_id\":9,\"user\":{{\"id\":9,\"email\":\"Prof@Example.edu\"}}}}]",
            student(1, Some("b@example.edu")),
            student(2, None)
        );
        let two = format!(
            "[{},{}]",
            student(1, Some("b@example.edu")),
            student(3, Some("A@example.edu"))
        );
        let canned = Canned::default()
            .page("5", 1, &one, Some(&next))
            .page("5", 2, &two, None);
        let (results, client) = run(canned, &["canvas-5"]);
        let rosters = results[0].as_ref().unwrap();
        assert_eq!(
            rosters.students.render(),
            b"a@example.edu\nb@example.edu\n".to_vec()
        );
        assert_eq!(rosters.instructors.render(), b"prof@example.edu\n".to_vec());
        assert_eq!(rosters.no_email, 1);
        let asked = client.transport().asked.lock().unwrap().clone();
        assert_eq!(
            asked[1],
            Request::CanvasEnrollments {
                course_id: "5".into(),
                page: 2,
                next: Some(next)
            }
        );
        assert_eq!(client.requests().total, 2);
    }

    #[test]
    fn a_next_link_to_another_origin_fails_the_course_without_asking_it() {
        let canned = Canned::default().page("5", 1, "[]", Some("https://evil.example/api/v1/x"));
        let (results, client) = run(canned, &["canvas-5"]);
        assert!(
            matches!(results[0], Err(FetchError::ForeignNextPage { .. })),
            "{results:?}"
        );
        assert_eq!(client.requests().total, 1);
    }

    #[test]
    fn not_found_forbidden_and_rejected_tokens_fail_as_the_spec_says() {
        let canned = Canned::default()
            .status(
                "1",
                1,
                404,
                "{\"errors\":[{\"message\":\"The specified resource does not exist.\"}]}",
            )
            .status("2", 1, 403, "{\"status\":\"unauthorized\"}")
            .page("3", 1, "[]", None);
        let (results, _) = run(canned, &["canvas-1", "canvas-2", "canvas-3"]);
        assert!(matches!(results[0], Err(FetchError::CourseNotFound { .. })));
        let Err(forbidden) = &results[1] else {
            panic!("{results:?}")
        };
        assert!(matches!(forbidden, FetchError::Forbidden { .. }));
        assert!(
            forbidden
                .to_string()
                .contains("Users - view primary email address")
        );
        assert!(
            results[2].is_ok(),
            "a permission 403 fails that course alone"
        );

        let canned = Canned::default()
            .status(
                "1",
                1,
                401,
                "{\"errors\":[{\"message\":\"Invalid access token.\"}]}",
            )
            .page("2", 1, "[]", None);
        let (results, client) = run(canned, &["canvas-1", "canvas-2"]);
        assert!(results.iter().all(Result::is_err), "{results:?}");
        assert_eq!(client.requests().total, 1, "a 401 costs one request");
        assert!(
            results[0]
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("CANVAS_API_TOKEN")
        );
    }

    #[test]
    fn the_page_cap_stops_an_endless_chain() {
        let mut canned = Canned::default();
        for page in 1..=MAX_PAGES + 1 {
            canned = canned.page("8", page, "[]", Some(&format!("{BASE}/next/{page}")));
        }
        let (results, client) = run(canned, &["canvas-8"]);
        assert!(
            matches!(results[0], Err(FetchError::PageCap { .. })),
            "{results:?}"
        );
        assert_eq!(client.requests().total, u64::from(MAX_PAGES));
    }

    #[test]
    fn the_pacer_slows_down_under_a_tenth_of_the_first_quota() {
        let pacer = Pacer::new(Duration::from_millis(30));
        let shutdown = Shutdown::new();
        pacer.observe(Some(700.0));
        pacer.observe(Some(100.0));
        let started = std::time::Instant::now();
        assert!(pacer.wait(&shutdown));
        assert!(started.elapsed() < Duration::from_millis(30));
        pacer.observe(Some(69.0));
        let started = std::time::Instant::now();
        assert!(pacer.wait(&shutdown));
        assert!(started.elapsed() >= Duration::from_millis(30));
        pacer.observe(Some(300.0));
        let started = std::time::Instant::now();
        assert!(pacer.wait(&shutdown));
        assert!(started.elapsed() < Duration::from_millis(30));
    }
}
