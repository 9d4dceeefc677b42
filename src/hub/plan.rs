//! The pure half of the groups sync: from the rosters and what the hub holds, which
//! groups to create, which members to add and remove, which groups to delete. No I/O.
//!
//! Invariants:
//! - only groups named by the template for a managed course (a key of `desired`) or a
//!   pruned course are ever changed; every other group is left alone, whatever its name;
//! - a group is planned to hold exactly the usernames of its roster that exist in the hub:
//!   users are never created, and a username the hub does not know is never sent (the hub
//!   rejects a whole membership request for one unknown name);
//! - the plan is deterministic: groups in name order, usernames sorted.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::roster::{List, Roster};

/// course key → list → the addresses of that list, as recorded in the audit HEAD.
pub type CourseRosters = BTreeMap<String, BTreeMap<List, Roster>>;

/// The default of `--hub-group-template`.
pub const DEFAULT_GROUP_TEMPLATE: &str = "course::{key}::{list}";

/// A validated group name template: holds `{key}` and `{list}`, no other `{...}`
/// placeholder, no `/` and no control character.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupTemplate(String);

/// Why a group template was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidTemplate {
    template: String,
    reason: &'static str,
}

impl fmt::Display for InvalidTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid hub group template {:?}: {}",
            self.template, self.reason
        )
    }
}

impl std::error::Error for InvalidTemplate {}

/// Two lists whose groups the template names alike: one group cannot hold both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedGroup {
    template: String,
    name: String,
    first: (String, List),
    second: (String, List),
}

impl fmt::Display for SharedGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hub group template {:?} gives the same group {:?} to {} {} and {} {}",
            self.template, self.name, self.first.0, self.first.1, self.second.0, self.second.1
        )
    }
}

impl std::error::Error for SharedGroup {}

impl GroupTemplate {
    pub fn parse(template: &str) -> Result<GroupTemplate, InvalidTemplate> {
        let problem = |reason| {
            Err(InvalidTemplate {
                template: template.to_string(),
                reason,
            })
        };
        if !template.contains("{key}") || !template.contains("{list}") {
            return problem("it must contain both {key} and {list}");
        }
        let rest = template.replace("{key}", "").replace("{list}", "");
        if rest.contains('{') || rest.contains('}') {
            return problem("the only placeholders are {key} and {list}");
        }
        if template.contains('/') {
            return problem("a group name cannot contain '/'");
        }
        if template.chars().any(char::is_control) {
            return problem("it holds a control character");
        }
        Ok(GroupTemplate(template.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The group name of one list of a course. One pass: a `{list}` inside the key is
    /// not substituted again.
    pub fn render(&self, key: &str, list: List) -> String {
        let mut name = String::with_capacity(self.0.len() + key.len() + 11);
        let mut rest = self.0.as_str();
        while let Some(start) = rest.find('{') {
            name.push_str(&rest[..start]);
            rest = &rest[start..];
            if let Some(after) = rest.strip_prefix("{key}") {
                name.push_str(key);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("{list}") {
                name.push_str(list.name());
                rest = after;
            } else {
                // `parse` admits no other brace.
                name.push('{');
                rest = &rest[1..];
            }
        }
        name.push_str(rest);
        name
    }
}

impl Default for GroupTemplate {
    fn default() -> Self {
        GroupTemplate(DEFAULT_GROUP_TEMPLATE.to_string())
    }
}

impl fmt::Display for GroupTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The hub username of a roster address: `local` for `local@{domain}` (domain compared
/// case-insensitively, a leading `@` in `domain` ignored), the whole address when `domain`
/// is empty, `None` for an address in another domain.
pub fn username<'a>(address: &'a str, domain: &str) -> Option<&'a str> {
    let domain = domain.trim().trim_start_matches('@');
    if domain.is_empty() {
        return (!address.is_empty()).then_some(address);
    }
    let (local, address_domain) = address.rsplit_once('@')?;
    (!local.is_empty() && address_domain.eq_ignore_ascii_case(domain)).then_some(local)
}

/// What the hub holds, as read at the start of a sync.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HubState {
    pub users: BTreeSet<String>,
    /// Group name → its members' usernames.
    pub groups: BTreeMap<String, BTreeSet<String>>,
}

/// The change planned for one managed group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupChange {
    pub name: String,
    /// The group does not exist yet: create it (with `add` as its first members).
    pub create: bool,
    pub add: Vec<String>,
    pub remove: Vec<String>,
    /// The hub's members differ from the last synced state other than by the roster change.
    pub drift: bool,
}

impl GroupChange {
    pub fn is_noop(&self) -> bool {
        !self.create && self.add.is_empty() && self.remove.is_empty()
    }
}

/// Everything a sync would do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// One entry per managed group (changed or not), in name order.
    pub groups: Vec<GroupChange>,
    /// Groups of pruned courses that exist in the hub, in name order.
    pub delete: Vec<String>,
    /// Distinct usernames of the managed rosters that the hub does not know.
    pub not_in_hub: usize,
    /// Distinct addresses of the managed rosters outside the username domain.
    pub outside_domain: usize,
}

impl Plan {
    pub fn added(&self) -> usize {
        self.groups.iter().map(|g| g.add.len()).sum()
    }
    pub fn removed(&self) -> usize {
        self.groups.iter().map(|g| g.remove.len()).sum()
    }
    pub fn created(&self) -> usize {
        self.groups.iter().filter(|g| g.create).count()
    }
    pub fn drift(&self) -> usize {
        self.groups.iter().filter(|g| g.drift).count()
    }
}

/// The managed groups: `(group name, course key, list)` for every list of every course in
/// `desired`, in name order. Fails when two lists would share a group name.
pub fn managed_groups(
    template: &GroupTemplate,
    desired: &CourseRosters,
) -> Result<Vec<(String, String, List)>, SharedGroup> {
    let mut names: BTreeMap<String, (String, List)> = BTreeMap::new();
    for (key, lists) in desired {
        for &list in lists.keys() {
            let name = template.render(key, list);
            if let Some(first) = names.insert(name.clone(), (key.clone(), list)) {
                return Err(SharedGroup {
                    template: template.to_string(),
                    name,
                    first,
                    second: (key.clone(), list),
                });
            }
        }
    }
    Ok(names
        .into_iter()
        .map(|(name, (key, list))| (name, key, list))
        .collect())
}

/// The group names of the `pruned` courses that `desired` does not keep, in name order.
pub fn pruned_groups(
    template: &GroupTemplate,
    desired: &CourseRosters,
    pruned: &[String],
) -> BTreeSet<String> {
    pruned
        .iter()
        .filter(|key| !desired.contains_key(*key))
        .flat_map(|key| List::BOTH.map(|list| template.render(key, list)))
        .collect()
}

/// Plans the sync.
///
/// Drift rule, per managed group: it counts once when it holds a member that is in neither
/// the previous nor the desired roster (added out of band), or lacks a hub user that both
/// the previous and the desired roster hold (removed out of band; it is restored). A user
/// who first appears in the hub after their roster was synced therefore shows as drift
/// once, at the run that adds them; so does a group deleted out of band that had members.
///
/// A course in both `desired` and `pruned` is kept (desired wins); a list missing from a
/// course's map in `desired` is not managed.
pub fn plan(
    template: &GroupTemplate,
    domain: &str,
    previous: &CourseRosters,
    desired: &CourseRosters,
    pruned: &[String],
    hub: &HubState,
) -> Result<Plan, SharedGroup> {
    let empty_roster = Roster::default();
    let empty_group = BTreeSet::new();
    let mut not_in_hub = BTreeSet::new();
    let mut outside_domain = BTreeSet::new();
    let mut groups = Vec::new();
    for (name, key, list) in managed_groups(template, desired)? {
        let roster = &desired[&key][&list];
        let mut wanted = BTreeSet::new();
        for address in roster.iter() {
            match username(address, domain) {
                Some(user) => {
                    wanted.insert(user);
                }
                None => {
                    outside_domain.insert(address);
                }
            }
        }
        let before: BTreeSet<&str> = previous
            .get(&key)
            .and_then(|lists| lists.get(&list))
            .unwrap_or(&empty_roster)
            .iter()
            .filter_map(|address| username(address, domain))
            .collect();
        let existing = hub.groups.get(&name);
        let members = existing.unwrap_or(&empty_group);
        let mut add = Vec::new();
        let mut drift = false;
        for &user in &wanted {
            if !hub.users.contains(user) {
                not_in_hub.insert(user);
            } else if !members.contains(user) {
                add.push(user.to_string());
                drift |= before.contains(user);
            }
        }
        let mut remove = Vec::new();
        for member in members {
            if !wanted.contains(member.as_str()) {
                remove.push(member.clone());
                drift |= !before.contains(member.as_str());
            }
        }
        groups.push(GroupChange {
            name,
            create: existing.is_none(),
            add,
            remove,
            drift,
        });
    }
    let delete = pruned_groups(template, desired, pruned)
        .into_iter()
        .filter(|name| hub.groups.contains_key(name))
        .collect();
    Ok(Plan {
        groups,
        delete,
        not_in_hub: not_in_hub.len(),
        outside_domain: outside_domain.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rosters(courses: &[(&str, &[&str], &[&str])]) -> CourseRosters {
        courses
            .iter()
            .map(|(key, students, instructors)| {
                let lists = BTreeMap::from([
                    (List::Students, Roster::from_raw(students.iter().copied())),
                    (
                        List::Instructors,
                        Roster::from_raw(instructors.iter().copied()),
                    ),
                ]);
                (key.to_string(), lists)
            })
            .collect()
    }

    fn hub(users: &[&str], groups: &[(&str, &[&str])]) -> HubState {
        HubState {
            users: users.iter().map(|u| u.to_string()).collect(),
            groups: groups
                .iter()
                .map(|(name, members)| {
                    (
                        name.to_string(),
                        members.iter().map(|m| m.to_string()).collect(),
                    )
                })
                .collect(),
        }
    }

    fn plan_default(
        previous: &CourseRosters,
        desired: &CourseRosters,
        pruned: &[&str],
        hub: &HubState,
    ) -> Plan {
        let pruned: Vec<String> = pruned.iter().map(|p| p.to_string()).collect();
        plan(
            &GroupTemplate::default(),
            "berkeley.edu",
            previous,
            desired,
            &pruned,
            hub,
        )
        .unwrap()
    }

    fn group<'a>(plan: &'a Plan, name: &str) -> &'a GroupChange {
        plan.groups.iter().find(|g| g.name == name).unwrap()
    }

    #[test]
    fn template_needs_both_placeholders_and_nothing_else() {
        let template = GroupTemplate::default();
        assert_eq!(
            template.render("2019-fall-23970", List::Instructors),
            "course::2019-fall-23970::instructors"
        );
        let custom = GroupTemplate::parse("{list} of {key} ({list})").unwrap();
        assert_eq!(
            custom.render("k", List::Students),
            "students of k (students)"
        );
        assert_eq!(
            template.render("{list}", List::Students),
            "course::{list}::students"
        );
        for bad in [
            "course-{key}",
            "{list}",
            "{key}-{list}-{term}",
            "{key}/{list}",
            "{key}{list}\n",
            "",
        ] {
            assert!(GroupTemplate::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn usernames_come_from_the_configured_domain_only() {
        assert_eq!(
            username("alice@berkeley.edu", "berkeley.edu"),
            Some("alice")
        );
        assert_eq!(
            username("alice@Berkeley.EDU", "berkeley.edu"),
            Some("alice")
        );
        assert_eq!(
            username("alice@berkeley.edu", "@BERKELEY.edu"),
            Some("alice")
        );
        assert_eq!(username("alice@cs.berkeley.edu", "berkeley.edu"), None);
        assert_eq!(username("alice@gmail.com", "berkeley.edu"), None);
        assert_eq!(username("@berkeley.edu", "berkeley.edu"), None);
        assert_eq!(username("no-at-sign", "berkeley.edu"), None);
        assert_eq!(username("a@b@berkeley.edu", "berkeley.edu"), Some("a@b"));
        assert_eq!(username("alice@gmail.com", ""), Some("alice@gmail.com"));
    }

    #[test]
    fn new_groups_get_the_existing_users_of_their_roster() {
        let desired = rosters(&[(
            "2019-fall-1",
            &[
                "a@berkeley.edu",
                "b@berkeley.edu",
                "ghost@berkeley.edu",
                "x@gmail.com",
            ],
            &["prof@berkeley.edu"],
        )]);
        let plan = plan_default(
            &CourseRosters::new(),
            &desired,
            &[],
            &hub(&["a", "b", "prof", "unrelated"], &[]),
        );
        assert_eq!(plan.groups.len(), 2);
        let students = group(&plan, "course::2019-fall-1::students");
        assert!(students.create && !students.drift);
        assert_eq!(students.add, ["a", "b"]);
        assert!(students.remove.is_empty());
        assert_eq!(
            group(&plan, "course::2019-fall-1::instructors").add,
            ["prof"]
        );
        assert_eq!((plan.added(), plan.removed(), plan.created()), (3, 0, 2));
        assert_eq!(
            (plan.not_in_hub, plan.outside_domain, plan.drift()),
            (1, 1, 0)
        );
    }

    #[test]
    fn an_up_to_date_hub_needs_nothing() {
        let desired = rosters(&[("k", &["a@berkeley.edu"], &[])]);
        let plan = plan_default(
            &desired,
            &desired,
            &[],
            &hub(
                &["a"],
                &[
                    ("course::k::students", &["a"]),
                    ("course::k::instructors", &[]),
                ],
            ),
        );
        assert!(plan.groups.iter().all(GroupChange::is_noop), "{plan:?}");
        assert_eq!(plan.drift(), 0);
    }

    #[test]
    fn roster_changes_are_not_drift() {
        let previous = rosters(&[("k", &["a@berkeley.edu", "b@berkeley.edu"], &[])]);
        let desired = rosters(&[("k", &["b@berkeley.edu", "c@berkeley.edu"], &[])]);
        let plan = plan_default(
            &previous,
            &desired,
            &[],
            &hub(
                &["a", "b", "c"],
                &[
                    ("course::k::students", &["a", "b"]),
                    ("course::k::instructors", &[]),
                ],
            ),
        );
        let students = group(&plan, "course::k::students");
        assert_eq!(
            (students.add.as_slice(), students.remove.as_slice()),
            (&["c".to_string()][..], &["a".to_string()][..])
        );
        assert_eq!(plan.drift(), 0);
    }

    #[test]
    fn out_of_band_changes_count_once_per_group() {
        let synced = rosters(&[(
            "k",
            &["a@berkeley.edu", "b@berkeley.edu"],
            &["p@berkeley.edu"],
        )]);
        // students: `intruder` added by hand and `b` removed by hand; instructors: untouched.
        let hub = hub(
            &["a", "b", "p", "intruder"],
            &[
                ("course::k::students", &["a", "intruder"]),
                ("course::k::instructors", &["p"]),
            ],
        );
        let plan = plan_default(&synced, &synced, &[], &hub);
        let students = group(&plan, "course::k::students");
        assert_eq!(students.add, ["b"]);
        assert_eq!(students.remove, ["intruder"]);
        assert!(students.drift);
        assert_eq!(plan.drift(), 1);

        // Removed by hand, but the roster drops them too: nothing to restore, no drift.
        let desired = rosters(&[("k", &["a@berkeley.edu"], &["p@berkeley.edu"])]);
        let hub_b_gone = HubState {
            groups: BTreeMap::from([
                (
                    "course::k::students".to_string(),
                    BTreeSet::from(["a".to_string()]),
                ),
                (
                    "course::k::instructors".to_string(),
                    BTreeSet::from(["p".to_string()]),
                ),
            ]),
            ..hub.clone()
        };
        assert_eq!(plan_default(&synced, &desired, &[], &hub_b_gone).drift(), 0);
    }

    #[test]
    fn a_user_who_joins_the_hub_late_shows_as_drift_once() {
        let synced = rosters(&[("k", &["a@berkeley.edu", "late@berkeley.edu"], &[])]);
        let hub = hub(
            &["a", "late"],
            &[
                ("course::k::students", &["a"]),
                ("course::k::instructors", &[]),
            ],
        );
        let plan = plan_default(&synced, &synced, &[], &hub);
        assert_eq!(group(&plan, "course::k::students").add, ["late"]);
        assert_eq!(plan.drift(), 1);
    }

    #[test]
    fn a_group_deleted_out_of_band_is_recreated() {
        let synced = rosters(&[("k", &["a@berkeley.edu"], &[])]);
        let plan = plan_default(
            &synced,
            &synced,
            &[],
            &hub(&["a"], &[("course::k::instructors", &[])]),
        );
        let students = group(&plan, "course::k::students");
        assert!(students.create && students.drift);
        assert_eq!(students.add, ["a"]);
        assert!(!group(&plan, "course::k::instructors").create);
    }

    #[test]
    fn prune_deletes_only_existing_groups_of_pruned_courses() {
        let desired = rosters(&[("kept", &[], &[])]);
        let hub = hub(
            &[],
            &[
                ("course::gone::students", &["a"]),
                ("course::gone::instructors", &[]),
                ("course::half::students", &[]),
                ("course::kept::students", &[]),
                ("course::other::students", &[]),
                ("other-team", &[]),
            ],
        );
        let plan = plan_default(
            &desired,
            &desired,
            &["gone", "half", "kept", "absent"],
            &hub,
        );
        assert_eq!(
            plan.delete,
            [
                "course::gone::instructors",
                "course::gone::students",
                "course::half::students"
            ]
        );
        let managed: Vec<&str> = plan.groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(
            managed,
            ["course::kept::instructors", "course::kept::students"]
        );
    }

    #[test]
    fn counts_are_of_distinct_people() {
        let desired = rosters(&[
            (
                "k1",
                &["ghost@berkeley.edu", "x@gmail.com"],
                &["ghost@berkeley.edu"],
            ),
            (
                "k2",
                &["ghost@berkeley.edu", "x@gmail.com", "y@gmail.com"],
                &[],
            ),
        ]);
        let plan = plan_default(&CourseRosters::new(), &desired, &[], &hub(&[], &[]));
        assert_eq!((plan.not_in_hub, plan.outside_domain), (1, 2));
    }

    #[test]
    fn whole_addresses_with_an_empty_domain() {
        let desired = rosters(&[("k", &["a@gmail.com", "b@berkeley.edu"], &[])]);
        let plan = plan(
            &GroupTemplate::default(),
            "",
            &CourseRosters::new(),
            &desired,
            &[],
            &hub(&["a@gmail.com", "b@berkeley.edu"], &[]),
        )
        .unwrap();
        assert_eq!(
            group(&plan, "course::k::students").add,
            ["a@gmail.com", "b@berkeley.edu"]
        );
        assert_eq!(plan.outside_domain, 0);
    }
}
