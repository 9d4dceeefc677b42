#!/usr/bin/env bash
# Benchmark of `roster-sync sync` on a Canvas campus (SPEC §11) against the local Canvas
# emulator (loopback only): builds the release binary and the emulator, syncs COURSES
# synthetic Canvas courses with a fixed latency per request, checks every roster against
# the oracle, and prints the requests (report and emulator) against the lower bound of one
# per page, and the wall time against max(requests x latency / concurrency, longest chain x
# latency).
#
# Usage: bench/canvas.sh   (COURSES=200 STUDENTS=150 POOL=3000 SEED=1 LATENCY_MS=20 CONCURRENCY=8)
# Exit status: 0 when the rosters match and the run succeeded, 1 otherwise.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
echo "bench: building (release)..." >&2
cargo build --quiet --release --locked --manifest-path "$root/Cargo.toml" -p roster-sync -p sis-emulator
work=$(mktemp -d "${TMPDIR:-/tmp}/roster-sync-canvas-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$root/target/release/sis-emulator" canvas-bench --binary "$root/target/release/roster-sync" \
    --work "$work" --courses "${COURSES:-200}" --students "${STUDENTS:-150}" \
    --pool "${POOL:-3000}" --seed "${SEED:-1}" --latency-ms "${LATENCY_MS:-20}" \
    --concurrency "${CONCURRENCY:-8}"
