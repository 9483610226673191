#!/usr/bin/env bash
# stream on-error=report: the disk is a fault layer over the top, whose
# rule fails writes with ENOSPC after a few: the stream fails (JOB_ERROR
# operation=write action=report, `error:` names the top and the reason,
# result failed), the chain is unchanged (top still backs onto mid, on
# disk too) and reads as before; the disk stays usable.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/error-policy-functions.sh"
requires qemu-img qemu-io
requires_fuse

make_fault_chain '[rule full]' op=write,zeroes errno=ENOSPC after=3
start_chainfs mnt -d vm=disk.conf,format=fault
ctl_ok mnt/.jobs/ctl stream id=s1 disk=vm on-error=report
assert_failed_job mnt s1 "write to $tmpdir/disk.conf: No space left on device"
grep -qx '[0-9.]* JOB_ERROR id=s1 operation=write action=report' mnt/.jobs/events ||
    fail "no JOB_ERROR operation=write action=report: $(cat mnt/.jobs/events)"
assert_chain mnt vm "$tmpdir/disk.conf" "$tmpdir/mid.qcow2" "$tmpdir/base.raw"
assert_equal_files mnt/vm model.raw "the disk after the failed stream"
assert_eq "$(echo $("$io" mnt/vm write 7M 4K 1))" "ENOSPC" "guest write while the fault is on"
fault_conf disk.conf top.qcow2 qcow2
assert_eq "$(echo $("$io" mnt/vm write 7M 4K 1 fsync))" "ok ok" "guest write after the fault"
dd_write model.raw $((7 << 20)) 4096 1
stop_chainfs mnt
qemu_check top.qcow2
assert_eq "$(backing_of top.qcow2)" "$tmpdir/mid.qcow2" "top's backing on disk"
assert_same_as_model top.qcow2
