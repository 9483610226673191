#!/usr/bin/env bash
# stream base= on-error=stop: writes into the top (a fault layer) fail
# with ENOSPC: JOB_ERROR operation=write action=stop, the job pauses with
# io-status nospace, the chain is unchanged; clearing the fault (a new
# config renamed over the old) and `resume` finish the stream exactly:
# the top backs onto base.raw, on disk too.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/error-policy-functions.sh"
requires qemu-img qemu-io
requires_fuse

make_fault_chain '[rule full]' op=write,zeroes errno=ENOSPC after=2
start_chainfs mnt -d vm=disk.conf,format=fault
ctl_ok mnt/.jobs/ctl stream id=s1 disk=vm base="$tmpdir/base.raw" on-error=stop
wait_event mnt 'JOB_ERROR id=s1 operation=write action=stop$'
wait_job_state mnt s1 paused
assert_eq "$(job_key mnt s1 io-status)" nospace "io-status while stopped"
sleep 0.3    # not synchronisation: a stopped job must stay paused meanwhile
assert_eq "$(job_state mnt s1)" paused "state a moment later"
assert_chain mnt vm "$tmpdir/disk.conf" "$tmpdir/mid.qcow2" "$tmpdir/base.raw"
assert_equal_files mnt/vm model.raw "the disk while stopped"

fault_conf disk.conf top.qcow2 qcow2
ctl_ok mnt/.jobs/s1/ctl resume
wait_job_state mnt s1 concluded
assert_eq "$(job_key mnt s1 result)" completed "result (error: $(job_key mnt s1 error))"
assert_chain mnt vm "$tmpdir/disk.conf" "$tmpdir/base.raw"
assert_equal_files mnt/vm model.raw "the disk after the stream"
stop_chainfs mnt
qemu_check top.qcow2
assert_eq "$(backing_of top.qcow2)" "$tmpdir/base.raw" "top's backing on disk"
assert_same_as_model top.qcow2
