//! The Canvas side of the source seam: the bearer token, where a run asks Canvas
//! (`--canvas-api`, over HTTP or replayed from files), and the two transports that turn a
//! [`Request::CanvasEnrollments`] into a [`Reply`] with its `Link` and
//! `X-Rate-Limit-Remaining` headers. Status policy (retries, throttling, 401 for the whole
//! run) is the shared [`super::Client`]'s.
//!
//! Invariants:
//! - the token only goes to the configured origin: page 1 is built from the base, and a
//!   next-page URL is sent only when [`CanvasBase::same_origin`] accepts it (checked by the
//!   coordinator, and again here, so no caller can get around it); redirects are never
//!   followed (the shared [`agent`]);
//! - the token never appears in a message, a log line or `Debug` output.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ureq::Agent;
use ureq::http::Uri;

use super::canvas_api::{self, TOKEN_VAR, Types};
use super::credentials::{self, Reason, Unusable};
use super::http::{self, BaseUrl, MAX_BODY, agent, parse_retry_after};
use super::{Reply, Request, Transport, TransportError};

/// The Canvas API token, sent as `Authorization: Bearer ...`.
#[derive(Clone, PartialEq, Eq)]
pub struct CanvasToken(String);

impl fmt::Debug for CanvasToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CanvasToken(<redacted>)")
    }
}

/// `CANVAS_API_TOKEN` (or `_FILE`) has no usable value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingCanvasToken(Reason);

impl fmt::Display for MissingCanvasToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unusable = Unusable {
            var: TOKEN_VAR,
            reason: &self.0,
        };
        write!(f, "missing credentials for the Canvas API: {unusable}")
    }
}

impl std::error::Error for MissingCanvasToken {}

impl CanvasToken {
    pub fn from_env() -> Result<CanvasToken, MissingCanvasToken> {
        Self::from_lookup(|name| {
            std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
        })
    }

    pub(crate) fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<CanvasToken, MissingCanvasToken> {
        credentials::read_var(TOKEN_VAR, &lookup)
            .map(CanvasToken)
            .map_err(MissingCanvasToken)
    }

    fn secret(&self) -> &str {
        &self.0
    }
}

/// Where Canvas courses are asked: `--canvas-api https://HOST` or `file://DIR`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CanvasBase {
    Http(BaseUrl),
    Replay(PathBuf),
}

impl CanvasBase {
    /// Whether a next-page URL may be asked with the token: an absolute http(s) URL with
    /// the base's scheme, host and port (default ports made explicit), and no user info.
    /// Under replay, only the replay transport's own `file://` links.
    pub fn same_origin(&self, url: &str) -> bool {
        match self {
            CanvasBase::Replay(_) => url.starts_with(REPLAY_LINK_PREFIX),
            CanvasBase::Http(base) => match (origin(base.as_str()), origin(url)) {
                (Some(base), Some(next)) => base == next,
                _ => false,
            },
        }
    }
}

/// `(scheme, host, port)` of an absolute http(s) URL without user info.
fn origin(url: &str) -> Option<(String, String, u16)> {
    let uri: Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = uri.authority()?;
    if authority.as_str().contains('@') {
        return None;
    }
    let host = authority.host().to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    Some((scheme, host, authority.port_u16().unwrap_or(default_port)))
}

/// The enrollment types asked for, in front of the request's own query.
fn query(request: &Request, types: &Types) -> Vec<(&'static str, String)> {
    let mut query: Vec<(&'static str, String)> = types
        .requested()
        .into_iter()
        .map(|kind| ("type[]", kind.to_string()))
        .collect();
    query.extend(request.query());
    query
}

fn not_canvas(request: &Request) -> TransportError {
    TransportError {
        message: format!("{request}: not a Canvas request"),
        retryable: false,
    }
}

/// Canvas over HTTP(S) with the bearer token.
pub struct CanvasHttpTransport {
    agent: Agent,
    base: CanvasBase,
    token: CanvasToken,
    types: Types,
}

impl CanvasHttpTransport {
    pub fn new(base: &BaseUrl, token: CanvasToken, types: Types, timeout: Duration) -> Self {
        CanvasHttpTransport {
            agent: agent(timeout),
            base: CanvasBase::Http(base.clone()),
            token,
            types,
        }
    }

    fn exchange(&self, request: &Request, url: &str, first: bool) -> Result<Reply, ureq::Error> {
        let mut builder = self
            .agent
            .get(url)
            .header("Accept", "application/json")
            .header("Authorization", format!("Bearer {}", self.token.secret()));
        if first {
            for (name, value) in query(request, &self.types) {
                builder = builder.query(name, value);
            }
        }
        let mut response = builder.call()?;
        let status = response.status().as_u16();
        let headers = response.headers();
        let text = |name: &str| {
            headers
                .get_all(name)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let retry_after = text("retry-after")
            .first()
            .and_then(|value| parse_retry_after(value));
        let link_next = text("link")
            .iter()
            .find_map(|value| canvas_api::link_next(value));
        let rate_limit_remaining = text("x-rate-limit-remaining")
            .first()
            .and_then(|value| canvas_api::parse_rate_limit_remaining(value));
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()?;
        Ok(Reply {
            status,
            body,
            retry_after,
            link_next,
            rate_limit_remaining,
        })
    }
}

impl Transport for CanvasHttpTransport {
    fn send(&self, request: &Request) -> Result<Reply, TransportError> {
        let Request::CanvasEnrollments { next, .. } = request else {
            return Err(not_canvas(request));
        };
        let CanvasBase::Http(base) = &self.base else {
            unreachable!("an HTTP transport has an HTTP base")
        };
        let (url, first) = match next {
            None => (format!("{}{}", base.as_str(), request.path()), true),
            Some(next) if self.base.same_origin(next) => (next.clone(), false),
            Some(_) => {
                return Err(TransportError {
                    message: format!("{request}: next-page link on another origin"),
                    retryable: false,
                });
            }
        };
        let started = Instant::now();
        let result = self.exchange(request, &url, first);
        let elapsed = started.elapsed().as_millis();
        match result {
            Ok(reply) => {
                log::debug!("GET {request} -> {} in {elapsed} ms", reply.status);
                Ok(reply)
            }
            Err(error) => {
                let error = http::classify(&error, self.token.secret());
                log::debug!("GET {request} -> {} in {elapsed} ms", error.message);
                Err(error)
            }
        }
    }
}

/// The scheme of the next-page links the replay transport makes up.
const REPLAY_LINK_PREFIX: &str = "file://";

/// Replays Canvas from `DIR/courses/{id}/enrollments/page-{n}.json` (200; a missing page
/// 1 is 404). When `page-{n+1}.json` exists, the answer carries a `Link: rel="next"` to
/// it, as Canvas's would; a page never names its own next link, so a recorded file
/// cannot send the job anywhere else.
pub struct CanvasReplayTransport {
    dir: PathBuf,
}

impl CanvasReplayTransport {
    pub fn new(dir: PathBuf) -> Self {
        CanvasReplayTransport { dir }
    }
}

impl Transport for CanvasReplayTransport {
    fn send(&self, request: &Request) -> Result<Reply, TransportError> {
        let Request::CanvasEnrollments {
            course_id, page, ..
        } = request
        else {
            return Err(not_canvas(request));
        };
        let (status, body) = super::replay::read_recorded(&self.dir, request)?;
        let following = Request::CanvasEnrollments {
            course_id: course_id.clone(),
            page: page + 1,
            next: None,
        };
        let next_path = self.dir.join(following.replay_path());
        let link_next = (status == 200 && next_path.is_file())
            .then(|| format!("{REPLAY_LINK_PREFIX}{}", next_path.display()));
        log::debug!("replay {} -> {status}", request.replay_path().display());
        Ok(Reply {
            status,
            body,
            retry_after: None,
            link_next,
            rate_limit_remaining: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::http::test_server::serve_once;

    const TOKEN: &str = "unit-canvas-token-7f3e";

    fn token() -> CanvasToken {
        CanvasToken::from_lookup(|name| (name == TOKEN_VAR).then(|| format!(" {TOKEN}\n"))).unwrap()
    }

    fn first_page(course_id: &str) -> Request {
        Request::CanvasEnrollments {
            course_id: course_id.into(),
            page: 1,
            next: None,
        }
    }

    #[test]
    fn the_token_is_read_trimmed_and_never_shown() {
        assert_eq!(token().secret(), TOKEN);
        assert!(!format!("{:?}", token()).contains(TOKEN));
        let missing = CanvasToken::from_lookup(|_| None).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "missing credentials for the Canvas API: CANVAS_API_TOKEN \
             (set it or CANVAS_API_TOKEN_FILE)"
        );
        let bad = CanvasToken::from_lookup(|name| (name == TOKEN_VAR).then(|| "a\nb".into()))
            .unwrap_err();
        assert!(!bad.to_string().contains("a\nb"));
    }

    #[test]
    fn the_first_page_carries_the_filters_and_the_bearer_token() {
        let (base, received) = serve_once(
            b"HTTP/1.1 200 OK\r\nLink: <http://127.0.0.1:1/x?page=2>; rel=\"next\", \
              <http://127.0.0.1:1/x?page=1>; rel=\"first\"\r\nX-Rate-Limit-Remaining: 650.5\r\n\
              Content-Length: 2\r\n\r\n[]"
                .to_vec(),
        );
        let transport = CanvasHttpTransport::new(
            &BaseUrl::parse(&format!("{base}/")).unwrap(),
            token(),
            Types::default(),
            Duration::from_secs(5),
        );
        let reply = transport.send(&first_page("1234")).unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.link_next.as_deref(),
            Some("http://127.0.0.1:1/x?page=2")
        );
        assert_eq!(reply.rate_limit_remaining, Some(650.5));
        let request = received.recv().unwrap();
        let line = request.lines().next().unwrap();
        assert_eq!(
            line,
            "GET /api/v1/courses/1234/enrollments?type%5B%5D=StudentEnrollment\
             &type%5B%5D=TeacherEnrollment&type%5B%5D=TaEnrollment&state%5B%5D=active\
             &include%5B%5D=email&per_page=100 HTTP/1.1"
        );
        let lower = request.to_ascii_lowercase();
        assert!(lower.contains(&format!("authorization: bearer {TOKEN}\r\n")));
        assert!(lower.contains("accept: application/json\r\n"));
        assert!(!lower.contains("app_key"));
    }

    #[test]
    fn a_next_page_is_sent_as_given_and_only_to_the_same_origin() {
        let (base, received) =
            serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]".to_vec());
        let transport = CanvasHttpTransport::new(
            &BaseUrl::parse(&base).unwrap(),
            token(),
            Types::default(),
            Duration::from_secs(5),
        );
        let next =
            format!("{base}/api/v1/courses/1/enrollments?page=bookmark:WzEsMl0&per_page=100");
        let reply = transport
            .send(&Request::CanvasEnrollments {
                course_id: "1".into(),
                page: 2,
                next: Some(next.clone()),
            })
            .unwrap();
        assert_eq!(reply.link_next, None);
        let request = received.recv().unwrap();
        assert!(
            request.starts_with(
                "GET /api/v1/courses/1/enrollments?page=bookmark:WzEsMl0&per_page=100 HTTP/1.1"
            ),
            "{request}"
        );
        let error = transport
            .send(&Request::CanvasEnrollments {
                course_id: "1".into(),
                page: 2,
                next: Some("http://elsewhere.invalid/api/v1/courses/1/enrollments".into()),
            })
            .unwrap_err();
        assert!(
            !error.retryable && !error.message.contains(TOKEN),
            "{error:?}"
        );
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let base = CanvasBase::Http(BaseUrl::parse("https://Canvas.Example.edu/prefix").unwrap());
        for same in [
            "https://canvas.example.edu/api/v1/courses/1/enrollments?page=2",
            "https://canvas.example.edu:443/api/v1/x",
            "HTTPS://CANVAS.EXAMPLE.EDU/y",
        ] {
            assert!(base.same_origin(same), "{same}");
        }
        for other in [
            "http://canvas.example.edu/api/v1/x",
            "https://canvas.example.edu:8443/api/v1/x",
            "https://canvas.example.edu.evil.example/api/v1/x",
            "https://evil.example/api/v1/x",
            "https://user@canvas.example.edu/api/v1/x",
            "/api/v1/courses/1/enrollments?page=2",
            "file:///etc/passwd",
            "",
        ] {
            assert!(!base.same_origin(other), "{other}");
        }
    }

    #[test]
    fn replay_answers_pages_with_next_links_while_pages_follow() {
        let dir = tempfile::tempdir().unwrap();
        let pages = dir.path().join("courses/77/enrollments");
        std::fs::create_dir_all(&pages).unwrap();
        std::fs::write(pages.join("page-1.json"), b"[]").unwrap();
        std::fs::write(pages.join("page-2.json"), b"[]").unwrap();
        let replay = CanvasReplayTransport::new(dir.path().to_path_buf());
        let base = CanvasBase::Replay(dir.path().to_path_buf());
        let one = replay.send(&first_page("77")).unwrap();
        let next = one.link_next.expect("a next link to page 2");
        assert!(base.same_origin(&next));
        let two = replay
            .send(&Request::CanvasEnrollments {
                course_id: "77".into(),
                page: 2,
                next: Some(next),
            })
            .unwrap();
        assert_eq!((two.status, two.link_next), (200, None));
        assert_eq!(replay.send(&first_page("78")).unwrap().status, 404);
    }
}
