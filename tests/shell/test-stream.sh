#!/usr/bin/env bash
# stream without base= flattens the whole chain into the top while a
# writer writes: the job concludes by itself (completed), .chains lists
# only the top, the top's header has no backing file, the top reads as
# the writer's model, and the layers below are not modified.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io md5sum
requires_fuse

head -c 32M /dev/urandom >base.raw
qcow2_create mid.qcow2 32M 65536 "$tmpdir/base.raw" raw
qemu_io mid.qcow2 "write -P 0x81 4M 4M" "write -z 12M 1M"
qcow2_create top.qcow2 32M 65536 "$tmpdir/mid.qcow2" qcow2
qemu_io top.qcow2 "write -P 0x82 6M 1M" "write -P 0x83 20M 64k"
to_raw top.qcow2 before.raw
lower_md5=$(md5sum base.raw mid.qcow2)
start_chainfs mnt -d vm=top.qcow2

start_writer mnt/vm before.raw 31 40000
ctl_ok mnt/.jobs/ctl stream id=s1 disk=vm speed=16M
assert_eq "$ctl_reply" "ok id=s1" "reply to stream"
assert_eq "$(job_key mnt s1 type)" stream "type"
wait_job_state mnt s1 concluded
writer_running
assert_eq "$(job_key mnt s1 result)" completed "result of s1"
assert_eq "$(job_events mnt s1)" "created running waiting pending concluded JOB_COMPLETED" "events of s1"
assert_chain mnt vm "$tmpdir/top.qcow2"
assert_eq "$(qemu_chain_paths_shared top.qcow2 | paste -sd' ')" "$tmpdir/top.qcow2" \
    "qemu-img's chain of the top while mounted"
wait_writer
stop_chainfs mnt

assert_eq "$(qemu-img info --output=json top.qcow2 | grep -c backing)" 0 "backing keys in top.qcow2's header"
qemu_check top.qcow2
qemu_check mid.qcow2
assert_same_as_model top.qcow2
assert_eq "$(md5sum base.raw mid.qcow2)" "$lower_md5" "base.raw and mid.qcow2 modified"
