# shellcheck shell=bash
# Helpers for the power-loss tests (test-powerloss-*.sh); source it after
# functions.sh (and ctl-functions.sh where commands are sent).
#
# A power-loss test keeps its images in $tmpdir/img (the recorded
# directory) and its mount and reference files outside it:
#   1. set up the images in img/, then pl_snapshot (the copy to replay from);
#   2. run the workload with pl_start_chainfs (the daemon preloads
#      libchainfs-record.so) and, for the guest, pl_writer; note what was
#      acknowledged with pl_mark (img/marks.ack);
#   3. stop or kill the daemon, then pl_replay CHECK_FUNCTION: every crash
#      state chainfs-powerloss.py builds from the log is written into img/
#      in turn and CHECK_FUNCTION checks it (it calls fail on a bad state;
#      $pl_state describes the state for the message).
# Files named *.ack are oracles: replayed exactly as they were at the
# crash, never lost.
# POWERLOSS_STATES (per test, default: each test's own) and POWERLOSS_SEED
# (default 1) choose how many crash states and which.

recorder=$CHAINFS_TOOLS/libchainfs-record.so
replayer=$srcdir/tests/tools/chainfs-powerloss.py
pl_log=$tmpdir/record.log
pl_dir=$tmpdir/img

# requires_recorder: skip (77) unless the interposer loads into the daemon
# (it cannot under a sanitizer runtime that must come first).
requires_recorder()
{
    requires python3
    [[ -f $recorder ]] || skip "interposer not built: $recorder"
    local out
    out=$(CHAINFS_RECORD_PROBE=1 LD_PRELOAD=$recorder "$CHAINFS" --version 2>&1) ||
        skip "the interposer cannot be loaded into $CHAINFS: $(head -n1 <<<"$out")"
    [[ $out == *"chainfs-record: loaded"* ]] ||
        skip "the interposer is not loaded into $CHAINFS"
    mkdir -p "$pl_dir"
}

# pl_snapshot: the state of img/ before the recorded run.
pl_snapshot()
{
    rm -rf "$tmpdir/img-initial" "$pl_log"
    cp -a "$pl_dir" "$tmpdir/img-initial"
}

# _recorded CMD...: run CMD with the interposer recording img/.
_recorded()
{
    CHAINFS_RECORD_DIR=$pl_dir CHAINFS_RECORD_LOG=$pl_log LD_PRELOAD=$recorder "$@"
}

# pl_start_chainfs MOUNTPOINT ARGS...: start_chainfs, recorded.
pl_start_chainfs()
{
    CHAINFS_RECORD_DIR=$pl_dir CHAINFS_RECORD_LOG=$pl_log LD_PRELOAD=$recorder \
        start_chainfs "$@"
}

# pl_mark TEXT: append a line to img/marks.ack, in the recorded order.
pl_mark()
{
    _recorded sh -c 'printf "%s\n" "$1" >>"$2"' sh "$1" "$pl_dir/marks.ack"
}

# pl_marked TEXT: the current crash state saw the mark TEXT.
pl_marked()
{
    [[ -f $pl_dir/marks.ack ]] && grep -qxF -- "$1" "$pl_dir/marks.ack"
}

# pl_writer DISK SEED OPS: chainfs-crash-writer write on DISK, OPS
# requests, its "synced N" log in img/sync.ack (recorded, so that each
# crash state knows what had been acknowledged).  In the background:
# sets pl_writer_pid.
pl_writer()
{
    env CHAINFS_RECORD_DIR="$pl_dir" CHAINFS_RECORD_LOG="$pl_log" \
        LD_PRELOAD="$recorder" "$CHAINFS_TOOLS/chainfs-crash-writer" write \
        "$1" "$pl_dir/sync.ack" "$2" "$3" 2>"$tmpdir/writer.err" &
    pl_writer_pid=$!
    cleanup_fn "kill $pl_writer_pid 2>/dev/null"
}

# pl_wait_writer: the writer finished all its requests.
pl_wait_writer()
{
    wait "$pl_writer_pid" || fail "writer failed: $(cat "$tmpdir/writer.err")"
}

# pl_writes_survived IMG INITIAL_RAW SEED: IMG's chain holds every write
# acknowledged in this crash state's sync.ack; what it reads is left in
# $tmpdir/now.raw, the writer's verdict in $tmpdir/check.out.
pl_writes_survived()
{
    qemu-img convert -U -O raw "$1" "$tmpdir/now.raw" 2>"$tmpdir/check.out" || return 1
    "$CHAINFS_TOOLS/chainfs-crash-writer" check "$tmpdir/now.raw" \
        "$pl_dir/sync.ack" "$3" "$2" >"$tmpdir/check.out" 2>&1
}

# pl_check_image IMG: qemu-img check finds no corruption (leaks allowed).
pl_check_image()
{
    local out rc=0
    out=$(qemu-img check -U "$1" 2>&1) || rc=$?
    [[ $rc -eq 0 || $rc -eq 3 ]] ||
        fail "$pl_state: qemu-img check $1: exit $rc: $(head -c 2000 <<<"$out")"
}

# pl_replay CHECK [STATES]: check every crash state with the shell
# function CHECK; STATES defaults to POWERLOSS_STATES, else 40.  Counts
# the states in pl_states.
pl_replay()
{
    local check=$1 states=${POWERLOSS_STATES:-${2:-40}} line
    [[ -s $pl_log ]] || fail "nothing was recorded in $pl_log"
    pl_states=0
    coproc PL_REPLAY {
        python3 "$replayer" --log "$pl_log" --dir "$pl_dir" \
            --initial "$tmpdir/img-initial" --work "$tmpdir/replay-work" \
            --states "$states" --seed "${POWERLOSS_SEED:-1}" --oracle '*.ack' 2>&1
    }
    local out=${PL_REPLAY[0]} in=${PL_REPLAY[1]}
    while IFS= read -r -u "$out" line; do
        case $line in
        state\ *)
            pl_state="$test_name: $line"
            "$check"
            pl_states=$((pl_states + 1))
            echo next >&"$in" ;;
        done\ *)
            break ;;
        *)
            fail "replay: $line" ;;
        esac
    done
    [[ $line == done\ * ]] || fail "replay stopped early after $pl_states states"
    echo "$test_name: $pl_states crash states checked"
}

# ---- block jobs ---------------------------------------------------------

# pl_make_chain: img/base.qcow2 <- mid.qcow2 <- top.qcow2, 8 MiB, 64K
# clusters, data in every layer (overlapping); initial.raw = what the
# guest sees.
pl_make_chain()
{
    qcow2_create img/base.qcow2 8M 65536
    qemu_io img/base.qcow2 "write -P 0x11 0 6M"
    qcow2_create img/mid.qcow2 8M 65536 "$tmpdir/img/base.qcow2" qcow2
    qemu_io img/mid.qcow2 "write -P 0x22 1M 3M" "write -P 0x23 6M 512K"
    qcow2_create img/top.qcow2 8M 65536 "$tmpdir/img/mid.qcow2" qcow2
    qemu_io img/top.qcow2 "write -P 0x33 2M 1M" "write -P 0x34 7M 256K"
    to_raw img/top.qcow2 initial.raw
}

# pl_backing_of IMG: the backing file named in IMG's header, as an
# absolute path (empty: none).
pl_backing_of()
{
    local backing
    backing=$(qemu-img info -U --output=json "$1" |
        sed -n 's/^ *"backing-filename": "\(.*\)",*$/\1/p' | head -n1)
    [[ -z $backing ]] || realpath -m "$backing"
}

# pl_is_image IMG: IMG exists and opens as a qcow2 image.
pl_is_image()
{
    [[ -e $1 ]] && qemu-img info -U -f qcow2 "$1" >/dev/null 2>&1
}

# pl_wait_state MOUNT ID STATE: wait_job_state, failing if the job failed.
pl_wait_state()
{
    local st deadline=$((SECONDS + CHAINFS_TIMEOUT))
    while :; do
        st=$(cat "$1/.jobs/$2/status")
        [[ $st == *"state: $3"* ]] && return 0
        [[ $st == *"result: failed"* ]] && fail "job $2 failed: $st"
        ((SECONDS < deadline)) || fail "job $2 not $3 after ${CHAINFS_TIMEOUT}s: $st"
        sleep 0.01
    done
}

# _acked_fsyncs: how many fsyncs the writer acknowledged so far.
_acked_fsyncs()
{
    if [[ -f $pl_dir/sync.ack ]]; then
        wc -l <"$pl_dir/sync.ack"
    else
        echo 0
    fi
}

# pl_writer_fsyncs N: wait until a running writer acknowledged N more
# fsyncs.
pl_writer_fsyncs()
{
    local target deadline=$((SECONDS + CHAINFS_TIMEOUT))
    target=$(( $(_acked_fsyncs) + $1 ))
    while (( $(_acked_fsyncs) < target )); do
        _running "$pl_writer_pid" || fail "writer died: $(cat "$tmpdir/writer.err")"
        ((SECONDS < deadline)) || fail "writer: no $1 more fsyncs in ${CHAINFS_TIMEOUT}s"
        sleep 0.01
    done
}

# _stopped PID: every thread of PID is stopped (state T or t).
_stopped()
{
    local task stat seen=
    for task in /proc/"$1"/task/*; do
        stat=$(cat "$task/stat" 2>/dev/null) || return 1
        stat=${stat##*) }
        [[ ${stat%% *} == [Tt] ]] || return 1
        seen=1
    done
    [[ -n $seen ]]
}

# pl_pause_writer: stop the writer (SIGSTOP) and wait until every thread
# of it is stopped: then none of its requests is in flight (a task stops
# on its way back to user space, and the disk has no writeback cache: a
# write has landed in the daemon when it returns).  kill -CONT resumes it.
pl_pause_writer()
{
    local deadline=$((SECONDS + CHAINFS_TIMEOUT))
    kill -STOP "$pl_writer_pid"
    until _stopped "$pl_writer_pid"; do
        _running "$pl_writer_pid" || fail "writer died: $(cat "$tmpdir/writer.err")"
        ((SECONDS < deadline)) || fail "writer not stopped after ${CHAINFS_TIMEOUT}s"
        sleep 0.01
    done
}

# pl_writer_more N: let a writer started with OPS 0 (forever) acknowledge N
# more fsyncs, then stop it.
pl_writer_more()
{
    pl_writer_fsyncs "$1"
    kill "$pl_writer_pid"
    wait "$pl_writer_pid" 2>/dev/null || true
}
