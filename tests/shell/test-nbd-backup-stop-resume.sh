#!/usr/bin/env bash
# The NBD server dies in the middle of a backup.  With
# on-target-error=stop the job pauses (JOB_ERROR, io-status failed); once
# the server is back, resume reconnects and retries, the job completes,
# and the export holds the instant.  With the default (report) the job
# fails with an error naming the export, and the disk is unaffected.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/error-policy-functions.sh"
source "$srcdir/tests/shell/nbd-functions.sh"
requires qemu-img qemu-io qemu-nbd
requires_fuse

head -c 32M /dev/urandom >disk.raw
cp disk.raw instant.raw
qcow2_create t.qcow2 32M 65536
sock=$tmpdir/t.sock
uri=$(unix_uri "$sock")
start_qemu_nbd "$sock" t.qcow2
start_chainfs mnt --allow-remote -d vm=disk.raw
ctl=mnt/.jobs/ctl

ctl_ok $ctl backup id=b1 disk=vm "target=$uri" mode=existing \
    on-target-error=stop speed=8M
wait_job_progress mnt b1
stop_server "$nbd_pid"
wait_event mnt "JOB_ERROR id=b1 operation=write action=stop"
wait_job_state mnt b1 paused
assert_eq "$(job_key mnt b1 io-status)" failed "io-status while stopped"
start_qemu_nbd "$sock" t.qcow2
ctl_ok $ctl resume b1
ctl_ok $ctl set-speed b1 0
wait_job_state mnt b1 concluded
assert_eq "$(job_key mnt b1 result)" completed "result of b1"
assert_eq "$(job_key mnt b1 io-status)" ok "io-status after resume"
ctl_ok $ctl dismiss b1
stop_server "$nbd_pid"
qemu_check t.qcow2
out=$(qemu-img compare -f qcow2 -F raw t.qcow2 instant.raw 2>&1) || fail "the export differs from the instant: $out"

# report: the job fails, the disk goes on.
start_qemu_nbd "$sock" t.qcow2
ctl_ok $ctl backup id=b2 disk=vm "target=$uri" mode=existing speed=8M
wait_job_progress mnt b2
stop_server "$nbd_pid"
assert_failed_job mnt b2 "write to $uri: Input/output error"
wait_event mnt "JOB_ERROR id=b2 operation=write action=report"
dd_write mnt/vm 0 65536 0x55
cmp -n 65536 mnt/vm <(pattern 65536 0x55) || fail "the disk after the failed backup"
stop_chainfs mnt
qemu_check t.qcow2
