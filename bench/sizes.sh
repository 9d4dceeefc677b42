#!/usr/bin/env bash
# The benchmark at several campus sizes: runs bench/run.sh once per size (same campus shape,
# latency and concurrency, overridable as there) and prints one line per size, for each of
# the two runs (the first creates every file and the first commit; the second is the
# daily, unchanged case): wall time, the latency bound, their ratio, requests against the
# minimum, and peak RSS.
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

printf '%-7s %8s | %-36s | %-36s\n' "" "" "first run (creates every file)" "second run (nothing changed)"
printf '%-7s %8s | %7s %6s %-13s %7s | %7s %6s %-13s %7s\n' courses "bound s" \
    "wall s" ratio requests/min "RSS MiB" "wall s" ratio requests/min "RSS MiB"
for line in "${results[@]}"; do
    awk '/FAILED/ { print; next } {
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        printf "%-7s %8s | %7s %6s %-13s %7s | %7s %6s %-13s %7s\n", v["courses"], v["bound_s"],
            v["first_wall_s"], v["first_ratio"], v["first_requests"], v["first_rss_mib"],
            v["second_wall_s"], v["second_ratio"], v["second_requests"], v["second_rss_mib"]
    }' <<<"$line"
done
exit $status
