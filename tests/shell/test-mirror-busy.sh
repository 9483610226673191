#!/usr/bin/env bash
# While a mirror runs, any other job on its disk (mirror, stream, commit)
# and a snapshot of it fail with EBUSY naming the mirror, and change
# nothing; once the mirror has concluded, even before dismiss, a new job
# on the disk is accepted.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io
requires_fuse

qcow2_create base.qcow2 16M 65536
qemu_io base.qcow2 "write -P 0x71 0 16M"
qcow2_create top.qcow2 16M 65536 "$tmpdir/base.qcow2" qcow2
qemu_io top.qcow2 "write -P 0x72 1M 1M"
start_chainfs mnt -d vm=top.qcow2
ctl=mnt/.jobs/ctl

ctl_ok $ctl mirror id=m1 disk=vm target=$tmpdir/t1.qcow2 speed=64K buf-size=64K
wait_job_state mnt m1 running
busy="disk 'vm' is in use by job 'm1'"
ctl_error EBUSY "$busy" $ctl mirror id=m2 disk=vm target=$tmpdir/t2.qcow2
ctl_error EBUSY "$busy" $ctl mirror id=m2 disk=vm target=$tmpdir/t2.qcow2 sync=none
ctl_error EBUSY "$busy" $ctl stream id=s1 disk=vm
ctl_error EBUSY "$busy" $ctl commit id=c1 disk=vm
ctl_error EBUSY "$busy" $ctl commit id=c1 disk=vm top=$tmpdir/top.qcow2 base=$tmpdir/base.qcow2
ctl_error EBUSY "$busy" $ctl snapshot disk=vm overlay=$tmpdir/s.qcow2
for id in m2 s1 c1; do
    [[ ! -e mnt/.jobs/$id ]] || fail "rejected job $id is listed"
done
[[ ! -e t2.qcow2 && ! -e s.qcow2 ]] || fail "a rejected command created a file"
assert_chain mnt vm "$tmpdir/top.qcow2" "$tmpdir/base.qcow2"
# The id of a listed job is taken.
ctl_error EEXIST "m1" $ctl mirror id=m1 disk=vm target=$tmpdir/t3.qcow2

ctl_ok $ctl cancel m1
wait_job_state mnt m1 concluded
[[ -d mnt/.jobs/m1 ]] || fail "m1 gone before dismiss"
ctl_ok $ctl mirror id=m2 disk=vm target=$tmpdir/t2.qcow2
wait_job_state mnt m2 ready
ctl_ok $ctl complete m2
wait_job_state mnt m2 concluded
assert_chain mnt vm "$tmpdir/t2.qcow2"
to_raw mnt/vm guest.raw
stop_chainfs mnt
qemu_check t2.qcow2
to_raw t2.qcow2 after.raw
assert_equal_files after.raw guest.raw "t2.qcow2 after unmount"
