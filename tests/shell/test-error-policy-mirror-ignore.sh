#!/usr/bin/env bash
# mirror on-target-error=ignore: target writes failing with EIO a few
# times (fault layer, mode=existing format=fault) emit JOB_ERROR
# operation=write action=ignore, the chunks stay dirty and are retried;
# the job goes ready and completes, and the target is exact.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/error-policy-functions.sh"
requires qemu-img qemu-io
requires_fuse

head -c 8M /dev/urandom >base.raw
qcow2_create top.qcow2 8M 65536 "$tmpdir/base.raw" raw
qemu_io top.qcow2 "write -P 0x5a 1M 2M" "write -z 6M 1M"
qcow2_create t.qcow2 8M 65536
fault_conf t.conf t.qcow2 qcow2 '[rule flaky]' op=write errno=EIO after=3 count=5
to_raw top.qcow2 model.raw
start_chainfs mnt -d vm=top.qcow2

ctl_ok mnt/.jobs/ctl mirror id=m1 disk=vm target="$tmpdir/t.conf" format=fault \
    mode=existing on-target-error=ignore granularity=64K
wait_job_state mnt m1 ready
grep -q 'JOB_ERROR id=m1 operation=write action=ignore$' mnt/.jobs/events ||
    fail "no JOB_ERROR action=ignore: $(cat mnt/.jobs/events)"
assert_no_event mnt 'JOB_ERROR id=m1 .*action=(report|stop)'
assert_eq "$(job_key mnt m1 io-status)" ok "io-status"
assert_eq "$(echo $("$io" mnt/vm write 1M 4K 1 write 7M 4K 2))" "ok ok" "guest writes"
dd_write model.raw $((1 << 20)) 4096 1
dd_write model.raw $((7 << 20)) 4096 2
ctl_ok mnt/.jobs/m1/ctl complete
wait_job_state mnt m1 concluded
assert_eq "$(job_key mnt m1 result)" completed "result"
assert_equal_files mnt/vm model.raw "the disk after complete"
stop_chainfs mnt
qemu_check t.qcow2
assert_same_as_model t.qcow2
