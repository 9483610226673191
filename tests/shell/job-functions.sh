# shellcheck shell=bash
# Helpers for the block-job tests (test-mirror-*.sh, test-stream*.sh,
# test-commit-*.sh); source it after functions.sh and ctl-functions.sh.

requires_tool chainfs-fuzz-io

# job_events MOUNT ID: ID's events on one line, oldest first: the state
# of each JOB_STATE event, the name of every other event.
job_events()
{
    awk -v id="id=$2" '$3 == id {
        if ($2 == "JOB_STATE") { sub(/^state=/, "", $4); print $4 } else print $2
    }' "$1/.jobs/events" | paste -sd' '
}

# job_key MOUNT ID KEY: one value from the job's status file.
job_key()
{
    sed -n "s/^$3: //p" "$1/.jobs/$2/status"
}

# wait_job_progress MOUNT ID [BYTES]: poll the status until the job's
# offset is past BYTES (default 0: it has copied something) and check
# that it is still running (else it ended too early: lower its speed);
# fails after CHAINFS_TIMEOUT seconds.
wait_job_progress()
{
    local mnt=$1 id=$2 min=${3:-0} offset state
    local deadline=$((SECONDS + CHAINFS_TIMEOUT))
    until offset=$(job_key "$mnt" "$id" offset); ((${offset:-0} > min)); do
        state=$(job_state "$mnt" "$id")
        [[ $state != concluded && $state != null ]] ||
            fail "job $id $state at offset $offset: $(cat "$mnt/.jobs/$id/status")"
        ((SECONDS < deadline)) ||
            fail "job $id not past offset $min after ${CHAINFS_TIMEOUT}s: $(cat "$mnt/.jobs/$id/status")"
        sleep 0.02
    done
    state=$(job_state "$mnt" "$id")
    [[ $state == running ]] ||
        fail "job $id is $state already at offset $offset: lower its speed"
}

# start_writer DISK REFERENCE SEED NOPS [FUZZ-ARGS]: run chainfs-fuzz-io
# on DISK in the background, its model of the disk initialized from the
# raw file REFERENCE and dumped to model.raw at the end; sets writer_pid.
start_writer()
{
    local disk=$1 ref=$2 seed=$3 nops=$4
    shift 4
    "$CHAINFS_TOOLS/chainfs-fuzz-io" -g 65536 "$@" -d model.raw \
        "$disk" "$ref" "$seed" "$nops" >writer.log 2>&1 &
    writer_pid=$!
    cleanup_fn "kill $writer_pid 2>/dev/null"
}

# writer_running: the writer has not finished yet (else the test's
# timing assumptions do not hold: raise its NOPS).
writer_running()
{
    _running "$writer_pid" || fail "the writer finished too early: raise its NOPS"
}

# writer_writes: how many write(2)s the writer has completed so far (syscw
# in /proc/PID/io: it writes nothing but the disk before it ends).
writer_writes()
{
    local io
    io=$(cat "/proc/$writer_pid/io" 2>/dev/null) ||
        fail "cannot read /proc/$writer_pid/io (no task I/O accounting?)"
    sed -n 's/^syscw: //p' <<<"$io"
}

# wait_writer_writes N: poll until the writer has completed N more writes
# than when called, and is still running (else raise its NOPS); fails
# after CHAINFS_TIMEOUT seconds.
wait_writer_writes()
{
    local target deadline=$((SECONDS + CHAINFS_TIMEOUT))
    target=$(($(writer_writes) + $1))
    until (($(writer_writes) >= target)); do
        writer_running
        ((SECONDS < deadline)) ||
            fail "the writer made $(writer_writes) of $target writes in ${CHAINFS_TIMEOUT}s"
        sleep 0.01
    done
    writer_running
}

# wait_writer: wait for the writer; it must have seen no wrong data.
wait_writer()
{
    wait "$writer_pid" || fail "the writer saw wrong data or an error: $(tail -n 20 writer.log)"
}

# assert_chain MOUNT DISK PATH...: .chains/DISK lists exactly these layers.
assert_chain()
{
    local mnt=$1 disk=$2
    shift 2
    # The path is the rest of the line: it may hold blanks.
    assert_eq "$(sed 's/^[^ ]* [^ ]* [^ ]* //' "$mnt/.chains/$disk" | paste -sd' ')" "$*" \
        ".chains/$disk"
}

# assert_same_as_model IMG: IMG's chain reads as model.raw (qemu-img
# compare: the chain against the raw dump).
assert_same_as_model()
{
    local out
    out=$(qemu-img compare -f "$( [[ $1 == *.raw ]] && echo raw || echo qcow2)" \
        -F raw "$1" model.raw 2>&1) || fail "$1 differs from the writer's model: $out"
}

# qemu_chain IMG: the chain qemu-img sees from IMG, absolute paths, top
# first, on one line (paths may hold blanks; -U: the image may be in use).
qemu_chain()
{
    qemu-img info -U --backing-chain --output=json "$1" |
        sed -n 's/^ *"filename": "\(.*\)",$/\1/p' | xargs -r -d '\n' realpath | paste -sd' '
}

# own_extents IMG: the data ranges of IMG's own layer (depth 0 in
# qemu-img map), adjacent ones merged, "OFFSET LENGTH ..." on one line.
own_extents()
{
    qemu-img map -U --output=json "$1" | grep '"depth": 0' | grep '"data": true' |
        sed 's/.*"start": \([0-9]*\), "length": \([0-9]*\).*/\1 \2/' |
        awk 'n && $1 == start + len { len += $2; next }
             n { printf "%d %d\n", start, len }
             { start = $1; len = $2; n = 1 }
             END { if (n) printf "%d %d\n", start, len }' | paste -sd' '
}
