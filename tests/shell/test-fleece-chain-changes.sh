#!/usr/bin/env bash
# While a fleece runs, a snapshot, a mirror's complete and a commit change
# the disk's chain; the view goes on showing the instant, and guest writes
# after each change still copy the old data first.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io cmp
requires_fuse

qcow2_create base.qcow2 16M 65536
qemu_io base.qcow2 "write -P 0x51 0 8M"
qcow2_create top.qcow2 16M 65536 "$tmpdir/base.qcow2" qcow2
qemu_io top.qcow2 "write -P 0x52 4M 2M"
start_chainfs mnt -d vm=top.qcow2
ctl=mnt/.jobs/ctl
cp mnt/vm instant.raw

ctl_ok $ctl fleece id=f disk=vm
dd_write mnt/vm 0 1048576 0x61
ctl_ok $ctl snapshot disk=vm overlay=$tmpdir/over.qcow2
dd_write mnt/vm 1048576 1048576 0x62
cmp mnt/vm@f instant.raw || fail "vm@f after a snapshot"

ctl_ok $ctl mirror id=m disk=vm target=$tmpdir/mirror.qcow2
wait_job_state mnt m ready
dd_write mnt/vm $((2 * 1048576)) 1048576 0x63
ctl_ok $ctl complete m
wait_job_state mnt m concluded
assert_eq "$(job_key mnt m result)" completed "mirror result"
dd_write mnt/vm $((3 * 1048576)) 2097152 0x64
cmp mnt/vm@f instant.raw || fail "vm@f after a mirror's complete"

cp mnt/vm current.raw
start_writer mnt/vm current.raw 5 2000
cmp mnt/vm@f instant.raw || fail "vm@f under a writer after the chain changes"
wait_writer
cmp mnt/vm@f instant.raw || fail "vm@f after the writer"
ctl_ok $ctl cancel f
wait_job_state mnt f concluded
cmp mnt/vm model.raw || fail "the disk differs from the writer's model"
stop_chainfs mnt
