#!/usr/bin/env bash
# mirror speed=: 8 MiB at 2 MiB/s (bursts of at most buf-size=256K) takes
# about 4 s to get ready; pause stops the copy (state paused), resume goes
# on, and set-speed 0 lifts the limit live so that a crawling job gets
# ready at once.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io date bc
requires_fuse

qcow2_create a.qcow2 8M 65536
qemu_io a.qcow2 "write -P 0x61 0 8M"
start_chainfs mnt -d vm=a.qcow2
ctl=mnt/.jobs/ctl

start=$(date +%s.%N)
ctl_ok $ctl mirror id=m1 disk=vm target=$tmpdir/t1.qcow2 speed=2M buf-size=256K
assert_eq "$(job_key mnt m1 speed)" 2097152 "speed in the status"
wait_job_state mnt m1 ready
elapsed=$(echo "$(date +%s.%N) - $start" | bc)
echo "8 MiB at 2 MiB/s: ready after $elapsed s"
(($(echo "$elapsed >= 3 && $elapsed <= 12" | bc))) ||
    fail "8 MiB at speed=2M got ready after $elapsed s (expected 3 to 12 s)"
ctl_ok $ctl cancel m1
wait_job_state mnt m1 concluded
ctl_ok $ctl dismiss m1

# A crawling job: pause, resume, then lift the limit.
ctl_ok $ctl mirror id=m2 disk=vm target=$tmpdir/t2.qcow2 speed=64K buf-size=64K
wait_job_state mnt m2 running
ctl_ok $ctl pause m2
wait_job_state mnt m2 paused
copied=$(job_key mnt m2 copied)
sleep 0.5    # not synchronisation: a paused job must not copy meanwhile
assert_eq "$(job_key mnt m2 copied)" "$copied" "bytes copied while paused"
assert_eq "$(job_events mnt m2)" "created running paused" "events of m2 so far"
ctl_ok mnt/.jobs/m2/ctl resume
wait_job_state mnt m2 running
ctl_ok mnt/.jobs/m2/ctl speed=0
assert_eq "$(job_key mnt m2 speed)" 0 "speed after set-speed"
start=$(date +%s.%N)
wait_job_state mnt m2 ready
elapsed=$(echo "$(date +%s.%N) - $start" | bc)
(($(echo "$elapsed <= 3" | bc))) || fail "after set-speed 0, ready only after $elapsed s"
ctl_ok $ctl set-speed m2 1M
assert_eq "$(job_key mnt m2 speed)" 1048576 "speed after set-speed while ready"
ctl_ok $ctl complete m2
wait_job_state mnt m2 concluded
assert_eq "$(job_key mnt m2 result)" completed "result of m2"
to_raw mnt/vm guest.raw
stop_chainfs mnt
qemu_check t2.qcow2
to_raw t2.qcow2 after.raw
assert_equal_files after.raw guest.raw "t2.qcow2 after unmount"
