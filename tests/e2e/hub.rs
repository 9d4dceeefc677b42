//! The `roster-sync` binary with `--hub-api` against a real JupyterHub 5.5 (see
//! `jupyterhub.rs`), with the least-privilege token: the groups after a run, a second run
//! that writes nothing, drift repair, guarded, failed and pruned courses, dry runs, a
//! rejected token, a server error, and a `group_overrides` spawn that follows the synced
//! groups without a login.
//!
//! Every test but the spawn test names its groups with its own template, so the tests
//! share the hub and the fixture users and still run in parallel.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use crate::jupyterhub::{Action, Forwarder, hub};
use crate::support::{self, Sandbox, assert_exit};

/// Fixture people who have a hub account; the other roster members have none yet. Every
/// test creates exactly these, so what a roster gives in the hub does not depend on which
/// test ran first.
const HUB_USERS: [&str; 12] = [
    "student.ten",
    "student0001",
    "student0002",
    "student0201",
    "student0401",
    "student0501",
    "ada.prof",
    "aprof",
    "cy.prof",
    "eve.summer",
    "student0601",
    "ivy.teacher",
];

/// The fixtures' five courses (four SIS, one Canvas).
const KEYS: [&str; 5] = [
    "2019-fall-23970",
    "2020-spring-14552",
    "2021-fall-32244",
    "2022-summer-04321",
    "canvas-1234567",
];

fn group(template: &str, key: &str, list: &str) -> String {
    template.replace("{key}", key).replace("{list}", list)
}

/// Runs of the binary in one sandbox against one hub URL with one group template.
struct HubJob<'a> {
    sandbox: Sandbox,
    api: &'a str,
    template: &'a str,
    token: &'a str,
}

impl<'a> HubJob<'a> {
    /// The least-privilege token, straight to the hub.
    fn new(template: &'a str) -> Self {
        HubJob::through(&hub().api, template, &hub().sync_token)
    }

    /// `token` to `api` (a forwarder in front of the hub, say).
    fn through(api: &'a str, template: &'a str, token: &'a str) -> Self {
        let sandbox = Sandbox::new();
        sandbox.copy_fixture_values();
        HubJob {
            sandbox,
            api,
            template,
            token,
        }
    }

    /// `roster-sync ARGS… --hub-api … --hub-group-template …` on this sandbox's values,
    /// asking `api_base` for the rosters.
    fn command(&self, args: &[&str], api_base: &str) -> Command {
        let mut command = self.sandbox.job(args, api_base);
        command
            .args(["--hub-api", self.api, "--hub-group-template", self.template])
            .env("JUPYTERHUB_API_TOKEN", self.token);
        command
    }

    /// `roster-sync ARGS…` on the bundled fixtures.
    fn run(&self, args: &[&str]) -> support::Run {
        self.run_on(args, &support::fixture_api_base())
    }

    fn run_on(&self, args: &[&str], api_base: &str) -> support::Run {
        self.sandbox.run(&mut self.command(args, api_base))
    }
}

/// The usernames a fixture roster file gives, limited to the hub's users.
fn expected_members(key: &str, list: &str) -> BTreeSet<String> {
    let files = support::expected_fixture_files();
    let text = String::from_utf8(files[&format!("{key}-{list}.txt")].clone()).unwrap();
    text.lines()
        .filter_map(|line| line.strip_suffix("@berkeley.edu"))
        .filter(|name| HUB_USERS.contains(name))
        .map(str::to_string)
        .collect()
}

/// Every group of `template` for the fixture courses, as the hub holds them.
fn groups(template: &str) -> BTreeMap<String, Option<BTreeSet<String>>> {
    KEYS.iter()
        .flat_map(|key| ["students", "instructors"].map(|list| group(template, key, list)))
        .map(|name| {
            let members = hub().members(&name);
            (name, members)
        })
        .collect()
}

fn hub_report(run: &support::Run) -> &Value {
    let hub = &run.report["hub"];
    assert!(hub.is_object(), "a hub object in {}", run.describe());
    hub
}

/// A copy of the fixtures in which 2022-summer-04321's sections list nobody (the empty
/// guard holds it) and the Classes API no longer knows 2020-spring-14552 (it fails).
fn troubled_fixtures(sandbox: &Sandbox) -> String {
    let sis = sandbox.path("sis-troubled");
    support::copy_dir(&support::fixtures().join("sis"), &sis);
    for section in fs::read_dir(sis.join("enrollments/2225")).unwrap() {
        fs::write(
            section.unwrap().path().join("page-1.json"),
            r#"{"apiResponse":{"response":{"enrollmentsByClassSection":{"classSectionEnrollments":[]}}}}"#,
        )
        .unwrap();
    }
    fs::remove_file(sis.join("classes/2202/14552.json")).unwrap();
    format!("file://{}", sis.display())
}

#[test]
fn every_group_holds_its_rosters_hub_users_a_second_run_writes_nothing_and_drift_is_repaired() {
    let hub = hub();
    hub.create_users(&HUB_USERS);
    let template = "e2e-a::{key}::{list}";
    let forwarder = Forwarder::recording(&hub.api);
    let job = HubJob::through(&forwarder.api, template, &hub.sync_token);

    let first = job.run(&["sync"]);
    assert_exit(&first, 0);
    let expected: BTreeMap<String, Option<BTreeSet<String>>> = KEYS
        .iter()
        .flat_map(|key| ["students", "instructors"].map(|list| (key, list)))
        .map(|(key, list)| {
            let members = expected_members(key, list);
            (group(template, key, list), Some(members))
        })
        .collect();
    assert_eq!(groups(template), expected);
    let report = hub_report(&first);
    assert_eq!(report["groups"], 10);
    assert_eq!(report["created"], 10);
    let members: usize = expected.values().flatten().map(BTreeSet::len).sum();
    assert_eq!(report["added"], members as u64);
    assert!(report["not_in_hub"].as_u64().unwrap() > 200, "{report}");
    assert_eq!(report["error"], Value::Null);
    assert_eq!(report["drift"], 0);
    assert!(forwarder.seen().iter().all(|seen| seen.authorized));
    assert_eq!(report["requests"], forwarder.seen().len() as u64);

    forwarder.clear();
    let second = job.run(&["sync"]);
    assert_exit(&second, 0);
    assert_eq!(
        forwarder.writes(),
        0,
        "a second run only reads: {:?}",
        forwarder.seen()
    );
    let report = hub_report(&second);
    assert_eq!(
        (report["added"].as_u64(), report["removed"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(groups(template), expected);

    // By hand: a stranger joins one group, a member leaves another.
    hub.add_members(
        &group(template, "2019-fall-23970", "students"),
        &["cy.prof"],
    );
    hub.remove_members(
        &group(template, "2021-fall-32244", "instructors"),
        &["ada.prof"],
    );
    let third = job.run(&["sync"]);
    assert_exit(&third, 0);
    assert_eq!(groups(template), expected, "both groups restored");
    let report = hub_report(&third);
    assert_eq!(report["drift"], 2);
    assert_eq!(
        (report["added"].as_u64(), report["removed"].as_u64()),
        (Some(1), Some(1))
    );
}

#[test]
fn guarded_and_failed_courses_keep_their_groups_and_pruned_courses_lose_only_theirs() {
    let hub = hub();
    hub.create_users(&HUB_USERS);
    let template = "e2e-b::{key}::{list}";
    let job = HubJob::new(template);
    assert_exit(&job.run(&["sync"]), 0);
    let before = groups(template);

    let held = job.run_on(&["sync"], &troubled_fixtures(&job.sandbox));
    assert_exit(&held, 3);
    assert_eq!(held.status("2022-summer-04321"), "guarded");
    assert_eq!(held.status("2020-spring-14552"), "failed");
    assert_eq!(
        groups(template),
        before,
        "the groups follow the audited rosters"
    );
    assert_eq!(hub_report(&held)["error"], Value::Null);

    // 2019-fall-23970 leaves the values file; with --prune its groups go, and only they.
    hub.create_group("e2e-b-other-team", &["aprof"]);
    let values = fs::read_to_string(support::fixtures().join("values.yaml")).unwrap();
    job.sandbox
        .write_values(&values.replace("    2019-fall-23970:", "    retired-2019-fall-23970:"));
    let pruned = job.run(&["sync", "--prune"]);
    assert_exit(&pruned, 0);
    assert_eq!(pruned.status("2019-fall-23970"), "pruned");
    let mut expected = before.clone();
    for list in ["students", "instructors"] {
        expected.insert(group(template, "2019-fall-23970", list), None);
    }
    assert_eq!(groups(template), expected);
    assert_eq!(hub_report(&pruned)["deleted"], 2);
    let other_team = BTreeSet::from(["aprof".to_string()]);
    assert_eq!(hub.members("e2e-b-other-team"), Some(other_team));
}

#[test]
fn a_dry_run_only_reads_and_predicts_what_the_sync_then_does() {
    let hub = hub();
    hub.create_users(&HUB_USERS);
    let template = "e2e-c::{key}::{list}";
    let forwarder = Forwarder::recording(&hub.api);
    let planning = HubJob::through(&forwarder.api, template, &hub.sync_token);
    let planned = planning.run(&["plan"]);
    assert_exit(&planned, 0);
    assert_eq!(forwarder.writes(), 0, "{:?}", forwarder.seen());
    assert!(
        groups(template).values().all(Option::is_none),
        "no group was made"
    );
    let predicted = hub_report(&planned).clone();
    assert_eq!(predicted["created"], 10);

    let synced = HubJob::new(template).run(&["sync"]);
    assert_exit(&synced, 0);
    let done = hub_report(&synced);
    for field in [
        "groups",
        "added",
        "removed",
        "created",
        "deleted",
        "not_in_hub",
    ] {
        assert_eq!(done[field], predicted[field], "{field}");
    }
}

#[test]
fn a_rejected_token_exits_7_after_the_rosters_and_the_audit_were_applied() {
    let hub = hub();
    hub.create_users(&HUB_USERS);
    let template = "e2e-d::{key}::{list}";
    let forwarder = Forwarder::recording(&hub.api);
    let token = "e2e-wrong-token-8c1d";
    let job = HubJob::through(&forwarder.api, template, token);
    let run = job.run(&["sync"]);
    assert_exit(&run, 7);
    assert_eq!(run.report["outcome"], "partial");
    assert_eq!(
        job.sandbox.roster_files(),
        support::expected_fixture_files()
    );
    assert_eq!(job.sandbox.commit_count(), 1);
    let error = hub_report(&run)["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("JUPYTERHUB_API_TOKEN") && error.contains("admin:groups"),
        "{error}"
    );
    assert_eq!(forwarder.seen().len(), 1, "no retry on a rejected token");
    for text in [
        run.stdout.as_str(),
        run.stderr.as_str(),
        &run.report.to_string(),
    ] {
        assert!(!text.contains(token), "the token leaked");
    }
    assert!(groups(template).values().all(Option::is_none));

    // The next run with the right token brings the groups up to date.
    let retried = HubJob {
        token: &hub.sync_token,
        api: &hub.api,
        ..job
    }
    .run(&["sync"]);
    assert_exit(&retried, 0);
    assert!(groups(template).values().all(Option::is_some));
}

#[test]
fn a_server_error_is_retried_and_the_run_succeeds() {
    let hub = hub();
    hub.create_users(&HUB_USERS);
    let template = "e2e-e::{key}::{list}";
    // The first request and the first write fail once each.
    let failed_a_write = AtomicBool::new(false);
    let forwarder = Forwarder::new(&hub.api, move |index, method, _| {
        let first_write = method == "POST" && !failed_a_write.swap(true, Ordering::SeqCst);
        if index == 0 || first_write {
            Action::Status(500, false)
        } else {
            Action::Forward
        }
    });
    let run =
        HubJob::through(&forwarder.api, template, &hub.sync_token).run(&["sync", "--retries", "3"]);
    assert_exit(&run, 0);
    let statuses: Vec<u16> = forwarder.seen().iter().map(|seen| seen.status).collect();
    assert_eq!(
        statuses.iter().filter(|status| **status == 500).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(hub_report(&run)["requests"], forwarder.seen().len() as u64);
    assert!(groups(template).values().all(Option::is_some));
}

#[test]
fn a_group_overrides_spawn_follows_the_synced_groups_without_a_login() {
    let hub = hub();
    // The hub's spawner applies the fixture values' profiles through group_overrides on
    // the default group names; only this test uses those names.
    let user = "student0401";
    hub.create_users(&HUB_USERS);
    // Other tests put the same user into groups of their own templates.
    let course_groups = |record: &Value| -> Vec<String> {
        record["groups"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .filter(|name| name.starts_with("course::"))
            .map(str::to_string)
            .collect()
    };
    let gib = |n: f64| (n * 1024.0 * 1024.0 * 1024.0) as u64;
    let before = hub.spawn(user);
    assert!(course_groups(&before).is_empty(), "{before}");
    assert_eq!(
        before["mem_limit"],
        gib(1.0),
        "the default limit before any sync: {before}"
    );

    let job = HubJob::new("course::{key}::{list}");
    assert_exit(&job.run(&["sync"]), 0);
    let course = hub.spawn(user);
    assert_eq!(
        course_groups(&course),
        ["course::2020-spring-14552::students"]
    );
    assert_eq!(course["mem_limit"], gib(2.0), "DATA C8's limit: {course}");
    assert_eq!(course["mem_guarantee"], gib(1.0));
    let mounts = course["mounts"].as_array().unwrap();
    assert!(
        mounts.contains(&Value::from("/home/jovyan/shared")),
        "{course}"
    );
    assert!(
        mounts.contains(&Value::from("/home/jovyan")),
        "the home volume is kept: {course}"
    );
    assert_eq!(course["volumes"], serde_json::json!(["home"]));
    // A Canvas course's profile applies the same way.
    let canvas = hub.spawn("student0601");
    assert!(
        course_groups(&canvas).contains(&"course::canvas-1234567::students".to_string()),
        "{canvas}"
    );
    assert_eq!(
        canvas["mem_limit"],
        gib(2.0),
        "the Canvas course's limit: {canvas}"
    );

    // The course leaves the values file and is pruned: the next spawn is back to defaults.
    let values = fs::read_to_string(support::fixtures().join("values.yaml")).unwrap();
    job.sandbox
        .write_values(&values.replace("    2020-spring-14552:", "    retired-2020-spring-14552:"));
    assert_exit(&job.run(&["sync", "--prune"]), 0);
    let after = hub.spawn(user);
    assert!(course_groups(&after).is_empty(), "{after}");
    assert_eq!(after["mem_limit"], gib(1.0), "{after}");
    assert!(
        !after["mounts"]
            .as_array()
            .unwrap()
            .contains(&Value::from("/home/jovyan/shared"))
    );
}
