#!/usr/bin/env bash
# Benchmark of the auditor commands on years of audit history.
#
# Builds an audit repository like the job's (bare, branch main, flat tree of roster files)
# with COMMITS commits over FILES roster files (git fast-import, synthetic addresses: one
# commit a day, a few adds and drops in a few courses each), then times, with the release
# binary: `history`, `history --member`, `history --course`, `show --at` a date in the
# middle, and prints one line each. Everything stays in a temporary directory.
#
# Usage: bench/history.sh     (COMMITS=1000 FILES=400 STUDENTS=150 CHANGED=5 REPEAT=3)

set -euo pipefail

COMMITS=${COMMITS:-1000}
FILES=${FILES:-400}
STUDENTS=${STUDENTS:-150}
CHANGED=${CHANGED:-5}
REPEAT=${REPEAT:-3}

root=$(cd "$(dirname "$0")/.." && pwd)
echo "bench: building (release)..." >&2
cargo build --quiet --release --locked -p roster-sync --manifest-path "$root/Cargo.toml"
bin="$root/target/release/roster-sync"

work=$(mktemp -d "${TMPDIR:-/tmp}/roster-sync-history.XXXXXX")
trap 'rm -rf "$work"' EXIT
repo="$work/audit"
git init --quiet --bare --initial-branch=main "$repo"

echo "bench: writing $COMMITS commits over $FILES roster files..." >&2
python3 - "$COMMITS" "$FILES" "$STUDENTS" "$CHANGED" > "$work/stream" <<'PY'
import random, sys
commits, files, students, changed = map(int, sys.argv[1:])
random.seed(1)
courses = files // 2
keys = ["2030-fall-%d" % (10000 + n) for n in range(courses)]
rosters = {}
serial = 0
def fresh():
    global serial
    serial += 1
    return "s%07d@berkeley.edu" % serial
for key in keys:
    rosters[key + "-students.txt"] = {fresh() for _ in range(students)}
    rosters[key + "-instructors.txt"] = {fresh() for _ in range(3)}
out = sys.stdout.buffer
def data(text):
    body = text.encode()
    out.write(b"data %d\n" % len(body) + body + b"\n")
start = 1_900_000_000  # 2030-03-17
for n in range(commits):
    names = sorted(rosters) if n == 0 else random.sample(sorted(rosters), changed)
    if n > 0:
        for name in names:
            members = rosters[name]
            for gone in random.sample(sorted(members), min(2, len(members) - 1)):
                members.discard(gone)
            members.update(fresh() for _ in range(3))
    out.write(b"commit refs/heads/main\n")
    out.write(b"committer roster-sync <roster-sync@localhost> %d +0000\n" % (start + 86400 * n))
    data("roster-sync: run %d\n" % n)
    for name in names:
        out.write(b"M 100644 inline %s\n" % name.encode())
        data("".join(a + "\n" for a in sorted(rosters[name])))
    out.write(b"\n")
PY
git -C "$repo" fast-import --quiet < "$work/stream"
member=$(git -C "$repo" show "main~$((COMMITS / 2)):2030-fall-10000-students.txt" | head -1)
middle=$(git -C "$repo" log -1 --format=%cs "main~$((COMMITS / 2))")
echo "bench: $(git -C "$repo" rev-list --count main) commits, $(git -C "$repo" ls-tree main | wc -l) files, $(du -sh "$repo" | cut -f1)" >&2

measure() {
    local label=$1; shift
    local best=
    for _ in $(seq "$REPEAT"); do
        local start end took
        start=$(date +%s.%N)
        "$bin" "$@" --audit-repo "$repo" > "$work/out" 2>/dev/null
        end=$(date +%s.%N)
        took=$(echo "$end - $start" | bc)
        if [[ -z "$best" ]] || (( $(echo "$took < $best" | bc) )); then best=$took; fi
    done
    printf '%-32s %8.3f s  %8d lines\n' "$label" "$best" "$(wc -l < "$work/out")"
}

echo "command                          best of $REPEAT    output"
measure "history" history
measure "history --member" history --member "$member"
measure "history --course" history --course 2030-fall-10000
measure "history --format json" history --format json
measure "show --at (middle)" show --course 2030-fall-10000 --at "$middle"
