//! Planning: what every course's files become, decided without any I/O.
//!
//! Inputs are the fetched rosters, the audit repository's HEAD tree and the guard
//! policy; the output is the tree to commit and, per course, a status with the counts
//! the report and the commit message show. Invariants:
//! - a failed or guarded course keeps exactly its HEAD files;
//! - a course seen for the first time is never guarded;
//! - a course that is no longer configured keeps its files unless pruning was asked for,
//!   and pruning itself is held back by the same shrink guard, counted in courses.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::config::{Course, KeyKind};
use crate::fetch::Fetched;
use crate::roster::{Change, List, Roster};

/// File name → content, as committed in the audit repository and written on disk.
pub type Tree = BTreeMap<String, Vec<u8>>;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuardPolicy {
    pub max_removal_percent: u8,
    pub min_size: usize,
    /// Course keys whose guarded change may go through.
    pub approvals: BTreeSet<String>,
}

impl GuardPolicy {
    /// Why shrinking from `before` members by `removed` to `after` must be held back.
    fn trips(&self, before: usize, removed: usize, after: usize) -> Option<String> {
        if before > 0 && after == 0 {
            return Some(format!("would drop all {before}"));
        }
        let percent = removed.saturating_mul(100);
        let limit = usize::from(self.max_removal_percent).saturating_mul(before);
        (before >= self.min_size && percent > limit).then(|| {
            format!(
                "would drop {removed} of {before} ({}%, more than {}%)",
                percent / before,
                self.max_removal_percent
            )
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Unchanged,
    Updated,
    Created,
    Failed,
    Guarded,
    Pruned,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Unchanged => "unchanged",
            Status::Updated => "updated",
            Status::Created => "created",
            Status::Failed => "failed",
            Status::Guarded => "guarded",
            Status::Pruned => "pruned",
        }
    }

    /// Whether this course's files change in the committed tree.
    pub fn changes_files(self) -> bool {
        matches!(self, Status::Updated | Status::Created | Status::Pruned)
    }
}

/// One list of a course: its size after the run (or kept size) and the change applied,
/// to be applied, or held back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListPlan {
    pub count: usize,
    pub added: usize,
    pub removed: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoursePlan {
    pub key: String,
    pub term_id: Option<u32>,
    pub status: Status,
    pub students: ListPlan,
    pub instructors: ListPlan,
    pub no_email: usize,
    /// Why the course failed or was guarded.
    pub error: Option<String>,
    /// The guard this course's change tripped, when an approval let it through.
    pub approved: Option<String>,
}

impl CoursePlan {
    pub fn list(&self, list: List) -> &ListPlan {
        match list {
            List::Students => &self.students,
            List::Instructors => &self.instructors,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub courses: Vec<CoursePlan>,
    /// The tree to commit and to publish.
    pub tree: Tree,
    /// Courses in HEAD that are no longer configured and keep their files.
    pub unconfigured: Vec<String>,
}

/// The previous lists of each course in a tree; a list without a file reads as absent.
fn rosters_in(tree: &Tree) -> BTreeMap<&str, BTreeMap<List, Roster>> {
    let mut courses: BTreeMap<&str, BTreeMap<List, Roster>> = BTreeMap::new();
    for (name, content) in tree {
        if let Some((key, list)) = List::parse_file_name(name) {
            courses
                .entry(key)
                .or_default()
                .insert(list, Roster::parse(content));
        }
    }
    courses
}

fn term_id_of(key: &str) -> Option<u32> {
    match Course::classify(key) {
        KeyKind::Course(course) => Some(course.term_id),
        _ => None,
    }
}

/// Decides every course's outcome. `fetched` pairs each configured course with what
/// fetching it gave.
pub fn plan(fetched: &[(Course, Fetched)], head: &Tree, policy: &GuardPolicy, prune: bool) -> Plan {
    let previous = rosters_in(head);
    let mut tree = head.clone();
    let mut courses = Vec::new();
    let empty = BTreeMap::new();
    for (course, outcome) in fetched {
        let before = previous.get(course.key.as_str()).unwrap_or(&empty);
        let kept = |list| ListPlan {
            count: before.get(&list).map_or(0, Roster::len),
            ..ListPlan::default()
        };
        let mut entry = CoursePlan {
            key: course.key.clone(),
            term_id: Some(course.term_id),
            status: Status::Unchanged,
            students: kept(List::Students),
            instructors: kept(List::Instructors),
            no_email: 0,
            error: None,
            approved: None,
        };
        let rosters = match outcome {
            Fetched::Failed(reason) => {
                entry.status = Status::Failed;
                entry.error = Some(reason.clone());
                courses.push(entry);
                continue;
            }
            Fetched::Complete(rosters) => rosters,
        };
        entry.no_email = rosters.no_email;
        let next = [
            (List::Students, &rosters.students),
            (List::Instructors, &rosters.instructors),
        ];
        let mut trips = Vec::new();
        let mut changed = false;
        for (list, roster) in next {
            let change = before.get(&list).map_or(
                Change {
                    added: roster.len(),
                    removed: 0,
                },
                |old| old.changes_to(roster),
            );
            changed |= before.get(&list) != Some(roster);
            if let Some(why) = before
                .get(&list)
                .and_then(|old| policy.trips(old.len(), change.removed, roster.len()))
            {
                trips.push(format!("{list} {why}"));
            }
            let plan = ListPlan {
                count: roster.len(),
                added: change.added,
                removed: change.removed,
            };
            match list {
                List::Students => entry.students = plan,
                List::Instructors => entry.instructors = plan,
            }
        }
        let guard = (!trips.is_empty()).then(|| trips.join("; "));
        entry.status = match (&guard, policy.approvals.contains(&course.key)) {
            (Some(why), false) => {
                entry.status = Status::Guarded;
                entry.error = Some(format!(
                    "held back: {why}; approve with --approve {}",
                    course.key
                ));
                entry.students.count = kept(List::Students).count;
                entry.instructors.count = kept(List::Instructors).count;
                courses.push(entry);
                continue;
            }
            (Some(why), true) => {
                entry.approved = Some(why.clone());
                Status::Updated
            }
            (None, _) if before.is_empty() => Status::Created,
            (None, _) if changed => Status::Updated,
            (None, _) => Status::Unchanged,
        };
        for (list, roster) in next {
            tree.insert(list.file_name(&course.key), roster.render());
        }
        courses.push(entry);
    }

    let configured: BTreeSet<&str> = fetched
        .iter()
        .map(|(course, _)| course.key.as_str())
        .collect();
    let unconfigured: Vec<&str> = previous
        .keys()
        .copied()
        .filter(|key| !configured.contains(key))
        .collect();
    if !prune {
        return Plan {
            courses,
            tree,
            unconfigured: unconfigured.into_iter().map(str::to_string).collect(),
        };
    }
    let prune_guard = policy.trips(
        previous.len(),
        unconfigured.len(),
        previous.len() - unconfigured.len(),
    );
    for key in unconfigured {
        let lists = &previous[key];
        let gone = |list| ListPlan {
            count: 0,
            added: 0,
            removed: lists.get(&list).map_or(0, Roster::len),
        };
        let mut entry = CoursePlan {
            key: key.to_string(),
            term_id: term_id_of(key),
            status: Status::Pruned,
            students: gone(List::Students),
            instructors: gone(List::Instructors),
            no_email: 0,
            error: None,
            approved: None,
        };
        match (&prune_guard, policy.approvals.contains(key)) {
            (Some(why), false) => {
                entry.status = Status::Guarded;
                entry.error = Some(format!(
                    "pruning held back: removing these courses {why} courses in the audit \
                     repository; approve with --approve {key}"
                ));
                entry.students.count = entry.students.removed;
                entry.instructors.count = entry.instructors.removed;
            }
            (guard, _) => {
                entry.approved = guard.as_ref().map(|why| format!("pruning {why} courses"));
                for list in List::BOTH {
                    tree.remove(&list.file_name(key));
                }
            }
        }
        courses.push(entry);
    }
    Plan {
        courses,
        tree,
        unconfigured: Vec::new(),
    }
}

impl Plan {
    /// The audit commit message, or `None` when the tree is the same as `head`.
    pub fn commit_message(&self, head: &Tree, run_id: &str, version: &str) -> Option<String> {
        if self.tree == *head {
            return None;
        }
        let changed: Vec<&CoursePlan> = self
            .courses
            .iter()
            .filter(|course| course.status.changes_files())
            .filter(|course| {
                List::BOTH.into_iter().any(|list| {
                    let name = list.file_name(&course.key);
                    head.get(&name) != self.tree.get(&name)
                })
            })
            .collect();
        let (added, removed) = changed
            .iter()
            .flat_map(|c| [c.students, c.instructors])
            .fold((0, 0), |(added, removed), list| {
                (added + list.added, removed + list.removed)
            });
        let noun = if changed.len() == 1 {
            "course"
        } else {
            "courses"
        };
        let mut message = format!(
            "roster-sync: {} {noun} changed (+{added} -{removed})\n\n",
            changed.len()
        );
        for course in &changed {
            for list in List::BOTH {
                let name = list.file_name(&course.key);
                if head.get(&name) == self.tree.get(&name) {
                    continue;
                }
                let plan = course.list(list);
                let _ = write!(
                    message,
                    "{} {list}: +{} -{}, {} members",
                    course.key, plan.added, plan.removed, plan.count
                );
                message += match course.status {
                    Status::Pruned => " (pruned)\n",
                    Status::Created => " (new)\n",
                    _ => "\n",
                };
            }
        }
        let approved: Vec<&CoursePlan> = changed
            .iter()
            .copied()
            .filter(|c| c.approved.is_some())
            .collect();
        if !approved.is_empty() {
            message += "\n";
            for course in approved {
                let _ = writeln!(
                    message,
                    "Approved: {} ({})",
                    course.key,
                    course.approved.as_deref().unwrap_or_default()
                );
            }
        }
        let _ = write!(
            message,
            "\nRoster-Sync-Run-Id: {run_id}\nRoster-Sync-Version: {version}\n"
        );
        Some(message)
    }
}

/// A managed file as found in the output directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OnDisk {
    Missing,
    File(Vec<u8>),
    /// A symlink, directory or other non-regular file where a roster file belongs.
    NotAFile,
}

/// What publishing a tree needs, given what is on disk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconcile {
    /// Files to (re)write with their tree content.
    pub writes: Vec<String>,
    /// Files of pruned courses to remove.
    pub removals: Vec<String>,
    /// Files that differed from HEAD: changed out of band, to be restored.
    pub drift: Vec<String>,
}

/// Compares the directory with HEAD and with the tree to publish.
pub fn reconcile(head: &Tree, target: &Tree, disk: &BTreeMap<String, OnDisk>) -> Reconcile {
    let state = |name: &String| disk.get(name).unwrap_or(&OnDisk::Missing);
    let mut result = Reconcile::default();
    for (name, content) in target {
        let found = state(name);
        if !matches!(found, OnDisk::File(bytes) if bytes == content) {
            result.writes.push(name.clone());
        }
    }
    for (name, content) in head {
        let found = state(name);
        if target.contains_key(name) {
            if !matches!(found, OnDisk::File(bytes) if bytes == content) {
                result.drift.push(name.clone());
            }
        } else if *found != OnDisk::Missing {
            result.removals.push(name.clone());
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::Rosters;

    fn course(key: &str) -> Course {
        match Course::classify(key) {
            KeyKind::Course(course) => course,
            other => panic!("{key}: {other:?}"),
        }
    }

    fn addresses(prefix: &str, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("{prefix}{i:03}@berkeley.edu"))
            .collect()
    }

    fn roster(list: &[String]) -> Roster {
        Roster::from_raw(list.iter().map(String::as_str))
    }

    fn complete(students: &[String], instructors: &[String]) -> Fetched {
        Fetched::Complete(Rosters {
            students: roster(students),
            instructors: roster(instructors),
            no_email: 0,
        })
    }

    fn head_with(key: &str, students: &[String], instructors: &[String]) -> Tree {
        Tree::from([
            (List::Students.file_name(key), roster(students).render()),
            (
                List::Instructors.file_name(key),
                roster(instructors).render(),
            ),
        ])
    }

    fn policy() -> GuardPolicy {
        GuardPolicy {
            max_removal_percent: 30,
            min_size: 10,
            approvals: BTreeSet::new(),
        }
    }

    const KEY: &str = "2019-fall-23970";

    #[test]
    fn a_new_course_is_created_and_never_guarded() {
        let plan = plan(
            &[(course(KEY), complete(&addresses("s", 3), &[]))],
            &Tree::new(),
            &policy(),
            false,
        );
        assert_eq!(plan.courses[0].status, Status::Created);
        assert_eq!(
            plan.courses[0].students,
            ListPlan {
                count: 3,
                added: 3,
                removed: 0
            }
        );
        assert_eq!(plan.tree, head_with(KEY, &addresses("s", 3), &[]));
    }

    #[test]
    fn same_rosters_are_unchanged_and_changes_are_updates() {
        let head = head_with(KEY, &addresses("s", 20), &addresses("i", 2));
        let same = plan(
            &[(
                course(KEY),
                complete(&addresses("s", 20), &addresses("i", 2)),
            )],
            &head,
            &policy(),
            false,
        );
        assert_eq!(same.courses[0].status, Status::Unchanged);
        assert_eq!(same.tree, head);
        assert_eq!(same.commit_message(&head, "r", "v"), None);

        let grown = plan(
            &[(
                course(KEY),
                complete(&addresses("s", 25), &addresses("i", 2)),
            )],
            &head,
            &policy(),
            false,
        );
        assert_eq!(grown.courses[0].status, Status::Updated);
        assert_eq!(
            grown.courses[0].students,
            ListPlan {
                count: 25,
                added: 5,
                removed: 0
            }
        );
    }

    #[test]
    fn a_failed_course_keeps_its_files_and_counts() {
        let head = head_with(KEY, &addresses("s", 20), &addresses("i", 2));
        let plan = plan(
            &[(course(KEY), Fetched::Failed("boom".into()))],
            &head,
            &policy(),
            false,
        );
        let entry = &plan.courses[0];
        assert_eq!(entry.status, Status::Failed);
        assert_eq!(entry.error.as_deref(), Some("boom"));
        assert_eq!((entry.students.count, entry.instructors.count), (20, 2));
        assert_eq!(plan.tree, head);
    }

    #[test]
    fn the_shrink_guard_holds_back_large_removals_on_either_list() {
        let head = head_with(KEY, &addresses("s", 20), &addresses("i", 10));
        // 6 of 20 students removed: exactly 30%, allowed.
        let at_limit = plan(
            &[(
                course(KEY),
                complete(&addresses("s", 20)[6..], &addresses("i", 10)),
            )],
            &head,
            &policy(),
            false,
        );
        assert_eq!(at_limit.courses[0].status, Status::Updated);
        // 7 of 20: 35%, held back, files kept, change reported.
        let over = plan(
            &[(
                course(KEY),
                complete(&addresses("s", 20)[7..], &addresses("i", 10)),
            )],
            &head,
            &policy(),
            false,
        );
        let entry = &over.courses[0];
        assert_eq!(entry.status, Status::Guarded);
        assert_eq!(
            entry.students,
            ListPlan {
                count: 20,
                added: 0,
                removed: 7
            }
        );
        assert!(
            entry
                .error
                .as_deref()
                .unwrap()
                .contains("--approve 2019-fall-23970")
        );
        assert_eq!(over.tree, head);
        // Instructors are guarded too.
        let instructors = plan(
            &[(
                course(KEY),
                complete(&addresses("s", 20), &addresses("i", 10)[4..]),
            )],
            &head,
            &policy(),
            false,
        );
        assert_eq!(instructors.courses[0].status, Status::Guarded);
    }

    #[test]
    fn small_rosters_may_shrink_but_never_to_empty() {
        let head = head_with(KEY, &addresses("s", 9), &addresses("i", 1));
        let shrunk = plan(
            &[(
                course(KEY),
                complete(&addresses("s", 2), &addresses("i", 1)),
            )],
            &head,
            &policy(),
            false,
        );
        assert_eq!(shrunk.courses[0].status, Status::Updated);
        let emptied = plan(
            &[(course(KEY), complete(&addresses("s", 9), &[]))],
            &head,
            &policy(),
            false,
        );
        assert_eq!(emptied.courses[0].status, Status::Guarded);
        assert!(
            emptied.courses[0]
                .error
                .as_deref()
                .unwrap()
                .contains("instructors would drop all 1")
        );
    }

    #[test]
    fn an_approval_lets_a_guarded_change_through_and_is_recorded() {
        let head = head_with(KEY, &addresses("s", 20), &addresses("i", 2));
        let mut approving = policy();
        approving.approvals.insert(KEY.to_string());
        let plan = plan(
            &[(course(KEY), complete(&[], &addresses("i", 2)))],
            &head,
            &approving,
            false,
        );
        assert_eq!(plan.courses[0].status, Status::Updated);
        assert!(plan.courses[0].approved.is_some());
        let message = plan.commit_message(&head, "run-1", "0.1.0").unwrap();
        assert!(
            message.starts_with("roster-sync: 1 course changed (+0 -20)\n\n"),
            "{message}"
        );
        assert!(message.contains("Approved: 2019-fall-23970 (students would drop all 20)"));
        assert!(message.ends_with("\nRoster-Sync-Run-Id: run-1\nRoster-Sync-Version: 0.1.0\n"));
    }

    #[test]
    fn unconfigured_courses_are_kept_without_prune_and_removed_with_it() {
        let mut head = head_with(KEY, &addresses("s", 20), &addresses("i", 2));
        head.extend(head_with(
            "2019-fall-1",
            &addresses("t", 5),
            &addresses("i", 1),
        ));
        let configured = [(
            course(KEY),
            complete(&addresses("s", 20), &addresses("i", 2)),
        )];
        let kept = plan(&configured, &head, &policy(), false);
        assert_eq!(kept.tree, head);
        assert_eq!(kept.unconfigured, ["2019-fall-1"]);

        let pruned = plan(&configured, &head, &policy(), true);
        let entry = pruned
            .courses
            .iter()
            .find(|c| c.key == "2019-fall-1")
            .unwrap();
        assert_eq!(entry.status, Status::Pruned);
        assert_eq!(
            entry.students,
            ListPlan {
                count: 0,
                added: 0,
                removed: 5
            }
        );
        assert_eq!(entry.term_id, Some(2198));
        assert_eq!(
            pruned.tree,
            head_with(KEY, &addresses("s", 20), &addresses("i", 2))
        );
        let message = pruned.commit_message(&head, "r", "v").unwrap();
        assert!(
            message.starts_with("roster-sync: 1 course changed (+0 -6)"),
            "{message}"
        );
        assert!(message.contains("2019-fall-1 students: +0 -5, 0 members (pruned)"));
    }

    #[test]
    fn pruning_every_course_is_held_back_unless_approved() {
        let head = head_with(KEY, &addresses("s", 20), &addresses("i", 2));
        let held = plan(&[], &head, &policy(), true);
        assert_eq!(held.courses[0].status, Status::Guarded);
        assert_eq!(held.courses[0].students.count, 20);
        assert_eq!(held.tree, head);
        let mut approving = policy();
        approving.approvals.insert(KEY.to_string());
        let approved = plan(&[], &head, &approving, true);
        assert_eq!(approved.courses[0].status, Status::Pruned);
        assert!(approved.tree.is_empty());
    }

    #[test]
    fn commit_message_counts_every_changed_list() {
        let head = head_with(KEY, &addresses("s", 20), &addresses("i", 2));
        let fetched = [
            (
                course(KEY),
                complete(&addresses("s", 22)[1..], &addresses("i", 2)),
            ),
            (
                course("2021-fall-32244"),
                complete(&addresses("x", 3), &addresses("i", 1)),
            ),
        ];
        let plan = plan(&fetched, &head, &policy(), false);
        let message = plan.commit_message(&head, "r", "v").unwrap();
        assert!(
            message.starts_with("roster-sync: 2 courses changed (+6 -1)\n"),
            "{message}"
        );
        assert!(message.contains("2019-fall-23970 students: +2 -1, 21 members\n"));
        assert!(!message.contains("2019-fall-23970 instructors"));
        assert!(message.contains("2021-fall-32244 instructors: +1 -0, 1 members (new)\n"));
    }

    #[test]
    fn reconcile_restores_drift_and_removes_pruned_files() {
        let head = Tree::from([
            ("a-students.txt".to_string(), b"x\n".to_vec()),
            ("b-students.txt".to_string(), b"y\n".to_vec()),
            ("c-students.txt".to_string(), b"z\n".to_vec()),
            ("d-students.txt".to_string(), b"w\n".to_vec()),
        ]);
        let mut target = head.clone();
        target.remove("d-students.txt");
        target.insert("b-students.txt".into(), b"y2\n".to_vec());
        target.insert("e-students.txt".into(), b"new\n".to_vec());
        let disk = BTreeMap::from([
            (
                "a-students.txt".to_string(),
                OnDisk::File(b"edited\n".to_vec()),
            ),
            ("b-students.txt".to_string(), OnDisk::File(b"y\n".to_vec())),
            ("c-students.txt".to_string(), OnDisk::NotAFile),
            ("d-students.txt".to_string(), OnDisk::File(b"w\n".to_vec())),
        ]);
        let result = reconcile(&head, &target, &disk);
        assert_eq!(
            result.writes,
            [
                "a-students.txt",
                "b-students.txt",
                "c-students.txt",
                "e-students.txt"
            ]
        );
        assert_eq!(result.drift, ["a-students.txt", "c-students.txt"]);
        assert_eq!(result.removals, ["d-students.txt"]);
    }
}
