#!/usr/bin/env bash
# Benchmark of the audit repository over many daily runs.
#
# Writes a replay campus (file:// layout) of COURSES courses of STUDENTS students, then runs
# the release binary RUNS times; before each run a few courses gain and lose a few
# students, as a term's add/drop days do. Prints, at a few points, the run's duration (the
# report's duration_seconds), the repository's size and its loose objects and packs; at the
# end, the size of a copy after `git gc --aggressive`, for comparison. Loopback only;
# everything stays in a temporary directory.
#
# Usage: bench/audit-growth.sh   (RUNS=1000 COURSES=200 STUDENTS=150 CHANGED=5)

set -euo pipefail

RUNS=${RUNS:-1000}
COURSES=${COURSES:-200}
STUDENTS=${STUDENTS:-150}
CHANGED=${CHANGED:-5}

root=$(cd "$(dirname "$0")/.." && pwd)
echo "bench: building (release)..." >&2
cargo build --quiet --release --locked -p roster-sync --manifest-path "$root/Cargo.toml"
work=$(mktemp -d "${TMPDIR:-/tmp}/roster-sync-growth.XXXXXX")
trap 'rm -rf "$work"' EXIT

python3 - "$root/target/release/roster-sync" "$work" "$RUNS" "$COURSES" "$STUDENTS" "$CHANGED" <<'PY'
import json, os, random, shutil, subprocess, sys
binary, work, runs, courses, students, changed = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
random.seed(1)
sis = os.path.join(work, "sis")
term = 2308  # 2030 fall
serial = 0
def fresh():
    global serial
    serial += 1
    return "s%07d@berkeley.edu" % serial
roster = {}
def write_course(n):
    rows = [{"student": {"identifiers": [{"type": "campus-uid", "id": a.split("@")[0][1:], "disclose": True}],
                         "emails": [{"type": {"code": "CAMP"}, "emailAddress": a}]},
             "enrollmentStatus": {"status": {"code": "E"}}} for a in sorted(roster[n])]
    pages = [rows[i:i + 100] for i in range(0, len(rows), 100)] or [[]]
    folder = os.path.join(sis, "enrollments", str(term), str(n))
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for number, page in enumerate(pages, 1):
        with open(os.path.join(folder, "page-%d.json" % number), "w") as f:
            json.dump({"response": {"classSectionEnrollments": page}}, f)
os.makedirs(os.path.join(sis, "classes", str(term)))
profiles = []
for n in range(10000, 10000 + courses):
    with open(os.path.join(sis, "classes", str(term), "%d.json" % n), "w") as f:
        json.dump({"response": {"classSections": [{"id": n, "meetings": []}]}}, f)
    roster[n] = {fresh() for _ in range(students)}
    write_course(n)
    profiles.append("    2030-fall-%d: {}\n" % n)
with open(os.path.join(work, "values.yaml"), "w") as f:
    f.write("custom:\n  profiles:\n" + "".join(profiles))
audit = os.path.join(work, "audit")
def size(path):
    return sum(os.path.getsize(os.path.join(d, name)) for d, _, names in os.walk(path) for name in names)
def objects():
    text = subprocess.run(["git", "-C", audit, "count-objects", "-v"], capture_output=True, text=True).stdout
    fields = dict(line.split(": ") for line in text.splitlines())
    return int(fields["count"]), int(fields["packs"])
marks = {1, 10, 100, runs // 4, runs // 2, 3 * runs // 4, runs}
print("%6s %10s %12s %8s %6s" % ("run", "duration s", "repo bytes", "loose", "packs"))
durations = []
for run in range(1, runs + 1):
    if run > 1:
        for n in random.sample(sorted(roster), changed):
            for gone in random.sample(sorted(roster[n]), 2):
                roster[n].discard(gone)
            roster[n].update(fresh() for _ in range(3))
            write_course(n)
    report = os.path.join(work, "report.json")
    subprocess.run([binary, "sync", "--values", os.path.join(work, "values.yaml"),
                    "--api-base", "file://" + sis, "--output-dir", os.path.join(work, "profiles.d"),
                    "--audit-repo", audit, "--report", report, "--stale-after-terms", "99"],
                   check=True, stderr=subprocess.DEVNULL, env=dict(os.environ, RUST_LOG="warn"))
    with open(report) as f:
        durations.append(json.load(f)["duration_seconds"])
    if run in marks:
        loose, packs = objects()
        print("%6d %10.3f %12d %8d %6d" % (run, durations[-1], size(audit), loose, packs), flush=True)
first = sum(durations[1:11]) / 10
last = sum(durations[-10:]) / 10
print("mean duration, runs 2-11: %.3f s; last 10 runs: %.3f s" % (first, last))
copy = os.path.join(work, "gc")
subprocess.run(["git", "clone", "--quiet", "--bare", "--no-local", audit, copy], check=True)
subprocess.run(["git", "-C", copy, "gc", "--quiet", "--aggressive", "--prune=now"], check=True)
print("repository %d bytes; after git gc --aggressive %d bytes (ratio %.2f)"
      % (size(audit), size(copy), size(audit) / size(copy)))
PY
