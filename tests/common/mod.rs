//! Shared helpers of the end-to-end tests: a sandbox directory per test, the binary
//! started with an isolated environment, and readers for the files, the JSON report
//! and the audit repository it leaves.
#![allow(dead_code)] // each test crate uses a different subset

pub mod sis_server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

/// The bundled offline fixtures.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// `file://` URL replaying the bundled SIS recordings.
pub fn fixture_api_base() -> String {
    format!("file://{}", fixtures().join("sis").display())
}

/// The expected rosters derived independently from the fixtures.
pub fn expected_fixture_files() -> BTreeMap<String, Vec<u8>> {
    read_dir_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expected/fixtures"))
        .into_iter()
        .filter(|(name, _)| name.ends_with(".txt"))
        .collect()
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

/// A scratch directory holding one test's values file, output directory, audit
/// repository, report and HOME.
pub struct Sandbox {
    pub dir: TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("home")).unwrap();
        Sandbox { dir }
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

    /// The binary with a clean environment: no ROSTER_SYNC_* or credential variables
    /// from the caller, no proxy, HOME and git config isolated in the sandbox.
    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_roster-sync"));
        for (name, _) in std::env::vars() {
            let upper = name.to_ascii_uppercase();
            if upper.starts_with("ROSTER_SYNC_")
                || upper.starts_with("SIS_")
                || upper.starts_with("UCB_HR_")
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

    /// `roster-sync COMMAND` against `api_base` with this sandbox's values file, output
    /// directory and audit repository.
    pub fn subcommand(&self, name: &str, api_base: &str) -> Command {
        self.invocation(&[name], api_base, &self.output_dir())
    }

    /// `roster-sync ARGS…` with this sandbox's values file and audit repository, and
    /// `output_dir` as the output directory.
    pub fn invocation(&self, args: &[&str], api_base: &str, output_dir: &Path) -> Command {
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
            .arg(self.audit_repo());
        command
    }

    /// `roster-sync sync` against `api_base` with this sandbox's paths and a report.
    pub fn sync(&self, api_base: &str) -> Command {
        let mut command = self.subcommand("sync", api_base);
        command.arg("--report").arg(self.report_path());
        command
    }

    /// `sync` against a running emulator, with the credentials it accepts.
    pub fn sync_server(&self, server: &sis_server::SisServer) -> Command {
        let mut command = self.sync(server.base_url());
        for api in sis_server::Api::ALL {
            let (id_var, key_var) = api.vars();
            command.env(id_var, api.id()).env(key_var, api.key());
        }
        command
    }

    /// `sync` on the bundled fixtures, with the bundled values file.
    pub fn sync_fixtures(&self) -> Command {
        std::fs::copy(fixtures().join("values.yaml"), self.values()).unwrap();
        self.sync(&fixture_api_base())
    }

    pub fn report(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.report_path()).expect("a report was written");
        serde_json::from_str(&text).expect("the report is JSON")
    }

    /// The report entry of one course.
    pub fn course_report(&self, key: &str) -> serde_json::Value {
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

/// Asserts the exit code, showing what the binary said when it differs.
#[track_caller]
pub fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "exit code\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
