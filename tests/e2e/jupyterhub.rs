//! Test support for the JupyterHub tests: one real JupyterHub per test process (started
//! through `tests/jupyterhub/hub_server.py` with the venv of `.ci/hub-venv.sh`), admin
//! helpers to set it up and inspect it out of band, and a recording, fault-injecting HTTP
//! forwarder to put between roster-sync and the hub.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use roster_sync::hub::{CourseRosters, GroupTemplate, HubConfig, HubToken};
use roster_sync::roster::{List, Roster};
use roster_sync::source::RetryPolicy;
use roster_sync::source::http::BaseUrl;
use serde_json::{Value, json};

/// The hub's page size in the tests: small, so every listing spans several pages.
pub const PAGE_LIMIT: usize = 5;

const HELP: &str = "run `bash .ci/hub-venv.sh` (it needs python3 with venv and network \
                    access to PyPI once) and make sure `target/hub-venv/bin/python -m \
                    jupyterhub --version` works";

pub struct Hub {
    pub api: String,
    pub admin_token: String,
    pub sync_token: String,
    pub read_only_token: String,
    pub names_only_token: String,
    pub sync_scopes: Vec<String>,
    /// Where the spawner writes what each user's pod would get.
    manifests: std::path::PathBuf,
    /// Held open for the life of the test process: the launcher stops the hub when it
    /// closes, however the process ends.
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

/// The test process's hub, started on first use. Panics (fails the test) with what to
/// run when it cannot be started; never skips.
pub fn hub() -> &'static Hub {
    static HUB: OnceLock<Result<Hub, String>> = OnceLock::new();
    match HUB.get_or_init(start_hub) {
        Ok(hub) => hub,
        Err(reason) => panic!("cannot run a JupyterHub for these tests: {reason}; {HELP}"),
    }
}

fn start_hub() -> Result<Hub, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = Command::new("bash")
        .arg(root.join(".ci/hub-venv.sh"))
        .current_dir(root)
        .output()
        .map_err(|e| format!("cannot run .ci/hub-venv.sh: {e}"))?;
    if !venv.status.success() {
        return Err(format!(
            ".ci/hub-venv.sh failed ({}): {}",
            venv.status,
            String::from_utf8_lossy(&venv.stderr)
        ));
    }
    // The hub's own log goes to a file, so a green run stays quiet; a failure to start
    // quotes its end.
    let log_path =
        std::env::temp_dir().join(format!("roster-sync-e2e-hub-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let python = String::from_utf8_lossy(&venv.stdout).trim().to_string();
    let mut child = Command::new(&python)
        .arg(root.join("tests/jupyterhub/hub_server.py"))
        .args(["--page-limit", &PAGE_LIMIT.to_string()])
        .arg("--values")
        .arg(root.join("fixtures/values.yaml"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {python}: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let log_tail = || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    let line = receiver
        .recv_timeout(Duration::from_secs(150))
        .map_err(|_| {
            format!(
                "the hub did not report ready within 150 s; its log ends:\n{}",
                log_tail()
            )
        })?;
    let info: Value = serde_json::from_str(&line).map_err(|_| {
        let status = child.try_wait().ok().flatten();
        format!(
            "hub_server.py did not print its JSON line (exit status {status:?}); its log ends:\n{}",
            log_tail()
        )
    })?;
    let field = |name: &str| info[name].as_str().unwrap_or_default().to_string();
    let stdin = child.stdin.take().expect("piped stdin");
    Ok(Hub {
        api: field("api"),
        admin_token: field("admin_token"),
        sync_token: field("sync_token"),
        read_only_token: field("read_only_token"),
        names_only_token: field("names_only_token"),
        sync_scopes: info["sync_scopes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
        manifests: field("manifests").into(),
        _stdin: Mutex::new(stdin),
        _child: Mutex::new(child),
    })
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// Percent-encodes a path segment.
pub fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Hub {
    fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.api);
        let auth = format!("token {}", self.admin_token);
        let agent = agent();
        let result = match (method, body) {
            ("GET", _) => agent.get(&url).header("Authorization", &auth).call(),
            ("POST", Some(body)) => agent
                .post(&url)
                .header("Authorization", &auth)
                .send_json(body),
            ("POST", None) => agent.post(&url).header("Authorization", &auth).send_empty(),
            ("DELETE", Some(body)) => agent
                .delete(&url)
                .force_send_body()
                .header("Authorization", &auth)
                .send_json(body),
            ("DELETE", None) => agent.delete(&url).header("Authorization", &auth).call(),
            _ => unreachable!(),
        };
        let mut response = result.unwrap_or_else(|e| panic!("admin {method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn admin_ok(&self, method: &str, path: &str, body: Option<Value>, ok: &[u16]) -> Value {
        let (status, value) = self.admin(method, path, body);
        assert!(
            ok.contains(&status),
            "admin {method} {path}: HTTP {status} {value}"
        );
        value
    }

    /// Starts `user`'s server the way a click on "Start" does (no login), and returns what
    /// its pod would get (`groups`, `mem_limit`, `mem_guarantee` in bytes, `mounts`,
    /// `volumes`), after stopping it again.
    pub fn spawn(&self, user: &str) -> Value {
        let record = self.manifests.join(format!("{user}.json"));
        let _ = std::fs::remove_file(&record);
        let server = format!("/users/{}/server", encode(user));
        self.admin_ok("POST", &server, None, &[201, 202]);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let text = loop {
            if let Ok(text) = std::fs::read_to_string(&record) {
                break text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{user}'s spawn wrote no manifest"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        self.admin_ok("DELETE", &server, None, &[202, 204]);
        while self.admin_ok("GET", &format!("/users/{}", encode(user)), None, &[200])["server"]
            != Value::Null
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{user}'s server did not stop"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        serde_json::from_str(&text).expect("a JSON manifest")
    }

    /// Creates users (existing ones are fine).
    pub fn create_users(&self, names: &[&str]) {
        self.admin_ok(
            "POST",
            "/users",
            Some(json!({ "usernames": names })),
            &[201, 409],
        );
    }

    pub fn delete_user(&self, name: &str) {
        self.admin_ok(
            "DELETE",
            &format!("/users/{}", encode(name)),
            None,
            &[204, 404],
        );
    }

    /// A group's members, `None` when it does not exist.
    pub fn members(&self, group: &str) -> Option<BTreeSet<String>> {
        let (status, value) = self.admin("GET", &format!("/groups/{}", encode(group)), None);
        match status {
            404 => None,
            200 => Some(
                value["users"]
                    .as_array()
                    .expect("users")
                    .iter()
                    .map(|u| u.as_str().unwrap().to_string())
                    .collect(),
            ),
            other => panic!("admin GET group {group}: HTTP {other}"),
        }
    }

    pub fn create_group(&self, group: &str, members: &[&str]) {
        self.admin_ok(
            "POST",
            &format!("/groups/{}", encode(group)),
            Some(json!({ "users": members })),
            &[201],
        );
    }

    pub fn delete_group(&self, group: &str) {
        self.admin_ok(
            "DELETE",
            &format!("/groups/{}", encode(group)),
            None,
            &[204, 404],
        );
    }

    pub fn add_members(&self, group: &str, members: &[&str]) {
        self.admin_ok(
            "POST",
            &format!("/groups/{}/users", encode(group)),
            Some(json!({ "users": members })),
            &[200],
        );
    }

    pub fn remove_members(&self, group: &str, members: &[&str]) {
        self.admin_ok(
            "DELETE",
            &format!("/groups/{}/users", encode(group)),
            Some(json!({ "users": members })),
            &[200],
        );
    }

    /// The roster-sync configuration for `api` (the hub or a forwarder) and `token`, with
    /// quick retries.
    pub fn config(&self, api: &str, token: &str) -> HubConfig {
        let api = BaseUrl::parse(api).unwrap();
        let mut config = HubConfig::new(api, HubToken::new(token).unwrap());
        config.retry = RetryPolicy {
            attempts: 4,
            first_wait: Duration::from_millis(20),
            max_wait: Duration::from_millis(200),
        };
        config.timeout = Duration::from_secs(20);
        config
    }

    pub fn sync_config(&self) -> HubConfig {
        self.config(&self.api, &self.sync_token)
    }
}

pub fn with_template(mut config: HubConfig, template: &str, domain: &str) -> HubConfig {
    config.group_template = GroupTemplate::parse(template).unwrap();
    config.username_domain = domain.to_string();
    config
}

/// `[(key, students, instructors)]` as roster maps.
pub fn rosters(courses: &[(&str, &[&str], &[&str])]) -> CourseRosters {
    courses
        .iter()
        .map(|(key, students, instructors)| {
            (
                key.to_string(),
                BTreeMap::from([
                    (List::Students, Roster::from_raw(students.iter().copied())),
                    (
                        List::Instructors,
                        Roster::from_raw(instructors.iter().copied()),
                    ),
                ]),
            )
        })
        .collect()
}

pub fn set(names: &[&str]) -> Option<BTreeSet<String>> {
    Some(names.iter().map(|n| n.to_string()).collect())
}

/// What the forwarder does with one request.
pub enum Action {
    Forward,
    /// Forward, and take the group of this name out of the hub's answer when it is a
    /// listing page (a group the listing skipped, as it does when the hub's groups change
    /// while it is read).
    ForwardHiding(String),
    /// Answer this status (with `Retry-After: 0` when asked) without asking the hub.
    Status(u16, bool),
    /// Answer `307` to this location.
    Redirect(String),
}

/// One request the forwarder saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub url: String,
    pub status: u16,
    pub authorized: bool,
}

type Rule = dyn Fn(usize, &str, &str) -> Action + Send + Sync;

/// An HTTP forwarder on 127.0.0.1 in front of the hub: records every request and
/// applies `rule(index, method, url)` to it.
pub struct Forwarder {
    server: Arc<tiny_http::Server>,
    seen: Arc<Mutex<Vec<Seen>>>,
    pub api: String,
}

impl Forwarder {
    pub fn new(
        target_api: &str,
        rule: impl Fn(usize, &str, &str) -> Action + Send + Sync + 'static,
    ) -> Forwarder {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let target_origin = target_api.trim_end_matches("/hub/api").to_string();
        let rule: Arc<Rule> = Arc::new(rule);
        {
            let server = Arc::clone(&server);
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    serve(request, &target_origin, &*rule, &seen);
                }
            });
        }
        Forwarder {
            server,
            seen,
            api: format!("http://127.0.0.1:{port}/hub/api"),
        }
    }

    /// Forwards everything.
    pub fn recording(target_api: &str) -> Forwarder {
        Forwarder::new(target_api, |_, _, _| Action::Forward)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }

    pub fn count(&self, method: &str) -> usize {
        self.seen().iter().filter(|s| s.method == method).count()
    }

    pub fn writes(&self) -> usize {
        self.seen().iter().filter(|s| s.method != "GET").count()
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

/// A listing page (`{"items": [...], ...}`) without the item named `name`; any other
/// body unchanged.
fn without_item(body: &[u8], name: &str) -> Vec<u8> {
    let Ok(mut page) = serde_json::from_slice::<Value>(body) else {
        return body.to_vec();
    };
    let Some(items) = page.get_mut("items").and_then(Value::as_array_mut) else {
        return body.to_vec();
    };
    items.retain(|item| item["name"] != name);
    page.to_string().into_bytes()
}

fn serve(mut request: tiny_http::Request, origin: &str, rule: &Rule, seen: &Mutex<Vec<Seen>>) {
    let method = request.method().as_str().to_string();
    let url = request.url().to_string();
    let header = |name: &str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str().to_string())
    };
    let authorization = header("Authorization");
    let accept = header("Accept");
    let content_type = header("Content-Type");
    let mut body = Vec::new();
    let _ = request.as_reader().read_to_end(&mut body);
    let index = seen.lock().unwrap().len();
    let action = rule(index, &method, &url);
    let hidden = match &action {
        Action::ForwardHiding(name) => Some(name.clone()),
        _ => None,
    };
    let (status, reply, headers): (u16, Vec<u8>, Vec<(String, String)>) = match action {
        Action::Status(status, retry_after) => {
            let headers = if retry_after {
                vec![("Retry-After".into(), "0".into())]
            } else {
                vec![]
            };
            (
                status,
                b"{\"status\": 0, \"message\": \"injected\"}".to_vec(),
                headers,
            )
        }
        Action::Redirect(location) => (307, Vec::new(), vec![("Location".into(), location)]),
        Action::Forward | Action::ForwardHiding(_) => {
            let target = format!("{origin}{url}");
            let agent = agent();
            let with = |mut builder: ureq::RequestBuilder<ureq::typestate::WithBody>| {
                for (name, value) in [
                    ("Authorization", &authorization),
                    ("Accept", &accept),
                    ("Content-Type", &content_type),
                ] {
                    if let Some(value) = value {
                        builder = builder.header(name, value);
                    }
                }
                builder.send(&body[..])
            };
            let result = match method.as_str() {
                "GET" => {
                    let mut builder = agent.get(&target);
                    for (name, value) in [("Authorization", &authorization), ("Accept", &accept)] {
                        if let Some(value) = value {
                            builder = builder.header(name, value);
                        }
                    }
                    builder.call()
                }
                "POST" => with(agent.post(&target)),
                "DELETE" => with(agent.delete(&target).force_send_body()),
                other => panic!("unexpected method {other}"),
            };
            match result {
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    let mut bytes = response.body_mut().read_to_vec().unwrap_or_default();
                    if let Some(hidden) = &hidden {
                        bytes = without_item(&bytes, hidden);
                    }
                    (
                        status,
                        bytes,
                        vec![("Content-Type".into(), "application/json".into())],
                    )
                }
                Err(error) => (502, error.to_string().into_bytes(), vec![]),
            }
        }
    };
    seen.lock().unwrap().push(Seen {
        method,
        url,
        status,
        authorized: authorization.is_some(),
    });
    let mut response = tiny_http::Response::from_data(reply).with_status_code(status);
    for (name, value) in headers {
        response
            .add_header(tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap());
    }
    let _ = request.respond(response);
}
