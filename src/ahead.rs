//! Writing ahead: while the fetch goes on, each course whose fetch succeeded has the
//! roster files that differ from the audit HEAD written where the apply will need them:
//! the blob in the audit repository and the file staged under a temporary name in the
//! output directory. The fetch mostly waits for the network, so the disk work of a first
//! run or a term start (thousands of files, each fsynced) is done in that time, and the
//! apply after the plan is a commit and renames.
//!
//! Invariants: nothing written ahead reaches the hub or the history before the plan
//! allows it. A blob no commit names is not history, and a staged file is not a roster
//! file until the apply renames it, which it does only for a file the plan publishes
//! with exactly the content staged; every other staged file is removed when the apply
//! ends (a killed run's are swept by the next one). A guarded course's blob stays in the
//! repository as an object nothing refers to. Writing ahead is best effort: whatever
//! fails here is done again by the apply, which reports it.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{Scope, ScopedJoinHandle};

use crate::audit::ObjectWriters;
use crate::course::Course;
use crate::fetch::Fetched;
use crate::roster::Content;
use crate::store::{OutputDir, Staged};
use crate::tree::Tree;

/// Threads writing ahead: each fsync waits for the disk, and several waiting at once
/// let the file system commit them together.
const WRITERS: usize = 4;

/// Files staged ahead, by name, with the content each was staged with.
pub type StagedAhead<'a> = BTreeMap<String, (Staged<'a>, Content)>;

/// What the fetch tells of finished courses; see [`WriteAhead::feed`].
pub struct Feed<'a> {
    files: Sender<(String, Content)>,
    head: &'a Tree,
}

impl Feed<'_> {
    /// Hands the changed files of a course whose fetch ended to the writers.
    pub fn finished(&self, course: &Course, fetched: &Fetched) {
        let Ok(rosters) = fetched else { return };
        for (list, roster) in rosters.lists() {
            let name = list.file_name(&course.key);
            let content = roster.render();
            if self.head.get(&name) != Some(&content) {
                // The writers only stop once the feed is dropped.
                let _ = self.files.send((name, content));
            }
        }
    }
}

/// The writers, and the [`Feed`] of what they write; the staged files live as long as
/// the output directory (`'a`), not as the writers' scope.
pub struct WriteAhead<'scope, 'a> {
    feed: Feed<'a>,
    writers: Vec<ScopedJoinHandle<'scope, Vec<(Staged<'a>, Content)>>>,
}

impl<'scope, 'a: 'scope> WriteAhead<'scope, 'a> {
    /// Starts the writers in `scope`; they write until [`WriteAhead::finish`].
    pub fn start(
        scope: &'scope Scope<'scope, '_>,
        store: &'a OutputDir,
        objects: &'scope ObjectWriters<'_>,
        head: &'a Tree,
    ) -> Self {
        let (files, received) = mpsc::channel();
        let received = Arc::new(Mutex::new(received));
        let writers = (0..WRITERS)
            .map(|_| {
                let received = Arc::clone(&received);
                scope.spawn(move || write(&received, store, objects))
            })
            .collect();
        WriteAhead {
            feed: Feed { files, head },
            writers,
        }
    }

    pub fn feed(&self) -> &Feed<'a> {
        &self.feed
    }

    /// Waits for the writers to write what they were handed; returns the staged files.
    pub fn finish(self) -> StagedAhead<'a> {
        drop(self.feed);
        let mut staged = StagedAhead::new();
        for writer in self.writers {
            // A writer that panicked staged nothing the apply can count on; the apply
            // stages those files itself.
            for (file, content) in writer.join().unwrap_or_default() {
                staged.insert(file.name().to_string(), (file, content));
            }
        }
        staged
    }
}

fn write<'a>(
    received: &Mutex<Receiver<(String, Content)>>,
    store: &'a OutputDir,
    objects: &ObjectWriters<'_>,
) -> Vec<(Staged<'a>, Content)> {
    // Without a handle the blobs are left to the commit.
    let objects = objects.open().ok();
    let mut staged = Vec::new();
    loop {
        let next = match received.lock() {
            Ok(received) => received.recv(),
            Err(_) => break,
        };
        let Ok((name, content)) = next else { break };
        if let Some(objects) = &objects
            && let Err(error) = objects.blob(&content)
        {
            log::debug!("{name}: the blob is left to the commit: {error}");
        }
        match store.stage(&name, &content) {
            Ok(file) => staged.push((file, content)),
            Err(error) => log::debug!("{name}: staging is left to the apply: {error}"),
        }
    }
    staged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{self, AuditRepo};
    use crate::course::KeyKind;
    use crate::roster::{List, Roster, Rosters};
    use crate::source::FetchError;

    fn course(key: &str) -> Course {
        match Course::classify(key) {
            KeyKind::Course(course) => course,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_the_changed_files_of_fetched_courses_are_staged_and_their_blobs_written() {
        let dir = tempfile::tempdir().unwrap();
        let lock = audit::lock(&dir.path().join("audit")).unwrap();
        let repo = AuditRepo::open_or_init(&dir.path().join("audit"), &lock).unwrap();
        let store = OutputDir::create(&dir.path().join("out")).unwrap();
        let (kept, changed) = (
            Roster::from_raw(["kept@example.edu"]),
            Roster::from_raw(["new@example.edu"]),
        );
        let key = "2025-fall-12345";
        let head = Tree::from([(List::Students.file_name(key), kept.render())]);
        let rosters = Rosters {
            students: kept,
            instructors: changed.clone(),
            no_email: 0,
        };
        let writers = repo.object_writers(&lock);
        let staged = std::thread::scope(|scope| {
            let ahead = WriteAhead::start(scope, &store, &writers, &head);
            ahead.feed().finished(&course(key), &Ok(rosters));
            ahead
                .feed()
                .finished(&course("2025-fall-54321"), &Err(FetchError::Internal));
            ahead.finish()
        });
        let instructors = List::Instructors.file_name(key);
        assert_eq!(staged.keys().collect::<Vec<_>>(), [&instructors]);
        assert_eq!(staged[&instructors].1, changed.render());
        let blob = git2::Oid::hash_object(git2::ObjectType::Blob, &changed.render()).unwrap();
        let git = git2::Repository::open_bare(dir.path().join("audit")).unwrap();
        assert!(git.find_blob(blob).is_ok(), "the blob is written ahead");
        let temp_files = || std::fs::read_dir(dir.path().join("out")).unwrap().count();
        assert_eq!(temp_files(), 1, "one file staged, under a temporary name");
        drop(staged);
        assert_eq!(
            temp_files(),
            0,
            "a staged file that is not published is removed"
        );
    }
}
