//! The I/O half of the groups sync: JupyterHub REST calls over ureq, with the SIS
//! client's request policy (SPEC §3): retries with backoff for 429/5xx/timeouts/connection
//! errors, `Retry-After` honoured, 401/403 final, every attempt counted.
//!
//! Invariants:
//! - redirects are never followed and URLs are built only from the configured API URL
//!   and percent-encoded path segments, so the token goes to that host only (the hub's
//!   `_pagination.next.url` is never used, only its offset);
//! - every request has connect and overall timeouts and a body size cap;
//! - the token is never logged or formatted into an error (ureq's messages are scrubbed);
//!   errors and logs name the operation and the group, never a user;
//! - no request starts once a shutdown is requested.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::time::{Duration, Instant};

use serde::Deserialize;
use ureq::Agent;

use super::plan::HubState;
use super::{HubConfig, REQUIRED_SCOPES, TOKEN_VAR};
use crate::shutdown::Shutdown;
use crate::source::http;
use crate::source::{RetryPolicy, TransportError};

/// The largest body accepted: a page of 200 groups with their members stays far below.
pub const MAX_BODY: u64 = 32 << 20;

/// The page size asked for; the hub caps it at its `api_page_max_limit` (200 by default).
pub const PAGE_LIMIT: u64 = 200;

/// Pages read per listing at most (200 000 users at the default page size).
pub const MAX_PAGES: u64 = 1000;

const PAGINATION: &str = "application/jupyterhub-pagination+json";

/// Why a hub operation failed. Messages hold no token, address or username.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubError {
    /// 401/403: the token is wrong or lacks scopes. Stops all hub work.
    Rejected { operation: String, status: u16 },
    /// A listing lacked the data the scopes should give (group members).
    MissingScope {
        operation: String,
        scope: &'static str,
    },
    /// Retries ran out (429, 5xx, timeouts, connection errors). Stops all hub work.
    GaveUp {
        operation: String,
        attempts: u32,
        last: String,
    },
    /// A non-retryable transport failure or a malformed answer. Stops all hub work.
    Broken { operation: String, reason: String },
    /// An answer that fails this one operation only (a 400 or 404 on a group, say).
    Refused { operation: String, status: u16 },
    /// A shutdown was requested before the work was done.
    Interrupted,
}

impl HubError {
    /// Whether the remaining hub work is abandoned after this error.
    pub fn stops_all(&self) -> bool {
        !matches!(self, HubError::Refused { .. })
    }
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scopes = REQUIRED_SCOPES.join(", ");
        match self {
            HubError::Rejected { operation, status } => write!(
                f,
                "the JupyterHub API rejected the token (HTTP {status}) while {operation}: check \
                 {TOKEN_VAR} / {TOKEN_VAR}_FILE; the token needs the scopes {scopes}"
            ),
            HubError::MissingScope { operation, scope } => write!(
                f,
                "the JupyterHub API withheld data while {operation}: the token lacks {scope} \
                 (check {TOKEN_VAR} / {TOKEN_VAR}_FILE; it needs the scopes {scopes})"
            ),
            HubError::GaveUp {
                operation,
                attempts,
                last,
            } => write!(
                f,
                "{operation}: gave up after {attempts} attempts, last: {last}"
            ),
            HubError::Broken { operation, reason } => write!(f, "{operation}: {reason}"),
            HubError::Refused { operation, status } => {
                write!(f, "{operation}: the hub answered HTTP {status}")
            }
            HubError::Interrupted => write!(
                f,
                "interrupted by a termination signal before the hub groups were updated"
            ),
        }
    }
}

impl std::error::Error for HubError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Delete,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

struct Reply {
    status: u16,
    body: Vec<u8>,
}

/// A hub API session: one agent, the request count.
pub struct HubClient<'a> {
    agent: Agent,
    api: &'a str,
    authorization: String,
    token: &'a str,
    retry: &'a RetryPolicy,
    shutdown: &'a Shutdown,
    requests: u64,
    body_limit: u64,
}

impl<'a> HubClient<'a> {
    /// A session with the hub of `config`, whose timeout is not zero.
    pub fn new(config: &'a HubConfig, shutdown: &'a Shutdown) -> Self {
        HubClient {
            agent: http::agent(config.timeout),
            api: config.api.as_str(),
            authorization: format!("token {}", config.token.secret()),
            token: config.token.secret(),
            retry: &config.retry,
            shutdown,
            requests: 0,
            body_limit: MAX_BODY,
        }
    }

    /// HTTP attempts so far, retries included.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Every user name and every group with its members.
    pub fn read_state(&mut self) -> Result<HubState, HubError> {
        let mut users = BTreeSet::new();
        self.list("listing hub users", "users", |item| {
            let user: UserModel = serde_json::from_value(item).map_err(|_| "a user")?;
            users.insert(user.name);
            Ok(())
        })?;
        let mut groups = BTreeMap::new();
        let mut hidden = false;
        self.list("listing hub groups", "groups", |item| {
            let group: GroupModel = serde_json::from_value(item).map_err(|_| "a group")?;
            match group.users {
                Some(members) => {
                    // A member is a user, also when the user listing missed them (its
                    // pages shift when users are added or removed while it is read).
                    users.extend(members.iter().cloned());
                    groups.insert(group.name, members.into_iter().collect());
                }
                None => hidden = true,
            }
            Ok(())
        })?;
        if hidden {
            return Err(HubError::MissingScope {
                operation: "listing hub groups".to_string(),
                scope: "read:groups",
            });
        }
        Ok(HubState { users, groups })
    }

    /// The members of one group (none when it does not exist).
    pub fn group_members(&mut self, name: &str) -> Result<BTreeSet<String>, HubError> {
        Ok(self.group(name)?.unwrap_or_default())
    }

    /// One group's members, `None` when it does not exist.
    pub fn group(&mut self, name: &str) -> Result<Option<BTreeSet<String>>, HubError> {
        let operation = format!("reading hub group {name}");
        let reply = self.call(&operation, Method::Get, &["groups", name], &[], None)?;
        match reply.status {
            200 => {
                let group: GroupModel =
                    serde_json::from_slice(&reply.body).map_err(|error| HubError::Broken {
                        operation: operation.clone(),
                        // serde would quote the value, which may be a username
                        reason: format!(
                            "malformed answer at line {} column {}",
                            error.line(),
                            error.column()
                        ),
                    })?;
                group
                    .users
                    .map(|users| Some(users.into_iter().collect()))
                    .ok_or(HubError::MissingScope {
                        operation,
                        scope: "read:groups",
                    })
            }
            404 => Ok(None),
            status => Err(HubError::Refused { operation, status }),
        }
    }

    /// Creates a group with its first members; `false` when it exists already (409).
    pub fn create_group(&mut self, name: &str, members: &[String]) -> Result<bool, HubError> {
        let operation = format!("creating hub group {name}");
        let body = serde_json::json!({ "users": members });
        let reply = self.call(
            &operation,
            Method::Post,
            &["groups", name],
            &[],
            Some(&body),
        )?;
        match reply.status {
            200 | 201 => Ok(true),
            409 => {
                log::debug!("hub group {name} exists already; adding its members instead");
                Ok(false)
            }
            status => Err(HubError::Refused { operation, status }),
        }
    }

    pub fn add_members(&mut self, name: &str, members: &[String]) -> Result<(), HubError> {
        let operation = format!("adding {} members to hub group {name}", members.len());
        self.change_members(operation, Method::Post, name, members)
    }

    pub fn remove_members(&mut self, name: &str, members: &[String]) -> Result<(), HubError> {
        let operation = format!("removing {} members from hub group {name}", members.len());
        self.change_members(operation, Method::Delete, name, members)
    }

    fn change_members(
        &mut self,
        operation: String,
        method: Method,
        name: &str,
        members: &[String],
    ) -> Result<(), HubError> {
        let body = serde_json::json!({ "users": members });
        let reply = self.call(
            &operation,
            method,
            &["groups", name, "users"],
            &[],
            Some(&body),
        )?;
        match reply.status {
            200..=299 => Ok(()),
            status => Err(HubError::Refused { operation, status }),
        }
    }

    /// Deletes a group; `false` when it was gone already (404).
    pub fn delete_group(&mut self, name: &str) -> Result<bool, HubError> {
        let operation = format!("deleting hub group {name}");
        let reply = self.call(&operation, Method::Delete, &["groups", name], &[], None)?;
        match reply.status {
            200..=299 => Ok(true),
            404 => Ok(false),
            status => Err(HubError::Refused { operation, status }),
        }
    }

    /// Reads every page of a listing (`users` or `groups`) by offset, handing each item
    /// to `each`. Accepts the paginated form and, from hubs before 2.0, a plain array.
    fn list(
        &mut self,
        operation: &str,
        collection: &str,
        // The error names what kind of item had the wrong shape; serde's own message would
        // quote the value, which may be a username.
        mut each: impl FnMut(serde_json::Value) -> Result<(), &'static str>,
    ) -> Result<(), HubError> {
        let broken = |reason: String| HubError::Broken {
            operation: operation.to_string(),
            reason,
        };
        let mut offset = 0u64;
        for _ in 0..MAX_PAGES {
            let query = [
                ("offset", offset.to_string()),
                ("limit", PAGE_LIMIT.to_string()),
            ];
            let reply = self.call(operation, Method::Get, &[collection], &query, None)?;
            if reply.status != 200 {
                return Err(broken(format!("unexpected HTTP status {}", reply.status)));
            }
            let page: Page = serde_json::from_slice(&reply.body).map_err(|error| {
                broken(format!(
                    "malformed response at line {} column {}",
                    error.line(),
                    error.column()
                ))
            })?;
            let (items, next) = match page {
                Page::Plain(items) => (items, None),
                Page::Paginated { items, pagination } => (items, pagination.next),
            };
            for item in items {
                each(item).map_err(|what| {
                    broken(format!("malformed response: {what} of an unexpected shape"))
                })?;
            }
            match next {
                None => return Ok(()),
                Some(next) if next.offset > offset => offset = next.offset,
                Some(_) => return Err(broken("the next page does not move forward".into())),
            }
        }
        Err(broken(format!("more than {MAX_PAGES} pages")))
    }

    /// Sends one request with retries; any HTTP answer but 401/403/429/5xx comes back.
    fn call(
        &mut self,
        operation: &str,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<Reply, HubError> {
        let path = encode_path(segments);
        let attempts = self.retry.attempts.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            if self.shutdown.requested() {
                return Err(HubError::Interrupted);
            }
            self.requests += 1;
            let started = Instant::now();
            let result = self.exchange(method, &path, query, body);
            let elapsed = started.elapsed().as_millis();
            let mut server_wait = None;
            match result {
                Ok((reply, retry_after)) => {
                    log::debug!(
                        "{} {path} -> {} in {elapsed} ms",
                        method.name(),
                        reply.status
                    );
                    match reply.status {
                        401 | 403 => {
                            return Err(HubError::Rejected {
                                operation: operation.to_string(),
                                status: reply.status,
                            });
                        }
                        429 | 500..=599 => {
                            last = format!("HTTP {}", reply.status);
                            server_wait = retry_after;
                        }
                        _ => return Ok(reply),
                    }
                }
                Err(error) => {
                    log::debug!(
                        "{} {path} -> {} in {elapsed} ms",
                        method.name(),
                        error.message
                    );
                    if !error.retryable {
                        return Err(HubError::Broken {
                            operation: operation.to_string(),
                            reason: error.message,
                        });
                    }
                    last = error.message;
                }
            }
            if attempt < attempts {
                let wait = self.retry.backoff(attempt, server_wait);
                log::debug!("{operation}: {last}; retrying in {} ms", wait.as_millis());
                if !self.shutdown.sleep(wait) {
                    return Err(HubError::Interrupted);
                }
            }
        }
        Err(HubError::GaveUp {
            operation: operation.to_string(),
            attempts,
            last,
        })
    }

    fn exchange(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<(Reply, Option<Duration>), TransportError> {
        let url = format!("{}{path}", self.api);
        let result = (|| -> Result<_, ureq::Error> {
            let mut response = match method {
                Method::Get => {
                    let mut request = self
                        .agent
                        .get(&url)
                        .header("Accept", PAGINATION)
                        .header("Authorization", &self.authorization);
                    for (name, value) in query {
                        request = request.query(*name, value);
                    }
                    request.call()?
                }
                Method::Post | Method::Delete => {
                    let request = match method {
                        Method::Post => self.agent.post(&url),
                        _ => self.agent.delete(&url).force_send_body(),
                    }
                    .header("Accept", "application/json")
                    .header("Authorization", &self.authorization);
                    match body {
                        Some(body) => request.send_json(body)?,
                        None => request.send_empty()?,
                    }
                }
            };
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|value| value.to_str().ok())
                .and_then(http::parse_retry_after);
            // Error bodies are read too (and never quoted: a 400 names the user).
            let body = response
                .body_mut()
                .with_config()
                .limit(self.body_limit)
                .read_to_vec()?;
            Ok((Reply { status, body }, retry_after))
        })();
        result.map_err(|error| http::classify(&error, self.token))
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Page {
    Paginated {
        items: Vec<serde_json::Value>,
        #[serde(rename = "_pagination")]
        pagination: Pagination,
    },
    Plain(Vec<serde_json::Value>),
}

#[derive(Deserialize)]
struct Pagination {
    next: Option<NextPage>,
}

#[derive(Deserialize)]
struct NextPage {
    offset: u64,
}

#[derive(Deserialize)]
struct UserModel {
    name: String,
}

#[derive(Deserialize)]
struct GroupModel {
    name: String,
    /// Absent when the token lacks `read:groups`.
    users: Option<Vec<String>>,
}

/// `/seg/seg/...` with every byte of a segment that is not unreserved percent-encoded,
/// so a group name (`course::k::students`, or anything a template makes) stays one
/// path segment and can add no query or fragment.
fn encode_path(segments: &[&str]) -> String {
    let mut path = String::new();
    for segment in segments {
        path.push('/');
        for byte in segment.bytes() {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                path.push(char::from(byte));
            } else {
                let _ = write!(path, "%{byte:02X}");
            }
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_stay_one_segment() {
        assert_eq!(
            encode_path(&["groups", "course::2019-fall-1::students", "users"]),
            "/groups/course%3A%3A2019-fall-1%3A%3Astudents/users"
        );
        assert_eq!(
            encode_path(&["groups", "a/b?c#d %"]),
            "/groups/a%2Fb%3Fc%23d%20%25"
        );
        assert_eq!(encode_path(&["groups", "ü"]), "/groups/%C3%BC");
    }

    #[test]
    fn both_listing_shapes_parse() {
        let paginated: Page = serde_json::from_str(
            r#"{"items": [{"name": "a"}], "_pagination": {"offset": 0, "limit": 1, "total": 2,
                "next": {"offset": 1, "limit": 1, "url": "http://elsewhere/x"}}}"#,
        )
        .unwrap();
        assert!(matches!(paginated, Page::Paginated { ref pagination, .. }
            if pagination.next.as_ref().map(|n| n.offset) == Some(1)));
        let plain: Page = serde_json::from_str(r#"[{"name": "a"}]"#).unwrap();
        assert!(matches!(plain, Page::Plain(ref items) if items.len() == 1));
    }

    #[test]
    fn messages_name_the_variables_and_scopes_and_scrub_the_token() {
        let message = HubError::Rejected {
            operation: "listing hub users".into(),
            status: 403,
        }
        .to_string();
        for needle in [
            "JUPYTERHUB_API_TOKEN",
            "JUPYTERHUB_API_TOKEN_FILE",
            "HTTP 403",
        ]
        .into_iter()
        .chain(REQUIRED_SCOPES)
        {
            assert!(message.contains(needle), "{needle}: {message}");
        }
        let error = http::classify(
            &ureq::Error::BadUri("http://x/secret-token".into()),
            "secret-token",
        );
        assert!(!error.message.contains("secret-token") && !error.retryable);
    }

    #[test]
    fn no_request_after_a_shutdown() {
        let config = HubConfig::new(
            http::BaseUrl::parse("http://127.0.0.1:9/hub/api").unwrap(),
            super::super::HubToken::new("t").unwrap(),
        );
        let shutdown = Shutdown::new();
        shutdown.request();
        let mut client = HubClient::new(&config, &shutdown);
        assert_eq!(client.read_state(), Err(HubError::Interrupted));
        assert_eq!(client.requests(), 0);
    }
}
