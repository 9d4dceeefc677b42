//! Shared helpers of the end-to-end tests: a sandbox directory per test, the binary
//! started with an isolated environment, one way to run it ([`Sandbox::run`], which
//! captures everything the child prints, so a green `cargo test` shows none of it), and
//! readers for the files, the JSON report and the audit repository it leaves.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use sis_emulator::{Api, SisServer};
use tempfile::TempDir;

/// The longest a single run of the binary may take before the test fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The bundled offline fixtures.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// `file://` URL replaying the bundled SIS recordings.
pub fn fixture_api_base() -> String {
    format!("file://{}", fixtures().join("sis").display())
}

/// `file://` URL replaying the bundled Canvas recordings (the fixtures' `canvas-{id}` course).
pub fn fixture_canvas_api() -> String {
    format!("file://{}", fixtures().join("canvas").display())
}

/// The expected rosters derived independently from the fixtures.
pub fn expected_fixture_files() -> BTreeMap<String, Vec<u8>> {
    read_dir_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expected/fixtures"))
        .into_iter()
        .filter(|(name, _)| name.ends_with(".txt"))
        .collect()
}

/// Copies the directory tree `from` to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Every path under `root` (relative), with the content of regular files (directories
/// and other entries map to `None`).
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut entries = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            let file_type = entry.file_type().unwrap();
            if file_type.is_dir() {
                pending.push(path);
                entries.insert(relative, None);
            } else if file_type.is_file() {
                entries.insert(relative, Some(std::fs::read(&path).unwrap()));
            } else {
                entries.insert(relative, None);
            }
        }
    }
    entries
}

/// `command` run by `sh` after `setup` (a umask, a ulimit), with the same arguments,
/// environment and directory.
pub fn under_shell(command: &Command, setup: &str) -> Command {
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(format!("{setup} && exec \"$0\" \"$@\""));
    under(shell, command)
}

/// `command` run by `wrapper` (a program and its own arguments: `sh -c`, `strace`), with
/// the same arguments, environment and directory.
pub fn under(mut wrapper: Command, command: &Command) -> Command {
    wrapper.arg(command.get_program()).args(command.get_args());
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => wrapper.env(name, value),
            None => wrapper.env_remove(name),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        wrapper.current_dir(dir);
    }
    wrapper
}

/// Regular files directly in `dir`, by name.
pub fn read_dir_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            files.insert(
                entry.file_name().into_string().unwrap(),
                std::fs::read(entry.path()).unwrap(),
            );
        }
    }
    files
}

/// Adds the credentials the emulator accepts, for every API.
pub fn credentials(command: &mut Command) -> &mut Command {
    for api in Api::ALL {
        let (id_var, key_var) = api.vars();
        command.env(id_var, api.id()).env(key_var, api.key());
    }
    command
}

/// What one run of the binary did.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The sandbox's JSON report, `Null` when the run wrote none.
    pub report: Value,
}

impl Run {
    /// The report entry of one course.
    #[track_caller]
    pub fn course(&self, key: &str) -> &Value {
        self.report["courses"]
            .as_array()
            .and_then(|courses| courses.iter().find(|c| c["key"] == key))
            .unwrap_or_else(|| panic!("no course {key} in the report: {}", self.report))
    }

    pub fn status(&self, key: &str) -> &str {
        self.course(key)["status"].as_str().unwrap_or("?")
    }

    pub fn total(&self) -> u64 {
        self.report["requests"]["total"].as_u64().unwrap()
    }

    pub fn retried(&self) -> u64 {
        self.report["requests"]["retried"].as_u64().unwrap()
    }

    /// For assertion messages: the exit code, the report and the end of stderr.
    pub fn describe(&self) -> String {
        let lines: Vec<&str> = self.stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!(
            "exit {:?}\n--- stdout\n{}\n--- report\n{:#}\n--- stderr (tail)\n{tail}",
            self.code, self.stdout, self.report
        )
    }
}

/// Asserts the exit code, showing what the binary said when it differs.
#[track_caller]
pub fn assert_exit(run: &Run, code: i32) {
    assert_eq!(run.code, Some(code), "exit code\n{}", run.describe());
}

/// A scratch directory holding one test's values file, output directory, audit
/// repository, report and HOME.
pub struct Sandbox {
    pub dir: TempDir,
    /// Set once the bundled values file was copied in: from then on every job of this
    /// sandbox replays the bundled Canvas course too (see [`Sandbox::job_at`]).
    fixture_values: Cell<bool>,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("home")).unwrap();
        Sandbox {
            dir,
            fixture_values: Cell::new(false),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn values(&self) -> PathBuf {
        self.path("values.yaml")
    }

    pub fn output_dir(&self) -> PathBuf {
        self.path("profiles.d")
    }

    pub fn audit_repo(&self) -> PathBuf {
        self.path("audit")
    }

    pub fn report_path(&self) -> PathBuf {
        self.path("report.json")
    }

    pub fn write_values(&self, yaml: &str) {
        std::fs::write(self.values(), yaml).unwrap();
    }

    /// Makes the bundled `fixtures/values.yaml` this sandbox's values file. Its
    /// `canvas-{id}` course is then replayed from `fixtures/canvas` by every job of this
    /// sandbox, also after the values file is rewritten from the bundled one.
    pub fn copy_fixture_values(&self) {
        std::fs::copy(fixtures().join("values.yaml"), self.values()).unwrap();
        self.fixture_values.set(true);
    }

    /// The binary with a clean environment: no ROSTER_SYNC_* or credential variables
    /// from the caller, no proxy, HOME and git config isolated in the sandbox.
    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_roster-sync"));
        for (name, _) in std::env::vars() {
            let upper = name.to_ascii_uppercase();
            if upper.starts_with("ROSTER_SYNC_")
                || upper.starts_with("SIS_")
                || upper.starts_with("UCB_HR_")
                || upper.starts_with("CANVAS_")
                || upper.starts_with("JUPYTERHUB_")
                || upper.starts_with("GIT_")
                || upper.ends_with("_PROXY")
                || upper == "RUST_LOG"
            {
                command.env_remove(&name);
            }
        }
        command
            .env("HOME", self.path("home"))
            .env("XDG_CONFIG_HOME", self.path("home"))
            .env("GIT_CONFIG_NOSYSTEM", "1");
        command
    }

    /// `roster-sync ARGS… --values … --api-base API_BASE --output-dir OUTPUT_DIR
    /// --audit-repo AUDIT_REPO [--report REPORT]` with this sandbox's values file, and
    /// `--canvas-api file://…/fixtures/canvas` once it was given the bundled values file
    /// (whatever SIS answers `API_BASE` replays, the Canvas course comes from the fixtures).
    pub fn job_at(
        &self,
        args: &[&str],
        api_base: &str,
        output_dir: &Path,
        audit_repo: &Path,
        report: Option<&Path>,
    ) -> Command {
        let mut command = self.command();
        command
            .args(args)
            .arg("--values")
            .arg(self.values())
            .arg("--api-base")
            .arg(api_base)
            .arg("--output-dir")
            .arg(output_dir)
            .arg("--audit-repo")
            .arg(audit_repo);
        if self.fixture_values.get() {
            command.arg("--canvas-api").arg(fixture_canvas_api());
        }
        if let Some(report) = report {
            command.arg("--report").arg(report);
        }
        command
    }

    /// `roster-sync ARGS…` against `api_base` with this sandbox's paths and report.
    pub fn job(&self, args: &[&str], api_base: &str) -> Command {
        self.job_at(
            args,
            api_base,
            &self.output_dir(),
            &self.audit_repo(),
            Some(&self.report_path()),
        )
    }

    /// `roster-sync sync` against `api_base` with this sandbox's paths and report.
    pub fn sync(&self, api_base: &str) -> Command {
        self.job(&["sync"], api_base)
    }

    /// `roster-sync ARGS…` on the bundled fixtures (SIS and Canvas replays), with the
    /// bundled values file.
    pub fn fixture_job(&self, args: &[&str]) -> Command {
        self.copy_fixture_values();
        self.job(args, &fixture_api_base())
    }

    /// `sync` on the bundled fixtures, with the bundled values file.
    pub fn sync_fixtures(&self) -> Command {
        self.fixture_job(&["sync"])
    }

    /// `roster-sync ARGS…` against a running emulator, with the credentials it accepts.
    pub fn server_job(&self, args: &[&str], server: &SisServer) -> Command {
        let mut command = self.job(args, server.base_url());
        credentials(&mut command);
        command
    }

    /// Runs `command` to its end with no stdin, capturing stdout and stderr, after
    /// removing the report an earlier run left; returns what it did, with this sandbox's
    /// report. Every run is checked for leaked API keys: none may appear in stdout,
    /// stderr or the report.
    #[track_caller]
    pub fn run(&self, command: &mut Command) -> Run {
        let _ = std::fs::remove_file(self.report_path());
        command.stdin(Stdio::null());
        // assert_cmd adds the timeout; it takes the command by value, and the caller's
        // (spent) one is left as a placeholder.
        let command = std::mem::replace(command, Command::new(env!("CARGO_BIN_EXE_roster-sync")));
        let output = assert_cmd::Command::from_std(command)
            .timeout(RUN_TIMEOUT)
            .output()
            .expect("the binary runs");
        let report_text = std::fs::read_to_string(self.report_path()).unwrap_or_default();
        let run = Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            report: serde_json::from_str(&report_text).unwrap_or(Value::Null),
        };
        for api in Api::ALL {
            let key = api.key();
            for (what, text) in [
                ("stdout", &run.stdout),
                ("stderr", &run.stderr),
                ("report", &report_text),
            ] {
                assert!(!text.contains(&key), "{what} contains the {api:?} key");
            }
        }
        run
    }

    pub fn report(&self) -> Value {
        let text = std::fs::read_to_string(self.report_path()).expect("a report was written");
        serde_json::from_str(&text).expect("the report is JSON")
    }

    /// The report entry of one course.
    pub fn course_report(&self, key: &str) -> Value {
        self.report()["courses"]
            .as_array()
            .expect("courses")
            .iter()
            .find(|course| course["key"] == key)
            .unwrap_or_else(|| panic!("{key} in the report"))
            .clone()
    }

    pub fn roster_files(&self) -> BTreeMap<String, Vec<u8>> {
        read_dir_files(&self.output_dir())
    }

    /// `git -C audit ARGS` output; panics when git fails.
    pub fn git(&self, args: &[&str]) -> String {
        let output = Command::new("git")
            .arg("-C")
            .arg(self.audit_repo())
            .args(args)
            .env("HOME", self.path("home"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .expect("git runs");
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Number of commits on the audit branch (0 before the first).
    pub fn commit_count(&self) -> usize {
        if !self.audit_repo().join("HEAD").exists() {
            return 0;
        }
        let heads = self.git(&["for-each-ref", "refs/heads/main"]);
        if heads.trim().is_empty() {
            return 0;
        }
        self.git(&["rev-list", "--count", "main"])
            .trim()
            .parse()
            .unwrap()
    }

    /// The files of the audit HEAD, by name.
    pub fn audit_files(&self) -> BTreeMap<String, Vec<u8>> {
        let names = self.git(&["ls-tree", "--name-only", "main"]);
        names
            .lines()
            .map(|name| {
                let output = Command::new("git")
                    .arg("-C")
                    .arg(self.audit_repo())
                    .args(["cat-file", "blob", &format!("main:{name}")])
                    .output()
                    .unwrap();
                (name.to_string(), output.stdout)
            })
            .collect()
    }
}
