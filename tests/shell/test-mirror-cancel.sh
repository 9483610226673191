#!/usr/bin/env bash
# cancel of a mirror: after ready it finishes without switching (result
# completed, JOB_COMPLETED) and leaves the target a consistent copy of
# the disk; before ready it stops at once (result cancelled,
# JOB_CANCELLED), as does cancel force when ready.  complete before ready
# and dismiss before concluded are EINVAL naming the state; dismiss
# removes .jobs/ID.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io
requires_fuse

qcow2_create base.qcow2 32M 65536
qemu_io base.qcow2 "write -P 0x11 0 32M"
qcow2_create top.qcow2 32M 65536 "$tmpdir/base.qcow2" qcow2
qemu_io top.qcow2 "write -P 0x22 4M 2M"
start_chainfs mnt -d vm=top.qcow2
ctl=mnt/.jobs/ctl
chain="$tmpdir/top.qcow2 $tmpdir/base.qcow2"

# Cancel after ready: the target holds the disk as it was while ready.
ctl_ok $ctl mirror id=m1 disk=vm target=$tmpdir/t1.qcow2
wait_job_state mnt m1 ready
dd_write mnt/vm 1048576 65536 0x33    # goes to the target too
to_raw mnt/vm ready.raw
ctl_error EINVAL "state 'ready'.*dismiss" $ctl dismiss m1
ctl_ok $ctl cancel m1
wait_job_state mnt m1 concluded
assert_eq "$(job_key mnt m1 result)" completed "result of cancel after ready"
assert_eq "$(job_events mnt m1)" \
    "created running ready JOB_READY waiting pending concluded JOB_COMPLETED" "events of m1"
assert_chain mnt vm $chain
out=$(qemu-img compare -U -F raw t1.qcow2 ready.raw 2>&1) ||
    fail "target of the cancelled ready mirror: $out"
ctl_ok $ctl dismiss m1
[[ ! -e mnt/.jobs/m1 ]] || fail ".jobs/m1 still there after dismiss"
ctl_error ENOENT "m1" $ctl dismiss m1

# Cancel before ready: 32 MiB at 1 MiB/s cannot be ready for a long time.
ctl_ok $ctl mirror id=m2 disk=vm target=$tmpdir/t2.qcow2 speed=1M
wait_job_state mnt m2 running
ctl_error EINVAL "job 'm2' is in state 'running': cannot complete" $ctl complete m2
ctl_error EINVAL "job 'm2' is in state 'running': cannot complete" mnt/.jobs/m2/ctl complete
ctl_error EINVAL "job 'm2' is in state 'running': cannot dismiss" $ctl dismiss m2
ctl_ok mnt/.jobs/m2/ctl cancel
wait_job_state mnt m2 concluded
assert_eq "$(job_key mnt m2 result)" cancelled "result of cancel before ready"
events=$(job_events mnt m2)
[[ $events == "created running "*"concluded JOB_CANCELLED" && $events != *READY* && $events != *COMPLETED* ]] ||
    fail "events of m2: $events"
ctl_error EINVAL "job 'm2' is in state 'concluded': cannot cancel" $ctl cancel m2
assert_chain mnt vm $chain
ctl_ok mnt/.jobs/m2/ctl dismiss
[[ ! -e mnt/.jobs/m2 ]] || fail ".jobs/m2 still there after dismiss"

# cancel force while ready (paused: standby) stops at once: cancelled.
ctl_ok $ctl mirror id=m3 disk=vm target=$tmpdir/t3.qcow2
wait_job_state mnt m3 ready
ctl_ok $ctl pause m3
wait_job_state mnt m3 standby
ctl_ok $ctl cancel m3 force
wait_job_state mnt m3 concluded
assert_eq "$(job_key mnt m3 result)" cancelled "result of cancel force after ready"
# (Like QEMU, the cancel may resume the job first: standby ready aborting.)
events=$(job_events mnt m3)
[[ $events == "created running ready JOB_READY standby "*"aborting concluded JOB_CANCELLED" &&
    $events != *COMPLETED* ]] || fail "events of m3: $events"
assert_chain mnt vm $chain

to_raw mnt/vm guest.raw
stop_chainfs mnt
assert_eq "$(qemu_chain_paths top.qcow2 | paste -sd' ')" "$chain" "chain on disk"
for img in base.qcow2 top.qcow2 t1.qcow2 t2.qcow2 t3.qcow2; do
    qemu_check "$img"
done
out=$(qemu-img compare -F raw t1.qcow2 ready.raw 2>&1) || fail "t1.qcow2 after unmount: $out"
to_raw top.qcow2 after.raw
assert_equal_files after.raw guest.raw "the disk after unmount"
