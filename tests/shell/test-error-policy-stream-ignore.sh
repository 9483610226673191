#!/usr/bin/env bash
# stream on-error=ignore: writes into the top (a fault layer) fail with
# EIO a few times: JOB_ERROR operation=write action=ignore, the chunks are
# retried, the stream completes, the top no longer has a backing file and
# reads exactly as the chain did.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/error-policy-functions.sh"
requires qemu-img qemu-io
requires_fuse

make_fault_chain '[rule flaky]' op=write,zeroes errno=EIO after=2 count=4
start_chainfs mnt -d vm=disk.conf,format=fault
ctl_ok mnt/.jobs/ctl stream id=s1 disk=vm on-error=ignore
wait_job_state mnt s1 concluded
assert_eq "$(job_key mnt s1 result)" completed "result (error: $(job_key mnt s1 error))"
grep -q 'JOB_ERROR id=s1 operation=write action=ignore$' mnt/.jobs/events ||
    fail "no JOB_ERROR action=ignore: $(cat mnt/.jobs/events)"
assert_no_event mnt 'JOB_ERROR id=s1 .*action=(report|stop)'
assert_chain mnt vm "$tmpdir/disk.conf"
assert_equal_files mnt/vm model.raw "the disk after the stream"
stop_chainfs mnt
qemu_check top.qcow2
assert_eq "$(backing_of top.qcow2)" "" "top's backing on disk"
assert_same_as_model top.qcow2
