#!/usr/bin/env bash
# Fuzz the values loader and the four SIS/HR response parsers for a bounded time each
# (cargo-fuzz, libFuzzer). Usage: .ci/fuzz.sh [SECONDS_PER_TARGET] (default 25).
#
# Only the stable toolchain is needed: RUSTC_BOOTSTRAP=1 lets it accept the -Z flags
# cargo-fuzz passes (sanitizer, coverage instrumentation). The corpora start from the
# bundled fixtures and live in fuzz/corpus (not committed). A crash or a slow input
# (libFuzzer -timeout) fails the step and leaves the input in fuzz/artifacts/TARGET/;
# turn it into a regression test next to the parser before fixing it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-25}
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi

seed() {
    local target=$1; shift
    mkdir -p "fuzz/corpus/$target"
    for file in "$@"; do
        cp "$file" "fuzz/corpus/$target/seed-$(basename "$(dirname "$file")")-$(basename "$file")"
    done
}
seed values fixtures/values.yaml
seed sections fixtures/sis/classes/*/*.json
seed enrollment_page fixtures/sis/enrollments/*/*/*.json
seed student_addresses fixtures/sis/students/*.json
seed employee_addresses fixtures/sis/hr/*.json

# Build every target once (release, debug assertions on: cargo-fuzz's default).
cargo fuzz build --fuzz-dir fuzz

targets=${FUZZ_TARGETS:-values sections enrollment_page student_addresses employee_addresses}
for target in $targets; do
    echo "--- fuzz $target for ${seconds}s"
    # -timeout: an input that takes over 5 s is a finding (quadratic parsing, say);
    # -rss_limit_mb: so is one that needs over 512 MB.
    log="fuzz/artifacts/$target.log"
    mkdir -p fuzz/artifacts
    if ! cargo fuzz run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=5 -rss_limit_mb=512 -max_len=262144 \
        -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "fuzz target $target found a crash, a timeout or an out-of-memory (above)" >&2
        exit 1
    fi
    grep -E '^(Done |stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
done
echo "fuzzing done: no crash, no timeout, no out-of-memory"
