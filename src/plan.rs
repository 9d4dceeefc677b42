//! Planning: what every course's files become, decided without any I/O.
//!
//! Inputs are the fetched rosters, the audit repository's HEAD tree and the guard
//! policy; the output is the tree to commit and, per course, a [`Decision`] with the
//! counts the report and the commit message show. Invariants:
//! - a failed or guarded course keeps exactly its previous files;
//! - a course seen for the first time (no entry in HEAD, no roster file in the output
//!   directory) is never guarded; a course HEAD lacks but the directory holds (an audit
//!   repository lost or recreated) is guarded against the files on disk, and those files
//!   are what the commit records for it unless its change goes through;
//! - a course that is no longer configured keeps its files unless pruning was asked for,
//!   and pruning itself is held back by the same shrink guard, counted in courses.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

use serde::Serialize;

use crate::course::{Course, KeyKind};
use crate::guard::{GuardPolicy, Trip};
use crate::roster::{Change, List, Roster, Rosters};
use crate::source::FetchError;
use crate::tree::{Tree, rosters_in};

/// What a run did (or, in a dry run, would do) with a course.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Updated,
    Unchanged,
    Pruned,
    Guarded,
    Failed,
}

impl Status {
    /// Every status, in the order summaries and metrics list them.
    pub const ALL: [Status; 6] = [
        Status::Created,
        Status::Updated,
        Status::Unchanged,
        Status::Pruned,
        Status::Guarded,
        Status::Failed,
    ];

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
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The decision on one course, with what justifies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Created,
    /// Changed; `approved` holds the trips an `--approve` let through.
    Updated {
        approved: Vec<Trip>,
    },
    Unchanged,
    /// No longer configured, its files removed; `approved` holds the prune guard's trip
    /// when an `--approve` let it through.
    Pruned {
        approved: Option<Trip>,
    },
    /// The fetched change tripped the guard on these lists; HEAD's files are kept.
    Guarded(Vec<Trip>),
    /// Pruning tripped the guard, counted in courses; HEAD's files are kept.
    PruneGuarded(Trip),
    /// The fetch failed; HEAD's files are kept.
    Failed(FetchError),
    /// The course could not be synced for a reason of its own (a key without a term id,
    /// a file that cannot be published); its previous files are kept.
    NotSynced(String),
}

impl Decision {
    pub fn status(&self) -> Status {
        match self {
            Decision::Created => Status::Created,
            Decision::Updated { .. } => Status::Updated,
            Decision::Unchanged => Status::Unchanged,
            Decision::Pruned { .. } => Status::Pruned,
            Decision::Guarded(_) | Decision::PruneGuarded(_) => Status::Guarded,
            Decision::Failed(_) | Decision::NotSynced(_) => Status::Failed,
        }
    }

    /// Whether this course's files change in the committed tree.
    fn changes_files(&self) -> bool {
        matches!(
            self.status(),
            Status::Updated | Status::Created | Status::Pruned
        )
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
    pub decision: Decision,
    pub students: ListPlan,
    pub instructors: ListPlan,
    pub no_email: usize,
}

impl CoursePlan {
    pub fn status(&self) -> Status {
        self.decision.status()
    }

    pub fn list(&self, list: List) -> &ListPlan {
        match list {
            List::Students => &self.students,
            List::Instructors => &self.instructors,
        }
    }

    /// Why the course failed or was held back, for the report and the log.
    pub fn error(&self) -> Option<String> {
        let key = &self.key;
        match &self.decision {
            Decision::Failed(error) => Some(error.to_string()),
            Decision::NotSynced(reason) => Some(reason.clone()),
            Decision::Guarded(trips) => Some(format!(
                "held back: {}; approve with --approve {key}",
                Trips(trips)
            )),
            Decision::PruneGuarded(trip) => Some(format!(
                "pruning held back: removing these courses {trip} courses in the audit \
                 repository; approve with --approve {key}"
            )),
            _ => None,
        }
    }

    /// The guard an approval let through, when one did.
    pub fn approved(&self) -> Option<String> {
        match &self.decision {
            Decision::Updated { approved } if !approved.is_empty() => {
                Some(Trips(approved).to_string())
            }
            Decision::Pruned {
                approved: Some(trip),
            } => Some(format!("pruning {trip} courses")),
            _ => None,
        }
    }
}

/// Trips joined as one reason.
struct Trips<'a>(&'a [Trip]);

impl fmt::Display for Trips<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, trip) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            trip.fmt(f)?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub courses: Vec<CoursePlan>,
    /// The tree to commit and to publish.
    pub tree: Tree,
    /// Courses in HEAD that are no longer configured and keep their files.
    pub unconfigured: Vec<String>,
    /// The sizes of each planned course's previous lists (HEAD's, or the baseline's).
    kept: BTreeMap<String, [usize; 2]>,
}

/// What planning starts from besides the fetched rosters.
pub struct Previous<'a> {
    /// The roster entries of the audit HEAD.
    pub head: &'a Tree,
    /// The roster files found in the output directory for configured courses that HEAD
    /// has no entry for: the guards' baseline when the audit history was lost.
    pub baseline: &'a Tree,
}

/// Decides every course's outcome. `fetched` pairs each configured course with what
/// fetching it gave; `rejected` holds configured keys that cannot be synced, each with
/// its reason (they fail alone and keep their files).
pub fn plan(
    fetched: &[(Course, Result<Rosters, FetchError>)],
    rejected: &[(String, String)],
    previous: Previous<'_>,
    policy: &GuardPolicy,
    prune: bool,
) -> Plan {
    let previous_files = previous;
    let head = previous_files.head;
    let on_disk = rosters_in(previous_files.baseline);
    let previous = rosters_in(head);
    let mut tree = head.clone();
    let empty = BTreeMap::new();
    let mut kept = BTreeMap::new();
    let mut courses: Vec<CoursePlan> = fetched
        .iter()
        .map(|(course, outcome)| {
            let key = course.key.as_str();
            let before = match previous.get(key) {
                Some(lists) => lists,
                None => {
                    // The audit has no entry: the hub's files are the baseline, and
                    // what the audit records unless the change goes through.
                    for name in List::BOTH.map(|list| list.file_name(key)) {
                        if let Some(content) = previous_files.baseline.get(&name) {
                            tree.insert(name, content.clone());
                        }
                    }
                    on_disk.get(key).unwrap_or(&empty)
                }
            };
            kept.insert(key.to_string(), sizes(before));
            let planned = plan_course(course, outcome, before, policy);
            if planned.decision.changes_files() {
                let Ok(rosters) = outcome else {
                    unreachable!("only fetched courses change files")
                };
                for (list, roster) in rosters.lists() {
                    tree.insert(list.file_name(&course.key), roster.render());
                }
            }
            planned
        })
        .collect();
    for (key, reason) in rejected {
        let before = previous
            .get(key.as_str())
            .or_else(|| on_disk.get(key.as_str()))
            .unwrap_or(&empty);
        let [students, instructors] = sizes(before);
        let count = |count| ListPlan {
            count,
            ..ListPlan::default()
        };
        kept.insert(key.clone(), [students, instructors]);
        courses.push(CoursePlan {
            key: key.clone(),
            term_id: None,
            decision: Decision::NotSynced(reason.clone()),
            students: count(students),
            instructors: count(instructors),
            no_email: 0,
        });
    }

    let configured: BTreeSet<&str> = fetched
        .iter()
        .map(|(course, _)| course.key.as_str())
        .chain(rejected.iter().map(|(key, _)| key.as_str()))
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
            kept,
        };
    }
    let prune_trip = policy.check(
        None,
        previous.len(),
        unconfigured.len(),
        previous.len() - unconfigured.len(),
    );
    for key in unconfigured {
        let sizes = |list| previous[key].get(&list).map_or(0, Roster::len);
        kept.insert(
            key.to_string(),
            [sizes(List::Students), sizes(List::Instructors)],
        );
        let (decision, kept) = match &prune_trip {
            Some(trip) if !policy.approves(key) => (Decision::PruneGuarded(trip.clone()), true),
            approved => {
                for list in List::BOTH {
                    tree.remove(&list.file_name(key));
                }
                (
                    Decision::Pruned {
                        approved: approved.clone(),
                    },
                    false,
                )
            }
        };
        let gone = |list| ListPlan {
            count: if kept { sizes(list) } else { 0 },
            added: 0,
            removed: sizes(list),
        };
        courses.push(CoursePlan {
            key: key.to_string(),
            term_id: match Course::classify(key) {
                KeyKind::Course(course) => course.term_id,
                _ => None,
            },
            decision,
            students: gone(List::Students),
            instructors: gone(List::Instructors),
            no_email: 0,
        });
    }
    Plan {
        courses,
        tree,
        unconfigured: Vec::new(),
        kept,
    }
}

/// The sizes of a course's previous students and instructors lists.
fn sizes(before: &BTreeMap<List, Roster>) -> [usize; 2] {
    List::BOTH.map(|list| before.get(&list).map_or(0, Roster::len))
}

/// The decision on one configured course whose previous lists are `before`.
fn plan_course(
    course: &Course,
    outcome: &Result<Rosters, FetchError>,
    before: &BTreeMap<List, Roster>,
    policy: &GuardPolicy,
) -> CoursePlan {
    let kept = |list| ListPlan {
        count: before.get(&list).map_or(0, Roster::len),
        ..ListPlan::default()
    };
    let mut planned = CoursePlan {
        key: course.key.clone(),
        term_id: course.term_id,
        decision: Decision::Unchanged,
        students: kept(List::Students),
        instructors: kept(List::Instructors),
        no_email: 0,
    };
    let rosters = match outcome {
        Err(error) => {
            planned.decision = Decision::Failed(error.clone());
            return planned;
        }
        Ok(rosters) => rosters,
    };
    planned.no_email = rosters.no_email;
    let mut trips = Vec::new();
    let mut changed = false;
    for (list, roster) in rosters.lists() {
        let old = before.get(&list);
        let change = old.map_or(
            Change {
                added: roster.len(),
                removed: 0,
            },
            |old| old.changes_to(roster),
        );
        changed |= old != Some(roster);
        trips.extend(
            old.and_then(|old| policy.check(Some(list), old.len(), change.removed, roster.len())),
        );
        let counted = ListPlan {
            count: roster.len(),
            added: change.added,
            removed: change.removed,
        };
        match list {
            List::Students => planned.students = counted,
            List::Instructors => planned.instructors = counted,
        }
    }
    planned.decision = if !trips.is_empty() && !policy.approves(&course.key) {
        planned.students.count = kept(List::Students).count;
        planned.instructors.count = kept(List::Instructors).count;
        Decision::Guarded(trips)
    } else if !trips.is_empty() {
        Decision::Updated { approved: trips }
    } else if before.is_empty() {
        Decision::Created
    } else if changed {
        Decision::Updated {
            approved: Vec::new(),
        }
    } else {
        Decision::Unchanged
    };
    planned
}

impl Plan {
    /// Fails `key` after planning (its files could not be published): it keeps its
    /// HEAD files in the tree to commit, and reports its previous sizes and `reason`.
    pub fn fail(&mut self, key: &str, reason: String, head: &Tree) {
        for list in List::BOTH {
            let name = list.file_name(key);
            match head.get(&name) {
                Some(content) => self.tree.insert(name, content.clone()),
                None => self.tree.remove(&name),
            };
        }
        let [students, instructors] = self.kept.get(key).copied().unwrap_or_default();
        if let Some(course) = self.courses.iter_mut().find(|course| course.key == key) {
            course.decision = Decision::NotSynced(reason);
            course.students = ListPlan {
                count: students,
                ..ListPlan::default()
            };
            course.instructors = ListPlan {
                count: instructors,
                ..ListPlan::default()
            };
        }
    }

    /// The audit commit message, or `None` when the tree is the same as `head`.
    pub fn commit_message(&self, head: &Tree, run_id: &str, version: &str) -> Option<String> {
        if self.tree == *head {
            return None;
        }
        let differs = |key: &str, list: List| {
            let name = list.file_name(key);
            head.get(&name) != self.tree.get(&name)
        };
        // A course whose change was not applied but whose files are new to the audit
        // (recorded from the output directory) is listed with what it holds.
        let applied = |course: &CoursePlan, list: List| match course.decision.changes_files() {
            true => *course.list(list),
            false => ListPlan {
                count: course.list(list).count,
                ..ListPlan::default()
            },
        };
        let changed: Vec<&CoursePlan> = self
            .courses
            .iter()
            .filter(|course| {
                List::BOTH
                    .into_iter()
                    .any(|list| differs(&course.key, list))
            })
            .collect();
        let (added, removed) = changed
            .iter()
            .flat_map(|c| List::BOTH.map(|list| applied(c, list)))
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
            for list in List::BOTH
                .into_iter()
                .filter(|list| differs(&course.key, *list))
            {
                let plan = applied(course, list);
                let _ = write!(
                    message,
                    "{} {list}: +{} -{}, {} members",
                    course.key, plan.added, plan.removed, plan.count
                );
                message += match course.status() {
                    Status::Pruned => " (pruned)\n",
                    Status::Created => " (new)\n",
                    _ if !course.decision.changes_files() => {
                        " (recorded from the output directory)\n"
                    }
                    _ => "\n",
                };
            }
        }
        let approvals: Vec<(&str, String)> = changed
            .iter()
            .filter_map(|course| Some((course.key.as_str(), course.approved()?)))
            .collect();
        if !approvals.is_empty() {
            message += "\n";
            for (key, why) in approvals {
                let _ = writeln!(message, "Approved: {key} ({why})");
            }
        }
        let _ = write!(
            message,
            "\nRoster-Sync-Run-Id: {run_id}\nRoster-Sync-Version: {version}\n"
        );
        Some(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn complete(students: &[String], instructors: &[String]) -> Result<Rosters, FetchError> {
        Ok(Rosters {
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

    fn at(head: &Tree) -> Previous<'_> {
        static EMPTY: std::sync::OnceLock<Tree> = std::sync::OnceLock::new();
        Previous {
            head,
            baseline: EMPTY.get_or_init(Tree::new),
        }
    }

    const KEY: &str = "2019-fall-23970";

    #[test]
    fn a_new_course_is_created_and_never_guarded() {
        let plan = plan(
            &[(course(KEY), complete(&addresses("s", 3), &[]))],
            &[],
            at(&Tree::new()),
            &policy(),
            false,
        );
        assert_eq!(plan.courses[0].status(), Status::Created);
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
            &[],
            at(&head),
            &policy(),
            false,
        );
        assert_eq!(same.courses[0].status(), Status::Unchanged);
        assert_eq!(same.tree, head);
        assert_eq!(same.commit_message(&head, "r", "v"), None);

        let grown = plan(
            &[(
                course(KEY),
                complete(&addresses("s", 25), &addresses("i", 2)),
            )],
            &[],
            at(&head),
            &policy(),
            false,
        );
        assert_eq!(grown.courses[0].status(), Status::Updated);
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
            &[(course(KEY), Err(FetchError::Internal))],
            &[],
            at(&head),
            &policy(),
            false,
        );
        let entry = &plan.courses[0];
        assert_eq!(entry.status(), Status::Failed);
        assert_eq!(
            entry.error().as_deref(),
            Some("internal error while fetching")
        );
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
            &[],
            at(&head),
            &policy(),
            false,
        );
        assert_eq!(at_limit.courses[0].status(), Status::Updated);
        // 7 of 20: 35%, held back, files kept, change reported.
        let over = plan(
            &[(
                course(KEY),
                complete(&addresses("s", 20)[7..], &addresses("i", 10)),
            )],
            &[],
            at(&head),
            &policy(),
            false,
        );
        let entry = &over.courses[0];
        assert_eq!(entry.status(), Status::Guarded);
        assert_eq!(
            entry.students,
            ListPlan {
                count: 20,
                added: 0,
                removed: 7
            }
        );
        assert!(entry.error().unwrap().contains("--approve 2019-fall-23970"));
        assert_eq!(over.tree, head);
        // Instructors are guarded too.
        let instructors = plan(
            &[(
                course(KEY),
                complete(&addresses("s", 20), &addresses("i", 10)[4..]),
            )],
            &[],
            at(&head),
            &policy(),
            false,
        );
        assert_eq!(instructors.courses[0].status(), Status::Guarded);
    }

    #[test]
    fn small_rosters_may_shrink_but_never_to_empty() {
        let head = head_with(KEY, &addresses("s", 9), &addresses("i", 1));
        let shrunk = plan(
            &[(
                course(KEY),
                complete(&addresses("s", 2), &addresses("i", 1)),
            )],
            &[],
            at(&head),
            &policy(),
            false,
        );
        assert_eq!(shrunk.courses[0].status(), Status::Updated);
        let emptied = plan(
            &[(course(KEY), complete(&addresses("s", 9), &[]))],
            &[],
            at(&head),
            &policy(),
            false,
        );
        assert_eq!(emptied.courses[0].status(), Status::Guarded);
        assert!(
            emptied.courses[0]
                .error()
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
            &[],
            at(&head),
            &approving,
            false,
        );
        assert_eq!(plan.courses[0].status(), Status::Updated);
        assert!(plan.courses[0].approved().is_some());
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
        let kept = plan(&configured, &[], at(&head), &policy(), false);
        assert_eq!(kept.tree, head);
        assert_eq!(kept.unconfigured, ["2019-fall-1"]);

        let pruned = plan(&configured, &[], at(&head), &policy(), true);
        let entry = pruned
            .courses
            .iter()
            .find(|c| c.key == "2019-fall-1")
            .unwrap();
        assert_eq!(entry.status(), Status::Pruned);
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
        let held = plan(&[], &[], at(&head), &policy(), true);
        assert_eq!(held.courses[0].status(), Status::Guarded);
        assert_eq!(held.courses[0].students.count, 20);
        assert_eq!(held.tree, head);
        let mut approving = policy();
        approving.approvals.insert(KEY.to_string());
        let approved = plan(&[], &[], at(&head), &approving, true);
        assert_eq!(approved.courses[0].status(), Status::Pruned);
        assert!(approved.tree.is_empty());
    }

    #[test]
    fn the_files_on_disk_are_the_baseline_when_head_has_no_entry() {
        let baseline = head_with(KEY, &addresses("s", 20), &addresses("i", 2));
        let previous = Previous {
            head: &Tree::new(),
            baseline: &baseline,
        };
        let emptied = plan(
            &[(course(KEY), complete(&[], &addresses("i", 2)))],
            &[],
            previous,
            &policy(),
            false,
        );
        let entry = &emptied.courses[0];
        assert_eq!(entry.status(), Status::Guarded);
        assert_eq!((entry.students.count, entry.students.removed), (20, 20));
        assert_eq!(
            emptied.tree, baseline,
            "the hub's files are recorded as they are"
        );
        let message = emptied.commit_message(&Tree::new(), "r", "v").unwrap();
        assert!(
            message.starts_with("roster-sync: 1 course changed (+0 -0)"),
            "{message}"
        );
        assert!(message.contains(
            "2019-fall-23970 students: +0 -0, 20 members (recorded from the output directory)"
        ));

        let previous = Previous {
            head: &Tree::new(),
            baseline: &baseline,
        };
        let same = plan(
            &[(
                course(KEY),
                complete(&addresses("s", 20), &addresses("i", 2)),
            )],
            &[],
            previous,
            &policy(),
            false,
        );
        assert_eq!(same.courses[0].status(), Status::Unchanged);
        assert_eq!(same.tree, baseline);
    }

    #[test]
    fn a_rejected_key_fails_alone_keeps_its_files_and_is_not_pruned() {
        let head = head_with(KEY, &addresses("s", 20), &addresses("i", 2));
        let rejected = [(KEY.to_string(), format!("{KEY}: no term id"))];
        let plan = plan(&[], &rejected, at(&head), &policy(), true);
        assert_eq!(plan.courses.len(), 1);
        assert_eq!(plan.courses[0].status(), Status::Failed);
        assert_eq!(
            plan.courses[0].error().unwrap(),
            "2019-fall-23970: no term id"
        );
        assert_eq!(plan.courses[0].students.count, 20);
        assert_eq!(plan.tree, head);
    }

    #[test]
    fn a_course_failed_after_planning_keeps_its_head_files() {
        let head = head_with(KEY, &addresses("s", 20), &addresses("i", 2));
        let mut grown = plan(
            &[(
                course(KEY),
                complete(&addresses("s", 25), &addresses("i", 2)),
            )],
            &[],
            at(&head),
            &policy(),
            false,
        );
        assert_ne!(grown.tree, head);
        grown.fail(KEY, "cannot replace".into(), &head);
        assert_eq!(grown.tree, head);
        assert_eq!(grown.courses[0].status(), Status::Failed);
        assert_eq!(
            grown.courses[0].students,
            ListPlan {
                count: 20,
                ..ListPlan::default()
            }
        );
        assert_eq!(grown.commit_message(&head, "r", "v"), None);
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
        let plan = plan(&fetched, &[], at(&head), &policy(), false);
        let message = plan.commit_message(&head, "r", "v").unwrap();
        assert!(
            message.starts_with("roster-sync: 2 courses changed (+6 -1)\n"),
            "{message}"
        );
        assert!(message.contains("2019-fall-23970 students: +2 -1, 21 members\n"));
        assert!(!message.contains("2019-fall-23970 instructors"));
        assert!(message.contains("2021-fall-32244 instructors: +1 -0, 1 members (new)\n"));
    }
}
