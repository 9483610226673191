#!/usr/bin/env bash
# The test command.  Builds three trees and runs everything:
#   build/       plain            unit tests + every tests/shell/test-*.sh
#   build-asan/  ASan + UBSan     unit tests + every tests/shell/test-*.sh
#   build-tsan/  TSan             unit tests of the 'thread' suite
#   build-fuzz/  clang, libFuzzer tests/fuzz/run.sh (FUZZ_SECONDS, default 60;
#                ASan + UBSan     SKIP without clang)
# Installs nothing (scripts/deps.sh does).  Prints one PASS/FAIL/SKIP line
# per test, the tail of the log of each failure, and as its last line
# "N passed, M failed, K skipped".  Exit status 1 if anything failed.
#
# Environment: JOBS (parallel build/test jobs, default 2), SHELL_TESTS (a
# glob of shell tests to run, default test-*.sh), TEST_TIMEOUT (seconds per
# shell test, default 300).
set -uo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$src" || exit 1
jobs=${JOBS:-2}
shell_tests=${SHELL_TESTS:-test-*.sh}
test_timeout=${TEST_TIMEOUT:-300}
passed=0 failed=0 skipped=0
failures=()
start=$SECONDS

# flavour DIR: what a build directory is for: plain, asan or tsan.
flavour()
{
    case $(basename "$1") in
    build) echo plain ;;
    build-*) basename "$1" | cut -d- -f2- ;;
    *) basename "$1" ;;
    esac
}

# report STATUS NAME [LOG]: count and print one result (PASS, FAIL, SKIP).
report()
{
    local status=$1 name=$2 log=${3:-}
    printf '%-4s %s\n' "$status" "$name"
    case $status in
    PASS) passed=$((passed + 1)) ;;
    SKIP) skipped=$((skipped + 1)) ;;
    *)
        failed=$((failed + 1))
        failures+=("$name")
        if [[ -n $log && -s $log ]]; then
            echo "---- $name: last lines of $log"
            tail -n 40 "$log" | sed 's/^/    /'
            echo "----"
        fi
        ;;
    esac
}

# build DIR MESON-OPTIONS...: configure once, then build with ninja.
build()
{
    local dir=$1 name status
    name=$(flavour "$dir")
    shift
    mkdir -p "$dir"
    {
        if [[ -f $dir/build.ninja ]]; then
            meson configure "$dir" -Dtests=enabled "$@"
        else
            meson setup "$dir" "$src" -Dtests=enabled "$@"
        fi && ninja -C "$dir" -j "$jobs"
    } >"$dir/build.log" 2>&1
    status=$?
    if [[ $status -eq 0 ]]; then
        report PASS "build $name"
    else
        report FAIL "build $name" "$dir/build.log"
    fi
    return $status
}

# unit_tests DIR [MESON-TEST-ARGS]: run meson test and report each test.
unit_tests()
{
    local dir=$1 label name result log
    label=unit/$(flavour "$dir")
    shift
    rm -f "$dir/meson-logs/testlog.json"
    meson test -C "$dir" --no-rebuild --num-processes "$jobs" \
        --print-errorlogs "$@" >"$dir/unit-tests.log" 2>&1
    if [[ ! -s $dir/meson-logs/testlog.json ]] ||
       grep -q 'No suitable tests defined' "$dir/unit-tests.log"; then
        echo "     (no unit tests in $label${*:+ $*})"
        return
    fi
    # meson is Python, so python3 is there to read its JSON log; each
    # failed test's output goes to its own file for report().
    mkdir -p "$dir/unit-logs"
    while IFS=$'\t' read -r name result log; do
        case $result in
        OK | EXPECTEDFAIL) report PASS "$label $name" ;;
        SKIP) report SKIP "$label $name" ;;
        *) report FAIL "$label $name ($result)" "$log" ;;
        esac
    done < <(python3 -c '
import json, re, sys
for line in open(sys.argv[1]):
    t = json.loads(line)
    log = "%s/%s.log" % (sys.argv[2], re.sub(r"[^A-Za-z0-9._-]+", "_", t["name"]))
    with open(log, "w") as f:
        f.write(t.get("stdout") or "")
        f.write(t.get("stderr") or "")
    print(t["name"], t["result"], log, sep="\t")' \
        "$dir/meson-logs/testlog.json" "$dir/unit-logs")
}

# shell_tests DIR: run every shell test with DIR's chainfs and tools.
shell_tests()
{
    local dir=$1 label test name log status t0
    label=shell/$(flavour "$dir")
    mkdir -p "$dir/shell-logs"
    for test in "$src"/tests/shell/$shell_tests; do
        name=$(basename "$test" .sh)
        log=$dir/shell-logs/$name.log
        t0=$SECONDS
        CHAINFS=$dir/fuse/chainfs CHAINFS_TOOLS=$dir/tests/tools \
            timeout -k 10 "$test_timeout" "$test" >"$log" 2>&1 </dev/null
        status=$?
        case $status in
        0) report PASS "$label $name ($((SECONDS - t0))s)" ;;
        77) report SKIP "$label $name ($(grep -m1 '^SKIP' "$log" | sed 's/^SKIP: [^:]*: //'))" ;;
        124) report FAIL "$label $name (timed out after ${test_timeout}s)" "$log" ;;
        *) report FAIL "$label $name (exit $status)" "$log" ;;
        esac
    done
}

# fuzz_test: build build-fuzz/ with clang and fuzz for FUZZ_SECONDS.
fuzz_test()
{
    local log=$src/build-fuzz/fuzz.log status t0=$SECONDS
    mkdir -p "$src/build-fuzz"
    JOBS=$jobs timeout -k 10 $((${FUZZ_SECONDS:-60} + test_timeout)) \
        "$src/tests/fuzz/run.sh" >"$log" 2>&1 </dev/null
    status=$?
    case $status in
    0) report PASS "fuzz qcow2-open ($((SECONDS - t0))s)" ;;
    77) report SKIP "fuzz qcow2-open ($(grep -m1 '^SKIP' "$log" | sed 's/^SKIP: //'))" ;;
    *) report FAIL "fuzz qcow2-open (exit $status)" "$log" ;;
    esac
}

# LeakSanitizer needs ptrace, which some containers forbid: probe it once
# rather than fail every test for a reason that is not chainfs's.
lsan_works()
{
    local probe
    probe=$(mktemp -d) || return 1
    printf 'int main(void) { return 0; }\n' >"$probe/p.c"
    cc -fsanitize=address -o "$probe/p" "$probe/p.c" 2>/dev/null &&
        ASAN_OPTIONS=detect_leaks=1 "$probe/p" >/dev/null 2>&1
    local status=$?
    rm -rf "$probe"
    return $status
}

# TSan's runtime (GCC 12) cannot map its shadow memory with the address
# space randomization of recent kernels; run its tests without ASLR then.
tsan_wrapper=()
tsan_needs_no_aslr()
{
    local probe status
    probe=$(mktemp -d) || return 1
    printf 'int main(void) { return 0; }\n' >"$probe/p.c"
    cc -fsanitize=thread -o "$probe/p" "$probe/p.c" 2>/dev/null && "$probe/p" >/dev/null 2>&1
    status=$?
    rm -rf "$probe"
    [[ $status -ne 0 ]]
}

# The whole run is one function, so that bash has read all of this file
# before running any of it (editing it during a run is then harmless).
main()
{
    echo "== building (build, build-asan, build-tsan) with $jobs jobs"
    plain_ok=0 asan_ok=0 tsan_ok=0
    build "$src/build" || plain_ok=$?
    build "$src/build-asan" -Db_sanitize=address,undefined -Db_lundef=false || asan_ok=$?
    build "$src/build-tsan" -Db_sanitize=thread -Db_lundef=false || tsan_ok=$?

    leaks=1
    if ! lsan_works; then
        echo "NOTE LeakSanitizer cannot run here (ptrace restricted?): leak checks off"
        leaks=0
    fi
    export ASAN_OPTIONS="detect_leaks=$leaks:abort_on_error=1:halt_on_error=1:print_summary=1"
    export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:print_summary=1"
    export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
    if tsan_needs_no_aslr && setarch "$(uname -m)" -R true 2>/dev/null; then
        tsan_wrapper=(--wrapper "setarch $(uname -m) -R")
    fi

    echo "== unit tests"
    [[ $plain_ok -eq 0 ]] && unit_tests "$src/build"
    [[ $asan_ok -eq 0 ]] && unit_tests "$src/build-asan"
    [[ $tsan_ok -eq 0 ]] && unit_tests "$src/build-tsan" --suite thread "${tsan_wrapper[@]}"

    echo "== shell tests"
    [[ $plain_ok -eq 0 ]] && shell_tests "$src/build"
    [[ $asan_ok -eq 0 ]] && shell_tests "$src/build-asan"

    echo "== fuzzing"
    fuzz_test

    echo "== done in $((SECONDS - start))s"
    if [[ ${#failures[@]} -gt 0 ]]; then
        echo "failed:"
        printf '  %s\n' "${failures[@]}"
    fi
    echo "$passed passed, $failed failed, $skipped skipped"
    [[ $failed -eq 0 ]]
}

main "$@"
exit
