#!/usr/bin/env bash
# snapshot mode=existing: an overlay made beforehand (here by qemu-img,
# with a relative backing name) whose backing file resolves to the current
# top goes on top; what the guest sees does not change, new writes land in
# the overlay only, and a read-only disk refuses snapshots.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
requires qemu-img qemu-io
requires_fuse

mkdir sub
qcow2_create base.qcow2 4M 65536
qemu_io base.qcow2 "write -P 0x21 0 4M"
qcow2_create ro.qcow2 4M 65536
start_chainfs mnt -d vm=base.qcow2 -d ro=ro.qcow2,read-only=on
ctl_error EROFS "disk 'ro' is read-only" mnt/.jobs/ctl snapshot disk=ro overlay=$tmpdir/ro-snap.qcow2
stop_chainfs mnt
qcow2_create sub/over2.qcow2 4M 4096 ../base.qcow2 qcow2

start_chainfs mnt -d vm=base.qcow2
base_sum=$(md5sum <base.qcow2)
to_raw mnt/vm before.raw
ctl_ok mnt/.jobs/ctl snapshot disk=vm overlay=$tmpdir/sub/over2.qcow2 mode=existing format=qcow2
assert_eq "$(cat mnt/.chains/vm)" "0 qcow2 4194304 $tmpdir/sub/over2.qcow2
1 qcow2 4194304 $tmpdir/base.qcow2" ".chains after the snapshot"
to_raw mnt/vm after-snapshot.raw
assert_equal_files after-snapshot.raw before.raw "the guest's view after the snapshot"
dd_write mnt/vm 12345 100000 9
dd_write before.raw 12345 100000 9
sync mnt/vm
stop_chainfs mnt
assert_eq "$(md5sum <base.qcow2)" "$base_sum" "the old top after the snapshot"
qemu_check sub/over2.qcow2
qemu_check base.qcow2
to_raw sub/over2.qcow2 after.raw
assert_equal_files after.raw before.raw "the chain after unmount"
# The header was not rewritten: the relative backing name stays.
qemu-img info sub/over2.qcow2 | grep -q "^backing file: ../base.qcow2 " ||
    fail "backing file of over2: $(qemu-img info sub/over2.qcow2)"
