#!/usr/bin/env bash
# Build the fuzz targets with clang (build-fuzz/: ASan + UBSan + libFuzzer),
# make the seed corpus, replay every seed and every file of
# tests/fuzz/regressions/ (each crashed once), then fuzz for FUZZ_SECONDS
# (default 60).  Exit status 0 when nothing crashed, 77 when clang or
# qemu-img is missing, 1 otherwise; a crash leaves its input as
# build-fuzz/fuzz-work/crash-* (add it to tests/fuzz/regressions/ once
# fixed).
#
# Environment: FUZZ_SECONDS, FUZZ_BUILD (default SRC/build-fuzz), JOBS.
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${FUZZ_BUILD:-$src/build-fuzz}
seconds=${FUZZ_SECONDS:-60}

for cmd in clang qemu-img qemu-io; do
    if ! command -v "$cmd" >/dev/null; then
        echo "SKIP: requires $cmd"
        exit 77
    fi
done

if [[ ! -f $build/build.ninja ]]; then
    CC=clang meson setup "$build" "$src" -Dfuzz=enabled -Dtests=disabled \
        -Db_sanitize=address,undefined -Db_lundef=false
fi
ninja -C "$build" -j "${JOBS:-2}" tests/fuzz/fuzz-qcow2-open
fuzzer=$build/tests/fuzz/fuzz-qcow2-open

work=$build/fuzz-work
rm -rf "$work/seeds"
mkdir -p "$work/corpus"     # kept between runs: coverage accumulates
"$src/tests/fuzz/make-corpus.sh" "$work/seeds"

# LeakSanitizer needs ptrace; without it (some containers) run without
# leak checks rather than fail for a reason that is not chainfs's.
: "${ASAN_OPTIONS:=}"
if ! ASAN_OPTIONS=detect_leaks=1 "$fuzzer" -runs=0 >/dev/null 2>&1; then
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
fi
export ASAN_OPTIONS UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1"

shopt -s nullglob
inputs=("$work"/seeds/*)
for f in "$src"/tests/fuzz/regressions/*; do
    [[ $(basename "$f") == README ]] || inputs+=("$f")
done
echo "== replaying ${#inputs[@]} seeds and regressions"
"$fuzzer" -rss_limit_mb=2048 "${inputs[@]}"

echo "== fuzzing for ${seconds}s"
"$fuzzer" -max_total_time="$seconds" -max_len=65536 -timeout=20 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/" \
    "$work/corpus" "$work/seeds"
