#!/usr/bin/env bash
# The benchmark at several campus sizes: runs bench/run.sh once per size (same campus shape,
# latency, concurrency and repeats, overridable as there) and prints one line per size, for
# each kind of run (the first creates every file and the first commit; the second is the
# daily, unchanged case): the median wall time, the latency bound, their ratio, every wall
# time, the most requests a run made against the minimum, and the highest peak RSS.
#
# Usage: bench/sizes.sh          SIZES="200 1000 5000" (default); RUN_TIMEOUT defaults to
#        1800 s here, enough for 5,000 courses at 20 ms and concurrency 8.
# Exit status: 1 when any size's run fails or its rosters do not match the oracle.

set -euo pipefail

SIZES=${SIZES:-200 1000 5000}
export RUN_TIMEOUT=${RUN_TIMEOUT:-1800}
root=$(cd "$(dirname "$0")/.." && pwd)
results=()
status=0
for courses in $SIZES; do
    echo "bench: $courses courses..." >&2
    if output=$(COURSES=$courses "$root/bench/run.sh" 2>&1); then
        results+=("$(grep '^result: ' <<<"$output" | tail -n 1)")
    else
        status=1
        echo "$output" >&2
        results+=("result: courses $courses | FAILED")
    fi
done

printf '%-7s %7s | %-50s | %-50s\n' "" "" "first runs (create every file)" "second runs (nothing changed)"
printf '%-7s %7s | %6s %5s %-18s %-12s %5s | %6s %5s %-18s %-12s %5s\n' courses "bound s" \
    "wall s" ratio "every wall s" requests/min "RSS" "wall s" ratio "every wall s" requests/min "RSS"
for line in "${results[@]}"; do
    awk '/FAILED/ { print; next } {
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        printf "%-7s %7s | %6s %5s %-18s %-12s %5s | %6s %5s %-18s %-12s %5s\n", v["courses"],
            v["bound_s"], v["first_wall_s"], v["first_ratio"], v["first_walls_s"],
            v["first_requests"], v["first_rss_mib"], v["second_wall_s"], v["second_ratio"],
            v["second_walls_s"], v["second_requests"], v["second_rss_mib"]
    }' <<<"$line"
done
exit $status
