#!/bin/bash
# chainfs vs qemu-storage-daemon (FUSE export + QMP block jobs) on the same
# images in the same run.  Prints a table of medians and writes it to
# tests/bench/results/latest.md.  Not part of the test command.
#
# Environment (defaults in brackets):
#   BENCH_SIZE     virtual size of the chain [1G]
#   RUNS           runs per metric, the table shows the median [3]
#   BENCH_RUNTIME  seconds per fio job [5]
#   BENCH_SECTIONS which parts to run: any of "io bitmaps jobs durable
#                  backup fleece nbd scale big deep" [all of them]
#   BENCH_BIG_SIZE virtual size of the sparse chain for the RSS rows [1T]
#   BENCH_DIR      scratch directory, needs ~3x BENCH_SIZE free [/var/tmp/chainfs-bench]
#   BENCH_DROP_CACHES=1  drop the page cache before each measurement [0]
#   BENCH_NO_DEPS=1      do not run tests/bench/deps.sh
#   BENCH_RESULTS  where latest.md and latest-samples.txt go [tests/bench/results]
#   CHAINFS        a chainfs binary to use instead of building build-bench/
#   QSD            the qemu-storage-daemon binary [qemu-storage-daemon]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)

SIZE_ARG=${BENCH_SIZE:-1G}
RUNS=${RUNS:-3}
RUNTIME=${BENCH_RUNTIME:-5}
SECTIONS=${BENCH_SECTIONS:-io bitmaps jobs durable backup fleece nbd scale big deep}
BIG_ARG=${BENCH_BIG_SIZE:-1T}
WORK=${BENCH_DIR:-/var/tmp/chainfs-bench}
QSD=${QSD:-qemu-storage-daemon}
TIMEOUT=${BENCH_TIMEOUT:-600}
POLL=0.01

SIZE=$(numfmt --from=iec "$SIZE_ARG")
BIG=$(numfmt --from=iec "$BIG_ARG")

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---- setup ---------------------------------------------------------------

[[ ${BENCH_NO_DEPS:-0} == 1 ]] || "$HERE/deps.sh"
for tool in qemu-img qemu-io fio socat fusermount3 "$QSD" cc; do
    command -v "$tool" >/dev/null || die "$tool not found (run tests/bench/deps.sh)"
done
if [[ " $SECTIONS " == *" nbd "* ]]; then
    for tool in qemu-nbd nbdkit; do
        command -v "$tool" >/dev/null || die "$tool not found (run tests/bench/deps.sh)"
    done
fi

if [[ -z ${CHAINFS:-} ]]; then
    log "building chainfs (meson buildtype=release in build-bench/)"
    if [[ ! -f $SRC/build-bench/build.ninja ]]; then
        meson setup "$SRC/build-bench" "$SRC" --buildtype=release \
            -Dtests=disabled >/dev/null
    fi
    ninja -C "$SRC/build-bench" fuse/chainfs >/dev/null ||
        die "building chainfs failed (ninja -C build-bench fuse/chainfs)"
    CHAINFS=$SRC/build-bench/fuse/chainfs
fi

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
RUN_DIR=$WORK/run
# One main chain per size (a chain of another size is not reused).
MAIN_CHAIN=$WORK/chain-main-$SIZE_ARG
SAMPLES=$WORK/samples.txt
: >"$SAMPLES"
GEN=$WORK/gen-extents
cc -O2 -Wall -Wextra -o "$GEN" "$HERE/gen-extents.c"

DPID=
QMP_PID=
NBD_PID=

# Stops whatever this script started, by PID, and unmounts its mounts.
cleanup()
{
    local m
    if [[ -n $QMP_PID ]]; then
        kill "$QMP_PID" 2>/dev/null || true
    fi
    if [[ -n $DPID ]]; then
        kill -TERM "$DPID" 2>/dev/null || true
        wait "$DPID" 2>/dev/null || true
    fi
    if [[ -n $NBD_PID ]]; then
        kill -TERM "$NBD_PID" 2>/dev/null || true
        wait "$NBD_PID" 2>/dev/null || true
    fi
    if [[ -d $RUN_DIR ]]; then
        for m in $(awk -v d="$RUN_DIR/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts); do
            fusermount3 -u -z "$m" 2>/dev/null || true
        done
        rm -rf "$RUN_DIR"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Output piped into head: still clean up, without dying again on the pipe.
trap 'trap "" PIPE; exit 141' PIPE

# drop_caches [force]: sync and drop the page cache, if BENCH_DROP_CACHES=1
# or force (the durable job rows always start cold).
drop_caches()
{
    if [[ ${BENCH_DROP_CACHES:-0} == 1 || ${1:-} == force ]]; then
        sync
        echo 3 >/proc/sys/vm/drop_caches
    fi
}

now_ns() { date +%s%N; }

is_mounted() { awk -v p="$1" '$2 == p { found = 1 } END { exit !found }' /proc/self/mounts; }

# wait_for DESCRIPTION COMMAND...: poll COMMAND until it succeeds.
wait_for()
{
    local what=$1 deadline=$((SECONDS + TIMEOUT))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || die "timed out waiting for $what"
        [[ -z $DPID ]] || kill -0 "$DPID" 2>/dev/null || die "daemon died waiting for $what"
        sleep "$POLL"
    done
}

# ---- the images ----------------------------------------------------------

# make_chain DIR SIZE KIND: base/mid/top.qcow2 (relative backing names, so
# copies work anywhere) and guest.raw, what a guest sees.
#   KIND=main: base ~50% allocated in extents of 4K..2M, mid and top each
#              overwrite ~10% in extents of 4K..256K.
#   KIND=big:  base ~20 ppm, top ~10 ppm in 64K extents (no mid, no raw).
make_chain()
{
    local dir=$1 size=$2 kind=$3
    [[ -f $dir/done ]] && return 0
    log "creating the $kind chain ($(numfmt --to=iec "$size")) in $dir"
    rm -rf "$dir"
    mkdir -p "$dir"
    (
        cd "$dir"
        qemu-img create -q -f qcow2 base.qcow2 "$size"
        if [[ $kind == main ]]; then
            "$GEN" 1 "$size" 500000 4096 2097152 0x11 | qemu-io -f qcow2 base.qcow2 >/dev/null
            qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
            "$GEN" 2 "$size" 100000 4096 262144 0x52 | qemu-io -f qcow2 mid.qcow2 >/dev/null
            qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
            "$GEN" 3 "$size" 100000 4096 262144 0x93 | qemu-io -f qcow2 top.qcow2 >/dev/null
            qemu-img convert -O raw top.qcow2 guest.raw
        else
            "$GEN" 4 "$size" 20 65536 65536 0x11 | qemu-io -f qcow2 base.qcow2 >/dev/null
            qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
            "$GEN" 5 "$size" 10 65536 65536 0x93 | qemu-io -f qcow2 top.qcow2 >/dev/null
        fi
        touch done
    )
}

# fresh KIND: a new copy of a chain in $RUN_DIR/w; sets D.
fresh()
{
    local src=$WORK/chain-$1 f
    [[ $1 != main ]] || src=$MAIN_CHAIN
    cleanup_run
    D=$RUN_DIR/w
    mkdir -p "$D"
    for f in base mid top; do
        [[ -f $src/$f.qcow2 ]] && cp --sparse=always "$src/$f.qcow2" "$D/"
    done
    # Write the copies out now: a job that flushes (chainfs flushes base
    # before rewriting a header) must not pay for the setup's dirty pages.
    sync
    return 0
}

cleanup_run()
{
    local m
    if [[ -d $RUN_DIR ]]; then
        for m in $(awk -v d="$RUN_DIR/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts); do
            fusermount3 -u "$m"
        done
        rm -rf "$RUN_DIR"
    fi
}

# layers: the layer names of the copy in $D, top first.
layers()
{
    local f
    for f in top mid base; do
        [[ -f $D/$f.qcow2 ]] && echo "$f"
    done
    return 0
}

# ---- the daemons ---------------------------------------------------------
# start_DAEMON starts it on the chain in $D and sets DPID and FILE (the disk
# as a raw file).  stop_daemon reads VmHWM (peak RSS, KiB) into HWM just
# before stopping it.

# CHAINFS_ARGS: more options for chainfs (the nbd rows: --allow-remote).
CHAINFS_ARGS=
start_chainfs()
{
    mkdir -p "$D/mnt"
    # shellcheck disable=SC2086 # CHAINFS_ARGS is a list of options
    "$CHAINFS" -f $CHAINFS_ARGS -d "vm=$D/top.qcow2" "$D/mnt" 2>>"$D/daemon.log" &
    DPID=$!
    FILE=$D/mnt/vm
    wait_for "the chainfs mount" is_mounted "$D/mnt"
}

# QSD_WRITABLE: qemu-storage-daemon 7.2's FUSE export takes the RESIZE
# permission when writable, and every block job unshares RESIZE on the node
# it works on, so jobs fail with "Permission conflict" under a writable
# export.  The job rows use a read-only export (nothing writes to the disk
# during them anyway); the I/O rows a writable one.
QSD_WRITABLE=on
# QSD_EXPORT=off: start without the export (the fleece rows add theirs
# over QMP, above a filter); FILE is still where it will be.
QSD_EXPORT=on

# The graph is given node by node so that commit can name its layers; the
# export is the same as qemu-storage-daemon(1)'s example.
start_qsd()
{
    local args=() l prev=
    for l in $(layers | tac); do
        args+=(--blockdev "driver=file,node-name=$l-file,filename=$D/$l.qcow2")
        # The bottom layer has no backing file, so it needs no backing=.
        args+=(--blockdev "driver=qcow2,node-name=$l,file=$l-file${prev:+,backing=$prev}")
        prev=$l
    done
    FILE=$D/export
    touch "$FILE"
    if [[ $QSD_EXPORT == on ]]; then
        args+=(--export "type=fuse,id=e,node-name=top,mountpoint=$FILE,writable=$QSD_WRITABLE")
    fi
    "$QSD" "${args[@]}" \
        --chardev "socket,path=$D/qmp.sock,server=on,wait=off,id=qmp" \
        --monitor chardev=qmp >>"$D/daemon.log" 2>&1 &
    DPID=$!
    if [[ $QSD_EXPORT == on ]]; then
        wait_for "the qemu-storage-daemon export" is_mounted "$FILE"
    fi
    qmp_open "$D/qmp.sock"
}

stop_daemon()
{
    HWM=$(awk '/^VmHWM:/ { print $2 }' "/proc/$DPID/status")
    kill -TERM "$DPID"
    local rc=0
    wait "$DPID" || rc=$?
    DPID=
    qmp_close
    ((rc == 0)) || die "daemon exited with status $rc: $(tail -3 "$D/daemon.log")"
}

# ---- QMP over socat ------------------------------------------------------

qmp_open()
{
    local line
    wait_for "the QMP socket" test -S "$1"
    coproc QMP { exec socat - "UNIX-CONNECT:$1"; }
    # bash sets QMP_PID for the coprocess.
    read -r -t 30 line <&"${QMP[0]}" || die "no QMP greeting"
    qmp '{"execute":"qmp_capabilities"}' >/dev/null
}

qmp_close()
{
    if [[ -n ${QMP_PID:-} ]]; then
        kill "$QMP_PID" 2>/dev/null || true
        wait "$QMP_PID" 2>/dev/null || true
        QMP_PID=
    fi
}

# qmp JSON: send a command, print its one-line reply (events are skipped);
# fails if the reply is an error.
qmp()
{
    local line
    printf '%s\n' "$1" >&"${QMP[1]}"
    while read -r -t "$TIMEOUT" line <&"${QMP[0]}"; do
        line=${line%$'\r'}
        case $line in
        '{"return"'*) printf '%s\n' "$line"; return 0 ;;
        '{"error"'*) log "QMP $1: $line"; return 1 ;;
        esac
    done
    die "no QMP reply to $1"
}

# qmp_job_status ID: the job's status from query-jobs (empty if gone).  The
# script runs one job at a time, so the first status is that job's.
qmp_job_status()
{
    local reply
    reply=$(qmp '{"execute":"query-jobs"}')
    [[ $reply == *"\"id\": \"$1\""* ]] || return 0
    printf '%s\n' "$reply" | grep -o '"status": *"[a-z-]*"' | sed 's/.*"\([a-z-]*\)"$/\1/' | head -1
}

qmp_job_is() { [[ $(qmp_job_status "$1") == "$2" ]]; }

# qmp_job_error ID: the job's error, if any.
# (The coprocess's descriptors are not inherited by a pipeline's
# subshells, hence the variable.)
qmp_job_error()
{
    local reply
    reply=$(qmp '{"execute":"query-jobs"}')
    grep -o '"error": *"[^"]*"' <<<"$reply" || true
}

# ---- chainfs control plane -----------------------------------------------

CTL_ERR=
# ctl COMMAND: write it to .jobs/ctl; fails with CTL_ERR set to the reason.
ctl()
{
    local ctlfile=$D/mnt/.jobs/ctl
    CTL_ERR=
    if [[ ! -e $ctlfile ]]; then
        CTL_ERR="no .jobs/ctl in chainfs yet"
        return 1
    fi
    if ! CTL_ERR=$({ printf '%s\n' "$1" >"$ctlfile"; } 2>&1); then
        if [[ $CTL_ERR == *"Operation not supported"* ]]; then
            CTL_ERR="not implemented in chainfs yet"
        else
            CTL_ERR="${CTL_ERR##*: }: $(tail -1 "$D/mnt/.jobs/last-error" 2>/dev/null)"
        fi
        return 1
    fi
}

cfs_job_is()
{
    grep -qx "state: $2" "$D/mnt/.jobs/$1/status" 2>/dev/null
}

cfs_job_result() { sed -n 's/^result: //p' "$D/mnt/.jobs/$1/status"; }

# ---- recording -----------------------------------------------------------

# record KEY WHO VALUE: one sample (WHO: chainfs, qsd, ceil, ceil_direct).
record() { printf '%s %s %s\n' "$1" "$2" "$3" >>"$SAMPLES"; }

# na KEY WHO REASON: the metric cannot be measured for WHO.
na() { printf '%s %s n/a:%s\n' "$1" "$2" "${3// /_}" >>"$SAMPLES"; }

# ---- I/O rows ------------------------------------------------------------

# name rw bs numjobs
IO_ROWS=(
    "seqread read 1M 1"
    "seqwrite write 1M 1"
    "randread1 randread 4k 1"
    "randread4 randread 4k 4"
    "randwrite1 randwrite 4k 1"
    "randwrite4 randwrite 4k 4"
)

# fio_run FILE RW BS NUMJOBS DIRECT: prints MiB/s for sequential rows,
# IOPS for random ones.
fio_run()
{
    local file=$1 rw=$2 bs=$3 jobs=$4 direct=$5 out
    # invalidate=0: the buffered ceiling reads the page cache the daemons'
    # own (buffered) host I/O hits, instead of a cache fio just emptied.
    out=$(fio --name=bench --filename="$file" --allow_file_create=0 \
        --ioengine=psync --direct="$direct" --invalidate=0 \
        --rw="$rw" --bs="$bs" \
        --numjobs="$jobs" --size="$SIZE" --runtime="$RUNTIME" --time_based \
        --randrepeat=1 --group_reporting --minimal) ||
        die "fio $rw on $file failed"
    # terse v3: read KiB/s $7, read IOPS $8, write KiB/s $48, write IOPS $49
    awk -F';' -v rw="$rw" 'NR == 1 {
        if (rw == "read")       printf "%.1f\n", $7 / 1024
        else if (rw == "write") printf "%.1f\n", $48 / 1024
        else if (rw == "randread") print $8
        else print $49 }' <<<"$out"
}

io_one()
{
    local who=$1 name=$2 rw=$3 bs=$4 jobs=$5 v
    fresh main
    if [[ $who == ceil* ]]; then
        cp --sparse=always "$MAIN_CHAIN/guest.raw" "$D/plain.raw"
        drop_caches
        if [[ $who == ceil ]]; then
            v=$(fio_run "$D/plain.raw" "$rw" "$bs" "$jobs" 0)
        else
            v=$(fio_run "$D/plain.raw" "$rw" "$bs" "$jobs" 1)
        fi
        record "$name" "$who" "$v"
        return
    fi
    drop_caches
    "start_$who"
    v=$(fio_run "$FILE" "$rw" "$bs" "$jobs" 1)
    stop_daemon
    record "$name" "$who" "$v"
    record "rss_$name" "$who" "$HWM"
}

# ---- dirty bitmap rows ---------------------------------------------------

# The cost of marking: the same fio write jobs with 0, 1 and 8 enabled,
# non-persistent dirty bitmaps of default granularity on the disk, added
# after the daemon started and before fio.  name rw bs numjobs
BITMAP_ROWS=(
    "seqwrite write 1M 1"
    "randwrite1 randwrite 4k 1"
)
BITMAP_COUNTS=(0 1 8)

# bitmaps_add_DAEMON N: adds bitmaps b1..bN; fails with BM_NA set when the
# daemon cannot.
bitmaps_add_chainfs()
{
    local i
    for ((i = 1; i <= $1; i++)); do
        if ! ctl "bitmap-add disk=vm name=b$i"; then
            BM_NA=$CTL_ERR
            return 1
        fi
    done
}

bitmaps_add_qsd()
{
    local i
    for ((i = 1; i <= $1; i++)); do
        qmp '{"execute":"block-dirty-bitmap-add","arguments":{"node":"top","name":"b'$i'","persistent":false}}' \
            >/dev/null || die "qemu-storage-daemon refused block-dirty-bitmap-add b$i"
    done
}

# bitmaps_check_DAEMON N: after the writes, all N bitmaps are recording and
# dirty (otherwise the row would not measure marking).
bitmaps_check_chainfs()
{
    local i st
    for ((i = 1; i <= $1; i++)); do
        st=$(cat "$D/mnt/.bitmaps/vm/b$i/status") || die "chainfs: no bitmap b$i"
        grep -qx 'recording: yes' <<<"$st" && grep -qx 'count: [1-9][0-9]*' <<<"$st" ||
            die "chainfs: bitmap b$i did not record the writes: $(tr '\n' ' ' <<<"$st")"
    done
}

bitmaps_check_qsd()
{
    local reply n
    reply=$(qmp '{"execute":"query-named-block-nodes","arguments":{"flat":true}}')
    n=$(grep -o '{"name": "b[0-9]*"[^}]*}' <<<"$reply" |
        grep '"recording": true' | grep -c '"count": [1-9]') || true
    ((n == $1)) || die "qemu-storage-daemon: $n of $1 bitmaps recorded the writes"
}

bitmap_one()
{
    local who=$1 name=$2 rw=$3 bs=$4 jobs=$5 n=$6 key=bm_$2_$6 v
    BM_NA=
    fresh main
    drop_caches
    "start_$who"
    if ! "bitmaps_add_$who" "$n"; then
        stop_daemon
        log "$who bitmap-add: n/a: $BM_NA"
        na "$key" "$who" "$BM_NA"
        return
    fi
    v=$(fio_run "$FILE" "$rw" "$bs" "$jobs" 1)
    "bitmaps_check_$who" "$n"
    stop_daemon
    record "$key" "$who" "$v"
}

# ---- job rows ------------------------------------------------------------

# Every job starts on a fresh copy; the time runs from the command to the
# job's conclusion (for mirror and active commit, `complete` is sent as soon
# as the job is ready).  The result is checked with qemu-img compare against
# guest.raw once the daemon has stopped.

JOBS=(mirror stream commit_mid commit_active)

job_chainfs()
{
    local job=$1 t0 t1 id cmd ready=0 res
    case $job in
    mirror|bigmirror) id=m1; ready=1; cmd="mirror id=m1 disk=vm target=$D/target.qcow2" ;;
    nbd_mirror*) id=m1; ready=1
        cmd="mirror id=m1 disk=vm target=nbd+unix:///?socket=$NBD_SOCK mode=existing" ;;
    stream|bigstream) id=s1; cmd="stream id=s1 disk=vm" ;;
    commit_mid) id=c1; cmd="commit id=c1 disk=vm top=$D/mid.qcow2 base=$D/base.qcow2" ;;
    commit_active|bigcommit) id=c2; ready=1; cmd="commit id=c2 disk=vm base=$D/base.qcow2" ;;
    esac
    t0=$(now_ns)
    if ! ctl "$cmd"; then
        JOB_NA="$CTL_ERR"
        return 0
    fi
    if ((ready)); then
        wait_for "chainfs $job ready" cfs_job_is "$id" ready
        printf 'complete\n' >"$D/mnt/.jobs/$id/ctl"
    fi
    wait_for "chainfs $job concluded" cfs_job_is "$id" concluded
    t1=$(now_ns)
    res=$(cfs_job_result "$id")
    [[ $res == completed ]] || die "chainfs $job: result $res: $(cat "$D/mnt/.jobs/$id/status")"
    JOB_TIME=$(((t1 - t0) / 1000))
}

job_qsd()
{
    local job=$1 t0 t1 id cmd ready=0 err
    case $job in
    mirror|bigmirror) id=m1; ready=1
        cmd='"execute":"drive-mirror","arguments":{"job-id":"m1","device":"top","target":"'$D/target.qcow2'","format":"qcow2","sync":"full","mode":"absolute-paths","auto-dismiss":false}' ;;
    stream|bigstream) id=s1
        cmd='"execute":"block-stream","arguments":{"job-id":"s1","device":"top","auto-dismiss":false}' ;;
    commit_mid) id=c1
        cmd='"execute":"block-commit","arguments":{"job-id":"c1","device":"top","top-node":"mid","base-node":"base","auto-dismiss":false}' ;;
    commit_active|bigcommit) id=c2; ready=1
        cmd='"execute":"block-commit","arguments":{"job-id":"c2","device":"top","base-node":"base","auto-dismiss":false}' ;;
    esac
    t0=$(now_ns)
    if [[ $job == nbd_mirror* ]]; then
        # Connecting is part of the job, as for chainfs.
        id=m1; ready=1
        cmd='"execute":"blockdev-mirror","arguments":{"job-id":"m1","device":"top","target":"nbd-target","sync":"full","auto-dismiss":false}'
        qmp '{"execute":"blockdev-add","arguments":{"driver":"nbd","node-name":"nbd-target","server":{"type":"unix","path":"'$NBD_SOCK'"}}}' \
            >/dev/null || die "qemu-storage-daemon refused blockdev-add nbd"
    fi
    qmp "{$cmd}" >/dev/null || die "qemu-storage-daemon refused $job"
    if ((ready)); then
        wait_for "qsd $job ready" qmp_job_is "$id" ready
        qmp '{"execute":"block-job-complete","arguments":{"device":"'$id'"}}' >/dev/null
    fi
    wait_for "qsd $job concluded" qmp_job_is "$id" concluded
    t1=$(now_ns)
    err=$(qmp_job_error "$id")
    [[ -z $err ]] || die "qsd $job failed: $err"
    qmp '{"execute":"job-dismiss","arguments":{"id":"'$id'"}}' >/dev/null
    JOB_TIME=$(((t1 - t0) / 1000))
}

# check_job JOB: the images on disk read as guest.raw.
check_job()
{
    local img
    case $1 in
    mirror) img=$D/target.qcow2 ;;
    stream|commit_mid) img=$D/top.qcow2 ;;
    commit_active) img=$D/base.qcow2 ;;
    esac
    qemu-img compare -q -f qcow2 -F raw "$img" "$MAIN_CHAIN/guest.raw" ||
        die "$1: $(basename "$img") differs from the original guest view"
    if [[ $1 == stream ]] && qemu-img info "$img" | grep -q '^backing file:'; then
        die "stream: top.qcow2 still has a backing file"
    fi
}

# sync_images: fsync every image file of the copy in $D (what a job wrote
# that is not durable yet gets written now); adds the time it took, in
# microseconds, to JOB_TIME.  Run while the daemon is still up, so that a
# daemon's own flush at exit does not count for it.
sync_images()
{
    local t0 t1
    t0=$(now_ns)
    sync "$D"/*.qcow2
    t1=$(now_ns)
    SYNC_TIME=$(((t1 - t0) / 1000))
    JOB_TIME=$((JOB_TIME + SYNC_TIME))
}

# job_one WHO JOB [durable]: one job row.  durable: the page cache is
# dropped first and the time runs until the job's result is durable (the
# job's end plus a sync of the image files, on both sides).
job_one()
{
    local who=$1 job=$2 durable=${3:-} key=$2
    JOB_NA= JOB_TIME= SYNC_TIME=
    fresh main
    if [[ -n $durable ]]; then
        key=dur_$job
        drop_caches force
    else
        drop_caches
    fi
    QSD_WRITABLE=off "start_$who"
    "job_$who" "$job"
    [[ -z $durable || -n $JOB_NA ]] || sync_images
    stop_daemon
    if [[ -n $JOB_NA ]]; then
        log "chainfs $job: n/a: $JOB_NA"
        na "$key" "$who" "$JOB_NA"
        [[ -n $durable ]] || na "rss_$job" "$who" "$JOB_NA"
        return
    fi
    check_job "$job"
    record "$key" "$who" "$(awk -v u="$JOB_TIME" 'BEGIN { printf "%.3f", u / 1e6 }')"
    if [[ -n $durable ]]; then
        record "sync_$job" "$who" "$(awk -v u="$SYNC_TIME" 'BEGIN { printf "%.3f", u / 1e6 }')"
    else
        record "rss_$job" "$who" "$HWM"
    fi
}

# ---- backup rows ---------------------------------------------------------

# backup sync=full of the disk to a new qcow2, DIR/backup.qcow2, as job b1.
# qemu-storage-daemon's target is created with qemu-img and added with
# blockdev-add before the clock starts (blockdev-backup needs a node);
# chainfs creates its own as part of the command.  Both check, after the
# daemon stopped, that the target is guest.raw: the copy is fresh, so the
# disk at the backup's instant is guest.raw, whatever the guest wrote
# later.

BACKUP_SPEED=4M     # the backup held active during the fio row

backup_prepare_chainfs() { :; }

backup_prepare_qsd()
{
    qemu-img create -q -f qcow2 "$D/backup.qcow2" "$SIZE"
    qmp '{"execute":"blockdev-add","arguments":{"driver":"qcow2","node-name":"bt","file":{"driver":"file","filename":"'$D/backup.qcow2'"}}}' \
        >/dev/null || die "qemu-storage-daemon refused blockdev-add of the backup target"
}

# backup_start_DAEMON SPEED: start b1 (SPEED in bytes/s, 0: unlimited);
# fails with JOB_NA set when the daemon cannot.
backup_start_chainfs()
{
    if ! ctl "backup id=b1 disk=vm target=$D/backup.qcow2 speed=$1"; then
        JOB_NA=$CTL_ERR
        return 1
    fi
}

backup_start_qsd()
{
    qmp '{"execute":"blockdev-backup","arguments":{"job-id":"b1","device":"top","target":"bt","sync":"full","speed":'$1',"auto-dismiss":false}}' \
        >/dev/null || die "qemu-storage-daemon refused blockdev-backup"
}

# backup_set_speed_DAEMON SPEED: fails if the job ended meanwhile.
backup_set_speed_chainfs() { ctl "set-speed b1 $1"; }

backup_set_speed_qsd()
{
    qmp '{"execute":"block-job-set-speed","arguments":{"device":"b1","speed":'$1'}}' >/dev/null
}

backup_running_chainfs() { cfs_job_is b1 running; }
backup_running_qsd() { qmp_job_is b1 running; }

backup_wait_chainfs()
{
    local res
    wait_for "chainfs backup concluded" cfs_job_is b1 concluded
    res=$(cfs_job_result b1)
    [[ $res == completed ]] || die "chainfs backup: result $res: $(cat "$D/mnt/.jobs/b1/status")"
}

backup_wait_qsd()
{
    local err
    wait_for "qsd backup concluded" qmp_job_is b1 concluded
    err=$(qmp_job_error b1)
    [[ -z $err ]] || die "qsd backup failed: $err"
    qmp '{"execute":"job-dismiss","arguments":{"id":"b1"}}' >/dev/null
}

# backup_one WHO WHAT: WHAT=time: the time from the command to the job's
# conclusion, no guest I/O (read-only export on qemu-storage-daemon, as
# for the job rows); WHAT=iops: fio's random 4K writes while a backup
# limited to BACKUP_SPEED runs (writable export), then the limit is lifted
# and the backup completes.
backup_one()
{
    local who=$1 what=$2 t0 t1 v speed
    JOB_NA=
    speed=$(numfmt --from=iec "$BACKUP_SPEED")
    fresh main
    drop_caches
    if [[ $what == time ]]; then
        QSD_WRITABLE=off "start_$who"
    else
        "start_$who"
    fi
    "backup_prepare_$who"
    t0=$(now_ns)
    if [[ $what == time ]]; then
        speed=0
    fi
    if ! "backup_start_$who" "$speed"; then
        stop_daemon
        log "$who backup: n/a: $JOB_NA"
        [[ $what == time ]] && { na backup "$who" "$JOB_NA"; na rss_backup "$who" "$JOB_NA"; }
        [[ $what == iops ]] && na backup_iops "$who" "$JOB_NA"
        return
    fi
    if [[ $what == iops ]]; then
        v=$(fio_run "$FILE" randwrite 4k 1 1)
        # The guest's copies before its writes are not limited: on a small
        # disk they may finish the backup within the run.
        if "backup_running_$who"; then
            # It may end meanwhile: the wait below tells.
            "backup_set_speed_$who" 0 || true
        else
            log "warning: $who: the backup ended during the fio run (a small BENCH_SIZE?)"
        fi
    fi
    "backup_wait_$who"
    t1=$(now_ns)
    stop_daemon
    qemu-img compare -q -f qcow2 -F raw "$D/backup.qcow2" "$MAIN_CHAIN/guest.raw" ||
        die "backup ($who, $what): backup.qcow2 differs from the disk at the instant"
    if [[ $what == time ]]; then
        record backup "$who" "$(awk -v u="$(((t1 - t0) / 1000))" 'BEGIN { printf "%.3f", u / 1e6 }')"
        record rss_backup "$who" "$HWM"
    else
        record backup_iops "$who" "$v"
    fi
}

# ---- fleece rows ---------------------------------------------------------

# The guest's random 4K writes while a fleece (an image-fleecing view of
# the disk frozen at an instant) is active: every first write to a 64 KiB
# chunk first copies the chunk's old data into a scratch qcow2.
#   chainfs: `fleece id=f1 disk=vm` (its default store: a temporary qcow2
#            next to top.qcow2); the view is mnt/vm@f1.
#   qemu-storage-daemon: QEMU 7.2's image fleecing, started without an
#            export: a scratch qcow2 node `fl-tmp` (DIR/fleece.qcow2, new,
#            no backing), a `copy-before-write` filter `fl-cbw` above
#            `top` with `fl-tmp` as its target (on-cbw-error=break-snapshot,
#            as chainfs), a `snapshot-access` node `fl-acc` on it (the
#            view), then the writable FUSE export on `fl-cbw` (the guest's
#            disk) and a read-only one on `fl-acc` (DIR/view).
# Both are set up before the clock; afterwards each view must read as
# guest.raw (the copy is fresh, so that is the disk at the instant), and
# the fleece must still be healthy (chainfs: the job running; QEMU: the
# view reads, which fails once the snapshot broke).  The views are read
# in 64 KiB O_DIRECT requests, one chunk each: QEMU 7.2's snapshot-access
# answers a read spanning several chunks, some of them copied, with the
# disk's new data in the copied ones (a 4K or 64K read of the same range
# is right).  chainfs's view is also read with cmp's larger buffered
# requests.

# fleece_start_DAEMON: starts the daemon with a fleece on its disk; sets
# VIEW; fails with JOB_NA set when the daemon cannot.
fleece_start_chainfs()
{
    start_chainfs
    if ! ctl "fleece id=f1 disk=vm"; then
        JOB_NA=$CTL_ERR
        return 1
    fi
    VIEW=$D/mnt/vm@f1
}

fleece_start_qsd()
{
    QSD_EXPORT=off start_qsd
    qemu-img create -q -f qcow2 "$D/fleece.qcow2" "$SIZE"
    qmp '{"execute":"blockdev-add","arguments":{"driver":"qcow2","node-name":"fl-tmp","file":{"driver":"file","filename":"'$D/fleece.qcow2'"}}}' \
        >/dev/null || die "qemu-storage-daemon refused blockdev-add of the fleecing image"
    qmp '{"execute":"blockdev-add","arguments":{"driver":"copy-before-write","node-name":"fl-cbw","file":"top","target":"fl-tmp","on-cbw-error":"break-snapshot"}}' \
        >/dev/null || die "qemu-storage-daemon refused blockdev-add copy-before-write"
    qmp '{"execute":"blockdev-add","arguments":{"driver":"snapshot-access","node-name":"fl-acc","file":"fl-cbw"}}' \
        >/dev/null || die "qemu-storage-daemon refused blockdev-add snapshot-access"
    qmp '{"execute":"block-export-add","arguments":{"type":"fuse","id":"e","node-name":"fl-cbw","mountpoint":"'$FILE'","writable":true}}' \
        >/dev/null || die "qemu-storage-daemon refused the FUSE export of copy-before-write"
    wait_for "the qemu-storage-daemon export" is_mounted "$FILE"
    VIEW=$D/view
    touch "$VIEW"
    qmp '{"execute":"block-export-add","arguments":{"type":"fuse","id":"v","node-name":"fl-acc","mountpoint":"'$VIEW'","writable":false}}' \
        >/dev/null || die "qemu-storage-daemon refused the FUSE export of snapshot-access"
    wait_for "the qemu-storage-daemon view" is_mounted "$VIEW"
}

# fleece_check_DAEMON: the fleece is still healthy (the view is compared
# with guest.raw by fleece_one); logs how much the store holds.
fleece_check_chainfs()
{
    local st
    st=$(cat "$D/mnt/.jobs/f1/status")
    grep -qx 'state: running' <<<"$st" || die "chainfs fleece not running: $(tr '\n' ' ' <<<"$st")"
    log "chainfs fleece store: $(sed -n 's/^store-bytes: //p' <<<"$st") bytes of guest data"
}

fleece_check_qsd()
{
    log "qemu-storage-daemon fleecing image: $(du -B1 "$D/fleece.qcow2" | cut -f1) bytes allocated"
}

# fleece_stop_DAEMON: end the fleece (chainfs: cancel, wait for the end).
fleece_stop_chainfs()
{
    ctl "cancel f1" || die "chainfs: cancel f1: $CTL_ERR"
    wait_for "chainfs fleece concluded" cfs_job_is f1 concluded
}

fleece_stop_qsd() { :; }

fleece_one()
{
    local who=$1 v
    JOB_NA=
    fresh main
    drop_caches
    if ! "fleece_start_$who"; then
        stop_daemon
        log "$who fleece: n/a: $JOB_NA"
        na fleece_iops "$who" "$JOB_NA"
        na rss_fleece_iops "$who" "$JOB_NA"
        return
    fi
    v=$(fio_run "$FILE" randwrite 4k 1 1)
    "fleece_check_$who"
    dd if="$VIEW" bs=64K iflag=direct status=none | cmp -s - "$MAIN_CHAIN/guest.raw" ||
        die "fleece ($who): the view (64K O_DIRECT reads) differs from the disk at the instant"
    if [[ $who == chainfs ]]; then
        cmp -s "$VIEW" "$MAIN_CHAIN/guest.raw" ||
            die "fleece ($who): the view (buffered reads) differs from the disk at the instant"
    fi
    "fleece_stop_$who"
    stop_daemon
    record fleece_iops "$who" "$v"
    record rss_fleece_iops "$who" "$HWM"
}

# ---- NBD rows ------------------------------------------------------------

# A mirror sync=full of the main chain to an NBD export on a Unix socket,
# until complete (as the mirror job row), the same server for both
# daemons, started on a fresh target before the daemon:
#   nbd_mirror:     qemu-nbd -t -f qcow2 on an empty qcow2 of the disk's
#                   size
#   nbd_mirror_lat: nbdkit's file plugin on an empty raw file, behind the
#                   delay filter (1 ms per read, write and write-zeroes):
#                   a remote server, where the requests in flight count.
NBD_ROWS=(nbd_mirror nbd_mirror_lat)
NBD_SOCK=

# nbd_server_start ROW: start ROW's server on $D/nbd.sock; sets NBD_PID.
nbd_server_start()
{
    NBD_SOCK=$D/nbd.sock
    rm -f "$NBD_SOCK"
    if [[ $1 == nbd_mirror ]]; then
        qemu-img create -q -f qcow2 "$D/target.qcow2" "$SIZE"
        qemu-nbd -t -k "$NBD_SOCK" -f qcow2 "$D/target.qcow2" \
            >>"$D/nbd.log" 2>&1 &
    else
        truncate -s "$SIZE" "$D/target.raw"
        nbdkit -f -U "$NBD_SOCK" --filter=delay file "$D/target.raw" \
            delay-read=1ms delay-write=1ms delay-zero=1ms >>"$D/nbd.log" 2>&1 &
    fi
    NBD_PID=$!
    wait_for "the NBD socket" test -S "$NBD_SOCK"
}

# nbd_server_stop: SIGTERM (qemu-nbd flushes its image) and wait.
nbd_server_stop()
{
    kill -TERM "$NBD_PID"
    wait "$NBD_PID" || true
    NBD_PID=
}

nbd_one()
{
    local who=$1 row=$2
    JOB_NA= JOB_TIME=
    fresh main
    drop_caches
    nbd_server_start "$row"
    CHAINFS_ARGS=--allow-remote QSD_WRITABLE=off "start_$who"
    "job_$who" "$row"
    stop_daemon
    nbd_server_stop
    if [[ -n $JOB_NA ]]; then
        log "chainfs $row: n/a: $JOB_NA"
        na "$row" "$who" "$JOB_NA"
        na "rss_$row" "$who" "$JOB_NA"
        return
    fi
    if [[ $row == nbd_mirror ]]; then
        qemu-img compare -q -f qcow2 -F raw "$D/target.qcow2" "$MAIN_CHAIN/guest.raw"
    else
        qemu-img compare -q -f raw -F raw "$D/target.raw" "$MAIN_CHAIN/guest.raw"
    fi || die "$row ($who): the export differs from the original guest view"
    record "$row" "$who" "$(awk -v u="$JOB_TIME" 'BEGIN { printf "%.3f", u / 1e6 }')"
    record "rss_$row" "$who" "$HWM"
}

# ---- the sparse 1 TiB chain ----------------------------------------------

big_one()
{
    local who=$1 what=$2 off
    JOB_NA= JOB_TIME=
    fresh big
    QSD_WRITABLE=off "start_$who"
    if [[ $what == open ]]; then
        # Open, then read a little from across the disk.
        for off in 0 $((BIG / 3)) $((BIG / 2)) $((BIG - 4194304)); do
            dd if="$FILE" of=/dev/null bs=1M count=4 skip=$((off / 1048576)) \
                iflag=direct status=none
        done
        stop_daemon
        record rss_bigopen "$who" "$HWM"
        return
    fi
    local key=big$what
    "job_$who" "$key"
    stop_daemon
    if [[ -n $JOB_NA ]]; then
        log "chainfs $key: n/a: $JOB_NA"
        na "$key" "$who" "$JOB_NA"
        na "rss_$key" "$who" "$JOB_NA"
        return
    fi
    case $what in
    stream)
        qemu-img info "$D/top.qcow2" | grep -q '^backing file:' &&
            die "1T stream ($who): top.qcow2 still has a backing file" ;;
    mirror)
        qemu-img compare -q "$D/target.qcow2" "$D/top.qcow2" ||
            die "1T mirror ($who): target.qcow2 differs from the disk" ;;
    commit)
        # The top is unchanged by an active commit: base must read as it.
        qemu-img compare -q "$D/base.qcow2" "$D/top.qcow2" ||
            die "1T commit ($who): base.qcow2 differs from the disk" ;;
    esac
    record "$key" "$who" "$(awk -v u="$JOB_TIME" 'BEGIN { printf "%.3f", u / 1e6 }')"
    record "rss_$key" "$who" "$HWM"
}

# ---- deep chains ---------------------------------------------------------
# A backup tool's chain: 256 qcow2 layers, each owning 3 scattered 64K
# clusters, over a base that holds the whole disk; read against the same
# disk flattened into one qcow2 (both through chainfs) and through
# qemu-storage-daemon, which opens the chain from its top and lets the
# backing files open themselves.  Then the cost of opening 1024 layers.

DEEP_LAYERS=256
DEEP_OPEN_LAYERS=1024

# mkchain: chainfs-mkchain (tests/tools/), built against the benchmark's
# library: qemu-img and qemu-io per layer would take minutes.
MKCHAIN=
build_mkchain()
{
    [[ -n $MKCHAIN ]] && return 0
    if [[ ! -f $SRC/build-bench/build.ninja ]]; then
        meson setup "$SRC/build-bench" "$SRC" --buildtype=release \
            -Dtests=disabled >/dev/null
    fi
    ninja -C "$SRC/build-bench" libchainfs.a >/dev/null ||
        die "building libchainfs.a in build-bench failed"
    MKCHAIN=$WORK/chainfs-mkchain
    # shellcheck disable=SC2046
    cc -O2 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -I"$SRC" \
        -o "$MKCHAIN" "$SRC/tests/tools/chainfs-mkchain.c" \
        "$SRC/build-bench/libchainfs.a" \
        $(pkg-config --cflags --libs glib-2.0 zlib libnbd) -lpthread ||
        die "building chainfs-mkchain failed"
}

make_deep_chains()
{
    local dir=$WORK/chain-deep-$SIZE
    if [[ ! -f $dir/done ]]; then
        build_mkchain
        log "creating the $DEEP_LAYERS-layer and $DEEP_OPEN_LAYERS-layer chains in $dir"
        rm -rf "$dir"
        mkdir -p "$dir/read" "$dir/open"
        "$MKCHAIN" -f -k 3 "$dir/read" "$DEEP_LAYERS" "$SIZE" >/dev/null
        qemu-img convert -O qcow2 "$dir/read/layer$(printf %04u $((DEEP_LAYERS - 1))).qcow2" \
            "$dir/flat.qcow2"
        "$MKCHAIN" -k 1 "$dir/open" "$DEEP_OPEN_LAYERS" "$SIZE" >/dev/null
        touch "$dir/done"
    fi
    DEEP_DIR=$dir
    DEEP_TOP=$dir/read/layer$(printf %04u $((DEEP_LAYERS - 1))).qcow2
    DEEP_OPEN_TOP=$dir/open/layer$(printf %04u $((DEEP_OPEN_LAYERS - 1))).qcow2
}

# start_deep WHO IMG: chainfs or qemu-storage-daemon, read-only, on the
# chain whose top is IMG; sets DPID and FILE.
start_deep()
{
    local who=$1 img=$2
    D=$RUN_DIR/deep
    mkdir -p "$D/mnt"
    if [[ $who == qsd ]]; then
        FILE=$D/export
        touch "$FILE"
        "$QSD" --blockdev "driver=qcow2,node-name=top,read-only=on,file.driver=file,file.filename=$img" \
            --export "type=fuse,id=e,node-name=top,mountpoint=$FILE,writable=off" \
            >>"$D/daemon.log" 2>&1 &
    else
        FILE=$D/mnt/vm
        "$CHAINFS" -f -d "vm=$img,read-only=on" "$D/mnt" 2>>"$D/daemon.log" &
    fi
    DPID=$!
    if [[ $who == qsd ]]; then
        wait_for "the qemu-storage-daemon export" is_mounted "$FILE"
    else
        wait_for "the chainfs mount" is_mounted "$D/mnt"
    fi
}

stop_deep()
{
    HWM=$(awk '/^VmHWM:/ { print $2 }' "/proc/$DPID/status")
    FDS=$(find "/proc/$DPID/fd" -mindepth 1 -maxdepth 1 | wc -l)
    kill -TERM "$DPID"
    local rc=0
    wait "$DPID" || rc=$?
    DPID=
    ((rc == 0)) || die "daemon exited with status $rc: $(tail -3 "$D/daemon.log")"
    rm -rf "$RUN_DIR/deep"
}

# deep_io WHO ROW RW BS: WHO is chainfs or qsd on the 256-layer chain, or
# flat (chainfs on the flattened disk).
deep_io()
{
    local who=$1 name=$2 rw=$3 bs=$4 img=$DEEP_TOP daemon=$1 v
    [[ $who == flat ]] && { img=$DEEP_DIR/flat.qcow2; daemon=chainfs; }
    drop_caches
    start_deep "$daemon" "$img"
    v=$(fio_run "$FILE" "$rw" "$bs" 1 1)
    stop_deep
    record "deep_$name" "$who" "$v"
}

# deep_open WHO: time from start to the first 4K read of the 1024-layer
# chain, peak RSS and open fds.
deep_open()
{
    local who=$1 t0 t1
    drop_caches
    t0=$(now_ns)
    start_deep "$who" "$DEEP_OPEN_TOP"
    dd if="$FILE" of=/dev/null bs=4k count=1 iflag=direct status=none
    t1=$(now_ns)
    stop_deep
    record deep_open "$who" "$(awk -v n="$((t1 - t0))" 'BEGIN { printf "%.3f", n / 1e9 }')"
    record rss_deep_open "$who" "$HWM"
    record fds_deep_open "$who" "$FDS"
}

# ---- 16 disks at once ----------------------------------------------------
# 16 small disks (fresh copies of one 64 MiB base/mid/top chain) in one
# daemon; on each, a writer (fio randwrite 4K, O_DIRECT, rate-limited to
# SCALE_IOPS, through the daemon's file for the disk) and a mirror
# sync=full to a new qcow2, started together.  The time runs from the
# first mirror command until all 16 mirrors have concluded (each is sent
# complete as soon as it is ready); the writers run until then.  Also
# the daemon's peak RSS and its thread count at the end.  Every target is
# checked with qemu-img check afterwards.

SCALE_DISKS=16
SCALE_SIZE_ARG=64M
SCALE_IOPS=200
SCALE_CHAIN=$WORK/chain-scale-$SCALE_SIZE_ARG

# QEMU 7.2 cannot run this row: a writable FUSE export takes the RESIZE
# permission and a mirror unshares it on its source ("Permission
# conflict"); the source must be a root node, so no filter can sit between
# the export and the mirrored node; and an NBD export of the node read back
# by the same daemon (blockdev-add of an nbd client, FUSE export on that)
# hangs in blockdev-add, the client's connect blocking the main loop that
# serves it.
SCALE_QSD_NA="QEMU 7.2: a writable FUSE export and a mirror on one node conflict (RESIZE)"

scale_one()
{
    local who=$1 i t0 t1 left fios=() st out max=0 n
    local -A fin=()
    if [[ $who == qsd ]]; then
        na scale qsd "$SCALE_QSD_NA"
        na rss_scale qsd "$SCALE_QSD_NA"
        na threads_scale qsd "$SCALE_QSD_NA"
        return
    fi
    cleanup_run
    D=$RUN_DIR/w
    local args=()
    for ((i = 1; i <= SCALE_DISKS; i++)); do
        mkdir -p "$D/d$i"
        cp --sparse=always "$SCALE_CHAIN"/{base,mid,top}.qcow2 "$D/d$i/"
        args+=(-d "vm$i=$D/d$i/top.qcow2")
    done
    sync
    drop_caches
    mkdir -p "$D/mnt"
    "$CHAINFS" -f "${args[@]}" "$D/mnt" 2>>"$D/daemon.log" &
    DPID=$!
    wait_for "the chainfs mount" is_mounted "$D/mnt"
    # The writers run until the mirrors are done (then SIGTERM).
    for ((i = 1; i <= SCALE_DISKS; i++)); do
        fio --name=w$i --filename="$D/mnt/vm$i" --allow_file_create=0 \
            --ioengine=psync --direct=1 --rw=randwrite --bs=4k \
            --rate_iops="$SCALE_IOPS" --size="$SCALE_SIZE" \
            --runtime="$TIMEOUT" --time_based --randrepeat=1 --minimal \
            >"$D/fio$i.out" 2>&1 &
        fios+=($!)
    done
    t0=$(now_ns)
    for ((i = 1; i <= SCALE_DISKS; i++)); do
        if ! ctl "mirror id=m$i disk=vm$i target=$D/d$i/target.qcow2"; then
            kill "${fios[@]}" 2>/dev/null || true
            wait "${fios[@]}" 2>/dev/null || true
            stop_daemon
            log "chainfs scale: n/a: $CTL_ERR"
            na scale chainfs "$CTL_ERR"; na rss_scale chainfs "$CTL_ERR"; na threads_scale chainfs "$CTL_ERR"
            return
        fi
    done
    left=$SCALE_DISKS
    local deadline=$((SECONDS + TIMEOUT))
    while ((left > 0)); do
        for ((i = 1; i <= SCALE_DISKS; i++)); do
            [[ -z ${fin[$i]:-} ]] || continue
            st=$(sed -n 's/^state: //p' "$D/mnt/.jobs/m$i/status")
            case $st in
            ready) [[ -n ${fin[r$i]:-} ]] || { printf 'complete\n' >"$D/mnt/.jobs/m$i/ctl"; fin[r$i]=1; } ;;
            concluded)
                [[ $(cfs_job_result "m$i") == completed ]] ||
                    die "chainfs scale: m$i: $(tr '\n' ' ' <"$D/mnt/.jobs/m$i/status")"
                fin[$i]=1
                left=$((left - 1)) ;;
            esac
        done
        n=$(find "/proc/$DPID/task" -mindepth 1 -maxdepth 1 | wc -l)
        ((n <= max)) || max=$n
        ((left == 0)) && break
        ((SECONDS < deadline)) || die "timed out waiting for $left of $SCALE_DISKS mirrors"
        kill -0 "$DPID" 2>/dev/null || die "daemon died during the scale row"
        sleep "$POLL"
    done
    t1=$(now_ns)
    THREADS=$(find "/proc/$DPID/task" -mindepth 1 -maxdepth 1 | wc -l)
    for ((i = 0; i < SCALE_DISKS; i++)); do
        kill -0 "${fios[i]}" 2>/dev/null ||
            die "chainfs scale: writer $((i + 1)) ended before the mirrors: $(tail -3 "$D/fio$((i + 1)).out")"
        kill -TERM "${fios[i]}"
    done
    # fio exits non-zero on SIGTERM: its terse line's error field (5)
    # says whether the writes went well.
    for ((i = 0; i < SCALE_DISKS; i++)); do
        wait "${fios[i]}" || true
        awk -F';' '$1 == 3 && $5 == 0 { ok = 1 } END { exit !ok }' "$D/fio$((i + 1)).out" ||
            die "chainfs scale: writer $((i + 1)) failed: $(tail -3 "$D/fio$((i + 1)).out")"
    done
    # Write IOPS of all writers together (terse v3 field 49).
    out=$(cat "$D"/fio*.out | awk -F';' 'NF > 49 { s += $49 } END { print s + 0 }')
    stop_daemon
    for ((i = 1; i <= SCALE_DISKS; i++)); do
        qemu-img check -q "$D/d$i/target.qcow2" ||
            die "chainfs scale: qemu-img check of d$i/target.qcow2 failed"
    done
    log "chainfs scale: $(awk -v n="$((t1 - t0))" 'BEGIN { printf "%.2f", n / 1e9 }') s, writers $out IOPS in all, threads $THREADS at the end ($max at most)"
    record scale chainfs "$(awk -v n="$((t1 - t0))" 'BEGIN { printf "%.3f", n / 1e9 }')"
    record rss_scale chainfs "$HWM"
    record threads_scale chainfs "$THREADS"
}

# ---- main ----------------------------------------------------------------

want() { [[ " $SECTIONS " == *" $1 "* ]]; }

make_chain "$MAIN_CHAIN" "$SIZE" main
want big && make_chain "$WORK/chain-big-$BIG" "$BIG" big
want big && ln -sfn "chain-big-$BIG" "$WORK/chain-big"
want deep && make_deep_chains
SCALE_SIZE=$(numfmt --from=iec "$SCALE_SIZE_ARG")
want scale && make_chain "$SCALE_CHAIN" "$SCALE_SIZE" main

START=$(date '+%Y-%m-%d %H:%M:%S %z')
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for ((run = 1; run <= RUNS; run++)); do
    # Alternate who goes first, so that drift in the machine's load does not
    # always favour the same daemon.
    if ((run % 2)); then order=(chainfs qsd); else order=(qsd chainfs); fi
    if want io; then
        for row in "${IO_ROWS[@]}"; do
            read -r name rw bs jobs <<<"$row"
            for who in "${order[@]}" ceil ceil_direct; do
                log "run $run/$RUNS: $name on $who"
                io_one "$who" "$name" "$rw" "$bs" "$jobs"
            done
        done
    fi
    if want bitmaps; then
        # The bitmap counts alternate too (0 1 8, then 8 1 0).
        counts=()
        for n in "${BITMAP_COUNTS[@]}"; do
            if ((run % 2)); then counts+=("$n"); else counts=("$n" "${counts[@]}"); fi
        done
        for row in "${BITMAP_ROWS[@]}"; do
            read -r name rw bs jobs <<<"$row"
            for n in "${counts[@]}"; do
                for who in "${order[@]}"; do
                    log "run $run/$RUNS: $name with $n bitmap(s) on $who"
                    bitmap_one "$who" "$name" "$rw" "$bs" "$jobs" "$n"
                done
            done
        done
    fi
    if want jobs; then
        for job in "${JOBS[@]}"; do
            for who in "${order[@]}"; do
                log "run $run/$RUNS: $job on $who"
                job_one "$who" "$job"
            done
        done
    fi
    if want durable; then
        for job in "${JOBS[@]}"; do
            for who in "${order[@]}"; do
                log "run $run/$RUNS: $job until durable on $who"
                job_one "$who" "$job" durable
            done
        done
    fi
    if want backup; then
        for what in time iops; do
            for who in "${order[@]}"; do
                log "run $run/$RUNS: backup ($what) on $who"
                backup_one "$who" "$what"
            done
        done
    fi
    if want fleece; then
        for who in "${order[@]}"; do
            log "run $run/$RUNS: rand write 4K during a fleece on $who"
            fleece_one "$who"
        done
    fi
    if want nbd; then
        for row in "${NBD_ROWS[@]}"; do
            for who in "${order[@]}"; do
                log "run $run/$RUNS: $row on $who"
                nbd_one "$who" "$row"
            done
        done
    fi
    if want deep; then
        for row in "seqread read 1M" "randread1 randread 4k"; do
            read -r name rw bs <<<"$row"
            for who in "${order[@]}" flat; do
                log "run $run/$RUNS: $DEEP_LAYERS-layer chain $name on $who"
                deep_io "$who" "$name" "$rw" "$bs"
            done
        done
        for who in "${order[@]}"; do
            log "run $run/$RUNS: $DEEP_OPEN_LAYERS-layer chain opened by $who"
            deep_open "$who"
        done
    fi
    if want scale; then
        for who in "${order[@]}"; do
            log "run $run/$RUNS: $SCALE_DISKS disks, a writer and a mirror each, on $who"
            scale_one "$who"
        done
    fi
    if want big; then
        for what in open stream mirror commit; do
            for who in "${order[@]}"; do
                log "run $run/$RUNS: $BIG_ARG chain $what on $who"
                big_one "$who" "$what"
            done
        done
    fi
done
cleanup_run

# ---- the table -----------------------------------------------------------

OUT_DIR=${BENCH_RESULTS:-$HERE/results}
mkdir -p "$OUT_DIR"
{
    echo "# chainfs vs qemu-storage-daemon"
    echo
    echo "- date: $START"
    echo "- machine: $(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r)"
    echo "- chainfs $("$CHAINFS" --version 2>&1 | head -1) ($(git -C "$SRC" describe --always --dirty 2>/dev/null || echo unknown)); $("$QSD" --version | head -1)"
    echo "- load average at start: $LOAD_START, at end: $(cut -d' ' -f1-3 /proc/loadavg) (a busy machine makes single rows swing; see latest-samples.txt)"
    echo "- chain: $SIZE_ARG qcow2 base/mid/top, $RUNS runs per metric (median), fio psync ${RUNTIME}s per job; sections: $SECTIONS"
    echo
    awk -v runs="$RUNS" -v big="$BIG_ARG" -v deep="$DEEP_LAYERS-layer" \
        -v deepopen="$DEEP_OPEN_LAYERS" -f "$HERE/table.awk" "$SAMPLES"
} | tee "$OUT_DIR/latest.md"
cp "$SAMPLES" "$OUT_DIR/latest-samples.txt"
