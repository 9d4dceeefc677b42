//! Trees: the roster files of the audit HEAD, of the tree to publish, and of the output
//! directory, and what publishing one over the others takes.
//!
//! File contents are [`Content`]s, shared and never copied between the HEAD tree, the
//! rosters read from it and the tree to publish.
//!
//! Invariant: [`reconcile`] is pure; it only names files to write, remove or count as
//! drift, so the I/O modules never decide anything themselves.

use std::collections::BTreeMap;

use crate::roster::{Content, List, Roster};

/// File name → content, as committed in the audit repository and written on disk.
pub type Tree = BTreeMap<String, Content>;

/// The lists of each course in a tree; a list without a file is absent. The rosters
/// share the tree's buffers.
pub fn rosters_in(tree: &Tree) -> BTreeMap<&str, BTreeMap<List, Roster>> {
    let mut courses: BTreeMap<&str, BTreeMap<List, Roster>> = BTreeMap::new();
    for (name, content) in tree {
        if let Some((key, list)) = List::parse_file_name(name) {
            courses
                .entry(key)
                .or_default()
                .insert(list, Roster::from_content(content));
        }
    }
    courses
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
        if !matches!(found, OnDisk::File(bytes) if *bytes == *content) {
            result.writes.push(name.clone());
        }
    }
    for (name, content) in head {
        let found = state(name);
        if target.contains_key(name) {
            if !matches!(found, OnDisk::File(bytes) if *bytes == *content) {
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

    fn content(text: &str) -> Content {
        Content::from(text.as_bytes())
    }

    #[test]
    fn reconcile_restores_drift_and_removes_pruned_files() {
        let head = Tree::from([
            ("a-students.txt".to_string(), content("x\n")),
            ("b-students.txt".to_string(), content("y\n")),
            ("c-students.txt".to_string(), content("z\n")),
            ("d-students.txt".to_string(), content("w\n")),
        ]);
        let mut target = head.clone();
        target.remove("d-students.txt");
        target.insert("b-students.txt".into(), content("y2\n"));
        target.insert("e-students.txt".into(), content("new\n"));
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
