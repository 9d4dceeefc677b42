//! The JupyterHub groups sync (`roster_sync::hub::sync_groups`) against a real JupyterHub
//! 5.5 (see `jupyterhub.rs`). Every test uses its own course keys and usernames (prefix
//! `tN-`), so they share one hub and run in parallel. Without a runnable hub every test
//! fails, saying what to run.

use crate::jupyterhub::{Action, Forwarder, hub, rosters, set, with_template};
use roster_sync::hub::{CourseRosters, HubReport, REQUIRED_SCOPES, sync_groups};
use roster_sync::shutdown::Shutdown;

fn sync(
    config: &roster_sync::hub::HubConfig,
    previous: &CourseRosters,
    desired: &CourseRosters,
    pruned: &[&str],
    dry_run: bool,
) -> HubReport {
    let pruned: Vec<String> = pruned.iter().map(|p| p.to_string()).collect();
    sync_groups(
        config,
        previous,
        desired,
        &pruned,
        dry_run,
        &Shutdown::new(),
    )
}

/// The report's counts without `requests` and `error`, for comparisons.
fn counts(report: &HubReport) -> [usize; 8] {
    [
        report.groups,
        report.added,
        report.removed,
        report.created,
        report.deleted,
        report.drift,
        report.not_in_hub,
        report.outside_domain,
    ]
}

fn assert_no_people(text: &str, people: &[&str]) {
    for person in people {
        assert!(!text.contains(person), "{person:?} leaked into {text:?}");
    }
}

#[test]
fn the_roster_sync_role_has_exactly_the_spec_scopes() {
    assert_eq!(hub().sync_scopes, REQUIRED_SCOPES);
}

#[test]
fn groups_hold_the_hub_users_of_their_rosters_and_a_second_sync_writes_nothing() {
    let hub = hub();
    hub.create_users(&["t1-a", "t1-b", "t1-c", "t1-prof", "t1-idle1", "t1-idle2"]);
    let desired = rosters(&[
        (
            "2031-fall-101",
            &[
                "t1-a@berkeley.edu",
                "T1-B@Berkeley.EDU",
                "t1-ghost@berkeley.edu",
                "t1-x@gmail.com",
            ],
            &["t1-prof@berkeley.edu", "t1-prof@cs.berkeley.edu"],
        ),
        (
            "2031-fall-102",
            &["t1-b@berkeley.edu", "t1-c@berkeley.edu"],
            &[],
        ),
    ]);
    let forwarder = Forwarder::recording(&hub.api);
    let config = hub.config(&forwarder.api, &hub.sync_token);

    let first = sync(&config, &CourseRosters::new(), &desired, &[], false);
    assert_eq!(first.error, None, "{first:?}");
    // groups, added, removed, created, deleted, drift, not_in_hub, outside_domain
    assert_eq!(counts(&first), [4, 5, 0, 4, 0, 0, 1, 2], "{first:?}");
    assert_eq!(first.requests as usize, forwarder.seen().len());
    // Each new group is created with its members in one request.
    assert_eq!(forwarder.writes(), 4, "{:?}", forwarder.seen());
    let first_gets = forwarder.count("GET");
    assert!(
        forwarder
            .seen()
            .iter()
            .any(|s| s.url.starts_with("/hub/api/users?offset=5&")),
        "the user listing spans pages: {:?}",
        forwarder.seen()
    );
    assert!(
        forwarder
            .seen()
            .iter()
            .all(|s| s.authorized && s.status < 300)
    );

    assert_eq!(
        hub.members("course::2031-fall-101::students"),
        set(&["t1-a", "t1-b"])
    );
    assert_eq!(
        hub.members("course::2031-fall-101::instructors"),
        set(&["t1-prof"])
    );
    assert_eq!(
        hub.members("course::2031-fall-102::students"),
        set(&["t1-b", "t1-c"])
    );
    assert_eq!(hub.members("course::2031-fall-102::instructors"), set(&[]));

    forwarder.clear();
    let second = sync(&config, &desired, &desired, &[], false);
    assert_eq!(second.error, None, "{second:?}");
    assert_eq!(counts(&second), [4, 0, 0, 0, 0, 0, 1, 2], "{second:?}");
    assert_eq!(forwarder.writes(), 0, "{:?}", forwarder.seen());
    assert_eq!(second.requests as usize, forwarder.count("GET"));
    eprintln!(
        "4 groups: first sync {} requests ({first_gets} GET pages + 4 writes), second sync {} \
         requests (all GET pages; the hub pages by {})",
        first.requests,
        second.requests,
        crate::jupyterhub::PAGE_LIMIT
    );
}

#[test]
fn out_of_band_changes_are_repaired_and_counted_once_per_group() {
    let hub = hub();
    hub.create_users(&["t2-a", "t2-b", "t2-prof", "t2-intruder"]);
    let desired = rosters(&[(
        "2031-fall-201",
        &["t2-a@berkeley.edu", "t2-b@berkeley.edu"],
        &["t2-prof@berkeley.edu"],
    )]);
    let config = hub.sync_config();
    let first = sync(&config, &CourseRosters::new(), &desired, &[], false);
    assert_eq!(first.error, None);

    let students = "course::2031-fall-201::students";
    let instructors = "course::2031-fall-201::instructors";
    hub.add_members(students, &["t2-intruder"]);
    hub.remove_members(students, &["t2-b"]);
    hub.remove_members(instructors, &["t2-prof"]);
    let repair = sync(&config, &desired, &desired, &[], false);
    assert_eq!(repair.error, None, "{repair:?}");
    assert_eq!(counts(&repair), [2, 2, 1, 0, 0, 2, 0, 0], "{repair:?}");
    assert_eq!(hub.members(students), set(&["t2-a", "t2-b"]));
    assert_eq!(hub.members(instructors), set(&["t2-prof"]));

    // A managed group deleted out of band comes back with its members.
    hub.delete_group(students);
    let recreate = sync(&config, &desired, &desired, &[], false);
    assert_eq!(counts(&recreate), [2, 2, 0, 1, 0, 1, 0, 0], "{recreate:?}");
    assert_eq!(hub.members(students), set(&["t2-a", "t2-b"]));

    let quiet = sync(&config, &desired, &desired, &[], false);
    assert_eq!(counts(&quiet), [2, 0, 0, 0, 0, 0, 0, 0], "{quiet:?}");
}

#[test]
fn roster_changes_move_members_without_drift_and_late_users_join_later() {
    let hub = hub();
    hub.create_users(&["t3-a", "t3-b", "t3-c"]);
    let config = hub.sync_config();
    let before = rosters(&[(
        "2031-fall-301",
        &["t3-a@berkeley.edu", "t3-b@berkeley.edu"],
        &[],
    )]);
    assert_eq!(
        sync(&config, &CourseRosters::new(), &before, &[], false).error,
        None
    );

    let after = rosters(&[(
        "2031-fall-301",
        &[
            "t3-b@berkeley.edu",
            "t3-c@berkeley.edu",
            "t3-late@berkeley.edu",
        ],
        &[],
    )]);
    let change = sync(&config, &before, &after, &[], false);
    assert_eq!(counts(&change), [2, 1, 1, 0, 0, 0, 1, 0], "{change:?}");
    let students = "course::2031-fall-301::students";
    assert_eq!(hub.members(students), set(&["t3-b", "t3-c"]));

    // The user logs in for the first time; the next run adds them (shown as drift once).
    hub.create_users(&["t3-late"]);
    let joined = sync(&config, &after, &after, &[], false);
    assert_eq!(counts(&joined), [2, 1, 0, 0, 0, 1, 0, 0], "{joined:?}");
    assert_eq!(hub.members(students), set(&["t3-b", "t3-c", "t3-late"]));
}

#[test]
fn prune_deletes_exactly_the_pruned_courses_groups() {
    let hub = hub();
    hub.create_users(&["t4-a", "t4-b"]);
    hub.create_group("other-team", &["t4-a"]);
    hub.create_group("course::2031-fall-499::students", &["t4-b"]);
    let config = hub.sync_config();
    let both = rosters(&[
        ("2031-fall-401", &["t4-a@berkeley.edu"], &[]),
        (
            "2031-fall-402",
            &["t4-b@berkeley.edu"],
            &["t4-a@berkeley.edu"],
        ),
    ]);
    assert_eq!(
        sync(&config, &CourseRosters::new(), &both, &[], false).error,
        None
    );
    assert_eq!(
        hub.members("course::2031-fall-402::instructors"),
        set(&["t4-a"])
    );

    let kept = rosters(&[("2031-fall-401", &["t4-a@berkeley.edu"], &[])]);
    let pruned = sync(
        &config,
        &both,
        &kept,
        &["2031-fall-402", "2031-fall-403"],
        false,
    );
    assert_eq!(pruned.error, None, "{pruned:?}");
    assert_eq!(counts(&pruned), [2, 0, 0, 0, 2, 0, 0, 0], "{pruned:?}");
    // Group by group (a listing by offset can skip or repeat a group while other tests
    // change theirs): exactly the pruned course's two groups are gone.
    for list in ["students", "instructors"] {
        assert_eq!(
            hub.members(&format!("course::2031-fall-402::{list}")),
            None,
            "{list}"
        );
    }
    assert!(hub.members("course::2031-fall-401::students").is_some());
    assert!(hub.members("course::2031-fall-401::instructors").is_some());
    assert_eq!(hub.members("other-team"), set(&["t4-a"]));
    assert_eq!(
        hub.members("course::2031-fall-499::students"),
        set(&["t4-b"])
    );
    assert_eq!(
        hub.members("course::2031-fall-401::students"),
        set(&["t4-a"])
    );
    assert_eq!(hub.members("course::2031-fall-401::instructors"), set(&[]));

    // Pruning again finds nothing to delete.
    let again = sync(&config, &kept, &kept, &["2031-fall-402"], false);
    assert_eq!(counts(&again), [2, 0, 0, 0, 0, 0, 0, 0], "{again:?}");
}

/// The hub lists groups by offset, so a group deleted by someone else while the listing
/// is read moves another past a page boundary, unseen. A pruned course's group that the
/// listing skipped is still found (by name), predicted by a dry run and deleted.
#[test]
fn a_pruned_group_the_listing_skipped_is_still_deleted() {
    let hub = hub();
    hub.create_users(&["t15-a"]);
    let config = hub.sync_config();
    let course = rosters(&[("2031-fall-1501", &["t15-a@berkeley.edu"], &[])]);
    assert_eq!(
        sync(&config, &CourseRosters::new(), &course, &[], false).error,
        None
    );
    let skipped = "course::2031-fall-1501::students";
    let forwarder = Forwarder::new(&hub.api, move |_, method, url| {
        if method == "GET" && url.starts_with("/hub/api/groups?") {
            Action::ForwardHiding(skipped.to_string())
        } else {
            Action::Forward
        }
    });
    let skipping = hub.config(&forwarder.api, &hub.sync_token);
    let nothing = CourseRosters::new();
    let pruned = ["2031-fall-1501"];
    let dry = sync(&skipping, &course, &nothing, &pruned, true);
    assert_eq!(dry.error, None, "{dry:?}");
    assert_eq!(dry.deleted, 2, "{dry:?}");
    assert_eq!(forwarder.writes(), 0);
    let real = sync(&skipping, &course, &nothing, &pruned, false);
    assert_eq!(real.error, None, "{real:?}");
    assert_eq!(real.deleted, 2, "{real:?}");
    assert_eq!(hub.members(skipped), None);
    assert_eq!(hub.members("course::2031-fall-1501::instructors"), None);
}

#[test]
fn a_dry_run_reads_only_and_predicts_the_real_run() {
    let hub = hub();
    hub.create_users(&["t5-a", "t5-b", "t5-c", "t5-intruder"]);
    let config = hub.sync_config();
    let old = rosters(&[
        (
            "2031-fall-501",
            &["t5-a@berkeley.edu", "t5-b@berkeley.edu"],
            &[],
        ),
        ("2031-fall-502", &["t5-a@berkeley.edu"], &[]),
    ]);
    assert_eq!(
        sync(&config, &CourseRosters::new(), &old, &[], false).error,
        None
    );
    hub.add_members("course::2031-fall-501::instructors", &["t5-intruder"]);
    let new = rosters(&[
        (
            "2031-fall-501",
            &["t5-b@berkeley.edu", "t5-c@berkeley.edu"],
            &[],
        ),
        (
            "2031-fall-503",
            &["t5-c@berkeley.edu", "t5-ghost@berkeley.edu"],
            &[],
        ),
    ]);
    // Read group by group: a listing by offset can skip or repeat a group while other
    // tests add and delete theirs.
    let ours = || {
        ["501", "502", "503"]
            .into_iter()
            .flat_map(|n| {
                ["students", "instructors"].map(|list| format!("course::2031-fall-{n}::{list}"))
            })
            .map(|name| {
                let members = hub.members(&name);
                (name, members)
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let before = ours();

    let forwarder = Forwarder::recording(&hub.api);
    let dry_config = hub.config(&forwarder.api, &hub.sync_token);
    let dry = sync(&dry_config, &old, &new, &["2031-fall-502"], true);
    assert_eq!(dry.error, None, "{dry:?}");
    assert_eq!(forwarder.writes(), 0, "{:?}", forwarder.seen());
    assert_eq!(dry.requests as usize, forwarder.seen().len());
    assert_eq!(ours(), before);
    // 501 students: +c -a; 501 instructors: -intruder (drift); 503: two new groups, +c;
    // 502: both groups deleted.
    assert_eq!(counts(&dry), [4, 2, 2, 2, 2, 1, 1, 0], "{dry:?}");

    let real = sync(&config, &old, &new, &["2031-fall-502"], false);
    assert_eq!(real.error, None, "{real:?}");
    assert_eq!(counts(&real), counts(&dry));
    assert_eq!(
        hub.members("course::2031-fall-501::students"),
        set(&["t5-b", "t5-c"])
    );
    assert_eq!(hub.members("course::2031-fall-501::instructors"), set(&[]));
    assert_eq!(
        hub.members("course::2031-fall-503::students"),
        set(&["t5-c"])
    );
    assert_eq!(hub.members("course::2031-fall-502::students"), None);
}

#[test]
fn whole_addresses_and_awkward_group_names_work_through_percent_encoding() {
    let hub = hub();
    hub.create_users(&["t6-ann@example.org", "t6-bob+x@berkeley.edu"]);
    let config = with_template(hub.sync_config(), "roster {key} #{list}? 100%", "");
    let desired = rosters(&[(
        "2031-fall-601",
        &[
            "t6-ann@example.org",
            "t6-bob+x@berkeley.edu",
            "t6-nobody@example.org",
        ],
        &[],
    )]);
    let report = sync(&config, &CourseRosters::new(), &desired, &[], false);
    assert_eq!(report.error, None, "{report:?}");
    assert_eq!(counts(&report), [2, 2, 0, 2, 0, 0, 1, 0], "{report:?}");
    assert_eq!(
        hub.members("roster 2031-fall-601 #students? 100%"),
        set(&["t6-ann@example.org", "t6-bob+x@berkeley.edu"])
    );
    let second = sync(&config, &desired, &desired, &[], false);
    assert_eq!(counts(&second), [2, 0, 0, 0, 0, 0, 1, 0], "{second:?}");
}

#[test]
fn a_wrong_token_is_refused_at_the_first_request_and_named() {
    let hub = hub();
    let forwarder = Forwarder::recording(&hub.api);
    let config = hub.config(&forwarder.api, "t7-wrong-token-3f9a");
    let desired = rosters(&[("2031-fall-701", &["t7-a@berkeley.edu"], &[])]);
    let report = sync(&config, &CourseRosters::new(), &desired, &[], false);
    let error = report.error.clone().expect("an error");
    // JupyterHub answers 403 (not 401) to an unknown token.
    assert_eq!(
        forwarder
            .seen()
            .iter()
            .map(|s| s.status)
            .collect::<Vec<_>>(),
        [403]
    );
    assert_eq!(report.requests, 1, "{report:?}");
    for needle in [
        "rejected the token",
        "HTTP 403",
        "JUPYTERHUB_API_TOKEN ",
        "JUPYTERHUB_API_TOKEN_FILE",
    ]
    .into_iter()
    .chain(REQUIRED_SCOPES)
    {
        assert!(error.contains(needle), "{needle:?} not in {error:?}");
    }
    assert!(
        !error.contains("t7-wrong-token-3f9a") && !error.contains('\n'),
        "{error}"
    );
    assert_eq!(hub.members("course::2031-fall-701::students"), None);
}

#[test]
fn a_token_without_write_scopes_stops_at_the_first_write() {
    let hub = hub();
    hub.create_users(&["t8-a", "t8-b"]);
    let forwarder = Forwarder::recording(&hub.api);
    let config = hub.config(&forwarder.api, &hub.read_only_token);
    let desired = rosters(&[
        ("2031-fall-801", &["t8-a@berkeley.edu"], &[]),
        ("2031-fall-802", &["t8-b@berkeley.edu"], &[]),
    ]);
    let report = sync(&config, &CourseRosters::new(), &desired, &[], false);
    let error = report.error.clone().expect("an error");
    assert!(
        error.contains("HTTP 403") && error.contains("admin:groups"),
        "{error}"
    );
    assert!(
        error.contains("creating hub group course::2031-fall-801::instructors"),
        "{error}"
    );
    assert_no_people(&error, &["t8-a", "t8-b"]);
    let seen = forwarder.seen();
    assert_eq!(forwarder.writes(), 1, "{seen:?}");
    assert_eq!(seen.last().unwrap().status, 403);
    assert_eq!(report.requests as usize, seen.len());
    assert_eq!(report.created, 0);
    for group in [
        "course::2031-fall-801::students",
        "course::2031-fall-802::students",
    ] {
        assert_eq!(hub.members(group), None);
    }
    // The reads work with these scopes, so a dry run succeeds.
    let dry = sync(&config, &CourseRosters::new(), &desired, &[], true);
    assert_eq!(dry.error, None, "{dry:?}");
    assert_eq!(dry.created, 4);
}

#[test]
fn a_token_that_cannot_read_members_changes_nothing() {
    let hub = hub();
    hub.create_users(&["t9-a"]);
    hub.create_group("t9-visible", &["t9-a"]);
    let forwarder = Forwarder::recording(&hub.api);
    let config = hub.config(&forwarder.api, &hub.names_only_token);
    let desired = rosters(&[("2031-fall-901", &["t9-a@berkeley.edu"], &[])]);
    let report = sync(&config, &CourseRosters::new(), &desired, &[], false);
    let error = report.error.expect("an error");
    assert!(
        error.contains("read:groups") && error.contains("JUPYTERHUB_API_TOKEN"),
        "{error}"
    );
    assert_eq!(forwarder.writes(), 0);
}

#[test]
fn server_errors_and_throttling_are_retried() {
    let hub = hub();
    hub.create_users(&["t10-a", "t10-b"]);
    let first_post = std::sync::atomic::AtomicBool::new(true);
    let forwarder = Forwarder::new(&hub.api, move |index, method, _url| match (index, method) {
        (0, _) => Action::Status(500, false),
        (1, _) => Action::Status(429, true),
        (_, "POST") if first_post.swap(false, std::sync::atomic::Ordering::SeqCst) => {
            Action::Status(503, true)
        }
        _ => Action::Forward,
    });
    let config = hub.config(&forwarder.api, &hub.sync_token);
    let desired = rosters(&[(
        "2031-fall-1001",
        &["t10-a@berkeley.edu"],
        &["t10-b@berkeley.edu"],
    )]);
    let report = sync(&config, &CourseRosters::new(), &desired, &[], false);
    assert_eq!(report.error, None, "{report:?}");
    assert_eq!(counts(&report), [2, 2, 0, 2, 0, 0, 0, 0], "{report:?}");
    let seen = forwarder.seen();
    assert_eq!(report.requests as usize, seen.len());
    let statuses: Vec<u16> = seen.iter().map(|s| s.status).collect();
    assert_eq!(&statuses[..2], [500, 429], "{seen:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 503).count(), 1);
    assert_eq!(
        hub.members("course::2031-fall-1001::students"),
        set(&["t10-a"])
    );
    assert_eq!(
        hub.members("course::2031-fall-1001::instructors"),
        set(&["t10-b"])
    );
}

#[test]
fn retries_run_out_and_stop_all_hub_work() {
    let hub = hub();
    let forwarder = Forwarder::new(&hub.api, |_, _, _| Action::Status(502, false));
    let config = hub.config(&forwarder.api, &hub.sync_token);
    let desired = rosters(&[("2031-fall-1101", &["t11-a@berkeley.edu"], &[])]);
    let report = sync(&config, &CourseRosters::new(), &desired, &[], false);
    let error = report.error.clone().expect("an error");
    assert!(
        error.contains("listing hub users: gave up after 4 attempts, last: HTTP 502"),
        "{error}"
    );
    assert_eq!(report.requests, 4);
    assert_eq!(forwarder.seen().len(), 4);
}

#[test]
fn a_redirect_is_not_followed_and_the_token_stays_with_the_hub() {
    let hub = hub();
    let elsewhere = Forwarder::recording(&hub.api);
    let location = format!("{}/users", elsewhere.api);
    let forwarder = Forwarder::new(&hub.api, move |_, _, _| Action::Redirect(location.clone()));
    let config = hub.config(&forwarder.api, &hub.sync_token);
    let desired = rosters(&[("2031-fall-1201", &["t12-a@berkeley.edu"], &[])]);
    let report = sync(&config, &CourseRosters::new(), &desired, &[], false);
    let error = report.error.clone().expect("an error");
    assert!(error.contains("unexpected HTTP status 307"), "{error}");
    assert_eq!(report.requests, 1);
    assert!(elsewhere.seen().is_empty(), "{:?}", elsewhere.seen());
}

#[test]
fn a_refused_membership_change_fails_that_group_only_and_names_no_one() {
    let hub = hub();
    hub.create_users(&["t13-a", "t13-gone", "t13-b"]);
    let config = hub.sync_config();
    let first = rosters(&[
        ("2031-fall-1301", &["t13-a@berkeley.edu"], &[]),
        ("2031-fall-1302", &["t13-b@berkeley.edu"], &[]),
    ]);
    assert_eq!(
        sync(&config, &CourseRosters::new(), &first, &[], false).error,
        None
    );
    // `t13-gone` is deleted from the hub between roster-sync's listing and its request:
    // the hub then refuses the whole membership request (HTTP 400).
    let forwarder = Forwarder::new(&hub.api, move |_, method, url| {
        if method == "POST" && url.contains("2031-fall-1301") {
            crate::jupyterhub::hub().delete_user("t13-gone");
        }
        Action::Forward
    });
    let config = hub.config(&forwarder.api, &hub.sync_token);
    let second = rosters(&[
        (
            "2031-fall-1301",
            &["t13-a@berkeley.edu", "t13-gone@berkeley.edu"],
            &[],
        ),
        (
            "2031-fall-1302",
            &["t13-b@berkeley.edu", "t13-a@berkeley.edu"],
            &[],
        ),
    ]);
    let report = sync(&config, &first, &second, &[], false);
    let error = report.error.clone().expect("an error");
    assert_eq!(
        error,
        "adding 1 members to hub group course::2031-fall-1301::students: the hub answered HTTP 400"
    );
    assert_no_people(&error, &["t13-gone", "t13-a", "t13-b"]);
    assert_eq!(report.added, 1, "{report:?}");
    assert_eq!(
        hub.members("course::2031-fall-1302::students"),
        set(&["t13-a", "t13-b"])
    );
    assert_eq!(
        hub.members("course::2031-fall-1301::students"),
        set(&["t13-a"])
    );
}

#[test]
fn a_group_created_meanwhile_ends_the_run_with_exactly_its_members() {
    let hub = hub();
    hub.create_users(&["t14-a", "t14-b"]);
    // Someone creates the group between roster-sync's listing and its request (as a
    // retried request that had in fact succeeded would): the hub answers 409.
    let forwarder = Forwarder::new(&hub.api, |_, method, url| {
        if method == "POST" && url == "/hub/api/groups/course%3A%3A2031-fall-1401%3A%3Astudents" {
            crate::jupyterhub::hub().create_group("course::2031-fall-1401::students", &["t14-b"]);
        }
        Action::Forward
    });
    let config = hub.config(&forwarder.api, &hub.sync_token);
    let desired = rosters(&[("2031-fall-1401", &["t14-a@berkeley.edu"], &[])]);
    let report = sync(&config, &CourseRosters::new(), &desired, &[], false);
    assert_eq!(report.error, None, "{report:?}");
    assert!(
        forwarder.seen().iter().any(|s| s.status == 409),
        "{:?}",
        forwarder.seen()
    );
    // Created only the instructors' group; the students' group, read after the 409, got
    // its member added and lost the stranger it had, in the same run.
    assert_eq!(
        (report.created, report.added, report.removed),
        (1, 1, 1),
        "{report:?}"
    );
    assert_eq!(
        hub.members("course::2031-fall-1401::students"),
        set(&["t14-a"])
    );
    let next = sync(&hub.sync_config(), &desired, &desired, &[], false);
    assert_eq!(
        (next.added, next.removed, next.error.as_deref()),
        (0, 0, None),
        "{next:?}"
    );
    assert_eq!(
        hub.members("course::2031-fall-1401::students"),
        set(&["t14-a"])
    );
}
