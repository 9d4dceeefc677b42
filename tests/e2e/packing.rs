//! Packing the audit repository: once loose objects pass `--pack-loose-objects`, a sync
//! packs everything `main` reaches into one pack, removes the older packs and the loose
//! copies, and stays `git fsck` clean, also when it is killed at any instant.

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
    assert_eq!(
        objects(&sandbox),
        (0, 1),
        "every loose object went into one pack"
    );
    fsck(&sandbox);
    assert_eq!(sandbox.commit_count(), 3);

    // A second packing replaces the first pack rather than adding to it. (These two runs
    // bring back trees the pack holds: each adds only its commit.)
    toggle_course(&sandbox, 3);
    assert_exit(&sync(&sandbox, "0"), 0);
    assert_eq!(objects(&sandbox), (1, 1));
    toggle_course(&sandbox, 4);
    assert_exit(&sync(&sandbox, "1"), 0);
    assert_eq!(objects(&sandbox), (0, 1));
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
    // never history). Of what main reaches, at most the last run's commit is still loose.
    let reachable: std::collections::BTreeSet<String> = sandbox
        .git(&["rev-list", "--objects", "main"])
        .lines()
        .map(|line| line[..40].to_string())
        .collect();
    let loose_reachable = loose_ids(&sandbox)
        .into_iter()
        .filter(|id| reachable.contains(id))
        .count();
    let (_, packs) = objects(&sandbox);
    assert!(
        loose_reachable <= 1 && packs == 1,
        "packed, in one pack: {loose_reachable} loose objects of main, {packs} packs"
    );
}
