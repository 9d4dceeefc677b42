//! JupyterHub groups (SPEC §9): keeps one hub group per course and list in step with the
//! audited rosters, through the hub's REST API.
//!
//! [`plan`] decides what to change (pure); [`client`] makes the REST calls (retries,
//! pagination, the token); [`sync_groups`] strings them together and reports.
//!
//! Invariants:
//! - the token goes to the configured hub URL only (redirects are never followed), and no
//!   log line, error or `Debug` output holds the token, an address or a username: logs
//!   and errors name groups, operations and counts only;
//! - only groups the template names for a managed or pruned course are ever changed;
//! - users are never created, and no membership request names a user the hub lacks;
//! - a 401/403 stops all hub work at once; 429/5xx/timeouts are retried like SIS calls;
//! - a dry run sends GET requests only.

pub mod client;
pub mod plan;

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::shutdown::Shutdown;
use crate::source::RetryPolicy;
use crate::source::http::BaseUrl;

pub use plan::{CourseRosters, DEFAULT_GROUP_TEMPLATE, GroupTemplate};

/// The token variable (its `_FILE` twin wins, as for the SIS credentials).
pub const TOKEN_VAR: &str = "JUPYTERHUB_API_TOKEN";

/// The scopes roster-sync's token needs (SPEC §9).
pub const REQUIRED_SCOPES: [&str; 6] = [
    "list:users",
    "read:users:name",
    "read:groups",
    "list:groups",
    "groups",
    "admin:groups",
];

/// The default of `--hub-username-domain`.
pub const DEFAULT_USERNAME_DOMAIN: &str = "berkeley.edu";

/// The hub API token. Its `Debug` output is redacted and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct HubToken(String);

/// The token could not be read; a configuration error (exit 2). The message names the
/// variables and, for a file, its path, never a value or a file's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingToken {
    message: String,
}

impl HubToken {
    /// A token from a value (trimmed); refuses an empty one or one that cannot go into
    /// an HTTP header.
    pub fn new(value: &str) -> Result<HubToken, MissingToken> {
        let value = value.trim();
        if value.is_empty() || value.chars().any(char::is_control) {
            return Err(MissingToken {
                message: "the JupyterHub API token is empty or holds a control character"
                    .to_string(),
            });
        }
        Ok(HubToken(value.to_string()))
    }

    /// Reads `JUPYTERHUB_API_TOKEN_FILE` (a path) or else `JUPYTERHUB_API_TOKEN`, with the
    /// same rules as the SIS credentials.
    pub fn from_env() -> Result<HubToken, MissingToken> {
        Self::from_lookup(|name| {
            std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
        })
    }

    pub(crate) fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<HubToken, MissingToken> {
        use crate::source::credentials::{Unusable, read_var};
        match read_var(TOKEN_VAR, &lookup) {
            Ok(value) => Ok(HubToken(value)),
            Err(reason) => Err(MissingToken {
                message: format!(
                    "missing JupyterHub API token for --hub-api: {}",
                    Unusable {
                        var: TOKEN_VAR,
                        reason: &reason
                    }
                ),
            }),
        }
    }

    pub(crate) fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for HubToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HubToken(<redacted>)")
    }
}

impl fmt::Display for MissingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for MissingToken {}

/// Everything the groups sync needs to know.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// `http(s)://host[:port]/prefix/hub/api`.
    pub api: BaseUrl,
    pub token: HubToken,
    pub group_template: GroupTemplate,
    /// `""`: the whole address is the username.
    pub username_domain: String,
    /// Per request, body included.
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl HubConfig {
    /// A configuration with the defaults of `--hub-group-template`,
    /// `--hub-username-domain`, `--retries` and `--timeout`.
    pub fn new(api: BaseUrl, token: HubToken) -> HubConfig {
        HubConfig {
            api,
            token,
            group_template: GroupTemplate::default(),
            username_domain: DEFAULT_USERNAME_DOMAIN.to_string(),
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }
}

/// What the groups sync did (or, in a dry run, would do). Counts are of changes made;
/// after an error, of those made before it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HubReport {
    /// Managed groups: two per course in `desired` (one per list given).
    pub groups: usize,
    /// Memberships added (new groups' first members included).
    pub added: usize,
    pub removed: usize,
    pub created: usize,
    pub deleted: usize,
    /// Managed groups whose members had been changed out of band.
    pub drift: usize,
    /// Distinct usernames of managed rosters that the hub does not know (yet).
    pub not_in_hub: usize,
    /// Distinct addresses of managed rosters outside the username domain.
    pub outside_domain: usize,
    /// HTTP attempts, retries included.
    pub requests: u64,
    /// A one-line reason when the groups could not all be brought up to date.
    pub error: Option<String>,
}

/// Brings the hub's groups in line with `desired` (and deletes the groups of `pruned`
/// courses that are not in `desired`). `previous` is the roster state the last run synced,
/// used only to tell drift from roster changes. Never panics on hub behaviour; every
/// failure ends up in `error`.
pub fn sync_groups(
    config: &HubConfig,
    previous: &CourseRosters,
    desired: &CourseRosters,
    pruned: &[String],
    dry_run: bool,
    shutdown: &Shutdown,
) -> HubReport {
    let mut report = HubReport::default();
    let sync = Sync {
        config,
        previous,
        desired,
        pruned,
        dry_run,
    };
    let result = sync.run(shutdown, &mut report);
    if let Err(error) = result {
        log::warn!("hub groups not fully updated: {error}");
        report.error = Some(error.to_string());
    }
    let verb = if dry_run { "would change" } else { "changed" };
    log::info!(
        "hub groups: {} managed; {verb} +{} -{} members, {} created, {} deleted; \
         {} drifted, {} not in hub, {} outside domain; {} requests",
        report.groups,
        report.added,
        report.removed,
        report.created,
        report.deleted,
        report.drift,
        report.not_in_hub,
        report.outside_domain,
        report.requests,
    );
    report
}

/// The inputs of one groups sync.
struct Sync<'a> {
    config: &'a HubConfig,
    previous: &'a CourseRosters,
    desired: &'a CourseRosters,
    pruned: &'a [String],
    dry_run: bool,
}

impl Sync<'_> {
    fn run(&self, shutdown: &Shutdown, report: &mut HubReport) -> Result<(), SyncError> {
        report.groups = plan::managed_groups(&self.config.group_template, self.desired)
            .map_err(SyncError::Template)?
            .len();
        let prunable = self
            .pruned
            .iter()
            .any(|key| !self.desired.contains_key(key));
        if report.groups == 0 && !prunable {
            return Ok(());
        }
        let mut client = client::HubClient::new(self.config, shutdown);
        let outcome = self.apply(&mut client, report);
        report.requests = client.requests();
        outcome
    }

    fn apply(
        &self,
        client: &mut client::HubClient,
        report: &mut HubReport,
    ) -> Result<(), SyncError> {
        let Sync {
            config,
            previous,
            desired,
            pruned,
            dry_run,
        } = *self;
        let stopped = |error| SyncError::Stopped {
            error,
            earlier_failures: 0,
        };
        let mut state = client.read_state().map_err(stopped)?;
        // The listing goes by offset, so a group deleted by someone else while it is read
        // moves the next one back past a page boundary, unseen. A group the plan would
        // decide on by its absence is looked up by name: a pruned course's (or it would
        // not be deleted), and in a dry run every managed one (a real run finds out when
        // it creates the group: 409).
        let mut decided_by_absence = plan::pruned_groups(&config.group_template, desired, pruned);
        if dry_run {
            let managed = plan::managed_groups(&config.group_template, desired)
                .map_err(SyncError::Template)?;
            decided_by_absence.extend(managed.into_iter().map(|(name, _, _)| name));
        }
        for name in decided_by_absence {
            if state.groups.contains_key(&name) {
                continue;
            }
            if let Some(members) = client.group(&name).map_err(stopped)? {
                state.users.extend(members.iter().cloned());
                state.groups.insert(name, members);
            }
        }
        let plan = plan::plan(
            &config.group_template,
            &config.username_domain,
            previous,
            desired,
            pruned,
            &state,
        )
        .map_err(SyncError::Template)?;
        report.drift = plan.drift();
        report.not_in_hub = plan.not_in_hub;
        report.outside_domain = plan.outside_domain;
        for change in plan.groups.iter().filter(|change| change.drift) {
            log::info!(
                "hub group {} was changed out of band; repairing",
                change.name
            );
        }
        if dry_run {
            report.added = plan.added();
            report.removed = plan.removed();
            report.created = plan.created();
            report.deleted = plan.delete.len();
            for change in plan.groups.iter().filter(|change| !change.is_noop()) {
                log::info!(
                    "hub group {}: would {}add {}, remove {}",
                    change.name,
                    if change.create { "create it, " } else { "" },
                    change.add.len(),
                    change.remove.len()
                );
            }
            for name in &plan.delete {
                log::info!("hub group {name}: would delete it (pruned course)");
            }
            return Ok(());
        }
        let mut failures: Vec<client::HubError> = Vec::new();
        let mut record = |result: Result<(), client::HubError>| match result {
            Ok(()) => Ok(()),
            Err(error) if error.stops_all() => Err(error),
            Err(error) => {
                log::warn!("{error}");
                failures.push(error);
                Ok(())
            }
        };
        let mut stopped = None;
        for change in plan.groups.iter().filter(|change| !change.is_noop()) {
            let result = apply_group(client, change, report);
            if let Err(error) = record(result) {
                stopped = Some(error);
                break;
            }
            log::info!(
                "hub group {}: {}+{} -{}",
                change.name,
                if change.create { "created, " } else { "" },
                change.add.len(),
                change.remove.len()
            );
        }
        if stopped.is_none() {
            for name in &plan.delete {
                let result = client.delete_group(name).map(|deleted| {
                    if deleted {
                        report.deleted += 1;
                        log::info!("hub group {name}: deleted (pruned course)");
                    }
                });
                if let Err(error) = record(result) {
                    stopped = Some(error);
                    break;
                }
            }
        }
        let earlier_failures = failures.len();
        match stopped {
            Some(error) => Err(SyncError::Stopped {
                error,
                earlier_failures,
            }),
            None if failures.is_empty() => Ok(()),
            None => Err(SyncError::Failed {
                first: failures.remove(0),
                more: earlier_failures - 1,
            }),
        }
    }
}

/// Why the groups could not all be brought up to date.
#[derive(Debug)]
enum SyncError {
    /// The template names two managed lists alike.
    Template(plan::SharedGroup),
    /// An error that stops all hub work, after `earlier_failures` operations failed alone.
    Stopped {
        error: client::HubError,
        earlier_failures: usize,
    },
    /// Operations that failed one by one (the others were done).
    Failed {
        first: client::HubError,
        more: usize,
    },
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Template(error) => error.fmt(f),
            SyncError::Stopped {
                error,
                earlier_failures: 0,
            } => error.fmt(f),
            SyncError::Stopped {
                error,
                earlier_failures,
            } => write!(
                f,
                "{error} (and {earlier_failures} earlier hub operations failed)"
            ),
            SyncError::Failed { first, more: 0 } => first.fmt(f),
            SyncError::Failed { first, more } => {
                write!(f, "{first} (and {more} more hub operations failed)")
            }
        }
    }
}

/// Applies one group's change, counting what the hub accepted.
fn apply_group(
    client: &mut client::HubClient,
    change: &plan::GroupChange,
    report: &mut HubReport,
) -> Result<(), client::HubError> {
    let mut add = change.add.clone();
    let mut remove = change.remove.clone();
    if change.create {
        if client.create_group(&change.name, &add)? {
            report.created += 1;
            report.added += add.len();
            return Ok(());
        }
        // It exists after all: made meanwhile, made by a retried request that had in fact
        // succeeded, or missed by a listing whose pages shifted while they were read. Its
        // members are read now, so it ends the run with exactly the wanted ones.
        let current = client.group_members(&change.name)?;
        remove = current
            .iter()
            .filter(|member| !change.add.contains(member))
            .cloned()
            .collect();
        add.retain(|user| !current.contains(user));
    }
    if !add.is_empty() {
        client.add_members(&change.name, &add)?;
        report.added += add.len();
    }
    if !remove.is_empty() {
        client.remove_members(&change.name, &remove)?;
        report.removed += remove.len();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roster::{List, Roster};
    use std::collections::{BTreeMap, HashMap};

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn token_comes_from_the_file_first_and_is_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, " file-token-123\n").unwrap();
        let token = HubToken::from_lookup(lookup(&[
            ("JUPYTERHUB_API_TOKEN", "env-token"),
            ("JUPYTERHUB_API_TOKEN_FILE", path.to_str().unwrap()),
        ]))
        .unwrap();
        assert_eq!(token.secret(), "file-token-123");
        assert_eq!(format!("{token:?}"), "HubToken(<redacted>)");
        let api = BaseUrl::parse("http://hub:8081/hub/api/").unwrap();
        let config = HubConfig::new(api, token);
        assert!(!format!("{config:?}").contains("file-token-123"));

        let token = HubToken::from_lookup(lookup(&[("JUPYTERHUB_API_TOKEN", " env-token ")]));
        assert_eq!(token.unwrap().secret(), "env-token");
    }

    #[test]
    fn a_missing_token_names_both_variables_and_never_a_value() {
        let message = HubToken::from_lookup(lookup(&[])).unwrap_err().to_string();
        assert!(
            message.contains("JUPYTERHUB_API_TOKEN (set it or JUPYTERHUB_API_TOKEN_FILE)"),
            "{message}"
        );
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let message = HubToken::from_lookup(lookup(&[
            ("JUPYTERHUB_API_TOKEN", "unused-secret"),
            ("JUPYTERHUB_API_TOKEN_FILE", empty.to_str().unwrap()),
        ]))
        .unwrap_err()
        .to_string();
        assert!(message.contains("which is empty"), "{message}");
        assert!(!message.contains("unused-secret"), "{message}");
        let message = HubToken::from_lookup(lookup(&[("JUPYTERHUB_API_TOKEN", "bad\u{7}secret")]))
            .unwrap_err()
            .to_string();
        assert!(message.contains("control character") && !message.contains("secret\u{7}"));
        assert!(!message.contains("bad"), "{message}");
    }

    #[test]
    fn nothing_managed_and_nothing_pruned_sends_no_request() {
        let api = BaseUrl::parse("http://127.0.0.1:9/hub/api").unwrap();
        let mut config = HubConfig::new(api, HubToken::new("t").unwrap());
        config.retry = RetryPolicy {
            attempts: 2,
            first_wait: Duration::from_millis(1),
            max_wait: Duration::from_millis(1),
        };
        let pruned = vec!["k".to_string()];
        let mut desired = CourseRosters::new();
        desired.insert(
            "k".into(),
            BTreeMap::from([(List::Students, Roster::default())]),
        );
        // `k` is pruned and desired: desired wins, and there is nothing else to delete.
        let report = sync_groups(
            &config,
            &desired,
            &CourseRosters::new(),
            &[],
            false,
            &Shutdown::new(),
        );
        assert_eq!(report, HubReport::default());
        let report = sync_groups(&config, &desired, &desired, &pruned, true, &Shutdown::new());
        assert_eq!(
            (report.groups, report.error.is_some()),
            (1, true),
            "{report:?}"
        );
    }

    #[test]
    fn report_serialises_every_field() {
        let json = serde_json::to_value(HubReport::default()).unwrap();
        for field in [
            "groups",
            "added",
            "removed",
            "created",
            "deleted",
            "drift",
            "not_in_hub",
            "outside_domain",
            "requests",
            "error",
        ] {
            assert!(json.get(field).is_some(), "{field}");
        }
    }
}
