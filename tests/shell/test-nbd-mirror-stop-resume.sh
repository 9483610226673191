#!/usr/bin/env bash
# The NBD server dies in the middle of a mirror with on-target-error=stop:
# the job pauses with io-status failed (a JOB_ERROR event); once the
# server is back, resume reconnects and retries, the job goes ready and
# completes, and the exported image reads as the writer's model.
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

start_writer mnt/vm before.raw 5 30000
ctl_ok mnt/.jobs/ctl mirror id=m1 disk=vm "target=$uri" mode=existing \
    on-target-error=stop speed=8M
wait_job_progress mnt m1
stop_server "$nbd_pid"
wait_event mnt "JOB_ERROR id=m1 operation=write action=stop"
wait_job_state mnt m1 paused
assert_eq "$(job_key mnt m1 io-status)" failed "io-status while stopped"

start_qemu_nbd "$sock" t.qcow2
ctl_ok mnt/.jobs/ctl resume m1
ctl_ok mnt/.jobs/m1/ctl speed=0
wait_job_state mnt m1 ready
assert_eq "$(job_key mnt m1 io-status)" ok "io-status after resume"
wait_writer
ctl_ok mnt/.jobs/m1/ctl complete
wait_job_state mnt m1 concluded
assert_eq "$(job_key mnt m1 result)" completed "result"
to_raw mnt/vm mounted.raw
assert_equal_files mounted.raw model.raw "the disk after the writer"
stop_chainfs mnt
stop_server "$nbd_pid"
qemu_check t.qcow2
assert_same_as_model t.qcow2
