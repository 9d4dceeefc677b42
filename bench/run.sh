#!/usr/bin/env bash
# Benchmark of `roster-sync sync` against the local SIS emulator (loopback only).
#
# Builds the release binary and the emulator (the sis-emulator workspace crate in
# bench/emulator, the same emulator the end-to-end tests use), serves a synthetic campus
# with a fixed latency per request, runs one sync with file credentials into a temporary
# directory, and prints wall time, request counts (report and emulator) against the lower
# bound, peak memory, and wall time over the ideal time
# max(requests x latency / concurrency, longest dependent chain x latency).
# Each kind of run is timed REPEAT times against the same emulator, and the median counts:
# first runs into fresh directories, then second (daily, unchanged) runs over the last of
# them. A shared machine's disk and CPU come and go; every time is printed next to the
# median.
# The last line, `result: key=value ...`, sums up both kinds (bench/sizes.sh collects it per
# size): the latency bound over the minimum number of requests, and per kind the median
# wall time, its ratio to that bound, every wall time, the most requests any run made
# against the minimum, and the highest peak RSS.
#
# Usage: bench/run.sh            (environment overrides below)
#   COURSES=200 SECTIONS=3 STUDENTS=150 POOL=150 SEED=1 LATENCY_MS=20 CONCURRENCY=8 REPEAT=3
#   RUN_TIMEOUT=600 (seconds; the sync is killed after that)
#   BENCH_RUST_LOG=warn (RUST_LOG of the sync), BENCH_LOG=PATH (keep the sync's stderr there)
# Exit status: 0 when the rosters match the oracle and the run succeeded, 1 otherwise.

set -euo pipefail

COURSES=${COURSES:-200}
SECTIONS=${SECTIONS:-3}
STUDENTS=${STUDENTS:-150}
POOL=${POOL:-150}
SEED=${SEED:-1}
LATENCY_MS=${LATENCY_MS:-20}
CONCURRENCY=${CONCURRENCY:-8}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
REPEAT=${REPEAT:-3}

root=$(cd "$(dirname "$0")/.." && pwd)
campus=(--courses "$COURSES" --sections "$SECTIONS" --students "$STUDENTS" --pool "$POOL" --seed "$SEED")

if [[ ! -x /usr/bin/time ]]; then
    echo "bench: /usr/bin/time is missing (apt-get install -y time); peak memory is not measured" >&2
fi

echo "bench: building (release)..." >&2
cargo build --quiet --release --locked --manifest-path "$root/Cargo.toml" \
    -p roster-sync -p sis-emulator
bin="$root/target/release/roster-sync"
emulator="$root/target/release/sis-emulator"

work=$(mktemp -d "${TMPDIR:-/tmp}/roster-sync-bench.XXXXXX")
emulator_pid=
cleanup() {
    if [[ -n "$emulator_pid" ]]; then
        kill "$emulator_pid" 2>/dev/null || true
        wait "$emulator_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$emulator" serve "${campus[@]}" --latency-ms "$LATENCY_MS" \
    --values "$work/values.yaml" --info "$work/info" 2>"$work/emulator.log" &
emulator_pid=$!
for _ in $(seq 100); do
    [[ -f "$work/info" ]] && break
    kill -0 "$emulator_pid" 2>/dev/null || { cat "$work/emulator.log" >&2; exit 1; }
    sleep 0.1
done
[[ -f "$work/info" ]] || { echo "bench: the emulator did not start" >&2; exit 1; }
base_url=$(sed -n 's/^base_url=//p' "$work/info")

# File credentials, as in the CronJob (a mounted secret).
creds=()
for var in SIS_CLASSES SIS_ENROLLMENTS SIS_STUDENTS UCB_HR; do
    slug=$(echo "${var#*_}" | tr 'A-Z' 'a-z')
    printf 'test-%s-id\n' "$slug" >"$work/${var}_ID"
    printf 'test-%s-key-XYZ\n' "$slug" >"$work/${var}_KEY"
    creds+=("${var}_ID_FILE=$work/${var}_ID" "${var}_KEY_FILE=$work/${var}_KEY")
done

peak_mib() { # peak RSS in MiB from a time(1) -v file, "?" without one
    local kib
    kib=$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$1" 2>/dev/null)
    if [[ -n "$kib" ]]; then awk -v k="$kib" 'BEGIN { printf "%.1f", k / 1024 }'; else echo "?"; fi
}
timeout=$(command -v timeout)

# One sync into $work/$1 (profiles.d, audit), its report, log and time(1) file named $2;
# prints the wall time. time(1) outside timeout(1): the maximum RSS it reports covers
# waited-for descendants.
sync_once() {
    local dir=$work/$1 name=$work/$2 started finished status measure=()
    mkdir -p "$dir"
    [[ -x /usr/bin/time ]] && measure=(/usr/bin/time -v -o "$name.time")
    started=$(date +%s.%N)
    set +e
    env -i HOME="$work" XDG_CONFIG_HOME="$work" RUST_LOG=${BENCH_RUST_LOG:-warn} "${creds[@]}" \
        "${measure[@]}" "$timeout" "$RUN_TIMEOUT" "$bin" sync \
        --values "$work/values.yaml" --api-base "$base_url" \
        --output-dir "$dir/profiles.d" --audit-repo "$dir/audit" \
        --report "$name.json" --concurrency "$CONCURRENCY" 2>"$name.log"
    status=$?
    set -e
    finished=$(date +%s.%N)
    if [[ -n "${BENCH_LOG:-}" ]]; then cp "$name.log" "$BENCH_LOG"; fi
    if [[ $status -ne 0 ]]; then
        echo "bench: sync $2 failed (exit $status); last log lines:" >&2
        tail -n 20 "$name.log" >&2
        return 1
    fi
    awk -v a="$started" -v b="$finished" 'BEGIN { printf "%.3f", b - a }'
}
requests_of() { sed -n 's/^ *"total": \([0-9]*\),*$/\1/p' "$work/$1.json" | head -n 1; }
median() { tr ' ' '\n' | sort -n | awk '{ v[NR] = $1 } END { print v[int(NR / 2) + 1] }'; }
largest() { tr ' ' '\n' | sort -n | tail -n 1; }

echo "bench: $COURSES courses, ${LATENCY_MS} ms latency, concurrency $CONCURRENCY, $base_url, $REPEAT runs of each kind" >&2
# The emulator's CPU time (clock ticks) shares the machine with the job: report it too.
emulator_ticks() { awk '{ print $14 + $15 }' "/proc/$emulator_pid/stat"; }
ticks_before=$(emulator_ticks)
wall=$(sync_once first-1 first-1) || exit 1
emulator_cpu=$(awk -v a="$ticks_before" -v b="$(emulator_ticks)" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%.2f", (b - a) / hz }')

echo "command:                roster-sync sync --concurrency $CONCURRENCY (file credentials, RUST_LOG=warn)"
if [[ -f "$work/first-1.time" ]]; then
    rss=$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$work/first-1.time")
    echo "peak memory:            $((rss / 1024)) MiB ($rss KiB max RSS)"
    user=$(sed -n 's/^[[:space:]]*User time (seconds): //p' "$work/first-1.time")
    system=$(sed -n 's/^[[:space:]]*System time (seconds): //p' "$work/first-1.time")
    echo "cpu (roster-sync):      ${user} s user, ${system} s system"
fi
echo "cpu (emulator):         ${emulator_cpu} s (machine: $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg))"
# The emulator counts every request it served, so it checks the first run alone.
"$emulator" check "${campus[@]}" --output-dir "$work/first-1/profiles.d" --report "$work/first-1.json" \
    --stats-url "$base_url" --wall "$wall" --latency-ms "$LATENCY_MS" --concurrency "$CONCURRENCY" \
    | tee "$work/check.txt"
minimum=$(sed -n 's/^request lower bound: *//p' "$work/check.txt")
chain=$(sed -n 's/^longest chain: *\([0-9]*\).*/\1/p' "$work/check.txt")

first_walls=$wall first_requests=$(requests_of first-1) first_rss=$(peak_mib "$work/first-1.time")
for ((n = 2; n <= REPEAT; n++)); do
    first_walls+=" $(sync_once "first-$n" "first-$n")" || exit 1
    first_requests+=" $(requests_of "first-$n")"
    first_rss+=" $(peak_mib "$work/first-$n.time")"
done
# The steady state: runs over the same campus, the daily case of a CronJob. Nothing
# changed, so each fetches the same requests and writes and commits nothing.
second_walls= second_requests= second_rss=
for ((n = 1; n <= REPEAT; n++)); do
    second_walls+=" $(sync_once "first-$REPEAT" "second-$n")" || exit 1
    second_requests+=" $(requests_of "second-$n")"
    second_rss+=" $(peak_mib "$work/second-$n.time")"
done
echo "first runs:             ${first_walls# } s wall; requests ${first_requests# }; peak RSS ${first_rss# } MiB"
echo "second runs:            ${second_walls# } s wall; requests ${second_requests# }; peak RSS ${second_rss# } MiB"
# The latency bound is taken over the minimum number of requests, so a retry costs ratio.
awk -v courses="$COURSES" -v min="$minimum" -v chain="$chain" -v l="$LATENCY_MS" -v c="$CONCURRENCY" \
    -v w1="$(median <<<"$first_walls")" -v w2="$(median <<<"${second_walls# }")" \
    -v all1="$(tr ' ' '/' <<<"$first_walls")" -v all2="$(tr ' ' '/' <<<"${second_walls# }")" \
    -v r1="$(largest <<<"$first_requests")" -v r2="$(largest <<<"${second_requests# }")" \
    -v m1="$(largest <<<"$first_rss")" -v m2="$(largest <<<"${second_rss# }")" 'BEGIN {
    bound = min * l / 1000 / c; if (chain * l / 1000 > bound) bound = chain * l / 1000
    printf "result: courses=%d bound_s=%.2f first_wall_s=%.2f first_ratio=%.2f first_walls_s=%s first_requests=%d/%d first_rss_mib=%s second_wall_s=%.2f second_ratio=%.2f second_walls_s=%s second_requests=%d/%d second_rss_mib=%s\n", courses, bound, w1, w1 / bound, all1, r1, min, m1, w2, w2 / bound, all2, r2, min, m2
}'
