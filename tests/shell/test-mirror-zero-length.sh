#!/usr/bin/env bash
# A mirror of a zero-length disk goes ready at once and complete switches
# the disk to the (empty) target, raw and qcow2 alike.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img
requires_fuse

qcow2_create empty.qcow2 0 65536
: >empty.raw
start_chainfs mnt -d vm=empty.qcow2 -d r=empty.raw
ctl=mnt/.jobs/ctl
assert_eq "$(stat -c %s mnt/vm)" 0 "size of vm"

ctl_ok $ctl mirror id=m1 disk=vm target=$tmpdir/t1.qcow2
wait_job_state mnt m1 ready
assert_eq "$(job_key mnt m1 len)" 0 "len of m1"
ctl_ok $ctl complete m1
wait_job_state mnt m1 concluded
assert_eq "$(job_key mnt m1 result)" completed "result of m1"
assert_eq "$(job_events mnt m1)" \
    "created running ready JOB_READY waiting pending concluded JOB_COMPLETED" "events of m1"
assert_chain mnt vm "$tmpdir/t1.qcow2"

ctl_ok $ctl mirror id=m2 disk=r target=$tmpdir/t2.raw format=raw
wait_job_state mnt m2 ready
ctl_ok $ctl complete m2
wait_job_state mnt m2 concluded
assert_eq "$(job_key mnt m2 result)" completed "result of m2"
assert_chain mnt r "$tmpdir/t2.raw"
assert_eq "$(awk '{ print $2, $3 }' mnt/.chains/r)" "raw 0" ".chains/r"
assert_eq "$(stat -c %s mnt/vm) $(stat -c %s mnt/r)" "0 0" "sizes after the pivots"
stop_chainfs mnt

qemu_check t1.qcow2
assert_eq "$(qemu-img info --output=json t1.qcow2 | sed -n 's/^ *"virtual-size": \([0-9]*\),*$/\1/p')" 0 \
    "virtual size of t1.qcow2"
assert_eq "$(stat -c %s t2.raw)" 0 "size of t2.raw"
