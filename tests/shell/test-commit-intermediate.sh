#!/usr/bin/env bash
# commit top=MID base=BASE of a 3-layer chain while a writer writes to the
# top: the job finishes by itself, the top now backs onto BASE (.chains
# and qemu-img agree; the header names BASE as backing-file= spelled it),
# the disk reads as the writer's model, MID is left untouched, and every
# image is clean.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io md5sum
requires_fuse

qcow2_create base.qcow2 32M 65536
qemu_io base.qcow2 "write -P 0xb1 0 32M"
qcow2_create mid.qcow2 32M 65536 "$tmpdir/base.qcow2" qcow2
qemu_io mid.qcow2 "write -P 0xb2 0 16M" "write -z 20M 1M" "discard 24M 64k"
qcow2_create top.qcow2 32M 65536 "$tmpdir/mid.qcow2" qcow2
qemu_io top.qcow2 "write -P 0xb3 2M 1M"
to_raw top.qcow2 before.raw
mid_md5=$(md5sum mid.qcow2)
start_chainfs mnt -d vm=top.qcow2

start_writer mnt/vm before.raw 41 40000
ctl_ok mnt/.jobs/ctl commit id=c1 disk=vm top=$tmpdir/mid.qcow2 base=$tmpdir/base.qcow2 speed=8M \
    backing-file=base.qcow2
assert_eq "$ctl_reply" "ok id=c1" "reply to commit"
assert_eq "$(job_key mnt c1 type)" commit "type"
wait_job_state mnt c1 concluded
writer_running
assert_eq "$(job_key mnt c1 result)" completed "result of c1"
assert_eq "$(job_events mnt c1)" "created running waiting pending concluded JOB_COMPLETED" "events of c1"
assert_chain mnt vm "$tmpdir/top.qcow2" "$tmpdir/base.qcow2"
assert_eq "$(qemu_chain top.qcow2)" "$tmpdir/top.qcow2 $tmpdir/base.qcow2" "qemu-img's chain while mounted"
wait_writer
stop_chainfs mnt

assert_eq "$(qemu_chain top.qcow2)" "$tmpdir/top.qcow2 $tmpdir/base.qcow2" "qemu-img's chain after unmount"
assert_eq "$(qemu-img info --output=json top.qcow2 | sed -n 's/^ *"backing-filename": "\(.*\)",*$/\1/p')" \
    base.qcow2 "backing file in top.qcow2's header (as backing-file= gave it)"
for img in base.qcow2 mid.qcow2 top.qcow2; do
    qemu_check "$img"
done
assert_same_as_model top.qcow2
assert_eq "$(md5sum mid.qcow2)" "$mid_md5" "mid.qcow2 modified"
# base now holds what mid held over it (zeroed and discarded ranges too).
qemu_io base.qcow2 "read -P 0xb2 0 16M" "read -P 0 20M 1M" "read -P 0 24M 64k" "read -P 0xb1 28M 1M"
