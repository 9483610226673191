#!/usr/bin/env bash
# A backup running across chain changes still delivers the instant
# (INTERFACE.md section 8): while a slow sync=full backup runs and the
# guest writes, a snapshot and a mirror (to ready and complete)
# are accepted on the same disk, and the target, compared with the
# disk as it was when the backup started, is identical.  The target file
# itself stays blocked (EBUSY) while the job runs.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io
requires_fuse

qemu-img create -q -f raw base.raw 16M
qemu_io base.raw "write -P 0x41 0 16M"
qcow2_create top.qcow2 16M 65536 "$tmpdir/base.raw" raw
qemu_io top.qcow2 "write -P 0x42 2M 2M"
to_raw top.qcow2 instant.raw
start_chainfs mnt -d vm=top.qcow2
ctl=mnt/.jobs/ctl

ctl_ok $ctl backup id=b disk=vm target=$tmpdir/b.qcow2 speed=1M buf-size=64K
ctl_error EBUSY "job 'b'" $ctl mirror id=m0 disk=vm target=$tmpdir/b.qcow2 mode=existing
dd_write mnt/vm 0 1048576 0x51
ctl_ok $ctl snapshot disk=vm overlay=$tmpdir/snap.qcow2
dd_write mnt/vm $((5 << 20)) 1048576 0x52
ctl_ok $ctl mirror id=m disk=vm target=$tmpdir/mirror.qcow2
wait_job_state mnt m ready
dd_write mnt/vm $((9 << 20)) 1048576 0x53
ctl_ok $ctl complete m
wait_job_state mnt m concluded
assert_eq "$(job_key mnt m result)" completed "result of the mirror"
assert_chain mnt vm "$tmpdir/mirror.qcow2"
dd_write mnt/vm $((14 << 20)) 1048576 0x54
[[ $(job_state mnt b) == running ]] || fail "the backup ended too early: raise its NOPS"
ctl_ok $ctl set-speed b 0
wait_job_state mnt b concluded
assert_eq "$(job_key mnt b result)" completed "result of the backup"
to_raw mnt/vm now.raw
stop_chainfs mnt
qemu_check b.qcow2
out=$(qemu-img compare -F raw b.qcow2 instant.raw 2>&1) || fail "the target is not the instant: $out"
cmp -s now.raw instant.raw && fail "the guest's writes did not land"
qemu_check mirror.qcow2
