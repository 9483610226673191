#!/usr/bin/env bash
# 16 disks in one mount, each with a writer and a job of its own at once
# (4 mirrors, 4 streams, 4 intermediate and 4 active commits): every job
# reaches its goal within the timeout (none starves), the daemon's threads
# stay within the documented bound (README.md, "Threads"), and afterwards
# every disk's image chain holds exactly what its writer's model says.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io
requires_fuse

DISKS=16
FUSE_THREADS=2
# The bound (README.md, "Threads"): main thread + FUSE workers + per job
# its own thread and one copy thread + the shared copy pool's 16 + a fixed
# allowance of 4 for libfuse's and glib's helpers.
BOUND=$((1 + FUSE_THREADS + 2 * DISKS + 16 + 4))
NOPS=${SCALE_NOPS:-1500}

job_of() { echo "mirror stream commit active" | cut -d' ' -f$(((($1 - 1) % 4) + 1)); }
id_of() { echo "$(job_of "$1" | cut -c1)$1"; }

args=()
for ((i = 1; i <= DISKS; i++)); do
    mkdir "d$i"
    qcow2_create "d$i/base.qcow2" 8M 65536
    qemu_io "d$i/base.qcow2" "write -P $((i + 16)) 0 8M"
    qcow2_create "d$i/mid.qcow2" 8M 65536 "$tmpdir/d$i/base.qcow2" qcow2
    qemu_io "d$i/mid.qcow2" "write -P $((i + 48)) 1M 2M"
    qcow2_create "d$i/top.qcow2" 8M 65536 "$tmpdir/d$i/mid.qcow2" qcow2
    qemu_io "d$i/top.qcow2" "write -P $((i + 80)) 2M 2M"
    to_raw "d$i/top.qcow2" "d$i/ref.raw"
    args+=(-d "vm$i=$tmpdir/d$i/top.qcow2")
done
start_chainfs mnt --threads "$FUSE_THREADS" "${args[@]}"
pid=$chainfs_pid
ctl=mnt/.jobs/ctl

max_threads=0
# sample_threads: note the daemon's thread count now.
sample_threads()
{
    local n
    n=$(find "/proc/$pid/task" -mindepth 1 -maxdepth 1 | wc -l)
    ((n <= max_threads)) || max_threads=$n
}

writers=()
for ((i = 1; i <= DISKS; i++)); do
    "$CHAINFS_TOOLS/chainfs-fuzz-io" -g 65536 -d "d$i/model.raw" \
        "mnt/vm$i" "d$i/ref.raw" "$i" "$NOPS" >"d$i/writer.log" 2>&1 &
    writers+=($!)
    cleanup_fn "kill ${writers[-1]} 2>/dev/null"
done

t0=$SECONDS
for ((i = 1; i <= DISKS; i++)); do
    id=$(id_of "$i")
    case $(job_of "$i") in
    mirror) ctl_ok $ctl mirror id=$id disk=vm$i target=$tmpdir/d$i/target.qcow2 ;;
    stream) ctl_ok $ctl stream id=$id disk=vm$i ;;
    commit) ctl_ok $ctl commit id=$id disk=vm$i top=$tmpdir/d$i/mid.qcow2 base=$tmpdir/d$i/base.qcow2 ;;
    active) ctl_ok $ctl commit id=$id disk=vm$i base=$tmpdir/d$i/base.qcow2 ;;
    esac
done
sample_threads
# Each job started while its disk's writer was still writing.
for ((i = 1; i <= DISKS; i++)); do
    _running "${writers[i - 1]}" ||
        fail "the writer of vm$i finished before the jobs started: raise NOPS"
done

# Every job reaches its goal (ready, then complete; or concluded).
deadline=$((SECONDS + CHAINFS_TIMEOUT))
left=$DISKS
declare -A done_at=()
while ((left > 0)); do
    for ((i = 1; i <= DISKS; i++)); do
        id=$(id_of "$i")
        [[ -z ${done_at[$id]:-} ]] || continue
        case $(job_state mnt "$id") in
        ready) ctl_ok mnt/.jobs/$id/ctl complete ;;
        concluded)
            [[ $(job_key mnt "$id" result) == completed ]] ||
                fail "job $id: $(cat "mnt/.jobs/$id/status")"
            done_at[$id]=$((SECONDS - t0))
            left=$((left - 1))
            ;;
        esac
    done
    sample_threads
    if ((SECONDS >= deadline)); then
        for ((i = 1; i <= DISKS; i++)); do
            id=$(id_of "$i")
            [[ -n ${done_at[$id]:-} ]] ||
                echo "job $id: $(tr '\n' ' ' <"mnt/.jobs/$id/status")" >&2
        done
        fail "$left of $DISKS jobs did not reach their goal in ${CHAINFS_TIMEOUT}s"
    fi
    sleep 0.05
done
running=0
for w in "${writers[@]}"; do
    ! _running "$w" || running=$((running + 1))
done
echo "all $DISKS jobs done in $((SECONDS - t0))s (per job: ${done_at[*]}); at most $max_threads threads (bound $BOUND); $running writers still running"
((max_threads <= BOUND)) || fail "$max_threads threads, more than the bound $BOUND"

for ((i = 1; i <= DISKS; i++)); do
    wait "${writers[i - 1]}" ||
        fail "writer of vm$i saw wrong data: $(tail -n 20 "d$i/writer.log")"
    to_raw "mnt/vm$i" "d$i/now.raw"
    assert_equal_files "d$i/now.raw" "d$i/model.raw" "vm$i after its job"
done
stop_chainfs mnt

for ((i = 1; i <= DISKS; i++)); do
    case $(job_of "$i") in
    mirror) img=d$i/target.qcow2 ;;
    stream | commit) img=d$i/top.qcow2 ;;
    active) img=d$i/base.qcow2 ;;
    esac
    qemu_check "$img"
    out=$(qemu-img compare -F raw "$img" "d$i/model.raw" 2>&1) ||
        fail "vm$i: $img differs from its writer's model: $out"
done
