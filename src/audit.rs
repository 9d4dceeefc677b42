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
//!
//! The repository is ours alone: the job reads and writes `refs/heads/main` by name,
//! refuses a non-bare repository, a work tree, a `.git` file and a history without
//! `main` before it touches anything, and libgit2 is cut off from the machine's git
//! configuration and templates ([`isolate`]).

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use git2::{ConfigLevel, ErrorCode, Oid, Repository, RepositoryInitOptions, Signature};

use crate::course::{Course, KeyKind};
use crate::roster::List;
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
const MAIN_REF: &str = "refs/heads/main";

/// Cuts libgit2 off from the machine: no system, global (`~/.gitconfig`), XDG or
/// ProgramData configuration is read (so a broken or hostile one changes nothing, and an
/// unreadable `HOME` is never looked into), and every object, ref and index write is
/// fsynced, so a power cut cannot leave `main` naming objects that never reached the
/// disk. Templates are switched off per repository creation ([`AuditRepo::open_or_init`]).
///
/// The options are process-wide; the first call sets them and later calls return the
/// first call's verdict. `lib::run` calls it at startup, before any repository is
/// opened; the opening functions below call it too, so no path opens a repository with
/// the machine's configuration.
pub fn isolate() -> Result<(), git2::Error> {
    static VERDICT: OnceLock<Result<(), String>> = OnceLock::new();
    VERDICT
        .get_or_init(|| {
            for level in [
                ConfigLevel::System,
                ConfigLevel::Global,
                ConfigLevel::XDG,
                ConfigLevel::ProgramData,
            ] {
                // SAFETY: `set_search_path` mutates libgit2's global search paths and is
                // not synchronised against other libgit2 calls. It runs inside
                // `OnceLock::get_or_init`, once, and every function of this module that
                // opens or creates a repository waits for it first; nothing else in the
                // crate calls libgit2.
                unsafe { git2::opts::set_search_path(level, "") }
                    .map_err(|error| error.message().to_string())?;
            }
            // SAFETY: as above, a process-wide option set once before any repository is
            // opened. `GIT_OPT_ENABLE_FSYNC_GITDIR` takes one `int` argument (libgit2's
            // `git_libgit2_opts` documentation), which is what is passed.
            let status = unsafe {
                libgit2_sys::git_libgit2_opts(
                    libgit2_sys::GIT_OPT_ENABLE_FSYNC_GITDIR as std::ffi::c_int,
                    1 as std::ffi::c_int,
                )
            };
            if status < 0 {
                return Err(git2::Error::last_error(status).message().to_string());
            }
            Ok(())
        })
        .clone()
        .map_err(|message| git2::Error::from_str(&message))
}

fn isolated(path: &Path) -> Result<(), AuditError> {
    isolate().map_err(git_error(
        path,
        "shut out the machine's git configuration (libgit2 options)",
    ))
}

/// The umask under which the audit repository is created and written: directories
/// 0750, files 0640 (objects 0440), whatever umask the job was started with.
const REPO_UMASK: libc::mode_t = 0o027;

/// Sets [`REPO_UMASK`] while alive and restores the previous umask when dropped. The
/// umask is per process: the job writes to the repository from its main thread, or from
/// other threads while an [`ObjectWriters`] (which holds one) lives, and no other files
/// are created meanwhile but roster files, whose mode is set explicitly.
struct RepoUmask(libc::mode_t);

impl RepoUmask {
    fn set() -> RepoUmask {
        // SAFETY: umask(2) cannot fail and touches no memory.
        RepoUmask(unsafe { libc::umask(REPO_UMASK) })
    }
}

impl Drop for RepoUmask {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::umask(self.0) };
    }
}

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
    /// A repository or directory that is not a bare repository of ours: a work tree,
    /// a `.git` file, a non-bare repository, or history without `main` (exit 5).
    Foreign {
        path: PathBuf,
        what: &'static str,
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
            AuditError::Foreign { path, what } => write!(
                f,
                "audit repository {}: {what}; nothing in it was changed. Point \
                 --audit-repo at roster-sync's own bare repository, or at a missing or \
                 empty directory for a new one",
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
///
/// A directory that is not ours (a work tree, a non-bare repository, a history without
/// `main`, or anything else that is neither a repository nor empty) is refused before
/// the lock file is created in it.
pub fn lock(path: &Path) -> Result<RunLock, AuditError> {
    refuse_if_foreign(path)?;
    let _umask = RepoUmask::set();
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
            repo.adopt(lock)?;
            return Ok(repo);
        }
        if claimable(path)? {
            remove_stale_git_locks(path, lock)?;
        } else {
            let _umask = RepoUmask::set();
            File::create(&marker).map_err(io_error(&marker, "create"))?;
        }
        let repo = {
            let _umask = RepoUmask::set();
            Repository::init_opts(
                path,
                RepositoryInitOptions::new()
                    .bare(true)
                    .initial_head(BRANCH)
                    .external_template(false),
            )
            .map_err(git_error(path, "create it"))?
        };
        remove_if_present(&marker)?;
        log::info!("created the audit repository {}", path.display());
        Ok(AuditRepo {
            repo,
            path: path.to_path_buf(),
        })
    }

    /// Points the `HEAD` of a repository without commits at `main` (one that someone
    /// else created with `git init --bare`, say), so that `git log` shows what we commit.
    fn adopt(&self, _lock: &RunLock) -> Result<(), AuditError> {
        let head = self.repo.find_reference("HEAD").ok();
        let target = head
            .as_ref()
            .and_then(|head| head.symbolic_target().ok().flatten());
        if target == Some(MAIN_REF) || self.main()?.is_some() {
            return Ok(());
        }
        let _umask = RepoUmask::set();
        self.repo
            .set_head(MAIN_REF)
            .map_err(git_error(&self.path, "point HEAD at main"))?;
        log::info!(
            "audit repository {}: no commits yet; HEAD now points at main",
            self.path.display()
        );
        Ok(())
    }

    /// Opens the repository if there is one; creates nothing. A work tree, a `.git`
    /// file, a non-bare repository and a history without `main` are refused.
    pub fn open_existing(path: &Path) -> Result<Option<Self>, AuditError> {
        isolated(path)?;
        let foreign = |what| {
            Err(AuditError::Foreign {
                path: path.to_path_buf(),
                what,
            })
        };
        if fs::symlink_metadata(path.join(".git")).is_ok() {
            return foreign(
                "it holds a .git file or directory, so it is a work tree, not a bare \
                 repository",
            );
        }
        let repo = match Repository::open(path) {
            Ok(repo) => repo,
            Err(error) if error.code() == ErrorCode::NotFound => return Ok(None),
            Err(error) => return Err(git_error(path, "open it")(error)),
        };
        if !repo.is_bare() || repo.is_worktree() {
            return foreign("it is not a bare repository (it has a work tree)");
        }
        let repo = AuditRepo {
            repo,
            path: path.to_path_buf(),
        };
        if repo.main()?.is_none() && repo.has_history()? {
            return foreign("it has commits but no branch main (roster-sync records on main only)");
        }
        Ok(Some(repo))
    }

    /// `refs/heads/main`, if it exists.
    fn main(&self) -> Result<Option<git2::Reference<'_>>, AuditError> {
        match self.repo.find_reference(MAIN_REF) {
            Ok(main) => Ok(Some(main)),
            Err(error) if error.code() == ErrorCode::NotFound => Ok(None),
            Err(error) => Err(git_error(&self.path, "read refs/heads/main")(error)),
        }
    }

    /// Whether any reference, or a detached `HEAD`, names a commit.
    fn has_history(&self) -> Result<bool, AuditError> {
        let read = || git_error(&self.path, "list its references");
        let mut references = self.repo.references().map_err(read())?;
        Ok(references.next().is_some() || self.repo.head_detached().map_err(read())?)
    }

    /// The commit `main` names, `None` before the first commit. `HEAD` is not read: the
    /// job's history is `main`, whatever `HEAD` says.
    fn head_commit(&self) -> Result<Option<git2::Commit<'_>>, AuditError> {
        match self.main()? {
            Some(main) => main
                .peel_to_commit()
                .map(Some)
                .map_err(git_error(&self.path, "read refs/heads/main")),
            None => Ok(None),
        }
    }

    /// The roster files of the HEAD commit (empty before the first commit); the other
    /// entries of its tree are left out (see [`Head`]).
    pub fn head_tree(&self) -> Result<Tree, AuditError> {
        Ok(self.head()?.tree)
    }

    /// The HEAD commit's tree, split into its roster entries and the others.
    pub fn head(&self) -> Result<Head, AuditError> {
        match self.head_commit()? {
            Some(commit) => self.files(&commit),
            None => Ok(Head::default()),
        }
    }

    fn files(&self, commit: &git2::Commit<'_>) -> Result<Head, AuditError> {
        let read = git_error(&self.path, "read a commit");
        let tree = commit.tree().map_err(read)?;
        let mut head = Head::default();
        for entry in tree.iter() {
            let Some(name) = roster_entry(&entry) else {
                head.foreign
                    .push(String::from_utf8_lossy(entry.name_bytes()).into_owned());
                continue;
            };
            let blob = self
                .repo
                .find_blob(entry.id())
                .map_err(git_error(&self.path, "read a file"))?;
            head.tree.insert(name.to_string(), blob.content().into());
        }
        Ok(head)
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
        let _umask = RepoUmask::set();
        let parent = self.head_commit()?;
        // Entries that are not roster files are carried over from HEAD as they are; a
        // roster file of the same name (a course whose file a folder shadowed) wins.
        // libgit2's tree builder refuses names such as `../x`, so the tree object is
        // written here, in git's format.
        let mut entries: Vec<RawEntry> = Vec::new();
        if let Some(parent) = &parent {
            let tree = parent.tree().map_err(write())?;
            for entry in tree.iter().filter(|entry| roster_entry(entry).is_none()) {
                if !files.contains_key(&*String::from_utf8_lossy(entry.name_bytes())) {
                    entries.push(RawEntry {
                        name: entry.name_bytes().to_vec(),
                        mode: entry.filemode_raw(),
                        id: entry.id(),
                    });
                }
            }
        }
        let odb = self.repo.odb().map_err(write())?;
        for (name, content) in files {
            entries.push(RawEntry {
                name: name.as_bytes().to_vec(),
                mode: 0o100644,
                id: write_blob(&odb, content).map_err(write())?,
            });
        }
        let tree_id = odb
            .write(git2::ObjectType::Tree, &raw_tree(entries))
            .map_err(write())?;
        let tree = self.repo.find_tree(tree_id).map_err(write())?;
        let signature = Signature::now(&author.name, &author.email).map_err(write())?;
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        self.repo
            .commit(
                Some(MAIN_REF),
                &signature,
                &signature,
                message,
                &tree,
                &parents,
            )
            .map_err(write())
    }

    /// The commit `refs/heads/main` names, `None` before the first commit.
    pub(crate) fn main_commit(&self) -> Result<Option<git2::Commit<'_>>, AuditError> {
        match self.repo.find_reference("refs/heads/main") {
            Ok(reference) => reference
                .peel_to_commit()
                .map(Some)
                .map_err(self.error("read refs/heads/main")),
            Err(error) if error.code() == ErrorCode::NotFound => Ok(None),
            Err(error) => Err(self.error("read refs/heads/main")(error)),
        }
    }

    /// Packs the repository when more than `threshold` objects are loose, so years of daily
    /// runs stay a handful of files: writes one pack of everything `main` reaches and
    /// returns what it supersedes, for [`Superseded::remove`] once the run has committed.
    /// Only call while holding the run lock.
    ///
    /// Crash safety: the new pack holds every object `main` reaches and is written in full
    /// (pack, then index, fsynced, under temporary names renamed at the end) before any
    /// loose object or older pack is removed, so a kill at any instant leaves every object
    /// in at least one place; what a killed packing leaves is swept like other leftovers.
    /// Removal waits for the end of the run because libgit2 handles that saw an older pack
    /// do not forget it: looking an object up there after the pack was removed writes the
    /// object again, loose.
    pub fn pack_if_needed(
        &self,
        threshold: usize,
        _lock: &RunLock,
    ) -> Result<Option<Superseded>, AuditError> {
        let objects = self.path.join("objects");
        let loose = loose_objects(&objects)?;
        if threshold == 0 || loose.len() <= threshold {
            return Ok(None);
        }
        let Some(main) = self.main_commit()? else {
            return Ok(None);
        };
        let pack = || self.error("pack the repository");
        let _umask = RepoUmask::set();
        let reachable = self.reachable(main.id())?;
        let mut builder = self.repo.packbuilder().map_err(pack())?;
        // Inserted by walking the history, so every blob comes with its file name and
        // the builder stores each version of a roster as a delta against its neighbour.
        let mut walk = self.repo.revwalk().map_err(pack())?;
        walk.push(main.id()).map_err(pack())?;
        builder.insert_walk(&mut walk).map_err(pack())?;
        let pack_dir = objects.join("pack");
        builder.write(&pack_dir, 0o444).map_err(pack())?;
        let name = builder
            .name()
            .map_err(pack())?
            .map(|hash| format!("pack-{hash}"))
            .ok_or_else(|| {
                pack()(git2::Error::from_str(
                    "the pack builder gave the pack no name",
                ))
            })?;
        // Everything main reached is in the new pack now: the older packs and the loose
        // copies of those objects can go. Loose objects nothing reaches are left alone.
        let mut files = Vec::new();
        for entry in fs::read_dir(&pack_dir).map_err(io_error(&pack_dir, "list"))? {
            let entry = entry.map_err(io_error(&pack_dir, "list"))?;
            let file = entry.file_name();
            let file = file.to_string_lossy();
            let old_pack = file.starts_with("pack-")
                && !file.starts_with(&name)
                && [".pack", ".idx", ".rev"]
                    .iter()
                    .any(|suffix| file.ends_with(suffix));
            if old_pack {
                files.push(entry.path());
            }
        }
        let mut packed = 0;
        for (oid, file) in loose {
            if reachable.contains(&oid) {
                files.push(file);
                packed += 1;
            }
        }
        Ok(Some(Superseded {
            pack: name,
            packed,
            files,
        }))
    }

    /// Every object `tip` reaches: commits, trees and blobs.
    fn reachable(&self, tip: Oid) -> Result<BTreeSet<Oid>, AuditError> {
        let read = || self.error("read the history");
        let mut walk = self.repo.revwalk().map_err(read())?;
        walk.push(tip).map_err(read())?;
        let mut found = BTreeSet::new();
        let mut trees = Vec::new();
        for oid in walk {
            let commit = self
                .repo
                .find_commit(oid.map_err(read())?)
                .map_err(read())?;
            found.insert(commit.id());
            trees.push(commit.tree_id());
        }
        while let Some(tree) = trees.pop() {
            if !found.insert(tree) {
                continue;
            }
            for entry in self.repo.find_tree(tree).map_err(read())?.iter() {
                match entry.kind() {
                    Some(git2::ObjectType::Tree) => trees.push(entry.id()),
                    _ => {
                        found.insert(entry.id());
                    }
                }
            }
        }
        Ok(found)
    }

    /// The repository, for the read-only queries of [`crate::history`].
    pub(crate) fn git(&self) -> &Repository {
        &self.repo
    }

    /// How a libgit2 failure to `action` reads.
    pub(crate) fn error(
        &self,
        action: &'static str,
    ) -> impl FnOnce(git2::Error) -> AuditError + '_ {
        git_error(&self.path, action)
    }
}

/// Writes into the repository from other threads while the fetch goes on: blobs written
/// ahead ([`crate::ahead`]) and a packing. Each thread opens its own handle, as a libgit2
/// repository is not shared between threads; the umask stays the repository's while
/// this lives, since it is the whole process's.
pub struct ObjectWriters<'a> {
    path: &'a Path,
    lock: &'a RunLock,
    _umask: RepoUmask,
}

/// What a new pack made redundant: older packs and the loose copies of what it holds.
#[derive(Debug)]
pub struct Superseded {
    pack: String,
    packed: usize,
    files: Vec<PathBuf>,
}

impl Superseded {
    /// Removes the superseded files; only once no handle opened before the packing will
    /// look anything up any more, under the run lock that packed.
    pub fn remove(self, _lock: &RunLock) -> Result<(), AuditError> {
        for file in &self.files {
            remove_if_present(file)?;
        }
        log::info!(
            "packed {} loose objects of the audit repository into {}",
            self.packed,
            self.pack
        );
        Ok(())
    }
}

/// One thread's handle of [`ObjectWriters`].
pub struct ObjectWriter(Repository);

impl AuditRepo {
    /// Writers for other threads; only while holding the run lock.
    pub fn object_writers<'a>(&'a self, lock: &'a RunLock) -> ObjectWriters<'a> {
        ObjectWriters {
            path: &self.path,
            lock,
            _umask: RepoUmask::set(),
        }
    }
}

impl ObjectWriters<'_> {
    pub fn open(&self) -> Result<ObjectWriter, AuditError> {
        Repository::open_bare(self.path)
            .map(ObjectWriter)
            .map_err(git_error(self.path, "open it"))
    }

    /// [`AuditRepo::pack_if_needed`] on a handle of its own.
    pub fn pack_if_needed(&self, threshold: usize) -> Result<Option<Superseded>, AuditError> {
        let repo = AuditRepo {
            repo: self.open()?.0,
            path: self.path.to_path_buf(),
        };
        repo.pack_if_needed(threshold, self.lock)
    }
}

impl ObjectWriter {
    /// Writes `content` as a blob (fsynced), unless the repository has it already.
    pub fn blob(&self, content: &[u8]) -> Result<Oid, git2::Error> {
        write_blob(&self.0.odb()?, content)
    }
}

/// Writes `content` as a blob, unless the repository has it already. Not
/// `Repository::blob`: that one compresses the content into a temporary file before it
/// looks, which made a commit over blobs written ahead cost a millisecond a file.
fn write_blob(odb: &git2::Odb<'_>, content: &[u8]) -> Result<Oid, git2::Error> {
    odb.write(git2::ObjectType::Blob, content)
}

/// One entry of a tree object to write.
struct RawEntry {
    name: Vec<u8>,
    mode: i32,
    id: Oid,
}

/// A tree object's bytes: entries in git's order (by name, a folder compared as if its
/// name ended in `/`), each `{octal mode} {name}\0{20-byte id}`.
fn raw_tree(mut entries: Vec<RawEntry>) -> Vec<u8> {
    let sort_key = |entry: &RawEntry| {
        let mut key = entry.name.clone();
        if entry.mode == 0o040000 {
            key.push(b'/');
        }
        key
    };
    entries.sort_by_cached_key(sort_key);
    entries.dedup_by(|a, b| a.name == b.name);
    let mut raw = Vec::new();
    for entry in entries {
        raw.extend_from_slice(format!("{:o} ", entry.mode).as_bytes());
        raw.extend_from_slice(&entry.name);
        raw.push(0);
        raw.extend_from_slice(entry.id.as_bytes());
    }
    raw
}

/// The HEAD commit's tree as the job works with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Head {
    /// The roster entries: regular files at the root named like a roster file of a
    /// valid course key.
    pub tree: Tree,
    /// The names of every other entry (a `README.md`, a folder, a name with `/` or
    /// `..`): kept in the tree as they are, never written to, read from or removed
    /// from the output directory.
    pub foreign: Vec<String>,
}

/// The name of a tree entry that is a roster entry: a regular file (blob) whose name is
/// `{key}-students.txt` or `{key}-instructors.txt` for a key [`Course::classify`] accepts.
fn roster_entry<'a>(entry: &'a git2::TreeEntry<'_>) -> Option<&'a str> {
    let regular = matches!(entry.filemode_raw(), 0o100644 | 0o100755);
    let name = entry.name().ok()?;
    let (key, _) = List::parse_file_name(name)?;
    (regular && matches!(Course::classify(key), KeyKind::Course(_))).then_some(name)
}

fn remove_if_present(path: &Path) -> Result<(), AuditError> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != ErrorKind::NotFound => Err(io_error(path, "remove")(error)),
        _ => Ok(()),
    }
}

/// Refuses a directory that is neither missing, a repository of ours nor [`claimable`].
///
/// It runs before the lock is taken, so another run may be creating the repository
/// meanwhile (it holds the lock, and its marker is there from before its first file to
/// after its last): a repository that does not open yet is ours when its marker is there,
/// and a directory refused is looked at again, since the creation may have ended between
/// the two looks. Two runs started together on a fresh volume then end as one success and
/// one "locked", not as a refused directory.
fn refuse_if_foreign(path: &Path) -> Result<(), AuditError> {
    if fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    match AuditRepo::open_existing(path) {
        Ok(Some(_)) => return Ok(()),
        Ok(None) => {}
        Err(_) if path.join(INIT_MARKER).exists() => return Ok(()),
        Err(error) => return Err(error),
    }
    match claimable(path) {
        Err(AuditError::NotARepository { .. })
            if matches!(AuditRepo::open_existing(path), Ok(Some(_))) =>
        {
            Ok(())
        }
        result => result.map(drop),
    }
}

/// Whether a directory that is not a repository may become one: `Ok(true)` when it holds
/// the marker of a creation that was killed (so what else it holds is ours), `Ok(false)`
/// when it holds nothing but our lock file and a volume's `lost+found`, and
/// [`AuditError::NotARepository`] when it holds anything else.
fn claimable(path: &Path) -> Result<bool, AuditError> {
    if path.join(INIT_MARKER).exists() {
        return Ok(true);
    }
    for entry in fs::read_dir(path).map_err(io_error(path, "list"))? {
        let name = entry.map_err(io_error(path, "list"))?.file_name();
        // Made since the check above, by a run creating the repository now.
        if name == INIT_MARKER {
            return Ok(true);
        }
        if name != LOCK_FILE && name != "lost+found" {
            return Err(AuditError::NotARepository {
                path: path.to_path_buf(),
            });
        }
    }
    Ok(false)
}

/// Root files whose `.lock` libgit2 may leave when killed while writing them (`index`
/// too: a bare repository has none, but libgit2 and git tools may write one in it).
const ROOT_LOCKS: [&str; 4] = ["HEAD.lock", "config.lock", "packed-refs.lock", "index.lock"];

/// Removes what libgit2 itself can leave in a bare repository when a run is killed
/// mid-write, and nothing else: the root locks of [`ROOT_LOCKS`], `*.lock` below `refs/`
/// and `logs/`, `tmp_object_git2_*` in `objects/` and `_git2_*` at the root. Only call while holding the run lock, on a repository [`lock`] accepted (a
/// bare one, or a creation of ours). Returns what was removed, relative to the
/// repository.
pub fn remove_stale_git_locks(path: &Path, _lock: &RunLock) -> Result<Vec<PathBuf>, AuditError> {
    let mut stale = Vec::new();
    for (dir, recursive, wanted) in [
        (path.to_path_buf(), false, root_leftover as fn(&str) -> bool),
        (path.join("objects"), false, |name: &str| {
            name.starts_with("tmp_object_git2_")
        }),
        // A pack being written: libgit2's temporary pack and the lock of its index.
        (path.join("objects/pack"), false, |name: &str| {
            name.starts_with("pack_git2_") || name.ends_with(".lock")
        }),
        (path.join("refs"), true, |name: &str| {
            name.ends_with(".lock")
        }),
        (path.join("logs"), true, |name: &str| {
            name.ends_with(".lock")
        }),
    ] {
        collect_files(&dir, recursive, wanted, &mut stale)?;
    }
    let mut removed = Vec::new();
    for entry_path in stale {
        fs::remove_file(&entry_path).map_err(io_error(&entry_path, "remove a stale lock"))?;
        removed.push(
            entry_path
                .strip_prefix(path)
                .unwrap_or(&entry_path)
                .to_path_buf(),
        );
    }
    Ok(removed)
}

/// The loose objects below `objects`: `xx/yyyy…` files, with their ids.
fn loose_objects(objects: &Path) -> Result<Vec<(Oid, PathBuf)>, AuditError> {
    let mut found = Vec::new();
    for dir in fs::read_dir(objects).map_err(io_error(objects, "list"))? {
        let dir = dir.map_err(io_error(objects, "list"))?;
        let prefix = dir.file_name().to_string_lossy().into_owned();
        if prefix.len() != 2 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        for file in fs::read_dir(dir.path()).map_err(io_error(&dir.path(), "list"))? {
            let file = file.map_err(io_error(&dir.path(), "list"))?;
            let rest = file.file_name().to_string_lossy().into_owned();
            if rest.len() == 38
                && let Ok(oid) = Oid::from_str(&format!("{prefix}{rest}"))
            {
                found.push((oid, file.path()));
            }
        }
    }
    Ok(found)
}

fn root_leftover(name: &str) -> bool {
    ROOT_LOCKS.contains(&name) || name.starts_with("_git2_")
}

/// The regular files in `dir` (and, when `recursive`, below it, not following
/// symlinks) whose name is `wanted`.
fn collect_files(
    dir: &Path,
    recursive: bool,
    wanted: fn(&str) -> bool,
    found: &mut Vec<PathBuf>,
) -> Result<(), AuditError> {
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Err(error) if error.kind() == ErrorKind::NotFound => continue,
            other => other.map_err(io_error(&dir, "list"))?,
        };
        for entry in entries {
            let entry = entry.map_err(io_error(&dir, "list"))?;
            let file_type = entry.file_type().map_err(io_error(&dir, "list"))?;
            if file_type.is_dir() && recursive {
                pending.push(entry.path());
            } else if file_type.is_file() && entry.file_name().to_str().is_some_and(wanted) {
                found.push(entry.path());
            }
        }
    }
    Ok(())
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
        let files = tree(&[
            ("2019-fall-1-students.txt", "a@x\n"),
            ("2019-fall-1-instructors.txt", ""),
        ]);
        let oid = repo.commit(&files, "first\n", &author(), &lock).unwrap();
        assert_eq!(repo.head_tree().unwrap(), files);
        assert_eq!(repo.repo.head().unwrap().name(), Ok("refs/heads/main"));
        let commit = repo.repo.find_commit(oid).unwrap();
        assert_eq!(commit.author().email(), Ok("roster-sync@localhost"));
        assert_eq!(commit.committer().name(), Ok("roster-sync"));
    }

    #[test]
    fn trees_are_written_as_libgit2_writes_them_and_foreign_entries_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let lock = lock(dir.path()).unwrap();
        let repo = AuditRepo::open_or_init(dir.path(), &lock).unwrap();
        let git = repo.git();
        let blob = git.blob(b"x\n").unwrap();
        let mut builder = git.treebuilder(None).unwrap();
        builder.insert("notes.txt", blob, 0o100644).unwrap();
        let folder = builder.write().unwrap();
        let mut builder = git.treebuilder(None).unwrap();
        let entries = [
            ("a", folder, 0o040000),
            ("a.txt", blob, 0o100644),
            ("a-b", blob, 0o100755),
            ("2019-fall-1-students.txt", blob, 0o100644),
        ];
        for (name, id, mode) in entries {
            builder.insert(name, id, mode).unwrap();
        }
        let expected = builder.write().unwrap();
        let raw = entries.map(|(name, id, mode)| RawEntry {
            name: name.as_bytes().to_vec(),
            mode,
            id,
        });
        let written = git
            .odb()
            .unwrap()
            .write(git2::ObjectType::Tree, &raw_tree(raw.into()))
            .unwrap();
        assert_eq!(written, expected);

        // A commit on that tree: the three other entries are foreign, kept by a commit.
        let signature = Signature::now("t", "t@t").unwrap();
        let written = git.find_tree(expected).unwrap();
        git.commit(Some(MAIN_REF), &signature, &signature, "x", &written, &[])
            .unwrap();
        let head = repo.head().unwrap();
        assert_eq!(head.foreign, ["a-b", "a.txt", "a"], "in git's order");
        assert_eq!(head.tree.len(), 1);
        repo.commit(&tree(&[]), "2\n", &author(), &lock).unwrap();
        let head = repo.head().unwrap();
        assert_eq!(head.foreign, ["a-b", "a.txt", "a"], "in git's order");
        assert!(head.tree.is_empty());
    }

    #[test]
    fn a_second_run_cannot_take_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        assert!(matches!(lock(dir.path()), Err(AuditError::Locked { .. })));
        drop(held);
        assert!(lock(dir.path()).is_ok());
    }

    /// What a second run sees while the lock holder's libgit2 is half-way through creating
    /// the repository (here: a config not yet complete, so it does not open): a run that
    /// must wait, not a directory that is someone else's.
    #[test]
    fn a_repository_half_made_by_the_lock_holder_makes_a_second_run_locked_not_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _held = lock(dir.path()).unwrap();
        fs::write(dir.path().join(INIT_MARKER), b"").unwrap();
        for folder in ["objects", "refs/heads"] {
            fs::create_dir_all(dir.path().join(folder)).unwrap();
        }
        fs::write(dir.path().join("HEAD"), b"ref: refs/heads/main\n").unwrap();
        fs::write(dir.path().join("config"), b"[core\n\tbare = ").unwrap();
        assert!(
            AuditRepo::open_existing(dir.path()).is_err(),
            "it does not open yet"
        );
        assert!(matches!(lock(dir.path()), Err(AuditError::Locked { .. })));
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
        assert!(matches!(
            lock(dir.path()),
            Err(AuditError::NotARepository { .. })
        ));
        assert!(!dir.path().join(INIT_MARKER).exists(), "nothing is claimed");
        assert!(
            !dir.path().join(LOCK_FILE).exists(),
            "no lock file is left in it"
        );
    }

    #[test]
    fn stale_git_locks_are_removed_but_ours_and_foreign_ones_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let lock = lock(dir.path()).unwrap();
        let _repo = AuditRepo::open_or_init(dir.path(), &lock).unwrap();
        for name in [
            "HEAD.lock",
            "refs/heads/main.lock",
            "objects/tmp_object_git2_a1b2c3",
            "Cargo.lock",
            "hooks/yarn.lock",
            "objects/ab/x.lock",
        ] {
            fs::create_dir_all(dir.path().join(name).parent().unwrap()).unwrap();
            fs::write(dir.path().join(name), b"").unwrap();
        }
        let mut removed = remove_stale_git_locks(dir.path(), &lock).unwrap();
        removed.sort();
        assert_eq!(
            removed,
            [
                PathBuf::from("HEAD.lock"),
                PathBuf::from("objects/tmp_object_git2_a1b2c3"),
                PathBuf::from("refs/heads/main.lock"),
            ]
        );
        for kept in [
            LOCK_FILE,
            "Cargo.lock",
            "hooks/yarn.lock",
            "objects/ab/x.lock",
        ] {
            assert!(dir.path().join(kept).exists(), "{kept}");
        }
    }

    /// A repository made by the git binary, as an operator's mistake would be.
    fn git(dir: &Path, args: &[&str]) {
        let status = std::process::Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "init.defaultBranch=master",
            ])
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    }

    #[test]
    fn work_trees_and_non_bare_repositories_are_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        fs::create_dir(&work).unwrap();
        git(&work, &["init", "-q"]);
        fs::write(work.join("Cargo.lock"), b"x").unwrap();
        git(&work, &["add", "."]);
        git(&work, &["commit", "-qm", "x"]);
        let linked = dir.path().join("linked");
        fs::create_dir(&linked).unwrap();
        fs::write(
            linked.join(".git"),
            format!("gitdir: {}\n", work.join(".git").display()),
        )
        .unwrap();
        for path in [&work, &work.join(".git"), &linked] {
            let before = listing(path);
            let error = lock(path).unwrap_err();
            assert!(
                matches!(error, AuditError::Foreign { .. }),
                "{path:?}: {error}"
            );
            assert!(matches!(
                AuditRepo::open_existing(path),
                Err(AuditError::Foreign { .. })
            ));
            assert_eq!(listing(path), before, "{path:?} untouched");
        }
        assert!(work.join("Cargo.lock").exists());
    }

    fn listing(dir: &Path) -> Vec<PathBuf> {
        let mut all = Vec::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() && !path.is_symlink() {
                    pending.push(path.clone());
                }
                all.push(path);
            }
        }
        all.sort();
        all
    }

    #[test]
    fn history_without_main_is_refused_and_an_empty_foreign_repository_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let master = dir.path().join("master");
        fs::create_dir(&master).unwrap();
        git(&master, &["init", "-q", "--bare"]);
        let work = dir.path().join("work");
        fs::create_dir(&work).unwrap();
        git(&work, &["init", "-q"]);
        git(&work, &["commit", "-q", "--allow-empty", "-m", "x"]);
        git(&work, &["push", "-q", master.to_str().unwrap(), "master"]);
        let before = listing(&master);
        assert!(matches!(lock(&master), Err(AuditError::Foreign { .. })));
        assert_eq!(listing(&master), before);

        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        git(&empty, &["init", "-q", "--bare"]);
        let lock = lock(&empty).unwrap();
        let repo = AuditRepo::open_or_init(&empty, &lock).unwrap();
        assert_eq!(
            repo.repo.find_reference("HEAD").unwrap().symbolic_target(),
            Ok(Some(MAIN_REF))
        );
    }

    #[test]
    fn main_is_read_and_written_by_name_whatever_head_says() {
        let dir = tempfile::tempdir().unwrap();
        let lock = lock(dir.path()).unwrap();
        let repo = AuditRepo::open_or_init(dir.path(), &lock).unwrap();
        let files = tree(&[("2019-fall-1-students.txt", "a@x\n")]);
        let first = repo.commit(&files, "1\n", &author(), &lock).unwrap();
        repo.repo
            .reference_symbolic("HEAD", "refs/heads/elsewhere", true, "test")
            .unwrap();
        let repo = AuditRepo::open_or_init(dir.path(), &lock).unwrap();
        assert_eq!(repo.head_tree().unwrap(), files);
        let second = repo.commit(&tree(&[]), "2\n", &author(), &lock).unwrap();
        let main = repo.repo.find_reference(MAIN_REF).unwrap();
        assert_eq!(main.target(), Some(second));
        assert_eq!(
            repo.repo.find_commit(second).unwrap().parent_id(0).unwrap(),
            first
        );
        assert!(repo.repo.find_reference("refs/heads/elsewhere").is_err());
    }
}
