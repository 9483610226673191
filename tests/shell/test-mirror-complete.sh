#!/usr/bin/env bash
# mirror sync=full while a writer runs: the job goes ready, complete
# switches the disk to the target (.chains lists only the target) with no
# write lost, the target reads as the writer's model after unmount and is
# clean, and the events come in QEMU's order.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io
requires_fuse

head -c 32M /dev/urandom >base.raw
qcow2_create top.qcow2 32M 65536 "$tmpdir/base.raw" raw
qemu_io top.qcow2 "write -P 0x5a 1M 3M" "write -z 8M 1M"
to_raw top.qcow2 before.raw
base_md5=$(md5sum base.raw)
start_chainfs mnt -d vm=top.qcow2

start_writer mnt/vm before.raw 11 16000
ctl_ok mnt/.jobs/ctl mirror id=m1 disk=vm target=$tmpdir/t.qcow2
assert_eq "$ctl_reply" "ok id=m1" "reply to mirror"
wait_job_state mnt m1 ready
writer_running
assert_eq "$(job_key mnt m1 type)" mirror "type"
assert_eq "$(job_key mnt m1 result)" none "result while ready"
ctl_ok mnt/.jobs/m1/ctl complete
wait_job_state mnt m1 concluded
assert_eq "$(job_key mnt m1 result)" completed "result"
assert_chain mnt vm "$tmpdir/t.qcow2"
awk '{ print $1, $2, $3 }' mnt/.chains/vm | grep -qx "0 qcow2 33554432" ||
    fail ".chains/vm: $(cat mnt/.chains/vm)"
wait_writer
assert_eq "$(job_events mnt m1)" \
    "created running ready JOB_READY waiting pending concluded JOB_COMPLETED" "events of m1"
to_raw mnt/vm mounted.raw
assert_equal_files mounted.raw model.raw "the disk after the writer"
pid=$chainfs_pid
stop_chainfs mnt
! _running "$pid" || fail "daemon $pid still running"

qemu_check t.qcow2
qemu_check top.qcow2
assert_eq "$(qemu_chain_paths t.qcow2 | paste -sd' ')" "$tmpdir/t.qcow2" "target has no backing"
assert_same_as_model t.qcow2
assert_eq "$(md5sum base.raw)" "$base_md5" "base.raw modified"
