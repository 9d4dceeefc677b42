//! The shrink guard: when a change removes too much to be trusted without a person
//! looking at it.
//!
//! Invariants: a roster that would become empty from non-empty always trips; otherwise only
//! a roster of at least `min_size` members trips, when it would lose more than
//! `max_removal_percent` of them. The same rule guards pruning, counted in courses.

use std::collections::BTreeSet;
use std::fmt;

use crate::roster::List;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuardPolicy {
    pub max_removal_percent: u8,
    pub min_size: usize,
    /// Course keys whose guarded change may go through.
    pub approvals: BTreeSet<String>,
}

/// A shrink the guard holds back: one list of a course, or (`list: None`) the set of
/// courses that pruning would leave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trip {
    pub list: Option<List>,
    pub before: usize,
    pub removed: usize,
    pub after: usize,
    limit_percent: u8,
}

impl GuardPolicy {
    /// The trip of shrinking `list` from `before` members by `removed` to `after`, if the
    /// guard holds it back.
    pub fn check(
        &self,
        list: Option<List>,
        before: usize,
        removed: usize,
        after: usize,
    ) -> Option<Trip> {
        let emptied = before > 0 && after == 0;
        let too_many = before >= self.min_size
            && removed.saturating_mul(100)
                > usize::from(self.max_removal_percent).saturating_mul(before);
        (emptied || too_many).then_some(Trip {
            list,
            before,
            removed,
            after,
            limit_percent: self.max_removal_percent,
        })
    }

    pub fn approves(&self, key: &str) -> bool {
        self.approvals.contains(key)
    }
}

impl fmt::Display for Trip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(list) = self.list {
            write!(f, "{list} ")?;
        }
        if self.after == 0 {
            write!(f, "would drop all {}", self.before)
        } else {
            write!(
                f,
                "would drop {} of {} ({}%, more than {}%)",
                self.removed,
                self.before,
                self.removed.saturating_mul(100) / self.before,
                self.limit_percent
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> GuardPolicy {
        GuardPolicy {
            max_removal_percent: 30,
            min_size: 10,
            approvals: BTreeSet::new(),
        }
    }

    #[test]
    fn trips_over_the_limit_and_on_emptying_only() {
        let policy = policy();
        assert_eq!(
            policy.check(Some(List::Students), 20, 6, 14),
            None,
            "exactly 30%"
        );
        let over = policy.check(Some(List::Students), 20, 7, 13).unwrap();
        assert_eq!(
            over.to_string(),
            "students would drop 7 of 20 (35%, more than 30%)"
        );
        assert_eq!(
            policy.check(None, 9, 8, 1),
            None,
            "small rosters may shrink"
        );
        let emptied = policy.check(Some(List::Instructors), 1, 1, 0).unwrap();
        assert_eq!(emptied.to_string(), "instructors would drop all 1");
        assert_eq!(policy.check(None, 0, 0, 0), None);
    }
}
