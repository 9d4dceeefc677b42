//! The roster model: which addresses a course's two lists hold, and how a list is
//! rendered into the file the hub reads.
//!
//! Invariants: a [`Roster`] holds only normalised addresses (trimmed, lower-cased, no
//! white space or control characters inside), so rendering one address per line can
//! never produce a blank line or split an address; rendering is sorted bytewise and
//! deterministic, so unchanged data gives byte-identical files.
//!
//! A roster is kept as its rendered file: the sorted addresses, each followed by `\n`,
//! in one shared buffer ([`Content`]), about one byte per character of its addresses.
//! Rendering hands out the same buffer, and reading a file that is already in that form
//! shares it, so a run holds each list once, whatever the number of courses. The student
//! rules run on a [`Tally`], which keeps of a page or a section only what they need.

use std::cmp::Ordering;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// The two lists of a course.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
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

/// The bytes of a file the job reads, writes or commits. Cloning shares the buffer, so a
/// roster, the tree to commit and the file to stage are one allocation.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Content(Arc<[u8]>);

impl Deref for Content {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Content {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<&[u8]> for Content {
    fn from(bytes: &[u8]) -> Self {
        Content(bytes.into())
    }
}

impl From<Vec<u8>> for Content {
    fn from(bytes: Vec<u8>) -> Self {
        Content(bytes.into())
    }
}

impl PartialEq<[u8]> for Content {
    fn eq(&self, other: &[u8]) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<Vec<u8>> for Content {
    fn eq(&self, other: &Vec<u8>) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Content> for Vec<u8> {
    fn eq(&self, other: &Content) -> bool {
        **self == *other.0
    }
}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

/// A set of normalised addresses, kept as its rendering: sorted bytewise, distinct,
/// each followed by `\n`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Roster {
    text: Content,
    len: usize,
}

impl Roster {
    /// Builds a roster from raw addresses, dropping the unusable ones.
    pub fn from_raw<'a>(addresses: impl IntoIterator<Item = &'a str>) -> Roster {
        let mut addresses: Vec<String> = addresses.into_iter().filter_map(normalize).collect();
        addresses.sort_unstable();
        addresses.dedup();
        Roster::from_sorted(&addresses)
    }

    /// Joins addresses that are normalised, sorted and distinct already.
    fn from_sorted<S: AsRef<str>>(addresses: &[S]) -> Roster {
        let size = addresses.iter().map(|a| a.as_ref().len() + 1).sum();
        let mut text = Vec::with_capacity(size);
        for address in addresses {
            text.extend_from_slice(address.as_ref().as_bytes());
            text.push(b'\n');
        }
        Roster {
            text: text.into(),
            len: addresses.len(),
        }
    }

    /// Reads a roster file as this job renders it.
    pub fn parse(bytes: &[u8]) -> Roster {
        match rendered_len(bytes) {
            Some(len) => Roster {
                text: bytes.into(),
                len,
            },
            None => Roster::from_raw(String::from_utf8_lossy(bytes).lines()),
        }
    }

    /// Reads a roster file like [`Roster::parse`], sharing its buffer when the file is
    /// in the form this job renders (always, for files it wrote).
    pub fn from_content(content: &Content) -> Roster {
        match rendered_len(content) {
            Some(len) => Roster {
                text: content.clone(),
                len,
            },
            None => Roster::parse(content),
        }
    }

    /// One address per line, each ending in `\n`; empty for an empty roster. The buffer
    /// is shared, not copied.
    pub fn render(&self) -> Content {
        self.text.clone()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the roster holds `address`: a binary search over the sorted lines.
    pub fn contains(&self, address: &str) -> bool {
        let text: &[u8] = &self.text;
        let address = address.as_bytes();
        // `low` and `high` are always at the start of a line (or the end).
        let (mut low, mut high) = (0, text.len());
        while low < high {
            let middle = low + (high - low) / 2;
            let start = text[low..middle]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(low, |i| low + i + 1);
            let end = start
                + text[start..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .expect("every line ends in a newline");
            match text[start..end].cmp(address) {
                Ordering::Equal => return true,
                Ordering::Less => low = end + 1,
                Ordering::Greater => high = start,
            }
        }
        false
    }

    /// The addresses, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        std::str::from_utf8(&self.text)
            .expect("a roster holds UTF-8 text")
            .split_terminator('\n')
    }

    /// How many addresses `next` adds to and removes from this roster.
    pub fn changes_to(&self, next: &Roster) -> Change {
        let mut change = Change::default();
        if self == next {
            return change;
        }
        let (mut old, mut new) = (self.iter().peekable(), next.iter().peekable());
        loop {
            let order = match (old.peek(), new.peek()) {
                (None, None) => return change,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(old), Some(new)) => old.cmp(new),
            };
            match order {
                Ordering::Less => {
                    change.removed += 1;
                    old.next();
                }
                Ordering::Greater => {
                    change.added += 1;
                    new.next();
                }
                Ordering::Equal => {
                    old.next();
                    new.next();
                }
            }
        }
    }
}

impl fmt::Debug for Roster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// The number of addresses of `bytes` when it is a rendered roster (UTF-8, normalised
/// addresses in strictly increasing order, each followed by `\n`), else `None`.
fn rendered_len(bytes: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(bytes).ok()?;
    if !text.is_empty() && !text.ends_with('\n') {
        return None;
    }
    let mut previous: Option<&str> = None;
    let mut len = 0;
    for line in text.split_terminator('\n') {
        if normalize(line).as_deref() != Some(line) || previous.is_some_and(|p| p >= line) {
            return None;
        }
        previous = Some(line);
        len += 1;
    }
    Some(len)
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

impl Rosters {
    /// Each list with its roster.
    pub fn lists(&self) -> [(List, &Roster); 2] {
        [
            (List::Students, &self.students),
            (List::Instructors, &self.instructors),
        ]
    }
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

/// What the student rules keep of some rows of a course (a page, a section), so that
/// the rows need not be kept: the normalised addresses of the counted students, the ids
/// of enrolled students without a usable address, and how many of those had no id.
/// Tallies of the pieces of a course give its [`Students`] as its rows would.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Each address followed by `\n` (a normalised address holds no white space).
    addresses: String,
    without_address: Vec<Box<str>>,
    anonymous: usize,
}

impl Tally {
    /// The tally of `enrollees`: enrolled people (and waitlisted ones when they count);
    /// people without a usable address are counted, not listed.
    pub fn of<'a>(
        enrollees: impl IntoIterator<Item = &'a Enrollee>,
        include_waitlisted: bool,
    ) -> Tally {
        let mut tally = Tally::default();
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
                    tally.addresses.push_str(&address);
                    tally.addresses.push('\n');
                }
                None if enrollee.standing != Standing::Enrolled => {}
                None => match &enrollee.id {
                    Some(id) => tally.without_address.push(id.as_str().into()),
                    None => tally.anonymous += 1,
                },
            }
        }
        tally
    }

    /// Adds the rows `other` was made of.
    pub fn append(&mut self, other: Tally) {
        self.addresses.push_str(&other.addresses);
        self.without_address.extend(other.without_address);
        self.anonymous += other.anonymous;
    }

    /// Drops duplicates and spare capacity, for a tally that is kept.
    pub fn compact(&mut self) {
        let mut addresses: Vec<&str> = self.addresses.split_terminator('\n').collect();
        addresses.sort_unstable();
        addresses.dedup();
        let mut joined = String::with_capacity(addresses.iter().map(|a| a.len() + 1).sum());
        for address in addresses {
            joined.push_str(address);
            joined.push('\n');
        }
        self.addresses = joined;
        self.without_address.sort_unstable();
        self.without_address.dedup();
        self.without_address.shrink_to_fit();
    }

    /// The student list of a course from the tallies of all its rows.
    pub fn students<'a>(tallies: impl IntoIterator<Item = &'a Tally>) -> Students {
        let mut addresses = Vec::new();
        let mut without_address = Vec::new();
        let mut anonymous = 0;
        for tally in tallies {
            addresses.extend(tally.addresses.split_terminator('\n'));
            without_address.extend(tally.without_address.iter().map(|id| &**id));
            anonymous += tally.anonymous;
        }
        addresses.sort_unstable();
        addresses.dedup();
        without_address.sort_unstable();
        without_address.dedup();
        Students {
            roster: Roster::from_sorted(&addresses),
            no_email: without_address.len() + anonymous,
        }
    }
}

/// Applies the student rules to all the rows of a course (see [`Tally::of`]).
pub fn students<'a>(
    enrollees: impl IntoIterator<Item = &'a Enrollee>,
    include_waitlisted: bool,
) -> Students {
    Tally::students([&Tally::of(enrollees, include_waitlisted)])
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
        assert_eq!(&*roster.render(), b"_z@x.edu\na@x.edu\nb@x.edu\n");
        assert_eq!(&*Roster::default().render(), b"");
        assert_eq!(Roster::parse(&roster.render()), roster);
        assert_eq!(roster.len(), 3);
        assert_eq!(
            roster.iter().collect::<Vec<_>>(),
            ["_z@x.edu", "a@x.edu", "b@x.edu"]
        );
    }

    #[test]
    fn parsing_normalises_files_not_in_rendered_form_and_shares_the_others() {
        for (file, addresses) in [
            (&b"b@x\na@x\n"[..], &["a@x", "b@x"][..]),
            (b"A@x\r\n\n a@x\nb@x", &["a@x", "b@x"]),
            (b"a@x\na@x\n", &["a@x"]),
            (b"\n", &[]),
            (b"a@x\xff\n", &["a@x\u{fffd}"]),
        ] {
            let roster = Roster::parse(file);
            assert_eq!(roster.iter().collect::<Vec<_>>(), addresses, "{file:?}");
            assert_eq!(roster.len(), addresses.len());
            assert_eq!(Roster::from_content(&Content::from(file)), roster);
        }
        let file = Content::from(&b"a@x\nb@x\n"[..]);
        let roster = Roster::from_content(&file);
        assert_eq!(roster.len(), 2);
        assert!(
            std::ptr::eq(roster.render().as_ptr(), file.as_ptr()),
            "a rendered file is shared, not copied"
        );
    }

    #[test]
    fn contains_finds_every_member_and_nothing_else() {
        let members = ["a@x", "ab@x", "b@x", "bb@x", "c@x"];
        for n in 0..=members.len() {
            let roster = Roster::from_raw(members[..n].iter().copied());
            for (i, member) in members.iter().enumerate() {
                assert_eq!(roster.contains(member), i < n, "{member} in {roster:?}");
            }
            for absent in ["", "a", "a@", "aa@x", "b@xx", "z@x", "0@x"] {
                assert!(!roster.contains(absent), "{absent} in {roster:?}");
            }
        }
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
    fn tallies_of_the_pieces_give_the_rule_on_all_rows() {
        let rows = [
            row("E", Some("1"), Some("b@berkeley.edu")),
            row("E", Some("2"), None),
            row("W", Some("3"), Some("w@berkeley.edu")),
            row("E", None, None),
            row("E", Some("1"), Some("B@berkeley.edu")),
            row("E", Some("2"), None),
            row("E", Some("4"), Some("a@berkeley.edu")),
            row("E", None, Some("bad address")),
            row("D", Some("5"), None),
        ];
        for include_waitlisted in [false, true] {
            let whole = students(&rows, include_waitlisted);
            for split in 0..=rows.len() {
                let (first, second) = rows.split_at(split);
                let mut section = Tally::of(first, include_waitlisted);
                section.append(Tally::of(&second[..second.len() / 2], include_waitlisted));
                section.compact();
                let other = Tally::of(&second[second.len() / 2..], include_waitlisted);
                assert_eq!(
                    Tally::students([&section, &other]),
                    whole,
                    "split at {split}"
                );
            }
            assert_eq!(whole.no_email, 3, "ids 2 once, the anonymous rows twice");
        }
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
