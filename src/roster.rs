//! The roster model: which addresses a course's two lists hold, and how a list is
//! rendered into the file the hub reads.
//!
//! Invariants: a [`Roster`] holds only normalised addresses (trimmed, lower-cased, no
//! white space or control characters inside), so rendering one address per line can
//! never produce a blank line or split an address; rendering is sorted bytewise and
//! deterministic, so unchanged data gives byte-identical files.

use std::collections::BTreeSet;
use std::fmt;

/// The two lists of a course.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum List {
    Students,
    Instructors,
}

impl List {
    pub const BOTH: [List; 2] = [List::Students, List::Instructors];

    pub fn name(self) -> &'static str {
        match self {
            List::Students => "students",
            List::Instructors => "instructors",
        }
    }

    /// The roster file name of this list for a course key.
    pub fn file_name(self, key: &str) -> String {
        format!("{key}-{}.txt", self.name())
    }

    /// Splits a roster file name into its course key and list.
    pub fn parse_file_name(name: &str) -> Option<(&str, List)> {
        let stem = name.strip_suffix(".txt")?;
        List::BOTH.into_iter().find_map(|list| {
            let key = stem.strip_suffix(list.name())?.strip_suffix('-')?;
            (!key.is_empty()).then_some((key, list))
        })
    }
}

impl fmt::Display for List {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Normalises an address as SIS sends it; `None` when nothing usable is left.
pub fn normalize(address: &str) -> Option<String> {
    let address = address.trim().to_lowercase();
    let usable =
        !address.is_empty() && !address.chars().any(|c| c.is_whitespace() || c.is_control());
    usable.then_some(address)
}

/// A set of normalised addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roster(BTreeSet<String>);

impl Roster {
    /// Builds a roster from raw addresses, dropping the unusable ones.
    pub fn from_raw<'a>(addresses: impl IntoIterator<Item = &'a str>) -> Roster {
        Roster(addresses.into_iter().filter_map(normalize).collect())
    }

    /// Reads a roster file as this job renders it.
    pub fn parse(bytes: &[u8]) -> Roster {
        Roster::from_raw(String::from_utf8_lossy(bytes).lines())
    }

    /// One address per line, each ending in `\n`; empty for an empty roster.
    pub fn render(&self) -> Vec<u8> {
        let mut text = String::with_capacity(self.0.iter().map(|a| a.len() + 1).sum());
        for address in &self.0 {
            text.push_str(address);
            text.push('\n');
        }
        text.into_bytes()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, address: &str) -> bool {
        self.0.contains(address)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// How many addresses `next` adds to and removes from this roster.
    pub fn changes_to(&self, next: &Roster) -> Change {
        Change {
            added: next.0.difference(&self.0).count(),
            removed: self.0.difference(&next.0).count(),
        }
    }
}

/// The size of a change between two rosters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub added: usize,
    pub removed: usize,
}

/// The complete lists of a course, as a source fetched them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rosters {
    pub students: Roster,
    pub instructors: Roster,
    /// Counted students without a usable address (left out of `students`).
    pub no_email: usize,
}

/// Where a person stands in a course, as far as the student list is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    Enrolled,
    Waitlisted,
    /// Dropped, withdrawn, completed, ...: never on the list.
    Other,
}

/// One person a source lists in a course, reduced to what the student rules need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enrollee {
    pub standing: Standing,
    /// The source's stable id of the person, when it discloses one; it tells apart two
    /// rows of one person without an address.
    pub id: Option<String>,
    /// The address the source offers, raw.
    pub address: Option<String>,
}

/// The student list of a course and how many of its students had no usable address.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Students {
    pub roster: Roster,
    /// Distinct enrolled students, by id when the source discloses one, without a usable
    /// address. Waitlisted ones are left out of this count even when they are listed,
    /// because the report defines it over enrolled students.
    pub no_email: usize,
}

/// Applies the student rules: enrolled people (and waitlisted ones when they count);
/// people without a usable address are counted, not listed.
pub fn students<'a>(
    enrollees: impl IntoIterator<Item = &'a Enrollee>,
    include_waitlisted: bool,
) -> Students {
    let mut addresses = BTreeSet::new();
    let mut without_address_by_id = BTreeSet::new();
    let mut without_address_anonymous = 0;
    for enrollee in enrollees {
        let counted = match enrollee.standing {
            Standing::Enrolled => true,
            Standing::Waitlisted => include_waitlisted,
            Standing::Other => false,
        };
        if !counted {
            continue;
        }
        match enrollee.address.as_deref().and_then(normalize) {
            Some(address) => {
                addresses.insert(address);
            }
            None if enrollee.standing != Standing::Enrolled => {}
            None => match &enrollee.id {
                Some(id) => {
                    without_address_by_id.insert(id.as_str());
                }
                None => without_address_anonymous += 1,
            },
        }
    }
    Students {
        roster: Roster(addresses),
        no_email: without_address_by_id.len() + without_address_anonymous,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(standing: &str, id: Option<&str>, address: Option<&str>) -> Enrollee {
        let standing = match standing {
            "E" => Standing::Enrolled,
            "W" => Standing::Waitlisted,
            _ => Standing::Other,
        };
        Enrollee {
            standing,
            id: id.map(Into::into),
            address: address.map(Into::into),
        }
    }

    #[test]
    fn normalisation_trims_lowercases_and_rejects_inner_space() {
        assert_eq!(
            normalize("  Ada.Prof@Berkeley.EDU \n").as_deref(),
            Some("ada.prof@berkeley.edu")
        );
        assert_eq!(normalize("   "), None);
        assert_eq!(normalize("a b@berkeley.edu"), None);
        assert_eq!(normalize("a\u{0}b@berkeley.edu"), None);
    }

    #[test]
    fn rendering_is_sorted_deduplicated_and_newline_terminated() {
        let roster = Roster::from_raw(["b@x.edu", "A@x.edu", " a@x.edu", "", "_z@x.edu"]);
        assert_eq!(roster.render(), b"_z@x.edu\na@x.edu\nb@x.edu\n");
        assert_eq!(Roster::default().render(), b"");
        assert_eq!(Roster::parse(&roster.render()), roster);
    }

    #[test]
    fn students_are_enrolled_ones_with_an_address() {
        let rows = [
            row("E", Some("1"), Some("One@berkeley.edu")),
            row("E", Some("1"), Some("one@berkeley.edu ")),
            row("W", Some("2"), Some("wait@berkeley.edu")),
            row("D", Some("3"), Some("dropped@berkeley.edu")),
            row("E", Some("4"), None),
            row("E", Some("4"), None),
            row("E", None, Some(" ")),
            row("W", Some("5"), None),
        ];
        let enrolled = students(&rows, false);
        assert_eq!(
            enrolled.roster.iter().collect::<Vec<_>>(),
            ["one@berkeley.edu"]
        );
        assert_eq!(enrolled.no_email, 2, "uid 4 once, plus the anonymous row");
        let with_waitlist = students(&rows, true);
        assert_eq!(
            with_waitlist.roster.iter().collect::<Vec<_>>(),
            ["one@berkeley.edu", "wait@berkeley.edu"]
        );
        assert_eq!(
            with_waitlist.no_email, 2,
            "waitlisted rows are not enrolled"
        );
    }

    #[test]
    fn changes_count_both_directions() {
        let before = Roster::from_raw(["a@x", "b@x", "c@x"]);
        let after = Roster::from_raw(["b@x", "c@x", "d@x", "e@x"]);
        assert_eq!(
            before.changes_to(&after),
            Change {
                added: 2,
                removed: 1
            }
        );
    }

    #[test]
    fn file_names_round_trip() {
        assert_eq!(
            List::Students.file_name("2019-fall-1"),
            "2019-fall-1-students.txt"
        );
        assert_eq!(
            List::parse_file_name("2019-fall-1-instructors.txt"),
            Some(("2019-fall-1", List::Instructors))
        );
        assert_eq!(List::parse_file_name("-students.txt"), None);
        assert_eq!(List::parse_file_name("notes.txt"), None);
    }
}
