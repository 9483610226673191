#!/usr/bin/env bash
# Pivots under four concurrent writers (disjoint ranges, buffered and
# O_DIRECT): two mirrors completed one after the other, then a snapshot
# and an active commit completed back into the mirror target.  No write is
# lost (each writer checks its reads throughout), and after unmount the
# final image reads as the four writers' models and is clean.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io
requires_fuse

mib=1048576
head -c 32M /dev/urandom >base.raw
qcow2_create top.qcow2 32M 65536 "$tmpdir/base.raw" raw
to_raw top.qcow2 before.raw
start_chainfs mnt -d vm=top.qcow2
ctl=mnt/.jobs/ctl

writers=()
for k in 0 1 2 3; do
    "$CHAINFS_TOOLS/chainfs-fuzz-io" -g 65536 -r $((k * 8 * mib)):$((8 * mib)) \
        -d model$k.raw mnt/vm before.raw $((70 + k)) 12000 >writer$k.log 2>&1 &
    writers+=($!)
    cleanup_fn "kill $! 2>/dev/null"
done

# run_to_ready_and_complete ID: the job gets ready, then completes.
run_to_ready_and_complete()
{
    wait_job_state mnt "$1" ready
    ctl_ok $ctl complete "$1"
    wait_job_state mnt "$1" concluded
    assert_eq "$(job_key mnt "$1" result)" completed "result of $1"
}

ctl_ok $ctl mirror id=m1 disk=vm target=$tmpdir/t1.qcow2
run_to_ready_and_complete m1
ctl_ok $ctl mirror id=m2 disk=vm target=$tmpdir/t2.qcow2 granularity=4K
run_to_ready_and_complete m2
ctl_ok $ctl snapshot disk=vm overlay=$tmpdir/s.qcow2
ctl_ok $ctl commit id=c1 disk=vm
run_to_ready_and_complete c1
for pid in "${writers[@]}"; do
    _running "$pid" || fail "a writer finished before the last pivot: raise its NOPS"
done
assert_chain mnt vm "$tmpdir/t2.qcow2"
for k in 0 1 2 3; do
    wait "${writers[k]}" || fail "writer $k saw wrong data: $(tail -n 20 writer$k.log)"
done
stop_chainfs mnt

for img in top.qcow2 t1.qcow2 t2.qcow2 s.qcow2; do
    qemu_check "$img"
done
cp before.raw model.raw
for k in 0 1 2 3; do
    dd if=model$k.raw of=model.raw bs=1M skip=$((k * 8)) seek=$((k * 8)) count=8 \
        conv=notrunc status=none
done
assert_eq "$(qemu_chain t2.qcow2)" "$tmpdir/t2.qcow2" "chain of t2.qcow2"
assert_same_as_model t2.qcow2
