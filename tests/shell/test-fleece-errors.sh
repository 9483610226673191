#!/usr/bin/env bash
# fleece refusals, each changing nothing: unknown disk (ENOENT), id in use
# (EEXIST), bad or taken names (EINVAL, EEXIST), store outside
# --allow-dir (EACCES) or existing (EEXIST), bitmap missing (ENOENT) or
# B@SNAP existing (EEXIST), unknown keys (EINVAL).  A fleece is accepted
# while another job runs on the disk, on a read-only disk, and several at
# once; and it refuses no other job.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io
requires_fuse

mkdir images other
qcow2_create images/vm.qcow2 8M 65536
qcow2_create images/ro.qcow2 8M 65536
qemu_io images/vm.qcow2 "write -P 0x11 0 1M"
start_chainfs mnt -d vm=images/vm.qcow2 -d ro=images/ro.qcow2,read-only=on \
    --allow-dir "$tmpdir/images"
ctl=mnt/.jobs/ctl

ctl_error ENOENT "no such disk 'nope'" $ctl fleece id=f disk=nope
ctl_error EINVAL "missing required key 'disk'" $ctl fleece id=f
ctl_error EINVAL "unknown key 'target'" $ctl fleece id=f disk=vm target=x
ctl_error EINVAL "name: 'a@b' is not a valid name" $ctl fleece id=f disk=vm name=a@b
ctl_error EACCES "store" $ctl fleece id=f disk=vm store=$tmpdir/other/s.qcow2
ctl_error ENOENT "bitmap.*no bitmap 'b'" $ctl fleece id=f disk=vm bitmap=b
ctl_ok $ctl bitmap-add disk=vm name=b
ctl_ok $ctl fleece id=f1 disk=vm bitmap=b
ctl_error EEXIST "job id 'f1' is in use" $ctl fleece id=f1 disk=vm
ctl_error EEXIST "the file 'vm@f1' exists" $ctl fleece id=f2 disk=vm name=f1
# b@f1 exists: a second fleece named f1 of b is refused even with a free
# file name (after f1 is cancelled).
ctl_ok $ctl cancel f1
wait_job_state mnt f1 concluded
ctl_error EEXIST "already has a bitmap 'b@f1'" $ctl fleece id=f4 disk=vm name=f1 bitmap=b
[[ ! -e mnt/vm@f1 && ! -e mnt/.jobs/f4 ]] || fail "a refused fleece left something"
assert_eq "$(listing images)" "ro.qcow2 vm.qcow2" "images after refusals"
ctl_error EINVAL "'@' is only for the bitmaps that fleece makes" $ctl bitmap-add disk=vm name=c@x

# Accepted beside other jobs, on a read-only disk, several at once.
ctl_ok $ctl mirror id=m disk=vm target=$tmpdir/images/t.qcow2 speed=64K
ctl_ok $ctl fleece id=g1 disk=vm
ctl_ok $ctl fleece id=g2 disk=vm
ctl_ok $ctl fleece id=g3 disk=ro
cmp mnt/vm@g1 mnt/vm@g2 || fail "two fleeces of one instant differ"
cmp mnt/ro@g3 mnt/ro || fail "the fleece of a read-only disk"
ctl_ok $ctl cancel m
wait_job_state mnt m concluded
# The fleeces refuse no other job on the disk.
ctl_ok $ctl snapshot disk=vm overlay=$tmpdir/images/over.qcow2
ctl_ok $ctl stream id=s disk=vm
wait_job_state mnt s concluded
assert_eq "$(job_key mnt s result)" completed "stream beside fleeces"
stop_chainfs mnt
assert_eq "$(listing images)" "over.qcow2 ro.qcow2 t.qcow2 vm.qcow2" "images after unmount"
