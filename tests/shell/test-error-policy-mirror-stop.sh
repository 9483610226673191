#!/usr/bin/env bash
# mirror on-target-error=stop: a target write failing with ENOSPC (fault
# layer, mode=existing format=fault) pauses the job (JOB_ERROR
# operation=write action=stop, state paused, io-status nospace); guest
# writes go on meanwhile; clearing the fault (a new config renamed over
# the old) and `resume` finish the job: ready, complete, and the target
# holds exactly what the disk holds.
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
    mode=existing on-target-error=stop
wait_event mnt 'JOB_ERROR id=m1 operation=write action=stop$'
wait_job_state mnt m1 paused
assert_eq "$(job_key mnt m1 io-status)" nospace "io-status while stopped"
assert_eq "$(job_key mnt m1 result)" none "result while stopped"
sleep 0.3    # not synchronisation: a stopped job must stay paused meanwhile
assert_eq "$(job_state mnt m1)" paused "state a moment later"

# The guest writes meanwhile, into the failing range too (only the
# target's writes fail).
assert_eq "$(echo $("$io" mnt/vm write 4M 8K 1 write 7M 4K 2 fsync))" "ok ok ok" "guest writes"
dd_write model.raw $((4 << 20)) 8192 1
dd_write model.raw $((7 << 20)) 4096 2

fault_conf t.conf t.qcow2 qcow2
ctl_ok mnt/.jobs/m1/ctl resume
wait_job_state mnt m1 ready
assert_eq "$(job_key mnt m1 io-status)" ok "io-status after resume"
ctl_ok mnt/.jobs/m1/ctl complete
wait_job_state mnt m1 concluded
assert_eq "$(job_key mnt m1 result)" completed "result"
assert_chain mnt vm "$tmpdir/t.conf"
assert_equal_files mnt/vm model.raw "the disk after complete"
stop_chainfs mnt
qemu_check t.qcow2
qemu_check top.qcow2
assert_same_as_model t.qcow2
