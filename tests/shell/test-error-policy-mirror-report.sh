#!/usr/bin/env bash
# mirror on-target-error=report onto an existing target wrapped by a fault
# layer (mode=existing format=fault) that fails writes with ENOSPC: the job
# fails with JOB_ERROR operation=write action=report, `error:` names the
# target and the reason, the disk stays on its source with its content,
# and stays usable.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/error-policy-functions.sh"
requires qemu-img qemu-io
requires_fuse

qcow2_create top.qcow2 8M 65536
qemu_io top.qcow2 "write -P 0x5a 0 8M"
qcow2_create t.qcow2 8M 65536
fault_conf t.conf t.qcow2 qcow2 '[rule full]' op=write,zeroes errno=ENOSPC offset=4M len=1M
to_raw top.qcow2 model.raw
start_chainfs mnt -d vm=top.qcow2

ctl_ok mnt/.jobs/ctl mirror id=m1 disk=vm target="$tmpdir/t.conf" format=fault \
    mode=existing on-target-error=report
assert_failed_job mnt m1 "write to $tmpdir/t.conf: No space left on device"
grep -qx '[0-9.]* JOB_ERROR id=m1 operation=write action=report' mnt/.jobs/events ||
    fail "no JOB_ERROR operation=write action=report: $(cat mnt/.jobs/events)"
grep -q "JOB_COMPLETED id=m1 .*error=\"write to $tmpdir/t.conf: No space left on device\"" \
    mnt/.jobs/events || fail "JOB_COMPLETED without the error: $(cat mnt/.jobs/events)"
assert_no_event mnt 'JOB_READY id=m1'
assert_chain mnt vm "$tmpdir/top.qcow2"
assert_equal_files mnt/vm model.raw "the disk after the failed mirror"

# The disk stays usable, and a new job may use it (a concluded job blocks
# nothing).
assert_eq "$(echo $("$io" mnt/vm write 4M 4K 1 fsync read 4M 4K 1))" "ok ok ok" "guest I/O"
dd_write model.raw $((4 << 20)) 4096 1
fault_conf t.conf t.qcow2 qcow2
ctl_ok mnt/.jobs/ctl dismiss m1
ctl_ok mnt/.jobs/ctl mirror id=m2 disk=vm target="$tmpdir/t.conf" format=fault mode=existing
wait_job_state mnt m2 ready
ctl_ok mnt/.jobs/m2/ctl complete
wait_job_state mnt m2 concluded
assert_eq "$(job_key mnt m2 result)" completed "result of m2"
stop_chainfs mnt
qemu_check top.qcow2
qemu_check t.qcow2
assert_same_as_model t.qcow2
assert_same_as_model top.qcow2
