//! The output store: the directory of roster files that the hub reads.
//!
//! Invariants: every write is atomic (a `.roster-sync-tmp-*` file in the same
//! directory, fsync, rename over the target, fsync the directory), so a reader or a
//! crash sees the old file or the new one, never a mix; files are mode 0640 whatever
//! the umask; only names the caller passes are touched (plain file names: a name with
//! `/` or a dot name is refused), and a symlink at such a name is replaced, never
//! followed.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::tree::{Found, OnDisk, Tree};

const TEMP_PREFIX: &str = ".roster-sync-tmp-";
const FILE_MODE: u32 = 0o640;
const DIR_MODE: u32 = 0o750;

/// A file operation on the output directory failed (exit 5).
#[derive(Debug)]
pub struct StoreError {
    pub action: &'static str,
    pub path: PathBuf,
    pub error: std::io::Error,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "output directory: cannot {} {}: {}; check that the volume is mounted \
             writable for this user",
            self.action,
            self.path.display(),
            self.error
        )
    }
}

impl std::error::Error for StoreError {}

pub struct OutputDir {
    path: PathBuf,
}

impl OutputDir {
    /// An existing directory, for reading only.
    pub fn existing(path: &Path) -> Self {
        OutputDir {
            path: path.to_path_buf(),
        }
    }

    /// The directory, created with mode 0750 (and its parents) when missing.
    pub fn create(path: &Path) -> Result<Self, StoreError> {
        if !path.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(path)
                .map_err(|error| StoreError {
                    action: "create",
                    path: path.to_path_buf(),
                    error,
                })?;
            fs::set_permissions(path, Permissions::from_mode(DIR_MODE)).map_err(|error| {
                StoreError {
                    action: "set the mode of",
                    path: path.to_path_buf(),
                    error,
                }
            })?;
        }
        Ok(Self::existing(path))
    }

    /// `name` in the directory, when it is a plain file name.
    fn path_of(&self, name: &str) -> Result<PathBuf, StoreError> {
        match name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            true => Err(self.error(
                "use",
                name,
                std::io::Error::new(ErrorKind::InvalidInput, "not a plain file name"),
            )),
            false => Ok(self.path.join(name)),
        }
    }

    fn error(&self, action: &'static str, name: &str, error: std::io::Error) -> StoreError {
        StoreError {
            action,
            path: self.path.join(name),
            error,
        }
    }

    /// What is at `name`, without following a symlink.
    pub fn read(&self, name: &str) -> Result<OnDisk, StoreError> {
        let path = self.path_of(name)?;
        match fs::symlink_metadata(&path) {
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(OnDisk::Missing),
            Err(error) => Err(self.error("inspect", name, error)),
            Ok(metadata) if !metadata.file_type().is_file() => Ok(OnDisk::NotAFile),
            Ok(_) => fs::read(&path)
                .map(OnDisk::File)
                .map_err(|error| self.error("read", name, error)),
        }
    }

    /// Compares every file of `head` and `target` on disk with its content in both,
    /// one file at a time: what [`crate::tree::reconcile`] needs, without holding the
    /// directory's files in memory. Names are read in HEAD's order, then the new ones.
    pub fn survey(
        &self,
        head: &Tree,
        target: &Tree,
    ) -> Result<BTreeMap<String, Found>, StoreError> {
        let new = target.keys().filter(|name| !head.contains_key(*name));
        let mut found = BTreeMap::new();
        for name in head.keys().chain(new) {
            let disk = self.read(name)?;
            found.insert(name.clone(), Found::compare(name, &disk, head, target));
        }
        Ok(found)
    }

    /// Whether a file can be renamed over `name`: not when a directory is in its place
    /// (a rename over a directory fails). Checked before the audit commit, so the commit
    /// never records a file the hub cannot get.
    pub fn replaceable(&self, name: &str) -> Result<(), StoreError> {
        match fs::symlink_metadata(self.path_of(name)?) {
            Ok(metadata) if metadata.is_dir() => Err(self.error(
                "replace",
                name,
                std::io::Error::new(ErrorKind::IsADirectory, "a directory is in its place"),
            )),
            _ => Ok(()),
        }
    }

    /// Writes `content` to a durable temporary file beside `name`; [`Staged::publish`]
    /// then renames it over `name`. Staging every file before the audit commit proves the
    /// directory writable (and the volume not full) before anything is recorded.
    pub fn stage(&self, name: &str, content: &[u8]) -> Result<Staged<'_>, StoreError> {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        self.path_of(name)?;
        // A process id is often the same from run to run in a container, so a stray
        // entry may hold a temporary name: the next sequence number is tried.
        let mut attempts = 0;
        let (staged, mut file) = loop {
            let temp_name = format!(
                "{TEMP_PREFIX}{}-{}-{name}",
                std::process::id(),
                SEQUENCE.fetch_add(1, Ordering::Relaxed)
            );
            let opened = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(self.path.join(&temp_name));
            attempts += 1;
            match opened {
                Err(error) if error.kind() == ErrorKind::AlreadyExists && attempts < 100 => {
                    continue;
                }
                Err(error) => return Err(self.error("create", &temp_name, error)),
                Ok(file) => {
                    let staged = Staged {
                        store: self,
                        temp_name,
                        name: name.to_string(),
                        published: false,
                    };
                    break (staged, file);
                }
            }
        };
        // The umask may have narrowed the mode given at creation.
        file.set_permissions(Permissions::from_mode(FILE_MODE))
            .map_err(|error| self.error("set the mode of", &staged.temp_name, error))?;
        file.write_all(content)
            .and_then(|()| file.sync_all())
            .map_err(|error| self.error("write", &staged.temp_name, error))?;
        Ok(staged)
    }

    /// Stages every file like [`OutputDir::stage`], a few at a time: each one's fsync
    /// waits for the disk, and waiting for several at once lets the file system commit
    /// them together, which matters when a first run writes thousands of files. Returns
    /// each file's result in the order given: one file that cannot be staged does not
    /// stop the others.
    pub fn stage_all<'a>(&'a self, files: &[(&str, &[u8])]) -> Vec<Result<Staged<'a>, StoreError>> {
        const WRITERS: usize = 8;
        let chunk = files.len().div_ceil(WRITERS).max(1);
        let staged: Vec<Vec<Result<Staged<'a>, StoreError>>> = std::thread::scope(|scope| {
            let writers: Vec<_> = files
                .chunks(chunk)
                .map(|files| {
                    scope.spawn(move || {
                        let mut staged = Vec::with_capacity(files.len());
                        for (name, content) in files {
                            staged.push(self.stage(name, content));
                        }
                        staged
                    })
                })
                .collect();
            writers
                .into_iter()
                .map(|writer| writer.join().expect("a staging thread panicked"))
                .collect()
        });
        staged.into_iter().flatten().collect()
    }

    /// Replaces `name` with `content` atomically.
    #[cfg(test)]
    fn write(&self, name: &str, content: &[u8]) -> Result<(), StoreError> {
        self.stage(name, content)?.publish()?;
        self.sync()
    }

    /// Removes `name` (a file or a symlink, never what a symlink points to).
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        match fs::remove_file(self.path_of(name)?) {
            Err(error) if error.kind() != ErrorKind::NotFound => {
                Err(self.error("remove", name, error))
            }
            _ => self.sync(),
        }
    }

    /// Removes temporary files that a killed run left behind; returns how many. An entry
    /// with the temporary prefix that is a directory is not one of ours: it is left
    /// alone with a warning, and so is a file that cannot be removed, so neither stops
    /// the run.
    pub fn remove_stale_temp_files(&self) -> Result<usize, StoreError> {
        let entries = match fs::read_dir(&self.path) {
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(0),
            other => other.map_err(|error| self.error("list", "", error))?,
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(|error| self.error("list", "", error))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with(TEMP_PREFIX) {
                continue;
            }
            let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
            match is_dir {
                true => log::warn!(
                    "{}: a directory with the name of a temporary file; it is not the \
                     job's and is left alone",
                    entry.path().display()
                ),
                false => match fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(error) => log::warn!("{}", self.error("remove", name, error)),
                },
            }
        }
        if removed > 0 {
            self.sync()?;
        }
        Ok(removed)
    }

    /// Makes renames and removals in the directory durable.
    pub fn sync(&self) -> Result<(), StoreError> {
        File::open(&self.path)
            .and_then(|dir| dir.sync_all())
            .map_err(|error| self.error("sync", "", error))
    }
}

/// A roster file written to its temporary name, not yet in place. Dropped without
/// being published, it removes its temporary file.
pub struct Staged<'a> {
    store: &'a OutputDir,
    temp_name: String,
    name: String,
    published: bool,
}

impl Staged<'_> {
    /// The name the file is staged for.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renames the temporary file over the target; call [`OutputDir::sync`] after the
    /// last one to make the renames durable.
    pub fn publish(mut self) -> Result<(), StoreError> {
        let store = self.store;
        fs::rename(
            store.path.join(&self.temp_name),
            store.path.join(&self.name),
        )
        .map_err(|error| store.error("replace", &self.name, error))?;
        self.published = true;
        Ok(())
    }
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        if !self.published {
            let _ = fs::remove_file(self.store.path.join(&self.temp_name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_the_directory_and_writes_files_with_fixed_modes() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("srv/profiles.d");
        let store = OutputDir::create(&dir).unwrap();
        assert_eq!(mode(&dir), 0o750);
        store.write("k-students.txt", b"a@x\n").unwrap();
        store.write("k-students.txt", b"b@x\n").unwrap();
        assert_eq!(fs::read(dir.join("k-students.txt")).unwrap(), b"b@x\n");
        assert_eq!(mode(&dir.join("k-students.txt")), 0o640);
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["k-students.txt"], "no temporary file remains");
    }

    #[test]
    fn symlinks_are_seen_and_replaced_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let outside = root.path().join("outside.txt");
        fs::write(&outside, b"secret\n").unwrap();
        let store = OutputDir::create(&root.path().join("out")).unwrap();
        symlink(&outside, root.path().join("out/k-students.txt")).unwrap();
        assert_eq!(store.read("k-students.txt").unwrap(), OnDisk::NotAFile);
        store.write("k-students.txt", b"a@x\n").unwrap();
        assert_eq!(fs::read(&outside).unwrap(), b"secret\n");
        assert_eq!(
            store.read("k-students.txt").unwrap(),
            OnDisk::File(b"a@x\n".to_vec())
        );
        symlink(&outside, root.path().join("out/k-instructors.txt")).unwrap();
        store.remove("k-instructors.txt").unwrap();
        assert!(outside.exists());
        assert_eq!(store.read("k-instructors.txt").unwrap(), OnDisk::Missing);
    }

    #[test]
    fn staged_files_appear_only_when_published() {
        let root = tempfile::tempdir().unwrap();
        let store = OutputDir::create(root.path()).unwrap();
        store.write("k-students.txt", b"old\n").unwrap();
        let staged = store.stage("k-students.txt", b"new\n").unwrap();
        assert_eq!(
            fs::read(root.path().join("k-students.txt")).unwrap(),
            b"old\n"
        );
        staged.publish().unwrap();
        assert_eq!(
            fs::read(root.path().join("k-students.txt")).unwrap(),
            b"new\n"
        );
        drop(store.stage("k-instructors.txt", b"x\n").unwrap());
        let names: Vec<_> = fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            ["k-students.txt"],
            "an unpublished stage leaves nothing"
        );
    }

    #[test]
    fn staging_many_files_keeps_their_order_and_each_files_error() {
        let root = tempfile::tempdir().unwrap();
        let store = OutputDir::create(root.path()).unwrap();
        let names: Vec<String> = (0..50).map(|n| format!("{n:02}-students.txt")).collect();
        let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), n.as_bytes())).collect();
        let staged: Vec<Staged<'_>> = store
            .stage_all(&files)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(staged.len(), 50);
        for file in staged {
            file.publish().unwrap();
        }
        for name in &names {
            assert_eq!(fs::read(root.path().join(name)).unwrap(), name.as_bytes());
        }
        // Names that cannot be staged fail alone, in their place; the others are staged.
        for name in ["17-students.txt", "33-students.txt"] {
            fs::create_dir_all(root.path().join(format!("{TEMP_PREFIX}x")).join(name)).unwrap();
        }
        let bad: Vec<String> = names
            .iter()
            .map(|name| match name.as_str() {
                "17-students.txt" | "33-students.txt" => format!("../{TEMP_PREFIX}x/{name}/y"),
                _ => name.clone(),
            })
            .collect();
        let files: Vec<(&str, &[u8])> = bad.iter().map(|n| (n.as_str(), &b"new\n"[..])).collect();
        let results = store.stage_all(&files);
        let failed: Vec<usize> = results
            .iter()
            .enumerate()
            .filter_map(|(i, result)| result.is_err().then_some(i))
            .collect();
        assert_eq!(failed, [17, 33]);
        let staged = results.iter().filter(|result| result.is_ok()).count();
        assert_eq!(staged, 48);
        drop(results);
        let temporary = fs::read_dir(root.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".txt")
            })
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(TEMP_PREFIX)
            })
            .count();
        assert_eq!(temporary, 0, "files staged but not published are removed");
    }

    #[test]
    fn the_survey_compares_each_file_with_both_trees() {
        let root = tempfile::tempdir().unwrap();
        let store = OutputDir::create(root.path()).unwrap();
        store.write("a-students.txt", b"old\n").unwrap();
        store.write("b-students.txt", b"new\n").unwrap();
        fs::create_dir(root.path().join("c-students.txt")).unwrap();
        let tree = |entries: &[(&str, &str)]| -> Tree {
            entries
                .iter()
                .map(|(name, text)| (name.to_string(), text.as_bytes().into()))
                .collect()
        };
        let head = tree(&[("a-students.txt", "old\n"), ("c-students.txt", "x\n")]);
        let target = tree(&[("a-students.txt", "new\n"), ("b-students.txt", "new\n")]);
        let found = store.survey(&head, &target).unwrap();
        let expected = |present, as_head, as_target| Found {
            present,
            as_head,
            as_target,
        };
        assert_eq!(
            found,
            BTreeMap::from([
                ("a-students.txt".to_string(), expected(true, true, false)),
                ("b-students.txt".to_string(), expected(true, false, true)),
                ("c-students.txt".to_string(), expected(true, false, false)),
            ])
        );
        fs::remove_file(root.path().join("a-students.txt")).unwrap();
        let found = store.survey(&head, &target).unwrap();
        assert_eq!(found["a-students.txt"], Found::default());
    }

    #[test]
    fn names_that_are_not_plain_file_names_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let store = OutputDir::create(&root.path().join("out")).unwrap();
        fs::write(root.path().join("x-students.txt"), b"outside\n").unwrap();
        for name in ["../x-students.txt", "/x-students.txt", "..", ".", ""] {
            assert!(store.read(name).is_err(), "{name}");
            assert!(store.stage(name, b"y\n").is_err(), "{name}");
            assert!(store.remove(name).is_err(), "{name}");
        }
        assert_eq!(
            fs::read(root.path().join("x-students.txt")).unwrap(),
            b"outside\n"
        );
    }

    #[test]
    fn a_directory_in_a_files_place_is_not_replaceable() {
        let root = tempfile::tempdir().unwrap();
        let store = OutputDir::create(root.path()).unwrap();
        fs::create_dir(root.path().join("k-students.txt")).unwrap();
        let error = store.replaceable("k-students.txt").unwrap_err();
        assert!(error.to_string().contains("k-students.txt"), "{error}");
        assert!(store.replaceable("k-instructors.txt").is_ok());
        symlink("/nonexistent", root.path().join("k-instructors.txt")).unwrap();
        assert!(
            store.replaceable("k-instructors.txt").is_ok(),
            "a symlink is replaced"
        );
    }

    #[test]
    fn stale_temporary_files_are_removed_and_nothing_else() {
        let root = tempfile::tempdir().unwrap();
        let store = OutputDir::create(root.path()).unwrap();
        fs::write(
            root.path().join(".roster-sync-tmp-1-0-k-students.txt"),
            b"partial",
        )
        .unwrap();
        fs::write(root.path().join("notes.txt"), b"keep").unwrap();
        fs::create_dir(root.path().join(".roster-sync-tmp-stray")).unwrap();
        assert_eq!(store.remove_stale_temp_files().unwrap(), 1);
        assert!(root.path().join("notes.txt").exists());
        assert!(
            root.path().join(".roster-sync-tmp-stray").is_dir(),
            "not ours"
        );
        assert_eq!(store.remove_stale_temp_files().unwrap(), 0);
    }
}
