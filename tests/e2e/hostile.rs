//! Hostile ground: what an operator's mistake, a foreign machine or a hostile answer can
//! put in the job's way. Each test failed on the binary before the matching fix.
//!
//! - a work tree or foreign repository given as `--audit-repo` (SPEC §5);
//! - `main` by name, whatever `HEAD` says, and adoption of an empty bare repository;
//! - the machine's git configuration and templates;
//! - configuration checked before anything is fetched (authors, timeout, sizes, depth,
//!   merge keys, a password in `--api-base`);
//! - identifiers that would change a URL or a replay path;
//! - `history` on a commit from the far future; a command line clap rejects; messages
//!   for a mistyped course key or approval;
//! - durability: modes independent of the umask, fsync of objects and refs.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{self, Sandbox, assert_exit, fixture_api_base};

/// `git` with no user or system configuration, in `dir`.
fn git(dir: &Path, args: &[&str]) -> String {
    git_env(dir, args, &[])
}

fn git_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(["-c", "init.defaultBranch=master"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .envs(env.iter().copied())
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A fixture sync with `--audit-repo repo`.
fn sync_into(sandbox: &Sandbox, repo: &Path) -> support::Run {
    sandbox.copy_fixture_values();
    sandbox.run(&mut sandbox.job_at(
        &["sync"],
        &fixture_api_base(),
        &sandbox.output_dir(),
        repo,
        Some(&sandbox.report_path()),
    ))
}

/// A run that stopped on its configuration: exit 2, a failed report with an error,
/// nothing fetched, written or committed. Returns the error.
#[track_caller]
fn assert_rejected(sandbox: &Sandbox, run: &support::Run, what: &str) -> String {
    assert_exit(run, 2);
    assert_eq!(
        run.report["outcome"],
        "failed",
        "{what}: {}",
        run.describe()
    );
    assert_eq!(
        run.report["requests"]["total"], 0,
        "{what}: nothing fetched"
    );
    assert!(!sandbox.output_dir().exists(), "{what}: nothing written");
    assert!(!sandbox.audit_repo().exists(), "{what}: nothing committed");
    run.report["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: an error in {}", run.report))
        .to_string()
}

// ---------------------------------------------------------------------------------------
// The audit repository is ours alone (SPEC §5)

#[test]
fn a_work_tree_or_foreign_repository_is_refused_and_left_untouched() {
    let sandbox = Sandbox::new();
    let work = sandbox.path("work");
    fs::create_dir(&work).unwrap();
    git(&work, &["init", "-q"]);
    fs::write(work.join("Cargo.lock"), "# cargo\n").unwrap();
    fs::create_dir(work.join("web")).unwrap();
    fs::write(work.join("web/yarn.lock"), "# yarn\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-qm", "x"]);
    let linked = sandbox.path("linked");
    git(&work, &["worktree", "add", "-q", linked.to_str().unwrap()]);
    let with_history = sandbox.path("master.git");
    git(
        sandbox.dir.path(),
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            "master.git",
        ],
    );
    for (repo, what) in [
        (&work, "work tree"),
        (&work.join(".git"), "the .git directory of a work tree"),
        (&linked, "a linked work tree (.git file)"),
        (
            &with_history,
            "a bare repository with history on master only",
        ),
    ] {
        let before = support::snapshot(repo);
        let run = sync_into(&sandbox, repo);
        assert_exit(&run, 5);
        assert_eq!(run.report["outcome"], "failed", "{what}");
        let error = run.report["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("nothing in it was changed"),
            "{what}: {error}"
        );
        assert_eq!(support::snapshot(repo), before, "{what}: untouched");
    }
    assert!(work.join("Cargo.lock").exists() && work.join("web/yarn.lock").exists());
}

#[test]
fn only_the_lock_files_libgit2_leaves_are_swept() {
    let sandbox = Sandbox::new();
    assert_exit(&sandbox.run(&mut sandbox.sync_fixtures()), 0);
    let repo = sandbox.audit_repo();
    let stale = ["HEAD.lock", "refs/heads/main.lock", "packed-refs.lock"];
    let foreign = ["Cargo.lock", "hooks/yarn.lock", "info/notes.lock"];
    for name in stale.iter().chain(&foreign) {
        fs::write(repo.join(name), "").unwrap();
    }
    let run = sandbox.run(&mut sandbox.sync_fixtures());
    assert_exit(&run, 0);
    for name in stale {
        assert!(!repo.join(name).exists(), "{name} is removed");
    }
    for name in foreign {
        assert!(
            repo.join(name).exists(),
            "{name} is not libgit2's and is kept"
        );
    }
}

#[test]
fn main_is_read_and_written_by_name_whatever_head_says() {
    let sandbox = Sandbox::new();
    assert_exit(&sandbox.run(&mut sandbox.sync_fixtures()), 0);
    let repo = sandbox.audit_repo();
    git(&repo, &["symbolic-ref", "HEAD", "refs/heads/elsewhere"]);
    let run = sandbox.run(&mut sandbox.sync_fixtures());
    assert_exit(&run, 0);
    assert_eq!(run.report["commit"], Value::Null, "{}", run.describe());
    assert_eq!(git(&repo, &["rev-list", "--count", "main"]).trim(), "1");
    assert_eq!(git(&repo, &["for-each-ref", "refs/heads/elsewhere"]), "");
}

#[test]
fn an_empty_bare_repository_made_by_someone_else_is_adopted_on_main() {
    let sandbox = Sandbox::new();
    let repo = sandbox.audit_repo();
    fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "--bare"]);
    let run = sandbox.run(&mut sandbox.sync_fixtures());
    assert_exit(&run, 0);
    assert_eq!(
        git(&repo, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/main"
    );
    assert_eq!(git(&repo, &["rev-list", "--count", "main"]).trim(), "1");
    assert_eq!(git(&repo, &["for-each-ref", "refs/heads/master"]), "");
}

// ---------------------------------------------------------------------------------------
// The machine's git configuration

#[test]
fn the_machines_git_configuration_and_templates_are_ignored() {
    let sandbox = Sandbox::new();
    // The sandbox's HOME and XDG_CONFIG_HOME are both `home`.
    let home = sandbox.path("home");
    fs::write(home.join(".gitconfig"), "[broken\n").unwrap();
    let run = sandbox.run(&mut sandbox.sync_fixtures());
    assert_exit(&run, 0);
    assert_eq!(sandbox.commit_count_without_config(), 1);

    let sandbox = Sandbox::new();
    let home = sandbox.path("home");
    let templates = sandbox.path("templates");
    fs::create_dir_all(templates.join("hooks")).unwrap();
    fs::write(templates.join("hooks/post-commit"), "#!/bin/sh\nexit 1\n").unwrap();
    fs::write(templates.join("config"), "[user]\n\tname = Foreign\n").unwrap();
    fs::write(templates.join("description"), "foreign\n").unwrap();
    fs::write(
        home.join(".gitconfig"),
        format!(
            "[init]\n\ttemplateDir = {}\n[user]\n\tname = Foreign\n\temail = f@f\n",
            templates.display()
        ),
    )
    .unwrap();
    fs::create_dir_all(home.join("git")).unwrap();
    fs::write(home.join("git/config"), "[core\n").unwrap();
    let run = sandbox.run(&mut sandbox.sync_fixtures());
    assert_exit(&run, 0);
    let repo = sandbox.audit_repo();
    assert!(!repo.join("hooks/post-commit").exists(), "no foreign hook");
    let config = fs::read_to_string(repo.join("config")).unwrap();
    assert!(!config.contains("Foreign"), "{config}");
    let author = git(&repo, &["log", "-1", "--format=%an <%ae>", "main"]);
    assert_eq!(author.trim(), "roster-sync <roster-sync@localhost>");
}

trait WithoutConfig {
    fn commit_count_without_config(&self) -> usize;
}

impl WithoutConfig for Sandbox {
    /// `Sandbox::commit_count` reads the sandbox's (here broken) HOME config.
    fn commit_count_without_config(&self) -> usize {
        git(&self.audit_repo(), &["rev-list", "--count", "main"])
            .trim()
            .parse()
            .unwrap()
    }
}

// ---------------------------------------------------------------------------------------
// Durability

#[test]
fn the_audit_repository_modes_do_not_depend_on_the_umask() {
    let sandbox = Sandbox::new();
    let run = sandbox.run(&mut support::under_shell(
        &sandbox.sync_fixtures(),
        "umask 000",
    ));
    assert_exit(&run, 0);
    for (path, _) in support::snapshot(&sandbox.audit_repo()) {
        let full = sandbox.audit_repo().join(&path);
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&full).unwrap().permissions());
        assert_eq!(
            mode & 0o027,
            0,
            "{} is mode {:o}",
            path.display(),
            mode & 0o777
        );
    }
    let config = fs::metadata(sandbox.audit_repo().join("config")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&config.permissions()) & 0o777,
        0o640
    );
}

#[test]
fn objects_and_refs_are_fsynced_before_the_run_ends() {
    let sandbox = Sandbox::new();
    let trace = sandbox.path("fsync.trace");
    let sync = sandbox.sync_fixtures();
    let mut strace = Command::new("strace");
    strace
        .args(["-f", "-y", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(&trace);
    let mut traced = support::under(strace, &sync);
    // The run's log stays out of a green `cargo test`.
    traced
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let Ok(mut child) = traced.spawn() else {
        panic!("this test needs strace (apt-get install strace)");
    };
    assert!(child.wait().unwrap().success(), "the traced sync succeeds");
    let trace = fs::read_to_string(&trace).unwrap();
    let audit = sandbox.audit_repo().display().to_string();
    let synced = |part: &str| {
        trace
            .lines()
            .any(|line| line.contains("fsync(") && line.contains(&format!("{audit}/{part}")))
    };
    assert!(synced("objects/"), "an object file is fsynced:\n{trace}");
    assert!(synced("refs/heads/main"), "main is fsynced:\n{trace}");
}

// ---------------------------------------------------------------------------------------
// Configuration, checked before anything is fetched

#[test]
fn author_names_and_emails_git_cannot_record_are_configuration_errors() {
    for (flag, value) in [
        ("--author-name", "line\nbreak"),
        ("--author-name", ""),
        ("--author-email", "a<b@example.org"),
        ("--author-email", "ops@example.org\n"),
    ] {
        let sandbox = Sandbox::new();
        let mut command = sandbox.sync_fixtures();
        command.arg(flag).arg(value);
        let run = sandbox.run(&mut command);
        let error = assert_rejected(&sandbox, &run, &format!("{flag} {value:?}"));
        assert!(error.starts_with(flag), "{error}");
    }
}

#[test]
fn a_huge_timeout_is_a_configuration_error_not_a_panic() {
    for timeout in ["1e19", "1e20", "3601", "inf"] {
        let sandbox = Sandbox::new();
        let mut command = sandbox.sync_fixtures();
        command.args(["--timeout", timeout]);
        let run = sandbox.run(&mut command);
        let error = assert_rejected(&sandbox, &run, timeout);
        assert!(error.contains("--timeout"), "{error}");
    }
}

#[test]
fn a_huge_credential_file_is_refused_without_reading_it() {
    let sandbox = Sandbox::new();
    let big = sandbox.path("key");
    fs::File::create(&big).unwrap().set_len(1 << 30).unwrap();
    sandbox.copy_fixture_values();
    // An HTTP base needs the credentials; nothing is ever sent to it.
    let mut http = sandbox.job(&["sync"], "http://127.0.0.1:9");
    support::credentials(&mut http).env("SIS_CLASSES_KEY_FILE", &big);
    // Reading the file whole would need more memory than this.
    let mut command = support::under_shell(&http, "ulimit -v 800000");
    let run = sandbox.run(&mut command);
    let error = assert_rejected(&sandbox, &run, "1 GiB key file");
    assert!(
        error.contains("SIS_CLASSES_KEY_FILE") && error.contains("larger than"),
        "{error}"
    );
}

#[test]
fn an_oversized_values_file_is_refused() {
    let sandbox = Sandbox::new();
    let mut command = sandbox.sync_fixtures();
    let mut values = fs::OpenOptions::new()
        .append(true)
        .open(sandbox.values())
        .unwrap();
    let comment = format!("# {}\n", "x".repeat(1000));
    for _ in 0..2100 {
        values.write_all(comment.as_bytes()).unwrap();
    }
    drop(values);
    let run = sandbox.run(&mut command);
    let error = assert_rejected(&sandbox, &run, "2 MB values");
    assert!(error.contains("larger than 1 MiB"), "{error}");
}

#[test]
fn deeply_nested_values_are_refused_at_once() {
    let sandbox = Sandbox::new();
    let depth = 20_000;
    sandbox.write_values(&format!(
        "custom:\n  profiles: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    ));
    let started = Instant::now();
    let run = sandbox.run(&mut sandbox.sync(&fixture_api_base()));
    let error = assert_rejected(&sandbox, &run, "deep values");
    assert!(error.contains("nested more than"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn courses_merged_with_a_yaml_merge_key_are_synced() {
    let sandbox = Sandbox::new();
    sandbox.write_values(
        "shared: &shared\n  2019-fall-23970: {}\n  2021-fall-32244: {}\n\
         custom:\n  profiles:\n    <<: *shared\n    2022-summer-04321: {}\n",
    );
    let run = sandbox.run(&mut sandbox.sync(&fixture_api_base()));
    assert_exit(&run, 0);
    for key in ["2019-fall-23970", "2021-fall-32244", "2022-summer-04321"] {
        assert_eq!(run.status(key), "created", "{key}: {}", run.describe());
    }
}

#[test]
fn a_password_in_the_api_base_is_never_echoed() {
    let sandbox = Sandbox::new();
    sandbox.copy_fixture_values();
    let run =
        sandbox.run(&mut sandbox.job(&["sync"], "https://ops:hunter2-secret@gateway.example.org"));
    let error = assert_rejected(&sandbox, &run, "user info");
    assert!(error.contains("--api-base"), "{error}");
    for (what, text) in [("stderr", &run.stderr), ("report", &run.report.to_string())] {
        assert!(!text.contains("hunter2"), "{what}: {text}");
    }
}

// ---------------------------------------------------------------------------------------
// Identifiers

/// A one-course gateway on a loopback port whose only instructor has `uid`; it records
/// the raw request lines and answers 404 to the person lookups.
fn gateway_with_instructor(uid: &str) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sections = serde_json::json!({"apiResponse": {"response": {"classSections": [{
        "id": 23970,
        "meetings": [{"assignedInstructors": [{
            "instructor": {"identifiers": [{"type": "campus-uid", "id": uid, "disclose": true}]},
            "role": {"code": "PI"}
        }]}]
    }]}}})
    .to_string();
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buffer = [0; 4096];
            while !request.ends_with(b"\r\n\r\n") {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            let line = String::from_utf8_lossy(&request)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            let (status, body) = if line.contains("/sis/v1/classes/sections/") {
                ("200 OK", sections.clone())
            } else {
                ("404 Not Found", String::new())
            };
            log.lock().unwrap().push(line);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (base, seen)
}

#[test]
fn an_instructor_uid_with_a_slash_is_one_encoded_path_segment() {
    let sandbox = Sandbox::new();
    sandbox.write_values("custom:\n  profiles:\n    2019-fall-23970: {}\n");
    let (base, seen) = gateway_with_instructor("12/../34?x#y");
    let mut command = sandbox.sync(&base);
    support::credentials(&mut command).args(["--retries", "0"]);
    let run = sandbox.run(&mut command);
    assert_exit(&run, 0);
    let seen = seen.lock().unwrap().clone();
    let lookups: Vec<&String> = seen
        .iter()
        .filter(|line| line.contains("/hr/") || line.contains("/students/"))
        .collect();
    assert_eq!(lookups.len(), 2, "{seen:?}");
    for line in lookups {
        assert!(
            line.contains("/12%2F..%2F34%3Fx%23y?id-type=campus-uid"),
            "one segment: {line}"
        );
    }
}

#[test]
fn a_replayed_uid_with_dot_segments_cannot_read_outside_the_directory() {
    let sandbox = Sandbox::new();
    let replay = sandbox.path("replay/sis");
    copy_dir(&support::fixtures().join("sis"), &replay);
    let classes = replay.join("classes/2198/23970.json");
    let text = fs::read_to_string(&classes).unwrap();
    assert!(text.contains("\"111111\""));
    fs::write(&classes, text.replace("\"111111\"", "\"../../outside\"")).unwrap();
    let leaked = r#"{"apiResponse": {"response": [{"emails": [
        {"type": {"code": "BUSN"}, "emailAddress": "outside.the.replay@example.org"}]}]}}"#;
    fs::write(sandbox.path("replay/outside.json"), leaked).unwrap();
    sandbox.copy_fixture_values();
    let api_base = format!("file://{}", replay.display());
    let run = sandbox.run(&mut sandbox.job(&["sync"], &api_base));
    // Read from outside, the file answered both lookups and failed the course (it is
    // not a Students record); kept inside, both lookups find nothing (404).
    assert_exit(&run, 0);
    assert_eq!(
        run.status("2019-fall-23970"),
        "created",
        "{}",
        run.describe()
    );
    let instructors =
        fs::read_to_string(sandbox.output_dir().join("2019-fall-23970-instructors.txt")).unwrap();
    assert!(!instructors.contains("outside.the.replay"), "{instructors}");
}

// ---------------------------------------------------------------------------------------
// Panics and rough messages

#[test]
fn history_shows_a_commit_from_the_far_future() {
    let sandbox = Sandbox::new();
    assert_exit(&sandbox.run(&mut sandbox.sync_fixtures()), 0);
    let repo = sandbox.audit_repo();
    let listing = git(&repo, &["ls-tree", "main"]);
    let kept: String = listing
        .lines()
        .filter(|line| !line.ends_with("2019-fall-23970-students.txt"))
        .map(|line| format!("{line}\n"))
        .collect();
    let tree = git_stdin(&repo, &["mktree"], &kept);
    let date = [
        ("GIT_AUTHOR_DATE", "@300000000000 +0000"),
        ("GIT_COMMITTER_DATE", "@300000000000 +0000"),
    ];
    let commit = git_env(
        &repo,
        &["commit-tree", tree.trim(), "-p", "main", "-m", "x"],
        &date,
    );
    git(&repo, &["update-ref", "refs/heads/main", commit.trim()]);
    let mut command = sandbox.command();
    command.arg("history").arg("--audit-repo").arg(&repo);
    let run = sandbox.run(&mut command);
    assert_exit(&run, 0);
    // Shown as seconds: RFC 3339 has no year past 9999, and a made-up date would mislead.
    assert!(run.stdout.contains("@300000000000 "), "{}", run.describe());
    assert!(
        run.stdout.contains("2019-fall-23970 students -"),
        "{}",
        run.stdout
    );
}

fn git_stdin(dir: &Path, args: &[&str], input: &str) -> String {
    let mut child = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn a_rejected_command_line_still_writes_the_report_metrics_and_termination_log() {
    for (args, env) in [
        (&["sync", "--no-such-flag"][..], None),
        (&["--concurrency", "0"][..], None),
        (&["plan"][..], Some(("ROSTER_SYNC_CONCURRENCY", "many"))),
    ] {
        let sandbox = Sandbox::new();
        let metrics = sandbox.path("roster-sync.prom");
        let termination = sandbox.path("termination-log");
        fs::write(&termination, "").unwrap();
        let mut command = sandbox.command();
        command
            .args(args)
            .env("ROSTER_SYNC_REPORT", sandbox.report_path())
            .arg(format!("--metrics-file={}", metrics.display()))
            .env("ROSTER_SYNC_TERMINATION_LOG", &termination);
        if let Some((name, value)) = env {
            command.env(name, value);
        }
        let run = sandbox.run(&mut command);
        assert_exit(&run, 2);
        assert_eq!(
            run.report["outcome"],
            "failed",
            "{args:?}: {}",
            run.describe()
        );
        assert_eq!(run.report["exit_code"], 2);
        let error = run.report["error"].as_str().unwrap_or_default();
        assert!(error.contains("command line was rejected"), "{error}");
        assert!(!error.contains("many"), "no value in the report: {error}");
        let metrics = fs::read_to_string(&metrics).expect("the metrics file");
        assert!(
            metrics.contains("roster_sync_last_run_timestamp_seconds"),
            "{metrics}"
        );
        let summary = fs::read_to_string(&termination).unwrap();
        assert!(summary.contains("outcome failed (exit 2)"), "{summary}");
    }
    let sandbox = Sandbox::new();
    for args in [&["--help"][..], &["--version"], &["sync", "--help"]] {
        let mut command = sandbox.command();
        command
            .args(args)
            .env("ROSTER_SYNC_REPORT", sandbox.report_path());
        assert_exit(&sandbox.run(&mut command), 0);
        assert!(
            !sandbox.report_path().exists(),
            "{args:?} is not a rejection"
        );
    }
}

#[test]
fn a_mistyped_course_key_and_an_unconfigured_approval_are_warnings() {
    let sandbox = Sandbox::new();
    sandbox
        .write_values("custom:\n  profiles:\n    2019-fall-23970: {}\n    2020-Spring-14552: {}\n");
    let mut command = sandbox.sync(&fixture_api_base());
    command.args(["--approve", "2019-fall-23907"]);
    let run = sandbox.run(&mut command);
    assert_exit(&run, 0);
    let warning = |needle: &str| {
        run.stderr
            .lines()
            .any(|line| line.contains("WARN") && line.contains(needle))
    };
    assert!(warning("2020-Spring-14552"), "{}", run.stderr);
    assert!(warning("2019-fall-23907"), "{}", run.stderr);
}

// ---------------------------------------------------------------------------------------
// Hostile audit trees, lost audit history, unpublishable paths, odd years (SPEC §5, §6)

/// `git` in `dir` fed `input` on stdin; its stdout.
fn git_bytes(dir: &Path, args: &[&str], input: &[u8]) -> String {
    let mut child = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "git {args:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// Commits on `main` the tree of `main` plus `extra` entries `(mode, name, oid)`, written
/// as a raw tree object, so names git itself would refuse (`../x`, `/abs/x`) get in.
fn commit_extra_entries(repo: &Path, extra: &[(&str, &str, &str)]) {
    let listing = git(repo, &["ls-tree", "main"]);
    let mut entries: Vec<(String, String, String)> = listing
        .lines()
        .map(|line| {
            let (meta, name) = line.split_once('\t').unwrap();
            let mut meta = meta.split(' ');
            let mode = meta.next().unwrap().trim_start_matches('0').to_string();
            let oid = meta.nth(1).unwrap().to_string();
            (mode, name.to_string(), oid)
        })
        .collect();
    for (mode, name, oid) in extra {
        entries.push((mode.to_string(), name.to_string(), oid.to_string()));
    }
    entries.sort_by(|a, b| a.1.cmp(&b.1));
    let mut raw = Vec::new();
    for (mode, name, oid) in &entries {
        raw.extend_from_slice(format!("{mode} {name}\0").as_bytes());
        for i in (0..40).step_by(2) {
            raw.push(u8::from_str_radix(&oid[i..i + 2], 16).unwrap());
        }
    }
    let tree = git_bytes(
        repo,
        &["hash-object", "-t", "tree", "--literally", "-w", "--stdin"],
        &raw,
    );
    let commit = git(
        repo,
        &[
            "commit-tree",
            tree.trim(),
            "-p",
            "main",
            "-m",
            "foreign entries",
        ],
    );
    git(repo, &["update-ref", "refs/heads/main", commit.trim()]);
}

/// The `ls-tree` lines of `main` whose name is not a roster file of a fixture course.
/// The entries of `main` that are not the fixture courses' roster files (SIS keys start
/// with the year, the Canvas one with `canvas-`).
fn foreign_lines(repo: &Path) -> Vec<String> {
    git(repo, &["ls-tree", "main"])
        .lines()
        .filter(|line| !line.contains("\t20") && !line.contains("\tcanvas-"))
        .map(str::to_string)
        .collect()
}

#[test]
fn audit_entries_that_are_not_roster_files_are_never_joined_onto_the_output_directory() {
    let sandbox = Sandbox::new();
    assert_exit(&sandbox.run(&mut sandbox.sync_fixtures()), 0);
    let repo = sandbox.audit_repo();
    let out = sandbox.output_dir();
    // The hub directory's own README, and two files outside the output directory that
    // hostile tree entries name.
    fs::write(out.join("README.md"), b"the hub's own notes\n").unwrap();
    let outside = sandbox.path("outside-students.txt");
    fs::write(&outside, b"not the job's\n").unwrap();
    let absolute = sandbox.path("victim-students.txt");
    fs::write(&absolute, b"not the job's either\n").unwrap();
    let blob = |text: &str| git_bytes(&repo, &["hash-object", "-w", "--stdin"], text.as_bytes());
    let readme = blob("an auditor's notes\n");
    let hostile = blob("x@example.edu\n");
    let absolute_name = absolute.display().to_string();
    commit_extra_entries(
        &repo,
        &[
            ("100644", "README.md", readme.trim()),
            ("100644", "../outside-students.txt", hostile.trim()),
            ("100644", &absolute_name, hostile.trim()),
        ],
    );
    let before = foreign_lines(&repo);
    assert_eq!(before.len(), 3, "{before:?}");

    // One course dropped with --prune: a commit is made, the foreign entries stay in it.
    let values = fs::read_to_string(sandbox.values()).unwrap();
    let start = values.find("    2022-summer-04321:").unwrap();
    let end = values.find("    astr-128-admins:").unwrap();
    sandbox.write_values(&format!("{}{}", &values[..start], &values[end..]));
    let mut command = sandbox.sync(&fixture_api_base());
    command.arg("--prune");
    let run = sandbox.run(&mut command);
    assert_exit(&run, 0);
    assert_eq!(
        run.status("2022-summer-04321"),
        "pruned",
        "{}",
        run.describe()
    );
    assert!(run.report["commit"].is_string());
    assert_eq!(fs::read(&outside).unwrap(), b"not the job's\n");
    assert_eq!(fs::read(&absolute).unwrap(), b"not the job's either\n");
    assert_eq!(
        fs::read(out.join("README.md")).unwrap(),
        b"the hub's own notes\n"
    );
    assert_eq!(run.report["drift"], 0, "{}", run.describe());
    assert_eq!(
        foreign_lines(&repo),
        before,
        "kept in the tree as they were"
    );
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|line| line.contains("not roster files"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(warnings[0].contains('3'), "{}", warnings[0]);
}

#[test]
fn a_folder_in_the_audit_tree_is_kept_and_does_not_stop_the_run() {
    let sandbox = Sandbox::new();
    assert_exit(&sandbox.run(&mut sandbox.sync_fixtures()), 0);
    let repo = sandbox.audit_repo();
    let notes = git_bytes(&repo, &["hash-object", "-w", "--stdin"], b"notes\n");
    let folder = git_bytes(
        &repo,
        &["mktree"],
        format!("100644 blob {}\tnotes.txt\n", notes.trim()).as_bytes(),
    );
    commit_extra_entries(&repo, &[("40000", "notes", folder.trim())]);
    let before = foreign_lines(&repo);
    fs::remove_file(sandbox.output_dir().join("2019-fall-23970-students.txt")).unwrap();
    let run = sandbox.run(&mut sandbox.sync_fixtures());
    assert_exit(&run, 0);
    assert_eq!(run.report["drift"], 1, "{}", run.describe());
    assert!(!sandbox.output_dir().join("notes").exists());
    assert_eq!(foreign_lines(&repo), before);
    assert_eq!(
        sandbox.roster_files(),
        support::expected_fixture_files()
            .into_iter()
            .filter(|(name, _)| name.ends_with(".txt"))
            .collect()
    );
}

/// Sorted synthetic addresses `{tag}{i:03}@example.edu`.
fn extra_addresses(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}{i:03}@example.edu")).collect()
}

#[test]
fn a_lost_audit_repository_does_not_disable_the_shrink_guard() {
    let sandbox = Sandbox::new();
    assert_exit(&sandbox.run(&mut sandbox.sync_fixtures()), 0);
    let out = sandbox.output_dir();
    // The hub held 204 students of 2021-fall-32244 when its audit repository was lost.
    let big = "2021-fall-32244-students.txt";
    let mut members: Vec<String> = fs::read_to_string(out.join(big))
        .unwrap()
        .lines()
        .map(str::to_string)
        .chain(extra_addresses("former", 104))
        .collect();
    members.sort();
    let big_text: String = members.iter().map(|m| format!("{m}\n")).collect();
    fs::write(out.join(big), &big_text).unwrap();
    fs::remove_dir_all(sandbox.audit_repo()).unwrap();
    // A source that now answers no students for 2019-fall-23970 (135 before).
    let sis = sandbox.path("sis");
    copy_dir(&support::fixtures().join("sis"), &sis);
    fs::remove_dir_all(sis.join("enrollments/2198")).unwrap();
    let api = format!("file://{}", sis.display());
    let before = sandbox.roster_files();

    let plan = sandbox.run(&mut sandbox.job(&["plan"], &api));
    assert_exit(&plan, 3);
    let run = sandbox.run(&mut sandbox.sync(&api));
    assert_exit(&run, 3);
    assert_eq!(
        run.status("2019-fall-23970"),
        "guarded",
        "{}",
        run.describe()
    );
    assert_eq!(run.status("2021-fall-32244"), "guarded");
    assert_eq!(run.status("2020-spring-14552"), "unchanged");
    let students = &run.course("2019-fall-23970")["students"];
    assert_eq!(
        (&students["count"], &students["removed"]),
        (&135.into(), &135.into())
    );
    let students = &run.course("2021-fall-32244")["students"];
    assert_eq!(
        (&students["count"], &students["removed"]),
        (&204.into(), &104.into())
    );
    assert_eq!(sandbox.roster_files(), before, "the hub's rosters are kept");
    assert_eq!(
        sandbox.audit_files(),
        before,
        "the new audit repository records what the hub holds"
    );

    let mut approved = sandbox.sync(&api);
    approved.args(["--approve", "2019-fall-23970"]);
    let run = sandbox.run(&mut approved);
    assert_exit(&run, 3);
    assert_eq!(run.status("2019-fall-23970"), "updated");
    assert_eq!(
        fs::read(out.join("2019-fall-23970-students.txt")).unwrap(),
        b""
    );
}

#[test]
fn one_unpublishable_path_fails_that_course_alone() {
    let sandbox = Sandbox::new();
    assert_exit(&sandbox.run(&mut sandbox.sync_fixtures()), 0);
    let out = sandbox.output_dir();
    let blocked = out.join("2020-spring-14552-students.txt");
    fs::remove_file(&blocked).unwrap();
    fs::create_dir(&blocked).unwrap();
    fs::write(blocked.join("keep"), b"x").unwrap();
    let drifted = out.join("2021-fall-32244-instructors.txt");
    let expected = fs::read(&drifted).unwrap();
    fs::write(&drifted, b"edited@example.edu\n").unwrap();
    let kept = fs::read(out.join("2020-spring-14552-instructors.txt")).unwrap();
    // A change that makes a commit: one course dropped with --prune.
    let values = fs::read_to_string(sandbox.values()).unwrap();
    let start = values.find("    2022-summer-04321:").unwrap();
    let end = values.find("    astr-128-admins:").unwrap();
    sandbox.write_values(&format!("{}{}", &values[..start], &values[end..]));

    for round in 0..2 {
        let mut command = sandbox.sync(&fixture_api_base());
        command.arg("--prune");
        let run = sandbox.run(&mut command);
        assert_exit(&run, 5);
        assert_eq!(
            run.status("2020-spring-14552"),
            "failed",
            "{}",
            run.describe()
        );
        let reason = run.course("2020-spring-14552")["error"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            reason.contains("2020-spring-14552-students.txt"),
            "{reason}"
        );
        assert_eq!(run.status("2019-fall-23970"), "unchanged");
        assert_eq!(
            fs::read(&drifted).unwrap(),
            expected,
            "drift elsewhere repaired"
        );
        assert!(blocked.join("keep").exists());
        assert_eq!(
            fs::read(out.join("2020-spring-14552-instructors.txt")).unwrap(),
            kept
        );
        let main = git(&sandbox.audit_repo(), &["rev-parse", "main"]);
        match round {
            0 => assert_eq!(
                run.report["commit"],
                main.trim(),
                "the commit made is named"
            ),
            _ => assert_eq!(run.report["commit"], Value::Null, "nothing new to commit"),
        }
    }
    assert_eq!(sandbox.commit_count(), 2, "one prune commit");
    assert!(!out.join("2022-summer-04321-students.txt").exists());
    let audit = sandbox.audit_files();
    assert!(audit.contains_key("2020-spring-14552-students.txt"));
    assert!(!audit.contains_key("2022-summer-04321-students.txt"));
}

#[test]
fn a_stray_temporary_directory_does_not_stop_the_run() {
    let sandbox = Sandbox::new();
    assert_exit(&sandbox.run(&mut sandbox.sync_fixtures()), 0);
    let stray = sandbox.output_dir().join(".roster-sync-tmp-stray");
    fs::create_dir(&stray).unwrap();
    fs::write(
        sandbox
            .output_dir()
            .join(".roster-sync-tmp-1-0-2019-fall-23970-students.txt"),
        b"partial",
    )
    .unwrap();
    fs::remove_file(sandbox.output_dir().join("2019-fall-23970-students.txt")).unwrap();
    let run = sandbox.run(&mut sandbox.sync_fixtures());
    assert_exit(&run, 0);
    assert_eq!(run.report["drift"], 1, "{}", run.describe());
    assert!(stray.is_dir(), "not the job's to remove");
    assert!(
        !sandbox
            .output_dir()
            .join(".roster-sync-tmp-1-0-2019-fall-23970-students.txt")
            .exists()
    );
}

#[test]
fn a_course_key_with_a_year_without_a_term_id_fails_that_course_alone() {
    let sandbox = Sandbox::new();
    sandbox.write_values(
        "custom:\n  profiles:\n    2019-fall-23970: {}\n    0000-fall-1: {}\n    2100-fall-1: {}\n",
    );
    fs::create_dir_all(sandbox.output_dir()).unwrap();
    let kept = sandbox.output_dir().join("2100-fall-1-students.txt");
    fs::write(&kept, b"a@example.edu\n").unwrap();
    let mut command = sandbox.sync(&fixture_api_base());
    command.arg("--prune");
    let run = sandbox.run(&mut command);
    assert_exit(&run, 1);
    assert_eq!(run.report["outcome"], "partial");
    assert_eq!(
        run.status("2019-fall-23970"),
        "created",
        "{}",
        run.describe()
    );
    for key in ["0000-fall-1", "2100-fall-1"] {
        assert_eq!(run.status(key), "failed");
        let reason = run.course(key)["error"].as_str().unwrap().to_string();
        assert!(reason.contains(key), "{reason}");
    }
    assert_eq!(fs::read(&kept).unwrap(), b"a@example.edu\n");
    assert_eq!(run.course("2100-fall-1")["students"]["count"], 1);
}
