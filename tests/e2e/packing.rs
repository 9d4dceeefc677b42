//! Packing the audit repository: a sync that starts with more loose objects than
//! `--pack-loose-objects` packs everything `main` reaches into one pack (while it
//! fetches), removes the older packs and the loose copies, and stays `git fsck` clean,
//! also when it is killed at any instant. Its own new objects stay loose for a later run.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{self, Sandbox, assert_exit};

/// `git count-objects -v` as (loose objects, packs).
fn objects(sandbox: &Sandbox) -> (u64, u64) {
    let text = sandbox.git(&["count-objects", "-v"]);
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    (field("count:"), field("packs:"))
}

/// The ids of the loose objects of the audit repository.
fn loose_ids(sandbox: &Sandbox) -> Vec<String> {
    let objects = sandbox.audit_repo().join("objects");
    let mut ids = Vec::new();
    for dir in std::fs::read_dir(&objects).unwrap() {
        let dir = dir.unwrap();
        let prefix = dir.file_name().into_string().unwrap();
        if prefix.len() != 2 {
            continue;
        }
        for file in std::fs::read_dir(dir.path()).unwrap() {
            ids.push(format!(
                "{prefix}{}",
                file.unwrap().file_name().into_string().unwrap()
            ));
        }
    }
    ids
}

/// The loose objects of the audit repository that `main` reaches but its last commit did
/// not bring: what packing should have packed.
fn loose_older_than_main(sandbox: &Sandbox) -> Vec<String> {
    let objects = |args: &[&str]| -> std::collections::BTreeSet<String> {
        let mut command = vec!["rev-list", "--objects"];
        command.extend_from_slice(args);
        sandbox
            .git(&command)
            .lines()
            .map(|line| line[..40].to_string())
            .collect()
    };
    let reachable = objects(&["main"]);
    let brought = match sandbox.commit_count() {
        1 => reachable.clone(),
        _ => objects(&["main", "--not", "main^"]),
    };
    loose_ids(sandbox)
        .into_iter()
        .filter(|id| reachable.contains(id) && !brought.contains(id))
        .collect()
}

fn fsck(sandbox: &Sandbox) {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(sandbox.audit_repo())
        .args(["fsck", "--full", "--strict", "--no-dangling"])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", sandbox.path("home"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git fsck: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Makes the fixture run commit something new: a course in or out of the values file.
fn toggle_course(sandbox: &Sandbox, run: usize) {
    sandbox.copy_fixture_values();
    let values = std::fs::read_to_string(support::fixtures().join("values.yaml")).unwrap();
    let values = if run % 2 == 1 {
        values.replace("    2022-summer-04321:", "    retired-2022-summer-04321:")
    } else {
        values
    };
    sandbox.write_values(&values);
}

#[test]
fn past_the_threshold_a_sync_packs_everything_and_keeps_one_pack() {
    let sandbox = Sandbox::new();
    let sync = |sandbox: &Sandbox, threshold: &str| {
        let mut command = sandbox.job(
            &["sync", "--prune", "--pack-loose-objects", threshold],
            &support::fixture_api_base(),
        );
        sandbox.run(&mut command)
    };
    toggle_course(&sandbox, 0);
    assert_exit(&sync(&sandbox, "0"), 0);
    toggle_course(&sandbox, 1);
    assert_exit(&sync(&sandbox, "0"), 0);
    let (loose, packs) = objects(&sandbox);
    assert!(
        loose > 10 && packs == 0,
        "0 never packs: {loose} loose, {packs} packs"
    );
    let history = sandbox.git(&["log", "-p", "main"]);

    toggle_course(&sandbox, 2);
    let packed = sync(&sandbox, &(loose - 1).to_string());
    assert_exit(&packed, 0);
    assert!(packed.stderr.contains("packed"), "{}", packed.stderr);
    let (after, packs) = objects(&sandbox);
    assert!(
        packs == 1 && after < loose && loose_older_than_main(&sandbox).is_empty(),
        "every object loose at the start went into one pack: {after} loose, {packs} packs"
    );
    fsck(&sandbox);
    assert_eq!(sandbox.commit_count(), 3);

    // Under the threshold nothing is packed; past it, the new pack replaces the first
    // rather than adding to it.
    toggle_course(&sandbox, 3);
    assert_exit(&sync(&sandbox, "0"), 0);
    assert_eq!(objects(&sandbox).1, 1);
    assert!(!loose_older_than_main(&sandbox).is_empty());
    toggle_course(&sandbox, 4);
    assert_exit(&sync(&sandbox, "1"), 0);
    assert_eq!(objects(&sandbox).1, 1);
    assert_eq!(loose_older_than_main(&sandbox), Vec::<String>::new());
    fsck(&sandbox);
    let later = sandbox.git(&["log", "-p", "main"]);
    assert!(later.ends_with(&history), "the older history is all there");
    assert_eq!(sandbox.roster_files().len(), 10);
}

#[test]
fn a_packing_killed_at_any_instant_leaves_the_repository_whole() {
    let sandbox = Sandbox::new();
    toggle_course(&sandbox, 0);
    assert_exit(&sandbox.run(&mut sandbox.sync_fixtures()), 0);
    let command = |sandbox: &Sandbox| {
        let mut command = sandbox.job(
            &["sync", "--prune", "--pack-loose-objects", "1"],
            &support::fixture_api_base(),
        );
        command.stdout(Stdio::null()).stderr(Stdio::null());
        command
    };
    // How long a packing run takes, to spread the kills over it.
    toggle_course(&sandbox, 1);
    let started = Instant::now();
    assert!(command(&sandbox).status().unwrap().success());
    let full = started.elapsed().max(Duration::from_millis(20));
    let mut commits = sandbox.commit_count();
    for attempt in 0..24u32 {
        toggle_course(&sandbox, attempt as usize);
        let mut child = command(&sandbox).spawn().unwrap();
        std::thread::sleep(full * attempt / 24);
        let _ = child.kill();
        let _ = child.wait();
        fsck(&sandbox);
        let now = sandbox.commit_count();
        assert!(now == commits || now == commits + 1, "{commits} -> {now}");
        commits = now;
    }
    // The next run converges, packed.
    toggle_course(&sandbox, 0);
    assert!(command(&sandbox).status().unwrap().success());
    fsck(&sandbox);
    let verify = sandbox.run(
        sandbox
            .command()
            .arg("verify")
            .arg("--output-dir")
            .arg(sandbox.output_dir())
            .arg("--audit-repo")
            .arg(sandbox.audit_repo()),
    );
    assert_exit(&verify, 0);
    // Killed runs may leave objects nothing refers to; packing keeps them loose (they are
    // never history). Of what main reaches, only the last run's own objects are loose.
    let (_, packs) = objects(&sandbox);
    let unpacked = loose_older_than_main(&sandbox);
    assert!(
        unpacked.is_empty() && packs == 1,
        "packed, in one pack: {} older loose objects of main, {packs} packs",
        unpacked.len()
    );
}
