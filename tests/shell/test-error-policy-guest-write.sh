#!/usr/bin/env bash
# Guest writes failing during a job: the disk is a fault layer over its
# top whose rules fail one guest write with ENOSPC and one with EIO while
# a write-blocking mirror is ready.  The writer gets exactly those errors,
# the failed writes change nothing, the disk stays usable (the same writes
# then succeed), the job is not affected (no JOB_ERROR, io-status ok,
# still ready), and after complete the target holds exactly the disk.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/error-policy-functions.sh"
requires qemu-img qemu-io
requires_fuse

make_fault_chain
start_chainfs mnt -d vm=disk.conf,format=fault
ctl_ok mnt/.jobs/ctl mirror id=m1 disk=vm target="$tmpdir/t.qcow2" \
    copy-mode=write-blocking on-source-error=stop on-target-error=stop
wait_job_state mnt m1 ready

fault_conf disk.conf top.qcow2 qcow2 \
    '[rule full]' op=write,zeroes errno=ENOSPC offset=3M len=64K count=1 \
    '[rule broken]' op=write errno=EIO offset=6M len=4K count=1
assert_eq "$(echo $("$io" mnt/vm write 3M 8K 1 write 6M 4K 2 read 3M 8K read 6M 4K))" \
    "ENOSPC EIO ok ok" "guest writes while the fault is on"
assert_equal_files mnt/vm model.raw "the disk after the failed writes"
assert_eq "$(echo $("$io" mnt/vm write 3M 8K 1 write 6M 4K 2 zero 7M 64K fsync read 3M 8K 1 read 6M 4K 2))" \
    "ok ok ok ok ok ok" "the same writes again"
dd_write model.raw $((3 << 20)) 8192 1
dd_write model.raw $((6 << 20)) 4096 2
head -c 65536 /dev/zero | dd of=model.raw bs=64K seek=112 conv=notrunc status=none
assert_equal_files mnt/vm model.raw "the disk after the writes"
assert_no_event mnt 'JOB_ERROR id=m1'
assert_eq "$(job_state mnt m1)" ready "job state"
assert_eq "$(job_key mnt m1 io-status)" ok "job io-status"

ctl_ok mnt/.jobs/m1/ctl complete
wait_job_state mnt m1 concluded
assert_eq "$(job_key mnt m1 result)" completed "result"
assert_equal_files mnt/vm model.raw "the disk after complete"
stop_chainfs mnt
qemu_check t.qcow2
qemu_check top.qcow2
assert_same_as_model t.qcow2
assert_same_as_model top.qcow2
