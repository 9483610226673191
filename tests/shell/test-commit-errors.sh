#!/usr/bin/env bash
# Rejected commits change nothing and say why: backing-file= with an active
# top (EINVAL), a base or top not in the chain (ENOENT), a base above or
# equal to top (EINVAL), a disk with no backing layer (EINVAL), a
# read-only disk, and a disk busy with a mirror (EBUSY naming it).
# Cancelled before ready, an active commit leaves the disk on its top.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io md5sum
requires_fuse

qcow2_create base.qcow2 32M 65536
qemu_io base.qcow2 "write -P 0xd1 0 32M"
qcow2_create mid.qcow2 32M 65536 "$tmpdir/base.qcow2" qcow2
qemu_io mid.qcow2 "write -P 0xd2 0 1M"
qcow2_create top.qcow2 32M 65536 "$tmpdir/mid.qcow2" qcow2
qemu_io top.qcow2 "write -P 0xd3 1M 24M"
qcow2_create other.qcow2 32M 65536
qcow2_create single.qcow2 32M 65536
qcow2_create ro.qcow2 32M 65536 "$tmpdir/other.qcow2" qcow2
images="base.qcow2 mid.qcow2 top.qcow2 other.qcow2 single.qcow2 ro.qcow2"
untouched="mid.qcow2 top.qcow2 other.qcow2 single.qcow2 ro.qcow2"
before=$(md5sum $untouched)
start_chainfs mnt -d vm=top.qcow2 -d one=single.qcow2 -d ro=ro.qcow2,read-only=on
ctl=mnt/.jobs/ctl
chain="$tmpdir/top.qcow2 $tmpdir/mid.qcow2 $tmpdir/base.qcow2"

ctl_error EINVAL "backing-file" $ctl commit id=c1 disk=vm backing-file=foo.qcow2
ctl_error EINVAL "backing-file" $ctl commit id=c1 disk=vm top=$tmpdir/top.qcow2 base=$tmpdir/mid.qcow2 backing-file=foo.qcow2
ctl_error ENOENT "other.qcow2" $ctl commit id=c1 disk=vm base=$tmpdir/other.qcow2
ctl_error ENOENT "nothere.qcow2" $ctl commit id=c1 disk=vm base=$tmpdir/nothere.qcow2
ctl_error ENOENT "other.qcow2" $ctl commit id=c1 disk=vm top=$tmpdir/other.qcow2
ctl_error EINVAL "base $tmpdir/top.qcow2 is not below top $tmpdir/mid.qcow2" \
    $ctl commit id=c1 disk=vm top=$tmpdir/mid.qcow2 base=$tmpdir/top.qcow2
ctl_error EINVAL "mid.qcow2" $ctl commit id=c1 disk=vm top=$tmpdir/mid.qcow2 base=$tmpdir/mid.qcow2
ctl_error EINVAL "single.qcow2" $ctl commit id=c1 disk=one
ctl_error EROFS "ro" $ctl commit id=c1 disk=ro
ctl_error ENOENT "nodisk" $ctl commit id=c1 disk=nodisk
ctl_error EINVAL "bogus" $ctl commit id=c1 disk=vm bogus=1
[[ ! -e mnt/.jobs/c1 ]] || fail "a rejected commit is listed"

# Busy with a mirror.
ctl_ok $ctl mirror id=m1 disk=vm target=$tmpdir/t.qcow2 speed=64K buf-size=64K
wait_job_state mnt m1 running
ctl_error EBUSY "job 'm1'" $ctl commit id=c1 disk=vm
ctl_error EBUSY "job 'm1'" $ctl commit id=c1 disk=vm top=$tmpdir/mid.qcow2
ctl_ok $ctl cancel m1 force
wait_job_state mnt m1 concluded
ctl_ok $ctl dismiss m1

# Active commit cancelled before ready: 25 MiB to copy at 1 byte/s after
# a first burst of at most 16 MiB (the default buf-size).
ctl_ok $ctl commit id=c1 disk=vm speed=1
wait_job_state mnt c1 running
ctl_error EINVAL "job 'c1' is in state 'running': cannot complete" $ctl complete c1
ctl_ok $ctl cancel c1
wait_job_state mnt c1 concluded
assert_eq "$(job_key mnt c1 result)" cancelled "result of c1"
events=$(job_events mnt c1)
[[ $events == *" JOB_CANCELLED" && $events != *READY* ]] || fail "events of c1: $events"
assert_chain mnt vm $chain
to_raw mnt/vm guest.raw
stop_chainfs mnt

assert_eq "$(qemu_chain top.qcow2)" "$chain" "chain on disk"
# base.qcow2 may hold part of the cancelled commit's copy.
assert_eq "$(md5sum $untouched)" "$before" "images other than base modified"
for img in $images; do
    qemu_check "$img"
done
to_raw top.qcow2 after.raw
assert_equal_files after.raw guest.raw "vm after unmount"
