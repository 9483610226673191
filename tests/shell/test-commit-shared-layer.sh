#!/usr/bin/env bash
# Two disks share backing layers: a commit on one of them into a shared
# layer would change what the other disk reads, so it fails with EBUSY,
# the message naming the layer and the disk that uses it (as for a mirror
# target that is another disk's layer), and nothing changes.  A stream,
# which writes only the disk's own top, is fine.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io md5sum
requires_fuse

head -c 8M /dev/urandom >base.raw
qcow2_create mid.qcow2 8M 65536 "$tmpdir/base.raw" raw
qemu_io mid.qcow2 "write -P 0x41 0 2M"
qcow2_create a.qcow2 8M 65536 "$tmpdir/mid.qcow2" qcow2
qemu_io a.qcow2 "write -P 0x42 1M 1M"
qcow2_create b.qcow2 8M 65536 "$tmpdir/mid.qcow2" qcow2
qemu_io b.qcow2 "write -P 0x43 3M 1M"
to_raw a.qcow2 a-before.raw
shared_md5=$(md5sum base.raw mid.qcow2)
start_chainfs mnt -d vm=a.qcow2 -d w=b.qcow2
ctl=mnt/.jobs/ctl

ctl_error EBUSY "$tmpdir/base.raw.*disk 'vm'" $ctl commit id=c1 disk=w
ctl_error EBUSY "$tmpdir/mid.qcow2.*disk 'vm'" $ctl commit id=c1 disk=w base=$tmpdir/mid.qcow2
ctl_error EBUSY "$tmpdir/base.raw.*disk 'vm'" $ctl commit id=c1 disk=w top=$tmpdir/mid.qcow2
[[ ! -e mnt/.jobs/c1 ]] || fail "a rejected commit is listed"
ctl_ok $ctl stream id=s1 disk=w
wait_job_state mnt s1 concluded
assert_eq "$(job_key mnt s1 result)" completed "result of s1"
assert_chain mnt w "$tmpdir/b.qcow2"
assert_chain mnt vm "$tmpdir/a.qcow2" "$tmpdir/mid.qcow2" "$tmpdir/base.raw"
to_raw mnt/vm a-mounted.raw
assert_equal_files a-mounted.raw a-before.raw "vm"
stop_chainfs mnt
assert_eq "$(md5sum base.raw mid.qcow2)" "$shared_md5" "shared layers modified"
