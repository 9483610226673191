#!/usr/bin/env bash
# cancel once a mirror to an NBD export is ready: result completed, the
# disk stays on its image, and the export is a consistent copy of the
# disk (the usual end of a migration: the other side takes over).
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/nbd-functions.sh"
requires qemu-img qemu-io qemu-nbd
requires_fuse

head -c 16M /dev/urandom >base.raw
qcow2_create top.qcow2 16M 65536 "$tmpdir/base.raw" raw
qemu_io top.qcow2 "write -P 0x5a 1M 3M" "write -z 8M 1M"
to_raw top.qcow2 before.raw
qcow2_create t.qcow2 16M 65536
start_qemu_nbd "$tmpdir/t.sock" t.qcow2
uri=$(unix_uri "$tmpdir/t.sock")
start_chainfs mnt --allow-remote -d vm=top.qcow2

start_writer mnt/vm before.raw 12 12000
ctl_ok mnt/.jobs/ctl mirror id=m1 disk=vm "target=$uri" mode=existing
wait_job_state mnt m1 ready
writer_running
wait_writer
ctl_ok mnt/.jobs/m1/ctl cancel
wait_job_state mnt m1 concluded
assert_eq "$(job_key mnt m1 result)" completed "result"
assert_chain mnt vm "$tmpdir/top.qcow2" "$tmpdir/base.raw"
to_raw mnt/vm mounted.raw
assert_equal_files mounted.raw model.raw "the disk after the writer"
stop_chainfs mnt
stop_server "$nbd_pid"
qemu_check t.qcow2
assert_same_as_model t.qcow2
