#!/usr/bin/env bash
# SIGKILL the daemon at random moments while chainfs-crash-writer writes,
# punches holes and fsyncs.  After every kill: each image passes
# `qemu-img check` (leaked clusters allowed, never corruption), every
# write acknowledged before an fsync returned reads back (and each sector
# holds a value some request wrote, nothing else), the chain mounts again,
# and chainfs reads what qemu-img reads.  Chains: a lone qcow2 with 512 B
# clusters (allocation and refcount growth at every turn), qcow2 with 64K
# clusters over raw (copy-on-write from the backing file), and qcow2 with
# 4K clusters and 1-bit refcounts over a qcow2.
#
# CRASH_ITERATIONS (default 51) is the total number of kills, spread over
# the three chains; the seeds are fixed (CRASH_SEED, default 1).
source "$(dirname "$0")/functions.sh"
requires_fuse
requires qemu-img qemu-io
requires_tool chainfs-crash-writer
writer=$CHAINFS_TOOLS/chainfs-crash-writer
iterations=${CRASH_ITERATIONS:-51}
RANDOM=${CRASH_SEED:-1}

# crash_loop COUNT SEED_BASE TOP [LOWER...]: COUNT kills on TOP's chain;
# the LOWER layers must come out unchanged.
crash_loop()
{
    local count=$1 seed_base=$2 top=$3 i seed wpid deadline lower_sums delay
    shift 3
    lower_sums=$(md5sum "$@" </dev/null)
    to_raw "$top" initial.raw
    start_chainfs mnt -d "vm=$top"
    for ((i = 0; i < count; i++)); do
        seed=$((seed_base + i))
        rm -f sync.log
        "$writer" write mnt/vm sync.log "$seed" 2>writer.err &
        wpid=$!
        # Kill at a random moment after the first fsync (so something must
        # survive), up to 0.3 s into the run.
        deadline=$((SECONDS + CHAINFS_TIMEOUT))
        until [[ -s sync.log ]]; do
            _running "$wpid" || fail "writer exited before its first fsync: $(cat writer.err)"
            ((SECONDS < deadline)) || fail "no fsync in ${CHAINFS_TIMEOUT}s"
            sleep 0.01
        done
        delay=$(printf '0.%03d' $((RANDOM % 300)))
        sleep "$delay"
        _running "$wpid" || fail "writer died while chainfs ran: $(cat writer.err)"
        signal_chainfs KILL mnt
        wait "$wpid" && fail "writer did not notice that chainfs died"
        fusermount3 -u -z mnt 2>/dev/null || true

        qemu_check_leaks_ok "$top"
        local layer
        for layer in "$@"; do
            qemu_check "$layer"
        done
        to_raw "$top" now.raw
        "$writer" check now.raw sync.log "$seed" initial.raw >check.out 2>&1 ||
            fail "data lost or corrupted: $top, seed $seed, killed after ${delay}s: $(cat check.out)"
        echo "$top seed $seed killed after ${delay}s: $(cat check.out)"

        start_chainfs mnt -d "vm=$top"
        assert_equal_files mnt/vm now.raw "chainfs and qemu-img after a crash ($top, seed $seed)"
        mv now.raw initial.raw
    done
    stop_chainfs mnt
    # Leaks are all a crash may leave: repairing them makes the image clean.
    qemu_check_leaks_ok "$top"
    qemu-img check -q -r leaks "$top" >/dev/null 2>&1 || true
    qemu_check "$top"
    to_raw "$top" now.raw
    assert_equal_files now.raw initial.raw "$top after repairing leaks"
    assert_eq "$(md5sum "$@" </dev/null)" "$lower_sums" "backing layers modified"
}

per_chain=$(((iterations + 2) / 3))

qemu-img create -q -f qcow2 -o cluster_size=512 small.qcow2 4M
crash_loop "$per_chain" 1000 small.qcow2

qemu-img create -q -f raw base.raw 4M
qemu_io base.raw 'write -P 0x3c 0 4M'
qcow2_create over-raw.qcow2 4M 65536 base.raw raw
crash_loop "$per_chain" 2000 over-raw.qcow2 base.raw

qcow2_create mid.qcow2 4M 65536
qemu_io mid.qcow2 'write -P 0x4d 1M 2M'
qemu-img create -q -f qcow2 -o cluster_size=4096,refcount_bits=1 \
    -b mid.qcow2 -F qcow2 rc1.qcow2 4M
crash_loop "$per_chain" 3000 rc1.qcow2 mid.qcow2
