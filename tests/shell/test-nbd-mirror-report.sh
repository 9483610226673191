#!/usr/bin/env bash
# The NBD server dies in the middle of a mirror with the default policy
# (report): the job fails with an error naming the export and the I/O
# error, the disk stays on its image, and guest I/O goes on.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/error-policy-functions.sh"
source "$srcdir/tests/shell/nbd-functions.sh"
requires qemu-img qemu-io qemu-nbd
requires_fuse

head -c 32M /dev/urandom >disk.raw
cp disk.raw before.raw
qcow2_create t.qcow2 32M 65536
sock=$tmpdir/t.sock
uri=$(unix_uri "$sock")
start_qemu_nbd "$sock" t.qcow2
start_chainfs mnt --allow-remote -d vm=disk.raw

start_writer mnt/vm before.raw 6 8000
ctl_ok mnt/.jobs/ctl mirror id=m1 disk=vm "target=$uri" mode=existing speed=8M
wait_job_progress mnt m1
stop_server "$nbd_pid"
assert_failed_job mnt m1 "write to $uri: Input/output error"
wait_event mnt "JOB_ERROR id=m1 operation=write action=report"
assert_chain mnt vm "$tmpdir/disk.raw"
wait_writer
to_raw mnt/vm mounted.raw
assert_equal_files mounted.raw model.raw "the disk after the writer"
stop_chainfs mnt
cmp disk.raw model.raw || fail "disk.raw differs from the writer's model"
