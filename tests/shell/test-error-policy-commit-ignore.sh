#!/usr/bin/env bash
# active commit on-error=ignore into a base that is a fault layer (mid's
# backing format is "fault") failing writes with EIO a few times:
# JOB_ERROR operation=write action=ignore, the chunks are retried, the job
# goes ready, guest writes go on, `complete` switches the disk to the base,
# which then holds exactly what the disk held.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/error-policy-functions.sh"
requires qemu-img qemu-io
requires_fuse

make_fault_base_chain '[rule flaky]' op=write,zeroes errno=EIO after=2 count=4
start_chainfs mnt -d vm=top.qcow2
ctl_ok mnt/.jobs/ctl commit id=c1 disk=vm base="$tmpdir/base.conf" on-error=ignore
wait_job_state mnt c1 ready
grep -q 'JOB_ERROR id=c1 operation=write action=ignore$' mnt/.jobs/events ||
    fail "no JOB_ERROR action=ignore: $(cat mnt/.jobs/events)"
assert_no_event mnt 'JOB_ERROR id=c1 .*action=(report|stop)'
assert_eq "$(echo $("$io" mnt/vm write 7M 4K 1 write 1M 4K 2))" "ok ok" "guest writes"
dd_write model.raw $((7 << 20)) 4096 1
dd_write model.raw $((1 << 20)) 4096 2
ctl_ok mnt/.jobs/c1/ctl complete
wait_job_state mnt c1 concluded
assert_eq "$(job_key mnt c1 result)" completed "result (error: $(job_key mnt c1 error))"
assert_chain mnt vm "$tmpdir/base.conf"
assert_equal_files mnt/vm model.raw "the disk after complete"
stop_chainfs mnt
assert_equal_files base.raw model.raw "the base after complete"
qemu_check_alone top.qcow2
qemu_check_alone mid.qcow2
