//! Trees: the roster files of the audit HEAD, of the tree to publish, and of the output
//! directory, and what publishing one over the others takes.
//!
//! File contents are [`Content`]s, shared and never copied between the HEAD tree, the
//! rosters read from it and the tree to publish; the output directory is described by
//! how each file compares with those two ([`Found`]), not by its bytes, so no third copy
//! of the rosters is held.
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

/// How a managed file in the output directory compares with HEAD and with the tree to
/// publish: all [`reconcile`] needs to know of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// Something (a file or not) is at the name.
    pub present: bool,
    /// A regular file with HEAD's content.
    pub as_head: bool,
    /// A regular file with the content to publish.
    pub as_target: bool,
}

impl Found {
    /// Compares what is at `name` on disk with its content in `head` and in `target`.
    pub fn compare(name: &str, disk: &OnDisk, head: &Tree, target: &Tree) -> Found {
        let same = |tree: &Tree| match (disk, tree.get(name)) {
            (OnDisk::File(bytes), Some(content)) => *bytes == *content,
            _ => false,
        };
        Found {
            present: *disk != OnDisk::Missing,
            as_head: same(head),
            as_target: same(target),
        }
    }
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

/// Compares the directory with HEAD and with the tree to publish; `disk` describes every
/// name of both trees (a name it lacks is missing).
pub fn reconcile(head: &Tree, target: &Tree, disk: &BTreeMap<String, Found>) -> Reconcile {
    let state = |name: &String| disk.get(name).copied().unwrap_or_default();
    let mut result = Reconcile::default();
    for name in target.keys() {
        if !state(name).as_target {
            result.writes.push(name.clone());
        }
    }
    for name in head.keys() {
        let found = state(name);
        if target.contains_key(name) {
            if !found.as_head {
                result.drift.push(name.clone());
            }
        } else if found.present {
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
        let disk = [
            ("a-students.txt", OnDisk::File(b"edited\n".to_vec())),
            ("b-students.txt", OnDisk::File(b"y\n".to_vec())),
            ("c-students.txt", OnDisk::NotAFile),
            ("d-students.txt", OnDisk::File(b"w\n".to_vec())),
            ("e-students.txt", OnDisk::Missing),
        ];
        let disk: BTreeMap<String, Found> = disk
            .iter()
            .map(|(name, found)| {
                let found = Found::compare(name, found, &head, &target);
                (name.to_string(), found)
            })
            .collect();
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
