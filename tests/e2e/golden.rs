//! Golden files of the fixture run: the audit commit message, the metrics text and the
//! one-line summary, compared byte for byte with `tests/e2e/golden/` after replacing only
//! what legitimately varies from run to run by a placeholder: the run id, the commit id,
//! timestamps, the duration, and the crate version (each checked before it is replaced).
//!
//! To update them after an intended change of the output:
//!
//! ```text
//! UPDATE_GOLDEN=1 cargo test --test e2e golden::
//! git diff tests/e2e/golden/    # review, then commit with the change
//! ```

use std::path::{Path, PathBuf};

use crate::support::{Sandbox, assert_exit};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/golden")
}

/// Compares `actual` with the golden file `name`, or rewrites it with `UPDATE_GOLDEN=1`.
/// Returns a description of the difference, if any.
fn compare(name: &str, actual: &str) -> Option<String> {
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return None;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    (expected != actual).then(|| {
        format!(
            "{} differs (UPDATE_GOLDEN=1 rewrites it)\n--- expected\n{expected}--- actual\n{actual}",
            path.display()
        )
    })
}

/// Replaces the value of every sample of `family` (an unlabelled one) by `placeholder`,
/// after checking it is a number.
fn mask_sample(text: &str, family: &str, placeholder: &str) -> String {
    let mut seen = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            match line
                .strip_prefix(family)
                .and_then(|rest| rest.strip_prefix(' '))
            {
                Some(value) => {
                    let number: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
                    assert!(number >= 0.0, "{line}");
                    seen = true;
                    format!("{family} {placeholder}")
                }
                None => line.to_string(),
            }
        })
        .collect();
    assert!(seen, "{family} in:\n{text}");
    lines.iter().map(|line| format!("{line}\n")).collect()
}

#[test]
fn the_fixture_run_matches_the_golden_files() {
    let sandbox = Sandbox::new();
    let metrics = sandbox.path("roster-sync.prom");
    let termination_log = sandbox.path("termination-log");
    std::fs::write(&termination_log, "").unwrap();
    let run = sandbox.run(
        sandbox
            .sync_fixtures()
            .arg("--metrics-file")
            .arg(&metrics)
            .arg("--termination-log")
            .arg(&termination_log),
    );
    assert_exit(&run, 0);
    let run_id = run.report["run_id"].as_str().expect("a run id").to_string();
    let commit = run.report["commit"].as_str().expect("a commit").to_string();
    assert_eq!(sandbox.git(&["rev-parse", "main"]).trim(), commit);
    let version = env!("CARGO_PKG_VERSION");

    let message = sandbox.git(&["log", "-1", "--format=%B", "main"]);
    assert!(message.contains(&format!("Roster-Sync-Run-Id: {run_id}\n")));
    assert!(message.contains(&format!("Roster-Sync-Version: {version}\n")));
    let message = message
        .replace(&run_id, "<run-id>")
        .replace(version, "<version>");

    let mut text = std::fs::read_to_string(&metrics).unwrap();
    for (family, placeholder) in [
        ("roster_sync_last_run_timestamp_seconds", "<timestamp>"),
        ("roster_sync_last_success_timestamp_seconds", "<timestamp>"),
        ("roster_sync_run_duration_seconds", "<duration>"),
    ] {
        text = mask_sample(&text, family, placeholder);
    }

    let summary = std::fs::read_to_string(&termination_log).unwrap();
    assert!(summary.contains(&commit), "{summary}");
    let summary = summary.replace(&commit, "<commit>");

    let differences: Vec<String> = [
        ("commit-message.txt", &message),
        ("metrics.prom", &text),
        ("summary.txt", &summary),
    ]
    .into_iter()
    .filter_map(|(name, actual)| compare(name, actual))
    .collect();
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
