#!/usr/bin/env bash
# commit (intermediate) on-error=stop into a base that is a fault layer
# (mid.qcow2's backing format is "fault") failing writes with ENOSPC: the
# job pauses (JOB_ERROR operation=write action=stop, io-status nospace),
# the chain is unchanged; clearing the fault (a new config renamed over
# the old) and `resume` finish it: top backs onto the base (mount and
# header), the base holds mid's chain exactly, the disk reads as before.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/error-policy-functions.sh"
requires qemu-img qemu-io
requires_fuse

make_fault_base_chain '[rule full]' op=write,zeroes errno=ENOSPC after=2
start_chainfs mnt -d vm=top.qcow2
ctl_ok mnt/.jobs/ctl commit id=c1 disk=vm top="$tmpdir/mid.qcow2" \
    base="$tmpdir/base.conf" on-error=stop
wait_event mnt 'JOB_ERROR id=c1 operation=write action=stop$'
wait_job_state mnt c1 paused
assert_eq "$(job_key mnt c1 io-status)" nospace "io-status while stopped"
sleep 0.3    # not synchronisation: a stopped job must stay paused meanwhile
assert_eq "$(job_state mnt c1)" paused "state a moment later"
assert_chain mnt vm "$tmpdir/top.qcow2" "$tmpdir/mid.qcow2" "$tmpdir/base.conf"
assert_equal_files mnt/vm model.raw "the disk while stopped"

fault_conf base.conf base.raw raw
ctl_ok mnt/.jobs/c1/ctl resume
wait_job_state mnt c1 concluded
assert_eq "$(job_key mnt c1 result)" completed "result (error: $(job_key mnt c1 error))"
assert_chain mnt vm "$tmpdir/top.qcow2" "$tmpdir/base.conf"
assert_equal_files mnt/vm model.raw "the disk after the commit"
stop_chainfs mnt
qemu_check_alone top.qcow2
assert_eq "$(header_backing top.qcow2)" "$tmpdir/base.conf fault" "top's header"
assert_equal_files base.raw mid.model "the base after the commit"
start_chainfs mnt -d vm=top.qcow2
assert_equal_files mnt/vm model.raw "the disk mounted again"
stop_chainfs mnt
