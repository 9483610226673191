#!/usr/bin/env bash
# commit (intermediate) on-error=report into a base that is a fault layer
# (mid.qcow2's backing format is "fault") whose rule fails writes with
# ENOSPC after a few: the commit fails (JOB_ERROR operation=write
# action=report, `error:` names the base and the reason, result failed),
# the chain is unchanged in the mount and in top's header, and the disk
# reads as before.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/error-policy-functions.sh"
requires qemu-img qemu-io
requires_fuse

make_fault_base_chain '[rule full]' op=write,zeroes errno=ENOSPC after=2
start_chainfs mnt -d vm=top.qcow2
assert_chain mnt vm "$tmpdir/top.qcow2" "$tmpdir/mid.qcow2" "$tmpdir/base.conf"
assert_equal_files mnt/vm model.raw "the disk before the commit"
ctl_ok mnt/.jobs/ctl commit id=c1 disk=vm top="$tmpdir/mid.qcow2" \
    base="$tmpdir/base.conf" on-error=report
assert_failed_job mnt c1 "write to $tmpdir/base.conf: No space left on device"
grep -qx '[0-9.]* JOB_ERROR id=c1 operation=write action=report' mnt/.jobs/events ||
    fail "no JOB_ERROR operation=write action=report: $(cat mnt/.jobs/events)"
assert_chain mnt vm "$tmpdir/top.qcow2" "$tmpdir/mid.qcow2" "$tmpdir/base.conf"
assert_equal_files mnt/vm model.raw "the disk after the failed commit"
assert_eq "$(echo $("$io" mnt/vm write 7M 4K 1 fsync))" "ok ok" "guest write"
dd_write model.raw $((7 << 20)) 4096 1
stop_chainfs mnt
qemu_check_alone top.qcow2
qemu_check_alone mid.qcow2
assert_eq "$(header_backing top.qcow2)" "$tmpdir/mid.qcow2 qcow2" "top's header"
start_chainfs mnt -d vm=top.qcow2
assert_equal_files mnt/vm model.raw "the disk mounted again"
stop_chainfs mnt
