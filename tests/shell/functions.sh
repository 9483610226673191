# shellcheck shell=bash
# Shared helpers for tests/shell/test-*.sh.  Source it first thing:
#
#     source "$(dirname "$0")/functions.sh"
#
# It registers the cleanup (trap on EXIT) before anything else, makes a
# temporary directory per test and cds into it.  Environment:
#   CHAINFS          the daemon to test (default: build/fuse/chainfs)
#   CHAINFS_TOOLS    the test tools (default: next to CHAINFS's build)
#   CHAINFS_TIMEOUT  seconds to wait for a mount or an exit (default 20)
#   KEEP_TMP=1       keep the temporary directory
# Exit status 77 means skipped.

set -euo pipefail

srcdir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
: "${CHAINFS:=$srcdir/build/fuse/chainfs}"
: "${CHAINFS_TOOLS:=$(dirname "$CHAINFS")/../tests/tools}"
: "${CHAINFS_TIMEOUT:=20}"
# Tests run in their own directory: make the paths absolute first.
CHAINFS=$(realpath -m "$CHAINFS")
CHAINFS_TOOLS=$(realpath -m "$CHAINFS_TOOLS")
test_name=$(basename "$0" .sh)

# ---- cleanup: registered before anything can need it ----------------------

_cleanup_commands=()        # run in reverse order at exit
declare -A _daemon_mount=() # PID -> mountpoint, for daemons not yet reaped
_mounts=()                  # every mountpoint we used
_logs=()                    # every daemon log, checked for sanitizer reports
tmpdir=

_cleanup()
{
    local status=$? pid mnt log i
    set +e
    trap '' PIPE    # a closed stdout must not stop the cleanup half-way
    for ((i = ${#_cleanup_commands[@]} - 1; i >= 0; i--)); do
        eval "${_cleanup_commands[i]}"
    done
    # Daemons still running here belong to a test that failed or stopped
    # early: unmount lazily (files may still be open), ask them to exit,
    # and kill only those that do not.
    for pid in "${!_daemon_mount[@]}"; do
        fusermount3 -u -z "${_daemon_mount[$pid]}" 2>/dev/null
        kill -TERM "$pid" 2>/dev/null
        _wait_exit "$pid" || { kill -KILL "$pid" 2>/dev/null; wait "$pid"; }
    done
    for mnt in "${_mounts[@]}"; do
        # Also catches mounts whose daemon died ("transport endpoint is not
        # connected"), which mountpoint -q does not report.
        fusermount3 -u -z "$mnt" 2>/dev/null
    done
    for log in "${_logs[@]}"; do
        if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:|WARNING: ThreadSanitizer' "$log" 2>/dev/null; then
            echo "FAIL: $test_name: sanitizer report in $log:" >&2
            cat "$log" >&2
            status=1
        elif [[ $status -ne 0 && $status -ne 77 && -s $log ]]; then
            echo "--- $log (tail) ---" >&2
            tail -n 20 "$log" >&2
        fi
    done
    if [[ -n $tmpdir ]]; then
        cd /
        if [[ ${KEEP_TMP:-0} = 1 ]]; then
            echo "kept $tmpdir" >&2
        else
            rm -rf --one-file-system "$tmpdir"
        fi
    fi
    exit "$status"
}
trap _cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Run a shell command (a string) at exit, before the daemons are stopped.
cleanup_fn()
{
    _cleanup_commands+=("$*")
}

tmpdir=$(mktemp -d "${TMPDIR:-/tmp}/chainfs-$test_name.XXXXXX")
cd "$tmpdir"

# ---- outcomes --------------------------------------------------------------

fail()
{
    echo "FAIL: $test_name: $*" >&2
    exit 1
}

skip()
{
    echo "SKIP: $test_name: $*"
    exit 77
}

# requires CMD...: skip the test unless every command is available.
requires()
{
    local cmd
    for cmd in "$@"; do
        command -v "$cmd" >/dev/null || skip "requires $cmd"
    done
}

# requires_fuse: skip without /dev/fuse; fail when chainfs is not built.
requires_fuse()
{
    requires fusermount3 mountpoint
    [[ -c /dev/fuse ]] || skip "requires /dev/fuse"
    [[ -x $CHAINFS ]] || fail "chainfs not built: $CHAINFS"
}

# requires_tool NAME: fail when a test tool is not built.
requires_tool()
{
    [[ -x $CHAINFS_TOOLS/$1 ]] || fail "test tool not built: $CHAINFS_TOOLS/$1"
}

# ---- assertions ------------------------------------------------------------

assert_eq()
{
    local actual=$1 expected=$2 what=$3
    [[ $actual == "$expected" ]] ||
        fail "$what: expected '$expected', got '$actual'"
}

assert_equal_files()
{
    local a=$1 b=$2 what=${3:-"$1 and $2 differ"} diff
    diff=$(cmp "$a" "$b" 2>&1) || fail "$what: $diff"
}

# assert_zeros FILE OFFSET LEN: the range reads as zeros.
assert_zeros()
{
    local file=$1 offset=$2 len=$3 diff
    diff=$(cmp -n "$len" -i "$offset:0" "$file" /dev/zero 2>&1) ||
        fail "$file [$offset, +$len) is not zeros: $diff"
}

# assert_fails WHAT CMD...: the command fails; its stderr is in $fail_output.
assert_fails()
{
    local what=$1
    shift
    # shellcheck disable=SC2034 # for the caller
    if fail_output=$("$@" 2>&1); then
        fail "$what: '$*' succeeded"
    fi
}

# ---- images ----------------------------------------------------------------

# qemu_check IMG: qemu-img check finds no errors and no leaks (raw: nothing
# to check).
qemu_check()
{
    local img=$1 out rc=0
    out=$(qemu-img check "$img" 2>&1) || rc=$?
    [[ $rc -eq 63 && $out == *"does not support checks"* ]] && return 0
    [[ $rc -eq 0 ]] || fail "qemu-img check $img: exit $rc: $out"
}

# qemu_check_leaks_ok IMG: no errors, leaked clusters allowed (after a
# crash).
qemu_check_leaks_ok()
{
    local img=$1 out rc=0
    out=$(qemu-img check "$img" 2>&1) || rc=$?
    [[ $rc -eq 0 || $rc -eq 3 ]] || fail "qemu-img check $img: exit $rc: $out"
}

# qcow2_create FILE SIZE CLUSTER_SIZE [BACKING BACKING_FORMAT]
qcow2_create()
{
    local file=$1 size=$2 cluster=$3 args=()
    [[ $# -ge 5 ]] && args=(-b "$4" -F "$5")
    qemu-img create -q -f qcow2 -o "cluster_size=$cluster" "${args[@]}" \
        "$file" "$size" || fail "qemu-img create $file failed"
}

# poke_be FILE OFFSET NBYTES VALUE: overwrite a big-endian integer (to
# damage an image header or table on purpose).
poke_be()
{
    local file=$1 offset=$2 n=$3 value=$4 i bytes=
    for ((i = n - 1; i >= 0; i--)); do
        bytes+=$(printf '\\0%03o' $(((value >> (8 * i)) & 255)))
    done
    printf '%b' "$bytes" |
        dd of="$file" bs=1 seek="$offset" conv=notrunc status=none ||
        fail "cannot patch $file at $offset"
}

# peek_be FILE OFFSET NBYTES: print a big-endian integer.
peek_be()
{
    local file=$1 offset=$2 n=$3 value=0 byte
    for byte in $(od -An -tu1 -v -j "$offset" -N "$n" "$file"); do
        value=$(((value << 8) | byte))
    done
    echo "$value"
}

# qemu_io IMG CMD...: apply qemu-io commands to an image (format from the
# name: *.raw is raw, anything else qcow2).
qemu_io()
{
    local img=$1 cmd args=(-f qcow2) out
    shift
    [[ $img == *.raw ]] && args=(-f raw)
    for cmd in "$@"; do
        args+=(-c "$cmd")
    done
    out=$(qemu-io "${args[@]}" "$img" 2>&1) || fail "qemu-io $img: $out"
}

# to_raw IMG OUT: what a guest sees of the chain, as a raw file.
to_raw()
{
    qemu-img convert -O raw "$1" "$2" || fail "qemu-img convert $1 failed"
}

# pattern LEN BYTE: LEN bytes of value BYTE on stdout.
pattern()
{
    head -c "$1" /dev/zero | tr '\0' "\\$(printf %03o "$2")"
}

# dd_write FILE OFFSET LEN BYTE [DD-ARGS]: write a pattern at a byte
# offset with dd, without truncating.
dd_write()
{
    local file=$1 offset=$2 len=$3 byte=$4
    shift 4
    pattern "$len" "$byte" |
        dd of="$file" bs="$len" count=1 iflag=fullblock seek="$offset" \
           oflag=seek_bytes conv=notrunc status=none "$@" ||
        fail "dd write to $file at $offset, $len bytes failed"
}

# data_extents IMG: qemu-img map's data ranges of the chain, merged, one
# "OFFSET LENGTH" per line (what chainfs-extents prints for the disk).
data_extents()
{
    qemu-img map --output=json "$@" | awk '
        /"data": true/ {
            match($0, /"start": [0-9]+/); s = substr($0, RSTART + 9, RLENGTH - 9) + 0
            match($0, /"length": [0-9]+/); l = substr($0, RSTART + 10, RLENGTH - 10) + 0
            if (n && s == start + len) { len += l; next }
            if (n) printf "%d %d\n", start, len
            start = s; len = l; n = 1
        }
        END { if (n) printf "%d %d\n", start, len }'
}

# listing DIR: the names in DIR, dot files included, sorted, on one line.
listing()
{
    find "$1" -mindepth 1 -maxdepth 1 -printf '%f\n' | LC_ALL=C sort | paste -sd' '
}

# tree_state DIR: checksums, sizes and mtimes of every file under DIR
# except daemon logs, to show that nothing was modified.
tree_state()
{
    (cd "$1" && find . -xdev -type f ! -name 'chainfs-*.log' -printf '%p %s %T@\n' |
        sort && find . -xdev -type f ! -name 'chainfs-*.log' -print0 |
        sort -z | xargs -0 -r md5sum)
}

# ---- the daemon ------------------------------------------------------------

# Whether PID is alive (not a zombie).
_running()
{
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# _wait_exit PID: wait (polling) until PID exits, then reap it; its exit
# status is left in $chainfs_status.  Returns 1 on timeout.
_wait_exit()
{
    local pid=$1 deadline=$((SECONDS + CHAINFS_TIMEOUT))
    while _running "$pid"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.05
    done
    chainfs_status=0
    wait "$pid" || chainfs_status=$?
    unset "_daemon_mount[$pid]"
    return 0
}

# _spawn_chainfs MOUNTPOINT ARGS...: start "$CHAINFS -f ARGS MOUNTPOINT" as
# a background child with SIGINT at its default (bash would ignore it),
# output in a log; sets chainfs_pid and chainfs_log.
_spawn_chainfs()
{
    local mnt=$1
    shift
    mkdir -p "$mnt"
    chainfs_log=$tmpdir/chainfs-$((${#_logs[@]} + 1)).log
    _logs+=("$chainfs_log")
    _mounts+=("$mnt")
    env --default-signal=INT,QUIT "$CHAINFS" -f "$@" "$mnt" \
        >"$chainfs_log" 2>&1 </dev/null &
    chainfs_pid=$!
    _daemon_mount[$chainfs_pid]=$mnt
}

# start_chainfs MOUNTPOINT ARGS...: mount, and wait until the mount is up.
# Sets chainfs_pid.
start_chainfs()
{
    local mnt=$1 deadline=$((SECONDS + CHAINFS_TIMEOUT))
    _spawn_chainfs "$@"
    until mountpoint -q "$mnt"; do
        if ! _running "$chainfs_pid"; then
            _wait_exit "$chainfs_pid"
            fail "chainfs exited with status $chainfs_status before mounting $mnt: $(cat "$chainfs_log")"
        fi
        ((SECONDS < deadline)) || fail "$mnt not mounted after ${CHAINFS_TIMEOUT}s"
        sleep 0.02
    done
}

# try_start_chainfs MOUNTPOINT ARGS...: like start_chainfs, but a refusal
# is not a failure: returns 0 when mounted, 1 when chainfs exited (status
# in $chainfs_status, output in $chainfs_log).
try_start_chainfs()
{
    local mnt=$1 deadline=$((SECONDS + CHAINFS_TIMEOUT))
    _spawn_chainfs "$@"
    until mountpoint -q "$mnt"; do
        if ! _running "$chainfs_pid"; then
            _wait_exit "$chainfs_pid"
            return 1
        fi
        ((SECONDS < deadline)) || fail "$mnt not mounted after ${CHAINFS_TIMEOUT}s"
        sleep 0.02
    done
}

# _pid_of MOUNTPOINT: the unreaped daemon serving MOUNTPOINT.
_pid_of()
{
    local pid
    for pid in "${!_daemon_mount[@]}"; do
        [[ ${_daemon_mount[$pid]} == "$1" ]] && { echo "$pid"; return; }
    done
    fail "no chainfs of ours serves $1"
}

# stop_chainfs MOUNTPOINT: unmount with fusermount3 -u, wait for the
# daemon, and assert that it exited with status 0.
stop_chainfs()
{
    local mnt=$1 pid out deadline=$((SECONDS + CHAINFS_TIMEOUT))
    pid=$(_pid_of "$mnt")
    # The kernel may still hold the last file handle for a moment after a
    # process that used the mount exits: retry while busy.
    until out=$(fusermount3 -u "$mnt" 2>&1); do
        [[ $out == *busy* ]] || fail "fusermount3 -u $mnt: $out"
        ((SECONDS < deadline)) || fail "fusermount3 -u $mnt: $out"
        sleep 0.05
    done
    _wait_exit "$pid" || fail "chainfs (PID $pid) still running ${CHAINFS_TIMEOUT}s after unmount"
    assert_eq "$chainfs_status" 0 "chainfs exit status after unmount"
    ! mountpoint -q "$mnt" || fail "$mnt still mounted"
}

# signal_chainfs SIGNAL MOUNTPOINT: send a signal and wait for the daemon
# to exit; its status is in $chainfs_status.
signal_chainfs()
{
    local sig=$1 mnt=$2 pid
    pid=$(_pid_of "$mnt")
    kill "-$sig" "$pid"
    _wait_exit "$pid" || fail "chainfs (PID $pid) still running ${CHAINFS_TIMEOUT}s after SIG$sig"
}

# expect_refusal REGEX ARGS...: chainfs given ARGS must refuse to start:
# non-zero exit, one line of output matching REGEX (grep -E), nothing
# mounted and nothing under the test directory modified.
expect_refusal()
{
    local pattern=$1 mnt=$tmpdir/mnt-refused before after lines
    local deadline=$((SECONDS + CHAINFS_TIMEOUT))
    shift
    before=$(tree_state "$tmpdir")
    _spawn_chainfs "$mnt" "$@"
    while _running "$chainfs_pid"; do
        if mountpoint -q "$mnt"; then
            stop_chainfs "$mnt"
            fail "chainfs mounted although it should refuse: $*"
        fi
        ((SECONDS < deadline)) || fail "chainfs neither refused nor mounted in ${CHAINFS_TIMEOUT}s"
        sleep 0.02
    done
    _wait_exit "$chainfs_pid"
    [[ $chainfs_status -ne 0 ]] || fail "chainfs exited 0 although it should refuse: $*"
    ! mountpoint -q "$mnt" || fail "$mnt is mounted after a refusal"
    lines=$(wc -l <"$chainfs_log")
    [[ $lines -eq 1 ]] ||
        fail "expected a one-line error, got $lines lines: $(cat "$chainfs_log")"
    grep -qE -- "$pattern" "$chainfs_log" ||
        fail "error does not mention '$pattern': $(cat "$chainfs_log")"
    after=$(tree_state "$tmpdir")
    [[ $before == "$after" ]] ||
        fail "files changed although chainfs refused: $(diff <(echo "$before") <(echo "$after"))"
    echo "refused (status $chainfs_status): $(cat "$chainfs_log")"
}

# ---- the randomized differential test --------------------------------------

# run_fuzz TOP GRAIN SEED NOPS [LOWER...]: mount TOP's chain, run
# chainfs-fuzz-io on it against a model made from `qemu-img convert`,
# unmount, and check that the images are clean, that the chain now reads
# as the model, and that the LOWER layers were not touched.
run_fuzz()
{
    local top=$1 grain=$2 seed=$3 nops=$4 lower_before
    shift 4
    requires_tool chainfs-fuzz-io
    to_raw "$top" before.raw
    lower_before=$(md5sum "$@" </dev/null)
    start_chainfs mnt -d "vm=$top"
    "$CHAINFS_TOOLS/chainfs-fuzz-io" -g "$grain" -d model.raw \
        mnt/vm before.raw "$seed" "$nops" ||
        fail "chainfs-fuzz-io found a difference (seed $seed)"
    stop_chainfs mnt
    qemu_check "$top"
    to_raw "$top" after.raw
    assert_equal_files after.raw model.raw \
        "after unmount, $top differs from the model"
    [[ $# -eq 0 ]] || assert_eq "$(md5sum "$@")" "$lower_before" \
        "backing layers modified"
}
