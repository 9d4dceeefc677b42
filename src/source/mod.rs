//! The remote source: what roster-sync asks SIS, HR and Canvas for, and how answers come back.
//! This is the seam a source plugs into: it names its calls as [`Request`]s and parses
//! the bodies; everything between (transport, retries, credentials, counting) is shared.
//!
//! A [`Request`] names one API call in domain terms; a [`Transport`] turns it into bytes
//! (over HTTP, or from recorded files for `--api-base file://DIR`); the [`Client`] adds the
//! policy every transport shares: status interpretation, retries with backoff, the
//! per-API circuit breaker for rejected credentials, and request counting.
//!
//! Invariants: a credential never appears in a [`FetchError`] message; a 401/403 from an
//! API stops every later request to that API in the run; every attempt is counted.

pub mod api;
pub mod canvas;
pub mod canvas_api;
pub mod credentials;
pub mod http;
pub mod replay;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use serde::Serialize;

use self::api::ParseError;
use crate::shutdown::Shutdown;

/// One of the remote APIs: the four SIS/HR APIs, each with its own credential pair, and
/// Canvas with its bearer token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Api {
    Classes,
    Enrollments,
    Students,
    Hr,
    Canvas,
}

impl Api {
    /// The four SIS/HR APIs, which a run with SIS courses needs credential pairs for.
    pub const ALL: [Api; 4] = [Api::Classes, Api::Enrollments, Api::Students, Api::Hr];

    pub fn name(self) -> &'static str {
        match self {
            Api::Classes => "SIS Classes API",
            Api::Enrollments => "SIS Enrollments API",
            Api::Students => "SIS Students API",
            Api::Hr => "HR Employees API",
            Api::Canvas => "Canvas API",
        }
    }

    /// The environment variables holding this API's `app_id` and `app_key`
    /// (the original sidecar's names); for Canvas, the token's variable and its file form.
    pub fn credential_vars(self) -> (&'static str, &'static str) {
        match self {
            Api::Canvas => (canvas_api::TOKEN_VAR, canvas_api::TOKEN_FILE_VAR),
            Api::Classes => ("SIS_CLASSES_ID", "SIS_CLASSES_KEY"),
            Api::Enrollments => ("SIS_ENROLLMENTS_ID", "SIS_ENROLLMENTS_KEY"),
            Api::Students => ("SIS_STUDENTS_ID", "SIS_STUDENTS_KEY"),
            Api::Hr => ("UCB_HR_ID", "UCB_HR_KEY"),
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Roster pages are requested with the API's maximum page size.
pub const PAGE_SIZE: usize = 100;

/// One remote call, in domain terms. Identifiers are kept as the strings SIS uses
/// (class numbers keep leading zeros).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Request {
    /// All sections (lecture and secondaries) of a class number in a term.
    Sections { term_id: u32, class_number: String },
    /// One page (from 1) of a section's enrollments.
    EnrollmentPage {
        term_id: u32,
        section_id: String,
        page: u32,
    },
    /// A person's record in the Students API (for instructors who are also students).
    Student { uid: String },
    /// A person's record in the HR API.
    Employee { uid: String },
    /// One page (from 1) of a Canvas course's enrollments: page 1 is built from the
    /// configured base, a later one is the previous page's `Link: rel="next"` URL as sent.
    CanvasEnrollments {
        course_id: String,
        page: u32,
        next: Option<String>,
    },
}

impl Request {
    pub fn api(&self) -> Api {
        match self {
            Request::Sections { .. } => Api::Classes,
            Request::EnrollmentPage { .. } => Api::Enrollments,
            Request::Student { .. } => Api::Students,
            Request::Employee { .. } => Api::Hr,
            Request::CanvasEnrollments { .. } => Api::Canvas,
        }
    }

    /// The identifiers the request puts into its path, as SIS gave them.
    fn identifiers(&self) -> Vec<&str> {
        match self {
            Request::Sections { class_number, .. } => vec![class_number],
            Request::EnrollmentPage { section_id, .. } => vec![section_id],
            Request::Student { uid } | Request::Employee { uid } => vec![uid],
            Request::CanvasEnrollments { course_id, .. } => vec![course_id],
        }
    }

    /// An identifier that cannot be one path segment even once encoded: empty, `.` or
    /// `..` (which servers and file systems resolve against the segment before). A
    /// request with one must not be sent or replayed.
    pub fn refused_identifier(&self) -> Option<&str> {
        self.identifiers()
            .into_iter()
            .find(|id| matches!(*id, "" | "." | ".."))
    }

    /// The URL path below the API base. Every identifier is percent-encoded as exactly
    /// one segment, `/` included, so an id from a response (a uid, a section id) can
    /// never add a segment, a query or a fragment.
    pub fn path(&self) -> String {
        match self {
            Request::Sections { class_number, .. } => {
                format!("/sis/v1/classes/sections/{}", encode_segment(class_number))
            }
            Request::EnrollmentPage {
                term_id,
                section_id,
                ..
            } => format!(
                "/sis/v3/enrollments/terms/{term_id}/classes/sections/{}",
                encode_segment(section_id)
            ),
            Request::Student { uid } => format!("/sis/v2/students/{}", encode_segment(uid)),
            Request::Employee { uid } => format!("/hr/v3/employees/{}", encode_segment(uid)),
            Request::CanvasEnrollments { course_id, .. } => {
                format!("/api/v1/courses/{}/enrollments", encode_segment(course_id))
            }
        }
    }

    /// The query parameters, in the order they are sent.
    pub fn query(&self) -> Vec<(&'static str, String)> {
        match self {
            Request::Sections { term_id, .. } => vec![
                ("term-id", term_id.to_string()),
                ("include-secondary", "true".to_string()),
            ],
            Request::EnrollmentPage { page, .. } => vec![
                ("page-number", page.to_string()),
                ("page-size", PAGE_SIZE.to_string()),
            ],
            Request::Student { .. } => vec![
                ("id-type", "campus-uid".to_string()),
                ("inc-cntc", "true".to_string()),
            ],
            Request::Employee { .. } => vec![("id-type", "campus-uid".to_string())],
            // The enrollment types depend on the configuration: the Canvas transport adds
            // them in front of these.
            Request::CanvasEnrollments { .. } => vec![
                ("state[]", "active".to_string()),
                ("include[]", "email".to_string()),
                ("per_page", PAGE_SIZE.to_string()),
            ],
        }
    }

    /// Where `--api-base file://DIR` finds the recorded answer, relative to DIR.
    /// A missing file answers 404. Identifiers are encoded as in [`Request::path`], so
    /// each is one file or directory name below its API's folder.
    pub fn replay_path(&self) -> PathBuf {
        match self {
            Request::Sections {
                term_id,
                class_number,
            } => format!("classes/{term_id}/{}.json", encode_segment(class_number)),
            Request::EnrollmentPage {
                term_id,
                section_id,
                page,
            } => format!(
                "enrollments/{term_id}/{}/page-{page}.json",
                encode_segment(section_id)
            ),
            Request::Student { uid } => format!("students/{}.json", encode_segment(uid)),
            Request::Employee { uid } => format!("hr/{}.json", encode_segment(uid)),
            Request::CanvasEnrollments {
                course_id, page, ..
            } => format!(
                "courses/{}/enrollments/page-{page}.json",
                encode_segment(course_id)
            ),
        }
        .into()
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986: letters, digits,
/// `-._~`), `/` included; SIS identifiers (digits) come out unchanged.
pub fn encode_segment(text: &str) -> std::borrow::Cow<'_, str> {
    use std::fmt::Write as _;
    let unreserved = |byte: u8| byte.is_ascii_alphanumeric() || b"-._~".contains(&byte);
    if text.bytes().all(unreserved) {
        return text.into();
    }
    let mut encoded = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if unreserved(byte) {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded.into()
}

/// A description for logs and error messages. It names no person: instructor lookups
/// are described by API only.
impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let api = self.api().name();
        match self {
            Request::Sections {
                term_id,
                class_number,
            } => write!(f, "{api} (class {class_number}, term {term_id})"),
            Request::EnrollmentPage {
                term_id,
                section_id,
                page,
            } => write!(
                f,
                "{api} (section {section_id}, term {term_id}, page {page})"
            ),
            Request::Student { .. } | Request::Employee { .. } => {
                write!(f, "{api} (instructor lookup)")
            }
            Request::CanvasEnrollments {
                course_id, page, ..
            } => write!(f, "{api} (course {course_id} enrollments, page {page})"),
        }
    }
}

/// What a transport got back: the status and the body, whatever the status.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    /// `Retry-After` in seconds, when the server sent one.
    pub retry_after: Option<Duration>,
    /// The `rel="next"` URL of the `Link` header(s), as sent (Canvas pagination).
    pub link_next: Option<String>,
    /// `X-Rate-Limit-Remaining`, the quota Canvas says is left.
    pub rate_limit_remaining: Option<f64>,
}

/// A failure below HTTP status level. `retryable` says whether trying again may help
/// (timeouts, refused or reset connections) or not (a body over the size limit).
#[derive(Debug)]
pub struct TransportError {
    pub message: String,
    pub retryable: bool,
}

/// Sends one request and returns the raw reply. Implementations must never put a
/// credential into a `TransportError` message.
pub trait Transport: Send + Sync {
    fn send(&self, request: &Request) -> Result<Reply, TransportError>;
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn send(&self, request: &Request) -> Result<Reply, TransportError> {
        (**self).send(request)
    }
}

/// The last retryable failure of a request whose attempts ran out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Status(u16),
    Transport(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Status(status) => write!(f, "HTTP {status}"),
            Failure::Transport(reason) => f.write_str(reason),
        }
    }
}

/// Why a course could not be fetched. Every variant names the API or request that failed,
/// never a person or a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// 401/403: the credentials were rejected; the API is not asked again this run.
    Rejected { api: Api, status: u16 },
    /// An earlier request to this API was rejected.
    ApiDisabled { api: Api },
    /// Retryable failures until the attempts ran out.
    GaveUp {
        request: Request,
        attempts: u32,
        last: Failure,
    },
    /// A status that retrying cannot fix (400, a redirect, ...).
    Status { request: Request, status: u16 },
    /// A body that is not the JSON we expect.
    Malformed {
        request: Request,
        reason: ParseError,
    },
    /// A non-retryable transport failure.
    Transport { request: Request, reason: String },
    /// The Classes API knows no such class (404, or no sections).
    ClassNotFound { request: Request },
    /// A section still had full pages at the page cap; looping on could be endless.
    PageCap { request: Request, pages: u32 },
    /// Canvas answered 404: no such course (or not visible to the token's user).
    CourseNotFound { request: Request },
    /// Canvas answered 403 without saying it throttled: the token's user lacks a
    /// permission for this course; other courses are still asked.
    Forbidden { request: Request },
    /// A Canvas `Link: rel="next"` URL on another origin than `--canvas-api`: the token
    /// is never sent there.
    ForeignNextPage { request: Request },
    /// A worker panicked on this course's answer (a bug, not the API's fault).
    Internal,
    /// SIGTERM/SIGINT arrived; no new attempt was started.
    Interrupted,
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Rejected {
                api: Api::Canvas,
                status,
            } => write!(
                f,
                "Canvas API rejected the token (HTTP {status}: expired, revoked or wrong); \
                 check {} (or {})",
                canvas_api::TOKEN_VAR,
                canvas_api::TOKEN_FILE_VAR
            ),
            FetchError::ApiDisabled { api: Api::Canvas } => write!(
                f,
                "Canvas API was not asked: it rejected the token earlier in this run (check {})",
                canvas_api::TOKEN_VAR
            ),
            FetchError::Rejected { api, status } => {
                let (id, key) = api.credential_vars();
                write!(
                    f,
                    "{} rejected the credentials (HTTP {status}); check {id} and {key} \
                     (or {id}_FILE and {key}_FILE)",
                    api.name()
                )
            }
            FetchError::ApiDisabled { api } => {
                let (id, key) = api.credential_vars();
                write!(
                    f,
                    "{} was not asked: it rejected the credentials earlier in this run \
                     (check {id} and {key})",
                    api.name()
                )
            }
            FetchError::GaveUp {
                request,
                attempts,
                last,
            } => write!(
                f,
                "{request}: gave up after {attempts} attempts, last: {last}"
            ),
            FetchError::Status { request, status } => {
                write!(f, "{request}: unexpected HTTP status {status}")
            }
            FetchError::Malformed { request, reason } => {
                write!(f, "{request}: malformed response: {reason}")
            }
            FetchError::Transport { request, reason } => write!(f, "{request}: {reason}"),
            FetchError::ClassNotFound { request } => {
                write!(f, "class section not found ({request})")
            }
            FetchError::PageCap { request, pages } => write!(
                f,
                "{request}: still full after {pages} pages; giving up rather than loop"
            ),
            FetchError::CourseNotFound { request } => {
                write!(f, "course not found ({request}: HTTP 404)")
            }
            FetchError::Forbidden { request } => write!(
                f,
                "{request}: HTTP 403, the token's user may not list this course's \
                 enrollments; {}",
                canvas_api::PERMISSIONS_HINT
            ),
            FetchError::ForeignNextPage { request } => write!(
                f,
                "{request}: the next-page link points to another origin than --canvas-api; \
                 not followed (the token is only sent to the configured host)"
            ),
            FetchError::Internal => write!(f, "internal error while fetching"),
            FetchError::Interrupted => write!(f, "interrupted by a termination signal"),
        }
    }
}

impl std::error::Error for FetchError {}

/// How hard to try before a course is given up.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// The wait before the first retry; it doubles for each further retry.
    pub first_wait: Duration,
    /// `Retry-After` is honoured up to this long.
    pub max_wait: Duration,
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (from 1): exponential backoff with full
    /// jitter over the upper half, never shorter than what the server asked for (capped
    /// at `max_wait`).
    pub fn backoff(&self, attempt: u32, server_wait: Option<Duration>) -> Duration {
        let exponential = self
            .first_wait
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(self.max_wait);
        let jittered = exponential / 2 + exponential.mul_f64(jitter_fraction() / 2.0);
        match server_wait {
            Some(wait) => jittered.max(wait.min(self.max_wait)),
            None => jittered,
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            first_wait: Duration::from_millis(500),
            max_wait: Duration::from_secs(30),
        }
    }
}

/// HTTP attempts of a run, retries included, as the report shows them.
#[derive(Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Requests {
    pub total: u64,
    pub retried: u64,
}

/// What a run knows of one API's credentials.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Trust {
    #[default]
    Unknown,
    /// One request is out to find out; the others wait for its answer.
    Probing,
    Accepted,
    Rejected,
}

/// Until an API has answered once with anything but 401/403, its requests go one at a
/// time, so rejected credentials cost exactly one request, not one per worker.
#[derive(Default)]
struct CredentialGate {
    trust: Mutex<Trust>,
    changed: Condvar,
}

enum Denied {
    Rejected,
    Interrupted,
}

/// The right to send one request; a probe that ends without a verdict (a transport
/// error, a panic) hands the probing on to the next request.
struct Pass<'a> {
    gate: &'a CredentialGate,
    probe: bool,
}

impl CredentialGate {
    fn enter(&self, shutdown: &Shutdown) -> Result<Pass<'_>, Denied> {
        let mut trust = self.trust.lock().expect("gate lock");
        loop {
            match *trust {
                Trust::Accepted => {
                    return Ok(Pass {
                        gate: self,
                        probe: false,
                    });
                }
                Trust::Rejected => return Err(Denied::Rejected),
                Trust::Unknown => {
                    *trust = Trust::Probing;
                    return Ok(Pass {
                        gate: self,
                        probe: true,
                    });
                }
                Trust::Probing if shutdown.requested() => return Err(Denied::Interrupted),
                Trust::Probing => {
                    trust = self
                        .changed
                        .wait_timeout(trust, Duration::from_millis(50))
                        .expect("gate lock")
                        .0;
                }
            }
        }
    }

    fn settle(&self, verdict: Trust) {
        let mut trust = self.trust.lock().expect("gate lock");
        if verdict == Trust::Rejected || *trust == Trust::Probing {
            *trust = verdict;
        }
        self.changed.notify_all();
    }
}

impl Pass<'_> {
    /// Records what an HTTP answer says of the credentials: `rejected` for a 401 (or a
    /// SIS 403), anything else accepts them.
    fn answered(mut self, rejected: bool) {
        if rejected {
            self.gate.settle(Trust::Rejected);
        } else if self.probe {
            self.gate.settle(Trust::Accepted);
        }
        self.probe = false;
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if self.probe {
            self.gate.settle(Trust::Unknown);
        }
    }
}

/// The shared request policy around a transport; safe to use from many threads.
pub struct Client<T> {
    transport: T,
    retry: RetryPolicy,
    shutdown: Shutdown,
    total: AtomicU64,
    retried: AtomicU64,
    gates: [CredentialGate; 5],
}

impl<T: Transport> Client<T> {
    pub fn new(transport: T, retry: RetryPolicy, shutdown: Shutdown) -> Self {
        Client {
            transport,
            retry,
            shutdown,
            total: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            gates: Default::default(),
        }
    }

    #[cfg(test)]
    pub fn transport(&self) -> &T {
        &self.transport
    }

    pub fn requests(&self) -> Requests {
        Requests {
            total: self.total.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
        }
    }

    /// Fetches one request: `Ok(Some(body))` for a 2xx answer, `Ok(None)` for 404.
    pub fn fetch(&self, request: &Request) -> Result<Option<Vec<u8>>, FetchError> {
        Ok(self.fetch_reply(request)?.map(|reply| reply.body))
    }

    /// Like [`Client::fetch`], with the whole 2xx reply (its headers).
    ///
    /// Canvas differs from SIS in what a 403 means: one whose body says `Rate Limit
    /// Exceeded` is throttling (retried like 429), any other is a permission this course
    /// lacks ([`FetchError::Forbidden`]); only a 401 rejects the token for the whole run.
    pub fn fetch_reply(&self, request: &Request) -> Result<Option<Reply>, FetchError> {
        let api = request.api();
        let attempts = self.retry.attempts.max(1);
        let mut last_failure = Failure::Status(0);
        for attempt in 1..=attempts {
            if self.shutdown.requested() {
                return Err(FetchError::Interrupted);
            }
            let pass = match self.gates[api.index()].enter(&self.shutdown) {
                Ok(pass) => pass,
                Err(Denied::Rejected) => return Err(FetchError::ApiDisabled { api }),
                Err(Denied::Interrupted) => return Err(FetchError::Interrupted),
            };
            self.total.fetch_add(1, Ordering::Relaxed);
            if attempt > 1 {
                self.retried.fetch_add(1, Ordering::Relaxed);
            }
            let mut server_wait = None;
            let sent = self.transport.send(request);
            let throttled = |reply: &Reply| {
                api == Api::Canvas
                    && reply.status == 403
                    && canvas_api::says_rate_limited(&reply.body)
            };
            if let Ok(reply) = &sent {
                let rejected = match api {
                    Api::Canvas => reply.status == 401,
                    _ => matches!(reply.status, 401 | 403),
                };
                pass.answered(rejected);
            } else {
                drop(pass);
            }
            match sent {
                Ok(reply) => match reply.status {
                    200..=299 => return Ok(Some(reply)),
                    404 => return Ok(None),
                    403 if throttled(&reply) => {
                        last_failure = Failure::Status(403);
                        server_wait = reply.retry_after;
                    }
                    403 if api == Api::Canvas => {
                        return Err(FetchError::Forbidden {
                            request: request.clone(),
                        });
                    }
                    401 | 403 => {
                        return Err(FetchError::Rejected {
                            api,
                            status: reply.status,
                        });
                    }
                    429 | 500..=599 => {
                        last_failure = Failure::Status(reply.status);
                        server_wait = reply.retry_after;
                    }
                    status => {
                        return Err(FetchError::Status {
                            request: request.clone(),
                            status,
                        });
                    }
                },
                Err(error) if error.retryable => last_failure = Failure::Transport(error.message),
                Err(error) => {
                    return Err(FetchError::Transport {
                        request: request.clone(),
                        reason: error.message,
                    });
                }
            }
            if attempt < attempts {
                let wait = self.retry.backoff(attempt, server_wait);
                log::debug!(
                    "{request}: {last_failure}; retrying in {} ms",
                    wait.as_millis()
                );
                if !self.shutdown.sleep(wait) {
                    return Err(FetchError::Interrupted);
                }
            }
        }
        Err(FetchError::GaveUp {
            request: request.clone(),
            attempts,
            last: last_failure,
        })
    }
}

/// A fraction in [0, 1) that differs between calls and threads; good enough to
/// spread retries, with no dependency on a random number crate.
fn jitter_fraction() -> f64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Answers from a script of statuses, then 200.
    struct Scripted {
        statuses: Mutex<Vec<u16>>,
        sent: AtomicU64,
    }

    impl Scripted {
        fn new(statuses: &[u16]) -> Self {
            Scripted {
                statuses: Mutex::new(statuses.iter().rev().copied().collect()),
                sent: AtomicU64::new(0),
            }
        }
    }

    impl Transport for Scripted {
        fn send(&self, _: &Request) -> Result<Reply, TransportError> {
            self.sent.fetch_add(1, Ordering::SeqCst);
            let status = self.statuses.lock().unwrap().pop().unwrap_or(200);
            Ok(Reply {
                status,
                body: b"{}".to_vec(),
                retry_after: None,
                link_next: None,
                rate_limit_remaining: None,
            })
        }
    }

    fn fast_policy(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            first_wait: Duration::from_millis(1),
            max_wait: Duration::from_millis(5),
        }
    }

    fn client(statuses: &[u16], attempts: u32) -> Client<Scripted> {
        Client::new(
            Scripted::new(statuses),
            fast_policy(attempts),
            Shutdown::new(),
        )
    }

    fn employee() -> Request {
        Request::Employee { uid: "100".into() }
    }

    #[test]
    fn server_errors_are_retried_and_counted() {
        let client = client(&[500, 503], 4);
        assert_eq!(client.fetch(&employee()), Ok(Some(b"{}".to_vec())));
        assert_eq!(
            client.requests(),
            Requests {
                total: 3,
                retried: 2
            }
        );
    }

    #[test]
    fn retries_run_out() {
        let client = client(&[503, 503, 429], 3);
        let error = client.fetch(&employee()).unwrap_err();
        assert!(
            matches!(
                &error,
                FetchError::GaveUp {
                    attempts: 3,
                    last: Failure::Status(429),
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(client.requests().total, 3);
    }

    #[test]
    fn not_found_is_an_answer() {
        assert_eq!(client(&[404], 4).fetch(&employee()), Ok(None));
    }

    #[test]
    fn rejected_credentials_disable_the_api_without_retry() {
        let client = client(&[401], 4);
        assert_eq!(
            client.fetch(&employee()),
            Err(FetchError::Rejected {
                api: Api::Hr,
                status: 401
            })
        );
        assert_eq!(
            client.fetch(&employee()),
            Err(FetchError::ApiDisabled { api: Api::Hr })
        );
        assert_eq!(client.transport.sent.load(Ordering::SeqCst), 1);
        let other = Request::Student { uid: "100".into() };
        assert!(client.fetch(&other).is_ok(), "other APIs are still asked");
    }

    #[test]
    fn concurrent_requests_wait_for_the_first_answer_on_credentials() {
        let rejecting = client(&[401, 401, 401, 401], 4);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| assert!(rejecting.fetch(&employee()).is_err()));
            }
        });
        assert_eq!(rejecting.transport.sent.load(Ordering::SeqCst), 1);

        let accepting = client(&[], 4);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| assert!(accepting.fetch(&employee()).is_ok()));
            }
        });
        assert_eq!(accepting.transport.sent.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn client_errors_are_not_retried() {
        let client = client(&[400], 4);
        assert!(matches!(
            client.fetch(&employee()),
            Err(FetchError::Status { status: 400, .. })
        ));
        assert_eq!(client.requests().total, 1);
    }

    #[test]
    fn rejection_message_names_variables() {
        let message = FetchError::Rejected {
            api: Api::Hr,
            status: 403,
        }
        .to_string();
        assert!(message.contains("UCB_HR_ID") && message.contains("UCB_HR_KEY"));
    }

    #[test]
    fn backoff_doubles_and_honours_retry_after_up_to_the_cap() {
        let retry = RetryPolicy {
            attempts: 4,
            first_wait: Duration::from_millis(100),
            max_wait: Duration::from_secs(2),
        };
        for attempt in 1..=3u32 {
            let base = Duration::from_millis(100 * (1 << (attempt - 1)));
            let wait = retry.backoff(attempt, None);
            assert!(wait >= base / 2 && wait <= base, "{attempt}: {wait:?}");
        }
        assert_eq!(
            retry.backoff(1, Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
        assert_eq!(
            retry.backoff(1, Some(Duration::from_secs(60))),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn paths_and_queries_match_the_spec() {
        let request = Request::EnrollmentPage {
            term_id: 2198,
            section_id: "23971".into(),
            page: 2,
        };
        assert_eq!(
            request.path(),
            "/sis/v3/enrollments/terms/2198/classes/sections/23971"
        );
        assert_eq!(
            request.query(),
            vec![("page-number", "2".into()), ("page-size", "100".into())]
        );
        let sections = Request::Sections {
            term_id: 2198,
            class_number: "03970".into(),
        };
        assert_eq!(sections.path(), "/sis/v1/classes/sections/03970");
        assert_eq!(
            sections.replay_path(),
            PathBuf::from("classes/2198/03970.json")
        );
    }

    #[test]
    fn identifiers_are_one_encoded_segment_and_dot_ids_are_refused() {
        let slash = Request::Employee {
            uid: "12/../../sis/v2/students/7?x#f".into(),
        };
        assert_eq!(
            slash.path(),
            "/hr/v3/employees/12%2F..%2F..%2Fsis%2Fv2%2Fstudents%2F7%3Fx%23f"
        );
        assert_eq!(
            slash.replay_path(),
            PathBuf::from("hr/12%2F..%2F..%2Fsis%2Fv2%2Fstudents%2F7%3Fx%23f.json")
        );
        assert_eq!(slash.refused_identifier(), None);
        for id in ["", ".", ".."] {
            let section = Request::EnrollmentPage {
                term_id: 2198,
                section_id: id.into(),
                page: 1,
            };
            assert_eq!(section.refused_identifier(), Some(id));
        }
    }
}
