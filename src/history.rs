//! The auditors' questions, answered from the audit repository alone: who was added to or
//! removed from which list, and when ([`history`]); who was on a list at a given moment
//! ([`show`]).
//!
//! Invariants: read-only, and only `refs/heads/main` is read. The cost grows with the
//! changes, not with commits × files: each commit's tree is compared with its parent's by
//! entry id, and only the blobs of the roster entries that changed are read; with a course
//! given, only that course's two entries are looked at in each commit.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use git2::{Commit, Oid, Sort, Tree};
use serde::Serialize;

use crate::audit::{AuditError, AuditRepo};
use crate::course::{Course, KeyKind};
use crate::roster::{List, Roster};

/// One address added to or removed from one list by one commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryLine {
    /// The commit time, RFC 3339 in UTC.
    pub time: String,
    pub commit: String,
    pub course: String,
    pub list: List,
    /// `+` or `-`.
    pub change: char,
    pub address: String,
}

impl fmt::Display for HistoryLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {}{}",
            self.time, self.commit, self.course, self.list, self.change, self.address
        )
    }
}

/// Which changes `history` reports.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub course: Option<String>,
    /// A normalised address.
    pub member: Option<String>,
    /// Commits before this time are passed over.
    pub since: Option<SystemTime>,
}

/// Calls `each` with every change the filter lets through, oldest first; stops at the
/// first error `each` returns.
pub fn history<E>(
    repo: &AuditRepo,
    filter: &Filter,
    mut each: impl FnMut(HistoryLine) -> Result<(), E>,
) -> Result<Result<(), E>, AuditError> {
    let read = || repo.error("read the history");
    let Some(main) = repo.main_commit()? else {
        return Ok(Ok(()));
    };
    let git = repo.git();
    let mut walk = git.revwalk().map_err(read())?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)
        .map_err(read())?;
    walk.push(main.id()).map_err(read())?;
    walk.simplify_first_parent().map_err(read())?;
    let since = filter.since.map(unix_seconds);
    for oid in walk {
        let commit = git.find_commit(oid.map_err(read())?).map_err(read())?;
        if since.is_some_and(|since| commit.time().seconds() < since) {
            continue;
        }
        let tree = commit.tree().map_err(read())?;
        let parent = match commit.parent(0) {
            Ok(parent) => Some(parent.tree().map_err(read())?),
            Err(_) => None,
        };
        for (name, old, new) in changed_entries(&tree, parent.as_ref(), filter.course.as_deref()) {
            // Only roster entries: an auditor's README or a crafted name is not a roster.
            let Some((key, list)) = List::parse_file_name(&name)
                .filter(|(key, _)| matches!(Course::classify(key), KeyKind::Course(_)))
            else {
                continue;
            };
            let (old, new) = (read_blob(repo, old)?, read_blob(repo, new)?);
            let time = format_time(commit.time().seconds());
            let short = short_id(commit.id());
            for (change, address) in line_changes(&old, &new) {
                if filter
                    .member
                    .as_deref()
                    .is_some_and(|member| member != address)
                {
                    continue;
                }
                let line = HistoryLine {
                    time: time.clone(),
                    commit: short.clone(),
                    course: key.to_string(),
                    list,
                    change,
                    address: address.to_string(),
                };
                if let Err(error) = each(line) {
                    return Ok(Err(error));
                }
            }
        }
    }
    Ok(Ok(()))
}

/// How git orders tree entries: by name, a folder's name as if it ended in `/`.
fn git_order<'a>(entry: &'a git2::TreeEntry<'_>) -> std::borrow::Cow<'a, [u8]> {
    let name = entry.name_bytes();
    if entry.kind() == Some(git2::ObjectType::Tree) {
        std::borrow::Cow::Owned([name, b"/"].concat())
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// The entries whose ids differ between `tree` and `parent` (each side `None` where the
/// entry is absent), by name; only `course`'s two files when a course is given. The two
/// entry lists are walked side by side (git keeps a flat tree's entries sorted by name),
/// comparing ids only, so an unchanged entry costs no allocation.
fn changed_entries(
    tree: &Tree<'_>,
    parent: Option<&Tree<'_>>,
    course: Option<&str>,
) -> Vec<(String, Option<Oid>, Option<Oid>)> {
    let id_in = |tree: Option<&Tree<'_>>, name: &str| {
        tree.and_then(|tree| tree.get_name(name))
            .map(|entry| entry.id())
    };
    if let Some(key) = course {
        return List::BOTH
            .into_iter()
            .map(|list| list.file_name(key))
            .filter_map(|name| {
                let (old, new) = (id_in(parent, &name), id_in(Some(tree), &name));
                (old != new).then_some((name, old, new))
            })
            .collect();
    }
    let mut changed = Vec::new();
    let mut old = parent
        .into_iter()
        .flat_map(|parent| parent.iter())
        .peekable();
    let mut new = tree.iter().peekable();
    loop {
        let order = match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(a), Some(b)) => git_order(a).cmp(&git_order(b)),
        };
        let (before, after) = match order {
            std::cmp::Ordering::Less => (old.next(), None),
            std::cmp::Ordering::Greater => (None, new.next()),
            std::cmp::Ordering::Equal => (old.next(), new.next()),
        };
        let (before, after) = (before.map(|e| (e.id(), e)), after.map(|e| (e.id(), e)));
        if before.as_ref().map(|(id, _)| *id) == after.as_ref().map(|(id, _)| *id) {
            continue;
        }
        let entry = after.as_ref().or(before.as_ref()).map(|(_, entry)| entry);
        if let Some(name) = entry.and_then(|entry| entry.name().ok()) {
            changed.push((
                name.to_string(),
                before.map(|(id, _)| id),
                after.map(|(id, _)| id),
            ));
        }
    }
    changed
}

fn read_blob(repo: &AuditRepo, id: Option<Oid>) -> Result<Vec<u8>, AuditError> {
    let Some(id) = id else {
        return Ok(Vec::new());
    };
    let blob = repo
        .git()
        .find_blob(id)
        .map_err(repo.error("read a file"))?;
    Ok(blob.content().to_vec())
}

fn read_roster(repo: &AuditRepo, id: Option<Oid>) -> Result<Roster, AuditError> {
    Ok(Roster::parse(&read_blob(repo, id)?))
}

/// The addresses `new` adds (`+`) and removes (`-`) from `old`, additions first. The job
/// writes every roster sorted, one normalised address a line, so the two are merged line
/// by line; a file written some other way is normalised first.
fn line_changes(old: &[u8], new: &[u8]) -> Vec<(char, String)> {
    let (Some(old_lines), Some(new_lines)) = (sorted_lines(old), sorted_lines(new)) else {
        let (old, new) = (Roster::parse(old), Roster::parse(new));
        let added = new
            .iter()
            .filter(|a| !old.contains(a))
            .map(|a| ('+', a.to_string()));
        let removed = old
            .iter()
            .filter(|a| !new.contains(a))
            .map(|a| ('-', a.to_string()));
        return added.chain(removed).collect();
    };
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    loop {
        match (old_lines.get(i), new_lines.get(j)) {
            (Some(a), Some(b)) if a == b => (i, j) = (i + 1, j + 1),
            (Some(a), Some(b)) if a > b => {
                added.push(('+', b.to_string()));
                j += 1;
            }
            (Some(a), _) => {
                removed.push(('-', a.to_string()));
                i += 1;
            }
            (None, Some(b)) => {
                added.push(('+', b.to_string()));
                j += 1;
            }
            (None, None) => break,
        }
    }
    added.extend(removed);
    added
}

/// The lines of a roster file as the job writes it (UTF-8, strictly increasing, each an
/// address as normalisation leaves it), or `None` for any other file.
fn sorted_lines(bytes: &[u8]) -> Option<Vec<&str>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    // What normalisation leaves (checked without allocating: this runs on every line of
    // every changed file): non-empty, no upper case, no white space or control character.
    let normal = |line: &&str| {
        !line.is_empty()
            && !line
                .chars()
                .any(|c| c.is_uppercase() || c.is_whitespace() || c.is_control())
    };
    let sorted = lines.windows(2).all(|pair| pair[0] < pair[1]);
    (sorted && lines.iter().all(normal)).then_some(lines)
}

/// Where `show` looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moment {
    /// The tip of `main`.
    Now,
    /// The last commit at or before this time.
    At(SystemTime),
    /// This commit (a full or abbreviated id).
    Commit(String),
}

/// The list as the audit repository recorded it at `moment`: `None` when the course had
/// no such roster then (or no commit was made yet).
pub fn show(
    repo: &AuditRepo,
    key: &str,
    list: List,
    moment: &Moment,
) -> Result<Option<Roster>, AuditError> {
    let read = || repo.error("read the history");
    let Some(main) = repo.main_commit()? else {
        return Ok(None);
    };
    let commit: Option<Commit<'_>> = match moment {
        Moment::Now => Some(main),
        Moment::Commit(id) => Some(
            repo.git()
                .revparse_single(id)
                .and_then(|object| object.peel_to_commit())
                .map_err(repo.error("find that commit"))?,
        ),
        Moment::At(time) => {
            let at = unix_seconds(*time);
            let mut commit = Some(main);
            while let Some(candidate) = commit.take() {
                if candidate.time().seconds() <= at {
                    commit = Some(candidate);
                    break;
                }
                commit = candidate.parent(0).ok();
            }
            commit
        }
    };
    let Some(commit) = commit else {
        return Ok(None);
    };
    let tree = commit.tree().map_err(read())?;
    let entry = tree.get_name(&list.file_name(key)).map(|entry| entry.id());
    entry.map(|id| read_roster(repo, Some(id))).transpose()
}

fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// RFC 3339 in UTC; a time outside the years 1970–9999 (a commit made with a broken
/// clock, or crafted) as `@SECONDS`, rather than failing.
fn format_time(seconds: i64) -> String {
    const LAST: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    match u64::try_from(seconds) {
        Ok(after) if seconds <= LAST => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(after)).to_string()
        }
        _ => format!("@{seconds}"),
    }
}

fn short_id(oid: Oid) -> String {
    oid.to_string()[..10].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_the_same_for_sorted_and_hand_written_files() {
        let old = b"a@x\nb@x\nd@x\n";
        let new = b"b@x\nc@x\ne@x\n";
        let expected = [('+', "c@x"), ('+', "e@x"), ('-', "a@x"), ('-', "d@x")]
            .map(|(c, a)| (c, a.to_string()));
        assert_eq!(line_changes(old, new), expected);
        assert_eq!(
            line_changes(b"D@X\n a@x\nb@x\n", b"e@x\nC@x\nb@x\n"),
            expected
        );
        assert_eq!(line_changes(b"", b"a@x\n"), [('+', "a@x".to_string())]);
    }

    #[test]
    fn times_outside_rfc3339_are_shown_as_seconds() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(format_time(253_402_300_800), "@253402300800");
        assert_eq!(format_time(-5), "@-5");
    }
}
