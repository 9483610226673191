#!/usr/bin/env bash
# EIO injected by nbdkit's error filter into a mirror's NBD target, while
# a writer changes the disk: with on-target-error=stop the job pauses with
# io-status failed while the errors last and finishes after resume; with
# ignore it keeps retrying and gets ready once they stop.  Behind nbdkit's
# delay filter (1 ms a request) the same mirror completes.  The oracle is
# the export read back through nbdkit after the job.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/error-policy-functions.sh"
source "$srcdir/tests/shell/nbd-functions.sh"
requires qemu-img qemu-io nbdkit
requires_fuse

head -c 16M /dev/urandom >disk.raw
cp disk.raw before.raw
start_chainfs mnt --allow-remote -d vm=disk.raw
ctl=mnt/.jobs/ctl

# export_equals SOCKET FILE: what the export holds is FILE.
export_equals()
{
    qemu-img compare -q -f raw -F raw "$(unix_uri "$1")" "$2" ||
        fail "the export on $1 differs from $2"
}

# stop: the errors pause the job; resume after they end finishes it.
inject=$tmpdir/inject
sock=$tmpdir/stop.sock
start_nbdkit "$sock" --filter=error memory 16M error-pwrite=EIO \
    error-pwrite-rate=100% "error-pwrite-file=$inject" \
    error-zero=EIO error-zero-rate=100% "error-zero-file=$inject"
touch "$inject"
start_writer mnt/vm before.raw 21 4000
ctl_ok $ctl mirror id=m1 disk=vm "target=$(unix_uri "$sock")" mode=existing \
    on-target-error=stop
wait_job_state mnt m1 paused
assert_eq "$(job_key mnt m1 io-status)" failed "io-status while the target fails"
wait_event mnt "JOB_ERROR id=m1 operation=write action=stop"
rm "$inject"
ctl_ok mnt/.jobs/m1/ctl resume
wait_job_state mnt m1 ready
wait_writer
cp model.raw before.raw
ctl_ok mnt/.jobs/m1/ctl cancel
wait_job_state mnt m1 concluded
assert_eq "$(job_key mnt m1 result)" completed "a ready mirror cancelled"
export_equals "$sock" model.raw
ctl_ok $ctl dismiss m1

# ignore: errors come and go; the job never stops and ends in sync.
sock=$tmpdir/ignore.sock
start_nbdkit "$sock" --filter=error memory 16M error-pwrite=EIO \
    error-pwrite-rate=100% "error-pwrite-file=$inject" \
    error-zero=EIO error-zero-rate=100% "error-zero-file=$inject"
touch "$inject"
start_writer mnt/vm before.raw 22 4000
ctl_ok $ctl mirror id=m2 disk=vm "target=$(unix_uri "$sock")" mode=existing \
    on-target-error=ignore
wait_event mnt "JOB_ERROR id=m2 operation=write action=ignore"
assert_eq "$(job_state mnt m2)" running "state of m2 under errors"
rm "$inject"
wait_job_state mnt m2 ready
wait_writer
cp model.raw before.raw
ctl_ok mnt/.jobs/m2/ctl cancel
wait_job_state mnt m2 concluded
export_equals "$sock" model.raw
ctl_ok $ctl dismiss m2

# 1 ms of latency on every request: the mirror completes onto the export.
sock=$tmpdir/delay.sock
start_nbdkit "$sock" --filter=delay memory 16M delay-read=1ms \
    delay-write=1ms delay-zero=1ms
start_writer mnt/vm before.raw 23 2000
ctl_ok $ctl mirror id=m3 disk=vm "target=$(unix_uri "$sock")" mode=existing
wait_job_state mnt m3 ready
ctl_ok mnt/.jobs/m3/ctl complete
wait_job_state mnt m3 concluded
assert_eq "$(job_key mnt m3 result)" completed "result of m3"
assert_eq "$(awk '{ print $2, $4 }' mnt/.chains/vm)" "nbd $(unix_uri "$sock")" \
    "the disk runs on the export"
wait_writer
assert_equal_files mnt/vm model.raw "the disk after the switch"
stop_chainfs mnt
export_equals "$sock" model.raw
