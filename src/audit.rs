//! The audit repository: a bare git repository whose `main` branch records every
//! roster change, so auditors can see who was added or removed, and when.
//!
//! Invariants: the committed tree holds exactly the roster files, flat, byte for byte;
//! a commit is made only when the tree changes; author and committer come from the
//! configuration, never from a git config. Objects are written before the branch moves,
//! and libgit2 moves it through a lock file and a rename, so a kill at any instant
//! leaves the old or the new commit as HEAD. One run at a time holds
//! `roster-sync.lock` (flock, released by the kernel when the process dies); holding
//! it, a run may delete lock files that a killed run left.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use git2::{ErrorCode, Oid, Repository, RepositoryInitOptions, Signature, Sort};

use crate::roster::{List, Roster};
use crate::tree::Tree;

pub const LOCK_FILE: &str = "roster-sync.lock";

/// Author and committer of audit commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Author {
    pub name: String,
    pub email: String,
}
/// Present while roster-sync creates the repository (see [`AuditRepo::open_or_init`]).
const INIT_MARKER: &str = "roster-sync.init";
const BRANCH: &str = "main";

#[derive(Debug)]
pub enum AuditError {
    /// Another run holds the lock (exit 4).
    Locked {
        path: PathBuf,
    },
    Git {
        path: PathBuf,
        action: &'static str,
        error: git2::Error,
    },
    Io {
        path: PathBuf,
        action: &'static str,
        error: std::io::Error,
    },
    NotARepository {
        path: PathBuf,
    },
}

impl fmt::Display for AuditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditError::Locked { path } => write!(
                f,
                "another roster-sync run holds {}; this run changed nothing (it is safe \
                 to run again once the other one has finished)",
                path.display()
            ),
            AuditError::Git {
                path,
                action,
                error,
            } if error.code() == ErrorCode::Owner => write!(
                f,
                "audit repository {}: cannot {action}: it is owned by another user; run \
                 the job as the owner of the repository (pod securityContext runAsUser)",
                path.display()
            ),
            AuditError::Git {
                path,
                action,
                error,
            } => write!(
                f,
                "audit repository {}: cannot {action}: {}",
                path.display(),
                error.message()
            ),
            AuditError::Io {
                path,
                action,
                error,
            } => write!(
                f,
                "audit repository {}: cannot {action}: {error}",
                path.display()
            ),
            AuditError::NotARepository { path } => write!(
                f,
                "audit repository {} exists, is not empty and is not a git repository; \
                 point --audit-repo at an empty or missing directory",
                path.display()
            ),
        }
    }
}

impl std::error::Error for AuditError {}

fn git_error<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl FnOnce(git2::Error) -> AuditError + 'a {
    move |error| AuditError::Git {
        path: path.to_path_buf(),
        action,
        error,
    }
}

fn io_error<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl FnOnce(std::io::Error) -> AuditError + 'a {
    move |error| AuditError::Io {
        path: path.to_path_buf(),
        action,
        error,
    }
}

/// The run lock; held until dropped or the process dies.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// Creates the repository directory if needed and takes the run lock without waiting.
pub fn lock(path: &Path) -> Result<RunLock, AuditError> {
    fs::create_dir_all(path).map_err(io_error(path, "create the directory"))?;
    let lock_path = path.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_error(&lock_path, "open the lock file"))?;
    match file.try_lock() {
        Ok(()) => Ok(RunLock { _file: file }),
        Err(TryLockError::WouldBlock) => Err(AuditError::Locked { path: lock_path }),
        Err(TryLockError::Error(error)) => Err(io_error(&lock_path, "lock")(error)),
    }
}

pub struct AuditRepo {
    repo: Repository,
    path: PathBuf,
}

impl AuditRepo {
    /// Opens the repository, or creates it bare on branch `main` when the directory is
    /// missing or holds nothing but our lock file (and a volume's `lost+found`).
    ///
    /// Creating takes libgit2 many steps, so it is bracketed by a marker file: a directory
    /// that is not a repository but holds the marker is one whose creation was killed, and
    /// creating it again (after removing the lock and temporary files of the killed
    /// attempt) completes it. Without the marker, a directory with anything else in it is
    /// someone else's and is left alone.
    pub fn open_or_init(path: &Path, lock: &RunLock) -> Result<Self, AuditError> {
        let marker = path.join(INIT_MARKER);
        if let Some(repo) = Self::open_existing(path)? {
            remove_if_present(&marker)?;
            return Ok(repo);
        }
        if marker.exists() {
            remove_stale_git_locks(path, lock)?;
        } else {
            for entry in fs::read_dir(path).map_err(io_error(path, "list"))? {
                let name = entry.map_err(io_error(path, "list"))?.file_name();
                if name != LOCK_FILE && name != "lost+found" {
                    return Err(AuditError::NotARepository {
                        path: path.to_path_buf(),
                    });
                }
            }
            File::create(&marker).map_err(io_error(&marker, "create"))?;
        }
        let repo = Repository::init_opts(
            path,
            RepositoryInitOptions::new().bare(true).initial_head(BRANCH),
        )
        .map_err(git_error(path, "create it"))?;
        remove_if_present(&marker)?;
        log::info!("created the audit repository {}", path.display());
        Ok(AuditRepo {
            repo,
            path: path.to_path_buf(),
        })
    }

    /// Opens the repository if there is one; creates nothing.
    pub fn open_existing(path: &Path) -> Result<Option<Self>, AuditError> {
        match Repository::open(path) {
            Ok(repo) => Ok(Some(AuditRepo {
                repo,
                path: path.to_path_buf(),
            })),
            Err(error) if error.code() == ErrorCode::NotFound => Ok(None),
            Err(error) => Err(git_error(path, "open it")(error)),
        }
    }

    /// The HEAD commit, `None` before the first commit.
    fn head_commit(&self) -> Result<Option<git2::Commit<'_>>, AuditError> {
        match self.repo.head() {
            Ok(head) => head
                .peel_to_commit()
                .map(Some)
                .map_err(git_error(&self.path, "read HEAD")),
            Err(error) if matches!(error.code(), ErrorCode::UnbornBranch | ErrorCode::NotFound) => {
                Ok(None)
            }
            Err(error) => Err(git_error(&self.path, "read HEAD")(error)),
        }
    }

    /// The files of the HEAD commit (empty before the first commit).
    pub fn head_tree(&self) -> Result<Tree, AuditError> {
        match self.head_commit()? {
            Some(commit) => self.files(&commit),
            None => Ok(Tree::new()),
        }
    }

    fn files(&self, commit: &git2::Commit<'_>) -> Result<Tree, AuditError> {
        let read = git_error(&self.path, "read a commit");
        let tree = commit.tree().map_err(read)?;
        let mut files = Tree::new();
        for entry in tree.iter() {
            let Ok(name) = entry.name() else { continue };
            let blob = self
                .repo
                .find_blob(entry.id())
                .map_err(git_error(&self.path, "read a file"))?;
            files.insert(name.to_string(), blob.content().into());
        }
        Ok(files)
    }

    /// Commits `files` as the whole tree on top of HEAD; returns the new commit id.
    pub fn commit(
        &self,
        files: &Tree,
        message: &str,
        author: &Author,
        _lock: &RunLock,
    ) -> Result<Oid, AuditError> {
        let write = || git_error(&self.path, "write the commit");
        let mut builder = self.repo.treebuilder(None).map_err(write())?;
        for (name, content) in files {
            let blob = self.repo.blob(content).map_err(write())?;
            builder.insert(name, blob, 0o100644).map_err(write())?;
        }
        let tree = self
            .repo
            .find_tree(builder.write().map_err(write())?)
            .map_err(write())?;
        let signature = Signature::now(&author.name, &author.email).map_err(write())?;
        let parent = self.head_commit()?;
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        self.repo
            .commit(
                Some("HEAD"),
                &signature,
                &signature,
                message,
                &tree,
                &parents,
            )
            .map_err(write())
    }

    /// Walks the history from the first commit on and lists every address added to or
    /// removed from a roster.
    pub fn history(&self) -> Result<Vec<HistoryLine>, AuditError> {
        let read = || git_error(&self.path, "read the history");
        let Some(head) = self.head_commit()? else {
            return Ok(Vec::new());
        };
        let mut walk = self.repo.revwalk().map_err(read())?;
        walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)
            .map_err(read())?;
        walk.push(head.id()).map_err(read())?;
        let mut lines = Vec::new();
        let mut before = Tree::new();
        for oid in walk {
            let commit = self
                .repo
                .find_commit(oid.map_err(read())?)
                .map_err(read())?;
            let after = self.files(&commit)?;
            let when = UNIX_EPOCH + Duration::from_secs(commit.time().seconds().max(0) as u64);
            let names: BTreeMap<&String, ()> = before
                .keys()
                .chain(after.keys())
                .map(|name| (name, ()))
                .collect();
            for name in names.keys() {
                let (Some((key, list)), old, new) = (
                    List::parse_file_name(name),
                    before.get(*name),
                    after.get(*name),
                ) else {
                    continue;
                };
                if old == new {
                    continue;
                }
                let old = old.map(|bytes| Roster::parse(bytes)).unwrap_or_default();
                let new = new.map(|bytes| Roster::parse(bytes)).unwrap_or_default();
                let mut change = |address: &str, added: bool| {
                    lines.push(HistoryLine {
                        time: when,
                        commit: oid_short(commit.id()),
                        course: key.to_string(),
                        list,
                        address: address.to_string(),
                        added,
                    })
                };
                new.iter()
                    .filter(|a| !old.contains(a))
                    .for_each(|a| change(a, true));
                old.iter()
                    .filter(|a| !new.contains(a))
                    .for_each(|a| change(a, false));
            }
            before = after;
        }
        Ok(lines)
    }
}

fn oid_short(oid: Oid) -> String {
    oid.to_string()[..10].to_string()
}

/// One address added to or removed from one list by one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryLine {
    pub time: std::time::SystemTime,
    pub commit: String,
    pub course: String,
    pub list: List,
    pub address: String,
    pub added: bool,
}

impl fmt::Display for HistoryLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {}{}",
            humantime::format_rfc3339_seconds(self.time),
            self.commit,
            self.course,
            self.list,
            if self.added { '+' } else { '-' },
            self.address
        )
    }
}

fn remove_if_present(path: &Path) -> Result<(), AuditError> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != ErrorKind::NotFound => Err(io_error(path, "remove")(error)),
        _ => Ok(()),
    }
}

/// Removes lock files that git or libgit2 left when a run was killed mid-write, and
/// temporary object files; only call while holding the run lock. Returns what was
/// removed, relative to the repository.
pub fn remove_stale_git_locks(path: &Path, _lock: &RunLock) -> Result<Vec<PathBuf>, AuditError> {
    let mut removed = Vec::new();
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Err(error) if error.kind() == ErrorKind::NotFound => continue,
            other => other.map_err(io_error(&dir, "list"))?,
        };
        for entry in entries {
            let entry = entry.map_err(io_error(&dir, "list"))?;
            let file_type = entry.file_type().map_err(io_error(&dir, "list"))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let entry_path = entry.path();
            if file_type.is_dir() {
                pending.push(entry_path);
            } else if (name.ends_with(".lock") && *name != *LOCK_FILE)
                || name.starts_with("tmp_object_git2_")
                || name.starts_with("_git2_")
            {
                fs::remove_file(&entry_path)
                    .map_err(io_error(&entry_path, "remove a stale lock"))?;
                removed.push(
                    entry_path
                        .strip_prefix(path)
                        .unwrap_or(&entry_path)
                        .to_path_buf(),
                );
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn author() -> Author {
        Author {
            name: "roster-sync".into(),
            email: "roster-sync@localhost".into(),
        }
    }

    fn tree(entries: &[(&str, &str)]) -> Tree {
        entries
            .iter()
            .map(|(name, content)| (name.to_string(), content.as_bytes().into()))
            .collect()
    }

    #[test]
    fn a_new_repository_is_bare_on_main_and_commits_the_exact_tree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit");
        let lock = lock(&path).unwrap();
        let repo = AuditRepo::open_or_init(&path, &lock).unwrap();
        assert!(repo.repo.is_bare());
        assert!(repo.head_tree().unwrap().is_empty());
        let files = tree(&[("k-students.txt", "a@x\n"), ("k-instructors.txt", "")]);
        let oid = repo.commit(&files, "first\n", &author(), &lock).unwrap();
        assert_eq!(repo.head_tree().unwrap(), files);
        assert_eq!(repo.repo.head().unwrap().name(), Ok("refs/heads/main"));
        let commit = repo.repo.find_commit(oid).unwrap();
        assert_eq!(commit.author().email(), Ok("roster-sync@localhost"));
        assert_eq!(commit.committer().name(), Ok("roster-sync"));
    }

    #[test]
    fn a_second_run_cannot_take_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        assert!(matches!(lock(dir.path()), Err(AuditError::Locked { .. })));
        drop(held);
        assert!(lock(dir.path()).is_ok());
    }

    #[test]
    fn a_creation_killed_half_way_is_completed() {
        let dir = tempfile::tempdir().unwrap();
        let lock = lock(dir.path()).unwrap();
        for folder in ["hooks", "info", "objects/info", "refs/heads"] {
            fs::create_dir_all(dir.path().join(folder)).unwrap();
        }
        fs::write(dir.path().join("description"), b"Unnamed repository").unwrap();
        fs::write(dir.path().join("config.lock"), b"[core]").unwrap();
        fs::write(dir.path().join("_git2_a1b2c3"), b"").unwrap();
        fs::write(dir.path().join(INIT_MARKER), b"").unwrap();
        let repo = AuditRepo::open_or_init(dir.path(), &lock).unwrap();
        assert!(repo.head_tree().unwrap().is_empty());
        assert_eq!(
            repo.repo.find_reference("HEAD").unwrap().symbolic_target(),
            Ok(Some("refs/heads/main"))
        );
    }

    #[test]
    fn a_foreign_directory_is_not_turned_into_a_repository() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("hooks")).unwrap();
        fs::write(dir.path().join("important.txt"), b"x").unwrap();
        let lock = lock(dir.path()).unwrap();
        assert!(matches!(
            AuditRepo::open_or_init(dir.path(), &lock),
            Err(AuditError::NotARepository { .. })
        ));
        assert!(!dir.path().join(INIT_MARKER).exists(), "nothing is claimed");
    }

    #[test]
    fn stale_git_locks_are_removed_but_ours_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let lock = lock(dir.path()).unwrap();
        let _repo = AuditRepo::open_or_init(dir.path(), &lock).unwrap();
        fs::write(dir.path().join("HEAD.lock"), b"").unwrap();
        fs::write(dir.path().join("refs/heads/main.lock"), b"").unwrap();
        let mut removed = remove_stale_git_locks(dir.path(), &lock).unwrap();
        removed.sort();
        assert_eq!(
            removed,
            [
                PathBuf::from("HEAD.lock"),
                PathBuf::from("refs/heads/main.lock")
            ]
        );
        assert!(dir.path().join(LOCK_FILE).exists());
    }

    #[test]
    fn history_lists_additions_and_removals_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let lock = lock(dir.path()).unwrap();
        let repo = AuditRepo::open_or_init(dir.path(), &lock).unwrap();
        repo.commit(
            &tree(&[("2019-fall-1-students.txt", "a@x\nb@x\n")]),
            "1\n",
            &author(),
            &lock,
        )
        .unwrap();
        repo.commit(
            &tree(&[("2019-fall-1-students.txt", "b@x\nc@x\n")]),
            "2\n",
            &author(),
            &lock,
        )
        .unwrap();
        let lines: Vec<(String, bool)> = repo
            .history()
            .unwrap()
            .into_iter()
            .map(|line| (line.address, line.added))
            .collect();
        assert_eq!(
            lines,
            [
                ("a@x".to_string(), true),
                ("b@x".to_string(), true),
                ("c@x".to_string(), true),
                ("a@x".to_string(), false)
            ]
        );
    }
}
