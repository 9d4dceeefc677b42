#!/usr/bin/env bash
# Benchmark of `roster-sync sync` against the local SIS emulator (loopback only).
#
# Builds the release binary and the emulator (the sis-emulator workspace crate in
# bench/emulator, the same emulator the end-to-end tests use), serves a synthetic campus
# with a fixed latency per request, runs one sync with file credentials into a temporary
# directory, and prints wall time, request counts (report and emulator) against the lower
# bound, peak memory, and wall time over the ideal time
# max(requests x latency / concurrency, longest dependent chain x latency).
# The last line, `result: key=value ...`, sums up both runs (bench/sizes.sh collects it per
# size): the latency bound over the minimum number of requests, and per run the wall time,
# its ratio to that bound, requests against the minimum, and peak RSS.
#
# Usage: bench/run.sh            (environment overrides below)
#   COURSES=200 SECTIONS=3 STUDENTS=150 POOL=150 SEED=1 LATENCY_MS=20 CONCURRENCY=8
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

# time(1) outside timeout(1): the maximum RSS it reports covers waited-for descendants.
measure=() measure2=()
[[ -x /usr/bin/time ]] && measure=(/usr/bin/time -v -o "$work/time.txt") \
    && measure2=(/usr/bin/time -v -o "$work/time2.txt")
peak_mib() { # peak RSS in MiB from a time(1) -v file, "?" without one
    local kib
    kib=$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$1" 2>/dev/null)
    if [[ -n "$kib" ]]; then awk -v k="$kib" 'BEGIN { printf "%.1f", k / 1024 }'; else echo "?"; fi
}
timeout=$(command -v timeout)

echo "bench: $COURSES courses, ${LATENCY_MS} ms latency, concurrency $CONCURRENCY, $base_url" >&2
# The emulator's CPU time (clock ticks) shares the machine with the job: report it too.
emulator_ticks() { awk '{ print $14 + $15 }' "/proc/$emulator_pid/stat"; }
ticks_before=$(emulator_ticks)
started=$(date +%s.%N)
set +e
env -i HOME="$work" XDG_CONFIG_HOME="$work" RUST_LOG=${BENCH_RUST_LOG:-warn} "${creds[@]}" \
    "${measure[@]}" "$timeout" "$RUN_TIMEOUT" "$bin" sync \
    --values "$work/values.yaml" --api-base "$base_url" \
    --output-dir "$work/profiles.d" --audit-repo "$work/audit" \
    --report "$work/report.json" --concurrency "$CONCURRENCY" 2>"$work/sync.log"
status=$?
set -e
finished=$(date +%s.%N)
if [[ -n "${BENCH_LOG:-}" ]]; then cp "$work/sync.log" "$BENCH_LOG"; fi
wall=$(awk -v a="$started" -v b="$finished" 'BEGIN { printf "%.3f", b - a }')
emulator_cpu=$(awk -v a="$ticks_before" -v b="$(emulator_ticks)" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%.2f", (b - a) / hz }')

echo "command:                roster-sync sync --concurrency $CONCURRENCY (file credentials, RUST_LOG=warn)"
echo "exit status:            $status"
if [[ -f "$work/time.txt" ]]; then
    rss=$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$work/time.txt")
    echo "peak memory:            $((rss / 1024)) MiB ($rss KiB max RSS)"
    user=$(sed -n 's/^[[:space:]]*User time (seconds): //p' "$work/time.txt")
    system=$(sed -n 's/^[[:space:]]*System time (seconds): //p' "$work/time.txt")
    echo "cpu (roster-sync):      ${user} s user, ${system} s system"
fi
echo "cpu (emulator):         ${emulator_cpu} s (machine: $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg))"
if [[ $status -ne 0 ]]; then
    echo "bench: sync failed; last log lines:" >&2
    tail -n 20 "$work/sync.log" >&2
fi
"$emulator" check "${campus[@]}" --output-dir "$work/profiles.d" --report "$work/report.json" \
    --stats-url "$base_url" --wall "$wall" --latency-ms "$LATENCY_MS" --concurrency "$CONCURRENCY" \
    | tee "$work/check.txt"
minimum=$(sed -n 's/^request lower bound: *//p' "$work/check.txt")
chain=$(sed -n 's/^longest chain: *\([0-9]*\).*/\1/p' "$work/check.txt")
requests1=$(sed -n 's/^ *"total": \([0-9]*\),*$/\1/p' "$work/report.json" | head -n 1)
wall1=$wall

# The steady state: a second run over the same campus, the daily case of a CronJob.
# Nothing changed, so it fetches the same requests and writes and commits nothing.
started=$(date +%s.%N)
env -i HOME="$work" XDG_CONFIG_HOME="$work" RUST_LOG=${BENCH_RUST_LOG:-warn} "${creds[@]}" \
    "${measure2[@]}" "$timeout" "$RUN_TIMEOUT" "$bin" sync \
    --values "$work/values.yaml" --api-base "$base_url" \
    --output-dir "$work/profiles.d" --audit-repo "$work/audit" \
    --report "$work/report2.json" --concurrency "$CONCURRENCY" 2>"$work/sync2.log" \
    || { echo "bench: the second sync failed" >&2; tail -n 20 "$work/sync2.log" >&2; exit 1; }
finished=$(date +%s.%N)
requests=$(sed -n 's/^ *"total": \([0-9]*\),*$/\1/p' "$work/report2.json" | head -n 1)
awk -v a="$started" -v b="$finished" -v n="$requests" -v l="$LATENCY_MS" -v c="$CONCURRENCY" 'BEGIN {
    wall = b - a; ideal = n * l / 1000 / c
    printf "second run (no change):  %.2f s wall, %d requests, ideal %.2f s, wall / ideal %.2f\n", wall, n, ideal, wall / ideal
}'
echo "peak memory (second):   $(peak_mib "$work/time2.txt") MiB"
wall2=$(awk -v a="$started" -v b="$finished" 'BEGIN { printf "%.3f", b - a }')
# The latency bound is taken over the minimum number of requests, so a retry costs ratio.
awk -v courses="$COURSES" -v w1="$wall1" -v w2="$wall2" -v r1="$requests1" -v r2="$requests" \
    -v min="$minimum" -v chain="$chain" -v l="$LATENCY_MS" -v c="$CONCURRENCY" \
    -v m1="$(peak_mib "$work/time.txt")" -v m2="$(peak_mib "$work/time2.txt")" 'BEGIN {
    bound = min * l / 1000 / c; if (chain * l / 1000 > bound) bound = chain * l / 1000
    printf "result: courses=%d bound_s=%.2f first_wall_s=%.2f first_ratio=%.2f first_requests=%d/%d first_rss_mib=%s second_wall_s=%.2f second_ratio=%.2f second_requests=%d/%d second_rss_mib=%s\n", courses, bound, w1, w1 / bound, r1, min, m1, w2, w2 / bound, r2, min, m2
}'
