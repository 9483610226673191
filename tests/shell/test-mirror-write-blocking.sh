#!/usr/bin/env bash
# copy-mode=write-blocking: every guest write also goes to the target
# before it is acknowledged, so the mirror gets ready while a writer keeps
# writing; complete switches with no write lost.  A running background
# mirror switches to write-blocking live with `change`.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io
requires_fuse

head -c 16M /dev/urandom >base.raw
qcow2_create top.qcow2 16M 65536 "$tmpdir/base.raw" raw
to_raw top.qcow2 before.raw
start_chainfs mnt -d vm=top.qcow2
ctl=mnt/.jobs/ctl

start_writer mnt/vm before.raw 23 30000
ctl_ok $ctl mirror id=m1 disk=vm target=$tmpdir/t1.qcow2 copy-mode=write-blocking
assert_eq "$(job_key mnt m1 copy-mode)" write-blocking "copy-mode of m1"
wait_job_state mnt m1 ready
writer_running
ctl_ok $ctl complete m1
wait_job_state mnt m1 concluded
assert_eq "$(job_key mnt m1 result)" completed "result of m1"
assert_chain mnt vm "$tmpdir/t1.qcow2"
ctl_ok $ctl dismiss m1

# Switch live: a slow background mirror becomes write-blocking.
ctl_ok $ctl mirror id=m2 disk=vm target=$tmpdir/t2.qcow2 speed=1M buf-size=64K
wait_job_state mnt m2 running
assert_eq "$(job_key mnt m2 copy-mode)" background "copy-mode of m2"
ctl_ok $ctl change m2 copy-mode=write-blocking
assert_eq "$(job_key mnt m2 copy-mode)" write-blocking "copy-mode of m2 after change"
ctl_ok $ctl set-speed m2 0
wait_job_state mnt m2 ready
writer_running
ctl_ok $ctl complete m2
wait_job_state mnt m2 concluded
assert_eq "$(job_key mnt m2 result)" completed "result of m2"
assert_chain mnt vm "$tmpdir/t2.qcow2"
wait_writer
stop_chainfs mnt

for img in top.qcow2 t1.qcow2 t2.qcow2; do
    qemu_check "$img"
done
assert_same_as_model t2.qcow2
