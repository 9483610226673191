#!/usr/bin/env bash
# A stream and an intermediate commit that run (and complete) during a
# backup do not change what the backup delivers (INTERFACE.md section 8):
# on a base <- mid <- top chain, a slow sync=full backup and a slow
# sync=top backup (a new target backed by mid) start at one instant; the
# guest writes, `commit top=mid base=base` completes, the guest writes,
# `stream` of the whole chain completes, the guest writes; then both
# backups complete and each, with its backing, compares identical to the
# disk at that instant.  The disk holds the writes, every image is clean.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io
requires_fuse

qcow2_create base.qcow2 16M 65536
qemu_io base.qcow2 "write -P 0x41 0 12M"
qcow2_create mid.qcow2 16M 65536 "$tmpdir/base.qcow2" qcow2
qemu_io mid.qcow2 "write -P 0x42 2M 6M" "write -z 10M 1M"
qcow2_create top.qcow2 16M 65536 "$tmpdir/mid.qcow2" qcow2
qemu_io top.qcow2 "write -P 0x43 5M 2M" "write -P 0x44 14M 512k"
to_raw top.qcow2 instant.raw
start_chainfs mnt -d vm=top.qcow2
ctl=mnt/.jobs/ctl

ctl_ok $ctl backup id=full disk=vm target=$tmpdir/full.qcow2 speed=1M buf-size=64K
ctl_ok $ctl backup id=top disk=vm target=$tmpdir/top-b.qcow2 sync=top speed=256K buf-size=64K
assert_eq "$(qemu_chain_paths_shared top-b.qcow2 | paste -sd' ')" \
    "$tmpdir/top-b.qcow2 $tmpdir/mid.qcow2 $tmpdir/base.qcow2" "chain of the sync=top target"
dd_write mnt/vm $((1 << 20)) 1048576 0x51
dd_write mnt/vm $((6 << 20)) 65536 0x52
ctl_ok $ctl commit id=c disk=vm top=$tmpdir/mid.qcow2 base=$tmpdir/base.qcow2
wait_job_state mnt c concluded
assert_eq "$(job_key mnt c result)" completed "result of the commit"
assert_chain mnt vm "$tmpdir/top.qcow2" "$tmpdir/base.qcow2"
dd_write mnt/vm $((3 << 20)) 1048576 0x53
dd_write mnt/vm $((15 << 20)) 4096 0x54
ctl_ok $ctl stream id=s disk=vm
wait_job_state mnt s concluded
assert_eq "$(job_key mnt s result)" completed "result of the stream"
assert_chain mnt vm "$tmpdir/top.qcow2"
dd_write mnt/vm $((9 << 20)) 2097152 0x55
dd_write mnt/vm $((14 << 20)) 65536 0x56
for id in full top; do
    [[ $(job_state mnt $id) == running ]] || fail "backup $id ended too early: lower its speed"
    ctl_ok $ctl set-speed $id 0
done
for id in full top; do
    wait_job_state mnt $id concluded
    assert_eq "$(job_key mnt $id result)" completed "result of backup $id"
done
to_raw mnt/vm now.raw
stop_chainfs mnt
cmp -s now.raw instant.raw && fail "the guest's writes did not land"
qemu_check full.qcow2
qemu_check top-b.qcow2
out=$(qemu-img compare -F raw full.qcow2 instant.raw 2>&1) || fail "sync=full target: $out"
# mid's chain still reads as before: the commit copied mid into base.
out=$(qemu-img compare -F raw top-b.qcow2 instant.raw 2>&1) || fail "sync=top target: $out"
for img in base.qcow2 mid.qcow2 top.qcow2; do
    qemu_check $img
done
out=$(qemu-img compare -F raw top.qcow2 now.raw 2>&1) || fail "the disk after unmount: $out"
