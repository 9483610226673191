#!/usr/bin/env bash
# The NBD server dies in the middle of a mirror with on-target-error=
# ignore: the job keeps running, retrying the failed chunks (each retry
# reconnects, with a growing delay), and once the server is back it goes
# ready by itself; complete leaves the export equal to the disk.
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

start_writer mnt/vm before.raw 7 30000
ctl_ok mnt/.jobs/ctl mirror id=m1 disk=vm "target=$uri" mode=existing \
    on-target-error=ignore speed=8M
wait_job_progress mnt m1
stop_server "$nbd_pid"
wait_event mnt "JOB_ERROR id=m1 operation=write action=ignore"
# Retries wait longer and longer: a few errors, not thousands.
sleep 2    # not synchronisation: the window the errors are counted over
errors=$(grep -c "JOB_ERROR id=m1" mnt/.jobs/events)
((errors < 50)) || fail "$errors errors in 2s: the retries do not back off"
assert_eq "$(job_state mnt m1)" running "state while the server is gone"

start_qemu_nbd "$sock" t.qcow2
ctl_ok mnt/.jobs/m1/ctl speed=0
wait_job_state mnt m1 ready
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
