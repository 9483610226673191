#!/usr/bin/env bash
# backup error policies per side, with the fault format (after the mirror
# error-policy tests).  Target: report fails the job naming the target;
# stop pauses it (io-status nospace) until the fault is cleared and
# `resume`; ignore retries the chunk later.  Source (the disk is a fault
# layer): report names the disk's top; stop then resume completes.  A
# copy-before-write that fails never fails the guest's write: the write
# lands and the job fails with that error, whatever on-target-error says.
# Every completed target is the disk as it was at the start.
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
fault_conf disk.conf top.qcow2 qcow2
start_chainfs mnt -d vm=disk.conf,format=fault
ctl=mnt/.jobs/ctl
new_target() { qcow2_create "$1.qcow2" 8M 65536; fault_conf "$1.conf" "$1.qcow2" qcow2 "${@:2}"; }

# Target, report.
new_target t1 '[rule full]' op=write,zeroes errno=ENOSPC offset=4M len=1M
ctl_ok $ctl backup id=b1 disk=vm target=$tmpdir/t1.conf format=fault mode=existing
assert_failed_job mnt b1 "write to $tmpdir/t1.conf: No space left on device"
grep -qx '[0-9.]* JOB_ERROR id=b1 operation=write action=report' mnt/.jobs/events ||
    fail "no JOB_ERROR for b1: $(cat mnt/.jobs/events)"

# Target, stop, then resume.
new_target t2 '[rule full]' op=write,zeroes errno=ENOSPC offset=4M len=1M
ctl_ok $ctl backup id=b2 disk=vm target=$tmpdir/t2.conf format=fault mode=existing on-target-error=stop
wait_event mnt 'JOB_ERROR id=b2 operation=write action=stop$'
wait_job_state mnt b2 paused
assert_eq "$(job_key mnt b2 io-status)" nospace "io-status of b2"
fault_conf t2.conf t2.qcow2 qcow2
ctl_ok mnt/.jobs/b2/ctl resume
wait_job_state mnt b2 concluded
assert_eq "$(job_key mnt b2 result)" completed "result of b2"

# Target, ignore: the chunk fails once and is retried.
new_target t3 '[rule once]' op=write,zeroes errno=EIO offset=1M len=1M count=1
ctl_ok $ctl backup id=b3 disk=vm target=$tmpdir/t3.conf format=fault mode=existing on-target-error=ignore
wait_job_state mnt b3 concluded
assert_eq "$(job_key mnt b3 result)" completed "result of b3"
grep -qx '[0-9.]* JOB_ERROR id=b3 operation=write action=ignore' mnt/.jobs/events ||
    fail "no JOB_ERROR for b3: $(cat mnt/.jobs/events)"

# Source, report and stop.
fault_conf disk.conf top.qcow2 qcow2 '[rule bad-sector]' op=read errno=EIO offset=3M len=4K
ctl_ok $ctl backup id=s1 disk=vm target=$tmpdir/s1.qcow2
assert_failed_job mnt s1 "read from $tmpdir/disk.conf: Input/output error"
ctl_ok $ctl backup id=s2 disk=vm target=$tmpdir/s2.qcow2 on-source-error=stop
wait_event mnt 'JOB_ERROR id=s2 operation=read action=stop$'
wait_job_state mnt s2 paused
assert_eq "$(job_key mnt s2 io-status)" failed "io-status of s2"
fault_conf disk.conf top.qcow2 qcow2
ctl_ok mnt/.jobs/s2/ctl resume
wait_job_state mnt s2 concluded
assert_eq "$(job_key mnt s2 result)" completed "result of s2"

# A failed copy-before-write: the guest write lands, the job fails.
new_target t4 '[rule full]' op=write,zeroes errno=ENOSPC offset=6M len=1M
ctl_ok $ctl backup id=b4 disk=vm target=$tmpdir/t4.conf format=fault mode=existing \
    on-target-error=stop speed=64K buf-size=64K
assert_eq "$(echo $("$io" mnt/vm write 6M 4K 7 fsync))" "ok ok" "guest write over a failing copy"
assert_failed_job mnt b4 "write to $tmpdir/t4.conf: No space left on device"
stop_chainfs mnt
for t in t2 t3 s2; do
    qemu_check $t.qcow2
    out=$(qemu-img compare -F raw $t.qcow2 model.raw 2>&1) || fail "$t is not the instant: $out"
done
qemu_check_leaks_ok t1.qcow2
qemu_check_leaks_ok t4.qcow2
qemu_check top.qcow2
dd_write model.raw $((6 << 20)) 4096 7
out=$(qemu-img compare -F raw top.qcow2 model.raw 2>&1) || fail "the guest write did not land: $out"
