#!/usr/bin/env bash
# mirror to an NBD export (qemu-nbd, mode=existing) while a writer runs:
# the job goes ready, complete switches the disk to the export
# (.chains/vm is "0 nbd SIZE URI"), the disk keeps working on it, and
# after unmount the exported image reads as the writer's model, with the
# source's zeroed range sent as write-zeroes (no data in qemu-img map).
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/nbd-functions.sh"
requires qemu-img qemu-io qemu-nbd
requires_fuse

head -c 32M /dev/urandom >base.raw
qcow2_create top.qcow2 32M 65536 "$tmpdir/base.raw" raw
qemu_io top.qcow2 "write -P 0x5a 1M 3M" "write -z 8M 1M"
to_raw top.qcow2 before.raw
qcow2_create t.qcow2 32M 65536
start_qemu_nbd "$tmpdir/t.sock" t.qcow2
uri=$(unix_uri "$tmpdir/t.sock")
start_chainfs mnt --allow-remote -d vm=top.qcow2

start_writer mnt/vm before.raw 11 16000
ctl_ok mnt/.jobs/ctl mirror id=m1 disk=vm "target=$uri" mode=existing
wait_job_state mnt m1 ready
writer_running
ctl_ok mnt/.jobs/m1/ctl complete
wait_job_state mnt m1 concluded
assert_eq "$(job_key mnt m1 result)" completed "result"
assert_eq "$(cat mnt/.chains/vm)" "0 nbd 33554432 $uri" ".chains/vm"
wait_writer
to_raw mnt/vm mounted.raw
assert_equal_files mounted.raw model.raw "the disk after the writer"
stop_chainfs mnt
stop_server "$nbd_pid"

qemu_check t.qcow2
assert_same_as_model t.qcow2
qemu_check top.qcow2
# 8M..9M was zeroed in the source and the writer's 64K blocks may have
# landed there since: whatever of it still reads as zero is not data.
map=$(qemu-img map --output=json t.qcow2)
if cmp -s <(head -c 9M model.raw | tail -c 1M) <(head -c 1M /dev/zero); then
    ! grep -q '"start": 8388608, "length": [0-9]*, "depth": 0, "present": true, "zero": false, "data": true' <<<"$map" ||
        fail "the zeroed range was written as data: $map"
fi
