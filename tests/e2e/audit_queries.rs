//! `history` and `show` against plain git on the same audit repository: what `git log -p`
//! and `git show COMMIT:FILE` say, the auditor commands must say too.

use std::collections::BTreeMap;
use std::fs;

use serde_json::Value;

use crate::support::{self, Sandbox, assert_exit};

/// An audit repository with three commits: the fixtures, a changed enrollment page, and a
/// pruned course.
fn three_commits() -> Sandbox {
    let sandbox = Sandbox::new();
    assert_exit(&sandbox.run(&mut sandbox.sync_fixtures()), 0);
    let (changed, _) = crate::offline::changed_fixtures(&sandbox);
    assert_exit(&sandbox.run(&mut sandbox.sync(&changed)), 0);
    let values = fs::read_to_string(support::fixtures().join("values.yaml")).unwrap();
    sandbox
        .write_values(&values.replace("    2022-summer-04321:", "    retired-2022-summer-04321:"));
    assert_exit(
        &sandbox.run(&mut sandbox.job(&["sync", "--prune"], &changed)),
        0,
    );
    assert_eq!(sandbox.commit_count(), 3);
    sandbox
}

/// `(commit, course, list, change, address)` of every added or removed line, oldest first,
/// from `git log -p`.
fn git_log_changes(sandbox: &Sandbox) -> Vec<(String, String, String, char, String)> {
    let log = sandbox.git(&[
        "log",
        "--reverse",
        "--format=commit %H",
        "-p",
        "--unified=0",
        "main",
    ]);
    let mut changes = Vec::new();
    let (mut commit, mut file) = (String::new(), String::new());
    for line in log.lines() {
        if let Some(id) = line.strip_prefix("commit ") {
            commit = id[..10].to_string();
        } else if let Some(path) = line.strip_prefix("diff --git a/") {
            file = path.split(' ').next().unwrap().to_string();
        } else if line.starts_with("+++") || line.starts_with("---") {
        } else if let Some(change @ ('+' | '-')) = line.chars().next() {
            let stem = file.strip_suffix(".txt").unwrap();
            let (course, list) = stem.rsplit_once('-').unwrap();
            changes.push((
                commit.clone(),
                course.to_string(),
                list.to_string(),
                change,
                line[1..].to_string(),
            ));
        }
    }
    changes
}

fn history(sandbox: &Sandbox, args: &[&str]) -> Vec<(String, String, String, char, String)> {
    let mut command = sandbox.command();
    command
        .args(["history", "--format", "json", "--audit-repo"])
        .arg(sandbox.audit_repo())
        .args(args);
    let run = sandbox.run(&mut command);
    assert_exit(&run, 0);
    run.stdout
        .lines()
        .map(|line| {
            let change: Value = serde_json::from_str(line).expect("one JSON object per line");
            let text = |name: &str| change[name].as_str().unwrap().to_string();
            (
                text("commit"),
                text("course"),
                text("list"),
                text("change").chars().next().unwrap(),
                text("address"),
            )
        })
        .collect()
}

#[test]
fn history_says_what_git_log_says_for_every_filter() {
    let sandbox = three_commits();
    let everything = git_log_changes(&sandbox);
    assert!(
        everything.iter().any(|change| change.3 == '-'),
        "removals too"
    );
    // Within one commit the order of lines is git's (by file) and ours (by file, then
    // additions before removals); compare as sets per commit, in commit order.
    let by_commit = |changes: &[(String, String, String, char, String)]| {
        let mut grouped: Vec<(String, std::collections::BTreeSet<_>)> = Vec::new();
        for change in changes {
            match grouped.last_mut() {
                Some((commit, set)) if *commit == change.0 => {
                    set.insert(change.clone());
                }
                _ => grouped.push((change.0.clone(), [change.clone()].into())),
            }
        }
        grouped
    };
    assert_eq!(by_commit(&history(&sandbox, &[])), by_commit(&everything));

    let course = "2020-spring-14552";
    let of_course: Vec<_> = everything
        .iter()
        .filter(|c| c.1 == course)
        .cloned()
        .collect();
    assert_eq!(
        by_commit(&history(&sandbox, &["--course", course])),
        by_commit(&of_course)
    );

    let member = everything.iter().find(|c| c.3 == '-').unwrap().4.clone();
    let of_member: Vec<_> = everything
        .iter()
        .filter(|c| c.4 == member)
        .cloned()
        .collect();
    assert_eq!(
        history(&sandbox, &["--member", &member.to_uppercase()]),
        of_member
    );
    assert_eq!(
        of_member.len(),
        2,
        "added by the first commit, removed by the second"
    );

    // The text format is the same data.
    let mut command = sandbox.command();
    command
        .args(["history", "--audit-repo"])
        .arg(sandbox.audit_repo())
        .args(["--member", &member]);
    let text = sandbox.run(&mut command);
    assert_exit(&text, 0);
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].contains(&format!("+{member}")) && lines[1].contains(&format!("-{member}")));
}

#[test]
fn show_says_what_git_show_says_at_every_commit_and_date() {
    let sandbox = three_commits();
    let commits = sandbox.git(&["rev-list", "--reverse", "main"]);
    let show = |args: &[&str]| {
        let mut command = sandbox.command();
        command
            .args(["show", "--audit-repo"])
            .arg(sandbox.audit_repo())
            .args(args);
        sandbox.run(&mut command)
    };
    let mut checked = 0;
    for commit in commits.lines() {
        let files = sandbox.git(&["ls-tree", "--name-only", commit]);
        let files: BTreeMap<String, String> = files
            .lines()
            .map(|name| {
                (
                    name.to_string(),
                    sandbox.git(&["show", &format!("{commit}:{name}")]),
                )
            })
            .collect();
        for key in ["2019-fall-23970", "2020-spring-14552", "2022-summer-04321"] {
            for list in ["students", "instructors"] {
                let run = show(&["--course", key, "--list", list, "--at", &commit[..12]]);
                match files.get(&format!("{key}-{list}.txt")) {
                    Some(content) => {
                        assert_exit(&run, 0);
                        assert_eq!(run.stdout, *content, "{key} {list} at {commit}");
                        checked += 1;
                    }
                    None => assert_exit(&run, 1),
                }
            }
        }
    }
    assert_eq!(checked, 6 + 6 + 4, "every list of every commit");

    // A date: the end of that day. Every commit is today's, so today gives the last, and
    // a day before the first commit gives nothing.
    let today = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let latest = show(&["--course", "2020-spring-14552", "--at", &today[..10]]);
    assert_exit(&latest, 0);
    assert_eq!(
        latest.stdout,
        sandbox.git(&["show", "main:2020-spring-14552-students.txt"])
    );
    assert_exit(
        &show(&["--course", "2020-spring-14552", "--at", "2000-01-01"]),
        1,
    );
    assert_exit(
        &show(&["--course", "2020-spring-14552", "--at", "not-a-moment"]),
        2,
    );
    assert_exit(&show(&["--course", "2022-summer-04321"]), 1);
}
