//! The HTTP transport: sends a [`Request`] to the SIS/HR gateway with ureq and hands back
//! the raw status and body. All policy (retries, 401/403, counting) lives in the `Client`.
//!
//! Invariants:
//! - redirects are never followed: a 3xx comes back as a status (the `Client` fails on it),
//!   so `app_key` is only ever sent to the configured base URL;
//! - every request has a connect timeout and an overall timeout, body read included;
//! - a body is read up to [`MAX_BODY`] bytes; a bigger one is a non-retryable error;
//! - no header is ever logged or formatted into an error, and an error message that would
//!   somehow contain the key is scrubbed.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::Agent;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use super::credentials::Credentials;
use super::{Reply, Request, Transport, TransportError};

/// The largest body accepted. A roster page of 100 students is about 100 KB; this leaves a
/// wide margin while bounding memory if a proxy or the gateway misbehaves.
pub const MAX_BODY: u64 = 16 << 20;

/// The connect timeout when the overall timeout is longer: a gateway that does not
/// accept a connection within this time is better retried than waited for.
pub const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An API base URL that is safe to send credentials to: `http(s)://HOST[:PORT][/PREFIX]`,
/// without user info, query or fragment, kept without a trailing slash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl(String);

/// Why a base URL was refused. It never repeats a password the URL held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidBaseUrl {
    shown: String,
    reason: &'static str,
}

impl fmt::Display for InvalidBaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a usable API base URL: {}",
            self.shown, self.reason
        )
    }
}

impl std::error::Error for InvalidBaseUrl {}

impl BaseUrl {
    pub fn parse(text: &str) -> Result<BaseUrl, InvalidBaseUrl> {
        let base = text.trim().trim_end_matches('/');
        let refuse = |reason| InvalidBaseUrl {
            shown: match base.split_once('@') {
                Some((_, host)) if base.contains("://") => {
                    format!(
                        "{}://<user info removed>@{host}",
                        base.split("://").next().unwrap_or("")
                    )
                }
                _ => base.to_string(),
            },
            reason,
        };
        let uri: Uri = base
            .parse()
            .map_err(|_| refuse("expected http(s)://HOST[:PORT][/PREFIX]"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https"))
            || uri.host().is_none_or(str::is_empty)
        {
            return Err(refuse(
                "expected http(s)://HOST[:PORT][/PREFIX] or file://DIR",
            ));
        }
        if uri
            .authority()
            .is_some_and(|authority| authority.as_str().contains('@'))
        {
            return Err(refuse("it must not hold a user name or password"));
        }
        if uri.query().is_some() || base.contains('#') {
            return Err(refuse("it must not have a query or fragment"));
        }
        Ok(BaseUrl(base.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub struct HttpTransport {
    agent: Agent,
    base: BaseUrl,
    credentials: Credentials,
    body_limit: u64,
}

/// The agent every roster-sync request goes through (the SIS gateway's and the hub's):
/// statuses come back as answers, redirects are never followed (so a credential only
/// goes to the configured host), and a request may take at most `timeout` (not zero),
/// connecting at most [`MAX_CONNECT_TIMEOUT`] of it.
pub fn agent(timeout: Duration) -> Agent {
    // The default configuration reads HTTPS_PROXY/NO_PROXY, which a campus network may
    // need; tests clear those variables instead of switching proxies off here.
    let config = Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(timeout))
        .timeout_connect(Some(timeout.min(MAX_CONNECT_TIMEOUT)))
        .user_agent(concat!("roster-sync/", env!("CARGO_PKG_VERSION")))
        // ureq keeps three idle connections per host by default: with more requests in
        // flight, a finished request beyond the third closed its connection and a later one
        // opened a new one (a TLS handshake, against the gateway).
        .max_idle_connections_per_host(MAX_CONCURRENCY.into())
        .max_idle_connections(MAX_CONCURRENCY.into())
        .build();
    Agent::with_parts(
        config,
        DefaultConnector::default(),
        RememberingResolver::<DefaultResolver>::default(),
    )
}

/// The most requests a run may have in flight at once (`--concurrency`).
pub const MAX_CONCURRENCY: u16 = 64;

/// How long a host's addresses are reused before they are looked up again.
const RESOLVED_FOR: Duration = Duration::from_secs(60);

/// Looks a host up once a minute instead of once a request. ureq resolves before it looks
/// for a pooled connection, and with a timeout set its default resolver does so on a new
/// thread, so every request of a run cost a thread (and a `getaddrinfo` for a name): on
/// a two-core node that was about a tenth of the time a fetch waits for the gateway.
#[derive(Debug, Default)]
struct RememberingResolver<R = DefaultResolver> {
    names: R,
    resolved: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
}

impl<R: Resolver> Resolver for RememberingResolver<R> {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or_default(),
            uri.authority()
                .map(|authority| authority.as_str())
                .unwrap_or_default()
        );
        let fresh = |(at, _): &&(Instant, ResolvedSocketAddrs)| at.elapsed() < RESOLVED_FOR;
        if let Some((_, addresses)) = self.remembered().get(&host).filter(fresh) {
            return Ok(addresses.clone());
        }
        // Looked up without the lock held: a slow name server delays only this request.
        let addresses = self.names.resolve(uri, config, timeout)?;
        self.remembered()
            .insert(host, (Instant::now(), addresses.clone()));
        Ok(addresses)
    }
}

impl<R> RememberingResolver<R> {
    fn remembered(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, ResolvedSocketAddrs)>> {
        // A panic elsewhere cannot leave the map half-written: each entry is one insert.
        self.resolved
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl HttpTransport {
    /// A transport where every request may take at most `timeout` (which is not zero),
    /// body included.
    pub fn new(base: &BaseUrl, credentials: Credentials, timeout: Duration) -> Self {
        HttpTransport {
            agent: agent(timeout),
            base: base.clone(),
            credentials,
            body_limit: MAX_BODY,
        }
    }

    fn exchange(
        &self,
        request: &Request,
        url: &str,
        id: &str,
        key: &str,
    ) -> Result<Reply, ureq::Error> {
        let mut builder = self
            .agent
            .get(url)
            .header("Accept", "application/json")
            .header("app_id", id)
            .header("app_key", key);
        for (name, value) in request.query() {
            builder = builder.query(name, value);
        }
        let mut response = builder.call()?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .and_then(parse_retry_after);
        // Error bodies are read too: that keeps the connection reusable.
        let body = response
            .body_mut()
            .with_config()
            .limit(self.body_limit)
            .read_to_vec()?;
        Ok(Reply {
            status,
            body,
            retry_after,
            link_next: None,
            rate_limit_remaining: None,
        })
    }
}

impl Transport for HttpTransport {
    fn send(&self, request: &Request) -> Result<Reply, TransportError> {
        let (id, key) = self.credentials.get(request.api());
        if let Some(id) = request.refused_identifier() {
            return Err(TransportError {
                message: format!(
                    "refusing to send an identifier that is empty or a dot segment ({id:?})"
                ),
                retryable: false,
            });
        }
        let url = format!("{}{}", self.base.as_str(), request.path());
        let started = Instant::now();
        let result = self.exchange(request, &url, id, key);
        let elapsed = started.elapsed().as_millis();
        let target = describe_target(request);
        match result {
            Ok(reply) => {
                log::debug!("GET {target} -> {} in {elapsed} ms", reply.status);
                Ok(reply)
            }
            Err(error) => {
                let error = classify(&error, key);
                log::debug!("GET {target} -> {} in {elapsed} ms", error.message);
                Err(error)
            }
        }
    }
}

/// The path and query of a request, for debug logs; it holds no header and no credential.
fn describe_target(request: &Request) -> String {
    let query: Vec<String> = request
        .query()
        .into_iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    format!("{}?{}", request.path(), query.join("&"))
}

/// `Retry-After` as delta-seconds. The HTTP-date form is ignored (the backoff applies),
/// as the gateway is only known to send seconds.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Turns a ureq error into a transport error: failures of the network or the server's
/// connection may pass on a retry, the others (a body over the limit, a TLS or URL
/// problem) will not.
pub fn classify(error: &ureq::Error, key: &str) -> TransportError {
    use ureq::Error as E;
    let retryable = matches!(
        error,
        E::Timeout(_)
            | E::ConnectionFailed
            | E::HostNotFound
            | E::Io(_)
            | E::Protocol(_)
            | E::ConnectProxyFailed(_)
    );
    let message = match error {
        E::Timeout(which) => format!("timed out ({which})"),
        E::BodyExceedsLimit(limit) => format!("response body larger than {limit} bytes"),
        other => other.to_string(),
    };
    // ureq's messages hold no headers, but the key must not leak even if that changes.
    let message = if key.is_empty() {
        message
    } else {
        message.replace(key, "<redacted>")
    };
    TransportError { message, retryable }
}

/// A one-shot HTTP server for the transports' unit tests.
#[cfg(test)]
pub(crate) mod test_server {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// Serves `response` (raw HTTP) once on a loopback port and hands back the raw
    /// request text it received.
    pub(crate) fn serve_once(response: Vec<u8>) -> (String, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buffer = [0; 4096];
            while !request.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buffer).unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..n]);
            }
            sender
                .send(String::from_utf8_lossy(&request).into_owned())
                .unwrap();
            let _ = stream.write_all(&response);
        });
        (base, receiver)
    }
}

#[cfg(test)]
mod tests {
    use super::test_server::serve_once;
    use super::*;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Resolves every host to one address and counts the lookups.
    #[derive(Debug, Default)]
    struct CountingResolver(AtomicUsize);

    impl Resolver for CountingResolver {
        fn resolve(
            &self,
            _: &Uri,
            _: &Config,
            _: NextTimeout,
        ) -> Result<ResolvedSocketAddrs, ureq::Error> {
            self.0.fetch_add(1, Ordering::SeqCst);
            let mut addresses = self.empty();
            addresses.push("127.0.0.1:9".parse().unwrap());
            Ok(addresses)
        }
    }

    #[test]
    fn a_host_is_looked_up_once_however_many_requests_go_to_it() {
        let resolver = RememberingResolver::<CountingResolver>::default();
        let config = Agent::config_builder().build();
        let resolve = |url: &str| {
            let uri: Uri = url.parse().unwrap();
            resolver
                .resolve(&uri, &config, NextTimeout::default())
                .unwrap()
        };
        for page in 1..=3 {
            let addresses = resolve(&format!("https://gateway.example.edu/sis/v3?page={page}"));
            assert_eq!(&addresses[..], ["127.0.0.1:9".parse().unwrap()]);
        }
        assert_eq!(resolver.names.0.load(Ordering::SeqCst), 1);
        resolve("https://gateway.example.edu:8443/sis");
        resolve("http://gateway.example.edu/sis");
        assert_eq!(
            resolver.names.0.load(Ordering::SeqCst),
            3,
            "another port or scheme is another lookup"
        );
    }

    const KEY: &str = "unit-test-hr-key-5f1c";

    fn credentials() -> Credentials {
        Credentials::from_lookup(|name| match name {
            "UCB_HR_ID" => Some("unit-hr-id".to_string()),
            "UCB_HR_KEY" => Some(KEY.to_string()),
            name if name.ends_with("_FILE") => None,
            _ => Some("other-api-value".to_string()),
        })
        .unwrap()
    }

    fn transport(base: &str, timeout: Duration) -> HttpTransport {
        HttpTransport::new(&BaseUrl::parse(base).unwrap(), credentials(), timeout)
    }

    fn employee(uid: &str) -> Request {
        Request::Employee { uid: uid.into() }
    }

    #[test]
    fn sends_headers_path_and_query() {
        let (base, received) =
            serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_vec());
        let reply = transport(&format!("{base}/prefix/"), Duration::from_secs(5))
            .send(&employee("111111"))
            .unwrap();
        assert_eq!((reply.status, reply.body.as_slice()), (200, &b"{}"[..]));
        assert_eq!(reply.retry_after, None);
        let request = received.recv().unwrap().to_ascii_lowercase();
        assert!(
            request
                .starts_with("get /prefix/hr/v3/employees/111111?id-type=campus-uid http/1.1\r\n"),
            "{request}"
        );
        for header in [
            "accept: application/json\r\n",
            "app_id: unit-hr-id\r\n",
            &format!("app_key: {KEY}\r\n"),
            concat!(
                "user-agent: roster-sync/",
                env!("CARGO_PKG_VERSION"),
                "\r\n"
            ),
        ] {
            assert!(request.contains(&header.to_ascii_lowercase()), "{request}");
        }
    }

    #[test]
    fn identifiers_cannot_change_the_url_shape() {
        let (base, received) =
            serve_once(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec());
        transport(&base, Duration::from_secs(5))
            .send(&employee("1/../2?x=1#f/ü"))
            .unwrap();
        let request = received.recv().unwrap();
        assert!(
            request.starts_with(
                "GET /hr/v3/employees/1%2F..%2F2%3Fx%3D1%23f%2F%C3%BC?id-type=campus-uid "
            ),
            "{request}"
        );
        for bad in ["", ".", ".."] {
            let error = transport("http://127.0.0.1:9", Duration::from_secs(1))
                .send(&employee(bad))
                .unwrap_err();
            assert!(!error.retryable, "{error:?}");
        }
    }

    #[test]
    fn error_statuses_and_retry_after_come_back_as_replies() {
        let (base, _received) = serve_once(
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nslow"
                .to_vec(),
        );
        let reply = transport(&base, Duration::from_secs(5))
            .send(&employee("1"))
            .unwrap();
        assert_eq!(reply.status, 429);
        assert_eq!(reply.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(reply.body, b"slow");
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn redirects_are_not_followed() {
        let (base, _received) = serve_once(
            b"HTTP/1.1 302 Found\r\nLocation: http://example.invalid/\r\nContent-Length: 0\r\n\r\n"
                .to_vec(),
        );
        let reply = transport(&base, Duration::from_secs(5))
            .send(&employee("1"))
            .unwrap();
        assert_eq!(reply.status, 302);
    }

    #[test]
    fn a_body_over_the_limit_is_not_retryable() {
        let (base, _received) = serve_once(
            b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n"
                .iter()
                .chain(&[b'x'; 64])
                .copied()
                .collect(),
        );
        let mut transport = transport(&base, Duration::from_secs(5));
        transport.body_limit = 16;
        let error = transport.send(&employee("1")).unwrap_err();
        assert!(!error.retryable, "{error:?}");
        assert!(error.message.contains("larger than 16 bytes"), "{error:?}");
    }

    #[test]
    fn refused_connections_and_timeouts_are_retryable_and_name_no_key() {
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let error = transport(&base, Duration::from_secs(5))
            .send(&employee("1"))
            .unwrap_err();
        assert!(error.retryable, "{error:?}");
        assert!(!error.message.contains(KEY));

        // A server that accepts and never answers.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", silent.local_addr().unwrap());
        let started = Instant::now();
        let error = transport(&base, Duration::from_millis(300))
            .send(&employee("1"))
            .unwrap_err();
        assert!(
            error.retryable && error.message.contains("timed out"),
            "{error:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(silent);
    }

    #[test]
    fn scrubs_a_key_that_would_appear_in_a_message() {
        let error = classify(&ureq::Error::BadUri(format!("http://x/{KEY}")), KEY);
        assert!(
            !error.message.contains(KEY) && !error.retryable,
            "{error:?}"
        );
    }

    #[test]
    fn only_usable_base_urls_are_accepted_and_passwords_never_shown() {
        for base in [
            "gateway.api.berkeley.edu",
            "ftp://host",
            "http://",
            "https:///x",
            "http://host/?a=1",
            "http://host/#f",
            "file:///x",
        ] {
            assert!(BaseUrl::parse(base).is_err(), "{base}");
        }
        let error = BaseUrl::parse("https://user:hunter2@gateway.api.berkeley.edu").unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert_eq!(
            BaseUrl::parse("https://gateway.api.berkeley.edu/uat/")
                .unwrap()
                .as_str(),
            "https://gateway.api.berkeley.edu/uat"
        );
    }
}
