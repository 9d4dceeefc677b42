//! The output store: the directory of roster files that the hub reads.
//!
//! Invariants: every write is atomic (a `.roster-sync-tmp-*` file in the same
//! directory, fsync, rename over the target, fsync the directory), so a reader or a
//! crash sees the old file or the new one, never a mix; files are mode 0640 whatever
//! the umask; only names the caller passes are touched, and a symlink at such a name is
//! replaced, never followed.

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

    fn error(&self, action: &'static str, name: &str, error: std::io::Error) -> StoreError {
        StoreError {
            action,
            path: self.path.join(name),
            error,
        }
    }

    /// What is at `name`, without following a symlink.
    pub fn read(&self, name: &str) -> Result<OnDisk, StoreError> {
        let path = self.path.join(name);
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

    /// Writes `content` to a durable temporary file beside `name`; [`Staged::publish`]
    /// then renames it over `name`. Staging every file before the audit commit proves the
    /// directory writable (and the volume not full) before anything is recorded.
    pub fn stage(&self, name: &str, content: &[u8]) -> Result<Staged<'_>, StoreError> {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let temp_name = format!(
            "{TEMP_PREFIX}{}-{}-{name}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let staged = Staged {
            store: self,
            temp_name,
            name: name.to_string(),
            published: false,
        };
        let temp_path = self.path.join(&staged.temp_name);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&temp_path)
            .map_err(|error| self.error("create", &staged.temp_name, error))?;
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
    /// them together, which matters when a first run writes thousands of files. The
    /// error is the first one in the order given, as if they were staged one by one; on
    /// an error, the files staged are removed again.
    pub fn stage_all<'a>(&'a self, files: &[(&str, &[u8])]) -> Result<Vec<Staged<'a>>, StoreError> {
        const WRITERS: usize = 8;
        let chunk = files.len().div_ceil(WRITERS).max(1);
        let staged: Vec<Vec<Result<Staged<'a>, StoreError>>> = std::thread::scope(|scope| {
            let writers: Vec<_> = files
                .chunks(chunk)
                .map(|files| {
                    scope.spawn(move || {
                        let mut staged = Vec::with_capacity(files.len());
                        for (name, content) in files {
                            let result = self.stage(name, content);
                            let failed = result.is_err();
                            staged.push(result);
                            if failed {
                                break;
                            }
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
        match fs::remove_file(self.path.join(name)) {
            Err(error) if error.kind() != ErrorKind::NotFound => {
                Err(self.error("remove", name, error))
            }
            _ => self.sync(),
        }
    }

    /// Removes temporary files that a killed run left behind; returns how many.
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
            if name.starts_with(TEMP_PREFIX) {
                fs::remove_file(entry.path()).map_err(|error| self.error("remove", name, error))?;
                removed += 1;
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
    fn staging_many_files_keeps_their_order_and_the_first_error() {
        let root = tempfile::tempdir().unwrap();
        let store = OutputDir::create(root.path()).unwrap();
        let names: Vec<String> = (0..50).map(|n| format!("{n:02}-students.txt")).collect();
        let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), n.as_bytes())).collect();
        let staged = store.stage_all(&files).unwrap();
        assert_eq!(staged.len(), 50);
        for file in staged {
            file.publish().unwrap();
        }
        for name in &names {
            assert_eq!(fs::read(root.path().join(name)).unwrap(), name.as_bytes());
        }
        // A temporary name that cannot be created: the first such file is the error.
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
        let error = store.stage_all(&files).err().unwrap();
        assert!(
            error.path.to_string_lossy().contains("17-students.txt"),
            "{error}"
        );
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
        assert_eq!(
            temporary, 0,
            "the files staged before the error are removed"
        );
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
    fn stale_temporary_files_are_removed_and_nothing_else() {
        let root = tempfile::tempdir().unwrap();
        let store = OutputDir::create(root.path()).unwrap();
        fs::write(
            root.path().join(".roster-sync-tmp-1-0-k-students.txt"),
            b"partial",
        )
        .unwrap();
        fs::write(root.path().join("notes.txt"), b"keep").unwrap();
        assert_eq!(store.remove_stale_temp_files().unwrap(), 1);
        assert!(root.path().join("notes.txt").exists());
        assert_eq!(store.remove_stale_temp_files().unwrap(), 0);
    }
}
