#!/usr/bin/env bash
# mirror on-source-error: the disk is a fault layer over its top whose
# rule fails reads of a range with EIO.  report: JOB_ERROR
# operation=read action=report, `error:` names the source and the
# reason, result failed.  stop: JOB_ERROR operation=read action=stop,
# state paused, io-status failed; clearing the fault and `resume` finish
# the mirror exactly.  The guest sees EIO in that range meanwhile and the
# disk stays usable elsewhere.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/error-policy-functions.sh"
requires qemu-img qemu-io
requires_fuse

qemu-img create -q -f raw base.raw 8M
qemu_io base.raw "write -P 0x3c 0 8M"
qcow2_create top.qcow2 8M 65536 "$tmpdir/base.raw" raw
qemu_io top.qcow2 "write -P 0x5a 2M 4M"
to_raw top.qcow2 model.raw
fault_conf disk.conf top.qcow2 qcow2 '[rule bad-sector]' op=read errno=EIO offset=3M len=4K
start_chainfs mnt -d vm=disk.conf,format=fault
assert_eq "$(echo $("$io" mnt/vm read 3M 4K read 1M 4K 60 write 5M 4K 1))" "EIO ok ok" \
    "guest I/O with the fault"
dd_write model.raw $((5 << 20)) 4096 1

ctl_ok mnt/.jobs/ctl mirror id=m1 disk=vm target="$tmpdir/t1.qcow2" on-source-error=report
assert_failed_job mnt m1 "read from $tmpdir/disk.conf: Input/output error"
grep -qx '[0-9.]* JOB_ERROR id=m1 operation=read action=report' mnt/.jobs/events ||
    fail "no JOB_ERROR operation=read action=report: $(cat mnt/.jobs/events)"
assert_chain mnt vm "$tmpdir/disk.conf" "$tmpdir/base.raw"

ctl_ok mnt/.jobs/ctl mirror id=m2 disk=vm target="$tmpdir/t2.qcow2" on-source-error=stop
wait_event mnt 'JOB_ERROR id=m2 operation=read action=stop$'
wait_job_state mnt m2 paused
assert_eq "$(job_key mnt m2 io-status)" failed "io-status while stopped"
fault_conf disk.conf top.qcow2 qcow2
ctl_ok mnt/.jobs/m2/ctl resume
wait_job_state mnt m2 ready
ctl_ok mnt/.jobs/m2/ctl complete
wait_job_state mnt m2 concluded
assert_eq "$(job_key mnt m2 result)" completed "result of m2"
assert_chain mnt vm "$tmpdir/t2.qcow2"
assert_equal_files mnt/vm model.raw "the disk after complete"
stop_chainfs mnt
qemu_check t2.qcow2
qemu_check top.qcow2
assert_same_as_model t2.qcow2
